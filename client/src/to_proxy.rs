//! Reaching the proxy, and what every client driver shares: the deadline
//! of each stage, the proxy's addresses, checks of our own credentials and
//! targets before any IO, and reading into a handshake machine's input.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use sixsocks_proto::{EncodeError, Host, Input, TargetAddr};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::error::{ClientError, Stage};
use crate::proxy::Proxy;

/// Run `fut` under the proxy's deadline for `stage`.
pub(crate) async fn deadline<T>(
    proxy: &Proxy,
    stage: Stage,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(proxy.timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            stage,
            timeout: proxy.timeout,
        })?
}

/// Open a TCP connection to the proxy (resolving its name if needed, trying
/// each address in turn), with `TCP_NODELAY` set. Bounded by the proxy's
/// timeout.
pub async fn connect_to_proxy(proxy: &Proxy) -> Result<TcpStream, ClientError> {
    first_reachable(proxy, |addr| async move {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    })
    .await
}

/// Run `attempt` on each of the proxy's addresses in turn until one
/// succeeds, under the proxy's connect deadline; the last error if none
/// does.
pub(crate) async fn first_reachable<T, F, Fut>(
    proxy: &Proxy,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    deadline(proxy, Stage::ProxyConnect, async {
        let addrs = proxy_addrs(proxy).await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no addresses");
        for addr in addrs {
            match attempt(addr).await {
                Ok(done) => return Ok(done),
                Err(e) => last = e,
            }
        }
        Err(ClientError::ProxyConnect {
            proxy: proxy.addr_string(),
            source: last,
        })
    })
    .await
}

/// The proxy's addresses (its name resolved, if it has one).
pub(crate) async fn proxy_addrs(proxy: &Proxy) -> Result<Vec<SocketAddr>, ClientError> {
    Ok(match &proxy.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, proxy.port)],
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), proxy.port))
            .await
            .map_err(|source| ClientError::ProxyConnect {
                proxy: proxy.addr_string(),
                source,
            })?
            .collect(),
    })
}

/// Read what the proxy sent into a machine's input (closing it at EOF).
pub(crate) async fn read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut Input,
) -> Result<(), ClientError> {
    let got = stream.read(input.spare()).await.map_err(ClientError::Io)?;
    if got == 0 {
        input.close();
    } else {
        input.filled(got);
    }
    Ok(())
}

pub(crate) fn check_credentials(proxy: &Proxy) -> Result<(), ClientError> {
    let bad = |m: &str| Err(ClientError::InvalidCredentials(m.to_string()));
    if let Some(u) = &proxy.username {
        if u.len() > 255 {
            return bad("user name longer than 255 bytes");
        }
        if proxy.scheme.is_v4() && u.contains(&0) {
            return bad("a SOCKS4 user id cannot contain a NUL byte");
        }
    }
    if !proxy.scheme.is_v4() {
        if let Some(p) = &proxy.password {
            if p.len() > 255 {
                return bad("password longer than 255 bytes");
            }
        }
    }
    Ok(())
}

/// An encoding error of our own request: the target (or the credentials)
/// cannot be expressed on the wire.
pub(crate) fn invalid_target(e: EncodeError, target: &TargetAddr) -> ClientError {
    match e {
        EncodeError::UnsupportedAddressType(_) => {
            ClientError::Unsupported(format!("the protocol cannot carry the target {target}"))
        }
        e => ClientError::InvalidTarget(format!("{target}: {e}")),
    }
}

//! Connecting through a proxy: CONNECT, RESOLVE and RESOLVE_PTR.

use std::io;
use std::net::IpAddr;

use sixsocks_proto::client::{ClientHandshake, ClientRequest};
use sixsocks_proto::{v5, Command, Host, Instruction, TargetAddr, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::{ClientError, Stage};
use crate::proxy::{Proxy, Scheme};
use crate::stream::SocksStream;
use crate::target::IntoTargetAddr;
pub use crate::to_proxy::connect_to_proxy;
use crate::to_proxy::{check_credentials, deadline, invalid_target, read_into};

/// Turn a target into what the scheme can send: `socks4://` and `socks5://`
/// resolve names locally (SOCKS4 needs IPv4); SOCKS4/4a cannot carry IPv6
/// (an IPv4-mapped IPv6 address is sent as IPv4).
pub async fn prepare_target(proxy: &Proxy, target: TargetAddr) -> Result<TargetAddr, ClientError> {
    let v4 = proxy.scheme.is_v4();
    match &target.host {
        Host::Ip(IpAddr::V6(ip)) if v4 => match ip.to_ipv4_mapped() {
            Some(ip4) => Ok(TargetAddr::ip(IpAddr::V4(ip4), target.port)),
            None => Err(ClientError::Unsupported(format!(
                "{} cannot carry the IPv6 target {target}",
                proxy.scheme
            ))),
        },
        Host::Domain(name) if !proxy.scheme.remote_dns() => {
            let name = name.clone();
            let port = target.port;
            deadline(proxy, Stage::LocalResolve, async {
                let resolved = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|source| ClientError::LocalResolve {
                        host: name.clone(),
                        source,
                    })?;
                let mut candidates = resolved.map(|sa| sa.ip());
                let ip = if v4 {
                    candidates.find(IpAddr::is_ipv4)
                } else {
                    candidates.next()
                };
                match ip {
                    Some(ip) => Ok(TargetAddr::ip(ip, port)),
                    None => Err(ClientError::LocalResolve {
                        host: name.clone(),
                        source: io::Error::new(
                            io::ErrorKind::NotFound,
                            if v4 {
                                "no IPv4 address (SOCKS4 carries only IPv4)"
                            } else {
                                "no address"
                            },
                        ),
                    }),
                }
            })
            .await
        }
        _ => Ok(target),
    }
}

/// Connect to `target` through `proxy` (SOCKS CONNECT).
///
/// Names are resolved locally or sent to the proxy as the scheme says.
/// `socks6://` runs [`crate::socks6_connect`] with default options: one
/// flight, credentials inside the request. The
/// proxy connect, any local resolution and the handshake each have the
/// proxy's timeout. A refusal is [`ClientError::Refused`] with its code.
pub async fn connect<T: IntoTargetAddr>(
    proxy: &Proxy,
    target: T,
) -> Result<SocksStream, ClientError> {
    connect_inner(proxy, target.into_target_addr()?, None).await
}

/// Like [`connect`], but sends `initial` right behind the request, before
/// the reply arrives (Tor's optimistic data), which saves a round trip when
/// the client speaks first. For SOCKS5 without credentials the greeting,
/// the request and the data go out in one write (legal because the client
/// offers only method 00, so the proxy's choice is known in advance).
///
/// With `socks6://` the data is the request's initial data (up to 8192
/// bytes in the same write as the request and the credentials; the rest
/// after the authentication reply): that is what SOCKS 6 is for.
///
/// If the proxy refuses, the data is lost with the connection. Keep it
/// small: it is written before the reply is read.
pub async fn connect_with_data<T: IntoTargetAddr>(
    proxy: &Proxy,
    target: T,
    initial: &[u8],
) -> Result<SocksStream, ClientError> {
    connect_inner(proxy, target.into_target_addr()?, Some(initial)).await
}

async fn connect_inner(
    proxy: &Proxy,
    target: TargetAddr,
    initial: Option<&[u8]>,
) -> Result<SocksStream, ClientError> {
    let target = prepare_target(proxy, target).await?;
    if proxy.scheme.is_socks6() {
        return crate::socks6::socks6_connect(
            proxy,
            target,
            initial.unwrap_or_default(),
            &crate::socks6::Socks6Options::default(),
        )
        .await;
    }
    let stream = connect_to_proxy(proxy).await?;
    handshake(stream, proxy, Command::CONNECT, target, initial).await
}

/// Ask the proxy to resolve `name` (Tor's RESOLVE, `F0`). Needs `socks4a://`,
/// `socks5://` or `socks5h://` (the name always goes to the proxy).
pub async fn resolve(proxy: &Proxy, name: &str) -> Result<IpAddr, ClientError> {
    if matches!(proxy.scheme, Scheme::Socks4 | Scheme::Socks6) {
        return Err(ClientError::Unsupported(format!(
            "RESOLVE needs socks4a, socks5 or socks5h: {} cannot carry it",
            proxy.scheme
        )));
    }
    let target = TargetAddr::domain(name, 0).into_target_addr()?;
    let stream = connect_to_proxy(proxy).await?;
    let s = handshake(stream, proxy, Command::RESOLVE, target, None).await?;
    match &s.bound_addr().host {
        Host::Ip(ip) => Ok(*ip),
        Host::Domain(d) => Err(ClientError::UnexpectedReply(format!(
            "RESOLVE answered with the name {:?} instead of an address",
            d
        ))),
    }
}

/// Ask the proxy for the name of `ip` (Tor's RESOLVE_PTR, `F1`; SOCKS5 only).
pub async fn resolve_ptr(proxy: &Proxy, ip: IpAddr) -> Result<String, ClientError> {
    if !proxy.scheme.is_v5() {
        return Err(ClientError::Unsupported(
            "RESOLVE_PTR needs socks5 or socks5h".into(),
        ));
    }
    let stream = connect_to_proxy(proxy).await?;
    let s = handshake(
        stream,
        proxy,
        Command::RESOLVE_PTR,
        TargetAddr::ip(ip, 0),
        None,
    )
    .await?;
    match &s.bound_addr().host {
        Host::Domain(d) => Ok(d.clone()),
        Host::Ip(a) => Err(ClientError::UnexpectedReply(format!(
            "RESOLVE_PTR answered with the address {a} instead of a name"
        ))),
    }
}

/// Run a SOCKS handshake for `command` and `target` on an open stream to
/// the proxy (the target is sent as given: no local resolution), with the
/// proxy's credentials, under the proxy's timeout.
///
/// `optimistic`: data to send right behind the request (see
/// [`connect_with_data`]); with SOCKS5 and no credentials it also
/// pipelines the greeting and the request.
///
/// On success the reply's address is [`SocksStream::bound_addr`]; a failure
/// code is [`ClientError::Refused`].
///
/// `socks6://`: CONNECT and NOOP only, as [`crate::socks6_handshake`] with
/// default options (`optimistic` is the initial data).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    proxy: &Proxy,
    command: Command,
    target: TargetAddr,
    optimistic: Option<&[u8]>,
) -> Result<SocksStream<S>, ClientError> {
    if proxy.scheme.is_socks6() {
        if command != Command::CONNECT && command != Command::NOOP {
            return Err(ClientError::Unsupported(format!(
                "{command} over SOCKS 6 is not supported by this client"
            )));
        }
        return crate::socks6::socks6_handshake(
            stream,
            proxy,
            command,
            target,
            optimistic.unwrap_or_default(),
            &crate::socks6::Socks6Options::default(),
        )
        .await;
    }
    let version = proxy.scheme.version();
    if version == Version::V4 {
        if let Host::Domain(_) = target.host {
            return Err(ClientError::Unsupported(
                "socks4 cannot carry a host name (use socks4a)".into(),
            ));
        }
    }
    check_credentials(proxy)?;
    let req = ClientRequest {
        version,
        command,
        target,
        username: proxy.username.clone(),
        password: if proxy.scheme.is_v5() {
            proxy.password.clone()
        } else {
            None
        },
    };
    let (reply, leftover) =
        deadline(proxy, Stage::Handshake, drive(&mut stream, req, optimistic)).await?;
    if !reply.code.is_success() {
        return Err(ClientError::Refused {
            version,
            code: reply.code,
            raw: reply.raw_code,
        });
    }
    Ok(SocksStream::new(stream, leftover, reply.bound))
}

/// Drive the sans-IO client machine to the request's reply. Returns the
/// reply and the bytes received after it.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    req: ClientRequest,
    optimistic: Option<&[u8]>,
) -> Result<(sixsocks_proto::client::ClientReply, Vec<u8>), ClientError> {
    let version = req.version;
    let uses_auth = version == Version::V5 && req.username.is_some();
    let offered = if uses_auth {
        "username/password"
    } else {
        "no authentication"
    };
    let v5_request = if version == Version::V5 {
        Some(
            v5::Request {
                command: req.command,
                target: req.target.clone(),
            }
            .encode()
            .map_err(|e| invalid_target(e, &req.target))?,
        )
    } else {
        None
    };
    let target = req.target.clone();
    let (mut hs, mut out) = ClientHandshake::new(req).map_err(|e| invalid_target(e, &target))?;

    // Whether the request is already in `out`, and which `Send` of the
    // machine carries it (SOCKS5: the first without auth, the second with).
    let mut request_sent = false;
    match (&v5_request, optimistic) {
        (None, data) => {
            // SOCKS4/4a: the first flight is the request.
            out.extend_from_slice(data.unwrap_or_default());
            request_sent = true;
        }
        (Some(request), Some(data)) if !uses_auth => {
            out.extend_from_slice(request);
            out.extend_from_slice(data);
            request_sent = true;
        }
        _ => {}
    }
    let request_send_index = usize::from(uses_auth);
    send(stream, &out).await?;

    let mut sends = 0;
    loop {
        match hs.step() {
            Instruction::NeedMore(_) => read_into(stream, hs.input()).await?,
            Instruction::Send(mut bytes) => {
                let is_request = version == Version::V5 && sends == request_send_index;
                sends += 1;
                if is_request {
                    if request_sent {
                        continue;
                    }
                    bytes.extend_from_slice(optimistic.unwrap_or_default());
                }
                send(stream, &bytes).await?;
            }
            Instruction::Finished { value, rest } => return Ok((value, rest)),
            Instruction::Failed { error, .. } => {
                return Err(ClientError::from_proto(error, offered))
            }
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), ClientError> {
    stream.write_all(bytes).await.map_err(ClientError::Io)?;
    stream.flush().await.map_err(ClientError::Io)
}

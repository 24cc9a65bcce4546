//! Outbound TCP connections: happy eyeballs (RFC 8305) over every address
//! of a target, under one overall timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::error::RequestError;

/// Order addresses as RFC 8305 §4 asks: alternate families, starting with
/// the family of the resolver's first answer.
pub fn interleave(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut a, mut b): (Vec<IpAddr>, Vec<IpAddr>) =
        addrs.iter().partition(|ip| ip.is_ipv6() == first.is_ipv6());
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        match (a.pop(), b.pop()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out
}

/// Connect to `port` on the first of `addrs` that answers.
///
/// One attempt starts; each further address starts after `delay` or as
/// soon as the previous attempt fails, whichever comes first. The first
/// established connection wins and the others are dropped. When every
/// attempt fails the most telling error is returned (refused over
/// unreachable over anything else); when `timeout` expires first,
/// [`RequestError::ConnectTimeout`].
pub async fn happy_eyeballs(
    addrs: &[IpAddr],
    port: u16,
    delay: Duration,
    timeout: Duration,
) -> Result<TcpStream, RequestError> {
    happy_eyeballs_with(addrs, port, delay, timeout, SocketOptions::default())
        .await
        .map(|(s, _)| s)
}

/// Options for the outbound socket (SOCKS 6 stack options, proxy–remote leg).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// IP TOS (IPv4) or traffic class (IPv6).
    pub tos: Option<u8>,
    /// IP TTL (IPv4) or unicast hop limit (IPv6).
    pub ttl: Option<u8>,
    /// No fragmentation: DF on IPv4, no local fragmentation on IPv6.
    pub no_fragment: bool,
    /// Open the connection as Multipath TCP.
    pub mptcp: bool,
    /// Source address (egress selection by rule or user). Addresses of the
    /// other family must be filtered out before connecting.
    pub source: Option<IpAddr>,
    /// SO_MARK (Linux; needs CAP_NET_ADMIN). Failing to set it fails the
    /// attempt: the mark usually selects a route, and ignoring it would
    /// send the traffic where the operator said it must not go.
    pub mark: Option<u32>,
}

/// What [`SocketOptions`] the kernel actually took.
pub type Applied = SocketOptions;

/// [`happy_eyeballs`] with socket options; also returns those applied.
pub async fn happy_eyeballs_with(
    addrs: &[IpAddr],
    port: u16,
    delay: Duration,
    timeout: Duration,
    opts: SocketOptions,
) -> Result<(TcpStream, Applied), RequestError> {
    let order = interleave(addrs);
    if order.is_empty() {
        return Err(RequestError::HostUnreachable);
    }
    let run = async {
        // One address (an address target, or a name with one address): no
        // race to run, so no task to spawn. A spawned attempt wakes another
        // worker thread and may be connected there, waking the session back
        // across threads.
        if let [ip] = order[..] {
            return connect_one(SocketAddr::new(ip, port), opts)
                .await
                .map_err(RequestError::from_connect);
        }
        let mut pending = order.into_iter().map(|ip| SocketAddr::new(ip, port));
        let mut attempts: JoinSet<std::io::Result<(TcpStream, Applied)>> = JoinSet::new();
        let mut best: Option<RequestError> = None;
        if let Some(sa) = pending.next() {
            attempts.spawn(connect_one(sa, opts));
        }
        loop {
            let next_start = tokio::time::sleep(delay);
            tokio::select! {
                done = attempts.join_next() => match done {
                    Some(Ok(Ok(stream))) => return Ok(stream),
                    Some(Ok(Err(e))) => {
                        let e = RequestError::from_connect(e);
                        if best.as_ref().is_none_or(|b| rank(&e) > rank(b)) {
                            best = Some(e);
                        }
                        if let Some(sa) = pending.next() {
                            attempts.spawn(connect_one(sa, opts));
                        } else if attempts.is_empty() {
                            return Err(best.unwrap_or(RequestError::HostUnreachable));
                        }
                    }
                    Some(Err(join)) => {
                        best.get_or_insert(RequestError::Io(std::io::Error::other(join)));
                        if let Some(sa) = pending.next() {
                            attempts.spawn(connect_one(sa, opts));
                        } else if attempts.is_empty() {
                            return Err(best.unwrap_or(RequestError::HostUnreachable));
                        }
                    }
                    None => return Err(best.unwrap_or(RequestError::HostUnreachable)),
                },
                _ = next_start, if pending.len() > 0 => {
                    if let Some(sa) = pending.next() {
                        attempts.spawn(connect_one(sa, opts));
                    }
                }
            }
        }
    };
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(RequestError::ConnectTimeout));
    crate::metrics::connect_seconds(started.elapsed(), result.is_ok());
    result
}

fn rank(e: &RequestError) -> u8 {
    match e {
        RequestError::Refused => 3,
        RequestError::HostUnreachable => 2,
        RequestError::NetworkUnreachable => 1,
        _ => 0,
    }
}

async fn connect_one(sa: SocketAddr, opts: SocketOptions) -> std::io::Result<(TcpStream, Applied)> {
    if opts == SocketOptions::default() {
        let s = TcpStream::connect(sa).await?;
        s.set_nodelay(true)?;
        return Ok((s, opts));
    }
    let (socket, applied) = outbound_socket(sa, opts)?;
    let s = socket.connect(sa).await?;
    s.set_nodelay(true)?;
    Ok((s, applied))
}

/// A socket for `sa` with `opts` applied as far as the kernel allows.
/// MPTCP falls back to plain TCP where the kernel lacks it.
pub fn outbound_socket(
    sa: SocketAddr,
    opts: SocketOptions,
) -> std::io::Result<(tokio::net::TcpSocket, Applied)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = Domain::for_address(sa);
    let mut applied = SocketOptions::default();
    let socket = match opts.mptcp {
        true => match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
            Ok(s) => {
                applied.mptcp = true;
                s
            }
            Err(_) => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        },
        false => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
    };
    if let Some(tos) = opts.tos {
        let r = match sa {
            SocketAddr::V4(_) => socket.set_tos(u32::from(tos)),
            SocketAddr::V6(_) => socket.set_tclass_v6(u32::from(tos)),
        };
        if r.is_ok() {
            applied.tos = Some(tos);
        }
    }
    if let Some(ttl) = opts.ttl {
        let r = match sa {
            SocketAddr::V4(_) => socket.set_ttl(u32::from(ttl)),
            SocketAddr::V6(_) => socket.set_unicast_hops_v6(u32::from(ttl)),
        };
        if r.is_ok() {
            applied.ttl = Some(ttl);
        }
    }
    if opts.no_fragment && sixsocks_sys::set_dont_fragment(&socket, sa.is_ipv6()).is_ok() {
        applied.no_fragment = true;
    }
    if let Some(mark) = opts.mark {
        socket.set_mark(mark)?;
        applied.mark = Some(mark);
    }
    if let Some(src) = opts.source {
        socket.bind(&SocketAddr::new(src, 0).into())?;
        applied.source = Some(src);
    }
    socket.set_nonblocking(true)?;
    let std: std::net::TcpStream = socket.into();
    Ok((tokio::net::TcpSocket::from_std_stream(std), applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn interleaves_families_starting_with_the_first() {
        let v = [
            ip("::1"),
            ip("::2"),
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
        ];
        assert_eq!(
            interleave(&v),
            vec![
                ip("::1"),
                ip("10.0.0.1"),
                ip("::2"),
                ip("10.0.0.2"),
                ip("10.0.0.3")
            ]
        );
        assert!(interleave(&[]).is_empty());
    }

    #[tokio::test]
    async fn falls_back_to_the_address_that_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // ::1 is refused on this port (nothing listens there), 127.0.0.1 answers.
        let s = happy_eyeballs(
            &[ip("::1"), ip("127.0.0.1")],
            port,
            Duration::from_millis(250),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(s.peer_addr().unwrap().ip(), ip("127.0.0.1"));
    }

    #[tokio::test]
    async fn refused_everywhere_is_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = happy_eyeballs(
            &[ip("127.0.0.1")],
            port,
            Duration::from_millis(250),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RequestError::Refused), "{e:?}");
    }
}

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
    let order = interleave(addrs);
    if order.is_empty() {
        return Err(RequestError::HostUnreachable);
    }
    let run = async {
        let mut pending = order.into_iter().map(|ip| SocketAddr::new(ip, port));
        let mut attempts: JoinSet<std::io::Result<TcpStream>> = JoinSet::new();
        let mut best: Option<RequestError> = None;
        if let Some(sa) = pending.next() {
            attempts.spawn(connect_one(sa));
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
                            attempts.spawn(connect_one(sa));
                        } else if attempts.is_empty() {
                            return Err(best.unwrap_or(RequestError::HostUnreachable));
                        }
                    }
                    Some(Err(join)) => {
                        best.get_or_insert(RequestError::Io(std::io::Error::other(join)));
                        if let Some(sa) = pending.next() {
                            attempts.spawn(connect_one(sa));
                        } else if attempts.is_empty() {
                            return Err(best.unwrap_or(RequestError::HostUnreachable));
                        }
                    }
                    None => return Err(best.unwrap_or(RequestError::HostUnreachable)),
                },
                _ = next_start, if pending.len() > 0 => {
                    if let Some(sa) = pending.next() {
                        attempts.spawn(connect_one(sa));
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(RequestError::ConnectTimeout))
}

fn rank(e: &RequestError) -> u8 {
    match e {
        RequestError::Refused => 3,
        RequestError::HostUnreachable => 2,
        RequestError::NetworkUnreachable => 1,
        _ => 0,
    }
}

async fn connect_one(sa: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(sa).await?;
    s.set_nodelay(true)?;
    Ok(s)
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

//! A minimal SOCKS5 client (no authentication, CONNECT only), blocking and
//! async, a SOCKS 6 0-RTT CONNECT (through sixsocks-proto's client state
//! machine: no other SOCKS 6 implementation exists to measure against), and
//! the route a benchmark takes to its target: straight there (the limit) or
//! through a proxy.
//!
//! The greeting and the request are sent one after the other, each after the
//! previous answer, never pipelined: microsocks 1.0.3 hangs on pipelined
//! requests, and a benchmark must measure every peer doing the same work.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the load generator reaches its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A plain TCP connection to the target: the machine's limit.
    Direct,
    /// Through a SOCKS5 proxy at this address.
    Socks5(SocketAddr),
    /// Through a SOCKS 6 (draft -05) proxy at this address; the connection
    /// rate sends its echo bytes with the request (0-RTT).
    /// SOCKS 6 in this wire profile.
    Socks6(SocketAddr, sixsocks_proto::v6::Profile),
}

impl Route {
    /// Whether a proxy is in the path.
    pub fn is_proxy(&self) -> bool {
        !matches!(self, Route::Direct)
    }

    /// The address the load generator connects to.
    pub fn first_hop(&self, target: SocketAddr) -> SocketAddr {
        match *self {
            Route::Direct => target,
            Route::Socks5(p) | Route::Socks6(p, _) => p,
        }
    }
}

/// Bytes of the SOCKS5 greeting: version 5, one method, "no authentication".
pub const GREETING: [u8; 3] = [5, 1, 0];

/// The SOCKS5 CONNECT request for `target`.
pub fn connect_request(target: SocketAddr) -> Vec<u8> {
    let mut req = vec![5, 1, 0];
    match target {
        SocketAddr::V4(a) => {
            req.push(1);
            req.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            req.push(4);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    req
}

fn bad(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Checks the method selection answer.
pub fn check_method(m: [u8; 2]) -> io::Result<()> {
    if m == [5, 0] {
        Ok(())
    } else {
        Err(bad(format!("proxy refused method 00: answered {m:02x?}")))
    }
}

/// What is left to read of a reply after its first 4 bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyRest {
    /// This many more bytes (address and port).
    Fixed(usize),
    /// A domain name: one length byte, then that many bytes and the port.
    Domain,
}

/// Checks the first 4 bytes of a reply (version, code, reserved, address type).
pub fn check_reply_head(h: [u8; 4]) -> io::Result<ReplyRest> {
    if h[0] != 5 {
        return Err(bad(format!("reply version {:#04x}, not 5", h[0])));
    }
    if h[1] != 0 {
        return Err(bad(format!(
            "proxy answered CONNECT with code {:#04x}",
            h[1]
        )));
    }
    match h[3] {
        1 => Ok(ReplyRest::Fixed(4 + 2)),
        4 => Ok(ReplyRest::Fixed(16 + 2)),
        3 => Ok(ReplyRest::Domain),
        t => Err(bad(format!("reply address type {t:#04x}"))),
    }
}

/// SOCKS5 CONNECT on a connected blocking stream.
pub fn handshake_blocking(s: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    s.write_all(&GREETING)?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m)?;
    check_method(m)?;
    s.write_all(&connect_request(target))?;
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let rest = match check_reply_head(h)? {
        ReplyRest::Fixed(n) => n,
        ReplyRest::Domain => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l)?;
            usize::from(l[0]) + 2
        }
    };
    let mut skip = [0u8; 257];
    s.read_exact(&mut skip[..rest])?;
    Ok(())
}

/// SOCKS5 CONNECT on a connected tokio stream.
pub async fn handshake_async(s: &mut tokio::net::TcpStream, target: SocketAddr) -> io::Result<()> {
    s.write_all(&GREETING).await?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await?;
    check_method(m)?;
    s.write_all(&connect_request(target)).await?;
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await?;
    let rest = match check_reply_head(h)? {
        ReplyRest::Fixed(n) => n,
        ReplyRest::Domain => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            usize::from(l[0]) + 2
        }
    };
    let mut skip = [0u8; 257];
    s.read_exact(&mut skip[..rest]).await?;
    Ok(())
}

/// A blocking stream to `target` along `route`, handshake done, with
/// TCP_NODELAY set. `timeout` bounds each read during the handshake (and
/// stays set on the stream: callers change it if they need to).
pub fn connect_blocking(
    route: Route,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    connect_blocking_from(route, target, timeout, None)
}

/// [`connect_blocking`] from the local address `source` (any port), if given.
pub fn connect_blocking_from(
    route: Route,
    target: SocketAddr,
    timeout: Duration,
    source: Option<std::net::IpAddr>,
) -> io::Result<TcpStream> {
    if let Route::Socks6(..) = route {
        return Err(bad("the blocking client speaks SOCKS5 only".into()));
    }
    let hop = route.first_hop(target);
    let mut s = match source {
        None => TcpStream::connect_timeout(&hop, timeout)?,
        Some(ip) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(hop),
                socket2::Type::STREAM,
                None,
            )?;
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            sock.connect_timeout(&hop.into(), timeout)?;
            sock.into()
        }
    };
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    if route.is_proxy() {
        handshake_blocking(&mut s, target)?;
    }
    Ok(s)
}

/// The async twin of [`connect_blocking`] (no timeout: callers wrap it).
/// A SOCKS 6 route sends the request alone (no initial data).
pub async fn connect_async(route: Route, target: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let (s, early) = connect_with_data_async(route, target, &[]).await?;
    if !early.is_empty() {
        return Err(bad(format!(
            "{} bytes from the target before any request",
            early.len()
        )));
    }
    Ok(s)
}

/// Connects along `route` and sends `data` to the target: for SOCKS 6 in
/// the same flight as the request (0-RTT), otherwise after the handshake.
/// Returns the stream and the bytes of the target's answer that arrived
/// together with the proxy's replies (SOCKS 6 only; empty otherwise).
pub async fn connect_with_data_async(
    route: Route,
    target: SocketAddr,
    data: &[u8],
) -> io::Result<(tokio::net::TcpStream, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(route.first_hop(target)).await?;
    s.set_nodelay(true)?;
    match route {
        Route::Direct => {}
        Route::Socks5(_) => handshake_async(&mut s, target).await?,
        Route::Socks6(_, profile) => return socks6_handshake_async(s, target, data, profile).await,
    }
    s.write_all(data).await?;
    Ok((s, Vec::new()))
}

/// SOCKS 6 CONNECT, no authentication, `data` as initial data: one write,
/// then the authentication reply and the operation reply.
async fn socks6_handshake_async(
    mut s: tokio::net::TcpStream,
    target: SocketAddr,
    data: &[u8],
    profile: sixsocks_proto::v6::Profile,
) -> io::Result<(tokio::net::TcpStream, Vec<u8>)> {
    use sixsocks_proto::v6::client::{ClientRequest, Event, Final, Socks6Client};
    use sixsocks_proto::{Command, Instruction, TargetAddr};
    let mut req = ClientRequest::new(Command::CONNECT, TargetAddr::from(target));
    req.initial_data = data.to_vec();
    let (mut machine, first) = Socks6Client::with_profile(req, profile)
        .map_err(|e| bad(format!("SOCKS 6 request: {e}")))?;
    s.write_all(&first).await?;
    loop {
        match machine.step() {
            Instruction::NeedMore(_) => {
                let input = machine.input();
                match s.read(input.spare()).await? {
                    0 => input.close(),
                    n => input.filled(n),
                }
            }
            Instruction::Event(Event::Authenticated(_)) => {}
            Instruction::Finished {
                value: Final::Reply(reply),
                rest,
            } => {
                if !reply.code().is_success() {
                    return Err(bad(format!("SOCKS 6 proxy refused: {:?}", reply.code())));
                }
                return Ok((s, rest));
            }
            Instruction::Failed { error, .. } => return Err(bad(format!("SOCKS 6: {error}"))),
            other => return Err(bad(format!("SOCKS 6: unexpected step {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let r = connect_request("127.0.0.1:1080".parse().unwrap());
        assert_eq!(r, vec![5, 1, 0, 1, 127, 0, 0, 1, 0x04, 0x38]);
        let r = connect_request("[::1]:80".parse().unwrap());
        assert_eq!(r.len(), 4 + 16 + 2);
        assert_eq!(r[3], 4);
        assert_eq!(&r[20..], &[0, 80]);
    }

    #[test]
    fn reply_heads() {
        assert_eq!(check_reply_head([5, 0, 0, 1]).unwrap(), ReplyRest::Fixed(6));
        assert_eq!(
            check_reply_head([5, 0, 0, 4]).unwrap(),
            ReplyRest::Fixed(18)
        );
        assert_eq!(check_reply_head([5, 0, 0, 3]).unwrap(), ReplyRest::Domain);
        assert!(check_reply_head([5, 5, 0, 1]).is_err());
        assert!(check_reply_head([4, 0, 0, 1]).is_err());
        assert!(check_reply_head([5, 0, 0, 9]).is_err());
        assert!(check_method([5, 0xff]).is_err());
        assert!(check_method([5, 0]).is_ok());
    }
}

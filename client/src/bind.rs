//! BIND through a proxy (SOCKS4, SOCKS4a, SOCKS5): the proxy listens for
//! one inbound connection on the client's behalf.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sixsocks_client::{Proxy, SocksListener};
//!
//! let proxy: Proxy = "socks5://127.0.0.1:1080".parse()?;
//! // The host expected to connect (0.0.0.0:0: anyone, if the proxy allows it).
//! let listener = SocksListener::bind(&proxy, ("192.0.2.7", 0)).await?;
//! println!("tell the peer to connect to {}", listener.bind_addr());
//! let (stream, peer) = listener.accept().await?;
//! println!("{peer} connected");
//! # drop(stream); Ok(()) }
//! ```
//!
//! The protocol has two replies: the first, read by [`SocksListener::bind`],
//! says where the proxy listens; the second, read by
//! [`SocksListener::accept`], comes when a host connects and names it. After
//! it the connection to the proxy carries the inbound connection's bytes.

use std::net::IpAddr;

use sixsocks_proto::parse::Parsed;
use sixsocks_proto::{v4, v5, Command, Host, ProtoError, ReplyCode, TargetAddr, Version};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::connect::{connect_to_proxy, handshake, prepare_target};
use crate::error::ClientError;
use crate::proxy::Proxy;
use crate::stream::SocksStream;
use crate::target::IntoTargetAddr;

/// Largest second reply: a SOCKS5 reply with a 255-byte name.
const MAX_REPLY: usize = 4 + 1 + 255 + 2;

/// A BIND in progress: the proxy listens and has told us where.
///
/// Like tokio's `TcpListener`, but for exactly one connection (the SOCKS
/// protocol allows no more): [`accept`](Self::accept) consumes it. Dropping
/// it closes the connection to the proxy, which ends the BIND.
#[derive(Debug)]
pub struct SocksListener {
    stream: TcpStream,
    /// Bytes received after the first reply (part or all of the second).
    buffered: Vec<u8>,
    version: Version,
    bind_addr: TargetAddr,
}

impl SocksListener {
    /// Connect to the proxy, send BIND and read the first reply.
    ///
    /// `expected_peer` is the host that will connect (the RFC's DST.ADDR:
    /// proxies such as sixsocks accept only that host); `("0.0.0.0", 0)`
    /// names nobody in particular. SOCKS4 needs an IPv4 address (names are
    /// resolved locally for `socks4://` and `socks5://`, as for CONNECT).
    ///
    /// The proxy connect and the first reply are bounded by the proxy's
    /// timeout. A refusal is [`ClientError::Refused`].
    pub async fn bind<T: IntoTargetAddr>(
        proxy: &Proxy,
        expected_peer: T,
    ) -> Result<SocksListener, ClientError> {
        let target = prepare_target(proxy, expected_peer.into_target_addr()?).await?;
        let stream = connect_to_proxy(proxy).await?;
        let proxy_ip = stream.peer_addr().ok().map(|a| a.ip());
        let first = handshake(stream, proxy, Command::BIND, target, None).await?;
        let reported = first.bound_addr().clone();
        let (stream, buffered) = first.into_inner();
        Ok(SocksListener {
            stream,
            buffered,
            version: proxy.scheme.version(),
            bind_addr: substitute_unspecified(reported, proxy_ip),
        })
    }

    /// Where the proxy listens: the address the peer must connect to.
    ///
    /// When the proxy answered with an unspecified address (`0.0.0.0`,
    /// which the SOCKS4 protocol defines as "the proxy's own address", or
    /// `::`), this is the proxy's IP address as this client reached it.
    pub fn bind_addr(&self) -> &TargetAddr {
        &self.bind_addr
    }

    /// Wait for the second reply: a host connected to the proxy. Returns
    /// the stream (now carrying that connection's bytes both ways) and the
    /// address of the host that connected, as the proxy reported it.
    ///
    /// There is no deadline here (the proxy has its own, and a peer may
    /// take its time): wrap the call in `tokio::time::timeout` if needed.
    /// If the proxy gives up it answers with a failure code
    /// ([`ClientError::Refused`]) or closes the connection
    /// ([`ClientError::ProxyClosed`]).
    pub async fn accept(self) -> Result<(SocksStream, TargetAddr), ClientError> {
        let SocksListener {
            mut stream,
            mut buffered,
            version,
            ..
        } = self;
        loop {
            match parse_reply(version, &buffered).map_err(ClientError::Protocol)? {
                Parsed::Complete {
                    value: (code, raw, peer),
                    consumed,
                } => {
                    if !code.is_success() {
                        return Err(ClientError::Refused { version, code, raw });
                    }
                    let rest = buffered.split_off(consumed);
                    return Ok((SocksStream::new(stream, rest, peer.clone()), peer));
                }
                Parsed::Incomplete { needed } => {
                    if buffered.len() + needed > MAX_REPLY {
                        return Err(ClientError::Protocol(ProtoError::MessageTooLong(MAX_REPLY)));
                    }
                    let start = buffered.len();
                    buffered.resize(start + needed, 0);
                    let got = stream
                        .read(&mut buffered[start..])
                        .await
                        .map_err(ClientError::Io)?;
                    buffered.truncate(start + got);
                    if got == 0 {
                        return Err(ClientError::ProxyClosed);
                    }
                }
            }
        }
    }
}

/// Parse the second BIND reply of `version`: code, raw code, address.
fn parse_reply(
    version: Version,
    buf: &[u8],
) -> Result<Parsed<(ReplyCode, u8, TargetAddr)>, ProtoError> {
    Ok(match version {
        Version::V4 | Version::V4a => v4::Reply::parse(buf)?.map(|r| {
            (
                ReplyCode::from_v4(r.cd),
                r.cd,
                TargetAddr::ip(r.ip.into(), r.port),
            )
        }),
        Version::V5 => v5::Reply::parse(buf)?.map(|r| (r.code(), r.rep, r.bound)),
    })
}

/// Replace an unspecified IP (`0.0.0.0`, `::`) by the proxy's own IP.
pub(crate) fn substitute_unspecified(addr: TargetAddr, proxy_ip: Option<IpAddr>) -> TargetAddr {
    match (&addr.host, proxy_ip) {
        (Host::Ip(ip), Some(proxy_ip)) if ip.is_unspecified() => {
            TargetAddr::ip(proxy_ip.to_canonical(), addr.port)
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn unspecified_becomes_the_proxy_ip() {
        let proxy = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            substitute_unspecified(TargetAddr::ip(Ipv4Addr::UNSPECIFIED.into(), 7), proxy),
            TargetAddr::ip(Ipv4Addr::new(192, 0, 2, 1).into(), 7)
        );
        assert_eq!(
            substitute_unspecified(TargetAddr::ip(Ipv6Addr::UNSPECIFIED.into(), 8), proxy),
            TargetAddr::ip(Ipv4Addr::new(192, 0, 2, 1).into(), 8)
        );
        let real = TargetAddr::ip(Ipv4Addr::new(10, 0, 0, 1).into(), 9);
        assert_eq!(substitute_unspecified(real.clone(), proxy), real);
        let name = TargetAddr::domain("proxy.example", 9);
        assert_eq!(substitute_unspecified(name.clone(), proxy), name);
    }

    #[test]
    fn second_reply_of_each_version() {
        let v4 = [0x00, 0x5A, 0x1F, 0x90, 127, 0, 0, 2, b'x'];
        match parse_reply(Version::V4, &v4).unwrap() {
            Parsed::Complete { value, consumed } => {
                assert_eq!(consumed, 8);
                assert_eq!(
                    value,
                    (
                        ReplyCode::Succeeded,
                        0x5A,
                        TargetAddr::ip(Ipv4Addr::new(127, 0, 0, 2).into(), 8080)
                    )
                );
            }
            p => panic!("{p:?}"),
        }
        let v5 = [0x05, 0x06, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        match parse_reply(Version::V5, &v5).unwrap() {
            Parsed::Complete { value, .. } => assert_eq!(value.0, ReplyCode::TtlExpired),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            parse_reply(Version::V5, &v5[..5]).unwrap(),
            Parsed::Incomplete { .. }
        ));
        assert!(parse_reply(Version::V5, &[0x04, 0, 0, 1]).is_err());
    }
}

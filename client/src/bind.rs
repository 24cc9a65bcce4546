//! BIND through a proxy (SOCKS4, SOCKS4a, SOCKS5, SOCKS 6): the proxy
//! listens for one inbound connection on the client's behalf; with SOCKS 6
//! and a listen backlog ([`SocksListener::bind_backlog`]), for several.
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
//!
//! SOCKS 6 (`socks6://`): the request's address is the desired bind address
//! (`0.0.0.0:0`: any), and the replies are operation replies (a refusal is
//! [`ClientError::Socks6Refused`]). With a listen backlog the BIND's own
//! connection carries no data and keeps the proxy's listener open; each
//! inbound connection is taken by a further BIND naming the bound address
//! ([`SocksBacklog::accept`]).

use std::net::IpAddr;

use sixsocks_proto::parse::Parsed;
use sixsocks_proto::{
    v4, v5, Command, Host, Instruction, PeerError, ReplyCode, TargetAddr, Version,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use sixsocks_proto::v6::client::{Final, Socks6Client};
use sixsocks_proto::v6::{Leg, StackRequests};

use crate::connect::{connect_to_proxy, handshake, prepare_target};
use crate::error::ClientError;
use crate::proxy::Proxy;
use crate::socks6::{Opened, OpenedAt};
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
    /// SOCKS 6: the handshake machine, waiting for the second reply.
    v6: Option<Box<Socks6Client>>,
}

impl SocksListener {
    /// Connect to the proxy, send BIND and read the first reply.
    ///
    /// `expected_peer` is the host that will connect (the RFC's DST.ADDR:
    /// proxies such as sixsocks accept only that host); `("0.0.0.0", 0)`
    /// names nobody in particular. SOCKS4 needs an IPv4 address (names are
    /// resolved locally for `socks4://` and `socks5://`, as for CONNECT).
    /// For `socks6://` it is the desired bind address instead (`0.0.0.0:0`:
    /// any address and port).
    ///
    /// The proxy connect and the first reply are bounded by the proxy's
    /// timeout. A refusal is [`ClientError::Refused`].
    pub async fn bind<T: IntoTargetAddr>(
        proxy: &Proxy,
        expected_peer: T,
    ) -> Result<SocksListener, ClientError> {
        if proxy.scheme.is_socks6() {
            let target = expected_peer.into_target_addr()?;
            return bind_v6(proxy, target, None).await?.into_listener(proxy);
        }
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
            v6: None,
        })
    }

    /// SOCKS 6 only: BIND with a listen backlog (draft -05 §8.1.5). The
    /// proxy listens on `bind_addr` (the desired bind address; `0.0.0.0:0`
    /// for any) with a backlog of `backlog` connections (at least 2; the
    /// proxy may grant fewer) for as long as the returned
    /// [`SocksBacklog`] lives; each inbound connection is then taken with
    /// [`SocksBacklog::accept`], which sends a further BIND naming the
    /// bound address.
    ///
    /// A proxy that does not grant a backlog is
    /// [`ClientError::UnexpectedReply`].
    pub async fn bind_backlog<T: IntoTargetAddr>(
        proxy: &Proxy,
        bind_addr: T,
        backlog: u16,
    ) -> Result<SocksBacklog, ClientError> {
        if !proxy.scheme.is_socks6() {
            return Err(ClientError::Unsupported(format!(
                "a listen backlog needs socks6, not {}",
                proxy.scheme
            )));
        }
        if backlog < 2 {
            return Err(ClientError::Unsupported(format!(
                "a listen backlog must be at least 2, not {backlog}"
            )));
        }
        let target = bind_addr.into_target_addr()?;
        let opened = bind_v6(proxy, target, Some(backlog)).await?;
        if !matches!(opened.at, OpenedAt::Listening) {
            return Err(ClientError::UnexpectedReply(
                "the proxy did not grant a listen backlog".into(),
            ));
        }
        let granted = opened
            .reply
            .options
            .stack_requests(Leg::PROXY_REMOTE)
            .listen_backlog
            .unwrap_or(backlog);
        let proxy_ip = opened.stream.peer_addr().ok().map(|a| a.ip());
        let reported = opened.reply.bound.clone();
        Ok(SocksBacklog {
            control: opened.stream,
            proxy: proxy.clone(),
            bind_addr: substitute_unspecified(reported.clone(), proxy_ip),
            reported,
            granted,
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
            v6,
            ..
        } = self;
        if let Some(mut machine) = v6 {
            return accept_v6(stream, &mut machine).await;
        }
        loop {
            match parse_reply(version, &buffered).map_err(|e| ClientError::Protocol(e.into()))? {
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
                        return Err(ClientError::Protocol(
                            PeerError::MessageTooLong(MAX_REPLY).into(),
                        ));
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

/// Send a SOCKS 6 BIND (with a listen backlog option if `backlog`) and read
/// the first operation reply.
async fn bind_v6(
    proxy: &Proxy,
    target: TargetAddr,
    backlog: Option<u16>,
) -> Result<Opened, ClientError> {
    let extra = match backlog {
        Some(b) => StackRequests {
            listen_backlog: Some(b),
            ..StackRequests::default()
        }
        .to_options(Leg::PROXY_REMOTE),
        None => Vec::new(),
    };
    crate::socks6::open(proxy, Command::BIND, target, extra, proxy.socks6_profile).await
}

impl Opened {
    /// A BIND's first reply as a listener waiting for the second.
    fn into_listener(self, proxy: &Proxy) -> Result<SocksListener, ClientError> {
        if !matches!(self.at, OpenedAt::Bound) {
            return Err(ClientError::UnexpectedReply(
                "a BIND answered with a listen backlog nobody asked for".into(),
            ));
        }
        let proxy_ip = self.stream.peer_addr().ok().map(|a| a.ip());
        Ok(SocksListener {
            stream: self.stream,
            // The machine holds what the proxy sent after the first reply.
            buffered: Vec::new(),
            version: proxy.scheme.version(),
            bind_addr: substitute_unspecified(self.reply.bound, proxy_ip),
            v6: Some(Box::new(self.machine)),
        })
    }
}

/// SOCKS 6: read the second operation reply with the machine.
async fn accept_v6(
    mut stream: TcpStream,
    machine: &mut Socks6Client,
) -> Result<(SocksStream, TargetAddr), ClientError> {
    loop {
        match machine.step() {
            Instruction::NeedMore(_) => {
                crate::to_proxy::read_into(&mut stream, machine.input()).await?
            }
            Instruction::Finished {
                value: Final::Reply(reply),
                rest,
            } => {
                if !reply.code().is_success() {
                    return Err(ClientError::Socks6Refused {
                        code: reply.code(),
                        raw: reply.rep.0,
                        token: None,
                    });
                }
                let peer = reply.bound;
                return Ok((SocksStream::new(stream, rest, peer.clone()), peer));
            }
            Instruction::Failed { error, .. } => return Err(ClientError::from_machine(error)),
            _ => {
                return Err(ClientError::Protocol(
                    PeerError::Unexpected("something other than BIND's second operation reply")
                        .into(),
                ))
            }
        }
    }
}

/// A SOCKS 6 BIND with a listen backlog: the proxy keeps listening as long
/// as this lives (dropping it closes the connection, and the listener).
/// Made by [`SocksListener::bind_backlog`].
#[derive(Debug)]
pub struct SocksBacklog {
    /// The BIND's own connection: it carries no data, and the proxy's
    /// listener lives as long as it does.
    control: TcpStream,
    proxy: Proxy,
    /// The bound address as the proxy reported it (named in later BINDs).
    reported: TargetAddr,
    bind_addr: TargetAddr,
    granted: u16,
}

impl SocksBacklog {
    /// Where the proxy listens (an unspecified address replaced by the
    /// proxy's IP, as for [`SocksListener::bind_addr`]).
    pub fn bind_addr(&self) -> &TargetAddr {
        &self.bind_addr
    }

    /// The backlog the proxy granted.
    pub fn backlog(&self) -> u16 {
        self.granted
    }

    /// Send a further BIND naming the bound address and read its first
    /// reply: the returned listener's [`accept`](SocksListener::accept)
    /// waits for the next inbound connection the proxy takes from its
    /// backlog (connections made before are queued by the proxy's kernel).
    pub async fn next(&self) -> Result<SocksListener, ClientError> {
        if self.is_closed() {
            return Err(ClientError::ProxyClosed);
        }
        bind_v6(&self.proxy, self.reported.clone(), None)
            .await?
            .into_listener(&self.proxy)
    }

    /// [`next`](Self::next), then [`accept`](SocksListener::accept): the
    /// next inbound connection and the address of the host that made it.
    /// Like [`SocksListener::accept`], the wait for a connection has no
    /// deadline.
    pub async fn accept(&self) -> Result<(SocksStream, TargetAddr), ClientError> {
        self.next().await?.accept().await
    }

    /// Whether the proxy has closed the BIND's connection (which ends
    /// its listener).
    pub fn is_closed(&self) -> bool {
        let mut scratch = [0u8; 64];
        match self.control.try_read(&mut scratch) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Parse the second BIND reply of `version`: code, raw code, address.
fn parse_reply(
    version: Version,
    buf: &[u8],
) -> Result<Parsed<(ReplyCode, u8, TargetAddr)>, PeerError> {
    Ok(match version {
        Version::V4 | Version::V4a => v4::Reply::parse(buf)?.map(|r| {
            (
                ReplyCode::from_v4(r.cd),
                r.cd.0,
                TargetAddr::ip(r.ip.into(), r.port),
            )
        }),
        Version::V5 => v5::Reply::parse(buf)?.map(|r| (r.code(), r.rep.0, r.bound)),
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

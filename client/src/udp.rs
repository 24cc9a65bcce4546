//! UDP ASSOCIATE through a SOCKS5 proxy (RFC 1928 §7) or a SOCKS 6 one
//! (draft -05, `socks6://`): [`SocksDatagram`], a UDP socket whose
//! datagrams go through the proxy's relay.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sixsocks_client::{Proxy, SocksDatagram};
//!
//! let proxy: Proxy = "socks5h://127.0.0.1:1080".parse()?;
//! let udp = SocksDatagram::associate(&proxy, None).await?;
//! udp.send_to(b"query", ("dns.example", 53)).await?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = udp.recv_from(&mut buf).await?;
//! println!("{n} bytes from {from}");
//! # Ok(()) }
//! ```
//!
//! The association lives as long as its TCP connection to the proxy, which
//! the [`SocksDatagram`] holds: dropping it ends the association. When the
//! proxy ends it (its TCP connection closes), [`SocksDatagram::recv_from`]
//! and [`SocksDatagram::send_to`] fail with `ConnectionAborted`.
//!
//! Every datagram carries the header `RSV FRAG ATYP DST.ADDR DST.PORT`. On
//! receipt the header is stripped and its address returned as the source;
//! datagrams from anywhere but the relay, and datagrams whose header does
//! not parse, are skipped. Fragments (FRAG ≠ 0) are reassembled with
//! `sixsocks_proto::udp::Reassembler` (a 5 s timer per sequence). On send,
//! [`SocksDatagram::set_fragment_size`] splits payloads into fragments (only
//! proxies that reassemble, such as sixsocks, can use that: the RFC lets a
//! proxy drop every fragment).
//!
//! SOCKS 6: the operation reply is followed by the association id on TCP;
//! every datagram carries the profile's datagram header (-05: `06 00 ID(4)
//! PORT ATYP ADDR`), written and read by the association's profile's codec
//! ([`SocksDatagram::profile`]; [`SocksDatagram::associate_socks6`] chooses
//! it, `associate` speaks the proxy's, [`Proxy::socks6_profile`]). `associate` sends
//! the empty datagram to `0.0.0.0:0` that asks for the association
//! confirmation, again every 500 ms (five times at most, within the proxy's
//! timeout), until the proxy's `00` arrives on TCP. On receipt datagrams
//! naming another association are skipped. SOCKS 6 has no fragmentation.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sixsocks_proto::udp::{self, Fragment, Reassembler, ReassemblyLimits, UdpHeader};
use sixsocks_proto::v6::client::Final;
use sixsocks_proto::v6::{AssociationId, Codec, DatagramHeader, Profile};
use sixsocks_proto::{Command, Host, Instruction, PeerError, TargetAddr};
use tokio::net::{TcpStream, UdpSocket};

use crate::bind::substitute_unspecified;
use crate::connect::{connect_to_proxy, handshake, prepare_target};
use crate::error::ClientError;
use crate::error::Stage;
use crate::proxy::Proxy;
use crate::socks6::{Opened, OpenedAt};
use crate::target::IntoTargetAddr;
use crate::to_proxy::{deadline, read_into};

/// Receive buffer: the largest UDP datagram.
const RECV_BUF: usize = 65_536;

/// A UDP socket relayed through a SOCKS5 proxy, in the style of tokio's
/// `UdpSocket`: [`send_to`](Self::send_to) and
/// [`recv_from`](Self::recv_from) take `&self`, so one value can be shared
/// (e.g. in an `Arc`) between a sending and a receiving task.
pub struct SocksDatagram {
    /// The association's TCP connection: it lives as long as this does.
    control: TcpStream,
    socket: UdpSocket,
    relay: SocketAddr,
    proxy: Proxy,
    /// Largest payload per fragment on send; 0 sends whole datagrams.
    fragment_size: AtomicUsize,
    /// Set once the control connection is seen closed.
    closed: AtomicBool,
    recv_buf: Mutex<Vec<u8>>,
    reassembler: Mutex<Reassembler>,
    /// SOCKS 6: the association id every datagram carries, and the profile
    /// whose datagram header carries it.
    v6: Option<V6Association>,
}

/// A SOCKS 6 association: its id and wire profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct V6Association {
    id: AssociationId,
    profile: Profile,
}

impl V6Association {
    fn codec(self) -> &'static dyn Codec {
        self.profile.codec()
    }
}

impl std::fmt::Debug for SocksDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocksDatagram")
            .field("proxy", &self.proxy.to_string())
            .field("relay", &self.relay)
            .field("local", &self.socket.local_addr().ok())
            .field("fragment_size", &self.fragment_size())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl SocksDatagram {
    /// Connect to the proxy, send UDP ASSOCIATE and bind the local socket.
    ///
    /// With `local_bind`, that local address is bound first and declared in
    /// the request (the proxy then accepts datagrams only from its port);
    /// it must be of the relay's address family. Without it, the request
    /// declares `0.0.0.0:0` (RFC 1928: "not in possession of the
    /// information") and a socket of the relay's family is bound on the
    /// address this host used to reach the proxy (the proxy learns the port
    /// from the first datagram).
    ///
    /// If the proxy answers with an unspecified relay address (`0.0.0.0` or
    /// `::`), datagrams go to the proxy's own IP. SOCKS5 and SOCKS 6 (which
    /// declares `0.0.0.0:0`, "any", as the desired relay address, and waits
    /// for the association confirmation before returning).
    pub async fn associate(
        proxy: &Proxy,
        local_bind: Option<SocketAddr>,
    ) -> Result<SocksDatagram, ClientError> {
        if proxy.scheme.is_socks6() {
            return associate_v6(proxy, local_bind, proxy.socks6_profile).await;
        }
        if !proxy.scheme.is_v5() {
            return Err(ClientError::Unsupported(format!(
                "UDP ASSOCIATE needs socks5 or socks5h, not {}",
                proxy.scheme
            )));
        }
        let early = match local_bind {
            Some(addr) => Some(UdpSocket::bind(addr).await.map_err(ClientError::Io)?),
            None => None,
        };
        let declared = match &early {
            Some(s) => TargetAddr::from(s.local_addr().map_err(ClientError::Io)?),
            None => TargetAddr::unspecified(),
        };
        let control = connect_to_proxy(proxy).await?;
        let proxy_ip = control.peer_addr().ok().map(|a| a.ip());
        let to_proxy_from = control.local_addr().map_err(ClientError::Io)?.ip();
        let reply = handshake(control, proxy, Command::UDP_ASSOCIATE, declared, None).await?;
        let reported = reply.bound_addr().clone();
        let (control, _unexpected) = reply.into_inner();
        let relay = relay_addr(reported, proxy_ip)?;
        let socket = local_socket(early, relay, to_proxy_from).await?;
        Ok(SocksDatagram {
            control,
            socket,
            relay,
            proxy: proxy.clone(),
            fragment_size: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            recv_buf: Mutex::new(vec![0u8; RECV_BUF]),
            reassembler: Mutex::new(Reassembler::new(ReassemblyLimits::default())),
            v6: None,
        })
    }

    /// [`associate`](Self::associate) over SOCKS 6 in `profile`, whatever
    /// the proxy's scheme (as [`socks6_connect`](crate::socks6_connect)).
    pub async fn associate_socks6(
        proxy: &Proxy,
        local_bind: Option<SocketAddr>,
        profile: Profile,
    ) -> Result<SocksDatagram, ClientError> {
        associate_v6(proxy, local_bind, profile).await
    }

    /// The SOCKS 6 wire profile of the association (`None` for SOCKS5).
    pub fn profile(&self) -> Option<Profile> {
        self.v6.map(|a| a.profile)
    }

    /// The proxy's relay: where datagrams are sent, and the only source
    /// accepted.
    pub fn relay_addr(&self) -> SocketAddr {
        self.relay
    }

    /// The local UDP socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Split payloads longer than `size` bytes into fragments of at most
    /// `size` payload bytes each (RFC 1928 §7), or (`None`) never. A payload
    /// that needs more than 127 fragments cannot be sent. `Some(0)` is an
    /// `InvalidInput` error; `Some(_)` on a SOCKS 6 association is
    /// `Unsupported`.
    pub fn set_fragment_size(&self, size: Option<usize>) -> io::Result<()> {
        let v = match size {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "fragment size 0",
                ))
            }
            Some(_) if self.v6.is_some() => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "SOCKS 6 datagrams have no fragmentation",
                ))
            }
            Some(n) => n,
            None => 0,
        };
        self.fragment_size.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// The fragment size set by [`set_fragment_size`](Self::set_fragment_size).
    pub fn fragment_size(&self) -> Option<usize> {
        match self.fragment_size.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Whether the proxy has been seen closing the association.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Send `buf` to `target` through the relay; returns `buf.len()`.
    ///
    /// Names are resolved locally with `socks5://` and sent to the proxy
    /// with `socks5h://`. Fails with `ConnectionAborted` once the proxy
    /// closed the association, `InvalidInput` for a target or payload that
    /// cannot be expressed (too many fragments, a bad name).
    pub async fn send_to<T: IntoTargetAddr>(&self, buf: &[u8], target: T) -> io::Result<usize> {
        self.check_control()?;
        let target = target.into_target_addr().map_err(to_io)?;
        let target = prepare_target(&self.proxy, target).await.map_err(to_io)?;
        if let Some(assoc) = self.v6 {
            let dgram = assoc
                .codec()
                .datagram(
                    &DatagramHeader {
                        association: assoc.id,
                        target,
                    },
                    buf,
                )
                .map_err(invalid_input)?;
            self.socket.send_to(&dgram, self.relay).await?;
            return Ok(buf.len());
        }
        match self.fragment_size() {
            Some(size) if buf.len() > size => {
                let pieces = udp::fragment(&target, buf, size).map_err(invalid_input)?;
                for piece in pieces {
                    self.socket.send_to(&piece, self.relay).await?;
                }
            }
            _ => {
                let dgram = UdpHeader {
                    frag: udp::STANDALONE,
                    target,
                }
                .datagram(buf)
                .map_err(invalid_input)?;
                self.socket.send_to(&dgram, self.relay).await?;
            }
        }
        Ok(buf.len())
    }

    /// Receive one datagram (reassembled if it came in fragments): its
    /// payload goes into `buf` (truncated if `buf` is too small, as with
    /// any UDP socket) and the address in its header, the remote host that
    /// sent it, is returned with the payload length copied.
    ///
    /// Fails with `ConnectionAborted` once the proxy has closed the
    /// association's TCP connection (after the datagrams already received
    /// have been read).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, TargetAddr)> {
        if self.is_closed() {
            return Err(aborted());
        }
        loop {
            tokio::select! {
                biased;
                r = self.socket.readable() => r?,
                r = self.control.readable() => {
                    r?;
                    self.check_control()?;
                    continue;
                }
            }
            if let Some(got) = self.try_take(buf)? {
                return Ok(got);
            }
        }
    }

    /// Read one datagram if one is ready: `None` when there is none, or it
    /// is not from the relay, not a SOCKS datagram, or a fragment that does
    /// not complete a sequence.
    fn try_take(&self, buf: &mut [u8]) -> io::Result<Option<(usize, TargetAddr)>> {
        let mut rbuf = self.recv_buf.lock().unwrap_or_else(|e| e.into_inner());
        let (n, from) = match self.socket.try_recv_from(&mut rbuf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        if SocketAddr::new(from.ip().to_canonical(), from.port()) != self.relay {
            return Ok(None); // Not from the relay: not ours.
        }
        if let Some(assoc) = self.v6 {
            let Some((source, data)) = strip_v6(assoc, &rbuf[..n]) else {
                return Ok(None); // Not a SOCKS 6 datagram, or not ours.
            };
            let k = data.len().min(buf.len());
            buf[..k].copy_from_slice(&data[..k]);
            return Ok(Some((k, source)));
        }
        let Ok((header, offset)) = UdpHeader::parse(&rbuf[..n]) else {
            return Ok(None); // Not a SOCKS datagram.
        };
        let done = self
            .reassembler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(header, &rbuf[offset..n], Instant::now());
        match done {
            Fragment::Complete(source, data) => {
                let k = data.len().min(buf.len());
                buf[..k].copy_from_slice(&data[..k]);
                Ok(Some((k, source)))
            }
            Fragment::Queued | Fragment::Dropped(_) => Ok(None),
        }
    }

    /// Error out if the control connection has closed (reading and
    /// discarding anything the proxy sent on it, which it should not).
    fn check_control(&self) -> io::Result<()> {
        if self.is_closed() {
            return Err(aborted());
        }
        let mut scratch = [0u8; 256];
        match self.control.try_read(&mut scratch) {
            Ok(0) => {
                self.closed.store(true, Ordering::Relaxed);
                Err(aborted())
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => {
                self.closed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// The relay's address from the reply (an unspecified IP replaced by the
/// proxy's own).
fn relay_addr(reported: TargetAddr, proxy_ip: Option<IpAddr>) -> Result<SocketAddr, ClientError> {
    match substitute_unspecified(reported.clone(), proxy_ip) {
        TargetAddr {
            host: Host::Ip(ip),
            port,
        } if port != 0 => Ok(SocketAddr::new(ip.to_canonical(), port)),
        _ => Err(ClientError::UnexpectedReply(format!(
            "UDP ASSOCIATE answered with the relay address {reported}, \
             which is not an address to send datagrams to"
        ))),
    }
}

/// The local socket: `early` if bound already (it must be of the relay's
/// family), else a new one on the address used to reach the proxy.
async fn local_socket(
    early: Option<UdpSocket>,
    relay: SocketAddr,
    to_proxy_from: IpAddr,
) -> Result<UdpSocket, ClientError> {
    Ok(match early {
        Some(s) => {
            let local = s.local_addr().map_err(ClientError::Io)?;
            if local.is_ipv4() != relay.is_ipv4() {
                return Err(ClientError::Unsupported(format!(
                    "the proxy's UDP relay is {relay}, which the local socket {local} \
                     cannot reach (another address family)"
                )));
            }
            s
        }
        None => {
            let ip = match (to_proxy_from.to_canonical(), relay.ip()) {
                (ip @ IpAddr::V4(_), IpAddr::V4(_)) | (ip @ IpAddr::V6(_), IpAddr::V6(_)) => ip,
                (_, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                (_, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            UdpSocket::bind(SocketAddr::new(ip, 0))
                .await
                .map_err(ClientError::Io)?
        }
    })
}

/// How long to wait for the SOCKS 6 association confirmation before
/// sending the empty datagram again.
const CONFIRM_RETRY: Duration = Duration::from_millis(500);
/// How many times the empty datagram is sent at most (all within the
/// proxy's timeout).
const CONFIRM_ATTEMPTS: u32 = 5;

/// UDP ASSOCIATE over SOCKS 6: request (desired relay address: any),
/// operation reply, association id; then the empty datagram to `0.0.0.0:0`
/// that asks for the confirmation, resent every [`CONFIRM_RETRY`] (at most
/// [`CONFIRM_ATTEMPTS`] times) until the proxy's `00` arrives on TCP.
async fn associate_v6(
    proxy: &Proxy,
    local_bind: Option<SocketAddr>,
    profile: Profile,
) -> Result<SocksDatagram, ClientError> {
    let early = match local_bind {
        Some(addr) => Some(UdpSocket::bind(addr).await.map_err(ClientError::Io)?),
        None => None,
    };
    let opened = crate::socks6::open(
        proxy,
        Command::UDP_ASSOCIATE,
        TargetAddr::unspecified(),
        Vec::new(),
        profile,
    )
    .await?;
    let OpenedAt::Udp(id) = opened.at else {
        return Err(ClientError::UnexpectedReply(
            "UDP ASSOCIATE answered without an association id".into(),
        ));
    };
    let Opened {
        mut stream,
        mut machine,
        reply,
        ..
    } = opened;
    let proxy_ip = stream.peer_addr().ok().map(|a| a.ip());
    let to_proxy_from = stream.local_addr().map_err(ClientError::Io)?.ip();
    let relay = relay_addr(reply.bound, proxy_ip)?;
    let socket = local_socket(early, relay, to_proxy_from).await?;
    // The profile the machine spoke (the one asked for).
    let assoc = V6Association {
        id,
        profile: machine.profile(),
    };
    let ask = assoc
        .codec()
        .datagram(
            &DatagramHeader {
                association: id,
                target: TargetAddr::unspecified(),
            },
            &[],
        )
        .map_err(|e| ClientError::Protocol(e.into()))?;
    let confirm = async {
        let mut attempts = 0;
        loop {
            socket.send_to(&ask, relay).await.map_err(ClientError::Io)?;
            attempts += 1;
            let wait = async {
                loop {
                    match machine.step() {
                        Instruction::NeedMore(_) => read_into(&mut stream, machine.input()).await?,
                        Instruction::Finished {
                            value: Final::UdpConfirmed,
                            ..
                        } => return Ok(()),
                        Instruction::Failed { error, .. } => {
                            return Err(ClientError::from_machine(error))
                        }
                        _ => {
                            return Err(ClientError::Protocol(
                                PeerError::Unexpected(
                                    "something other than the UDP association confirmation",
                                )
                                .into(),
                            ))
                        }
                    }
                }
            };
            match tokio::time::timeout(CONFIRM_RETRY, wait).await {
                Ok(r) => return r,
                Err(_) if attempts < CONFIRM_ATTEMPTS => continue,
                Err(_) => {
                    return Err(ClientError::UnexpectedReply(format!(
                        "no UDP association confirmation after {attempts} requests"
                    )))
                }
            }
        }
    };
    deadline(proxy, Stage::Handshake, confirm).await?;
    Ok(SocksDatagram {
        control: stream,
        socket,
        relay,
        proxy: proxy.clone(),
        fragment_size: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        recv_buf: Mutex::new(vec![0u8; RECV_BUF]),
        reassembler: Mutex::new(Reassembler::new(ReassemblyLimits::default())),
        v6: Some(assoc),
    })
}

/// A SOCKS 6 datagram from the relay: its source and payload, or `None`
/// when its header does not parse or names another association.
fn strip_v6(assoc: V6Association, dgram: &[u8]) -> Option<(TargetAddr, &[u8])> {
    let (header, payload) = assoc.codec().parse_datagram(dgram).ok()?;
    if header.association != assoc.id {
        return None;
    }
    Some((header.target, dgram.get(payload)?))
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the proxy ended the UDP association (its TCP connection closed)",
    )
}

/// A [`ClientError`] of a datagram operation as an `io::Error` (it stays
/// the error's source).
fn to_io(e: ClientError) -> io::Error {
    let kind = match &e {
        ClientError::LocalResolve { source, .. } => source.kind(),
        ClientError::Timeout { .. } => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::InvalidInput,
    };
    io::Error::new(kind, e)
}

fn invalid_input<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An association in -05, whose bytes the test checks.
    fn assoc(id: u64) -> V6Association {
        V6Association {
            id: AssociationId(id),
            profile: Profile::Draft05,
        }
    }

    #[test]
    fn socks6_datagrams_are_stripped_and_their_id_checked() {
        let source = TargetAddr::ip(Ipv4Addr::new(127, 0, 0, 9).into(), 5353);
        let dgram = assoc(0xDEAD_BEEF)
            .codec()
            .datagram(
                &DatagramHeader {
                    association: AssociationId(0xDEAD_BEEF),
                    target: source.clone(),
                },
                b"payload",
            )
            .unwrap();
        assert_eq!(&dgram[..6], &[0x06, 0x00, 0xDE, 0xAD, 0xBE, 0xEF]);
        let (from, data) = strip_v6(assoc(0xDEAD_BEEF), &dgram).unwrap();
        assert_eq!(from, source);
        assert_eq!(data, b"payload");
        assert!(strip_v6(assoc(7), &dgram).is_none(), "another id");
        assert!(strip_v6(assoc(0xDEAD_BEEF), &dgram[..5]).is_none());
        // A SOCKS5 datagram is not a SOCKS 6 one.
        let v5 = UdpHeader {
            frag: udp::STANDALONE,
            target: source,
        }
        .datagram(b"x")
        .unwrap();
        assert!(strip_v6(assoc(0), &v5).is_none());
    }
}

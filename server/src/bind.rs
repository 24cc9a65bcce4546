//! BIND (SOCKS4 and SOCKS5): listen for one inbound connection on the
//! client's behalf, report where (first reply), report who connected
//! (second reply), then relay.

use std::net::{IpAddr, SocketAddr};

use sixsocks_proto::{Host, ReplyCode, Request, TargetAddr};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::destination::{self, same_ip};
use crate::error::RequestError;
use crate::rules::{Dest, Verdict};

use crate::context::{Outcome, Record, Shared};
use crate::policy::{check_addresses, check_rules};
use crate::tunnel::relay_recorded;

/// Most bytes a client may send before the second reply; they are kept and
/// forwarded once the inbound connection is there.
const EARLY_DATA_CAP: usize = 64 * 1024;

pub(crate) async fn run(
    client: &mut TcpStream,
    request: &Request,
    mut early: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let config = &shared.config;
    let extended = config.extended_errors;
    let expected = expected_host(&request.target, shared, rec).await?;
    let client_side = client.local_addr()?.ip();
    let listen_ip = config
        .bind_address
        .or_else(|| expected.and_then(route_source))
        .unwrap_or(client_side);
    let listener = listen_once(SocketAddr::new(listen_ip, 0))?;
    let bound = listener.local_addr()?;
    let _registered = shared.bound.register(bound);
    client
        .write_all(&request.reply(ReplyCode::Succeeded, Some(&bound.into()), extended))
        .await?;
    rec.set_outcome(Outcome::BindListening(bound));

    let accept = async {
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let (stream, peer) = r?;
                    match expected {
                        Some(ip) if config.bind_check_peer && !same_ip(ip, peer.ip()) => {
                            tracing::info!(%peer, expected = %ip, "bind: unexpected host connected; closed");
                            drop(stream);
                        }
                        _ => return Ok::<_, RequestError>(Some((stream, peer))),
                    }
                }
                r = client.readable() => {
                    r?;
                    // The client may speak early (kept) or give up (EOF).
                    let mut buf = vec![0u8; 4096];
                    match client.try_read(&mut buf) {
                        Ok(0) => return Ok(None),
                        Ok(n) if early.len() + n <= EARLY_DATA_CAP => early.extend_from_slice(&buf[..n]),
                        Ok(_) => return Err(RequestError::Io(std::io::Error::other("too much data before the bind completed"))),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    };
    let accepted = tokio::time::timeout(config.bind_timeout(), accept)
        .await
        .map_err(|_| RequestError::BindTimeout)??;
    drop(listener);
    let Some((inbound, peer)) = accepted else {
        rec.set_outcome(Outcome::BindClientClosed);
        return Ok(());
    };
    let _ = inbound.set_nodelay(true);
    client
        .write_all(&request.reply(
            ReplyCode::Succeeded,
            Some(&TargetAddr::from(peer)),
            extended,
        ))
        .await?;
    rec.reply = Some(ReplyCode::Succeeded);
    rec.set_outcome(Outcome::BindAccepted {
        on: Some(bound),
        peer,
    });
    relay_recorded(client, &inbound, &early, shared, rec, Some(peer)).await;
    Ok(())
}

/// The host expected to connect (RFC 1928: "evaluate DST.ADDR"); `None`
/// for any host (`0.0.0.0` or `::`). A name is resolved as every target is
/// (no `.onion` to DNS, no unspecified address), and when the rules could
/// not decide by its name, its addresses go through them one by one, as
/// for CONNECT: a name cannot be used to expect a blocked host.
async fn expected_host(
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<Option<IpAddr>, RequestError> {
    let dest = Dest::of(target);
    if let Some(ip) = dest.ip() {
        return Ok((!destination::is_unspecified(ip)).then_some(ip));
    }
    let verdict = check_rules(shared, rec, dest)?;
    let addrs = crate::policy::lookup(&target.host, shared, rec).await?;
    let addrs = match (verdict, &target.host) {
        (Verdict::Undecided, Host::Domain(name)) => {
            check_addresses(shared, rec, Some(name), addrs, target.port)?.0
        }
        _ => addrs,
    };
    Ok(addrs.first().copied())
}

pub(crate) fn listen_once(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listen_backlog(addr, 8)
}

/// A listener on `addr` with the given backlog.
pub(crate) fn listen_backlog(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    TcpListener::from_std(s.into())
}

/// The local address the kernel would use to reach `dst` (a routing table
/// lookup through a connected UDP socket: no packet is sent).
pub(crate) fn route_source(dst: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match dst {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((dst, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

//! BIND, every version: listen for an inbound connection on the client's
//! behalf, report where (first reply) and who connected (second reply),
//! then relay. SOCKS4/5 name the host expected to connect (RFC 1928:
//! "evaluate DST.ADDR"); SOCKS 6 names the address to bind, and may ask
//! for a listen backlog: one listener serving several later BIND requests
//! (draft -05 §8.1.5; the listeners are kept in `socks6/backlog.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sixsocks_proto::v6::options::StackRequests;
use sixsocks_proto::v6::{Leg, Options, Socks6Request};
use sixsocks_proto::{Host, TargetAddr};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::command::reply::{send_success, success_bytes, Replier};
use crate::context::{Outcome, Record, Shared};
use crate::destination::{self, same_ip};
use crate::error::RequestError;
use crate::policy::{check_addresses, check_rules, lookup, verdict_again};
use crate::rules::{Dest, Verdict};
use crate::tunnel::relay_recorded;

/// Most bytes a SOCKS4/5 client may send before the second reply; they
/// are kept and forwarded once the inbound connection is there.
const EARLY_DATA_CAP: usize = 64 * 1024;

/// The most backlog a SOCKS 6 client may ask for.
const MAX_BACKLOG: u16 = 128;

/// Where a BIND listens, once its request is read.
enum Plan {
    /// A listener of its own on this address; SOCKS4/5 accept only the
    /// expected host (`bind_check_peer`; `None`: any).
    Listen(SocketAddr, Option<IpAddr>),
    /// SOCKS 6: a later BIND on a backlog listener the same owner opened.
    Backlogged(Arc<TcpListener>, SocketAddr),
    /// SOCKS 6: open a backlog listener on this address, for this owner.
    Backlog(SocketAddr, u16, Vec<u8>),
}

pub(super) async fn run(
    stream: &mut TcpStream,
    req: &impl Replier,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    if req.socks6().is_none() {
        // Routed to an upstream by the rules: it binds, not us.
        let verdict = verdict_again(shared, rec, Dest::of(req.target()))?;
        if let Some(up) = crate::policy::upstream_of(shared, verdict.rule())? {
            let fut = super::bind_upstream::run(stream, req, up, leftover, shared, rec);
            return Box::pin(fut).await;
        }
    }
    let plan = match req.socks6() {
        None => expecting(stream, req.target(), shared, rec).await?,
        Some(r) => socks6_plan(stream, r, shared, rec)?,
    };
    let (addr, expected) = match plan {
        Plan::Listen(addr, expected) => (addr, expected),
        Plan::Backlogged(listener, addr) => {
            send_success(stream, req, Some(&addr.into()), Options::new(), shared, rec).await?;
            let accepted = accept(stream, req, &listener, None, &mut Vec::new(), shared).await?;
            return relay_accepted(stream, req, accepted, None, &leftover, shared, rec).await;
        }
        Plan::Backlog(addr, granted, owner) => {
            return hold_backlog(stream, req, addr, granted, owner, shared, rec).await
        }
    };
    let listener = listen_once(addr)?;
    let bound = listener.local_addr()?;
    if req.socks6().is_some() {
        // The rules see the address actually bound, not the one requested
        // (a request for `0.0.0.0:80` binds somewhere else).
        check_bound(bound, shared, rec)?;
    }
    let _registered = shared.bound.register(bound);
    first_reply(stream, req, bound, shared, rec).await?;
    let mut early = leftover;
    let accepted = accept(stream, req, &listener, expected, &mut early, shared).await?;
    // A SOCKS4/5 listener closes once it served its one connection; a
    // SOCKS 6 one stays until the session ends.
    let _kept = req.socks6().is_some().then_some(listener);
    let on = req.socks6().is_none().then_some(bound);
    relay_accepted(stream, req, accepted, on, &early, shared, rec).await
}

/// SOCKS4/5: listen on `bind_address`, else on the proxy's address on the
/// route to the expected host, else on the address the client reached.
async fn expecting(
    stream: &TcpStream,
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<Plan, RequestError> {
    let expected = expected_host(target, shared, rec).await?;
    let client_side = stream.local_addr()?.ip();
    let listen_ip = shared
        .config
        .bind_address
        .or_else(|| expected.and_then(route_source))
        .unwrap_or(client_side);
    Ok(Plan::Listen(SocketAddr::new(listen_ip, 0), expected))
}

/// The host expected to connect; `None` for any host (`0.0.0.0` or `::`).
/// A name is resolved as every target is (no `.onion` to DNS, no
/// unspecified address), and when the rules could not decide by its name,
/// its addresses go through them one by one, as for CONNECT: a name cannot
/// be used to expect a blocked host.
async fn expected_host(
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<Option<IpAddr>, RequestError> {
    let dest = Dest::of(target);
    if let Some(ip) = dest.ip() {
        return Ok((!destination::is_unspecified(ip)).then_some(ip));
    }
    let verdict = verdict_again(shared, rec, dest)?;
    let addrs = lookup(&target.host, shared, rec).await?;
    let addrs = match (verdict, &target.host) {
        (Verdict::Undecided, Host::Domain(name)) => {
            check_addresses(shared, rec, Some(name), addrs, target.port)?.0
        }
        _ => addrs,
    };
    Ok(addrs.first().copied())
}

/// SOCKS 6: the request's address is the desired bind address (zeros:
/// any). One naming a backlog listener of the same owner takes from it.
/// The client chooses the port only inside `bind_ports`: anything else
/// (80, 443, the metrics port) gets an ephemeral port, reported in the
/// reply as the draft allows.
fn socks6_plan(
    stream: &TcpStream,
    req: &Socks6Request,
    shared: &Shared,
    rec: &Record,
) -> Result<Plan, RequestError> {
    let config = &shared.config;
    let owner = rec.owner_key(shared);
    let desired = req.target.socket_addr();
    if let Some(addr) = desired {
        if let Some(listener) = shared.backlogs.get(addr, &owner) {
            return Ok(Plan::Backlogged(listener, addr));
        }
    }
    let listen_ip = match desired {
        Some(a) if !destination::is_unspecified(a.ip()) => a.ip(),
        _ => config.bind_address.unwrap_or(stream.local_addr()?.ip()),
    };
    let port = desired
        .map(|a| a.port())
        .filter(|&p| p != 0 && config.bind_ports.is_some_and(|r| r.contains(p)))
        .unwrap_or(0);
    let addr = SocketAddr::new(listen_ip, port);
    let wanted = req.options.stack_requests(Leg::PROXY_REMOTE);
    Ok(match wanted.listen_backlog.filter(|&b| b > 1) {
        Some(asked) => Plan::Backlog(addr, asked.min(MAX_BACKLOG), owner),
        None => Plan::Listen(addr, None),
    })
}

/// The rules see the address actually bound.
fn check_bound(bound: SocketAddr, shared: &Shared, rec: &Record) -> Result<(), RequestError> {
    let dest = Dest::Addr {
        name: None,
        ip: bound.ip(),
        port: bound.port(),
    };
    check_rules(shared, rec, dest).map(|_| ())
}

/// The first reply: where the listener is. SOCKS4/5 record a reply code
/// only with the second reply (a client that gives up waiting logs none)
/// and say where they listen in the outcome.
async fn first_reply(
    stream: &mut TcpStream,
    req: &impl Replier,
    bound: SocketAddr,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let at = TargetAddr::from(bound);
    if req.socks6().is_some() {
        return send_success(stream, req, Some(&at), Options::new(), shared, rec).await;
    }
    let bytes = success_bytes(req, Some(&at), Options::new(), shared)?;
    stream.write_all(&bytes).await?;
    rec.set_outcome(Outcome::BindListening(bound));
    Ok(())
}

/// Wait for one inbound connection, for `bind_timeout`; `None` when the
/// client gave up first. A SOCKS4/5 client's early bytes are read into
/// `early` meanwhile (at most [`EARLY_DATA_CAP`]); a SOCKS 6 client's stay
/// in the socket for the relay.
async fn accept(
    stream: &TcpStream,
    req: &impl Replier,
    listener: &TcpListener,
    expected: Option<IpAddr>,
    early: &mut Vec<u8>,
    shared: &Shared,
) -> Result<Option<(TcpStream, SocketAddr)>, RequestError> {
    let timeout = shared.config.bind_timeout();
    let accepted = if req.socks6().is_some() {
        let accept = async {
            tokio::select! {
                r = listener.accept() => r.map(Some),
                _ = closed(stream) => Ok(None),
            }
        };
        tokio::time::timeout(timeout, accept)
            .await
            .map(|r| r.map_err(RequestError::from))
    } else {
        let accept = accept_keeping_early(stream, listener, expected, early, shared);
        tokio::time::timeout(timeout, accept).await
    };
    accepted.map_err(|_| RequestError::BindTimeout)?
}

/// SOCKS4/5: accept the expected host (others are closed), keeping what
/// the client sends meanwhile; `None` at the client's EOF.
async fn accept_keeping_early(
    client: &TcpStream,
    listener: &TcpListener,
    expected: Option<IpAddr>,
    early: &mut Vec<u8>,
    shared: &Shared,
) -> Result<Option<(TcpStream, SocketAddr)>, RequestError> {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, peer) = r?;
                match expected {
                    Some(ip) if shared.config.bind_check_peer && !same_ip(ip, peer.ip()) => {
                        tracing::info!(%peer, expected = %ip, "bind: unexpected host connected; closed");
                        drop(stream);
                    }
                    _ => return Ok(Some((stream, peer))),
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
}

/// Completes when the SOCKS 6 client closes its side (data it sends before
/// the bind completes is not expected and is not read).
async fn closed(stream: &TcpStream) {
    let mut b = [0u8; 1];
    match stream.peek(&mut b).await {
        Ok(0) | Err(_) => {}
        // Data is waiting: it belongs to the relay; stop watching.
        Ok(_) => std::future::pending().await,
    }
}

/// The second reply (the host that connected), then relay; `on`: where
/// the listener was, for a SOCKS4/5 outcome.
async fn relay_accepted(
    stream: &mut TcpStream,
    req: &impl Replier,
    accepted: Option<(TcpStream, SocketAddr)>,
    on: Option<SocketAddr>,
    early: &[u8],
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let Some((inbound, peer)) = accepted else {
        rec.set_outcome(Outcome::BindClientClosed);
        return Ok(());
    };
    let _ = inbound.set_nodelay(true);
    send_success(stream, req, Some(&peer.into()), Options::new(), shared, rec).await?;
    rec.set_outcome(Outcome::BindAccepted { on, peer });
    relay_recorded(stream, &inbound, early, shared, rec, Some(peer)).await;
    Ok(())
}

/// SOCKS 6 BIND with a listen backlog (> 1): the listener outlives this
/// one exchange. The operation reply reports the backlog granted, the
/// connection is not used for data, and the listener closes when it ends;
/// later BIND requests naming the bound address accept from it.
async fn hold_backlog(
    stream: &mut TcpStream,
    req: &impl Replier,
    addr: SocketAddr,
    granted: u16,
    owner: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let config = &shared.config;
    let listener = Arc::new(listen_backlog(addr, i32::from(granted))?);
    let bound = listener.local_addr()?;
    check_bound(bound, shared, rec)?;
    let _registered = shared.bound.register(bound);
    let used = Arc::new(Notify::new());
    let applied = StackRequests {
        listen_backlog: Some(granted),
        ..StackRequests::default()
    };
    // Registered before the reply, so that a BIND the client sends right
    // after it always finds the listener.
    shared.backlogs.insert(bound, owner, listener, used.clone());
    let options = Options(applied.to_options(Leg::PROXY_REMOTE));
    let replied = send_success(stream, req, Some(&bound.into()), options, shared, rec).await;
    if let Err(e) = replied {
        shared.backlogs.remove(bound);
        return Err(e);
    }
    rec.set_outcome(Outcome::Backlog { granted, bound });
    // The listener lives as long as this connection, which ends when the
    // client closes it or after `idle_timeout` (else `bind_timeout`) with
    // neither bytes from the client nor a later BIND taking a connection
    // from the backlog.
    let idle = config.idle_timeout().unwrap_or(config.bind_timeout());
    let mut sink = vec![0u8; 512];
    loop {
        tokio::select! {
            r = tokio::io::AsyncReadExt::read(stream, &mut sink) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = used.notified() => {}
            _ = tokio::time::sleep(idle) => {
                rec.set_outcome(Outcome::BacklogIdle {
                    granted,
                    bound,
                    idle_secs: idle.as_secs(),
                });
                break;
            }
        }
    }
    shared.backlogs.remove(bound);
    Ok(())
}

/// A listener for one connection.
fn listen_once(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listen_backlog(addr, 8)
}

/// A listener on `addr` with the given backlog.
fn listen_backlog(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
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
fn route_source(dst: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match dst {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect((dst, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

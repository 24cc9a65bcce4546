//! One client session from accept to its log line: the handshake
//! (`handshake.rs`), the policy on its request (`policy.rs`), the command
//! (CONNECT and RESOLVE here, with `outbound.rs`; BIND in `bind.rs`, UDP in
//! `udp_relay/`, SOCKS 6 in `socks6/`), the relay (`tunnel.rs`), and the
//! record it reports (`context.rs`).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sixsocks_proto::server::ServerHandshake;
use sixsocks_proto::{Command, Host, ReplyCode, Request, TargetAddr, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::{Outcome, Protocol, Record, Shared};
use crate::destination;
use crate::error::RequestError;
use crate::handshake::{describe_end, handshake, HandshakeEnd, Handshaken};
use crate::outbound::{connect_target, Outbound};
use crate::policy::{admit_request, check_rules, route_checked, upstream_of, Route};
use crate::rules::Dest;
use crate::tunnel::{deliver, linger_close, relay_recorded};

/// Run one client session to its end and log it. `rec` comes from
/// [`Record::new`]: the addresses and the per-address place travel in it,
/// not as arguments of their own (an async fn keeps every argument for its
/// whole life: each copy would cost every idle connection).
// Written out, not `async fn`: see the comment inside.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run(
    mut stream: TcpStream,
    mut rec: Record,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send {
    // An async block that uses its captures in place: an `async fn` would
    // move each argument into a second slot of its own.
    async move {
        let started = Instant::now();
        let _active = crate::metrics::active_session();
        serve(&mut stream, &shared, &mut rec).await;
        end_session(&mut rec, started);
    }
}

/// The session's log line and its counters.
fn end_session(rec: &mut Record, started: Instant) {
    // Free the user's session slot and the address's place before the line
    // that says the session ended.
    drop(rec.admission.take());
    drop(rec.place.take());
    let up = rec.counters.up.load(Ordering::Relaxed);
    let down = rec.counters.down.load(Ordering::Relaxed);
    let reply = rec.reply.map_or_else(|| "-".to_string(), |r| r.to_string());
    let target = rec
        .target
        .as_ref()
        .map_or_else(|| "-".to_string(), |t| t.to_string());
    tracing::info!(
        target: "sixsocks::session",
        client = %rec.client,
        user = %rec.user_display(),
        version = %rec.version.map_or("-", Protocol::name),
        command = %rec.command.map_or_else(|| "-".to_string(), |c| c.to_string()),
        target = %target,
        reply = %reply,
        up,
        down,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome = %rec.outcome.as_deref().map_or(&"ok" as &dyn std::fmt::Display, |o| o),
        "session end"
    );
    crate::metrics::session_end(rec.version.map(Protocol::name), rec.command, rec.reply);
    crate::metrics::session_bytes_end(up, down);
}

async fn serve(stream: &mut TcpStream, shared: &Shared, rec: &mut Record) {
    let _ = stream.set_nodelay(true);
    let mut hs =
        ServerHandshake::new(shared.handshake.clone()).with_socks6(shared.socks6_limits.clone());
    let deadline = shared.config.handshake_timeout();
    let tried = &mut rec.tried_user;
    let handshake = tokio::time::timeout(deadline, handshake(stream, &mut hs, shared, tried)).await;
    if let Some(place) = rec.place.as_mut() {
        place.handshake_done();
    }
    rec.version = hs.version().map(Protocol::from);
    let (request, leftover) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(end)) => {
            if rec.version.is_none() && matches!(end, HandshakeEnd::Socks6(_)) {
                rec.version = Some(Protocol::Socks6);
            }
            rec.credentials = hs.credentials().clone();
            rec.set_outcome(Outcome::Handshake(describe_end(&end)));
            if matches!(end, HandshakeEnd::Refused(_) | HandshakeEnd::Socks6(_)) {
                linger_close(stream).await;
            }
            return;
        }
        Err(_) => {
            rec.set_outcome(Outcome::Handshake(describe_end(&HandshakeEnd::Timeout)));
            return;
        }
    };
    let request = match request {
        Handshaken::Legacy(r) => r,
        Handshaken::Socks6(r) => {
            rec.version = Some(Protocol::Socks6);
            rec.credentials = r.credentials.clone();
            rec.command = Some(r.command);
            rec.target = Some(r.target.clone());
            // Boxed so that its (larger) state does not size every session.
            return Box::pin(crate::socks6::execute(stream, r, leftover, shared, rec)).await;
        }
    };
    rec.version = Some(request.version.into());
    rec.credentials = request.credentials.clone();
    rec.command = Some(request.command);
    rec.target = Some(request.target.clone());

    let extended = shared.config.extended_errors;
    match execute(stream, &request, leftover, shared, rec).await {
        Ok(()) => {}
        Err(e) => {
            crate::metrics::request_refused(&e);
            let code = e.reply_code();
            rec.reply = Some(code);
            let bytes = request.reply(code, None, extended);
            rec.set_outcome(Outcome::Failed(e));
            if stream.write_all(&bytes).await.is_ok() {
                linger_close(stream).await;
            }
        }
    }
}

/// Carry out a request. On error, nothing has been sent to the client yet;
/// the caller sends the failure reply.
async fn execute(
    stream: &mut TcpStream,
    request: &Request,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    admit_request(
        shared,
        rec,
        request.version.into(),
        request.command,
        &request.target,
        &request.credentials,
    )?;
    let extended = shared.config.extended_errors;
    match request.command {
        Command::CONNECT => {
            // Boxed: connecting is short-lived, relaying is what idles.
            let out = Box::pin(connect_target(&request.target, shared, rec, &leftover)).await?;
            let Some((target, early_sent)) =
                answer_connect(stream, request, out, rec, extended).await
            else {
                return Ok(());
            };
            // Unless they went with an upstream's request, the client's
            // early bytes go first.
            let early = if early_sent { 0 } else { leftover.len() };
            relay_recorded(stream, &target, &leftover[..early], shared, rec, None).await;
            Ok(())
        }
        Command::RESOLVE => {
            // Boxed, like the connect phase: short-lived.
            let addrs = Box::pin(resolve_routed(&request.target, shared, rec)).await?;
            let pick = match request.version {
                // SOCKS4 can only carry an IPv4 answer.
                Version::V4 | Version::V4a => addrs.iter().find(|a| a.is_ipv4()).copied(),
                Version::V5 => addrs.first().copied(),
            }
            .ok_or(RequestError::AddressTypeNotSupported)?;
            finish_with(stream, request, TargetAddr::ip(pick, 0), rec, extended).await
        }
        Command::RESOLVE_PTR => {
            let ip = match &request.target.host {
                Host::Ip(ip) => *ip,
                Host::Domain(d) => {
                    destination::literal(d).ok_or(RequestError::AddressTypeNotSupported)?
                }
            };
            let name = Box::pin(reverse_routed(ip, &request.target, shared, rec)).await?;
            finish_with(stream, request, TargetAddr::domain(name, 0), rec, extended).await
        }
        // BIND and UDP are boxed: their futures are large and rare, and an
        // unboxed await would size every session's future to fit them.
        Command::BIND => Box::pin(crate::bind::run(stream, request, leftover, shared, rec)).await,
        Command::UDP_ASSOCIATE => {
            Box::pin(crate::udp_relay::run(stream, request, shared, rec)).await
        }
        other => Err(RequestError::CommandNotSupported(other)),
    }
}

/// Send a CONNECT's success reply, then the target bytes an upstream sent
/// behind its own. Returns the outbound stream and whether the client's
/// early bytes already went out; `None` when the client is gone. (One
/// await in the session for both writes keeps the session future small.)
async fn answer_connect(
    stream: &mut TcpStream,
    request: &Request,
    out: Outbound,
    rec: &mut Record,
    extended: bool,
) -> Option<(TcpStream, bool)> {
    let reply = request.reply(ReplyCode::Succeeded, out.bound.as_ref(), extended);
    rec.reply = Some(ReplyCode::Succeeded);
    if let Err(e) = stream.write_all(&reply).await {
        rec.set_outcome(Outcome::ClientGone {
            after_reply: false,
            error: e,
        });
        return None;
    }
    if let Err(e) = deliver(stream, out.to_client, rec).await {
        rec.set_outcome(Outcome::ClientGone {
            after_reply: true,
            error: e,
        });
        return None;
    }
    Some((out.stream, out.early_sent))
}

/// Send a success reply carrying `answer`, then close.
async fn finish_with(
    stream: &mut TcpStream,
    request: &Request,
    answer: TargetAddr,
    rec: &mut Record,
    extended: bool,
) -> Result<(), RequestError> {
    rec.reply = Some(ReplyCode::Succeeded);
    let reply = request.reply(ReplyCode::Succeeded, Some(&answer), extended);
    rec.set_outcome(Outcome::Answer(answer));
    if stream.write_all(&reply).await.is_ok() {
        linger_close(stream).await;
    }
    Ok(())
}

/// RESOLVE: the addresses of a name, from the resolver or from the
/// upstream the rules route it to.
async fn resolve_routed(
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<Vec<IpAddr>, RequestError> {
    Ok(match route_checked(target, shared, rec).await? {
        Route::Direct(addrs, _) => addrs,
        Route::Upstream(up) => match &target.host {
            Host::Domain(name) => vec![up.resolve(name, &rec.credentials).await?],
            Host::Ip(ip) => vec![*ip],
        },
    })
}

/// RESOLVE_PTR: the name of an address, from the resolver or from the
/// upstream the rules route it to.
async fn reverse_routed(
    ip: IpAddr,
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<String, RequestError> {
    let verdict = check_rules(shared, rec, Dest::of(target))?;
    match upstream_of(shared, verdict.rule())? {
        Some(up) => up.resolve_ptr(ip, &rec.credentials).await,
        None => shared.resolver.reverse(ip, Some(rec.client.ip())).await,
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::auth::Authenticator;
    use crate::config::Config;

    /// Every idle connection holds its session future; keep it small
    /// (1,600 bytes: short-lived phases with big state, connecting and
    /// SOCKS 6, are boxed, and `run` keeps each argument in one slot).
    #[tokio::test]
    async fn session_future_is_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let shared = Arc::new(Shared::new(Config::default(), Authenticator::new(None)));
        let a = "127.0.0.1:1".parse().unwrap();
        let fut = run(c, Record::new(a, a, None), shared);
        let size = std::mem::size_of_val(&fut);
        eprintln!("session future: {size} bytes");
        assert!(size <= 1664, "session future is {size} bytes");
    }
}

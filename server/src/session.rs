//! One client session from accept to its log line: the handshake
//! (`handshake.rs`), SOCKS 6's tokens and authentication reply
//! (`socks6/`), the command with its admission and relay (`command/`),
//! and the record it reports (`context.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sixsocks_proto::server::ServerHandshake;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::HandshakeEnd;
use crate::context::{Outcome, Protocol, Record, Shared};
use crate::handshake::{handshake, Handshaken};
use crate::metrics::ActiveSession;
use crate::tunnel::{linger_close, record_relay_end, relay_for, Handoff};

/// Run one client session up to its relay, or to its end and log it. `rec`
/// comes from [`Record::new`]: the addresses and the per-address place
/// travel in it, not as arguments of their own (an async fn keeps every
/// argument for its whole life).
///
/// A CONNECT answered comes back as its [`RelayPhase`], which the caller
/// spawns as a task of its own: this future is sized by the session's
/// largest phase, and an idle relay kept in it would hold all of that for
/// as long as it lasts (1,064 bytes against the relay phase's 528; see the
/// tests).
// Written out, not `async fn`: see the comment inside.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run(
    mut stream: TcpStream,
    mut rec: Record,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = Option<RelayPhase>> + Send {
    // An async block that uses its captures in place: an `async fn` would
    // move each argument into a second slot of its own.
    async move {
        let started = Instant::now();
        let active = crate::metrics::active_session();
        match serve(&mut stream, &shared, &mut rec).await {
            Some(handoff) => Some(RelayPhase {
                stream,
                handoff,
                rec,
                shared,
                started,
                _active: active,
            }),
            None => {
                end_session(&mut rec, started);
                None
            }
        }
    }
}

/// A CONNECT's relay and the end of its session, with only what they need
/// (the two streams, the record, the configuration), to run as a task of
/// its own.
pub(crate) struct RelayPhase {
    stream: TcpStream,
    handoff: Handoff,
    rec: Record,
    shared: Arc<Shared>,
    started: Instant,
    _active: ActiveSession,
}

impl RelayPhase {
    /// Relay until both directions end, then log the session and let go
    /// of `slot` (the client's place under `max_clients`). Spawn this
    /// future itself: wrapped in another async block, the block would
    /// keep a second copy of the phase (1,904 heap bytes per idle
    /// connection instead of 1,520; tests/idle_heap.rs).
    // Written out, not `async fn`: an async block uses `self` in place, an
    // `async fn` would keep a second copy of it (1,064 bytes against 664).
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run(
        mut self,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let end = relay_for(
                &self.stream,
                &self.handoff.target,
                &self.handoff.early,
                &self.shared,
                &self.rec,
            )
            .await;
            record_relay_end(&mut self.rec, end, None);
            end_session(&mut self.rec, self.started);
            // Named here, or the block would not capture it (it captures
            // the fields it uses) and the gauge would drop as it starts.
            drop(self._active);
            drop(slot);
        }
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
    // Written straight into the line: no temporary strings.
    tracing::info!(
        target: "sixsocks::session",
        client = %rec.client,
        user = %rec.user_display(),
        version = %rec.version.map_or("-", Protocol::name),
        command = %OrDash(rec.command),
        target = %OrDash(rec.target.as_ref()),
        reply = %OrDash(rec.reply),
        up,
        down,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome = %rec.outcome().map_or(&"ok" as &dyn std::fmt::Display, |o| o),
        "session end"
    );
    crate::metrics::session_end(rec.version.map(Protocol::name), rec.command, rec.reply);
    crate::metrics::session_bytes_end(up, down);
}

/// A value in the session line, or `-` without one.
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

async fn serve(stream: &mut TcpStream, shared: &Shared, rec: &mut Record) -> Option<Handoff> {
    let _ = stream.set_nodelay(true);
    // Boxed: the handshake's state (its future, the machine, the result
    // while it is taken apart) is gone before the command runs, and would
    // otherwise size every session's future (BIND and UDP relay in it).
    let (request, leftover) = Box::pin(read_request(stream, shared, rec)).await?;
    match request {
        Handshaken::Socks(request) => {
            rec.version = Some(request.version.into());
            rec.credentials = request.credentials.clone();
            rec.command = Some(request.command);
            rec.target = Some(request.target.clone());
            crate::command::execute(stream, &request, leftover, shared, rec).await
        }
        Handshaken::Socks6(r) => {
            rec.version = Some(Protocol::Socks6);
            rec.credentials = r.credentials.clone();
            rec.command = Some(r.command);
            rec.target = Some(r.target.clone());
            // Boxed so that its (larger) state does not size every session.
            Box::pin(crate::socks6::execute(stream, r, leftover, shared, rec)).await
        }
    }
}

/// The handshake up to the request, with its deadline; `None` when it
/// ended otherwise (refused, closed, timed out: recorded in `rec`, a
/// refusal's reply lingered over).
async fn read_request(
    stream: &mut TcpStream,
    shared: &Shared,
    rec: &mut Record,
) -> Option<(Handshaken, Vec<u8>)> {
    // Boxed: the machine lives only while the handshake runs.
    let mut hs = Box::new(
        ServerHandshake::new(shared.handshake.clone())
            .with_socks6(shared.socks6_limits.clone())
            .with_socks6_setting(shared.config.socks6_setting_for(*rec.listener)),
    );
    let deadline = shared.config.handshake_timeout();
    let mut tried = None;
    let handshake =
        tokio::time::timeout(deadline, handshake(stream, &mut hs, shared, &mut tried)).await;
    if let Some(place) = rec.place.as_mut() {
        place.handshake_done();
    }
    rec.version = hs.version().map(Protocol::from);
    if handshake.as_ref().is_ok_and(|r| r.is_err()) {
        rec.credentials = hs.credentials().clone();
    }
    drop(hs);
    // Only a session that got no request names the user its login tried.
    if let (Some(name), false) = (tried, matches!(handshake, Ok(Ok(_)))) {
        rec.set_tried_user(name);
    }
    match handshake {
        Ok(Ok(done)) => Some(done),
        Ok(Err(end)) => {
            if rec.version.is_none() && matches!(end, HandshakeEnd::Socks6(_)) {
                rec.version = Some(Protocol::Socks6);
            }
            let refused = matches!(end, HandshakeEnd::Refused(_) | HandshakeEnd::Socks6(_));
            rec.set_outcome(Outcome::Handshake(end));
            if refused {
                linger_close(stream).await;
            }
            None
        }
        Err(_) => {
            rec.set_outcome(Outcome::Handshake(HandshakeEnd::Timeout));
            None
        }
    }
}

/// Most bytes the relay phase's future may take: tokio puts a task's
/// future in a 128-byte aligned cell with 112 bytes of its own, so 528
/// bytes make a 640-byte cell, one of the allocator's size classes; one
/// byte more is a 768-byte cell for every idle connection (see the tests;
/// 528 since the record shares its listener address and keeps a failed
/// login's name with the outcome, 560 before).
#[cfg(test)]
const RELAY_PHASE_MAX: usize = 528;

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::auth::Authenticator;
    use crate::config::Config;

    /// Every idle connection holds its session future; keep it small
    /// (1,104 bytes: short-lived phases with big state, the handshake with
    /// its machine and result, connecting and SOCKS 6, are boxed, `run`
    /// keeps each argument in one slot, and the relay is its own future,
    /// not an `async fn` keeping its arguments beside it; 1,440 before).
    #[tokio::test]
    async fn session_future_is_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let shared = Arc::new(Shared::new(Config::default(), Authenticator::new(None)));
        let a = "127.0.0.1:1".parse().unwrap();
        let fut = run(c, Record::new(a, Arc::new(a), None), shared);
        let size = std::mem::size_of_val(&fut);
        eprintln!("session future: {size} bytes");
        assert!(size <= 1136, "session future is {size} bytes");
    }

    /// What an idle relayed connection holds: the relay phase's task, not
    /// the session's future (see `run`).
    #[tokio::test]
    async fn relay_phase_is_smaller_than_the_session() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let t = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let shared = Arc::new(Shared::new(Config::default(), Authenticator::new(None)));
        let a = "127.0.0.1:1".parse().unwrap();
        let session = std::mem::size_of_val(&run(
            TcpStream::connect(l.local_addr().unwrap()).await.unwrap(),
            Record::new(a, Arc::new(a), None),
            shared.clone(),
        ));
        let phase = RelayPhase {
            stream: c,
            handoff: Handoff {
                target: t,
                early: Vec::new(),
            },
            rec: Record::new(a, Arc::new(a), None),
            shared,
            started: Instant::now(),
            _active: crate::metrics::active_session(),
        };
        let slot = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        let size = std::mem::size_of_val(&phase.run(slot));
        eprintln!("relay phase future: {size} bytes (session future {session})");
        assert!(
            size <= RELAY_PHASE_MAX,
            "relay phase future is {size} bytes"
        );
        assert!(
            size < session,
            "the relay phase ({size}) is no smaller than the session ({session})"
        );
    }
}

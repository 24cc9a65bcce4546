//! The client's side once a request is answered: what an upstream sent
//! behind its reply, the relay with its outcome recorded, and the close
//! after a refusal that does not lose the reply.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::net::SocketAddr;

use crate::context::{Outcome, Record, Shared};
use crate::relay::{relay, RelayEnd};

/// A CONNECT answered, its relay not begun: what the session hands out of
/// its task so that the relay runs in a task of its own
/// (`session::RelayPhase`). The session's future is sized by its largest
/// phase (the request, the rules, connecting); an idle relay in it would
/// hold all that for as long as it lasts.
pub(crate) struct Handoff {
    pub(crate) target: TcpStream,
    /// The client's early bytes, for the target first.
    pub(crate) early: Vec<u8>,
}

/// Send the client what an upstream sent behind its reply (after our
/// success reply, before the relay): [`Outbound::to_client`].
pub(crate) async fn deliver(
    client: &mut TcpStream,
    to_client: Vec<u8>,
    rec: &mut Record,
) -> std::io::Result<()> {
    if !to_client.is_empty() {
        client.write_all(&to_client).await?;
        rec.counters.add_down(to_client.len() as u64);
    }
    Ok(())
}

/// Relay between the client and `target` until both directions end, and
/// record how it ended (`bind_peer`: the inbound peer of a BIND, which the
/// outcome names).
pub(crate) async fn relay_recorded(
    client: &TcpStream,
    target: &TcpStream,
    early: &[u8],
    shared: &Shared,
    rec: &mut Record,
    bind_peer: Option<SocketAddr>,
) {
    let end = relay_for(client, target, early, shared, rec).await;
    record_relay_end(rec, end, bind_peer);
}

/// The relay of a session, with its configuration and its user's
/// bandwidth limit: a plain function returning the relay's own future, so
/// that a caller awaiting it keeps nothing else (`session::RelayPhase`).
pub(crate) fn relay_for<'a>(
    client: &'a TcpStream,
    target: &'a TcpStream,
    early: &'a [u8],
    shared: &Shared,
    rec: &'a Record,
) -> impl std::future::Future<Output = RelayEnd> + Send + 'a {
    let config = &shared.config;
    relay(
        client,
        target,
        early,
        config.idle_timeout(),
        config.relay_mode,
        &rec.counters,
        rec.admission.as_ref().map(|u| u.bandwidth()),
    )
}

/// Record how a relay ended (a plain close is the default outcome).
pub(crate) fn record_relay_end(rec: &mut Record, end: RelayEnd, bind_peer: Option<SocketAddr>) {
    let error = match end {
        RelayEnd::Closed => return,
        RelayEnd::Idle => None,
        RelayEnd::Error(e) => Some(e),
    };
    rec.set_outcome(Outcome::Relay { bind_peer, error });
}

/// Close after a refusal without losing the reply: shut our write side,
/// then read and discard what the client still sends for a short while, so
/// that unread input does not turn our close into a reset that could
/// destroy the reply in flight.
pub(crate) async fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

//! Optimistic CONNECT through a SOCKS 6 upstream (`optimistic = true`, the
//! gateway's default): a SOCKS4/5 client is answered at once, without
//! waiting for the upstream, so that its first bytes (an HTTP request, a
//! TLS ClientHello) arrive while the upstream request is still to be sent,
//! and go with it as initial data. The slow leg then costs one round trip
//! to the first response byte where strict mode costs two (and SOCKS5 to
//! the far proxy four).
//!
//! What that means for errors: the client was told "succeeded" before the
//! far side spoke, so a target the upstream cannot reach (or an upstream
//! that refuses) resets the accepted connection (RST) instead of being a
//! SOCKS reply code; the session's log line says why.

use std::time::Duration;

use sixsocks_proto::v6::{Options, MAX_INITIAL_DATA};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::command::reply::{send_success, Replier};
use crate::context::{Outcome, Record, Shared};
use crate::outbound::Outbound;
use crate::tunnel::{deliver, relay_recorded};
use crate::upstream::Upstream;

/// How long the client's first bytes are waited for after the reply. A
/// client that speaks first sends them within a local round trip; one that
/// waits for the server (ssh) loses only this.
const FIRST_BYTES_WAIT: Duration = Duration::from_millis(10);

/// Answer, take the client's first bytes, then connect through `up` with
/// them and relay. Every error is handled here (the success reply is out).
pub(super) async fn run(
    stream: &mut TcpStream,
    req: &impl Replier,
    up: &Upstream,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) {
    if let Err(e) = send_success(stream, req, None, Options::new(), shared, rec).await {
        let error = match e {
            crate::error::RequestError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        };
        rec.set_outcome(Outcome::ClientGone {
            after_reply: false,
            error,
        });
        return;
    }
    let mut early = leftover;
    if early.is_empty() {
        let mut buf = vec![0u8; MAX_INITIAL_DATA];
        if let Ok(Ok(n)) = tokio::time::timeout(FIRST_BYTES_WAIT, stream.read(&mut buf)).await {
            buf.truncate(n);
            early = buf;
        }
    }
    let out = match Outbound::via(up, req.target(), &early, rec).await {
        Ok(out) => out,
        Err(e) => {
            crate::metrics::request_refused(&e);
            // An RST: the client must not take the close for the end of a
            // successful exchange.
            let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
            rec.set_outcome(Outcome::OptimisticReset(e));
            return;
        }
    };
    if let Err(error) = deliver(stream, out.to_client, rec).await {
        rec.set_outcome(Outcome::ClientGone {
            after_reply: true,
            error,
        });
        return;
    }
    let rest = if out.early_sent { &[][..] } else { &early[..] };
    relay_recorded(stream, &out.stream, rest, shared, rec, None).await;
}

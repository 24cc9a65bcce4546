//! The commands, one file each, written once for every version: the one
//! dispatcher over `Replier`, which SOCKS4/5 requests and SOCKS 6
//! requests both implement (`reply.rs`). Admission (the rules for the
//! command, `allow_bind` / `allow_udp`, what each protocol carries) is
//! `policy::admit_request`; a refusal or failure is answered here.
//!
//! * `connect.rs`: CONNECT (SOCKS 6 with its initial data, TFO and stack
//!   options), direct or through an upstream, then the relay.
//! * `bind.rs`: BIND, both replies and the relay (SOCKS 6 with its listen
//!   backlog; the listeners in `socks6/backlog.rs`).
//! * `bind_upstream.rs`: a SOCKS4/5 BIND through an upstream.
//! * `udp.rs`: UDP ASSOCIATE's reply (the relay is `udp_relay/`).
//! * `resolve.rs`: Tor's RESOLVE and RESOLVE_PTR.
//! * `noop.rs`: SOCKS 6 NOOP.
//! * `optimistic.rs`: CONNECT answered before its SOCKS 6 upstream is
//!   (`optimistic = true`, the gateway's default).
//! * `dns.rs`: SOCKS 6's "DNS provided by SOCKS" (a CONNECT to `0.0.0.0`
//!   or `::` port 53, -11 and the reference dialect).

mod bind;
mod bind_upstream;
mod connect;
mod dns;
mod noop;
mod optimistic;
pub(crate) mod reply;
mod resolve;
mod udp;

use std::future::Future;

use sixsocks_proto::Command;
use tokio::net::TcpStream;

use crate::command::reply::{send_failure, Replier};
use crate::context::{Outcome, Record, Shared};
use crate::error::RequestError;
use crate::policy::admit_request;
use crate::tunnel::Handoff;

/// Admit a request, carry it out, and answer a refusal or failure (with
/// the reply code `error.rs` maps it to) and record it. A CONNECT answered
/// comes back as its [`Handoff`]: the caller runs its relay.
// Written out, not `async fn`, as `session::run` is: an async block uses
// its captures in place, where an `async fn` would keep a second copy of
// each argument in every session's future (and so would one more layer of
// function between here and the relay).
#[allow(clippy::manual_async_fn)]
pub(crate) fn execute<'a>(
    stream: &'a mut TcpStream,
    req: &'a impl Replier,
    leftover: Vec<u8>,
    shared: &'a Shared,
    rec: &'a mut Record,
) -> impl Future<Output = Option<Handoff>> + Send + 'a {
    async move {
        let admitted = admit_request(
            shared,
            rec,
            req.protocol(),
            req.command(),
            req.target(),
            req.credentials(),
        );
        let result = match admitted {
            Err(e) => Err(e),
            Ok(()) => match req.command() {
                Command::CONNECT if dns::wanted(req) => {
                    Box::pin(dns::serve(stream, req, leftover, shared, rec)).await
                }
                Command::CONNECT => {
                    return match connect::run(stream, req, leftover, shared, rec).await {
                        Ok(handoff) => handoff,
                        Err(e) => {
                            refused(stream, req, e, shared, rec).await;
                            None
                        }
                    };
                }
                // BIND and UDP are boxed: their futures are large and rare,
                // and an unboxed await would size every session's future to
                // fit them.
                Command::BIND => Box::pin(bind::run(stream, req, leftover, shared, rec)).await,
                Command::UDP_ASSOCIATE => Box::pin(udp::run(stream, req, shared, rec)).await,
                // Boxed too (rare, and since the relay became its own small
                // future their states were larger than CONNECT's).
                Command::RESOLVE => Box::pin(resolve::forward(stream, req, shared, rec)).await,
                Command::RESOLVE_PTR => Box::pin(resolve::reverse(stream, req, shared, rec)).await,
                Command::NOOP => Box::pin(noop::run(stream, req, shared, rec)).await,
                other => Err(RequestError::CommandNotSupported(other)),
            },
        };
        if let Err(e) = result {
            refused(stream, req, e, shared, rec).await;
        }
        None
    }
}

/// Answer a refused or failed request and record it.
async fn refused(
    stream: &mut TcpStream,
    req: &impl Replier,
    e: RequestError,
    shared: &Shared,
    rec: &mut Record,
) {
    crate::metrics::request_refused(&e);
    let code = e.reply_code();
    // Boxed: a refusal is short-lived.
    Box::pin(send_failure(
        stream,
        req,
        code,
        Outcome::Failed(e),
        shared,
        rec,
    ))
    .await;
}

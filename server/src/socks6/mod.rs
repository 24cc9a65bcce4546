//! SOCKS 6 requests after the handshake, before their command: sessions
//! (`sessions.rs`, -11 and the reference dialect), idempotence tokens
//! (`tokens.rs` for -05, where windows belong to the user; inside the
//! session for -11) and the authentication reply. The commands are
//! `command/`, as for every version; BIND's backlog listeners are kept in
//! `backlog.rs`.
//!
//! The authentication reply of a profile with sessions carries, in this
//! order (the reference's): the username/password reply (when the request
//! authenticated with one), the session's id (a session was started) or
//! "session OK" (the request is a member), the session's token window,
//! and the token's fate. A refused token fails the authentication reply
//! there (-11: "the Authentication Reply MUST indicate failure"); in -05
//! the authentication succeeds and the operation reply says general
//! failure.

pub mod backlog;
pub mod sessions;
pub mod tokens;

use std::time::Instant;

use sixsocks_proto::v6::idempotence::TokenDecision;
use sixsocks_proto::v6::{Options, SessionOption, SessionUse, Socks6Option, Socks6Request};
use sixsocks_proto::ReplyCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::command::reply::send_failure;
use crate::context::{Outcome, Record, Shared};
use crate::tunnel::{linger_close, Handoff};

use sessions::SessionLimits;

/// What the authentication reply says, decided before it is sent.
struct Answer {
    /// Options of the successful authentication reply.
    options: Options,
    /// The token decision, if the request spent or asked for tokens.
    tokens: Option<TokenDecision>,
}

/// Carry out a SOCKS 6 request and record what happened.
pub(crate) async fn execute(
    stream: &mut TcpStream,
    mut req: Box<Socks6Request>,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Option<Handoff> {
    let answer = if req.profile.has_sessions() {
        match in_session(&mut req, shared, rec) {
            Some(a) => a,
            None => {
                // A claim of a session that does not exist: refused before
                // anything else, with nothing carried out.
                rec.set_outcome(Outcome::SessionInvalid);
                refuse(stream, req.session_invalid_reply()).await;
                return None;
            }
        }
    } else {
        owner_tokens(&req, shared, rec)
    };
    if let Some(d) = answer.tokens.as_ref().filter(|d| !d.proceed) {
        let why = Outcome::TokenRefused(d.spend);
        if req.profile.has_sessions() {
            // -11: the authentication fails; the client closes.
            rec.set_outcome(why);
            refuse(stream, req.auth_failure_reply(answer.options)).await;
            return None;
        }
        // -05: the authentication succeeds, the operation fails.
        if send_auth_reply(stream, &req, answer.options, rec).await {
            send_failure(stream, &*req, ReplyCode::GeneralFailure, why, shared, rec).await;
        }
        return None;
    }
    if send_auth_reply(stream, &req, answer.options, rec).await {
        crate::command::execute(stream, &*req, leftover, shared, rec).await
    } else {
        None
    }
}

/// Send the successful authentication reply; false (with the outcome
/// recorded) when it cannot be encoded or the client is gone.
async fn send_auth_reply(
    stream: &mut TcpStream,
    req: &Socks6Request,
    options: Options,
    rec: &mut Record,
) -> bool {
    let Ok(reply) = req.auth_reply(options) else {
        rec.set_outcome(Outcome::AuthReplyUnencodable);
        return false;
    };
    if stream.write_all(&reply).await.is_err() {
        rec.set_outcome(Outcome::GoneBeforeAuthReply);
        return false;
    }
    true
}

/// Send a refusing authentication reply, then close without losing it.
async fn refuse(stream: &mut TcpStream, reply: Result<Vec<u8>, sixsocks_proto::EncodeError>) {
    if let Ok(reply) = reply {
        if stream.write_all(&reply).await.is_ok() {
            linger_close(stream).await;
        }
    }
}

/// -05: the window belongs to the user, or to the client's address when it
/// did not authenticate.
fn owner_tokens(req: &Socks6Request, shared: &Shared, rec: &Record) -> Answer {
    let has_tokens = req.options.idempotence().next().is_some();
    let tokens = has_tokens.then(|| shared.tokens.serve(rec.owner_key(shared), &req.options));
    Answer {
        options: tokens
            .as_ref()
            .map(|d| d.options.clone())
            .unwrap_or_default(),
        tokens,
    }
}

/// -11 and the reference dialect: resolve the request's session (a member
/// takes the session's credentials, here and in the record, before any
/// rule sees it), start or end one, and serve tokens inside it (outside a
/// session they are ignored, as the draft says). `None`: the claimed
/// session does not exist.
fn in_session(req: &mut Socks6Request, shared: &Shared, rec: &mut Record) -> Option<Answer> {
    let config = &shared.config;
    let now = Instant::now();
    let mut options = Options::new();
    let joined = match std::mem::replace(&mut req.session, SessionUse::None) {
        SessionUse::None => None,
        SessionUse::Teardown(id) => {
            let ended = shared.sessions.teardown(&id);
            tracing::debug!(client = %rec.client, ended, "socks6 session teardown");
            None
        }
        SessionUse::Member(id) => {
            let j = shared
                .sessions
                .join(&id, &req.options, config.socks6_session_idle(), now)?;
            req.credentials = j.credentials.clone();
            rec.credentials = j.credentials.clone();
            req.session = SessionUse::Member(id);
            options.push(Socks6Option::Session(SessionOption::Ok));
            Some(j)
        }
        SessionUse::Start => {
            let limits = SessionLimits {
                max_sessions: config.socks6_max_sessions,
                max_per_address: config.socks6_max_sessions_per_address,
                idle: config.socks6_session_idle(),
            };
            let started = shared.sessions.start(
                rec.client.ip(),
                &req.credentials,
                &req.options,
                &limits,
                now,
            );
            match started {
                Some((id, j)) => {
                    options.push(Socks6Option::Session(SessionOption::Id(id.to_vec())));
                    req.session = SessionUse::Start;
                    Some(j)
                }
                None => {
                    tracing::debug!(client = %rec.client, "socks6 session request ignored (cap)");
                    None
                }
            }
        }
    };
    let Some(j) = joined else {
        return Some(Answer {
            options,
            tokens: None,
        });
    };
    if let Some(w) = j.window {
        options.push(Socks6Option::Idempotence(w));
    }
    // The token's fate (the decision's other option, its advertisement, is
    // replaced by the session's window above).
    if let Some(reply) = j.tokens.as_ref().and_then(|d| {
        d.options
            .iter()
            .find(|o| {
                matches!(
                    o,
                    Socks6Option::Idempotence(
                        sixsocks_proto::v6::IdempotenceOption::ExpenditureReply(_)
                    )
                )
            })
            .cloned()
    }) {
        options.push(reply);
    }
    Some(Answer {
        options,
        tokens: j.tokens,
    })
}

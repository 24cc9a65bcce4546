//! SOCKS 6 (draft -05) requests after the handshake, before their command:
//! idempotence tokens (`tokens.rs`) and the authentication reply. The
//! commands are `command/`, as for every version; BIND's backlog
//! listeners are kept in `backlog.rs`.

pub mod backlog;
pub mod tokens;

use sixsocks_proto::v6::Socks6Request;
use sixsocks_proto::ReplyCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::command::reply::send_failure;
use crate::context::{Outcome, Record, Shared};

/// Carry out a SOCKS 6 request and record what happened.
pub(crate) async fn execute(
    stream: &mut TcpStream,
    req: Box<Socks6Request>,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) {
    // Idempotence: the window belongs to the user, or to the client's
    // address when it did not authenticate.
    let has_tokens = req.options.idempotence().next().is_some();
    let decision = if has_tokens {
        Some(shared.tokens.serve(rec.owner_key(shared), &req.options))
    } else {
        None
    };
    let auth_options = decision
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    let Ok(auth_reply) = req.auth_reply(auth_options) else {
        rec.set_outcome(Outcome::AuthReplyUnencodable);
        return;
    };
    if stream.write_all(&auth_reply).await.is_err() {
        rec.set_outcome(Outcome::GoneBeforeAuthReply);
        return;
    }
    if let Some(d) = &decision {
        if !d.proceed {
            let why = Outcome::TokenRefused(d.spend);
            send_failure(stream, &*req, ReplyCode::GeneralFailure, why, shared, rec).await;
            return;
        }
    }
    crate::command::execute(stream, &*req, leftover, shared, rec).await;
}

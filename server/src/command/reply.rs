//! What every command answers through, whatever the version: the
//! [`Replier`] trait, which a SOCKS4/5 request and a SOCKS 6 request both
//! implement, and the success and failure replies written with it.

use sixsocks_proto::v6::{Options, Socks6Request};
use sixsocks_proto::{Command, Credentials, EncodeError, ReplyCode, Request, TargetAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::context::{Outcome, Protocol, Record, Shared};
use crate::error::RequestError;
use crate::tunnel::linger_close;

/// A request as the commands see it: what it asks for, and how to answer
/// it in its own version's reply.
pub(crate) trait Replier: Sync {
    fn protocol(&self) -> Protocol;
    fn command(&self) -> Command;
    fn target(&self) -> &TargetAddr;
    fn credentials(&self) -> &Credentials;
    /// The reply with `code` and `bound` (`None`: zeros). `options`: the
    /// SOCKS 6 stack options applied (SOCKS4/5 carry none); `extended`:
    /// Tor's extended SOCKS5 codes pass as they are (`extended_errors`).
    fn reply(
        &self,
        code: ReplyCode,
        bound: Option<&TargetAddr>,
        options: Options,
        extended: bool,
    ) -> Result<Vec<u8>, EncodeError>;
    /// The SOCKS 6 request, for what only it carries (initial data, stack
    /// options, the listen backlog, association ids).
    fn socks6(&self) -> Option<&Socks6Request>;
}

impl Replier for Request {
    fn protocol(&self) -> Protocol {
        self.version.into()
    }
    fn command(&self) -> Command {
        self.command
    }
    fn target(&self) -> &TargetAddr {
        &self.target
    }
    fn credentials(&self) -> &Credentials {
        &self.credentials
    }
    fn reply(
        &self,
        code: ReplyCode,
        bound: Option<&TargetAddr>,
        _options: Options,
        extended: bool,
    ) -> Result<Vec<u8>, EncodeError> {
        Ok(Request::reply(self, code, bound, extended))
    }
    fn socks6(&self) -> Option<&Socks6Request> {
        None
    }
}

impl Replier for Socks6Request {
    fn protocol(&self) -> Protocol {
        Protocol::Socks6
    }
    fn command(&self) -> Command {
        self.command
    }
    fn target(&self) -> &TargetAddr {
        &self.target
    }
    fn credentials(&self) -> &Credentials {
        &self.credentials
    }
    fn reply(
        &self,
        code: ReplyCode,
        bound: Option<&TargetAddr>,
        options: Options,
        _extended: bool,
    ) -> Result<Vec<u8>, EncodeError> {
        self.operation_reply(code, bound, options)
    }
    fn socks6(&self) -> Option<&Socks6Request> {
        Some(self)
    }
}

/// A success reply's bytes (a reply SOCKS 6 cannot encode is an error).
pub(crate) fn success_bytes(
    req: &impl Replier,
    bound: Option<&TargetAddr>,
    options: Options,
    shared: &Shared,
) -> Result<Vec<u8>, RequestError> {
    req.reply(
        ReplyCode::Succeeded,
        bound,
        options,
        shared.config.extended_errors,
    )
    .map_err(|e| RequestError::Io(std::io::Error::other(e)))
}

/// Send a success reply and record it as the request's reply. The second
/// reply of a BIND (the host that connected) is one too.
pub(crate) async fn send_success(
    stream: &mut TcpStream,
    req: &impl Replier,
    bound: Option<&TargetAddr>,
    options: Options,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let bytes = success_bytes(req, bound, options, shared)?;
    rec.reply = Some(ReplyCode::Succeeded);
    stream.write_all(&bytes).await?;
    Ok(())
}

/// Answer with a failure reply carrying `code`, record why, and close
/// without losing the reply.
pub(crate) async fn send_failure(
    stream: &mut TcpStream,
    req: &impl Replier,
    code: ReplyCode,
    why: Outcome,
    shared: &Shared,
    rec: &mut Record,
) {
    rec.reply = Some(code);
    rec.set_outcome(why);
    let extended = shared.config.extended_errors;
    if let Ok(bytes) = req.reply(code, None, Options::new(), extended) {
        if stream.write_all(&bytes).await.is_ok() {
            linger_close(stream).await;
        }
    }
}

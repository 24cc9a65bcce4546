//! The handshake driver: runs the `proto` state machines (SOCKS4/4a/5,
//! and SOCKS 6 once the first byte says so) over the client's socket, with
//! the password check off the async threads, and says how it ended.

use sixsocks_proto::server::{Dispatch, ServerHandshake, Step};
use sixsocks_proto::v6::server::{Socks6Handshake, Step as V6Step};
use sixsocks_proto::v6::Socks6Request;
use sixsocks_proto::{ProtoError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::Shared;

/// Why a handshake ended without a request.
pub(crate) enum HandshakeEnd {
    /// The protocol machine refused; the bytes were sent.
    Refused(ProtoError),
    /// The SOCKS 6 machine refused; the bytes were sent.
    Socks6(ProtoError),
    /// The client closed (or reset) before finishing.
    Eof,
    Timeout,
    Io(std::io::Error),
}

pub(crate) fn describe_end(end: &HandshakeEnd) -> String {
    match end {
        HandshakeEnd::Refused(e) => format!("handshake refused: {e}"),
        HandshakeEnd::Socks6(e) => format!("socks6 handshake refused: {e}"),
        HandshakeEnd::Eof => "client closed during handshake".to_string(),
        HandshakeEnd::Timeout => "handshake timed out".to_string(),
        HandshakeEnd::Io(e) => format!("handshake i/o error: {e}"),
    }
}

/// A finished handshake: a SOCKS4/4a/5 request or a SOCKS 6 one.
pub(crate) enum Handshaken {
    Legacy(Request),
    Socks6(Box<Socks6Request>),
}

/// Which state machine is driving the handshake.
enum Machine<'a> {
    Legacy(&'a mut ServerHandshake),
    Socks6(Box<Socks6Handshake>),
}

/// One instruction of either machine, in a common shape.
enum Instr {
    NeedMore,
    Reply(usize, Vec<u8>),
    Verify(usize, Vec<u8>, sixsocks_proto::Password),
    Done(usize, Handshaken),
    Fail(Vec<u8>, HandshakeEnd),
}

impl Machine<'_> {
    fn step(&mut self, buf: &[u8]) -> Instr {
        match self {
            Machine::Legacy(hs) => match hs.dispatch(buf) {
                Dispatch::Socks6(m) => {
                    *self = Machine::Socks6(m);
                    self.step(buf)
                }
                Dispatch::Step(step) => match step {
                    Step::NeedMore(_) => Instr::NeedMore,
                    Step::Reply { consumed, bytes } => Instr::Reply(consumed, bytes),
                    Step::Verify {
                        consumed,
                        username,
                        password,
                    } => Instr::Verify(consumed, username, password),
                    Step::Done { consumed, request } => {
                        Instr::Done(consumed, Handshaken::Legacy(request))
                    }
                    Step::Fail { bytes, error } => Instr::Fail(bytes, HandshakeEnd::Refused(error)),
                },
            },
            Machine::Socks6(m) => match m.step(buf) {
                V6Step::NeedMore(_) => Instr::NeedMore,
                V6Step::Reply { consumed, bytes } => Instr::Reply(consumed, bytes),
                V6Step::Verify {
                    consumed,
                    username,
                    password,
                } => Instr::Verify(consumed, username, password),
                V6Step::Done { consumed, request } => {
                    Instr::Done(consumed, Handshaken::Socks6(request))
                }
                V6Step::Fail { bytes, error } => Instr::Fail(bytes, HandshakeEnd::Socks6(error)),
            },
        }
    }

    /// Report a verification; returns the bytes to send now (SOCKS5 only:
    /// the SOCKS 6 machine answers through its next step).
    fn auth_result(&mut self, ok: bool) -> Vec<u8> {
        match self {
            Machine::Legacy(hs) => hs.auth_result(ok),
            Machine::Socks6(m) => {
                m.auth_result(ok);
                Vec::new()
            }
        }
    }
}

/// Drive the handshake state machine over the socket. Returns the request
/// and any bytes the client sent after it (optimistic data).
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    hs: &mut ServerHandshake,
    shared: &Shared,
    tried_user: &mut Option<Vec<u8>>,
) -> Result<(Handshaken, Vec<u8>), HandshakeEnd> {
    let started = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut machine = Machine::Legacy(hs);
    let cap = shared.handshake_buf;
    loop {
        match machine.step(&buf) {
            Instr::NeedMore => {
                let room = cap - buf.len();
                if room == 0 {
                    // Cannot happen with the machines' own caps; refuse anyway.
                    return Err(HandshakeEnd::Refused(ProtoError::MessageTooLong(cap)));
                }
                buf.reserve(room.min(1024));
                let n = (&mut *stream)
                    .take(room as u64)
                    .read_buf(&mut buf)
                    .await
                    .map_err(HandshakeEnd::Io)?;
                if n == 0 {
                    return Err(HandshakeEnd::Eof);
                }
            }
            Instr::Reply(consumed, bytes) => {
                buf.drain(..consumed);
                stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
            }
            Instr::Verify(consumed, username, password) => {
                buf.drain(..consumed);
                let shown = String::from_utf8_lossy(&username)
                    .escape_debug()
                    .to_string();
                *tried_user = Some(username.clone());
                let client = stream.peer_addr().ok().map(|a| a.ip());
                let ok = shared.auth.verify(username, password, client).await;
                let bytes = machine.auth_result(ok);
                if !bytes.is_empty() {
                    stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
                }
                if !ok {
                    tracing::warn!(
                        client = %client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                        user = %shown,
                        "authentication failed"
                    );
                    if let Machine::Legacy(_) = machine {
                        return Err(HandshakeEnd::Refused(ProtoError::AuthFailed));
                    }
                    // SOCKS 6: the machine's next step is the failure reply.
                }
            }
            Instr::Done(consumed, request) => {
                crate::metrics::handshake_seconds(started.elapsed());
                buf.drain(..consumed);
                return Ok((request, buf));
            }
            Instr::Fail(bytes, end) => {
                if !bytes.is_empty() {
                    stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
                }
                return Err(end);
            }
        }
    }
}

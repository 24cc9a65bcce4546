//! The handshake driver: runs the `proto` state machines (SOCKS4/4a/5,
//! and SOCKS 6 once the first byte says so) over the client's socket, with
//! the password check off the async threads, and says how it ended.

use sixsocks_proto::server::{ServerHandshake, Verify};
use sixsocks_proto::Instruction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::{HandshakeEnd, Shared};

/// A finished handshake: a SOCKS4/4a/5 request or a SOCKS 6 one.
pub(crate) use sixsocks_proto::server::Accepted as Handshaken;

/// Drive the handshake state machine over the socket. Returns the request
/// and any bytes the client sent after it (optimistic data).
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    hs: &mut ServerHandshake,
    shared: &Shared,
    tried_user: &mut Option<Vec<u8>>,
) -> Result<(Handshaken, Vec<u8>), HandshakeEnd> {
    let started = Instant::now();
    loop {
        match hs.step() {
            Instruction::NeedMore(_) => {
                let n = stream
                    .read(hs.input().spare())
                    .await
                    .map_err(HandshakeEnd::Io)?;
                if n == 0 {
                    return Err(HandshakeEnd::Eof);
                }
                hs.input().filled(n);
            }
            Instruction::Send(bytes) => {
                stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
            }
            Instruction::Event(Verify { username, password }) => {
                let shown = String::from_utf8_lossy(&username)
                    .escape_debug()
                    .to_string();
                *tried_user = Some(username.clone());
                let client = stream.peer_addr().ok().map(|a| a.ip());
                let ok = shared.auth.verify(username, password, client).await;
                hs.verdict(ok);
                if !ok {
                    tracing::warn!(
                        client = %client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                        user = %shown,
                        "authentication failed"
                    );
                }
            }
            Instruction::Finished { value, rest } => {
                crate::metrics::handshake_seconds(started.elapsed());
                return Ok((value, rest));
            }
            Instruction::Failed { reply, error } => {
                if !reply.is_empty() {
                    stream.write_all(&reply).await.map_err(HandshakeEnd::Io)?;
                }
                return Err(match hs.socks6_profile() {
                    Some(_) => HandshakeEnd::Socks6(error),
                    None => HandshakeEnd::Refused(error),
                });
            }
        }
    }
}

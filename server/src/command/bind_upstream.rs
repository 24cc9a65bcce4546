//! BIND of a SOCKS4/5 client through the upstream a rule routes it to (the
//! gateway's BIND): the upstream listens, its two replies become ours, and
//! the inbound connection is relayed. To a SOCKS 6 upstream the request
//! names "any address" (a SOCKS 6 BIND names the address to bind, not the
//! host expected), so the expected host is checked here, when
//! `bind_check_peer` is on, once the upstream says who connected.

use sixsocks_proto::v6::Options;
use sixsocks_proto::{Host, TargetAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::reply::{send_success, success_bytes, Replier};
use crate::context::{Outcome, Record, Shared};
use crate::destination::{self, same_ip};
use crate::error::RequestError;
use crate::tunnel::{deliver, relay_recorded};
use crate::upstream::Upstream;

/// Most bytes a client may send before the second reply.
const EARLY_CAP: usize = 64 * 1024;

pub(super) async fn run(
    stream: &mut TcpStream,
    req: &impl Replier,
    up: &Upstream,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let expected = match &req.target().host {
        Host::Ip(ip) if !destination::is_unspecified(*ip) => Some(*ip),
        _ => None,
    };
    let ask = if up.proxy().scheme.is_socks6() {
        TargetAddr::unspecified()
    } else {
        req.target().clone()
    };
    let listener = up.bind(&ask, &rec.credentials).await?;
    rec.set_outcome(Outcome::ViaUpstream(up.name().to_string()));
    let bound = listener.bind_addr().clone();
    let first = success_bytes(req, Some(&bound), Options::new(), shared)?;
    stream.write_all(&first).await?;
    // While the upstream waits for its inbound connection, the client's
    // early bytes are kept (up to a cap), and its close ends the BIND.
    let mut early = leftover;
    let wait = async {
        let accept = listener.accept();
        tokio::pin!(accept);
        loop {
            let mut chunk = [0u8; 4096];
            tokio::select! {
                r = &mut accept => return Some(r),
                r = stream.read(&mut chunk), if early.len() < EARLY_CAP => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => early.extend_from_slice(&chunk[..n]),
                },
            }
        }
    };
    let accepted = tokio::time::timeout(shared.config.bind_timeout(), wait)
        .await
        .map_err(|_| RequestError::BindTimeout)?;
    let Some(accepted) = accepted else {
        rec.set_outcome(Outcome::BindClientClosed);
        return Ok(());
    };
    let (inbound, peer) = accepted.map_err(|e| up.failed_bind(e))?;
    if let (Some(ip), Host::Ip(got)) = (expected, &peer.host) {
        if shared.config.bind_check_peer && !same_ip(ip, *got) {
            return Err(RequestError::Blocked(format!(
                "BIND through upstream {}: {peer} connected, {ip} was expected",
                up.name()
            )));
        }
    }
    send_success(stream, req, Some(&peer), Options::new(), shared, rec).await?;
    let (inbound, to_client) = inbound.into_inner();
    deliver(stream, to_client, rec).await?;
    relay_recorded(stream, &inbound, &early, shared, rec, None).await;
    Ok(())
}

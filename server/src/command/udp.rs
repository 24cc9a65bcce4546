//! UDP ASSOCIATE, every version: open the association (its relay socket in
//! `udp_relay/`), answer with the relay's address (SOCKS 6: then the
//! association id), and relay until the TCP connection ends.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sixsocks_proto::v6::{AssociationId, Options};
use sixsocks_proto::ReplyCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::command::reply::{success_bytes, Replier};
use crate::context::{Record, Shared};
use crate::error::RequestError;
use crate::udp_relay::{Association, Framing};

pub(super) async fn run(
    stream: &mut TcpStream,
    req: &impl Replier,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    // SOCKS5 names the port the client will send from (0: not known yet);
    // SOCKS 6 names none, and frames datagrams with an association id.
    let (declared_port, framing, id) = match req.socks6() {
        None => {
            let port = req.target().port;
            ((port != 0).then_some(port), Framing::Socks5, None)
        }
        Some(r) => {
            // As wide as the request's profile says (4 random bytes for -05).
            let width = r.profile.codec().layout().association_id_width;
            let id = AssociationId::from_random(OsRng.next_u64(), width);
            (None, Framing::socks6(r, id), Some((r, id)))
        }
    };
    // Routed to an upstream by the rules (SOCKS5 only: a SOCKS 6 one was
    // refused at admission): an association with it carries the datagrams.
    let via = if req.socks6().is_none() {
        let verdict = crate::policy::verdict_again(shared, rec, crate::rules::Dest::Unknown)?;
        match crate::policy::upstream_of(shared, verdict.rule())? {
            Some(up) => Some((up.associate(&rec.credentials).await?, up.name().to_string())),
            None => None,
        }
    } else {
        None
    };
    let errors = framing.reports_errors();
    let (slot, mut assoc) = Association::open(stream, shared, declared_port, framing).await?;
    if let Some((dgram, name)) = via {
        tracing::debug!(upstream = %name, "udp association through the upstream");
        assoc.via_upstream(dgram);
    }
    let relay_addr = assoc.relay_addr()?;
    let answers = req.socks6().map_or_else(Options::new, |r| {
        stack_answers(r, errors, relay_addr.port())
    });
    let mut out = success_bytes(req, Some(&relay_addr.into()), answers, shared)?;
    if let Some((r, id)) = id {
        let init = r.association_init(id);
        out.extend(init.map_err(|e| RequestError::Io(std::io::Error::other(e)))?);
    }
    stream.write_all(&out).await?;
    rec.reply = Some(ReplyCode::Succeeded);
    assoc.run(stream, shared, rec, relay_addr).await;
    drop(slot);
    Ok(())
}

/// -11 answers every supported stack option of a UDP ASSOCIATE: whether
/// ICMP errors will be reported, and the parity of the relay port (which
/// the proxy does not choose, and so reserves no counterpart for).
fn stack_answers(req: &sixsocks_proto::v6::Socks6Request, errors: bool, port: u16) -> Options {
    use sixsocks_proto::v6::{Leg, Parity, StackRequests};
    let asked = req.options.stack_requests(Leg::PROXY_REMOTE);
    let answer = StackRequests {
        udp_error: asked.udp_error.map(|_| errors),
        port_parity: asked.port_parity.map(|_| {
            let parity = if port.is_multiple_of(2) {
                Parity::EVEN
            } else {
                Parity::ODD
            };
            (parity, false)
        }),
        ..StackRequests::default()
    };
    Options(answer.to_options(Leg::PROXY_REMOTE))
}

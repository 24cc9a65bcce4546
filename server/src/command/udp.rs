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
    let (slot, mut assoc) = Association::open(stream, shared, declared_port, framing).await?;
    let relay_addr = assoc.relay_addr()?;
    let mut out = success_bytes(req, Some(&relay_addr.into()), Options::new(), shared)?;
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

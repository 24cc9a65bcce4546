//! The outbound connection of a CONNECT (`command/connect.rs`): a direct
//! one (`happy_eyeballs.rs`) or one through an upstream proxy.

use sixsocks_proto::{Host, TargetAddr};
use tokio::net::TcpStream;

use crate::context::{Outcome, Record};
use crate::error::RequestError;
use crate::upstream::Upstream;

/// An outbound connection for CONNECT, direct or through an upstream.
pub(crate) struct Outbound {
    pub(crate) stream: TcpStream,
    /// The address for the success reply.
    pub(crate) bound: Option<TargetAddr>,
    /// Target bytes an upstream sent right behind its reply: the client
    /// gets them first (`tunnel::deliver`).
    pub(crate) to_client: Vec<u8>,
    /// Whether the client's early bytes already went out (as SOCKS 6
    /// initial data to an upstream).
    pub(crate) early_sent: bool,
}

impl Outbound {
    /// A direct connection: its local address is the bound address.
    pub(crate) fn direct(stream: TcpStream) -> Self {
        Outbound {
            bound: stream.local_addr().ok().map(TargetAddr::from),
            stream,
            to_client: Vec::new(),
            early_sent: false,
        }
    }

    /// A connection through `up`; `early` goes with the request when the
    /// upstream speaks SOCKS 6 (counted as sent).
    pub(crate) async fn via(
        up: &Upstream,
        target: &TargetAddr,
        early: &[u8],
        rec: &mut Record,
    ) -> Result<Self, RequestError> {
        let s = up.connect(target, &rec.credentials, early).await?;
        if s.early_sent {
            rec.counters.add_up(early.len() as u64);
        }
        rec.set_outcome(Outcome::ViaUpstream(up.name().to_string()));
        // The upstream's own outbound address when it says; zeros if not.
        let bound = match s.bound.host {
            Host::Ip(_) => s.bound,
            Host::Domain(_) => TargetAddr::unspecified(),
        };
        Ok(Outbound {
            stream: s.stream,
            bound: Some(bound),
            to_client: s.leftover,
            early_sent: s.early_sent,
        })
    }
}

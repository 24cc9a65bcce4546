//! The outbound connection of a CONNECT: direct (the policy's addresses,
//! happy eyeballs, egress options) or through an upstream proxy.

use sixsocks_proto::{Host, TargetAddr};
use tokio::net::TcpStream;

use crate::context::{Outcome, Record, Shared};
use crate::error::RequestError;
use crate::happy_eyeballs::happy_eyeballs_with;
use crate::policy::{direct_plan, route_checked, Route};
use crate::upstream::Upstream;

/// An outbound connection for CONNECT, direct or through an upstream.
pub(crate) struct Outbound {
    pub(crate) stream: TcpStream,
    /// The address for the success reply.
    pub(crate) bound: Option<TargetAddr>,
    /// Target bytes an upstream sent right behind its reply: the client
    /// gets them first ([`deliver`]).
    pub(crate) to_client: Vec<u8>,
    /// Whether the client's early bytes already went out (as SOCKS 6
    /// initial data to an upstream).
    pub(crate) early_sent: bool,
}

impl Outbound {
    fn direct(stream: TcpStream) -> Self {
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

/// Check the rules, then connect: through the upstream a rule routes to, or
/// directly (resolve, check the addresses, connect). `early`: the client's
/// first bytes (an upstream speaking SOCKS 6 takes them with its request).
pub(crate) async fn connect_target(
    target: &TargetAddr,
    shared: &Shared,
    rec: &mut Record,
    early: &[u8],
) -> Result<Outbound, RequestError> {
    let (addrs, rule) = match route_checked(target, shared, rec).await? {
        Route::Upstream(up) => return Outbound::via(up, target, early, rec).await,
        Route::Direct(addrs, rule) => (addrs, rule),
    };
    let (addrs, opts) = direct_plan(addrs, rule, target.port, shared, rec)?;
    happy_eyeballs_with(
        &addrs,
        target.port,
        shared.config.happy_eyeballs_delay(),
        shared.config.connect_timeout(),
        opts,
    )
    .await
    .map(|(s, _)| Outbound::direct(s))
}

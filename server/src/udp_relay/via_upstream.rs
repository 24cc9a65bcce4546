//! A SOCKS5 client's UDP association carried through the upstream a rule
//! routes it to (the gateway's UDP ASSOCIATE): the relay keeps the
//! client-facing socket and its SOCKS5 framing, and sends every datagram
//! through an association of its own with the upstream (to a SOCKS 6
//! upstream, a SOCKS 6 UDP association), names unresolved (the far side
//! resolves them, as for CONNECT). Each destination still goes through the
//! rules, by name or address, before it leaves.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use sixsocks_client::SocksDatagram;
use sixsocks_proto::udp::UdpHeader;
use sixsocks_proto::TargetAddr;

use super::Association;
use crate::context::{Record, Shared};
use crate::metrics::{udp_datagram, Direction, UdpDrop};
use crate::rules::{Dest, Verdict};

impl Association {
    /// Send a client datagram to `target` through the upstream association.
    pub(super) async fn send_via_upstream(
        &mut self,
        up: &SocksDatagram,
        target: TargetAddr,
        data: &[u8],
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        let dest = Dest::of(&target);
        if let Dest::Unknown = dest {
            return;
        }
        if let Verdict::Block(_) = shared.rules.check(&rec.facts(shared, dest)) {
            crate::metrics::rule_block("udp");
            return self.drop_datagram(UdpDrop::Blocked, "blocked by the rules", src);
        }
        match up.send_to(data, target).await {
            Ok(_) => {
                self.stats.to_remote.fetch_add(1, Ordering::Relaxed);
                udp_datagram(Direction::Up);
                rec.counters.add_up(data.len() as u64);
            }
            Err(e) => self.drop_datagram(UdpDrop::SendError, &format!("send upstream: {e}"), src),
        }
    }

    /// A datagram the upstream relayed to us from `source`: to the client,
    /// with a SOCKS5 header naming the source.
    pub(super) async fn relay_from_upstream(
        &mut self,
        data: &[u8],
        source: TargetAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        let src = source
            .socket_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if data.len() > shared.config.max_datagram {
            return self.drop_datagram(UdpDrop::TooLarge, "larger than max_datagram", src);
        }
        let Ok(dgram) = (UdpHeader {
            frag: 0,
            target: source,
        })
        .datagram(data) else {
            return self.drop_datagram(UdpDrop::SendError, "cannot encode header", src);
        };
        match self.send_to_client(&dgram, self.client_port).await {
            Ok(()) => {
                self.stats.to_client.fetch_add(1, Ordering::Relaxed);
                udp_datagram(Direction::Down);
                rec.counters.add_down(data.len() as u64);
            }
            Err(why) => self.drop_datagram(UdpDrop::SendError, &why, src),
        }
    }
}

/// The next datagram from the upstream association (never, without one).
pub(super) async fn recv(
    up: Option<&SocksDatagram>,
    buf: &mut [u8],
) -> std::io::Result<(usize, TargetAddr)> {
    match up {
        Some(u) => u.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

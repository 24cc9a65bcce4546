//! SOCKS 6 -11's UDP error reporting: a client that asked (the UDP error
//! option) gets the ICMP errors its datagrams met, as datagram error
//! messages naming the destination, the host that reported it and what it
//! said. The outbound sockets of such an association queue their ICMP
//! errors (`IP_RECVERR`); a receive that fails drains the queue here.
//!
//! -11 has four codes: network unreachable, host unreachable, TTL expired
//! and (IPv6) datagram too big. ICMP's "port unreachable" and "protocol
//! unreachable" have none of their own: they are reported as host
//! unreachable (the host said no), a choice the draft leaves open. IPv4's
//! "fragmentation needed" is not reported (-11 gives "too big" to IPv6
//! only).

use sixsocks_proto::v6::{Codec, UdpErrorCode, UdpErrorReport};

use super::{Association, Framing};

/// Most errors relayed per failed receive (the queue holds a few).
const MAX_PER_WAKEUP: usize = 16;

/// Whether `codec`'s profile has datagram error messages (-11).
pub(super) fn supported(codec: &dyn Codec) -> bool {
    codec.datagrams_over_tcp()
}

/// The -11 code of an ICMP (or ICMPv6) error, if it has one.
fn code(icmp6: bool, icmp_type: u8, icmp_code: u8) -> Option<UdpErrorCode> {
    Some(match (icmp6, icmp_type, icmp_code) {
        // ICMP destination unreachable: net, host, protocol, port, net and
        // host unknown, administratively prohibited.
        (false, 3, 0 | 6 | 9 | 11) => UdpErrorCode::NETWORK_UNREACHABLE,
        (false, 3, 1 | 2 | 3 | 7 | 10 | 12 | 13) => UdpErrorCode::HOST_UNREACHABLE,
        (false, 11, _) => UdpErrorCode::TTL_EXPIRED,
        // ICMPv6 destination unreachable: no route; prohibited, address,
        // port unreachable.
        (true, 1, 0) => UdpErrorCode::NETWORK_UNREACHABLE,
        (true, 1, _) => UdpErrorCode::HOST_UNREACHABLE,
        (true, 2, _) => UdpErrorCode::DATAGRAM_TOO_BIG,
        (true, 3, _) => UdpErrorCode::TTL_EXPIRED,
        _ => return None,
    })
}

impl Association {
    /// Drain the outbound socket's ICMP errors and relay each to the client
    /// (only for an association that asked for them).
    pub(super) async fn relay_icmp_errors(&mut self, ipv6: bool) {
        let (codec, id) = match &self.framing {
            Framing::Socks6 {
                codec,
                id,
                report_errors: true,
                confirmation: None,
            } => (*codec, *id),
            _ => return,
        };
        for _ in 0..MAX_PER_WAKEUP {
            let socket = if ipv6 { &self.out6 } else { &self.out4 };
            let Some(socket) = socket else { return };
            // Through tokio, so that an empty queue (WouldBlock) clears the
            // socket's error readiness.
            let taken = socket.try_io(tokio::io::Interest::ERROR, || {
                sixsocks_sys::recv_icmp_error(socket)
            });
            let e = match taken {
                Ok(Some(e)) => e,
                // Something that was no ICMP error: consumed, go on.
                Ok(None) => continue,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    tracing::debug!(error = %err, "reading the ICMP error queue");
                    return;
                }
            };
            let Some(code) = code(e.icmp6, e.icmp_type, e.icmp_code) else {
                continue;
            };
            let report = UdpErrorReport {
                association: id,
                dest: std::net::SocketAddr::new(e.dest.ip().to_canonical(), e.dest.port()),
                reporter: e.reporter.unwrap_or(e.dest.ip()).to_canonical(),
                code,
            };
            let Ok(msg) = codec.udp_error(&report) else {
                continue;
            };
            let port = self.client_port;
            if let Err(why) = self.send_to_client(&msg, port).await {
                tracing::debug!(why, "ICMP error not relayed");
            } else {
                tracing::debug!(dest = %report.dest, code = report.code.0, "ICMP error relayed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_errors_map_to_the_drafts_codes() {
        assert_eq!(
            code(false, 3, 3),
            Some(UdpErrorCode::HOST_UNREACHABLE),
            "port"
        );
        assert_eq!(code(false, 3, 0), Some(UdpErrorCode::NETWORK_UNREACHABLE));
        assert_eq!(code(false, 11, 0), Some(UdpErrorCode::TTL_EXPIRED));
        assert_eq!(code(false, 3, 4), None, "IPv4 fragmentation needed");
        assert_eq!(
            code(true, 1, 4),
            Some(UdpErrorCode::HOST_UNREACHABLE),
            "port"
        );
        assert_eq!(code(true, 2, 0), Some(UdpErrorCode::DATAGRAM_TOO_BIG));
        assert_eq!(code(true, 3, 0), Some(UdpErrorCode::TTL_EXPIRED));
        assert_eq!(code(false, 5, 0), None, "redirect");
    }
}

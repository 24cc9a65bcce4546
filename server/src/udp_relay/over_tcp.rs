//! SOCKS 6 -11: datagrams on the TCP connection. After the association's
//! initialisation message the client may send its datagrams on the TCP
//! connection instead of over UDP, framed by their own length. The first
//! datagram that comes (either way) maps the association: over TCP, the
//! confirmation, the datagrams back and the ICMP errors go on the TCP
//! connection, and datagrams with the association's id that come over UDP
//! are dropped (and the other way round), as the draft says.

use sixsocks_proto::Parsed;
use tokio::net::TcpStream;

use super::{Association, Framing};
use crate::context::{Record, Shared};
use crate::metrics::UdpDrop;

/// Most bytes of one message buffered from the TCP connection (a datagram
/// header and the largest UDP payload).
const MAX_MESSAGE: usize = 65_535 + 300;
/// Most bytes queued for the client's TCP connection; datagrams beyond are
/// dropped (a client that does not read cannot make the relay hold more).
pub(super) const MAX_QUEUED: usize = 1 << 20;

impl Association {
    /// Read what the client sent on the TCP connection. -11 associations
    /// take datagrams from it; for the others nothing is expected there
    /// and it is ignored. `Err`: the association ends, with why.
    pub(super) async fn read_control(
        &mut self,
        client: &mut TcpStream,
        shared: &Shared,
        rec: &Record,
    ) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match client.try_read(&mut chunk) {
            Ok(0) => return Err("control connection closed".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("control connection error: {e}")),
        };
        let (codec, id) = match &self.framing {
            Framing::Socks6 { codec, id, .. } if codec.datagrams_over_tcp() => (*codec, *id),
            // Nothing is expected here; ignore it.
            _ => return Ok(()),
        };
        self.tcp_in.extend_from_slice(&chunk[..n]);
        loop {
            let (header, payload, consumed) = match codec.parse_stream_datagram(&self.tcp_in) {
                Ok(Parsed::Complete {
                    value: (header, payload),
                    consumed,
                }) => (header, payload, consumed),
                Ok(Parsed::Incomplete { .. }) if self.tcp_in.len() <= MAX_MESSAGE => return Ok(()),
                Ok(Parsed::Incomplete { .. }) => {
                    return Err("a message on the control connection over 64 KiB".into())
                }
                Err(e) => return Err(format!("bad message on the control connection: {e}")),
            };
            let data = self.tcp_in[payload].to_vec();
            self.tcp_in.drain(..consumed);
            let src = rec.client;
            if header.association != id {
                self.drop_datagram(UdpDrop::BadHeader, "unknown association id", src);
                continue;
            }
            if self.client_port.is_some() {
                self.drop_datagram(UdpDrop::NotFromClient, "the association is on UDP", src);
                continue;
            }
            if !self.over_tcp {
                self.over_tcp = true;
                if let Framing::Socks6 { confirmation, .. } = &mut self.framing {
                    if let Some(c) = confirmation.take() {
                        self.tcp_out.extend_from_slice(&c);
                    }
                }
            }
            if header.is_confirmation_request() && data.is_empty() {
                continue;
            }
            self.forward_client(header.target, data, src, shared, rec)
                .await;
        }
    }
}

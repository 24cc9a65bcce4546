//! The client side of SOCKS 6's "DNS provided by SOCKS" (the server side is
//! `command/dns.rs`): an upstream's resolver asked over a CONNECT to
//! `0.0.0.0:53`, DNS over TCP. The gateway resolves Tor's RESOLVE and
//! RESOLVE_PTR this way through a `socks6://` upstream (-11 or the
//! reference dialect), so that names are looked up from the far side.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest response read.
const MAX_RESPONSE: usize = 65_535;

/// A query for `name` of `qtype` with `id`, framed for TCP (RFC 7766).
pub fn query(id: u16, name: &str, qtype: RecordType) -> Option<Vec<u8>> {
    let name = Name::from_utf8(name).ok()?;
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name, qtype));
    let bytes = m.to_vec().ok()?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    Some(framed)
}

/// The PTR name of `ip` (`in-addr.arpa` / `ip6.arpa`).
pub fn arpa(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xF, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// Read `n` responses (any order) from `stream`, after `leftover`, within
/// `deadline`.
pub async fn responses(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    n: usize,
    deadline: Duration,
) -> std::io::Result<Vec<Message>> {
    let read = async {
        let mut out = Vec::new();
        while out.len() < n {
            if buf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if buf.len() >= 2 + len {
                    let m = Message::from_vec(&buf[2..2 + len])
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    buf.drain(..2 + len);
                    out.push(m);
                    continue;
                }
            }
            if buf.len() > MAX_RESPONSE + 2 {
                return Err(std::io::Error::other("DNS response too long"));
            }
            let mut chunk = [0u8; 4096];
            let k = stream.read(&mut chunk).await?;
            if k == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..k]);
        }
        Ok(out)
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The addresses in `m`'s answers, and its response code.
pub fn addresses(m: &Message) -> (ResponseCode, Vec<IpAddr>) {
    let ips = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    (m.metadata.response_code, ips)
}

/// The first PTR name in `m`'s answers.
pub fn ptr_name(m: &Message) -> Option<String> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::PTR(p) => Some(p.0.to_utf8().trim_end_matches('.').to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arpa_names() {
        assert_eq!(arpa("127.0.0.1".parse().unwrap()), "1.0.0.127.in-addr.arpa");
        assert!(arpa("::1".parse().unwrap()).starts_with("1.0.0.0."));
        assert!(arpa("::1".parse().unwrap()).ends_with(".ip6.arpa"));
    }

    #[test]
    fn queries_are_framed() {
        let q = query(7, "example.com", RecordType::A).unwrap();
        assert_eq!(usize::from(u16::from_be_bytes([q[0], q[1]])), q.len() - 2);
        let m = Message::from_vec(&q[2..]).unwrap();
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.queries[0].query_type, RecordType::A);
    }
}

//! "DNS provided by SOCKS" (SOCKS 6 -08 and later): a CONNECT to `0.0.0.0`
//! or `::` port 53 reaches the proxy's own resolver, spoken as DNS over TCP
//! (RFC 7766: each message behind a 2-byte length). Every name asked goes
//! through the same rules and routes as a name a client sends to CONNECT
//! or RESOLVE to (a blocked name is answered `REFUSED`, a name routed
//! through an upstream is resolved there), so the service is no way around
//! them.
//!
//! Answered: A, AAAA and ANY (the resolver's addresses of the family asked
//! for, TTL 60), PTR (`in-addr.arpa` / `ip6.arpa`); any other type of a
//! name that exists gets an empty answer (NODATA). Caps: a query of at most
//! 4 KiB and one question, 1,000 queries per connection, and 30 s (or
//! `idle_timeout`, if shorter) between them. Messages are parsed and written with
//! hickory-proto.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use sixsocks_proto::v6::{Options, Profile};
use sixsocks_proto::{Host, TargetAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::reply::{send_success, Replier};
use crate::context::{Outcome, Record as SessionRecord, Shared};
use crate::error::RequestError;

/// Longest query read (DNS over TCP allows 65,535; queries are small).
const MAX_QUERY: usize = 4096;
/// Most queries on one connection.
const MAX_QUERIES: usize = 1000;
/// TTL of the answers (the system resolver does not say).
const TTL: u32 = 60;
/// Longest wait for the next query (RFC 7766 §6.2.3: servers should not
/// hold idle connections long); `idle_timeout` when shorter.
const DNS_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `req` asks for the DNS service: a SOCKS 6 CONNECT (a profile of
/// -08 or later) to an unspecified address, port 53.
pub(super) fn wanted(req: &impl Replier) -> bool {
    let later = req.socks6().is_some_and(|r| r.profile != Profile::Draft05);
    let t = req.target();
    later && t.port == 53 && matches!(t.host, Host::Ip(ip) if ip.is_unspecified())
}

/// Serve DNS over TCP on the client's connection until it closes.
pub(super) async fn serve(
    stream: &mut TcpStream,
    req: &impl Replier,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut SessionRecord,
) -> Result<(), RequestError> {
    // The draft: the reply MAY name an unspecified bind address and port.
    send_success(stream, req, None, Options::new(), shared, rec).await?;
    // Queries may have come with the request: its initial data, then
    // what followed it (false start).
    let mut buf = req
        .socks6()
        .map_or_else(Vec::new, |r| r.initial_data.clone());
    buf.extend_from_slice(&leftover);
    let idle = shared
        .config
        .idle_timeout()
        .map_or(DNS_IDLE, |t| t.min(DNS_IDLE));
    let mut answered = 0usize;
    let mut refused = 0usize;
    while answered < MAX_QUERIES {
        let Some(query) = read_message(stream, &mut buf, idle).await? else {
            break;
        };
        let (reply, was_refused) = answer(&query, shared, rec).await;
        refused += usize::from(was_refused);
        let mut out = Vec::with_capacity(2 + reply.len());
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
        answered += 1;
    }
    rec.set_outcome(Outcome::DnsService {
        queries: answered,
        refused,
    });
    Ok(())
}

/// The next length-prefixed message, `None` at EOF, idle time-out or a
/// length out of bounds (the connection then closes).
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: std::time::Duration,
) -> Result<Option<Vec<u8>>, RequestError> {
    loop {
        if buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if len == 0 || len > MAX_QUERY {
                tracing::debug!(len, "dns over socks: query length out of bounds; closing");
                return Ok(None);
            }
            if buf.len() >= 2 + len {
                let msg = buf[2..2 + len].to_vec();
                buf.drain(..2 + len);
                return Ok(Some(msg));
            }
        }
        let mut chunk = [0u8; 1024];
        let n = match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The response to one query (and whether the rules refused it). A
/// message that does not parse gets FORMERR when its id can be read.
async fn answer(query: &[u8], shared: &Shared, rec: &SessionRecord) -> (Vec<u8>, bool) {
    let Ok(q) = Message::from_vec(query) else {
        let id = query
            .get(..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        return (error_response(id, ResponseCode::FormErr), false);
    };
    let mut resp = Message::response(q.metadata.id, q.metadata.op_code);
    resp.metadata.recursion_desired = q.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = q.queries.clone();
    if q.metadata.op_code != OpCode::Query || q.metadata.message_type != MessageType::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return (resp.to_vec().unwrap_or_default(), false);
    }
    let [question] = &q.queries[..] else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return (resp.to_vec().unwrap_or_default(), false);
    };
    let name = question.name.clone();
    let qtype = question.query_type;
    let result = match qtype {
        RecordType::PTR => reverse(&name, shared, rec).await,
        _ => forward(&name, qtype, shared, rec).await,
    };
    let refused = matches!(result, Err(RequestError::Blocked(_)));
    match result {
        Ok(records) => resp.answers = records,
        Err(e) => {
            resp.metadata.response_code = match e {
                RequestError::Blocked(_) => ResponseCode::Refused,
                RequestError::Resolve(_) | RequestError::HostUnreachable => ResponseCode::NXDomain,
                _ => ResponseCode::ServFail,
            };
        }
    }
    (resp.to_vec().unwrap_or_default(), refused)
}

fn error_response(id: u16, code: ResponseCode) -> Vec<u8> {
    Message::error_msg(id, OpCode::Query, code)
        .to_vec()
        .unwrap_or_default()
}

/// A, AAAA, ANY (and NODATA for other types of a name that resolves).
async fn forward(
    name: &Name,
    qtype: RecordType,
    shared: &Shared,
    rec: &SessionRecord,
) -> Result<Vec<Record>, RequestError> {
    let text = name.to_utf8();
    let text = text.trim_end_matches('.');
    let target = TargetAddr::domain(text, 53);
    let addrs = super::resolve::resolve_routed(&target, shared, rec).await?;
    Ok(addrs
        .into_iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(a), RecordType::A | RecordType::ANY) => Some(RData::A(rdata::A(a))),
            (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) => {
                Some(RData::AAAA(rdata::AAAA(a)))
            }
            _ => None,
        })
        .map(|rdata| Record::from_rdata(name.clone(), TTL, rdata))
        .collect())
}

/// PTR of an `in-addr.arpa` or `ip6.arpa` name.
async fn reverse(
    name: &Name,
    shared: &Shared,
    rec: &SessionRecord,
) -> Result<Vec<Record>, RequestError> {
    let ip =
        arpa_ip(name).ok_or_else(|| RequestError::Resolve(format!("{name}: not an address")))?;
    let target = TargetAddr::ip(ip, 53);
    let host = super::resolve::reverse_routed(ip, &target, shared, rec).await?;
    let ptr = Name::from_utf8(&host).map_err(|e| RequestError::Resolve(e.to_string()))?;
    Ok(vec![Record::from_rdata(
        name.clone(),
        TTL,
        RData::PTR(rdata::PTR(ptr)),
    )])
}

/// The address an `in-addr.arpa` / `ip6.arpa` name names.
fn arpa_ip(name: &Name) -> Option<IpAddr> {
    let text = name.to_ascii().to_ascii_lowercase();
    let text = text.trim_end_matches('.');
    if let Some(v4) = text.strip_suffix(".in-addr.arpa") {
        let parts: Vec<&str> = v4.split('.').rev().collect();
        if parts.len() != 4 {
            return None;
        }
        return parts.join(".").parse().ok();
    }
    let v6 = text.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = v6.split('.').rev().collect();
    if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
        return None;
    }
    let hex: String = nibbles.concat();
    let groups: Vec<String> = hex
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    groups.join(":").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arpa_names_give_their_addresses() {
        let n = |s: &str| Name::from_ascii(s).unwrap();
        assert_eq!(
            arpa_ip(&n("1.0.0.127.in-addr.arpa.")),
            Some("127.0.0.1".parse().unwrap())
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";
        assert_eq!(arpa_ip(&n(v6)), Some("::1".parse().unwrap()));
        assert_eq!(arpa_ip(&n("0.127.in-addr.arpa.")), None);
        assert_eq!(arpa_ip(&n("example.com.")), None);
    }
}

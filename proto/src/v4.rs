//! SOCKS4 and SOCKS4a messages.
//!
//! Request: `VN=04 | CD | DSTPORT(2) | DSTIP(4) | USERID | 00 [| HOSTNAME | 00]`
//! (SOCKS4a: DSTIP is `0.0.0.x`, x ≠ 0, and a hostname follows).
//! Reply: `VN=00 | CD | DSTPORT(2) | DSTIP(4)`.

use std::net::{IpAddr, Ipv4Addr};

use crate::addr::{domain_from_bytes, Host, TargetAddr};
use crate::error::{EncodeError, PeerError};
use crate::parse::{need, Parsed};
use crate::reply::ReplyCode;
use crate::{Command, Version};

pub const VERSION: u8 = 0x04;
pub use crate::reply::V4Code;
/// Reply CD: request granted.
pub const GRANTED: V4Code = V4Code::GRANTED;
/// Reply CD: request rejected or failed.
pub const REJECTED: V4Code = V4Code::REJECTED;
/// Longest USERID we accept, not counting its NUL.
pub const MAX_USERID: usize = 255;
/// Longest SOCKS4a hostname we accept, not counting its NUL.
pub const MAX_HOSTNAME: usize = 255;

/// A SOCKS4 or SOCKS4a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// The target; a [`Host::Domain`] means SOCKS4a.
    pub target: TargetAddr,
    pub userid: Vec<u8>,
}

impl Request {
    pub fn version(&self) -> Version {
        match self.target.host {
            Host::Domain(_) => Version::V4a,
            Host::Ip(_) => Version::V4,
        }
    }

    /// Parse a request from the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Parsed<Request>, PeerError> {
        need!(buf, 1);
        if buf[0] != VERSION {
            return Err(PeerError::UnknownVersion(buf[0]));
        }
        need!(buf, 8);
        let command = Command(buf[1]);
        let port = u16::from_be_bytes([buf[2], buf[3]]);
        let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
        let (userid, after_userid) = match nul_terminated(&buf[8..], MAX_USERID) {
            NulField::Found(f) => (f, 8 + f.len() + 1),
            NulField::NeedMore => return Ok(Parsed::Incomplete { needed: 1 }),
            NulField::TooLong => return Err(PeerError::UserIdTooLong(MAX_USERID)),
        };
        let o = ip.octets();
        let is_4a = o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] != 0;
        if !is_4a {
            return Ok(Parsed::Complete {
                value: Request {
                    command,
                    target: TargetAddr::ip(IpAddr::V4(ip), port),
                    userid: userid.to_vec(),
                },
                consumed: after_userid,
            });
        }
        let rest = &buf[after_userid..];
        match nul_terminated(rest, MAX_HOSTNAME) {
            NulField::Found([]) => Err(PeerError::EmptyHostname),
            NulField::Found(h) => Ok(Parsed::Complete {
                value: Request {
                    command,
                    target: TargetAddr {
                        host: Host::Domain(domain_from_bytes(h)?),
                        port,
                    },
                    userid: userid.to_vec(),
                },
                consumed: after_userid + h.len() + 1,
            }),
            NulField::NeedMore => Ok(Parsed::Incomplete { needed: 1 }),
            NulField::TooLong => Err(PeerError::HostnameTooLong(MAX_HOSTNAME)),
        }
    }

    /// Encode the request. IPv6 targets cannot be expressed in SOCKS4.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.userid.len() > MAX_USERID || self.userid.contains(&0) {
            return Err(EncodeError::TooLong("SOCKS4 USERID"));
        }
        let mut out = Vec::with_capacity(9 + self.userid.len());
        out.push(VERSION);
        out.push(self.command.0);
        out.extend_from_slice(&self.target.port.to_be_bytes());
        match &self.target.host {
            Host::Ip(IpAddr::V4(ip)) => {
                // 0.0.0.x (x != 0) is SOCKS4a's marker: a peer would wait
                // for a hostname that never comes.
                if let [0, 0, 0, x] = ip.octets() {
                    if x != 0 {
                        return Err(EncodeError::TooLong(
                            "SOCKS4 cannot express a 0.0.0.x target (it means SOCKS4a)",
                        ));
                    }
                }
                out.extend_from_slice(&ip.octets());
                out.extend_from_slice(&self.userid);
                out.push(0);
            }
            Host::Ip(IpAddr::V6(_)) => return Err(EncodeError::UnsupportedAddressType(0x04)),
            Host::Domain(d) => {
                if d.is_empty() {
                    return Err(EncodeError::EmptyHostname);
                }
                if d.len() > MAX_HOSTNAME || d.as_bytes().contains(&0) {
                    return Err(EncodeError::TooLong("SOCKS4a hostname"));
                }
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(&self.userid);
                out.push(0);
                out.extend_from_slice(d.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }
}

enum NulField<'a> {
    Found(&'a [u8]),
    NeedMore,
    TooLong,
}

/// Find a NUL-terminated field of at most `cap` bytes at the start of `buf`.
fn nul_terminated(buf: &[u8], cap: usize) -> NulField<'_> {
    let window = &buf[..buf.len().min(cap + 1)];
    match window.iter().position(|&b| b == 0) {
        Some(i) => NulField::Found(&buf[..i]),
        None if buf.len() > cap => NulField::TooLong,
        None => NulField::NeedMore,
    }
}

/// A SOCKS4 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `5A` granted, `5B`–`5D` refused.
    pub cd: V4Code,
    pub port: u16,
    pub ip: Ipv4Addr,
}

impl Reply {
    /// The reply for `code`, carrying `bound` when it is an IPv4 address
    /// (anything else is sent as zeros: SOCKS4 cannot express it).
    pub fn for_target(code: ReplyCode, bound: Option<&TargetAddr>) -> Self {
        let (ip, port) = match bound {
            Some(TargetAddr {
                host: Host::Ip(IpAddr::V4(ip)),
                port,
            }) => (*ip, *port),
            Some(TargetAddr {
                host: Host::Ip(IpAddr::V6(ip)),
                port,
            }) => match ip.to_ipv4_mapped() {
                Some(v4) => (v4, *port),
                None => (Ipv4Addr::UNSPECIFIED, 0),
            },
            _ => (Ipv4Addr::UNSPECIFIED, 0),
        };
        Reply {
            cd: code.to_v4(),
            port,
            ip,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        out.push(0x00);
        out.push(self.cd.0);
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.ip.octets());
        out
    }

    /// Parse a reply. VN must be `00`, but like most clients we also accept
    /// `04`, which some servers send.
    pub fn parse(buf: &[u8]) -> Result<Parsed<Reply>, PeerError> {
        need!(buf, 8);
        if buf[0] != 0x00 && buf[0] != VERSION {
            return Err(PeerError::BadReplyVersion(buf[0]));
        }
        Ok(Parsed::Complete {
            value: Reply {
                cd: V4Code(buf[1]),
                port: u16::from_be_bytes([buf[2], buf[3]]),
                ip: Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]),
            },
            consumed: 8,
        })
    }
}

//! Target addresses and their SOCKS5 wire form (`ATYP | ADDR | PORT`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{EncodeError, PeerError};
use crate::parse::{need, Parsed};

/// A SOCKS5 (and SOCKS 6) address type byte: an open newtype (an unknown
/// value survives, and is refused where an address must be read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Atyp(pub u8);

/// What kind of address an [`Atyp`] announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    Ipv4,
    Domain,
    Ipv6,
}

impl Atyp {
    pub const IPV4: Atyp = Atyp(0x01);
    pub const DOMAIN: Atyp = Atyp(0x03);
    pub const IPV6: Atyp = Atyp(0x04);

    /// The kind of address, for the three known types.
    pub fn host_kind(self) -> Option<HostKind> {
        match self {
            Atyp::IPV4 => Some(HostKind::Ipv4),
            Atyp::DOMAIN => Some(HostKind::Domain),
            Atyp::IPV6 => Some(HostKind::Ipv6),
            _ => None,
        }
    }
}

/// Longest domain name on the wire (the SOCKS5 length byte's limit).
pub const MAX_DOMAIN: usize = 255;

/// A host: an IP address or a name for the proxy to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Domain(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Domain(d) => write!(f, "{}", ShownName(d)),
        }
    }
}

/// A name as logs show it: a peer chose it, so every character that could
/// forge or garble a log line (line breaks, control characters, quotes,
/// backslashes) is escaped (`\n`, `\u{1b}`), and an IPv6 literal sent as a
/// name is bracketed like an address (`[::1]`, so that `[::1]:80` is not
/// read as `::1:80`).
#[derive(Clone, Copy, Debug)]
pub struct ShownName<'a>(pub &'a str);

impl fmt::Display for ShownName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.parse::<Ipv6Addr>().is_ok() {
            write!(f, "[{}]", self.0)
        } else {
            write!(f, "{}", self.0.escape_debug())
        }
    }
}

/// A host and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetAddr {
    pub host: Host,
    pub port: u16,
}

impl TargetAddr {
    pub fn ip(ip: IpAddr, port: u16) -> Self {
        TargetAddr {
            host: Host::Ip(ip),
            port,
        }
    }
    pub fn domain(name: impl Into<String>, port: u16) -> Self {
        TargetAddr {
            host: Host::Domain(name.into()),
            port,
        }
    }
    /// `0.0.0.0:0`, the address sent when there is nothing to report.
    pub fn unspecified() -> Self {
        TargetAddr::ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
    /// The socket address, if the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Domain(_) => None,
        }
    }

    /// Number of bytes [`TargetAddr::encode_v5`] writes.
    pub fn v5_len(&self) -> usize {
        3 + match &self.host {
            Host::Ip(IpAddr::V4(_)) => 4,
            Host::Ip(IpAddr::V6(_)) => 16,
            Host::Domain(d) => 1 + d.len().min(MAX_DOMAIN),
        }
    }

    /// Append the SOCKS5 form `ATYP | ADDR | PORT`. A domain longer than 255
    /// bytes cannot be encoded and is an error.
    pub fn encode_v5(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.host.encode_atyp(out)?;
        out.extend_from_slice(&self.port.to_be_bytes());
        Ok(())
    }

    /// Parse the SOCKS5 form `ATYP | ADDR | PORT` from the start of `buf`.
    pub fn parse_v5(buf: &[u8]) -> Result<Parsed<TargetAddr>, PeerError> {
        let (host, used) = match Host::parse_atyp(buf, 2)? {
            Parsed::Complete { value, consumed } => (value, consumed),
            Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
        };
        let port = u16::from_be_bytes([buf[used], buf[used + 1]]);
        Ok(Parsed::Complete {
            value: TargetAddr { host, port },
            consumed: used + 2,
        })
    }
}

impl Host {
    /// Append `ATYP | ADDR` (the address part shared by SOCKS5 and SOCKS 6).
    /// Nothing is appended on error.
    pub fn encode_atyp(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Host::Ip(IpAddr::V4(ip)) => {
                out.push(Atyp::IPV4.0);
                out.extend_from_slice(&ip.octets());
            }
            Host::Ip(IpAddr::V6(ip)) => {
                out.push(Atyp::IPV6.0);
                out.extend_from_slice(&ip.octets());
            }
            Host::Domain(d) => {
                if d.len() > MAX_DOMAIN {
                    return Err(EncodeError::TooLong("domain name"));
                }
                if d.is_empty() {
                    return Err(EncodeError::EmptyDomain);
                }
                if d.as_bytes().contains(&0) {
                    // The parser refuses it too: never send what we would refuse.
                    return Err(EncodeError::BadDomain);
                }
                out.push(Atyp::DOMAIN.0);
                out.push(d.len() as u8);
                out.extend_from_slice(d.as_bytes());
            }
        }
        Ok(())
    }

    /// Parse `ATYP | ADDR` from the start of `buf`, asking for `trailer`
    /// more bytes behind it (the port, in SOCKS5) before answering, so that
    /// "needed" counts stay exact. `consumed` does not include the trailer.
    pub fn parse_atyp(buf: &[u8], trailer: usize) -> Result<Parsed<Host>, PeerError> {
        need!(buf, 1);
        let (host, used) = match Atyp(buf[0]) {
            Atyp::IPV4 => {
                need!(buf, 1 + 4 + trailer);
                let o: [u8; 4] = [buf[1], buf[2], buf[3], buf[4]];
                (Host::Ip(IpAddr::V4(Ipv4Addr::from(o))), 5)
            }
            Atyp::IPV6 => {
                need!(buf, 1 + 16 + trailer);
                let mut o = [0u8; 16];
                o.copy_from_slice(&buf[1..17]);
                (Host::Ip(IpAddr::V6(Ipv6Addr::from(o))), 17)
            }
            Atyp::DOMAIN => {
                need!(buf, 2);
                let len = buf[1] as usize;
                if len == 0 {
                    return Err(PeerError::EmptyDomain);
                }
                need!(buf, 2 + len + trailer);
                (Host::Domain(domain_from_bytes(&buf[2..2 + len])?), 2 + len)
            }
            Atyp(other) => return Err(PeerError::UnknownAddressType(other)),
        };
        Ok(Parsed::Complete {
            value: host,
            consumed: used,
        })
    }
}

/// Validate a domain name received from a peer: non-empty, UTF-8, no NUL.
pub fn domain_from_bytes(b: &[u8]) -> Result<String, PeerError> {
    if b.is_empty() {
        return Err(PeerError::EmptyDomain);
    }
    if b.contains(&0) {
        return Err(PeerError::BadDomain);
    }
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| PeerError::BadDomain)
}

impl From<SocketAddr> for TargetAddr {
    fn from(sa: SocketAddr) -> Self {
        TargetAddr::ip(sa.ip(), sa.port())
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

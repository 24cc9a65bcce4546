//! SOCKS5 messages (RFC 1928).
//!
//! Greeting `05 | NMETHODS | METHODS`; choice `05 | METHOD`;
//! request `05 | CMD | 00 | ATYP | DST.ADDR | DST.PORT`;
//! reply `05 | REP | 00 | ATYP | BND.ADDR | BND.PORT`.

use crate::addr::{Atyp, TargetAddr};
use crate::error::{EncodeError, PeerError};
use crate::parse::{need, Parsed};
use crate::reply::{ReplyCode, V5Code};
use crate::Command;

pub const VERSION: u8 = 0x05;

/// Authentication method codes (an open newtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(pub u8);

impl Method {
    pub const NONE: Method = Method(0x00);
    pub const GSSAPI: Method = Method(0x01);
    pub const USERPASS: Method = Method(0x02);
    /// "No acceptable methods": the client must close.
    pub const NO_ACCEPTABLE: Method = Method(0xFF);
}

/// The client's greeting: the methods it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub methods: Vec<Method>,
}

impl Greeting {
    /// Parse. NMETHODS = 0 is an error ([`PeerError::NoMethods`]).
    pub fn parse(buf: &[u8]) -> Result<Parsed<Greeting>, PeerError> {
        need!(buf, 1);
        if buf[0] != VERSION {
            return Err(PeerError::UnknownVersion(buf[0]));
        }
        need!(buf, 2);
        let n = buf[1] as usize;
        if n == 0 {
            return Err(PeerError::NoMethods);
        }
        need!(buf, 2 + n);
        Ok(Parsed::Complete {
            value: Greeting {
                methods: buf[2..2 + n].iter().map(|&m| Method(m)).collect(),
            },
            consumed: 2 + n,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.methods.is_empty() || self.methods.len() > 255 {
            return Err(EncodeError::TooLong(
                "method list must hold 1 to 255 methods",
            ));
        }
        let mut out = vec![VERSION, self.methods.len() as u8];
        out.extend(self.methods.iter().map(|m| m.0));
        Ok(out)
    }

    pub fn offers(&self, m: Method) -> bool {
        self.methods.contains(&m)
    }
}

/// The server's method choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodChoice(pub Method);

impl MethodChoice {
    pub fn encode(&self) -> [u8; 2] {
        [VERSION, self.0 .0]
    }
    pub fn parse(buf: &[u8]) -> Result<Parsed<MethodChoice>, PeerError> {
        need!(buf, 2);
        if buf[0] != VERSION {
            return Err(PeerError::BadReplyVersion(buf[0]));
        }
        Ok(Parsed::Complete {
            value: MethodChoice(Method(buf[1])),
            consumed: 2,
        })
    }
}

/// A SOCKS5 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub target: TargetAddr,
}

impl Request {
    /// Parse. RSV is ignored (Tor and most servers do the same).
    pub fn parse(buf: &[u8]) -> Result<Parsed<Request>, PeerError> {
        need!(buf, 1);
        if buf[0] != VERSION {
            return Err(PeerError::UnknownVersion(buf[0]));
        }
        need!(buf, 4);
        let command = Command(buf[1]);
        Ok(TargetAddr::parse_v5(&buf[3..])?
            .map(|target| Request { command, target })
            .map_consumed(3))
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(3 + self.target.v5_len());
        out.extend_from_slice(&[VERSION, self.command.0, 0x00]);
        self.target.encode_v5(&mut out)?;
        Ok(out)
    }
}

/// A SOCKS5 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub rep: V5Code,
    pub bound: TargetAddr,
}

impl Reply {
    pub fn code(&self) -> ReplyCode {
        ReplyCode::from_v5(self.rep)
    }

    /// Encode. A bound domain too long for the wire is replaced by zeros
    /// rather than truncated.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.bound.v5_len());
        out.extend_from_slice(&[VERSION, self.rep.0, 0x00]);
        if self.bound.encode_v5(&mut out).is_err() {
            out.truncate(3);
            let _ = TargetAddr::unspecified().encode_v5(&mut out);
        }
        out
    }

    /// Parse.
    ///
    /// A *failure* reply whose address type is unknown is read as a failure
    /// with no address, four bytes long: Tor answers a RESOLVE it could not
    /// carry out with `05 04 00 00` and six zero bytes (ATYP `00`). Only the
    /// code of a failure means anything, and the connection ends with it,
    /// so the client gets the code rather than a protocol error.
    pub fn parse(buf: &[u8]) -> Result<Parsed<Reply>, PeerError> {
        need!(buf, 1);
        if buf[0] != VERSION {
            return Err(PeerError::BadReplyVersion(buf[0]));
        }
        need!(buf, 4);
        let rep = V5Code(buf[1]);
        if rep != V5Code::SUCCEEDED && Atyp(buf[3]).host_kind().is_none() {
            return Ok(Parsed::Complete {
                value: Reply {
                    rep,
                    bound: TargetAddr::unspecified(),
                },
                consumed: 4,
            });
        }
        Ok(TargetAddr::parse_v5(&buf[3..])?
            .map(|bound| Reply { rep, bound })
            .map_consumed(3))
    }
}

impl<T> Parsed<T> {
    /// Add a fixed header length to a complete parse's `consumed`.
    pub(crate) fn map_consumed(self, header: usize) -> Parsed<T> {
        match self {
            Parsed::Complete { value, consumed } => Parsed::Complete {
                value,
                consumed: consumed + header,
            },
            p => p,
        }
    }
}

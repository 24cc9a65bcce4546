//! RFC 1929 username/password authentication.
//!
//! Request: `01 | ULEN | UNAME | PLEN | PASSWD`; reply: `01 | STATUS`
//! (`00` success, anything else failure).

use crate::error::{EncodeError, PeerError};
use crate::parse::{need, Parsed};
use crate::secret::Password;

pub const VERSION: u8 = 0x01;
pub const SUCCESS: u8 = 0x00;
pub const FAILURE: u8 = 0x01;

/// The server machine's event: credentials to check (from an RFC 1929
/// request, or SOCKS 6 authentication data). Answer with
/// `server::ServerHandshake::verdict`.
#[derive(Debug, PartialEq, Eq)]
pub struct Verify {
    pub username: Vec<u8>,
    pub password: Password,
}

/// A username/password request. Lengths are capped at 255 by the wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub username: Vec<u8>,
    pub password: Password,
}

impl Request {
    /// Parse. With `lenient` (Tor's leniency), empty fields are accepted.
    pub fn parse(buf: &[u8], lenient: bool) -> Result<Parsed<Request>, PeerError> {
        need!(buf, 2);
        if buf[0] != VERSION {
            return Err(PeerError::BadAuthVersion(buf[0]));
        }
        let ulen = buf[1] as usize;
        need!(buf, 2 + ulen + 1);
        let plen = buf[2 + ulen] as usize;
        need!(buf, 3 + ulen + plen);
        if !lenient && (ulen == 0 || plen == 0) {
            return Err(PeerError::EmptyCredentials);
        }
        Ok(Parsed::Complete {
            value: Request {
                username: buf[2..2 + ulen].to_vec(),
                password: Password::new(&buf[3 + ulen..3 + ulen + plen]),
            },
            consumed: 3 + ulen + plen,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.username.len() > 255 || self.password.len() > 255 {
            return Err(EncodeError::TooLong("username or password over 255 bytes"));
        }
        let mut out = Vec::with_capacity(3 + self.username.len() + self.password.len());
        out.push(VERSION);
        out.push(self.username.len() as u8);
        out.extend_from_slice(&self.username);
        out.push(self.password.len() as u8);
        out.extend_from_slice(self.password.expose());
        Ok(out)
    }
}

/// The server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u8,
}

impl Reply {
    pub fn success(&self) -> bool {
        self.status == SUCCESS
    }
    pub fn encode(&self) -> [u8; 2] {
        [VERSION, self.status]
    }
    pub fn parse(buf: &[u8]) -> Result<Parsed<Reply>, PeerError> {
        need!(buf, 2);
        if buf[0] != VERSION {
            return Err(PeerError::BadAuthVersion(buf[0]));
        }
        Ok(Parsed::Complete {
            value: Reply { status: buf[1] },
            consumed: 2,
        })
    }
}

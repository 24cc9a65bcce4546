//! Protocol errors, by whose fault they are.
//!
//! * [`PeerError`]: the bytes a peer sent are not what the protocol allows
//!   (a bad version or address type, a field over its cap, a refused
//!   password, a message that never ends, …). Parsers return it, and it
//!   knows the reply code that answers it ([`PeerError::reply_code`]).
//! * [`EncodeError`]: what we were asked to write cannot be carried by the
//!   wire format (a field too long, a name with a NUL, an IPv6 target for
//!   SOCKS4, a SOCKS 6 option that has no encoding, a token window out of
//!   range, …). Encoders and the client machines' constructors return it.
//! * [`Misuse`]: the caller broke a machine's calling convention (stepped
//!   after the end, gave a verdict nobody asked for, stepped while a
//!   verdict was awaited, asked for initial data with a command other than
//!   CONNECT).
//!
//! [`ProtoError`] is one of the three. The handshake machines fail with
//! it (their `Instruction::Failed` carries one), since a step can meet any
//! of them. Its text is the inner error's, word for word.

use crate::reply::ReplyCode;

/// Something a peer sent that we will not accept.
///
/// Each error knows which reply code (if any) answers it; the server state
/// machine uses [`PeerError::reply_code`] to build its refusal, so the
/// mapping lives in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("unknown protocol version byte 0x{0:02x}")]
    UnknownVersion(u8),
    #[error("HTTP request sent to a SOCKS port")]
    HttpRequest,
    #[error("SOCKS5 greeting lists no authentication methods")]
    NoMethods,
    #[error("no acceptable authentication method offered")]
    NoAcceptableMethod,
    #[error("unknown address type 0x{0:02x}")]
    UnknownAddressType(u8),
    #[error("domain name of length 0")]
    EmptyDomain,
    #[error("domain name is not valid UTF-8 or contains a NUL")]
    BadDomain,
    #[error("SOCKS4 USERID longer than {0} bytes without its NUL")]
    UserIdTooLong(usize),
    #[error("SOCKS4a hostname longer than {0} bytes without its NUL")]
    HostnameTooLong(usize),
    #[error("SOCKS4a hostname is empty")]
    EmptyHostname,
    #[error("username/password subnegotiation version 0x{0:02x} (expected 0x01)")]
    BadAuthVersion(u8),
    #[error("empty username or password")]
    EmptyCredentials,
    #[error("authentication failed")]
    AuthFailed,
    #[error("unexpected reply version 0x{0:02x}")]
    BadReplyVersion(u8),
    #[error("proxy chose authentication method 0x{0:02x}, which was not offered")]
    UnexpectedMethod(u8),
    #[error("message exceeds the {0}-byte cap")]
    MessageTooLong(usize),
    #[error("datagram too short for its header")]
    Truncated,
    #[error("reserved field is not zero")]
    BadReserved,
    // ---- SOCKS 6
    #[error("the peer speaks another SOCKS 6 revision (version mismatch)")]
    VersionMismatch,
    #[error("malformed SOCKS 6 option: {0}")]
    BadOption(&'static str),
    /// -11 framing: a length that is not a multiple of 4, padding that is
    /// not zero, a field that runs past its message.
    #[error("malformed SOCKS 6 framing: {0}")]
    BadFraming(&'static str),
    #[error("more than {0} SOCKS 6 options")]
    TooManyOptions(usize),
    #[error("SOCKS 6 options exceed the {0}-byte cap")]
    OptionsTooLong(usize),
    /// The initial data length a peer declared is over the cap.
    #[error("initial data of {0} bytes exceeds the cap")]
    InitialDataTooLong(usize),
    #[error("unexpected SOCKS 6 authentication reply type 0x{0:02x}")]
    BadAuthReplyType(u8),
    #[error("unexpected SOCKS 6 message: {0}")]
    Unexpected(&'static str),
    /// SOCKS 6 (-11): the proxy does not know the session the request
    /// named (it expired, or the proxy restarted); nothing was carried out.
    #[error("the proxy does not know the SOCKS 6 session (it expired or the proxy restarted)")]
    SessionInvalid,
    /// SOCKS 6 (-11): the proxy refused the idempotence token the request
    /// spent, and failed its authentication; nothing was carried out.
    #[error("the proxy refused the SOCKS 6 idempotence token")]
    TokenRejected,
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
}

impl PeerError {
    /// The reply code that answers this error in a request reply, if a
    /// request reply is the right answer at the point where it happens.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            PeerError::UnknownAddressType(_) => ReplyCode::AddressTypeNotSupported,
            PeerError::EmptyDomain | PeerError::BadDomain | PeerError::EmptyHostname => {
                ReplyCode::HostUnreachable
            }
            _ => ReplyCode::GeneralFailure,
        }
    }
}

/// Something we were asked to write that the wire format cannot carry.
///
/// The texts are the ones these conditions always had, so logs read the
/// same whichever side found the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field over its wire width (the text names it), or a value the
    /// format cannot express (a SOCKS4 `0.0.0.x` target, a NUL in a SOCKS4
    /// USERID or hostname, a stack option leg above 3, …).
    #[error("field too long for the wire format: {0}")]
    TooLong(&'static str),
    /// An empty domain name (SOCKS5, SOCKS 6).
    #[error("domain name of length 0")]
    EmptyDomain,
    /// A name the protocol cannot carry: a NUL in it (a peer would refuse
    /// it), or any name for plain SOCKS4.
    #[error("domain name is not valid UTF-8 or contains a NUL")]
    BadDomain,
    /// An empty SOCKS4a hostname.
    #[error("SOCKS4a hostname is empty")]
    EmptyHostname,
    /// An address of this SOCKS5 address type cannot be carried (an IPv6
    /// target for SOCKS4: `0x04`).
    #[error("unknown address type 0x{0:02x}")]
    UnsupportedAddressType(u8),
    /// Initial data over the protocol's cap in our own request.
    #[error("initial data of {0} bytes exceeds the cap")]
    InitialDataTooLong(usize),
    /// A SOCKS 6 option that has no encoding (a vendor kind outside
    /// `C0`–`FF`).
    #[error("malformed SOCKS 6 option: {0}")]
    BadOption(&'static str),
    /// -11 framing: a length that is not a multiple of 4, padding that is
    /// not zero, a field that runs past its message.
    #[error("malformed SOCKS 6 framing: {0}")]
    BadFraming(&'static str),
    /// A token window size outside `1..2^31` (or above the window cap).
    #[error("token window size {0} is not in 1..2^31")]
    BadTokenWindow(u32),
}

/// The caller broke a machine's calling convention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misuse {
    /// A step after `Finished`, a step while a verdict is awaited, or a
    /// verdict nobody asked for: the machine stops for good.
    #[error("handshake used after it finished or failed")]
    Finished,
    /// A SOCKS 6 client request with initial data and a command other than
    /// CONNECT.
    #[error("unexpected SOCKS 6 message: initial data on a command other than CONNECT")]
    InitialDataNotConnect,
}

/// Why a handshake machine (or anything that both parses and encodes)
/// failed: a peer's fault, something we cannot encode, or a misuse. Its
/// text is the inner error's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Misuse(#[from] Misuse),
}

/// `error == PeerError::AuthFailed` and the like, in both directions.
macro_rules! compare_inner {
    ($($variant:ident($ty:ty)),*) => {$(
        impl PartialEq<$ty> for ProtoError {
            fn eq(&self, other: &$ty) -> bool {
                matches!(self, ProtoError::$variant(e) if e == other)
            }
        }
        impl PartialEq<ProtoError> for $ty {
            fn eq(&self, other: &ProtoError) -> bool {
                other == self
            }
        }
    )*};
}
compare_inner!(Peer(PeerError), Encode(EncodeError), Misuse(Misuse));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_inner_errors() {
        let cases: [(ProtoError, &str); 3] = [
            (PeerError::AuthFailed.into(), "authentication failed"),
            (
                EncodeError::TooLong("domain name").into(),
                "field too long for the wire format: domain name",
            ),
            (
                Misuse::Finished.into(),
                "handshake used after it finished or failed",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn compares_with_its_inner_error() {
        let e = ProtoError::from(PeerError::AuthFailed);
        assert_eq!(e, PeerError::AuthFailed);
        assert_eq!(PeerError::AuthFailed, e);
        assert_ne!(e, PeerError::UnexpectedEof);
        assert_ne!(e, Misuse::Finished);
        assert_ne!(
            ProtoError::from(EncodeError::EmptyDomain),
            PeerError::EmptyDomain
        );
    }
}

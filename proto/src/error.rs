//! Protocol errors: what can be wrong with bytes a peer sent.

use crate::reply::ReplyCode;

/// Something a peer sent that we will not accept.
///
/// Each error knows which reply code (if any) answers it; the server state
/// machine uses [`ProtoError::reply_code`] to build its refusal, so the
/// mapping lives in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
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
    #[error("field too long for the wire format: {0}")]
    TooLong(&'static str),
    #[error("message exceeds the {0}-byte cap")]
    MessageTooLong(usize),
    #[error("datagram too short for its header")]
    Truncated,
    #[error("reserved field is not zero")]
    BadReserved,
    #[error("handshake used after it finished or failed")]
    Finished,
    // ---- SOCKS 6
    #[error("the peer speaks another SOCKS 6 revision (version mismatch)")]
    VersionMismatch,
    #[error("malformed SOCKS 6 option: {0}")]
    BadOption(&'static str),
    #[error("more than {0} SOCKS 6 options")]
    TooManyOptions(usize),
    #[error("SOCKS 6 options exceed the {0}-byte cap")]
    OptionsTooLong(usize),
    #[error("initial data of {0} bytes exceeds the cap")]
    InitialDataTooLong(usize),
    #[error("token window size {0} is not in 1..2^31")]
    BadTokenWindow(u32),
    #[error("unexpected SOCKS 6 authentication reply type 0x{0:02x}")]
    BadAuthReplyType(u8),
    #[error("unexpected SOCKS 6 message: {0}")]
    Unexpected(&'static str),
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
}

impl ProtoError {
    /// The reply code that answers this error in a request reply, if a
    /// request reply is the right answer at the point where it happens.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            ProtoError::UnknownAddressType(_) => ReplyCode::AddressTypeNotSupported,
            ProtoError::EmptyDomain | ProtoError::BadDomain | ProtoError::EmptyHostname => {
                ReplyCode::HostUnreachable
            }
            _ => ReplyCode::GeneralFailure,
        }
    }
}

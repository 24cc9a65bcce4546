//! Errors a request can end with, and the one place that maps each to the
//! reply code the client sees.

use std::io;

use sixsocks_proto::{Command, ReplyCode};

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("connection refused")]
    Refused,
    #[error("network unreachable")]
    NetworkUnreachable,
    #[error("host unreachable")]
    HostUnreachable,
    #[error("name resolution failed: {0}")]
    Resolve(String),
    #[error("name resolution timed out")]
    ResolveTimeout,
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("command {0} not supported")]
    CommandNotSupported(Command),
    #[error("address type not supported for this command")]
    AddressTypeNotSupported,
    #[error("authentication required (SOCKS4 cannot authenticate)")]
    AuthRequired,
    #[error("invalid onion address")]
    OnionInvalid,
    #[error("onion services are not reachable through this proxy")]
    OnionUnreachable,
    #[error("nobody connected to the bound port in time")]
    BindTimeout,
    #[error("{0} is disabled by configuration")]
    Disabled(&'static str),
    #[error("the target is one of the proxy's own listening sockets")]
    OwnSocket,
    #[error("blocked by the rules ({0})")]
    Blocked(String),
    #[error("limit reached: {0}")]
    Limit(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl RequestError {
    /// The reply code for this error: the single mapping from causes to codes.
    ///
    /// A connect timeout is `06` ("TTL expired"), as Tor sends it: it tells
    /// the client the attempt ran out of time rather than found no route
    /// (`04`), and it is the code SOCKS 6 later calls "connection attempt
    /// timed out". A *resolution* timeout is a resolution failure: `04`.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            RequestError::Refused => ReplyCode::ConnectionRefused,
            RequestError::NetworkUnreachable => ReplyCode::NetworkUnreachable,
            RequestError::HostUnreachable
            | RequestError::Resolve(_)
            | RequestError::ResolveTimeout => ReplyCode::HostUnreachable,
            RequestError::ConnectTimeout | RequestError::BindTimeout => ReplyCode::TtlExpired,
            RequestError::Disabled(_) => ReplyCode::CommandNotSupported,
            RequestError::Limit(_) => ReplyCode::GeneralFailure,
            RequestError::CommandNotSupported(_) => ReplyCode::CommandNotSupported,
            RequestError::AddressTypeNotSupported => ReplyCode::AddressTypeNotSupported,
            RequestError::AuthRequired | RequestError::OwnSocket | RequestError::Blocked(_) => {
                ReplyCode::NotAllowed
            }
            RequestError::OnionInvalid => ReplyCode::ONION_INVALID_ADDRESS,
            RequestError::OnionUnreachable => ReplyCode::ONION_DESC_NOT_FOUND,
            RequestError::Io(e) => match classify_io(e) {
                Some(inner) => inner.reply_code(),
                None => ReplyCode::GeneralFailure,
            },
        }
    }

    /// Turn an OS error from `connect` into the matching variant.
    pub fn from_connect(e: io::Error) -> Self {
        classify_io(&e).unwrap_or(RequestError::Io(e))
    }
}

fn classify_io(e: &io::Error) -> Option<RequestError> {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => return Some(RequestError::Refused),
        io::ErrorKind::NetworkUnreachable => return Some(RequestError::NetworkUnreachable),
        io::ErrorKind::HostUnreachable => return Some(RequestError::HostUnreachable),
        io::ErrorKind::TimedOut => return Some(RequestError::ConnectTimeout),
        _ => {}
    }
    match e.raw_os_error() {
        Some(libc::ENETUNREACH) | Some(libc::ENETDOWN) => Some(RequestError::NetworkUnreachable),
        Some(libc::EHOSTUNREACH) | Some(libc::EHOSTDOWN) | Some(libc::EADDRNOTAVAIL) => {
            Some(RequestError::HostUnreachable)
        }
        Some(libc::ECONNREFUSED) => Some(RequestError::Refused),
        Some(libc::ETIMEDOUT) => Some(RequestError::ConnectTimeout),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_codes() {
        let cases = [
            (libc::ECONNREFUSED, 0x05),
            (libc::ENETUNREACH, 0x03),
            (libc::EHOSTUNREACH, 0x04),
            (libc::ETIMEDOUT, 0x06),
            (libc::EACCES, 0x01),
        ];
        for (errno, rep) in cases {
            let e = RequestError::from_connect(io::Error::from_raw_os_error(errno));
            assert_eq!(e.reply_code().to_v5(false), rep, "errno {errno}");
        }
    }

    #[test]
    fn onion_codes_need_extended_errors() {
        assert_eq!(RequestError::OnionInvalid.reply_code().to_v5(true), 0xF6);
        assert_eq!(RequestError::OnionInvalid.reply_code().to_v5(false), 0x04);
        assert_eq!(
            RequestError::OnionUnreachable.reply_code().to_v5(true),
            0xF0
        );
        assert_eq!(RequestError::ResolveTimeout.reply_code().to_v4(), 0x5B);
    }
}

//! What can go wrong when talking to a proxy.

use std::fmt;
use std::io;
use std::time::Duration;

use sixsocks_proto::v6::ExpenditureCode;
use sixsocks_proto::{PeerError, ProtoError, ReplyCode, Version};

/// The stage that timed out or failed with an IO error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Resolving the proxy's name and opening the TCP connection to it.
    ProxyConnect,
    /// Resolving a target name locally (`socks4://`, `socks5://`).
    LocalResolve,
    /// The SOCKS handshake, up to and including the request's reply.
    Handshake,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::ProxyConnect => "connecting to the proxy",
            Stage::LocalResolve => "resolving the target name locally",
            Stage::Handshake => "during the SOCKS handshake",
        })
    }
}

/// Why a request through a proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The proxy could not be reached (name resolution or TCP connect).
    #[error("cannot connect to proxy {proxy}: {source}")]
    ProxyConnect {
        proxy: String,
        #[source]
        source: io::Error,
    },
    /// A target name could not be resolved locally.
    #[error("cannot resolve {host} locally: {source}")]
    LocalResolve {
        host: String,
        #[source]
        source: io::Error,
    },
    /// A stage did not finish within the proxy's timeout.
    #[error("timed out after {timeout:?} {stage}")]
    Timeout { stage: Stage, timeout: Duration },
    /// Reading from or writing to the proxy failed during the handshake.
    #[error("I/O error during the SOCKS handshake: {0}")]
    Io(#[source] io::Error),
    /// The proxy closed the connection before its reply was complete.
    #[error("the proxy closed the connection during the SOCKS handshake")]
    ProxyClosed,
    /// The proxy sent something that is not valid SOCKS.
    #[error("SOCKS protocol error: {0}")]
    Protocol(#[source] ProtoError),
    /// The proxy rejected the user name and password (RFC 1929 status ≠ 00).
    #[error("the proxy rejected the user name or password")]
    AuthFailed,
    /// The proxy accepts none of the offered authentication methods
    /// (typically: it requires a password and none was given, or it does
    /// not support username/password).
    #[error("the proxy accepts none of the offered authentication methods ({offered})")]
    NoAcceptableMethod { offered: &'static str },
    /// The proxy answered the request with a failure code.
    #[error("the proxy refused the request: {}", describe_refusal(*.version, *.raw))]
    Refused {
        /// The protocol of the reply.
        version: Version,
        /// The code, mapped to the version-independent meaning.
        code: ReplyCode,
        /// The wire value of the code (SOCKS4 CD or SOCKS5 REP).
        raw: u8,
    },
    /// A SOCKS 6 proxy answered the request with a failure code in its
    /// operation reply.
    #[error("the SOCKS 6 proxy refused the request: {}", describe_socks6_refusal(*.raw, *.token))]
    Socks6Refused {
        /// The code, mapped to the version-independent meaning.
        code: ReplyCode,
        /// The wire value of the code (SOCKS 6 REP: SOCKS5's plus `09`).
        raw: u8,
        /// What became of the idempotence token the request spent, if it
        /// spent one (anything but success means the proxy did not carry
        /// the request out).
        token: Option<ExpenditureCode>,
    },
    /// The proxy answered a SOCKS 6 request with a version mismatch reply:
    /// it does not speak this revision (draft -05) of SOCKS 6.
    #[error("the proxy does not speak SOCKS 6 draft -05 (it sent a version mismatch reply)")]
    VersionMismatch,
    /// The target cannot be expressed in the proxy's protocol, or the
    /// operation is not available with it.
    #[error("{0}")]
    Unsupported(String),
    /// The configured credentials cannot be sent (too long, NUL in a
    /// SOCKS4 user id).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The target itself is invalid (empty or over-long name, …).
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The proxy's reply was well-formed but not what the command needs
    /// (e.g. a name where an address was expected).
    #[error("unexpected reply from the proxy: {0}")]
    UnexpectedReply(String),
}

impl ClientError {
    /// The reply code of a refusal.
    pub fn reply_code(&self) -> Option<ReplyCode> {
        match self {
            ClientError::Refused { code, .. } | ClientError::Socks6Refused { code, .. } => {
                Some(*code)
            }
            _ => None,
        }
    }

    /// The raw wire value of a refusal's reply code.
    pub fn raw_reply_code(&self) -> Option<u8> {
        match self {
            ClientError::Refused { raw, .. } | ClientError::Socks6Refused { raw, .. } => Some(*raw),
            _ => None,
        }
    }

    /// Whether the proxy turned down the credentials (or their absence).
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            ClientError::AuthFailed | ClientError::NoAcceptableMethod { .. }
        )
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }

    /// Map an error of the handshake state machine.
    pub(crate) fn from_proto(e: ProtoError, offered: &'static str) -> Self {
        match e {
            ProtoError::Peer(PeerError::AuthFailed) => ClientError::AuthFailed,
            ProtoError::Peer(PeerError::NoAcceptableMethod) => {
                ClientError::NoAcceptableMethod { offered }
            }
            e => ClientError::from_machine(e),
        }
    }

    /// Why a handshake machine failed after authentication.
    pub(crate) fn from_machine(e: ProtoError) -> Self {
        match e {
            // The machine's input was closed while it wanted more.
            ProtoError::Peer(PeerError::UnexpectedEof) => ClientError::ProxyClosed,
            ProtoError::Peer(PeerError::VersionMismatch) => ClientError::VersionMismatch,
            e => ClientError::Protocol(e),
        }
    }
}

/// Human text for a refusal, ending in the wire code: "connection refused (05)".
pub fn describe_refusal(version: Version, raw: u8) -> String {
    let text = match version {
        Version::V4 | Version::V4a => match raw {
            0x5B => "request rejected or failed",
            0x5C => "rejected: the proxy cannot reach identd on the client",
            0x5D => "rejected: the client program and identd report different user ids",
            _ => "unknown SOCKS4 reply code",
        },
        Version::V5 => match raw {
            0x01 => "general failure",
            0x02 => "connection not allowed by ruleset",
            0x03 => "network unreachable",
            0x04 => "host unreachable",
            0x05 => "connection refused",
            0x06 => "TTL expired (or connect timed out)",
            0x07 => "command not supported",
            0x08 => "address type not supported",
            0xF0 => "onion service descriptor cannot be found",
            0xF1 => "onion service descriptor is invalid",
            0xF2 => "onion service introduction failed",
            0xF3 => "onion service rendezvous failed",
            0xF4 => "onion service missing client authorization",
            0xF5 => "onion service wrong client authorization",
            0xF6 => "onion service invalid address",
            0xF7 => "onion service introduction timed out",
            _ => "unknown SOCKS5 reply code",
        },
    };
    format!("{text} ({raw:02x})")
}

/// Human text for a SOCKS 6 refusal, ending in the wire code, with what
/// became of the spent token: "general failure (01), token duplicate".
pub fn describe_socks6_refusal(raw: u8, token: Option<ExpenditureCode>) -> String {
    let text = match raw {
        0x09 => "connection attempt timed out (09)".to_string(),
        0x06 => "TTL expired (06)".to_string(),
        0xF0..=0xFF => format!("unknown SOCKS 6 reply code ({raw:02x})"),
        r => describe_refusal(Version::V5, r).replace("SOCKS5", "SOCKS 6"),
    };
    let token = match token {
        None | Some(ExpenditureCode::SUCCESS) => return text,
        Some(ExpenditureCode::NO_WINDOW) => "the proxy has no token window for us",
        Some(ExpenditureCode::OUT_OF_WINDOW) => "the token was out of the window",
        Some(ExpenditureCode::DUPLICATE) => "the token was already spent",
        Some(_) => "the token was refused",
    };
    format!("{text}, not carried out: {token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_text_names_the_code() {
        let e = ClientError::Refused {
            version: Version::V5,
            code: ReplyCode::ConnectionRefused,
            raw: 5,
        };
        assert_eq!(
            e.to_string(),
            "the proxy refused the request: connection refused (05)"
        );
        assert_eq!(e.reply_code(), Some(ReplyCode::ConnectionRefused));
        assert_eq!(e.raw_reply_code(), Some(5));
        assert_eq!(
            describe_refusal(Version::V4, 0x5b),
            "request rejected or failed (5b)"
        );
        assert_eq!(
            describe_refusal(Version::V5, 0x42),
            "unknown SOCKS5 reply code (42)"
        );
    }

    #[test]
    fn socks6_refusal_text_names_the_code_and_the_token() {
        let e = ClientError::Socks6Refused {
            code: sixsocks_proto::v6::Profile::Draft05
                .codec()
                .reply_codes()
                .decode(sixsocks_proto::V6Code(9)),
            raw: 9,
            token: None,
        };
        assert_eq!(
            e.to_string(),
            "the SOCKS 6 proxy refused the request: connection attempt timed out (09)"
        );
        assert_eq!(e.raw_reply_code(), Some(9));
        assert_eq!(
            describe_socks6_refusal(1, Some(ExpenditureCode::DUPLICATE)),
            "general failure (01), not carried out: the token was already spent"
        );
        assert_eq!(
            describe_socks6_refusal(0x42, None),
            "unknown SOCKS 6 reply code (42)"
        );
    }
}

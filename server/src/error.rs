//! Errors a request can end with, and the one place that maps each to the
//! reply code the client sees.

use std::io;

use sixsocks_client::ClientError;
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
    /// `0.0.0.0/8` or `::` in any spelling: Linux connects it to the
    /// proxy's own host, so it is never a target
    /// (see the destination module).
    #[error("{0} is an unspecified address, never a target (it would reach the proxy's own host)")]
    UnspecifiedTarget(std::net::IpAddr),
    #[error("blocked by the rules ({0})")]
    Blocked(String),
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The request went through an upstream proxy (`[upstream.NAME]`) and
    /// failed there: the upstream refused it, or could not be reached, or
    /// did not answer in time. (Boxed: it is rare and large.)
    #[error(transparent)]
    Upstream(Box<UpstreamError>),
    /// The upstream's protocol cannot carry this command (RESOLVE needs
    /// SOCKS5 or SOCKS4a, RESOLVE_PTR SOCKS5; BIND and UDP are never
    /// routed). The text names the upstream and the command.
    #[error("{0}")]
    UpstreamCannot(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A request that failed at, or on the way to, an upstream proxy.
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream}: {error}")]
pub struct UpstreamError {
    /// The name of its `[upstream.NAME]` table.
    pub upstream: String,
    #[source]
    pub error: ClientError,
    /// Whether the client's own credentials were sent upstream (a
    /// rejection of them is then the client's, not the operator's).
    pub passed_credentials: bool,
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
            RequestError::AuthRequired
            | RequestError::OwnSocket
            | RequestError::UnspecifiedTarget(_)
            | RequestError::Blocked(_) => ReplyCode::NotAllowed,
            RequestError::OnionInvalid => ReplyCode::ONION_INVALID_ADDRESS,
            RequestError::OnionUnreachable => ReplyCode::ONION_DESC_NOT_FOUND,
            RequestError::Upstream(u) => upstream_code(&u.error, u.passed_credentials),
            RequestError::UpstreamCannot(_) => ReplyCode::CommandNotSupported,
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

/// The reply code for a request that failed at an upstream proxy.
///
/// A refusal passes the upstream's own code through: Tor's extended codes
/// (`F0`–`F7`) reach a SOCKS5 client as they are when `extended_errors` is
/// on and as `04` when it is off ([`ReplyCode::to_v5`]), a SOCKS 6 client
/// sees `04`, a SOCKS4 client `5B`. A code that means nothing to us (or a
/// "success" reported as a failure) is a general failure.
///
/// The upstream itself failing is ours to report: unreachable, closed,
/// spoke nonsense: `01` general failure; no answer in time: `06`, as for a
/// connect timeout; the client's passed-on credentials rejected: `02`;
/// a target the upstream's protocol cannot carry (IPv6 over SOCKS4): `08`;
/// a name the upstream's scheme resolves locally (`socks5://`, `socks4://`)
/// that does not resolve: `04`.
fn upstream_code(e: &ClientError, passed_credentials: bool) -> ReplyCode {
    match e {
        ClientError::Refused { code, .. } | ClientError::Socks6Refused { code, .. } => match code {
            ReplyCode::Succeeded | ReplyCode::Other(_) => ReplyCode::GeneralFailure,
            c => *c,
        },
        ClientError::Timeout { .. } => ReplyCode::TtlExpired,
        ClientError::LocalResolve { .. } => ReplyCode::HostUnreachable,
        ClientError::AuthFailed | ClientError::NoAcceptableMethod { .. } if passed_credentials => {
            ReplyCode::NotAllowed
        }
        ClientError::Unsupported(_) => ReplyCode::AddressTypeNotSupported,
        _ => ReplyCode::GeneralFailure,
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

    fn upstream(error: ClientError, passed_credentials: bool) -> RequestError {
        RequestError::Upstream(Box::new(UpstreamError {
            upstream: "tor".into(),
            error,
            passed_credentials,
        }))
    }

    #[test]
    fn upstream_refusals_keep_their_code() {
        use sixsocks_proto::Version;
        let refused = |raw: u8| {
            upstream(
                ClientError::Refused {
                    version: Version::V5,
                    code: ReplyCode::from_v5(sixsocks_proto::V5Code(raw)),
                    raw,
                },
                false,
            )
        };
        // Tor's extended codes: as they are with extended errors, else 04;
        // 5B for SOCKS4 clients; 04 for SOCKS 6 clients.
        for raw in 0xF0..=0xF7 {
            let code = refused(raw).reply_code();
            assert_eq!(code.to_v5(true), raw);
            assert_eq!(code.to_v5(false), 0x04);
            assert_eq!(code.to_v4(), 0x5B);
            for p in sixsocks_proto::v6::Profile::ALL {
                assert_eq!(p.codec().reply_codes().encode(code), 0x04, "{p}");
            }
        }
        for raw in 1..=8 {
            assert_eq!(refused(raw).reply_code().to_v5(false), raw);
        }
        // Nonsense codes are a general failure.
        assert_eq!(refused(0x42).reply_code(), ReplyCode::GeneralFailure);
        assert_eq!(refused(0x00).reply_code(), ReplyCode::GeneralFailure);
        let text = refused(0xF6).to_string();
        assert!(
            text.starts_with("upstream tor: ") && text.contains("f6"),
            "{text}"
        );
    }

    #[test]
    fn upstream_failures_are_ours() {
        let unreachable = upstream(
            ClientError::ProxyConnect {
                proxy: "127.0.0.1:9".into(),
                source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
            },
            true,
        );
        assert_eq!(unreachable.reply_code(), ReplyCode::GeneralFailure);
        let slow = upstream(
            ClientError::Timeout {
                stage: sixsocks_client::Stage::Handshake,
                timeout: std::time::Duration::from_secs(1),
            },
            false,
        );
        assert_eq!(slow.reply_code(), ReplyCode::TtlExpired);
        assert_eq!(
            upstream(ClientError::AuthFailed, true).reply_code(),
            ReplyCode::NotAllowed
        );
        assert_eq!(
            upstream(ClientError::AuthFailed, false).reply_code(),
            ReplyCode::GeneralFailure
        );
        assert_eq!(
            upstream(ClientError::Unsupported("ipv6".into()), false).reply_code(),
            ReplyCode::AddressTypeNotSupported
        );
        let cannot = RequestError::UpstreamCannot("upstream s6 cannot carry RESOLVE".into());
        assert_eq!(cannot.reply_code().to_v5(false), 0x07);
        assert_eq!(cannot.reply_code().to_v4(), 0x5B);
    }

    /// Every session future holds a `Result<_, RequestError>` somewhere:
    /// keep the error small (the upstream variant is boxed for this).
    #[test]
    fn request_error_is_small() {
        assert!(std::mem::size_of::<RequestError>() <= 32);
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

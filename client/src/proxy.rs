//! Proxy configuration and proxy URLs.
//!
//! ```text
//! socks4://host[:port]     SOCKS4: the client resolves names itself (IPv4 only)
//! socks4a://host[:port]    SOCKS4a: names go to the proxy
//! socks5://host[:port]     SOCKS5: the client resolves names itself, sends the address
//! socks5h://host[:port]    SOCKS5: names go to the proxy ("h" for "hostname")
//! socks6://host[:port]     SOCKS 6: names go to the proxy; draft -11 unless
//!                          `?profile=draft-05`, `draft-11` or `ref-207` says otherwise
//! ```
//!
//! An optional `user[:password]@` comes before the host, percent-encoded
//! (`%40` for `@`, `%3A` for `:`, `%25` for `%`). An IPv6 proxy address goes
//! in brackets: `socks5://[::1]:1080`. Without a port, 1080 is used. A
//! trailing `/` is accepted; any other path, query or fragment is an error,
//! but for SOCKS 6's `?profile=`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use sixsocks_proto::v6::Profile;
use sixsocks_proto::{Host, Password, Version};

/// The SOCKS 6 profile a `socks6://` URL speaks unless it says otherwise:
/// draft -11, the latest revision (the reference dialect is `ref-207`).
pub const DEFAULT_SOCKS6_PROFILE: Profile = Profile::Draft11;

/// The port used when a proxy URL names none.
pub const DEFAULT_PORT: u16 = 1080;

/// How long any single stage (proxy connect, local name resolution, the
/// whole SOCKS handshake) may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which protocol to speak to the proxy, and who resolves target names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// SOCKS4: IPv4 targets only; names are resolved by the client.
    Socks4,
    /// SOCKS4a: names are sent to the proxy.
    Socks4a,
    /// SOCKS5: names are resolved by the client, the address is sent.
    Socks5,
    /// SOCKS5 with names sent to the proxy.
    Socks5h,
    /// SOCKS 6 (draft-olteanu-intarea-socks-6-05): names are sent to the
    /// proxy. See the `socks6` module.
    Socks6,
}

impl Scheme {
    /// The URL scheme name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Socks4 => "socks4",
            Scheme::Socks4a => "socks4a",
            Scheme::Socks5 => "socks5",
            Scheme::Socks5h => "socks5h",
            Scheme::Socks6 => "socks6",
        }
    }

    /// The protocol version spoken on the wire, for the SOCKS4/5 schemes.
    ///
    /// [`Version`] names the SOCKS4/4a/5 handshakes only; SOCKS 6 is not
    /// one of them, and `Socks6` maps to `V5`, the version whose reply codes
    /// SOCKS 6 extends. Check [`Scheme::is_socks6`] first.
    pub fn version(self) -> Version {
        match self {
            Scheme::Socks4 => Version::V4,
            Scheme::Socks4a => Version::V4a,
            Scheme::Socks5 | Scheme::Socks5h | Scheme::Socks6 => Version::V5,
        }
    }

    /// Whether target names are sent to the proxy (true) or resolved by
    /// the client (false).
    pub fn remote_dns(self) -> bool {
        matches!(self, Scheme::Socks4a | Scheme::Socks5h | Scheme::Socks6)
    }

    /// Whether this is one of the SOCKS5 schemes.
    pub fn is_v5(self) -> bool {
        matches!(self, Scheme::Socks5 | Scheme::Socks5h)
    }

    /// Whether this is SOCKS 6.
    pub fn is_socks6(self) -> bool {
        self == Scheme::Socks6
    }

    /// Whether this is SOCKS4 or SOCKS4a (IPv4 only, a USERID and no
    /// password).
    pub fn is_v4(self) -> bool {
        matches!(self, Scheme::Socks4 | Scheme::Socks4a)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        match s.to_ascii_lowercase().as_str() {
            "socks4" => Ok(Scheme::Socks4),
            "socks4a" => Ok(Scheme::Socks4a),
            "socks5" => Ok(Scheme::Socks5),
            "socks5h" => Ok(Scheme::Socks5h),
            "socks6" => Ok(Scheme::Socks6),
            _ => Err(UrlError::UnsupportedScheme(s.to_string())),
        }
    }
}

/// What is wrong with a proxy URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "proxy URL has no scheme (expected socks4://, socks4a://, socks5://, socks5h:// or socks6://)"
    )]
    MissingScheme,
    #[error(
        "unsupported proxy scheme {0:?} (expected socks4, socks4a, socks5, socks5h or socks6)"
    )]
    UnsupportedScheme(String),
    #[error("proxy URL has no host")]
    EmptyHost,
    #[error("invalid proxy host {0:?}")]
    InvalidHost(String),
    #[error("invalid IPv6 address in brackets: {0:?}")]
    InvalidIpv6(String),
    #[error("invalid proxy port {0:?} (expected 1 to 65535)")]
    InvalidPort(String),
    #[error("invalid percent-encoding in the user name or password")]
    BadPercentEncoding,
    #[error("{0} longer than 255 bytes")]
    CredentialTooLong(&'static str),
    #[error("a SOCKS4 user id cannot contain a NUL byte")]
    NulInUserId,
    #[error("unexpected path, query or fragment {0:?} in proxy URL")]
    UnexpectedPath(String),
    #[error("unknown SOCKS 6 profile {0:?} (expected draft-05, draft-11 or ref-207)")]
    UnknownProfile(String),
}

/// A SOCKS proxy to connect through, with credentials and timeouts.
///
/// Parse one from a URL (`"socks5h://user:pw@127.0.0.1:1080".parse()`), or
/// build one with [`Proxy::new`] and the `with_*` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub scheme: Scheme,
    /// The proxy's host: an address, or a name the client resolves.
    pub host: Host,
    pub port: u16,
    /// SOCKS5 and SOCKS 6: the RFC 1929 user name (offering method 02
    /// only). SOCKS4/4a: the USERID.
    pub username: Option<Vec<u8>>,
    /// SOCKS5 and SOCKS 6 only (SOCKS4 has no passwords; it is ignored there).
    pub password: Option<Password>,
    /// Deadline of each stage: connecting to the proxy (including resolving
    /// its name), resolving a target name locally, and the whole handshake.
    pub timeout: Duration,
    /// SOCKS 6 only: the wire profile ([`DEFAULT_SOCKS6_PROFILE`] unless the
    /// URL's `?profile=` chose another).
    pub socks6_profile: Profile,
}

impl Proxy {
    /// A proxy without credentials and with the default timeout.
    pub fn new(scheme: Scheme, host: Host, port: u16) -> Self {
        Proxy {
            scheme,
            host,
            port,
            username: None,
            password: None,
            timeout: DEFAULT_TIMEOUT,
            socks6_profile: DEFAULT_SOCKS6_PROFILE,
        }
    }

    /// Set the SOCKS 6 wire profile.
    pub fn with_socks6_profile(mut self, profile: Profile) -> Self {
        self.socks6_profile = profile;
        self
    }

    /// Parse a proxy URL (see the module documentation).
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        parse_url(url)
    }

    /// Set the user name and password.
    pub fn with_auth(mut self, username: impl Into<Vec<u8>>, password: impl Into<Vec<u8>>) -> Self {
        self.username = Some(username.into());
        self.password = Some(Password::new(password));
        self
    }

    /// Set the SOCKS4 USERID (or a SOCKS5 user name without password).
    pub fn with_username(mut self, username: impl Into<Vec<u8>>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Set the deadline of each stage.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `host:port` of the proxy, IPv6 in brackets.
    pub fn addr_string(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl FromStr for Proxy {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        parse_url(s)
    }
}

/// The URL, with the password replaced by `***` (it is safe to log).
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(user) = &self.username {
            f.write_str(&percent_encode(user))?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        if self.scheme.is_socks6() && self.socks6_profile != DEFAULT_SOCKS6_PROFILE {
            write!(f, "?profile={}", self.socks6_profile.setting_name())?;
        }
        Ok(())
    }
}

fn parse_url(url: &str) -> Result<Proxy, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
    let scheme: Scheme = scheme.parse()?;

    // The authority ends at the first '/', '?' or '#'; only a lone '/' may follow.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut socks6_profile = DEFAULT_SOCKS6_PROFILE;
    let tail = match tail.split_once('?') {
        Some((path, query)) if scheme.is_socks6() && (path.is_empty() || path == "/") => {
            let Some(name) = query.strip_prefix("profile=") else {
                return Err(UrlError::UnexpectedPath(tail.to_string()));
            };
            socks6_profile = Profile::from_setting_name(name)
                .ok_or_else(|| UrlError::UnknownProfile(name.to_string()))?;
            path
        }
        _ => tail,
    };
    if !tail.is_empty() && tail != "/" {
        return Err(UrlError::UnexpectedPath(tail.to_string()));
    }

    // A host cannot contain '@', so the userinfo ends at the last one.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };

    let (username, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            let u = percent_decode(u)?;
            if u.len() > 255 {
                return Err(UrlError::CredentialTooLong("user name"));
            }
            if scheme.is_v4() && u.contains(&0) {
                return Err(UrlError::NulInUserId);
            }
            let p = match p {
                Some(p) => {
                    let p = Password::new(percent_decode(p)?);
                    if p.len() > 255 {
                        return Err(UrlError::CredentialTooLong("password"));
                    }
                    Some(p)
                }
                None => None,
            };
            (Some(u), p)
        }
    };

    let (host, port) = parse_hostport(hostport)?;
    Ok(Proxy {
        scheme,
        host,
        port,
        username,
        password,
        timeout: DEFAULT_TIMEOUT,
        socks6_profile,
    })
}

fn parse_hostport(s: &str) -> Result<(Host, u16), UrlError> {
    let (host, port) = if let Some(after) = s.strip_prefix('[') {
        let (inside, after) = after
            .split_once(']')
            .ok_or_else(|| UrlError::InvalidIpv6(s.to_string()))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| UrlError::InvalidIpv6(inside.to_string()))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| UrlError::InvalidHost(s.to_string()))?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if h.is_empty() {
            return Err(UrlError::EmptyHost);
        }
        if h.contains(':') {
            // An IPv6 address without brackets.
            return Err(UrlError::InvalidHost(h.to_string()));
        }
        let host = match h.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => {
                if !valid_hostname(h) {
                    return Err(UrlError::InvalidHost(h.to_string()));
                }
                Host::Domain(h.to_string())
            }
        };
        (host, port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => parse_port(p)?,
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort(p.to_string()));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::InvalidPort(p.to_string())),
        Ok(n) => Ok(n),
    }
}

/// Letters, digits, `-`, `_` and `.`, at most 253 bytes, no empty labels.
fn valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Decode `%XX` escapes. Anything else passes through as its UTF-8 bytes.
pub(crate) fn percent_decode(s: &str) -> Result<Vec<u8>, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(UrlError::BadPercentEncoding)?;
            let hi = hex_val(hex[0]).ok_or(UrlError::BadPercentEncoding)?;
            let lo = hex_val(hex[1]).ok_or(UrlError::BadPercentEncoding)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Encode everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        let raw = b"a@b:c%d e/\xff";
        let enc = percent_encode(raw);
        assert_eq!(enc, "a%40b%3Ac%25d%20e%2F%FF");
        assert_eq!(percent_decode(&enc).unwrap(), raw.to_vec());
    }

    #[test]
    fn percent_decode_rejects_truncated_and_non_hex() {
        for bad in ["%", "%4", "abc%", "%zz", "%4g"] {
            assert_eq!(
                percent_decode(bad),
                Err(UrlError::BadPercentEncoding),
                "{bad}"
            );
        }
    }

    #[test]
    fn hostname_validation() {
        assert!(valid_hostname("example.com"));
        assert!(valid_hostname("example.com."));
        assert!(valid_hostname("a_b-c.local"));
        assert!(!valid_hostname("a..b"));
        assert!(!valid_hostname("."));
        assert!(!valid_hostname("exa mple"));
        assert!(!valid_hostname(&"a".repeat(64)));
    }
}

//! Upstream chaining: carrying a request out through another SOCKS proxy.
//!
//! The configuration names upstream proxies in `[upstream.NAME]` tables; a
//! rule with `route = "NAME"` sends the requests it matches through that
//! one instead of connecting (or resolving) directly:
//!
//! ```toml
//! [upstream.tor]
//! url = "socks5h://127.0.0.1:9050"
//! pass_credentials = true   # keep Tor's stream isolation per client user
//! connect_timeout = 120     # onion services take their time
//! ```
//!
//! The URL is a proxy URL as the client library reads it
//! ([`sixsocks_client::Proxy::parse`]): `socks5h://` (names go to the
//! upstream: the one to use for Tor), `socks5://` (sixsocks resolves names
//! itself and sends addresses), `socks4a://`, `socks4://`, `socks6://`,
//! each with an optional `user:password@`.
//!
//! What goes through an upstream:
//! * CONNECT ([`Upstream::connect`]); with a `socks6://` upstream the
//!   client's first bytes ride in the upstream request as initial data.
//!   Unless `pass_credentials` is set, a `socks6://` upstream keeps one
//!   SOCKS 6 session with a token wallet (`Socks6Session`): requests after
//!   the first authenticate by the session and spend a token, which makes
//!   them replay-safe, so they may go in a TCP Fast Open SYN where the
//!   kernel has a cookie for the upstream. A session the upstream forgot
//!   (it restarted) is replaced, and the request retried once, by the
//!   client library.
//! * RESOLVE and RESOLVE_PTR (Tor's `F0`/`F1`, [`Upstream::resolve`],
//!   [`Upstream::resolve_ptr`]) with `socks5h://`/`socks5://` (and RESOLVE
//!   with `socks4a://`), and with `socks6://` of -11 or the reference
//!   dialect through its "DNS provided by SOCKS" (DNS over TCP to
//!   `0.0.0.0:53`, `dns_over_socks.rs`); other schemes have no such
//!   command, and the client gets `07`.
//! * BIND of a SOCKS4/5 client ([`Upstream::bind`], `command/bind_upstream.rs`;
//!   to a SOCKS 6 upstream as a SOCKS 6 BIND of any address), and a SOCKS5
//!   client's UDP ASSOCIATE ([`Upstream::associate`],
//!   `udp_relay/via_upstream.rs`) with `socks5://`, `socks5h://` and
//!   `socks6://`. Not a SOCKS 6 client's BIND or UDP: a rule that routes
//!   them gets `07`.
//!
//! With `pass_credentials`, the credentials the client gave sixsocks go to
//! the upstream instead of the URL's: Tor isolates streams by SOCKS user
//! name and password, so each client user keeps its own circuits through
//! sixsocks. A client that gave none is sent with the URL's credentials
//! (if any). To a `socks4a://`/`socks4://` upstream only the user name goes,
//! as the USERID; a SOCKS4 client's USERID goes to a SOCKS5 or SOCKS 6
//! upstream as the user name with an empty password (Tor accepts it).
//!
//! Errors: a refusal keeps the upstream's reply code (so Tor's extended
//! codes `F0`–`F7` reach SOCKS5 clients when `extended_errors` is on); an
//! upstream that cannot be reached, times out or misbehaves is logged with
//! its name and answered by sixsocks' own codes. The mapping is
//! [`RequestError::reply_code`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use sixsocks_client::socks6::Socks6Session;
use sixsocks_client::{ClientError, Proxy, Scheme, Socks6Options, Stage, UrlError};
use sixsocks_proto::{Credentials, Host, Password, TargetAddr};
use tokio::net::TcpStream;

use crate::error::{RequestError, UpstreamError};

/// One `[upstream.NAME]` table.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream proxy's URL, e.g. `socks5h://127.0.0.1:9050` or
    /// `socks6://user:pass@10.0.0.2:1080` (see [`sixsocks_client::Proxy`]).
    pub url: String,
    /// Send the client's own user name and password upstream instead of
    /// the URL's (Tor's stream isolation). Default false.
    #[serde(default)]
    pub pass_credentials: bool,
    /// Seconds to reach the upstream and have its answer (the whole
    /// request, its own connection to the target included). Default: the
    /// server's `connect_timeout`.
    #[serde(default)]
    pub connect_timeout: Option<u64>,
    /// `socks6://` only: answer a SOCKS4/5 client's CONNECT at once,
    /// without waiting for the upstream, so that the client's first bytes
    /// go with the upstream request (the gateway's default). A target the
    /// upstream cannot reach then resets the accepted connection. Default
    /// false: the reply waits for the upstream's and carries its code.
    #[serde(default)]
    pub optimistic: bool,
}

/// The URL with its password hidden: the configuration is printed, and
/// passwords never are.
impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match Proxy::parse(&self.url) {
            Ok(p) => p.to_string(),
            Err(_) => "<invalid>".to_string(),
        };
        f.debug_struct("UpstreamConfig")
            .field("url", &url)
            .field("pass_credentials", &self.pass_credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("optimistic", &self.optimistic)
            .finish()
    }
}

impl UpstreamConfig {
    /// An upstream at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        UpstreamConfig {
            url: url.into(),
            pass_credentials: false,
            connect_timeout: None,
            optimistic: false,
        }
    }

    /// The parsed URL.
    pub fn proxy(&self) -> Result<Proxy, UrlError> {
        Proxy::parse(&self.url)
    }

    /// Check the table named `name`; `listen` are the server's own
    /// listening addresses (an upstream there would be a loop). The
    /// message names the upstream.
    pub fn check(&self, name: &str, listen: &[SocketAddr]) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!(
                "upstream name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        let proxy = self
            .proxy()
            .map_err(|e| format!("upstream {name:?}: invalid url: {e}"))?;
        if self.connect_timeout == Some(0) {
            return Err(format!(
                "upstream {name:?}: connect_timeout must be at least 1 second"
            ));
        }
        if self.optimistic && !proxy.scheme.is_socks6() {
            return Err(format!(
                "upstream {name:?}: optimistic needs a socks6:// url (only SOCKS 6 carries \
                 the client's first bytes with the request)"
            ));
        }
        if let Host::Ip(ip) = proxy.host {
            let own = listen
                .iter()
                .find(|l| crate::destination::is_own_socket(ip, proxy.port, std::iter::once(**l)));
            if let Some(own) = own {
                return Err(format!(
                    "upstream {name:?} ({proxy}) is sixsocks' own listener {own}: \
                     every request routed there would loop"
                ));
            }
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Tokens asked for at a time from a `socks6://` upstream.
const UPSTREAM_TOKEN_WINDOW: u32 = 64;

/// An upstream proxy, ready to carry requests out.
#[derive(Clone, Debug)]
pub struct Upstream {
    name: String,
    proxy: Proxy,
    pass_credentials: bool,
    timeout: Duration,
    /// `socks6://` with the URL's own credentials: one session and token
    /// wallet for every request (shared by the clones of a generation).
    socks6: Option<std::sync::Arc<Socks6Session>>,
    /// Answer SOCKS4/5 clients before the upstream does.
    optimistic: bool,
}

/// A connection to the target through an upstream, after its success reply.
#[derive(Debug)]
pub struct UpstreamStream {
    /// The connection to the upstream proxy, now carrying the target's bytes.
    pub stream: TcpStream,
    /// Bytes of the target the upstream sent right behind its reply: they
    /// go to the client before anything read from `stream`.
    pub leftover: Vec<u8>,
    /// The address in the upstream's reply (the upstream's own outbound
    /// address; often zeros).
    pub bound: TargetAddr,
    /// Whether the `early` bytes given to [`Upstream::connect`] went with
    /// the request (SOCKS 6 initial data). If not, the caller sends them.
    pub early_sent: bool,
}

impl Upstream {
    /// Build the upstream `name` from its table; `default_timeout` (the
    /// server's `connect_timeout`) applies when the table sets none.
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        default_timeout: Duration,
    ) -> Result<Self, UrlError> {
        let timeout = config
            .connect_timeout
            .map_or(default_timeout, Duration::from_secs);
        let proxy = config.proxy()?.with_timeout(timeout);
        let socks6 = (proxy.scheme.is_socks6() && !config.pass_credentials)
            .then(|| {
                Socks6Session::new(proxy.clone())
                    .with_options(Socks6Options::new().client_tfo(true))
                    .with_tokens(UPSTREAM_TOKEN_WINDOW)
                    .ok()
            })
            .flatten()
            .map(std::sync::Arc::new);
        Ok(Upstream {
            name: name.to_string(),
            pass_credentials: config.pass_credentials,
            timeout,
            optimistic: config.optimistic && proxy.scheme.is_socks6(),
            proxy,
            socks6,
        })
    }

    /// The name of its `[upstream.NAME]` table.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream proxy (its `Display` hides the password).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The whole-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether SOCKS4/5 clients are answered before the upstream is
    /// (`optimistic`).
    pub fn optimistic(&self) -> bool {
        self.optimistic
    }

    /// The proxy to use for a client with `creds`, and whether they are the
    /// client's own.
    fn proxy_for(&self, creds: &Credentials) -> (Proxy, bool) {
        if !self.pass_credentials {
            return (self.proxy.clone(), false);
        }
        let v4 = self.proxy.scheme.is_v4();
        let mut proxy = self.proxy.clone();
        match creds {
            Credentials::None => return (proxy, false),
            Credentials::UserPass { username, password } => {
                proxy.username = Some(username.clone());
                proxy.password = (!v4).then(|| password.clone());
            }
            Credentials::UserId(userid) => {
                proxy.username = Some(userid.clone());
                proxy.password = (!v4).then(Password::default);
            }
        }
        (proxy, true)
    }

    /// CONNECT to `target` through the upstream, for a client that
    /// presented `creds`. With a `socks6://` upstream `early` (the client's
    /// first bytes) goes with the request as initial data
    /// ([`UpstreamStream::early_sent`]); otherwise the caller sends it.
    ///
    /// A `.onion` name is never resolved locally: with `socks5://` or
    /// `socks4://` (which resolve names here) it fails as it does without
    /// an upstream.
    pub async fn connect(
        &self,
        target: &TargetAddr,
        creds: &Credentials,
        early: &[u8],
    ) -> Result<UpstreamStream, RequestError> {
        if let Host::Domain(name) = &target.host {
            if !self.proxy.scheme.remote_dns() {
                if let Some(valid) = crate::destination::onion_address(name) {
                    return Err(if valid {
                        RequestError::OnionUnreachable
                    } else {
                        RequestError::OnionInvalid
                    });
                }
            }
        }
        let (proxy, passed) = self.proxy_for(creds);
        let socks6 = proxy.scheme.is_socks6();
        let started = tokio::time::Instant::now();
        let result = self
            .bounded(async {
                if let (Some(session), false) = (&self.socks6, passed) {
                    session.connect_with_data(target, early).await
                } else if socks6 {
                    sixsocks_client::socks6_connect(
                        &proxy,
                        target,
                        early,
                        &Socks6Options::default(),
                    )
                    .await
                } else {
                    sixsocks_client::connect(&proxy, target).await
                }
            })
            .await;
        // The connect latency histogram counts routed connections too.
        crate::metrics::connect_seconds(started.elapsed(), result.is_ok());
        match result {
            Ok(s) => {
                let bound = s.bound_addr().clone();
                let (stream, leftover) = s.into_inner();
                Ok(UpstreamStream {
                    stream,
                    leftover,
                    bound,
                    early_sent: socks6,
                })
            }
            Err(e) => Err(self.failed(e, passed, "CONNECT", &target.to_string())),
        }
    }

    /// Tor's RESOLVE (`F0`) of `name` through the upstream: `socks5h://`,
    /// `socks5://` or `socks4a://` (the name always goes to the upstream).
    ///
    /// A `socks6://` upstream of -11 or the reference dialect is asked with
    /// its "DNS provided by SOCKS" (DNS over TCP through a CONNECT to
    /// `0.0.0.0:53`): an A query and an AAAA query, the first address of the
    /// A answer, else of the AAAA one.
    pub async fn resolve(&self, name: &str, creds: &Credentials) -> Result<IpAddr, RequestError> {
        if self.dns_service() {
            return self.resolve_over_dns(name, creds).await;
        }
        if matches!(self.proxy.scheme, Scheme::Socks4 | Scheme::Socks6) {
            return Err(self.cannot(
                "RESOLVE (it needs a socks5h://, socks5://, socks4a:// or socks6:// -11 upstream)",
            ));
        }
        let (proxy, passed) = self.proxy_for(creds);
        self.bounded(sixsocks_client::resolve(&proxy, name))
            .await
            .map_err(|e| self.failed(e, passed, "RESOLVE", name))
    }

    /// Tor's RESOLVE_PTR (`F1`) of `ip` through the upstream: `socks5h://`
    /// or `socks5://` only.
    pub async fn resolve_ptr(
        &self,
        ip: IpAddr,
        creds: &Credentials,
    ) -> Result<String, RequestError> {
        if self.dns_service() {
            return self.reverse_over_dns(ip, creds).await;
        }
        if !self.proxy.scheme.is_v5() {
            return Err(self.cannot(
                "RESOLVE_PTR (it needs a socks5h://, socks5:// or socks6:// -11 upstream)",
            ));
        }
        let (proxy, passed) = self.proxy_for(creds);
        self.bounded(sixsocks_client::resolve_ptr(&proxy, ip))
            .await
            .map_err(|e| self.failed(e, passed, "RESOLVE_PTR", &ip.to_string()))
    }

    /// BIND through the upstream: its listener, once the first reply says
    /// where it listens.
    pub async fn bind(
        &self,
        target: &TargetAddr,
        creds: &Credentials,
    ) -> Result<sixsocks_client::SocksListener, RequestError> {
        let (proxy, passed) = self.proxy_for(creds);
        self.bounded(sixsocks_client::SocksListener::bind(&proxy, target.clone()))
            .await
            .map_err(|e| self.failed(e, passed, "BIND", &target.to_string()))
    }

    /// UDP ASSOCIATE through the upstream (SOCKS5 or SOCKS 6): an
    /// association of our own with it, every datagram sent through it.
    pub async fn associate(
        &self,
        creds: &Credentials,
    ) -> Result<sixsocks_client::SocksDatagram, RequestError> {
        let (proxy, passed) = self.proxy_for(creds);
        self.bounded(sixsocks_client::SocksDatagram::associate(&proxy, None))
            .await
            .map_err(|e| self.failed(e, passed, "UDP ASSOCIATE", "the association"))
    }

    /// A BIND's second reply that failed.
    pub fn failed_bind(&self, error: ClientError) -> RequestError {
        self.failed(error, false, "BIND", "the inbound connection")
    }

    /// Whether the upstream has SOCKS 6's DNS service (-11, the reference
    /// dialect).
    fn dns_service(&self) -> bool {
        self.proxy.scheme.is_socks6()
            && self.proxy.socks6_profile != sixsocks_proto::v6::Profile::Draft05
    }

    /// Send `queries` (framed) to the upstream's DNS service and read as
    /// many responses.
    async fn ask_dns(
        &self,
        queries: Vec<u8>,
        n: usize,
        creds: &Credentials,
        what: &str,
    ) -> Result<Vec<hickory_proto::op::Message>, RequestError> {
        let dns = TargetAddr::ip(IpAddr::from([0, 0, 0, 0]), 53);
        let mut s = self.connect(&dns, creds, &queries).await?;
        if !s.early_sent {
            crate::relay::write_all(&s.stream, &queries).await?;
        }
        crate::dns_over_socks::responses(&mut s.stream, s.leftover, n, self.timeout)
            .await
            .map_err(|e| {
                tracing::debug!(upstream = %self.name, what, error = %e, "DNS through the upstream");
                RequestError::Resolve(format!("{what}: through upstream {}: {e}", self.name))
            })
    }

    async fn resolve_over_dns(
        &self,
        name: &str,
        creds: &Credentials,
    ) -> Result<IpAddr, RequestError> {
        use hickory_proto::rr::RecordType;
        let mut queries = Vec::new();
        for (id, t) in [(1, RecordType::A), (2, RecordType::AAAA)] {
            queries.extend(
                crate::dns_over_socks::query(id, name, t)
                    .ok_or_else(|| RequestError::Resolve(format!("{name}: not a DNS name")))?,
            );
        }
        let answers = self.ask_dns(queries, 2, creds, name).await?;
        let mut by_id: Vec<_> = answers.iter().collect();
        by_id.sort_by_key(|m| m.metadata.id);
        for m in by_id {
            let (code, ips) = crate::dns_over_socks::addresses(m);
            if code == hickory_proto::op::ResponseCode::Refused {
                return Err(RequestError::Blocked(format!(
                    "{name}: refused by upstream {}",
                    self.name
                )));
            }
            if let Some(ip) = ips.first() {
                return Ok(*ip);
            }
        }
        Err(RequestError::Resolve(format!("{name}: no addresses")))
    }

    async fn reverse_over_dns(
        &self,
        ip: IpAddr,
        creds: &Credentials,
    ) -> Result<String, RequestError> {
        let arpa = crate::dns_over_socks::arpa(ip);
        let q = crate::dns_over_socks::query(1, &arpa, hickory_proto::rr::RecordType::PTR)
            .ok_or_else(|| RequestError::Resolve(format!("{ip}: no PTR name")))?;
        let answers = self.ask_dns(q, 1, creds, &ip.to_string()).await?;
        answers
            .first()
            .and_then(crate::dns_over_socks::ptr_name)
            .ok_or_else(|| RequestError::Resolve(format!("{ip}: no name")))
    }

    /// Run `fut` under the whole-request deadline (the client library's
    /// deadlines are per stage).
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                stage: Stage::Handshake,
                timeout: self.timeout,
            }))
    }

    fn cannot(&self, what: &str) -> RequestError {
        tracing::warn!(
            upstream = %self.name,
            url = %self.proxy,
            "upstream {} cannot carry {what}",
            self.name
        );
        RequestError::UpstreamCannot(format!("upstream {} cannot carry {what}", self.name))
    }

    /// Wrap a client error; log the upstream's own failures (a refusal is
    /// the target's answer and goes to the session line only).
    fn failed(&self, error: ClientError, passed: bool, command: &str, what: &str) -> RequestError {
        let refused = error.reply_code().is_some();
        if refused {
            tracing::debug!(
                upstream = %self.name,
                command,
                target = %what,
                error = %error,
                "upstream refused"
            );
        } else {
            tracing::warn!(
                upstream = %self.name,
                url = %self.proxy,
                command,
                target = %what,
                error = %error,
                "upstream proxy {} failed",
                self.name
            );
        }
        RequestError::Upstream(Box::new(UpstreamError {
            upstream: self.name.clone(),
            error,
            passed_credentials: passed,
        }))
    }
}

/// Every configured upstream, by name.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    by_name: BTreeMap<String, Upstream>,
}

impl Upstreams {
    /// Build them all from the `[upstream.*]` tables (validated ones: an
    /// invalid URL is an error naming the upstream).
    pub fn new(
        tables: &BTreeMap<String, UpstreamConfig>,
        default_timeout: Duration,
    ) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (name, config) in tables {
            let up = Upstream::new(name, config, default_timeout)
                .map_err(|e| format!("upstream {name:?}: invalid url: {e}"))?;
            by_name.insert(name.clone(), up);
        }
        Ok(Upstreams { by_name })
    }

    /// The upstreams of a configuration that passed
    /// [`Config::validate`](crate::Config::validate) (one that did not
    /// loses its invalid upstreams, with an error logged; rules naming them
    /// then refuse their requests).
    pub fn from_config(config: &crate::Config) -> Self {
        let mut by_name = BTreeMap::new();
        for (name, table) in &config.upstream {
            match Upstream::new(name, table, config.connect_timeout()) {
                Ok(up) => {
                    by_name.insert(name.clone(), up);
                }
                Err(e) => tracing::error!(upstream = %name, "upstream {name:?}: invalid url: {e}"),
            }
        }
        Upstreams { by_name }
    }

    /// The upstream named `name`.
    pub fn get(&self, name: &str) -> Option<&Upstream> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(url: &str, pass: bool) -> Upstream {
        let cfg = UpstreamConfig {
            pass_credentials: pass,
            ..UpstreamConfig::new(url)
        };
        Upstream::new("t", &cfg, Duration::from_secs(7)).unwrap()
    }

    fn userpass(u: &str, p: &str) -> Credentials {
        Credentials::UserPass {
            username: u.into(),
            password: Password::new(p),
        }
    }

    #[test]
    fn credentials_are_passed_only_when_asked() {
        let fixed = up("socks5h://url:pw@127.0.0.1:9050", false);
        let (p, passed) = fixed.proxy_for(&userpass("alice", "a"));
        assert!(!passed);
        assert_eq!(p.username.as_deref(), Some(&b"url"[..]));
        assert_eq!(p.password, Some(Password::new("pw")));

        let pass = up("socks5h://url:pw@127.0.0.1:9050", true);
        let (p, passed) = pass.proxy_for(&userpass("alice", "a"));
        assert!(passed);
        assert_eq!(p.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(p.password, Some(Password::new("a")));
        // No client credentials: the URL's.
        let (p, passed) = pass.proxy_for(&Credentials::None);
        assert!(!passed);
        assert_eq!(p.username.as_deref(), Some(&b"url"[..]));
        // A SOCKS4 USERID: the user name, with an empty password.
        let (p, _) = pass.proxy_for(&Credentials::UserId(b"bob".to_vec()));
        assert_eq!(p.username.as_deref(), Some(&b"bob"[..]));
        assert_eq!(p.password, Some(Password::default()));
    }

    #[test]
    fn socks4a_upstream_gets_the_user_name_as_userid() {
        let pass = up("socks4a://127.0.0.1:9050", true);
        let (p, passed) = pass.proxy_for(&userpass("alice", "secret"));
        assert!(passed);
        assert_eq!(p.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(p.password, None);
    }

    #[test]
    fn timeout_defaults_to_the_servers() {
        assert_eq!(
            up("socks5h://127.0.0.1:9050", false).timeout(),
            Duration::from_secs(7)
        );
        let cfg = UpstreamConfig {
            connect_timeout: Some(120),
            ..UpstreamConfig::new("socks5h://127.0.0.1:9050")
        };
        let u = Upstream::new("tor", &cfg, Duration::from_secs(7)).unwrap();
        assert_eq!(u.timeout(), Duration::from_secs(120));
        assert_eq!(u.proxy().timeout, Duration::from_secs(120));
    }

    #[test]
    fn check_names_the_upstream() {
        let listen = ["127.0.0.1:1080".parse().unwrap()];
        let e = UpstreamConfig::new("http://127.0.0.1:8080")
            .check("web", &listen)
            .unwrap_err();
        assert!(
            e.contains("\"web\"") && e.contains("unsupported proxy scheme"),
            "{e}"
        );
        let e = UpstreamConfig::new("socks5h://127.0.0.1:1080")
            .check("self", &listen)
            .unwrap_err();
        assert!(e.contains("\"self\"") && e.contains("loop"), "{e}");
        let any = ["0.0.0.0:1080".parse().unwrap()];
        assert!(UpstreamConfig::new("socks5://127.0.0.2:1080")
            .check("self", &any)
            .is_err());
        let e = UpstreamConfig::new("socks5h://127.0.0.1:9050")
            .check("bad name", &listen)
            .unwrap_err();
        assert!(e.contains("bad name"), "{e}");
        let zero = UpstreamConfig {
            connect_timeout: Some(0),
            ..UpstreamConfig::new("socks5h://127.0.0.1:9050")
        };
        assert!(zero
            .check("tor", &listen)
            .unwrap_err()
            .contains("connect_timeout"));
        UpstreamConfig::new("socks5h://127.0.0.1:9050")
            .check("tor", &listen)
            .unwrap();
    }

    #[test]
    fn the_readme_example_parses() {
        let cfg = crate::config::readme_example("### Upstream chaining");
        assert!(cfg.upstream["tor"].pass_credentials);
        let routes: Vec<_> = cfg.rule.iter().filter_map(|r| r.route.as_deref()).collect();
        assert_eq!(routes, ["tor", "office"]);
        let ups = Upstreams::from_config(&cfg);
        assert_eq!(ups.len(), 2);
        assert_eq!(ups.get("tor").unwrap().timeout(), Duration::from_secs(120));
        assert!(ups.get("office").unwrap().proxy().scheme.is_socks6());
    }

    #[test]
    fn debug_hides_the_password() {
        let cfg = UpstreamConfig::new("socks5h://user:hunter2@127.0.0.1:9050");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user"), "{shown}");
    }
}

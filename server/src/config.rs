//! Configuration: the embedded defaults, the TOML file, validation.
//!
//! Every field has a command-line twin in `sixsocks serve` (same name with
//! dashes); the command line overrides the file, the file overrides the
//! defaults. Durations are whole seconds unless the name says otherwise.
//! `sixsocks.example.toml` at the repository root documents every field.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::relay::RelayMode;

/// The upstream a `[gateway]` routes to.
pub const GATEWAY_UPSTREAM: &str = "gateway";

/// `[gateway]`: the far SOCKS 6 proxy and the mode.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The far proxy: `socks6://[user:pass@]host:port[?profile=...]`.
    pub upstream: String,
    /// `optimistic` (default) or `strict`.
    #[serde(default)]
    pub mode: GatewayMode,
}

/// The URL with its password hidden.
impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = sixsocks_client::Proxy::parse(&self.upstream)
            .map_or_else(|_| "<invalid>".to_string(), |p| p.to_string());
        f.debug_struct("GatewayConfig")
            .field("upstream", &url)
            .field("mode", &self.mode)
            .finish()
    }
}

/// When a gateway answers an application (see `command/optimistic.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayMode {
    /// At once: the application's first bytes go with the SOCKS 6
    /// request; a refused target resets its connection.
    #[default]
    Optimistic,
    /// After the far proxy, with its reply code.
    Strict,
}

/// How a listener reads a SOCKS 6 request that begins with `06`
/// (`socks6_profile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Socks6Profile {
    /// Draft -05 or -11, told apart by the header
    /// (`sixsocks_proto::v6::sniff_version_6`).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "draft-05")]
    Draft05,
    #[serde(rename = "draft-11")]
    Draft11,
}

impl Socks6Profile {
    /// The protocol machine's setting.
    pub fn setting(self) -> sixsocks_proto::v6::ProfileSetting {
        use sixsocks_proto::v6::{Profile, ProfileSetting};
        match self {
            Socks6Profile::Auto => ProfileSetting::Auto,
            Socks6Profile::Draft05 => ProfileSetting::Only(Profile::Draft05),
            Socks6Profile::Draft11 => ProfileSetting::Only(Profile::Draft11),
        }
    }
}

impl std::str::FromStr for Socks6Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Socks6Profile::Auto),
            "draft-05" => Ok(Socks6Profile::Draft05),
            "draft-11" => Ok(Socks6Profile::Draft11),
            other => Err(format!(
                "unknown SOCKS 6 profile {other:?} (auto, draft-05 or draft-11)"
            )),
        }
    }
}
pub use crate::upstream::UpstreamConfig;

/// The whole server configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on (IPv4 and IPv6). Default `127.0.0.1:1080`.
    pub listen: Vec<SocketAddr>,
    /// Users file (`name:$argon2id$...` lines). When set, SOCKS5 clients
    /// must authenticate with username/password and SOCKS4 is refused.
    pub users_file: Option<PathBuf>,
    /// Tor's leniency: accept an RFC 1929 message after method 00 was
    /// chosen, and accept empty username/password fields.
    pub lenient_auth: bool,
    /// Failed logins a client address (an IPv6 /64) may have in a row;
    /// beyond, its logins are refused without checking the password until
    /// the budget refills (see [`crate::auth::throttle`]). 0 turns the
    /// throttle off.
    pub auth_failure_burst: u32,
    /// Failed logins given back to an address's budget per minute.
    pub auth_failures_per_minute: u32,
    /// Send Tor's extended error codes (F0–F7) in SOCKS5 replies.
    pub extended_errors: bool,
    /// Seconds a client has to complete its handshake (greeting,
    /// authentication and request).
    pub handshake_timeout: u64,
    /// Seconds to establish an outbound connection (all addresses together).
    pub connect_timeout: u64,
    /// Seconds a name resolution may take.
    pub resolve_timeout: u64,
    /// RFC 8305 "connection attempt delay": milliseconds to wait for one
    /// address before also trying the next.
    pub happy_eyeballs_delay_ms: u64,
    /// Seconds without traffic in either direction after which a relayed
    /// connection is closed; 0 disables.
    pub idle_timeout: u64,
    /// Maximum concurrent client connections; more are closed at once.
    /// Unset: derived at start from the open-file limit, two descriptors
    /// per relay and a margin (`Config::max_clients()`, in `descriptors.rs`).
    /// Set, it wins.
    pub max_clients: Option<usize>,
    /// Connections at once from one client address (an IPv6 client by its
    /// /64); more are closed at accept. Keeps one host from taking every
    /// `max_clients` slot.
    pub max_clients_per_address: usize,
    /// Handshakes in progress at once from one client address (accepted,
    /// request not read yet); more are closed at accept. Slow or silent
    /// handshakes from one host cannot crowd out the others.
    pub max_handshakes_per_address: usize,
    /// Seconds live sessions get to finish after SIGINT/SIGTERM.
    pub shutdown_grace: u64,
    /// Threads that serve clients, each with a runtime and a listening
    /// socket per address of its own (see [`crate::cores`]); 0, the
    /// default: one per core this process may use. Read at start.
    pub threads: usize,
    /// How relayed bytes are moved: `auto` (the default: splice(2) through
    /// a pooled pipe at any number of relays; a small read, under 4 KiB,
    /// or one when no pipe can be had is copied), `splice` (the same) or
    /// `copy` (through a pooled user-space buffer, never splicing). See
    /// [`RelayMode`].
    pub relay_mode: RelayMode,
    /// Carry out BIND requests (SOCKS4 and SOCKS5). When off they get `07` / `5B`.
    pub allow_bind: bool,
    /// IP address BIND listens on and reports. Default: the proxy's address
    /// on the route to the expected host, else the one the client reached.
    pub bind_address: Option<IpAddr>,
    /// Seconds BIND waits for the inbound connection.
    pub bind_timeout: u64,
    /// Ports a SOCKS 6 BIND may ask for (`"40000-40999"`); a request for a
    /// port outside them, or with none set, gets an ephemeral port (so no
    /// client can take 80, 443 or the metrics port).
    pub bind_ports: Option<crate::rules::PortRange>,
    /// Accept only the host named in the BIND request (when it names one);
    /// other hosts that connect are closed and BIND keeps waiting.
    pub bind_check_peer: bool,
    /// Carry out UDP ASSOCIATE. When off it gets `07`.
    pub allow_udp: bool,
    /// IP address of the UDP relay sockets (and reported to clients).
    /// Default: the address the client reached the proxy on.
    pub udp_address: Option<IpAddr>,
    /// Seconds without a datagram after which an association ends.
    pub udp_idle_timeout: u64,
    /// UDP associations at once, in all.
    pub max_udp_associations: usize,
    /// UDP associations at once from one client IP address.
    pub max_udp_per_client: usize,
    /// Largest datagram payload relayed (after reassembly); larger ones are
    /// dropped and counted.
    pub max_datagram: usize,
    /// Seconds a fragment sequence may take to complete (at least 5, RFC 1928).
    pub udp_reassembly_timeout: u64,
    /// Payload bytes one UDP association may hold while the names its
    /// datagrams are addressed to resolve; beyond it they are dropped and
    /// counted (`queue_full`).
    pub udp_lookup_queue_bytes: usize,
    /// The same, for all associations together: a slow resolver cannot make
    /// the proxy hold more than this.
    pub udp_lookup_queue_bytes_total: usize,
    /// Allow listening on a non-loopback address without authentication (an
    /// open proxy anyone who can reach it may use). Off by default: such a
    /// configuration is refused at start.
    pub allow_open_proxy: bool,
    /// Largest SOCKS 6 idempotence token window granted; 0 grants none
    /// (token requests are then ignored, as the draft allows).
    pub socks6_max_token_window: u32,
    /// How a SOCKS 6 request that begins with `06` is read: `auto` (draft
    /// -05 or -11 by its header), `draft-05` or `draft-11`. A first byte
    /// `CF` is always the reference dialect. Default `auto`.
    pub socks6_profile: Socks6Profile,
    /// `socks6_profile` for single listeners: `[socks6_profile_for]` with
    /// `"ADDR:PORT" = "draft-11"`; each address must be in `listen`. No
    /// command-line twin: it is a table.
    pub socks6_profile_for: BTreeMap<String, Socks6Profile>,
    /// SOCKS 6 sessions (-11 and the reference dialect) live this many
    /// seconds without a request, then end. Default 600.
    pub socks6_session_idle_timeout: u64,
    /// Most SOCKS 6 sessions alive; beyond it session requests are ignored
    /// (as the draft allows). 0: no sessions. Default 16384.
    pub socks6_max_sessions: usize,
    /// Most SOCKS 6 sessions one client address may hold. Default 64.
    pub socks6_max_sessions_per_address: usize,
    /// Access rules, in order; first match wins (see [`crate::rules`]).
    /// TOML: `[[rule]]` tables. With rules, what no rule matches is blocked.
    pub rule: Vec<crate::rules::Rule>,
    /// Per-user limits and settings, by user name (`[users.alice]`); the
    /// entry `"*"` applies to every user without one of their own. See
    /// [`crate::limits`]. No command-line twin: it is a table.
    pub users: crate::limits::UsersConfig,
    /// Serve Prometheus metrics over HTTP on this address (at `/metrics`).
    /// Default: none (no exporter, nothing collected). Read at start only.
    pub metrics: Option<SocketAddr>,
    /// Format of the log lines on stderr, the per-session access log
    /// included: `text` (the default) or `json` (one object per line).
    /// Read at start only.
    pub log_format: LogFormat,
    /// After binding every listener, switch to this user (by name): its uid,
    /// its primary group (unless `group` is set) and its supplementary
    /// groups. Needs root. Read at start only; files read later (a reload)
    /// must be readable by this user.
    pub user: Option<String>,
    /// After binding every listener, switch to this group (by name) as the
    /// primary group. With `user`, the user's supplementary groups are kept
    /// (as login does); alone, it becomes the only group. Needs root.
    pub group: Option<String>,
    /// Upstream proxies by name (`[upstream.NAME]` tables): a rule with
    /// `route = "NAME"` carries its requests out through that proxy. See
    /// [`crate::upstream`]. No command-line twin: it is a table, and only
    /// rules (which have none either) use it.
    pub upstream: BTreeMap<String, UpstreamConfig>,
    /// `[gateway]`: this server is a SOCKS 6 gateway (what `sixsocks
    /// gateway` runs): every request goes to the far SOCKS 6 proxy named
    /// here, through the upstream `gateway`, to which every passing rule
    /// routes. See [`GatewayConfig`].
    pub gateway: Option<GatewayConfig>,
}

/// How log lines are written (`log_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}` (expected text or json)"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1080))],
            users_file: None,
            lenient_auth: false,
            auth_failure_burst: crate::auth::Budget::default().burst,
            auth_failures_per_minute: crate::auth::Budget::default().per_minute,
            extended_errors: false,
            handshake_timeout: 10,
            connect_timeout: 30,
            resolve_timeout: 10,
            happy_eyeballs_delay_ms: 250,
            idle_timeout: 3600,
            max_clients: None,
            max_clients_per_address: 512,
            max_handshakes_per_address: 64,
            shutdown_grace: 10,
            threads: 0,
            relay_mode: RelayMode::default(),
            allow_bind: true,
            bind_address: None,
            bind_timeout: 120,
            bind_ports: None,
            bind_check_peer: true,
            allow_udp: true,
            udp_address: None,
            udp_idle_timeout: 120,
            max_udp_associations: 1024,
            max_udp_per_client: 16,
            max_datagram: sixsocks_proto::udp::MAX_UDP_PAYLOAD,
            udp_reassembly_timeout: 5,
            udp_lookup_queue_bytes: 256 * 1024,
            udp_lookup_queue_bytes_total: 16 * 1024 * 1024,
            allow_open_proxy: false,
            socks6_max_token_window: 1024,
            socks6_profile: Socks6Profile::Auto,
            socks6_profile_for: BTreeMap::new(),
            socks6_session_idle_timeout: 600,
            socks6_max_sessions: 16_384,
            socks6_max_sessions_per_address: 64,
            rule: Vec::new(),
            users: Default::default(),
            metrics: None,
            log_format: LogFormat::Text,
            user: None,
            group: None,
            upstream: BTreeMap::new(),
            gateway: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Most `threads` a configuration may ask for.
pub const MAX_THREADS: usize = 1024;

impl Config {
    /// The SOCKS 6 profile setting of the listener on `listener`.
    pub fn socks6_setting_for(&self, listener: SocketAddr) -> sixsocks_proto::v6::ProfileSetting {
        self.socks6_profile_for
            .iter()
            .find(|(a, _)| a.parse::<SocketAddr>().ok() == Some(listener))
            .map_or(self.socks6_profile, |(_, p)| *p)
            .setting()
    }

    /// How long a SOCKS 6 session lives without a request.
    pub fn socks6_session_idle(&self) -> Duration {
        Duration::from_secs(self.socks6_session_idle_timeout)
    }

    /// Parse a TOML document (no validation).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.apply_gateway()?;
        Ok(c)
    }

    /// With a `[gateway]` table: the upstream `gateway` is the far proxy
    /// (it replaces any table of that name), and every passing rule
    /// without a route routes there (a configuration without rules gets one
    /// that passes everything). Applying it twice changes nothing more.
    pub fn apply_gateway(&mut self) -> Result<(), String> {
        let Some(g) = &self.gateway else {
            return Ok(());
        };
        let proxy = sixsocks_client::Proxy::parse(&g.upstream)
            .map_err(|e| format!("[gateway] upstream: {e}"))?;
        if !proxy.scheme.is_socks6() {
            return Err(format!(
                "[gateway] upstream must be a socks6:// URL (the gateway speaks SOCKS 6 to it), \
                 not {}://",
                proxy.scheme
            ));
        }
        let mut up = UpstreamConfig::new(g.upstream.clone());
        up.optimistic = g.mode == GatewayMode::Optimistic;
        self.upstream.insert(GATEWAY_UPSTREAM.into(), up);
        if self.rule.is_empty() {
            self.rule = toml::from_str::<Config>("[[rule]]\naction = \"pass\"\n")
                .map_err(|e| e.to_string())?
                .rule;
        }
        for rule in &mut self.rule {
            if rule.action == crate::rules::Action::Pass && rule.route.is_none() {
                rule.route = Some(GATEWAY_UPSTREAM.into());
            }
        }
        Ok(())
    }

    /// Read and parse a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.listen.is_empty() {
            return bad("`listen` must name at least one address");
        }
        if self.threads > MAX_THREADS {
            return bad(&format!("`threads` may be at most {MAX_THREADS}"));
        }
        let rules = crate::rules::Rules::new(self.rule.clone());
        if self.users_file.is_none() && !self.allow_open_proxy && !rules.has_client_rule() {
            if let Some(open) = self.listen.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ConfigError::Invalid(format!(
                    "listening on {open} without authentication would make an open proxy that \
                     anyone who can reach that address may use; add a users file \
                     (--users-file / users_file), a rule that says which clients may use it \
                     ([[rule]] with `from`), listen on loopback only, or set \
                     allow_open_proxy = true (--allow-open-proxy) if that is really intended"
                )));
            }
        }
        rules
            .validate(|name| self.upstream_exists(name))
            .map_err(ConfigError::Invalid)?;
        for addr in self.socks6_profile_for.keys() {
            match addr.parse::<SocketAddr>() {
                Ok(a) if self.listen.contains(&a) => {}
                Ok(_) => {
                    return bad(&format!(
                        "`socks6_profile_for` names {addr}, which is not in `listen`"
                    ))
                }
                Err(_) => {
                    return bad(&format!(
                        "`socks6_profile_for`: {addr:?} is not an ADDR:PORT"
                    ))
                }
            }
        }
        if self.socks6_session_idle_timeout == 0 {
            return bad("`socks6_session_idle_timeout` must be at least 1 second");
        }
        if self.socks6_max_token_window >= 1 << 31 {
            return bad("`socks6_max_token_window` must be below 2^31");
        }
        if self.max_clients == Some(0) {
            return bad("`max_clients` must be at least 1");
        }
        if self.max_clients_per_address == 0 || self.max_handshakes_per_address == 0 {
            return bad(
                "`max_clients_per_address` and `max_handshakes_per_address` must be at least 1",
            );
        }
        if self.auth_failure_burst > 0 && self.auth_failures_per_minute == 0 {
            return bad(
                "`auth_failures_per_minute` must be at least 1 (or turn the throttle off \
                 with auth_failure_burst = 0)",
            );
        }
        if self.max_udp_associations == 0 || self.max_udp_per_client == 0 {
            return bad("UDP association limits must be at least 1");
        }
        if self.max_datagram == 0 || self.max_datagram > sixsocks_proto::udp::MAX_UDP_PAYLOAD {
            return bad("`max_datagram` must be between 1 and 65507");
        }
        if self.udp_lookup_queue_bytes == 0
            || self.udp_lookup_queue_bytes > self.udp_lookup_queue_bytes_total
        {
            return bad(
                "`udp_lookup_queue_bytes` must be at least 1 and at most `udp_lookup_queue_bytes_total`",
            );
        }
        if self.udp_reassembly_timeout < 5 {
            return bad("`udp_reassembly_timeout` must be at least 5 seconds (RFC 1928)");
        }
        if self.handshake_timeout == 0 || self.connect_timeout == 0 || self.resolve_timeout == 0 {
            return bad("handshake, connect and resolve timeouts must be at least 1 second");
        }
        crate::limits::validate(&self.users).map_err(ConfigError::Invalid)?;
        if self.metrics.is_some_and(|a| a.port() == 0) {
            return bad("`metrics` needs a fixed port (port 0 would pick one nobody knows)");
        }
        if self.user.as_deref() == Some("") || self.group.as_deref() == Some("") {
            return bad("`user` and `group` must not be empty");
        }
        for (name, upstream) in &self.upstream {
            upstream
                .check(name, &self.listen)
                .map_err(ConfigError::Invalid)?;
        }
        for (i, r) in self.rule.iter().enumerate() {
            if let Some(route) = &r.route {
                if r.source.is_some() || r.mark.is_some() || r.prefer.is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "rule {}: source, mark and prefer do not apply to requests routed \
                         through upstream {route:?} (sixsocks does not connect to their targets)",
                        i + 1
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether `[upstream.NAME]` is configured.
    pub fn upstream_exists(&self, name: &str) -> bool {
        self.upstream.contains_key(name)
    }

    /// The failed-login budget per client address.
    pub fn auth_budget(&self) -> crate::auth::Budget {
        crate::auth::Budget {
            burst: self.auth_failure_burst,
            per_minute: self.auth_failures_per_minute,
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }
    pub fn resolve_timeout(&self) -> Duration {
        Duration::from_secs(self.resolve_timeout)
    }
    pub fn happy_eyeballs_delay(&self) -> Duration {
        Duration::from_millis(self.happy_eyeballs_delay_ms)
    }
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }
    pub fn bind_timeout(&self) -> Duration {
        Duration::from_secs(self.bind_timeout)
    }
    pub fn udp_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.udp_idle_timeout.max(1))
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// The threads to serve on: `threads`, or one per core when it is 0.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => crate::cores::default_threads(),
            n => n,
        }
    }
}

/// The first TOML example of a README section, parsed and validated (for
/// the tests that keep the README's examples true).
#[cfg(test)]
pub(crate) fn readme_example(heading: &str) -> Config {
    let readme = include_str!("../../README.md");
    let block = readme
        .split(heading)
        .nth(1)
        .and_then(|s| s.split("```toml").nth(1))
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("README section {heading} has a TOML example"));
    let cfg = Config::from_toml(block).unwrap_or_else(|e| panic!("{heading}: {e}"));
    cfg.validate().unwrap_or_else(|e| panic!("{heading}: {e}"));
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults_where_commented_so() {
        let text = include_str!("../../sixsocks.example.toml");
        let cfg = Config::from_toml(text).expect("example config parses");
        cfg.validate().expect("example config is valid");
        assert_eq!(cfg.listen.len(), 2, "the example listens on IPv4 and IPv6");
        assert_eq!(cfg.handshake_timeout, Config::default().handshake_timeout);
        assert!(cfg.users.contains_key(crate::limits::ANY_USER));
        let tor = &cfg.upstream["tor"];
        assert!(tor.url.starts_with("socks5h://") && tor.pass_credentials);
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        assert_eq!(
            Config::default().listen,
            vec!["127.0.0.1:1080".parse().unwrap()]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::from_toml("listn = [\"127.0.0.1:1\"]").unwrap_err();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn an_open_proxy_is_refused_unless_asked_for() {
        let open = Config {
            listen: vec!["0.0.0.0:1080".parse().unwrap()],
            ..Config::default()
        };
        let e = open.validate().unwrap_err().to_string();
        assert!(
            e.contains("open proxy") && e.contains("allow_open_proxy"),
            "{e}"
        );
        let v6 = Config {
            listen: vec!["[::]:1080".parse().unwrap()],
            ..Config::default()
        };
        assert!(v6.validate().is_err());
        let asked = Config {
            allow_open_proxy: true,
            ..open.clone()
        };
        asked.validate().unwrap();
        let with_users = Config {
            users_file: Some("/etc/sixsocks/users".into()),
            ..open
        };
        with_users.validate().unwrap();
        Config::default().validate().unwrap();
        // A rule restricting clients by address is not an open proxy.
        let with_client_rule = Config::from_toml(
            "listen = [\"0.0.0.0:1080\"]\n[[rule]]\naction = \"pass\"\nfrom = [\"192.0.2.0/24\"]\n",
        )
        .unwrap();
        with_client_rule.validate().unwrap();
        // A rule about destinations only does not restrict clients.
        let dest_rule = Config::from_toml(
            "listen = [\"0.0.0.0:1080\"]\n[[rule]]\naction = \"pass\"\nport = [443]\n",
        )
        .unwrap();
        assert!(dest_rule.validate().is_err());
    }

    #[test]
    fn operations_keys() {
        let cfg = Config::from_toml(
            "metrics = \"127.0.0.1:9100\"\nlog_format = \"json\"\nuser = \"nobody\"\ngroup = \"nogroup\"\n",
        )
        .unwrap();
        assert_eq!(cfg.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.user.as_deref(), Some("nobody"));
        assert_eq!(cfg.group.as_deref(), Some("nogroup"));
        cfg.validate().unwrap();
        let e = Config::from_toml("log_format = \"xml\"").unwrap_err();
        assert!(e.contains("xml") || e.contains("variant"), "{e}");
        let port0 = Config {
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        assert!(port0.validate().is_err());
        let empty = Config {
            user: Some(String::new()),
            ..Config::default()
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn readme_operations_examples_parse() {
        let cfg = readme_example("### Logging");
        assert_eq!(cfg.log_format, LogFormat::Json);
        let cfg = readme_example("### Metrics");
        assert!(cfg.metrics.is_some());
        let cfg = readme_example("### Running as a service / dropping privileges");
        assert!(cfg.user.is_some() && cfg.group.is_some());
    }

    #[test]
    fn upstreams_parse_and_bad_ones_are_named() {
        let cfg = Config::from_toml(
            "[upstream.tor]\nurl = \"socks5h://127.0.0.1:9050\"\npass_credentials = true\n\
             [upstream.b]\nurl = \"socks6://u:p@127.0.0.1:1081\"\nconnect_timeout = 5\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let tor = &cfg.upstream["tor"];
        assert_eq!(tor.url, "socks5h://127.0.0.1:9050");
        assert!(tor.pass_credentials);
        assert_eq!(tor.connect_timeout, None);
        assert_eq!(cfg.upstream["b"].connect_timeout, Some(5));

        let e =
            Config::from_toml("[upstream.x]\nurl = \"socks5h://a:1\"\nuser = \"u\"\n").unwrap_err();
        assert!(e.contains("user"), "{e}");
        let routed = Config::from_toml(
            "[[rule]]\naction = \"pass\"\nroute = \"tor\"\nmark = 7\n\
             [upstream.tor]\nurl = \"socks5h://127.0.0.1:9050\"\n",
        )
        .unwrap();
        let e = routed.validate().unwrap_err().to_string();
        assert!(e.contains("rule 1") && e.contains("mark"), "{e}");
        let unknown = Config::from_toml("[[rule]]\naction = \"pass\"\nroute = \"tor\"\n").unwrap();
        let e = unknown.validate().unwrap_err().to_string();
        assert!(e.contains("[upstream.tor]"), "{e}");
        let bad = Config::from_toml("[upstream.web]\nurl = \"http://127.0.0.1:3128\"\n").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("upstream \"web\"") && e.contains("http"), "{e}");
    }

    #[test]
    fn the_failed_login_budget() {
        let cfg = Config::default();
        assert_eq!(
            (cfg.auth_failure_burst, cfg.auth_failures_per_minute),
            (10, 10)
        );
        let cfg =
            Config::from_toml("auth_failure_burst = 3\nauth_failures_per_minute = 2\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.auth_budget(),
            crate::auth::Budget {
                burst: 3,
                per_minute: 2
            }
        );
        let off =
            Config::from_toml("auth_failure_burst = 0\nauth_failures_per_minute = 0\n").unwrap();
        off.validate().unwrap();
        let readme = readme_example("### Users and passwords");
        assert_eq!(readme.auth_budget(), crate::auth::Budget::default());
        let never_refills = Config::from_toml("auth_failures_per_minute = 0\n").unwrap();
        let e = never_refills.validate().unwrap_err().to_string();
        assert!(e.contains("auth_failures_per_minute"), "{e}");
    }

    #[test]
    fn validation_rejects_nonsense() {
        let cfg = Config {
            max_clients: Some(0),
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = Config {
            listen: vec![],
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }
}

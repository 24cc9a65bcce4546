//! What a session works with: the state every session shares (one
//! generation of the configuration, and the live state handed from one
//! generation to the next) and the session's own record, which its log
//! line reports.

use std::net::SocketAddr;
use std::sync::Arc;

use sixsocks_proto::http;
use sixsocks_proto::server::HandshakeConfig;
use sixsocks_proto::v6::Socks6Limits;
use sixsocks_proto::{Command, Credentials, ReplyCode, TargetAddr, Version};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::relay::Counters;
use crate::resolve::Resolver;
use crate::rules::{Dest, Facts, Rules, VersionMatch};
use crate::upstream::Upstreams;

/// What every session needs, shared by all of them: one *generation*,
/// built from one configuration. A reload (SIGHUP) builds the next
/// generation with [`Shared::next`]; sessions keep the generation they
/// started with, new sessions get the new one. The `Arc` fields are state
/// that must outlive a generation and are handed from one to the next.
pub struct Shared {
    pub config: Config,
    pub auth: Authenticator,
    /// The access rules of this generation.
    pub rules: Rules,
    /// The upstream proxies rules route through (`[upstream.NAME]`).
    pub upstreams: Upstreams,
    /// Name resolution; its thread pool and per-client shares survive
    /// reloads (hung lookups keep their places).
    pub resolver: Resolver,
    pub handshake: HandshakeConfig,
    /// SOCKS 6 caps on options and initial data.
    pub socks6_limits: Socks6Limits,
    /// Most bytes buffered during a handshake: the largest message (a SOCKS 6
    /// request with its options and initial data, or an HTTP head) plus the
    /// optimistic data that may follow it. More stays in the kernel's buffer.
    pub handshake_buf: usize,
    /// Connections and handshakes per client address (survive reloads).
    pub address_limits: Arc<crate::address_limits::AddressLimits>,
    /// UDP associations alive (survives reloads).
    pub udp_limits: Arc<crate::udp_relay::limits::AssociationLimits>,
    /// SOCKS 6 idempotence token windows (survive reloads).
    pub tokens: Arc<crate::socks6::tokens::TokenStore>,
    /// SOCKS 6 BIND listeners with a backlog (survive reloads).
    pub backlogs: Arc<crate::socks6::backlog::Backlogs>,
    /// Addresses of live BIND listeners: own sockets too (survive reloads).
    pub bound: Arc<crate::bind_sockets::BoundSockets>,
    /// The addresses the server listens on: never a target (no loops).
    pub own_addrs: Arc<Vec<SocketAddr>>,
    /// Live users: session counts and shared bandwidth buckets. Must outlive
    /// configuration reloads (apply new settings with `UserTable::apply`).
    pub users: Arc<crate::limits::UserTable>,
}

impl Shared {
    /// The first generation. `config` must have been validated.
    pub fn new(config: Config, auth: Authenticator) -> Self {
        Self::build(config, auth, None)
    }

    /// The next generation after a reload: new configuration, users and
    /// rules; the live state (UDP association counts, per-address counts,
    /// SOCKS 6 tokens and backlogs, live BIND listeners, own addresses, the
    /// resolver's pool, live users with their new limits) carried over.
    pub fn next(&self, config: Config, auth: Authenticator) -> Self {
        Self::build(config, auth, Some(self))
    }

    fn build(config: Config, auth: Authenticator, prev: Option<&Shared>) -> Self {
        let handshake = HandshakeConfig {
            require_auth: auth.required(),
            lenient_auth: config.lenient_auth,
        };
        let users = match prev {
            Some(p) => {
                p.users.apply(&config.users);
                p.users.clone()
            }
            None => Arc::new(crate::limits::UserTable::new(config.users.clone())),
        };
        Shared {
            users,
            resolver: prev.map_or_else(
                || Resolver::new(config.resolve_timeout()),
                |p| p.resolver.with_timeout(config.resolve_timeout()),
            ),
            rules: Rules::new(config.rule.clone()),
            udp_limits: prev.map_or_else(Arc::default, |p| p.udp_limits.clone()),
            address_limits: prev.map_or_else(Arc::default, |p| p.address_limits.clone()),
            tokens: prev.map_or_else(
                || {
                    Arc::new(crate::socks6::tokens::TokenStore::new(
                        config.socks6_max_token_window,
                    ))
                },
                |p| p.tokens.clone(),
            ),
            backlogs: prev.map_or_else(Arc::default, |p| p.backlogs.clone()),
            bound: prev.map_or_else(Arc::default, |p| p.bound.clone()),
            own_addrs: prev.map_or_else(Arc::default, |p| p.own_addrs.clone()),
            upstreams: Upstreams::from_config(&config),
            config,
            auth,
            handshake,
            socks6_limits: Socks6Limits::default(),
            handshake_buf: http::MAX_HTTP_HEAD.max(Socks6Limits::default().max_request_bytes_any()),
        }
    }
}

/// The protocol a session speaks, once its first bytes tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Socks4,
    Socks4a,
    Socks5,
    Socks6,
}

impl Protocol {
    /// Its name in logs and metrics (`socks4`, `socks4a`, `socks5`, `socks6`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Socks4 => "socks4",
            Protocol::Socks4a => "socks4a",
            Protocol::Socks5 => "socks5",
            Protocol::Socks6 => "socks6",
        }
    }

    /// How rules name it.
    pub fn rule_name(self) -> VersionMatch {
        match self {
            Protocol::Socks4 => VersionMatch::Socks4,
            Protocol::Socks4a => VersionMatch::Socks4a,
            Protocol::Socks5 => VersionMatch::Socks5,
            Protocol::Socks6 => VersionMatch::Socks6,
        }
    }
}

impl From<Version> for Protocol {
    fn from(v: Version) -> Protocol {
        match v {
            Version::V4 => Protocol::Socks4,
            Version::V4a => Protocol::Socks4a,
            Version::V5 => Protocol::Socks5,
        }
    }
}

/// Everything the session's log line reports.
pub(crate) struct Record {
    /// The client's address and the listener it came in on.
    pub(crate) client: SocketAddr,
    pub(crate) listener: SocketAddr,
    pub(crate) version: Option<Protocol>,
    pub(crate) credentials: Credentials,
    pub(crate) command: Option<Command>,
    pub(crate) target: Option<TargetAddr>,
    pub(crate) reply: Option<ReplyCode>,
    pub(crate) counters: Counters,
    pub(crate) outcome: Option<String>,
    /// The user's admission (per-user limits), held until the session ends.
    pub(crate) admission: Option<crate::limits::UserSession>,
    /// The user name a login tried (the log line names it when the login
    /// failed and no request came).
    pub(crate) tried_user: Option<Vec<u8>>,
    /// The client address's connection place (and handshake place until
    /// the request is read): per-address limits.
    pub(crate) place: Option<crate::address_limits::Admitted>,
}

impl Record {
    /// A session's record from its start: the client, the listener it came
    /// in on, and its place under the per-address limits.
    pub(crate) fn new(
        client: SocketAddr,
        listener: SocketAddr,
        place: Option<crate::address_limits::Admitted>,
    ) -> Self {
        Record {
            client,
            listener,
            version: None,
            credentials: Credentials::None,
            command: None,
            target: None,
            reply: None,
            counters: Counters::default(),
            outcome: None,
            admission: None,
            tried_user: None,
            place,
        }
    }

    /// The authenticated user name, if the client authenticated against the
    /// users file (without one, any credentials are accepted unverified and
    /// do not count as a user for rules and limits).
    pub(crate) fn user<'a>(&'a self, shared: &Shared) -> Option<&'a str> {
        match &self.credentials {
            Credentials::UserPass { username, .. } if shared.auth.required() => {
                std::str::from_utf8(username).ok()
            }
            _ => None,
        }
    }

    /// The user name for the log line: the credentials of the request, or
    /// the name a failed login tried; `-` without either.
    pub(crate) fn user_display(&self) -> String {
        match (&self.credentials, &self.tried_user) {
            (Credentials::None, Some(tried)) => {
                String::from_utf8_lossy(tried).escape_debug().to_string()
            }
            (creds, _) => creds.user_display(),
        }
    }

    /// What the rules may match on, with `dest` as the destination.
    pub(crate) fn facts<'a>(&'a self, shared: &Shared, dest: Dest<'a>) -> Facts<'a> {
        Facts {
            client: Some(self.client.ip()),
            listener: Some(self.listener),
            version: self.version.map(Protocol::rule_name),
            user: Some(self.user(shared)),
            command: self.command,
            dest,
        }
    }
}

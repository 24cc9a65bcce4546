//! What a session works with: the state every session shares (one
//! generation of the configuration, and the live state handed from one
//! generation to the next) and the session's own record, which its log
//! line reports.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use sixsocks_proto::server::HandshakeConfig;
use sixsocks_proto::v6::{ExpenditureCode, Socks6Limits};
use sixsocks_proto::{Command, Credentials, ReplyCode, TargetAddr, Version};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::RequestError;
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
    /// Connections and handshakes per client address (survive reloads).
    pub address_limits: Arc<crate::address_limits::AddressLimits>,
    /// UDP associations alive (survives reloads).
    pub udp_limits: Arc<crate::udp_relay::limits::AssociationLimits>,
    /// SOCKS 6 idempotence token windows (survive reloads).
    pub tokens: Arc<crate::socks6::tokens::TokenStore>,
    /// SOCKS 6 sessions (-11 and the reference dialect; survive reloads).
    pub sessions: Arc<crate::socks6::sessions::SessionStore>,
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
            sessions: prev.map_or_else(
                || {
                    Arc::new(crate::socks6::sessions::SessionStore::new(
                        config.socks6_max_token_window,
                    ))
                },
                |p| p.sessions.clone(),
            ),
            backlogs: prev.map_or_else(Arc::default, |p| p.backlogs.clone()),
            bound: prev.map_or_else(Arc::default, |p| p.bound.clone()),
            own_addrs: prev.map_or_else(Arc::default, |p| p.own_addrs.clone()),
            upstreams: Upstreams::from_config(&config),
            config,
            auth,
            handshake,
            socks6_limits: Socks6Limits::default(),
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
    /// The client's address and the listener it came in on (shared by the
    /// listener's sessions: every idle one holds its record).
    pub(crate) client: SocketAddr,
    pub(crate) listener: Arc<SocketAddr>,
    pub(crate) version: Option<Protocol>,
    pub(crate) credentials: Credentials,
    pub(crate) command: Option<Command>,
    pub(crate) target: Option<TargetAddr>,
    pub(crate) reply: Option<ReplyCode>,
    pub(crate) counters: Counters,
    /// How the session ended, when not plainly (`ok`), and what else only
    /// a failed session tells. Boxed: most sessions carry none, and every
    /// idle one holds its record.
    pub(crate) ended: Option<Box<Ended>>,
    /// The user's admission (per-user limits), held until the session ends.
    pub(crate) admission: Option<crate::limits::UserSession>,
    /// The client address's connection place (and handshake place until
    /// the request is read): per-address limits.
    pub(crate) place: Option<crate::address_limits::Admitted>,
}

impl Record {
    /// A session's record from its start: the client, the listener it came
    /// in on, and its place under the per-address limits.
    pub(crate) fn new(
        client: SocketAddr,
        listener: Arc<SocketAddr>,
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
            ended: None,
            admission: None,
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
        let tried = self.ended.as_ref().and_then(|e| e.tried_user.as_ref());
        match (&self.credentials, tried) {
            (Credentials::None, Some(tried)) => {
                String::from_utf8_lossy(tried).escape_debug().to_string()
            }
            (creds, _) => creds.user_display(),
        }
    }

    /// Record how the session ended (the last word wins).
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.ended.get_or_insert_with(Default::default).outcome = Some(outcome);
    }

    /// How the session ended, if not plainly.
    pub(crate) fn outcome(&self) -> Option<&Outcome> {
        self.ended.as_ref()?.outcome.as_ref()
    }

    /// The user name a login tried, for the log line of a session that got
    /// no further (its credentials then name nobody).
    pub(crate) fn set_tried_user(&mut self, name: Vec<u8>) {
        self.ended.get_or_insert_with(Default::default).tried_user = Some(name);
    }

    /// Who a SOCKS 6 token window or BIND backlog belongs to: the user the
    /// users file verified, or else the client's address. A name that
    /// nothing verified (no users file: any name is accepted) is no
    /// identity: anyone could claim it and spend, reset or take what belongs
    /// to another.
    pub(crate) fn owner_key(&self, shared: &Shared) -> Vec<u8> {
        match self.user(shared) {
            Some(u) => [b"u:".as_slice(), u.as_bytes()].concat(),
            None => format!("a:{}", crate::destination::canonical(self.client.ip())).into_bytes(),
        }
    }

    /// What the rules may match on, with `dest` as the destination.
    pub(crate) fn facts<'a>(&'a self, shared: &Shared, dest: Dest<'a>) -> Facts<'a> {
        Facts {
            client: Some(self.client.ip()),
            listener: Some(*self.listener),
            version: self.version.map(Protocol::rule_name),
            user: Some(self.user(shared)),
            command: self.command,
            dest,
        }
    }
}

/// What a session that did not end plainly tells its log line.
#[derive(Default)]
pub(crate) struct Ended {
    outcome: Option<Outcome>,
    /// The user name a login tried (the log line names it when the login
    /// failed and no request came).
    tried_user: Option<Vec<u8>>,
}

/// How a session ended, for the `outcome` field of its log line (`ok`
/// when none was recorded). The text each renders is part of the log
/// format: tests and operators grep it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handshake ended without a request.
    Handshake(HandshakeEnd),
    /// The request was refused, or failed before its success reply.
    Failed(RequestError),
    /// SOCKS 6: an idempotence token was offered and not spent.
    TokenRefused(Option<ExpenditureCode>),
    /// SOCKS 6: the authentication reply could not be encoded.
    AuthReplyUnencodable,
    /// SOCKS 6 (-11): the request named a session that does not exist (or
    /// expired); answered "session invalid".
    SessionInvalid,
    /// SOCKS 6: DNS provided by SOCKS, this many queries answered (and
    /// this many of them refused by the rules).
    DnsService { queries: usize, refused: usize },
    /// SOCKS 6: the client left before the authentication reply.
    GoneBeforeAuthReply,
    /// SOCKS4/5 CONNECT: the client left before or after the success reply.
    ClientGone {
        after_reply: bool,
        error: std::io::Error,
    },
    /// CONNECT through this upstream (`[upstream.NAME]`).
    ViaUpstream(String),
    /// An optimistic CONNECT (answered before the upstream) that then
    /// failed: the client's connection was reset.
    OptimisticReset(RequestError),
    /// SOCKS 6 CONNECT: its initial data and the stack options applied.
    InitialData {
        bytes: usize,
        tfo: bool,
        mptcp: bool,
        tos: Option<u8>,
    },
    /// RESOLVE / RESOLVE_PTR: the answer sent.
    Answer(TargetAddr),
    /// SOCKS4/5 BIND: listening, first reply sent.
    BindListening(SocketAddr),
    /// BIND: the client closed while waiting for the inbound connection.
    BindClientClosed,
    /// BIND: `peer` connected (SOCKS4/5 also say where: `on`).
    BindAccepted {
        on: Option<SocketAddr>,
        peer: SocketAddr,
    },
    /// SOCKS 6 BIND with a listen backlog, listening on `bound`.
    Backlog { granted: u16, bound: SocketAddr },
    /// The same, closed after `idle_secs` without use.
    BacklogIdle {
        granted: u16,
        bound: SocketAddr,
        idle_secs: u64,
    },
    /// The relay ended other than by both sides closing: idle (`error`
    /// `None`) or an error. `bind_peer`: a BIND's inbound peer.
    Relay {
        bind_peer: Option<SocketAddr>,
        error: Option<std::io::Error>,
    },
    /// A UDP association ended.
    Udp(UdpSummary),
}

/// Why a handshake ended without a request (the handshake driver says).
#[derive(Debug)]
pub(crate) enum HandshakeEnd {
    /// The protocol machine refused; its reply was sent.
    Refused(sixsocks_proto::ProtoError),
    /// The SOCKS 6 part of the machine refused; its reply was sent.
    Socks6(sixsocks_proto::ProtoError),
    /// The client closed (or reset) before finishing.
    Eof,
    Timeout,
    Io(std::io::Error),
}

impl fmt::Display for HandshakeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeEnd::Refused(e) => write!(f, "handshake refused: {e}"),
            HandshakeEnd::Socks6(e) => write!(f, "socks6 handshake refused: {e}"),
            HandshakeEnd::Eof => f.write_str("client closed during handshake"),
            HandshakeEnd::Timeout => f.write_str("handshake timed out"),
            HandshakeEnd::Io(e) => write!(f, "handshake i/o error: {e}"),
        }
    }
}

/// What a UDP association did, for its log line.
#[derive(Debug)]
pub(crate) struct UdpSummary {
    /// The relay socket's address.
    pub(crate) relay: SocketAddr,
    /// Why it ended (`idle timeout`, `control connection closed`, ...).
    pub(crate) end: String,
    pub(crate) to_remote: u64,
    pub(crate) to_client: u64,
    pub(crate) dropped: u64,
    /// Why the first dropped datagram was dropped.
    pub(crate) first_drop: Option<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Handshake(end) => write!(f, "{end}"),
            Outcome::Failed(e) => write!(f, "{e}"),
            Outcome::TokenRefused(spend) => write!(f, "idempotence token refused ({spend:?})"),
            Outcome::AuthReplyUnencodable => f.write_str("cannot encode the authentication reply"),
            Outcome::SessionInvalid => f.write_str("unknown or expired socks6 session"),
            Outcome::DnsService { queries, refused } => {
                write!(f, "dns service: {queries} queries, {refused} refused")
            }
            Outcome::GoneBeforeAuthReply => {
                f.write_str("client gone before the authentication reply")
            }
            Outcome::ClientGone { after_reply, error } => {
                let when = if *after_reply { "after" } else { "before" };
                write!(f, "client gone {when} the reply: {error}")
            }
            Outcome::ViaUpstream(name) => write!(f, "via upstream {name}"),
            Outcome::OptimisticReset(e) => {
                write!(f, "answered optimistically, then reset: {e}")
            }
            Outcome::InitialData {
                bytes,
                tfo,
                mptcp,
                tos,
            } => {
                write!(f, "initial data {bytes} bytes")?;
                if *tfo {
                    f.write_str(", tfo")?;
                }
                if *mptcp {
                    f.write_str(", mptcp")?;
                }
                match tos {
                    Some(t) => write!(f, ", tos {t:#04x}"),
                    None => Ok(()),
                }
            }
            Outcome::Answer(answer) => write!(f, "answer {answer}"),
            Outcome::BindListening(bound) => write!(f, "bind listening on {bound}"),
            Outcome::BindClientClosed => f.write_str("client closed while waiting for the bind"),
            Outcome::BindAccepted { on: Some(on), peer } => {
                write!(f, "bind on {on} accepted {peer}")
            }
            Outcome::BindAccepted { on: None, peer } => write!(f, "bind accepted {peer}"),
            Outcome::Backlog { granted, bound } => write!(f, "bind backlog {granted} on {bound}"),
            Outcome::BacklogIdle {
                granted,
                bound,
                idle_secs,
            } => write!(
                f,
                "bind backlog {granted} on {bound}: idle for {idle_secs}s, closed"
            ),
            Outcome::Relay { bind_peer, error } => {
                if let Some(peer) = bind_peer {
                    write!(f, "bind from {peer}: ")?;
                }
                match error {
                    None => f.write_str("idle timeout"),
                    Some(e) => write!(f, "relay ended: {e}"),
                }
            }
            Outcome::Udp(u) => {
                write!(
                    f,
                    "udp {}: {}; datagrams to remote {}, to client {}, dropped {}",
                    u.relay, u.end, u.to_remote, u.to_client, u.dropped
                )?;
                match &u.first_drop {
                    Some(why) if u.dropped > 0 => write!(f, " (first: {why})"),
                    _ => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each outcome renders the text the log line has always had (the
    /// `format!` each replaced, spelled out).
    #[test]
    fn outcomes_render_the_log_texts() {
        let a: SocketAddr = "192.0.2.1:1080".parse().unwrap();
        let b: SocketAddr = "[2001:db8::2]:40000".parse().unwrap();
        let io = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let io_text = io().to_string();
        let cases: Vec<(Outcome, String)> =
            vec![
            (
                Outcome::Handshake(HandshakeEnd::Timeout),
                "handshake timed out".into(),
            ),
            (
                Outcome::Failed(RequestError::HostUnreachable),
                "host unreachable".into(),
            ),
            (
                Outcome::TokenRefused(Some(ExpenditureCode(2))),
                format!("idempotence token refused ({:?})", Some(ExpenditureCode(2))),
            ),
            (
                Outcome::TokenRefused(None),
                "idempotence token refused (None)".into(),
            ),
            (
                Outcome::AuthReplyUnencodable,
                "cannot encode the authentication reply".into(),
            ),
            (
                Outcome::SessionInvalid,
                "unknown or expired socks6 session".into(),
            ),
            (
                Outcome::DnsService {
                    queries: 3,
                    refused: 1,
                },
                "dns service: 3 queries, 1 refused".into(),
            ),
            (
                Outcome::GoneBeforeAuthReply,
                "client gone before the authentication reply".into(),
            ),
            (
                Outcome::ClientGone {
                    after_reply: false,
                    error: io(),
                },
                format!("client gone before the reply: {io_text}"),
            ),
            (
                Outcome::ClientGone {
                    after_reply: true,
                    error: io(),
                },
                format!("client gone after the reply: {io_text}"),
            ),
            (
                Outcome::ViaUpstream("tor".into()),
                "via upstream tor".into(),
            ),
            (
                Outcome::InitialData {
                    bytes: 5,
                    tfo: false,
                    mptcp: false,
                    tos: None,
                },
                "initial data 5 bytes".into(),
            ),
            (
                Outcome::InitialData {
                    bytes: 0,
                    tfo: true,
                    mptcp: true,
                    tos: Some(0x10),
                },
                "initial data 0 bytes, tfo, mptcp, tos 0x10".into(),
            ),
            (
                Outcome::InitialData {
                    bytes: 1,
                    tfo: false,
                    mptcp: false,
                    tos: Some(4),
                },
                "initial data 1 bytes, tos 0x04".into(),
            ),
            (
                Outcome::Answer(TargetAddr::domain("example.org".to_string(), 0)),
                format!("answer {}", TargetAddr::domain("example.org".to_string(), 0)),
            ),
            (
                Outcome::Answer(TargetAddr::from(a)),
                format!("answer {}", TargetAddr::from(a)),
            ),
            (
                Outcome::BindListening(a),
                "bind listening on 192.0.2.1:1080".into(),
            ),
            (
                Outcome::BindClientClosed,
                "client closed while waiting for the bind".into(),
            ),
            (
                Outcome::BindAccepted {
                    on: Some(a),
                    peer: b,
                },
                "bind on 192.0.2.1:1080 accepted [2001:db8::2]:40000".into(),
            ),
            (
                Outcome::BindAccepted { on: None, peer: b },
                "bind accepted [2001:db8::2]:40000".into(),
            ),
            (
                Outcome::Backlog {
                    granted: 4,
                    bound: a,
                },
                "bind backlog 4 on 192.0.2.1:1080".into(),
            ),
            (
                Outcome::BacklogIdle {
                    granted: 4,
                    bound: a,
                    idle_secs: 30,
                },
                "bind backlog 4 on 192.0.2.1:1080: idle for 30s, closed".into(),
            ),
            (
                Outcome::Relay {
                    bind_peer: None,
                    error: None,
                },
                "idle timeout".into(),
            ),
            (
                Outcome::Relay {
                    bind_peer: None,
                    error: Some(io()),
                },
                format!("relay ended: {io_text}"),
            ),
            (
                Outcome::Relay {
                    bind_peer: Some(b),
                    error: None,
                },
                "bind from [2001:db8::2]:40000: idle timeout".into(),
            ),
            (
                Outcome::Relay {
                    bind_peer: Some(b),
                    error: Some(io()),
                },
                format!("bind from [2001:db8::2]:40000: relay ended: {io_text}"),
            ),
            (
                Outcome::Udp(UdpSummary {
                    relay: a,
                    end: "idle timeout".into(),
                    to_remote: 3,
                    to_client: 2,
                    dropped: 0,
                    first_drop: Some("not from the client".into()),
                }),
                "udp 192.0.2.1:1080: idle timeout; datagrams to remote 3, to client 2, dropped 0"
                    .into(),
            ),
            (
                Outcome::Udp(UdpSummary {
                    relay: a,
                    end: "control connection closed".into(),
                    to_remote: 0,
                    to_client: 0,
                    dropped: 1,
                    first_drop: Some("not from the client".into()),
                }),
                "udp 192.0.2.1:1080: control connection closed; datagrams to remote 0, \
                 to client 0, dropped 1 (first: not from the client)"
                    .into(),
            ),
        ];
        for (outcome, text) in cases {
            assert_eq!(outcome.to_string(), text, "{outcome:?}");
        }
    }
}

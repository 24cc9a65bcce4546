//! One client session: handshake, command, relay, and the log line that
//! says what happened.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sixsocks_proto::server::{Dispatch, HandshakeConfig, ServerHandshake, Step};
use sixsocks_proto::v6::server::{Socks6Handshake, Step as V6Step};
use sixsocks_proto::v6::{Socks6Limits, Socks6Request};
use sixsocks_proto::{
    http, Command, Credentials, Host, ProtoError, ReplyCode, Request, TargetAddr, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::connect::{happy_eyeballs_with, SocketOptions};
use crate::destination;
use crate::error::RequestError;
use crate::relay::{relay, Counters, RelayEnd};
use crate::resolve::Resolver;
use crate::rules::{Dest, Facts, Family, Rule, Rules, Verdict};
use crate::upstream::{Upstream, Upstreams};

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
            handshake_buf: http::MAX_HTTP_HEAD.max(Socks6Limits::default().max_request_bytes()),
        }
    }
}

/// Everything the session's log line reports.
pub(crate) struct Record {
    /// The client's address and the listener it came in on.
    pub(crate) client: SocketAddr,
    pub(crate) listener: SocketAddr,
    pub(crate) version: Option<&'static str>,
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
    fn user_display(&self) -> String {
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
            version: self.version.and_then(crate::rules::version_of),
            user: Some(self.user(shared)),
            command: self.command,
            dest,
        }
    }
}

/// Check a request against the rules; a block is an error (`02` / `5B`).
/// `Undecided` comes back only for a name not resolved yet (or a UDP
/// association, whose datagrams are checked one by one).
pub(crate) fn check_rules<'s>(
    shared: &'s Shared,
    rec: &Record,
    dest: Dest<'_>,
) -> Result<Verdict<'s>, RequestError> {
    let verdict = shared.rules.decide(&rec.facts(shared, dest), "request");
    match verdict {
        Verdict::Block(_) => Err(RequestError::Blocked(verdict.reason())),
        v => Ok(v),
    }
}

/// The addresses of a resolved name that the rules let through, and the
/// rule that passed the first of them. Blocked if none is left.
pub(crate) fn check_addresses<'s>(
    shared: &'s Shared,
    rec: &Record,
    name: Option<&str>,
    addrs: Vec<IpAddr>,
    port: u16,
) -> Result<(Vec<IpAddr>, Option<&'s Rule>), RequestError> {
    let mut kept = Vec::with_capacity(addrs.len());
    let mut first_rule = None;
    let mut first_block = None;
    for ip in addrs {
        let dest = Dest::Addr { name, ip, port };
        match check_rules(shared, rec, dest) {
            Ok(v) => {
                if kept.is_empty() {
                    first_rule = v.rule();
                }
                kept.push(ip);
            }
            Err(e) => {
                first_block.get_or_insert(e);
            }
        }
    }
    match (kept.is_empty(), first_block) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(RequestError::HostUnreachable),
        (false, _) => Ok((kept, first_rule)),
    }
}

/// Outbound socket options: what the deciding rule asks for; the source
/// address, when the rule names none, from the user's `[users]` entry.
fn egress_of(
    rule: Option<&Rule>,
    shared: &Shared,
    rec: &Record,
) -> (SocketOptions, Option<Family>) {
    let mut opts = SocketOptions::default();
    let mut prefer = None;
    if let Some(r) = rule {
        opts.source = r.source;
        opts.mark = r.mark;
        prefer = r.prefer;
    }
    if opts.source.is_none() {
        if let Some(user) = rec.user(shared) {
            opts.source = crate::limits::settings_for(&shared.config.users, user.as_bytes())
                .and_then(|s| s.source);
        }
    }
    (opts, prefer)
}

/// Why a handshake ended without a request.
enum HandshakeEnd {
    /// The protocol machine refused; the bytes were sent.
    Refused(ProtoError),
    /// The SOCKS 6 machine refused; the bytes were sent.
    Socks6(ProtoError),
    /// The client closed (or reset) before finishing.
    Eof,
    Timeout,
    Io(std::io::Error),
}

/// Run one client session to its end and log it. `rec` comes from
/// [`Record::new`]: the addresses and the per-address place travel in it,
/// not as arguments of their own (an async fn keeps every argument for its
/// whole life: each copy would cost every idle connection).
// Written out, not `async fn`: see the comment inside.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run(
    mut stream: TcpStream,
    mut rec: Record,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send {
    // An async block that uses its captures in place: an `async fn` would
    // move each argument into a second slot of its own.
    async move {
        let started = Instant::now();
        let _active = crate::metrics::active_session();
        serve(&mut stream, &shared, &mut rec).await;
        end_session(&mut rec, started);
    }
}

/// The session's log line and its counters.
fn end_session(rec: &mut Record, started: Instant) {
    // Free the user's session slot and the address's place before the line
    // that says the session ended.
    drop(rec.admission.take());
    drop(rec.place.take());
    let up = rec.counters.up.load(Ordering::Relaxed);
    let down = rec.counters.down.load(Ordering::Relaxed);
    let reply = rec.reply.map_or_else(|| "-".to_string(), |r| r.to_string());
    let target = rec
        .target
        .as_ref()
        .map_or_else(|| "-".to_string(), |t| t.to_string());
    tracing::info!(
        target: "sixsocks::session",
        client = %rec.client,
        user = %rec.user_display(),
        version = %rec.version.unwrap_or("-"),
        command = %rec.command.map_or_else(|| "-".to_string(), |c| c.to_string()),
        target = %target,
        reply = %reply,
        up,
        down,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome = %rec.outcome.as_deref().unwrap_or("ok"),
        "session end"
    );
    crate::metrics::session_end(rec.version, rec.command, rec.reply);
    crate::metrics::session_bytes_end(up, down);
}

async fn serve(stream: &mut TcpStream, shared: &Shared, rec: &mut Record) {
    let _ = stream.set_nodelay(true);
    let mut hs =
        ServerHandshake::new(shared.handshake.clone()).with_socks6(shared.socks6_limits.clone());
    let deadline = shared.config.handshake_timeout();
    let tried = &mut rec.tried_user;
    let handshake = tokio::time::timeout(deadline, handshake(stream, &mut hs, shared, tried)).await;
    if let Some(place) = rec.place.as_mut() {
        place.handshake_done();
    }
    rec.version = hs.version().map(Version::name);
    let (request, leftover) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(end)) => {
            if rec.version.is_none() && matches!(end, HandshakeEnd::Socks6(_)) {
                rec.version = Some("socks6");
            }
            rec.credentials = hs.credentials().clone();
            rec.outcome = Some(describe_end(&end));
            if matches!(end, HandshakeEnd::Refused(_) | HandshakeEnd::Socks6(_)) {
                linger_close(stream).await;
            }
            return;
        }
        Err(_) => {
            rec.outcome = Some(describe_end(&HandshakeEnd::Timeout));
            return;
        }
    };
    let request = match request {
        Handshaken::Legacy(r) => r,
        Handshaken::Socks6(r) => {
            rec.version = Some("socks6");
            rec.credentials = r.credentials.clone();
            rec.command = Some(r.command);
            rec.target = Some(r.target.clone());
            // Boxed so that its (larger) state does not size every session.
            return Box::pin(crate::socks6::execute(stream, r, leftover, shared, rec)).await;
        }
    };
    rec.version = Some(request.version.name());
    rec.credentials = request.credentials.clone();
    rec.command = Some(request.command);
    rec.target = Some(request.target.clone());

    let extended = shared.config.extended_errors;
    match execute(stream, &request, leftover, shared, rec).await {
        Ok(()) => {}
        Err(e) => {
            crate::metrics::request_refused(&e);
            let code = e.reply_code();
            rec.reply = Some(code);
            rec.outcome = Some(e.to_string());
            let bytes = request.reply(code, None, extended);
            if stream.write_all(&bytes).await.is_ok() {
                linger_close(stream).await;
            }
        }
    }
}

fn describe_end(end: &HandshakeEnd) -> String {
    match end {
        HandshakeEnd::Refused(e) => format!("handshake refused: {e}"),
        HandshakeEnd::Socks6(e) => format!("socks6 handshake refused: {e}"),
        HandshakeEnd::Eof => "client closed during handshake".to_string(),
        HandshakeEnd::Timeout => "handshake timed out".to_string(),
        HandshakeEnd::Io(e) => format!("handshake i/o error: {e}"),
    }
}

/// A finished handshake: a SOCKS4/4a/5 request or a SOCKS 6 one.
enum Handshaken {
    Legacy(Request),
    Socks6(Box<Socks6Request>),
}

/// Which state machine is driving the handshake.
enum Machine<'a> {
    Legacy(&'a mut ServerHandshake),
    Socks6(Box<Socks6Handshake>),
}

/// One instruction of either machine, in a common shape.
enum Instr {
    NeedMore,
    Reply(usize, Vec<u8>),
    Verify(usize, Vec<u8>, sixsocks_proto::Password),
    Done(usize, Handshaken),
    Fail(Vec<u8>, HandshakeEnd),
}

impl Machine<'_> {
    fn step(&mut self, buf: &[u8]) -> Instr {
        match self {
            Machine::Legacy(hs) => match hs.dispatch(buf) {
                Dispatch::Socks6(m) => {
                    *self = Machine::Socks6(m);
                    self.step(buf)
                }
                Dispatch::Step(step) => match step {
                    Step::NeedMore(_) => Instr::NeedMore,
                    Step::Reply { consumed, bytes } => Instr::Reply(consumed, bytes),
                    Step::Verify {
                        consumed,
                        username,
                        password,
                    } => Instr::Verify(consumed, username, password),
                    Step::Done { consumed, request } => {
                        Instr::Done(consumed, Handshaken::Legacy(request))
                    }
                    Step::Fail { bytes, error } => Instr::Fail(bytes, HandshakeEnd::Refused(error)),
                },
            },
            Machine::Socks6(m) => match m.step(buf) {
                V6Step::NeedMore(_) => Instr::NeedMore,
                V6Step::Reply { consumed, bytes } => Instr::Reply(consumed, bytes),
                V6Step::Verify {
                    consumed,
                    username,
                    password,
                } => Instr::Verify(consumed, username, password),
                V6Step::Done { consumed, request } => {
                    Instr::Done(consumed, Handshaken::Socks6(request))
                }
                V6Step::Fail { bytes, error } => Instr::Fail(bytes, HandshakeEnd::Socks6(error)),
            },
        }
    }

    /// Report a verification; returns the bytes to send now (SOCKS5 only:
    /// the SOCKS 6 machine answers through its next step).
    fn auth_result(&mut self, ok: bool) -> Vec<u8> {
        match self {
            Machine::Legacy(hs) => hs.auth_result(ok),
            Machine::Socks6(m) => {
                m.auth_result(ok);
                Vec::new()
            }
        }
    }
}

/// Drive the handshake state machine over the socket. Returns the request
/// and any bytes the client sent after it (optimistic data).
async fn handshake(
    stream: &mut TcpStream,
    hs: &mut ServerHandshake,
    shared: &Shared,
    tried_user: &mut Option<Vec<u8>>,
) -> Result<(Handshaken, Vec<u8>), HandshakeEnd> {
    let started = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut machine = Machine::Legacy(hs);
    let cap = shared.handshake_buf;
    loop {
        match machine.step(&buf) {
            Instr::NeedMore => {
                let room = cap - buf.len();
                if room == 0 {
                    // Cannot happen with the machines' own caps; refuse anyway.
                    return Err(HandshakeEnd::Refused(ProtoError::MessageTooLong(cap)));
                }
                buf.reserve(room.min(1024));
                let n = (&mut *stream)
                    .take(room as u64)
                    .read_buf(&mut buf)
                    .await
                    .map_err(HandshakeEnd::Io)?;
                if n == 0 {
                    return Err(HandshakeEnd::Eof);
                }
            }
            Instr::Reply(consumed, bytes) => {
                buf.drain(..consumed);
                stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
            }
            Instr::Verify(consumed, username, password) => {
                buf.drain(..consumed);
                let shown = String::from_utf8_lossy(&username)
                    .escape_debug()
                    .to_string();
                *tried_user = Some(username.clone());
                let client = stream.peer_addr().ok().map(|a| a.ip());
                let ok = shared.auth.verify(username, password, client).await;
                let bytes = machine.auth_result(ok);
                if !bytes.is_empty() {
                    stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
                }
                if !ok {
                    tracing::warn!(
                        client = %client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                        user = %shown,
                        "authentication failed"
                    );
                    if let Machine::Legacy(_) = machine {
                        return Err(HandshakeEnd::Refused(ProtoError::AuthFailed));
                    }
                    // SOCKS 6: the machine's next step is the failure reply.
                }
            }
            Instr::Done(consumed, request) => {
                crate::metrics::handshake_seconds(started.elapsed());
                buf.drain(..consumed);
                return Ok((request, buf));
            }
            Instr::Fail(bytes, end) => {
                if !bytes.is_empty() {
                    stream.write_all(&bytes).await.map_err(HandshakeEnd::Io)?;
                }
                return Err(end);
            }
        }
    }
}

/// Carry out a request. On error, nothing has been sent to the client yet;
/// the caller sends the failure reply.
async fn execute(
    stream: &mut TcpStream,
    request: &Request,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    if shared.auth.required() && matches!(request.version, Version::V4 | Version::V4a) {
        return Err(RequestError::AuthRequired);
    }
    rec.admission = shared.users.admit(&request.credentials)?;
    let extended = shared.config.extended_errors;
    check_command(shared, rec, request.command, &request.target)?;
    match request.command {
        Command::CONNECT => {
            // Boxed: connecting is short-lived, relaying is what idles.
            let out = Box::pin(connect_target(&request.target, shared, rec, &leftover)).await?;
            let Some((target, early_sent)) =
                answer_connect(stream, request, out, rec, extended).await
            else {
                return Ok(());
            };
            // Unless they went with an upstream's request, the client's
            // early bytes go first.
            let early = if early_sent { 0 } else { leftover.len() };
            relay_recorded(stream, &target, &leftover[..early], shared, rec, None).await;
            Ok(())
        }
        Command::RESOLVE => {
            // Boxed, like the connect phase: short-lived.
            let addrs = Box::pin(resolve_routed(&request.target, shared, rec)).await?;
            let pick = match request.version {
                // SOCKS4 can only carry an IPv4 answer.
                Version::V4 | Version::V4a => addrs.iter().find(|a| a.is_ipv4()).copied(),
                Version::V5 => addrs.first().copied(),
            }
            .ok_or(RequestError::AddressTypeNotSupported)?;
            finish_with(stream, request, TargetAddr::ip(pick, 0), rec, extended).await
        }
        Command::RESOLVE_PTR if request.version == Version::V5 => {
            let ip = match &request.target.host {
                Host::Ip(ip) => *ip,
                Host::Domain(d) => {
                    destination::literal(d).ok_or(RequestError::AddressTypeNotSupported)?
                }
            };
            let name = Box::pin(reverse_routed(ip, &request.target, shared, rec)).await?;
            finish_with(stream, request, TargetAddr::domain(name, 0), rec, extended).await
        }
        Command::BIND if !shared.config.allow_bind => Err(RequestError::Disabled("BIND")),
        // BIND and UDP are boxed: their futures are large and rare, and an
        // unboxed await would size every session's future to fit them.
        Command::BIND => Box::pin(crate::bind::run(stream, request, leftover, shared, rec)).await,
        Command::UDP_ASSOCIATE if request.version != Version::V5 => {
            Err(RequestError::CommandNotSupported(request.command))
        }
        Command::UDP_ASSOCIATE if !shared.config.allow_udp => {
            Err(RequestError::Disabled("UDP ASSOCIATE"))
        }
        Command::UDP_ASSOCIATE => {
            Box::pin(crate::udp_relay::run(stream, request, shared, rec)).await
        }
        other => Err(RequestError::CommandNotSupported(other)),
    }
}

/// Send a CONNECT's success reply, then the target bytes an upstream sent
/// behind its own. Returns the outbound stream and whether the client's
/// early bytes already went out; `None` when the client is gone. (One
/// await in the session for both writes keeps the session future small.)
async fn answer_connect(
    stream: &mut TcpStream,
    request: &Request,
    out: Outbound,
    rec: &mut Record,
    extended: bool,
) -> Option<(TcpStream, bool)> {
    let reply = request.reply(ReplyCode::Succeeded, out.bound.as_ref(), extended);
    rec.reply = Some(ReplyCode::Succeeded);
    if let Err(e) = stream.write_all(&reply).await {
        rec.outcome = Some(format!("client gone before the reply: {e}"));
        return None;
    }
    if let Err(e) = deliver(stream, out.to_client, rec).await {
        rec.outcome = Some(format!("client gone after the reply: {e}"));
        return None;
    }
    Some((out.stream, out.early_sent))
}

/// Send a success reply carrying `answer`, then close.
async fn finish_with(
    stream: &mut TcpStream,
    request: &Request,
    answer: TargetAddr,
    rec: &mut Record,
    extended: bool,
) -> Result<(), RequestError> {
    rec.reply = Some(ReplyCode::Succeeded);
    rec.outcome = Some(format!("answer {answer}"));
    let reply = request.reply(ReplyCode::Succeeded, Some(&answer), extended);
    if stream.write_all(&reply).await.is_ok() {
        linger_close(stream).await;
    }
    Ok(())
}

/// Resolve a target host for the session's client ([`Resolver::target`]).
pub(crate) async fn lookup(
    host: &Host,
    shared: &Shared,
    rec: &Record,
) -> Result<Vec<IpAddr>, RequestError> {
    shared.resolver.target(host, Some(rec.client.ip())).await
}

/// An outbound connection for CONNECT, direct or through an upstream.
pub(crate) struct Outbound {
    pub(crate) stream: TcpStream,
    /// The address for the success reply.
    pub(crate) bound: Option<TargetAddr>,
    /// Target bytes an upstream sent right behind its reply: the client
    /// gets them first ([`deliver`]).
    pub(crate) to_client: Vec<u8>,
    /// Whether the client's early bytes already went out (as SOCKS 6
    /// initial data to an upstream).
    pub(crate) early_sent: bool,
}

impl Outbound {
    fn direct(stream: TcpStream) -> Self {
        Outbound {
            bound: stream.local_addr().ok().map(TargetAddr::from),
            stream,
            to_client: Vec::new(),
            early_sent: false,
        }
    }

    /// A connection through `up`; `early` goes with the request when the
    /// upstream speaks SOCKS 6 (counted as sent).
    pub(crate) async fn via(
        up: &Upstream,
        target: &TargetAddr,
        early: &[u8],
        rec: &mut Record,
    ) -> Result<Self, RequestError> {
        let s = up.connect(target, &rec.credentials, early).await?;
        if s.early_sent {
            rec.counters.add_up(early.len() as u64);
        }
        rec.outcome = Some(format!("via upstream {}", up.name()));
        // The upstream's own outbound address when it says; zeros if not.
        let bound = match s.bound.host {
            Host::Ip(_) => s.bound,
            Host::Domain(_) => TargetAddr::unspecified(),
        };
        Ok(Outbound {
            stream: s.stream,
            bound: Some(bound),
            to_client: s.leftover,
            early_sent: s.early_sent,
        })
    }
}

/// Send the client what an upstream sent behind its reply (after our
/// success reply, before the relay): [`Outbound::to_client`].
pub(crate) async fn deliver(
    client: &mut TcpStream,
    to_client: Vec<u8>,
    rec: &mut Record,
) -> std::io::Result<()> {
    if !to_client.is_empty() {
        client.write_all(&to_client).await?;
        rec.counters.add_down(to_client.len() as u64);
    }
    Ok(())
}

/// Check the rules, then connect: through the upstream a rule routes to, or
/// directly (resolve, check the addresses, connect). `early`: the client's
/// first bytes (an upstream speaking SOCKS 6 takes them with its request).
async fn connect_target(
    target: &TargetAddr,
    shared: &Shared,
    rec: &mut Record,
    early: &[u8],
) -> Result<Outbound, RequestError> {
    let (addrs, rule) = match route_checked(target, shared, rec).await? {
        Route::Upstream(up) => return Outbound::via(up, target, early, rec).await,
        Route::Direct(addrs, rule) => (addrs, rule),
    };
    let (addrs, opts) = direct_plan(addrs, rule, target.port, shared, rec)?;
    happy_eyeballs_with(
        &addrs,
        target.port,
        shared.config.happy_eyeballs_delay(),
        shared.config.connect_timeout(),
        opts,
    )
    .await
    .map(|(s, _)| Outbound::direct(s))
}

/// Where the rules send a CONNECT or RESOLVE.
pub(crate) enum Route<'s> {
    /// Directly: the addresses the rules let through, and the rule that
    /// passed them.
    Direct(Vec<IpAddr>, Option<&'s Rule>),
    /// Through this upstream, which gets the target as the client gave it.
    Upstream(&'s Upstream),
}

/// The rules' verdict on a request's target, then its addresses: a name is
/// checked by name first (a block costs no DNS query), and, when that does
/// not decide, by each address it resolves to. A rule that decides with a
/// `route` sends the request upstream: decided by name, the name is never
/// resolved here (a `.onion` name goes to Tor untouched); a name that
/// needed its addresses to decide was resolved here first, and still goes
/// upstream as a name.
pub(crate) async fn route_checked<'s>(
    target: &TargetAddr,
    shared: &'s Shared,
    rec: &Record,
) -> Result<Route<'s>, RequestError> {
    let dest = Dest::of(target);
    if let Some(ip) = dest.ip() {
        // Before the rules: no rule may let it through, nor route it.
        destination::refuse_unspecified(ip)?;
    }
    let verdict = check_rules(shared, rec, dest)?;
    if let Some(up) = upstream_of(shared, verdict.rule())? {
        return Ok(Route::Upstream(up));
    }
    let addrs = lookup(&target.host, shared, rec).await?;
    let (addrs, rule) = match verdict {
        Verdict::Undecided => {
            let name = match &target.host {
                Host::Domain(n) => Some(n.as_str()),
                Host::Ip(_) => None,
            };
            check_addresses(shared, rec, name, addrs, target.port)?
        }
        v => (addrs, v.rule()),
    };
    Ok(match upstream_of(shared, rule)? {
        Some(up) => Route::Upstream(up),
        None => Route::Direct(addrs, rule),
    })
}

/// RESOLVE: the addresses of a name, from the resolver or from the
/// upstream the rules route it to.
async fn resolve_routed(
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<Vec<IpAddr>, RequestError> {
    Ok(match route_checked(target, shared, rec).await? {
        Route::Direct(addrs, _) => addrs,
        Route::Upstream(up) => match &target.host {
            Host::Domain(name) => vec![up.resolve(name, &rec.credentials).await?],
            Host::Ip(ip) => vec![*ip],
        },
    })
}

/// RESOLVE_PTR: the name of an address, from the resolver or from the
/// upstream the rules route it to.
async fn reverse_routed(
    ip: IpAddr,
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<String, RequestError> {
    let verdict = check_rules(shared, rec, Dest::of(target))?;
    match upstream_of(shared, verdict.rule())? {
        Some(up) => up.resolve_ptr(ip, &rec.credentials).await,
        None => shared.resolver.reverse(ip, Some(rec.client.ip())).await,
    }
}

/// The upstream the deciding rule routes through, if it has a route.
pub(crate) fn upstream_of<'s>(
    shared: &'s Shared,
    rule: Option<&Rule>,
) -> Result<Option<&'s Upstream>, RequestError> {
    let Some(name) = rule.and_then(|r| r.route.as_deref()) else {
        return Ok(None);
    };
    // Validation makes every route name an upstream; be safe anyway.
    let up = shared.upstreams.get(name).ok_or_else(|| {
        RequestError::UpstreamCannot(format!("upstream {name} is not configured"))
    })?;
    // Never one of our own listeners (validation catches the plain cases;
    // this also covers listeners on port 0 and addresses set by a reload).
    if let Host::Ip(ip) = up.proxy().host {
        refuse_own_sockets(&[ip], up.proxy().port, shared).inspect_err(|_| {
            tracing::warn!(
                upstream = name,
                "upstream {name} ({}) is one of our own listeners: refused (a loop)",
                up.proxy()
            );
        })?;
    }
    Ok(Some(up))
}

/// The rules for the commands that are not checked with their addresses
/// (CONNECT, RESOLVE and RESOLVE_PTR are, as they resolve): BIND, which
/// names the host expected to connect in; UDP ASSOCIATE, whose datagrams
/// are then checked one by one; SOCKS 6 NOOP. Neither BIND nor UDP can go
/// through an upstream.
pub(crate) fn check_command(
    shared: &Shared,
    rec: &Record,
    command: Command,
    target: &TargetAddr,
) -> Result<(), RequestError> {
    match command {
        Command::BIND => refuse_route(&check_rules(shared, rec, Dest::of(target))?, "BIND"),
        Command::UDP_ASSOCIATE => {
            refuse_route(&check_rules(shared, rec, Dest::Unknown)?, "UDP ASSOCIATE")
        }
        Command::NOOP => check_rules(shared, rec, Dest::Unknown).map(|_| ()),
        _ => Ok(()),
    }
}

/// Addresses and socket options for a direct CONNECT that the rules let
/// through: never one of our own sockets; the egress settings of the rule
/// (or the user); only addresses the source address can reach, the
/// preferred family first.
pub(crate) fn direct_plan(
    addrs: Vec<IpAddr>,
    rule: Option<&Rule>,
    port: u16,
    shared: &Shared,
    rec: &Record,
) -> Result<(Vec<IpAddr>, SocketOptions), RequestError> {
    for ip in &addrs {
        destination::refuse_unspecified(*ip)?;
    }
    refuse_own_sockets(&addrs, port, shared)?;
    let (opts, prefer) = egress_of(rule, shared, rec);
    Ok((order_for_egress(addrs, opts.source, prefer), opts))
}

/// BIND and UDP ASSOCIATE cannot go through an upstream: a rule that
/// routes them refuses them (`07` / `5B`), with a log line.
fn refuse_route(verdict: &Verdict<'_>, what: &str) -> Result<(), RequestError> {
    let Some(name) = verdict.rule().and_then(|r| r.route.as_deref()) else {
        return Ok(());
    };
    tracing::warn!(
        upstream = name,
        rule = %verdict.reason(),
        "{what} matched a rule routing through upstream {name}: routing {what} is not supported"
    );
    Err(RequestError::UpstreamCannot(format!(
        "upstream {name} cannot carry {what} (routing BIND or UDP ASSOCIATE is not supported)"
    )))
}

/// Keep only addresses a source address can reach, and put the preferred
/// family first (happy eyeballs then starts with it).
fn order_for_egress(
    mut addrs: Vec<IpAddr>,
    source: Option<IpAddr>,
    prefer: Option<Family>,
) -> Vec<IpAddr> {
    if let Some(src) = source {
        addrs.retain(|a| a.is_ipv4() == src.is_ipv4());
    }
    if let Some(p) = prefer {
        let want_v4 = p == Family::Ipv4;
        addrs.sort_by_key(|a| a.is_ipv4() != want_v4);
    }
    addrs
}

/// Relay between the client and `target` until both directions end, and
/// record how it ended (`label`, when given, prefixes the outcome).
pub(crate) async fn relay_recorded(
    client: &TcpStream,
    target: &TcpStream,
    early: &[u8],
    shared: &Shared,
    rec: &mut Record,
    label: Option<String>,
) {
    let config = &shared.config;
    let end = relay(
        client,
        target,
        early,
        config.idle_timeout(),
        config.relay_mode,
        &rec.counters,
        rec.admission.as_ref().map(|u| u.bandwidth()),
    )
    .await;
    let what = match end {
        RelayEnd::Closed => return,
        RelayEnd::Idle => "idle timeout".to_string(),
        RelayEnd::Error(e) => format!("relay ended: {e}"),
    };
    rec.outcome = Some(match label {
        Some(l) => format!("{l}: {what}"),
        None => what,
    });
}

/// Refuse a target that is one of the proxy's own listening sockets (a
/// loop that would eat a connection slot per turn until the limit), in any
/// spelling ([`destination::is_own_socket`]), and the listeners of live
/// BINDs.
pub(crate) fn refuse_own_sockets(
    addrs: &[IpAddr],
    port: u16,
    shared: &Shared,
) -> Result<(), RequestError> {
    let hit = addrs.iter().any(|ip| {
        destination::is_own_socket(*ip, port, shared.own_addrs.iter().copied())
            || shared.bound.contains(*ip, port)
    });
    if hit {
        Err(RequestError::OwnSocket)
    } else {
        Ok(())
    }
}

/// Close after a refusal without losing the reply: shut our write side,
/// then read and discard what the client still sends for a short while, so
/// that unread input does not turn our close into a reset that could
/// destroy the reply in flight.
pub(crate) async fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every idle connection holds its session future; keep it small
    /// (1,600 bytes: short-lived phases with big state, connecting and
    /// SOCKS 6, are boxed, and `run` keeps each argument in one slot).
    #[tokio::test]
    async fn session_future_is_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let shared = Arc::new(Shared::new(Config::default(), Authenticator::new(None)));
        let a = "127.0.0.1:1".parse().unwrap();
        let fut = run(c, Record::new(a, a, None), shared);
        let size = std::mem::size_of_val(&fut);
        eprintln!("session future: {size} bytes");
        assert!(size <= 1664, "session future is {size} bytes");
    }
}

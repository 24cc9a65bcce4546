//! Listening sockets, the accept loop, the client limit and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use arc_swap::ArcSwap;

use crate::address_limits::Admitted;
use crate::auth::{Authenticator, Users, UsersError};
use crate::backoff::Backoff;
use crate::config::{Config, ConfigError};
use crate::context::{Record, Shared};
use crate::cores::Shards;
use crate::rate_limited_log::RateLimitedLog;
use crate::rules::Facts;
use crate::session;

/// Backlog of each listening socket.
const BACKLOG: i32 = 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound server, ready to run.
pub struct Server {
    /// Per listening address, one socket per shard (`SO_REUSEPORT` when
    /// there is more than one), registered with its runtime when it runs.
    listeners: Vec<Vec<std::net::TcpListener>>,
    /// The runtimes of [`Server::bind_sharded`]; `None`: the one that
    /// calls [`Server::run`].
    shards: Option<Arc<Shards>>,
    /// The configuration generation new sessions get (see [`Reloader`]).
    current: Arc<ArcSwap<Shared>>,
    slots: Arc<Semaphore>,
    max_clients: usize,
}

/// Loads a users file if the configuration names one.
fn load_auth(config: &Config) -> Result<Authenticator, StartError> {
    let users = match &config.users_file {
        Some(path) => {
            let users = Users::load(path)?;
            if users.is_empty() {
                tracing::warn!(path = %path.display(), "users file lists no users: every login will fail");
            }
            Some(users)
        }
        None => None,
    };
    Ok(Authenticator::with_budget(users, config.auth_budget()))
}

/// Replaces the configuration of a running server (SIGHUP): rules, users,
/// limits, upstreams, timeouts. Live sessions keep the configuration they
/// started with; new ones get the new one.
#[derive(Clone)]
pub struct Reloader {
    current: Arc<ArcSwap<Shared>>,
}

impl Reloader {
    /// Validate `config` and load its users file; if both succeed, make it
    /// the configuration of new sessions. On error the old one stays.
    /// Settings that need the listening sockets or the runtime rebuilt
    /// (`listen`, `max_clients`, `socks6_max_token_window`), and those read
    /// once at start (`metrics`, `log_format`, `user`, `group`) keep their
    /// old values until a restart; a warning says so.
    pub fn reload(&self, mut config: Config) -> Result<(), StartError> {
        config.validate()?;
        let auth = load_auth(&config)?;
        let old = self.current.load();
        let mut kept = Vec::new();
        if config.listen != old.config.listen {
            kept.push("listen");
            config.listen = old.config.listen.clone();
        }
        if config.max_clients != old.config.max_clients {
            kept.push("max_clients");
            config.max_clients = old.config.max_clients;
        }
        if config.threads != old.config.threads {
            kept.push("threads");
            config.threads = old.config.threads;
        }
        if config.socks6_max_token_window != old.config.socks6_max_token_window {
            kept.push("socks6_max_token_window");
            config.socks6_max_token_window = old.config.socks6_max_token_window;
        }
        // Read at start only: the metrics endpoint, the logger, the process's ids.
        if config.metrics != old.config.metrics {
            kept.push("metrics");
            config.metrics = old.config.metrics;
        }
        if config.log_format != old.config.log_format {
            kept.push("log_format");
            config.log_format = old.config.log_format;
        }
        if (&config.user, &config.group) != (&old.config.user, &old.config.group) {
            kept.push("user/group");
            config.user.clone_from(&old.config.user);
            config.group.clone_from(&old.config.group);
        }
        if !kept.is_empty() {
            tracing::warn!(
                settings = %kept.join(", "),
                "these settings changed but take effect only at restart"
            );
        }
        let rules = config.rule.len();
        // Failing addresses stay throttled across a reload.
        let auth = auth.carry_over(&old.auth);
        let next = old.next(config, auth);
        let users = next.auth.user_count();
        self.current.store(Arc::new(next));
        tracing::info!(rules, users, "configuration reloaded");
        Ok(())
    }
}

impl Server {
    /// Validate the configuration, load the users file and bind every
    /// listening address; the server runs on the runtime that calls
    /// [`Server::run`] (any kind). Must be called inside a tokio runtime.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        Server::bind_on(config, None)
    }

    /// [`Server::bind`] for a server that runs on `shards`, one runtime
    /// per core ([`crate::cores`]): each address is bound once per shard
    /// (`SO_REUSEPORT`), and each shard accepts on its own sockets.
    pub fn bind_sharded(config: Config, shards: Arc<Shards>) -> Result<Server, StartError> {
        Server::bind_on(config, Some(shards))
    }

    fn bind_on(config: Config, shards: Option<Arc<Shards>>) -> Result<Server, StartError> {
        config.validate()?;
        let auth = load_auth(&config)?;
        let n = shards.as_ref().map_or(1, |s| s.len());
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let l = listen_group(*addr, n).map_err(|source| StartError::Bind {
                addr: *addr,
                source,
            })?;
            listeners.push(l);
        }
        let max_clients = config.max_clients();
        if config.max_clients.is_none() {
            tracing::info!(
                max_clients,
                open_file_limit = crate::descriptors::open_file_limit(),
                "max_clients not set: derived from the open-file limit (two descriptors per relay, a margin set aside)"
            );
        }
        // The metrics endpoint is one of our sockets too: not a target.
        let metrics_addr = config.metrics;
        let mut shared = Shared::new(config, auth);
        shared.own_addrs = Arc::new(
            listeners
                .iter()
                .filter_map(|group| group.first()?.local_addr().ok())
                .chain(metrics_addr)
                .collect(),
        );
        Ok(Server {
            listeners,
            shards,
            current: Arc::new(ArcSwap::from_pointee(shared)),
            slots: Arc::new(Semaphore::new(max_clients)),
            max_clients,
        })
    }

    /// A handle that replaces the configuration of this server while it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            current: self.current.clone(),
        }
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|group| group.first()?.local_addr().ok())
            .collect()
    }

    /// Accept clients until `shutdown` completes; then stop accepting and
    /// give live sessions the configured grace period to end.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        let mut accept_tasks = Vec::new();
        let shards = self.shards.clone();
        match &shards {
            None => background.push(tokio::spawn(timer_heartbeat())),
            // The sampler's tick is due every 250 ms: a heartbeat too.
            Some(sh) => {
                for k in 0..sh.len() {
                    background.push(sh.handle(k).spawn(sh.clone().sample(k)));
                }
                tracing::info!(threads = sh.len(), "one runtime per thread");
            }
        }
        for group in self.listeners {
            if let Some(addr) = group.first().and_then(|l| l.local_addr().ok()) {
                tracing::info!("listening on {addr}");
            }
            for (k, listener) in group.into_iter().enumerate() {
                let accept = accept_loop(
                    listener,
                    self.current.clone(),
                    self.slots.clone(),
                    self.max_clients,
                    stop_rx.clone(),
                    shards.clone().map(|sh| (sh, k)),
                );
                accept_tasks.push(match &shards {
                    Some(sh) => sh.handle(k).spawn(accept),
                    None => tokio::spawn(accept),
                });
            }
        }
        shutdown.await;
        for t in background {
            t.abort();
        }
        let _ = stop_tx.send(true);
        for t in accept_tasks {
            let _ = t.await;
        }
        let live = self.max_clients - self.slots.available_permits();
        let grace = self.current.load().config.shutdown_grace();
        tracing::info!(
            live,
            grace_secs = grace.as_secs(),
            "shutting down: no longer accepting"
        );
        let deadline = Instant::now() + grace;
        while self.slots.available_permits() < self.max_clients && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.max_clients - self.slots.available_permits();
        if left > 0 {
            tracing::warn!(
                sessions = left,
                "grace period over: closing the remaining sessions"
            );
        } else {
            tracing::info!("all sessions ended");
        }
    }
}

/// `n` listening sockets on `addr` (port 0: the port the first got).
///
/// More than one share the address with `SO_REUSEPORT`. So that this does
/// not let two servers share a port by mistake (the kernel would split the
/// connections between them), a port already listened on is refused first,
/// as it is with one socket: a plain bind on it must succeed.
fn listen_group(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if n <= 1 {
        return Ok(vec![listen(addr, false)?]);
    }
    if addr.port() != 0 {
        drop(socket_for(addr, false)?);
    }
    let first = listen(addr, true)?;
    let addr = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..n {
        group.push(listen(addr, true)?);
    }
    Ok(group)
}

/// A TCP socket bound to `addr`, not listening yet.
fn socket_for(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket_for(addr, reuse_port)?;
    // SOCKS 6 clients may put their request in the SYN (TCP Fast Open);
    // best effort: the kernel's net.ipv4.tcp_fastopen decides in the end.
    let _ = sixsocks_sys::set_tcp_fastopen_listen(&socket, TFO_QUEUE);
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Pending TCP Fast Open requests a listener keeps.
const TFO_QUEUE: i32 = 256;

/// First and longest pause after a failed `accept` (see [`Backoff`]). The
/// first is short: most failures (a connection aborted before it was
/// accepted) concern one connection and the next accept works.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_PAUSE_CAP: Duration = Duration::from_secs(1);

/// The rate-limited warnings of one accept loop.
#[derive(Default)]
struct AcceptLogs {
    over_limit: RateLimitedLog,
    accept_errors: RateLimitedLog,
    blocked: RateLimitedLog,
    per_address: RateLimitedLog,
}

async fn accept_loop(
    listener: std::net::TcpListener,
    current: Arc<ArcSwap<Shared>>,
    slots: Arc<Semaphore>,
    max_clients: usize,
    mut stop: watch::Receiver<bool>,
    shard: Option<(Arc<Shards>, usize)>,
) {
    // Registered with the runtime this loop runs on (its shard's).
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot register a listening socket: {e}; not accepting on it");
            return;
        }
    };
    let logs = AcceptLogs::default();
    let mut backoff = Backoff::new(ACCEPT_PAUSE_FIRST, ACCEPT_PAUSE_CAP);
    let Ok(local) = listener.local_addr() else {
        tracing::error!("listener has no local address; not accepting");
        return;
    };
    // One copy for every session's record.
    let local = Arc::new(local);
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    backoff.reset();
                    let shared = current.load_full();
                    let Some(place) = admit_client(&shared, peer, *local, &logs) else {
                        drop(stream);
                        continue;
                    };
                    let rec = Record::new(peer, local.clone(), Some(place));
                    let Some((shards, k)) = &shard else {
                        tokio::spawn(serve_client(stream, rec, shared, permit));
                        continue;
                    };
                    match shards.hand_off_from(*k) {
                        None => {
                            shards.count_served(*k);
                            tokio::spawn(serve_client(stream, rec, shared, permit));
                        }
                        Some(j) => hand_off(stream, rec, shared, permit, shards, *k, j),
                    }
                }
                Err(_) => {
                    backoff.reset();
                    drop(stream);
                    crate::metrics::rejected_max_clients();
                    logs.over_limit.log(|suppressed| {
                        tracing::warn!(
                            client = %peer,
                            max_clients,
                            suppressed,
                            "client limit reached: connection closed"
                        )
                    });
                }
            },
            Err(e) => {
                // EMFILE/ENFILE and friends: not fatal, but they last while
                // the table is full and the pending connection stays
                // queued, so the listener stays readable: pause (longer
                // each time, up to a second) so that the loop does not
                // spin, and log at most once a second.
                let pause = backoff.after_accept_error(&logs.accept_errors, &e, "");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Serve one accepted client on this runtime. A CONNECT's relay goes on in
/// a task of its own, which holds only what it needs (session.rs).
async fn serve_client(
    stream: tokio::net::TcpStream,
    rec: Record,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    if let Some(relay) = session::run(stream, rec, shared).await {
        tokio::spawn(relay.run(permit));
    }
}

/// Serve a client accepted by shard `from` on shard `to` (less busy): its
/// socket leaves this runtime's event loop and joins the other's.
fn hand_off(
    stream: tokio::net::TcpStream,
    rec: Record,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
    shards: &Shards,
    from: usize,
    to: usize,
) {
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(client = %rec.client, "cannot move a connection to another thread: {e}; closed");
            return;
        }
    };
    shards.count_handed_off(from);
    shards.count_served(to);
    shards.handle(to).spawn(async move {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => serve_client(stream, rec, shared, permit).await,
            Err(e) => {
                tracing::warn!(client = %rec.client, "cannot register a moved connection: {e}; closed")
            }
        }
    });
}

/// A new client passes the client rules and the per-address caps, or gets
/// `None` (the caller closes it) and a rate-limited warning.
fn admit_client(
    shared: &Shared,
    peer: SocketAddr,
    local: SocketAddr,
    logs: &AcceptLogs,
) -> Option<Admitted> {
    // Client rules: decided now only if the first rule that could apply
    // needs nothing but the address and listener.
    let facts = Facts {
        client: Some(peer.ip()),
        listener: Some(local),
        ..Facts::default()
    };
    let verdict = shared.rules.decide(&facts, "connection");
    if verdict.is_block() {
        crate::metrics::rule_block("accept");
        logs.blocked.log(|suppressed| {
            tracing::warn!(
                client = %peer,
                rule = %verdict.reason(),
                suppressed,
                "client blocked by the rules: connection closed"
            )
        });
        return None;
    }
    let config = &shared.config;
    match shared.address_limits.admit(
        peer.ip(),
        config.max_clients_per_address,
        config.max_handshakes_per_address,
    ) {
        Ok(place) => Some(place),
        Err(refusal) => {
            crate::metrics::connection_rejected(refusal.label());
            logs.per_address.log(|suppressed| {
                tracing::warn!(
                    client = %peer,
                    limit = refusal.label(),
                    suppressed,
                    "per-address limit reached: connection closed"
                )
            });
            None
        }
    }
}

/// How often [`timer_heartbeat`] fires.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A timer that is always due within [`HEARTBEAT`], so that the runtime's
/// timer driver never sleeps longer than that. Every session arms timers
/// of seconds (the handshake's 10 s, the connect's 30 s, the relay's idle
/// timeout): when the new deadline is the earliest the driver knows of,
/// tokio wakes the thread parked in the driver to sleep shorter (an
/// eventfd write and a context switch on the other core). With this tick
/// pending, a deadline past a second never is the earliest: `strace` of
/// one connection after another counted that write for 26 of 26
/// connections without the tick, 0 of 44 with it; with one connection
/// after another, 2–8% less proxy CPU per connection (bench/README.md).
/// The cost: one wake-up a second.
async fn timer_heartbeat() {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

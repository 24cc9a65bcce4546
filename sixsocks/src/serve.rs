//! `sixsocks serve`: command-line options and the server's start and stop.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use crate::privileges::Switch;
use sixsocks_server::config::{LogFormat, RelayMode};
use sixsocks_server::cores::Cores;
use sixsocks_server::{Config, Server};

/// Options of `sixsocks serve`. Each has a twin key in the config file
/// (dashes become underscores); the command line wins over the file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file (see sixsocks.toml(5) and
    /// sixsocks.example.toml). Without it, the embedded defaults apply:
    /// 127.0.0.1:1080, no authentication.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on, IPv4 or IPv6 ([::1]:1080); repeat for several.
    /// Replaces the config file's `listen` list. Port 0 picks a free port.
    #[arg(short, long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,

    /// Users file (from `sixsocks passwd`): makes SOCKS5 username/password
    /// authentication mandatory and refuses SOCKS4.
    #[arg(long, value_name = "FILE", visible_alias = "users")]
    pub users_file: Option<PathBuf>,

    /// Tor's leniency: accept a username/password message after method 00
    /// was chosen, and empty user names and passwords.
    #[arg(long)]
    pub lenient_auth: bool,

    /// Failed logins a client address (an IPv6 /64) may have in a row; more
    /// are refused without checking the password until the budget refills.
    /// 0 turns the throttle off [default: 10].
    #[arg(long, value_name = "N")]
    pub auth_failure_burst: Option<u32>,

    /// Failed logins given back to an address's budget per minute [default: 10].
    #[arg(long, value_name = "N")]
    pub auth_failures_per_minute: Option<u32>,

    /// Send Tor's extended SOCKS5 error codes (F0-F7) instead of 04.
    #[arg(long)]
    pub extended_errors: bool,

    /// Allow listening on a non-loopback address without authentication
    /// (an open proxy). Without it such a configuration is refused.
    #[arg(long)]
    pub allow_open_proxy: bool,

    /// Seconds a client has to finish its handshake [default: 10].
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,

    /// Seconds to connect to a target, all its addresses together [default: 30].
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Seconds a name resolution may take [default: 10].
    #[arg(long, value_name = "SECS")]
    pub resolve_timeout: Option<u64>,

    /// Happy eyeballs: milliseconds before trying the next address [default: 250].
    #[arg(long, value_name = "MS")]
    pub happy_eyeballs_delay_ms: Option<u64>,

    /// Seconds of silence after which a relayed connection is closed; 0 never [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Maximum concurrent clients; more are closed at once [default: derived
    /// from the open-file limit: (limit - 64 - listeners - 2 per further
    /// thread) / 2, two descriptors per relay, e.g. 9,966 on 2 cores under
    /// 20,000; the metrics endpoint takes its share too].
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,

    /// Connections at once from one client address (IPv6: its /64) [default: 512].
    #[arg(long, value_name = "N")]
    pub max_clients_per_address: Option<usize>,

    /// Handshakes in progress at once from one client address [default: 64].
    #[arg(long, value_name = "N")]
    pub max_handshakes_per_address: Option<usize>,

    /// Seconds live sessions get after SIGINT/SIGTERM [default: 10].
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<u64>,

    /// Threads serving clients, each with its own event loop and listening
    /// sockets (SO_REUSEPORT); a busy one hands new clients to a less busy
    /// one [default: 0, one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// How relayed bytes move: `auto` (splice(2) through a pooled pipe at
    /// any number of relays; small reads, under 4 KiB, and reads when no
    /// pipe can be had are copied), `splice` (the same) or `copy` (a pooled
    /// buffer, never splice) [default: auto].
    #[arg(long, value_name = "MODE")]
    pub relay_mode: Option<RelayMode>,

    /// Carry out BIND requests (true or false) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub allow_bind: Option<bool>,

    /// IP address BIND listens on and reports [default: the proxy's address
    /// on the route to the expected host, else the one the client reached].
    #[arg(long, value_name = "IP")]
    pub bind_address: Option<IpAddr>,

    /// Seconds BIND waits for the inbound connection [default: 120].
    #[arg(long, value_name = "SECS")]
    pub bind_timeout: Option<u64>,

    /// Ports a SOCKS 6 BIND may ask for ("40000-40999"); others get an
    /// ephemeral port [default: none, always ephemeral].
    #[arg(long, value_name = "FIRST-LAST")]
    pub bind_ports: Option<sixsocks_server::rules::PortRange>,

    /// BIND accepts only the host the request names, when it names one [default: true].
    #[arg(long, value_name = "BOOL")]
    pub bind_check_peer: Option<bool>,

    /// Carry out UDP ASSOCIATE (true or false) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub allow_udp: Option<bool>,

    /// IP address of UDP relay sockets [default: the address the client reached].
    #[arg(long, value_name = "IP")]
    pub udp_address: Option<IpAddr>,

    /// Seconds without a datagram after which a UDP association ends [default: 120].
    #[arg(long, value_name = "SECS")]
    pub udp_idle_timeout: Option<u64>,

    /// UDP associations at once, in all [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_udp_associations: Option<usize>,

    /// UDP associations at once from one client IP [default: 16].
    #[arg(long, value_name = "N")]
    pub max_udp_per_client: Option<usize>,

    /// Largest UDP payload relayed; larger datagrams are dropped [default: 65507].
    #[arg(long, value_name = "BYTES")]
    pub max_datagram: Option<usize>,

    /// Seconds a UDP fragment sequence may take to complete, at least 5 [default: 5].
    #[arg(long, value_name = "SECS")]
    pub udp_reassembly_timeout: Option<u64>,

    /// Bytes of datagrams one UDP association may hold while their names
    /// resolve; more are dropped [default: 262144].
    #[arg(long, value_name = "BYTES")]
    pub udp_lookup_queue_bytes: Option<usize>,

    /// Bytes of datagrams all UDP associations together may hold while
    /// their names resolve [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub udp_lookup_queue_bytes_total: Option<usize>,

    /// Largest SOCKS 6 idempotence token window granted; 0 grants none [default: 1024].
    #[arg(long, value_name = "N")]
    pub socks6_max_token_window: Option<u32>,

    /// How a SOCKS 6 request beginning with 06 is read: auto (draft -05 or
    /// -11 by its header), draft-05 or draft-11; CF is always the reference
    /// dialect [default: auto].
    #[arg(long, value_name = "PROFILE")]
    pub socks6_profile: Option<sixsocks_server::config::Socks6Profile>,

    /// Seconds a SOCKS 6 session lives without a request [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub socks6_session_idle_timeout: Option<u64>,

    /// Most SOCKS 6 sessions alive; 0: none [default: 16384].
    #[arg(long, value_name = "N")]
    pub socks6_max_sessions: Option<usize>,

    /// Most SOCKS 6 sessions per client address [default: 64].
    #[arg(long, value_name = "N")]
    pub socks6_max_sessions_per_address: Option<usize>,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics [default: none].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Log lines as `text` or `json` (one object per line) [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// After binding, switch to this user (needs root) [default: stay].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// After binding, switch to this group (needs root) [default: the user's].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

impl ServeArgs {
    /// The file (or embedded default) configuration with the command line applied.
    pub fn config(&self) -> Result<Config, Box<dyn std::error::Error>> {
        let c = self.config_unchecked()?;
        c.validate()?;
        Ok(c)
    }

    /// [`ServeArgs::config`] before validation (the gateway adds to it).
    pub fn config_unchecked(&self) -> Result<Config, Box<dyn std::error::Error>> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if !self.listen.is_empty() {
            c.listen = self.listen.clone();
        }
        if let Some(p) = &self.users_file {
            c.users_file = Some(p.clone());
        }
        c.lenient_auth |= self.lenient_auth;
        c.extended_errors |= self.extended_errors;
        c.allow_open_proxy |= self.allow_open_proxy;
        self.apply_timeouts_and_commands(&mut c);
        self.apply_limits(&mut c);
        Ok(c)
    }

    /// The timeout flags, and which commands are on and where they bind.
    fn apply_timeouts_and_commands(&self, c: &mut Config) {
        let set = |dst: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut c.handshake_timeout, self.handshake_timeout);
        set(&mut c.connect_timeout, self.connect_timeout);
        set(&mut c.resolve_timeout, self.resolve_timeout);
        set(&mut c.happy_eyeballs_delay_ms, self.happy_eyeballs_delay_ms);
        set(&mut c.idle_timeout, self.idle_timeout);
        set(&mut c.shutdown_grace, self.shutdown_grace);
        set(&mut c.bind_timeout, self.bind_timeout);
        set(&mut c.udp_idle_timeout, self.udp_idle_timeout);
        set(&mut c.udp_reassembly_timeout, self.udp_reassembly_timeout);
        if let Some(b) = self.allow_bind {
            c.allow_bind = b;
        }
        if let Some(b) = self.bind_check_peer {
            c.bind_check_peer = b;
        }
        if let Some(b) = self.allow_udp {
            c.allow_udp = b;
        }
        if self.bind_address.is_some() {
            c.bind_address = self.bind_address;
        }
        if self.bind_ports.is_some() {
            c.bind_ports = self.bind_ports;
        }
        if self.udp_address.is_some() {
            c.udp_address = self.udp_address;
        }
    }

    /// The limit flags, the relay mode, metrics, logging and privileges.
    fn apply_limits(&self, c: &mut Config) {
        for (dst, v) in [
            (&mut c.max_udp_associations, self.max_udp_associations),
            (&mut c.max_udp_per_client, self.max_udp_per_client),
            (&mut c.max_datagram, self.max_datagram),
            (&mut c.udp_lookup_queue_bytes, self.udp_lookup_queue_bytes),
            (
                &mut c.udp_lookup_queue_bytes_total,
                self.udp_lookup_queue_bytes_total,
            ),
        ] {
            if let Some(v) = v {
                *dst = v;
            }
        }
        for (dst, v) in [
            (&mut c.auth_failure_burst, self.auth_failure_burst),
            (
                &mut c.auth_failures_per_minute,
                self.auth_failures_per_minute,
            ),
        ] {
            if let Some(v) = v {
                *dst = v;
            }
        }
        if let Some(n) = self.socks6_max_token_window {
            c.socks6_max_token_window = n;
        }
        if let Some(p) = self.socks6_profile {
            c.socks6_profile = p;
        }
        if let Some(n) = self.socks6_session_idle_timeout {
            c.socks6_session_idle_timeout = n;
        }
        if let Some(n) = self.socks6_max_sessions {
            c.socks6_max_sessions = n;
        }
        if let Some(n) = self.socks6_max_sessions_per_address {
            c.socks6_max_sessions_per_address = n;
        }
        if let Some(m) = self.relay_mode {
            c.relay_mode = m;
        }
        if let Some(n) = self.threads {
            c.threads = n;
        }
        if let Some(n) = self.max_clients {
            c.max_clients = Some(n);
        }
        if let Some(n) = self.max_clients_per_address {
            c.max_clients_per_address = n;
        }
        if let Some(n) = self.max_handshakes_per_address {
            c.max_handshakes_per_address = n;
        }
        if self.metrics.is_some() {
            c.metrics = self.metrics;
        }
        if let Some(f) = self.log_format {
            c.log_format = f;
        }
        if self.user.is_some() {
            c.user = self.user.clone();
        }
        if self.group.is_some() {
            c.group = self.group.clone();
        }
    }
}

pub fn run(args: ServeArgs, verbose: u8) -> Result<(), Box<dyn std::error::Error>> {
    run_with(args, verbose, ServeArgs::config)
}

/// [`run`] with the configuration made by `make` from the command line
/// (and made again on SIGHUP): `serve`'s, or the gateway's, which adds its
/// upstream.
pub fn run_with(
    args: ServeArgs,
    verbose: u8,
    make: impl Fn(&ServeArgs) -> Result<Config, Box<dyn std::error::Error>> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = make(&args)?;
    crate::logging::init(verbose, config.log_format);
    // Unknown names fail now, before anything is bound.
    let switch = Switch::lookup(config.user.as_deref(), config.group.as_deref())?;
    raise_fd_limit(&config);
    // One runtime per thread (sixsocks_server::cores). Log lines are held
    // and written in batches when a runtime thread goes idle
    // (crate::logging).
    let cores = Cores::start(config.threads(), crate::logging::flush_lines)?;
    let shards = cores.shards();
    crate::logging::hold_lines();
    let served = cores.block_on(async move {
        let shutdown = shutdown_signal()?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        match config.metrics {
            Some(addr) => install_metrics(addr)?,
            None => sixsocks_server::metrics::no_recorder(),
        }
        let server = Server::bind_sharded(config, shards)?;
        // Everything privileged is done: listeners and the metrics endpoint
        // are bound, the users file is read, the open-file limit raised.
        if let Some(switch) = switch {
            switch.apply()?;
        }
        let reloader = server.reloader();
        // SIGHUP: read the configuration again (file and command line) and
        // apply it to new sessions; a bad one is rejected and logged.
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading the configuration");
                match make(&args) {
                    Ok(config) => match reloader.reload(config) {
                        Ok(()) => {}
                        Err(e) => tracing::error!(
                            "reload rejected, the old configuration stays in force: {e}"
                        ),
                    },
                    Err(e) => tracing::error!(
                        "reload rejected, the old configuration stays in force: {e}"
                    ),
                }
            }
        });
        server.run(shutdown).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    // Sessions still running after the grace period end with the runtimes.
    cores.shutdown(std::time::Duration::from_millis(100));
    crate::logging::release_lines();
    served
}

/// Install the Prometheus recorder as the global metrics recorder and
/// serve its page on `addr` from our own endpoint
/// (`sixsocks_server::metrics_endpoint`: connection cap, deadlines, size
/// cap), on this runtime. Without it, the server's metric calls are no-ops.
///
/// Not the exporter's own HTTP listener: it had no request timeout and no
/// connection cap, and at the descriptor limit its accept loop spun and
/// flooded the log.
fn install_metrics(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use sixsocks_server::metrics;
    use sixsocks_server::metrics_endpoint::{Limits, MetricsEndpoint};
    // Bound first: a busy port stops the start before anything is installed.
    let endpoint = MetricsEndpoint::bind(addr, Limits::default())
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in metrics::HISTOGRAMS {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)?;
    }
    // install_recorder = build_recorder + set it as the global recorder,
    // without the exporter's listener or its upkeep task.
    let handle = builder.install_recorder()?;
    metrics::describe();
    // The upkeep `install` would have spawned: histogram samples are only
    // folded into their buckets by it or by a scrape, so without a scraper
    // they would pile up in memory.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    endpoint.spawn(std::sync::Arc::new(move || handle.render()));
    tracing::info!("serving metrics at http://{addr}/metrics");
    Ok(())
}

/// How often the recorder's upkeep runs (the exporter's default).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Raise the open-file limit as far as it goes, and warn if that is below
/// what the configuration can need (see `sixsocks_server::descriptors`:
/// 2 per CONNECT, 3 per BIND, 4 per UDP association, the metrics
/// endpoint's cap, relay pipes).
fn raise_fd_limit(config: &Config) {
    use sixsocks_server::descriptors::Budget;
    use sixsocks_server::metrics_endpoint::MAX_CONNECTIONS;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            return;
        }
    };
    // A derived max_clients fits the limit by construction (two per relay);
    // an explicit one may not.
    if config.max_clients.is_none() {
        return;
    }
    let budget = Budget::of(config, MAX_CONNECTIONS);
    let need = budget.total();
    if limit < need {
        tracing::warn!(
            limit,
            need,
            max_clients = config.max_clients(),
            sessions = budget.sessions,
            metrics = budget.metrics,
            pipes = budget.pipes,
            "the open-file limit is below what this configuration can need \
             (2 descriptors per CONNECT, 3 per BIND, 4 per UDP association): \
             at the limit new clients wait and requests fail; raise it \
             (LimitNOFILE=, ulimit -n) or lower max_clients (or leave it \
             unset: it is then derived from the limit)"
        );
    }
}

/// Install the SIGINT and SIGTERM handlers now (before the listeners
/// exist, so that no signal can arrive unhandled), and return a future that
/// completes at the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

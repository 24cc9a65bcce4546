//! The sixsocks server runtime (tokio).
//!
//! Imports point down: `listener` → `session` → `socks6` (what precedes a
//! SOCKS 6 command) → `command` (the dispatcher, then one file per command)
//! → `udp_relay` / `outbound` / `tunnel` → `policy` → `context` → the
//! leaves (`rules`, `destination`, `resolve`, `happy_eyeballs`, `relay`,
//! ...).
//!
//! * [`config`]: the configuration (TOML file, embedded defaults, validation).
//! * [`listener`]: listening sockets, the accept loop, the client limit and
//!   graceful shutdown.
//! * [`address_limits`]: per-address caps on connections and handshakes in
//!   progress.
//! * [`session`]: one task per client: the handshake, then the command,
//!   then the per-session log line.
//! * [`context`]: what sessions share ([`context::Shared`], one generation
//!   of the configuration plus the live state carried across reloads) and
//!   each session's record (`context::Record`, with its typed
//!   `context::Outcome`).
//! * [`handshake`]: drives the `proto` handshake state machines over the
//!   socket.
//! * [`policy`]: rules on requests and resolved addresses, the command
//!   check, routes to upstreams, egress, own-socket refusal, target lookup.
//! * [`command`]: the commands, written once for every version behind one
//!   dispatcher over the `Replier` trait (`command/reply.rs`):
//!   `command/connect.rs` (CONNECT, SOCKS 6 initial data, TFO and stack
//!   options), `command/bind.rs` (BIND, SOCKS 6 backlog included),
//!   `command/udp.rs` (UDP ASSOCIATE's reply), `command/resolve.rs` (RESOLVE,
//!   RESOLVE_PTR), `command/noop.rs` (SOCKS 6 NOOP).
//! * [`outbound`]: a CONNECT's outbound connection, direct or upstream.
//! * [`tunnel`]: after the reply: upstream leftovers, the recorded relay,
//!   the close after a refusal.
//! * [`socks6`]: SOCKS 6 requests before their command: idempotence tokens
//!   (`socks6/tokens.rs`) and the authentication reply; the backlog
//!   listeners BIND keeps (`socks6/backlog.rs`).
//! * [`happy_eyeballs`]: outbound TCP connections (happy eyeballs over every
//!   address, socket options, timeouts).
//! * [`resolve`]: name resolution through the system resolver (forward and
//!   reverse), off the async threads.
//! * [`bind_sockets`]: the live BIND listeners (own sockets while they live).
//! * [`udp_relay`]: the UDP relay behind UDP ASSOCIATE: where datagrams are
//!   relayed (the counts across associations in `udp_relay/limits.rs`).
//! * [`relay`]: moving bytes both ways once a connection is up.
//! * [`destination`]: which addresses are the same destination (mapped,
//!   compatible, NAT64 and numeric-name forms; unspecified targets refused).
//! * [`rules`]: the ordered access rules (first match wins) and what they decide.
//! * [`limits`]: per-user limits (concurrent sessions, bandwidth) and the
//!   registry of live users that enforces them.
//! * [`auth`]: the users file and password verification (argon2id).
//! * [`error`]: request errors and the one place mapping them to reply codes.
//! * [`metrics`]: the exported metrics (names, help, buckets) and their helpers.
//! * [`metrics_endpoint`]: the HTTP endpoint that serves them to Prometheus
//!   (connection cap, deadlines, size cap).
//! * [`descriptors`]: how many file descriptors a configuration can hold,
//!   for the open-file limit.
//! * [`backoff`] and [`rate_limited_log`]: what the accept loops share, so
//!   that a failing `accept` neither spins nor floods the log.
//! * [`upstream`]: upstream chaining: requests carried out through another
//!   SOCKS proxy (`[upstream.NAME]`, e.g. Tor).

#![deny(unsafe_code)]

pub mod address_limits;
pub mod auth;
pub mod backoff;
pub mod bind_sockets;
pub mod command;
pub mod config;
pub mod context;
pub mod cores;
pub mod descriptors;
pub mod destination;
pub mod dns_over_socks;
pub mod error;
pub mod handshake;
pub mod happy_eyeballs;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod metrics_endpoint;
pub mod outbound;
pub mod policy;
pub mod rate_limited_log;
pub mod relay;
pub mod resolve;
pub mod rules;
pub mod session;
pub mod socks6;
pub mod tunnel;
pub mod udp_relay;
pub mod upstream;

pub use config::Config;
pub use listener::Server;

//! How many file descriptors a configuration can hold at once, for the
//! open-file limit (RLIMIT_NOFILE) the server asks for at start.
//!
//! Why a budget per command rather than "two per client": a CONNECT holds
//! two sockets (client, target), but a BIND holds three (control
//! connection, listening socket, the inbound connection) and a UDP
//! association four (control connection, relay socket, and up to two
//! outbound sockets, IPv4 and IPv6). The metrics endpoint's connections and
//! the relay's splice pipes come on top. Too low a limit shows as `accept`
//! failing with EMFILE: new clients wait in the backlog (see
//! [`crate::backoff`]) and sessions fail to open their outbound sockets.
//!
//! Not counted (they are short-lived, and [`SLACK`] covers them): the extra
//! sockets of a happy-eyeballs connect while several addresses are tried,
//! and the sockets the system resolver opens for a lookup.

use crate::config::Config;
use crate::relay::{RelayMode, MAX_PIPE_FDS};

/// A CONNECT (or SOCKS 6 CONNECT, or one through an upstream): client and target.
pub const PER_CONNECT: u64 = 2;
/// A BIND: control connection, listening socket, inbound connection.
pub const PER_BIND: u64 = 3;
/// A UDP association: control connection, relay socket, two outbound sockets.
pub const PER_UDP: u64 = 4;
/// The process's own: stdio, the runtime's epoll and wakers, the listeners'
/// neighbours, the resolver's lookups, happy-eyeballs attempts.
pub const SLACK: u64 = 64;

/// The soft open-file limit (RLIMIT_NOFILE) of this process; if it cannot
/// be read, 1024 (the usual default).
pub fn open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// The listening sockets, one per address and runtime thread, and the
/// event loop (epoll and its waker) of every runtime thread but the first
/// ([`SLACK`] has that one's).
fn own_sockets(config: &Config) -> u64 {
    let threads = config.threads() as u64;
    config.listen.len() as u64 * threads + 2 * (threads - 1)
}

/// The default of `max_clients` under an open-file limit of `limit`: two
/// descriptors per relayed client (client and target) once the listeners,
/// the metrics endpoint and [`SLACK`] are set aside. Relay pipes are not
/// reserved: an idle relay holds none, and a read that cannot get a pipe
/// copies instead. Clients holding a BIND (3) or a UDP association (4) can
/// reach the limit before `max_clients`: then `accept` waits (see
/// [`crate::backoff`]) and new outbound sockets fail, and the log says so.
/// At least 1.
pub fn derived_max_clients(config: &Config, limit: u64) -> usize {
    let metrics = match config.metrics {
        Some(_) => 1 + crate::metrics_endpoint::MAX_CONNECTIONS as u64,
        None => 0,
    };
    let reserved = SLACK + own_sockets(config) + metrics;
    let clients = limit.saturating_sub(reserved) / PER_CONNECT;
    usize::try_from(clients).unwrap_or(usize::MAX).max(1)
}

impl Config {
    /// Concurrent clients allowed: `max_clients` if set, otherwise what
    /// the process's open-file limit holds right now (read at each call:
    /// the binary raises the limit before the server binds), see
    /// [`derived_max_clients`]. (Here, beside the budget it comes from.)
    pub fn max_clients(&self) -> usize {
        match self.max_clients {
            Some(n) => n,
            None => derived_max_clients(self, open_file_limit()),
        }
    }
}

/// The descriptors a configuration can need, by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Client sessions at their worst: `max_udp_associations` (at most
    /// `max_clients`) associations, every other client a BIND (or a
    /// CONNECT when BIND is off).
    pub sessions: u64,
    /// The listening sockets (one per address and runtime thread) and the
    /// further runtime threads' event loops.
    pub listeners: u64,
    /// The metrics endpoint: its listener and its connection cap.
    pub metrics: u64,
    /// Relay pipes (`auto` and `splice` modes).
    pub pipes: u64,
    /// [`SLACK`].
    pub slack: u64,
}

impl Budget {
    /// The budget of `config`; `metrics_connections` is the metrics
    /// endpoint's connection cap (counted only if `metrics` is set).
    pub fn of(config: &Config, metrics_connections: usize) -> Budget {
        let clients = config.max_clients() as u64;
        let udp = if config.allow_udp {
            (config.max_udp_associations as u64).min(clients)
        } else {
            0
        };
        let tcp = if config.allow_bind {
            PER_BIND
        } else {
            PER_CONNECT
        };
        Budget {
            sessions: udp * PER_UDP + (clients - udp) * tcp,
            listeners: own_sockets(config),
            metrics: config.metrics.map_or(0, |_| 1 + metrics_connections as u64),
            pipes: match config.relay_mode {
                RelayMode::Copy => 0,
                RelayMode::Auto | RelayMode::Splice => MAX_PIPE_FDS as u64,
            },
            slack: SLACK,
        }
    }

    /// All of it.
    pub fn total(&self) -> u64 {
        self.sessions + self.listeners + self.metrics + self.pipes + self.slack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_associations_cost_four_binds_three() {
        let mut c = Config {
            max_clients: Some(100),
            max_udp_associations: 10,
            relay_mode: RelayMode::Copy,
            ..Config::default()
        };
        let b = Budget::of(&c, 16);
        assert_eq!(b.sessions, 10 * 4 + 90 * 3);
        c.threads = 1;
        let b = Budget::of(&c, 16);
        assert_eq!(b.metrics, 0, "no metrics endpoint");
        assert_eq!(b.pipes, 0);
        assert_eq!(b.listeners, 1);
        assert_eq!(b.total(), 310 + 1 + SLACK);

        c.allow_bind = false;
        assert_eq!(Budget::of(&c, 16).sessions, 10 * 4 + 90 * 2);
        c.allow_udp = false;
        assert_eq!(Budget::of(&c, 16).sessions, 100 * 2);

        // More associations allowed than clients: every client may be one.
        c.allow_udp = true;
        c.max_udp_associations = 1000;
        assert_eq!(Budget::of(&c, 16).sessions, 100 * 4);

        c.metrics = Some("127.0.0.1:9180".parse().unwrap());
        assert_eq!(Budget::of(&c, 16).metrics, 17);
        c.relay_mode = RelayMode::Auto;
        assert_eq!(Budget::of(&c, 16).pipes, MAX_PIPE_FDS as u64);
    }

    #[test]
    fn an_explicit_max_clients_needs_more_than_two_per_client() {
        let c = Config {
            max_clients: Some(4096),
            ..Config::default()
        };
        let b = Budget::of(&c, 16);
        assert!(b.total() > 2 * 4096 + 64, "{b:?}");
    }

    #[test]
    fn the_default_max_clients_is_two_descriptors_per_client_under_the_limit() {
        let mut c = Config {
            threads: 1,
            ..Config::default()
        };
        assert_eq!(c.max_clients, None);
        // One listener and the slack set aside, two per client.
        assert_eq!(derived_max_clients(&c, 20_000), (20_000 - 64 - 1) / 2);
        assert_eq!(derived_max_clients(&c, 1024), (1024 - 64 - 1) / 2);
        // The bench's idle case: 9,900 relays under a hard limit of 20,000.
        assert!(derived_max_clients(&c, 20_000) >= 9_900);
        // The metrics endpoint's listener and connections come off too.
        c.metrics = Some("127.0.0.1:9180".parse().unwrap());
        let metrics = 1 + crate::metrics_endpoint::MAX_CONNECTIONS;
        assert_eq!(
            derived_max_clients(&c, 20_000),
            (20_000 - 64 - 1 - metrics) / 2
        );
        // Four runtime threads: three more listening sockets, three more
        // event loops (epoll and waker).
        c.threads = 4;
        assert_eq!(
            derived_max_clients(&c, 20_000),
            (20_000 - 64 - 4 - 6 - metrics) / 2
        );
        // Never zero, even under an absurd limit.
        assert_eq!(derived_max_clients(&c, 10), 1);
        // It follows the process's limit; an explicit setting wins.
        assert_eq!(c.max_clients(), derived_max_clients(&c, open_file_limit()));
        c.max_clients = Some(7);
        assert_eq!(c.max_clients(), 7);
    }
}

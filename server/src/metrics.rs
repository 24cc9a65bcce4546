//! Metrics: every series the server exports, its help text, histogram
//! buckets, and the one-line helpers the rest of the server calls.
//!
//! Recording goes through the [`metrics`] facade. `sixsocks serve
//! --metrics ADDR:PORT` installs the Prometheus recorder (see
//! `sixsocks/src/serve.rs`), sets the buckets from [`HISTOGRAMS`], calls
//! [`describe`] and serves the page from the `metrics_endpoint` module;
//! without it no recorder is installed and every helper here is a no-op
//! (the facade's global recorder is a no-op one).
//!
//! Names are exported as written here (no suffix is added), and every label
//! value comes from a small fixed set, so that the number of series stays
//! bounded whatever clients send.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `sixsocks_sessions_total` | counter | `version`, `command`, `reply` |
//! | `sixsocks_active_sessions` | gauge | |
//! | `sixsocks_socks6_sessions` | gauge | |
//! | `sixsocks_bytes_total` | counter | `direction` (`up`: client → target, `down`) |
//! | `sixsocks_handshake_seconds` | histogram | |
//! | `sixsocks_connect_seconds` | histogram | `result` (`ok`, `error`) |
//! | `sixsocks_auth_failures_total` | counter | |
//! | `sixsocks_auth_throttled_total` | counter | `reason` (`address`, `busy`) |
//! | `sixsocks_rule_blocks_total` | counter | `stage` |
//! | `sixsocks_udp_datagrams_total` | counter | `direction` |
//! | `sixsocks_udp_drops_total` | counter | `reason` |
//! | `sixsocks_connections_rejected_total` | counter | `reason` |
//! | `sixsocks_metrics_refused_total` | counter | `reason` |
//! | `sixsocks_thread_busy_ratio` | gauge | `thread` |
//! | `sixsocks_thread_connections_total` | counter | `thread`, `how` (`served`, `handed_off`) |

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use sixsocks_proto::{Command, ReplyCode};

pub const SESSIONS: &str = "sixsocks_sessions_total";
pub const ACTIVE_SESSIONS: &str = "sixsocks_active_sessions";
pub const SOCKS6_SESSIONS: &str = "sixsocks_socks6_sessions";
pub const BYTES: &str = "sixsocks_bytes_total";
pub const HANDSHAKE_SECONDS: &str = "sixsocks_handshake_seconds";
pub const CONNECT_SECONDS: &str = "sixsocks_connect_seconds";
pub const AUTH_FAILURES: &str = "sixsocks_auth_failures_total";
pub const AUTH_THROTTLED: &str = "sixsocks_auth_throttled_total";
pub const RULE_BLOCKS: &str = "sixsocks_rule_blocks_total";
pub const UDP_DATAGRAMS: &str = "sixsocks_udp_datagrams_total";
pub const UDP_DROPS: &str = "sixsocks_udp_drops_total";
pub const CONNECTIONS_REJECTED: &str = "sixsocks_connections_rejected_total";
pub const METRICS_REFUSED: &str = "sixsocks_metrics_refused_total";
pub const THREAD_BUSY: &str = "sixsocks_thread_busy_ratio";
pub const THREAD_CONNECTIONS: &str = "sixsocks_thread_connections_total";

/// The `reason` labels of [`METRICS_REFUSED`].
pub const METRICS_REFUSED_REASONS: &[&str] =
    &["max_connections", "timeout", "too_large", "bad_request"];

/// Handshake latency buckets (seconds): from a loopback client's few
/// hundred microseconds to the default 10 s handshake timeout. Includes
/// password verification (argon2id, tens of milliseconds).
pub const HANDSHAKE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Outbound connect latency buckets (seconds): LAN to intercontinental,
/// up to the default 30 s connect timeout.
pub const CONNECT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every histogram and its buckets, for the exporter's configuration.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (HANDSHAKE_SECONDS, HANDSHAKE_BUCKETS),
    (CONNECT_SECONDS, CONNECT_BUCKETS),
];

/// Register the help texts with the installed recorder, and create the
/// unlabelled series so that they read 0 before anything happened.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        SESSIONS,
        "Client sessions ended, by SOCKS version, command and reply code (`none`: \
         the session ended before that was known or sent)."
    );
    describe_gauge!(ACTIVE_SESSIONS, "Client sessions running now.");
    describe_gauge!(
        SOCKS6_SESSIONS,
        "SOCKS 6 sessions (draft -11, the reference dialect) the proxy keeps now."
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Payload bytes relayed (TCP and UDP), by direction: up is client to target. \
         A running session's bytes are added in 64 KiB steps, the rest when it ends."
    );
    describe_histogram!(
        HANDSHAKE_SECONDS,
        Unit::Seconds,
        "Time from accepting a client to having its request (greeting, authentication, request)."
    );
    describe_histogram!(
        CONNECT_SECONDS,
        Unit::Seconds,
        "Time to establish an outbound TCP connection (all addresses tried), by result."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Failed username/password authentications (the password was checked and is wrong, \
         or the user is unknown)."
    );
    describe_counter!(
        AUTH_THROTTLED,
        "Username/password logins refused without checking the password, by reason: \
         address (the client address is over its failed-login budget, auth_failure_burst \
         and auth_failures_per_minute), busy (too many password checks waiting)."
    );
    describe_counter!(
        RULE_BLOCKS,
        "Connections, requests and datagrams blocked by a rule, by the stage that blocked \
         them (accept, request, udp)."
    );
    describe_counter!(
        UDP_DATAGRAMS,
        "UDP datagrams relayed, by direction: up is client to remote host."
    );
    describe_counter!(UDP_DROPS, "UDP datagrams dropped, by reason.");
    describe_counter!(
        CONNECTIONS_REJECTED,
        "Client connections closed at accept, by reason (max_clients: the limit was reached; \
         max_clients_per_address, max_handshakes_per_address: one address's limit was reached)."
    );
    describe_counter!(
        METRICS_REFUSED,
        "Connections to this metrics endpoint that got no page, by reason: max_connections \
         (closed at accept, the endpoint's connection cap was reached), timeout (the request \
         head or the response took too long), too_large (request head over 8 KiB), \
         bad_request (not an HTTP/1 request)."
    );
    describe_gauge!(
        THREAD_BUSY,
        "How busy each runtime thread was (0 to 1, the share of time it was awake, \
         averaged over about the last half second): a thread over 0.7, and 0.25 above the \
         least busy, hands the clients it accepts to that one."
    );
    describe_counter!(
        THREAD_CONNECTIONS,
        "Client connections by runtime thread: served (accepted there, or handed to it) \
         and handed_off (accepted there, served by another)."
    );
    gauge!(ACTIVE_SESSIONS).set(0.0);
    gauge!(SOCKS6_SESSIONS).set(0.0);
    counter!(AUTH_FAILURES).absolute(0);
    for t in [Throttled::Address, Throttled::Busy] {
        counter!(AUTH_THROTTLED, "reason" => t.label()).absolute(0);
    }
    for d in [Direction::Up, Direction::Down] {
        counter!(BYTES, "direction" => d.label()).absolute(0);
        counter!(UDP_DATAGRAMS, "direction" => d.label()).absolute(0);
    }
    for reason in METRICS_REFUSED_REASONS {
        counter!(METRICS_REFUSED, "reason" => *reason).absolute(0);
    }
}

/// Which way bytes or datagrams went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → target.
    Up,
    /// Target → client.
    Down,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Off when the process installs no recorder: the series recorded for
/// every session, and the threads' periodic ones, are then skipped before
/// their keys are built (a key with labels is an allocation even for the
/// no-op recorder).
static RECORDING: AtomicBool = AtomicBool::new(true);

/// No recorder will be installed (`sixsocks serve` without `--metrics`):
/// skip the series recorded per session and per thread. Call before
/// serving.
pub fn no_recorder() {
    RECORDING.store(false, Ordering::Relaxed);
}

#[inline]
fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// One session ended: count it by version, command and reply code.
pub fn session_end(
    version: Option<&'static str>,
    command: Option<Command>,
    reply: Option<ReplyCode>,
) {
    if !recording() {
        return;
    }
    let reply = reply.map_or_else(|| "none".to_string(), |r| r.to_string());
    counter!(
        SESSIONS,
        "version" => version.unwrap_or("none"),
        "command" => command.map_or("none", Command::name),
        "reply" => reply,
    )
    .increment(1);
}

/// Counts a session in the active-sessions gauge while it lives.
#[must_use = "the session counts as active only while the guard lives"]
pub struct ActiveSession(());

/// A session starts: returns the guard that keeps it counted.
/// The number of SOCKS 6 sessions kept now.
pub fn socks6_sessions(n: usize) {
    gauge!(SOCKS6_SESSIONS).set(n as f64);
}

pub fn active_session() -> ActiveSession {
    if recording() {
        gauge!(ACTIVE_SESSIONS).increment(1.0);
    }
    ActiveSession(())
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        if recording() {
            gauge!(ACTIVE_SESSIONS).decrement(1.0);
        }
    }
}

/// Add `n` bytes to the exported byte counter.
pub fn bytes(direction: Direction, n: u64) {
    if n > 0 {
        counter!(BYTES, "direction" => direction.label()).increment(n);
    }
}

/// A session's byte counters reach the exported counter in steps of this
/// many bytes while the session runs (a power of two).
pub const BYTES_STEP: u64 = 64 * 1024;

/// Add `n` relayed bytes to a session's own counter (`session`), and pass
/// every whole [`BYTES_STEP`] it crosses on to the exported counter.
///
/// Why steps: the relay hot path then pays one atomic add, as before, plus
/// a comparison; the exporter's registry is reached at most once per 64 KiB
/// and direction, not per write. A long session is visible while it runs
/// (within 64 KiB), not only at its end, and no timer or registry of live
/// sessions is needed. [`session_bytes_end`] adds what is left below the
/// last step, so that the exported total is exact: the steps crossed by
/// all the additions to one counter sum to `total / BYTES_STEP` steps, so
/// exactly `total % BYTES_STEP` is left. That holds only if every addition
/// to a session's counters goes through here.
#[inline]
pub fn count_bytes(session: &AtomicU64, direction: Direction, n: u64) {
    let before = session.fetch_add(n, Ordering::Relaxed);
    let steps = (before + n) / BYTES_STEP - before / BYTES_STEP;
    if steps > 0 {
        bytes(direction, steps * BYTES_STEP);
    }
}

/// A session ended with `up` and `down` bytes counted through
/// [`count_bytes`]: add the part not yet exported.
pub fn session_bytes_end(up: u64, down: u64) {
    if !recording() {
        return;
    }
    bytes(Direction::Up, up % BYTES_STEP);
    bytes(Direction::Down, down % BYTES_STEP);
}

/// A handshake finished with a request, `d` after the client was accepted.
pub fn handshake_seconds(d: Duration) {
    if !recording() {
        return;
    }
    histogram!(HANDSHAKE_SECONDS).record(d.as_secs_f64());
}

/// An outbound connection was established (`ok`) or given up, after `d`.
pub fn connect_seconds(d: Duration, ok: bool) {
    if !recording() {
        return;
    }
    let result = if ok { "ok" } else { "error" };
    histogram!(CONNECT_SECONDS, "result" => result).record(d.as_secs_f64());
}

/// A username/password check failed.
pub fn auth_failure() {
    counter!(AUTH_FAILURES).increment(1);
}

/// Why a login was refused without checking its password (the `reason`
/// label of [`AUTH_THROTTLED`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttled {
    /// The client's address is over its failed-login budget.
    Address,
    /// The password verifiers' queue is full.
    Busy,
}

impl Throttled {
    fn label(self) -> &'static str {
        match self {
            Throttled::Address => "address",
            Throttled::Busy => "busy",
        }
    }
}

/// A login was refused without checking its password.
pub fn auth_throttled(reason: Throttled) {
    counter!(AUTH_THROTTLED, "reason" => reason.label()).increment(1);
}

/// A rule blocked something. `stage` is one of `accept` (a connection,
/// closed at once), `request` (refused with `02` / `5B`) and `udp` (a
/// datagram, dropped).
pub fn rule_block(stage: &'static str) {
    counter!(RULE_BLOCKS, "stage" => stage).increment(1);
}

/// A request failed with `e` (its failure reply is about to go out):
/// count it if a rule blocked it. Counted here, once per request, rather
/// than per verdict: a name's addresses are checked one by one.
pub fn request_refused(e: &crate::error::RequestError) {
    if let crate::error::RequestError::Blocked(_) = e {
        rule_block("request");
    }
}

/// A UDP datagram was relayed.
pub fn udp_datagram(direction: Direction) {
    counter!(UDP_DATAGRAMS, "direction" => direction.label()).increment(1);
}

/// Why a UDP datagram was dropped (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpDrop {
    /// Not from the client's address (or port, once fixed).
    NotFromClient,
    /// A header that does not parse, or a SOCKS 6 association id that is not ours.
    BadHeader,
    /// A fragment that cannot be reassembled, or a sequence evicted or timed out.
    Fragment,
    /// Payload larger than `max_datagram`.
    TooLarge,
    /// Its destination name did not resolve.
    Unresolved,
    /// Too many datagrams or lookups waiting for names.
    Overload,
    /// The bytes waiting for name lookups would pass their cap (per
    /// association or in all: `udp_lookup_queue_bytes`,
    /// `udp_lookup_queue_bytes_total`).
    QueueFull,
    /// An answer before the client's address is known or the association confirmed.
    NotReady,
    /// Sending failed (including encoding the header and opening the socket).
    SendError,
    /// Blocked by a rule.
    Blocked,
}

impl UdpDrop {
    pub fn label(self) -> &'static str {
        match self {
            UdpDrop::NotFromClient => "not_from_client",
            UdpDrop::BadHeader => "bad_header",
            UdpDrop::Fragment => "fragment",
            UdpDrop::TooLarge => "too_large",
            UdpDrop::Unresolved => "unresolved",
            UdpDrop::Overload => "overload",
            UdpDrop::QueueFull => "queue_full",
            UdpDrop::NotReady => "not_ready",
            UdpDrop::SendError => "send_error",
            UdpDrop::Blocked => "blocked",
        }
    }
}

/// `n` UDP datagrams were dropped for `reason`.
pub fn udp_drop(reason: UdpDrop, n: u64) {
    if n > 0 {
        counter!(UDP_DROPS, "reason" => reason.label()).increment(n);
    }
}

/// Runtime thread `thread`'s load (per mille) and its connection counts,
/// from its sampler (a few times a second, not at every accept).
pub fn thread_load(thread: &str, permille: u32, served: u64, handed_off: u64) {
    if !recording() {
        return;
    }
    let label = || thread.to_owned();
    gauge!(THREAD_BUSY, "thread" => label()).set(f64::from(permille) / 1000.0);
    counter!(THREAD_CONNECTIONS, "thread" => label(), "how" => "served").absolute(served);
    counter!(THREAD_CONNECTIONS, "thread" => label(), "how" => "handed_off").absolute(handed_off);
}

/// A client connection was closed at accept because the client limit was reached.
pub fn rejected_max_clients() {
    connection_rejected("max_clients");
}

/// A client connection was closed at accept for `reason` (`max_clients`,
/// `max_clients_per_address`, `max_handshakes_per_address`).
pub fn connection_rejected(reason: &'static str) {
    counter!(CONNECTIONS_REJECTED, "reason" => reason).increment(1);
}

/// The metrics endpoint closed a connection without the page, for `reason`
/// (one of [`METRICS_REFUSED_REASONS`]).
pub fn metrics_refused(reason: &'static str) {
    debug_assert!(METRICS_REFUSED_REASONS.contains(&reason), "{reason}");
    counter!(METRICS_REFUSED, "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// The value of the series `name{labels}` in a Prometheus text page.
    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn bytes_in_steps_add_up_exactly() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let page = metrics::with_local_recorder(&recorder, || {
            describe();
            let up = AtomicU64::new(0);
            let down = AtomicU64::new(0);
            // Sizes that cross steps singly, several at once, and not at all.
            let mut expected_up = 0u64;
            for n in [1u64, 65_534, 1, 1, 300_000, 7, 65_536, 0, 12] {
                count_bytes(&up, Direction::Up, n);
                expected_up += n;
            }
            count_bytes(&down, Direction::Down, 10);
            // While the session runs, whole steps only.
            let running = handle.render();
            let step_part = expected_up / BYTES_STEP * BYTES_STEP;
            assert_eq!(
                value(&running, "sixsocks_bytes_total{direction=\"up\"}"),
                Some(step_part as f64),
                "{running}"
            );
            assert_eq!(
                value(&running, "sixsocks_bytes_total{direction=\"down\"}"),
                Some(0.0)
            );
            session_bytes_end(up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
            assert_eq!(up.load(Ordering::Relaxed), expected_up);
            (handle.render(), expected_up)
        });
        let (page, expected_up) = page;
        assert_eq!(
            value(&page, "sixsocks_bytes_total{direction=\"up\"}"),
            Some(expected_up as f64),
            "{page}"
        );
        assert_eq!(
            value(&page, "sixsocks_bytes_total{direction=\"down\"}"),
            Some(10.0)
        );
    }

    #[test]
    fn labels_and_help_texts() {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in HISTOGRAMS {
            builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(name.to_string()),
                    buckets,
                )
                .unwrap();
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            session_end(
                Some("socks5"),
                Some(Command::CONNECT),
                Some(ReplyCode::Succeeded),
            );
            session_end(None, None, None);
            {
                let _a = active_session();
                let _b = active_session();
                let page = handle.render();
                assert_eq!(value(&page, "sixsocks_active_sessions"), Some(2.0));
            }
            handshake_seconds(Duration::from_millis(3));
            connect_seconds(Duration::from_millis(30), false);
            auth_failure();
            auth_throttled(Throttled::Address);
            auth_throttled(Throttled::Address);
            rule_block("request");
            udp_datagram(Direction::Down);
            udp_drop(UdpDrop::TooLarge, 2);
        });
        let page = handle.render();
        for (series, v) in [
            (
                "sixsocks_sessions_total{version=\"socks5\",command=\"connect\",reply=\"succeeded\"}",
                1.0,
            ),
            (
                "sixsocks_sessions_total{version=\"none\",command=\"none\",reply=\"none\"}",
                1.0,
            ),
            ("sixsocks_active_sessions", 0.0),
            ("sixsocks_handshake_seconds_bucket{le=\"0.0025\"}", 0.0),
            ("sixsocks_handshake_seconds_bucket{le=\"0.005\"}", 1.0),
            ("sixsocks_handshake_seconds_count", 1.0),
            ("sixsocks_connect_seconds_count{result=\"error\"}", 1.0),
            ("sixsocks_auth_failures_total", 1.0),
            ("sixsocks_auth_throttled_total{reason=\"address\"}", 2.0),
            ("sixsocks_auth_throttled_total{reason=\"busy\"}", 0.0),
            ("sixsocks_rule_blocks_total{stage=\"request\"}", 1.0),
            ("sixsocks_udp_datagrams_total{direction=\"down\"}", 1.0),
            ("sixsocks_udp_datagrams_total{direction=\"up\"}", 0.0),
            ("sixsocks_udp_drops_total{reason=\"too_large\"}", 2.0),
        ] {
            assert_eq!(value(&page, series), Some(v), "{series} in\n{page}");
        }
        assert!(
            page.contains("# HELP sixsocks_auth_failures_total Failed"),
            "{page}"
        );
        assert!(
            page.contains("# HELP sixsocks_auth_throttled_total Username/password logins refused"),
            "{page}"
        );
        assert!(page.contains("# TYPE sixsocks_connect_seconds histogram"));
    }
}

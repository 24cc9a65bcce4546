//! A log line that is written at most once a second, however often its
//! event happens, with the number of events it held back.
//!
//! Why: events a peer can provoke at will (a client over the limit, a
//! blocked address) or that repeat by themselves (accept failing on a full
//! descriptor table) must not turn into a flood of log lines: at the
//! descriptor limit a loop that logs every failure writes millions of lines
//! a second, fills the disk and starves the proxy. Every accept loop uses
//! one of these per kind of event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Shortest time between two lines of one [`RateLimitedLog`].
const INTERVAL_MS: u64 = 1000;

/// Logs at most once a second, counting what it held back.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    /// When it last logged, in milliseconds since [`origin`] plus
    /// [`INTERVAL_MS`] (so that 0, the initial value, means "never").
    last_ms: AtomicU64,
    /// Events held back since the last line.
    suppressed: AtomicU64,
}

/// The process's reference instant for [`RateLimitedLog`] clocks.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl RateLimitedLog {
    /// One event: call `f` with the number of events held back since the
    /// last line if a second has passed since then, else count this one.
    pub fn log(&self, f: impl FnOnce(u64)) {
        let now = origin().elapsed().as_millis() as u64 + INTERVAL_MS;
        self.log_at(now, f);
    }

    /// [`Self::log`] at `now_ms` (milliseconds on the log's clock, at least
    /// [`INTERVAL_MS`]); separate so that tests need not sleep.
    fn log_at(&self, now_ms: u64, f: impl FnOnce(u64)) {
        let last = self.last_ms.load(Ordering::Relaxed);
        // compare_exchange: of two threads seeing the same old value, only
        // one writes the line.
        if now_ms.saturating_sub(last) >= INTERVAL_MS
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            f(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suppressed counts of the lines written for events at `times`.
    fn lines(times: &[u64]) -> Vec<u64> {
        let log = RateLimitedLog::default();
        let mut out = Vec::new();
        for &t in times {
            log.log_at(t + INTERVAL_MS, |n| out.push(n));
        }
        out
    }

    #[test]
    fn the_first_event_logs_then_one_line_a_second() {
        assert_eq!(lines(&[0]), [0]);
        assert_eq!(lines(&[0, 1, 500, 999]), [0]);
        assert_eq!(lines(&[0, 1, 500, 999, 1000]), [0, 3]);
        assert_eq!(lines(&[0, 1000, 2000, 2001, 5000]), [0, 0, 0, 1]);
    }

    #[test]
    fn a_million_events_in_a_second_make_one_line() {
        let log = RateLimitedLog::default();
        let mut written = Vec::new();
        for i in 0..1_000_000u64 {
            log.log_at(INTERVAL_MS + i / 1000, |n| written.push(n));
        }
        log.log_at(2 * INTERVAL_MS, |n| written.push(n));
        assert_eq!(written, [0, 999_999]);
    }

    #[test]
    fn the_real_clock_logs_the_first_event() {
        let log = RateLimitedLog::default();
        let mut n = None;
        log.log(|s| n = Some(s));
        assert_eq!(n, Some(0));
        log.log(|_| panic!("a second line within a second"));
    }
}

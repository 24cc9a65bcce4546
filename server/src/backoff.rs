//! The pause an accept loop takes after `accept` fails.
//!
//! Why: `accept` fails for as long as the cause lasts. At the descriptor
//! limit (EMFILE, ENFILE) the pending connection stays in the backlog, so
//! the listener stays readable and a loop that retries at once spins a core
//! and, if it logs each failure, floods the log (the Prometheus exporter's
//! listener wrote 2.98 million lines in 4 s that way). A pause that doubles
//! while the failures go on, up to a cap, keeps the retries cheap; the
//! first success resets it, so a single failed accept costs one short pause.

use std::time::Duration;

/// A growing pause: `first`, twice that, ... up to `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first pause is `first`, and no pause longer than `cap`.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first.min(cap),
        }
    }

    /// The pause to take now; the next one is twice as long (at most the cap).
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.cap);
        pause
    }

    /// `accept` failed with `error`: log it through `log` (at most once a
    /// second, with the count held back; `who` prefixes the message, e.g.
    /// `"metrics endpoint: "`) and return the pause to take before trying
    /// again. Both accept loops (SOCKS and metrics) go through here.
    pub fn after_accept_error(
        &mut self,
        log: &crate::rate_limited_log::RateLimitedLog,
        error: &std::io::Error,
        who: &str,
    ) -> Duration {
        let pause = self.next_pause();
        log.log(|suppressed| {
            tracing::error!(
                error = %error,
                suppressed,
                pause_ms = pause.as_millis() as u64,
                "{who}accept failed; retrying"
            )
        });
        pause
    }

    /// Things work again: the next failure starts from the first pause.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.cap);
    }

    /// Sleep for [`Self::next_pause`].
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(1000));
        let pauses: Vec<_> = (0..10).map(|_| b.next_pause()).collect();
        assert_eq!(
            pauses,
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000].map(ms)
        );
        b.reset();
        assert_eq!(b.next_pause(), ms(10));
        assert_eq!(Backoff::new(ms(50), ms(20)).next_pause(), ms(20));
    }
}

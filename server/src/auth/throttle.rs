//! A budget of failed logins per client address.
//!
//! Every failed password check costs the server an argon2 run (tens of
//! milliseconds of a core, by design). Without a budget one client could
//! keep every verifier thread busy, so that nobody else can log in, and try
//! passwords as fast as the server can check them. Each address (IPv4, or
//! the /64 prefix of an IPv6 address, which one host usually owns whole)
//! may fail `auth_failure_burst` times in a row; the budget comes back at
//! `auth_failures_per_minute`. An address over its budget is refused
//! without running argon2 (so the refusal is cheap, and a guess is not even
//! checked), whether its password is right or not: the server cannot know
//! without the check it is saving.
//!
//! Only failures spend the budget: a client that logs in correctly, however
//! often and however many connections at once, is never throttled.
//! Attempts already checking when the budget runs out still finish (at most
//! the verifier queue), so the overshoot is bounded too.
//!
//! The budget is a GCRA (generic cell rate algorithm) token bucket: each
//! address keeps one instant, the time at which its budget would be full
//! again. Integer durations, no floats, no timers; the time is always an
//! argument, so the tests run without sleeping.
//!
//! The table of addresses is bounded ([`MAX_ADDRESSES`]): addresses whose
//! budget is full again are forgotten first, and if that is not enough, the
//! one closest to being forgiven anyway (the oldest debt). Nobody else's
//! budget is reset by that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses remembered at most (about 100 bytes each).
pub const MAX_ADDRESSES: usize = 16 * 1024;

/// A throttled address is logged at most once per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The configured budget (`auth_failure_burst`, `auth_failures_per_minute`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Failures allowed in a row; 0 turns the throttle off.
    pub burst: u32,
    /// Failures given back per minute (at least 1 when `burst` is not 0).
    pub per_minute: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            burst: 10,
            per_minute: 10,
        }
    }
}

impl Budget {
    fn enabled(&self) -> bool {
        self.burst > 0 && self.per_minute > 0
    }
    /// Time for one failure to be given back.
    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
    /// How far ahead of now an address's full-again instant may be while
    /// it still has a failure left.
    fn tolerance(&self) -> Duration {
        self.interval() * self.burst.saturating_sub(1)
    }
}

/// What [`LoginThrottle::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password.
    Allowed,
    /// Over budget: refuse without checking. `log` is `Some(n)` when this
    /// refusal should be logged, `n` the refusals of this address left
    /// unlogged since its last line.
    Throttled { log: Option<u64> },
}

#[derive(Debug)]
struct Entry {
    /// When this address's budget is full again (GCRA's theoretical arrival time).
    full_at: Instant,
    /// The last log line about this address, and refusals since.
    warned: Option<Instant>,
    unlogged: u64,
}

/// Failed-login budgets by client address.
#[derive(Debug)]
pub struct LoginThrottle {
    budget: Budget,
    entries: HashMap<IpAddr, Entry>,
    cap: usize,
}

/// The key an address is budgeted under: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64 prefix ([`crate::destination::client_key`]).
pub use crate::destination::client_key as key;

impl LoginThrottle {
    pub fn new(budget: Budget) -> Self {
        LoginThrottle::with_capacity(budget, MAX_ADDRESSES)
    }

    /// At most `cap` addresses remembered (at least 1).
    pub fn with_capacity(budget: Budget, cap: usize) -> Self {
        LoginThrottle {
            budget,
            entries: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// A new budget (a configuration reload): addresses keep their debts,
    /// measured in the new budget from now on.
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
        if !budget.enabled() {
            self.entries.clear();
        }
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// May `ip` try a password at `now`?
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Admission {
        if !self.budget.enabled() {
            return Admission::Allowed;
        }
        let tolerance = self.budget.tolerance();
        let Some(e) = self.entries.get_mut(&key(ip)) else {
            return Admission::Allowed;
        };
        if e.full_at <= now + tolerance {
            return Admission::Allowed;
        }
        let log = match e.warned {
            Some(at) if now.saturating_duration_since(at) < WARN_EVERY => {
                e.unlogged += 1;
                None
            }
            _ => {
                e.warned = Some(now);
                Some(std::mem::take(&mut e.unlogged))
            }
        };
        Admission::Throttled { log }
    }

    /// `ip` failed a password check at `now`: spend one failure.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if !self.budget.enabled() {
            return;
        }
        let k = key(ip);
        if !self.entries.contains_key(&k) && self.entries.len() >= self.cap {
            self.make_room(now);
        }
        let interval = self.budget.interval();
        let e = self.entries.entry(k).or_insert(Entry {
            full_at: now,
            warned: None,
            unlogged: 0,
        });
        // Never further ahead than a whole budget: failures that finish
        // after the budget ran out (they were already checking) do not
        // push the address's forgiveness out without end.
        let cap = now + interval * self.budget.burst;
        e.full_at = (e.full_at.max(now) + interval).min(cap);
    }

    /// Free at least one place: forget the addresses whose budget is full
    /// again; if none is, the one whose budget is fullest (the oldest debt).
    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, e| e.full_at > now);
        if self.entries.len() >= self.cap {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.full_at)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Fail until refused; returns the failures allowed. The refusal that
    /// ends it counts as one (for the log-line bookkeeping).
    fn fail_until_throttled(t: &mut LoginThrottle, ip: IpAddr, now: Instant) -> u32 {
        let mut n = 0;
        while t.check(ip, now) == Admission::Allowed {
            t.failed(ip, now);
            n += 1;
            assert!(n < 1000, "never throttled");
        }
        n
    }

    #[test]
    fn a_burst_of_failures_then_refusals_then_one_back_per_interval() {
        // 3 in a row, one back every 10 s.
        let mut t = LoginThrottle::new(Budget {
            burst: 3,
            per_minute: 6,
        });
        let t0 = Instant::now();
        // The first refusal is logged (it ended fail_until_throttled);
        // later ones within WARN_EVERY are not, but counted.
        assert_eq!(fail_until_throttled(&mut t, A, t0), 3);
        assert_eq!(t.check(A, t0), Admission::Throttled { log: None });
        assert_eq!(t.check(A, t0 + secs(1)), Admission::Throttled { log: None });
        assert_eq!(t.check(A, t0 + secs(9)), Admission::Throttled { log: None });
        // Another address is not affected.
        assert_eq!(t.check(B, t0), Admission::Allowed);
        // 10 s later one attempt is back, and only one.
        assert_eq!(t.check(A, t0 + secs(10)), Admission::Allowed);
        t.failed(A, t0 + secs(10));
        assert_eq!(
            t.check(A, t0 + secs(10)),
            Admission::Throttled { log: None }
        );
        // After 30 s without failures the whole burst is back, and the
        // next log line says how many refusals went unlogged.
        let later = t0 + secs(40);
        assert_eq!(fail_until_throttled(&mut t, A, later), 3);
        let t2 = later + secs(61);
        for _ in 0..3 {
            assert_eq!(t.check(A, t2), Admission::Allowed);
            t.failed(A, t2);
        }
        // Refused unlogged: at t0 (the second), t0 + 1, + 9, + 10 and the
        // one that ended fail_until_throttled at `later`.
        assert_eq!(t.check(A, t2), Admission::Throttled { log: Some(5) });
    }

    #[test]
    fn late_failures_do_not_push_forgiveness_out_forever() {
        let mut t = LoginThrottle::new(Budget {
            burst: 2,
            per_minute: 60,
        });
        let t0 = Instant::now();
        // 50 checks that were already running all fail at once.
        for _ in 0..50 {
            t.failed(A, t0);
        }
        assert!(matches!(t.check(A, t0), Admission::Throttled { .. }));
        // At most a whole budget of debt: one attempt back after 1 s.
        assert_eq!(t.check(A, t0 + secs(1)), Admission::Allowed);
    }

    #[test]
    fn ipv6_is_budgeted_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let mut t = LoginThrottle::new(Budget {
            burst: 1,
            per_minute: 1,
        });
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.failed(a, t0);
        assert!(matches!(t.check(same64, t0), Admission::Throttled { .. }));
        assert_eq!(t.check(other64, t0), Admission::Allowed);
        t.failed(A, t0);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(matches!(t.check(mapped, t0), Admission::Throttled { .. }));
    }

    #[test]
    fn the_table_is_bounded_and_evicts_forgiven_then_oldest_debts() {
        let budget = Budget {
            burst: 1,
            per_minute: 1,
        };
        let mut t = LoginThrottle::with_capacity(budget, 4);
        let t0 = Instant::now();
        let ip = |i: u8| IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i));
        for i in 0..4 {
            t.failed(ip(i), t0 + secs(u64::from(i)));
        }
        assert_eq!(t.len(), 4);
        // A fifth address: the oldest debt (ip 0) goes, the others stay.
        t.failed(ip(4), t0 + secs(4));
        assert_eq!(t.len(), 4);
        assert_eq!(t.check(ip(0), t0 + secs(4)), Admission::Allowed);
        for i in 1..=4 {
            assert!(
                matches!(t.check(ip(i), t0 + secs(4)), Admission::Throttled { .. }),
                "{i}"
            );
        }
        // Once budgets are full again, those entries are what goes first.
        let much_later = t0 + secs(3600);
        for i in 10..14 {
            t.failed(ip(i), much_later);
        }
        assert_eq!(t.len(), 4);
        for i in 10..14 {
            assert!(matches!(
                t.check(ip(i), much_later),
                Admission::Throttled { .. }
            ));
        }
        // Flooding from many addresses never clears a debtor at once: the
        // table stays full of the most recent debts.
        for i in 20..120 {
            t.failed(ip(i), much_later + secs(1));
            assert!(t.len() <= 4);
        }
    }

    #[test]
    fn burst_zero_turns_it_off_and_a_reload_keeps_debts() {
        let mut t = LoginThrottle::new(Budget {
            burst: 0,
            per_minute: 10,
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            t.failed(A, t0);
        }
        assert_eq!(t.check(A, t0), Admission::Allowed);
        assert!(t.is_empty());
        t.set_budget(Budget {
            burst: 2,
            per_minute: 1,
        });
        t.failed(A, t0);
        t.failed(A, t0);
        assert!(matches!(t.check(A, t0), Admission::Throttled { .. }));
        // A larger burst after a reload lets the address try again.
        t.set_budget(Budget {
            burst: 5,
            per_minute: 1,
        });
        assert_eq!(t.check(A, t0), Admission::Allowed);
        assert_eq!(Budget::default().burst, 10);
    }
}

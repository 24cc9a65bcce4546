//! Per-user limits: concurrent sessions and bandwidth.
//!
//! The configuration is a table of [`UserSettings`] by user name
//! (`[users.alice]` in the TOML file); the entry `"*"` applies to every
//! authenticated user without an entry of their own (entries are not
//! merged: a user's own entry replaces `"*"` entirely).
//!
//! Users are the ones who presented a username and password: SOCKS5
//! username/password (RFC 1929) and the SOCKS 6 username/password method
//! ([`Credentials::UserPass`]). With a users file those are verified; without
//! one any name is accepted (Tor's stream isolation) and the limits then
//! apply to whatever name the client chose. Sessions without a username
//! (SOCKS5 method 00, SOCKS4 USERID, which is not verified) are not limited.
//!
//! [`UserTable`] is the live registry: one entry per user with sessions in
//! progress, holding the session count and one pair of [`TokenBucket`]s
//! (client → target, target → client) that all of the user's sessions
//! share. It outlives configuration reloads: [`UserTable::apply`] installs
//! new settings and live users pick up the new rates at once. An entry is
//! removed with the user's last session, so the table never holds more
//! entries than there are live sessions.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use sixsocks_proto::Credentials;
use tokio::time::Instant;

use crate::error::RequestError;

/// The key of the entry that applies to users without one of their own.
pub const ANY_USER: &str = "*";

/// Limits and settings of one user (`[users.NAME]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct UserSettings {
    /// Sessions of this user at once (any command, any version); one more
    /// is refused with `01` (SOCKS5 and SOCKS 6, "general failure"). None:
    /// no limit.
    pub max_sessions: Option<usize>,
    /// Bytes per second in each direction, shared by all of the user's TCP
    /// relays (CONNECT and BIND; UDP datagrams are not throttled). None: no
    /// limit.
    pub bandwidth: Option<u64>,
    /// Source address of this user's outbound connections (egress
    /// selection).
    pub source: Option<IpAddr>,
}

/// The `[users]` table: settings by user name, `"*"` for everyone else.
pub type UsersConfig = BTreeMap<String, UserSettings>;

/// Check the `[users]` table: names of 1 to 255 bytes, limits above zero.
pub fn validate(users: &UsersConfig) -> Result<(), String> {
    for (name, s) in users {
        if name.is_empty() || name.len() > 255 {
            return Err(format!(
                "`users.{name:?}`: user names are 1 to 255 bytes (SOCKS5 and SOCKS 6 carry no more)"
            ));
        }
        if s.max_sessions == Some(0) {
            return Err(format!(
                "`users.{name:?}.max_sessions` must be at least 1 (leave it out for no limit)"
            ));
        }
        if s.bandwidth == Some(0) {
            return Err(format!(
                "`users.{name:?}.bandwidth` must be at least 1 byte per second (leave it out for no limit)"
            ));
        }
    }
    Ok(())
}

/// The settings that apply to the user `name`: their own entry, else `"*"`.
pub fn settings_for<'a>(users: &'a UsersConfig, name: &[u8]) -> Option<&'a UserSettings> {
    std::str::from_utf8(name)
        .ok()
        .and_then(|n| users.get(n))
        .or_else(|| users.get(ANY_USER))
}

/// Bucket capacity for a rate: 100 ms of traffic, at least 16 KiB.
///
/// Why 100 ms: tokio's timer has a 1 ms resolution and, on a busy machine,
/// a throttled pump wakes later than asked; tokens that accumulate in the
/// meantime must not be lost, or the long-run rate would fall short of the
/// setting. A bucket holding 100 ms of traffic absorbs such delays, while a
/// user can never exceed the rate by more than 100 ms worth of bytes in any
/// window (after an idle period). Why 16 KiB at least: at low rates a
/// bucket of a few hundred bytes would cut every read into a few hundred
/// bytes with a wakeup each; 16 KiB lets a small exchange (a TLS handshake,
/// an HTTP request) through at once and keeps reads a few segments large.
pub fn burst(rate: u64) -> u64 {
    (rate / 10).max(16 * 1024)
}

/// The fewest tokens a throttled reader waits for: 10 ms of traffic, or
/// 1 KiB (at most one second of traffic) at low rates. A reader woken for
/// every few bytes would spin the timer; this bounds wakeups to about 100
/// per second per direction however high the rate.
fn min_grant(rate: u64) -> u64 {
    (rate / 100).max(rate.min(1024)).max(1)
}

const NANOS: u128 = 1_000_000_000;

/// A token bucket: one token per byte, refilled at `rate` bytes per second
/// up to [`burst`]`(rate)`. Several relays (threads) may share one.
///
/// A reader [`take`](TokenBucket::take)s up to what it may read before
/// reading, then [`refund`](TokenBucket::refund)s what it did not read, so
/// tokens are never spent on bytes that did not move and never overdrawn.
#[derive(Debug)]
pub struct TokenBucket {
    /// The rate, readable without the lock; 0: unlimited.
    rate: AtomicU64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Bytes per second; 0: unlimited.
    rate: u64,
    /// Tokens times 10⁹ (so that frequent refills lose no fraction).
    credit: u128,
    last: Instant,
}

impl BucketState {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = now;
        let cap = u128::from(burst(self.rate)) * NANOS;
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(u128::from(self.rate)))
            .min(cap);
    }
}

impl TokenBucket {
    /// A full bucket for `rate` bytes per second (None: unlimited).
    pub fn new(rate: Option<u64>) -> Self {
        let rate = rate.unwrap_or(0);
        TokenBucket {
            rate: AtomicU64::new(rate),
            state: Mutex::new(BucketState {
                rate,
                credit: u128::from(burst(rate)) * NANOS,
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate in bytes per second (None: unlimited).
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|&r| r > 0)
    }

    /// Change the rate. Tokens earned so far at the old rate are kept (up
    /// to the new capacity); a bucket that was unlimited starts full.
    pub fn set_rate(&self, rate: Option<u64>) {
        let rate = rate.unwrap_or(0);
        let mut st = self.lock();
        if st.rate == rate {
            return;
        }
        let now = Instant::now();
        if st.rate == 0 {
            st.credit = u128::from(burst(rate)) * NANOS;
        } else {
            st.refill(now);
        }
        st.rate = rate;
        st.last = now;
        st.credit = st.credit.min(u128::from(burst(rate)) * NANOS);
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// Take up to `want` tokens (at least one): `Ok(n)` with `1 <= n <=
    /// want` (all of `want` when unlimited), or `Err(wait)`: too few tokens
    /// now, try again after `wait` (at least 1 ms).
    pub fn take(&self, want: usize) -> Result<usize, Duration> {
        let want = want.max(1);
        if self.rate.load(Ordering::Relaxed) == 0 {
            return Ok(want);
        }
        let mut st = self.lock();
        if st.rate == 0 {
            return Ok(want);
        }
        st.refill(Instant::now());
        let have = st.credit / NANOS;
        let want64 = u64::try_from(want).unwrap_or(u64::MAX);
        let need = u128::from(want64.min(min_grant(st.rate)));
        if have >= need {
            let n = have.min(u128::from(want64));
            st.credit -= n * NANOS;
            // n <= want, a usize.
            return Ok(usize::try_from(n).unwrap_or(want));
        }
        let missing = need * NANOS - st.credit;
        let nanos = missing.div_ceil(u128::from(st.rate));
        let wait = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Err(wait.max(Duration::from_millis(1)))
    }

    /// Give back tokens taken but not used.
    pub fn refund(&self, n: usize) {
        if n == 0 || self.rate.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut st = self.lock();
        let cap = u128::from(burst(st.rate)) * NANOS;
        st.credit = st
            .credit
            .saturating_add(u128::try_from(n).unwrap_or(u128::MAX).saturating_mul(NANOS))
            .min(cap);
    }
}

/// The two buckets of one user, one per direction.
#[derive(Debug)]
pub struct Bandwidth {
    /// Client → target.
    pub up: TokenBucket,
    /// Target → client.
    pub down: TokenBucket,
}

impl Bandwidth {
    pub fn new(rate: Option<u64>) -> Self {
        Bandwidth {
            up: TokenBucket::new(rate),
            down: TokenBucket::new(rate),
        }
    }
    fn set_rate(&self, rate: Option<u64>) {
        self.up.set_rate(rate);
        self.down.set_rate(rate);
    }
}

/// The live registry of users with sessions in progress. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct UserTable {
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    settings: UsersConfig,
    live: HashMap<Vec<u8>, Live>,
}

#[derive(Debug)]
struct Live {
    sessions: usize,
    user: Arc<UserState>,
}

/// What all the sessions of one user share.
#[derive(Debug)]
pub struct UserState {
    name: Vec<u8>,
    bandwidth: Bandwidth,
}

/// One admitted session of a user: counts against `max_sessions` until it
/// is dropped, and gives access to the user's shared buckets.
#[derive(Debug)]
pub struct UserSession {
    table: Arc<UserTable>,
    user: Arc<UserState>,
}

impl UserSession {
    /// The buckets shared by all of this user's sessions.
    pub fn bandwidth(&self) -> &Bandwidth {
        &self.user.bandwidth
    }
    pub fn name(&self) -> &[u8] {
        &self.user.name
    }
}

impl Drop for UserSession {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(live) = t.live.get_mut(&self.user.name) {
            live.sessions -= 1;
            if live.sessions == 0 {
                t.live.remove(&self.user.name);
            }
        }
    }
}

impl UserTable {
    pub fn new(settings: UsersConfig) -> Self {
        UserTable {
            inner: Mutex::new(TableInner {
                settings,
                live: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Install new settings (on a configuration reload). Live users get
    /// their new rate at once; a lowered `max_sessions` refuses new sessions
    /// until the count is below it, and ends none.
    pub fn apply(&self, settings: &UsersConfig) {
        let mut t = self.lock();
        t.settings = settings.clone();
        for live in t.live.values() {
            let rate = settings_for(settings, &live.user.name).and_then(|s| s.bandwidth);
            live.user.bandwidth.set_rate(rate);
        }
    }

    /// Admit a session with these credentials: `Ok(None)` when they name no
    /// user (not limited), `Ok(Some(guard))` when admitted, and
    /// `Err(RequestError::Limit)` (logged) when the user already has
    /// `max_sessions` sessions.
    pub fn admit(
        self: &Arc<Self>,
        credentials: &Credentials,
    ) -> Result<Option<UserSession>, RequestError> {
        let Credentials::UserPass { username, .. } = credentials else {
            return Ok(None);
        };
        let mut t = self.lock();
        let settings = settings_for(&t.settings, username).cloned();
        let max = settings.as_ref().and_then(|s| s.max_sessions);
        let rate = settings.as_ref().and_then(|s| s.bandwidth);
        if let Some(live) = t.live.get_mut(username.as_slice()) {
            if max.is_some_and(|m| live.sessions >= m) {
                let sessions = live.sessions;
                drop(t);
                tracing::warn!(
                    user = %String::from_utf8_lossy(username).escape_debug(),
                    sessions,
                    max_sessions = max.unwrap_or_default(),
                    "request refused: the user is at max_sessions"
                );
                return Err(RequestError::Limit("sessions of this user (max_sessions)"));
            }
            live.sessions += 1;
            return Ok(Some(UserSession {
                table: self.clone(),
                user: live.user.clone(),
            }));
        }
        let user = Arc::new(UserState {
            name: username.clone(),
            bandwidth: Bandwidth::new(rate),
        });
        t.live.insert(
            username.clone(),
            Live {
                sessions: 1,
                user: user.clone(),
            },
        );
        Ok(Some(UserSession {
            table: self.clone(),
            user,
        }))
    }

    /// Sessions of `name` in progress.
    pub fn sessions(&self, name: &[u8]) -> usize {
        self.lock().live.get(name).map_or(0, |l| l.sessions)
    }

    /// Users with sessions in progress.
    pub fn live_users(&self) -> usize {
        self.lock().live.len()
    }

    /// The settings that apply to `name` now.
    pub fn settings(&self, name: &[u8]) -> Option<UserSettings> {
        settings_for(&self.lock().settings, name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixsocks_proto::Password;

    fn user(name: &str) -> Credentials {
        Credentials::UserPass {
            username: name.as_bytes().to_vec(),
            password: Password::new(b"pw".to_vec()),
        }
    }

    fn config(text: &str) -> UsersConfig {
        #[derive(Deserialize)]
        struct Wrap {
            users: UsersConfig,
        }
        toml::from_str::<Wrap>(text).unwrap().users
    }

    #[test]
    fn settings_parse_and_star_applies_to_users_without_an_entry() {
        let users = config(
            "[users.alice]\nmax_sessions = 4\nbandwidth = 1_000_000\nsource = \"192.0.2.1\"\n\
             [users.\"*\"]\nmax_sessions = 2\n",
        );
        validate(&users).unwrap();
        let alice = settings_for(&users, b"alice").unwrap();
        assert_eq!(alice.max_sessions, Some(4));
        assert_eq!(alice.bandwidth, Some(1_000_000));
        assert_eq!(alice.source, Some("192.0.2.1".parse().unwrap()));
        // Not merged: alice's own entry replaces "*".
        let bob = settings_for(&users, b"bob").unwrap();
        assert_eq!(bob.max_sessions, Some(2));
        assert_eq!(bob.bandwidth, None);
        // A name that is not UTF-8 still gets "*".
        assert_eq!(settings_for(&users, b"\xff").unwrap().max_sessions, Some(2));
        let no_star = config("[users.alice]\nmax_sessions = 1\n");
        assert_eq!(settings_for(&no_star, b"bob"), None);
    }

    #[test]
    fn validation_rejects_zero_limits_and_unknown_keys() {
        let e = validate(&config("[users.a]\nmax_sessions = 0\n")).unwrap_err();
        assert!(e.contains("max_sessions"), "{e}");
        let e = validate(&config("[users.a]\nbandwidth = 0\n")).unwrap_err();
        assert!(e.contains("bandwidth"), "{e}");
        let e = validate(&config("[users.\"\"]\nbandwidth = 1\n")).unwrap_err();
        assert!(e.contains("1 to 255"), "{e}");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrap {
            users: UsersConfig,
        }
        let e = toml::from_str::<Wrap>("[users.a]\nmax_session = 1\n").unwrap_err();
        assert!(e.to_string().contains("max_session"), "{e}");
    }

    #[test]
    fn burst_and_grant_sizes() {
        assert_eq!(burst(1_000_000), 100_000);
        assert_eq!(burst(1000), 16 * 1024);
        assert_eq!(min_grant(1_000_000), 10_000);
        assert_eq!(min_grant(1000), 1000);
        assert_eq!(min_grant(10_000), 1024);
        assert_eq!(min_grant(1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_bucket_grants_everything() {
        let b = TokenBucket::new(None);
        assert_eq!(b.take(1 << 20), Ok(1 << 20));
        assert_eq!(b.take(1 << 30), Ok(1 << 30));
        assert_eq!(b.rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_starts_full_then_refills_at_its_rate() {
        let b = TokenBucket::new(Some(1_000_000));
        // Full: the burst at once, not more.
        assert_eq!(b.take(1 << 20), Ok(100_000));
        // Empty: wait for the minimum grant (10 ms at 1 MB/s).
        assert_eq!(b.take(1 << 20), Err(Duration::from_millis(10)));
        tokio::time::advance(Duration::from_millis(5)).await;
        // 5 000 tokens now, below the minimum grant: still waiting, less.
        assert_eq!(b.take(1 << 20), Err(Duration::from_millis(5)));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(b.take(1 << 20), Ok(10_000));
        // A small read is granted as soon as its tokens are there.
        tokio::time::advance(Duration::from_micros(100)).await;
        assert_eq!(b.take(50), Ok(50));
        // Refills stop at the burst.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.take(1 << 20), Ok(100_000));
    }

    #[tokio::test(start_paused = true)]
    async fn refunds_return_unused_tokens_up_to_the_burst() {
        let b = TokenBucket::new(Some(100_000));
        assert_eq!(b.take(usize::MAX), Ok(16 * 1024));
        b.refund(2000);
        assert_eq!(b.take(usize::MAX), Ok(2000));
        // Fewer tokens than the minimum grant (1 KiB here): wait for the 24
        // missing ones (240 µs, raised to the timer's 1 ms).
        b.refund(1000);
        assert_eq!(b.take(usize::MAX), Err(Duration::from_millis(1)));
        b.refund(1 << 30);
        assert_eq!(b.take(usize::MAX), Ok(16 * 1024), "capped at the burst");
    }

    /// Taking as fast as allowed for 10 s of virtual time moves rate × 10 s
    /// plus the initial burst, whatever the read sizes.
    #[tokio::test(start_paused = true)]
    async fn the_long_run_rate_is_the_setting() {
        for (rate, want) in [(1_000_000u64, 256 * 1024), (50_000, 1500), (3_000, 100_000)] {
            let b = TokenBucket::new(Some(rate));
            let start = Instant::now();
            let mut total = 0u64;
            let mut wakeups = 0u32;
            while start.elapsed() < Duration::from_secs(10) {
                match b.take(want) {
                    Ok(n) => total += n as u64,
                    Err(wait) => {
                        assert!(wait >= Duration::from_millis(1));
                        wakeups += 1;
                        tokio::time::advance(wait).await;
                    }
                }
            }
            let expected = rate * 10 + burst(rate);
            let slack = min_grant(rate) + want as u64;
            assert!(
                total <= expected && total + slack >= expected,
                "rate {rate}, reads of {want}: moved {total}, expected about {expected}"
            );
            assert!(wakeups <= 1001, "rate {rate}: {wakeups} waits in 10 s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_changes_apply_to_a_live_bucket() {
        let b = TokenBucket::new(Some(1_000_000));
        assert_eq!(b.take(usize::MAX), Ok(100_000));
        b.set_rate(Some(2_000_000));
        assert_eq!(b.rate(), Some(2_000_000));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(b.take(usize::MAX), Ok(20_000));
        b.set_rate(None);
        assert_eq!(b.take(1 << 30), Ok(1 << 30));
        // From unlimited to limited: starts full.
        b.set_rate(Some(500_000));
        assert_eq!(b.take(usize::MAX), Ok(50_000));
        assert!(b.take(usize::MAX).is_err());
    }

    #[tokio::test]
    async fn sessions_are_counted_per_user_and_refused_over_the_maximum() {
        let table = Arc::new(UserTable::new(config(
            "[users.alice]\nmax_sessions = 2\n[users.\"*\"]\nmax_sessions = 1\n",
        )));
        // No username: not limited, not registered.
        assert!(table.admit(&Credentials::None).unwrap().is_none());
        assert!(table
            .admit(&Credentials::UserId(b"alice".to_vec()))
            .unwrap()
            .is_none());
        let a1 = table.admit(&user("alice")).unwrap().unwrap();
        let a2 = table.admit(&user("alice")).unwrap().unwrap();
        assert_eq!(a1.name(), b"alice");
        assert_eq!(table.sessions(b"alice"), 2);
        let e = table.admit(&user("alice")).unwrap_err();
        assert!(matches!(e, RequestError::Limit(_)), "{e:?}");
        assert_eq!(e.reply_code().to_v5(false), 0x01);
        assert_eq!(table.sessions(b"alice"), 2, "a refusal counts nothing");
        // Another user is not affected; "*" limits bob to one.
        let b1 = table.admit(&user("bob")).unwrap().unwrap();
        assert!(table.admit(&user("bob")).is_err());
        // One of alice's sessions ends: a new one is admitted.
        drop(a1);
        assert_eq!(table.sessions(b"alice"), 1);
        let a3 = table.admit(&user("alice")).unwrap().unwrap();
        // Sessions of one user share one pair of buckets.
        assert!(std::ptr::eq(a2.bandwidth(), a3.bandwidth()));
        assert!(!std::ptr::eq(a2.bandwidth(), b1.bandwidth()));
        assert_eq!(table.live_users(), 2);
        // The table only holds users with live sessions.
        drop((a2, a3, b1));
        assert_eq!(table.live_users(), 0);
        assert_eq!(table.sessions(b"alice"), 0);
    }

    #[tokio::test]
    async fn apply_changes_live_rates_and_limits() {
        let table = Arc::new(UserTable::new(config("[users.alice]\nbandwidth = 1000\n")));
        let a = table.admit(&user("alice")).unwrap().unwrap();
        let c = table.admit(&user("carol")).unwrap().unwrap();
        assert_eq!(a.bandwidth().up.rate(), Some(1000));
        assert_eq!(a.bandwidth().down.rate(), Some(1000));
        assert_eq!(c.bandwidth().up.rate(), None);
        table.apply(&config(
            "[users.alice]\nbandwidth = 5000\nmax_sessions = 1\n[users.\"*\"]\nbandwidth = 7000\n",
        ));
        assert_eq!(a.bandwidth().up.rate(), Some(5000));
        assert_eq!(a.bandwidth().down.rate(), Some(5000));
        assert_eq!(
            c.bandwidth().down.rate(),
            Some(7000),
            "'*' reaches live users"
        );
        // The lowered maximum refuses new sessions, ends none.
        assert!(table.admit(&user("alice")).is_err());
        assert_eq!(table.sessions(b"alice"), 1);
        assert_eq!(table.settings(b"dave").unwrap().bandwidth, Some(7000));
        table.apply(&UsersConfig::new());
        assert_eq!(a.bandwidth().up.rate(), None);
        let a2 = table.admit(&user("alice")).unwrap().unwrap();
        drop((a, a2, c));
        assert_eq!(table.live_users(), 0);
    }

    /// The README's example parses and validates.
    #[test]
    fn readme_example_parses() {
        let cfg = crate::config::readme_example("\n### Per-user limits");
        assert!(settings_for(&cfg.users, b"alice").is_some());
        assert!(cfg.users.contains_key(ANY_USER));
    }
}

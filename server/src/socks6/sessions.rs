//! SOCKS 6 sessions (draft -11 §7, and the reference dialect): a request
//! that asks for one gets an id; later requests that carry the id are its
//! members, need no authentication and take the credentials the session
//! was started with; its idempotence window lives with it.
//!
//! Bounded so that no client can exhaust memory: at most
//! `socks6_max_sessions` in all and `socks6_max_sessions_per_address` per
//! client address (beyond either, a session request is ignored, as the
//! draft allows); a session unused for `socks6_session_idle_timeout` ends
//! (checked on use, and swept at most once a second when the table is
//! full). The store survives configuration reloads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sixsocks_proto::v6::idempotence::{serve_tokens, TokenDecision, TokenPolicy, TokenWindow};
use sixsocks_proto::v6::{IdempotenceOption, Options, Socks6Option};
use sixsocks_proto::Credentials;

/// Bytes of a session id (the reference uses 8).
pub const ID_LEN: usize = 8;

/// The caps of the store (from the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub max_per_address: usize,
    pub idle: Duration,
}

struct Session {
    credentials: Credentials,
    client: IpAddr,
    last_used: Instant,
    window: Option<TokenWindow>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<[u8; ID_LEN], Session>,
    per_address: HashMap<IpAddr, usize>,
    last_sweep: Option<Instant>,
}

impl Inner {
    fn remove(&mut self, id: &[u8; ID_LEN]) -> Option<Session> {
        let s = self.by_id.remove(id)?;
        if let Some(n) = self.per_address.get_mut(&s.client) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&s.client);
            }
        }
        Some(s)
    }

    /// Drop every session idle longer than `idle`.
    fn sweep(&mut self, now: Instant, idle: Duration) {
        let expired: Vec<[u8; ID_LEN]> = self
            .by_id
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_used) > idle)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(id);
        }
        if !expired.is_empty() {
            tracing::debug!(ended = expired.len(), "socks6 sessions expired");
            crate::metrics::socks6_sessions(self.by_id.len());
        }
        self.last_sweep = Some(now);
    }

    /// The live session `id`, touched; an expired one is removed.
    fn live(&mut self, id: &[u8], now: Instant, idle: Duration) -> Option<&mut Session> {
        let id: [u8; ID_LEN] = id.try_into().ok()?;
        let expired = now.duration_since(self.by_id.get(&id)?.last_used) > idle;
        if expired {
            self.remove(&id);
            crate::metrics::socks6_sessions(self.by_id.len());
            return None;
        }
        let s = self.by_id.get_mut(&id)?;
        s.last_used = now;
        Some(s)
    }
}

/// What a session request or claim came to, with the idempotence options
/// for the authentication reply.
pub(crate) struct Joined {
    /// The credentials to carry the request out with.
    pub credentials: Credentials,
    /// The token decision, if the request had idempotence options.
    pub tokens: Option<TokenDecision>,
    /// The window to advertise (every successful reply of a session with
    /// a window carries it).
    pub window: Option<IdempotenceOption>,
}

/// The live sessions.
pub struct SessionStore {
    inner: Mutex<Inner>,
    policy: TokenPolicy,
}

impl SessionStore {
    /// A store granting windows of at most `max_window` tokens (0: none).
    pub fn new(max_window: u32) -> Self {
        SessionStore {
            inner: Mutex::default(),
            policy: TokenPolicy { max_window },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions alive now (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start a session for `client` with `credentials` (already verified),
    /// and serve the request's idempotence options on its new window.
    /// `None` when a cap says no (the request goes on outside a session).
    pub(crate) fn start(
        &self,
        client: IpAddr,
        credentials: &Credentials,
        options: &Options,
        limits: &SessionLimits,
        now: Instant,
    ) -> Option<([u8; ID_LEN], Joined)> {
        let mut inner = self.lock();
        if inner.by_id.len() >= limits.max_sessions {
            let recent = inner
                .last_sweep
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
            if !recent {
                inner.sweep(now, limits.idle);
            }
            if inner.by_id.len() >= limits.max_sessions {
                return None;
            }
        }
        if inner.per_address.get(&client).copied().unwrap_or(0) >= limits.max_per_address {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        loop {
            OsRng.fill_bytes(&mut id);
            if !inner.by_id.contains_key(&id) {
                break;
            }
        }
        let mut window = None;
        let tokens = has_tokens(options)
            .then(|| serve_tokens(&mut window, options, &self.policy, OsRng.next_u32()));
        let advertised = window.as_ref().map(TokenWindow::advertisement);
        inner.by_id.insert(
            id,
            Session {
                credentials: credentials.clone(),
                client,
                last_used: now,
                window,
            },
        );
        *inner.per_address.entry(client).or_insert(0) += 1;
        crate::metrics::socks6_sessions(inner.by_id.len());
        Some((
            id,
            Joined {
                credentials: credentials.clone(),
                tokens,
                window: advertised,
            },
        ))
    }

    /// A request claims session `id`: its credentials and token decision,
    /// or `None` for an unknown or expired session.
    pub(crate) fn join(
        &self,
        id: &[u8],
        options: &Options,
        idle: Duration,
        now: Instant,
    ) -> Option<Joined> {
        let mut inner = self.lock();
        let session = inner.live(id, now, idle)?;
        let before = session.window.as_ref().map(TokenWindow::advertisement);
        let tokens = has_tokens(options)
            .then(|| serve_tokens(&mut session.window, options, &self.policy, OsRng.next_u32()));
        let after = session.window.as_ref().map(TokenWindow::advertisement);
        // The reference advertises the window as it was before the spend
        // (the next reply shows the shift); a newly granted window is
        // advertised as it is.
        let granted = options.token_request().is_some() && after != before;
        let window = if granted { after } else { before.or(after) };
        Some(Joined {
            credentials: session.credentials.clone(),
            tokens,
            window,
        })
    }

    /// End session `id` (a teardown request); whether it existed.
    pub(crate) fn teardown(&self, id: &[u8]) -> bool {
        let Ok(id) = <[u8; ID_LEN]>::try_from(id) else {
            return false;
        };
        let mut inner = self.lock();
        let ended = inner.remove(&id).is_some();
        crate::metrics::socks6_sessions(inner.by_id.len());
        ended
    }
}

fn has_tokens(options: &Options) -> bool {
    options
        .iter()
        .any(|o| matches!(o, Socks6Option::Idempotence(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixsocks_proto::v6::ExpenditureCode;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_sessions: 4,
            max_per_address: 2,
            idle: Duration::from_secs(10),
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn opts(o: Vec<IdempotenceOption>) -> Options {
        Options(o.into_iter().map(Socks6Option::Idempotence).collect())
    }

    #[test]
    fn sessions_are_capped_per_address_and_in_all() {
        let s = SessionStore::new(16);
        let now = Instant::now();
        let none = Options::new();
        assert!(s
            .start(ip(1), &Credentials::None, &none, &limits(), now)
            .is_some());
        assert!(s
            .start(ip(1), &Credentials::None, &none, &limits(), now)
            .is_some());
        assert!(
            s.start(ip(1), &Credentials::None, &none, &limits(), now)
                .is_none(),
            "third for one address"
        );
        assert!(s
            .start(ip(2), &Credentials::None, &none, &limits(), now)
            .is_some());
        assert!(s
            .start(ip(3), &Credentials::None, &none, &limits(), now)
            .is_some());
        assert!(
            s.start(ip(4), &Credentials::None, &none, &limits(), now)
                .is_none(),
            "fifth in all"
        );
        assert_eq!(s.len(), 4);
        // Once they expire, the sweep makes room.
        let later = now + Duration::from_secs(11);
        assert!(s
            .start(ip(4), &Credentials::None, &none, &limits(), later)
            .is_some());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_session_expires_when_idle_and_teardown_ends_it() {
        let s = SessionStore::new(16);
        let now = Instant::now();
        let user = Credentials::UserPass {
            username: b"alice".to_vec(),
            password: sixsocks_proto::Password::new("pw"),
        };
        let (id, _) = s
            .start(ip(1), &user, &Options::new(), &limits(), now)
            .unwrap();
        let idle = limits().idle;
        let t1 = now + Duration::from_secs(9);
        let j = s.join(&id, &Options::new(), idle, t1).unwrap();
        assert_eq!(
            j.credentials, user,
            "members take the session's credentials"
        );
        // Used at t1, so alive until t1 + 10 s.
        assert!(s
            .join(&id, &Options::new(), idle, t1 + Duration::from_secs(10))
            .is_some());
        assert!(s
            .join(&id, &Options::new(), idle, t1 + Duration::from_secs(21))
            .is_none());
        assert!(s.is_empty(), "an expired session is gone");
        let (id, _) = s
            .start(ip(1), &user, &Options::new(), &limits(), now)
            .unwrap();
        assert!(s.teardown(&id));
        assert!(s.join(&id, &Options::new(), idle, now).is_none());
        assert!(!s.teardown(&id));
        assert!(s.join(b"short", &Options::new(), idle, now).is_none());
    }

    #[test]
    fn tokens_live_in_the_session_and_spends_advertise_the_old_window() {
        let s = SessionStore::new(200);
        let now = Instant::now();
        let ask = opts(vec![IdempotenceOption::TokenRequest { window_size: 200 }]);
        let (id, j) = s
            .start(ip(1), &Credentials::None, &ask, &limits(), now)
            .unwrap();
        let Some(IdempotenceOption::WindowAdvertisement { base, size: 200 }) = j.window else {
            panic!("{:?}", j.window);
        };
        let spend = opts(vec![IdempotenceOption::Expenditure { token: base }]);
        let j = s.join(&id, &spend, limits().idle, now).unwrap();
        let d = j.tokens.unwrap();
        assert!(d.proceed);
        assert_eq!(d.spend, Some(ExpenditureCode::SUCCESS));
        assert_eq!(
            j.window,
            Some(IdempotenceOption::WindowAdvertisement { base, size: 200 }),
            "the reply to the spend shows the window before it"
        );
        let j = s.join(&id, &Options::new(), limits().idle, now).unwrap();
        assert_eq!(
            j.window,
            Some(IdempotenceOption::WindowAdvertisement {
                base: base.wrapping_add(1),
                size: 200
            }),
            "the next reply shows the shift"
        );
        // The same token again: a duplicate, refused.
        let d = s
            .join(&id, &spend, limits().idle, now)
            .unwrap()
            .tokens
            .unwrap();
        assert!(!d.proceed);
        assert_eq!(d.spend, Some(ExpenditureCode::DUPLICATE));
    }
}

//! Username/password authentication against a users file.
//!
//! The file holds one `name:PHC-hash` line per user (argon2id, written by
//! `sixsocks passwd`); blank lines and lines starting with `#` are ignored.
//! Hashes with other argon2 variants or parameters verify too.
//!
//! Verification is CPU- and memory-heavy by design. It runs on a fixed
//! pool of verifier threads, each reusing one argon2 memory block, behind
//! a bounded queue ([`verifier`]: why, and what it bounds); a client
//! address that keeps failing is refused without a check ([`throttle`]).
//! An unknown user costs the same time as a wrong password (a dummy hash
//! with the users' parameters), so names cannot be probed by timing.

pub mod throttle;
pub mod verifier;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use sixsocks_proto::Password;

pub use throttle::Budget;
use throttle::{Admission, LoginThrottle};
use verifier::{PhcHash, Pool};

/// A problem with the users file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("users file {path}, line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("cannot write users file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("user names must be 1 to 255 bytes without ':' or line breaks")]
    BadName,
    #[error("passwords must be 1 to 255 bytes")]
    BadPassword,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// The parsed users file: name → hash, and the dummy hash unknown names
/// are checked against.
#[derive(Clone, Debug)]
pub struct Users {
    hashes: HashMap<Vec<u8>, Arc<PhcHash>>,
    dummy: Arc<PhcHash>,
}

impl Default for Users {
    fn default() -> Self {
        Users::from_hashes(HashMap::new())
    }
}

impl Users {
    pub fn len(&self) -> usize {
        self.hashes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn parse(text: &str, path: &str) -> Result<Users, UsersError> {
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let err = |message: &str| UsersError::Line {
                path: path.to_string(),
                line: i + 1,
                message: message.to_string(),
            };
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected `name:hash`"))?;
            if name.is_empty() || name.len() > 255 {
                return Err(err("user name must be 1 to 255 bytes"));
            }
            let hash = PhcHash::parse(hash).map_err(|e| err(&format!("bad password hash: {e}")))?;
            if hashes
                .insert(name.as_bytes().to_vec(), Arc::new(hash))
                .is_some()
            {
                return Err(err("user listed twice"));
            }
        }
        Ok(Users::from_hashes(hashes))
    }

    /// The dummy hash takes the parameters most users have (all of them,
    /// normally: `sixsocks passwd` writes the defaults), so that an unknown
    /// name costs what a typical known one does.
    fn from_hashes(hashes: HashMap<Vec<u8>, Arc<PhcHash>>) -> Users {
        let mut seen: Vec<(&PhcHash, usize)> = Vec::new();
        for h in hashes.values() {
            match seen.iter_mut().find(|(s, _)| s.same_cost(h)) {
                Some((_, n)) => *n += 1,
                None => seen.push((h, 1)),
            }
        }
        let dummy = match seen.iter().max_by_key(|(_, n)| *n) {
            Some((like, _)) => PhcHash::dummy(like),
            None => default_dummy(),
        };
        Users {
            hashes,
            dummy: Arc::new(dummy),
        }
    }

    /// The hash to check `username` against: theirs, or the dummy.
    fn hash_for(&self, username: &[u8]) -> (Arc<PhcHash>, bool) {
        match self.hashes.get(username) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        }
    }

    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: shown.clone(),
            source,
        })?;
        Users::parse(&text, &shown)
    }

    /// Check a password on this thread, with argon2 memory allocated for
    /// this one check: for tests and tools. The server goes through
    /// [`Authenticator::verify`], which reuses its memory.
    pub fn verify_blocking(&self, username: &[u8], password: &Password) -> bool {
        let (hash, known) = self.hash_for(username);
        let ok = hash.verify_with(password.expose(), &mut Vec::new());
        ok && known
    }
}

/// The dummy for a users file without users: default parameters.
fn default_dummy() -> PhcHash {
    const DEFAULT: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2l4c29ja3NkdW1teQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    match PhcHash::parse(DEFAULT) {
        Ok(h) => PhcHash::dummy(&h),
        // A constant that parses; covered by a test.
        Err(e) => unreachable!("the default dummy hash does not parse: {e}"),
    }
}

/// Hash a password for the users file (argon2id, random salt, the argon2
/// crate's default parameters: 19 MiB, 2 passes, as OWASP recommends).
pub fn hash_password(password: &Password) -> Result<String, UsersError> {
    if password.is_empty() || password.len() > 255 {
        return Err(UsersError::BadPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Add or replace `name` in the users file at `path` (created if missing),
/// keeping every other line as it is. The file is written to a temporary
/// file and renamed, with mode 0600.
pub fn set_user(path: &Path, name: &str, password: &Password) -> Result<(), UsersError> {
    if name.is_empty() || name.len() > 255 || name.contains([':', '\n', '\r']) {
        return Err(UsersError::BadName);
    }
    let hash = hash_password(password)?;
    let shown = path.display().to_string();
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(UsersError::Read {
                path: shown,
                source,
            })
        }
    };
    let mut out = String::new();
    let mut replaced = false;
    for line in old.lines() {
        if line.split_once(':').map(|(n, _)| n) == Some(name) {
            if !replaced {
                out.push_str(&format!("{name}:{hash}\n"));
                replaced = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("{name}:{hash}\n"));
    }
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| UsersError::Write {
        path: shown,
        source,
    })
}

/// Decides whether credentials are accepted.
#[derive(Clone)]
pub struct Authenticator {
    users: Option<Arc<Users>>,
    /// Failed-login budgets by client address; handed from one
    /// configuration generation to the next ([`Authenticator::carry_over`]).
    throttle: Arc<Mutex<LoginThrottle>>,
    pool: &'static Pool,
}

impl Authenticator {
    /// `None`: no users file, authentication is not required and any
    /// credentials are accepted (they still isolate streams). Failed
    /// logins get the default [`Budget`].
    pub fn new(users: Option<Users>) -> Self {
        Authenticator::with_budget(users, Budget::default())
    }

    /// Like [`Authenticator::new`], with this failed-login budget per
    /// client address.
    pub fn with_budget(users: Option<Users>, budget: Budget) -> Self {
        Authenticator {
            users: users.map(Arc::new),
            throttle: Arc::new(Mutex::new(LoginThrottle::new(budget))),
            pool: Pool::global(),
        }
    }

    /// For a configuration reload: keep `previous`'s table of failing
    /// addresses (with this authenticator's budget), so that a SIGHUP does
    /// not forgive every address at once.
    pub fn carry_over(mut self, previous: &Authenticator) -> Self {
        let budget = self.lock_throttle().budget();
        self.throttle = previous.throttle.clone();
        self.lock_throttle().set_budget(budget);
        self
    }

    pub fn required(&self) -> bool {
        self.users.is_some()
    }

    /// Users in the users file (0 without one).
    pub fn user_count(&self) -> usize {
        self.users.as_ref().map_or(0, |u| u.len())
    }

    /// The throttle's table; a panic elsewhere while holding it (there is
    /// nothing in it that could) does not disable it.
    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `username` and `password` log in, for a client at `client`
    /// (`None`: its address is unknown because it is already gone; it is
    /// refused unchecked). Refused without running argon2 when the client's
    /// address is over its failure budget, or when too many checks are
    /// waiting already; both are counted and logged (rate-limited).
    pub async fn verify(
        &self,
        username: Vec<u8>,
        password: Password,
        client: Option<IpAddr>,
    ) -> bool {
        let Some(users) = &self.users else {
            return true;
        };
        let Some(client) = client else {
            return false;
        };
        match self.lock_throttle().check(client, Instant::now()) {
            Admission::Allowed => {}
            Admission::Throttled { log } => {
                crate::metrics::auth_throttled(crate::metrics::Throttled::Address);
                if let Some(unlogged) = log {
                    tracing::warn!(
                        client = %client,
                        unlogged,
                        "too many failed logins from this address: refused without \
                         checking the password (logged at most once a minute per address; \
                         auth_failure_burst, auth_failures_per_minute)"
                    );
                }
                return false;
            }
        }
        let (hash, known) = users.hash_for(&username);
        let ok = match self.pool.verify(hash, password).await {
            Ok(ok) => ok && known,
            Err(verifier::Busy) => {
                crate::metrics::auth_throttled(crate::metrics::Throttled::Busy);
                warn_busy(client);
                return false;
            }
        };
        if !ok {
            crate::metrics::auth_failure();
            self.lock_throttle().failed(client, Instant::now());
        }
        ok
    }
}

/// Log that a login was refused because the verifier queue was full, at
/// most once a second for the whole server (a flood from many addresses
/// would otherwise log a line per attempt).
fn warn_busy(client: IpAddr) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now = START.get_or_init(Instant::now).elapsed().as_secs() + 1;
    let last = LAST.load(Ordering::Relaxed);
    if now > last
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let unlogged = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            client = %client,
            unlogged,
            "too many password checks waiting: login refused without checking \
             (logged at most once a second)"
        );
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_user_then_verify() {
        let dir = std::env::temp_dir().join(format!("sixsocks-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        let _ = std::fs::remove_file(&path);
        set_user(&path, "alice", &Password::new(b"secret".to_vec())).unwrap();
        set_user(&path, "bob", &Password::new(b"hunter2".to_vec())).unwrap();
        set_user(&path, "alice", &Password::new(b"changed".to_vec())).unwrap();
        let users = Users::load(&path).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.verify_blocking(b"alice", &Password::new(b"changed".to_vec())));
        assert!(!users.verify_blocking(b"alice", &Password::new(b"secret".to_vec())));
        assert!(users.verify_blocking(b"bob", &Password::new(b"hunter2".to_vec())));
        assert!(!users.verify_blocking(b"carol", &Password::new(b"hunter2".to_vec())));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("changed"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let e = Users::parse("# comment\n\nalice:notahash\n", "f").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(Users::parse("nocolon\n", "f").is_err());
    }

    /// A users file with cheap hashes (tests only): `name:password` pairs,
    /// argon2id with 64 KiB and one pass unless `params` says otherwise.
    fn users_with(entries: &[(&str, &str)], params: argon2::Params) -> Users {
        let mut text = String::new();
        for (name, pw) in entries {
            let salt = SaltString::generate(&mut OsRng);
            let hash = Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                params.clone(),
            )
            .hash_password(pw.as_bytes(), &salt)
            .unwrap();
            text.push_str(&format!("{name}:{hash}\n"));
        }
        Users::parse(&text, "test").unwrap()
    }

    fn cheap() -> argon2::Params {
        argon2::Params::new(64, 1, 1, None).unwrap()
    }

    fn pw(p: &str) -> Password {
        Password::new(p.as_bytes().to_vec())
    }

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));
    const OTHER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8)));

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let auth = Authenticator::new(Some(users_with(&[("alice", "pw")], cheap())));
        assert!(auth.verify(b"alice".to_vec(), pw("pw"), CLIENT).await);
        assert!(!auth.verify(b"alice".to_vec(), pw("PW"), CLIENT).await);
        assert!(!auth.verify(b"bob".to_vec(), pw("pw"), CLIENT).await);
        // The client's address is unknown (it is gone): refused.
        assert!(!auth.verify(b"alice".to_vec(), pw("pw"), None).await);
        // Without a users file anything goes.
        let open = Authenticator::new(None);
        assert!(open.verify(b"x".to_vec(), pw("y"), None).await);
    }

    #[test]
    fn the_dummy_has_the_users_parameters() {
        let odd = argon2::Params::new(128, 3, 2, Some(40)).unwrap();
        let users = users_with(&[("a", "1"), ("b", "2"), ("c", "3")], odd);
        let (theirs, known) = users.hash_for(b"a");
        let (dummy, unknown_is_known) = users.hash_for(b"zed");
        assert!(known && !unknown_is_known);
        assert!(dummy.same_cost(&theirs) && dummy.blocks() == 128);
        // Non-default parameters verify, through the blocking helper too.
        assert!(users.verify_blocking(b"b", &pw("2")));
        assert!(!users.verify_blocking(b"b", &pw("1")));
        assert!(!users.verify_blocking(b"zed", &pw("2")));
        // No users at all: the default parameters.
        let none = Users::parse("# nobody\n", "f").unwrap();
        assert_eq!(
            none.hash_for(b"x").0.blocks(),
            argon2::Params::default().block_count()
        );
    }

    #[tokio::test]
    async fn an_address_over_its_budget_is_refused_even_with_the_right_password() {
        let budget = Budget {
            burst: 2,
            per_minute: 1,
        };
        let users = users_with(&[("alice", "pw")], cheap());
        let auth = Authenticator::with_budget(Some(users.clone()), budget);
        // Successes do not spend the budget.
        for _ in 0..5 {
            assert!(auth.verify(b"alice".to_vec(), pw("pw"), CLIENT).await);
        }
        assert!(!auth.verify(b"alice".to_vec(), pw("x"), CLIENT).await);
        assert!(!auth.verify(b"nobody".to_vec(), pw("x"), CLIENT).await);
        // Over budget: even the right password is refused (not checked).
        assert!(!auth.verify(b"alice".to_vec(), pw("pw"), CLIENT).await);
        // Another address is not affected.
        assert!(auth.verify(b"alice".to_vec(), pw("pw"), OTHER).await);
        // A reload keeps the debt...
        let reloaded = Authenticator::with_budget(Some(users.clone()), budget).carry_over(&auth);
        assert!(!reloaded.verify(b"alice".to_vec(), pw("pw"), CLIENT).await);
        // ...measured in the new budget: a larger burst lets it try again.
        let larger = Authenticator::with_budget(
            Some(users.clone()),
            Budget {
                burst: 3,
                per_minute: 1,
            },
        )
        .carry_over(&reloaded);
        assert!(larger.verify(b"alice".to_vec(), pw("pw"), CLIENT).await);
        // And burst 0 turns the throttle off.
        let off = Authenticator::with_budget(
            Some(users),
            Budget {
                burst: 0,
                per_minute: 0,
            },
        );
        for _ in 0..20 {
            assert!(!off.verify(b"alice".to_vec(), pw("x"), CLIENT).await);
        }
        assert!(off.verify(b"alice".to_vec(), pw("pw"), CLIENT).await);
    }

    #[test]
    fn the_default_dummy_parses() {
        assert!(
            default_dummy().same_cost(&PhcHash::parse(&hash_password(&pw("x")).unwrap()).unwrap())
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let p = std::env::temp_dir().join("sixsocks-never-written");
        let pw = Password::new(b"x".to_vec());
        assert!(matches!(set_user(&p, "a:b", &pw), Err(UsersError::BadName)));
        assert!(matches!(set_user(&p, "", &pw), Err(UsersError::BadName)));
    }
}

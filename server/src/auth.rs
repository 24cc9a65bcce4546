//! Username/password authentication against a users file.
//!
//! The file holds one `name:PHC-hash` line per user (argon2id, written by
//! `sixsocks passwd`); blank lines and lines starting with `#` are ignored.
//! Verification is CPU-heavy by design, so it runs on the blocking pool with
//! a bound on how many run at once; an unknown user costs the same time as a
//! wrong password, so names cannot be probed by timing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sixsocks_proto::Password;
use tokio::sync::Semaphore;

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

/// The parsed users file: name → PHC hash string.
#[derive(Clone, Debug, Default)]
pub struct Users {
    hashes: HashMap<Vec<u8>, String>,
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
            PasswordHash::new(hash).map_err(|e| err(&format!("bad password hash: {e}")))?;
            if hashes
                .insert(name.as_bytes().to_vec(), hash.to_string())
                .is_some()
            {
                return Err(err("user listed twice"));
            }
        }
        Ok(Users { hashes })
    }

    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: shown.clone(),
            source,
        })?;
        Users::parse(&text, &shown)
    }

    /// Check a password (blocking; call through [`Authenticator`] from async code).
    pub fn verify_blocking(&self, username: &[u8], password: &Password) -> bool {
        let hash = self.hashes.get(username).map(String::as_str);
        // Unknown users are checked against a dummy hash so that they cost
        // as much time as a known user with a wrong password.
        let hash = hash.unwrap_or_else(|| dummy_hash());
        let ok = match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.expose(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        ok && self.hashes.contains_key(username)
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&Password::new(b"sixsocks-dummy".to_vec()))
            .unwrap_or_else(|_| String::from("$argon2id$v=19$m=19456,t=2,p=1$c2l4c29ja3NkdW1teQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
    })
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
    limit: Arc<Semaphore>,
}

impl Authenticator {
    /// `None`: no users file, authentication is not required and any
    /// credentials are accepted (they still isolate streams).
    pub fn new(users: Option<Users>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            users: users.map(Arc::new),
            limit: Arc::new(Semaphore::new(cores)),
        }
    }

    pub fn required(&self) -> bool {
        self.users.is_some()
    }

    /// Users in the users file (0 without one).
    pub fn user_count(&self) -> usize {
        self.users.as_ref().map_or(0, |u| u.len())
    }

    pub async fn verify(&self, username: Vec<u8>, password: Password) -> bool {
        let Some(users) = self.users.clone() else {
            return true;
        };
        let Ok(_permit) = self.limit.clone().acquire_owned().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || users.verify_blocking(&username, &password))
            .await
            .unwrap_or(false);
        if !ok {
            crate::metrics::auth_failure();
        }
        ok
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

    #[test]
    fn bad_names_are_refused() {
        let p = std::env::temp_dir().join("sixsocks-never-written");
        let pw = Password::new(b"x".to_vec());
        assert!(matches!(set_user(&p, "a:b", &pw), Err(UsersError::BadName)));
        assert!(matches!(set_user(&p, "", &pw), Err(UsersError::BadName)));
    }
}

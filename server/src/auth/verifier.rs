//! Password verification on a small fixed pool of threads, each of which
//! owns its argon2 memory block for the life of the process.
//!
//! Why not `Argon2::verify_password` on the blocking pool, as before: every
//! call allocates the whole argon2 memory (19 MiB with the default
//! parameters) and frees it afterwards. glibc serves the first such block
//! with mmap, but raises its mmap threshold when that block is freed, so
//! every later 19 MiB block comes from the heap of whichever arena the
//! blocking thread uses, and freed heap memory is not given back to the
//! system. With tokio's blocking pool growing a thread per concurrent
//! check, a flood of failed logins was measured to take the server from
//! 6 MB to 690 MB RSS, never returned.
//!
//! Here the memory is allocated once per verifier thread (when it first
//! needs it, sized from the hash it checks, grown only for a hash with
//! more memory) and reused for every check. The pool has a fixed number of
//! threads and a bounded queue in front of them, so memory is bounded by
//! threads × block size, concurrency by the thread count, and waiting by
//! the queue: when the queue is full, [`Pool::verify`] fails at once with
//! [`Busy`] instead of piling up work.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use sixsocks_proto::Password;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// Most verifier threads, whatever the core count: each holds one argon2
/// block (19 MiB with the default parameters) for good, and 8 threads
/// already check a few hundred passwords a second.
const MAX_THREADS: usize = 8;

/// Checks that may wait for a verifier thread, per thread. One check takes
/// tens of milliseconds, so a full queue is well under a second of work;
/// beyond it a login is refused at once (see [`Busy`]).
pub(crate) const QUEUE_PER_THREAD: usize = 16;

/// Longest salt accepted (the PHC string format's limit, and the buffer
/// the argon2 crate itself decodes salts into).
const MAX_SALT: usize = 64;

/// A users-file hash that cannot be verified here.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("{0}")]
    Phc(#[from] argon2::password_hash::Error),
    #[error("{0}")]
    Argon2(#[from] argon2::Error),
    #[error("the hash has no salt")]
    NoSalt,
    #[error("the hash has no output")]
    NoOutput,
}

/// A parsed argon2 PHC hash (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`),
/// kept in the form the verifier needs, so that a login parses nothing.
#[derive(Clone, Debug)]
pub struct PhcHash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    output: Vec<u8>,
}

impl PhcHash {
    /// Parse a PHC string; anything argon2 could not verify is an error
    /// (better at load time than as a user who can never log in).
    pub fn parse(phc: &str) -> Result<PhcHash, HashError> {
        let hash = PasswordHash::new(phc)?;
        let algorithm = Algorithm::try_from(hash.algorithm)?;
        let version = match hash.version {
            Some(v) => Version::try_from(v)?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash)?;
        let salt = hash.salt.ok_or(HashError::NoSalt)?;
        let mut buf = [0u8; MAX_SALT];
        let salt = salt.decode_b64(&mut buf)?.to_vec();
        let output = hash.hash.ok_or(HashError::NoOutput)?.as_bytes().to_vec();
        Ok(PhcHash {
            algorithm,
            version,
            params,
            salt,
            output,
        })
    }

    /// A hash with the same algorithm and parameters as `like` that no
    /// password matches (random salt and output): checking an unknown user
    /// against it costs what checking a known one costs.
    pub fn dummy(like: &PhcHash) -> PhcHash {
        let mut salt = vec![0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut output = vec![0u8; like.output.len()];
        OsRng.fill_bytes(&mut output);
        PhcHash {
            salt,
            output,
            ..like.clone()
        }
    }

    /// Whether two hashes cost the same to check (algorithm, version and
    /// parameters alike).
    pub fn same_cost(&self, other: &PhcHash) -> bool {
        self.algorithm == other.algorithm
            && self.version == other.version
            && self.params == other.params
    }

    /// Argon2 memory blocks (1 KiB each) a check needs.
    pub fn blocks(&self) -> usize {
        self.params.block_count()
    }

    /// Check `password`, with `memory` as argon2's working memory: grown
    /// (once) if it is smaller than this hash needs, never shrunk. The
    /// computed output is compared in constant time.
    pub fn verify_with(&self, password: &[u8], memory: &mut Vec<Block>) -> bool {
        if memory.len() < self.blocks() {
            memory.resize(self.blocks(), Block::default());
        }
        let argon2 = Argon2::new(self.algorithm, self.version, self.params.clone());
        let mut out = vec![0u8; self.output.len()];
        let ok = match argon2.hash_password_into_with_memory(
            password,
            &self.salt,
            &mut out,
            &mut memory[..self.blocks()],
        ) {
            Ok(()) => bool::from(out.ct_eq(&self.output)),
            Err(_) => false,
        };
        out.fill(0);
        ok
    }
}

/// The verifier queue is full: the login is refused without checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks waiting")]
pub struct Busy;

/// One check waiting for a verifier thread.
struct Job {
    hash: Arc<PhcHash>,
    password: Password,
    reply: oneshot::Sender<bool>,
}

/// Verifier threads and the bounded queue that feeds them. Dropping the
/// pool ends its threads once the queue is drained.
pub struct Pool {
    tx: SyncSender<Job>,
    threads: usize,
}

impl Pool {
    /// The process's pool: one thread per core (at most [`MAX_THREADS`]),
    /// started at the first login. Shared by every configuration
    /// generation, so a reload starts no threads and allocates nothing.
    pub fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let threads = cores.clamp(1, MAX_THREADS);
            Pool::new(threads, threads * QUEUE_PER_THREAD)
        })
    }

    /// `threads` verifier threads behind a queue of `queue` checks (at
    /// least 1 of each). A thread that cannot be started is logged; with
    /// none at all, every check fails (as [`Busy`]).
    pub fn new(threads: usize, queue: usize) -> Pool {
        let (pool, rx) = Pool::unstarted(queue);
        let started = spawn(&rx, threads.max(1));
        Pool {
            threads: started,
            ..pool
        }
    }

    /// The queue without threads yet, and its receiving end.
    fn unstarted(queue: usize) -> (Pool, Arc<Mutex<Receiver<Job>>>) {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        (Pool { tx, threads: 0 }, Arc::new(Mutex::new(rx)))
    }

    /// Verifier threads running.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Check `password` against `hash` on a verifier thread. [`Busy`] when
    /// the queue is full (or no thread runs): the caller refuses the login.
    pub async fn verify(&self, hash: Arc<PhcHash>, password: Password) -> Result<bool, Busy> {
        let answer = self.submit(hash, password)?;
        // A thread that panicked drops the reply: a refusal, not a hang.
        Ok(answer.await.unwrap_or(false))
    }

    /// Queue a check; the receiver gets its answer.
    fn submit(
        &self,
        hash: Arc<PhcHash>,
        password: Password,
    ) -> Result<oneshot::Receiver<bool>, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            hash,
            password,
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

/// Start `threads` verifier threads on `rx`; returns how many started.
fn spawn(rx: &Arc<Mutex<Receiver<Job>>>, threads: usize) -> usize {
    let mut started = 0;
    for i in 0..threads {
        let rx = rx.clone();
        match std::thread::Builder::new()
            .name(format!("sixsocks-verify-{i}"))
            .spawn(move || run(&rx))
        {
            Ok(_) => started += 1,
            Err(e) => tracing::error!(error = %e, "cannot start a password verifier thread"),
        }
    }
    started
}

/// A verifier thread: take checks off the queue until the pool is dropped.
/// The memory block lives here, so it is allocated once per thread.
fn run(rx: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, never
        // while hashing. A poisoned lock (cannot happen: nothing panics
        // while holding it) is still usable.
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        let Ok(job) = job else {
            return;
        };
        // The client gave up (closed, or its handshake timed out) while
        // the job waited: nobody needs the answer, skip the work.
        if job.reply.is_closed() {
            continue;
        }
        let ok = job.hash.verify_with(job.password.expose(), &mut memory);
        let _ = job.reply.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn phc(params: Params, alg: Algorithm, password: &[u8]) -> String {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(alg, Version::V0x13, params)
            .hash_password(password, &salt)
            .unwrap()
            .to_string()
    }

    fn small() -> Params {
        Params::new(64, 1, 1, None).unwrap()
    }

    #[test]
    fn right_and_wrong_passwords() {
        let h = PhcHash::parse(&phc(small(), Algorithm::Argon2id, b"right")).unwrap();
        let mut mem = Vec::new();
        assert!(h.verify_with(b"right", &mut mem));
        assert!(!h.verify_with(b"wrong", &mut mem));
        assert!(!h.verify_with(b"", &mut mem));
        assert_eq!(mem.len(), 64);
    }

    #[test]
    fn the_default_hash_verifies_and_sizes_the_block() {
        let text = crate::auth::hash_password(&Password::new(b"pw".to_vec())).unwrap();
        let h = PhcHash::parse(&text).unwrap();
        assert_eq!(h.blocks(), Params::default().block_count());
        let mut mem = Vec::new();
        assert!(h.verify_with(b"pw", &mut mem));
        assert!(!h.verify_with(b"pW", &mut mem));
        assert_eq!(mem.len(), 19 * 1024);
    }

    #[test]
    fn other_parameters_and_algorithms_verify_and_grow_the_block_only_when_needed() {
        let big = Params::new(256, 3, 2, Some(48)).unwrap();
        let hashes = [
            (phc(small(), Algorithm::Argon2id, b"a"), 64),
            (phc(big.clone(), Algorithm::Argon2i, b"a"), 256),
            (phc(small(), Algorithm::Argon2d, b"a"), 256),
        ];
        let mut mem = Vec::new();
        for (text, blocks_after) in &hashes {
            let h = PhcHash::parse(text).unwrap();
            assert!(h.verify_with(b"a", &mut mem), "{text}");
            assert!(!h.verify_with(b"b", &mut mem), "{text}");
            assert_eq!(mem.len(), *blocks_after, "{text}");
        }
        // A version 0x10 hash (older argon2) verifies too.
        let salt = SaltString::generate(&mut OsRng);
        let v10 = Argon2::new(Algorithm::Argon2id, Version::V0x10, small())
            .hash_password(b"old", &salt)
            .unwrap()
            .to_string();
        assert!(PhcHash::parse(&v10).unwrap().verify_with(b"old", &mut mem));
    }

    #[test]
    fn the_dummy_costs_the_same_and_matches_nothing() {
        let h = PhcHash::parse(&phc(small(), Algorithm::Argon2id, b"x")).unwrap();
        let d = PhcHash::dummy(&h);
        assert!(d.same_cost(&h) && d.blocks() == h.blocks());
        let mut mem = Vec::new();
        assert!(!d.verify_with(b"x", &mut mem));
    }

    #[test]
    fn hashes_argon2_cannot_check_are_refused_at_parse() {
        assert!(PhcHash::parse("notahash").is_err());
        assert!(PhcHash::parse("$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E").is_err());
        let text = phc(small(), Algorithm::Argon2id, b"x");
        let no_output = text.rsplit_once('$').unwrap().0;
        assert!(PhcHash::parse(no_output).is_err());
    }

    #[tokio::test]
    async fn the_pool_verifies() {
        let pool = Pool::new(2, 4);
        assert_eq!(pool.threads(), 2);
        let h = Arc::new(PhcHash::parse(&phc(small(), Algorithm::Argon2id, b"pw")).unwrap());
        let pw = |p: &[u8]| Password::new(p.to_vec());
        assert_eq!(pool.verify(h.clone(), pw(b"pw")).await, Ok(true));
        assert_eq!(pool.verify(h.clone(), pw(b"no")).await, Ok(false));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_queued_checks_still_run() {
        // No thread yet: the queue (2) fills, the third check is refused.
        let (pool, rx) = Pool::unstarted(2);
        let h = Arc::new(PhcHash::parse(&phc(small(), Algorithm::Argon2id, b"pw")).unwrap());
        let pw = |p: &[u8]| Password::new(p.to_vec());
        let a = pool.submit(h.clone(), pw(b"pw")).unwrap();
        let b = pool.submit(h.clone(), pw(b"no")).unwrap();
        assert_eq!(pool.verify(h.clone(), pw(b"pw")).await, Err(Busy));
        assert!(pool.submit(h.clone(), pw(b"pw")).is_err());
        // A thread drains the queue; then there is room again.
        assert_eq!(spawn(&rx, 1), 1);
        assert_eq!(a.await, Ok(true));
        assert_eq!(b.await, Ok(false));
        assert_eq!(pool.verify(h, pw(b"pw")).await, Ok(true));
    }

    #[tokio::test]
    async fn without_threads_every_check_is_refused() {
        let (pool, rx) = Pool::unstarted(4);
        drop(rx);
        let h = Arc::new(PhcHash::parse(&phc(small(), Algorithm::Argon2id, b"pw")).unwrap());
        assert_eq!(
            pool.verify(h, Password::new(b"pw".to_vec())).await,
            Err(Busy)
        );
    }
}

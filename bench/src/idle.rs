//! Idle memory: open K relayed connections (each proves the relay works
//! with a one-byte echo), keep them idle, and read the proxy's memory
//! before and after. The difference divided by K is what one idle
//! connection costs the proxy beyond what it held at rest.
//!
//! With `ready_file`, the file is written once the connections are open
//! and settled, and they are held until the file is removed (or
//! `hold_max` passes): an outside script can read the proxy's memory then.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::procfs::{self, Usage};
use crate::servers::HoldServer;
use crate::socks::{connect_blocking, Route};

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub conns: usize,
    /// Threads opening connections in parallel.
    pub openers: usize,
    /// Pause between the last connection opened and the measurement.
    pub settle: Duration,
    pub proxy_pid: Option<u32>,
    pub ready_file: Option<PathBuf>,
    pub hold_max: Duration,
    /// Give up opening after this long.
    pub open_timeout: Duration,
}

/// Memory of the proxy's process tree, KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub procs: usize,
}

impl From<Usage> for Mem {
    fn from(u: Usage) -> Mem {
        Mem {
            rss_kib: u.rss_kib,
            pss_kib: u.pss_kib,
            procs: u.procs,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub conns_requested: usize,
    /// Connections open through the relay (echo answered).
    pub conns_open: usize,
    /// Connections the target side holds.
    pub held_by_target: usize,
    pub open_s: f64,
    pub errors: usize,
    pub first_error: Option<String>,
    pub before: Option<Mem>,
    pub after: Option<Mem>,
    pub rss_kib_per_conn: Option<f64>,
    pub pss_kib_per_conn: Option<f64>,
}

/// Makes sure this process may hold `needed` descriptors.
pub fn ensure_nofile(needed: u64) -> io::Result<u64> {
    let got = rlimit::increase_nofile_limit(needed)?;
    if got >= needed {
        return Ok(got);
    }
    // Over the hard limit: only root may raise it.
    if rlimit::setrlimit(rlimit::Resource::NOFILE, needed, needed).is_ok() {
        return Ok(needed);
    }
    Err(io::Error::other(format!(
        "need {needed} file descriptors, RLIMIT_NOFILE allows {got}: run `ulimit -n {needed}` as root first"
    )))
}

/// Runs the idle-memory case along `route`, target on `ip`.
pub fn run(route: Route, ip: IpAddr, o: &Opts) -> io::Result<Outcome> {
    // Our side holds both ends of a direct connection, and the client end
    // plus the target end of a relayed one.
    ensure_nofile(2 * o.conns as u64 + 256)?;
    let before = match o.proxy_pid {
        Some(p) => Some(procfs::snapshot(p)?),
        None => None,
    };
    let server = HoldServer::start(ip)?;
    let target = server.addr;
    let started = Instant::now();
    let deadline = started + o.open_timeout;
    let openers = o.openers.clamp(1, o.conns.max(1));
    let mut handles = Vec::new();
    for i in 0..openers {
        let share = o.conns / openers + usize::from(i < o.conns % openers);
        handles.push(std::thread::spawn(move || {
            let mut open = Vec::with_capacity(share);
            let mut errors = 0usize;
            let mut first_error = None;
            for _ in 0..share {
                if Instant::now() >= deadline {
                    errors += 1;
                    first_error.get_or_insert_with(|| "open timeout".to_string());
                    continue;
                }
                match open_one(route, target) {
                    Ok(s) => open.push(s),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (open, errors, first_error)
        }));
    }
    let mut conns: Vec<TcpStream> = Vec::with_capacity(o.conns);
    let mut out = Outcome {
        conns_requested: o.conns,
        ..Outcome::default()
    };
    for h in handles {
        let (open, errors, first) = h
            .join()
            .map_err(|_| io::Error::other("opener thread panicked"))?;
        conns.extend(open);
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    out.open_s = started.elapsed().as_secs_f64();
    out.conns_open = conns.len();
    let wait = Instant::now() + Duration::from_secs(5);
    while server.held() < conns.len() && Instant::now() < wait {
        std::thread::sleep(Duration::from_millis(10));
    }
    out.held_by_target = server.held();
    std::thread::sleep(o.settle);
    if let (Some(p), Some(b)) = (o.proxy_pid, before) {
        let a = procfs::snapshot(p)?;
        out.before = Some(b.into());
        out.after = Some(a.into());
        if !conns.is_empty() {
            let k = conns.len() as f64;
            out.rss_kib_per_conn = Some((a.rss_kib as f64 - b.rss_kib as f64) / k);
            out.pss_kib_per_conn = Some((a.pss_kib as f64 - b.pss_kib as f64) / k);
        }
    }
    if let Some(f) = &o.ready_file {
        std::fs::write(f, format!("{}\n", conns.len()))?;
        let until = Instant::now() + o.hold_max;
        while f.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(conns);
    server.release();
    Ok(out)
}

fn open_one(route: Route, target: std::net::SocketAddr) -> io::Result<TcpStream> {
    let mut s = connect_blocking(route, target, Duration::from_secs(10))?;
    s.write_all(b"i")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    if &b != b"i" {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    Ok(s)
}

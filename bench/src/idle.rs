//! Idle memory: open K relayed connections (each proves the relay works
//! with a one-byte echo), keep them idle, and read the proxy's memory
//! before and after. The difference divided by K is what one idle
//! connection costs the proxy beyond what it held at rest.
//!
//! The process at rest is measured twice: as started, and after `warm`
//! connections have been relayed and closed (the code and the allocator's
//! pages the first connection touches, which no further one adds). Both
//! figures are reported: from the start, and beyond the warm rest.
//!
//! With `ready_file`, the file is written once the connections are open
//! and settled, and they are held until the file is removed (or
//! `hold_max` passes): an outside script can read the proxy's memory then.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::{self, Usage};
use crate::servers::HoldServer;
use crate::socks::{connect_blocking_from, Route};

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
    /// Run the target (hold server) as `EXE hold-target` in a process of
    /// its own, so that each process needs one descriptor per connection,
    /// not two: 10,000 connections then fit in a hard RLIMIT_NOFILE of
    /// 20,000. `None`: in this process (tests).
    pub target_exe: Option<PathBuf>,
    /// Source addresses to spread the client ends over (127.0.1.1 and
    /// on); 0: let the system choose.
    pub sources: usize,
    /// Connections relayed and closed, one after another, before the warm
    /// rest is measured (0: no second measurement).
    pub warm: usize,
}

/// Memory of the proxy's process tree, KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub anon_kib: u64,
    pub procs: usize,
}

impl From<Usage> for Mem {
    fn from(u: Usage) -> Mem {
        Mem {
            rss_kib: u.rss_kib,
            pss_kib: u.pss_kib,
            anon_kib: u.anon_kib,
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
    /// At rest again after the warm-up connections.
    pub warmed: Option<Mem>,
    pub after: Option<Mem>,
    pub rss_kib_per_conn: Option<f64>,
    pub pss_kib_per_conn: Option<f64>,
    /// Anonymous memory only (`Pss_Anon`): without the code pages the
    /// first connections fault in.
    pub anon_kib_per_conn: Option<f64>,
    /// The same, beyond the warm rest (`warmed`).
    pub rss_kib_per_conn_warm: Option<f64>,
    pub anon_kib_per_conn_warm: Option<f64>,
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
    // The client end of each connection, and its target end too if the
    // target runs in this process.
    let per_conn = if o.target_exe.is_some() { 1 } else { 2 };
    ensure_nofile(per_conn * o.conns as u64 + 256)?;
    let before = match o.proxy_pid {
        Some(p) => Some(procfs::snapshot(p)?),
        None => None,
    };
    let warmed = match (o.proxy_pid, o.warm) {
        (Some(p), n) if n > 0 => {
            warm_up(route, ip, n, o.source(0))?;
            std::thread::sleep(o.settle);
            Some(procfs::snapshot(p)?)
        }
        _ => None,
    };
    let server = match &o.target_exe {
        Some(exe) => Target::Child(ChildTarget::start(exe, ip)?),
        None => Target::Here(HoldServer::start(ip)?),
    };
    let target = server.addr();
    let started = Instant::now();
    let deadline = started + o.open_timeout;
    let openers = o.openers.clamp(1, o.conns.max(1));
    let mut handles = Vec::new();
    for i in 0..openers {
        let share = o.conns / openers + usize::from(i < o.conns % openers);
        let o = o.clone();
        handles.push(std::thread::spawn(move || {
            let mut open = Vec::with_capacity(share);
            let mut errors = 0usize;
            let mut first_error = None;
            for n in 0..share {
                // Round robin over the sources, across the openers too.
                let source = o.source(n * openers + i);
                if Instant::now() >= deadline {
                    errors += 1;
                    first_error.get_or_insert_with(|| "open timeout".to_string());
                    continue;
                }
                match open_one(route, target, source) {
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
    if let Target::Here(h) = &server {
        let wait = Instant::now() + Duration::from_secs(5);
        while h.held() < conns.len() && Instant::now() < wait {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(o.settle);
    if let (Some(p), Some(b)) = (o.proxy_pid, before) {
        let a = procfs::snapshot(p)?;
        out.before = Some(b.into());
        out.after = Some(a.into());
        if !conns.is_empty() {
            let k = conns.len() as f64;
            out.rss_kib_per_conn = Some((a.rss_kib as f64 - b.rss_kib as f64) / k);
            out.pss_kib_per_conn = Some((a.pss_kib as f64 - b.pss_kib as f64) / k);
            out.anon_kib_per_conn = Some((a.anon_kib as f64 - b.anon_kib as f64) / k);
            if let Some(w) = warmed {
                out.rss_kib_per_conn_warm = Some((a.rss_kib as f64 - w.rss_kib as f64) / k);
                out.anon_kib_per_conn_warm = Some((a.anon_kib as f64 - w.anon_kib as f64) / k);
            }
        }
        out.warmed = warmed.map(Mem::from);
    }
    if let Some(f) = &o.ready_file {
        std::fs::write(f, format!("{}\n", conns.len()))?;
        let until = Instant::now() + o.hold_max;
        while f.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(conns);
    out.held_by_target = server.finish()?;
    Ok(out)
}

enum Target {
    Here(HoldServer),
    Child(ChildTarget),
}

impl Target {
    fn addr(&self) -> SocketAddr {
        match self {
            Target::Here(h) => h.addr,
            Target::Child(c) => c.addr,
        }
    }

    /// Closes the held connections; returns how many there were.
    fn finish(self) -> io::Result<usize> {
        match self {
            Target::Here(h) => {
                let n = h.held();
                h.release();
                Ok(n)
            }
            Target::Child(c) => c.finish(),
        }
    }
}

/// `EXE hold-target --ip IP` in a child process: prints its address, holds
/// what it accepts, and on EOF on its stdin prints how many it held.
struct ChildTarget {
    addr: SocketAddr,
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl ChildTarget {
    fn start(exe: &Path, ip: IpAddr) -> io::Result<ChildTarget> {
        let mut child = Command::new(exe)
            .arg("hold-target")
            .arg("--ip")
            .arg(ip.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("hold-target: no stdout"))?,
        );
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Ok(addr) = line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "hold-target printed {line:?}, not an address"
            )));
        };
        Ok(ChildTarget {
            addr,
            child,
            stdout,
        })
    }

    fn finish(mut self) -> io::Result<usize> {
        drop(self.child.stdin.take());
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line);
        let status = self.child.wait()?;
        read?;
        if !status.success() {
            return Err(io::Error::other(format!("hold-target: {status}")));
        }
        line.trim()
            .strip_prefix("held ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("hold-target printed {line:?}")))
    }
}

/// The body of `sixsocks-bench hold-target`: a [`HoldServer`] on `ip`;
/// prints its address, then on EOF on stdin `held N`.
pub fn hold_target(ip: IpAddr) -> io::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let h = HoldServer::start(ip)?;
    let mut out = io::stdout();
    writeln!(out, "{}", h.addr)?;
    out.flush()?;
    let mut sink = Vec::new();
    io::stdin().read_to_end(&mut sink)?;
    writeln!(out, "held {}", h.held())?;
    out.flush()?;
    h.release();
    Ok(())
}

impl Opts {
    /// The source address of the `n`th connection: round robin over the
    /// sources.
    fn source(&self, n: usize) -> Option<IpAddr> {
        (self.sources > 0).then(|| IpAddr::from([127, 0, 1, 1 + (n % self.sources) as u8]))
    }
}

/// `n` connections relayed to an echo target one after another, each
/// echoed and closed by both ends, so that the proxy is at rest again.
fn warm_up(route: Route, ip: IpAddr, n: usize, source: Option<IpAddr>) -> io::Result<()> {
    let echo = crate::servers::listen(ip)?;
    let target = echo.local_addr()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        for _ in 0..n {
            let (mut s, _) = echo.accept()?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut b = [0u8; 64];
            loop {
                match s.read(&mut b)? {
                    0 => break,
                    k => s.write_all(&b[..k])?,
                }
            }
        }
        Ok(())
    });
    for _ in 0..n {
        let mut s = open_one(route, target, source)?;
        s.shutdown(std::net::Shutdown::Write)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
    }
    server
        .join()
        .map_err(|_| io::Error::other("warm-up echo thread panicked"))?
}

fn open_one(route: Route, target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let mut s = connect_blocking_from(route, target, Duration::from_secs(10), source)?;
    s.write_all(b"i")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    if &b != b"i" {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    Ok(s)
}

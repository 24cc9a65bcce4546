//! Bulk throughput: N streams upload to a sink, download from a source, or
//! send to an echo server and read everything back, for a fixed time after
//! a warm-up. Blocking sockets and a thread per stream direction: the
//! fewest system calls per byte for the load generator, so that the direct
//! case shows the machine's limit rather than ours.
//!
//! A stream that makes no progress for longer than the stall threshold is
//! reported as stalled: a deadlocked proxy must not pass for a slow one.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::servers::{Kind, Server, CHUNK};
use crate::socks::{connect_blocking, Route};

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client → target (sink).
    Upload,
    /// Target (source) → client.
    Download,
    /// Client → echo server → client, both at once.
    Echo,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub direction: Direction,
    pub streams: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// No progress for longer than this is a stall.
    pub stall: Duration,
}

/// What was measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// Payload rate over the window at the receiving end, Gbit/s (for
    /// echo: bytes that came back).
    pub gbps: f64,
    pub window_s: f64,
    pub window_bytes: u64,
    /// Bytes the proxy carried over the whole run, both directions
    /// (warm-up and teardown included): what its CPU time is divided by.
    pub relayed_bytes: u64,
    pub streams: usize,
    /// Streams that went longer than the stall threshold without progress.
    pub stalled_streams: usize,
    /// Streams that failed with an error or an early EOF.
    pub failed_streams: usize,
    /// The longest time any stream went without progress, ms.
    pub max_gap_ms: u64,
    /// The slowest and fastest stream over the window, Gbit/s.
    pub min_stream_gbps: f64,
    pub max_stream_gbps: f64,
    /// Threads that had not ended 3 s after the streams were shut down.
    pub stuck_threads: usize,
}

#[derive(Default)]
struct Stream {
    sent: AtomicU64,
    recv: AtomicU64,
    failed: AtomicBool,
}

/// Runs one throughput case along `route`, with the target servers on `ip`.
pub fn run(route: Route, ip: IpAddr, o: &Opts) -> io::Result<Outcome> {
    let kind = match o.direction {
        Direction::Upload => Kind::Sink,
        Direction::Download => Kind::Source,
        Direction::Echo => Kind::Echo,
    };
    let server = Server::start(ip, kind)?;
    run_against(route, server.addr, &server.received, o)
}

/// Runs one case against a target at `target` whose received-bytes counter
/// is `server_received`.
fn run_against(
    route: Route,
    target: SocketAddr,
    server_received: &AtomicU64,
    o: &Opts,
) -> io::Result<Outcome> {
    let n = o.streams.max(1);
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let s = connect_blocking(route, target, Duration::from_secs(5))
            .map_err(|e| io::Error::new(e.kind(), format!("stream {i}: {e}")))?;
        s.set_read_timeout(None)?;
        s.set_write_timeout(None)?;
        socks.push(s);
    }
    let states: Vec<Arc<Stream>> = (0..n).map(|_| Arc::new(Stream::default())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut threads = 0;
    let mut handles = Vec::new();
    for (s, st) in socks.iter().zip(&states) {
        handles.push(s.try_clone()?);
        let writes = matches!(o.direction, Direction::Upload | Direction::Echo);
        let reads = matches!(o.direction, Direction::Download | Direction::Echo);
        if writes {
            let (s, st, stop, done) = (s.try_clone()?, st.clone(), stop.clone(), done.clone());
            threads += 1;
            std::thread::Builder::new()
                .name("writer".into())
                .spawn(move || {
                    writer(s, &st, &stop);
                    done.fetch_add(1, Ordering::SeqCst);
                })?;
        }
        if reads {
            let go = o.direction == Direction::Download;
            let (s, st, stop, done) = (s.try_clone()?, st.clone(), stop.clone(), done.clone());
            threads += 1;
            std::thread::Builder::new()
                .name("reader".into())
                .spawn(move || {
                    reader(s, go, &st, &stop);
                    done.fetch_add(1, Ordering::SeqCst);
                })?;
        }
    }
    drop(socks);

    // The counter a stall is judged on: bytes received where the stream
    // receives, bytes the socket accepted for an upload.
    let progress = |st: &Stream| match o.direction {
        Direction::Upload => st.sent.load(Ordering::Relaxed),
        _ => st.recv.load(Ordering::Relaxed),
    };
    let measured = || match o.direction {
        Direction::Upload => server_received.load(Ordering::Relaxed),
        _ => states.iter().map(|s| s.recv.load(Ordering::Relaxed)).sum(),
    };

    let start = Instant::now();
    let warm_end = start + o.warmup;
    let end = warm_end + o.duration;
    let mut last_val = vec![0u64; n];
    let mut last_change = vec![start; n];
    let mut max_gap = vec![Duration::ZERO; n];
    let mut w0: Option<(Instant, u64, Vec<u64>)> = None;
    loop {
        let now = Instant::now();
        for (i, st) in states.iter().enumerate() {
            let v = progress(st);
            if v != last_val[i] {
                last_val[i] = v;
                last_change[i] = now;
            } else {
                max_gap[i] = max_gap[i].max(now - last_change[i]);
            }
        }
        if w0.is_none() && now >= warm_end {
            w0 = Some((
                now,
                measured(),
                states.iter().map(|s| progress(s)).collect(),
            ));
        }
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
    let t1 = Instant::now();
    let m1 = measured();
    let per1: Vec<u64> = states.iter().map(|s| progress(s)).collect();
    let (t0, m0, per0) = w0.unwrap_or((t1, m1, per1.clone()));
    let window = (t1 - t0).as_secs_f64();

    stop.store(true, Ordering::SeqCst);
    for h in &handles {
        let _ = h.shutdown(Shutdown::Both);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while done.load(Ordering::SeqCst) < threads && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }

    let gbps = |bytes: u64| {
        if window > 0.0 {
            bytes as f64 * 8.0 / window / 1e9
        } else {
            0.0
        }
    };
    let per_stream: Vec<f64> = per0
        .iter()
        .zip(&per1)
        .map(|(a, b)| gbps(b.saturating_sub(*a)))
        .collect();
    let up = match o.direction {
        Direction::Download => n as u64, // the one "go" byte per stream
        _ => server_received.load(Ordering::Relaxed),
    };
    let down: u64 = states.iter().map(|s| s.recv.load(Ordering::Relaxed)).sum();
    Ok(Outcome {
        gbps: gbps(m1.saturating_sub(m0)),
        window_s: window,
        window_bytes: m1.saturating_sub(m0),
        relayed_bytes: up + down,
        streams: n,
        stalled_streams: max_gap.iter().filter(|g| **g > o.stall).count(),
        failed_streams: states
            .iter()
            .filter(|s| s.failed.load(Ordering::SeqCst))
            .count(),
        max_gap_ms: max_gap.iter().max().map_or(0, |g| g.as_millis() as u64),
        min_stream_gbps: per_stream.iter().copied().fold(f64::INFINITY, f64::min),
        max_stream_gbps: per_stream.iter().copied().fold(0.0, f64::max),
        stuck_threads: threads - done.load(Ordering::SeqCst).min(threads),
    })
}

fn writer(mut s: TcpStream, st: &Stream, stop: &AtomicBool) {
    let buf = vec![0xa5u8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        match s.write(&buf) {
            Ok(0) => break,
            Ok(n) => {
                st.sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                if !stop.load(Ordering::SeqCst) {
                    st.failed.store(true, Ordering::SeqCst);
                }
                break;
            }
        }
    }
}

fn reader(mut s: TcpStream, go: bool, st: &Stream, stop: &AtomicBool) {
    if go && s.write_all(b"g").is_err() {
        st.failed.store(true, Ordering::SeqCst);
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !stop.load(Ordering::SeqCst) {
                    st.failed.store(true, Ordering::SeqCst);
                }
                return;
            }
            Ok(n) => {
                st.recv.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

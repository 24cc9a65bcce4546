//! Bulk throughput: N streams upload to a sink, download from a source, or
//! send to an echo server and read everything back, for a fixed time after
//! a warm-up. Async (tokio, a worker thread per core) with 128 KiB reads
//! and writes: a thread per stream direction would put up to 192 runnable
//! threads of ours on 2 cores at 64 streams, and a thread preempted while it
//! holds a socket's lock delays that socket's ACKs past the retransmission
//! timer, which then shows as a stall even on a direct connection.
//!
//! A stream that makes no progress for longer than the stall threshold is
//! reported as stalled: a deadlocked proxy must not pass for a slow one.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::servers::{start_async, Kind, CHUNK};
use crate::socks::{connect_async, Route};

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
    /// Streams that went longer than the stall threshold without progress,
    /// or never made any.
    pub stalled_streams: usize,
    /// Streams that failed with an error or an early EOF.
    pub failed_streams: usize,
    /// The longest time any stream went without progress, ms.
    pub max_gap_ms: u64,
    /// The slowest and fastest stream over the window, Gbit/s.
    pub min_stream_gbps: f64,
    pub max_stream_gbps: f64,
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server_received = Arc::new(AtomicU64::new(0));
    let target = rt.block_on(start_async(ip, kind, server_received.clone()))?;
    let out = run_against(&rt, route, target, &server_received, o);
    // Drops every task, and with them every socket, blocked or not.
    rt.shutdown_timeout(Duration::from_secs(1));
    out
}

/// Runs one case against a target at `target` whose received-bytes counter
/// is `server_received`.
fn run_against(
    rt: &tokio::runtime::Runtime,
    route: Route,
    target: SocketAddr,
    server_received: &AtomicU64,
    o: &Opts,
) -> io::Result<Outcome> {
    let n = o.streams.max(1);
    let socks = rt.block_on(async {
        let mut socks = Vec::with_capacity(n);
        for i in 0..n {
            let s = tokio::time::timeout(Duration::from_secs(5), connect_async(route, target))
                .await
                .map_err(|_| io::Error::other(format!("stream {i}: connect timed out")))?
                .map_err(|e| io::Error::new(e.kind(), format!("stream {i}: {e}")))?;
            socks.push(s);
        }
        Ok::<_, io::Error>(socks)
    })?;
    let states: Vec<Arc<Stream>> = (0..n).map(|_| Arc::new(Stream::default())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    for (s, st) in socks.into_iter().zip(&states) {
        let (st, stop) = (st.clone(), stop.clone());
        let direction = o.direction;
        rt.spawn(async move {
            let (mut r, mut w) = s.into_split();
            match direction {
                Direction::Upload => writer(&mut w, &st, &stop).await,
                Direction::Download => {
                    if w.write_all(b"g").await.is_err() {
                        st.failed.store(true, Ordering::SeqCst);
                        return;
                    }
                    reader(&mut r, &st, &stop).await
                }
                Direction::Echo => {
                    tokio::join!(writer(&mut w, &st, &stop), reader(&mut r, &st, &stop));
                }
            }
            // Hold both halves until the runtime goes: closing here would
            // be a half-close the peer might take for the end.
            std::future::pending::<()>().await;
        });
    }

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
        // A stream that moved nothing in the whole window is stalled too,
        // even in a window shorter than the threshold (the smoke run).
        stalled_streams: max_gap
            .iter()
            .zip(per0.iter().zip(&per1))
            .filter(|(g, (a, b))| **g > o.stall || a == b)
            .count(),
        failed_streams: states
            .iter()
            .filter(|s| s.failed.load(Ordering::SeqCst))
            .count(),
        max_gap_ms: max_gap.iter().max().map_or(0, |g| g.as_millis() as u64),
        min_stream_gbps: per_stream.iter().copied().fold(f64::INFINITY, f64::min),
        max_stream_gbps: per_stream.iter().copied().fold(0.0, f64::max),
    })
}

async fn writer(w: &mut tokio::net::tcp::OwnedWriteHalf, st: &Stream, stop: &AtomicBool) {
    let buf = vec![0xa5u8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        match w.write(&buf).await {
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

async fn reader(r: &mut tokio::net::tcp::OwnedReadHalf, st: &Stream, stop: &AtomicBool) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf).await {
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

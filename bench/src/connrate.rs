//! Connection rate: W workers, each looping connect + greeting + CONNECT +
//! 64-byte echo + close (for SOCKS 6: connect + request with the 64 bytes as
//! initial data + replies and echo + close) (half-close, then wait for the proxy's EOF, so that
//! the proxy's teardown is part of what is measured) for a fixed time.
//! Async (tokio), so that 32 workers cost the load generator two threads,
//! not 32 context switches per step.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::servers::start_echo_async;
use crate::socks::{connect_with_data_async, Route};
use crate::stats::Latency;

/// Bytes echoed on each connection.
pub const ECHO_BYTES: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub workers: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// A connection not done within this is counted as stalled and dropped.
    pub stall: Duration,
}

/// What was measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub workers: usize,
    /// Connections completed within the window, per second.
    pub conns_per_s: f64,
    pub window_s: f64,
    pub conns_window: u64,
    /// Connections completed over the whole run (what the proxy's CPU time
    /// is divided by).
    pub conns_total: u64,
    /// Connections that failed (refused, reset, wrong echo, early EOF).
    pub errors: u64,
    /// Connections that did not complete within the stall threshold.
    pub stalled: u64,
    pub first_error: Option<String>,
    /// Time from connect() to the proxy's EOF, for connections started in
    /// the window.
    pub latency: Latency,
}

#[derive(Default)]
struct WorkerResult {
    ns: Vec<u64>,
    window: u64,
    total: u64,
    errors: u64,
    stalled: u64,
    first_error: Option<String>,
}

/// Runs the connection-rate case along `route`, echo server on `ip`.
pub fn run(route: Route, ip: IpAddr, o: &Opts) -> io::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let target = start_echo_async(ip).await?;
        let start = Instant::now();
        let warm_end = start + o.warmup;
        let end = warm_end + o.duration;
        let mut tasks = Vec::new();
        for _ in 0..o.workers.max(1) {
            tasks.push(tokio::spawn(worker(route, target, warm_end, end, o.stall)));
        }
        let mut all = WorkerResult::default();
        for t in tasks {
            let r = t.await.map_err(io::Error::other)?;
            all.ns.extend(r.ns);
            all.window += r.window;
            all.total += r.total;
            all.errors += r.errors;
            all.stalled += r.stalled;
            if all.first_error.is_none() {
                all.first_error = r.first_error;
            }
        }
        let window = o.duration.as_secs_f64();
        Ok(Outcome {
            workers: o.workers.max(1),
            conns_per_s: all.window as f64 / window,
            window_s: window,
            conns_window: all.window,
            conns_total: all.total,
            errors: all.errors,
            stalled: all.stalled,
            first_error: all.first_error,
            latency: Latency::of(&mut all.ns),
        })
    })
}

async fn worker(
    route: Route,
    target: SocketAddr,
    warm_end: Instant,
    end: Instant,
    stall: Duration,
) -> WorkerResult {
    let mut r = WorkerResult::default();
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            return r;
        }
        match tokio::time::timeout(stall, one(route, target)).await {
            Ok(Ok(())) => {
                let t1 = Instant::now();
                r.total += 1;
                if t1 >= warm_end && t1 <= end {
                    r.window += 1;
                }
                if t0 >= warm_end {
                    r.ns.push((t1 - t0).as_nanos() as u64);
                }
            }
            Ok(Err(e)) => {
                r.errors += 1;
                r.first_error.get_or_insert_with(|| e.to_string());
                // Do not spin on a refusing proxy.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => {
                r.stalled += 1;
                r.first_error
                    .get_or_insert_with(|| format!("no progress for {stall:?}"));
            }
        }
    }
}

async fn one(route: Route, target: SocketAddr) -> io::Result<()> {
    let msg = [0x37u8; ECHO_BYTES];
    // SOCKS 6 sends the message with the request (0-RTT); the others after
    // the handshake.
    let (mut s, early) = connect_with_data_async(route, target, &msg).await?;
    let mut back = [0u8; ECHO_BYTES];
    if early.len() > ECHO_BYTES {
        return Err(io::Error::other("more bytes back than were sent"));
    }
    back[..early.len()].copy_from_slice(&early);
    s.read_exact(&mut back[early.len()..]).await?;
    if back != msg {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    s.shutdown().await?;
    let mut rest = [0u8; 16];
    match s.read(&mut rest).await? {
        0 => Ok(()),
        n => Err(io::Error::other(format!("{n} unexpected bytes before EOF"))),
    }
}

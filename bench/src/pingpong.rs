//! Ping-pong latency: one connection, a message of `size` bytes sent and
//! read back, `count` times in a row after a short warm-up. Blocking
//! sockets with TCP_NODELAY on both ends, so that the direct case is the
//! kernel's own round trip.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::servers::{Kind, Server};
use crate::socks::{connect_blocking, Route};
use crate::stats::Latency;

/// Round trips before the measured ones.
pub const WARMUP: usize = 200;

/// What was measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub size: usize,
    /// Round trips completed and measured.
    pub round_trips: usize,
    /// Round-trip time.
    pub rtt: Latency,
    /// A round trip that got no answer within the stall threshold.
    pub stalled: bool,
    pub error: Option<String>,
}

/// Runs `count` round trips of `size` bytes along `route`.
pub fn run(
    route: Route,
    ip: IpAddr,
    size: usize,
    count: usize,
    stall: Duration,
) -> io::Result<Outcome> {
    let server = Server::start(ip, Kind::Echo)?;
    let mut s = connect_blocking(route, server.addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(stall))?;
    s.set_write_timeout(Some(stall))?;
    let size = size.max(1);
    let msg = vec![0x42u8; size];
    let mut back = vec![0u8; size];
    let mut ns = Vec::with_capacity(count);
    let mut out = Outcome {
        size,
        ..Outcome::default()
    };
    for i in 0..WARMUP + count {
        let t = Instant::now();
        let r = s.write_all(&msg).and_then(|_| s.read_exact(&mut back));
        let dt = t.elapsed();
        if let Err(e) = r {
            out.stalled = matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            );
            out.error = Some(format!("round trip {i}: {e}"));
            break;
        }
        if back != msg {
            out.error = Some(format!("round trip {i}: echo differs from what was sent"));
            break;
        }
        if i >= WARMUP {
            ns.push(dt.as_nanos() as u64);
        }
    }
    out.round_trips = ns.len();
    out.rtt = Latency::of(&mut ns);
    Ok(out)
}

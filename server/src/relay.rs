//! Relaying bytes both ways between the client and the target.
//!
//! Two copy loops run in one task. When one side reaches EOF, the other
//! side's write half is shut down (the half-close is passed on) and the
//! other direction keeps going until it ends too. An error in either
//! direction ends both. An optional idle timeout ends the relay when no
//! byte moved in either direction for that long.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Size of each direction's copy buffer.
const BUF_SIZE: usize = 32 * 1024;

/// Bytes moved, counted as they are written (so they are right even when
/// the relay ends with an error).
#[derive(Debug, Default)]
pub struct Counters {
    /// Client → target.
    pub up: AtomicU64,
    /// Target → client.
    pub down: AtomicU64,
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions reached EOF.
    Closed,
    /// No traffic for the idle timeout.
    Idle,
    /// A read or write failed (usually a reset by one of the peers).
    Error(io::Error),
}

/// Relay until both directions are done. `initial_up` (optimistic data read
/// with the request) is written to the target first.
pub async fn relay(
    client: &mut TcpStream,
    target: &mut TcpStream,
    initial_up: &[u8],
    idle: Option<Duration>,
    counters: &Counters,
) -> RelayEnd {
    let origin = Instant::now();
    let last = AtomicU64::new(0);
    let (mut cr, mut cw) = client.split();
    let (mut tr, mut tw) = target.split();
    let up = async {
        if !initial_up.is_empty() {
            tw.write_all(initial_up).await?;
            counters
                .up
                .fetch_add(initial_up.len() as u64, Ordering::Relaxed);
        }
        pump(&mut cr, &mut tw, &counters.up, &last, origin).await
    };
    let down = pump(&mut tr, &mut cw, &counters.down, &last, origin);
    let both = async { tokio::try_join!(up, down) };
    let watch = async {
        match idle {
            None => std::future::pending::<()>().await,
            Some(idle) => loop {
                let since = Duration::from_millis(last.load(Ordering::Relaxed));
                let deadline = origin + since + idle;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            },
        }
    };
    tokio::select! {
        r = both => match r {
            Ok(_) => RelayEnd::Closed,
            Err(e) => RelayEnd::Error(e),
        },
        _ = watch => RelayEnd::Idle,
    }
}

async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    count: &AtomicU64,
    last: &AtomicU64,
    origin: Instant,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // Pass the half-close on. The peer may already be gone; that
            // is not an error for the other direction.
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

//! The load generator's own targets: sink, source and echo servers, async
//! (throughput, connection rate) or blocking with a thread per connection
//! (ping-pong: the kernel's own round trip, no event loop in between), and
//! a hold server (thousands of idle connections, no thread each).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the servers' and clients' read and write buffers.
pub const CHUNK: usize = 128 * 1024;

/// What a blocking server does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads and discards (counts what it read).
    Sink,
    /// Waits for one byte, then writes as fast as it can.
    Source,
    /// Writes back what it reads (counts what it read).
    Echo,
}

/// A listening socket with a large backlog on `ip`, port chosen by the kernel.
pub fn listen(ip: IpAddr) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ip, 0);
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Stops an accept loop: sets the flag, then connects once to wake it.
struct Stopper {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A blocking server; stops accepting when dropped (connections already
/// accepted run until their peer goes away).
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Bytes read from all its connections (sink and echo).
    pub received: Arc<AtomicU64>,
    _stopper: Stopper,
}

impl Server {
    /// Starts a server of `kind` on `ip`.
    pub fn start(ip: IpAddr, kind: Kind) -> io::Result<Server> {
        let l = listen(ip)?;
        let addr = l.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (received.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("{kind:?}-accept"))
            .spawn(move || {
                for c in l.incoming() {
                    if st.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(c) = c else { continue };
                    let r = r.clone();
                    let _ =
                        std::thread::Builder::new()
                            .name(format!("{kind:?}"))
                            .spawn(move || {
                                let _ = serve(c, kind, &r);
                            });
                }
            })?;
        Ok(Server {
            addr,
            received,
            _stopper: Stopper { addr, stop },
        })
    }
}

fn serve(mut c: TcpStream, kind: Kind, received: &AtomicU64) -> io::Result<()> {
    c.set_nodelay(true)?;
    let mut buf = vec![0u8; CHUNK];
    match kind {
        Kind::Sink => loop {
            let n = c.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            received.fetch_add(n as u64, Ordering::Relaxed);
        },
        Kind::Source => {
            let mut go = [0u8; 1];
            c.read_exact(&mut go)?;
            buf.fill(0x5a);
            loop {
                c.write_all(&buf)?;
            }
        }
        Kind::Echo => loop {
            let n = c.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            received.fetch_add(n as u64, Ordering::Relaxed);
            c.write_all(&buf[..n])?;
        },
    }
}

/// Accepts connections, answers one byte on each (proof the relay is up),
/// then holds them idle until dropped.
pub struct HoldServer {
    /// Where it listens.
    pub addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    count: Arc<AtomicUsize>,
    _stopper: Stopper,
}

impl HoldServer {
    /// Starts a hold server on `ip`.
    pub fn start(ip: IpAddr) -> io::Result<HoldServer> {
        let l = listen(ip)?;
        let addr = l.local_addr()?;
        let held = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, n, st) = (held.clone(), count.clone(), stop.clone());
        std::thread::Builder::new()
            .name("hold-accept".into())
            .spawn(move || {
                for c in l.incoming() {
                    if st.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut c) = c else { continue };
                    let mut b = [0u8; 1];
                    let ok = c.set_nodelay(true).is_ok()
                        && c.set_read_timeout(Some(Duration::from_secs(10))).is_ok()
                        && c.read_exact(&mut b).is_ok()
                        && c.write_all(&b).is_ok();
                    if ok {
                        if let Ok(mut v) = h.lock() {
                            v.push(c);
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })?;
        Ok(HoldServer {
            addr,
            held,
            count,
            _stopper: Stopper { addr, stop },
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Closes every held connection.
    pub fn release(&self) {
        if let Ok(mut v) = self.held.lock() {
            v.clear();
        }
    }
}

/// Starts an async server of `kind` on `ip` inside the current tokio
/// runtime; `received` counts what it reads (sink and echo).
pub async fn start_async(
    ip: IpAddr,
    kind: Kind,
    received: Arc<AtomicU64>,
) -> io::Result<SocketAddr> {
    let l = tokio::net::TcpListener::from_std({
        let l = listen(ip)?;
        l.set_nonblocking(true)?;
        l
    })?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((c, _)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let received = received.clone();
            tokio::spawn(async move {
                let _ = serve_async(c, kind, &received).await;
            });
        }
    });
    Ok(addr)
}

async fn serve_async(
    mut c: tokio::net::TcpStream,
    kind: Kind,
    received: &AtomicU64,
) -> io::Result<()> {
    c.set_nodelay(true)?;
    let mut buf = vec![0u8; CHUNK];
    match kind {
        Kind::Sink => loop {
            let n = c.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            received.fetch_add(n as u64, Ordering::Relaxed);
        },
        Kind::Source => {
            let mut go = [0u8; 1];
            c.read_exact(&mut go).await?;
            buf.fill(0x5a);
            loop {
                c.write_all(&buf).await?;
            }
        }
        Kind::Echo => loop {
            let n = c.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            received.fetch_add(n as u64, Ordering::Relaxed);
            c.write_all(&buf[..n]).await?;
        },
    }
}

/// Starts an async echo server on `ip` inside the current tokio runtime.
/// Each connection is echoed until EOF, then closed.
pub async fn start_echo_async(ip: IpAddr) -> io::Result<SocketAddr> {
    let l = tokio::net::TcpListener::from_std({
        let l = listen(ip)?;
        l.set_nonblocking(true)?;
        l
    })?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                // EMFILE and friends: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

//! A tiny fake SOCKS server for the client tests, built from
//! `sixsocks_proto::server::ServerHandshake`, and a loopback echo server.
//!
//! Not the real server (crate sixsocks-server): just enough to drive the
//! client through every path on 127.0.0.1.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Verify};
use sixsocks_proto::{Command, Host, Instruction, ReplyCode, Request, TargetAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Every wait in a test is bounded by this.
pub const TEST_DEADLINE: Duration = Duration::from_secs(10);

/// Await `fut`, failing the test if it takes longer than [`TEST_DEADLINE`].
pub async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_DEADLINE, fut)
        .await
        .expect("test step exceeded its deadline")
}

/// How the fake server behaves.
#[derive(Clone, Default)]
pub struct FakeConfig {
    pub handshake: HandshakeConfig,
    /// Accepted username/password pairs.
    pub users: Vec<(Vec<u8>, Vec<u8>)>,
    /// Answer every request with this code instead of carrying it out.
    pub refuse: Option<ReplyCode>,
    /// Send Tor's extended codes (with `refuse`).
    pub extended: bool,
    /// Bytes written in the same write as a successful CONNECT reply, as if
    /// the target had spoken first.
    pub banner: Vec<u8>,
    /// Write every handshake reply one byte at a time.
    pub dribble: bool,
}

/// What the fake server saw for one request.
#[derive(Debug)]
pub struct Seen {
    pub request: Request,
    /// Bytes already received behind the request when it completed
    /// (optimistic data that arrived with it).
    pub early: Vec<u8>,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl FakeServer {
    /// The next request the server completed.
    pub async fn next_request(&mut self) -> Seen {
        bounded(self.seen.recv())
            .await
            .expect("fake server task ended")
    }
}

/// Start the fake server on 127.0.0.1:0.
pub async fn start(cfg: FakeConfig) -> FakeServer {
    start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cfg)
        .await
        .expect("bind 127.0.0.1:0")
}

/// Start the fake server on `bind`.
pub async fn start_on(bind: SocketAddr, cfg: FakeConfig) -> std::io::Result<FakeServer> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg = Arc::new(cfg);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let _ = sock.set_nodelay(true);
            let cfg = cfg.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = serve_conn(sock, &cfg, &tx).await;
            });
        }
    });
    Ok(FakeServer { addr, seen: rx })
}

async fn write_reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
    dribble: bool,
) -> std::io::Result<()> {
    if dribble {
        for b in bytes {
            s.write_all(std::slice::from_ref(b)).await?;
            s.flush().await?;
            tokio::task::yield_now().await;
        }
    } else {
        s.write_all(bytes).await?;
    }
    s.flush().await
}

/// Serve one client connection (any stream: TCP or an in-memory duplex).
pub async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    cfg: &FakeConfig,
    tx: &mpsc::UnboundedSender<Seen>,
) -> std::io::Result<()> {
    let mut hs = ServerHandshake::new(cfg.handshake.clone());
    let (request, buf) = loop {
        match hs.step() {
            Instruction::NeedMore(_) => {
                let n = bounded(sock.read(hs.input().spare())).await?;
                if n == 0 {
                    return Ok(());
                }
                hs.input().filled(n);
            }
            Instruction::Send(bytes) => write_reply(&mut sock, &bytes, cfg.dribble).await?,
            Instruction::Event(Verify { username, password }) => {
                let ok = cfg
                    .users
                    .iter()
                    .any(|(u, p)| *u == username && p.as_slice() == password.expose());
                // The next step answers: the RFC 1929 reply, or the refusal.
                hs.verdict(ok);
            }
            Instruction::Finished {
                value: Accepted::Socks(request),
                rest,
            } => break (request, rest),
            Instruction::Finished { .. } => return Ok(()),
            Instruction::Failed { reply, .. } => {
                write_reply(&mut sock, &reply, cfg.dribble).await?;
                return Ok(());
            }
        }
    };
    let _ = tx.send(Seen {
        request: request.clone(),
        early: buf.clone(),
    });

    let reply =
        |code: ReplyCode, bound: Option<&TargetAddr>| request.reply(code, bound, cfg.extended);
    if let Some(code) = cfg.refuse {
        return write_reply(&mut sock, &reply(code, None), cfg.dribble).await;
    }
    match request.command {
        Command::CONNECT => {
            let ip = match &request.target.host {
                Host::Ip(ip) => *ip,
                Host::Domain(d) if d == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Host::Domain(_) => {
                    let r = reply(ReplyCode::HostUnreachable, None);
                    return write_reply(&mut sock, &r, cfg.dribble).await;
                }
            };
            let mut out =
                match bounded(TcpStream::connect(SocketAddr::new(ip, request.target.port))).await {
                    Ok(o) => o,
                    Err(_) => {
                        let r = reply(ReplyCode::ConnectionRefused, None);
                        return write_reply(&mut sock, &r, cfg.dribble).await;
                    }
                };
            let bound = TargetAddr::from(out.local_addr()?);
            let mut r = reply(ReplyCode::Succeeded, Some(&bound));
            r.extend_from_slice(&cfg.banner);
            write_reply(&mut sock, &r, cfg.dribble).await?;
            // Optimistic data received with the request goes to the target.
            out.write_all(&buf).await?;
            let _ = tokio::io::copy_bidirectional(&mut sock, &mut out).await;
            Ok(())
        }
        Command::RESOLVE => {
            let r = match &request.target.host {
                Host::Domain(d) if d == "localhost" => reply(
                    ReplyCode::Succeeded,
                    Some(&TargetAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
                ),
                _ => reply(ReplyCode::HostUnreachable, None),
            };
            write_reply(&mut sock, &r, cfg.dribble).await
        }
        Command::RESOLVE_PTR => {
            let r = match &request.target.host {
                Host::Ip(IpAddr::V4(ip)) if *ip == Ipv4Addr::LOCALHOST => reply(
                    ReplyCode::Succeeded,
                    Some(&TargetAddr::domain("localhost", 0)),
                ),
                _ => reply(ReplyCode::HostUnreachable, None),
            };
            write_reply(&mut sock, &r, cfg.dribble).await
        }
        _ => {
            write_reply(
                &mut sock,
                &reply(ReplyCode::CommandNotSupported, None),
                false,
            )
            .await
        }
    }
}

/// A loopback echo server; returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A loopback port with nothing listening on it (bound, then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

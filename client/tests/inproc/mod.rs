//! Shared by the client tests that run against the real server in-process
//! (`sixsocks_server::Server` on 127.0.0.1:0): bounded waits, a temporary
//! users file, the server itself, and UDP echo servers.

#![allow(dead_code)] // Each test crate uses a different subset.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sixsocks_proto::Password;
use sixsocks_server::{Config, Server};
use tokio::net::UdpSocket;

/// Every wait in a test is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("test step exceeded its deadline")
}

/// A users file in a fresh temporary directory, removed on drop.
pub struct Users {
    dir: PathBuf,
    pub file: PathBuf,
}

impl Users {
    pub fn new(users: &[(&str, &str)]) -> Users {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sixsocks-client-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users");
        for (name, pw) in users {
            sixsocks_server::auth::set_user(&file, name, &Password::new(pw.as_bytes().to_vec()))
                .unwrap();
        }
        Users { dir, file }
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start the real server on `listen`, with `users` (if any) and the
/// configuration adjusted by `f`; returns the address it listens on.
pub async fn serve(
    listen: SocketAddr,
    users: Option<&Users>,
    f: impl FnOnce(&mut Config),
) -> SocketAddr {
    let (addr, stop) = serve_until(listen, users, f);
    // Never stopped: the sender lives as long as the test process.
    std::mem::forget(stop);
    addr
}

/// [`serve`], stopping when the returned sender is dropped (a proxy
/// restart: bind a new one on the same address).
pub fn serve_until(
    listen: SocketAddr,
    users: Option<&Users>,
    f: impl FnOnce(&mut Config),
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut config = Config {
        listen: vec![listen],
        users_file: users.map(|u| u.file.clone()),
        ..Config::default()
    };
    f(&mut config);
    let server = Server::bind(config).expect("server binds");
    let addr = server.local_addrs()[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// [`serve`] on 127.0.0.1:0.
pub async fn serve_local(users: Option<&Users>, f: impl FnOnce(&mut Config)) -> SocketAddr {
    serve((Ipv4Addr::LOCALHOST, 0).into(), users, f).await
}

/// A server on `addr` again, once the one that was there stopped (the
/// address may take a moment to be free): a proxy restart.
pub async fn restart(addr: SocketAddr) {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Ok(server) = Server::bind(Config {
            listen: vec![addr],
            ..Config::default()
        }) {
            tokio::spawn(server.run(std::future::pending()));
            return;
        }
    }
    panic!("{addr} is not free again after a second");
}

/// A TCP echo server on 127.0.0.1 that counts the connections it accepted.
pub async fn tcp_echo() -> (SocketAddr, std::sync::Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, accepted)
}

/// A UDP echo server on `ip`; returns its address.
pub async fn udp_echo(ip: IpAddr) -> SocketAddr {
    let s = UdpSocket::bind((ip, 0)).await.unwrap();
    let addr = s.local_addr().unwrap();
    spawn_echo(s);
    addr
}

fn spawn_echo(s: UdpSocket) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 70_000];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
}

/// A UDP echo server on 127.0.0.1 and, with the same port, on ::1 when
/// possible, so that `localhost` reaches it whichever address it resolves to.
pub async fn udp_echo_dual() -> SocketAddr {
    for _ in 0..20 {
        let s4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = s4.local_addr().unwrap();
        match UdpSocket::bind((Ipv6Addr::LOCALHOST, addr.port())).await {
            Ok(s6) => {
                spawn_echo(s4);
                spawn_echo(s6);
                return addr;
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
            Err(_) => break, // No IPv6 loopback.
        }
    }
    udp_echo(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
}

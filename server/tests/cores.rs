//! A server on one runtime per thread (`sixsocks_server::cores`): the
//! kernel spreads connections over the threads' listening sockets, and a
//! thread kept busy hands the clients it accepts to the idle one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sixsocks_server::config::Config;
use sixsocks_server::cores::{Cores, KEEP_BELOW, SAMPLE};
use sixsocks_server::Server;

mod common;
use common::socks5_connect;

/// An echo target on its own thread: each connection echoes one read.
fn echo_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf) {
                    let _ = s.write_all(&buf[..n]);
                }
            });
        }
    });
    addr
}

/// One SOCKS5 CONNECT through `proxy` and a 5-byte echo.
fn connect_and_echo(proxy: SocketAddr, target: SocketAddr) {
    let mut s = socks5_connect(proxy, target);
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
}

fn noop() {}

#[test]
fn connections_spread_over_threads_and_a_busy_thread_hands_them_off() {
    let cores = Cores::start(2, noop).expect("runtimes");
    let shards = cores.shards();
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Config::default()
    };
    let (proxy, stop) = cores.block_on(async {
        let server = Server::bind_sharded(config, shards.clone()).expect("bind");
        let addr = server.local_addrs()[0];
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        (addr, tx)
    });
    // The main thread's runtime only runs inside block_on: keep it running
    // on a thread of its own while the clients connect from here.
    let cores = Arc::new(cores);
    let quit = Arc::new(AtomicBool::new(false));
    let driver = {
        let (cores, quit) = (cores.clone(), quit.clone());
        std::thread::spawn(move || {
            cores.block_on(async move {
                while !quit.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
    };
    let target = echo_target();

    // Both threads idle: each keeps what it accepts, and the kernel's
    // hash over the client's port reaches both (40 of 40 on one would be
    // a chance of 2^-39).
    for _ in 0..40 {
        connect_and_echo(proxy, target);
    }
    let (a, b) = (shards.load(0).served(), shards.load(1).served());
    assert_eq!(a + b, 40, "served {a} + {b}");
    assert!(a > 0 && b > 0, "one thread served all: {a} and {b}");
    assert_eq!(shards.load(0).handed_off() + shards.load(1).handed_off(), 0);

    // Thread 1 busy (a task that spins and yields, as many busy relays
    // do): once its samples show it, what it accepts goes to thread 0.
    let busy = Arc::new(AtomicBool::new(true));
    {
        let busy = busy.clone();
        shards.handle(1).spawn(async move {
            while busy.load(Ordering::SeqCst) {
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(300) {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shards.load(1).permille() < KEEP_BELOW && Instant::now() < deadline {
        std::thread::sleep(SAMPLE);
    }
    assert!(
        shards.load(1).permille() >= KEEP_BELOW,
        "the busy thread's load never showed: {}",
        shards.load(1).permille()
    );
    let before = (shards.load(0).served(), shards.load(1).served());
    for _ in 0..40 {
        connect_and_echo(proxy, target);
    }
    let on_0 = shards.load(0).served() - before.0;
    let on_1 = shards.load(1).served() - before.1;
    busy.store(false, Ordering::SeqCst);
    assert_eq!(on_0 + on_1, 40);
    // Every connection thread 1 accepted went to thread 0 (its load stays
    // over the threshold while the spinner runs).
    assert_eq!(on_1, 0, "the busy thread kept {on_1} of 40");
    assert!(
        shards.load(1).handed_off() > 0,
        "the busy thread accepted none of 40"
    );

    quit.store(true, Ordering::SeqCst);
    driver.join().unwrap();
    let _ = stop.send(());
    let Ok(cores) = Arc::try_unwrap(cores) else {
        panic!("cores still shared")
    };
    cores.shutdown(Duration::from_millis(100));
}

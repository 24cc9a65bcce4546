//! The heap an idle relayed connection holds in the server, counted by
//! the allocator (dhat), not estimated from RSS: the session's task, the
//! two sockets' registrations in the runtime, the relay's timer, the
//! record. `bench/run.sh`'s idle case measures RSS (the allocator's pages
//! and fragmentation too) against the other servers.
//!
//! One test in this file: dhat allows one profiler per process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sixsocks_server::config::Config;
use sixsocks_server::Server;

mod common;
use common::socks5_connect;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Most heap bytes one idle relayed CONNECT may hold. Measured 2026-12-03
/// (tokio 1.54, x86_64): 1,264 bytes in 4 blocks: the relay phase's task
/// (its 528-byte future in a 640-byte, 128-byte aligned cell), the two
/// sockets' readiness state (tokio's ScheduledIo, 128-byte aligned, in an
/// Arc: 256 bytes each) and the relay's idle timer (112). It was 1,392
/// with a 560-byte future (a 768-byte cell), and 1,904 while the spawned
/// block kept a second copy of the phase.
const MAX_BYTES_PER_CONNECTION: usize = 1300;

/// Connections opened before counting (pools, lazily made state) and
/// counted.
const WARM: usize = 50;
const COUNTED: usize = 400;

#[test]
fn an_idle_relayed_connection_holds_little_heap() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The target holds every connection it accepts, without reading.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let held = Arc::new(AtomicUsize::new(0));
    let held_in = held.clone();
    std::thread::spawn(move || {
        let mut keep = Vec::with_capacity(WARM + COUNTED);
        for s in target.incoming().take(WARM + COUNTED) {
            keep.push(s.expect("accept at the target"));
            held_in.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_secs(60));
        drop(keep);
    });
    let mut config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Config::default()
    };
    config.max_clients_per_address = 10_000;
    config.max_handshakes_per_address = 10_000;
    let (proxy, _stop) = rt.block_on(async {
        let server = Server::bind(config).expect("bind");
        let addr = server.local_addrs()[0];
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        (addr, tx)
    });
    let mut clients = Vec::with_capacity(WARM + COUNTED);
    let wait_held = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while held.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            held.load(Ordering::SeqCst) >= n,
            "the target holds fewer than {n}"
        );
        // The relays reach their idle wait.
        std::thread::sleep(Duration::from_millis(300));
    };
    for _ in 0..WARM {
        clients.push(socks5_connect(proxy, target_addr));
    }
    wait_held(WARM);
    let before = dhat::HeapStats::get();
    for _ in 0..COUNTED {
        clients.push(socks5_connect(proxy, target_addr));
    }
    wait_held(WARM + COUNTED);
    let after = dhat::HeapStats::get();
    let bytes = (after.curr_bytes as f64 - before.curr_bytes as f64) / COUNTED as f64;
    let blocks = (after.curr_blocks as f64 - before.curr_blocks as f64) / COUNTED as f64;
    eprintln!("an idle relayed connection holds {bytes:.0} heap bytes in {blocks:.1} blocks");
    assert!(
        bytes <= MAX_BYTES_PER_CONNECTION as f64,
        "{bytes:.0} heap bytes per idle connection (at most {MAX_BYTES_PER_CONNECTION})"
    );
    drop(clients);
}

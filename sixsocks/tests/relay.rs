//! The relay and the process: half-close in both directions, a large
//! bidirectional transfer, the client limit, the idle timeout, and graceful
//! shutdown on SIGTERM/SIGINT.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Whether a SOCKS5 exchange (greeting 00, then a request) succeeded,
/// judging by the bytes the proxy sent.
fn v5_succeeded(got: &[u8]) -> bool {
    got.len() >= 4 && got[..2] == [0x05, 0x00] && got[2..4] == [0x05, 0x00]
}

/// Parse a numeric field of a `session end` line.
fn num(f: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    f.get(key)
        .unwrap_or_else(|| panic!("no {key}= in session end {f:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {f:?}"))
}

#[test]
fn max_clients_refuses_the_third_cleanly() {
    let echo = echo_server();
    let server = Server::start(&["--max-clients", "2"]);
    let mut a = socks5_tunnel(server.addr, echo.addr);
    let mut b = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut a, b"first");
    echo_roundtrip(&mut b, b"second");

    let mut c = connect(server.addr);
    let mut msg = vec![0x05, 0x01, 0x00];
    msg.extend(v5_request(0x01, &v5_addr(echo.addr)));
    let _ = c.write_all(&msg);
    let (got, end) = read_to_close(&mut c);
    assert_ne!(
        end,
        End::Timeout,
        "the third client was neither closed nor answered (got {got:02x?})"
    );
    assert!(
        !v5_succeeded(&got),
        "the third client was served: {got:02x?}"
    );
    assert_eq!(echo.accepted(), 2, "the third client reached the target");

    // The first two are unaffected.
    echo_roundtrip(&mut a, b"first again");
    echo_roundtrip(&mut b, b"second again");

    // Once one leaves, a new client gets its slot (poll, bounded).
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = false;
    while !served && Instant::now() < deadline {
        let mut d = connect(server.addr);
        let _ = d.write_all(&msg);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        // Read the two answers (2 + 10 bytes) or the close.
        while got.len() < 12 {
            match d.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if v5_succeeded(&got) {
            echo_roundtrip(&mut d, b"fresh slot");
            served = true;
        } else {
            thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(served, "no client was served after a slot was freed");
    echo_roundtrip(&mut b, b"second still");
}

#[test]
fn half_close_client_to_target() {
    half_close_client_to_target_in("copy");
}

#[test]
fn half_close_client_to_target_splice() {
    half_close_client_to_target_in("splice");
}

/// The default engine (`auto`: splice while few relays are live).
#[test]
fn half_close_client_to_target_auto() {
    half_close_client_to_target_in("auto");
}

fn half_close_client_to_target_in(mode: &str) {
    // The target reads until EOF, then answers with what it got, twice.
    let target = spawn_target(|mut s| {
        let mut got = Vec::new();
        if s.read_to_end(&mut got).is_err() {
            return;
        }
        let _ = s.write_all(&got);
        let _ = s.write_all(&got);
        let _ = s.shutdown(Shutdown::Write);
    });
    let server = Server::start(&["--relay-mode", mode]);
    let request: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut s = socks5_tunnel(server.addr, target.addr);
    s.write_all(&request).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (got, end) = read_to_close(&mut s);
    assert_eq!(end, End::Eof, "the answer ends with a clean EOF");
    assert_eq!(got.len(), 2 * request.len(), "answer length after our EOF");
    assert!(
        got[..request.len()] == request[..] && got[request.len()..] == request[..],
        "answer content after our EOF"
    );
    let ends = server.wait_session_ends(1);
    let f = &ends[0];
    assert_eq!(f.get("reply").map(|s| s.as_str()), Some("succeeded"));
    let (up, down) = (num(f, "up"), num(f, "down"));
    assert!(
        (300_000..300_600).contains(&up) && (600_000..600_600).contains(&down),
        "byte counts: up={up} down={down}"
    );
}

#[test]
fn half_close_target_to_client() {
    half_close_target_to_client_in("copy");
}

#[test]
fn half_close_target_to_client_splice() {
    half_close_target_to_client_in("splice");
}

/// The default engine (`auto`: splice while few relays are live).
#[test]
fn half_close_target_to_client_auto() {
    half_close_target_to_client_in("auto");
}

fn half_close_target_to_client_in(mode: &str) {
    // The target talks first, closes its write side, then still listens.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    let greeting: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let g2 = greeting.clone();
    let target = spawn_target(move |mut s| {
        if s.write_all(&g2).is_err() || s.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = tx.lock().unwrap().send(got);
    });
    let server = Server::start(&["--relay-mode", mode]);
    let mut s = socks5_tunnel(server.addr, target.addr);
    let (got, end) = read_to_close(&mut s);
    assert_eq!(end, End::Eof, "the target's EOF reaches the client");
    assert!(
        got == greeting,
        "data before the target's EOF ({} bytes)",
        got.len()
    );
    // Our side is still open: the target must receive this.
    let late: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    s.write_all(&late).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let received = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("the target never saw EOF");
    assert!(
        received == late,
        "data sent after the target's EOF: {} of {} bytes arrived",
        received.len(),
        late.len()
    );
    let ends = server.wait_session_ends(1);
    assert_eq!(ends[0].get("reply").map(|s| s.as_str()), Some("succeeded"));
}

#[test]
fn bulk_256_mib_each_way() {
    bulk_256_mib_each_way_in("copy");
}

#[test]
fn bulk_256_mib_each_way_splice() {
    bulk_256_mib_each_way_in("splice");
}

/// The default engine (`auto`: splice while few relays are live).
#[test]
fn bulk_256_mib_each_way_auto() {
    bulk_256_mib_each_way_in("auto");
}

fn bulk_256_mib_each_way_in(mode: &str) {
    const TOTAL: u64 = 256 << 20;
    let down_pattern = std::sync::Arc::new(Pattern::new(0xD0_D0));
    let up_pattern = std::sync::Arc::new(Pattern::new(0x0B_0B));
    let (tx, rx) = mpsc::channel::<u64>();
    let tx = Mutex::new(tx);
    let (dp, up) = (down_pattern.clone(), up_pattern.clone());
    let target = spawn_target(move |s| {
        let mut w = s.try_clone().unwrap();
        let dp = dp.clone();
        let writer = thread::spawn(move || {
            dp.write_to(&mut w, TOTAL).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut r = s;
        let n = up.verify_from(&mut r, "client to target");
        writer.join().unwrap();
        let _ = tx.lock().unwrap().send(n);
    });
    let server = Server::start(&["--relay-mode", mode]);
    let s = socks5_tunnel(server.addr, target.addr);
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let up2 = up_pattern.clone();
    let writer = thread::spawn(move || {
        up2.write_to(&mut w, TOTAL).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut r = s;
    let down = down_pattern.verify_from(&mut r, "target to client");
    writer.join().unwrap();
    let up = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the target did not finish");
    assert_eq!(down, TOTAL, "bytes received by the client");
    assert_eq!(up, TOTAL, "bytes received by the target");
    let ends = server.wait_session_ends(1);
    let (up_log, down_log) = (num(&ends[0], "up"), num(&ends[0], "down"));
    assert!(
        (TOTAL..TOTAL + 600).contains(&up_log) && (TOTAL..TOTAL + 600).contains(&down_log),
        "logged byte counts: up={up_log} down={down_log}"
    );
}

#[test]
fn idle_timeout_closes_silent_sessions() {
    idle_timeout_closes_silent_sessions_in("copy");
}

#[test]
fn idle_timeout_closes_silent_sessions_splice() {
    idle_timeout_closes_silent_sessions_in("splice");
}

fn idle_timeout_closes_silent_sessions_in(mode: &str) {
    let echo = echo_server();
    let server = Server::start(&["--idle-timeout", "1", "--relay-mode", mode]);
    // A session with traffic every 200 ms stays up well past the timeout.
    let mut busy = socks5_tunnel(server.addr, echo.addr);
    for i in 0..10u8 {
        echo_roundtrip(&mut busy, &[i; 16]);
        thread::sleep(Duration::from_millis(200));
    }
    // A silent one is closed.
    let mut quiet = socks5_tunnel(server.addr, echo.addr);
    let (got, end) = read_to_close(&mut quiet);
    assert!(
        got.is_empty() && end != End::Timeout,
        "a silent session outlived --idle-timeout 1 by {IO_TIMEOUT:?}: {end:?}"
    );
}

/// Poll (bounded) until connecting to `addr` is refused.
fn wait_refused(addr: std::net::SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return true,
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

#[test]
fn sigterm_drains_live_sessions_then_exits_zero() {
    let echo = echo_server();
    let server = Server::start(&["--shutdown-grace", "10"]);
    let mut live = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut live, b"before SIGTERM");
    server.signal("TERM");
    assert!(
        wait_refused(server.addr),
        "new connections are still accepted after SIGTERM"
    );
    // The live session keeps working during the grace period.
    assert!(
        server.is_running(),
        "exited with a live session in its grace period"
    );
    echo_roundtrip(&mut live, b"during the grace period");
    echo_roundtrip(&mut live, &[0x42; 100_000]);
    drop(live);
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server did not exit after its last session ended");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn sigterm_grace_expires_then_exits_zero() {
    let echo = echo_server();
    let server = Server::start(&["--shutdown-grace", "1"]);
    let mut live = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut live, b"hello");
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server did not exit after --shutdown-grace 1");
    assert!(status.success(), "exit status: {status:?}");
    let (_, end) = read_to_close(&mut live);
    assert_ne!(end, End::Timeout, "the session outlived the process");
}

#[test]
fn sigint_exits_zero() {
    let echo = echo_server();
    let server = Server::start(&[]);
    server.assert_serves(echo.addr, None);
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server did not exit on SIGINT");
    assert!(status.success(), "exit status after SIGINT: {status:?}");
}

/// A supervisor may signal the server as soon as it announced its
/// listeners: the signal must already be handled then.
#[test]
fn signal_right_after_listening_is_graceful() {
    for sig in ["INT", "TERM"] {
        for _ in 0..10 {
            let server = Server::start(&[]);
            server.signal(sig);
            let status = server
                .wait_exit(Duration::from_secs(20))
                .expect("the server did not exit");
            assert!(
                status.success(),
                "exit status after an early SIG{sig}: {status:?}"
            );
        }
    }
}

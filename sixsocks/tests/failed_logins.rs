//! Failed logins through the real binary: a flood must not grow the
//! server's memory (issue 11, item 3: every argon2 check used to leave its
//! 19 MiB block in a per-thread malloc arena, 690 MB after 500 failures),
//! and an address over its failure budget is refused without a check,
//! counted and logged.
//!
//! Clients bind distinct loopback source addresses (127.0.x.y reach the
//! server's 127.0.0.1 like any other loopback address), so that each
//! address's share of the flood stays within the budget, or exhausts it,
//! as the test needs.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};

const USER: &str = "flood-user";
const PASSWORD: &str = "flood-password";

/// Failed logins in the flood, from this many threads and source addresses.
const FLOOD: usize = 200;
const THREADS: usize = 8;
/// 20 addresses × 10 failures: within the default budget (10 in a row), so
/// every one of them runs argon2, on the old code and the new alike.
const SOURCES: usize = 20;

/// RSS bound after the flood: 2 × 19 MiB of argon2 memory (one block per
/// verifier thread on this 2-core machine, at most 8 threads) plus the
/// server's few MB. The old code was at several hundred MB.
const MAX_RSS_KB: u64 = 100 * 1024;

/// A test connection to `server` from the loopback address `source`.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    s.connect_timeout(&server.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {server} from {source}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A SOCKS5 username/password login from `source` that must fail:
/// RFC 1929 status 01, then the server closes.
fn failed_login(server: SocketAddr, source: Ipv4Addr, user: &str, password: &str, what: &str) {
    let mut s = connect_from(source, server);
    s.write_all(&[0x05, 0x01, 0x02]).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x05, 0x02], "{what}: method choice");
    s.write_all(&userpass_msg(user.as_bytes(), password.as_bytes()))
        .unwrap();
    assert_closed_after(&mut s, &[0x01, 0x01], what);
}

/// A SOCKS5 login from `source` that must succeed.
fn good_login(server: SocketAddr, source: Ipv4Addr) {
    let mut s = connect_from(source, server);
    socks5_handshake(&mut s, Some((USER, PASSWORD)));
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

fn users_file(dir: &TempDir) -> String {
    let users = dir.join("users");
    passwd(&users, USER, PASSWORD);
    users.to_str().unwrap().to_string()
}

#[test]
fn a_flood_of_failed_logins_keeps_memory_bounded() {
    let dir = TempDir::new("flood");
    let users = users_file(&dir);
    let server = Server::start(&[USERS_FLAG, &users]);
    let addr = server.addr;
    let before = status_kb(server.pid(), "VmRSS:");

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in (t..FLOOD).step_by(THREADS) {
                    let source = Ipv4Addr::new(127, 0, 1, 10 + (i % SOURCES) as u8);
                    // Half wrong passwords, half unknown users.
                    let user = if i % 2 == 0 { USER } else { "nobody" };
                    failed_login(addr, source, user, "wrong", &format!("failed login {i}"));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }

    let after = status_kb(server.pid(), "VmRSS:");
    let peak = status_kb(server.pid(), "VmHWM:");
    eprintln!(
        "server RSS: {before} kB before, {after} kB after {FLOOD} failed logins (peak {peak} kB)"
    );
    assert!(
        after < MAX_RSS_KB,
        "after {FLOOD} failed logins the server's RSS is {after} kB (before: {before} kB, \
         peak {peak} kB), over {MAX_RSS_KB} kB: argon2 memory is not being reused"
    );
    // Still serving, and the right password still works (from an address
    // that did not fail).
    good_login(addr, Ipv4Addr::new(127, 0, 1, 200));
    assert!(server.is_running());
}

// ------------------------------------------------------------- the throttle

/// A free loopback port (the exporter needs a fixed one).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `series -> value` of the metrics page, once it answers.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).unwrap();
            if let Some((head, body)) = resp.split_once("\r\n\r\n") {
                if head.starts_with("HTTP/1.1 200") {
                    return body
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| {
                            let (series, v) = l.rsplit_once(' ')?;
                            Some((series.to_string(), v.parse().ok()?))
                        })
                        .collect();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the metrics endpoint never answered"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// SOCKS 6 0-RTT CONNECT with username/password in the request.
fn socks6_login(user: &str, pass: &str, target: SocketAddr) -> Vec<u8> {
    let opt = |kind: u8, data: &[u8]| {
        let mut out = vec![kind, (2 + data.len()) as u8];
        out.extend_from_slice(data);
        out
    };
    let mut auth = vec![0x02];
    auth.extend_from_slice(&userpass_msg(user.as_bytes(), pass.as_bytes()));
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 target expected")
    };
    let mut out = vec![0x06, 0x00, 0x01];
    out.extend_from_slice(&t.port().to_be_bytes());
    out.push(0x01);
    out.extend_from_slice(&t.ip().octets());
    out.push(2);
    out.extend_from_slice(&opt(0x03, &auth));
    out.extend_from_slice(&opt(0x02, &[0x00, 0x00, 0x02]));
    out
}

#[test]
fn an_address_over_its_budget_is_refused_unchecked_counted_and_logged() {
    let dir = TempDir::new("throttle");
    let users = users_file(&dir);
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics_arg = metrics.to_string();
    let server = Server::start(&[
        USERS_FLAG,
        &users,
        "--auth-failure-burst",
        "3",
        "--auth-failures-per-minute",
        "1",
        "--metrics",
        &metrics_arg,
    ]);
    let addr = server.addr;
    let echo = echo_server();
    let bad = Ipv4Addr::new(127, 0, 2, 1);
    let good = Ipv4Addr::new(127, 0, 2, 2);

    for i in 0..3 {
        failed_login(addr, bad, USER, "wrong", &format!("checked failure {i}"));
    }
    // Over budget: refused with the protocol's failure whatever is sent,
    // the right password included (it is not checked).
    failed_login(addr, bad, USER, PASSWORD, "throttled, right password");
    failed_login(addr, bad, USER, "wrong", "throttled, wrong password");
    failed_login(addr, bad, "nobody", "wrong", "throttled, unknown user");
    // SOCKS 6: its authentication failure (status 01, "general failure"
    // operation reply) and a close; nothing is connected.
    let mut s = connect_from(bad, addr);
    s.write_all(&socks6_login(USER, PASSWORD, echo.addr))
        .unwrap();
    assert_closed_after(
        &mut s,
        &[0x06, 0x00, 0x01, 0xFF, 0x00],
        "SOCKS 6, throttled",
    );
    assert_eq!(echo.accepted(), 0);

    // Another address is not affected.
    good_login(addr, good);

    let m = scrape(metrics);
    let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    assert_eq!(get("sixsocks_auth_failures_total"), 3.0, "{m:?}");
    assert_eq!(
        get("sixsocks_auth_throttled_total{reason=\"address\"}"),
        4.0,
        "{m:?}"
    );
    assert_eq!(
        get("sixsocks_auth_throttled_total{reason=\"busy\"}"),
        0.0,
        "{m:?}"
    );

    // A warning names the address, rate-limited: not one line per refusal.
    let lines: Vec<String> = server
        .logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("too many failed logins"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() < 4,
        "expected 1 to 3 throttle warnings, got {lines:?}; logs:\n{}",
        server.log_text()
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("127.0.2.1") && l.contains("WARN")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("127.0.2.2")),
        "the good address was throttled: {lines:?}"
    );
}

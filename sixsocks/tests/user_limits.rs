//! Per-user limits through the binary: `max_sessions` (SOCKS5 and SOCKS 6,
//! one user's limit leaves the others alone, a closed session frees its
//! slot) and `bandwidth` (every byte arrives, both ways, with both relay
//! engines; the duration is printed, not asserted).

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Instant;

use common::*;

// ------------------------------------------------------------------ raw SOCKS 6

/// `PORT(2) | ATYP | ADDR` for an IPv4 socket address.
fn v6_addr(a: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 expected")
    };
    let mut out = a.port().to_be_bytes().to_vec();
    out.push(0x01);
    out.extend_from_slice(&a.ip().octets());
    out
}

/// An option: `KIND | LEN | DATA`, LEN counting all three.
fn opt(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, (2 + data.len()) as u8];
    out.extend_from_slice(data);
    out
}

/// A SOCKS 6 CONNECT to `target` with username/password and no initial data.
fn socks6_connect_request(target: SocketAddr, user: &str, pass: &str) -> Vec<u8> {
    let mut auth = vec![0x02];
    auth.extend_from_slice(&userpass_msg(user.as_bytes(), pass.as_bytes()));
    let options = [opt(0x03, &auth), opt(0x02, &[0x00, 0x00, 0x02])].concat();
    let mut out = vec![0x06, 0x00, 0x01];
    out.extend_from_slice(&v6_addr(target));
    out.push(2);
    out.extend_from_slice(&options);
    out
}

fn skip_options(s: &mut TcpStream, nopts: u8) {
    for _ in 0..nopts {
        let h = read_n(s, 2);
        assert!(h[1] >= 2, "option length {} below 2", h[1]);
        read_n(s, h[1] as usize - 2);
    }
}

/// SOCKS 6 CONNECT as `user`: the authentication must succeed; returns the
/// stream and the operation reply's code.
fn socks6_connect(
    proxy: SocketAddr,
    target: SocketAddr,
    user: &str,
    pass: &str,
) -> (TcpStream, u8) {
    let mut s = connect(proxy);
    s.write_all(&socks6_connect_request(target, user, pass))
        .unwrap();
    let h = read_n(&mut s, 5);
    assert_eq!(
        h[..4],
        [0x06, 0x00, 0x00, 0x02],
        "SOCKS 6 authentication reply"
    );
    skip_options(&mut s, h[4]);
    let h = read_n(&mut s, 4);
    match h[3] {
        0x01 => drop(read_n(&mut s, 4)),
        0x04 => drop(read_n(&mut s, 16)),
        t => panic!("operation reply with ATYP {t:02x}"),
    }
    let nopts = read_n(&mut s, 1)[0];
    skip_options(&mut s, nopts);
    (s, h[0])
}

// ------------------------------------------------------------------ setup

/// A server with a users file (alice, bob, carol) and `extra` appended to
/// its config file (after `listen` and `users_file`); and the directory
/// holding both.
fn server_with(tag: &str, extra: &str) -> (Server, TempDir) {
    let dir = TempDir::new(tag);
    let users = dir.join("users");
    for name in ["alice", "bob", "carol"] {
        passwd(&users, name, &format!("{name}-pw"));
    }
    let conf = dir.join("sixsocks.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\"]\nusers_file = {:?}\n{extra}",
            users.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", conf.to_str().unwrap()]);
    (server, dir)
}

fn creds(name: &str) -> (String, String) {
    (name.to_string(), format!("{name}-pw"))
}

fn socks5_as(server: &Server, target: SocketAddr, name: &str) -> (TcpStream, V5Reply) {
    let (u, p) = creds(name);
    socks5_connect(server.addr, &v5_addr(target), Some((&u, &p)))
}

// ------------------------------------------------------------------ tests

#[test]
fn max_sessions_refuses_one_more_and_frees_a_slot_when_a_session_ends() {
    let echo = echo_server();
    let (server, _dir) = server_with(
        "max-sessions",
        "[users.alice]\nmax_sessions = 2\n[users.\"*\"]\nmax_sessions = 3\n",
    );
    let (pw_alice, proxy) = (creds("alice").1, server.addr);

    // alice: two sessions, one SOCKS5 and one SOCKS 6.
    let (mut a1, r) = socks5_as(&server, echo.addr, "alice");
    assert_eq!(r.rep, 0x00, "alice's 1st session: {r:?}");
    echo_roundtrip(&mut a1, b"alice one");
    let (mut a2, rep) = socks6_connect(proxy, echo.addr, "alice", &pw_alice);
    assert_eq!(rep, 0x00, "alice's 2nd session (SOCKS 6)");
    echo_roundtrip(&mut a2, b"alice two");

    // A 3rd is refused with 01, in either version, and closed.
    let (mut a3, r) = socks5_as(&server, echo.addr, "alice");
    assert_eq!(r.rep, 0x01, "alice's 3rd session (SOCKS5): {r:?}");
    assert_closed_after(&mut a3, b"", "after the refusal");
    drop(a3);
    let (mut a4, rep) = socks6_connect(proxy, echo.addr, "alice", &pw_alice);
    assert_eq!(rep, 0x01, "alice's 3rd session (SOCKS 6)");
    assert_closed_after(&mut a4, b"", "after the SOCKS 6 refusal");
    drop(a4);
    server.wait_session_ends(2);
    let refusals = server
        .logs
        .lines()
        .iter()
        .filter(|l| {
            l.contains("session end")
                && l.contains("user=alice")
                && l.contains("reply=general-failure")
                && l.contains("(max_sessions)")
        })
        .count();
    assert_eq!(refusals, 2, "logs:\n{}", server.log_text());
    assert!(
        server
            .log_text()
            .lines()
            .any(|l| l.contains("max_sessions") && l.contains("alice") && l.contains("WARN")),
        "the refusal is logged as a warning with the user's name:\n{}",
        server.log_text()
    );

    // bob is not affected by alice's limit ("*": 3 sessions).
    let mut bobs = Vec::new();
    for i in 0..3 {
        let (mut b, r) = socks5_as(&server, echo.addr, "bob");
        assert_eq!(r.rep, 0x00, "bob's session {i}: {r:?}");
        echo_roundtrip(&mut b, b"bob");
        bobs.push(b);
    }
    let (mut b4, r) = socks5_as(&server, echo.addr, "bob");
    assert_eq!(r.rep, 0x01, "bob's 4th session: {r:?}");
    assert_closed_after(&mut b4, b"", "after bob's refusal");
    drop(b4);
    server.wait_session_ends(3);
    // Sessions without a username are not limited (unauthenticated SOCKS5
    // is refused here by the users file, so no check of that through the
    // binary; see limits::tests).

    // alice's live sessions still work.
    echo_roundtrip(&mut a1, b"still one");
    echo_roundtrip(&mut a2, b"still two");

    // One of alice's sessions ends: a new one is admitted, then refused again.
    a2.shutdown(Shutdown::Write).unwrap();
    assert_closed_after(&mut a2, b"", "the echo tunnel after a half-close");
    drop(a2);
    server.wait_session_ends(4);
    let (mut a5, rep) = socks6_connect(proxy, echo.addr, "alice", &pw_alice);
    assert_eq!(rep, 0x00, "alice's session after one ended (SOCKS 6)");
    echo_roundtrip(&mut a5, b"alice again");
    let (_, r) = socks5_as(&server, echo.addr, "alice");
    assert_eq!(r.rep, 0x01, "alice is at her maximum again: {r:?}");
    drop(bobs);
}

/// Send `len` bytes through a CONNECT to the echo server as `user` while
/// reading the echo, checking every byte; returns the time it took.
fn echo_transfer(server: &Server, echo: SocketAddr, user: &str, len: u64) -> std::time::Duration {
    let (s, r) = socks5_as(server, echo, user);
    assert_eq!(r.rep, 0x00, "{user}: {r:?}");
    let pattern = std::sync::Arc::new(Pattern::new(0x5eed ^ len));
    let mut w = s.try_clone().unwrap();
    let p2 = pattern.clone();
    let start = Instant::now();
    let writer = thread::spawn(move || {
        p2.write_to(&mut w, len).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut r = s;
    let got = pattern.verify_from(&mut r, "the echo through a limited tunnel");
    let took = start.elapsed();
    writer.join().unwrap();
    assert_eq!(got, len, "every byte came back");
    took
}

#[test]
fn bandwidth_limited_transfers_arrive_intact_both_ways() {
    const LEN: u64 = 2_000_000;
    let echo = echo_server();
    for mode in ["copy", "splice"] {
        let (server, _dir) = server_with(
            &format!("bandwidth-{mode}"),
            &format!("relay_mode = \"{mode}\"\n[users.carol]\nbandwidth = 1_000_000\n"),
        );
        let limited = echo_transfer(&server, echo.addr, "carol", LEN);
        let free = echo_transfer(&server, echo.addr, "bob", LEN);
        eprintln!(
            "{mode}: {LEN} bytes each way: carol (1 MB/s) {limited:?}, bob (no limit) {free:?}"
        );
        let ends = server.wait_session_ends(2);
        for e in &ends {
            let up: u64 = e["up"].parse().unwrap();
            let down: u64 = e["down"].parse().unwrap();
            assert_eq!((up, down), (LEN, LEN), "{e:?}");
        }
    }
}

//! Hostile and broken clients. After each kind of bad input the proxy must
//! still serve a new client, and its open fd count must come back to the
//! baseline measured before (polled, bounded).

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

/// Send `bytes`, half-close, and expect `reply` then a close from the proxy.
fn truncated(server: &Server, bytes: &[u8], reply: &[u8], what: &str) {
    let mut s = connect(server.addr);
    s.write_all(bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_closed_after(&mut s, reply, what);
}

#[test]
fn truncated_messages_then_close() {
    let echo = echo_server();
    let server = Server::start(&["--handshake-timeout", "30"]);
    let baseline = server.fd_baseline(echo.addr, None);
    let port = echo.port();
    let ok = [0x05, 0x00];

    // Every strict prefix of a SOCKS5 greeting: no answer, then close.
    let greeting = [0x05, 0x02, 0x00, 0x02];
    for n in 1..greeting.len() {
        truncated(
            &server,
            &greeting[..n],
            &[],
            &format!("greeting prefix {n}"),
        );
    }
    // Full greeting, then every strict prefix of a request (IPv4 and domain).
    let mut requests = vec![
        v5_request(0x01, &v5_addr(echo.addr)),
        v5_request(0x01, &v5_domain(b"localhost", port)),
        v5_request(
            0x01,
            &v5_addr(std::net::SocketAddr::new(
                std::net::Ipv6Addr::LOCALHOST.into(),
                port,
            )),
        ),
    ];
    for req in requests.drain(..) {
        for n in 1..req.len() {
            let mut msg = vec![0x05, 0x01, 0x00];
            msg.extend_from_slice(&req[..n]);
            truncated(
                &server,
                &msg,
                &ok,
                &format!("request prefix {n} of {req:02x?}"),
            );
        }
    }
    // RFC 1929 prefixes (the method choice 05 02 comes first).
    let auth = userpass_msg(b"alice", b"password");
    for n in 1..auth.len() {
        let mut msg = vec![0x05, 0x01, 0x02];
        msg.extend_from_slice(&auth[..n]);
        truncated(&server, &msg, &[0x05, 0x02], &format!("auth prefix {n}"));
    }
    // SOCKS4 and SOCKS4a prefixes.
    let v4 = v4_request(0x01, Ipv4Addr::LOCALHOST, port, b"someone", None);
    for n in 1..v4.len() {
        truncated(&server, &v4[..n], &[], &format!("SOCKS4 prefix {n}"));
    }
    let v4a = v4a_request(0x01, b"localhost", port, b"someone");
    for n in 9..v4a.len() {
        truncated(&server, &v4a[..n], &[], &format!("SOCKS4a prefix {n}"));
    }
    // An HTTP request head that never ends.
    truncated(
        &server,
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        &[],
        "HTTP head prefix",
    );

    assert_eq!(
        echo.accepted(),
        1,
        "no truncated request reached the target"
    );
    server.assert_healthy(echo.addr, baseline, "truncated messages");
}

#[test]
fn no_methods_gets_ff() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let mut s = connect(server.addr);
    s.write_all(&[0x05, 0x00]).unwrap();
    assert_closed_after(&mut s, &[0x05, 0xFF], "NMETHODS 0");
    // Offering only GSSAPI and unknown methods: FF too (never 01).
    let mut s = connect(server.addr);
    s.write_all(&[0x05, 0x03, 0x01, 0x03, 0x80]).unwrap();
    assert_closed_after(&mut s, &[0x05, 0xFF], "no acceptable method");
    server.assert_healthy(echo.addr, baseline, "NMETHODS 0");
}

#[test]
fn unknown_version_byte_closes_silently() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    for first in [0x00u8, 0x01, 0x03, 0x07, 0x7F, 0xFF, b'g'] {
        let mut s = connect(server.addr);
        s.write_all(&[first, 0x01, 0x00]).unwrap();
        assert_closed_after(&mut s, &[], &format!("version byte {first:02x}"));
    }
    server.assert_healthy(echo.addr, baseline, "unknown version bytes");
}

#[test]
fn socks4_fields_without_nul_are_capped() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);

    // USERID: 256 bytes, no NUL (one past the 255 cap).
    let mut msg = vec![0x04, 0x01];
    msg.extend_from_slice(&echo.port().to_be_bytes());
    msg.extend_from_slice(&[127, 0, 0, 1]);
    msg.extend(std::iter::repeat_n(b'u', 256));
    let mut s = connect(server.addr);
    s.write_all(&msg).unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "USERID past the cap: {r:02x?}");
    assert_closed_after(&mut s, &[], "after 5B for a long USERID");

    // SOCKS4a hostname: 256 bytes, no NUL.
    let mut msg = vec![0x04, 0x01];
    msg.extend_from_slice(&echo.port().to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 1]);
    msg.extend_from_slice(b"user\0");
    msg.extend(std::iter::repeat_n(b'h', 256));
    let mut s = connect(server.addr);
    s.write_all(&msg).unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "hostname past the cap: {r:02x?}");
    assert_closed_after(&mut s, &[], "after 5B for a long hostname");

    // SOCKS4a with an empty hostname.
    let mut s = connect(server.addr);
    s.write_all(&v4a_request(0x01, b"", echo.port(), b""))
        .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "empty SOCKS4a hostname: {r:02x?}");

    assert_eq!(echo.accepted(), 1, "no capped request reached the target");
    server.assert_healthy(echo.addr, baseline, "SOCKS4 fields without NUL");
}

/// Write `data` from a thread (ignoring errors: the proxy may close first)
/// and read until the proxy closes.
fn flood(server: &Server, data: Vec<u8>) -> (Vec<u8>, End) {
    let mut s = connect(server.addr);
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    let out = read_to_close(&mut s);
    drop(s);
    writer.join().unwrap();
    out
}

#[test]
fn one_mib_of_garbage() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    const MIB: usize = 1 << 20;
    let mut x: u32 = 0x1234_5678;
    let mut random: Vec<u8> = (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    random[0] = 0x00; // not a SOCKS version, not HTTP

    // Random bytes: nothing but a close.
    let (got, end) = flood(&server, random.clone());
    assert!(
        got.is_empty() && end != End::Timeout,
        "random: {got:02x?} {end:?}"
    );

    // SOCKS5 greeting with 255 methods, none acceptable, then more garbage.
    let mut v5 = vec![0x05u8];
    v5.extend(std::iter::repeat_n(0xFFu8, MIB - 1));
    let (got, end) = flood(&server, v5);
    assert!(end != End::Timeout, "SOCKS5 garbage left open");
    assert!(
        got.is_empty() || got == [0x05, 0xFF],
        "SOCKS5 garbage answered {got:02x?}"
    );

    // SOCKS4 header then a USERID that never ends.
    let mut v4 = vec![0x04u8, 0x01, 0x00, 0x50, 127, 0, 0, 1];
    v4.extend(std::iter::repeat_n(0xFFu8, MIB - 8));
    let (got, end) = flood(&server, v4);
    assert!(end != End::Timeout, "SOCKS4 garbage left open");
    assert!(
        got.is_empty() || got[..2] == [0x00, 0x5B],
        "SOCKS4 garbage answered {got:02x?}"
    );

    // An "HTTP" head that never ends: 1 MiB of letters.
    let http: Vec<u8> = std::iter::repeat_n(b'G', MIB).collect();
    let (got, end) = flood(&server, http);
    assert!(end != End::Timeout, "HTTP garbage left open");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.0 501"),
        "HTTP garbage answered {:?}",
        String::from_utf8_lossy(&got)
    );

    // After a valid greeting and request to a closed port: garbage as "data".
    let mut after = vec![0x05, 0x01, 0x00];
    after.extend(v5_request(0x01, &v5_addr(closed_port())));
    after.extend_from_slice(&random);
    let (got, end) = flood(&server, after);
    assert!(end != End::Timeout, "left open after a refused CONNECT");
    assert!(
        got.len() <= 12 && (got.len() < 4 || got[3] == 0x05 || got[1] == 0x05),
        "unexpected answer {got:02x?}"
    );

    assert_eq!(echo.accepted(), 1, "no garbage reached the target");
    server.assert_healthy(echo.addr, baseline, "1 MiB of garbage");
}

#[test]
fn slow_trickle_is_cut_off() {
    let echo = echo_server();
    let server = Server::start(&["--handshake-timeout", "2"]);
    let baseline = server.fd_baseline(echo.addr, None);

    // A greeting of 257 bytes, sent one byte every 100 ms (25.7 s in all,
    // more than 12 times the handshake timeout).
    let mut greeting = vec![0x05u8, 0xFF];
    greeting.extend(std::iter::repeat_n(0x00u8, 255));
    let mut s = connect(server.addr);
    let mut r = s.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let c2 = closed.clone();
    let reader = thread::spawn(move || {
        let out = read_to_close(&mut r);
        c2.store(true, Ordering::SeqCst);
        out
    });
    let mut sent = 0;
    for b in &greeting {
        if closed.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(100));
    }
    let (got, end) = reader.join().unwrap();
    assert!(
        sent < greeting.len(),
        "the proxy let a client trickle its whole greeting ({sent} bytes) \
         despite --handshake-timeout 2; it answered {got:02x?} ({end:?})"
    );
    assert!(got.is_empty(), "answer to a trickled greeting: {got:02x?}");
    drop(s);

    // A client that connects and sends nothing is cut off too.
    let mut s = connect(server.addr);
    let (got, end) = read_to_close(&mut s);
    assert!(
        got.is_empty() && end != End::Timeout,
        "an idle client must be closed by the handshake timeout: {got:02x?} {end:?}"
    );
    // And one that stops after its greeting.
    let mut s = connect(server.addr);
    s.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_closed_after(&mut s, &[0x05, 0x00], "stalled after the greeting");

    server.assert_healthy(echo.addr, baseline, "a slow trickle");
}

#[test]
fn thousand_clients_vanish_mid_handshake() {
    let echo = echo_server();
    // 100 partial handshakes at once from one address: past the default
    // per-address cap (64), which this test is not about (it is tested in
    // address_limits.rs); without the raise, the health check right after
    // could meet places the server has not yet seen closed.
    let server = Server::start(&[
        "--handshake-timeout",
        "30",
        "--max-handshakes-per-address",
        "1000",
    ]);
    let baseline = server.fd_baseline(echo.addr, None);
    let partials: [&[u8]; 5] = [
        b"",
        &[0x05],
        &[0x05, 0x01, 0x00],
        &[0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127],
        &[0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, b'x'],
    ];
    // In batches of 100 open at once: each connects, sends part of a
    // handshake, and vanishes (every other one with a reset).
    for batch in 0..10 {
        let mut open = Vec::new();
        for i in 0..100 {
            let s = connect(server.addr);
            let _ = (&s).write_all(partials[i % partials.len()]);
            open.push((i, s));
        }
        for (i, s) in open {
            if (i + batch) % 2 == 0 {
                let sock = socket2::Socket::from(s);
                let _ = sock.set_linger(Some(Duration::ZERO));
                drop(sock); // RST
            } else {
                drop(s); // FIN
            }
        }
    }
    server.assert_healthy(echo.addr, baseline, "1000 vanishing clients");
}

#[test]
fn connect_pipelined_behind_failed_password_is_not_carried_out() {
    let echo = echo_server();
    let dir = TempDir::new("pipelined");
    let users = dir.join("users");
    passwd(&users, "alice", "correct horse");
    for lenient in [false, true] {
        let mut args = vec![USERS_FLAG, users.to_str().unwrap()];
        if lenient {
            args.push("--lenient-auth");
        }
        let server = Server::start(&args);
        let baseline = server.fd_baseline(echo.addr, Some(("alice", "correct horse")));

        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let taddr = target.local_addr().unwrap();
        // Greeting, wrong password and CONNECT in a single write.
        let mut msg = vec![0x05, 0x01, 0x02];
        msg.extend(userpass_msg(b"alice", b"wrong horse"));
        msg.extend(v5_request(0x01, &v5_addr(taddr)));
        msg.extend_from_slice(b"payload that must never arrive");
        let mut s = connect(server.addr);
        s.write_all(&msg).unwrap();
        assert_eq!(read_n(&mut s, 2), [0x05, 0x02], "method choice");
        let status = read_n(&mut s, 2);
        assert_eq!(status[0], 0x01, "RFC 1929 reply version: {status:02x?}");
        assert_ne!(status[1], 0x00, "a wrong password was accepted");
        let (rest, end) = read_to_close(&mut s);
        assert!(
            rest.is_empty() && end != End::Timeout,
            "after a failed password: {rest:02x?} then {end:?}"
        );
        // Unknown user too.
        let mut msg = vec![0x05, 0x01, 0x02];
        msg.extend(userpass_msg(b"mallory", b"correct horse"));
        msg.extend(v5_request(0x01, &v5_addr(taddr)));
        let mut s = connect(server.addr);
        s.write_all(&msg).unwrap();
        assert_eq!(read_n(&mut s, 2), [0x05, 0x02]);
        assert_ne!(read_n(&mut s, 2)[1], 0x00, "an unknown user was accepted");
        let _ = read_to_close(&mut s);

        // The proxy has finished with both sessions: no connection may have
        // reached the target, not even one already closed.
        server.wait_session_ends(3);
        server.assert_serves(echo.addr, Some(("alice", "correct horse")));
        target.set_nonblocking(true).unwrap();
        assert!(
            target.accept().is_err(),
            "a CONNECT pipelined behind a failed password reached the target (lenient={lenient})"
        );
        server.assert_fds_settle(baseline, "failed passwords");
    }
}

#[test]
fn users_file_makes_auth_mandatory() {
    let echo = echo_server();
    let dir = TempDir::new("mandatory");
    let users = dir.join("users");
    passwd(&users, "alice", "pw-alice");
    let server = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    let baseline = server.fd_baseline(echo.addr, Some(("alice", "pw-alice")));

    // Only method 00 offered: FF, then close.
    let mut s = connect(server.addr);
    s.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_closed_after(&mut s, &[0x05, 0xFF], "method 00 only with --users");
    // Method 00 with a request pipelined behind: not carried out.
    let mut s = connect(server.addr);
    let mut msg = vec![0x05, 0x01, 0x00];
    msg.extend(v5_request(0x01, &v5_addr(echo.addr)));
    s.write_all(&msg).unwrap();
    assert_closed_after(&mut s, &[0x05, 0xFF], "pipelined after method 00");
    // SOCKS4 and SOCKS4a cannot authenticate: 5B.
    for req in [
        v4_request(0x01, Ipv4Addr::LOCALHOST, echo.port(), b"alice", None),
        v4a_request(0x01, b"localhost", echo.port(), b"alice"),
    ] {
        let mut s = connect(server.addr);
        s.write_all(&req).unwrap();
        let r = read_v4_reply(&mut s);
        assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4 with --users: {r:02x?}");
        assert_closed_after(&mut s, &[], "after 5B");
    }
    // Both methods offered: 02 chosen, and the right password works.
    let mut s = connect(server.addr);
    s.write_all(&[0x05, 0x02, 0x00, 0x02]).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x05, 0x02]);
    s.write_all(&userpass_msg(b"alice", b"pw-alice")).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x01, 0x00]);
    s.write_all(&v5_request(0x01, &v5_addr(echo.addr))).unwrap();
    assert_eq!(read_v5_reply(&mut s).rep, 0x00);
    echo_roundtrip(&mut s, b"authenticated");
    drop(s);

    assert_eq!(
        echo.accepted(),
        2,
        "only the authenticated sessions reach the target"
    );
    server.assert_serves(echo.addr, Some(("alice", "pw-alice")));
    server.assert_fds_settle(baseline, "refused unauthenticated clients");
}

#[test]
fn passwords_never_logged() {
    let echo = echo_server();
    let dir = TempDir::new("nolog");
    let users = dir.join("users");
    let good = "Sup3r-s3cret-GOOD-pw";
    let bad = "Sup3r-s3cret-BAD-pw";
    passwd(&users, "carol", good);
    let file = std::fs::read_to_string(&users).unwrap();
    assert!(
        file.starts_with("carol:$argon2id$") && !file.contains(good),
        "users file: {file:?}"
    );
    // Replacing the password keeps one line for the user.
    passwd(&users, "carol", good);
    passwd(&users, "dave", "dave-pw-123");
    let file = std::fs::read_to_string(&users).unwrap();
    assert_eq!(
        file.lines().filter(|l| l.starts_with("carol:")).count(),
        1,
        "users file after replacing carol's password: {file:?}"
    );

    for extra in [&["-v"][..], &["-vv", "--lenient-auth"][..]] {
        let mut args = vec![USERS_FLAG, users.to_str().unwrap()];
        args.extend_from_slice(extra);
        let server = Server::start(&args);
        server.assert_serves(echo.addr, Some(("carol", good)));
        // A wrong password, and the right password with a wrong user.
        for (u, p) in [("carol", bad), ("eve", good)] {
            let mut s = connect(server.addr);
            s.write_all(&[0x05, 0x01, 0x02]).unwrap();
            assert_eq!(read_n(&mut s, 2), [0x05, 0x02]);
            s.write_all(&userpass_msg(u.as_bytes(), p.as_bytes()))
                .unwrap();
            assert_ne!(read_n(&mut s, 2)[1], 0x00, "{u}/{p} accepted");
            let _ = read_to_close(&mut s);
        }
        server.wait_session_ends(3);
        let logs = server.log_text();
        assert!(
            logs.contains("user=carol"),
            "the user name is logged (so the logs were captured): {logs}"
        );
        assert!(
            !logs.contains(bad),
            "the bad password is in the logs:\n{logs}"
        );
        assert!(
            !logs.contains(good),
            "the good password is in the logs:\n{logs}"
        );
    }
}

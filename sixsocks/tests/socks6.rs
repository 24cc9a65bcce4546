//! SOCKS 6 (draft -05) against the `sixsocks` binary: `sixsocks connect
//! --proxy socks6://…` end to end, hand-written requests (bytes written by
//! hand, independent of the protocol crate), and bad input. After each bad
//! input the server must still serve.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

// ------------------------------------------------------------------ raw SOCKS 6

/// `PORT(2) | ATYP | ADDR` for an IPv4 socket address (SOCKS 6 puts the
/// port first).
fn v6_addr(a: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 expected")
    };
    let mut out = a.port().to_be_bytes().to_vec();
    out.push(0x01);
    out.extend_from_slice(&a.ip().octets());
    out
}

/// `06 00 | CMD | PORT ATYP ADDR | NOPTS | OPTIONS` (options already framed).
fn request(cmd: u8, addr: &[u8], nopts: u8, options: &[u8]) -> Vec<u8> {
    let mut out = vec![0x06, 0x00, cmd];
    out.extend_from_slice(addr);
    out.push(nopts);
    out.extend_from_slice(options);
    out
}

/// An option: `KIND | LEN | DATA`, LEN counting all three.
fn opt(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, (2 + data.len()) as u8];
    out.extend_from_slice(data);
    out
}

/// Authentication method option: initial data length, methods.
fn auth_method(initial: u16, methods: &[u8]) -> Vec<u8> {
    let mut data = initial.to_be_bytes().to_vec();
    data.extend_from_slice(methods);
    opt(0x02, &data)
}

/// Authentication data option for username/password (an RFC 1929 request).
fn auth_data(user: &str, pass: &str) -> Vec<u8> {
    let mut data = vec![0x02];
    data.extend_from_slice(&userpass_msg(user.as_bytes(), pass.as_bytes()));
    opt(0x03, &data)
}

fn token_request(window: u32) -> Vec<u8> {
    let mut data = vec![0x00];
    data.extend_from_slice(&window.to_be_bytes());
    opt(0x04, &data)
}

const NOOP: u8 = 0x00;
const CONNECT: u8 = 0x01;

/// `NOOP` address: IPv4 zeros.
fn zeros() -> Vec<u8> {
    vec![0, 0, 0x01, 0, 0, 0, 0]
}

/// Read `nopts` options; returns them as `(kind, data)`.
fn read_options(s: &mut TcpStream, nopts: u8) -> Vec<(u8, Vec<u8>)> {
    (0..nopts)
        .map(|_| {
            let h = read_n(s, 2);
            assert!(h[1] >= 2, "option length {} below 2", h[1]);
            (h[0], read_n(s, h[1] as usize - 2))
        })
        .collect()
}

/// Read an authentication reply: `(type, method, options)`.
fn read_auth_reply(s: &mut TcpStream) -> (u8, u8, Vec<(u8, Vec<u8>)>) {
    let h = read_n(s, 5);
    assert_eq!(&h[..2], &[0x06, 0x00], "authentication reply version");
    (h[2], h[3], read_options(s, h[4]))
}

/// Read an operation reply: `(REP, options)`.
fn read_operation_reply(s: &mut TcpStream) -> (u8, Vec<(u8, Vec<u8>)>) {
    let h = read_n(s, 4);
    match h[3] {
        0x01 => drop(read_n(s, 4)),
        0x04 => drop(read_n(s, 16)),
        0x03 => {
            let n = read_n(s, 1)[0] as usize;
            drop(read_n(s, n));
        }
        t => panic!("operation reply with ATYP {t:02x}"),
    }
    let nopts = read_n(s, 1)[0];
    (h[0], read_options(s, nopts))
}

/// A SOCKS 6 NOOP by hand, expecting success (with credentials if given).
fn assert_socks6_serves(server: &Server, creds: Option<(&str, &str)>) {
    let mut s = connect(server.addr);
    let opts = creds.map_or(Vec::new(), |(u, p)| {
        [auth_data(u, p), auth_method(0, &[0x02])].concat()
    });
    let n = if creds.is_some() { 2 } else { 0 };
    s.write_all(&request(NOOP, &zeros(), n, &opts)).unwrap();
    let (ty, method, _) = read_auth_reply(&mut s);
    assert_eq!((ty, method), (0x00, if creds.is_some() { 2 } else { 0 }));
    let (rep, _) = read_operation_reply(&mut s);
    assert_eq!(rep, 0x00, "NOOP succeeds");
}

/// The server is alive and serves SOCKS5 and SOCKS 6.
fn assert_still_serves(server: &Server, echo: SocketAddr, after: &str) {
    assert!(
        server.is_running(),
        "the server died after {after}; logs:\n{}",
        server.log_text()
    );
    server.assert_serves(echo, None);
    assert_socks6_serves(server, None);
}

// ------------------------------------------------------------------ the CLI

/// `sixsocks connect --proxy URL TARGET` with `input` on stdin.
fn cli_connect(dir: &TempDir, proxy: &str, target: &str, input: &[u8]) -> RunOutput {
    let file = dir.join("stdin");
    std::fs::write(&file, input).unwrap();
    run_tool_stdin(
        Command::new(BIN).args(["connect", "--proxy", proxy, target]),
        std::fs::File::open(&file).unwrap().into(),
        Duration::from_secs(60),
    )
}

#[test]
fn cli_connect_over_socks6() {
    let echo = echo_server();
    let dir = TempDir::new("socks6-cli");
    let users = dir.join("users");
    passwd(&users, "gina", "gina-pw");
    let Some(open) = Server::start_with_hosts(&[]) else {
        return;
    };
    let auth = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 199) as u8).collect();
    let by_ip = echo.addr.to_string();
    let proxy_only = format!("{PROXY_ONLY_NAME}:{}", echo.port());
    for (proxy, target, input, what) in [
        (
            format!("socks6://{}", open.addr),
            &by_ip,
            &big[..],
            "open, 200 kB",
        ),
        (
            format!("socks6://{}", open.addr),
            &proxy_only,
            &b"hello"[..],
            "a name only the proxy knows, 5 bytes",
        ),
        (
            format!("socks6://{}", open.addr),
            &by_ip,
            &b""[..],
            "no input",
        ),
        (
            format!("socks6://gina:gina-pw@{}", auth.addr),
            &by_ip,
            &big[..],
            "with a password, 200 kB",
        ),
        (
            format!("socks6://gina:gina-pw@{}", auth.addr),
            &by_ip,
            &b"x"[..],
            "with a password, 1 byte",
        ),
    ] {
        let out = cli_connect(&dir, &proxy, target, input);
        assert!(out.status.success(), "{what}: {out:?}");
        assert!(
            out.stdout == input,
            "{what}: {} of {} bytes echoed; stderr {}",
            out.stdout.len(),
            input.len(),
            out.stderr
        );
    }
    // The proxy log says SOCKS 6, and the first bytes came as initial data.
    let ends = auth.wait_session_ends(2);
    assert!(
        ends.iter()
            .all(|e| e.get("version").map(String::as_str) == Some("socks6")),
        "{ends:?}"
    );
    let logs = auth.log_text();
    assert!(
        logs.contains("initial data 8192 bytes") && logs.contains("initial data 1 bytes"),
        "stdin went with the request as initial data:\n{logs}"
    );

    let out = cli_connect(
        &dir,
        &format!("socks6://gina:wrong@{}", auth.addr),
        &by_ip,
        b"never",
    );
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "wrong password: {out:?}"
    );
    assert!(
        out.stderr.contains("user name or password"),
        "the error says why: {}",
        out.stderr
    );
    let out = cli_connect(&dir, &format!("socks6://{}", auth.addr), &by_ip, b"never");
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "no password: {out:?}"
    );
    // Refused by the target: the SOCKS 6 code is reported.
    let closed = closed_port();
    let out = cli_connect(
        &dir,
        &format!("socks6://{}", open.addr),
        &closed.to_string(),
        b"",
    );
    assert!(
        !out.status.success() && out.stderr.contains("(05)"),
        "refused: {out:?}"
    );
}

// ------------------------------------------------------------------ by hand

#[test]
fn hand_written_requests() {
    let echo = echo_server();
    let dir = TempDir::new("socks6-raw");
    let users = dir.join("users");
    passwd(&users, "hal", "hal-pw");
    let server = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);

    // 0-RTT: credentials, initial data and the request in one write; the
    // authentication reply, the operation reply and the echo come back.
    let mut s = connect(server.addr);
    let opts = [auth_data("hal", "hal-pw"), auth_method(5, &[0x02])].concat();
    let mut flight = request(CONNECT, &v6_addr(echo.addr), 2, &opts);
    flight.extend_from_slice(b"HELLO");
    s.write_all(&flight).unwrap();
    let (ty, method, _) = read_auth_reply(&mut s);
    assert_eq!((ty, method), (0x00, 0x02));
    let (rep, _) = read_operation_reply(&mut s);
    assert_eq!(rep, 0x00);
    assert_eq!(read_n(&mut s, 5), b"HELLO");
    echo_roundtrip(&mut s, b"more");
    drop(s);

    // Slow path: method 02 offered without credentials.
    let mut s = connect(server.addr);
    s.write_all(&request(
        CONNECT,
        &v6_addr(echo.addr),
        1,
        &auth_method(0, &[0x02]),
    ))
    .unwrap();
    let (ty, method, _) = read_auth_reply(&mut s);
    assert_eq!((ty, method), (0x01, 0x02), "further authentication needed");
    s.write_all(&userpass_msg(b"hal", b"hal-pw")).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x01, 0x00], "RFC 1929 success");
    let (ty, method, _) = read_auth_reply(&mut s);
    assert_eq!((ty, method), (0x00, 0x02), "second authentication reply");
    let (rep, _) = read_operation_reply(&mut s);
    assert_eq!(rep, 0x00);
    echo_roundtrip(&mut s, b"slow");
    drop(s);

    // Slow path, wrong password: RFC 1929 failure, failure reply, close.
    let mut s = connect(server.addr);
    s.write_all(&request(
        CONNECT,
        &v6_addr(echo.addr),
        1,
        &auth_method(0, &[0x02]),
    ))
    .unwrap();
    let _ = read_auth_reply(&mut s);
    s.write_all(&userpass_msg(b"hal", b"nope")).unwrap();
    assert_closed_after(
        &mut s,
        &[0x01, 0x01, 0x06, 0x00, 0x01, 0xFF, 0x00],
        "slow path, wrong password",
    );

    // 0-RTT, wrong password: the failure reply, close; nothing connected.
    let before = echo.accepted();
    let mut s = connect(server.addr);
    let opts = [auth_data("hal", "nope"), auth_method(3, &[0x02])].concat();
    let mut flight = request(CONNECT, &v6_addr(echo.addr), 2, &opts);
    flight.extend_from_slice(b"abc");
    s.write_all(&flight).unwrap();
    assert_closed_after(
        &mut s,
        &[0x06, 0x00, 0x01, 0xFF, 0x00],
        "0-RTT, wrong password",
    );
    assert_eq!(echo.accepted(), before);

    // No credentials at all, none offered: no acceptable method.
    let mut s = connect(server.addr);
    s.write_all(&request(NOOP, &zeros(), 0, &[])).unwrap();
    assert_closed_after(&mut s, &[0x06, 0x00, 0x01, 0xFF, 0x00], "no credentials");

    // Another minor version: on an `auto` listener `06 01` is a -11
    // CONNECT, and these bytes are not one: closed without a word. A
    // listener set to draft -05 answers -05's version mismatch.
    let mut bad = request(NOOP, &zeros(), 0, &[]);
    bad[1] = 0x01;
    let mut s = connect(server.addr);
    s.write_all(&bad).unwrap();
    assert_closed_after(&mut s, &[], "version 6.1 on auto");
    let only05 = Server::start(&["--socks6-profile", "draft-05"]);
    let mut s = connect(only05.addr);
    s.write_all(&bad).unwrap();
    assert_closed_after(&mut s, &[0x06, 0x00], "version 6.1 on draft-05");

    server.assert_serves(echo.addr, Some(("hal", "hal-pw")));
    assert_socks6_serves(&server, Some(("hal", "hal-pw")));
}

// ------------------------------------------------------------------ bad input

#[test]
fn bad_input() {
    let echo = echo_server();
    let server = Server::start(&["--handshake-timeout", "2"]);
    let target = v6_addr(echo.addr);

    // An option whose length runs past the end of what was sent: the proxy
    // waits for the rest; when the client then closes its side, it closes
    // without a word.
    let mut s = connect(server.addr);
    let mut msg = request(CONNECT, &target, 1, &[0xC0, 200]);
    msg.extend_from_slice(&[0u8; 10]);
    s.write_all(&msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_closed_after(&mut s, b"", "option length past the message");
    assert_still_serves(&server, echo.addr, "an option running past the message");

    // Options of length 0 and 1 (below their own header).
    for len in [0u8, 1] {
        let mut s = connect(server.addr);
        let mut msg = request(CONNECT, &target, 1, &[0xC0, len]);
        msg.extend_from_slice(&[0u8; 8]);
        s.write_all(&msg).unwrap();
        assert_closed_after(&mut s, b"", &format!("option length {len}"));
        assert_still_serves(&server, echo.addr, &format!("option length {len}"));
    }

    // Initial data longer than declared: the extra bytes are application
    // data (relayed after the reply), not lost.
    let mut s = connect(server.addr);
    let mut msg = request(CONNECT, &target, 1, &auth_method(5, &[]));
    msg.extend_from_slice(b"HELLOEXTRA");
    s.write_all(&msg).unwrap();
    let (ty, _, _) = read_auth_reply(&mut s);
    assert_eq!(ty, 0x00);
    let (rep, _) = read_operation_reply(&mut s);
    assert_eq!(rep, 0x00);
    assert_eq!(
        read_n(&mut s, 10),
        b"HELLOEXTRA",
        "declared and extra bytes"
    );
    drop(s);

    // Declared initial data over 8192 bytes: closed, nothing connected.
    let before = echo.accepted();
    let mut s = connect(server.addr);
    let mut msg = request(CONNECT, &target, 1, &auth_method(8193, &[]));
    msg.extend_from_slice(&[b'x'; 64]);
    s.write_all(&msg).unwrap();
    assert_closed_after(&mut s, b"", "initial data length 8193");
    assert_eq!(echo.accepted(), before);
    assert_still_serves(&server, echo.addr, "initial data length 8193");
    // Exactly 8192 is fine.
    let mut s = connect(server.addr);
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let mut msg = request(CONNECT, &target, 1, &auth_method(8192, &[]));
    msg.extend_from_slice(&data);
    s.write_all(&msg).unwrap();
    let _ = read_auth_reply(&mut s);
    assert_eq!(read_operation_reply(&mut s).0, 0x00);
    assert_eq!(read_n(&mut s, 8192), data);
    drop(s);

    // An unknown command: authenticated, then "command not supported".
    let mut s = connect(server.addr);
    s.write_all(&request(0x09, &target, 0, &[])).unwrap();
    let (ty, _, _) = read_auth_reply(&mut s);
    assert_eq!(ty, 0x00);
    let (rep, _) = read_operation_reply(&mut s);
    assert_eq!(rep, 0x07, "command not supported");
    let (_, end) = read_to_close(&mut s);
    assert_ne!(end, End::Timeout, "closed after the refusal");
    assert_still_serves(&server, echo.addr, "an unknown command");

    // Token windows of 0 and of 2^31 or more: the request is silently
    // ignored (no advertisement), the NOOP itself succeeds.
    for window in [0u32, 1 << 31, u32::MAX] {
        let mut s = connect(server.addr);
        s.write_all(&request(NOOP, &zeros(), 1, &token_request(window)))
            .unwrap();
        let (ty, _, opts) = read_auth_reply(&mut s);
        assert_eq!(ty, 0x00);
        assert!(opts.is_empty(), "window {window}: {opts:?}");
        assert_eq!(read_operation_reply(&mut s).0, 0x00);
    }
    // A legal one gets its window.
    let mut s = connect(server.addr);
    s.write_all(&request(NOOP, &zeros(), 1, &token_request(16)))
        .unwrap();
    let (_, _, opts) = read_auth_reply(&mut s);
    assert!(
        opts.iter().any(|(k, d)| *k == 0x04
            && d.len() == 9
            && d[0] == 0x01
            && d[5..] == 16u32.to_be_bytes()),
        "a window of 16 advertised: {opts:?}"
    );
    drop(s);

    // 10,000 tiny options (the count byte says 255; the cap is 64): closed.
    let mut s = connect(server.addr);
    let mut msg = request(CONNECT, &target, 255, &[]);
    for _ in 0..10_000 {
        msg.extend_from_slice(&[0xC0, 2]);
    }
    let _ = s.write_all(&msg); // the proxy may close before reading it all
    let (got, end) = read_to_close(&mut s);
    assert!(got.is_empty(), "no reply: {got:02x?}");
    assert_ne!(end, End::Timeout, "closed");
    assert_still_serves(&server, echo.addr, "10,000 tiny options");
    // 64 tiny options (the cap) are fine.
    let mut s = connect(server.addr);
    let tiny: Vec<u8> = (0..64).flat_map(|_| [0xC0u8, 2]).collect();
    s.write_all(&request(NOOP, &zeros(), 64, &tiny)).unwrap();
    assert_eq!(read_auth_reply(&mut s).0, 0x00);
    assert_eq!(read_operation_reply(&mut s).0, 0x00);
    drop(s);

    // A truncated request left open: cut off by the handshake timeout (2 s).
    let mut s = connect(server.addr);
    s.write_all(&request(CONNECT, &target, 2, &auth_method(0, &[])))
        .unwrap(); // one option of the two
    let t = Instant::now();
    let (got, end) = read_to_close(&mut s);
    assert!(got.is_empty(), "no reply: {got:02x?}");
    assert_ne!(
        end,
        End::Timeout,
        "closed by the proxy within {IO_TIMEOUT:?}"
    );
    eprintln!("truncated request closed after {:?}", t.elapsed());
    assert_still_serves(&server, echo.addr, "a truncated request left open");

    // Every refusal above was logged as a SOCKS 6 session.
    let logs = server.log_text();
    assert!(logs.contains("socks6"), "{logs}");
}

#[test]
fn initial_data_is_never_read_past_what_was_declared() {
    // A request declaring 4 bytes followed by 4 bytes and then the start of
    // a second, separate message: the second part must reach the target as
    // data after the first 4, in order, whatever the segmenting.
    let echo = echo_server();
    let server = Server::start(&[]);
    let mut s = connect(server.addr);
    let mut msg = request(CONNECT, &v6_addr(echo.addr), 1, &auth_method(4, &[]));
    msg.extend_from_slice(b"ABCD");
    for b in msg {
        s.write_all(&[b]).unwrap(); // byte by byte
    }
    s.write_all(b"EFGH").unwrap();
    let _ = read_auth_reply(&mut s);
    assert_eq!(read_operation_reply(&mut s).0, 0x00);
    assert_eq!(read_n(&mut s, 8), b"ABCDEFGH");
    let mut rest = Vec::new();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:02x?}");
}

/// The reference implementation's client bytes (`ref207-captures.md`,
/// runs 1a, 1c and 1d, with the echo server's port for 7777) get the
/// reference proxy's answers byte for byte, but for the bound port.
#[test]
fn the_reference_clients_bytes_get_the_reference_proxys_answers() {
    let echo = echo_server();
    let dir = TempDir::new("socks6-ref207");
    let users = dir.join("users");
    passwd(&users, "alice", "secret");
    let open = Server::start(&[]);
    let closed = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    let port = echo.addr.port().to_be_bytes();
    let with_port = |hex: &str| {
        let mut b = unhex(hex);
        b[4..6].copy_from_slice(&port);
        b
    };
    // 1a: CONNECT, an advertisement of 13 bytes of initial data, the data.
    let mut s = connect(open.addr);
    let mut flight = with_port("cf0100081e6100017f00000100020008000d0000");
    flight.extend_from_slice(b"hello ref-207");
    s.write_all(&flight).unwrap();
    assert_eq!(read_n(&mut s, 4), unhex("cf000000"), "auth reply");
    let op = read_n(&mut s, 12);
    assert_eq!(op[..4], unhex("cf000000")[..], "op reply head: {op:02x?}");
    assert_eq!(op[6..], unhex("00017f000001")[..], "bound address");
    assert_eq!(read_n(&mut s, 13), b"hello ref-207");
    // 1c: username/password in the request (0-RTT), 11 bytes of data.
    let mut s = connect(closed.addr);
    let mut flight = with_port(
        "cf01001c1e6100017f00000100020008000b020000040014020105616c6963650673656372657400",
    );
    flight.extend_from_slice(b"hello alice");
    s.write_all(&flight).unwrap();
    assert_eq!(read_n(&mut s, 12), unhex("cf0000080004000802010000"));
    let op = read_n(&mut s, 12);
    assert_eq!(op[..4], unhex("cf000000")[..]);
    assert_eq!(read_n(&mut s, 11), b"hello alice");
    // 1d: a wrong password: the failure with the RFC 1929 status, close.
    let before = echo.accepted();
    let mut s = connect(closed.addr);
    let mut flight = with_port(
        "cf01001c1e6100017f000001000200080004020000040014020105616c6963650577726f6e670000",
    );
    flight.extend_from_slice(b"data");
    s.write_all(&flight).unwrap();
    assert_closed_after(&mut s, &unhex("cf0100080004000802010100"), "1d");
    assert_eq!(echo.accepted(), before, "nothing connected");
    assert_still_serves(&open, echo.addr, "the reference dialect");
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

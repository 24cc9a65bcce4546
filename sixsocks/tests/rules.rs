//! Access rules against the real binary: each match kind, first-match
//! order, names matched by their addresses after resolution, client rules
//! at accept, UDP datagram rules, live reload on SIGHUP (a long transfer
//! survives it, new sessions see the new rules, a broken file changes
//! nothing), and `sixsocks check`.

mod common;
mod udpcommon;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use udpcommon::*;

/// Start `sixsocks serve --config FILE` with `rules` after a listen line.
fn start_with(dir: &TempDir, config: &str, extra: &[&str]) -> Server {
    let path = dir.join("sixsocks.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_str().unwrap().to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    let n = config
        .lines()
        .find(|l| l.trim_start().starts_with("listen"))
        .map_or(1, |l| l.matches(',').count() + 1);
    Server::start_n(&args, n)
}

/// `listen` on a free port of 127.0.0.1, then `rules`.
fn config(rules: &str) -> String {
    format!("listen = [\"127.0.0.1:0\"]\n{rules}")
}

fn v4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("not IPv4: {other}"),
    }
}

/// SOCKS4 CONNECT; returns the reply code byte.
fn socks4_connect(proxy: SocketAddr, target: SocketAddr) -> u8 {
    let mut s = connect(proxy);
    s.write_all(&v4_request(0x01, v4(target), target.port(), b"", None))
        .unwrap();
    read_v4_reply(&mut s)[1]
}

fn socks5_rep(proxy: SocketAddr, addr: &[u8], creds: Option<(&str, &str)>) -> u8 {
    socks5_connect(proxy, addr, creds).1.rep
}

#[test]
fn a_blocked_destination_gets_02_or_5b_and_other_targets_pass() {
    let blocked = echo_server();
    let open = echo_server();
    let dir = TempDir::new("rules-dest");
    let server = start_with(
        &dir,
        &config(&format!(
            r#"
            [[rule]]
            action = "block"
            to = ["127.0.0.1"]
            port = [{}]
            log = true

            [[rule]]
            action = "pass"
            "#,
            blocked.port()
        )),
        &[],
    );
    assert_eq!(socks5_rep(server.addr, &v5_addr(blocked.addr), None), 0x02);
    assert_eq!(socks4_connect(server.addr, blocked.addr), 0x5B);
    let mut s = socks5_tunnel(server.addr, open.addr);
    echo_roundtrip(&mut s, b"rules let this through");
    assert_eq!(socks4_connect(server.addr, open.addr), 0x5A);
    assert_eq!(blocked.accepted(), 0, "a blocked target was contacted");
    drop(s);
    server.wait_session_ends(4);
    let refused = server
        .logs
        .lines()
        .iter()
        .filter(|l| l.contains("session end") && l.contains("blocked by the rules (rule 1)"))
        .count();
    assert_eq!(refused, 2, "{}", server.log_text());
    // `log = true` adds a line from the rules themselves.
    assert!(
        server.logs.wait(Duration::from_secs(5), |l| l
            .iter()
            .any(|l| l.contains("sixsocks::rules") && l.contains("rule 1"))),
        "no rule log line:\n{}",
        server.log_text()
    );
}

#[test]
fn first_match_wins() {
    let echo = echo_server();
    let dir = TempDir::new("rules-order");
    // The pass for this one port comes first: it wins over the block of
    // the whole loopback network.
    let server = start_with(
        &dir,
        &config(&format!(
            r#"
            [[rule]]
            action = "pass"
            to = ["127.0.0.1"]
            port = [{}]
            [[rule]]
            action = "block"
            to = ["127.0.0.0/8"]
            [[rule]]
            action = "pass"
            "#,
            echo.port()
        )),
        &[],
    );
    let other = echo_server();
    assert_eq!(socks5_rep(server.addr, &v5_addr(echo.addr), None), 0x00);
    assert_eq!(socks5_rep(server.addr, &v5_addr(other.addr), None), 0x02);
    drop(server);
    // Swapped: the block comes first and takes both.
    let server = start_with(
        &dir,
        &config(&format!(
            r#"
            [[rule]]
            action = "block"
            to = ["127.0.0.0/8"]
            [[rule]]
            action = "pass"
            to = ["127.0.0.1"]
            port = [{}]
            "#,
            echo.port()
        )),
        &[],
    );
    assert_eq!(socks5_rep(server.addr, &v5_addr(echo.addr), None), 0x02);
}

#[test]
fn a_name_that_resolves_to_a_blocked_address_is_blocked() {
    let echo = echo_server();
    let dir = TempDir::new("rules-name");
    let server = start_with(
        &dir,
        &config(
            r#"
            [[rule]]
            action = "block"
            to = ["127.0.0.1", "::1"]
            [[rule]]
            action = "block"
            to = [".blocked.test"]
            [[rule]]
            action = "pass"
            "#,
        ),
        &["--extended-errors"],
    );
    // `localhost` passes by name (no rule names it) but resolves to a
    // blocked address.
    let rep = socks5_rep(server.addr, &v5_domain(b"localhost", echo.port()), None);
    assert_eq!(rep, 0x02, "CONNECT localhost");
    // An address literal sent as a name is the address.
    let rep = socks5_rep(server.addr, &v5_domain(b"127.0.0.1", echo.port()), None);
    assert_eq!(rep, 0x02, "CONNECT \"127.0.0.1\" as a name");
    // RESOLVE is held to the same rules.
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0xF0, &v5_domain(b"localhost", 0)))
        .unwrap();
    assert_eq!(read_v5_reply(&mut s).rep, 0x02, "RESOLVE localhost");
    // A name blocked by suffix is refused before any lookup: `.test`
    // names do not resolve, so a lookup would have answered 04.
    let rep = socks5_rep(server.addr, &v5_domain(b"www.blocked.test", 80), None);
    assert_eq!(rep, 0x02, "CONNECT www.blocked.test");
    let rep = socks5_rep(server.addr, &v5_domain(b"other.test", 80), None);
    assert_eq!(rep, 0x04, "an unresolvable name that no rule blocks");
    assert_eq!(echo.accepted(), 0);
    drop(server);

    // A pass by name comes first: the name's own rule decides, whatever
    // the address.
    let server = start_with(
        &dir,
        &config(
            r#"
            [[rule]]
            action = "pass"
            to = ["localhost"]
            [[rule]]
            action = "block"
            to = ["127.0.0.0/8", "::1"]
            "#,
        ),
        &[],
    );
    let (mut s, r) = socks5_connect(server.addr, &v5_domain(b"localhost", echo.port()), None);
    assert_eq!(r.rep, 0x00);
    echo_roundtrip(&mut s, b"by name");
}

#[test]
fn client_rules_close_at_accept() {
    let echo = echo_server();
    let dir = TempDir::new("rules-client");
    let server = start_with(
        &dir,
        &config(
            r#"
            [[rule]]
            action = "pass"
            from = ["127.0.0.2"]
            "#,
        ),
        &[],
    );
    // From 127.0.0.1: no rule can pass it, so it is closed at once,
    // before any byte.
    let mut s = connect(server.addr);
    let (got, end) = read_to_close(&mut s);
    assert!(got.is_empty() && end != End::Timeout, "{got:?} {end:?}");
    // From 127.0.0.2: served.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    sock.connect_timeout(&server.addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0x01, &v5_addr(echo.addr))).unwrap();
    assert_eq!(read_v5_reply(&mut s).rep, 0x00);
    echo_roundtrip(&mut s, b"from 127.0.0.2");
    assert!(
        server.logs.wait(Duration::from_secs(5), |l| l
            .iter()
            .any(|l| l.contains("client blocked by the rules"))),
        "{}",
        server.log_text()
    );
}

#[test]
fn listener_version_user_and_command() {
    let echo = echo_server();
    let dir = TempDir::new("rules-who");
    let users = dir.join("users");
    passwd(&users, "alice", "alice-pw");
    passwd(&users, "bob", "bob-pw");
    let server = start_with(
        &dir,
        &format!(
            r#"
            listen = ["127.0.0.1:0", "127.0.0.1:0"]
            users_file = "{}"
            [[rule]]
            action = "block"
            user = ["bob"]
            [[rule]]
            action = "pass"
            command = ["connect"]
            "#,
            users.display()
        ),
        &[],
    );
    assert_eq!(server.listeners.len(), 2);
    let target = v5_addr(echo.addr);
    assert_eq!(
        socks5_rep(server.addr, &target, Some(("alice", "alice-pw"))),
        0x00
    );
    assert_eq!(
        socks5_rep(server.addr, &target, Some(("bob", "bob-pw"))),
        0x02
    );
    // BIND is no connect: nothing passes it.
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, Some(("alice", "alice-pw")));
    s.write_all(&v5_request(0x02, &v5_addr(echo.addr))).unwrap();
    assert_eq!(read_v5_reply(&mut s).rep, 0x02, "BIND");
    drop(server);

    // Listener and version: block SOCKS4 everywhere and everything on the
    // second listener.
    let server = start_with(&dir, "listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n", &[]);
    let second = server.listeners[1];
    drop(server);
    let server = start_with(
        &dir,
        &format!(
            r#"
            listen = ["127.0.0.1:0", "{second}"]
            [[rule]]
            action = "block"
            version = ["socks4"]
            [[rule]]
            action = "block"
            listener = ["{second}"]
            [[rule]]
            action = "pass"
            "#
        ),
        &[],
    );
    let first = server.listeners[0];
    assert_eq!(socks5_rep(first, &target, None), 0x00);
    assert_eq!(socks4_connect(first, echo.addr), 0x5B);
    // The second listener is blocked by a client rule: closed at accept.
    let mut s = connect(second);
    let (got, _) = read_to_close(&mut s);
    assert!(got.is_empty(), "{got:02x?}");
}

#[test]
fn udp_datagrams_are_checked_one_by_one() {
    let blocked = udp_echo();
    let open = udp_echo();
    let dir = TempDir::new("rules-udp");
    let server = start_with(
        &dir,
        &config(&format!(
            r#"
            [[rule]]
            action = "block"
            command = ["udp"]
            to = ["127.0.0.1", "::1"]
            port = [{}]
            [[rule]]
            action = "pass"
            "#,
            blocked.addr.port()
        )),
        &[],
    );
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    for i in 0..3u8 {
        client
            .send_to(&dgram(0, &v5_addr(blocked.addr), &[b'x', i]), relay)
            .unwrap();
        client
            .send_to(&dgram(0, &v5_addr(open.addr), &[b'y', i]), relay)
            .unwrap();
        let back = recv_relayed(&client);
        assert_eq!(back.from, open.addr);
        assert_eq!(back.data, [b'y', i]);
    }
    // Also by name: `localhost` resolves to the blocked address.
    client
        .send_to(
            &dgram(0, &v5_domain(b"localhost", blocked.addr.port()), b"zz"),
            relay,
        )
        .unwrap();
    client
        .send_to(&dgram(0, &v5_addr(open.addr), b"last"), relay)
        .unwrap();
    assert_eq!(recv_relayed(&client).data, b"last");
    assert!(something_arrives(&client, Duration::from_millis(300)).is_none());
    assert_eq!(blocked.count(), 0, "a blocked destination got a datagram");
    assert_eq!(open.count(), 4);
    drop(ctl);
    server.wait_session_ends(1);
    let log = server.log_text();
    assert!(
        log.contains("datagrams to remote 4, to client 4, dropped 4"),
        "{log}"
    );
}

/// Send `chunk` through `s` and read the echo back, checking it.
fn echo_chunk(s: &mut TcpStream, chunk: &[u8]) {
    s.write_all(chunk).unwrap();
    let mut back = vec![0u8; chunk.len()];
    s.read_exact(&mut back).unwrap();
    assert!(back == chunk, "echo corrupted");
}

fn wait_for_log(server: &Server, needle: &str, count: usize) {
    assert!(
        server.logs.wait(Duration::from_secs(10), |l| l
            .iter()
            .filter(|l| l.contains(needle))
            .count()
            >= count),
        "no {count}x {needle:?} in the log:\n{}",
        server.log_text()
    );
}

#[test]
fn sighup_reloads_rules_without_dropping_sessions() {
    let echo = echo_server();
    let dir = TempDir::new("rules-reload");
    let path = dir.join("sixsocks.toml");
    let server = start_with(&dir, &config(""), &[]);
    let listen = format!("listen = [\"{}\"]\n", server.addr);
    // Keep the listening address across reloads (it cannot change).
    std::fs::write(&path, &listen).unwrap();

    // A long transfer starts under the old rules.
    let mut long = socks5_tunnel(server.addr, echo.addr);
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..16 {
        echo_chunk(&mut long, &chunk);
    }

    // New rules: the echo is blocked.
    std::fs::write(
        &path,
        format!(
            "{listen}[[rule]]\naction = \"block\"\nto = [\"127.0.0.1\"]\nport = [{}]\n[[rule]]\naction = \"pass\"\n",
            echo.port()
        ),
    )
    .unwrap();
    server.signal("HUP");
    wait_for_log(&server, "configuration reloaded", 1);
    assert_eq!(socks5_rep(server.addr, &v5_addr(echo.addr), None), 0x02);
    // The transfer keeps going, intact.
    for _ in 0..16 {
        echo_chunk(&mut long, &chunk);
    }

    // A broken file: rejected, the rules just loaded stay in force.
    std::fs::write(&path, format!("{listen}[[rule]]\naction = \"maybe\"\n")).unwrap();
    server.signal("HUP");
    wait_for_log(&server, "reload rejected", 1);
    assert_eq!(socks5_rep(server.addr, &v5_addr(echo.addr), None), 0x02);
    // One that parses but does not validate: rejected too.
    std::fs::write(
        &path,
        format!("{listen}[[rule]]\naction = \"pass\"\nroute = \"nowhere\"\n"),
    )
    .unwrap();
    server.signal("HUP");
    wait_for_log(&server, "reload rejected", 2);
    assert_eq!(socks5_rep(server.addr, &v5_addr(echo.addr), None), 0x02);

    // Back to no rules: passes again; the long transfer is still alive.
    std::fs::write(&path, &listen).unwrap();
    server.signal("HUP");
    wait_for_log(&server, "configuration reloaded", 2);
    let mut s = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut s, b"after reload");
    for _ in 0..16 {
        echo_chunk(&mut long, &chunk);
    }
    long.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, end) = read_to_close(&mut long);
    assert!(rest.is_empty() && end == End::Eof, "{} {end:?}", rest.len());
    assert!(server.is_running());
}

fn check(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sixsocks"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn check_explains_a_config_and_refuses_bad_ones() {
    let dir = TempDir::new("rules-check");
    let good = write(
        dir.path(),
        "good.toml",
        r#"
        listen = ["0.0.0.0:1080"]
        [[rule]]
        action = "pass"
        from = ["192.0.2.0/24"]
        to = [".example.com"]
        port = [443, "8000-8080"]
        [[rule]]
        action = "block"
        log = true
        [users.alice]
        max_sessions = 3
        bandwidth = 1000
        "#,
    );
    let (ok, text) = check(&["--config", &good, "--bind-ports", "40000-40099"]);
    // The limits against one address and the SOCKS 6 BIND ports.
    assert!(
        text.contains("per address 512 connections and 64 handshakes")
            && text.contains("failed logins per address: 10 in a row, then 10 a minute")
            && text.contains("BIND ports (SOCKS 6): 40000-40099"),
        "{text}"
    );
    assert!(
        text.contains("user alice: at most 3 sessions, 1000 bytes/s each way"),
        "{text}"
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("1. pass from 192.0.2.0/24; to .example.com; port 443, 8000-8080")
            && text.contains("2. block everything (logged)")
            && text.contains("anything else: block")
            && text.contains("0.0.0.0:1080"),
        "{text}"
    );
    // No client rule and no users on a public address: an open proxy.
    let (ok, text) = check(&["--listen", "0.0.0.0:1080"]);
    assert!(!ok && text.contains("open proxy"), "{text}");
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[rule]]\naction = \"pass\"\nto = [\"10.0.0.0/40\"]\n",
    );
    let (ok, text) = check(&["--config", &bad]);
    assert!(!ok && text.contains("10.0.0.0/40"), "{text}");
}

/// A target that answers each connection with the address it came from.
fn peer_reporter() -> Target {
    spawn_target_dual(|mut s| {
        let peer = s
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let _ = s.write_all(format!("{peer}\n").as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
    })
}

/// CONNECT to `addr` (a v5 address) and return the peer address the target saw.
fn seen_from(proxy: SocketAddr, addr: &[u8]) -> String {
    let (mut s, r) = socks5_connect(proxy, addr, None);
    assert_eq!(r.rep, 0x00, "{r:?}");
    let (got, _) = read_to_close(&mut s);
    String::from_utf8_lossy(&got).trim().to_string()
}

#[test]
fn egress_source_family_preference_and_mark() {
    let a = peer_reporter();
    let b = peer_reporter();
    let c = peer_reporter();
    let dir = TempDir::new("rules-egress");
    let rules = format!(
        r#"
        [[rule]]
        action = "pass"
        to = ["127.0.0.1"]
        port = [{}]
        source = "127.0.0.5"
        mark = 42
        [[rule]]
        action = "pass"
        to = ["{dual}"]
        port = [{}]
        prefer = "ipv6"
        [[rule]]
        action = "pass"
        to = ["{dual}"]
        port = [{}]
        prefer = "ipv4"
        "#,
        a.port(),
        b.port(),
        c.port(),
        dual = PROXY_ONLY_DUAL_NAME,
    );
    let path = dir.join("sixsocks.toml");
    std::fs::write(&path, config(&rules)).unwrap();
    // The server gets a private /etc/hosts in which the name has both families.
    let Some(server) = Server::start_with_hosts(&["--config", path.to_str().unwrap()]) else {
        return;
    };
    // Source address chosen by the rule.
    assert_eq!(seen_from(server.addr, &v5_addr(a.addr)), "127.0.0.5");
    // While a marked connection is open, the kernel shows its mark.
    let (mut held, r) = socks5_connect(server.addr, &v5_addr(a.addr), None);
    assert_eq!(r.rep, 0);
    if have_tool("ss") {
        let out = Command::new("ss")
            .args(["-tnH", "-e", "src", "127.0.0.5"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("fwmark:0x2a"),
            "ss shows no fwmark 42:\n{text}"
        );
    } else {
        missing("ss (iproute2), to see the SO_MARK of the outbound connection");
    }
    let _ = read_to_close(&mut held);
    if b.v6 && c.v6 {
        // The name has both families; each rule prefers its own.
        let name = v5_domain(PROXY_ONLY_DUAL_NAME.as_bytes(), b.port());
        assert_eq!(seen_from(server.addr, &name), "::1");
        let name = v5_domain(PROXY_ONLY_DUAL_NAME.as_bytes(), c.port());
        assert_eq!(seen_from(server.addr, &name), "127.0.0.1");
    } else {
        missing("IPv6 loopback, for the family preference");
    }
}

#[test]
fn egress_source_per_user() {
    let target = peer_reporter();
    let dir = TempDir::new("rules-user-egress");
    let users = dir.join("users");
    passwd(&users, "alice", "pw-a");
    passwd(&users, "bob", "pw-b");
    let server = start_with(
        &dir,
        &format!(
            "listen = [\"127.0.0.1:0\"]\nusers_file = \"{}\"\n[users.alice]\nsource = \"127.0.0.6\"\n",
            users.display()
        ),
        &[],
    );
    let seen = |creds| {
        let (mut s, r) = socks5_connect(server.addr, &v5_addr(target.addr), Some(creds));
        assert_eq!(r.rep, 0);
        String::from_utf8_lossy(&read_to_close(&mut s).0)
            .trim()
            .to_string()
    };
    assert_eq!(seen(("alice", "pw-a")), "127.0.0.6");
    assert_eq!(seen(("bob", "pw-b")), "127.0.0.1");
}

/// A `log = true` rule says once per request what it decided (and once
/// per connection, at accept): BIND and UDP ASSOCIATE look at their rule
/// again for its route, quietly (each wrote the request's line twice
/// before).
#[test]
fn a_logged_rule_logs_bind_and_udp_once() {
    let dir = TempDir::new("rules-log-once");
    let server = start_with(
        &dir,
        &config("[[rule]]\naction = \"pass\"\nlog = true\n"),
        &[],
    );
    let rule_lines = || {
        server
            .logs
            .lines()
            .iter()
            .filter(|l| l.contains("sixsocks::rules: request"))
            .count()
    };
    // BIND, expecting 127.0.0.1: the first reply, then the client leaves.
    let (c, first) = socks5_bind(server.addr, &v5_addr("127.0.0.1:0".parse().unwrap()));
    assert_eq!(first.rep, 0x00);
    drop(c);
    server.wait_session_ends(1);
    assert_eq!(rule_lines(), 1, "BIND: {}", server.log_text());
    // UDP ASSOCIATE, then the client leaves.
    let client = udp_client();
    let (ctl, _relay) = associate(server.addr, client.local_addr().unwrap());
    drop(ctl);
    server.wait_session_ends(2);
    assert_eq!(rule_lines(), 2, "UDP: {}", server.log_text());
}

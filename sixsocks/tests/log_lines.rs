//! What the text log says, against the real binary (issue 11, items 7 and
//! 10): a peer-chosen string can never break a line (so never forge one),
//! a failed login's session line names the user it tried, an IPv6 literal
//! sent as a name is bracketed, and a UDP session line says why its first
//! datagram was dropped.

mod common;
mod udpcommon;

use std::io::Write;
use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use udpcommon::*;

/// The text a forged line would start with.
const FORGED: &str = "FORGED 2026-01-01T00:00:00Z INFO sixsocks::session: forged line user=admin";

/// No line of the log starts with the forged text; the one that carried it
/// shows it escaped.
fn assert_not_forged(server: &Server) {
    let lines = server.logs.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("FORGED")),
        "a peer forged a log line:\n{}",
        server.log_text()
    );
    assert!(
        lines.iter().any(|l| l.contains("\\nFORGED")),
        "the name should show escaped:\n{}",
        server.log_text()
    );
}

/// Item 7: a name with `\n`, decided by a `log = true` rule. On the old
/// code the rule's log line broke in two and the second half read as a
/// line of its own.
#[test]
fn a_name_with_a_newline_cannot_forge_a_rule_log_line() {
    let dir = TempDir::new("log-forge");
    let cfg = dir.join("sixsocks.toml");
    std::fs::write(&cfg, "[[rule]]\naction = \"block\"\ncommand = [\"connect\"]\nlog = true\n[[rule]]\naction = \"pass\"\n").unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let name = format!("evil\n{FORGED}");
    let (_s, r) = socks5_connect(server.addr, &v5_domain(name.as_bytes(), 80), None);
    assert_eq!(r.rep, 0x02);
    server.wait_session_ends(1);
    assert!(
        server.logs.wait(Duration::from_secs(5), |l| l
            .iter()
            .any(|l| l.contains("sixsocks::rules"))),
        "{}",
        server.log_text()
    );
    assert_not_forged(&server);
}

/// Item 7: a UDP datagram to such a name, whose lookup fails: the drop's
/// reason (in the debug line and the session line) quotes the name. On the
/// old code the debug line broke. In a namespace, where DNS fails at once.
#[test]
fn a_name_with_a_newline_cannot_forge_a_udp_drop_line_netns() {
    if !in_netns("a_name_with_a_newline_cannot_forge_a_udp_drop_line_netns") {
        return;
    }
    let server = Server::start(&["-v"]);
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let name = format!("bad\n{FORGED}.invalid");
    client
        .send_to(&dgram(0, &v5_domain(name.as_bytes(), 9), b"x"), relay)
        .unwrap();
    assert!(
        server.logs.wait(IO_TIMEOUT, |l| l
            .iter()
            .any(|l| l.contains("udp datagram dropped"))),
        "{}",
        server.log_text()
    );
    drop(ctl);
    server.wait_session_ends(1);
    assert_not_forged(&server);
    let line = server
        .logs
        .lines()
        .into_iter()
        .find(|l| l.contains("command=udp-associate"))
        .unwrap();
    assert!(
        line.contains("dropped 1 (first: cannot resolve bad\\nFORGED"),
        "{line}"
    );
}

/// Item 10: a failed login's session line names the user it tried (it
/// said `user=-` on the old code), over SOCKS5 and SOCKS 6.
#[test]
fn a_failed_login_names_the_user_it_tried() {
    let dir = TempDir::new("log-failed-login");
    let users = dir.join("users");
    passwd(&users, "alice", "right");
    let server = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    let mut s = connect(server.addr);
    s.write_all(&[0x05, 0x01, 0x02]).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x05, 0x02]);
    s.write_all(&userpass_msg(b"mallory", b"wrong")).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x01, 0x01]);
    // SOCKS 6: username/password in the request, wrong.
    let mut s6 = connect(server.addr);
    let mut data = vec![0x02];
    data.extend_from_slice(&userpass_msg(b"trudy", b"wrong"));
    let mut req = vec![0x06, 0x00, 0x00, 0, 0, 0x01, 0, 0, 0, 0, 2];
    req.extend_from_slice(&[0x02, 5, 0, 0, 0x02]);
    req.extend_from_slice(&[0x03, (2 + data.len()) as u8]);
    req.extend_from_slice(&data);
    s6.write_all(&req).unwrap();
    let _ = read_to_close(&mut s6);
    let ends = server.wait_session_ends(2);
    let users: Vec<&str> = ends
        .iter()
        .filter_map(|f| f.get("user").map(String::as_str))
        .collect();
    assert!(users.contains(&"mallory"), "{}", server.log_text());
    assert!(users.contains(&"trudy"), "{}", server.log_text());
}

/// Item 10: an IPv6 literal sent as a name is bracketed in the session
/// line (`target=::1:8000` on the old code could be read as ::1:8000).
#[test]
fn an_ipv6_literal_sent_as_a_name_is_bracketed() {
    let server = Server::start(&[]);
    let port = closed_port().port();
    let (_s, _r) = socks5_connect(server.addr, &v5_domain(b"::1", port), None);
    let ends = server.wait_session_ends(1);
    assert_eq!(
        ends[0].get("target").map(String::as_str),
        Some(format!("[::1]:{port}").as_str()),
        "{}",
        server.log_text()
    );
}

/// Item 10: the UDP session line says why its first datagram was dropped
/// (the old line said only `dropped 1`).
#[test]
fn a_udp_session_line_gives_the_first_drop_reason() {
    let server = Server::start(&[]);
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    // Not from the client's port: dropped.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other
        .send_to(
            &dgram(0, &v5_addr("127.0.0.1:9".parse().unwrap()), b"x"),
            relay,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(ctl);
    server.wait_session_ends(1);
    let line = server
        .logs
        .lines()
        .into_iter()
        .find(|l| l.contains("session end"))
        .unwrap();
    assert!(
        line.contains("dropped 1 (first: not from the client's port)"),
        "{line}"
    );
}

//! Reply codes, command and address-type handling, Tor's RESOLVE and
//! RESOLVE_PTR, HTTP-resistance and optimistic data, with raw sockets
//! against the real binary.
//!
//! Tests whose name mentions a netns re-run themselves inside a fresh
//! network namespace (see `common::in_netns`): there, 10.1.2.3 has no route
//! (ENETUNREACH), 10.99.0.0/16 has an `unreachable` route (EHOSTUNREACH),
//! DNS fails at once, and `localhost` is both 127.0.0.1 and ::1.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;

const HTTP_501: &str = "HTTP/1.0 501";

#[test]
fn connect_succeeds_in_every_version() {
    let echo = echo_server();
    let server = Server::start(&[]);

    // SOCKS5, IPv4 target.
    let (mut s, r) = socks5_connect(server.addr, &v5_addr(echo.addr), None);
    assert_eq!(r.rep, 0x00, "{r:?}");
    assert!(
        r.atyp == 0x01 || r.atyp == 0x04,
        "success reply must carry an IP address: {r:?}"
    );
    echo_roundtrip(&mut s, b"socks5 ipv4");
    drop(s);

    // SOCKS5, domain target.
    let (mut s, r) = socks5_connect(server.addr, &v5_domain(b"localhost", echo.port()), None);
    assert_eq!(r.rep, 0x00, "{r:?}");
    echo_roundtrip(&mut s, b"socks5 domain");
    drop(s);

    // SOCKS4, without and with a USERID, and SOCKS4a.
    for (req, what) in [
        (
            v4_request(0x01, Ipv4Addr::LOCALHOST, echo.port(), b"", None),
            "socks4",
        ),
        (
            v4_request(0x01, Ipv4Addr::LOCALHOST, echo.port(), b"bob", None),
            "socks4 userid",
        ),
        (
            v4a_request(0x01, b"localhost", echo.port(), b"bob"),
            "socks4a",
        ),
    ] {
        let mut s = connect(server.addr);
        s.write_all(&req).unwrap();
        let r = read_v4_reply(&mut s);
        assert_eq!(&r[..2], &[0x00, 0x5A], "{what} reply {r:02x?}");
        echo_roundtrip(&mut s, what.as_bytes());
    }

    let ends = server.wait_session_ends(5);
    let versions: Vec<&str> = ends
        .iter()
        .filter_map(|f| f.get("version").map(|s| s.as_str()))
        .collect();
    for v in ["socks5", "socks4", "socks4a"] {
        assert!(
            versions.contains(&v),
            "no `session end` with version={v}: {ends:?}"
        );
    }
    assert!(
        ends.iter()
            .all(|f| f.get("reply").map(|s| s.as_str()) == Some("succeeded")),
        "every session succeeded: {ends:?}"
    );
    assert!(
        ends.iter()
            .any(|f| f.get("user").map(|s| s.as_str()) == Some("bob")),
        "the SOCKS4 USERID is logged as user: {ends:?}"
    );
    assert!(
        !server.log_text().contains('\x1b'),
        "ANSI escapes in the log although stderr is not a terminal"
    );
}

#[test]
fn reply_connection_refused() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let closed = closed_port();

    let (mut s, r) = socks5_connect(server.addr, &v5_addr(closed), None);
    assert_eq!(r.rep, 0x05, "SOCKS5 CONNECT to a closed port: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 05");

    let (mut s, r) = socks5_connect(server.addr, &v5_domain(b"localhost", closed.port()), None);
    assert_eq!(r.rep, 0x05, "SOCKS5 CONNECT localhost:closed: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 05 (domain)");

    let mut s = connect(server.addr);
    s.write_all(&v4_request(
        0x01,
        Ipv4Addr::LOCALHOST,
        closed.port(),
        b"",
        None,
    ))
    .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4 refused: {r:02x?}");
    assert_closed_after(&mut s, &[], "after SOCKS4 5B");

    let mut s = connect(server.addr);
    s.write_all(&v4a_request(0x01, b"localhost", closed.port(), b""))
        .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4a refused: {r:02x?}");
    assert_closed_after(&mut s, &[], "after SOCKS4a 5B");

    let ends = server.wait_session_ends(4);
    assert!(
        ends.iter()
            .all(|f| f.get("reply").is_some_and(|r| r != "succeeded")),
        "failed sessions must not be logged as succeeded: {ends:?}"
    );
    server.assert_serves(echo.addr, None);
}

#[test]
fn reply_network_unreachable_netns() {
    if !in_netns("reply_network_unreachable_netns") {
        return;
    }
    let echo = echo_server();
    let server = Server::start(&[]);
    let target: SocketAddr = format!("{NETNS_NET_UNREACHABLE}:80").parse().unwrap();

    let (mut s, r) = socks5_connect(server.addr, &v5_addr(target), None);
    assert_eq!(r.rep, 0x03, "ENETUNREACH must give REP 03: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 03");

    let mut s = connect(server.addr);
    s.write_all(&v4_request(
        0x01,
        NETNS_NET_UNREACHABLE.parse().unwrap(),
        80,
        b"",
        None,
    ))
    .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4: {r:02x?}");
    server.assert_serves(echo.addr, None);
}

#[test]
fn reply_host_unreachable_netns() {
    if !in_netns("reply_host_unreachable_netns") {
        return;
    }
    let echo = echo_server();
    let server = Server::start(&[]);
    let target: SocketAddr = format!("{NETNS_HOST_UNREACHABLE}:80").parse().unwrap();
    let (mut s, r) = socks5_connect(server.addr, &v5_addr(target), None);
    assert_eq!(r.rep, 0x04, "EHOSTUNREACH must give REP 04: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 04");
    server.assert_serves(echo.addr, None);
}

#[test]
fn reply_name_resolution_failure_netns() {
    if !in_netns("reply_name_resolution_failure_netns") {
        return;
    }
    let echo = echo_server();
    let server = Server::start(&[]);
    let name: &[u8] = b"no-such-host.invalid";

    let (mut s, r) = socks5_connect(server.addr, &v5_domain(name, 80), None);
    assert_eq!(r.rep, 0x04, "resolution failure must give REP 04: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 04");

    let mut s = connect(server.addr);
    s.write_all(&v4a_request(0x01, name, 80, b"")).unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4a: {r:02x?}");

    // RESOLVE of an unknown name.
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0xF0, &v5_domain(name, 0))).unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x04, "RESOLVE of an unknown name: {r:?}");
    server.assert_serves(echo.addr, None);
}

#[test]
fn reply_connect_timeout_is_ttl_expired() {
    let echo = echo_server();
    let hang = hanging_listener();
    let server = Server::start(&["--connect-timeout", "1"]);

    let (mut s, r) = socks5_connect(server.addr, &v5_addr(hang.addr), None);
    assert_eq!(r.rep, 0x06, "a connect timeout must give REP 06: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 06");

    let mut s = connect(server.addr);
    s.write_all(&v4_request(
        0x01,
        Ipv4Addr::LOCALHOST,
        hang.addr.port(),
        b"",
        None,
    ))
    .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4 connect timeout: {r:02x?}");
    server.assert_serves(echo.addr, None);
}

#[test]
fn reply_command_not_supported() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    // (BIND 02 and UDP ASSOCIATE 03 are carried out: see bind_udp.rs.)
    for cmd in [0x09u8, 0x00, 0x04, 0xF2, 0xFF] {
        let mut s = connect(server.addr);
        socks5_handshake(&mut s, None);
        s.write_all(&v5_request(cmd, &v5_addr(echo.addr))).unwrap();
        let r = read_v5_reply(&mut s);
        assert_eq!(r.rep, 0x07, "CMD {cmd:02x}: {r:?}");
        assert_closed_after(&mut s, &[], &format!("after REP 07 for CMD {cmd:02x}"));
    }
    for cd in [0x09u8, 0x03, 0x00, 0xF1] {
        let mut s = connect(server.addr);
        s.write_all(&v4_request(cd, Ipv4Addr::LOCALHOST, echo.port(), b"", None))
            .unwrap();
        let r = read_v4_reply(&mut s);
        assert_eq!(&r[..2], &[0x00, 0x5B], "SOCKS4 CD {cd:02x}: {r:02x?}");
        assert_closed_after(&mut s, &[], "after SOCKS4 5B");
    }
    assert_eq!(
        echo.accepted(),
        1,
        "only the health check may reach the target"
    );
    server.assert_healthy(echo.addr, baseline, "unsupported commands");
}

#[test]
fn reply_address_type_not_supported() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    for atyp in [0x05u8, 0x00, 0x02, 0xFF] {
        let mut s = connect(server.addr);
        socks5_handshake(&mut s, None);
        // Followed by what would be an IPv4 address and port.
        s.write_all(&[0x05, 0x01, 0x00, atyp, 127, 0, 0, 1, 0, 80])
            .unwrap();
        let r = read_v5_reply(&mut s);
        assert_eq!(r.rep, 0x08, "ATYP {atyp:02x}: {r:?}");
        let (_, end) = read_to_close(&mut s);
        assert_ne!(end, End::Timeout, "connection left open after REP 08");
    }
    server.assert_healthy(echo.addr, baseline, "unknown address types");
}

#[test]
fn reply_empty_domain_is_host_unreachable() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&[0x05, 0x01, 0x00, 0x03, 0x00, 0x00, 0x50])
        .unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x04, "domain of length 0: {r:?}");
    assert_closed_after(&mut s, &[], "after REP 04");
    server.assert_healthy(echo.addr, baseline, "a domain of length 0");
}

#[test]
fn tor_resolve_and_resolve_ptr_ipv4() {
    let echo = echo_server();
    let server = Server::start(&[]);

    // SOCKS5 RESOLVE.
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0xF0, &v5_domain(b"localhost", 0)))
        .unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x00, "RESOLVE localhost: {r:?}");
    let ip = r
        .ip()
        .unwrap_or_else(|| panic!("RESOLVE reply without an IP: {r:?}"));
    assert!(ip.is_loopback(), "localhost resolved to {ip}");
    let (rest, end) = read_to_close(&mut s);
    assert!(
        rest.is_empty() && end != End::Timeout,
        "after a RESOLVE reply the proxy closes: got {rest:02x?}, {end:?}"
    );

    // SOCKS5 RESOLVE_PTR of 127.0.0.1.
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(
        0xF1,
        &v5_addr(SocketAddr::from(([127, 0, 0, 1], 0))),
    ))
    .unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x00, "RESOLVE_PTR 127.0.0.1: {r:?}");
    assert_eq!(r.atyp, 0x03, "RESOLVE_PTR answers with a name: {r:?}");
    assert_eq!(
        String::from_utf8_lossy(&r.addr),
        "localhost",
        "RESOLVE_PTR 127.0.0.1"
    );

    // SOCKS4a RESOLVE.
    let mut s = connect(server.addr);
    s.write_all(&v4a_request(0xF0, b"localhost", 0, b""))
        .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5A], "SOCKS4a RESOLVE: {r:02x?}");
    assert_eq!(
        &r[4..],
        &[127, 0, 0, 1],
        "SOCKS4a RESOLVE address: {r:02x?}"
    );

    // SOCKS4 RESOLVE of an address (Tor accepts it): the address itself.
    let mut s = connect(server.addr);
    s.write_all(&v4_request(0xF0, Ipv4Addr::new(127, 0, 0, 1), 0, b"", None))
        .unwrap();
    let r = read_v4_reply(&mut s);
    assert_eq!(&r[..2], &[0x00, 0x5A], "SOCKS4 RESOLVE: {r:02x?}");
    assert_eq!(&r[4..], &[127, 0, 0, 1], "SOCKS4 RESOLVE address: {r:02x?}");

    let ends = server.wait_session_ends(4);
    let commands: Vec<&str> = ends
        .iter()
        .filter_map(|f| f.get("command").map(|s| s.as_str()))
        .collect();
    assert!(
        commands.contains(&"resolve") && commands.contains(&"resolve-ptr"),
        "session end commands: {commands:?}"
    );
    server.assert_serves(echo.addr, None);
}

#[test]
fn resolve_ptr_ipv6_and_address_fallback_netns() {
    if !in_netns("resolve_ptr_ipv6_and_address_fallback_netns") {
        return;
    }
    let server = Server::start(&[]);

    // RESOLVE_PTR of ::1 (the namespace's /etc/hosts names it `localhost`).
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(
        0xF1,
        &v5_addr(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0)),
    ))
    .unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x00, "RESOLVE_PTR ::1: {r:?}");
    assert_eq!(r.atyp, 0x03, "RESOLVE_PTR answers with a name: {r:?}");
    assert_eq!(String::from_utf8_lossy(&r.addr), "localhost");

    // RESOLVE of a name that has only an IPv6 address.
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0xF0, &v5_domain(b"ip6-localhost", 0)))
        .unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x00, "RESOLVE ip6-localhost: {r:?}");
    assert_eq!(r.ip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), "{r:?}");

    // `localhost` is ::1 and 127.0.0.1 here; a target listening on only one
    // of them must still be reached (the proxy tries every address).
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let l = std::net::TcpListener::bind(bind).unwrap();
        let port = l.local_addr().unwrap().port();
        let (_s, r) = socks5_connect(server.addr, &v5_domain(b"localhost", port), None);
        assert_eq!(
            r.rep, 0x00,
            "CONNECT localhost:{port} with the target on {bind} only: {r:?}"
        );
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_ok(), "the target on {bind} saw no connection");
    }

    // An IPv6 client of an IPv6 listener, CONNECT to an IPv6 target.
    let server6 = Server::start(&["--listen", "[::1]:0"]);
    assert!(server6.addr.is_ipv6());
    let l = std::net::TcpListener::bind("[::1]:0").unwrap();
    let (_s, r) = socks5_connect(server6.addr, &v5_addr(l.local_addr().unwrap()), None);
    assert_eq!(r.rep, 0x00, "CONNECT [::1] via [::1]: {r:?}");
}

#[test]
fn http_resistance() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let requests: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n\r\n",
        b"HEAD http://example.com/ HTTP/1.0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ];
    for req in requests {
        let mut s = connect(server.addr);
        s.write_all(req).unwrap();
        let (got, end) = read_to_close(&mut s);
        assert_eq!(end, End::Eof, "the HTTP answer ends with a clean close");
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(HTTP_501),
            "answer to {:?}: {text:?}",
            String::from_utf8_lossy(req)
        );
        let split = text
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers: {text:?}"));
        let head = &text[..split];
        let body = &got[split + 4..];
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
        assert_eq!(len, body.len(), "Content-Length matches the body");
        assert!(
            String::from_utf8_lossy(body).contains("SOCKS"),
            "the page explains it is a SOCKS proxy"
        );
    }
    server.assert_healthy(echo.addr, baseline, "HTTP requests");
}

#[test]
fn optimistic_data_is_forwarded() {
    let echo = echo_server();
    let server = Server::start(&[]);

    // SOCKS5: greeting, request and data in one write, before any reply.
    let payload = b"optimistic data sent before the reply".to_vec();
    let mut s = connect(server.addr);
    let mut msg = vec![0x05, 0x01, 0x00];
    msg.extend(v5_request(0x01, &v5_addr(echo.addr)));
    msg.extend(&payload);
    s.write_all(&msg).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x05, 0x00]);
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x00, "{r:?}");
    assert_eq!(
        read_n(&mut s, payload.len()),
        payload,
        "SOCKS5 optimistic data"
    );
    echo_roundtrip(&mut s, b"and more afterwards");

    // SOCKS5 with a domain target.
    let mut s = connect(server.addr);
    let mut msg = vec![0x05, 0x01, 0x00];
    msg.extend(v5_request(0x01, &v5_domain(b"localhost", echo.port())));
    msg.extend(&payload);
    s.write_all(&msg).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x05, 0x00]);
    assert_eq!(read_v5_reply(&mut s).rep, 0x00);
    assert_eq!(
        read_n(&mut s, payload.len()),
        payload,
        "SOCKS5h optimistic data"
    );

    // SOCKS4 and SOCKS4a.
    for req in [
        v4_request(0x01, Ipv4Addr::LOCALHOST, echo.port(), b"u", None),
        v4a_request(0x01, b"localhost", echo.port(), b"u"),
    ] {
        let mut s = connect(server.addr);
        let mut msg = req.clone();
        msg.extend(&payload);
        s.write_all(&msg).unwrap();
        let r = read_v4_reply(&mut s);
        assert_eq!(&r[..2], &[0x00, 0x5A], "{r:02x?}");
        assert_eq!(
            read_n(&mut s, payload.len()),
            payload,
            "SOCKS4 optimistic data"
        );
    }

    // A bigger burst of optimistic data (more than one handshake buffer).
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut s = connect(server.addr);
    let mut msg = vec![0x05, 0x01, 0x00];
    msg.extend(v5_request(0x01, &v5_addr(echo.addr)));
    msg.extend(&big);
    s.write_all(&msg).unwrap();
    assert_eq!(read_n(&mut s, 2), [0x05, 0x00]);
    assert_eq!(read_v5_reply(&mut s).rep, 0x00);
    assert!(
        read_n(&mut s, big.len()) == big,
        "100 kB of optimistic data"
    );
}

#[test]
fn slow_dns_does_not_block_other_sessions_netns() {
    // In the namespace, a DNS server on 127.0.0.1:53 that never answers
    // makes every lookup hang for the resolver's 5 s timeout.
    if !in_netns_with(
        "slow_dns_does_not_block_other_sessions_netns",
        "options timeout:5 attempts:1",
    ) {
        return;
    }
    let _silent_dns = std::net::UdpSocket::bind("127.0.0.1:53").unwrap();
    let echo = echo_server();
    let server = Server::start(&[]);
    // More pending lookups than the machine has cores.
    let mut pending = Vec::new();
    for i in 0..16 {
        let mut s = connect(server.addr);
        socks5_handshake(&mut s, None);
        let name = format!("slow-{i}.invalid");
        s.write_all(&v5_request(0x01, &v5_domain(name.as_bytes(), 80)))
            .unwrap();
        pending.push(s);
    }
    // Meanwhile a CONNECT by address goes through...
    let mut s = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut s, b"not blocked by DNS");
    // ...while the lookups are still unanswered.
    let mut still_pending = 0;
    for p in &pending {
        p.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        if matches!(std::io::Read::read(&mut &*p, &mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            still_pending += 1;
        }
        p.set_nonblocking(false).unwrap();
    }
    assert_eq!(
        still_pending,
        pending.len(),
        "lookups were answered before a CONNECT by address went through: \
         name resolution blocks the server's workers"
    );
    // And the lookups do fail eventually, with 04.
    for mut p in pending {
        let r = read_v5_reply(&mut p);
        assert_eq!(r.rep, 0x04, "a lookup that timed out: {r:?}");
    }
}

#[test]
fn handshake_byte_by_byte() {
    let echo = echo_server();
    let dir = TempDir::new("bytewise");
    let users = dir.join("users");
    passwd(&users, "frank", "frank-pw");
    let open = Server::start(&[]);
    let auth = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    let trickle = |s: &mut std::net::TcpStream, bytes: &[u8]| {
        for b in bytes {
            s.write_all(&[*b]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    };
    // SOCKS5 with a password, every byte in its own segment.
    let mut s = connect(auth.addr);
    trickle(&mut s, &[0x05, 0x01, 0x02]);
    assert_eq!(read_n(&mut s, 2), [0x05, 0x02]);
    trickle(&mut s, &userpass_msg(b"frank", b"frank-pw"));
    assert_eq!(read_n(&mut s, 2), [0x01, 0x00]);
    trickle(
        &mut s,
        &v5_request(0x01, &v5_domain(b"localhost", echo.port())),
    );
    assert_eq!(read_v5_reply(&mut s).rep, 0x00);
    echo_roundtrip(&mut s, b"bytewise socks5");
    // SOCKS4a.
    let mut s = connect(open.addr);
    trickle(
        &mut s,
        &v4a_request(0x01, b"localhost", echo.port(), b"frank"),
    );
    assert_eq!(read_v4_reply(&mut s)[..2], [0x00, 0x5A]);
    echo_roundtrip(&mut s, b"bytewise socks4a");
    // SOCKS5 with IPv6 target address (::1 may be absent: accept 00 or 05).
    let mut s = connect(open.addr);
    trickle(&mut s, &[0x05, 0x01, 0x00]);
    assert_eq!(read_n(&mut s, 2), [0x05, 0x00]);
    trickle(
        &mut s,
        &v5_request(
            0x01,
            &v5_addr(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), echo.port())),
        ),
    );
    let r = read_v5_reply(&mut s);
    assert!(r.rep == 0x00 || r.rep == 0x05 || r.rep == 0x03, "{r:?}");
}

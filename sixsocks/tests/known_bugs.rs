//! Bugs seen in other SOCKS servers (the list in design.md), each with a
//! test that fails if sixsocks had it. The tests here are end to end,
//! through the real binary; the sans-IO ones are in
//! `proto/tests/known_bugs.rs`. Where a test elsewhere already covers a
//! bug, the table names it. "here" is this file; a bare file name is in
//! `sixsocks/tests/`; `proto/tests/`, `client/tests/` are named in full or
//! as "client". The `::ffff:127.0.0.1` item is left to the ACL work.
//!
//! | Bug (project)                                                    | Test                                                                                   |
//! |------------------------------------------------------------------|----------------------------------------------------------------------------------------|
//! | CONNECT pipelined behind a failed password carried out           | proto/tests/server.rs `socks5_userpass_failure_never_runs_the_pipelined_request`,      |
//! |   (merino; sing-box CVE-2023-43644)                              |   `socks5_failed_auth_is_sticky_whatever_the_caller_feeds`; bad_input.rs               |
//! |                                                                  |   `connect_pipelined_behind_failed_password_is_not_carried_out`; v6_server.rs          |
//! |                                                                  |   `wrong_zero_rtt_password_fails_and_nothing_pipelined_comes_out`                      |
//! | Success replied before the outbound connection existed (leaf)    | here `success_is_replied_only_once_the_outbound_connection_exists`; replies.rs         |
//! |                                                                  |   `reply_connect_timeout_is_ttl_expired`, `reply_connection_refused`                   |
//! | Reply written with `write`, truncated by a short write           | here `replies_arrive_whole_and_exact_through_a_one_byte_window` (see its note)         |
//! |   (fast-socks5)                                                  |                                                                                        |
//! | "No acceptable methods" sent as `05 01` = GSSAPI (clash-rs)      | proto/tests/server.rs `socks5_require_auth_with_only_00_offered_is_05_ff_not_05_01`;   |
//! |                                                                  |   bad_input.rs `users_file_makes_auth_mandatory`, `no_methods_gets_ff`                 |
//! | Panic on a short buffer parsing an address (shadowsocks-rust)    | proto/tests/known_bugs.rs `short_buffers_never_panic_the_address_parsers`;             |
//! |                                                                  |   proptests.rs `parsers_on_arbitrary_bytes`; messages.rs                               |
//! |                                                                  |   `target_addr_v5_exact_needed`; udp_bad_input.rs                                      |
//! |                                                                  |   `malformed_headers_are_dropped_and_counted`; fuzz targets                            |
//! | Passwords in the logs (shadowsocks-rust, fast-socks5)            | bad_input.rs `passwords_never_logged` (SOCKS5, -v, -vv); here                          |
//! |                                                                  |   `passwords_never_logged_at_any_verbosity_protocol_or_hop` (-vvv, JSON, SOCKS 6,      |
//! |                                                                  |   upstream credentials, `sixsocks check`)                                              |
//! | Blocking DNS inside async code (BIND calling `ToSocketAddrs`)    | here `bind_naming_a_host_whose_lookup_hangs_stalls_no_one_netns`; replies.rs           |
//! |                                                                  |   `slow_dns_does_not_block_other_sessions_netns`; bind_udp.rs                          |
//! |                                                                  |   `udp_slow_name_does_not_stall_the_association_netns`                                 |
//! | UDP association re-pointed to the last sender (fast-socks5)      | bind_udp.rs `udp_association_is_not_repointed_to_another_sender`                       |
//! | Only the first datagram's destination checked (3proxy < 0.9.9)   | rules.rs `udp_datagrams_are_checked_one_by_one`; metrics.rs `rule_blocks_by_stage`     |
//! | FRAG read as reserved, fragments relayed whole (redproxy-rs);    | udp_bad_input.rs `out_of_order_fragments_abandon_their_sequence`,                      |
//! |   association killed on a non-zero FRAG (3proxy)                 |   `fragments_older_than_the_reassembly_timer_are_dropped`,                             |
//! |                                                                  |   `fragment_flood_keeps_memory_bounded`; client bind_udp.rs                            |
//! |                                                                  |   `udp_round_trips_addresses_names_fragments_and_big_datagrams`                        |
//! | No handshake deadline (Arti, fast-socks5)                        | bad_input.rs `slow_trickle_is_cut_off` (also a client that sends nothing);             |
//! |                                                                  |   socks6.rs `bad_input`                                                                |
//! | One `recv()` taken as one whole message (microsocks)             | replies.rs `handshake_byte_by_byte`; every proto/tests/server.rs test (all chunkings); |
//! |                                                                  |   proptests.rs `server_chunking_of_valid_streams_changes_nothing`                      |
//! | SOCKS4 USERID / hostname without NUL read without bound          | proto/tests/server.rs `socks4_userid_without_nul_is_refused_with_5b`,                  |
//! |   (old CVEs)                                                     |   `socks4a_hostname_without_nul_is_refused_with_5b`; messages.rs `v4_userid_cap`;      |
//! |                                                                  |   bad_input.rs `socks4_fields_without_nul_are_capped`, `one_mib_of_garbage`            |
//! | Domain length byte beyond what was sent (OpenSSH 2006)           | proto/tests/server.rs `socks5_domain_length_beyond_input_waits_exactly`;               |
//! |                                                                  |   bad_input.rs `truncated_messages_then_close`; proto/tests/known_bugs.rs (UDP header) |
//! | Replies containing uninitialised bytes (3proxy CVE-2026-109438)  | proto/tests/known_bugs.rs `every_reply_byte_is_accounted_for`; here                    |
//! |                                                                  |   `replies_arrive_whole_and_exact_through_a_one_byte_window`                           |
//! | Rules checked by name, not by the resolved address               | rules.rs `a_name_that_resolves_to_a_blocked_address_is_blocked` (CONNECT, RESOLVE),    |
//! |   (Dante CVE-2024-54662)                                         |   `udp_datagrams_are_checked_one_by_one` (UDP); here                                   |
//! |                                                                  |   `bind_naming_a_blocked_host_by_name_is_blocked` (BIND, SOCKS5 and SOCKS 6: found     |
//! |                                                                  |   by this test, fixed by issue 11 items 6 and 8)                                       |
//! | Rules checked at one auth stage and not the next                 | here `user_rules_hold_at_every_stage_after_authentication`; rules.rs                   |
//! |   (Dante CVE-2024-54662)                                         |   `listener_version_user_and_command`, `client_rules_close_at_accept`                  |
//! | `::ffff:127.0.0.1`, `2130706433`, `0.0.0.0` reaching loopback    | address_forms.rs (every form, TCP and UDP, each SOCKS version)                         |
//! | Client hostname over 255 bytes overflowing (curl CVE-2023-38545) | proto/tests/roundtrip.rs `client_refuses_what_it_cannot_encode`; client                |
//! |                                                                  |   fake_server.rs `overlong_name_is_refused_not_resolved_locally`                       |

mod common;
mod udpcommon;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use udpcommon::{dgram, something_arrives, udp_echo, UDP_TIMEOUT};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `listen` on a free 127.0.0.1 port plus `rest`, written to `dir`, and
/// `sixsocks serve --config` on it with `extra` arguments.
fn start_config(dir: &TempDir, name: &str, rest: &str, extra: &[&str]) -> Server {
    let path = dir.join(name);
    std::fs::write(&path, format!("listen = [\"127.0.0.1:0\"]\n{rest}")).unwrap();
    let path = path.to_str().unwrap().to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `05 REP 00 01 | IPv4 | PORT`: a SOCKS5 reply carrying an IPv4 address.
fn v5_reply_v4(rep: u8, a: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = a.ip() else {
        panic!("IPv4 expected: {a}")
    };
    let mut v = vec![0x05, rep, 0x00, 0x01];
    v.extend_from_slice(&ip.octets());
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// A client socket whose receive buffer is as small as the kernel allows
/// (set before connecting, so the advertised window is small from the
/// first segment on).
fn tiny_window_client(proxy: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(1).unwrap();
    sock.connect_timeout(&proxy.into(), IO_TIMEOUT).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read exactly `n` bytes, one `read` of one byte at a time.
fn read_bytewise(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut b = [0u8; 1];
    while out.len() < n {
        match s.read(&mut b) {
            Ok(0) => panic!("EOF after {} of {n} bytes: {out:02x?}", out.len()),
            Ok(_) => out.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("after {} of {n} bytes ({out:02x?}): {e}", out.len()),
        }
    }
    out
}

/// The proxy closes (EOF or reset) without sending another byte.
fn assert_nothing_more(s: &mut TcpStream, what: &str) {
    let (got, end) = read_to_close(s);
    assert!(
        got.is_empty() && end != End::Timeout,
        "{what}: after the reply the proxy sent {got:02x?} and then {end:?}"
    );
}

/// Deterministic banner bytes.
fn banner(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A target that records the peer address of each connection, writes
/// `banner` at once and closes its write side.
fn banner_target(banner: Arc<Vec<u8>>) -> (Target, Arc<Mutex<Vec<SocketAddr>>>) {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let p2 = peers.clone();
    let t = spawn_target(move |mut s| {
        p2.lock().unwrap().push(s.peer_addr().unwrap());
        let _ = s.write_all(&banner);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = [0u8; 256];
        while let Ok(n) = s.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    (t, peers)
}

/// A listener whose accept queue is full: every further SYN to it is
/// dropped by the kernel, so no new connection to it can exist until the
/// test accepts the fillers.
struct FullListener {
    addr: SocketAddr,
    listener: TcpListener,
    fillers: Vec<TcpStream>,
}

fn full_listener() -> FullListener {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(700)) {
            Ok(s) => fillers.push(s),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return FullListener {
                    addr,
                    listener: l.into(),
                    fillers,
                };
            }
            Err(e) => panic!("filling the accept queue of {addr}: {e}"),
        }
    }
    panic!("a backlog-0 listener took 16 connections without accept(): cannot fill it");
}

/// SOCKS 6 (draft -05) request bytes, by hand.
mod socks6 {
    use super::*;

    /// `PORT(2) | ATYP | ADDR` for an IPv4 socket address.
    pub fn addr(a: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(a) = a else {
            panic!("IPv4 expected")
        };
        let mut out = a.port().to_be_bytes().to_vec();
        out.push(0x01);
        out.extend_from_slice(&a.ip().octets());
        out
    }
    /// `06 00 | CMD | PORT ATYP ADDR | NOPTS | OPTIONS`.
    pub fn request(cmd: u8, addr: &[u8], nopts: u8, options: &[u8]) -> Vec<u8> {
        let mut out = vec![0x06, 0x00, cmd];
        out.extend_from_slice(addr);
        out.push(nopts);
        out.extend_from_slice(options);
        out
    }
    pub fn opt(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, (2 + data.len()) as u8];
        out.extend_from_slice(data);
        out
    }
    pub fn auth_method(initial: u16, methods: &[u8]) -> Vec<u8> {
        let mut data = initial.to_be_bytes().to_vec();
        data.extend_from_slice(methods);
        opt(0x02, &data)
    }
    pub fn auth_data(user: &str, pass: &str) -> Vec<u8> {
        let mut data = vec![0x02];
        data.extend_from_slice(&userpass_msg(user.as_bytes(), pass.as_bytes()));
        opt(0x03, &data)
    }
    fn read_options(s: &mut TcpStream, nopts: u8) {
        for _ in 0..nopts {
            let h = read_n(s, 2);
            assert!(h[1] >= 2, "option length {} below 2", h[1]);
            read_n(s, h[1] as usize - 2);
        }
    }
    /// `(type, method)` of an authentication reply.
    pub fn read_auth_reply(s: &mut TcpStream) -> (u8, u8) {
        let h = read_n(s, 5);
        assert_eq!(&h[..2], &[0x06, 0x00], "authentication reply version");
        read_options(s, h[4]);
        (h[2], h[3])
    }
    /// REP of an operation reply.
    pub fn read_operation_reply(s: &mut TcpStream) -> u8 {
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
        read_options(s, nopts);
        h[0]
    }
    /// A 0-RTT CONNECT as `user`: authentication must succeed; returns
    /// the stream and the operation reply's REP.
    pub fn connect_as(
        proxy: SocketAddr,
        target: SocketAddr,
        user: &str,
        pass: &str,
    ) -> (TcpStream, u8) {
        let mut s = connect(proxy);
        let opts = [auth_data(user, pass), auth_method(0, &[0x02])].concat();
        s.write_all(&request(0x01, &addr(target), 2, &opts))
            .unwrap();
        assert_eq!(
            read_auth_reply(&mut s),
            (0x00, 0x02),
            "SOCKS 6 auth as {user}"
        );
        let rep = read_operation_reply(&mut s);
        (s, rep)
    }
}

// ---------------------------------------------------------------------------
// leaf: success before the outbound connection
// ---------------------------------------------------------------------------

/// leaf: the success reply was sent before the outbound connection
/// existed. Here the target's accept queue is full, so the kernel drops
/// the proxy's SYNs and no connection to it can exist: the client must
/// hear nothing. Once the test makes room, the connection is made and
/// only then does the success reply come, carrying as BND exactly the
/// address the target sees the connection come from (which the proxy
/// can only know once its socket is connected).
#[test]
fn success_is_replied_only_once_the_outbound_connection_exists() {
    let server = Server::start(&["--connect-timeout", "60"]);
    for version in [5u8, 4] {
        let full = full_listener();
        let mut c = connect(server.addr);
        if version == 5 {
            socks5_handshake(&mut c, None);
            c.write_all(&v5_request(0x01, &v5_addr(full.addr))).unwrap();
        } else {
            c.write_all(&v4_request(
                0x01,
                Ipv4Addr::LOCALHOST,
                full.addr.port(),
                b"",
                None,
            ))
            .unwrap();
        }
        // While no connection can exist: silence (bounded wait).
        c.set_read_timeout(Some(Duration::from_millis(2500)))
            .unwrap();
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(n) => panic!(
                "SOCKS{version}: the proxy answered {:02x?} while the target could not \
                 accept any connection (the leaf bug)",
                &b[..n]
            ),
            Err(e) => panic!("SOCKS{version}: {e}"),
        }
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // Make room: the proxy's next SYN retransmission gets in.
        full.listener.set_nonblocking(false).unwrap();
        for _ in &full.fillers {
            drop(full.listener.accept().unwrap());
        }
        let reply = read_n(&mut c, if version == 5 { 10 } else { 8 });
        full.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        let (mut inbound, peer) = loop {
            match full.listener.accept() {
                Ok(x) => break x,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("SOCKS{version}: the proxy's connection never arrived: {e}"),
            }
        };
        let want = if version == 5 {
            v5_reply_v4(0x00, peer)
        } else {
            let IpAddr::V4(ip) = peer.ip() else { panic!() };
            [&[0x00, 0x5A][..], &peer.port().to_be_bytes(), &ip.octets()].concat()
        };
        assert_eq!(
            reply, want,
            "SOCKS{version}: the success reply must carry the outbound connection's address {peer}"
        );
        inbound.set_nonblocking(false).unwrap();
        inbound.write_all(b"from the target").unwrap();
        assert_eq!(read_n(&mut c, 15), b"from the target");
    }
}

// ---------------------------------------------------------------------------
// fast-socks5: short writes; 3proxy: uninitialised bytes
// ---------------------------------------------------------------------------

/// fast-socks5: a reply written with `write` instead of `write_all`, so a
/// short write truncated it; 3proxy CVE-2026-109438: replies carrying
/// uninitialised bytes. Every kind of reply is read by a client with the
/// smallest receive window the kernel allows, one byte per `read`, and
/// compared byte for byte with what the RFCs say (the addresses checked
/// against what the sockets themselves report), and nothing else may
/// follow it but the relayed data. Behind the CONNECT replies the target
/// sends 64 KiB at once, which the proxy can only write in short pieces
/// through that window: it must arrive whole and in order.
///
/// Note: a reply is at most a few hundred bytes, less than any kernel
/// send buffer, so TCP itself cannot force the short write of the reply
/// proper; this test makes the window as small as it can and guards the
/// bytes the client sees (all replies are written with `write_all` today).
#[test]
fn replies_arrive_whole_and_exact_through_a_one_byte_window() {
    let data = Arc::new(banner(64 << 10));
    let (target, peers) = banner_target(data.clone());
    let server = Server::start(&[]);
    let read_banner = |c: &mut TcpStream, what: &str| {
        // The first 4 KiB one byte at a time, the rest in chunks with a
        // normal window (a tiny one only slows TCP down from here on).
        let mut got = read_bytewise(c, 4096);
        socket2::SockRef::from(&*c)
            .set_recv_buffer_size(1 << 20)
            .unwrap();
        let (rest, end) = read_to_close(c);
        assert_eq!(end, End::Eof, "{what}: the relayed data ended with {end:?}");
        got.extend_from_slice(&rest);
        assert!(
            got.len() == data.len() && got == *data,
            "{what}: relayed data corrupted ({} of {} bytes)",
            got.len(),
            data.len()
        );
    };

    // SOCKS5 CONNECT: method choice, then 05 00 00 01 BND.
    let mut c = tiny_window_client(server.addr);
    c.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(read_bytewise(&mut c, 2), [0x05, 0x00]);
    c.write_all(&v5_request(0x01, &v5_addr(target.addr)))
        .unwrap();
    let reply = read_bytewise(&mut c, 10);
    read_banner(&mut c, "SOCKS5 CONNECT");
    let peer = *peers.lock().unwrap().last().unwrap();
    assert_eq!(reply, v5_reply_v4(0x00, peer), "SOCKS5 CONNECT reply");

    // SOCKS4 CONNECT: 00 5A PORT IP.
    let mut c = tiny_window_client(server.addr);
    c.write_all(&v4_request(
        0x01,
        Ipv4Addr::LOCALHOST,
        target.port(),
        b"u",
        None,
    ))
    .unwrap();
    let reply = read_bytewise(&mut c, 8);
    read_banner(&mut c, "SOCKS4 CONNECT");
    let peer = *peers.lock().unwrap().last().unwrap();
    let IpAddr::V4(ip) = peer.ip() else { panic!() };
    assert_eq!(
        reply,
        [&[0x00, 0x5A][..], &peer.port().to_be_bytes(), &ip.octets()].concat(),
        "SOCKS4 CONNECT reply"
    );

    // Refusals: every address byte zero, then close.
    let closed = closed_port();
    let mut c = tiny_window_client(server.addr);
    c.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(read_bytewise(&mut c, 2), [0x05, 0x00]);
    c.write_all(&v5_request(0x01, &v5_addr(closed))).unwrap();
    assert_eq!(read_bytewise(&mut c, 10), [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_nothing_more(&mut c, "SOCKS5 refusal");
    let mut c = tiny_window_client(server.addr);
    c.write_all(&v4_request(
        0x01,
        Ipv4Addr::LOCALHOST,
        closed.port(),
        b"",
        None,
    ))
    .unwrap();
    assert_eq!(read_bytewise(&mut c, 8), [0, 0x5B, 0, 0, 0, 0, 0, 0]);
    assert_nothing_more(&mut c, "SOCKS4 refusal");
    let mut c = tiny_window_client(server.addr);
    c.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(read_bytewise(&mut c, 2), [0x05, 0x00]);
    c.write_all(&v5_request(0x09, &v5_addr(target.addr)))
        .unwrap();
    assert_eq!(read_bytewise(&mut c, 10), [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_nothing_more(&mut c, "command not supported");

    // Tor RESOLVE of an address literal: the address, port 0.
    let mut c = tiny_window_client(server.addr);
    c.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(read_bytewise(&mut c, 2), [0x05, 0x00]);
    c.write_all(&v5_request(0xF0, &v5_domain(b"192.0.2.77", 0)))
        .unwrap();
    assert_eq!(
        read_bytewise(&mut c, 10),
        [5, 0, 0, 1, 192, 0, 2, 77, 0, 0],
        "RESOLVE reply"
    );
    assert_nothing_more(&mut c, "RESOLVE");

    // BIND: the first reply names the listening socket, the second the
    // host that connected (both checked against the sockets).
    let mut c = tiny_window_client(server.addr);
    c.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(read_bytewise(&mut c, 2), [0x05, 0x00]);
    c.write_all(&v5_request(0x02, &v5_addr("127.0.0.1:0".parse().unwrap())))
        .unwrap();
    let first = read_bytewise(&mut c, 10);
    assert_eq!(
        &first[..8],
        &[5, 0, 0, 1, 127, 0, 0, 1],
        "BIND first reply {first:02x?}"
    );
    let bound = SocketAddr::from(([127, 0, 0, 1], u16::from_be_bytes([first[8], first[9]])));
    let mut inbound = TcpStream::connect_timeout(&bound, IO_TIMEOUT).unwrap();
    let second = read_bytewise(&mut c, 10);
    assert_eq!(
        second,
        v5_reply_v4(0x00, inbound.local_addr().unwrap()),
        "BIND second reply"
    );
    inbound.write_all(b"inbound").unwrap();
    assert_eq!(read_bytewise(&mut c, 7), b"inbound");
    drop(inbound);

    // UDP ASSOCIATE: the relay's address; datagrams back carry exactly
    // the header of the sender's address.
    let uecho = udp_echo();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(UDP_TIMEOUT)).unwrap();
    let mut c = tiny_window_client(server.addr);
    c.write_all(&[0x05, 0x01, 0x00]).unwrap();
    assert_eq!(read_bytewise(&mut c, 2), [0x05, 0x00]);
    c.write_all(&v5_request(0x03, &v5_addr(client.local_addr().unwrap())))
        .unwrap();
    let r = read_bytewise(&mut c, 10);
    assert_eq!(
        &r[..8],
        &[5, 0, 0, 1, 127, 0, 0, 1],
        "UDP ASSOCIATE reply {r:02x?}"
    );
    let relay = SocketAddr::from(([127, 0, 0, 1], u16::from_be_bytes([r[8], r[9]])));
    client
        .send_to(&dgram(0, &v5_addr(uecho.addr), b"exact"), relay)
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, relay);
    let mut want = vec![0, 0, 0];
    want.extend_from_slice(&v5_addr(uecho.addr));
    want.extend_from_slice(b"exact");
    assert_eq!(&buf[..n], &want[..], "relayed datagram");
    drop(c);

    // The HTTP page: its Content-Length is what follows the head, then close.
    let mut c = tiny_window_client(server.addr);
    c.write_all(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    let mut page = read_bytewise(&mut c, 12);
    let (rest, end) = read_to_close(&mut c);
    assert_ne!(end, End::Timeout);
    page.extend_from_slice(&rest);
    let text = String::from_utf8(page).expect("the page is text");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP head");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .unwrap();
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert_eq!(
        body.len(),
        len,
        "the page's body is its Content-Length, no more, no less"
    );
}

// ---------------------------------------------------------------------------
// shadowsocks-rust, fast-socks5: passwords in the logs
// ---------------------------------------------------------------------------

/// shadowsocks-rust, fast-socks5: passwords written to the logs. At the
/// highest verbosity (-vvv: every crate at trace), in text and in JSON,
/// through every way a password reaches sixsocks: SOCKS5 and SOCKS 6
/// (0-RTT and the slow path), right and wrong; a password passed on to an
/// upstream and one written in an upstream URL of the config file; and
/// `sixsocks check` on that config. No log of either hop may hold one.
#[test]
fn passwords_never_logged_at_any_verbosity_protocol_or_hop() {
    let echo = echo_server();
    let dir = TempDir::new("known-bugs-nolog");
    let users = dir.join("users");
    let alice_pw = "Alice-PW-n0t-f0r-l0gs";
    let bob_pw = "Bob-PW-n0t-f0r-l0gs";
    let wrong_pw = "Wrong-PW-n0t-f0r-l0gs";
    passwd(&users, "alice", alice_pw);
    passwd(&users, "bob", bob_pw);
    let secrets = [alice_pw, bob_pw, wrong_pw];
    let assert_clean = |text: &str, what: &str| {
        for s in secrets {
            assert!(
                !text.contains(s),
                "{what} holds the password {s:?}:\n{text}"
            );
        }
    };

    for format in ["text", "json"] {
        let b = Server::start(&[
            "-vvv",
            "--log-format",
            format,
            USERS_FLAG,
            users.to_str().unwrap(),
        ]);
        // SOCKS5, right and wrong.
        b.assert_serves(echo.addr, Some(("alice", alice_pw)));
        for (u, p) in [("alice", wrong_pw), ("mallory", bob_pw)] {
            let mut s = connect(b.addr);
            s.write_all(&[0x05, 0x01, 0x02]).unwrap();
            assert_eq!(read_n(&mut s, 2), [0x05, 0x02]);
            s.write_all(&userpass_msg(u.as_bytes(), p.as_bytes()))
                .unwrap();
            assert_ne!(read_n(&mut s, 2)[1], 0x00, "{u} accepted");
            let _ = read_to_close(&mut s);
        }
        // SOCKS 6, 0-RTT, right and wrong.
        let (mut s, rep) = socks6::connect_as(b.addr, echo.addr, "bob", bob_pw);
        assert_eq!(rep, 0x00);
        echo_roundtrip(&mut s, b"socks6 0-rtt");
        drop(s);
        let mut s = connect(b.addr);
        let opts = [
            socks6::auth_data("bob", wrong_pw),
            socks6::auth_method(0, &[0x02]),
        ]
        .concat();
        s.write_all(&socks6::request(0x01, &socks6::addr(echo.addr), 2, &opts))
            .unwrap();
        let _ = read_to_close(&mut s);
        // SOCKS 6, the slow path (RFC 1929 after the first reply).
        for pw in [alice_pw, wrong_pw] {
            let mut s = connect(b.addr);
            s.write_all(&socks6::request(
                0x01,
                &socks6::addr(echo.addr),
                1,
                &socks6::auth_method(0, &[0x02]),
            ))
            .unwrap();
            assert_eq!(socks6::read_auth_reply(&mut s), (0x01, 0x02));
            s.write_all(&userpass_msg(b"alice", pw.as_bytes())).unwrap();
            let _ = read_to_close(&mut s);
        }

        // A in front of B: one upstream passing the client's credentials
        // on, one with bob's password in its URL.
        let fixed_port = echo_server();
        let a_conf = format!(
            "[[rule]]\naction = \"pass\"\nport = [{fixed}]\nroute = \"fixed\"\n\
             [[rule]]\naction = \"pass\"\nroute = \"passed\"\n\
             [upstream.passed]\nurl = \"socks5h://{b}\"\npass_credentials = true\n\
             [upstream.fixed]\nurl = \"socks5h://bob:{bob_pw}@{b}\"\n",
            fixed = fixed_port.port(),
            b = b.addr,
        );
        let a = start_config(&dir, "a.toml", &a_conf, &["-vvv", "--log-format", format]);
        let (mut s, r) = socks5_connect(a.addr, &v5_addr(echo.addr), Some(("alice", alice_pw)));
        assert_eq!(r.rep, 0x00, "through A as alice: {r:?}");
        echo_roundtrip(&mut s, b"passed on");
        drop(s);
        let rep = socks5_connect(a.addr, &v5_addr(echo.addr), Some(("alice", wrong_pw)))
            .1
            .rep;
        assert_ne!(rep, 0x00, "a wrong password passed on was accepted");
        let (mut s, r) = socks5_connect(a.addr, &v5_addr(fixed_port.addr), Some(("carol", "-")));
        assert_eq!(r.rep, 0x00, "through A with the URL's credentials: {r:?}");
        echo_roundtrip(&mut s, b"fixed");
        drop(s);

        b.wait_session_ends(10);
        a.wait_session_ends(3);
        assert!(
            b.log_text().contains("alice") && a.log_text().contains("alice"),
            "the logs were captured"
        );
        assert_clean(&b.log_text(), &format!("B's {format} log"));
        assert_clean(&a.log_text(), &format!("A's {format} log"));

        let out = run_tool(
            std::process::Command::new(BIN)
                .args(["check", "-vvv", "--config"])
                .arg(dir.join("a.toml")),
            Duration::from_secs(30),
        );
        let all = format!("{}{}", out.stdout_text(), out.stderr);
        assert!(all.contains("fixed"), "check names the upstream: {all}");
        assert_clean(&all, "`sixsocks check`");
    }
}

// ---------------------------------------------------------------------------
// Blocking DNS in the BIND path
// ---------------------------------------------------------------------------

/// Blocking DNS inside async code (a BIND path calling `ToSocketAddrs`,
/// which parks a runtime worker for the whole lookup). In the namespace a
/// DNS server that never answers makes every lookup hang for 5 s. More
/// BINDs naming such hosts than there are cores, and meanwhile a CONNECT
/// and a BIND by address are served, while the named BINDs are still
/// unanswered; they do fail in the end.
#[test]
fn bind_naming_a_host_whose_lookup_hangs_stalls_no_one_netns() {
    if !in_netns_with(
        "bind_naming_a_host_whose_lookup_hangs_stalls_no_one_netns",
        "options timeout:5 attempts:1",
    ) {
        return;
    }
    let _silent_dns = UdpSocket::bind("127.0.0.1:53").unwrap();
    let echo = echo_server();
    let server = Server::start(&["--resolve-timeout", "30"]);
    let mut pending = Vec::new();
    for i in 0..16 {
        let mut s = connect(server.addr);
        socks5_handshake(&mut s, None);
        let name = format!("bind-slow-{i}.invalid");
        s.write_all(&v5_request(0x02, &v5_domain(name.as_bytes(), 0)))
            .unwrap();
        pending.push(s);
    }
    // A CONNECT by address...
    let mut s = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut s, b"not blocked by a BIND's lookup");
    // ...and a BIND by address, with its inbound connection.
    let (mut b, first) = socks5_bind(server.addr, &v5_addr("127.0.0.1:0".parse().unwrap()));
    assert_eq!(first.rep, 0x00, "BIND by address: {first:?}");
    let bound = SocketAddr::new(first.ip().unwrap(), first.port);
    let _inbound = TcpStream::connect_timeout(&bound, IO_TIMEOUT).unwrap();
    assert_eq!(read_v5_reply(&mut b).rep, 0x00, "BIND second reply");
    // The named BINDs were all still waiting for their lookups.
    for (i, p) in pending.iter().enumerate() {
        p.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let r = (&*p).read(&mut byte);
        assert!(
            matches!(&r, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "BIND {i} was answered ({r:?}) before the sessions by address were served: \
             its lookup blocked the server"
        );
        p.set_nonblocking(false).unwrap();
    }
    for mut p in pending {
        let r = read_v5_reply(&mut p);
        assert_ne!(r.rep, 0x00, "a BIND whose lookup timed out: {r:?}");
    }
}

// ---------------------------------------------------------------------------
// Dante CVE-2024-54662: rules by name but not by address, or not at every stage
// ---------------------------------------------------------------------------

/// Dante CVE-2024-54662 (rules checked by name but not by the address the
/// name resolves to): a BIND naming its expected host by a name that
/// resolves to a blocked address must be blocked as the address is. The
/// rules' promise (server/src/rules.rs): "A name cannot be used to reach a
/// blocked address".
#[test]
fn bind_naming_a_blocked_host_by_name_is_blocked() {
    let dir = TempDir::new("known-bugs-bind-name");
    let server = start_config(
        &dir,
        "sixsocks.toml",
        "[[rule]]\naction = \"block\"\nto = [\"127.0.0.0/8\", \"::1\"]\n\
         [[rule]]\naction = \"pass\"\n",
        &[],
    );
    // By address: blocked.
    let (_s, first) = socks5_bind(server.addr, &v5_addr("127.0.0.1:0".parse().unwrap()));
    assert_eq!(first.rep, 0x02, "BIND naming 127.0.0.1");
    let mut s = connect(server.addr);
    let addr = socks6::addr("127.0.0.1:0".parse().unwrap());
    s.write_all(&socks6::request(0x02, &addr, 0, &[])).unwrap();
    assert_eq!(socks6::read_auth_reply(&mut s), (0x00, 0x00));
    assert_eq!(
        socks6::read_operation_reply(&mut s),
        0x02,
        "SOCKS 6 BIND naming 127.0.0.1"
    );
    // By a name that resolves to it: blocked too, in SOCKS5 and SOCKS 6.
    let mut failures = Vec::new();
    let mut s = connect(server.addr);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0x02, &v5_domain(b"localhost", 0)))
        .unwrap();
    let r = read_v5_reply(&mut s);
    if r.rep != 0x02 {
        failures.push(format!("SOCKS5 BIND naming localhost: {r:?}"));
    }
    let mut s = connect(server.addr);
    let name = [&[0u8, 0, 0x03, 9][..], b"localhost"].concat();
    s.write_all(&socks6::request(0x02, &name, 0, &[])).unwrap();
    assert_eq!(socks6::read_auth_reply(&mut s), (0x00, 0x00));
    let rep = socks6::read_operation_reply(&mut s);
    if rep != 0x02 {
        failures.push(format!("SOCKS 6 BIND naming localhost: REP {rep:02x}"));
    }
    assert!(
        failures.is_empty(),
        "a BIND naming a host that resolves to a blocked address passed: {failures:?}"
    );
}

/// Dante CVE-2024-54662 (rules checked at one stage and not the next): a
/// rule about an authenticated user must hold at every later stage that
/// decides, not only where the user first became known: after a name is
/// resolved, for each UDP datagram, in SOCKS 6 as in SOCKS5, for BIND. And
/// a user name nobody verified (SOCKS4 USERID, or SOCKS5 credentials on a
/// server without a users file) must never satisfy a rule about a user.
#[test]
fn user_rules_hold_at_every_stage_after_authentication() {
    let dir = TempDir::new("known-bugs-stages");
    let users = dir.join("users");
    passwd(&users, "alice", "alice-pw");
    passwd(&users, "bob", "bob-pw");
    let blocked = echo_server();
    let open = echo_server();
    let ublocked = udp_echo();
    let uopen = udp_echo();
    let server = start_config(
        &dir,
        "sixsocks.toml",
        &format!(
            "users_file = \"{}\"\n\
             [[rule]]\naction = \"block\"\nuser = [\"bob\"]\nto = [\"127.0.0.0/8\", \"::1\"]\nport = [{}, {}]\n\
             [[rule]]\naction = \"pass\"\n",
            users.display(),
            blocked.port(),
            ublocked.addr.port()
        ),
        &[],
    );
    let bob = Some(("bob", "bob-pw"));
    let alice = Some(("alice", "alice-pw"));

    // CONNECT: by address (decided with the request) and by name
    // (decided after the lookup, when the user must still be known).
    for (who, creds, want) in [("bob", bob, 0x02), ("alice", alice, 0x00)] {
        for addr in [
            v5_addr(blocked.addr),
            v5_domain(b"localhost", blocked.port()),
        ] {
            let (_, r) = socks5_connect(server.addr, &addr, creds);
            assert_eq!(r.rep, want, "{who} CONNECT {addr:02x?}: {r:?}");
        }
    }
    let (mut s, r) = socks5_connect(server.addr, &v5_domain(b"localhost", open.port()), bob);
    assert_eq!(r.rep, 0x00, "bob to a port no rule blocks: {r:?}");
    echo_roundtrip(&mut s, b"bob is not blocked everywhere");
    drop(s);

    // SOCKS 6 with 0-RTT credentials.
    let (_, rep) = socks6::connect_as(server.addr, blocked.addr, "bob", "bob-pw");
    assert_eq!(rep, 0x02, "bob over SOCKS 6");
    let (mut s, rep) = socks6::connect_as(server.addr, blocked.addr, "alice", "alice-pw");
    assert_eq!(rep, 0x00, "alice over SOCKS 6");
    echo_roundtrip(&mut s, b"alice over socks 6");
    drop(s);

    // BIND naming the blocked host and port.
    for (who, creds, want) in [("bob", bob, 0x02), ("alice", alice, 0x00)] {
        let mut s = connect(server.addr);
        socks5_handshake(&mut s, creds);
        s.write_all(&v5_request(0x02, &v5_addr(blocked.addr)))
            .unwrap();
        assert_eq!(read_v5_reply(&mut s).rep, want, "{who} BIND");
    }

    // UDP: the association passes (its destinations are not known yet);
    // each of bob's datagrams is checked with bob's rules, by address and
    // by name; alice's go through.
    for (who, creds) in [("bob", bob), ("alice", alice)] {
        let client = udpcommon::udp_client();
        let mut ctl = connect(server.addr);
        socks5_handshake(&mut ctl, creds);
        ctl.write_all(&v5_request(0x03, &v5_addr(client.local_addr().unwrap())))
            .unwrap();
        let r = read_v5_reply(&mut ctl);
        assert_eq!(r.rep, 0x00, "{who} UDP ASSOCIATE: {r:?}");
        let relay = SocketAddr::new(r.ip().unwrap(), r.port);
        let tag = |t: &str| format!("{who}-{t}").into_bytes();
        for _ in 0..2 {
            client
                .send_to(&dgram(0, &v5_addr(ublocked.addr), &tag("addr")), relay)
                .unwrap();
            client
                .send_to(
                    &dgram(
                        0,
                        &v5_domain(b"localhost", ublocked.addr.port()),
                        &tag("name"),
                    ),
                    relay,
                )
                .unwrap();
            client
                .send_to(&dgram(0, &v5_addr(uopen.addr), &tag("open")), relay)
                .unwrap();
        }
        let mut got = Vec::new();
        while let Some(d) = something_arrives(&client, Duration::from_secs(2)) {
            got.push(udpcommon::parse_relayed(&d).data);
        }
        let opens = got.iter().filter(|d| **d == tag("open")).count();
        assert_eq!(opens, 2, "{who}: datagrams to the open port came back");
        if who == "bob" {
            assert_eq!(
                got.len(),
                2,
                "bob's datagrams to the blocked port came back"
            );
            assert!(
                !ublocked.saw_prefix(b"bob-"),
                "a datagram of bob's reached the blocked port"
            );
        } else {
            // (By name, `localhost` may be tried as ::1, where nothing
            // listens: only the datagrams by address are counted.)
            let by_addr = got.iter().filter(|d| **d == tag("addr")).count();
            assert_eq!(by_addr, 2, "alice's datagrams to that port are allowed");
        }
        drop(ctl);
    }
    drop(server);

    // Names nobody verified are not users: without a users file, a rule
    // that passes only alice passes no one.
    let server = start_config(
        &dir,
        "unverified.toml",
        "[[rule]]\naction = \"pass\"\nuser = [\"alice\"]\n",
        &[],
    );
    let mut s = connect(server.addr);
    s.write_all(&v4_request(
        0x01,
        Ipv4Addr::LOCALHOST,
        open.port(),
        b"alice",
        None,
    ))
    .unwrap();
    assert_eq!(read_v4_reply(&mut s)[1], 0x5B, "SOCKS4 USERID alice");
    let (_, r) = socks5_connect(
        server.addr,
        &v5_addr(open.addr),
        Some(("alice", "anything")),
    );
    assert_eq!(r.rep, 0x02, "unverified SOCKS5 credentials of alice: {r:?}");
}

//! Bad and hostile UDP input against the real binary, on loopback: headers
//! that do not parse, datagrams at and over the size limits, a flood of
//! fragments with distinct sequences (memory stays bounded), out-of-order
//! and timed-out fragments, and the relay socket's end the moment the TCP
//! connection ends. After each, the proxy still relays a normal datagram
//! and serves a new TCP client.
//!
//! (In-order reassembly, bad RSV / truncated junk and a second sender are
//! in `bind_udp.rs`; this file adds what that one does not cover.)

mod common;
mod udpcommon;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use udpcommon::*;

/// The largest UDP payload over IPv4.
const MAX_PAYLOAD: usize = 65_507;

/// The `session end` line of the (first) udp-associate session that ended.
fn udp_session_end(server: &Server) -> String {
    let ok = server.logs.wait(IO_TIMEOUT, |lines| {
        lines
            .iter()
            .any(|l| l.contains("session end") && l.contains("command=udp-associate"))
    });
    assert!(ok, "no udp-associate session end:\n{}", server.log_text());
    server
        .logs
        .lines()
        .into_iter()
        .find(|l| l.contains("session end") && l.contains("command=udp-associate"))
        .unwrap()
}

/// The `dropped N` count of a udp-associate session-end line.
fn dropped_count(line: &str) -> u64 {
    let i = line
        .find("dropped ")
        .unwrap_or_else(|| panic!("no `dropped N` in {line}"));
    line[i + 8..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("bad `dropped N` in {line}"))
}

/// A normal datagram still makes the round trip.
fn assert_round_trip(client: &UdpSocket, relay: SocketAddr, echo: SocketAddr, tag: &[u8]) {
    client
        .send_to(&dgram(0, &v5_addr(echo), tag), relay)
        .unwrap();
    // Skip anything older still queued (e.g. answers to earlier datagrams).
    let deadline = Instant::now() + UDP_TIMEOUT;
    loop {
        let r = recv_relayed(client);
        if r.data == tag {
            assert_eq!(r.from, echo);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{:?} did not come back",
            String::from_utf8_lossy(tag)
        );
    }
}

/// [`assert_round_trip`], sending again (up to 5 times, 1 s apart) while
/// nothing comes back: after a flood the relay's socket buffer may still be
/// full and drop the first try.
fn round_trip_with_retries(client: &UdpSocket, relay: SocketAddr, echo: SocketAddr, tag: &[u8]) {
    for _ in 0..5 {
        client
            .send_to(&dgram(0, &v5_addr(echo), tag), relay)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(d) = something_arrives(client, Duration::from_millis(200)) {
            let r = udpcommon::parse_relayed(&d);
            if r.data == tag {
                assert_eq!(r.from, echo);
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
    panic!("{:?} never came back", String::from_utf8_lossy(tag));
}

#[test]
fn malformed_headers_are_dropped_and_counted() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let target = v5_addr(uecho.addr);
    assert_round_trip(&client, relay, uecho.addr, b"first");

    let mut junk: Vec<(&str, Vec<u8>)> = vec![
        ("RSV 0001", {
            let mut d = dgram(0, &target, b"bad-rsv");
            d[1] = 1;
            d
        }),
        ("RSV 0100", {
            let mut d = dgram(0, &target, b"bad-rsv");
            d[0] = 1;
            d
        }),
        ("empty datagram", vec![]),
        ("RSV only", vec![0, 0]),
        ("no ATYP", vec![0, 0, 0]),
        ("IPv4 address cut short", vec![0, 0, 0, 0x01, 127, 0, 0]),
        (
            "IPv4 without its port",
            vec![0, 0, 0, 0x01, 127, 0, 0, 1, 0],
        ),
        (
            "IPv6 address cut short",
            vec![0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0],
        ),
        ("domain without its length", vec![0, 0, 0, 0x03]),
        ("domain cut short", vec![0, 0, 0, 0x03, 9, b'l', b'o', b'c']),
        ("domain of length 0", {
            let mut d = vec![0, 0, 0, 0x03, 0];
            d.extend_from_slice(&uecho.addr.port().to_be_bytes());
            d.extend_from_slice(b"empty-name");
            d
        }),
        ("domain with a NUL", {
            let mut d = vec![0, 0, 0, 0x03, 4, b'a', 0, b'b', b'c'];
            d.extend_from_slice(&uecho.addr.port().to_be_bytes());
            d.extend_from_slice(b"nul-name");
            d
        }),
        (
            "FRAG 80 (last, no position)",
            dgram(0x80, &target, b"frag-80"),
        ),
    ];
    for atyp in [0x00u8, 0x02, 0x05, 0x7F, 0xFF] {
        let mut d = vec![0, 0, 0, atyp, 127, 0, 0, 1];
        d.extend_from_slice(&uecho.addr.port().to_be_bytes());
        d.extend_from_slice(b"unknown-atyp");
        junk.push(("unknown ATYP", d));
    }
    for (what, d) in &junk {
        client
            .send_to(d, relay)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    assert_round_trip(&client, relay, uecho.addr, b"after the junk");
    // Nothing of the junk reached the echo server, nothing came back for it.
    let received = uecho.received();
    assert_eq!(
        received,
        vec![b"first".to_vec(), b"after the junk".to_vec()],
        "the echo server got junk"
    );
    assert!(
        something_arrives(&client, Duration::from_millis(200)).is_none(),
        "an answer to junk"
    );

    drop(ctl);
    let line = udp_session_end(&server);
    assert_eq!(
        dropped_count(&line),
        junk.len() as u64,
        "every bad datagram is counted: {line}"
    );
    server.assert_healthy(echo.addr, baseline, "malformed UDP headers");
}

#[test]
fn datagrams_at_and_over_the_size_limits() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let target = v5_addr(uecho.addr);
    let body = |n: usize, seed: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
    };

    // 1. 65,507 payload bytes cannot travel in one IPv4 datagram with a
    //    header, so they go in 3 fragments; the proxy reassembles them and
    //    sends 65,507 bytes to the echo server (the IPv4 maximum). The echo
    //    answers 65,507 bytes, which with the 10-byte header no longer fit
    //    an IPv4 datagram to the client: the proxy must drop and count it.
    let max = body(MAX_PAYLOAD, 1);
    for (i, piece) in max.chunks(30_000).enumerate() {
        let frag = (i as u8 + 1) | if i == 2 { 0x80 } else { 0 };
        client.send_to(&dgram(frag, &target, piece), relay).unwrap();
    }
    let deadline = Instant::now() + UDP_TIMEOUT;
    while !uecho.received().iter().any(|d| d.len() == MAX_PAYLOAD) {
        assert!(
            Instant::now() < deadline,
            "the reassembled 65,507-byte datagram never reached the echo server (got {:?})",
            uecho.received().iter().map(Vec::len).collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        uecho.received().contains(&max),
        "the 65,507 bytes arrived intact"
    );
    assert_round_trip(&client, relay, uecho.addr, b"after 65507");

    // 2. A sequence one byte over the limit is dropped whole.
    let over = body(MAX_PAYLOAD + 1, 2);
    for (i, piece) in over.chunks(30_000).enumerate() {
        let frag = (i as u8 + 1) | if i == 2 { 0x80 } else { 0 };
        client.send_to(&dgram(frag, &target, piece), relay).unwrap();
    }
    assert_round_trip(&client, relay, uecho.addr, b"after 65508");
    assert!(
        !uecho.received().iter().any(|d| d.len() > MAX_PAYLOAD),
        "a reassembled datagram over 65,507 bytes was sent"
    );
    drop(ctl);
    let line = udp_session_end(&server);
    // The answer that cannot reach the client, and the oversized sequence.
    assert!(dropped_count(&line) >= 2, "drops are counted: {line}");
    server.assert_healthy(echo.addr, baseline, "datagrams at the size limits");

    // 3. A whole datagram of 65,507 payload bytes: over IPv6 it fits with
    //    its header (IPv6 allows 65,527), and the proxy relays it to the
    //    IPv4 echo server and back (65,507 + 10 header bytes fit too).
    if !have_ipv6() {
        eprintln!("!!! WARNING: no IPv6 loopback: the whole 65,507-byte datagram is not tried");
        return;
    }
    let server6 = Server::start(&["--listen", "[::1]:0"]);
    let client6 = bind_udp(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0));
    let (_ctl6, relay6) = associate(server6.addr, client6.local_addr().unwrap());
    let whole = body(MAX_PAYLOAD, 3);
    client6
        .send_to(&dgram(0, &target, &whole), relay6)
        .expect("a 65,517-byte datagram over IPv6");
    let r = recv_relayed(&client6);
    assert_eq!(r.from, uecho.addr);
    assert!(
        r.data == whole,
        "65,507 bytes came back ({} bytes)",
        r.data.len()
    );
}

#[test]
fn smaller_max_datagram_drops_and_counts() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&["--max-datagram", "1000"]);
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let target = v5_addr(uecho.addr);
    client
        .send_to(&dgram(0, &target, &[7u8; 1001]), relay)
        .unwrap();
    // Fragments adding up to 1001 bytes too.
    client
        .send_to(&dgram(0x01, &target, &[8u8; 600]), relay)
        .unwrap();
    client
        .send_to(&dgram(0x82, &target, &[8u8; 401]), relay)
        .unwrap();
    client
        .send_to(&dgram(0, &target, &[9u8; 1000]), relay)
        .unwrap();
    let r = recv_relayed(&client);
    assert_eq!(r.data, vec![9u8; 1000], "1000 bytes pass");
    assert_eq!(
        uecho.received().iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1000],
        "only the datagram within the limit was relayed"
    );
    drop(ctl);
    let line = udp_session_end(&server);
    assert_eq!(dropped_count(&line), 2, "{line}");
    server.assert_serves(echo.addr, None);
}

#[test]
fn fragment_flood_keeps_memory_bounded() {
    const FRAGMENTS: usize = 100_000;
    const ASSOCIATIONS: usize = 4;
    const PIECE: usize = 1_200;
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let clients: Vec<UdpSocket> = (0..ASSOCIATIONS).map(|_| udp_client()).collect();
    let assocs: Vec<_> = clients
        .iter()
        .map(|c| associate(server.addr, c.local_addr().unwrap()))
        .collect();
    for (c, (_, relay)) in clients.iter().zip(&assocs) {
        assert_round_trip(c, *relay, uecho.addr, b"warm-up");
    }
    let rss_before = vm_rss_kib(server.pid());

    // Distinct sequences. First half: a new destination (127.x.y.z, every
    // port) for nearly every fragment, at positions 1 and 2 (new queues,
    // evictions, out-of-order drops). Second half: runs of positions
    // 1..=126 for one destination at a time, which grow a queue until the
    // size cap drops it. Never a last fragment, so nothing is sent on.
    let piece = vec![0xA5u8; PIECE];
    let half = FRAGMENTS / 2;
    let start = Instant::now();
    let mut peak = rss_before;
    for i in 0..FRAGMENTS {
        let (dest, pos) = if i < half {
            let dest = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    127,
                    1 + (i >> 16) as u8,
                    (i >> 8) as u8,
                    i as u8,
                )),
                (i % 65_000) as u16 + 1,
            );
            (dest, 1 + (i % 3 == 2) as u8)
        } else {
            let j = (i - half) / 126;
            let dest = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 9, (j >> 8) as u8, j as u8)),
                9,
            );
            (dest, ((i - half) % 126) as u8 + 1)
        };
        // Whole runs go to one association.
        let k = if i < half { i } else { (i - half) / 126 } % ASSOCIATIONS;
        // Under the flood a datagram may be lost or a send may fail
        // transiently; that is fine.
        let _ = clients[k].send_to(&dgram(pos, &v5_addr(dest), &piece), assocs[k].1);
        if i % 500 == 499 {
            // Let the relay keep up a little, and watch the memory.
            thread::sleep(Duration::from_millis(1));
            peak = peak.max(vm_rss_kib(server.pid()));
        }
    }
    let elapsed = start.elapsed();
    // Everything sent has been handled once a datagram behind it comes back
    // (sent again if the relay's socket buffer was still full).
    for (c, (_, relay)) in clients.iter().zip(&assocs) {
        round_trip_with_retries(c, *relay, uecho.addr, b"after the flood");
    }
    let rss_after = vm_rss_kib(server.pid());
    peak = peak.max(rss_after);
    eprintln!(
        "fragment flood: {FRAGMENTS} fragments of {PIECE} bytes over {ASSOCIATIONS} associations \
         in {:.2} s; server VmRSS {rss_before} KiB before, peak {peak} KiB, {rss_after} KiB after",
        elapsed.as_secs_f64()
    );
    assert!(
        peak < rss_before + 64 * 1024,
        "server memory grew by more than 64 MiB under the fragment flood: \
         {rss_before} KiB -> peak {peak} KiB"
    );
    assert!(
        uecho
            .received()
            .iter()
            .all(|d| d == b"warm-up" || d == b"after the flood"),
        "a fragment of the flood was sent on"
    );
    assert!(server.is_running(), "the server died under the flood");
    server.assert_serves(echo.addr, None);
    drop(assocs);
    // The baseline CONNECT, the associations, the CONNECT just above.
    let ends = server.wait_session_ends(1 + ASSOCIATIONS + 1);
    let dropped: u64 = server
        .logs
        .lines()
        .iter()
        .filter(|l| l.contains("session end") && l.contains("command=udp-associate"))
        .map(|l| dropped_count(l))
        .sum();
    eprintln!(
        "fragment flood: the relay dropped and counted {dropped} fragments ({} sessions)",
        ends.len()
    );
    assert!(
        dropped > 0,
        "the flood's out-of-order and oversized fragments are counted"
    );
    server.assert_healthy(echo.addr, baseline, "the fragment flood");
}

#[test]
fn out_of_order_fragments_abandon_their_sequence() {
    let echo = echo_server();
    let uecho = udp_echo();
    let uecho2 = udp_echo();
    let server = Server::start(&[]);
    let client = udp_client();
    let (_ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let t1 = v5_addr(uecho.addr);
    let t2 = v5_addr(uecho2.addr);
    let send = |frag: u8, t: &[u8], data: &[u8]| {
        client.send_to(&dgram(frag, t, data), relay).unwrap();
    };

    // Starting in the middle: 2, then 3 marked last: nothing.
    send(0x02, &t1, b"A2");
    send(0x83, &t1, b"A3");
    // A gap: 1, 3 (last): dropped.
    send(0x01, &t1, b"B1");
    send(0x83, &t1, b"B3");
    // A lower FRAG abandons the sequence (RFC 1928 §7): 1, 2, 3, then 2,
    // then the last one (4) completes nothing.
    send(0x01, &t1, b"C1");
    send(0x02, &t1, b"C2");
    send(0x03, &t1, b"C3");
    send(0x02, &t1, b"C2 again");
    send(0x84, &t1, b"C4");
    // A position 1 in the middle restarts the sequence: only D's parts.
    send(0x01, &t1, b"X1 ");
    send(0x02, &t1, b"X2 ");
    send(0x01, &t1, b"D1 ");
    send(0x02, &t1, b"D2 ");
    send(0x83, &t1, b"D3");
    // Two destinations interleaved: one queue each, both complete.
    send(0x01, &t1, b"E1 ");
    send(0x01, &t2, b"F1 ");
    send(0x02, &t2, b"F2 ");
    send(0x82, &t1, b"E2");
    send(0x83, &t2, b"F3");
    assert_round_trip(&client, relay, uecho.addr, b"sentinel");

    assert_eq!(
        uecho.received(),
        vec![
            b"D1 D2 D3".to_vec(),
            b"E1 E2".to_vec(),
            b"sentinel".to_vec()
        ],
        "what reached the first destination"
    );
    // The second echo server records in a thread of its own, with no
    // sentinel of its own to wait for: give it a bounded moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while uecho2.received().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(uecho2.received(), vec![b"F1 F2 F3".to_vec()]);
    server.assert_serves(echo.addr, None);
}

#[test]
fn fragments_older_than_the_reassembly_timer_are_dropped() {
    let echo = echo_server();
    let uecho = udp_echo();
    // The minimum timer (5 s, RFC 1928) is the default.
    let server = Server::start(&["--udp-reassembly-timeout", "5"]);
    let client = udp_client();
    let (_ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let t = v5_addr(uecho.addr);
    // Within the timer the sequence completes...
    client.send_to(&dgram(0x01, &t, b"quick "), relay).unwrap();
    client.send_to(&dgram(0x82, &t, b"pair"), relay).unwrap();
    assert_eq!(recv_relayed(&client).data, b"quick pair");
    // ...but not once the timer has expired: the first fragment is gone,
    // and the second is out of order.
    client.send_to(&dgram(0x01, &t, b"slow "), relay).unwrap();
    // Make sure the first fragment was taken in before the wait starts.
    assert_round_trip(&client, relay, uecho.addr, b"marker");
    thread::sleep(Duration::from_millis(6_500));
    client.send_to(&dgram(0x82, &t, b"pair"), relay).unwrap();
    assert_round_trip(&client, relay, uecho.addr, b"sentinel");
    assert_eq!(
        uecho.received(),
        vec![
            b"quick pair".to_vec(),
            b"marker".to_vec(),
            b"sentinel".to_vec()
        ],
        "a sequence older than the timer must not complete"
    );
    server.assert_serves(echo.addr, None);
}

#[test]
fn relay_socket_closes_when_the_tcp_connection_ends() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let client = udp_client();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    assert_round_trip(&client, relay, uecho.addr, b"alive");
    let with_association = server.fd_count();
    assert!(
        with_association > baseline,
        "the association holds sockets ({with_association} fds, baseline {baseline})"
    );

    // A probe: a connected UDP socket learns of ICMP "port unreachable" as
    // ECONNREFUSED. While the association lives the relay port is open (the
    // probe, a stranger, is silently dropped: no refusal).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.connect(relay).unwrap();
    let refused = |wait: Duration| -> bool {
        probe.set_read_timeout(Some(wait)).unwrap();
        let _ = probe.send(&dgram(0, &v5_addr(uecho.addr), b"probe"));
        let mut b = [0u8; 64];
        matches!(probe.recv(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    };
    assert!(
        !refused(Duration::from_millis(300)),
        "the relay port is closed while the association lives"
    );

    drop(ctl);
    // Bounded poll: the port must be closed soon after the TCP close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = false;
    while Instant::now() < deadline {
        if refused(Duration::from_millis(100)) {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the relay port {relay} still accepts datagrams after the TCP connection closed"
    );
    assert!(
        !uecho.received().iter().any(|d| d == b"probe"),
        "a stranger's probe was relayed"
    );
    server.assert_healthy(echo.addr, baseline, "the end of a UDP association");
}

//! Datagrams waiting for name lookups are bounded in bytes (issue 11,
//! item 2). Before, each association could queue 32 names × 16 datagrams
//! × 64 KB while a slow resolver thought: 29 MiB per association, about
//! 30 GiB at the global cap. Now `udp_lookup_queue_bytes` caps one
//! association and `udp_lookup_queue_bytes_total` all of them; beyond,
//! datagrams are dropped and counted (`queue_full`).

mod common;
mod udpcommon;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use udpcommon::*;

/// Payload of each datagram (8 fit under the per-association cap below).
/// Small, so that a whole burst fits in the relay socket's receive buffer.
const PAYLOAD: usize = 2000;
const PER_ASSOCIATION: usize = 16_384;
const TOTAL: usize = 25_000;

/// `n` datagrams of [`PAYLOAD`] bytes to `name` through `relay`.
fn flood(client: &UdpSocket, relay: std::net::SocketAddr, name: &[u8], n: usize) {
    let payload = vec![0x5a; PAYLOAD];
    for _ in 0..n {
        client
            .send_to(&dgram(0, &v5_domain(name, 9), &payload), relay)
            .unwrap();
    }
}

/// The session line of the UDP association from `client_port`.
fn udp_line(server: &Server, client_port: u16) -> String {
    server
        .logs
        .lines()
        .into_iter()
        .find(|l| {
            l.contains("session end")
                && l.contains("command=udp-associate")
                && l.contains(&format!("target=127.0.0.1:{client_port} "))
        })
        .unwrap_or_else(|| panic!("no UDP session line:\n{}", server.log_text()))
}

#[test]
fn queued_bytes_are_capped_per_association_and_in_all_netns() {
    // A DNS server that never answers: every lookup hangs for 20 s, longer
    // than the test lasts, so what is sent stays queued.
    if !in_netns_with(
        "queued_bytes_are_capped_per_association_and_in_all_netns",
        "options timeout:20 attempts:1",
    ) {
        return;
    }
    let _silent_dns = UdpSocket::bind("127.0.0.1:53").unwrap();
    let server = Server::start(&[
        "--resolve-timeout",
        "30",
        "--udp-lookup-queue-bytes",
        &PER_ASSOCIATION.to_string(),
        "--udp-lookup-queue-bytes-total",
        &TOTAL.to_string(),
    ]);
    let uecho = udp_echo();

    // One association fills its own cap: 8 of 16 datagrams to one name
    // queue, the other 8 and all 16 to a second name are dropped.
    let a = udp_client();
    let (ctl_a, relay_a) = associate(server.addr, a.local_addr().unwrap());
    flood(&a, relay_a, b"slow-one.invalid", 16);
    flood(&a, relay_a, b"slow-two.invalid", 16);
    // Datagrams to addresses still flow meanwhile.
    a.send_to(&dgram(0, &v5_addr(uecho.addr), b"by address"), relay_a)
        .unwrap();
    assert_eq!(recv_relayed(&a).data, b"by address");

    // A second association meets the global cap: 16,000 bytes are held by
    // the first, so 4 of its datagrams fit under 25,000.
    let b = udp_client();
    let (ctl_b, relay_b) = associate(server.addr, b.local_addr().unwrap());
    flood(&b, relay_b, b"slow-three.invalid", 10);
    b.send_to(&dgram(0, &v5_addr(uecho.addr), b"by address"), relay_b)
        .unwrap();
    assert_eq!(recv_relayed(&b).data, b"by address");

    drop(ctl_a);
    drop(ctl_b);
    server.wait_session_ends(2);
    let line_a = udp_line(&server, a.local_addr().unwrap().port());
    assert!(line_a.contains("dropped 24 "), "{line_a}");
    assert!(
        line_a.contains("first: the association's bytes waiting for lookups are at their cap"),
        "{line_a}"
    );
    let line_b = udp_line(&server, b.local_addr().unwrap().port());
    assert!(line_b.contains("dropped 6 "), "{line_b}");
    assert!(
        line_b
            .contains("first: the bytes waiting for lookups in all associations are at their cap"),
        "{line_b}"
    );
    // Both associations gave their bytes back: a new one queues again.
    let c = udp_client();
    let (ctl_c, relay_c) = associate(server.addr, c.local_addr().unwrap());
    flood(&c, relay_c, b"slow-four.invalid", 8);
    c.send_to(&dgram(0, &v5_addr(uecho.addr), b"by address"), relay_c)
        .unwrap();
    assert_eq!(recv_relayed(&c).data, b"by address");
    drop(ctl_c);
    std::thread::sleep(Duration::from_millis(100));
    server.wait_session_ends(3);
    let line_c = udp_line(&server, c.local_addr().unwrap().port());
    assert!(line_c.trim_end().ends_with("dropped 0"), "{line_c}");
}

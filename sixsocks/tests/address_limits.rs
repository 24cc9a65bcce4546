//! One client address cannot lock everyone out (issue 11, item 5), against
//! the real binary: slow handshakes and connections from one address are
//! capped (`max_handshakes_per_address`, `max_clients_per_address`), and
//! its names that never resolve take only its own share of the resolver's
//! threads. The other client is 127.0.0.2.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A SOCKS5 CONNECT from `src` that must succeed and echo.
fn served_from(src: IpAddr, proxy: SocketAddr, target: &[u8]) {
    let mut s = connect_from(src, proxy);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0x01, target)).unwrap();
    let r = read_v5_reply(&mut s);
    assert_eq!(r.rep, 0x00, "{r:?}");
    echo_roundtrip(&mut s, b"still served");
}

/// Silent handshakes from one address past its cap are closed at accept,
/// and another address is served. On the old code 100 silent connections
/// from 127.0.0.1 took all 80 `max_clients` slots and 127.0.0.2 was closed.
#[test]
fn slow_handshakes_from_one_address_do_not_lock_others_out() {
    let echo = echo_server();
    let server = Server::start(&["--max-clients", "80", "--handshake-timeout", "60"]);
    let silent: Vec<_> = (0..100).map(|_| connect(server.addr)).collect();
    // The proxy logged (rate-limited) the per-address refusals.
    assert!(
        server.logs.wait(IO_TIMEOUT, |l| l
            .iter()
            .any(|l| l.contains("per-address limit reached")
                && l.contains("max_handshakes_per_address"))),
        "{}",
        server.log_text()
    );
    served_from(OTHER, server.addr, &v5_addr(echo.addr));
    drop(silent);
}

/// Connections from one address past `max_clients_per_address` are closed
/// at accept; another address is served.
#[test]
fn connections_from_one_address_are_capped() {
    let echo = echo_server();
    let server = Server::start(&["--max-clients-per-address", "5"]);
    let tunnels: Vec<_> = (0..5)
        .map(|_| socks5_tunnel(server.addr, echo.addr))
        .collect();
    let mut sixth = connect(server.addr);
    let _ = sixth.write_all(&[0x05, 0x01, 0x00]);
    let (got, end) = read_to_close(&mut sixth);
    assert!(got.is_empty(), "the sixth was answered: {got:02x?}");
    assert_ne!(end, End::Timeout, "the sixth was not closed");
    served_from(OTHER, server.addr, &v5_addr(echo.addr));
    drop(tunnels);
    // Places come back when sessions end.
    server.wait_session_ends(6);
    let mut again = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut again, b"a place again");
}

/// Names that never resolve, from one address, hold only its share of the
/// resolver's threads: `localhost` (from /etc/hosts) for another client
/// resolves at once. On the old code 70 hung names filled all 64 threads
/// for the DNS timeout (30 s), past this test's 15 s read timeout.
#[test]
fn hung_names_from_one_client_do_not_starve_others_netns() {
    if !in_netns_with(
        "hung_names_from_one_client_do_not_starve_others_netns",
        "options timeout:30 attempts:1",
    ) {
        return;
    }
    let _silent_dns = UdpSocket::bind("127.0.0.1:53").unwrap();
    let echo = echo_server();
    let server = Server::start(&["--resolve-timeout", "60"]);
    let hung: Vec<_> = (0..70)
        .map(|i| {
            let mut s = connect(server.addr);
            socks5_handshake(&mut s, None);
            let name = format!("hang-{i}.invalid");
            s.write_all(&v5_request(0x01, &v5_domain(name.as_bytes(), 80)))
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    served_from(OTHER, server.addr, &v5_domain(b"localhost", echo.port()));
    drop(hung);
}

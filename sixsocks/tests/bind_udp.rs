//! BIND (SOCKS4 and SOCKS5) and UDP ASSOCIATE against the real binary, on
//! loopback: two replies and a relay for BIND, the expected-host check, the
//! RFC 1928 datagram header both ways, fragment reassembly, dropping
//! datagrams from anyone but the client, and cleanup when the TCP
//! connection ends. `--allow-bind false` / `--allow-udp false` give 07.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

const UDP_TIMEOUT: Duration = Duration::from_secs(5);

fn sockaddr(ip: &[u8], port: u16) -> SocketAddr {
    let ip: IpAddr = match ip.len() {
        4 => Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).into(),
        16 => {
            let o: [u8; 16] = ip.try_into().unwrap();
            std::net::Ipv6Addr::from(o).into()
        }
        n => panic!("address of {n} bytes"),
    };
    SocketAddr::new(ip, port)
}

/// Connect to `to` from the source address `from_ip`.
fn connect_from(from_ip: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from_ip.into(), 0).into())?;
    s.connect_timeout(&to.into(), IO_TIMEOUT)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

#[test]
fn socks5_bind_two_replies_then_relay() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);

    let mut c = connect(server.addr);
    socks5_handshake(&mut c, None);
    // Expect 127.0.0.1 to connect; some data sent early must be kept.
    c.write_all(&v5_request(0x02, &v5_addr("127.0.0.1:0".parse().unwrap())))
        .unwrap();
    let first = read_v5_reply(&mut c);
    assert_eq!(first.rep, 0x00, "first BIND reply: {first:?}");
    let bound = sockaddr(&first.addr, first.port);
    assert!(
        bound.port() != 0 && !bound.ip().is_unspecified(),
        "BIND reports where it listens: {first:?}"
    );
    c.write_all(b"early from client").unwrap();

    let mut inbound = connect_from(Ipv4Addr::LOCALHOST, bound).unwrap();
    let second = read_v5_reply(&mut c);
    assert_eq!(second.rep, 0x00, "second BIND reply: {second:?}");
    assert_eq!(
        sockaddr(&second.addr, second.port),
        inbound.local_addr().unwrap(),
        "the second reply names the host that connected"
    );
    assert_eq!(read_n(&mut inbound, 17), b"early from client");
    inbound.write_all(b"hello from the inbound side").unwrap();
    assert_eq!(read_n(&mut c, 27), b"hello from the inbound side");
    c.write_all(b"and back").unwrap();
    assert_eq!(read_n(&mut inbound, 8), b"and back");
    // Half-close carries through.
    inbound.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, end) = read_to_close(&mut c);
    assert!(rest.is_empty() && end == End::Eof, "{rest:02x?} {end:?}");
    c.write_all(b"after EOF").unwrap();
    assert_eq!(read_n(&mut inbound, 9), b"after EOF");
    drop(c);
    drop(inbound);

    let ends = server.wait_session_ends(2);
    assert!(
        ends.iter()
            .any(|f| f.get("command").map(|s| s.as_str()) == Some("bind")),
        "a bind session is logged: {ends:?}"
    );
    server.assert_healthy(echo.addr, baseline, "BIND");
}

#[test]
fn bind_refuses_unexpected_hosts_and_socks4_bind_works() {
    let echo = echo_server();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);

    // SOCKS4 BIND expecting 127.0.0.2.
    let mut c = connect(server.addr);
    c.write_all(&v4_request(0x02, Ipv4Addr::new(127, 0, 0, 2), 0, b"", None))
        .unwrap();
    let first = read_v4_reply(&mut c);
    assert_eq!(
        &first[..2],
        &[0x00, 0x5A],
        "first SOCKS4 BIND reply {first:02x?}"
    );
    let port = u16::from_be_bytes([first[2], first[3]]);
    let ip = Ipv4Addr::new(first[4], first[5], first[6], first[7]);
    let ip = if ip.is_unspecified() {
        Ipv4Addr::LOCALHOST
    } else {
        ip
    };
    let bound = SocketAddr::new(ip.into(), port);

    // The wrong host is closed, and the BIND keeps waiting.
    let mut wrong = connect_from(Ipv4Addr::new(127, 0, 0, 3), bound).unwrap();
    let (got, end) = read_to_close(&mut wrong);
    assert!(
        got.is_empty() && end != End::Timeout,
        "an unexpected host must be closed: {got:02x?} {end:?}"
    );
    let mut right = connect_from(Ipv4Addr::new(127, 0, 0, 2), bound).unwrap();
    let second = read_v4_reply(&mut c);
    assert_eq!(
        &second[..2],
        &[0x00, 0x5A],
        "second SOCKS4 BIND reply {second:02x?}"
    );
    assert_eq!(
        &second[4..],
        &[127, 0, 0, 2],
        "the second reply names the peer"
    );
    right.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut c, 4), b"ping");
    c.write_all(b"pong").unwrap();
    assert_eq!(read_n(&mut right, 4), b"pong");
    drop((c, right, wrong));

    // A client that gives up while the BIND waits.
    let (c, first) = socks5_bind(server.addr, &v5_addr("127.0.0.1:0".parse().unwrap()));
    assert_eq!(first.rep, 0x00);
    drop(c);

    server.assert_healthy(echo.addr, baseline, "BIND with unexpected hosts");
}

#[test]
fn bind_and_udp_disabled_give_07() {
    let echo = echo_server();
    let server = Server::start(&["--allow-bind", "false", "--allow-udp", "false"]);
    for cmd in [0x02u8, 0x03] {
        let mut c = connect(server.addr);
        socks5_handshake(&mut c, None);
        c.write_all(&v5_request(cmd, &v5_addr("127.0.0.1:0".parse().unwrap())))
            .unwrap();
        let r = read_v5_reply(&mut c);
        assert_eq!(r.rep, 0x07, "CMD {cmd:02x} disabled: {r:?}");
        assert_closed_after(&mut c, &[], "after 07");
    }
    let mut c = connect(server.addr);
    c.write_all(&v4_request(0x02, Ipv4Addr::LOCALHOST, 0, b"", None))
        .unwrap();
    assert_eq!(
        read_v4_reply(&mut c)[..2],
        [0x00, 0x5B],
        "SOCKS4 BIND disabled"
    );
    server.assert_serves(echo.addr, None);
}

/// A UDP echo server that records what it received.
struct UdpEcho {
    addr: SocketAddr,
    got: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

fn udp_echo() -> UdpEcho {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let got = Arc::new(Mutex::new(VecDeque::new()));
    let g2 = got.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 70_000];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            g2.lock().unwrap().push_back(buf[..n].to_vec());
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    UdpEcho { addr, got }
}

/// `00 00 FRAG | ATYP ADDR PORT | DATA`.
fn udp_dgram(frag: u8, target: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, 0x00, frag];
    v.extend_from_slice(target);
    v.extend_from_slice(data);
    v
}

/// Open a UDP association; returns the TCP control connection and the relay address.
fn associate(server: &Server, client_hint: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut c = connect(server.addr);
    socks5_handshake(&mut c, None);
    c.write_all(&v5_request(0x03, &v5_addr(client_hint)))
        .unwrap();
    let r = read_v5_reply(&mut c);
    assert_eq!(r.rep, 0x00, "UDP ASSOCIATE: {r:?}");
    let mut relay = sockaddr(&r.addr, r.port);
    if relay.ip().is_unspecified() {
        relay.set_ip(server.addr.ip());
    }
    assert_ne!(relay.port(), 0, "UDP relay port: {r:?}");
    (c, relay)
}

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(UDP_TIMEOUT)).unwrap();
    s
}

/// Receive one datagram and split the RFC 1928 header off.
fn recv_reply(s: &UdpSocket) -> (u8, SocketAddr, Vec<u8>) {
    let mut buf = vec![0u8; 70_000];
    let (n, _) = s
        .recv_from(&mut buf)
        .expect("no datagram came back through the UDP relay");
    let d = &buf[..n];
    assert_eq!(
        &d[..2],
        &[0, 0],
        "RSV of a relayed datagram: {:02x?}",
        &d[..4]
    );
    let (addr, rest) = match d[3] {
        0x01 => (
            sockaddr(&d[4..8], u16::from_be_bytes([d[8], d[9]])),
            &d[10..],
        ),
        0x04 => (
            sockaddr(&d[4..20], u16::from_be_bytes([d[20], d[21]])),
            &d[22..],
        ),
        a => panic!("relayed datagram with ATYP {a:02x}"),
    };
    (d[2], addr, rest.to_vec())
}

#[test]
fn udp_associate_relays_both_ways() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);
    let a = udp_client();
    let (ctl, relay) = associate(&server, a.local_addr().unwrap());

    // IPv4 target.
    a.send_to(&udp_dgram(0, &v5_addr(uecho.addr), b"datagram one"), relay)
        .unwrap();
    let (frag, from, data) = recv_reply(&a);
    assert_eq!(
        (frag, from, data.as_slice()),
        (0, uecho.addr, &b"datagram one"[..])
    );

    // Domain target.
    a.send_to(
        &udp_dgram(0, &v5_domain(b"localhost", uecho.addr.port()), b"by name"),
        relay,
    )
    .unwrap();
    let (_, from, data) = recv_reply(&a);
    assert_eq!(data, b"by name");
    assert_eq!(from.port(), uecho.addr.port());

    // A fragment sequence (positions 1, 2, then 3 marked last) arrives whole.
    for (frag, part) in [
        (0x01u8, &b"frag-one "[..]),
        (0x02, b"frag-two "),
        (0x83, b"frag-end"),
    ] {
        a.send_to(&udp_dgram(frag, &v5_addr(uecho.addr), part), relay)
            .unwrap();
    }
    let (_, _, data) = recv_reply(&a);
    assert_eq!(data, b"frag-one frag-two frag-end", "reassembled datagram");

    // A bigger datagram.
    let big: Vec<u8> = (0..30_000u32).map(|i| (i % 249) as u8).collect();
    a.send_to(&udp_dgram(0, &v5_addr(uecho.addr), &big), relay)
        .unwrap();
    let (_, _, data) = recv_reply(&a);
    assert!(data == big, "30 kB datagram ({} bytes back)", data.len());

    drop(ctl);
    let ends = server.wait_session_ends(2);
    assert!(
        ends.iter()
            .any(|f| f.get("command").map(|s| s.as_str()) == Some("udp-associate")),
        "a udp-associate session is logged: {ends:?}"
    );
    // The association (and its sockets) end with the TCP connection.
    server.assert_healthy(echo.addr, baseline, "a UDP association");
}

#[test]
fn udp_association_is_not_repointed_to_another_sender() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let a = udp_client();
    let b = udp_client();
    // The client does not say where it will send from: the relay learns it
    // from the first datagram.
    let (_ctl, relay) = associate(&server, "0.0.0.0:0".parse().unwrap());
    a.send_to(&udp_dgram(0, &v5_addr(uecho.addr), b"first from A"), relay)
        .unwrap();
    assert_eq!(recv_reply(&a).2, b"first from A");
    // Another sender (same IP, other port): dropped, not answered, and the
    // association still answers A afterwards.
    b.send_to(&udp_dgram(0, &v5_addr(uecho.addr), b"intruder B"), relay)
        .unwrap();
    a.send_to(
        &udp_dgram(0, &v5_addr(uecho.addr), b"sentinel from A"),
        relay,
    )
    .unwrap();
    assert_eq!(recv_reply(&a).2, b"sentinel from A", "A is still served");
    assert!(
        !uecho.got.lock().unwrap().iter().any(|d| d == b"intruder B"),
        "a datagram from a second sender was relayed"
    );
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 100];
    assert!(
        b.recv_from(&mut buf).is_err(),
        "the second sender got an answer"
    );
    // Junk (bad RSV, truncated) is dropped without harm.
    a.send_to(&[0x01, 0x00, 0x00, 0x01, 127], relay).unwrap();
    a.send_to(&[0x00], relay).unwrap();
    a.send_to(&udp_dgram(0, &v5_addr(uecho.addr), b"still fine"), relay)
        .unwrap();
    assert_eq!(recv_reply(&a).2, b"still fine");
    server.assert_serves(echo.addr, None);
}

#[test]
fn udp_slow_name_does_not_stall_the_association_netns() {
    // In the namespace, a DNS server that never answers makes every lookup
    // hang for 20 s (longer than the 5 s this test waits for a datagram);
    // the association must keep relaying meanwhile.
    if !in_netns_with(
        "udp_slow_name_does_not_stall_the_association_netns",
        "options timeout:20 attempts:1",
    ) {
        return;
    }
    let _silent_dns = UdpSocket::bind("127.0.0.1:53").unwrap();
    let uecho = udp_echo();
    let server = Server::start(&["--resolve-timeout", "30"]);
    let a = udp_client();
    let (_ctl, relay) = associate(&server, a.local_addr().unwrap());
    // A datagram to a name whose lookup hangs...
    a.send_to(
        &udp_dgram(0, &v5_domain(b"slow.invalid", 9), b"to a slow name"),
        relay,
    )
    .unwrap();
    // ...does not hold up one to an address behind it.
    a.send_to(&udp_dgram(0, &v5_addr(uecho.addr), b"by address"), relay)
        .unwrap();
    let (_, from, data) = recv_reply(&a);
    assert_eq!((from, data.as_slice()), (uecho.addr, &b"by address"[..]));
    // The slow name's datagram never reached the echo server.
    assert!(
        !uecho
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|d| d == b"to a slow name"),
        "a datagram to an unresolvable name was relayed"
    );
}

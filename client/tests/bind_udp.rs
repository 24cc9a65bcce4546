//! `SocksListener` (BIND) and `SocksDatagram` (UDP ASSOCIATE) against the
//! real server (`sixsocks_server::Server`, in-process on 127.0.0.1:0), and
//! against small hand-written proxies for what the real server never does
//! (an unspecified bound address, fragments and strangers on the way back).

mod inproc;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sixsocks_client::{ClientError, Proxy, ReplyCode, SocksDatagram, SocksListener, TargetAddr};
use sixsocks_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use inproc::{bounded, udp_echo, udp_echo_dual, DEADLINE};

fn proxy(scheme: &str, addr: SocketAddr) -> Proxy {
    format!("{scheme}://{addr}")
        .parse::<Proxy>()
        .expect("proxy URL")
        .with_timeout(DEADLINE)
}

fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Whether this machine has a usable IPv6 loopback.
async fn have_ipv6() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).await.is_ok()
}

async fn recv(udp: &SocksDatagram) -> (Vec<u8>, TargetAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = bounded(udp.recv_from(&mut buf))
        .await
        .expect("recv_from through the relay");
    buf.truncate(n);
    (buf, from)
}

// ---------------------------------------------------------------------------
// BIND against the real server
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bind_every_scheme_reports_both_replies_and_relays() {
    let server = start_server(|_| {}).await;
    for scheme in ["socks4", "socks4a", "socks5", "socks5h"] {
        let p = proxy(scheme, server);
        let listener = bounded(SocksListener::bind(&p, ("127.0.0.1", 0)))
            .await
            .unwrap_or_else(|e| panic!("{scheme} BIND: {e}"));
        let at = listener
            .bind_addr()
            .socket_addr()
            .unwrap_or_else(|| panic!("{scheme}: bound to a name {}", listener.bind_addr()));
        assert_eq!(at.ip(), localhost(), "{scheme}: where the proxy listens");
        assert_ne!(at.port(), 0, "{scheme}: the port the proxy listens on");

        let mut inbound = bounded(TcpStream::connect(at)).await.unwrap();
        let (mut stream, peer) = bounded(listener.accept()).await.unwrap();
        assert_eq!(
            peer,
            TargetAddr::from(inbound.local_addr().unwrap()),
            "{scheme}: the second reply names the host that connected"
        );
        assert_eq!(stream.bound_addr(), &peer);
        inbound.write_all(b"from the peer").await.unwrap();
        let mut got = [0u8; 13];
        bounded(stream.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"from the peer", "{scheme}");
        stream.write_all(b"to the peer").await.unwrap();
        let mut got = [0u8; 11];
        bounded(inbound.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"to the peer", "{scheme}");
    }
}

#[tokio::test]
async fn bind_nobody_connecting_ends_in_a_failure_reply() {
    let server = start_server(|c| c.bind_timeout = 1).await;
    for (scheme, raw) in [("socks5", 0x06u8), ("socks4", 0x5B)] {
        let listener = bounded(SocksListener::bind(
            &proxy(scheme, server),
            ("127.0.0.1", 0),
        ))
        .await
        .unwrap();
        match bounded(listener.accept()).await {
            Err(e @ ClientError::Refused { .. }) => {
                assert_eq!(e.raw_reply_code(), Some(raw), "{scheme}: {e}")
            }
            Err(e) => panic!("{scheme}: expected a refusal, got {e:?}"),
            Ok((_, peer)) => panic!("{scheme}: accepted {peer} although nobody connected"),
        }
    }
}

#[tokio::test]
async fn bind_and_udp_switched_off_are_refused() {
    let server = start_server(|c| {
        c.allow_bind = false;
        c.allow_udp = false;
    })
    .await;
    for (scheme, raw) in [("socks5", 0x07u8), ("socks4", 0x5B)] {
        let e = bounded(SocksListener::bind(
            &proxy(scheme, server),
            ("127.0.0.1", 0),
        ))
        .await
        .expect_err("BIND is off");
        assert_eq!(e.raw_reply_code(), Some(raw), "{scheme} BIND: {e}");
    }
    let e = bounded(SocksDatagram::associate(&proxy("socks5", server), None))
        .await
        .expect_err("UDP is off");
    assert_eq!(e.reply_code(), Some(ReplyCode::CommandNotSupported), "{e}");
}

// ---------------------------------------------------------------------------
// BIND against a hand-written SOCKS4 proxy that answers 0.0.0.0
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bind_unspecified_address_means_the_proxy_and_bytes_after_the_second_reply_are_kept() {
    let fake = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut c, _) = fake.accept().await.unwrap();
        // 04 02 PORT IP USERID 00 (no user id: 9 bytes).
        let mut req = [0u8; 9];
        c.read_exact(&mut req).await.unwrap();
        assert_eq!(&req[..2], &[0x04, 0x02], "a SOCKS4 BIND request");
        assert_eq!(&req[4..8], &[127, 0, 0, 1], "the expected peer");
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mut first = vec![0x00, 0x5A];
        first.extend_from_slice(&port.to_be_bytes());
        first.extend_from_slice(&[0, 0, 0, 0]);
        c.write_all(&first).await.unwrap();
        let (mut inbound, peer) = l.accept().await.unwrap();
        // The second reply and the peer's first bytes in one write.
        let mut second = vec![0x00, 0x5A];
        second.extend_from_slice(&peer.port().to_be_bytes());
        second.extend_from_slice(&[127, 0, 0, 1]);
        second.extend_from_slice(b"banner");
        c.write_all(&second).await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        inbound.write_all(&got).await.unwrap();
    });
    let listener = bounded(SocksListener::bind(
        &proxy("socks4", fake_addr),
        ("127.0.0.1", 0),
    ))
    .await
    .unwrap();
    let at = listener.bind_addr().socket_addr().unwrap();
    assert_eq!(
        at.ip(),
        localhost(),
        "0.0.0.0 in the reply is the proxy's IP"
    );
    let mut inbound = bounded(TcpStream::connect(at)).await.unwrap();
    let (mut s, peer) = bounded(listener.accept()).await.unwrap();
    assert_eq!(peer, TargetAddr::from(inbound.local_addr().unwrap()));
    let mut got = [0u8; 6];
    bounded(s.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"banner", "bytes right behind the second reply");
    s.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    bounded(inbound.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"ping");
    bounded(task).await.unwrap();
}

#[tokio::test]
async fn bind_proxy_closing_before_the_second_reply_is_an_error() {
    let fake = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut c, _) = fake.accept().await.unwrap();
        let mut req = [0u8; 9];
        c.read_exact(&mut req).await.unwrap();
        // The first reply and half of the second, then close.
        c.write_all(&[0x00, 0x5A, 0x10, 0x00, 127, 0, 0, 1, 0x00, 0x5A, 0x10])
            .await
            .unwrap();
    });
    let listener = bounded(SocksListener::bind(
        &proxy("socks4", fake_addr),
        ("127.0.0.1", 0),
    ))
    .await
    .unwrap();
    assert_eq!(
        listener.bind_addr(),
        &TargetAddr::ip(localhost(), 0x1000),
        "the first reply"
    );
    match bounded(listener.accept()).await {
        Err(ClientError::ProxyClosed) => {}
        other => panic!("expected ProxyClosed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// UDP ASSOCIATE against the real server
// ---------------------------------------------------------------------------

#[tokio::test]
async fn udp_round_trips_addresses_names_fragments_and_big_datagrams() {
    let server = start_server(|_| {}).await;
    let echo = udp_echo(localhost()).await;
    let udp = bounded(SocksDatagram::associate(&proxy("socks5h", server), None))
        .await
        .unwrap();
    assert_eq!(
        udp.relay_addr().ip(),
        localhost(),
        "relay {}",
        udp.relay_addr()
    );
    assert_eq!(udp.local_addr().unwrap().ip(), localhost());

    // An IPv4 target; the source in the header is the echo server.
    assert_eq!(udp.send_to(b"hello", echo).await.unwrap(), 5);
    assert_eq!(recv(&udp).await, (b"hello".to_vec(), echo.into()));

    // A name the proxy resolves (socks5h).
    let dual = udp_echo_dual().await;
    udp.send_to(b"by name", ("localhost", dual.port()))
        .await
        .unwrap();
    let (data, from) = recv(&udp).await;
    assert_eq!(data, b"by name");
    assert_eq!(from.port, dual.port());

    // 1000 bytes in 10 fragments of 100: the proxy reassembles them and
    // the echo server gets (and returns) one datagram.
    udp.set_fragment_size(Some(100)).unwrap();
    assert_eq!(udp.fragment_size(), Some(100));
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    udp.send_to(&payload, echo).await.unwrap();
    assert_eq!(recv(&udp).await, (payload, echo.into()));
    // Small payloads still go whole.
    udp.send_to(b"small", echo).await.unwrap();
    assert_eq!(recv(&udp).await.0, b"small");
    // More than 127 fragments cannot be expressed.
    let e = udp.send_to(&[0u8; 128 * 100 + 1], echo).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(udp.set_fragment_size(Some(0)).is_err());
    udp.set_fragment_size(None).unwrap();

    // A big datagram, whole.
    let big: Vec<u8> = (0..30_000u32).map(|i| (i % 249) as u8).collect();
    udp.send_to(&big, echo).await.unwrap();
    assert_eq!(recv(&udp).await.0, big);

    // A small buffer truncates, as with any UDP socket.
    udp.send_to(b"0123456789", echo).await.unwrap();
    let mut four = [0u8; 4];
    let (n, _) = bounded(udp.recv_from(&mut four)).await.unwrap();
    assert_eq!((n, &four), (4, b"0123"));

    // An invalid name is refused before anything is sent.
    let e = udp.send_to(b"x", ("", 53)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn udp_shared_between_a_sending_and_a_receiving_task() {
    let server = start_server(|_| {}).await;
    let echo = udp_echo(localhost()).await;
    let udp = std::sync::Arc::new(
        bounded(SocksDatagram::associate(&proxy("socks5", server), None))
            .await
            .unwrap(),
    );
    let rx = udp.clone();
    let receiver = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while seen.len() < 50 {
            let (n, from) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, TargetAddr::from(echo));
            seen.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
        }
        seen
    });
    for i in 0..50u32 {
        udp.send_to(&i.to_be_bytes(), echo).await.unwrap();
        // Pace lightly: loopback does not drop, but the socket buffer is finite.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut seen = bounded(receiver).await.unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn udp_with_a_declared_local_address() {
    let server = start_server(|_| {}).await;
    let echo = udp_echo(localhost()).await;
    let udp = bounded(SocksDatagram::associate(
        &proxy("socks5", server),
        Some((Ipv4Addr::LOCALHOST, 0).into()),
    ))
    .await
    .unwrap();
    let local = udp.local_addr().unwrap();
    assert_eq!(local.ip(), localhost());
    assert_ne!(local.port(), 0);
    udp.send_to(b"declared", echo).await.unwrap();
    assert_eq!(recv(&udp).await.0, b"declared");
    // An IPv6 local socket cannot talk to an IPv4 relay.
    if have_ipv6().await {
        let e = bounded(SocksDatagram::associate(
            &proxy("socks5", server),
            Some((Ipv6Addr::LOCALHOST, 0).into()),
        ))
        .await
        .expect_err("IPv6 socket, IPv4 relay");
        assert!(matches!(e, ClientError::Unsupported(_)), "{e:?}");
    }
}

#[tokio::test]
async fn udp_over_ipv6() {
    if !have_ipv6().await {
        eprintln!("!!! WARNING: no IPv6 loopback here: udp_over_ipv6 checks nothing");
        return;
    }
    let server = start_server_on((Ipv6Addr::LOCALHOST, 0).into(), |_| {}).await;
    let echo6 = udp_echo(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
    let echo4 = udp_echo(localhost()).await;
    let udp = bounded(SocksDatagram::associate(&proxy("socks5", server), None))
        .await
        .unwrap();
    assert_eq!(udp.relay_addr().ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(udp.local_addr().unwrap().is_ipv6());
    udp.send_to(b"six", echo6).await.unwrap();
    assert_eq!(recv(&udp).await, (b"six".to_vec(), echo6.into()));
    udp.send_to(b"four", echo4).await.unwrap();
    assert_eq!(recv(&udp).await, (b"four".to_vec(), echo4.into()));
}

#[tokio::test]
async fn udp_needs_socks5() {
    let server = start_server(|_| {}).await;
    for scheme in ["socks4", "socks4a"] {
        let e = bounded(SocksDatagram::associate(&proxy(scheme, server), None))
            .await
            .expect_err(scheme);
        assert!(matches!(e, ClientError::Unsupported(_)), "{scheme}: {e:?}");
    }
}

#[tokio::test]
async fn udp_end_of_the_association_is_noticed() {
    // The proxy ends an idle association after 1 s and closes its TCP
    // connection: recv_from, then send_to, report it.
    let server = start_server(|c| c.udp_idle_timeout = 1).await;
    let echo = udp_echo(localhost()).await;
    let udp = bounded(SocksDatagram::associate(&proxy("socks5", server), None))
        .await
        .unwrap();
    udp.send_to(b"before", echo).await.unwrap();
    assert_eq!(recv(&udp).await.0, b"before");
    let mut buf = [0u8; 16];
    let e = bounded(udp.recv_from(&mut buf))
        .await
        .expect_err("the association ended");
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted, "{e}");
    assert!(udp.is_closed());
    let e = udp.send_to(b"after", echo).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted, "{e}");
}

// ---------------------------------------------------------------------------
// UDP against a hand-written SOCKS5 proxy: an unspecified relay address,
// strangers, junk and fragments on the way back
// ---------------------------------------------------------------------------

#[tokio::test]
async fn udp_client_filters_strangers_and_reassembles_fragments() {
    let fake = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let relay = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut c, _) = fake.accept().await.unwrap();
        let mut greeting = [0u8; 3];
        c.read_exact(&mut greeting).await.unwrap();
        assert_eq!(greeting, [0x05, 0x01, 0x00]);
        c.write_all(&[0x05, 0x00]).await.unwrap();
        let mut req = [0u8; 10];
        c.read_exact(&mut req).await.unwrap();
        assert_eq!(
            req,
            [0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
            "UDP ASSOCIATE declaring 0.0.0.0:0"
        );
        let mut reply = vec![0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0];
        reply.extend_from_slice(&relay_port.to_be_bytes());
        c.write_all(&reply).await.unwrap();
        let _ = close_rx.await;
        drop(c);
    });
    let udp = bounded(SocksDatagram::associate(&proxy("socks5", fake_addr), None))
        .await
        .unwrap();
    assert_eq!(
        udp.relay_addr(),
        SocketAddr::new(localhost(), relay_port),
        "0.0.0.0 in the reply is the proxy's IP"
    );

    let remote: SocketAddr = "192.0.2.9:4000".parse().unwrap();
    udp.send_to(b"go", remote).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, client) = bounded(relay.recv_from(&mut buf)).await.unwrap();
    let mut expected = vec![0, 0, 0, 0x01, 192, 0, 2, 9, 0x0F, 0xA0];
    expected.extend_from_slice(b"go");
    assert_eq!(&buf[..n], &expected[..], "header and payload as sent");

    let header = |frag: u8| -> Vec<u8> { vec![0, 0, frag, 0x01, 192, 0, 2, 9, 0x0F, 0xA0] };
    let with = |mut h: Vec<u8>, data: &[u8]| {
        h.extend_from_slice(data);
        h
    };
    // A stranger with a well-formed datagram: skipped.
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    stranger
        .send_to(&with(header(0), b"from a stranger"), client)
        .await
        .unwrap();
    // From the relay: junk (RSV not zero, truncated), then three fragments.
    relay
        .send_to(&with(vec![0, 1, 0, 1, 192, 0, 2, 9, 0, 1], b"x"), client)
        .await
        .unwrap();
    relay.send_to(&[0, 0, 0], client).await.unwrap();
    relay
        .send_to(&with(header(0x01), b"re"), client)
        .await
        .unwrap();
    relay
        .send_to(&with(header(0x02), b"assem"), client)
        .await
        .unwrap();
    relay
        .send_to(&with(header(0x83), b"bled"), client)
        .await
        .unwrap();
    relay
        .send_to(&with(header(0x00), b"standalone"), client)
        .await
        .unwrap();
    assert_eq!(recv(&udp).await, (b"reassembled".to_vec(), remote.into()));
    assert_eq!(recv(&udp).await, (b"standalone".to_vec(), remote.into()));

    // The proxy closes the TCP connection: the association is over.
    close_tx.send(()).unwrap();
    let e = bounded(udp.recv_from(&mut buf))
        .await
        .expect_err("closed association");
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted, "{e}");
    assert!(udp.send_to(b"late", remote).await.is_err());
}

#[tokio::test]
async fn udp_relay_named_by_a_domain_is_an_error() {
    let fake = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut c, _) = fake.accept().await.unwrap();
        let mut greeting = [0u8; 3];
        c.read_exact(&mut greeting).await.unwrap();
        c.write_all(&[0x05, 0x00]).await.unwrap();
        let mut req = [0u8; 10];
        c.read_exact(&mut req).await.unwrap();
        let mut reply = vec![0x05, 0x00, 0x00, 0x03, 5];
        reply.extend_from_slice(b"relay");
        reply.extend_from_slice(&[0x10, 0x00]);
        c.write_all(&reply).await.unwrap_or_default();
        let mut rest = [0u8; 1];
        let _ = c.read(&mut rest).await;
    });
    let e = bounded(SocksDatagram::associate(&proxy("socks5", fake_addr), None))
        .await
        .expect_err("a name as the relay");
    assert!(matches!(e, ClientError::UnexpectedReply(_)), "{e:?}");
}

/// Start the real server on `listen` with the configuration adjusted by `f`.
async fn start_server_on(listen: SocketAddr, f: impl FnOnce(&mut Config)) -> SocketAddr {
    inproc::serve(listen, None, f).await
}

async fn start_server(f: impl FnOnce(&mut Config)) -> SocketAddr {
    inproc::serve_local(None, f).await
}

//! SOCKS 6 (draft -05) BIND, BIND with a listen backlog, and UDP ASSOCIATE
//! through `SocksListener`, `SocksBacklog` and `SocksDatagram`, against the
//! real server (`sixsocks_server::Server`, in-process on 127.0.0.1:0), with
//! and without credentials.

mod inproc;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use sixsocks_client::{ClientError, Proxy, SocksDatagram, SocksListener, TargetAddr};
use sixsocks_proto::v6::Profile;
use sixsocks_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use inproc::{bounded, udp_echo, udp_echo_dual, Users, DEADLINE};

fn proxy(addr: SocketAddr, creds: Option<(&str, &str)>) -> Proxy {
    let auth = creds.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    format!("socks6://{auth}{addr}")
        .parse::<Proxy>()
        .expect("proxy URL")
        .with_timeout(DEADLINE)
}

/// The two setups every test runs in: an open proxy, and one with a users
/// file and the right credentials. The `Users` must outlive the server.
async fn setups() -> Vec<(&'static str, Proxy, Option<Users>)> {
    let open = start_server(None, |_| {}).await;
    let users = Users::new(&[("alice", "s3cret")]);
    let closed = start_server(Some(&users), |_| {}).await;
    vec![
        ("no credentials", proxy(open, None), None),
        (
            "credentials",
            proxy(closed, Some(("alice", "s3cret"))),
            Some(users),
        ),
    ]
}

/// Data both ways between a relayed stream and the host at the other end.
async fn exchange(
    what: &str,
    relayed: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    inbound: &mut TcpStream,
) {
    inbound.write_all(b"from the peer").await.unwrap();
    let mut got = [0u8; 13];
    bounded(relayed.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"from the peer", "{what}");
    relayed.write_all(b"to the peer").await.unwrap();
    let mut got = [0u8; 11];
    bounded(inbound.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"to the peer", "{what}");
}

// ---------------------------------------------------------------------------
// BIND
// ---------------------------------------------------------------------------

#[tokio::test]
async fn socks6_bind_reports_both_replies_and_relays() {
    for (what, p, _users) in setups().await {
        let listener = bounded(SocksListener::bind(&p, ("0.0.0.0", 0)))
            .await
            .unwrap_or_else(|e| panic!("{what}: BIND: {e}"));
        let at = listener
            .bind_addr()
            .socket_addr()
            .unwrap_or_else(|| panic!("{what}: bound to a name {}", listener.bind_addr()));
        assert_eq!(
            at.ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "{what}: where the proxy listens"
        );
        assert_ne!(at.port(), 0, "{what}: the port the proxy listens on");

        let mut inbound = bounded(TcpStream::connect(at)).await.unwrap();
        let (mut stream, peer) = bounded(listener.accept()).await.unwrap();
        assert_eq!(
            peer,
            TargetAddr::from(inbound.local_addr().unwrap()),
            "{what}: the second reply names the host that connected"
        );
        assert_eq!(stream.bound_addr(), &peer, "{what}");
        exchange(what, &mut stream, &mut inbound).await;
        // The peer closing ends the relay: the client sees EOF.
        drop(inbound);
        let mut rest = Vec::new();
        bounded(stream.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty(), "{what}: nothing after the exchange");
    }
}

#[tokio::test]
async fn socks6_bind_wrong_password_is_an_auth_failure() {
    let users = Users::new(&[("alice", "s3cret")]);
    let server = start_server(Some(&users), |_| {}).await;
    let e = bounded(SocksListener::bind(
        &proxy(server, Some(("alice", "wrong"))),
        ("0.0.0.0", 0),
    ))
    .await
    .unwrap_err();
    assert!(e.is_auth_failure(), "{e:?}");
}

#[tokio::test]
async fn socks6_bind_disabled_is_refused_with_a_socks6_code() {
    let server = start_server(None, |c| c.allow_bind = false).await;
    let e = bounded(SocksListener::bind(&proxy(server, None), ("0.0.0.0", 0)))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Socks6Refused { .. }), "{e:?}");
    assert_eq!(e.raw_reply_code(), Some(0x07), "command not supported");
}

#[tokio::test]
async fn socks6_bind_backlog_accepts_two_connections_through_two_binds() {
    for (what, p, _users) in setups().await {
        let backlog = bounded(SocksListener::bind_backlog(&p, ("0.0.0.0", 0), 4))
            .await
            .unwrap_or_else(|e| panic!("{what}: BIND with a backlog: {e}"));
        assert_eq!(backlog.backlog(), 4, "{what}: the backlog granted");
        let at = backlog.bind_addr().socket_addr().expect("an IP address");
        assert_eq!(at.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{what}");
        assert_ne!(at.port(), 0, "{what}");

        // Both peers connect before either BIND: the backlog queues them.
        let mut first = bounded(TcpStream::connect(at)).await.unwrap();
        let mut second = bounded(TcpStream::connect(at)).await.unwrap();
        let mut locals = vec![
            TargetAddr::from(first.local_addr().unwrap()),
            TargetAddr::from(second.local_addr().unwrap()),
        ];

        let (mut s1, peer1) = bounded(backlog.accept())
            .await
            .unwrap_or_else(|e| panic!("{what}: first accept: {e}"));
        let (mut s2, peer2) = bounded(backlog.accept())
            .await
            .unwrap_or_else(|e| panic!("{what}: second accept: {e}"));
        assert_ne!(peer1, peer2, "{what}: two different connections");
        // Which one the proxy took first is the kernel's business.
        for peer in [&peer1, &peer2] {
            let i = locals
                .iter()
                .position(|l| l == peer)
                .unwrap_or_else(|| panic!("{what}: {peer} is none of {locals:?}"));
            locals.remove(i);
        }
        if peer1 == TargetAddr::from(first.local_addr().unwrap()) {
            exchange(what, &mut s1, &mut first).await;
            exchange(what, &mut s2, &mut second).await;
        } else {
            exchange(what, &mut s1, &mut second).await;
            exchange(what, &mut s2, &mut first).await;
        }
        assert!(!backlog.is_closed(), "{what}: the listener still lives");
    }
}

#[tokio::test]
async fn socks6_bind_backlog_listener_ends_with_its_connection() {
    let server = start_server(None, |_| {}).await;
    let p = proxy(server, None);
    let backlog = bounded(SocksListener::bind_backlog(&p, ("0.0.0.0", 0), 2))
        .await
        .unwrap();
    let at = backlog.bind_addr().socket_addr().expect("an IP address");
    drop(backlog);
    // The proxy notices the close and stops listening: a connection is
    // refused, within a bounded number of tries.
    let mut refused = false;
    for _ in 0..100 {
        match bounded(TcpStream::connect(at)).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(refused, "the backlog listener outlived its BIND connection");
}

#[tokio::test]
async fn socks6_bind_backlog_below_two_is_refused_locally() {
    let p = proxy((Ipv4Addr::LOCALHOST, 9).into(), None);
    let e = SocksListener::bind_backlog(&p, ("0.0.0.0", 0), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unsupported(_)), "{e:?}");
    let s5: Proxy = "socks5://127.0.0.1:9".parse().unwrap();
    let e = SocksListener::bind_backlog(&s5, ("0.0.0.0", 0), 4)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unsupported(_)), "{e:?}");
}

// ---------------------------------------------------------------------------
// UDP ASSOCIATE
// ---------------------------------------------------------------------------

async fn recv(udp: &SocksDatagram) -> (Vec<u8>, TargetAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = bounded(udp.recv_from(&mut buf))
        .await
        .expect("recv_from through the relay");
    buf.truncate(n);
    (buf, from)
}

#[tokio::test]
async fn socks6_udp_echo_by_ip_and_by_name() {
    for (what, p, _users) in setups().await {
        let echo = udp_echo_dual().await;
        let udp = bounded(SocksDatagram::associate(&p, None))
            .await
            .unwrap_or_else(|e| panic!("{what}: UDP ASSOCIATE: {e}"));
        assert_eq!(
            udp.relay_addr().ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "{what}: the relay is where the proxy was reached"
        );

        // By IP address.
        let sent = bounded(udp.send_to(b"by ip", echo)).await.unwrap();
        assert_eq!(sent, 5);
        let (data, from) = recv(&udp).await;
        assert_eq!(data, b"by ip", "{what}");
        assert_eq!(from, TargetAddr::from(echo), "{what}: the echo's address");

        // By name: the proxy resolves it (socks6 sends names).
        bounded(udp.send_to(b"by name", ("localhost", echo.port())))
            .await
            .unwrap();
        let (data, from) = recv(&udp).await;
        assert_eq!(data, b"by name", "{what}");
        let from = from.socket_addr().expect("the source is an IP address");
        assert!(from.ip().is_loopback(), "{what}: {from}");
        assert_eq!(from.port(), echo.port(), "{what}");

        // An empty payload and a large one go through as they are.
        bounded(udp.send_to(b"", echo)).await.unwrap();
        let (data, _) = recv(&udp).await;
        assert!(data.is_empty(), "{what}: an empty datagram");
        let big: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
        bounded(udp.send_to(&big, echo)).await.unwrap();
        let (data, _) = recv(&udp).await;
        assert_eq!(data, big, "{what}: 8000 bytes");
    }
}

#[tokio::test]
async fn socks6_udp_with_a_local_bind_and_two_associations_apart() {
    let server = start_server(None, |_| {}).await;
    let p = proxy(server, None);
    let echo = udp_echo(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let a = bounded(SocksDatagram::associate(
        &p,
        Some((Ipv4Addr::LOCALHOST, 0).into()),
    ))
    .await
    .unwrap();
    let b = bounded(SocksDatagram::associate(&p, None)).await.unwrap();
    assert_ne!(a.relay_addr(), b.relay_addr(), "one relay per association");
    assert_eq!(a.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
    bounded(a.send_to(b"for a", echo)).await.unwrap();
    bounded(b.send_to(b"for b", echo)).await.unwrap();
    assert_eq!(recv(&a).await.0, b"for a");
    assert_eq!(recv(&b).await.0, b"for b");
}

#[tokio::test]
async fn socks6_udp_has_no_fragmentation() {
    let server = start_server(None, |_| {}).await;
    let udp = bounded(SocksDatagram::associate(&proxy(server, None), None))
        .await
        .unwrap();
    let e = udp.set_fragment_size(Some(100)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    udp.set_fragment_size(None).unwrap();
}

#[tokio::test]
async fn socks6_udp_wrong_password_is_an_auth_failure() {
    let users = Users::new(&[("alice", "s3cret")]);
    let server = start_server(Some(&users), |_| {}).await;
    let e = bounded(SocksDatagram::associate(
        &proxy(server, Some(("alice", "nope"))),
        None,
    ))
    .await
    .unwrap_err();
    assert!(e.is_auth_failure(), "{e:?}");
}

#[tokio::test]
async fn socks6_udp_disabled_is_refused_with_a_socks6_code() {
    let server = start_server(None, |c| c.allow_udp = false).await;
    let e = bounded(SocksDatagram::associate(&proxy(server, None), None))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Socks6Refused { .. }), "{e:?}");
    assert_eq!(e.raw_reply_code(), Some(0x07), "command not supported");
}

#[tokio::test]
async fn socks6_udp_datagrams_not_from_the_relay_are_skipped() {
    // A datagram sent straight to our socket (not by the relay) is not
    // returned; the next relayed one is. (Datagrams naming another
    // association are covered by the unit test in client/src/udp.rs.)
    let server = start_server(None, |_| {}).await;
    let udp = bounded(SocksDatagram::associate(&proxy(server, None), None))
        .await
        .unwrap();
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    stranger
        .send_to(b"not relayed", udp.local_addr().unwrap())
        .await
        .unwrap();
    let echo = udp_echo(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    bounded(udp.send_to(b"relayed", echo)).await.unwrap();
    let (data, from) = recv(&udp).await;
    assert_eq!(data, b"relayed");
    assert_eq!(from, TargetAddr::from(echo));
}

/// Start the real server on 127.0.0.1:0, optionally with a users file.
async fn start_server(users: Option<&Users>, f: impl FnOnce(&mut Config)) -> SocketAddr {
    inproc::serve_local(users, f).await
}

#[tokio::test]
async fn socks6_udp_profile_travels_with_the_association() {
    let server = start_server(None, |_| {}).await;
    let echo = udp_echo(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    // socks6://: the URL's profile (-11 by default), datagrams in -11's
    // message framing.
    let udp = bounded(SocksDatagram::associate(&proxy(server, None), None))
        .await
        .unwrap();
    assert_eq!(udp.profile(), Some(Profile::Draft11));
    bounded(udp.send_to(b"in -11", echo)).await.unwrap();
    assert_eq!(recv(&udp).await.0, b"in -11");
    // The reference dialect's (pre -09) framing.
    let udp = bounded(SocksDatagram::associate_socks6(
        &proxy(server, None),
        None,
        Profile::Ref207,
    ))
    .await
    .unwrap();
    assert_eq!(udp.profile(), Some(Profile::Ref207));
    bounded(udp.send_to(b"in ref-207", echo)).await.unwrap();
    assert_eq!(recv(&udp).await.0, b"in ref-207");
    // Chosen, whatever the URL's scheme (the server speaks both on one port).
    let p: Proxy = format!("socks5h://{server}").parse().unwrap();
    let p = p.with_timeout(DEADLINE);
    let udp = bounded(SocksDatagram::associate_socks6(&p, None, Profile::Draft05))
        .await
        .unwrap();
    assert_eq!(udp.profile(), Some(Profile::Draft05));
    bounded(udp.send_to(b"in -05", echo)).await.unwrap();
    assert_eq!(recv(&udp).await.0, b"in -05");
    // SOCKS5 has no profile.
    let udp = bounded(SocksDatagram::associate(&p, None)).await.unwrap();
    assert_eq!(udp.profile(), None);
}

//! The client against a fake SOCKS server (proto's ServerHandshake) on loopback.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sixsocks_client::{
    connect, connect_with_data, handshake, resolve, resolve_ptr, ClientError, Command, Host, Proxy,
    ReplyCode, Scheme, SocksStream, Stage, TargetAddr, Version,
};
use sixsocks_proto::server::HandshakeConfig;
use sixsocks_proto::Credentials;
use support::{bounded, closed_port, echo_server, start, start_on, FakeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn proxy(scheme: &str, addr: SocketAddr) -> Proxy {
    format!("{scheme}://{addr}").parse().expect("proxy URL")
}

/// Write `msg` and read the echo back through the stream.
async fn echo_round_trip<S>(s: &mut SocksStream<S>, msg: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    bounded(s.write_all(msg)).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    bounded(s.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, msg);
}

fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

#[tokio::test]
async fn socks4_resolves_locally_and_relays() {
    let echo = echo_server().await;
    let mut srv = start(FakeConfig::default()).await;
    let p = proxy("socks4", srv.addr);
    let mut s = bounded(connect(&p, ("localhost", echo.port())))
        .await
        .unwrap();
    let seen = srv.next_request().await;
    assert_eq!(seen.request.version, Version::V4);
    assert_eq!(seen.request.command, Command::CONNECT);
    assert_eq!(
        seen.request.target,
        TargetAddr::ip(localhost(), echo.port())
    );
    assert_eq!(seen.request.credentials, Credentials::None);
    // The fake server reports the outbound socket's local address as bound.
    assert_eq!(
        s.bound_addr().host,
        Host::Ip(localhost()),
        "bound {}",
        s.bound_addr()
    );
    assert_ne!(s.bound_addr().port, 0);
    echo_round_trip(&mut s, b"hello over socks4").await;
}

#[tokio::test]
async fn socks4_sends_the_userid() {
    let echo = echo_server().await;
    let mut srv = start(FakeConfig::default()).await;
    let p: Proxy = format!("socks4://bob%20smith@{}", srv.addr)
        .parse()
        .unwrap();
    let mut s = bounded(connect(&p, echo)).await.unwrap();
    let seen = srv.next_request().await;
    assert_eq!(
        seen.request.credentials,
        Credentials::UserId(b"bob smith".to_vec())
    );
    echo_round_trip(&mut s, b"x").await;
}

#[tokio::test]
async fn socks4a_sends_the_name() {
    let echo = echo_server().await;
    let mut srv = start(FakeConfig::default()).await;
    let p = proxy("socks4a", srv.addr);
    let mut s = bounded(connect(&p, ("localhost", echo.port())))
        .await
        .unwrap();
    let seen = srv.next_request().await;
    assert_eq!(seen.request.version, Version::V4a);
    assert_eq!(
        seen.request.target,
        TargetAddr::domain("localhost", echo.port())
    );
    echo_round_trip(&mut s, b"hello over socks4a").await;
}

#[tokio::test]
async fn socks5_resolves_locally() {
    let echo = echo_server().await;
    let mut srv = start(FakeConfig::default()).await;
    let p = proxy("socks5", srv.addr);
    // "localhost" may resolve to ::1 first; the echo server is on 127.0.0.1,
    // so give the address and check the name path with socks5h below and in
    // socks5_local_resolution_sends_an_address.
    let mut s = bounded(connect(&p, echo)).await.unwrap();
    let seen = srv.next_request().await;
    assert_eq!(seen.request.version, Version::V5);
    assert_eq!(seen.request.target, TargetAddr::from(echo));
    echo_round_trip(&mut s, b"hello over socks5").await;
}

#[tokio::test]
async fn socks5_local_resolution_sends_an_address() {
    let mut srv = start(FakeConfig {
        refuse: Some(ReplyCode::NotAllowed),
        ..Default::default()
    })
    .await;
    let p = proxy("socks5", srv.addr);
    let err = bounded(connect(&p, ("localhost", 9))).await.unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::NotAllowed));
    let seen = srv.next_request().await;
    match seen.request.target.host {
        Host::Ip(ip) => assert!(ip.is_loopback(), "{ip}"),
        Host::Domain(d) => panic!("socks5:// sent the name {d:?} to the proxy"),
    }
}

#[tokio::test]
async fn socks5h_sends_the_name() {
    let echo = echo_server().await;
    let mut srv = start(FakeConfig::default()).await;
    let p = proxy("socks5h", srv.addr);
    let mut s = bounded(connect(&p, ("localhost", echo.port())))
        .await
        .unwrap();
    let seen = srv.next_request().await;
    assert_eq!(
        seen.request.target,
        TargetAddr::domain("localhost", echo.port())
    );
    echo_round_trip(&mut s, b"hello over socks5h").await;
}

fn auth_config() -> FakeConfig {
    FakeConfig {
        handshake: HandshakeConfig {
            require_auth: true,
            lenient_auth: false,
        },
        users: vec![(b"al:ice@".to_vec(), b"p@ss:w%rd".to_vec())],
        ..Default::default()
    }
}

#[tokio::test]
async fn socks5_with_credentials() {
    let echo = echo_server().await;
    let mut srv = start(auth_config()).await;
    // Percent-encoded ':' '@' '%' in both fields.
    let p: Proxy = format!("socks5h://al%3Aice%40:p%40ss%3Aw%25rd@{}", srv.addr)
        .parse()
        .unwrap();
    let mut s = bounded(connect(&p, echo)).await.unwrap();
    let seen = srv.next_request().await;
    assert_eq!(seen.request.credentials.user(), Some(&b"al:ice@"[..]));
    echo_round_trip(&mut s, b"authenticated").await;
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let srv = start(auth_config()).await;
    let p = proxy("socks5h", srv.addr).with_auth("al:ice@", "wrong");
    let err = bounded(connect(&p, ("localhost", 1))).await.unwrap_err();
    assert!(matches!(err, ClientError::AuthFailed), "{err:?}");
    assert!(err.is_auth_failure());
}

#[tokio::test]
async fn missing_credentials_is_no_acceptable_method() {
    let srv = start(auth_config()).await;
    let p = proxy("socks5h", srv.addr);
    let err = bounded(connect(&p, ("localhost", 1))).await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoAcceptableMethod { .. }),
        "{err:?}"
    );
    assert!(err.is_auth_failure());
}

#[tokio::test]
async fn socks5_refusal_code_is_surfaced() {
    let port = closed_port().await;
    let srv = start(FakeConfig::default()).await;
    let p = proxy("socks5", srv.addr);
    let err = bounded(connect(&p, (localhost(), port))).await.unwrap_err();
    match &err {
        ClientError::Refused { version, code, raw } => {
            assert_eq!(*version, Version::V5);
            assert_eq!(*code, ReplyCode::ConnectionRefused);
            assert_eq!(*raw, 0x05);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(err.to_string().contains("connection refused (05)"), "{err}");
}

#[tokio::test]
async fn socks4_refusal_code_is_surfaced() {
    let port = closed_port().await;
    let srv = start(FakeConfig::default()).await;
    let p = proxy("socks4", srv.addr);
    let err = bounded(connect(&p, (localhost(), port))).await.unwrap_err();
    assert_eq!(err.raw_reply_code(), Some(0x5B));
    assert_eq!(err.reply_code(), Some(ReplyCode::GeneralFailure));
    assert!(err.to_string().contains("(5b)"), "{err}");
}

#[tokio::test]
async fn extended_refusal_code_keeps_its_raw_value() {
    let srv = start(FakeConfig {
        refuse: Some(ReplyCode::ONION_INVALID_ADDRESS),
        extended: true,
        ..Default::default()
    })
    .await;
    let p = proxy("socks5h", srv.addr);
    let err = bounded(connect(&p, ("nowhere.onion", 80)))
        .await
        .unwrap_err();
    assert_eq!(err.raw_reply_code(), Some(0xF6));
    assert_eq!(err.reply_code(), Some(ReplyCode::TorExtended(0xF6)));
    assert!(
        err.to_string()
            .contains("onion service invalid address (f6)"),
        "{err}"
    );
}

#[tokio::test]
async fn bytes_behind_the_reply_reach_the_application() {
    let echo = echo_server().await;
    let banner = b"220 target speaks first\r\n".to_vec();
    for scheme in ["socks4", "socks4a", "socks5", "socks5h"] {
        let srv = start(FakeConfig {
            banner: banner.clone(),
            ..Default::default()
        })
        .await;
        let p = proxy(scheme, srv.addr);
        let mut s = bounded(connect(&p, echo)).await.unwrap();
        let mut got = vec![0u8; banner.len()];
        bounded(s.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, banner, "{scheme}");
        echo_round_trip(&mut s, b"after the banner").await;
    }
}

#[tokio::test]
async fn replies_dribbled_one_byte_at_a_time() {
    let echo = echo_server().await;
    let mut cfg = auth_config();
    cfg.dribble = true;
    cfg.banner = b"BANNER".to_vec();
    let srv = start(cfg).await;
    let p = proxy("socks5h", srv.addr).with_auth("al:ice@", "p@ss:w%rd");
    let mut s = bounded(connect(&p, ("localhost", echo.port())))
        .await
        .unwrap();
    let mut got = [0u8; 6];
    bounded(s.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"BANNER");
    echo_round_trip(&mut s, b"dribble").await;

    let mut cfg = FakeConfig {
        dribble: true,
        ..Default::default()
    };
    cfg.banner = b"B4".to_vec();
    let srv = start(cfg).await;
    let mut s = bounded(connect(
        &proxy("socks4a", srv.addr),
        ("localhost", echo.port()),
    ))
    .await
    .unwrap();
    let mut got = [0u8; 2];
    bounded(s.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"B4");
}

#[tokio::test]
async fn optimistic_data_is_relayed() {
    let echo = echo_server().await;
    for (scheme, auth) in [
        ("socks4", false),
        ("socks4a", false),
        ("socks5", false),
        ("socks5h", false),
        ("socks5h", true),
    ] {
        let (mut srv, p) = if auth {
            let srv = start(auth_config()).await;
            let p = proxy(scheme, srv.addr).with_auth("al:ice@", "p@ss:w%rd");
            (srv, p)
        } else {
            let srv = start(FakeConfig::default()).await;
            let p = proxy(scheme, srv.addr);
            (srv, p)
        };
        let data = b"GET / HTTP/1.0\r\n\r\n";
        let mut s = bounded(connect_with_data(&p, echo, data)).await.unwrap();
        let seen = srv.next_request().await;
        assert_eq!(seen.request.command, Command::CONNECT, "{scheme}");
        let mut back = vec![0u8; data.len()];
        bounded(s.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, data, "{scheme} auth={auth}");
        echo_round_trip(&mut s, b"and more").await;
    }
}

/// SOCKS5 without auth: greeting, request and data must all be sent before
/// the client reads anything. The "proxy" here reads all of them before it
/// writes a single byte; a client that waited for the method choice would
/// stall (and the test would fail at its deadline).
#[tokio::test]
async fn socks5_no_auth_pipelines_greeting_request_and_data() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let p = proxy("socks5h", listener.local_addr().unwrap());
    let data = b"early bytes";
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut expected = vec![5, 1, 0];
        expected.extend_from_slice(&[5, 1, 0, 3, 9]);
        expected.extend_from_slice(b"localhost");
        expected.extend_from_slice(&80u16.to_be_bytes());
        expected.extend_from_slice(data);
        let mut got = vec![0u8; expected.len()];
        bounded(sock.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, expected);
        // Choice, then a success reply with the bound address 10.1.2.3:4567.
        let mut reply = vec![5, 0, 5, 0, 0, 1, 10, 1, 2, 3];
        reply.extend_from_slice(&4567u16.to_be_bytes());
        sock.write_all(&reply).await.unwrap();
        sock
    });
    let s = bounded(connect_with_data(&p, ("localhost", 80), data))
        .await
        .unwrap();
    assert_eq!(
        *s.bound_addr(),
        TargetAddr::ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 4567)
    );
    assert!(s.leftover().is_empty());
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn socks4a_optimistic_data_arrives_with_the_request() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let p = proxy("socks4a", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut expected = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
        expected.extend_from_slice(b"example.org\0");
        expected.extend_from_slice(b"data!");
        let mut got = vec![0u8; expected.len()];
        bounded(sock.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, expected);
        sock.write_all(&[0, 0x5A, 0, 0, 0, 0, 0, 0]).await.unwrap();
        sock
    });
    bounded(connect_with_data(&p, ("example.org", 80), b"data!"))
        .await
        .unwrap();
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn resolve_through_socks5_and_socks4a() {
    for scheme in ["socks5", "socks5h", "socks4a"] {
        let mut srv = start(FakeConfig::default()).await;
        let p = proxy(scheme, srv.addr);
        let ip = bounded(resolve(&p, "localhost")).await.unwrap();
        assert_eq!(ip, localhost(), "{scheme}");
        let seen = srv.next_request().await;
        assert_eq!(seen.request.command, Command::RESOLVE);
        // The name goes to the proxy even with socks5:// (that is the point).
        assert_eq!(seen.request.target.host, Host::Domain("localhost".into()));

        let err = bounded(resolve(&p, "no.such.name.invalid"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Refused { .. }),
            "{scheme}: {err:?}"
        );
    }
}

#[tokio::test]
async fn resolve_is_unsupported_over_socks4() {
    let p = proxy("socks4", SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
    let err = bounded(resolve(&p, "localhost")).await.unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn resolve_ptr_through_socks5() {
    let mut srv = start(FakeConfig::default()).await;
    let p = proxy("socks5h", srv.addr);
    let name = bounded(resolve_ptr(&p, localhost())).await.unwrap();
    assert_eq!(name, "localhost");
    let seen = srv.next_request().await;
    assert_eq!(seen.request.command, Command::RESOLVE_PTR);
    assert_eq!(seen.request.target, TargetAddr::ip(localhost(), 0));

    let err = bounded(resolve_ptr(&p, IpAddr::V4(Ipv4Addr::new(127, 9, 9, 9))))
        .await
        .unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::HostUnreachable));

    let p4 = proxy("socks4a", srv.addr);
    let err = bounded(resolve_ptr(&p4, localhost())).await.unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn silent_proxy_times_out() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let p =
        proxy("socks5h", listener.local_addr().unwrap()).with_timeout(Duration::from_millis(200));
    // Accept and hold the connection without answering.
    let holder = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(support::TEST_DEADLINE).await;
        drop(sock);
    });
    let err = bounded(connect(&p, ("localhost", 80))).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    match err {
        ClientError::Timeout { stage, timeout } => {
            assert_eq!(stage, Stage::Handshake);
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    holder.abort();
}

#[tokio::test]
async fn unreachable_proxy_is_a_connect_error() {
    let port = closed_port().await;
    let p = proxy("socks5", SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let err = bounded(connect(&p, (localhost(), 80))).await.unwrap_err();
    assert!(matches!(err, ClientError::ProxyConnect { .. }), "{err:?}");
}

#[tokio::test]
async fn proxy_closing_mid_handshake_is_reported() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let p = proxy("socks5h", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut greeting = [0u8; 3];
        bounded(sock.read_exact(&mut greeting)).await.unwrap();
        // Half a method choice, then close.
        sock.write_all(&[5]).await.unwrap();
    });
    let err = bounded(connect(&p, ("localhost", 80))).await.unwrap_err();
    assert!(matches!(err, ClientError::ProxyClosed), "{err:?}");
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn garbage_reply_is_a_protocol_error() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let p = proxy("socks5h", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut greeting = [0u8; 3];
        bounded(sock.read_exact(&mut greeting)).await.unwrap();
        sock.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
    });
    let err = bounded(connect(&p, ("localhost", 80))).await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn overlong_name_is_refused_not_resolved_locally() {
    // curl CVE-2023-38545: a name over 255 bytes must not be sent, nor
    // quietly resolved by the client instead.
    let srv = start(FakeConfig::default()).await;
    let p = proxy("socks5h", srv.addr);
    let long = format!("{}.example", "a".repeat(300));
    let err = bounded(connect(&p, (long.as_str(), 80))).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidTarget(_)), "{err:?}");
}

#[tokio::test]
async fn ipv6_target_over_socks4_is_unsupported() {
    let srv = start(FakeConfig::default()).await;
    let p = proxy("socks4a", srv.addr);
    let err = bounded(connect(&p, (Ipv6Addr::LOCALHOST, 80)))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn ipv4_mapped_target_over_socks4_is_sent_as_ipv4() {
    let echo = echo_server().await;
    let mut srv = start(FakeConfig::default()).await;
    let p = proxy("socks4", srv.addr);
    let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    let mut s = bounded(connect(&p, (mapped, echo.port()))).await.unwrap();
    let seen = srv.next_request().await;
    assert_eq!(seen.request.target, TargetAddr::from(echo));
    echo_round_trip(&mut s, b"mapped").await;
}

#[tokio::test]
async fn proxy_given_by_name() {
    // "localhost" may resolve to ::1 first, where nothing listens: the
    // client must go on to 127.0.0.1.
    let echo = echo_server().await;
    let srv = start(FakeConfig::default()).await;
    let p: Proxy = format!("socks5h://localhost:{}", srv.addr.port())
        .parse()
        .unwrap();
    assert_eq!(p.host, Host::Domain("localhost".into()));
    let mut s = bounded(connect(&p, echo)).await.unwrap();
    echo_round_trip(&mut s, b"by name").await;
}

#[tokio::test]
async fn proxy_on_ipv6_loopback() {
    let srv = match start_on("[::1]:0".parse().unwrap(), FakeConfig::default()).await {
        Ok(s) => s,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("cannot bind [::1]:0 in CI: {e}");
            }
            eprintln!("WARNING: skipping proxy_on_ipv6_loopback: cannot bind [::1]:0: {e}");
            return;
        }
    };
    let echo = echo_server().await;
    let p: Proxy = format!("socks5://[::1]:{}", srv.addr.port())
        .parse()
        .unwrap();
    assert_eq!(p.host, Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    let mut s = bounded(connect(&p, echo)).await.unwrap();
    echo_round_trip(&mut s, b"via ::1").await;
}

/// The handshake on an in-memory stream whose buffer holds one byte: every
/// read returns a single byte, and the bytes behind the reply are kept.
#[tokio::test]
async fn handshake_over_one_byte_pipe_keeps_leftover() {
    let (client_side, mut server_side) = tokio::io::duplex(1);
    let p = Proxy::new(Scheme::Socks5h, Host::Ip(localhost()), 1).with_auth("u", "p");
    let server = tokio::spawn(async move {
        let mut greeting = [0u8; 3];
        bounded(server_side.read_exact(&mut greeting))
            .await
            .unwrap();
        assert_eq!(greeting, [5, 1, 2]);
        bounded(server_side.write_all(&[5, 2])).await.unwrap();
        let mut auth = [0u8; 5];
        bounded(server_side.read_exact(&mut auth)).await.unwrap();
        assert_eq!(auth, [1, 1, b'u', 1, b'p']);
        bounded(server_side.write_all(&[1, 0])).await.unwrap();
        let mut req = [0u8; 7 + 7];
        bounded(server_side.read_exact(&mut req)).await.unwrap();
        assert_eq!(&req[..5], &[5, 1, 0, 3, 7]);
        // Reply with an IPv6 bound address, then application bytes.
        let mut reply = vec![5, 0, 0, 4];
        reply.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        reply.extend_from_slice(&443u16.to_be_bytes());
        reply.extend_from_slice(b"app data");
        bounded(server_side.write_all(&reply)).await.unwrap();
        server_side
    });
    let target = TargetAddr::domain("example", 443);
    let mut s = bounded(handshake(client_side, &p, Command::CONNECT, target, None))
        .await
        .unwrap();
    assert_eq!(
        *s.bound_addr(),
        TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 443)
    );
    let mut got = [0u8; 8];
    bounded(s.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"app data");
    let _server_side = bounded(server).await.unwrap();
}

/// Reply and application bytes already waiting when the client reads: one
/// read takes both, and the bytes past the reply are held, then delivered.
#[tokio::test]
async fn bytes_read_with_the_reply_are_held_as_leftover() {
    let (client_side, mut server_side) = tokio::io::duplex(256);
    let mut pre = vec![0, 0x5A, 0, 80, 127, 0, 0, 1];
    pre.extend_from_slice(b"hello app");
    server_side.write_all(&pre).await.unwrap();
    let p = Proxy::new(Scheme::Socks4, Host::Ip(localhost()), 1);
    let target = TargetAddr::ip(localhost(), 80);
    let s = bounded(handshake(client_side, &p, Command::CONNECT, target, None))
        .await
        .unwrap();
    assert_eq!(s.leftover(), b"hello app");
    assert_eq!(*s.bound_addr(), TargetAddr::ip(localhost(), 80));
    let (_inner, left) = s.into_inner();
    assert_eq!(left, b"hello app");
    let mut req = [0u8; 9];
    server_side.read_exact(&mut req).await.unwrap();
    assert_eq!(req, [4, 1, 0, 80, 127, 0, 0, 1, 0]);
}

/// The whole fake server over an in-memory stream: same machine, no TCP.
#[tokio::test]
async fn fake_server_over_duplex_resolve() {
    let (client_side, server_side) = tokio::io::duplex(7);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = FakeConfig::default();
    let server = tokio::spawn(async move { support::serve_conn(server_side, &cfg, &tx).await });
    let p = Proxy::new(Scheme::Socks5, Host::Ip(localhost()), 1);
    let s = bounded(handshake(
        client_side,
        &p,
        Command::RESOLVE,
        TargetAddr::domain("localhost", 0),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(s.bound_addr().host, Host::Ip(localhost()));
    let seen = bounded(rx.recv()).await.unwrap();
    assert_eq!(seen.request.command, Command::RESOLVE);
    bounded(server).await.unwrap().unwrap();
}

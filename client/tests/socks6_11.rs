//! The client library in draft -11 and the reference dialect against the
//! real server in-process: every profile on one port, sessions (started,
//! joined, expired, torn down, lost to a proxy restart), and idempotence
//! tokens inside a session (spent, a duplicate refused).

mod inproc;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sixsocks_client::socks6::{socks6_connect, Profile, Socks6Options, Socks6Session};
use sixsocks_client::{ClientError, Proxy};
use sixsocks_proto::v6::client::{ClientRequest, Socks6Client};
use sixsocks_proto::v6::{IdempotenceOption, SessionOption, Socks6Option};
use sixsocks_proto::{Command, Instruction, PeerError, ProtoError, TargetAddr};
use sixsocks_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use inproc::{bounded, Users, DEADLINE};

fn proxy(addr: SocketAddr, creds: Option<(&str, &str)>, profile: &str) -> Proxy {
    let auth = creds.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    format!("socks6://{auth}{addr}?profile={profile}")
        .parse::<Proxy>()
        .expect("proxy URL")
        .with_timeout(DEADLINE)
}

/// An echo server that counts its connections.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    inproc::tcp_echo().await
}

async fn read_n(s: &mut (impl AsyncReadExt + Unpin), n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    bounded(s.read_exact(&mut v)).await.unwrap();
    v
}

/// One request of `req` in `profile` to `server`, the whole answer read
/// to the close, and the client machine's verdict on it.
async fn one_request(
    server: SocketAddr,
    req: ClientRequest,
    profile: Profile,
) -> Instruction<sixsocks_proto::v6::client::Final, sixsocks_proto::v6::client::Event> {
    let (mut machine, first) = Socks6Client::with_profile(req, profile).unwrap();
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(&first).await.unwrap();
    let mut reply = Vec::new();
    bounded(s.read_to_end(&mut reply)).await.unwrap();
    machine.input().push(&reply);
    machine.input().close();
    machine.step()
}

#[tokio::test]
async fn every_profile_connects_on_one_port_with_and_without_a_password() {
    let (target, _) = echo().await;
    let users = Users::new(&[("alice", "s3cret")]);
    let open = inproc::serve_local(None, |_| {}).await;
    let closed = inproc::serve_local(Some(&users), |_| {}).await;
    for profile in ["draft-05", "draft-11", "ref-207"] {
        for (server, creds) in [(open, None), (closed, Some(("alice", "s3cret")))] {
            let p = proxy(server, creds, profile);
            let mut s = bounded(socks6_connect(&p, target, b"hello", &Socks6Options::new()))
                .await
                .unwrap_or_else(|e| panic!("{profile} {creds:?}: {e}"));
            let info = s.socks6_info().unwrap().clone();
            assert_eq!(info.profile.setting_name(), profile);
            assert_eq!(read_n(&mut s, 5).await, b"hello", "{profile}: initial data");
            s.write_all(b" again").await.unwrap();
            assert_eq!(read_n(&mut s, 6).await, b" again");
        }
        // A wrong password is refused in every profile.
        let p = proxy(closed, Some(("alice", "wrong")), profile);
        let e = bounded(socks6_connect(&p, target, b"x", &Socks6Options::new()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{profile}: a wrong password connected"));
        let text = e.to_string();
        assert!(
            text.contains("password") || text.contains("authentication"),
            "{profile}: {e}"
        );
    }
}

/// A session: the first request starts it with the password, the next
/// ones name it and send no credentials; the proxy still knows the user.
#[tokio::test]
async fn a_session_carries_the_credentials_of_its_first_request() {
    let (target, accepted) = echo().await;
    let users = Users::new(&[("alice", "s3cret")]);
    let server = inproc::serve_local(Some(&users), |_| {}).await;
    for profile in ["draft-11", "ref-207"] {
        let session =
            Socks6Session::new(proxy(server, Some(("alice", "s3cret")), profile)).with_sessions();
        assert_eq!(session.session_id(), None);
        let mut s = bounded(session.connect_with_data(target, b"one"))
            .await
            .unwrap();
        assert_eq!(read_n(&mut s, 3).await, b"one");
        let id = session.session_id().expect("the proxy granted a session");
        assert_eq!(id.len(), 8);
        for i in 0..3 {
            let mut s = bounded(session.connect_with_data(target, b"two"))
                .await
                .unwrap();
            assert_eq!(read_n(&mut s, 3).await, b"two", "{profile} #{i}");
            assert!(
                s.socks6_info()
                    .unwrap()
                    .auth_options
                    .has_session(&SessionOption::Ok),
                "{profile}: the proxy said session OK"
            );
            assert_eq!(session.session_id(), Some(id.clone()), "same session");
        }
        // Torn down: the next request starts another.
        bounded(session.end_session()).await.unwrap();
        assert_eq!(session.session_id(), None);
        bounded(session.noop()).await.unwrap();
        let second = session.session_id().expect("a new session");
        assert_ne!(second, id);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 8);
}

/// A forged or expired session id is refused with "session invalid",
/// even where no password is needed, and nothing is carried out.
#[tokio::test]
async fn an_unknown_session_is_refused_before_anything_happens() {
    let (target, accepted) = echo().await;
    let users = Users::new(&[("alice", "s3cret")]);
    let server = inproc::serve_local(Some(&users), |_| {}).await;
    for profile in [Profile::Draft11, Profile::Ref207] {
        let mut req = ClientRequest::new(Command::CONNECT, TargetAddr::from(target));
        req.options
            .push(SessionOption::Id(vec![1, 2, 3, 4, 5, 6, 7, 8]).into());
        match one_request(server, req, profile).await {
            Instruction::Failed { error, .. } => {
                assert_eq!(
                    error,
                    ProtoError::Peer(PeerError::SessionInvalid),
                    "{profile}"
                )
            }
            other => panic!("{profile}: {other:?}"),
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing was connected");
}

#[tokio::test]
async fn an_expired_session_is_replaced_without_losing_the_request() {
    let (target, accepted) = echo().await;
    let server = inproc::serve_local(None, |c| c.socks6_session_idle_timeout = 1).await;
    let session = Socks6Session::new(proxy(server, None, "draft-11")).with_sessions();
    bounded(session.noop()).await.unwrap();
    let id = session.session_id().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut s = bounded(session.connect_with_data(target, b"late"))
        .await
        .unwrap();
    assert_eq!(read_n(&mut s, 4).await, b"late");
    let new = session.session_id().unwrap();
    assert_ne!(new, id, "a new session replaced the expired one");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "carried out once");
}

/// Tokens in a session: every CONNECT spends one (0-RTT and replay-safe),
/// a spend of a token already spent is refused and not carried out.
#[tokio::test]
async fn tokens_are_spent_inside_the_session_and_a_duplicate_is_refused() {
    let (target, accepted) = echo().await;
    let server = inproc::serve_local(None, |_| {}).await;
    for profile in ["draft-11", "ref-207"] {
        let before = accepted.load(Ordering::SeqCst);
        let session = Socks6Session::new(proxy(server, None, profile))
            .with_tokens(8)
            .unwrap();
        bounded(session.noop()).await.unwrap();
        let id = session.session_id().expect("tokens start a session");
        let (base, size) = session.tokens().unwrap().window().expect("a window");
        assert_eq!(size, 8);
        let mut spent = Vec::new();
        for i in 0..12u8 {
            let mut s = bounded(session.connect_with_data(target, &[i]))
                .await
                .unwrap();
            assert_eq!(read_n(&mut s, 1).await, [i]);
            spent.extend(s.socks6_info().unwrap().token);
        }
        // Twelve requests, eight-token windows: tokens were spent and
        // refreshed; each once.
        assert!(spent.len() >= 8, "{profile}: {spent:?}");
        assert!(spent.contains(&base));
        let mut unique = spent.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), spent.len(), "{profile}: no token twice");
        assert_eq!(session.session_id(), Some(id.clone()));
        // By hand: the first token again, in the session.
        let mut req = ClientRequest::new(Command::CONNECT, TargetAddr::from(target));
        req.options.push(SessionOption::Id(id).into());
        req.options
            .push(Socks6Option::Idempotence(IdempotenceOption::Expenditure {
                token: base,
            }));
        let prof = Profile::from_setting_name(profile).unwrap();
        assert!(
            matches!(
                one_request(server, req, prof).await,
                Instruction::Failed {
                    error: ProtoError::Peer(PeerError::TokenRejected),
                    ..
                }
            ),
            "{profile}: a duplicate spend is refused"
        );
        assert_eq!(accepted.load(Ordering::SeqCst) - before, 12, "{profile}");
    }
}

/// The proxy restarts under a client's session and wallet: the next
/// request learns the session is gone, starts a new one with a new window
/// and goes through, once; none is lost or carried out twice.
#[tokio::test]
async fn the_wallet_survives_the_proxy_restarting() {
    let (target, accepted) = echo().await;
    let (addr, stop) = inproc::serve_until((Ipv4Addr::LOCALHOST, 0).into(), None, |_| {});
    let session = Socks6Session::new(proxy(addr, None, "draft-11"))
        .with_tokens(16)
        .unwrap();
    for i in 0..5u8 {
        let mut s = bounded(session.connect_with_data(target, &[i]))
            .await
            .unwrap();
        assert_eq!(read_n(&mut s, 1).await, [i]);
    }
    let old_id = session.session_id().unwrap();
    let old_window = session.tokens().unwrap().window();
    drop(stop);
    // The listener closes; a new server on the same address.
    inproc::restart(addr).await;
    for i in 5..10u8 {
        let mut s = bounded(session.connect_with_data(target, &[i]))
            .await
            .unwrap();
        assert_eq!(read_n(&mut s, 1).await, [i]);
    }
    assert_ne!(session.session_id().unwrap(), old_id);
    assert_ne!(session.tokens().unwrap().window(), old_window);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        10,
        "ten requests, ten connections"
    );
}

#[tokio::test]
async fn a_refusal_comes_back_in_every_profile() {
    // A closed port on loopback: connection refused, as each profile says it.
    let closed = {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        l.local_addr().unwrap()
    };
    let server = inproc::serve_local(None, |_| {}).await;
    for profile in ["draft-05", "draft-11", "ref-207"] {
        let e = bounded(socks6_connect(
            &proxy(server, None, profile),
            closed,
            b"",
            &Socks6Options::new(),
        ))
        .await
        .err()
        .unwrap();
        assert!(
            matches!(e, ClientError::Socks6Refused { .. }),
            "{profile}: {e}"
        );
        assert!(e.to_string().contains("refused"), "{profile}: {e}");
    }
}

/// -11 asks that every supported stack option be answered: TOS, TTL, no
/// fragmentation and MPTCP come back (MPTCP as "not available" where the
/// kernel lacks it, which -05 could not say).
#[tokio::test]
async fn stack_options_are_answered_in_draft_11() {
    use sixsocks_proto::v6::{Leg, StackOption, StackValue};
    let (target, _) = echo().await;
    let server = inproc::serve_local(None, |_| {}).await;
    let stack = |v| Socks6Option::Stack(StackOption::new(Leg::PROXY_REMOTE, v));
    // (Not with MPTCP: an MPTCP socket takes fewer IP options.)
    let options = Socks6Options::new()
        .tos(0x28)
        .option(stack(StackValue::Ttl(9)))
        .option(stack(StackValue::NoFragment(true)));
    let mut s = bounded(socks6_connect(
        &proxy(server, None, "draft-11"),
        target,
        b"x",
        &options,
    ))
    .await
    .unwrap();
    assert_eq!(read_n(&mut s, 1).await, b"x");
    let applied = s.socks6_info().unwrap().applied();
    eprintln!("-11: the proxy answered {applied:?}");
    assert_eq!(applied.tos, Some(0x28));
    assert_eq!(applied.ttl, Some(9));
    assert_eq!(applied.no_fragment, Some(true));
    let mptcp = Socks6Options::new().mptcp();
    let s = bounded(socks6_connect(
        &proxy(server, None, "draft-11"),
        target,
        b"x",
        &mptcp,
    ))
    .await
    .unwrap();
    let applied = s.socks6_info().unwrap().applied();
    assert!(
        applied.mptcp.is_some(),
        "MPTCP answered, yes or no: {applied:?}"
    );
    // The reference dialect has no TTL: the client refuses to send one.
    let Err(e) = bounded(socks6_connect(
        &proxy(server, None, "ref-207"),
        target,
        b"x",
        &options,
    ))
    .await
    else {
        panic!("TTL cannot be sent in ref-207");
    };
    assert!(e.to_string().contains("profile"), "{e}");
    let options = Socks6Options::new().tos(0x28).mptcp();
    let s = bounded(socks6_connect(
        &proxy(server, None, "ref-207"),
        target,
        b"x",
        &options,
    ))
    .await
    .unwrap();
    let applied = s.socks6_info().unwrap().applied();
    assert_eq!(applied.tos, Some(0x28));
    assert!(applied.mptcp.is_some());
}

/// A DNS query over TCP: `id`, one question for `name` of `qtype`.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

/// One DNS-over-TCP response: its id, response code and answer count, and
/// the whole message.
async fn dns_response(s: &mut (impl AsyncReadExt + Unpin)) -> (u16, u8, u16, Vec<u8>) {
    let len = read_n(s, 2).await;
    let msg = read_n(s, usize::from(u16::from_be_bytes([len[0], len[1]]))).await;
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    (id, msg[3] & 0x0F, ancount, msg)
}

/// "DNS provided by SOCKS" (-08 and later): CONNECT to 0.0.0.0:53 speaks
/// DNS over TCP with the proxy's resolver, under the proxy's rules.
#[tokio::test]
async fn connect_to_0_0_0_0_port_53_is_the_proxys_dns() {
    let rules = sixsocks_server::Config::from_toml(
        "[[rule]]\naction = \"block\"\nto = [\"blocked.example\"]\n[[rule]]\naction = \"pass\"\n",
    )
    .unwrap()
    .rule;
    let server = inproc::serve_local(None, move |c| c.rule = rules).await;
    for profile in ["draft-11", "ref-207"] {
        let dns: SocketAddr = (Ipv4Addr::UNSPECIFIED, 53).into();
        // The first query goes with the request, as initial data.
        let mut s = bounded(socks6_connect(
            &proxy(server, None, profile),
            dns,
            &dns_query(7, "localhost", 1),
            &Socks6Options::new(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{profile}: {e}"));
        let (id, rcode, answers, msg) = dns_response(&mut s).await;
        assert_eq!((id, rcode), (7, 0), "{profile}: {msg:02x?}");
        assert!(answers >= 1, "{profile}: localhost has an address");
        assert!(msg.ends_with(&[127, 0, 0, 1]), "{profile}: {msg:02x?}");
        // A blocked name: REFUSED, and the connection goes on.
        s.write_all(&dns_query(8, "blocked.example", 1))
            .await
            .unwrap();
        let (id, rcode, answers, _) = dns_response(&mut s).await;
        assert_eq!((id, rcode, answers), (8, 5, 0), "{profile}: refused");
        // A reverse lookup.
        s.write_all(&dns_query(9, "1.0.0.127.in-addr.arpa", 12))
            .await
            .unwrap();
        let (id, rcode, answers, _) = dns_response(&mut s).await;
        assert_eq!((id, rcode), (9, 0), "{profile}: PTR");
        assert_eq!(answers, 1);
        // Garbage: FORMERR with its id; a zero length ends the connection.
        s.write_all(&[0, 3, 0xAB, 0xCD, 0xEF]).await.unwrap();
        let (id, rcode, _, _) = dns_response(&mut s).await;
        assert_eq!((id, rcode), (0xABCD, 1), "{profile}: FORMERR");
        s.write_all(&[0, 0]).await.unwrap();
        let mut rest = Vec::new();
        bounded(s.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty(), "{profile}: closed after a zero length");
    }
    // Draft -05 has no such service: 0.0.0.0 is no target there.
    let dns: SocketAddr = (Ipv4Addr::UNSPECIFIED, 53).into();
    let e = bounded(socks6_connect(
        &proxy(server, None, "draft-05"),
        dns,
        b"",
        &Socks6Options::new(),
    ))
    .await;
    assert!(e.is_err(), "-05 refuses a CONNECT to 0.0.0.0");
}

/// UDP over -11, by hand: an association whose datagrams travel on the TCP
/// connection (echoed back there, after the confirmation), and ICMP errors
/// relayed to a client that asked, when a datagram hits a closed port on
/// loopback: over TCP and over UDP.
#[tokio::test]
async fn udp_over_draft_11_on_tcp_and_udp_with_icmp_errors() {
    use sixsocks_proto::v6::client::{Event, Final};
    use sixsocks_proto::v6::{
        AssociationId, Codec, DatagramHeader, Leg, StackOption, StackValue, UdpErrorCode, DRAFT11,
    };
    let server = inproc::serve_local(None, |_| {}).await;
    let echo = inproc::udp_echo(Ipv4Addr::LOCALHOST.into()).await;
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    // Open an association that asks for ICMP errors; returns the TCP
    // stream, the id and the relay's address.
    async fn associate(server: SocketAddr) -> (TcpStream, AssociationId, SocketAddr) {
        let mut req = ClientRequest::new(Command::UDP_ASSOCIATE, TargetAddr::unspecified());
        req.options.push(Socks6Option::Stack(StackOption::new(
            Leg::PROXY_REMOTE,
            StackValue::UdpError(true),
        )));
        let (mut machine, first) = Socks6Client::with_profile(req, Profile::Draft11).unwrap();
        let mut s = TcpStream::connect(server).await.unwrap();
        s.write_all(&first).await.unwrap();
        loop {
            match machine.step() {
                Instruction::NeedMore(_) => {
                    let mut b = [0u8; 512];
                    let n = bounded(s.read(&mut b)).await.unwrap();
                    assert!(n > 0, "the proxy closed");
                    machine.input().push(&b[..n]);
                }
                Instruction::Event(Event::Authenticated(_)) => {}
                Instruction::Event(Event::UdpAssociated { reply, id }) => {
                    let asked = reply.options.stack_requests(Leg::PROXY_REMOTE);
                    assert_eq!(asked.udp_error, Some(true), "the proxy will report errors");
                    let relay = reply.bound.socket_addr().unwrap();
                    assert!(
                        machine.input().bytes().is_empty(),
                        "nothing after the init message yet"
                    );
                    return (s, id, relay);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // One -11 UDP message from the TCP stream.
    async fn message(s: &mut TcpStream) -> Vec<u8> {
        let head = read_n(s, 4).await;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        [head, read_n(s, len - 4).await].concat()
    }

    // Over TCP.
    let (mut s, id, _) = associate(server).await;
    let to = |t: SocketAddr| DatagramHeader {
        association: id,
        target: TargetAddr::from(t),
    };
    s.write_all(&DRAFT11.datagram(&to(echo), b"over tcp").unwrap())
        .await
        .unwrap();
    let confirm = message(&mut s).await;
    assert_eq!(confirm, DRAFT11.encode_confirmation(id).unwrap());
    let back = message(&mut s).await;
    let (h, payload) = DRAFT11.parse_datagram(&back).unwrap();
    assert_eq!(
        (h.target, &back[payload]),
        (TargetAddr::from(echo), &b"over tcp"[..])
    );
    s.write_all(&DRAFT11.datagram(&to(closed), b"nobody").unwrap())
        .await
        .unwrap();
    let err = message(&mut s).await;
    let report = DRAFT11.parse_udp_error(&err).unwrap();
    assert_eq!(report.dest, closed);
    assert_eq!(
        report.code,
        UdpErrorCode::HOST_UNREACHABLE,
        "port unreachable"
    );
    assert_eq!(report.reporter, closed.ip());

    // Over UDP: the same error comes over UDP.
    let (mut s, id, relay) = associate(server).await;
    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = |t: SocketAddr| DatagramHeader {
        association: id,
        target: TargetAddr::from(t),
    };
    u.send_to(&DRAFT11.datagram(&to(echo), b"over udp").unwrap(), relay)
        .await
        .unwrap();
    assert_eq!(
        message(&mut s).await,
        DRAFT11.encode_confirmation(id).unwrap()
    );
    let mut b = [0u8; 2048];
    let n = bounded(u.recv(&mut b)).await.unwrap();
    let (_, payload) = DRAFT11.parse_datagram(&b[..n]).unwrap();
    assert_eq!(&b[payload], b"over udp");
    u.send_to(&DRAFT11.datagram(&to(closed), b"nobody").unwrap(), relay)
        .await
        .unwrap();
    let n = bounded(u.recv(&mut b)).await.unwrap();
    let report = DRAFT11.parse_udp_error(&b[..n]).unwrap();
    assert_eq!(
        (report.dest, report.code),
        (closed, UdpErrorCode::HOST_UNREACHABLE)
    );
    // A datagram for this UDP-mapped association sent on TCP is dropped:
    // the echo answers nothing on TCP.
    s.write_all(&DRAFT11.datagram(&to(echo), b"wrong way").unwrap())
        .await
        .unwrap();
    let mut one = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.read(&mut one))
            .await
            .is_err(),
        "nothing comes back on TCP"
    );
    let _ = Final::UdpConfirmed;
}

/// Issue 14: 1,000 connections of a SOCKS5 application through an
/// optimistic gateway, the far proxy restarted in the middle (between two
/// connections: the same address, a new process state, so the gateway's
/// session and window are gone): none lost, none carried out twice.
#[tokio::test]
async fn a_thousand_connections_through_the_gateway_survive_a_far_restart() {
    let (target, accepted) = echo().await;
    let (far_addr, stop) = inproc::serve_until((Ipv4Addr::LOCALHOST, 0).into(), None, |_| {});
    let far_url = format!("socks6://{far_addr}");
    let gateway = inproc::serve_local(None, move |c| {
        let mut up = sixsocks_server::config::UpstreamConfig::new(&far_url);
        up.optimistic = true;
        c.upstream.insert("gateway".into(), up);
        c.rule = Config::from_toml("[[rule]]\naction = \"pass\"\nroute = \"gateway\"\n")
            .unwrap()
            .rule;
    })
    .await;
    let app: Proxy = format!("socks5h://{gateway}").parse().unwrap();
    let app = app.with_timeout(DEADLINE);
    let mut stop = Some(stop);
    let mut seen = std::collections::HashSet::new();
    for i in 0..1000u32 {
        if i == 500 {
            drop(stop.take());
            inproc::restart(far_addr).await;
        }
        let mut s = bounded(sixsocks_client::connect(&app, target))
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let id = i.to_be_bytes();
        s.write_all(&id).await.unwrap();
        let back = read_n(&mut s, 4).await;
        assert_eq!(back, id, "connection {i}");
        assert!(seen.insert(i));
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1000,
        "each connection reached the target once"
    );
}

/// -11's text puts the session id in the operation reply (the reference,
/// in the authentication reply, where sixsocks puts it): the client takes
/// it from either. A proxy of the text's reading, by hand.
#[tokio::test]
async fn the_client_takes_a_session_id_from_the_operation_reply_too() {
    use sixsocks_proto::v6::{AuthOutcome, AuthReply, Codec, OperationReply, Options, DRAFT11};
    use sixsocks_proto::ReplyCode;
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let id = vec![9u8; 8];
    let reply_id = id.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b).await.unwrap();
        let auth = DRAFT11
            .encode_auth_reply(&AuthReply {
                outcome: AuthOutcome::Success(sixsocks_proto::v5::Method::NONE),
                options: Options::new(),
            })
            .unwrap();
        let op = DRAFT11
            .encode_operation_reply(&OperationReply::new(
                Profile::Draft11,
                ReplyCode::Succeeded,
                TargetAddr::unspecified(),
                Options(vec![SessionOption::Id(reply_id).into()]),
            ))
            .unwrap();
        s.write_all(&[auth, op].concat()).await.unwrap();
    });
    let session = Socks6Session::new(proxy(addr, None, "draft-11")).with_sessions();
    bounded(session.noop()).await.unwrap();
    assert_eq!(session.session_id(), Some(id));
}

/// A SOCKS5 application's BIND through the gateway: carried to the far
/// proxy as a SOCKS 6 BIND; a host that connects to the far side's bound
/// address reaches the application.
#[tokio::test]
async fn bind_through_the_gateway_is_a_socks6_bind_at_the_far_side() {
    let far = inproc::serve_local(None, |_| {}).await;
    let far_url = format!("socks6://{far}");
    let gateway = inproc::serve_local(None, move |c| {
        c.gateway = Some(sixsocks_server::config::GatewayConfig {
            upstream: far_url,
            mode: sixsocks_server::config::GatewayMode::Optimistic,
        });
        c.apply_gateway().unwrap();
    })
    .await;
    let app: Proxy = format!("socks5h://{gateway}").parse().unwrap();
    let app = app.with_timeout(DEADLINE);
    let listener = bounded(sixsocks_client::SocksListener::bind(
        &app,
        (Ipv4Addr::LOCALHOST, 0),
    ))
    .await
    .unwrap();
    let at = listener.bind_addr().socket_addr().expect("an address");
    let peer = tokio::spawn(async move {
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(b"from the peer").await.unwrap();
        let mut b = [0u8; 7];
        s.read_exact(&mut b).await.unwrap();
        b
    });
    let (mut s, from) = bounded(listener.accept()).await.unwrap();
    assert!(
        from.socket_addr().is_some_and(|a| a.ip().is_loopback()),
        "{from}"
    );
    assert_eq!(read_n(&mut s, 13).await, b"from the peer");
    s.write_all(b"and back").await.unwrap();
    assert_eq!(&bounded(peer).await.unwrap(), b"and bac");
}

/// A SOCKS5 application's UDP association through the gateway: carried to
/// the far proxy as a SOCKS 6 UDP association; datagrams go both ways.
#[tokio::test]
async fn udp_through_the_gateway_is_a_socks6_association_at_the_far_side() {
    let far = inproc::serve_local(None, |_| {}).await;
    let far_url = format!("socks6://{far}");
    let gateway = inproc::serve_local(None, move |c| {
        c.gateway = Some(sixsocks_server::config::GatewayConfig {
            upstream: far_url,
            mode: sixsocks_server::config::GatewayMode::Optimistic,
        });
        c.apply_gateway().unwrap();
    })
    .await;
    let echo = inproc::udp_echo(Ipv4Addr::LOCALHOST.into()).await;
    let app: Proxy = format!("socks5h://{gateway}").parse().unwrap();
    let app = app.with_timeout(DEADLINE);
    let udp = bounded(sixsocks_client::SocksDatagram::associate(&app, None))
        .await
        .unwrap();
    for i in 0..5u8 {
        let msg = [b'd', i];
        bounded(udp.send_to(&msg, echo)).await.unwrap();
        let mut b = [0u8; 64];
        let (n, from) = bounded(udp.recv_from(&mut b)).await.unwrap();
        assert_eq!(&b[..n], &msg, "datagram {i}");
        assert_eq!(from, TargetAddr::from(echo));
    }
}

//! SOCKS 6 (draft -05): the client library against the real server
//! (in-process, on 127.0.0.1:0), against hand-written proxies for what the
//! real one never does (version mismatch, a token window across 2^32), and
//! against a recording in-memory stream to see exactly what goes out in
//! which write.

mod inproc;

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use sixsocks_client::{
    socks6_connect, socks6_handshake, socks6_noop, ClientError, Command, Proxy, ReplyCode,
    Socks6Options, Socks6Session, TargetAddr,
};
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Verify};
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::idempotence::{serve_tokens, TokenPolicy, TokenWindow};
use sixsocks_proto::v6::server::ServerConfig;
use sixsocks_proto::v6::{
    Codec, Draft05, ExpenditureCode, IdempotenceOption, MptcpScheduler, Options, Profile,
    Socks6Option,
};
use sixsocks_proto::Instruction;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;

use inproc::{bounded, Users, DEADLINE};

// ------------------------------------------------------------------ helpers

/// A `socks6://` proxy speaking draft -05 (`?profile=draft-05`): these
/// tests are -05's (tokens per user, its mismatch reply); `socks6_11.rs`
/// has -11's and the reference dialect's.
fn proxy(addr: SocketAddr, creds: Option<(&str, &str)>) -> Proxy {
    let auth = creds.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
    format!("socks6://{auth}{addr}?profile=draft-05")
        .parse::<Proxy>()
        .expect("proxy URL")
        .with_timeout(DEADLINE)
}

/// An echo server on 127.0.0.1 that counts the connections it accepted.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn echo() -> Echo {
    let (addr, accepted) = inproc::tcp_echo().await;
    Echo { addr, accepted }
}

/// Write `msg`, read the same number of bytes back, compare.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) {
    bounded(s.write_all(msg)).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    bounded(s.read_exact(&mut back)).await.unwrap();
    assert!(back == msg, "echo differs");
}

/// Read exactly `n` bytes (the echo of what was sent with the request).
async fn read_n<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    bounded(s.read_exact(&mut v)).await.unwrap();
    v
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn spend(token: u32) -> Socks6Option {
    Socks6Option::Idempotence(IdempotenceOption::Expenditure { token })
}

// ------------------------------------------------------------------ NOOP

#[tokio::test]
async fn noop_without_and_with_credentials() {
    // No users file: method 00, even with credentials (any are accepted).
    let open = start_server(None).await;
    let info = bounded(socks6_noop(&proxy(open, None))).await.unwrap();
    assert_eq!(info.auth_method, Method::NONE);
    assert!(!info.zero_rtt_auth && !info.slow_auth);
    assert_eq!(info.token, None);

    let users = Users::new(&[("alice", "s3cret")]);
    let guarded = start_server(Some(&users)).await;
    let info = bounded(socks6_noop(&proxy(guarded, Some(("alice", "s3cret")))))
        .await
        .unwrap();
    assert_eq!(info.auth_method, Method::USERPASS);
    assert!(info.zero_rtt_auth, "credentials went in the request");
    assert!(!info.slow_auth, "no RFC 1929 exchange");

    let e = bounded(socks6_noop(&proxy(guarded, Some(("alice", "wrong")))))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::AuthFailed), "{e:?}");
    let e = bounded(socks6_noop(&proxy(guarded, None)))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoAcceptableMethod { .. }), "{e:?}");
    // The server still serves.
    bounded(socks6_noop(&proxy(guarded, Some(("alice", "s3cret")))))
        .await
        .unwrap();
}

// ------------------------------------------------------------------ CONNECT

#[tokio::test]
async fn connect_with_and_without_credentials_and_initial_data() {
    let target = echo().await;
    let users = Users::new(&[("alice", "s3cret")]);
    let open = start_server(None).await;
    let guarded = start_server(Some(&users)).await;
    let cases = [
        ("open, no data", proxy(open, None), &b""[..]),
        ("open, data", proxy(open, None), &b"hello six"[..]),
        (
            "credentials, no data",
            proxy(guarded, Some(("alice", "s3cret"))),
            &b""[..],
        ),
        (
            "credentials, data",
            proxy(guarded, Some(("alice", "s3cret"))),
            &b"first bytes"[..],
        ),
    ];
    for (what, p, data) in cases {
        // Through the generic entry points: `socks6://` routes to SOCKS 6.
        let mut s = if data.is_empty() {
            bounded(sixsocks_client::connect(&p, target.addr))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
        } else {
            bounded(sixsocks_client::connect_with_data(&p, target.addr, data))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
        };
        let info = s.socks6_info().expect("SOCKS 6 info").clone();
        assert_eq!(info.initial_data, data.len(), "{what}");
        assert_eq!(
            info.auth_method,
            if p.username.is_some() {
                Method::USERPASS
            } else {
                Method::NONE
            },
            "{what}"
        );
        assert_eq!(info.zero_rtt_auth, p.username.is_some(), "{what}");
        assert!(!info.slow_auth, "{what}");
        // The bound address is the proxy's end of its connection to the target.
        assert_eq!(
            info.bound.socket_addr().map(|a| a.ip()),
            Some(Ipv4Addr::LOCALHOST.into()),
            "{what}"
        );
        assert_eq!(read_n(&mut s, data.len()).await, data, "{what}");
        round_trip(&mut s, b"and then more").await;
    }
    assert_eq!(target.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn connect_by_name_goes_to_the_proxy() {
    let target = echo().await;
    let server = start_server(None).await;
    let mut s = bounded(sixsocks_client::connect(
        &proxy(server, None),
        ("localhost", target.addr.port()),
    ))
    .await
    .unwrap();
    round_trip(&mut s, b"by name").await;
}

#[tokio::test]
async fn slow_path_authentication() {
    let target = echo().await;
    let users = Users::new(&[("bob", "hunter2")]);
    let server = start_server(Some(&users)).await;
    let slow = Socks6Options::new().zero_rtt_auth(false);
    let p = proxy(server, Some(("bob", "hunter2")));
    let mut s = bounded(socks6_connect(&p, target.addr, b"early", &slow))
        .await
        .unwrap();
    let info = s.socks6_info().unwrap().clone();
    assert!(info.slow_auth, "the proxy asked for the credentials");
    assert!(!info.zero_rtt_auth);
    assert_eq!(info.auth_method, Method::USERPASS);
    assert_eq!(read_n(&mut s, 5).await, b"early");
    round_trip(&mut s, b"after the slow path").await;

    // Wrong password on the slow path: refused, nothing connected.
    let before = target.accepted.load(Ordering::SeqCst);
    let e = bounded(socks6_connect(
        &proxy(server, Some(("bob", "wrong"))),
        target.addr,
        b"never relayed",
        &slow,
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::AuthFailed), "{e:?}");
    // Wrong password 0-RTT: refused too.
    let e = bounded(socks6_connect(
        &proxy(server, Some(("bob", "wrong"))),
        target.addr,
        b"never relayed",
        &Socks6Options::new(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::AuthFailed), "{e:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(target.accepted.load(Ordering::SeqCst), before);
    // Unknown user.
    let e = bounded(socks6_noop(&proxy(server, Some(("mallory", "x")))))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::AuthFailed), "{e:?}");
}

#[tokio::test]
async fn initial_data_beyond_8192_bytes_follows_the_authentication_reply() {
    let target = echo().await;
    let users = Users::new(&[("alice", "s3cret")]);
    let server = start_server(Some(&users)).await;
    let data = pattern(20_000);
    for zero_rtt in [true, false] {
        let mut s = bounded(socks6_connect(
            &proxy(server, Some(("alice", "s3cret"))),
            target.addr,
            &data,
            &Socks6Options::new().zero_rtt_auth(zero_rtt),
        ))
        .await
        .unwrap();
        assert_eq!(s.socks6_info().unwrap().initial_data, 8192);
        let back = read_n(&mut s, data.len()).await;
        assert!(
            back == data,
            "all 20,000 bytes, in order (0-RTT {zero_rtt})"
        );
    }
}

#[tokio::test]
async fn target_speaking_first_is_not_lost() {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"220 banner\r\n").await;
                let mut sink = [0u8; 64];
                let _ = s.read(&mut sink).await;
            });
        }
    });
    let server = start_server(None).await;
    let mut s = bounded(sixsocks_client::connect(&proxy(server, None), addr))
        .await
        .unwrap();
    assert_eq!(read_n(&mut s, 12).await, b"220 banner\r\n");
}

#[tokio::test]
async fn refusals_carry_the_socks6_code() {
    let server = start_server(None).await;
    let closed = {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap()
    };
    let e = bounded(sixsocks_client::connect(&proxy(server, None), closed))
        .await
        .unwrap_err();
    match &e {
        ClientError::Socks6Refused { code, raw, token } => {
            assert_eq!(*code, ReplyCode::ConnectionRefused);
            assert_eq!(*raw, 5);
            assert_eq!(*token, None);
        }
        other => panic!("expected a SOCKS 6 refusal, got {other:?}"),
    }
    assert!(e.to_string().contains("(05)"), "{e}");
    assert_eq!(e.reply_code(), Some(ReplyCode::ConnectionRefused));
    // RESOLVE is not SOCKS 6.
    let e = bounded(sixsocks_client::resolve(&proxy(server, None), "localhost"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unsupported(_)), "{e:?}");
}

#[tokio::test]
async fn stack_options_are_requested_and_the_applied_ones_reported() {
    let target = echo().await;
    let server = start_server(None).await;
    let mptcp_here = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::MPTCP),
    )
    .is_ok();
    let opts = Socks6Options::new()
        .tos(0x28)
        .mptcp()
        .mptcp_scheduler(MptcpScheduler::ROUND_ROBIN);
    let mut s = bounded(socks6_connect(
        &proxy(server, None),
        target.addr,
        b"x",
        &opts,
    ))
    .await
    .unwrap();
    let info = s.socks6_info().unwrap().clone();
    let applied = info.applied();
    eprintln!("asked TOS 0x28 + MPTCP (round-robin); the proxy applied {applied:?}");
    assert_eq!(applied.tos, Some(0x28), "IP_TOS on the proxy–remote leg");
    assert_eq!(
        applied.mptcp == Some(true),
        mptcp_here,
        "MPTCP iff this kernel has it"
    );
    if mptcp_here {
        assert_eq!(
            applied.mptcp_scheduler,
            Some(MptcpScheduler::DEFAULT),
            "the scheduler in use is reported"
        );
    }
    assert_eq!(read_n(&mut s, 1).await, b"x");
    round_trip(&mut s, b"stacked").await;

    // Nothing asked, nothing reported.
    let s = bounded(socks6_connect(
        &proxy(server, None),
        target.addr,
        b"",
        &Socks6Options::new(),
    ))
    .await
    .unwrap();
    assert!(s.socks6_info().unwrap().applied().is_empty());
}

// ------------------------------------------------------------------ tokens

#[tokio::test]
async fn tokens_window_spend_duplicate_out_of_window_and_no_window() {
    let target = echo().await;
    let server = start_server(None).await;
    let p = proxy(server, None);

    // No window yet: a spend is refused ("no window"), not carried out.
    let e = bounded(socks6_connect(
        &p,
        target.addr,
        b"",
        &Socks6Options::new().option(spend(5)),
    ))
    .await
    .unwrap_err();
    match e {
        ClientError::Socks6Refused { code, token, .. } => {
            assert_eq!(code, ReplyCode::GeneralFailure);
            assert_eq!(token, Some(ExpenditureCode::NO_WINDOW));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(target.accepted.load(Ordering::SeqCst), 0);

    let session = Socks6Session::new(p.clone()).with_tokens(8).unwrap();
    let info = bounded(session.noop()).await.unwrap();
    let (base, size) = info.window().expect("a window was advertised");
    assert_eq!(size, 8);
    assert_eq!(session.tokens().unwrap().remaining(), 8);

    // Spend the smallest tokens first.
    let mut spent = Vec::new();
    for i in 0..3u32 {
        let mut s = bounded(session.connect(target.addr)).await.unwrap();
        let info = s.socks6_info().unwrap().clone();
        assert_eq!(info.token, Some(base.wrapping_add(i)));
        assert_eq!(info.expenditure, Some(ExpenditureCode::SUCCESS));
        spent.push(info.token.unwrap());
        round_trip(&mut s, b"tok").await;
    }
    let connected = target.accepted.load(Ordering::SeqCst);
    assert_eq!(connected, 3);

    // A token spent again: duplicate, general failure, not carried out.
    let e = bounded(socks6_connect(
        &p,
        target.addr,
        b"replayed",
        &Socks6Options::new().option(spend(spent[1])),
    ))
    .await
    .unwrap_err();
    match &e {
        ClientError::Socks6Refused { code, raw, token } => {
            assert_eq!(*code, ReplyCode::GeneralFailure);
            assert_eq!(*raw, 1);
            assert_eq!(*token, Some(ExpenditureCode::DUPLICATE));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("already spent"), "{e}");
    // Far outside the window.
    let e = bounded(socks6_connect(
        &p,
        target.addr,
        b"",
        &Socks6Options::new().option(spend(base.wrapping_add(1_000_000))),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Socks6Refused {
                token: Some(ExpenditureCode::OUT_OF_WINDOW),
                ..
            }
        ),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(target.accepted.load(Ordering::SeqCst), connected);

    // The session carries on with the next token.
    let s = bounded(session.connect(target.addr)).await.unwrap();
    assert_eq!(s.socks6_info().unwrap().token, Some(base.wrapping_add(3)));
}

#[tokio::test]
async fn a_token_is_spent_at_most_once_under_concurrent_requests() {
    let target = echo().await;
    let server = start_server(None).await;
    let p = proxy(server, None);
    let session = Socks6Session::new(p.clone()).with_tokens(4).unwrap();
    let (base, _) = bounded(session.noop()).await.unwrap().window().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            socks6_connect(
                &p,
                target.addr,
                b"",
                &Socks6Options::new().option(spend(base)),
            )
            .await
            .map(|_| ())
        }));
    }
    let mut ok = 0;
    let mut dup = 0;
    for t in tasks {
        match bounded(t).await.unwrap() {
            Ok(()) => ok += 1,
            Err(ClientError::Socks6Refused {
                token: Some(ExpenditureCode::DUPLICATE),
                ..
            }) => dup += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((ok, dup), (1, 15));
}

#[tokio::test]
async fn the_wallet_slides_with_the_window_and_refreshes_when_it_runs_out() {
    let target = echo().await;
    let server = start_server(None).await;
    // A window of 2: in-order spends slide it, and the wallet never runs dry.
    let session = Socks6Session::new(proxy(server, None))
        .with_tokens(2)
        .unwrap();
    let (base, size) = bounded(session.noop()).await.unwrap().window().unwrap();
    assert_eq!(size, 2);
    for i in 0..5u32 {
        let s = bounded(session.connect(target.addr)).await.unwrap();
        let info = s.socks6_info().unwrap();
        assert_eq!(info.token, Some(base.wrapping_add(i)));
        assert_eq!(info.expenditure, Some(ExpenditureCode::SUCCESS));
        assert_eq!(
            info.window(),
            Some((base.wrapping_add(i + 1), 2)),
            "the shifted window is advertised"
        );
        assert_eq!(session.tokens().unwrap().remaining(), 2);
    }
    // A window of 1: every request spends the last token, so it also asks
    // for a fresh window, and the next request spends from that one.
    let session = Socks6Session::new(proxy(server, None))
        .with_tokens(1)
        .unwrap();
    let (mut window, size) = bounded(session.noop()).await.unwrap().window().unwrap();
    assert_eq!(size, 1);
    for _ in 0..4 {
        let s = bounded(session.connect(target.addr)).await.unwrap();
        let info = s.socks6_info().unwrap();
        assert_eq!(info.token, Some(window), "spent from the last window");
        assert_eq!(info.expenditure, Some(ExpenditureCode::SUCCESS));
        let (fresh, size) = info.window().expect("a fresh window");
        assert_eq!(size, 1);
        assert_eq!(session.tokens().unwrap().window(), Some((fresh, 1)));
        assert_eq!(session.tokens().unwrap().remaining(), 1);
        window = fresh;
    }
}

/// A SOCKS 6 proxy built from the protocol crate's server machine and
/// token logic, whose token windows start where the test says (the real
/// server draws them at random). CONNECT is answered with success and the
/// connection is then closed; NOOP likewise.
async fn token_proxy(first_base: u32) -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let window: Arc<Mutex<Option<TokenWindow>>> = Arc::new(Mutex::new(None));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let window = window.clone();
            tokio::spawn(async move {
                let mut hs = socks6_server(ServerConfig::default());
                let req = loop {
                    match hs.step() {
                        Instruction::NeedMore(_) => match s.read(hs.input().spare()).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => hs.input().filled(n),
                        },
                        Instruction::Finished {
                            value: Accepted::Socks6(request),
                            ..
                        } => break request,
                        Instruction::Send(bytes) => {
                            let _ = s.write_all(&bytes).await;
                        }
                        Instruction::Event(_) => hs.verdict(true),
                        Instruction::Finished { .. } | Instruction::Failed { .. } => return,
                    }
                };
                let decision = {
                    let mut w = window.lock().unwrap();
                    serve_tokens(&mut w, &req.options, &TokenPolicy::default(), first_base)
                };
                let mut out = req.auth_reply(decision.options).unwrap();
                let code = if decision.proceed {
                    ReplyCode::Succeeded
                } else {
                    ReplyCode::GeneralFailure
                };
                out.extend(req.operation_reply(code, None, Options::new()).unwrap());
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tokens_across_the_2_pow_32_wrap() {
    let base = u32::MAX - 2;
    let addr = token_proxy(base).await;
    let session = Socks6Session::new(proxy(addr, None))
        .with_tokens(8)
        .unwrap();
    let info = bounded(session.noop()).await.unwrap();
    assert_eq!(info.window(), Some((base, 8)));
    let mut got = Vec::new();
    for _ in 0..6 {
        let s = bounded(session.connect(("example.test", 1))).await.unwrap();
        let info = s.socks6_info().unwrap();
        assert_eq!(info.expenditure, Some(ExpenditureCode::SUCCESS));
        got.push(info.token.unwrap());
    }
    assert_eq!(
        got,
        vec![u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2],
        "smallest first, modulo 2^32"
    );
    // Tokens below the wrap, spent before it, are duplicates after it.
    let e = bounded(socks6_connect(
        &proxy(addr, None),
        ("example.test", 1),
        b"",
        &Socks6Options::new().option(spend(u32::MAX)),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Socks6Refused {
                token: Some(ExpenditureCode::DUPLICATE),
                ..
            }
        ),
        "{e:?}"
    );
}

// ------------------------------------------------------------------ hand-written proxies

/// A proxy that reads what the client sends, answers `reply`, and closes.
async fn one_shot_proxy(reply: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply).await;
            let _ = s.shutdown().await;
            // Let the client read before the socket goes.
            let _ = s.read(&mut buf).await;
        }
    });
    addr
}

#[tokio::test]
async fn version_mismatch_is_recognised_at_eof() {
    for reply in [&b"\x06\x00"[..], b"\x06", b"\x06\x01", b"\xcf"] {
        let addr = one_shot_proxy(reply).await;
        let e = bounded(socks6_noop(&proxy(addr, None))).await.unwrap_err();
        assert!(
            matches!(e, ClientError::VersionMismatch),
            "{reply:02x?}: {e:?}"
        );
        let e = bounded(sixsocks_client::connect(&proxy(addr, None), ("h.test", 1)))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::VersionMismatch),
            "{reply:02x?}: {e:?}"
        );
    }
    // Closing without a word is not a version mismatch.
    let addr = one_shot_proxy(b"").await;
    let e = bounded(socks6_noop(&proxy(addr, None))).await.unwrap_err();
    assert!(matches!(e, ClientError::ProxyClosed), "{e:?}");
    // Nor is half an authentication reply.
    let addr = one_shot_proxy(b"\x06\x00\x00").await;
    let e = bounded(socks6_noop(&proxy(addr, None))).await.unwrap_err();
    assert!(matches!(e, ClientError::ProxyClosed), "{e:?}");
    // A SOCKS5-only proxy's refusal of the unknown version is a protocol error.
    let addr = one_shot_proxy(b"\x05\xff").await;
    let e = bounded(socks6_noop(&proxy(addr, None))).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Protocol(_) | ClientError::VersionMismatch),
        "{e:?}"
    );
}

/// An in-memory stream that records every write and every read, serving
/// scripted reply bytes once the client has written something.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    replies: Arc<Mutex<VecDeque<u8>>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Event {
    Write(Vec<u8>),
    Read(usize),
}

impl AsyncWrite for Recorder {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.events.lock().unwrap().push(Event::Write(b.to_vec()));
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut r = self.replies.lock().unwrap();
        let n = r.len().min(buf.remaining());
        let bytes: Vec<u8> = r.drain(..n).collect();
        buf.put_slice(&bytes);
        self.events.lock().unwrap().push(Event::Read(n));
        Poll::Ready(Ok(()))
    }
}

fn replies(method: Method) -> Vec<u8> {
    let codec = Draft05;
    let mut out = codec
        .encode_auth_reply(&sixsocks_proto::v6::AuthReply {
            outcome: sixsocks_proto::v6::AuthOutcome::Success(method),
            options: Options::new(),
        })
        .unwrap();
    out.extend(
        codec
            .encode_operation_reply(&sixsocks_proto::v6::OperationReply::new(
                codec.profile(),
                ReplyCode::Succeeded,
                TargetAddr::unspecified(),
                Options::new(),
            ))
            .unwrap(),
    );
    out
}

#[tokio::test]
async fn zero_rtt_connect_is_one_write_with_credentials_and_initial_data() {
    let rec = Recorder::default();
    let mut script = replies(Method::USERPASS);
    script.extend_from_slice(b"target says hi");
    rec.replies.lock().unwrap().extend(script);
    let p = Proxy::parse("socks6://alice:s3cret@127.0.0.1:1080?profile=draft-05").unwrap();
    let data = b"GET / HTTP/1.0\r\n\r\n";
    let mut s = bounded(socks6_handshake(
        rec.clone(),
        &p,
        Command::CONNECT,
        TargetAddr::domain("example.com", 80),
        data,
        &Socks6Options::new().tos(0x10),
    ))
    .await
    .unwrap();
    assert_eq!(read_n(&mut s, 14).await, b"target says hi");
    let events = rec.events.lock().unwrap().clone();
    let writes: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Write(w) => Some(w),
            Event::Read(_) => None,
        })
        .collect();
    assert_eq!(writes.len(), 1, "one write in all: {events:?}");
    assert!(
        matches!(events[0], Event::Write(_)),
        "the write comes before any read"
    );
    // What the proxy makes of that single write: the request with the
    // credentials (0-RTT), the stack option and exactly the initial data.
    let mut hs = socks6_server(ServerConfig {
        require_auth: true,
        ..ServerConfig::default()
    });
    let flight = writes[0].clone();
    assert_eq!(hs.input().push(&flight), flight.len());
    match hs.step() {
        Instruction::Event(Verify { username, password }) => {
            assert!(hs.input().is_empty(), "nothing but the request and data");
            assert_eq!(username, b"alice");
            assert_eq!(password.expose(), b"s3cret");
        }
        other => panic!("expected the credentials in the request: {other:?}"),
    }
    hs.verdict(true);
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks6(request),
            rest,
        } => {
            assert!(rest.is_empty());
            assert_eq!(request.command, Command::CONNECT);
            assert_eq!(request.target, TargetAddr::domain("example.com", 80));
            assert_eq!(request.initial_data, data);
            assert_eq!(request.options.initial_data_len(), Ok(data.len()));
            assert_eq!(
                request
                    .options
                    .stack_requests(sixsocks_proto::v6::Leg::PROXY_REMOTE)
                    .tos,
                Some(0x10)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn noop_and_data_less_connect_are_one_write_too() {
    for (command, creds) in [
        (Command::NOOP, false),
        (Command::NOOP, true),
        (Command::CONNECT, false),
    ] {
        let rec = Recorder::default();
        let method = if creds {
            Method::USERPASS
        } else {
            Method::NONE
        };
        rec.replies.lock().unwrap().extend(replies(method));
        let url = if creds {
            "socks6://u:p@127.0.0.1:1080?profile=draft-05"
        } else {
            "socks6://127.0.0.1:1080?profile=draft-05"
        };
        let p = Proxy::parse(url).unwrap();
        bounded(socks6_handshake(
            rec.clone(),
            &p,
            command,
            TargetAddr::domain("example.com", 80),
            b"",
            &Socks6Options::new(),
        ))
        .await
        .unwrap();
        let events = rec.events.lock().unwrap().clone();
        let writes = events
            .iter()
            .filter(|e| matches!(e, Event::Write(_)))
            .count();
        assert_eq!(writes, 1, "{command} creds {creds}: {events:?}");
        assert!(matches!(events[0], Event::Write(_)));
    }
}

/// Start the real server on 127.0.0.1:0, optionally with a users file.
async fn start_server(users: Option<&Users>) -> SocketAddr {
    inproc::serve_local(users, |_| {}).await
}

/// The protocol crate's server machine with SOCKS 6 enabled under `config`.
fn socks6_server(config: ServerConfig) -> ServerHandshake {
    ServerHandshake::new(HandshakeConfig {
        require_auth: config.require_auth,
        lenient_auth: config.lenient_auth,
    })
    .with_socks6(config.limits)
}

#[tokio::test]
async fn the_profile_is_chosen_and_reported() {
    let target = echo().await;
    let server = start_server(None).await;
    let p = proxy(server, None);
    // The default profile, and the one asked for, each come back in the
    // stream's Socks6Info, a NOOP's and a session's.
    for (options, want) in [
        (Socks6Options::new(), Profile::Draft05),
        (
            Socks6Options::new().with_profile(Profile::Draft11),
            Profile::Draft11,
        ),
        (
            Socks6Options::new().with_profile(Profile::Draft05),
            Profile::Draft05,
        ),
        (
            Socks6Options::new().with_profile(Profile::Ref207),
            Profile::Ref207,
        ),
    ] {
        assert_eq!(options.profile_for(&p), want);
        let mut s = bounded(socks6_connect(&p, target.addr, b"hi", &options))
            .await
            .unwrap();
        assert_eq!(s.socks6_info().unwrap().profile, want);
        assert_eq!(read_n(&mut s, 2).await, b"hi");
        let session = Socks6Session::new(p.clone()).with_options(options.clone());
        assert_eq!(bounded(session.noop()).await.unwrap().profile, want);
        let s = bounded(session.connect(target.addr)).await.unwrap();
        assert_eq!(s.socks6_info().unwrap().profile, want);
    }
}

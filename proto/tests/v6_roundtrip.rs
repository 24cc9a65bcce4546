//! The SOCKS 6 client machine against the server machine (through the
//! shared-port dispatcher), in memory, at several MTUs.

mod v6common;

use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::client::{ClientRequest, Event, Socks6Client};
use sixsocks_proto::v6::idempotence::TokenWallet;
use sixsocks_proto::v6::{
    AssociationId, AuthOutcome, ExpenditureCode, IdempotenceOption, Leg, Socks6Option, StackOption,
    StackValue,
};
use sixsocks_proto::Instruction;
use sixsocks_proto::{
    Command, EncodeError, Password, PeerError, ProtoError, ReplyCode, TargetAddr,
};
use v6common::{exchange, ClientEvent, Exchange, Proxy};

const MTUS: &[usize] = &[1, 3, 7, 64, 100_000];

fn example() -> TargetAddr {
    TargetAddr::domain("example.com", 443)
}

fn with_creds(mut r: ClientRequest, user: &[u8], pass: &str) -> ClientRequest {
    r.username = Some(user.to_vec());
    r.password = Some(Password::new(pass));
    r
}

/// Run at every MTU; the observable outcome must not depend on it.
fn run(req: &ClientRequest, mk: impl Fn() -> Proxy, app: &[u8]) -> Exchange {
    let reference = exchange(req.clone(), &mut mk(), 100_000, app);
    for &mtu in MTUS {
        let ex = exchange(req.clone(), &mut mk(), mtu, app);
        assert_eq!(ex.client, reference.client, "mtu {mtu}");
        assert_eq!(ex.request, reference.request, "mtu {mtu}");
        assert_eq!(ex.server_error, reference.server_error, "mtu {mtu}");
        assert_eq!(ex.server_rest, reference.server_rest, "mtu {mtu}");
        assert_eq!(ex.client_rest, reference.client_rest, "mtu {mtu}");
        assert_eq!(ex.client_sends, reference.client_sends, "mtu {mtu}");
    }
    reference
}

fn succeeded(ex: &Exchange) -> bool {
    ex.final_reply()
        .is_some_and(|r| r.code() == ReplyCode::Succeeded)
}

#[test]
fn noop_without_auth() {
    let req = ClientRequest::new(Command::NOOP, example());
    let ex = run(&req, || Proxy::new(false), b"");
    assert!(succeeded(&ex), "{ex:?}");
    let r = ex.request.as_ref().unwrap();
    assert_eq!(r.command, Command::NOOP);
    assert_eq!(r.target, TargetAddr::unspecified(), "NOOP sends zeros");
    assert_eq!(
        ex.auth_reply().unwrap().outcome,
        AuthOutcome::Success(Method::NONE)
    );
    assert_eq!(ex.first_flight, [6, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
}

#[test]
fn noop_with_credentials() {
    let req = with_creds(
        ClientRequest::new(Command::NOOP, TargetAddr::unspecified()),
        b"alice",
        "s3cret",
    );
    let ex = run(&req, || Proxy::new(true), b"");
    assert!(succeeded(&ex));
    assert_eq!(ex.verified, vec![b"alice".to_vec()]);
    assert_eq!(ex.client_sends, 0, "0-RTT");
}

#[test]
fn connect_false_start_without_auth() {
    let req = ClientRequest::new(Command::CONNECT, example());
    let mk = || {
        let mut p = Proxy::new(false);
        p.target_data = b"pong".to_vec();
        p
    };
    let ex = run(&req, mk, b"ping");
    assert!(succeeded(&ex));
    let (c, _) = Socks6Client::new(req.clone()).unwrap();
    assert!(c.false_start_allowed());
    assert_eq!(
        ex.server_rest, b"ping",
        "false start data reaches the relay"
    );
    assert_eq!(ex.client_rest, b"pong");
    assert!(ex.request.as_ref().unwrap().initial_data.is_empty());
    assert_eq!(ex.final_reply().unwrap().bound, Proxy::new(false).bound);
}

#[test]
fn connect_with_initial_data_without_auth() {
    let mut req = ClientRequest::new(Command::CONNECT, example());
    req.initial_data = b"HELLO".to_vec();
    let ex = run(&req, || Proxy::new(false), b"after auth");
    assert!(succeeded(&ex));
    assert_eq!(ex.request.as_ref().unwrap().initial_data, b"HELLO");
    assert_eq!(ex.server_rest, b"after auth");
    let (c, first) = Socks6Client::new(req).unwrap();
    assert!(!c.false_start_allowed());
    assert!(first.ends_with(b"HELLO"));
}

#[test]
fn connect_zero_rtt_with_credentials_and_initial_data_in_one_flight() {
    let mut req = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"alice",
        "s3cret",
    );
    req.initial_data = vec![0x42; 8192];
    let ex = run(&req, || Proxy::new(true), b"tail");
    assert!(succeeded(&ex), "{ex:?}");
    assert_eq!(ex.client_sends, 0, "nothing sent after the first flight");
    let r = ex.request.as_ref().unwrap();
    assert_eq!(r.initial_data, vec![0x42; 8192]);
    assert_eq!(r.auth_method, Method::USERPASS);
    assert_eq!(r.credentials.user(), Some(&b"alice"[..]));
    assert_eq!(ex.server_rest, b"tail");
    // With a big MTU, the proxy had everything after one delivery.
    let ex = exchange(req, &mut Proxy::new(true), 100_000, b"");
    assert_eq!(ex.client_flights, 1);
}

#[test]
fn connect_zero_rtt_wrong_password() {
    let req = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"alice",
        "wrong",
    );
    let ex = run(&req, || Proxy::new(true), b"");
    assert_eq!(ex.client_error(), Some(&PeerError::AuthFailed.into()));
    assert_eq!(ex.server_error, Some(PeerError::AuthFailed.into()));
    assert!(ex.request.is_none());
}

#[test]
fn slow_path_auth() {
    let mut req = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"alice",
        "s3cret",
    );
    req.zero_rtt_auth = false;
    req.initial_data = b"init".to_vec();
    let ex = run(
        &req,
        || Proxy::new(true),
        b"data after the RFC 1929 request",
    );
    assert!(succeeded(&ex), "{ex:?}");
    assert_eq!(ex.client_sends, 1);
    assert_eq!(ex.verified, vec![b"alice".to_vec()]);
    let r = ex.request.as_ref().unwrap();
    assert_eq!(r.initial_data, b"init");
    assert_eq!(ex.server_rest, b"data after the RFC 1929 request");
}

#[test]
fn slow_path_for_credentials_too_long_for_an_option() {
    // 3 + 200 + 60 = 263 bytes of RFC 1929: more than 252, so no 0-RTT.
    let user = vec![b'u'; 200];
    let pass = "p".repeat(60);
    let mut req = ClientRequest::new(Command::CONNECT, example());
    req.username = Some(user.clone());
    req.password = Some(Password::new(pass.clone()));
    let (c, _) = Socks6Client::new(req.clone()).unwrap();
    assert!(!c.zero_rtt_auth());
    let mk = move || {
        let mut p = Proxy::new(true);
        p.users = vec![(vec![b'u'; 200], vec![b'p'; 60])];
        p
    };
    let ex = run(&req, mk, b"");
    assert!(succeeded(&ex));
    assert_eq!(ex.client_sends, 1);
}

#[test]
fn slow_path_wrong_password() {
    let mut req = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"alice",
        "wrong",
    );
    req.zero_rtt_auth = false;
    let ex = run(&req, || Proxy::new(true), b"");
    assert_eq!(ex.client_error(), Some(&PeerError::AuthFailed.into()));
    assert_eq!(ex.server_error, Some(PeerError::AuthFailed.into()));
}

#[test]
fn no_credentials_for_a_proxy_that_requires_them() {
    let req = ClientRequest::new(Command::CONNECT, example());
    let ex = run(&req, || Proxy::new(true), b"");
    assert_eq!(
        ex.client_error(),
        Some(&PeerError::NoAcceptableMethod.into())
    );
    assert_eq!(ex.server_error, Some(PeerError::NoAcceptableMethod.into()));
}

#[test]
fn connect_refusals_carry_their_code() {
    for (code, wire) in [
        (ReplyCode::ConnectionRefused, 5),
        (ReplyCode::TtlExpired, 9),
        (ReplyCode::NotAllowed, 2),
    ] {
        let req = ClientRequest::new(Command::CONNECT, example());
        let mk = move || {
            let mut p = Proxy::new(false);
            p.connect_code = code;
            p.target_data = b"never".to_vec();
            p
        };
        let ex = run(&req, mk, b"");
        let r = ex.final_reply().unwrap();
        assert_eq!((r.rep.0, r.code()), (wire, code));
        assert!(ex.client_rest.is_empty());
    }
}

#[test]
fn unknown_command_gets_07() {
    let req = ClientRequest::new(Command(0x66), example());
    let ex = run(&req, || Proxy::new(false), b"");
    assert_eq!(ex.final_reply().unwrap().rep, 7);
}

#[test]
fn stack_options_requested_and_reported() {
    let mut req = ClientRequest::new(Command::CONNECT, example());
    req.options = vec![
        StackOption::new(
            Leg::PROXY_REMOTE,
            StackValue::TcpFastOpen { payload_size: 1000 },
        )
        .into(),
        StackOption::new(Leg::PROXY_REMOTE, StackValue::Mptcp).into(),
        StackOption::new(Leg::CLIENT_PROXY, StackValue::Tos(8)).into(),
    ];
    let ex = run(&req, || Proxy::new(false), b"");
    let reported: Vec<_> = ex
        .final_reply()
        .unwrap()
        .options
        .stack_for(Leg::PROXY_REMOTE)
        .cloned()
        .collect();
    assert_eq!(
        reported,
        vec![
            StackValue::TcpFastOpen { payload_size: 1000 },
            StackValue::Mptcp
        ]
    );
}

#[test]
fn bind_gets_two_replies() {
    let req = ClientRequest::new(Command::BIND, TargetAddr::unspecified());
    let ex = run(&req, || Proxy::new(false), b"");
    match &ex.client[..] {
        [ClientEvent::Authenticated(_), ClientEvent::Bound(first), ClientEvent::Done(second)] => {
            assert_eq!(first.bound, Proxy::new(false).bound);
            assert_eq!(second.bound.to_string(), "198.51.100.7:40000");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bind_with_a_listen_backlog_gets_one_reply() {
    let mut req = ClientRequest::new(Command::BIND, TargetAddr::unspecified());
    req.options = vec![StackOption::new(Leg::PROXY_REMOTE, StackValue::ListenBacklog(8)).into()];
    let ex = run(&req, || Proxy::new(false), b"");
    match &ex.client[..] {
        [ClientEvent::Authenticated(_), ClientEvent::Done(r)] => {
            assert!(r
                .options
                .stack()
                .any(|s| s.value == StackValue::ListenBacklog(8)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn udp_associate_id_and_confirmation() {
    let req = ClientRequest::new(Command::UDP_ASSOCIATE, TargetAddr::unspecified());
    let ex = run(&req, || Proxy::new(false), b"");
    match &ex.client[..] {
        [ClientEvent::Authenticated(_), ClientEvent::UdpAssociated(r, id), ClientEvent::UdpConfirmed] =>
        {
            assert_eq!(*id, AssociationId(0xDEADBEEF));
            assert_eq!(r.bound, Proxy::new(false).bound);
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- tokens

/// One CONNECT spending the wallet's next token (and asking for a window
/// when the wallet is empty).
fn connect_with_wallet(proxy: &mut Proxy, wallet: &mut TokenWallet) -> (Exchange, Option<u32>) {
    let prepared = wallet.prepare();
    let mut req = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"alice",
        "s3cret",
    );
    req.options = prepared.options;
    let ex = exchange(req, proxy, 5, b"");
    if let Some(a) = ex.auth_reply() {
        wallet.on_auth_reply(&a.options);
    }
    (ex, prepared.token)
}

#[test]
fn tokens_request_spend_refresh_across_the_wrap() {
    let mut proxy = Proxy::new(true);
    proxy.next_base = u32::MAX - 3; // the first window wraps
    proxy.policy.max_window = 8;
    let mut wallet = TokenWallet::new(100).unwrap();
    // First request: no token, asks for a window of 100, gets 8.
    let (ex, token) = connect_with_wallet(&mut proxy, &mut wallet);
    assert_eq!(token, None);
    assert!(succeeded(&ex));
    assert_eq!(wallet.window(), Some((u32::MAX - 3, 8)));
    // Eight requests spend the eight tokens, smallest first, across 2^32.
    let mut spent = Vec::new();
    for _ in 0..8 {
        let (ex, token) = connect_with_wallet(&mut proxy, &mut wallet);
        assert!(succeeded(&ex), "{ex:?}");
        assert!(ex.executed);
        assert_eq!(
            ex.auth_reply().unwrap().options.expenditure_reply(),
            Some(ExpenditureCode::SUCCESS)
        );
        spent.push(token.unwrap());
    }

    let want: Vec<u32> = (0..8).map(|i| (u32::MAX - 3).wrapping_add(i)).collect();
    assert_eq!(spent, want);
    // Each in-order spend shifted the window and the proxy advertised it:
    // the window slides across 2^32 and never runs dry.
    assert_eq!(wallet.window(), Some((4, 8)));
    assert_eq!(wallet.remaining(), 8);
    let (ex, token) = connect_with_wallet(&mut proxy, &mut wallet);
    assert_eq!(token, Some(4));
    assert!(ex.executed);
}

#[test]
fn tokens_refresh_when_the_wallet_runs_dry() {
    // A client that never sees the shifted windows (as if advertisements
    // were lost) spends its 8 tokens, then asks for a new window along with
    // the last one.
    let mut proxy = Proxy::new(true);
    proxy.next_base = u32::MAX - 3;
    proxy.policy.max_window = 8;
    let mut wallet = TokenWallet::new(8).unwrap();
    let _ = connect_with_wallet(&mut proxy, &mut wallet);
    assert_eq!(wallet.window(), Some((u32::MAX - 3, 8)));
    for i in 0..8u32 {
        let prepared = wallet.prepare();
        assert_eq!(prepared.token, Some((u32::MAX - 3).wrapping_add(i)));
        let asks = prepared.options.iter().any(|o| {
            matches!(
                o,
                Socks6Option::Idempotence(IdempotenceOption::TokenRequest { .. })
            )
        });
        assert_eq!(asks, i == 7, "token request only with the last token");
        let mut req = with_creds(
            ClientRequest::new(Command::CONNECT, example()),
            b"alice",
            "s3cret",
        );
        req.options = prepared.options;
        let base_now = proxy.next_base;
        let ex = exchange(req, &mut proxy, 5, b"");
        assert!(ex.executed && succeeded(&ex));
        if asks {
            wallet.on_auth_reply(&ex.auth_reply().unwrap().options);
            assert_eq!(wallet.window(), Some((base_now, 8)));
        }
    }
    assert_eq!(wallet.remaining(), 8);
}

#[test]
fn duplicate_spend_is_refused_and_not_carried_out() {
    let mut proxy = Proxy::new(true);
    let mut wallet = TokenWallet::new(4).unwrap();
    let _ = connect_with_wallet(&mut proxy, &mut wallet);
    let (ex, token) = connect_with_wallet(&mut proxy, &mut wallet);
    assert!(ex.executed);
    let token = token.unwrap();
    // A replay of that request (same token).
    let mut req = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"alice",
        "s3cret",
    );
    req.options = vec![Socks6Option::Idempotence(IdempotenceOption::Expenditure {
        token,
    })];
    let ex = exchange(req.clone(), &mut proxy, 9, b"");
    assert!(!ex.executed, "a duplicate must not be carried out");
    assert_eq!(
        ex.auth_reply().unwrap().options.expenditure_reply(),
        Some(ExpenditureCode::DUPLICATE)
    );
    assert_eq!(ex.final_reply().unwrap().code(), ReplyCode::GeneralFailure);
    // Out of window.
    req.options = vec![Socks6Option::Idempotence(IdempotenceOption::Expenditure {
        token: token.wrapping_add(1000),
    })];
    let ex = exchange(req.clone(), &mut proxy, 9, b"");
    assert!(!ex.executed);
    let opts = &ex.auth_reply().unwrap().options;
    assert_eq!(
        opts.expenditure_reply(),
        Some(ExpenditureCode::OUT_OF_WINDOW)
    );
    assert!(opts.window_advertisement().is_some());
    // Another user has no window at all.
    proxy.users.push((b"bob".to_vec(), b"pw".to_vec()));
    let mut bob = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        b"bob",
        "pw",
    );
    bob.options = req.options.clone();
    let ex = exchange(bob, &mut proxy, 9, b"");
    assert!(!ex.executed);
    assert_eq!(
        ex.auth_reply().unwrap().options.expenditure_reply(),
        Some(ExpenditureCode::NO_WINDOW)
    );
}

// ---------------------------------------------------------------- client alone

#[test]
fn client_reads_version_mismatch_replies_leniently() {
    let mk = || {
        Socks6Client::new(ClientRequest::new(Command::CONNECT, example()))
            .unwrap()
            .0
    };
    // -05: 06 00 then EOF.
    let mut c = mk();
    assert_eq!(feed6(&mut c, &[6, 0]), Instruction::NeedMore(3));
    assert_eq!(at_eof(&mut c), PeerError::VersionMismatch);
    // -07 and later: a single 06 then EOF.
    let mut c = mk();
    assert!(matches!(feed6(&mut c, &[6]), Instruction::NeedMore(_)));
    assert_eq!(at_eof(&mut c), PeerError::VersionMismatch);
    // The reference implementation's version byte.
    let mut c = mk();
    assert_eq!(
        feed6(&mut c, &[0xCF]),
        Instruction::failed(PeerError::VersionMismatch)
    );
    // A truncated auth reply is not a mismatch.
    let mut c = mk();
    assert!(matches!(
        feed6(&mut c, &[6, 0, 0]),
        Instruction::NeedMore(_)
    ));
    assert_eq!(at_eof(&mut c), PeerError::UnexpectedEof);
    // Something else entirely.
    let mut c = mk();
    assert_eq!(
        feed6(&mut c, &[5, 0]),
        Instruction::failed(PeerError::BadReplyVersion(5))
    );
}

#[test]
fn client_refuses_bad_requests_before_any_io() {
    let mut r = ClientRequest::new(Command::BIND, example());
    r.initial_data = b"x".to_vec();
    assert!(Socks6Client::new(r).is_err());
    let mut r = ClientRequest::new(Command::CONNECT, example());
    r.initial_data = vec![0; 8193];
    assert_eq!(
        Socks6Client::new(r).err(),
        Some(EncodeError::InitialDataTooLong(8193).into())
    );
    let r = with_creds(
        ClientRequest::new(Command::CONNECT, example()),
        &[b'u'; 256],
        "p",
    );
    assert!(Socks6Client::new(r).is_err());
    let r = ClientRequest::new(Command::CONNECT, TargetAddr::domain("d".repeat(256), 1));
    assert!(Socks6Client::new(r).is_err());
}

#[test]
fn client_refuses_unexpected_auth_replies() {
    let no_creds = || {
        Socks6Client::new(ClientRequest::new(Command::CONNECT, example()))
            .unwrap()
            .0
    };
    // Success with method 02 when no credentials were offered.
    assert_eq!(
        feed6(&mut no_creds(), &[6, 0, 0, 2, 0]),
        Instruction::failed(PeerError::UnexpectedMethod(2))
    );
    // Further auth with a method we cannot do.
    assert_eq!(
        feed6(&mut no_creds(), &[6, 0, 1, 1, 0]),
        Instruction::failed(PeerError::UnexpectedMethod(1))
    );
    assert_eq!(
        feed6(&mut no_creds(), &[6, 0, 1, 2, 0]),
        Instruction::failed(PeerError::UnexpectedMethod(2))
    );
    // A second auth reply that asks for more.
    let mut r = with_creds(ClientRequest::new(Command::CONNECT, example()), b"a", "b");
    r.zero_rtt_auth = false;
    let (mut c, _) = Socks6Client::new(r).unwrap();
    assert!(matches!(
        feed6(&mut c, &[6, 0, 1, 2, 0]),
        Instruction::Send(_)
    ));
    // The RFC 1929 success and a partial second reply.
    assert!(matches!(
        feed6(&mut c, &[1, 0, 6, 0]),
        Instruction::NeedMore(_)
    ));
    assert!(matches!(
        feed6(&mut c, &[1, 2, 0]),
        Instruction::Failed {
            error: ProtoError::Peer(PeerError::Unexpected(_)),
            ..
        }
    ));
}

#[test]
fn client_slow_path_consumes_rfc1929_reply_with_the_second_auth_reply() {
    let mut r = with_creds(ClientRequest::new(Command::CONNECT, example()), b"a", "b");
    r.zero_rtt_auth = false;
    let (mut c, _) = Socks6Client::new(r).unwrap();
    let _ = feed6(&mut c, &[6, 0, 1, 2, 0]);
    let input = [1, 0, 6, 0, 0, 2, 0, 0xAA];
    match feed6(&mut c, &input) {
        Instruction::Event(Event::Authenticated(reply)) => {
            assert_eq!(reply.outcome, AuthOutcome::Success(Method::USERPASS));
        }
        other => panic!("{other:?}"),
    }
    // Both replies consumed, the byte after them kept.
    assert_eq!(c.input().bytes(), [0xAA]);
    // The machine has moved on to the operation reply: `AA 01 00` is the
    // start of one, so it asks for more.
    assert!(matches!(feed6(&mut c, &[1, 0]), Instruction::NeedMore(_)));
}

#[test]
fn tfo_on_the_client_proxy_leg_follows_the_drafts_rules() {
    let mk = |initial: &[u8], token: bool| {
        let mut r = ClientRequest::new(Command::CONNECT, example());
        r.initial_data = initial.to_vec();
        if token {
            r.options = vec![IdempotenceOption::Expenditure { token: 1 }.into()];
        }
        Socks6Client::new(r).unwrap().0
    };
    // No application data in the SYN: allowed.
    assert!(mk(b"", false).tfo_allowed(false));
    // Initial data without a token: only if the application tolerates replay.
    assert!(!mk(b"GET /", false).tfo_allowed(false));
    assert!(mk(b"GET /", false).tfo_allowed(true));
    // Initial data with a token spent: replays are refused by the proxy.
    assert!(mk(b"GET /", true).tfo_allowed(false));
    // A token *request* alone does not protect anything.
    let mut r = ClientRequest::new(Command::CONNECT, example());
    r.initial_data = b"x".to_vec();
    r.options = vec![IdempotenceOption::TokenRequest { window_size: 4 }.into()];
    assert!(!Socks6Client::new(r).unwrap().0.tfo_allowed(false));
}

/// Put `bytes` into the client machine's input and step.
fn feed6(c: &mut Socks6Client, bytes: &[u8]) -> sixsocks_proto::v6::client::Step {
    assert_eq!(c.input().push(bytes), bytes.len());
    c.step()
}

/// Close the machine's input (the proxy closed) and return why it failed.
fn at_eof(c: &mut Socks6Client) -> ProtoError {
    c.input().close();
    match c.step() {
        Instruction::Failed { error, .. } => error,
        other => panic!("at EOF: {other:?}"),
    }
}

//! The SOCKS 6 part of the server state machine, reached by a first byte
//! `06`. Every scenario runs byte by byte, in odd chunk sizes, all at
//! once and with exact reads; all must agree.

mod v6common;

use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Step, Verify};
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::draft05::{self, Draft05};
use sixsocks_proto::v6::server::ServerConfig;
use sixsocks_proto::v6::{
    AuthMethodOption, Codec, IdempotenceOption, Leg, Options, Profile, Request, Socks6Limits,
    Socks6Option, StackOption, StackValue,
};
use sixsocks_proto::{
    Command, Credentials, Instruction, Misuse, Password, PeerError, ProtoError, ReplyCode,
    TargetAddr,
};
use v6common::{config, creds, drive, drive_all_ways, no_auth, server, End, Outcome};

const FAILURE: [u8; 5] = [6, 0, 1, 0xFF, 0];

fn request(command: Command, target: TargetAddr, options: Vec<Socks6Option>) -> Vec<u8> {
    Draft05
        .encode_request(&Request {
            command,
            target,
            options: Options(options),
        })
        .unwrap()
}

fn example() -> TargetAddr {
    TargetAddr::domain("example.com", 443)
}

fn auth_method(initial: u16, methods: &[Method]) -> Socks6Option {
    AuthMethodOption {
        initial_data_len: initial,
        methods: methods.to_vec(),
    }
    .into()
}

fn userpass(u: &[u8], p: &str) -> Socks6Option {
    draft05::userpass_auth_data(u, &Password::new(p))
        .unwrap()
        .into()
}

fn done(o: &Outcome) -> (&sixsocks_proto::v6::Socks6Request, &[u8]) {
    match &o.end {
        End::Done { request, rest } => (request, rest),
        other => panic!("expected Done, got {other:?}"),
    }
}

fn fail(o: &Outcome) -> (&[u8], &ProtoError) {
    match &o.end {
        End::Fail { bytes, error } => (bytes, error),
        other => panic!("expected Fail, got {other:?}"),
    }
}

fn alice() -> impl FnMut(&[u8], &Password) -> bool {
    creds(b"alice", b"s3cret")
}

// ---------------------------------------------------------------- the first byte

/// Put `bytes` into the machine's input and step.
fn feed(hs: &mut ServerHandshake, bytes: &[u8]) -> Step {
    assert_eq!(hs.input().push(bytes), bytes.len());
    hs.step()
}

#[test]
fn first_byte_06_is_socks6_only_when_enabled() {
    // Without with_socks6, 06 stays an unknown version (as before).
    let mut hs = ServerHandshake::new(HandshakeConfig::default());
    assert_eq!(
        feed(&mut hs, &[6, 0]),
        Instruction::failed(PeerError::UnknownVersion(6))
    );
    assert_eq!(hs.socks6_profile(), None);
    // Enabled: the same machine goes on as SOCKS 6, with the policy of its
    // HandshakeConfig (here: authentication required).
    let mut hs = server(&ServerConfig {
        require_auth: true,
        lenient_auth: true,
        limits: Socks6Limits::default(),
    });
    assert!(hs.socks6_enabled());
    assert_eq!(hs.step(), Instruction::NeedMore(1));
    assert!(matches!(feed(&mut hs, &[6]), Instruction::NeedMore(_)));
    assert_eq!(
        hs.socks6_profile(),
        Some(sixsocks_proto::v6::Profile::Draft05)
    );
    assert_eq!(hs.version(), None);
    let stream = request(Command::NOOP, TargetAddr::unspecified(), vec![]);
    // No credentials offered, authentication required: the failure reply.
    assert_eq!(
        feed(&mut hs, &stream[1..]),
        Instruction::Failed {
            reply: FAILURE.to_vec(),
            error: PeerError::NoAcceptableMethod.into()
        }
    );
}

/// `CF` is the SOCKS 6 reference dialect (`ref-207`) whatever the
/// listener's setting; without SOCKS 6 it stays an unknown version.
#[test]
fn first_byte_cf_is_the_reference_dialect() {
    let mut hs = server(&config(false));
    assert!(matches!(feed(&mut hs, &[0xCF]), Instruction::NeedMore(_)));
    assert_eq!(
        hs.socks6_profile(),
        Some(sixsocks_proto::v6::Profile::Ref207)
    );
    let mut hs = ServerHandshake::new(HandshakeConfig::default());
    assert_eq!(
        feed(&mut hs, &[0xCF]),
        Instruction::failed(PeerError::UnknownVersion(0xCF))
    );
}

#[test]
fn socks6_enabled_leaves_socks5_alone() {
    let mut hs = server(&config(false));
    assert_eq!(
        feed(&mut hs, b"\x05\x01\x00"),
        Instruction::Send(vec![5, 0])
    );
    match feed(&mut hs, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50") {
        Instruction::Finished {
            value: Accepted::Socks(request),
            ..
        } => assert_eq!(request.command, Command::CONNECT),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- no auth

#[test]
fn noop_without_auth() {
    let stream = request(Command::NOOP, TargetAddr::unspecified(), vec![]);
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    let (req, rest) = done(&o);
    assert_eq!(req.command, Command::NOOP);
    assert_eq!(req.auth_method, Method::NONE);
    assert_eq!(req.credentials, Credentials::None);
    assert!(rest.is_empty() && o.sent.is_empty());
    assert_eq!(req.auth_reply(Options::new()).unwrap(), [6, 0, 0, 0, 0]);
    assert_eq!(
        req.operation_reply(ReplyCode::Succeeded, None, Options::new())
            .unwrap(),
        [0, 0, 0, 1, 0, 0, 0, 0, 0]
    );
}

#[test]
fn connect_with_initial_data_reads_exactly_what_was_declared() {
    let mut stream = request(Command::CONNECT, example(), vec![auth_method(5, &[])]);
    stream.extend_from_slice(b"HELLO");
    stream.extend_from_slice(b"more application data");
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    let (req, rest) = done(&o);
    assert_eq!(req.initial_data, b"HELLO");
    assert_eq!(rest, b"more application data");
    assert_eq!(req.target, example());
}

#[test]
fn connect_waits_for_all_initial_data_and_never_asks_beyond_it() {
    let mut stream = request(Command::CONNECT, example(), vec![auth_method(8192, &[])]);
    let header = stream.len();
    stream.extend(std::iter::repeat_n(0xAB, 8192));
    // All but the last byte: stalled, asking for exactly one more.
    let o = drive(
        config(false),
        &stream[..stream.len() - 1],
        None,
        &mut no_auth(),
    );
    assert_eq!(o.end, End::Stalled { needed: 1 });
    // The first step after the request asks for exactly the initial data.
    let mut m = server(&config(false));
    assert_eq!(feed(&mut m, &stream[..header]), Instruction::NeedMore(8192));
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    assert_eq!(done(&o).0.initial_data.len(), 8192);
}

#[test]
fn initial_data_only_for_connect() {
    // BIND with an auth method option declaring 5 bytes: nothing is read.
    let mut stream = request(
        Command::BIND,
        TargetAddr::unspecified(),
        vec![auth_method(5, &[])],
    );
    stream.extend_from_slice(b"abc");
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    let (req, rest) = done(&o);
    assert!(req.initial_data.is_empty());
    assert_eq!(rest, b"abc");
}

#[test]
fn false_start_data_is_left_for_the_relay() {
    let mut stream = request(Command::CONNECT, example(), vec![]);
    stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    let (req, rest) = done(&o);
    assert!(req.initial_data.is_empty());
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn initial_data_cap_is_configurable_and_checked_before_reading() {
    let cfg = ServerConfig {
        limits: Socks6Limits {
            max_initial_data: 100,
            ..Socks6Limits::default()
        },
        ..config(false)
    };
    let stream = request(Command::CONNECT, example(), vec![auth_method(101, &[])]);
    let o = drive_all_ways(cfg, &stream, &mut no_auth());
    assert_eq!(
        fail(&o),
        (&[][..], &PeerError::InitialDataTooLong(101).into())
    );
}

#[test]
fn declared_initial_data_over_8192_is_a_silent_close() {
    let mut stream = request(Command::CONNECT, example(), vec![]);
    let n = stream.len();
    stream[n - 1] = 1; // NOPTS
    stream.extend_from_slice(&[0x02, 5, 0x20, 0x01, 0x02]); // 8193 bytes
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    assert_eq!(
        fail(&o),
        (&[][..], &PeerError::InitialDataTooLong(8193).into())
    );
}

#[test]
fn conflicting_initial_data_lengths_are_refused() {
    let stream = request(
        Command::CONNECT,
        example(),
        vec![auth_method(3, &[]), auth_method(4, &[])],
    );
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    assert!(matches!(
        fail(&o).1,
        ProtoError::Peer(PeerError::BadOption(_))
    ));
}

#[test]
fn unknown_command_is_handed_over() {
    let stream = request(Command(0x77), example(), vec![]);
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    let (req, _) = done(&o);
    assert_eq!(req.command, Command(0x77));
    // The runtime answers 07.
    assert_eq!(
        req.operation_reply(ReplyCode::CommandNotSupported, None, Options::new())
            .unwrap()[0],
        7
    );
}

#[test]
fn options_are_handed_over_typed() {
    let stream = request(
        Command::CONNECT,
        example(),
        vec![
            StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::TcpFastOpen { payload_size: 0 },
            )
            .into(),
            StackOption::new(Leg::BOTH, StackValue::Tos(0x10)).into(),
            StackOption::new(Leg::PROXY_REMOTE, StackValue::Mptcp).into(),
            IdempotenceOption::TokenRequest { window_size: 8 }.into(),
            IdempotenceOption::Expenditure { token: 42 }.into(),
            Socks6Option::Vendor {
                kind: 0xE0,
                data: vec![1],
            },
        ],
    );
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    let (req, _) = done(&o);
    let remote: Vec<_> = req.options.stack_for(Leg::PROXY_REMOTE).cloned().collect();
    assert_eq!(
        remote,
        vec![
            StackValue::TcpFastOpen { payload_size: 0 },
            StackValue::Tos(0x10),
            StackValue::Mptcp
        ]
    );
    let client: Vec<_> = req.options.stack_for(Leg::CLIENT_PROXY).cloned().collect();
    assert_eq!(client, vec![StackValue::Tos(0x10)]);
    assert_eq!(req.options.token_request(), Some(8));
    assert_eq!(req.options.token_expenditure(), Some(42));
}

// ---------------------------------------------------------------- auth

#[test]
fn zero_rtt_credentials_are_verified_then_done() {
    let mut stream = request(
        Command::CONNECT,
        example(),
        vec![
            auth_method(3, &[Method::USERPASS]),
            userpass(b"alice", "s3cret"),
        ],
    );
    stream.extend_from_slice(b"abcdef");
    let o = drive_all_ways(config(true), &stream, &mut alice());
    assert_eq!(o.verified, vec![(b"alice".to_vec(), b"s3cret".to_vec())]);
    assert!(o.sent.is_empty(), "the caller builds the success reply");
    let (req, rest) = done(&o);
    assert_eq!(req.auth_method, Method::USERPASS);
    assert_eq!(req.initial_data, b"abc");
    assert_eq!(rest, b"def");
    assert_eq!(req.credentials.user(), Some(&b"alice"[..]));
    assert_eq!(req.auth_reply(Options::new()).unwrap(), [6, 0, 0, 2, 0]);
}

#[test]
fn zero_rtt_credentials_are_verified_even_when_not_required() {
    let stream = request(
        Command::CONNECT,
        example(),
        vec![userpass(b"alice", "wrong")],
    );
    let o = drive_all_ways(config(false), &stream, &mut alice());
    assert_eq!(o.verified.len(), 1);
    assert_eq!(fail(&o), (&FAILURE[..], &PeerError::AuthFailed.into()));
}

#[test]
fn wrong_zero_rtt_password_fails_and_nothing_pipelined_comes_out() {
    let mut stream = request(
        Command::CONNECT,
        example(),
        vec![
            auth_method(0, &[Method::USERPASS]),
            userpass(b"alice", "nope"),
        ],
    );
    // A second request pipelined behind: must never be handed over.
    stream.extend(request(Command::CONNECT, example(), vec![]));
    let o = drive_all_ways(config(true), &stream, &mut alice());
    assert_eq!(fail(&o), (&FAILURE[..], &PeerError::AuthFailed.into()));
}

#[test]
fn malformed_auth_data_fails() {
    // Method 02 data that is not exactly one RFC 1929 request.
    for data in [
        &b"\x01\x05alice\x06s3cretXX"[..],
        b"\x02\x01a\x01b",
        b"\x01\x05ali",
    ] {
        let stream = request(
            Command::CONNECT,
            example(),
            vec![Socks6Option::AuthData(sixsocks_proto::v6::AuthDataOption {
                method: Method::USERPASS,
                data: Password::new(data),
            })],
        );
        let o = drive_all_ways(config(true), &stream, &mut no_auth());
        assert_eq!(fail(&o).0, FAILURE, "{data:02x?}");
    }
}

#[test]
fn slow_path_auth_success() {
    let mut stream = request(
        Command::CONNECT,
        example(),
        vec![auth_method(4, &[Method::USERPASS])],
    );
    stream.extend_from_slice(b"init");
    stream.extend_from_slice(b"\x01\x05alice\x06s3cret");
    stream.extend_from_slice(b"app data");
    let o = drive_all_ways(config(true), &stream, &mut alice());
    // Further auth needed (method 02), then the RFC 1929 success.
    assert_eq!(o.sent, [6, 0, 1, 2, 0, 1, 0]);
    assert_eq!(o.verified, vec![(b"alice".to_vec(), b"s3cret".to_vec())]);
    let (req, rest) = done(&o);
    assert_eq!(req.initial_data, b"init");
    assert_eq!(rest, b"app data");
    assert_eq!(req.auth_method, Method::USERPASS);
    // The caller's second authentication reply.
    assert_eq!(req.auth_reply(Options::new()).unwrap(), [6, 0, 0, 2, 0]);
}

#[test]
fn slow_path_auth_failure_is_sticky() {
    let mut stream = request(
        Command::CONNECT,
        example(),
        vec![auth_method(0, &[Method::USERPASS])],
    );
    stream.extend_from_slice(b"\x01\x05alice\x05wrong");
    stream.extend(request(Command::CONNECT, example(), vec![]));
    let o = drive_all_ways(config(true), &stream, &mut alice());
    assert_eq!(o.sent, [6, 0, 1, 2, 0]);
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [&[1u8, 1][..], &FAILURE[..]].concat());
    assert_eq!(*error, PeerError::AuthFailed);
}

#[test]
fn slow_path_malformed_rfc1929_fails() {
    let mut stream = request(
        Command::CONNECT,
        example(),
        vec![auth_method(0, &[Method::USERPASS])],
    );
    stream.extend_from_slice(b"\x05\x01\x00");
    let o = drive_all_ways(config(true), &stream, &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [&[1u8, 1][..], &FAILURE[..]].concat());
    assert_eq!(*error, PeerError::BadAuthVersion(5));
}

#[test]
fn auth_required_without_anything_acceptable() {
    for opts in [
        vec![],
        vec![auth_method(0, &[Method::GSSAPI, Method(0x80)])],
    ] {
        let stream = request(Command::CONNECT, example(), opts);
        let o = drive_all_ways(config(true), &stream, &mut no_auth());
        assert_eq!(
            fail(&o),
            (&FAILURE[..], &PeerError::NoAcceptableMethod.into())
        );
    }
}

#[test]
fn auth_not_required_skips_the_slow_path() {
    let stream = request(
        Command::CONNECT,
        example(),
        vec![auth_method(0, &[Method::USERPASS])],
    );
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    assert_eq!(done(&o).0.auth_method, Method::NONE);
}

#[test]
fn lenient_auth_accepts_empty_fields() {
    let stream = request(Command::CONNECT, example(), vec![userpass(b"", "")]);
    let strict = drive_all_ways(config(true), &stream, &mut no_auth());
    assert_eq!(fail(&strict).1, &PeerError::EmptyCredentials);
    let lenient = ServerConfig {
        lenient_auth: true,
        ..config(true)
    };
    let o = drive_all_ways(lenient, &stream, &mut |_: &[u8], _: &Password| true);
    assert_eq!(o.verified, vec![(vec![], vec![])]);
    assert!(matches!(o.end, End::Done { .. }));
}

#[test]
fn auth_result_then_step_protocol() {
    let stream = request(
        Command::NOOP,
        TargetAddr::unspecified(),
        vec![userpass(b"u", "p")],
    );
    let mut m = server(&config(true));
    assert!(matches!(
        feed(&mut m, &stream),
        Instruction::Event(Verify { .. })
    ));
    assert!(m.input().is_empty(), "the request is consumed");
    assert_eq!(m.user(), Some(&b"u"[..]));
    // Stepping before the verdict is a (sticky) misuse.
    let mut early = server(&config(true));
    let _ = feed(&mut early, &stream);
    assert!(matches!(
        early.step(),
        Instruction::Failed {
            error: ProtoError::Misuse(Misuse::Finished),
            ..
        }
    ));
    early.verdict(true);
    assert!(matches!(early.step(), Instruction::Failed { .. }));
    // The right order.
    m.verdict(true);
    match m.step() {
        Instruction::Finished {
            value: Accepted::Socks6(request),
            rest,
        } => {
            assert!(rest.is_empty());
            assert_eq!(request.credentials.user(), Some(&b"u"[..]))
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- bad input

#[test]
fn version_mismatch_gets_06_00() {
    for second in [1u8, 2, 0x10, 0xFF] {
        let o = drive_all_ways(config(false), &[6, second, 1, 0, 80], &mut no_auth());
        assert_eq!(
            fail(&o),
            (&[6u8, 0][..], &PeerError::VersionMismatch.into())
        );
    }
}

#[test]
fn truncated_request_stalls_with_a_precise_need() {
    let stream = request(Command::CONNECT, example(), vec![auth_method(0, &[])]);
    for k in 1..stream.len() {
        let o = drive(config(false), &stream[..k], None, &mut no_auth());
        match o.end {
            End::Stalled { needed } => assert!(k + needed <= stream.len(), "prefix {k}"),
            other => panic!("prefix {k}: {other:?}"),
        }
    }
}

#[test]
fn option_length_zero_or_one_closes_silently() {
    for len in [0u8, 1] {
        let mut stream = request(Command::CONNECT, example(), vec![]);
        let n = stream.len();
        stream[n - 1] = 2;
        stream.extend_from_slice(&[0xC0, 2, 0x05, len, 0, 0, 0]);
        let o = drive_all_ways(config(false), &stream, &mut no_auth());
        assert_eq!(
            fail(&o),
            (&[][..], &PeerError::BadOption("length below 2").into())
        );
    }
}

#[test]
fn ten_thousand_tiny_options_are_refused_without_buffering() {
    let mut stream = request(Command::CONNECT, example(), vec![]);
    let n = stream.len();
    stream[n - 1] = 255;
    for _ in 0..10_000 {
        stream.extend_from_slice(&[0xC1, 2]);
    }
    let o = drive(config(false), &stream, None, &mut no_auth());
    assert_eq!(fail(&o), (&[][..], &PeerError::TooManyOptions(64).into()));
    // With a count cap that allows 255, the bytes cap (here 300) still
    // bounds what is buffered: NeedMore never goes past it (checked by the
    // driver), and the request fails.
    let cfg = ServerConfig {
        limits: Socks6Limits {
            max_options: 255,
            max_options_bytes: 300,
            ..Socks6Limits::default()
        },
        ..config(false)
    };
    let o = drive(cfg, &stream, Some(&[7]), &mut no_auth());
    assert_eq!(fail(&o), (&[][..], &PeerError::OptionsTooLong(300).into()));
}

#[test]
fn bad_address_types_close_silently() {
    let stream = [6, 0, 1, 0, 80, 0x05, 1, 2, 3, 4, 0];
    let o = drive_all_ways(config(false), &stream, &mut no_auth());
    assert_eq!(
        fail(&o),
        (&[][..], &PeerError::UnknownAddressType(5).into())
    );
}

#[test]
fn need_more_stays_within_the_request_cap() {
    // The largest legal request: 255-byte domain, 4096 bytes of options,
    // 8192 bytes of initial data. Exact reads and byte-by-byte (the driver
    // asserts buffered + needed <= max_request_bytes).
    let mut opts = vec![auth_method(8192, &[])];
    let mut used = 5;
    while used + 255 <= 4096 {
        opts.push(Socks6Option::Vendor {
            kind: 0xC0,
            data: vec![7; 253],
        });
        used += 255;
    }
    let cfg = ServerConfig {
        limits: Socks6Limits {
            max_options: 64,
            max_options_bytes: used,
            ..Socks6Limits::default()
        },
        ..config(false)
    };
    let mut stream = request(
        Command::CONNECT,
        TargetAddr::domain("d".repeat(255), 1),
        opts,
    );
    stream.extend(std::iter::repeat_n(1, 8192));
    assert!(stream.len() <= cfg.limits.max_request_bytes(Profile::Draft05));
    let o = drive(cfg.clone(), &stream, None, &mut no_auth());
    assert_eq!(done(&o).0.initial_data.len(), 8192);
    let o = drive(cfg, &stream, Some(&[1]), &mut no_auth());
    assert!(matches!(o.end, End::Done { .. }));
}

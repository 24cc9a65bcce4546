//! SOCKS 6 (draft -05) messages and options: golden bytes, round trips,
//! every strict prefix incomplete, and bad input.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::check_prefixes;
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::draft05::{self, parse_options, Draft05};
use sixsocks_proto::v6::{
    AssociationId, AuthDataOption, AuthMethodOption, AuthOutcome, AuthReply, Codec, DatagramHeader,
    ExpenditureCode, IdempotenceOption, Leg, MptcpScheduler, OperationReply, Options, Request,
    Socks6Limits, Socks6Option, StackOption, StackValue,
};
use sixsocks_proto::{Command, EncodeError, Parsed, Password, PeerError, ReplyCode, TargetAddr};

const C: Draft05 = Draft05;

fn limits() -> Socks6Limits {
    Socks6Limits::default()
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> TargetAddr {
    TargetAddr::ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn parse_req(b: &[u8]) -> Result<Parsed<Request>, PeerError> {
    C.parse_request(b, &limits())
}
fn parse_auth(b: &[u8]) -> Result<Parsed<AuthReply>, PeerError> {
    C.parse_auth_reply(b, &limits())
}
fn parse_op(b: &[u8]) -> Result<Parsed<OperationReply>, PeerError> {
    C.parse_operation_reply(b, &limits())
}

/// Every option kind the draft defines, typed.
fn all_options() -> Vec<Socks6Option> {
    vec![
        StackOption::new(Leg::BOTH, StackValue::Tos(0xB8)).into(),
        StackOption::new(
            Leg::PROXY_REMOTE,
            StackValue::TcpFastOpen { payload_size: 1400 },
        )
        .into(),
        StackOption::new(Leg::PROXY_REMOTE, StackValue::Mptcp).into(),
        StackOption::new(
            Leg::CLIENT_PROXY,
            StackValue::MptcpScheduler(MptcpScheduler::ROUND_ROBIN),
        )
        .into(),
        StackOption::new(Leg::PROXY_REMOTE, StackValue::ListenBacklog(16)).into(),
        AuthMethodOption {
            initial_data_len: 5,
            methods: vec![Method::USERPASS],
        }
        .into(),
        draft05::userpass_auth_data(b"alice", &Password::new("s3cret"))
            .unwrap()
            .into(),
        IdempotenceOption::TokenRequest { window_size: 64 }.into(),
        IdempotenceOption::WindowAdvertisement {
            base: 0xFFFF_FFF0,
            size: 64,
        }
        .into(),
        IdempotenceOption::Expenditure { token: 0x0102_0304 }.into(),
        IdempotenceOption::ExpenditureReply(ExpenditureCode::DUPLICATE).into(),
        Socks6Option::Vendor {
            kind: 0xC7,
            data: vec![0xAA],
        },
        Socks6Option::Unknown {
            kind: 0x33,
            data: vec![1, 2, 3],
        },
    ]
}

/// The same options, encoded by hand.
fn all_options_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[0x01, 5, 0xC1, 0x01, 0xB8]); // TOS, both legs, level IP
    b.extend_from_slice(&[0x01, 6, 0x84, 0x01, 0x05, 0x78]); // TFO 1400
    b.extend_from_slice(&[0x01, 4, 0x84, 0x02]); // MPTCP
    b.extend_from_slice(&[0x01, 5, 0x44, 0x03, 0x02]); // scheduler RR, client-proxy
    b.extend_from_slice(&[0x01, 6, 0x84, 0x04, 0x00, 0x10]); // backlog 16
    b.extend_from_slice(&[0x02, 5, 0x00, 0x05, 0x02]); // auth method
    b.extend_from_slice(&[0x03, 17, 0x02, 0x01, 5]);
    b.extend_from_slice(b"alice");
    b.push(6);
    b.extend_from_slice(b"s3cret");
    b.extend_from_slice(&[0x04, 7, 0x00, 0, 0, 0, 64]); // token request
    b.extend_from_slice(&[0x04, 11, 0x01, 0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 64]);
    b.extend_from_slice(&[0x04, 7, 0x02, 1, 2, 3, 4]); // expenditure
    b.extend_from_slice(&[0x04, 4, 0x03, 0x04]); // expenditure reply: duplicate
    b.extend_from_slice(&[0xC7, 3, 0xAA]); // vendor
    b.extend_from_slice(&[0x33, 5, 1, 2, 3]); // unknown kind
    b
}

// ---------------------------------------------------------------- requests

#[test]
fn request_golden_bytes_with_every_option() {
    let req = Request {
        command: Command::CONNECT,
        target: TargetAddr::domain("example.com", 443),
        options: Options(all_options()),
    };
    let mut want = vec![0x06, 0x00, 0x01, 0x01, 0xBB, 0x03, 11];
    want.extend_from_slice(b"example.com");
    want.push(all_options().len() as u8);
    want.extend(all_options_bytes());
    assert_eq!(C.encode_request(&req).unwrap(), want);
    assert_eq!(check_prefixes(&want, parse_req), req);
}

#[test]
fn request_round_trips_for_every_command_and_address_type() {
    let targets = [
        v4(192, 0, 2, 7, 80),
        TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 8443),
        TargetAddr::domain("a", 1),
        TargetAddr::domain("d".repeat(255), 65535),
        TargetAddr::unspecified(),
    ];
    for cmd in [
        Command::NOOP,
        Command::CONNECT,
        Command::BIND,
        Command::UDP_ASSOCIATE,
        Command(0x77),
    ] {
        for t in &targets {
            for opts in [Options::new(), Options(all_options())] {
                let req = Request {
                    command: cmd,
                    target: t.clone(),
                    options: opts,
                };
                let bytes = C.encode_request(&req).unwrap();
                assert_eq!(check_prefixes(&bytes, parse_req), req);
            }
        }
    }
}

#[test]
fn noop_request_is_zero_ipv4() {
    let req = Request {
        command: Command::NOOP,
        target: TargetAddr::unspecified(),
        options: Options::new(),
    };
    assert_eq!(
        C.encode_request(&req).unwrap(),
        [6, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    );
}

#[test]
fn request_version_checks() {
    // Minor version other than 0: a mismatch (answered with 06 00).
    assert_eq!(parse_req(&[6, 1]), Err(PeerError::VersionMismatch));
    assert_eq!(parse_req(&[6, 0xFF, 1]), Err(PeerError::VersionMismatch));
    assert_eq!(parse_req(&[0xCF, 1]), Err(PeerError::VersionMismatch));
    assert_eq!(parse_req(&[5, 0]), Err(PeerError::UnknownVersion(5)));
    assert_eq!(C.version_mismatch_reply(), [6, 0]);
}

#[test]
fn request_address_errors() {
    assert_eq!(
        parse_req(&[6, 0, 1, 0, 80, 0x02, 1, 2, 3, 4, 0]),
        Err(PeerError::UnknownAddressType(2))
    );
    assert_eq!(
        parse_req(&[6, 0, 1, 0, 80, 0x03, 0, 0]),
        Err(PeerError::EmptyDomain)
    );
    assert_eq!(
        parse_req(&[6, 0, 1, 0, 80, 0x03, 2, b'a', 0, 0]),
        Err(PeerError::BadDomain)
    );
    assert_eq!(
        parse_req(&[6, 0, 1, 0, 80, 0x03, 2, 0xFF, 0xFE, 0]),
        Err(PeerError::BadDomain)
    );
}

#[test]
fn encode_refuses_unencodable_requests() {
    let long = Request {
        command: Command::CONNECT,
        target: TargetAddr::domain("d".repeat(256), 1),
        options: Options::new(),
    };
    assert!(C.encode_request(&long).is_err());
    let many = Request {
        command: Command::CONNECT,
        target: v4(1, 2, 3, 4, 5),
        options: Options(vec![
            Socks6Option::Unknown {
                kind: 0x40,
                data: vec![]
            };
            256
        ]),
    };
    assert_eq!(
        C.encode_request(&many),
        Err(EncodeError::TooLong("more than 255 options"))
    );
}

// ---------------------------------------------------------------- options

#[test]
fn unknown_kinds_and_codes_are_kept_raw_and_ignored() {
    let bytes = [
        0x05, 4, 9, 9, // unknown kind 05
        0x01, 5, 0x84, 0x99, 7, // unknown TCP code 99
        0x01, 3, 0x84, // stack option too short for a code
        0x01, 4, 0x41, 0x01, // TOS with no TOS byte (the draft's "length 4")
        0x04, 5, 0x09, 1, 2, // unknown idempotence type
        0xFF, 2, // empty vendor option
    ];
    let (opts, used) = parse_options(&bytes, 6, &limits())
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        opts.0,
        vec![
            Socks6Option::Unknown {
                kind: 5,
                data: vec![9, 9]
            },
            Socks6Option::Stack(StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::Unknown {
                    level: 4,
                    code: 0x99,
                    data: vec![7]
                }
            )),
            Socks6Option::Unknown {
                kind: 1,
                data: vec![0x84]
            },
            Socks6Option::Stack(StackOption::new(
                Leg::CLIENT_PROXY,
                StackValue::Unknown {
                    level: 1,
                    code: 1,
                    data: vec![]
                }
            )),
            Socks6Option::Idempotence(IdempotenceOption::Unknown {
                kind: 9,
                data: vec![1, 2]
            }),
            Socks6Option::Vendor {
                kind: 0xFF,
                data: vec![]
            },
        ]
    );
    // None of them is applied.
    assert_eq!(opts.stack_for(Leg::PROXY_REMOTE).count(), 0);
    assert_eq!(opts.stack_for(Leg::CLIENT_PROXY).count(), 0);
    assert_eq!(opts.token_request(), None);
    // And they re-encode byte for byte.
    let mut out = Vec::new();
    for o in &opts {
        draft05::encode_option(o, &mut out).unwrap();
    }
    assert_eq!(out, bytes);
}

#[test]
fn malformed_auth_and_idempotence_options_are_errors() {
    let bad: &[(&[u8], PeerError)] = &[
        (
            &[0x02, 3, 0],
            PeerError::BadOption("authentication method option without initial data length"),
        ),
        (
            &[0x03, 2],
            PeerError::BadOption("authentication data option without a method"),
        ),
        (
            &[0x04, 2],
            PeerError::BadOption("idempotence option without a type"),
        ),
        (
            &[0x04, 6, 0x00, 0, 0, 1],
            PeerError::BadOption("idempotence option of the wrong length for its type"),
        ),
        (
            &[0x04, 8, 0x02, 0, 0, 0, 1, 9],
            PeerError::BadOption("idempotence option of the wrong length for its type"),
        ),
        (
            &[0x04, 10, 0x01, 0, 0, 0, 1, 0, 0, 1],
            PeerError::BadOption("idempotence option of the wrong length for its type"),
        ),
        (
            &[0x04, 3, 0x03],
            PeerError::BadOption("idempotence option of the wrong length for its type"),
        ),
    ];
    for (b, e) in bad {
        assert_eq!(parse_options(b, 1, &limits()), Err(e.clone()), "{b:02x?}");
    }
}

#[test]
fn option_lengths_zero_and_one_are_errors() {
    for len in [0u8, 1] {
        let mut req = vec![6, 0, 1, 0, 80, 1, 1, 2, 3, 4, 1, 0xC0, len];
        req.extend_from_slice(&[0; 16]);
        assert_eq!(
            parse_req(&req),
            Err(PeerError::BadOption("length below 2")),
            "len {len}"
        );
    }
}

#[test]
fn an_option_running_past_the_message_waits_then_hits_the_cap() {
    // An option claiming 200 bytes, of which 3 arrived: the parser asks for
    // exactly the rest (the caller's handshake timeout ends a peer that
    // never sends it).
    let mut req = vec![6, 0, 1, 0, 80, 1, 1, 2, 3, 4, 1, 0xC0, 200, 1, 2, 3];
    assert_eq!(parse_req(&req), Ok(Parsed::Incomplete { needed: 200 - 5 }));
    // With a cap of 100 option bytes, the same option is refused before
    // anything more is buffered.
    let small = Socks6Limits {
        max_options_bytes: 100,
        ..limits()
    };
    assert_eq!(
        C.parse_request(&req, &small),
        Err(PeerError::OptionsTooLong(100))
    );
    // Options that add up past the cap: 3 × 40 bytes with a 100-byte cap.
    req.truncate(10);
    req.push(3);
    for _ in 0..3 {
        req.push(0xC0);
        req.push(40);
        req.extend_from_slice(&[0; 38]);
    }
    assert_eq!(
        C.parse_request(&req, &small),
        Err(PeerError::OptionsTooLong(100))
    );
    assert!(matches!(parse_req(&req), Ok(Parsed::Complete { .. })));
}

#[test]
fn ten_thousand_tiny_options_are_refused_by_the_cap() {
    // NOPTS is one byte: the most a client can claim is 255. With the
    // default cap of 64 the request fails as soon as NOPTS is read, whatever
    // follows it; the bytes behind are never looked at.
    let mut req = vec![6, 0, 1, 0, 80, 1, 1, 2, 3, 4, 255];
    assert_eq!(parse_req(&req), Err(PeerError::TooManyOptions(64)));
    for _ in 0..10_000 {
        req.extend_from_slice(&[0xC0, 2]);
    }
    assert_eq!(parse_req(&req), Err(PeerError::TooManyOptions(64)));
    // With a cap of 255, 255 tiny options parse and the rest is left over
    // (application data, as far as the request is concerned).
    let wide = Socks6Limits {
        max_options: 255,
        ..limits()
    };
    let (r, used) = C.parse_request(&req, &wide).unwrap().complete().unwrap();
    assert_eq!(r.options.len(), 255);
    assert_eq!(used, 11 + 255 * 2);
}

#[test]
fn initial_data_length_over_8192_is_an_error() {
    let opt = |n: u16| {
        let mut b = vec![0x02, 5];
        b.extend_from_slice(&n.to_be_bytes());
        b.push(0x02);
        b
    };
    assert_eq!(
        parse_options(&opt(8193), 1, &limits()),
        Err(PeerError::InitialDataTooLong(8193))
    );
    assert_eq!(
        parse_options(&opt(0xFFFF), 1, &limits()),
        Err(PeerError::InitialDataTooLong(0xFFFF))
    );
    let (o, _) = parse_options(&opt(8192), 1, &limits())
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(o.initial_data_len(), Ok(8192));
    // And we never encode one.
    let mut out = Vec::new();
    assert!(draft05::encode_option(
        &AuthMethodOption {
            initial_data_len: 8193,
            methods: vec![]
        }
        .into(),
        &mut out
    )
    .is_err());
}

#[test]
fn token_windows_of_zero_or_2_31_parse_but_are_never_granted_or_believed() {
    use sixsocks_proto::v6::idempotence::{serve_tokens, TokenPolicy, TokenWallet};
    for size in [0u32, 1 << 31, u32::MAX] {
        let mut b = vec![0x04, 7, 0x00];
        b.extend_from_slice(&size.to_be_bytes());
        let (o, _) = parse_options(&b, 1, &limits()).unwrap().complete().unwrap();
        assert_eq!(o.token_request(), Some(size));
        let mut slot = None;
        let d = serve_tokens(&mut slot, &o, &TokenPolicy::default(), 5);
        assert!(slot.is_none() && d.options.is_empty() && d.proceed);

        let mut b = vec![0x04, 11, 0x01, 0, 0, 0, 9];
        b.extend_from_slice(&size.to_be_bytes());
        let (o, _) = parse_options(&b, 1, &limits()).unwrap().complete().unwrap();
        let mut w = TokenWallet::new(4).unwrap();
        let _ = w.prepare();
        w.on_auth_reply(&o);
        assert_eq!(w.window(), None, "size {size}");
    }
}

// ---------------------------------------------------------------- replies

#[test]
fn auth_reply_golden_bytes() {
    let cases: Vec<(AuthReply, Vec<u8>)> = vec![
        (
            AuthReply {
                outcome: AuthOutcome::Success(Method::NONE),
                options: Options::new(),
            },
            vec![6, 0, 0, 0, 0],
        ),
        (
            AuthReply {
                outcome: AuthOutcome::Success(Method::USERPASS),
                options: Options(vec![
                    IdempotenceOption::ExpenditureReply(ExpenditureCode::SUCCESS).into(),
                    IdempotenceOption::WindowAdvertisement { base: 7, size: 16 }.into(),
                ]),
            },
            vec![6, 0, 0, 2, 2, 4, 4, 3, 1, 4, 11, 1, 0, 0, 0, 7, 0, 0, 0, 16],
        ),
        (
            AuthReply {
                outcome: AuthOutcome::Continue(Method::USERPASS),
                options: Options::new(),
            },
            vec![6, 0, 1, 2, 0],
        ),
        (
            AuthReply {
                outcome: AuthOutcome::Failure,
                options: Options::new(),
            },
            vec![6, 0, 1, 0xFF, 0],
        ),
    ];
    for (reply, bytes) in cases {
        assert_eq!(C.encode_auth_reply(&reply).unwrap(), bytes);
        assert_eq!(check_prefixes(&bytes, parse_auth), reply);
    }
}

#[test]
fn auth_reply_errors() {
    assert_eq!(
        parse_auth(&[6, 0, 2, 0, 0]),
        Err(PeerError::BadAuthReplyType(2))
    );
    assert_eq!(parse_auth(&[5, 0]), Err(PeerError::BadReplyVersion(5)));
    assert_eq!(parse_auth(&[6, 1]), Err(PeerError::VersionMismatch));
    assert_eq!(parse_auth(&[0xCF]), Err(PeerError::VersionMismatch));
    // The -05 mismatch reply is a prefix of an auth reply: incomplete.
    assert_eq!(parse_auth(&[6, 0]), Ok(Parsed::Incomplete { needed: 3 }));
}

#[test]
fn operation_reply_golden_bytes_and_codes() {
    let r = OperationReply::new(
        C.profile(),
        ReplyCode::TtlExpired,
        v4(10, 0, 0, 1, 1080),
        Options(vec![
            StackOption::new(Leg::PROXY_REMOTE, StackValue::Mptcp).into()
        ]),
    );
    let bytes = vec![0x09, 0x04, 0x38, 1, 10, 0, 0, 1, 1, 1, 4, 0x84, 2];
    assert_eq!(C.encode_operation_reply(&r).unwrap(), bytes);
    let back = check_prefixes(&bytes, parse_op);
    assert_eq!(back, r);
    assert_eq!(back.code(), ReplyCode::TtlExpired);
    // The code table: SOCKS5's plus 09; TTL expired is sent as 09.
    let table = [
        (ReplyCode::Succeeded, 0),
        (ReplyCode::GeneralFailure, 1),
        (ReplyCode::NotAllowed, 2),
        (ReplyCode::NetworkUnreachable, 3),
        (ReplyCode::HostUnreachable, 4),
        (ReplyCode::ConnectionRefused, 5),
        (ReplyCode::CommandNotSupported, 7),
        (ReplyCode::AddressTypeNotSupported, 8),
        (ReplyCode::TtlExpired, 9),
        (ReplyCode::ONION_DESC_NOT_FOUND, 4),
    ];
    for (code, wire) in table {
        assert_eq!(C.reply_codes().encode(code), wire, "{code}");
    }
    assert_eq!(
        C.reply_codes().decode(sixsocks_proto::V6Code(6)),
        ReplyCode::TtlExpired
    );
    assert_eq!(
        C.reply_codes().decode(sixsocks_proto::V6Code(0xF0)),
        ReplyCode::Other(0xF0)
    );
    for rep in 0..=0xFFu8 {
        let r = OperationReply {
            profile: C.profile(),
            rep: sixsocks_proto::V6Code(rep),
            bound: TargetAddr::domain("x.example", 1),
            options: Options::new(),
        };
        let b = C.encode_operation_reply(&r).unwrap();
        assert_eq!(check_prefixes(&b, parse_op).rep, rep);
    }
}

#[test]
fn udp_association_messages() {
    assert_eq!(
        C.encode_association_id(AssociationId(0xDEADBEEF)).unwrap(),
        [0xDE, 0xAD, 0xBE, 0xEF]
    );
    assert!(C.encode_association_id(AssociationId(1 << 32)).is_err());
    assert_eq!(
        check_prefixes(&[0xDE, 0xAD, 0xBE, 0xEF], |b| C.parse_association_id(b)),
        AssociationId(0xDEADBEEF)
    );
    assert_eq!(C.encode_confirmation(AssociationId(1)).unwrap(), [0]);
    check_prefixes(&[0], |b| C.parse_confirmation(b, AssociationId(1)));
    assert!(C.parse_confirmation(&[1], AssociationId(1)).is_err());
}

#[test]
fn datagram_header_golden_bytes_and_errors() {
    let h = DatagramHeader {
        association: AssociationId(0x01020304),
        target: TargetAddr::domain("dns.example", 53),
    };
    let d = C.datagram(&h, b"payload").unwrap();
    let mut want = vec![6, 0, 1, 2, 3, 4, 0, 53, 3, 11];
    want.extend_from_slice(b"dns.example");
    want.extend_from_slice(b"payload");
    assert_eq!(d, want);
    let (back, off) = C.parse_datagram(&d).map(|(h, r)| (h, r.start)).unwrap();
    assert_eq!(back, h);
    assert_eq!(&d[off..], b"payload");
    // Every truncation of the header is an error, never a panic.
    for k in 0..off {
        assert!(
            C.parse_datagram(&d[..k])
                .map(|(h, r)| (h, r.start))
                .is_err(),
            "prefix {k}"
        );
    }
    assert_eq!(
        C.parse_datagram(&[6, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
            .map(|(h, r)| (h, r.start)),
        Err(PeerError::VersionMismatch)
    );
    assert_eq!(
        C.parse_datagram(&[5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
            .map(|(h, r)| (h, r.start)),
        Err(PeerError::UnknownVersion(5))
    );
    // The confirmation request: an empty datagram to 0.0.0.0:0 or [::]:0.
    let z4 = DatagramHeader {
        association: AssociationId(9),
        target: TargetAddr::unspecified(),
    };
    assert!(z4.is_confirmation_request());
    let z6 = DatagramHeader {
        association: AssociationId(9),
        target: TargetAddr::ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    assert!(z6.is_confirmation_request());
    assert!(!h.is_confirmation_request());
    let d = C.datagram(&z4, &[]).unwrap();
    assert_eq!(d, [6, 0, 0, 0, 0, 9, 0, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn auth_data_option_round_trips_and_hides_the_password() {
    let d = draft05::userpass_auth_data(b"bob", &Password::new("hunter2")).unwrap();
    let o: Socks6Option = d.clone().into();
    let mut out = Vec::new();
    draft05::encode_option(&o, &mut out).unwrap();
    let (back, _) = parse_options(&out, 1, &limits())
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(back.auth_data(Method::USERPASS), Some(&d));
    assert!(!format!("{back:?}").contains("hunter2"));
    let _ = AuthDataOption {
        method: Method(0x80),
        data: Password::new(vec![]),
    };
}

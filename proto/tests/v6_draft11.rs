//! Golden bytes of the aligned profiles: draft -11 (each test names the
//! figure of `draft-olteanu-intarea-socks-6-11.mkd` its bytes are written
//! from) and the reference dialect (`ref207-captures.md`: bytes captured
//! from the reference implementation). Every message decodes to what the
//! figure says and re-encodes byte for byte; bad framing is refused.

use sixsocks_proto::parse::Parsed;
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake};
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::{
    AssociationId, AuthDataOption, AuthMethodOption, AuthOutcome, AuthReply, Codec, DatagramHeader,
    ExpenditureCode, IdempotenceOption, Leg, OperationReply, Options, Parity, Profile, Request,
    SessionOption, SessionUse, Socks6Limits, Socks6Option, StackOption, StackValue, DRAFT11,
    REF207,
};
use sixsocks_proto::{Command, Instruction, Password, PeerError, ReplyCode, TargetAddr};

/// Bytes from hex, ignoring spaces and `|`.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn limits() -> Socks6Limits {
    Socks6Limits::default()
}

fn request(c: &dyn Codec, bytes: &[u8]) -> Request {
    match c.parse_request(bytes, &limits()) {
        Ok(Parsed::Complete { value, consumed }) => {
            assert_eq!(consumed, bytes.len(), "{}: consumed", c.name());
            assert_eq!(
                c.encode_request(&value).unwrap(),
                bytes,
                "{}: re-encoded",
                c.name()
            );
            // Every strict prefix asks for more.
            for k in 0..bytes.len() {
                assert!(
                    matches!(
                        c.parse_request(&bytes[..k], &limits()),
                        Ok(Parsed::Incomplete { .. })
                    ),
                    "{}: prefix {k}",
                    c.name()
                );
            }
            value
        }
        other => panic!("{}: {other:?}", c.name()),
    }
}

fn auth_reply(c: &dyn Codec, bytes: &[u8]) -> AuthReply {
    match c.parse_auth_reply(bytes, &limits()) {
        Ok(Parsed::Complete { value, consumed }) => {
            assert_eq!(consumed, bytes.len());
            assert_eq!(c.encode_auth_reply(&value).unwrap(), bytes, "re-encoded");
            value
        }
        other => panic!("{other:?}"),
    }
}

fn op_reply(c: &dyn Codec, bytes: &[u8]) -> OperationReply {
    match c.parse_operation_reply(bytes, &limits()) {
        Ok(Parsed::Complete { value, consumed }) => {
            assert_eq!(consumed, bytes.len());
            assert_eq!(
                c.encode_operation_reply(&value).unwrap(),
                bytes,
                "re-encoded"
            );
            value
        }
        other => panic!("{other:?}"),
    }
}

/// One option, alone in a request's options area.
fn option(c: &dyn Codec, bytes: &[u8]) -> Socks6Option {
    let mut out = Vec::new();
    let mut req = hex("06 00 0000 0000 00 01 00000000");
    req[0] = c.layout().version[0];
    req[2..4].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
    req.extend_from_slice(bytes);
    let r = request(c, &req);
    assert_eq!(r.options.len(), 1, "{:?}", r.options);
    c.encode_option(&r.options.0[0], &mut out).unwrap();
    assert_eq!(out, bytes);
    r.options.0[0].clone()
}

fn stack(leg: Leg, value: StackValue) -> Socks6Option {
    Socks6Option::Stack(StackOption::new(leg, value))
}

// ------------------------------------------------------------- -11 figures

#[test]
fn fig_req_a_request_with_a_domain_counts_its_padding() {
    // fig-req: Version 6 | CONNECT | options length | port | padding | ATYP
    // domain "example.com" (11 bytes: 1 + 11 = 12, no padding) port 443.
    let r = request(
        &DRAFT11,
        &hex("06 01 0000 01bb 00 03 0b 6578616d706c652e636f6d"),
    );
    assert_eq!(r.command, Command::CONNECT);
    assert_eq!(r.target, TargetAddr::domain("example.com", 443));
    // "a.io" (4 bytes): 1 + 4 = 5, padded to 8; -11 counts the padding.
    let bytes = hex("06 01 0000 0050 00 03 07 612e696f 000000");
    let r = request(&DRAFT11, &bytes);
    assert_eq!(r.target, TargetAddr::domain("a.io", 80));
    // The reference does not count it: length 4, the same padding.
    let mut theirs = hex("cf 01 0000 0050 00 03 04 612e696f 000000");
    let r = request(&REF207, &theirs);
    assert_eq!(r.target, TargetAddr::domain("a.io", 80));
    // Each reads the other's form too.
    theirs[0] = 0x06;
    let read = DRAFT11.parse_request(&theirs, &limits()).unwrap();
    assert!(
        matches!(read, Parsed::Complete { value, .. } if value.target == TargetAddr::domain("a.io", 80))
    );
    let mut ours = bytes.clone();
    ours[0] = 0xCF;
    let read = REF207.parse_request(&ours, &limits()).unwrap();
    assert!(
        matches!(read, Parsed::Complete { value, .. } if value.target == TargetAddr::domain("a.io", 80))
    );
}

#[test]
fn fig_vrep_the_version_mismatch_is_one_byte() {
    assert_eq!(DRAFT11.version_mismatch_reply(), [0x06]);
    assert_eq!(REF207.version_mismatch_reply(), [0xCF]);
    // A client reads a mismatch leniently: its own byte alone then EOF,
    // or another SOCKS 6 version byte (the reference answers `CF` to a -11
    // request, -05 answers `06 00`).
    assert!(DRAFT11.is_version_mismatch(&[0x06], true));
    assert!(!DRAFT11.is_version_mismatch(&[0x06], false));
    assert!(DRAFT11.is_version_mismatch(&[0xCF], false));
    assert!(DRAFT11.is_version_mismatch(&[0x06, 0x00], true));
    assert!(REF207.is_version_mismatch(&[0x06, 0x00], false));
    assert!(REF207.is_version_mismatch(&[0xCF], true));
    assert!(!REF207.is_version_mismatch(&hex("cf000000"), true));
    assert!(!DRAFT11.is_version_mismatch(&[0x05, 0x00], true));
}

#[test]
fn fig_irep_and_fig_frep() {
    // fig-irep: success, no options.
    let a = auth_reply(&DRAFT11, &hex("06 00 0000"));
    assert_eq!(a.outcome, AuthOutcome::Success(Method::NONE));
    // fig-frep: success, bound 192.0.2.1:1080, no options.
    let o = op_reply(&DRAFT11, &hex("06 00 0000 0438 00 01 c0000201"));
    assert_eq!(o.code(), ReplyCode::Succeeded);
    assert_eq!(o.bound.to_string(), "192.0.2.1:1080");
    // 0x09: connection attempt timed out.
    let o = op_reply(
        &DRAFT11,
        &hex("06 09 0000 0000 00 04 00000000000000000000000000000000"),
    );
    assert_eq!(o.code(), ReplyCode::TtlExpired);
    assert_eq!(o.profile, Profile::Draft11);
}

#[test]
fn fig_opt_stack_every_stack_option() {
    let p = Leg::PROXY_REMOTE;
    let cases: Vec<(&str, Socks6Option)> = vec![
        // fig-opt-stack-tos: leg 3 (both), level IP, code 1, TOS 0xb8.
        (
            "0001 0008 c1 01 b8 00",
            stack(Leg::BOTH, StackValue::Tos(0xB8)),
        ),
        // fig-opt-stack-eyeball: leg 2, level IP, code 2, desired.
        (
            "0001 0008 81 02 02 00",
            stack(p, StackValue::HappyEyeballs(true)),
        ),
        // fig-opt-stack-ttl: TTL 5.
        ("0001 0008 81 03 05 00", stack(p, StackValue::Ttl(5))),
        // fig-opt-stack-df: fragmentation not desired.
        (
            "0001 0008 81 04 02 00",
            stack(p, StackValue::NoFragment(true)),
        ),
        // fig-opt-stack-tfo: leg 2, level TCP, payload size 1400.
        (
            "0001 0008 84 01 0578",
            stack(p, StackValue::TcpFastOpen { payload_size: 1400 }),
        ),
        // fig-opt-stack-mp: MPTCP desired (2) / not desired (1).
        ("0001 0008 84 02 02 00", stack(p, StackValue::Mptcp)),
        ("0001 0008 84 02 01 00", stack(p, StackValue::MptcpOff)),
        // fig-opt-stack-backlog: code 3, backlog 16.
        (
            "0001 0008 84 03 0010",
            stack(p, StackValue::ListenBacklog(16)),
        ),
        // fig-opt-stack-udperr: level UDP, code 1, desired.
        (
            "0001 0008 85 01 02 00",
            stack(p, StackValue::UdpError(true)),
        ),
        // fig-opt-stack-parity: even, reserve.
        (
            "0001 0008 85 02 01 01",
            stack(
                p,
                StackValue::PortParity {
                    parity: Parity::EVEN,
                    reserve: true,
                },
            ),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(option(&DRAFT11, &hex(bytes)), want, "{bytes}");
    }
}

#[test]
fn the_reference_dialect_reverses_mptcp_and_lacks_the_later_stack_options() {
    // The reference: 1 = available, 2 = not available.
    assert_eq!(
        option(&REF207, &hex("0001 0008 84 02 01 00")),
        stack(Leg::PROXY_REMOTE, StackValue::Mptcp)
    );
    assert_eq!(
        option(&REF207, &hex("0001 0008 84 02 02 00")),
        stack(Leg::PROXY_REMOTE, StackValue::MptcpOff)
    );
    // TTL, no-fragment, UDP error and port parity: unknown (ignored) there,
    // and not encodable.
    for bytes in [
        "0001 0008 81 03 05 00",
        "0001 0008 81 04 02 00",
        "0001 0008 85 01 02 00",
    ] {
        assert!(
            matches!(
                option(&REF207, &hex(bytes)),
                Socks6Option::Stack(StackOption {
                    value: StackValue::Unknown { .. },
                    ..
                })
            ),
            "{bytes}"
        );
    }
    assert!(!REF207.can_encode(&stack(Leg::PROXY_REMOTE, StackValue::Ttl(1))));
    assert!(DRAFT11.can_encode(&stack(Leg::PROXY_REMOTE, StackValue::Ttl(1))));
    // Session untrusted (kind 7) is the reference's; -11 keeps it raw.
    assert_eq!(
        option(&REF207, &hex("0007 0004")),
        Socks6Option::Session(SessionOption::Untrusted)
    );
    assert_eq!(
        option(&DRAFT11, &hex("0007 0004")),
        Socks6Option::Unknown {
            kind: 7,
            data: vec![]
        }
    );
}

#[test]
fn fig_opt_auth_method_and_data_options() {
    // fig-opt-auth-method-advert: 13 bytes of initial data, method 02,
    // one byte of padding.
    assert_eq!(
        option(&DRAFT11, &hex("0002 0008 000d 02 00")),
        Socks6Option::AuthMethod(AuthMethodOption {
            initial_data_len: 13,
            methods: vec![Method::USERPASS],
        })
    );
    // fig-opt-auth-method-select: method 02.
    assert_eq!(
        option(&DRAFT11, &hex("0003 0008 02 000000")),
        Socks6Option::AuthSelect(Method::USERPASS)
    );
    // fig-passwd-req: RFC 1929 "alice"/"secret" and one padding byte.
    let o = option(
        &DRAFT11,
        &hex("0004 0014 02 01 05 616c696365 06 736563726574 00"),
    );
    assert_eq!(
        o,
        Socks6Option::AuthData(AuthDataOption {
            method: Method::USERPASS,
            data: Password::new(hex("01 05 616c696365 06 736563726574 00")),
        })
    );
    // The client builds the same option from the credentials.
    let built = DRAFT11
        .userpass_auth_data(b"alice", &Password::new(b"secret".to_vec()))
        .unwrap();
    let mut out = Vec::new();
    DRAFT11.encode_option(&built.into(), &mut out).unwrap();
    assert_eq!(out, hex("0004 0014 02 01 05 616c696365 06 736563726574 00"));
    // fig-passwd-reply: method 02, RFC 1929 reply 01 00, padding.
    assert_eq!(
        option(&DRAFT11, &hex("0004 0008 02 0100 00")),
        Socks6Option::AuthData(AuthDataOption {
            method: Method::USERPASS,
            data: Password::new(hex("0100 00")),
        })
    );
}

#[test]
fn fig_opt_session_options() {
    use SessionOption::*;
    assert_eq!(
        option(&DRAFT11, &hex("0005 0004")),
        Socks6Option::Session(Request)
    );
    assert_eq!(
        option(&DRAFT11, &hex("0006 000c 22edc95de4ff1b3f")),
        Socks6Option::Session(Id(hex("22edc95de4ff1b3f")))
    );
    assert_eq!(
        option(&DRAFT11, &hex("0008 0004")),
        Socks6Option::Session(Ok)
    );
    assert_eq!(
        option(&DRAFT11, &hex("0009 0004")),
        Socks6Option::Session(Invalid)
    );
    assert_eq!(
        option(&DRAFT11, &hex("000a 0004")),
        Socks6Option::Session(Teardown)
    );
    // An empty session id, or data in a session option, is refused.
    for bad in ["0006 0004", "0005 0008 00000000"] {
        let mut req = hex("06 00 0000 0000 00 01 00000000");
        let o = hex(bad);
        req[3] = o.len() as u8;
        req.extend_from_slice(&o);
        assert!(DRAFT11.parse_request(&req, &limits()).is_err(), "{bad}");
    }
}

#[test]
fn fig_opt_idem_idempotence_options() {
    use IdempotenceOption::*;
    // fig-opt-idem-req: window of 200.
    assert_eq!(
        option(&DRAFT11, &hex("000b 0008 000000c8")),
        Socks6Option::Idempotence(TokenRequest { window_size: 200 })
    );
    // fig-opt-idem-advert.
    assert_eq!(
        option(&DRAFT11, &hex("000c 000c 5027584d 000000c8")),
        Socks6Option::Idempotence(WindowAdvertisement {
            base: 0x5027584d,
            size: 200
        })
    );
    // fig-opt-idem-spend: the text's length 8, not the figure's 4.
    assert_eq!(
        option(&DRAFT11, &hex("000d 0008 0a986c38")),
        Socks6Option::Idempotence(Expenditure { token: 0x0a986c38 })
    );
    // fig-opt-idem-spend-accept / -reject.
    assert_eq!(
        option(&DRAFT11, &hex("000e 0004")),
        Socks6Option::Idempotence(ExpenditureReply(ExpenditureCode::SUCCESS))
    );
    assert_eq!(
        option(&DRAFT11, &hex("000f 0004")),
        Socks6Option::Idempotence(ExpenditureReply(ExpenditureCode::REJECTED))
    );
    // Every code but success is sent as "rejected".
    let mut out = Vec::new();
    DRAFT11
        .encode_option(
            &ExpenditureReply(ExpenditureCode::DUPLICATE).into(),
            &mut out,
        )
        .unwrap();
    assert_eq!(out, hex("000f 0004"));
}

#[test]
fn unknown_and_experimental_options_are_kept_and_ignored() {
    assert_eq!(
        option(&DRAFT11, &hex("1234 0004")),
        Socks6Option::Unknown {
            kind: 0x1234,
            data: vec![]
        }
    );
    assert_eq!(
        option(&DRAFT11, &hex("fc01 0008 01020304")),
        Socks6Option::Vendor {
            kind: 0xFC01,
            data: hex("01020304")
        }
    );
    // -05-only values cannot be sent in -11.
    assert!(!DRAFT11.can_encode(&stack(
        Leg::PROXY_REMOTE,
        StackValue::MptcpScheduler(sixsocks_proto::v6::MptcpScheduler::DEFAULT)
    )));
}

#[test]
fn fig_udp_messages() {
    let id = AssociationId(0x0102030405060708);
    // fig-udp-assoc-init / fig-udp-assoc-confirm.
    let init = hex("06 01 000c 0102030405060708");
    assert_eq!(DRAFT11.encode_association_id(id).unwrap(), init);
    assert_eq!(
        DRAFT11.parse_association_id(&init),
        Ok(Parsed::Complete {
            value: id,
            consumed: 12
        })
    );
    let confirm = hex("06 02 000c 0102030405060708");
    assert_eq!(DRAFT11.encode_confirmation(id).unwrap(), confirm);
    assert_eq!(
        DRAFT11.parse_confirmation(&confirm, id),
        Ok(Parsed::Complete {
            value: (),
            consumed: 12
        })
    );
    assert!(DRAFT11
        .parse_confirmation(&confirm, AssociationId(9))
        .is_err());
    assert!(DRAFT11.parse_association_id(&confirm).is_err());
    // fig-dgram-hdr: datagram to 192.0.2.1:53 with "hi", then padding
    // after the message, which is ignored.
    let h = DatagramHeader {
        association: id,
        target: TargetAddr::ip([192, 0, 2, 1].into(), 53),
    };
    let d = DRAFT11.datagram(&h, b"hi").unwrap();
    assert_eq!(
        d,
        hex("06 03 0016 0102030405060708 01 00 0035 c0000201 6869")
    );
    let mut padded = d.clone();
    padded.extend_from_slice(b"junk");
    let (back, range) = DRAFT11.parse_datagram(&padded).unwrap();
    assert_eq!((back, &padded[range]), (h.clone(), &b"hi"[..]));
    // A message longer than its datagram is dropped.
    assert_eq!(
        DRAFT11.parse_datagram(&d[..d.len() - 1]),
        Err(PeerError::Truncated)
    );
    // The reference dialect's pre -09 framing.
    assert_eq!(
        REF207.encode_association_id(id).unwrap(),
        hex("0102030405060708")
    );
    assert_eq!(REF207.encode_confirmation(id).unwrap(), [0]);
    let d = REF207.datagram(&h, b"hi").unwrap();
    assert_eq!(d, hex("cf 01 0035 0102030405060708 c0000201 6869"));
    let (back, range) = REF207.parse_datagram(&d).unwrap();
    assert_eq!((back, &d[range]), (h, &b"hi"[..]));
}

// ------------------------------------------------------ reference captures

#[test]
fn capture_1a_connect_with_an_advertisement_and_initial_data() {
    let r = request(&REF207, &hex("cf0100081e6100017f00000100020008000d0000"));
    assert_eq!(r.command, Command::CONNECT);
    assert_eq!(r.target.to_string(), "127.0.0.1:7777");
    assert_eq!(r.options.initial_data_len(), Ok(13));
    assert!(r.options.offered_methods().is_empty());
    let a = auth_reply(&REF207, &hex("cf000000"));
    assert_eq!(a.outcome, AuthOutcome::Success(Method::NONE));
    let o = op_reply(&REF207, &hex("cf000000d5bc00017f000001"));
    assert_eq!(o.code(), ReplyCode::Succeeded);
    assert_eq!(o.bound.to_string(), "127.0.0.1:54716");
}

#[test]
fn capture_1c_1d_zero_rtt_username_password() {
    let r = request(
        &REF207,
        &hex("cf01001c1e6100017f00000100020008000b020000040014020105616c6963650673656372657400"),
    );
    assert_eq!(r.options.initial_data_len(), Ok(11));
    assert_eq!(r.options.offered_methods(), [Method::USERPASS]);
    assert!(r.options.auth_data(Method::USERPASS).is_some());
    // Success: the RFC 1929 reply inside an authentication data option.
    let a = auth_reply(&REF207, &hex("cf0000080004000802010000"));
    assert_eq!(a.outcome, AuthOutcome::Success(Method::USERPASS));
    // Failure: type 1, the RFC 1929 failure, no method selection.
    let a = auth_reply(&REF207, &hex("cf0100080004000802010100"));
    assert_eq!(a.outcome, AuthOutcome::Failure);
    // A refused closed port (1h): code 5, bound 0.0.0.0:0.
    let o = op_reply(&REF207, &hex("cf0500000000000100000000"));
    assert_eq!(o.code(), ReplyCode::ConnectionRefused);
}

#[test]
fn capture_2_a_session_with_tokens() {
    // Session supplication: NOOP, session request, window request of 200.
    let r = request(
        &REF207,
        &hex("cf00000c000000010000000000050004000b0008000000c8"),
    );
    assert_eq!(r.command, Command::NOOP);
    assert!(r.options.has_session(&SessionOption::Request));
    assert_eq!(r.options.token_request(), Some(200));
    // Its authentication reply: session id, window.
    let a = auth_reply(
        &REF207,
        &hex("cf0000180006000c5b691d1e562e714c000c000c0a986c38000000c8"),
    );
    assert_eq!(a.options.session_id(), Some(&hex("5b691d1e562e714c")[..]));
    assert_eq!(a.options.window_advertisement(), Some((0x0a986c38, 200)));
    op_reply(&REF207, &hex("cf0000000000000100000000"));
    // A CONNECT in the session spending a token, data behind it.
    let first = hex(
        "cf0100141e6100017f0000010006000c5b691d1e562e714c000d00080a986c38\
         66697273742061707020636f6e6e656374696f6e",
    );
    let r = request(&REF207, &first[..32]);
    assert_eq!(r.options.session_id(), Some(&hex("5b691d1e562e714c")[..]));
    assert_eq!(r.options.token_expenditure(), Some(0x0a986c38));
    // Session OK, window, token accepted.
    let a = auth_reply(
        &REF207,
        &hex("cf00001400080004000c000c0a986c38000000c8000e0004"),
    );
    assert!(a.options.has_session(&SessionOption::Ok));
    assert_eq!(
        a.options.expenditure_reply(),
        Some(ExpenditureCode::SUCCESS)
    );
    // The server machine: the request is a session member, not
    // authenticated, with the app's bytes behind it.
    let mut hs = ServerHandshake::new(HandshakeConfig {
        require_auth: true,
        ..Default::default()
    })
    .with_socks6(limits());
    hs.input().push(&first);
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks6(req),
            rest,
        } => {
            assert_eq!(req.profile, Profile::Ref207);
            assert_eq!(req.session, SessionUse::Member(hex("5b691d1e562e714c")));
            assert_eq!(req.credentials, sixsocks_proto::Credentials::None);
            assert_eq!(rest, b"first app connection");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_server_machine_answers_a_wrong_password_as_the_reference_does() {
    let mut hs = ServerHandshake::new(HandshakeConfig {
        require_auth: true,
        ..Default::default()
    })
    .with_socks6(limits());
    hs.input().push(&hex(
        "cf01001c1e6100017f000001000200080004020000040014020105616c6963650577726f6e670000",
    ));
    // Its 4 bytes of initial data.
    hs.input().push(b"data");
    assert!(matches!(hs.step(), Instruction::Event(_)));
    hs.verdict(false);
    match hs.step() {
        Instruction::Failed { reply, .. } => assert_eq!(reply, hex("cf0100080004000802010100")),
        other => panic!("{other:?}"),
    }
    // No credentials at all: the same answer.
    let mut hs = ServerHandshake::new(HandshakeConfig {
        require_auth: true,
        ..Default::default()
    })
    .with_socks6(limits());
    hs.input()
        .push(&hex("cf0100081e6100017f0000010002000800040000"));
    hs.input().push(b"data");
    match hs.step() {
        Instruction::Failed { reply, .. } => assert_eq!(reply, hex("cf0100080004000802010100")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_success_reply_carries_the_userpass_reply_in_sessions_profiles() {
    let mut hs = ServerHandshake::new(HandshakeConfig {
        require_auth: true,
        ..Default::default()
    })
    .with_socks6(limits());
    hs.input().push(&hex(
        "cf01001c1e6100017f00000100020008000b020000040014020105616c6963650673656372657400",
    ));
    hs.input().push(b"hello alice");
    assert!(matches!(hs.step(), Instruction::Event(_)));
    hs.verdict(true);
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks6(req),
            rest,
        } => {
            assert_eq!(req.initial_data, b"hello alice");
            assert!(rest.is_empty());
            assert_eq!(
                req.auth_reply(Options::new()).unwrap(),
                hex("cf0000080004000802010000")
            );
        }
        other => panic!("{other:?}"),
    }
}

// -------------------------------------------------------------- bad input

/// Each malformed -11 request is an error (the server closes with nothing
/// sent and logs the error).
#[test]
fn bad_framing_is_refused() {
    let cases = [
        // Options length not a multiple of 4.
        (
            "06 01 0006 0050 00 01 7f000001 0005 0004 0000",
            "options length",
        ),
        // Header padding not zero.
        ("06 01 0000 0050 01 01 7f000001", "header padding"),
        // Domain padding not zero (uncounted, reference form).
        ("06 01 0000 0050 00 03 04 612e696f 000100", "domain padding"),
        // An option length not a multiple of 4.
        (
            "06 01 0008 0050 00 01 7f000001 1234 0006 0000 0000",
            "option length",
        ),
        // An option shorter than its header.
        ("06 01 0004 0050 00 01 7f000001 1234 0002", "short option"),
        // An option running past the options area.
        ("06 01 0004 0050 00 01 7f000001 1234 0008", "runs past"),
        // A stack option whose padding byte is not zero.
        (
            "06 01 0008 0050 00 01 7f000001 0001 0008 81 01 b8 01",
            "stack padding",
        ),
        // Initial data over 2^14.
        (
            "06 01 0008 0050 00 01 7f000001 0002 0008 4001 0000",
            "initial data",
        ),
    ];
    for (bytes, what) in cases {
        let b = hex(bytes);
        assert!(
            DRAFT11.parse_request(&b, &limits()).is_err(),
            "{what}: {:?}",
            DRAFT11.parse_request(&b, &limits())
        );
    }
    // A total options length over the cap is refused as soon as the
    // length is read (four bytes in), before the options are buffered.
    let small = Socks6Limits {
        max_options_bytes: 64,
        ..limits()
    };
    assert_eq!(
        DRAFT11.parse_request(&hex("06 01 0044"), &small),
        Err(PeerError::OptionsTooLong(64))
    );
    assert_eq!(
        DRAFT11.parse_request(&hex("06 01 fffc"), &limits()),
        Err(PeerError::OptionsTooLong(4096))
    );
    // Too many options.
    let few = Socks6Limits {
        max_options: 2,
        ..limits()
    };
    let b = hex("06 01 000c 0050 00 01 7f000001 1234 0004 1234 0004 1234 0004");
    assert_eq!(
        DRAFT11.parse_request(&b, &few),
        Err(PeerError::TooManyOptions(2))
    );
}

#[test]
fn the_server_machine_closes_silently_on_bad_framing() {
    let mut hs = ServerHandshake::new(HandshakeConfig::default()).with_socks6(limits());
    hs.input().push(&hex("cf01 0006 0050 00 01 7f000001"));
    match hs.step() {
        Instruction::Failed { reply, error } => {
            assert!(reply.is_empty());
            assert!(error.to_string().contains("multiple of 4"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fig_udp_err_and_datagrams_on_the_tcp_stream() {
    use sixsocks_proto::v6::{UdpErrorCode, UdpErrorReport};
    let id = AssociationId(0x0102030405060708);
    // fig-udp-err: the datagram to 192.0.2.1:53 met "host unreachable",
    // reported by 198.51.100.1.
    let report = UdpErrorReport {
        association: id,
        dest: "192.0.2.1:53".parse().unwrap(),
        reporter: "198.51.100.1".parse().unwrap(),
        code: UdpErrorCode::HOST_UNREACHABLE,
    };
    let bytes = hex("06 04 001c 0102030405060708 01 00 0035 c0000201 01 02 0000 c6336401");
    assert_eq!(DRAFT11.udp_error(&report).unwrap(), bytes);
    assert_eq!(DRAFT11.parse_udp_error(&bytes), Ok(report.clone()));
    assert!(DRAFT11.parse_udp_error(&bytes[..bytes.len() - 1]).is_err());
    // The reference dialect and -05 have no such message.
    assert!(REF207.udp_error(&report).is_err());
    // On the TCP stream: datagram messages one after another, each framed
    // by its length; a partial one asks for the rest.
    let h = DatagramHeader {
        association: id,
        target: TargetAddr::ip([192, 0, 2, 1].into(), 53),
    };
    let one = DRAFT11.datagram(&h, b"one").unwrap();
    let two = DRAFT11.datagram(&h, b"second").unwrap();
    let stream = [one.clone(), two.clone()].concat();
    match DRAFT11.parse_stream_datagram(&stream) {
        Ok(Parsed::Complete {
            value: (back, range),
            consumed,
        }) => {
            assert_eq!(back, h);
            assert_eq!(&stream[range], b"one");
            assert_eq!(consumed, one.len());
        }
        other => panic!("{other:?}"),
    }
    for k in 1..two.len() {
        assert!(
            matches!(
                DRAFT11.parse_stream_datagram(&two[..k]),
                Ok(Parsed::Incomplete { .. })
            ),
            "prefix {k}"
        );
    }
    // An error message from a client on the stream is refused.
    assert!(DRAFT11.parse_stream_datagram(&bytes).is_err());
    assert!(REF207.parse_stream_datagram(&one).is_err());
}

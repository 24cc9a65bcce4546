//! Everything in one read: every machine, given a whole flight at once
//! (several messages, and the application's or the target's bytes behind
//! them), answers each message in order and hands over exactly the bytes
//! past the handshake.

use sixsocks_proto::client::{ClientHandshake, ClientRequest};
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Verify};
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::client::{ClientRequest as V6Request, Event, Final, Socks6Client};
use sixsocks_proto::v6::{
    AuthMethodOption, AuthOutcome, AuthReply, OperationReply, Options, Profile, Request,
    Socks6Limits,
};
use sixsocks_proto::{Command, Instruction, Password, ReplyCode, TargetAddr, Version};

fn target() -> TargetAddr {
    TargetAddr::domain("example.com", 443)
}

// ---------------------------------------------------------------- server

#[test]
fn server_socks4a_request_and_data_in_one_read() {
    let mut hs = ServerHandshake::new(HandshakeConfig::default());
    let mut flight = b"\x04\x01\x01\xbb\x00\x00\x00\x01bob\x00example.com\x00".to_vec();
    flight.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(hs.input().push(&flight), flight.len());
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks(r),
            rest,
        } => {
            assert_eq!((r.version, r.target), (Version::V4a, target()));
            assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_socks6_request_initial_data_and_more_in_one_read() {
    let mut hs =
        ServerHandshake::new(HandshakeConfig::default()).with_socks6(Socks6Limits::default());
    let codec = Profile::Draft05.codec();
    let mut flight = codec
        .encode_request(&Request {
            command: Command::CONNECT,
            target: target(),
            options: Options(vec![AuthMethodOption {
                initial_data_len: 5,
                methods: vec![],
            }
            .into()]),
        })
        .unwrap();
    flight.extend_from_slice(b"HELLOand after");
    assert_eq!(hs.input().push(&flight), flight.len());
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks6(r),
            rest,
        } => {
            assert_eq!(r.initial_data, b"HELLO");
            assert_eq!(rest, b"and after");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- clients

fn v5_request(username: Option<&[u8]>) -> ClientRequest {
    ClientRequest {
        version: Version::V5,
        command: Command::CONNECT,
        target: target(),
        username: username.map(<[u8]>::to_vec),
        password: username.map(|_| Password::new("pw")),
    }
}

/// A SOCKS5 success reply for 192.0.2.1:1080.
const V5_SUCCESS: [u8; 10] = [5, 0, 0, 1, 192, 0, 2, 1, 0x04, 0x38];

#[test]
fn socks5_client_choice_reply_and_data_in_one_read() {
    let (mut c, first) = ClientHandshake::new(v5_request(None)).unwrap();
    assert_eq!(first, [5, 1, 0]);
    let flight = [&[5u8, 0][..], &V5_SUCCESS, b"target speaks first"].concat();
    assert_eq!(c.input().push(&flight), flight.len());
    assert!(matches!(c.step(), Instruction::Send(req) if req[..3] == [5, 1, 0]));
    match c.step() {
        Instruction::Finished { value, rest } => {
            assert_eq!(value.code, ReplyCode::Succeeded);
            assert_eq!(rest, b"target speaks first");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn socks5_client_with_password_all_replies_and_data_in_one_read() {
    let (mut c, _) = ClientHandshake::new(v5_request(Some(b"alice"))).unwrap();
    let flight = [&[5u8, 2][..], &[1, 0], &V5_SUCCESS, b"data"].concat();
    assert_eq!(c.input().push(&flight), flight.len());
    assert!(matches!(c.step(), Instruction::Send(auth) if auth[0] == 1));
    assert!(matches!(c.step(), Instruction::Send(req) if req[0] == 5));
    match c.step() {
        Instruction::Finished { rest, .. } => assert_eq!(rest, b"data"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn socks6_client_both_replies_and_data_in_one_read() {
    let (mut c, _) = Socks6Client::new(V6Request::new(Command::CONNECT, target())).unwrap();
    let codec = Profile::Draft05.codec();
    let mut flight = codec
        .encode_auth_reply(&AuthReply {
            outcome: AuthOutcome::Success(Method::NONE),
            options: Options::new(),
        })
        .unwrap();
    flight.extend(
        codec
            .encode_operation_reply(&OperationReply::new(
                Profile::Draft05,
                ReplyCode::Succeeded,
                TargetAddr::unspecified(),
                Options::new(),
            ))
            .unwrap(),
    );
    flight.extend_from_slice(b"from the target");
    assert_eq!(c.input().push(&flight), flight.len());
    assert!(matches!(
        c.step(),
        Instruction::Event(Event::Authenticated(_))
    ));
    match c.step() {
        Instruction::Finished {
            value: Final::Reply(reply),
            rest,
        } => {
            assert_eq!(reply.code(), ReplyCode::Succeeded);
            assert_eq!(rest, b"from the target");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_socks5_greeting_auth_request_and_data_in_one_read() {
    let mut hs = ServerHandshake::new(HandshakeConfig {
        require_auth: true,
        lenient_auth: false,
    });
    let (_, greeting) = ClientHandshake::new(v5_request(Some(b"alice"))).unwrap();
    let auth = b"\x01\x05alice\x02pw";
    let request = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb";
    let flight = [&greeting[..], auth, request, b"early"].concat();
    assert_eq!(hs.input().push(&flight), flight.len());
    assert_eq!(hs.step(), Instruction::Send(vec![5, 2]));
    match hs.step() {
        Instruction::Event(Verify { username, .. }) => assert_eq!(username, b"alice"),
        other => panic!("{other:?}"),
    }
    hs.verdict(true);
    assert_eq!(hs.step(), Instruction::Send(vec![1, 0]));
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks(r),
            rest,
        } => {
            assert_eq!(r.target, target());
            assert_eq!(rest, b"early");
        }
        other => panic!("{other:?}"),
    }
}

//! The client state machine against the server state machine, in memory:
//! no sockets, two byte queues delivering at most `mtu` bytes per turn.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{creds, no_auth, round_trip, RoundTrip};
use sixsocks_proto::client::{ClientHandshake, ClientRequest};
use sixsocks_proto::server::HandshakeConfig;
use sixsocks_proto::Instruction;
use sixsocks_proto::{Command, Credentials, Password, PeerError, ReplyCode, TargetAddr, Version};

const MTUS: &[usize] = &[1, 2, 3, 7, 64, 100_000];

fn ipv4(a: u8, b: u8, c: u8, d: u8, port: u16) -> TargetAddr {
    TargetAddr::ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn req(
    version: Version,
    target: TargetAddr,
    user: Option<&[u8]>,
    pass: Option<&[u8]>,
) -> ClientRequest {
    ClientRequest {
        version,
        command: Command::CONNECT,
        target,
        username: user.map(<[u8]>::to_vec),
        password: pass.map(Password::new),
    }
}

fn config(require_auth: bool, lenient_auth: bool) -> HandshakeConfig {
    HandshakeConfig {
        require_auth,
        lenient_auth,
    }
}

/// Run at every MTU and check the common expectations of a success.
fn succeed(
    r: ClientRequest,
    cfg: HandshakeConfig,
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
    bound: &TargetAddr,
    expect_bound: &TargetAddr,
) -> Vec<RoundTrip> {
    MTUS.iter()
        .map(|&mtu| {
            let rt = round_trip(
                r.clone(),
                cfg.clone(),
                check,
                ReplyCode::Succeeded,
                Some(bound),
                b"client says hi",
                b"target says hello",
                mtu,
            );
            let got = rt.request.as_ref().expect("server finished the handshake");
            assert_eq!(got.command, r.command, "mtu {mtu}");
            assert_eq!(got.target, r.target, "mtu {mtu}");
            assert_eq!(
                rt.server_rest, b"client says hi",
                "optimistic data, mtu {mtu}"
            );
            let reply = rt
                .client
                .as_ref()
                .expect("client finished")
                .as_ref()
                .expect("client succeeded");
            assert_eq!(reply.code, ReplyCode::Succeeded);
            assert_eq!(reply.bound, *expect_bound, "mtu {mtu}");
            assert_eq!(rt.client_rest, b"target says hello", "mtu {mtu}");
            rt
        })
        .collect()
}

#[test]
fn v4_round_trip() {
    let r = req(Version::V4, ipv4(192, 0, 2, 1, 80), Some(b"ident"), None);
    let bound = ipv4(198, 51, 100, 9, 40000);
    for rt in succeed(r, config(false, false), &mut no_auth(), &bound, &bound) {
        let got = rt.request.unwrap();
        assert_eq!(got.version, Version::V4);
        assert_eq!(got.credentials, Credentials::UserId(b"ident".to_vec()));
    }
}

#[test]
fn v4a_round_trip() {
    let r = req(
        Version::V4a,
        TargetAddr::domain("example.com", 443),
        None,
        None,
    );
    // SOCKS4 cannot carry an IPv6 bound address: it arrives as zeros.
    let bound = TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 5);
    for rt in succeed(
        r,
        config(false, false),
        &mut no_auth(),
        &bound,
        &ipv4(0, 0, 0, 0, 0),
    ) {
        let got = rt.request.unwrap();
        assert_eq!(got.version, Version::V4a);
        assert_eq!(got.credentials, Credentials::None);
    }
}

#[test]
fn v5_round_trip_without_credentials() {
    for target in [
        ipv4(10, 0, 0, 1, 22),
        TargetAddr::ip(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            443,
        ),
        TargetAddr::domain("example.com", 80),
        TargetAddr::domain("x".repeat(255), 1),
    ] {
        let r = req(Version::V5, target, None, None);
        let bound = TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 1080);
        for rt in succeed(r, config(false, false), &mut no_auth(), &bound, &bound) {
            assert_eq!(rt.request.unwrap().credentials, Credentials::None);
        }
    }
}

#[test]
fn v5_round_trip_with_credentials() {
    let r = req(
        Version::V5,
        TargetAddr::domain("example.com", 80),
        Some(b"alice"),
        Some(b"s3cret"),
    );
    let bound = ipv4(127, 0, 0, 1, 5555);
    for cfg in [
        config(true, false),
        config(false, false),
        config(true, true),
    ] {
        for rt in succeed(
            r.clone(),
            cfg,
            &mut creds(b"alice", b"s3cret"),
            &bound,
            &bound,
        ) {
            assert_eq!(
                rt.request.unwrap().credentials,
                Credentials::UserPass {
                    username: b"alice".to_vec(),
                    password: Password::new("s3cret"),
                }
            );
        }
    }
}

#[test]
fn v5_round_trip_wrong_password() {
    let r = req(
        Version::V5,
        TargetAddr::domain("example.com", 80),
        Some(b"alice"),
        Some(b"guess"),
    );
    for &mtu in MTUS {
        let rt = round_trip(
            r.clone(),
            config(true, false),
            &mut creds(b"alice", b"s3cret"),
            ReplyCode::Succeeded,
            None,
            b"",
            b"",
            mtu,
        );
        assert!(rt.auth_rejected);
        assert!(rt.request.is_none(), "no request after a failed auth");
        assert_eq!(rt.client.unwrap(), Err(PeerError::AuthFailed.into()));
    }
}

#[test]
fn v5_client_without_credentials_against_require_auth() {
    let r = req(Version::V5, ipv4(1, 2, 3, 4, 5), None, None);
    for &mtu in MTUS {
        let rt = round_trip(
            r.clone(),
            config(true, false),
            &mut no_auth(),
            ReplyCode::Succeeded,
            None,
            b"",
            b"",
            mtu,
        );
        assert_eq!(rt.server_error, Some(PeerError::NoAcceptableMethod.into()));
        assert_eq!(
            rt.client.unwrap(),
            Err(PeerError::NoAcceptableMethod.into())
        );
    }
}

#[test]
fn refusals_reach_the_client() {
    for (version, code, want_raw) in [
        (Version::V5, ReplyCode::ConnectionRefused, 0x05),
        (Version::V5, ReplyCode::TtlExpired, 0x06),
        (Version::V5, ReplyCode::CommandNotSupported, 0x07),
        (Version::V4a, ReplyCode::HostUnreachable, 0x5B),
    ] {
        let r = req(
            version,
            TargetAddr::domain("nowhere.invalid", 1),
            None,
            None,
        );
        for &mtu in MTUS {
            let rt = round_trip(
                r.clone(),
                config(false, false),
                &mut no_auth(),
                code,
                None,
                b"",
                b"",
                mtu,
            );
            let reply = rt.client.unwrap().unwrap();
            assert_eq!(reply.raw_code, want_raw);
            assert!(!reply.code.is_success());
            if version == Version::V5 {
                assert_eq!(reply.code, code);
            }
        }
    }
}

#[test]
fn resolve_ptr_answer_is_a_name() {
    let r = ClientRequest {
        command: Command::RESOLVE_PTR,
        ..req(Version::V5, ipv4(192, 0, 2, 1, 0), None, None)
    };
    let name = TargetAddr::domain("host.example", 0);
    let rt = round_trip(
        r,
        config(false, false),
        &mut no_auth(),
        ReplyCode::Succeeded,
        Some(&name),
        b"",
        b"",
        3,
    );
    assert_eq!(rt.request.unwrap().command, Command::RESOLVE_PTR);
    assert_eq!(rt.client.unwrap().unwrap().bound, name);
}

// ---------------------------------------------------------------- client alone

#[test]
fn client_refuses_what_it_cannot_encode() {
    // A domain for plain SOCKS4; a domain over 255 bytes (curl
    // CVE-2023-38545); IPv6 over SOCKS4; 0.0.0.x over SOCKS4.
    for r in [
        req(
            Version::V4,
            TargetAddr::domain("example.com", 1),
            None,
            None,
        ),
        req(
            Version::V5,
            TargetAddr::domain("a".repeat(256), 1),
            None,
            None,
        ),
        req(
            Version::V4a,
            TargetAddr::domain("a".repeat(256), 1),
            None,
            None,
        ),
        req(
            Version::V4,
            TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 1),
            None,
            None,
        ),
        req(Version::V4, ipv4(0, 0, 0, 1, 80), None, None),
        req(
            Version::V5,
            ipv4(1, 1, 1, 1, 1),
            Some(&[b'u'; 256]),
            Some(b"p"),
        ),
    ] {
        assert!(ClientHandshake::new(r.clone()).is_err(), "{r:?}");
    }
}

#[test]
fn client_offers_only_userpass_when_it_has_credentials() {
    let (_, first) = ClientHandshake::new(req(
        Version::V5,
        ipv4(1, 1, 1, 1, 1),
        Some(b"u"),
        Some(b"p"),
    ))
    .unwrap();
    assert_eq!(first, [5, 1, 2]);
    let (_, first) =
        ClientHandshake::new(req(Version::V5, ipv4(1, 1, 1, 1, 1), None, None)).unwrap();
    assert_eq!(first, [5, 1, 0]);
}

#[test]
fn client_rejects_a_method_it_did_not_offer() {
    let (mut c, _) = ClientHandshake::new(req(
        Version::V5,
        ipv4(1, 1, 1, 1, 1),
        Some(b"u"),
        Some(b"p"),
    ))
    .unwrap();
    // Silently dropping the credentials (00) is not accepted.
    assert_eq!(
        cfeed(&mut c, &[5, 0]),
        Instruction::failed(PeerError::UnexpectedMethod(0))
    );
    let (mut c, _) =
        ClientHandshake::new(req(Version::V5, ipv4(1, 1, 1, 1, 1), None, None)).unwrap();
    assert_eq!(
        cfeed(&mut c, &[5, 1]),
        Instruction::failed(PeerError::UnexpectedMethod(1))
    );
    let (mut c, _) =
        ClientHandshake::new(req(Version::V5, ipv4(1, 1, 1, 1, 1), None, None)).unwrap();
    assert_eq!(
        cfeed(&mut c, &[5, 0xff]),
        Instruction::failed(PeerError::NoAcceptableMethod)
    );
    // Sticky, and the cause stays.
    assert_eq!(
        cfeed(&mut c, &[5, 0]),
        Instruction::failed(PeerError::NoAcceptableMethod)
    );
}

#[test]
fn client_accepts_auth_reply_with_version_05() {
    let (mut c, _) = ClientHandshake::new(req(
        Version::V5,
        ipv4(1, 1, 1, 1, 1),
        Some(b"u"),
        Some(b"p"),
    ))
    .unwrap();
    assert!(matches!(cfeed(&mut c, &[5, 2]), Instruction::Send(_)));
    assert_eq!(c.input().len(), 0, "the method choice is consumed");
    assert_eq!(cfeed(&mut c, &[5]), Instruction::NeedMore(1));
    match cfeed(&mut c, &[0]) {
        Instruction::Send(bytes) => {
            assert_eq!(bytes, [5, 1, 0, 1, 1, 1, 1, 1, 0, 1]);
            assert_eq!(c.input().len(), 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_needs_exactly_the_reply() {
    let (mut c, first) =
        ClientHandshake::new(req(Version::V4, ipv4(1, 2, 3, 4, 80), None, None)).unwrap();
    assert_eq!(first, [4, 1, 0, 80, 1, 2, 3, 4, 0]);
    let reply = [0u8, 0x5a, 0, 80, 9, 9, 9, 9];
    assert_eq!(c.step(), Instruction::NeedMore(8));
    for k in 1..reply.len() {
        assert_eq!(
            cfeed(&mut c, &reply[k - 1..k]),
            Instruction::NeedMore(8 - k)
        );
    }
    // The reply's last byte and the target's first bytes in one read.
    match cfeed(&mut c, &[&reply[7..], b"extra"].concat()) {
        Instruction::Finished { value, rest } => {
            assert_eq!(rest, b"extra");
            assert_eq!(value.bound, ipv4(9, 9, 9, 9, 80));
        }
        other => panic!("{other:?}"),
    }
}

/// Put `bytes` into the client machine's input and step.
fn cfeed(c: &mut ClientHandshake, bytes: &[u8]) -> sixsocks_proto::client::Step {
    assert_eq!(c.input().push(bytes), bytes.len());
    c.step()
}

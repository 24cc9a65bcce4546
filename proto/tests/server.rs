//! Tests of the server handshake state machine (`proto::server`). Every
//! scenario runs byte by byte, in odd chunk sizes, all at once, and with
//! reads of exactly what `NeedMore` asks for; all must agree.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{creds, drive_server, drive_server_all_ways, feed, no_auth, End, Outcome};
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Verify};
use sixsocks_proto::Instruction;
use sixsocks_proto::{
    http, Command, Credentials, Misuse, Password, PeerError, ProtoError, Request, TargetAddr,
    Version, MAX_MESSAGE,
};

fn open() -> HandshakeConfig {
    HandshakeConfig::default()
}
fn auth_required() -> HandshakeConfig {
    HandshakeConfig {
        require_auth: true,
        lenient_auth: false,
    }
}
fn lenient() -> HandshakeConfig {
    HandshakeConfig {
        require_auth: false,
        lenient_auth: true,
    }
}

fn ipv4(a: u8, b: u8, c: u8, d: u8, port: u16) -> TargetAddr {
    TargetAddr::ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

/// A SOCKS5 CONNECT request to example.com:80.
const V5_CONNECT_DOMAIN: &[u8] = b"\x05\x01\x00\x03\x0bexample.com\x00\x50";
/// The RFC 1929 request alice / s3cret.
const AUTH_ALICE: &[u8] = b"\x01\x05alice\x06s3cret";

fn v5_failure(rep: u8) -> Vec<u8> {
    vec![5, rep, 0, 1, 0, 0, 0, 0, 0, 0]
}

fn done(o: &Outcome) -> (&Request, &[u8]) {
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

// ---------------------------------------------------------------- SOCKS4

#[test]
fn socks4_connect() {
    let stream = b"\x04\x01\x00\x50\xc0\x00\x02\x07alice\x00";
    let o = drive_server_all_ways(open(), stream, &mut no_auth());
    let (req, rest) = done(&o);
    assert_eq!(
        *req,
        Request {
            version: Version::V4,
            command: Command::CONNECT,
            target: ipv4(192, 0, 2, 7, 80),
            credentials: Credentials::UserId(b"alice".to_vec()),
        }
    );
    assert!(rest.is_empty());
    assert!(o.sent.is_empty(), "SOCKS4 has no negotiation");
}

#[test]
fn socks4_empty_userid_means_no_credentials() {
    let o = drive_server_all_ways(
        open(),
        b"\x04\x02\x00\x15\x0a\x00\x00\x01\x00",
        &mut no_auth(),
    );
    let (req, _) = done(&o);
    assert_eq!(req.credentials, Credentials::None);
    assert_eq!(req.command, Command::BIND);
}

#[test]
fn socks4a_connect() {
    let stream = b"\x04\x01\x01\xbb\x00\x00\x00\x01bob\x00example.com\x00";
    let o = drive_server_all_ways(open(), stream, &mut no_auth());
    let (req, _) = done(&o);
    assert_eq!(
        *req,
        Request {
            version: Version::V4a,
            command: Command::CONNECT,
            target: TargetAddr::domain("example.com", 443),
            credentials: Credentials::UserId(b"bob".to_vec()),
        }
    );
}

#[test]
fn socks4_version_is_known_early() {
    let mut hs = ServerHandshake::new(open());
    assert_eq!(hs.version(), None);
    assert_eq!(feed(&mut hs, &[4, 1]), Instruction::NeedMore(6));
    assert_eq!(hs.version(), Some(Version::V4));
    let mut hs = ServerHandshake::new(open());
    let _ = feed(&mut hs, b"\x04\x01\x00\x50\x00\x00\x00\x01\x00h\x00");
    assert_eq!(hs.version(), Some(Version::V4a));
}

#[test]
fn socks4_userid_without_nul_is_refused_with_5b() {
    let mut stream = b"\x04\x01\x00\x50\x01\x02\x03\x04".to_vec();
    stream.extend(std::iter::repeat_n(b'u', 300));
    let o = drive_server_all_ways(open(), &stream, &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [0, 0x5b, 0, 0, 0, 0, 0, 0]);
    assert_eq!(*error, PeerError::UserIdTooLong(255));
}

#[test]
fn socks4a_hostname_without_nul_is_refused_with_5b() {
    let mut stream = b"\x04\x01\x00\x50\x00\x00\x00\x01u\x00".to_vec();
    stream.extend(std::iter::repeat_n(b'h', 300));
    let o = drive_server_all_ways(open(), &stream, &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [0, 0x5b, 0, 0, 0, 0, 0, 0]);
    assert_eq!(*error, PeerError::HostnameTooLong(255));
}

#[test]
fn socks4a_empty_or_bad_hostname_is_refused_with_5b() {
    for (stream, err) in [
        (
            &b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00"[..],
            PeerError::EmptyHostname,
        ),
        (
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\xff\x00",
            PeerError::BadDomain,
        ),
    ] {
        let o = drive_server_all_ways(open(), stream, &mut no_auth());
        let (bytes, error) = fail(&o);
        assert_eq!(bytes, [0, 0x5b, 0, 0, 0, 0, 0, 0]);
        assert_eq!(*error, err);
    }
}

#[test]
fn socks4_optimistic_data_is_left_unconsumed() {
    let request = b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00";
    let data = b"GET / HTTP/1.0\r\n\r\n";
    let stream = [&request[..], data].concat();
    let mut hs = ServerHandshake::new(open());
    match feed(&mut hs, &stream) {
        Instruction::Finished { rest, .. } => assert_eq!(rest, data),
        other => panic!("{other:?}"),
    }
    let o = drive_server_all_ways(open(), &stream, &mut no_auth());
    assert_eq!(done(&o).1, data);
}

// ---------------------------------------------------------------- SOCKS5

#[test]
fn socks5_no_auth_connect() {
    let stream = [&b"\x05\x01\x00"[..], V5_CONNECT_DOMAIN].concat();
    let o = drive_server_all_ways(open(), &stream, &mut no_auth());
    assert_eq!(o.sent, [5, 0]);
    let (req, rest) = done(&o);
    assert_eq!(
        *req,
        Request {
            version: Version::V5,
            command: Command::CONNECT,
            target: TargetAddr::domain("example.com", 80),
            credentials: Credentials::None,
        }
    );
    assert!(rest.is_empty());
}

#[test]
fn socks5_ipv4_and_ipv6_targets() {
    let v4 = b"\x05\x01\x00\x05\x02\x00\x01\x01\x01\x01\x01\x00\x35";
    let o = drive_server_all_ways(open(), v4, &mut no_auth());
    assert_eq!(done(&o).0.target, ipv4(1, 1, 1, 1, 53));
    assert_eq!(done(&o).0.command, Command::BIND);
    let mut v6 = b"\x05\x01\x00\x05\x03\x00\x04".to_vec();
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&[0x1f, 0x90]);
    let o = drive_server_all_ways(open(), &v6, &mut no_auth());
    assert_eq!(
        done(&o).0.target,
        TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080)
    );
    assert_eq!(done(&o).0.command, Command::UDP_ASSOCIATE);
}

#[test]
fn socks5_unknown_command_survives_for_the_caller() {
    let stream = b"\x05\x01\x00\x05\x77\x00\x01\x01\x02\x03\x04\x00\x01";
    let o = drive_server_all_ways(open(), stream, &mut no_auth());
    assert_eq!(done(&o).0.command, Command(0x77));
}

#[test]
fn socks5_userpass_success() {
    let stream = [&b"\x05\x02\x00\x02"[..], AUTH_ALICE, V5_CONNECT_DOMAIN].concat();
    let o = drive_server_all_ways(auth_required(), &stream, &mut creds(b"alice", b"s3cret"));
    assert_eq!(o.sent, [5, 2, 1, 0]);
    assert_eq!(o.verified, [(b"alice".to_vec(), b"s3cret".to_vec())]);
    let (req, _) = done(&o);
    assert_eq!(
        req.credentials,
        Credentials::UserPass {
            username: b"alice".to_vec(),
            password: Password::new("s3cret"),
        }
    );
    assert_eq!(req.target, TargetAddr::domain("example.com", 80));
}

#[test]
fn socks5_userpass_preferred_even_when_optional() {
    let stream = [&b"\x05\x02\x00\x02"[..], AUTH_ALICE, V5_CONNECT_DOMAIN].concat();
    let o = drive_server_all_ways(open(), &stream, &mut creds(b"alice", b"s3cret"));
    assert_eq!(o.sent, [5, 2, 1, 0]);
    assert_eq!(done(&o).0.credentials.user(), Some(&b"alice"[..]));
}

#[test]
fn socks5_userpass_failure_never_runs_the_pipelined_request() {
    // merino / sing-box CVE-2023-43644: a CONNECT pipelined behind a wrong
    // password was carried out. Greeting, auth and request in one buffer,
    // and in every chunking.
    let stream = [&b"\x05\x01\x02"[..], AUTH_ALICE, V5_CONNECT_DOMAIN, b"data"].concat();
    for config in [auth_required(), open(), lenient()] {
        let o = drive_server_all_ways(config, &stream, &mut creds(b"alice", b"WRONG"));
        assert_eq!(o.sent, [5, 2, 1, 1]);
        match &o.end {
            End::AuthRejected => {}
            other => panic!("after a failed auth: {other:?}"),
        }
    }
}

#[test]
fn socks5_failed_auth_is_sticky_whatever_the_caller_feeds() {
    let mut hs = ServerHandshake::new(auth_required());
    let greeting_and_auth = [&b"\x05\x01\x02"[..], AUTH_ALICE].concat();
    assert!(matches!(
        feed(&mut hs, &greeting_and_auth),
        Instruction::Send(_)
    ));
    assert!(matches!(hs.step(), Instruction::Event(Verify { .. })));
    hs.verdict(false);
    assert_eq!(
        hs.step(),
        Instruction::Failed {
            reply: vec![1, 1],
            error: PeerError::AuthFailed.into()
        }
    );
    // Whatever comes next, in whatever pieces: never Finished, never
    // NeedMore, and the cause stays.
    for b in V5_CONNECT_DOMAIN
        .iter()
        .chain(AUTH_ALICE)
        .chain(V5_CONNECT_DOMAIN)
    {
        hs.input().push(&[*b]);
        assert_eq!(hs.step(), Instruction::failed(PeerError::AuthFailed));
    }
    // A second verdict cannot revive it either.
    hs.verdict(true);
    assert_eq!(
        feed(&mut hs, V5_CONNECT_DOMAIN),
        Instruction::failed(PeerError::AuthFailed)
    );
}

#[test]
fn socks5_step_before_auth_result_fails() {
    let mut hs = ServerHandshake::new(auth_required());
    assert!(matches!(
        feed(&mut hs, b"\x05\x01\x02"),
        Instruction::Send(_)
    ));
    assert!(matches!(
        feed(&mut hs, AUTH_ALICE),
        Instruction::Event(Verify { .. })
    ));
    // The caller skipped the verdict: the machine must not read on.
    assert!(matches!(
        feed(&mut hs, V5_CONNECT_DOMAIN),
        Instruction::Failed {
            error: ProtoError::Misuse(Misuse::Finished),
            ..
        }
    ));
}

#[test]
fn socks5_nmethods_zero_is_refused_with_05_ff() {
    let o = drive_server_all_ways(open(), b"\x05\x00", &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [5, 0xff]);
    assert_eq!(*error, PeerError::NoMethods);
}

#[test]
fn socks5_require_auth_with_only_00_offered_is_05_ff_not_05_01() {
    for greeting in [
        &b"\x05\x01\x00"[..],
        b"\x05\x02\x00\x01",
        b"\x05\x03\x00\x01\x80",
    ] {
        let o = drive_server_all_ways(auth_required(), greeting, &mut no_auth());
        let (bytes, error) = fail(&o);
        assert_eq!(bytes, [5, 0xff], "greeting {greeting:02x?}");
        assert_ne!(bytes, [5, 0x01], "05 01 selects GSSAPI (the clash-rs bug)");
        assert_eq!(*error, PeerError::NoAcceptableMethod);
    }
}

#[test]
fn socks5_no_acceptable_method_without_require_auth() {
    let o = drive_server_all_ways(open(), b"\x05\x02\x01\x80", &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [5, 0xff]);
    assert_eq!(*error, PeerError::NoAcceptableMethod);
}

#[test]
fn unknown_version_byte_fails_silently() {
    for first in [0u8, 1, 2, 3, 6, 0x16, 0x7f, 0xcf, 0xff, b'g', b'0'] {
        let o = drive_server_all_ways(open(), &[first, 1, 0, 0], &mut no_auth());
        let (bytes, error) = fail(&o);
        assert!(bytes.is_empty(), "first byte {first:#x}");
        assert_eq!(*error, PeerError::UnknownVersion(first));
    }
}

#[test]
fn empty_input_needs_one_byte() {
    let mut hs = ServerHandshake::new(open());
    assert_eq!(hs.step(), Instruction::NeedMore(1));
    assert_eq!(hs.step(), Instruction::NeedMore(1));
}

#[test]
fn socks5_unknown_atyp_is_refused_with_rep_08() {
    let stream = b"\x05\x01\x00\x05\x01\x00\x02\x01\x02\x03\x04\x00\x50";
    let o = drive_server_all_ways(open(), stream, &mut no_auth());
    assert_eq!(o.sent, [5, 0]);
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, v5_failure(8));
    assert_eq!(*error, PeerError::UnknownAddressType(2));
}

#[test]
fn socks5_domain_length_zero_is_refused() {
    let stream = b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50";
    let o = drive_server_all_ways(open(), stream, &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, v5_failure(4));
    assert_eq!(*error, PeerError::EmptyDomain);
}

#[test]
fn socks5_domain_with_nul_or_bad_utf8_is_refused() {
    for stream in [
        &b"\x05\x01\x00\x05\x01\x00\x03\x03a\x00b\x00\x50"[..],
        b"\x05\x01\x00\x05\x01\x00\x03\x02\xc3\x28\x00\x50",
    ] {
        let o = drive_server_all_ways(open(), stream, &mut no_auth());
        let (bytes, error) = fail(&o);
        assert_eq!(bytes, v5_failure(4));
        assert_eq!(*error, PeerError::BadDomain);
    }
}

#[test]
fn socks5_request_with_wrong_version_is_refused() {
    let stream = b"\x05\x01\x00\x04\x01\x00\x01\x01\x02\x03\x04\x00\x50";
    let o = drive_server_all_ways(open(), stream, &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, v5_failure(1));
    assert_eq!(*error, PeerError::UnknownVersion(4));
}

#[test]
fn socks5_domain_length_beyond_input_waits_exactly() {
    // A length byte larger than what was sent (the OpenSSH 2006 bug): the
    // machine asks for exactly the missing bytes, never reads past them.
    let mut hs = ServerHandshake::new(open());
    assert!(matches!(
        feed(&mut hs, b"\x05\x01\x00"),
        Instruction::Send(_)
    ));
    assert_eq!(
        feed(&mut hs, b"\x05\x01\x00\x03\xffabc"),
        Instruction::NeedMore(255 - 3 + 2)
    );
}

#[test]
fn socks5_bad_auth_messages() {
    // Wrong subnegotiation version.
    let stream = b"\x05\x01\x02\x05\x01a\x01b";
    let o = drive_server_all_ways(auth_required(), stream, &mut no_auth());
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, [1, 1]);
    assert_eq!(*error, PeerError::BadAuthVersion(5));
    // Empty fields, strict.
    for stream in [
        &b"\x05\x01\x02\x01\x00\x01p"[..],
        b"\x05\x01\x02\x01\x01u\x00",
        b"\x05\x01\x02\x01\x00\x00",
    ] {
        let o = drive_server_all_ways(auth_required(), stream, &mut no_auth());
        let (bytes, error) = fail(&o);
        assert_eq!(bytes, [1, 1]);
        assert_eq!(*error, PeerError::EmptyCredentials);
    }
}

// ---------------------------------------------------------------- Tor leniency

#[test]
fn tor_leniency_userpass_after_method_00() {
    let stream = [&b"\x05\x01\x00"[..], AUTH_ALICE, V5_CONNECT_DOMAIN].concat();
    // On: the server chose 00, the client still authenticates; accepted.
    let o = drive_server_all_ways(lenient(), &stream, &mut creds(b"alice", b"s3cret"));
    assert_eq!(o.sent, [5, 0, 1, 0]);
    assert_eq!(o.verified.len(), 1);
    assert_eq!(done(&o).0.credentials.user(), Some(&b"alice"[..]));
    assert_eq!(done(&o).0.target, TargetAddr::domain("example.com", 80));
    // Off: the RFC 1929 message is read as a request with version 01.
    let o = drive_server_all_ways(open(), &stream, &mut no_auth());
    assert_eq!(o.sent, [5, 0]);
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, v5_failure(1));
    assert_eq!(*error, PeerError::UnknownVersion(1));
}

#[test]
fn tor_leniency_late_auth_at_most_once() {
    let stream = [
        &b"\x05\x01\x00"[..],
        AUTH_ALICE,
        AUTH_ALICE,
        V5_CONNECT_DOMAIN,
    ]
    .concat();
    let o = drive_server_all_ways(lenient(), &stream, &mut creds(b"alice", b"s3cret"));
    assert_eq!(o.verified.len(), 1);
    let (bytes, error) = fail(&o);
    assert_eq!(bytes, v5_failure(1));
    assert_eq!(*error, PeerError::UnknownVersion(1));
}

#[test]
fn tor_leniency_empty_fields() {
    for (auth, user, pass) in [
        (&b"\x01\x00\x00"[..], &b""[..], &b""[..]),
        (b"\x01\x00\x02pw", b"", b"pw"),
        (b"\x01\x02us\x00", b"us", b""),
    ] {
        let stream = [&b"\x05\x01\x02"[..], auth, V5_CONNECT_DOMAIN].concat();
        // On: accepted and handed to the checker as they are.
        let o = drive_server_all_ways(lenient(), &stream, &mut |_: &[u8], _: &Password| true);
        assert_eq!(o.verified, [(user.to_vec(), pass.to_vec())]);
        done(&o);
        // Off: refused.
        let o = drive_server_all_ways(open(), &stream, &mut no_auth());
        let (bytes, error) = fail(&o);
        assert_eq!(bytes, [1, 1]);
        assert_eq!(*error, PeerError::EmptyCredentials);
    }
}

#[test]
fn tor_leniency_does_not_bypass_require_auth() {
    let stream = [&b"\x05\x01\x00"[..], AUTH_ALICE, V5_CONNECT_DOMAIN].concat();
    let config = HandshakeConfig {
        require_auth: true,
        lenient_auth: true,
    };
    let o = drive_server_all_ways(config, &stream, &mut no_auth());
    assert_eq!(fail(&o).0, [5, 0xff]);
}

// ---------------------------------------------------------------- optimistic data, pipelining

#[test]
fn socks5_optimistic_data_is_left_unconsumed() {
    let data = b"\x16\x03\x01 TLS hello, not ours to read";
    let mut hs = ServerHandshake::new(open());
    assert_eq!(
        feed(&mut hs, b"\x05\x01\x00"),
        Instruction::Send(vec![5, 0])
    );
    let input = [V5_CONNECT_DOMAIN, data].concat();
    match feed(&mut hs, &input) {
        Instruction::Finished {
            value: Accepted::Socks(request),
            rest,
        } => {
            assert_eq!(rest, data);
            assert_eq!(request.target, TargetAddr::domain("example.com", 80));
        }
        other => panic!("{other:?}"),
    }
    let stream = [&b"\x05\x01\x00"[..], V5_CONNECT_DOMAIN, data].concat();
    let o = drive_server_all_ways(open(), &stream, &mut no_auth());
    assert_eq!(done(&o).1, data);
}

#[test]
fn socks5_pipelined_greeting_auth_request_in_one_buffer() {
    let data = b"optimistic";
    let stream = [&b"\x05\x01\x02"[..], AUTH_ALICE, V5_CONNECT_DOMAIN, data].concat();
    let mut hs = ServerHandshake::new(auth_required());
    // One read with everything in it.
    assert_eq!(feed(&mut hs, &stream), Instruction::Send(vec![5, 2]));
    match hs.step() {
        Instruction::Event(Verify { username, password }) => {
            assert_eq!(username, b"alice");
            assert_eq!(password, Password::new("s3cret"));
        }
        other => panic!("{other:?}"),
    }
    hs.verdict(true);
    assert_eq!(hs.step(), Instruction::Send(vec![1, 0]));
    match hs.step() {
        Instruction::Finished {
            value: Accepted::Socks(request),
            rest,
        } => {
            assert_eq!(rest, data);
            assert_eq!(request.credentials.user(), Some(&b"alice"[..]));
        }
        other => panic!("{other:?}"),
    }
    // And the same through the driver in every chunking.
    let o = drive_server_all_ways(auth_required(), &stream, &mut creds(b"alice", b"s3cret"));
    assert_eq!(done(&o).1, data);
}

#[test]
fn finished_machine_only_fails() {
    let mut hs = ServerHandshake::new(open());
    assert!(matches!(
        feed(&mut hs, b"\x04\x01\x00\x50\x01\x02\x03\x04\x00"),
        Instruction::Finished { .. }
    ));
    for input in [
        &b""[..],
        b"\x04\x01\x00\x50\x01\x02\x03\x04\x00",
        b"\x05\x01\x00",
    ] {
        assert_eq!(feed(&mut hs, input), Instruction::failed(Misuse::Finished));
    }
}

#[test]
fn server_never_asks_past_a_complete_message() {
    // A client that sends one message and waits must not be asked for
    // more than that message: check every prefix of each message.
    let cases: [(&[u8], HandshakeConfig); 4] = [
        (b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00host\x00", open()),
        (b"\x05\x03\x00\x01\x02", auth_required()),
        (b"\x05\x01\x00", open()),
        (b"\x05\xff", open()),
    ];
    for (msg, config) in cases {
        for k in 0..msg.len() {
            let mut hs = ServerHandshake::new(config.clone());
            match feed(&mut hs, &msg[..k]) {
                Instruction::NeedMore(n) => assert!(n >= 1 && k + n <= msg.len(), "k={k} n={n}"),
                other => panic!("prefix {k} of {msg:02x?}: {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------- HTTP resistance

#[test]
fn http_request_gets_the_page() {
    for stream in [
        &b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"POST / HTTP/1.0\n\n",
        b"HEAD / HTTP/1.1\r\n\r\nbody-bytes-after",
    ] {
        let o = drive_server_all_ways(open(), stream, &mut no_auth());
        let (bytes, error) = fail(&o);
        assert_eq!(bytes, http::response());
        assert!(bytes.starts_with(b"HTTP/1."));
        assert_eq!(*error, PeerError::HttpRequest);
    }
}

#[test]
fn http_head_is_capped() {
    // A head that never ends: the page is sent once the cap is reached.
    let mut stream = b"GET / HTTP/1.1\r\n".to_vec();
    while stream.len() < 3 * http::MAX_HTTP_HEAD {
        stream.extend_from_slice(b"X-Filler: yes\r\n");
    }
    let o = drive_server(open(), &stream, Some(&[1000]), &mut no_auth());
    let (bytes, _) = fail(&o);
    assert_eq!(bytes, http::response());
    let o = drive_server(open(), &stream, Some(&[usize::MAX]), &mut no_auth());
    assert_eq!(fail(&o).0, http::response());
    // An incomplete head below the cap just waits.
    let o = drive_server(
        open(),
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        None,
        &mut no_auth(),
    );
    assert!(matches!(o.end, End::Stalled { needed: 1 }));
}

// ---------------------------------------------------------------- unbounded input

/// A deterministic pseudo-random byte stream (xorshift64*).
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn one_mib_of_garbage_never_makes_the_machine_buffer_without_bound() {
    const MIB: usize = 1 << 20;
    // Prefixes that steer the garbage into each state of the machine.
    let prefixes: [&[u8]; 8] = [
        b"",
        b"\x04\x01\x00\x50\x01\x02\x03\x04",
        b"\x04\x01\x00\x50\x00\x00\x00\x01u\x00",
        b"\x05",
        b"\x05\x01\x02",
        b"\x05\x01\x00",
        b"\x05\x01\x00\x05\x01\x00\x03",
        b"GET /",
    ];
    let filler: [Vec<u8>; 4] = [
        vec![0x41; MIB], // 'A': no NUL, no newline, uppercase
        vec![0xff; MIB], // maximal length bytes
        vec![0x01; MIB], // tiny length bytes, version 1
        garbage(7, MIB),
    ];
    for config in [open(), auth_required(), lenient()] {
        for p in prefixes {
            for f in &filler {
                let stream = [p, &f[..]].concat();
                for pattern in [&[4096usize][..], &[usize::MAX][..], &[1, 511, 7]] {
                    let o = drive_server(
                        config.clone(),
                        &stream,
                        Some(pattern),
                        &mut |_: &[u8], _: &Password| true,
                    );
                    assert!(
                        !matches!(o.end, End::Stalled { .. }),
                        "1 MiB of input and still waiting: prefix {p:02x?}"
                    );
                }
            }
        }
    }
}

#[test]
fn garbage_byte_by_byte_stays_within_the_cap() {
    // Byte by byte, the driver checks every NeedMore against the cap.
    for seed in 0..200u64 {
        let g = garbage(seed, 4 * MAX_MESSAGE);
        let first = [4u8, 5][seed as usize % 2];
        let stream = [&[first][..], &g].concat();
        let o = drive_server(
            open(),
            &stream,
            Some(&[1]),
            &mut |_: &[u8], _: &Password| true,
        );
        assert!(!matches!(o.end, End::Stalled { .. }), "seed {seed}");
    }
    // HTTP-looking input may buffer up to MAX_HTTP_HEAD, never more (in
    // small odd chunks: the head scan is quadratic byte by byte).
    for seed in 0..4u64 {
        let g = garbage(seed, 2 * http::MAX_HTTP_HEAD)
            .into_iter()
            .map(|b| if b == b'\n' { b'n' } else { b })
            .collect::<Vec<u8>>();
        let stream = [&b"G"[..], &g].concat();
        let o = drive_server(open(), &stream, Some(&[1, 31, 7]), &mut no_auth());
        assert_eq!(fail(&o).0, http::response(), "seed {seed}");
    }
}

//! The client handshake state machine, for an arbitrary request, fed an
//! arbitrary server answer as a list of chunks. Checks the calling
//! convention's invariants, stickiness, and that the chunking does not
//! change the outcome.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::client::{ClientHandshake, ClientReply, ClientRequest, ClientStep};
use sixsocks_proto::v5::Greeting;
use sixsocks_proto::{Command, Password, ProtoError, ReplyCode, TargetAddr, Version};

#[derive(Debug, Arbitrary)]
enum Host {
    V4([u8; 4]),
    V6([u8; 16]),
    Domain(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    version: u8,
    command: u8,
    host: Host,
    port: u16,
    username: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
    chunks: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq)]
enum End {
    Done(ClientReply, Vec<u8>),
    Fail(ProtoError),
    Stalled(usize),
}

fn drive(mut c: ClientHandshake, version: Version, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, End) {
    let mut buf: Vec<u8> = Vec::new();
    let mut next = 0;
    let mut sent = Vec::new();
    loop {
        match c.step(&buf) {
            ClientStep::NeedMore(n) => {
                assert!(n >= 1, "NeedMore(0)");
                // No client message is longer than a SOCKS5 reply with a
                // 255-byte name (262 bytes).
                assert!(
                    buf.len() + n <= 262,
                    "NeedMore({n}) with {} buffered",
                    buf.len()
                );
                if next == chunks.len() {
                    return (sent, End::Stalled(n));
                }
                buf.extend_from_slice(chunks[next]);
                next += 1;
            }
            ClientStep::Send { consumed, bytes } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                assert!(!bytes.is_empty());
                assert!(sent.len() < 3, "more than auth + request sent");
                buf.drain(..consumed);
                sent.push(bytes);
            }
            ClientStep::Done { consumed, reply } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                let code = match version {
                    Version::V5 => ReplyCode::from_v5(reply.raw_code),
                    Version::V4 | Version::V4a => ReplyCode::from_v4(reply.raw_code),
                };
                assert_eq!(reply.code, code);
                buf.drain(..consumed);
                for c in &chunks[next..] {
                    buf.extend_from_slice(c);
                }
                assert_eq!(c.step(&buf), ClientStep::Fail(ProtoError::Finished));
                return (sent, End::Done(reply, buf));
            }
            ClientStep::Fail(e) => {
                assert_eq!(c.step(&buf), ClientStep::Fail(ProtoError::Finished));
                return (sent, End::Fail(e));
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let version = match input.version % 3 {
        0 => Version::V4,
        1 => Version::V4a,
        _ => Version::V5,
    };
    let target = match input.host {
        Host::V4(o) => TargetAddr::ip(IpAddr::V4(Ipv4Addr::from(o)), input.port),
        Host::V6(o) => TargetAddr::ip(IpAddr::V6(Ipv6Addr::from(o)), input.port),
        Host::Domain(d) => TargetAddr::domain(d, input.port),
    };
    let req = ClientRequest {
        version,
        command: Command(input.command),
        target,
        username: input.username,
        password: input.password.map(Password::new),
    };
    let Ok((c1, first)) = ClientHandshake::new(req.clone()) else {
        return;
    };
    assert!(!first.is_empty());
    if version == Version::V5 {
        let (g, n) = Greeting::parse(&first)
            .expect("valid greeting")
            .complete()
            .expect("complete");
        assert_eq!(n, first.len());
        assert_eq!(g.methods.len(), 1);
    }
    let (c2, first2) = ClientHandshake::new(req).expect("deterministic");
    assert_eq!(first, first2);
    let chunks: Vec<&[u8]> = input.chunks.iter().map(Vec::as_slice).collect();
    let chunked = drive(c1, version, &chunks);
    let whole: Vec<u8> = input.chunks.concat();
    let one = drive(c2, version, &[&whole]);
    assert_eq!(chunked, one, "chunking changed the outcome");
});

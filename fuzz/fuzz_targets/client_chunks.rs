//! The client handshake state machine, for an arbitrary request, fed an
//! arbitrary server answer as a list of chunks, through the shared driver
//! (calling convention, cap, stickiness). Checks the reply code mapping,
//! that at most the auth and the request are sent, and that the chunking
//! does not change the outcome.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::client::{ClientHandshake, ClientReply, ClientRequest};
use sixsocks_proto::testing::{drive_chunks, AtEnd, End, Trace};
use sixsocks_proto::v5::Greeting;
use sixsocks_proto::{Command, NoEvent, Password, ReplyCode, TargetAddr, V4Code, V5Code, Version};

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
    /// Close the input when the chunks run out (the proxy closed).
    close: bool,
}

/// The shared driver checks the calling convention, the cap and
/// stickiness; this adds what is particular to the client.
fn drive(
    mut c: ClientHandshake,
    version: Version,
    chunks: &[&[u8]],
    at_end: AtEnd,
) -> Trace<ClientReply, NoEvent> {
    let trace = drive_chunks(&mut c, chunks, at_end, &mut |_, never| match *never {});
    assert!(trace.sent.len() < 3, "more than auth + request sent");
    if let End::Finished { value: reply, .. } = &trace.end {
        let code = match version {
            Version::V5 => ReplyCode::from_v5(V5Code(reply.raw_code)),
            Version::V4 | Version::V4a => ReplyCode::from_v4(V4Code(reply.raw_code)),
        };
        assert_eq!(reply.code, code);
    }
    trace
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
    let at_end = if input.close {
        AtEnd::Close
    } else {
        AtEnd::Wait
    };
    let chunked = drive(c1, version, &chunks, at_end);
    let whole: Vec<u8> = input.chunks.concat();
    let one = drive(c2, version, &[&whole], at_end);
    assert_eq!(chunked, one, "chunking changed the outcome");
});

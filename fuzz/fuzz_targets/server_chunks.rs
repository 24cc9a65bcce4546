//! The server handshake state machine driven by a list of chunks, as a
//! reader would deliver them. Checks the calling convention's invariants,
//! the buffering cap, stickiness, "no request after a rejected password",
//! and that the chunking does not change the outcome.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::server::{HandshakeConfig, ServerHandshake, Step};
use sixsocks_proto::{http, Credentials, ProtoError, Request, Version, MAX_MESSAGE};

#[derive(Debug, Arbitrary)]
struct Input {
    require_auth: bool,
    lenient_auth: bool,
    /// The answer to every `Verify`.
    accept: bool,
    chunks: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq)]
enum End {
    Done(Request, Vec<u8>),
    Fail(Vec<u8>, ProtoError),
    Rejected,
    Stalled(usize),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    sent: Vec<u8>,
    verified: Vec<(Vec<u8>, Vec<u8>)>,
    end: End,
}

fn drive(config: &HandshakeConfig, accept: bool, chunks: &[&[u8]]) -> Outcome {
    let stream_first = chunks.iter().find_map(|c| c.first().copied());
    let cap = match stream_first {
        Some(b) if http::looks_like_http(b) => http::MAX_HTTP_HEAD,
        _ => MAX_MESSAGE,
    };
    let mut hs = ServerHandshake::new(config.clone());
    let mut buf: Vec<u8> = Vec::new();
    let mut next = 0;
    let mut sent = Vec::new();
    let mut verified = Vec::new();
    let mut accepted = false;
    // Every step either consumes input, ends, or asks for a chunk: bounded.
    loop {
        match hs.step(&buf) {
            Step::NeedMore(n) => {
                assert!(n >= 1, "NeedMore(0)");
                assert!(
                    buf.len() + n <= cap,
                    "NeedMore({n}) with {} bytes buffered, cap {cap}",
                    buf.len()
                );
                if next == chunks.len() {
                    return Outcome {
                        sent,
                        verified,
                        end: End::Stalled(n),
                    };
                }
                buf.extend_from_slice(chunks[next]);
                next += 1;
            }
            Step::Reply { consumed, bytes } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                assert!(!bytes.is_empty());
                buf.drain(..consumed);
                sent.extend_from_slice(&bytes);
            }
            Step::Verify {
                consumed,
                username,
                password,
            } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                assert_eq!(hs.version(), Some(Version::V5));
                buf.drain(..consumed);
                verified.push((username, password.expose().to_vec()));
                let reply = hs.auth_result(accept);
                assert_eq!(reply, [1, if accept { 0 } else { 1 }]);
                sent.extend_from_slice(&reply);
                if !accept {
                    // CVE-2023-43644: nothing pipelined behind a rejected
                    // password may ever come out as a request.
                    for c in &chunks[next..] {
                        buf.extend_from_slice(c);
                    }
                    for _ in 0..2 {
                        match hs.step(&buf) {
                            Step::Fail { bytes, .. } => assert!(bytes.is_empty()),
                            other => panic!("after a rejected password: {other:?}"),
                        }
                    }
                    return Outcome {
                        sent,
                        verified,
                        end: End::Rejected,
                    };
                }
                accepted = true;
            }
            Step::Done { consumed, request } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                if request.version == Version::V5 && config.require_auth {
                    assert!(accepted, "SOCKS5 request without authentication");
                    assert!(matches!(request.credentials, Credentials::UserPass { .. }));
                }
                buf.drain(..consumed);
                for c in &chunks[next..] {
                    buf.extend_from_slice(c);
                }
                assert!(
                    matches!(hs.step(&buf), Step::Fail { .. }),
                    "not sticky after Done"
                );
                return Outcome {
                    sent,
                    verified,
                    end: End::Done(request, buf),
                };
            }
            Step::Fail { bytes, error } => {
                match hs.step(&buf) {
                    Step::Fail { bytes: b, .. } => assert!(b.is_empty()),
                    other => panic!("not sticky after Fail: {other:?}"),
                }
                return Outcome {
                    sent,
                    verified,
                    end: End::Fail(bytes, error),
                };
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let config = HandshakeConfig {
        require_auth: input.require_auth,
        lenient_auth: input.lenient_auth,
    };
    let chunks: Vec<&[u8]> = input.chunks.iter().map(Vec::as_slice).collect();
    let chunked = drive(&config, input.accept, &chunks);
    let whole: Vec<u8> = input.chunks.concat();
    let one = drive(&config, input.accept, &[&whole]);
    assert_eq!(chunked, one, "chunking changed the outcome");
});

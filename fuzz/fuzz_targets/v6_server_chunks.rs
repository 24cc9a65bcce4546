//! The SOCKS 6 server machine, entered through the shared-port dispatcher,
//! driven by a list of chunks as a reader would deliver them. Checks the
//! calling convention, the buffering caps, stickiness, "nothing after a
//! refused password", that `Done` honours `require_auth` and the declared
//! initial data, and that the chunking does not change the outcome.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::server::{Dispatch, HandshakeConfig, ServerHandshake, Step as V5Step};
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::draft05::{self, Draft05};
use sixsocks_proto::v6::server::Step;
use sixsocks_proto::v6::{AuthMethodOption, Codec, Options, Request, Socks6Limits, Socks6Request};
use sixsocks_proto::{
    http, userpass, Command, Credentials, Password, ProtoError, TargetAddr, MAX_MESSAGE,
};

/// A stream built from fields, so that the fuzzer reaches authentication,
/// initial data and the slow path, not just parse errors.
#[derive(Debug, Arbitrary)]
struct Built {
    command: u8,
    port: u16,
    ip: [u8; 4],
    domain: Option<String>,
    auth_method: Option<(u16, Vec<u8>)>,
    zero_rtt: Option<(Vec<u8>, Vec<u8>)>,
    /// Raw options (kind, data), kept when they decode.
    extra: Vec<(u8, Vec<u8>)>,
    /// Bytes behind the request (initial data; may differ from the
    /// declared length).
    initial: Vec<u8>,
    /// An RFC 1929 message behind (the slow path).
    slow: Option<(Vec<u8>, Vec<u8>)>,
    trailing: Vec<u8>,
    cuts: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Stream {
    Raw(Vec<Vec<u8>>),
    Built(Built),
}

fn build(b: Built) -> Vec<Vec<u8>> {
    let mut options = Options::new();
    if let Some((n, methods)) = b.auth_method {
        options.push(
            AuthMethodOption {
                initial_data_len: n % 8300,
                methods: methods.into_iter().take(20).map(Method).collect(),
            }
            .into(),
        );
    }
    if let Some((u, p)) = b.zero_rtt {
        if let Ok(d) = draft05::userpass_auth_data(&u, &Password::new(p)) {
            options.push(d.into());
        }
    }
    for (kind, mut data) in b.extra.into_iter().take(10) {
        data.truncate(253);
        if let Ok(o) = draft05::decode_option(kind, &data) {
            options.push(o);
        }
    }
    let target = match b
        .domain
        .filter(|d| !d.is_empty() && d.len() <= 255 && !d.contains('\0'))
    {
        Some(d) => TargetAddr::domain(d, b.port),
        None => TargetAddr::ip(b.ip.into(), b.port),
    };
    let Ok(mut stream) = Draft05.encode_request(&Request {
        command: Command(b.command % 5),
        target,
        options,
    }) else {
        return vec![vec![6, 0]];
    };
    stream.extend_from_slice(&b.initial);
    if let Some((u, p)) = b.slow {
        if let Ok(m) = (userpass::Request {
            username: u,
            password: Password::new(p),
        })
        .encode()
        {
            stream.extend_from_slice(&m);
        }
    }
    stream.extend_from_slice(&b.trailing);
    let mut out = Vec::new();
    let mut rest = &stream[..];
    let mut i = 0;
    while !rest.is_empty() {
        let n = b
            .cuts
            .get(i)
            .map_or(rest.len(), |&c| usize::from(c) + 1)
            .min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    out
}

#[derive(Debug, Arbitrary)]
struct Input {
    require_auth: bool,
    lenient_auth: bool,
    /// The answer to every `Verify`.
    accept: bool,
    /// Start a raw stream with `06 00`.
    force_v6: bool,
    /// Caps: `None` for the defaults, else (options, option bytes, initial data).
    limits: Option<(u8, u16, u16)>,
    stream: Stream,
}

#[derive(Debug, PartialEq)]
enum End {
    Done(Box<Socks6Request>, Vec<u8>),
    Fail(Vec<u8>, ProtoError),
    Legacy(String),
    Stalled(usize),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    sent: Vec<u8>,
    verified: Vec<(Vec<u8>, Vec<u8>)>,
    end: End,
}

fn drive(hc: &HandshakeConfig, limits: &Socks6Limits, accept: bool, chunks: &[&[u8]]) -> Outcome {
    let mut hs = ServerHandshake::new(hc.clone()).with_socks6(limits.clone());
    let mut buf: Vec<u8> = Vec::new();
    let mut next = 0;
    let mut sent = Vec::new();
    let mut verified = Vec::new();
    let mut m = loop {
        match hs.dispatch(&buf) {
            Dispatch::Socks6(m) => break m,
            Dispatch::Step(V5Step::NeedMore(n)) => {
                assert!(n >= 1);
                let first = buf.first().copied();
                let cap = match first {
                    Some(b) if http::looks_like_http(b) => http::MAX_HTTP_HEAD,
                    _ => MAX_MESSAGE,
                };
                assert!(buf.len() + n <= cap);
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
            // SOCKS4/5/HTTP: not this target's business beyond "same
            // outcome chunked or not" (server_chunks covers it).
            Dispatch::Step(other) => {
                let shown = match other {
                    V5Step::Fail { error, .. } => format!("fail {error:?}"),
                    _ => "socks4/5".to_string(),
                };
                return Outcome {
                    sent,
                    verified,
                    end: End::Legacy(shown),
                };
            }
        }
    };
    let cap = limits.max_request_bytes(m.profile());
    let mut refused = false;
    loop {
        match m.step(&buf) {
            Step::NeedMore(n) => {
                assert!(n >= 1, "NeedMore(0)");
                assert!(
                    buf.len() + n <= cap,
                    "NeedMore({n}) with {} buffered, cap {cap}",
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
                assert!(consumed <= buf.len());
                assert!(!bytes.is_empty());
                assert!(!refused);
                buf.drain(..consumed);
                sent.extend_from_slice(&bytes);
            }
            Step::Verify {
                consumed,
                username,
                password,
            } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                buf.drain(..consumed);
                verified.push((username, password.expose().to_vec()));
                m.auth_result(accept);
                refused = !accept;
            }
            Step::Done { consumed, request } => {
                assert!(!refused, "a request came out after a refused password");
                assert!(consumed <= buf.len());
                if hc.require_auth {
                    assert!(matches!(request.credentials, Credentials::UserPass { .. }));
                    assert!(!verified.is_empty() && accept);
                }
                if request.command == Command::CONNECT {
                    assert_eq!(
                        Ok(request.initial_data.len()),
                        request.options.initial_data_len()
                    );
                    assert!(request.initial_data.len() <= limits.initial_data_cap());
                } else {
                    assert!(request.initial_data.is_empty());
                }
                buf.drain(..consumed);
                for c in &chunks[next..] {
                    buf.extend_from_slice(c);
                }
                assert!(
                    matches!(m.step(&buf), Step::Fail { .. }),
                    "not sticky after Done"
                );
                return Outcome {
                    sent,
                    verified,
                    end: End::Done(request, buf),
                };
            }
            Step::Fail { bytes, error } => {
                if refused {
                    assert_eq!(error, ProtoError::AuthFailed);
                    assert!(bytes.ends_with(&[6, 0, 1, 0xFF, 0]));
                }
                match m.step(&buf) {
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
    let hc = HandshakeConfig {
        require_auth: input.require_auth,
        lenient_auth: input.lenient_auth,
    };
    let limits = match input.limits {
        None => Socks6Limits::default(),
        Some((n, bytes, initial)) => Socks6Limits {
            max_options: n as usize,
            max_options_bytes: bytes as usize,
            max_initial_data: initial as usize,
        },
    };
    let mut owned: Vec<Vec<u8>> = Vec::new();
    match input.stream {
        Stream::Raw(chunks) => {
            if input.force_v6 {
                owned.push(vec![6, 0]);
            }
            owned.extend(chunks);
        }
        Stream::Built(b) => owned = build(b),
    }
    let chunks: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    let chunked = drive(&hc, &limits, input.accept, &chunks);
    let whole: Vec<u8> = owned.concat();
    let one = drive(&hc, &limits, input.accept, &[&whole]);
    assert_eq!(chunked, one, "chunking changed the outcome");
});

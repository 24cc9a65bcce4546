//! The server machine with SOCKS 6 enabled, driven by a list of chunks as a
//! reader would deliver them, through the shared driver (calling
//! convention, cap, stickiness). Checks "nothing after a refused password",
//! that `Finished` honours `require_auth` and the declared initial data,
//! and that the chunking does not change the outcome.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake, Verify};
use sixsocks_proto::testing::{drive_chunks, AtEnd, End, Trace};
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::draft05::{self, Draft05};
use sixsocks_proto::v6::{AuthMethodOption, Codec, Options, Request, Socks6Limits};
use sixsocks_proto::{userpass, Command, Credentials, Password, PeerError, TargetAddr};

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

/// The shared driver checks the calling convention, the cap and
/// stickiness; this adds what is particular to SOCKS 6.
fn drive(
    hc: &HandshakeConfig,
    limits: &Socks6Limits,
    accept: bool,
    chunks: &[&[u8]],
) -> Trace<Accepted, Verify> {
    let mut hs = ServerHandshake::new(hc.clone()).with_socks6(limits.clone());
    let mut refused = false;
    let trace = drive_chunks(&mut hs, chunks, AtEnd::Wait, &mut |hs, _| {
        assert!(!refused);
        hs.verdict(accept);
        refused = !accept;
    });
    if hs.socks6_profile().is_none() {
        // SOCKS4/5/HTTP: server_chunks covers them.
        return trace;
    }
    match &trace.end {
        End::Finished {
            value: Accepted::Socks6(request),
            ..
        } => {
            assert!(!refused, "a request came out after a refused password");
            if hc.require_auth {
                assert!(matches!(request.credentials, Credentials::UserPass { .. }));
                assert!(!trace.events.is_empty() && accept);
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
        }
        End::Finished { value, .. } => panic!("a SOCKS 6 stream gave {value:?}"),
        End::Failed { reply, error } if refused => {
            assert_eq!(*error, PeerError::AuthFailed);
            assert!(reply.ends_with(&[6, 0, 1, 0xFF, 0]));
        }
        _ => assert!(!refused, "not failed after a refused password"),
    }
    trace
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

//! Helpers shared by the integration tests of `sixsocks-proto`.
//!
//! Each test binary uses only some of them.
#![allow(dead_code)]

use sixsocks_proto::client::{ClientHandshake, ClientReply, ClientRequest, ClientStep};
use sixsocks_proto::server::{HandshakeConfig, ServerHandshake, Step};
use sixsocks_proto::{
    http, v5, Parsed, Password, ProtoError, ReplyCode, Request, TargetAddr, Version,
};

/// Chunk patterns every "feed it in pieces" test runs with. `usize::MAX`
/// means "all at once"; a pattern is cycled.
pub const PATTERNS: &[&[usize]] = &[
    &[1],
    &[2],
    &[3],
    &[5, 1, 7],
    &[13],
    &[1, 2, 3, 4, 5, 6, 7, 8, 9],
    &[64],
    &[usize::MAX],
];

/// Split `data` into chunks whose sizes follow `pattern` (cycled).
pub fn chunk<'a>(data: &'a [u8], pattern: &[usize]) -> Vec<&'a [u8]> {
    assert!(!pattern.is_empty() && pattern.iter().all(|&n| n > 0));
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = pattern[i % pattern.len()].min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// Every strict prefix of the valid encoding `msg` must parse as
/// `Incomplete` with `needed >= 1` and never more than what is really left
/// (a parser that over-asks deadlocks a peer waiting for an answer). The
/// whole message must parse completely, consuming exactly `msg.len()`,
/// also when more bytes follow it. Returns the parsed value.
pub fn check_prefixes<T, F>(msg: &[u8], parse: F) -> T
where
    T: std::fmt::Debug + PartialEq,
    F: Fn(&[u8]) -> Result<Parsed<T>, ProtoError>,
{
    for k in 0..msg.len() {
        match parse(&msg[..k]) {
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed >= 1, "prefix {k}/{}: needed = 0", msg.len());
                assert!(
                    k + needed <= msg.len(),
                    "prefix {k}/{}: needed = {needed} overshoots the message",
                    msg.len()
                );
            }
            other => panic!("prefix {k}/{} of {msg:02x?}: {other:?}", msg.len()),
        }
    }
    let value = match parse(msg) {
        Ok(Parsed::Complete { value, consumed }) => {
            assert_eq!(consumed, msg.len(), "consumed of {msg:02x?}");
            value
        }
        other => panic!("whole message {msg:02x?}: {other:?}"),
    };
    let mut longer = msg.to_vec();
    longer.extend_from_slice(&[0x05, 0x01, 0x00, 0xAA, 0x00]);
    match parse(&longer) {
        Ok(Parsed::Complete {
            value: v2,
            consumed,
        }) => {
            assert_eq!(consumed, msg.len(), "trailing bytes changed consumed");
            assert_eq!(v2, value, "trailing bytes changed the value");
        }
        other => panic!("message with trailing bytes: {other:?}"),
    }
    value
}

/// Parse a stream holding several messages back to back, the way a reader
/// would: bytes arrive in chunks following `pattern` (`None`: read exactly
/// `needed` bytes each time), the parser is called on the unconsumed input,
/// consumed bytes are dropped. Checks that `needed` is at least 1 and never
/// reaches past the end of the stream. Returns the messages, in order.
pub fn parse_stream<T, F>(stream: &[u8], pattern: Option<&[usize]>, parse: F) -> Vec<T>
where
    T: std::fmt::Debug,
    F: Fn(&[u8]) -> Result<Parsed<T>, ProtoError>,
{
    let chunks = pattern.map(|p| chunk(stream, p));
    let mut next_chunk = 0;
    let mut delivered = 0usize; // bytes of `stream` moved into `buf`
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..(stream.len() * 4 + 16) {
        match parse(&buf) {
            Ok(Parsed::Complete { value, consumed }) => {
                assert!(consumed >= 1 && consumed <= buf.len());
                buf.drain(..consumed);
                out.push(value);
            }
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed >= 1, "needed = 0");
                if delivered == stream.len() {
                    assert!(buf.is_empty(), "stream ended inside a message: {buf:02x?}");
                    return out;
                }
                assert!(
                    delivered + needed <= stream.len(),
                    "needed = {needed} reaches past the end of the stream \
                     ({delivered} of {} delivered)",
                    stream.len()
                );
                let n = match &chunks {
                    Some(c) => {
                        let c = c[next_chunk];
                        next_chunk += 1;
                        buf.extend_from_slice(c);
                        c.len()
                    }
                    None => {
                        buf.extend_from_slice(&stream[delivered..delivered + needed]);
                        needed
                    }
                };
                delivered += n;
            }
            Err(e) => panic!("valid stream failed to parse: {e}"),
        }
    }
    panic!("parse_stream did not terminate");
}

/// Where a server handshake driven by [`drive_server`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// `Done`: the request, and every byte of the stream after it.
    Done { request: Request, rest: Vec<u8> },
    /// `Fail`: its bytes and error.
    Fail { bytes: Vec<u8>, error: ProtoError },
    /// `auth_result(false)` was called; `then` is what one more `step`
    /// on the remaining input gave (it must be a `Fail`).
    AuthRejected { then: Step },
    /// The input ran out while the machine wanted more.
    Stalled { needed: usize },
}

/// Everything observable from one handshake.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The bytes the server sent before the end (method choice, auth replies).
    pub sent: Vec<u8>,
    /// The credentials of each `Verify`, in order.
    pub verified: Vec<(Vec<u8>, Vec<u8>)>,
    pub end: End,
}

/// Largest buffer (unconsumed input + `needed`) the server may ever ask
/// for, given the first byte of the stream.
pub fn server_cap(first: Option<u8>) -> usize {
    match first {
        Some(b) if http::looks_like_http(b) => http::MAX_HTTP_HEAD,
        _ => sixsocks_proto::MAX_MESSAGE,
    }
}

/// Run a server handshake over `stream` delivered in chunks following
/// `pattern` (`None`: exactly `needed` bytes at a time), answering each
/// `Verify` with `check`. Asserts on the way that every `NeedMore` is at
/// least 1 and that the buffer it asks for stays within the cap.
pub fn drive_server(
    config: HandshakeConfig,
    stream: &[u8],
    pattern: Option<&[usize]>,
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
) -> Outcome {
    let mut hs = ServerHandshake::new(config);
    let chunks = pattern.map(|p| chunk(stream, p));
    let mut next_chunk = 0;
    let mut delivered = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    let mut sent = Vec::new();
    let mut verified = Vec::new();
    let cap = server_cap(stream.first().copied());
    for _ in 0..(stream.len() * 4 + 64) {
        match hs.step(&buf) {
            Step::NeedMore(n) => {
                assert!(n >= 1, "NeedMore(0)");
                assert!(
                    buf.len() + n <= cap,
                    "NeedMore({n}) with {} bytes buffered exceeds the cap {cap}",
                    buf.len()
                );
                if delivered == stream.len() {
                    return Outcome {
                        sent,
                        verified,
                        end: End::Stalled { needed: n },
                    };
                }
                let got = match &chunks {
                    Some(c) => {
                        let c = c[next_chunk];
                        next_chunk += 1;
                        buf.extend_from_slice(c);
                        c.len()
                    }
                    None => {
                        let n = n.min(stream.len() - delivered);
                        buf.extend_from_slice(&stream[delivered..delivered + n]);
                        n
                    }
                };
                delivered += got;
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
                buf.drain(..consumed);
                let ok = check(&username, &password);
                verified.push((username, password.expose().to_vec()));
                let reply = hs.auth_result(ok);
                assert_eq!(reply, vec![0x01, if ok { 0x00 } else { 0x01 }]);
                sent.extend_from_slice(&reply);
                if !ok {
                    // The caller closes here; but even if it did not, the
                    // machine must refuse to go on with what follows.
                    buf.extend_from_slice(&stream[delivered..]);
                    let then = hs.step(&buf);
                    return Outcome {
                        sent,
                        verified,
                        end: End::AuthRejected { then },
                    };
                }
            }
            Step::Done { consumed, request } => {
                assert!(consumed >= 1 && consumed <= buf.len());
                buf.drain(..consumed);
                buf.extend_from_slice(&stream[delivered..]);
                // Sticky: a finished machine only fails afterwards.
                assert!(matches!(hs.step(&buf), Step::Fail { .. }));
                return Outcome {
                    sent,
                    verified,
                    end: End::Done { request, rest: buf },
                };
            }
            Step::Fail { bytes, error } => {
                // Sticky: a failed machine only fails afterwards, silently.
                match hs.step(&buf) {
                    Step::Fail { bytes: b2, .. } => assert!(b2.is_empty()),
                    other => panic!("step after Fail gave {other:?}"),
                }
                return Outcome {
                    sent,
                    verified,
                    end: End::Fail { bytes, error },
                };
            }
        }
    }
    panic!("drive_server did not terminate");
}

/// `drive_server` with every pattern of [`PATTERNS`] and with exact reads;
/// asserts that all give the same outcome and returns it.
pub fn drive_server_all_ways(
    config: HandshakeConfig,
    stream: &[u8],
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
) -> Outcome {
    let reference = drive_server(config.clone(), stream, None, check);
    for p in PATTERNS {
        let o = drive_server(config.clone(), stream, Some(p), check);
        assert_eq!(o, reference, "chunk pattern {p:?} changed the outcome");
    }
    reference
}

/// Accept exactly `user`/`pass`.
pub fn creds(user: &'static [u8], pass: &'static [u8]) -> impl FnMut(&[u8], &Password) -> bool {
    move |u, p| u == user && *p == Password::new(pass)
}

/// A checker that must never be called.
pub fn no_auth() -> impl FnMut(&[u8], &Password) -> bool {
    |_, _| panic!("Verify where no authentication was expected")
}

/// How a client/server round trip ended.
#[derive(Debug)]
pub struct RoundTrip {
    /// What the server's `Done` handed over (None if it never got there).
    pub request: Option<Request>,
    /// Server failure, if any.
    pub server_error: Option<ProtoError>,
    /// Whether the server rejected the credentials.
    pub auth_rejected: bool,
    /// The client's result (`None`: still waiting when the exchange went
    /// quiet, i.e. it would see EOF).
    pub client: Option<Result<ClientReply, ProtoError>>,
    /// Bytes the client received after its `Done` (data from the target).
    pub client_rest: Vec<u8>,
    /// Bytes the server received after its `Done` (optimistic data).
    pub server_rest: Vec<u8>,
}

/// Run a client handshake against a server handshake in memory. The wires
/// deliver at most `mtu` bytes per turn. The server answers a complete
/// request with `code` and `bound`, then `reply_data` (as if from the
/// target); the client sends `optimistic` right behind its request.
#[allow(clippy::too_many_arguments)]
pub fn round_trip(
    req: ClientRequest,
    config: HandshakeConfig,
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
    code: ReplyCode,
    bound: Option<&TargetAddr>,
    optimistic: &[u8],
    reply_data: &[u8],
    mtu: usize,
) -> RoundTrip {
    assert!(mtu >= 1);
    // The bytes of the request itself, to know when to send optimistic data.
    let request_bytes = match req.version {
        Version::V4 | Version::V4a => None,
        Version::V5 => Some(
            v5::Request {
                command: req.command,
                target: req.target.clone(),
            }
            .encode()
            .expect("encodable request"),
        ),
    };
    let (mut client, first) = ClientHandshake::new(req).expect("client request is encodable");
    let mut server = ServerHandshake::new(config);
    // Wires: bytes sent but not yet delivered.
    let mut c2s_wire: Vec<u8> = first;
    if request_bytes.is_none() {
        c2s_wire.extend_from_slice(optimistic);
    }
    let mut s2c_wire: Vec<u8> = Vec::new();
    // Receive buffers.
    let mut s_in: Vec<u8> = Vec::new();
    let mut c_in: Vec<u8> = Vec::new();
    let mut rt = RoundTrip {
        request: None,
        server_error: None,
        auth_rejected: false,
        client: None,
        client_rest: Vec::new(),
        server_rest: Vec::new(),
    };
    let mut server_open = true; // still running its handshake
    let mut client_open = true;
    for _ in 0..100_000 {
        let mut progress = false;
        // Deliver at most `mtu` bytes each way.
        let n = c2s_wire.len().min(mtu);
        if n > 0 {
            s_in.extend(c2s_wire.drain(..n));
            progress = true;
        }
        let n = s2c_wire.len().min(mtu);
        if n > 0 {
            c_in.extend(s2c_wire.drain(..n));
            progress = true;
        }
        if server_open {
            match server.step(&s_in) {
                Step::NeedMore(n) => assert!(n >= 1),
                Step::Reply { consumed, bytes } => {
                    s_in.drain(..consumed);
                    s2c_wire.extend(bytes);
                    progress = true;
                }
                Step::Verify {
                    consumed,
                    username,
                    password,
                } => {
                    s_in.drain(..consumed);
                    let ok = check(&username, &password);
                    s2c_wire.extend(server.auth_result(ok));
                    if !ok {
                        rt.auth_rejected = true;
                        server_open = false;
                    }
                    progress = true;
                }
                Step::Done { consumed, request } => {
                    s_in.drain(..consumed);
                    s2c_wire.extend(request.reply(code, bound, false));
                    s2c_wire.extend_from_slice(reply_data);
                    rt.request = Some(request);
                    server_open = false;
                    progress = true;
                }
                Step::Fail { bytes, error } => {
                    s2c_wire.extend(bytes);
                    rt.server_error = Some(error);
                    server_open = false;
                    progress = true;
                }
            }
        }
        if client_open {
            match client.step(&c_in) {
                ClientStep::NeedMore(n) => assert!(n >= 1),
                ClientStep::Send { consumed, bytes } => {
                    c_in.drain(..consumed);
                    let is_request = request_bytes.as_deref() == Some(&bytes[..]);
                    c2s_wire.extend(bytes);
                    if is_request {
                        c2s_wire.extend_from_slice(optimistic);
                    }
                    progress = true;
                }
                ClientStep::Done { consumed, reply } => {
                    c_in.drain(..consumed);
                    rt.client = Some(Ok(reply));
                    client_open = false;
                    progress = true;
                }
                ClientStep::Fail(e) => {
                    rt.client = Some(Err(e));
                    client_open = false;
                    progress = true;
                }
            }
        }
        if !progress {
            // Quiet: both sides wait, or one side closed. A client still
            // waiting for a server that closed sees EOF.
            rt.client_rest = c_in;
            rt.server_rest = s_in;
            return rt;
        }
    }
    panic!("round trip did not terminate");
}

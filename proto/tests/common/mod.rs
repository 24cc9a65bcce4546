//! Helpers shared by the integration tests of `sixsocks-proto`.
//!
//! Each test binary uses only some of them.
#![allow(dead_code)]

use sixsocks_proto::client::{ClientHandshake, ClientReply, ClientRequest};
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake};
use sixsocks_proto::testing::{self, AtEnd, Delivery};
pub use sixsocks_proto::testing::{chunk, PATTERNS};
use sixsocks_proto::{
    http, v5, Instruction, Parsed, Password, PeerError, ProtoError, ReplyCode, Request, TargetAddr,
    Version,
};

/// Every strict prefix of the valid encoding `msg` must parse as
/// `Incomplete` with `needed >= 1` and never more than what is really left
/// (a parser that over-asks deadlocks a peer waiting for an answer). The
/// whole message must parse completely, consuming exactly `msg.len()`,
/// also when more bytes follow it. Returns the parsed value.
pub fn check_prefixes<T, F>(msg: &[u8], parse: F) -> T
where
    T: std::fmt::Debug + PartialEq,
    F: Fn(&[u8]) -> Result<Parsed<T>, PeerError>,
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
    F: Fn(&[u8]) -> Result<Parsed<T>, PeerError>,
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
    /// `Finished`: the request, and every byte of the stream after it.
    Done { request: Request, rest: Vec<u8> },
    /// `Failed`: its bytes and error.
    Fail { bytes: Vec<u8>, error: ProtoError },
    /// The verdict was "refused"; the machine then failed with the RFC 1929
    /// failure reply (in `sent`) and `AuthFailed`, and stayed failed.
    AuthRejected,
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

/// Largest input cap the server (SOCKS 6 off) may ever have: room for an
/// HTTP head (and so for any first read) before the first byte chose the
/// protocol.
pub fn server_cap() -> usize {
    http::MAX_HTTP_HEAD.max(sixsocks_proto::MAX_MESSAGE)
}

/// Run a server handshake over `stream` delivered in chunks following
/// `pattern` (`None`: exactly `needed` bytes at a time), answering each
/// `Verify` with `check`, through the shared driver (which checks the
/// calling convention). A refused password must end the handshake with the
/// RFC 1929 failure and nothing else.
pub fn drive_server(
    config: HandshakeConfig,
    stream: &[u8],
    pattern: Option<&[usize]>,
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
) -> Outcome {
    let mut hs = ServerHandshake::new(config);
    let mut verified = Vec::new();
    let mut rejected = false;
    let delivery = pattern.map_or(Delivery::Exact, Delivery::Pattern);
    let trace = testing::drive(&mut hs, stream, delivery, AtEnd::Wait, &mut |hs, v| {
        let ok = check(&v.username, &v.password);
        verified.push((v.username.clone(), v.password.expose().to_vec()));
        rejected |= !ok;
        hs.verdict(ok);
    });
    assert!(hs.input().cap() <= server_cap());
    let mut sent = trace.sent_bytes();
    let end = match trace.end {
        testing::End::Failed { reply, error } if rejected => {
            assert_eq!(error, PeerError::AuthFailed, "a refused password");
            assert_eq!(reply, [1, 1], "the RFC 1929 failure");
            sent.extend_from_slice(&reply);
            End::AuthRejected
        }
        end if rejected => panic!("a refused password ended with {end:?}"),
        testing::End::Finished {
            value: Accepted::Socks(request),
            rest,
        } => End::Done { request, rest },
        testing::End::Finished { value, .. } => panic!("not a SOCKS4/5 request: {value:?}"),
        testing::End::Failed { reply, error } => End::Fail {
            bytes: reply,
            error,
        },
        testing::End::Stalled { needed } => End::Stalled { needed },
    };
    Outcome {
        sent,
        verified,
        end,
    }
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

/// Put `bytes` into the machine's input (all of them must fit) and step.
pub fn feed(hs: &mut ServerHandshake, bytes: &[u8]) -> sixsocks_proto::server::Step {
    assert_eq!(hs.input().push(bytes), bytes.len(), "the input is full");
    hs.step()
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
    // Bytes delivered after a side finished its handshake.
    let mut s_after: Vec<u8> = Vec::new();
    let mut c_after: Vec<u8> = Vec::new();
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
    let mut server_fed = false;
    let mut client_fed = false;
    for _ in 0..100_000 {
        let mut progress = false;
        // Deliver at most `mtu` bytes each way (as far as the input takes).
        let n = c2s_wire.len().min(mtu);
        if n > 0 {
            let taken = if server_open {
                server.input().push(&c2s_wire[..n])
            } else {
                s_after.extend_from_slice(&c2s_wire[..n]);
                n
            };
            c2s_wire.drain(..taken);
            progress |= taken > 0;
            server_fed |= taken > 0;
        }
        let n = s2c_wire.len().min(mtu);
        if n > 0 {
            let taken = if client_open {
                client.input().push(&s2c_wire[..n])
            } else {
                c_after.extend_from_slice(&s2c_wire[..n]);
                n
            };
            s2c_wire.drain(..taken);
            progress |= taken > 0;
            client_fed |= taken > 0;
        }
        if server_open && std::mem::take(&mut server_fed) {
            loop {
                match server.step() {
                    Instruction::NeedMore(n) => {
                        assert!(n >= 1);
                        break;
                    }
                    Instruction::Send(bytes) => {
                        s2c_wire.extend(bytes);
                        progress = true;
                    }
                    Instruction::Event(v) => {
                        let ok = check(&v.username, &v.password);
                        server.verdict(ok);
                        if !ok {
                            rt.auth_rejected = true;
                        }
                        progress = true;
                    }
                    Instruction::Finished { value, rest } => {
                        let Accepted::Socks(request) = value else {
                            panic!("not a SOCKS4/5 request")
                        };
                        s_after.extend(rest);
                        s2c_wire.extend(request.reply(code, bound, false));
                        s2c_wire.extend_from_slice(reply_data);
                        rt.request = Some(request);
                        server_open = false;
                        progress = true;
                        break;
                    }
                    Instruction::Failed { reply, error } => {
                        s2c_wire.extend(reply);
                        if error != PeerError::AuthFailed || !rt.auth_rejected {
                            rt.server_error = Some(error);
                        }
                        server_open = false;
                        progress = true;
                        break;
                    }
                }
            }
        }
        if client_open && std::mem::take(&mut client_fed) {
            loop {
                match client.step() {
                    Instruction::NeedMore(n) => {
                        assert!(n >= 1);
                        break;
                    }
                    Instruction::Send(bytes) => {
                        let is_request = request_bytes.as_deref() == Some(&bytes[..]);
                        c2s_wire.extend(bytes);
                        if is_request {
                            c2s_wire.extend_from_slice(optimistic);
                        }
                        progress = true;
                    }
                    Instruction::Event(never) => match never {},
                    Instruction::Finished { value, rest } => {
                        c_after.extend(rest);
                        rt.client = Some(Ok(value));
                        client_open = false;
                        progress = true;
                        break;
                    }
                    Instruction::Failed { error, .. } => {
                        rt.client = Some(Err(error));
                        client_open = false;
                        progress = true;
                        break;
                    }
                }
            }
        }
        if !progress {
            // Quiet: both sides wait, or one side closed. A client still
            // waiting for a server that closed sees EOF.
            // What each side had read but not consumed, then what came after.
            rt.client_rest = [client.input().bytes(), &c_after].concat();
            rt.server_rest = [server.input().bytes(), &s_after].concat();
            return rt;
        }
    }
    panic!("round trip did not terminate");
}

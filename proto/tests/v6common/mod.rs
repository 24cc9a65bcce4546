//! Helpers shared by the SOCKS 6 integration tests of `sixsocks-proto`.
#![allow(dead_code)]

use std::collections::HashMap;

use sixsocks_proto::server::{Dispatch, HandshakeConfig, ServerHandshake};
use sixsocks_proto::v6::client::{ClientRequest, ClientStep, Socks6Client};
use sixsocks_proto::v6::idempotence::{serve_tokens, TokenPolicy, TokenWindow};
use sixsocks_proto::v6::server::{ServerConfig, Socks6Handshake, Step};
use sixsocks_proto::v6::{
    AssociationId, AuthReply, Leg, OperationReply, Options, Socks6Limits, Socks6Option,
    Socks6Request, StackOption, StackValue,
};
use sixsocks_proto::{Command, Password, ProtoError, ReplyCode, TargetAddr};

/// Chunk patterns (cycled); `usize::MAX` means all at once.
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

pub fn chunk<'a>(data: &'a [u8], pattern: &[usize]) -> Vec<&'a [u8]> {
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

pub fn config(require_auth: bool) -> ServerConfig {
    ServerConfig {
        require_auth,
        lenient_auth: false,
        limits: Socks6Limits::default(),
    }
}

/// Where a v6 server handshake ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Done {
        request: Box<Socks6Request>,
        rest: Vec<u8>,
    },
    Fail {
        bytes: Vec<u8>,
        error: ProtoError,
    },
    Stalled {
        needed: usize,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub sent: Vec<u8>,
    pub verified: Vec<(Vec<u8>, Vec<u8>)>,
    pub end: End,
}

/// Run the server side over `stream` through the shared-port dispatcher
/// (SOCKS 6 enabled), delivering chunks per `pattern` (`None`: exactly what
/// `NeedMore` asks). Checks the calling convention on the way: `NeedMore`
/// ≥ 1 and within the request cap, `consumed` within the input, stickiness.
pub fn drive(
    cfg: ServerConfig,
    stream: &[u8],
    pattern: Option<&[usize]>,
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
) -> Outcome {
    let mut hs = ServerHandshake::new(HandshakeConfig {
        require_auth: cfg.require_auth,
        lenient_auth: cfg.lenient_auth,
    })
    .with_socks6(cfg.limits.clone());
    let chunks = pattern.map(|p| chunk(stream, p));
    let mut next = 0;
    let mut delivered = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    // The dispatcher first.
    let mut m: Socks6Handshake = loop {
        match hs.dispatch(&buf) {
            Dispatch::Socks6(m) => break *m,
            Dispatch::Step(sixsocks_proto::server::Step::NeedMore(n)) => {
                assert_eq!(n, 1);
                if delivered == stream.len() {
                    return Outcome {
                        sent: vec![],
                        verified: vec![],
                        end: End::Stalled { needed: n },
                    };
                }
                let got = feed(&mut buf, stream, &chunks, &mut next, delivered, n);
                delivered += got;
            }
            other => panic!("dispatcher did not hand over a 06 stream: {other:?}"),
        }
    };
    let cap = cfg.limits.max_request_bytes(m.profile());
    let mut sent = Vec::new();
    let mut verified = Vec::new();
    for _ in 0..(stream.len() * 4 + 64) {
        match m.step(&buf) {
            Step::NeedMore(n) => {
                assert!(n >= 1, "NeedMore(0)");
                assert!(
                    buf.len() + n <= cap,
                    "NeedMore({n}) with {} buffered exceeds the cap {cap}",
                    buf.len()
                );
                if delivered == stream.len() {
                    return Outcome {
                        sent,
                        verified,
                        end: End::Stalled { needed: n },
                    };
                }
                let got = feed(&mut buf, stream, &chunks, &mut next, delivered, n);
                delivered += got;
            }
            Step::Reply { consumed, bytes } => {
                assert!(consumed <= buf.len());
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
                m.auth_result(ok);
            }
            Step::Done { consumed, request } => {
                assert!(consumed <= buf.len());
                buf.drain(..consumed);
                buf.extend_from_slice(&stream[delivered..]);
                match m.step(&buf) {
                    Step::Fail { bytes, error } => {
                        assert!(bytes.is_empty());
                        assert_eq!(error, ProtoError::Finished);
                    }
                    other => panic!("not sticky after Done: {other:?}"),
                }
                return Outcome {
                    sent,
                    verified,
                    end: End::Done { request, rest: buf },
                };
            }
            Step::Fail { bytes, error } => {
                buf.extend_from_slice(&stream[delivered..]);
                for _ in 0..2 {
                    match m.step(&buf) {
                        Step::Fail { bytes: b, .. } => assert!(b.is_empty()),
                        other => panic!("not sticky after Fail: {other:?}"),
                    }
                }
                return Outcome {
                    sent,
                    verified,
                    end: End::Fail { bytes, error },
                };
            }
        }
    }
    panic!("drive did not terminate");
}

fn feed(
    buf: &mut Vec<u8>,
    stream: &[u8],
    chunks: &Option<Vec<&[u8]>>,
    next: &mut usize,
    delivered: usize,
    needed: usize,
) -> usize {
    match chunks {
        Some(c) => {
            let c = c[*next];
            *next += 1;
            buf.extend_from_slice(c);
            c.len()
        }
        None => {
            let n = needed.min(stream.len() - delivered);
            buf.extend_from_slice(&stream[delivered..delivered + n]);
            n
        }
    }
}

/// [`drive`] with every pattern and with exact reads; all must agree.
pub fn drive_all_ways(
    cfg: ServerConfig,
    stream: &[u8],
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
) -> Outcome {
    let reference = drive(cfg.clone(), stream, None, check);
    for p in PATTERNS {
        let o = drive(cfg.clone(), stream, Some(p), check);
        assert_eq!(o, reference, "chunk pattern {p:?} changed the outcome");
    }
    reference
}

pub fn creds(user: &'static [u8], pass: &'static [u8]) -> impl FnMut(&[u8], &Password) -> bool {
    move |u, p| u == user && *p == Password::new(pass)
}

pub fn no_auth() -> impl FnMut(&[u8], &Password) -> bool {
    |_, _| panic!("Verify where no authentication was expected")
}

// ------------------------------------------------------------------ round trips

/// A simulated proxy runtime around the server machine: users, token
/// windows per user, and canned answers per command.
pub struct Proxy {
    pub config: ServerConfig,
    pub users: Vec<(Vec<u8>, Vec<u8>)>,
    pub windows: HashMap<Vec<u8>, Option<TokenWindow>>,
    pub policy: TokenPolicy,
    /// Base of the next granted window.
    pub next_base: u32,
    /// The bound address CONNECT/BIND/UDP report.
    pub bound: TargetAddr,
    /// Reply code for CONNECT (to test refusals).
    pub connect_code: ReplyCode,
    /// What the "target" sends after CONNECT succeeds.
    pub target_data: Vec<u8>,
}

impl Proxy {
    pub fn new(require_auth: bool) -> Self {
        Proxy {
            config: config(require_auth),
            users: vec![(b"alice".to_vec(), b"s3cret".to_vec())],
            windows: HashMap::new(),
            policy: TokenPolicy { max_window: 8 },
            next_base: 1000,
            bound: TargetAddr::ip("192.0.2.1".parse().unwrap(), 1080),
            connect_code: ReplyCode::Succeeded,
            target_data: Vec::new(),
        }
    }
}

/// Everything observable from one client/proxy exchange.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The request the proxy's machine handed over.
    pub request: Option<Box<Socks6Request>>,
    pub server_error: Option<ProtoError>,
    pub verified: Vec<Vec<u8>>,
    /// Whether the proxy carried out the command (false: token refused).
    pub executed: bool,
    /// Bytes the proxy received after `Done` (application data).
    pub server_rest: Vec<u8>,
    /// What the client machine reported, in order.
    pub client: Vec<ClientEvent>,
    /// Bytes the client received after its final step.
    pub client_rest: Vec<u8>,
    /// Number of flights (client→proxy deliveries that carried bytes).
    pub client_flights: usize,
    /// Number of `Send` steps of the client (slow-path messages).
    pub client_sends: usize,
    /// The client's first flight.
    pub first_flight: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Authenticated(AuthReply),
    Bound(OperationReply),
    UdpAssociated(OperationReply, AssociationId),
    UdpConfirmed,
    Done(OperationReply),
    Fail(ProtoError),
}

impl Exchange {
    pub fn final_reply(&self) -> Option<&OperationReply> {
        self.client.iter().rev().find_map(|e| match e {
            ClientEvent::Done(r) => Some(r),
            _ => None,
        })
    }
    pub fn auth_reply(&self) -> Option<&AuthReply> {
        self.client.iter().find_map(|e| match e {
            ClientEvent::Authenticated(r) => Some(r),
            _ => None,
        })
    }
    pub fn client_error(&self) -> Option<&ProtoError> {
        self.client.iter().find_map(|e| match e {
            ClientEvent::Fail(e) => Some(e),
            _ => None,
        })
    }
}

/// The proxy's answer to a finished request: the bytes it sends, in order.
fn answer(proxy: &mut Proxy, req: &Socks6Request, ex: &mut Exchange) -> Vec<u8> {
    let mut out = Vec::new();
    let user = req.credentials.user().map(<[u8]>::to_vec);
    let mut decision = None;
    if let Some(user) = &user {
        let slot = proxy.windows.entry(user.clone()).or_default();
        let d = serve_tokens(slot, &req.options, &proxy.policy, proxy.next_base);
        proxy.next_base = proxy.next_base.wrapping_add(1_000_000);
        decision = Some(d);
    }
    let auth_options = decision
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    out.extend(req.auth_reply(auth_options).unwrap());
    if decision.as_ref().is_some_and(|d| !d.proceed) {
        out.extend(
            req.operation_reply(ReplyCode::GeneralFailure, None, Options::new())
                .unwrap(),
        );
        return out;
    }
    ex.executed = true;
    // Report the stack options "applied": echo TFO and MPTCP on the
    // proxy-remote leg.
    let applied: Options = req
        .options
        .stack()
        .filter(|s| s.leg.proxy_remote())
        .filter(|s| {
            matches!(
                s.value,
                StackValue::TcpFastOpen { .. } | StackValue::Mptcp | StackValue::ListenBacklog(_)
            )
        })
        .map(|s| Socks6Option::Stack(StackOption::new(Leg::PROXY_REMOTE, s.value.clone())))
        .collect();
    match req.command {
        Command::NOOP => out.extend(
            req.operation_reply(ReplyCode::Succeeded, None, Options::new())
                .unwrap(),
        ),
        Command::CONNECT => {
            out.extend(
                req.operation_reply(proxy.connect_code, Some(&proxy.bound), applied)
                    .unwrap(),
            );
            if proxy.connect_code.is_success() {
                out.extend_from_slice(&proxy.target_data);
            }
        }
        Command::BIND => {
            let backlog = applied
                .stack()
                .any(|s| matches!(s.value, StackValue::ListenBacklog(_)));
            out.extend(
                req.operation_reply(ReplyCode::Succeeded, Some(&proxy.bound), applied)
                    .unwrap(),
            );
            if !backlog {
                let peer = TargetAddr::ip("198.51.100.7".parse().unwrap(), 40000);
                out.extend(
                    req.operation_reply(ReplyCode::Succeeded, Some(&peer), Options::new())
                        .unwrap(),
                );
            }
        }
        Command::UDP_ASSOCIATE => {
            out.extend(
                req.operation_reply(ReplyCode::Succeeded, Some(&proxy.bound), Options::new())
                    .unwrap(),
            );
            out.extend(req.association_init(AssociationId(0xDEADBEEF)).unwrap());
            // As if the first datagram arrived at once.
            out.extend(req.association_confirmation());
        }
        _ => out.extend(
            req.operation_reply(ReplyCode::CommandNotSupported, None, Options::new())
                .unwrap(),
        ),
    }
    out
}

/// Run a client machine against the server machine (through the
/// dispatcher) in memory. Each turn moves at most `mtu` bytes each way.
/// `app_data` is what the client application sends once allowed (right
/// behind the first flight when false start is allowed, else after
/// `Authenticated`).
pub fn exchange(req: ClientRequest, proxy: &mut Proxy, mtu: usize, app_data: &[u8]) -> Exchange {
    let mut ex = Exchange::default();
    let (mut client, first) = match Socks6Client::new(req) {
        Ok(x) => x,
        Err(e) => {
            ex.client.push(ClientEvent::Fail(e));
            return ex;
        }
    };
    ex.first_flight = first.clone();
    let mut c2s: Vec<u8> = first;
    if client.false_start_allowed() {
        c2s.extend_from_slice(app_data);
    }
    let mut app_sent = client.false_start_allowed();
    let mut s2c: Vec<u8> = Vec::new();
    let mut server_in: Vec<u8> = Vec::new();
    let mut client_in: Vec<u8> = Vec::new();
    let hc = HandshakeConfig {
        require_auth: proxy.config.require_auth,
        lenient_auth: proxy.config.lenient_auth,
    };
    let mut dispatcher = Some(ServerHandshake::new(hc).with_socks6(proxy.config.limits.clone()));
    let mut server: Option<Socks6Handshake> = None;
    let mut server_done = false;
    let mut server_closed = false;
    let mut client_done = false;
    for _ in 0..10_000 {
        let mut progressed = false;
        // Wire: client -> proxy.
        if !c2s.is_empty() && !server_closed {
            let n = mtu.min(c2s.len());
            server_in.extend(c2s.drain(..n));
            ex.client_flights += 1;
            progressed = true;
        }
        // Proxy.
        if !server_done {
            loop {
                if let Some(d) = dispatcher.as_mut() {
                    match d.dispatch(&server_in) {
                        Dispatch::Socks6(m) => {
                            server = Some(*m);
                            dispatcher = None;
                        }
                        Dispatch::Step(_) => break,
                    }
                }
                let Some(m) = server.as_mut() else { break };
                match m.step(&server_in) {
                    Step::NeedMore(_) => break,
                    Step::Reply { consumed, bytes } => {
                        server_in.drain(..consumed);
                        s2c.extend(bytes);
                    }
                    Step::Verify {
                        consumed,
                        username,
                        password,
                    } => {
                        server_in.drain(..consumed);
                        let ok = proxy
                            .users
                            .iter()
                            .any(|(u, p)| *u == username && Password::new(p.clone()) == password);
                        ex.verified.push(username);
                        m.auth_result(ok);
                    }
                    Step::Done { consumed, request } => {
                        server_in.drain(..consumed);
                        let bytes = answer(proxy, &request, &mut ex);
                        s2c.extend(bytes);
                        ex.request = Some(request);
                        server_done = true;
                        break;
                    }
                    Step::Fail { bytes, error } => {
                        s2c.extend(bytes);
                        ex.server_error = Some(error);
                        server_done = true;
                        server_closed = true;
                        break;
                    }
                }
            }
        }
        if server_done {
            ex.server_rest.append(&mut server_in);
        }
        // Wire: proxy -> client.
        if !s2c.is_empty() {
            let n = mtu.min(s2c.len());
            client_in.extend(s2c.drain(..n));
            progressed = true;
        }
        // Client.
        while !client_done {
            match client.step(&client_in) {
                ClientStep::NeedMore(_) => break,
                ClientStep::Send { consumed, bytes } => {
                    client_in.drain(..consumed);
                    ex.client_sends += 1;
                    c2s.extend(bytes);
                    if !app_sent {
                        // The draft: data may follow the last client message.
                        c2s.extend_from_slice(app_data);
                        app_sent = true;
                    }
                }
                ClientStep::Authenticated { consumed, reply } => {
                    client_in.drain(..consumed);
                    ex.client.push(ClientEvent::Authenticated(reply));
                    if !app_sent {
                        c2s.extend_from_slice(app_data);
                        app_sent = true;
                    }
                }
                ClientStep::Bound { consumed, reply } => {
                    client_in.drain(..consumed);
                    ex.client.push(ClientEvent::Bound(reply));
                }
                ClientStep::UdpAssociated {
                    consumed,
                    reply,
                    id,
                } => {
                    client_in.drain(..consumed);
                    ex.client.push(ClientEvent::UdpAssociated(reply, id));
                }
                ClientStep::UdpConfirmed { consumed } => {
                    client_in.drain(..consumed);
                    ex.client.push(ClientEvent::UdpConfirmed);
                    client_done = true;
                }
                ClientStep::Done { consumed, reply } => {
                    client_in.drain(..consumed);
                    ex.client.push(ClientEvent::Done(reply));
                    client_done = true;
                }
                ClientStep::Fail(e) => {
                    ex.client.push(ClientEvent::Fail(e));
                    client_done = true;
                }
            }
        }
        if !progressed && c2s.is_empty() && s2c.is_empty() {
            if server_closed && !client_done {
                // The proxy closed: the client sees EOF.
                ex.client.push(ClientEvent::Fail(client.on_eof(&client_in)));
            }
            break;
        }
    }
    ex.client_rest = client_in;
    ex
}

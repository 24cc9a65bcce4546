//! Helpers shared by the SOCKS 6 integration tests of `sixsocks-proto`.
#![allow(dead_code)]

use std::collections::HashMap;

use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake};
pub use sixsocks_proto::testing::PATTERNS;
use sixsocks_proto::testing::{self, AtEnd, Delivery};
use sixsocks_proto::v6::client::{ClientRequest, Event, Final, Socks6Client};
use sixsocks_proto::v6::idempotence::{serve_tokens, TokenPolicy, TokenWindow};
use sixsocks_proto::v6::server::ServerConfig;
use sixsocks_proto::v6::{
    AssociationId, AuthReply, Leg, OperationReply, Options, Socks6Limits, Socks6Option,
    Socks6Request, StackOption, StackValue,
};
use sixsocks_proto::{Command, Instruction, Password, ProtoError, ReplyCode, TargetAddr};

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

/// The server machine with SOCKS 6 enabled under `cfg`, on a listener set
/// to draft -05 (these tests are -05's; `v6_profiles.rs` and
/// `v6_draft11.rs` cover the other profiles and the `auto` listener).
pub fn server(cfg: &ServerConfig) -> ServerHandshake {
    ServerHandshake::new(HandshakeConfig {
        require_auth: cfg.require_auth,
        lenient_auth: cfg.lenient_auth,
    })
    .with_socks6(cfg.limits.clone())
    .with_socks6_setting(sixsocks_proto::v6::ProfileSetting::Only(
        sixsocks_proto::v6::Profile::Draft05,
    ))
}

/// Run the server machine (SOCKS 6 enabled) over `stream`, delivering
/// chunks per `pattern` (`None`: exactly what `NeedMore` asks), through the
/// shared driver, which checks the calling convention on the way.
pub fn drive(
    cfg: ServerConfig,
    stream: &[u8],
    pattern: Option<&[usize]>,
    check: &mut dyn FnMut(&[u8], &Password) -> bool,
) -> Outcome {
    let cap = cfg.limits.max_request_bytes_any();
    let mut hs = server(&cfg);
    let mut verified = Vec::new();
    let delivery = pattern.map_or(Delivery::Exact, Delivery::Pattern);
    let trace = testing::drive(&mut hs, stream, delivery, AtEnd::Wait, &mut |hs, v| {
        let ok = check(&v.username, &v.password);
        verified.push((v.username.clone(), v.password.expose().to_vec()));
        hs.verdict(ok);
    });
    assert!(hs.input().cap() <= cap.max(sixsocks_proto::MAX_MESSAGE));
    let sent = trace.sent_bytes();
    let end = match trace.end {
        testing::End::Finished {
            value: Accepted::Socks6(request),
            rest,
        } => End::Done { request, rest },
        testing::End::Finished { value, .. } => panic!("not a SOCKS 6 request: {value:?}"),
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
            out.extend(
                req.association_confirmation(AssociationId(0xDEADBEEF))
                    .unwrap(),
            );
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
    let mut server_after: Vec<u8> = Vec::new();
    let mut client_after: Vec<u8> = Vec::new();
    let mut hs = server(&proxy.config);
    let mut server_done = false;
    let mut server_closed = false;
    let mut client_done = false;
    for _ in 0..10_000 {
        let mut progressed = false;
        // Wire: client -> proxy.
        if !c2s.is_empty() && !server_closed {
            let n = mtu.min(c2s.len());
            let taken = if server_done {
                server_after.extend_from_slice(&c2s[..n]);
                n
            } else {
                hs.input().push(&c2s[..n])
            };
            c2s.drain(..taken);
            if taken > 0 {
                ex.client_flights += 1;
                progressed = true;
            }
        }
        // Proxy.
        while !server_done {
            match hs.step() {
                Instruction::NeedMore(_) => break,
                Instruction::Send(bytes) => s2c.extend(bytes),
                Instruction::Event(v) => {
                    let ok = proxy
                        .users
                        .iter()
                        .any(|(u, p)| *u == v.username && Password::new(p.clone()) == v.password);
                    ex.verified.push(v.username);
                    hs.verdict(ok);
                }
                Instruction::Finished { value, rest } => {
                    let Accepted::Socks6(request) = value else {
                        panic!("not a SOCKS 6 request")
                    };
                    server_after.extend(rest);
                    let bytes = answer(proxy, &request, &mut ex);
                    s2c.extend(bytes);
                    ex.request = Some(request);
                    server_done = true;
                }
                Instruction::Failed { reply, error } => {
                    s2c.extend(reply);
                    ex.server_error = Some(error);
                    server_done = true;
                    server_closed = true;
                }
            }
        }
        // Wire: proxy -> client.
        if !s2c.is_empty() {
            let n = mtu.min(s2c.len());
            let taken = if client_done {
                client_after.extend_from_slice(&s2c[..n]);
                n
            } else {
                client.input().push(&s2c[..n])
            };
            s2c.drain(..taken);
            progressed |= taken > 0;
        }
        if !progressed && c2s.is_empty() && s2c.is_empty() && server_closed && !client_done {
            // The proxy closed: the client sees EOF.
            client.input().close();
        }
        // Client.
        while !client_done {
            match client.step() {
                Instruction::NeedMore(_) => break,
                Instruction::Send(bytes) => {
                    ex.client_sends += 1;
                    c2s.extend(bytes);
                    if !app_sent {
                        // The draft: data may follow the last client message.
                        c2s.extend_from_slice(app_data);
                        app_sent = true;
                    }
                }
                Instruction::Event(Event::Authenticated(reply)) => {
                    ex.client.push(ClientEvent::Authenticated(reply));
                    if !app_sent {
                        c2s.extend_from_slice(app_data);
                        app_sent = true;
                    }
                }
                Instruction::Event(Event::Bound(reply)) => {
                    ex.client.push(ClientEvent::Bound(reply));
                }
                Instruction::Event(Event::UdpAssociated { reply, id }) => {
                    ex.client.push(ClientEvent::UdpAssociated(reply, id));
                }
                Instruction::Finished { value, rest } => {
                    client_after.extend(rest);
                    ex.client.push(match value {
                        Final::UdpConfirmed => ClientEvent::UdpConfirmed,
                        Final::Reply(reply) => ClientEvent::Done(reply),
                    });
                    client_done = true;
                }
                Instruction::Failed { error, .. } => {
                    ex.client.push(ClientEvent::Fail(error));
                    client_done = true;
                }
            }
        }
        if !progressed && c2s.is_empty() && s2c.is_empty() {
            break;
        }
    }
    // What each side had read but not consumed, then what came after.
    ex.server_rest = [hs.input().bytes(), &server_after].concat();
    ex.client_rest = [client.input().bytes(), &client_after].concat();
    ex
}

//! The client side of the SOCKS 6 handshake as a state machine with no IO.
//!
//! [`Socks6Client::new`] returns the machine and the first flight: the
//! request with all its options (credentials in an authentication data
//! option for 0-RTT authentication, when they fit) followed by the initial
//! data, in one buffer, to be written at once (in a TFO SYN where allowed).
//! Then feed [`Socks6Client::step`] everything received and not yet
//! consumed, and carry out the [`ClientStep`] it returns:
//!
//! ```text
//! NeedMore(n)                   read at least n more bytes; on EOF call `on_eof`
//! Send { consumed, bytes }      drop `consumed`, send `bytes` (the RFC 1929 request of the slow path), call again
//! Authenticated { consumed, .. } drop `consumed`; authentication succeeded (feed the reply's
//!                               options to a TokenWallet); call again for the operation reply
//! Bound { consumed, reply }     BIND's first operation reply (the bound address); call again
//!                               for the second one
//! UdpAssociated { consumed, reply, id } UDP ASSOCIATE succeeded: start sending datagrams with `id`;
//!                               call again (with later TCP input) for the confirmation
//! UdpConfirmed { consumed }     the proxy saw the first datagram; nothing more will come on TCP
//! Done { consumed, reply }      the final operation reply (which may be a refusal: close
//!                               unless it is success); CONNECT: data passes, bytes left in the
//!                               input are the target's
//! Fail(error)                   close
//! ```
//!
//! False starts: when the request carries no authentication method option
//! ([`Socks6Client::false_start_allowed`]), application data may be sent
//! right behind the first flight; otherwise only after `Authenticated` (or
//! right after the slow path's `Send`).

use crate::parse::Parsed;
use crate::v5::Method;
use crate::{userpass, Command, Password, ProtoError, TargetAddr};

use super::draft05::userpass_auth_data;
use super::messages::{AssociationId, AuthOutcome, AuthReply, OperationReply, Request};
use super::options::{AuthMethodOption, IdempotenceOption, Options, Socks6Option, StackValue};
use super::{Profile, Socks6Limits, MAX_INITIAL_DATA};

/// What the client asks for.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    pub command: Command,
    /// Ignored for NOOP (which always sends `0.0.0.0:0`).
    pub target: TargetAddr,
    /// Username/password (RFC 1929). Offered as method `02`.
    pub username: Option<Vec<u8>>,
    pub password: Option<Password>,
    /// Send the credentials inside the request (0-RTT) when they fit in an
    /// authentication data option (RFC 1929 message ≤ 252 bytes). Otherwise
    /// only advertise method `02` and authenticate on the slow path.
    pub zero_rtt_auth: bool,
    /// CONNECT only: data sent with the request (at most 8192 bytes).
    pub initial_data: Vec<u8>,
    /// Further options: stack options, idempotence (see
    /// [`TokenWallet::prepare`](super::idempotence::TokenWallet::prepare)),
    /// vendor options.
    pub options: Vec<Socks6Option>,
    /// Caps for parsing the proxy's replies.
    pub limits: Socks6Limits,
}

impl ClientRequest {
    pub fn new(command: Command, target: TargetAddr) -> Self {
        ClientRequest {
            command,
            target,
            username: None,
            password: None,
            zero_rtt_auth: true,
            initial_data: Vec::new(),
            options: Vec::new(),
            limits: Socks6Limits::default(),
        }
    }
}

/// One instruction for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientStep {
    NeedMore(usize),
    Send {
        consumed: usize,
        bytes: Vec<u8>,
    },
    Authenticated {
        consumed: usize,
        reply: AuthReply,
    },
    Bound {
        consumed: usize,
        reply: OperationReply,
    },
    UdpAssociated {
        consumed: usize,
        reply: OperationReply,
        id: AssociationId,
    },
    UdpConfirmed {
        consumed: usize,
    },
    Done {
        consumed: usize,
        reply: OperationReply,
    },
    Fail(ProtoError),
}

#[derive(Debug)]
enum State {
    AuthReply,
    /// Slow path: the RFC 1929 reply.
    UserPassReply,
    /// The second authentication reply, behind `skip` bytes (the RFC 1929
    /// reply, not yet reported as consumed).
    SecondAuthReply {
        skip: usize,
    },
    OperationReply,
    BindSecond,
    /// UDP ASSOCIATE: the operation reply (`len` bytes) is parsed; the id
    /// follows it.
    AssociationId {
        reply: OperationReply,
        len: usize,
    },
    Confirmation,
    Finished,
}

/// The SOCKS 6 client handshake state machine.
#[derive(Debug)]
pub struct Socks6Client {
    profile: Profile,
    command: Command,
    credentials: Option<(Vec<u8>, Password)>,
    zero_rtt: bool,
    false_start: bool,
    backlog_requested: bool,
    carries_app_data: bool,
    spends_token: bool,
    limits: Socks6Limits,
    state: State,
}

impl Socks6Client {
    /// Start a -05 handshake: returns the machine and the first flight.
    pub fn new(req: ClientRequest) -> Result<(Self, Vec<u8>), ProtoError> {
        Socks6Client::with_profile(req, Profile::Draft05)
    }

    pub fn with_profile(
        req: ClientRequest,
        profile: Profile,
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        if !req.initial_data.is_empty() && req.command != Command::CONNECT {
            return Err(ProtoError::Unexpected(
                "initial data on a command other than CONNECT",
            ));
        }
        if req.initial_data.len() > MAX_INITIAL_DATA {
            return Err(ProtoError::InitialDataTooLong(req.initial_data.len()));
        }
        let credentials = req
            .username
            .clone()
            .map(|u| (u, req.password.clone().unwrap_or_default()));
        let mut options: Vec<Socks6Option> = req.options.clone();
        let mut zero_rtt = false;
        if let Some((u, p)) = &credentials {
            // Refuse what RFC 1929 cannot carry before any IO.
            userpass::Request {
                username: u.clone(),
                password: p.clone(),
            }
            .encode()?;
            if req.zero_rtt_auth {
                if let Ok(data) = userpass_auth_data(u, p) {
                    options.push(Socks6Option::AuthData(data));
                    zero_rtt = true;
                }
            }
        }
        let false_start = credentials.is_none() && req.initial_data.is_empty();
        if !false_start {
            options.push(Socks6Option::AuthMethod(AuthMethodOption {
                initial_data_len: req.initial_data.len() as u16,
                methods: if credentials.is_some() {
                    vec![Method::USERPASS]
                } else {
                    Vec::new()
                },
            }));
        }
        let target = if req.command == Command::NOOP {
            TargetAddr::unspecified()
        } else {
            req.target.clone()
        };
        let backlog_requested = options.iter().any(|o| {
            matches!(o, Socks6Option::Stack(s) if matches!(s.value, StackValue::ListenBacklog(_)))
        });
        let spends_token = options.iter().any(|o| {
            matches!(
                o,
                Socks6Option::Idempotence(IdempotenceOption::Expenditure { .. })
            )
        });
        let mut first = profile.codec().encode_request(&Request {
            command: req.command,
            target,
            options: Options(options),
        })?;
        first.extend_from_slice(&req.initial_data);
        Ok((
            Socks6Client {
                profile,
                command: req.command,
                credentials,
                zero_rtt,
                false_start,
                backlog_requested,
                carries_app_data: !req.initial_data.is_empty(),
                spends_token,
                limits: req.limits,
                state: State::AuthReply,
            },
            first,
        ))
    }

    /// Whether application data may follow the first flight at once (the
    /// request carries no authentication method option).
    pub fn false_start_allowed(&self) -> bool {
        self.false_start
    }

    /// Whether the first flight may go in a TCP Fast Open SYN on the
    /// client–proxy leg, by the draft's rules (§ "TCP Fast Open on the
    /// Client-Proxy Leg"): a SYN can be replayed, so only when it carries no
    /// application data (no initial data), or the request spends an
    /// idempotence token, or the application tolerates replays (e.g. runs
    /// TLS without early data on top). False-start data sent right behind the
    /// first flight counts as application data: keep it out of the SYN.
    pub fn tfo_allowed(&self, app_tolerates_replay: bool) -> bool {
        app_tolerates_replay || !self.carries_app_data || self.spends_token
    }

    /// Whether the credentials went in the request (0-RTT authentication).
    pub fn zero_rtt_auth(&self) -> bool {
        self.zero_rtt
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    pub fn step(&mut self, input: &[u8]) -> ClientStep {
        match self.step_inner(input) {
            Ok(s) => s,
            Err(e) => {
                self.state = State::Finished;
                ClientStep::Fail(e)
            }
        }
    }

    /// The proxy closed the connection with `input` unconsumed. Returns
    /// why the handshake failed: [`ProtoError::VersionMismatch`] when the
    /// proxy sent a version mismatch reply instead of an authentication
    /// reply, [`ProtoError::UnexpectedEof`] otherwise (or
    /// [`ProtoError::Finished`] if the handshake was already over).
    pub fn on_eof(&mut self, input: &[u8]) -> ProtoError {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::AuthReply if self.profile.codec().is_version_mismatch(input, true) => {
                ProtoError::VersionMismatch
            }
            State::Finished => ProtoError::Finished,
            _ => ProtoError::UnexpectedEof,
        }
    }

    fn step_inner(&mut self, input: &[u8]) -> Result<ClientStep, ProtoError> {
        let codec = self.profile.codec();
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AuthReply => match codec.parse_auth_reply(input, &self.limits)? {
                Parsed::Incomplete { needed } => {
                    self.state = State::AuthReply;
                    Ok(ClientStep::NeedMore(needed))
                }
                Parsed::Complete { value, consumed } => match value.outcome {
                    AuthOutcome::Success(m) => self.authenticated(m, value, consumed),
                    AuthOutcome::Continue(Method::USERPASS) => {
                        let Some((u, p)) = &self.credentials else {
                            return Err(ProtoError::UnexpectedMethod(Method::USERPASS.0));
                        };
                        let bytes = userpass::Request {
                            username: u.clone(),
                            password: p.clone(),
                        }
                        .encode()?;
                        self.state = State::UserPassReply;
                        Ok(ClientStep::Send { consumed, bytes })
                    }
                    AuthOutcome::Continue(m) => Err(ProtoError::UnexpectedMethod(m.0)),
                    AuthOutcome::Failure if self.zero_rtt => Err(ProtoError::AuthFailed),
                    AuthOutcome::Failure => Err(ProtoError::NoAcceptableMethod),
                },
            },
            State::UserPassReply => match userpass::Reply::parse(input)? {
                Parsed::Incomplete { needed } => {
                    self.state = State::UserPassReply;
                    Ok(ClientStep::NeedMore(needed))
                }
                Parsed::Complete { value, consumed } => {
                    if !value.success() {
                        return Err(ProtoError::AuthFailed);
                    }
                    self.state = State::SecondAuthReply { skip: consumed };
                    self.step_inner(input)
                }
            },
            State::SecondAuthReply { skip } => {
                let rest = input.get(skip..).unwrap_or_default();
                match codec.parse_auth_reply(rest, &self.limits)? {
                    Parsed::Incomplete { needed } => {
                        self.state = State::SecondAuthReply { skip };
                        Ok(ClientStep::NeedMore(needed))
                    }
                    Parsed::Complete { value, consumed } => {
                        let consumed = consumed + skip;
                        match value.outcome {
                            AuthOutcome::Success(m) => self.authenticated(m, value, consumed),
                            AuthOutcome::Failure => Err(ProtoError::AuthFailed),
                            AuthOutcome::Continue(_) => Err(ProtoError::Unexpected(
                                "a second authentication reply that asks for more",
                            )),
                        }
                    }
                }
            }
            State::OperationReply => match codec.parse_operation_reply(input, &self.limits)? {
                Parsed::Incomplete { needed } => {
                    self.state = State::OperationReply;
                    Ok(ClientStep::NeedMore(needed))
                }
                Parsed::Complete { value, consumed } => {
                    if !value.code().is_success() {
                        return Ok(ClientStep::Done {
                            consumed,
                            reply: value,
                        });
                    }
                    match self.command {
                        Command::BIND => {
                            let listening = self.backlog_requested
                                && value
                                    .options
                                    .stack()
                                    .any(|s| matches!(s.value, StackValue::ListenBacklog(_)));
                            if listening {
                                return Ok(ClientStep::Done {
                                    consumed,
                                    reply: value,
                                });
                            }
                            self.state = State::BindSecond;
                            Ok(ClientStep::Bound {
                                consumed,
                                reply: value,
                            })
                        }
                        Command::UDP_ASSOCIATE => {
                            self.state = State::AssociationId {
                                reply: value,
                                len: consumed,
                            };
                            self.step_inner(input)
                        }
                        _ => Ok(ClientStep::Done {
                            consumed,
                            reply: value,
                        }),
                    }
                }
            },
            State::BindSecond => match codec.parse_operation_reply(input, &self.limits)? {
                Parsed::Incomplete { needed } => {
                    self.state = State::BindSecond;
                    Ok(ClientStep::NeedMore(needed))
                }
                Parsed::Complete { value, consumed } => Ok(ClientStep::Done {
                    consumed,
                    reply: value,
                }),
            },
            State::AssociationId { reply, len } => {
                match codec.parse_association_id(input.get(len..).unwrap_or_default())? {
                    Parsed::Incomplete { needed } => {
                        self.state = State::AssociationId { reply, len };
                        Ok(ClientStep::NeedMore(needed))
                    }
                    Parsed::Complete { value, consumed } => {
                        self.state = State::Confirmation;
                        Ok(ClientStep::UdpAssociated {
                            consumed: len + consumed,
                            reply,
                            id: value,
                        })
                    }
                }
            }
            State::Confirmation => match codec.parse_confirmation(input)? {
                Parsed::Incomplete { needed } => {
                    self.state = State::Confirmation;
                    Ok(ClientStep::NeedMore(needed))
                }
                Parsed::Complete { consumed, .. } => Ok(ClientStep::UdpConfirmed { consumed }),
            },
            State::Finished => Err(ProtoError::Finished),
        }
    }

    fn authenticated(
        &mut self,
        method: Method,
        reply: AuthReply,
        consumed: usize,
    ) -> Result<ClientStep, ProtoError> {
        let ok =
            method == Method::NONE || (method == Method::USERPASS && self.credentials.is_some());
        if !ok {
            return Err(ProtoError::UnexpectedMethod(method.0));
        }
        self.state = State::OperationReply;
        Ok(ClientStep::Authenticated { consumed, reply })
    }
}

//! The client side of the SOCKS 6 handshake as a state machine with no IO.
//!
//! [`Socks6Client::new`] returns the machine and the first flight: the
//! request with all its options (credentials in an authentication data
//! option for 0-RTT authentication, when they fit) followed by the initial
//! data, in one buffer, to be written at once (in a TFO SYN where allowed).
//! Then put what the proxy sends into [`Socks6Client::input`] (closing it
//! at EOF), call [`Socks6Client::step`], and carry out the [`Step`] it
//! returns (see [`crate::input`] for the convention):
//!
//! ```text
//! NeedMore(n)                      read more
//! Send(bytes)                      send the RFC 1929 request of the slow path, step again
//! Event(Authenticated(reply))      authentication succeeded (feed the reply's options
//!                                  to a TokenWallet); step again for the operation reply
//! Event(Bound(reply))              BIND's first operation reply (the bound address);
//!                                  step again for the second one
//! Event(UdpAssociated { .. })      UDP ASSOCIATE succeeded: start sending datagrams with
//!                                  the id; step again (with later TCP input) for the confirmation
//! Finished { value, rest }         `Final::Reply`: the final operation reply (which may be
//!                                  a refusal: close unless it is success); CONNECT: data
//!                                  passes, `rest` is the target's. `Final::UdpConfirmed`:
//!                                  the proxy saw the first datagram; nothing more comes on TCP
//! Failed { error, .. }             close ([`PeerError::VersionMismatch`] when the proxy
//!                                  answered with a version mismatch reply and closed)
//! ```
//!
//! False starts: when the request carries no authentication method option
//! ([`Socks6Client::false_start_allowed`]), application data may be sent
//! right behind the first flight; otherwise only after `Authenticated` (or
//! right after the slow path's `Send`).

use crate::input::{Input, Instruction};
use crate::parse::Parsed;
use crate::v5::Method;
use crate::{userpass, Command, EncodeError, Misuse, Password, PeerError, ProtoError, TargetAddr};

use super::messages::{AssociationId, AuthOutcome, AuthReply, OperationReply, Request};
use super::options::{
    AuthMethodOption, IdempotenceOption, Options, SessionOption, Socks6Option, StackValue,
};
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

/// The events of the SOCKS 6 client machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Authentication succeeded (the successful authentication reply).
    Authenticated(AuthReply),
    /// BIND's first operation reply, with the bound address.
    Bound(OperationReply),
    /// UDP ASSOCIATE succeeded; datagrams carry this id.
    UdpAssociated {
        reply: OperationReply,
        id: AssociationId,
    },
}

/// How the SOCKS 6 client handshake ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Final {
    /// The final operation reply (which may be a refusal).
    Reply(OperationReply),
    /// The UDP association's confirmation.
    UdpConfirmed,
}

/// What [`Socks6Client::step`] returns.
pub type Step = Instruction<Final, Event>;

#[derive(Debug)]
enum State {
    AuthReply,
    /// Slow path: the RFC 1929 reply.
    UserPassReply,
    /// The second authentication reply (after the RFC 1929 reply).
    SecondAuthReply,
    OperationReply,
    BindSecond,
    /// UDP ASSOCIATE: the operation reply is parsed; the id follows it.
    AssociationId(OperationReply),
    Confirmation(AssociationId),
    Finished,
    Failed(ProtoError),
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
    input: Input,
}

impl Socks6Client {
    /// Start a handshake in the default profile: returns the machine and
    /// the first flight. Fails before any IO with a
    /// [`ProtoError::Encode`] when the request cannot be written (a target,
    /// credentials, options or initial data the wire cannot carry), or
    /// with [`Misuse::InitialDataNotConnect`].
    pub fn new(req: ClientRequest) -> Result<(Self, Vec<u8>), ProtoError> {
        Socks6Client::with_profile(req, Profile::DEFAULT)
    }

    /// [`Socks6Client::new`] in `profile`.
    pub fn with_profile(
        req: ClientRequest,
        profile: Profile,
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        if !req.initial_data.is_empty() && req.command != Command::CONNECT {
            return Err(Misuse::InitialDataNotConnect.into());
        }
        if req.initial_data.len() > MAX_INITIAL_DATA {
            return Err(EncodeError::InitialDataTooLong(req.initial_data.len()).into());
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
                if let Ok(data) = profile.codec().userpass_auth_data(u, p) {
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
                input: Input::with_cap(reply_cap(&req.limits)),
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

    /// The input buffer: put what the proxy sends here.
    pub fn input(&mut self) -> &mut Input {
        &mut self.input
    }

    /// Advance. See the module documentation.
    pub fn step(&mut self) -> Step {
        let stepped = self.step_inner();
        crate::input::sticky(stepped, |e| self.state = State::Failed(e))
    }

    /// What to answer when the parser wants `needed` more bytes: at EOF
    /// before the first reply, a version mismatch reply is recognised.
    fn need_more(&self, needed: usize, first_reply: bool) -> Step {
        let codec = self.profile.codec();
        if first_reply
            && self.input.is_closed()
            && codec.is_version_mismatch(self.input.bytes(), true)
        {
            return Instruction::failed(PeerError::VersionMismatch);
        }
        self.input.need_more(needed)
    }

    fn step_inner(&mut self) -> Result<Step, ProtoError> {
        let codec = self.profile.codec();
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AuthReply => match codec.parse_auth_reply(self.input.bytes(), &self.limits) {
                Err(e) => Err(e.into()),
                Ok(Parsed::Incomplete { needed }) => {
                    self.state = State::AuthReply;
                    Ok(self.need_more(needed, true))
                }
                Ok(Parsed::Complete { value, consumed }) => {
                    self.input.consume(consumed);
                    self.first_auth_reply(value)
                }
            },
            State::UserPassReply => match userpass::Reply::parse(self.input.bytes())? {
                Parsed::Incomplete { needed } => {
                    self.state = State::UserPassReply;
                    Ok(self.need_more(needed, false))
                }
                Parsed::Complete { value, consumed } => {
                    self.input.consume(consumed);
                    if !value.success() {
                        return Err(PeerError::AuthFailed.into());
                    }
                    self.state = State::SecondAuthReply;
                    self.step_inner()
                }
            },
            State::SecondAuthReply => {
                match codec.parse_auth_reply(self.input.bytes(), &self.limits)? {
                    Parsed::Incomplete { needed } => {
                        self.state = State::SecondAuthReply;
                        Ok(self.need_more(needed, false))
                    }
                    Parsed::Complete { value, consumed } => {
                        self.input.consume(consumed);
                        match value.outcome {
                            AuthOutcome::Success(m) => self.authenticated(m, value),
                            AuthOutcome::Failure => Err(PeerError::AuthFailed.into()),
                            AuthOutcome::Continue(_) => Err(PeerError::Unexpected(
                                "a second authentication reply that asks for more",
                            )
                            .into()),
                        }
                    }
                }
            }
            State::OperationReply => {
                match codec.parse_operation_reply(self.input.bytes(), &self.limits)? {
                    Parsed::Incomplete { needed } => {
                        self.state = State::OperationReply;
                        Ok(self.need_more(needed, false))
                    }
                    Parsed::Complete { value, consumed } => {
                        self.input.consume(consumed);
                        self.operation_reply(value)
                    }
                }
            }
            State::BindSecond => {
                match codec.parse_operation_reply(self.input.bytes(), &self.limits)? {
                    Parsed::Incomplete { needed } => {
                        self.state = State::BindSecond;
                        Ok(self.need_more(needed, false))
                    }
                    Parsed::Complete { value, consumed } => {
                        self.input.consume(consumed);
                        Ok(self.finished(Final::Reply(value)))
                    }
                }
            }
            State::AssociationId(reply) => match codec.parse_association_id(self.input.bytes())? {
                Parsed::Incomplete { needed } => {
                    self.state = State::AssociationId(reply);
                    Ok(self.need_more(needed, false))
                }
                Parsed::Complete { value, consumed } => {
                    self.input.consume(consumed);
                    self.state = State::Confirmation(value);
                    Ok(Instruction::Event(Event::UdpAssociated {
                        reply,
                        id: value,
                    }))
                }
            },
            State::Confirmation(id) => match codec.parse_confirmation(self.input.bytes(), id)? {
                Parsed::Incomplete { needed } => {
                    self.state = State::Confirmation(id);
                    Ok(self.need_more(needed, false))
                }
                Parsed::Complete { consumed, .. } => {
                    self.input.consume(consumed);
                    Ok(self.finished(Final::UdpConfirmed))
                }
            },
            State::Finished => Err(Misuse::Finished.into()),
            State::Failed(e) => Err(e),
        }
    }

    /// The first authentication reply: success, a request for RFC 1929,
    /// or a refusal.
    fn first_auth_reply(&mut self, value: AuthReply) -> Result<Step, ProtoError> {
        match value.outcome {
            AuthOutcome::Success(m) => self.authenticated(m, value),
            AuthOutcome::Continue(Method::USERPASS) => {
                let Some((u, p)) = &self.credentials else {
                    return Err(PeerError::UnexpectedMethod(Method::USERPASS.0).into());
                };
                let bytes = userpass::Request {
                    username: u.clone(),
                    password: p.clone(),
                }
                .encode()?;
                self.state = State::UserPassReply;
                Ok(Instruction::Send(bytes))
            }
            AuthOutcome::Continue(m) => Err(PeerError::UnexpectedMethod(m.0).into()),
            // -11: a failure that names a session or a token says why.
            AuthOutcome::Failure if value.options.has_session(&SessionOption::Invalid) => {
                Err(PeerError::SessionInvalid.into())
            }
            AuthOutcome::Failure
                if value
                    .options
                    .expenditure_reply()
                    .is_some_and(|c| !c.is_success()) =>
            {
                Err(PeerError::TokenRejected.into())
            }
            AuthOutcome::Failure if self.zero_rtt => Err(PeerError::AuthFailed.into()),
            AuthOutcome::Failure => Err(PeerError::NoAcceptableMethod.into()),
        }
    }

    /// The (first) operation reply: the end, or BIND's / UDP's next stage.
    fn operation_reply(&mut self, value: OperationReply) -> Result<Step, ProtoError> {
        if !value.code().is_success() {
            return Ok(self.finished(Final::Reply(value)));
        }
        match self.command {
            Command::BIND => {
                let listening = self.backlog_requested
                    && value
                        .options
                        .stack()
                        .any(|s| matches!(s.value, StackValue::ListenBacklog(_)));
                if listening {
                    return Ok(self.finished(Final::Reply(value)));
                }
                self.state = State::BindSecond;
                Ok(Instruction::Event(Event::Bound(value)))
            }
            Command::UDP_ASSOCIATE => {
                self.state = State::AssociationId(value);
                self.step_inner()
            }
            _ => Ok(self.finished(Final::Reply(value))),
        }
    }

    fn finished(&mut self, value: Final) -> Step {
        self.state = State::Finished;
        Instruction::Finished {
            value,
            rest: self.input.take(),
        }
    }

    fn authenticated(&mut self, method: Method, reply: AuthReply) -> Result<Step, ProtoError> {
        let ok =
            method == Method::NONE || (method == Method::USERPASS && self.credentials.is_some());
        if !ok {
            return Err(PeerError::UnexpectedMethod(method.0).into());
        }
        self.state = State::OperationReply;
        Ok(Instruction::Event(Event::Authenticated(reply)))
    }
}

/// Most bytes buffered while reading the proxy's replies: two
/// authentication replies and an operation reply, each with a full options
/// area, the RFC 1929 reply and an association id.
fn reply_cap(limits: &Socks6Limits) -> usize {
    3 * (300 + limits.max_options_bytes) + 16
}

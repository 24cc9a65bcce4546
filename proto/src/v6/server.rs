//! The server side of the SOCKS 6 handshake as a state machine with no IO.
//!
//! Feed [`Socks6Handshake::step`] everything received and not yet consumed
//! (starting with the request's first byte `06`); it returns one [`Step`],
//! an instruction the caller must carry out in full before calling again:
//!
//! ```text
//! NeedMore(n)             read at least n more bytes, call again with the whole unconsumed input
//! Reply { consumed, .. }  drop `consumed` bytes (may be 0), send the bytes, call again
//! Verify { consumed, .. } drop `consumed` bytes, check the credentials, call
//!                         `auth_result(ok)`, then call `step` again (it answers
//!                         with Reply/Done on success, Fail on refusal)
//! Done { consumed, .. }   drop `consumed` bytes (may be 0): the client is
//!                         authenticated and the request complete; whatever
//!                         input remains is application data (see below)
//! Fail { bytes, error }   send the bytes (maybe empty), then close
//! ```
//!
//! After `Done` the caller owns the protocol:
//!
//! 1. Idempotence: if the request carries idempotence options, run
//!    [`serve_tokens`](super::idempotence::serve_tokens) on the user's
//!    window (under a lock) and put its options in the authentication reply.
//! 2. Send the successful authentication reply,
//!    [`Socks6Request::auth_reply`] (right away: it does not wait for the
//!    operation).
//! 3. If the token could not be spent (`proceed == false`), send
//!    [`Socks6Request::operation_reply`] with general failure and close.
//!    An unsupported command gets `CommandNotSupported` (`07`) and a close.
//! 4. Carry out the command (CONNECT: connect and send `initial_data` with
//!    it, in the SYN when TFO was asked for and is possible), then send the
//!    operation reply with the stack options actually applied. On failure,
//!    close after it.
//!    - NOOP: operation reply (success), then the client closes.
//!    - CONNECT: relay; bytes left in the input after `Done` and bytes that
//!      follow are application data for the target ("false start").
//!    - BIND: first operation reply (bound address), second one when the
//!      remote host connects (its address), then relay.
//!    - UDP ASSOCIATE: operation reply, then
//!      [`Socks6Request::association_init`]; once the first datagram with that
//!      id arrives, [`Socks6Request::association_confirmation`]. The
//!      association lives as long as the TCP connection.
//!
//! Authentication:
//!
//! * An authentication data option for method `02` (an RFC 1929 request,
//!   "0-RTT") is always verified (`Verify`), required or not. Accepted:
//!   `Done`. Refused: `Fail` with the failure authentication reply.
//! * Otherwise, without `require_auth`: `Done` at once, method `00`.
//! * Otherwise, if method `02` is offered in an authentication method
//!   option: `Reply` with "further authentication needed, method 02", then
//!   the RFC 1929 exchange (`Verify`); accepted: `Reply` of the RFC 1929
//!   success (`01 00`), then `Done` (the caller sends the second, successful
//!   authentication reply); refused: `Fail` with `01 01` and the failure
//!   authentication reply.
//! * Otherwise: `Fail` with the failure authentication reply (`06 00 01 FF
//!   00`).
//!
//! Initial data: for CONNECT with an authentication method option that
//! declares N bytes, the machine waits for exactly N bytes behind the
//! request (N ≤ [`Socks6Limits::initial_data_cap`]) and hands them over in
//! [`Socks6Request::initial_data`]; it never reads past them.
//!
//! A request whose version is `06` but whose minor byte is not `00` gets the
//! version mismatch reply `06 00` (`Fail`). Any other malformed request,
//! and every cap, ends with a silent `Fail` (close without reply). Errors
//! are sticky: after `Fail`, or after a refused `auth_result`, the machine
//! only yields `Fail` with no bytes; nothing pipelined behind a refused
//! password is ever handed over.
//!
//! The machine never reads the clock; the caller times out an incomplete
//! handshake (the draft's §12).

use crate::parse::Parsed;
use crate::v5::Method;
use crate::{userpass, Command, Credentials, Password, ProtoError};

use super::messages::{AuthOutcome, AuthReply, Request, Socks6Request};
use super::options::Options;
use super::{Profile, Socks6Limits};

/// Policy of the SOCKS 6 server machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// Username/password is mandatory.
    pub require_auth: bool,
    /// Accept empty username or password fields (Tor's leniency).
    pub lenient_auth: bool,
    pub limits: Socks6Limits,
}

/// One instruction for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    NeedMore(usize),
    Reply {
        consumed: usize,
        bytes: Vec<u8>,
    },
    Verify {
        consumed: usize,
        username: Vec<u8>,
        password: Password,
    },
    Done {
        consumed: usize,
        request: Box<Socks6Request>,
    },
    Fail {
        bytes: Vec<u8>,
        error: ProtoError,
    },
}

#[derive(Debug)]
struct Pending {
    request: Request,
    initial_data: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Request,
    /// The request is parsed (`header` bytes); waiting for `want` bytes of
    /// initial data behind it.
    InitialData {
        request: Request,
        header: usize,
        want: usize,
    },
    /// Waiting for the RFC 1929 request of the slow path.
    SlowAuth(Pending),
    /// Waiting for `auth_result`.
    AwaitAuth {
        pending: Pending,
        slow: bool,
        username: Vec<u8>,
        password: Password,
    },
    /// Authenticated; `prefix` (the RFC 1929 success) still to send.
    Approved {
        pending: Pending,
        credentials: Credentials,
        prefix: Option<Vec<u8>>,
    },
    /// Credentials refused; these bytes still to send.
    Rejected(Vec<u8>),
    Finished,
}

/// The SOCKS 6 server handshake state machine.
#[derive(Debug)]
pub struct Socks6Handshake {
    config: ServerConfig,
    profile: Profile,
    state: State,
    /// The user name presented so far (for logs).
    user: Option<Vec<u8>>,
}

type StepResult = Result<Step, (Vec<u8>, ProtoError)>;

impl Socks6Handshake {
    /// A machine for draft -05.
    pub fn new(config: ServerConfig) -> Self {
        Socks6Handshake::with_profile(config, Profile::Draft05)
    }

    pub fn with_profile(config: ServerConfig, profile: Profile) -> Self {
        Socks6Handshake {
            config,
            profile,
            state: State::Request,
            user: None,
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The user name presented so far, for logging a failed handshake.
    pub fn user(&self) -> Option<&[u8]> {
        self.user.as_deref()
    }

    /// Advance with the unconsumed input. See the module documentation.
    pub fn step(&mut self, input: &[u8]) -> Step {
        match self.step_inner(input) {
            Ok(step) => step,
            Err((bytes, error)) => {
                self.state = State::Finished;
                Step::Fail { bytes, error }
            }
        }
    }

    /// Report whether the credentials of the last `Verify` are accepted,
    /// then call [`step`](Self::step) again.
    pub fn auth_result(&mut self, ok: bool) {
        let state = std::mem::replace(&mut self.state, State::Finished);
        if let State::AwaitAuth {
            pending,
            slow,
            username,
            password,
        } = state
        {
            self.state = if ok {
                State::Approved {
                    pending,
                    credentials: Credentials::UserPass { username, password },
                    prefix: slow.then(|| {
                        userpass::Reply {
                            status: userpass::SUCCESS,
                        }
                        .encode()
                        .to_vec()
                    }),
                }
            } else {
                let mut bytes = Vec::new();
                if slow {
                    bytes.extend_from_slice(
                        &userpass::Reply {
                            status: userpass::FAILURE,
                        }
                        .encode(),
                    );
                }
                bytes.extend_from_slice(&self.failure_reply());
                State::Rejected(bytes)
            };
        }
    }

    fn failure_reply(&self) -> Vec<u8> {
        self.profile
            .codec()
            .encode_auth_reply(&AuthReply {
                outcome: AuthOutcome::Failure,
                options: Options::new(),
            })
            .unwrap_or_default()
    }

    fn step_inner(&mut self, input: &[u8]) -> StepResult {
        let codec = self.profile.codec();
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Request => match codec.parse_request(input, &self.config.limits) {
                Err(ProtoError::VersionMismatch) => {
                    Err((codec.version_mismatch_reply(), ProtoError::VersionMismatch))
                }
                Err(e) => Err((Vec::new(), e)),
                Ok(Parsed::Incomplete { needed }) => {
                    self.state = State::Request;
                    Ok(Step::NeedMore(needed))
                }
                Ok(Parsed::Complete { value, consumed }) => {
                    let want = if value.command == Command::CONNECT {
                        value
                            .options
                            .initial_data_len()
                            .map_err(|e| (Vec::new(), e))?
                    } else {
                        0
                    };
                    if want > self.config.limits.initial_data_cap() {
                        return Err((Vec::new(), ProtoError::InitialDataTooLong(want)));
                    }
                    self.state = State::InitialData {
                        request: value,
                        header: consumed,
                        want,
                    };
                    self.step_inner(input)
                }
            },
            State::InitialData {
                request,
                header,
                want,
            } => {
                let end = header + want;
                if input.len() < end {
                    self.state = State::InitialData {
                        request,
                        header,
                        want,
                    };
                    return Ok(Step::NeedMore(end - input.len()));
                }
                let pending = Pending {
                    request,
                    initial_data: input[header..end].to_vec(),
                };
                self.authenticate(pending, end)
            }
            State::SlowAuth(pending) => {
                match userpass::Request::parse(input, self.config.lenient_auth) {
                    Err(e) => {
                        let mut bytes = userpass::Reply {
                            status: userpass::FAILURE,
                        }
                        .encode()
                        .to_vec();
                        bytes.extend_from_slice(&self.failure_reply());
                        Err((bytes, e))
                    }
                    Ok(Parsed::Incomplete { needed }) => {
                        self.state = State::SlowAuth(pending);
                        Ok(Step::NeedMore(needed))
                    }
                    Ok(Parsed::Complete { value, consumed }) => {
                        Ok(self.verify(pending, true, value, consumed))
                    }
                }
            }
            State::Approved {
                pending,
                credentials,
                prefix: Some(bytes),
            } => {
                self.state = State::Approved {
                    pending,
                    credentials,
                    prefix: None,
                };
                Ok(Step::Reply { consumed: 0, bytes })
            }
            State::Approved {
                pending,
                credentials,
                prefix: None,
            } => Ok(self.done(pending, credentials, Method::USERPASS, 0)),
            State::Rejected(bytes) => Err((bytes, ProtoError::AuthFailed)),
            State::AwaitAuth { .. } | State::Finished => Err((Vec::new(), ProtoError::Finished)),
        }
    }

    /// Decide how the client authenticates, once the request and its
    /// initial data (`consumed` bytes in all) are in.
    fn authenticate(&mut self, pending: Pending, consumed: usize) -> StepResult {
        let codec = self.profile.codec();
        let options = &pending.request.options;
        if let Some(data) = options.auth_data(Method::USERPASS) {
            let bytes = data.data.expose();
            return match userpass::Request::parse(bytes, self.config.lenient_auth) {
                Ok(Parsed::Complete { value, consumed: c }) if c == bytes.len() => {
                    Ok(self.verify(pending, false, value, consumed))
                }
                Ok(_) => Err((
                    self.failure_reply(),
                    ProtoError::BadOption("authentication data is not one RFC 1929 request"),
                )),
                Err(e) => Err((self.failure_reply(), e)),
            };
        }
        if !self.config.require_auth {
            return Ok(self.done(pending, Credentials::None, Method::NONE, consumed));
        }
        if options.offered_methods().contains(&Method::USERPASS) {
            let bytes = codec
                .encode_auth_reply(&AuthReply {
                    outcome: AuthOutcome::Continue(Method::USERPASS),
                    options: Options::new(),
                })
                .map_err(|e| (Vec::new(), e))?;
            self.state = State::SlowAuth(pending);
            return Ok(Step::Reply { consumed, bytes });
        }
        Err((self.failure_reply(), ProtoError::NoAcceptableMethod))
    }

    fn verify(
        &mut self,
        pending: Pending,
        slow: bool,
        creds: userpass::Request,
        consumed: usize,
    ) -> Step {
        self.user = Some(creds.username.clone());
        self.state = State::AwaitAuth {
            pending,
            slow,
            username: creds.username.clone(),
            password: creds.password.clone(),
        };
        Step::Verify {
            consumed,
            username: creds.username,
            password: creds.password,
        }
    }

    fn done(
        &mut self,
        pending: Pending,
        credentials: Credentials,
        auth_method: Method,
        consumed: usize,
    ) -> Step {
        self.state = State::Finished;
        let Pending {
            request,
            initial_data,
        } = pending;
        Step::Done {
            consumed,
            request: Box::new(Socks6Request {
                profile: self.profile,
                command: request.command,
                target: request.target,
                options: request.options,
                initial_data,
                credentials,
                auth_method,
            }),
        }
    }
}

//! The SOCKS 6 states of the server machine. A first byte `06` hands the
//! handshake from the crate's `server::ServerHandshake` to this part, which
//! reads from the same capped input; its instructions come out of the
//! machine's one `step()`:
//!
//! ```text
//! Send(bytes)              the "further authentication needed, method 02" reply,
//!                          or the RFC 1929 success of the slow path
//! Event(Verify { .. })     check the credentials, give the verdict, step again (it
//!                          answers with Send/Finished on success, Failed on refusal)
//! Finished { value, rest } the client is authenticated and the request complete
//!                          (`Accepted::Socks6`); `rest` is application data (see below)
//! Failed { reply, error }  send the reply (maybe empty), then close
//! ```
//!
//! After `Finished` the caller owns the protocol:
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
//!    - CONNECT: relay; `rest` and the bytes that follow are application
//!      data for the target ("false start").
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
//!   `Finished`. Refused: `Failed` with the failure authentication reply.
//! * Otherwise, without `require_auth`: `Finished` at once, method `00`.
//! * Otherwise, if method `02` is offered in an authentication method
//!   option: `Send` of "further authentication needed, method 02", then
//!   the RFC 1929 exchange (`Verify`); accepted: `Send` of the RFC 1929
//!   success (`01 00`), then `Finished` (the caller sends the second,
//!   successful authentication reply); refused: `Failed` with `01 01` and
//!   the failure authentication reply.
//! * Otherwise: `Failed` with the failure authentication reply (`06 00 01
//!   FF 00`).
//!
//! Initial data: for CONNECT with an authentication method option that
//! declares N bytes, the machine waits for exactly N bytes behind the
//! request (N ≤ [`Socks6Limits::initial_data_cap`]) and hands them over in
//! [`Socks6Request::initial_data`]; bytes behind them are `rest`.
//!
//! A request whose version is `06` but whose minor byte is not `00` gets the
//! version mismatch reply `06 00` (`Failed`). Any other malformed request,
//! and every cap, ends with a silent `Failed` (close without reply). Errors
//! are sticky (the machine keeps them); nothing pipelined behind a refused
//! password is ever handed over.
//!
//! The machine never reads the clock; the caller times out an incomplete
//! handshake (the draft's §12).

use crate::input::{Input, Instruction};
use crate::parse::Parsed;
use crate::userpass::Verify;
use crate::v5::Method;
use crate::{userpass, Command, Credentials, Misuse, Password, PeerError, ProtoError};

use super::messages::{
    userpass_reply_option, AuthOutcome, AuthReply, Request, SessionUse, Socks6Request,
};
use super::options::{Options, SessionOption};
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
    /// Waiting for the verdict.
    AwaitVerdict {
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

/// The SOCKS 6 part of the server handshake.
#[derive(Debug)]
pub(crate) struct Socks6Handshake {
    config: ServerConfig,
    profile: Profile,
    state: State,
    /// The user name presented so far (for logs).
    user: Option<Vec<u8>>,
}

type Stepped = Result<Instruction<Socks6Request, Verify>, (Vec<u8>, ProtoError)>;

impl Socks6Handshake {
    /// A machine for `profile`.
    pub(crate) fn with_profile(config: ServerConfig, profile: Profile) -> Self {
        Socks6Handshake {
            config,
            profile,
            state: State::Request,
            user: None,
        }
    }

    pub(crate) fn profile(&self) -> Profile {
        self.profile
    }

    /// The most input this machine needs buffered at once.
    pub(crate) fn input_cap(&self) -> usize {
        self.config.limits.max_request_bytes(self.profile)
    }

    /// The user name presented so far, for logging a failed handshake.
    pub(crate) fn user(&self) -> Option<&[u8]> {
        self.user.as_deref()
    }

    /// The verdict on the last `Verify`'s credentials; returns false (and
    /// changes nothing) unless the machine was waiting for one.
    pub(crate) fn verdict(&mut self, ok: bool) -> bool {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let State::AwaitVerdict {
            pending,
            slow,
            username,
            password,
        } = state
        else {
            self.state = state;
            return false;
        };
        self.state = if ok {
            State::Approved {
                pending,
                credentials: Credentials::UserPass { username, password },
                prefix: slow.then(|| userpass_reply(userpass::SUCCESS)),
            }
        } else {
            let mut bytes = Vec::new();
            if slow {
                bytes.extend_from_slice(&userpass_reply(userpass::FAILURE));
            }
            bytes.extend_from_slice(&self.failure_reply());
            State::Rejected(bytes)
        };
        true
    }

    /// The failed authentication reply. In profiles with sessions it
    /// carries the RFC 1929 failure in an authentication data option, as
    /// the reference sends it (also to a client that sent no credentials).
    fn failure_reply(&self) -> Vec<u8> {
        let mut options = Options::new();
        if self.profile.has_sessions() {
            options.push(userpass_reply_option(userpass::FAILURE));
        }
        self.profile
            .codec()
            .encode_auth_reply(&AuthReply {
                outcome: AuthOutcome::Failure,
                options,
            })
            .unwrap_or_default()
    }

    /// What the request says about sessions (nothing in -05).
    fn session_use(&self, options: &Options) -> SessionUse {
        if !self.profile.has_sessions() {
            return SessionUse::None;
        }
        match options.session_id() {
            Some(id) if options.has_session(&SessionOption::Teardown) => {
                SessionUse::Teardown(id.to_vec())
            }
            Some(id) => SessionUse::Member(id.to_vec()),
            None if options.has_session(&SessionOption::Request) => SessionUse::Start,
            None => SessionUse::None,
        }
    }

    pub(crate) fn step(&mut self, input: &mut Input) -> Stepped {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Request => self.request(input),
            State::InitialData {
                request,
                header,
                want,
            } => {
                let end = header + want;
                if input.len() < end {
                    let more = input.need_more(end - input.len());
                    self.state = State::InitialData {
                        request,
                        header,
                        want,
                    };
                    return Ok(more);
                }
                let initial_data = input.bytes()[header..end].to_vec();
                input.consume(end);
                let pending = Pending {
                    request,
                    initial_data,
                };
                self.authenticate(pending, input)
            }
            State::SlowAuth(pending) => {
                match userpass::Request::parse(input.bytes(), self.config.lenient_auth) {
                    Err(e) => {
                        let mut bytes = userpass_reply(userpass::FAILURE);
                        bytes.extend_from_slice(&self.failure_reply());
                        Err((bytes, e.into()))
                    }
                    Ok(Parsed::Incomplete { needed }) => {
                        self.state = State::SlowAuth(pending);
                        Ok(input.need_more(needed))
                    }
                    Ok(Parsed::Complete { value, consumed }) => {
                        input.consume(consumed);
                        Ok(self.verify(pending, true, value))
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
                Ok(Instruction::Send(bytes))
            }
            State::Approved {
                pending,
                credentials,
                prefix: None,
            } => Ok(self.done(pending, credentials, Method::USERPASS, input)),
            State::Rejected(bytes) => Err((bytes, PeerError::AuthFailed.into())),
            State::AwaitVerdict { .. } | State::Finished => {
                Err((Vec::new(), Misuse::Finished.into()))
            }
        }
    }

    /// The request header, then (through `InitialData`) its initial data.
    fn request(&mut self, input: &mut Input) -> Stepped {
        let codec = self.profile.codec();
        match codec.parse_request(input.bytes(), &self.config.limits) {
            Err(PeerError::VersionMismatch) => Err((
                codec.version_mismatch_reply(),
                PeerError::VersionMismatch.into(),
            )),
            Err(e) => Err((Vec::new(), e.into())),
            Ok(Parsed::Incomplete { needed }) => {
                self.state = State::Request;
                Ok(input.need_more(needed))
            }
            Ok(Parsed::Complete { value, consumed }) => {
                let want = if value.command == Command::CONNECT {
                    value
                        .options
                        .initial_data_len()
                        .map_err(|e| (Vec::new(), e.into()))?
                } else {
                    0
                };
                if want > self.config.limits.initial_data_cap() {
                    return Err((Vec::new(), PeerError::InitialDataTooLong(want).into()));
                }
                self.state = State::InitialData {
                    request: value,
                    header: consumed,
                    want,
                };
                self.step(input)
            }
        }
    }

    /// Decide how the client authenticates, once the request and its
    /// initial data are in (and consumed).
    fn authenticate(&mut self, pending: Pending, input: &mut Input) -> Stepped {
        let codec = self.profile.codec();
        let options = &pending.request.options;
        // A request in a session is not authenticated (the draft: the proxy
        // MUST ignore any authentication attempt and MUST NOT require one);
        // the caller resolves the session (`SessionUse::Member`).
        if let SessionUse::Member(_) = self.session_use(options) {
            return Ok(self.done(pending, Credentials::None, Method::NONE, input));
        }
        if let Some(data) = options.auth_data(Method::USERPASS) {
            let bytes = data.data.expose();
            // Aligned profiles pad the option: up to 3 zeros may follow the
            // RFC 1929 request.
            let align = codec.layout().alignment;
            return match userpass::Request::parse(bytes, self.config.lenient_auth) {
                Ok(Parsed::Complete { value, consumed: c })
                    if c == bytes.len()
                        || (bytes.len() - c < align && bytes[c..].iter().all(|&b| b == 0)) =>
                {
                    Ok(self.verify(pending, false, value))
                }
                Ok(_) => Err((
                    self.failure_reply(),
                    PeerError::BadOption("authentication data is not one RFC 1929 request").into(),
                )),
                Err(e) => Err((self.failure_reply(), e.into())),
            };
        }
        if !self.config.require_auth {
            return Ok(self.done(pending, Credentials::None, Method::NONE, input));
        }
        if options.offered_methods().contains(&Method::USERPASS) {
            let bytes = codec
                .encode_auth_reply(&AuthReply {
                    outcome: AuthOutcome::Continue(Method::USERPASS),
                    options: Options::new(),
                })
                .map_err(|e| (Vec::new(), e.into()))?;
            self.state = State::SlowAuth(pending);
            return Ok(Instruction::Send(bytes));
        }
        Err((self.failure_reply(), PeerError::NoAcceptableMethod.into()))
    }

    fn verify(
        &mut self,
        pending: Pending,
        slow: bool,
        creds: userpass::Request,
    ) -> Instruction<Socks6Request, Verify> {
        self.user = Some(creds.username.clone());
        self.state = State::AwaitVerdict {
            pending,
            slow,
            username: creds.username.clone(),
            password: creds.password.clone(),
        };
        Instruction::Event(Verify {
            username: creds.username,
            password: creds.password,
        })
    }

    fn done(
        &mut self,
        pending: Pending,
        credentials: Credentials,
        auth_method: Method,
        input: &mut Input,
    ) -> Instruction<Socks6Request, Verify> {
        self.state = State::Finished;
        let Pending {
            request,
            initial_data,
        } = pending;
        let session = self.session_use(&request.options);
        Instruction::Finished {
            value: Socks6Request {
                profile: self.profile,
                command: request.command,
                target: request.target,
                options: request.options,
                initial_data,
                credentials,
                auth_method,
                session,
            },
            rest: input.take(),
        }
    }
}

fn userpass_reply(status: u8) -> Vec<u8> {
    userpass::Reply { status }.encode().to_vec()
}

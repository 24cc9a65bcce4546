//! The server side of the SOCKS4/4a/5 handshake as a state machine with no IO.
//!
//! Feed [`ServerHandshake::step`] everything received and not yet consumed;
//! it returns one [`Step`], an instruction the caller must carry out in full
//! before calling again:
//!
//! ```text
//! NeedMore(n)            read at least n more bytes, call again with the whole unconsumed input
//! Reply { consumed, .. } drop `consumed` bytes of input, send the bytes, call again
//! Verify { consumed, .. } drop `consumed` bytes, check the credentials, call
//!                        `auth_result(ok)` and send what it returns (close if !ok)
//! Done { consumed, .. }  drop `consumed` bytes: the request is complete; whatever
//!                        input remains is optimistic data for the target
//! Fail { bytes, error }  send the bytes (maybe empty), then close
//! ```
//!
//! Errors are sticky: after `Fail`, or after a failed `auth_result`, the
//! machine never yields anything but `Fail` again, so a request pipelined
//! behind a rejected password is never read, let alone carried out.
//!
//! # SOCKS 6 on the same port
//!
//! SOCKS 6 is opt-in and leaves [`Step`], [`Request`] and [`Version`]
//! untouched: build the machine with [`ServerHandshake::with_socks6`] and
//! drive it with [`ServerHandshake::dispatch`] instead of `step`. `dispatch`
//! returns [`Dispatch::Step`] (exactly what `step` would have returned) for
//! every first byte but `06` and `CF`; on `CF` (the SOCKS 6 reference
//! dialect, not spoken yet) it fails with the -05 version mismatch reply
//! `06 00`; on `06` it returns [`Dispatch::Socks6`] with a
//! fresh [`v6::server::Socks6Handshake`], having consumed nothing: feed that
//! machine the same unconsumed input from then on (see [`v6::server`] for
//! its convention). `step` itself never hands over, so without
//! `with_socks6` (or when calling `step`), `06` stays an unknown version.

use crate::error::ProtoError;
use crate::http;
use crate::parse::Parsed;
use crate::reply::ReplyCode;
use crate::v5::{Method, MethodChoice};
use crate::{userpass, v4, v5, v6, Credentials, Password, Request, TargetAddr, Version};

/// Policy the state machine needs to answer a client.
#[derive(Clone, Debug, Default)]
pub struct HandshakeConfig {
    /// Username/password is mandatory: a SOCKS5 client that does not offer
    /// method 02 gets `FF`. (SOCKS4 clients are refused by the caller, since
    /// SOCKS4 cannot carry a password.)
    pub require_auth: bool,
    /// Tor's leniency: accept an RFC 1929 message even after method 00 was
    /// chosen, and accept empty username or password fields.
    pub lenient_auth: bool,
}

/// What [`ServerHandshake::dispatch`] returns.
#[derive(Debug)]
pub enum Dispatch {
    /// A SOCKS4/4a/5 (or HTTP, or unknown) instruction, as from `step`.
    Step(Step),
    /// The first byte is `06`: the rest of the handshake belongs to this
    /// machine (nothing has been consumed).
    Socks6(Box<v6::server::Socks6Handshake>),
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
        request: Request,
    },
    Fail {
        bytes: Vec<u8>,
        error: ProtoError,
    },
}

#[derive(Debug)]
enum State {
    Start,
    V4,
    V5Greeting,
    V5Auth,
    /// Waiting for `auth_result`.
    AwaitAuth {
        username: Vec<u8>,
        password: Password,
    },
    V5Request {
        /// Tor's leniency: an RFC 1929 message may still come.
        late_auth_ok: bool,
    },
    /// Reading an HTTP request head; `scanned` bytes were already searched
    /// for its end (so a head trickled byte by byte costs linear time).
    Http {
        scanned: usize,
    },
    Finished,
}

/// The server handshake state machine.
#[derive(Debug)]
pub struct ServerHandshake {
    config: HandshakeConfig,
    state: State,
    credentials: Credentials,
    /// Version detected from the first byte (for logs), once known.
    version: Option<Version>,
    /// SOCKS 6 policy, when enabled.
    socks6: Option<v6::server::ServerConfig>,
}

impl ServerHandshake {
    pub fn new(config: HandshakeConfig) -> Self {
        ServerHandshake {
            config,
            state: State::Start,
            credentials: Credentials::None,
            version: None,
            socks6: None,
        }
    }

    /// Serve SOCKS 6 (draft -05) too, through [`ServerHandshake::dispatch`].
    /// The SOCKS 6 machine takes `require_auth` and `lenient_auth` from this
    /// machine's [`HandshakeConfig`].
    pub fn with_socks6(mut self, limits: v6::Socks6Limits) -> Self {
        self.socks6 = Some(v6::server::ServerConfig {
            require_auth: self.config.require_auth,
            lenient_auth: self.config.lenient_auth,
            limits,
        });
        self
    }

    /// Whether [`ServerHandshake::with_socks6`] enabled SOCKS 6.
    pub fn socks6_enabled(&self) -> bool {
        self.socks6.is_some()
    }

    /// Like [`ServerHandshake::step`], but with SOCKS 6 enabled a first
    /// byte `06` hands the connection over to a SOCKS 6 machine (this
    /// machine is then finished). See the module documentation.
    pub fn dispatch(&mut self, input: &[u8]) -> Dispatch {
        if let (State::Start, Some(&v6::VERSION), Some(config)) =
            (&self.state, input.first(), self.socks6.as_ref())
        {
            let machine = v6::server::Socks6Handshake::new(config.clone());
            self.state = State::Finished;
            return Dispatch::Socks6(Box::new(machine));
        }
        // `CF`: the SOCKS 6 reference implementation's own version byte. Not
        // spoken here (yet): -05 asks for its version mismatch reply to any
        // request whose version is not 6.0, so the client learns why.
        if let (State::Start, Some(&v6::REF_VERSION), Some(_)) =
            (&self.state, input.first(), self.socks6.as_ref())
        {
            self.state = State::Finished;
            return Dispatch::Step(Step::Fail {
                bytes: v6::Profile::Draft05.codec().version_mismatch_reply(),
                error: ProtoError::VersionMismatch,
            });
        }
        Dispatch::Step(self.step(input))
    }

    /// The protocol detected so far (`None` before the first byte or for
    /// non-SOCKS input).
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The user name presented so far, for logging a failed handshake.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
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

    /// Report whether the credentials of the last `Verify` are accepted.
    /// Returns the RFC 1929 reply to send; on `false` the caller must close
    /// after sending it, and the machine is finished.
    pub fn auth_result(&mut self, ok: bool) -> Vec<u8> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::AwaitAuth { username, password } if ok => {
                self.credentials = Credentials::UserPass { username, password };
                self.state = State::V5Request {
                    late_auth_ok: false,
                };
                userpass::Reply {
                    status: userpass::SUCCESS,
                }
                .encode()
                .to_vec()
            }
            _ => userpass::Reply {
                status: userpass::FAILURE,
            }
            .encode()
            .to_vec(),
        }
    }

    fn step_inner(&mut self, input: &[u8]) -> Result<Step, (Vec<u8>, ProtoError)> {
        match &self.state {
            State::Start => {
                let Some(&first) = input.first() else {
                    return Ok(Step::NeedMore(1));
                };
                match first {
                    v4::VERSION => {
                        self.version = Some(Version::V4);
                        self.state = State::V4;
                    }
                    v5::VERSION => {
                        self.version = Some(Version::V5);
                        self.state = State::V5Greeting;
                    }
                    b if http::looks_like_http(b) => self.state = State::Http { scanned: 0 },
                    b => return Err((Vec::new(), ProtoError::UnknownVersion(b))),
                }
                self.step_inner(input)
            }
            State::V4 => match v4::Request::parse(input) {
                Err(e) => Err((v4::Reply::for_target(e.reply_code(), None).encode(), e)),
                Ok(Parsed::Incomplete { needed }) => Ok(Step::NeedMore(needed)),
                Ok(Parsed::Complete { value, consumed }) => {
                    let version = value.version();
                    self.version = Some(version);
                    self.state = State::Finished;
                    let credentials = if value.userid.is_empty() {
                        Credentials::None
                    } else {
                        Credentials::UserId(value.userid)
                    };
                    Ok(Step::Done {
                        consumed,
                        request: Request {
                            version,
                            command: value.command,
                            target: value.target,
                            credentials,
                        },
                    })
                }
            },
            State::V5Greeting => match v5::Greeting::parse(input) {
                Err(e @ ProtoError::NoMethods) => {
                    Err((MethodChoice(Method::NO_ACCEPTABLE).encode().to_vec(), e))
                }
                Err(e) => Err((Vec::new(), e)),
                Ok(Parsed::Incomplete { needed }) => Ok(Step::NeedMore(needed)),
                Ok(Parsed::Complete { value, consumed }) => {
                    // Prefer username/password whenever it is offered: even
                    // when it is not required, the credentials isolate streams.
                    let method = if value.offers(Method::USERPASS) {
                        self.state = State::V5Auth;
                        Method::USERPASS
                    } else if value.offers(Method::NONE) && !self.config.require_auth {
                        self.state = State::V5Request {
                            late_auth_ok: self.config.lenient_auth,
                        };
                        Method::NONE
                    } else {
                        return Err((
                            MethodChoice(Method::NO_ACCEPTABLE).encode().to_vec(),
                            ProtoError::NoAcceptableMethod,
                        ));
                    };
                    Ok(Step::Reply {
                        consumed,
                        bytes: MethodChoice(method).encode().to_vec(),
                    })
                }
            },
            State::V5Auth => self.parse_auth(input),
            State::AwaitAuth { .. } | State::Finished => Err((Vec::new(), ProtoError::Finished)),
            State::V5Request { late_auth_ok } => {
                let Some(&first) = input.first() else {
                    return Ok(Step::NeedMore(1));
                };
                if *late_auth_ok && first == userpass::VERSION {
                    return self.parse_auth(input);
                }
                match v5::Request::parse(input) {
                    Err(e) => Err((v5_failure(e.reply_code()), e)),
                    Ok(Parsed::Incomplete { needed }) => Ok(Step::NeedMore(needed)),
                    Ok(Parsed::Complete { value, consumed }) => {
                        self.state = State::Finished;
                        Ok(Step::Done {
                            consumed,
                            request: Request {
                                version: Version::V5,
                                command: value.command,
                                target: value.target,
                                credentials: std::mem::take(&mut self.credentials),
                            },
                        })
                    }
                }
            }
            State::Http { scanned } => {
                let from = scanned.saturating_sub(3);
                if http::head_complete(&input[from..]) || input.len() >= http::MAX_HTTP_HEAD {
                    Err((http::response(), ProtoError::HttpRequest))
                } else {
                    self.state = State::Http {
                        scanned: input.len(),
                    };
                    Ok(Step::NeedMore(1))
                }
            }
        }
    }

    fn parse_auth(&mut self, input: &[u8]) -> Result<Step, (Vec<u8>, ProtoError)> {
        let failure = || {
            userpass::Reply {
                status: userpass::FAILURE,
            }
            .encode()
            .to_vec()
        };
        match userpass::Request::parse(input, self.config.lenient_auth) {
            Err(e) => Err((failure(), e)),
            Ok(Parsed::Incomplete { needed }) => Ok(Step::NeedMore(needed)),
            Ok(Parsed::Complete { value, consumed }) => {
                self.state = State::AwaitAuth {
                    username: value.username.clone(),
                    password: value.password.clone(),
                };
                Ok(Step::Verify {
                    consumed,
                    username: value.username,
                    password: value.password,
                })
            }
        }
    }
}

/// A SOCKS5 failure reply with a zero address.
fn v5_failure(code: ReplyCode) -> Vec<u8> {
    v5::Reply {
        rep: code.to_v5(false),
        bound: TargetAddr::unspecified(),
    }
    .encode()
}

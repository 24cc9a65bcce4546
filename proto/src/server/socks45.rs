//! The SOCKS4/4a and SOCKS5 states of the server machine (greeting, RFC 1929
//! exchange, request), reading from the machine's [`Input`].

use crate::error::{Misuse, PeerError, ProtoError};
use crate::input::{Input, Instruction};
use crate::parse::Parsed;
use crate::reply::ReplyCode;
use crate::v5::{Method, MethodChoice};
use crate::{userpass, v4, v5, Credentials, Password, Request, TargetAddr, Version};

use super::HandshakeConfig;
use crate::userpass::Verify;

/// What a state's step gives: an instruction, or the bytes to send and why
/// the handshake failed.
pub(super) type Stepped = Result<Instruction<Request, Verify>, (Vec<u8>, ProtoError)>;

#[derive(Debug)]
enum State {
    V4,
    V5Greeting,
    V5Auth,
    /// Waiting for the verdict on these credentials.
    AwaitVerdict {
        username: Vec<u8>,
        password: Password,
    },
    /// The verdict came: answer it.
    Verdict {
        accepted: bool,
    },
    V5Request {
        /// Tor's leniency: an RFC 1929 message may still come.
        late_auth_ok: bool,
    },
}

/// The SOCKS4/4a/5 part of the handshake.
#[derive(Debug)]
pub(super) struct Socks45 {
    state: State,
    version: Version,
    credentials: Credentials,
}

impl Socks45 {
    /// Start on a first byte `04` or `05`.
    pub(super) fn new(version: Version) -> Self {
        Socks45 {
            state: match version {
                Version::V5 => State::V5Greeting,
                _ => State::V4,
            },
            version,
            credentials: Credentials::None,
        }
    }

    pub(super) fn version(&self) -> Version {
        self.version
    }

    pub(super) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The verdict on the last `Verify`'s credentials. Returns false (and
    /// changes nothing) unless the machine was waiting for one.
    pub(super) fn verdict(&mut self, accepted: bool) -> bool {
        match std::mem::replace(&mut self.state, State::Verdict { accepted }) {
            State::AwaitVerdict { username, password } => {
                if accepted {
                    self.credentials = Credentials::UserPass { username, password };
                }
                true
            }
            other => {
                self.state = other;
                false
            }
        }
    }

    pub(super) fn step(&mut self, config: &HandshakeConfig, input: &mut Input) -> Stepped {
        match self.state {
            State::V4 => self.v4_request(input),
            State::V5Greeting => self.greeting(config, input),
            State::V5Auth => self.parse_auth(config, input),
            State::AwaitVerdict { .. } => Err((Vec::new(), Misuse::Finished.into())),
            State::Verdict { accepted: true } => {
                self.state = State::V5Request {
                    late_auth_ok: false,
                };
                Ok(Instruction::Send(auth_reply(userpass::SUCCESS)))
            }
            State::Verdict { accepted: false } => {
                Err((auth_reply(userpass::FAILURE), PeerError::AuthFailed.into()))
            }
            State::V5Request { late_auth_ok } => {
                if late_auth_ok && input.bytes().first() == Some(&userpass::VERSION) {
                    return self.parse_auth(config, input);
                }
                self.v5_request(input)
            }
        }
    }

    fn v4_request(&mut self, input: &mut Input) -> Stepped {
        match v4::Request::parse(input.bytes()) {
            Err(e) => Err((
                v4::Reply::for_target(e.reply_code(), None).encode(),
                e.into(),
            )),
            Ok(Parsed::Incomplete { needed }) => Ok(input.need_more(needed)),
            Ok(Parsed::Complete { value, consumed }) => {
                input.consume(consumed);
                self.version = value.version();
                let credentials = if value.userid.is_empty() {
                    Credentials::None
                } else {
                    Credentials::UserId(value.userid)
                };
                self.credentials = credentials.clone();
                Ok(Instruction::Finished {
                    value: Request {
                        version: self.version,
                        command: value.command,
                        target: value.target,
                        credentials,
                    },
                    rest: input.take(),
                })
            }
        }
    }

    fn greeting(&mut self, config: &HandshakeConfig, input: &mut Input) -> Stepped {
        let refuse = || MethodChoice(Method::NO_ACCEPTABLE).encode().to_vec();
        match v5::Greeting::parse(input.bytes()) {
            Err(e @ PeerError::NoMethods) => Err((refuse(), e.into())),
            Err(e) => Err((Vec::new(), e.into())),
            Ok(Parsed::Incomplete { needed }) => Ok(input.need_more(needed)),
            Ok(Parsed::Complete { value, consumed }) => {
                input.consume(consumed);
                // Prefer username/password whenever it is offered: even
                // when it is not required, the credentials isolate streams.
                let method = if value.offers(Method::USERPASS) {
                    self.state = State::V5Auth;
                    Method::USERPASS
                } else if value.offers(Method::NONE) && !config.require_auth {
                    self.state = State::V5Request {
                        late_auth_ok: config.lenient_auth,
                    };
                    Method::NONE
                } else {
                    return Err((refuse(), PeerError::NoAcceptableMethod.into()));
                };
                Ok(Instruction::Send(MethodChoice(method).encode().to_vec()))
            }
        }
    }

    fn parse_auth(&mut self, config: &HandshakeConfig, input: &mut Input) -> Stepped {
        match userpass::Request::parse(input.bytes(), config.lenient_auth) {
            Err(e) => Err((auth_reply(userpass::FAILURE), e.into())),
            Ok(Parsed::Incomplete { needed }) => Ok(input.need_more(needed)),
            Ok(Parsed::Complete { value, consumed }) => {
                input.consume(consumed);
                self.state = State::AwaitVerdict {
                    username: value.username.clone(),
                    password: value.password.clone(),
                };
                Ok(Instruction::Event(Verify {
                    username: value.username,
                    password: value.password,
                }))
            }
        }
    }

    fn v5_request(&mut self, input: &mut Input) -> Stepped {
        match v5::Request::parse(input.bytes()) {
            Err(e) => Err((v5_failure(e.reply_code()), e.into())),
            Ok(Parsed::Incomplete { needed }) => Ok(input.need_more(needed)),
            Ok(Parsed::Complete { value, consumed }) => {
                input.consume(consumed);
                Ok(Instruction::Finished {
                    value: Request {
                        version: Version::V5,
                        command: value.command,
                        target: value.target,
                        credentials: self.credentials.clone(),
                    },
                    rest: input.take(),
                })
            }
        }
    }
}

fn auth_reply(status: u8) -> Vec<u8> {
    userpass::Reply { status }.encode().to_vec()
}

/// A SOCKS5 failure reply with a zero address.
fn v5_failure(code: ReplyCode) -> Vec<u8> {
    v5::Reply {
        rep: code.to_v5(false),
        bound: TargetAddr::unspecified(),
    }
    .encode()
}

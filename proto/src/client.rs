//! The client side of the SOCKS4/4a/5 handshake as a state machine with no IO.
//!
//! [`ClientHandshake::new`] returns the machine and the first bytes to send.
//! Then put what the proxy sends into [`ClientHandshake::input`] (closing it
//! at EOF), call [`ClientHandshake::step`], and carry out the [`Step`] it
//! returns (see [`crate::input`]):
//!
//! ```text
//! NeedMore(n)              read more
//! Send(bytes)              send them (the SOCKS5 request or RFC 1929 request), step again
//! Finished { value, rest } the request's reply arrived (it may be a refusal); `rest`
//!                          is what the proxy sent after it (the target's data)
//! Failed { error, .. }     close
//! ```

use crate::error::{EncodeError, Misuse, PeerError, ProtoError};
use crate::input::{Input, Instruction};
use crate::parse::Parsed;
use crate::reply::ReplyCode;
use crate::v5::{Method, MethodChoice};
use crate::{userpass, v4, v5, Command, Host, Password, TargetAddr, Version};

/// What the client asks for.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    /// `V4` needs an IPv4 target (resolve names before); `V4a` sends names
    /// to the proxy; `V5` sends whatever the target is.
    pub version: Version,
    pub command: Command,
    pub target: TargetAddr,
    /// SOCKS4: sent as the USERID (password ignored). SOCKS5: offered with
    /// method 02 (and only 02, so the proxy cannot silently drop them).
    pub username: Option<Vec<u8>>,
    pub password: Option<Password>,
}

/// The outcome of a finished handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReply {
    pub code: ReplyCode,
    /// The raw wire value of the reply code.
    pub raw_code: u8,
    /// The address in the reply (bound address, or the RESOLVE answer).
    pub bound: TargetAddr,
}

/// What [`ClientHandshake::step`] returns.
pub type Step = Instruction<ClientReply>;

#[derive(Debug)]
enum State {
    V4Reply,
    V5Choice,
    V5AuthReply,
    V5Reply,
    Finished,
    Failed(ProtoError),
}

#[derive(Debug)]
pub struct ClientHandshake {
    req: ClientRequest,
    state: State,
    input: Input,
}

impl ClientHandshake {
    /// Start a handshake: returns the machine and the first flight.
    pub fn new(req: ClientRequest) -> Result<(Self, Vec<u8>), EncodeError> {
        let (state, first) = match req.version {
            Version::V4 | Version::V4a => {
                if req.version == Version::V4 && matches!(req.target.host, Host::Domain(_)) {
                    return Err(EncodeError::BadDomain);
                }
                let msg = v4::Request {
                    command: req.command,
                    target: req.target.clone(),
                    userid: req.username.clone().unwrap_or_default(),
                }
                .encode()?;
                (State::V4Reply, msg)
            }
            Version::V5 => {
                let methods = if req.username.is_some() {
                    vec![Method::USERPASS]
                } else {
                    vec![Method::NONE]
                };
                // Validate the request now so that a bad target fails before any IO.
                v5::Request {
                    command: req.command,
                    target: req.target.clone(),
                }
                .encode()?;
                // The same for credentials too long for RFC 1929.
                if let Some(username) = &req.username {
                    userpass::Request {
                        username: username.clone(),
                        password: req.password.clone().unwrap_or_default(),
                    }
                    .encode()?;
                }
                (State::V5Choice, v5::Greeting { methods }.encode()?)
            }
        };
        Ok((
            ClientHandshake {
                req,
                state,
                input: Input::with_cap(crate::MAX_MESSAGE),
            },
            first,
        ))
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

    fn step_inner(&mut self) -> Result<Step, ProtoError> {
        let input = &mut self.input;
        match &self.state {
            State::V4Reply => match v4::Reply::parse(input.bytes())? {
                Parsed::Incomplete { needed } => Ok(input.need_more(needed)),
                Parsed::Complete { value, consumed } => {
                    input.consume(consumed);
                    self.state = State::Finished;
                    Ok(Instruction::Finished {
                        value: ClientReply {
                            code: ReplyCode::from_v4(value.cd),
                            raw_code: value.cd.0,
                            bound: TargetAddr::ip(value.ip.into(), value.port),
                        },
                        rest: input.take(),
                    })
                }
            },
            State::V5Choice => match MethodChoice::parse(input.bytes())? {
                Parsed::Incomplete { needed } => Ok(input.need_more(needed)),
                Parsed::Complete { value, consumed } => {
                    input.consume(consumed);
                    self.method_chosen(value.0)
                }
            },
            State::V5AuthReply => {
                // RFC 1929 says the reply's version is 01; some servers send 05.
                let bytes = input.bytes();
                let parsed = if bytes.first() == Some(&v5::VERSION) && bytes.len() >= 2 {
                    Parsed::Complete {
                        value: userpass::Reply { status: bytes[1] },
                        consumed: 2,
                    }
                } else {
                    userpass::Reply::parse(bytes)?
                };
                match parsed {
                    Parsed::Incomplete { needed } => Ok(input.need_more(needed)),
                    Parsed::Complete { value, consumed } => {
                        input.consume(consumed);
                        if !value.success() {
                            return Err(PeerError::AuthFailed.into());
                        }
                        self.state = State::V5Reply;
                        Ok(Instruction::Send(self.v5_request()?))
                    }
                }
            }
            State::V5Reply => match v5::Reply::parse(input.bytes())? {
                Parsed::Incomplete { needed } => Ok(input.need_more(needed)),
                Parsed::Complete { value, consumed } => {
                    input.consume(consumed);
                    self.state = State::Finished;
                    Ok(Instruction::Finished {
                        value: ClientReply {
                            code: value.code(),
                            raw_code: value.rep.0,
                            bound: value.bound,
                        },
                        rest: input.take(),
                    })
                }
            },
            State::Finished => Err(Misuse::Finished.into()),
            State::Failed(e) => Err(e.clone()),
        }
    }

    /// The proxy's method choice: go on with the request or with RFC 1929.
    fn method_chosen(&mut self, method: Method) -> Result<Step, ProtoError> {
        match method {
            Method::NONE if self.req.username.is_none() => {
                self.state = State::V5Reply;
                Ok(Instruction::Send(self.v5_request()?))
            }
            Method::USERPASS if self.req.username.is_some() => {
                self.state = State::V5AuthReply;
                let bytes = userpass::Request {
                    username: self.req.username.clone().unwrap_or_default(),
                    password: self.req.password.clone().unwrap_or_default(),
                }
                .encode()?;
                Ok(Instruction::Send(bytes))
            }
            Method::NO_ACCEPTABLE => Err(PeerError::NoAcceptableMethod.into()),
            Method(m) => Err(PeerError::UnexpectedMethod(m).into()),
        }
    }

    fn v5_request(&self) -> Result<Vec<u8>, EncodeError> {
        v5::Request {
            command: self.req.command,
            target: self.req.target.clone(),
        }
        .encode()
    }
}

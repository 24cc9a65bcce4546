//! The client side of the SOCKS4/4a/5 handshake as a state machine with no IO.
//!
//! [`ClientHandshake::new`] returns the machine and the first bytes to send.
//! Then feed [`ClientHandshake::step`] everything received and not yet
//! consumed, and carry out the [`ClientStep`] it returns.

use crate::error::ProtoError;
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

/// One instruction for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientStep {
    NeedMore(usize),
    /// Drop `consumed` bytes of input, send `bytes`, call again.
    Send {
        consumed: usize,
        bytes: Vec<u8>,
    },
    /// The request's reply arrived (which may be a refusal).
    Done {
        consumed: usize,
        reply: ClientReply,
    },
    Fail(ProtoError),
}

#[derive(Debug)]
enum State {
    V4Reply,
    V5Choice,
    V5AuthReply,
    V5Reply,
    Finished,
}

#[derive(Debug)]
pub struct ClientHandshake {
    req: ClientRequest,
    state: State,
}

impl ClientHandshake {
    /// Start a handshake: returns the machine and the first flight.
    pub fn new(req: ClientRequest) -> Result<(Self, Vec<u8>), ProtoError> {
        let (state, first) = match req.version {
            Version::V4 | Version::V4a => {
                if req.version == Version::V4 && matches!(req.target.host, Host::Domain(_)) {
                    return Err(ProtoError::BadDomain);
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
        Ok((ClientHandshake { req, state }, first))
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

    fn step_inner(&mut self, input: &[u8]) -> Result<ClientStep, ProtoError> {
        match self.state {
            State::V4Reply => match v4::Reply::parse(input)? {
                Parsed::Incomplete { needed } => Ok(ClientStep::NeedMore(needed)),
                Parsed::Complete { value, consumed } => {
                    self.state = State::Finished;
                    Ok(ClientStep::Done {
                        consumed,
                        reply: ClientReply {
                            code: ReplyCode::from_v4(value.cd),
                            raw_code: value.cd,
                            bound: TargetAddr::ip(value.ip.into(), value.port),
                        },
                    })
                }
            },
            State::V5Choice => match MethodChoice::parse(input)? {
                Parsed::Incomplete { needed } => Ok(ClientStep::NeedMore(needed)),
                Parsed::Complete { value, consumed } => match value.0 {
                    Method::NONE if self.req.username.is_none() => {
                        self.state = State::V5Reply;
                        Ok(ClientStep::Send {
                            consumed,
                            bytes: self.v5_request()?,
                        })
                    }
                    Method::USERPASS if self.req.username.is_some() => {
                        self.state = State::V5AuthReply;
                        let bytes = userpass::Request {
                            username: self.req.username.clone().unwrap_or_default(),
                            password: self.req.password.clone().unwrap_or_default(),
                        }
                        .encode()?;
                        Ok(ClientStep::Send { consumed, bytes })
                    }
                    Method::NO_ACCEPTABLE => Err(ProtoError::NoAcceptableMethod),
                    Method(m) => Err(ProtoError::UnexpectedMethod(m)),
                },
            },
            State::V5AuthReply => {
                // RFC 1929 says the reply's version is 01; some servers send 05.
                let parsed = if input.first() == Some(&v5::VERSION) && input.len() >= 2 {
                    Parsed::Complete {
                        value: userpass::Reply { status: input[1] },
                        consumed: 2,
                    }
                } else {
                    userpass::Reply::parse(input)?
                };
                match parsed {
                    Parsed::Incomplete { needed } => Ok(ClientStep::NeedMore(needed)),
                    Parsed::Complete { value, consumed } => {
                        if !value.success() {
                            return Err(ProtoError::AuthFailed);
                        }
                        self.state = State::V5Reply;
                        Ok(ClientStep::Send {
                            consumed,
                            bytes: self.v5_request()?,
                        })
                    }
                }
            }
            State::V5Reply => match v5::Reply::parse(input)? {
                Parsed::Incomplete { needed } => Ok(ClientStep::NeedMore(needed)),
                Parsed::Complete { value, consumed } => {
                    self.state = State::Finished;
                    Ok(ClientStep::Done {
                        consumed,
                        reply: ClientReply {
                            code: value.code(),
                            raw_code: value.rep,
                            bound: value.bound,
                        },
                    })
                }
            },
            State::Finished => Err(ProtoError::Finished),
        }
    }

    fn v5_request(&self) -> Result<Vec<u8>, ProtoError> {
        v5::Request {
            command: self.req.command,
            target: self.req.target.clone(),
        }
        .encode()
    }
}

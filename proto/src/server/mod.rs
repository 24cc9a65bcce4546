//! The server side of the handshake, every version, as one state machine
//! with no IO.
//!
//! [`ServerHandshake`] owns a capped [`Input`]: put what the client sent into
//! [`ServerHandshake::input`], call [`ServerHandshake::step`], and carry out
//! the [`Instruction`] it returns (see [`crate::input`] for the calling
//! convention). The first byte chooses the protocol inside the machine:
//!
//! ```text
//! 04           SOCKS4 / 4a
//! 05           SOCKS5 (greeting, RFC 1929 when offered, request)
//! 06, CF       SOCKS 6, by the first-byte table [`v6::PROFILE_TABLE`] (only with
//!              `with_socks6`; else an unknown version): 06 is draft -05 or -11
//!              (by the header, [`v6::sniff_version_6`], or by the listener's
//!              [`v6::ProfileSetting`]); CF is the reference dialect
//! 'A'..='Z'    an HTTP request: the HTTP-resistance page, then close
//! anything else  an unknown version: close without a reply
//! ```
//!
//! Instructions of this machine:
//!
//! * `Send(bytes)`: the SOCKS5 method choice, the RFC 1929 reply, a SOCKS 6
//!   "further authentication" reply.
//! * `Event(Verify { .. })`: check the credentials and give the verdict
//!   with [`ServerHandshake::verdict`], then step again: the next
//!   instruction answers it (the RFC 1929 reply to send, or `Failed` with
//!   the refusal), so a request pipelined behind a refused password is
//!   never read, let alone carried out.
//! * `Finished { value, rest }`: the request ([`Accepted`]), and the bytes
//!   the client sent after it (optimistic data, SOCKS 6 application data
//!   behind the initial data).
//! * `Failed { reply, error }`: send the reply (maybe empty), then close.
//!
//! Errors are sticky and keep their cause: after `Failed`, every step fails
//! again with the same error and nothing to send. After `Finished`, steps
//! fail with [`Misuse::Finished`], and so does the machine after a step
//! while a verdict is awaited or a verdict nobody asked for.
//!
//! What happens after a SOCKS 6 request is finished (authentication reply,
//! tokens, operation reply) is the caller's: see [`crate::v6::server`].

mod socks45;

use crate::error::{Misuse, PeerError, ProtoError};
use crate::input::{Input, Instruction};
pub use crate::userpass::Verify;
use crate::v6::server::Socks6Handshake;
use crate::v6::{self, Socks6Request};
use crate::{http, v4, v5, Credentials, Request, Version, MAX_MESSAGE};

use socks45::Socks45;

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

/// A finished handshake: a SOCKS4/4a/5 request or a SOCKS 6 one.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    Socks(Request),
    Socks6(Box<Socks6Request>),
}

/// What [`ServerHandshake::step`] returns.
pub type Step = Instruction<Accepted, Verify>;

#[derive(Debug)]
enum Phase {
    /// Before the first byte.
    Start,
    Socks(Socks45),
    Socks6(Box<Socks6Handshake>),
    /// Reading an HTTP request head; `scanned` bytes were already searched
    /// for its end (so a head trickled byte by byte costs linear time).
    Http {
        scanned: usize,
    },
}

/// The server handshake state machine.
#[derive(Debug)]
pub struct ServerHandshake {
    config: HandshakeConfig,
    /// SOCKS 6 policy, when enabled.
    socks6: Option<v6::server::ServerConfig>,
    /// How `06` chooses between -05 and -11.
    socks6_setting: v6::ProfileSetting,
    input: Input,
    /// The protocol part running (kept after the end, for
    /// [`ServerHandshake::version`] and the user name).
    phase: Phase,
    /// Set once the handshake is over: why every further step fails
    /// ([`Misuse::Finished`] after `Finished`).
    stopped: Option<ProtoError>,
}

impl ServerHandshake {
    pub fn new(config: HandshakeConfig) -> Self {
        ServerHandshake {
            config,
            socks6: None,
            socks6_setting: v6::ProfileSetting::Auto,
            input: Input::with_cap(initial_cap()),
            phase: Phase::Start,
            stopped: None,
        }
    }

    /// Serve SOCKS 6 (draft -05) too, on a first byte `06`. The SOCKS 6
    /// machine takes `require_auth` and `lenient_auth` from this machine's
    /// [`HandshakeConfig`].
    pub fn with_socks6(mut self, limits: v6::Socks6Limits) -> Self {
        // Before the first byte, room for the largest first flight.
        self.input
            .set_cap(initial_cap().max(limits.max_request_bytes_any()));
        self.socks6 = Some(v6::server::ServerConfig {
            require_auth: self.config.require_auth,
            lenient_auth: self.config.lenient_auth,
            limits,
        });
        self
    }

    /// How a first byte `06` chooses its profile (the listener's
    /// `socks6_profile`; default [`v6::ProfileSetting::Auto`]).
    pub fn with_socks6_setting(mut self, setting: v6::ProfileSetting) -> Self {
        self.socks6_setting = setting;
        self
    }

    /// Whether [`ServerHandshake::with_socks6`] enabled SOCKS 6.
    pub fn socks6_enabled(&self) -> bool {
        self.socks6.is_some()
    }

    /// The input buffer: put what the client sent here.
    pub fn input(&mut self) -> &mut Input {
        &mut self.input
    }

    /// The SOCKS4/4a/5 version detected so far (`None` before the first
    /// byte, and for SOCKS 6 or non-SOCKS input).
    pub fn version(&self) -> Option<Version> {
        match &self.phase {
            Phase::Socks(m) => Some(m.version()),
            _ => None,
        }
    }

    /// The SOCKS 6 profile, once the first byte chose SOCKS 6.
    pub fn socks6_profile(&self) -> Option<v6::Profile> {
        match &self.phase {
            Phase::Socks6(m) => Some(m.profile()),
            _ => None,
        }
    }

    /// The credentials presented so far (SOCKS4 USERID; SOCKS5 credentials
    /// once accepted).
    pub fn credentials(&self) -> &Credentials {
        static NONE: Credentials = Credentials::None;
        match &self.phase {
            Phase::Socks(m) => m.credentials(),
            _ => &NONE,
        }
    }

    /// The user name presented so far (any version), for logging a failed
    /// handshake.
    pub fn user(&self) -> Option<&[u8]> {
        match &self.phase {
            Phase::Socks6(m) => m.user(),
            _ => self.credentials().user(),
        }
    }

    /// Advance. See the module documentation.
    pub fn step(&mut self) -> Step {
        if let Some(e) = &self.stopped {
            return Instruction::failed(e.clone());
        }
        let stepped = match &mut self.phase {
            Phase::Start => return self.start(),
            Phase::Socks(m) => m
                .step(&self.config, &mut self.input)
                .map(|i| i.map(Accepted::Socks)),
            Phase::Socks6(m) => m
                .step(&mut self.input)
                .map(|i| i.map(|r| Accepted::Socks6(Box::new(r)))),
            Phase::Http { scanned } => http_head(&mut self.input, scanned),
        };
        match stepped {
            Ok(Instruction::Failed { reply, error }) | Err((reply, error)) => {
                self.stopped = Some(error.clone());
                Instruction::Failed { reply, error }
            }
            Ok(done @ Instruction::Finished { .. }) => {
                self.stopped = Some(Misuse::Finished.into());
                done
            }
            Ok(other) => other,
        }
    }

    /// The verdict on the credentials of the last `Verify`: step again for
    /// the answer. A verdict nobody asked for fails the machine.
    pub fn verdict(&mut self, accepted: bool) {
        if self.stopped.is_some() {
            return;
        }
        let expected = match &mut self.phase {
            Phase::Socks(m) => m.verdict(accepted),
            Phase::Socks6(m) => m.verdict(accepted),
            _ => false,
        };
        if !expected {
            self.stopped = Some(Misuse::Finished.into());
        }
    }

    /// Choose the protocol by the first byte.
    fn start(&mut self) -> Step {
        let Some(&first) = self.input.bytes().first() else {
            return self.input.need_more(1);
        };
        let setting = self.socks6_setting;
        let route = match self.socks6 {
            None => None,
            Some(_) => match v6::Profile::for_header(self.input.bytes(), setting) {
                Ok(Some(profile)) => Some(v6::Route::Speak(profile)),
                // `06` on an `auto` listener: -05 or -11 is in the next
                // few bytes (a request of either is longer).
                Ok(None) => return self.input.need_more(1),
                Err(route) => route,
            },
        };
        self.phase = match (first, route, &self.socks6) {
            (_, Some(v6::Route::Speak(profile)), Some(config)) => {
                let machine = Socks6Handshake::with_profile(config.clone(), profile);
                self.input
                    .set_cap(machine.input_cap().max(self.input.len()));
                Phase::Socks6(Box::new(machine))
            }
            // A SOCKS 6 dialect not spoken here (no row says so today):
            // the version mismatch reply, so that the client learns why.
            (_, Some(v6::Route::Mismatch(profile)), _) => {
                self.stopped = Some(PeerError::VersionMismatch.into());
                return Instruction::Failed {
                    reply: profile.codec().version_mismatch_reply(),
                    error: PeerError::VersionMismatch.into(),
                };
            }
            (v4::VERSION, _, _) => {
                self.input.set_cap(MAX_MESSAGE.max(self.input.len()));
                Phase::Socks(Socks45::new(Version::V4))
            }
            (v5::VERSION, _, _) => {
                self.input.set_cap(MAX_MESSAGE.max(self.input.len()));
                Phase::Socks(Socks45::new(Version::V5))
            }
            (b, _, _) if http::looks_like_http(b) => {
                self.input
                    .set_cap(http::MAX_HTTP_HEAD.max(self.input.len()));
                Phase::Http { scanned: 0 }
            }
            (b, _, _) => {
                self.stopped = Some(PeerError::UnknownVersion(b).into());
                return Instruction::failed(PeerError::UnknownVersion(b));
            }
        };
        self.step()
    }
}

/// The input cap before the first byte: room for the largest first flight
/// of SOCKS4/5 or an HTTP head. Once the first byte chose the protocol,
/// the cap becomes that protocol's (never below what is already buffered:
/// the parsers consume it before asking for more).
fn initial_cap() -> usize {
    MAX_MESSAGE.max(http::MAX_HTTP_HEAD)
}

/// HTTP-resistance: read the request head to its end (or to the cap), then
/// answer with the page.
fn http_head(
    input: &mut Input,
    scanned: &mut usize,
) -> Result<Instruction<Accepted, Verify>, (Vec<u8>, ProtoError)> {
    let from = scanned.saturating_sub(3);
    let head = input.bytes();
    if http::head_complete(head.get(from..).unwrap_or_default()) || input.room() == 0 {
        return Err((http::response(), PeerError::HttpRequest.into()));
    }
    *scanned = head.len();
    Ok(input.need_more(1))
}

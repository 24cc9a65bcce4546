//! SOCKS 6 messages as typed values, independent of any wire profile.

use crate::reply::V6Code;
use crate::secret::Password;
use crate::v5::Method;
use crate::{Command, Credentials, EncodeError, ReplyCode, TargetAddr};

use super::options::{AuthDataOption, Options, SessionOption, Socks6Option};
use super::Profile;

/// A request (the message itself; the server machine hands over a
/// [`Socks6Request`], which adds what came with it).
///
/// For NOOP the target has no meaning (clients send `0.0.0.0:0`); for BIND
/// and UDP ASSOCIATE it is the desired bind address (zeros: any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub target: TargetAddr,
    pub options: Options,
}

/// What an authentication reply says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthOutcome {
    /// Authenticated with this method (`00` none, `02` username/password).
    Success(Method),
    /// Further authentication needed: the method-specific exchange that
    /// follows (for `02`, RFC 1929).
    Continue(Method),
    /// No acceptable method, or the credentials were refused: the client
    /// must close. (-05 wire form: type `01`, method `FF`.)
    Failure,
}

/// An authentication reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthReply {
    pub outcome: AuthOutcome,
    /// Options: token window advertisements and expenditure replies go in a
    /// successful reply.
    pub options: Options,
}

/// An operation reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationReply {
    /// The profile whose reply codes `rep` is in (the codec that parsed the
    /// reply sets it; encoders write `rep` as it is).
    pub profile: Profile,
    /// The REP value as on the wire (see [`OperationReply::code`]).
    pub rep: V6Code,
    /// Bound address (CONNECT, first BIND reply, UDP ASSOCIATE) or the
    /// address of the host that connected (second BIND reply).
    pub bound: TargetAddr,
    /// Stack options the proxy applied (and any others).
    pub options: Options,
}

impl OperationReply {
    /// A reply with `code` as `profile` writes it.
    pub fn new(profile: Profile, code: ReplyCode, bound: TargetAddr, options: Options) -> Self {
        OperationReply {
            profile,
            rep: profile.codec().reply_codes().encode(code),
            bound,
            options,
        }
    }

    /// What `rep` means in the reply's profile.
    pub fn code(&self) -> ReplyCode {
        self.profile.codec().reply_codes().decode(self.rep)
    }
}

/// A UDP association id. -05 ids are 4 bytes; the type is wider so that
/// later profiles (8-byte ids in -11) share it. The -05 codec refuses to
/// encode an id above `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssociationId(pub u64);

impl AssociationId {
    /// An id of `width` bytes (a profile's
    /// [`Layout::association_id_width`](super::Layout::association_id_width))
    /// made of the low bytes of `random`, which the caller draws (proto has
    /// no random source).
    pub fn from_random(random: u64, width: usize) -> Self {
        match width.saturating_mul(8) {
            bits @ 0..=63 => AssociationId(random & ((1u64 << bits) - 1)),
            _ => AssociationId(random),
        }
    }
}

/// The header of a SOCKS 6 UDP datagram (both directions).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DatagramHeader {
    pub association: AssociationId,
    /// Client → proxy: the destination. Proxy → client: the source. An
    /// empty datagram to `0.0.0.0:0` (or `[::]:0`) only asks for the
    /// association confirmation.
    pub target: TargetAddr,
}

impl DatagramHeader {
    /// Whether this is the "confirm my association" datagram the draft
    /// describes: an IP address and port of zeros (the payload must be
    /// empty too; the caller checks that).
    pub fn is_confirmation_request(&self) -> bool {
        match &self.target.host {
            crate::Host::Ip(ip) => ip.is_unspecified() && self.target.port == 0,
            crate::Host::Domain(_) => false,
        }
    }
}

/// An ICMP error a -11 proxy relays to a client that asked for them (the
/// UDP error option): the datagram's destination, the host that reported
/// it, and what it said.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpErrorReport {
    pub association: AssociationId,
    /// Destination address and port of the datagram that caused it.
    pub dest: std::net::SocketAddr,
    /// The host that sent the ICMP error.
    pub reporter: std::net::IpAddr,
    pub code: UdpErrorCode,
}

/// -11's datagram error codes (an open newtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpErrorCode(pub u8);

impl UdpErrorCode {
    pub const NETWORK_UNREACHABLE: UdpErrorCode = UdpErrorCode(0x01);
    pub const HOST_UNREACHABLE: UdpErrorCode = UdpErrorCode(0x02);
    pub const TTL_EXPIRED: UdpErrorCode = UdpErrorCode(0x03);
    /// IPv6 only.
    pub const DATAGRAM_TOO_BIG: UdpErrorCode = UdpErrorCode(0x04);
}

/// How a request relates to a session (-11 §7; -05 has none).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionUse {
    /// Not part of a session (every -05 request).
    None,
    /// Asks for a new session; authenticated as any request.
    Start,
    /// Claims the session with this id. **Not authenticated**: the draft
    /// says a request in a session needs none, so the machine skipped it and
    /// `credentials` is `None`. The caller must look the session up and
    /// take its credentials, or refuse with
    /// [`Socks6Request::session_invalid_reply`] — before any rule sees the
    /// request.
    Member(Vec<u8>),
    /// Ends the session with this id. The request itself is not part of
    /// it, and was authenticated as any request.
    Teardown(Vec<u8>),
}

/// A complete SOCKS 6 request as the server machine hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks6Request {
    /// The wire profile the client spoke; every reply must use it.
    pub profile: Profile,
    pub command: Command,
    pub target: TargetAddr,
    /// Every option of the request, in order (unknown ones included).
    pub options: Options,
    /// CONNECT's initial data: exactly the number of bytes the
    /// authentication method option declared (send it with the connect,
    /// in the SYN when TFO is on). Empty otherwise.
    pub initial_data: Vec<u8>,
    /// Verified credentials (username/password), or `None`.
    pub credentials: Credentials,
    /// The method the client authenticated with (`00` or `02`); the
    /// successful authentication reply names it.
    pub auth_method: Method,
    /// The session the request belongs to, asks for or ends.
    pub session: SessionUse,
}

impl Socks6Request {
    /// The successful authentication reply (with, e.g., idempotence
    /// options from [`serve_tokens`](super::idempotence::serve_tokens)).
    ///
    /// In profiles with sessions, a username/password authentication is
    /// answered inside the reply (an authentication data option with the
    /// RFC 1929 success, as the reference does), ahead of `options`.
    pub fn auth_reply(&self, options: Options) -> Result<Vec<u8>, EncodeError> {
        let mut all = Options::new();
        if self.profile.has_sessions() && self.auth_method == Method::USERPASS {
            all.push(userpass_reply_option(crate::userpass::SUCCESS));
        }
        all.0.extend(options.0);
        self.profile.codec().encode_auth_reply(&AuthReply {
            outcome: AuthOutcome::Success(self.auth_method),
            options: all,
        })
    }

    /// A failed authentication reply carrying `options` (a refused token
    /// in -11, an invalid session); the client closes.
    pub fn auth_failure_reply(&self, options: Options) -> Result<Vec<u8>, EncodeError> {
        self.profile.codec().encode_auth_reply(&AuthReply {
            outcome: AuthOutcome::Failure,
            options,
        })
    }

    /// The answer to a [`SessionUse::Member`] claim of an unknown or
    /// expired session: authentication failed, "session invalid".
    pub fn session_invalid_reply(&self) -> Result<Vec<u8>, EncodeError> {
        self.auth_failure_reply(Options(vec![Socks6Option::Session(SessionOption::Invalid)]))
    }

    /// An operation reply. `bound: None` sends `0.0.0.0:0`. `options` are
    /// the stack options the proxy actually applied.
    pub fn operation_reply(
        &self,
        code: ReplyCode,
        bound: Option<&TargetAddr>,
        options: Options,
    ) -> Result<Vec<u8>, EncodeError> {
        let codec = self.profile.codec();
        // What the profile cannot say (an answer about an option it lacks)
        // is left out.
        let options = Options(
            options
                .0
                .into_iter()
                .filter(|o| codec.can_encode(o))
                .collect(),
        );
        codec.encode_operation_reply(&OperationReply::new(
            self.profile,
            code,
            bound.cloned().unwrap_or_else(TargetAddr::unspecified),
            options,
        ))
    }

    /// The UDP association initialisation message (sent right after a
    /// successful UDP ASSOCIATE operation reply).
    pub fn association_init(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError> {
        self.profile.codec().encode_association_id(id)
    }

    /// The UDP association confirmation message (sent once the first
    /// datagram of the association arrived).
    pub fn association_confirmation(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError> {
        self.profile.codec().encode_confirmation(id)
    }
}

/// The username/password reply inside an authentication data option
/// (profiles with sessions): method `02`, the RFC 1929 reply `01 STATUS`.
pub fn userpass_reply_option(status: u8) -> Socks6Option {
    Socks6Option::AuthData(AuthDataOption {
        method: Method::USERPASS,
        data: Password::new(crate::userpass::Reply { status }.encode().to_vec()),
    })
}

//! SOCKS 6, draft-olteanu-intarea-socks-6-05 (the project's spec of record),
//! shaped so that later wire profiles can share the protocol logic.
//!
//! # Layout
//!
//! * [`options`], [`messages`]: the *semantic* types — requests, replies,
//!   typed options (stack, authentication method/data, idempotence, vendor).
//!   No byte layout lives here.
//! * [`Codec`]: the wire format of one profile as a trait; [`Draft05`] (in
//!   [`draft05`]) is the -05 codec. [`Profile`] names a profile and finds its
//!   codec. A `Draft11` codec (2-byte kinds and lengths, padding, 4-byte
//!   alignment, 8-byte association ids) can be added as another `Codec`
//!   without touching the state machines, which only call the trait.
//! * [`idempotence`]: token windows (server) and the token wallet (client),
//!   with 32-bit modular comparisons, sans-IO.
//! * [`server`]: the server handshake state machine; [`client`]: the client
//!   one. Both follow the crate's conventions (one `step(input)` returning
//!   one instruction; errors sticky; no IO, no clock).
//!
//! # Entering SOCKS 6 on the shared port
//!
//! [`crate::server::ServerHandshake::with_socks6`] enables SOCKS 6 on the
//! dispatcher; [`crate::server::ServerHandshake::dispatch`] then hands a
//! first byte `06` over to a [`server::Socks6Handshake`] (the existing
//! [`crate::server::Step`], [`crate::Request`] and [`crate::Version`] are
//! untouched, so SOCKS4/5 callers and tests see no change). See
//! [`server`] for the full calling convention.
//!
//! # Decisions where the draft is ambiguous
//!
//! * Option LENGTH counts the whole option (kind and length included). The
//!   stack options' lengths are computed from their fields (TOS 5, TFO 6,
//!   MPTCP 4, scheduler 5, backlog 6), and TOS is read at level IP.
//! * Unknown option kinds, unknown idempotence types and unknown stack
//!   level/code pairs are kept raw and ignored. A stack option whose data
//!   does not have the size of its (known) code is kept as
//!   [`options::StackValue::Unknown`], i.e. ignored too (a stack option is
//!   a hint). A malformed authentication or idempotence option is an error,
//!   because ignoring it would change framing (initial data) or safety
//!   (a token the client believes protects its request).
//! * Authentication failure is encoded as an authentication reply with
//!   type `01` (further authentication needed) and method `FF` (no
//!   acceptable methods), which the draft tells the client to close on.
//! * Several authentication method options: their methods are merged;
//!   their initial data lengths must agree (else the request is refused).
//! * A NOOP request's address is not checked (it has no meaning).
//! * An initial data length above 2^13 = 8192 is an error wherever it is
//!   read; the server takes initial data only for CONNECT.
//! * The -05 version mismatch reply `06 00` is a prefix of every -05
//!   authentication reply, so a client can only recognise it at EOF; when
//!   reading one, a single `06`, `06 00`, a `06` followed by any byte other
//!   than `00`, or `CF` (the reference implementation's version) all count.

pub mod client;
pub mod draft05;
pub mod idempotence;
pub mod messages;
pub mod options;
pub mod server;

pub use draft05::Draft05;
pub use messages::{
    AssociationId, AuthOutcome, AuthReply, DatagramHeader, OperationReply, Request, Socks6Request,
};
pub use options::{
    AuthDataOption, AuthMethodOption, ExpenditureCode, IdempotenceOption, Leg, MptcpScheduler,
    Options, Socks6Option, StackOption, StackRequests, StackValue,
};

use crate::parse::Parsed;
use crate::ProtoError;

/// The SOCKS 6 version byte.
pub const VERSION: u8 = 0x06;
/// The reference implementation's version byte (200 + 7: "builds on
/// draft 7"). Only recognised in a peer's version mismatch reply for now.
pub const REF_VERSION: u8 = 0xCF;
/// Most initial data a CONNECT may declare (the draft's 2^13).
pub const MAX_INITIAL_DATA: usize = 8192;

/// Caps on what a peer may make us buffer (the draft's §12, "Large
/// requests").
///
/// -05's option count is one byte and each option at most 255 bytes, so a
/// request could carry up to 255 × 255 bytes of options; nothing legitimate
/// needs more than a few hundred. The defaults leave ample room for every
/// option the draft defines (authentication data is at most 255 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks6Limits {
    /// Most options in one message (default 64).
    pub max_options: usize,
    /// Most bytes of options in one message, kinds and lengths included
    /// (default 4096).
    pub max_options_bytes: usize,
    /// Most initial data the server accepts with a CONNECT (default and
    /// ceiling 8192, the draft's cap).
    pub max_initial_data: usize,
}

impl Default for Socks6Limits {
    fn default() -> Self {
        Socks6Limits {
            max_options: 64,
            max_options_bytes: 4096,
            max_initial_data: MAX_INITIAL_DATA,
        }
    }
}

impl Socks6Limits {
    /// The initial data cap actually applied (never above the draft's).
    pub fn initial_data_cap(&self) -> usize {
        self.max_initial_data.min(MAX_INITIAL_DATA)
    }

    /// The most bytes a server machine will ever have buffered for one
    /// request (header, options and initial data). The RFC 1929 message of
    /// the slow path (at most 513 bytes) comes after the request is consumed.
    pub fn max_request_bytes(&self) -> usize {
        draft05::MAX_REQUEST_HEADER + self.max_options_bytes + self.initial_data_cap()
    }
}

/// A SOCKS 6 wire profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// draft-olteanu-intarea-socks-6-05: version `06 00`, 1-byte option
    /// counts, `KIND(1) LEN(1)` options.
    Draft05,
}

impl Profile {
    /// The codec for this profile.
    pub fn codec(self) -> &'static dyn Codec {
        match self {
            Profile::Draft05 => &Draft05,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Profile::Draft05 => "socks6-draft05",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The wire format of one SOCKS 6 profile.
///
/// Parsers follow the crate's [`Parsed`] convention (running out of input
/// is `Incomplete`, never an error) and enforce the [`Socks6Limits`] before
/// asking for more bytes, so an over-long message is an error as soon as its
/// size is known. Datagram parsers take a whole datagram (short is an error).
pub trait Codec: std::fmt::Debug + Sync {
    fn profile(&self) -> Profile;

    /// Parse a request (not its initial data). A request whose version is
    /// SOCKS 6 but not this revision is [`ProtoError::VersionMismatch`]; the
    /// server then sends [`Codec::version_mismatch_reply`].
    fn parse_request(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<Request>, ProtoError>;
    fn encode_request(&self, req: &Request) -> Result<Vec<u8>, ProtoError>;

    /// The reply to a request of another version.
    fn version_mismatch_reply(&self) -> Vec<u8>;
    /// Whether `buf` (what the proxy sent first, `eof` if it then closed)
    /// is a version mismatch reply. Lenient: see the module documentation.
    fn is_version_mismatch(&self, buf: &[u8], eof: bool) -> bool;

    fn parse_auth_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<AuthReply>, ProtoError>;
    fn encode_auth_reply(&self, reply: &AuthReply) -> Result<Vec<u8>, ProtoError>;

    fn parse_operation_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<OperationReply>, ProtoError>;
    fn encode_operation_reply(&self, reply: &OperationReply) -> Result<Vec<u8>, ProtoError>;

    /// UDP association initialisation (sent on TCP after a successful UDP
    /// ASSOCIATE operation reply).
    fn parse_association_id(&self, buf: &[u8]) -> Result<Parsed<AssociationId>, ProtoError>;
    fn encode_association_id(&self, id: AssociationId) -> Result<Vec<u8>, ProtoError>;

    /// UDP association confirmation (on TCP, once the first datagram came).
    fn parse_confirmation(&self, buf: &[u8]) -> Result<Parsed<()>, ProtoError>;
    fn encode_confirmation(&self) -> Vec<u8>;

    /// Parse the header of a whole datagram; returns it and the payload's
    /// offset.
    fn parse_datagram_header(&self, datagram: &[u8])
        -> Result<(DatagramHeader, usize), ProtoError>;
    /// Append a datagram header.
    fn encode_datagram_header(
        &self,
        header: &DatagramHeader,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtoError>;

    /// A whole datagram: header then payload.
    fn datagram(&self, header: &DatagramHeader, payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
        let mut out = Vec::with_capacity(64 + payload.len());
        self.encode_datagram_header(header, &mut out)?;
        out.extend_from_slice(payload);
        Ok(out)
    }
}

//! SOCKS 6 in three wire profiles over one set of state machines:
//! draft-olteanu-intarea-socks-6-05 (the project's spec of record), revision
//! -11, and the reference implementation's dialect of -11 (version byte
//! 207).
//!
//! # Layout
//!
//! * [`options`], [`messages`]: the *semantic* types — requests, replies,
//!   typed options (stack, authentication method/data, idempotence, vendor).
//!   No byte layout lives here.
//! * [`Codec`]: the wire format of one profile as a trait; [`Draft05`] (in
//!   [`draft05`]) is the -05 codec. A codec owns everything about its
//!   bytes: its constants as a [`Layout`] (header sizes, field widths,
//!   caps), its operation reply codes as a [`ReplyCodes`] table, and the
//!   username/password authentication data option. Nothing outside the
//!   codec file names them; callers go through [`Profile::codec`].
//!   [`draft11`] holds the aligned codec twice: [`DRAFT11`] and [`REF207`],
//!   one [`draft11::Dialect`] each.
//! * [`Profile`] names a profile and finds its codec; the
//!   [`PROFILE_TABLE`] maps a connection's first byte (and, where bytes
//!   cannot tell dialects apart, a per-listener [`ProfileSetting`]) to a
//!   [`Route`]: speak a profile, or answer with its version mismatch reply.
//!   [`Profile::route`] and [`Profile::for_first_byte`] read it.
//! * [`idempotence`]: token windows (server) and the token wallet (client),
//!   with 32-bit modular comparisons, sans-IO.
//! * [`server`]: the server handshake state machine; [`client`]: the client
//!   one. Both follow the crate's conventions (one `step(input)` returning
//!   one instruction; errors sticky; no IO, no clock) and only call the
//!   [`Codec`] of their profile.
//!
//! # Adding a dialect
//!
//! A new revision or dialect (issue 13: `draft-11`, `ref-207`) is one codec
//! file and one row:
//!
//! 1. **A codec file**, `v6/<name>.rs`, with a unit type implementing
//!    [`Codec`]: the parsers and encoders of every message, and its own
//!    constants — a `LAYOUT: Layout`, a `REPLY_CODES: ReplyCodes` (reuse
//!    another codec's table if the codes are the same), the option kinds.
//!    Declare it here (`pub mod <name>;`).
//! 2. **A [`Profile`] variant**, with its arm in [`Profile::codec`] (the
//!    compiler points at it; the name comes from [`Codec::name`]).
//! 3. **A row in the [`PROFILE_TABLE`]**: the first byte it begins with;
//!    where another profile begins with the same byte, a row with
//!    `setting: Some(profile)` for listeners set to it (and decide what
//!    `setting: None` listeners get). Rows are data: the handshake machine
//!    and the buffer caps ([`Socks6Limits::max_request_bytes_any`]) read
//!    the table, so neither changes.
//!
//! Then the profile travels by itself: [`Socks6Request::profile`] on the
//! server (every reply, the UDP relay's datagrams), the client machine's
//! [`client::Socks6Client::profile`] (the client library's `Socks6Info` and
//! `SocksDatagram` carry it), and the semantic types stay as they are.
//! Golden-byte tests go beside the codec, as `draft05`'s do.
//!
//! # Entering SOCKS 6 on the shared port
//!
//! `server::ServerHandshake::with_socks6` (the crate's one server machine)
//! enables SOCKS 6; its first bytes then go through the [`PROFILE_TABLE`]
//! ([`Profile::for_header`]): `06` is -05 or -11 ([`sniff_version_6`], or
//! the listener's [`ProfileSetting`]), `CF` the reference dialect; the
//! request continues in this module's [`server`] part, in the same machine
//! and from the same input. See [`server`] for what the caller does after
//! the request.
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
pub mod draft11;
pub mod idempotence;
pub mod messages;
pub mod options;
pub mod server;

pub use draft05::Draft05;
pub use draft11::{Aligned, DRAFT11, REF207};
pub use messages::{
    AssociationId, AuthOutcome, AuthReply, DatagramHeader, OperationReply, Request, SessionUse,
    Socks6Request, UdpErrorCode, UdpErrorReport,
};
pub use options::{
    AuthDataOption, AuthMethodOption, ExpenditureCode, IdempotenceOption, Leg, MptcpScheduler,
    Options, Parity, SessionOption, Socks6Option, StackOption, StackRequests, StackValue,
};

use crate::parse::Parsed;
use crate::reply::V6Code;
use crate::{EncodeError, Password, PeerError, ReplyCode};

/// The SOCKS 6 version byte (every revision's first byte; -05 follows it
/// with a minor version byte).
pub const VERSION: u8 = 0x06;
/// The reference implementation's version byte (200 + 7: "builds on
/// draft 7"): the `ref-207` profile.
pub const REF_VERSION: u8 = 0xCF;
/// Most initial data a CONNECT may carry in *every* profile: the smallest
/// of the codecs' caps ([`Layout::max_initial_data`]; -05 allows 2^13, -11
/// 2^14). The profile-independent parts (the client machine, buffers sized
/// before a profile is known) use this floor.
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
    /// The initial data cap actually applied (never above
    /// [`MAX_INITIAL_DATA`]).
    pub fn initial_data_cap(&self) -> usize {
        self.max_initial_data.min(MAX_INITIAL_DATA)
    }

    /// The most bytes a server machine speaking `profile` will ever have
    /// buffered for one request (header, options and initial data). The
    /// RFC 1929 message of the slow path (at most 513 bytes) comes after the
    /// request is consumed.
    pub fn max_request_bytes(&self, profile: Profile) -> usize {
        let layout = profile.codec().layout();
        layout.max_request_header
            + self.max_options_bytes
            + self.initial_data_cap().min(layout.max_initial_data)
    }

    /// [`Socks6Limits::max_request_bytes`] of the profile that needs the
    /// most, among every profile of the [`PROFILE_TABLE`]: for a buffer
    /// sized before the first byte chose the profile.
    pub fn max_request_bytes_any(&self) -> usize {
        Profile::ALL
            .iter()
            .map(|&p| self.max_request_bytes(p))
            .max()
            .unwrap_or(0)
    }
}

/// A SOCKS 6 wire profile (a revision of the draft, or a dialect of one).
///
/// Adding one: see the [module documentation](self#adding-a-dialect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// draft-olteanu-intarea-socks-6-05: version `06 00`, 1-byte option
    /// counts, `KIND(1) LEN(1)` options.
    Draft05,
    /// draft-olteanu-intarea-socks-6-11: version `06`, aligned framing,
    /// sessions.
    Draft11,
    /// The reference implementation's dialect of -11, version `CF`.
    Ref207,
}

impl Profile {
    /// The profile a client speaks unless told otherwise (-05, the spec of
    /// record; the client library's `socks6://` URLs default to -11).
    pub const DEFAULT: Profile = Profile::Draft05;

    /// Every profile, each once.
    pub const ALL: [Profile; 3] = [Profile::Draft05, Profile::Draft11, Profile::Ref207];

    /// The codec for this profile (the only place a variant meets its
    /// codec).
    pub fn codec(self) -> &'static dyn Codec {
        match self {
            Profile::Draft05 => &Draft05,
            Profile::Draft11 => &DRAFT11,
            Profile::Ref207 => &REF207,
        }
    }

    /// The profile's name in configuration and URLs (`draft-05`,
    /// `draft-11`, `ref-207`).
    pub fn setting_name(self) -> &'static str {
        match self {
            Profile::Draft05 => "draft-05",
            Profile::Draft11 => "draft-11",
            Profile::Ref207 => "ref-207",
        }
    }

    /// The profile a setting name names (see [`Profile::setting_name`]).
    pub fn from_setting_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.setting_name() == name)
    }

    /// Whether the profile has sessions (and binds idempotence windows to
    /// them): -11 and the reference dialect.
    pub fn has_sessions(self) -> bool {
        self.codec().layout().sessions
    }

    /// Its name in logs (the codec's [`Codec::name`]).
    pub fn name(self) -> &'static str {
        self.codec().name()
    }

    /// What a connection whose first byte is `first_byte` is, on a listener
    /// with `setting` (`None`: not SOCKS 6; let SOCKS4/5 or the HTTP page
    /// have it). See [`PROFILE_TABLE`] for the rule.
    pub fn route(first_byte: u8, setting: ProfileSetting) -> Option<Route> {
        route_in(PROFILE_TABLE, first_byte, setting)
    }

    /// The profile to speak to a client whose connection begins with
    /// `header` on a listener with `setting`: `Ok(Some(p))` to speak `p`,
    /// `Ok(None)` when more bytes must come first ([`Route::Sniff`]), and
    /// `Err(route)` for a row that is not spoken (a mismatch) — or `Err`
    /// of `None`: not SOCKS 6.
    pub fn for_header(
        header: &[u8],
        setting: ProfileSetting,
    ) -> Result<Option<Profile>, Option<Route>> {
        let Some(&first) = header.first() else {
            return Ok(None);
        };
        match Profile::route(first, setting) {
            Some(Route::Speak(p)) => Ok(Some(p)),
            Some(Route::Sniff) => Ok(sniff_version_6(header)),
            other => Err(other),
        }
    }
}

/// Bytes [`sniff_version_6`] may need to decide.
pub const SNIFF_BYTES: usize = 6;

/// Draft -05 or -11, from the first bytes of a request that begins with
/// `06` (`None`: not enough bytes yet, at most [`SNIFF_BYTES`]).
///
/// The rule, without guessing: the second byte is -05's minor version
/// (`00`) or -11's command. Anything but `00` is -11 (a -05 request with
/// another minor version is a mismatch in -05 anyway; -11 answers an
/// unknown command with `07`). `00` is -05, or a -11 NOOP. Then byte 5
/// tells: in -05 it is the address type (`01`, `03`, `04`), in a -11 NOOP
/// the low byte of the port, which must be 0. So `00` there is -11, and
/// anything else -05. A -11 NOOP with a non-zero port (which the draft
/// forbids) is read as -05 on an `auto` listener; a listener set to
/// `draft-11` reads it as -11.
pub fn sniff_version_6(header: &[u8]) -> Option<Profile> {
    match header {
        [] | [_] => None,
        [_, minor_or_command, ..] if *minor_or_command != draft05::MINOR => Some(Profile::Draft11),
        [_, _, _, _, _, byte5, ..] => Some(if *byte5 == 0 {
            Profile::Draft11
        } else {
            Profile::Draft05
        }),
        _ => None,
    }
}

/// [`Profile::route`] over any table (the tests' own tables too).
fn route_in(table: &[ProfileRow], first_byte: u8, setting: ProfileSetting) -> Option<Route> {
    let rows = || table.iter().filter(|row| row.first_byte == first_byte);
    let specific = match setting {
        ProfileSetting::Auto => None,
        ProfileSetting::Only(p) => rows().find(|row| row.setting == Some(p)),
    };
    specific
        .or_else(|| rows().find(|row| row.setting.is_none()))
        .map(|row| row.route)
}

impl Default for Profile {
    fn default() -> Self {
        Profile::DEFAULT
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a listener chooses between dialects whose first bytes are alike
/// (from issue 13 on: a -05 and a -11 request both begin with `06`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProfileSetting {
    /// The table's rows for every listener (those with `setting: None`).
    #[default]
    Auto,
    /// Rows for this profile's listeners first, then the rows for every
    /// listener.
    Only(Profile),
}

/// What the first byte of a connection leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Speak this profile: hand the connection to a SOCKS 6 server machine
    /// for it (`server::Socks6Handshake::with_profile`).
    Speak(Profile),
    /// `06` on an `auto` listener: -05 or -11, decided from the first
    /// [`SNIFF_BYTES`] bytes by [`sniff_version_6`].
    Sniff,
    /// A SOCKS 6 dialect this proxy does not speak: send this profile's
    /// [`Codec::version_mismatch_reply`] and close, so that the client
    /// learns why.
    Mismatch(Profile),
}

impl Route {
    /// The profile the row names (spoken, or whose mismatch reply is
    /// sent); `None` for [`Route::Sniff`].
    pub fn profile(self) -> Option<Profile> {
        match self {
            Route::Speak(p) | Route::Mismatch(p) => Some(p),
            Route::Sniff => None,
        }
    }
}

/// One row of the [`PROFILE_TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileRow {
    /// The connection's first byte.
    pub first_byte: u8,
    /// `None`: the row holds on every listener; `Some(p)`: only on a
    /// listener set to [`ProfileSetting::Only`]`(p)`, where it takes
    /// precedence over the rows for every listener.
    pub setting: Option<Profile>,
    pub route: Route,
}

/// Which profile a connection speaks, from its first byte and, where bytes
/// cannot tell dialects apart, the listener's [`ProfileSetting`].
///
/// The rule ([`Profile::route`]): among the rows whose `first_byte` is the
/// connection's, a listener set to `Only(p)` takes the first row with
/// `setting: Some(p)`; otherwise (or without one) the first row with
/// `setting: None` holds. No row: not SOCKS 6.
///
/// | first byte | listener (`socks6_profile`) | route |
/// | --- | --- | --- |
/// | `06` | `auto` | -05 or -11 by the header ([`sniff_version_6`]) |
/// | `06` | `draft-05` | speak -05 (a -11 request gets `06 00`) |
/// | `06` | `draft-11` | speak -11 |
/// | `CF` | any | speak the reference dialect |
pub const PROFILE_TABLE: &[ProfileRow] = &[
    ProfileRow {
        first_byte: VERSION,
        setting: None,
        route: Route::Sniff,
    },
    ProfileRow {
        first_byte: VERSION,
        setting: Some(Profile::Draft05),
        route: Route::Speak(Profile::Draft05),
    },
    ProfileRow {
        first_byte: VERSION,
        setting: Some(Profile::Draft11),
        route: Route::Speak(Profile::Draft11),
    },
    ProfileRow {
        first_byte: REF_VERSION,
        setting: None,
        route: Route::Speak(Profile::Ref207),
    },
];

/// The sizes and field widths of one profile's wire format: what code that
/// sizes a buffer or checks a field needs, without parsing. Each codec owns
/// its own (for -05: `draft05::LAYOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// The bytes every request (and, in -05, every authentication reply and
    /// datagram) begins with.
    pub version: &'static [u8],
    /// Longest request header before the options (a 255-byte domain and
    /// the field that says how many options follow included).
    pub max_request_header: usize,
    /// Width of the field that says how many options follow.
    pub options_length_width: usize,
    /// What that field counts.
    pub options_length_counts: OptionsLength,
    /// Width of an option's kind.
    pub option_kind_width: usize,
    /// Width of an option's length (which counts the whole option).
    pub option_length_width: usize,
    /// Longest option, kind and length included.
    pub max_option_len: usize,
    /// Fields and options are padded to a multiple of this (1: none).
    pub alignment: usize,
    /// Width of a UDP association id.
    pub association_id_width: usize,
    /// Most initial data a CONNECT may declare.
    pub max_initial_data: usize,
    /// Longest RFC 1929 request that fits an authentication data option.
    pub max_userpass_auth_data: usize,
    /// The -07-and-later semantics: sessions; idempotence only inside a
    /// session, a refused token failing the authentication reply; the
    /// username/password reply inside an authentication data option.
    pub sessions: bool,
}

/// What the options-length field of a message counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionsLength {
    /// The number of options (-05's NOPTS).
    Options,
    /// The bytes of options (-11's total options length).
    Bytes,
}

/// One profile's operation reply codes (REP): the table between the
/// semantic [`ReplyCode`] and the wire. Each codec owns its own (for -05:
/// `draft05::REPLY_CODES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyCodes {
    /// `(code, wire value)`. A code is sent as the value of its first row;
    /// every row is read (so a code may have several wire values).
    pub rows: &'static [(ReplyCode, V6Code)],
    /// What a code without a row (Tor's extended codes) is sent as; it must
    /// have a row.
    pub fallback: ReplyCode,
}

/// SOCKS5's general failure, sent for a code whose table lacks even the
/// fallback's row (a codec's mistake; every table has both).
const GENERAL_FAILURE: V6Code = V6Code(0x01);

impl ReplyCodes {
    /// The REP value for `code`. [`ReplyCode::Other`] keeps its raw value.
    pub fn encode(&self, code: ReplyCode) -> V6Code {
        if let ReplyCode::Other(raw) = code {
            return V6Code(raw);
        }
        let find = |c: ReplyCode| self.rows.iter().find(|(k, _)| *k == c).map(|(_, w)| *w);
        find(code)
            .or_else(|| find(self.fallback))
            .unwrap_or(GENERAL_FAILURE)
    }

    /// The code a REP value means ([`ReplyCode::Other`] for a value with no
    /// row).
    pub fn decode(&self, rep: V6Code) -> ReplyCode {
        self.rows
            .iter()
            .find(|(_, w)| *w == rep)
            .map_or(ReplyCode::Other(rep.0), |(c, _)| *c)
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

    /// The profile's name in logs (e.g. `socks6-draft05`).
    fn name(&self) -> &'static str;

    /// The profile's sizes and field widths.
    fn layout(&self) -> &'static Layout;

    /// The profile's operation reply codes.
    fn reply_codes(&self) -> &'static ReplyCodes;

    /// The authentication data option carrying username/password (0-RTT
    /// authentication), or an error when the credentials do not fit one.
    fn userpass_auth_data(
        &self,
        username: &[u8],
        password: &Password,
    ) -> Result<AuthDataOption, EncodeError>;

    /// Append one option in this profile's framing; an option the profile
    /// lacks (a session option in -05, TTL in the reference dialect) is an
    /// error and nothing is written.
    fn encode_option(&self, o: &Socks6Option, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Whether this profile can carry `o` (replies are filtered with it,
    /// so that a semantic answer the profile cannot say is left out).
    fn can_encode(&self, o: &Socks6Option) -> bool {
        self.encode_option(o, &mut Vec::new()).is_ok()
    }

    /// Parse a request (not its initial data). A request whose version is
    /// SOCKS 6 but not this revision is [`PeerError::VersionMismatch`]; the
    /// server then sends [`Codec::version_mismatch_reply`].
    fn parse_request(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<Request>, PeerError>;
    fn encode_request(&self, req: &Request) -> Result<Vec<u8>, EncodeError>;

    /// The reply to a request of another version.
    fn version_mismatch_reply(&self) -> Vec<u8>;
    /// Whether `buf` (what the proxy sent first, `eof` if it then closed)
    /// is a version mismatch reply. Lenient: see the module documentation.
    fn is_version_mismatch(&self, buf: &[u8], eof: bool) -> bool;

    fn parse_auth_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<AuthReply>, PeerError>;
    fn encode_auth_reply(&self, reply: &AuthReply) -> Result<Vec<u8>, EncodeError>;

    fn parse_operation_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<OperationReply>, PeerError>;
    fn encode_operation_reply(&self, reply: &OperationReply) -> Result<Vec<u8>, EncodeError>;

    /// UDP association initialisation (sent on TCP after a successful UDP
    /// ASSOCIATE operation reply).
    fn parse_association_id(&self, buf: &[u8]) -> Result<Parsed<AssociationId>, PeerError>;
    fn encode_association_id(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError>;

    /// UDP association confirmation (on TCP, once the first datagram came)
    /// of association `id` (-05's carries no id).
    fn parse_confirmation(&self, buf: &[u8], id: AssociationId) -> Result<Parsed<()>, PeerError>;
    fn encode_confirmation(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError>;

    /// Parse a whole datagram; returns its header and where its payload is
    /// (-11 messages say their length; bytes after it are padding).
    fn parse_datagram(
        &self,
        datagram: &[u8],
    ) -> Result<(DatagramHeader, std::ops::Range<usize>), PeerError>;

    /// A whole datagram: header then payload.
    fn datagram(&self, header: &DatagramHeader, payload: &[u8]) -> Result<Vec<u8>, EncodeError>;

    /// Whether datagrams may travel on the TCP connection (-11).
    fn datagrams_over_tcp(&self) -> bool {
        false
    }

    /// A datagram carried on the TCP connection (-11: the same message as
    /// over UDP, its length framing it in the stream). Profiles without
    /// that refuse.
    fn parse_stream_datagram(
        &self,
        _buf: &[u8],
    ) -> Result<Parsed<(DatagramHeader, std::ops::Range<usize>)>, PeerError> {
        Err(PeerError::Unexpected(
            "datagrams over the TCP connection need -11's UDP messages",
        ))
    }

    /// The ICMP error message (-11's datagram error); profiles without one
    /// refuse.
    fn udp_error(&self, _report: &UdpErrorReport) -> Result<Vec<u8>, EncodeError> {
        Err(EncodeError::BadOption(
            "UDP error messages are not in this SOCKS 6 profile",
        ))
    }

    /// Parse an ICMP error message (a whole datagram, or a message from
    /// the TCP stream).
    fn parse_udp_error(&self, _msg: &[u8]) -> Result<UdpErrorReport, PeerError> {
        Err(PeerError::Unexpected(
            "UDP error messages are not in this SOCKS 6 profile",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_maps_first_bytes_as_documented() {
        let d05 = ProfileSetting::Only(Profile::Draft05);
        let d11 = ProfileSetting::Only(Profile::Draft11);
        // `06`: sniffed on `auto`, the listener's profile otherwise.
        assert_eq!(
            Profile::route(0x06, ProfileSetting::Auto),
            Some(Route::Sniff)
        );
        assert_eq!(
            Profile::route(0x06, d05),
            Some(Route::Speak(Profile::Draft05))
        );
        assert_eq!(
            Profile::route(0x06, d11),
            Some(Route::Speak(Profile::Draft11))
        );
        for setting in [ProfileSetting::Auto, d05, d11] {
            // `CF` is the reference dialect on every listener.
            assert_eq!(
                Profile::route(0xCF, setting),
                Some(Route::Speak(Profile::Ref207))
            );
            assert_eq!(
                Profile::for_header(&[0xCF], setting),
                Ok(Some(Profile::Ref207))
            );
            // Nothing else is SOCKS 6: SOCKS4/5 and the HTTP page keep theirs.
            for byte in (0..=0xFFu8).filter(|b| ![0x06, 0xCF].contains(b)) {
                assert_eq!(Profile::route(byte, setting), None, "{byte:#04x}");
                assert_eq!(Profile::for_header(&[byte], setting), Err(None));
            }
        }
        assert_eq!(Profile::for_header(&[], ProfileSetting::Auto), Ok(None));
    }

    #[test]
    fn version_6_is_told_apart_by_the_header() {
        let auto = ProfileSetting::Auto;
        let hdr = |b: &[u8]| Profile::for_header(b, auto);
        // -05 CONNECT 127.0.0.1:7777 (`06 00 01 1e 61 01 …`).
        let d05 = [0x06, 0x00, 0x01, 0x1E, 0x61, 0x01, 0x7F, 0, 0, 1, 0];
        // -11 CONNECT (`06 01 0000 1e61 00 01 …`).
        let d11 = [0x06, 0x01, 0, 0, 0x1E, 0x61, 0, 1, 0x7F, 0, 0, 1];
        // -11 NOOP (`06 00 0000 0000 00 01 00000000`).
        let noop11 = [0x06, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        // -05 NOOP (`06 00 00 0000 01 00000000 00`).
        let noop05 = [0x06, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(hdr(&d05), Ok(Some(Profile::Draft05)));
        assert_eq!(hdr(&d11), Ok(Some(Profile::Draft11)));
        assert_eq!(hdr(&noop11), Ok(Some(Profile::Draft11)));
        assert_eq!(hdr(&noop05), Ok(Some(Profile::Draft05)));
        // A -11 command byte decides at the second byte…
        assert_eq!(hdr(&d11[..2]), Ok(Some(Profile::Draft11)));
        // …`00` needs six bytes; fewer wait.
        for k in 1..SNIFF_BYTES {
            assert_eq!(hdr(&noop11[..k]), Ok(None), "{k} bytes");
            assert_eq!(hdr(&noop05[..k]), Ok(None), "{k} bytes");
        }
        // Every -05 request has an address type at byte 5; a -11 NOOP has
        // the low byte of its port (zero) there.
        for atyp in [1u8, 3, 4] {
            let mut h = noop05;
            h[5] = atyp;
            assert_eq!(hdr(&h), Ok(Some(Profile::Draft05)));
        }
        // A listener set to a profile does not sniff.
        let d11_only = ProfileSetting::Only(Profile::Draft11);
        assert_eq!(
            Profile::for_header(&noop05, d11_only),
            Ok(Some(Profile::Draft11))
        );
        let d05_only = ProfileSetting::Only(Profile::Draft05);
        assert_eq!(
            Profile::for_header(&d11, d05_only),
            Ok(Some(Profile::Draft05))
        );
    }

    #[test]
    fn a_listener_setting_row_takes_precedence() {
        // Where one byte begins two dialects: a row for listeners set to a
        // profile, then one for every listener (listed in either order).
        let specific = ProfileRow {
            first_byte: 0x06,
            setting: Some(Profile::Draft05),
            route: Route::Mismatch(Profile::Draft05),
        };
        let general = ProfileRow {
            first_byte: 0x06,
            setting: None,
            route: Route::Speak(Profile::Draft05),
        };
        let only = ProfileSetting::Only(Profile::Draft05);
        for table in [[specific, general], [general, specific]] {
            assert_eq!(route_in(&table, 0x06, only), Some(specific.route));
            assert_eq!(
                route_in(&table, 0x06, ProfileSetting::Auto),
                Some(general.route)
            );
            assert_eq!(route_in(&table, 0x05, only), None);
        }
        // Without a row for the setting, the row for every listener holds;
        // without that either, the byte is not SOCKS 6.
        assert_eq!(route_in(&[general], 0x06, only), Some(general.route));
        assert_eq!(route_in(&[specific], 0x06, ProfileSetting::Auto), None);
    }

    #[test]
    fn every_profile_is_listed_once_and_names_its_codec() {
        // Every profile the table speaks is in ALL, and the names round-trip.
        for row in PROFILE_TABLE {
            if let Some(p) = row.route.profile() {
                assert!(Profile::ALL.contains(&p));
            }
        }
        for p in Profile::ALL {
            assert_eq!(Profile::from_setting_name(p.setting_name()), Some(p));
            assert_eq!(p.codec().profile(), p);
            assert_eq!(p.name(), p.codec().name());
            // The profile-independent floor holds in every profile.
            assert!(p.codec().layout().max_initial_data >= MAX_INITIAL_DATA);
        }
        assert_eq!(Profile::default(), Profile::DEFAULT);
        assert_eq!(Profile::Draft05.to_string(), "socks6-draft05");
    }

    #[test]
    fn request_caps_come_from_the_profile() {
        let l = Socks6Limits::default();
        // -05: 2 + 1 + 2 + 1 + 256 + 1 = 263 bytes of header.
        assert_eq!(
            l.max_request_bytes(Profile::Draft05),
            263 + 4096 + MAX_INITIAL_DATA
        );
        // -11: 8 + 256 bytes of header.
        assert_eq!(
            l.max_request_bytes(Profile::Draft11),
            264 + 4096 + MAX_INITIAL_DATA
        );
        assert_eq!(
            l.max_request_bytes_any(),
            l.max_request_bytes(Profile::Draft11)
        );
        let small = Socks6Limits {
            max_initial_data: 10,
            ..Socks6Limits::default()
        };
        assert_eq!(small.max_request_bytes(Profile::Draft05), 263 + 4096 + 10);
    }

    #[test]
    fn reply_code_tables_send_a_fallback_and_keep_raw_values() {
        let t = ReplyCodes {
            rows: &[
                (ReplyCode::Succeeded, V6Code(0)),
                (ReplyCode::HostUnreachable, V6Code(4)),
            ],
            fallback: ReplyCode::HostUnreachable,
        };
        assert_eq!(t.encode(ReplyCode::Succeeded), 0);
        assert_eq!(t.encode(ReplyCode::ONION_DESC_NOT_FOUND), 4);
        assert_eq!(t.encode(ReplyCode::Other(0x77)), 0x77);
        assert_eq!(t.decode(V6Code(4)), ReplyCode::HostUnreachable);
        assert_eq!(t.decode(V6Code(0x77)), ReplyCode::Other(0x77));
        // A table without its fallback's row sends general failure.
        let broken = ReplyCodes {
            rows: &[],
            fallback: ReplyCode::HostUnreachable,
        };
        assert_eq!(broken.encode(ReplyCode::NotAllowed), 0x01);
    }

    #[test]
    fn operation_replies_map_codes_through_their_profile() {
        let r = OperationReply::new(
            Profile::Draft05,
            ReplyCode::TtlExpired,
            crate::TargetAddr::unspecified(),
            Options::new(),
        );
        assert_eq!((r.profile, r.rep), (Profile::Draft05, V6Code(0x09)));
        assert_eq!(r.code(), ReplyCode::TtlExpired);
    }

    #[test]
    fn association_ids_have_the_profile_width() {
        let width = Profile::Draft05.codec().layout().association_id_width;
        let id = AssociationId::from_random(u64::MAX, width);
        assert_eq!(id, AssociationId(u64::from(u32::MAX)));
        assert!(Profile::Draft05.codec().encode_association_id(id).is_ok());
        assert_eq!(
            AssociationId::from_random(u64::MAX, 8),
            AssociationId(u64::MAX)
        );
        assert_eq!(AssociationId::from_random(0xABCD, 1), AssociationId(0xCD));
        assert_eq!(AssociationId::from_random(u64::MAX, 0), AssociationId(0));
    }
}

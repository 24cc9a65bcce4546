//! Sans-IO SOCKS protocol layer for sixsocks.
//!
//! Everything in this crate is pure: bytes go in, parsed messages, events and
//! bytes to send come out. There are no sockets, no clocks and no async code,
//! so every parser and state machine can be unit-tested, property-tested and
//! fuzzed on its own.
//!
//! * [`parse`]: the incremental parsing convention ([`Parsed`]) shared by all
//!   messages: a parser asked too early answers how many more bytes it needs.
//! * [`error`]: what can go wrong, by whose fault: [`PeerError`] (what a peer
//!   sent wrong; parsers return it), [`EncodeError`] (what we were asked to
//!   write and the wire cannot carry; encoders return it), [`Misuse`] (a
//!   machine's calling convention broken), and [`ProtoError`], one of the
//!   three, which a failed handshake machine reports.
//! * [`addr`]: target addresses (IPv4, IPv6, domain) and their wire forms.
//! * [`reply`]: the reply codes of every version, and the one table that maps
//!   them onto each version's wire value.
//! * [`v4`], [`v5`], [`userpass`]: the SOCKS4/4a, SOCKS5 (RFC 1928) and
//!   username/password (RFC 1929) messages.
//! * [`v6`]: SOCKS 6 (draft-olteanu-intarea-socks-6-05): messages, options,
//!   idempotence tokens, and the server and client state machines.
//! * [`server`]: the server-side handshake state machine, which also
//!   dispatches on the first byte (SOCKS4, SOCKS5, HTTP-resistance).
//! * [`client`]: the client-side handshake state machine.
//! * [`udp`]: the SOCKS5 UDP datagram header and fragment reassembly.
//! * [`http`]: HTTP-resistance (the page sent to browsers that use the proxy
//!   as an HTTP proxy).

#![forbid(unsafe_code)]

pub mod addr;
pub mod client;
pub mod error;
pub mod http;
pub mod input;
pub mod parse;
pub mod reply;
pub mod secret;
pub mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod udp;
pub mod userpass;
pub mod v4;
pub mod v5;
pub mod v6;

pub use addr::{Atyp, Host, ShownName, TargetAddr};
pub use error::{EncodeError, Misuse, PeerError, ProtoError};
pub use input::{Input, Instruction, NoEvent};
pub use parse::Parsed;
pub use reply::{ReplyCode, V4Code, V5Code, V6Code};
pub use secret::Password;

/// Hard cap on any single handshake message we are willing to buffer.
///
/// The largest legal SOCKS4a request is 8 + 255 (USERID cap) + 1 + 255
/// (hostname cap) + 1 = 520 bytes; the largest SOCKS5 message is the RFC 1929
/// request at 513 bytes. HTTP-resistance reads a little more (see
/// [`http::MAX_HTTP_HEAD`]).
pub const MAX_MESSAGE: usize = 1024;

/// SOCKS command codes, shared by SOCKS4 (CD) and SOCKS5 (CMD).
///
/// An open newtype: unknown values survive parsing and the server decides
/// which commands it carries out (answering "command not supported" for
/// the rest).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Command(pub u8);

impl Command {
    /// SOCKS 6: authenticate and do nothing else.
    pub const NOOP: Command = Command(0x00);
    pub const CONNECT: Command = Command(0x01);
    pub const BIND: Command = Command(0x02);
    pub const UDP_ASSOCIATE: Command = Command(0x03);
    /// Tor extension: resolve a name.
    pub const RESOLVE: Command = Command(0xF0);
    /// Tor extension: reverse-resolve an address.
    pub const RESOLVE_PTR: Command = Command(0xF1);

    /// A short lowercase name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Command::NOOP => "noop",
            Command::CONNECT => "connect",
            Command::BIND => "bind",
            Command::UDP_ASSOCIATE => "udp-associate",
            Command::RESOLVE => "resolve",
            Command::RESOLVE_PTR => "resolve-ptr",
            _ => "unknown",
        }
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(0x{:02x})", self.name(), self.0)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            "unknown" => write!(f, "0x{:02x}", self.0),
            n => f.write_str(n),
        }
    }
}

/// Which protocol a request arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V4,
    V4a,
    V5,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V4 => "socks4",
            Version::V4a => "socks4a",
            Version::V5 => "socks5",
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Credentials a client presented. They identify the client for stream
/// isolation and per-user rules; only SOCKS5 username/password is ever
/// *verified*.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Credentials {
    /// Nothing presented (SOCKS5 method 00, or a SOCKS4 request with an empty USERID).
    #[default]
    None,
    /// SOCKS4 USERID (unverified: RFC 1413 ident is not trusted).
    UserId(Vec<u8>),
    /// SOCKS5 username/password (RFC 1929).
    UserPass {
        username: Vec<u8>,
        password: Password,
    },
}

impl Credentials {
    /// The user name to log and to isolate by (never the password).
    pub fn user(&self) -> Option<&[u8]> {
        match self {
            Credentials::None => None,
            Credentials::UserId(u) => Some(u),
            Credentials::UserPass { username, .. } => Some(username),
        }
    }

    /// The user name as printable text for logs ("-" when absent).
    pub fn user_display(&self) -> String {
        match self.user() {
            None => "-".to_string(),
            Some(u) => String::from_utf8_lossy(u).escape_debug().to_string(),
        }
    }
}

/// A complete client request, as the server state machine hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub version: Version,
    pub command: Command,
    pub target: TargetAddr,
    pub credentials: Credentials,
}

impl Request {
    /// Encode this request's reply in the request's own protocol version.
    ///
    /// `bound` is the address for the reply's address field (the bound
    /// address for CONNECT/BIND, the answer for RESOLVE/RESOLVE_PTR); `None`
    /// sends zeros of the right shape. `extended` enables Tor's extended error
    /// codes (SOCKS5 only).
    pub fn reply(&self, code: ReplyCode, bound: Option<&TargetAddr>, extended: bool) -> Vec<u8> {
        match self.version {
            Version::V4 | Version::V4a => v4::Reply::for_target(code, bound).encode(),
            Version::V5 => v5::Reply {
                rep: code.to_v5(extended),
                bound: bound.cloned().unwrap_or_else(TargetAddr::unspecified),
            }
            .encode(),
        }
    }
}

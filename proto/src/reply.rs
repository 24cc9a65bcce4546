//! Reply codes of every SOCKS version, and the one table mapping them to wire values.

/// Why a request succeeded or failed, independent of the protocol version.
///
/// [`ReplyCode::to_v5`] and [`ReplyCode::to_v4`] are the only places that
/// turn a cause into a SOCKS4/5 wire value; SOCKS 6's values belong to each
/// profile's codec (its `v6::ReplyCodes` table, through
/// `v6::OperationReply`). The server maps its own
/// errors onto this type in one place too (`sixsocks_server::error`).
/// A wire reply code: an open newtype over the byte (every value survives
/// parsing; [`ReplyCode`] says what it means).
macro_rules! wire_code {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub u8);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}(0x{:02x})", stringify!($name), self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:02x}", self.0)
            }
        }

        /// Compare with the byte as written in a specification's table.
        impl PartialEq<u8> for $name {
            fn eq(&self, other: &u8) -> bool {
                self.0 == *other
            }
        }
    };
}

wire_code!(
    /// A SOCKS4 reply's CD byte.
    V4Code
);
wire_code!(
    /// A SOCKS5 reply's REP byte.
    V5Code
);
wire_code!(
    /// A SOCKS 6 operation reply's code byte; its meaning is the profile's
    /// (`v6::ReplyCodes`).
    V6Code
);

impl V4Code {
    /// Request granted.
    pub const GRANTED: V4Code = V4Code(0x5A);
    /// Request rejected or failed.
    pub const REJECTED: V4Code = V4Code(0x5B);
}

impl V5Code {
    pub const SUCCEEDED: V5Code = V5Code(0x00);
}

impl V6Code {
    pub const SUCCESS: V6Code = V6Code(0x00);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    Succeeded,
    GeneralFailure,
    NotAllowed,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    /// SOCKS5 `06`. sixsocks sends it when a connect attempt times out, as
    /// Tor does (END_STREAM_REASON_TIMEOUT → TTL expired): it tells a client
    /// "try again later" apart from "no route" (`04`), and it is what
    /// SOCKS 6 later names `09` "connection attempt timed out".
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
    /// One of Tor's extended error codes, `F0`–`F7` (onion-service failures).
    TorExtended(u8),
    /// Any other value read from a peer's reply.
    Other(u8),
}

impl ReplyCode {
    /// Tor extended code: onion service descriptor cannot be found.
    pub const ONION_DESC_NOT_FOUND: ReplyCode = ReplyCode::TorExtended(0xF0);
    /// Tor extended code: invalid onion service address.
    pub const ONION_INVALID_ADDRESS: ReplyCode = ReplyCode::TorExtended(0xF6);

    /// The SOCKS5 REP value. Extended codes are only sent when `extended`
    /// is on; otherwise they fall back to `04` host unreachable.
    pub fn to_v5(self, extended: bool) -> V5Code {
        V5Code(match self {
            ReplyCode::Succeeded => 0x00,
            ReplyCode::GeneralFailure => 0x01,
            ReplyCode::NotAllowed => 0x02,
            ReplyCode::NetworkUnreachable => 0x03,
            ReplyCode::HostUnreachable => 0x04,
            ReplyCode::ConnectionRefused => 0x05,
            ReplyCode::TtlExpired => 0x06,
            ReplyCode::CommandNotSupported => 0x07,
            ReplyCode::AddressTypeNotSupported => 0x08,
            ReplyCode::TorExtended(c) if extended => c,
            ReplyCode::TorExtended(_) => 0x04,
            ReplyCode::Other(c) => c,
        })
    }

    /// Read a SOCKS5 REP value.
    pub fn from_v5(V5Code(rep): V5Code) -> Self {
        match rep {
            0x00 => ReplyCode::Succeeded,
            0x01 => ReplyCode::GeneralFailure,
            0x02 => ReplyCode::NotAllowed,
            0x03 => ReplyCode::NetworkUnreachable,
            0x04 => ReplyCode::HostUnreachable,
            0x05 => ReplyCode::ConnectionRefused,
            0x06 => ReplyCode::TtlExpired,
            0x07 => ReplyCode::CommandNotSupported,
            0x08 => ReplyCode::AddressTypeNotSupported,
            0xF0..=0xF7 => ReplyCode::TorExtended(rep),
            c => ReplyCode::Other(c),
        }
    }

    /// The SOCKS4 CD value: `5A` granted, `5B` for every failure (SOCKS4 has
    /// no finer codes; `5C`/`5D` are about identd, which we do not use).
    pub fn to_v4(self) -> V4Code {
        match self {
            ReplyCode::Succeeded => V4Code::GRANTED,
            _ => V4Code::REJECTED,
        }
    }

    /// Read a SOCKS4 CD value.
    pub fn from_v4(cd: V4Code) -> Self {
        match cd {
            V4Code::GRANTED => ReplyCode::Succeeded,
            V4Code::REJECTED => ReplyCode::GeneralFailure,
            V4Code(c) => ReplyCode::Other(c),
        }
    }

    pub fn is_success(self) -> bool {
        self == ReplyCode::Succeeded
    }
}

impl std::fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ReplyCode::Succeeded => "succeeded",
            ReplyCode::GeneralFailure => "general-failure",
            ReplyCode::NotAllowed => "not-allowed",
            ReplyCode::NetworkUnreachable => "network-unreachable",
            ReplyCode::HostUnreachable => "host-unreachable",
            ReplyCode::ConnectionRefused => "connection-refused",
            ReplyCode::TtlExpired => "ttl-expired",
            ReplyCode::CommandNotSupported => "command-not-supported",
            ReplyCode::AddressTypeNotSupported => "address-type-not-supported",
            ReplyCode::TorExtended(c) => return write!(f, "tor-extended-0x{c:02x}"),
            ReplyCode::Other(c) => return write!(f, "0x{c:02x}"),
        };
        f.write_str(s)
    }
}

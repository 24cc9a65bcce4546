//! The aligned wire format of draft -11, and the reference
//! implementation's dialect of it (version byte 207).
//!
//! ```text
//! request          VER | CMD | OPTLEN(2) | PORT(2) | PAD=0 | ATYP | ADDR | OPTIONS
//! version mismatch VER                         (one byte; the reference answers CF)
//! auth reply       VER | TYPE | OPTLEN(2) | OPTIONS
//! operation reply  VER | REP | OPTLEN(2) | PORT(2) | PAD=0 | ATYP | ADDR | OPTIONS
//! option           KIND(2) | LENGTH(2) | DATA | PAD=0...   (LENGTH counts it all, a multiple of 4)
//!   stack          0001 | 0008 | LEG(2 bits) LEVEL(6 bits) | CODE | VALUE(2)
//!   auth advert    0002 | LEN | INITIAL DATA LENGTH(2) | METHODS... | PAD
//!   auth select    0003 | 0008 | METHOD | PAD(3)
//!   auth data      0004 | LEN | METHOD | DATA | PAD
//!   session        0005 request, 0006 id (LEN 4 + id), 0007 untrusted (reference only),
//!                  0008 ok, 0009 invalid, 000A teardown
//!   idempotence    000B request (size 4), 000C window (base 4, size 4),
//!                  000D expenditure (token 4), 000E accepted, 000F rejected
//!   experimental   FC00..FFFF
//! ```
//!
//! Addresses: ATYP `01` IPv4 (4 bytes), `04` IPv6 (16), `03` a domain:
//! a length byte, the name, then NUL padding to a multiple of 4. Whether
//! the length byte counts that padding differs: -11 counts it, the
//! reference does not. Both are read (a length byte `L` with `1 + L` a
//! multiple of 4 counted its padding, or needed none: trailing NULs are
//! stripped; any other `L` is followed by uncounted padding, which must be
//! zero), and each profile sends its own.
//!
//! UDP: -11 frames every UDP message with `VER | TYPE | LEN(2) | ASSOCIATION
//! ID(8)` (type 1 initialisation and 2 confirmation on the TCP connection,
//! 3 datagram — `ATYP | PAD | PORT(2) | ADDR` then the payload — and 4 ICMP
//! error). The reference dialect has the pre -09 framing: the id (8 bytes)
//! alone on TCP, the confirmation a status byte `00`, and datagrams
//! `VER | ATYP | PORT(2) | ASSOCIATION ID(8) | ADDR`. The reference never
//! implemented UDP (it answers `07`), so that framing is read off its
//! message library's header, not off a capture.
//!
//! Decisions (see also the module documentation of `v6`):
//! * Framing errors are errors, never skipped: an options length or an
//!   option length that is not a multiple of 4, an option shorter than 4
//!   bytes or running past the options area, padding that is not zero.
//!   (The reference drops the remaining options silently on a bad option
//!   length; this codec refuses the message.)
//! * Unknown kinds are kept raw and ignored; so are stack options with an
//!   unknown level/code or a value byte outside the option's range.
//! * The token-expenditure option's length is 8 (kind, length, token): the
//!   figure's 4 contradicts the text and the reference.

use crate::addr::{domain_from_bytes, Atyp, MAX_DOMAIN};
use crate::parse::{need, Parsed};
use crate::reply::V6Code;
use crate::secret::Password;
use crate::v5::Method;
use crate::{Command, EncodeError, Host, PeerError, TargetAddr};

use super::messages::{
    AssociationId, AuthOutcome, AuthReply, DatagramHeader, OperationReply, Request, UdpErrorCode,
    UdpErrorReport,
};
use super::options::{
    level, AuthDataOption, AuthMethodOption, ExpenditureCode, IdempotenceOption, Leg,
    MptcpScheduler, Options, Parity, SessionOption, Socks6Option, StackOption, StackValue,
};
use super::{Codec, Layout, OptionsLength, Profile, ReplyCodes, Socks6Limits};

/// Field alignment.
pub const ALIGN: usize = 4;

/// The fixed part of a request and of an operation reply: version,
/// command or code, options length, port, padding, address type.
pub const FIXED_HEADER: usize = 8;

/// Longest request header before the options: the fixed part and a
/// 255-byte domain with its length byte (256 bytes, already aligned).
pub const MAX_REQUEST_HEADER: usize = FIXED_HEADER + 1 + MAX_DOMAIN;

/// The draft's cap on a message's options (and on initial data): 2^14.
pub const MAX_OPTIONS_LENGTH: usize = 1 << 14;

/// Most initial data a CONNECT may declare (2^14).
pub const MAX_INITIAL_DATA: usize = 1 << 14;

/// Width of a UDP association id.
pub const ASSOCIATION_ID_LEN: usize = 8;

/// Longest RFC 1929 request (1 + 1 + 255 + 1 + 255): always fits an
/// authentication data option here.
pub const MAX_USERPASS_AUTH_DATA: usize = 513;

/// Option kinds (2 bytes on the wire).
pub mod kind {
    pub const STACK: u16 = 1;
    pub const AUTH_METHOD: u16 = 2;
    pub const AUTH_SELECT: u16 = 3;
    pub const AUTH_DATA: u16 = 4;
    pub const SESSION_REQUEST: u16 = 5;
    pub const SESSION_ID: u16 = 6;
    /// The reference dialect only (-06 to -09).
    pub const SESSION_UNTRUSTED: u16 = 7;
    pub const SESSION_OK: u16 = 8;
    pub const SESSION_INVALID: u16 = 9;
    pub const SESSION_TEARDOWN: u16 = 10;
    pub const IDEMPOTENCE_REQUEST: u16 = 11;
    pub const IDEMPOTENCE_WINDOW: u16 = 12;
    pub const IDEMPOTENCE_EXPENDITURE: u16 = 13;
    pub const IDEMPOTENCE_ACCEPTED: u16 = 14;
    pub const IDEMPOTENCE_REJECTED: u16 = 15;
    /// First kind of the experimental range `FC00`–`FFFF`.
    pub const EXPERIMENTAL_FIRST: u16 = 0xFC00;
}

/// Stack option codes (per level).
pub mod code {
    /// Level IP.
    pub const TOS: u8 = 1;
    pub const HAPPY_EYEBALLS: u8 = 2;
    pub const TTL: u8 = 3;
    pub const NO_FRAGMENT: u8 = 4;
    /// Level TCP.
    pub const TFO: u8 = 1;
    pub const MULTIPATH: u8 = 2;
    pub const BACKLOG: u8 = 3;
    /// Level UDP.
    pub const UDP_ERROR: u8 = 1;
    pub const PORT_PARITY: u8 = 2;
}

/// UDP message types (-11 §6.3).
pub mod udp_type {
    pub const INIT: u8 = 1;
    pub const CONFIRM: u8 = 2;
    pub const DATAGRAM: u8 = 3;
    pub const ERROR: u8 = 4;
}

/// Authentication reply types.
pub mod auth_type {
    pub const SUCCESS: u8 = 0x00;
    pub const FAILURE: u8 = 0x01;
}

/// -11's "availability" bytes: 1 = no, 2 = yes.
const NO: u8 = 1;
const YES: u8 = 2;

/// -11's operation reply codes: SOCKS5's `00`–`08` plus `09` "connection
/// attempt timed out" (the reference's table is the same). As in -05,
/// `TtlExpired` (what sixsocks reports for a connect that timed out) is
/// sent as `09`, and `06` reads as it.
pub const REPLY_CODES: ReplyCodes = super::draft05::REPLY_CODES;

/// How the UDP messages of a dialect are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpFraming {
    /// -09 and later: one message header with a type and a length.
    Messages,
    /// The reference dialect (-07/-08): the id alone, a status byte, and a
    /// datagram header without type or length.
    Pre09,
}

/// What tells -11 and the reference dialect apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dialect {
    pub profile: Profile,
    pub name: &'static str,
    pub version: u8,
    /// The domain length byte counts its NUL padding (-11) or not (the
    /// reference).
    pub domain_padding_counted: bool,
    /// Kind 7, "session untrusted", exists (the reference).
    pub session_untrusted: bool,
    /// The multipath option's values are the reverse of -11's text
    /// (the reference: 1 = available, 2 = not available).
    pub mptcp_reversed: bool,
    /// TTL, no-fragment, UDP error and port parity exist (-11, not the
    /// reference).
    pub later_stack_options: bool,
    pub udp: UdpFraming,
}

/// An aligned-framing codec: -11 or the reference dialect, by its
/// [`Dialect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Aligned {
    pub dialect: Dialect,
    layout: Layout,
}

const fn layout(version: &'static [u8]) -> Layout {
    Layout {
        version,
        max_request_header: MAX_REQUEST_HEADER,
        options_length_width: 2,
        options_length_counts: OptionsLength::Bytes,
        option_kind_width: 2,
        option_length_width: 2,
        max_option_len: MAX_OPTIONS_LENGTH,
        alignment: ALIGN,
        association_id_width: ASSOCIATION_ID_LEN,
        max_initial_data: MAX_INITIAL_DATA,
        max_userpass_auth_data: MAX_USERPASS_AUTH_DATA,
        sessions: true,
    }
}

/// Draft -11 (version byte 6).
pub static DRAFT11: Aligned = Aligned {
    dialect: Dialect {
        profile: Profile::Draft11,
        name: "socks6-draft11",
        version: super::VERSION,
        domain_padding_counted: true,
        session_untrusted: false,
        mptcp_reversed: false,
        later_stack_options: true,
        udp: UdpFraming::Messages,
    },
    layout: layout(&[super::VERSION]),
};

/// The reference implementation's dialect (version byte 207).
pub static REF207: Aligned = Aligned {
    dialect: Dialect {
        profile: Profile::Ref207,
        name: "socks6-ref207",
        version: super::REF_VERSION,
        domain_padding_counted: false,
        session_untrusted: true,
        mptcp_reversed: true,
        later_stack_options: false,
        udp: UdpFraming::Pre09,
    },
    layout: layout(&[super::REF_VERSION]),
};

/// A whole datagram's field: running out of bytes is truncation.
fn incomplete<T>(p: Parsed<T>) -> Result<(T, usize), PeerError> {
    match p {
        Parsed::Complete { value, consumed } => Ok((value, consumed)),
        Parsed::Incomplete { .. } => Err(PeerError::Truncated),
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Zero bytes that bring `len` to a multiple of 4.
fn pad_len(len: usize) -> usize {
    (ALIGN - len % ALIGN) % ALIGN
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

impl Aligned {
    // -------------------------------------------------------- addresses

    /// Parse `ADDR` of address type `atyp` (the bytes after the fixed
    /// header), padding included. Returns the host and the bytes used.
    fn parse_addr(&self, atyp: u8, buf: &[u8]) -> Result<Parsed<Host>, PeerError> {
        match Atyp(atyp) {
            Atyp::IPV4 => {
                need!(buf, 4);
                let o: [u8; 4] = [buf[0], buf[1], buf[2], buf[3]];
                Ok(Parsed::Complete {
                    value: Host::Ip(std::net::Ipv4Addr::from(o).into()),
                    consumed: 4,
                })
            }
            Atyp::IPV6 => {
                need!(buf, 16);
                let mut o = [0u8; 16];
                o.copy_from_slice(&buf[..16]);
                Ok(Parsed::Complete {
                    value: Host::Ip(std::net::Ipv6Addr::from(o).into()),
                    consumed: 16,
                })
            }
            Atyp::DOMAIN => {
                need!(buf, 1);
                let l = buf[0] as usize;
                if l == 0 {
                    return Err(PeerError::EmptyDomain);
                }
                need!(buf, 1 + l);
                if (1 + l).is_multiple_of(ALIGN) {
                    // The length counted its padding, or none was needed.
                    let raw = &buf[1..1 + l];
                    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    if l - end >= ALIGN {
                        return Err(PeerError::BadFraming("more domain padding than alignment"));
                    }
                    return Ok(Parsed::Complete {
                        value: Host::Domain(domain_from_bytes(&raw[..end])?),
                        consumed: 1 + l,
                    });
                }
                let total = 1 + l + pad_len(1 + l);
                need!(buf, total);
                if !all_zero(&buf[1 + l..total]) {
                    return Err(PeerError::BadFraming("domain padding is not zero"));
                }
                Ok(Parsed::Complete {
                    value: Host::Domain(domain_from_bytes(&buf[1..1 + l])?),
                    consumed: total,
                })
            }
            Atyp(other) => Err(PeerError::UnknownAddressType(other)),
        }
    }

    /// Append `ADDR` for `host` (without the address type), padded.
    fn encode_addr(&self, host: &Host, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match host {
            Host::Ip(std::net::IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            Host::Ip(std::net::IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            Host::Domain(name) => {
                let b = name.as_bytes();
                if b.is_empty() {
                    return Err(EncodeError::EmptyDomain);
                }
                if b.contains(&0) {
                    return Err(EncodeError::BadDomain);
                }
                let pad = pad_len(1 + b.len());
                let counted = if self.dialect.domain_padding_counted {
                    b.len() + pad
                } else {
                    b.len()
                };
                let Ok(l) = u8::try_from(counted) else {
                    return Err(EncodeError::TooLong("domain name over 255 bytes"));
                };
                out.push(l);
                out.extend_from_slice(b);
                out.resize(out.len() + pad, 0);
            }
        }
        Ok(())
    }

    fn atyp(host: &Host) -> u8 {
        match host {
            Host::Ip(std::net::IpAddr::V4(_)) => Atyp::IPV4.0,
            Host::Ip(std::net::IpAddr::V6(_)) => Atyp::IPV6.0,
            Host::Domain(_) => Atyp::DOMAIN.0,
        }
    }

    /// `PORT(2) | PAD | ATYP | ADDR` from `buf` (the bytes after the first
    /// four of a request or operation reply).
    fn parse_port_addr(&self, buf: &[u8]) -> Result<Parsed<TargetAddr>, PeerError> {
        need!(buf, 4);
        if buf[2] != 0 {
            return Err(PeerError::BadFraming("padding is not zero"));
        }
        let port = be16(buf);
        Ok(self
            .parse_addr(buf[3], &buf[4..])?
            .map(|host| TargetAddr { host, port })
            .map_consumed(4))
    }

    fn encode_port_addr(&self, t: &TargetAddr, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&t.port.to_be_bytes());
        out.push(0);
        out.push(Self::atyp(&t.host));
        self.encode_addr(&t.host, out)
    }

    // -------------------------------------------------------- options

    /// Parse an options area of known size (`area` is exactly the bytes the
    /// options length announced).
    pub fn parse_options(&self, area: &[u8], limits: &Socks6Limits) -> Result<Options, PeerError> {
        if area.len() > limits.max_options_bytes.min(MAX_OPTIONS_LENGTH) {
            return Err(PeerError::OptionsTooLong(
                limits.max_options_bytes.min(MAX_OPTIONS_LENGTH),
            ));
        }
        let mut out = Vec::new();
        let mut off = 0;
        while off < area.len() {
            if out.len() == limits.max_options {
                return Err(PeerError::TooManyOptions(limits.max_options));
            }
            if area.len() - off < 4 {
                return Err(PeerError::BadFraming(
                    "an option runs past the options area",
                ));
            }
            let kind = be16(&area[off..]);
            let len = be16(&area[off + 2..]) as usize;
            if len < 4 {
                return Err(PeerError::BadOption("option length below 4"));
            }
            if !len.is_multiple_of(ALIGN) {
                return Err(PeerError::BadFraming("option length not a multiple of 4"));
            }
            if off + len > area.len() {
                return Err(PeerError::BadFraming(
                    "an option runs past the options area",
                ));
            }
            out.push(self.decode_option(kind, &area[off + 4..off + len])?);
            off += len;
        }
        Ok(Options(out))
    }

    /// Decode one option's data (after KIND and LENGTH, padding included).
    pub fn decode_option(&self, kind: u16, data: &[u8]) -> Result<Socks6Option, PeerError> {
        let fixed = |want: usize, what: &'static str| {
            if data.len() == want {
                Ok(())
            } else {
                Err(PeerError::BadOption(what))
            }
        };
        let session = |s: SessionOption| -> Result<Socks6Option, PeerError> {
            fixed(0, "session option with data")?;
            Ok(Socks6Option::Session(s))
        };
        Ok(match kind {
            kind::STACK => self.decode_stack(data)?,
            kind::AUTH_METHOD => {
                if data.len() < 2 {
                    return Err(PeerError::BadOption(
                        "authentication method option without initial data length",
                    ));
                }
                let initial_data_len = be16(data);
                if initial_data_len as usize > MAX_INITIAL_DATA {
                    return Err(PeerError::InitialDataTooLong(initial_data_len as usize));
                }
                // The padding is zeros, which is also method 00: strip what
                // can be padding (clients should not list 00 anyway).
                let methods = &data[2..];
                let pad = methods
                    .iter()
                    .rev()
                    .take(ALIGN - 1)
                    .take_while(|&&m| m == 0)
                    .count();
                let keep = methods.len() - pad;
                Socks6Option::AuthMethod(AuthMethodOption {
                    initial_data_len,
                    methods: methods[..keep].iter().map(|&m| Method(m)).collect(),
                })
            }
            kind::AUTH_SELECT => {
                fixed(4, "authentication method selection of the wrong length")?;
                if !all_zero(&data[1..]) {
                    return Err(PeerError::BadFraming("padding is not zero"));
                }
                Socks6Option::AuthSelect(Method(data[0]))
            }
            kind::AUTH_DATA => {
                let Some((&method, rest)) = data.split_first() else {
                    return Err(PeerError::BadOption(
                        "authentication data option without a method",
                    ));
                };
                Socks6Option::AuthData(AuthDataOption {
                    method: Method(method),
                    data: Password::new(rest),
                })
            }
            kind::SESSION_REQUEST => session(SessionOption::Request)?,
            kind::SESSION_ID => {
                if data.is_empty() {
                    return Err(PeerError::BadOption("empty session id"));
                }
                Socks6Option::Session(SessionOption::Id(data.to_vec()))
            }
            kind::SESSION_UNTRUSTED if self.dialect.session_untrusted => {
                session(SessionOption::Untrusted)?
            }
            kind::SESSION_OK => session(SessionOption::Ok)?,
            kind::SESSION_INVALID => session(SessionOption::Invalid)?,
            kind::SESSION_TEARDOWN => session(SessionOption::Teardown)?,
            kind::IDEMPOTENCE_REQUEST => {
                fixed(4, "token request of the wrong length")?;
                Socks6Option::Idempotence(IdempotenceOption::TokenRequest {
                    window_size: be32(data),
                })
            }
            kind::IDEMPOTENCE_WINDOW => {
                fixed(8, "idempotence window of the wrong length")?;
                Socks6Option::Idempotence(IdempotenceOption::WindowAdvertisement {
                    base: be32(data),
                    size: be32(&data[4..]),
                })
            }
            kind::IDEMPOTENCE_EXPENDITURE => {
                fixed(4, "token expenditure of the wrong length")?;
                Socks6Option::Idempotence(IdempotenceOption::Expenditure { token: be32(data) })
            }
            kind::IDEMPOTENCE_ACCEPTED => {
                fixed(0, "idempotence accepted with data")?;
                Socks6Option::Idempotence(IdempotenceOption::ExpenditureReply(
                    ExpenditureCode::SUCCESS,
                ))
            }
            kind::IDEMPOTENCE_REJECTED => {
                fixed(0, "idempotence rejected with data")?;
                Socks6Option::Idempotence(IdempotenceOption::ExpenditureReply(
                    ExpenditureCode::REJECTED,
                ))
            }
            k if k >= kind::EXPERIMENTAL_FIRST => Socks6Option::Vendor {
                kind: k,
                data: data.to_vec(),
            },
            k => Socks6Option::Unknown {
                kind: k,
                data: data.to_vec(),
            },
        })
    }

    /// A stack option's data: leg and level, code, a 2-byte value. A value
    /// this codec does not know (or a byte out of its range) is kept raw
    /// and ignored; non-zero padding is an error.
    fn decode_stack(&self, data: &[u8]) -> Result<Socks6Option, PeerError> {
        if data.len() < 2 {
            return Ok(Socks6Option::Unknown {
                kind: kind::STACK,
                data: data.to_vec(),
            });
        }
        let leg = Leg(data[0] >> 6);
        let lvl = data[0] & 0x3F;
        let c = data[1];
        let rest = &data[2..];
        let later = self.dialect.later_stack_options;
        let avail = |b: u8| match b {
            NO => Some(false),
            YES => Some(true),
            _ => None,
        };
        // Options whose second value byte is padding.
        let one = |rest: &[u8]| -> Result<Option<u8>, PeerError> {
            if rest.len() != 2 {
                return Ok(None);
            }
            if rest[1] != 0 {
                return Err(PeerError::BadFraming("padding is not zero"));
            }
            Ok(Some(rest[0]))
        };
        let value = match (lvl, c) {
            (level::IP, code::TOS) => one(rest)?.map(StackValue::Tos),
            (level::IP, code::HAPPY_EYEBALLS) => {
                one(rest)?.and_then(avail).map(StackValue::HappyEyeballs)
            }
            (level::IP, code::TTL) if later => one(rest)?.map(StackValue::Ttl),
            (level::IP, code::NO_FRAGMENT) if later => {
                one(rest)?.and_then(avail).map(StackValue::NoFragment)
            }
            (level::TCP, code::TFO) if rest.len() == 2 => Some(StackValue::TcpFastOpen {
                payload_size: be16(rest),
            }),
            (level::TCP, code::MULTIPATH) => one(rest)?.and_then(avail).map(|on| {
                if on != self.dialect.mptcp_reversed {
                    StackValue::Mptcp
                } else {
                    StackValue::MptcpOff
                }
            }),
            (level::TCP, code::BACKLOG) if rest.len() == 2 => {
                Some(StackValue::ListenBacklog(be16(rest)))
            }
            (level::UDP, code::UDP_ERROR) if later => {
                one(rest)?.and_then(avail).map(StackValue::UdpError)
            }
            (level::UDP, code::PORT_PARITY) if later && rest.len() == 2 && rest[1] <= 1 => {
                Some(StackValue::PortParity {
                    parity: Parity(rest[0]),
                    reserve: rest[1] == 1,
                })
            }
            _ => None,
        };
        let value = value.unwrap_or_else(|| StackValue::Unknown {
            level: lvl,
            code: c,
            data: rest.to_vec(),
        });
        Ok(Socks6Option::Stack(StackOption { leg, value }))
    }

    /// The stack option's `(level, code, value)` in this dialect, or why it
    /// has none.
    fn stack_fields(&self, v: &StackValue) -> Result<(u8, u8, Vec<u8>), EncodeError> {
        let later = self.dialect.later_stack_options;
        let av = |b: bool| if b { YES } else { NO };
        let missing = || EncodeError::BadOption("stack option not in this SOCKS 6 profile");
        let (l, c, value) = match v {
            StackValue::Tos(t) => (level::IP, code::TOS, [*t, 0]),
            StackValue::HappyEyeballs(h) => (level::IP, code::HAPPY_EYEBALLS, [av(*h), 0]),
            StackValue::Ttl(t) if later => (level::IP, code::TTL, [*t, 0]),
            StackValue::NoFragment(d) if later => (level::IP, code::NO_FRAGMENT, [av(*d), 0]),
            StackValue::TcpFastOpen { payload_size } => {
                (level::TCP, code::TFO, payload_size.to_be_bytes())
            }
            StackValue::Mptcp | StackValue::MptcpOff => {
                let on = matches!(v, StackValue::Mptcp);
                (
                    level::TCP,
                    code::MULTIPATH,
                    [av(on != self.dialect.mptcp_reversed), 0],
                )
            }
            StackValue::ListenBacklog(b) => (level::TCP, code::BACKLOG, b.to_be_bytes()),
            StackValue::UdpError(u) if later => (level::UDP, code::UDP_ERROR, [av(*u), 0]),
            StackValue::PortParity { parity, reserve } if later => (
                level::UDP,
                code::PORT_PARITY,
                [parity.0, u8::from(*reserve)],
            ),
            // Kept raw, whatever its size (the option is padded).
            StackValue::Unknown { level, code, data } => return Ok((*level, *code, data.clone())),
            StackValue::MptcpScheduler(MptcpScheduler(_))
            | StackValue::Ttl(_)
            | StackValue::NoFragment(_)
            | StackValue::UdpError(_)
            | StackValue::PortParity { .. } => return Err(missing()),
        };
        Ok((l, c, value.to_vec()))
    }

    /// Append one option (`KIND(2) | LENGTH(2) | DATA | PAD`). Nothing is
    /// written on error.
    pub fn encode_option_to(&self, o: &Socks6Option, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_option_inner(o, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_option_inner(&self, o: &Socks6Option, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let kind = match o {
            Socks6Option::Stack(s) => {
                let (lvl, c, value) = self.stack_fields(&s.value)?;
                if s.leg.0 > 3 {
                    return Err(EncodeError::TooLong("stack option leg above 3"));
                }
                if lvl > 0x3F {
                    return Err(EncodeError::TooLong("stack option level above 63"));
                }
                out.push((s.leg.0 << 6) | lvl);
                out.push(c);
                out.extend_from_slice(&value);
                kind::STACK
            }
            Socks6Option::AuthMethod(a) => {
                if a.initial_data_len as usize > MAX_INITIAL_DATA {
                    return Err(EncodeError::InitialDataTooLong(a.initial_data_len as usize));
                }
                out.extend_from_slice(&a.initial_data_len.to_be_bytes());
                out.extend(a.methods.iter().map(|m| m.0));
                kind::AUTH_METHOD
            }
            Socks6Option::AuthSelect(m) => {
                out.extend_from_slice(&[m.0, 0, 0, 0]);
                kind::AUTH_SELECT
            }
            Socks6Option::AuthData(d) => {
                out.push(d.method.0);
                out.extend_from_slice(d.data.expose());
                kind::AUTH_DATA
            }
            Socks6Option::Session(s) => match s {
                SessionOption::Request => kind::SESSION_REQUEST,
                SessionOption::Id(id) => {
                    if id.is_empty() || id.len() % ALIGN != 0 {
                        return Err(EncodeError::BadOption(
                            "session id not a non-empty multiple of 4 bytes",
                        ));
                    }
                    out.extend_from_slice(id);
                    kind::SESSION_ID
                }
                SessionOption::Untrusted if self.dialect.session_untrusted => {
                    kind::SESSION_UNTRUSTED
                }
                SessionOption::Untrusted => {
                    return Err(EncodeError::BadOption(
                        "session untrusted is not in this SOCKS 6 profile",
                    ))
                }
                SessionOption::Ok => kind::SESSION_OK,
                SessionOption::Invalid => kind::SESSION_INVALID,
                SessionOption::Teardown => kind::SESSION_TEARDOWN,
            },
            Socks6Option::Idempotence(i) => match i {
                IdempotenceOption::TokenRequest { window_size } => {
                    out.extend_from_slice(&window_size.to_be_bytes());
                    kind::IDEMPOTENCE_REQUEST
                }
                IdempotenceOption::WindowAdvertisement { base, size } => {
                    out.extend_from_slice(&base.to_be_bytes());
                    out.extend_from_slice(&size.to_be_bytes());
                    kind::IDEMPOTENCE_WINDOW
                }
                IdempotenceOption::Expenditure { token } => {
                    out.extend_from_slice(&token.to_be_bytes());
                    kind::IDEMPOTENCE_EXPENDITURE
                }
                IdempotenceOption::ExpenditureReply(c) if c.is_success() => {
                    kind::IDEMPOTENCE_ACCEPTED
                }
                IdempotenceOption::ExpenditureReply(_) => kind::IDEMPOTENCE_REJECTED,
                IdempotenceOption::Unknown { .. } => {
                    return Err(EncodeError::BadOption(
                        "-05 idempotence type in an aligned SOCKS 6 profile",
                    ))
                }
            },
            Socks6Option::Vendor { kind, data } => {
                if *kind < kind::EXPERIMENTAL_FIRST {
                    return Err(EncodeError::BadOption(
                        "experimental kind outside FC00-FFFF",
                    ));
                }
                out.extend_from_slice(data);
                *kind
            }
            Socks6Option::Unknown { kind, data } => {
                out.extend_from_slice(data);
                *kind
            }
        };
        let pad = pad_len(out.len() - start);
        out.resize(out.len() + pad, 0);
        let len = out.len() - start;
        let Ok(len16) = u16::try_from(len) else {
            return Err(EncodeError::TooLong("option longer than 65535 bytes"));
        };
        out[start..start + 2].copy_from_slice(&kind.to_be_bytes());
        out[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
        Ok(())
    }

    /// The options area and its length, for a message header.
    fn encode_options(&self, opts: &Options) -> Result<(u16, Vec<u8>), EncodeError> {
        let mut area = Vec::new();
        for o in opts {
            self.encode_option_to(o, &mut area)?;
        }
        if area.len() > MAX_OPTIONS_LENGTH {
            return Err(EncodeError::TooLong("options over 16 KiB"));
        }
        Ok((area.len() as u16, area))
    }

    /// Check a message's version byte: ours continues, the other SOCKS 6
    /// version bytes are a mismatch, anything else an unknown version.
    fn check_version(&self, b: u8) -> Result<(), PeerError> {
        match b {
            v if v == self.dialect.version => Ok(()),
            super::VERSION | super::REF_VERSION => Err(PeerError::VersionMismatch),
            other => Err(PeerError::UnknownVersion(other)),
        }
    }

    /// The options length of a header, checked: a multiple of 4, within
    /// the caps.
    fn options_length(&self, raw: u16, limits: &Socks6Limits) -> Result<usize, PeerError> {
        let n = raw as usize;
        if !n.is_multiple_of(ALIGN) {
            return Err(PeerError::BadFraming("options length not a multiple of 4"));
        }
        let cap = limits.max_options_bytes.min(MAX_OPTIONS_LENGTH);
        if n > cap {
            return Err(PeerError::OptionsTooLong(cap));
        }
        Ok(n)
    }

    /// A message that ends with an options area: `head` bytes of header
    /// (its options length at offset 2), then the options.
    fn parse_tail<T>(
        &self,
        buf: &[u8],
        head: usize,
        limits: &Socks6Limits,
        make: impl FnOnce(Options) -> T,
    ) -> Result<Parsed<T>, PeerError> {
        let n = self.options_length(be16(&buf[2..]), limits)?;
        need!(buf, head + n);
        let options = self.parse_options(&buf[head..head + n], limits)?;
        Ok(Parsed::Complete {
            value: make(options),
            consumed: head + n,
        })
    }

    fn udp_header(
        &self,
        ty: u8,
        len: usize,
        id: AssociationId,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let Ok(len) = u16::try_from(len) else {
            return Err(EncodeError::TooLong("UDP message over 65535 bytes"));
        };
        out.push(self.dialect.version);
        out.push(ty);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&id.0.to_be_bytes());
        Ok(())
    }

    /// Parse a -11 UDP message header at the start of `buf`: type, total
    /// length, id.
    fn parse_udp_header(
        &self,
        buf: &[u8],
    ) -> Result<Parsed<(u8, usize, AssociationId)>, PeerError> {
        need!(buf, 12);
        self.check_version(buf[0])?;
        let len = be16(&buf[2..]) as usize;
        if len < 12 {
            return Err(PeerError::BadFraming("UDP message length below its header"));
        }
        Ok(Parsed::Complete {
            value: (buf[1], len, AssociationId(be64(&buf[4..]))),
            consumed: 12,
        })
    }
}

impl Codec for Aligned {
    fn profile(&self) -> Profile {
        self.dialect.profile
    }

    fn name(&self) -> &'static str {
        self.dialect.name
    }

    fn layout(&self) -> &'static Layout {
        match self.dialect.profile {
            Profile::Ref207 => &REF207.layout,
            _ => &DRAFT11.layout,
        }
    }

    fn reply_codes(&self) -> &'static ReplyCodes {
        &REPLY_CODES
    }

    fn userpass_auth_data(
        &self,
        username: &[u8],
        password: &Password,
    ) -> Result<AuthDataOption, EncodeError> {
        let msg = crate::userpass::Request {
            username: username.to_vec(),
            password: password.clone(),
        }
        .encode()?;
        Ok(AuthDataOption {
            method: Method::USERPASS,
            data: Password::new(msg),
        })
    }

    fn encode_option(&self, o: &Socks6Option, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_option_to(o, out)
    }

    fn parse_request(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<Request>, PeerError> {
        need!(buf, 1);
        self.check_version(buf[0])?;
        need!(buf, 4);
        // Check the options length as soon as it is in: an over-long or
        // misaligned one is refused before anything else is buffered.
        self.options_length(be16(&buf[2..]), limits)?;
        let command = Command(buf[1]);
        let (target, alen) = match self.parse_port_addr(&buf[4..])? {
            Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
            Parsed::Complete { value, consumed } => (value, consumed),
        };
        self.parse_tail(buf, 4 + alen, limits, |options| Request {
            command,
            target,
            options,
        })
    }

    fn encode_request(&self, req: &Request) -> Result<Vec<u8>, EncodeError> {
        let (n, area) = self.encode_options(&req.options)?;
        let mut out = vec![self.dialect.version, req.command.0];
        out.extend_from_slice(&n.to_be_bytes());
        self.encode_port_addr(&req.target, &mut out)?;
        out.extend_from_slice(&area);
        Ok(out)
    }

    fn version_mismatch_reply(&self) -> Vec<u8> {
        vec![self.dialect.version]
    }

    fn is_version_mismatch(&self, buf: &[u8], eof: bool) -> bool {
        let ours = self.dialect.version;
        match buf {
            [] => false,
            // Another SOCKS 6 version byte: a mismatch whatever follows
            // (-05's `06 00`, the reference's `CF`).
            [b, ..] if *b != ours => *b == super::VERSION || *b == super::REF_VERSION,
            // Our version byte alone, or with less than an authentication
            // reply's fixed part, then EOF.
            short => eof && short.len() < 4,
        }
    }

    fn parse_auth_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<AuthReply>, PeerError> {
        need!(buf, 1);
        if buf[0] != self.dialect.version {
            return Err(PeerError::BadReplyVersion(buf[0]));
        }
        need!(buf, 4);
        let ty = buf[1];
        if ty != auth_type::SUCCESS && ty != auth_type::FAILURE {
            return Err(PeerError::BadAuthReplyType(ty));
        }
        let parsed = self.parse_tail(buf, 4, limits, |o| o)?;
        Ok(parsed.map(|mut options| {
            let outcome = if ty == auth_type::SUCCESS {
                // No method field: username/password shows as its reply
                // inside an authentication data option.
                let userpass = options.auth_data(Method::USERPASS).is_some();
                AuthOutcome::Success(if userpass {
                    Method::USERPASS
                } else {
                    Method::NONE
                })
            } else {
                let select = options
                    .0
                    .iter()
                    .position(|o| matches!(o, Socks6Option::AuthSelect(_)));
                match select.map(|i| options.0.remove(i)) {
                    Some(Socks6Option::AuthSelect(m)) if m != Method::NO_ACCEPTABLE => {
                        AuthOutcome::Continue(m)
                    }
                    _ => AuthOutcome::Failure,
                }
            };
            AuthReply { outcome, options }
        }))
    }

    fn encode_auth_reply(&self, reply: &AuthReply) -> Result<Vec<u8>, EncodeError> {
        let mut options = Options::new();
        let ty = match reply.outcome {
            AuthOutcome::Success(_) => auth_type::SUCCESS,
            AuthOutcome::Continue(m) => {
                options.push(Socks6Option::AuthSelect(m));
                auth_type::FAILURE
            }
            AuthOutcome::Failure => auth_type::FAILURE,
        };
        options.0.extend(reply.options.iter().cloned());
        let (n, area) = self.encode_options(&options)?;
        let mut out = vec![self.dialect.version, ty];
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&area);
        Ok(out)
    }

    fn parse_operation_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<OperationReply>, PeerError> {
        need!(buf, 1);
        if buf[0] != self.dialect.version {
            return Err(PeerError::BadReplyVersion(buf[0]));
        }
        need!(buf, 4);
        self.options_length(be16(&buf[2..]), limits)?;
        let rep = V6Code(buf[1]);
        let (bound, alen) = match self.parse_port_addr(&buf[4..])? {
            Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
            Parsed::Complete { value, consumed } => (value, consumed),
        };
        let profile = self.dialect.profile;
        self.parse_tail(buf, 4 + alen, limits, |options| OperationReply {
            profile,
            rep,
            bound,
            options,
        })
    }

    fn encode_operation_reply(&self, reply: &OperationReply) -> Result<Vec<u8>, EncodeError> {
        let (n, area) = self.encode_options(&reply.options)?;
        let mut out = vec![self.dialect.version, reply.rep.0];
        out.extend_from_slice(&n.to_be_bytes());
        self.encode_port_addr(&reply.bound, &mut out)?;
        out.extend_from_slice(&area);
        Ok(out)
    }

    fn parse_association_id(&self, buf: &[u8]) -> Result<Parsed<AssociationId>, PeerError> {
        match self.dialect.udp {
            UdpFraming::Pre09 => {
                need!(buf, ASSOCIATION_ID_LEN);
                Ok(Parsed::Complete {
                    value: AssociationId(be64(buf)),
                    consumed: ASSOCIATION_ID_LEN,
                })
            }
            UdpFraming::Messages => {
                let (ty, len, id) = match self.parse_udp_header(buf)? {
                    Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
                    Parsed::Complete { value, .. } => value,
                };
                if ty != udp_type::INIT || len != 12 {
                    return Err(PeerError::Unexpected(
                        "expected a UDP association initialisation",
                    ));
                }
                Ok(Parsed::Complete {
                    value: id,
                    consumed: 12,
                })
            }
        }
    }

    fn encode_association_id(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError> {
        match self.dialect.udp {
            UdpFraming::Pre09 => Ok(id.0.to_be_bytes().to_vec()),
            UdpFraming::Messages => {
                let mut out = Vec::with_capacity(12);
                self.udp_header(udp_type::INIT, 12, id, &mut out)?;
                Ok(out)
            }
        }
    }

    fn parse_confirmation(&self, buf: &[u8], id: AssociationId) -> Result<Parsed<()>, PeerError> {
        match self.dialect.udp {
            UdpFraming::Pre09 => super::draft05::Draft05.parse_confirmation(buf, id),
            UdpFraming::Messages => {
                let (ty, len, got) = match self.parse_udp_header(buf)? {
                    Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
                    Parsed::Complete { value, .. } => value,
                };
                if ty != udp_type::CONFIRM || len != 12 {
                    return Err(PeerError::Unexpected(
                        "expected a UDP association confirmation",
                    ));
                }
                if got != id {
                    return Err(PeerError::Unexpected(
                        "UDP association confirmation for another association",
                    ));
                }
                Ok(Parsed::Complete {
                    value: (),
                    consumed: 12,
                })
            }
        }
    }

    fn encode_confirmation(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError> {
        match self.dialect.udp {
            UdpFraming::Pre09 => Ok(vec![0x00]),
            UdpFraming::Messages => {
                let mut out = Vec::with_capacity(12);
                self.udp_header(udp_type::CONFIRM, 12, id, &mut out)?;
                Ok(out)
            }
        }
    }

    fn parse_datagram(
        &self,
        datagram: &[u8],
    ) -> Result<(DatagramHeader, std::ops::Range<usize>), PeerError> {
        match self.dialect.udp {
            UdpFraming::Pre09 => {
                if datagram.len() < 12 {
                    return Err(PeerError::Truncated);
                }
                self.check_version(datagram[0])?;
                let atyp = datagram[1];
                let port = be16(&datagram[2..]);
                let association = AssociationId(be64(&datagram[4..]));
                let (host, used) = incomplete(self.parse_addr(atyp, &datagram[12..])?)?;
                Ok((
                    DatagramHeader {
                        association,
                        target: TargetAddr { host, port },
                    },
                    12 + used..datagram.len(),
                ))
            }
            UdpFraming::Messages => {
                let ((ty, len, association), _) = incomplete(self.parse_udp_header(datagram)?)?;
                if ty != udp_type::DATAGRAM {
                    return Err(PeerError::Unexpected(
                        "a UDP message that is not a datagram",
                    ));
                }
                // Padding after the message is allowed; a message longer
                // than the datagram is not.
                if len > datagram.len() {
                    return Err(PeerError::Truncated);
                }
                let msg = &datagram[..len];
                if msg.len() < 16 {
                    return Err(PeerError::Truncated);
                }
                if msg[13] != 0 {
                    return Err(PeerError::BadFraming("padding is not zero"));
                }
                let port = be16(&msg[14..]);
                let (host, used) = incomplete(self.parse_addr(msg[12], &msg[16..])?)?;
                Ok((
                    DatagramHeader {
                        association,
                        target: TargetAddr { host, port },
                    },
                    16 + used..len,
                ))
            }
        }
    }

    fn datagram(&self, header: &DatagramHeader, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let t = &header.target;
        let mut addr = Vec::with_capacity(20);
        self.encode_addr(&t.host, &mut addr)?;
        let mut out = Vec::with_capacity(16 + addr.len() + payload.len());
        match self.dialect.udp {
            UdpFraming::Pre09 => {
                out.push(self.dialect.version);
                out.push(Self::atyp(&t.host));
                out.extend_from_slice(&t.port.to_be_bytes());
                out.extend_from_slice(&header.association.0.to_be_bytes());
            }
            UdpFraming::Messages => {
                let len = 16 + addr.len() + payload.len();
                self.udp_header(udp_type::DATAGRAM, len, header.association, &mut out)?;
                out.push(Self::atyp(&t.host));
                out.push(0);
                out.extend_from_slice(&t.port.to_be_bytes());
            }
        }
        out.extend_from_slice(&addr);
        out.extend_from_slice(payload);
        Ok(out)
    }

    fn datagrams_over_tcp(&self) -> bool {
        self.dialect.udp == UdpFraming::Messages
    }

    fn parse_stream_datagram(
        &self,
        buf: &[u8],
    ) -> Result<Parsed<(DatagramHeader, std::ops::Range<usize>)>, PeerError> {
        if self.dialect.udp != UdpFraming::Messages {
            return Err(PeerError::Unexpected(
                "datagrams over the TCP connection need -11's UDP messages",
            ));
        }
        let (ty, len, _) = match self.parse_udp_header(buf)? {
            Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
            Parsed::Complete { value, .. } => value,
        };
        if ty != udp_type::DATAGRAM {
            return Err(PeerError::Unexpected(
                "a UDP message on the TCP connection that is not a datagram",
            ));
        }
        need!(buf, len);
        let (header, payload) = self.parse_datagram(&buf[..len])?;
        Ok(Parsed::Complete {
            value: (header, payload),
            consumed: len,
        })
    }

    fn udp_error(&self, report: &UdpErrorReport) -> Result<Vec<u8>, EncodeError> {
        if self.dialect.udp != UdpFraming::Messages {
            return Err(EncodeError::BadOption(
                "UDP error messages are not in this SOCKS 6 profile",
            ));
        }
        let dest = Host::Ip(report.dest.ip());
        let reporter = Host::Ip(report.reporter);
        let mut addr = Vec::with_capacity(16);
        self.encode_addr(&dest, &mut addr)?;
        let mut raddr = Vec::with_capacity(16);
        self.encode_addr(&reporter, &mut raddr)?;
        let len = 12 + 4 + addr.len() + 4 + raddr.len();
        let mut out = Vec::with_capacity(len);
        self.udp_header(udp_type::ERROR, len, report.association, &mut out)?;
        out.push(Self::atyp(&dest));
        out.push(0);
        out.extend_from_slice(&report.dest.port().to_be_bytes());
        out.extend_from_slice(&addr);
        out.push(Self::atyp(&reporter));
        out.push(report.code.0);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&raddr);
        Ok(out)
    }

    fn parse_udp_error(&self, msg: &[u8]) -> Result<UdpErrorReport, PeerError> {
        let ((ty, len, association), _) = incomplete(self.parse_udp_header(msg)?)?;
        if ty != udp_type::ERROR {
            return Err(PeerError::Unexpected("a UDP message that is not an error"));
        }
        if len > msg.len() || len < 16 {
            return Err(PeerError::Truncated);
        }
        let msg = &msg[..len];
        if msg[13] != 0 {
            return Err(PeerError::BadFraming("padding is not zero"));
        }
        let port = be16(&msg[14..]);
        let ip_only = |h: Host| match h {
            Host::Ip(ip) => Ok(ip),
            Host::Domain(_) => Err(PeerError::UnknownAddressType(Atyp::DOMAIN.0)),
        };
        let (dest, used) = incomplete(self.parse_addr(msg[12], &msg[16..])?)?;
        let r = 16 + used;
        if msg.len() < r + 4 {
            return Err(PeerError::Truncated);
        }
        if msg[r + 2..r + 4] != [0, 0] {
            return Err(PeerError::BadFraming("padding is not zero"));
        }
        let (reporter, _) = incomplete(self.parse_addr(msg[r], &msg[r + 4..])?)?;
        Ok(UdpErrorReport {
            association,
            dest: std::net::SocketAddr::new(ip_only(dest)?, port),
            reporter: ip_only(reporter)?,
            code: UdpErrorCode(msg[r + 1]),
        })
    }
}

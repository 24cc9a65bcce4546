//! The draft -05 wire format.
//!
//! ```text
//! request          06 00 | CMD | PORT(2) | ATYP | ADDR | NOPTS | OPTIONS
//! version mismatch 06 00
//! auth reply       06 00 | TYPE | METHOD | NOPTS | OPTIONS
//! operation reply  REP | PORT(2) | ATYP | ADDR | NOPTS | OPTIONS
//! UDP assoc init   ASSOCIATION ID(4)
//! UDP confirmation 00
//! datagram header  06 00 | ASSOCIATION ID(4) | PORT(2) | ATYP | ADDR
//! option           KIND | LENGTH | DATA      (LENGTH counts all three)
//!   stack          01 | LEN | LEG(2 bits) LEVEL(6 bits) | CODE | DATA
//!   auth method    02 | LEN | INITIAL DATA LENGTH(2) | METHODS...
//!   auth data      03 | LEN | METHOD | DATA
//!   idempotence    04 | LEN | TYPE | DATA
//!   vendor         C0..FF | LEN | DATA
//! ```
//!
//! Addresses: ATYP `01` IPv4 (4 bytes), `03` domain (length byte, then the
//! name, no NUL), `04` IPv6 (16 bytes). Note the port comes *before* the
//! address type, unlike SOCKS5.

use crate::addr::MAX_DOMAIN;
use crate::parse::{need, Parsed};
use crate::reply::V6Code;
use crate::secret::Password;
use crate::v5::Method;
use crate::{Command, EncodeError, Host, PeerError, TargetAddr};

use super::messages::{
    AssociationId, AuthOutcome, AuthReply, DatagramHeader, OperationReply, Request,
};
use super::options::{
    level, AuthDataOption, AuthMethodOption, ExpenditureCode, IdempotenceOption, Leg,
    MptcpScheduler, Options, Socks6Option, StackOption, StackValue,
};
use super::{
    Codec, Layout, OptionsLength, Profile, ReplyCodes, Socks6Limits, REF_VERSION, VERSION,
};
use crate::ReplyCode;

/// The minor version byte of -05.
pub const MINOR: u8 = 0x00;

/// Longest request header before the options: version (2), command,
/// port (2), ATYP, a 255-byte domain with its length byte, NOPTS.
pub const MAX_REQUEST_HEADER: usize = 2 + 1 + 2 + 1 + 1 + MAX_DOMAIN + 1;

/// Most initial data a CONNECT may declare (the draft's 2^13).
pub const MAX_INITIAL_DATA: usize = 1 << 13;

/// Width of a UDP association id.
pub const ASSOCIATION_ID_LEN: usize = 4;

/// Longest option (its length is one byte and counts the whole option).
pub const MAX_OPTION_LEN: usize = u8::MAX as usize;

/// Longest RFC 1929 request inside an authentication data option: the
/// option's 255 bytes less kind, length and method.
pub const MAX_USERPASS_AUTH_DATA: usize = MAX_OPTION_LEN - 3;

/// The -05 wire format's sizes and widths.
pub const LAYOUT: Layout = Layout {
    version: &[VERSION, MINOR],
    max_request_header: MAX_REQUEST_HEADER,
    options_length_width: 1,
    options_length_counts: OptionsLength::Options,
    option_kind_width: 1,
    option_length_width: 1,
    max_option_len: MAX_OPTION_LEN,
    alignment: 1,
    association_id_width: ASSOCIATION_ID_LEN,
    max_initial_data: MAX_INITIAL_DATA,
    max_userpass_auth_data: MAX_USERPASS_AUTH_DATA,
    sessions: false,
};

/// -05's operation reply codes: SOCKS5's `00`–`08` plus `09` "connection
/// attempt timed out". `TtlExpired` is what sixsocks reports for a connect
/// attempt that timed out, so it is sent as `09` (and `06` still reads as
/// it); Tor's extended codes do not exist in SOCKS 6 and fall back to `04`
/// host unreachable (`F0`–`F7` read as unknown codes).
pub const REPLY_CODES: ReplyCodes = ReplyCodes {
    rows: &[
        (ReplyCode::Succeeded, V6Code(0x00)),
        (ReplyCode::GeneralFailure, V6Code(0x01)),
        (ReplyCode::NotAllowed, V6Code(0x02)),
        (ReplyCode::NetworkUnreachable, V6Code(0x03)),
        (ReplyCode::HostUnreachable, V6Code(0x04)),
        (ReplyCode::ConnectionRefused, V6Code(0x05)),
        (ReplyCode::TtlExpired, V6Code(0x09)),
        (ReplyCode::TtlExpired, V6Code(0x06)),
        (ReplyCode::CommandNotSupported, V6Code(0x07)),
        (ReplyCode::AddressTypeNotSupported, V6Code(0x08)),
    ],
    fallback: ReplyCode::HostUnreachable,
};

/// Option kinds.
pub mod kind {
    pub const STACK: u8 = 0x01;
    pub const AUTH_METHOD: u8 = 0x02;
    pub const AUTH_DATA: u8 = 0x03;
    pub const IDEMPOTENCE: u8 = 0x04;
    /// First kind of the vendor-specific range `C0`–`FF`.
    pub const VENDOR_FIRST: u8 = 0xC0;
}

/// Idempotence option types.
pub mod idem {
    pub const TOKEN_REQUEST: u8 = 0x00;
    pub const WINDOW_ADVERTISEMENT: u8 = 0x01;
    pub const EXPENDITURE: u8 = 0x02;
    pub const EXPENDITURE_REPLY: u8 = 0x03;
}

/// Authentication reply types.
pub mod auth_type {
    pub const SUCCESS: u8 = 0x00;
    pub const FURTHER_AUTH: u8 = 0x01;
}

/// The -05 codec (a unit type; see [`Codec`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Draft05;

// ------------------------------------------------------------ addresses

/// Parse `PORT(2) | ATYP | ADDR` from the start of `buf`.
pub fn parse_port_addr(buf: &[u8]) -> Result<Parsed<TargetAddr>, PeerError> {
    need!(buf, 3);
    let port = u16::from_be_bytes([buf[0], buf[1]]);
    Ok(Host::parse_atyp(&buf[2..], 0)?
        .map(|host| TargetAddr { host, port })
        .map_consumed(2))
}

/// Append `PORT(2) | ATYP | ADDR` (nothing on error).
pub fn encode_port_addr(t: &TargetAddr, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&t.port.to_be_bytes());
    t.host.encode_atyp(out).inspect_err(|_| out.truncate(start))
}

// ------------------------------------------------------------ options

/// Parse `nopts` options from the start of `buf` (a stream: running out of
/// input is `Incomplete`). Enforces the limits before asking for bytes: the
/// count against `max_options`, each option's end against
/// `max_options_bytes`.
pub fn parse_options(
    buf: &[u8],
    nopts: usize,
    limits: &Socks6Limits,
) -> Result<Parsed<Options>, PeerError> {
    if nopts > limits.max_options {
        return Err(PeerError::TooManyOptions(limits.max_options));
    }
    let mut out = Vec::with_capacity(nopts);
    let mut off = 0usize;
    for _ in 0..nopts {
        need!(buf, off + 2);
        let len = buf[off + 1] as usize;
        if len < 2 {
            return Err(PeerError::BadOption("length below 2"));
        }
        if off + len > limits.max_options_bytes {
            return Err(PeerError::OptionsTooLong(limits.max_options_bytes));
        }
        need!(buf, off + len);
        out.push(decode_option(buf[off], &buf[off + 2..off + len])?);
        off += len;
    }
    Ok(Parsed::Complete {
        value: Options(out),
        consumed: off,
    })
}

/// Parse exactly `nopts` options that must fill `area` (an options area of
/// known size, as later profiles have): an option running past the area, or
/// bytes left over, is an error.
pub fn parse_options_area(
    area: &[u8],
    nopts: usize,
    limits: &Socks6Limits,
) -> Result<Options, PeerError> {
    if area.len() > limits.max_options_bytes {
        return Err(PeerError::OptionsTooLong(limits.max_options_bytes));
    }
    match parse_options(area, nopts, limits)? {
        Parsed::Complete { value, consumed } if consumed == area.len() => Ok(value),
        Parsed::Complete { .. } => Err(PeerError::BadOption(
            "bytes left over after the last option",
        )),
        Parsed::Incomplete { .. } => Err(PeerError::BadOption(
            "option length runs past the options area",
        )),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decode one option's data (after KIND and LENGTH).
pub fn decode_option(kind: u8, data: &[u8]) -> Result<Socks6Option, PeerError> {
    Ok(match kind {
        kind::STACK => decode_stack(data),
        kind::AUTH_METHOD => {
            if data.len() < 2 {
                return Err(PeerError::BadOption(
                    "authentication method option without initial data length",
                ));
            }
            let initial_data_len = u16::from_be_bytes([data[0], data[1]]);
            if initial_data_len as usize > MAX_INITIAL_DATA {
                return Err(PeerError::InitialDataTooLong(initial_data_len as usize));
            }
            Socks6Option::AuthMethod(AuthMethodOption {
                initial_data_len,
                methods: data[2..].iter().map(|&m| Method(m)).collect(),
            })
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
        kind::IDEMPOTENCE => decode_idempotence(data)?,
        k if k >= kind::VENDOR_FIRST => Socks6Option::Vendor {
            kind: k as u16,
            data: data.to_vec(),
        },
        k => Socks6Option::Unknown {
            kind: k as u16,
            data: data.to_vec(),
        },
    })
}

/// A stack option's data: leg and level, code, value (an unknown or
/// wrongly sized value is kept raw and ignored).
fn decode_stack(data: &[u8]) -> Socks6Option {
    if data.len() < 2 {
        // Not even a leg/level and a code: ignore it.
        return Socks6Option::Unknown {
            kind: kind::STACK as u16,
            data: data.to_vec(),
        };
    }
    let leg = Leg(data[0] >> 6);
    let lvl = data[0] & 0x3F;
    let code = data[1];
    let rest = &data[2..];
    let value = match (lvl, code, rest.len()) {
        (level::IP, 0x01, 1) => StackValue::Tos(rest[0]),
        (level::TCP, 0x01, 2) => StackValue::TcpFastOpen {
            payload_size: u16::from_be_bytes([rest[0], rest[1]]),
        },
        (level::TCP, 0x02, 0) => StackValue::Mptcp,
        (level::TCP, 0x03, 1) => StackValue::MptcpScheduler(MptcpScheduler(rest[0])),
        (level::TCP, 0x04, 2) => StackValue::ListenBacklog(u16::from_be_bytes([rest[0], rest[1]])),
        _ => StackValue::Unknown {
            level: lvl,
            code,
            data: rest.to_vec(),
        },
    };
    Socks6Option::Stack(StackOption { leg, value })
}

/// An idempotence option's data: type and value, its length checked for
/// the types -05 defines.
fn decode_idempotence(data: &[u8]) -> Result<Socks6Option, PeerError> {
    let Some((&ty, rest)) = data.split_first() else {
        return Err(PeerError::BadOption("idempotence option without a type"));
    };
    let want = match ty {
        idem::TOKEN_REQUEST | idem::EXPENDITURE => Some(4),
        idem::WINDOW_ADVERTISEMENT => Some(8),
        idem::EXPENDITURE_REPLY => Some(1),
        _ => None,
    };
    if let Some(w) = want {
        if rest.len() != w {
            return Err(PeerError::BadOption(
                "idempotence option of the wrong length for its type",
            ));
        }
    }
    Ok(Socks6Option::Idempotence(match ty {
        idem::TOKEN_REQUEST => IdempotenceOption::TokenRequest {
            window_size: be32(rest),
        },
        idem::WINDOW_ADVERTISEMENT => IdempotenceOption::WindowAdvertisement {
            base: be32(rest),
            size: be32(&rest[4..]),
        },
        idem::EXPENDITURE => IdempotenceOption::Expenditure { token: be32(rest) },
        idem::EXPENDITURE_REPLY => IdempotenceOption::ExpenditureReply(ExpenditureCode(rest[0])),
        t => IdempotenceOption::Unknown {
            kind: t,
            data: rest.to_vec(),
        },
    }))
}

/// A stack value's `(level, code)` in -05, or `None` for a value -05 does
/// not have (the later drafts' Happy Eyeballs, TTL, …, "MPTCP off").
pub fn level_code(v: &StackValue) -> Option<(u8, u8)> {
    Some(match v {
        StackValue::Tos(_) => (level::IP, 0x01),
        StackValue::TcpFastOpen { .. } => (level::TCP, 0x01),
        StackValue::Mptcp => (level::TCP, 0x02),
        StackValue::MptcpScheduler(_) => (level::TCP, 0x03),
        StackValue::ListenBacklog(_) => (level::TCP, 0x04),
        StackValue::Unknown { level, code, .. } => (*level, *code),
        StackValue::HappyEyeballs(_)
        | StackValue::Ttl(_)
        | StackValue::NoFragment(_)
        | StackValue::MptcpOff
        | StackValue::UdpError(_)
        | StackValue::PortParity { .. } => return None,
    })
}

/// Append one option (`KIND | LENGTH | DATA`). An option longer than 255
/// bytes, a kind above `FF`, a vendor kind outside `C0`–`FF`, a leg above 3
/// or a level above 63 cannot be encoded.
pub fn encode_option(o: &Socks6Option, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let kind = match o {
        Socks6Option::Stack(s) => {
            let Some((lvl, code)) = level_code(&s.value) else {
                out.truncate(start);
                return Err(EncodeError::BadOption("stack option not in draft -05"));
            };
            if s.leg.0 > 3 {
                out.truncate(start);
                return Err(EncodeError::TooLong("stack option leg above 3"));
            }
            if lvl > 0x3F {
                out.truncate(start);
                return Err(EncodeError::TooLong("stack option level above 63"));
            }
            out.push((s.leg.0 << 6) | lvl);
            out.push(code);
            match &s.value {
                StackValue::Tos(t) => out.push(*t),
                StackValue::TcpFastOpen { payload_size } => {
                    out.extend_from_slice(&payload_size.to_be_bytes())
                }
                StackValue::Mptcp => {}
                StackValue::MptcpScheduler(m) => out.push(m.0),
                StackValue::ListenBacklog(b) => out.extend_from_slice(&b.to_be_bytes()),
                StackValue::Unknown { data, .. } => out.extend_from_slice(data),
                StackValue::HappyEyeballs(_)
                | StackValue::Ttl(_)
                | StackValue::NoFragment(_)
                | StackValue::MptcpOff
                | StackValue::UdpError(_)
                | StackValue::PortParity { .. } => {}
            }
            kind::STACK
        }
        Socks6Option::AuthMethod(a) => {
            if a.initial_data_len as usize > MAX_INITIAL_DATA {
                out.truncate(start);
                return Err(EncodeError::InitialDataTooLong(a.initial_data_len as usize));
            }
            out.extend_from_slice(&a.initial_data_len.to_be_bytes());
            out.extend(a.methods.iter().map(|m| m.0));
            kind::AUTH_METHOD
        }
        Socks6Option::AuthData(d) => {
            out.push(d.method.0);
            out.extend_from_slice(d.data.expose());
            kind::AUTH_DATA
        }
        Socks6Option::Idempotence(i) => {
            match i {
                IdempotenceOption::TokenRequest { window_size } => {
                    out.push(idem::TOKEN_REQUEST);
                    out.extend_from_slice(&window_size.to_be_bytes());
                }
                IdempotenceOption::WindowAdvertisement { base, size } => {
                    out.push(idem::WINDOW_ADVERTISEMENT);
                    out.extend_from_slice(&base.to_be_bytes());
                    out.extend_from_slice(&size.to_be_bytes());
                }
                IdempotenceOption::Expenditure { token } => {
                    out.push(idem::EXPENDITURE);
                    out.extend_from_slice(&token.to_be_bytes());
                }
                IdempotenceOption::ExpenditureReply(c) => {
                    out.push(idem::EXPENDITURE_REPLY);
                    out.push(c.0);
                }
                IdempotenceOption::Unknown { kind, data } => {
                    out.push(*kind);
                    out.extend_from_slice(data);
                }
            }
            kind::IDEMPOTENCE
        }
        Socks6Option::AuthSelect(_) | Socks6Option::Session(_) => {
            out.truncate(start);
            return Err(EncodeError::BadOption(
                "sessions and method selection are not in draft -05",
            ));
        }
        Socks6Option::Vendor { kind, data } => {
            let Ok(k) = u8::try_from(*kind) else {
                out.truncate(start);
                return Err(EncodeError::TooLong("option kind above 0xff"));
            };
            if k < kind::VENDOR_FIRST {
                out.truncate(start);
                return Err(EncodeError::BadOption("vendor kind outside C0-FF"));
            }
            out.extend_from_slice(data);
            k
        }
        Socks6Option::Unknown { kind, data } => {
            let Ok(k) = u8::try_from(*kind) else {
                out.truncate(start);
                return Err(EncodeError::TooLong("option kind above 0xff"));
            };
            out.extend_from_slice(data);
            k
        }
    };
    let len = out.len() - start;
    let Ok(len8) = u8::try_from(len) else {
        out.truncate(start);
        return Err(EncodeError::TooLong("option longer than 255 bytes"));
    };
    out[start] = kind;
    out[start + 1] = len8;
    Ok(())
}

/// Append `NOPTS | OPTIONS`.
pub fn encode_options(opts: &Options, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let Ok(n) = u8::try_from(opts.len()) else {
        return Err(EncodeError::TooLong("more than 255 options"));
    };
    out.push(n);
    for o in opts {
        encode_option(o, out)?;
    }
    Ok(())
}

/// The username/password authentication data option (the RFC 1929 request
/// inside, at most [`MAX_USERPASS_AUTH_DATA`] = 252 bytes so that the option
/// fits its length byte).
pub fn userpass_auth_data(
    username: &[u8],
    password: &Password,
) -> Result<AuthDataOption, EncodeError> {
    let msg = crate::userpass::Request {
        username: username.to_vec(),
        password: password.clone(),
    }
    .encode()?;
    if msg.len() > MAX_USERPASS_AUTH_DATA {
        return Err(EncodeError::TooLong(
            "username/password over 252 bytes for an authentication data option",
        ));
    }
    Ok(AuthDataOption {
        method: Method::USERPASS,
        data: Password::new(msg),
    })
}

// ------------------------------------------------------------ messages

fn check_version(buf: &[u8]) -> Result<Option<Parsed<()>>, PeerError> {
    if buf.is_empty() {
        return Ok(Some(Parsed::Incomplete { needed: 2 }));
    }
    match buf[0] {
        VERSION => {}
        REF_VERSION => return Err(PeerError::VersionMismatch),
        b => return Err(PeerError::UnknownVersion(b)),
    }
    if buf.len() < 2 {
        return Ok(Some(Parsed::Incomplete { needed: 1 }));
    }
    if buf[1] != MINOR {
        return Err(PeerError::VersionMismatch);
    }
    Ok(None)
}

impl Codec for Draft05 {
    fn profile(&self) -> Profile {
        Profile::Draft05
    }

    fn name(&self) -> &'static str {
        "socks6-draft05"
    }

    fn layout(&self) -> &'static Layout {
        &LAYOUT
    }

    fn reply_codes(&self) -> &'static ReplyCodes {
        &REPLY_CODES
    }

    fn userpass_auth_data(
        &self,
        username: &[u8],
        password: &Password,
    ) -> Result<AuthDataOption, EncodeError> {
        userpass_auth_data(username, password)
    }

    fn parse_request(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<Request>, PeerError> {
        if let Some(Parsed::Incomplete { needed }) = check_version(buf)? {
            return Ok(Parsed::Incomplete { needed });
        }
        need!(buf, 3);
        let command = Command(buf[2]);
        let (target, alen) = match parse_port_addr(&buf[3..])? {
            Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
            Parsed::Complete { value, consumed } => (value, consumed),
        };
        let off = 3 + alen;
        need!(buf, off + 1);
        let nopts = buf[off] as usize;
        match parse_options(&buf[off + 1..], nopts, limits)? {
            Parsed::Incomplete { needed } => Ok(Parsed::Incomplete { needed }),
            Parsed::Complete { value, consumed } => Ok(Parsed::Complete {
                value: Request {
                    command,
                    target,
                    options: value,
                },
                consumed: off + 1 + consumed,
            }),
        }
    }

    fn encode_request(&self, req: &Request) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![VERSION, MINOR, req.command.0];
        encode_port_addr(&req.target, &mut out)?;
        encode_options(&req.options, &mut out)?;
        Ok(out)
    }

    fn version_mismatch_reply(&self) -> Vec<u8> {
        vec![VERSION, MINOR]
    }

    fn is_version_mismatch(&self, buf: &[u8], eof: bool) -> bool {
        match buf {
            [REF_VERSION, ..] => true,
            [VERSION, b, ..] if *b != MINOR => true,
            [VERSION] | [VERSION, MINOR] => eof,
            _ => false,
        }
    }

    fn parse_auth_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<AuthReply>, PeerError> {
        if !buf.is_empty() && buf[0] != VERSION && buf[0] != REF_VERSION {
            return Err(PeerError::BadReplyVersion(buf[0]));
        }
        if let Some(Parsed::Incomplete { needed }) = check_version(buf)? {
            return Ok(Parsed::Incomplete { needed: needed + 3 });
        }
        need!(buf, 5);
        let outcome = match (buf[2], Method(buf[3])) {
            (auth_type::SUCCESS, m) => AuthOutcome::Success(m),
            (auth_type::FURTHER_AUTH, Method::NO_ACCEPTABLE) => AuthOutcome::Failure,
            (auth_type::FURTHER_AUTH, m) => AuthOutcome::Continue(m),
            (t, _) => return Err(PeerError::BadAuthReplyType(t)),
        };
        let nopts = buf[4] as usize;
        Ok(parse_options(&buf[5..], nopts, limits)?
            .map(|options| AuthReply { outcome, options })
            .map_consumed(5))
    }

    fn encode_auth_reply(&self, reply: &AuthReply) -> Result<Vec<u8>, EncodeError> {
        let (ty, method) = match reply.outcome {
            AuthOutcome::Success(m) => (auth_type::SUCCESS, m),
            AuthOutcome::Continue(m) => (auth_type::FURTHER_AUTH, m),
            AuthOutcome::Failure => (auth_type::FURTHER_AUTH, Method::NO_ACCEPTABLE),
        };
        let mut out = vec![VERSION, MINOR, ty, method.0];
        encode_options(&reply.options, &mut out)?;
        Ok(out)
    }

    fn parse_operation_reply(
        &self,
        buf: &[u8],
        limits: &Socks6Limits,
    ) -> Result<Parsed<OperationReply>, PeerError> {
        need!(buf, 1);
        let rep = V6Code(buf[0]);
        let (bound, alen) = match parse_port_addr(&buf[1..])? {
            Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
            Parsed::Complete { value, consumed } => (value, consumed),
        };
        let off = 1 + alen;
        need!(buf, off + 1);
        let nopts = buf[off] as usize;
        Ok(parse_options(&buf[off + 1..], nopts, limits)?
            .map(|options| OperationReply {
                profile: Profile::Draft05,
                rep,
                bound,
                options,
            })
            .map_consumed(off + 1))
    }

    fn encode_operation_reply(&self, reply: &OperationReply) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![reply.rep.0];
        encode_port_addr(&reply.bound, &mut out)?;
        encode_options(&reply.options, &mut out)?;
        Ok(out)
    }

    fn parse_association_id(&self, buf: &[u8]) -> Result<Parsed<AssociationId>, PeerError> {
        need!(buf, ASSOCIATION_ID_LEN);
        Ok(Parsed::Complete {
            value: AssociationId(be32(buf) as u64),
            consumed: ASSOCIATION_ID_LEN,
        })
    }

    fn encode_association_id(&self, id: AssociationId) -> Result<Vec<u8>, EncodeError> {
        let Ok(id) = u32::try_from(id.0) else {
            return Err(EncodeError::TooLong("association id above 2^32 - 1"));
        };
        Ok(id.to_be_bytes().to_vec())
    }

    fn parse_confirmation(&self, buf: &[u8], _id: AssociationId) -> Result<Parsed<()>, PeerError> {
        need!(buf, 1);
        if buf[0] != 0 {
            return Err(PeerError::Unexpected(
                "UDP association confirmation status is not 00",
            ));
        }
        Ok(Parsed::Complete {
            value: (),
            consumed: 1,
        })
    }

    fn encode_confirmation(&self, _id: AssociationId) -> Result<Vec<u8>, EncodeError> {
        Ok(vec![0x00])
    }

    fn encode_option(&self, o: &Socks6Option, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_option(o, out)
    }

    fn parse_datagram(
        &self,
        datagram: &[u8],
    ) -> Result<(DatagramHeader, std::ops::Range<usize>), PeerError> {
        if datagram.len() < 2 {
            return Err(PeerError::Truncated);
        }
        if datagram[0] != VERSION {
            return Err(PeerError::UnknownVersion(datagram[0]));
        }
        if datagram[1] != MINOR {
            return Err(PeerError::VersionMismatch);
        }
        if datagram.len() < 6 {
            return Err(PeerError::Truncated);
        }
        let association = AssociationId(be32(&datagram[2..]) as u64);
        match parse_port_addr(&datagram[6..])? {
            Parsed::Complete { value, consumed } => Ok((
                DatagramHeader {
                    association,
                    target: value,
                },
                6 + consumed..datagram.len(),
            )),
            Parsed::Incomplete { .. } => Err(PeerError::Truncated),
        }
    }

    fn datagram(&self, header: &DatagramHeader, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(32 + payload.len());
        self.encode_datagram_header(header, &mut out)?;
        out.extend_from_slice(payload);
        Ok(out)
    }
}

impl Draft05 {
    /// Append a datagram header (the payload follows it unframed).
    pub fn encode_datagram_header(
        &self,
        header: &DatagramHeader,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let id = self.encode_association_id(header.association)?;
        let start = out.len();
        out.extend_from_slice(&[VERSION, MINOR]);
        out.extend_from_slice(&id);
        if let Err(e) = encode_port_addr(&header.target, out) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Socks6Limits {
        Socks6Limits::default()
    }

    #[test]
    fn stack_option_lengths_are_computed_from_the_fields() {
        let cases: &[(StackValue, u8)] = &[
            (StackValue::Tos(0x10), 5),
            (StackValue::TcpFastOpen { payload_size: 1400 }, 6),
            (StackValue::Mptcp, 4),
            (StackValue::MptcpScheduler(MptcpScheduler::REDUNDANT), 5),
            (StackValue::ListenBacklog(16), 6),
        ];
        for (v, len) in cases {
            let mut out = Vec::new();
            encode_option(
                &Socks6Option::Stack(StackOption::new(Leg::PROXY_REMOTE, v.clone())),
                &mut out,
            )
            .unwrap();
            assert_eq!(out[1], *len, "{v:?}");
            assert_eq!(out.len(), *len as usize);
        }
    }

    #[test]
    fn tos_is_at_level_ip_and_leg_in_the_high_bits() {
        let mut out = Vec::new();
        encode_option(
            &StackOption::new(Leg::BOTH, StackValue::Tos(0xB8)).into(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0x01, 5, 0b11 << 6 | level::IP, 0x01, 0xB8]);
    }

    #[test]
    fn port_comes_before_the_address_type() {
        let mut out = Vec::new();
        encode_port_addr(&TargetAddr::domain("ab", 0x1234), &mut out).unwrap();
        assert_eq!(out, [0x12, 0x34, 0x03, 2, b'a', b'b']);
    }

    #[test]
    fn option_length_zero_or_one_is_an_error() {
        for len in [0u8, 1] {
            let buf = [0x01, len, 0, 0, 0, 0];
            assert_eq!(
                parse_options(&buf, 1, &limits()),
                Err(PeerError::BadOption("length below 2"))
            );
        }
    }

    #[test]
    fn option_area_overrun_is_an_error() {
        // An option of length 9 in an area of 6 bytes.
        let area = [0xC5, 9, 1, 2, 3, 4];
        assert!(matches!(
            parse_options_area(&area, 1, &limits()),
            Err(PeerError::BadOption(_))
        ));
        // Left-over bytes.
        let area = [0xC5, 2, 0xAA];
        assert!(parse_options_area(&area, 1, &limits()).is_err());
        // Exact.
        let area = [0xC5, 3, 0xAA];
        assert_eq!(parse_options_area(&area, 1, &limits()).unwrap().len(), 1);
    }

    #[test]
    fn encode_refuses_what_cannot_be_framed() {
        let mut out = vec![0xEE];
        let big = Socks6Option::Vendor {
            kind: 0xC0,
            data: vec![0; 254],
        };
        assert!(encode_option(&big, &mut out).is_err());
        assert_eq!(out, [0xEE], "nothing half-written");
        let low_vendor = Socks6Option::Vendor {
            kind: 0x10,
            data: vec![],
        };
        assert!(encode_option(&low_vendor, &mut out).is_err());
        let wide = Socks6Option::Unknown {
            kind: 0x100,
            data: vec![],
        };
        assert!(encode_option(&wide, &mut out).is_err());
        let leg = Socks6Option::Stack(StackOption::new(Leg(4), StackValue::Mptcp));
        assert!(encode_option(&leg, &mut out).is_err());
        assert_eq!(out, [0xEE]);
    }

    #[test]
    fn userpass_auth_data_is_capped_at_252_bytes() {
        // 3 + 124 + 125 = 252: fits.
        let ok = userpass_auth_data(&[b'u'; 124], &Password::new(vec![b'p'; 125])).unwrap();
        let mut out = Vec::new();
        encode_option(&ok.into(), &mut out).unwrap();
        assert_eq!(out.len(), 255);
        // One more byte does not.
        assert!(userpass_auth_data(&[b'u'; 125], &Password::new(vec![b'p'; 125])).is_err());
    }

    #[test]
    fn version_mismatch_is_recognised_leniently() {
        let c = Draft05;
        assert!(c.is_version_mismatch(&[6], true));
        assert!(c.is_version_mismatch(&[6, 0], true));
        assert!(!c.is_version_mismatch(&[6, 0], false));
        assert!(!c.is_version_mismatch(&[6], false));
        assert!(c.is_version_mismatch(&[6, 1], false));
        assert!(c.is_version_mismatch(&[0xCF], false));
        assert!(!c.is_version_mismatch(&[6, 0, 0], true));
        assert!(!c.is_version_mismatch(&[5, 0], true));
        assert!(!c.is_version_mismatch(&[], true));
    }
}

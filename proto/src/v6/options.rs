//! SOCKS 6 options as typed values, independent of any wire profile.
//!
//! These are the *semantic* options: what a stack option asks for, which
//! authentication methods a client offers, what a token request says, the
//! session a request belongs to. How they are framed (`KIND(1) LEN(1)` in
//! draft -05, `KIND(2) LEN(2)` padded to 4 bytes in -11 and the reference
//! dialect), and which of them a profile can carry at all, is the business
//! of a [`Codec`](super::Codec): a codec refuses to encode an option its
//! profile lacks ([`Codec::can_encode`](super::Codec::can_encode) tells
//! beforehand), and decodes what it does not know as
//! [`Socks6Option::Unknown`].
//!
//! Options a codec does not understand survive as [`Socks6Option::Unknown`]
//! (and vendor options as [`Socks6Option::Vendor`]) with their raw data, so
//! they can be ignored — as the draft requires — or re-encoded unchanged.

use crate::secret::Password;
use crate::v5::Method;

/// Which connection a stack option applies to (2 bits on the wire).
///
/// An open newtype: bit 0 is the client–proxy leg, bit 1 the proxy–remote
/// leg. `0` applies to no leg (the draft does not define it); it survives
/// parsing and is simply never applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Leg(pub u8);

impl Leg {
    pub const CLIENT_PROXY: Leg = Leg(1);
    pub const PROXY_REMOTE: Leg = Leg(2);
    pub const BOTH: Leg = Leg(3);

    /// Whether an option with this leg applies to `other` (a single leg).
    pub fn covers(self, other: Leg) -> bool {
        self.0 & other.0 & 0b11 != 0
    }
    pub fn client_proxy(self) -> bool {
        self.covers(Leg::CLIENT_PROXY)
    }
    pub fn proxy_remote(self) -> bool {
        self.covers(Leg::PROXY_REMOTE)
    }
}

/// Stack option levels (6 bits on the wire).
pub mod level {
    pub const IP: u8 = 0x01;
    pub const IPV4: u8 = 0x02;
    pub const IPV6: u8 = 0x03;
    pub const TCP: u8 = 0x04;
    pub const UDP: u8 = 0x05;
}

/// MPTCP scheduler values (an open newtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MptcpScheduler(pub u8);

impl MptcpScheduler {
    pub const DEFAULT: MptcpScheduler = MptcpScheduler(0x01);
    pub const ROUND_ROBIN: MptcpScheduler = MptcpScheduler(0x02);
    pub const REDUNDANT: MptcpScheduler = MptcpScheduler(0x03);
}

/// UDP port parity values of -11's port parity option (an open newtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Parity(pub u8);

impl Parity {
    pub const ANY: Parity = Parity(0x00);
    pub const EVEN: Parity = Parity(0x01);
    pub const ODD: Parity = Parity(0x02);
}

/// What a stack option says. The level/code pairs are each profile's
/// (see the codecs); the comments give -11's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StackValue {
    /// IP TOS (level IP, code 1): the TOS byte to use (or in use).
    Tos(u8),
    /// Happy Eyeballs (-11: level IP, code 2; proxy–remote): desired
    /// (client) or attempted (proxy).
    HappyEyeballs(bool),
    /// IP TTL / hop limit (-11: level IP, code 3; not in the reference
    /// dialect).
    Ttl(u8),
    /// No fragmentation (-11: level IP, code 4; not in the reference
    /// dialect): `true` = fragmentation not desired (client) / avoidance
    /// enforced (proxy, the DF bit on IPv4).
    NoFragment(bool),
    /// TCP Fast Open (level TCP, code 1): the desired SYN payload size
    /// (0: any; ignored for BIND).
    TcpFastOpen { payload_size: u16 },
    /// Multipath TCP (level TCP, code 2): the proxy–remote connection is
    /// (or should be) MPTCP. -05 has only this form (the option's presence).
    Mptcp,
    /// Multipath TCP not desired (client) or not available (proxy): -11
    /// and the reference dialect (whose values are the reverse of -11's
    /// text; the codecs handle that).
    MptcpOff,
    /// MPTCP scheduler (-05 only: level TCP, code 3).
    MptcpScheduler(MptcpScheduler),
    /// TCP listen backlog (-05: level TCP, code 4; -11: code 3), for BIND.
    ListenBacklog(u16),
    /// UDP error reporting (-11: level UDP, code 1; not in the reference
    /// dialect): ICMP errors relayed to the client.
    UdpError(bool),
    /// UDP port parity (-11: level UDP, code 2; not in the reference
    /// dialect), with whether the counterpart port is reserved.
    PortParity { parity: Parity, reserve: bool },
    /// A level/code pair this crate does not know, or a known one whose
    /// data does not have the size the draft gives it. Ignored by both
    /// machines, re-encoded unchanged.
    Unknown { level: u8, code: u8, data: Vec<u8> },
}

/// A stack option: a leg and a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StackOption {
    pub leg: Leg,
    pub value: StackValue,
}

impl StackOption {
    pub fn new(leg: Leg, value: StackValue) -> Self {
        StackOption { leg, value }
    }
}

/// The typed stack options that apply to one leg, first occurrence of each
/// kind (the draft forbids contradictory stack options in one message; when
/// a client sends them anyway, the first one counts).
///
/// The proxy reads what a client asked for with [`Options::stack_requests`]
/// and reports what it actually applied with [`StackRequests::to_options`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackRequests {
    pub tos: Option<u8>,
    pub happy_eyeballs: Option<bool>,
    pub ttl: Option<u8>,
    pub no_fragment: Option<bool>,
    /// TCP Fast Open, with the desired SYN payload size.
    pub tfo: Option<u16>,
    /// MPTCP desired (`Some(true)`), not desired (`Some(false)`), or not
    /// asked about.
    pub mptcp: Option<bool>,
    pub mptcp_scheduler: Option<MptcpScheduler>,
    pub listen_backlog: Option<u16>,
    pub udp_error: Option<bool>,
    pub port_parity: Option<(Parity, bool)>,
}

impl StackRequests {
    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        *self == StackRequests::default()
    }

    /// These values as stack options on `leg` (for an operation reply).
    pub fn to_options(&self, leg: Leg) -> Vec<Socks6Option> {
        let mut out = Vec::new();
        let mut push = |v| out.push(Socks6Option::Stack(StackOption::new(leg, v)));
        if let Some(t) = self.tos {
            push(StackValue::Tos(t));
        }
        if let Some(h) = self.happy_eyeballs {
            push(StackValue::HappyEyeballs(h));
        }
        if let Some(t) = self.ttl {
            push(StackValue::Ttl(t));
        }
        if let Some(d) = self.no_fragment {
            push(StackValue::NoFragment(d));
        }
        if let Some(p) = self.tfo {
            push(StackValue::TcpFastOpen { payload_size: p });
        }
        match self.mptcp {
            Some(true) => push(StackValue::Mptcp),
            Some(false) => push(StackValue::MptcpOff),
            None => {}
        }
        if let Some(s) = self.mptcp_scheduler {
            push(StackValue::MptcpScheduler(s));
        }
        if let Some(b) = self.listen_backlog {
            push(StackValue::ListenBacklog(b));
        }
        if let Some(u) = self.udp_error {
            push(StackValue::UdpError(u));
        }
        if let Some((parity, reserve)) = self.port_parity {
            push(StackValue::PortParity { parity, reserve });
        }
        out
    }
}

/// Authentication method advertisement (-05 kind 02).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthMethodOption {
    /// For CONNECT: the number of bytes of initial data that follow the
    /// request (at most [`MAX_INITIAL_DATA`](super::MAX_INITIAL_DATA)).
    pub initial_data_len: u16,
    /// The methods offered (clients should not list `00`; it is always
    /// acceptable).
    pub methods: Vec<Method>,
}

/// Method-specific authentication data (-05 kind 03). The data is a secret
/// (for username/password it holds the RFC 1929 request), so it is kept in
/// a [`Password`]: zeroed on drop, never printed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthDataOption {
    pub method: Method,
    pub data: Password,
}

/// Expenditure reply codes (an open newtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExpenditureCode(pub u8);

impl ExpenditureCode {
    pub const SUCCESS: ExpenditureCode = ExpenditureCode(0x01);
    pub const NO_WINDOW: ExpenditureCode = ExpenditureCode(0x02);
    pub const OUT_OF_WINDOW: ExpenditureCode = ExpenditureCode(0x03);
    pub const DUPLICATE: ExpenditureCode = ExpenditureCode(0x04);
    /// -11's "Idempotence Rejected" (kind 15), which does not say why. The
    /// -11 codecs send every code but success as it and read it as this.
    pub const REJECTED: ExpenditureCode = ExpenditureCode(0xFF);

    pub fn is_success(self) -> bool {
        self == ExpenditureCode::SUCCESS
    }
}

/// Session options (-11 §7, kinds 5–10; the reference dialect also has
/// kind 7, "session untrusted"). -05 has no sessions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionOption {
    /// Client: start a session with this request.
    Request,
    /// The session's id: the proxy's answer to a session request (in the
    /// authentication reply, where the reference puts it) and the client's
    /// claim in every later request of the session. Opaque, a non-empty
    /// multiple of 4 bytes.
    Id(Vec<u8>),
    /// Proxy: the request was accepted as part of its session.
    Ok,
    /// Proxy: the session id is not (or no longer) valid.
    Invalid,
    /// Client: end the session (the request itself is not part of it).
    Teardown,
    /// The reference dialect's "session untrusted" (-06 to -09), kept
    /// and otherwise ignored.
    Untrusted,
}

/// Idempotence options (-05 kind 04).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IdempotenceOption {
    /// Client: please grant me a window of this many tokens.
    TokenRequest { window_size: u32 },
    /// Proxy: your window is `[base, base + size)` (modulo 2^32).
    WindowAdvertisement { base: u32, size: u32 },
    /// Client: I spend this token on this request.
    Expenditure { token: u32 },
    /// Proxy: what became of the token.
    ExpenditureReply(ExpenditureCode),
    /// An idempotence type this crate does not know (ignored).
    Unknown { kind: u8, data: Vec<u8> },
}

/// One SOCKS 6 option.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Socks6Option {
    Stack(StackOption),
    AuthMethod(AuthMethodOption),
    AuthData(AuthDataOption),
    /// -11's authentication method selection (kind 3): the codecs turn it
    /// into [`AuthOutcome::Continue`](super::AuthOutcome::Continue) when
    /// reading an authentication reply, and back when writing one.
    AuthSelect(Method),
    Idempotence(IdempotenceOption),
    Session(SessionOption),
    /// Vendor-specific range (-05: kinds `C0`–`FF`; -11: experimental,
    /// `FC00`–`FFFF`), kept raw.
    Vendor {
        kind: u16,
        data: Vec<u8>,
    },
    /// Any other kind, kept raw and otherwise ignored.
    Unknown {
        kind: u16,
        data: Vec<u8>,
    },
}

/// An ordered list of options, with accessors for what the machines and the
/// runtime need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options(pub Vec<Socks6Option>);

impl Options {
    pub fn new() -> Self {
        Options(Vec::new())
    }
    pub fn push(&mut self, o: Socks6Option) {
        self.0.push(o);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Socks6Option> {
        self.0.iter()
    }

    /// The authentication method options.
    pub fn auth_method_options(&self) -> impl Iterator<Item = &AuthMethodOption> {
        self.0.iter().filter_map(|o| match o {
            Socks6Option::AuthMethod(m) => Some(m),
            _ => None,
        })
    }

    /// Whether any authentication method option is present (a client that
    /// sends none may false-start: data right behind the request).
    pub fn has_auth_method_option(&self) -> bool {
        self.auth_method_options().next().is_some()
    }

    /// Every method offered, across all authentication method options.
    pub fn offered_methods(&self) -> Vec<Method> {
        let mut out: Vec<Method> = Vec::new();
        for m in self.auth_method_options().flat_map(|o| o.methods.iter()) {
            if !out.contains(m) {
                out.push(*m);
            }
        }
        out
    }

    /// The declared initial data length. Several authentication method
    /// options must agree on it (a disagreement is ambiguous framing and
    /// therefore an error); none means 0.
    pub fn initial_data_len(&self) -> Result<usize, crate::PeerError> {
        let mut len: Option<u16> = None;
        for o in self.auth_method_options() {
            match len {
                Some(l) if l != o.initial_data_len => {
                    return Err(crate::PeerError::BadOption(
                        "authentication method options disagree on the initial data length",
                    ))
                }
                _ => len = Some(o.initial_data_len),
            }
        }
        Ok(len.map_or(0, usize::from))
    }

    /// The first authentication data option for `method` (the draft lets a
    /// proxy ignore all others for the same method).
    pub fn auth_data(&self, method: Method) -> Option<&AuthDataOption> {
        self.0.iter().find_map(|o| match o {
            Socks6Option::AuthData(d) if d.method == method => Some(d),
            _ => None,
        })
    }

    /// The stack options, in order.
    pub fn stack(&self) -> impl Iterator<Item = &StackOption> {
        self.0.iter().filter_map(|o| match o {
            Socks6Option::Stack(s) => Some(s),
            _ => None,
        })
    }

    /// The stack options that apply to `leg` (one of
    /// [`Leg::CLIENT_PROXY`], [`Leg::PROXY_REMOTE`]), unknown ones left out.
    pub fn stack_for(&self, leg: Leg) -> impl Iterator<Item = &StackValue> {
        self.stack()
            .filter(move |s| s.leg.covers(leg))
            .map(|s| &s.value)
            .filter(|v| !matches!(v, StackValue::Unknown { .. }))
    }

    /// What the stack options ask for on `leg` (one of
    /// [`Leg::CLIENT_PROXY`], [`Leg::PROXY_REMOTE`]; options for both legs
    /// count for each).
    pub fn stack_requests(&self, leg: Leg) -> StackRequests {
        let mut r = StackRequests::default();
        for v in self.stack_for(leg) {
            match v {
                StackValue::Tos(t) => {
                    r.tos.get_or_insert(*t);
                }
                StackValue::HappyEyeballs(h) => {
                    r.happy_eyeballs.get_or_insert(*h);
                }
                StackValue::Ttl(t) => {
                    r.ttl.get_or_insert(*t);
                }
                StackValue::NoFragment(d) => {
                    r.no_fragment.get_or_insert(*d);
                }
                StackValue::TcpFastOpen { payload_size } => {
                    r.tfo.get_or_insert(*payload_size);
                }
                StackValue::Mptcp => {
                    r.mptcp.get_or_insert(true);
                }
                StackValue::MptcpOff => {
                    r.mptcp.get_or_insert(false);
                }
                StackValue::MptcpScheduler(s) => {
                    r.mptcp_scheduler.get_or_insert(*s);
                }
                StackValue::ListenBacklog(b) => {
                    r.listen_backlog.get_or_insert(*b);
                }
                StackValue::UdpError(u) => {
                    r.udp_error.get_or_insert(*u);
                }
                StackValue::PortParity { parity, reserve } => {
                    r.port_parity.get_or_insert((*parity, *reserve));
                }
                StackValue::Unknown { .. } => {}
            }
        }
        r
    }

    /// The idempotence options, in order.
    pub fn idempotence(&self) -> impl Iterator<Item = &IdempotenceOption> {
        self.0.iter().filter_map(|o| match o {
            Socks6Option::Idempotence(i) => Some(i),
            _ => None,
        })
    }

    /// The first token request's window size.
    pub fn token_request(&self) -> Option<u32> {
        self.idempotence().find_map(|i| match i {
            IdempotenceOption::TokenRequest { window_size } => Some(*window_size),
            _ => None,
        })
    }

    /// The first token expenditure's token.
    pub fn token_expenditure(&self) -> Option<u32> {
        self.idempotence().find_map(|i| match i {
            IdempotenceOption::Expenditure { token } => Some(*token),
            _ => None,
        })
    }

    /// The first window advertisement, as `(base, size)`.
    pub fn window_advertisement(&self) -> Option<(u32, u32)> {
        self.idempotence().find_map(|i| match i {
            IdempotenceOption::WindowAdvertisement { base, size } => Some((*base, *size)),
            _ => None,
        })
    }

    /// The session options, in order.
    pub fn session(&self) -> impl Iterator<Item = &SessionOption> {
        self.0.iter().filter_map(|o| match o {
            Socks6Option::Session(s) => Some(s),
            _ => None,
        })
    }

    /// Whether a session option `want` is present (ids compare too).
    pub fn has_session(&self, want: &SessionOption) -> bool {
        self.session().any(|s| s == want)
    }

    /// The first session id.
    pub fn session_id(&self) -> Option<&[u8]> {
        self.session().find_map(|s| match s {
            SessionOption::Id(id) => Some(&id[..]),
            _ => None,
        })
    }

    /// The first expenditure reply.
    pub fn expenditure_reply(&self) -> Option<ExpenditureCode> {
        self.idempotence().find_map(|i| match i {
            IdempotenceOption::ExpenditureReply(c) => Some(*c),
            _ => None,
        })
    }
}

impl From<Vec<Socks6Option>> for Options {
    fn from(v: Vec<Socks6Option>) -> Self {
        Options(v)
    }
}

impl FromIterator<Socks6Option> for Options {
    fn from_iter<I: IntoIterator<Item = Socks6Option>>(iter: I) -> Self {
        Options(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Options {
    type Item = &'a Socks6Option;
    type IntoIter = std::slice::Iter<'a, Socks6Option>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<StackOption> for Socks6Option {
    fn from(s: StackOption) -> Self {
        Socks6Option::Stack(s)
    }
}
impl From<IdempotenceOption> for Socks6Option {
    fn from(i: IdempotenceOption) -> Self {
        Socks6Option::Idempotence(i)
    }
}
impl From<AuthMethodOption> for Socks6Option {
    fn from(a: AuthMethodOption) -> Self {
        Socks6Option::AuthMethod(a)
    }
}
impl From<SessionOption> for Socks6Option {
    fn from(s: SessionOption) -> Self {
        Socks6Option::Session(s)
    }
}
impl From<AuthDataOption> for Socks6Option {
    fn from(a: AuthDataOption) -> Self {
        Socks6Option::AuthData(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_cover_what_their_bits_say() {
        assert!(Leg::BOTH.client_proxy() && Leg::BOTH.proxy_remote());
        assert!(Leg::CLIENT_PROXY.client_proxy() && !Leg::CLIENT_PROXY.proxy_remote());
        assert!(!Leg::PROXY_REMOTE.client_proxy() && Leg::PROXY_REMOTE.proxy_remote());
        assert!(!Leg(0).client_proxy() && !Leg(0).proxy_remote());
    }

    #[test]
    fn initial_data_len_must_agree() {
        let a = |n| {
            Socks6Option::AuthMethod(AuthMethodOption {
                initial_data_len: n,
                methods: vec![Method::USERPASS],
            })
        };
        assert_eq!(Options::new().initial_data_len(), Ok(0));
        assert_eq!(Options(vec![a(7), a(7)]).initial_data_len(), Ok(7));
        assert!(Options(vec![a(7), a(8)]).initial_data_len().is_err());
    }

    #[test]
    fn offered_methods_are_merged_without_duplicates() {
        let o = Options(vec![
            Socks6Option::AuthMethod(AuthMethodOption {
                initial_data_len: 0,
                methods: vec![Method::USERPASS, Method(0x80)],
            }),
            Socks6Option::AuthMethod(AuthMethodOption {
                initial_data_len: 0,
                methods: vec![Method(0x80), Method::GSSAPI],
            }),
        ]);
        assert_eq!(
            o.offered_methods(),
            vec![Method::USERPASS, Method(0x80), Method::GSSAPI]
        );
    }

    #[test]
    fn stack_for_filters_by_leg_and_drops_unknown() {
        let o = Options(vec![
            StackOption::new(Leg::CLIENT_PROXY, StackValue::Tos(1)).into(),
            StackOption::new(Leg::PROXY_REMOTE, StackValue::Mptcp).into(),
            StackOption::new(Leg::BOTH, StackValue::Tos(2)).into(),
            StackOption::new(
                Leg::BOTH,
                StackValue::Unknown {
                    level: 9,
                    code: 9,
                    data: vec![],
                },
            )
            .into(),
        ]);
        let remote: Vec<_> = o.stack_for(Leg::PROXY_REMOTE).cloned().collect();
        assert_eq!(remote, vec![StackValue::Mptcp, StackValue::Tos(2)]);
        let client: Vec<_> = o.stack_for(Leg::CLIENT_PROXY).cloned().collect();
        assert_eq!(client, vec![StackValue::Tos(1), StackValue::Tos(2)]);
    }

    #[test]
    fn stack_requests_per_leg_first_one_counts() {
        let o = Options(vec![
            StackOption::new(Leg::BOTH, StackValue::Tos(1)).into(),
            StackOption::new(Leg::PROXY_REMOTE, StackValue::Tos(2)).into(),
            StackOption::new(
                Leg::PROXY_REMOTE,
                StackValue::TcpFastOpen { payload_size: 9 },
            )
            .into(),
            StackOption::new(Leg::PROXY_REMOTE, StackValue::Mptcp).into(),
            StackOption::new(
                Leg::CLIENT_PROXY,
                StackValue::MptcpScheduler(MptcpScheduler::REDUNDANT),
            )
            .into(),
            StackOption::new(Leg::PROXY_REMOTE, StackValue::ListenBacklog(5)).into(),
        ]);
        let remote = o.stack_requests(Leg::PROXY_REMOTE);
        assert_eq!(
            remote,
            StackRequests {
                tos: Some(1),
                tfo: Some(9),
                mptcp: Some(true),
                listen_backlog: Some(5),
                ..StackRequests::default()
            }
        );
        let client = o.stack_requests(Leg::CLIENT_PROXY);
        assert_eq!(client.tos, Some(1));
        assert_eq!(client.mptcp_scheduler, Some(MptcpScheduler::REDUNDANT));
        assert!(client.mptcp.is_none() && client.tfo.is_none());
        // Reported back: the same values as options on the leg.
        let back = Options(remote.to_options(Leg::PROXY_REMOTE));
        assert_eq!(back.stack_requests(Leg::PROXY_REMOTE), remote);
        assert!(back.stack_requests(Leg::CLIENT_PROXY).is_empty());
    }

    #[test]
    fn auth_data_is_redacted_in_debug() {
        let d = AuthDataOption {
            method: Method::USERPASS,
            data: Password::new(b"\x01\x05alice\x06s3cret".to_vec()),
        };
        let shown = format!("{d:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

//! What a SOCKS 6 exchange learned ([`Socks6Info`]), carried by the stream
//! and returned by a NOOP.

use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::{ExpenditureCode, Leg, Options, Profile, StackRequests};
use sixsocks_proto::TargetAddr;

/// TCP Fast Open on the connection to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientTfo {
    /// Not asked for.
    NotRequested,
    /// Asked for, but the draft's rules forbid it for this request
    /// (application data in the flight, no token spent, the application
    /// not replay-tolerant): the connection was opened normally.
    Forbidden,
    /// Asked for and allowed, but the kernel refused `TCP_FASTOPEN_CONNECT`.
    Unavailable,
    /// The socket used `TCP_FASTOPEN_CONNECT`. `syn_data_acked`: the first
    /// flight went in the SYN and the proxy acknowledged it (false on a first
    /// connection, which only fetches the cookie, or when the proxy does not
    /// accept Fast Open).
    Used { syn_data_acked: bool },
}

/// What a SOCKS 6 exchange learned, on the stream
/// (`SocksStream::socks6_info`) or returned by a NOOP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks6Info {
    /// The wire profile the exchange spoke.
    pub profile: Profile,
    /// The method the proxy authenticated us with (`00` or `02`).
    pub auth_method: Method,
    /// The credentials went inside the request.
    pub zero_rtt_auth: bool,
    /// The proxy asked for the credentials and the RFC 1929 exchange took
    /// place (one more round trip).
    pub slow_auth: bool,
    /// Options of the (last) successful authentication reply: the token
    /// expenditure reply and window advertisements.
    pub auth_options: Options,
    /// Options of the operation reply: the stack options the proxy applied.
    pub reply_options: Options,
    /// The address in the operation reply (the proxy's end of its
    /// connection to the target, for CONNECT).
    pub bound: TargetAddr,
    /// Bytes sent as initial data (with the request).
    pub initial_data: usize,
    /// The token this request spent, if any.
    pub token: Option<u32>,
    /// What the proxy said about that token.
    pub expenditure: Option<ExpenditureCode>,
    /// TCP Fast Open on the client–proxy leg.
    pub client_tfo: ClientTfo,
}

impl Socks6Info {
    /// The stack options the proxy reports it applied on its connection to
    /// the target.
    pub fn applied(&self) -> StackRequests {
        self.reply_options.stack_requests(Leg::PROXY_REMOTE)
    }

    /// The token window the proxy advertised in its authentication reply,
    /// as `(base, size)`.
    pub fn window(&self) -> Option<(u32, u32)> {
        self.auth_options.window_advertisement()
    }
}

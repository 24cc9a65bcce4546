//! SOCKS 6 (draft-olteanu-intarea-socks-6-05) through a proxy: CONNECT in
//! one flight, NOOP, stack options, idempotence tokens and TCP Fast Open on
//! the client–proxy leg.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sixsocks_client::{Proxy, Socks6Options, Socks6Session};
//! use tokio::io::AsyncReadExt;
//!
//! let proxy: Proxy = "socks6://alice:s3cret@127.0.0.1:1080".parse()?;
//! // One session per proxy: it keeps the idempotence token window.
//! let session = Socks6Session::new(proxy)
//!     .with_tokens(16)?
//!     .with_options(Socks6Options::new().tos(0x10).client_tfo(true));
//! session.noop().await?; // authenticates and fetches a token window
//! let mut s = session
//!     .connect_with_data(("example.com", 80), b"GET / HTTP/1.0\r\n\r\n")
//!     .await?;
//! let info = s.socks6_info().expect("a SOCKS 6 stream");
//! println!("token {:?}, applied {:?}", info.token, info.applied());
//! let mut page = Vec::new();
//! s.read_to_end(&mut page).await?;
//! # Ok(()) }
//! ```
//!
//! # One flight
//!
//! A CONNECT goes out in a single write: the request, an authentication
//! data option holding the RFC 1929 credentials (when the proxy URL has
//! `user:pass@`: "0-RTT" authentication), an authentication method option
//! declaring the length of the initial data, and up to 8192 bytes of
//! initial data (the draft's cap; any further data is written as soon as
//! the draft allows: after the authentication reply). The proxy answers
//! with its authentication reply and its operation reply; the target's
//! first bytes may follow at once.
//!
//! If the proxy wants the credentials the slow way (it answers "further
//! authentication needed"), the RFC 1929 exchange follows and a second
//! authentication reply; [`Socks6Options::zero_rtt_auth`]`(false)` asks for
//! that path from the start.
//!
//! # Tokens
//!
//! A [`Socks6Session`] made [`with_tokens`](Socks6Session::with_tokens)
//! keeps a [`TokenWallet`]: its first request asks for a window, each later
//! one spends the smallest unspent token, and a new window is asked for
//! when the last token goes. A request whose token the proxy could not
//! spend was not carried out ([`ClientError::Socks6Refused`] says why);
//! the session retries it once when the proxy had no window for us or the
//! token was out of its window (the proxy lost or replaced our window),
//! never after a duplicate. The proxy keeps one window per user (per client
//! address without credentials): use one session per user and proxy.
//!
//! # TCP Fast Open on the client–proxy leg
//!
//! With [`Socks6Options::client_tfo`] the connection to the proxy is opened
//! with `TCP_FASTOPEN_CONNECT`, so the first flight rides in the SYN once
//! the kernel holds a cookie for the proxy (the first connection only gets
//! the cookie). A SYN can be replayed by the network, so the draft allows
//! it only when the flight carries no application data, or spends a token,
//! or the application tolerates replays
//! ([`Socks6Options::replay_tolerant`]); otherwise the connection is
//! opened normally and [`Socks6Info::client_tfo`] says
//! [`ClientTfo::Forbidden`]. Both ends need `net.ipv4.tcp_fastopen` set.
//!
//! # Wire profiles
//!
//! Requests speak [`Profile::DEFAULT`] (draft -05) unless
//! [`Socks6Options::with_profile`] chooses another; [`Socks6Info::profile`]
//! says which one an exchange spoke, and the initial data cap is the
//! profile's. UDP associations: `SocksDatagram::associate_socks6`.

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::client::{ClientRequest, Event, Final, Socks6Client};
use sixsocks_proto::v6::idempotence::{PreparedTokens, TokenWallet};
/// The SOCKS 6 wire profile, as [`Socks6Options::with_profile`] takes it.
pub use sixsocks_proto::v6::Profile;
use sixsocks_proto::v6::{
    AssociationId, AuthOutcome, AuthReply, ExpenditureCode, IdempotenceOption, Leg, MptcpScheduler,
    OperationReply, Options, SessionOption, Socks6Limits, Socks6Option, StackRequests,
};
use sixsocks_proto::{Command, Instruction, PeerError, ProtoError, TargetAddr};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{ClientError, Stage};
use crate::proxy::Proxy;
pub use crate::socks6_info::{ClientTfo, Socks6Info};
use crate::stream::SocksStream;
use crate::target::IntoTargetAddr;
use crate::to_proxy::{check_credentials, connect_to_proxy, deadline, first_reachable, read_into};
use sixsocks_sys as sys;

/// What a SOCKS 6 request asks for besides its command and target: stack
/// options for the proxy, and how this client opens and authenticates.
///
/// Built with the `with`-less builder methods:
/// `Socks6Options::new().tos(0x10).mptcp().client_tfo(true)`, and
/// [`with_profile`](Self::with_profile) for the wire profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks6Options {
    /// `None`: the proxy's ([`Proxy::socks6_profile`], from its URL).
    profile: Option<Profile>,
    tos: Option<u8>,
    remote_tfo: Option<u16>,
    mptcp: bool,
    mptcp_scheduler: Option<MptcpScheduler>,
    client_tfo: bool,
    replay_tolerant: bool,
    zero_rtt_auth: bool,
    extra: Vec<Socks6Option>,
}

impl Default for Socks6Options {
    fn default() -> Self {
        Socks6Options {
            profile: None,
            tos: None,
            remote_tfo: None,
            mptcp: false,
            mptcp_scheduler: None,
            client_tfo: false,
            replay_tolerant: false,
            zero_rtt_auth: true,
            extra: Vec::new(),
        }
    }
}

impl Socks6Options {
    /// No stack options, credentials sent 0-RTT, no TCP Fast Open, the
    /// proxy's profile ([`Proxy::socks6_profile`]: draft -11 unless its URL
    /// says `?profile=`).
    pub fn new() -> Self {
        Socks6Options::default()
    }

    /// Speak this SOCKS 6 wire profile (revision or dialect) to the proxy,
    /// whatever its URL says.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// The wire profile set with [`with_profile`](Self::with_profile).
    pub fn profile(&self) -> Option<Profile> {
        self.profile
    }

    /// The wire profile requests to `proxy` with these options speak.
    pub fn profile_for(&self, proxy: &Proxy) -> Profile {
        self.profile.unwrap_or(proxy.socks6_profile)
    }

    /// Ask the proxy to set this IP TOS (IPv6 traffic class) on its
    /// connection to the target (stack option, proxy–remote leg).
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = Some(tos);
        self
    }

    /// Ask the proxy to open its connection to the target with TCP Fast
    /// Open, the initial data in the SYN (`payload_size`: the SYN payload
    /// hoped for; 0 leaves it to the proxy).
    pub fn remote_tfo(mut self, payload_size: u16) -> Self {
        self.remote_tfo = Some(payload_size);
        self
    }

    /// Ask the proxy to open its connection to the target as Multipath TCP.
    pub fn mptcp(mut self) -> Self {
        self.mptcp = true;
        self
    }

    /// The MPTCP scheduler this client prefers (proxy–remote leg).
    pub fn mptcp_scheduler(mut self, scheduler: MptcpScheduler) -> Self {
        self.mptcp_scheduler = Some(scheduler);
        self
    }

    /// Open the connection to the proxy with TCP Fast Open, within the
    /// draft's safety rules (see the [module documentation](self)).
    pub fn client_tfo(mut self, on: bool) -> Self {
        self.client_tfo = on;
        self
    }

    /// The application tolerates a replay of its first bytes (it runs TLS
    /// without early data, say), so initial data may ride in a TFO SYN
    /// without a token.
    pub fn replay_tolerant(mut self, yes: bool) -> Self {
        self.replay_tolerant = yes;
        self
    }

    /// Send the credentials inside the request (default), or only offer
    /// username/password and let the proxy ask for them (the slow path:
    /// one more round trip).
    pub fn zero_rtt_auth(mut self, on: bool) -> Self {
        self.zero_rtt_auth = on;
        self
    }

    /// Add any option to the request as it is (a vendor option, or an
    /// idempotence option built by hand).
    pub fn option(mut self, option: impl Into<Socks6Option>) -> Self {
        self.extra.push(option.into());
        self
    }

    /// The stack options and extra options this asks the proxy for, as
    /// they go in the request.
    pub fn request_options(&self) -> Vec<Socks6Option> {
        let wanted = StackRequests {
            tos: self.tos,
            tfo: self.remote_tfo,
            mptcp: self.mptcp.then_some(true),
            mptcp_scheduler: self.mptcp_scheduler,
            ..StackRequests::default()
        };
        let mut out = wanted.to_options(Leg::PROXY_REMOTE);
        out.extend(self.extra.iter().cloned());
        out
    }
}

/// A SOCKS 6 proxy and what this client keeps about it between requests:
/// the options for every request and, if enabled, the token wallet.
///
/// Share it (`Arc`) between tasks: requests run concurrently, and the
/// wallet is locked only while a request takes its token and while a reply
/// updates the window.
#[derive(Debug)]
pub struct Socks6Session {
    proxy: Proxy,
    options: Socks6Options,
    wallet: Option<Wallet>,
    /// In profiles with sessions (-11, the reference dialect): the proxy's
    /// session, once it gave one. `None` here: sessions off.
    session: Option<SessionSlot>,
}

/// The id of the proxy-side session a [`Socks6Session`] belongs to, once
/// the proxy granted one.
#[derive(Debug, Default)]
struct SessionSlot {
    id: Mutex<Option<Vec<u8>>>,
}

impl SessionSlot {
    fn get(&self) -> Option<Vec<u8>> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, id: Option<Vec<u8>>) {
        *self.id.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }
}

impl Socks6Session {
    /// A session with default options and no tokens. The proxy's scheme is
    /// not looked at: every request of the session speaks SOCKS 6.
    pub fn new(proxy: Proxy) -> Self {
        Socks6Session {
            proxy,
            options: Socks6Options::default(),
            wallet: None,
            session: None,
        }
    }

    /// In profiles with sessions (-11 and the reference dialect), ask the
    /// proxy for a session with the first request and name it in every
    /// later one: those need no authentication, and tokens live in it. When
    /// the proxy forgets it (it expired, or the proxy restarted), the
    /// request that learns so is retried once in a new session. Tokens
    /// ([`with_tokens`](Self::with_tokens)) turn sessions on by themselves.
    pub fn with_sessions(mut self) -> Self {
        self.session.get_or_insert_with(SessionSlot::default);
        self
    }

    /// The proxy's id of this client's session, once it gave one.
    pub fn session_id(&self) -> Option<Vec<u8>> {
        self.session.as_ref().and_then(SessionSlot::get)
    }

    /// The options of every request.
    pub fn with_options(mut self, options: Socks6Options) -> Self {
        self.options = options;
        self
    }

    /// Keep an idempotence token wallet asking for windows of
    /// `window_size` tokens (1 to 2^31 − 1; proxies may grant fewer).
    pub fn with_tokens(mut self, window_size: u32) -> Result<Self, ClientError> {
        let wallet = TokenWallet::new(window_size).map_err(|e| ClientError::Protocol(e.into()))?;
        self.wallet = Some(Wallet {
            window_size,
            inner: Mutex::new(wallet),
        });
        // -11 keeps token windows in sessions.
        Ok(self.with_sessions())
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    pub fn options(&self) -> &Socks6Options {
        &self.options
    }

    /// A copy of the token wallet as it is now (`None` without tokens).
    pub fn tokens(&self) -> Option<TokenWallet> {
        self.wallet.as_ref().map(|w| w.lock().clone())
    }

    /// CONNECT to `target` (names are sent to the proxy).
    pub async fn connect<T: IntoTargetAddr>(&self, target: T) -> Result<SocksStream, ClientError> {
        self.connect_with_data(target, &[]).await
    }

    /// CONNECT to `target`, with `data` as the first bytes for the target:
    /// up to 8192 bytes go with the request (initial data), the rest right
    /// after the authentication reply.
    pub async fn connect_with_data<T: IntoTargetAddr>(
        &self,
        target: T,
        data: &[u8],
    ) -> Result<SocksStream, ClientError> {
        let target = target.into_target_addr()?;
        let (stream, leftover, info) = self.retrying(Command::CONNECT, &target, data).await?;
        Ok(SocksStream::new(stream, leftover, info.bound.clone()).with_socks6(info))
    }

    /// NOOP: authenticate (and, with tokens, fetch or refresh the token
    /// window) without doing anything else.
    pub async fn noop(&self) -> Result<Socks6Info, ClientError> {
        let (_stream, _, info) = self
            .retrying(Command::NOOP, &TargetAddr::unspecified(), &[])
            .await?;
        Ok(info)
    }

    /// End the proxy-side session (a NOOP with a session teardown); later
    /// requests start a new one. Nothing to do without one.
    pub async fn end_session(&self) -> Result<(), ClientError> {
        let Some(id) = self.session_id() else {
            return Ok(());
        };
        self.forget_session();
        let options = self
            .options
            .clone()
            .option(SessionOption::Id(id))
            .option(SessionOption::Teardown);
        exchange(
            &self.proxy,
            Command::NOOP,
            TargetAddr::unspecified(),
            &[],
            &options,
            Keep::default(),
        )
        .await?;
        Ok(())
    }

    fn keep(&self) -> Keep<'_> {
        Keep {
            wallet: self.wallet.as_ref(),
            session: self.session.as_ref(),
        }
    }

    /// One request, retried once when it was refused before being carried
    /// out, for a reason the retry mends: its token could not be spent
    /// because the proxy lost or replaced our window (-05), or its session
    /// or token was refused (-11: the proxy expired the session or
    /// restarted; the retry starts a new session).
    async fn retrying(
        &self,
        command: Command,
        target: &TargetAddr,
        data: &[u8],
    ) -> Result<(TcpStream, Vec<u8>, Socks6Info), ClientError> {
        let once = || {
            exchange(
                &self.proxy,
                command,
                target.clone(),
                data,
                &self.options,
                self.keep(),
            )
        };
        let first = once().await;
        let again = match &first {
            Err(ClientError::Socks6Refused {
                token: Some(ExpenditureCode::NO_WINDOW | ExpenditureCode::OUT_OF_WINDOW),
                ..
            }) => self.wallet.is_some(),
            Err(ClientError::Protocol(ProtoError::Peer(
                PeerError::SessionInvalid | PeerError::TokenRejected,
            ))) => {
                // The session (and the window in it) is gone: start over.
                self.forget_session();
                true
            }
            _ => false,
        };
        if !again {
            return first;
        }
        once().await
    }

    /// Forget the proxy-side session and the token window in it.
    fn forget_session(&self) {
        if let Some(slot) = &self.session {
            slot.set(None);
        }
        if let Some(w) = &self.wallet {
            w.reset();
        }
    }
}

/// NOOP through `proxy`: authenticate and do nothing else. Returns what the
/// proxy said (method, options).
pub async fn socks6_noop(proxy: &Proxy) -> Result<Socks6Info, ClientError> {
    let (_stream, _, info) = exchange(
        proxy,
        Command::NOOP,
        TargetAddr::unspecified(),
        &[],
        &Socks6Options::default(),
        Keep::default(),
    )
    .await?;
    Ok(info)
}

/// CONNECT through `proxy` with SOCKS 6, whatever the proxy's scheme, with
/// `data` as the first bytes for the target (up to 8192 go with the
/// request) and `options`. No tokens (see [`Socks6Session`]).
pub async fn socks6_connect<T: IntoTargetAddr>(
    proxy: &Proxy,
    target: T,
    data: &[u8],
    options: &Socks6Options,
) -> Result<SocksStream, ClientError> {
    let target = target.into_target_addr()?;
    let (stream, leftover, info) = exchange(
        proxy,
        Command::CONNECT,
        target,
        data,
        options,
        Keep::default(),
    )
    .await?;
    Ok(SocksStream::new(stream, leftover, info.bound.clone()).with_socks6(info))
}

/// A SOCKS 6 handshake for CONNECT or NOOP on a stream already open to the
/// proxy (so without TCP Fast Open), under the proxy's timeout.
pub async fn socks6_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    proxy: &Proxy,
    command: Command,
    target: TargetAddr,
    data: &[u8],
    options: &Socks6Options,
) -> Result<SocksStream<S>, ClientError> {
    let start = Start::new(proxy, command, target, data, options, Keep::default())?;
    let (leftover, info) = deadline(
        proxy,
        Stage::Handshake,
        drive(&mut stream, start, Keep::default(), ClientTfo::NotRequested),
    )
    .await?;
    Ok(SocksStream::new(stream, leftover, info.bound.clone()).with_socks6(info))
}

// ------------------------------------------------------------------ wallet

#[derive(Debug)]
struct Wallet {
    window_size: u32,
    inner: Mutex<TokenWallet>,
}

impl Wallet {
    fn lock(&self) -> MutexGuard<'_, TokenWallet> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget the window (its session is gone); the next request asks for
    /// a new one.
    fn reset(&self) {
        if let Ok(fresh) = TokenWallet::new(self.window_size) {
            *self.lock() = fresh;
        }
    }

    fn prepare(&self) -> PreparedTokens {
        self.lock().prepare()
    }

    /// Learn from a successful authentication reply.
    fn learn(&self, options: &Options) {
        let mut w = self.lock();
        w.on_auth_reply(options);
        // An advertisement that comes with "out of window" answers our spend:
        // it is the proxy's window now, even if its base looks older than
        // the one we knew (the proxy replaced the window, e.g. for another
        // client of the same user). `on_auth_reply` would drop it as stale.
        if options.expenditure_reply() == Some(ExpenditureCode::OUT_OF_WINDOW) {
            if let Some((base, size)) = options.window_advertisement() {
                if w.window() != Some((base, size)) {
                    if let Ok(mut fresh) = TokenWallet::new(self.window_size) {
                        // `prepare` marks a request outstanding, so that the
                        // advertisement is taken as the answer to it (and
                        // the request is then no longer outstanding).
                        let _ = fresh.prepare();
                        fresh.on_auth_reply(&Options(vec![Socks6Option::Idempotence(
                            IdempotenceOption::WindowAdvertisement { base, size },
                        )]));
                        *w = fresh;
                    }
                }
            }
        }
    }
}

/// What a [`Socks6Session`] keeps between requests, lent to one request.
#[derive(Clone, Copy, Debug, Default)]
struct Keep<'a> {
    wallet: Option<&'a Wallet>,
    session: Option<&'a SessionSlot>,
}

// ------------------------------------------------------------------ the exchange

/// Everything the first flight needs, built before any IO.
struct Start {
    machine: Socks6Client,
    first: Vec<u8>,
    /// Application data beyond the initial data.
    rest: Vec<u8>,
    initial: usize,
    token: Option<u32>,
    command: Command,
}

impl Start {
    fn new(
        proxy: &Proxy,
        command: Command,
        target: TargetAddr,
        data: &[u8],
        options: &Socks6Options,
        keep: Keep<'_>,
    ) -> Result<Start, ClientError> {
        if command != Command::CONNECT && command != Command::NOOP {
            return Err(ClientError::Unsupported(format!(
                "{command} over SOCKS 6 is not supported by this client"
            )));
        }
        Start::build(proxy, command, target, data, options, keep)
    }

    /// [`Start::new`] for any command (BIND and UDP ASSOCIATE too).
    fn build(
        proxy: &Proxy,
        command: Command,
        target: TargetAddr,
        data: &[u8],
        options: &Socks6Options,
        keep: Keep<'_>,
    ) -> Result<Start, ClientError> {
        if command != Command::CONNECT && !data.is_empty() {
            return Err(ClientError::Unsupported(
                "only CONNECT carries initial data".into(),
            ));
        }
        check_credentials(proxy)?;
        let profile = options.profile_for(proxy);
        // The floor of every profile (-11 allows 2^14, but a proxy may
        // cap it at -05's 2^13, as sixsocks does by default).
        let split = data.len().min(sixsocks_proto::v6::MAX_INITIAL_DATA);
        let mut extra = options.request_options();
        if profile.has_sessions() {
            if let Some(slot) = keep.session {
                extra.push(match slot.get() {
                    Some(id) => SessionOption::Id(id).into(),
                    None => SessionOption::Request.into(),
                });
            }
        }
        let prepared = keep.wallet.map(Wallet::prepare);
        let token = prepared.as_ref().and_then(|p| p.token);
        if let Some(p) = prepared {
            extra.extend(p.options);
        }
        // A request in a known session needs no credentials (the proxy
        // ignores them there); a new session authenticates with them.
        let in_session =
            profile.has_sessions() && keep.session.is_some_and(|slot| slot.get().is_some());
        let (username, password) = if in_session {
            (None, None)
        } else {
            (proxy.username.clone(), proxy.password.clone())
        };
        let req = ClientRequest {
            command,
            target: target.clone(),
            username,
            password,
            zero_rtt_auth: options.zero_rtt_auth,
            initial_data: data[..split].to_vec(),
            options: extra,
            limits: Socks6Limits::default(),
        };
        let (machine, first) = Socks6Client::with_profile(req, profile).map_err(|e| match e {
            ProtoError::Encode(e) => crate::to_proxy::invalid_target(e, &target),
            // Initial data on another command than CONNECT was refused above.
            e => ClientError::InvalidTarget(format!("{target}: {e}")),
        })?;
        Ok(Start {
            machine,
            first,
            rest: data[split..].to_vec(),
            initial: split,
            token,
            command,
        })
    }
}

/// Connect to the proxy (with TCP Fast Open where asked for and allowed),
/// run the exchange, and check the reply.
async fn exchange(
    proxy: &Proxy,
    command: Command,
    target: TargetAddr,
    data: &[u8],
    options: &Socks6Options,
    keep: Keep<'_>,
) -> Result<(TcpStream, Vec<u8>, Socks6Info), ClientError> {
    let start = Start::new(proxy, command, target, data, options, keep)?;
    let allowed = start.machine.tfo_allowed(options.replay_tolerant);
    let (mut stream, tfo) = match (options.client_tfo, allowed) {
        (false, _) => (connect_to_proxy(proxy).await?, ClientTfo::NotRequested),
        (true, false) => (connect_to_proxy(proxy).await?, ClientTfo::Forbidden),
        (true, true) => match connect_tfo(proxy).await? {
            (s, true) => (
                s,
                ClientTfo::Used {
                    syn_data_acked: false,
                },
            ),
            (s, false) => (s, ClientTfo::Unavailable),
        },
    };
    let deferred = matches!(tfo, ClientTfo::Used { .. });
    let result = deadline(
        proxy,
        Stage::Handshake,
        drive(&mut stream, start, keep, tfo),
    )
    .await;
    let (leftover, mut info) = match result {
        // With TCP_FASTOPEN_CONNECT, connect() returned before any packet
        // went out: a proxy that is down shows up here.
        Err(ClientError::Io(e)) if deferred && is_connect_error(&e) => {
            return Err(ClientError::ProxyConnect {
                proxy: proxy.addr_string(),
                source: e,
            })
        }
        other => other?,
    };
    if deferred {
        let acked = sys::tcp_info_options(&stream)
            .map(|o| o & sys::TCPI_OPT_SYN_DATA != 0)
            .unwrap_or(false);
        info.client_tfo = ClientTfo::Used {
            syn_data_acked: acked,
        };
    }
    Ok((stream, leftover, info))
}

fn is_connect_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::TimedOut
    )
}

/// Open a connection to the proxy with `TCP_FASTOPEN_CONNECT`; the second
/// value says whether the kernel took the option.
async fn connect_tfo(proxy: &Proxy) -> Result<(TcpStream, bool), ClientError> {
    first_reachable(proxy, |addr| async move {
        let (socket, on) = tfo_socket(addr)?;
        let s = socket.connect(addr).await?;
        s.set_nodelay(true)?;
        Ok((s, on))
    })
    .await
}

fn tfo_socket(addr: SocketAddr) -> io::Result<(TcpSocket, bool)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    let on = sys::set_tcp_fastopen_connect(&socket).is_ok();
    let std: std::net::TcpStream = socket.into();
    Ok((TcpSocket::from_std_stream(std), on))
}

/// Send the first flight and drive the machine to the operation reply.
/// Returns the bytes received after it and what was learned.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    start: Start,
    keep: Keep<'_>,
    client_tfo: ClientTfo,
) -> Result<(Vec<u8>, Socks6Info), ClientError> {
    let Start {
        mut machine,
        first,
        rest,
        initial,
        token,
        command,
    } = start;
    let offered = if machine.zero_rtt_auth() {
        "username/password (in the request)"
    } else {
        "username/password"
    };
    send(stream, &first).await?;
    let mut rest_sent = rest.is_empty();
    let mut slow_auth = false;
    let mut auth: Option<AuthReply> = None;
    loop {
        match machine.step() {
            Instruction::NeedMore(_) => read_into(stream, machine.input()).await?,
            Instruction::Send(bytes) => {
                slow_auth = true;
                send(stream, &bytes).await?;
                // The draft: application data may follow the last client
                // message of the authentication exchange at once.
                if !rest_sent {
                    send(stream, &rest).await?;
                    rest_sent = true;
                }
            }
            Instruction::Event(Event::Authenticated(reply)) => {
                if let (Some(slot), Some(id)) = (keep.session, reply.options.session_id()) {
                    slot.set(Some(id.to_vec()));
                }
                if let Some(w) = keep.wallet {
                    w.learn(&reply.options);
                }
                auth = Some(reply);
                if !rest_sent {
                    send(stream, &rest).await?;
                    rest_sent = true;
                }
            }
            Instruction::Finished {
                value: Final::Reply(reply),
                rest: leftover,
            } => {
                // -11's text puts a new session's id in the operation reply
                // (the reference, in the authentication reply): either.
                if let (Some(slot), Some(id)) = (keep.session, reply.options.session_id()) {
                    if reply.code().is_success() {
                        slot.set(Some(id.to_vec()));
                    }
                }
                return finish(
                    command,
                    reply,
                    auth,
                    leftover,
                    Learned {
                        profile: machine.profile(),
                        zero_rtt_auth: machine.zero_rtt_auth(),
                        slow_auth,
                        initial,
                        token,
                        client_tfo,
                    },
                );
            }
            Instruction::Event(Event::Bound(_) | Event::UdpAssociated { .. })
            | Instruction::Finished {
                value: Final::UdpConfirmed,
                ..
            } => {
                return Err(ClientError::Protocol(
                    PeerError::Unexpected("a BIND or UDP reply to a CONNECT or NOOP").into(),
                ))
            }
            Instruction::Failed { error, .. } => {
                return Err(ClientError::from_proto(error, offered))
            }
        }
    }
}

struct Learned {
    profile: Profile,
    zero_rtt_auth: bool,
    slow_auth: bool,
    initial: usize,
    token: Option<u32>,
    client_tfo: ClientTfo,
}

fn finish(
    command: Command,
    reply: OperationReply,
    auth: Option<AuthReply>,
    leftover: Vec<u8>,
    learned: Learned,
) -> Result<(Vec<u8>, Socks6Info), ClientError> {
    let Some(auth) = auth else {
        return Err(ClientError::Protocol(
            PeerError::Unexpected("an operation reply before the authentication reply").into(),
        ));
    };
    let expenditure = auth.options.expenditure_reply();
    if !reply.code().is_success() {
        return Err(ClientError::Socks6Refused {
            code: reply.code(),
            raw: reply.rep.0,
            token: expenditure,
        });
    }
    if command == Command::NOOP && !leftover.is_empty() {
        return Err(ClientError::UnexpectedReply(format!(
            "{} bytes after the operation reply of a NOOP",
            leftover.len()
        )));
    }
    let auth_method = match auth.outcome {
        AuthOutcome::Success(m) => m,
        _ => Method::NO_ACCEPTABLE,
    };
    Ok((
        leftover,
        Socks6Info {
            profile: learned.profile,
            auth_method,
            zero_rtt_auth: learned.zero_rtt_auth,
            slow_auth: learned.slow_auth,
            auth_options: auth.options,
            reply_options: reply.options,
            bound: reply.bound,
            initial_data: learned.initial,
            token: learned.token,
            expenditure,
            client_tfo: learned.client_tfo,
        },
    ))
}

// ------------------------------------------------------------------ BIND and UDP ASSOCIATE

/// Where a BIND or UDP ASSOCIATE exchange stopped.
#[derive(Debug)]
pub(crate) enum OpenedAt {
    /// BIND's first operation reply: the second comes when a host connects.
    Bound,
    /// BIND with a listen backlog granted: the connection carries no data.
    Listening,
    /// UDP ASSOCIATE: the association id; the confirmation comes later.
    Udp(AssociationId),
}

/// A BIND or UDP ASSOCIATE request answered with success: the connection,
/// the machine (for the replies still to come, holding the input not yet
/// consumed) and the operation reply.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) stream: TcpStream,
    pub(crate) machine: Socks6Client,
    pub(crate) reply: OperationReply,
    pub(crate) at: OpenedAt,
}

/// Connect to the proxy and send a BIND or UDP ASSOCIATE request in
/// `profile` (no tokens, no TCP Fast Open) with `extra` options; read up to the first
/// operation reply (and, for UDP, the association id), under the proxy's
/// timeout. A failure reply is [`ClientError::Socks6Refused`].
pub(crate) async fn open(
    proxy: &Proxy,
    command: Command,
    target: TargetAddr,
    extra: Vec<Socks6Option>,
    profile: Profile,
) -> Result<Opened, ClientError> {
    let mut options = Socks6Options::default().with_profile(profile);
    for o in extra {
        options = options.option(o);
    }
    let start = Start::build(proxy, command, target, &[], &options, Keep::default())?;
    let mut stream = connect_to_proxy(proxy).await?;
    let (machine, reply, at) =
        deadline(proxy, Stage::Handshake, drive_open(&mut stream, start)).await?;
    Ok(Opened {
        stream,
        machine,
        reply,
        at,
    })
}

type DriveOpen = (Socks6Client, OperationReply, OpenedAt);

async fn drive_open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    start: Start,
) -> Result<DriveOpen, ClientError> {
    let Start {
        mut machine, first, ..
    } = start;
    let offered = if machine.zero_rtt_auth() {
        "username/password (in the request)"
    } else {
        "username/password"
    };
    send(stream, &first).await?;
    let mut authenticated = false;
    loop {
        let (reply, at) = match machine.step() {
            Instruction::NeedMore(_) => {
                read_into(stream, machine.input()).await?;
                continue;
            }
            Instruction::Send(bytes) => {
                send(stream, &bytes).await?;
                continue;
            }
            Instruction::Event(Event::Authenticated(_)) => {
                authenticated = true;
                continue;
            }
            Instruction::Event(Event::Bound(reply)) => (reply, OpenedAt::Bound),
            Instruction::Event(Event::UdpAssociated { reply, id }) => (reply, OpenedAt::Udp(id)),
            Instruction::Finished {
                value: Final::Reply(reply),
                rest,
            } => {
                // Nothing may follow a BIND that only listens; keep the
                // machine's view of the input as it was.
                machine.input().push(&rest);
                (reply, OpenedAt::Listening)
            }
            Instruction::Finished {
                value: Final::UdpConfirmed,
                ..
            } => {
                return Err(ClientError::Protocol(
                    PeerError::Unexpected("a UDP confirmation before the association id").into(),
                ))
            }
            Instruction::Failed { error, .. } => {
                return Err(ClientError::from_proto(error, offered))
            }
        };
        if !authenticated {
            return Err(ClientError::Protocol(
                PeerError::Unexpected("an operation reply before the authentication reply").into(),
            ));
        }
        if !reply.code().is_success() {
            return Err(ClientError::Socks6Refused {
                code: reply.code(),
                raw: reply.rep.0,
                token: None,
            });
        }
        return Ok((machine, reply, at));
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), ClientError> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream.write_all(bytes).await.map_err(ClientError::Io)?;
    stream.flush().await.map_err(ClientError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixsocks_proto::v6::{StackOption, StackValue, MAX_INITIAL_DATA};

    fn stack_values(options: &[Socks6Option]) -> Vec<StackValue> {
        options
            .iter()
            .filter_map(|o| match o {
                Socks6Option::Stack(StackOption { value, .. }) => Some(value.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn options_build_proxy_remote_stack_options() {
        let o = Socks6Options::new()
            .tos(0x10)
            .remote_tfo(100)
            .mptcp()
            .mptcp_scheduler(MptcpScheduler::REDUNDANT);
        let opts = o.request_options();
        assert_eq!(
            stack_values(&opts),
            vec![
                StackValue::Tos(0x10),
                StackValue::TcpFastOpen { payload_size: 100 },
                StackValue::Mptcp,
                StackValue::MptcpScheduler(MptcpScheduler::REDUNDANT),
            ]
        );
        assert!(opts.iter().all(|o| matches!(
            o,
            Socks6Option::Stack(s) if s.leg == Leg::PROXY_REMOTE
        )));
        assert!(Socks6Options::new().request_options().is_empty());
    }

    #[test]
    fn out_of_window_advertisement_replaces_the_window_even_if_it_looks_stale() {
        let wallet = Wallet {
            window_size: 4,
            inner: Mutex::new(TokenWallet::new(4).unwrap()),
        };
        let adv = |base, size| {
            Options(vec![Socks6Option::Idempotence(
                IdempotenceOption::WindowAdvertisement { base, size },
            )])
        };
        let _ = wallet.prepare();
        wallet.learn(&adv(1000, 4));
        assert_eq!(wallet.lock().window(), Some((1000, 4)));
        assert_eq!(wallet.prepare().token, Some(1000));
        // The proxy replaced the window with one whose base is "older".
        let mut reply = adv(10, 4);
        reply.push(Socks6Option::Idempotence(
            IdempotenceOption::ExpenditureReply(ExpenditureCode::OUT_OF_WINDOW),
        ));
        wallet.learn(&reply);
        assert_eq!(wallet.lock().window(), Some((10, 4)));
        assert_eq!(wallet.prepare().token, Some(10));
        // An unsolicited stale advertisement alone is still ignored.
        wallet.learn(&adv(5, 4));
        assert_eq!(wallet.lock().window(), Some((10, 4)));
    }

    #[test]
    fn initial_data_is_capped_and_the_rest_kept() {
        let proxy = Proxy::new(
            crate::Scheme::Socks6,
            sixsocks_proto::Host::Ip([127, 0, 0, 1].into()),
            1080,
        );
        let data = vec![7u8; MAX_INITIAL_DATA + 10];
        let s = Start::new(
            &proxy,
            Command::CONNECT,
            TargetAddr::domain("example.com", 80),
            &data,
            &Socks6Options::new(),
            Keep::default(),
        )
        .unwrap();
        assert_eq!(s.initial, MAX_INITIAL_DATA);
        assert_eq!(s.rest.len(), 10);
        assert!(s.first.ends_with(&data[..MAX_INITIAL_DATA]));
        assert!(
            !s.machine.tfo_allowed(false),
            "initial data without a token"
        );
        assert!(Start::new(
            &proxy,
            Command::BIND,
            TargetAddr::unspecified(),
            &[],
            &Socks6Options::new(),
            Keep::default()
        )
        .is_err());
    }

    #[test]
    fn the_profile_goes_from_the_options_to_the_machine_and_the_info() {
        let proxy = Proxy::new(
            crate::Scheme::Socks6,
            sixsocks_proto::Host::Ip([127, 0, 0, 1].into()),
            1080,
        );
        assert_eq!(Socks6Options::new().profile(), None);
        assert_eq!(
            Socks6Options::new().profile_for(&proxy),
            crate::proxy::DEFAULT_SOCKS6_PROFILE
        );
        let options = Socks6Options::new().with_profile(Profile::Draft05);
        let start = Start::new(
            &proxy,
            Command::NOOP,
            TargetAddr::unspecified(),
            &[],
            &options,
            Keep::default(),
        )
        .unwrap();
        assert_eq!(start.machine.profile(), Profile::Draft05);
        let auth = AuthReply {
            outcome: AuthOutcome::Success(Method::NONE),
            options: Options::new(),
        };
        let reply = OperationReply::new(
            start.machine.profile(),
            sixsocks_proto::ReplyCode::Succeeded,
            TargetAddr::unspecified(),
            Options::new(),
        );
        let (_, info) = finish(
            Command::NOOP,
            reply,
            Some(auth),
            Vec::new(),
            Learned {
                profile: start.machine.profile(),
                zero_rtt_auth: false,
                slow_auth: false,
                initial: 0,
                token: None,
                client_tfo: ClientTfo::NotRequested,
            },
        )
        .unwrap();
        assert_eq!(info.profile, Profile::Draft05);
    }
}

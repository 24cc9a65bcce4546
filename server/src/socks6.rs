//! SOCKS 6 (draft -05) requests after the handshake: idempotence tokens,
//! the authentication reply, and the commands (NOOP, CONNECT with initial
//! data and stack options). BIND and UDP ASSOCIATE over SOCKS 6 are not
//! carried out yet: they are answered `07`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sixsocks_proto::v6::idempotence::{serve_tokens, TokenPolicy, TokenWindow};
use sixsocks_proto::v6::options::StackRequests;
use sixsocks_proto::v6::{Leg, Options, Socks6Option, Socks6Request};
use sixsocks_proto::{Command, ReplyCode, TargetAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::connect::{happy_eyeballs_with, outbound_socket, SocketOptions};
use crate::error::RequestError;
use crate::relay::{relay, RelayEnd};
use crate::session::{linger_close, lookup, Record, Shared};

/// Token windows kept at most (one per user, or per client address for
/// anonymous clients); beyond it, the table is cleared and clients ask again.
const MAX_WINDOWS: usize = 65_536;

/// Idempotence windows, one per user. Spending happens under the lock, so a
/// token is spent at most once even when one user's requests race.
#[derive(Default)]
pub struct TokenStore {
    windows: Mutex<HashMap<Vec<u8>, Option<TokenWindow>>>,
    policy: TokenPolicy,
}

impl TokenStore {
    fn serve(
        &self,
        key: Vec<u8>,
        options: &Options,
    ) -> sixsocks_proto::v6::idempotence::TokenDecision {
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_WINDOWS && !map.contains_key(&key) {
            tracing::warn!("socks6 token table full: forgetting every window");
            map.clear();
        }
        let slot = map.entry(key).or_default();
        serve_tokens(slot, options, &self.policy, OsRng.next_u32())
    }
}

/// Carry out a SOCKS 6 request and record what happened.
pub(crate) async fn execute(
    stream: &mut TcpStream,
    req: Box<Socks6Request>,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) {
    // Idempotence: the window belongs to the user, or to the client's
    // address when it did not authenticate.
    let key = match req.credentials.user() {
        Some(u) => [b"u:".as_slice(), u].concat(),
        None => format!(
            "a:{}",
            stream
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        )
        .into_bytes(),
    };
    let has_tokens = req.options.idempotence().next().is_some();
    let decision = if has_tokens {
        Some(shared.tokens.serve(key, &req.options))
    } else {
        None
    };
    let auth_options = decision
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    let Ok(auth_reply) = req.auth_reply(auth_options) else {
        rec.outcome = Some("cannot encode the authentication reply".into());
        return;
    };
    if stream.write_all(&auth_reply).await.is_err() {
        rec.outcome = Some("client gone before the authentication reply".into());
        return;
    }
    if let Some(d) = &decision {
        if !d.proceed {
            fail(
                stream,
                &req,
                ReplyCode::GeneralFailure,
                rec,
                format!("idempotence token refused ({:?})", d.spend),
            )
            .await;
            return;
        }
    }
    let result = match req.command {
        Command::NOOP => reply(stream, &req, None, Options::new(), rec).await,
        Command::CONNECT => connect(stream, &req, leftover, shared, rec).await,
        other => Err(RequestError::CommandNotSupported(other)),
    };
    if let Err(e) = result {
        let code = e.reply_code();
        fail(stream, &req, code, rec, e.to_string()).await;
    }
}

async fn fail(
    stream: &mut TcpStream,
    req: &Socks6Request,
    code: ReplyCode,
    rec: &mut Record,
    why: String,
) {
    rec.reply = Some(code);
    rec.outcome = Some(why);
    if let Ok(bytes) = req.operation_reply(code, None, Options::new()) {
        if stream.write_all(&bytes).await.is_ok() {
            linger_close(stream).await;
        }
    }
}

async fn reply(
    stream: &mut TcpStream,
    req: &Socks6Request,
    bound: Option<&TargetAddr>,
    options: Options,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let bytes = req
        .operation_reply(ReplyCode::Succeeded, bound, options)
        .map_err(|e| RequestError::Io(std::io::Error::other(e)))?;
    rec.reply = Some(ReplyCode::Succeeded);
    stream.write_all(&bytes).await?;
    Ok(())
}

/// CONNECT: open the outbound connection with the stack options the client
/// asked for on the proxy–remote leg, send the initial data with it (in the
/// SYN with TCP Fast Open when asked and possible), answer with what was
/// applied, then relay.
async fn connect(
    stream: &mut TcpStream,
    req: &Socks6Request,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let config = &shared.config;
    let wanted = req.options.stack_requests(Leg::PROXY_REMOTE);
    let opts = SocketOptions {
        tos: wanted.tos,
        mptcp: wanted.mptcp,
    };
    let addrs = lookup(&req.target.host, shared).await?;
    let use_tfo = wanted.tfo.is_some() && addrs.len() == 1 && !req.initial_data.is_empty();
    let (target, applied, tfo_used) = if use_tfo {
        let sa = SocketAddr::new(addrs[0], req.target.port);
        let connect = connect_tfo(sa, opts, &req.initial_data);
        let (s, a, used) = tokio::time::timeout(config.connect_timeout(), connect)
            .await
            .map_err(|_| RequestError::ConnectTimeout)??;
        (s, a, used)
    } else {
        let (s, a) = happy_eyeballs_with(
            &addrs,
            req.target.port,
            config.happy_eyeballs_delay(),
            config.connect_timeout(),
            opts,
        )
        .await?;
        write_all(&s, &req.initial_data).await?;
        (s, a, false)
    };
    rec.counters.up.fetch_add(
        req.initial_data.len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let reported = StackRequests {
        tos: applied.tos,
        tfo: if tfo_used { wanted.tfo } else { None },
        mptcp: applied.mptcp,
        mptcp_scheduler: if applied.mptcp {
            // The kernel's default scheduler is what is in use.
            wanted
                .mptcp_scheduler
                .map(|_| sixsocks_proto::v6::MptcpScheduler::DEFAULT)
        } else {
            None
        },
        listen_backlog: None,
    };
    let options = Options(
        reported
            .to_options(Leg::PROXY_REMOTE)
            .into_iter()
            .collect::<Vec<Socks6Option>>(),
    );
    let bound = target.local_addr().ok().map(TargetAddr::from);
    reply(stream, req, bound.as_ref(), options, rec).await?;
    rec.outcome = Some(format!(
        "initial data {} bytes{}{}{}",
        req.initial_data.len(),
        if tfo_used { ", tfo" } else { "" },
        if applied.mptcp { ", mptcp" } else { "" },
        applied
            .tos
            .map(|t| format!(", tos {t:#04x}"))
            .unwrap_or_default()
    ));
    let end = relay(
        stream,
        &target,
        &leftover,
        config.idle_timeout(),
        config.relay_mode,
        &rec.counters,
    )
    .await;
    match end {
        RelayEnd::Closed => {}
        RelayEnd::Idle => rec.outcome = Some("idle timeout".into()),
        RelayEnd::Error(e) => rec.outcome = Some(format!("relay ended: {e}")),
    }
    Ok(())
}

/// Connect with TCP_FASTOPEN_CONNECT and write `data` at once, so that it
/// rides in the SYN when the kernel has a cookie for the peer. Returns once
/// the connection is established (so failures are known before the reply).
async fn connect_tfo(
    sa: SocketAddr,
    opts: SocketOptions,
    data: &[u8],
) -> Result<(TcpStream, SocketOptions, bool), RequestError> {
    let (socket, applied) = outbound_socket(sa, opts)?;
    let tfo = crate::sys::set_tcp_fastopen_connect(socket.as_raw_fd()).is_ok();
    let s = socket
        .connect(sa)
        .await
        .map_err(RequestError::from_connect)?;
    let _ = s.set_nodelay(true);
    write_all(&s, data)
        .await
        .map_err(RequestError::from_connect)?;
    // With TFO, connect() returned before the handshake; wait for it.
    s.writable().await.map_err(RequestError::from_connect)?;
    if let Some(e) = s.take_error()? {
        return Err(RequestError::from_connect(e));
    }
    s.peer_addr().map_err(RequestError::from_connect)?;
    Ok((s, applied, tfo))
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! SOCKS 6 (draft -05) requests after the handshake: idempotence tokens,
//! the authentication reply, and the commands: NOOP, CONNECT with initial
//! data and stack options, BIND (with the listen backlog option: one
//! listener serving several later BIND requests, §8.1.5 of the draft) and
//! UDP ASSOCIATE (relayed by `udp_relay`).

pub mod backlog;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use sixsocks_proto::v6::options::StackRequests;
use sixsocks_proto::v6::{Leg, Options, Socks6Option, Socks6Request};
use sixsocks_proto::{Command, ReplyCode, TargetAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::error::RequestError;
use crate::happy_eyeballs::{happy_eyeballs_with, outbound_socket, SocketOptions};
use crate::rules::Dest;

use crate::context::{Outcome, Protocol, Record, Shared};
use crate::outbound::Outbound;
use crate::policy::Route;
use crate::relay::write_all;
use crate::tunnel::{linger_close, relay_recorded};
use crate::upstream::Upstream;

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
    let has_tokens = req.options.idempotence().next().is_some();
    let decision = if has_tokens {
        Some(shared.tokens.serve(rec.owner_key(shared), &req.options))
    } else {
        None
    };
    let auth_options = decision
        .as_ref()
        .map(|d| d.options.clone())
        .unwrap_or_default();
    let Ok(auth_reply) = req.auth_reply(auth_options) else {
        rec.set_outcome(Outcome::AuthReplyUnencodable);
        return;
    };
    if stream.write_all(&auth_reply).await.is_err() {
        rec.set_outcome(Outcome::GoneBeforeAuthReply);
        return;
    }
    if let Some(d) = &decision {
        if !d.proceed {
            fail(
                stream,
                &req,
                ReplyCode::GeneralFailure,
                rec,
                Outcome::TokenRefused(d.spend),
            )
            .await;
            return;
        }
    }
    let allowed = crate::policy::admit_request(
        shared,
        rec,
        Protocol::Socks6,
        req.command,
        &req.target,
        &req.credentials,
    );
    let result = match req.command {
        _ if allowed.is_err() => allowed,
        Command::NOOP => reply(stream, &req, None, Options::new(), rec).await,
        Command::CONNECT => connect(stream, &req, leftover, shared, rec).await,
        Command::BIND => Box::pin(bind(stream, &req, leftover, shared, rec)).await,
        Command::UDP_ASSOCIATE => {
            Box::pin(crate::udp_relay::run_socks6(stream, &req, shared, rec)).await
        }
        other => Err(RequestError::CommandNotSupported(other)),
    };
    if let Err(e) = result {
        crate::metrics::request_refused(&e);
        let code = e.reply_code();
        fail(stream, &req, code, rec, Outcome::Failed(e)).await;
    }
}

async fn fail(
    stream: &mut TcpStream,
    req: &Socks6Request,
    code: ReplyCode,
    rec: &mut Record,
    why: Outcome,
) {
    rec.reply = Some(code);
    rec.set_outcome(why);
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
    let (addrs, rule) = match crate::policy::route_checked(&req.target, shared, rec).await? {
        Route::Direct(addrs, rule) => (addrs, rule),
        Route::Upstream(up) => {
            return Box::pin(connect_upstream(stream, req, leftover, up, shared, rec)).await
        }
    };
    let (addrs, egress) = crate::policy::direct_plan(addrs, rule, req.target.port, shared, rec)?;
    let opts = SocketOptions {
        tos: wanted.tos,
        mptcp: wanted.mptcp,
        ..egress
    };
    let use_tfo = wanted.tfo.is_some() && addrs.len() == 1 && !req.initial_data.is_empty();
    let (target, applied, tfo_used) = if use_tfo {
        let sa = SocketAddr::new(addrs[0], req.target.port);
        let connect = connect_tfo(sa, opts, &req.initial_data);
        let started = tokio::time::Instant::now();
        let connected = tokio::time::timeout(config.connect_timeout(), connect)
            .await
            .unwrap_or(Err(RequestError::ConnectTimeout));
        crate::metrics::connect_seconds(started.elapsed(), connected.is_ok());
        connected?
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
    rec.counters.add_up(req.initial_data.len() as u64);
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
    rec.set_outcome(Outcome::InitialData {
        bytes: req.initial_data.len(),
        tfo: tfo_used,
        mptcp: applied.mptcp,
        tos: applied.tos,
    });
    relay_recorded(stream, &target, &leftover, shared, rec, None).await;
    Ok(())
}

/// CONNECT through an upstream: the initial data goes with the upstream's
/// request when it speaks SOCKS 6, else right after its reply; stack
/// options are not applied (the reply reports none), then relay.
async fn connect_upstream(
    stream: &mut TcpStream,
    req: &Socks6Request,
    leftover: Vec<u8>,
    up: &Upstream,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let out = Outbound::via(up, &req.target, &req.initial_data, rec).await?;
    if !out.early_sent {
        write_all(&out.stream, &req.initial_data).await?;
        rec.counters.add_up(req.initial_data.len() as u64);
    }
    reply(stream, req, out.bound.as_ref(), Options::new(), rec).await?;
    crate::tunnel::deliver(stream, out.to_client, rec).await?;
    relay_recorded(stream, &out.stream, &leftover, shared, rec, None).await;
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
    let tfo = sixsocks_sys::set_tcp_fastopen_connect(&socket).is_ok();
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
    // Report TFO only if the data really rode in the SYN (and was
    // acknowledged); a first connection only fetches a cookie.
    let in_syn = tfo
        && sixsocks_sys::tcp_info_options(&s)
            .is_ok_and(|o| o & sixsocks_sys::TCPI_OPT_SYN_DATA != 0);
    Ok((s, applied, in_syn))
}

/// The most backlog a client may ask for.
const MAX_BACKLOG: u16 = 128;

/// SOCKS 6 BIND. The request's address is the desired bind address (zeros:
/// any). With a listen backlog option (> 1), the listener outlives this one
/// exchange: the operation reply reports the backlog granted, the
/// connection is not used for data, and the listener closes when it ends;
/// later BIND requests naming the bound address accept from it. Without
/// one: first operation reply (bound address), second one (the host that
/// connected), then relay.
async fn bind(
    stream: &mut TcpStream,
    req: &Socks6Request,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let config = &shared.config;
    let owner = rec.owner_key(shared);
    let wanted = req.options.stack_requests(Leg::PROXY_REMOTE);
    let desired = req.target.socket_addr();
    // A later BIND on a backlog listener.
    if let Some(addr) = desired {
        if let Some(listener) = shared.backlogs.get(addr, &owner) {
            reply(stream, req, Some(&addr.into()), Options::new(), rec).await?;
            return accept_and_relay(stream, req, &listener, leftover, shared, rec).await;
        }
    }
    let listen_ip = match desired {
        Some(a) if !crate::destination::is_unspecified(a.ip()) => a.ip(),
        _ => config.bind_address.unwrap_or(stream.local_addr()?.ip()),
    };
    // The client chooses the port only inside `bind_ports`: anything else
    // (80, 443, the metrics port) gets an ephemeral port, reported in the
    // reply as the draft allows.
    let port = desired
        .map(|a| a.port())
        .filter(|&p| p != 0 && config.bind_ports.is_some_and(|r| r.contains(p)))
        .unwrap_or(0);
    match wanted.listen_backlog.filter(|&b| b > 1) {
        Some(asked) => {
            let granted = asked.min(MAX_BACKLOG);
            let listener = Arc::new(crate::bind::listen_backlog(
                SocketAddr::new(listen_ip, port),
                i32::from(granted),
            )?);
            let bound = listener.local_addr()?;
            check_bound(bound, shared, rec)?;
            let _registered = shared.bound.register(bound);
            let used = Arc::new(Notify::new());
            let applied = StackRequests {
                listen_backlog: Some(granted),
                ..StackRequests::default()
            };
            // Registered before the reply, so that a BIND the client sends
            // right after it always finds the listener.
            shared.backlogs.insert(bound, owner, listener, used.clone());
            let replied = reply(
                stream,
                req,
                Some(&bound.into()),
                Options(applied.to_options(Leg::PROXY_REMOTE)),
                rec,
            )
            .await;
            if let Err(e) = replied {
                shared.backlogs.remove(bound);
                return Err(e);
            }
            rec.set_outcome(Outcome::Backlog { granted, bound });
            // The listener lives as long as this connection, which ends
            // when the client closes it or after `idle_timeout` (else
            // `bind_timeout`) with neither bytes from the client nor a
            // later BIND taking a connection from the backlog.
            let idle = config.idle_timeout().unwrap_or(config.bind_timeout());
            let mut sink = vec![0u8; 512];
            loop {
                tokio::select! {
                    r = tokio::io::AsyncReadExt::read(stream, &mut sink) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                    _ = used.notified() => {}
                    _ = tokio::time::sleep(idle) => {
                        rec.set_outcome(Outcome::BacklogIdle {
                            granted,
                            bound,
                            idle_secs: idle.as_secs(),
                        });
                        break;
                    }
                }
            }
            shared.backlogs.remove(bound);
            Ok(())
        }
        None => {
            let listener = crate::bind::listen_once(SocketAddr::new(listen_ip, port))?;
            let bound = listener.local_addr()?;
            check_bound(bound, shared, rec)?;
            let _registered = shared.bound.register(bound);
            reply(stream, req, Some(&bound.into()), Options::new(), rec).await?;
            accept_and_relay(stream, req, &listener, leftover, shared, rec).await
        }
    }
}

/// The rules see the address actually bound, not the one requested (a
/// request for `0.0.0.0:80` binds somewhere else).
fn check_bound(bound: SocketAddr, shared: &Shared, rec: &Record) -> Result<(), RequestError> {
    let dest = Dest::Addr {
        name: None,
        ip: bound.ip(),
        port: bound.port(),
    };
    crate::policy::check_rules(shared, rec, dest).map(|_| ())
}

/// Wait for one inbound connection (or the client's giving up, or the
/// timeout), send the second operation reply, relay.
async fn accept_and_relay(
    stream: &mut TcpStream,
    req: &Socks6Request,
    listener: &TcpListener,
    leftover: Vec<u8>,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let config = &shared.config;
    let accept = async {
        tokio::select! {
            r = listener.accept() => r.map(Some),
            _ = closed(stream) => Ok(None),
        }
    };
    let accepted = tokio::time::timeout(config.bind_timeout(), accept)
        .await
        .map_err(|_| RequestError::BindTimeout)??;
    let Some((inbound, peer)) = accepted else {
        rec.set_outcome(Outcome::BindClientClosed);
        return Ok(());
    };
    let _ = inbound.set_nodelay(true);
    reply(stream, req, Some(&peer.into()), Options::new(), rec).await?;
    rec.set_outcome(Outcome::BindAccepted { on: None, peer });
    relay_recorded(stream, &inbound, &leftover, shared, rec, Some(peer)).await;
    Ok(())
}

/// Completes when the client closes its side (data it sends before the
/// bind completes is not expected and is not read).
async fn closed(stream: &TcpStream) {
    let mut b = [0u8; 1];
    match stream.peek(&mut b).await {
        Ok(0) | Err(_) => {}
        // Data is waiting: it belongs to the relay; stop watching.
        Ok(_) => std::future::pending().await,
    }
}

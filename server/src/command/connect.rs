//! CONNECT, every version: the route the rules choose, the outbound
//! connection (direct with happy eyeballs, or through an upstream), the
//! success reply, what an upstream sent behind its own reply, then the
//! relay. SOCKS 6 adds its initial data (sent with the connect: in the SYN
//! with TCP Fast Open when asked and possible) and the stack options on
//! the proxy–remote leg, which its reply reports as applied.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use sixsocks_proto::v6::options::StackRequests;
use sixsocks_proto::v6::{Leg, MptcpScheduler, Options};
use tokio::net::TcpStream;

use crate::command::reply::{send_success, Replier};
use crate::context::{Outcome, Protocol, Record, Shared};
use crate::error::RequestError;
use crate::happy_eyeballs::{happy_eyeballs_with, outbound_socket, SocketOptions};
use crate::outbound::Outbound;
use crate::policy::{direct_plan, route_checked, Route};
use crate::relay::write_all;
use crate::tunnel::{deliver, Handoff};
use crate::upstream::Upstream;

/// An outbound connection ready for the success reply.
struct Connected {
    out: Outbound,
    /// The SOCKS 6 stack options applied, for the reply.
    options: Options,
}

// Written out, not `async fn`: see `command::execute`.
#[allow(clippy::manual_async_fn)]
pub(super) fn run<'a>(
    stream: &'a mut TcpStream,
    req: &'a impl Replier,
    mut leftover: Vec<u8>,
    shared: &'a Shared,
    rec: &'a mut Record,
) -> impl Future<Output = Result<Option<Handoff>, RequestError>> + Send + 'a {
    async move {
        // Boxed (once): connecting is short-lived, relaying is what idles.
        let connected = match Box::pin(open(req, &leftover, shared, rec)).await? {
            Opened::Connected(c) => c,
            Opened::Optimistic(up) => {
                Box::pin(super::optimistic::run(
                    stream, req, up, leftover, shared, rec,
                ))
                .await;
                return Ok(None);
            }
        };
        // Boxed too: the reply's state is larger than the relay's, which is
        // what an idle connection holds (one allocation per CONNECT).
        let Some((target, early_sent)) =
            Box::pin(answer(stream, req, connected, shared, rec)).await?
        else {
            return Ok(None);
        };
        // A SOCKS4/5 client's early bytes go first, unless they went with
        // an upstream's request. (SOCKS 6's initial data went with the
        // connect; what followed its request is relayed.)
        if early_sent && req.socks6().is_none() {
            leftover.clear();
        }
        // The relay runs in a task of its own (`session::RelayPhase`).
        Ok(Some(Handoff {
            target,
            early: leftover,
        }))
    }
}

/// What [`open`] came to.
enum Opened<'s> {
    Connected(Connected),
    /// A SOCKS4/5 client routed to an optimistic upstream: answered
    /// before it connects (`optimistic.rs`).
    Optimistic(&'s Upstream),
}

/// Check the rules, then connect: through the upstream a rule routes to
/// (SOCKS 6's initial data, or a SOCKS4/5 client's early bytes, go with
/// its request when it speaks SOCKS 6), or directly.
async fn open<'s>(
    req: &impl Replier,
    leftover: &[u8],
    shared: &'s Shared,
    rec: &mut Record,
) -> Result<Opened<'s>, RequestError> {
    let target = req.target();
    let initial = req.socks6().map(|r| r.initial_data.as_slice());
    let (addrs, rule) = match route_checked(target, shared, rec).await? {
        Route::Upstream(up) if up.optimistic() && req.socks6().is_none() => {
            return Ok(Opened::Optimistic(up));
        }
        Route::Direct(addrs, rule) => (addrs, rule),
        Route::Upstream(up) => {
            let out = Outbound::via(up, target, initial.unwrap_or(leftover), rec).await?;
            // SOCKS 6's initial data is the target's before the reply.
            if let (Some(data), false) = (initial, out.early_sent) {
                write_all(&out.stream, data).await?;
                rec.counters.add_up(data.len() as u64);
            }
            // Stack options are not applied through an upstream.
            let options = Options::new();
            return Ok(Opened::Connected(Connected { out, options }));
        }
    };
    let (addrs, egress) = direct_plan(addrs, rule, target.port, shared, rec)?;
    direct(req, &addrs, egress, shared, rec)
        .await
        .map(Opened::Connected)
}

/// A direct connection with the stack options the SOCKS 6 client asked for
/// (none for SOCKS4/5) and its initial data sent.
async fn direct(
    req: &impl Replier,
    addrs: &[IpAddr],
    egress: SocketOptions,
    shared: &Shared,
    rec: &mut Record,
) -> Result<Connected, RequestError> {
    let config = &shared.config;
    let port = req.target().port;
    let wanted = req.socks6().map_or_else(StackRequests::default, |r| {
        r.options.stack_requests(Leg::PROXY_REMOTE)
    });
    let initial = req.socks6().map_or(&[][..], |r| &r.initial_data[..]);
    let opts = SocketOptions {
        tos: wanted.tos,
        ttl: wanted.ttl,
        no_fragment: wanted.no_fragment == Some(true),
        mptcp: wanted.mptcp == Some(true),
        ..egress
    };
    let use_tfo = wanted.tfo.is_some() && addrs.len() == 1 && !initial.is_empty();
    let (target, applied, tfo_used) = if use_tfo {
        let sa = SocketAddr::new(addrs[0], port);
        let connect = connect_tfo(sa, opts, initial);
        let started = tokio::time::Instant::now();
        let connected = tokio::time::timeout(config.connect_timeout(), connect)
            .await
            .unwrap_or(Err(RequestError::ConnectTimeout));
        crate::metrics::connect_seconds(started.elapsed(), connected.is_ok());
        connected?
    } else {
        let delay = config.happy_eyeballs_delay();
        let (s, a) =
            happy_eyeballs_with(addrs, port, delay, config.connect_timeout(), opts).await?;
        write_all(&s, initial).await?;
        (s, a, false)
    };
    rec.counters.add_up(initial.len() as u64);
    if req.protocol() == Protocol::Socks6 {
        rec.set_outcome(Outcome::InitialData {
            bytes: initial.len(),
            tfo: tfo_used,
            mptcp: applied.mptcp,
            tos: applied.tos,
        });
    }
    // Happy Eyeballs (RFC 8305, which every connect to several addresses
    // does) answers a client that asked, for a name it sent.
    let by_name = matches!(req.target().host, sixsocks_proto::Host::Domain(_));
    let happy_eyeballs = wanted
        .happy_eyeballs
        .filter(|_| by_name)
        .map(|_| !tfo_used && addrs.len() > 1);
    let options = reported(&wanted, &applied, tfo_used, happy_eyeballs);
    let out = Outbound::direct(target);
    Ok(Connected { out, options })
}

/// The stack options a SOCKS 6 reply reports: what the kernel took, and
/// (-11 asks that every supported option be answered) "no" for what was
/// asked and not done. A profile that cannot say an answer leaves it out.
fn reported(
    wanted: &StackRequests,
    applied: &SocketOptions,
    tfo_used: bool,
    happy_eyeballs: Option<bool>,
) -> Options {
    let reported = StackRequests {
        tos: applied.tos,
        ttl: applied.ttl,
        no_fragment: wanted.no_fragment.map(|_| applied.no_fragment),
        happy_eyeballs,
        tfo: if tfo_used { wanted.tfo } else { None },
        // Answered when asked (-11 answers "not available" too; the -05
        // codec cannot say that and leaves it out).
        mptcp: wanted.mptcp.map(|_| applied.mptcp),
        mptcp_scheduler: if applied.mptcp {
            // The kernel's default scheduler is what is in use.
            wanted.mptcp_scheduler.map(|_| MptcpScheduler::DEFAULT)
        } else {
            None
        },
        ..StackRequests::default()
    };
    Options(reported.to_options(Leg::PROXY_REMOTE))
}

/// Send the success reply, then the target bytes an upstream sent behind
/// its own. Returns the outbound stream and whether the client's early
/// bytes already went out; `None` when a SOCKS4/5 client is gone (its
/// outcome says so; a SOCKS 6 client gone is an error, answered with a
/// failure reply as any). (One await in the session for both writes keeps
/// the session future small.)
async fn answer(
    stream: &mut TcpStream,
    req: &impl Replier,
    connected: Connected,
    shared: &Shared,
    rec: &mut Record,
) -> Result<Option<(TcpStream, bool)>, RequestError> {
    let Connected { out, options } = connected;
    let bound = out.bound.as_ref();
    let sent = send_success(stream, req, bound, options, shared, rec).await;
    if let Err(e) = sent {
        return client_gone(req, e, false, rec);
    }
    if let Err(e) = deliver(stream, out.to_client, rec).await {
        return client_gone(req, e.into(), true, rec);
    }
    Ok(Some((out.stream, out.early_sent)))
}

/// A client lost while CONNECT answers it: for SOCKS4/5 the session ends
/// with its outcome saying so (the reply stays `succeeded`); for SOCKS 6
/// it is the request's error.
fn client_gone(
    req: &impl Replier,
    e: RequestError,
    after_reply: bool,
    rec: &mut Record,
) -> Result<Option<(TcpStream, bool)>, RequestError> {
    match e {
        RequestError::Io(error) if req.socks6().is_none() => {
            rec.set_outcome(Outcome::ClientGone { after_reply, error });
            Ok(None)
        }
        e => Err(e),
    }
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

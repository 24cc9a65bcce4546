//! Tor's RESOLVE (a name's address) and RESOLVE_PTR (an address's name),
//! from the resolver or from the upstream the rules route them to; the
//! answer goes in the success reply, then the connection closes.

use std::net::IpAddr;

use sixsocks_proto::v6::Options;
use sixsocks_proto::{Host, ReplyCode, TargetAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::command::reply::{success_bytes, Replier};
use crate::context::{Outcome, Protocol, Record, Shared};
use crate::destination;
use crate::error::RequestError;
use crate::policy::{check_rules, route_checked, upstream_of, Route};
use crate::rules::Dest;
use crate::tunnel::linger_close;

/// RESOLVE: answer with the name's first address (SOCKS4 can only carry an
/// IPv4 one).
pub(super) async fn forward(
    stream: &mut TcpStream,
    req: &impl Replier,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    // Boxed, like CONNECT's connect phase: short-lived.
    let addrs = Box::pin(resolve_routed(req.target(), shared, rec)).await?;
    let pick = match req.protocol() {
        Protocol::Socks4 | Protocol::Socks4a => addrs.iter().find(|a| a.is_ipv4()).copied(),
        Protocol::Socks5 | Protocol::Socks6 => addrs.first().copied(),
    }
    .ok_or(RequestError::AddressTypeNotSupported)?;
    finish_with(stream, req, TargetAddr::ip(pick, 0), shared, rec).await
}

/// RESOLVE_PTR: answer with the address's name.
pub(super) async fn reverse(
    stream: &mut TcpStream,
    req: &impl Replier,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let target = req.target();
    let ip = match &target.host {
        Host::Ip(ip) => *ip,
        Host::Domain(d) => destination::literal(d).ok_or(RequestError::AddressTypeNotSupported)?,
    };
    let name = Box::pin(reverse_routed(ip, target, shared, rec)).await?;
    finish_with(stream, req, TargetAddr::domain(name, 0), shared, rec).await
}

/// Send a success reply carrying `answer`, then close.
async fn finish_with(
    stream: &mut TcpStream,
    req: &impl Replier,
    answer: TargetAddr,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let reply = success_bytes(req, Some(&answer), Options::new(), shared)?;
    rec.reply = Some(ReplyCode::Succeeded);
    rec.set_outcome(Outcome::Answer(answer));
    if stream.write_all(&reply).await.is_ok() {
        linger_close(stream).await;
    }
    Ok(())
}

/// The addresses of a name, from the resolver or from the upstream the
/// rules route it to.
pub(super) async fn resolve_routed(
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<Vec<IpAddr>, RequestError> {
    Ok(match route_checked(target, shared, rec).await? {
        Route::Direct(addrs, _) => addrs,
        Route::Upstream(up) => match &target.host {
            Host::Domain(name) => vec![up.resolve(name, &rec.credentials).await?],
            Host::Ip(ip) => vec![*ip],
        },
    })
}

/// The name of an address, from the resolver or from the upstream the
/// rules route it to.
pub(super) async fn reverse_routed(
    ip: IpAddr,
    target: &TargetAddr,
    shared: &Shared,
    rec: &Record,
) -> Result<String, RequestError> {
    let verdict = check_rules(shared, rec, Dest::of(target))?;
    match upstream_of(shared, verdict.rule())? {
        Some(up) => up.resolve_ptr(ip, &rec.credentials).await,
        None => shared.resolver.reverse(ip, Some(rec.client.ip())).await,
    }
}

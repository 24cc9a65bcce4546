//! Policy: the rules applied to a request (by name, then by each address
//! a name resolves to), the command check for BIND, UDP and NOOP, routes to
//! upstreams, egress settings, and the refusal of the proxy's own sockets.

use std::net::IpAddr;

use sixsocks_proto::{Command, Credentials, Host, TargetAddr};

use crate::context::{Protocol, Record, Shared};
use crate::destination;
use crate::error::RequestError;
use crate::happy_eyeballs::SocketOptions;
use crate::rules::{Dest, Family, Rule, Verdict};
use crate::upstream::Upstream;

/// Check a request against the rules; a block is an error (`02` / `5B`).
/// `Undecided` comes back only for a name not resolved yet (or a UDP
/// association, whose datagrams are checked one by one).
pub(crate) fn check_rules<'s>(
    shared: &'s Shared,
    rec: &Record,
    dest: Dest<'_>,
) -> Result<Verdict<'s>, RequestError> {
    refused_if_blocked(shared.rules.decide(&rec.facts(shared, dest), "request"))
}

/// A block as the request's error (`02` / `5B`), any other verdict as is.
fn refused_if_blocked(verdict: Verdict<'_>) -> Result<Verdict<'_>, RequestError> {
    match verdict {
        Verdict::Block(_) => Err(RequestError::Blocked(verdict.reason())),
        v => Ok(v),
    }
}

/// The rules' verdict again on what the admission let through
/// ([`check_command`]), for a command that needs its rule (its route): the
/// same facts give the same verdict, so it is taken quietly, without a
/// second line from a `log = true` rule.
pub(crate) fn verdict_again<'s>(
    shared: &'s Shared,
    rec: &Record,
    dest: Dest<'_>,
) -> Result<Verdict<'s>, RequestError> {
    refused_if_blocked(shared.rules.check(&rec.facts(shared, dest)))
}

/// The addresses of a resolved name that the rules let through, and the
/// rule that passed the first of them. Blocked if none is left.
pub(crate) fn check_addresses<'s>(
    shared: &'s Shared,
    rec: &Record,
    name: Option<&str>,
    addrs: Vec<IpAddr>,
    port: u16,
) -> Result<(Vec<IpAddr>, Option<&'s Rule>), RequestError> {
    let mut kept = Vec::with_capacity(addrs.len());
    let mut first_rule = None;
    let mut first_block = None;
    for ip in addrs {
        let dest = Dest::Addr { name, ip, port };
        match check_rules(shared, rec, dest) {
            Ok(v) => {
                if kept.is_empty() {
                    first_rule = v.rule();
                }
                kept.push(ip);
            }
            Err(e) => {
                first_block.get_or_insert(e);
            }
        }
    }
    match (kept.is_empty(), first_block) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(RequestError::HostUnreachable),
        (false, _) => Ok((kept, first_rule)),
    }
}

/// Outbound socket options: what the deciding rule asks for; the source
/// address, when the rule names none, from the user's `[users]` entry.
fn egress_of(
    rule: Option<&Rule>,
    shared: &Shared,
    rec: &Record,
) -> (SocketOptions, Option<Family>) {
    let mut opts = SocketOptions::default();
    let mut prefer = None;
    if let Some(r) = rule {
        opts.source = r.source;
        opts.mark = r.mark;
        prefer = r.prefer;
    }
    if opts.source.is_none() {
        if let Some(user) = rec.user(shared) {
            opts.source = crate::limits::settings_for(&shared.config.users, user.as_bytes())
                .and_then(|s| s.source);
        }
    }
    (opts, prefer)
}

/// Resolve a target host for the session's client ([`Resolver::target`]).
pub(crate) async fn lookup(
    host: &Host,
    shared: &Shared,
    rec: &Record,
) -> Result<Vec<IpAddr>, RequestError> {
    shared.resolver.target(host, Some(rec.client.ip())).await
}

/// Where the rules send a CONNECT or RESOLVE.
pub(crate) enum Route<'s> {
    /// Directly: the addresses the rules let through, and the rule that
    /// passed them.
    Direct(Vec<IpAddr>, Option<&'s Rule>),
    /// Through this upstream, which gets the target as the client gave it.
    Upstream(&'s Upstream),
}

/// The rules' verdict on a request's target, then its addresses: a name is
/// checked by name first (a block costs no DNS query), and, when that does
/// not decide, by each address it resolves to. A rule that decides with a
/// `route` sends the request upstream: decided by name, the name is never
/// resolved here (a `.onion` name goes to Tor untouched); a name that
/// needed its addresses to decide was resolved here first, and still goes
/// upstream as a name.
pub(crate) async fn route_checked<'s>(
    target: &TargetAddr,
    shared: &'s Shared,
    rec: &Record,
) -> Result<Route<'s>, RequestError> {
    let dest = Dest::of(target);
    if let Some(ip) = dest.ip() {
        // Before the rules: no rule may let it through, nor route it.
        destination::refuse_unspecified(ip)?;
    }
    let verdict = check_rules(shared, rec, dest)?;
    if let Some(up) = upstream_of(shared, verdict.rule())? {
        return Ok(Route::Upstream(up));
    }
    let addrs = lookup(&target.host, shared, rec).await?;
    let (addrs, rule) = match verdict {
        Verdict::Undecided => {
            let name = match &target.host {
                Host::Domain(n) => Some(n.as_str()),
                Host::Ip(_) => None,
            };
            check_addresses(shared, rec, name, addrs, target.port)?
        }
        v => (addrs, v.rule()),
    };
    Ok(match upstream_of(shared, rule)? {
        Some(up) => Route::Upstream(up),
        None => Route::Direct(addrs, rule),
    })
}

/// The upstream the deciding rule routes through, if it has a route.
pub(crate) fn upstream_of<'s>(
    shared: &'s Shared,
    rule: Option<&Rule>,
) -> Result<Option<&'s Upstream>, RequestError> {
    let Some(name) = rule.and_then(|r| r.route.as_deref()) else {
        return Ok(None);
    };
    // Validation makes every route name an upstream; be safe anyway.
    let up = shared.upstreams.get(name).ok_or_else(|| {
        RequestError::UpstreamCannot(format!("upstream {name} is not configured"))
    })?;
    // Never one of our own listeners (validation catches the plain cases;
    // this also covers listeners on port 0 and addresses set by a reload).
    if let Host::Ip(ip) = up.proxy().host {
        refuse_own_sockets(&[ip], up.proxy().port, shared).inspect_err(|_| {
            tracing::warn!(
                upstream = name,
                "upstream {name} ({}) is one of our own listeners: refused (a loop)",
                up.proxy()
            );
        })?;
    }
    Ok(Some(up))
}

/// Whether `protocol` carries `command` at all: SOCKS4/4a CONNECT, BIND
/// and Tor's RESOLVE; SOCKS5 those, UDP ASSOCIATE and RESOLVE_PTR; SOCKS 6
/// NOOP, CONNECT, BIND and UDP ASSOCIATE.
pub(crate) fn carries(protocol: Protocol, command: Command) -> bool {
    match protocol {
        Protocol::Socks4 | Protocol::Socks4a => {
            matches!(command, Command::CONNECT | Command::BIND | Command::RESOLVE)
        }
        Protocol::Socks5 => matches!(
            command,
            Command::CONNECT
                | Command::BIND
                | Command::UDP_ASSOCIATE
                | Command::RESOLVE
                | Command::RESOLVE_PTR
        ),
        Protocol::Socks6 => matches!(
            command,
            Command::NOOP | Command::CONNECT | Command::BIND | Command::UDP_ASSOCIATE
        ),
    }
}

/// Everything that decides whether a request may run, the same for every
/// version, in this order: SOCKS4 is refused when a users file makes
/// authentication mandatory (it cannot authenticate); the user's
/// per-user limits admit the session (the admission is kept in `rec`); the
/// rules for the command ([`check_command`]); a command the configuration
/// turned off (`allow_bind`, `allow_udp`: `07`); a command the protocol does
/// not carry (`07`).
pub(crate) fn admit_request(
    shared: &Shared,
    rec: &mut Record,
    protocol: Protocol,
    command: Command,
    target: &TargetAddr,
    credentials: &Credentials,
) -> Result<(), RequestError> {
    if shared.auth.required() && matches!(protocol, Protocol::Socks4 | Protocol::Socks4a) {
        return Err(RequestError::AuthRequired);
    }
    rec.admission = shared.users.admit(credentials)?;
    check_command(shared, rec, command, target)?;
    match command {
        Command::BIND if !shared.config.allow_bind => Err(RequestError::Disabled("BIND")),
        Command::UDP_ASSOCIATE if !shared.config.allow_udp && carries(protocol, command) => {
            Err(RequestError::Disabled("UDP ASSOCIATE"))
        }
        c if !carries(protocol, c) => Err(RequestError::CommandNotSupported(c)),
        _ => Ok(()),
    }
}

/// The rules for the commands that are not checked with their addresses
/// (CONNECT, RESOLVE and RESOLVE_PTR are, as they resolve): BIND, which
/// names the host expected to connect in; UDP ASSOCIATE, whose datagrams
/// are then checked one by one; SOCKS 6 NOOP. A SOCKS 6 client's BIND and
/// UDP cannot go through an upstream.
pub(crate) fn check_command(
    shared: &Shared,
    rec: &Record,
    command: Command,
    target: &TargetAddr,
) -> Result<(), RequestError> {
    match command {
        // A SOCKS4/5 BIND may go through an upstream (`command/bind.rs`
        // routes it); a SOCKS 6 one, with its backlog, may not.
        Command::BIND if rec.version == Some(crate::context::Protocol::Socks6) => {
            refuse_route(&check_rules(shared, rec, Dest::of(target))?, "BIND")
        }
        Command::BIND => check_rules(shared, rec, Dest::of(target)).map(|_| ()),
        // A SOCKS5 UDP association may go through an upstream
        // (`command/udp.rs` routes it); a SOCKS 6 one may not.
        Command::UDP_ASSOCIATE if rec.version == Some(crate::context::Protocol::Socks6) => {
            refuse_route(&check_rules(shared, rec, Dest::Unknown)?, "UDP ASSOCIATE")
        }
        Command::UDP_ASSOCIATE => check_rules(shared, rec, Dest::Unknown).map(|_| ()),
        Command::NOOP => check_rules(shared, rec, Dest::Unknown).map(|_| ()),
        _ => Ok(()),
    }
}

/// Addresses and socket options for a direct CONNECT that the rules let
/// through: never one of our own sockets; the egress settings of the rule
/// (or the user); only addresses the source address can reach, the
/// preferred family first.
pub(crate) fn direct_plan(
    addrs: Vec<IpAddr>,
    rule: Option<&Rule>,
    port: u16,
    shared: &Shared,
    rec: &Record,
) -> Result<(Vec<IpAddr>, SocketOptions), RequestError> {
    for ip in &addrs {
        destination::refuse_unspecified(*ip)?;
    }
    refuse_own_sockets(&addrs, port, shared)?;
    let (opts, prefer) = egress_of(rule, shared, rec);
    Ok((order_for_egress(addrs, opts.source, prefer), opts))
}

/// BIND and UDP ASSOCIATE cannot go through an upstream: a rule that
/// routes them refuses them (`07` / `5B`), with a log line.
fn refuse_route(verdict: &Verdict<'_>, what: &str) -> Result<(), RequestError> {
    let Some(name) = verdict.rule().and_then(|r| r.route.as_deref()) else {
        return Ok(());
    };
    tracing::warn!(
        upstream = name,
        rule = %verdict.reason(),
        "{what} matched a rule routing through upstream {name}: routing {what} is not supported"
    );
    Err(RequestError::UpstreamCannot(format!(
        "upstream {name} cannot carry {what} (routing BIND or UDP ASSOCIATE is not supported)"
    )))
}

/// Keep only addresses a source address can reach, and put the preferred
/// family first (happy eyeballs then starts with it).
fn order_for_egress(
    mut addrs: Vec<IpAddr>,
    source: Option<IpAddr>,
    prefer: Option<Family>,
) -> Vec<IpAddr> {
    if let Some(src) = source {
        addrs.retain(|a| a.is_ipv4() == src.is_ipv4());
    }
    if let Some(p) = prefer {
        let want_v4 = p == Family::Ipv4;
        addrs.sort_by_key(|a| a.is_ipv4() != want_v4);
    }
    addrs
}

/// Refuse a target that is one of the proxy's own listening sockets (a
/// loop that would eat a connection slot per turn until the limit), in any
/// spelling ([`destination::is_own_socket`]), and the listeners of live
/// BINDs.
pub(crate) fn refuse_own_sockets(
    addrs: &[IpAddr],
    port: u16,
    shared: &Shared,
) -> Result<(), RequestError> {
    let hit = addrs.iter().any(|ip| {
        destination::is_own_socket(*ip, port, shared.own_addrs.iter().copied())
            || shared.bound.contains(*ip, port)
    });
    if hit {
        Err(RequestError::OwnSocket)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one table of what each protocol carries (the SOCKS4/5 and
    /// SOCKS 6 dispatchers each had their own before).
    #[test]
    fn what_each_protocol_carries() {
        use Protocol::*;
        let all = [
            Command::NOOP,
            Command::CONNECT,
            Command::BIND,
            Command::UDP_ASSOCIATE,
            Command::RESOLVE,
            Command::RESOLVE_PTR,
            Command(0x09),
        ];
        let table = |p: Protocol| -> Vec<bool> { all.iter().map(|c| carries(p, *c)).collect() };
        assert_eq!(
            table(Socks4),
            [false, true, true, false, true, false, false]
        );
        assert_eq!(table(Socks4a), table(Socks4));
        assert_eq!(table(Socks5), [false, true, true, true, true, true, false]);
        assert_eq!(table(Socks6), [true, true, true, true, false, false, false]);
    }
}

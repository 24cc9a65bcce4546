//! Access rules: an ordered list in the config file, first match wins.
//!
//! ```toml
//! [[rule]]
//! action = "block"
//! to = ["10.0.0.0/8", "169.254.0.0/16", ".internal.example"]
//! log = true
//!
//! [[rule]]
//! action = "pass"
//! from = ["192.0.2.0/24"]
//! command = ["connect", "resolve"]
//! port = [80, 443, "8000-8999"]
//! ```
//!
//! A rule matches when every condition it states matches (an absent
//! condition matches anything; a list matches when any entry does). The
//! first matching rule decides. When rules are configured and none
//! matches, the request is **blocked** (as in Dante); with no rules at all
//! everything passes.
//!
//! Rules are evaluated at every stage with what is known so far: at accept
//! (client address and listener), with the request (version, user,
//! command, destination), after resolving a destination name, and for each
//! UDP datagram's destination. A rule whose conditions depend on something
//! not known yet stops the walk undecided: a later stage decides with more
//! facts, and earlier rules are never skipped. So a block at accept only
//! happens when the first rule that could apply is a block by client
//! address or listener alone.
//!
//! Destinations: `to` entries are CIDR blocks or addresses
//! (`10.0.0.0/8`, `::1`), exact names (`example.com`) or name suffixes
//! (`.example.com`: the name itself and every name under it). Names
//! compare without case and without a trailing dot. A name target is
//! matched by name before it is resolved, and by name *and* each of its
//! addresses after: a rule with only CIDR entries cannot decide for a name
//! until it is resolved, and then addresses a blocking rule matches are
//! never connected to. A name cannot be used to reach a blocked address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use sixsocks_proto::{Command, Host, ShownName, TargetAddr};

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Block,
}

/// Address family preference for outbound connections.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// SOCKS versions as rules name them (`socks4` covers SOCKS4a too).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VersionMatch {
    Socks4,
    Socks4a,
    Socks5,
    Socks6,
}

/// Commands as rules name them.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandMatch {
    Connect,
    Bind,
    Udp,
    Resolve,
    ResolvePtr,
    /// SOCKS 6 NOOP.
    Noop,
}

impl CommandMatch {
    fn matches(self, c: Command) -> bool {
        let want = match self {
            CommandMatch::Connect => Command::CONNECT,
            CommandMatch::Bind => Command::BIND,
            CommandMatch::Udp => Command::UDP_ASSOCIATE,
            CommandMatch::Resolve => Command::RESOLVE,
            CommandMatch::ResolvePtr => Command::RESOLVE_PTR,
            CommandMatch::Noop => Command::NOOP,
        };
        want == c
    }
}

/// One `to` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestMatch {
    Net(IpNet),
    /// Exact name, lower case, no trailing dot.
    Name(String),
    /// `.suffix`: stored without the leading dot.
    Suffix(String),
}

impl DestMatch {
    fn matches_name(&self, name: &str) -> bool {
        match self {
            DestMatch::Net(_) => false,
            DestMatch::Name(n) => n == name,
            DestMatch::Suffix(s) => {
                name == s
                    || (name.len() > s.len()
                        && name.ends_with(s.as_str())
                        && name.as_bytes()[name.len() - s.len() - 1] == b'.')
            }
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            // Every spelling of the address the connection would reach
            // (crate::destination), and the address as written.
            DestMatch::Net(net) => {
                net.contains(&crate::destination::canonical(ip)) || net.contains(&ip)
            }
            _ => false,
        }
    }
}

impl FromStr for DestMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty destination".into());
        }
        if let Ok(Cidr(net)) = s.parse::<Cidr>() {
            return Ok(DestMatch::Net(net));
        }
        let lower = normalize_name(s);
        if lower.is_empty() {
            return Err(format!("bad destination {s:?}"));
        }
        if let Some(suffix) = lower.strip_prefix('.') {
            if suffix.is_empty() || suffix.starts_with('.') {
                return Err(format!("bad domain suffix {s:?}"));
            }
            return Ok(DestMatch::Suffix(suffix.to_string()));
        }
        if lower.contains('/') || lower.contains(' ') || lower.contains('*') {
            return Err(format!(
                "{s:?} is neither an address, a CIDR block, a name nor a .suffix"
            ));
        }
        Ok(DestMatch::Name(lower))
    }
}

impl<'de> Deserialize<'de> for DestMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DestMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestMatch::Net(n) => write!(f, "{n}"),
            DestMatch::Name(n) => write!(f, "{n}"),
            DestMatch::Suffix(s) => write!(f, ".{s}"),
        }
    }
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A CIDR block or a single address (`10.0.0.0/8`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Cidr(IpNet::from(ip)))
            .map_err(|_| format!("{s:?} is not an address or CIDR block"))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A port or an inclusive port range: `443` or `"8000-8999"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad port or port range {s:?} (want 443 or \"8000-8999\")");
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let first: u16 = a.parse().map_err(|_| bad())?;
        let last: u16 = b.parse().map_err(|_| bad())?;
        if first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => {
                let p = u16::try_from(n)
                    .map_err(|_| serde::de::Error::custom(format!("port {n} out of range")))?;
                Ok(PortRange { first: p, last: p })
            }
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One `[[rule]]` of the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `pass` or `block`.
    pub action: Action,
    /// Log a line each time this rule decides.
    #[serde(default)]
    pub log: bool,
    /// Client addresses (CIDR blocks or addresses).
    #[serde(default)]
    pub from: Vec<Cidr>,
    /// Listening addresses the client came in on.
    #[serde(default)]
    pub listener: Vec<SocketAddr>,
    /// SOCKS versions.
    #[serde(default)]
    pub version: Vec<VersionMatch>,
    /// Authenticated user names (SOCKS5 username/password, SOCKS 6). An
    /// unauthenticated client never matches a rule that names users.
    #[serde(default)]
    pub user: Vec<String>,
    /// Commands: connect, bind, udp, resolve, resolve_ptr, noop.
    #[serde(default)]
    pub command: Vec<CommandMatch>,
    /// Destinations: CIDR blocks, addresses, names, `.suffix`es.
    #[serde(default)]
    pub to: Vec<DestMatch>,
    /// Destination ports and ranges.
    #[serde(default)]
    pub port: Vec<PortRange>,
    /// Send matching requests through this `[upstream.NAME]`.
    #[serde(default)]
    pub route: Option<String>,
    /// Source address of outbound connections (egress selection).
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// Try this address family first when a name has both.
    #[serde(default)]
    pub prefer: Option<Family>,
    /// SO_MARK for outbound connections (Linux; needs CAP_NET_ADMIN).
    #[serde(default)]
    pub mark: Option<u32>,
}

/// What a session knows about itself at some stage. `None` = not known yet.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub client: Option<IpAddr>,
    pub listener: Option<SocketAddr>,
    pub version: Option<VersionMatch>,
    /// `Some(None)`: known to be unauthenticated.
    pub user: Option<Option<&'a str>>,
    pub command: Option<Command>,
    pub dest: Dest<'a>,
}

/// What is known of a destination.
#[derive(Clone, Debug, Default)]
pub enum Dest<'a> {
    /// Not known yet (also: a UDP association before its datagrams).
    #[default]
    Unknown,
    /// A name, not resolved yet.
    Name(&'a str, u16),
    /// An address (given as one, or one that a name resolved to).
    Addr {
        name: Option<&'a str>,
        ip: IpAddr,
        port: u16,
    },
}

/// ` to HOST:PORT`, or nothing when the destination is not known.
impl fmt::Display for Dest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Unknown => Ok(()),
            Dest::Name(name, port) => write!(f, " to {}:{port}", ShownName(name)),
            Dest::Addr { ip, port, .. } => write!(f, " to {}", SocketAddr::new(*ip, *port)),
        }
    }
}

impl<'a> Dest<'a> {
    /// The destination of a request target, before any resolution. A name
    /// that is an address (as the resolver would read it: `127.1`, `0x0`,
    /// `[::1]`, see [`crate::destination::literal`]) is the address.
    pub fn of(target: &'a TargetAddr) -> Dest<'a> {
        match &target.host {
            Host::Ip(ip) => Dest::Addr {
                name: None,
                ip: *ip,
                port: target.port,
            },
            Host::Domain(name) => match crate::destination::literal(name) {
                Some(ip) => Dest::Addr {
                    name: None,
                    ip,
                    port: target.port,
                },
                None => Dest::Name(name, target.port),
            },
        }
    }

    /// The address, when the destination is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Dest::Addr { ip, .. } => Some(*ip),
            _ => None,
        }
    }
}

/// Three-valued match of one condition or a whole rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

impl Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }
    /// Conjunction: any `No` wins, then any `Maybe`.
    fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Maybe, _) | (_, Tri::Maybe) => Tri::Maybe,
            _ => Tri::Yes,
        }
    }
}

/// One condition: empty list = anything; unknown fact = maybe.
fn cond<T, F: Fn(&T) -> bool>(list: &[T], fact: Option<F>) -> Tri {
    if list.is_empty() {
        return Tri::Yes;
    }
    match fact {
        None => Tri::Maybe,
        Some(f) => Tri::from(list.iter().any(f)),
    }
}

impl Rule {
    fn eval(&self, facts: &Facts<'_>) -> Tri {
        let client = facts.client.map(|ip| {
            let ip = ip.to_canonical();
            move |n: &Cidr| n.contains(ip)
        });
        let listener = facts.listener.map(|l| move |x: &SocketAddr| *x == l);
        let version = facts.version.map(|v| {
            move |x: &VersionMatch| {
                *x == v || (*x == VersionMatch::Socks4 && v == VersionMatch::Socks4a)
            }
        });
        let user = facts
            .user
            .map(|u| move |x: &String| u.is_some_and(|u| u == x.as_str()));
        let command = facts.command.map(|c| move |x: &CommandMatch| x.matches(c));
        let (to, port) = match &facts.dest {
            Dest::Unknown => (Tri::Maybe, None),
            Dest::Name(name, port) => {
                let name = normalize_name(name);
                let to = if self.to.is_empty() || self.to.iter().any(|d| d.matches_name(&name)) {
                    Tri::Yes
                } else if self.to.iter().any(|d| matches!(d, DestMatch::Net(_)))
                    && crate::destination::onion_address(&name).is_none()
                {
                    // Only its address can tell. (A `.onion` name has none,
                    // RFC 7686: address entries never match it, so a rule
                    // routing `.onion` to Tor decides behind address blocks.)
                    Tri::Maybe
                } else {
                    Tri::No
                };
                (to, Some(*port))
            }
            Dest::Addr { name, ip, port } => {
                let name = name.map(normalize_name);
                let hit = self.to.iter().any(|d| {
                    d.matches_ip(*ip) || name.as_deref().is_some_and(|n| d.matches_name(n))
                });
                (Tri::from(self.to.is_empty() || hit), Some(*port))
            }
        };
        // An unknown destination with no `to` list is a plain yes.
        let to = if self.to.is_empty() { Tri::Yes } else { to };
        let port = cond(&self.port, port.map(|p| move |r: &PortRange| r.contains(p)));
        cond(&self.from, client)
            .and(cond(&self.listener, listener))
            .and(cond(&self.version, version))
            .and(cond(&self.user, user))
            .and(cond(&self.command, command))
            .and(to)
            .and(port)
    }

    /// The rule's conditions, for logs and `sixsocks check`.
    pub fn describe(&self) -> String {
        fn list<T: fmt::Display>(key: &str, v: &[T], out: &mut Vec<String>) {
            if !v.is_empty() {
                let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                out.push(format!("{key} {}", items.join(", ")));
            }
        }
        fn list_dbg<T: fmt::Debug>(key: &str, v: &[T], out: &mut Vec<String>) {
            if !v.is_empty() {
                let items: Vec<String> = v
                    .iter()
                    .map(|x| format!("{x:?}").to_ascii_lowercase())
                    .collect();
                out.push(format!("{key} {}", items.join(", ")));
            }
        }
        let mut parts = Vec::new();
        list("from", &self.from, &mut parts);
        list("listener", &self.listener, &mut parts);
        list_dbg("version", &self.version, &mut parts);
        list("user", &self.user, &mut parts);
        list_dbg("command", &self.command, &mut parts);
        list("to", &self.to, &mut parts);
        list("port", &self.port, &mut parts);
        let what = if parts.is_empty() {
            "everything".to_string()
        } else {
            parts.join("; ")
        };
        let action = match self.action {
            Action::Pass => "pass",
            Action::Block => "block",
        };
        let mut extra = Vec::new();
        if let Some(r) = &self.route {
            extra.push(format!("via upstream {r}"));
        }
        if let Some(s) = self.source {
            extra.push(format!("from source {s}"));
        }
        if let Some(p) = self.prefer {
            extra.push(format!("prefer {p:?}").to_ascii_lowercase());
        }
        if let Some(m) = self.mark {
            extra.push(format!("mark {m}"));
        }
        if self.log {
            extra.push("logged".into());
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(", "))
        };
        format!("{action} {what}{extra}")
    }
}

/// The outcome of walking the rules with some facts.
#[derive(Clone, Copy, Debug)]
pub enum Verdict<'r> {
    /// Allowed; by this rule (1-based index and the rule), or because no
    /// rules are configured.
    Pass(Option<(usize, &'r Rule)>),
    /// Refused by this rule, or (`None`) because no rule matched.
    Block(Option<(usize, &'r Rule)>),
    /// A rule that could still match depends on facts not known yet.
    Undecided,
}

impl<'r> Verdict<'r> {
    pub fn is_block(&self) -> bool {
        matches!(self, Verdict::Block(_))
    }
    /// The deciding rule, if any.
    pub fn rule(&self) -> Option<&'r Rule> {
        match self {
            Verdict::Pass(r) | Verdict::Block(r) => r.map(|(_, r)| r),
            Verdict::Undecided => None,
        }
    }
    /// "rule 3" / "no rule matched", for logs.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Pass(Some((n, _))) | Verdict::Block(Some((n, _))) => format!("rule {n}"),
            Verdict::Pass(None) => "no rules".into(),
            Verdict::Block(None) => "no rule matched".into(),
            Verdict::Undecided => "undecided".into(),
        }
    }
}

/// The configured rules, in order.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Rules {
        Rules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// Whether some rule restricts clients by address or listener (an
    /// operator who wrote one is not running an open proxy by accident).
    pub fn has_client_rule(&self) -> bool {
        self.rules
            .iter()
            .any(|r| !r.from.is_empty() || !r.listener.is_empty())
    }

    /// Walk the rules in order with what is known; first match wins.
    ///
    /// A rule that may match once more is known stops the walk undecided,
    /// except that blocks which may match do not hide a block that does:
    /// whichever of them turns out to be the first match, the answer is
    /// the same, so it is given now (a name blocked by a suffix rule is
    /// then refused without a lookup even behind address rules).
    pub fn check(&self, facts: &Facts<'_>) -> Verdict<'_> {
        if self.rules.is_empty() {
            return Verdict::Pass(None);
        }
        let mut maybe_blocks = false;
        for (i, rule) in self.rules.iter().enumerate() {
            match rule.eval(facts) {
                Tri::No => continue,
                Tri::Maybe if rule.action == Action::Block => maybe_blocks = true,
                Tri::Maybe => return Verdict::Undecided,
                Tri::Yes => {
                    let hit = Some((i + 1, rule));
                    return match rule.action {
                        Action::Pass if maybe_blocks => Verdict::Undecided,
                        Action::Pass => Verdict::Pass(hit),
                        Action::Block => Verdict::Block(hit),
                    };
                }
            }
        }
        Verdict::Block(None)
    }

    /// Check a fully known request and log the decision when the deciding
    /// rule asks for it. `what` names what is decided on for that log line
    /// ("connection", "request"), followed by the destination when known
    /// (formatted only then: nothing is allocated for unlogged decisions).
    pub fn decide(&self, facts: &Facts<'_>, what: &str) -> Verdict<'_> {
        let v = self.check(facts);
        if let Some(rule) = v.rule() {
            if rule.log {
                let action = if v.is_block() { "block" } else { "pass" };
                tracing::info!(
                    target: "sixsocks::rules",
                    rule = %v.reason(),
                    action,
                    client = %facts.client.map_or_else(|| "-".into(), |c| c.to_string()),
                    user = facts.user.flatten().unwrap_or("-"),
                    "{what}{}",
                    facts.dest
                );
            }
        }
        v
    }

    /// Check that every route names a configured upstream.
    pub fn validate(&self, upstream_exists: impl Fn(&str) -> bool) -> Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(route) = &r.route {
                if !upstream_exists(route) {
                    return Err(format!(
                        "rule {}: route {route:?} names no [upstream.{route}]",
                        i + 1
                    ));
                }
                if r.action == Action::Block {
                    return Err(format!("rule {}: a block rule cannot have a route", i + 1));
                }
            }
            if let (Some(src), Some(pref)) = (r.source, r.prefer) {
                let fam = if src.is_ipv4() {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                if fam != pref {
                    return Err(format!(
                        "rule {}: source {src} cannot be used with prefer = {:?}",
                        i + 1,
                        pref
                    ));
                }
            }
            if r.user.iter().any(|u| u.is_empty()) {
                return Err(format!("rule {}: empty user name", i + 1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

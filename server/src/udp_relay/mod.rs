//! The UDP relay behind UDP ASSOCIATE (the command and its reply:
//! `command/udp.rs`): a relay socket per association, datagrams with the
//! RFC 1928 header (or SOCKS 6's) both ways, fragment reassembly, and the
//! association's end when its TCP connection ends.
//!
//! The client-facing socket accepts datagrams only from the client: its IP
//! is the TCP connection's peer IP; its port is the one the request named,
//! or, when the request said 0, the port of the first datagram from that IP
//! (then fixed: later datagrams from other ports are dropped, so nobody can
//! re-point the association). Datagrams to remote hosts leave through
//! separate outbound sockets (one per address family, opened when first
//! needed); what comes back on them is wrapped in a header naming its source
//! and sent to the client.
//!
//! SOCKS 6 -11 also lets the client send its datagrams on the TCP
//! connection (`over_tcp.rs`): the first datagram, over UDP or over TCP,
//! maps the association to that path for good. A -11 client that asked
//! for them gets the ICMP errors its datagrams met (`icmp.rs`).

mod icmp;
pub mod limits;
mod over_tcp;
mod via_upstream;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sixsocks_proto::udp::{DropReason, Fragment, Reassembler, ReassemblyLimits, UdpHeader};
use sixsocks_proto::v6::{AssociationId, Codec, DatagramHeader, Socks6Request};
use sixsocks_proto::{Host, TargetAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::context::{Outcome, Record, Shared, UdpSummary};
use crate::destination::{self, same_ip};
use crate::error::RequestError;
use crate::metrics::{udp_datagram, Direction, UdpDrop};
use crate::rules::{Dest, Verdict};

use limits::{AssociationLimits, Slot};

/// Receive buffer: the largest UDP payload plus room for our header.
const RECV_BUF: usize = 65_536 + 262;
/// Names resolved for datagrams are remembered this long.
const DNS_CACHE_TTL: Duration = Duration::from_secs(30);
/// And at most this many per association.
const DNS_CACHE_MAX: usize = 256;
/// Name lookups in flight per association; datagrams to further names are dropped.
const MAX_LOOKUPS: usize = 32;
/// Datagrams kept per name while its lookup runs.
const MAX_QUEUED_PER_NAME: usize = 16;

/// Per-association datagram counts, for the session's log line.
#[derive(Default, Debug)]
pub struct UdpStats {
    pub to_remote: AtomicU64,
    pub to_client: AtomicU64,
    pub dropped: AtomicU64,
    /// Why the first dropped datagram was dropped (the log line says it,
    /// so that `dropped 1` needs no `-v` run to explain).
    pub first_drop: std::sync::OnceLock<String>,
}

/// How datagrams are framed between the client and the relay.
pub(crate) enum Framing {
    /// RFC 1928: `RSV FRAG ATYP ADDR PORT`, with fragment reassembly.
    Socks5,
    /// SOCKS 6: `06 00 ID PORT ATYP ADDR`. `confirmation` holds the
    /// confirmation message until it is sent.
    Socks6 {
        codec: &'static dyn Codec,
        id: AssociationId,
        confirmation: Option<Vec<u8>>,
        /// The client asked for ICMP errors (-11's UDP error option).
        report_errors: bool,
    },
}

/// One UDP association: its sockets, its client, and what it relayed.
pub(crate) struct Association {
    framing: Framing,
    /// Bytes to send on the TCP connection (the SOCKS 6 confirmation, and
    /// -11 datagrams and errors when the association is on TCP).
    tcp_out: Vec<u8>,
    /// What came on the TCP connection and is not a whole message yet.
    tcp_in: Vec<u8>,
    /// -11: the association was mapped to the TCP connection (its first
    /// datagram came there); from then on datagrams go both ways on it.
    over_tcp: bool,
    /// Routed to an upstream: every datagram goes through this association
    /// with it instead of our outbound sockets (`via_upstream.rs`).
    upstream: Option<std::sync::Arc<sixsocks_client::SocksDatagram>>,
    client_ip: IpAddr,
    /// The client's port: declared in the request, or learnt from its first
    /// valid datagram; fixed from then on.
    client_port: Option<u16>,
    socket: UdpSocket,
    out4: Option<UdpSocket>,
    out6: Option<UdpSocket>,
    reassembler: Reassembler,
    dns: HashMap<String, (Instant, IpAddr)>,
    /// Datagrams waiting for a name lookup, by name.
    resolving: HashMap<String, Vec<(u16, Vec<u8>)>>,
    /// Their payload bytes, counted here and in `limits` (in all).
    queued_bytes: usize,
    /// Caps on queued bytes: this association's and all of them together.
    queue_cap: usize,
    queue_cap_total: usize,
    limits: std::sync::Arc<AssociationLimits>,
    resolved_tx: mpsc::UnboundedSender<(String, Result<IpAddr, String>)>,
    resolved_rx: mpsc::UnboundedReceiver<(String, Result<IpAddr, String>)>,
    stats: UdpStats,
}

impl Framing {
    /// SOCKS 6 framing for association `id` of `request`, whose
    /// confirmation goes out when the first datagram arrives.
    pub(crate) fn socks6(request: &Socks6Request, id: AssociationId) -> Self {
        let codec = request.profile.codec();
        let asked = request
            .options
            .stack_requests(sixsocks_proto::v6::Leg::PROXY_REMOTE)
            .udp_error
            == Some(true);
        Framing::Socks6 {
            codec,
            id,
            // A confirmation this profile cannot encode (none today) is
            // simply not sent.
            confirmation: request.association_confirmation(id).ok(),
            report_errors: asked && icmp::supported(codec),
        }
    }

    /// Whether ICMP errors are relayed to the client (the reply says so).
    pub(crate) fn reports_errors(&self) -> bool {
        matches!(
            self,
            Framing::Socks6 {
                report_errors: true,
                ..
            }
        )
    }
}

impl Association {
    /// Take an association slot and open the relay socket on the address
    /// the client reached (or `udp_address`). `client_port`: the port the
    /// client said it sends from, if it said one.
    pub(crate) async fn open<'s>(
        client: &TcpStream,
        shared: &'s Shared,
        client_port: Option<u16>,
        framing: Framing,
    ) -> Result<(Slot<'s>, Association), RequestError> {
        let config = &shared.config;
        let client_addr = client.peer_addr()?;
        let slot = shared
            .udp_limits
            .acquire(
                client_addr.ip(),
                config.max_udp_associations,
                config.max_udp_per_client,
            )
            .ok_or(RequestError::Limit("too many UDP associations"))?;
        let relay_ip = config
            .udp_address
            .unwrap_or_else(|| client.local_addr().map_or(client_addr.ip(), |a| a.ip()));
        let socket = UdpSocket::bind(SocketAddr::new(relay_ip, 0)).await?;
        tracing::debug!(client = %client_addr, relay = ?socket.local_addr(), "udp association open");
        // Bounded in practice: at most MAX_LOOKUPS lookups are in flight.
        let (resolved_tx, resolved_rx) = mpsc::unbounded_channel();
        Ok((
            slot,
            Association {
                framing,
                tcp_out: Vec::new(),
                tcp_in: Vec::new(),
                over_tcp: false,
                upstream: None,
                client_ip: client_addr.ip(),
                client_port,
                socket,
                out4: None,
                out6: None,
                reassembler: Reassembler::new(ReassemblyLimits {
                    timeout: Duration::from_secs(config.udp_reassembly_timeout.max(5)),
                    max_size: config.max_datagram,
                    max_queues: 8,
                }),
                dns: HashMap::new(),
                resolving: HashMap::new(),
                queued_bytes: 0,
                queue_cap: config.udp_lookup_queue_bytes,
                queue_cap_total: config.udp_lookup_queue_bytes_total,
                limits: shared.udp_limits.clone(),
                resolved_tx,
                resolved_rx,
                stats: UdpStats::default(),
            },
        ))
    }

    /// Send every datagram through `up` (an association with an upstream).
    pub(crate) fn via_upstream(&mut self, up: sixsocks_client::SocksDatagram) {
        self.upstream = Some(std::sync::Arc::new(up));
    }

    /// The relay socket's address, for the reply.
    pub(crate) fn relay_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Relay until the association ends, and record how it went. Dropping
    /// the association afterwards closes every one of its sockets at once.
    pub(crate) async fn run(
        &mut self,
        client: &mut TcpStream,
        shared: &Shared,
        rec: &mut Record,
        relay_addr: SocketAddr,
    ) {
        let end = self.serve(client, shared, rec).await;
        rec.set_outcome(Outcome::Udp(UdpSummary {
            relay: relay_addr,
            end,
            to_remote: self.stats.to_remote.load(Ordering::Relaxed),
            to_client: self.stats.to_client.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            first_drop: self.stats.first_drop.get().cloned(),
        }));
    }

    async fn serve(&mut self, client: &mut TcpStream, shared: &Shared, rec: &Record) -> String {
        let idle = shared.config.udp_idle_timeout();
        // One buffer serves every socket: readiness is awaited with nothing
        // borrowed, and each handler drains its socket before the next wait.
        let mut buf = vec![0u8; RECV_BUF];
        let mut last = Instant::now();
        let errors = self.framing.reports_errors();
        let upstream = self.upstream.clone();
        let mut up_buf = if upstream.is_some() {
            vec![0u8; RECV_BUF]
        } else {
            Vec::new()
        };
        loop {
            let idle_deadline = last + idle;
            let side = tokio::select! {
                r = self.socket.readable() => r.map(|_| Side::Client),
                r = ready_opt(self.out4.as_ref(), errors) => r.map(|_| Side::Out4),
                r = ready_opt(self.out6.as_ref(), errors) => r.map(|_| Side::Out6),
                r = client.readable() => r.map(|_| Side::Control),
                r = via_upstream::recv(upstream.as_deref(), &mut up_buf) => match r {
                    Ok((n, from)) => Ok(Side::Upstream(n, from)),
                    Err(e) => return format!("upstream association: {e}"),
                },
                Some((name, result)) = self.resolved_rx.recv() => Ok(Side::Resolved(name, result)),
                _ = tokio::time::sleep_until(idle_deadline) => return "idle timeout".into(),
            };
            let side = match side {
                Ok(s) => s,
                Err(e) => return format!("socket error: {e}"),
            };
            if let Side::Resolved(name, result) = side {
                self.on_resolved(name, result, shared, rec).await;
                continue;
            }
            if let Side::Upstream(n, from) = side {
                last = Instant::now();
                self.relay_from_upstream(&up_buf[..n], from, shared, rec)
                    .await;
                continue;
            }
            if let Side::Control = side {
                if let Err(end) = self.read_control(client, shared, rec).await {
                    return end;
                }
                if let Err(e) = self.flush_tcp(client).await {
                    return format!("control connection error: {e}");
                }
                last = Instant::now();
                continue;
            }
            if errors && matches!(side, Side::Out4 | Side::Out6) {
                // First the ICMP errors (this clears the error readiness).
                self.relay_icmp_errors(matches!(side, Side::Out6)).await;
                if let Err(e) = self.flush_tcp(client).await {
                    return format!("control connection error: {e}");
                }
            }
            // Drain what is ready, a bounded batch at a time so that one
            // busy direction cannot starve the others.
            for _ in 0..BATCH {
                let socket = match &side {
                    Side::Client => Some(&self.socket),
                    Side::Out4 => self.out4.as_ref(),
                    Side::Out6 => self.out6.as_ref(),
                    Side::Control | Side::Resolved(..) | Side::Upstream(..) => None,
                };
                let Some(socket) = socket else { break };
                let (n, src) = match socket.try_recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive error");
                        if matches!(side, Side::Out4 | Side::Out6) {
                            // An ICMP error the kernel queued (IP_RECVERR).
                            self.relay_icmp_errors(matches!(side, Side::Out6)).await;
                        }
                        break;
                    }
                };
                last = Instant::now();
                match &side {
                    Side::Client => {
                        self.handle_client_datagram(&buf[..n], src, shared, rec)
                            .await;
                    }
                    _ => {
                        self.handle_remote_datagram(&buf[..n], src, shared, rec)
                            .await
                    }
                }
                if let Err(e) = self.flush_tcp(client).await {
                    return format!("control connection error: {e}");
                }
            }
        }
    }

    fn drop_datagram(&self, reason: UdpDrop, why: &str, src: SocketAddr) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        let _ = self.stats.first_drop.set(why.to_string());
        crate::metrics::udp_drop(reason, 1);
        tracing::debug!(%src, why, "udp datagram dropped");
    }

    /// [`Self::drop_datagram`], for a function that returns what it kept.
    fn dropped<T>(&self, reason: UdpDrop, why: &str, src: SocketAddr) -> Option<T> {
        self.drop_datagram(reason, why, src);
        None
    }

    async fn handle_client_datagram(
        &mut self,
        dgram: &[u8],
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        if !same_ip(src.ip(), self.client_ip) {
            return self.drop_datagram(UdpDrop::NotFromClient, "not from the client", src);
        }
        if matches!(self.client_port, Some(p) if p != src.port()) {
            return self.drop_datagram(UdpDrop::NotFromClient, "not from the client's port", src);
        }
        if self.over_tcp {
            return self.drop_datagram(
                UdpDrop::NotFromClient,
                "the association is on the TCP connection",
                src,
            );
        }
        let Some((target, data)) = self.unwrap_client_datagram(dgram, src) else {
            return;
        };
        self.forward_client(target, data, src, shared, rec).await;
    }

    /// A client datagram's payload to its target (whichever way it came).
    async fn forward_client(
        &mut self,
        target: TargetAddr,
        data: Vec<u8>,
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        if data.len() > shared.config.max_datagram {
            return self.drop_datagram(UdpDrop::TooLarge, "larger than max_datagram", src);
        }
        if let Some(up) = self.upstream.clone() {
            return self
                .send_via_upstream(&up, target, &data, src, shared, rec)
                .await;
        }
        // A name that is an address (`0x7f.1`, `[::1]`) is that address.
        let (ip, name) = match Dest::of(&target) {
            Dest::Addr { ip, .. } => (ip, None),
            Dest::Unknown => return,
            Dest::Name(name, _) => match self.cached(name) {
                Some(ip) => (ip, Some(name)),
                None => {
                    // A name the rules block is not even looked up.
                    let dest = Dest::Name(name, target.port);
                    if let Verdict::Block(_) = shared.rules.check(&rec.facts(shared, dest)) {
                        crate::metrics::rule_block("udp");
                        return self.drop_datagram(UdpDrop::Blocked, "blocked by the rules", src);
                    }
                    return self.queue_for_lookup(name, target.port, data, src, shared);
                }
            },
        };
        self.send_remote(ip, name, target.port, &data, src, shared, rec)
            .await;
    }

    /// The target and payload of a client datagram, unwrapped from its
    /// framing (SOCKS5: reassembled from its fragments); `None` when
    /// there is nothing to send yet, or it was dropped.
    fn unwrap_client_datagram(
        &mut self,
        dgram: &[u8],
        src: SocketAddr,
    ) -> Option<(TargetAddr, Vec<u8>)> {
        match &mut self.framing {
            Framing::Socks5 => {
                let (header, offset) = match UdpHeader::parse(dgram) {
                    Ok(h) => h,
                    Err(e) => {
                        return self.dropped(UdpDrop::BadHeader, &format!("bad header: {e}"), src)
                    }
                };
                // The first datagram from the client's IP fixes its port.
                self.client_port = Some(src.port());
                let payload = &dgram[offset..];
                let pushed = self
                    .reassembler
                    .push(header, payload, Instant::now().into_std());
                // Sequences evicted to make room are lost datagrams too.
                let evicted = self.reassembler.take_evicted() as u64;
                self.stats.dropped.fetch_add(evicted, Ordering::Relaxed);
                if evicted > 0 {
                    let _ = self
                        .stats
                        .first_drop
                        .set("fragment sequence evicted".into());
                }
                crate::metrics::udp_drop(UdpDrop::Fragment, evicted);
                match pushed {
                    Fragment::Complete(t, d) => Some((t, d)),
                    Fragment::Queued => None,
                    Fragment::Dropped(why) => {
                        let reason = match why {
                            DropReason::TooLarge => UdpDrop::TooLarge,
                            _ => UdpDrop::Fragment,
                        };
                        self.dropped(reason, &format!("fragment: {why:?}"), src)
                    }
                }
            }
            Framing::Socks6 {
                codec,
                id,
                confirmation,
                ..
            } => {
                let (header, payload) = match codec.parse_datagram(dgram) {
                    Ok(h) => h,
                    Err(e) => {
                        return self.dropped(UdpDrop::BadHeader, &format!("bad header: {e}"), src)
                    }
                };
                if header.association != *id {
                    return self.dropped(UdpDrop::BadHeader, "unknown association id", src);
                }
                // The first datagram with the right id fixes the 5-tuple,
                // and is confirmed on the TCP connection.
                self.client_port = Some(src.port());
                if let Some(c) = confirmation.take() {
                    self.tcp_out.extend_from_slice(&c);
                }
                let payload = &dgram[payload];
                if header.is_confirmation_request() && payload.is_empty() {
                    return None;
                }
                Some((header.target, payload.to_vec()))
            }
        }
    }

    /// Whether the rules let a datagram go to `ip:port` (reached through
    /// `name`, if it was one). Not logged per datagram: drops are counted.
    fn allowed(
        &self,
        ip: IpAddr,
        name: Option<&str>,
        port: u16,
        shared: &Shared,
        rec: &Record,
    ) -> Result<(), &'static str> {
        if destination::is_unspecified(ip) {
            return Err("an unspecified address is never a target");
        }
        if shared.rules.is_empty() {
            return Ok(());
        }
        let dest = Dest::Addr { name, ip, port };
        match shared.rules.check(&rec.facts(shared, dest)) {
            Verdict::Block(_) => {
                crate::metrics::rule_block("udp");
                Err("blocked by the rules")
            }
            Verdict::Pass(Some((_, rule))) if rule.route.is_some() => {
                Err("the rules route it upstream: not supported for UDP")
            }
            _ => Ok(()),
        }
    }

    /// Send one datagram to a remote host through the outbound socket of
    /// its family.
    #[allow(clippy::too_many_arguments)]
    async fn send_remote(
        &mut self,
        ip: IpAddr,
        name: Option<&str>,
        port: u16,
        data: &[u8],
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        if let Err(why) = self.allowed(ip, name, port, shared, rec) {
            return self.drop_datagram(UdpDrop::Blocked, why, src);
        }
        let dst = SocketAddr::new(ip, port);
        let out = match self.outbound(ip).await {
            Ok(s) => s,
            Err(e) => {
                return self.drop_datagram(
                    UdpDrop::SendError,
                    &format!("no outbound socket: {e}"),
                    src,
                )
            }
        };
        match out.send_to(data, dst).await {
            Ok(_) => {
                self.stats.to_remote.fetch_add(1, Ordering::Relaxed);
                udp_datagram(Direction::Up);
                rec.counters.add_up(data.len() as u64);
            }
            Err(e) => self.drop_datagram(UdpDrop::SendError, &format!("send to {dst}: {e}"), src),
        }
    }

    async fn handle_remote_datagram(
        &mut self,
        data: &[u8],
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        let port = self.client_port;
        if port.is_none() && !self.over_tcp {
            return self.drop_datagram(UdpDrop::NotReady, "client address not known yet", src);
        }
        if data.len() > shared.config.max_datagram {
            return self.drop_datagram(UdpDrop::TooLarge, "larger than max_datagram", src);
        }
        let source = TargetAddr::from(SocketAddr::new(src.ip().to_canonical(), src.port()));
        let dgram = match &self.framing {
            Framing::Socks5 => UdpHeader {
                frag: 0,
                target: source,
            }
            .datagram(data),
            Framing::Socks6 {
                codec,
                id,
                confirmation,
                ..
            } => {
                if confirmation.is_some() {
                    return self.drop_datagram(
                        UdpDrop::NotReady,
                        "association not confirmed yet",
                        src,
                    );
                }
                codec.datagram(
                    &DatagramHeader {
                        association: *id,
                        target: source,
                    },
                    data,
                )
            }
        };
        let Ok(dgram) = dgram else {
            return self.drop_datagram(UdpDrop::SendError, "cannot encode header", src);
        };
        match self.send_to_client(&dgram, port).await {
            Ok(()) => {
                self.stats.to_client.fetch_add(1, Ordering::Relaxed);
                udp_datagram(Direction::Down);
                rec.counters.add_down(data.len() as u64);
            }
            Err(why) => self.drop_datagram(UdpDrop::SendError, &why, src),
        }
    }

    /// Send a framed message to the client: on the TCP connection when the
    /// association is there (queued for the next flush, up to a cap), or
    /// over UDP to its port.
    async fn send_to_client(&mut self, msg: &[u8], port: Option<u16>) -> Result<(), String> {
        if self.over_tcp {
            if self.tcp_out.len() + msg.len() > over_tcp::MAX_QUEUED {
                return Err("the client's TCP connection is backed up".into());
            }
            self.tcp_out.extend_from_slice(msg);
            return Ok(());
        }
        let Some(port) = port else {
            return Err("client address not known yet".into());
        };
        let client = SocketAddr::new(self.client_ip, port);
        self.socket
            .send_to(msg, client)
            .await
            .map(|_| ())
            .map_err(|e| format!("send to client: {e}"))
    }

    /// Write what is queued for the TCP connection.
    async fn flush_tcp(&mut self, client: &mut TcpStream) -> std::io::Result<()> {
        if self.tcp_out.is_empty() {
            return Ok(());
        }
        client.write_all(&self.tcp_out).await?;
        self.tcp_out.clear();
        Ok(())
    }

    /// A fresh cached address for `name`.
    fn cached(&self, name: &str) -> Option<IpAddr> {
        self.dns
            .get(name)
            .filter(|(at, _)| at.elapsed() < DNS_CACHE_TTL)
            .map(|(_, ip)| *ip)
    }

    /// Keep a datagram to a name not resolved yet, and start the lookup
    /// (in a task of its own, so a slow name never stalls the association).
    fn queue_for_lookup(
        &mut self,
        name: &str,
        port: u16,
        data: Vec<u8>,
        src: SocketAddr,
        shared: &Shared,
    ) {
        let queue_len = self.resolving.get(name).map(Vec::len);
        if queue_len.is_some_and(|n| n >= MAX_QUEUED_PER_NAME) {
            return self.drop_datagram(
                UdpDrop::Overload,
                "too many datagrams waiting for a lookup",
                src,
            );
        }
        if queue_len.is_none() && self.resolving.len() >= MAX_LOOKUPS {
            return self.drop_datagram(UdpDrop::Overload, "too many lookups in flight", src);
        }
        // The bytes held for lookups are capped here and in all.
        let n = data.len();
        if self.queued_bytes + n > self.queue_cap {
            return self.drop_datagram(
                UdpDrop::QueueFull,
                "the association's bytes waiting for lookups are at their cap",
                src,
            );
        }
        if !self.limits.reserve_queued(n, self.queue_cap_total) {
            return self.drop_datagram(
                UdpDrop::QueueFull,
                "the bytes waiting for lookups in all associations are at their cap",
                src,
            );
        }
        self.queued_bytes += n;
        if let Some(queue) = self.resolving.get_mut(name) {
            queue.push((port, data));
            return;
        }
        self.resolving.insert(name.to_string(), vec![(port, data)]);
        let resolver = shared.resolver.clone();
        let client = self.client_ip;
        let tx = self.resolved_tx.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            // As every target is resolved: no .onion to DNS, no unspecified
            // address.
            let host = Host::Domain(name.clone());
            let result = resolver
                .target(&host, Some(client))
                .await
                .and_then(|a| a.first().copied().ok_or(RequestError::HostUnreachable));
            // The association may be gone; then nobody needs the answer.
            let _ = tx.send((name, result.map_err(|e| e.to_string())));
        });
    }

    /// A lookup finished: remember the answer and send what waited for it.
    async fn on_resolved(
        &mut self,
        name: String,
        result: Result<IpAddr, String>,
        shared: &Shared,
        rec: &Record,
    ) {
        let queued = self.resolving.remove(&name).unwrap_or_default();
        let bytes: usize = queued.iter().map(|(_, d)| d.len()).sum();
        self.release_queued(bytes);
        match result {
            Ok(ip) => {
                if self.dns.len() >= DNS_CACHE_MAX {
                    self.dns.retain(|_, (at, _)| at.elapsed() < DNS_CACHE_TTL);
                    if self.dns.len() >= DNS_CACHE_MAX {
                        self.dns.clear();
                    }
                }
                self.dns.insert(name.clone(), (Instant::now(), ip));
                let src = SocketAddr::new(self.client_ip, self.client_port.unwrap_or(0));
                for (port, data) in queued {
                    self.send_remote(ip, Some(&name), port, &data, src, shared, rec)
                        .await;
                }
            }
            Err(e) => {
                let src = SocketAddr::new(self.client_ip, self.client_port.unwrap_or(0));
                for _ in queued {
                    self.drop_datagram(
                        UdpDrop::Unresolved,
                        &format!("cannot resolve {name}: {e}"),
                        src,
                    );
                }
            }
        }
    }

    /// `n` queued bytes left the lookup queues (sent or dropped).
    fn release_queued(&mut self, n: usize) {
        let n = n.min(self.queued_bytes);
        self.queued_bytes -= n;
        self.limits.release_queued(n);
    }

    async fn outbound(&mut self, ip: IpAddr) -> std::io::Result<&UdpSocket> {
        let slot = if ip.is_ipv4() {
            &mut self.out4
        } else {
            &mut self.out6
        };
        if slot.is_none() {
            let any: SocketAddr = if ip.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(any).await?;
            if self.framing.reports_errors() {
                // Without it the kernel drops ICMP errors for unconnected
                // sockets; with it they queue for `relay_icmp_errors`.
                if let Err(e) = sixsocks_sys::set_recv_errors(&socket, ip.is_ipv6()) {
                    tracing::debug!(error = %e, "IP_RECVERR refused: no ICMP errors relayed");
                }
            }
            *slot = Some(socket);
        }
        slot.as_ref()
            .ok_or_else(|| std::io::Error::other("unreachable"))
    }
}

impl Drop for Association {
    /// Datagrams still waiting for lookups when the association ends give
    /// their bytes back to the global cap.
    fn drop(&mut self) {
        self.limits.release_queued(self.queued_bytes);
    }
}

enum Side {
    Client,
    Out4,
    Out6,
    Control,
    /// A name lookup finished.
    Resolved(String, Result<IpAddr, String>),
    /// A datagram from the upstream association: its length and source.
    Upstream(usize, TargetAddr),
}

/// Datagrams handled per wake-up of one socket before looking at the others.
const BATCH: usize = 32;

/// An outbound socket's readiness: a datagram, or, with `errors`, an
/// error (an ICMP error queued with IP_RECVERR shows as error readiness,
/// not as readable; `relay_icmp_errors` consumes it).
async fn ready_opt(socket: Option<&UdpSocket>, errors: bool) -> std::io::Result<()> {
    use tokio::io::Interest;
    let interest = if errors {
        Interest::READABLE | Interest::ERROR
    } else {
        Interest::READABLE
    };
    match socket {
        Some(s) => s.ready(interest).await.map(|_| ()),
        None => std::future::pending().await,
    }
}

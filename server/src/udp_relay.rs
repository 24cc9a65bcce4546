//! UDP ASSOCIATE (SOCKS5): a relay socket per association, datagrams with
//! the RFC 1928 header both ways, fragment reassembly, and the association's
//! end when its TCP connection ends.
//!
//! The client-facing socket accepts datagrams only from the client: its IP
//! is the TCP connection's peer IP; its port is the one the request named,
//! or, when the request said 0, the port of the first datagram from that IP
//! (then fixed: later datagrams from other ports are dropped, so nobody can
//! re-point the association). Datagrams to remote hosts leave through
//! separate outbound sockets (one per address family, opened when first
//! needed); what comes back on them is wrapped in a header naming its source
//! and sent to the client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sixsocks_proto::udp::{Fragment, Reassembler, ReassemblyLimits, UdpHeader};
use sixsocks_proto::{Host, ReplyCode, Request, TargetAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::bind::same_ip;
use crate::error::RequestError;
use crate::session::{Record, Shared};

/// Receive buffer: the largest UDP payload plus room for our header.
const RECV_BUF: usize = 65_536 + 262;
/// Names resolved for datagrams are remembered this long.
const DNS_CACHE_TTL: Duration = Duration::from_secs(30);
/// And at most this many per association.
const DNS_CACHE_MAX: usize = 256;

/// Counts associations overall and per client IP.
#[derive(Default)]
pub struct AssociationLimits {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases an association's place in [`AssociationLimits`] when dropped.
pub(crate) struct Slot<'a> {
    limits: &'a AssociationLimits,
    ip: IpAddr,
}

impl AssociationLimits {
    fn acquire(&self, ip: IpAddr, max_total: usize, max_per_ip: usize) -> Option<Slot<'_>> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.get(&ip).copied().unwrap_or(0);
        if n >= max_per_ip || self.total.load(Ordering::Relaxed) >= max_total {
            return None;
        }
        map.insert(ip, n + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot { limits: self, ip })
    }

    /// Associations alive now.
    pub fn active(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut map = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-association datagram counts, for the session's log line.
#[derive(Default, Debug)]
pub struct UdpStats {
    pub to_remote: AtomicU64,
    pub to_client: AtomicU64,
    pub dropped: AtomicU64,
}

pub(crate) async fn run(
    client: &mut TcpStream,
    request: &Request,
    shared: &Shared,
    rec: &mut Record,
) -> Result<(), RequestError> {
    let config = &shared.config;
    let client_addr = client.peer_addr()?;
    let _slot = shared
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
    let relay_addr = socket.local_addr()?;
    // The port the client said it will send from, if it said one.
    let declared_port = match request.target.port {
        0 => None,
        p => Some(p),
    };
    client
        .write_all(&request.reply(
            ReplyCode::Succeeded,
            Some(&relay_addr.into()),
            config.extended_errors,
        ))
        .await?;
    rec.reply = Some(ReplyCode::Succeeded);
    tracing::debug!(client = %client_addr, relay = %relay_addr, "udp association open");

    let mut assoc = Association {
        client_ip: client_addr.ip(),
        client_port: declared_port,
        socket,
        out4: None,
        out6: None,
        reassembler: Reassembler::new(ReassemblyLimits {
            timeout: Duration::from_secs(config.udp_reassembly_timeout.max(5)),
            max_size: config.max_datagram,
            max_queues: 8,
        }),
        dns: HashMap::new(),
        stats: UdpStats::default(),
    };
    let end = assoc.serve(client, shared, rec).await;
    rec.outcome = Some(format!(
        "udp {relay_addr}: {end}; datagrams to remote {}, to client {}, dropped {}",
        assoc.stats.to_remote.load(Ordering::Relaxed),
        assoc.stats.to_client.load(Ordering::Relaxed),
        assoc.stats.dropped.load(Ordering::Relaxed)
    ));
    // Dropping `assoc` closes every socket of the association at once.
    Ok(())
}

struct Association {
    client_ip: IpAddr,
    client_port: Option<u16>,
    socket: UdpSocket,
    out4: Option<UdpSocket>,
    out6: Option<UdpSocket>,
    reassembler: Reassembler,
    dns: HashMap<String, (Instant, IpAddr)>,
    stats: UdpStats,
}

impl Association {
    async fn serve(&mut self, client: &mut TcpStream, shared: &Shared, rec: &Record) -> String {
        let idle = shared.config.udp_idle_timeout();
        // One buffer serves every socket: readiness is awaited with nothing
        // borrowed, and each handler drains its socket before the next wait.
        let mut buf = vec![0u8; RECV_BUF];
        let mut last = Instant::now();
        loop {
            let idle_deadline = last + idle;
            let side = tokio::select! {
                r = self.socket.readable() => r.map(|_| Side::Client),
                r = ready_opt(self.out4.as_ref()) => r.map(|_| Side::Out4),
                r = ready_opt(self.out6.as_ref()) => r.map(|_| Side::Out6),
                r = client.readable() => r.map(|_| Side::Control),
                _ = tokio::time::sleep_until(idle_deadline) => return "idle timeout".into(),
            };
            let side = match side {
                Ok(s) => s,
                Err(e) => return format!("socket error: {e}"),
            };
            if let Side::Control = side {
                let mut b = [0u8; 512];
                match client.try_read(&mut b) {
                    Ok(0) => return "control connection closed".into(),
                    Ok(_) => {} // Nothing is expected here; ignore it.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return format!("control connection error: {e}"),
                }
                continue;
            }
            // Drain what is ready, a bounded batch at a time so that one
            // busy direction cannot starve the others.
            for _ in 0..BATCH {
                let socket = match side {
                    Side::Client => Some(&self.socket),
                    Side::Out4 => self.out4.as_ref(),
                    Side::Out6 => self.out6.as_ref(),
                    Side::Control => None,
                };
                let Some(socket) = socket else { break };
                let (n, src) = match socket.try_recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive error");
                        break;
                    }
                };
                last = Instant::now();
                match side {
                    Side::Client => {
                        self.handle_client_datagram(&buf[..n], src, shared, rec)
                            .await
                    }
                    _ => {
                        self.handle_remote_datagram(&buf[..n], src, shared, rec)
                            .await
                    }
                }
            }
        }
    }

    fn drop_datagram(&self, why: &str, src: SocketAddr) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%src, why, "udp datagram dropped");
    }

    async fn handle_client_datagram(
        &mut self,
        dgram: &[u8],
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        if !same_ip(src.ip(), self.client_ip) {
            return self.drop_datagram("not from the client", src);
        }
        match self.client_port {
            Some(p) if p != src.port() => {
                return self.drop_datagram("not from the client's port", src)
            }
            Some(_) => {}
            None => self.client_port = Some(src.port()),
        }
        let (header, offset) = match UdpHeader::parse(dgram) {
            Ok(h) => h,
            Err(e) => return self.drop_datagram(&format!("bad header: {e}"), src),
        };
        let payload = &dgram[offset..];
        let (target, data) = match self
            .reassembler
            .push(header, payload, Instant::now().into_std())
        {
            Fragment::Complete(t, d) => (t, d),
            Fragment::Queued => return,
            Fragment::Dropped(why) => {
                return self.drop_datagram(&format!("fragment: {why:?}"), src)
            }
        };
        if data.len() > shared.config.max_datagram {
            return self.drop_datagram("larger than max_datagram", src);
        }
        let ip = match self.resolve(&target.host, shared).await {
            Ok(ip) => ip,
            Err(e) => {
                return self.drop_datagram(&format!("cannot resolve {}: {e}", target.host), src)
            }
        };
        let dst = SocketAddr::new(ip, target.port);
        let out = match self.outbound(ip).await {
            Ok(s) => s,
            Err(e) => return self.drop_datagram(&format!("no outbound socket: {e}"), src),
        };
        match out.send_to(&data, dst).await {
            Ok(_) => {
                self.stats.to_remote.fetch_add(1, Ordering::Relaxed);
                rec.counters
                    .up
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Err(e) => self.drop_datagram(&format!("send to {dst}: {e}"), src),
        }
    }

    async fn handle_remote_datagram(
        &mut self,
        data: &[u8],
        src: SocketAddr,
        shared: &Shared,
        rec: &Record,
    ) {
        let Some(port) = self.client_port else {
            return self.drop_datagram("client address not known yet", src);
        };
        if data.len() > shared.config.max_datagram {
            return self.drop_datagram("larger than max_datagram", src);
        }
        let source = SocketAddr::new(src.ip().to_canonical(), src.port());
        let header = UdpHeader {
            frag: 0,
            target: TargetAddr::from(source),
        };
        let Ok(dgram) = header.datagram(data) else {
            return self.drop_datagram("cannot encode header", src);
        };
        let client = SocketAddr::new(self.client_ip, port);
        match self.socket.send_to(&dgram, client).await {
            Ok(_) => {
                self.stats.to_client.fetch_add(1, Ordering::Relaxed);
                rec.counters
                    .down
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Err(e) => self.drop_datagram(&format!("send to client: {e}"), src),
        }
    }

    async fn resolve(&mut self, host: &Host, shared: &Shared) -> Result<IpAddr, RequestError> {
        let name = match host {
            Host::Ip(ip) => return Ok(*ip),
            Host::Domain(d) => d,
        };
        let now = Instant::now();
        if let Some((at, ip)) = self.dns.get(name) {
            if now.duration_since(*at) < DNS_CACHE_TTL {
                return Ok(*ip);
            }
        }
        let ip = *shared
            .resolver
            .lookup(name)
            .await?
            .first()
            .ok_or(RequestError::HostUnreachable)?;
        if self.dns.len() >= DNS_CACHE_MAX {
            self.dns
                .retain(|_, (at, _)| now.duration_since(*at) < DNS_CACHE_TTL);
            if self.dns.len() >= DNS_CACHE_MAX {
                self.dns.clear();
            }
        }
        self.dns.insert(name.clone(), (now, ip));
        Ok(ip)
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
            *slot = Some(UdpSocket::bind(any).await?);
        }
        slot.as_ref()
            .ok_or_else(|| std::io::Error::other("unreachable"))
    }
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Out4,
    Out6,
    Control,
}

/// Datagrams handled per wake-up of one socket before looking at the others.
const BATCH: usize = 32;

async fn ready_opt(socket: Option<&UdpSocket>) -> std::io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

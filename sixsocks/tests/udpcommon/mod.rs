//! Raw UDP ASSOCIATE helpers shared by `udp_stress.rs` and
//! `udp_bad_input.rs` (on top of `common/`, which they do not change).
//! Datagrams are built by hand, independent of the project's own protocol
//! crate, so the tests check it rather than mirror it.
#![allow(dead_code)]

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::{connect, read_v5_reply, socks5_handshake, v5_addr, v5_request};

/// How long a test waits for one datagram that should come.
pub const UDP_TIMEOUT: Duration = Duration::from_secs(5);

/// Socket buffers asked for on the test's own sockets (the kernel may give
/// less: `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP echo server in a thread, counting and recording what it received.
pub struct UdpEcho {
    pub addr: SocketAddr,
    pub count: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl UdpEcho {
    /// Datagrams received so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    /// Copies of the datagrams received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.got.lock().unwrap().clone()
    }
    /// Whether a datagram whose payload starts with `prefix` arrived.
    pub fn saw_prefix(&self, prefix: &[u8]) -> bool {
        self.got
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.starts_with(prefix))
    }
}

/// A UDP echo server on `ip` (port chosen by the kernel).
pub fn udp_echo_on(ip: IpAddr) -> UdpEcho {
    let sock = bind_udp(SocketAddr::new(ip, 0));
    // The echo waits for as long as the test runs.
    sock.set_read_timeout(None).unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (c2, g2) = (count.clone(), got.clone());
    thread::spawn(move || {
        let mut buf = vec![0u8; 70_000];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            g2.lock().unwrap().push(buf[..n].to_vec());
            c2.fetch_add(1, Ordering::SeqCst);
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    UdpEcho { addr, count, got }
}

pub fn udp_echo() -> UdpEcho {
    udp_echo_on(Ipv4Addr::LOCALHOST.into())
}

/// A UDP socket on `addr` with large buffers and the test timeout.
pub fn bind_udp(addr: SocketAddr) -> UdpSocket {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )
    .unwrap();
    if addr.is_ipv6() {
        s.set_only_v6(true).unwrap();
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())
        .unwrap_or_else(|e| panic!("bind UDP {addr}: {e}"));
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(UDP_TIMEOUT)).unwrap();
    s
}

/// A client UDP socket on 127.0.0.1.
pub fn udp_client() -> UdpSocket {
    bind_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

/// Whether ::1 works here.
pub fn have_ipv6() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// `00 00 FRAG | target (ATYP ADDR PORT) | DATA`.
pub fn dgram(frag: u8, target: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, 0x00, frag];
    v.extend_from_slice(target);
    v.extend_from_slice(data);
    v
}

/// UDP ASSOCIATE on a fresh connection to `proxy`, declaring `client`
/// (use the client socket's address, or `0.0.0.0:0`). Returns the control
/// connection and the relay address (an unspecified reply is the proxy's IP).
pub fn associate(proxy: SocketAddr, client: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut c = connect(proxy);
    socks5_handshake(&mut c, None);
    c.write_all(&v5_request(0x03, &v5_addr(client))).unwrap();
    let r = read_v5_reply(&mut c);
    assert_eq!(r.rep, 0x00, "UDP ASSOCIATE refused: {r:?}");
    let ip = r.ip().expect("the relay is an IP address");
    let ip = if ip.is_unspecified() { proxy.ip() } else { ip };
    assert_ne!(r.port, 0, "relay port 0: {r:?}");
    (c, SocketAddr::new(ip, r.port))
}

/// A datagram that came back through the relay, header split off.
#[derive(Debug)]
pub struct Relayed {
    pub frag: u8,
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// Parse a relayed datagram (IPv4 or IPv6 source); panics on anything else.
pub fn parse_relayed(d: &[u8]) -> Relayed {
    assert!(d.len() >= 10, "short relayed datagram: {d:02x?}");
    assert_eq!(&d[..2], &[0, 0], "RSV of a relayed datagram");
    let (ip, rest): (IpAddr, &[u8]) = match d[3] {
        0x01 => {
            let o: [u8; 4] = d[4..8].try_into().unwrap();
            (Ipv4Addr::from(o).into(), &d[8..])
        }
        0x04 => {
            assert!(d.len() >= 22, "short relayed IPv6 datagram");
            let o: [u8; 16] = d[4..20].try_into().unwrap();
            (Ipv6Addr::from(o).into(), &d[20..])
        }
        a => panic!("relayed datagram with ATYP {a:02x}"),
    };
    Relayed {
        frag: d[2],
        from: SocketAddr::new(ip, u16::from_be_bytes([rest[0], rest[1]])),
        data: rest[2..].to_vec(),
    }
}

/// Receive one relayed datagram (panics after the socket's timeout).
pub fn recv_relayed(s: &UdpSocket) -> Relayed {
    let mut buf = vec![0u8; 70_000];
    let (n, _) = s
        .recv_from(&mut buf)
        .expect("no datagram came back through the UDP relay");
    parse_relayed(&buf[..n])
}

/// Whether a datagram arrives within `wait` (it is consumed).
pub fn something_arrives(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let old = s.read_timeout().unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 70_000];
    let r = match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv_from: {e}"),
    };
    s.set_read_timeout(old).unwrap();
    r
}

/// Resident memory of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

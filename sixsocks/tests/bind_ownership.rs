//! BIND listeners and SOCKS 6 state cannot be taken, chosen or kept open
//! against the operator (issue 11, items 6 and 9), against the real binary
//! with raw requests:
//! - a SOCKS 6 BIND gets an ephemeral port unless `bind_ports` allows the
//!   one it asks for, and the rules see the address actually bound;
//! - a backlog BIND's control connection obeys the idle timeout;
//! - a CONNECT to one of the proxy's own BIND listeners is refused (`02`);
//! - without a users file, a user name is no identity: a client on another
//!   address that claims it gets neither the token window nor the backlog.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use common::*;

const BIND: u8 = 0x02;
const NOOP: u8 = 0x00;

fn connect_from(src: Ipv4Addr, proxy: SocketAddr) -> TcpStream {
    common::connect_from(IpAddr::V4(src), proxy)
}

/// `PORT | ATYP=01 | IPv4`.
fn v6_addr(a: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = a.ip() else {
        panic!("IPv4 expected")
    };
    [
        a.port().to_be_bytes().to_vec(),
        vec![0x01],
        ip.octets().to_vec(),
    ]
    .concat()
}

/// A SOCKS 6 (-05) request with its options.
fn request(cmd: u8, addr: &[u8], options: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0x06, 0x00, cmd];
    out.extend_from_slice(addr);
    out.push(options.len() as u8);
    for o in options {
        out.extend_from_slice(o);
    }
    out
}

fn opt(kind: u8, data: &[u8]) -> Vec<u8> {
    [vec![kind, (2 + data.len()) as u8], data.to_vec()].concat()
}

/// Username/password credentials: the method advertisement and the data.
fn creds(user: &str, pass: &str) -> Vec<Vec<u8>> {
    let mut data = vec![0x02];
    data.extend_from_slice(&userpass_msg(user.as_bytes(), pass.as_bytes()));
    vec![opt(0x02, &[0, 0, 0x02]), opt(0x03, &data)]
}

fn token_request(window: u32) -> Vec<u8> {
    opt(0x04, &[[0x00].as_slice(), &window.to_be_bytes()].concat())
}

fn spend(token: u32) -> Vec<u8> {
    opt(0x04, &[[0x02].as_slice(), &token.to_be_bytes()].concat())
}

/// Listen backlog stack option (leg proxy-remote, level TCP, code 4).
fn backlog(n: u16) -> Vec<u8> {
    opt(0x01, &[[0x84, 0x04].as_slice(), &n.to_be_bytes()].concat())
}

fn read_options(s: &mut TcpStream, n: u8) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let h = read_n(s, 2);
            (h[0], read_n(s, h[1] as usize - 2))
        })
        .collect()
}

/// The authentication reply: `(type, options)`.
fn auth_reply(s: &mut TcpStream) -> (u8, Vec<(u8, Vec<u8>)>) {
    let h = read_n(s, 5);
    assert_eq!(&h[..2], &[0x06, 0x00]);
    (h[2], read_options(s, h[4]))
}

/// An operation reply: `(REP, bound address)`.
fn op_reply(s: &mut TcpStream) -> (u8, Option<SocketAddr>) {
    let h = read_n(s, 4);
    let port = u16::from_be_bytes([h[1], h[2]]);
    let addr = match h[3] {
        0x01 => {
            let a = read_n(s, 4);
            Some(SocketAddr::from(([a[0], a[1], a[2], a[3]], port)))
        }
        0x04 => {
            let a: [u8; 16] = read_n(s, 16).try_into().unwrap();
            Some(SocketAddr::from((a, port)))
        }
        t => panic!("ATYP {t:02x}"),
    };
    let n = read_n(s, 1)[0];
    read_options(s, n);
    (h[0], addr)
}

fn any_v4() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// A port outside Linux's default ephemeral range (32768–60999) that is
/// free now, so an ephemeral port can never equal it by chance.
fn free_low_port() -> u16 {
    (20_000..30_000)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 20000-29999")
}

/// SOCKS 6 BIND for `desired`: the first reply.
fn socks6_bind(
    proxy: SocketAddr,
    desired: SocketAddr,
    options: &[Vec<u8>],
) -> (TcpStream, u8, Option<SocketAddr>) {
    let mut s = connect(proxy);
    s.write_all(&request(BIND, &v6_addr(desired), options))
        .unwrap();
    assert_eq!(auth_reply(&mut s).0, 0x00);
    let (rep, bound) = op_reply(&mut s);
    (s, rep, bound)
}

/// Item 6: a requested port is honoured only inside `bind_ports`. On the
/// old code a BIND for any free port (80 as root) was bound as asked.
#[test]
fn socks6_bind_port_is_ephemeral_unless_allowed() {
    let server = Server::start(&[]);
    let asked = free_low_port();
    let desired = SocketAddr::from(([0, 0, 0, 0], asked));
    let (_s, rep, bound) = socks6_bind(server.addr, desired, &[]);
    assert_eq!(rep, 0x00);
    let bound = bound.unwrap();
    assert_ne!(bound.port(), asked, "the client chose the port");
    assert_ne!(bound.port(), 0);

    let server = Server::start(&["--bind-ports", "20000-29999"]);
    let asked = free_low_port();
    let (_s, rep, bound) = socks6_bind(server.addr, SocketAddr::from(([0, 0, 0, 0], asked)), &[]);
    assert_eq!(rep, 0x00);
    assert_eq!(bound.unwrap().port(), asked, "bind_ports allows it");
}

/// Item 6: the rules check the address bound, not the `0.0.0.0` asked
/// for. On the old code the BIND below succeeded.
#[test]
fn socks6_bind_rules_see_the_bound_address() {
    let dir = TempDir::new("bind-rules");
    let cfg = dir.join("sixsocks.toml");
    std::fs::write(
        &cfg,
        "[[rule]]\naction = \"block\"\ncommand = [\"bind\"]\nto = [\"127.0.0.0/8\"]\n\
         [[rule]]\naction = \"pass\"\n",
    )
    .unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let (_s, rep, _) = socks6_bind(server.addr, any_v4(), &[]);
    assert_eq!(rep, 0x02, "{}", server.log_text());
}

/// Item 6: a backlog BIND's control connection ends after the idle
/// timeout. On the old code it stayed open until the client closed it.
#[test]
fn socks6_backlog_control_connection_obeys_the_idle_timeout() {
    let server = Server::start(&["--idle-timeout", "2"]);
    let (mut s, rep, _) = socks6_bind(server.addr, any_v4(), &[backlog(4)]);
    assert_eq!(rep, 0x00);
    let (_, end) = read_to_close(&mut s);
    assert_ne!(end, End::Timeout, "the backlog connection was never closed");
    server.wait_session_ends(1);
    assert!(
        server.log_text().contains("idle for 2s, closed"),
        "{}",
        server.log_text()
    );
}

/// Item 6: a CONNECT to a live BIND listener is to one of the proxy's own
/// sockets (`02`). On the old code it connected, and became the BIND's
/// inbound connection.
#[test]
fn connect_to_a_bind_listener_is_an_own_socket() {
    let server = Server::start(&[]);
    let mut b = connect(server.addr);
    socks5_handshake(&mut b, None);
    b.write_all(&v5_request(0x02, &v5_addr(any_v4()))).unwrap();
    let first = read_v5_reply(&mut b);
    assert_eq!(first.rep, 0x00);
    let bound = SocketAddr::new(first.ip().unwrap(), first.port);
    let (_c, r) = socks5_connect(server.addr, &v5_addr(bound), None);
    assert_eq!(r.rep, 0x02, "{}", server.log_text());
    // SOCKS 6 BIND listeners too.
    let (_s6, rep, bound6) = socks6_bind(server.addr, any_v4(), &[]);
    assert_eq!(rep, 0x00);
    let (_c, r) = socks5_connect(server.addr, &v5_addr(bound6.unwrap()), None);
    assert_eq!(r.rep, 0x02);
}

/// Item 9: without a users file, "alice" is just a claim. A client on
/// 127.0.0.2 claiming it spent the token window granted to the "alice"
/// on 127.0.0.1 (and took her backlog) on the old code.
#[test]
fn unverified_names_own_nothing() {
    let server = Server::start(&[]);
    // alice on 127.0.0.1 gets a window.
    let mut a = connect_from(Ipv4Addr::new(127, 0, 0, 1), server.addr);
    let mut opts = creds("alice", "x");
    opts.push(token_request(8));
    a.write_all(&request(NOOP, &v6_addr(any_v4()), &opts))
        .unwrap();
    let (ty, options) = auth_reply(&mut a);
    assert_eq!(ty, 0x00);
    let (_, adv) = options
        .iter()
        .find(|(k, d)| *k == 0x04 && d.first() == Some(&0x01))
        .expect("a window advertisement");
    let base = u32::from_be_bytes([adv[1], adv[2], adv[3], adv[4]]);
    assert_eq!(op_reply(&mut a).0, 0x00);

    // Someone else on 127.0.0.2 claims "alice" and spends her first token.
    let mut m = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr);
    let mut opts = creds("alice", "y");
    opts.push(spend(base));
    m.write_all(&request(NOOP, &v6_addr(any_v4()), &opts))
        .unwrap();
    auth_reply(&mut m);
    assert_ne!(
        op_reply(&mut m).0,
        0x00,
        "another address spent alice's token"
    );

    // alice's token is still hers.
    let mut a2 = connect_from(Ipv4Addr::new(127, 0, 0, 1), server.addr);
    let mut opts = creds("alice", "x");
    opts.push(spend(base));
    a2.write_all(&request(NOOP, &v6_addr(any_v4()), &opts))
        .unwrap();
    auth_reply(&mut a2);
    assert_eq!(op_reply(&mut a2).0, 0x00, "alice's own token");

    // alice's backlog listener: the claimant cannot take from it.
    let mut bl = connect_from(Ipv4Addr::new(127, 0, 0, 1), server.addr);
    let mut opts = creds("alice", "x");
    opts.push(backlog(4));
    bl.write_all(&request(BIND, &v6_addr(any_v4()), &opts))
        .unwrap();
    auth_reply(&mut bl);
    let (rep, bound) = op_reply(&mut bl);
    assert_eq!(rep, 0x00);
    let bound = bound.unwrap();
    let mut m = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr);
    m.write_all(&request(BIND, &v6_addr(bound), &creds("alice", "y")))
        .unwrap();
    auth_reply(&mut m);
    let (rep, got) = op_reply(&mut m);
    assert!(
        rep != 0x00 || got != Some(bound),
        "another address took alice's backlog listener {bound}"
    );
}

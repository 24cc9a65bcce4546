//! Every spelling of a blocked loopback service is refused (issue 11,
//! item 1: an ACL bypass through `0.0.0.0` and `::`).
//!
//! A rule blocks `127.0.0.1` and `::1`, where a real TCP echo service and
//! real UDP echo services listen; everything else passes. Linux connects
//! `0.0.0.0` and `::` to the local host, and the resolver reads `0`, `0x0`,
//! `127.1` or `2130706433` as addresses, so each form below would reach the
//! blocked service if the rules compared addresses literally. Each form is
//! tried over SOCKS4 (IPv4 addresses), SOCKS4a (names), SOCKS5 and SOCKS 6
//! (CONNECT), and as a UDP datagram's destination over SOCKS5 and SOCKS 6.
//! Each must be refused (`5B` / `02`; datagrams dropped and counted) and the
//! services must never see a byte. A control service on `127.0.0.2`, which
//! the rules let through, proves the same paths work. Before the fix, the
//! unspecified forms got `00` and the service's data.

mod common;
mod udpcommon;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::*;
use udpcommon::*;

/// One spelling of the blocked service's address.
#[derive(Clone, Copy, Debug)]
enum Form {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Name(&'static str),
}

/// Whether a form reaches the IPv6 loopback (else the IPv4 one): the UDP
/// echo of that family is the one it would hit.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reaches {
    Loop4,
    Loop6,
}

fn forms() -> Vec<(Form, Reaches)> {
    use Form::*;
    use Reaches::*;
    let v6 = |s: &str| V6(s.parse().unwrap());
    vec![
        // The unspecified addresses: refused as targets whatever the rules.
        (V4(Ipv4Addr::UNSPECIFIED), Loop4),
        (v6("::"), Loop6),
        (v6("::ffff:0.0.0.0"), Loop4),
        (Name("0"), Loop4),
        (Name("0.0"), Loop4),
        (Name("0x0"), Loop4),
        (Name("0.0.0.0"), Loop4),
        (Name("::"), Loop6),
        (Name("[::]"), Loop6),
        (Name(PROXY_ONLY_ZERO_NAME), Loop4),
        (Name(PROXY_ONLY_ZERO6_NAME), Loop6),
        // Loopback in other spellings: the block rule must match them.
        (v6("::ffff:127.0.0.1"), Loop4),
        (v6("::127.0.0.1"), Loop4),
        (v6("64:ff9b::127.0.0.1"), Loop4),
        (Name("127.1"), Loop4),
        (Name("2130706433"), Loop4),
        (Name("0x7f.1"), Loop4),
        (Name("0177.0.0.1"), Loop4),
        (Name("::ffff:127.0.0.1"), Loop4),
        (Name("[::1]"), Loop6),
        (Name(PROXY_ONLY_NAME), Loop4),
    ]
}

/// `ATYP | ADDR` (SOCKS5 and SOCKS 6 share it).
fn atyp_addr(form: Form) -> Vec<u8> {
    match form {
        Form::V4(ip) => [&[0x01][..], &ip.octets()].concat(),
        Form::V6(ip) => [&[0x04][..], &ip.octets()].concat(),
        Form::Name(n) => [&[0x03, n.len() as u8][..], n.as_bytes()].concat(),
    }
}

/// SOCKS5: `ATYP ADDR PORT`.
fn v5(form: Form, port: u16) -> Vec<u8> {
    [atyp_addr(form), port.to_be_bytes().to_vec()].concat()
}

fn ip_form(a: SocketAddr) -> Form {
    match a.ip() {
        IpAddr::V4(ip) => Form::V4(ip),
        IpAddr::V6(ip) => Form::V6(ip),
    }
}

const RULES: &str = r#"
[[rule]]
action = "block"
to = ["127.0.0.1", "::1"]

[[rule]]
action = "pass"
"#;

/// SOCKS4 CONNECT (IPv4 forms) or SOCKS4a (names); the reply code.
fn socks4_code(proxy: SocketAddr, form: Form, port: u16) -> Option<u8> {
    let req = match form {
        Form::V4(ip) => v4_request(0x01, ip, port, b"", None),
        Form::Name(n) => v4a_request(0x01, n.as_bytes(), port, b""),
        Form::V6(_) => return None,
    };
    let mut s = connect(proxy);
    s.write_all(&req).unwrap();
    Some(read_v4_reply(&mut s)[1])
}

fn socks5_code(proxy: SocketAddr, form: Form, port: u16) -> u8 {
    socks5_connect(proxy, &v5(form, port), None).1.rep
}

/// SOCKS 6 (-05) CONNECT without options: `06 00 01 PORT ATYP ADDR 00`;
/// the operation reply's code (after the authentication reply).
fn socks6_code(proxy: SocketAddr, form: Form, port: u16) -> u8 {
    let mut s = connect(proxy);
    let mut req = vec![0x06, 0x00, 0x01];
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&atyp_addr(form));
    req.push(0);
    s.write_all(&req).unwrap();
    let auth = read_n(&mut s, 5);
    assert_eq!(
        &auth[..4],
        &[0x06, 0x00, 0x00, 0x00],
        "auth reply {auth:02x?}"
    );
    let op = read_n(&mut s, 4);
    op[0]
}

#[test]
fn every_spelling_of_a_blocked_loopback_is_refused_over_tcp() {
    let blocked = echo_server();
    assert!(blocked.v6, "the blocked service needs [::1] too");
    // The control service, on an address the rules pass.
    let control = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let control_addr = control.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in control.incoming().flatten() {
            let _ = s.write_all(b"control");
        }
    });
    let dir = TempDir::new("address-forms");
    let cfg = dir.join("sixsocks.toml");
    std::fs::write(&cfg, RULES).unwrap();
    let Some(server) =
        Server::start_with_hosts(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"])
    else {
        return;
    };
    let port = blocked.port();
    let mut failures = Vec::new();
    for (form, _) in forms() {
        if let Some(code) = socks4_code(server.addr, form, port) {
            if code != 0x5B {
                failures.push(format!("SOCKS4 {form:?}: {code:02x}"));
            }
        }
        let code = socks5_code(server.addr, form, port);
        if code != 0x02 {
            failures.push(format!("SOCKS5 {form:?}: {code:02x}"));
        }
        let code = socks6_code(server.addr, form, port);
        if code != 0x02 {
            failures.push(format!("SOCKS 6 {form:?}: {code:02x}"));
        }
    }
    assert!(
        failures.is_empty(),
        "forms not refused (want 5B / 02):\n{}\n{}",
        failures.join("\n"),
        server.log_text()
    );
    assert_eq!(blocked.accepted(), 0, "the blocked service was reached");
    // The same paths reach a service the rules let through.
    assert_eq!(
        socks4_code(server.addr, ip_form(control_addr), control_addr.port()),
        Some(0x5A)
    );
    assert_eq!(
        socks5_code(server.addr, ip_form(control_addr), control_addr.port()),
        0x00
    );
    assert_eq!(
        socks6_code(server.addr, ip_form(control_addr), control_addr.port()),
        0x00
    );
    assert_eq!(
        socks5_code(server.addr, Form::Name("127.0.0.2"), control_addr.port()),
        0x00
    );
    // The refusals say why.
    let ends = server.wait_session_ends(1);
    assert!(!ends.is_empty());
    let text = server.log_text();
    assert!(
        text.contains("is an unspecified address, never a target"),
        "{text}"
    );
    assert!(text.contains("blocked by the rules (rule 1)"), "{text}");
}

/// The UDP echo of each loopback family, and a control echo the rules pass.
struct UdpSetup {
    echo4: UdpEcho,
    echo6: UdpEcho,
    control: UdpEcho,
}

impl UdpSetup {
    fn new() -> Option<UdpSetup> {
        if !have_ipv6() {
            missing("an IPv6 loopback (::1) for the UDP address-form test");
            return None;
        }
        Some(UdpSetup {
            echo4: udp_echo_on(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            echo6: udp_echo_on(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            control: udp_echo_on(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        })
    }
    fn port(&self, r: Reaches) -> u16 {
        match r {
            Reaches::Loop4 => self.echo4.addr.port(),
            Reaches::Loop6 => self.echo6.addr.port(),
        }
    }
    fn blocked_seen(&self) -> usize {
        self.echo4.count() + self.echo6.count()
    }
}

/// The `dropped N` count of each UDP session line (and the line).
fn udp_dropped(server: &Server, sessions: usize) -> Vec<(u64, String)> {
    server.wait_session_ends(sessions);
    server
        .logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("session end") && l.contains("command=udp-associate"))
        .map(|l| {
            let n = l
                .split("dropped ")
                .nth(1)
                .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            (n, l)
        })
        .collect()
}

#[test]
fn every_spelling_of_a_blocked_loopback_is_dropped_over_udp() {
    let Some(setup) = UdpSetup::new() else { return };
    let dir = TempDir::new("address-forms-udp");
    let cfg = dir.join("sixsocks.toml");
    std::fs::write(&cfg, RULES).unwrap();
    let Some(server) =
        Server::start_with_hosts(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"])
    else {
        return;
    };
    let forms = forms();

    // SOCKS5, datagrams built by hand.
    let client = udp_client();
    let (control_conn, relay) = associate(server.addr, client.local_addr().unwrap());
    for (form, reaches) in &forms {
        let d = dgram(0, &v5(*form, setup.port(*reaches)), b"must not arrive");
        client.send_to(&d, relay).unwrap();
    }
    // The control datagram comes back: the association works.
    let d = dgram(0, &v5_addr(setup.control.addr), b"control");
    client.send_to(&d, relay).unwrap();
    let back = recv_relayed(&client);
    assert_eq!(back.data, b"control");

    // SOCKS 6, through the client library (raw names kept as names).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let proxy = sixsocks_client::Proxy::parse(&format!("socks6://{}", server.addr)).unwrap();
    rt.block_on(async {
        let assoc = sixsocks_client::SocksDatagram::associate(&proxy, None)
            .await
            .expect("SOCKS 6 UDP ASSOCIATE");
        for (form, reaches) in &forms {
            let port = setup.port(*reaches);
            let target = match form {
                Form::V4(ip) => sixsocks_client::TargetAddr::ip(IpAddr::V4(*ip), port),
                Form::V6(ip) => sixsocks_client::TargetAddr::ip(IpAddr::V6(*ip), port),
                Form::Name(n) => sixsocks_client::TargetAddr::domain(*n, port),
            };
            assoc.send_to(b"must not arrive", target).await.unwrap();
        }
        assoc.send_to(b"control", setup.control.addr).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), assoc.recv_from(&mut buf))
            .await
            .expect("the SOCKS 6 control datagram came back")
            .unwrap();
        assert_eq!(&buf[..n], b"control");
        // Names that resolve through the hosts file are looked up in a task
        // of their own: give them time to be dropped before the end.
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    std::thread::sleep(Duration::from_millis(200));
    drop(control_conn);
    drop(rt);
    let dropped = udp_dropped(&server, 2);
    assert_eq!(dropped.len(), 2, "{}", server.log_text());
    for (n, outcome) in &dropped {
        assert_eq!(*n, forms.len() as u64, "every form dropped: {outcome}");
    }
    assert_eq!(setup.blocked_seen(), 0, "a blocked UDP service was reached");
    assert_eq!(setup.control.count(), 2);
}

//! Safe defaults: no open proxy by accident, no loops through our own sockets.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;

#[test]
fn an_open_proxy_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_sixsocks"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an open proxy started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open proxy") && err.contains("--allow-open-proxy"),
        "the refusal does not explain itself: {err}"
    );
}

#[test]
fn an_open_proxy_starts_when_asked_for() {
    // Listening on every address, explicitly allowed; the test only talks
    // to it over loopback.
    let server = Server::start(&["--listen", "0.0.0.0:0", "--allow-open-proxy"]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let echo = echo_server();
    let mut s = socks5_tunnel(addr, echo.addr);
    echo_roundtrip(&mut s, b"allowed");
}

#[test]
fn connecting_to_the_proxy_itself_is_not_allowed() {
    let server = Server::start(&[]);
    let port = server.addr.port();
    let targets = [
        v5_addr(server.addr),
        v5_domain(b"localhost", port),
        v5_addr(format!("[::ffff:127.0.0.1]:{port}").parse().unwrap()),
        v5_addr(format!("0.0.0.0:{port}").parse().unwrap()),
    ];
    for t in targets {
        let mut s = connect(server.addr);
        socks5_handshake(&mut s, None);
        s.write_all(&v5_request(0x01, &t)).unwrap();
        let r = read_v5_reply(&mut s);
        assert_eq!(
            r.rep, 0x02,
            "a CONNECT to the proxy's own socket: {r:?} for {t:02x?}"
        );
    }
    // Other ports on the same address are fine.
    let echo = echo_server();
    let mut s = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut s, b"still serving");
}

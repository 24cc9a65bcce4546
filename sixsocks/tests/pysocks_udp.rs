//! PySocks (a SOCKS client nobody here wrote) relays UDP through the real
//! binary: `socks.socksocket(AF_INET, SOCK_DGRAM)` with `set_proxy(SOCKS5,
//! ...)` does UDP ASSOCIATE, then `sendto` / `recvfrom` go through the relay
//! to a local UDP echo server, with an IP target and with a name only the
//! proxy can resolve ([`PROXY_ONLY_NAME`], in the server's private
//! /etc/hosts). Without python3 + PySocks: a failure under `CI=1`, a loud
//! warning otherwise.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A UDP echo server on 127.0.0.1 (a thread for the test's lifetime).
fn udp_echo() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 70_000];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    addr
}

fn pysocks_udp(proxy: SocketAddr, host: &str, port: u16, rdns: bool, count: usize) -> RunOutput {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pysocks_udp.py");
    run_tool(
        Command::new("python3").arg(script).args([
            proxy.ip().to_string(),
            proxy.port().to_string(),
            host.to_string(),
            port.to_string(),
            if rdns { "1" } else { "0" }.to_string(),
            count.to_string(),
        ]),
        TOOL_TIMEOUT,
    )
}

#[test]
fn pysocks_udp_associate_round_trips() {
    if !require_pysocks() {
        return;
    }
    let echo = echo_server();
    let uecho = udp_echo();
    let Some(server) = Server::start_with_hosts(&[]) else {
        return;
    };
    let baseline = server.fd_baseline(echo.addr, None);

    // (target host, rdns): an address, and a name only the proxy resolves
    // (PySocks sends ATYP 03 with rdns).
    for (host, rdns) in [("127.0.0.1", false), (PROXY_ONLY_NAME, true)] {
        let count = 20;
        let out = pysocks_udp(server.addr, host, uecho.port(), rdns, count);
        let stdout = out.stdout_text();
        assert!(
            out.status.success(),
            "PySocks UDP to {host} (rdns={rdns}) failed ({:?}):\n--- stdout ---\n{stdout}\n\
             --- stderr ---\n{}\n--- sixsocks log ---\n{}",
            out.status,
            out.stderr,
            server.log_text()
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), count, "answers to {host}: {stdout}");
        for (i, line) in lines.iter().enumerate() {
            // The header of each answer names the echo server as its source.
            let want = format!("OK {i} 127.0.0.1 {} pysocks udp datagram {i}", uecho.port());
            assert_eq!(*line, want, "answer {i} to {host}");
        }
    }
    let ends = server.wait_session_ends(3);
    let udp: Vec<_> = ends
        .iter()
        .filter(|f| f.get("command").map(String::as_str) == Some("udp-associate"))
        .collect();
    assert_eq!(udp.len(), 2, "two udp-associate sessions logged: {ends:?}");
    // Both associations ended with their TCP connections: no fd left over.
    server.assert_healthy(echo.addr, baseline, "PySocks UDP associations");
}

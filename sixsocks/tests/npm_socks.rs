//! The npm package `socks` (a SOCKS client nobody here wrote, on the
//! machine's Node.js) against the real binary: CONNECT (SOCKS4 and SOCKS5),
//! BIND (SOCKS4 and SOCKS5, with a second party connecting) and UDP
//! ASSOCIATE (a standalone datagram and a fragmented one, built with the
//! package's own `createUDPFrame` and read with `parseUDPFrame`).
//!
//! The script is `tests/node/socks_client.js`; the package is pinned in
//! `tests/node/package-lock.json` and installed by CI with
//! `npm ci --prefix sixsocks/tests/node`. Without Node.js or the installed
//! package the test fails under `CI=1` and warns loudly otherwise.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;

/// The script's own watchdog is 60 s; this is the outer bound.
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Node.js and the installed package, or a loud skip (a failure under CI).
fn require_node_socks() -> bool {
    if !require_tools(&["node"]) {
        return false;
    }
    let pkg = node_dir().join("node_modules/socks/package.json");
    pkg.is_file()
        || missing(&format!(
            "the npm package `socks` ({} does not exist; run `npm ci --prefix sixsocks/tests/node`)",
            pkg.display()
        ))
}

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

#[test]
fn npm_socks_connect_bind_and_udp_associate() {
    if !require_node_socks() {
        return;
    }
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);

    let script = node_dir().join("socks_client.js");
    let out = run_tool(
        Command::new("node")
            .arg(&script)
            .arg(server.addr.ip().to_string())
            .arg(server.addr.port().to_string())
            .arg(echo.port().to_string())
            .arg(uecho.port().to_string())
            .current_dir(node_dir()),
        NODE_TIMEOUT,
    );
    let stdout = out.stdout_text();
    eprintln!("--- node socks_client.js ---\n{stdout}{}", out.stderr);
    assert!(
        out.status.success(),
        "the npm `socks` script failed ({:?}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n\
         --- sixsocks log ---\n{}",
        out.status,
        out.stderr,
        server.log_text()
    );
    for line in [
        "OK connect socks5 127.0.0.1",
        "OK connect socks5 localhost",
        "OK connect socks4 127.0.0.1",
        "OK bind socks5 bound=127.0.0.1:",
        "OK bind socks4 bound=127.0.0.1:",
        "OK associate relay=127.0.0.1:",
        "ALL OK",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "no line starting with {line:?} in the script's output:\n{stdout}"
        );
    }
    // The sessions really were BIND and UDP ASSOCIATE, and all ended.
    let ends = server.wait_session_ends(1 + 3 + 2 + 1);
    for cmd in ["connect", "bind", "udp-associate"] {
        assert!(
            ends.iter()
                .any(|f| f.get("command").map(String::as_str) == Some(cmd)),
            "no `{cmd}` session in the log: {ends:?}"
        );
    }
    server.assert_healthy(echo.addr, baseline, "the npm socks client");
}

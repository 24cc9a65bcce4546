//! The command line: a TOML config file, several listeners, `--listen`
//! replacing the file's list, and clean failures on bad configurations.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::*;

fn listening_lines(server: &Server) -> usize {
    server
        .logs
        .lines()
        .iter()
        .filter(|l| l.contains("listening on"))
        .count()
}

#[test]
fn config_file_sets_listeners_and_users() {
    let echo = echo_server();
    let dir = TempDir::new("config");
    let users = dir.join("users");
    passwd(&users, "erin", "erin's pw");
    let conf = dir.join("sixsocks.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\nusers_file = {:?}\nhandshake_timeout = 5\n",
            users.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = Server::start_n(&["--config", conf.to_str().unwrap()], 2);
    assert_eq!(server.listeners.len(), 2, "{:?}", server.listeners);
    assert!(server.listeners.iter().any(|a| a.is_ipv4()));
    assert!(server.listeners.iter().any(|a| a.is_ipv6()));
    for &addr in &server.listeners {
        // users_file from the config makes authentication mandatory...
        let mut s = connect(addr);
        s.write_all(&[0x05, 0x01, 0x00]).unwrap();
        assert_closed_after(&mut s, &[0x05, 0xFF], "method 00 with users_file");
        // ...and the user works on every listener.
        let (mut s, r) = socks5_connect(addr, &v5_addr(echo.addr), Some(("erin", "erin's pw")));
        assert_eq!(r.rep, 0x00, "{r:?}");
        echo_roundtrip(&mut s, b"configured");
    }
}

#[test]
fn listen_flags_replace_the_config_list() {
    let echo = echo_server();
    let dir = TempDir::new("config-override");
    let conf = dir.join("sixsocks.toml");
    std::fs::write(&conf, "listen = [\"127.0.0.2:0\"]\n").unwrap();
    let server = Server::start(&[
        "--config",
        conf.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
    ]);
    server.assert_serves(echo.addr, None);
    assert_eq!(listening_lines(&server), 2, "logs:\n{}", server.log_text());
    assert!(
        !server.log_text().contains("127.0.0.2"),
        "the config's listener was not replaced:\n{}",
        server.log_text()
    );
    let v6 = server.listeners[1];
    assert!(v6.is_ipv6());
    let (mut s, r) = socks5_connect(v6, &v5_addr(echo.addr), None);
    assert_eq!(r.rep, 0x00);
    echo_roundtrip(&mut s, b"over the IPv6 listener");
}

fn run_bin(args: &[&str]) -> RunOutput {
    run_tool(Command::new(BIN).args(args), Duration::from_secs(30))
}

/// `--help` says what the command speaks (it once left SOCKS 6 out) and
/// lists every subcommand.
#[test]
fn help_names_every_version_and_subcommand() {
    let out = run_bin(&["--help"]);
    assert!(out.status.success());
    let text = out.stdout_text();
    assert!(text.contains("SOCKS4/4a/5/6"), "{text}");
    for sub in ["serve", "check", "passwd", "connect", "resolve"] {
        assert!(text.contains(sub), "{sub}: {text}");
    }
}

#[test]
fn bad_configurations_fail_cleanly() {
    let dir = TempDir::new("bad-config");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "listen = [\"not an address\"]\n").unwrap();
    let unknown_key = dir.join("unknown.toml");
    std::fs::write(&unknown_key, "no_such_key = 1\n").unwrap();
    let missing = dir.join("missing.toml");
    let missing_users = dir.join("no-users");
    let cases: Vec<Vec<&str>> = vec![
        vec!["serve", "--listen", &busy_addr],
        vec!["serve", "--config", missing.to_str().unwrap()],
        vec!["serve", "--config", bad_toml.to_str().unwrap()],
        vec!["serve", "--config", unknown_key.to_str().unwrap()],
        vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            USERS_FLAG,
            missing_users.to_str().unwrap(),
        ],
        vec!["serve", "--listen", "not-an-address"],
        vec!["serve", "--listen", "127.0.0.1:0", "--max-clients", "many"],
    ];
    for args in cases {
        let out = run_bin(&args);
        assert!(
            !out.status.success() && out.status.code().is_some(),
            "sixsocks {args:?} must exit with an error status: {out:?}"
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "sixsocks {args:?} must say why on stderr"
        );
        assert!(
            !out.stderr.contains("panicked"),
            "sixsocks {args:?} panicked: {}",
            out.stderr
        );
    }
}

#[test]
fn passwd_rejects_bad_user_names() {
    let dir = TempDir::new("passwd-bad");
    let users = dir.join("users");
    for name in ["has:colon", ""] {
        let mut child = Command::new(BIN)
            .args(["passwd", USERS_FLAG, users.to_str().unwrap(), name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(b"pw\n");
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "passwd accepted the user name {name:?}"
        );
        let text = std::fs::read_to_string(&users).unwrap_or_default();
        assert!(!text.contains("has:colon"), "users file: {text:?}");
    }
}

#[test]
fn client_connect_subcommand() {
    client_subcommands(true);
}

#[test]
fn client_resolve_subcommand() {
    client_subcommands(false);
}

fn client_subcommands(with_connect: bool) {
    let echo = echo_server();
    let dir = TempDir::new("client-cli");
    let users = dir.join("users");
    passwd(&users, "gina", "gina-pw");
    let Some(open) = Server::start_with_hosts(&[]) else {
        return;
    };
    let auth = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 199) as u8).collect();
    let input_file = dir.join("input");
    std::fs::write(&input_file, &input).unwrap();

    let connect_via = |proxy: String, target: String| {
        let stdin = std::fs::File::open(&input_file).unwrap();
        run_tool_stdin(
            Command::new(BIN).args(["connect", "--proxy", &proxy, &target]),
            stdin.into(),
            Duration::from_secs(60),
        )
    };
    if !with_connect {
        return resolve_checks(&open);
    }
    let by_ip = echo.addr.to_string();
    let by_name = format!("localhost:{}", echo.port());
    let proxy_only = format!("{PROXY_ONLY_NAME}:{}", echo.port());
    for (scheme, target) in [
        ("socks4", &by_ip),
        ("socks4a", &proxy_only),
        ("socks5", &by_ip),
        ("socks5", &by_name),
        ("socks5h", &proxy_only),
    ] {
        let out = connect_via(format!("{scheme}://{}", open.addr), target.clone());
        assert!(out.status.success(), "connect {scheme} {target}: {out:?}");
        assert!(
            out.stdout == input,
            "connect {scheme} {target}: {} of {} bytes echoed",
            out.stdout.len(),
            input.len()
        );
    }
    let out = connect_via(
        format!("socks5h://gina:gina-pw@{}", auth.addr),
        by_name.clone(),
    );
    assert!(
        out.status.success() && out.stdout == input,
        "with a password: {:?}",
        out.stderr
    );
    let out = connect_via(
        format!("socks5h://gina:wrong@{}", auth.addr),
        by_name.clone(),
    );
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "wrong password: {out:?}"
    );

    resolve_checks(&open);
}

fn resolve_checks(open: &Server) {
    // resolve and resolve -x.
    let resolve = |args: &[&str]| {
        run_tool(
            Command::new(BIN).arg("resolve").args(args),
            Duration::from_secs(30),
        )
    };
    let p5 = format!("socks5h://{}", open.addr);
    let p4a = format!("socks4a://{}", open.addr);
    for (proxy, name) in [
        (&p5, "localhost"),
        (&p5, PROXY_ONLY_NAME),
        (&p4a, PROXY_ONLY_NAME),
    ] {
        let out = resolve(&["--proxy", proxy, name]);
        let text = out.stdout_text();
        assert!(
            out.status.success()
                && text.split_whitespace().any(|w| w
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())),
            "resolve {name} via {proxy}: {out:?}"
        );
    }
    let out = resolve(&["--proxy", &p5, "-x", "127.0.0.1"]);
    assert!(
        out.status.success() && out.stdout_text().contains("localhost"),
        "resolve -x 127.0.0.1: {out:?}"
    );
}

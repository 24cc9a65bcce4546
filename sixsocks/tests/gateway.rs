//! `sixsocks gateway` (issue 14): SOCKS4/5 applications (curl) → the
//! gateway → SOCKS 6 → a far sixsocks → the target, in both modes. The far
//! proxy's refusal reaches curl as an error (a reply code in strict mode, a
//! reset in optimistic mode); its credentials live in the gateway's
//! upstream URL, which keeps a SOCKS 6 session with the far proxy. In
//! optimistic mode the application's first bytes go with the request.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn curl(args: &[&str], gateway: std::net::SocketAddr, url: &str) -> RunOutput {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30"]);
    cmd.args(args);
    cmd.arg(gateway.to_string());
    cmd.arg(url);
    run_tool(&mut cmd, TOOL_TIMEOUT)
}

#[test]
fn curl_through_the_gateway_to_a_far_socks6_proxy() {
    if !require_tools(&["curl"]) {
        return;
    }
    let http = http_server();
    let dir = TempDir::new("gateway");
    let users = dir.join("users");
    passwd(&users, "far", "far-pw");
    let far = Server::start(&[USERS_FLAG, users.to_str().unwrap()]);
    for (profile, mode) in [
        ("draft-11", "optimistic"),
        ("draft-11", "strict"),
        ("ref-207", "optimistic"),
        ("draft-05", "strict"),
    ] {
        let url = format!("socks6://far:far-pw@{}?profile={profile}", far.addr);
        let gateway = Server::start_gateway(&url, &["--mode", mode]);
        let target = format!("http://127.0.0.1:{}/", http.port());
        for flags in [&["--socks5-hostname"][..], &["--socks5"], &["--socks4a"]] {
            let out = curl(flags, gateway.addr, &target);
            assert!(
                out.status.success(),
                "{profile} {flags:?}: {:?} {} | gateway: {} | far: {}",
                out.status,
                out.stderr,
                gateway.log_text(),
                far.log_text()
            );
            assert_eq!(out.stdout, http_body(), "{profile} {flags:?}");
        }
        // The far proxy saw SOCKS 6 requests from the gateway, each with
        // the user of the gateway's URL (in -11 and the reference dialect
        // all but the first carried the session instead of the password).
        let log = far.log_text();
        let seen = log
            .lines()
            .filter(|l| l.contains("session end") && l.contains("user=far version=socks6"))
            .count();
        assert!(seen >= 3, "{profile}: {log}");
        // Optimistic: curl's request went with the SOCKS 6 request, as
        // initial data (the far proxy logs how much).
        let with_data = log
            .lines()
            .filter(|l| l.contains("user=far") && l.contains("outcome=initial data"))
            .any(|l| !l.contains("outcome=initial data 0 bytes"));
        if mode == "optimistic" {
            assert!(
                with_data,
                "{profile}: no initial data at the far side: {log}"
            );
        }
        // A target the far side cannot reach: curl reports an error.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let out = curl(
            &["--socks5-hostname"],
            gateway.addr,
            &format!("http://{closed}/"),
        );
        assert!(
            !out.status.success(),
            "{profile}: a refused target is an error"
        );
    }
    // Applications that authenticate to the gateway (curl -U): the
    // gateway checks its own users, the far proxy its own.
    let gw_users = dir.join("gateway-users");
    passwd(&gw_users, "app", "app-pw");
    let url = format!("socks6://far:far-pw@{}", far.addr);
    for mode in ["optimistic", "strict"] {
        let gateway = Server::start_gateway(
            &url,
            &["--mode", mode, USERS_FLAG, gw_users.to_str().unwrap()],
        );
        let target = format!("http://127.0.0.1:{}/", http.port());
        let out = curl(
            &["-U", "app:app-pw", "--socks5-hostname"],
            gateway.addr,
            &target,
        );
        assert!(
            out.status.success(),
            "{mode}, curl -U: {out:?}\n{}",
            gateway.log_text()
        );
        assert_eq!(out.stdout, http_body(), "{mode}, curl -U");
        let out = curl(
            &["-U", "app:wrong", "--socks5-hostname"],
            gateway.addr,
            &target,
        );
        assert!(
            !out.status.success(),
            "{mode}: a wrong application password"
        );
    }

    // A wrong password in the upstream URL: every request is refused.
    let url = format!("socks6://far:wrong@{}", far.addr);
    let gateway = Server::start_gateway(&url, &[]);
    let out = curl(
        &["--socks5-hostname"],
        gateway.addr,
        &format!("http://127.0.0.1:{}/", http.port()),
    );
    assert!(!out.status.success(), "wrong upstream password");
}

#[test]
fn the_gateway_refuses_an_upstream_that_is_not_socks6() {
    let out = Command::new(BIN)
        .args([
            "gateway",
            "--upstream",
            "socks5://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("socks6://"), "{err}");
}

/// Tor's RESOLVE and RESOLVE_PTR through the gateway: asked of the far
/// proxy's resolver with SOCKS 6's DNS service, so that a name only the far
/// side knows resolves.
#[test]
fn tor_resolve_through_the_gateway_asks_the_far_side() {
    if !require_tools(&["tor-resolve"]) {
        return;
    }
    let Some(far) = Server::start_with_hosts(&[]) else {
        return;
    };
    let gateway = Server::start_gateway(&format!("socks6://{}", far.addr), &[]);
    let proxy = gateway.addr.to_string();
    for name in ["localhost", PROXY_ONLY_NAME] {
        let out = run_tool(
            Command::new("tor-resolve").args(["-5", name, &proxy]),
            TOOL_TIMEOUT,
        );
        let text = out.stdout_text();
        let ip: std::net::IpAddr = text.trim().parse().unwrap_or_else(|_| {
            panic!(
                "tor-resolve {name}: {out:?}\ngateway: {}\nfar: {}",
                gateway.log_text(),
                far.log_text()
            )
        });
        assert!(ip.is_loopback(), "{name}: {ip}");
    }
    let out = run_tool(
        Command::new("tor-resolve").args(["-5", "-x", "127.0.0.1", &proxy]),
        TOOL_TIMEOUT,
    );
    assert!(
        out.status.success() && !out.stdout_text().trim().is_empty(),
        "RESOLVE_PTR: {out:?}\n{}",
        gateway.log_text()
    );
}

/// The same gateway from a configuration file's `[gateway]` table, run by
/// `serve`.
#[test]
fn a_gateway_table_makes_serve_a_gateway() {
    if !require_tools(&["curl"]) {
        return;
    }
    let http = http_server();
    let far = Server::start(&[]);
    let dir = TempDir::new("gateway-config");
    let file = dir.join("sixsocks.toml");
    std::fs::write(
        &file,
        format!(
            "listen = [\"127.0.0.1:0\"]\n[gateway]\nupstream = \"socks6://{}\"\nmode = \"strict\"\n",
            far.addr
        ),
    )
    .unwrap();
    let gateway = Server::start(&["--config", file.to_str().unwrap()]);
    let out = curl(
        &["--socks5-hostname"],
        gateway.addr,
        &format!("http://127.0.0.1:{}/", http.port()),
    );
    assert!(out.status.success(), "{out:?}\n{}", gateway.log_text());
    assert_eq!(out.stdout, http_body());
    assert!(
        far.log_text().contains("version=socks6"),
        "the far proxy saw SOCKS 6: {}",
        far.log_text()
    );
}

//! Real SOCKS clients against the real binary: curl (SOCKS4, 4a, 5, 5 with
//! remote resolution, with and without a password), tor-resolve (RESOLVE and
//! RESOLVE_PTR), proxychains4 (with and without proxy_dns) and Python's
//! PySocks. Under CI=1 a missing tool fails the test (see .ci/run).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// `curl -sS PROXY_FLAG PROXY [-U CREDS] URL`.
fn curl(flag: &str, proxy: std::net::SocketAddr, creds: Option<&str>, url: &str) -> RunOutput {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", flag, &proxy.to_string()]);
    if let Some(c) = creds {
        cmd.args(["-U", c]);
    }
    cmd.arg(url);
    run_tool(&mut cmd, TOOL_TIMEOUT)
}

fn assert_body(out: &RunOutput, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}, stderr: {}",
        out.status,
        out.stderr
    );
    assert!(
        out.stdout == http_body(),
        "{what}: wrong body ({} bytes): {:?}",
        out.stdout.len(),
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)])
    );
}

#[test]
fn curl_every_socks_flavour() {
    if !require_tools(&["curl"]) {
        return;
    }
    let http = http_server();
    let Some(server) = Server::start_with_hosts(&[]) else {
        return;
    };
    let mut n = 0;
    for flag in ["--socks4", "--socks4a", "--socks5", "--socks5-hostname"] {
        let remote = flag == "--socks4a" || flag == "--socks5-hostname";
        let mut hosts = vec!["127.0.0.1", "localhost"];
        if remote {
            // Only the proxy can resolve this name.
            hosts.push(PROXY_ONLY_NAME);
        }
        for host in hosts {
            let url = format!("http://{host}:{}/", http.port());
            let out = curl(flag, server.addr, None, &url);
            assert_body(&out, &format!("curl {flag} {url}"));
            n += 1;
        }
    }
    // A SOCKS4 USERID.
    let url = format!("http://127.0.0.1:{}/", http.port());
    assert_body(
        &curl("--socks4", server.addr, Some("bob"), &url),
        "curl --socks4 -U bob",
    );
    n += 1;

    let ends = server.wait_session_ends(n);
    assert_eq!(http.accepted(), n, "every fetch went through the proxy");
    let get = |f: &std::collections::HashMap<String, String>, k: &str| {
        f.get(k).cloned().unwrap_or_default()
    };
    for v in ["socks4", "socks4a", "socks5"] {
        assert!(
            ends.iter().any(|f| get(f, "version") == v),
            "no session logged with version={v}: {ends:?}"
        );
    }
    let remote = format!("{PROXY_ONLY_NAME}:{}", http.port());
    assert_eq!(
        ends.iter().filter(|f| get(f, "target") == remote).count(),
        2,
        "remotely resolved targets are logged by name ({remote}): {ends:?}"
    );
    assert!(
        ends.iter().any(|f| get(f, "user") == "bob"),
        "the SOCKS4 USERID is logged: {ends:?}"
    );
    for f in &ends {
        assert_eq!(get(f, "reply"), "succeeded", "{f:?}");
        assert_eq!(get(f, "command"), "connect", "{f:?}");
        let down: u64 = get(f, "down").parse().unwrap_or(0);
        assert!(
            down >= http_body().len() as u64,
            "down= counts the body: {f:?}"
        );
        assert!(
            f.contains_key("client") && f.contains_key("duration_ms"),
            "{f:?}"
        );
    }
}

#[test]
fn curl_with_username_and_password() {
    if !require_tools(&["curl"]) {
        return;
    }
    let http = http_server();
    let dir = TempDir::new("curl-auth");
    let users = dir.join("users");
    let password = "pa55-w0rd-for-curl";
    passwd(&users, "alice", password);
    passwd(&users, "bob", "another-one");
    let Some(server) = Server::start_with_hosts(&[USERS_FLAG, users.to_str().unwrap()]) else {
        return;
    };
    let creds = format!("alice:{password}");
    let mut ok = 0;
    for flag in ["--socks5", "--socks5-hostname"] {
        let mut hosts = vec!["127.0.0.1", "localhost"];
        if flag == "--socks5-hostname" {
            hosts.push(PROXY_ONLY_NAME);
        }
        for host in hosts {
            let url = format!("http://{host}:{}/", http.port());
            let out = curl(flag, server.addr, Some(&creds), &url);
            assert_body(&out, &format!("curl {flag} -U alice:... {url}"));
            ok += 1;
        }
    }
    // Never a local resolution of PROXY_ONLY_NAME: that would ask real DNS.
    let refused = [
        (
            "--socks5-hostname",
            Some("alice:wrong-password"),
            PROXY_ONLY_NAME,
        ),
        (
            "--socks5-hostname",
            Some("mallory:whatever"),
            PROXY_ONLY_NAME,
        ),
        ("--socks5-hostname", None, PROXY_ONLY_NAME),
        ("--socks5", None, "127.0.0.1"),
        ("--socks5", Some("alice:wrong-password"), "127.0.0.1"),
        ("--socks4", None, "127.0.0.1"),
        ("--socks4a", Some("alice"), PROXY_ONLY_NAME),
    ];
    for (flag, c, host) in refused {
        let url = format!("http://{host}:{}/", http.port());
        let out = curl(flag, server.addr, c, &url);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "curl {flag} {c:?} {url} must be refused by a proxy with --users: {out:?}"
        );
    }
    assert_eq!(
        http.accepted(),
        ok,
        "refused clients never reach the target"
    );
    let ends = server.wait_session_ends(ok + refused.len());
    assert_eq!(
        ends.iter()
            .filter(|f| f.get("user").map(|s| s.as_str()) == Some("alice")
                && f.get("reply").map(|s| s.as_str()) == Some("succeeded"))
            .count(),
        ok,
        "successful sessions are logged with user=alice: {ends:?}"
    );
    assert!(
        !server.log_text().contains(password),
        "password in the logs"
    );
    assert!(
        !server.log_text().contains("wrong-password"),
        "password in the logs"
    );
}

#[test]
fn curl_credentials_without_users_file() {
    // Reading of the contract: without --users, credentials are not
    // checked (as in Tor, they only isolate streams), so a client that
    // offers username/password still gets through.
    if !require_tools(&["curl"]) {
        return;
    }
    let http = http_server();
    let server = Server::start(&[]);
    let url = format!("http://localhost:{}/", http.port());
    assert_body(
        &curl(
            "--socks5-hostname",
            server.addr,
            Some("anyone:anything"),
            &url,
        ),
        "curl -U anyone:anything without --users",
    );
}

#[test]
fn tor_resolve_forward_and_reverse() {
    if !require_tools(&["tor-resolve"]) {
        return;
    }
    let Some(server) = Server::start_with_hosts(&[]) else {
        return;
    };
    let proxy = server.addr.to_string();
    for flag in ["-5", "-4"] {
        for name in ["localhost", PROXY_ONLY_NAME] {
            let out = run_tool(
                Command::new("tor-resolve").args([flag, name, &proxy]),
                TOOL_TIMEOUT,
            );
            let text = out.stdout_text();
            let ip: std::net::IpAddr = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("tor-resolve {flag} {name}: {out:?}"));
            assert!(
                out.status.success() && ip.is_loopback(),
                "tor-resolve {flag} {name}: {out:?}"
            );
        }
    }
    let out = run_tool(
        Command::new("tor-resolve").args(["-x", "127.0.0.1", &proxy]),
        TOOL_TIMEOUT,
    );
    assert!(out.status.success(), "tor-resolve -x: {out:?}");
    assert_eq!(
        out.stdout_text().trim(),
        "localhost",
        "tor-resolve -x 127.0.0.1"
    );

    // A name that cannot be resolved: tor-resolve reports failure.
    let out = run_tool(
        Command::new("tor-resolve").args(["-5", "", &proxy]),
        TOOL_TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "tor-resolve of an empty name: {out:?}"
    );

    let ends = server.wait_session_ends(6);
    let cmds: Vec<String> = ends
        .iter()
        .filter_map(|f| f.get("command").cloned())
        .collect();
    assert!(
        cmds.iter().filter(|c| *c == "resolve").count() >= 4
            && cmds.iter().any(|c| c == "resolve-ptr"),
        "commands logged: {cmds:?}"
    );
}

#[test]
fn proxychains_runs_curl() {
    if !require_tools(&["proxychains4", "curl"]) {
        return;
    }
    let http = http_server();
    let Some(server) = Server::start_with_hosts(&[]) else {
        return;
    };
    let dir = TempDir::new("proxychains");
    let mut sessions = 0;
    for proxy_dns in [false, true] {
        let conf = dir.join(&format!("proxychains-{proxy_dns}.conf"));
        std::fs::write(
            &conf,
            format!(
                "strict_chain\n{}tcp_read_time_out 15000\ntcp_connect_time_out 8000\n\
                 [ProxyList]\nsocks5 127.0.0.1 {}\n",
                if proxy_dns { "proxy_dns\n" } else { "" },
                server.addr.port()
            ),
        )
        .unwrap();
        let mut hosts = vec!["127.0.0.1", "localhost"];
        if proxy_dns {
            // proxychains resolves names in /etc/hosts itself; this one
            // only the proxy knows, so it must travel as a name.
            hosts.push(PROXY_ONLY_NAME);
        }
        for host in hosts {
            let url = format!("http://{host}:{}/", http.port());
            let out = run_tool(
                Command::new("proxychains4")
                    .arg("-q")
                    .arg("-f")
                    .arg(&conf)
                    .args(["curl", "-sS", "--max-time", "30", &url]),
                TOOL_TIMEOUT,
            );
            assert_body(
                &out,
                &format!("proxychains4 (proxy_dns={proxy_dns}) curl {url}"),
            );
            sessions += 1;
            let ends = server.wait_session_ends(sessions);
            let t = ends[sessions - 1]
                .get("target")
                .cloned()
                .unwrap_or_default();
            assert!(
                t.ends_with(&format!(":{}", http.port())),
                "the proxy carried the fetch of {url}: logged target {t:?}"
            );
            if host == PROXY_ONLY_NAME {
                assert_eq!(
                    t,
                    format!("{host}:{}", http.port()),
                    "proxy_dns sends the name"
                );
            }
        }
    }
    assert_eq!(
        http.accepted(),
        sessions,
        "every fetch went through the proxy"
    );
}

fn pysocks(args: &[&str]) -> RunOutput {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pysocks_client.py");
    run_tool(Command::new("python3").arg(script).args(args), TOOL_TIMEOUT)
}

fn assert_pysocks_body(out: &RunOutput, what: &str) {
    assert!(out.status.success(), "PySocks {what}: {out:?}");
    let body = http_response_body(&out.stdout)
        .unwrap_or_else(|| panic!("PySocks {what}: no HTTP response: {out:?}"));
    assert!(body == http_body(), "PySocks {what}: wrong body");
}

#[test]
fn pysocks_connect() {
    if !require_pysocks() {
        return;
    }
    let http = http_server();
    let port = http.port().to_string();
    let Some(server) = Server::start_with_hosts(&[]) else {
        return;
    };
    let p = server.addr.port().to_string();
    for (v, host, rdns) in [
        ("4", "127.0.0.1", "0"),
        ("4", "localhost", "1"),
        ("4", PROXY_ONLY_NAME, "1"),
        ("5", "127.0.0.1", "0"),
        ("5", "localhost", "1"),
        ("5", PROXY_ONLY_NAME, "1"),
    ] {
        let out = pysocks(&[v, "127.0.0.1", &p, host, &port, rdns]);
        assert_pysocks_body(&out, &format!("SOCKS{v} {host} rdns={rdns}"));
    }
    let out = pysocks(&["4", "127.0.0.1", &p, "127.0.0.1", &port, "0", "carol"]);
    assert_pysocks_body(&out, "SOCKS4 with a USERID");

    let dir = TempDir::new("pysocks");
    let users = dir.join("users");
    passwd(&users, "dave", "dave's password");
    let Some(auth) = Server::start_with_hosts(&[USERS_FLAG, users.to_str().unwrap()]) else {
        return;
    };
    let ap = auth.addr.port().to_string();
    for (host, rdns) in [("127.0.0.1", "0"), (PROXY_ONLY_NAME, "1")] {
        let out = pysocks(&[
            "5",
            "127.0.0.1",
            &ap,
            host,
            &port,
            rdns,
            "dave",
            "dave's password",
        ]);
        assert_pysocks_body(&out, &format!("SOCKS5 with a password, {host}"));
    }
    let before = http.accepted();
    for args in [
        &[
            "5",
            "127.0.0.1",
            &ap,
            "localhost",
            &port,
            "1",
            "dave",
            "not it",
        ][..],
        &["5", "127.0.0.1", &ap, "localhost", &port, "1"][..],
        &["4", "127.0.0.1", &ap, "127.0.0.1", &port, "0", "dave"][..],
    ] {
        let out = pysocks(args);
        assert!(
            !out.status.success(),
            "PySocks {args:?} must be refused: {out:?}"
        );
    }
    assert_eq!(
        http.accepted(),
        before,
        "refused clients never reach the target"
    );
}

#[test]
fn curl_using_the_port_as_an_http_proxy_gets_501() {
    if !require_tools(&["curl"]) {
        return;
    }
    let http = http_server();
    let server = Server::start(&[]);
    let proxy = format!("http://{}", server.addr);
    for url in [
        format!("http://127.0.0.1:{}/", http.port()),
        // HTTPS through an HTTP proxy starts with CONNECT.
        format!("https://127.0.0.1:{}/", http.port()),
    ] {
        let out = run_tool(
            Command::new("curl").args([
                "-sS",
                "--max-time",
                "30",
                "-x",
                &proxy,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_connect}\n",
                &url,
            ]),
            TOOL_TIMEOUT,
        );
        // http_code for a proxied GET, http_connect for CONNECT (HTTPS).
        let text = out.stdout_text();
        assert!(
            text.split_whitespace().any(|c| c == "501"),
            "curl -x {proxy} {url}: {out:?}"
        );
    }
    assert_eq!(http.accepted(), 0, "nothing was relayed");
}

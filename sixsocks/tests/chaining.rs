//! Upstream chaining end to end, through the binary: a client talks to
//! sixsocks A, whose rules route some requests through an upstream.
//!
//! * A → sixsocks B (with a users file, in its own mount namespace where
//!   only B can resolve [`PROXY_ONLY_NAME`]): CONNECT through both reaches
//!   a local echo; the credentials the client gave A are what B checks and
//!   logs; a socks6:// upstream too; BIND and UDP ASSOCIATE matched by a
//!   routing rule get `07` / `5B`; a reload (SIGHUP) changes the upstream
//!   for new sessions; `sixsocks check` lists the upstream.
//! * A → a real Tor (inside a loopback-only network namespace, see
//!   `common::tor`): a RESOLVE and `.onion` CONNECTs get, through A, the
//!   code Tor gives when asked directly: Tor's `F6` with
//!   `--extended-errors`, `04` without, `5B` for SOCKS4a.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::thread;

use common::tor::{tor_binary, Tor, ONION_BAD_CHECKSUM, ONION_V3};
use common::*;

/// Write `text` to `dir/name` and start `sixsocks serve --config` on it.
fn start_config(dir: &TempDir, name: &str, text: &str, extra: &[&str]) -> Server {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_string();
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A SOCKS5 request (`cmd`, `addr` as [`v5_addr`]/[`v5_domain`]); returns
/// the reply code only. (Tor's failure replies carry ATYP 00, which
/// [`read_v5_reply`] rightly refuses; only the code matters here.)
fn socks5_code(proxy: SocketAddr, cmd: u8, addr: &[u8], creds: Option<(&str, &str)>) -> u8 {
    let mut s = connect(proxy);
    socks5_handshake(&mut s, creds);
    s.write_all(&v5_request(cmd, addr)).unwrap();
    let head = read_n(&mut s, 4);
    assert_eq!(head[0], 0x05, "reply version: {head:02x?}");
    head[1]
}

fn session_with<'a>(
    ends: &'a [std::collections::HashMap<String, String>],
    key: &str,
    value: &str,
) -> Vec<&'a std::collections::HashMap<String, String>> {
    ends.iter()
        .filter(|f| f.get(key).map(String::as_str) == Some(value))
        .collect()
}

#[test]
fn connect_through_a_second_sixsocks_with_the_clients_credentials() {
    let dir = TempDir::new("chain");
    let b_users = dir.join("b-users");
    passwd(&b_users, "alice", "wonderland");
    passwd(&b_users, "bob", "builder");
    let Some(b) = Server::start_with_hosts(&[USERS_FLAG, b_users.to_str().unwrap()]) else {
        return;
    };
    let echo = echo_server();
    let echo6 = echo_server();
    // A has no users file: it takes any credentials and passes them on;
    // B is the one that checks them.
    let a_conf = format!(
        r#"listen = ["127.0.0.1:0"]

[[rule]]
action = "pass"
command = ["bind", "udp"]
route = "b"

[[rule]]
action = "pass"
to = ["{PROXY_ONLY_NAME}"]
route = "b"

[[rule]]
action = "pass"
port = [{port6}]
route = "b6"

[[rule]]
action = "pass"

[upstream.b]
url = "socks5h://{b}"
pass_credentials = true

[upstream.b6]
url = "socks6://{b}"
pass_credentials = true
"#,
        b = b.addr,
        port6 = echo6.port(),
    );
    let a = start_config(&dir, "a.toml", &a_conf, &[]);
    let routed = v5_domain(PROXY_ONLY_NAME.as_bytes(), echo.port());

    // Through A and B to the echo, as each of B's users: only B can
    // resolve the name, so it went through B as a name.
    for (user, pw) in [("alice", "wonderland"), ("bob", "builder")] {
        let (mut s, r) = socks5_connect(a.addr, &routed, Some((user, pw)));
        assert_eq!(r.rep, 0x00, "as {user}: {r:?}\nA:\n{}", a.log_text());
        echo_roundtrip(&mut s, format!("hello from {user}").as_bytes());
    }
    // A password B does not know: B refuses it, A answers 02.
    let rep = socks5_code(a.addr, 0x01, &routed, Some(("alice", "looking-glass")));
    assert_eq!(rep, 0x02, "A:\n{}", a.log_text());
    // No credentials at all: B wants some, A answers 01 (its upstream failed).
    assert_eq!(socks5_code(a.addr, 0x01, &routed, None), 0x01);
    // Through a socks6:// upstream.
    let (mut s, r) = socks5_connect(a.addr, &v5_addr(echo6.addr), Some(("alice", "wonderland")));
    assert_eq!(r.rep, 0x00, "via b6: {r:?}\nA:\n{}", a.log_text());
    echo_roundtrip(&mut s, b"over socks 6");
    drop(s);
    // Not routed: straight to the echo, B never sees it.
    let before = echo.accepted();
    let mut s = socks5_tunnel(a.addr, echo.addr);
    echo_roundtrip(&mut s, b"direct");
    drop(s);
    assert_eq!(echo.accepted(), before + 1);

    // What B saw: the client's own user names, the name unresolved.
    let ends = b.wait_session_ends(5);
    let ok = session_with(&ends, "reply", "succeeded");
    let seen: Vec<(&str, &str, &str)> = ok
        .iter()
        .map(|f| {
            (
                f["user"].as_str(),
                f["version"].as_str(),
                f["target"].as_str(),
            )
        })
        .collect();
    let name_target = format!("{PROXY_ONLY_NAME}:{}", echo.port());
    let ip_target = echo6.addr.to_string();
    for want in [
        ("alice", "socks5", name_target.as_str()),
        ("bob", "socks5", name_target.as_str()),
        ("alice", "socks6", ip_target.as_str()),
    ] {
        assert!(seen.contains(&want), "B saw {seen:?}, not {want:?}");
    }
    assert_eq!(ok.len(), 3, "B saw the direct request? {seen:?}");
    assert!(
        b.log_text().contains("authentication failed"),
        "B did not refuse the wrong password:\n{}",
        b.log_text()
    );
    // A's own lines say where the requests went. (Read as text: the
    // outcome is free text with spaces.)
    a.wait_session_ends(6);
    assert!(
        a.logs.lines().iter().any(|l| l.contains("session end")
            && l.contains("user=bob")
            && l.contains("outcome=via upstream b")),
        "A:\n{}",
        a.log_text()
    );

    // BIND and UDP ASSOCIATE matched by a routing rule go through the
    // upstream: B listens (or associates) and its reply comes back (00 for
    // one of B's users; SOCKS4, which carries no password, is refused by
    // B: 5B).
    let any = v5_addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let alice = Some(("alice", "wonderland"));
    assert_eq!(socks5_code(a.addr, 0x02, &v5_addr(echo.addr), alice), 0x00);
    assert_eq!(socks5_code(a.addr, 0x03, &any, alice), 0x00);
    let mut s = connect(a.addr);
    s.write_all(&v4_request(
        0x02,
        Ipv4Addr::LOCALHOST,
        echo.port(),
        b"",
        None,
    ))
    .unwrap();
    assert_eq!(read_v4_reply(&mut s)[1], 0x5B);
    drop(s);

    // A reload changes the upstream for new sessions: now with fixed
    // credentials (bob's), whatever the client says.
    let reloaded = a_conf.replace(
        &format!("url = \"socks5h://{}\"\npass_credentials = true", b.addr),
        &format!("url = \"socks5h://bob:builder@{}\"", b.addr),
    );
    assert_ne!(reloaded, a_conf);
    std::fs::write(dir.join("a.toml"), &reloaded).unwrap();
    a.signal("HUP");
    assert!(
        a.logs.wait(IO_TIMEOUT, |l| l
            .iter()
            .any(|l| l.contains("configuration reloaded"))),
        "A:\n{}",
        a.log_text()
    );
    let (mut s, r) = socks5_connect(a.addr, &routed, Some(("alice", "not-checked-any-more")));
    assert_eq!(r.rep, 0x00, "after the reload: {r:?}\nA:\n{}", a.log_text());
    echo_roundtrip(&mut s, b"as bob now");
    drop(s);
    // At B, a second CONNECT by bob (the first was his own, before the
    // reload): the reload's fixed credentials went upstream.
    assert!(
        b.logs.wait(IO_TIMEOUT, |l| l
            .iter()
            .filter(|l| l.contains("session end")
                && l.contains("user=bob")
                && l.contains("command=connect")
                && l.contains("reply=succeeded"))
            .count()
            >= 2),
        "B:\n{}",
        b.log_text()
    );

    // An upstream that is A itself (a reload can point there, and A's
    // port was not known when the file was written): refused, not a loop.
    let looped = a_conf.replace(
        &format!("url = \"socks5h://{}\"\npass_credentials = true", b.addr),
        &format!("url = \"socks5h://{}\"", a.addr),
    );
    std::fs::write(dir.join("a.toml"), &looped).unwrap();
    a.signal("HUP");
    assert!(
        a.logs.wait(IO_TIMEOUT, |l| l
            .iter()
            .filter(|l| l.contains("configuration reloaded"))
            .count()
            >= 2),
        "A:\n{}",
        a.log_text()
    );
    assert_eq!(socks5_code(a.addr, 0x01, &routed, None), 0x02);
    // The log line may trail the reply: wait for it (bounded).
    assert!(
        a.logs.wait(IO_TIMEOUT, |l| l
            .iter()
            .any(|l| l.contains("is one of our own listeners"))),
        "A:\n{}",
        a.log_text()
    );

    // `sixsocks check` names the upstreams (and their routes).
    std::fs::write(dir.join("check.toml"), &a_conf).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.join("check.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!(
            "upstream b: socks5h://{} (each client's own credentials passed on; timeout 30 s)",
            b.addr
        )) && text.contains(&format!("pass to {PROXY_ONLY_NAME} (via upstream b)")),
        "{text}"
    );
}

#[test]
fn tor_through_sixsocks_gives_tors_own_codes_netns() {
    let Some(bin) = tor_binary() else {
        missing("the tor daemon (Debian package `tor`)");
        return;
    };
    if !in_netns("tor_through_sixsocks_gives_tors_own_codes_netns") {
        return;
    }
    let tor = Tor::start(&bin);
    let dir = TempDir::new("chain-tor");
    let conf = format!(
        r#"listen = ["127.0.0.1:0"]

[[rule]]
action = "pass"
to = [".onion"]
route = "tor"

[[rule]]
action = "pass"
command = ["resolve", "resolve_ptr"]
route = "tor"

[[rule]]
action = "pass"

[upstream.tor]
url = "socks5h://{}"
pass_credentials = true
"#,
        tor.socks
    );
    let a_ext = start_config(&dir, "a.toml", &conf, &["--extended-errors"]);
    let a_plain = start_config(&dir, "a.toml", &conf, &[]);

    let cases: [(&str, u8, Vec<u8>, u8); 3] = [
        (
            "RESOLVE example.com",
            0xF0,
            v5_domain(b"example.com", 0),
            0x04,
        ),
        (
            "CONNECT v3 .onion",
            0x01,
            v5_domain(ONION_V3.as_bytes(), 80),
            0x06,
        ),
        (
            "CONNECT .onion with a bad checksum",
            0x01,
            v5_domain(ONION_BAD_CHECKSUM.as_bytes(), 80),
            0xF6,
        ),
    ];
    // All nine requests at once: the slow ones wait out Tor's SocksTimeout
    // together. Each client has credentials of its own (passed on to Tor).
    let mut handles = Vec::new();
    for (i, (_, cmd, addr, _)) in cases.iter().enumerate() {
        for (j, proxy) in [tor.socks, a_ext.addr, a_plain.addr]
            .into_iter()
            .enumerate()
        {
            let (cmd, addr) = (*cmd, addr.clone());
            handles.push(thread::spawn(move || {
                let user = format!("isolation-{i}-{j}");
                socks5_code(proxy, cmd, &addr, Some((&user, "x")))
            }));
        }
    }
    let codes: Vec<u8> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (what, _, _, expected)) in cases.iter().enumerate() {
        let (direct, ext, plain) = (codes[3 * i], codes[3 * i + 1], codes[3 * i + 2]);
        println!(
            "{what}: tor directly {direct:02x}; through sixsocks {ext:02x} with \
             --extended-errors, {plain:02x} without"
        );
        assert_eq!(direct, *expected, "{what}: Tor's own code");
        assert_eq!(ext, direct, "{what}: passed through with extended errors");
        let fallback = if (0xF0..=0xF7).contains(expected) {
            0x04
        } else {
            *expected
        };
        assert_eq!(plain, fallback, "{what}: without extended errors");
    }
    // SOCKS4a has one failure code.
    let mut s = connect(a_ext.addr);
    s.write_all(&v4a_request(0x01, ONION_BAD_CHECKSUM.as_bytes(), 80, b"u"))
        .unwrap();
    assert_eq!(read_v4_reply(&mut s)[1], 0x5B);
    // A's log names the upstream in the outcome.
    a_ext.wait_session_ends(4);
    assert!(
        a_ext.logs.lines().iter().any(|l| l.contains("session end")
            && l.contains("reply=tor-extended-0xf6")
            && l.contains("outcome=upstream tor: ")),
        "A:\n{}",
        a_ext.log_text()
    );
    drop(tor);
}

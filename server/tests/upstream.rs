//! Upstream chaining (`sixsocks_server::upstream`), driven directly:
//!
//! * in-process: a real `sixsocks_server::Server` on 127.0.0.1:0 is the
//!   upstream (with a users file where credentials matter), a local echo
//!   server the target; every scheme, credential pass-through, refusal codes
//!   passed on, an unreachable or silent upstream;
//! * a real Tor (`/usr/sbin/tor`, Debian's package `tor`) as the upstream:
//!   a RESOLVE and `.onion` CONNECTs fail, with the code Tor gives when asked
//!   directly. Tor closes its SocksPort while `DisableNetwork 1` is set, so
//!   instead the test re-runs itself inside a fresh network namespace that
//!   has nothing but a loopback interface (`unshare --net`): Tor has
//!   network, and no route to anywhere off the machine. `SocksTimeout 5`
//!   makes the requests that wait for a circuit fail after 5 seconds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sixsocks_client::{ClientError, Proxy, ReplyCode};
use sixsocks_proto::{Credentials, Password, TargetAddr};
use sixsocks_server::error::RequestError;
use sixsocks_server::upstream::{Upstream, UpstreamConfig};
use sixsocks_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Tor as a test upstream, shared with the e2e tests.
#[path = "../../sixsocks/tests/common/tor.rs"]
mod tor;

/// Re-running a test inside a network namespace, shared with the e2e tests.
#[path = "../../sixsocks/tests/common/netns.rs"]
mod netns;

/// Every wait in a test is bounded by this.
const DEADLINE: Duration = Duration::from_secs(20);

async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("test step exceeded its deadline")
}

// ---------------------------------------------------------------- helpers

/// A fresh temporary directory (mode 0700), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sixsocks-upstream-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A users file (argon2id, as `sixsocks passwd` writes it).
fn users_file(dir: &TempDir, users: &[(&str, &str)]) -> PathBuf {
    let file = dir.path().join("users");
    for (name, pw) in users {
        sixsocks_server::auth::set_user(&file, name, &Password::new(pw.as_bytes().to_vec()))
            .unwrap();
    }
    file
}

/// Start the real server on 127.0.0.1:0 with the config adjusted by `f`.
fn serve(f: impl FnOnce(&mut Config)) -> SocketAddr {
    let mut config = Config {
        listen: vec![(Ipv4Addr::LOCALHOST, 0).into()],
        ..Config::default()
    };
    f(&mut config);
    let server = Server::bind(config).expect("server binds");
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// An echo server on 127.0.0.1 that first sends `banner` (may be empty).
async fn echo(banner: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(banner).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn upstream(url: &str, pass_credentials: bool) -> Upstream {
    let cfg = UpstreamConfig {
        pass_credentials,
        ..UpstreamConfig::new(url)
    };
    Upstream::new("b", &cfg, Duration::from_secs(10)).unwrap()
}

fn userpass(u: &str, p: &str) -> Credentials {
    Credentials::UserPass {
        username: u.as_bytes().to_vec(),
        password: Password::new(p.as_bytes().to_vec()),
    }
}

/// Write `msg` through a connected upstream stream and read it back (after
/// the target's `banner`), leftover first.
async fn round_trip(
    s: sixsocks_server::upstream::UpstreamStream,
    banner: &[u8],
    already_sent: &[u8],
    msg: &[u8],
) {
    let mut stream = s.stream;
    stream.write_all(msg).await.unwrap();
    let want = [banner, already_sent, msg].concat();
    let mut got = s.leftover;
    while got.len() < want.len() {
        let mut buf = vec![0u8; want.len() - got.len()];
        let n = bounded(stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed after {} of {} bytes", got.len(), want.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, want);
}

/// The reply code of an upstream failure, as a SOCKS5 client would see it
/// with extended errors on and off.
fn codes(e: &RequestError) -> (u8, u8) {
    let c = e.reply_code();
    (c.to_v5(true).0, c.to_v5(false).0)
}

// ------------------------------------------------------ in-process tests

#[tokio::test]
async fn connect_through_every_scheme_reaches_the_target() {
    let b = serve(|_| {});
    let target = echo(b"hello ").await;
    for scheme in ["socks5h", "socks5", "socks4a", "socks4", "socks6"] {
        let up = upstream(&format!("{scheme}://{b}"), false);
        // By name and by address (socks4 and socks5 resolve the name here).
        for t in [
            TargetAddr::domain("localhost", target.port()),
            TargetAddr::from(target),
        ] {
            let s = bounded(up.connect(&t, &Credentials::None, b"early "))
                .await
                .unwrap_or_else(|e| panic!("{scheme} {t}: {e}"));
            assert_eq!(s.early_sent, scheme == "socks6", "{scheme}");
            let sent: &[u8] = if s.early_sent { b"early " } else { b"" };
            round_trip(s, b"hello ", sent, b"through b").await;
        }
    }
}

#[tokio::test]
async fn client_credentials_are_passed_on_when_asked() {
    let dir = TempDir::new("users");
    let users = users_file(&dir, &[("alice", "wonderland"), ("bob", "builder")]);
    let b = serve(|c| c.users_file = Some(users.clone()));
    let target = echo(b"").await;
    let t = TargetAddr::from(target);
    for scheme in ["socks5h", "socks6"] {
        // No credentials in the URL: only the client's get through B.
        let pass = upstream(&format!("{scheme}://{b}"), true);
        for (u, p) in [("alice", "wonderland"), ("bob", "builder")] {
            let s = bounded(pass.connect(&t, &userpass(u, p), b""))
                .await
                .unwrap_or_else(|e| panic!("{scheme} as {u}: {e}"));
            round_trip(s, b"", b"", u.as_bytes()).await;
        }
        // A password B does not know: the client's credentials were
        // rejected upstream, so the client is not allowed (02).
        let e = bounded(pass.connect(&t, &userpass("alice", "looking-glass"), b""))
            .await
            .unwrap_err();
        assert_eq!(e.reply_code(), ReplyCode::NotAllowed, "{scheme}: {e}");
        assert!(e.to_string().starts_with("upstream b: "), "{e}");
        // A client without credentials goes with the URL's (none here).
        let e = bounded(pass.connect(&t, &Credentials::None, b""))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RequestError::Upstream(u) if u.error.is_auth_failure()),
            "{scheme}: {e:?}"
        );
        assert_eq!(e.reply_code(), ReplyCode::GeneralFailure, "{scheme}: {e}");

        // Without pass_credentials: always the URL's, whoever the client is.
        let fixed = upstream(&format!("{scheme}://bob:builder@{b}"), false);
        let s = bounded(fixed.connect(&t, &userpass("alice", "wrong"), b""))
            .await
            .unwrap_or_else(|e| panic!("{scheme} with the URL's credentials: {e}"));
        round_trip(s, b"", b"", b"fixed").await;
        // The wrong URL credentials are the operator's problem: 01, not 02.
        let wrong = upstream(&format!("{scheme}://bob:wrong@{b}"), false);
        let e = bounded(wrong.connect(&t, &userpass("alice", "wonderland"), b""))
            .await
            .unwrap_err();
        assert_eq!(e.reply_code(), ReplyCode::GeneralFailure, "{scheme}: {e}");
    }
}

#[tokio::test]
async fn socks4a_upstream_gets_the_user_name_as_userid() {
    // A fake SOCKS4a upstream that records the USERID and refuses.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        // VN CD DSTPORT DSTIP USERID\0 HOST\0
        while buf.iter().filter(|&&b| b == 0).count() < 2 + 3 {
            let mut chunk = [0u8; 256];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        s.write_all(&[0, 0x5B, 0, 0, 0, 0, 0, 0]).await.unwrap();
        buf
    });
    let up = upstream(&format!("socks4a://{addr}"), true);
    let t = TargetAddr::domain("target.test", 80);
    let e = bounded(up.connect(&t, &userpass("carol", "secret"), b""))
        .await
        .unwrap_err();
    // 5B passed on: a general failure for SOCKS5 clients, 5B for SOCKS4.
    assert_eq!(e.reply_code(), ReplyCode::GeneralFailure, "{e}");
    assert_eq!(e.reply_code().to_v4(), 0x5B);
    let req = bounded(seen).await.unwrap();
    assert_eq!(&req[..2], &[4, 1]);
    let userid_end = 8 + req[8..].iter().position(|&b| b == 0).unwrap();
    assert_eq!(&req[8..userid_end], b"carol", "USERID");
    assert!(
        !req.windows(6).any(|w| w == b"secret"),
        "no password on SOCKS4"
    );
}

#[tokio::test]
async fn resolve_and_resolve_ptr_through_the_upstream() {
    let b = serve(|_| {});
    let up = upstream(&format!("socks5h://{b}"), false);
    let ip = bounded(up.resolve("localhost", &Credentials::None))
        .await
        .unwrap();
    assert!(ip.is_loopback(), "{ip}");
    let name = bounded(up.resolve_ptr(IpAddr::V4(Ipv4Addr::LOCALHOST), &Credentials::None))
        .await
        .unwrap();
    assert!(!name.is_empty());
    let up4a = upstream(&format!("socks4a://{b}"), false);
    let ip = bounded(up4a.resolve("localhost", &Credentials::None))
        .await
        .unwrap();
    assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));

    // A name B cannot resolve: B's code (04) comes back. (`.invalid` is
    // reserved: no resolver answers it.)
    let e = bounded(up.resolve("no-such-name.invalid", &Credentials::None))
        .await
        .unwrap_err();
    assert_eq!(codes(&e), (0x04, 0x04), "{e}");

    // SOCKS 6 -11 (the URL's default) and the reference dialect: through
    // the upstream's DNS service (a CONNECT to 0.0.0.0:53).
    for url in [
        format!("socks6://{b}"),
        format!("socks6://{b}?profile=ref-207"),
    ] {
        let up = upstream(&url, false);
        let ip = bounded(up.resolve("localhost", &Credentials::None))
            .await
            .unwrap();
        assert!(ip.is_loopback(), "{url}: {ip}");
        let name = bounded(up.resolve_ptr(IpAddr::V4(Ipv4Addr::LOCALHOST), &Credentials::None))
            .await
            .unwrap();
        assert!(!name.is_empty(), "{url}");
    }

    // Schemes without RESOLVE: 07, no connection made.
    for (url, what) in [
        (format!("socks6://{b}?profile=draft-05"), "resolve"),
        (format!("socks4://{b}"), "resolve"),
        (format!("socks4a://{b}"), "ptr"),
        (format!("socks6://{b}?profile=draft-05"), "ptr"),
    ] {
        let up = upstream(&url, false);
        let e = match what {
            "resolve" => bounded(up.resolve("localhost", &Credentials::None))
                .await
                .unwrap_err(),
            _ => bounded(up.resolve_ptr(IpAddr::V4(Ipv4Addr::LOCALHOST), &Credentials::None))
                .await
                .unwrap_err(),
        };
        assert!(
            matches!(e, RequestError::UpstreamCannot(_)),
            "{url} {what}: {e:?}"
        );
        assert_eq!(e.reply_code(), ReplyCode::CommandNotSupported);
        assert!(e.to_string().contains("upstream b"), "{e}");
    }
}

#[tokio::test]
async fn refusal_codes_pass_through() {
    // B with Tor's extended errors: an invalid onion name is F6 there.
    let b = serve(|c| c.extended_errors = true);
    let up = upstream(&format!("socks5h://{b}"), false);
    let bad_onion = TargetAddr::domain("not-an-onion-address.onion", 80);
    let e = bounded(up.connect(&bad_onion, &Credentials::None, b""))
        .await
        .unwrap_err();
    assert_eq!(codes(&e), (0xF6, 0x04), "{e}");
    assert_eq!(e.reply_code().to_v4(), 0x5B);

    // Refused at the target: 05.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = bounded(up.connect(&TargetAddr::from(closed), &Credentials::None, b""))
        .await
        .unwrap_err();
    assert_eq!(codes(&e), (0x05, 0x05), "{e}");

    // The same through SOCKS 6 (09 would be a timeout; 05 stays 05).
    let up6 = upstream(&format!("socks6://{b}"), false);
    let e = bounded(up6.connect(&TargetAddr::from(closed), &Credentials::None, b"x"))
        .await
        .unwrap_err();
    assert_eq!(codes(&e), (0x05, 0x05), "{e}");
}

#[tokio::test]
async fn onion_names_are_never_resolved_here() {
    // socks5:// resolves names locally: a .onion name must not go to DNS;
    // it fails as it does without an upstream, and B is never contacted.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = l.local_addr().unwrap();
    let up = upstream(&format!("socks5://{b}"), false);
    let v3 = format!("{}.onion", "a".repeat(56));
    let e = bounded(up.connect(&TargetAddr::domain(v3, 80), &Credentials::None, b""))
        .await
        .unwrap_err();
    assert!(matches!(e, RequestError::OnionUnreachable), "{e:?}");
    let e = bounded(up.connect(
        &TargetAddr::domain("short.onion", 80),
        &Credentials::None,
        b"",
    ))
    .await
    .unwrap_err();
    assert!(matches!(e, RequestError::OnionInvalid), "{e:?}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), l.accept()).await;
    assert!(accepted.is_err(), "the upstream was contacted");
}

#[tokio::test]
async fn an_unreachable_or_silent_upstream_is_ours_to_report() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = upstream(&format!("socks5h://{closed}"), true);
    let e = bounded(up.connect(
        &TargetAddr::domain("localhost", 80),
        &userpass("a", "b"),
        b"",
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&e, RequestError::Upstream(u) if matches!(u.error, ClientError::ProxyConnect { .. })),
        "{e:?}"
    );
    assert_eq!(e.reply_code(), ReplyCode::GeneralFailure);
    assert!(e.to_string().contains("upstream b"), "{e}");

    // An upstream that accepts and never answers: the upstream's deadline.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let cfg = UpstreamConfig {
        connect_timeout: Some(1),
        ..UpstreamConfig::new(format!("socks5h://{addr}"))
    };
    let up = Upstream::new("slow", &cfg, Duration::from_secs(30)).unwrap();
    let e = bounded(up.resolve("localhost", &Credentials::None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RequestError::Upstream(u) if u.error.is_timeout()),
        "{e:?}"
    );
    assert_eq!(e.reply_code(), ReplyCode::TtlExpired);
    hold.abort();
}

// ------------------------------------------------------------- real Tor

/// Whether we run under CI (env var `CI` set and non-empty).
fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A missing tool: fail under CI, else warn loudly and skip.
fn missing(what: &str) -> bool {
    let msg = format!("{what} is missing: the real-Tor upstream test cannot run");
    if under_ci() {
        panic!("{msg} (CI is set: install it, see .ci/run)");
    }
    eprintln!("\n*** WARNING: {msg}; SKIPPED ***\n");
    false
}

fn have_tool(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(name).is_file())
}

/// Re-run the test `name` alone inside a new network namespace with only
/// `lo` (up). `true` in the inner run (run the body); `false` in the outer
/// one, after checking the inner run passed (or after a skip warning).
fn in_netns(name: &str) -> bool {
    if netns::inside() {
        return true;
    }
    for tool in ["unshare", "ip", "sh"] {
        if !have_tool(tool) {
            return missing(tool);
        }
    }
    let (stdout, stderr) = netns::rerun(name, &[], "ip link set lo up", &[]);
    // Show what the inner run printed (the codes, warnings).
    eprintln!("{stdout}{stderr}");
    false
}

/// The raw code of a refusal Tor sent directly to the client library.
fn direct_code(r: Result<impl std::fmt::Debug, ClientError>, what: &str) -> u8 {
    match r {
        Err(e) => e
            .raw_reply_code()
            .unwrap_or_else(|| panic!("{what} directly: not a refusal: {e}")),
        Ok(v) => panic!("{what} directly succeeded: {v:?}"),
    }
}

/// The code a SOCKS5 client of sixsocks gets (extended errors on, off).
fn via_code(r: Result<impl std::fmt::Debug, RequestError>, what: &str) -> (u8, u8) {
    match r {
        Err(e) => {
            assert!(
                matches!(&e, RequestError::Upstream(u) if u.error.reply_code().is_some()),
                "{what} through the upstream: not Tor's refusal: {e:?}"
            );
            codes(&e)
        }
        Ok(v) => panic!("{what} through the upstream succeeded: {v:?}"),
    }
}

#[test]
fn tor_upstream_gives_tors_own_codes_netns() {
    let Some(tor_bin) = tor::tor_binary() else {
        missing("tor (Debian package `tor`)");
        return;
    };
    if !in_netns("tor_upstream_gives_tors_own_codes_netns") {
        return;
    }
    // Inside the namespace: nothing but lo.
    let tor = tor::Tor::start(&tor_bin);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("socks5h://{}", tor.socks);
        let direct: Proxy = url.parse().unwrap();
        let up = Upstream::new(
            "tor",
            &UpstreamConfig {
                pass_credentials: true,
                ..UpstreamConfig::new(&url)
            },
            Duration::from_secs(30),
        )
        .unwrap();
        let creds = userpass("isolation-1", "x");
        let onion = TargetAddr::domain(tor::ONION_V3, 80);
        let bad = TargetAddr::domain(tor::ONION_BAD_CHECKSUM, 80);

        // All at once: the slow ones wait for Tor's SocksTimeout together.
        let (d_resolve, v_resolve, d_onion, v_onion, d_bad, v_bad) = bounded(async {
            tokio::join!(
                sixsocks_client::resolve(&direct, "example.com"),
                up.resolve("example.com", &creds),
                sixsocks_client::connect(&direct, &onion),
                up.connect(&onion, &creds, b""),
                sixsocks_client::connect(&direct, &bad),
                up.connect(&bad, &creds, b""),
            )
        })
        .await;
        let cases = [
            (
                "RESOLVE example.com",
                direct_code(d_resolve, "RESOLVE"),
                via_code(v_resolve, "RESOLVE"),
                0x04,
            ),
            (
                "CONNECT v3 .onion",
                direct_code(d_onion.map(|_| ()), "CONNECT .onion"),
                via_code(v_onion.map(|_| ()), "CONNECT .onion"),
                0x06,
            ),
            (
                "CONNECT .onion with a bad checksum",
                direct_code(d_bad.map(|_| ()), "CONNECT bad .onion"),
                via_code(v_bad.map(|_| ()), "CONNECT bad .onion"),
                0xF6,
            ),
        ];
        for (what, direct, (extended, plain), expected) in cases {
            println!(
                "{what}: tor directly {direct:02x}, through the upstream {extended:02x} \
                 (extended errors on) / {plain:02x} (off)"
            );
            assert_eq!(direct, expected, "{what}: Tor's own code");
            assert_eq!(extended, direct, "{what}: the code passed through");
            let fallback = if (0xF0..=0xF7).contains(&expected) {
                0x04
            } else {
                expected
            };
            assert_eq!(plain, fallback, "{what}: without extended errors");
        }
    });
    drop(tor);
}

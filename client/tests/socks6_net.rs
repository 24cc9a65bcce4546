//! SOCKS 6 tests that need a network namespace of their own: TCP Fast Open
//! (a sysctl, per namespace) and round-trip counting (a delayed path).
//!
//! Each test re-runs itself inside `unshare --net` (a fresh namespace with
//! only a loopback interface, and, for the round-trip count, a TUN device
//! this test drives), so nothing it does is visible outside it and no packet
//! can leave the machine.
//!
//! * TCP Fast Open: `net.ipv4.tcp_fastopen` is set in the namespace; the
//!   first connection only fetches a cookie, the second carries its data in
//!   the SYN. The server side is checked through the namespace's own
//!   `TcpExtTCPFastOpenPassive` counter (connections accepted with a valid
//!   cookie and their SYN data), which nothing else in the namespace moves,
//!   and through the client socket's `TCP_INFO` (`TCPI_OPT_SYN_DATA`: the
//!   proxy acknowledged the data in the SYN).
//! * Round trips: the client reaches the proxy through a TUN device served
//!   by a small Python program that holds every packet 250 ms and sends it
//!   back with source and destination swapped (which needs no checksum
//!   change), so the client–proxy path has a 500 ms round trip while the
//!   proxy–target path is plain loopback. The time to the target's first
//!   byte, divided by the 500 ms round trip and rounded down, is the number
//!   of client→proxy→client turns (the TCP handshake included): no turn can
//!   take less than a round trip, and the rest of the exchange (an argon2
//!   password check is the slowest part) takes far less than one.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sixsocks_client::{ClientTfo, Proxy, Socks6Options, Socks6Session, SocksStream};
use sixsocks_proto::v6::ExpenditureCode;
use sixsocks_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Re-running a test inside a network namespace, shared with the e2e tests.
#[path = "../../sixsocks/tests/common/netns.rs"]
mod netns;

const DEADLINE: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ harness

fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A missing prerequisite: fails under CI, a loud warning otherwise.
fn missing(what: &str) -> bool {
    if under_ci() {
        panic!("CI is set and a required test prerequisite is missing: {what}");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! WARNING: SKIPPING TEST: missing {what}\n\
         !!! (this would FAIL under CI=1)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn require_tools(tools: &[&str]) -> bool {
    for t in tools {
        if !have_tool(t) {
            return missing(&format!("external tool `{t}`"));
        }
    }
    true
}

/// Re-run `test_name` alone inside a fresh network namespace (loopback up).
/// Returns `true` when already inside it (run the test), `false` after the
/// inner run passed (or was skipped for a missing tool).
fn in_netns(test_name: &str) -> bool {
    if netns::inside() {
        return true;
    }
    if !require_tools(&["unshare", "ip", "sh"]) {
        return false;
    }
    let (_, stderr) = netns::rerun(test_name, &[], "ip link set lo up", &[]);
    // The inner run's report (tables, warnings) belongs in this output.
    eprintln!("--- inside the network namespace ---\n{stderr}");
    false
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("test step exceeded its deadline")
}

/// `net.ipv4.tcp_fastopen` of this namespace: 1 client, 2 server, 0x400
/// server on every listener without the `TCP_FASTOPEN` socket option.
fn set_tcp_fastopen(value: u32) {
    std::fs::write("/proc/sys/net/ipv4/tcp_fastopen", value.to_string())
        .expect("write net.ipv4.tcp_fastopen (inside our own network namespace)");
}

/// One `TcpExt` counter of this namespace.
fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if n == name {
                return v.parse().unwrap();
            }
        }
    }
    panic!("no TcpExt counter {name}");
}

async fn start_server(listen: SocketAddr) -> SocketAddr {
    start_server_with_users(listen, None).await
}

/// A gateway (`sixsocks gateway`'s configuration) on 127.0.0.1 whose every
/// request goes to the SOCKS 6 proxy at `far` (a URL).
async fn start_gateway(far: &str, optimistic: bool) -> SocketAddr {
    let mut up = sixsocks_server::config::UpstreamConfig::new(far);
    up.optimistic = optimistic;
    let mut config = Config {
        listen: vec![(Ipv4Addr::LOCALHOST, 0).into()],
        rule: Config::from_toml("[[rule]]\naction = \"pass\"\nroute = \"gateway\"\n")
            .unwrap()
            .rule,
        ..Config::default()
    };
    config.upstream.insert("gateway".into(), up);
    let server = Server::bind(config).expect("gateway binds");
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

async fn start_server_with_users(listen: SocketAddr, users: Option<PathBuf>) -> SocketAddr {
    let config = Config {
        listen: vec![listen],
        users_file: users,
        // 0.0.0.0 inside a namespace of our own, reached only through our
        // TUN device: not an open proxy.
        allow_open_proxy: true,
        ..Config::default()
    };
    let server = Server::bind(config).expect("server binds");
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

fn proxy(scheme: &str, addr: SocketAddr) -> Proxy {
    format!("{scheme}://{addr}")
        .parse::<Proxy>()
        .unwrap()
        .with_timeout(DEADLINE)
}

/// A target on 127.0.0.1 that answers `pong` once it has read `ping`
/// (so the client's first bytes must reach it before anything comes back).
/// With `echo`, it echoes everything instead.
async fn target(echo: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if echo {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    return;
                }
                let mut ping = [0u8; 4];
                if s.read_exact(&mut ping).await.is_ok() && &ping == b"ping" {
                    let _ = s.write_all(b"pong").await;
                }
                let mut sink = [0u8; 64];
                let _ = s.read(&mut sink).await;
            });
        }
    });
    (addr, accepted)
}

async fn echo_back(s: &mut SocksStream, msg: &[u8]) {
    let mut back = vec![0u8; msg.len()];
    bounded(s.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, msg);
}

// ------------------------------------------------------------------ TCP Fast Open

fn syn_data_acked(info: &sixsocks_client::Socks6Info) -> bool {
    matches!(
        info.client_tfo,
        ClientTfo::Used {
            syn_data_acked: true
        }
    )
}

#[test]
fn tcp_fast_open_on_both_legs_in_a_namespace() {
    if !in_netns("tcp_fast_open_on_both_legs_in_a_namespace") {
        return;
    }
    runtime().block_on(async {
        let tfo = Socks6Options::new().client_tfo(true);

        // The setting first: net.ipv4.tcp_fastopen = 3 (client and
        // server). Server-side TFO then needs the listener to ask for it.
        set_tcp_fastopen(3);
        let server = start_server((Ipv4Addr::LOCALHOST, 0).into()).await;
        let p = proxy("socks6", server);
        let session = Socks6Session::new(p.clone()).with_options(tfo.clone());
        let first = bounded(session.noop()).await.unwrap();
        assert!(
            matches!(first.client_tfo, ClientTfo::Used { .. }),
            "{:?}",
            first.client_tfo
        );
        let second = bounded(session.noop()).await.unwrap();
        let listener_has_tfo = syn_data_acked(&second);
        if !listener_has_tfo {
            eprintln!(
                "WARNING: with net.ipv4.tcp_fastopen=3 the proxy did not accept data in \
                 the SYN: the sixsocks listener does not set TCP_FASTOPEN. Going on with \
                 0x403 (TFO on every listener)."
            );
        }
        // 0x400 turns TFO on for every listener, at listen() time: start
        // the proxy and the target anew.
        set_tcp_fastopen(0x403);
        let server = start_server((Ipv4Addr::LOCALHOST, 0).into()).await;
        let p = proxy("socks6", server);
        let (echo, _) = target(true).await;

        // Client–proxy leg. A first connection fetches the cookie; the next
        // ones carry the request in the SYN.
        let session = Socks6Session::new(p.clone()).with_options(tfo.clone());
        let _ = bounded(session.noop()).await.unwrap();
        let passive = tcp_ext("TCPFastOpenPassive");
        let info = bounded(session.noop()).await.unwrap();
        assert!(syn_data_acked(&info), "NOOP: {:?}", info.client_tfo);
        assert_eq!(
            tcp_ext("TCPFastOpenPassive") - passive,
            1,
            "the proxy accepted one connection with data in its SYN"
        );

        // CONNECT without data: no application data in the SYN, allowed.
        let passive = tcp_ext("TCPFastOpenPassive");
        let mut s = bounded(session.connect(echo)).await.unwrap();
        assert!(syn_data_acked(s.socks6_info().unwrap()));
        s.write_all(b"after").await.unwrap();
        echo_back(&mut s, b"after").await;
        assert_eq!(tcp_ext("TCPFastOpenPassive") - passive, 1);

        // Initial data without a token: the draft forbids it in the SYN.
        let passive = tcp_ext("TCPFastOpenPassive");
        let mut s = bounded(session.connect_with_data(echo, b"replayable"))
            .await
            .unwrap();
        assert_eq!(s.socks6_info().unwrap().client_tfo, ClientTfo::Forbidden);
        echo_back(&mut s, b"replayable").await;
        assert_eq!(tcp_ext("TCPFastOpenPassive") - passive, 0, "no TFO");

        // ... unless the application says it tolerates replays ...
        let tolerant =
            Socks6Session::new(p.clone()).with_options(tfo.clone().replay_tolerant(true));
        let mut s = bounded(tolerant.connect_with_data(echo, b"tls hello"))
            .await
            .unwrap();
        assert!(syn_data_acked(s.socks6_info().unwrap()));
        echo_back(&mut s, b"tls hello").await;

        // ... or the request spends a token.
        let tokens = Socks6Session::new(p.clone())
            .with_options(tfo.clone())
            .with_tokens(8)
            .unwrap();
        let _ = bounded(tokens.noop()).await.unwrap(); // fetches the window
        let passive = tcp_ext("TCPFastOpenPassive");
        let mut s = bounded(tokens.connect_with_data(echo, b"GET / HTTP/1.0\r\n\r\n"))
            .await
            .unwrap();
        let info = s.socks6_info().unwrap().clone();
        assert!(info.token.is_some());
        assert_eq!(info.expenditure, Some(ExpenditureCode::SUCCESS));
        assert!(syn_data_acked(&info), "{:?}", info.client_tfo);
        echo_back(&mut s, b"GET / HTTP/1.0\r\n\r\n").await;
        assert_eq!(tcp_ext("TCPFastOpenPassive") - passive, 1);

        // Proxy–remote leg: the proxy connects to the target with TFO and
        // the initial data; the first time fetches the target's cookie.
        let remote = Socks6Options::new().remote_tfo(0);
        let _ = bounded(sixsocks_client::socks6_connect(
            &p, echo, b"cookie", &remote,
        ))
        .await
        .unwrap();
        let passive = tcp_ext("TCPFastOpenPassive");
        let active = tcp_ext("TCPFastOpenActive");
        let mut s = bounded(sixsocks_client::socks6_connect(
            &p,
            echo,
            b"in the SYN",
            &remote,
        ))
        .await
        .unwrap();
        let info = s.socks6_info().unwrap().clone();
        assert_eq!(info.client_tfo, ClientTfo::NotRequested);
        assert!(
            info.applied().tfo.is_some(),
            "the proxy reports TFO: {:?}",
            info.applied()
        );
        echo_back(&mut s, b"in the SYN").await;
        assert_eq!(
            tcp_ext("TCPFastOpenPassive") - passive,
            1,
            "the target accepted the initial data in the SYN"
        );
        assert_eq!(
            tcp_ext("TCPFastOpenActive") - active,
            1,
            "the proxy sent it"
        );

        eprintln!(
            "TFO: client–proxy leg with tcp_fastopen=3: {}; with 0x403: request in the SYN \
             (NOOP, CONNECT without data, with a token, replay-tolerant), refused for \
             initial data without a token; proxy–remote leg: initial data in the SYN",
            if listener_has_tfo {
                "request in the SYN"
            } else {
                "NOT accepted (listener lacks TCP_FASTOPEN)"
            }
        );
    });
}

// ------------------------------------------------------------------ round trips

/// Holds every IPv4 packet of a TUN device for DELAY seconds, then writes
/// it back with source and destination swapped (a swap changes neither the
/// IP nor the TCP/UDP checksum, both being sums over the two addresses).
const TUN_DELAY_PY: &str = include_str!("../../bench/tun_delay.py");

const TUN: &str = "s6delay0";
const ONE_WAY: Duration = Duration::from_millis(250);
/// Our end of the TUN device, and the address that reaches ourselves
/// through it (the program swaps the two).
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const VIA_TUN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// The delay program, killed (by its PID) on drop.
struct Delay(Child);

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_delay() -> Option<Delay> {
    if !require_tools(&["python3"]) {
        return None;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        missing("/dev/net/tun");
        return None;
    }
    let script = std::env::temp_dir().join(format!("sixsocks-tun-delay-{}.py", std::process::id()));
    std::fs::write(&script, TUN_DELAY_PY).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(TUN)
        .arg(ONE_WAY.as_secs_f64().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = std::fs::remove_file(&script);
    let delay = Delay(child);
    assert_eq!(line.trim(), "ready", "the TUN delay program did not start");
    for cmd in [
        format!("ip addr add {LOCAL}/32 dev {TUN}"),
        format!("ip link set {TUN} up"),
        format!("ip route add {VIA_TUN}/32 dev {TUN}"),
    ] {
        let ok = Command::new("sh")
            .args(["-c", &cmd])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    }
    Some(delay)
}

/// Connect through the proxy, send `ping` (with the request where the mode
/// allows it, else after the reply), and time the first byte of `pong`.
async fn time_to_first_byte<F, Fut>(connect: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = (SocksStream, bool)>,
{
    let start = Instant::now();
    let (mut s, sent) = bounded(connect()).await;
    if !sent {
        s.write_all(b"ping").await.unwrap();
    }
    let mut first = [0u8; 1];
    bounded(s.read_exact(&mut first)).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(&first, b"p");
    elapsed
}

/// Whole round trips in `elapsed`. Each turn takes at least one round
/// trip (the delay program never sends a packet early), and what else the
/// exchange costs (an argon2 password check: some 100 ms in a debug build
/// on a busy machine) stays well below one, so rounding down counts turns.
fn turns(elapsed: Duration) -> u32 {
    (elapsed.as_millis() / (2 * ONE_WAY.as_millis())) as u32
}

#[test]
fn round_trips_to_the_first_response_byte() {
    if !in_netns("round_trips_to_the_first_response_byte") {
        return;
    }
    let Some(_delay) = start_delay() else {
        return;
    };
    set_tcp_fastopen(0x403);
    runtime().block_on(async {
        let (pong, _) = target(false).await;
        let server = start_server((Ipv4Addr::UNSPECIFIED, 0).into()).await;
        let via = SocketAddr::new(IpAddr::V4(VIA_TUN), server.port());
        let users = std::env::temp_dir().join(format!("sixsocks-rtt-users-{}", std::process::id()));
        sixsocks_server::auth::set_user(
            &users,
            "alice",
            &sixsocks_proto::Password::new(b"s3cret".to_vec()),
        )
        .unwrap();
        let guarded =
            start_server_with_users((Ipv4Addr::UNSPECIFIED, 0).into(), Some(users.clone())).await;
        let _ = std::fs::remove_file(&users);
        let via_auth = SocketAddr::new(IpAddr::V4(VIA_TUN), guarded.port());
        let s5_auth = proxy("socks5", via_auth).with_auth("alice", "s3cret");
        let s6_auth = proxy("socks6", via_auth).with_auth("alice", "s3cret");
        let auth_plain = Socks6Session::new(s6_auth.clone());
        let auth_slow = Socks6Session::new(s6_auth.clone())
            .with_options(Socks6Options::new().zero_rtt_auth(false));
        // The path really is slow: one TCP handshake takes one round trip.
        let t = Instant::now();
        drop(bounded(tokio::net::TcpStream::connect(via)).await.unwrap());
        assert_eq!(
            turns(t.elapsed()),
            1,
            "{:?} for a TCP handshake",
            t.elapsed()
        );

        let s5 = proxy("socks5", via);
        let s6 = proxy("socks6", via);
        let tfo = Socks6Options::new().client_tfo(true);
        let plain = Socks6Session::new(s6.clone());
        let tfo_tolerant =
            Socks6Session::new(s6.clone()).with_options(tfo.clone().replay_tolerant(true));
        let tfo_forbidden = Socks6Session::new(s6.clone()).with_options(tfo.clone());
        let tfo_token = Socks6Session::new(s6.clone())
            .with_options(tfo.clone())
            .with_tokens(16)
            .unwrap();
        // Unmeasured: fetch the TFO cookie and the token window.
        let _ = bounded(tfo_token.noop()).await.unwrap();
        let _ = bounded(tfo_tolerant.noop()).await.unwrap();
        let auth_tfo_token = Socks6Session::new(s6_auth.clone())
            .with_options(tfo.clone())
            .with_tokens(16)
            .unwrap();
        let _ = bounded(auth_tfo_token.noop()).await.unwrap();

        let mut rows: Vec<(&str, Duration, u32, u32)> = Vec::new();
        let mut row = |name, elapsed: Duration, expected| {
            rows.push((name, elapsed, turns(elapsed), expected));
        };
        row(
            "SOCKS5: greeting, request, then data",
            time_to_first_byte(|| async {
                (sixsocks_client::connect(&s5, pong).await.unwrap(), false)
            })
            .await,
            4,
        );
        row(
            "SOCKS5: greeting+request+data pipelined (Tor's optimistic data)",
            time_to_first_byte(|| async {
                (
                    sixsocks_client::connect_with_data(&s5, pong, b"ping")
                        .await
                        .unwrap(),
                    true,
                )
            })
            .await,
            2,
        );
        row(
            "SOCKS 6: request + initial data, no TFO",
            time_to_first_byte(|| async {
                (plain.connect_with_data(pong, b"ping").await.unwrap(), true)
            })
            .await,
            2,
        );
        row(
            "SOCKS 6 + TFO asked, initial data, no token (draft forbids TFO)",
            time_to_first_byte(|| async {
                let s = tfo_forbidden
                    .connect_with_data(pong, b"ping")
                    .await
                    .unwrap();
                assert_eq!(s.socks6_info().unwrap().client_tfo, ClientTfo::Forbidden);
                (s, true)
            })
            .await,
            2,
        );
        row(
            "SOCKS 6 + TFO, initial data, replay-tolerant application",
            time_to_first_byte(|| async {
                let s = tfo_tolerant.connect_with_data(pong, b"ping").await.unwrap();
                assert!(syn_data_acked(s.socks6_info().unwrap()));
                (s, true)
            })
            .await,
            1,
        );
        row(
            "SOCKS 6 + TFO, initial data, token spent",
            time_to_first_byte(|| async {
                let s = tfo_token.connect_with_data(pong, b"ping").await.unwrap();
                let info = s.socks6_info().unwrap();
                assert!(syn_data_acked(info), "{:?}", info.client_tfo);
                assert_eq!(info.expenditure, Some(ExpenditureCode::SUCCESS));
                (s, true)
            })
            .await,
            1,
        );
        row(
            "SOCKS 6 + TFO, no initial data (data after the reply)",
            time_to_first_byte(|| async {
                let s = tfo_forbidden.connect(pong).await.unwrap();
                assert!(syn_data_acked(s.socks6_info().unwrap()));
                (s, false)
            })
            .await,
            2,
        );

        row(
            "SOCKS5 + username/password: greeting, auth, request, then data",
            time_to_first_byte(|| async {
                (
                    sixsocks_client::connect(&s5_auth, pong).await.unwrap(),
                    false,
                )
            })
            .await,
            5,
        );
        row(
            "SOCKS5 + username/password, data right behind the request",
            time_to_first_byte(|| async {
                (
                    sixsocks_client::connect_with_data(&s5_auth, pong, b"ping")
                        .await
                        .unwrap(),
                    true,
                )
            })
            .await,
            4,
        );
        row(
            "SOCKS 6 + username/password in the request (0-RTT auth)",
            time_to_first_byte(|| async {
                (
                    auth_plain.connect_with_data(pong, b"ping").await.unwrap(),
                    true,
                )
            })
            .await,
            2,
        );
        row(
            "SOCKS 6 + username/password, slow path (RFC 1929 exchange)",
            time_to_first_byte(|| async {
                let s = auth_slow.connect_with_data(pong, b"ping").await.unwrap();
                assert!(s.socks6_info().unwrap().slow_auth);
                (s, true)
            })
            .await,
            3,
        );
        row(
            "SOCKS 6 + username/password 0-RTT + TFO + token",
            time_to_first_byte(|| async {
                let s = auth_tfo_token
                    .connect_with_data(pong, b"ping")
                    .await
                    .unwrap();
                assert!(syn_data_acked(s.socks6_info().unwrap()));
                (s, true)
            })
            .await,
            1,
        );

        // Issue 14: a SOCKS5 application → a local gateway (plain
        // loopback) → the slow link → the far proxy. Through the gateway
        // the application pays on the slow leg what a SOCKS 6 client pays:
        // optimistic, its first bytes ride with the request; after the
        // first request the session, a token and the TFO cookie are there.
        for (mode, optimistic, with_password, expected) in [
            ("optimistic", true, false, 1),
            ("optimistic, far proxy with a password", true, true, 1),
            ("strict", false, false, 2),
        ] {
            let far = if with_password {
                format!("socks6://alice:s3cret@{via_auth}")
            } else {
                format!("socks6://{via}")
            };
            let gateway = start_gateway(&far, optimistic).await;
            let app = proxy("socks5h", gateway);
            // Unmeasured: the session, the window and the TFO cookie.
            for _ in 0..2 {
                let mut s = bounded(sixsocks_client::connect(&app, pong)).await.unwrap();
                s.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 4];
                bounded(s.read_exact(&mut b)).await.unwrap();
            }
            let name: &'static str = Box::leak(
                format!("SOCKS5 app → gateway ({mode}) → SOCKS 6 + TFO + token").into_boxed_str(),
            );
            row(
                name,
                time_to_first_byte(|| async {
                    (sixsocks_client::connect(&app, pong).await.unwrap(), false)
                })
                .await,
                expected,
            );
        }

        let mut table = format!(
            "\nclient→proxy→client turns before the first response byte \
             (client–proxy RTT {} ms; TCP handshake included)\n",
            2 * ONE_WAY.as_millis()
        );
        table.push_str(&format!(
            "{:<66} {:>6} {:>9} {:>5}\n",
            "mode", "ms", "other ms", "turns"
        ));
        let rtt = 2 * ONE_WAY.as_millis();
        for (name, elapsed, n, _) in &rows {
            let ms = elapsed.as_millis();
            table.push_str(&format!(
                "{name:<66} {ms:>6} {:>9} {n:>5}\n",
                ms - u128::from(*n) * rtt
            ));
        }
        eprintln!("{table}");
        for (name, elapsed, n, expected) in &rows {
            assert_eq!(n, expected, "{name}: {elapsed:?}\n{table}");
        }
    });
}

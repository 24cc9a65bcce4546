//! Shared harness for the end-to-end tests of the `sixsocks` binary.
//!
//! * [`Server`]: runs `sixsocks serve`, reads the bound address from its log,
//!   keeps capturing its stderr for log assertions, counts its open file
//!   descriptors, sends it signals, and kills it (by PID) on drop.
//! * Local targets on 127.0.0.1: an echo server, an HTTP server with a known
//!   body, and [`spawn_target`] for custom behaviour. All of them count the
//!   connections they accepted.
//! * Raw SOCKS helpers that write the bytes by hand (independent of the
//!   project's own protocol crate, so the tests check it rather than mirror it).
//! * [`in_netns`]: re-runs one test inside fresh network and mount namespaces
//!   (only a loopback interface, a private /etc/hosts and /etc/resolv.conf),
//!   where "network unreachable" and DNS failures can be provoked without a
//!   packet leaving the machine.
//! * [`require_tools`]: a missing external tool fails the test under CI,
//!   and is a loud warning plus an early return otherwise.
//! * [`tor`]: a real Tor as an upstream, inside a loopback-only namespace.
#![allow(dead_code)]

pub mod netns;
pub mod tor;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sixsocks");

/// Read/write timeout on every test socket: a test that waits longer than
/// this for the proxy has found a hang, not a slow machine.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// The users-file option of `serve` and `passwd`. (The brief called it
/// `--users`; the CLI names it after the config key `users_file`.)
pub const USERS_FLAG: &str = "--users-file";

/// How long the fd count may take to come back to its baseline.
pub const FD_SETTLE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------

/// Whether we run under CI (env var `CI` set and non-empty).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Whether `name` is an executable on `PATH`.
pub fn have_tool(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let p = dir.join(name);
        p.is_file()
            && std::fs::metadata(&p)
                .map(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
                .unwrap_or(false)
    })
}

/// Report a missing prerequisite: panic under CI, warn loudly otherwise.
/// Returns `false` so callers can `return` early.
pub fn missing(what: &str) -> bool {
    if under_ci() {
        panic!("CI is set and a required test prerequisite is missing: {what}");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! WARNING: SKIPPING TEST {:?}: missing {what}\n\
         !!! (this would FAIL under CI=1; see .ci/run for how to install it)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        thread::current().name().unwrap_or("?")
    );
    false
}

/// Check that every tool is on `PATH`. See [`missing`].
pub fn require_tools(tools: &[&str]) -> bool {
    for t in tools {
        if !have_tool(t) {
            return missing(&format!("external tool `{t}`"));
        }
    }
    true
}

/// Python 3 with PySocks (`import socks`).
pub fn require_pysocks() -> bool {
    if !require_tools(&["python3"]) {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import socks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || missing("the Python module PySocks (`import socks`)")
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "sixsocks-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

#[derive(Default)]
struct LogInner {
    lines: Vec<String>,
    eof: bool,
}

/// The server's stderr, line by line, as it arrives.
#[derive(Default)]
pub struct Logs {
    inner: Mutex<LogInner>,
    cond: Condvar,
}

impl Logs {
    fn push(&self, line: String) {
        let mut g = self.inner.lock().unwrap();
        g.lines.push(line);
        self.cond.notify_all();
    }
    fn close(&self) {
        let mut g = self.inner.lock().unwrap();
        g.eof = true;
        self.cond.notify_all();
    }
    pub fn lines(&self) -> Vec<String> {
        self.inner.lock().unwrap().lines.clone()
    }
    /// Wait until `pred` holds for the lines so far; returns whether it did.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.inner.lock().unwrap();
        loop {
            if pred(&g.lines) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || g.eof {
                return pred(&g.lines);
            }
            g = self.cond.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

/// Parse `key=value` fields from a log line (values may be quoted).
pub fn log_fields(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq]
            .rfind(|c: char| c.is_whitespace() || c == '{' || c == ',')
            .map(|i| i + 1)
            .unwrap_or(0);
        let key = rest[key_start..eq].to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(stripped) = after.strip_prefix('"') {
            match stripped.find('"') {
                Some(end) => (stripped[..end].to_string(), &stripped[end + 1..]),
                None => (stripped.to_string(), ""),
            }
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (
                after[..end].trim_end_matches(',').to_string(),
                &after[end..],
            )
        };
        if !key.is_empty() {
            out.insert(key, value);
        }
        rest = next;
    }
    out
}

/// The address printed after `listening on ` in a log line.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let i = line.find("listening on ")?;
    let tail = &line[i + "listening on ".len()..];
    let token: String = tail
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ','))
        .collect();
    token.parse().ok()
}

/// A running `sixsocks serve`.
pub struct Server {
    child: Mutex<Child>,
    pid: u32,
    /// The first listening address.
    pub addr: SocketAddr,
    /// Every listening address, in log order.
    pub listeners: Vec<SocketAddr>,
    pub logs: Arc<Logs>,
    status: Mutex<Option<ExitStatus>>,
    _dir: Option<TempDir>,
}

/// A name only the proxy can resolve: [`Server::start_with_hosts`] gives
/// the server a private /etc/hosts mapping it to 127.0.0.1, while the test
/// process and the clients it runs do not know it. A client that fetches
/// from it therefore proves that the *proxy* resolved the name. (The `.test`
/// TLD is reserved: no real resolver answers for it.)
pub const PROXY_ONLY_NAME: &str = "sixsocks-e2e.test";

/// A name that [`Server::start_with_hosts`] maps to both 127.0.0.1 and ::1.
pub const PROXY_ONLY_DUAL_NAME: &str = "sixsocks-dual.test";

/// Names that [`Server::start_with_hosts`] maps to the unspecified
/// addresses `0.0.0.0` and `::` (loopback in disguise: never a target).
pub const PROXY_ONLY_ZERO_NAME: &str = "sixsocks-zero.test";
pub const PROXY_ONLY_ZERO6_NAME: &str = "sixsocks-zero6.test";

impl Server {
    /// `sixsocks serve ARGS`, adding `--listen 127.0.0.1:0` unless ARGS
    /// have a `--listen` (or a `--config`, which may set listeners itself).
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(Command::new(BIN), args, None, None)
    }

    /// Like [`Server::start`], with the open-file limit (soft and hard)
    /// set to `nofile` through `prlimit`, which execs into the binary.
    /// Returns `None` (after [`missing`]) without `prlimit`.
    pub fn start_with_nofile(nofile: u64, args: &[&str]) -> Option<Server> {
        if !require_tools(&["prlimit"]) {
            return None;
        }
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg(BIN);
        Some(Server::spawn(cmd, args, None, None))
    }

    /// Like [`Server::start`], waiting for `listeners` `listening on` lines
    /// (for a config file that lists several).
    pub fn start_n(args: &[&str], listeners: usize) -> Server {
        Server::spawn(Command::new(BIN), args, None, Some(listeners))
    }

    /// Like [`Server::start`], but the server runs in its own mount
    /// namespace whose /etc/hosts also maps [`PROXY_ONLY_NAME`] to
    /// 127.0.0.1. Returns `None` (after [`missing`]) without `unshare`.
    pub fn start_with_hosts(args: &[&str]) -> Option<Server> {
        if !require_tools(&["unshare", "mount", "sh"]) {
            return None;
        }
        let dir = TempDir::new("hosts");
        let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        hosts.push_str(&format!(
            "\n127.0.0.1\t{PROXY_ONLY_NAME}\n127.0.0.1\t{PROXY_ONLY_DUAL_NAME}\n::1\t{PROXY_ONLY_DUAL_NAME}\n\
             0.0.0.0\t{PROXY_ONLY_ZERO_NAME}\n::\t{PROXY_ONLY_ZERO6_NAME}\n"
        ));
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$SIXSOCKS_HOSTS\" /etc/hosts && exec \"$0\" \"$@\"",
            BIN,
        ])
        .env("SIXSOCKS_HOSTS", dir.join("hosts"));
        Some(Server::spawn(cmd, args, Some(dir), None))
    }

    /// `sixsocks gateway --upstream URL ARGS`, the SOCKS 6 gateway (which
    /// logs and listens as `serve` does).
    pub fn start_gateway(upstream: &str, args: &[&str]) -> Server {
        let mut all = vec!["gateway", "--upstream", upstream];
        all.extend_from_slice(args);
        Server::spawn(Command::new(BIN), &all, None, None)
    }

    /// Start `cmd serve ARGS` (`cmd` execs into the binary, keeping its PID;
    /// ARGS beginning with `gateway` start that subcommand instead).
    fn spawn(
        mut cmd: Command,
        args: &[&str],
        dir: Option<TempDir>,
        listeners: Option<usize>,
    ) -> Server {
        let mut argv: Vec<String> = match args.first() {
            Some(&"gateway") => Vec::new(),
            _ => vec!["serve".into()],
        };
        argv.extend(args.iter().map(|s| s.to_string()));
        let listens = args.iter().filter(|a| **a == "--listen").count();
        if listens == 0 && !args.contains(&"--config") {
            argv.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let expected = listeners.unwrap_or(listens.max(1));
        let mut child = cmd
            .args(&argv)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let logs = Arc::new(Logs::default());
        let stderr = child.stderr.take().unwrap();
        let l2 = logs.clone();
        let echo = std::env::var_os("SIXSOCKS_TEST_ECHO_LOGS").is_some();
        thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        if echo {
                            eprintln!("[sixsocks] {line}");
                        }
                        l2.push(line);
                    }
                }
            }
            l2.close();
        });
        let ok = logs.wait(Duration::from_secs(30), |lines| {
            lines
                .iter()
                .filter(|l| parse_listening(l).is_some())
                .count()
                >= expected
        });
        let pid = child.id();
        let mut server = Server {
            child: Mutex::new(child),
            pid,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            listeners: Vec::new(),
            logs,
            status: Mutex::new(None),
            _dir: dir,
        };
        if !ok {
            panic!(
                "server `sixsocks {}` did not log `listening on ADDR` {expected} time(s); \
                 exit status {:?}; its stderr:\n{}",
                argv.join(" "),
                server.try_status(),
                server.log_text()
            );
        }
        server.listeners = server
            .logs
            .lines()
            .iter()
            .filter_map(|l| parse_listening(l))
            .collect();
        server.addr = server.listeners[0];
        server
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// All of stderr so far.
    pub fn log_text(&self) -> String {
        self.logs.lines().join("\n")
    }

    /// Lines containing `session end`, parsed into fields.
    pub fn session_ends(&self) -> Vec<HashMap<String, String>> {
        self.logs
            .lines()
            .iter()
            .filter(|l| l.contains("session end"))
            .map(|l| log_fields(l))
            .collect()
    }

    /// Wait until at least `n` sessions have ended; returns them all.
    pub fn wait_session_ends(&self, n: usize) -> Vec<HashMap<String, String>> {
        let ok = self.logs.wait(IO_TIMEOUT, |lines| {
            lines.iter().filter(|l| l.contains("session end")).count() >= n
        });
        assert!(
            ok,
            "expected at least {n} `session end` log lines; logs:\n{}",
            self.log_text()
        );
        self.session_ends()
    }

    /// Number of open file descriptors of the server process, pipes
    /// aside: the relay keeps up to 16 idle splice pipes per worker thread
    /// for reuse (server/src/relay.rs), which are not leaks. Sockets,
    /// files and everything else count.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .map_or(true, |t| !t.to_string_lossy().starts_with("pipe:"))
                    })
                    .count()
            })
            .unwrap_or_else(|e| panic!("cannot read /proc/{}/fd: {e}", self.pid()))
    }

    /// Poll (bounded) until the fd count is at most `baseline`; returns the last count.
    pub fn settle_fds(&self, baseline: usize) -> usize {
        let deadline = Instant::now() + FD_SETTLE;
        loop {
            let n = self.fd_count();
            if n <= baseline || Instant::now() >= deadline {
                return n;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Assert that the fd count comes back to `baseline`.
    pub fn assert_fds_settle(&self, baseline: usize, after: &str) {
        let n = self.settle_fds(baseline);
        assert!(
            n <= baseline,
            "after {after}: the server holds {n} fds, baseline {baseline} \
             (waited {FD_SETTLE:?}); fds: {:?}",
            self.fd_list()
        );
    }

    fn fd_list(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        let t = std::fs::read_link(e.path())
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        format!("{}->{t}", e.file_name().to_string_lossy())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Serve one session (SOCKS5 CONNECT to `echo`, round trip), wait for
    /// its `session end`, then return the fd count: the baseline for
    /// leak checks.
    pub fn fd_baseline(&self, echo: SocketAddr, creds: Option<(&str, &str)>) -> usize {
        let before = self.session_ends().len();
        self.assert_serves(echo, creds);
        self.wait_session_ends(before + 1);
        // Let the count settle: it only ever goes down from here.
        let mut n = self.fd_count();
        for _ in 0..10 {
            thread::sleep(Duration::from_millis(30));
            n = n.min(self.fd_count());
        }
        n
    }

    /// A fresh client gets a working SOCKS5 CONNECT to the echo target.
    pub fn assert_serves(&self, echo: SocketAddr, creds: Option<(&str, &str)>) {
        let (mut s, rep) = socks5_connect(self.addr, &v5_addr(echo), creds);
        assert_eq!(rep.rep, 0x00, "health check CONNECT failed: {rep:?}");
        s.write_all(b"health-check").unwrap();
        let got = read_n(&mut s, 12);
        assert_eq!(got, b"health-check");
    }

    /// The standard check after feeding bad input: the proxy serves a new
    /// client and the fd count returns to the baseline.
    pub fn assert_healthy(&self, echo: SocketAddr, baseline: usize, after: &str) {
        assert!(
            self.is_running(),
            "the server died after {after}; logs:\n{}",
            self.log_text()
        );
        self.assert_serves(echo, None);
        self.assert_fds_settle(baseline, after);
    }

    /// Send a signal (`"TERM"`, `"INT"`, ...) to the server by PID.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\"", sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -s {sig} {} failed", self.pid());
    }

    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    fn try_status(&self) -> Option<ExitStatus> {
        let mut st = self.status.lock().unwrap();
        if st.is_none() {
            *st = self.child.lock().unwrap().try_wait().unwrap();
        }
        *st
    }

    /// Wait (bounded) for the process to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let mut child = self.child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "----- sixsocks stderr (pid {}) -----\n{}\n-----",
                self.pid,
                self.log_text()
            );
        }
    }
}

/// Create or update a users file with `sixsocks passwd`.
pub fn passwd(users: &Path, user: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["passwd", USERS_FLAG])
        .arg(users)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sixsocks passwd failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(password),
        "sixsocks passwd printed the password: {all}"
    );
}

// ---------------------------------------------------------------------------
// Local targets
// ---------------------------------------------------------------------------

/// A local TCP target with a connection counter.
pub struct Target {
    pub addr: SocketAddr,
    /// Also listening on `[::1]:same port`, when that could be arranged.
    pub v6: bool,
    pub accepted: Arc<AtomicUsize>,
}

impl Target {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn accept_loop<F>(l: TcpListener, count: Arc<AtomicUsize>, handler: Arc<F>)
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(IO_TIMEOUT * 2));
            let _ = s.set_write_timeout(Some(IO_TIMEOUT * 2));
            let h = handler.clone();
            thread::spawn(move || h(s));
        }
    });
}

/// A target on 127.0.0.1 running `handler` for each connection (in its own thread).
pub fn spawn_target<F>(handler: F) -> Target
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    accept_loop(l, accepted.clone(), Arc::new(handler));
    Target {
        addr,
        v6: false,
        accepted,
    }
}

/// Like [`spawn_target`], but also on `[::1]` with the same port when
/// possible, so that `localhost` works whichever address it resolves to.
pub fn spawn_target_dual<F>(handler: F) -> Target
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let accepted = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l4.local_addr().unwrap();
        match TcpListener::bind(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())) {
            Ok(l6) => {
                accept_loop(l4, accepted.clone(), handler.clone());
                accept_loop(l6, accepted.clone(), handler);
                return Target {
                    addr,
                    v6: true,
                    accepted,
                };
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
            Err(_) => break, // no IPv6 loopback here
        }
    }
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l4.local_addr().unwrap();
    accept_loop(l4, accepted.clone(), handler);
    Target {
        addr,
        v6: false,
        accepted,
    }
}

/// Echoes everything back; shuts down its write side at EOF.
pub fn echo_server() -> Target {
    spawn_target_dual(|mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// The body served by [`http_server`].
pub fn http_body() -> Vec<u8> {
    let mut body = b"sixsocks-e2e-body\n".to_vec();
    for i in 0..2000u32 {
        body.extend_from_slice(format!("line {i} of the known body\n").as_bytes());
    }
    body
}

/// An HTTP/1.0 server answering every request with [`http_body`].
pub fn http_server() -> Target {
    let body = Arc::new(http_body());
    spawn_target_dual(move |mut s| {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let resp = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes());
        let _ = s.write_all(&body);
        let _ = s.shutdown(Shutdown::Write);
        // Drain until the client closes, so the close is clean (no RST).
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    })
}

/// A port on 127.0.0.1 with nothing listening (bound once, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A listener that never accepts, with a zero backlog, filled until a
/// further connection attempt hangs. Connecting to it (while the returned
/// streams live) does not complete: used to provoke a connect timeout.
pub struct HangingListener {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

pub fn hanging_listener() -> HangingListener {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(700)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                return HangingListener {
                    addr,
                    _listener: l,
                    _fillers: fillers,
                }
            }
            Err(e) => panic!("filling the backlog of {addr}: unexpected {e}"),
        }
    }
    panic!("a backlog-0 listener accepted 16 connections without accept(): cannot provoke a connect timeout this way");
}

// ---------------------------------------------------------------------------
// Raw SOCKS helpers
// ---------------------------------------------------------------------------

/// Connect to the proxy with test timeouts.
/// Like [`connect`], from the local address `src` (another loopback
/// address, such as 127.0.0.2, is another client to the proxy).
pub fn connect_from(src: IpAddr, addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    sock.bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    sock.connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr} from {src}: {e}"));
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read exactly `n` bytes (panics on EOF, error or timeout).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf[got..]) {
            Ok(0) => panic!(
                "EOF after {got} of {n} expected bytes: {:02x?}",
                &buf[..got]
            ),
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "error after {got} of {n} expected bytes ({:02x?}): {e}",
                &buf[..got]
            ),
        }
    }
    buf
}

/// How a connection ended, from the reader's side.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    Eof,
    Reset,
    Timeout,
}

/// Read until EOF, reset or timeout; returns everything read and how it ended.
pub fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, End::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, End::Timeout)
            }
            Err(_) => return (out, End::Reset),
        }
    }
}

/// Assert the proxy sends exactly `expected` and then closes the connection.
pub fn assert_closed_after(s: &mut TcpStream, expected: &[u8], what: &str) {
    let (got, end) = read_to_close(s);
    assert_ne!(
        end,
        End::Timeout,
        "{what}: the proxy kept the connection open ({IO_TIMEOUT:?}) after sending {got:02x?}"
    );
    assert_eq!(
        got, expected,
        "{what}: the proxy sent {got:02x?}, expected {expected:02x?} then close"
    );
}

/// `ATYP | ADDR | PORT` for an IP socket address.
pub fn v5_addr(a: SocketAddr) -> Vec<u8> {
    let mut v = Vec::new();
    match a.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(0x04);
            v.extend_from_slice(&ip.octets());
        }
    }
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// `ATYP=03 | LEN | NAME | PORT`.
pub fn v5_domain(name: &[u8], port: u16) -> Vec<u8> {
    assert!(name.len() <= 255);
    let mut v = vec![0x03, name.len() as u8];
    v.extend_from_slice(name);
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// A SOCKS5 request: `05 CMD 00 | addr`.
pub fn v5_request(cmd: u8, addr: &[u8]) -> Vec<u8> {
    let mut v = vec![0x05, cmd, 0x00];
    v.extend_from_slice(addr);
    v
}

/// An RFC 1929 request.
pub fn userpass_msg(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01, user.len() as u8];
    v.extend_from_slice(user);
    v.push(pass.len() as u8);
    v.extend_from_slice(pass);
    v
}

/// A parsed SOCKS5 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V5Reply {
    pub rep: u8,
    pub atyp: u8,
    /// The address bytes (for ATYP 03: the name, without its length byte).
    pub addr: Vec<u8>,
    pub port: u16,
}

impl V5Reply {
    pub fn ip(&self) -> Option<IpAddr> {
        match self.atyp {
            0x01 => Some(IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            ))),
            0x04 => {
                let o: [u8; 16] = self.addr.clone().try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }
}

/// Read one complete SOCKS5 reply.
pub fn read_v5_reply(s: &mut TcpStream) -> V5Reply {
    let head = read_n(s, 4);
    assert_eq!(head[0], 0x05, "reply version: {head:02x?}");
    assert_eq!(head[2], 0x00, "reply RSV: {head:02x?}");
    let addr = match head[3] {
        0x01 => read_n(s, 4),
        0x04 => read_n(s, 16),
        0x03 => {
            let n = read_n(s, 1)[0] as usize;
            read_n(s, n)
        }
        a => panic!("reply with unknown ATYP {a:02x}: {head:02x?}"),
    };
    let p = read_n(s, 2);
    V5Reply {
        rep: head[1],
        atyp: head[3],
        addr,
        port: u16::from_be_bytes([p[0], p[1]]),
    }
}

/// Greeting (method 00, or 02 with `creds`), optional RFC 1929 exchange,
/// then the request: each step waits for its answer. Panics if the method
/// or the authentication is refused.
pub fn socks5_handshake(s: &mut TcpStream, creds: Option<(&str, &str)>) {
    match creds {
        None => {
            s.write_all(&[0x05, 0x01, 0x00]).unwrap();
            assert_eq!(read_n(s, 2), [0x05, 0x00], "method choice");
        }
        Some((u, p)) => {
            s.write_all(&[0x05, 0x01, 0x02]).unwrap();
            assert_eq!(read_n(s, 2), [0x05, 0x02], "method choice");
            s.write_all(&userpass_msg(u.as_bytes(), p.as_bytes()))
                .unwrap();
            assert_eq!(read_n(s, 2), [0x01, 0x00], "authentication status");
        }
    }
}

/// SOCKS5 BIND through `proxy` (no authentication), expecting `addr` (a
/// [`v5_addr`] or [`v5_domain`]) to connect in: the control connection and
/// the first reply.
pub fn socks5_bind(proxy: SocketAddr, addr: &[u8]) -> (TcpStream, V5Reply) {
    let mut s = connect(proxy);
    socks5_handshake(&mut s, None);
    s.write_all(&v5_request(0x02, addr)).unwrap();
    let first = read_v5_reply(&mut s);
    (s, first)
}

/// SOCKS5 CONNECT through `proxy` to `addr` (a [`v5_addr`] or [`v5_domain`]).
pub fn socks5_connect(
    proxy: SocketAddr,
    addr: &[u8],
    creds: Option<(&str, &str)>,
) -> (TcpStream, V5Reply) {
    let mut s = connect(proxy);
    socks5_handshake(&mut s, creds);
    s.write_all(&v5_request(0x01, addr)).unwrap();
    let r = read_v5_reply(&mut s);
    (s, r)
}

/// SOCKS5 CONNECT that must succeed.
pub fn socks5_tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let (s, r) = socks5_connect(proxy, &v5_addr(target), None);
    assert_eq!(r.rep, 0x00, "CONNECT {target} via {proxy}: {r:?}");
    s
}

/// A SOCKS4 request: `04 CD PORT IP USERID 00 [HOST 00]`.
pub fn v4_request(cd: u8, ip: Ipv4Addr, port: u16, userid: &[u8], host: Option<&[u8]>) -> Vec<u8> {
    let mut v = vec![0x04, cd];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&ip.octets());
    v.extend_from_slice(userid);
    v.push(0);
    if let Some(h) = host {
        v.extend_from_slice(h);
        v.push(0);
    }
    v
}

/// SOCKS4a request for `host` (DSTIP 0.0.0.1).
pub fn v4a_request(cd: u8, host: &[u8], port: u16, userid: &[u8]) -> Vec<u8> {
    v4_request(cd, Ipv4Addr::new(0, 0, 0, 1), port, userid, Some(host))
}

/// Read one SOCKS4 reply (8 bytes).
pub fn read_v4_reply(s: &mut TcpStream) -> [u8; 8] {
    read_n(s, 8).try_into().unwrap()
}

/// Round-trip `msg` through an echo tunnel.
pub fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    assert_eq!(read_n(s, msg.len()), msg, "echo through the tunnel");
}

// ---------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------

/// /etc/hosts inside the namespace: `localhost` is both 127.0.0.1 and ::1.
pub const NETNS_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// In the namespace, 10.99.0.0/16 has an `unreachable` route (EHOSTUNREACH)
/// and every other non-loopback address has no route (ENETUNREACH).
pub const NETNS_HOST_UNREACHABLE: &str = "10.99.1.2";
pub const NETNS_NET_UNREACHABLE: &str = "10.1.2.3";

/// Run the test named `test_name` (its exact libtest name) again, alone,
/// inside new network and mount namespaces: only `lo` (up), /etc/hosts =
/// [`NETNS_HOSTS`], /etc/resolv.conf pointing at 127.0.0.1 where nothing
/// listens (so DNS fails at once and no query leaves the machine), and an
/// `unreachable` route for 10.99.0.0/16.
///
/// Returns `true` in the inner run, where the caller runs its body; `false`
/// in the outer run after asserting that the inner run passed (or after a
/// skip warning when the tools are missing).
pub fn in_netns(test_name: &str) -> bool {
    in_netns_with(test_name, "options timeout:1 attempts:1")
}

/// [`in_netns`] with other resolv.conf options (e.g. a longer timeout).
pub fn in_netns_with(test_name: &str, resolv_options: &str) -> bool {
    if netns::inside() {
        return true;
    }
    if !require_tools(&["unshare", "ip", "mount", "sh"]) {
        return false;
    }
    let dir = TempDir::new("netns");
    std::fs::write(dir.join("hosts"), NETNS_HOSTS).unwrap();
    std::fs::write(
        dir.join("resolv.conf"),
        format!("nameserver 127.0.0.1\n{resolv_options}\n"),
    )
    .unwrap();
    let setup = "ip link set lo up; \
         mount --bind \"$SIXSOCKS_NETNS_DIR/hosts\" /etc/hosts; \
         mount --bind \"$SIXSOCKS_NETNS_DIR/resolv.conf\" /etc/resolv.conf; \
         ip route add unreachable 10.99.0.0/16";
    let (_, stderr) = netns::rerun(
        test_name,
        &["--mount"],
        setup,
        &[("SIXSOCKS_NETNS_DIR", dir.path().as_os_str())],
    );
    // Surface warnings (e.g. skipped sub-checks) from the inner run.
    if stderr.contains("WARNING") {
        eprintln!("{stderr}");
    }
    false
}

// ---------------------------------------------------------------------------
// Deterministic byte streams for bulk transfers
// ---------------------------------------------------------------------------

/// A deterministic pseudo-random stream with period [`PATTERN_LEN`] (a
/// prime, so a lost, duplicated or reordered chunk of any usual size shows).
pub struct Pattern {
    /// The period, followed by the stream's next 1 MiB, so any window of up
    /// to 1 MiB starting anywhere in the period is one contiguous slice.
    data: Vec<u8>,
}

pub const PATTERN_LEN: usize = 1_000_003;
pub const PATTERN_WINDOW: usize = 1 << 20;

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut x = seed | 1;
        let mut data = Vec::with_capacity(PATTERN_LEN + PATTERN_WINDOW);
        while data.len() < PATTERN_LEN {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.truncate(PATTERN_LEN);
        for i in 0..PATTERN_WINDOW {
            data.push(data[i % PATTERN_LEN]);
        }
        Pattern { data }
    }

    /// The `len` bytes (at most [`PATTERN_WINDOW`]) at stream offset `off`.
    pub fn at(&self, off: u64, len: usize) -> &[u8] {
        assert!(len <= PATTERN_WINDOW);
        let start = (off % PATTERN_LEN as u64) as usize;
        &self.data[start..start + len]
    }

    /// Write `total` bytes of the stream to `w`.
    pub fn write_to(&self, w: &mut impl Write, total: u64) -> std::io::Result<()> {
        let mut off = 0u64;
        while off < total {
            let n = (total - off).min(256 * 1024) as usize;
            w.write_all(self.at(off, n))?;
            off += n as u64;
        }
        Ok(())
    }

    /// Read from `r` until EOF, checking every byte against the stream.
    /// Returns the number of bytes read; panics on the first mismatch.
    pub fn verify_from(&self, r: &mut impl Read, what: &str) -> u64 {
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return off,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("{what}: read error after {off} bytes: {e}"),
            };
            if buf[..n] != *self.at(off, n) {
                let i = buf[..n]
                    .iter()
                    .zip(self.at(off, n))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!("{what}: stream corrupted at byte {}", off + i as u64);
            }
            off += n as u64;
        }
    }
}

// ---------------------------------------------------------------------------
// External programs
// ---------------------------------------------------------------------------

/// What an external program did.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl RunOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Run `cmd` (stdin closed, proxy variables removed from its environment),
/// killing it (by its PID, through `Child::kill`) if it outlives `timeout`.
pub fn run_tool(cmd: &mut Command, timeout: Duration) -> RunOutput {
    run_tool_stdin(cmd, Stdio::null(), timeout)
}

/// [`run_tool`] with the given stdin.
pub fn run_tool_stdin(cmd: &mut Command, stdin: Stdio, timeout: Duration) -> RunOutput {
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    RunOutput {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The body of an HTTP/1.x response (after the empty line).
pub fn http_response_body(resp: &[u8]) -> Option<&[u8]> {
    let i = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(&resp[i + 4..])
}

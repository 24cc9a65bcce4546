//! Operations: the JSON access log (`--log-format json`) and dropping root
//! after binding (`--user` / `--group`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;

// ---------------------------------------------------------------------------
// JSON log
// ---------------------------------------------------------------------------

#[test]
fn json_log_has_one_object_per_line_and_the_session_fields() {
    let dir = TempDir::new("jsonlog");
    let users = dir.join("users");
    passwd(&users, "alice", "wonderland");
    let server = Server::start(&["--log-format", "json", USERS_FLAG, users.to_str().unwrap()]);
    let echo = echo_server();
    let (mut s, r) = socks5_connect(
        server.addr,
        &v5_addr(echo.addr),
        Some(("alice", "wonderland")),
    );
    assert_eq!(r.rep, 0x00, "{r:?}");
    let client = s.local_addr().unwrap();
    echo_roundtrip(&mut s, b"0123456789 json");
    drop(s);
    server.wait_session_ends(1);

    let lines = server.logs.lines();
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}")))
        .collect();
    for o in &objects {
        assert!(o["timestamp"].is_string() && o["level"].is_string(), "{o}");
    }
    let ends: Vec<_> = objects
        .iter()
        .filter(|o| o["message"] == "session end")
        .collect();
    assert_eq!(ends.len(), 1, "{lines:#?}");
    let e = ends[0];
    assert_eq!(e["level"], "INFO");
    assert_eq!(e["client"], client.to_string());
    assert_eq!(e["user"], "alice");
    assert_eq!(e["version"], "socks5");
    assert_eq!(e["command"], "connect");
    assert_eq!(e["target"], echo.addr.to_string());
    assert_eq!(e["reply"], "succeeded");
    // Numbers are JSON numbers.
    assert_eq!(e["up"], 15, "{e}");
    assert_eq!(e["down"], 15, "{e}");
    assert!(e["duration_ms"].is_u64(), "{e}");
    assert_eq!(e["outcome"], "ok");
}

#[test]
fn log_format_is_checked() {
    let out = Command::new(BIN)
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xml"), "{err}");
}

// ---------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------

/// `(uid, gid)` of a user, from /etc/passwd.
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
}

/// The gid of a group, from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == name)
        .map(|f| f[2].parse().unwrap())
}

/// A line (`Uid:`, `Gid:`, `Groups:`) of a /proc status file, as numbers.
fn status_ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Every thread of `pid` has these real, effective, saved and filesystem
/// ids, and no supplementary group but `groups`.
fn assert_ids(pid: u32, uid: u32, gid: u32, groups: &[u32]) {
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tasks.len() > 1, "the server runs several threads");
    for task in tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        assert_eq!(status_ids(&status, "Uid:"), [uid; 4], "{}", task.display());
        assert_eq!(status_ids(&status, "Gid:"), [gid; 4], "{}", task.display());
        let mut got = status_ids(&status, "Groups:");
        got.sort_unstable();
        assert_eq!(got, groups, "supplementary groups of {}", task.display());
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| status_ids(&s, "Uid:")[1] == 0)
        .unwrap_or(false)
}

/// Root is needed to drop it: under CI a failure, otherwise a loud skip.
fn require_root() -> bool {
    is_root() || missing("root (the privilege tests switch users)")
}

#[test]
fn user_nobody_after_binding() {
    if !require_root() {
        return;
    }
    let (uid, gid) = passwd_ids("nobody").expect("a user `nobody` in /etc/passwd");
    let server = Server::start(&["--listen", "127.0.0.1:0", "--user", "nobody"]);
    assert!(
        server.log_text().contains("dropped root privileges"),
        "{}",
        server.log_text()
    );
    // initgroups: nobody's own groups (normally only its primary group).
    let mut groups = vec![gid];
    groups.extend(
        std::fs::read_to_string("/etc/group")
            .unwrap()
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() > 3 && f[3].split(',').any(|m| m == "nobody"))
            .map(|f| f[2].parse::<u32>().unwrap()),
    );
    groups.sort_unstable();
    groups.dedup();
    assert_ids(server.pid(), uid, gid, &groups);
    let echo = echo_server();
    let mut s = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut s, b"as nobody");
}

#[test]
fn user_and_group_on_a_privileged_port() {
    if !require_root() {
        return;
    }
    let (uid, _) = passwd_ids("nobody").expect("a user `nobody`");
    let Some(daemon) = group_id("daemon") else {
        panic!("no group `daemon` in /etc/group");
    };
    // Port 1..1023 needs root to bind; find a free one on 127.0.0.1.
    let port = (600..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free privileged port");
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&["--listen", &listen, "--user", "nobody", "--group", "daemon"]);
    assert_eq!(server.addr.port(), port);
    assert_ids(server.pid(), uid, daemon, &[daemon]);
    let echo = echo_server();
    let mut s = socks5_tunnel(server.addr, echo.addr);
    echo_roundtrip(&mut s, b"nobody:daemon");
}

#[test]
fn unknown_user_or_group_fails_at_start_naming_it() {
    for (flag, name) in [
        ("--user", "no-such-user-sixsocks"),
        ("--group", "no-such-group-sixsocks"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", flag, name])
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with {flag} {name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name) && err.contains("no such"), "{err}");
        assert!(
            !err.contains("listening on"),
            "it bound before failing: {err}"
        );
    }
}

#[test]
fn switching_without_root_is_refused() {
    if !require_root() || !require_tools(&["setpriv"]) {
        return;
    }
    let (uid, gid) = passwd_ids("nobody").expect("a user `nobody`");
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            BIN,
        ])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    // nobody must be able to run the binary at all (its directory may be private).
    let runs = as_nobody(&["--version"]).output().unwrap();
    if !runs.status.success() {
        missing(&format!(
            "{BIN} runnable as nobody: {}",
            String::from_utf8_lossy(&runs.stderr)
        ));
        return;
    }
    // Asked to become someone else: refused, saying why.
    let out = as_nobody(&["serve", "--listen", "127.0.0.1:0", "--user", "daemon"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "switched users without root");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");

    // Already the asked-for user and group: nothing to switch, it starts.
    let mut child = as_nobody(&["serve", "--listen", "127.0.0.1:0", "--user", "nobody"])
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // Until it listens, exits (the channel closes) or 30 s pass.
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) {
        let done = line.contains("listening on");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(
        text.contains("already running as the configured user"),
        "{text}"
    );
    assert!(text.contains("listening on"), "{text}");
}

#[test]
fn config_file_keys() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("opscfg");
    let cfg = dir.join("sixsocks.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(
        f,
        "listen = [\"127.0.0.1:0\"]\nlog_format = \"json\"\nuser = \"nobody\"\n"
    )
    .unwrap();
    drop(f);
    let server = Server::start(&["--config", cfg.to_str().unwrap()]);
    let (uid, gid) = passwd_ids("nobody").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert_eq!(status_ids(&status, "Uid:"), [uid; 4]);
    assert_eq!(status_ids(&status, "Gid:"), [gid; 4]);
    for l in server.logs.lines() {
        serde_json::from_str::<serde_json::Value>(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

//! Re-running one test alone inside fresh namespaces made with `unshare`.
//!
//! Shared by the e2e tests (`common::netns`) and, through `#[path]`, by
//! `client/tests/socks6_net.rs` and `server/tests/upstream.rs`: it uses
//! nothing but `std`. Callers check for the tools they need first.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// Set in the inner run.
const NETNS_ENV: &str = "SIXSOCKS_TEST_IN_NETNS";

/// Whether this process is the inner run.
pub fn inside() -> bool {
    std::env::var_os(NETNS_ENV).is_some()
}

/// Runs the test `test_name` (its exact libtest name) of this test binary
/// again, alone, under `unshare --net` plus `unshare_extra` (e.g.
/// `--mount`), after the shell commands `setup` (which should bring `lo`
/// up), with `envs` added. Asserts that it passed and returns what it
/// printed: (stdout, stderr).
pub fn rerun(
    test_name: &str,
    unshare_extra: &[&str],
    setup: &str,
    envs: &[(&str, &OsStr)],
) -> (String, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .args(unshare_extra)
        .args(["sh", "-c", &format!("set -e; {setup}; exec \"$0\" \"$@\"")])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the run of {test_name} inside a network namespace failed ({:?}):\n\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

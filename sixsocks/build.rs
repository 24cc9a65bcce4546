//! Build script: the text of `sixsocks --version`.
//!
//! It names the crate version, the git commit the binary was built from and
//! the optional cargo features built in. The commit comes from
//! `SIXSOCKS_GIT_COMMIT` if set (for builds from a tarball that know it),
//! else from `git rev-parse` when this crate sits in the work tree of its
//! own repository, else from the `.cargo_vcs_info.json` that `cargo
//! package` writes into a published crate (so `cargo install sixsocks`
//! knows it too), else `unknown`: this script never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The commit, and the files whose change means a new one.
fn commit(manifest_dir: &Path) -> (Option<String>, Vec<PathBuf>) {
    println!("cargo:rerun-if-env-changed=SIXSOCKS_GIT_COMMIT");
    if let Ok(c) = std::env::var("SIXSOCKS_GIT_COMMIT") {
        if !c.trim().is_empty() {
            return (Some(c.trim().to_string()), Vec::new());
        }
    }
    // Only our own repository counts: a crate unpacked inside some other
    // git work tree (cargo's registry cache under a versioned home, say)
    // must not report that tree's commit.
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    let Some(top) = git(manifest_dir, &["rev-parse", "--show-toplevel"]) else {
        return (packaged_commit(manifest_dir), Vec::new());
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), workspace) {
        return (packaged_commit(manifest_dir), Vec::new());
    }
    let hash = git(manifest_dir, &["rev-parse", "--short=12", "HEAD"]);
    // Rebuild when HEAD moves: HEAD itself, the branch it points to, and
    // packed-refs (in the common dir, for a linked work tree).
    let mut watch = Vec::new();
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            manifest_dir.join(p)
        }
    };
    if let Some(dir) = git(manifest_dir, &["rev-parse", "--git-dir"]) {
        watch.push(abs(dir).join("HEAD"));
    }
    if let Some(common) = git(manifest_dir, &["rev-parse", "--git-common-dir"]) {
        let common = abs(common);
        watch.push(common.join("packed-refs"));
        if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
    }
    (hash, watch)
}

/// The commit `cargo package` recorded: `"sha1": "<40 hex digits>"` in
/// `.cargo_vcs_info.json` (read by hand: a build script without
/// dependencies).
fn packaged_commit(manifest_dir: &Path) -> Option<String> {
    let info = manifest_dir.join(".cargo_vcs_info.json");
    println!("cargo:rerun-if-changed={}", info.display());
    let text = std::fs::read_to_string(info).ok()?;
    let rest = text.split("\"sha1\"").nth(1)?;
    let sha: String = rest
        .trim_start_matches([' ', ':', '"'])
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (sha.len() == 40).then(|| sha[..12].to_string())
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let (hash, watch) = commit(&manifest_dir);
    println!("cargo:rerun-if-changed=build.rs");
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    // Optional features of this crate (none yet; GSSAPI will be one).
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_owned))
        .filter(|f| f != "DEFAULT")
        .map(|f| f.to_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(", ")
    };

    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let commit = hash.unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SIXSOCKS_COMMIT={commit}");
    println!("cargo:rustc-env=SIXSOCKS_FEATURES={features}");
    println!(
        "cargo:rustc-env=SIXSOCKS_LONG_VERSION={version} (commit {commit}; optional features: {features})"
    );
}

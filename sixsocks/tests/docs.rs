//! The documentation the package ships, checked against the code it
//! documents: `sixsocks.toml(5)` names every configuration key (and no
//! other), the generated man pages render without a warning, the generated
//! completion scripts pass their shell's syntax check, `--version` says
//! what was built, and the packaged configuration is safe to start.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// The hand-written page of the configuration file.
const TOML_PAGE: &str = include_str!("../man/sixsocks.toml.5");
/// The configuration the Debian package installs in /etc/sixsocks.
const PACKAGED_CONFIG: &str = include_str!("../../contrib/deb/sixsocks.toml");

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "sixsocks {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------
// The keys of a serde struct, from its derived Deserialize impl
// ---------------------------------------------------------------------------

/// A deserializer that only records the field names a derived
/// `Deserialize` of a struct announces (its `deserialize_struct` call), then
/// stops. These are exactly the keys the TOML file may use.
mod keys {
    use serde::de::{self, Visitor};

    #[derive(Debug)]
    pub struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    struct Fields<'a>(&'a mut Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    /// The keys of `T`, a struct deserialized by `#[derive(Deserialize)]`.
    pub fn of<T: de::DeserializeOwned>() -> Vec<&'static str> {
        let mut fields = None;
        let _ = T::deserialize(Fields(&mut fields));
        fields
            .unwrap_or_else(|| {
                panic!(
                    "{} is not read as a plain struct (a flattened field?): \
                     list its keys another way",
                    std::any::type_name::<T>()
                )
            })
            .to_vec()
    }
}

/// The keys the page describes under the section whose `.SH` line starts
/// with `heading`: every `.B key` line right after a `.TP`.
fn page_keys(heading: &str) -> BTreeSet<String> {
    let section = TOML_PAGE
        .split("\n.SH ")
        .find(|s| s.trim_start_matches('"').starts_with(heading))
        .unwrap_or_else(|| panic!("sixsocks.toml.5 has no section {heading:?}"));
    let lines: Vec<&str> = section.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].trim() == ".TP")
        .filter_map(|w| w[1].strip_prefix(".B "))
        .map(|k| k.trim().to_string())
        .collect()
}

fn assert_documented(table: &str, heading: &str, keys: &[&str]) {
    let code: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    let page = page_keys(heading);
    let undocumented: Vec<_> = code.difference(&page).collect();
    let unknown: Vec<_> = page.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "{table}: keys that sixsocks/man/sixsocks.toml.5 (section {heading:?}) does not \
         describe: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "{table}: sixsocks/man/sixsocks.toml.5 (section {heading:?}) describes keys that \
         do not exist: {unknown:?}"
    );
}

#[test]
fn the_config_page_describes_every_key_and_no_other() {
    use sixsocks_server::config::{Config, GatewayConfig, UpstreamConfig};
    use sixsocks_server::limits::UserSettings;
    use sixsocks_server::rules::Rule;

    let top = keys::of::<Config>();
    // The enumeration itself is checked: it must see keys we know exist,
    // or a broken introspection would pass against an empty page section.
    for known in [
        "listen",
        "users_file",
        "max_clients",
        "rule",
        "users",
        "upstream",
    ] {
        assert!(top.contains(&known), "{known} missing from {top:?}");
    }
    assert!(top.len() >= 38, "{top:?}");
    // The tables have sections of their own.
    let tables = [
        ("rule", "RULES: [[rule]]"),
        ("users", "PER-USER SETTINGS: [users.NAME]"),
        ("upstream", "UPSTREAMS: [upstream.NAME]"),
        ("gateway", "GATEWAY: [gateway]"),
    ];
    let plain: Vec<&str> = top
        .iter()
        .copied()
        .filter(|k| !tables.iter().any(|(t, _)| t == k))
        .collect();
    assert_documented("top level", "TOP-LEVEL KEYS", &plain);
    assert_documented("[[rule]]", tables[0].1, &keys::of::<Rule>());
    assert_documented("[users.NAME]", tables[1].1, &keys::of::<UserSettings>());
    assert_documented(
        "[upstream.NAME]",
        tables[2].1,
        &keys::of::<UpstreamConfig>(),
    );
    assert_documented("[gateway]", tables[3].1, &keys::of::<GatewayConfig>());
}

#[test]
fn the_page_check_catches_a_missing_key() {
    // The section parser must not see keys that are not there: a key
    // named only in running text does not count as described.
    let top = page_keys("TOP-LEVEL KEYS");
    assert!(
        top.contains("max_clients") && top.contains("group"),
        "{top:?}"
    );
    assert!(!top.contains("rule") && !top.contains("action"), "{top:?}");
    let rule = page_keys("RULES: [[rule]]");
    assert!(
        rule.contains("action") && !rule.contains("listen"),
        "{rule:?}"
    );
}

// ---------------------------------------------------------------------------
// Man pages
// ---------------------------------------------------------------------------

/// Render a page with `man -l`, warnings on; returns (text, warnings).
fn render(page: &Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        out.status
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn man_pages_are_generated_for_every_command_and_render_cleanly() {
    let dir = TempDir::new("manpages");
    run(&["manpages", dir.path().to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "sixsocks-check.1",
            "sixsocks-completions.1",
            "sixsocks-connect.1",
            "sixsocks-gateway.1",
            "sixsocks-passwd.1",
            "sixsocks-resolve.1",
            "sixsocks-serve.1",
            "sixsocks.1",
        ],
        "one page per visible subcommand (the hidden `manpages` has none)"
    );
    // The pages carry the clap definitions: serve's page lists its options.
    let serve = std::fs::read_to_string(dir.join("sixsocks-serve.1")).unwrap();
    for flag in ["max\\-clients", "users\\-file", "allow\\-open\\-proxy"] {
        assert!(serve.contains(flag), "sixsocks-serve.1 lacks --{flag}");
    }
    assert!(
        serve.contains("sixsocks.toml (5)"),
        "SEE ALSO names the file page"
    );

    if !require_tools(&["man", "groff"]) {
        return;
    }
    let mut pages: Vec<_> = names.iter().map(|n| dir.join(n)).collect();
    pages.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/sixsocks.toml.5"));
    for page in &pages {
        let (text, warnings) = render(page);
        assert!(
            warnings.trim().is_empty(),
            "man -l {} warned:\n{warnings}",
            page.display()
        );
        assert!(text.contains("NAME"), "{}:\n{text}", page.display());
    }
    let (toml, _) = render(pages.last().unwrap());
    assert!(toml.contains("udp_lookup_queue_bytes_total"), "{toml}");
}

// ---------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------

#[test]
fn completion_scripts_pass_their_shells_syntax_check() {
    let dir = TempDir::new("completions");
    // (shell, its syntax check)
    let shells: [(&str, &[&str]); 3] = [
        ("bash", &["bash", "-n"]),
        ("zsh", &["zsh", "-n"]),
        ("fish", &["fish", "--no-execute"]),
    ];
    let mut missing_shells = Vec::new();
    for (shell, check) in shells {
        let script = run(&["completions", shell]).stdout;
        let text = String::from_utf8(script).unwrap();
        for word in ["serve", "passwd", "max-clients", "completions"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
        let path = dir.join(&format!("sixsocks.{shell}"));
        std::fs::write(&path, &text).unwrap();
        if !have_tool(check[0]) {
            missing_shells.push(check[0]);
            continue;
        }
        let out = Command::new(check[0])
            .args(&check[1..])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{} {}: {}\n{}",
            check.join(" "),
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A broken script must fail the check (the check is not a no-op).
    if have_tool("bash") {
        let bad = dir.join("bad.bash");
        std::fs::write(&bad, "_sixsocks() { if then; }\n").unwrap();
        let st = Command::new("bash").arg("-n").arg(&bad).status().unwrap();
        assert!(!st.success(), "bash -n accepted a broken script");
    }
    if !missing_shells.is_empty() {
        require_tools(&missing_shells);
    }
}

#[test]
fn an_unknown_shell_is_refused() {
    let out = Command::new(BIN)
        .args(["completions", "powershell"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bash") && err.contains("fish"), "{err}");
}

// ---------------------------------------------------------------------------
// --version, the packaged configuration
// ---------------------------------------------------------------------------

#[test]
fn version_names_the_version_the_commit_and_the_features() {
    let text = String::from_utf8(run(&["--version"]).stdout).unwrap();
    let line = text.trim();
    let expected = format!("sixsocks {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line}");
    let commit = line[expected.len()..].split(';').next().unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "commit {commit:?} in {line}"
    );
    // Built from a git checkout (as the tests are), it knows the commit.
    let git = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output();
    if let Ok(git) = git {
        if git.status.success() {
            let head = String::from_utf8(git.stdout).unwrap();
            assert!(head.starts_with(commit), "{line} but HEAD is {head}");
        }
    }
    assert!(line.ends_with("optional features: none)"), "{line}");
}

#[test]
fn the_packaged_config_is_valid_and_no_open_proxy() {
    let cfg = sixsocks_server::Config::from_toml(PACKAGED_CONFIG).unwrap();
    cfg.validate().unwrap();
    assert!(
        cfg.listen.iter().all(|a| a.ip().is_loopback()),
        "the package must not open a proxy beyond loopback: {:?}",
        cfg.listen
    );
    assert!(!cfg.allow_open_proxy);
    // What its comments tell the operator to set parses too.
    let uncommented = PACKAGED_CONFIG.replace("# users_file", "users_file");
    let cfg = sixsocks_server::Config::from_toml(&uncommented).unwrap();
    assert_eq!(
        cfg.users_file.as_deref(),
        Some(Path::new("/etc/sixsocks/users"))
    );
}

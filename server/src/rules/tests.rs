//! Unit tests of rule matching: each match kind, first-match order,
//! staged decisions and name-then-address matching.

use super::*;

#[derive(Deserialize)]
struct File {
    rule: Vec<Rule>,
}

fn rules(toml_text: &str) -> Rules {
    let f: File = toml::from_str(toml_text).expect("rules parse");
    let r = Rules::new(f.rule);
    r.validate(|_| true).expect("rules valid");
    r
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A fully known CONNECT request from `client` to `ip:port`.
fn connect<'a>(client: &str, dest: Dest<'a>) -> Facts<'a> {
    Facts {
        client: Some(ip(client)),
        listener: Some("127.0.0.1:1080".parse().unwrap()),
        version: Some(VersionMatch::Socks5),
        user: Some(None),
        command: Some(Command::CONNECT),
        dest,
    }
}

fn addr(s: &str, port: u16) -> Dest<'static> {
    Dest::Addr {
        name: None,
        ip: ip(s),
        port,
    }
}

/// The deciding rule's number, or 0 for "no rule matched".
fn decided(v: Verdict<'_>) -> (bool, usize) {
    match v {
        Verdict::Pass(r) => (true, r.map_or(0, |(n, _)| n)),
        Verdict::Block(r) => (false, r.map_or(0, |(n, _)| n)),
        Verdict::Undecided => panic!("undecided"),
    }
}

#[test]
fn no_rules_pass_everything() {
    let r = Rules::default();
    assert!(matches!(
        r.check(&connect("10.1.1.1", addr("10.0.0.1", 22))),
        Verdict::Pass(None)
    ));
    assert!(matches!(r.check(&Facts::default()), Verdict::Pass(None)));
}

#[test]
fn nothing_matching_is_blocked() {
    let r = rules("[[rule]]\naction = \"pass\"\nport = [80]\n");
    assert_eq!(
        decided(r.check(&connect("127.0.0.1", addr("192.0.2.1", 80)))),
        (true, 1)
    );
    assert_eq!(
        decided(r.check(&connect("127.0.0.1", addr("192.0.2.1", 81)))),
        (false, 0)
    );
}

#[test]
fn first_match_wins() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        to = ["192.0.2.7"]
        [[rule]]
        action = "block"
        to = ["192.0.2.0/24"]
        [[rule]]
        action = "pass"
        "#,
    );
    assert_eq!(
        decided(r.check(&connect("127.0.0.1", addr("192.0.2.7", 1)))),
        (true, 1)
    );
    assert_eq!(
        decided(r.check(&connect("127.0.0.1", addr("192.0.2.8", 1)))),
        (false, 2)
    );
    assert_eq!(
        decided(r.check(&connect("127.0.0.1", addr("198.51.100.1", 1)))),
        (true, 3)
    );
    // The same rules in the other order decide the other way.
    let swapped = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["192.0.2.0/24"]
        [[rule]]
        action = "pass"
        to = ["192.0.2.7"]
        "#,
    );
    assert_eq!(
        decided(swapped.check(&connect("127.0.0.1", addr("192.0.2.7", 1)))),
        (false, 1)
    );
}

#[test]
fn client_address_and_listener() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        from = ["10.0.0.0/8", "::1"]
        listener = ["127.0.0.1:1080"]
        "#,
    );
    assert!(!r
        .check(&connect("10.9.9.9", addr("192.0.2.1", 1)))
        .is_block());
    assert!(!r.check(&connect("::1", addr("192.0.2.1", 1))).is_block());
    // An IPv4-mapped client address counts as IPv4.
    assert!(!r
        .check(&connect("::ffff:10.0.0.1", addr("192.0.2.1", 1)))
        .is_block());
    assert!(r
        .check(&connect("11.0.0.1", addr("192.0.2.1", 1)))
        .is_block());
    let mut other = connect("10.0.0.1", addr("192.0.2.1", 1));
    other.listener = Some("127.0.0.1:1081".parse().unwrap());
    assert!(r.check(&other).is_block());
}

#[test]
fn version_user_and_command() {
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        version = ["socks4"]
        [[rule]]
        action = "block"
        user = ["mallory"]
        [[rule]]
        action = "pass"
        command = ["connect", "resolve"]
        "#,
    );
    let mut f = connect("127.0.0.1", addr("192.0.2.1", 80));
    assert_eq!(decided(r.check(&f)), (true, 3));
    // socks4 covers socks4a.
    f.version = Some(VersionMatch::Socks4a);
    assert_eq!(decided(r.check(&f)), (false, 1));
    f.version = Some(VersionMatch::Socks6);
    f.user = Some(Some("mallory"));
    assert_eq!(decided(r.check(&f)), (false, 2));
    f.user = Some(Some("alice"));
    f.command = Some(Command::BIND);
    assert_eq!(decided(r.check(&f)), (false, 0));
    f.command = Some(Command::RESOLVE);
    assert_eq!(decided(r.check(&f)), (true, 3));
}

#[test]
fn a_rule_naming_users_never_matches_anonymous_clients() {
    let r = rules("[[rule]]\naction = \"pass\"\nuser = [\"alice\"]\n");
    let f = connect("127.0.0.1", addr("192.0.2.1", 80));
    assert_eq!(decided(r.check(&f)), (false, 0));
}

#[test]
fn ports_and_ranges() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        port = [443, "8000-8999"]
        "#,
    );
    for (p, ok) in [
        (443, true),
        (8000, true),
        (8999, true),
        (7999, false),
        (9000, false),
    ] {
        let v = r.check(&connect("127.0.0.1", addr("192.0.2.1", p)));
        assert_eq!(!v.is_block(), ok, "port {p}");
    }
}

#[test]
fn names_and_suffixes() {
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["exact.example", ".corp.example"]
        [[rule]]
        action = "pass"
        "#,
    );
    for (name, blocked) in [
        ("exact.example", true),
        ("EXACT.Example.", true),
        ("sub.exact.example", false),
        ("corp.example", true),
        ("a.b.corp.example", true),
        ("xcorp.example", false),
        ("example", false),
    ] {
        let v = r.check(&connect("127.0.0.1", Dest::Name(name, 80)));
        assert_eq!(v.is_block(), blocked, "{name}");
    }
}

#[test]
fn a_name_is_matched_by_its_address_after_resolution() {
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["10.0.0.0/8"]
        [[rule]]
        action = "pass"
        "#,
    );
    // Before resolution the first rule may or may not apply: undecided.
    let before = connect("127.0.0.1", Dest::Name("intranet.example", 80));
    assert!(matches!(r.check(&before), Verdict::Undecided));
    // After: blocked by address, passed otherwise.
    let blocked = connect(
        "127.0.0.1",
        Dest::Addr {
            name: Some("intranet.example"),
            ip: ip("10.1.2.3"),
            port: 80,
        },
    );
    assert_eq!(decided(r.check(&blocked)), (false, 1));
    let fine = connect(
        "127.0.0.1",
        Dest::Addr {
            name: Some("intranet.example"),
            ip: ip("192.0.2.1"),
            port: 80,
        },
    );
    assert_eq!(decided(r.check(&fine)), (true, 2));
    // An address literal sent as a name is an address at once.
    let t = TargetAddr::domain("10.0.0.1".to_string(), 80);
    assert_eq!(
        decided(r.check(&connect("127.0.0.1", Dest::of(&t)))),
        (false, 1)
    );
}

#[test]
fn a_name_rule_keeps_matching_after_resolution() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        to = ["allowed.example"]
        [[rule]]
        action = "block"
        to = ["10.0.0.0/8"]
        "#,
    );
    let f = connect(
        "127.0.0.1",
        Dest::Addr {
            name: Some("allowed.example"),
            ip: ip("10.0.0.5"),
            port: 80,
        },
    );
    assert_eq!(decided(r.check(&f)), (true, 1));
    // Decided before resolution too, with the same answer.
    let before = connect("127.0.0.1", Dest::Name("allowed.example", 80));
    assert_eq!(decided(r.check(&before)), (true, 1));
}

#[test]
fn staged_decisions_never_skip_an_earlier_rule() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        user = ["admin"]
        [[rule]]
        action = "block"
        from = ["192.0.2.0/24"]
        [[rule]]
        action = "pass"
        "#,
    );
    // At accept only the client is known: rule 1 may still match (user
    // unknown), so nothing is decided yet even for a blocked network.
    let accept = Facts {
        client: Some(ip("192.0.2.9")),
        listener: Some("127.0.0.1:1080".parse().unwrap()),
        ..Facts::default()
    };
    assert!(matches!(r.check(&accept), Verdict::Undecided));
    // With the request known: admin passes, anyone else from there is blocked.
    let mut f = connect("192.0.2.9", addr("198.51.100.1", 443));
    assert_eq!(decided(r.check(&f)), (false, 2));
    f.user = Some(Some("admin"));
    assert_eq!(decided(r.check(&f)), (true, 1));

    // A client rule first decides at accept.
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        from = ["192.0.2.0/24"]
        [[rule]]
        action = "pass"
        "#,
    );
    assert_eq!(decided(r.check(&accept)), (false, 1));
    let other = Facts {
        client: Some(ip("198.51.100.9")),
        ..accept
    };
    assert!(matches!(r.check(&other), Verdict::Pass(Some((2, _)))));
}

#[test]
fn udp_association_is_undecided_until_datagrams() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        command = ["udp"]
        to = ["192.0.2.0/24"]
        port = [53]
        "#,
    );
    let mut assoc = connect("127.0.0.1", Dest::Unknown);
    assoc.command = Some(Command::UDP_ASSOCIATE);
    assert!(matches!(r.check(&assoc), Verdict::Undecided));
    let mut dgram = connect("127.0.0.1", addr("192.0.2.53", 53));
    dgram.command = Some(Command::UDP_ASSOCIATE);
    assert_eq!(decided(r.check(&dgram)), (true, 1));
    let mut dgram = connect("127.0.0.1", addr("192.0.2.53", 54));
    dgram.command = Some(Command::UDP_ASSOCIATE);
    assert_eq!(decided(r.check(&dgram)), (false, 0));
}

#[test]
fn bad_entries_are_refused_with_their_text() {
    let cases = [
        ("to = [\"10.0.0.0/33\"]", "10.0.0.0/33"),
        ("to = [\"*.example.com\"]", "*.example.com"),
        ("to = [\".\"]", "\".\""),
        ("port = [\"9-1\"]", "9-1"),
        ("port = [70000]", "70000"),
        ("from = [\"example.com\"]", "from"),
        ("command = [\"frobnicate\"]", "frobnicate"),
        ("action = \"allow\"", "allow"),
        ("colour = \"red\"", "colour"),
    ];
    for (line, needle) in cases {
        let text = if line.starts_with("action") {
            format!("[[rule]]\n{line}\n")
        } else {
            format!("[[rule]]\naction = \"pass\"\n{line}\n")
        };
        let err = match toml::from_str::<File>(&text) {
            Ok(_) => panic!("{line} parsed"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{line}: {err}");
    }
}

#[test]
fn validation_checks_routes_and_families() {
    let f: File = toml::from_str("[[rule]]\naction = \"pass\"\nroute = \"tor\"\n").unwrap();
    let r = Rules::new(f.rule);
    assert!(r.validate(|n| n == "tor").is_ok());
    let e = r.validate(|_| false).unwrap_err();
    assert!(e.contains("tor"), "{e}");
    let f: File =
        toml::from_str("[[rule]]\naction = \"pass\"\nsource = \"192.0.2.1\"\nprefer = \"ipv6\"\n")
            .unwrap();
    assert!(Rules::new(f.rule).validate(|_| true).is_err());
}

#[test]
fn describe_says_what_a_rule_does() {
    let r = rules(
        r#"
        [[rule]]
        action = "pass"
        from = ["10.0.0.0/8"]
        to = [".onion"]
        port = ["1-1024"]
        route = "tor"
        log = true
        "#,
    );
    let d = r.iter().next().unwrap().describe();
    assert_eq!(
        d,
        "pass from 10.0.0.0/8; to .onion; port 1-1024 (via upstream tor, logged)"
    );
}

#[test]
fn blocks_that_may_match_do_not_hide_a_block_that_does() {
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["10.0.0.0/8"]
        [[rule]]
        action = "block"
        to = [".blocked.example"]
        [[rule]]
        action = "pass"
        "#,
    );
    // Decided by name, without resolving: whatever the address, it is a block.
    let f = connect("127.0.0.1", Dest::Name("www.blocked.example", 80));
    assert_eq!(decided(r.check(&f)), (false, 2));
    // A name the second rule does not block still waits for its address.
    let f = connect("127.0.0.1", Dest::Name("www.example", 80));
    assert!(matches!(r.check(&f), Verdict::Undecided));
    // A pass behind a block that may match waits too.
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["10.0.0.0/8"]
        [[rule]]
        action = "pass"
        to = ["www.example"]
        "#,
    );
    let f = connect("127.0.0.1", Dest::Name("www.example", 80));
    assert!(matches!(r.check(&f), Verdict::Undecided));
    // Only blocks may match, and then nothing else does: blocked anyway.
    let r = rules("[[rule]]\naction = \"block\"\nto = [\"10.0.0.0/8\"]\n");
    let f = connect("127.0.0.1", Dest::Name("www.example", 80));
    assert_eq!(decided(r.check(&f)), (false, 0));
}

#[test]
fn the_readme_example_parses_and_says_what_it_means() {
    let readme = include_str!("../../../README.md");
    let cfg = crate::config::readme_example("### Rules");
    let r = Rules::new(cfg.rule);
    let lines: Vec<String> = r.iter().map(Rule::describe).collect();
    // `sixsocks check` prints the same descriptions; the README shows them.
    for l in &lines {
        assert!(readme.contains(l.as_str()), "README lacks {l:?}");
    }
}

#[test]
fn onion_names_are_decided_by_name_behind_address_rules() {
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["10.0.0.0/8"]
        [[rule]]
        action = "pass"
        to = [".onion"]
        route = "tor"
        [[rule]]
        action = "pass"
        "#,
    );
    let onion = format!("{}.onion", "a".repeat(56));
    let v = r.check(&connect("127.0.0.1", Dest::Name(&onion, 80)));
    assert_eq!(v.reason(), "rule 2", "{v:?}");
    assert_eq!(v.rule().and_then(|r| r.route.as_deref()), Some("tor"));
    // Any other name still waits for its addresses.
    let v = r.check(&connect("127.0.0.1", Dest::Name("example.com", 80)));
    assert!(matches!(v, Verdict::Undecided), "{v:?}");
}

/// Issue 11, item 1: an address matches in every spelling that reaches the
/// same host (mapped, compatible, NAT64), and a numeric name is the
/// address it spells before any lookup. Failed before: `::127.0.0.1`,
/// `64:ff9b::7f00:1` and the name `127.1` were not matched by `127.0.0.0/8`.
#[test]
fn every_spelling_of_an_address_matches() {
    let r = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["127.0.0.0/8", "::1"]
        [[rule]]
        action = "pass"
        "#,
    );
    for form in [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "::1",
    ] {
        assert_eq!(
            decided(r.check(&connect("10.0.0.1", addr(form, 80)))),
            (false, 1),
            "{form}"
        );
    }
    for name in ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "[::1]"] {
        let target = TargetAddr::domain(name, 80);
        let dest = Dest::of(&target);
        assert!(matches!(dest, Dest::Addr { .. }), "{name}: {dest:?}");
        assert_eq!(
            decided(r.check(&connect("10.0.0.1", dest))),
            (false, 1),
            "{name}"
        );
    }
    // An entry written in IPv6 still matches its own form.
    let nat64 = rules(
        r#"
        [[rule]]
        action = "block"
        to = ["64:ff9b::/96"]
        [[rule]]
        action = "pass"
        "#,
    );
    assert_eq!(
        decided(nat64.check(&connect("10.0.0.1", addr("64:ff9b::1.2.3.4", 80)))),
        (false, 1)
    );
    assert_eq!(
        decided(nat64.check(&connect("10.0.0.1", addr("1.2.3.4", 80)))),
        (true, 2)
    );
}

/// Issue 11, item 7: a name decided by a logged rule is shown escaped, so
/// that a `\n` in it cannot forge a log line.
#[test]
fn names_in_rule_log_lines_are_escaped() {
    let shown = Dest::Name("evil\nsession end user=admin", 80).to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert!(shown.contains("evil\\nsession"), "{shown}");
    assert_eq!(Dest::Name("::1", 80).to_string(), " to [::1]:80");
}

//! Proxy URL parsing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use sixsocks_client::{Host, Proxy, Scheme, UrlError, DEFAULT_PORT, DEFAULT_TIMEOUT};

fn parse(s: &str) -> Proxy {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn err(s: &str) -> UrlError {
    match s.parse::<Proxy>() {
        Ok(p) => panic!("{s:?} should not parse, got {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_four_schemes() {
    for (url, scheme, remote, v5) in [
        ("socks4://10.0.0.1:1081", Scheme::Socks4, false, false),
        ("socks4a://10.0.0.1:1081", Scheme::Socks4a, true, false),
        ("socks5://10.0.0.1:1081", Scheme::Socks5, false, true),
        ("socks5h://10.0.0.1:1081", Scheme::Socks5h, true, true),
        ("socks6://10.0.0.1:1081", Scheme::Socks6, true, false),
    ] {
        let p = parse(url);
        assert_eq!(p.scheme, scheme);
        assert_eq!(p.scheme.remote_dns(), remote, "{url}");
        assert_eq!(p.scheme.is_v5(), v5, "{url}");
        assert_eq!(p.host, Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(p.port, 1081);
        assert_eq!(p.username, None);
        assert_eq!(p.password, None);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.to_string(), url);
        assert_eq!(p.scheme.is_socks6(), scheme == Scheme::Socks6, "{url}");
    }
}

#[test]
fn socks6_credentials_may_hold_any_byte() {
    let p = parse("socks6://a%00b:p%3Aw@127.0.0.1:1080");
    assert_eq!(p.scheme, Scheme::Socks6);
    assert_eq!(p.username.as_deref(), Some(&b"a\0b"[..]));
    assert_eq!(p.password.as_ref().map(|p| p.expose()), Some(&b"p:w"[..]));
    assert_eq!(p.to_string(), "socks6://a%00b:***@127.0.0.1:1080");
    // SOCKS4 user ids cannot hold a NUL.
    assert!(Proxy::parse("socks4a://a%00b@127.0.0.1:1080").is_err());
}

#[test]
fn scheme_is_case_insensitive_and_port_defaults() {
    let p = parse("SOCKS5H://proxy.example");
    assert_eq!(p.scheme, Scheme::Socks5h);
    assert_eq!(p.host, Host::Domain("proxy.example".into()));
    assert_eq!(p.port, DEFAULT_PORT);
    assert_eq!(DEFAULT_PORT, 1080);
}

#[test]
fn trailing_slash_is_accepted() {
    let p = parse("socks5://127.0.0.1:9050/");
    assert_eq!(p.port, 9050);
}

#[test]
fn ipv6_hosts_in_brackets() {
    let p = parse("socks5://[::1]:1080");
    assert_eq!(p.host, Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert_eq!(p.port, 1080);
    assert_eq!(p.to_string(), "socks5://[::1]:1080");

    let p = parse("socks5h://u:p@[2001:db8::7]");
    assert_eq!(p.host, Host::Ip("2001:db8::7".parse().unwrap()));
    assert_eq!(p.port, DEFAULT_PORT);
    assert_eq!(p.username.as_deref(), Some(&b"u"[..]));
}

#[test]
fn ipv6_errors() {
    assert!(matches!(err("socks5://::1:1080"), UrlError::InvalidHost(_)));
    assert!(matches!(
        err("socks5://[::1:1080"),
        UrlError::InvalidIpv6(_)
    ));
    assert!(matches!(
        err("socks5://[nope]:1080"),
        UrlError::InvalidIpv6(_)
    ));
    assert!(matches!(err("socks5://[::1]x"), UrlError::InvalidHost(_)));
    assert!(matches!(err("socks5://[::1]:"), UrlError::InvalidPort(_)));
}

#[test]
fn credentials_are_percent_decoded() {
    let p = parse("socks5://us%40er%3A1:p%3Aa%40ss%25w%2F@127.0.0.1:1080");
    assert_eq!(p.username.as_deref(), Some(&b"us@er:1"[..]));
    assert_eq!(p.password.as_ref().unwrap().expose(), b"p:a@ss%w/");
}

#[test]
fn password_may_hold_a_raw_colon_and_at() {
    // The user name ends at the first ':', the userinfo at the last '@'.
    let p = parse("socks5h://alice:pa:ss@word@localhost:1080");
    assert_eq!(p.username.as_deref(), Some(&b"alice"[..]));
    assert_eq!(p.password.as_ref().unwrap().expose(), b"pa:ss@word");
    assert_eq!(p.host, Host::Domain("localhost".into()));
}

#[test]
fn username_without_password() {
    let p = parse("socks4://bob@127.0.0.1:1080");
    assert_eq!(p.username.as_deref(), Some(&b"bob"[..]));
    assert!(p.password.is_none());
    assert_eq!(p.to_string(), "socks4://bob@127.0.0.1:1080");
}

#[test]
fn non_utf8_credentials_survive() {
    let p = parse("socks5://%FF%00x:%80@127.0.0.1");
    assert_eq!(p.username.as_deref(), Some(&[0xFF, 0x00, b'x'][..]));
    assert_eq!(p.password.as_ref().unwrap().expose(), &[0x80]);
}

#[test]
fn display_redacts_the_password() {
    let p = parse("socks5h://al%40ice:hunter2@127.0.0.1:1080");
    let shown = p.to_string();
    assert_eq!(shown, "socks5h://al%40ice:***@127.0.0.1:1080");
    assert!(!format!("{p:?}").contains("hunter2"));
}

#[test]
fn builder_matches_parser() {
    let built = Proxy::new(
        Scheme::Socks5,
        Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        1080,
    )
    .with_auth("u", "p")
    .with_timeout(Duration::from_secs(3));
    let mut parsed = parse("socks5://u:p@127.0.0.1:1080");
    assert_ne!(built, parsed);
    parsed.timeout = Duration::from_secs(3);
    assert_eq!(built, parsed);
    assert_eq!(built.addr_string(), "127.0.0.1:1080");
}

#[test]
fn scheme_errors() {
    assert_eq!(err("127.0.0.1:1080"), UrlError::MissingScheme);
    assert_eq!(
        err("http://127.0.0.1:1080"),
        UrlError::UnsupportedScheme("http".into())
    );
    assert_eq!(
        err("socks7://127.0.0.1"),
        UrlError::UnsupportedScheme("socks7".into())
    );
}

#[test]
fn host_errors() {
    assert_eq!(err("socks5://"), UrlError::EmptyHost);
    assert_eq!(err("socks5://:1080"), UrlError::EmptyHost);
    assert_eq!(err("socks5://user:pw@:1080"), UrlError::EmptyHost);
    assert!(matches!(
        err("socks5://bad host:1"),
        UrlError::InvalidHost(_)
    ));
    assert!(matches!(err("socks5://a..b:1"), UrlError::InvalidHost(_)));
    assert!(matches!(err("socks5://ho%73t:1"), UrlError::InvalidHost(_)));
}

#[test]
fn port_errors() {
    for bad in ["0", "65536", "99999999", "-1", "12a", "", " 1", "+80"] {
        let url = format!("socks5://127.0.0.1:{bad}");
        assert!(
            matches!(err(&url), UrlError::InvalidPort(ref p) if p == bad),
            "{url}"
        );
    }
    assert_eq!(parse("socks5://127.0.0.1:65535").port, 65535);
    assert_eq!(parse("socks5://127.0.0.1:1").port, 1);
}

#[test]
fn path_query_fragment_errors() {
    for (url, tail) in [
        ("socks5://127.0.0.1:1080/x", "/x"),
        ("socks5://127.0.0.1:1080?a=b", "?a=b"),
        ("socks5://127.0.0.1:1080#f", "#f"),
        ("socks5://127.0.0.1:1080//", "//"),
    ] {
        assert_eq!(err(url), UrlError::UnexpectedPath(tail.into()), "{url}");
    }
}

#[test]
fn credential_errors() {
    assert_eq!(
        err("socks5://a%zz:b@127.0.0.1"),
        UrlError::BadPercentEncoding
    );
    assert_eq!(
        err("socks5://a:b%4@127.0.0.1"),
        UrlError::BadPercentEncoding
    );
    let long = "u".repeat(256);
    assert_eq!(
        err(&format!("socks5://{long}:p@127.0.0.1")),
        UrlError::CredentialTooLong("user name")
    );
    assert_eq!(
        err(&format!("socks5://u:{long}@127.0.0.1")),
        UrlError::CredentialTooLong("password")
    );
    let max = "u".repeat(255);
    let p = parse(&format!("socks5://{max}:{max}@127.0.0.1"));
    assert_eq!(p.username.unwrap().len(), 255);
    assert_eq!(err("socks4://a%00b@127.0.0.1"), UrlError::NulInUserId);
    assert_eq!(err("socks4a://a%00b@127.0.0.1"), UrlError::NulInUserId);
}

#[test]
fn errors_have_readable_messages() {
    let msg = err("http://x").to_string();
    assert!(msg.contains("http") && msg.contains("socks5h"), "{msg}");
    let msg = err("socks5://h:0").to_string();
    assert!(msg.contains("\"0\""), "{msg}");
}

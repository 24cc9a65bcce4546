//! Unit tests for every wire message of `sixsocks-proto`: known encodings,
//! every strict prefix incomplete (with `needed` exact where the format
//! makes it knowable), and byte-by-byte / odd-chunk / all-at-once feeding.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{check_prefixes, parse_stream, PATTERNS};
use sixsocks_proto::v5::{Greeting, Method, MethodChoice};
use sixsocks_proto::{
    http, userpass, v4, v5, Command, Credentials, Host, Parsed, Password, PeerError, ReplyCode,
    Request, TargetAddr, Version,
};
use sixsocks_proto::{V4Code, V5Code};

/// Feed `stream` (several copies of messages) in every chunk pattern and
/// with exact reads; every way must yield `expected`.
fn feed_all_ways<T, F>(stream: &[u8], expected: &[T], parse: F)
where
    T: std::fmt::Debug + PartialEq,
    F: Fn(&[u8]) -> Result<Parsed<T>, PeerError> + Copy,
{
    assert_eq!(parse_stream(stream, None, parse), expected, "exact reads");
    for p in PATTERNS {
        assert_eq!(
            parse_stream(stream, Some(p), parse),
            expected,
            "pattern {p:?}"
        );
    }
}

fn incomplete<T: std::fmt::Debug>(r: Result<Parsed<T>, PeerError>) -> usize {
    match r {
        Ok(Parsed::Incomplete { needed }) => needed,
        other => panic!("expected Incomplete, got {other:?}"),
    }
}

fn v4_ip(a: u8, b: u8, c: u8, d: u8, port: u16) -> TargetAddr {
    TargetAddr::ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

// ---------------------------------------------------------------- SOCKS4

#[test]
fn v4_request_connect_known_bytes() {
    let req = v4::Request {
        command: Command::CONNECT,
        target: v4_ip(192, 0, 2, 7, 8080),
        userid: b"alice".to_vec(),
    };
    let bytes = req.encode().unwrap();
    assert_eq!(
        bytes,
        [&[4, 1, 0x1f, 0x90, 192, 0, 2, 7][..], b"alice", &[0]].concat()
    );
    let parsed = check_prefixes(&bytes, v4::Request::parse);
    assert_eq!(parsed, req);
    assert_eq!(parsed.version(), Version::V4);
}

#[test]
fn v4_request_needed_is_exact_in_fixed_header() {
    let bytes = [4u8, 1, 0, 80, 10, 0, 0, 1, 0];
    assert_eq!(incomplete(v4::Request::parse(&[])), 1);
    for k in 1..8 {
        assert_eq!(incomplete(v4::Request::parse(&bytes[..k])), 8 - k, "k={k}");
    }
    // The USERID's length is unknown until its NUL: one byte at a time.
    assert_eq!(incomplete(v4::Request::parse(&bytes[..8])), 1);
}

#[test]
fn v4a_request_known_bytes() {
    let req = v4::Request {
        command: Command::CONNECT,
        target: TargetAddr::domain("example.com", 443),
        userid: Vec::new(),
    };
    let bytes = req.encode().unwrap();
    assert_eq!(
        bytes,
        [&[4, 1, 1, 0xbb, 0, 0, 0, 1, 0][..], b"example.com", &[0]].concat()
    );
    let parsed = check_prefixes(&bytes, v4::Request::parse);
    assert_eq!(parsed, req);
    assert_eq!(parsed.version(), Version::V4a);
}

#[test]
fn v4a_accepts_any_nonzero_last_octet() {
    let bytes = [&[4u8, 0xF0, 0, 53, 0, 0, 0, 0xFF][..], b"id\0host\0"].concat();
    let r = check_prefixes(&bytes, v4::Request::parse);
    assert_eq!(r.target, TargetAddr::domain("host", 53));
    assert_eq!(r.userid, b"id");
    assert_eq!(r.command, Command::RESOLVE);
}

#[test]
fn v4_ip_0_0_0_0_is_plain_socks4() {
    let bytes = [4u8, 1, 0, 80, 0, 0, 0, 0, 0];
    let r = check_prefixes(&bytes, v4::Request::parse);
    assert_eq!(r.target, v4_ip(0, 0, 0, 0, 80));
}

#[test]
fn v4_request_fed_all_ways() {
    let a = v4::Request {
        command: Command::BIND,
        target: v4_ip(127, 0, 0, 1, 1),
        userid: b"u".to_vec(),
    };
    let b = v4::Request {
        command: Command::CONNECT,
        target: TargetAddr::domain("h\u{e9}llo.example", 65535),
        userid: vec![b'x'; 255],
    };
    let c = v4::Request {
        command: Command(0x77),
        target: TargetAddr::domain("a".repeat(255), 0),
        userid: vec![],
    };
    let stream = [
        a.encode().unwrap(),
        b.encode().unwrap(),
        c.encode().unwrap(),
    ]
    .concat();
    feed_all_ways(&stream, &[a, b, c], v4::Request::parse);
}

#[test]
fn v4_userid_cap() {
    // 255 bytes + NUL is fine.
    let ok = [&[4u8, 1, 0, 80, 1, 2, 3, 4][..], &[b'u'; 255], &[0]].concat();
    assert_eq!(check_prefixes(&ok, v4::Request::parse).userid.len(), 255);
    // 256 bytes without a NUL: an error, not a request for more.
    let long = [&[4u8, 1, 0, 80, 1, 2, 3, 4][..], &[b'u'; 256]].concat();
    assert_eq!(
        v4::Request::parse(&long),
        Err(PeerError::UserIdTooLong(v4::MAX_USERID))
    );
    // 255 bytes without a NUL yet: still incomplete.
    assert_eq!(incomplete(v4::Request::parse(&long[..8 + 255])), 1);
    // Much longer garbage: still the same error.
    let longer = [&[4u8, 1, 0, 80, 1, 2, 3, 4][..], &[b'u'; 5000]].concat();
    assert_eq!(
        v4::Request::parse(&longer),
        Err(PeerError::UserIdTooLong(v4::MAX_USERID))
    );
}

#[test]
fn v4a_hostname_cap_and_errors() {
    let head = [4u8, 1, 0, 80, 0, 0, 0, 1, b'u', 0];
    let ok = [&head[..], &[b'h'; 255], &[0]].concat();
    assert_eq!(
        check_prefixes(&ok, v4::Request::parse).target,
        TargetAddr::domain("h".repeat(255), 80)
    );
    let long = [&head[..], &[b'h'; 256]].concat();
    assert_eq!(
        v4::Request::parse(&long),
        Err(PeerError::HostnameTooLong(v4::MAX_HOSTNAME))
    );
    assert_eq!(incomplete(v4::Request::parse(&long[..head.len() + 255])), 1);
    let empty = [&head[..], &[0]].concat();
    assert_eq!(v4::Request::parse(&empty), Err(PeerError::EmptyHostname));
    let bad_utf8 = [&head[..], &[0xff, 0xfe, 0]].concat();
    assert_eq!(v4::Request::parse(&bad_utf8), Err(PeerError::BadDomain));
}

#[test]
fn v4_request_wrong_version() {
    assert_eq!(
        v4::Request::parse(&[5, 1, 0]),
        Err(PeerError::UnknownVersion(5))
    );
}

#[test]
fn v4_request_encode_refusals() {
    let v6 = v4::Request {
        command: Command::CONNECT,
        target: TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 1),
        userid: vec![],
    };
    assert!(v6.encode().is_err());
    let nul_user = v4::Request {
        command: Command::CONNECT,
        target: v4_ip(1, 2, 3, 4, 1),
        userid: b"a\0b".to_vec(),
    };
    assert!(nul_user.encode().is_err());
    let long_user = v4::Request {
        userid: vec![b'a'; 256],
        ..nul_user.clone()
    };
    assert!(long_user.encode().is_err());
    let empty_host = v4::Request {
        target: TargetAddr::domain("", 1),
        ..nul_user.clone()
    };
    assert!(empty_host.encode().is_err());
    let long_host = v4::Request {
        target: TargetAddr::domain("h".repeat(256), 1),
        userid: vec![],
        ..nul_user.clone()
    };
    assert!(long_host.encode().is_err());
    let nul_host = v4::Request {
        target: TargetAddr::domain("a\0b", 1),
        userid: vec![],
        ..nul_user
    };
    assert!(nul_host.encode().is_err());
}

#[test]
fn v4_request_ip_0_0_0_x_is_not_encoded_as_ambiguous_socks4a() {
    // 0.0.0.x (x != 0) is SOCKS4a's marker: as a plain SOCKS4 target it
    // would be read back as "a hostname follows" and the peer would wait
    // forever. Encoding must refuse it rather than emit such bytes.
    let req = v4::Request {
        command: Command::CONNECT,
        target: v4_ip(0, 0, 0, 9, 80),
        userid: vec![],
    };
    assert!(req.encode().is_err(), "0.0.0.9 encoded as plain SOCKS4");
    // 0.0.0.0 is not the marker and stays encodable.
    let zero = v4::Request {
        target: v4_ip(0, 0, 0, 0, 80),
        ..req
    };
    let bytes = zero.encode().unwrap();
    assert_eq!(check_prefixes(&bytes, v4::Request::parse), zero);
}

#[test]
fn v4_reply_known_bytes_and_prefixes() {
    let r = v4::Reply {
        cd: v4::GRANTED,
        port: 0x1234,
        ip: Ipv4Addr::new(10, 1, 2, 3),
    };
    let bytes = r.encode();
    assert_eq!(bytes, [0, 0x5a, 0x12, 0x34, 10, 1, 2, 3]);
    assert_eq!(check_prefixes(&bytes, v4::Reply::parse), r);
    // Fixed size: needed is exact.
    for k in 0..8 {
        assert_eq!(incomplete(v4::Reply::parse(&bytes[..k])), 8 - k);
    }
    // VN 04 is tolerated, anything else refused.
    let mut v4vn = bytes.clone();
    v4vn[0] = 4;
    assert_eq!(v4::Reply::parse(&v4vn).unwrap().complete().unwrap().0, r);
    let mut bad = bytes;
    bad[0] = 5;
    assert_eq!(v4::Reply::parse(&bad), Err(PeerError::BadReplyVersion(5)));
}

#[test]
fn v4_reply_fed_all_ways() {
    let replies: Vec<v4::Reply> = (0..5u8)
        .map(|i| v4::Reply {
            cd: V4Code(0x5a + i % 4),
            port: u16::from(i) * 1000,
            ip: Ipv4Addr::new(i, 255 - i, 7, 9),
        })
        .collect();
    let stream: Vec<u8> = replies.iter().flat_map(|r| r.encode()).collect();
    feed_all_ways(&stream, &replies, v4::Reply::parse);
}

#[test]
fn v4_reply_for_target() {
    let bound = v4_ip(198, 51, 100, 1, 4242);
    assert_eq!(
        v4::Reply::for_target(ReplyCode::Succeeded, Some(&bound)).encode(),
        [0, 0x5a, 0x10, 0x92, 198, 51, 100, 1]
    );
    // IPv4-mapped IPv6 becomes IPv4; other IPv6 and domains become zeros.
    let mapped = TargetAddr::ip(IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped()), 7);
    assert_eq!(
        v4::Reply::for_target(ReplyCode::Succeeded, Some(&mapped)).encode(),
        [0, 0x5a, 0, 7, 1, 2, 3, 4]
    );
    let v6 = TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 7);
    assert_eq!(
        v4::Reply::for_target(ReplyCode::HostUnreachable, Some(&v6)).encode(),
        [0, 0x5b, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        v4::Reply::for_target(ReplyCode::GeneralFailure, Some(&TargetAddr::domain("x", 9)))
            .encode(),
        [0, 0x5b, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        v4::Reply::for_target(ReplyCode::NotAllowed, None).encode(),
        [0, 0x5b, 0, 0, 0, 0, 0, 0]
    );
}

// ---------------------------------------------------------------- SOCKS5

#[test]
fn v5_greeting_known_bytes_and_exact_needed() {
    let g = Greeting {
        methods: vec![Method::NONE, Method::USERPASS, Method(0x80)],
    };
    let bytes = g.encode().unwrap();
    assert_eq!(bytes, [5, 3, 0, 2, 0x80]);
    assert_eq!(check_prefixes(&bytes, Greeting::parse), g);
    assert_eq!(incomplete(Greeting::parse(&bytes[..1])), 1);
    // Once NMETHODS is known, needed is exact.
    for k in 2..bytes.len() {
        assert_eq!(incomplete(Greeting::parse(&bytes[..k])), bytes.len() - k);
    }
    assert!(g.offers(Method::USERPASS));
    assert!(!g.offers(Method::GSSAPI));
}

#[test]
fn v5_greeting_limits() {
    assert_eq!(Greeting::parse(&[5, 0]), Err(PeerError::NoMethods));
    assert_eq!(
        Greeting::parse(&[4, 1, 0]),
        Err(PeerError::UnknownVersion(4))
    );
    let all: Vec<Method> = (0..=254u8).map(Method).collect();
    let g = Greeting { methods: all };
    let bytes = g.encode().unwrap();
    assert_eq!(bytes.len(), 257);
    assert_eq!(check_prefixes(&bytes, Greeting::parse), g);
    assert!(Greeting { methods: vec![] }.encode().is_err());
    assert!(Greeting {
        methods: vec![Method::NONE; 256]
    }
    .encode()
    .is_err());
}

#[test]
fn v5_greeting_fed_all_ways() {
    let gs: Vec<Greeting> = [1usize, 2, 255, 7]
        .iter()
        .map(|&n| Greeting {
            methods: (0..n).map(|i| Method(i as u8)).collect(),
        })
        .collect();
    let stream: Vec<u8> = gs.iter().flat_map(|g| g.encode().unwrap()).collect();
    feed_all_ways(&stream, &gs, Greeting::parse);
}

#[test]
fn v5_method_choice() {
    for m in [0u8, 1, 2, 0x80, 0xff] {
        let c = MethodChoice(Method(m));
        let bytes = c.encode();
        assert_eq!(bytes, [5, m]);
        assert_eq!(check_prefixes(&bytes, MethodChoice::parse), c);
        assert_eq!(incomplete(MethodChoice::parse(&[])), 2);
        assert_eq!(incomplete(MethodChoice::parse(&[5])), 1);
    }
    assert_eq!(
        MethodChoice::parse(&[4, 0]),
        Err(PeerError::BadReplyVersion(4))
    );
    let cs: Vec<MethodChoice> = (0..=255u8).map(|m| MethodChoice(Method(m))).collect();
    let stream: Vec<u8> = cs.iter().flat_map(|c| c.encode()).collect();
    feed_all_ways(&stream, &cs, MethodChoice::parse);
}

fn sample_targets() -> Vec<TargetAddr> {
    vec![
        v4_ip(93, 184, 216, 34, 80),
        TargetAddr::ip(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            443,
        ),
        TargetAddr::domain("example.com", 8443),
        TargetAddr::domain("x", 0),
        TargetAddr::domain("\u{4f8b}\u{3048}.\u{30c6}\u{30b9}\u{30c8}", 1),
        TargetAddr::domain("d".repeat(255), 65535),
    ]
}

#[test]
fn target_addr_v5_forms() {
    let mut out = Vec::new();
    v4_ip(1, 2, 3, 4, 0x0102).encode_v5(&mut out).unwrap();
    assert_eq!(out, [1, 1, 2, 3, 4, 1, 2]);
    out.clear();
    TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 0xffff)
        .encode_v5(&mut out)
        .unwrap();
    assert_eq!(
        out,
        [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff]
    );
    out.clear();
    TargetAddr::domain("ab", 3).encode_v5(&mut out).unwrap();
    assert_eq!(out, [3, 2, b'a', b'b', 0, 3]);
    for t in sample_targets() {
        let mut out = Vec::new();
        t.encode_v5(&mut out).unwrap();
        assert_eq!(out.len(), t.v5_len());
        assert_eq!(check_prefixes(&out, TargetAddr::parse_v5), t);
    }
    // Too long or empty domains cannot be encoded; nothing is written.
    let mut out = vec![9];
    assert!(TargetAddr::domain("d".repeat(256), 1)
        .encode_v5(&mut out)
        .is_err());
    assert!(TargetAddr::domain("", 1).encode_v5(&mut out).is_err());
    assert_eq!(out, [9]);
}

#[test]
fn target_addr_v5_exact_needed() {
    // IPv4: after ATYP, needed is exact.
    let b = [1u8, 1, 2, 3, 4, 0, 80];
    for k in 1..b.len() {
        assert_eq!(incomplete(TargetAddr::parse_v5(&b[..k])), b.len() - k);
    }
    let mut v6 = vec![4u8];
    v6.extend_from_slice(&[0; 18]);
    for k in 1..v6.len() {
        assert_eq!(incomplete(TargetAddr::parse_v5(&v6[..k])), v6.len() - k);
    }
    // Domain: exact once the length byte is in.
    let d = [3u8, 3, b'a', b'b', b'c', 0, 1];
    assert_eq!(incomplete(TargetAddr::parse_v5(&d[..1])), 1);
    for k in 2..d.len() {
        assert_eq!(incomplete(TargetAddr::parse_v5(&d[..k])), d.len() - k);
    }
}

#[test]
fn target_addr_v5_errors() {
    for atyp in [0u8, 2, 5, 0xff] {
        assert_eq!(
            TargetAddr::parse_v5(&[atyp, 0, 0, 0, 0, 0, 0]),
            Err(PeerError::UnknownAddressType(atyp))
        );
    }
    assert_eq!(
        TargetAddr::parse_v5(&[3, 0, 0, 80]),
        Err(PeerError::EmptyDomain)
    );
    assert_eq!(
        TargetAddr::parse_v5(&[3, 3, b'a', 0, b'b', 0, 80]),
        Err(PeerError::BadDomain)
    );
    assert_eq!(
        TargetAddr::parse_v5(&[3, 2, 0xc3, 0x28, 0, 80]),
        Err(PeerError::BadDomain)
    );
    // A length byte larger than what was sent is incomplete, never a panic.
    assert_eq!(incomplete(TargetAddr::parse_v5(&[3, 255, b'a'])), 256);
}

#[test]
fn v5_request_known_bytes() {
    let req = v5::Request {
        command: Command::CONNECT,
        target: TargetAddr::domain("example.com", 80),
    };
    let bytes = req.encode().unwrap();
    assert_eq!(
        bytes,
        [&[5, 1, 0, 3, 11][..], b"example.com", &[0, 80]].concat()
    );
    assert_eq!(check_prefixes(&bytes, v5::Request::parse), req);
    // Needed is exact once the domain length is in.
    for k in 5..bytes.len() {
        assert_eq!(incomplete(v5::Request::parse(&bytes[..k])), bytes.len() - k);
    }
}

#[test]
fn v5_request_all_targets_and_commands() {
    let mut all = Vec::new();
    for (i, t) in sample_targets().into_iter().enumerate() {
        for cmd in [
            Command::CONNECT,
            Command::BIND,
            Command::UDP_ASSOCIATE,
            Command::RESOLVE,
            Command::RESOLVE_PTR,
            Command(0x42),
        ] {
            let req = v5::Request {
                command: cmd,
                target: t.clone(),
            };
            let bytes = req.encode().unwrap();
            assert_eq!(bytes.len(), 3 + t.v5_len(), "target {i}");
            assert_eq!(check_prefixes(&bytes, v5::Request::parse), req);
            all.push(req);
        }
    }
    let stream: Vec<u8> = all.iter().flat_map(|r| r.encode().unwrap()).collect();
    feed_all_ways(&stream, &all, v5::Request::parse);
}

#[test]
fn v5_request_rsv_ignored_and_errors() {
    let bytes = [5u8, 1, 0xAB, 1, 1, 2, 3, 4, 0, 80];
    let (r, n) = v5::Request::parse(&bytes).unwrap().complete().unwrap();
    assert_eq!(n, bytes.len());
    assert_eq!(r.target, v4_ip(1, 2, 3, 4, 80));
    assert_eq!(
        v5::Request::parse(&[4, 1, 0, 1]),
        Err(PeerError::UnknownVersion(4))
    );
    assert_eq!(
        v5::Request::parse(&[5, 1, 0, 9, 0, 0]),
        Err(PeerError::UnknownAddressType(9))
    );
    assert_eq!(
        v5::Request::parse(&[5, 1, 0, 3, 0, 0, 80]),
        Err(PeerError::EmptyDomain)
    );
    assert!(v5::Request {
        command: Command::CONNECT,
        target: TargetAddr::domain("d".repeat(256), 1),
    }
    .encode()
    .is_err());
}

#[test]
fn v5_reply_known_bytes_and_codes() {
    let r = v5::Reply {
        rep: V5Code(0),
        bound: v4_ip(10, 0, 0, 1, 1080),
    };
    let bytes = r.encode();
    assert_eq!(bytes, [5, 0, 0, 1, 10, 0, 0, 1, 0x04, 0x38]);
    assert_eq!(check_prefixes(&bytes, v5::Reply::parse), r);
    assert_eq!(r.code(), ReplyCode::Succeeded);
    assert_eq!(
        v5::Reply::parse(&[4, 0, 0, 1]),
        Err(PeerError::BadReplyVersion(4))
    );
    // An address that cannot be encoded becomes zeros, never a truncation.
    for bad in [
        TargetAddr::domain("d".repeat(300), 5),
        TargetAddr::domain("", 5),
    ] {
        let r = v5::Reply {
            rep: V5Code(4),
            bound: bad,
        };
        assert_eq!(r.encode(), [5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
}

/// Tor answers a RESOLVE it could not carry out with ATYP 00 (seen from
/// tor 0.4.9: `05 04 00 00 00 00 00 00 00 00`): the failure code is read,
/// the unknown address type of a failure is not an error.
#[test]
fn v5_failure_reply_with_unknown_address_type_keeps_its_code() {
    let tor = [5, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    let (r, used) = v5::Reply::parse(&tor).unwrap().complete().unwrap();
    assert_eq!(r.rep, 4);
    assert_eq!(r.bound, TargetAddr::unspecified());
    assert_eq!(used, 4);
    assert_eq!(
        v5::Reply::parse(&[5, 4, 0]),
        Ok(sixsocks_proto::Parsed::Incomplete { needed: 1 })
    );
    // A success still needs a real address.
    assert_eq!(
        v5::Reply::parse(&[5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(PeerError::UnknownAddressType(0))
    );
}

#[test]
fn v5_reply_all_targets_fed_all_ways() {
    let mut all = Vec::new();
    for t in sample_targets() {
        for rep in [0u8, 1, 4, 8, 0xF0, 0xF7, 0x99] {
            let r = v5::Reply {
                rep: V5Code(rep),
                bound: t.clone(),
            };
            assert_eq!(check_prefixes(&r.encode(), v5::Reply::parse), r);
            assert_eq!(r.code().to_v5(true), rep);
            all.push(r);
        }
    }
    let stream: Vec<u8> = all.iter().flat_map(|r| r.encode()).collect();
    feed_all_ways(&stream, &all, v5::Reply::parse);
}

// ---------------------------------------------------------------- RFC 1929

fn up(user: &[u8], pass: &[u8]) -> userpass::Request {
    userpass::Request {
        username: user.to_vec(),
        password: Password::new(pass),
    }
}

#[test]
fn userpass_request_known_bytes_and_exact_needed() {
    let r = up(b"alice", b"s3cret");
    let bytes = r.encode().unwrap();
    assert_eq!(bytes, [&[1, 5][..], b"alice", &[6], b"s3cret"].concat());
    assert_eq!(
        check_prefixes(&bytes, |b| userpass::Request::parse(b, false)),
        r
    );
    assert_eq!(
        check_prefixes(&bytes, |b| userpass::Request::parse(b, true)),
        r
    );
    assert_eq!(incomplete(userpass::Request::parse(&[], false)), 2);
    assert_eq!(incomplete(userpass::Request::parse(&[1], false)), 1);
    // Exact once ULEN is known (up to PLEN), and once PLEN is known.
    for k in 2..bytes.len() {
        assert_eq!(
            incomplete(userpass::Request::parse(&bytes[..k], false)),
            if k < 8 { 8 - k } else { bytes.len() - k },
            "k={k}"
        );
    }
}

#[test]
fn userpass_request_limits_and_leniency() {
    let max = up(&[b'u'; 255], &[b'p'; 255]);
    let bytes = max.encode().unwrap();
    assert_eq!(bytes.len(), 513);
    assert_eq!(
        check_prefixes(&bytes, |b| userpass::Request::parse(b, false)),
        max
    );
    assert!(up(&[b'u'; 256], b"p").encode().is_err());
    assert!(up(b"u", &[b'p'; 256]).encode().is_err());
    for (u, p) in [(&b""[..], &b"p"[..]), (b"u", b""), (b"", b"")] {
        let bytes = up(u, p).encode().unwrap();
        assert_eq!(
            userpass::Request::parse(&bytes, false),
            Err(PeerError::EmptyCredentials)
        );
        assert_eq!(
            check_prefixes(&bytes, |b| userpass::Request::parse(b, true)),
            up(u, p)
        );
    }
    assert_eq!(
        userpass::Request::parse(&[5, 1, b'a', 1, b'b'], false),
        Err(PeerError::BadAuthVersion(5))
    );
    // Arbitrary bytes (not UTF-8, containing NUL) are kept as they are.
    let odd = up(&[0, 0xff, 0x80], &[0, 1, 2]);
    let bytes = odd.encode().unwrap();
    assert_eq!(
        check_prefixes(&bytes, |b| userpass::Request::parse(b, false)),
        odd
    );
}

#[test]
fn userpass_request_fed_all_ways() {
    let all = vec![
        up(b"a", b"b"),
        up(&[b'u'; 255], &[b'p'; 255]),
        up(b"user", &[b'x'; 100]),
    ];
    let stream: Vec<u8> = all.iter().flat_map(|r| r.encode().unwrap()).collect();
    feed_all_ways(&stream, &all, |b| userpass::Request::parse(b, false));
}

#[test]
fn userpass_reply() {
    let ok = userpass::Reply {
        status: userpass::SUCCESS,
    };
    let no = userpass::Reply {
        status: userpass::FAILURE,
    };
    assert_eq!(ok.encode(), [1, 0]);
    assert_eq!(no.encode(), [1, 1]);
    assert!(ok.success());
    assert!(!no.success());
    assert!(!userpass::Reply { status: 0x42 }.success());
    assert_eq!(check_prefixes(&ok.encode(), userpass::Reply::parse), ok);
    assert_eq!(incomplete(userpass::Reply::parse(&[])), 2);
    assert_eq!(incomplete(userpass::Reply::parse(&[1])), 1);
    assert_eq!(
        userpass::Reply::parse(&[5, 0]),
        Err(PeerError::BadAuthVersion(5))
    );
    let all: Vec<userpass::Reply> = (0..=255u8).map(|s| userpass::Reply { status: s }).collect();
    let stream: Vec<u8> = all.iter().flat_map(|r| r.encode()).collect();
    feed_all_ways(&stream, &all, userpass::Reply::parse);
}

#[test]
fn password_is_redacted_and_compared_by_value() {
    let p = Password::new(b"hunter2".to_vec());
    assert_eq!(format!("{p:?}"), "Password(<redacted>)");
    let r = up(b"alice", b"hunter2");
    assert!(!format!("{r:?}").contains("hunter2"));
    assert_eq!(p, Password::new(b"hunter2"));
    assert_ne!(p, Password::new(b"hunter3"));
    assert_ne!(p, Password::new(b"hunter22"));
    assert_eq!(p.len(), 7);
    assert!(Password::default().is_empty());
}

// ---------------------------------------------------------------- HTTP page

#[test]
fn http_page_status_line_and_content_length() {
    let page = http::response();
    let text = std::str::from_utf8(&page).expect("page is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("head ends with CRLF CRLF");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    // HTTP/1.x SP 3DIGIT SP reason
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap();
    let code = parts.next().unwrap();
    let reason = parts.next().unwrap_or("");
    assert!(version == "HTTP/1.0" || version == "HTTP/1.1", "{status}");
    assert_eq!(code.len(), 3, "{status}");
    let code: u16 = code.parse().expect("numeric status");
    assert!((400..600).contains(&code), "an error status: {status}");
    assert!(!reason.is_empty());
    let mut content_length = None;
    let mut content_type = None;
    for l in lines {
        let (name, value) = l.split_once(':').expect("header has a colon");
        assert!(!name.contains(' '), "header name {name:?}");
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                assert!(content_length.is_none(), "duplicate Content-Length");
                content_length = Some(value.trim().parse::<usize>().expect("number"));
            }
            "content-type" => content_type = Some(value.trim().to_string()),
            _ => {}
        }
    }
    assert_eq!(
        content_length,
        Some(body.len()),
        "Content-Length = body length"
    );
    assert!(content_type.unwrap().starts_with("text/html"));
    assert!(body.contains("SOCKS"));
}

#[test]
fn http_detection() {
    for b in b"GHPCODT" {
        assert!(http::looks_like_http(*b));
    }
    for b in [0u8, 4, 5, 6, 0xCF, b'g', b'0', b' ', 0xff] {
        assert!(!http::looks_like_http(b), "{b:#x}");
    }
    assert!(http::head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(http::head_complete(b"GET / HTTP/1.0\n\n"));
    assert!(!http::head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    assert!(!http::head_complete(b""));
}

// ---------------------------------------------------------------- reply codes

#[test]
fn reply_code_v5_table() {
    let table = [
        (ReplyCode::Succeeded, 0x00),
        (ReplyCode::GeneralFailure, 0x01),
        (ReplyCode::NotAllowed, 0x02),
        (ReplyCode::NetworkUnreachable, 0x03),
        (ReplyCode::HostUnreachable, 0x04),
        (ReplyCode::ConnectionRefused, 0x05),
        (ReplyCode::TtlExpired, 0x06),
        (ReplyCode::CommandNotSupported, 0x07),
        (ReplyCode::AddressTypeNotSupported, 0x08),
    ];
    for (code, wire) in table {
        assert_eq!(code.to_v5(false), wire, "{code}");
        assert_eq!(code.to_v5(true), wire, "{code}");
        assert_eq!(ReplyCode::from_v5(V5Code(wire)), code);
    }
    // Tor's extended codes: sent only when enabled, else host unreachable.
    for c in 0xF0..=0xF7u8 {
        let code = ReplyCode::from_v5(V5Code(c));
        assert_eq!(code, ReplyCode::TorExtended(c));
        assert_eq!(code.to_v5(true), c);
        assert_eq!(code.to_v5(false), 0x04);
    }
    assert_eq!(ReplyCode::ONION_DESC_NOT_FOUND.to_v5(true), 0xF0);
    assert_eq!(ReplyCode::ONION_INVALID_ADDRESS.to_v5(true), 0xF6);
    assert_eq!(ReplyCode::ONION_INVALID_ADDRESS.to_v5(false), 0x04);
    // Everything else survives as Other, and every value reads back.
    for rep in 0..=255u8 {
        let code = ReplyCode::from_v5(V5Code(rep));
        if rep > 8 && !(0xF0..=0xF7).contains(&rep) {
            assert_eq!(code, ReplyCode::Other(rep));
            assert_eq!(code.to_v5(false), rep);
        }
        assert_eq!(code.to_v5(true), rep);
        assert_eq!(code.is_success(), rep == 0);
    }
}

#[test]
fn reply_code_v4_table() {
    let all = [
        ReplyCode::Succeeded,
        ReplyCode::GeneralFailure,
        ReplyCode::NotAllowed,
        ReplyCode::NetworkUnreachable,
        ReplyCode::HostUnreachable,
        ReplyCode::ConnectionRefused,
        ReplyCode::TtlExpired,
        ReplyCode::CommandNotSupported,
        ReplyCode::AddressTypeNotSupported,
        ReplyCode::TorExtended(0xF3),
        ReplyCode::Other(0x33),
    ];
    for code in all {
        let want = if code == ReplyCode::Succeeded {
            0x5A
        } else {
            0x5B
        };
        assert_eq!(code.to_v4(), want, "{code}");
    }
    assert_eq!(ReplyCode::from_v4(V4Code(0x5A)), ReplyCode::Succeeded);
    assert_eq!(ReplyCode::from_v4(V4Code(0x5B)), ReplyCode::GeneralFailure);
    assert_eq!(ReplyCode::from_v4(V4Code(0x5C)), ReplyCode::Other(0x5C));
    assert_eq!(ReplyCode::from_v4(V4Code(0x5D)), ReplyCode::Other(0x5D));
}

#[test]
fn reply_code_display() {
    assert_eq!(ReplyCode::TtlExpired.to_string(), "ttl-expired");
    assert_eq!(
        ReplyCode::TorExtended(0xF2).to_string(),
        "tor-extended-0xf2"
    );
    assert_eq!(ReplyCode::Other(0x42).to_string(), "0x42");
}

// ---------------------------------------------------------------- Request::reply

#[test]
fn request_reply_in_its_own_version() {
    let mk = |version| Request {
        version,
        command: Command::CONNECT,
        target: TargetAddr::domain("example.com", 80),
        credentials: Credentials::None,
    };
    let bound = v4_ip(192, 0, 2, 1, 5000);
    assert_eq!(
        mk(Version::V4).reply(ReplyCode::Succeeded, Some(&bound), false),
        [0, 0x5a, 0x13, 0x88, 192, 0, 2, 1]
    );
    assert_eq!(
        mk(Version::V4a).reply(ReplyCode::ConnectionRefused, None, true),
        [0, 0x5b, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        mk(Version::V5).reply(ReplyCode::Succeeded, Some(&bound), false),
        [5, 0, 0, 1, 192, 0, 2, 1, 0x13, 0x88]
    );
    assert_eq!(
        mk(Version::V5).reply(ReplyCode::ConnectionRefused, None, false),
        [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        mk(Version::V5).reply(ReplyCode::ONION_DESC_NOT_FOUND, None, true)[1],
        0xF0
    );
    assert_eq!(
        mk(Version::V5).reply(ReplyCode::ONION_DESC_NOT_FOUND, None, false)[1],
        0x04
    );
    // RESOLVE_PTR answers carry a name.
    let name = TargetAddr::domain("host.example", 0);
    assert_eq!(
        mk(Version::V5).reply(ReplyCode::Succeeded, Some(&name), false),
        [&[5, 0, 0, 3, 12][..], b"host.example", &[0, 0]].concat()
    );
}

#[test]
fn display_forms() {
    assert_eq!(
        TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 80).to_string(),
        "[::1]:80"
    );
    assert_eq!(v4_ip(1, 2, 3, 4, 5).to_string(), "1.2.3.4:5");
    assert_eq!(TargetAddr::domain("a\nb", 5).to_string(), "a\\nb:5");
    assert_eq!(Command::CONNECT.to_string(), "connect");
    assert_eq!(Command(0x99).to_string(), "0x99");
    assert_eq!(format!("{:?}", Command::RESOLVE), "resolve(0xf0)");
    assert_eq!(Version::V4a.to_string(), "socks4a");
    assert!(matches!(
        TargetAddr::domain("x", 1).host,
        Host::Domain(ref d) if d == "x"
    ));
    let c = Credentials::UserPass {
        username: b"bob".to_vec(),
        password: Password::new("pw"),
    };
    assert_eq!(c.user_display(), "bob");
    assert_eq!(Credentials::None.user_display(), "-");
    assert!(!format!("{c:?}").contains("pw\""));
}

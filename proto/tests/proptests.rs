//! Property tests: encode -> decode round trips for every message with
//! arbitrary fields, parser invariants on arbitrary bytes, and "arbitrary
//! chunking of a stream gives the same result as one buffer".

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{check_prefixes, drive_server, parse_stream};
use proptest::prelude::*;
use sixsocks_proto::server::HandshakeConfig;
use sixsocks_proto::v5::{Greeting, Method, MethodChoice};
use sixsocks_proto::{
    userpass, v4, v5, Command, Parsed, Password, PeerError, TargetAddr, V4Code, V5Code,
};

// ---------------------------------------------------------------- strategies

/// A domain: 1..=255 bytes of valid UTF-8 without NUL.
fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 1..=255).prop_map(
        |chars| {
            let mut s = String::new();
            for c in chars {
                if s.len() + c.len_utf8() > 255 {
                    break;
                }
                s.push(c);
            }
            s
        },
    )
}

/// Mostly short ASCII names, sometimes arbitrary Unicode up to the cap.
fn any_domain() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9.-]{1,40}",
        1 => domain(),
        1 => Just("d".repeat(255)),
    ]
}

/// Any IPv4 address, with the SOCKS4a marker range 0.0.0.x well represented.
fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        4 => any::<[u8; 4]>().prop_map(Ipv4Addr::from),
        1 => any::<u8>().prop_map(|x| Ipv4Addr::new(0, 0, 0, x)),
    ]
}

/// An IPv4 address SOCKS4 can express (not the SOCKS4a marker 0.0.0.x, x != 0).
fn socks4_ipv4() -> impl Strategy<Value = Ipv4Addr> {
    ipv4().prop_filter("0.0.0.x is the SOCKS4a marker", |ip| {
        let o = ip.octets();
        !(o[..3] == [0, 0, 0] && o[3] != 0)
    })
}

fn target() -> impl Strategy<Value = TargetAddr> {
    let host = prop_oneof![
        ipv4().prop_map(|ip| TargetAddr::ip(IpAddr::V4(ip), 0)),
        any::<[u8; 16]>().prop_map(|o| TargetAddr::ip(IpAddr::V6(Ipv6Addr::from(o)), 0)),
        any_domain().prop_map(|d| TargetAddr::domain(d, 0)),
    ];
    (host, any::<u16>()).prop_map(|(mut t, port)| {
        t.port = port;
        t
    })
}

fn socks4_target() -> impl Strategy<Value = TargetAddr> {
    let host = prop_oneof![
        socks4_ipv4().prop_map(|ip| TargetAddr::ip(IpAddr::V4(ip), 0)),
        any_domain().prop_map(|d| TargetAddr::domain(d, 0)),
    ];
    (host, any::<u16>()).prop_map(|(mut t, port)| {
        t.port = port;
        t
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn bytes_without_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1..=255u8, 0..=max)
}

fn v4_request() -> impl Strategy<Value = v4::Request> {
    (any::<u8>(), socks4_target(), bytes_without_nul(255)).prop_map(|(cd, target, userid)| {
        v4::Request {
            command: Command(cd),
            target,
            userid,
        }
    })
}

fn v5_request() -> impl Strategy<Value = v5::Request> {
    (any::<u8>(), target()).prop_map(|(c, target)| v5::Request {
        command: Command(c),
        target,
    })
}

fn userpass_request() -> impl Strategy<Value = userpass::Request> {
    (bytes(255), bytes(255)).prop_map(|(u, p)| userpass::Request {
        username: u,
        password: Password::new(p),
    })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=40usize, 1..12)
}

/// The invariants of any parse result on `input`.
fn parse_invariants<T>(input: &[u8], r: &Result<Parsed<T>, PeerError>) {
    match r {
        Ok(Parsed::Incomplete { needed }) => assert!(*needed >= 1),
        Ok(Parsed::Complete { consumed, .. }) => {
            assert!(*consumed >= 1 && *consumed <= input.len())
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------- round trips

proptest! {
    #[test]
    fn v4_request_round_trip(r in v4_request()) {
        let bytes = r.encode().unwrap();
        prop_assert_eq!(check_prefixes(&bytes, v4::Request::parse), r);
    }

    #[test]
    fn v4_request_encode_never_lies(ip in ipv4(), port in any::<u16>(), userid in bytes_without_nul(255)) {
        // Every IPv4 target either encodes to bytes that read back as the
        // same request, or is refused (only the SOCKS4a marker 0.0.0.x).
        let r = v4::Request { command: Command::CONNECT, target: TargetAddr::ip(IpAddr::V4(ip), port), userid };
        let o = ip.octets();
        match r.encode() {
            Ok(bytes) => prop_assert_eq!(check_prefixes(&bytes, v4::Request::parse), r),
            Err(_) => prop_assert!(o[..3] == [0, 0, 0] && o[3] != 0),
        }
    }

    #[test]
    fn v4_reply_round_trip(cd in any::<u8>(), port in any::<u16>(), ip in ipv4()) {
        let r = v4::Reply { cd: V4Code(cd), port, ip };
        prop_assert_eq!(check_prefixes(&r.encode(), v4::Reply::parse), r);
    }

    #[test]
    fn v5_greeting_round_trip(m in prop::collection::vec(any::<u8>(), 1..=255)) {
        let g = Greeting { methods: m.into_iter().map(Method).collect() };
        prop_assert_eq!(check_prefixes(&g.encode().unwrap(), Greeting::parse), g);
    }

    #[test]
    fn v5_method_choice_round_trip(m in any::<u8>()) {
        let c = MethodChoice(Method(m));
        prop_assert_eq!(check_prefixes(&c.encode(), MethodChoice::parse), c);
    }

    #[test]
    fn target_addr_round_trip(t in target()) {
        let mut out = Vec::new();
        t.encode_v5(&mut out).unwrap();
        prop_assert_eq!(out.len(), t.v5_len());
        prop_assert_eq!(check_prefixes(&out, TargetAddr::parse_v5), t);
    }

    #[test]
    fn v5_request_round_trip(r in v5_request()) {
        prop_assert_eq!(check_prefixes(&r.encode().unwrap(), v5::Request::parse), r);
    }

    #[test]
    fn v5_reply_round_trip(rep in any::<u8>(), bound in target()) {
        let r = v5::Reply { rep: V5Code(rep), bound };
        let bytes = r.encode();
        prop_assert_eq!(bytes.len(), 3 + r.bound.v5_len());
        prop_assert_eq!(check_prefixes(&bytes, v5::Reply::parse), r);
    }

    #[test]
    fn userpass_request_round_trip(r in userpass_request()) {
        let bytes = r.encode().unwrap();
        prop_assert_eq!(check_prefixes(&bytes, |b| userpass::Request::parse(b, true)), r.clone());
        let strict = userpass::Request::parse(&bytes, false);
        if r.username.is_empty() || r.password.is_empty() {
            prop_assert_eq!(strict, Err(PeerError::EmptyCredentials));
        } else {
            prop_assert_eq!(check_prefixes(&bytes, |b| userpass::Request::parse(b, false)), r);
        }
    }

    #[test]
    fn userpass_reply_round_trip(status in any::<u8>()) {
        let r = userpass::Reply { status };
        prop_assert_eq!(check_prefixes(&r.encode(), userpass::Reply::parse), r);
    }

    #[test]
    fn reply_code_v5_round_trip(rep in any::<u8>()) {
        let code = sixsocks_proto::ReplyCode::from_v5(V5Code(rep));
        prop_assert_eq!(code.to_v5(true), rep);
        let plain = code.to_v5(false);
        let want = if (0xF0..=0xF7).contains(&rep) { 4 } else { rep };
        prop_assert_eq!(plain, want);
    }
}

// ---------------------------------------------------------------- streams and chunking

proptest! {
    #[test]
    fn v4_request_stream_chunking(rs in prop::collection::vec(v4_request(), 1..6), sizes in chunk_sizes()) {
        let stream: Vec<u8> = rs.iter().flat_map(|r| r.encode().unwrap()).collect();
        prop_assert_eq!(&parse_stream(&stream, Some(&sizes), v4::Request::parse), &rs);
        prop_assert_eq!(&parse_stream(&stream, None, v4::Request::parse), &rs);
    }

    #[test]
    fn v5_request_stream_chunking(rs in prop::collection::vec(v5_request(), 1..6), sizes in chunk_sizes()) {
        let stream: Vec<u8> = rs.iter().flat_map(|r| r.encode().unwrap()).collect();
        prop_assert_eq!(&parse_stream(&stream, Some(&sizes), v5::Request::parse), &rs);
        prop_assert_eq!(&parse_stream(&stream, None, v5::Request::parse), &rs);
    }

    #[test]
    fn v5_reply_stream_chunking(rs in prop::collection::vec((any::<u8>(), target()), 1..6), sizes in chunk_sizes()) {
        let rs: Vec<v5::Reply> = rs.into_iter().map(|(rep, bound)| v5::Reply { rep: V5Code(rep), bound }).collect();
        let stream: Vec<u8> = rs.iter().flat_map(|r| r.encode()).collect();
        prop_assert_eq!(&parse_stream(&stream, Some(&sizes), v5::Reply::parse), &rs);
    }

    #[test]
    fn greeting_stream_chunking(gs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=255), 1..5), sizes in chunk_sizes()) {
        let gs: Vec<Greeting> = gs.into_iter().map(|m| Greeting { methods: m.into_iter().map(Method).collect() }).collect();
        let stream: Vec<u8> = gs.iter().flat_map(|g| g.encode().unwrap()).collect();
        prop_assert_eq!(&parse_stream(&stream, Some(&sizes), Greeting::parse), &gs);
    }

    #[test]
    fn userpass_stream_chunking(rs in prop::collection::vec(userpass_request(), 1..5), sizes in chunk_sizes()) {
        let stream: Vec<u8> = rs.iter().flat_map(|r| r.encode().unwrap()).collect();
        prop_assert_eq!(&parse_stream(&stream, Some(&sizes), |b| userpass::Request::parse(b, true)), &rs);
    }
}

/// A valid client stream for the server machine: one of SOCKS4, SOCKS4a,
/// SOCKS5 without auth, SOCKS5 with auth; then optimistic data.
fn client_stream() -> impl Strategy<Value = Vec<u8>> {
    let v4 = v4_request().prop_map(|r| r.encode().unwrap());
    let v5_noauth = v5_request().prop_map(|r| [&[5u8, 1, 0][..], &r.encode().unwrap()].concat());
    let v5_auth = (userpass_request(), v5_request()).prop_map(|(a, r)| {
        [
            &[5u8, 2, 0, 2][..],
            &a.encode().unwrap(),
            &r.encode().unwrap(),
        ]
        .concat()
    });
    (prop_oneof![v4, v5_noauth, v5_auth], bytes(64)).prop_map(|(mut s, data)| {
        s.extend(data);
        s
    })
}

fn config() -> impl Strategy<Value = HandshakeConfig> {
    (any::<bool>(), any::<bool>()).prop_map(|(require_auth, lenient_auth)| HandshakeConfig {
        require_auth,
        lenient_auth,
    })
}

proptest! {
    #[test]
    fn server_chunking_of_valid_streams_changes_nothing(
        stream in client_stream(),
        cfg in config(),
        sizes in chunk_sizes(),
        accept in any::<bool>(),
    ) {
        let mut check = |_: &[u8], _: &Password| accept;
        let whole = drive_server(cfg.clone(), &stream, Some(&[usize::MAX]), &mut check);
        let chunked = drive_server(cfg.clone(), &stream, Some(&sizes), &mut check);
        let exact = drive_server(cfg, &stream, None, &mut check);
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(&exact, &whole);
    }

    #[test]
    fn server_chunking_of_arbitrary_bytes_changes_nothing(
        first in prop_oneof![Just(4u8), Just(5u8), Just(b'G'), any::<u8>()],
        rest in bytes(1200),
        cfg in config(),
        sizes in chunk_sizes(),
        accept in any::<bool>(),
    ) {
        let stream = [&[first][..], &rest].concat();
        let mut check = |_: &[u8], _: &Password| accept;
        let whole = drive_server(cfg.clone(), &stream, Some(&[usize::MAX]), &mut check);
        let chunked = drive_server(cfg.clone(), &stream, Some(&sizes), &mut check);
        let exact = drive_server(cfg, &stream, None, &mut check);
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(&exact, &whole);
    }

    #[test]
    fn parsers_on_arbitrary_bytes(input in bytes(600)) {
        parse_invariants(&input, &v4::Request::parse(&input));
        parse_invariants(&input, &v4::Reply::parse(&input));
        parse_invariants(&input, &Greeting::parse(&input));
        parse_invariants(&input, &MethodChoice::parse(&input));
        parse_invariants(&input, &TargetAddr::parse_v5(&input));
        parse_invariants(&input, &v5::Request::parse(&input));
        parse_invariants(&input, &v5::Reply::parse(&input));
        parse_invariants(&input, &userpass::Request::parse(&input, false));
        parse_invariants(&input, &userpass::Request::parse(&input, true));
        parse_invariants(&input, &userpass::Reply::parse(&input));
    }
}

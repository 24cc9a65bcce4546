//! SOCKS 6 property tests: encode → decode round trips of every message
//! with arbitrary fields and options, canonical re-encoding of whatever
//! parses, parser invariants on arbitrary bytes, chunking invariance of the
//! server machine, and client/server agreement on arbitrary requests.

mod v6common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sixsocks_proto::v5::Method;
use sixsocks_proto::v6::client::ClientRequest;
use sixsocks_proto::v6::draft05::Draft05;
use sixsocks_proto::v6::{
    AssociationId, AuthDataOption, AuthMethodOption, AuthOutcome, AuthReply, Codec, DatagramHeader,
    ExpenditureCode, IdempotenceOption, Leg, MptcpScheduler, OperationReply, Options, Request,
    Socks6Limits, Socks6Option, StackOption, StackValue,
};
use sixsocks_proto::V6Code;
use sixsocks_proto::{Command, Parsed, Password, PeerError, TargetAddr};
use v6common::{config, drive, exchange, Proxy};

const C: Draft05 = Draft05;

/// Limits wide enough for any encodable message (the caps are tested
/// elsewhere; here we test the codec).
fn wide() -> Socks6Limits {
    Socks6Limits {
        max_options: 255,
        max_options_bytes: 255 * 255,
        max_initial_data: 8192,
    }
}

// ---------------------------------------------------------------- strategies

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9.-]{1,40}",
        1 => prop::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 1..=80)
            .prop_map(|cs| {
                let mut s = String::new();
                for c in cs {
                    if s.len() + c.len_utf8() > 255 {
                        break;
                    }
                    s.push(c);
                }
                s
            }),
        1 => Just("d".repeat(255)),
    ]
}

fn target() -> impl Strategy<Value = TargetAddr> {
    let host = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ];
    prop_oneof![
        (host, any::<u16>()).prop_map(|(h, p)| TargetAddr::ip(h, p)),
        (domain(), any::<u16>()).prop_map(|(d, p)| TargetAddr::domain(d, p)),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Whether (level, code, data length) is one the codec decodes as a typed
/// stack value (an `Unknown` with it would not round-trip as `Unknown`).
fn is_known_stack(level: u8, code: u8, len: usize) -> bool {
    matches!(
        (level, code, len),
        (1, 1, 1) | (4, 1, 2) | (4, 2, 0) | (4, 3, 1) | (4, 4, 2)
    )
}

fn stack_value() -> impl Strategy<Value = StackValue> {
    prop_oneof![
        any::<u8>().prop_map(StackValue::Tos),
        any::<u16>().prop_map(|payload_size| StackValue::TcpFastOpen { payload_size }),
        Just(StackValue::Mptcp),
        any::<u8>().prop_map(|s| StackValue::MptcpScheduler(MptcpScheduler(s))),
        any::<u16>().prop_map(StackValue::ListenBacklog),
        (0u8..64, any::<u8>(), bytes(12))
            .prop_filter("not a known code", |(l, c, d)| !is_known_stack(
                *l,
                *c,
                d.len()
            ))
            .prop_map(|(level, code, data)| StackValue::Unknown { level, code, data }),
    ]
}

fn option() -> impl Strategy<Value = Socks6Option> {
    prop_oneof![
        (0u8..4, stack_value()).prop_map(|(l, v)| StackOption::new(Leg(l), v).into()),
        (0u16..=8192, prop::collection::vec(any::<u8>(), 0..=20)).prop_map(|(n, m)| {
            AuthMethodOption {
                initial_data_len: n,
                methods: m.into_iter().map(Method).collect(),
            }
            .into()
        }),
        (any::<u8>(), bytes(252)).prop_map(|(m, d)| {
            AuthDataOption {
                method: Method(m),
                data: Password::new(d),
            }
            .into()
        }),
        any::<u32>().prop_map(|window_size| IdempotenceOption::TokenRequest { window_size }.into()),
        (any::<u32>(), any::<u32>())
            .prop_map(|(base, size)| IdempotenceOption::WindowAdvertisement { base, size }.into()),
        any::<u32>().prop_map(|token| IdempotenceOption::Expenditure { token }.into()),
        any::<u8>().prop_map(|c| IdempotenceOption::ExpenditureReply(ExpenditureCode(c)).into()),
        (4u8..=255, bytes(12))
            .prop_map(|(kind, data)| IdempotenceOption::Unknown { kind, data }.into()),
        (0xC0u16..=0xFF, bytes(253)).prop_map(|(kind, data)| Socks6Option::Vendor { kind, data }),
        (prop_oneof![Just(0u16), 5u16..0xC0], bytes(253))
            .prop_map(|(kind, data)| Socks6Option::Unknown { kind, data }),
    ]
}

fn options() -> impl Strategy<Value = Options> {
    prop::collection::vec(option(), 0..12).prop_map(Options)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::NOOP),
        Just(Command::CONNECT),
        Just(Command::BIND),
        Just(Command::UDP_ASSOCIATE),
        any::<u8>().prop_map(Command),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (command(), target(), options()).prop_map(|(command, target, options)| Request {
        command,
        target,
        options,
    })
}

/// Check the incremental-parse contract of a valid encoding at prefix `k`
/// and whole.
fn check_msg<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    k: usize,
    want: &T,
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, PeerError>,
) -> Result<(), TestCaseError> {
    let k = k % bytes.len();
    match parse(&bytes[..k]) {
        Ok(Parsed::Incomplete { needed }) => {
            prop_assert!(
                needed >= 1 && k + needed <= bytes.len(),
                "prefix {k}: {needed}"
            )
        }
        other => prop_assert!(false, "prefix {k}/{}: {other:?}", bytes.len()),
    }
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[6, 0, 1, 0xAA]);
    for b in [bytes, &longer[..]] {
        match parse(b) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert_eq!(consumed, bytes.len());
                prop_assert_eq!(&value, want);
            }
            other => prop_assert!(false, "whole: {other:?}"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_round_trips(req in request(), k in any::<usize>()) {
        let bytes = C.encode_request(&req).unwrap();
        check_msg(&bytes, k, &req, |b| C.parse_request(b, &wide()))?;
    }

    #[test]
    fn auth_reply_round_trips(
        outcome in prop_oneof![
            any::<u8>().prop_map(|m| AuthOutcome::Success(Method(m))),
            (0u8..0xFF).prop_map(|m| AuthOutcome::Continue(Method(m))),
            Just(AuthOutcome::Failure),
        ],
        options in options(),
        k in any::<usize>(),
    ) {
        let r = AuthReply { outcome, options };
        let bytes = C.encode_auth_reply(&r).unwrap();
        check_msg(&bytes, k, &r, |b| C.parse_auth_reply(b, &wide()))?;
    }

    #[test]
    fn operation_reply_round_trips(rep in any::<u8>(), bound in target(), options in options(), k in any::<usize>()) {
        let r = OperationReply { profile: C.profile(), rep: V6Code(rep), bound, options };
        let bytes = C.encode_operation_reply(&r).unwrap();
        check_msg(&bytes, k, &r, |b| C.parse_operation_reply(b, &wide()))?;
    }

    #[test]
    fn datagram_round_trips(id in any::<u32>(), t in target(), payload in bytes(64)) {
        let h = DatagramHeader { association: AssociationId(id as u64), target: t };
        let d = C.datagram(&h, &payload).unwrap();
        let (back, off) = C.parse_datagram(&d).map(|(h, r)| (h, r.start)).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(&d[off..], &payload[..]);
        for k in 0..off {
            prop_assert!(C.parse_datagram(&d[..k]).map(|(h, r)| (h, r.start)).is_err());
        }
    }

    /// Whatever parses re-encodes byte for byte (the -05 codec is
    /// canonical), and parsing never panics or breaks the contract.
    #[test]
    fn arbitrary_bytes_parse_canonically(tail in bytes(300), head in prop_oneof![
        Just(vec![6u8, 0]), Just(vec![]), bytes(3)
    ]) {
        let input = [head, tail].concat();
        match C.parse_request(&input, &wide()) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert!(consumed >= 1 && consumed <= input.len());
                prop_assert_eq!(C.encode_request(&value).unwrap(), &input[..consumed]);
            }
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1),
            Err(_) => {}
        }
        match C.parse_auth_reply(&input, &wide()) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert_eq!(C.encode_auth_reply(&value).unwrap(), &input[..consumed]);
            }
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1),
            Err(_) => {}
        }
        match C.parse_operation_reply(&input, &wide()) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert_eq!(C.encode_operation_reply(&value).unwrap(), &input[..consumed]);
            }
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1),
            Err(_) => {}
        }
        if let Ok((h, off)) = C.parse_datagram(&input).map(|(h, r)| (h, r.start)) {
            let mut out = Vec::new();
            C.encode_datagram_header(&h, &mut out).unwrap();
            prop_assert_eq!(&out[..], &input[..off]);
        }
    }

    /// Valid encodings with one byte changed: whatever still parses
    /// re-encodes byte for byte; the rest is an error or incomplete.
    #[test]
    fn mutated_messages_parse_canonically(
        req in request(),
        reply in (any::<u8>(), target(), options()),
        pos in any::<usize>(),
        val in any::<u8>(),
    ) {
        let mut bytes = C.encode_request(&req).unwrap();
        let i = pos % bytes.len();
        bytes[i] = val;
        match C.parse_request(&bytes, &wide()) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert_eq!(C.encode_request(&value).unwrap(), &bytes[..consumed]);
            }
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1),
            Err(_) => {}
        }
        let (rep, bound, options) = reply;
        let mut bytes = C
            .encode_operation_reply(&OperationReply { profile: C.profile(), rep: V6Code(rep), bound, options })
            .unwrap();
        let i = pos % bytes.len();
        bytes[i] = val;
        match C.parse_operation_reply(&bytes, &wide()) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert_eq!(C.encode_operation_reply(&value).unwrap(), &bytes[..consumed]);
            }
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed >= 1),
            Err(_) => {}
        }
    }

    /// The server machine gives the same outcome whatever the chunking.
    #[test]
    fn server_chunking_changes_nothing(
        req in request(),
        initial in bytes(40),
        trailing in bytes(20),
        cuts in prop::collection::vec(1usize..40, 1..8),
        require_auth in any::<bool>(),
    ) {
        let mut stream = C.encode_request(&req).unwrap_or_default();
        stream.extend_from_slice(&initial);
        stream.extend_from_slice(&trailing);
        prop_assume!(!stream.is_empty());
        let mut check = |u: &[u8], _: &Password| u.first() == Some(&b'a');
        let whole = drive(config(require_auth), &stream, None, &mut check);
        let chunked = drive(config(require_auth), &stream, Some(&cuts), &mut check);
        prop_assert_eq!(chunked, whole);
    }

    /// Arbitrary bytes behind a 06: chunking changes nothing either.
    #[test]
    fn server_chunking_of_arbitrary_bytes(
        tail in bytes(200),
        second in prop_oneof![Just(0u8), any::<u8>()],
        cuts in prop::collection::vec(1usize..40, 1..8),
    ) {
        let stream = [&[6u8, second][..], &tail].concat();
        let mut check = |_: &[u8], _: &Password| true;
        let whole = drive(config(true), &stream, None, &mut check);
        let chunked = drive(config(true), &stream, Some(&cuts), &mut check);
        prop_assert_eq!(chunked, whole);
    }

    /// Client and server agree on arbitrary CONNECTs.
    #[test]
    fn client_and_server_agree(
        t in target(),
        initial in bytes(100),
        use_creds in any::<bool>(),
        zero_rtt in any::<bool>(),
        tos in any::<u8>(),
        mtu in 1usize..50,
    ) {
        let mut req = ClientRequest::new(Command::CONNECT, t.clone());
        req.initial_data = initial.clone();
        req.zero_rtt_auth = zero_rtt;
        req.options = vec![StackOption::new(Leg::BOTH, StackValue::Tos(tos)).into()];
        if use_creds {
            req.username = Some(b"alice".to_vec());
            req.password = Some(Password::new("s3cret"));
        }
        let ex = exchange(req, &mut Proxy::new(use_creds), mtu, b"app");
        let r = ex.request.as_ref().unwrap();
        prop_assert_eq!(&r.target, &t);
        prop_assert_eq!(&r.initial_data, &initial);
        prop_assert_eq!(r.options.stack_for(Leg::CLIENT_PROXY).next(), Some(&StackValue::Tos(tos)));
        prop_assert_eq!(r.credentials.user().is_some(), use_creds);
        prop_assert_eq!(ex.client_sends, usize::from(use_creds && !zero_rtt));
        prop_assert_eq!(&ex.server_rest, b"app");
        prop_assert!(ex.final_reply().is_some_and(|r| r.code().is_success()));
    }
}

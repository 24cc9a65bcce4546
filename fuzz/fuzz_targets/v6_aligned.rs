//! The aligned SOCKS 6 codecs (draft -11 and the reference dialect) on
//! raw bytes: requests, options, authentication and operation replies, the
//! UDP messages; as one buffer and (requests) chunked. Then the server
//! machine on an `auto` listener over the same bytes, so that sniffing
//! `06` between -05 and -11 and every profile's refusals are reached.
//!
//! The -11 codecs are not canonical (a domain's padding is read counted or
//! not, and each profile writes its own form), so the round trip checked is
//! semantic: what parses re-encodes to bytes that parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::server::{HandshakeConfig, ServerHandshake};
use sixsocks_proto::testing::{drive, AtEnd, Delivery};
use sixsocks_proto::v6::{AssociationId, Codec, Socks6Limits, DRAFT11, REF207};
use sixsocks_proto::Parsed;
use sixsocks_proto_fuzz::{check_complete, check_parse, check_stream};

fn wide() -> Socks6Limits {
    Socks6Limits {
        max_options: 4096,
        max_options_bytes: 1 << 14,
        max_initial_data: 8192,
    }
}

/// `bytes` parsed completely to `value`: they re-encode to bytes that parse
/// to the same value, completely.
fn semantic<T: PartialEq + std::fmt::Debug>(
    value: &T,
    encoded: Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, sixsocks_proto::PeerError>,
) {
    match parse(&encoded) {
        Ok(Parsed::Complete {
            value: back,
            consumed,
        }) => {
            assert_eq!(consumed, encoded.len(), "re-encoding parses whole");
            assert_eq!(&back, value, "re-encoding parses the same");
        }
        other => panic!("re-encoding does not parse: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let small = Socks6Limits::default();
    let big = wide();
    for c in [&DRAFT11, &REF207] {
        // Mostly make the version byte the codec's own.
        let mut own = data.to_vec();
        if let Some(b) = own.first_mut() {
            if *b & 1 == 0 {
                *b = c.layout().version[0];
            }
        }
        let data = &own[..];
        for limits in [&small, &big] {
            let parse = |b: &[u8]| c.parse_request(b, limits);
            match parse(data) {
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(needed >= 1);
                    // The caps bound what the parser ever asks for.
                    assert!(
                        data.len() + needed
                            <= c.layout().max_request_header + limits.max_options_bytes,
                        "asks for {needed} more with {} buffered",
                        data.len()
                    );
                }
                r => {
                    if let Some((req, consumed)) = check_parse(data, r) {
                        check_complete(data, &req, consumed, parse);
                        assert!(req.options.len() <= limits.max_options);
                        // Re-encoding fails only for what -05-only values
                        // cannot be (none are decoded here) or caps.
                        let bytes = c.encode_request(&req).expect("a parsed request re-encodes");
                        semantic(&req, bytes, |b| c.parse_request(b, &big));
                    }
                }
            }
        }
        let parse = |b: &[u8]| c.parse_auth_reply(b, &big);
        if let Some((r, consumed)) = check_parse(data, parse(data)) {
            check_complete(data, &r, consumed, parse);
            semantic(&r, c.encode_auth_reply(&r).unwrap(), parse);
        }
        let parse = |b: &[u8]| c.parse_operation_reply(b, &big);
        if let Some((r, consumed)) = check_parse(data, parse(data)) {
            check_complete(data, &r, consumed, parse);
            semantic(&r, c.encode_operation_reply(&r).unwrap(), parse);
        }
        // UDP: the association id and confirmation on TCP, datagrams.
        if let Some((id, consumed)) = check_parse(data, c.parse_association_id(data)) {
            assert_eq!(c.encode_association_id(id).unwrap(), &data[..consumed]);
            let _ = c.parse_confirmation(&data[consumed..], id);
        }
        let _ = c.parse_confirmation(data, AssociationId(0));
        if let Ok((h, payload)) = c.parse_datagram(data) {
            assert!(payload.start <= payload.end && payload.end <= data.len());
            let d = c.datagram(&h, &data[payload.clone()]).unwrap();
            let (back, p2) = c.parse_datagram(&d).unwrap();
            assert_eq!(back, h);
            assert_eq!(&d[p2], &data[payload]);
        }
        // A stream of requests, chunked.
        let (cuts, rest) = data.split_at(data.len().min(4));
        check_stream(rest, cuts, |b| c.parse_request(b, &small));
    }

    // The server machine on an `auto` listener, fed in the chunks the
    // first bytes choose: it never panics, never exceeds its cap, and
    // ends, stalls or fails by the calling convention.
    let (cuts, rest) = data.split_at(data.len().min(3));
    let sizes: Vec<usize> = cuts.iter().map(|&c| usize::from(c % 17) + 1).collect();
    for require_auth in [false, true] {
        let mut hs = ServerHandshake::new(HandshakeConfig {
            require_auth,
            lenient_auth: false,
        })
        .with_socks6(small.clone());
        let delivery = if sizes.is_empty() {
            Delivery::Exact
        } else {
            Delivery::Pattern(&sizes)
        };
        drive(&mut hs, rest, delivery, AtEnd::Close, &mut |hs, v| {
            hs.verdict(v.username == b"u" && v.password.expose() == b"p")
        });
    }
});

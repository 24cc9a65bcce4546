//! SOCKS 6 (draft -05) parsers on raw bytes: request (with options), the
//! options list alone, authentication and operation replies, the datagram
//! header; as one buffer and (requests) chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::v6::draft05::{self, Draft05};
use sixsocks_proto::v6::{Codec, Socks6Limits};
use sixsocks_proto::Parsed;
use sixsocks_proto_fuzz::{check_complete, check_parse, check_stream};

fn wide() -> Socks6Limits {
    Socks6Limits {
        max_options: 255,
        max_options_bytes: 255 * 255,
        max_initial_data: 8192,
    }
}

fuzz_target!(|data: &[u8]| {
    let c = Draft05;
    let small = Socks6Limits::default();
    let big = wide();

    // Requests, under the default caps and under caps wide enough for any
    // encodable request.
    for limits in [&small, &big] {
        let parse = |b: &[u8]| c.parse_request(b, limits);
        match parse(data) {
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed >= 1);
                // The caps bound what the parser ever asks for.
                assert!(
                    data.len() + needed <= c.layout().max_request_header + limits.max_options_bytes,
                    "asks for {needed} more with {} buffered",
                    data.len()
                );
            }
            r => {
                if let Some((req, consumed)) = check_parse(data, r) {
                    check_complete(data, &req, consumed, parse);
                    assert_eq!(
                        c.encode_request(&req).expect("a parsed request re-encodes"),
                        &data[..consumed],
                        "-05 encoding is canonical"
                    );
                    assert!(req.options.len() <= limits.max_options);
                    // Whatever the caps accept, wider caps accept the same way.
                    if limits == &small {
                        let wide = c.parse_request(data, &big);
                        assert_eq!(
                            wide,
                            Ok(Parsed::Complete {
                                value: req,
                                consumed
                            })
                        );
                    }
                }
            }
        }
    }

    // Options alone: NOPTS from the first byte (zero options take zero
    // bytes, which the shared checks do not expect of a message).
    if let Some((&n, rest)) = data.split_first().filter(|(&n, _)| n > 0) {
        let parse = |b: &[u8]| draft05::parse_options(b, n as usize, &big);
        if let Some((opts, consumed)) = check_parse(rest, parse(rest)) {
            check_complete(rest, &opts, consumed, parse);
            let mut out = Vec::new();
            for o in &opts {
                draft05::encode_option(o, &mut out).expect("a parsed option re-encodes");
            }
            assert_eq!(out, &rest[..consumed]);
            assert_eq!(
                draft05::parse_options_area(&rest[..consumed], n as usize, &big),
                Ok(opts)
            );
        }
    }

    // Replies.
    let parse = |b: &[u8]| c.parse_auth_reply(b, &big);
    if let Some((r, consumed)) = check_parse(data, parse(data)) {
        check_complete(data, &r, consumed, parse);
        assert_eq!(c.encode_auth_reply(&r).unwrap(), &data[..consumed]);
    }
    let parse = |b: &[u8]| c.parse_operation_reply(b, &big);
    if let Some((r, consumed)) = check_parse(data, parse(data)) {
        check_complete(data, &r, consumed, parse);
        assert_eq!(c.encode_operation_reply(&r).unwrap(), &data[..consumed]);
    }

    // Datagram header (whole datagrams: never incomplete).
    if let Ok((h, off)) = c.parse_datagram(data).map(|(h, r)| (h, r.start)) {
        assert!(off <= data.len());
        let mut out = Vec::new();
        c.encode_datagram_header(&h, &mut out).unwrap();
        assert_eq!(out, &data[..off]);
    }

    // A stream of requests, chunked.
    let (cuts, rest) = data.split_at(data.len().min(4));
    check_stream(rest, cuts, |b| c.parse_request(b, &small));
});

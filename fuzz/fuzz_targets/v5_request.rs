//! SOCKS5 request and address parsers, as one buffer and chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::{v5, TargetAddr};
use sixsocks_proto_fuzz::{check_complete, check_parse, check_stream};

fuzz_target!(|data: &[u8]| {
    if let Some((req, consumed)) = check_parse(data, v5::Request::parse(data)) {
        check_complete(data, &req, consumed, v5::Request::parse);
        assert_eq!(consumed, 3 + req.target.v5_len());
        let bytes = req.encode().expect("a parsed request re-encodes");
        // Canonical except RSV, which is ignored on input and 00 on output.
        assert_eq!(bytes[..2], data[..2]);
        assert_eq!(bytes[3..], data[3..consumed]);
    }
    if let Some((t, consumed)) = check_parse(data, TargetAddr::parse_v5(data)) {
        check_complete(data, &t, consumed, TargetAddr::parse_v5);
        let mut out = Vec::new();
        t.encode_v5(&mut out).expect("a parsed address re-encodes");
        assert_eq!(out, &data[..consumed]);
    }
    let (cuts, rest) = data.split_at(data.len().min(4));
    check_stream(rest, cuts, v5::Request::parse);
});

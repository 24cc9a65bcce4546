//! SOCKS4/4a request and SOCKS4 reply parsers on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::v4;
use sixsocks_proto_fuzz::{check_complete, check_parse};

fuzz_target!(|data: &[u8]| {
    if let Some((req, consumed)) = check_parse(data, v4::Request::parse(data)) {
        check_complete(data, &req, consumed, v4::Request::parse);
        // Bounded: 8-byte header, USERID and hostname each at most 255 + NUL.
        assert!(consumed <= 8 + 256 + 256);
        // What was read can be written back, and reads back the same.
        let bytes = req.encode().expect("a parsed request re-encodes");
        assert_eq!(
            v4::Request::parse(&bytes).ok().and_then(|p| p.complete()),
            Some((req, bytes.len()))
        );
    }
    if let Some((reply, consumed)) = check_parse(data, v4::Reply::parse(data)) {
        assert_eq!(consumed, 8);
        check_complete(data, &reply, consumed, v4::Reply::parse);
    }
});

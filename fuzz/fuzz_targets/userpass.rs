//! RFC 1929 request (strict and lenient) and reply parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::userpass;
use sixsocks_proto_fuzz::{check_complete, check_parse, check_stream};

fuzz_target!(|data: &[u8]| {
    let strict = userpass::Request::parse(data, false);
    let lenient = userpass::Request::parse(data, true);
    if let Some((req, consumed)) = check_parse(data, lenient) {
        check_complete(data, &req, consumed, |b| userpass::Request::parse(b, true));
        assert!(consumed <= 513);
        assert_eq!(req.encode().expect("re-encodes"), &data[..consumed]);
        // Strict parsing agrees, except that it refuses empty fields.
        let empty = req.username.is_empty() || req.password.is_empty();
        match check_parse(data, strict) {
            Some((s, c)) => {
                assert!(!empty);
                assert_eq!((s, c), (req, consumed));
            }
            None => assert!(empty),
        }
    } else {
        assert!(check_parse(data, strict).is_none());
    }
    if let Some((reply, consumed)) = check_parse(data, userpass::Reply::parse(data)) {
        check_complete(data, &reply, consumed, userpass::Reply::parse);
        assert_eq!(reply.encode(), data[..2]);
    }
    let (cuts, rest) = data.split_at(data.len().min(4));
    check_stream(rest, cuts, |b| userpass::Request::parse(b, true));
});

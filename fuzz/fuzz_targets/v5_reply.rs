//! SOCKS5 reply parser, as one buffer and chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::{v5, ReplyCode};
use sixsocks_proto_fuzz::{check_complete, check_parse, check_stream};

fuzz_target!(|data: &[u8]| {
    if let Some((reply, consumed)) = check_parse(data, v5::Reply::parse(data)) {
        check_complete(data, &reply, consumed, v5::Reply::parse);
        assert_eq!(reply.code(), ReplyCode::from_v5(reply.rep));
        assert_eq!(reply.code().to_v5(true), reply.rep);
        let bytes = reply.encode();
        assert_eq!(bytes[..2], data[..2]);
        assert_eq!(bytes[3..], data[3..consumed]);
    }
    let (cuts, rest) = data.split_at(data.len().min(4));
    check_stream(rest, cuts, v5::Reply::parse);
});

//! SOCKS5 greeting and method-choice parsers, as one buffer and chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixsocks_proto::v5::{Greeting, MethodChoice};
use sixsocks_proto_fuzz::{check_complete, check_parse, check_stream};

fuzz_target!(|data: &[u8]| {
    if let Some((g, consumed)) = check_parse(data, Greeting::parse(data)) {
        check_complete(data, &g, consumed, Greeting::parse);
        assert_eq!(consumed, 2 + g.methods.len());
        // The greeting format is canonical: re-encoding gives the same bytes.
        assert_eq!(g.encode().expect("re-encodes"), &data[..consumed]);
    }
    if let Some((c, consumed)) = check_parse(data, MethodChoice::parse(data)) {
        check_complete(data, &c, consumed, MethodChoice::parse);
        assert_eq!(c.encode(), &data[..2]);
    }
    // Use the first bytes as chunk sizes for the rest.
    let (cuts, rest) = data.split_at(data.len().min(4));
    check_stream(rest, cuts, Greeting::parse);
});

//! Invariant checks shared by the fuzz targets of `sixsocks-proto`.
//!
//! Every check panics (and so makes libFuzzer report a crash) when an
//! invariant of the incremental parsing convention does not hold.

use std::fmt::Debug;

use sixsocks_proto::{Parsed, PeerError};

/// The invariants of any parse result on `input`: `needed >= 1`,
/// `1 <= consumed <= input.len()`. Returns the value if complete.
pub fn check_parse<T>(input: &[u8], r: Result<Parsed<T>, PeerError>) -> Option<(T, usize)> {
    match r {
        Ok(Parsed::Incomplete { needed }) => {
            assert!(needed >= 1, "Incomplete with needed = 0");
            None
        }
        Ok(Parsed::Complete { value, consumed }) => {
            assert!(
                consumed >= 1 && consumed <= input.len(),
                "consumed {consumed} of {} bytes",
                input.len()
            );
            Some((value, consumed))
        }
        Err(_) => None,
    }
}

/// For a message that parsed completely as `value` from `input[..consumed]`:
/// the message alone parses to the same value (the bytes after it do not
/// matter), and strict prefixes are `Incomplete` with a `needed` that does
/// not reach past the message (a few prefixes, to stay fast).
pub fn check_complete<T, F>(input: &[u8], value: &T, consumed: usize, parse: F)
where
    T: PartialEq + Debug,
    F: Fn(&[u8]) -> Result<Parsed<T>, PeerError>,
{
    let msg = &input[..consumed];
    match parse(msg) {
        Ok(Parsed::Complete {
            value: v,
            consumed: c,
        }) => {
            assert_eq!(c, consumed, "consumed depends on trailing bytes");
            assert_eq!(&v, value, "value depends on trailing bytes");
        }
        other => panic!("message alone does not parse: {other:?}"),
    }
    let ks = [
        0,
        1,
        consumed / 2,
        consumed - 1,
        input[0] as usize % consumed,
    ];
    for k in ks {
        if k >= consumed {
            continue;
        }
        match parse(&msg[..k]) {
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed >= 1);
                assert!(
                    k + needed <= consumed,
                    "prefix {k}/{consumed}: needed {needed} overshoots"
                );
            }
            other => panic!("prefix {k}/{consumed} of a complete message: {other:?}"),
        }
    }
}

/// Parse `input` as a stream cut into `cuts` and as one buffer, and check
/// that both give the same sequence of results.
pub fn check_stream<T, F>(input: &[u8], cuts: &[u8], parse: F)
where
    T: PartialEq + Debug,
    F: Fn(&[u8]) -> Result<Parsed<T>, PeerError>,
{
    let whole = run_stream(input, &[usize::MAX], &parse);
    let sizes: Vec<usize> = cuts.iter().map(|&c| usize::from(c) + 1).collect();
    if !sizes.is_empty() {
        assert_eq!(
            run_stream(input, &sizes, &parse),
            whole,
            "chunking changed the result"
        );
    }
}

/// Results of parsing messages back to back: values, then how it ended.
fn run_stream<T, F>(input: &[u8], sizes: &[usize], parse: &F) -> (Vec<T>, String)
where
    T: Debug,
    F: Fn(&[u8]) -> Result<Parsed<T>, PeerError>,
{
    let mut buf = Vec::new();
    let mut rest = input;
    let mut values = Vec::new();
    let mut i = 0;
    loop {
        match check_parse(&buf, parse(&buf)) {
            Some((v, consumed)) => {
                values.push(v);
                buf.drain(..consumed);
            }
            None => {
                if let Err(e) = parse(&buf) {
                    return (values, format!("error {e:?}"));
                }
                if rest.is_empty() {
                    return (values, format!("incomplete with {} bytes", buf.len()));
                }
                let n = sizes[i % sizes.len()].min(rest.len());
                i += 1;
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
}

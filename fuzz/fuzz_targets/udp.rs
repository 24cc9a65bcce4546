//! SOCKS5 UDP datagram header parser, fragmenting and the reassembler
//! driven by a list of (datagram, clock step) events.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::udp::{
    fragment, Fragment, Reassembler, ReassemblyLimits, UdpHeader, STANDALONE,
};

#[derive(Debug, Arbitrary)]
struct Input {
    max_size: u16,
    max_queues: u8,
    timeout_ms: u16,
    /// Each datagram with how far the clock moves before it arrives.
    events: Vec<(Vec<u8>, u16)>,
    /// A payload to fragment and reassemble.
    payload: Vec<u8>,
    piece: u8,
}

fuzz_target!(|input: Input| {
    let limits = ReassemblyLimits {
        timeout: Duration::from_millis(u64::from(input.timeout_ms)),
        max_size: usize::from(input.max_size),
        max_queues: usize::from(input.max_queues).max(1),
    };
    let mut r = Reassembler::new(limits.clone());
    let mut now = Instant::now();
    for (dgram, step_ms) in &input.events {
        now += Duration::from_millis(u64::from(*step_ms));
        let Ok((header, off)) = UdpHeader::parse(dgram) else {
            continue;
        };
        assert!(off <= dgram.len());
        // The header format is canonical: it re-encodes byte for byte.
        let mut out = Vec::new();
        header.encode(&mut out).expect("a parsed header re-encodes");
        assert_eq!(out, &dgram[..off]);
        let payload = &dgram[off..];
        let standalone = header.frag == STANDALONE;
        match r.push(header, payload, now) {
            Fragment::Complete(_, data) => {
                if standalone {
                    assert_eq!(data, payload);
                } else {
                    assert!(data.len() <= limits.max_size, "reassembled past the cap");
                    assert!(data.ends_with(payload));
                }
            }
            Fragment::Queued => assert!(!standalone),
            Fragment::Dropped(_) => assert!(!standalone),
        }
        assert!(r.pending(now) <= limits.max_queues, "too many queues");
        assert!(
            r.held_bytes() <= limits.max_size * limits.max_queues,
            "held bytes past the caps"
        );
    }
    // Fragmenting then reassembling gives the payload back.
    let target = sixsocks_proto::TargetAddr::domain("example.com", 53);
    let fits = input.payload.len() <= ReassemblyLimits::default().max_size;
    if let (true, Ok(frags)) = (
        fits,
        fragment(&target, &input.payload, usize::from(input.piece)),
    ) {
        assert!(!frags.is_empty() && frags.len() <= 127);
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let t = Instant::now();
        let mut result = None;
        for (i, f) in frags.iter().enumerate() {
            let (h, off) = UdpHeader::parse(f).expect("own fragment parses");
            match r.push(h, &f[off..], t) {
                Fragment::Complete(to, data) => {
                    assert_eq!(i + 1, frags.len(), "completed early");
                    assert_eq!(to, target);
                    result = Some(data);
                }
                Fragment::Queued => assert!(i + 1 < frags.len()),
                Fragment::Dropped(reason) => panic!("own fragment dropped: {reason:?}"),
            }
        }
        assert_eq!(result.as_deref(), Some(&input.payload[..]));
    }
});

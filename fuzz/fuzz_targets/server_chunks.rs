//! The server handshake state machine driven by a list of chunks, as a
//! reader would deliver them, through the shared driver
//! (`sixsocks_proto::testing`: calling convention, cap, stickiness). Checks
//! "no request after a rejected password", "no SOCKS5 request without
//! authentication when it is required", and that the chunking does not
//! change the outcome.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::server::{Accepted, HandshakeConfig, ServerHandshake};
use sixsocks_proto::testing::{drive_chunks, AtEnd, End, Trace};
use sixsocks_proto::{Credentials, PeerError, Version};

#[derive(Debug, Arbitrary)]
struct Input {
    require_auth: bool,
    lenient_auth: bool,
    /// The answer to every `Verify`.
    accept: bool,
    chunks: Vec<Vec<u8>>,
}

/// The shared driver checks the calling convention, the cap and
/// stickiness; this adds what is particular to the server.
fn drive(
    config: &HandshakeConfig,
    accept: bool,
    chunks: &[&[u8]],
) -> Trace<Accepted, sixsocks_proto::server::Verify> {
    let mut hs = ServerHandshake::new(config.clone());
    let mut verdicts = 0;
    let trace = drive_chunks(&mut hs, chunks, AtEnd::Wait, &mut |hs, _| {
        assert_eq!(hs.version(), Some(Version::V5));
        verdicts += 1;
        hs.verdict(accept);
    });
    match &trace.end {
        // CVE-2023-43644: nothing pipelined behind a rejected password may
        // ever come out as a request.
        _ if verdicts > 0 && !accept => assert_eq!(
            trace.end,
            End::Failed {
                reply: vec![1, 1],
                error: PeerError::AuthFailed.into()
            },
            "after a rejected password"
        ),
        End::Finished {
            value: Accepted::Socks(request),
            ..
        } => {
            if request.version == Version::V5 && config.require_auth {
                assert!(verdicts > 0, "SOCKS5 request without authentication");
                assert!(matches!(request.credentials, Credentials::UserPass { .. }));
            }
        }
        End::Finished { value, .. } => panic!("SOCKS 6 is off: {value:?}"),
        _ => {}
    }
    trace
}

fuzz_target!(|input: Input| {
    let config = HandshakeConfig {
        require_auth: input.require_auth,
        lenient_auth: input.lenient_auth,
    };
    let chunks: Vec<&[u8]> = input.chunks.iter().map(Vec::as_slice).collect();
    let chunked = drive(&config, input.accept, &chunks);
    let whole: Vec<u8> = input.chunks.concat();
    let one = drive(&config, input.accept, &[&whole]);
    assert_eq!(chunked, one, "chunking changed the outcome");
});

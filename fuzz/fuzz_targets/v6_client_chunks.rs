//! The SOCKS 6 client machine fed arbitrary proxy bytes in chunks, through
//! the shared driver (calling convention, cap, stickiness). Checks the order
//! of events and that the chunking does not change the outcome.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::testing::{drive_chunks, AtEnd, End};
use sixsocks_proto::v6::client::{ClientRequest, Event, Final, Socks6Client};
use sixsocks_proto::v6::{Leg, StackOption, StackValue};
use sixsocks_proto::{Command, Password, TargetAddr};

#[derive(Debug, Arbitrary)]
struct Input {
    command: u8,
    creds: bool,
    zero_rtt: bool,
    backlog: bool,
    initial: u8,
    chunks: Vec<Vec<u8>>,
    /// Close the input when the chunks run out (the proxy closed).
    close: bool,
}

/// The shared driver checks the calling convention, the cap and
/// stickiness; this checks the order of events and returns a log.
fn drive(req: &ClientRequest, chunks: &[&[u8]], at_end: AtEnd) -> Vec<String> {
    let (mut c, first) = Socks6Client::new(req.clone()).expect("a valid request");
    assert!(first.len() >= 11);
    let mut authenticated = false;
    let trace = drive_chunks(&mut c, chunks, at_end, &mut |_, e| match e {
        Event::Authenticated(_) => {
            assert!(!authenticated);
            authenticated = true;
        }
        Event::Bound(_) => assert!(authenticated && req.command == Command::BIND),
        Event::UdpAssociated { .. } => {
            assert!(authenticated && req.command == Command::UDP_ASSOCIATE)
        }
    });
    for bytes in &trace.sent {
        assert_eq!(bytes[0], 1, "only the RFC 1929 request is ever sent");
    }
    if let End::Finished { value, .. } = &trace.end {
        assert!(authenticated, "an end without authentication");
        if *value == Final::UdpConfirmed {
            assert_eq!(req.command, Command::UDP_ASSOCIATE);
        }
    }
    let mut log: Vec<String> = trace.sent.iter().map(|b| format!("send {b:?}")).collect();
    log.extend(trace.events.iter().map(|e| format!("{e:?}")));
    log.push(format!("{:?}", trace.end));
    log
}

fuzz_target!(|input: Input| {
    let command = Command(input.command % 5);
    let mut req = ClientRequest::new(command, TargetAddr::domain("example.com", 80));
    if input.creds {
        req.username = Some(b"alice".to_vec());
        req.password = Some(Password::new("s3cret"));
    }
    req.zero_rtt_auth = input.zero_rtt;
    if command == Command::CONNECT {
        req.initial_data = vec![0x55; input.initial as usize];
    }
    if input.backlog {
        req.options =
            vec![StackOption::new(Leg::PROXY_REMOTE, StackValue::ListenBacklog(4)).into()];
    }
    let chunks: Vec<&[u8]> = input.chunks.iter().map(Vec::as_slice).collect();
    let at_end = if input.close {
        AtEnd::Close
    } else {
        AtEnd::Wait
    };
    let chunked = drive(&req, &chunks, at_end);
    let whole = input.chunks.concat();
    assert_eq!(
        drive(&req, &[&whole], at_end),
        chunked,
        "chunking changed the outcome"
    );
});

//! The SOCKS 6 client machine fed arbitrary proxy bytes in chunks. Checks
//! the calling convention, stickiness, the order of events, and that the
//! chunking does not change the outcome.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sixsocks_proto::v6::client::{ClientRequest, ClientStep, Socks6Client};
use sixsocks_proto::v6::{Leg, StackOption, StackValue};
use sixsocks_proto::{Command, Password, ProtoError, TargetAddr};

#[derive(Debug, Arbitrary)]
struct Input {
    command: u8,
    creds: bool,
    zero_rtt: bool,
    backlog: bool,
    initial: u8,
    chunks: Vec<Vec<u8>>,
}

fn drive(req: &ClientRequest, chunks: &[&[u8]]) -> Vec<String> {
    let (mut c, first) = Socks6Client::new(req.clone()).expect("a valid request");
    assert!(first.len() >= 11);
    let mut buf: Vec<u8> = Vec::new();
    let mut next = 0;
    let mut log = Vec::new();
    let mut authenticated = false;
    for _ in 0..10_000 {
        match c.step(&buf) {
            ClientStep::NeedMore(n) => {
                assert!(n >= 1);
                if next == chunks.len() {
                    log.push(format!("eof {:?}", c.on_eof(&buf)));
                    assert_eq!(c.step(&buf), ClientStep::Fail(ProtoError::Finished));
                    return log;
                }
                buf.extend_from_slice(chunks[next]);
                next += 1;
            }
            ClientStep::Send { consumed, bytes } => {
                assert!(consumed <= buf.len() && !authenticated);
                assert_eq!(bytes[0], 1, "only the RFC 1929 request is ever sent");
                buf.drain(..consumed);
                log.push(format!("send {bytes:?}"));
            }
            ClientStep::Authenticated { consumed, reply } => {
                assert!(consumed <= buf.len() && !authenticated);
                authenticated = true;
                buf.drain(..consumed);
                log.push(format!("auth {reply:?}"));
            }
            ClientStep::Bound { consumed, reply } => {
                assert!(authenticated && req.command == Command::BIND);
                buf.drain(..consumed);
                log.push(format!("bound {reply:?}"));
            }
            ClientStep::UdpAssociated {
                consumed,
                reply,
                id,
            } => {
                assert!(authenticated && req.command == Command::UDP_ASSOCIATE);
                assert!(id.0 <= u32::MAX as u64);
                buf.drain(..consumed);
                log.push(format!("udp {reply:?} {id:?}"));
            }
            ClientStep::UdpConfirmed { consumed } => {
                assert!(consumed <= buf.len());
                buf.drain(..consumed);
                log.push("confirmed".into());
                assert!(matches!(
                    c.step(&buf),
                    ClientStep::Fail(ProtoError::Finished)
                ));
                return log;
            }
            ClientStep::Done { consumed, reply } => {
                assert!(authenticated && consumed <= buf.len());
                buf.drain(..consumed);
                for c in &chunks[next..] {
                    buf.extend_from_slice(c);
                }
                log.push(format!("done {reply:?} rest {}", buf.len()));
                assert!(matches!(
                    c.step(&buf),
                    ClientStep::Fail(ProtoError::Finished)
                ));
                return log;
            }
            ClientStep::Fail(e) => {
                log.push(format!("fail {e:?}"));
                assert!(matches!(
                    c.step(&buf),
                    ClientStep::Fail(ProtoError::Finished)
                ));
                return log;
            }
        }
    }
    panic!("client did not terminate");
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
    let chunked = drive(&req, &chunks);
    let whole = input.chunks.concat();
    assert_eq!(
        drive(&req, &[&whole]),
        chunked,
        "chunking changed the outcome"
    );
});

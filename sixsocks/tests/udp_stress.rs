//! 10,000 UDP datagrams through the relay to a local echo server, paced by
//! a window of 64 outstanding: on loopback at that rate nothing may be lost,
//! duplicated or corrupted. The rate achieved is printed (never asserted).

mod common;
mod udpcommon;

use std::time::{Duration, Instant};

use common::*;
use udpcommon::*;

const TOTAL: usize = 10_000;
const WINDOW: usize = 64;
const PAYLOAD: usize = 128;
/// Bound on the whole run (it takes well under a second normally).
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Nothing at all arriving for this long means the outstanding ones are lost.
const STALL: Duration = Duration::from_secs(3);

/// Datagram `seq`: its number, then bytes derived from it.
fn payload(seq: u32) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((0..PAYLOAD - 4).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    p
}

#[test]
fn ten_thousand_datagrams_without_loss() {
    let echo = echo_server();
    let uecho = udp_echo();
    let server = Server::start(&[]);
    let baseline = server.fd_baseline(echo.addr, None);

    let client = udp_client();
    client.set_read_timeout(Some(STALL)).unwrap();
    let (ctl, relay) = associate(server.addr, client.local_addr().unwrap());
    let header = dgram(0, &v5_addr(uecho.addr), &[]);

    let mut seen = vec![false; TOTAL];
    let (mut sent, mut got, mut duplicates, mut corrupt) = (0usize, 0usize, 0usize, 0usize);
    let mut buf = vec![0u8; 70_000];
    let start = Instant::now();
    let mut stalled = false;
    while got < TOTAL && start.elapsed() < RUN_LIMIT {
        while sent < TOTAL && sent - got < WINDOW {
            let mut d = header.clone();
            d.extend_from_slice(&payload(sent as u32));
            client.send_to(&d, relay).unwrap();
            sent += 1;
        }
        let n = match client.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, relay, "a datagram not from the relay");
                n
            }
            Err(_) => {
                stalled = true;
                break;
            }
        };
        let r = parse_relayed(&buf[..n]);
        assert_eq!((r.frag, r.from), (0, uecho.addr), "header of an answer");
        let seq = u32::from_be_bytes(r.data[..4].try_into().unwrap()) as usize;
        if seq >= TOTAL || r.data != payload(seq as u32) {
            corrupt += 1;
        } else if seen[seq] {
            duplicates += 1;
        } else {
            seen[seq] = true;
        }
        got += 1;
    }
    let elapsed = start.elapsed();
    let lost = seen.iter().filter(|s| !**s).count();
    let rate = got as f64 / elapsed.as_secs_f64();
    let msg = format!(
        "UDP relay: {TOTAL} datagrams of {PAYLOAD} bytes, window {WINDOW}: {got} came back \
         in {:.3} s = {rate:.0} round trips/s ({:.2} Mbit/s each way); lost {lost}, \
         duplicated {duplicates}, corrupt {corrupt}",
        elapsed.as_secs_f64(),
        rate * (PAYLOAD * 8) as f64 / 1e6,
    );
    eprintln!("{msg}");
    assert!(!stalled || lost == 0, "stalled for {STALL:?}: {msg}");
    assert_eq!((lost, duplicates, corrupt), (0, 0, 0), "{msg}");
    assert_eq!(
        uecho.count(),
        TOTAL,
        "the echo server got each datagram once"
    );

    drop(ctl);
    let ends = server.wait_session_ends(2);
    let udp_end = server
        .logs
        .lines()
        .into_iter()
        .find(|l| l.contains("session end") && l.contains("command=udp-associate"))
        .unwrap_or_else(|| panic!("no udp-associate session end: {ends:?}"));
    assert!(
        udp_end.contains(&format!(
            "datagrams to remote {TOTAL}, to client {TOTAL}, dropped 0"
        )),
        "the session's counters: {udp_end}"
    );
    server.assert_healthy(echo.addr, baseline, "10,000 datagrams");
}

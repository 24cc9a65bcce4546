//! Bugs seen in other SOCKS implementations, at the sans-IO level: each
//! test names the bug and the project it was seen in, and fails if the
//! protocol crate had it. (The coverage table of every bug on the list,
//! with the tests that already existed, is at the top of
//! `sixsocks/tests/known_bugs.rs`.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sixsocks_proto::udp::UdpHeader;
use sixsocks_proto::{
    v4, v5, Command, Credentials, Parsed, ReplyCode, Request, TargetAddr, Version,
};

/// Address fields of every kind, as `(ATYP | ADDR | PORT)` bytes, with the
/// address they stand for.
fn address_fields() -> Vec<(Vec<u8>, TargetAddr)> {
    let mut v6 = vec![0x04];
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&[0x1f, 0x90]);
    let mut long = vec![0x03, 255];
    long.extend(std::iter::repeat_n(b'a', 255));
    long.extend_from_slice(&[0, 53]);
    vec![
        (
            vec![0x01, 192, 0, 2, 7, 0, 80],
            TargetAddr::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 80),
        ),
        (v6, TargetAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080)),
        (
            [&[0x03, 11][..], b"example.com", &[1, 187]].concat(),
            TargetAddr::domain("example.com", 443),
        ),
        (long, TargetAddr::domain("a".repeat(255), 53)),
    ]
}

/// shadowsocks-rust: a panic (slice index out of range) on a short buffer
/// while parsing an address. Every truncation of every address form, in
/// the SOCKS5 UDP header (where a datagram is whole, so a short one can
/// only be an error) and in TCP messages (where it can only be "need
/// more"), must come back as a value, never a panic; and a complete one
/// must parse to exactly what was sent.
#[test]
fn short_buffers_never_panic_the_address_parsers() {
    for (field, target) in address_fields() {
        // The UDP header: `00 00 FRAG | address | data`.
        let dgram = [&[0u8, 0, 0][..], &field, b"payload"].concat();
        let header_len = 3 + field.len();
        for k in 0..header_len {
            assert!(
                UdpHeader::parse(&dgram[..k]).is_err(),
                "a UDP header cut at {k} of {header_len} bytes parsed"
            );
        }
        let (h, off) = UdpHeader::parse(&dgram).expect("whole datagram");
        assert_eq!((h.target, off), (target.clone(), header_len));

        // The same address in a SOCKS5 request and reply, every prefix.
        for msg in [
            [&[5u8, 1, 0][..], &field].concat(),
            [&[5u8, 0, 0][..], &field].concat(),
        ] {
            for k in 0..msg.len() {
                let r = v5::Request::parse(&msg[..k]);
                assert!(
                    matches!(r, Ok(Parsed::Incomplete { needed }) if needed >= 1 && k + needed <= msg.len()),
                    "v5 request prefix {k}/{}: {r:?}",
                    msg.len()
                );
                let r = v5::Reply::parse(&msg[..k]);
                assert!(
                    matches!(r, Ok(Parsed::Incomplete { needed }) if needed >= 1 && k + needed <= msg.len()),
                    "v5 reply prefix {k}/{}: {r:?}",
                    msg.len()
                );
            }
        }
    }
    // A domain length byte promising more than the datagram holds (the
    // shape of the shadowsocks-rust crash): an error for every length.
    for len in 0..=255u8 {
        for have in 0..(len as usize + 2) {
            // The name cut short, or the port missing or cut.
            let mut d = vec![0, 0, 0, 0x03, len];
            d.extend(std::iter::repeat_n(b'x', have));
            assert!(UdpHeader::parse(&d).is_err(), "len {len}, {have} bytes");
        }
    }
    // Every ATYP value followed by every short tail.
    for atyp in 0..=255u8 {
        for tail in 0..20usize {
            let mut d = vec![0, 0, 0, atyp];
            d.extend(std::iter::repeat_n(0x07u8, tail));
            let _ = UdpHeader::parse(&d);
            let _ = v5::Request::parse(&[&[5u8, 1, 0][..], &d[3..]].concat());
            let _ = TargetAddr::parse_v5(&d[3..]);
        }
    }
}

/// Every code sixsocks can send, with the wire value the one table gives.
fn all_codes() -> Vec<ReplyCode> {
    let mut v = vec![
        ReplyCode::Succeeded,
        ReplyCode::GeneralFailure,
        ReplyCode::NotAllowed,
        ReplyCode::NetworkUnreachable,
        ReplyCode::HostUnreachable,
        ReplyCode::ConnectionRefused,
        ReplyCode::TtlExpired,
        ReplyCode::CommandNotSupported,
        ReplyCode::AddressTypeNotSupported,
    ];
    v.extend((0xF0..=0xF7).map(ReplyCode::TorExtended));
    v
}

/// The reply built by hand from the RFCs, byte by byte.
fn expected_reply(
    version: Version,
    code: ReplyCode,
    bound: Option<&TargetAddr>,
    ext: bool,
) -> Vec<u8> {
    let bound = bound.cloned();
    match version {
        Version::V4 | Version::V4a => {
            let cd = if code == ReplyCode::Succeeded {
                0x5A
            } else {
                0x5B
            };
            let (ip, port) = match bound {
                Some(TargetAddr {
                    host: sixsocks_proto::Host::Ip(IpAddr::V4(ip)),
                    port,
                }) => (ip.octets(), port),
                Some(TargetAddr {
                    host: sixsocks_proto::Host::Ip(IpAddr::V6(ip)),
                    port,
                }) if ip.to_ipv4_mapped().is_some() => {
                    (ip.to_ipv4_mapped().unwrap().octets(), port)
                }
                _ => ([0; 4], 0),
            };
            let p = port.to_be_bytes();
            vec![0, cd, p[0], p[1], ip[0], ip[1], ip[2], ip[3]]
        }
        Version::V5 => {
            let rep = code.to_v5(ext).0;
            let mut out = vec![5, rep, 0];
            let (addr, port) = match bound {
                None => (vec![1, 0, 0, 0, 0], 0),
                Some(t) => {
                    let a = match &t.host {
                        sixsocks_proto::Host::Ip(IpAddr::V4(ip)) => {
                            [&[1u8][..], &ip.octets()].concat()
                        }
                        sixsocks_proto::Host::Ip(IpAddr::V6(ip)) => {
                            [&[4u8][..], &ip.octets()].concat()
                        }
                        sixsocks_proto::Host::Domain(d) => {
                            [&[3u8, d.len() as u8][..], d.as_bytes()].concat()
                        }
                    };
                    (a, t.port)
                }
            };
            out.extend_from_slice(&addr);
            out.extend_from_slice(&port.to_be_bytes());
            out
        }
    }
}

/// 3proxy CVE-2026-109438: replies carrying uninitialised bytes (a buffer
/// sent at its full size, the tail never written). Every reply of every
/// version, for every code and every kind of bound address, is exactly
/// the bytes the RFCs say (built here by hand, not by the crate's own
/// encoder), no more and no fewer: each byte accounted for.
#[test]
fn every_reply_byte_is_accounted_for() {
    let bounds: Vec<Option<TargetAddr>> = vec![
        None,
        Some(TargetAddr::ip(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)),
            0xABCD,
        )),
        Some(TargetAddr::ip(
            IpAddr::V6("2001:db8::1".parse().unwrap()),
            1,
        )),
        Some(TargetAddr::ip(
            IpAddr::V6("::ffff:10.1.2.3".parse().unwrap()),
            65535,
        )),
        Some(TargetAddr::domain("h", 0)),
        Some(TargetAddr::domain("n".repeat(255), 7)),
    ];
    for version in [Version::V4, Version::V4a, Version::V5] {
        let request = Request {
            version,
            command: Command::CONNECT,
            target: TargetAddr::domain("example.com", 80),
            credentials: Credentials::None,
        };
        for code in all_codes() {
            for bound in &bounds {
                for ext in [false, true] {
                    let want = expected_reply(version, code, bound.as_ref(), ext);
                    let got = request.reply(code, bound.as_ref(), ext);
                    assert_eq!(got, want, "{version} {code:?} bound {bound:?} ext {ext}");
                }
            }
        }
    }
    // The SOCKS4 reply type on its own, and the UDP header the relay puts
    // in front of every datagram it sends back to the client.
    assert_eq!(
        v4::Reply::for_target(ReplyCode::NotAllowed, None).encode(),
        [0, 0x5B, 0, 0, 0, 0, 0, 0]
    );
    for (field, target) in address_fields() {
        let h = UdpHeader { frag: 0, target };
        assert_eq!(
            h.datagram(b"data").unwrap(),
            [&[0u8, 0, 0][..], &field, b"data"].concat()
        );
    }
}

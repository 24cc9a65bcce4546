//! Which addresses are the same destination: the one place that settles it.
//!
//! A rule that blocks `127.0.0.0/8` must block every spelling of it that
//! the kernel would connect to the same host. Linux (and the resolver in
//! front of it) accepts many:
//!
//! - **IPv4-mapped** `::ffff:a.b.c.d`: an IPv6 socket connecting to it
//!   reaches `a.b.c.d` over IPv4.
//! - **IPv4-compatible** `::a.b.c.d` (deprecated, RFC 4291 §2.5.5.1) and
//!   **NAT64** `64:ff9b::a.b.c.d` (RFC 6052): the address they embed is the
//!   host meant; rules see that address (and the IPv6 form too, so an entry
//!   written as `64:ff9b::/96` still matches).
//! - **Numeric names** that `getaddrinfo` reads as addresses: `0`, `0x0`,
//!   `127.1`, `2130706433`, `0177.0.0.1` (the `inet_aton` forms) and
//!   `[::1]`: [`literal`] reads them the same way, so rules decide on the
//!   address before any lookup.
//! - **The unspecified addresses** `0.0.0.0/8` and `::` (and every form
//!   above that embeds one): Linux connects `0.0.0.0` and `::` to the local
//!   host, so they are loopback in disguise, and nothing else is ever a real
//!   target. sixsocks **refuses them as targets** (`02` / `5B`), whatever
//!   the rules say, for CONNECT, UDP datagrams, BIND's expected host and
//!   every address a name resolves to ([`refuse_unspecified`]). A BIND
//!   request naming `0.0.0.0` still means "any host may connect" and a
//!   SOCKS 6 BIND naming it "any local address": there it is not a target.
//!
//! Rules compare with [`canonical`]; the proxy's own-socket check, BIND's
//! peer check and UDP's client check compare with [`same_ip`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::RequestError;

/// The address a connection to `ip` really reaches, for comparisons:
/// IPv4-mapped, IPv4-compatible and NAT64 (`64:ff9b::/96`) addresses become
/// the IPv4 address they embed; every other address is itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
    }
}

/// The IPv4 address an IPv6 address stands for, if it embeds one.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // ::a.b.c.d (compatible), but not :: and ::1, which are IPv6's own.
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_unspecified() && !v6.is_loopback() => Some(low),
        _ => None,
    }
}

/// Whether two addresses are the same destination (`::ffff:a.b.c.d`,
/// `::a.b.c.d` and `64:ff9b::a.b.c.d` are `a.b.c.d`).
pub fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    canonical(a) == canonical(b)
}

/// Whether `ip` is an unspecified address in any spelling: `0.0.0.0/8`
/// ("this network", RFC 1122: never a destination; Linux connects
/// `0.0.0.0` to itself) or `::`.
pub fn is_unspecified(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

/// Refuse an unspecified address as a target (see the module docs): it
/// would reach the proxy's own host past every rule.
pub fn refuse_unspecified(ip: IpAddr) -> Result<(), RequestError> {
    if is_unspecified(ip) {
        Err(RequestError::UnspecifiedTarget(ip))
    } else {
        Ok(())
    }
}

/// A name that is an address: what `getaddrinfo` would read numerically
/// without asking any resolver. Standard forms (`127.0.0.1`, `::1`), the
/// bracketed IPv6 form (`[::1]`), and the `inet_aton` forms glibc accepts
/// for IPv4: one to four parts, each decimal, octal (leading `0`) or hex
/// (`0x`), the last filling the remaining bytes (`127.1`, `2130706433`,
/// `0x7f.0.0.1`, `0`).
pub fn literal(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    inet_aton(name).map(IpAddr::V4)
}

/// glibc's `inet_aton`: `a`, `a.b`, `a.b.c` or `a.b.c.d`, each part in C
/// notation (decimal, `0` octal, `0x` hex), the last part covering every
/// byte not yet given.
fn inet_aton(name: &str) -> Option<Ipv4Addr> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(4);
    for p in &parts {
        values.push(c_number(p)?);
    }
    let (last, head) = values.split_last()?;
    let mut out: u32 = 0;
    for (i, v) in head.iter().enumerate() {
        if *v > 0xff {
            return None;
        }
        out |= v << (24 - 8 * i);
    }
    let room_bits = 32 - 8 * head.len() as u32;
    if room_bits < 32 && u64::from(*last) >= 1u64 << room_bits {
        return None;
    }
    Some(Ipv4Addr::from(out | last))
}

/// One part of an `inet_aton` address, in C notation.
fn c_number(p: &str) -> Option<u32> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        // glibc accepts a bare "0x" as zero.
        if h.is_empty() {
            return Some(0);
        }
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Whether `ip:port` is one of the sockets in `own` (the proxy's own
/// listeners): the same address in any spelling; a listener on `0.0.0.0` or
/// `::` also answers on every loopback address of its port, and an
/// unspecified target reaches every listener on its port.
pub fn is_own_socket(
    ip: IpAddr,
    port: u16,
    mut own: impl Iterator<Item = std::net::SocketAddr>,
) -> bool {
    let ip = canonical(ip);
    own.any(|o| {
        o.port() == port
            && (same_ip(o.ip(), ip)
                || is_unspecified(ip)
                || (is_unspecified(o.ip()) && ip.is_loopback()))
    })
}

/// Which client addresses count as one client for per-address limits:
/// IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 prefix, which one
/// host usually owns whole (it could otherwise take a fresh address for
/// every connection).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// `None` if `name` is not under `.onion`; otherwise whether it is a
/// well-formed v3 onion address (56 base32 characters before `.onion`).
/// Such names are never sent to DNS (RFC 7686) and have no address that
/// a rule could match.
pub fn onion_address(name: &str) -> Option<bool> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_suffix(".onion")?;
    let label = rest.rsplit('.').next().unwrap_or("");
    Some(
        label.len() == 56
            && label
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn embedded_ipv4_forms_are_the_ipv4_address() {
        for form in [
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert_eq!(canonical(ip(form)), ip("127.0.0.1"), "{form}");
            assert!(same_ip(ip(form), ip("127.0.0.1")), "{form}");
        }
        // IPv6's own loopback and unspecified are not IPv4-compatible.
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::")), ip("::"));
        // Other IPv6 addresses stay themselves.
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(canonical(ip("64:ff9b:1::1")), ip("64:ff9b:1::1"));
    }

    #[test]
    fn unspecified_in_every_spelling() {
        for form in [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "::0.0.0.2",
            "64:ff9b::",
            "64:ff9b::0.0.0.0",
        ] {
            assert!(is_unspecified(ip(form)), "{form}");
            assert!(refuse_unspecified(ip(form)).is_err(), "{form}");
        }
        for form in ["127.0.0.1", "::1", "1.0.0.0", "::ffff:1.2.3.4"] {
            assert!(!is_unspecified(ip(form)), "{form}");
            assert!(refuse_unspecified(ip(form)).is_ok(), "{form}");
        }
    }

    #[test]
    fn numeric_names_read_as_getaddrinfo_reads_them() {
        let cases = [
            ("0", "0.0.0.0"),
            ("0.0", "0.0.0.0"),
            ("0x0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("0.0.0.0", "0.0.0.0"),
            ("::", "::"),
            ("[::]", "::"),
            ("[::1]", "::1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
            ("4294967295", "255.255.255.255"),
        ];
        for (name, want) in cases {
            assert_eq!(literal(name), Some(ip(want)), "{name}");
        }
        for name in [
            "",
            "example.com",
            "1.2.3.4.5",
            "256.1",
            "1.2.3.256",
            "4294967296",
            "08",
            "0x1g",
            "1..2",
            "[127.0.0.1]",
            "[::1",
            "1.2.3.4.",
            "-1",
            "+1",
            " 1",
        ] {
            assert_eq!(literal(name), None, "{name:?}");
        }
    }

    #[test]
    fn onion_names() {
        assert_eq!(onion_address("example.com"), None);
        assert_eq!(onion_address("foo.onion"), Some(false));
        let v3 = format!("{}.onion", "a".repeat(56));
        assert_eq!(onion_address(&v3), Some(true));
        assert_eq!(onion_address(&format!("www.{v3}.")), Some(true));
        assert_eq!(
            onion_address(&format!("{}.onion", "1".repeat(56))),
            Some(false)
        );
    }
}

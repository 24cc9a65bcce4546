//! Per-address caps: connections, and handshakes in progress, from one
//! client address (an IPv6 client by its /64,
//! [`crate::destination::client_key`]).
//!
//! Without them one address can lock everyone out: 1,200 slow handshakes
//! from one host against `max_clients = 1000` left 0 of 150 other clients
//! served. A handshake slot is held from accept until the request is read
//! (or the handshake ends), a connection slot for the whole session; past
//! either cap the connection is closed at accept, counted and logged (at a
//! limited rate), and other addresses are not affected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections and handshakes per client key.
#[derive(Default)]
pub struct AddressLimits {
    live: Mutex<HashMap<IpAddr, Counts>>,
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    connections: usize,
    handshakes: usize,
}

/// Why an address was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_clients_per_address` connections are open from it.
    Connections,
    /// `max_handshakes_per_address` handshakes are in progress from it.
    Handshakes,
}

impl Refusal {
    /// The metric label and the log text.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "max_clients_per_address",
            Refusal::Handshakes => "max_handshakes_per_address",
        }
    }
}

/// A connection's place: held for the whole session. Its handshake place
/// is given back with [`Admitted::handshake_done`] (or when dropped).
pub struct Admitted {
    limits: Arc<AddressLimits>,
    key: IpAddr,
    in_handshake: bool,
}

impl AddressLimits {
    /// Take a connection and a handshake place for `ip`, or say which cap
    /// is reached.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_connections: usize,
        max_handshakes: usize,
    ) -> Result<Admitted, Refusal> {
        let key = crate::destination::client_key(ip);
        let mut map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.entry(key).or_default();
        let refused = if c.connections >= max_connections {
            Some(Refusal::Connections)
        } else if c.handshakes >= max_handshakes {
            Some(Refusal::Handshakes)
        } else {
            None
        };
        if let Some(r) = refused {
            if *c == Counts::default() {
                map.remove(&key);
            }
            return Err(r);
        }
        c.connections += 1;
        c.handshakes += 1;
        Ok(Admitted {
            limits: self.clone(),
            key,
            in_handshake: true,
        })
    }

    /// Addresses with connections now.
    pub fn addresses(&self) -> usize {
        self.live.lock().map_or(0, |m| m.len())
    }

    fn release(&self, key: IpAddr, connection: bool, handshake: bool) {
        let mut map = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(&key) {
            if connection {
                c.connections = c.connections.saturating_sub(1);
            }
            if handshake {
                c.handshakes = c.handshakes.saturating_sub(1);
            }
            if *c == Counts::default() {
                map.remove(&key);
            }
        }
    }
}

impl Admitted {
    /// The handshake is over (a request was read, or it failed): its place
    /// goes back; the connection's stays.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.in_handshake) {
            self.limits.release(self.key, false, true);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limits.release(self.key, true, self.in_handshake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_apply_per_address_and_places_come_back() {
        let l = Arc::new(AddressLimits::default());
        let a = ip("192.0.2.1");
        let mut held: Vec<Admitted> = (0..3).map(|_| l.admit(a, 5, 3).unwrap()).collect();
        assert_eq!(l.admit(a, 5, 3).err(), Some(Refusal::Handshakes));
        // Another address is not affected.
        let other = l.admit(ip("192.0.2.2"), 5, 3).unwrap();
        // Handshakes done: two more connections fit, then the connection cap.
        for h in &mut held {
            h.handshake_done();
        }
        held.push(l.admit(a, 5, 3).unwrap());
        held.push(l.admit(a, 5, 3).unwrap());
        assert_eq!(l.admit(a, 5, 3).err(), Some(Refusal::Connections));
        drop(held);
        drop(other);
        assert_eq!(l.addresses(), 0, "nothing left behind");
        assert!(l.admit(a, 5, 3).is_ok());
    }

    #[test]
    fn an_ipv6_host_counts_by_its_slash_64() {
        let l = Arc::new(AddressLimits::default());
        let _a = l.admit(ip("2001:db8:1:2::1"), 1, 1).unwrap();
        assert!(l.admit(ip("2001:db8:1:2::ffff"), 1, 1).is_err());
        assert!(l.admit(ip("2001:db8:1:3::1"), 1, 1).is_ok());
        // IPv4-mapped is the IPv4 address.
        let _b = l.admit(ip("192.0.2.9"), 1, 1).unwrap();
        assert!(l.admit(ip("::ffff:192.0.2.9"), 1, 1).is_err());
    }
}

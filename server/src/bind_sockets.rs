//! The BIND listeners alive now, which are the proxy's own sockets while
//! they live (a CONNECT to one would hand a client another's inbound
//! connection): registered by every BIND (SOCKS4/5 and SOCKS 6, backlogs
//! included), checked with the listeners before every direct CONNECT.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use crate::destination;

/// The addresses BIND listeners (SOCKS4/5 and SOCKS 6, backlogs included)
/// are bound to right now: the proxy's own sockets as long as they live,
/// so a CONNECT to one is refused (`02`) like one to a listener.
#[derive(Default)]
pub struct BoundSockets {
    addrs: Mutex<HashMap<SocketAddr, usize>>,
}

/// Keeps an address in [`BoundSockets`] while it lives.
pub(crate) struct Registered<'a> {
    set: &'a BoundSockets,
    addr: SocketAddr,
}

impl BoundSockets {
    pub(crate) fn register(&self, addr: SocketAddr) -> Registered<'_> {
        let mut map = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(addr).or_insert(0) += 1;
        Registered { set: self, addr }
    }

    /// Whether `ip:port` reaches one of them.
    pub(crate) fn contains(&self, ip: IpAddr, port: u16) -> bool {
        let map = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
        destination::is_own_socket(ip, port, map.keys().copied())
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut map = self.set.addrs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

//! SOCKS 6 BIND backlog listeners (draft -05 §8.1.5): one listener that
//! serves several later BIND requests from the same owner (the BIND
//! itself: `command/bind.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Listeners opened by a BIND with a listen backlog, by bound address. They
/// live as long as the BIND's own connection; later BIND requests naming the
/// address (from the same owner) take their connections from them.
#[derive(Default)]
pub struct Backlogs {
    listeners: Mutex<HashMap<SocketAddr, Backlog>>,
}

/// A backlog listener, the owner key of the BIND that opened it, and the
/// signal that a later BIND used it (which keeps its connection alive).
type Backlog = (Vec<u8>, Arc<TcpListener>, Arc<Notify>);

impl Backlogs {
    pub(crate) fn get(&self, addr: SocketAddr, owner: &[u8]) -> Option<Arc<TcpListener>> {
        let map = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&addr)
            .filter(|(o, _, _)| o == owner)
            .map(|(_, l, used)| {
                used.notify_one();
                l.clone()
            })
    }
    pub(crate) fn insert(
        &self,
        addr: SocketAddr,
        owner: Vec<u8>,
        l: Arc<TcpListener>,
        used: Arc<Notify>,
    ) {
        let mut map = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(addr, (owner, l, used));
    }
    pub(crate) fn remove(&self, addr: SocketAddr) {
        let mut map = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&addr);
    }
}

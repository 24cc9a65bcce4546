//! The counts that bound UDP ASSOCIATE across associations: how many live
//! (in all and per client address) and how many payload bytes wait for
//! name lookups in all of them. Kept across reloads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counts associations overall and per client IP, and the datagram bytes
/// all of them hold while names resolve.
#[derive(Default)]
pub struct AssociationLimits {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Payload bytes waiting for name lookups, in all associations.
    queued_bytes: AtomicUsize,
}

/// Releases an association's place in [`AssociationLimits`] when dropped.
pub(crate) struct Slot<'a> {
    limits: &'a AssociationLimits,
    ip: IpAddr,
}

impl AssociationLimits {
    pub(super) fn acquire(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Option<Slot<'_>> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.get(&ip).copied().unwrap_or(0);
        if n >= max_per_ip || self.total.load(Ordering::Relaxed) >= max_total {
            return None;
        }
        map.insert(ip, n + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot { limits: self, ip })
    }

    /// Associations alive now.
    pub fn active(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Payload bytes waiting for name lookups now, in all associations.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Reserve `n` queued bytes against the global cap `max`.
    pub(super) fn reserve_queued(&self, n: usize, max: usize) -> bool {
        self.queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(n).filter(|&t| t <= max)
            })
            .is_ok()
    }

    pub(super) fn release_queued(&self, n: usize) {
        self.queued_bytes.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut map = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

//! The SOCKS5 UDP datagram header (RFC 1928 §7) and fragment reassembly.
//!
//! Header: `RSV(2)=0000 | FRAG | ATYP | DST.ADDR | DST.PORT | DATA`.
//! FRAG `00` is a standalone datagram; `01`–`7F` is a fragment's position
//! in a sequence, and the high bit marks the sequence's last fragment.
//!
//! [`Reassembler`] is sans-IO: time is an argument, so tests never sleep.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::addr::TargetAddr;
use crate::error::{EncodeError, PeerError};
use crate::parse::Parsed;

/// FRAG value of a standalone datagram.
pub const STANDALONE: u8 = 0x00;
/// High bit of FRAG: last fragment of a sequence.
pub const LAST: u8 = 0x80;
/// Largest payload of one UDP datagram over IPv4 (65535 − 8 − 20).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// A parsed datagram header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpHeader {
    pub frag: u8,
    pub target: TargetAddr,
}

impl UdpHeader {
    /// Parse the header at the start of a datagram. A datagram is always
    /// whole, so a short one is an error, never "incomplete". Returns the
    /// header and the offset of the payload.
    pub fn parse(datagram: &[u8]) -> Result<(UdpHeader, usize), PeerError> {
        if datagram.len() < 4 {
            return Err(PeerError::Truncated);
        }
        if datagram[0] != 0 || datagram[1] != 0 {
            return Err(PeerError::BadReserved);
        }
        let frag = datagram[2];
        match TargetAddr::parse_v5(&datagram[3..])? {
            Parsed::Complete { value, consumed } => Ok((
                UdpHeader {
                    frag,
                    target: value,
                },
                3 + consumed,
            )),
            Parsed::Incomplete { .. } => Err(PeerError::Truncated),
        }
    }

    /// Append the header (nothing is appended on error).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, self.frag]);
        self.target
            .encode_v5(out)
            .inspect_err(|_| out.truncate(start))
    }

    /// A whole datagram: header then payload.
    pub fn datagram(&self, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(3 + self.target.v5_len() + payload.len());
        self.encode(&mut out)?;
        out.extend_from_slice(payload);
        Ok(out)
    }
}

/// Split `payload` into fragments of at most `max_piece` payload bytes,
/// each a whole datagram with its header (positions 1, 2, … with the last
/// one marked). At most 127 fragments; a payload that needs more is an error.
pub fn fragment(
    target: &TargetAddr,
    payload: &[u8],
    max_piece: usize,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    if max_piece == 0 {
        return Err(EncodeError::TooLong("fragment size 0"));
    }
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![payload]
    } else {
        payload.chunks(max_piece).collect()
    };
    if pieces.len() > 127 {
        return Err(EncodeError::TooLong(
            "payload needs more than 127 fragments",
        ));
    }
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let pos = (i + 1) as u8;
            let frag = if i + 1 == n { pos | LAST } else { pos };
            UdpHeader {
                frag,
                target: target.clone(),
            }
            .datagram(piece)
        })
        .collect()
}

/// Limits of a [`Reassembler`].
#[derive(Clone, Debug)]
pub struct ReassemblyLimits {
    /// The reassembly timer (RFC 1928: at least 5 s).
    pub timeout: Duration,
    /// Largest reassembled payload; a sequence that grows past it is dropped.
    pub max_size: usize,
    /// Most sequences in progress at once (one per destination); a new one
    /// beyond it evicts the oldest.
    pub max_queues: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            timeout: Duration::from_secs(5),
            max_size: MAX_UDP_PAYLOAD,
            max_queues: 8,
        }
    }
}

/// What became of one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment {
    /// A whole datagram is ready: a standalone one, or a completed sequence.
    Complete(TargetAddr, Vec<u8>),
    /// Kept, waiting for the rest.
    Queued,
    /// Dropped, and with it the sequence it belonged to, if any.
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// FRAG lower than (or equal to) the highest already processed, or a
    /// gap in the positions: the RFC's "reinitialize the queue".
    OutOfOrder,
    /// The reassembled size would pass the cap.
    TooLarge,
}

struct Queue {
    started: Instant,
    highest: u8,
    data: Vec<u8>,
}

/// Reassembly queues of one UDP association, one per destination.
pub struct Reassembler {
    limits: ReassemblyLimits,
    queues: HashMap<TargetAddr, Queue>,
    /// Sequences evicted to make room since the last `take_evicted`.
    evicted: usize,
}

impl Reassembler {
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            queues: HashMap::new(),
            evicted: 0,
        }
    }

    /// Queues in progress (after expiring those older than the timer).
    pub fn pending(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.queues.len()
    }

    /// How many unfinished sequences were evicted (the oldest, to make room
    /// for a new one past `max_queues`) since the last call.
    pub fn take_evicted(&mut self) -> usize {
        std::mem::take(&mut self.evicted)
    }

    /// Bytes held in all queues.
    pub fn held_bytes(&self) -> usize {
        self.queues.values().map(|q| q.data.len()).sum()
    }

    /// Drop sequences whose reassembly timer has expired.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        self.queues
            .retain(|_, q| now.saturating_duration_since(q.started) < timeout);
    }

    /// Feed one datagram's header and payload.
    pub fn push(&mut self, header: UdpHeader, payload: &[u8], now: Instant) -> Fragment {
        self.expire(now);
        if header.frag == STANDALONE {
            return Fragment::Complete(header.target, payload.to_vec());
        }
        let pos = header.frag & !LAST;
        let last = header.frag & LAST != 0;
        if pos == 0 {
            // 0x80: "last" with no position; not a valid fragment.
            self.queues.remove(&header.target);
            return Fragment::Dropped(DropReason::OutOfOrder);
        }
        let expected = self.queues.get(&header.target).map_or(1, |q| q.highest + 1);
        if pos != expected {
            // Lower than the highest processed (or a gap): abandon the
            // sequence. A fragment 1 starts a new one at once.
            self.queues.remove(&header.target);
            if pos != 1 {
                return Fragment::Dropped(DropReason::OutOfOrder);
            }
        }
        let size = self.queues.get(&header.target).map_or(0, |q| q.data.len()) + payload.len();
        if size > self.limits.max_size {
            self.queues.remove(&header.target);
            return Fragment::Dropped(DropReason::TooLarge);
        }
        if last {
            let mut data = self
                .queues
                .remove(&header.target)
                .map(|q| q.data)
                .unwrap_or_default();
            data.extend_from_slice(payload);
            return Fragment::Complete(header.target, data);
        }
        if !self.queues.contains_key(&header.target) && self.queues.len() >= self.limits.max_queues
        {
            // Evict the oldest sequence to make room.
            if let Some(oldest) = self
                .queues
                .iter()
                .min_by_key(|(_, q)| q.started)
                .map(|(k, _)| k.clone())
            {
                self.queues.remove(&oldest);
                self.evicted += 1;
            }
        }
        let q = self.queues.entry(header.target).or_insert_with(|| Queue {
            started: now,
            highest: 0,
            data: Vec::new(),
        });
        q.highest = pos;
        q.data.extend_from_slice(payload);
        Fragment::Queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16) -> TargetAddr {
        TargetAddr::ip("10.0.0.1".parse().unwrap(), port)
    }

    fn feed(r: &mut Reassembler, dgram: &[u8], now: Instant) -> Fragment {
        let (h, off) = UdpHeader::parse(dgram).unwrap();
        r.push(h, &dgram[off..], now)
    }

    #[test]
    fn header_round_trip_every_address_type() {
        for target in [
            t(53),
            TargetAddr::ip("::1".parse().unwrap(), 5353),
            TargetAddr::domain("example.com", 443),
        ] {
            let h = UdpHeader { frag: 3, target };
            let d = h.datagram(b"payload").unwrap();
            let (back, off) = UdpHeader::parse(&d).unwrap();
            assert_eq!(back, h);
            assert_eq!(&d[off..], b"payload");
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(UdpHeader::parse(&[0, 0, 0]), Err(PeerError::Truncated));
        assert_eq!(
            UdpHeader::parse(&[0, 1, 0, 1, 1, 2, 3, 4, 0, 53]),
            Err(PeerError::BadReserved)
        );
        assert_eq!(
            UdpHeader::parse(&[0, 0, 0, 9, 1, 2]),
            Err(PeerError::UnknownAddressType(9))
        );
        assert_eq!(
            UdpHeader::parse(&[0, 0, 0, 3, 0, 0, 53]),
            Err(PeerError::EmptyDomain)
        );
        assert_eq!(
            UdpHeader::parse(&[0, 0, 0, 1, 127, 0, 0]),
            Err(PeerError::Truncated)
        );
        assert_eq!(
            UdpHeader::parse(&[0, 0, 0, 3, 10, b'a', b'b']),
            Err(PeerError::Truncated)
        );
    }

    #[test]
    fn fragments_reassemble_in_order() {
        let now = Instant::now();
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let frags = fragment(&t(9), &payload, 300).unwrap();
        assert_eq!(frags.len(), 4);
        let mut r = Reassembler::new(ReassemblyLimits::default());
        for f in &frags[..3] {
            assert_eq!(feed(&mut r, f, now), Fragment::Queued);
        }
        assert_eq!(
            feed(&mut r, &frags[3], now),
            Fragment::Complete(t(9), payload)
        );
        assert_eq!(r.pending(now), 0);
    }

    #[test]
    fn out_of_order_abandons_the_sequence() {
        let now = Instant::now();
        let frags = fragment(&t(9), &[7u8; 900], 300).unwrap();
        let mut r = Reassembler::new(ReassemblyLimits::default());
        assert_eq!(feed(&mut r, &frags[0], now), Fragment::Queued);
        assert_eq!(feed(&mut r, &frags[1], now), Fragment::Queued);
        // Position 1 again: lower than the highest (2): the queue restarts.
        assert_eq!(feed(&mut r, &frags[0], now), Fragment::Queued);
        // A gap (1 then 3) abandons it.
        assert_eq!(
            feed(&mut r, &frags[2], now),
            Fragment::Dropped(DropReason::OutOfOrder)
        );
        assert_eq!(r.pending(now), 0);
    }

    #[test]
    fn timer_expires_a_sequence_after_five_seconds() {
        let now = Instant::now();
        let frags = fragment(&t(9), &[1u8; 600], 300).unwrap();
        let mut r = Reassembler::new(ReassemblyLimits::default());
        assert_eq!(feed(&mut r, &frags[0], now), Fragment::Queued);
        assert_eq!(r.pending(now + Duration::from_millis(4_999)), 1);
        let later = now + Duration::from_secs(5);
        assert_eq!(
            feed(&mut r, &frags[1], later),
            Fragment::Dropped(DropReason::OutOfOrder)
        );
        assert_eq!(r.pending(later), 0);
    }

    #[test]
    fn size_and_queue_caps_hold() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyLimits {
            max_size: 1000,
            max_queues: 4,
            ..ReassemblyLimits::default()
        });
        let frags = fragment(&t(1), &[0u8; 1500], 600).unwrap();
        assert_eq!(feed(&mut r, &frags[0], now), Fragment::Queued);
        assert_eq!(
            feed(&mut r, &frags[1], now),
            Fragment::Dropped(DropReason::TooLarge)
        );
        for port in 0..100u16 {
            let f = fragment(&t(port), &[0u8; 20], 10).unwrap();
            assert_eq!(feed(&mut r, &f[0], now), Fragment::Queued);
            assert!(r.pending(now) <= 4);
            assert!(r.held_bytes() <= 4 * 1000);
        }
        assert_eq!(r.take_evicted(), 96, "100 sequences, room for 4");
        assert_eq!(r.take_evicted(), 0);
    }

    #[test]
    fn standalone_passes_through() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let d = UdpHeader {
            frag: 0,
            target: t(5),
        }
        .datagram(b"x")
        .unwrap();
        assert_eq!(
            feed(&mut r, &d, now),
            Fragment::Complete(t(5), b"x".to_vec())
        );
        assert!(fragment(&t(1), &[0u8; 128], 1).is_err());
    }
}

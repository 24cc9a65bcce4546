//! Test support shared by proto's own tests, the fuzz targets and the other
//! crates' tests (feature `testing`): chunking a byte stream the way reads
//! deliver it, and one driver that runs any handshake machine over it and
//! checks the calling convention on every instruction.
//!
//! The checks, for every machine:
//!
//! * `NeedMore(n)` has `n ≥ 1`, and is only returned while the input has
//!   room (a full buffer fails instead);
//! * the input never holds more than its cap;
//! * `Send` carries bytes;
//! * after `Finished` or `Failed`, the machine is sticky: one more step
//!   fails, with nothing to send (after `Failed`: the same error).

use crate::input::{Input, Instruction};
use crate::ProtoError;

/// Chunk patterns every "feed it in pieces" test runs with. `usize::MAX`
/// means "all at once"; a pattern is cycled.
pub const PATTERNS: &[&[usize]] = &[
    &[1],
    &[2],
    &[3],
    &[5, 1, 7],
    &[13],
    &[1, 2, 3, 4, 5, 6, 7, 8, 9],
    &[64],
    &[usize::MAX],
];

/// Split `data` into chunks whose sizes follow `pattern` (cycled).
pub fn chunk<'a>(data: &'a [u8], pattern: &[usize]) -> Vec<&'a [u8]> {
    assert!(!pattern.is_empty() && pattern.iter().all(|&n| n > 0));
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = pattern[i % pattern.len()].min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// A handshake machine: it owns its input and steps.
pub trait Machine {
    type Value;
    type Event;
    fn input(&mut self) -> &mut Input;
    fn step(&mut self) -> Instruction<Self::Value, Self::Event>;
}

impl Machine for crate::server::ServerHandshake {
    type Value = crate::server::Accepted;
    type Event = crate::server::Verify;
    fn input(&mut self) -> &mut Input {
        self.input()
    }
    fn step(&mut self) -> crate::server::Step {
        self.step()
    }
}

impl Machine for crate::client::ClientHandshake {
    type Value = crate::client::ClientReply;
    type Event = crate::input::NoEvent;
    fn input(&mut self) -> &mut Input {
        self.input()
    }
    fn step(&mut self) -> crate::client::Step {
        self.step()
    }
}

impl Machine for crate::v6::client::Socks6Client {
    type Value = crate::v6::client::Final;
    type Event = crate::v6::client::Event;
    fn input(&mut self) -> &mut Input {
        self.input()
    }
    fn step(&mut self) -> crate::v6::client::Step {
        self.step()
    }
}

/// How the bytes reach the machine.
#[derive(Clone, Copy, Debug)]
pub enum Delivery<'a> {
    /// In chunks following this pattern (cycled), as far as each fits.
    Pattern(&'a [usize]),
    /// Exactly as many bytes as each `NeedMore` asks for.
    Exact,
    /// In chunks of these sizes, in order (not cycled; empty chunks are
    /// skipped, the rest of the stream comes last).
    Sizes(&'a [usize]),
}

/// What happened after the stream ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtEnd {
    /// Stop (the peer is still connected, silent).
    Wait,
    /// Close the input (the peer closed).
    Close,
}

/// Where a driven handshake ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End<T> {
    /// `Finished`: the value, and every byte of the stream after it (what
    /// the machine read past it, then what a caller would read next).
    Finished {
        value: T,
        rest: Vec<u8>,
    },
    Failed {
        reply: Vec<u8>,
        error: ProtoError,
    },
    /// The stream ran out while the machine wanted this many more bytes.
    Stalled {
        needed: usize,
    },
}

/// Everything observable from one handshake.
#[derive(Debug, PartialEq, Eq)]
pub struct Trace<T, E> {
    /// The bytes of each `Send`, in order.
    pub sent: Vec<Vec<u8>>,
    /// The events, in order (each answered by the callback).
    pub events: Vec<E>,
    pub end: End<T>,
}

impl<T, E> Trace<T, E> {
    /// All sent bytes, concatenated.
    pub fn sent_bytes(&self) -> Vec<u8> {
        self.sent.concat()
    }
}

/// Run `machine` over `stream`, delivered as `delivery` says, answering
/// each event with `on_event` (which may call the machine, e.g. to give a
/// verdict). Checks the calling convention (see the module documentation)
/// and panics where it is broken.
pub fn drive<M: Machine>(
    machine: &mut M,
    stream: &[u8],
    delivery: Delivery<'_>,
    at_end: AtEnd,
    on_event: &mut dyn FnMut(&mut M, &M::Event),
) -> Trace<M::Value, M::Event>
where
    M::Event: std::fmt::Debug,
    M::Value: std::fmt::Debug,
{
    let mut feed = Feeder::new(stream, delivery);
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for _ in 0..(stream.len() * 4 + 256) {
        let cap = machine.input().cap();
        assert!(machine.input().len() <= cap, "input over its cap");
        match machine.step() {
            Instruction::NeedMore(n) => {
                assert!(n >= 1, "NeedMore(0)");
                let room = machine.input().room();
                assert!(room > 0, "NeedMore({n}) with a full input");
                let next = feed.next(n);
                if next.is_empty() {
                    if at_end == AtEnd::Close && !machine.input().is_closed() {
                        machine.input().close();
                        continue;
                    }
                    return Trace {
                        sent,
                        events,
                        end: End::Stalled { needed: n },
                    };
                }
                let took = machine.input().push(next);
                assert!(took > 0, "input took nothing with room {room}");
                feed.took(took);
            }
            Instruction::Send(bytes) => {
                assert!(!bytes.is_empty(), "Send of nothing");
                sent.push(bytes);
            }
            Instruction::Event(e) => {
                on_event(machine, &e);
                events.push(e);
            }
            Instruction::Finished { value, mut rest } => {
                rest.extend_from_slice(feed.rest());
                match machine.step() {
                    Instruction::Failed { reply, .. } => assert!(reply.is_empty()),
                    other => panic!("step after Finished gave {other:?}"),
                }
                return Trace {
                    sent,
                    events,
                    end: End::Finished { value, rest },
                };
            }
            Instruction::Failed { reply, error } => {
                match machine.step() {
                    Instruction::Failed {
                        reply: again,
                        error: same,
                    } => {
                        assert!(again.is_empty(), "a second failure sent bytes");
                        assert_eq!(same, error, "a sticky failure lost its cause");
                    }
                    other => panic!("step after Failed gave {other:?}"),
                }
                return Trace {
                    sent,
                    events,
                    end: End::Failed { reply, error },
                };
            }
        }
    }
    panic!("the machine did not terminate");
}

/// The bytes of a stream, handed out as a [`Delivery`] says.
struct Feeder<'a> {
    stream: &'a [u8],
    delivery: Delivery<'a>,
    chunks: Vec<&'a [u8]>,
    next_chunk: usize,
    /// Bytes of the current chunk not yet taken by a full input.
    pending: &'a [u8],
    /// Bytes of the stream taken so far.
    delivered: usize,
}

impl<'a> Feeder<'a> {
    fn new(stream: &'a [u8], delivery: Delivery<'a>) -> Self {
        let chunks = match delivery {
            Delivery::Pattern(p) => chunk(stream, p),
            Delivery::Exact => Vec::new(),
            Delivery::Sizes(sizes) => {
                let mut out = Vec::new();
                let mut rest = stream;
                for &n in sizes.iter().filter(|&&n| n > 0) {
                    let n = n.min(rest.len());
                    out.push(&rest[..n]);
                    rest = &rest[n..];
                }
                if !rest.is_empty() {
                    out.push(rest);
                }
                out
            }
        };
        Feeder {
            stream,
            delivery,
            chunks,
            next_chunk: 0,
            pending: &[],
            delivered: 0,
        }
    }

    /// What a read gives now, the machine wanting `needed` more (empty:
    /// the stream ran out).
    fn next(&mut self, needed: usize) -> &'a [u8] {
        if self.pending.is_empty() {
            self.pending = match self.delivery {
                Delivery::Pattern(_) | Delivery::Sizes(_) => match self.chunks.get(self.next_chunk)
                {
                    Some(c) => {
                        self.next_chunk += 1;
                        c
                    }
                    None => &[],
                },
                Delivery::Exact => {
                    let n = needed.min(self.stream.len() - self.delivered);
                    &self.stream[self.delivered..self.delivered + n]
                }
            };
        }
        self.pending
    }

    /// The machine's input took `n` bytes of [`Feeder::next`].
    fn took(&mut self, n: usize) {
        self.delivered += n;
        self.pending = &self.pending[n..];
    }

    /// Every byte not taken yet.
    fn rest(&self) -> &'a [u8] {
        &self.stream[self.delivered..]
    }
}

/// [`drive`] with every pattern of [`PATTERNS`] and with exact reads, on a
/// fresh machine from `make` each time; asserts that all give the same
/// trace and returns it.
pub fn drive_all_ways<M: Machine>(
    make: &dyn Fn() -> M,
    stream: &[u8],
    at_end: AtEnd,
    on_event: &mut dyn FnMut(&mut M, &M::Event),
) -> Trace<M::Value, M::Event>
where
    M::Event: std::fmt::Debug + PartialEq,
    M::Value: std::fmt::Debug + PartialEq,
{
    let reference = drive(&mut make(), stream, Delivery::Exact, at_end, on_event);
    for p in PATTERNS {
        let t = drive(&mut make(), stream, Delivery::Pattern(p), at_end, on_event);
        assert_eq!(t, reference, "chunk pattern {p:?} changed the outcome");
    }
    reference
}

/// [`drive`] over a list of chunks (what a fuzzer produces): the chunks in
/// order, each as far as it fits.
pub fn drive_chunks<M: Machine>(
    machine: &mut M,
    chunks: &[&[u8]],
    at_end: AtEnd,
    on_event: &mut dyn FnMut(&mut M, &M::Event),
) -> Trace<M::Value, M::Event>
where
    M::Event: std::fmt::Debug,
    M::Value: std::fmt::Debug,
{
    let stream = chunks.concat();
    let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
    drive(machine, &stream, Delivery::Sizes(&sizes), at_end, on_event)
}

//! The capped input buffer every handshake machine owns, and the one
//! instruction every machine's `step()` returns.
//!
//! A machine reads only from its own [`Input`]: the caller puts what it
//! received in (all of it, or straight from a read into
//! [`Input::spare`]), says when the peer closed ([`Input::close`]), and
//! carries out the [`Instruction`] that `step()` returns. The machine
//! drops what it has parsed itself, so no caller keeps a buffer, counts
//! consumed bytes or enforces a cap of its own.
//!
//! ```text
//! NeedMore(n)              read (at least n more bytes are needed) into `input().spare()`,
//!                          `input().filled(k)` (or `close()` at EOF), step again
//! Send(bytes)              send the bytes, step again
//! Event(e)                 act on e (verify credentials, note a reply), step again
//! Finished { value, rest } the handshake is over; `rest` holds the bytes read past it
//! Failed { reply, error }  send `reply` (maybe empty), then close
//! ```
//!
//! The cap is the machine's: more than `cap` bytes never sit in the buffer
//! (a read is never offered more room than is left), and a message that
//! cannot fit fails with [`PeerError::MessageTooLong`] as soon as the
//! buffer is full instead of asking for more.

use crate::{PeerError, ProtoError};

/// The most a single [`Input::spare`] offers: handshake messages are
/// small, and a large read would only pull application data forward.
pub const READ_CHUNK: usize = 1024;

/// An owning input buffer that never holds more than its cap.
#[derive(Debug, Default)]
pub struct Input {
    /// `data[..len]` is unconsumed input; `data[len..]` is spare room
    /// handed out by [`Input::spare`] and not filled yet.
    data: Vec<u8>,
    len: usize,
    cap: usize,
    eof: bool,
}

impl Input {
    /// An empty buffer that holds at most `cap` bytes.
    pub fn with_cap(cap: usize) -> Self {
        Input {
            data: Vec::new(),
            len: 0,
            cap,
            eof: false,
        }
    }

    /// How many more bytes fit.
    pub fn room(&self) -> usize {
        self.cap.saturating_sub(self.len)
    }

    /// The cap in force.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Room to read into (at most [`READ_CHUNK`] bytes, never past the
    /// cap; empty when the buffer is full). Report how much was written
    /// with [`Input::filled`]; bytes written but not reported are ignored.
    pub fn spare(&mut self) -> &mut [u8] {
        let room = self.room().min(READ_CHUNK);
        self.data.resize(self.len + room, 0);
        &mut self.data[self.len..]
    }

    /// `n` bytes were written at the start of [`Input::spare`] (clamped to
    /// what it offered).
    pub fn filled(&mut self, n: usize) {
        self.len += n.min(self.data.len() - self.len);
    }

    /// Append as much of `bytes` as fits; returns how many were taken (a
    /// caller that only pushes what [`Input::room`] allows never loses any).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room());
        self.data.truncate(self.len);
        self.data.extend_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// The peer closed its side: no more bytes will come.
    pub fn close(&mut self) {
        self.eof = true;
    }

    /// Whether [`Input::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.eof
    }

    /// The unconsumed input.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// How many unconsumed bytes there are.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drop the first `n` bytes (a parser consumed them).
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.data.truncate(self.len);
        self.data.drain(..n);
        self.len -= n;
    }

    /// Take everything unconsumed, leaving the buffer empty and freed. The
    /// bytes come in a vector of their own size (none allocated when there
    /// are none): what a session keeps for its whole life must not be the
    /// read buffer's capacity.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let rest = self.bytes().to_vec();
        self.data = Vec::new();
        self.len = 0;
        rest
    }

    /// Change the cap (the first byte chose a protocol with another one).
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// What a machine answers when its parser wants more: `NeedMore`, or a
    /// failure when more can never come (the buffer is full, or the peer
    /// closed).
    pub(crate) fn need_more<T, E>(&self, needed: usize) -> Instruction<T, E> {
        if self.room() == 0 {
            Instruction::failed(PeerError::MessageTooLong(self.cap))
        } else if self.eof {
            Instruction::failed(PeerError::UnexpectedEof)
        } else {
            Instruction::NeedMore(needed.max(1))
        }
    }
}

/// A client machine's step made sticky: a failure, returned as `Failed` or
/// raised as an error, is handed to `stop` (which records it in the
/// machine's state) and comes out as `Failed`.
pub(crate) fn sticky<T, E>(
    stepped: Result<Instruction<T, E>, ProtoError>,
    stop: impl FnOnce(ProtoError),
) -> Instruction<T, E> {
    match stepped {
        Ok(Instruction::Failed { reply, error }) => {
            stop(error.clone());
            Instruction::Failed { reply, error }
        }
        Ok(step) => step,
        Err(error) => {
            stop(error.clone());
            Instruction::failed(error)
        }
    }
}

/// A machine with no events of its own (`Instruction::Event` never happens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoEvent {}

/// One instruction of a handshake machine. See the module documentation.
#[derive(Debug, PartialEq, Eq)]
pub enum Instruction<T, E = NoEvent> {
    /// Read more input: at least this many bytes are needed.
    NeedMore(usize),
    /// Send these bytes, then step again.
    Send(Vec<u8>),
    /// Something the caller must act on before stepping again.
    Event(E),
    /// The handshake is over: what it produced, and every byte read past it
    /// (optimistic data from a client, data from the target for a client).
    Finished { value: T, rest: Vec<u8> },
    /// Send `reply` (maybe empty), then close. Sticky: every later step
    /// fails again with the same error and no bytes.
    Failed { reply: Vec<u8>, error: ProtoError },
}

impl<T, E> Instruction<T, E> {
    /// A failure with nothing to send.
    pub fn failed(error: impl Into<ProtoError>) -> Self {
        Instruction::Failed {
            reply: Vec::new(),
            error: error.into(),
        }
    }

    /// Change the finished value's type.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Instruction<U, E> {
        match self {
            Instruction::NeedMore(n) => Instruction::NeedMore(n),
            Instruction::Send(b) => Instruction::Send(b),
            Instruction::Event(e) => Instruction::Event(e),
            Instruction::Finished { value, rest } => Instruction::Finished {
                value: f(value),
                rest,
            },
            Instruction::Failed { reply, error } => Instruction::Failed { reply, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_and_filled_never_pass_the_cap() {
        let mut input = Input::with_cap(5);
        let space = input.spare();
        assert_eq!(space.len(), 5);
        space[..3].copy_from_slice(b"abc");
        input.filled(3);
        assert_eq!(input.bytes(), b"abc");
        assert_eq!(input.spare().len(), 2);
        // Filled more than offered: clamped.
        input.filled(10);
        assert_eq!(input.len(), 5);
        assert!(input.spare().is_empty());
        assert_eq!(input.push(b"x"), 0);
    }

    #[test]
    fn unreported_spare_bytes_are_ignored() {
        let mut input = Input::with_cap(8);
        input.spare()[..4].copy_from_slice(b"junk");
        assert_eq!(input.push(b"ok"), 2);
        assert_eq!(input.bytes(), b"ok");
        input.consume(1);
        assert_eq!(input.bytes(), b"k");
        assert_eq!(input.take(), b"k");
        assert!(input.is_empty());
    }

    #[test]
    fn need_more_fails_when_full_or_closed() {
        let mut input = Input::with_cap(2);
        assert_eq!(input.need_more::<(), NoEvent>(0), Instruction::NeedMore(1));
        input.push(b"ab");
        assert_eq!(
            input.need_more::<(), NoEvent>(1),
            Instruction::failed(PeerError::MessageTooLong(2))
        );
        let mut input = Input::with_cap(2);
        input.close();
        assert_eq!(
            input.need_more::<(), NoEvent>(1),
            Instruction::failed(PeerError::UnexpectedEof)
        );
    }
}

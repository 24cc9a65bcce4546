//! The incremental parsing convention.
//!
//! Every parser takes the bytes received so far and returns either
//! [`Parsed::Incomplete`] (with the minimum number of further bytes it needs
//! before it can say more), [`Parsed::Complete`] (with the message and the
//! number of bytes it used), or an error. Running out of input is never an
//! error; a message longer than its cap always is.

/// The result of an incremental parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// At least `needed` more bytes are required (always ≥ 1).
    Incomplete { needed: usize },
    /// A whole message, which used the first `consumed` bytes of the input.
    Complete { value: T, consumed: usize },
}

impl<T> Parsed<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U> {
        match self {
            Parsed::Incomplete { needed } => Parsed::Incomplete { needed },
            Parsed::Complete { value, consumed } => Parsed::Complete {
                value: f(value),
                consumed,
            },
        }
    }

    /// The parsed value, if complete (test helper).
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Parsed::Complete { value, consumed } => Some((value, consumed)),
            Parsed::Incomplete { .. } => None,
        }
    }
}

/// Ask for more bytes unless `buf` holds at least `want`.
macro_rules! need {
    ($buf:expr, $want:expr) => {{
        let want: usize = $want;
        if $buf.len() < want {
            return Ok($crate::parse::Parsed::Incomplete {
                needed: want - $buf.len(),
            });
        }
    }};
}
pub(crate) use need;

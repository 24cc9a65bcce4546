//! Idempotence tokens, sans-IO: the proxy's per-user [`TokenWindow`], the
//! decision a proxy takes for one request ([`serve_tokens`]), and the
//! client's [`TokenWallet`].
//!
//! Tokens are 32-bit and compared modulo 2^32: `x < y` iff
//! `0 < (y − x) mod 2^32 < 2^31` ([`token_lt`]). A window is `[base,
//! base + size)` modulo 2^32 with `0 < size < 2^31`.
//!
//! Window shifting: when the token at the window's base is spent, the base
//! moves up past every spent token at the low end (so the window keeps its
//! size and never moves past the lowest unspent token, which the draft's
//! "SHOULD NOT shift the window's base beyond the highest unspent token"
//! allows). Tokens the base moved past are remembered as spent (up to 2^31
//! of them), so spending one again is a *duplicate*, not merely *out of
//! window*.
//!
//! Concurrency is the caller's: keep each user's `Option<TokenWindow>`
//! behind a lock and call [`serve_tokens`] under it, so a token is spent at
//! most once even when requests race.

use crate::EncodeError;

use super::options::{ExpenditureCode, IdempotenceOption, Options, Socks6Option};

/// Largest window this crate tracks (a bitmap of 8 KiB). Proxies grant at
/// most this many tokens whatever the client asks.
pub const MAX_WINDOW: u32 = 1 << 16;

const HALF: u32 = 1 << 31;

/// `x < y` in the draft's modular order.
pub fn token_lt(x: u32, y: u32) -> bool {
    let d = y.wrapping_sub(x);
    d != 0 && d < HALF
}

/// Whether a window size is legal on the wire: non-zero and below 2^31.
pub fn valid_window_size(size: u32) -> bool {
    size != 0 && size < HALF
}

/// What spending a token did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Spent; `shifted` if the window's base moved (advertise it again).
    Success { shifted: bool },
    /// Not in the window (nor among the remembered spent tokens below it).
    OutOfWindow,
    /// Already spent.
    Duplicate,
}

impl Spend {
    pub fn code(self) -> ExpenditureCode {
        match self {
            Spend::Success { .. } => ExpenditureCode::SUCCESS,
            Spend::OutOfWindow => ExpenditureCode::OUT_OF_WINDOW,
            Spend::Duplicate => ExpenditureCode::DUPLICATE,
        }
    }
}

/// A proxy's token window for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenWindow {
    base: u32,
    size: u32,
    /// Spent flags of the window's tokens, a ring of `size` bits: token
    /// `base + o` is bit `(head + o) % size`.
    bits: Vec<u64>,
    head: u32,
    /// How many tokens right below `base` are known spent.
    history: u32,
}

impl TokenWindow {
    /// A fresh window. `size` must be in `1..=MAX_WINDOW` (and so below
    /// 2^31).
    pub fn new(base: u32, size: u32) -> Result<Self, EncodeError> {
        if !valid_window_size(size) || size > MAX_WINDOW {
            return Err(EncodeError::BadTokenWindow(size));
        }
        Ok(TokenWindow {
            base,
            size,
            bits: vec![0; size.div_ceil(64) as usize],
            head: 0,
            history: 0,
        })
    }

    pub fn base(&self) -> u32 {
        self.base
    }
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The advertisement of the current window.
    pub fn advertisement(&self) -> IdempotenceOption {
        IdempotenceOption::WindowAdvertisement {
            base: self.base,
            size: self.size,
        }
    }

    /// Whether `token` lies in the window.
    pub fn contains(&self, token: u32) -> bool {
        token.wrapping_sub(self.base) < self.size
    }

    fn slot(&self, offset: u32) -> (usize, u64) {
        let i = ((self.head as u64 + offset as u64) % self.size as u64) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    fn is_spent(&self, offset: u32) -> bool {
        let (w, m) = self.slot(offset);
        self.bits[w] & m != 0
    }

    /// Spend `token`.
    pub fn spend(&mut self, token: u32) -> Spend {
        let below = self.base.wrapping_sub(token);
        if below != 0 && below <= self.history {
            return Spend::Duplicate;
        }
        let offset = token.wrapping_sub(self.base);
        if offset >= self.size {
            return Spend::OutOfWindow;
        }
        if self.is_spent(offset) {
            return Spend::Duplicate;
        }
        let (w, m) = self.slot(offset);
        self.bits[w] |= m;
        // Shift past the spent tokens at the low end. Bounded by `size`.
        let mut shifted = false;
        while self.is_spent(0) {
            let (w, m) = self.slot(0);
            self.bits[w] &= !m;
            self.head = (self.head + 1) % self.size;
            self.base = self.base.wrapping_add(1);
            self.history = (self.history + 1).min(HALF - self.size);
            shifted = true;
        }
        Spend::Success { shifted }
    }
}

/// The proxy's token policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Largest window granted (clamped to [`MAX_WINDOW`]); 0 grants none
    /// (token requests are then ignored, as the draft says).
    pub max_window: u32,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy { max_window: 1024 }
    }
}

/// What a proxy does about one request's idempotence options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenDecision {
    /// Options for the successful authentication reply (expenditure reply,
    /// window advertisement).
    pub options: Options,
    /// `false` when a token was offered and could not be spent: the request
    /// must not be carried out, and the operation reply says general failure.
    pub proceed: bool,
    /// The outcome of the spend, if a token was offered.
    pub spend: Option<ExpenditureCode>,
}

/// Apply a request's idempotence options to the user's window `slot`.
///
/// 1. A token expenditure is checked first, against the current window:
///    no window → `NO_WINDOW`; out of window → `OUT_OF_WINDOW` plus an
///    advertisement of the current window; duplicate → `DUPLICATE`;
///    success → `SUCCESS` plus an advertisement if the window shifted.
/// 2. A token request with a legal size (`1..2^31`) is then granted —
///    `min(requested, policy.max_window, MAX_WINDOW)` tokens from
///    `new_base` (pass a random number), replacing any old window — unless
///    the spend was a duplicate or out of window (a replayed request must not
///    reset the window). An illegal size or a zero policy: silently ignored.
///
/// At most one advertisement is produced (the final window).
pub fn serve_tokens(
    slot: &mut Option<TokenWindow>,
    request: &Options,
    policy: &TokenPolicy,
    new_base: u32,
) -> TokenDecision {
    let mut code = None;
    let mut advertise = false;
    if let Some(token) = request.token_expenditure() {
        let c = match slot.as_mut() {
            None => ExpenditureCode::NO_WINDOW,
            Some(w) => {
                let s = w.spend(token);
                advertise = matches!(s, Spend::OutOfWindow | Spend::Success { shifted: true });
                s.code()
            }
        };
        code = Some(c);
    }
    let spend_ok = matches!(
        code,
        None | Some(ExpenditureCode::SUCCESS) | Some(ExpenditureCode::NO_WINDOW)
    );
    if let Some(requested) = request.token_request() {
        let grant = requested.min(policy.max_window).min(MAX_WINDOW);
        if spend_ok && valid_window_size(requested) && grant > 0 {
            if let Ok(w) = TokenWindow::new(new_base, grant) {
                *slot = Some(w);
                advertise = true;
            }
        }
    }
    let mut options = Options::new();
    if let Some(c) = code {
        options.push(Socks6Option::Idempotence(
            IdempotenceOption::ExpenditureReply(c),
        ));
    }
    if advertise {
        if let Some(w) = slot.as_ref() {
            options.push(Socks6Option::Idempotence(w.advertisement()));
        }
    }
    TokenDecision {
        options,
        proceed: matches!(code, None | Some(ExpenditureCode::SUCCESS)),
        spend: code,
    }
}

/// What to put in the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedTokens {
    /// Idempotence options to add to the request.
    pub options: Vec<Socks6Option>,
    /// The token spent on this request (the request is replay-safe only
    /// when this is `Some` and the proxy answers success).
    pub token: Option<u32>,
}

/// The client's tokens: asks for a window, spends the smallest token first,
/// asks again when the window is used up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenWallet {
    want: u32,
    /// `(base, size)` of the known window.
    window: Option<(u32, u32)>,
    /// Next token to spend.
    next: u32,
    /// A token request is outstanding.
    requested: bool,
}

impl TokenWallet {
    /// A wallet that asks for windows of `window_size` tokens.
    pub fn new(window_size: u32) -> Result<Self, EncodeError> {
        if !valid_window_size(window_size) {
            return Err(EncodeError::BadTokenWindow(window_size));
        }
        Ok(TokenWallet {
            want: window_size,
            window: None,
            next: 0,
            requested: false,
        })
    }

    /// Tokens left to spend.
    pub fn remaining(&self) -> u32 {
        match self.window {
            None => 0,
            Some((base, size)) => {
                let used = self.next.wrapping_sub(base);
                size.saturating_sub(used)
            }
        }
    }

    /// The known window, as `(base, size)`.
    pub fn window(&self) -> Option<(u32, u32)> {
        self.window
    }

    /// Take the smallest unspent token.
    pub fn take(&mut self) -> Option<u32> {
        if self.remaining() == 0 {
            return None;
        }
        let t = self.next;
        self.next = self.next.wrapping_add(1);
        Some(t)
    }

    /// The idempotence options for the next request: the smallest token
    /// (if any), and a token request when the wallet is (now) empty.
    pub fn prepare(&mut self) -> PreparedTokens {
        let token = self.take();
        let mut options = Vec::new();
        if let Some(t) = token {
            options.push(Socks6Option::Idempotence(IdempotenceOption::Expenditure {
                token: t,
            }));
        }
        if self.remaining() == 0 {
            options.push(Socks6Option::Idempotence(IdempotenceOption::TokenRequest {
                window_size: self.want,
            }));
            self.requested = true;
        }
        PreparedTokens { options, token }
    }

    /// Learn from a successful authentication reply's options.
    pub fn on_auth_reply(&mut self, options: &Options) {
        let spend = options.expenditure_reply();
        if spend == Some(ExpenditureCode::NO_WINDOW) {
            self.window = None;
        }
        if let Some((base, size)) = options.window_advertisement() {
            // The window that comes with an "out of window" answer is the
            // proxy's current one, whatever its base: our tokens are no
            // longer valid, so it is authoritative, not stale.
            if spend == Some(ExpenditureCode::OUT_OF_WINDOW) {
                self.requested = true;
            }
            self.on_advertisement(base, size);
        }
        self.requested = false;
    }

    /// A window advertisement. One we asked for replaces the window; an
    /// unsolicited one whose base is below the known base is stale (the
    /// draft: advertisements can arrive out of order) and is ignored.
    /// Illegal sizes are ignored.
    pub fn on_advertisement(&mut self, base: u32, size: u32) {
        if !valid_window_size(size) {
            return;
        }
        if let (false, Some((old, _))) = (self.requested, self.window) {
            if token_lt(base, old) {
                return;
            }
        }
        self.window = Some((base, size));
        // Tokens below the new base are gone; a fresh window starts over.
        if self.requested || self.next.wrapping_sub(base) > size {
            self.next = base;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modular_order() {
        assert!(token_lt(1, 2));
        assert!(!token_lt(2, 1));
        assert!(!token_lt(5, 5));
        assert!(token_lt(u32::MAX, 0), "wraps");
        assert!(token_lt(u32::MAX - 10, 10));
        assert!(!token_lt(10, u32::MAX - 10));
        // Exactly 2^31 apart: neither is less.
        assert!(!token_lt(0, HALF));
        assert!(!token_lt(HALF, 0));
        assert!(token_lt(0, HALF - 1));
    }

    #[test]
    fn window_sizes() {
        assert!(TokenWindow::new(0, 0).is_err());
        assert!(TokenWindow::new(0, HALF).is_err());
        assert!(TokenWindow::new(0, u32::MAX).is_err());
        assert!(TokenWindow::new(0, MAX_WINDOW + 1).is_err());
        assert!(TokenWindow::new(0, 1).is_ok());
        assert!(TokenWindow::new(0, MAX_WINDOW).is_ok());
    }

    #[test]
    fn spend_in_order_shifts_the_window() {
        let mut w = TokenWindow::new(100, 4).unwrap();
        assert_eq!(w.spend(100), Spend::Success { shifted: true });
        assert_eq!((w.base(), w.size()), (101, 4));
        assert_eq!(w.spend(100), Spend::Duplicate);
        // The window is 101..=104 now.
        assert_eq!(w.spend(104), Spend::Success { shifted: false });
        assert_eq!(w.spend(105), Spend::OutOfWindow);
        assert_eq!(w.spend(99), Spend::OutOfWindow, "never granted");
    }

    #[test]
    fn spend_out_of_order_shifts_only_past_the_spent_prefix() {
        let mut w = TokenWindow::new(0, 8).unwrap();
        assert_eq!(w.spend(3), Spend::Success { shifted: false });
        assert_eq!(w.spend(1), Spend::Success { shifted: false });
        assert_eq!(w.base(), 0);
        assert_eq!(w.spend(0), Spend::Success { shifted: true });
        // 0 and 1 spent: base moves to 2 (the lowest unspent), not past it.
        assert_eq!(w.base(), 2);
        assert_eq!(w.spend(3), Spend::Duplicate);
        assert_eq!(w.spend(2), Spend::Success { shifted: true });
        assert_eq!(w.base(), 4, "2 and 3 spent");
        for t in 0..4 {
            assert_eq!(w.spend(t), Spend::Duplicate, "token {t}");
        }
        assert!(w.contains(11) && !w.contains(12));
    }

    #[test]
    fn window_across_the_wrap() {
        let base = u32::MAX - 2;
        let mut w = TokenWindow::new(base, 6).unwrap();
        // Window: MAX-2, MAX-1, MAX, 0, 1, 2.
        assert!(w.contains(u32::MAX) && w.contains(0) && w.contains(2));
        assert!(!w.contains(3) && !w.contains(u32::MAX - 3));
        assert_eq!(w.spend(1), Spend::Success { shifted: false });
        assert_eq!(w.spend(3), Spend::OutOfWindow);
        for t in [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0] {
            assert!(matches!(w.spend(t), Spend::Success { .. }), "token {t}");
        }
        // Everything up to 1 spent: base is 2, across the wrap.
        assert_eq!(w.base(), 2);
        assert_eq!(w.spend(u32::MAX), Spend::Duplicate);
        assert_eq!(w.spend(0), Spend::Duplicate);
        assert_eq!(w.spend(7), Spend::Success { shifted: false });
        assert_eq!(w.spend(8), Spend::OutOfWindow);
    }

    #[test]
    fn every_token_spends_exactly_once_over_many_windows() {
        // Walk 3 windows' worth of tokens across the wrap, each spent twice.
        let mut w = TokenWindow::new(u32::MAX - 40, 32).unwrap();
        let mut t = u32::MAX - 40;
        for _ in 0..96 {
            assert_eq!(w.spend(t), Spend::Success { shifted: true });
            assert_eq!(w.spend(t), Spend::Duplicate);
            t = t.wrapping_add(1);
        }
        assert_eq!(w.base(), t);
    }

    fn opts(v: Vec<IdempotenceOption>) -> Options {
        v.into_iter().map(Socks6Option::Idempotence).collect()
    }

    #[test]
    fn serve_grants_spends_and_refuses() {
        let policy = TokenPolicy { max_window: 16 };
        let mut slot = None;
        // Spend without a window.
        let d = serve_tokens(
            &mut slot,
            &opts(vec![IdempotenceOption::Expenditure { token: 5 }]),
            &policy,
            0,
        );
        assert!(!d.proceed);
        assert_eq!(d.spend, Some(ExpenditureCode::NO_WINDOW));
        // Ask for 1000, get 16 from base 7.
        let d = serve_tokens(
            &mut slot,
            &opts(vec![IdempotenceOption::TokenRequest { window_size: 1000 }]),
            &policy,
            7,
        );
        assert!(d.proceed);
        assert_eq!(d.spend, None);
        assert_eq!(
            d.options,
            opts(vec![IdempotenceOption::WindowAdvertisement {
                base: 7,
                size: 16
            }])
        );
        // Spend 8 (no shift): success, no advertisement.
        let d = serve_tokens(
            &mut slot,
            &opts(vec![IdempotenceOption::Expenditure { token: 8 }]),
            &policy,
            0,
        );
        assert!(d.proceed);
        assert_eq!(
            d.options,
            opts(vec![IdempotenceOption::ExpenditureReply(
                ExpenditureCode::SUCCESS
            )])
        );
        // Spend 7: shift to 9, advertised.
        let d = serve_tokens(
            &mut slot,
            &opts(vec![IdempotenceOption::Expenditure { token: 7 }]),
            &policy,
            0,
        );
        assert_eq!(
            d.options,
            opts(vec![
                IdempotenceOption::ExpenditureReply(ExpenditureCode::SUCCESS),
                IdempotenceOption::WindowAdvertisement { base: 9, size: 16 },
            ])
        );
        // Replay of 8: duplicate, refused, even with a token request.
        let d = serve_tokens(
            &mut slot,
            &opts(vec![
                IdempotenceOption::Expenditure { token: 8 },
                IdempotenceOption::TokenRequest { window_size: 4 },
            ]),
            &policy,
            1000,
        );
        assert!(!d.proceed);
        assert_eq!(d.spend, Some(ExpenditureCode::DUPLICATE));
        assert_eq!(slot.as_ref().map(|w| w.base()), Some(9), "window not reset");
        // Out of window: refused, current window advertised.
        let d = serve_tokens(
            &mut slot,
            &opts(vec![IdempotenceOption::Expenditure { token: 500 }]),
            &policy,
            0,
        );
        assert!(!d.proceed);
        assert_eq!(
            d.options,
            opts(vec![
                IdempotenceOption::ExpenditureReply(ExpenditureCode::OUT_OF_WINDOW),
                IdempotenceOption::WindowAdvertisement { base: 9, size: 16 },
            ])
        );
    }

    #[test]
    fn illegal_window_requests_are_ignored() {
        let policy = TokenPolicy::default();
        for size in [0, HALF, u32::MAX] {
            let mut slot = None;
            let d = serve_tokens(
                &mut slot,
                &opts(vec![IdempotenceOption::TokenRequest { window_size: size }]),
                &policy,
                1,
            );
            assert!(d.proceed);
            assert!(d.options.is_empty(), "size {size}");
            assert!(slot.is_none());
        }
        // A zero policy grants nothing.
        let mut slot = None;
        let d = serve_tokens(
            &mut slot,
            &opts(vec![IdempotenceOption::TokenRequest { window_size: 8 }]),
            &TokenPolicy { max_window: 0 },
            1,
        );
        assert!(d.options.is_empty() && slot.is_none());
    }

    #[test]
    fn wallet_spends_smallest_first_and_refreshes() {
        assert!(TokenWallet::new(0).is_err());
        assert!(TokenWallet::new(HALF).is_err());
        let mut w = TokenWallet::new(3).unwrap();
        // Empty: the first request asks for a window and spends nothing.
        let p = w.prepare();
        assert_eq!(p.token, None);
        assert_eq!(
            p.options,
            vec![Socks6Option::Idempotence(IdempotenceOption::TokenRequest {
                window_size: 3
            })]
        );
        w.on_auth_reply(&opts(vec![IdempotenceOption::WindowAdvertisement {
            base: u32::MAX - 1,
            size: 3,
        }]));
        assert_eq!(w.remaining(), 3);
        assert_eq!(w.prepare().token, Some(u32::MAX - 1));
        assert_eq!(w.prepare().token, Some(u32::MAX));
        // The last token goes with a request for a new window.
        let p = w.prepare();
        assert_eq!(p.token, Some(0));
        assert_eq!(p.options.len(), 2);
        assert_eq!(w.remaining(), 0);
        w.on_auth_reply(&opts(vec![
            IdempotenceOption::ExpenditureReply(ExpenditureCode::SUCCESS),
            IdempotenceOption::WindowAdvertisement { base: 50, size: 3 },
        ]));
        assert_eq!(w.take(), Some(50));
    }

    #[test]
    fn wallet_ignores_stale_and_illegal_advertisements() {
        let mut w = TokenWallet::new(8).unwrap();
        let _ = w.prepare();
        w.on_advertisement(100, 8);
        w.on_auth_reply(&Options::new());
        assert_eq!(w.take(), Some(100));
        // Unsolicited, lower base: stale.
        w.on_advertisement(90, 8);
        assert_eq!(w.window(), Some((100, 8)));
        // Illegal sizes.
        w.on_advertisement(200, 0);
        w.on_advertisement(200, HALF);
        assert_eq!(w.window(), Some((100, 8)));
        // Unsolicited shift upward: keep spending from where we are.
        w.on_advertisement(101, 8);
        assert_eq!(w.take(), Some(101));
        // A shift past our position: jump to the new base.
        w.on_advertisement(150, 8);
        assert_eq!(w.take(), Some(150));
        // No window at the proxy: forget ours.
        w.on_auth_reply(&opts(vec![IdempotenceOption::ExpenditureReply(
            ExpenditureCode::NO_WINDOW,
        )]));
        assert_eq!(w.window(), None);
        assert_eq!(w.take(), None);
    }

    #[test]
    fn wallet_takes_the_window_sent_with_out_of_window() {
        let mut w = TokenWallet::new(8).unwrap();
        let _ = w.prepare();
        w.on_advertisement(100, 8);
        w.on_auth_reply(&Options::new());
        assert_eq!(w.take(), Some(100));
        // The proxy replaced our window with one at a lower base (a new
        // random base): with "out of window" it is the one to use.
        w.on_auth_reply(&opts(vec![
            IdempotenceOption::ExpenditureReply(ExpenditureCode::OUT_OF_WINDOW),
            IdempotenceOption::WindowAdvertisement { base: 40, size: 8 },
        ]));
        assert_eq!(w.window(), Some((40, 8)));
        assert_eq!(w.take(), Some(40));
    }
}

//! SOCKS 6 idempotence token windows (draft -05): one per owner,
//! kept across reloads, the least recently used forgotten when full.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sixsocks_proto::v6::idempotence::{serve_tokens, TokenDecision, TokenPolicy, TokenWindow};
use sixsocks_proto::v6::Options;

/// Token windows kept at most (one per verified user, or per client
/// address); beyond it, the least recently used window is forgotten (its
/// owner asks for a new one), never everyone's.
const MAX_WINDOWS: usize = 65_536;

/// Idempotence windows, one per owner (`Record::owner_key`). Spending
/// happens under the lock, so a token is spent at most once even when one
/// owner's requests race.
#[derive(Default)]
pub struct TokenStore {
    inner: Mutex<Windows>,
    policy: TokenPolicy,
    /// Most windows kept (MAX_WINDOWS; smaller in tests).
    max_windows: usize,
}

/// The windows by owner, with their last use, and the owners by last use
/// (oldest first) for eviction.
#[derive(Default)]
struct Windows {
    by_owner: HashMap<Vec<u8>, (u64, Option<TokenWindow>)>,
    by_use: std::collections::BTreeMap<u64, Vec<u8>>,
    clock: u64,
}

impl TokenStore {
    /// A store granting windows of at most `max_window` tokens (0: none).
    pub fn new(max_window: u32) -> Self {
        Self::with_capacity(max_window, MAX_WINDOWS)
    }

    fn with_capacity(max_window: u32, max_windows: usize) -> Self {
        TokenStore {
            inner: Mutex::default(),
            policy: TokenPolicy { max_window },
            max_windows: max_windows.max(1),
        }
    }

    pub(super) fn serve(&self, key: Vec<u8>, options: &Options) -> TokenDecision {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let w = &mut *guard;
        w.clock += 1;
        let now = w.clock;
        let window = match w.by_owner.remove(&key) {
            Some((used, window)) => {
                w.by_use.remove(&used);
                window
            }
            None => {
                if w.by_owner.len() >= self.max_windows {
                    if let Some((_, oldest)) = w.by_use.pop_first() {
                        w.by_owner.remove(&oldest);
                        tracing::debug!(
                            "socks6 token table full: forgot the least recently used window"
                        );
                    }
                }
                None
            }
        };
        let entry = w.by_owner.entry(key.clone()).or_insert((now, window));
        let decision = serve_tokens(&mut entry.1, options, &self.policy, OsRng.next_u32());
        w.by_use.insert(now, key);
        decision
    }

    /// Windows kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map_or(0, |w| w.by_owner.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sixsocks_proto::v6::options::IdempotenceOption;
    use sixsocks_proto::v6::Socks6Option;

    fn ask(window: u32) -> Options {
        Options(vec![Socks6Option::Idempotence(
            IdempotenceOption::TokenRequest {
                window_size: window,
            },
        )])
    }

    /// Issue 11, item 9: a full table forgets the least recently used
    /// window, not everyone's (it was cleared whole before).
    #[test]
    fn a_full_token_table_evicts_the_oldest_window() {
        let store = TokenStore::with_capacity(16, 3);
        for owner in ["a", "b", "c"] {
            store.serve(owner.into(), &ask(8));
        }
        // "a" is used again: "b" becomes the oldest.
        store.serve("a".into(), &Options::new());
        store.serve("d".into(), &ask(8));
        assert_eq!(store.len(), 3);
        let w = store.inner.lock().unwrap();
        assert!(w.by_owner.contains_key(b"a".as_slice()));
        assert!(!w.by_owner.contains_key(b"b".as_slice()), "the oldest goes");
        assert!(w.by_owner.contains_key(b"c".as_slice()));
        assert!(w.by_owner.contains_key(b"d".as_slice()));
        assert_eq!(w.by_use.len(), 3);
    }
}

//! Re-sent webhooks: wa-hub may deliver the same webhook again (the dashboard reference says
//! re-sends happen). A body whose SHA-256 was seen within `webhook.dedup_window_secs` is a
//! duplicate: answered 200 `{"ok":true,"duplicate":true}`, not stored, not routed, counted as
//! `webhooks_duplicate_total` (issue 14, item 15).
//!
//! Memory is bounded: at most [`MAX_REMEMBERED`] digests are kept (about 100 bytes each); past
//! that the oldest is forgotten early, so under a flood of distinct bodies a re-send may get
//! through again. Only bodies that were accepted are remembered.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Most body digests remembered at once.
pub const MAX_REMEMBERED: usize = 100_000;

type Sha = [u8; 32];

/// The digests of recently accepted bodies, each with the time it was first seen.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The digests remembered (when: in `order`).
    at: HashSet<Sha>,
    /// The same digests, oldest first.
    order: VecDeque<(Sha, Instant)>,
}

impl Dedup {
    /// Remembers bodies for `window`; a zero window turns deduplication off.
    pub fn new(window: Duration) -> Self {
        Self::with_capacity(window, MAX_REMEMBERED)
    }

    /// Like [`Dedup::new`], remembering at most `capacity` digests.
    pub fn with_capacity(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Whether `body` was seen within the window before `now`; if not, remembers it as seen
    /// at `now`. One atomic step, so of two identical deliveries at once exactly one is new.
    /// A duplicate does not extend its digest's window (re-sends are counted from the first
    /// delivery).
    pub fn is_duplicate(&self, body: &[u8], now: Instant) -> bool {
        if self.window.is_zero() {
            return false;
        }
        let sha: Sha = Sha256::digest(body).into();
        let mut seen = self.seen.lock();
        seen.expire(now, self.window);
        if seen.at.contains(&sha) {
            return true;
        }
        while seen.order.len() >= self.capacity {
            seen.forget_oldest();
        }
        seen.at.insert(sha);
        seen.order.push_back((sha, now));
        false
    }

    /// Digests remembered now.
    pub fn len(&self) -> usize {
        self.seen.lock().order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Seen {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((_, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < window {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((sha, _)) = self.order.pop_front() {
            self.at.remove(&sha);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_body_seen_within_the_window_is_a_duplicate() {
        let d = Dedup::new(MIN);
        let t = Instant::now();
        assert!(!d.is_duplicate(b"{\"a\":1}", t));
        assert!(d.is_duplicate(b"{\"a\":1}", t + Duration::from_secs(59)));
        assert!(!d.is_duplicate(b"{\"a\":2}", t));
        assert!(!d.is_duplicate(b"{\"a\": 1}", t), "bytes, not JSON values");
    }

    #[test]
    fn after_the_window_the_body_is_new_again() {
        let d = Dedup::new(MIN);
        let t = Instant::now();
        assert!(!d.is_duplicate(b"x", t));
        assert!(d.is_duplicate(b"x", t + Duration::from_secs(30)));
        assert!(!d.is_duplicate(b"x", t + MIN));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn zero_window_turns_it_off() {
        let d = Dedup::new(Duration::ZERO);
        let t = Instant::now();
        assert!(!d.is_duplicate(b"x", t));
        assert!(!d.is_duplicate(b"x", t));
        assert!(d.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_oldest() {
        let d = Dedup::with_capacity(MIN, 3);
        let t = Instant::now();
        for b in [b"1", b"2", b"3", b"4"] {
            assert!(!d.is_duplicate(b, t));
        }
        assert_eq!(d.len(), 3);
        assert!(!d.is_duplicate(b"1", t), "the oldest was forgotten");
        assert!(d.is_duplicate(b"4", t));
    }
}

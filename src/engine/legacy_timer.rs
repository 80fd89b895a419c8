//! The lazy-cancel `(deadline, token, kind)` heap of the roles not yet on [`super::timer::Timers`].
//!
//! There is no per-connection timer object and no cancel operation. A connection keeps its own
//! deadline; when an entry fires, the role checks the token (stale generation: ignore) and the
//! connection's current deadline (moved later: re-arm once at the new deadline). Roles keep at
//! most one outstanding entry per connection and kind, so the heap is bounded by
//! `connections × kinds`; `arm` refuses past the capacity given at construction.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::Token;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    seq: u64,
    token: usize,
    kind: u8,
}

pub struct LegacyTimers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    capacity: usize,
}

/// The heap is full: the role asked for more outstanding timers than it declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyTimersFull;

#[allow(dead_code)]
impl LegacyTimers {
    pub fn new(capacity: usize) -> LegacyTimers {
        LegacyTimers { heap: BinaryHeap::new(), seq: 0, capacity }
    }

    /// Raises the bound (roles call this once they know their connection budget).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps only the entries `keep` accepts, O(len). Cancellation is lazy (a cancelled entry
    /// stays until its deadline and is ignored when it fires); an owner whose entries can
    /// outlive it by long (an idle timeout of minutes) calls this before the heap fills, to drop
    /// the entries of owners that are gone.
    pub fn retain(&mut self, mut keep: impl FnMut(Token, u8) -> bool) {
        self.heap.retain(|Reverse(e)| keep(Token(e.token), e.kind));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn arm(&mut self, at: Instant, token: Token, kind: u8) -> Result<(), LegacyTimersFull> {
        if self.heap.len() >= self.capacity {
            return Err(LegacyTimersFull);
        }
        self.seq += 1;
        self.heap.push(Reverse(Entry { at, seq: self.seq, token: token.0, kind }));
        Ok(())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Time until the next deadline, capped at `cap`.
    pub fn timeout(&self, now: Instant, cap: Duration) -> Duration {
        match self.next_deadline() {
            Some(at) => at.saturating_duration_since(now).min(cap),
            None => cap,
        }
    }

    /// Pops one entry whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(Token, u8)> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.at <= now => {
                let Reverse(e) = self.heap.pop()?;
                Some((Token(e.token), e.kind))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_drops_rejected_entries_and_keeps_the_order() {
        let t0 = Instant::now();
        let mut t = LegacyTimers::new(4);
        for i in 0..4 {
            t.arm(t0 + Duration::from_millis(10 * (4 - i)), Token(i as usize), 0).unwrap();
        }
        assert_eq!(t.arm(t0, Token(9), 0), Err(LegacyTimersFull));
        t.retain(|tok, _| tok.0 % 2 == 0);
        assert_eq!(t.len(), 2);
        t.arm(t0, Token(9), 0).unwrap();
        let later = t0 + Duration::from_secs(1);
        let fired: Vec<usize> = std::iter::from_fn(|| t.pop_expired(later)).map(|(tok, _)| tok.0).collect();
        assert_eq!(fired, vec![9, 2, 0]);
    }

    #[test]
    fn fires_in_deadline_order_then_fifo() {
        let t0 = Instant::now();
        let mut t = LegacyTimers::new(8);
        t.arm(t0 + Duration::from_millis(30), Token(3), 0).unwrap();
        t.arm(t0 + Duration::from_millis(10), Token(1), 0).unwrap();
        t.arm(t0 + Duration::from_millis(10), Token(2), 1).unwrap();
        assert_eq!(t.pop_expired(t0), None);
        let later = t0 + Duration::from_millis(20);
        assert_eq!(t.pop_expired(later), Some((Token(1), 0)));
        assert_eq!(t.pop_expired(later), Some((Token(2), 1)));
        assert_eq!(t.pop_expired(later), None);
        assert_eq!(t.timeout(later, Duration::from_secs(1)), Duration::from_millis(10));
        assert_eq!(t.pop_expired(t0 + Duration::from_millis(30)), Some((Token(3), 0)));
        assert!(t.is_empty());
    }

    #[test]
    fn timeout_is_capped_and_never_negative() {
        let t0 = Instant::now();
        let mut t = LegacyTimers::new(2);
        assert_eq!(t.timeout(t0, Duration::from_millis(100)), Duration::from_millis(100));
        t.arm(t0, Token(1), 0).unwrap();
        assert_eq!(t.timeout(t0 + Duration::from_secs(1), Duration::from_millis(100)), Duration::ZERO);
    }

    #[test]
    fn capacity_is_enforced() {
        let now = Instant::now();
        let mut t = LegacyTimers::new(1);
        t.arm(now, Token(1), 0).unwrap();
        assert_eq!(t.arm(now, Token(2), 0), Err(LegacyTimersFull));
    }
}

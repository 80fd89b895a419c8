//! One timer structure per reactor: an indexed min-heap keyed by (owner, kind).
//!
//! An owner is a table entry ([`Key`]) or a role [`Handle`] (a listener, the pacing clock);
//! each has [`KINDS`] timer kinds, and each (owner, kind) holds at most one deadline. `arm`
//! sets or moves it, `cancel` removes it, both O(log n): every (owner, kind) knows its heap
//! position. Closing an entry cancels all its kinds ([`super::table::Table::close`]), so nothing
//! stale stays behind and nothing needs purging. The heap is bounded by construction, at
//! `(handles + entries) × KINDS`: arming cannot fail.
//!
//! Equal deadlines fire in the order they were armed. A role that keeps a deadline that moves
//! often (an idle timeout moved by every read) may still re-arm lazily: let the timer fire,
//! compare with the current deadline, arm again if it moved.

use std::time::{Duration, Instant};

use super::table::Key;
use super::{Handle, MAX_HANDLES};

/// Timer kinds per owner: `Kind::new(0)` to `Kind::new(KINDS - 1)`.
pub const KINDS: usize = 4;

/// A timer kind. Each owner has its own kinds: a listener's kind 0 and a session's kind 0 are
/// different timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind(u8);

impl Kind {
    /// Panics (at compile time, in a `const`) past [`KINDS`].
    pub const fn new(k: u8) -> Kind {
        assert!((k as usize) < KINDS, "timer kind out of range");
        Kind(k)
    }
}

/// Whose timer: an entry of the reactor's table, or a handle of the role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Entry(Key),
    Handle(Handle),
}

impl From<Key> for Owner {
    fn from(k: Key) -> Owner {
        Owner::Entry(k)
    }
}

impl From<Handle> for Owner {
    fn from(h: Handle) -> Owner {
        Owner::Handle(h)
    }
}

/// A fired timer as the heap knows it: a handle, or a table slot with the generation it was
/// armed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    Handle(Handle),
    Slot(u32, u32),
}

/// One armed timer, 24 bytes (every armed timer of every connection has one): its deadline in
/// nanoseconds from the heap's base instant, its arming order (wrapping; it only orders
/// timers with the same deadline), its (owner, kind) index and the entry's generation.
#[derive(Clone, Copy, Debug)]
struct Node {
    at: u64,
    seq: u32,
    idx: u32,
    gen: u32,
}

impl Node {
    fn before(&self, o: &Node) -> bool {
        self.at < o.at || (self.at == o.at && (self.seq.wrapping_sub(o.seq) as i32) < 0)
    }
}

const NONE: u32 = u32::MAX;

#[derive(Default)]
pub struct Timers {
    heap: Vec<Node>,
    /// Heap position of each (owner, kind), `NONE` when it is not armed.
    pos: Vec<u32>,
    seq: u32,
    /// Deadlines are kept as nanoseconds from this instant (an hour before the first one
    /// armed); one further in the past is kept as the base itself, which is as due.
    base: Option<Instant>,
}

fn index(owner: Owner, kind: Kind) -> (usize, u32) {
    let k = kind.0 as usize;
    match owner {
        Owner::Handle(h) => (h.index() * KINDS + k, 0),
        Owner::Entry(key) => ((MAX_HANDLES + key.slot() as usize) * KINDS + k, key.gen()),
    }
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Armed timers.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Sets (owner, kind) to fire at `at`, replacing the deadline it had. An entry's key must be
    /// live (the role holds the entry, or [`super::Cx::arm`] checked it).
    pub fn arm(&mut self, owner: impl Into<Owner>, kind: Kind, at: Instant) {
        let (idx, gen) = index(owner.into(), kind);
        self.seq = self.seq.wrapping_add(1);
        let base = *self.base.get_or_insert_with(|| at.checked_sub(Duration::from_secs(3600)).unwrap_or(at));
        let ns = at.saturating_duration_since(base).as_nanos().min(u64::MAX as u128) as u64;
        let node = Node { at: ns, seq: self.seq, idx: idx as u32, gen };
        match self.pos.get(idx).copied().filter(|p| *p != NONE) {
            Some(p) => {
                self.heap[p as usize] = node;
                self.fix(p as usize);
            }
            None => {
                if self.pos.len() <= idx {
                    self.pos.resize(idx + 1, NONE);
                }
                self.heap.push(node);
                let p = self.heap.len() - 1;
                self.pos[idx] = p as u32;
                self.up(p);
            }
        }
    }

    /// Arms (owner, kind) at `at` unless it is armed already at or before `at`.
    pub fn arm_earlier(&mut self, owner: impl Into<Owner>, kind: Kind, at: Instant) {
        let owner = owner.into();
        if self.deadline(owner, kind).is_none_or(|d| at < d) {
            self.arm(owner, kind, at);
        }
    }

    /// The deadline (owner, kind) is armed for.
    pub fn deadline(&self, owner: impl Into<Owner>, kind: Kind) -> Option<Instant> {
        let (idx, _) = index(owner.into(), kind);
        let p = *self.pos.get(idx)?;
        (p != NONE).then(|| self.instant(self.heap[p as usize].at))
    }

    pub fn cancel(&mut self, owner: impl Into<Owner>, kind: Kind) {
        let (idx, _) = index(owner.into(), kind);
        if let Some(p) = self.pos.get(idx).copied().filter(|p| *p != NONE) {
            self.remove_at(p as usize);
        }
    }

    /// Cancels every kind of entry `key` (it closed).
    pub(crate) fn cancel_entry(&mut self, key: Key) {
        for k in 0..KINDS as u8 {
            self.cancel(key, Kind(k));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|n| self.instant(n.at))
    }

    /// A kept deadline as an instant (a node exists only once something was armed, so the
    /// base is set).
    fn instant(&self, ns: u64) -> Instant {
        match self.base {
            Some(base) => base + Duration::from_nanos(ns),
            None => Instant::now(),
        }
    }

    /// Time until the next deadline, capped at `cap`.
    pub fn timeout(&self, now: Instant, cap: Duration) -> Duration {
        match self.next_deadline() {
            Some(at) => at.saturating_duration_since(now).min(cap),
            None => cap,
        }
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(Fired, Kind)> {
        let n = *self.heap.first().filter(|n| self.instant(n.at) <= now)?;
        self.remove_at(0);
        let kind = Kind((n.idx as usize % KINDS) as u8);
        let owner = n.idx as usize / KINDS;
        let fired = if owner < MAX_HANDLES {
            Fired::Handle(Handle::new(owner))
        } else {
            Fired::Slot((owner - MAX_HANDLES) as u32, n.gen)
        };
        Some((fired, kind))
    }

    fn remove_at(&mut self, p: usize) {
        let idx = self.heap[p].idx as usize;
        self.pos[idx] = NONE;
        let last = self.heap.len() - 1;
        if p != last {
            self.heap.swap(p, last);
            self.pos[self.heap[p].idx as usize] = p as u32;
        }
        self.heap.pop();
        if p < self.heap.len() {
            self.fix(p);
        }
    }

    fn fix(&mut self, p: usize) {
        if p > 0 && self.heap[p].before(&self.heap[(p - 1) / 2]) {
            self.up(p);
        } else {
            self.down(p);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].idx as usize] = a as u32;
        self.pos[self.heap[b].idx as usize] = b as u32;
    }

    fn up(&mut self, mut p: usize) {
        while p > 0 {
            let parent = (p - 1) / 2;
            if !self.heap[p].before(&self.heap[parent]) {
                break;
            }
            self.swap(p, parent);
            p = parent;
        }
    }

    fn down(&mut self, mut p: usize) {
        loop {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            let mut best = p;
            if l < self.heap.len() && self.heap[l].before(&self.heap[best]) {
                best = l;
            }
            if r < self.heap.len() && self.heap[r].before(&self.heap[best]) {
                best = r;
            }
            if best == p {
                break;
            }
            self.swap(p, best);
            p = best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::table::{Entry, Table};

    const A: Kind = Kind::new(0);
    const B: Kind = Kind::new(3);

    fn h(i: usize) -> Handle {
        Handle::new(i)
    }

    fn drain(t: &mut Timers, now: Instant) -> Vec<(Fired, Kind)> {
        std::iter::from_fn(|| t.pop_expired(now)).collect()
    }

    #[test]
    fn fires_in_deadline_order_then_arm_order() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.arm(h(3), A, t0 + Duration::from_millis(30));
        t.arm(h(1), A, t0 + Duration::from_millis(10));
        t.arm(h(2), B, t0 + Duration::from_millis(10));
        assert_eq!(t.pop_expired(t0), None);
        let later = t0 + Duration::from_millis(20);
        assert_eq!(t.pop_expired(later), Some((Fired::Handle(h(1)), A)));
        assert_eq!(t.pop_expired(later), Some((Fired::Handle(h(2)), B)));
        assert_eq!(t.pop_expired(later), None);
        assert_eq!(t.timeout(later, Duration::from_secs(1)), Duration::from_millis(10));
        assert_eq!(t.pop_expired(t0 + Duration::from_millis(30)), Some((Fired::Handle(h(3)), A)));
        assert!(t.is_empty());
    }

    #[test]
    fn rearm_moves_the_one_deadline_earlier_or_later() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::new();
        for i in 0..8 {
            t.arm(h(i), A, ms(10 * (i as u64 + 1)));
        }
        t.arm(h(7), A, ms(5)); // earlier
        t.arm(h(0), A, ms(100)); // later
        assert_eq!(t.len(), 8, "a re-arm replaces, never adds");
        assert_eq!(t.deadline(h(7), A), Some(ms(5)));
        let order: Vec<usize> = drain(&mut t, ms(1000))
            .into_iter()
            .map(|(f, _)| match f {
                Fired::Handle(x) => x.index(),
                Fired::Slot(..) => usize::MAX,
            })
            .collect();
        assert_eq!(order, vec![7, 1, 2, 3, 4, 5, 6, 0]);
    }

    #[test]
    fn arm_earlier_keeps_the_earlier_deadline() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.arm_earlier(h(0), A, t0 + Duration::from_millis(20));
        t.arm_earlier(h(0), A, t0 + Duration::from_millis(30));
        assert_eq!(t.deadline(h(0), A), Some(t0 + Duration::from_millis(20)));
        t.arm_earlier(h(0), A, t0 + Duration::from_millis(10));
        assert_eq!(t.deadline(h(0), A), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cancel_removes_from_anywhere_in_the_heap() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        for i in 0..20 {
            t.arm(h(i), A, t0 + Duration::from_millis((i as u64 * 7) % 20));
        }
        for i in (0..20).step_by(3) {
            t.cancel(h(i), A);
        }
        t.cancel(h(0), B); // never armed: nothing happens
        let fired = drain(&mut t, t0 + Duration::from_secs(1));
        assert_eq!(fired.len(), 20 - 7);
        assert!(fired.iter().all(|(f, _)| matches!(f, Fired::Handle(x) if x.index() % 3 != 0)));
        // Popped in deadline order even after removals from the middle.
        let mut last = t0;
        let mut t = Timers::new();
        for i in 0..50u64 {
            t.arm(h(i as usize), A, t0 + Duration::from_millis((i * 37) % 50));
        }
        for i in (0..50).step_by(4) {
            t.cancel(h(i), A);
        }
        while let Some((Fired::Handle(x), _)) = t.pop_expired(t0 + Duration::from_secs(1)) {
            let at = t0 + Duration::from_millis((x.index() as u64 * 37) % 50);
            assert!(at >= last, "out of order");
            last = at;
        }
        assert!(t.is_empty());
    }

    #[derive(Debug)]
    struct E;
    impl Entry for E {
        fn socket(&mut self, _: usize) -> Option<&mut dyn mio::event::Source> {
            None
        }
    }

    #[test]
    fn closing_an_entry_cancels_every_kind_and_leaves_the_others() {
        let poll = mio::Poll::new().unwrap();
        let now = Instant::now();
        let mut table: Table<E> = Table::new(8);
        let mut t = Timers::new();
        let a = table.adopt(poll.registry(), E).unwrap();
        let b = table.adopt(poll.registry(), E).unwrap();
        for k in 0..KINDS as u8 {
            t.arm(a, Kind::new(k), now);
        }
        t.arm(b, A, now);
        t.arm(h(0), A, now);
        table.close(&mut t, a);
        assert_eq!(t.len(), 2);
        let fired = drain(&mut t, now);
        assert!(fired.contains(&(Fired::Slot(b.slot(), b.gen()), A)));
        assert!(fired.contains(&(Fired::Handle(h(0)), A)));
    }

    #[test]
    fn one_slot_per_owner_and_kind_bounds_the_heap() {
        let poll = mio::Poll::new().unwrap();
        let now = Instant::now();
        let mut table: Table<E> = Table::new(100);
        let mut t = Timers::new();
        let keys: Vec<Key> = (0..100).map(|_| table.adopt(poll.registry(), E).unwrap()).collect();
        for round in 0..5u64 {
            for k in &keys {
                for kind in 0..KINDS as u8 {
                    t.arm(*k, Kind::new(kind), now + Duration::from_millis(round));
                }
            }
        }
        assert_eq!(t.len(), 100 * KINDS, "entries × kinds, however often re-armed");
        // A fired timer frees its place: arming it again is a new deadline, not a second entry.
        let batch: Vec<_> = (0..10).filter_map(|_| t.pop_expired(now + Duration::from_secs(1))).collect();
        assert_eq!(batch.len(), 10);
        assert_eq!(t.len(), 100 * KINDS - 10);
    }
}

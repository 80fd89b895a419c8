//! `BufPool`: the bounded per-reactor pool every role borrows its buffers from, rings
//! ([`Ring`]) for bytes a peer did not take yet or an HTTP head being read, and kernel pipes
//! ([`KernelPipe`]) for the proxy's splice path.
//!
//! ```text
//!            take()                                   give()
//!   cache ─────────► in use (at most `limit`) ─────────────► cache (at most `high_water`)
//!     ▲  empty: create one                                     │ full: free the item
//!     └─────────────── sweep(): free half of what sat unused ◄─┘ for a whole SWEEP_EVERY
//! ```
//!
//! - **Bounded.** At most `limit` items are out at once. One more `take` is an error (counted in
//!   `exhausted`), never a growth: the caller sheds the connection or stops reading it, so the
//!   kernel's buffers fill and TCP backpressure does the rest.
//! - **Reused, not zeroed.** A returned item is recycled ([`Pooled::recycle`]: a ring is
//!   `clear()`ed, its head and length reset, its bytes left as they are) and handed to the next
//!   `take` as it is. Memory is only allocated (and zeroed, by the allocator) when the cache is
//!   empty.
//! - **Cached up to a high-water mark.** At most `high_water` free items are kept; an item given
//!   back beyond that is freed at once. [`BufPool::sweep`], called from the reactor's tick,
//!   frees half of the items that stayed in the cache for a whole [`SWEEP_EVERY`] (the lowest the
//!   cache got since the last sweep), so the cache of a reactor gone idle shrinks to nothing in
//!   a few seconds while a busy one keeps what it keeps taking.
//! - **Counted.** [`PoolStats`]: in use and cached now, created, freed and exhausted so far.
//!   Roles put them in their reports (the proxy's `/metrics`, the final line of `serve`).

use std::io;
use std::time::{Duration, Instant};

use super::buf::Ring;
use crate::net::splice::KernelPipe;

/// How often [`BufPool::sweep`] trims the cache: items that sat unused for this long are
/// halved.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What a pool can hold: made for a size, reset before reuse.
pub trait Pooled: Sized {
    /// A new item of `size` bytes.
    fn create(size: usize) -> io::Result<Self>;
    /// Makes a returned item ready for the next taker, without touching its memory.
    fn recycle(&mut self);
}

impl Pooled for Ring {
    fn create(size: usize) -> io::Result<Ring> {
        Ok(Ring::new(size))
    }

    /// Head and length back to 0; the bytes stay where they are (never zeroed).
    fn recycle(&mut self) {
        self.clear();
    }
}

impl Pooled for KernelPipe {
    fn create(size: usize) -> io::Result<KernelPipe> {
        KernelPipe::new(size)
    }

    /// Nothing to reset: only an empty pipe is given back ([`BufPool::discard`] takes the others).
    fn recycle(&mut self) {}
}

/// A pool's figures, summed over reactors by [`PoolStats::merge`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Items handed out and not given back (gauge).
    pub in_use: u64,
    /// Free items kept for reuse (gauge).
    pub cached: u64,
    /// Items allocated because the cache was empty.
    pub created: u64,
    /// Items freed: given back past the high-water mark, trimmed by a sweep, or discarded.
    pub freed: u64,
    /// Takes refused because `limit` items were out.
    pub exhausted: u64,
}

impl PoolStats {
    pub fn merge(&mut self, o: &PoolStats) {
        self.in_use += o.in_use;
        self.cached += o.cached;
        self.created += o.created;
        self.freed += o.freed;
        self.exhausted += o.exhausted;
    }
}

/// A bounded pool of `T` of one size (see the module docs).
pub struct BufPool<T> {
    free: Vec<T>,
    size: usize,
    out: usize,
    limit: usize,
    high_water: usize,
    /// The fewest free items since the last sweep: that many were not needed.
    low: usize,
    next_sweep: Option<Instant>,
    created: u64,
    freed: u64,
    exhausted: u64,
}

impl<T: Pooled> BufPool<T> {
    /// Items of `size` bytes, at most `limit` out at once, at most `high_water` kept free.
    pub fn new(size: usize, limit: usize, high_water: usize) -> BufPool<T> {
        BufPool {
            free: Vec::with_capacity(high_water.min(limit)),
            size,
            out: 0,
            limit,
            high_water,
            low: 0,
            next_sweep: None,
            created: 0,
            freed: 0,
            exhausted: 0,
        }
    }

    /// Items handed out and not yet given back.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.out
    }

    /// Free items kept for reuse.
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.free.len()
    }

    /// Whether a `take` would succeed as far as the bound goes (creating a pipe may still fail).
    pub fn can_take(&self) -> bool {
        self.out < self.limit
    }

    /// A cached item as it was left (recycled, not zeroed), or a new one when the cache is
    /// empty. An error, counted in `exhausted`, when `limit` items are out; or the error of
    /// creating one (a pipe without descriptors).
    pub fn take(&mut self) -> io::Result<T> {
        if self.out >= self.limit {
            self.exhausted += 1;
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer pool exhausted"));
        }
        let item = match self.free.pop() {
            Some(i) => {
                self.low = self.low.min(self.free.len());
                i
            }
            None => {
                let i = T::create(self.size)?;
                self.created += 1;
                i
            }
        };
        self.out += 1;
        Ok(item)
    }

    /// Returns a reusable item: recycled and cached while the cache is below the high-water
    /// mark, freed otherwise.
    pub fn give(&mut self, mut item: T) {
        self.out = self.out.saturating_sub(1);
        if self.free.len() < self.high_water {
            item.recycle();
            self.free.push(item);
        } else {
            self.freed += 1;
        }
    }

    /// Returns an item that must not be reused (a pipe with bytes still in it): freed.
    pub fn discard(&mut self, item: T) {
        self.out = self.out.saturating_sub(1);
        self.freed += 1;
        drop(item);
    }

    /// Called from the reactor's tick: once per [`SWEEP_EVERY`], frees half (rounded up) of the
    /// items that stayed in the cache since the last sweep. Returns how many it freed.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let Some(due) = self.next_sweep else {
            // The first call starts the clock: what is cached now is watched from here.
            self.next_sweep = Some(now + SWEEP_EVERY);
            self.low = self.free.len();
            return 0;
        };
        if now < due {
            return 0;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let idle = self.low.min(self.free.len());
        let drop_n = idle.div_ceil(2);
        self.free.truncate(self.free.len() - drop_n);
        self.freed += drop_n as u64;
        self.low = self.free.len();
        drop_n
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            in_use: self.out as u64,
            cached: self.free.len() as u64,
            created: self.created,
            freed: self.freed,
            exhausted: self.exhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_pool(limit: usize, high_water: usize) -> BufPool<Ring> {
        BufPool::new(64, limit, high_water)
    }

    #[test]
    fn at_most_limit_out_and_exhaustion_is_an_error() {
        let mut pool = ring_pool(3, 8);
        let held: Vec<Ring> = (0..3).map(|_| pool.take().unwrap()).collect();
        assert!(!pool.can_take());
        let err = pool.take().err().expect("a fourth ring past the bound");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert!(pool.take().is_err());
        assert_eq!(pool.stats(), PoolStats { in_use: 3, cached: 0, created: 3, freed: 0, exhausted: 2 });
        for r in held {
            pool.give(r);
        }
        assert!(pool.can_take());
        assert_eq!(pool.stats(), PoolStats { in_use: 0, cached: 3, created: 3, freed: 0, exhausted: 2 });
    }

    #[test]
    fn cache_stops_at_the_high_water_mark() {
        let mut pool = ring_pool(10, 2);
        let held: Vec<Ring> = (0..5).map(|_| pool.take().unwrap()).collect();
        for r in held {
            pool.give(r);
        }
        assert_eq!(pool.stats(), PoolStats { in_use: 0, cached: 2, created: 5, freed: 3, exhausted: 0 });
        // Those two are reused: five more takes create only three.
        let held: Vec<Ring> = (0..5).map(|_| pool.take().unwrap()).collect();
        assert_eq!(pool.stats().created, 8);
        drop(held);
    }

    #[test]
    fn a_returned_ring_is_reused_cleared_and_not_zeroed() {
        let mut pool = ring_pool(4, 4);
        let mut r = pool.take().unwrap();
        let addr = r.data().as_ptr();
        r.spare_mut()[..5].copy_from_slice(b"hello");
        r.commit(5);
        r.consume(2);
        pool.give(r);
        let mut again = pool.take().unwrap();
        assert_eq!(again.data().as_ptr(), addr, "the same allocation comes back");
        assert!(again.is_empty() && again.data().is_empty(), "head and length reset");
        assert_eq!(again.spare_mut().len(), 64, "the whole ring is free again");
        assert_eq!(&again.spare_mut()[..5], b"hello", "the bytes were not zeroed");
        assert_eq!(pool.stats().created, 1);
        // Many borrow/return rounds allocate nothing more.
        pool.give(again);
        for _ in 0..1000 {
            let a = pool.take().unwrap();
            let b = pool.take().unwrap();
            pool.give(a);
            pool.give(b);
        }
        assert_eq!(pool.stats(), PoolStats { in_use: 0, cached: 2, created: 2, freed: 0, exhausted: 0 });
    }

    #[test]
    fn discard_frees_instead_of_caching() {
        let mut pool = ring_pool(4, 4);
        let r = pool.take().unwrap();
        pool.discard(r);
        assert_eq!(pool.stats(), PoolStats { in_use: 0, cached: 0, created: 1, freed: 1, exhausted: 0 });
    }

    #[test]
    fn sweep_halves_what_sat_unused_and_keeps_what_is_taken() {
        let t0 = Instant::now();
        let mut pool = ring_pool(64, 16);
        let held: Vec<Ring> = (0..16).map(|_| pool.take().unwrap()).collect();
        for r in held {
            pool.give(r);
        }
        assert_eq!(pool.sweep(t0), 0, "the first call only starts the clock");
        assert_eq!(pool.sweep(t0 + SWEEP_EVERY / 2), 0, "not due yet");
        // A whole period with all 16 idle: half go.
        assert_eq!(pool.sweep(t0 + SWEEP_EVERY), 8);
        assert_eq!(pool.cached(), 8);
        // A period in which 6 of the 8 were out at once: only the 2 never taken were idle.
        let held: Vec<Ring> = (0..6).map(|_| pool.take().unwrap()).collect();
        for r in held {
            pool.give(r);
        }
        assert_eq!(pool.sweep(t0 + SWEEP_EVERY * 2), 1);
        assert_eq!(pool.cached(), 7);
        // Idle from now on: 7 → 3 → 1 → 0.
        let mut t = t0 + SWEEP_EVERY * 2;
        let mut left = Vec::new();
        for _ in 0..4 {
            t += SWEEP_EVERY;
            pool.sweep(t);
            left.push(pool.cached());
        }
        assert_eq!(left, [3, 1, 0, 0]);
        assert_eq!(pool.stats(), PoolStats { in_use: 0, cached: 0, created: 16, freed: 16, exhausted: 0 });
    }

    /// A test item that tells apart the ones created: 1, 2, 3, ...
    struct Numbered(u32);

    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

    impl Pooled for Numbered {
        fn create(_size: usize) -> io::Result<Numbered> {
            Ok(Numbered(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
        }
        fn recycle(&mut self) {}
    }

    /// The proxy's former pool test, on the engine's pool (same bound, cache and reuse checks).
    #[test]
    fn pool_is_bounded_and_caches_a_few() {
        let mut pool: BufPool<Numbered> = BufPool::new(0, 3, 1);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let c = pool.take().unwrap();
        assert!(pool.take().is_err(), "a fourth item past the bound");
        let first = a.0;
        pool.give(a);
        pool.give(b);
        pool.discard(c);
        assert_eq!((pool.in_use(), pool.cached()), (0, 1));
        assert_eq!(pool.take().unwrap().0, first, "the cached item is reused");
    }

    #[test]
    fn pipes_come_from_the_pool_too() {
        let mut pool: BufPool<KernelPipe> = BufPool::new(64 * 1024, 2, 1);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(a.capacity() >= 4096);
        assert!(pool.take().is_err());
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.stats(), PoolStats { in_use: 0, cached: 1, created: 2, freed: 1, exhausted: 1 });
    }
}

//! One proxied session: a client socket and a backend socket on the same reactor, and per
//! direction a `Flow` (in `pump`, with the byte pump) that owns no buffer while idle.
//!
//! ```text
//!   accept ──► Connecting ──(check: connected)──► Piping ──(both directions shut)──► closed
//!                 │  ▲                               │
//!     refused /   │  │ retry on another backend      │ EOF on one side: once that direction's
//!     timeout     ▼  │ (exclude tried, ≤ retries)     │ ring/pipe is flushed, shutdown(Write) on
//!              next backend                           │ the other socket; the other direction
//!                                                     │ goes on until its own EOF or the fin
//!                                                     ▼ timeout
//!                                     error / RST on either side: close both, SO_LINGER 0 on
//!                                     the survivor so the reset propagates
//! ```
//!
//! Buffers are lazy. The copy path reads into the reactor's one scratch buffer and writes
//! straight through to the peer; only bytes the peer did not take are parked in a [`Ring`]
//! borrowed from the reactor's bounded pool, and the ring goes back once drained. The splice
//! path (`splice = "on"`, or `"auto"` while a direction is bulk, see below) moves bytes
//! socket → kernel pipe → socket, the pipe borrowed from a second bounded pool while it holds
//! bytes. An idle session therefore holds two sockets and a few words of state, and a busy one
//! at most one ring or one pipe per direction, which is what bounds memory by
//! `max_connections × 2 × buffer_size`.
//!
//! `splice = "auto"` picks the path per direction from the size of its reads, with hysteresis
//! ([`AutoPath`]):
//!
//! ```text
//!            a copy read fills the scratch, or the parked ring is full
//!   copy ─────────────────────────────────────────────────────────────► splice
//!        ◄─────────────────────────────────────────────────────────────
//!            COPY_AFTER_SMALL_FILLS splice reads in a row that each took all the socket had
//!            and moved < buffer_size / SMALL_FILL_DIVISOR, then the pipe drained
//! ```
//!
//! Splice pays off when one call moves many pages; for small messages it costs a pipe from the
//! pool and three splice(2) calls (fill, drain, and the fill that finds the socket empty) where
//! the copy path makes one read and one write. Reads between the two thresholds keep the
//! current path, so a flow that sits near one of them does not flap. A direction goes back to
//! copy only with its pipe empty (bytes in a pipe are always spliced out first, so order is
//! kept), and starts splicing only once its parked ring has drained, so it never holds a ring
//! and a pipe at once. Neither switch costs a syscall: it is decided from the byte counts the
//! reads return anyway.
//!
//! Backpressure: a direction reads its source only while its parked ring (or pipe) has room. A
//! full ring or pipe means no read, so the kernel receive buffer fills, the TCP window closes and
//! the sender blocks. The `event` bits of [`Readiness`] are OR-ed from edges and cleared only on
//! `WouldBlock`, as the engine requires.

mod pump;

use mio::net::TcpStream;

use super::config::SpliceMode;
use crate::engine::buf::Ring;
use crate::engine::pool::BufPool;
use crate::net::splice::KernelPipe;

pub use pump::{Moved, Pipe, Pump};

/// Why a session ended. `Copy`, counted per cause, never allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions finished with FIN.
    Done,
    ClientReset,
    ServerReset,
    /// Every backend tried refused (or failed) the connect.
    ConnectFailed,
    ConnectTimeout,
    /// No usable backend in the group.
    NoBackend,
    ClientIdle,
    ServerIdle,
    /// A half-closed session did not finish within client_fin/server_fin.
    FinTimeout,
    Lifetime,
    /// Cut at the end of the drain timeout, or by a second signal.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Done,
        CloseReason::ClientReset,
        CloseReason::ServerReset,
        CloseReason::ConnectFailed,
        CloseReason::ConnectTimeout,
        CloseReason::NoBackend,
        CloseReason::ClientIdle,
        CloseReason::ServerIdle,
        CloseReason::FinTimeout,
        CloseReason::Lifetime,
        CloseReason::Shutdown,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Done => "done",
            CloseReason::ClientReset => "client_reset",
            CloseReason::ServerReset => "server_reset",
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::NoBackend => "no_backend",
            CloseReason::ClientIdle => "client_idle",
            CloseReason::ServerIdle => "server_idle",
            CloseReason::FinTimeout => "fin_timeout",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// Whether the other socket should be reset (SO_LINGER 0) rather than closed with FIN.
    pub fn resets(self) -> bool {
        !matches!(self, CloseReason::Done)
    }
}

/// Bytes a session may read per wake-up (both directions together) before it yields.
pub const READ_BUDGET: usize = 256 * 1024;
/// High-water mark of a reactor's cache of free rings: drained rings beyond it are freed, and
/// the engine's pool sweep trims the cache of an idle reactor below it (see [`BufPool`]).
pub const RING_CACHE: usize = 8;
/// High-water mark of a reactor's cache of open, empty kernel pipes: drained pipes beyond it
/// are closed.
pub const PIPE_CACHE: usize = 8;
/// `splice = "auto"`: a splice read is small when it moved less than `buffer_size / 4` (4 KiB
/// with the default 16 KiB buffer, one or two MSS-sized segments). The switch up to splice
/// needs a read of a whole `buffer_size`, so reads in between change nothing (hysteresis).
pub const SMALL_FILL_DIVISOR: usize = 4;
/// `splice = "auto"`: this many small splice reads in a row send a direction back to copy. One
/// or two short reads happen in any bulk flow (the tail of a burst, a read racing an arrival);
/// four in a row, each of which emptied the socket, mean the sender writes small messages.
pub const COPY_AFTER_SMALL_FILLS: u8 = 4;

/// `splice = "auto"` for one direction: whether it splices (bulk) or copies, and the evidence
/// for switching back. Pure bookkeeping, no syscalls: the caller reports what its reads did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoPath {
    /// Reads go through a pipe.
    bulk: bool,
    /// Splice reads in a row that were small (see [`SMALL_FILL_DIVISOR`]), saturating.
    small_fills: u8,
}

impl AutoPath {
    /// Whether the direction splices.
    pub fn bulk(&self) -> bool {
        self.bulk
    }

    /// A copy read filled the scratch buffer, or the parked ring is full (the peer is slower
    /// than the source), or the pipe is: splice from the next read on. True when this switched
    /// the direction from copy to splice.
    pub fn on_full(&mut self) -> bool {
        self.small_fills = 0;
        !std::mem::replace(&mut self.bulk, true)
    }

    /// A splice read asked for up to `asked` bytes and moved `n > 0`. Only a read that stopped
    /// short of its limit (it took everything the socket had) and moved less than
    /// `buffer_bytes / SMALL_FILL_DIVISOR` counts as small; a read cut by the pipe's room or
    /// the read budget says nothing about message size and breaks the run. True when the run
    /// of small reads is long enough to go back to copy (see [`AutoPath::settle`]).
    pub fn on_splice_fill(&mut self, n: usize, asked: usize, buffer_bytes: usize) -> bool {
        if n < asked && n < (buffer_bytes / SMALL_FILL_DIVISOR).max(1) {
            self.small_fills = self.small_fills.saturating_add(1);
        } else {
            self.small_fills = 0;
        }
        self.small_fills >= COPY_AFTER_SMALL_FILLS
    }

    /// Before a read, with `piped` bytes still in this direction's pipe: after a long enough
    /// run of small splice reads, and only once the pipe is empty (no byte may overtake the
    /// ones in it), go back to copy. True when this switched the direction from splice to copy.
    pub fn settle(&mut self, piped: usize) -> bool {
        if self.bulk && piped == 0 && self.small_fills >= COPY_AFTER_SMALL_FILLS {
            self.bulk = false;
            self.small_fills = 0;
            return true;
        }
        false
    }
}

/// What every session of one reactor shares: the read scratch buffer and the ring and pipe
/// pools (the engine's [`BufPool`]). A session owns no buffer while idle; it borrows a ring only
/// for bytes its peer did not take, and a pipe only while spliced bytes are in flight.
pub struct Bufs {
    /// Every copy-path read lands here first and is written straight through to the peer.
    pub scratch: Box<[u8]>,
    /// Rings of `buffer_bytes`.
    pub rings: BufPool<Ring>,
    /// Pipes of the requested capacity `pipe_size`, independent of `buffer_bytes`: a pipe
    /// smaller than the 256 KiB default makes every splice move fewer pages, for more CPU per byte.
    pub pipes: BufPool<KernelPipe>,
    /// Capacity of each ring (and of the scratch buffer).
    pub buffer_bytes: usize,
    pub splice: SpliceMode,
    /// Pipes that could not be created (EMFILE, ENFILE): those sessions copy instead.
    pub splice_fallbacks: u64,
    /// `splice = "auto"`: directions switched from copy to splice, and back (see [`AutoPath`]).
    pub switches_to_splice: u64,
    pub switches_to_copy: u64,
}

impl Bufs {
    /// `sessions` is this reactor's session cap: each session holds at most one ring and one
    /// pipe per direction, so the pools never run dry and buffer memory stays below
    /// `sessions × 2 × buffer_bytes`.
    pub fn new(buffer_bytes: usize, pipe_bytes: usize, sessions: usize, splice: SpliceMode) -> Bufs {
        Bufs {
            scratch: vec![0u8; buffer_bytes.max(1)].into_boxed_slice(),
            rings: BufPool::new(buffer_bytes, sessions.saturating_mul(2), RING_CACHE),
            pipes: BufPool::new(pipe_bytes, sessions.saturating_mul(2), PIPE_CACHE),
            buffer_bytes,
            splice,
            splice_fallbacks: 0,
            switches_to_splice: 0,
            switches_to_copy: 0,
        }
    }

    /// A ring from the pool holding `scratch[range]`: the bytes of a read the peer did not
    /// take. `None` when the pool is out (cannot happen while its bound is 2 × sessions).
    pub fn park_scratch(&mut self, range: std::ops::Range<usize>) -> Option<Ring> {
        let mut ring = self.rings.take().ok()?;
        let rest = &self.scratch[range];
        ring.spare_mut()[..rest.len()].copy_from_slice(rest);
        ring.commit(rest.len());
        Some(ring)
    }

    /// From the reactor's tick: trims the pools' caches of an idle reactor (see [`BufPool::sweep`]).
    pub fn sweep(&mut self, now: std::time::Instant) {
        self.rings.sweep(now);
        self.pipes.sweep(now);
    }
}

/// Sets SO_LINGER 0 so that dropping `s` sends RST instead of FIN.
pub fn reset_on_close(s: &TcpStream) {
    let _ = crate::net::sockopt::reset_on_close(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of the auto-splice rule and what it should answer.
    enum Ev {
        /// A copy read filled the scratch (or a ring/pipe is full): want "switched to splice".
        Full(bool),
        /// A splice read (n, asked): want "long enough run of small reads".
        Fill(usize, usize, bool),
        /// Before a read with this many bytes piped: want "switched to copy".
        Settle(usize, bool),
    }

    #[test]
    fn auto_path_switches_both_ways_with_hysteresis() {
        use Ev::*;
        const B: usize = 16 * 1024; // buffer_size; small = below 4 KiB
        let cases: &[(&str, &[Ev])] = &[
            ("starts copying and a settle changes nothing", &[Settle(0, false)]),
            ("a full read switches to splice once", &[Full(true), Full(false), Settle(0, false)]),
            (
                "four small reads, pipe drained: back to copy",
                &[
                    Full(true),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, true),
                    Settle(0, true),
                ],
            ),
            (
                "never while bytes sit in the pipe",
                &[
                    Full(true),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, true),
                    Settle(64, false),
                    Settle(0, true),
                    Settle(0, false),
                ],
            ),
            (
                "three small reads are not enough",
                &[Full(true), Fill(100, B, false), Fill(100, B, false), Fill(100, B, false), Settle(0, false)],
            ),
            (
                "a large read breaks the run",
                &[
                    Full(true),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(B, 4 * B, false),
                    Fill(64, B, false),
                    Settle(0, false),
                ],
            ),
            (
                "a read of exactly a quarter buffer is not small",
                &[
                    Full(true),
                    Fill(B / 4, B, false),
                    Fill(B / 4, B, false),
                    Fill(B / 4, B, false),
                    Fill(B / 4, B, false),
                    Settle(0, false),
                ],
            ),
            (
                "a read cut by its limit (pipe room, budget) is not small",
                &[
                    Full(true),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(100, 100, false),
                    Settle(0, false),
                ],
            ),
            (
                "a full pipe or ring breaks the run too",
                &[
                    Full(true),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Fill(64, B, false),
                    Full(false),
                    Fill(64, B, false),
                    Settle(0, false),
                ],
            ),
            (
                "back to copy, then a full read: splice again, and the run starts over",
                &[
                    Full(true),
                    Fill(1, B, false),
                    Fill(1, B, false),
                    Fill(1, B, false),
                    Fill(1, B, true),
                    Settle(0, true),
                    Full(true),
                    Settle(0, false),
                    Fill(1, B, false),
                    Settle(0, false),
                ],
            ),
            (
                "a long run past the count still switches once",
                &[
                    Full(true),
                    Fill(8, B, false),
                    Fill(8, B, false),
                    Fill(8, B, false),
                    Fill(8, B, true),
                    Fill(8, B, true),
                    Fill(8, B, true),
                    Settle(8, false),
                    Settle(0, true),
                    Settle(0, false),
                ],
            ),
        ];
        for (name, evs) in cases {
            let mut a = AutoPath::default();
            for (i, ev) in evs.iter().enumerate() {
                let (got, want) = match *ev {
                    Full(w) => (a.on_full(), w),
                    Fill(n, asked, w) => (a.on_splice_fill(n, asked, B), w),
                    Settle(piped, w) => (a.settle(piped), w),
                };
                assert_eq!(got, want, "{name}: step {i}");
            }
        }
        // A settle never switches a copying direction, however many small reads it reported.
        let mut a = AutoPath::default();
        for _ in 0..10 {
            a.on_splice_fill(1, B, B);
        }
        assert!(!a.settle(0) && !a.bulk());
    }
}

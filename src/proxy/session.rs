//! One proxied session: a client socket and a backend socket on the same reactor, and per
//! direction a [`Flow`] that owns no buffer while idle.
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

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use super::config::SpliceMode;
use crate::buf::Ring;
use crate::net::splice::KernelPipe;
use crate::reactor::{Readiness, Ready};

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
/// Free rings a reactor keeps for reuse; drained rings beyond this are freed.
pub const RING_CACHE: usize = 8;
/// Free kernel pipes a reactor keeps open for reuse; drained pipes beyond this are closed.
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

/// A bounded per-reactor pool: at most `limit` items out at once, at most `cache` kept free.
pub struct Pool<T> {
    free: Vec<T>,
    out: usize,
    limit: usize,
    cache: usize,
}

impl<T> Pool<T> {
    pub fn new(limit: usize, cache: usize) -> Pool<T> {
        Pool { free: Vec::new(), out: 0, limit, cache }
    }

    /// Items handed out and not yet given back.
    pub fn in_use(&self) -> usize {
        self.out
    }

    /// Free items kept for reuse.
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.free.len()
    }

    pub fn can_take(&self) -> bool {
        self.out < self.limit
    }

    /// A cached item, or a new one from `make`; an error when `limit` items are out.
    pub fn take(&mut self, make: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        if self.out >= self.limit {
            return Err(io::Error::new(ErrorKind::OutOfMemory, "buffer pool exhausted"));
        }
        let item = match self.free.pop() {
            Some(i) => i,
            None => make()?,
        };
        self.out += 1;
        Ok(item)
    }

    /// Returns a reusable item: cached while the cache has room, freed otherwise.
    pub fn give(&mut self, item: T) {
        self.out = self.out.saturating_sub(1);
        if self.free.len() < self.cache {
            self.free.push(item);
        }
    }

    /// Returns an item that must not be reused (a pipe with bytes still in it): freed.
    pub fn discard(&mut self, item: T) {
        self.out = self.out.saturating_sub(1);
        drop(item);
    }
}

/// What every session of one reactor shares: the read scratch buffer and the ring and pipe
/// pools. A session owns no buffer while idle; it borrows a ring only for bytes its peer did
/// not take, and a pipe only while spliced bytes are in flight.
pub struct Bufs {
    /// Every copy-path read lands here first and is written straight through to the peer.
    pub scratch: Box<[u8]>,
    pub rings: Pool<Ring>,
    pub pipes: Pool<KernelPipe>,
    /// Capacity of each ring (and of the scratch buffer).
    pub buffer_bytes: usize,
    /// Requested capacity of each pipe (`pipe_size`), independent of `buffer_bytes`: a pipe
    /// smaller than the 256 KiB default makes every splice move fewer pages, for more CPU per byte.
    pub pipe_bytes: usize,
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
            rings: Pool::new(sessions.saturating_mul(2), RING_CACHE),
            pipes: Pool::new(sessions.saturating_mul(2), PIPE_CACHE),
            buffer_bytes,
            pipe_bytes,
            splice,
            splice_fallbacks: 0,
            switches_to_splice: 0,
            switches_to_copy: 0,
        }
    }

    /// A ring from the pool holding `scratch[range]`: the bytes of a read the peer did not
    /// take. `None` when the pool is out (cannot happen while its bound is 2 × sessions).
    pub fn park_scratch(&mut self, range: std::ops::Range<usize>) -> Option<Ring> {
        let size = self.buffer_bytes;
        let mut ring = self.rings.take(|| Ok(Ring::new(size))).ok()?;
        let rest = &self.scratch[range];
        ring.spare_mut()[..rest.len()].copy_from_slice(rest);
        ring.commit(rest.len());
        Some(ring)
    }
}

/// One direction: bytes read from `src` go straight to `dst`; what `dst` did not take waits
/// in `ring` (copy path) or `pipe` (splice path), never both.
#[derive(Default)]
pub struct Flow {
    /// `src` returned EOF.
    pub eof: bool,
    /// `shutdown(Write)` was sent to `dst` (EOF forwarded after the parked bytes drained).
    pub shut: bool,
    /// When `eof` was seen.
    pub eof_at: Option<Instant>,
    /// Bytes parked on the copy path; `None` when there are none (the ring is back in the pool).
    pub ring: Option<Ring>,
    /// The pipe of the splice path; `None` when it holds nothing (back in the pool).
    pub pipe: Option<KernelPipe>,
    /// Bytes in `pipe`.
    pub piped: usize,
    /// `splice = "auto"`: whether this direction splices now (a bulk flow) or copies.
    pub auto: AutoPath,
    /// No pipe could be had: this direction copies for the rest of the session.
    pub no_splice: bool,
}

impl Flow {
    /// Bytes held by the proxy for this direction.
    pub fn parked(&self) -> usize {
        self.ring.as_ref().map_or(0, Ring::len) + self.piped
    }

    fn release(&mut self, bufs: &mut Bufs) {
        if let Some(mut r) = self.ring.take() {
            r.clear();
            bufs.rings.give(r);
        }
        if let Some(p) = self.pipe.take() {
            if self.piped == 0 {
                bufs.pipes.give(p);
            } else {
                bufs.pipes.discard(p);
            }
            self.piped = 0;
        }
    }

    /// A read filled the scratch buffer, or the ring or pipe is full: in `auto` mode this is a
    /// bulk flow, spliced from the next read on (counted when it switches).
    pub fn full(&mut self, bufs: &mut Bufs) {
        if bufs.splice == SpliceMode::Auto && !self.no_splice && self.auto.on_full() {
            bufs.switches_to_splice += 1;
        }
    }

    fn splices(&self, mode: SpliceMode) -> bool {
        if self.piped > 0 {
            return true;
        }
        if self.no_splice || self.ring.is_some() {
            return false;
        }
        match mode {
            SpliceMode::On => true,
            SpliceMode::Auto => self.auto.bulk(),
            SpliceMode::Off => false,
        }
    }
}

/// Outcome of a pump.
#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    /// Waiting for edges.
    Idle,
    /// The read budget ran out with work left: defer the session.
    More,
    /// Both directions are shut: close normally.
    Done,
    Close(CloseReason),
}

/// Byte counts moved by one pump.
#[derive(Default, Clone, Copy, Debug)]
pub struct Moved {
    pub client_to_server: u64,
    pub server_to_client: u64,
    /// Of those, bytes moved by splice(2).
    pub spliced: u64,
    /// Any byte read from or written to the client / the server.
    pub client_active: bool,
    pub server_active: bool,
}

pub struct Pipe {
    pub client: TcpStream,
    pub crd: Readiness,
    pub server: TcpStream,
    pub srd: Readiness,
    pub c2s: Flow,
    pub s2c: Flow,
}

/// One direction of a session, for one pass of the pump: the socket it reads and the socket it
/// writes with their readiness, its [`Flow`] (the ring or the pipe, EOF and shutdown state),
/// and the counters it adds to.
struct Direction<'a> {
    src: &'a mut TcpStream,
    srd: &'a mut Readiness,
    dst: &'a mut TcpStream,
    drd: &'a mut Readiness,
    flow: &'a mut Flow,
    /// Bytes written to `dst`, and of those the ones moved by splice(2).
    moved: &'a mut u64,
    spliced: &'a mut u64,
    /// How the session ends on an error on `src`, and on one on `dst`.
    src_reset: CloseReason,
    dst_reset: CloseReason,
    /// The opposite direction already forwarded its FIN, so this direction's FIN ends the
    /// session.
    other_shut: bool,
}

/// What one pass over a [`Direction`] did.
#[derive(Clone, Copy, Debug, Default)]
struct Step {
    /// Something happened (bytes moved, EOF seen or forwarded, a call interrupted): pass again.
    progressed: bool,
    /// The source was read from / the destination written to.
    src_active: bool,
    dst_active: bool,
}

/// How a read of a direction's source ended.
enum Fill {
    /// No read: the ring or the pipe is full (backpressure), or the pipe cannot tell an empty
    /// socket from taken slots. The source's edge is kept.
    Held,
    /// The read's result: the byte count (0 at EOF) or its error.
    Done(io::Result<usize>),
}

/// Writes `data` to `dst` until done or `WouldBlock`; returns how much went out.
fn write_through(dst: &mut TcpStream, drd: &mut Readiness, data: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < data.len() {
        match dst.write(&data[off..]) {
            Ok(0) => return Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                drd.event.remove(Ready::WRITABLE);
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

impl Direction<'_> {
    /// Moves bytes as far as the edges, the buffers and the shared read `budget` allow: parked
    /// bytes out first, then the FIN once nothing is parked, then one read by splice or copy.
    fn flow(&mut self, bufs: &mut Bufs, budget: &mut usize, now: Instant) -> Result<Step, CloseReason> {
        let mut step = Step::default();
        // Write parked bytes first: that frees room for the read below, and keeps the order.
        self.flush(bufs, &mut step)?;
        let f = &mut *self.flow;
        if f.eof && f.parked() == 0 && !f.shut {
            // Our FIN follows the peer's only after every byte before it went out (ring and pipe).
            f.shut = true;
            step.progressed = true;
            // When the other direction is already shut, the session closes right after this: the
            // close sends the FIN (both receive queues are empty, both peers sent theirs), so the
            // shutdown(2) would only be a syscall more.
            if self.other_shut {
                return Ok(step);
            }
            if let Err(e) = self.dst.shutdown(Shutdown::Write) {
                if e.kind() != ErrorKind::NotConnected {
                    return Err(self.dst_reset);
                }
            }
        }
        if f.eof || *budget == 0 || !self.srd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            return Ok(step);
        }
        if bufs.splice == SpliceMode::Auto && f.auto.settle(f.piped) {
            bufs.switches_to_copy += 1;
        }
        let spliced = if f.splices(bufs.splice) { self.splice(bufs, *budget) } else { None };
        let read = match spliced {
            Some(r) => r,
            None => self.copy(bufs, &mut step)?,
        };
        let read = match read {
            Fill::Held => return Ok(step),
            Fill::Done(r) => r,
        };
        match read {
            Ok(0) => {
                self.flow.eof = true;
                self.flow.eof_at = Some(now);
                step.progressed = true;
                step.src_active = true;
            }
            Ok(n) => {
                *budget = budget.saturating_sub(n);
                step.progressed = true;
                step.src_active = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.srd.event.remove(Ready::READABLE | Ready::HUP),
            Err(e) if e.kind() == ErrorKind::Interrupted => step.progressed = true,
            Err(_) => return Err(self.src_reset),
        }
        Ok(step)
    }

    /// Writes what waits in the ring (copy path) or the pipe (splice path) to `dst`, and gives
    /// a drained ring or pipe back to its pool.
    fn flush(&mut self, bufs: &mut Bufs, step: &mut Step) -> Result<(), CloseReason> {
        let f = &mut *self.flow;
        if let Some(ring) = f.ring.as_mut() {
            if !ring.is_empty() && self.drd.event.contains(Ready::WRITABLE) {
                match ring.write_to(self.dst) {
                    Ok(n) => {
                        *self.moved += n as u64;
                        step.progressed |= n > 0;
                        step.dst_active = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.drd.event.remove(Ready::WRITABLE),
                    Err(e) if e.kind() == ErrorKind::Interrupted => step.progressed = true,
                    Err(_) => return Err(self.dst_reset),
                }
            }
            if ring.is_empty() {
                if let Some(r) = f.ring.take() {
                    bufs.rings.give(r);
                }
            }
        }
        if f.piped > 0 && self.drd.event.contains(Ready::WRITABLE) {
            if let Some(p) = f.pipe.as_ref() {
                match p.drain_to(self.dst, f.piped) {
                    Ok(n) => {
                        f.piped -= n.min(f.piped);
                        *self.moved += n as u64;
                        *self.spliced += n as u64;
                        step.progressed |= n > 0;
                        step.dst_active = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.drd.event.remove(Ready::WRITABLE),
                    Err(_) => return Err(self.dst_reset),
                }
            }
        }
        if f.piped == 0 {
            if let Some(p) = f.pipe.take() {
                bufs.pipes.give(p);
            }
        }
        Ok(())
    }

    /// The splice path's read: up to `budget` bytes from `src` into the pipe (taken from the
    /// pool first if need be). `None` when no pipe could be had: this direction copies from now
    /// on, starting with this read.
    fn splice(&mut self, bufs: &mut Bufs, budget: usize) -> Option<Fill> {
        let f = &mut *self.flow;
        if f.pipe.is_none() {
            let size = bufs.pipe_bytes;
            match bufs.pipes.take(|| KernelPipe::new(size)) {
                Ok(p) => f.pipe = Some(p),
                Err(e) => {
                    // Out of descriptors (or of pool): copy for the rest of this direction.
                    log::debug!("splice: no pipe ({e}); copying instead");
                    f.no_splice = true;
                    bufs.splice_fallbacks += 1;
                }
            }
        }
        let p = f.pipe.as_ref()?;
        let room = p.capacity().saturating_sub(f.piped);
        if room == 0 {
            // Pipe full: no read until the peer takes some (backpressure). A peer that
            // slow makes this a bulk flow whatever the read sizes were.
            f.full(bufs);
            return Some(Fill::Held);
        }
        let asked = room.min(budget);
        Some(match p.fill_from(self.src, asked) {
            Ok(n) => {
                f.piped += n;
                if n > 0 && bufs.splice == SpliceMode::Auto {
                    f.auto.on_splice_fill(n, asked, bufs.buffer_bytes);
                }
                Fill::Done(Ok(n))
            }
            Err(e) if f.piped == 0 => {
                // Nothing in flight (an empty socket, or an error): an idle direction
                // holds no pipe.
                if let Some(p) = f.pipe.take() {
                    bufs.pipes.give(p);
                }
                Fill::Done(Err(e))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && f.piped > 0 => {
                // Either the socket is empty or every pipe slot is taken (a slot may hold
                // less than a page). Keep the edge: the read is tried again once the pipe
                // drained, and an empty pipe gives an unambiguous answer.
                Fill::Held
            }
            Err(e) => Fill::Done(Err(e)),
        })
    }

    /// The copy path's read: into the parked ring when there is one, else into the scratch
    /// buffer, written straight through to `dst`, and only what `dst` did not take parked.
    fn copy(&mut self, bufs: &mut Bufs, step: &mut Step) -> Result<Fill, CloseReason> {
        let f = &mut *self.flow;
        if let Some(ring) = f.ring.as_mut() {
            if ring.is_full() {
                // Backpressure: the peer is slow, stop reading its source.
                f.full(bufs);
                return Ok(Fill::Held);
            }
            return Ok(Fill::Done(ring.read_from(self.src)));
        }
        if !bufs.rings.can_take() {
            // Cannot happen while the pool bound is 2 × sessions; never read what
            // could not be parked.
            return Ok(Fill::Held);
        }
        match self.src.read(&mut bufs.scratch) {
            Ok(n) if n > 0 => {
                if n == bufs.scratch.len() {
                    f.full(bufs);
                }
                if n < bufs.scratch.len() {
                    // A short read took everything the socket had queued: the next
                    // read would be EAGAIN, so drop the edge now and save that syscall.
                    // Bytes arriving later raise a new edge (EPOLLET fires on every
                    // arrival). HUP stays: a FIN queued behind these bytes was
                    // signalled before this read, and the next pump reads the 0.
                    self.srd.event.remove(Ready::READABLE);
                }
                let sent = if self.drd.event.contains(Ready::WRITABLE) {
                    match write_through(self.dst, self.drd, &bufs.scratch[..n]) {
                        Ok(w) => w,
                        Err(_) => return Err(self.dst_reset),
                    }
                } else {
                    0
                };
                *self.moved += sent as u64;
                step.dst_active |= sent > 0;
                if sent < n {
                    f.ring = Some(bufs.park_scratch(sent..n).ok_or(self.src_reset)?);
                }
                Ok(Fill::Done(Ok(n)))
            }
            r => Ok(Fill::Done(r)),
        }
    }
}

impl Pipe {
    /// A session holds no buffer until bytes have to wait (see [`Bufs`]).
    pub fn new(client: TcpStream, crd: Readiness, server: TcpStream, srd: Readiness) -> Pipe {
        Pipe { client, crd, server, srd, c2s: Flow::default(), s2c: Flow::default() }
    }

    /// Client to server, counted in `moved`.
    fn upstream<'a>(&'a mut self, moved: &'a mut Moved) -> Direction<'a> {
        Direction {
            src: &mut self.client,
            srd: &mut self.crd,
            dst: &mut self.server,
            drd: &mut self.srd,
            flow: &mut self.c2s,
            moved: &mut moved.client_to_server,
            spliced: &mut moved.spliced,
            src_reset: CloseReason::ClientReset,
            dst_reset: CloseReason::ServerReset,
            other_shut: self.s2c.shut,
        }
    }

    /// Server to client, counted in `moved`.
    fn downstream<'a>(&'a mut self, moved: &'a mut Moved) -> Direction<'a> {
        Direction {
            src: &mut self.server,
            srd: &mut self.srd,
            dst: &mut self.client,
            drd: &mut self.crd,
            flow: &mut self.s2c,
            moved: &mut moved.server_to_client,
            spliced: &mut moved.spliced,
            src_reset: CloseReason::ServerReset,
            dst_reset: CloseReason::ClientReset,
            other_shut: self.c2s.shut,
        }
    }

    /// Moves bytes both ways until nothing moves, the budget is spent, or an error ends it.
    pub fn pump(&mut self, now: Instant, moved: &mut Moved, bufs: &mut Bufs) -> Pump {
        let mut budget = READ_BUDGET;
        loop {
            let up = match self.upstream(moved).flow(bufs, &mut budget, now) {
                Ok(step) => step,
                Err(r) => return Pump::Close(r),
            };
            moved.client_active |= up.src_active;
            moved.server_active |= up.dst_active;
            let down = match self.downstream(moved).flow(bufs, &mut budget, now) {
                Ok(step) => step,
                Err(r) => return Pump::Close(r),
            };
            moved.client_active |= down.dst_active;
            moved.server_active |= down.src_active;
            if self.c2s.shut && self.s2c.shut {
                return Pump::Done;
            }
            if !(up.progressed || down.progressed) {
                return Pump::Idle;
            }
            if budget == 0 {
                return Pump::More;
            }
        }
    }

    /// Gives this session's rings and pipes back to the reactor's pools (at close).
    pub fn release(&mut self, bufs: &mut Bufs) {
        self.c2s.release(bufs);
        self.s2c.release(bufs);
    }
}

/// Sets SO_LINGER 0 so that dropping `s` sends RST instead of FIN.
pub fn reset_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn pair() -> (std::net::TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, TcpStream::from_std(b))
    }

    fn bufs(mode: SpliceMode) -> Bufs {
        Bufs::new(1024, 4096, 4, mode)
    }

    /// Drives a pipe by hand (all edges assumed) and checks half-close forwarding order.
    fn half_close(mode: SpliceMode) {
        let (mut c_peer, c) = pair();
        let (mut s_peer, s) = pair();
        let all = Readiness { event: Ready::ALL };
        let mut p = Pipe::new(c, all, s, all);
        let mut b = bufs(mode);
        c_peer.write_all(&[5u8; 3000]).unwrap();
        c_peer.shutdown(Shutdown::Write).unwrap();
        s_peer.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        loop {
            p.crd.event = Ready::ALL;
            p.srd.event = Ready::ALL;
            let mut m = Moved::default();
            let r = p.pump(Instant::now(), &mut m, &mut b);
            assert!(!matches!(r, Pump::Close(_)), "{r:?}");
            if p.c2s.shut {
                assert_eq!(p.c2s.parked(), 0, "FIN before the parked bytes");
                break;
            }
            s_peer.set_nonblocking(true).unwrap();
            if let Ok(n) = s_peer.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            assert!(Instant::now() < deadline);
        }
        s_peer.set_nonblocking(false).unwrap();
        s_peer.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 3000);
        assert!(!p.s2c.shut, "the other direction stays open");
        assert_eq!((b.rings.in_use(), b.pipes.in_use()), (0, 0), "drained buffers go back to the pools");
    }

    #[test]
    fn half_close_is_forwarded_after_the_bytes() {
        for mode in [SpliceMode::Off, SpliceMode::On, SpliceMode::Auto] {
            half_close(mode);
        }
    }

    /// A peer that does not read: the bytes it did not take are parked in one pooled ring,
    /// reading stops when that ring is full, and the ring goes back once the peer reads.
    #[test]
    fn unread_bytes_park_in_one_ring_and_reading_stops_when_it_is_full() {
        let (mut c_peer, c) = pair();
        let (mut s_peer, s) = pair();
        let all = Readiness { event: Ready::ALL };
        let mut p = Pipe::new(c, all, s, all);
        let mut b = bufs(SpliceMode::Off);
        c_peer.set_nonblocking(true).unwrap();
        let chunk = [1u8; 64 * 1024];
        let mut sent = 0usize;
        // Push until the client cannot write any more: every buffer on the way is full.
        for _ in 0..10_000 {
            match c_peer.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            p.crd.event = Ready::ALL;
            p.srd.event = Ready::ALL;
            let _ = p.pump(Instant::now(), &mut Moved::default(), &mut b);
            if p.c2s.ring.as_ref().is_some_and(Ring::is_full) {
                match c_peer.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
        }
        assert!(p.c2s.ring.as_ref().is_some_and(Ring::is_full), "no full parked ring after {sent} bytes");
        assert_eq!(b.rings.in_use(), 1);
        // Drain the server peer: the ring empties and goes back to the pool.
        s_peer.set_nonblocking(true).unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while got < sent {
            if let Ok(n) = s_peer.read(&mut buf) {
                got += n;
            }
            p.crd.event = Ready::ALL;
            p.srd.event = Ready::ALL;
            let _ = p.pump(Instant::now(), &mut Moved::default(), &mut b);
            assert!(Instant::now() < deadline, "{got} of {sent}");
        }
        assert_eq!(got, sent);
        assert!(p.c2s.ring.is_none());
        assert_eq!((b.rings.in_use(), b.rings.cached()), (0, 1));
    }

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

    /// Reads `want` bytes from a blocking peer (with a deadline), pumping `p` between reads.
    fn pump_until_read(p: &mut Pipe, b: &mut Bufs, peer: &mut std::net::TcpStream, want: usize) -> Moved {
        let mut total = Moved::default();
        let mut got = 0;
        let mut buf = vec![0u8; want.max(1)];
        peer.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while got < want {
            p.crd.event = Ready::ALL;
            p.srd.event = Ready::ALL;
            let mut m = Moved::default();
            let r = p.pump(Instant::now(), &mut m, b);
            assert!(!matches!(r, Pump::Close(_)), "{r:?}");
            total.client_to_server += m.client_to_server;
            total.spliced += m.spliced;
            match peer.read(&mut buf[..want - got]) {
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < deadline, "{got} of {want}");
        }
        total
    }

    /// Through a real pipe in auto mode: a full read makes the direction splice, a run of small
    /// messages sends it back to copy once its pipe drained, and the switches are counted.
    #[test]
    fn auto_mode_goes_back_to_copy_after_small_reads() {
        let (mut c_peer, c) = pair();
        let (mut s_peer, s) = pair();
        let all = Readiness { event: Ready::ALL };
        let mut p = Pipe::new(c, all, s, all);
        let mut b = bufs(SpliceMode::Auto);
        // 1024-byte scratch: 3000 queued bytes fill the first read.
        c_peer.write_all(&[7u8; 3000]).unwrap();
        pump_until_read(&mut p, &mut b, &mut s_peer, 3000);
        assert!(p.c2s.auto.bulk());
        assert_eq!((b.switches_to_splice, b.switches_to_copy), (1, 0));
        // Small messages (16 bytes, below 1024 / 4), one at a time: the first
        // COPY_AFTER_SMALL_FILLS are spliced, then the direction copies.
        let mut spliced = Vec::new();
        for i in 0..8u8 {
            c_peer.write_all(&[i; 16]).unwrap();
            spliced.push(pump_until_read(&mut p, &mut b, &mut s_peer, 16).spliced);
        }
        let k = usize::from(COPY_AFTER_SMALL_FILLS);
        assert!(spliced[..k].iter().all(|n| *n == 16), "{spliced:?}");
        assert!(spliced[k..].iter().all(|n| *n == 0), "{spliced:?}");
        assert!(!p.c2s.auto.bulk());
        assert_eq!((b.switches_to_splice, b.switches_to_copy), (1, 1));
        assert_eq!(p.c2s.piped, 0);
        // A read that fills the scratch again: splice again.
        c_peer.write_all(&[9u8; 3000]).unwrap();
        let m = pump_until_read(&mut p, &mut b, &mut s_peer, 3000);
        assert!(p.c2s.auto.bulk() && m.spliced > 0, "{m:?}");
        assert_eq!((b.switches_to_splice, b.switches_to_copy), (2, 1));
        assert_eq!((b.rings.in_use(), b.pipes.in_use()), (0, 0));
    }

    #[test]
    fn pool_is_bounded_and_caches_a_few() {
        let mut pool: Pool<u32> = Pool::new(3, 1);
        let a = pool.take(|| Ok(1)).unwrap();
        let b = pool.take(|| Ok(2)).unwrap();
        let c = pool.take(|| Ok(3)).unwrap();
        assert!(pool.take(|| Ok(4)).is_err(), "a fourth item past the bound");
        pool.give(a);
        pool.give(b);
        pool.discard(c);
        assert_eq!((pool.in_use(), pool.cached()), (0, 1));
        assert_eq!(pool.take(|| Ok(9)).unwrap(), 1, "the cached item is reused");
    }
}

//! The byte pump: one pass of a session moves bytes both ways, each direction over a
//! [`Direction`] with the copy path (scratch buffer, write-through, a ring for what the peer did
//! not take) and the splice path (socket → pooled kernel pipe → socket). The rules it follows
//! (lazy buffers, `splice = "auto"`, backpressure, half-close order) are in the parent module.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

use super::{AutoPath, Bufs, CloseReason, READ_BUDGET};
use crate::engine::buf::Ring;
use crate::engine::{Readiness, Ready, Stamp};
use crate::net::splice::KernelPipe;
use crate::proxy::config::SpliceMode;

/// One direction: bytes read from `src` go straight to `dst`; what `dst` did not take waits
/// in `ring` (copy path) or `pipe` (splice path), never both.
#[derive(Default)]
pub struct Flow {
    /// `src` returned EOF.
    pub eof: bool,
    /// `shutdown(Write)` was sent to `dst` (EOF forwarded after the parked bytes drained).
    pub shut: bool,
    /// When `eof` was seen.
    pub eof_at: Option<Stamp>,
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
        if let Some(r) = self.ring.take() {
            // Cleared (not zeroed) on its way back.
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
        // At an urgent mark splice says EAGAIN with bytes still queued (only recv steps over
        // the out-of-band byte): with urgent data signalled and nothing in the pipe, copy.
        let urgent = self.srd.event.contains(Ready::URGENT) && f.piped == 0;
        let spliced = if f.splices(bufs.splice) && !urgent { self.splice(bufs, *budget) } else { None };
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
                self.flow.eof_at = Some(now.into());
                step.progressed = true;
                step.src_active = true;
            }
            Ok(n) => {
                *budget = budget.saturating_sub(n);
                step.progressed = true;
                step.src_active = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.srd.read_drained(),
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
            match bufs.pipes.take() {
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
            // A short read into the ring ends the edge, as below.
            let asked = ring.spare_mut().len();
            let r = ring.read_from(self.src);
            if let Ok(n @ 1..) = r {
                self.srd.short_read(n, asked, true);
            }
            return Ok(Fill::Done(r));
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
                // A short read took everything the socket had queued: the next read would
                // be EAGAIN, so the edge ends here (`Readiness::short_read`; the proxy's
                // sockets are plain TCP, whatever they carry). With a hang-up or an error
                // the loop still reads on, to the 0 or the error.
                self.srd.short_read(n, bufs.scratch.len(), true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::session::COPY_AFTER_SMALL_FILLS;
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
}

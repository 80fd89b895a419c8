//! The target: accepts on one SO_REUSEPORT listener and holds, echoes or discards. Embedded as
//! a [`Sink`] in the reactors of `netforge serve` (the standalone target, the test fixture and
//! the proxy's demo backend) and of goon (its built-in default target).
//!
//! Accept rules are the shared [`Acceptor`]'s: a bounded batch per wake-up, stop at the
//! process's connection limit (one [`Admission`] for all reactors) and resume as soon as a
//! connection closes anywhere, EMFILE/ENFILE pause with a timer (counted, logged at most every
//! 5 s). Nothing spins and nothing exits.
//!
//! Echo buffers are lazy, as the proxy's are: a read lands in the reactor's scratch buffer and
//! is written straight back; only the bytes the peer did not take are parked in a ring borrowed
//! from the reactor's [`BufPool`], given back (cleared, not zeroed) once they went out. An idle
//! echo connection holds its socket and a few words, no ring; a busy one at most one ring of
//! [`ECHO_RING_BYTES`], and a full ring stops reading it (backpressure to the sender).
//!
//! With TLS ([`Sink::with_tls`]: `serve --tls`, goon's sink under `goon --tls`) each accepted
//! socket is the server side of a rustls session ([`crate::tls::Stream`]): the modes see
//! plaintext, the handshake runs inside the first reads, and what rustls queued is flushed on
//! every event.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;

use crate::engine::accept::{Acceptor, Admission, Slot};
use crate::engine::buf::Ring;
use crate::engine::pool::{BufPool, PoolStats};
use crate::engine::{Cx, Entry, Handle, Key, Kind, Readiness, Ready, Refused};
use crate::net::tune::SockBufs;

/// Bytes read from one connection per wake-up before yielding to the others.
pub const READ_BUDGET: usize = 256 * 1024;
/// Per-reactor scratch buffer for discarded reads.
pub const SCRATCH_BYTES: usize = 64 * 1024;
/// Echo: the most one read takes, and the size of the ring a connection borrows for the bytes
/// its peer did not read back yet.
pub const ECHO_RING_BYTES: usize = 16 * 1024;
/// Echo: free rings a reactor keeps for reuse (its pool's high-water mark), 1 MiB.
pub const ECHO_RING_CACHE: usize = 64;

crate::keyword! {
    /// What `serve` (and goon's built-in sink) does with each connection.
    pub enum Mode("mode") {
        /// Accept and keep connections; never write; close on peer EOF or reset.
        Hold = "hold",
        /// Echo every byte back; half-close is honoured (our FIN follows the peer's once flushed).
        Echo = "echo",
        /// Read and drop everything.
        Discard = "discard",
        /// WebSocket: accept upgrades on any path, answer pings, echo every message
        /// (`crate::ws::sink`).
        Ws = "ws",
        /// WebSocket as `ws`, but messages are dropped, not echoed.
        WsDiscard = "ws_discard",
    }
}

/// Per-reactor counters, sent whole (not as deltas) each tick: a lost message loses nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub accepted: u64,
    pub closed: u64,
    pub active: u64,
    pub peak_active: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub accept_pauses: u64,
    /// Echo: the reactor's ring pool.
    pub rings: PoolStats,
    /// TLS: handshakes done and failed.
    pub tls: crate::tls::ServerTlsStats,
    /// The `ws` modes' counters.
    pub ws: crate::ws::sink::SinkWsStats,
}

impl crate::engine::coordinator::Snapshot for SinkStats {
    fn merge(&mut self, o: &SinkStats) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.active += o.active;
        self.peak_active += o.peak_active;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.accept_pauses += o.accept_pauses;
        self.rings.merge(&o.rings);
        self.tls.merge(&o.tls);
        self.ws.merge(&o.ws);
    }
}

/// One accepted connection: an entry of the reactor's table (the whole entry in `serve`, one
/// kind of entry in goon's).
pub struct SinkConn {
    sock: crate::tls::Stream,
    /// TLS: the handshake completed (and was counted).
    tls_done: bool,
    rd: Readiness,
    /// Echo mode only: bytes read and not yet written back, in a ring borrowed from the pool;
    /// `None` while there are none.
    ring: Option<Ring>,
    read_eof: bool,
    /// The `ws` modes only: the connection's WebSocket state.
    ws: Option<Box<crate::ws::sink::WsConn>>,
    /// Its place under the connection limit, freed with the connection.
    _slot: Slot,
}

impl Entry for SinkConn {
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        (i == 0).then_some(&mut self.sock as &mut dyn Source)
    }
}

/// A table entry type that can hold a [`SinkConn`]: `SinkConn` itself, or a role's enum with
/// a variant for it.
pub trait SinkHost: Entry + From<SinkConn> {
    fn sink_conn(&mut self) -> Option<&mut SinkConn>;
    fn is_sink(&self) -> bool;
}

impl SinkHost for SinkConn {
    fn sink_conn(&mut self) -> Option<&mut SinkConn> {
        Some(self)
    }

    fn is_sink(&self) -> bool {
        true
    }
}

/// The accept-and-serve component, embeddable in any role's reactor.
pub struct Sink {
    mode: Mode,
    acceptor: Acceptor,
    /// Connections it may hold at once (the process's limit: any reactor may hold all of it).
    cap: usize,
    bufs: SockBufs,
    pub stats: SinkStats,
    scratch: Box<[u8]>,
    /// Echo rings: at most one per connection out at once.
    rings: BufPool<Ring>,
    /// Serve every connection over TLS with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Sink {
    /// `gate` is the connection limit shared by every sink of the process.
    pub fn new(listener: std::net::TcpListener, mode: Mode, gate: Arc<Admission>, bufs: SockBufs) -> Sink {
        let cap = gate.cap();
        Sink {
            mode,
            cap,
            acceptor: Acceptor::new(listener, "the listener", gate),
            bufs,
            stats: SinkStats::default(),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            rings: BufPool::new(ECHO_RING_BYTES, cap, ECHO_RING_CACHE),
            tls: None,
        }
    }

    /// Serves TLS on every connection (the server side of a rustls session each).
    pub fn with_tls(mut self, cfg: Option<Arc<rustls::ServerConfig>>) -> Sink {
        self.tls = cfg;
        self
    }

    /// Table entries it may hold: size the reactor's table with it.
    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn register<E: SinkHost>(&mut self, cx: &mut Cx<E>) -> io::Result<()> {
        self.acceptor.register(cx)
    }

    /// Whether `h` is this sink's listener.
    pub fn owns(&self, h: Handle) -> bool {
        self.acceptor.handle() == Some(h)
    }

    /// The listener's event (see [`Sink::owns`]).
    pub fn on_handle<E: SinkHost>(&mut self, cx: &mut Cx<E>, ready: Ready) {
        self.acceptor.note_ready(ready);
        self.accept(cx);
    }

    /// The listener's timer (see [`Sink::owns`]).
    pub fn on_handle_timer<E: SinkHost>(&mut self, cx: &mut Cx<E>, kind: Kind) {
        if self.acceptor.on_timer(kind) {
            self.accept(cx);
        }
    }

    /// From the reactor's tick: trims the ring cache of an idle reactor (see [`BufPool::sweep`]).
    pub fn sweep(&mut self, now: std::time::Instant) {
        self.rings.sweep(now);
        self.stats.rings = self.rings.stats();
    }

    /// The reactor's waker fired: a slot may have been freed.
    pub fn on_wake<E: SinkHost>(&mut self, cx: &mut Cx<E>) {
        self.acceptor.on_wake(cx);
    }

    fn accept<E: SinkHost>(&mut self, cx: &mut Cx<E>) {
        let mut taken = 0;
        while let Some((sock, _peer, slot)) = self.acceptor.next(cx, &mut taken) {
            self.adopt(cx, sock, slot);
        }
        self.stats.accept_pauses = self.acceptor.pauses;
    }

    fn adopt<E: SinkHost>(&mut self, cx: &mut Cx<E>, sock: TcpStream, slot: Slot) {
        let _ = self.bufs.apply(&sock);
        if self.mode != Mode::Hold && self.mode != Mode::Discard {
            // An answer goes out at once: Nagle would hold a small one until the peer
            // acknowledged the last (a whole message interval behind a TLS session ticket).
            let _ = crate::net::sockopt::set_nodelay(&sock);
        }
        let mut sock = crate::tls::Stream::plain(sock);
        if let Some(cfg) = &self.tls {
            if let Err(e) = sock.start_server(cfg.clone()) {
                log::debug!("r{} tls: {e}", cx.id);
                self.stats.tls.failed += 1;
                return;
            }
        }
        let ws = matches!(self.mode, Mode::Ws | Mode::WsDiscard).then(|| Box::new(crate::ws::sink::WsConn::new()));
        let conn =
            SinkConn { sock, tls_done: false, rd: Readiness::default(), ring: None, read_eof: false, ws, _slot: slot };
        match cx.adopt(E::from(conn)) {
            Ok(key) if matches!(self.mode, Mode::Ws | Mode::WsDiscard) => {
                // Over TLS the head's deadline covers the handshake before it.
                cx.timers.arm(key, TIMER_WS_HEAD, cx.now + crate::http::HEAD_DEADLINE);
            }
            Ok(key) if self.tls.is_some() => {
                cx.timers.arm(key, TIMER_TLS_HANDSHAKE, cx.now + TLS_HANDSHAKE_DEADLINE);
            }
            Ok(_) => {}
            Err((_, Refused::Register(e))) => {
                log::debug!("r{} register: {e}", cx.id);
                return;
            }
            Err((_, Refused::Full)) => return,
        }
        self.stats.accepted += 1;
        self.stats.active += 1;
        self.stats.peak_active = self.stats.peak_active.max(self.stats.active);
    }

    fn close<E: SinkHost>(&mut self, cx: &mut Cx<E>, key: Key) {
        if let Some(e) = cx.close(key) {
            if e.sink_conn().is_some_and(|c| c.sock.is_tls() && !c.tls_done) {
                self.stats.tls.failed += 1;
            }
            if let Some(r) = e.sink_conn().and_then(|c| c.ring.take()) {
                self.rings.give(r);
                self.stats.rings = self.rings.stats();
            }
            self.stats.closed += 1;
            self.stats.active -= 1;
        }
    }

    /// Readiness of connection `key` (an entry whose [`SinkHost::sink_conn`] is `Some`).
    pub fn on_ready<E: SinkHost>(&mut self, cx: &mut Cx<E>, key: Key, ready: Ready) {
        let mode = self.mode;
        let Some(c) = cx.table.get_mut(key).and_then(E::sink_conn) else { return };
        c.rd.event |= ready;
        if c.sock.is_tls() && c.sock.flush_tls().is_err() {
            return self.close(cx, key);
        }
        let outcome = match mode {
            Mode::Hold | Mode::Discard => drain(c, &mut self.scratch, &mut self.stats),
            Mode::Echo => {
                let o = echo(c, &mut self.scratch[..ECHO_RING_BYTES], &mut self.rings, &mut self.stats);
                self.stats.rings = self.rings.stats();
                o
            }
            Mode::Ws | Mode::WsDiscard => {
                let o = ws_step(c, &mut self.scratch[..ECHO_RING_BYTES], &mut self.rings, &mut self.stats, mode);
                self.stats.rings = self.rings.stats();
                o
            }
        };
        if !c.tls_done && c.sock.session().is_some_and(|s| !s.is_handshaking()) {
            c.tls_done = true;
            self.stats.tls.handshakes += 1;
        }
        match outcome {
            Outcome::Idle => {}
            Outcome::More => cx.defer(key),
            Outcome::Close => self.close(cx, key),
        }
    }

    /// A timer of connection `key`: in the `ws` modes, the request head's deadline.
    pub fn on_timer<E: SinkHost>(&mut self, cx: &mut Cx<E>, key: Key, kind: Kind) {
        let Some(c) = cx.table.get_mut(key).and_then(E::sink_conn) else { return };
        if kind == TIMER_WS_HEAD && c.ws.as_ref().is_some_and(|w| w.in_head()) {
            self.stats.ws.timeouts += 1;
            self.close(cx, key);
        } else if kind == TIMER_TLS_HANDSHAKE && !c.tls_done {
            // A client that connects and never finishes its handshake holds a slot and its
            // buffered records no longer (counted failed, as every handshake that did not end).
            log::debug!("r{} tls: no handshake within {TLS_HANDSHAKE_DEADLINE:?} of the accept", cx.id);
            self.close(cx, key);
        }
    }

    /// Closes every connection (shutdown path).
    pub fn close_all<E: SinkHost>(&mut self, cx: &mut Cx<E>) {
        let keys: Vec<Key> = cx.table.iter().filter(|(_, e)| e.is_sink()).map(|(k, _)| k).collect();
        for k in keys {
            self.close(cx, k);
        }
    }
}

/// The `ws` modes' deadline for a complete request head (a connection's timer kind).
const TIMER_WS_HEAD: Kind = Kind::new(0);
/// The other modes' deadline, over TLS, for a complete handshake.
const TIMER_TLS_HANDSHAKE: Kind = Kind::new(1);
/// How long after its accept a TLS connection may take to complete its handshake.
pub const TLS_HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// One step of a `ws`-mode connection (`crate::ws::sink`).
fn ws_step(
    c: &mut SinkConn,
    scratch: &mut [u8],
    rings: &mut BufPool<Ring>,
    stats: &mut SinkStats,
    mode: Mode,
) -> Outcome {
    use crate::ws::sink::{step, Io, Next};
    let Some(ws) = c.ws.as_mut() else { return Outcome::Close };
    let short_read_drains = !c.sock.is_tls();
    let mut io = Io {
        sock: &mut c.sock,
        rd: &mut c.rd,
        ring: &mut c.ring,
        rings,
        ring_bytes: ECHO_RING_BYTES,
        scratch,
        bytes_in: &mut stats.bytes_in,
        bytes_out: &mut stats.bytes_out,
        stats: &mut stats.ws,
        echo: mode == Mode::Ws,
        short_read_drains,
    };
    match step(ws, &mut io) {
        Next::Idle => Outcome::Idle,
        Next::More => Outcome::More,
        Next::Close => Outcome::Close,
    }
}

enum Outcome {
    Idle,
    More,
    Close,
}

fn drain(c: &mut SinkConn, scratch: &mut [u8], stats: &mut SinkStats) -> Outcome {
    if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
        return Outcome::Idle;
    }
    let mut budget = READ_BUDGET;
    while budget > 0 {
        match c.sock.read(scratch) {
            Ok(0) => return Outcome::Close,
            Ok(n) => {
                stats.bytes_in += n as u64;
                budget = budget.saturating_sub(n);
                // A short read emptied a plain socket: wait for the next edge.
                if c.rd.short_read(n, scratch.len(), !c.sock.is_tls()) {
                    return Outcome::Idle;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.read_drained();
                return Outcome::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Close,
        }
    }
    Outcome::More
}

/// Echoes what `c` has to give: parked bytes out first (that frees ring room and keeps the
/// order), the FIN once everything went back, then one read. A read without a parked ring goes
/// into `scratch` and straight back to the socket; what the socket did not take is parked in a
/// ring from `rings`. With no ring to be had (the pool's bound), the connection is not read:
/// its bytes wait in the kernel.
fn echo(c: &mut SinkConn, scratch: &mut [u8], rings: &mut BufPool<Ring>, stats: &mut SinkStats) -> Outcome {
    let mut budget = READ_BUDGET;
    loop {
        let mut progressed = false;
        if let Some(ring) = c.ring.as_mut() {
            if c.rd.event.contains(Ready::WRITABLE) && !ring.is_empty() {
                match ring.write_to(&mut c.sock) {
                    Ok(n) => {
                        stats.bytes_out += n as u64;
                        progressed = n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.rd.event.remove(Ready::WRITABLE),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Outcome::Close,
                }
            }
            if ring.is_empty() {
                if let Some(r) = c.ring.take() {
                    rings.give(r);
                }
            }
        }
        if c.read_eof && c.ring.is_none() {
            // Peer's FIN, everything echoed: send ours. The peer closing its read side ends it.
            let _ = c.sock.close_write();
            return Outcome::Close;
        }
        if budget == 0 {
            return Outcome::More;
        }
        if !c.read_eof && c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            // How much the read asks for, to tell a short read.
            let mut asked = scratch.len();
            let read = match c.ring.as_mut() {
                // Full: no read until the peer takes some (backpressure).
                Some(ring) if ring.is_full() => None,
                Some(ring) => {
                    asked = ring.spare_mut().len();
                    Some(ring.read_from(&mut c.sock))
                }
                // No ring could park what the peer does not take: leave the bytes in the kernel.
                None if !rings.can_take() => None,
                None => Some(echo_through(c, scratch, rings, stats)),
            };
            match read {
                None => {}
                Some(Ok(0)) => {
                    c.read_eof = true;
                    progressed = true;
                }
                Some(Ok(n)) => {
                    stats.bytes_in += n as u64;
                    budget = budget.saturating_sub(n);
                    progressed = true;
                    c.rd.short_read(n, asked, !c.sock.is_tls());
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => c.rd.read_drained(),
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(_)) => return Outcome::Close,
            }
        }
        if !progressed {
            // Ring full and socket unwritable, or nothing to read: wait for an edge.
            return Outcome::Idle;
        }
    }
}

/// One read into `scratch`, written back at once; the rest parked in a ring from `rings` (the
/// caller checked that one can be had). The read's result, as `Ring::read_from` gives it.
fn echo_through(
    c: &mut SinkConn,
    scratch: &mut [u8],
    rings: &mut BufPool<Ring>,
    stats: &mut SinkStats,
) -> io::Result<usize> {
    let n = c.sock.read(scratch)?;
    let mut sent = 0;
    while sent < n && c.rd.event.contains(Ready::WRITABLE) {
        match c.sock.write(&scratch[sent..n]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(w) => sent += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.rd.event.remove(Ready::WRITABLE),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stats.bytes_out += sent as u64;
    if sent < n {
        let mut ring = rings.take()?;
        let rest = &scratch[sent..n];
        ring.spare_mut()[..rest.len()].copy_from_slice(rest);
        ring.commit(rest.len());
        c.ring = Some(ring);
    }
    Ok(n)
}

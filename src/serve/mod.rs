//! `netforge serve`: the target. Accepts on one SO_REUSEPORT listener per reactor and holds,
//! echoes or discards. It is goon's built-in default target (embedded as a [`Sink`] in goon's
//! reactors), the test fixture, and the proxy's demo backend.
//!
//! Accept rules are the shared [`Acceptor`]'s: a bounded batch per wake-up, stop at the
//! process's connection limit (one [`Admission`] for all reactors) and resume as soon as a
//! connection closes anywhere, EMFILE/ENFILE pause with a timer (counted, logged at most every
//! 5 s). Nothing spins and nothing exits.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::buf::Ring;
use crate::net::accept::{Acceptor, Admission, Slot};
use crate::net::tune::SockBufs;
use crate::reactor::{listener_token, Cx, Handler, Pool, Readiness, Ready, Slab};
use crate::sys::Signal;

/// Bytes read from one connection per wake-up before yielding to the others.
pub const READ_BUDGET: usize = 256 * 1024;
/// Per-reactor scratch buffer for discarded reads.
pub const SCRATCH_BYTES: usize = 64 * 1024;
/// Echo ring per connection.
pub const ECHO_RING_BYTES: usize = 16 * 1024;
/// `--max-conns` without the flag: this, or what the open-file limit allows when lower.
pub const DEFAULT_MAX_CONNS: usize = 100_000;

/// The default `--max-conns`: [`DEFAULT_MAX_CONNS`], or one connection per descriptor of the
/// (raised) open-file limit past [`crate::sys::FD_RESERVE`], whichever is lower.
pub fn default_max_conns() -> usize {
    let fit = crate::sys::open_file_limit().saturating_sub(crate::sys::FD_RESERVE).max(1);
    DEFAULT_MAX_CONNS.min(usize::try_from(fit).unwrap_or(usize::MAX))
}
/// Slab tag of sink connections (goon's dials use tag 0).
pub const SINK_TAG: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Accept and keep connections; never write; close on peer EOF or reset.
    Hold,
    /// Echo every byte back; half-close is honoured (our FIN follows the peer's once flushed).
    Echo,
    /// Read and drop everything.
    Discard,
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
}

impl SinkStats {
    pub fn add(&mut self, o: &SinkStats) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.active += o.active;
        self.peak_active += o.peak_active;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.accept_pauses += o.accept_pauses;
    }
}

struct SinkConn {
    sock: TcpStream,
    rd: Readiness,
    /// Echo mode only.
    ring: Option<Ring>,
    read_eof: bool,
    /// Its place under the connection limit, freed with the connection.
    _slot: Slot,
}

/// The accept-and-serve component, embeddable in any role's reactor.
pub struct Sink {
    mode: Mode,
    acceptor: Acceptor,
    conns: Slab<SinkConn>,
    bufs: SockBufs,
    pub stats: SinkStats,
    scratch: Box<[u8]>,
}

impl Sink {
    /// `gate` is the connection limit shared by every sink of the process.
    pub fn new(listener: std::net::TcpListener, mode: Mode, gate: Arc<Admission>, bufs: SockBufs) -> Sink {
        Sink {
            mode,
            conns: Slab::new(SINK_TAG, gate.cap(), 0),
            acceptor: Acceptor::new(listener, listener_token(0), "the listener", gate),
            bufs,
            stats: SinkStats::default(),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
        }
    }

    pub fn register(&mut self, cx: &mut Cx) -> io::Result<()> {
        self.acceptor.register(cx.registry)
    }

    /// Whether this sink handles `token`.
    pub fn owns(&self, token: Token) -> bool {
        token == self.acceptor.token() || self.conns.owns(token)
    }

    pub fn on_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if token == self.acceptor.token() {
            self.acceptor.note_ready(ready);
            self.accept(cx);
            return;
        }
        self.serve(cx, token, ready);
    }

    pub fn on_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        if token == self.acceptor.token() && self.acceptor.on_timer(kind) {
            self.accept(cx);
        }
    }

    /// The reactor's waker fired: a slot may have been freed.
    pub fn on_wake(&mut self, cx: &mut Cx) {
        self.acceptor.on_wake(cx);
    }

    fn accept(&mut self, cx: &mut Cx) {
        let mut taken = 0;
        while let Some((sock, _peer, slot)) = self.acceptor.next(cx, &mut taken) {
            self.adopt(cx, sock, slot);
        }
        self.stats.accept_pauses = self.acceptor.pauses;
    }

    fn adopt(&mut self, cx: &mut Cx, sock: TcpStream, slot: Slot) {
        let _ = self.bufs.apply(socket2::SockRef::from(&sock));
        let ring = (self.mode == Mode::Echo).then(|| Ring::new(ECHO_RING_BYTES));
        let conn =
            SinkConn { sock, rd: Readiness::new(Ready::READABLE | Ready::HUP), ring, read_eof: false, _slot: slot };
        let Ok(token) = self.conns.insert(conn) else { return };
        let registered = match self.conns.get_mut(token) {
            Some(c) => cx.registry.register(&mut c.sock, token, Interest::READABLE | Interest::WRITABLE),
            None => return,
        };
        if let Err(e) = registered {
            log::debug!("r{} register: {e}", cx.id);
            self.conns.remove(token);
            return;
        }
        self.stats.accepted += 1;
        self.stats.active += 1;
        self.stats.peak_active = self.stats.peak_active.max(self.stats.active);
    }

    fn close(&mut self, _cx: &mut Cx, token: Token) {
        if self.conns.remove(token).is_some() {
            self.stats.closed += 1;
            self.stats.active -= 1;
        }
    }

    fn serve(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        let mode = self.mode;
        let Some(c) = self.conns.get_mut(token) else { return };
        c.rd.event |= ready;
        let outcome = match mode {
            Mode::Hold | Mode::Discard => drain(c, &mut self.scratch, &mut self.stats),
            Mode::Echo => echo(c, &mut self.stats),
        };
        match outcome {
            Outcome::Idle => {}
            Outcome::More => cx.defer(token),
            Outcome::Close => self.close(cx, token),
        }
    }

    /// Closes every connection (shutdown path).
    pub fn close_all(&mut self, cx: &mut Cx) {
        for t in self.conns.tokens() {
            self.close(cx, t);
        }
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
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.event.remove(Ready::READABLE | Ready::HUP);
                return Outcome::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Close,
        }
    }
    Outcome::More
}

fn echo(c: &mut SinkConn, stats: &mut SinkStats) -> Outcome {
    let Some(ring) = c.ring.as_mut() else { return Outcome::Close };
    let mut budget = READ_BUDGET;
    loop {
        let mut progressed = false;
        // Write what we hold first: that frees ring space for reading.
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
        if c.read_eof && ring.is_empty() {
            // Peer's FIN, everything echoed: send ours. The peer closing its read side ends it.
            let _ = c.sock.shutdown(Shutdown::Write);
            return Outcome::Close;
        }
        if budget == 0 {
            return Outcome::More;
        }
        if !c.read_eof && !ring.is_full() && c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            match ring.read_from(&mut c.sock) {
                Ok(0) => {
                    c.read_eof = true;
                    progressed = true;
                }
                Ok(n) => {
                    stats.bytes_in += n as u64;
                    budget = budget.saturating_sub(n);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.rd.event.remove(Ready::READABLE | Ready::HUP),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Close,
            }
        }
        if !progressed {
            // Ring full and socket unwritable, or nothing to read: wait for an edge.
            return Outcome::Idle;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The standalone `serve` role.

pub enum ServeCmd {
    Stop,
}

struct ServeReactor {
    sink: Sink,
    stats_tx: Sender<(usize, SinkStats, bool)>,
    stopping: bool,
}

impl Handler for ServeReactor {
    type Cmd = ServeCmd;

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        cx.timers.set_capacity(1024);
        self.sink.register(cx)
    }

    fn on_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        self.sink.on_ready(cx, token, ready);
    }

    fn on_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        self.sink.on_timer(cx, token, kind);
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: ServeCmd) {
        match cmd {
            ServeCmd::Stop => {
                self.sink.close_all(cx);
                self.stopping = true;
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        let _ = self.stats_tx.try_send((cx.id, self.sink.stats, false));
    }

    fn on_wake(&mut self, cx: &mut Cx) {
        self.sink.on_wake(cx);
    }

    fn finished(&self) -> bool {
        self.stopping
    }

    fn on_exit(&mut self, cx: &mut Cx) {
        // The coordinator waits for this one: a blocking send with a deadline is fine at exit.
        let _ = self.stats_tx.send_timeout((cx.id, self.sink.stats, true), Duration::from_secs(1));
    }
}

/// Options of `netforge serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub mode: Mode,
    pub max_conns: usize,
    pub threads: usize,
    pub interval: Duration,
    pub bufs: SockBufs,
    /// `--reuse-port`: share the address with other processes (see [`crate::net::listen`]).
    pub reuse_port: bool,
}

/// Final numbers of a serve run.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeReport {
    pub totals: SinkStats,
}

/// Runs the server until SIGINT/SIGTERM (or `stop` receives), printing a line per interval
/// when something changed and the totals at the end. The first stdout line names the bound
/// address (`port 0` resolves to an ephemeral port there).
pub fn run(
    cfg: &ServeConfig,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) -> Result<ServeReport, crate::error::Error> {
    let threads = cfg.threads.max(1);
    use crate::net::listen::{self, ListenTuning, Sharing};
    let (addr, listeners) = listen::group(
        cfg.listen,
        threads,
        listen::LISTEN_BACKLOG,
        &ListenTuning::default(),
        Sharing::from_flag(cfg.reuse_port),
    )
    .map_err(|source| crate::error::Error::bind("--listen", cfg.listen, source, Some("pass --reuse-port")))?;
    // The limit is the process's: any reactor may hold all of it.
    let gate = Admission::new(cfg.max_conns, threads, None);
    let (stats_tx, stats_rx) = crossbeam_channel::bounded(threads * 8);
    let handlers: Vec<ServeReactor> = listeners
        .into_iter()
        .map(|l| ServeReactor {
            sink: Sink::new(l, cfg.mode, gate.clone(), cfg.bufs),
            stats_tx: stats_tx.clone(),
            stopping: false,
        })
        .collect();
    let pool = Pool::spawn("serve", handlers, Duration::from_millis(100)).map_err(crate::error::Error::Io)?;
    gate.set_wakers(pool.wakers());
    let _ = writeln!(
        out,
        "netforge serve: listening on {addr} (mode {}, {}, max {})",
        format!("{:?}", cfg.mode).to_lowercase(),
        crate::stats::counted(threads as u64, "reactor", "reactors"),
        crate::stats::counted(gate.cap() as u64, "connection", "connections")
    );
    let _ = out.flush();
    let mut per: Vec<SinkStats> = vec![SinkStats::default(); threads];
    let mut done = vec![false; threads];
    let mut last_printed = SinkStats::default();
    let interval = if cfg.interval.is_zero() { Duration::from_secs(3600) } else { cfg.interval };
    let mut next_print = Instant::now() + interval;
    let mut stopping = false;
    let mut stop_deadline = None;
    let mut peak_active = 0;
    loop {
        let total = sum(&per);
        if !cfg.interval.is_zero() && Instant::now() >= next_print {
            if total != last_printed {
                let _ = writeln!(out, "{}", serve_line(&total));
                let _ = out.flush();
                last_printed = total;
            }
            next_print += interval;
        }
        if done.iter().all(|d| *d) {
            break;
        }
        if let Some(deadline) = stop_deadline {
            if Instant::now() >= deadline {
                log::warn!("serve: reactors did not report within the stop deadline");
                break;
            }
        }
        let wait = next_print.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
        select! {
            recv(stats_rx) -> msg => if let Ok((id, s, fin)) = msg {
                per[id] = s;
                done[id] |= fin;
                peak_active = peak_active.max(sum(&per).active);
            },
            recv(signals) -> sig => match sig {
                Ok(Signal::Interrupt) | Ok(Signal::Terminate) => {
                    if stopping {
                        break;
                    }
                    stopping = true;
                    pool.broadcast(|_| ServeCmd::Stop);
                    stop_deadline = Some(Instant::now() + Duration::from_secs(5));
                }
                Ok(Signal::User1) => {
                    let _ = writeln!(out, "{}", serve_line(&sum(&per)));
                }
                _ => {}
            },
            default(wait) => {}
        }
    }
    let mut totals = sum(&per);
    // Per-reactor peaks do not add up to a global peak; report what the coordinator saw.
    totals.peak_active = peak_active;
    let _ = writeln!(out, "{}", serve_final(&totals));
    let _ = out.flush();
    Ok(ServeReport { totals })
}

fn sum(per: &[SinkStats]) -> SinkStats {
    let mut t = SinkStats::default();
    for s in per {
        t.add(s);
    }
    t
}

fn serve_line(s: &SinkStats) -> String {
    format!(
        "serve: active {}, accepted {}, closed {}, bytes in {}, bytes out {}, accept pauses {}",
        s.active, s.accepted, s.closed, s.bytes_in, s.bytes_out, s.accept_pauses
    )
}

fn serve_final(s: &SinkStats) -> String {
    format!(
        "--- netforge serve statistics ---\naccepted {}, peak active {}, closed {}, bytes in {}, bytes out {}, accept pauses {}",
        s.accepted, s.peak_active, s.closed, s.bytes_in, s.bytes_out, s.accept_pauses
    )
}

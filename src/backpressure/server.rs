//! `netforge bp server`: the deliberately slow reader, on the engine's reactors.
//!
//! ```text
//!   reactor i (one SO_REUSEPORT listener each)          coordinator (main thread)
//!   ┌──────────────────────────────────────┐  Report   ┌──────────────────────────────┐
//!   │ payload conns: read read_size, arm   │ ───────▶  │ sums counters, prints a line │
//!   │   read_delay timer, sample each tick │ (bounded, │ per second and the totals,   │
//!   │ dashboard conns (/samples): bounded  │ try_send) │ turns samples into JSON      │
//!   │   queue of JSON messages each        │ ◀───────  │ and fans them out to every   │
//!   └──────────────────────────────────────┘  Samples  │ reactor (one Arc per batch)  │
//!                                             (cmd)    └──────────────────────────────┘
//! ```
//!
//! Why the fan-out goes through the coordinator: a dashboard may be accepted by any reactor
//! while the connections it charts live on all of them. Each reactor sends its connections'
//! samples once per `sample_interval`; the coordinator broadcasts one shared batch to all
//! reactors, and a reactor with no dashboards ignores it. Nothing is shared but channels, and
//! each dashboard has a bounded queue ([`DASHBOARD_QUEUE`] messages): a dashboard that cannot
//! keep up loses samples (counted as `samples dropped`), it never makes the server buffer.
//!
//! The slow read: a payload connection reads at most `read_size` bytes, then a per-connection
//! `read_delay` timer (one outstanding entry per connection) allows the next read. The READABLE
//! bit stays in the connection's userspace readiness meanwhile, so no edge is needed to resume.
//! With `read_delay = 0` the connection reads until `WouldBlock` or [`READ_BUDGET`] (then it is
//! deferred). In WebSocket mode the same budget is enforced underneath tungstenite by
//! [`Metered`], so the byte counts are raw stream bytes (frame headers included) in both modes.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;
use mio::{Interest, Token};
use tungstenite::Message;

use super::config::{Protocol, ServerConfig};
use super::http::{self, HeadParse, Route};
use super::web::{self, DashboardSample};
use super::ws::{CloseReply, Closed, Flush, Metered, Recv, SendStatus, WsConn, WsLimits};
use crate::engine::accept::{Acceptor, Admission, Slot};
use crate::engine::coordinator::{self, Ctl, Flow, Interval, Reports, Role, Snapshot};
use crate::engine::{Cx, Handler, Pool, Readiness, Ready, Slab};
use crate::net::tcp_info;
use crate::sys::Signal;

/// Bytes one connection may read per wake-up when `read_delay` is 0.
pub const READ_BUDGET: usize = 256 * 1024;
/// JSON messages waiting per dashboard; more are dropped and counted.
pub const DASHBOARD_QUEUE: usize = 1024;
/// How often the coordinator prints a line while connections are open.
pub const LINE_EVERY: Duration = Duration::from_secs(1);
/// WebSocket frames one connection may consume per wake-up before yielding to the others (the
/// rest stay in tungstenite's buffer: the connection is deferred, not left waiting for an edge).
pub const RECV_BATCH: usize = 64;
/// Longest wait for our reply to a peer's Close frame to fit in a full socket.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Payload connections one reactor probes (TCP_INFO + SIOCINQ, two syscalls) per sample tick
/// at most; the rest keep their "changed" mark and are probed at the next tick, starting
/// after the last one probed, so none starves.
pub const SAMPLE_BUDGET: usize = 2048;
/// The slow clock of idle connections: every this long, one tick probes every payload
/// connection nothing happened on (no event, no read) since its last probe, so each still sends
/// the dashboards a sample well inside their 5 s "stale" limit; in between, its last sample
/// stands. One sweep for all of them, not one per connection: the dashboards get one batch.
pub const IDLE_RESAMPLE: Duration = Duration::from_secs(3);
/// Bytes of dashboard frames gathered before a write (one write per batch of samples, not one
/// per sample; the payload streams keep writing each frame at once).
pub const DASHBOARD_WRITE_BUFFER: usize = 64 << 10;
/// Slab tag of lab server connections.
const SLAB_TAG: u8 = 2;
const TIMER_READ: u8 = 1;
const TIMER_HEAD: u8 = 2;
const TIMER_LINGER: u8 = 3;

/// Per-reactor counters, sent whole each tick (a lost message loses nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerStats {
    pub accepted: u64,
    pub closed: u64,
    /// Payload connections open now.
    pub active: u64,
    /// Bytes read from payload connections (closed ones included).
    pub bytes_read: u64,
    /// Sum of SIOCINQ over open payload connections at the last sample.
    pub inq: u64,
    /// Smallest rcv_wnd over open payload connections at the last sample.
    pub rcv_wnd_min: Option<u32>,
    /// Open payload connections whose rcv_wnd was 0 at the last sample.
    pub zero_window_conns: u64,
    /// Samples with rcv_wnd == 0, all connections, cumulative.
    pub zero_window_samples: u64,
    /// Earliest zero rcv_wnd, seconds after its connection was accepted.
    pub first_zero_s: Option<f64>,
    pub http_errors: u64,
    pub head_timeouts: u64,
    /// WebSocket connections we closed for a protocol or size violation (1002/1007/1009).
    pub ws_violations: u64,
    pub dashboards: u64,
    pub samples_dropped: u64,
    pub accept_pauses: u64,
}

impl Snapshot for ServerStats {
    fn merge(&mut self, o: &ServerStats) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.active += o.active;
        self.bytes_read += o.bytes_read;
        self.inq += o.inq;
        self.rcv_wnd_min = match (self.rcv_wnd_min, o.rcv_wnd_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.zero_window_conns += o.zero_window_conns;
        self.zero_window_samples += o.zero_window_samples;
        self.first_zero_s = match (self.first_zero_s, o.first_zero_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.http_errors += o.http_errors;
        self.head_timeouts += o.head_timeouts;
        self.ws_violations += o.ws_violations;
        self.dashboards += o.dashboards;
        self.samples_dropped += o.samples_dropped;
        self.accept_pauses += o.accept_pauses;
    }
}

/// One payload connection's sample, as the reactor takes it.
#[derive(Clone, Copy, Debug)]
struct ConnSample {
    conn: u64,
    peer: SocketAddr,
    t: f64,
    read_bytes: u64,
    inq: u32,
    rcv_wnd: Option<u32>,
}

struct Report {
    id: usize,
    stats: ServerStats,
    samples: Vec<ConnSample>,
    fin: bool,
}

pub enum ServerCmd {
    /// JSON messages for the dashboards.
    Samples(Arc<Vec<Arc<str>>>),
    Stop,
}

enum State {
    /// Raw TCP payload stream.
    Tcp(TcpStream),
    /// Reading an HTTP request head into a buffer of `http_head_max` bytes.
    Head { sock: TcpStream, buf: Box<[u8]>, filled: usize },
    /// Writing a page or an error; closed when written.
    Respond { sock: TcpStream, out: Vec<u8>, off: usize },
    /// WebSocket payload stream.
    Ws(Box<WsConn<Metered<TcpStream>>>),
    /// WebSocket sample stream of a dashboard.
    Dashboard { ws: Box<WsConn<TcpStream>>, queue: VecDeque<Arc<str>> },
    /// The peer closed a WebSocket (`/ws` or `/samples`) while its socket was full: writing our
    /// Close reply, for at most [`CLOSE_LINGER`].
    CloseReply(Box<dyn CloseReply + Send>),
    /// Transitional placeholder, never observed between calls.
    Gone,
}

struct Conn {
    id: u64,
    /// The client's address and port, as the dashboard names the connection.
    peer: SocketAddr,
    accepted: Instant,
    rd: Readiness,
    state: State,
    /// Raw TCP mode: bytes read (WebSocket mode counts in `Metered`).
    tcp_read: u64,
    next_read: Instant,
    timer_armed: bool,
    first_zero: Option<Duration>,
    /// Its place under `max_connections` (the process's), freed with the connection.
    _slot: Slot,
    probe: Probe,
}

/// The probes one tick may take, and where the next tick resumes when they ran out: the first
/// connection (in slab order, starting at the cursor) that was due and not probed.
#[derive(Debug)]
struct Budget {
    left: usize,
    resume: Option<usize>,
}

impl Budget {
    fn new(left: usize) -> Budget {
        Budget { left, resume: None }
    }

    /// Connection at position `slot` is due: may it be probed now?
    fn take(&mut self, slot: usize) -> bool {
        if self.left == 0 {
            self.resume.get_or_insert(slot);
            return false;
        }
        self.left -= 1;
        true
    }
}

/// What the sampler knows of a payload connection between probes. Only an event or a read can
/// change what a probe would return (SIOCINQ grows when data arrives, which is an event; it
/// shrinks and the window reopens when we read), so a connection with neither since its last
/// probe is not probed again until [`IDLE_RESAMPLE`] has passed: idle connections cost no
/// syscalls and send the dashboards nothing.
#[derive(Clone, Copy, Debug)]
struct Probe {
    /// Something happened since the last probe.
    changed: bool,
    /// When the last probe was taken; `None`: never.
    at: Option<Instant>,
    inq: u32,
    rcv_wnd: Option<u32>,
}

impl Probe {
    fn new() -> Probe {
        Probe { changed: true, at: None, inq: 0, rcv_wnd: None }
    }

    fn due(&self, idle_sweep: bool) -> bool {
        self.changed || idle_sweep || self.at.is_none()
    }
}

impl Conn {
    fn read_bytes(&self) -> u64 {
        match &self.state {
            State::Tcp(_) => self.tcp_read,
            State::Ws(ws) => ws.get_ref().read_bytes(),
            _ => 0,
        }
    }

    fn payload_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Tcp(s) => Some(s.as_fd()),
            State::Ws(ws) => Some(ws.get_ref().get_ref().as_fd()),
            _ => None,
        }
    }
}

enum Step {
    Idle,
    More,
    Close,
}

struct BpReactor {
    cfg: ServerConfig,
    limits: WsLimits,
    acceptor: Acceptor,
    conns: Slab<Conn>,
    next_id: u64,
    /// Bytes read by payload connections already closed.
    closed_read: u64,
    stats: ServerStats,
    scratch: Box<[u8]>,
    out: Sender<Report>,
    stopping: bool,
    /// Slab position where the next tick's probing starts (see [`SAMPLE_BUDGET`]).
    sample_cursor: usize,
    /// When the next tick probes the idle connections too (see [`IDLE_RESAMPLE`]).
    next_idle_sweep: Instant,
}

impl BpReactor {
    fn accept(&mut self, cx: &mut Cx) {
        let mut taken = 0;
        while let Some((sock, peer, slot)) = self.acceptor.next(cx, &mut taken) {
            self.adopt(cx, sock, peer, slot);
        }
        self.stats.accept_pauses = self.acceptor.pauses;
    }

    fn adopt(&mut self, cx: &mut Cx, sock: TcpStream, peer: SocketAddr, slot: Slot) {
        // Closed connections' read/head timers linger until their deadlines: drop them before
        // connection churn fills the heap.
        crate::engine::purge_closed(cx.legacy_timers, &self.conns);
        self.next_id += 1;
        // Connection ids are unique across reactors: reactor index in the low bits.
        let id = self.next_id * 64 + cx.id as u64 % 64;
        let state = match self.cfg.protocol {
            Protocol::Tcp => State::Tcp(sock),
            Protocol::Websocket => {
                State::Head { sock, buf: vec![0u8; self.cfg.http_head_max].into_boxed_slice(), filled: 0 }
            }
        };
        let conn = Conn {
            id,
            peer,
            accepted: cx.now,
            rd: Readiness::default(),
            state,
            tcp_read: 0,
            next_read: cx.now,
            timer_armed: false,
            first_zero: None,
            _slot: slot,
            probe: Probe::new(),
        };
        let Ok(token) = self.conns.insert(conn) else { return };
        let Some(c) = self.conns.get_mut(token) else { return };
        let registered = match &mut c.state {
            State::Tcp(s) | State::Head { sock: s, .. } => {
                cx.registry.register(s, token, Interest::READABLE | Interest::WRITABLE)
            }
            _ => Ok(()),
        };
        if let Err(e) = registered {
            log::debug!("r{} register: {e}", cx.id);
            self.conns.remove(token);
            return;
        }
        self.stats.accepted += 1;
        if self.cfg.protocol == Protocol::Websocket {
            cx.arm_token(cx.now + self.cfg.http_head_timeout, token, TIMER_HEAD);
        } else {
            self.stats.active += 1;
        }
        log::debug!("r{} t{:?} accepted conn {id}", cx.id, token);
    }

    fn close(&mut self, _cx: &mut Cx, token: Token) {
        if let Some(c) = self.conns.remove(token) {
            self.stats.closed += 1;
            match &c.state {
                State::Tcp(_) | State::Ws(_) => {
                    self.closed_read += c.read_bytes();
                    self.stats.active = self.stats.active.saturating_sub(1);
                }
                State::Dashboard { .. } => self.stats.dashboards = self.stats.dashboards.saturating_sub(1),
                _ => {}
            }
            if let State::Tcp(s) = &c.state {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn serve(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        let Some(c) = self.conns.get_mut(token) else { return };
        c.rd.event |= ready;
        c.probe.changed = true;
        let step = match &mut c.state {
            State::Tcp(_) => read_tcp(c, cx, token, &self.cfg, &mut self.scratch),
            State::Ws(_) => read_ws(c, cx, token, &self.cfg, &mut self.stats),
            State::Head { .. } => {
                let step = read_head(c, &self.cfg, self.limits, &mut self.stats);
                if matches!(c.state, State::Ws(_)) {
                    self.stats.active += 1;
                }
                if matches!(c.state, State::Dashboard { .. }) {
                    self.stats.dashboards += 1;
                }
                match step {
                    // The head turned into something else: serve that at once (leftover frames,
                    // a page to write).
                    Step::More => {
                        cx.defer_token(token);
                        Step::Idle
                    }
                    s => s,
                }
            }
            State::Respond { .. } => respond(c),
            State::Dashboard { .. } => dashboard(c),
            State::CloseReply(ws) => match ws.flush_close_reply() {
                Flush::NotNow => {
                    c.rd.event.remove(Ready::WRITABLE);
                    Step::Idle
                }
                Flush::Done | Flush::Closed(_) => Step::Close,
            },
            State::Gone => Step::Close,
        };
        match step {
            Step::Idle => {}
            Step::More => cx.defer_token(token),
            Step::Close => self.close_or_linger(cx, token),
        }
    }

    /// Closes the connection, unless it is a WebSocket whose peer sent Close while the socket
    /// was full: then it writes the reply first (on WRITABLE, for at most [`CLOSE_LINGER`]), so
    /// every Close is answered.
    fn close_or_linger(&mut self, cx: &mut Cx, token: Token) {
        let Some(c) = self.conns.get_mut(token) else { return };
        let unsent = match &c.state {
            State::Ws(ws) => ws.close_reply_unsent(),
            State::Dashboard { ws, .. } => ws.close_reply_unsent(),
            _ => false,
        };
        if !unsent || self.stopping {
            self.close(cx, token);
            return;
        }
        // The connection stops counting as a payload stream or a dashboard now.
        let read = c.read_bytes();
        let reply: Box<dyn CloseReply + Send> = match std::mem::replace(&mut c.state, State::Gone) {
            State::Ws(ws) => {
                self.closed_read += read;
                self.stats.active = self.stats.active.saturating_sub(1);
                ws
            }
            State::Dashboard { ws, .. } => {
                self.stats.dashboards = self.stats.dashboards.saturating_sub(1);
                ws
            }
            _ => return self.close(cx, token),
        };
        c.state = State::CloseReply(reply);
        cx.arm_token(cx.now + CLOSE_LINGER, token, TIMER_LINGER);
    }

    /// Probes the payload connections that changed (TCP_INFO, SIOCINQ; at most
    /// [`SAMPLE_BUDGET`] per tick, all of them for the final report), sums every connection's
    /// latest numbers into the counters, and sends the report; only fresh probes go to the
    /// dashboards.
    fn sample(&mut self, cx: &mut Cx, fin: bool) {
        let mut samples = Vec::new();
        let (mut inq_sum, mut zero_conns, mut wnd_min, mut read) = (0u64, 0u64, None::<u32>, self.closed_read);
        let mut budget = Budget::new(if fin { usize::MAX } else { SAMPLE_BUDGET });
        let idle_sweep = fin || cx.now >= self.next_idle_sweep;
        if idle_sweep {
            self.next_idle_sweep = cx.now + IDLE_RESAMPLE;
        }
        // Two passes over the slab: from the cursor to the end, then from the start to it.
        let cursor = self.sample_cursor;
        for pass in 0..2 {
            for (slot, (_, c)) in self.conns.iter_mut().enumerate() {
                if (pass == 0) != (slot >= cursor) {
                    continue;
                }
                let Some(fd) = c.payload_fd() else { continue };
                let t = cx.now.saturating_duration_since(c.accepted);
                if c.probe.due(idle_sweep) && budget.take(slot) {
                    c.probe = Probe {
                        changed: false,
                        at: Some(cx.now),
                        inq: tcp_info::inq(fd).unwrap_or(0),
                        rcv_wnd: tcp_info::tcp_info(fd).ok().and_then(|i| i.rcv_wnd),
                    };
                    if c.probe.rcv_wnd == Some(0) && c.first_zero.is_none() {
                        let first = *c.first_zero.insert(t);
                        let s = first.as_secs_f64();
                        self.stats.first_zero_s = Some(self.stats.first_zero_s.map_or(s, |f| f.min(s)));
                    }
                    samples.push(ConnSample {
                        conn: c.id,
                        peer: c.peer,
                        t: t.as_secs_f64(),
                        read_bytes: c.read_bytes(),
                        inq: c.probe.inq,
                        rcv_wnd: c.probe.rcv_wnd,
                    });
                }
                // Every open connection counts at every tick, with its latest numbers.
                let Probe { inq, rcv_wnd, .. } = c.probe;
                if rcv_wnd == Some(0) {
                    zero_conns += 1;
                    self.stats.zero_window_samples += 1;
                }
                if let Some(w) = rcv_wnd {
                    wnd_min = Some(wnd_min.map_or(w, |m| m.min(w)));
                }
                inq_sum += u64::from(inq);
                read += c.read_bytes();
            }
        }
        self.sample_cursor = budget.resume.unwrap_or(0);
        self.stats.inq = inq_sum;
        self.stats.zero_window_conns = zero_conns;
        self.stats.rcv_wnd_min = wnd_min;
        self.stats.bytes_read = read;
        let report = Report { id: cx.id, stats: self.stats, samples, fin };
        if fin {
            let _ = self.out.send_timeout(report, Duration::from_secs(1));
        } else {
            let _ = self.out.try_send(report);
        }
    }
}

/// The `read_delay` since the last read has not passed (`next_read` is ahead): make sure the
/// connection's one read timer is armed and wait for it.
fn must_wait(next_read: Instant, timer_armed: &mut bool, cx: &mut Cx, token: Token) -> bool {
    if cx.now >= next_read {
        return false;
    }
    if !*timer_armed {
        *timer_armed = cx.arm_token(next_read, token, TIMER_READ);
    }
    true
}

/// Raw TCP: read `read_size`, then wait `read_delay`.
fn read_tcp(c: &mut Conn, cx: &mut Cx, token: Token, cfg: &ServerConfig, scratch: &mut [u8]) -> Step {
    let State::Tcp(sock) = &mut c.state else { return Step::Close };
    let mut budget = READ_BUDGET;
    loop {
        if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            return Step::Idle;
        }
        if must_wait(c.next_read, &mut c.timer_armed, cx, token) {
            return Step::Idle;
        }
        if budget == 0 {
            return Step::More;
        }
        match sock.read(&mut scratch[..cfg.read_size]) {
            Ok(0) => return Step::Close,
            Ok(n) => {
                c.tcp_read += n as u64;
                budget = budget.saturating_sub(n);
                if !cfg.read_delay.is_zero() {
                    c.next_read = cx.now + cfg.read_delay;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.event.remove(Ready::READABLE | Ready::HUP);
                return Step::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
}

/// WebSocket payload stream: the same pacing, enforced under tungstenite by `Metered`.
fn read_ws(c: &mut Conn, cx: &mut Cx, token: Token, cfg: &ServerConfig, stats: &mut ServerStats) -> Step {
    let State::Ws(ws) = &mut c.state else { return Step::Close };
    if c.rd.event.contains(Ready::WRITABLE) {
        match ws.flush() {
            Flush::Done => {}
            Flush::NotNow => c.rd.event.remove(Ready::WRITABLE),
            Flush::Closed(_) => return Step::Close,
        }
    }
    if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
        return Step::Idle;
    }
    if must_wait(c.next_read, &mut c.timer_armed, cx, token) {
        return Step::Idle;
    }
    let budget = if cfg.read_delay.is_zero() { READ_BUDGET } else { cfg.read_size };
    ws.get_mut().refill(budget);
    loop {
        match ws.recv() {
            Recv::Message(_) => {}
            Recv::NotNow => break,
            Recv::Closed(why) => {
                if let Closed::ByUs { code } = why {
                    stats.ws_violations += u64::from(code != 1000);
                    log::debug!("r{} conn {}: closed with {code}", cx.id, c.id);
                }
                return Step::Close;
            }
        }
    }
    if ws.get_ref().budget_exhausted() {
        if cfg.read_delay.is_zero() {
            return Step::More;
        }
        c.next_read = cx.now + cfg.read_delay;
        // At most one outstanding entry: an earlier one that fires re-arms at `next_read`.
        if !c.timer_armed {
            c.timer_armed = cx.arm_token(c.next_read, token, TIMER_READ);
        }
    } else {
        c.rd.event.remove(Ready::READABLE | Ready::HUP);
    }
    Step::Idle
}

/// Reads the request head; turns the connection into a response, a payload stream or a
/// dashboard stream. `Step::More` means "the state changed: serve it now".
fn read_head(c: &mut Conn, cfg: &ServerConfig, limits: WsLimits, stats: &mut ServerStats) -> Step {
    let State::Head { sock, buf, filled } = &mut c.state else { return Step::Close };
    let parsed = loop {
        if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            return Step::Idle;
        }
        if *filled >= buf.len() {
            break http::parse_head(&buf[..*filled], cfg.http_head_max);
        }
        match sock.read(&mut buf[*filled..]) {
            Ok(0) => return Step::Close,
            Ok(n) => {
                *filled += n;
                match http::parse_head(&buf[..*filled], cfg.http_head_max) {
                    HeadParse::Partial => {}
                    done => break done,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.event.remove(Ready::READABLE | Ready::HUP);
                return Step::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    };
    let State::Head { sock, buf, filled } = std::mem::replace(&mut c.state, State::Gone) else {
        return Step::Close;
    };
    match parsed {
        HeadParse::Partial => {
            // A full buffer that is still partial: parse_head reports it as too large.
            stats.http_errors += 1;
            c.state = State::Respond { sock, out: http::HttpError::HeadTooLarge.response(), off: 0 };
        }
        HeadParse::Error(e) => {
            stats.http_errors += 1;
            c.state = State::Respond { sock, out: e.response(), off: 0 };
        }
        HeadParse::Complete { route, head_len } => {
            let leftover = buf[head_len..filled].to_vec();
            // Bytes sent with the head (the first frames) are in user space now: no edge will
            // announce them, so the next visit reads as if the socket had signalled.
            if !leftover.is_empty() {
                c.rd.event |= Ready::READABLE;
            }
            match route {
                Route::WsUpgrade { ref key } | Route::Samples { ref key }
                    if write_small(&sock, &crate::http::upgrade_response(key)) =>
                {
                    let dashboard = matches!(route, Route::Samples { .. });
                    if dashboard {
                        c.state = State::Dashboard {
                            ws: Box::new(WsConn::server_buffered(sock, leftover, limits, DASHBOARD_WRITE_BUFFER)),
                            queue: VecDeque::with_capacity(64),
                        };
                    } else {
                        c.state = State::Ws(Box::new(WsConn::server(Metered::new(sock), leftover, limits)));
                    }
                }
                Route::WsUpgrade { .. } | Route::Samples { .. } => return Step::Close,
                other => {
                    if matches!(other, Route::NotFound | Route::BadUpgrade) {
                        stats.http_errors += 1;
                    }
                    let out = web::respond(&other).unwrap_or_default();
                    c.state = State::Respond { sock, out, off: 0 };
                }
            }
        }
    }
    Step::More
}

/// Writes a short response on a fresh socket; false if the socket did not take all of it.
fn write_small(mut sock: &TcpStream, data: &[u8]) -> bool {
    matches!(sock.write(data), Ok(n) if n == data.len())
}

fn respond(c: &mut Conn) -> Step {
    let State::Respond { sock, out, off } = &mut c.state else { return Step::Close };
    while *off < out.len() {
        if !c.rd.event.intersects(Ready::WRITABLE | Ready::ERROR) {
            return Step::Idle;
        }
        match sock.write(&out[*off..]) {
            Ok(0) => return Step::Close,
            Ok(n) => *off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.event.remove(Ready::WRITABLE);
                return Step::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
    let _ = sock.shutdown(Shutdown::Write);
    Step::Close
}

fn dashboard(c: &mut Conn) -> Step {
    let State::Dashboard { ws, queue } = &mut c.state else { return Step::Close };
    let mut more = false;
    if c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
        // Dashboards send nothing we need; read to notice Close frames and pings. Frames past
        // the batch wait in tungstenite's buffer, where no edge will announce them: defer.
        more = true;
        for _ in 0..RECV_BATCH {
            match ws.recv() {
                Recv::Message(_) => {}
                Recv::NotNow => {
                    c.rd.event.remove(Ready::READABLE | Ready::HUP);
                    more = false;
                    break;
                }
                Recv::Closed(_) => return Step::Close,
            }
        }
    }
    match pump_dashboard(ws, queue, &mut c.rd) {
        Step::Idle if more => Step::More,
        step => step,
    }
}

fn pump_dashboard(ws: &mut WsConn<TcpStream>, queue: &mut VecDeque<Arc<str>>, rd: &mut Readiness) -> Step {
    match ws.flush() {
        Flush::Done => {}
        Flush::NotNow => {
            rd.event.remove(Ready::WRITABLE);
            return Step::Idle;
        }
        Flush::Closed(_) => return Step::Close,
    }
    while let Some(m) = queue.pop_front() {
        match ws.send(Message::Text(m.to_string())) {
            SendStatus::Sent => {}
            SendStatus::Queued => {
                rd.event.remove(Ready::WRITABLE);
                return Step::Idle;
            }
            SendStatus::Full(_) => {
                queue.push_front(m);
                break;
            }
            SendStatus::Closed(_) => return Step::Close,
        }
    }
    // The frames gathered in the write buffer: one write.
    match ws.flush() {
        Flush::Done => {}
        Flush::NotNow => rd.event.remove(Ready::WRITABLE),
        Flush::Closed(_) => return Step::Close,
    }
    Step::Idle
}

impl Handler for BpReactor {
    type Cmd = ServerCmd;
    type Entry = ();

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        cx.legacy_timers.set_capacity(self.conns.capacity() * 2 + 64);
        self.acceptor.register(cx)
    }

    fn on_handle(&mut self, cx: &mut Cx, h: crate::engine::Handle, ready: Ready) {
        self.on_token(cx, h.token(), ready);
    }

    fn on_handle_timer(&mut self, cx: &mut Cx, _h: crate::engine::Handle, kind: crate::engine::Kind) {
        if !self.stopping && self.acceptor.on_timer(kind) {
            self.accept(cx);
        }
    }

    fn on_token(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if self.stopping {
            return;
        }
        if token == self.acceptor.token() {
            self.acceptor.note_ready(ready);
            self.accept(cx);
            return;
        }
        self.serve(cx, token, ready);
    }

    fn on_token_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        if self.stopping {
            return;
        }
        match kind {
            _ if token == self.acceptor.token() => {}
            TIMER_READ => {
                if let Some(c) = self.conns.get_mut(token) {
                    c.timer_armed = false;
                    self.serve(cx, token, Ready::EMPTY);
                }
            }
            TIMER_HEAD => {
                if let Some(c) = self.conns.get_mut(token) {
                    if matches!(c.state, State::Head { .. }) {
                        self.stats.head_timeouts += 1;
                        self.close(cx, token);
                    }
                }
            }
            TIMER_LINGER if self.conns.get(token).is_some_and(|c| matches!(c.state, State::CloseReply(_))) => {
                self.close(cx, token);
            }
            _ => {}
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: ServerCmd) {
        match cmd {
            ServerCmd::Samples(batch) => {
                if self.stats.dashboards == 0 {
                    return;
                }
                let mut closing = Vec::new();
                for (token, c) in self.conns.iter_mut() {
                    let State::Dashboard { ws, queue } = &mut c.state else { continue };
                    for m in batch.iter() {
                        if queue.len() < DASHBOARD_QUEUE {
                            queue.push_back(m.clone());
                        } else {
                            self.stats.samples_dropped += 1;
                        }
                    }
                    if let Step::Close = pump_dashboard(ws, queue, &mut c.rd) {
                        closing.push(token);
                    }
                }
                for t in closing {
                    self.close_or_linger(cx, t);
                }
            }
            ServerCmd::Stop => {
                // Final numbers first, at one instant, then close everything.
                self.sample(cx, true);
                for t in self.conns.tokens() {
                    self.close(cx, t);
                }
                self.stopping = true;
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        if !self.stopping {
            self.sample(cx, false);
        }
    }

    fn on_wake(&mut self, cx: &mut Cx) {
        if !self.stopping {
            self.acceptor.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.stopping
    }

    fn on_exit(&mut self, _cx: &mut Cx) {}
}

/// Runs the lab server until SIGINT/SIGTERM. The first stdout line names the bound address.
/// `listen_key` names where `cfg.listen` came from (see [`crate::backpressure::args::bp_listen_key`]).
pub fn run(
    cfg: &ServerConfig,
    listen_key: &str,
    threads: usize,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) -> Result<(), crate::error::Error> {
    let threads = threads.max(1);
    let tuning = crate::net::listen::ListenTuning { rcvbuf: cfg.rcvbuf.map(|v| v as usize), mss: cfg.mss };
    let sharing = crate::net::listen::Sharing::from_flag(cfg.reuse_port);
    let (addr, listeners) =
        crate::net::listen::group(cfg.listen, threads, crate::net::listen::LISTEN_BACKLOG, &tuning, sharing).map_err(
            |source| {
                let share = "pass --reuse-port (or set reuse_port = true)";
                crate::error::Error::bind(listen_key, cfg.listen, source, Some(share))
            },
        )?;
    // The limit is the process's: any reactor may hold all of it.
    let gate = Admission::new(cfg.max_connections, threads, None);
    let (tx, rx) = crossbeam_channel::bounded::<Report>(threads * 8);
    let handlers: Vec<BpReactor> = listeners
        .into_iter()
        .map(|l| BpReactor {
            cfg: cfg.clone(),
            limits: cfg.ws_limits(),
            acceptor: Acceptor::new(l, "the listener", gate.clone()),
            conns: Slab::new(SLAB_TAG, gate.cap(), 0),
            next_id: 0,
            closed_read: 0,
            stats: ServerStats::default(),
            scratch: vec![0u8; cfg.read_size].into_boxed_slice(),
            out: tx.clone(),
            stopping: false,
            sample_cursor: 0,
            next_idle_sweep: Instant::now(),
        })
        .collect();
    drop(tx);
    let pool = Pool::spawn("bp-server", handlers, cfg.sample_interval).map_err(crate::error::Error::Io)?;
    gate.set_wakers(pool.wakers());
    let _ = writeln!(
        out,
        "netforge bp server: listening on {addr} ({}, read {} B every {})",
        cfg.protocol,
        cfg.read_size,
        crate::units::go_duration(cfg.read_delay)
    );
    let _ = out.flush();
    let start = Instant::now();
    let mut role = Coordinated {
        pool,
        start,
        reports: Reports::new(threads),
        interval: Interval::new(start, LINE_EVERY),
        last_read: 0,
    };
    coordinator::run(&mut role, &rx, signals, out);
    let totals = role.reports.total();
    let _ = writeln!(out, "{}", final_lines(&totals));
    let _ = out.flush();
    role.pool.join();
    Ok(())
}

/// The coordinator's side of `bp server`: interval lines, and dashboard samples relayed to
/// every reactor (a dashboard connected to one sees the connections of all).
struct Coordinated {
    pool: Pool<ServerCmd>,
    start: Instant,
    reports: Reports<ServerStats>,
    interval: Interval,
    last_read: u64,
}

impl Role for Coordinated {
    type Report = Report;

    const MAX_WAIT: Duration = Duration::from_millis(200);

    fn wake_at(&self, ctl: &Ctl) -> Option<Instant> {
        // No interval lines while stopping.
        self.interval.next().filter(|_| !ctl.stopping())
    }

    fn on_report(&mut self, r: Report, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        self.reports.set(r.id, r.stats, r.fin);
        if !r.samples.is_empty() && !r.fin {
            let batch: Vec<Arc<str>> = r
                .samples
                .iter()
                .map(|s| {
                    Arc::from(
                        DashboardSample {
                            conn: s.conn,
                            peer: s.peer,
                            t: s.t,
                            read_bytes: s.read_bytes,
                            inq: s.inq,
                            rcv_wnd: s.rcv_wnd,
                        }
                        .to_json(),
                    )
                })
                .collect();
            let batch = Arc::new(batch);
            self.pool.broadcast(|_| ServerCmd::Samples(batch.clone()));
        }
        Flow::Continue
    }

    fn on_turn(&mut self, now: Instant, ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        if self.reports.all_done() {
            return Flow::Exit;
        }
        if !ctl.stopping() && self.interval.due(now) {
            let total = self.reports.total();
            if total.active > 0 || total.bytes_read != self.last_read {
                let _ = writeln!(out, "{}", interval_line(now - self.start, &total, total.bytes_read - self.last_read));
                let _ = out.flush();
            }
            self.last_read = total.bytes_read;
        }
        Flow::Continue
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        self.pool.broadcast(|_| ServerCmd::Stop);
        ctl.stop(Some(Instant::now() + Duration::from_secs(5)));
    }

    fn on_user1(&mut self, out: &mut dyn Write) {
        let _ = writeln!(out, "{}", interval_line(self.start.elapsed(), &self.reports.total(), 0));
    }

    fn on_late(&mut self) {
        log::warn!("bp server: reactors did not report within the stop deadline");
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `t=   2.00s  conns 1  read 20480 B (+10240)  inq 131072  rcv_wnd min 0  zero-window conns 1`
fn interval_line(t: Duration, s: &ServerStats, delta: u64) -> String {
    format!(
        "t={:>7.2}s  conns {}  read {} B (+{delta})  inq {}  rcv_wnd min {}  zero-window conns {}",
        t.as_secs_f64(),
        s.active,
        s.bytes_read,
        s.inq,
        opt(s.rcv_wnd_min),
        s.zero_window_conns
    )
}

fn final_lines(s: &ServerStats) -> String {
    format!(
        "--- netforge bp server statistics ---\n\
         connections accepted {}, closed {}\n\
         bytes read {}, unread (SIOCINQ) {}\n\
         zero rcv_wnd samples {}, first zero rcv_wnd at t={} s\n\
         http errors {}, head timeouts {}, websocket violations {}, dashboard samples dropped {}, accept pauses {}",
        s.accepted,
        s.closed,
        s.bytes_read,
        s.inq,
        s.zero_window_samples,
        s.first_zero_s.map_or_else(|| "-".to_string(), |f| format!("{f:.2}")),
        s.http_errors,
        s.head_timeouts,
        s.ws_violations,
        s.samples_dropped,
        s.accept_pauses
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_budget_resumes_where_it_ran_out() {
        // Ten connections due every tick, three probes per tick: each tick starts at the first
        // one the last tick could not probe, so every connection is probed every fourth tick.
        let mut cursor = 0;
        let mut probed = [0u32; 10];
        for _ in 0..8 {
            let mut b = Budget::new(3);
            let order = (cursor..10).chain(0..cursor);
            let taken: Vec<usize> = order.filter(|&slot| b.take(slot)).collect();
            assert_eq!(taken.len(), 3);
            for s in taken {
                probed[s] += 1;
            }
            cursor = b.resume.unwrap_or(0);
        }
        // 24 probes over 10 connections: none starves, none is probed more than once ahead.
        assert!(probed.iter().all(|&n| n == 2 || n == 3), "{probed:?}");
        assert_eq!(probed.iter().sum::<u32>(), 24);
        // A budget that is not used up resumes at the start.
        let mut b = Budget::new(5);
        assert!((0..4).all(|s| b.take(s)));
        assert_eq!(b.resume, None);
    }

    #[test]
    fn an_idle_probe_is_due_only_on_the_sweep() {
        let mut p = Probe::new();
        assert!(p.due(false), "never probed");
        p = Probe { changed: false, at: Some(Instant::now()), inq: 0, rcv_wnd: Some(65535) };
        assert!(!p.due(false), "nothing happened: no probe");
        assert!(p.due(true), "the idle sweep probes it");
        p.changed = true;
        assert!(p.due(false), "an event or a read: probe");
    }

    #[test]
    fn stats_add_keeps_minimum_window_and_earliest_zero() {
        let a =
            ServerStats { active: 1, bytes_read: 10, rcv_wnd_min: Some(100), first_zero_s: None, ..Default::default() };
        let b = ServerStats {
            active: 2,
            bytes_read: 5,
            rcv_wnd_min: Some(0),
            first_zero_s: Some(0.3),
            ..Default::default()
        };
        let c = ServerStats { rcv_wnd_min: None, first_zero_s: Some(0.2), ..Default::default() };
        let mut t = ServerStats::default();
        for s in [a, b, c] {
            t.merge(&s);
        }
        assert_eq!((t.active, t.bytes_read, t.rcv_wnd_min, t.first_zero_s), (3, 15, Some(0), Some(0.2)));
        let line = interval_line(Duration::from_secs(2), &t, 5);
        assert!(
            line.contains("conns 3") && line.contains("read 15 B (+5)") && line.contains("rcv_wnd min 0"),
            "{line}"
        );
        let fin = final_lines(&t);
        assert!(
            fin.contains("bytes read 15, unread (SIOCINQ) 0") && fin.contains("first zero rcv_wnd at t=0.20 s"),
            "{fin}"
        );
    }
}

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
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::event::Source;
use mio::net::TcpStream;

use super::config::ServerConfig;
use super::ws::{CloseReply, Metered, WsConn, WsLimits};
use crate::engine::accept::{Acceptor, Slot};
use crate::engine::buf::Ring;
use crate::engine::pool::BufPool;
use crate::engine::{Entry, Kind, Readiness};

mod coordinated;
mod dashboard;
mod head;
mod payload;
mod reactor;
mod sample;
mod stats;

pub use coordinated::run;
use sample::Probe;
pub use stats::ServerStats;

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
/// WebSocket mode: free HTTP head rings a reactor keeps for reuse (its pool's high-water mark).
pub const HEAD_CACHE: usize = 16;
/// A connection's timers: the next paced read (`read_delay`), the request head deadline, the
/// end of a lingering Close reply.
const TIMER_READ: Kind = Kind::new(0);
const TIMER_HEAD: Kind = Kind::new(1);
const TIMER_LINGER: Kind = Kind::new(2);

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
    /// Reading an HTTP request head into a ring of `http_head_max` bytes borrowed from the
    /// reactor's pool (`BpReactor::heads`), given back when the head is parsed or the
    /// connection closes.
    Head { sock: TcpStream, buf: Ring },
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

pub struct Conn {
    id: u64,
    /// The client's address and port, as the dashboard names the connection.
    peer: SocketAddr,
    accepted: Instant,
    rd: Readiness,
    state: State,
    /// Raw TCP mode: bytes read (WebSocket mode counts in `Metered`).
    tcp_read: u64,
    next_read: Instant,
    first_zero: Option<Duration>,
    /// Its place under `max_connections` (the process's), freed with the connection.
    _slot: Slot,
    probe: Probe,
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

impl Entry for Conn {
    /// The socket of a new connection (raw TCP, or reading its HTTP head): the table registers
    /// it at adopt, and it keeps that registration through every later state.
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        match (&mut self.state, i) {
            (State::Tcp(s) | State::Head { sock: s, .. } | State::Respond { sock: s, .. }, 0) => Some(s),
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
    /// Connections this reactor may hold (the process's limit: any reactor may hold all).
    cap: usize,
    next_id: u64,
    /// Bytes read by payload connections already closed.
    closed_read: u64,
    stats: ServerStats,
    scratch: Box<[u8]>,
    /// WebSocket mode: the HTTP head buffers, one per connection still reading its head.
    heads: BufPool<Ring>,
    out: Sender<Report>,
    stopping: bool,
    /// Table position where the next tick's probing starts (see [`SAMPLE_BUDGET`]).
    sample_cursor: usize,
    /// When the next tick probes the idle connections too (see [`IDLE_RESAMPLE`]).
    next_idle_sweep: Instant,
}

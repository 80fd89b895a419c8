//! `netforge bp client`: pushes payloads at a paced rate and samples its own sockets.
//!
//! One reactor thread owns every connection (a paced write and a sample per connection per
//! interval are cheap; thousands fit on one loop), so the samples of all connections are taken
//! in the same loop turn and the aggregate series is exact in time. The coordinator (the calling
//! thread) folds the samples into one [`Analysis`] per connection plus one for the aggregate
//! (bytes and queues summed, the smallest peer window), prints a line per `stats_interval`, and
//! renders the verdict.
//!
//! Ending a run (duration elapsed, `total` payloads written, or SIGINT/SIGTERM): no new payload
//! is started; a payload partly in the kernel is completed (bounded by [`FLUSH_TIMEOUT`]: behind
//! a zero window the rest may not fit for minutes, and such a connection is reported as cut
//! short); then the final sample is taken (bytes written, SIOCOUTQ) and the connection is closed:
//! TCP with a FIN after the queued data, waiting at most [`DRAIN_LINGER`] for the server to
//! acknowledge it, WebSocket with a Close 1000 frame, waiting at most [`CLOSE_LINGER`] for the
//! server's reply. A connection with bytes still queued after that (a slow reader may not reach
//! them for minutes) is reset with SO_LINGER 0, counted and reported, so nothing is left
//! behind for the kernel to drain after we exit.
//!
//! Exit status: 0 for a completed run whatever the verdict (the verdict is the measurement, not
//! a failure); 1 when a connection cannot be established, the configuration is wrong, or
//! nothing could be measured (every connection ended before its first sample: reset, closed,
//! the other protocol, no handshake answer), always with the reason.
//!
//! [`Analysis`]: super::verdict::Analysis

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::event::Source;
use mio::net::TcpStream;

use super::config::ClientConfig;
use super::verdict::Sample;
use super::ws::{ClientHandshake, Metered, WsConn};
use crate::engine::{Entry, Handle, Key, Kind, Readiness, Table};
use crate::net::tcp_info;

mod close;
mod connect;
mod reactor;
mod report;
mod writer;

pub use report::{run, Outputs};

/// Bytes one connection may write per wake-up before yielding to the others.
pub const WRITE_BUDGET: usize = 1 << 20;
/// Longest wait to complete a partly written payload at the end of a run.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the server's reply to our WebSocket Close frame.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Longest wait, after our FIN at the end of a TCP run, for the server to acknowledge what is
/// still queued. A connection with bytes still queued after it (or after [`FLUSH_TIMEOUT`] or
/// [`CLOSE_LINGER`]) is aborted with a reset (SO_LINGER 0): left to the kernel, a slow server
/// would drain it for minutes after we exit, and the next run would find it still there.
pub const DRAIN_LINGER: Duration = Duration::from_secs(1);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server frames one connection may consume per wake-up before yielding to the others.
pub const RECV_BATCH: usize = 64;
/// Capacity of the reactor → coordinator channel.
const REPORT_QUEUE: usize = 1024;
/// A connection's timers: the next paced payload, the deadline of its current phase.
const TIMER_PACE: Kind = Kind::new(0);
const TIMER_PHASE: Kind = Kind::new(1);
/// The run's clock: the end of `--duration`.
const TIMER_END: Kind = Kind::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshake,
    Open,
    /// The run is over: complete the partial payload, then close.
    Flushing,
    /// WebSocket Close sent; waiting for the reply.
    Closing,
    /// TCP FIN sent after the last payload; waiting for the queue to be acknowledged.
    Draining,
    Done,
}

enum Io {
    Tcp(TcpStream),
    Ws(Box<WsConn<Metered<TcpStream>>>),
    None,
}

pub struct Conn {
    /// Its index in the run (connection `i` of the samples and the report).
    idx: usize,
    phase: Phase,
    io: Io,
    hs: Option<ClientHandshake>,
    rd: Readiness,
    /// Bytes of the current payload already written (TCP).
    off: usize,
    /// A WebSocket frame is partly in tungstenite's buffer.
    ws_pending: bool,
    payloads: u64,
    tcp_written: u64,
    eagain: u64,
    opened: Instant,
    phase_until: Option<Instant>,
    /// At least one sample of this connection was taken while it was open.
    sampled: bool,
    /// TCP mode: the first bytes the server sent were looked at (an HTTP answer means the
    /// server speaks WebSocket).
    peeked: bool,
}

impl Entry for Conn {
    /// The dialled socket: the table registers it at adopt, and it keeps that registration
    /// when the WebSocket handshake wraps it.
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        match (&mut self.io, i) {
            (Io::Tcp(s), 0) => Some(s),
            _ => None,
        }
    }
}

/// Connection `i` of the run.
fn conn<'a>(table: &'a mut Table<Conn>, keys: &[Key], i: usize) -> Option<&'a mut Conn> {
    table.get_mut(*keys.get(i)?)
}

impl Conn {
    fn written(&self) -> u64 {
        match &self.io {
            Io::Ws(ws) => ws.get_ref().written_bytes(),
            _ => self.tcp_written,
        }
    }

    fn stream(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Tcp(s) => Some(s),
            Io::Ws(ws) => Some(ws.get_ref().get_ref()),
            Io::None => None,
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.stream().map(AsFd::as_fd)
    }

    fn sample(&self, t: Duration) -> Option<Sample> {
        let fd = self.fd()?;
        let info = tcp_info::tcp_info(fd).ok()?;
        let outq = tcp_info::outq(fd).unwrap_or(0);
        Some(Sample::from_tcp_info(t, self.written(), self.eagain, outq, &info))
    }
}

enum Msg {
    Samples(Vec<(usize, Sample)>),
    FirstEagain {
        conn: usize,
        bytes: u64,
        total: u64,
    },
    Failed(String),
    Done {
        finals: Vec<(usize, Sample)>,
        cut_short: u64,
        resets: u64,
        unmeasured: u64,
        why: Option<String>,
        aborted: u64,
        aborted_bytes: u64,
    },
}

pub enum ClientCmd {
    Stop,
}

struct ClientReactor {
    cfg: ClientConfig,
    target: SocketAddr,
    payload: Vec<u8>,
    start: Instant,
    /// Connection `i`'s table entry (the entries live for the whole run).
    keys: Vec<Key>,
    /// Connections that reached `Phase::Done` (the run ends when all have).
    done: usize,
    /// The run's clock (allocated at start).
    clock: Option<Handle>,
    finals: Vec<(usize, Sample)>,
    cut_short: u64,
    resets: u64,
    any_eagain: bool,
    out: Sender<Msg>,
    failed: bool,
    /// Why the first connection that ended without a single sample ended.
    unmeasured_why: Option<String>,
    /// Connections reset at the end with bytes still queued, and how many bytes.
    aborted: u64,
    aborted_bytes: u64,
}

enum Step {
    Idle,
    More,
}

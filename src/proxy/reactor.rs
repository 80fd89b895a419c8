//! The proxy's reactor handler: listeners, sessions, and (on reactor 0) the active health checks.
//!
//! Entries. The reactor's table (see [`crate::engine::table`]) holds two kinds of
//! [`ProxyEntry`]: a session, which owns the client socket ([`CLIENT`]) and the backend socket
//! ([`SERVER`], replaced on each connect retry), and, on reactor 0, one health check per
//! backend, which owns its probe socket while a check is under way. A reload closes every check
//! entry (cancelling its timer) and adopts new ones, so a probe or timer from before a reload
//! never reaches the new configuration.
//!
//! Health design. Only reactor 0 runs active checks (one non-blocking connect per backend every
//! `interval` ± jitter). Its up/down vector rides in its per-tick stats snapshot to the
//! coordinator, which broadcasts a [`Cmd::Health`] to the other reactors when the vector changed.
//! The snapshot is whole state, not an event, so a dropped stats message delays a change by one
//! tick but never loses it. Reactor 0 applies its own results at once. Vectors carry the
//! configuration generation (below), so one from before a reload is never applied after it.
//! Each backend's first result (at start-up, or when a reload starts its checks) is logged,
//! whether UP or DOWN.
//!
//! Reloads. A backend the new configuration keeps (same group, name and address) keeps its
//! health state and check counts on every reactor. Every other one starts UP: one whose checks
//! start (checks turned on, or a new backend) serves until its first check result, which
//! decides its state. So a reload never refuses a session to a healthy backend while reactor
//! 0's first round runs and its results travel to the other reactors.
//!
//! Passive health is proxy-wide. `passive_fall` consecutive failed connects on live traffic on
//! one reactor mark the backend down there for one check interval; that reactor logs the mark
//! (once), counts it, and reports at once instead of waiting for its tick. The report carries
//! every backend's passive deadline, and the coordinator sends a [`Cmd::PassiveDown`] with any
//! deadline later than the one it knows to every other reactor, which then skips the backend
//! until the same instant. Like the health vector, the deadlines are whole state: a dropped
//! report or a full command queue delays the relay by a tick, never loses it. Flat backend
//! indices only mean something within one configuration, so reports and relays carry the
//! configuration generation (0 at start-up, one more per SIGHUP reload) and a mismatch is
//! ignored; a reload keeps the marks of the backends it keeps (each reactor remaps its own),
//! and their next reports relay them again under the new generation.
//!
//! Start-up gate. With health checks on, every backend starts DOWN, so a client accepted
//! before the first round finished would be reset with `no_backend`. The listeners are bound
//! at start-up (so the kernel queues early clients in the backlog) but registered with epoll
//! only once reactor 0 has a result for every backend: it opens its own at once and reports
//! `health_known`, and the coordinator relays the vector and a [`Cmd::Open`] to the others.
//! Each check ends within `health.timeout`, and a timer at `timeout + OPEN_GRACE` opens a
//! reactor's listeners regardless, so the wait is bounded. Health off: open in `on_start`.
//!
//! `Candidate::active` is this reactor's live sessions per backend (connecting ones included),
//! not a global count: the sessions of one reactor are spread by the kernel's SO_REUSEPORT hash,
//! so per-reactor least-loaded decisions approximate the global ones without sharing state.
//!
//! Files: this one holds the reactor's state and its reports; `dispatch` the `Handler` impl
//! (which entry or handle an event or timer is for), `backends` picking, dialing, passive health and reloads, `health` the active
//! checks and the start-up gate, `lifecycle` a session from accept to close. The byte pump
//! itself is [`super::session`].

mod backends;
mod dispatch;
mod health;
mod lifecycle;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::event::Source;
use mio::net::TcpStream;

use super::config::{AdminState, ProxyConfig};
use super::lb::{Balance, Candidate, Picker};
use super::session::{Bufs, Pipe};
use super::stats::ProxyStats;
use crate::engine::accept::{Acceptor, Admission, Slot};
use crate::engine::{Cx, Entry, Handle, Key, Kind, Stamp};
use crate::net::connect::DialOpts;

/// A session's client socket.
pub const CLIENT: usize = 0;
/// A session's backend socket.
pub const SERVER: usize = 1;

/// Session timers: the backend connect deadline, the idle/lifetime deadline, the half-close
/// deadline.
const T_CONNECT: Kind = Kind::new(0);
const T_IDLE: Kind = Kind::new(1);
const T_FIN: Kind = Kind::new(2);
/// A health check's next step (a check to start, or one under way to time out).
const T_HEALTH: Kind = Kind::new(0);
/// Timers of the reactor's clock: the drain deadline, and the start-up gate fallback
/// (listeners open at the latest [`OPEN_GRACE`] after the health timeout).
const T_DRAIN: Kind = Kind::new(0);
const T_OPEN: Kind = Kind::new(1);
pub const OPEN_GRACE: Duration = Duration::from_millis(500);
const REMOVED: usize = usize::MAX;

/// What the proxy's table holds. Sessions are nearly every entry and checks a handful, so a
/// session is stored inline (a table slot is a session's size), not boxed: no allocation per
/// session.
#[allow(clippy::large_enum_variant)]
pub enum ProxyEntry {
    Session(Session),
    Check(Probe),
}

impl Entry for ProxyEntry {
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        match (self, i) {
            (ProxyEntry::Session(s), CLIENT) => Some(&mut s.pipe.client),
            (ProxyEntry::Session(s), SERVER) => Some(&mut s.pipe.server),
            (ProxyEntry::Check(p), 0) => p.sock.as_mut().map(|s| s as &mut dyn Source),
            _ => None,
        }
    }
}

type PCx<'a> = Cx<'a, ProxyEntry>;

/// The session of entry `key`, if that is a live session.
fn session(table: &mut crate::engine::Table<ProxyEntry>, key: Key) -> Option<&mut Session> {
    match table.get_mut(key) {
        Some(ProxyEntry::Session(s)) => Some(s),
        _ => None,
    }
}

pub enum Cmd {
    /// Up/down per flat backend index of configuration `generation`, from reactor 0's checks.
    Health { generation: u64, up: Vec<bool> },
    /// Another reactor took flat backend `backend` of configuration `generation` out by passive
    /// health: skip it until `until`.
    PassiveDown { generation: u64, backend: usize, until: Instant },
    /// New backends, weights, states, health settings (listeners unchanged), and the new
    /// configuration generation.
    Reload(Arc<ProxyConfig>, u64),
    /// Stop accepting; cut what is left at the deadline.
    Drain(Instant),
    /// Cut everything now.
    Stop,
    /// The first health round has a result for every backend: start accepting.
    Open,
}

/// What a reactor reports to the coordinator every tick, at once after a passive mark, and once
/// more at exit.
pub struct Report {
    pub id: usize,
    pub stats: ProxyStats,
    /// Sessions cut by the drain deadline or a second signal.
    pub cut: u64,
    pub done: bool,
    /// Reactor 0: every backend has had a health result since start-up (or checks are off).
    pub health_known: bool,
    /// Configuration generation the flat indices of `passive_down` belong to.
    pub generation: u64,
    /// Per flat backend index: until when passive health keeps it out on this reactor (its own
    /// mark or a relayed one; a past instant or `None` means it is not out).
    pub passive_down: Vec<Option<Instant>>,
}

/// How log lines name a backend: `name addr`, or the address alone when the name is the
/// address (a backend given without `name`).
struct Label<'a>(&'a Backend);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        if b.name == b.addr.to_string() {
            write!(f, "{}", b.addr)
        } else {
            write!(f, "{} {}", b.name, b.addr)
        }
    }
}

impl Backend {
    fn label(&self) -> Label<'_> {
        Label(self)
    }
}

struct Backend {
    group: usize,
    name: String,
    addr: SocketAddr,
    weight: u32,
    backup: bool,
    state: AdminState,
    up: bool,
    active: u32,
    passive_fails: u32,
    passive_down_until: Option<Instant>,
}

struct Group {
    balance: Balance,
    /// TCP_CONGESTION of the sockets dialed to this group (`None`: the kernel's default).
    congestion: Option<crate::net::tune::Congestion>,
    first: usize,
    len: usize,
    picker: Picker,
}

struct Listener {
    /// Accept batch, cap stop/resume and EMFILE pauses (shared with the other servers). Its
    /// admission is the listener's `max_connections` inside the global one, both counted over
    /// every reactor.
    acceptor: Acceptor,
    group: usize,
    active: usize,
}

pub struct Session {
    pipe: Pipe,
    listener: usize,
    /// Flat backend index, or `REMOVED` after a reload dropped it.
    backend: usize,
    /// Connect under way: its deadline.
    connecting: Option<Stamp>,
    attempt_started: Stamp,
    attempts: u32,
    /// Group-local indices already tried (allocated on the first retry).
    tried: Vec<bool>,
    started: Stamp,
    last_client: Stamp,
    last_server: Stamp,
    /// The client's address, from accept (for the access log line at close).
    peer: SocketAddr,
    /// Bytes forwarded client -> server and server -> client (access log).
    c2s_bytes: u64,
    s2c_bytes: u64,
    /// Its place under the listener's and the global `max_connections`, freed with it.
    _slot: Slot,
}

/// A health check's table entry: the backend it checks, and its probe socket while a check
/// is under way.
pub struct Probe {
    backend: usize,
    sock: Option<TcpStream>,
}

/// A backend's health-check state (reactor 0).
struct Check {
    /// Its table entry; `None` once draining closed it.
    key: Option<Key>,
    /// A probe is under way (its socket is in the entry).
    in_flight: bool,
    started: Instant,
    next_at: Instant,
    rise: u32,
    fall: u32,
    up: bool,
    /// No check has completed yet: the first result decides the state (a success brings a
    /// DOWN backend up, a failure takes an UP one down) and is logged, whatever it is.
    fresh: bool,
}

/// What a backend's checks carry over a reload that keeps it (same group, name and address)
/// with health checks on before and after.
#[derive(Clone, Copy)]
struct CheckCarry {
    rise: u32,
    fall: u32,
    fresh: bool,
}

pub struct ProxyReactor {
    cfg: Arc<ProxyConfig>,
    listeners: Vec<Listener>,
    backends: Vec<Backend>,
    groups: Vec<Group>,
    /// Live sessions (entries of the table that are sessions).
    sessions: usize,
    checks: Vec<Check>,
    /// The reactor's clock: drain deadline and start-up gate (allocated at start).
    clock: Option<Handle>,
    /// Configuration generation (see the module doc): 0 at start-up, set by each reload.
    generation: u64,
    rng: fastrand::Rng,
    scratch: Vec<Candidate>,
    stats: ProxyStats,
    report: Sender<Report>,
    draining: bool,
    stopping: bool,
    cut: u64,
    dial: DialOpts,
    /// Scratch buffer and the ring/pipe pools every session of this reactor borrows from.
    bufs: Bufs,
    /// Set by `dial_next` when socket() failed for lack of descriptors.
    exhausted: Option<io::Error>,
    /// Listeners not yet registered: waiting for the first health round (start-up gate).
    gated: bool,
}

impl ProxyReactor {
    /// `listeners[i]` is this reactor's SO_REUSEPORT socket for `cfg.listeners[i]`, and
    /// `gates[i]` that listener's connection limit, shared by every reactor (see
    /// [`Admission`]; its parent is the global `max_connections`).
    pub fn new(
        cfg: Arc<ProxyConfig>,
        id: usize,
        gates: Vec<Arc<Admission>>,
        listeners: Vec<std::net::TcpListener>,
        report: Sender<Report>,
    ) -> Self {
        let (backends, groups) = backends::build_backends(&cfg);
        let ls = listeners
            .into_iter()
            .zip(gates)
            .zip(&cfg.listeners)
            .map(|((l, gate), lc)| Listener {
                acceptor: Acceptor::new(l, format!("listener {}", lc.name), gate),
                group: lc.group,
                active: 0,
            })
            .collect::<Vec<_>>();
        // The limit is the process's: this reactor may hold all of it.
        let share = cfg.max_connections.max(1);
        let stats = ProxyStats::new(ls.len(), backends.len());
        ProxyReactor {
            listeners: ls,
            sessions: 0,
            checks: Vec::new(),
            clock: None,
            generation: 0,
            rng: fastrand::Rng::with_seed(0x5eed ^ id as u64 ^ std::process::id() as u64),
            scratch: Vec::new(),
            stats,
            report,
            draining: false,
            stopping: false,
            cut: 0,
            dial: DialOpts { nodelay: true, ..Default::default() },
            bufs: Bufs::new(cfg.buffer_bytes, cfg.pipe_bytes, share, cfg.splice),
            exhausted: None,
            gated: true,
            backends,
            groups,
            cfg,
        }
    }

    fn snapshot(&mut self) -> ProxyStats {
        for (i, l) in self.listeners.iter().enumerate() {
            self.stats.listener_active[i] = l.active as u64;
        }
        self.stats.backend_active.resize(self.backends.len(), 0);
        for (i, b) in self.backends.iter().enumerate() {
            self.stats.backend_active[i] = u64::from(b.active);
        }
        self.stats.active = self.sessions as u64;
        self.stats.health = self.checks.iter().map(|c| c.up).collect();
        self.stats.rings = self.bufs.rings.stats();
        self.stats.pipes = self.bufs.pipes.stats();
        self.stats.splice_fallbacks = self.bufs.splice_fallbacks;
        self.stats.switches_to_splice = self.bufs.switches_to_splice;
        self.stats.switches_to_copy = self.bufs.switches_to_copy;
        self.stats.accept_pauses = self.listeners.iter().map(|l| l.acceptor.pauses).sum();
        self.stats.clone()
    }

    /// Entries the table may hold: every session the global limit allows, and one health
    /// check per backend.
    fn table_capacity(&self) -> usize {
        self.cfg.max_connections.max(1) + self.backends.len()
    }

    fn make_report(&mut self, id: usize, done: bool, health_known: bool) -> Report {
        let stats = self.snapshot();
        Report {
            id,
            stats,
            cut: self.cut,
            done,
            health_known,
            generation: self.generation,
            passive_down: self.backends.iter().map(|b| b.passive_down_until).collect(),
        }
    }
}

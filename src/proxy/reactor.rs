//! The proxy's reactor handler: listeners, sessions, and (on reactor 0) the active health checks.
//!
//! Tokens. Sessions live in one generation-tagged [`Slab`] with tag [`SESSION_TAG`]; the slab
//! token names the client socket, and the backend socket of the same session uses the same token
//! with [`SERVER_BIT`] set, which turns tag 2 into tag 3. One slab entry, two tokens, no lookup
//! table: `token & !SERVER_BIT` is always the slab key. Health-check sockets use tag 4 with the
//! flat backend index as slot and the config epoch as generation, so checks from before a reload
//! are ignored like any stale token.
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
//! Files: this one holds the reactor's state and its reports; `dispatch` the `Handler` impl and
//! token routing, `backends` picking, dialing, passive health and reloads, `health` the active
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
use mio::net::TcpStream;

use super::config::{AdminState, ProxyConfig};
use super::lb::{Balance, Candidate, Picker};
use super::session::{Bufs, Pipe};
use super::stats::ProxyStats;
use crate::engine::accept::{Acceptor, Admission, Slot};
use crate::engine::Slab;
use crate::net::connect::DialOpts;

pub const SESSION_TAG: u8 = 2;
/// Set on a session token to name its backend socket (the low bit of the slab tag).
pub const SERVER_BIT: usize = 1 << 56;
const HEALTH_TAG: usize = 4;

const T_CONNECT: u8 = 1;
const T_IDLE: u8 = 2;
const T_FIN: u8 = 3;
const T_HEALTH: u8 = 4;
const T_DRAIN: u8 = 6;
/// Start-up gate fallback: listeners open at the latest this long after the health timeout.
const T_OPEN: u8 = 7;
pub const OPEN_GRACE: Duration = Duration::from_millis(500);
/// Timer entries a session may have outstanding (connect, idle, fin).
const TIMERS_PER_SESSION: usize = 3;
const REMOVED: usize = usize::MAX;

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

struct Session {
    pipe: Pipe,
    listener: usize,
    /// Flat backend index, or `REMOVED` after a reload dropped it.
    backend: usize,
    /// Connect under way: its deadline.
    connecting: Option<Instant>,
    attempt_started: Instant,
    attempts: u32,
    /// Group-local indices already tried (allocated on the first retry).
    tried: Vec<bool>,
    connect_timer: bool,
    fin_timer: bool,
    started: Instant,
    last_client: Instant,
    last_server: Instant,
    /// The client's address, from accept (for the access log line at close).
    peer: SocketAddr,
    /// Bytes forwarded client -> server and server -> client (access log).
    c2s_bytes: u64,
    s2c_bytes: u64,
    /// Its place under the listener's and the global `max_connections`, freed with it.
    _slot: Slot,
}

struct Check {
    sock: Option<TcpStream>,
    started: Instant,
    next_at: Instant,
    rise: u32,
    fall: u32,
    up: bool,
    /// No check has completed yet: the first result decides the state (a success brings a
    /// DOWN backend up, a failure takes an UP one down) and is logged, whatever it is.
    fresh: bool,
    timer_armed: bool,
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
    sessions: Slab<Session>,
    checks: Vec<Check>,
    epoch: u32,
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
            sessions: Slab::new(SESSION_TAG, share, 0),
            checks: Vec::new(),
            epoch: 0,
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
        self.stats.active = self.sessions.len() as u64;
        self.stats.health = self.checks.iter().map(|c| c.up).collect();
        self.stats.rings_in_use = self.bufs.rings.in_use() as u64;
        self.stats.pipes_in_use = self.bufs.pipes.in_use() as u64;
        self.stats.splice_fallbacks = self.bufs.splice_fallbacks;
        self.stats.switches_to_splice = self.bufs.switches_to_splice;
        self.stats.switches_to_copy = self.bufs.switches_to_copy;
        self.stats.accept_pauses = self.listeners.iter().map(|l| l.acceptor.pauses).sum();
        self.stats.clone()
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

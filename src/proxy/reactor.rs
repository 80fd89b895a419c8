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

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::config::{AdminState, ProxyConfig, SpliceMode};
use super::lb::{Balance, Candidate, Picker};
use super::session::{reset_on_close, Bufs, CloseReason, Moved, Pipe, Pump};
use super::stats::ProxyStats;
use crate::net::accept::{Acceptor, Admission, Slot, TIMER_RESUME_ACCEPT};
use crate::net::connect::{self, DialOpts, DialState};
use crate::net::Cause;
use crate::reactor::{listener_index, listener_token, role_token, slab, Cx, Handler, Readiness, Ready, Slab};

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

fn build_backends(cfg: &ProxyConfig) -> (Vec<Backend>, Vec<Group>) {
    let mut backends = Vec::new();
    let mut groups = Vec::new();
    for (gi, g) in cfg.groups.iter().enumerate() {
        groups.push(Group {
            balance: g.balance,
            congestion: g.congestion,
            first: backends.len(),
            len: g.backends.len(),
            picker: Picker::new(g.backends.len()),
        });
        for b in &g.backends {
            backends.push(Backend {
                group: gi,
                name: b.name.clone(),
                addr: b.address,
                weight: b.weight,
                backup: b.backup,
                state: b.state,
                up: !cfg.health.enabled,
                active: 0,
                passive_fails: 0,
                passive_down_until: None,
            });
        }
    }
    (backends, groups)
}

fn health_token(idx: usize, epoch: u32) -> Token {
    Token(idx | ((epoch as usize & 0xFF_FFFF) << 32) | (HEALTH_TAG << 56))
}

fn jittered(interval: Duration, pct: u32, rng: &mut fastrand::Rng) -> Duration {
    if pct == 0 {
        return interval;
    }
    let f = 1.0 + (rng.f64() * 2.0 - 1.0) * f64::from(pct) / 100.0;
    interval.mul_f64(f)
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
        let (backends, groups) = build_backends(&cfg);
        let ls = listeners
            .into_iter()
            .zip(gates)
            .zip(&cfg.listeners)
            .enumerate()
            .map(|(i, ((l, gate), lc))| Listener {
                acceptor: Acceptor::new(l, listener_token(i), format!("listener {}", lc.name), gate),
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

    // ----------------------------------------------------------------------------------------
    // Accepting

    fn accept(&mut self, cx: &mut Cx, i: usize) {
        if self.draining || self.gated {
            return;
        }
        let mut taken = 0;
        while let Some((sock, peer, slot)) = self.listeners[i].acceptor.next(cx, &mut taken) {
            self.start(cx, i, sock, peer, slot);
        }
    }

    /// Out of descriptors on `what` while starting a session of listener `i`: pause it.
    fn pause(&mut self, cx: &mut Cx, i: usize, what: &str, e: &io::Error) {
        if let Some(l) = self.listeners.get_mut(i) {
            l.acceptor.pause(cx, what, e);
        }
    }

    /// Picks a usable backend of `group` (group-local index), skipping `tried`.
    fn pick(&mut self, now: Instant, group: usize, tried: &[bool]) -> Option<usize> {
        let g = &mut self.groups[group];
        self.scratch.clear();
        for b in &self.backends[g.first..g.first + g.len] {
            let passive_ok = b.passive_down_until.is_none_or(|t| now >= t);
            self.scratch.push(Candidate {
                usable: b.up && b.state == AdminState::Ready && passive_ok,
                weight: b.weight,
                backup: b.backup,
                active: b.active,
            });
        }
        g.picker.pick(g.balance, &self.scratch, tried, &mut self.rng)
    }

    /// Records a failed connect to backend `b` (passive health). The `passive_fall`th in a row
    /// marks it down for one interval, unless a mark (this reactor's or a relayed one) is still
    /// running: failures of connects already under way do not mark it twice.
    fn connect_failed(&mut self, id: usize, now: Instant, b: usize, cause: Cause) {
        let Some(be) = self.backends.get_mut(b) else { return };
        self.stats.backend_connect_failures[b] += 1;
        be.passive_fails += 1;
        let fall = self.cfg.health.passive_fall;
        if fall == 0 || be.passive_fails < fall || be.passive_down_until.is_some_and(|t| now < t) {
            return;
        }
        let interval = self.cfg.health.interval;
        be.passive_down_until = Some(now + interval);
        log::warn!(
            "r{id} backend {} {} is DOWN proxy-wide for {interval:?} ({} failed connects: {})",
            be.name,
            be.addr,
            be.passive_fails,
            cause.name()
        );
        be.passive_fails = 0;
        self.stats.backend_passive_down[b] += 1;
        // Report now, not at the next tick, so the coordinator relays the mark before the other
        // reactors dial the backend again. A full channel loses nothing: the next tick's report
        // carries the same deadline.
        let health_known = self.health_known();
        let r = self.make_report(id, false, health_known);
        let _ = self.report.try_send(r);
    }

    /// A passive mark of another reactor, relayed by the coordinator. Indices of another
    /// configuration generation are ignored; a deadline earlier than the one held changes nothing.
    fn passive_down(&mut self, id: usize, generation: u64, b: usize, until: Instant) {
        if generation != self.generation {
            return;
        }
        let Some(be) = self.backends.get_mut(b) else { return };
        if be.passive_down_until.is_some_and(|t| t >= until) {
            return;
        }
        be.passive_down_until = Some(until);
        be.passive_fails = 0;
        log::debug!("r{id} backend {} {} is DOWN (passive mark of another reactor)", be.name, be.addr);
    }

    /// Picks and dials until a dial is under way; `None` when every attempt failed at once.
    fn dial_next(
        &mut self,
        cx: &mut Cx,
        group: usize,
        tried: &mut Vec<bool>,
        attempts: &mut u32,
        delay_ack: bool,
    ) -> Option<(usize, TcpStream)> {
        let opts = DialOpts { delay_ack, congestion: self.groups[group].congestion, ..self.dial };
        loop {
            if *attempts > self.cfg.retries {
                return None;
            }
            let local = self.pick(cx.now, group, tried)?;
            let b = self.groups[group].first + local;
            *attempts += 1;
            match connect::dial(self.backends[b].addr, None, &opts) {
                Ok(s) => return Some((b, s)),
                Err(e) if crate::net::is_exhaustion(&e) => {
                    // Our own descriptors ran out, not the backend's fault: no passive-health
                    // mark, no retry elsewhere (the next socket() would fail the same way).
                    self.exhausted = Some(e);
                    return None;
                }
                Err(e) => {
                    log::debug!("r{} dial {}: {e}", cx.id, self.backends[b].addr);
                    self.connect_failed(cx.id, cx.now, b, Cause::from_io(&e));
                    if tried.len() < self.groups[group].len {
                        tried.resize(self.groups[group].len, false);
                    }
                    tried[local] = true;
                }
            }
        }
    }

    /// Drops the timer entries of closed sessions before the heap fills (see `purge_closed`).
    fn purge_timers(&mut self, cx: &mut Cx) {
        let purged = crate::reactor::purge_closed(cx.timers, &self.sessions);
        if purged > 0 {
            log::debug!("r{} timers: purged {purged} entries of closed sessions", cx.id);
        }
    }

    fn start(&mut self, cx: &mut Cx, li: usize, client: TcpStream, peer: SocketAddr, slot: Slot) {
        self.stats.listener_accepted[li] += 1;
        self.purge_timers(cx);
        // TCP_NODELAY is inherited from the listener (set in `proxy::run`): no syscall here.
        // Smart connect: take what the client already sent, so the backend dial can carry it.
        let mut first = 0;
        // Not with splice = "on": there every byte goes through a pipe, these included.
        if self.cfg.smart_connect && self.bufs.splice != SpliceMode::On {
            match (&client).read(&mut self.bufs.scratch) {
                Ok(n) => first = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Reset before its first byte: nothing to forward, no backend to bother.
                    self.stats.closes[CloseReason::ClientReset.index()] += 1;
                    log::debug!("r{} session {peer} -> - closed: client_reset ({e}) after 0.000s", cx.id);
                    return;
                }
            }
        }
        let group = self.listeners[li].group;
        let mut tried = Vec::new();
        let mut attempts = 0;
        let Some((b, server)) = self.dial_next(cx, group, &mut tried, &mut attempts, first > 0) else {
            let reason = if attempts == 0 { CloseReason::NoBackend } else { CloseReason::ConnectFailed };
            self.stats.closes[reason.index()] += 1;
            // The client learns of the failure by a reset, as from `close`, even when its first
            // bytes were already read (a FIN would look like an empty reply).
            reset_on_close(&client);
            if let Some(e) = self.exhausted.take() {
                // The client took the last descriptor: stop accepting for a while, as for an
                // EMFILE on accept.
                self.pause(cx, li, "backend socket", &e);
            }
            log::debug!("r{} session {peer} -> - closed: {} after 0.000s, c->s 0 B, s->c 0 B", cx.id, reason.name());
            return;
        };
        let all = Readiness::default();
        let now = cx.now;
        let s = Session {
            pipe: Pipe::new(client, all, server, all),
            listener: li,
            backend: b,
            connecting: Some(now + self.cfg.timeouts.connect),
            attempt_started: now,
            attempts,
            tried,
            connect_timer: false,
            fin_timer: false,
            started: now,
            last_client: now,
            last_server: now,
            peer,
            c2s_bytes: 0,
            s2c_bytes: 0,
            _slot: slot,
        };
        let tok = match self.sessions.insert(s) {
            Ok(tok) => tok,
            Err(s) => {
                reset_on_close(&s.pipe.client);
                return;
            }
        };
        let Some(s) = self.sessions.get_mut(tok) else { return };
        if first == self.bufs.buffer_bytes {
            // The first read filled the buffer: a bulk upload.
            s.pipe.c2s.full(&mut self.bufs);
        }
        let reg =
            cx.registry.register(&mut s.pipe.client, tok, Interest::READABLE | Interest::WRITABLE).and_then(|_| {
                cx.registry.register(
                    &mut s.pipe.server,
                    Token(tok.0 | SERVER_BIT),
                    Interest::READABLE | Interest::WRITABLE,
                )
            });
        if let Err(e) = reg {
            log::debug!("r{} register: {e}", cx.id);
            if let Some(mut s) = self.sessions.remove(tok) {
                self.deregister(cx, &mut s);
                s.pipe.release(&mut self.bufs);
                reset_on_close(&s.pipe.client);
            }
            return;
        }
        self.listeners[li].active += 1;
        self.backends[b].active += 1;
        let idle = self.idle_deadline(now, now, now).0;
        cx.arm(idle, tok, T_IDLE);
        if first > 0 {
            self.send_first(cx, tok, first);
        }
        if let Some(s) = self.sessions.get_mut(tok) {
            if let (Some(at), false) = (s.connecting, s.connect_timer) {
                s.connect_timer = true;
                cx.arm(at, tok, T_CONNECT);
            }
        }
    }

    /// Smart connect, second half: writes the client's first `n` bytes (in the scratch buffer)
    /// to the backend right after the dial. On loopback and other fast paths the handshake has
    /// completed inside connect(2), so the write goes out at once and carries the delayed ACK;
    /// otherwise the kernel says EAGAIN and the bytes wait in the ring for the connect edge.
    /// A write error is the connect's failure: the bytes wait in the ring for the retry.
    fn send_first(&mut self, cx: &mut Cx, tok: Token, n: usize) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let data = &self.bufs.scratch[..n];
        let (sent, failed) = match (&s.pipe.server).write(data) {
            Ok(w) => (w, None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => (0, None),
            Err(e) => (0, Some(e)),
        };
        if sent < n {
            let Some(ring) = self.bufs.park_scratch(sent..n) else {
                // Never drop client bytes silently.
                self.close(cx, tok, CloseReason::ClientReset);
                return;
            };
            s.pipe.c2s.ring = Some(ring);
        }
        if let Some(e) = failed {
            self.retry(cx, tok, Cause::from_io(&e));
            return;
        }
        s.c2s_bytes += sent as u64;
        self.stats.bytes_client_to_server += sent as u64;
        if sent > 0 {
            // Only a connected socket takes bytes. The loop's clock is the dial's start, so
            // read the real one for the connect time.
            self.stats.smart_connects += 1;
            self.connected(tok, Instant::now());
        }
    }

    /// Bookkeeping of a completed backend connect.
    fn connected(&mut self, tok: Token, now: Instant) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let Some(_) = s.connecting.take() else { return };
        let us = now.saturating_duration_since(s.attempt_started).as_micros() as u64;
        let b = s.backend;
        self.stats.record_connect_us(us);
        if let Some(be) = self.backends.get_mut(b) {
            be.passive_fails = 0;
            self.stats.backend_sessions[b] += 1;
        }
    }

    fn deregister(&self, cx: &mut Cx, s: &mut Session) {
        let _ = cx.registry.deregister(&mut s.pipe.client);
        let _ = cx.registry.deregister(&mut s.pipe.server);
    }

    fn idle_deadline(&self, started: Instant, last_client: Instant, last_server: Instant) -> (Instant, CloseReason) {
        let t = &self.cfg.timeouts;
        let mut d = (last_client + t.client_idle, CloseReason::ClientIdle);
        let s = last_server + t.server_idle;
        if s < d.0 {
            d = (s, CloseReason::ServerIdle);
        }
        if let Some(life) = t.max_lifetime {
            if started + life < d.0 {
                d = (started + life, CloseReason::Lifetime);
            }
        }
        d
    }

    fn close(&mut self, cx: &mut Cx, tok: Token, reason: CloseReason) {
        let Some(mut s) = self.sessions.remove(tok) else { return };
        // No EPOLL_CTL_DEL: dropping the sockets below closes the only descriptors, and the
        // kernel removes a closed file from every epoll set. Events already taken for this
        // token in this batch carry a generation the slab no longer issues, so they are ignored.
        // That saves two syscalls per session.
        s.pipe.release(&mut self.bufs);
        if reason.resets() {
            // Whichever side is still alive learns of the failure by a reset, not a clean FIN.
            reset_on_close(&s.pipe.client);
            reset_on_close(&s.pipe.server);
        }
        self.stats.closes[reason.index()] += 1;
        if let Some(l) = self.listeners.get_mut(s.listener) {
            l.active = l.active.saturating_sub(1);
        }
        if let Some(b) = self.backends.get_mut(s.backend) {
            b.active = b.active.saturating_sub(1);
        }
        if log::log_enabled!(log::Level::Debug) {
            // The access log: one line per session, whatever ended it.
            let (name, addr) = match self.backends.get(s.backend) {
                Some(b) => (b.name.as_str(), b.addr.to_string()),
                None => ("-", "-".to_string()),
            };
            log::debug!(
                "r{} session {} -> {name} {addr} closed: {} after {:.3}s, c->s {} B, s->c {} B",
                cx.id,
                s.peer,
                reason.name(),
                cx.now.saturating_duration_since(s.started).as_secs_f64(),
                s.c2s_bytes,
                s.s2c_bytes
            );
        }
    }

    // ----------------------------------------------------------------------------------------
    // Sessions

    fn session_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        let server_side = token.0 & SERVER_BIT != 0;
        let tok = Token(token.0 & !SERVER_BIT);
        let Some(s) = self.sessions.get_mut(tok) else { return };
        if server_side {
            s.pipe.srd.event |= ready;
        } else {
            s.pipe.crd.event |= ready;
        }
        if s.connecting.is_some() {
            if !server_side || ready.is_empty() {
                // Client bytes wait in the kernel until the backend answers.
                return;
            }
            match dial_outcome(&s.pipe.server, ready) {
                Dialed::Pending => return,
                Dialed::Connected => self.connected(tok, cx.now),
                Dialed::Aborted => {
                    // Established, so a session of that backend; its reset ends it like one
                    // seen a moment later on the first read would.
                    self.connected(tok, cx.now);
                    self.close(cx, tok, CloseReason::ServerReset);
                    return;
                }
                Dialed::Failed(cause) => {
                    self.retry(cx, tok, cause);
                    return;
                }
            }
        }
        self.drive(cx, tok);
    }

    /// The current connect failed: try another backend or give up.
    fn retry(&mut self, cx: &mut Cx, tok: Token, cause: Cause) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let b = s.backend;
        let mut tried = std::mem::take(&mut s.tried);
        let mut attempts = s.attempts;
        let _ = cx.registry.deregister(&mut s.pipe.server);
        if let Some(be) = self.backends.get_mut(b) {
            be.active = be.active.saturating_sub(1);
            let g = be.group;
            let local = b - self.groups[g].first;
            if tried.len() < self.groups[g].len {
                tried.resize(self.groups[g].len, false);
            }
            tried[local] = true;
        }
        self.connect_failed(cx.id, cx.now, b, cause);
        let Some(li) = self.sessions.get(tok).map(|s| s.listener) else { return };
        let group = self.listeners[li].group;
        let next = self.dial_next(cx, group, &mut tried, &mut attempts, false);
        let Some(s) = self.sessions.get_mut(tok) else { return };
        s.attempts = attempts;
        s.tried = tried;
        match next {
            None => {
                // Nothing left to try: the session never had a backend.
                s.backend = REMOVED;
                if let Some(e) = self.exhausted.take() {
                    let li = s.listener;
                    self.pause(cx, li, "backend socket", &e);
                }
                let reason =
                    if cause == Cause::Timeout { CloseReason::ConnectTimeout } else { CloseReason::ConnectFailed };
                self.close(cx, tok, reason);
            }
            Some((nb, mut server)) => {
                if let Err(e) = cx.registry.register(
                    &mut server,
                    Token(tok.0 | SERVER_BIT),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    log::debug!("r{} register: {e}", cx.id);
                    s.backend = REMOVED;
                    self.close(cx, tok, CloseReason::ConnectFailed);
                    return;
                }
                s.pipe.server = server;
                s.pipe.srd = Readiness::default();
                s.backend = nb;
                s.attempt_started = cx.now;
                let deadline = cx.now + self.cfg.timeouts.connect;
                s.connecting = Some(deadline);
                if !s.connect_timer {
                    s.connect_timer = true;
                    cx.arm(deadline, tok, T_CONNECT);
                }
                self.backends[nb].active += 1;
            }
        }
    }

    fn drive(&mut self, cx: &mut Cx, tok: Token) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let mut moved = Moved::default();
        let r = s.pipe.pump(cx.now, &mut moved, &mut self.bufs);
        if moved.client_active {
            s.last_client = cx.now;
        }
        if moved.server_active {
            s.last_server = cx.now;
        }
        s.c2s_bytes += moved.client_to_server;
        s.s2c_bytes += moved.server_to_client;
        self.stats.bytes_client_to_server += moved.client_to_server;
        self.stats.bytes_server_to_client += moved.server_to_client;
        self.stats.splice_bytes += moved.spliced;
        if !s.fin_timer && (s.pipe.c2s.eof || s.pipe.s2c.eof) && r != Pump::Done {
            if let Some(at) = fin_deadline(s, &self.cfg) {
                s.fin_timer = true;
                cx.arm(at, tok, T_FIN);
            }
        }
        match r {
            Pump::Idle => {}
            Pump::More => cx.defer(tok),
            Pump::Done => self.close(cx, tok, CloseReason::Done),
            Pump::Close(reason) => self.close(cx, tok, reason),
        }
    }

    fn session_timer(&mut self, cx: &mut Cx, tok: Token, kind: u8) {
        let cfg = self.cfg.clone();
        let Some(s) = self.sessions.get_mut(tok) else { return };
        match kind {
            T_CONNECT => {
                s.connect_timer = false;
                match s.connecting {
                    Some(at) if cx.now >= at => self.retry(cx, tok, Cause::Timeout),
                    Some(at) => {
                        s.connect_timer = true;
                        cx.arm(at, tok, T_CONNECT);
                    }
                    None => {}
                }
            }
            T_IDLE => {
                let (started, lc, ls) = (s.started, s.last_client, s.last_server);
                let (at, reason) = self.idle_deadline(started, lc, ls);
                if cx.now >= at {
                    self.close(cx, tok, reason);
                } else {
                    // Activity moved the deadline: one entry per session, re-armed lazily.
                    cx.arm(at, tok, T_IDLE);
                }
            }
            T_FIN => {
                s.fin_timer = false;
                if let Some(at) = fin_deadline(s, &cfg) {
                    if cx.now >= at {
                        self.close(cx, tok, CloseReason::FinTimeout);
                    } else {
                        s.fin_timer = true;
                        cx.arm(at, tok, T_FIN);
                    }
                }
            }
            _ => {}
        }
    }

    fn cut_all(&mut self, cx: &mut Cx) {
        for t in self.sessions.tokens() {
            self.cut += 1;
            self.close(cx, t, CloseReason::Shutdown);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Health checks (reactor 0)

    /// (Re)starts the checks of every backend. `carry[i]` continues backend `i`'s counts (a
    /// reload that kept it); without one it starts fresh from its current `up`.
    fn start_checks(&mut self, cx: &mut Cx, carry: &[Option<CheckCarry>]) {
        for c in self.checks.iter_mut() {
            if let Some(mut s) = c.sock.take() {
                let _ = cx.registry.deregister(&mut s);
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        if cx.id != 0 || !self.cfg.health.enabled {
            self.checks.clear();
            return;
        }
        // Up/down state carries over through `Backend::up`, counts through `carry`.
        let mut checks = Vec::with_capacity(self.backends.len());
        for (i, b) in self.backends.iter().enumerate() {
            let c = carry.get(i).copied().flatten().unwrap_or(CheckCarry { rise: 0, fall: 0, fresh: true });
            checks.push(Check {
                sock: None,
                started: cx.now,
                next_at: cx.now,
                rise: c.rise,
                fall: c.fall,
                up: b.up,
                fresh: c.fresh,
                timer_armed: false,
            });
        }
        self.checks = checks;
        for i in 0..self.checks.len() {
            self.check_step(cx, i);
        }
    }

    fn check_step(&mut self, cx: &mut Cx, i: usize) {
        if self.draining || self.stopping {
            return;
        }
        let timeout = self.cfg.health.timeout;
        let now = cx.now;
        let in_flight = self.checks[i].sock.is_some();
        if in_flight && now >= self.checks[i].started + timeout {
            self.check_done(cx, i, Err(Cause::Timeout));
        } else if !in_flight && now >= self.checks[i].next_at && self.backends[i].state != AdminState::Maint {
            match connect::dial(self.backends[i].addr, None, &DialOpts { linger_rst: true, ..Default::default() }) {
                Ok(mut s) => {
                    match cx.registry.register(
                        &mut s,
                        health_token(i, self.epoch),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        Ok(()) => {
                            self.checks[i].sock = Some(s);
                            self.checks[i].started = now;
                        }
                        Err(e) => self.check_done(cx, i, Err(Cause::from_io(&e))),
                    }
                }
                Err(e) => self.check_done(cx, i, Err(Cause::from_io(&e))),
            }
        }
        let c = &mut self.checks[i];
        if self.backends[i].state == AdminState::Maint && c.sock.is_none() {
            // Maintenance: no checks until a reload changes the state.
            return;
        }
        let at = if c.sock.is_some() { c.started + timeout } else { c.next_at };
        if !c.timer_armed {
            c.timer_armed = true;
            cx.arm(at, health_token(i, self.epoch), T_HEALTH);
        }
    }

    fn check_done(&mut self, cx: &mut Cx, i: usize, result: Result<(), Cause>) {
        let h = self.cfg.health.clone();
        let c = &mut self.checks[i];
        if let Some(mut s) = c.sock.take() {
            let _ = cx.registry.deregister(&mut s);
        }
        c.next_at = cx.now + jittered(h.interval, h.jitter_pct, &mut self.rng);
        let b = &mut self.backends[i];
        let was = c.up;
        match result {
            Ok(()) => {
                c.fall = 0;
                c.rise += 1;
                c.up |= c.rise >= h.rise || c.fresh;
            }
            Err(_) => {
                c.rise = 0;
                c.fall += 1;
                c.up &= c.fall < h.fall && !c.fresh;
            }
        }
        match (c.fresh, c.up, result) {
            // The first result of every backend is logged, DOWN ones louder: a backend whose
            // address is wrong is DOWN from the start and would otherwise never be mentioned.
            (true, true, _) => log::info!("backend {} {} is UP after its first health check", b.name, b.addr),
            (true, false, Err(cause)) => {
                log::warn!("backend {} {} is DOWN after its first health check ({})", b.name, b.addr, cause.name())
            }
            (false, true, _) if !was => {
                log::warn!("backend {} {} is UP ({} successful checks)", b.name, b.addr, c.rise)
            }
            (false, false, Err(cause)) if was => {
                log::warn!("backend {} {} is DOWN ({} failed checks: {})", b.name, b.addr, c.fall, cause.name())
            }
            _ => {}
        }
        c.fresh = false;
        b.up = c.up;
        if self.gated {
            self.maybe_open(cx);
        }
    }

    /// Whether every backend has had a health result since start-up (`maint` ones need none).
    fn health_known(&self) -> bool {
        !self.cfg.health.enabled
            || (self.checks.len() == self.backends.len()
                && self.checks.iter().zip(&self.backends).all(|(c, b)| !c.fresh || b.state == AdminState::Maint))
    }

    /// Reactor 0, start-up gate: once the first round is complete, open this reactor's
    /// listeners and report at once (not at the next tick) so the coordinator opens the others.
    fn maybe_open(&mut self, cx: &mut Cx) {
        if cx.id != 0 || !self.gated || !self.health_known() {
            return;
        }
        if let Err(e) = self.open(cx) {
            log::error!("r{} register listeners: {e}", cx.id);
        }
        let r = self.make_report(cx.id, false, true);
        let _ = self.report.try_send(r);
    }

    /// Registers the listeners (once): clients queued in the backlog meanwhile are accepted now.
    fn open(&mut self, cx: &mut Cx) -> io::Result<()> {
        if !self.gated || self.draining {
            return Ok(());
        }
        self.gated = false;
        for l in self.listeners.iter_mut() {
            l.acceptor.register(cx.registry)?;
            // Connections may already wait in the backlog: look once, without waiting for an edge.
            l.acceptor.wake(cx);
        }
        Ok(())
    }

    fn health_ready(&mut self, cx: &mut Cx, token: Token) {
        let i = token.0 & 0xFFFF_FFFF;
        if (token.0 >> 32) & 0xFF_FFFF != self.epoch as usize & 0xFF_FFFF {
            return;
        }
        let Some(c) = self.checks.get(i) else { return };
        let Some(s) = c.sock.as_ref() else { return };
        // A check is a TCP handshake: one the backend completed and then reset passed it, as
        // it would have had this reactor looked before the reset.
        match dial_outcome(s, Ready::ALL) {
            Dialed::Pending => {}
            Dialed::Connected | Dialed::Aborted => self.check_done(cx, i, Ok(())),
            Dialed::Failed(cause) => self.check_done(cx, i, Err(cause)),
        }
    }

    fn health_timer(&mut self, cx: &mut Cx, token: Token) {
        let i = token.0 & 0xFFFF_FFFF;
        if (token.0 >> 32) & 0xFF_FFFF != self.epoch as usize & 0xFF_FFFF {
            return;
        }
        let Some(c) = self.checks.get_mut(i) else { return };
        c.timer_armed = false;
        self.check_step(cx, i);
    }

    // ----------------------------------------------------------------------------------------
    // Reload

    /// Applies configuration `generation`. A backend kept by it (same group, name and address)
    /// keeps its state: health (up/down and check counts, when checks run before and after),
    /// passive mark and counters. Every other backend is UP, serving, until a check says
    /// otherwise: one whose checks start now (checks turned on, or new) has its first result
    /// decide, so turning checks on never refuses a session to a healthy backend while the
    /// first round runs.
    fn reload(&mut self, cx: &mut Cx, cfg: Arc<ProxyConfig>, generation: u64) {
        let (mut backends, groups) = build_backends(&cfg);
        let checked = self.cfg.health.enabled && cfg.health.enabled;
        let mut carry: Vec<Option<CheckCarry>> = vec![None; backends.len()];
        let mut map = vec![REMOVED; self.backends.len()];
        let mut fails = vec![0u64; backends.len()];
        let mut passive = vec![0u64; backends.len()];
        let mut sessions = vec![0u64; backends.len()];
        for (ni, nb) in backends.iter_mut().enumerate() {
            let gname = &cfg.groups[nb.group].name;
            let found = self
                .backends
                .iter()
                .position(|ob| self.cfg.groups[ob.group].name == *gname && ob.addr == nb.addr && ob.name == nb.name);
            nb.up = true;
            if let Some(oi) = found {
                let ob = &self.backends[oi];
                if checked {
                    nb.up = ob.up;
                    carry[ni] = self.checks.get(oi).map(|c| CheckCarry { rise: c.rise, fall: c.fall, fresh: c.fresh });
                }
                nb.active = ob.active;
                nb.passive_fails = ob.passive_fails;
                nb.passive_down_until = ob.passive_down_until;
                map[oi] = ni;
                fails[ni] = self.stats.backend_connect_failures.get(oi).copied().unwrap_or(0);
                passive[ni] = self.stats.backend_passive_down.get(oi).copied().unwrap_or(0);
                sessions[ni] = self.stats.backend_sessions.get(oi).copied().unwrap_or(0);
            }
        }
        for (_, s) in self.sessions.iter_mut() {
            s.backend = map.get(s.backend).copied().unwrap_or(REMOVED);
            s.tried.clear();
        }
        for l in self.listeners.iter_mut() {
            let name = &self.cfg.groups[l.group].name;
            if let Some(g) = cfg.groups.iter().position(|g| g.name == *name) {
                l.group = g;
            }
        }
        self.stats.backend_connect_failures = fails;
        self.stats.backend_passive_down = passive;
        self.stats.backend_sessions = sessions;
        self.stats.backend_active = vec![0; backends.len()];
        self.backends = backends;
        self.groups = groups;
        self.cfg = cfg;
        self.generation = generation;
        self.start_checks(cx, &carry);
    }
}

/// What an edge on a connecting backend socket means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialed {
    /// Spurious wake-up: the handshake is still under way.
    Pending,
    Connected,
    /// The backend completed the handshake and reset the connection before this side looked.
    /// That is an established session the server aborted (HAProxy counts it so, not as a
    /// connect error): no retry elsewhere, since the client's first bytes may already have
    /// reached it (smart_connect), and no passive-health failure, since the backend accepts.
    Aborted,
    /// The connect itself failed (refused, unreachable, ..): passive health and a retry.
    Failed(Cause),
}

/// Classifies `ready` on connecting socket `sock`. A connecting socket signals EPOLLOUT only
/// once the handshake completed, and EPOLLERR/EPOLLHUP when it failed: a WRITABLE edge without
/// those is a connect, with no SO_ERROR/getpeername round trip. Anything else takes the full
/// check, where a reset after the handshake (see [`connect::completed_before`]) is told apart
/// from a failed handshake.
fn dial_outcome(sock: &TcpStream, ready: Ready) -> Dialed {
    if ready.contains(Ready::WRITABLE) && !ready.intersects(Ready::ERROR | Ready::HUP) {
        return Dialed::Connected;
    }
    match connect::check(sock) {
        DialState::Pending => Dialed::Pending,
        DialState::Connected => Dialed::Connected,
        DialState::Failed(e) if connect::completed_before(sock, &e) => Dialed::Aborted,
        DialState::Failed(e) => Dialed::Failed(Cause::from_io(&e)),
    }
}

fn fin_deadline(s: &Session, cfg: &ProxyConfig) -> Option<Instant> {
    let a = s.pipe.c2s.eof_at.map(|t| t + cfg.timeouts.client_fin);
    let b = s.pipe.s2c.eof_at.map(|t| t + cfg.timeouts.server_fin);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, y) => x.or(y),
    }
}

impl Handler for ProxyReactor {
    type Cmd = Cmd;

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        let cap = self.sessions.capacity() * TIMERS_PER_SESSION + self.backends.len() * 2 + 4096;
        cx.timers.set_capacity(cap);
        self.start_checks(cx, &[]);
        if self.cfg.health.enabled {
            cx.arm(cx.now + self.cfg.health.timeout + OPEN_GRACE, role_token(0), T_OPEN);
            self.maybe_open(cx);
            Ok(())
        } else {
            self.open(cx)
        }
    }

    fn on_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if let Some(i) = listener_index(token) {
            if i < self.listeners.len() {
                self.listeners[i].acceptor.note_ready(ready);
                self.accept(cx, i);
            }
            return;
        }
        match slab::tag_of(token) {
            Some(t) if t == SESSION_TAG || t == SESSION_TAG + 1 => self.session_ready(cx, token, ready),
            Some(t) if t as usize == HEALTH_TAG => self.health_ready(cx, token),
            _ => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        match kind {
            TIMER_RESUME_ACCEPT => {
                if let Some(i) = listener_index(token).filter(|i| *i < self.listeners.len()) {
                    if self.listeners[i].acceptor.on_timer(kind) {
                        self.accept(cx, i);
                    }
                }
            }
            T_DRAIN => {
                if token == role_token(0) && !self.sessions.is_empty() {
                    log::debug!(
                        "r{} drain timeout: cutting {}",
                        cx.id,
                        crate::stats::counted(self.sessions.len() as u64, "session", "sessions")
                    );
                    self.cut_all(cx);
                }
            }
            T_HEALTH => self.health_timer(cx, token),
            T_OPEN => {
                if self.gated {
                    log::warn!("r{} first health round incomplete; accepting anyway", cx.id);
                    if let Err(e) = self.open(cx) {
                        log::error!("r{} register listeners: {e}", cx.id);
                    }
                }
            }
            _ => self.session_timer(cx, token, kind),
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: Cmd) {
        match cmd {
            Cmd::Health { generation, up } => {
                // Another generation's indices name other backends (a reload that did not
                // reach this reactor, or a vector sent before it): ignored.
                if cx.id != 0 && generation == self.generation && up.len() == self.backends.len() {
                    for (b, u) in self.backends.iter_mut().zip(up) {
                        b.up = u;
                    }
                }
            }
            Cmd::Open => {
                if let Err(e) = self.open(cx) {
                    log::error!("r{} register listeners: {e}", cx.id);
                }
            }
            Cmd::PassiveDown { generation, backend, until } => self.passive_down(cx.id, generation, backend, until),
            Cmd::Reload(cfg, generation) => self.reload(cx, cfg, generation),
            Cmd::Drain(deadline) => {
                if self.draining {
                    return;
                }
                self.draining = true;
                for l in self.listeners.iter_mut() {
                    l.acceptor.close(cx.registry);
                }
                for c in self.checks.iter_mut() {
                    if let Some(mut s) = c.sock.take() {
                        let _ = cx.registry.deregister(&mut s);
                    }
                }
                if deadline <= cx.now {
                    self.cut_all(cx);
                } else {
                    cx.arm(deadline, role_token(0), T_DRAIN);
                }
            }
            Cmd::Stop => {
                self.stopping = true;
                self.draining = true;
                for l in self.listeners.iter_mut() {
                    l.acceptor.close(cx.registry);
                }
                self.cut_all(cx);
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        let health_known = self.health_known();
        let r = self.make_report(cx.id, false, health_known);
        let _ = self.report.try_send(r);
    }

    fn on_wake(&mut self, cx: &mut Cx) {
        if self.draining || self.gated {
            return;
        }
        for l in self.listeners.iter_mut() {
            l.acceptor.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.draining && self.sessions.is_empty()
    }

    fn on_exit(&mut self, cx: &mut Cx) {
        self.cut_all(cx);
        let r = self.make_report(cx.id, true, true);
        let _ = self.report.send_timeout(r, Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
balance = "round_robin"

[health]
enabled = false
interval = "10s"
passive_fall = 2

[[listener]]
address = "127.0.0.1:0"

[[backend]]
name = "dead"
address = "127.0.0.1:1"

[[backend]]
name = "live"
address = "127.0.0.1:2"
"#;

    /// Reactor 1 of 2 with no listener sockets, and the coordinator's end of its reports.
    fn reactor() -> (ProxyReactor, crossbeam_channel::Receiver<Report>) {
        let cfg = crate::proxy::config::from_str(std::path::Path::new("t.toml"), CONF).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(16);
        (ProxyReactor::new(Arc::new(cfg), 1, Vec::new(), Vec::new(), tx), rx)
    }

    /// Whether `pick` can still choose backend 0 at `now` (round-robin over two backends: two
    /// picks include it whenever it is usable).
    fn picks_dead(r: &mut ProxyReactor, now: Instant) -> bool {
        (0..2).any(|_| r.pick(now, 0, &[]) == Some(0))
    }

    #[test]
    fn passive_fall_failures_mark_once_and_report_at_once() {
        let (mut r, rx) = reactor();
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        r.connect_failed(1, now, 0, Cause::Refused);
        assert_eq!(r.backends[0].passive_down_until, None);
        assert!(rx.try_recv().is_err(), "no mark, no early report");
        assert!(picks_dead(&mut r, now));

        r.connect_failed(1, now, 0, Cause::Refused);
        assert_eq!(r.backends[0].passive_down_until, Some(until));
        assert_eq!(r.stats.backend_passive_down, vec![1, 0]);
        let rep = rx.try_recv().expect("a mark is reported at once");
        assert_eq!((rep.id, rep.generation, rep.done), (1, 0, false));
        assert_eq!(rep.passive_down, vec![Some(until), None]);
        assert_eq!(rep.stats.backend_passive_down, vec![1, 0]);
        assert_eq!(rep.stats.backend_connect_failures, vec![2, 0]);

        // Connects that were under way fail later: counted, but no second mark while one runs.
        let later = now + Duration::from_secs(1);
        for _ in 0..4 {
            r.connect_failed(1, later, 0, Cause::Timeout);
        }
        assert_eq!(r.backends[0].passive_down_until, Some(until));
        assert_eq!(r.stats.backend_passive_down, vec![1, 0]);
        assert_eq!(r.stats.backend_connect_failures, vec![6, 0]);
        assert!(rx.try_recv().is_err());

        assert!(!picks_dead(&mut r, later));
        assert!(picks_dead(&mut r, until));
        // Expired: the failures counted meanwhile are past `passive_fall`, so the next one marks
        // it again.
        r.connect_failed(1, until, 0, Cause::Refused);
        assert_eq!(r.backends[0].passive_down_until, Some(until + Duration::from_secs(10)));
        assert_eq!(r.stats.backend_passive_down, vec![2, 0]);
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn relayed_mark_applies_only_in_its_generation() {
        let (mut r, rx) = reactor();
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        // Another configuration's index, or one out of range: ignored.
        r.passive_down(1, 1, 0, until);
        r.passive_down(1, 0, 7, until);
        assert!(r.backends.iter().all(|b| b.passive_down_until.is_none()));
        assert!(picks_dead(&mut r, now));

        r.backends[0].passive_fails = 1;
        r.passive_down(1, 0, 0, until);
        assert_eq!(r.backends[0].passive_down_until, Some(until));
        assert_eq!(r.backends[0].passive_fails, 0);
        assert!(!picks_dead(&mut r, now));
        // An earlier deadline does not shorten it.
        r.passive_down(1, 0, 0, now + Duration::from_secs(1));
        assert_eq!(r.backends[0].passive_down_until, Some(until));

        // Failures while the relayed mark runs: no mark of this reactor, nothing to report.
        for _ in 0..3 {
            r.connect_failed(1, now, 0, Cause::Refused);
        }
        assert_eq!(r.stats.backend_passive_down, vec![0, 0]);
        assert!(rx.try_recv().is_err());
        // The tick report carries the relayed deadline; the coordinator sees nothing new in it.
        assert_eq!(r.make_report(1, false, true).passive_down, vec![Some(until), None]);
    }

    /// Waits (up to 5 s) for an edge on `s` that carries a reset or an error.
    fn reset_edge(s: &mut TcpStream) -> Ready {
        let mut poll = mio::Poll::new().unwrap();
        poll.registry().register(s, Token(0), Interest::READABLE | Interest::WRITABLE).unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut ready = Ready::EMPTY;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready.intersects(Ready::ERROR | Ready::HUP) {
            assert!(Instant::now() < deadline, "no reset seen");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            for e in events.iter() {
                ready |= Ready::from_event(e);
            }
        }
        ready
    }

    #[test]
    fn a_backend_that_accepts_then_resets_aborted_a_session_it_did_not_refuse_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = connect::dial(l.local_addr().unwrap(), None, &DialOpts::default()).unwrap();
        let (a, _) = l.accept().unwrap();
        socket2::SockRef::from(&a).set_linger(Some(Duration::ZERO)).unwrap();
        drop(a);
        // The reset lands before the first look, as it does on a busy reactor.
        let ready = reset_edge(&mut s);
        assert_eq!(dial_outcome(&s, ready), Dialed::Aborted);

        // Bound but not listening (so no other test can take the port): the connect is
        // refused, a failure fed to passive health and retried.
        let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let port = held.local_addr().unwrap().as_socket().unwrap().port();
        let mut s = connect::dial(([127, 0, 0, 1], port).into(), None, &DialOpts::default()).unwrap();
        let ready = reset_edge(&mut s);
        assert_eq!(dial_outcome(&s, ready), Dialed::Failed(Cause::Refused));
    }
}

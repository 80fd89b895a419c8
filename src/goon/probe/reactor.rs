//! The probe's per-reactor half: dial this reactor's share of every group (longest idle time
//! first, so the longest wait starts earliest), hold each connection idle from the moment it
//! is established for its group's duration, then write the probe and watch the answer.
//!
//! ```text
//!  Dialing ──connected──▶ Idle ──idle time over: write the probe──▶ Probing ──▶ Done
//!     │                    │ read 0 / RST / error: lost before the probe ──────▶ Done
//!     └─failed/timeout: counted as a failed dial
//!  Probing: bytes back → alive (answered); TCP_INFO says acknowledged → alive;
//!           read 0 / EPIPE → closed; RST → reset; deadline passed unacknowledged → dropped
//! ```
//!
//! Timers per connection (engine keyed timers): the dial deadline, the end of the idle time,
//! and the acknowledgement check, first 5 ms after the probe and then doubling up to 250 ms
//! (one `getsockopt(TCP_INFO)` each) until the probe deadline. Lost connections are closed at
//! once; alive and dropped ones stay open (and counted Established, as the kernel sees them)
//! until the run ends, so the tcpgoon counts keep their meaning.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::event::Source;
use mio::net::TcpStream;

use crate::engine::coordinator::Snapshot;
use crate::engine::{Cx, Entry, Handle, Handler, Key, Kind, Ready, Refused};
use crate::goon::pace::{Pace, Pacer, CONNECT_BATCH, TIMER_PACE};
use crate::goon::reactor::{Concurrency, Counts, GoonCmd, READ_BUDGET};
use crate::net::connect::{check, completed_before, dial, DialOpts, DialState};
use crate::net::tcp_info::{outq, tcp_info};
use crate::net::Cause;
use crate::result::probe::verdict::{acknowledged, retransmitted, AckView, Class, Group};
use crate::stats::Latency;
use crate::target::{Sink, SinkConn, SinkHost};

const TIMER_DIAL: Kind = Kind::new(0);
const TIMER_IDLE: Kind = Kind::new(1);
const TIMER_CHECK: Kind = Kind::new(2);
/// First acknowledgement check after the probe, and the longest gap between two.
pub const CHECK_FIRST: Duration = Duration::from_millis(5);
pub const CHECK_MAX: Duration = Duration::from_millis(250);

/// The counts a reactor sends, whole: tcpgoon's and the groups'.
#[derive(Clone, Debug, Default)]
pub struct Snap {
    pub counts: Counts,
    pub groups: Vec<Group>,
}

impl Snapshot for Snap {
    fn merge(&mut self, o: &Snap) {
        self.counts.merge(&o.counts);
        if self.groups.len() < o.groups.len() {
            self.groups.resize(o.groups.len(), Group::default());
        }
        for (a, b) in self.groups.iter_mut().zip(&o.groups) {
            a.merge(b);
        }
    }
}

/// Reactor → coordinator.
pub struct ProbeUpdate {
    pub reactor: usize,
    pub snap: Snap,
    pub connect: Option<Latency>,
    pub fail: Option<Latency>,
    /// Every dial resolved.
    pub dial_done: bool,
    /// Every connection of this reactor accounted for (failed, or classified).
    pub done: bool,
    /// Last message: the reactor stopped.
    pub exited: bool,
}

enum St {
    Dialing,
    Idle { at: Instant },
    Probing { sent: usize, before: AckView, deadline: Instant, gap: Duration, answered: bool },
    Done,
}

pub struct ProbeConn {
    sock: TcpStream,
    group: usize,
    since: Instant,
    st: St,
}

pub enum ProbeEntry {
    Conn(ProbeConn),
    Sink(SinkConn),
}

impl Entry for ProbeEntry {
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        match self {
            ProbeEntry::Conn(c) => (i == 0).then_some(&mut c.sock as &mut dyn Source),
            ProbeEntry::Sink(c) => c.socket(i),
        }
    }
}

impl From<SinkConn> for ProbeEntry {
    fn from(c: SinkConn) -> ProbeEntry {
        ProbeEntry::Sink(c)
    }
}

impl SinkHost for ProbeEntry {
    fn sink_conn(&mut self) -> Option<&mut SinkConn> {
        match self {
            ProbeEntry::Sink(c) => Some(c),
            ProbeEntry::Conn(_) => None,
        }
    }

    fn is_sink(&self) -> bool {
        matches!(self, ProbeEntry::Sink(_))
    }
}

type PCx<'a> = Cx<'a, ProbeEntry>;

/// What one reactor runs.
pub struct ProbePlan {
    pub target: SocketAddr,
    /// Idle time of each group.
    pub idle: Vec<Duration>,
    /// This reactor's connections of each group.
    pub per_group: Vec<u64>,
    pub deadline: Duration,
    pub message: Arc<[u8]>,
    pub pace: Pace,
    pub dial_timeout: Duration,
    pub opts: DialOpts,
    pub sources: Vec<IpAddr>,
    pub source_offset: usize,
    pub concurrency: Arc<Concurrency>,
}

pub struct ProbeReactor {
    plan: ProbePlan,
    /// Dial order: group indices, longest idle first, one per dial.
    order: Vec<u8>,
    share: u64,
    next_source: usize,
    pacer: Pacer,
    snap: Snap,
    /// Connections idle or probing now.
    open_unclassified: u64,
    connect: Latency,
    fail: Latency,
    tx: Sender<Box<ProbeUpdate>>,
    done_sent: bool,
    stopping: bool,
    exit: bool,
    scratch: Box<[u8]>,
    sink: Option<Sink>,
}

impl ProbeReactor {
    pub fn new(plan: ProbePlan, tx: Sender<Box<ProbeUpdate>>, sink: Option<Sink>) -> ProbeReactor {
        let mut by_length: Vec<usize> = (0..plan.idle.len()).collect();
        by_length.sort_by(|a, b| plan.idle[*b].cmp(&plan.idle[*a]));
        // At most MAX_GROUPS (32) groups: an index fits a byte.
        let order: Vec<u8> =
            by_length.iter().flat_map(|g| std::iter::repeat_n(*g as u8, plan.per_group[*g] as usize)).collect();
        let groups = plan.per_group.iter().map(|n| Group { connections: *n, ..Group::default() }).collect();
        ProbeReactor {
            share: order.len() as u64,
            order,
            next_source: plan.source_offset,
            pacer: Pacer::new(plan.pace),
            snap: Snap { counts: Counts::default(), groups },
            open_unclassified: 0,
            connect: Latency::new(),
            fail: Latency::new(),
            tx,
            done_sent: false,
            stopping: false,
            exit: false,
            scratch: vec![0u8; READ_BUDGET].into_boxed_slice(),
            sink,
            plan,
        }
    }

    fn dial_done(&self) -> bool {
        self.snap.counts.dialed >= self.share && self.snap.counts.dialing == 0
    }

    fn done(&self) -> bool {
        self.dial_done() && self.open_unclassified == 0
    }

    fn dial_some(&mut self, cx: &mut PCx) {
        if self.stopping {
            return;
        }
        for _ in 0..CONNECT_BATCH {
            if !self.pacer.ready(cx, self.snap.counts.dialed, self.share) {
                return;
            }
            if !self.dial_one(cx) {
                self.pacer.back_off(cx);
                return;
            }
        }
        self.pacer.batch_done(cx, self.snap.counts.dialed < self.share);
    }

    fn dial_one(&mut self, cx: &mut PCx) -> bool {
        let group = usize::from(self.order[self.snap.counts.dialed as usize]);
        let source = (!self.plan.sources.is_empty()).then(|| {
            let s = self.plan.sources[self.next_source % self.plan.sources.len()];
            self.next_source = self.next_source.wrapping_add(1);
            s
        });
        self.snap.counts.dialed += 1;
        let since = cx.now;
        let (cause, back_off) = match dial(self.plan.target, source, &self.plan.opts) {
            Ok(sock) => match cx.adopt(ProbeEntry::Conn(ProbeConn { sock, group, since, st: St::Dialing })) {
                Ok(key) => {
                    self.snap.counts.dialing += 1;
                    cx.timers.arm(key, TIMER_DIAL, since + self.plan.dial_timeout);
                    return true;
                }
                Err((_, Refused::Full)) => (Cause::NoFds, false),
                Err((_, Refused::Register(e))) => (Cause::from_io(&e), matches!(Cause::from_io(&e), Cause::NoFds)),
            },
            Err(e) => {
                let c = Cause::from_io(&e);
                log::debug!("r{} probe dial {} failed: {} ({e})", cx.id, self.plan.target, c.name());
                (c, matches!(c, Cause::NoPorts | Cause::NoFds))
            }
        };
        self.record_error(cx, cause, since, group);
        !back_off
    }

    fn record_error(&mut self, cx: &PCx, cause: Cause, since: Instant, group: usize) {
        self.snap.counts.error += 1;
        self.snap.counts.errors[cause.index()] += 1;
        self.snap.groups[group].failed += 1;
        self.fail.record(cx.now.saturating_duration_since(since));
    }

    fn fail_dial(&mut self, cx: &mut PCx, key: Key, cause: Cause) {
        if let Some(ProbeEntry::Conn(c)) = cx.close(key) {
            let (since, group) = (c.since, c.group);
            self.snap.counts.dialing -= 1;
            self.record_error(cx, cause, since, group);
        }
    }

    /// Dialing → Idle: the idle time starts now.
    fn establish(&mut self, cx: &mut PCx, key: Key) {
        let now = cx.now;
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        let rtt = now.saturating_duration_since(c.since);
        c.st = St::Idle { at: now };
        let group = c.group;
        cx.timers.cancel(key, TIMER_DIAL);
        cx.timers.arm(key, TIMER_IDLE, now + self.plan.idle[group]);
        let counts = &mut self.snap.counts;
        counts.dialing -= 1;
        counts.established += 1;
        counts.established_total += 1;
        self.snap.groups[group].established += 1;
        self.open_unclassified += 1;
        self.plan.concurrency.up();
        self.connect.record(rtt);
    }

    /// Counts the class of connection `key` (idle or probing); a lost one is closed.
    fn classify(&mut self, cx: &mut PCx, key: Key, class: Class, retrans: u64) {
        let now = cx.now;
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        let lost_idle = match c.st {
            St::Idle { at } => Some(now.saturating_duration_since(at)),
            St::Probing { .. } => None,
            St::Dialing | St::Done => return,
        };
        c.st = St::Done;
        let group = c.group;
        self.snap.groups[group].count(class, lost_idle, retrans);
        self.open_unclassified -= 1;
        log::debug!("r{} t{key} idle {:?}: {class:?}", cx.id, self.plan.idle[group]);
        cx.timers.cancel(key, TIMER_CHECK);
        cx.timers.cancel(key, TIMER_IDLE);
        if !matches!(class, Class::Alive { .. } | Class::Dropped) {
            self.close_established(cx, key);
        }
        if self.done() {
            self.flush(cx);
        }
    }

    /// An established connection ends (the peer's doing): tcpgoon's Closed.
    fn close_established(&mut self, cx: &mut PCx, key: Key) {
        if cx.close(key).is_some() {
            self.snap.counts.established -= 1;
            self.snap.counts.closed += 1;
            self.plan.concurrency.down();
        }
    }

    fn on_conn(&mut self, cx: &mut PCx, key: Key, ready: Ready) {
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        if matches!(c.st, St::Dialing) {
            match check(&c.sock) {
                DialState::Pending => return,
                DialState::Failed(e) if completed_before(&c.sock, &e) => {
                    self.establish(cx, key);
                    self.classify(cx, key, Class::of_error(&e), 0);
                    return;
                }
                DialState::Failed(e) => return self.fail_dial(cx, key, Cause::from_io(&e)),
                DialState::Connected => self.establish(cx, key),
            }
            if !ready.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
                return;
            }
        }
        if ready.contains(Ready::WRITABLE) {
            self.write_rest(cx, key);
        }
        self.read(cx, key);
    }

    /// Reads what the peer sent (bounded): bytes while probing answer the probe; EOF, a reset
    /// or an error classify the connection (or end a classified one).
    fn read(&mut self, cx: &mut PCx, key: Key) {
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        let mut budget = READ_BUDGET;
        let mut more = false;
        let outcome = loop {
            match c.sock.read(&mut self.scratch) {
                Ok(0) => break Some(Class::Closed),
                Ok(n) => {
                    if let St::Probing { answered, .. } = &mut c.st {
                        *answered = true;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        more = true;
                        break None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Class::of_error(&e)),
            }
        };
        let (done, answered) = match &c.st {
            St::Done => (true, false),
            St::Probing { answered, .. } => (false, *answered),
            _ => (false, false),
        };
        if more {
            cx.defer(key);
        }
        match outcome {
            Some(_) if done => self.close_established(cx, key),
            Some(class) => self.classify(cx, key, class, 0),
            None if answered => self.classify(cx, key, Class::Alive { answered: true }, 0),
            None => {}
        }
    }

    /// Idle time over: write the probe.
    fn probe(&mut self, cx: &mut PCx, key: Key) {
        let deadline = cx.now + self.plan.deadline;
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        if !matches!(c.st, St::Idle { .. }) {
            return;
        }
        let before = ack_view(&c.sock);
        match write_some(&mut c.sock, &self.plan.message) {
            Ok(n) => {
                c.st = St::Probing { sent: n, before, deadline, gap: CHECK_FIRST, answered: false };
                cx.timers.arm(key, TIMER_CHECK, (cx.now + CHECK_FIRST).min(deadline));
            }
            Err(e) => self.classify(cx, key, Class::of_error(&e), 0),
        }
    }

    /// The rest of a probe the socket did not take at once.
    fn write_rest(&mut self, cx: &mut PCx, key: Key) {
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        let St::Probing { sent, .. } = &mut c.st else { return };
        if *sent >= self.plan.message.len() {
            return;
        }
        match write_some(&mut c.sock, &self.plan.message[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) => self.classify(cx, key, Class::of_error(&e), 0),
        }
    }

    /// The acknowledgement check: alive once TCP_INFO says so, dropped at the deadline.
    fn check_ack(&mut self, cx: &mut PCx, key: Key) {
        self.read(cx, key);
        let now = cx.now;
        let Some(ProbeEntry::Conn(c)) = cx.table.get_mut(key) else { return };
        let St::Probing { sent, before, deadline, gap, .. } = &mut c.st else { return };
        let view = ack_view(&c.sock);
        let complete = *sent >= self.plan.message.len();
        if complete && acknowledged(before, &view, *sent as u64) {
            return self.classify(cx, key, Class::Alive { answered: false }, 0);
        }
        if now >= *deadline {
            let re = retransmitted(before, &view);
            return self.classify(cx, key, Class::Dropped, re);
        }
        *gap = (*gap * 2).min(CHECK_MAX);
        let at = (now + *gap).min(*deadline);
        cx.timers.arm(key, TIMER_CHECK, at);
    }

    fn report(&mut self, exited: bool) -> Box<ProbeUpdate> {
        Box::new(ProbeUpdate {
            reactor: 0,
            snap: self.snap.clone(),
            connect: (!self.connect.is_empty()).then(|| self.connect.take()),
            fail: (!self.fail.is_empty()).then(|| self.fail.take()),
            dial_done: self.dial_done(),
            done: self.done(),
            exited,
        })
    }

    fn flush(&mut self, cx: &PCx) {
        let mut u = self.report(false);
        u.reactor = cx.id;
        let done = u.done;
        if let Err(e) = self.tx.try_send(u) {
            let u = e.into_inner();
            if let Some(l) = u.connect {
                self.connect.merge(&l);
            }
            if let Some(l) = u.fail {
                self.fail.merge(&l);
            }
        } else if done {
            self.done_sent = true;
        }
    }
}

/// One write of `buf`; `Ok(0)` when the socket takes nothing now (the rest follows on WRITABLE).
fn write_some(sock: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    loop {
        match sock.write(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn ack_view(sock: &TcpStream) -> AckView {
    match tcp_info(sock.as_fd()) {
        Ok(info) => AckView::of(&info, outq(sock.as_fd()).ok()),
        // No TCP_INFO: only the send queue can say; a socket that says nothing never looks
        // acknowledged (a dropped verdict then needs the deadline).
        Err(_) => AckView { outq: outq(sock.as_fd()).ok(), unacked: 0, ..AckView::default() },
    }
}

impl Handler for ProbeReactor {
    type Cmd = GoonCmd;
    type Entry = ProbeEntry;

    fn on_start(&mut self, cx: &mut PCx) -> io::Result<()> {
        let share = self.share as usize;
        let sink = self.sink.as_ref().map_or(0, Sink::cap);
        cx.table.set_capacity(share.max(1) + sink, share);
        let clock = cx.handle()?;
        self.pacer.start(cx.now, clock);
        if let Some(sink) = self.sink.as_mut() {
            sink.register(cx)?;
        }
        self.dial_some(cx);
        Ok(())
    }

    fn on_ready(&mut self, cx: &mut PCx, key: Key, _sock: usize, ready: Ready) {
        if self.stopping {
            return;
        }
        match (cx.table.get(key), self.sink.as_mut()) {
            (Some(ProbeEntry::Sink(_)), Some(sink)) => sink.on_ready(cx, key, ready),
            (Some(ProbeEntry::Conn(_)), _) => {
                let was = self.dial_done();
                self.on_conn(cx, key, ready);
                if (!was && self.dial_done()) || (!self.done_sent && self.done()) {
                    self.flush(cx);
                }
            }
            _ => {}
        }
    }

    fn on_handle(&mut self, cx: &mut PCx, h: Handle, ready: Ready) {
        if self.stopping {
            return;
        }
        if self.pacer.owns(h) {
            self.dial_some(cx);
        } else if let Some(sink) = self.sink.as_mut().filter(|s| s.owns(h)) {
            sink.on_handle(cx, ready);
        }
    }

    fn on_timer(&mut self, cx: &mut PCx, key: Key, kind: Kind) {
        if self.stopping {
            return;
        }
        let was = self.dial_done();
        if kind == TIMER_DIAL {
            if matches!(cx.table.get(key), Some(ProbeEntry::Conn(ProbeConn { st: St::Dialing, .. }))) {
                self.fail_dial(cx, key, Cause::Timeout);
            }
        } else if kind == TIMER_IDLE {
            self.probe(cx, key);
        } else if kind == TIMER_CHECK {
            self.check_ack(cx, key);
        }
        if (!was && self.dial_done()) || (!self.done_sent && self.done()) {
            self.flush(cx);
        }
    }

    fn on_handle_timer(&mut self, cx: &mut PCx, h: Handle, kind: Kind) {
        if self.stopping {
            return;
        }
        if self.pacer.owns(h) {
            if kind == TIMER_PACE {
                self.dial_some(cx);
            }
        } else if let Some(sink) = self.sink.as_mut().filter(|s| s.owns(h)) {
            sink.on_handle_timer(cx, kind);
        }
    }

    fn on_command(&mut self, cx: &mut PCx, cmd: GoonCmd) {
        match cmd {
            GoonCmd::Stop if !self.stopping => {
                self.stopping = true;
                let mut u = self.report(true);
                u.reactor = cx.id;
                // The coordinator waits for this message: a bounded blocking send is fine here.
                let _ = self.tx.send_timeout(u, Duration::from_secs(2));
            }
            GoonCmd::Stop => {}
            GoonCmd::Exit => self.exit = true,
            // The idle probe sends no traffic (its flags are refused with --probe-idle).
            GoonCmd::EndTraffic(_) => {}
        }
    }

    fn on_tick(&mut self, cx: &mut PCx) {
        if !self.stopping {
            self.flush(cx);
        }
    }

    fn on_wake(&mut self, cx: &mut PCx) {
        if let Some(sink) = self.sink.as_mut() {
            sink.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.exit
    }

    fn on_exit(&mut self, cx: &mut PCx) {
        if let Some(sink) = self.sink.as_mut() {
            sink.close_all(cx);
        }
    }
}

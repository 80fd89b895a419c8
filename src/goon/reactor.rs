//! goon's per-reactor half: dial this reactor's share of the connections on schedule, watch each
//! one through Dialing → Established → Closed (or → Error), never write, read and discard what
//! the peer sends, and report whole counts plus swapped-out latency recorders each tick.
//!
//! Shares are fixed at start (reactor i dials `N/T` plus one of the remainder), so the total
//! number of dials is exactly N however the reactors race. Pacing: `--sleep S` spaces dials
//! `S` apart globally (reactor i dials at `t0 + (i + k·T)·S`); `--rate R` spaces them
//! `1/R_i` apart per reactor; `--sleep 0` dials as fast as the loop allows, `CONNECT_BATCH` per
//! turn so established sockets are still served in between.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::event::Source;

use crate::engine::{Cx, Entry, Handle, Handler, Key, Kind, Ready, Refused, StateStamp};
use crate::net::connect::{check, completed_before, dial, DialOpts, DialState};
use crate::net::Cause;
use crate::stats::Latency;
use crate::target::{Sink, SinkConn, SinkHost};
use crate::tls::Stream;

use super::tls::{Step as TlsStep, TlsPhase, TlsPlan, TIMER_TLS};
use crate::ws::client::{Client, ClientPlan, Edge, Step};

use super::ws::{WsLatencies, WsRun, TIMER_WS};

use super::traffic::{self, Flow, Order, Phases, Traffic, TrafficCounts, TrafficPlan, TIMER_MSG};

mod layers;

pub use super::pace::{Pace, CONNECT_BATCH};
use super::pace::{Pacer, TIMER_PACE};

/// Bytes read (and dropped) from one connection per wake-up.
pub const READ_BUDGET: usize = 64 * 1024;
/// A dial's connect deadline.
const TIMER_DIAL: Kind = Kind::new(0);

/// Established connections across every reactor right now, and the most there ever were at
/// once. Updated at each transition, so the peak is exact, not a sample of the coordinator's
/// ticks (a peak shorter than a tick would be missed there). One shared cache line, touched
/// twice per connection: nothing next to a handshake.
///
/// `interval_peak` is the same peak since the coordinator last took it (per-interval samples).
#[derive(Debug, Default)]
pub struct Concurrency {
    now: AtomicU64,
    peak: AtomicU64,
    interval_peak: AtomicU64,
}

impl Concurrency {
    pub fn up(&self) {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(n, Ordering::Relaxed);
        self.interval_peak.fetch_max(n, Ordering::Relaxed);
    }

    /// The most established at once since the last call, and the interval's peak restarts
    /// from the count now.
    pub fn take_interval_peak(&self) -> u64 {
        let peak = self.interval_peak.swap(self.now.load(Ordering::Relaxed), Ordering::Relaxed);
        peak.max(self.now.load(Ordering::Relaxed))
    }

    pub fn down(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Whole per-reactor counts (not deltas): the latest message from a reactor replaces the last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Dials started (NotInitiated = share − dialed).
    pub dialed: u64,
    pub dialing: u64,
    pub established: u64,
    pub closed: u64,
    pub error: u64,
    /// Connections that ever reached Established.
    pub established_total: u64,
    pub errors: [u64; 7],
    /// `--tls`: handshakes and their failures.
    pub tls: super::tls::TlsCounts,
    /// `--ws`: the upgrades' counts (zero without it).
    pub ws: crate::ws::client::ClientCounts,
    /// Messages and bytes (zero without traffic flags).
    pub traffic: TrafficCounts,
}

impl crate::engine::coordinator::Snapshot for Counts {
    fn merge(&mut self, o: &Counts) {
        self.dialed += o.dialed;
        self.dialing += o.dialing;
        self.established += o.established;
        self.closed += o.closed;
        self.error += o.error;
        self.established_total += o.established_total;
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
        self.tls.merge(&o.tls);
        self.ws.merge(&o.ws);
        self.traffic.add(&o.traffic);
    }
}

/// Reactor → coordinator.
pub struct Update {
    pub reactor: usize,
    pub counts: Counts,
    /// Connect times and times-to-error recorded since the last update.
    pub connect: Option<Latency>,
    pub fail: Option<Latency>,
    /// `--tls`: handshake latencies recorded since the last update.
    pub tls_handshake: Option<Latency>,
    /// `--ws`: upgrade times and ping round trips recorded since the last update.
    pub ws: Option<WsLatencies>,
    /// Response latencies recorded since the last update (traffic with a response mode).
    pub response: Option<Latency>,
    /// Every dial of this reactor's share has been started and resolved.
    pub dial_done: bool,
    /// Last message: the reactor is exiting.
    pub exited: bool,
}

/// Stopping is two-phase so that no reactor's closing sockets can change another's counts
/// (with the built-in sink, one reactor's sink holds the peers of another's dials): `Stop`
/// freezes and reports the counts, and only once every reactor has reported does `Exit` let them
/// close their sockets and end.
pub enum GoonCmd {
    /// Stop dialing, send the final counts (`exited` set), keep every socket open.
    Stop,
    /// Close everything and end the thread.
    Exit,
    /// The traffic phase ends at this instant: no message due at or after it is sent.
    EndTraffic(Instant),
}

pub struct Dial {
    /// Plain TCP, or TLS over it once `--tls` began its handshake: reads give plaintext.
    sock: Stream,
    /// The stage ([`DIALING`], [`HELD`], [`HANDSHAKING`]) and when it began: the dial, or
    /// once established, the layer above TCP (the TLS handshake). Either way, what the
    /// current stage's latency is measured from. One word: a table slot is as large as its
    /// largest entry, and every held connection pays for it (40 bytes here).
    stage: StateStamp,
    /// `--ws`: the connection's WebSocket, from the TCP connect on.
    ws: Option<Box<Client>>,
    /// Its message schedule, with traffic flags (boxed: nothing per connection without them).
    flow: Option<Box<Flow>>,
}

/// A [`Dial`]'s stages.
const DIALING: u8 = 0;
/// Established (TCP), with no handshake under way.
const HELD: u8 = 1;
/// `--tls`: established, and the handshake is under way.
const HANDSHAKING: u8 = 2;

impl Dial {
    fn established(&self) -> bool {
        self.stage.state() != DIALING
    }

    fn handshaking(&self) -> bool {
        self.stage.state() == HANDSHAKING
    }

    fn since(&self) -> Instant {
        self.stage.instant()
    }
}

/// What goon's table holds: its dials, and the connections of the built-in sink.
pub enum GoonEntry {
    Dial(Dial),
    /// Boxed: every slot of the table is as large as the largest variant, and goon's dials
    /// (the many) should not pay for a sink connection's echo and WebSocket state.
    Sink(Box<SinkConn>),
}

impl Entry for GoonEntry {
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        match self {
            GoonEntry::Dial(d) => (i == 0).then_some(&mut d.sock as &mut dyn Source),
            GoonEntry::Sink(c) => c.socket(i),
        }
    }
}

impl From<SinkConn> for GoonEntry {
    fn from(c: SinkConn) -> GoonEntry {
        GoonEntry::Sink(Box::new(c))
    }
}

impl SinkHost for GoonEntry {
    fn sink_conn(&mut self) -> Option<&mut SinkConn> {
        match self {
            GoonEntry::Sink(c) => Some(c),
            GoonEntry::Dial(_) => None,
        }
    }

    fn is_sink(&self) -> bool {
        matches!(self, GoonEntry::Sink(_))
    }
}

type GCx<'a> = Cx<'a, GoonEntry>;

pub struct GoonReactor {
    target: SocketAddr,
    share: u64,
    pacer: Pacer,
    dial_timeout: Duration,
    opts: DialOpts,
    sources: Vec<IpAddr>,
    next_source: usize,
    counts: Counts,
    connect: Latency,
    fail: Latency,
    tx: Sender<Box<Update>>,
    dial_done_sent: bool,
    /// Counts frozen at `Stop`; events after it are no longer counted.
    stopping: bool,
    exit: bool,
    scratch: Box<[u8]>,
    sink: Option<Sink>,
    concurrency: Arc<Concurrency>,
    tls: Option<TlsPhase>,
    ws: Option<WsRun>,
    traffic: Option<Traffic>,
    /// Where this reactor's connections put their message slots and pings within a period,
    /// and the order in which upgraded connections take their ping phases.
    phases: Phases,
    ping_order: Order,
}

pub struct ReactorPlan {
    pub target: SocketAddr,
    pub share: u64,
    pub pace: Pace,
    pub dial_timeout: Duration,
    pub opts: DialOpts,
    pub sources: Vec<IpAddr>,
    /// Index of the first source this reactor uses (spreads reactors over sources).
    pub source_offset: usize,
    /// Shared with every reactor of the run.
    pub concurrency: Arc<Concurrency>,
    /// `--tls`: a handshake after each TCP connect.
    pub tls: Option<TlsPlan>,
    /// `--ws`: the upgrade every connection makes.
    pub ws: Option<Arc<ClientPlan>>,
    /// Message traffic on every established connection.
    pub traffic: Option<Arc<TrafficPlan>>,
    /// Where this reactor's connections put their message slots and pings within a period.
    pub phases: Phases,
}

impl GoonReactor {
    pub fn new(plan: ReactorPlan, tx: Sender<Box<Update>>, sink: Option<Sink>) -> GoonReactor {
        GoonReactor {
            target: plan.target,
            share: plan.share,
            pacer: Pacer::new(plan.pace),
            dial_timeout: plan.dial_timeout,
            opts: plan.opts,
            next_source: plan.source_offset,
            sources: plan.sources,
            counts: Counts::default(),
            connect: Latency::new(),
            fail: Latency::new(),
            tx,
            dial_done_sent: false,
            stopping: false,
            exit: false,
            scratch: vec![0u8; READ_BUDGET].into_boxed_slice(),
            sink,
            concurrency: plan.concurrency,
            tls: plan.tls.map(TlsPhase::new),
            ws: plan.ws.map(WsRun::new),
            traffic: plan.traffic.map(|t| Traffic::new(t).with_phases(plan.phases)),
            phases: plan.phases,
            ping_order: Order::new(plan.phases.share),
        }
    }

    /// Starts the dials that are due, at most `CONNECT_BATCH`.
    fn dial_some(&mut self, cx: &mut GCx) {
        if self.stopping {
            return;
        }
        for _ in 0..CONNECT_BATCH {
            if !self.pacer.ready(cx, self.counts.dialed, self.share) {
                return;
            }
            if !self.dial_one(cx) {
                self.pacer.back_off(cx);
                return;
            }
        }
        self.pacer.batch_done(cx, self.counts.dialed < self.share);
    }

    /// Starts one dial; false when the failure means "back off" (no ports, no fds).
    fn dial_one(&mut self, cx: &mut GCx) -> bool {
        let source = if self.sources.is_empty() {
            None
        } else {
            let s = self.sources[self.next_source % self.sources.len()];
            self.next_source = self.next_source.wrapping_add(1);
            Some(s)
        };
        self.counts.dialed += 1;
        let since = cx.now;
        match dial(self.target, source, &self.opts) {
            Ok(sock) => match cx.adopt(GoonEntry::Dial(Dial {
                sock: Stream::plain(sock),
                stage: StateStamp::new(DIALING, since),
                ws: None,
                flow: None,
            })) {
                Ok(key) => {
                    self.counts.dialing += 1;
                    cx.timers.arm(key, TIMER_DIAL, since + self.dial_timeout);
                    true
                }
                Err((_, Refused::Full)) => {
                    self.record_error(cx, Cause::NoFds, since);
                    true
                }
                Err((_, Refused::Register(e))) => {
                    self.record_error(cx, Cause::from_io(&e), since);
                    !matches!(Cause::from_io(&e), Cause::NoFds)
                }
            },
            Err(e) => {
                let cause = Cause::from_io(&e);
                // No socket, so no port yet: the source address, or `*` where the kernel picks.
                let from = match source {
                    None => "*:*".to_string(),
                    Some(IpAddr::V4(ip)) => format!("{ip}:*"),
                    Some(IpAddr::V6(ip)) => format!("[{ip}]:*"),
                };
                log::debug!("r{} dial {} from {from} failed: {} ({e})", cx.id, self.target, cause.name());
                self.record_error(cx, cause, since);
                !matches!(cause, Cause::NoPorts | Cause::NoFds)
            }
        }
    }

    fn record_error(&mut self, cx: &GCx, cause: Cause, since: Instant) {
        self.counts.error += 1;
        self.counts.errors[cause.index()] += 1;
        self.fail.record(cx.now.saturating_duration_since(since));
    }

    /// A dialing socket failed or timed out.
    fn fail_dial(&mut self, cx: &mut GCx, key: Key, cause: Cause) {
        let debug = log::log_enabled!(log::Level::Debug);
        if let Some(GoonEntry::Dial(d)) = cx.close(key) {
            let since = d.since();
            let from = debug.then(|| d.sock.local_addr().map_or_else(|e| format!("? ({e})"), |a| a.to_string()));
            self.counts.dialing -= 1;
            self.record_error(cx, cause, since);
            if let Some(from) = from {
                log::debug!(
                    "r{} dial {} from {from} failed: {} after {}",
                    cx.id,
                    self.target,
                    cause.name(),
                    crate::units::go_duration(cx.now.saturating_duration_since(since))
                );
            }
        }
    }

    fn on_conn(&mut self, cx: &mut GCx, key: Key, ready: Ready) {
        let Some(GoonEntry::Dial(d)) = cx.table.get_mut(key) else { return };
        if !d.established() {
            match check(&d.sock) {
                DialState::Pending => return,
                DialState::Failed(e) if completed_before(&d.sock, &e) => {
                    // The handshake completed and the peer reset before this wake-up: the
                    // connection was Established, and the reset closed it.
                    log::debug!("r{} t{key} established, then reset by the peer", cx.id);
                    self.establish(cx, key);
                    self.close_established(cx, key);
                    return;
                }
                DialState::Failed(e) => {
                    let cause = Cause::from_io(&e);
                    self.fail_dial(cx, key, cause);
                    return;
                }
                DialState::Connected => {
                    self.establish(cx, key);
                    if self.tls.is_some() {
                        self.tls_begin(cx, key);
                    } else {
                        self.ws_begin(cx, key);
                    }
                }
            }
            if self.tls.is_none()
                && self.ws.is_none()
                && self.traffic.is_none()
                && !ready.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR)
            {
                return;
            }
        }
        if !self.tls_ready(cx, key) {
            return;
        }
        let edge = ready.contains(Ready::READABLE) && ready.short_read_ends_edge();
        if self.ws.is_some() {
            return self.on_ws(cx, key, edge);
        }
        if self.traffic.is_some() {
            return self.on_traffic(cx, key, if edge { traffic::Recv::Edge } else { traffic::Recv::Drain });
        }
        // Established: goon never writes; read and drop, and notice the peer closing.
        let mut budget = READ_BUDGET;
        let Some(GoonEntry::Dial(d)) = cx.table.get_mut(key) else { return };
        loop {
            match d.sock.read(&mut self.scratch) {
                Ok(0) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        cx.defer(key);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reset after establishment counts as Closed, as in tcpgoon.
                Err(_) => break,
            }
        }
        self.close_established(cx, key);
    }

    /// Dialing → Established.
    fn establish(&mut self, cx: &mut GCx, key: Key) {
        let Some(GoonEntry::Dial(d)) = cx.table.get_mut(key) else { return };
        d.stage = d.stage.with_state(HELD);
        // With --tls the schedule starts once the handshake is done (`tls_ready`); with --ws,
        // once the upgrade is (`on_ws`).
        if let (Some(t), None, None) = (self.traffic.as_mut(), self.tls.as_ref(), self.ws.as_ref()) {
            d.flow = Some(Box::new(t.flow(cx.now)));
        }
        let rtt = cx.now.saturating_duration_since(d.since());
        cx.timers.cancel(key, TIMER_DIAL);
        self.counts.dialing -= 1;
        self.counts.established += 1;
        self.counts.established_total += 1;
        self.concurrency.up();
        self.connect.record(rtt);
    }

    /// Established → Closed (the peer's FIN or reset).
    fn close_established(&mut self, cx: &mut GCx, key: Key) {
        if let (Some(w), Some(GoonEntry::Dial(Dial { ws: Some(c), .. }))) = (self.ws.as_mut(), cx.table.get_mut(key)) {
            c.gone(&mut w.stats);
        }
        if cx.close(key).is_some() {
            self.counts.established -= 1;
            self.concurrency.down();
            self.counts.closed += 1;
        }
    }

    /// Every dial of the share started and resolved (with `--tls`, its handshake too; with
    /// `--ws`, its upgrade).
    fn resolved(&self) -> bool {
        self.counts.dialed >= self.share
            && self.counts.dialing == 0
            && self.tls.as_ref().is_none_or(|t| t.counts.handshaking == 0)
            && self.ws.as_ref().is_none_or(|w| w.stats.counts.upgrading == 0)
    }

    fn report(&mut self, dial_done: bool, exited: bool) -> Box<Update> {
        if let Some(t) = &self.tls {
            self.counts.tls = t.counts;
        }
        if let Some(t) = &self.traffic {
            self.counts.traffic = t.counts;
        }
        let mut counts = self.counts;
        counts.ws = self.ws.as_ref().map(|w| w.stats.counts).unwrap_or_default();
        let response = self.traffic.as_mut().filter(|t| !t.latency.is_empty()).map(|t| t.latency.take());
        Box::new(Update {
            tls_handshake: self.tls.as_mut().and_then(TlsPhase::take_latency),
            reactor: 0,
            counts,
            response,
            connect: (!self.connect.is_empty()).then(|| self.connect.take()),
            fail: (!self.fail.is_empty()).then(|| self.fail.take()),
            ws: self.ws.as_mut().and_then(WsRun::take),
            dial_done,
            exited,
        })
    }

    fn flush(&mut self, cx: &GCx) {
        let dial_done = self.resolved();
        let mut u = self.report(dial_done, false);
        u.reactor = cx.id;
        if let Err(e) = self.tx.try_send(u) {
            // Channel full: put the recorders back so no sample is lost.
            let u = e.into_inner();
            if let Some(l) = u.connect {
                self.connect.merge(&l);
            }
            if let Some(l) = u.fail {
                self.fail.merge(&l);
            }
            if let (Some(l), Some(t)) = (u.tls_handshake, self.tls.as_mut()) {
                t.put_back(&l);
            }
            if let (Some(l), Some(w)) = (u.ws, self.ws.as_mut()) {
                w.put_back(&l);
            }
            if let (Some(l), Some(t)) = (u.response, self.traffic.as_mut()) {
                t.latency.merge(&l);
            }
        } else if dial_done {
            self.dial_done_sent = true;
        }
    }
}

impl Handler for GoonReactor {
    type Cmd = GoonCmd;
    type Entry = GoonEntry;

    fn on_start(&mut self, cx: &mut GCx) -> io::Result<()> {
        // Each of the share's dials holds an entry until the run ends; the sink's connections
        // are bounded by its own limit.
        let share = self.share as usize;
        let sink = self.sink.as_ref().map_or(0, Sink::cap);
        cx.table.set_capacity(share.max(1) + sink, share);
        let clock = cx.handle()?;
        self.pacer.start(cx.now, clock);
        if let Some(sink) = self.sink.as_mut() {
            sink.register(cx)?;
        }
        if let Some(t) = self.traffic.as_mut() {
            t.start(cx);
        }
        self.dial_some(cx);
        Ok(())
    }

    fn on_ready(&mut self, cx: &mut GCx, key: Key, _sock: usize, ready: Ready) {
        if self.stopping {
            return;
        }
        match (cx.table.get(key), self.sink.as_mut()) {
            (Some(GoonEntry::Sink(_)), Some(sink)) => sink.on_ready(cx, key, ready),
            (Some(GoonEntry::Dial(_)), _) => {
                self.on_conn(cx, key, ready);
                if !self.dial_done_sent && self.resolved() {
                    // Tell the coordinator at once rather than at the next tick.
                    self.flush(cx);
                }
            }
            _ => {}
        }
    }

    fn on_handle(&mut self, cx: &mut GCx, h: Handle, ready: Ready) {
        if self.stopping {
            return;
        }
        if self.pacer.owns(h) {
            self.dial_some(cx);
        } else if let Some(sink) = self.sink.as_mut().filter(|s| s.owns(h)) {
            sink.on_handle(cx, ready);
        }
    }

    fn on_timer(&mut self, cx: &mut GCx, key: Key, kind: Kind) {
        if self.stopping {
            return;
        }
        if let (Some(GoonEntry::Sink(_)), Some(sink)) = (cx.table.get(key), self.sink.as_mut()) {
            sink.on_timer(cx, key, kind);
            return;
        }
        if kind == TIMER_MSG && matches!(cx.table.get(key), Some(GoonEntry::Dial(d)) if d.established()) {
            // A slot came due: send; the socket's bytes come with its own event.
            self.on_traffic(cx, key, traffic::Recv::No);
            return;
        }
        if kind == TIMER_WS && matches!(cx.table.get(key), Some(GoonEntry::Dial(d)) if d.established()) {
            self.on_ws_timer(cx, key);
            if !self.dial_done_sent && self.resolved() {
                self.flush(cx);
            }
            return;
        }
        if kind == TIMER_DIAL && matches!(cx.table.get(key), Some(GoonEntry::Dial(d)) if !d.established()) {
            self.fail_dial(cx, key, Cause::Timeout);
            if !self.dial_done_sent && self.resolved() {
                self.flush(cx);
            }
        } else if kind == TIMER_TLS {
            self.tls_timeout(cx, key);
        }
    }

    fn on_handle_timer(&mut self, cx: &mut GCx, h: Handle, kind: Kind) {
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

    fn on_command(&mut self, cx: &mut GCx, cmd: GoonCmd) {
        match cmd {
            GoonCmd::Stop if !self.stopping => {
                self.stopping = true;
                let dial_done = self.resolved();
                let mut u = self.report(dial_done, true);
                u.reactor = cx.id;
                // The coordinator waits for this message: a bounded blocking send is fine here.
                let _ = self.tx.send_timeout(u, Duration::from_secs(2));
            }
            GoonCmd::Stop => {}
            GoonCmd::Exit => self.exit = true,
            GoonCmd::EndTraffic(at) => {
                if let Some(t) = self.traffic.as_mut() {
                    t.end_at(at);
                }
            }
        }
    }

    fn on_tick(&mut self, cx: &mut GCx) {
        if !self.stopping {
            self.flush(cx);
        }
    }

    fn on_wake(&mut self, cx: &mut GCx) {
        if let Some(sink) = self.sink.as_mut() {
            sink.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.exit
    }

    fn on_exit(&mut self, cx: &mut GCx) {
        if let Some(sink) = self.sink.as_mut() {
            sink.close_all(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_peak_is_the_highest_simultaneous_count() {
        let c = Concurrency::default();
        c.up();
        c.up();
        c.down();
        c.up();
        c.up();
        assert_eq!(c.peak(), 3);
        c.down();
        c.down();
        c.down();
        assert_eq!(c.peak(), 3);
    }

    #[test]
    fn concurrency_peak_counts_every_thread() {
        // Each of 4 threads holds at most 2 at a time, and all hold 2 together at the barrier:
        // the peak is exactly 8, whatever the interleaving after it.
        let c = Arc::new(Concurrency::default());
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (c, b) = (c.clone(), barrier.clone());
                std::thread::spawn(move || {
                    c.up();
                    c.up();
                    b.wait();
                    c.down();
                    c.down();
                    for _ in 0..1000 {
                        c.up();
                        c.down();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.peak(), 8);
        assert_eq!(c.now.load(Ordering::Relaxed), 0);
    }
}

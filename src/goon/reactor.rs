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
use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::engine::{role_index, role_token, Cx, Handler, Ready, Slab};
use crate::net::connect::{check, completed_before, dial, DialOpts, DialState};
use crate::net::Cause;
use crate::stats::Latency;
use crate::target::Sink;

/// Dials started per loop turn at most.
pub const CONNECT_BATCH: usize = 128;
/// Bytes read (and dropped) from one connection per wake-up.
pub const READ_BUDGET: usize = 64 * 1024;
/// Pause after a dial failed for want of ports or descriptors.
pub const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(50);
const DIAL_TAG: u8 = 0;
const TIMER_DIAL: u8 = 1;
const TIMER_PACE: u8 = 2;
const PACE: usize = 0;

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
    }
}

/// Reactor → coordinator.
pub struct Update {
    pub reactor: usize,
    pub counts: Counts,
    /// Connect times and times-to-error recorded since the last update.
    pub connect: Option<Latency>,
    pub fail: Option<Latency>,
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
}

#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as the loop allows.
    Burst,
    /// Dial k is due at `t0 + offset + k·period`.
    Every { offset: Duration, period: Duration },
}

struct Dial {
    sock: TcpStream,
    since: Instant,
    established: bool,
}

pub struct GoonReactor {
    target: SocketAddr,
    share: u64,
    pace: Pace,
    start: Option<Instant>,
    dial_timeout: Duration,
    opts: DialOpts,
    sources: Vec<IpAddr>,
    next_source: usize,
    conns: Slab<Dial>,
    counts: Counts,
    connect: Latency,
    fail: Latency,
    backoff_until: Option<Instant>,
    pace_armed: Option<Instant>,
    tx: Sender<Update>,
    dial_done_sent: bool,
    /// Counts frozen at `Stop`; events after it are no longer counted.
    stopping: bool,
    exit: bool,
    scratch: Box<[u8]>,
    sink: Option<Sink>,
    concurrency: Arc<Concurrency>,
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
}

impl GoonReactor {
    pub fn new(plan: ReactorPlan, tx: Sender<Update>, sink: Option<Sink>) -> GoonReactor {
        let share = plan.share as usize;
        GoonReactor {
            target: plan.target,
            share: plan.share,
            pace: plan.pace,
            start: None,
            dial_timeout: plan.dial_timeout,
            opts: plan.opts,
            next_source: plan.source_offset,
            sources: plan.sources,
            // Each of the share's connections holds one slot until the run ends.
            conns: Slab::new(DIAL_TAG, share.max(1), share),
            counts: Counts::default(),
            connect: Latency::new(),
            fail: Latency::new(),
            backoff_until: None,
            pace_armed: None,
            tx,
            dial_done_sent: false,
            stopping: false,
            exit: false,
            scratch: vec![0u8; READ_BUDGET].into_boxed_slice(),
            sink,
            concurrency: plan.concurrency,
        }
    }

    fn due(&self, k: u64) -> Option<Instant> {
        match self.pace {
            Pace::Burst => None,
            Pace::Every { offset, period } => Some(self.start? + offset + period.mul_f64(k as f64)),
        }
    }

    /// Starts the dials that are due, at most `CONNECT_BATCH`.
    fn dial_some(&mut self, cx: &mut Cx) {
        if self.stopping {
            return;
        }
        self.start.get_or_insert(cx.now);
        if let Some(until) = self.backoff_until {
            if cx.now < until {
                self.arm_pace(cx, until);
                return;
            }
            self.backoff_until = None;
        }
        for _ in 0..CONNECT_BATCH {
            if self.counts.dialed >= self.share {
                return;
            }
            if let Some(due) = self.due(self.counts.dialed) {
                if due > cx.now {
                    self.arm_pace(cx, due);
                    return;
                }
            }
            if !self.dial_one(cx) {
                let until = cx.now + EXHAUSTION_BACKOFF;
                self.backoff_until = Some(until);
                self.arm_pace(cx, until);
                return;
            }
        }
        if self.counts.dialed < self.share {
            cx.defer(role_token(PACE));
        }
    }

    fn arm_pace(&mut self, cx: &mut Cx, at: Instant) {
        // One outstanding pace timer at a time (keeps the heap bounded).
        if self.pace_armed.is_some_and(|a| a <= at) {
            return;
        }
        if cx.arm(at, role_token(PACE), TIMER_PACE) {
            self.pace_armed = Some(at);
        }
    }

    /// Starts one dial; false when the failure means "back off" (no ports, no fds).
    fn dial_one(&mut self, cx: &mut Cx) -> bool {
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
            Ok(sock) => {
                let Ok(token) = self.conns.insert(Dial { sock, since, established: false }) else {
                    self.record_error(cx, Cause::NoFds, since);
                    return true;
                };
                let reg = match self.conns.get_mut(token) {
                    Some(d) => cx.registry.register(&mut d.sock, token, Interest::READABLE | Interest::WRITABLE),
                    None => return true,
                };
                if let Err(e) = reg {
                    self.conns.remove(token);
                    self.record_error(cx, Cause::from_io(&e), since);
                    return !matches!(Cause::from_io(&e), Cause::NoFds);
                }
                self.counts.dialing += 1;
                cx.arm(since + self.dial_timeout, token, TIMER_DIAL);
                true
            }
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

    fn record_error(&mut self, cx: &Cx, cause: Cause, since: Instant) {
        self.counts.error += 1;
        self.counts.errors[cause.index()] += 1;
        self.fail.record(cx.now.saturating_duration_since(since));
    }

    /// A dialing socket failed or timed out.
    fn fail_dial(&mut self, cx: &mut Cx, token: Token, cause: Cause) {
        if let Some(d) = self.conns.remove(token) {
            self.counts.dialing -= 1;
            self.record_error(cx, cause, d.since);
            if log::log_enabled!(log::Level::Debug) {
                let from = d.sock.local_addr().map_or_else(|e| format!("? ({e})"), |a| a.to_string());
                log::debug!(
                    "r{} dial {} from {from} failed: {} after {}",
                    cx.id,
                    self.target,
                    cause.name(),
                    crate::units::go_duration(cx.now.saturating_duration_since(d.since))
                );
            }
        }
    }

    fn on_conn(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        let Some(d) = self.conns.get_mut(token) else { return };
        if !d.established {
            match check(&d.sock) {
                DialState::Pending => return,
                DialState::Failed(e) if completed_before(&d.sock, &e) => {
                    // The handshake completed and the peer reset before this wake-up: the
                    // connection was Established, and the reset closed it.
                    log::debug!("r{} t{:x} established, then reset by the peer", cx.id, token.0);
                    self.establish(cx, token);
                    self.close_established(token);
                    return;
                }
                DialState::Failed(e) => {
                    let cause = Cause::from_io(&e);
                    self.fail_dial(cx, token, cause);
                    return;
                }
                DialState::Connected => self.establish(cx, token),
            }
            if !ready.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
                return;
            }
        }
        // Established: goon never writes; read and drop, and notice the peer closing.
        let mut budget = READ_BUDGET;
        let Some(d) = self.conns.get_mut(token) else { return };
        loop {
            match d.sock.read(&mut self.scratch) {
                Ok(0) => break,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        cx.defer(token);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reset after establishment counts as Closed, as in tcpgoon.
                Err(_) => break,
            }
        }
        self.close_established(token);
    }

    /// Dialing → Established.
    fn establish(&mut self, cx: &Cx, token: Token) {
        let Some(d) = self.conns.get_mut(token) else { return };
        d.established = true;
        let rtt = cx.now.saturating_duration_since(d.since);
        self.counts.dialing -= 1;
        self.counts.established += 1;
        self.counts.established_total += 1;
        self.concurrency.up();
        self.connect.record(rtt);
    }

    /// Established → Closed (the peer's FIN or reset).
    fn close_established(&mut self, token: Token) {
        if self.conns.remove(token).is_some() {
            self.counts.established -= 1;
            self.concurrency.down();
            self.counts.closed += 1;
        }
    }

    fn report(&mut self, dial_done: bool, exited: bool) -> Update {
        Update {
            reactor: 0,
            counts: self.counts,
            connect: (!self.connect.is_empty()).then(|| self.connect.take()),
            fail: (!self.fail.is_empty()).then(|| self.fail.take()),
            dial_done,
            exited,
        }
    }

    fn flush(&mut self, cx: &Cx) {
        let dial_done = self.counts.dialed >= self.share && self.counts.dialing == 0;
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
        } else if dial_done {
            self.dial_done_sent = true;
        }
    }
}

impl Handler for GoonReactor {
    type Cmd = GoonCmd;

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        cx.timers.set_capacity(self.share as usize + 1024);
        if let Some(sink) = self.sink.as_mut() {
            sink.register(cx)?;
        }
        self.start = Some(cx.now);
        self.dial_some(cx);
        Ok(())
    }

    fn on_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if self.stopping {
            return;
        }
        if role_index(token) == Some(PACE) {
            self.dial_some(cx);
            return;
        }
        if let Some(sink) = self.sink.as_mut() {
            if sink.owns(token) {
                sink.on_ready(cx, token, ready);
                return;
            }
        }
        self.on_conn(cx, token, ready);
        if !self.dial_done_sent && self.counts.dialed >= self.share && self.counts.dialing == 0 {
            // Tell the coordinator at once rather than at the next tick.
            self.flush(cx);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        if self.stopping {
            return;
        }
        // Route by token first: the embedded sink's timer kinds overlap goon's.
        if role_index(token) == Some(PACE) {
            if kind == TIMER_PACE {
                self.pace_armed = None;
                self.dial_some(cx);
            }
            return;
        }
        if let Some(sink) = self.sink.as_mut() {
            if sink.owns(token) {
                sink.on_timer(cx, token, kind);
                return;
            }
        }
        if kind == TIMER_DIAL && self.conns.get(token).is_some_and(|d| !d.established) {
            self.fail_dial(cx, token, Cause::Timeout);
            if !self.dial_done_sent && self.counts.dialed >= self.share && self.counts.dialing == 0 {
                self.flush(cx);
            }
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: GoonCmd) {
        match cmd {
            GoonCmd::Stop if !self.stopping => {
                self.stopping = true;
                let dial_done = self.counts.dialed >= self.share && self.counts.dialing == 0;
                let mut u = self.report(dial_done, true);
                u.reactor = cx.id;
                // The coordinator waits for this message: a bounded blocking send is fine here.
                let _ = self.tx.send_timeout(u, Duration::from_secs(2));
            }
            GoonCmd::Stop => {}
            GoonCmd::Exit => self.exit = true,
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        if !self.stopping {
            self.flush(cx);
        }
    }

    fn on_wake(&mut self, cx: &mut Cx) {
        if let Some(sink) = self.sink.as_mut() {
            sink.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.exit
    }

    fn on_exit(&mut self, cx: &mut Cx) {
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

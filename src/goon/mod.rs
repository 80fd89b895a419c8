//! `netforge goon`: the connection stressor (tcpgoon's interface and output, then more).
//!
//! The coordinator (this module, on the calling thread) resolves the target once, runs the
//! preflight, splits the N connections over the reactors (`reactor.rs`), prints the interval line
//! from the reactors' latest counts, ends the run (all dials resolved, then `--hold`; or a
//! signal) and prints the final report (`report.rs`).

pub(crate) mod args;
pub mod preflight;
pub mod reactor;
pub mod report;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::engine::accept::Admission;
use crate::engine::coordinator::{self, Ctl, Flow, Interval, Reports, Role};
use crate::engine::Pool;
use crate::error::Error;
use crate::net::connect::DialOpts;
use crate::net::tune::SockBufs;
use crate::stats::Latency;
use crate::sys::Signal;
use crate::target::{Mode, Sink};
use crate::units::MAX_DURATION;
use reactor::{Concurrency, Counts, GoonCmd, GoonReactor, Pace, ReactorPlan, Update};

/// Where reactors report.
const UPDATE_QUEUE_PER_REACTOR: usize = 64;
/// Reactor tick (stats flush period).
pub const TICK: Duration = Duration::from_millis(100);
/// How long the coordinator waits for reactors to report after `Stop`.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest wait of the coordinator loop when no status line is due (`-i 0`).
const IDLE_WAKE: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct GoonConfig {
    /// The host as the user wrote it (for the report header).
    pub host: String,
    pub target: SocketAddr,
    pub connections: u64,
    pub sleep: Duration,
    /// Connections per second; overrides `sleep` when set.
    pub rate: Option<f64>,
    pub dial_timeout: Duration,
    pub interval: Duration,
    pub hold: Duration,
    pub sources: Vec<IpAddr>,
    pub linger_rst: bool,
    pub threads: usize,
    pub(crate) bufs: SockBufs,
    pub json: Option<PathBuf>,
    /// Stressing the in-process sink (no host/port given): its listeners, one per reactor.
    pub builtin: bool,
    /// Each reactor's own slice of `ip_local_port_range` (IP_LOCAL_PORT_RANGE), one per
    /// reactor; empty where the kernel lacks the option or the range is unreadable, and the
    /// kernel's own search is used.
    pub port_slices: Vec<(u16, u16)>,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct GoonReport {
    pub counts: Counts,
    pub not_initiated: u64,
    pub max_established: u64,
    pub connect: Latency,
    pub fail: Latency,
    /// From start until every dial was started and resolved (None if interrupted first).
    pub dial_phase: Option<Duration>,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub rss_start_kib: u64,
    pub rss_dial_done_kib: Option<u64>,
    pub rss_peak_kib: u64,
}

impl GoonReport {
    /// tcpgoon's exit status: 1 if some connection never finished dialing, else 2 if any
    /// errored, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.not_initiated > 0 || self.counts.dialing > 0 {
            1
        } else if self.counts.error > 0 {
            2
        } else {
            0
        }
    }
}

/// The tcpgoon interval line.
pub fn status_line(total: u64, c: &Counts, not_initiated: u64) -> String {
    format!(
        "Total: {total}, Dialing: {}, Established: {}, Closed: {}, Error: {}, NotInitiated: {not_initiated}",
        c.dialing, c.established, c.closed, c.error
    )
}

/// Splits `n` over `t` reactors: the first `n % t` get one more.
pub fn shares(n: u64, t: usize) -> Vec<u64> {
    let t = t.max(1) as u64;
    (0..t).map(|i| n / t + u64::from(i < n % t)).collect()
}

fn pace_for(cfg: &GoonConfig, reactor: usize, threads: usize, share: u64) -> Pace {
    if let Some(rate) = cfg.rate {
        // This reactor's part of the global rate, proportional to its share.
        let r_i = rate * share as f64 / cfg.connections.max(1) as f64;
        if r_i <= 0.0 {
            return Pace::Burst;
        }
        // `--rate` is checked to 0.001..=10^7 where it is parsed; the conversions still cannot
        // panic (a value past MAX_DURATION, NaN or infinity becomes MAX_DURATION).
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(MAX_DURATION).min(MAX_DURATION);
        let period = secs(1.0 / r_i);
        // Stagger reactors so the global stream is even.
        let offset = secs(reactor as f64 / rate);
        return Pace::Every { offset, period };
    }
    if cfg.sleep.is_zero() {
        return Pace::Burst;
    }
    Pace::Every { offset: cfg.sleep * reactor as u32, period: cfg.sleep * threads as u32 }
}

/// Runs the stress test; `out` receives the interval lines and the report.
pub fn run(cfg: &GoonConfig, signals: &Receiver<Signal>, out: &mut dyn Write) -> Result<GoonReport, Error> {
    let threads = cfg.threads.max(1).min(cfg.connections.max(1) as usize);
    let started = Instant::now();
    let rss_start_kib = crate::sys::rss_kib().map_or(0, |r| r.0);
    let (tx, rx) = crossbeam_channel::bounded::<Update>(threads * UPDATE_QUEUE_PER_REACTOR);
    let mut sinks: Vec<Option<Sink>> = (0..threads).map(|_| None).collect();
    let mut target = cfg.target;
    let mut gate = None;
    if cfg.builtin {
        let (addr, listeners) =
            crate::net::listen::reuseport_group(cfg.target, threads, crate::net::listen::LISTEN_BACKLOG)
                .map_err(|source| Error::bind("the built-in sink", cfg.target, source, None))?;
        target = addr;
        // One limit for every reactor's sink: the kernel spreads goon's dials over the sinks'
        // listeners by hash, not by the dialing reactor.
        let cap = (cfg.connections as usize).saturating_add(64 * threads);
        let g = Admission::new(cap, threads, None);
        for (slot, l) in sinks.iter_mut().zip(listeners) {
            *slot = Some(Sink::new(l, Mode::Hold, g.clone(), SockBufs::default()));
        }
        gate = Some(g);
        let _ = writeln!(
            out,
            "netforge goon: no target given; stressing the built-in sink on {addr} (mode hold, in this process)"
        );
    }
    let opts = DialOpts { bufs: cfg.bufs, linger_rst: cfg.linger_rst, ..DialOpts::default() };
    let share = shares(cfg.connections, threads);
    let concurrency = Arc::new(Concurrency::default());
    let handlers: Vec<GoonReactor> = sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| {
            // Disjoint port slices: no two reactors search the same ports (see net::connect).
            let port_range = if cfg.port_slices.len() == threads { Some(cfg.port_slices[i]) } else { None };
            let plan = ReactorPlan {
                target,
                share: share[i],
                pace: pace_for(cfg, i, threads, share[i]),
                dial_timeout: cfg.dial_timeout,
                opts: DialOpts { port_range, ..opts },
                sources: cfg.sources.clone(),
                source_offset: i,
                concurrency: concurrency.clone(),
            };
            GoonReactor::new(plan, tx.clone(), sink)
        })
        .collect();
    drop(tx);

    let total = cfg.connections;
    // tcpgoon's first status line, before any dial; `-i 0` prints no status lines at all.
    if !cfg.interval.is_zero() {
        let _ = writeln!(out, "{}", status_line(total, &Counts::default(), total));
        let _ = out.flush();
    }
    let pool = Pool::spawn("goon", handlers, TICK)?;
    if let Some(g) = &gate {
        g.set_wakers(pool.wakers());
    }

    let mut role = Coordinated {
        pool,
        total,
        hold: cfg.hold,
        started,
        reports: Reports::new(threads),
        dial_done: vec![false; threads],
        connect: Latency::new(),
        fail: Latency::new(),
        dial_phase: None,
        rss_dial_done_kib: None,
        hold_until: None,
        interrupted: false,
        // `-i 0`: no periodic lines, only the final report.
        interval: Interval::new(started, cfg.interval),
    };
    coordinator::run(&mut role, &rx, signals, out);
    let Coordinated { pool, reports, connect, fail, dial_phase, rss_dial_done_kib, interrupted, .. } = role;
    let counts = reports.total();
    let report = GoonReport {
        not_initiated: total - counts.dialed.min(total),
        counts,
        max_established: concurrency.peak(),
        connect,
        fail,
        dial_phase,
        elapsed: started.elapsed(),
        interrupted,
        rss_start_kib,
        rss_dial_done_kib,
        rss_peak_kib: crate::sys::rss_kib().map_or(0, |r| r.1),
    };
    report::print(cfg, &report, target, out);
    if let Some(path) = &cfg.json {
        let json = report::json(cfg, &report, target, threads);
        std::fs::write(path, json)
            .map_err(|e| Error::Usage(format!("--json {}: cannot write: {e}", path.display())))?;
    }
    // Every reactor has reported (or the grace ran out): now they may close and end.
    pool.broadcast(|_| GoonCmd::Exit);
    pool.join();
    Ok(report)
}

/// The coordinator's side of `goon`: interval lines, the end of the dial phase, the hold.
struct Coordinated {
    pool: Pool<GoonCmd>,
    total: u64,
    hold: Duration,
    started: Instant,
    reports: Reports<Counts>,
    dial_done: Vec<bool>,
    connect: Latency,
    fail: Latency,
    dial_phase: Option<Duration>,
    rss_dial_done_kib: Option<u64>,
    hold_until: Option<Instant>,
    interrupted: bool,
    interval: Interval,
}

impl Coordinated {
    fn line(&self) -> String {
        let c = self.reports.total();
        status_line(self.total, &c, self.total - c.dialed.min(self.total))
    }

    fn stop(&mut self, ctl: &mut Ctl, now: Instant) {
        self.pool.broadcast(|_| GoonCmd::Stop);
        ctl.stop(Some(now + STOP_GRACE));
    }
}

impl Role for Coordinated {
    type Report = Update;

    const MAX_WAIT: Duration = Duration::from_millis(500);

    fn wake_at(&self, ctl: &Ctl) -> Option<Instant> {
        let mut wake = self.interval.next().unwrap_or_else(|| Instant::now() + IDLE_WAKE);
        if let Some(until) = self.hold_until.filter(|_| !ctl.stopping()) {
            wake = wake.min(until);
        }
        Some(wake)
    }

    fn on_report(&mut self, u: Update, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        if let Some(l) = &u.connect {
            self.connect.merge(l);
        }
        if let Some(l) = &u.fail {
            self.fail.merge(l);
        }
        self.dial_done[u.reactor] |= u.dial_done;
        self.reports.set(u.reactor, u.counts, u.exited);
        if self.hold_until.is_none() && self.dial_done.iter().all(|d| *d) {
            let now = Instant::now();
            self.dial_phase = Some(now - self.started);
            self.rss_dial_done_kib = crate::sys::rss_kib().map(|r| r.0);
            self.hold_until = Some(now + self.hold);
        }
        Flow::Continue
    }

    fn on_turn(&mut self, now: Instant, ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        if self.interval.due(now) {
            let _ = writeln!(out, "{}", self.line());
            let _ = out.flush();
        }
        if self.reports.all_done() {
            return Flow::Exit;
        }
        if let Some(until) = self.hold_until.filter(|_| !ctl.stopping()) {
            // Nothing left to hold (the peer closed everything): the hold ends early.
            let c = self.reports.total();
            if now >= until || (c.established == 0 && c.dialing == 0) {
                self.stop(ctl, now);
            }
        }
        Flow::Continue
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        self.interrupted = true;
        self.stop(ctl, Instant::now());
    }

    fn on_user1(&mut self, out: &mut dyn Write) {
        let _ = writeln!(out, "{}", self.line());
    }

    fn on_late(&mut self) {
        log::warn!("goon: reactors did not report within {STOP_GRACE:?} of stop; reporting what arrived");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_n() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 4), vec![1, 1, 0, 0]);
        for (n, t) in [(100_000u64, 16usize), (1, 1), (19_000, 2), (7, 7)] {
            assert_eq!(shares(n, t).iter().sum::<u64>(), n);
        }
    }

    #[test]
    fn interval_line_is_tcpgoons() {
        let c = Counts { dialed: 3, dialing: 1, established: 1, closed: 0, error: 1, ..Default::default() };
        assert_eq!(status_line(4, &c, 1), "Total: 4, Dialing: 1, Established: 1, Closed: 0, Error: 1, NotInitiated: 1");
    }

    #[test]
    fn exit_codes_follow_tcpgoon() {
        let mut r = GoonReport {
            counts: Counts::default(),
            not_initiated: 0,
            max_established: 0,
            connect: Latency::new(),
            fail: Latency::new(),
            dial_phase: None,
            elapsed: Duration::ZERO,
            interrupted: false,
            rss_start_kib: 0,
            rss_dial_done_kib: None,
            rss_peak_kib: 0,
        };
        r.counts.closed = 3;
        assert_eq!(r.exit_code(), 0, "closed counts as success");
        r.counts.error = 1;
        assert_eq!(r.exit_code(), 2);
        r.counts.dialing = 1;
        assert_eq!(r.exit_code(), 1);
        r.counts.dialing = 0;
        r.not_initiated = 2;
        assert_eq!(r.exit_code(), 1);
    }
}

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

use crossbeam_channel::{select, Receiver};

use crate::error::Error;
use crate::net::accept::Admission;
use crate::net::connect::DialOpts;
use crate::net::tune::SockBufs;
use crate::reactor::Pool;
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
            let plan = ReactorPlan {
                target,
                share: share[i],
                pace: pace_for(cfg, i, threads, share[i]),
                dial_timeout: cfg.dial_timeout,
                opts,
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

    let mut per: Vec<Counts> = vec![Counts::default(); threads];
    let mut dial_done = vec![false; threads];
    let mut exited = vec![false; threads];
    let mut connect = Latency::new();
    let mut fail = Latency::new();
    let mut dial_phase = None;
    let mut rss_dial_done_kib = None;
    let mut hold_until: Option<Instant> = None;
    let mut stop_sent_at: Option<Instant> = None;
    let mut interrupted = false;
    // `-i 0`: no periodic lines, only the final report.
    let mut next_print = (!cfg.interval.is_zero()).then(|| started + cfg.interval);

    let sum = |per: &[Counts]| {
        let mut c = Counts::default();
        for p in per {
            c.add(p);
        }
        c
    };

    loop {
        let now = Instant::now();
        if let Some(at) = next_print.as_mut().filter(|at| now >= **at) {
            let c = sum(&per);
            let _ = writeln!(out, "{}", status_line(total, &c, total - c.dialed.min(total)));
            let _ = out.flush();
            while *at <= now {
                *at += cfg.interval;
            }
        }
        if exited.iter().all(|e| *e) {
            break;
        }
        if stop_sent_at.is_none() {
            if let Some(until) = hold_until {
                // Nothing left to hold (the peer closed everything): the hold ends early.
                let c = sum(&per);
                if now >= until || (c.established == 0 && c.dialing == 0) {
                    pool.broadcast(|_| GoonCmd::Stop);
                    stop_sent_at = Some(now);
                }
            }
        } else if stop_sent_at.is_some_and(|t| now.duration_since(t) > STOP_GRACE) {
            log::warn!("goon: reactors did not report within {STOP_GRACE:?} of stop; reporting what arrived");
            break;
        }
        let mut wake = next_print.unwrap_or(now + IDLE_WAKE);
        if let Some(until) = hold_until {
            if stop_sent_at.is_none() {
                wake = wake.min(until);
            }
        }
        let wait = wake.saturating_duration_since(now).min(Duration::from_millis(500));
        select! {
            recv(rx) -> msg => match msg {
                Ok(u) => {
                    per[u.reactor] = u.counts;
                    if let Some(l) = &u.connect { connect.merge(l); }
                    if let Some(l) = &u.fail { fail.merge(l); }
                    dial_done[u.reactor] |= u.dial_done;
                    exited[u.reactor] |= u.exited;
                    if hold_until.is_none() && dial_done.iter().all(|d| *d) {
                        let now = Instant::now();
                        dial_phase = Some(now - started);
                        rss_dial_done_kib = crate::sys::rss_kib().map(|r| r.0);
                        hold_until = Some(now + cfg.hold);
                    }
                }
                Err(_) => break,
            },
            recv(signals) -> sig => match sig {
                Ok(Signal::Interrupt) | Ok(Signal::Terminate) => {
                    if stop_sent_at.is_some() {
                        // Second signal: report what we have, now.
                        break;
                    }
                    interrupted = true;
                    pool.broadcast(|_| GoonCmd::Stop);
                    stop_sent_at = Some(Instant::now());
                }
                Ok(Signal::User1) => {
                    let c = sum(&per);
                    let _ = writeln!(out, "{}", status_line(total, &c, total - c.dialed.min(total)));
                }
                _ => {}
            },
            default(wait) => {}
        }
    }
    let counts = sum(&per);
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

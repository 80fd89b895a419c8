//! `netforge goon --probe-idle LIST`: idle-timeout discovery. One group of connections per
//! duration in LIST is dialed and held idle; when a connection has been idle for its group's
//! duration it is sent a probe (`--probe-message`, one line feed by default) and classified as
//! alive, reset, closed or silently dropped (`result::probe::verdict`, shared with `report
//! merge`). The final report adds one line per
//! group and the verdict, which names the interval where idle connections start to be lost and
//! how ("a middlebox drops idle connections between 120 s and 350 s, silently").
//!
//! The coordinator here mirrors goon's (status lines, samples, `--json-stream`, the two-phase
//! stop), with its own reactor handler (`reactor.rs`) so goon's connect-and-hold path is
//! untouched. The run ends when every connection is classified (or its dial failed): at most
//! the dial phase (pacing plus `--dial-timeout`) + the longest idle time + `--probe-deadline`;
//! a safety deadline [`SLACK`] past that stops it in any case. SIGINT/SIGTERM stop it at once
//! with the verdict of the groups probed so far.

pub(crate) mod args;
pub mod reactor;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::reactor::{Concurrency, Counts, GoonCmd};
use super::report::RunFigures;
use super::{pace_for, report, shares, status_line, GoonConfig, GoonReport, Sampler, Stream};
use super::{SAMPLE_DEFAULT, STOP_GRACE, TICK, UPDATE_QUEUE_PER_REACTOR};
use crate::engine::accept::Admission;
use crate::engine::coordinator::{self, Ctl, Flow, Interval, Reports, Role};
use crate::engine::Pool;
use crate::error::Error;
use crate::net::connect::DialOpts;
use crate::net::tune::SockBufs;
pub use crate::result::probe::ProbeOutcome;
use crate::sys::Signal;
use crate::target::{Mode, Sink};
use args::ProbeConfig;
use reactor::{ProbePlan, ProbeReactor, ProbeUpdate, Snap};

/// How far past its expected end a run is stopped whatever its state.
pub const SLACK: Duration = Duration::from_secs(10);

/// When the run should be over at the latest: the dial phase (pacing, then the dial timeout),
/// the longest idle time, the probe deadline.
pub fn expected_span(cfg: &GoonConfig, p: &ProbeConfig) -> Duration {
    let n = cfg.connections as f64;
    let pacing = match cfg.rate {
        Some(r) => n / r,
        None => n * cfg.sleep.as_secs_f64(),
    };
    let pacing = Duration::try_from_secs_f64(pacing).unwrap_or(crate::units::MAX_DURATION);
    let longest = p.idle.last().copied().unwrap_or_default();
    pacing.saturating_add(cfg.dial_timeout).saturating_add(longest).saturating_add(p.deadline)
}

/// Runs the probe; `out` receives the status lines, progress lines and the report.
pub fn run(
    cfg: &GoonConfig,
    p: &ProbeConfig,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) -> Result<(GoonReport, ProbeOutcome), Error> {
    let total: u64 = p.per_group.iter().sum();
    let threads = cfg.threads.max(1).min(total.max(1) as usize);
    let sample_interval = if cfg.interval.is_zero() { SAMPLE_DEFAULT } else { cfg.interval };
    let mut stream = match &cfg.json_stream {
        None => None,
        Some(to) => Some(Stream::open(to, cfg)?),
    };
    let rss_start_kib = crate::sys::rss_kib().map_or(0, |r| r.0);
    let (tx, rx) = crossbeam_channel::bounded::<Box<ProbeUpdate>>(threads * UPDATE_QUEUE_PER_REACTOR);
    let mut sinks: Vec<Option<Sink>> = (0..threads).map(|_| None).collect();
    let mut target = cfg.target;
    let mut gate = None;
    if cfg.builtin {
        let (addr, listeners) =
            crate::net::listen::reuseport_group(cfg.target, threads, crate::net::listen::LISTEN_BACKLOG)
                .map_err(|source| Error::bind("the built-in sink", cfg.target, source, None))?;
        target = addr;
        let cap = (total as usize).saturating_add(64 * threads);
        let g = Admission::new(cap, threads, None);
        for (slot, l) in sinks.iter_mut().zip(listeners) {
            *slot = Some(Sink::new(l, Mode::Echo, g.clone(), SockBufs::default()));
        }
        gate = Some(g);
        let _ = writeln!(
            out,
            "netforge goon: no target given; probing the built-in sink on {addr} (mode echo, in this process)"
        );
    }
    let opts = DialOpts { bufs: cfg.bufs, linger_rst: cfg.linger_rst, nodelay: true, ..DialOpts::default() };
    // Each group's connections split over the reactors.
    let split: Vec<Vec<u64>> = p.per_group.iter().map(|n| shares(*n, threads)).collect();
    let concurrency = Arc::new(Concurrency::default());
    let handlers: Vec<ProbeReactor> = sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| {
            let port_range = if cfg.port_slices.len() == threads { Some(cfg.port_slices[i]) } else { None };
            let per_group: Vec<u64> = split.iter().map(|s| s[i]).collect();
            let share = per_group.iter().sum();
            let plan = ProbePlan {
                target,
                idle: p.idle.clone(),
                per_group,
                deadline: p.deadline,
                message: p.message.clone(),
                pace: pace_for(cfg, i, threads, share),
                dial_timeout: cfg.dial_timeout,
                opts: DialOpts { port_range, ..opts },
                sources: cfg.sources.clone(),
                source_offset: i,
                concurrency: concurrency.clone(),
            };
            ProbeReactor::new(plan, tx.clone(), sink)
        })
        .collect();
    drop(tx);

    if let Some(s) = cfg.shard {
        let _ = writeln!(
            out,
            "netforge goon: shard {}/{}: {} of {} connections",
            s.index, s.count, total, cfg.fleet_connections
        );
    }
    if let Some(at) = cfg.start_at {
        super::args::check_start_at(at, SystemTime::now()).map_err(|e| Error::Usage(format!("--start-at: {e}")))?;
        if !super::wait_until(at, signals, out) {
            let _ = writeln!(out, "netforge goon: interrupted while waiting for --start-at; nothing was dialed");
            let report = GoonReport::nothing_dialed(total, sample_interval, rss_start_kib);
            let outcome = ProbeOutcome::new(&p.idle, p.deadline, p.message.len(), &[]);
            finish(cfg, &report, &outcome, target, threads, stream.as_mut(), out)?;
            return Ok((report, outcome));
        }
    }
    let span = expected_span(cfg, p);
    let _ = writeln!(
        out,
        "netforge goon: probing idle timeouts: {} groups of {} connections idle for {}; probe deadline {}; done within {}",
        p.idle.len(),
        p.per_group.iter().map(u64::to_string).collect::<Vec<_>>().join("/"),
        p.idle.iter().map(|d| crate::units::go_duration(*d)).collect::<Vec<_>>().join(", "),
        crate::units::go_duration(p.deadline),
        crate::units::go_duration(span),
    );
    let started = Instant::now();
    let started_wall = SystemTime::now();
    if let Some(st) = stream.as_mut() {
        st.event(&report::stream_start(cfg, target, threads, started_wall, sample_interval));
    }
    if !cfg.interval.is_zero() {
        let _ = writeln!(out, "{}", status_line(total, &Counts::default(), total));
        let _ = out.flush();
    }
    let pool = Pool::spawn("probe", handlers, TICK)?;
    if let Some(g) = &gate {
        g.set_wakers(pool.wakers());
    }
    let mut role = Coordinated {
        pool,
        cfg: p.clone(),
        run: RunFigures::new(total, started, started_wall, sample_interval, rss_start_kib),
        deadline: started + span + SLACK,
        reports: Reports::new(threads),
        dial_done: vec![false; threads],
        done: vec![false; threads],
        announced: vec![false; p.idle.len()],
        interval: Interval::new(started, cfg.interval),
        sampler: Sampler::new(cfg, started, sample_interval, concurrency.clone(), stream.take()),
    };
    coordinator::run(&mut role, &rx, signals, out);
    let Coordinated { pool, run, reports, sampler, .. } = role;
    let snap = reports.total();
    let (report, st) = run.into_report(snap.counts, concurrency.peak(), sampler);
    stream = st;
    let outcome = ProbeOutcome::new(&p.idle, p.deadline, p.message.len(), &snap.groups);
    let written = finish(cfg, &report, &outcome, target, threads, stream.as_mut(), out);
    pool.broadcast(|_| GoonCmd::Exit);
    pool.join();
    written?;
    Ok((report, outcome))
}

/// goon's final report and JSON with the probe added: its lines after tcpgoon's block, its
/// object under `probe`.
fn finish(
    cfg: &GoonConfig,
    r: &GoonReport,
    outcome: &ProbeOutcome,
    target: SocketAddr,
    threads: usize,
    stream: Option<&mut Stream>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    report::print(cfg, r, target, out);
    let _ = out.write_all(outcome.text().as_bytes());
    let _ = out.flush();
    crate::goon::write_outputs(cfg, r, target, threads, stream, &|o| {
        o.insert("probe".into(), outcome.to_json());
    })
}

/// The coordinator's side of the probe.
struct Coordinated {
    pool: Pool<GoonCmd>,
    cfg: ProbeConfig,
    run: RunFigures,
    /// Past this the run is stopped whatever its state.
    deadline: Instant,
    reports: Reports<Snap>,
    dial_done: Vec<bool>,
    done: Vec<bool>,
    /// Groups whose result line was printed.
    announced: Vec<bool>,
    interval: Interval,
    sampler: Sampler,
}

impl Coordinated {
    fn line(&self) -> String {
        let c = self.reports.total().counts;
        self.run.status_line(&c)
    }

    fn stop(&mut self, ctl: &mut Ctl, now: Instant) {
        self.pool.broadcast(|_| GoonCmd::Stop);
        ctl.stop(Some(now + STOP_GRACE));
    }
}

impl Role for Coordinated {
    /// Boxed for the same reason as goon's `Update`: the channel's slots are written when it
    /// is made.
    type Report = Box<ProbeUpdate>;

    const MAX_WAIT: Duration = Duration::from_millis(500);

    fn wake_at(&self, ctl: &Ctl) -> Option<Instant> {
        let mut wake = self.interval.next().unwrap_or(self.sampler.next).min(self.sampler.next);
        if !ctl.stopping() {
            wake = wake.min(self.deadline);
        }
        Some(wake)
    }

    fn on_report(&mut self, u: Box<ProbeUpdate>, ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        self.run.merge(u.connect.as_ref(), u.fail.as_ref());
        self.sampler.merge(u.connect.as_ref(), u.fail.as_ref(), [None, None]);
        self.dial_done[u.reactor] |= u.dial_done;
        self.done[u.reactor] = u.done;
        self.reports.set(u.reactor, u.snap, u.exited);
        let snap = self.reports.total();
        if self.run.dial_phase.is_none() && self.dial_done.iter().all(|d| *d) {
            self.run.dialed(Instant::now());
            let _ = writeln!(
                out,
                "netforge goon: probe: every dial resolved, {} established, {} failed; holding idle",
                snap.counts.established_total, snap.counts.error
            );
        }
        if !ctl.stopping() {
            for (i, g) in snap.groups.iter().enumerate() {
                if !self.announced[i] && g.complete() {
                    self.announced[i] = true;
                    let _ = writeln!(out, "netforge goon: probe: {}", g.line(self.cfg.idle[i]));
                }
            }
        }
        let _ = out.flush();
        Flow::Continue
    }

    fn on_turn(&mut self, now: Instant, ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        if self.interval.due(now) {
            let _ = writeln!(out, "{}", self.line());
            let _ = out.flush();
        }
        if now >= self.sampler.next && !self.reports.all_done() {
            let c = self.reports.total().counts;
            self.sampler.close(&c, self.run.total, now - self.run.started, false);
        }
        if self.reports.all_done() {
            return Flow::Exit;
        }
        if !ctl.stopping() {
            if self.done.iter().all(|d| *d) {
                self.stop(ctl, now);
            } else if now >= self.deadline {
                log::warn!(
                    "goon: the probe ran {} past its expected end; stopping with what was classified",
                    crate::units::go_duration(SLACK)
                );
                self.run.interrupted = true;
                self.stop(ctl, now);
            }
        }
        Flow::Continue
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        self.run.interrupted = true;
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

    fn cfg(args: &[&str]) -> GoonConfig {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            goon: crate::goon::args::GoonArgs,
        }
        let mut argv = vec!["goon"];
        argv.extend_from_slice(args);
        let a = Wrap::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}")).goon;
        crate::goon::args::goon_config_with(&a, &|_| None).unwrap()
    }

    #[test]
    fn the_run_is_bounded_by_dialing_the_longest_idle_time_and_the_deadline() {
        // 10 dials 10 ms apart, a 5 s dial timeout, 350 s idle, a 5 s deadline.
        let c = cfg(&["--probe-idle", "30s,350s", "-c", "10"]);
        let p = c.probe.clone().unwrap();
        assert_eq!(p.per_group, vec![5, 5]);
        assert_eq!(expected_span(&c, &p), Duration::from_millis(100 + 5000 + 350_000 + 5000));
        let c =
            cfg(&["--probe-idle", "1s", "--probe-group", "4", "--rate", "2", "-t", "1000", "--probe-deadline", "2s"]);
        let p = c.probe.clone().unwrap();
        assert_eq!((c.connections, c.fleet_connections), (4, 4));
        assert_eq!(expected_span(&c, &p), Duration::from_secs(2 + 1 + 1 + 2));
        let c = cfg(&["--probe-idle", "1s,2s", "--probe-group", "3", "--shard", "1/2"]);
        assert_eq!((c.connections, c.fleet_connections), (6, 12));
    }
}

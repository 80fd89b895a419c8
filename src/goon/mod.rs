//! `netforge goon`: the connection stressor (tcpgoon's interface and output, then more).
//!
//! The coordinator (this module, on the calling thread) resolves the target once, runs the
//! preflight, splits the N connections over the reactors (`reactor.rs`), prints the interval line
//! from the reactors' latest counts, ends the run (all dials resolved, then `--hold`; or a
//! signal) and prints the final report (`report.rs`). Every `--interval` (1 s with `-i 0`) it
//! also closes a sample (`result::sample`) for `--json` and `--json-stream`. With `--start-at` it
//! waits (interruptibly) after everything is set up, so dialing starts at that instant.

pub(crate) mod args;
pub mod pace;
pub mod preflight;
pub mod probe;
pub mod reactor;
pub mod report;
mod sample;
pub mod tls;
pub mod traffic;
pub mod ws;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use crate::engine::accept::Admission;
use crate::engine::coordinator::{self, Ctl, Flow, Interval, Reports, Role};
use crate::engine::Pool;
use crate::error::Error;
use crate::net::connect::DialOpts;
use crate::net::tune::SockBufs;
use crate::result::sample::{Sample, SampleBuf, SampleWs, State, TrafficSample};
use crate::stats::Latency;
use crate::sys::Signal;
use crate::target::{Mode, Sink};
use crate::units::MAX_DURATION;
use reactor::{Concurrency, Counts, GoonCmd, GoonReactor, Pace, ReactorPlan, Update};
use report::RunFigures;
pub(crate) use sample::{Sampler, Stream};
use traffic::Phases;

/// Where reactors report.
const UPDATE_QUEUE_PER_REACTOR: usize = 64;
/// Reactor tick (stats flush period).
pub const TICK: Duration = Duration::from_millis(100);
/// How long the coordinator waits for reactors to report after `Stop`.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest wait of the coordinator loop when no status line is due (`-i 0`).
const IDLE_WAKE: Duration = Duration::from_millis(500);
/// With a response mode and no `--hold`, how long the end of the traffic phase waits for the
/// answers still out (it ends as soon as every reactor has none).
pub const ANSWER_GRACE: Duration = Duration::from_secs(1);
/// The sample interval when `--interval 0` silences the status lines.
pub const SAMPLE_DEFAULT: Duration = Duration::from_secs(1);
/// Longest single sleep of the `--start-at` wait (the wall clock is read again after each).
const START_WAIT_STEP: Duration = Duration::from_secs(1);

/// `--shard I/K`: this process is shard `index` (from 0) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// Where `--json-stream` writes (`-` for standard output, as given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamTo {
    Stdout,
    File(PathBuf),
}

impl serde::Serialize for StreamTo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StreamTo::Stdout => s.serialize_str("-"),
            StreamTo::File(p) => s.serialize_str(&p.to_string_lossy()),
        }
    }
}

/// Options of `netforge goon`, resolved (flags, defaults and the target's address);
/// `--print-config` writes them as TOML.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GoonConfig {
    /// The host as the user wrote it (for the report header).
    pub host: String,
    pub target: SocketAddr,
    /// This process's connections (its share when sharded).
    pub connections: u64,
    /// `--connections` as given (the whole fleet's when sharded).
    pub fleet_connections: u64,
    pub shard: Option<Shard>,
    #[serde(serialize_with = "crate::wallclock::serialize_opt")]
    pub start_at: Option<SystemTime>,
    pub json_stream: Option<StreamTo>,
    /// The command line, for the JSON result.
    #[serde(skip)]
    pub argv: Vec<String>,
    #[serde(serialize_with = "crate::config::duration")]
    pub sleep: Duration,
    /// Connections per second; overrides `sleep` when set.
    pub rate: Option<f64>,
    #[serde(serialize_with = "crate::config::duration")]
    pub dial_timeout: Duration,
    #[serde(serialize_with = "crate::config::duration")]
    pub interval: Duration,
    #[serde(serialize_with = "crate::config::duration")]
    pub hold: Duration,
    pub sources: Vec<IpAddr>,
    pub linger_rst: bool,
    /// Resolved: never 0.
    pub threads: usize,
    pub json: Option<PathBuf>,
    /// `--html`: the report page, written at the end.
    pub html: Option<PathBuf>,
    /// Stressing the in-process sink (no host/port given): its listeners, one per reactor.
    pub builtin: bool,
    #[serde(rename = "socket_buffers", serialize_with = "crate::config::sockbufs")]
    pub(crate) bufs: SockBufs,
    /// Each reactor's own slice of `ip_local_port_range` (IP_LOCAL_PORT_RANGE), one per
    /// reactor; empty where the kernel lacks the option or the range is unreadable, and the
    /// kernel's own search is used.
    #[serde(skip)]
    pub port_slices: Vec<(u16, u16)>,
    /// `--probe-idle`: idle-timeout discovery instead of connect-and-hold (see `probe`).
    pub probe: Option<probe::args::ProbeConfig>,
    /// `--tls` and its flags.
    pub tls: Option<GoonTls>,
    /// `--ws` and its options: upgrade every connection to a WebSocket.
    pub ws: Option<ws::WsConfig>,
    /// Message traffic (`--message`, `--first-message` and their flags), when given.
    pub traffic: Option<traffic::TrafficPlan>,
}

/// `--tls`, checked and built: what the reactors and the built-in sink use. Written by
/// `--print-config` as its flags (`options`).
#[derive(Clone, Debug)]
pub struct GoonTls {
    pub options: crate::tls::ClientOptions,
    pub name: rustls::pki_types::ServerName<'static>,
    pub client: Arc<rustls::ClientConfig>,
    /// The built-in sink's server side (its self-signed certificate).
    pub sink: Option<Arc<rustls::ServerConfig>>,
}

impl serde::Serialize for GoonTls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.options.serialize(s)
    }
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
    /// Wall clock when dialing started (after any `--start-at` wait) and when the run ended.
    pub started_wall: SystemTime,
    pub ended_wall: SystemTime,
    /// The base sample interval, the samples and their stride (base intervals per sample).
    pub sample_interval: Duration,
    pub samples: Vec<Sample>,
    pub sample_stride: u64,
    /// `--tls`: handshakes, their latency and failures.
    pub tls: Option<crate::result::tls::TlsTotals>,
    /// `--ws`: the upgrade times and ping round trips (the counts are in `counts.ws`).
    pub ws: Option<ws::WsLatencies>,
    /// Response latencies from the intended send times (traffic with a response mode).
    pub response: Latency,
}

impl GoonReport {
    /// A run that dialed nothing (interrupted before it started), whose RSS at start was
    /// `rss_start_kib`: its peak is the process's high-water mark so far.
    pub fn nothing_dialed(total: u64, sample_interval: Duration, rss_start_kib: u64) -> GoonReport {
        let now = SystemTime::now();
        GoonReport {
            counts: Counts::default(),
            not_initiated: total,
            max_established: 0,
            connect: Latency::new(),
            fail: Latency::new(),
            dial_phase: None,
            elapsed: Duration::ZERO,
            interrupted: true,
            rss_start_kib,
            rss_dial_done_kib: None,
            rss_peak_kib: report::peak_kib(rss_start_kib, None),
            started_wall: now,
            ended_wall: now,
            sample_interval,
            samples: Vec::new(),
            sample_stride: 1,
            tls: None,
            ws: None,
            response: Latency::new(),
        }
    }

    /// tcpgoon's exit status: 1 if some connection never finished dialing, else 2 if any
    /// errored (with `--tls`, a failed TLS handshake too; with `--ws`, a failed upgrade), else
    /// 0. A handshake still under way at the end counts as a dial not finished.
    pub fn exit_code(&self) -> u8 {
        if self.not_initiated > 0 || self.counts.dialing > 0 || self.tls.as_ref().is_some_and(|t| t.unfinished > 0) {
            1
        } else if self.counts.error > 0
            || self.tls.as_ref().is_some_and(|t| t.failed > 0)
            || self.counts.ws.failed() > 0
        {
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

/// The upgrade request's Host header: the host as given (IPv6 in brackets) and the port.
fn host_header(host: &str, target: SocketAddr) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{bare}]:{}", target.port())
    } else {
        format!("{bare}:{}", target.port())
    }
}

/// The status line's traffic part (bytes up and down during the interval), only with traffic.
pub fn traffic_suffix(up: u64, down: u64) -> String {
    format!(", Up: {up} B, Down: {down} B")
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
    let stream_file = match &cfg.json_stream {
        Some(StreamTo::File(p)) => Some(p.as_path()),
        _ => None,
    };
    let outputs = [("--json", cfg.json.as_deref()), ("--html", cfg.html.as_deref()), ("--json-stream", stream_file)];
    crate::result::check_outputs(&outputs, &[])?;
    if let Some(p) = &cfg.probe {
        return probe::run(cfg, p, signals, out).map(|(report, _)| report);
    }
    let threads = cfg.threads.max(1).min(cfg.connections.max(1) as usize);
    let sample_interval = if cfg.interval.is_zero() { SAMPLE_DEFAULT } else { cfg.interval };
    let mut stream = match &cfg.json_stream {
        None => None,
        Some(to) => Some(Stream::open(to, cfg)?),
    };
    let rss_start_kib = crate::sys::rss_kib().map_or(0, |r| r.0);
    let (tx, rx) = crossbeam_channel::bounded::<Box<Update>>(threads * UPDATE_QUEUE_PER_REACTOR);
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
        // With traffic the sink echoes, so every message has its response.
        let mode = match (&cfg.ws, &cfg.traffic) {
            (Some(_), _) => Mode::Ws,
            (None, Some(_)) => Mode::Echo,
            (None, None) => Mode::Hold,
        };
        for (slot, l) in sinks.iter_mut().zip(listeners) {
            let tls = cfg.tls.as_ref().and_then(|t| t.sink.clone());
            *slot = Some(Sink::new(l, mode, g.clone(), SockBufs::default()).with_tls(tls));
        }
        gate = Some(g);
        let _ = writeln!(
            out,
            "netforge goon: no target given; stressing the built-in sink on {addr} (mode {mode}{}, in this process)",
            if cfg.tls.is_some() { ", tls" } else { "" }
        );
    }
    // With traffic, TCP_NODELAY: Nagle would hold a message back while an earlier one is
    // unacknowledged (exactly when messages are late), and goon would measure its own delay.
    let opts =
        DialOpts { bufs: cfg.bufs, linger_rst: cfg.linger_rst, nodelay: cfg.traffic.is_some(), ..DialOpts::default() };
    let share = shares(cfg.connections, threads);
    let ws_plan = cfg.ws.as_ref().map(|w| w.plan(&host_header(&cfg.host, target)));
    let concurrency = Arc::new(Concurrency::default());
    let traffic_plan = cfg.traffic.clone().map(Arc::new);
    // Any instant common to the run: the phases only need one origin.
    let base = Instant::now();
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
                tls: cfg.tls.as_ref().map(|t| tls::TlsPlan {
                    config: crate::tls::for_reactor(&t.client, t.options.resume),
                    name: t.name.clone(),
                    timeout: cfg.dial_timeout,
                }),
                ws: ws_plan.clone(),
                traffic: traffic_plan.clone(),
                phases: Phases {
                    base,
                    reactor: i as u64,
                    reactors: threads as u64,
                    share: share[i],
                    connections: cfg.connections,
                },
            };
            GoonReactor::new(plan, tx.clone(), sink)
        })
        .collect();
    drop(tx);

    let total = cfg.connections;
    if let Some(s) = cfg.shard {
        let _ = writeln!(
            out,
            "netforge goon: shard {}/{}: {} of {} connections{}",
            s.index,
            s.count,
            total,
            cfg.fleet_connections,
            match cfg.sources.as_slice() {
                [] => String::new(),
                [one] => format!(", from {one}"),
                [first, .., last] => format!(", from {} addresses {first}..{last}", cfg.sources.len()),
            }
        );
    }
    if let Some(at) = cfg.start_at {
        args::check_start_at(at, SystemTime::now()).map_err(|e| Error::Usage(format!("--start-at: {e}")))?;
        if !wait_until(at, signals, out) {
            let _ = writeln!(out, "netforge goon: interrupted while waiting for --start-at; nothing was dialed");
            let report = GoonReport::nothing_dialed(total, sample_interval, rss_start_kib);
            finish(cfg, &report, target, threads, stream.as_mut(), out)?;
            return Ok(report);
        }
    }
    let started = Instant::now();
    let started_wall = SystemTime::now();
    if let Some(st) = stream.as_mut() {
        st.event(&report::stream_start(cfg, target, threads, started_wall, sample_interval));
    }
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
        run: RunFigures::new(total, started, started_wall, sample_interval, rss_start_kib),
        hold: cfg.hold,
        reports: Reports::new(threads),
        dial_done: vec![false; threads],
        tls_handshake: Latency::new(),
        ws: cfg.ws.as_ref().map(|_| ws::WsLatencies::default()),
        hold_until: None,
        traffic: cfg.traffic.as_ref().map(|t| t.duration),
        answers: (cfg.hold.is_zero() && cfg.traffic.as_ref().is_some_and(|t| t.measures()))
            .then(|| Answers { reported: vec![None; threads], traffic_end: None }),
        response: Latency::new(),
        line_bytes: (0, 0),
        // `-i 0`: no periodic lines, only the final report.
        interval: Interval::new(started, cfg.interval),
        sampler: Sampler::new(cfg, started, sample_interval, concurrency.clone(), stream.take()),
    };
    coordinator::run(&mut role, &rx, signals, out);
    let Coordinated { pool, run, reports, tls_handshake, ws, sampler, response, .. } = role;
    let counts = reports.total();
    let tls = cfg.tls.as_ref().map(|t| crate::result::tls::TlsTotals {
        alpn: (!t.options.alpn.is_empty())
            .then(|| crate::result::tls::AlpnTally::from_slots(&t.options.alpn, &counts.tls.alpn)),
        full: counts.tls.full,
        resumed: counts.tls.resumed,
        failed: counts.tls.failed,
        unfinished: counts.tls.handshaking,
        failures: counts.tls.failures,
        handshake: tls_handshake,
        span_s: counts.tls.last_done.map(|t| t.saturating_duration_since(started).as_secs_f64()),
    });
    let (mut report, st) = run.into_report(counts, concurrency.peak(), sampler);
    stream = st;
    report.tls = tls;
    report.ws = ws;
    report.response = response;
    let written = finish(cfg, &report, target, threads, stream.as_mut(), out);
    // Every reactor has reported (or the grace ran out): now they may close and end.
    pool.broadcast(|_| GoonCmd::Exit);
    pool.join();
    written?;
    Ok(report)
}

/// Prints the final report and writes the outputs that read it.
fn finish(
    cfg: &GoonConfig,
    report: &GoonReport,
    target: SocketAddr,
    threads: usize,
    stream: Option<&mut Stream>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    report::print(cfg, report, target, out);
    write_outputs(cfg, report, target, threads, stream, &|_| {})
}

/// Writes `--json`, `--html` and the stream's `end` event from the run's document, to which
/// `extra` adds a mode's own part (the idle probe's verdict). When none of them is asked for
/// the document is not built: encoding its histograms costs time and memory.
pub(crate) fn write_outputs(
    cfg: &GoonConfig,
    report: &GoonReport,
    target: SocketAddr,
    threads: usize,
    stream: Option<&mut Stream>,
    extra: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<(), Error> {
    if stream.is_none() && cfg.json.is_none() && cfg.html.is_none() {
        return Ok(());
    }
    let mut doc = report::json_value(cfg, report, target, threads);
    if let Some(o) = doc.as_object_mut() {
        extra(o);
    }
    // Every output is tried, whichever failed before it; the first failure is the error.
    let mut first: Option<Error> = None;
    if let Some(st) = stream {
        st.event(&serde_json::json!({ "event": "end", "result": doc }));
        first = st.failure();
    }
    if let Some(path) = &cfg.json {
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        if let Err(e) = std::fs::write(path, text) {
            first.get_or_insert(Error::Output(format!("--json {}: cannot write: {e}", path.display())));
        }
    }
    if let Some(path) = &cfg.html {
        if let Err(e) = crate::result::html::write_for_run(path, "this run", doc) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Waits until the wall clock reaches `at`, in steps of at most [`START_WAIT_STEP`] (so a clock
/// step is followed). False when SIGINT/SIGTERM came first; SIGUSR1 prints how long is left.
fn wait_until(at: SystemTime, signals: &Receiver<Signal>, out: &mut dyn Write) -> bool {
    let left = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    if left.is_zero() {
        return true;
    }
    let _ = writeln!(
        out,
        "netforge goon: waiting until {} (--start-at, {:.3}s from now)",
        crate::wallclock::rfc3339(at),
        left.as_secs_f64()
    );
    let _ = out.flush();
    loop {
        let left = match at.duration_since(SystemTime::now()) {
            Ok(d) if !d.is_zero() => d,
            _ => return true,
        };
        match signals.recv_timeout(left.min(START_WAIT_STEP)) {
            Ok(Signal::Interrupt | Signal::Terminate) => return false,
            Ok(Signal::User1) => {
                // `left` dates from the start of this step: say what is left now.
                let now_left = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
                let _ = writeln!(out, "netforge goon: {:.3}s until --start-at", now_left.as_secs_f64());
                let _ = out.flush();
            }
            Ok(Signal::Hangup) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            // No signal thread (cannot happen after route_signals): wait without it.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(left.min(START_WAIT_STEP)),
        }
    }
}

/// The coordinator's side of `goon`: interval lines, the end of the dial phase, the hold.
struct Coordinated {
    pool: Pool<GoonCmd>,
    run: RunFigures,
    hold: Duration,
    reports: Reports<Counts>,
    dial_done: Vec<bool>,
    tls_handshake: Latency,
    ws: Option<ws::WsLatencies>,
    hold_until: Option<Instant>,
    /// The traffic phase's length, with traffic flags.
    traffic: Option<Duration>,
    /// The wait for the last answers, with a response mode and no `--hold`.
    answers: Option<Answers>,
    response: Latency,
    /// Bytes up and down at the last status line.
    line_bytes: (u64, u64),
    interval: Interval,
    sampler: Sampler,
}

/// The wait for the answers still out when the traffic phase ends ([`ANSWER_GRACE`]).
struct Answers {
    /// When each reactor's latest counts arrived.
    reported: Vec<Option<Instant>>,
    traffic_end: Option<Instant>,
}

impl Answers {
    /// Every reactor has reported since the traffic phase ended, and none has a message
    /// unanswered: nothing more will come.
    fn all_in(&self, c: &Counts, now: Instant) -> bool {
        let Some(end) = self.traffic_end.filter(|e| now >= *e) else { return false };
        self.reported.iter().all(|r| r.is_some_and(|at| at > end)) && c.traffic.unanswered() == 0
    }
}

impl Coordinated {
    /// The status line; with traffic, the bytes since the last line (`advance`: this line
    /// starts the next interval).
    fn line(&mut self, advance: bool) -> String {
        let c = self.reports.total();
        let mut line = self.run.status_line(&c);
        if self.traffic.is_some() {
            let (up, down) = (c.traffic.bytes_up, c.traffic.bytes_down);
            line.push_str(&traffic_suffix(up - self.line_bytes.0.min(up), down - self.line_bytes.1.min(down)));
            if advance {
                self.line_bytes = (up, down);
            }
        }
        line
    }

    fn stop(&mut self, ctl: &mut Ctl, now: Instant) {
        self.pool.broadcast(|_| GoonCmd::Stop);
        ctl.stop(Some(now + STOP_GRACE));
    }
}

impl Role for Coordinated {
    /// Boxed: an `Update` carries several recorders (about 2 KB), and the bounded channel's
    /// slots are written when it is made, so unboxed its 64 slots per reactor would be ~250 KiB
    /// of resident memory before the first connection.
    type Report = Box<Update>;

    const MAX_WAIT: Duration = Duration::from_millis(500);

    fn wake_at(&self, ctl: &Ctl) -> Option<Instant> {
        let mut wake = self.interval.next().unwrap_or_else(|| Instant::now() + IDLE_WAKE).min(self.sampler.next);
        if let Some(until) = self.hold_until.filter(|_| !ctl.stopping()) {
            wake = wake.min(until);
        }
        Some(wake)
    }

    fn on_report(&mut self, u: Box<Update>, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        self.run.merge(u.connect.as_ref(), u.fail.as_ref());
        if let Some(l) = &u.tls_handshake {
            self.tls_handshake.merge(l);
        }
        if let (Some(l), Some(w)) = (&u.ws, self.ws.as_mut()) {
            w.merge(l);
        }
        if let Some(l) = &u.response {
            self.response.merge(l);
        }
        self.sampler.merge(u.connect.as_ref(), u.fail.as_ref(), [u.tls_handshake.as_ref(), u.response.as_ref()]);
        if let (Some(l), Some(w), true) = (&u.ws, self.sampler.ws.as_mut(), self.sampler.keep) {
            w.merge(l);
        }
        self.dial_done[u.reactor] |= u.dial_done;
        if let Some(a) = self.answers.as_mut() {
            a.reported[u.reactor] = Some(Instant::now());
        }
        self.reports.set(u.reactor, u.counts, u.exited);
        if self.hold_until.is_none() && self.dial_done.iter().all(|d| *d) {
            let now = Instant::now();
            self.run.dialed(now);
            // With traffic, the traffic phase comes first and the hold after it.
            let traffic_end = now + self.traffic.unwrap_or(Duration::ZERO);
            if self.traffic.is_some() {
                let full = self.pool.broadcast(|_| GoonCmd::EndTraffic(traffic_end));
                if full > 0 {
                    log::warn!("goon: {full} reactors' queues were full; their traffic goes on until the run ends");
                }
            }
            // Without --hold, a response mode waits for its last answers instead.
            let hold = match self.answers.as_mut() {
                Some(a) => {
                    a.traffic_end = Some(traffic_end);
                    ANSWER_GRACE
                }
                None => self.hold,
            };
            self.hold_until = Some(traffic_end + hold);
        }
        Flow::Continue
    }

    fn on_turn(&mut self, now: Instant, ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        if self.interval.due(now) {
            let _ = writeln!(out, "{}", self.line(true));
            let _ = out.flush();
        }
        if now >= self.sampler.next && !self.reports.all_done() {
            let c = self.reports.total();
            self.sampler.close(&c, self.run.total, now - self.run.started, false);
        }
        if self.reports.all_done() {
            return Flow::Exit;
        }
        if let Some(until) = self.hold_until.filter(|_| !ctl.stopping()) {
            // Nothing left to hold (the peer closed everything), or no answer left to wait for
            // without --hold: the hold ends early.
            let c = self.reports.total();
            let answered = self.answers.as_ref().is_some_and(|a| a.all_in(&c, now));
            if now >= until || (c.established == 0 && c.dialing == 0) || answered {
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
        let _ = writeln!(out, "{}", self.line(false));
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
        let mut r =
            GoonReport { not_initiated: 0, interrupted: false, ..GoonReport::nothing_dialed(0, SAMPLE_DEFAULT, 0) };
        r.counts.closed = 3;
        assert_eq!(r.exit_code(), 0, "closed counts as success");
        r.counts.error = 1;
        assert_eq!(r.exit_code(), 2);
        r.counts.dialing = 1;
        assert_eq!(r.exit_code(), 1);
        r.counts.dialing = 0;
        r.not_initiated = 2;
        assert_eq!(r.exit_code(), 1);
        r.not_initiated = 0;
        r.counts.error = 0;
        r.tls = Some(crate::result::tls::TlsTotals::default());
        assert_eq!(r.exit_code(), 0);
        r.tls.as_mut().unwrap().failed = 1;
        assert_eq!(r.exit_code(), 2, "a failed handshake is an error");
        r.tls.as_mut().unwrap().unfinished = 1;
        assert_eq!(r.exit_code(), 1, "a handshake under way at the end is unfinished");
    }
}

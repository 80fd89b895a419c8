//! `bp client`'s start-up and its coordinator: the per-connection and aggregate analysis, the
//! interval lines, and the final statistics, verdict and JSON report.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::{ClientCmd, ClientReactor, Msg, REPORT_QUEUE};
use crate::backpressure::config::ClientConfig;
use crate::backpressure::verdict::{self, Analysis, Sample};
use crate::engine::coordinator::{self, Ctl, Flow, Role};
use crate::engine::Pool;
use crate::sys::Signal;

/// Sums the connections' samples taken in one loop turn: bytes, EAGAINs and queues add up, the
/// window is the smallest (one zero-window connection makes the aggregate zero), times are µs sums.
fn aggregate(samples: &[(usize, Sample)]) -> Option<Sample> {
    let first = samples.first()?.1;
    let mut a = Sample { t: first.t, ..Sample::default() };
    let add = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    };
    for (_, s) in samples {
        a.t = a.t.max(s.t);
        a.bytes_written += s.bytes_written;
        a.eagain += s.eagain;
        a.outq = a.outq.saturating_add(s.outq);
        a.notsent = add(a.notsent.map(u64::from), s.notsent.map(u64::from)).map(|v| v.min(u64::from(u32::MAX)) as u32);
        a.snd_wnd = match (a.snd_wnd, s.snd_wnd) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.backoff = a.backoff.max(s.backoff);
        a.rwnd_limited_us = add(a.rwnd_limited_us, s.rwnd_limited_us);
        a.busy_time_us = add(a.busy_time_us, s.busy_time_us);
    }
    Some(a)
}

/// Where a run's result goes besides the text on `out` (`--json`, `--html`).
#[derive(Debug, Default)]
pub struct Outputs {
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

/// Runs the client to the end of its duration or total (or SIGINT/SIGTERM).
pub fn run(
    cfg: &ClientConfig,
    target: SocketAddr,
    outputs: Outputs,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) -> Result<(), crate::error::Error> {
    crate::result::check_outputs(&[("--json", outputs.json.as_deref()), ("--html", outputs.html.as_deref())], &[])?;
    let (tx, rx) = crossbeam_channel::bounded::<Msg>(REPORT_QUEUE);
    let start = Instant::now();
    let reactor = ClientReactor {
        cfg: cfg.clone(),
        target,
        payload: (0..cfg.payload_size).map(|i| b'a' + (i % 26) as u8).collect(),
        start,
        keys: Vec::with_capacity(cfg.connections),
        done: 0,
        clock: None,
        finals: Vec::with_capacity(cfg.connections),
        cut_short: 0,
        resets: 0,
        any_eagain: false,
        out: tx,
        failed: false,
        unmeasured_why: None,
        aborted: 0,
        aborted_bytes: 0,
    };
    let pool = Pool::spawn("bp-client", vec![reactor], cfg.sample_interval).map_err(crate::error::Error::Io)?;
    let _ = writeln!(
        out,
        "netforge bp client: {} to {} ({target}), {}, {} B payloads at {}",
        cfg.protocol,
        cfg.server,
        crate::stats::counted(cfg.connections as u64, "connection", "connections"),
        cfg.payload_size,
        if cfg.rate == 0 { "full speed".to_string() } else { format!("{}/s", cfg.rate) }
    );
    let _ = out.flush();
    let cap = (verdict::SERIES_CAP / cfg.connections).max(64);
    let mut role = Coordinated {
        pool,
        stats_interval: cfg.stats_interval,
        per: (0..cfg.connections).map(|_| Analysis::with_series_cap(cap)).collect(),
        agg: Analysis::new(),
        last_line: None,
        next_line: cfg.stats_interval,
        end: None,
    };
    coordinator::run(&mut role, &rx, signals, out);
    let Coordinated { pool, mut per, mut agg, end, .. } = role;
    let (finals, cut_short, resets, unmeasured, unmeasured_why, aborted, aborted_bytes) = match end {
        Some(Msg::Done { finals, cut_short, resets, unmeasured, why, aborted, aborted_bytes }) => {
            (finals, cut_short, resets, unmeasured, why, aborted, aborted_bytes)
        }
        Some(Msg::Failed(why)) => {
            pool.join();
            return Err(crate::error::Error::Io(io::Error::other(why)));
        }
        _ => {
            pool.join();
            return Err(crate::error::Error::Io(io::Error::other("bp client: the reactor ended without a report")));
        }
    };
    pool.join();
    for (i, s) in &finals {
        per[*i].push(*s);
    }
    let final_agg = aggregate(&finals);
    if let Some(a) = final_agg {
        agg.push(a);
    }
    let summary = agg.summary();
    let verdict_line = agg.verdict();
    let (bytes_written, outq) = final_agg.map_or((0, 0), |a| (a.bytes_written, u64::from(a.outq)));
    let _ = writeln!(out, "--- netforge bp client statistics ---");
    let _ = writeln!(out, "{verdict_line}");
    let _ = writeln!(out, "final: bytes written {bytes_written}, unacknowledged (SIOCOUTQ) {outq}");
    match summary.first_eagain_after_bytes {
        Some(b) => {
            let _ = writeln!(out, "bytes absorbed before backpressure (first EAGAIN): {b}");
        }
        None => {
            let _ = writeln!(out, "bytes absorbed before backpressure: all {bytes_written} (writes never blocked)");
        }
    }
    let e = summary.episodes;
    let _ = writeln!(
        out,
        "zero-window episodes: {} (min {:.2} s, avg {:.2} s, max {:.2} s{}), max probe backoff {}",
        e.count,
        e.min_s,
        e.avg_s,
        e.max_s,
        if e.open_at_end { ", one open at the end" } else { "" },
        summary.max_backoff
    );
    if cut_short > 0 || resets > 0 {
        let _ = writeln!(out, "connections cut short at the end: {cut_short}, closed by the server: {resets}");
    }
    if aborted > 0 {
        let _ = writeln!(
            out,
            "connections reset at the end: {aborted} ({aborted_bytes} B still queued that the server had not acknowledged; \
             a reset instead of a FIN, so the server does not drain them after this run)"
        );
    }
    if unmeasured > 0 {
        let _ = writeln!(
            out,
            "connections never measured: {unmeasured} of {} ({})",
            cfg.connections,
            unmeasured_why.as_deref().unwrap_or("ended before the first sample")
        );
    }
    let _ = out.flush();
    if outputs.json.is_some() || outputs.html.is_some() {
        let mut doc = serde_json::to_value(agg.report()).unwrap_or_default();
        if let Some(map) = doc.as_object_mut() {
            let conns: Vec<serde_json::Value> =
                per.iter().map(|a| serde_json::to_value(a.report()).unwrap_or_default()).collect();
            map.insert("connections".into(), conns.into());
            map.insert(
                "final".into(),
                serde_json::json!({
                    "bytes_written": bytes_written,
                    "outq": outq,
                    "cut_short": cut_short,
                    "resets": resets,
                    "aborted": aborted,
                    "aborted_bytes": aborted_bytes,
                }),
            );
        }
        if let Some(path) = &outputs.json {
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            std::fs::write(path, text).map_err(|e| {
                crate::error::Error::Io(io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
            })?;
        }
        if let Some(path) = &outputs.html {
            crate::result::html::write_for_run(path, "this run", doc)?;
        }
    }
    Ok(())
}

/// The coordinator's side of `bp client`: per-connection and aggregate analysis, interval
/// lines on the samples' own clock, until the reactor's last message.
struct Coordinated {
    pool: Pool<ClientCmd>,
    stats_interval: Duration,
    per: Vec<Analysis>,
    agg: Analysis,
    last_line: Option<Sample>,
    next_line: Duration,
    /// `Done` or `Failed`, once it arrives.
    end: Option<Msg>,
}

impl Role for Coordinated {
    type Report = Msg;

    // Only the reactor's messages and signals move this loop.
    const MAX_WAIT: Duration = Duration::from_secs(3600);

    fn on_report(&mut self, msg: Msg, _ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        match msg {
            Msg::Samples(samples) => {
                for (i, s) in &samples {
                    self.per[*i].push(*s);
                }
                if let Some(a) = aggregate(&samples) {
                    let state = self.agg.push(a);
                    // stats_interval 0: no periodic lines (as `-i 0` in every role).
                    if !self.stats_interval.is_zero() && a.t >= self.next_line {
                        let _ = writeln!(out, "{}", verdict::interval_line(self.last_line.as_ref(), &a, state));
                        let _ = out.flush();
                        self.last_line = Some(a);
                        self.next_line += self.stats_interval;
                    }
                }
                Flow::Continue
            }
            Msg::FirstEagain { conn, bytes, total } => {
                self.per[conn].note_first_eagain(bytes);
                self.agg.note_first_eagain(total);
                Flow::Continue
            }
            end @ (Msg::Failed(_) | Msg::Done { .. }) => {
                self.end = Some(end);
                Flow::Exit
            }
        }
    }

    fn on_turn(&mut self, _now: Instant, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        Flow::Continue
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        // No deadline: the reactor ends its connections and reports.
        self.pool.broadcast(|_| ClientCmd::Stop);
        ctl.stop(None);
    }

    fn on_stop_again(&mut self, _ctl: &mut Ctl) -> Flow {
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_ms: u64, bytes: u64, outq: u32, wnd: Option<u32>, backoff: u8) -> Sample {
        Sample {
            t: Duration::from_millis(t_ms),
            bytes_written: bytes,
            eagain: 1,
            outq,
            notsent: Some(outq),
            snd_wnd: wnd,
            backoff,
            rwnd_limited_us: Some(10),
            busy_time_us: None,
        }
    }

    #[test]
    fn aggregate_sums_queues_and_keeps_the_smallest_window() {
        assert_eq!(aggregate(&[]), None);
        let a = aggregate(&[(0, s(100, 1000, 10, Some(500), 0)), (1, s(101, 2000, 20, Some(0), 3))]).unwrap();
        assert_eq!(a.t, Duration::from_millis(101));
        assert_eq!((a.bytes_written, a.eagain, a.outq, a.notsent), (3000, 2, 30, Some(30)));
        assert_eq!((a.snd_wnd, a.backoff), (Some(0), 3));
        assert_eq!((a.rwnd_limited_us, a.busy_time_us), (Some(20), None));
        // A kernel without snd_wnd on one side: the known value wins.
        let b = aggregate(&[(0, s(0, 1, 1, None, 0)), (1, s(0, 1, 1, Some(7), 0))]).unwrap();
        assert_eq!(b.snd_wnd, Some(7));
    }
}

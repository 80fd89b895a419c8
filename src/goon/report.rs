//! goon's final report: tcpgoon's block (`result::block`), word for word where tcpgoon has
//! words, then the additions (percentiles, errors by cause, dial-phase speed and memory), and the JSON form
//! (format version 2, docs/json-format.md).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::reactor::Counts;
use super::{status_line, GoonConfig, GoonReport, Sampler, Stream};
use crate::net::Cause;
use crate::result::block::{final_block, latency_json, target_label, FinalBlock};
use crate::result::sample::Sample;
use crate::result::FORMAT_VERSION;
use crate::stats::{counted, Latency};
use crate::units::go_duration;

/// Below this many established connections the RSS growth is mostly the run's fixed cost
/// (thread stacks, connection tables, histograms touched for the first time), not the connections', so a
/// per-connection figure would mislead (10 connections: 177 KB "each").
pub const PER_CONNECTION_MIN: u64 = 1000;

/// What both goon coordinators (held connections and the idle probe) keep the same way, and
/// hand to the report every run ends with.
pub(crate) struct RunFigures {
    pub total: u64,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub sample_interval: Duration,
    pub rss_start_kib: u64,
    pub connect: Latency,
    pub fail: Latency,
    /// From start until every dial was started and resolved.
    pub dial_phase: Option<Duration>,
    pub rss_dial_done_kib: Option<u64>,
    pub interrupted: bool,
}

impl RunFigures {
    pub(crate) fn new(
        total: u64,
        started: Instant,
        started_wall: SystemTime,
        sample_interval: Duration,
        rss_start_kib: u64,
    ) -> Self {
        RunFigures {
            total,
            started,
            started_wall,
            sample_interval,
            rss_start_kib,
            connect: Latency::new(),
            fail: Latency::new(),
            dial_phase: None,
            rss_dial_done_kib: None,
            interrupted: false,
        }
    }

    /// A reactor's connect and failure latencies since its last update.
    pub(crate) fn merge(&mut self, connect: Option<&Latency>, fail: Option<&Latency>) {
        if let Some(l) = connect {
            self.connect.merge(l);
        }
        if let Some(l) = fail {
            self.fail.merge(l);
        }
    }

    /// Every dial was resolved at `now`: the dial phase's length, and the RSS then.
    pub(crate) fn dialed(&mut self, now: Instant) {
        self.dial_phase = Some(now.saturating_duration_since(self.started));
        self.rss_dial_done_kib = crate::sys::rss_kib().map(|r| r.0);
    }

    /// tcpgoon's status line for `c`.
    pub(crate) fn status_line(&self, c: &Counts) -> String {
        status_line(self.total, c, self.total - c.dialed.min(self.total))
    }

    /// Closes the sampler with the final counts and assembles the report; the mode's own parts
    /// (TLS, WebSocket, traffic response times) start empty for the caller to set. The event
    /// stream comes back for the end event.
    pub(crate) fn into_report(
        self,
        counts: Counts,
        max_established: u64,
        mut sampler: Sampler,
    ) -> (GoonReport, Option<Stream>) {
        let elapsed = self.started.elapsed();
        sampler.close(&counts, self.total, elapsed, true);
        let Sampler { buf, stream, .. } = sampler;
        let (samples, sample_stride) = buf.finish();
        let report = GoonReport {
            not_initiated: self.total - counts.dialed.min(self.total),
            counts,
            max_established,
            connect: self.connect,
            fail: self.fail,
            dial_phase: self.dial_phase,
            elapsed,
            interrupted: self.interrupted,
            rss_start_kib: self.rss_start_kib,
            rss_dial_done_kib: self.rss_dial_done_kib,
            rss_peak_kib: peak_kib(self.rss_start_kib, self.rss_dial_done_kib),
            started_wall: self.started_wall,
            ended_wall: SystemTime::now(),
            sample_interval: self.sample_interval,
            samples,
            sample_stride,
            tls: None,
            ws: None,
            response: Latency::new(),
        };
        (report, stream)
    }
}

/// The run's peak RSS: VmHWM now, or an earlier reading when that was higher (the kernel
/// updates the high-water mark lazily, so an RSS read while dialing can exceed a later VmHWM).
pub fn peak_kib(start_kib: u64, dial_done_kib: Option<u64>) -> u64 {
    let hwm = crate::sys::rss_kib().map_or(0, |r| r.1);
    hwm.max(start_kib).max(dial_done_kib.unwrap_or(0))
}

/// `(RSS when all were dialed - RSS at start) / established`, where that means something.
pub fn per_connection_bytes(r: &GoonReport) -> Option<f64> {
    let at = r.rss_dial_done_kib?;
    let n = r.counts.established;
    (n >= PER_CONNECTION_MIN).then(|| at.saturating_sub(r.rss_start_kib).saturating_mul(1024) as f64 / n as f64)
}

pub fn print(cfg: &GoonConfig, r: &GoonReport, target: SocketAddr, out: &mut dyn Write) {
    let mut text = final_block(&FinalBlock {
        title: &format!("{} tcp test statistics", target_label(&cfg.host, target)),
        status: &status_line(cfg.connections, &r.counts, r.not_initiated),
        total_established: r.counts.established_total,
        max_concurrent: &r.max_established.to_string(),
        on_closure: r.counts.established,
        connect: &r.connect,
        fail: &r.fail,
        errors: &r.counts.errors,
    });
    if let (Some(w), Some(l)) = (&cfg.ws, &r.ws) {
        text.push_str(&super::ws::report_lines(&w.path, w.ping.is_some(), &r.counts.ws, l));
    }
    match r.dial_phase {
        Some(d) => {
            let rate = r.counts.established_total as f64 / d.as_secs_f64().max(1e-9);
            text.push_str(&format!(
                "Dial phase: {} resolved in {} ({:.0} established/s)\n",
                counted(cfg.connections, "connection", "connections"),
                go_duration(d),
                rate
            ));
        }
        None => text.push_str(&format!("Dial phase: interrupted after {}\n", go_duration(r.elapsed))),
    }
    text.push_str(&format!(
        "Memory: RSS {} KiB at start, {} KiB when all were dialed, {} KiB peak",
        r.rss_start_kib,
        r.rss_dial_done_kib.map_or("-".to_string(), |v| v.to_string()),
        r.rss_peak_kib
    ));
    if let Some(per) = per_connection_bytes(r) {
        text.push_str(&format!(" ({per:.0} B per established connection)"));
    }
    text.push('\n');
    if let Some(t) = &r.tls {
        text.push_str(&t.lines());
    }
    if let Some(plan) = &cfg.traffic {
        text.push_str(&super::traffic::report_lines(plan, &r.counts.traffic, &r.response, cfg.connections));
    }
    if r.interrupted {
        text.push_str("Run interrupted by signal.\n");
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn shard_json(cfg: &GoonConfig) -> serde_json::Value {
    match cfg.shard {
        Some(s) => json!({ "index": s.index, "count": s.count }),
        None => serde_json::Value::Null,
    }
}

fn config_json(cfg: &GoonConfig, target: SocketAddr, threads: usize) -> serde_json::Value {
    let mut v = json!({
            "host": cfg.host,
            "target": target.to_string(),
            "builtin_target": cfg.builtin,
            "connections": cfg.fleet_connections,
            "shard_connections": cfg.connections,
            "sleep_ms": cfg.sleep.as_secs_f64() * 1e3,
            "rate_per_s": cfg.rate,
            "dial_timeout_ms": cfg.dial_timeout.as_secs_f64() * 1e3,
            "interval_s": cfg.interval.as_secs_f64(),
            "hold_s": cfg.hold.as_secs_f64(),
            "source_ips": cfg.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "linger_rst": cfg.linger_rst,
            "threads": threads,
            "sndbuf": cfg.bufs.sndbuf,
            "rcvbuf": cfg.bufs.rcvbuf,
            "tls": cfg.tls.as_ref().map(|t| &t.options),
    });
    if let (Some(w), Some(m)) = (&cfg.ws, v.as_object_mut()) {
        m.insert("websocket".into(), w.config_json());
    }
    v
}

/// `--json-stream`'s first event.
pub(crate) fn stream_start(
    cfg: &GoonConfig,
    target: SocketAddr,
    threads: usize,
    started: std::time::SystemTime,
    sample_interval: std::time::Duration,
) -> serde_json::Value {
    json!({
        "event": "start",
        "format_version": FORMAT_VERSION,
        "kind": "goon",
        "host_name": crate::sys::host_name(),
        "shard": shard_json(cfg),
        "argv": cfg.argv,
        "started_at": crate::wallclock::rfc3339(started),
        "started_unix_s": crate::wallclock::unix_secs(started),
        "start_at": cfg.start_at.map(crate::wallclock::rfc3339),
        "sample_interval_s": sample_interval.as_secs_f64(),
        "histogram": Latency::precision_json(),
        "config": config_json(cfg, target, threads),
    })
}

/// One `interval` event of `--json-stream`. The shard and host are repeated so that events
/// of several shards can share one collector.
pub(crate) fn stream_interval(cfg: &GoonConfig, host_name: &str, s: &Sample) -> serde_json::Value {
    json!({ "event": "interval", "shard": shard_json(cfg), "host_name": host_name, "sample": s.to_json() })
}

/// The whole result as JSON, format version 2 (docs/json-format.md §4): version 1's keys
/// (config, counts, errors by cause, latency stats with the serialized HdrHistograms, memory,
/// exit code) plus format version, kind, command line, host, shard, wall-clock start and end,
/// histogram precision, exact moments and the per-interval samples.
pub fn json_value(cfg: &GoonConfig, r: &GoonReport, target: SocketAddr, threads: usize) -> serde_json::Value {
    let errors: serde_json::Map<String, serde_json::Value> =
        Cause::ALL.iter().map(|c| (c.name().to_string(), json!(r.counts.errors[c.index()]))).collect();
    let mut doc = json!({
        "format_version": FORMAT_VERSION,
        "kind": "goon",
        "netforge": env!("CARGO_PKG_VERSION"),
        "role": "goon",
        "argv": cfg.argv,
        "host_name": crate::sys::host_name(),
        "shard": shard_json(cfg),
        "started_at": crate::wallclock::rfc3339(r.started_wall),
        "started_unix_s": crate::wallclock::unix_secs(r.started_wall),
        "ended_at": crate::wallclock::rfc3339(r.ended_wall),
        "ended_unix_s": crate::wallclock::unix_secs(r.ended_wall),
        "start_at": cfg.start_at.map(crate::wallclock::rfc3339),
        "histogram": Latency::precision_json(),
        "config": config_json(cfg, target, threads),
        "counts": {
            "total": cfg.connections,
            "dialing": r.counts.dialing,
            "established": r.counts.established,
            "closed": r.counts.closed,
            "error": r.counts.error,
            "not_initiated": r.not_initiated,
            "total_established": r.counts.established_total,
            "max_concurrent_established": r.max_established,
            "established_on_closure": r.counts.established,
        },
        "errors": errors,
        "connect_time": latency_json(&r.connect),
        "time_to_error": latency_json(&r.fail),
        "dial_phase_s": r.dial_phase.map(|d| d.as_secs_f64()),
        "elapsed_s": r.elapsed.as_secs_f64(),
        "interrupted": r.interrupted,
        "memory": {
            "rss_start_kib": r.rss_start_kib,
            "rss_dial_done_kib": r.rss_dial_done_kib,
            "rss_peak_kib": r.rss_peak_kib,
        },
        "exit_code": r.exit_code(),
        "sample_interval_s": r.sample_interval.as_secs_f64() * r.sample_stride as f64,
        "sample_stride": r.sample_stride,
        "samples": r.samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
    });
    // `--tls` only: the key is absent otherwise.
    if let (Some(t), Some(m)) = (&r.tls, doc.as_object_mut()) {
        m.insert("tls".into(), t.to_json());
    }
    if let (Some(_), Some(l), Some(m)) = (&cfg.ws, &r.ws, doc.as_object_mut()) {
        m.insert("websocket".into(), super::ws::json_value(&r.counts.ws, l));
    }
    // Only with traffic flags: a result without them is byte for byte what it was.
    if let (Some(plan), Some(m)) = (&cfg.traffic, doc.as_object_mut()) {
        m.insert("traffic".into(), super::traffic::report_json(plan, &r.counts.traffic, &r.response, cfg.connections));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goon::reactor::Counts;

    #[test]
    fn the_peak_is_never_below_an_earlier_reading() {
        let (now, hwm) = crate::sys::rss_kib().unwrap();
        assert!(peak_kib(0, None) >= hwm.max(now));
        // A reading above the high-water mark the kernel reports (it updates it lazily).
        assert_eq!(peak_kib(0, Some(hwm + 5000)), hwm + 5000);
        assert_eq!(peak_kib(hwm + 7000, Some(hwm + 5000)), hwm + 7000);
    }

    fn report(established: u64, start_kib: u64, dialed_kib: Option<u64>) -> GoonReport {
        GoonReport {
            counts: Counts { established, ..Counts::default() },
            not_initiated: 0,
            max_established: established,
            interrupted: false,
            rss_start_kib: start_kib,
            rss_dial_done_kib: dialed_kib,
            rss_peak_kib: dialed_kib.unwrap_or(start_kib),
            ..GoonReport::nothing_dialed(0, std::time::Duration::from_secs(1), 0)
        }
    }

    #[test]
    fn per_connection_memory_only_for_many_connections() {
        // 10 connections and 1.7 MiB of start-up growth: no "177,357 B per connection".
        assert_eq!(per_connection_bytes(&report(10, 4000, Some(5732))), None);
        assert_eq!(per_connection_bytes(&report(999, 4000, Some(5000))), None);
        assert_eq!(per_connection_bytes(&report(1000, 4000, Some(5000))), Some(1024.0));
        assert_eq!(per_connection_bytes(&report(9000, 4236, Some(7364))), Some(3128.0 * 1024.0 / 9000.0));
        assert_eq!(per_connection_bytes(&report(5000, 4000, None)), None, "never dialed to the end");
        assert_eq!(per_connection_bytes(&report(5000, 6000, Some(5000))), Some(0.0), "RSS shrank");
    }
}

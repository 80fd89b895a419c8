//! goon's final report: tcpgoon's block, word for word where tcpgoon has words, then the
//! additions (percentiles, errors by cause, dial-phase speed and memory), and the JSON form
//! (format version 2, docs/json-format.md).

use std::io::Write;
use std::net::SocketAddr;

use serde_json::json;

use super::samples::Sample;
use super::{status_line, GoonConfig, GoonReport};
use crate::net::Cause;
use crate::stats::{counted, Latency};
use crate::units::go_duration;

/// `host(ip):port`, or `ip:port` when the host is the IP (IPv6 in brackets).
pub fn target_label(host: &str, target: SocketAddr) -> String {
    let ip = target.ip();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let ip_text = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
    if bare_host.parse::<std::net::IpAddr>().ok() == Some(ip) || bare_host.is_empty() {
        format!("{ip_text}:{}", target.port())
    } else {
        format!("{bare_host}({ip}):{}", target.port())
    }
}

/// Below this many established connections the RSS growth is mostly the run's fixed cost
/// (thread stacks, connection tables, histograms touched for the first time), not the connections', so a
/// per-connection figure would mislead (10 connections: 177 KB "each").
pub const PER_CONNECTION_MIN: u64 = 1000;

/// `(RSS when all were dialed - RSS at start) / established`, where that means something.
pub fn per_connection_bytes(r: &GoonReport) -> Option<f64> {
    let at = r.rss_dial_done_kib?;
    let n = r.counts.established;
    (n >= PER_CONNECTION_MIN).then(|| at.saturating_sub(r.rss_start_kib).saturating_mul(1024) as f64 / n as f64)
}

/// What tcpgoon's final block says, for one run or a merged fleet.
pub(crate) struct FinalBlock<'a> {
    /// The first line, between its dashes: `TARGET tcp test statistics`.
    pub title: &'a str,
    pub status: &'a str,
    pub total_established: u64,
    /// The max concurrent figure, with whatever explains it.
    pub max_concurrent: &'a str,
    pub on_closure: u64,
    pub connect: &'a Latency,
    pub fail: &'a Latency,
    pub errors: &'a [u64; 7],
}

/// tcpgoon's block: the statistics lines, then response times, time to error and errors by
/// cause where there were any. `goon` and `report merge` both print it.
pub(crate) fn final_block(b: &FinalBlock<'_>) -> String {
    let mut text = String::new();
    text.push_str(&format!("--- {} ---\n", b.title));
    text.push_str(b.status);
    text.push('\n');
    text.push_str("--- netforge goon execution statistics ---\n");
    text.push_str(&format!("Total established connections: {}\n", b.total_established));
    text.push_str(&format!("Max concurrent established connections: {}\n", b.max_concurrent));
    text.push_str(&format!("Number of established connections on closure: {}\n", b.on_closure));
    if !b.connect.is_empty() {
        let what = counted(b.connect.count, "successful connection", "successful connections");
        text.push_str(&format!("Response time stats for {what} min/avg/max/dev = {}\n", b.connect.min_avg_max_dev()));
        text.push_str(&format!(
            "Response time percentiles for {what} p50/p90/p99/p99.9/max = {}\n",
            b.connect.percentiles_line()
        ));
    }
    if !b.fail.is_empty() {
        text.push_str(&format!(
            "Time to error stats for {} min/avg/max/dev = {}\n",
            counted(b.fail.count, "failed connection", "failed connections"),
            b.fail.min_avg_max_dev()
        ));
        let causes: Vec<String> = Cause::ALL
            .iter()
            .filter(|c| b.errors[c.index()] > 0)
            .map(|c| format!("{} {}", c.name(), b.errors[c.index()]))
            .collect();
        text.push_str(&format!("Errors by cause: {}\n", causes.join(", ")));
    }
    text
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
    if r.interrupted {
        text.push_str("Run interrupted by signal.\n");
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The goon JSON format this netforge writes and `report merge` reads.
pub const FORMAT_VERSION: u64 = 2;

/// Whole-run latency: version 1's derived values plus the mergeable moments and histogram.
pub(crate) fn latency_json(l: &Latency) -> serde_json::Value {
    if l.is_empty() {
        return json!({ "count": 0 });
    }
    let mut v = json!({
        "count": l.count,
        "min_us": l.min().as_secs_f64() * 1e6,
        "avg_us": l.mean().as_secs_f64() * 1e6,
        "max_us": l.max().as_secs_f64() * 1e6,
        "dev_us": l.stddev().as_secs_f64() * 1e6,
        "p50_us": l.percentile(50.0).as_micros() as u64,
        "p90_us": l.percentile(90.0).as_micros() as u64,
        "p99_us": l.percentile(99.0).as_micros() as u64,
        "p999_us": l.percentile(99.9).as_micros() as u64,
        "histogram_unit": "us",
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (v.as_object_mut(), l.moments_json()) {
        m.extend(extra);
    }
    v
}

fn shard_json(cfg: &GoonConfig) -> serde_json::Value {
    match cfg.shard {
        Some(s) => json!({ "index": s.index, "count": s.count }),
        None => serde_json::Value::Null,
    }
}

fn config_json(cfg: &GoonConfig, target: SocketAddr, threads: usize) -> serde_json::Value {
    json!({
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
    })
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
    json!({
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goon::reactor::Counts;

    fn report(established: u64, start_kib: u64, dialed_kib: Option<u64>) -> GoonReport {
        GoonReport {
            counts: Counts { established, ..Counts::default() },
            not_initiated: 0,
            max_established: established,
            interrupted: false,
            rss_start_kib: start_kib,
            rss_dial_done_kib: dialed_kib,
            rss_peak_kib: dialed_kib.unwrap_or(start_kib),
            ..GoonReport::nothing_dialed(0, std::time::Duration::from_secs(1))
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

    #[test]
    fn labels() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(target_label("127.0.0.1", t), "127.0.0.1:80");
        assert_eq!(target_label("localhost", t), "localhost(127.0.0.1):80");
        let t6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(target_label("::1", t6), "[::1]:80");
        assert_eq!(target_label("[::1]", t6), "[::1]:80");
    }
}

//! tcpgoon's final block, as `goon` and `report merge` print it, its target label, and the
//! whole-run latency object of the goon JSON result (docs/json-format.md).

use std::net::SocketAddr;

use serde_json::json;

use crate::net::Cause;
use crate::stats::{counted, Latency};

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

#[cfg(test)]
mod tests {
    use super::*;

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

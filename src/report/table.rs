//! `report merge`'s text: the tcpgoon-style block for the fleet, the per-shard table and the
//! thresholds' outcomes.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::result::block::{final_block, target_label, FinalBlock};
use crate::result::totals::Totals;
use crate::stats::counted;
use crate::units::go_duration;

use super::merge::Merged;
use super::thresholds::Verdict;

fn status_line(c: &Totals) -> String {
    format!(
        "Total: {}, Dialing: {}, Established: {}, Closed: {}, Error: {}, NotInitiated: {}",
        c.total, c.dialing, c.established, c.closed, c.error, c.not_initiated
    )
}

fn micros(d: Duration) -> String {
    go_duration(d)
}

/// The tcpgoon-style block for the fleet, the per-shard table and the thresholds.
pub fn print(m: &Merged, verdicts: &[Verdict], out: &mut dyn Write) {
    let first = &m.docs[0];
    let label = match first.target.parse::<SocketAddr>() {
        Ok(addr) if !first.builtin => target_label(&first.host, addr),
        _ => "the built-in sink".to_string(),
    };
    let present = m.docs.len() as u64;
    let mut t = final_block(&FinalBlock {
        title: &format!("{label} tcp test statistics (fleet: {} of {} shards)", present, m.shards),
        status: &status_line(&m.counts),
        total_established: m.counts.total_established,
        max_concurrent: &format!(
            "{} (largest sum of the shards' samples every {}; at most {}, the sum of the shards' own peaks)",
            m.counts.max_concurrent_established,
            go_duration(Duration::from_secs_f64(m.sample_interval_s)),
            m.max_concurrent_upper
        ),
        on_closure: m.counts.established,
        connect: &m.connect,
        fail: &m.fail,
        errors: &m.counts.errors,
    });
    if let Some(tls) = &m.tls {
        t.push_str(&tls.lines());
    }
    if let Some((c, l)) = &m.ws {
        let cfg = &first.doc["config"]["websocket"];
        let path = cfg["path"].as_str().unwrap_or("?");
        t.push_str(&crate::result::ws::report_lines(path, !cfg["ping_s"].is_null(), c, l));
    }
    let starts: Vec<f64> = m.docs.iter().map(|d| d.started_unix_s).collect();
    let spread =
        starts.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - starts.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut hosts: Vec<&str> = m.docs.iter().map(|d| d.host_name.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    t.push_str(&format!(
        "Fleet: {} on {}, starts spread over {}, {} from first start to last end\n",
        counted(present, "shard", "shards"),
        counted(hosts.len() as u64, "host", "hosts"),
        go_duration(Duration::from_secs_f64(spread.max(0.0))),
        go_duration(Duration::from_secs_f64((m.ended_unix_s - m.started_unix_s).max(0.0)))
    ));
    if !m.missing.is_empty() {
        let names: Vec<String> = m.missing.iter().map(|i| format!("{i}/{}", m.shards)).collect();
        t.push_str(&format!("Missing shards (not counted): {}\n", names.join(", ")));
    }
    if let Some(tr) = &m.traffic {
        t.push_str(&tr.plan.line(m.counts.total));
        t.push('\n');
        t.push_str(&crate::result::traffic::count_lines(
            &tr.counts,
            &tr.response,
            tr.rate,
            tr.measures,
            m.counts.total,
        ));
    }
    let host_w = m.docs.iter().map(|d| d.host_name.len()).max().unwrap_or(4).clamp(4, 32);
    t.push_str(&format!(
        "{:<9} {:<host_w$} {:>9} {:>11} {:>13} {:>9} {:>9} {:>12} {:>12} {:>12} {:>4}  {}\n",
        "Shard",
        "Host",
        "Total",
        "Established",
        "MaxConcurrent",
        "Closed",
        "Error",
        "NotInitiated",
        "p50",
        "p99",
        "Exit",
        "Started"
    ));
    for d in &m.docs {
        let shard = d.shard.map_or("-".to_string(), |(i, k)| format!("{i}/{k}"));
        let (p50, p99) = if d.connect.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (micros(d.connect.percentile(50.0)), micros(d.connect.percentile(99.0)))
        };
        let host: String = d.host_name.chars().take(32).collect();
        t.push_str(&format!(
            "{:<9} {:<host_w$} {:>9} {:>11} {:>13} {:>9} {:>9} {:>12} {:>12} {:>12} {:>4}  {}\n",
            shard,
            host,
            d.counts.total,
            d.counts.established,
            d.counts.max_concurrent_established,
            d.counts.closed,
            d.counts.error,
            d.counts.not_initiated,
            p50,
            p99,
            d.exit_code,
            d.started_at
        ));
    }
    if let Some(p) = &m.probe {
        t.push_str(&p.text());
    }
    for v in verdicts {
        if v.ok {
            t.push_str(&format!("threshold ok: {} {}: {}\n", v.flag, v.limit, v.value));
        } else {
            t.push_str(&format!("threshold violated: {} {}: {}\n", v.flag, v.limit, v.value));
        }
    }
    let _ = out.write_all(t.as_bytes());
    let _ = out.flush();
}

//! A `goon --ws` result's `websocket` object (docs/json-format.md): the upgrade and ping
//! latencies, the final block's WebSocket lines, the whole-run and per-interval JSON, and
//! reading it back for `report merge`.

use serde_json::json;

use crate::result::block::latency_json;
use crate::stats::{counted, Latency};
use crate::ws::client::ClientCounts;

/// Latencies a reactor swaps out with each update.
#[derive(Clone, Debug, Default)]
pub struct WsLatencies {
    pub upgrade: Latency,
    pub ping: Latency,
}

impl WsLatencies {
    pub fn merge(&mut self, o: &WsLatencies) {
        self.upgrade.merge(&o.upgrade);
        self.ping.merge(&o.ping);
    }
}

/// The WebSocket lines of the final block, after tcpgoon's.
/// `pinging`: `--ws-ping` was given.
pub fn report_lines(path: &str, pinging: bool, c: &ClientCounts, l: &WsLatencies) -> String {
    let mut t = format!(
        "WebSocket {}: {} upgraded, {} failed, {} open on closure\n",
        path,
        c.upgraded_total,
        c.failed(),
        c.upgraded
    );
    if !l.upgrade.is_empty() {
        let what = counted(l.upgrade.count, "upgrade", "upgrades");
        t += &format!("Upgrade time stats for {what} min/avg/max/dev = {}\n", l.upgrade.min_avg_max_dev());
        t += &format!("Upgrade time percentiles for {what} p50/p90/p99/p99.9/max = {}\n", l.upgrade.percentiles_line());
    }
    if c.failed() > 0 {
        let mut causes: Vec<String> =
            c.failed_status.sorted().iter().map(|(code, n)| format!("status {code} {n}")).collect();
        if c.failed_status.other > 0 {
            causes.push(format!("other statuses {}", c.failed_status.other));
        }
        for (name, n) in
            [("timeout", c.failed_timeout), ("closed", c.failed_closed), ("bad response", c.failed_bad_response)]
        {
            if n > 0 {
                causes.push(format!("{name} {n}"));
            }
        }
        t += &format!("Upgrade failures: {}\n", causes.join(", "));
    }
    if pinging || c.pings_sent > 0 {
        t += &format!(
            "Pings: {} sent, {} answered, {} unanswered, {} in flight at the end, {} not sent (peer not reading)\n",
            c.pings_sent, c.pongs, c.pings_unanswered, c.pings_outstanding, c.pings_unsent
        );
    }
    if !l.ping.is_empty() {
        let what = counted(l.ping.count, "pong", "pongs");
        t += &format!("Ping RTT stats for {what} min/avg/max/dev = {}\n", l.ping.min_avg_max_dev());
        t += &format!("Ping RTT percentiles for {what} p50/p90/p99/p99.9/max = {}\n", l.ping.percentiles_line());
    }
    if c.close_frames + c.pings_received + c.protocol_errors > 0 {
        t += &format!(
            "From the server: {} pings (the last of each read answered), {} close frames, {} protocol errors\n",
            c.pings_received, c.close_frames, c.protocol_errors
        );
    }
    t
}

/// The result's `websocket` object (docs/json-format.md): counts, failures and both latencies
/// with their mergeable moments and histograms.
pub fn json_value(c: &ClientCounts, l: &WsLatencies) -> serde_json::Value {
    let by_status: serde_json::Map<String, serde_json::Value> =
        c.failed_status.sorted().iter().map(|(code, n)| (code.to_string(), json!(n))).collect();
    json!({
        "upgraded": c.upgraded_total,
        "open_on_closure": c.upgraded,
        "upgrading_on_closure": c.upgrading,
        "failed": c.failed(),
        "failed_by_status": by_status,
        "failed_other_status": c.failed_status.other,
        "failed_timeout": c.failed_timeout,
        "failed_closed": c.failed_closed,
        "failed_bad_response": c.failed_bad_response,
        "pings_sent": c.pings_sent,
        "pongs": c.pongs,
        "pings_unanswered": c.pings_unanswered,
        "pings_in_flight_on_closure": c.pings_outstanding,
        "pings_unsent": c.pings_unsent,
        "server_pings": c.pings_received,
        "close_frames": c.close_frames,
        "protocol_errors": c.protocol_errors,
        "upgrade_time": latency_json(&l.upgrade),
        "ping_rtt": latency_json(&l.ping),
    })
}

/// Reads [`json_value`]'s object back (for `report merge`); `int` and the key names are
/// relative to it. Errors name the key.
pub fn from_json(v: &serde_json::Value) -> Result<(ClientCounts, WsLatencies), String> {
    let int = |k: &str| v.get(k).and_then(|x| x.as_u64()).ok_or(format!("{k}: missing or not an integer"));
    let mut c = ClientCounts {
        upgraded_total: int("upgraded")?,
        upgraded: int("open_on_closure")?,
        upgrading: int("upgrading_on_closure")?,
        failed_timeout: int("failed_timeout")?,
        failed_closed: int("failed_closed")?,
        failed_bad_response: int("failed_bad_response")?,
        pings_sent: int("pings_sent")?,
        pongs: int("pongs")?,
        pings_unanswered: int("pings_unanswered")?,
        // Absent from results written before it was counted: none known then.
        pings_outstanding: match v.get("pings_in_flight_on_closure") {
            None => 0,
            Some(_) => int("pings_in_flight_on_closure")?,
        },
        pings_unsent: int("pings_unsent")?,
        pings_received: int("server_pings")?,
        close_frames: int("close_frames")?,
        protocol_errors: int("protocol_errors")?,
        ..ClientCounts::default()
    };
    let by =
        v.get("failed_by_status").and_then(|x| x.as_object()).ok_or("failed_by_status: missing or not an object")?;
    for (code, n) in by {
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..=999).contains(c))
            .ok_or(format!("failed_by_status.{code}: not an HTTP status"))?;
        let n = n.as_u64().ok_or(format!("failed_by_status.{code}: not an integer"))?;
        c.failed_status.add(code, n);
    }
    c.failed_status.other += int("failed_other_status")?;
    let lat = |k: &str| {
        let x = v.get(k).ok_or(format!("{k}: missing"))?;
        Latency::from_moments_json(x).map_err(|e| format!("{k}.{e}"))
    };
    Ok((c, WsLatencies { upgrade: lat("upgrade_time")?, ping: lat("ping_rtt")? }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn json_round_trips_exactly() {
        let mut c = ClientCounts {
            upgraded_total: 7,
            upgraded: 5,
            failed_timeout: 1,
            pings_sent: 9,
            pongs: 8,
            pings_outstanding: 1,
            ..Default::default()
        };
        c.failed_status.add(403, 2);
        c.failed_status.add(404, 1);
        let mut l = WsLatencies::default();
        for us in [120u64, 250, 9000] {
            l.upgrade.record(Duration::from_micros(us));
        }
        l.ping.record(Duration::from_micros(33));
        let v = json_value(&c, &l);
        assert_eq!(v["failed_by_status"], json!({"403": 2, "404": 1}));
        assert_eq!(v["failed"], json!(4));
        let (c2, l2) = from_json(&v).unwrap();
        assert_eq!(c2, c);
        assert_eq!((l2.upgrade.count, l2.upgrade.sum_ns, l2.ping.max_ns), (3, l.upgrade.sum_ns, 33_000));
        let mut bad = v.clone();
        bad["failed_by_status"] = json!({"abc": 1});
        assert_eq!(from_json(&bad).unwrap_err(), "failed_by_status.abc: not an HTTP status");
        let text = report_lines("/", true, &c, &l);
        assert!(text.starts_with("WebSocket /: 7 upgraded, 4 failed, 5 open on closure\n"), "{text}");
        assert!(text.contains("Upgrade failures: status 403 2, status 404 1, timeout 1\n"), "{text}");
        assert!(text.contains("Pings: 9 sent, 8 answered, 0 unanswered, 1 in flight at the end, 0 not sent"), "{text}");
        // A result written before the in-flight count existed reads as none in flight.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("pings_in_flight_on_closure");
        assert_eq!(from_json(&old).unwrap().0.pings_outstanding, 0);
        old["pings_in_flight_on_closure"] = json!("one");
        assert_eq!(from_json(&old).unwrap_err(), "pings_in_flight_on_closure: missing or not an integer");
        assert!(text.contains("Ping RTT stats for 1 pong min/avg/max/dev"), "{text}");
    }
}

//! A goon result's `traffic` object (docs/json-format.md): the counts every reactor, shard and
//! fleet adds, the final block's count lines and the object itself, shared by goon and `report
//! merge`.

use crate::stats::Latency;

/// Whole per-reactor traffic counts (summed over reactors and shards).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Connections that carried traffic (a schedule started at their establishment).
    pub flows: u64,
    /// Messages that came due (first messages and slots) before the traffic phase ended.
    pub scheduled: u64,
    /// Of them, slots of the repeated message.
    pub slots: u64,
    /// Messages written whole; of them, first messages.
    pub sent: u64,
    pub first_sent: u64,
    /// Complete responses matched to a message; of them, answers to first messages.
    pub responses: u64,
    pub first_responses: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Slots that came due while the connection had the outstanding bound (`goon::traffic::OUTSTANDING_MAX`) unanswered.
    pub behind: u64,
    /// Complete responses with no message left to answer (the peer sent more than asked).
    pub unmatched: u64,
}

impl TrafficCounts {
    pub fn add(&mut self, o: &TrafficCounts) {
        self.flows += o.flows;
        self.scheduled += o.scheduled;
        self.slots += o.slots;
        self.sent += o.sent;
        self.first_sent += o.first_sent;
        self.responses += o.responses;
        self.first_responses += o.first_responses;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.behind += o.behind;
        self.unmatched += o.unmatched;
    }

    /// Due but never sent.
    pub fn unsent(&self) -> u64 {
        self.scheduled.saturating_sub(self.sent)
    }

    /// Sent and never answered (with a response mode).
    pub fn unanswered(&self) -> u64 {
        self.sent.saturating_sub(self.responses)
    }

    /// `(sent/s, responses/s)` of the repeated message: per connection-second of schedule
    /// (`slots / rate`), times the connections that carried traffic. With every slot sent and
    /// answered it is exactly `rate × flows`.
    pub fn achieved(&self, rate: f64) -> Option<(f64, f64)> {
        if self.slots == 0 {
            return None;
        }
        let conn_s = self.slots as f64 / rate;
        let per = |n: u64| n as f64 / conn_s * self.flows as f64;
        Some((per(self.sent - self.first_sent), per(self.responses - self.first_responses)))
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "flows": self.flows,
            "scheduled": self.scheduled,
            "slots": self.slots,
            "sent": self.sent,
            "first_sent": self.first_sent,
            "responses": self.responses,
            "first_responses": self.first_responses,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "behind": self.behind,
            "unmatched": self.unmatched,
            "unsent": self.unsent(),
            "unanswered": self.unanswered(),
        })
    }

    /// Reads [`TrafficCounts::to_json`] (the derived keys are ignored); the error names the key.
    pub fn from_json(v: &serde_json::Value) -> Result<TrafficCounts, String> {
        let int =
            |k: &str| v.get(k).and_then(serde_json::Value::as_u64).ok_or(format!("{k}: missing or not an integer"));
        let c = TrafficCounts {
            flows: int("flows")?,
            scheduled: int("scheduled")?,
            slots: int("slots")?,
            sent: int("sent")?,
            first_sent: int("first_sent")?,
            responses: int("responses")?,
            first_responses: int("first_responses")?,
            bytes_up: int("bytes_up")?,
            bytes_down: int("bytes_down")?,
            behind: int("behind")?,
            unmatched: int("unmatched")?,
        };
        if c.first_sent > c.sent || c.first_responses > c.responses {
            return Err("first_sent: more than sent (or first_responses more than responses)".into());
        }
        Ok(c)
    }
}

/// What the `Traffic:` line says: a run's plan, or a fleet's read back from its
/// `traffic.config` (which every shard of one test shares).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSummary {
    pub first_bytes: Option<u64>,
    /// The repeated message's size and rate per connection.
    pub message: Option<(u64, f64)>,
    pub duration: std::time::Duration,
    pub expect_bytes: Option<u64>,
    /// As `--marker` takes it (escaped).
    pub marker: Option<String>,
}

impl PlanSummary {
    /// One line saying what each connection sends and how responses end.
    pub fn line(&self, connections: u64) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.first_bytes {
            parts.push(format!("a first message of {n} B"));
        }
        if let Some((n, r)) = self.message {
            parts.push(format!("{n} B messages at {r}/s for {}", crate::units::go_duration(self.duration)));
        }
        let until = match (&self.expect_bytes, &self.marker) {
            (Some(n), _) => format!("a response is {n} B"),
            (None, Some(m)) => format!("a response ends with \"{m}\""),
            (None, None) => "no responses expected".to_string(),
        };
        format!("Traffic: {} on each of {connections} connections; {until}", parts.join(" and "))
    }

    /// From a result's `traffic.config` (docs/json-format.md): on error the key under it that
    /// is wrong, and how.
    pub fn from_json(c: &serde_json::Value) -> Result<PlanSummary, (&'static str, &'static str)> {
        let get = |k: &'static str| c.get(k).filter(|v| !v.is_null());
        let count = |k: &'static str| match get(k) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or((k, "not a whole number")),
        };
        let message = match (count("message_bytes")?, get("message_rate_per_s")) {
            (Some(n), Some(r)) => {
                let r = r.as_f64().filter(|r| *r > 0.0).ok_or(("message_rate_per_s", "not a positive number"))?;
                Some((n, r))
            }
            (None, None) => None,
            (Some(_), None) => return Err(("message_rate_per_s", "missing, but message_bytes is set")),
            (None, Some(_)) => return Err(("message_bytes", "missing, but message_rate_per_s is set")),
        };
        let secs = get("duration_s").ok_or(("duration_s", "missing"))?;
        let duration = secs
            .as_f64()
            .filter(|s| *s >= 0.0)
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .ok_or(("duration_s", "not a non-negative number of seconds"))?;
        // The file keeps whole nanoseconds as seconds in a double: round back to them.
        let duration = std::time::Duration::from_nanos((duration.as_secs_f64() * 1e9).round() as u64);
        let marker = match get("marker") {
            None => None,
            Some(m) => Some(m.as_str().ok_or(("marker", "not a string"))?.to_string()),
        };
        Ok(PlanSummary {
            first_bytes: count("first_message_bytes")?,
            message,
            duration,
            expect_bytes: count("expect_bytes")?,
            marker,
        })
    }
}

/// The counts, rates, bytes and response times (`goon`'s block and `report merge`'s).
pub fn count_lines(
    c: &TrafficCounts,
    response: &Latency,
    rate: Option<f64>,
    measures: bool,
    connections: u64,
) -> String {
    let mut t = format!(
        "Messages: {} scheduled, {} sent, {} answered, {} behind, {} unsent, {} unanswered, {} unmatched\n",
        c.scheduled,
        c.sent,
        c.responses,
        c.behind,
        c.unsent(),
        if measures { c.unanswered() } else { 0 },
        c.unmatched
    );
    if let Some(r) = rate {
        let requested = r * connections as f64;
        match c.achieved(r) {
            Some((sent, answered)) => t.push_str(&format!(
                "Message rate: {sent:.1}/s sent, {answered:.1}/s answered, of {requested}/s requested ({r}/s x {connections} connections)\n"
            )),
            None => t.push_str(&format!("Message rate: nothing came due, of {requested}/s requested\n")),
        }
    }
    t.push_str(&format!("Bytes: {} up, {} down\n", c.bytes_up, c.bytes_down));
    if measures {
        let or_dash = |f: &dyn Fn() -> String| if response.is_empty() { "-".to_string() } else { f() };
        t.push_str(&format!(
            "Response time from the intended send time p50/p90/p99/p99.9/max: {}, min/avg/max/dev: {}\n",
            or_dash(&|| response.percentiles_line()),
            or_dash(&|| response.min_avg_max_dev()),
        ));
    }
    t
}

/// The `traffic` object from its parts (`report merge` recomputes the rates from merged counts).
pub fn traffic_json(
    config: serde_json::Value,
    rate: Option<f64>,
    c: &TrafficCounts,
    response: &Latency,
    connections: u64,
) -> serde_json::Value {
    let plan_rate = rate;
    let achieved = plan_rate.and_then(|r| c.achieved(r));
    serde_json::json!({
        "config": config,
        "counts": c.to_json(),
        "requested_per_s": plan_rate.map(|r| r * connections as f64),
        "sent_per_s": achieved.map(|a| a.0),
        "responses_per_s": achieved.map(|a| a.1),
        "response_time": crate::result::block::latency_json(response),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_plan_reads_back_from_its_config_and_refuses_what_is_not_one() {
        let c = json!({"first_message_bytes": 3, "message_bytes": 5, "message_rate_per_s": 2.5,
            "duration_s": 0.3, "expect_bytes": null, "marker": "ok\\n", "outstanding_max": 128});
        let p = PlanSummary::from_json(&c).unwrap();
        assert_eq!(p.duration, Duration::from_millis(300), "seconds in a double round back to whole ns");
        assert_eq!(
            p.line(7),
            "Traffic: a first message of 3 B and 5 B messages at 2.5/s for 300ms on each of 7 connections; \
             a response ends with \"ok\\n\""
        );
        let bad = |k: &str, v: serde_json::Value| {
            let mut c = c.clone();
            c[k] = v;
            PlanSummary::from_json(&c).unwrap_err()
        };
        assert_eq!(bad("message_bytes", json!(-1)), ("message_bytes", "not a whole number"));
        assert_eq!(bad("message_rate_per_s", json!(0)), ("message_rate_per_s", "not a positive number"));
        assert_eq!(bad("message_rate_per_s", json!(null)).0, "message_rate_per_s");
        assert_eq!(bad("duration_s", json!("1s")).0, "duration_s");
        assert_eq!(bad("duration_s", json!(-1.0)).0, "duration_s");
        assert_eq!(bad("marker", json!(5)), ("marker", "not a string"));
        assert_eq!(bad("first_message_bytes", json!(1.5)).0, "first_message_bytes");
        let only_first = json!({"first_message_bytes": 2, "duration_s": 0, "expect_bytes": 2});
        assert_eq!(
            PlanSummary::from_json(&only_first).unwrap().line(1),
            "Traffic: a first message of 2 B on each of 1 connections; a response is 2 B"
        );
    }
}

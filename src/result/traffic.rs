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

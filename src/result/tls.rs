//! The TLS figures of a goon result (`--tls`; docs/json-format.md §4 `tls`): handshakes done
//! (full and resumed apart), failed and unfinished, failures by cause, the handshake-latency
//! HdrHistogram and the span the handshakes took, as the final block prints them and the JSON
//! carries them. `report merge` reads them back ([`TlsTotals::from_json`]) and adds them
//! exactly: counts summed, histograms added, the fleet's span from the earliest start.

use serde_json::{json, Map, Value};

use crate::result::block::latency_json;
use crate::stats::{counted, Latency};
use crate::tls::{TlsCause, CAUSES};

#[derive(Clone, Debug)]
pub struct TlsTotals {
    pub full: u64,
    pub resumed: u64,
    pub failed: u64,
    /// Still handshaking when the run ended.
    pub unfinished: u64,
    pub failures: [u64; CAUSES],
    /// TCP connect done → handshake done.
    pub handshake: Latency,
    /// Seconds from the start of dialing to the last handshake done (None: none was done).
    pub span_s: Option<f64>,
}

impl Default for TlsTotals {
    fn default() -> Self {
        TlsTotals {
            full: 0,
            resumed: 0,
            failed: 0,
            unfinished: 0,
            failures: [0; CAUSES],
            handshake: Latency::new(),
            span_s: None,
        }
    }
}

impl TlsTotals {
    pub fn done(&self) -> u64 {
        self.full + self.resumed
    }

    /// Handshakes done per second of the span (start of dialing → last handshake done).
    pub fn per_second(&self) -> Option<f64> {
        self.span_s.filter(|s| *s > 0.0).map(|s| self.done() as f64 / s)
    }

    /// The final block's TLS lines (after tcpgoon's).
    pub fn lines(&self) -> String {
        let mut t = format!(
            "TLS handshakes: {} done ({} full, {} resumed), {} failed, {} unfinished",
            self.done(),
            self.full,
            self.resumed,
            self.failed,
            self.unfinished
        );
        if let Some(r) = self.per_second() {
            t.push_str(&format!(", {r:.0} handshakes/s"));
        }
        t.push('\n');
        if !self.handshake.is_empty() {
            let what = counted(self.handshake.count, "handshake", "handshakes");
            t.push_str(&format!(
                "TLS handshake time stats for {what} min/avg/max/dev = {}\n",
                self.handshake.min_avg_max_dev()
            ));
            t.push_str(&format!(
                "TLS handshake time percentiles for {what} p50/p90/p99/p99.9/max = {}\n",
                self.handshake.percentiles_line()
            ));
        }
        if self.failed > 0 {
            let causes: Vec<String> = TlsCause::ALL
                .iter()
                .filter(|c| self.failures[c.index()] > 0)
                .map(|c| format!("{} {}", c.name(), self.failures[c.index()]))
                .collect();
            t.push_str(&format!("TLS failures by cause: {}\n", causes.join(", ")));
        }
        t
    }

    pub fn to_json(&self) -> Value {
        let failures: Map<String, Value> =
            TlsCause::ALL.iter().map(|c| (c.name().to_string(), json!(self.failures[c.index()]))).collect();
        json!({
            "handshakes": {
                "done": self.done(),
                "full": self.full,
                "resumed": self.resumed,
                "failed": self.failed,
                "unfinished": self.unfinished,
            },
            "handshakes_per_s": self.per_second(),
            "handshake_span_s": self.span_s,
            "failures": failures,
            "handshake_time": latency_json(&self.handshake),
        })
    }

    /// Reads `tls` back; the error names the key below it (`handshakes.full: ...`).
    pub fn from_json(v: &Value) -> Result<TlsTotals, String> {
        let int = |path: &str| -> Result<u64, String> {
            let mut x = v;
            for k in path.split('.') {
                x = x.get(k).ok_or_else(|| format!("{path}: missing"))?;
            }
            x.as_u64().ok_or_else(|| format!("{path}: not a non-negative integer"))
        };
        let mut failures = [0u64; CAUSES];
        for c in TlsCause::ALL {
            // A cause this netforge does not know is refused rather than dropped.
            failures[c.index()] = int(&format!("failures.{}", c.name()))?;
        }
        if let Some(m) = v.get("failures").and_then(Value::as_object) {
            if let Some(k) = m.keys().find(|k| !TlsCause::ALL.iter().any(|c| c.name() == k.as_str())) {
                return Err(format!("failures.{k}: not a TLS failure cause this netforge knows"));
            }
        }
        let span_s = match v.get("handshake_span_s") {
            None | Some(Value::Null) => None,
            Some(x) => Some(
                x.as_f64()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| "handshake_span_s: not a non-negative number".to_string())?,
            ),
        };
        let h = v.get("handshake_time").ok_or_else(|| "handshake_time: missing".to_string())?;
        let handshake = Latency::from_moments_json(h).map_err(|e| format!("handshake_time.{e}"))?;
        Ok(TlsTotals {
            full: int("handshakes.full")?,
            resumed: int("handshakes.resumed")?,
            failed: int("handshakes.failed")?,
            unfinished: int("handshakes.unfinished")?,
            failures,
            handshake,
            span_s,
        })
    }

    /// Adds another shard's figures; `offset_s` is how much later than the fleet's first start
    /// that shard started (its span then ends that much later on the fleet's clock).
    pub fn add(&mut self, o: &TlsTotals, offset_s: f64) {
        self.full += o.full;
        self.resumed += o.resumed;
        self.failed += o.failed;
        self.unfinished += o.unfinished;
        for (a, b) in self.failures.iter_mut().zip(o.failures.iter()) {
            *a += b;
        }
        self.handshake.merge(&o.handshake);
        if let Some(s) = o.span_s {
            let end = s + offset_s.max(0.0);
            self.span_s = Some(self.span_s.map_or(end, |m| m.max(end)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn totals(full: u64, us: &[u64], span: f64) -> TlsTotals {
        let mut t = TlsTotals { full, resumed: 1, failed: 2, span_s: Some(span), ..TlsTotals::default() };
        t.failures[TlsCause::CertUnknownIssuer.index()] = 2;
        for u in us {
            t.handshake.record(Duration::from_micros(*u));
        }
        t
    }

    #[test]
    fn json_round_trip_and_exact_merge() {
        let a = totals(10, &[100, 200, 300], 2.0);
        let back = TlsTotals::from_json(&a.to_json()).unwrap();
        assert_eq!(back.to_json(), a.to_json());
        let b = totals(5, &[5000], 1.0);
        let mut m = TlsTotals::default();
        m.add(&a, 0.0);
        m.add(&b, 3.0);
        assert_eq!((m.full, m.resumed, m.failed), (15, 2, 4));
        assert_eq!(m.failures[TlsCause::CertUnknownIssuer.index()], 4);
        assert_eq!(m.handshake.count, 4);
        assert_eq!(m.handshake.max(), Duration::from_micros(5000));
        assert_eq!(m.span_s, Some(4.0), "the later shard's span ends 3 s + 1 s after the fleet's start");
        assert_eq!(m.per_second(), Some(17.0 / 4.0));
        let mut v = a.to_json();
        v["failures"]["made_up"] = json!(1);
        assert_eq!(
            TlsTotals::from_json(&v).unwrap_err(),
            "failures.made_up: not a TLS failure cause this netforge knows"
        );
        let mut v = a.to_json();
        v["handshakes"]["full"] = json!("x");
        assert_eq!(TlsTotals::from_json(&v).unwrap_err(), "handshakes.full: not a non-negative integer");
    }

    #[test]
    fn lines_name_failures_by_cause() {
        let t = totals(3, &[1000], 0.5);
        let text = t.lines();
        assert!(
            text.starts_with("TLS handshakes: 4 done (3 full, 1 resumed), 2 failed, 0 unfinished, 8 handshakes/s\n"),
            "{text}"
        );
        assert!(text.contains("TLS handshake time percentiles for 1 handshake p50/p90/p99/p99.9/max = "), "{text}");
        assert!(text.ends_with("TLS failures by cause: cert_unknown_issuer 2\n"), "{text}");
    }
}

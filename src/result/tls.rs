//! The TLS figures of a goon result (`--tls`; docs/json-format.md §4 `tls`): handshakes done
//! (full and resumed apart), failed and unfinished, failures by cause, the handshake-latency
//! HdrHistogram, the span the handshakes took and, with `--alpn`, handshakes per negotiated
//! protocol ([`AlpnTally`]), as the final block prints them and the JSON carries them. `report merge` reads them back ([`TlsTotals::from_json`]) and adds them
//! exactly: counts summed, histograms added, the fleet's span from the earliest start.

use serde_json::{json, Map, Value};

use crate::result::block::latency_json;
use crate::stats::{counted, Latency};
use crate::tls::{TlsCause, ALPN_MAX, ALPN_NAME_MAX, ALPN_NONE, CAUSES};

/// Handshakes done per negotiated ALPN protocol (`--alpn`): one count per protocol offered
/// and `none` for those where the server chose none. Bounded by what was offered (at most
/// [`ALPN_MAX`] names): the server's bytes are never a key, since rustls refuses a protocol
/// goon did not offer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlpnTally {
    /// (protocol, handshakes): in the order offered, or read back from JSON in key order.
    pub protocols: Vec<(String, u64)>,
    pub none: u64,
}

impl AlpnTally {
    /// From a reactor's slots (see `goon::tls::alpn_slot`): slot 0 is `none`, slot `i + 1`
    /// the `i`-th protocol offered.
    pub fn from_slots(offered: &[String], slots: &[u64]) -> AlpnTally {
        let at = |i: usize| slots.get(i).copied().unwrap_or(0);
        AlpnTally { protocols: offered.iter().enumerate().map(|(i, p)| (p.clone(), at(i + 1))).collect(), none: at(0) }
    }

    /// The final block's line: every protocol offered, then `none`.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self.protocols.iter().map(|(p, n)| format!("{p}: {n}")).collect();
        parts.push(format!("{ALPN_NONE}: {}", self.none));
        format!("TLS ALPN negotiated: {}\n", parts.join(", "))
    }

    pub fn to_json(&self) -> Value {
        let mut m: Map<String, Value> = self.protocols.iter().map(|(p, n)| (p.clone(), json!(n))).collect();
        m.insert(ALPN_NONE.into(), json!(self.none));
        Value::Object(m)
    }

    /// Reads `alpn` back; errors name the key (`alpn.h2: ...`). At most [`ALPN_MAX`]
    /// protocols of 1..=255 bytes besides `none`, which must be there.
    pub fn from_json(v: &Value) -> Result<AlpnTally, String> {
        let m = v.as_object().ok_or_else(|| "alpn: not an object of protocol: handshakes".to_string())?;
        if m.len() > ALPN_MAX + 1 {
            return Err(format!("alpn: {} keys, at most {ALPN_MAX} protocols and {ALPN_NONE:?}", m.len()));
        }
        let count = |k: &str, x: &Value| x.as_u64().ok_or_else(|| format!("alpn.{k}: not a non-negative integer"));
        let mut t = AlpnTally::default();
        let mut none = None;
        for (k, x) in m {
            if k == ALPN_NONE {
                none = Some(count(k, x)?);
            } else if k.is_empty() || k.len() > ALPN_NAME_MAX {
                return Err(format!("alpn.{k}: a protocol name must be 1..={ALPN_NAME_MAX} bytes"));
            } else {
                t.protocols.push((k.clone(), count(k, x)?));
            }
        }
        t.none = none.ok_or_else(|| format!("alpn.{ALPN_NONE}: missing"))?;
        Ok(t)
    }

    /// Every handshake counted under one protocol or `none` exactly once: the tally must add up
    /// to the handshakes done (a document that says otherwise was edited or is broken).
    pub fn check_done(&self, done: u64) -> Result<(), String> {
        let sum = self.protocols.iter().fold(self.none, |a, (_, n)| a.saturating_add(*n));
        if sum == done {
            Ok(())
        } else {
            Err(format!("alpn: the counts add up to {sum}, but {done} handshakes were done"))
        }
    }

    /// The same protocols, every count 0 (where a merge starts).
    pub fn zeroed(&self) -> AlpnTally {
        AlpnTally { protocols: self.protocols.iter().map(|(p, _)| (p.clone(), 0)).collect(), none: 0 }
    }

    /// The protocols' names, sorted (what two runs must share to add up).
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.protocols.iter().map(|(p, _)| p.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Adds another shard's (or interval's) counts, protocol by protocol. Both must have
    /// offered the same protocols (order aside): different offers are different tests.
    pub fn add(&mut self, o: &AlpnTally) -> Result<(), String> {
        if self.names() != o.names() {
            return Err(format!(
                "alpn: protocols {} differ from {}; merge only runs with the same --alpn",
                o.names().join(","),
                self.names().join(",")
            ));
        }
        for (p, n) in &o.protocols {
            if let Some(slot) = self.protocols.iter_mut().find(|(q, _)| q == p) {
                slot.1 += n;
            }
        }
        self.none += o.none;
        Ok(())
    }
}

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
    /// `--alpn` runs only: handshakes per negotiated protocol.
    pub alpn: Option<AlpnTally>,
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
            alpn: None,
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
        if let Some(a) = &self.alpn {
            t.push_str(&a.line());
        }
        t
    }

    pub fn to_json(&self) -> Value {
        let failures: Map<String, Value> =
            TlsCause::ALL.iter().map(|c| (c.name().to_string(), json!(self.failures[c.index()]))).collect();
        let mut v = json!({
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
        });
        // `--alpn` runs only: the key is absent otherwise.
        if let (Some(a), Some(m)) = (&self.alpn, v.as_object_mut()) {
            m.insert("alpn".into(), a.to_json());
        }
        v
    }

    /// Reads `tls` back; the error names the key below it (`handshakes.full: ...`).
    pub fn from_json(v: &Value) -> Result<TlsTotals, String> {
        let int = |path: &str| -> Result<u64, String> {
            let mut x = v;
            let mut at = String::new();
            for k in path.split('.') {
                // (`at` is empty at the top: a `tls` that is no object reads as every key missing.)
                if !at.is_empty() && !x.is_object() {
                    return Err(format!("{at}: not an object"));
                }
                x = x.get(k).ok_or_else(|| format!("{path}: missing"))?;
                at = if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
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
        // Absent in documents of runs without --alpn, and of netforge before it counted them.
        let alpn = match v.get("alpn") {
            None | Some(Value::Null) => None,
            Some(a) => Some(AlpnTally::from_json(a)?),
        };
        let (full, resumed) = (int("handshakes.full")?, int("handshakes.resumed")?);
        if let Some(a) = &alpn {
            a.check_done(full.saturating_add(resumed))?;
        }
        Ok(TlsTotals {
            alpn,
            full,
            resumed,
            failed: int("handshakes.failed")?,
            unfinished: int("handshakes.unfinished")?,
            failures,
            handshake,
            span_s,
        })
    }

    /// Nothing counted yet, with the ALPN protocols of `o` (what a fleet's sum starts from).
    pub fn zeroed_like(o: &TlsTotals) -> TlsTotals {
        TlsTotals { alpn: o.alpn.as_ref().map(AlpnTally::zeroed), ..Default::default() }
    }

    /// Adds another shard's figures; `offset_s` is how much later than the fleet's first start
    /// that shard started (its span then ends that much later on the fleet's clock). Shards
    /// with `alpn` and without, or with different protocols, do not add up.
    pub fn add(&mut self, o: &TlsTotals, offset_s: f64) -> Result<(), String> {
        match (&mut self.alpn, &o.alpn) {
            (Some(a), Some(b)) => a.add(b)?,
            (None, None) => {}
            _ => return Err("alpn: present in some shards only; merge only runs with the same --alpn".into()),
        }
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
        Ok(())
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
        m.add(&a, 0.0).unwrap();
        m.add(&b, 3.0).unwrap();
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
    fn alpn_counts_print_round_trip_and_add_by_protocol() {
        let offered = ["http/1.1".to_string(), "h2".to_string()];
        let a = AlpnTally::from_slots(&offered, &[2, 0, 7]);
        assert_eq!(a.line(), "TLS ALPN negotiated: http/1.1: 0, h2: 7, none: 2\n");
        assert_eq!(a.to_json(), json!({ "h2": 7, "http/1.1": 0, "none": 2 }));
        let back = AlpnTally::from_json(&a.to_json()).unwrap();
        assert_eq!(back.to_json(), a.to_json());
        // Read back in key order, added by name: the same protocols in another order add up.
        let mut m = a.zeroed();
        m.add(&a).unwrap();
        m.add(&back).unwrap();
        assert_eq!(m.to_json(), json!({ "h2": 14, "http/1.1": 0, "none": 4 }));
        let other = AlpnTally::from_slots(&["h2".to_string()], &[0, 1]);
        assert_eq!(
            m.add(&other).unwrap_err(),
            "alpn: protocols h2 differ from h2,http/1.1; merge only runs with the same --alpn"
        );
        // The totals carry it only with --alpn; old documents without the key still read.
        // 8 full + 1 resumed: the 9 handshakes the tally counts.
        let mut t = totals(8, &[100], 1.0);
        let plain = t.to_json();
        assert!(plain.get("alpn").is_none());
        assert!(TlsTotals::from_json(&plain).unwrap().alpn.is_none());
        t.alpn = Some(a.clone());
        let v = t.to_json();
        assert_eq!(v["alpn"]["h2"], 7);
        assert!(t.lines().ends_with("TLS ALPN negotiated: http/1.1: 0, h2: 7, none: 2\n"), "{}", t.lines());
        let mut sum = TlsTotals { alpn: Some(a.zeroed()), ..TlsTotals::default() };
        sum.add(&TlsTotals::from_json(&v).unwrap(), 0.0).unwrap();
        sum.add(&t, 0.0).unwrap();
        assert_eq!(sum.alpn.as_ref().unwrap().to_json(), json!({ "h2": 14, "http/1.1": 0, "none": 4 }));
        assert!(sum.add(&totals(1, &[], 1.0), 0.0).unwrap_err().starts_with("alpn: present in some shards only"));
    }

    #[test]
    fn alpn_json_is_bounded_and_checked() {
        let cases = [
            (json!([1]), "alpn: not an object of protocol: handshakes"),
            (json!({ "h2": 1 }), "alpn.none: missing"),
            (json!({ "h2": -1, "none": 0 }), "alpn.h2: not a non-negative integer"),
            (json!({ "": 1, "none": 0 }), "alpn.: a protocol name must be 1..=255 bytes"),
        ];
        for (v, want) in cases {
            assert_eq!(AlpnTally::from_json(&v).unwrap_err(), want, "{v}");
        }
        let mut m: Map<String, Value> = (0..ALPN_MAX).map(|i| (format!("p{i}"), json!(1))).collect();
        m.insert("none".into(), json!(0));
        assert_eq!(AlpnTally::from_json(&Value::Object(m.clone())).unwrap().protocols.len(), ALPN_MAX);
        m.insert("one-too-many".into(), json!(1));
        assert_eq!(
            AlpnTally::from_json(&Value::Object(m)).unwrap_err(),
            "alpn: 34 keys, at most 32 protocols and \"none\""
        );
        let mut v = totals(1, &[], 1.0).to_json();
        let mut bad = v.clone();
        bad["handshakes"] = json!("x");
        assert_eq!(TlsTotals::from_json(&bad).unwrap_err(), "handshakes: not an object");
        v["alpn"] = json!({ "h2": 1 });
        assert_eq!(TlsTotals::from_json(&v).unwrap_err(), "alpn.none: missing");
        // 1 full + 1 resumed: the tally must count both, no more and no fewer.
        v["alpn"] = json!({ "h2": 1, "none": 1 });
        assert!(TlsTotals::from_json(&v).is_ok());
        v["alpn"] = json!({ "h2": 99, "none": 1 });
        assert_eq!(TlsTotals::from_json(&v).unwrap_err(), "alpn: the counts add up to 100, but 2 handshakes were done");
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

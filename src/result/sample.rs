//! Per-interval samples of a goon run (docs/json-format.md §3): the state counts at the end of
//! each interval, what happened during it (dials, establishments, closes, errors by cause) and
//! the interval's connect-time and time-to-error moments with their HdrHistograms. The same
//! object goes into `--json`'s `samples`, `--json-stream`'s `interval` events and the fleet
//! merge, which reads it back with [`Sample::from_json`].
//!
//! Latencies are kept encoded (a live 1 µs..60 s histogram is ~150 KiB; an encoded one is a
//! few hundred bytes), and [`SampleBuf`] holds at most [`SAMPLES_CAP`] samples: past that it
//! merges adjacent pairs (exactly) and doubles its stride.

use serde_json::{json, Map, Value};

use crate::net::Cause;
use crate::result::tls::AlpnTally;
use crate::stats::Latency;

/// Most samples `--json` keeps.
pub const SAMPLES_CAP: usize = 4096;

/// Connections in each state at a sample's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub dialing: u64,
    pub established: u64,
    pub closed: u64,
    pub error: u64,
    pub not_initiated: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub index: u64,
    pub t_start_s: f64,
    pub t_end_s: f64,
    pub end_unix_s: f64,
    pub state: State,
    pub established_peak: u64,
    pub dials: u64,
    pub established_new: u64,
    pub closed_new: u64,
    pub errors: [u64; 7],
    /// Mergeable latency objects (`Latency::moments_json`).
    pub connect: Value,
    pub fail: Value,
    /// `--tls` runs only: the interval's handshakes.
    pub tls: Option<SampleTls>,
    /// goon with traffic flags: the interval's messages, bytes and response latencies.
    pub traffic: Option<TrafficSample>,
    /// `--ws` runs only: the interval's upgrades and pings.
    pub ws: Option<SampleWs>,
}

/// A sample's TLS part (key `tls`, present only in `--tls` runs): handshakes done (full and
/// resumed), failed, and their latency object, during the interval; with `--alpn`, the
/// interval's handshakes per negotiated protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleTls {
    pub full: u64,
    pub resumed: u64,
    pub failed: u64,
    pub handshake: Value,
    pub alpn: Option<AlpnTally>,
}

impl SampleTls {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "full": self.full,
            "resumed": self.resumed,
            "failed": self.failed,
            "handshake_time": self.handshake,
        });
        if let (Some(a), Some(m)) = (&self.alpn, v.as_object_mut()) {
            m.insert("alpn".into(), a.to_json());
        }
        v
    }

    pub fn from_json(v: &Value) -> Result<SampleTls, String> {
        let int = |k: &str| {
            v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("tls.{k}: missing or not a non-negative integer"))
        };
        // In the keys' order, so the first one wrong is the one named.
        let (full, resumed, failed) = (int("full")?, int("resumed")?, int("failed")?);
        let h = v.get("handshake_time").ok_or_else(|| "tls.handshake_time: missing".to_string())?;
        let handshake =
            Latency::from_moments_json(h).map(|l| l.moments_json()).map_err(|e| format!("tls.handshake_time.{e}"))?;
        let alpn = match v.get("alpn") {
            None | Some(Value::Null) => None,
            Some(a) => Some(AlpnTally::from_json(a).map_err(|e| format!("tls.{e}"))?),
        };
        if let Some(a) = &alpn {
            a.check_done(full.saturating_add(resumed)).map_err(|e| format!("tls.{e}"))?;
        }
        Ok(SampleTls { full, resumed, failed, handshake, alpn })
    }

    fn add(&mut self, o: &SampleTls) -> Result<(), String> {
        self.full += o.full;
        self.resumed += o.resumed;
        self.failed += o.failed;
        self.handshake = merge_moments(&self.handshake, &o.handshake)?;
        match (&mut self.alpn, &o.alpn) {
            (Some(a), Some(b)) => a.add(b).map_err(|e| format!("tls.{e}"))?,
            (None, None) => {}
            _ => return Err("tls.alpn: present in some samples only; merge only runs with the same --alpn".into()),
        }
        Ok(())
    }
}

/// One interval's traffic (all deltas; `response` a mergeable latency object).
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficSample {
    pub sent: u64,
    pub responses: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub behind: u64,
    pub response: Value,
}

impl TrafficSample {
    /// What happened between the whole counts `prev` and `now`, with the interval's latencies.
    pub fn delta(
        now: &crate::result::traffic::TrafficCounts,
        prev: &crate::result::traffic::TrafficCounts,
        response: &Latency,
    ) -> TrafficSample {
        TrafficSample {
            sent: now.sent.saturating_sub(prev.sent),
            responses: now.responses.saturating_sub(prev.responses),
            bytes_up: now.bytes_up.saturating_sub(prev.bytes_up),
            bytes_down: now.bytes_down.saturating_sub(prev.bytes_down),
            behind: now.behind.saturating_sub(prev.behind),
            response: response.moments_json(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "sent": self.sent,
            "responses": self.responses,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "behind": self.behind,
            "response_time": self.response,
        })
    }

    pub fn from_json(v: &Value) -> Result<TrafficSample, String> {
        let int = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("traffic.{k}: missing or not a non-negative integer"))
        };
        let x = v.get("response_time").ok_or("traffic.response_time: missing")?;
        let response = Latency::from_moments_json(x)
            .map(|l| l.moments_json())
            .map_err(|e| format!("traffic.response_time.{e}"))?;
        Ok(TrafficSample {
            sent: int("sent")?,
            responses: int("responses")?,
            bytes_up: int("bytes_up")?,
            bytes_down: int("bytes_down")?,
            behind: int("behind")?,
            response,
        })
    }

    fn add(&mut self, o: &TrafficSample) -> Result<(), String> {
        self.sent += o.sent;
        self.responses += o.responses;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.behind += o.behind;
        self.response = merge_moments(&self.response, &o.response)?;
        Ok(())
    }
}

/// A sample's WebSocket part (key `websocket`, present only in `--ws` runs): connections
/// upgrading and open at the interval's end, upgrades done and failed, pings sent and pongs
/// during it, and the interval's upgrade-time and ping round-trip latency objects. The same
/// keys as the `--json-stream` interval event's own `websocket` object.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleWs {
    pub upgrading: u64,
    pub open: u64,
    pub upgraded: u64,
    pub failed: u64,
    pub pings_sent: u64,
    pub pongs: u64,
    pub upgrade: Value,
    pub ping: Value,
}

impl SampleWs {
    /// What happened between the whole counts `prev` and `now`, with the interval's latencies.
    pub fn delta(
        now: &crate::ws::client::ClientCounts,
        prev: &crate::ws::client::ClientCounts,
        l: &crate::result::ws::WsLatencies,
    ) -> SampleWs {
        SampleWs {
            upgrading: now.upgrading,
            open: now.upgraded,
            upgraded: now.upgraded_total.saturating_sub(prev.upgraded_total),
            failed: now.failed().saturating_sub(prev.failed()),
            pings_sent: now.pings_sent.saturating_sub(prev.pings_sent),
            pongs: now.pongs.saturating_sub(prev.pongs),
            upgrade: l.upgrade.moments_json(),
            ping: l.ping.moments_json(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "upgrading": self.upgrading,
            "open": self.open,
            "upgraded_new": self.upgraded,
            "failed_new": self.failed,
            "pings_sent_new": self.pings_sent,
            "pongs_new": self.pongs,
            "upgrade_time": self.upgrade,
            "ping_rtt": self.ping,
        })
    }

    pub fn from_json(v: &Value) -> Result<SampleWs, String> {
        let int = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("websocket.{k}: missing or not a non-negative integer"))
        };
        let lat = |k: &str| -> Result<Value, String> {
            let x = v.get(k).ok_or_else(|| format!("websocket.{k}: missing"))?;
            Latency::from_moments_json(x).map(|l| l.moments_json()).map_err(|e| format!("websocket.{k}.{e}"))
        };
        Ok(SampleWs {
            upgrading: int("upgrading")?,
            open: int("open")?,
            upgraded: int("upgraded_new")?,
            failed: int("failed_new")?,
            pings_sent: int("pings_sent_new")?,
            pongs: int("pongs_new")?,
            upgrade: lat("upgrade_time")?,
            ping: lat("ping_rtt")?,
        })
    }

    /// The same state at the end, and nothing that happened (an interval a shard did not
    /// report: its connections held).
    pub fn at_rest(&self) -> SampleWs {
        let none = Latency::new().moments_json();
        SampleWs { upgraded: 0, failed: 0, pings_sent: 0, pongs: 0, upgrade: none.clone(), ping: none, ..*self }
    }

    /// Adds `o`'s deltas and latencies; the state at the end is the caller's to set.
    fn add(&mut self, o: &SampleWs) -> Result<(), String> {
        self.upgraded += o.upgraded;
        self.failed += o.failed;
        self.pings_sent += o.pings_sent;
        self.pongs += o.pongs;
        self.upgrade = merge_moments(&self.upgrade, &o.upgrade)?;
        self.ping = merge_moments(&self.ping, &o.ping)?;
        Ok(())
    }
}

/// Merges two mergeable latency objects (both already validated).
fn merge_moments(a: &Value, b: &Value) -> Result<Value, String> {
    let mut l = Latency::from_moments_json(a)?;
    l.merge(&Latency::from_moments_json(b)?);
    Ok(l.moments_json())
}

fn causes_json(errors: &[u64; 7]) -> Value {
    let m: Map<String, Value> = Cause::ALL.iter().map(|c| (c.name().to_string(), json!(errors[c.index()]))).collect();
    Value::Object(m)
}

impl Sample {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "index": self.index,
            "t_start_s": self.t_start_s,
            "t_end_s": self.t_end_s,
            "end_unix_s": self.end_unix_s,
            "state": {
                "dialing": self.state.dialing,
                "established": self.state.established,
                "closed": self.state.closed,
                "error": self.state.error,
                "not_initiated": self.state.not_initiated,
            },
            "established_peak": self.established_peak,
            "dials": self.dials,
            "established_new": self.established_new,
            "closed_new": self.closed_new,
            "errors": causes_json(&self.errors),
            "connect_time": self.connect,
            "time_to_error": self.fail,
        });
        if let (Some(t), Some(m)) = (&self.tls, v.as_object_mut()) {
            m.insert("tls".into(), t.to_json());
        }
        if let (Some(t), Some(m)) = (&self.traffic, v.as_object_mut()) {
            m.insert("traffic".into(), t.to_json());
        }
        if let (Some(w), Some(m)) = (&self.ws, v.as_object_mut()) {
            m.insert("websocket".into(), w.to_json());
        }
        v
    }

    /// Reads a sample back; the error names the key (`state.established: ...`). The latency
    /// objects are decoded once here, so a bad histogram is caught before any merging.
    pub fn from_json(v: &Value) -> Result<Sample, String> {
        let int = |path: &str| -> Result<u64, String> {
            let mut x = v;
            for k in path.split('.') {
                x = x.get(k).ok_or_else(|| format!("{path}: missing"))?;
            }
            x.as_u64().ok_or_else(|| format!("{path}: not a non-negative integer"))
        };
        let float = |k: &str| v.get(k).and_then(Value::as_f64).ok_or_else(|| format!("{k}: missing or not a number"));
        let mut errors = [0u64; 7];
        for c in Cause::ALL {
            errors[c.index()] = int(&format!("errors.{}", c.name()))?;
        }
        let lat = |k: &str| -> Result<Value, String> {
            let x = v.get(k).ok_or_else(|| format!("{k}: missing"))?;
            Latency::from_moments_json(x).map(|l| l.moments_json()).map_err(|e| format!("{k}.{e}"))
        };
        Ok(Sample {
            index: int("index")?,
            t_start_s: float("t_start_s")?,
            t_end_s: float("t_end_s")?,
            end_unix_s: float("end_unix_s")?,
            state: State {
                dialing: int("state.dialing")?,
                established: int("state.established")?,
                closed: int("state.closed")?,
                error: int("state.error")?,
                not_initiated: int("state.not_initiated")?,
            },
            established_peak: int("established_peak")?,
            dials: int("dials")?,
            established_new: int("established_new")?,
            closed_new: int("closed_new")?,
            errors,
            connect: lat("connect_time")?,
            fail: lat("time_to_error")?,
            tls: match v.get("tls") {
                None | Some(Value::Null) => None,
                Some(t) => Some(SampleTls::from_json(t)?),
            },
            traffic: match v.get("traffic") {
                None | Some(Value::Null) => None,
                Some(t) => Some(TrafficSample::from_json(t)?),
            },
            ws: match v.get("websocket") {
                None | Some(Value::Null) => None,
                Some(w) => Some(SampleWs::from_json(w)?),
            },
        })
    }

    /// Appends the next interval of the same run: `later`'s end and state, deltas added,
    /// latencies merged, the peak the larger.
    pub fn absorb_later(&mut self, later: &Sample) -> Result<(), String> {
        self.t_end_s = later.t_end_s;
        self.end_unix_s = later.end_unix_s;
        self.state = later.state;
        self.established_peak = self.established_peak.max(later.established_peak);
        if let (Some(a), Some(b)) = (&mut self.ws, &later.ws) {
            (a.upgrading, a.open) = (b.upgrading, b.open);
        }
        self.add_deltas(later)
    }

    /// Adds another shard's sample of the same moment: states, peaks and deltas summed,
    /// latencies merged.
    pub fn add_shard(&mut self, other: &Sample) -> Result<(), String> {
        let (a, b) = (self.state, other.state);
        self.state = State {
            dialing: a.dialing + b.dialing,
            established: a.established + b.established,
            closed: a.closed + b.closed,
            error: a.error + b.error,
            not_initiated: a.not_initiated + b.not_initiated,
        };
        self.established_peak += other.established_peak;
        if let (Some(a), Some(b)) = (&mut self.ws, &other.ws) {
            (a.upgrading, a.open) = (a.upgrading + b.upgrading, a.open + b.open);
        }
        self.add_deltas(other)
    }

    fn add_deltas(&mut self, o: &Sample) -> Result<(), String> {
        self.dials += o.dials;
        self.established_new += o.established_new;
        self.closed_new += o.closed_new;
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
        self.connect = merge_moments(&self.connect, &o.connect)?;
        self.fail = merge_moments(&self.fail, &o.fail)?;
        match (&mut self.tls, &o.tls) {
            (Some(a), Some(b)) => a.add(b)?,
            (None, Some(b)) => self.tls = Some(b.clone()),
            (_, None) => {}
        }
        match (&mut self.traffic, &o.traffic) {
            (Some(a), Some(b)) => a.add(b)?,
            (None, Some(b)) => self.traffic = Some(b.clone()),
            (_, None) => {}
        }
        match (&mut self.ws, &o.ws) {
            (Some(a), Some(b)) => a.add(b)?,
            (None, Some(b)) => self.ws = Some(b.clone()),
            (_, None) => {}
        }
        Ok(())
    }
}

/// At most [`SAMPLES_CAP`] samples; past it, adjacent pairs merge and the stride doubles, so the
/// samples always span the whole run at `stride` base intervals each.
#[derive(Clone, Debug)]
pub struct SampleBuf {
    cap: usize,
    stride: u64,
    samples: Vec<Sample>,
    /// Base samples gathered toward the next coarse one.
    pending: Option<Sample>,
}

impl Default for SampleBuf {
    fn default() -> Self {
        SampleBuf::with_cap(SAMPLES_CAP)
    }
}

impl SampleBuf {
    pub fn with_cap(cap: usize) -> SampleBuf {
        SampleBuf { cap: cap.max(2), stride: 1, samples: Vec::new(), pending: None }
    }

    /// Adds the next base-interval sample (its `index` in base intervals).
    pub fn push(&mut self, s: Sample) {
        if let Some(mut p) = self.pending.take() {
            if p.index == s.index / self.stride {
                absorb(&mut p, &s);
                self.pending = Some(p);
                return;
            }
            self.commit(p);
        }
        // The stride may just have doubled: the new sample may belong to the last one.
        let coarse = s.index / self.stride;
        match self.samples.pop() {
            Some(mut last) if last.index == coarse => {
                absorb(&mut last, &s);
                self.pending = Some(last);
            }
            last => {
                self.samples.extend(last);
                self.pending = Some(Sample { index: coarse, ..s });
            }
        }
    }

    fn commit(&mut self, s: Sample) {
        self.samples.push(s);
        if self.samples.len() >= self.cap {
            self.halve();
        }
    }

    /// Merges adjacent pairs (by their index at the doubled stride) and doubles the stride.
    fn halve(&mut self) {
        self.stride *= 2;
        let mut out: Vec<Sample> = Vec::with_capacity(self.samples.len() / 2 + 1);
        for mut s in self.samples.drain(..) {
            s.index /= 2;
            match out.last_mut() {
                Some(last) if last.index == s.index => absorb(last, &s),
                _ => out.push(s),
            }
        }
        self.samples = out;
    }

    /// Every sample so far (the pending one included) and the stride.
    pub fn finish(mut self) -> (Vec<Sample>, u64) {
        if let Some(p) = self.pending.take() {
            self.samples.push(p);
        }
        (self.samples, self.stride)
    }
}

/// [`Sample::absorb_later`] for samples this process made (their histograms always decode).
fn absorb(into: &mut Sample, later: &Sample) {
    if let Err(e) = into.absorb_later(later) {
        log::warn!("goon: a sample could not be merged: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(index: u64, us: &[u64]) -> Sample {
        let mut l = Latency::new();
        for u in us {
            l.record(Duration::from_micros(*u));
        }
        Sample {
            index,
            t_start_s: index as f64,
            t_end_s: index as f64 + 1.0,
            end_unix_s: 1000.0 + index as f64 + 1.0,
            state: State { established: index + 1, ..State::default() },
            established_peak: index + 1,
            dials: 1,
            established_new: us.len() as u64,
            closed_new: 0,
            errors: [index, 0, 0, 0, 0, 0, 1],
            connect: l.moments_json(),
            fail: Latency::new().moments_json(),
            tls: None,
            traffic: None,
            ws: None,
        }
    }

    #[test]
    fn json_round_trip() {
        let s = sample(3, &[10, 20, 3000]);
        let back = Sample::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let mut v = s.to_json();
        v["state"]["established"] = json!(-1);
        assert_eq!(Sample::from_json(&v).unwrap_err(), "state.established: not a non-negative integer");
        let mut v = s.to_json();
        v["connect_time"]["sum_ns"] = json!(5);
        assert!(Sample::from_json(&v).unwrap_err().starts_with("connect_time.sum_ns"), "named key");
    }

    #[test]
    fn tls_part_round_trips_and_merges() {
        let mut l = Latency::new();
        l.record(Duration::from_micros(700));
        let tls = SampleTls { full: 2, resumed: 1, failed: 1, handshake: l.moments_json(), alpn: None };
        let mut a = Sample { tls: Some(tls.clone()), ..sample(0, &[1]) };
        assert_eq!(Sample::from_json(&a.to_json()).unwrap(), a);
        assert!(sample(0, &[1]).to_json().get("tls").is_none(), "absent without --tls");
        assert!(a.to_json()["tls"].get("alpn").is_none(), "absent without --alpn");
        a.add_shard(&Sample { tls: Some(tls), ..sample(0, &[1]) }).unwrap();
        let t = a.tls.as_ref().unwrap();
        assert_eq!((t.full, t.resumed, t.failed), (4, 2, 2));
        assert_eq!(Latency::from_moments_json(&t.handshake).unwrap().count, 2);
        let mut v = a.to_json();
        v["tls"]["full"] = json!(-1);
        assert_eq!(Sample::from_json(&v).unwrap_err(), "tls.full: missing or not a non-negative integer");
    }

    #[test]
    fn tls_alpn_part_round_trips_and_adds_by_protocol() {
        let offered = ["h2".to_string(), "http/1.1".to_string()];
        let part = |slots: &[u64]| SampleTls {
            full: slots.iter().sum(),
            resumed: 0,
            failed: 0,
            handshake: Latency::new().moments_json(),
            alpn: Some(AlpnTally::from_slots(&offered, slots)),
        };
        let mut a = Sample { tls: Some(part(&[1, 5, 0])), ..sample(0, &[1]) };
        let v = a.to_json();
        assert_eq!(v["tls"]["alpn"], json!({ "h2": 5, "http/1.1": 0, "none": 1 }));
        assert_eq!(Sample::from_json(&v).unwrap(), a);
        a.absorb_later(&Sample { tls: Some(part(&[0, 2, 3])), ..sample(1, &[1]) }).unwrap();
        assert_eq!(a.to_json()["tls"]["alpn"], json!({ "h2": 7, "http/1.1": 3, "none": 1 }));
        let plain = Sample { tls: Some(SampleTls { alpn: None, ..part(&[0]) }), ..sample(1, &[1]) };
        assert!(a.clone().add_shard(&plain).unwrap_err().starts_with("tls.alpn: present in some samples only"));
        let mut v = a.to_json();
        v["tls"]["alpn"]["h2"] = json!("x");
        assert_eq!(Sample::from_json(&v).unwrap_err(), "tls.alpn.h2: not a non-negative integer");
        v["tls"]["alpn"]["h2"] = json!(50);
        assert!(Sample::from_json(&v).unwrap_err().starts_with("tls.alpn: the counts add up to"), "{v}");
    }

    #[test]
    fn websocket_part_round_trips_follows_time_and_adds_shards() {
        let lat = |ms: u64| {
            let mut l = Latency::new();
            l.record(Duration::from_millis(ms));
            l.moments_json()
        };
        let w = |upgrading, open, upgraded| SampleWs {
            upgrading,
            open,
            upgraded,
            failed: 1,
            pings_sent: 5,
            pongs: 4,
            upgrade: lat(2),
            ping: lat(1),
        };
        let mut s = Sample { ws: Some(w(3, 10, 10)), ..sample(0, &[5]) };
        assert_eq!(Sample::from_json(&s.to_json()).unwrap(), s);
        assert!(sample(0, &[]).to_json().get("websocket").is_none(), "no websocket key without --ws");
        // The next interval of the same run: its state, the deltas added.
        s.absorb_later(&Sample { ws: Some(w(0, 12, 2)), ..sample(1, &[]) }).unwrap();
        let got = s.ws.clone().unwrap();
        assert_eq!((got.upgrading, got.open, got.upgraded, got.failed, got.pongs), (0, 12, 12, 2, 8));
        assert_eq!(Latency::from_moments_json(&got.ping).unwrap().count, 2);
        // Another shard's sample of the same moment: the states summed too.
        s.add_shard(&Sample { ws: Some(w(1, 7, 7)), ..sample(1, &[]) }).unwrap();
        let sum = s.ws.clone().unwrap();
        assert_eq!((sum.upgrading, sum.open, sum.upgraded), (1, 19, 19));
        // A held interval: the state stays, nothing happened.
        let rest = sum.at_rest();
        assert_eq!((rest.open, rest.upgraded, Latency::from_moments_json(&rest.upgrade).unwrap().count), (19, 0, 0));
        let mut v = s.to_json();
        v["websocket"]["open"] = json!("x");
        assert_eq!(Sample::from_json(&v).unwrap_err(), "websocket.open: missing or not a non-negative integer");
    }

    #[test]
    fn traffic_round_trips_and_adds() {
        let mut l = Latency::new();
        l.record(Duration::from_millis(3));
        let t =
            TrafficSample { sent: 4, responses: 3, bytes_up: 8, bytes_down: 6, behind: 1, response: l.moments_json() };
        let mut s = Sample { traffic: Some(t.clone()), ..sample(0, &[5]) };
        let back = Sample::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        assert!(sample(0, &[]).to_json().get("traffic").is_none(), "no traffic key without traffic");
        s.add_shard(&Sample { traffic: Some(t), ..sample(0, &[]) }).unwrap();
        let sum = s.traffic.as_ref().unwrap();
        assert_eq!((sum.sent, sum.responses, sum.bytes_up, sum.behind), (8, 6, 16, 2));
        assert_eq!(Latency::from_moments_json(&sum.response).unwrap().count, 2);
        let mut v = s.to_json();
        v["traffic"]["bytes_up"] = json!(-3);
        assert_eq!(Sample::from_json(&v).unwrap_err(), "traffic.bytes_up: missing or not a non-negative integer");
    }

    #[test]
    fn buffer_stays_bounded_and_exact() {
        let mut b = SampleBuf::with_cap(8);
        let n = 100u64;
        for i in 0..n {
            b.push(sample(i, &[i + 1]));
        }
        let (samples, stride) = b.finish();
        assert!(samples.len() <= 8, "{}", samples.len());
        assert_eq!(stride, 16);
        // Exactly the same totals as the 100 base samples.
        assert_eq!(samples.iter().map(|s| s.dials).sum::<u64>(), n);
        assert_eq!(samples.iter().map(|s| s.errors[0]).sum::<u64>(), (0..n).sum::<u64>());
        let mut all = Latency::new();
        for s in &samples {
            all.merge(&Latency::from_moments_json(&s.connect).unwrap());
        }
        assert_eq!(all.count, n);
        assert_eq!(all.max(), Duration::from_micros(n));
        // Indexes are consecutive at the final stride; the last holds the final state.
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(s.index, i as u64);
        }
        let last = samples.last().unwrap();
        assert_eq!(last.state.established, n);
        assert_eq!(last.t_end_s, n as f64);
        assert_eq!(samples[0].t_start_s, 0.0);
        assert_eq!(samples[1].t_start_s, 16.0);
        assert_eq!(samples[0].established_peak, 16);
    }

    #[test]
    fn gaps_in_indexes_are_kept() {
        let mut b = SampleBuf::with_cap(100);
        for i in [0u64, 1, 5, 6] {
            b.push(sample(i, &[]));
        }
        let (s, stride) = b.finish();
        assert_eq!(stride, 1);
        assert_eq!(s.iter().map(|x| x.index).collect::<Vec<_>>(), [0, 1, 5, 6]);
    }
}

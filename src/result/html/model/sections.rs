//! The optional parts of a goon result (`tls`, `websocket`, `traffic`, `probe`, and the
//! per-interval `tls` and `traffic` of each sample; docs/json-format.md §4), read with the
//! strict readers `report merge` uses: a part that is there must be whole, and a bad one is
//! refused with the file and the key, since a page that shows such a figure must show it right.
//! An absent (or null) part reads as `None`, and the page is that of a plain run.

use std::time::Duration;

use serde_json::Value;

use super::read::{text, Lat};
use super::{err, InputError};
use crate::result::probe::verdict::{verdict, Group, Verdict, MAX_GROUPS};
use crate::result::sample::{SampleTls, SampleWs, TrafficSample};
use crate::result::tls::TlsTotals;
use crate::result::traffic::TrafficCounts;
use crate::result::ws::{self, WsLatencies};
use crate::stats::Latency;
use crate::ws::client::ClientCounts;

/// A `Latency` as the page's own latency type (the histogram kept, in µs).
pub(super) fn lat_of(l: &Latency) -> Lat {
    if l.count == 0 {
        return Lat::empty();
    }
    Lat {
        count: l.count,
        min_ns: l.min_ns,
        max_ns: l.max_ns,
        sum_ns: l.sum_ns,
        sum_sq_ns2: l.sum_sq_ns,
        hist: l.hist.as_ref().map(super::read::Sparse::of),
    }
}

/// A part that is present: not absent and not null.
fn part<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k).filter(|x| !x.is_null())
}

/// `key: msg` from a reader's error, placed under `at` (`tls` + `handshakes.full: missing`).
fn under(file: &str, at: &str, e: &str) -> InputError {
    err(file, format!("{at}.{e}"))
}

/// An optional number of the part's config (display only): absent or null is `None`.
fn opt_f64(file: &str, key: &str, v: &Value) -> Result<Option<f64>, InputError> {
    match v {
        Value::Null => Ok(None),
        x => x.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| err(file, format!("{key}: not a number"))),
    }
}

fn opt_u64(file: &str, key: &str, v: &Value) -> Result<Option<u64>, InputError> {
    match v {
        Value::Null => Ok(None),
        x => x.as_u64().map(Some).ok_or_else(|| err(file, format!("{key}: not a non-negative integer"))),
    }
}

/// The `websocket` part and the two settings its table names.
#[derive(Clone, Debug)]
pub(super) struct Ws {
    pub(super) counts: ClientCounts,
    pub(super) lat: WsLatencies,
    pub(super) path: String,
    pub(super) ping_s: Option<f64>,
}

/// The `traffic` part: the plan (display only), the counts, the response times and the rates.
#[derive(Clone, Debug)]
pub(super) struct Traffic {
    pub(super) message_bytes: Option<u64>,
    pub(super) first_message_bytes: Option<u64>,
    pub(super) rate_per_conn: Option<f64>,
    pub(super) duration_s: Option<f64>,
    pub(super) expect_bytes: Option<u64>,
    pub(super) marker: Option<String>,
    pub(super) counts: TrafficCounts,
    pub(super) response: Latency,
    pub(super) requested_per_s: Option<f64>,
    pub(super) sent_per_s: Option<f64>,
    pub(super) responses_per_s: Option<f64>,
}

impl Traffic {
    /// A response mode was given (`--expect-bytes` or `--marker`): responses are timed.
    pub(super) fn measures(&self) -> bool {
        self.expect_bytes.is_some() || self.marker.is_some()
    }

    fn parse(file: &str, t: &Value) -> Result<Traffic, InputError> {
        let cfg = t.get("config").ok_or_else(|| err(file, "traffic.config: missing"))?;
        let c = |k: &str| (format!("traffic.config.{k}"), cfg.get(k).unwrap_or(&Value::Null));
        let (k, v) = c("message_bytes");
        let message_bytes = opt_u64(file, &k, v)?;
        let (k, v) = c("first_message_bytes");
        let first_message_bytes = opt_u64(file, &k, v)?;
        let (k, v) = c("message_rate_per_s");
        let rate_per_conn = opt_f64(file, &k, v)?;
        let (k, v) = c("duration_s");
        let duration_s = opt_f64(file, &k, v)?;
        let (k, v) = c("expect_bytes");
        let expect_bytes = opt_u64(file, &k, v)?;
        let marker = part(cfg, "marker").map(text);
        let counts = t.get("counts").ok_or_else(|| err(file, "traffic.counts: missing"))?;
        let counts = TrafficCounts::from_json(counts).map_err(|e| under(file, "traffic.counts", &e))?;
        let r = t.get("response_time").ok_or_else(|| err(file, "traffic.response_time: missing"))?;
        let response = Latency::from_moments_json(r).map_err(|e| under(file, "traffic.response_time", &e))?;
        let rate = |k: &str| opt_f64(file, &format!("traffic.{k}"), t.get(k).unwrap_or(&Value::Null));
        Ok(Traffic {
            message_bytes,
            first_message_bytes,
            rate_per_conn,
            duration_s,
            expect_bytes,
            marker,
            counts,
            response,
            requested_per_s: rate("requested_per_s")?,
            sent_per_s: rate("sent_per_s")?,
            responses_per_s: rate("responses_per_s")?,
        })
    }
}

/// The `probe` part: each group with its idle time, the probe's settings, and the verdict
/// drawn from the groups (the same function goon and `report merge` draw it with).
#[derive(Clone, Debug)]
pub(super) struct Probe {
    pub(super) groups: Vec<(Duration, Group)>,
    pub(super) deadline_s: f64,
    pub(super) message_bytes: u64,
    pub(super) verdict: Verdict,
}

impl Probe {
    fn parse(file: &str, p: &Value) -> Result<Probe, InputError> {
        let deadline_s = p
            .get("deadline_s")
            .and_then(Value::as_f64)
            .filter(|d| d.is_finite() && *d > 0.0)
            .ok_or_else(|| err(file, "probe.deadline_s: missing or not a positive number"))?;
        let message_bytes = p
            .get("message_bytes")
            .and_then(Value::as_u64)
            .ok_or_else(|| err(file, "probe.message_bytes: missing or not an integer"))?;
        let raw = p
            .get("groups")
            .and_then(Value::as_array)
            .ok_or_else(|| err(file, "probe.groups: missing or not an array"))?;
        if raw.len() > MAX_GROUPS {
            return Err(err(file, format!("probe.groups: {} groups, at most {MAX_GROUPS}", raw.len())));
        }
        let mut groups: Vec<(Duration, Group)> = Vec::with_capacity(raw.len());
        for (i, g) in raw.iter().enumerate() {
            let (d, g) = Group::from_json(g).map_err(|e| under(file, &format!("probe.groups[{i}]"), &e))?;
            if groups.last().is_some_and(|(p, _)| *p >= d) {
                return Err(err(file, format!("probe.groups[{i}].idle_s: not above the previous group's")));
            }
            groups.push((d, g));
        }
        let verdict = verdict(&groups);
        Ok(Probe { groups, deadline_s, message_bytes, verdict })
    }
}

/// A result's optional parts.
#[derive(Clone, Debug, Default)]
pub(super) struct Sections {
    pub(super) tls: Option<TlsTotals>,
    pub(super) ws: Option<Ws>,
    pub(super) traffic: Option<Traffic>,
    pub(super) probe: Option<Probe>,
}

impl Sections {
    pub(super) fn parse(file: &str, doc: &Value) -> Result<Sections, InputError> {
        let tls = match part(doc, "tls") {
            None => None,
            Some(v) => Some(TlsTotals::from_json(v).map_err(|e| under(file, "tls", &e))?),
        };
        let ws = match part(doc, "websocket") {
            None => None,
            Some(v) => {
                let (counts, lat) = ws::from_json(v).map_err(|e| under(file, "websocket", &e))?;
                let cfg = &doc["config"]["websocket"];
                let ping_s = opt_f64(file, "config.websocket.ping_s", &cfg["ping_s"])?;
                Some(Ws { counts, lat, path: text(&cfg["path"]), ping_s })
            }
        };
        let traffic = match part(doc, "traffic") {
            None => None,
            Some(t) => Some(Traffic::parse(file, t)?),
        };
        let probe = match part(doc, "probe") {
            None => None,
            Some(p) => Some(Probe::parse(file, p)?),
        };
        Ok(Sections { tls, ws, traffic, probe })
    }

    /// The shards' parts summed as `report merge` sums them: counts added, histograms added,
    /// the TLS span from the fleet's first start (`offset_s`: how much later each shard
    /// started), the rates of the sum recomputed, the probe's verdict drawn again from the
    /// summed groups. A part that some shards have and others lack, or a probe of other idle
    /// times, is refused: those are not shards of one test.
    pub(super) fn sum(shards: &[(&str, &Sections, f64)]) -> Result<Sections, InputError> {
        let Some(&(first_file, first, _)) = shards.first() else { return Ok(Sections::default()) };
        let mut out = Sections::default();
        for &(file, s, offset_s) in shards {
            let differs = |key: &str, has: bool| {
                let (with, without) = if has { (file, first_file) } else { (first_file, file) };
                err(without, format!("{key}: missing, but {with} has one; give the shards of one test"))
            };
            if s.tls.is_some() != first.tls.is_some() {
                return Err(differs("tls", s.tls.is_some()));
            }
            if s.ws.is_some() != first.ws.is_some() {
                return Err(differs("websocket", s.ws.is_some()));
            }
            if s.traffic.is_some() != first.traffic.is_some() {
                return Err(differs("traffic", s.traffic.is_some()));
            }
            if s.probe.is_some() != first.probe.is_some() {
                return Err(differs("probe", s.probe.is_some()));
            }
            if let Some(t) = &s.tls {
                let acc = out.tls.get_or_insert_with(|| TlsTotals::zeroed_like(t));
                acc.add(t, offset_s).map_err(|e| err(file, format!("tls.{e}")))?;
            }
            if let Some(w) = &s.ws {
                match out.ws.as_mut() {
                    None => out.ws = Some(w.clone()),
                    Some(o) => {
                        o.counts.merge(&w.counts);
                        o.lat.merge(&w.lat);
                    }
                }
            }
            if let Some(t) = &s.traffic {
                match out.traffic.as_mut() {
                    None => out.traffic = Some(t.clone()),
                    Some(o) if o.rate_per_conn != t.rate_per_conn || o.measures() != t.measures() => {
                        return Err(err(
                            file,
                            format!(
                                "traffic.config: differs from {first_file}'s (message rate or response mode); \
                                 give the shards of one test"
                            ),
                        ));
                    }
                    Some(o) => {
                        o.counts.add(&t.counts);
                        o.response.merge(&t.response);
                        o.requested_per_s = match (o.requested_per_s, t.requested_per_s) {
                            (Some(a), Some(b)) => Some(a + b),
                            (a, b) => a.or(b),
                        };
                    }
                }
            }
            if let Some(p) = &s.probe {
                match out.probe.as_mut() {
                    None => out.probe = Some(p.clone()),
                    Some(o) => {
                        let idle = |g: &[(Duration, Group)]| g.iter().map(|(d, _)| *d).collect::<Vec<_>>();
                        if idle(&o.groups) != idle(&p.groups)
                            || o.deadline_s != p.deadline_s
                            || o.message_bytes != p.message_bytes
                        {
                            return Err(err(
                                file,
                                format!(
                                    "probe: other idle times, deadline or probe size than {first_file}'s; give the \
                                     shards of one test"
                                ),
                            ));
                        }
                        for ((_, a), (_, b)) in o.groups.iter_mut().zip(&p.groups) {
                            a.merge(b);
                        }
                    }
                }
            }
        }
        if let Some(t) = out.traffic.as_mut() {
            let achieved = t.rate_per_conn.and_then(|r| t.counts.achieved(r));
            t.sent_per_s = achieved.map(|a| a.0);
            t.responses_per_s = achieved.map(|a| a.1);
        }
        if let Some(p) = out.probe.as_mut() {
            p.verdict = verdict(&p.groups);
        }
        Ok(out)
    }
}

/// One interval's handshakes (a sample's `tls`).
#[derive(Clone, Debug)]
pub(super) struct IvTls {
    pub(super) full: u64,
    pub(super) resumed: u64,
    pub(super) failed: u64,
    pub(super) handshake: Lat,
}

/// One interval's traffic (a sample's `traffic`).
#[derive(Clone, Debug)]
pub(super) struct IvTraffic {
    pub(super) sent: u64,
    pub(super) responses: u64,
    pub(super) bytes_up: u64,
    pub(super) bytes_down: u64,
    pub(super) behind: u64,
    pub(super) response: Lat,
}

/// One interval's WebSocket upgrades and pings (a sample's `websocket`; the state at its end
/// is not drawn: the established count shows the held connections).
#[derive(Clone, Debug)]
pub(super) struct IvWs {
    pub(super) upgraded: u64,
    pub(super) failed: u64,
    pub(super) pongs: u64,
    pub(super) upgrade: Lat,
    pub(super) ping: Lat,
}

/// A sample's part `k`, read by `result::sample`'s reader for it (as strictly as `report
/// merge` reads it); its errors are placed under `at` (`samples[3]`).
fn sample_part<T>(
    file: &str,
    at: &str,
    v: &Value,
    k: &str,
    read: fn(&Value) -> Result<T, String>,
) -> Result<Option<T>, InputError> {
    let Some(x) = part(v, k) else { return Ok(None) };
    read(x).map(Some).map_err(|e| under(file, at, &e))
}

/// A latency object `result::sample` already validated, as the page's type.
fn lat_value(v: &Value) -> Lat {
    Latency::from_moments_json(v).map_or_else(|_| Lat::empty(), |l| lat_of(&l))
}

impl IvTls {
    /// `at` is the key of the sample (`samples[3]`).
    pub(super) fn parse(file: &str, at: &str, v: &Value) -> Result<Option<IvTls>, InputError> {
        let t = sample_part(file, at, v, "tls", SampleTls::from_json)?;
        Ok(t.map(|t| IvTls { full: t.full, resumed: t.resumed, failed: t.failed, handshake: lat_value(&t.handshake) }))
    }

    pub(super) fn add(&mut self, o: &IvTls) {
        self.full += o.full;
        self.resumed += o.resumed;
        self.failed += o.failed;
        self.handshake.merge(&o.handshake);
    }
}

impl IvWs {
    pub(super) fn parse(file: &str, at: &str, v: &Value) -> Result<Option<IvWs>, InputError> {
        let w = sample_part(file, at, v, "websocket", SampleWs::from_json)?;
        Ok(w.map(|w| IvWs {
            upgraded: w.upgraded,
            failed: w.failed,
            pongs: w.pongs,
            upgrade: lat_value(&w.upgrade),
            ping: lat_value(&w.ping),
        }))
    }

    pub(super) fn add(&mut self, o: &IvWs) {
        self.upgraded += o.upgraded;
        self.failed += o.failed;
        self.pongs += o.pongs;
        self.upgrade.merge(&o.upgrade);
        self.ping.merge(&o.ping);
    }
}

impl IvTraffic {
    pub(super) fn parse(file: &str, at: &str, v: &Value) -> Result<Option<IvTraffic>, InputError> {
        let t = sample_part(file, at, v, "traffic", TrafficSample::from_json)?;
        Ok(t.map(|t| IvTraffic {
            sent: t.sent,
            responses: t.responses,
            bytes_up: t.bytes_up,
            bytes_down: t.bytes_down,
            behind: t.behind,
            response: lat_value(&t.response),
        }))
    }

    pub(super) fn add(&mut self, o: &IvTraffic) {
        self.sent += o.sent;
        self.responses += o.responses;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.behind += o.behind;
        self.response.merge(&o.response);
    }
}

/// Adds `o` into `a`, taking it whole when `a` has none.
pub(super) fn add_part<T: Clone>(a: &mut Option<T>, o: &Option<T>, add: impl Fn(&mut T, &T)) {
    match (a.as_mut(), o) {
        (Some(x), Some(y)) => add(x, y),
        (None, Some(y)) => *a = Some(y.clone()),
        (_, None) => {}
    }
}

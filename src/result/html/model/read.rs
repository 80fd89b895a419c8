//! Reading goon results for the page (format 1 and 2, a merged fleet). What the page computes
//! from is read strictly, as `report merge` reads it: the kind and format version, format 2's
//! counts and latencies, each interval sample. A format-1 file (neither kind nor version) is
//! read as it is, a missing count as 0; labels (host name, command line) show as present.

use hdrhistogram::Histogram;
use serde_json::Value;

use super::sections::{add_part, IvTls, IvTraffic, IvWs, Sections};
use super::{err, InputError, FLEET_BUCKETS_MAX, PERCENTILE_NINES_MAX, PERCENTILE_STEPS_PER_NINE};
use crate::net::Cause;
use crate::result::sample::SAMPLES_CAP;
use crate::result::totals::Totals;
use crate::stats::Latency;
use crate::units::go_duration;

pub(super) fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

pub(super) fn int(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or_else(|| n.as_f64().map_or(0, |f| f.max(0.0) as u64)),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// A decimal-string (or number) u128: the format's sums of nanoseconds and their squares.
pub(super) fn big(v: &Value) -> Option<u128> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().map(u128::from),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A histogram as its recorded buckets only, in value order: (lowest and highest equivalent
/// value in µs, count). An interval's histogram fills a few hundred of the 27,000 buckets a
/// decoded one allocates (220 KB), so a page of thousands of samples keeps kilobytes each.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Sparse {
    buckets: Vec<(u64, u64, u64)>,
    total: u64,
}

impl Sparse {
    pub(super) fn of(h: &Histogram<u64>) -> Sparse {
        let buckets = h
            .iter_recorded()
            .map(|v| (h.lowest_equivalent(v.value_iterated_to()), v.value_iterated_to(), v.count_at_value()))
            .collect();
        Sparse { buckets, total: h.len() }
    }

    /// `Histogram::value_at_quantile`, to the same bucket: the highest equivalent value of the
    /// bucket where the count reaches `q` of the total (the lowest for `q` = 0).
    pub(super) fn value_at_quantile(&self, q: f64) -> u64 {
        let q = q.min(1.0);
        let at = ((q * self.total as f64).ceil() as u64).max(1);
        let mut sum = 0u64;
        for &(low, high, n) in &self.buckets {
            sum = sum.saturating_add(n);
            if sum >= at {
                return if q == 0.0 { low } else { high };
            }
        }
        0
    }

    /// Adds `o`'s counts, bucket by bucket.
    pub(super) fn add(&mut self, o: &Sparse) {
        let (a, b) = (&self.buckets, &o.buckets);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.1 == y.1 => {
                    out.push((x.0, x.1, x.2.saturating_add(y.2)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.1 < y.1 => {
                    out.push(*x);
                    i += 1;
                }
                (Some(x), None) => {
                    out.push(*x);
                    i += 1;
                }
                (_, Some(y)) => {
                    out.push(*y);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        self.buckets = out;
        self.total = self.total.saturating_add(o.total);
    }
}

/// Connect time or time to error: moments in ns (exact where the file has them) and the
/// histogram in µs.
#[derive(Clone, Debug)]
pub(super) struct Lat {
    pub(super) count: u64,
    pub(super) min_ns: u64,
    pub(super) max_ns: u64,
    pub(super) sum_ns: u128,
    pub(super) sum_sq_ns2: u128,
    pub(super) hist: Option<Sparse>,
}

impl Lat {
    pub(super) fn empty() -> Lat {
        Lat { count: 0, min_ns: u64::MAX, max_ns: 0, sum_ns: 0, sum_sq_ns2: 0, hist: None }
    }

    pub(super) fn parse(file: &str, key: &str, v: &Value) -> Result<Lat, InputError> {
        let count = int(&v["count"]);
        if count == 0 {
            return Ok(Lat::empty());
        }
        // Format 2 (exact moments as decimal strings): the strict reader report merge uses,
        // so a count that disagrees with its histogram, or moments it cannot hold, are refused.
        if v["sum_ns"].is_string() {
            let l = Latency::from_moments_json(v).map_err(|e| err(file, format!("{key}.{e}")))?;
            return Ok(super::sections::lat_of(&l));
        }
        let hist = match v["histogram_v2_deflate_base64"].as_str() {
            Some(b64) if !b64.is_empty() => Some(Sparse::of(
                &Latency::decode_hist(b64).map_err(|e| err(file, format!("{key}.histogram_v2_deflate_base64: {e}")))?,
            )),
            _ => None,
        };
        // Format 2 has the exact moments; format 1 only the derived µs values.
        let (min_ns, max_ns, sum_ns, sum_sq_ns2) = match (big(&v["sum_ns"]), big(&v["sum_sq_ns2"])) {
            (Some(s), Some(q)) => (int(&v["min_ns"]), int(&v["max_ns"]), s, q),
            _ => {
                let (avg, dev) = (num(&v["avg_us"]) * 1e3, num(&v["dev_us"]) * 1e3);
                let n = count as f64;
                (
                    (num(&v["min_us"]) * 1e3) as u64,
                    (num(&v["max_us"]) * 1e3) as u64,
                    (avg * n) as u128,
                    ((dev * dev + avg * avg) * n) as u128,
                )
            }
        };
        Ok(Lat { count, min_ns, max_ns, sum_ns, sum_sq_ns2, hist })
    }

    pub(super) fn merge(&mut self, o: &Lat) {
        if o.count == 0 {
            return;
        }
        self.count += o.count;
        self.min_ns = self.min_ns.min(o.min_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        self.sum_ns += o.sum_ns;
        self.sum_sq_ns2 += o.sum_sq_ns2;
        self.hist = match (self.hist.take(), &o.hist) {
            (Some(mut h), Some(oh)) => {
                h.add(oh);
                Some(h)
            }
            (None, Some(oh)) if self.count == o.count => Some(oh.clone()),
            // One side has no histogram: no curve for the sum.
            _ => None,
        };
    }

    /// Whole nanoseconds, truncated, as goon's report computes it.
    pub(super) fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.sum_ns / self.count as u128) as f64
        }
    }

    pub(super) fn dev_ns(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let n = self.count as f64;
        let mean = self.sum_ns as f64 / n;
        (self.sum_sq_ns2 as f64 / n - mean * mean).max(0.0).sqrt()
    }

    /// A percentile in ns from the histogram, clamped to the exact [min, max] as goon's report
    /// does.
    pub(super) fn percentile_ns(&self, q: f64) -> Option<u64> {
        let h = self.hist.as_ref().filter(|_| self.count > 0)?;
        Some(h.value_at_quantile(q).saturating_mul(1000).clamp(self.min_ns, self.max_ns.max(self.min_ns)))
    }

    pub(super) fn min_avg_max_dev(&self) -> String {
        let d = |ns: f64| go_duration(std::time::Duration::from_nanos(ns.round().max(0.0) as u64));
        format!("{}/{}/{}/{}", d(self.min_ns as f64), d(self.mean_ns()), d(self.max_ns as f64), d(self.dev_ns()))
    }

    pub(super) fn percentiles_line(&self) -> Option<String> {
        let d = |ns: u64| go_duration(std::time::Duration::from_nanos(ns));
        // The quantiles as goon's own line computes them (percent / 100), to the same bucket.
        let ps: Option<Vec<String>> =
            [50.0, 90.0, 99.0, 99.9].iter().map(|p: &f64| self.percentile_ns(p / 100.0).map(d)).collect();
        Some(format!("{}/{}", ps?.join("/"), d(self.max_ns)))
    }

    /// The percentile curve: x = -log10(1 - q) (0 = the median's left end at 0%, 1 = 90%,
    /// 2 = 99%, ...), y = ms, up to the nines the sample count supports, ending at the max.
    pub(super) fn curve(&self) -> Vec<(f64, f64)> {
        if self.hist.is_none() || self.count == 0 {
            return Vec::new();
        }
        let top = (self.count as f64).log10().clamp(0.0, PERCENTILE_NINES_MAX);
        let steps = (top * PERCENTILE_STEPS_PER_NINE as f64).floor() as u32;
        let mut pts: Vec<(f64, f64)> = (0..=steps)
            .filter_map(|i| {
                let x = i as f64 / PERCENTILE_STEPS_PER_NINE as f64;
                let q = 1.0 - 10f64.powf(-x);
                self.percentile_ns(q).map(|ns| (round4(x), ns as f64 / 1e6))
            })
            .collect();
        if pts.last().is_none_or(|p| p.0 < top) {
            pts.push((round4(top), self.max_ns as f64 / 1e6));
        }
        pts
    }
}

pub(super) fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Ticks of the percentile axis, up to `top` nines.
pub(super) fn percentile_ticks(top: f64) -> Vec<(f64, String)> {
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    labels
        .iter()
        .enumerate()
        .take_while(|(i, _)| *i as f64 <= top.max(1.0))
        .map(|(i, l)| (i as f64, l.to_string()))
        .collect()
}

/// One interval of a run (format 2 `samples`).
#[derive(Clone, Debug)]
pub(super) struct Sample {
    pub(super) t_start: f64,
    pub(super) t_end: f64,
    pub(super) dialing: u64,
    pub(super) established: u64,
    pub(super) closed: u64,
    pub(super) error: u64,
    pub(super) not_initiated: u64,
    pub(super) peak: u64,
    pub(super) dials: u64,
    pub(super) established_new: u64,
    pub(super) errors: [u64; 7],
    /// Connects completed during the interval.
    pub(super) connect: Lat,
    /// `--tls` runs: the interval's handshakes.
    pub(super) tls: Option<IvTls>,
    /// Runs with traffic: the interval's messages, bytes and response times.
    pub(super) traffic: Option<IvTraffic>,
    /// `--ws` runs: the interval's upgrades and pings.
    pub(super) ws: Option<IvWs>,
}

impl Default for Sample {
    fn default() -> Sample {
        Sample {
            t_start: 0.0,
            t_end: 0.0,
            dialing: 0,
            established: 0,
            closed: 0,
            error: 0,
            not_initiated: 0,
            peak: 0,
            dials: 0,
            established_new: 0,
            errors: [0; 7],
            connect: Lat::empty(),
            tls: None,
            traffic: None,
            ws: None,
        }
    }
}

impl Sample {
    pub(super) fn parse(file: &str, i: usize, v: &Value) -> Result<Sample, InputError> {
        let st = &v["state"];
        Ok(Sample {
            t_start: num(&v["t_start_s"]),
            t_end: num(&v["t_end_s"]),
            dialing: int(&st["dialing"]),
            established: int(&st["established"]),
            closed: int(&st["closed"]),
            error: int(&st["error"]),
            not_initiated: int(&st["not_initiated"]),
            peak: int(&v["established_peak"]),
            dials: int(&v["dials"]),
            established_new: int(&v["established_new"]),
            errors: cause_counts(&v["errors"]),
            connect: Lat::parse(file, &format!("samples[{i}].connect_time"), &v["connect_time"])?,
            tls: IvTls::parse(file, &format!("samples[{i}]"), v)?,
            traffic: IvTraffic::parse(file, &format!("samples[{i}]"), v)?,
            ws: IvWs::parse(file, &format!("samples[{i}]"), v)?,
        })
    }

    pub(super) fn error_sum(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub(super) fn width(&self) -> f64 {
        (self.t_end - self.t_start).max(1e-9)
    }
}
/// One goon result (a run, or one shard of a fleet).
#[derive(Clone, Debug)]
pub(super) struct Run {
    pub(super) file: String,
    pub(super) format: u64,
    pub(super) shard: Option<(u64, u64)>,
    pub(super) host_name: String,
    pub(super) argv: Vec<String>,
    pub(super) started_unix: Option<f64>,
    pub(super) ended_unix: Option<f64>,
    pub(super) started_at: String,
    pub(super) target: String,
    pub(super) connections: u64,
    pub(super) counts: Totals,
    pub(super) connect: Lat,
    pub(super) fail: Lat,
    pub(super) dial_phase_s: Option<f64>,
    pub(super) elapsed_s: f64,
    pub(super) exit_code: u64,
    pub(super) interval_s: f64,
    pub(super) samples: Vec<Sample>,
    /// The optional parts (TLS, WebSocket, traffic, idle probe).
    pub(super) sections: Sections,
}

impl Run {
    pub(super) fn parse(file: &str, v: &Value) -> Result<Run, InputError> {
        // Format 1 had neither key; every later result names its kind and its format.
        let format = match (&v["format_version"], v["kind"].is_null()) {
            (Value::Null, true) => 1,
            (Value::Null, false) => {
                return Err(err(
                    file,
                    "format_version: missing, while \"kind\" is given (a result of format 2 or later has both)",
                ))
            }
            (f, kind_missing) => match f.as_u64() {
                Some(n @ 1..=2) if kind_missing && n >= 2 => {
                    return Err(err(file, format!("kind: missing (format_version {n} results name their kind)")))
                }
                Some(n @ 1..=2) => n,
                Some(n) if n > 2 => {
                    return Err(err(file, format!("format_version {n} is newer than this netforge reads (2)")))
                }
                _ => return Err(err(file, format!("format_version: {f} is not 1 or 2"))),
            },
        };
        let shard = match &v["shard"] {
            s @ Value::Object(_) => match (s["index"].as_u64(), s["count"].as_u64()) {
                (Some(i), Some(k)) if i < k => Some((i, k)),
                _ => return Err(err(file, format!("shard: {s}: not {{\"index\": I, \"count\": K}} with I < K"))),
            },
            _ => None,
        };
        let argv = v["argv"].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
        Ok(Run {
            file: file.to_string(),
            format,
            shard,
            host_name: text(&v["host_name"]),
            argv,
            started_unix: v["started_unix_s"].as_f64(),
            ended_unix: v["ended_unix_s"].as_f64(),
            started_at: text(&v["started_at"]),
            target: text(&v["config"]["target"]),
            connections: int(&v["config"]["connections"]),
            counts: if format >= 2 { strict_counts(file, v)? } else { counts(v) },
            connect: Lat::parse(file, "connect_time", &v["connect_time"])?,
            fail: Lat::parse(file, "time_to_error", &v["time_to_error"])?,
            dial_phase_s: v["dial_phase_s"].as_f64(),
            // A merged fleet has no elapsed_s of its own: first start to last end.
            elapsed_s: v["elapsed_s"]
                .as_f64()
                .unwrap_or_else(|| (num(&v["ended_unix_s"]) - num(&v["started_unix_s"])).max(0.0)),
            exit_code: int(&v["exit_code"]),
            interval_s: v["sample_interval_s"].as_f64().filter(|w| *w > 0.0).unwrap_or(1.0),
            samples: match v["samples"].as_array() {
                Some(a) if a.len() > SAMPLES_CAP => {
                    return Err(err(file, format!("samples: {} samples: goon keeps at most {SAMPLES_CAP}", a.len())))
                }
                Some(a) => a.iter().enumerate().map(|(i, s)| Sample::parse(file, i, s)).collect::<Result<_, _>>()?,
                // Format 1 had none; a result with no interval samples has an empty array.
                None if v["samples"].is_null() => Vec::new(),
                None => return Err(err(file, format!("samples: {}: not an array", v["samples"]))),
            },
            sections: Sections::parse(file, v)?,
        })
    }

    pub(super) fn label(&self) -> String {
        let name = match self.shard {
            Some((i, _)) => format!("shard {i}"),
            None => self.file.clone(),
        };
        if self.host_name.is_empty() {
            name
        } else {
            format!("{name} ({})", self.host_name)
        }
    }
}

/// The fleet's sum over time: each shard's sample goes to bucket
/// `round((start - fleet start) / w) + floor(t_start / w)`; a bucket holds the shards' latest
/// state at or before it (0 before a shard's first sample and after its last) and the sum of
/// their deltas (docs/json-format.md, "Fleet samples").
pub(super) fn fleet_samples(runs: &[Run]) -> Result<Vec<Sample>, InputError> {
    let w = runs.iter().map(|r| r.interval_s).fold(0.0f64, f64::max).max(1e-3);
    let start = runs.iter().filter_map(|r| r.started_unix).fold(f64::INFINITY, f64::min);
    let mut placed: Vec<Vec<(usize, &Sample)>> = Vec::with_capacity(runs.len());
    let mut buckets = 0usize;
    for r in runs {
        let offset = r.started_unix.filter(|_| start.is_finite()).map_or(0.0, |s| ((s - start) / w).round());
        let mut v = Vec::with_capacity(r.samples.len());
        for s in &r.samples {
            let b = offset + (s.t_start / w + 1e-6).floor().max(0.0);
            if b >= FLEET_BUCKETS_MAX as f64 {
                return Err(err(
                    &r.file,
                    format!("starts {:.0} s after the first shard: too far apart to draw as one fleet", offset * w),
                ));
            }
            v.push((b as usize, s));
            buckets = buckets.max(b as usize + 1);
        }
        placed.push(v);
    }
    let mut out: Vec<Sample> = (0..buckets)
        .map(|b| Sample { t_start: b as f64 * w, t_end: (b + 1) as f64 * w, ..Sample::default() })
        .collect();
    for shard in &placed {
        let Some(&(last_bucket, _)) = shard.last() else { continue };
        let mut latest: Option<&Sample> = None;
        let mut next = shard.iter().peekable();
        for (b, bucket) in out.iter_mut().enumerate().take(last_bucket + 1) {
            while let Some(&&(sb, s)) = next.peek() {
                if sb != b {
                    break;
                }
                bucket.dials += s.dials;
                bucket.established_new += s.established_new;
                for (a, e) in bucket.errors.iter_mut().zip(s.errors) {
                    *a += e;
                }
                bucket.connect.merge(&s.connect);
                add_part(&mut bucket.tls, &s.tls, IvTls::add);
                add_part(&mut bucket.traffic, &s.traffic, IvTraffic::add);
                add_part(&mut bucket.ws, &s.ws, IvWs::add);
                latest = Some(s);
                next.next();
            }
            if let Some(s) = latest {
                bucket.dialing += s.dialing;
                bucket.established += s.established;
                bucket.closed += s.closed;
                bucket.error += s.error;
                bucket.not_initiated += s.not_initiated;
                bucket.peak += s.peak;
            }
        }
    }
    // The last bucket ends where the longest run ended, not a whole interval later.
    let end = runs
        .iter()
        .filter_map(|r| r.samples.last().map(|s| (r, s)))
        .map(|(r, s)| {
            r.started_unix.filter(|_| start.is_finite()).map_or(0.0, |t| ((t - start) / w).round() * w) + s.t_end
        })
        .fold(0.0f64, f64::max);
    if let Some(last) = out.last_mut() {
        if end > last.t_start {
            last.t_end = end;
        }
    }
    Ok(out)
}

/// A format-2 result's counts, as `report merge` reads them: each one there and a
/// non-negative integer, or the file and the key are named.
fn strict_counts(file: &str, v: &Value) -> Result<Totals, InputError> {
    let at = |k: &str| k.split('.').fold(v, |x, part| &x[part]);
    Totals::read(|k| at(k).as_u64().ok_or_else(|| err(file, format!("{k}: missing or not a non-negative integer"))))
}

/// A format-1 result's counts: what is there, a missing one as 0.
fn counts(v: &Value) -> Totals {
    let at = |k: &str| k.split('.').fold(v, |x, part| &x[part]);
    let Ok(t) = Totals::read(|k| Ok::<u64, std::convert::Infallible>(int(at(k))));
    t
}

/// Errors by cause, in `Cause::ALL` order.
fn cause_counts(v: &Value) -> [u64; 7] {
    let mut errors = [0u64; 7];
    for c in Cause::ALL {
        errors[c.index()] = int(&v[c.name()]);
    }
    errors
}

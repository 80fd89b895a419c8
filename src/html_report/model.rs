//! From JSON results to what the page shows: tables of text and charts of points. Sans-io and
//! deterministic, so every number on the page is tested here; the page's script only draws.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::stats::Latency;
use crate::units::go_duration;

/// goon's error causes, in the order its report prints them.
pub(crate) const CAUSES: [&str; 7] = ["refused", "timeout", "reset", "no_ports", "no_fds", "unreachable", "other"];
/// Most shards drawn as their own line or curve; the table lists every shard.
pub(crate) const SHARD_LINES_MAX: usize = 16;
/// Most bp connections drawn as their own chart.
pub(crate) const BP_CONNECTION_CHARTS_MAX: usize = 8;
/// Most fleet time buckets (shards that started further apart than this many intervals are
/// refused rather than drawn as one mostly empty chart).
pub(crate) const FLEET_BUCKETS_MAX: usize = 1_000_000;
/// The percentile curve reaches 1 - 10^-PERCENTILE_NINES_MAX (99.9999%) at most.
const PERCENTILE_NINES_MAX: f64 = 6.0;
/// Steps per decade of the percentile curve.
const PERCENTILE_STEPS_PER_NINE: u32 = 20;

/// One JSON document and what to call it (its file name).
pub(crate) struct Input {
    pub label: String,
    pub doc: Value,
}

/// A result the page cannot be made from, naming the file.
#[derive(Debug, PartialEq)]
pub(crate) struct InputError {
    pub file: String,
    pub msg: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.msg)
    }
}

fn err(file: &str, msg: impl Into<String>) -> InputError {
    InputError { file: file.to_string(), msg: msg.into() }
}

/// How the page's script formats an axis's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    Count,
    PerSecond,
    Bytes,
    BytesPerSecond,
    Ms,
    Seconds,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart. `bands` are x ranges shaded behind the lines (bp's zero-window time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Chart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub x_unit: Unit,
    /// Explicit x-axis ticks (the percentile axis); none: the script picks round values.
    pub x_ticks: Vec<(f64, String)>,
    pub y_label: String,
    pub y_unit: Unit,
    pub y_log: bool,
    pub series: Vec<Series>,
    pub bands: Vec<(f64, f64)>,
    pub band_label: String,
}

/// A horizontal bar chart (errors by cause).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Bars {
    pub id: String,
    pub title: String,
    pub items: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub title: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Everything one page shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    pub title: String,
    /// `goon`, `goon fleet` or `bp client`.
    pub kind: &'static str,
    /// bp client's verdict line.
    pub verdict: Option<String>,
    pub summary: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub charts: Vec<Chart>,
    pub bars: Vec<Bars>,
    pub tables: Vec<Table>,
    /// (what, command line).
    pub commands: Vec<(String, String)>,
}

/// Builds the page for `inputs` (see the module docs of `html_report` for what may be given).
pub(crate) fn build(inputs: &[Input]) -> Result<Page, InputError> {
    let Some(first) = inputs.first() else {
        return Err(err("report html", "no input files"));
    };
    let kinds: Vec<Kind> = inputs.iter().map(|i| kind_of(&i.label, &i.doc)).collect::<Result<_, _>>()?;
    if kinds[0] == Kind::Bp {
        if inputs.len() > 1 {
            return Err(err(&inputs[1].label, "a bp client result is shown alone: give one file"));
        }
        return bp_page(&first.label, &first.doc);
    }
    if let Some(i) = kinds.iter().position(|k| *k == Kind::Bp) {
        return Err(err(&inputs[i].label, "a bp client result cannot be shown with goon results"));
    }
    if kinds[0] == Kind::Fleet {
        if inputs.len() > 1 {
            return Err(err(&inputs[1].label, "a merged fleet result is shown alone: give it, or its shard files"));
        }
        return fleet_page(&first.label, &first.doc);
    }
    if let Some(i) = kinds.iter().position(|k| *k == Kind::Fleet) {
        return Err(err(&inputs[i].label, "a merged fleet result cannot be shown with shard files"));
    }
    let runs: Vec<Run> = inputs.iter().map(|i| Run::parse(&i.label, &i.doc)).collect::<Result<_, _>>()?;
    goon_page(runs, None)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Goon,
    Fleet,
    Bp,
}

fn kind_of(file: &str, doc: &Value) -> Result<Kind, InputError> {
    if !doc.is_object() {
        return Err(err(file, "not a JSON object"));
    }
    match (doc["kind"].as_str(), doc["role"].as_str()) {
        (Some("goon-fleet"), _) => return Ok(Kind::Fleet),
        (Some("goon"), _) | (None, Some("goon")) => return Ok(Kind::Goon),
        (Some(k), _) => return Err(err(file, format!("kind {k:?} is not goon, goon-fleet or a bp client result"))),
        _ => {}
    }
    if doc["verdict"].is_string() && doc["series"].is_array() {
        return Ok(Kind::Bp);
    }
    Err(err(file, "not a goon, report merge or bp client JSON result (no \"kind\", \"role\" or \"verdict\")"))
}

// ---- reading -------------------------------------------------------------------------------

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or_else(|| n.as_f64().map_or(0, |f| f.max(0.0) as u64)),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// A decimal-string (or number) u128: the format's sums of nanoseconds and their squares.
fn big(v: &Value) -> Option<u128> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().map(u128::from),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Connect time or time to error: moments in ns (exact where the file has them) and the
/// histogram in µs.
#[derive(Clone, Debug)]
struct Lat {
    count: u64,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
    sum_sq_ns2: u128,
    hist: Option<Histogram<u64>>,
}

impl Lat {
    fn empty() -> Lat {
        Lat { count: 0, min_ns: u64::MAX, max_ns: 0, sum_ns: 0, sum_sq_ns2: 0, hist: None }
    }

    fn parse(file: &str, key: &str, v: &Value) -> Result<Lat, InputError> {
        let count = int(&v["count"]);
        if count == 0 {
            return Ok(Lat::empty());
        }
        let hist = match v["histogram_v2_deflate_base64"].as_str() {
            Some(b64) if !b64.is_empty() => Some(
                Latency::decode_hist(b64).map_err(|e| err(file, format!("{key}.histogram_v2_deflate_base64: {e}")))?,
            ),
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

    fn merge(&mut self, o: &Lat) {
        if o.count == 0 {
            return;
        }
        self.count += o.count;
        self.min_ns = self.min_ns.min(o.min_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        self.sum_ns += o.sum_ns;
        self.sum_sq_ns2 += o.sum_sq_ns2;
        self.hist = match (self.hist.take(), &o.hist) {
            (Some(mut h), Some(oh)) => h.add(oh).ok().map(|_| h),
            (None, Some(oh)) if self.count == o.count => Some(oh.clone()),
            // One side has no histogram: no curve for the sum.
            _ => None,
        };
    }

    /// Whole nanoseconds, truncated, as goon's report computes it.
    fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.sum_ns / self.count as u128) as f64
        }
    }

    fn dev_ns(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let n = self.count as f64;
        let mean = self.sum_ns as f64 / n;
        (self.sum_sq_ns2 as f64 / n - mean * mean).max(0.0).sqrt()
    }

    /// A percentile in ns from the histogram, clamped to the exact [min, max] as goon's report
    /// does.
    fn percentile_ns(&self, q: f64) -> Option<u64> {
        let h = self.hist.as_ref().filter(|_| self.count > 0)?;
        Some(h.value_at_quantile(q).saturating_mul(1000).clamp(self.min_ns, self.max_ns.max(self.min_ns)))
    }

    fn min_avg_max_dev(&self) -> String {
        let d = |ns: f64| go_duration(std::time::Duration::from_nanos(ns.round().max(0.0) as u64));
        format!("{}/{}/{}/{}", d(self.min_ns as f64), d(self.mean_ns()), d(self.max_ns as f64), d(self.dev_ns()))
    }

    fn percentiles_line(&self) -> Option<String> {
        let d = |ns: u64| go_duration(std::time::Duration::from_nanos(ns));
        // The quantiles as goon's own line computes them (percent / 100), to the same bucket.
        let ps: Option<Vec<String>> =
            [50.0, 90.0, 99.0, 99.9].iter().map(|p: &f64| self.percentile_ns(p / 100.0).map(d)).collect();
        Some(format!("{}/{}", ps?.join("/"), d(self.max_ns)))
    }

    /// The percentile curve: x = -log10(1 - q) (0 = the median's left end at 0%, 1 = 90%,
    /// 2 = 99%, ...), y = ms, up to the nines the sample count supports, ending at the max.
    fn curve(&self) -> Vec<(f64, f64)> {
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

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Ticks of the percentile axis, up to `top` nines.
fn percentile_ticks(top: f64) -> Vec<(f64, String)> {
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
struct Sample {
    t_start: f64,
    t_end: f64,
    dialing: u64,
    established: u64,
    closed: u64,
    error: u64,
    not_initiated: u64,
    peak: u64,
    dials: u64,
    established_new: u64,
    errors: [u64; 7],
    /// Connects completed during the interval.
    connect: Lat,
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
        }
    }
}

impl Sample {
    fn parse(file: &str, i: usize, v: &Value) -> Result<Sample, InputError> {
        let st = &v["state"];
        let mut errors = [0u64; 7];
        for (i, c) in CAUSES.iter().enumerate() {
            errors[i] = int(&v["errors"][*c]);
        }
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
            errors,
            connect: Lat::parse(file, &format!("samples[{i}].connect_time"), &v["connect_time"])?,
        })
    }

    fn error_sum(&self) -> u64 {
        self.errors.iter().sum()
    }

    fn width(&self) -> f64 {
        (self.t_end - self.t_start).max(1e-9)
    }
}

#[derive(Clone, Debug, Default)]
struct Counts {
    total: u64,
    dialing: u64,
    established: u64,
    closed: u64,
    error: u64,
    not_initiated: u64,
    total_established: u64,
    max_concurrent: u64,
}

impl Counts {
    fn parse(v: &Value) -> Counts {
        Counts {
            total: int(&v["total"]),
            dialing: int(&v["dialing"]),
            established: int(&v["established"]),
            closed: int(&v["closed"]),
            error: int(&v["error"]),
            not_initiated: int(&v["not_initiated"]),
            total_established: int(&v["total_established"]),
            max_concurrent: int(&v["max_concurrent_established"]),
        }
    }

    fn add(&mut self, o: &Counts) {
        self.total += o.total;
        self.dialing += o.dialing;
        self.established += o.established;
        self.closed += o.closed;
        self.error += o.error;
        self.not_initiated += o.not_initiated;
        self.total_established += o.total_established;
    }

    /// goon's exit status over these counts: 1 if some connection never finished dialing, else
    /// 2 if any errored, else 0.
    fn exit_code(&self) -> u64 {
        if self.not_initiated > 0 || self.dialing > 0 {
            1
        } else if self.error > 0 {
            2
        } else {
            0
        }
    }
}

/// One goon result (a run, or one shard of a fleet).
#[derive(Clone, Debug)]
struct Run {
    file: String,
    format: u64,
    shard: Option<(u64, u64)>,
    host_name: String,
    argv: Vec<String>,
    started_unix: Option<f64>,
    started_at: String,
    target: String,
    connections: u64,
    counts: Counts,
    errors: [u64; 7],
    connect: Lat,
    fail: Lat,
    dial_phase_s: Option<f64>,
    elapsed_s: f64,
    exit_code: u64,
    interval_s: f64,
    samples: Vec<Sample>,
}

impl Run {
    fn parse(file: &str, v: &Value) -> Result<Run, InputError> {
        let format = if v["format_version"].is_null() { 1 } else { int(&v["format_version"]) };
        if format > 2 {
            return Err(err(file, format!("format_version {format} is newer than this netforge reads (2)")));
        }
        let mut errors = [0u64; 7];
        for (i, c) in CAUSES.iter().enumerate() {
            errors[i] = int(&v["errors"][*c]);
        }
        let shard = v["shard"].as_object().map(|s| (int(&s["index"]), int(&s["count"])));
        let argv = v["argv"].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
        Ok(Run {
            file: file.to_string(),
            format,
            shard,
            host_name: text(&v["host_name"]),
            argv,
            started_unix: v["started_unix_s"].as_f64(),
            started_at: text(&v["started_at"]),
            target: text(&v["config"]["target"]),
            connections: int(&v["config"]["connections"]),
            counts: Counts::parse(&v["counts"]),
            errors,
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
                Some(a) => a.iter().enumerate().map(|(i, s)| Sample::parse(file, i, s)).collect::<Result<_, _>>()?,
                None => Vec::new(),
            },
        })
    }

    fn label(&self) -> String {
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
fn fleet_samples(runs: &[Run]) -> Result<Vec<Sample>, InputError> {
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

// ---- goon pages ----------------------------------------------------------------------------

fn time_chart(id: &str, title: &str, y_label: &str, y_unit: Unit, series: Vec<Series>) -> Chart {
    Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "time since start".to_string(),
        x_unit: Unit::Seconds,
        x_ticks: Vec::new(),
        y_label: y_label.to_string(),
        y_unit,
        y_log: false,
        series,
        bands: Vec::new(),
        band_label: String::new(),
    }
}

/// State counts at each interval's end, from 0 at the start of the first interval (nothing is
/// dialed before the run starts).
fn state_series(samples: &[Sample], offset: f64) -> Vec<Series> {
    let line = |name: &str, f: &dyn Fn(&Sample) -> u64| Series {
        name: name.to_string(),
        points: samples
            .first()
            .map(|s| (round4(offset + s.t_start), 0.0))
            .into_iter()
            .chain(samples.iter().map(|s| (round4(offset + s.t_end), f(s) as f64)))
            .collect(),
    };
    vec![
        line("established", &|s| s.established),
        line("dialing", &|s| s.dialing),
        line("errored (total)", &|s| s.error),
        line("closed (total)", &|s| s.closed),
    ]
}

/// A per-interval rate as steps: flat over each interval, from its start to its end.
fn steps(samples: &[Sample], f: &dyn Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .flat_map(|s| {
            let r = round4(f(s) as f64 / s.width());
            [(round4(s.t_start), r), (round4(s.t_end), r)]
        })
        .collect()
}

fn rate_series(samples: &[Sample]) -> Vec<Series> {
    let line = |name: &str, f: &dyn Fn(&Sample) -> u64| Series { name: name.to_string(), points: steps(samples, f) };
    vec![
        line("dials/s", &|s| s.dials),
        line("established/s", &|s| s.established_new),
        line("errors/s", &|s| s.error_sum()),
    ]
}

/// p50, p99 and max of the connects completed in each interval (flat over the interval), from
/// the interval's own histogram and exact max; intervals without a connect are left out.
fn latency_series(samples: &[Sample]) -> Vec<Series> {
    let with: Vec<&Sample> = samples.iter().filter(|s| s.connect.count > 0 && s.connect.hist.is_some()).collect();
    if with.is_empty() {
        return Vec::new();
    }
    let line = |name: &str, f: &dyn Fn(&Lat) -> Option<u64>| Series {
        name: name.to_string(),
        points: with
            .iter()
            .filter_map(|s| f(&s.connect).map(|ns| (s, ns as f64 / 1e6)))
            .flat_map(|(s, ms)| [(round4(s.t_start), ms), (round4(s.t_end), ms)])
            .collect(),
    };
    vec![
        line("p50", &|l| l.percentile_ns(0.5)),
        line("p99", &|l| l.percentile_ns(0.99)),
        line("max", &|l| Some(l.max_ns)),
    ]
}

fn cause_series(samples: &[Sample], totals: &[u64; 7]) -> Vec<Series> {
    CAUSES
        .iter()
        .enumerate()
        .filter(|(i, _)| totals[*i] > 0)
        .map(|(i, c)| Series { name: c.to_string(), points: steps(samples, &|s| s.errors[i]) })
        .collect()
}

fn fmt_s(s: f64) -> String {
    go_duration(std::time::Duration::from_secs_f64(s.max(0.0)))
}

fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn command_line(argv: &[String]) -> String {
    argv.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" ")
}

/// The goon page for one run, several shards, or a merged fleet (`fleet`: its own totals,
/// samples, command line and file name, with `runs` its shards).
fn goon_page(mut runs: Vec<Run>, fleet: Option<Run>) -> Result<Page, InputError> {
    runs.sort_by_key(|r| r.shard.map_or(u64::MAX, |s| s.0));
    let sharded = runs.len() > 1 || fleet.is_some() || runs.iter().any(|r| r.shard.is_some_and(|s| s.1 > 1));
    // The whole: the merged file's own numbers, or the shards' sum.
    let total = match &fleet {
        Some(f) => f.clone(),
        None if runs.len() == 1 => runs[0].clone(),
        None => {
            let mut t = runs[0].clone();
            t.file = format!("{} shard files", runs.len());
            t.shard = None;
            t.host_name = String::new();
            t.counts = Counts::default();
            t.errors = [0; 7];
            t.connect = Lat::empty();
            t.fail = Lat::empty();
            for r in &runs {
                t.counts.add(&r.counts);
                for (a, e) in t.errors.iter_mut().zip(r.errors) {
                    *a += e;
                }
                t.connect.merge(&r.connect);
                t.fail.merge(&r.fail);
            }
            t.samples = fleet_samples(&runs)?;
            let upper: u64 = runs.iter().map(|r| r.counts.max_concurrent).sum();
            t.counts.max_concurrent = t.samples.iter().map(|s| s.established).max().unwrap_or(0).min(upper);
            t.exit_code = t.counts.exit_code();
            t.elapsed_s = t.samples.last().map_or(0.0, |s| s.t_end);
            t.dial_phase_s = None;
            t
        }
    };
    let c = &total.counts;
    let what = if sharded { format!("goon fleet of {} shards", runs.len()) } else { "goon run".to_string() };
    let title = if total.target.is_empty() { what.clone() } else { format!("{what} against {}", total.target) };
    let mut summary = vec![
        ("target".to_string(), total.target.clone()),
        ("connections".to_string(), c.total.to_string()),
        (
            "status".to_string(),
            format!(
                "Dialing: {}, Established: {}, Closed: {}, Error: {}, NotInitiated: {}",
                c.dialing, c.established, c.closed, c.error, c.not_initiated
            ),
        ),
        ("total established connections".to_string(), c.total_established.to_string()),
        ("max concurrent established connections".to_string(), c.max_concurrent.to_string()),
        ("established connections on closure".to_string(), c.established.to_string()),
    ];
    if total.connections != c.total && total.connections > 0 {
        summary.insert(2, ("whole fleet (--connections)".to_string(), total.connections.to_string()));
    }
    if total.connect.count > 0 {
        summary.push((
            format!("response time, {} successful connections, min/avg/max/dev", total.connect.count),
            total.connect.min_avg_max_dev(),
        ));
        if let Some(p) = total.connect.percentiles_line() {
            summary.push(("response time p50/p90/p99/p99.9/max".to_string(), p));
        }
    }
    if total.fail.count > 0 {
        summary.push((
            format!("time to error, {} failed connections, min/avg/max/dev", total.fail.count),
            total.fail.min_avg_max_dev(),
        ));
    }
    if let Some(d) = total.dial_phase_s {
        summary.push(("dial phase".to_string(), fmt_s(d)));
    }
    summary.push(("elapsed".to_string(), fmt_s(total.elapsed_s)));
    summary.push(("exit status".to_string(), total.exit_code.to_string()));
    let mut notes = Vec::new();
    if sharded && fleet.is_none() {
        notes.push(format!(
            "Fleet totals summed here from {} shard files; `netforge report merge` checks them (same target, format and \
             precision, no shard missing or repeated) and applies thresholds. Max concurrent established is the largest \
             summed per-interval count, at most the sum of the shards' own peaks.",
            runs.len()
        ));
    }
    let mut charts = Vec::new();
    if total.samples.is_empty() {
        notes.push(format!(
            "{}: no per-interval samples (JSON format {}), so no time series; the totals and the percentile curve \
             are shown.",
            total.file, total.format
        ));
    } else {
        let scope = if sharded { "fleet total" } else { "this run" };
        charts.push(time_chart(
            "connections",
            &format!("Connections by state over time ({scope})"),
            "connections",
            Unit::Count,
            state_series(&total.samples, 0.0),
        ));
        if sharded {
            let start = runs.iter().filter_map(|r| r.started_unix).fold(f64::INFINITY, f64::min);
            let series = runs
                .iter()
                .take(SHARD_LINES_MAX)
                .map(|r| {
                    let offset = match (r.started_unix, start.is_finite()) {
                        (Some(s), true) => s - start,
                        _ => 0.0,
                    };
                    let mut line = state_series(&r.samples, offset).swap_remove(0);
                    line.name = r.label();
                    line
                })
                .collect();
            charts.push(time_chart(
                "per-shard",
                "Established connections per shard",
                "established",
                Unit::Count,
                series,
            ));
            if runs.len() > SHARD_LINES_MAX {
                notes.push(format!("The per-shard charts draw the first {SHARD_LINES_MAX} of {} shards.", runs.len()));
            }
        }
        charts.push(time_chart(
            "rates",
            &format!("Dials, connects and errors per second ({scope})"),
            "per second",
            Unit::PerSecond,
            rate_series(&total.samples),
        ));
        let lat = latency_series(&total.samples);
        if !lat.is_empty() {
            let mut c = time_chart(
                "interval-latency",
                &format!("Connect time per interval ({scope})"),
                "connect time",
                Unit::Ms,
                lat,
            );
            c.y_log = true;
            charts.push(c);
        }
        if total.errors.iter().any(|e| *e > 0) {
            charts.push(time_chart(
                "errors",
                &format!("Errors per second by cause ({scope})"),
                "errors per second",
                Unit::PerSecond,
                cause_series(&total.samples, &total.errors),
            ));
        }
    }
    let mut curves = Vec::new();
    let fleet_curve = total.connect.curve();
    if !fleet_curve.is_empty() {
        curves.push(Series { name: if sharded { "fleet".into() } else { "connect time".into() }, points: fleet_curve });
    }
    if sharded {
        for r in runs.iter().take(SHARD_LINES_MAX) {
            let pts = r.connect.curve();
            if !pts.is_empty() {
                curves.push(Series { name: r.label(), points: pts });
            }
        }
    }
    if !curves.is_empty() {
        let top = curves.iter().filter_map(|s| s.points.last()).map(|p| p.0).fold(0.0, f64::max);
        charts.push(Chart {
            id: "percentiles".to_string(),
            title: "Connect-time percentiles (from the HdrHistogram)".to_string(),
            x_label: "percentile".to_string(),
            x_unit: Unit::Count,
            x_ticks: percentile_ticks(top),
            y_label: "connect time".to_string(),
            y_unit: Unit::Ms,
            y_log: true,
            series: curves,
            bands: Vec::new(),
            band_label: String::new(),
        });
    } else if total.connect.count > 0 {
        notes.push("No connect-time histogram in the input, so no percentile curve.".to_string());
    }
    let items: Vec<(String, u64)> =
        CAUSES.iter().zip(total.errors).filter(|(_, n)| *n > 0).map(|(c, n)| (c.to_string(), n)).collect();
    let bars = if items.is_empty() {
        notes.push("No connection errors.".to_string());
        Vec::new()
    } else {
        vec![Bars { id: "causes".to_string(), title: "Errors by cause".to_string(), items }]
    };
    let pct = |l: &Lat, q: f64| l.percentile_ns(q).map_or("-".to_string(), |ns| fmt_s(ns as f64 / 1e9));
    let head = [
        "shard",
        "host",
        "file",
        "started",
        "total",
        "established",
        "max concurrent",
        "closed",
        "errors",
        "not initiated",
        "connect p50",
        "connect p99",
        "exit",
    ];
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.shard.map_or("-".to_string(), |(i, k)| format!("{i}/{k}")),
                r.host_name.clone(),
                r.file.clone(),
                r.started_at.clone(),
                r.counts.total.to_string(),
                r.counts.established.to_string(),
                r.counts.max_concurrent.to_string(),
                r.counts.closed.to_string(),
                r.counts.error.to_string(),
                r.counts.not_initiated.to_string(),
                pct(&r.connect, 0.5),
                pct(&r.connect, 0.99),
                r.exit_code.to_string(),
            ]
        })
        .collect();
    let tables = vec![Table {
        title: if sharded { "Shards".to_string() } else { "Run".to_string() },
        head: head.iter().map(|h| h.to_string()).collect(),
        rows,
    }];
    let mut commands = Vec::new();
    if let Some(f) = &fleet {
        if !f.argv.is_empty() {
            commands.push(("merge".to_string(), command_line(&f.argv)));
        }
    }
    for r in &runs {
        if !r.argv.is_empty() {
            commands.push((r.label(), command_line(&r.argv)));
        }
    }
    if commands.is_empty() {
        notes.push("The input records no command line (JSON format 1).".to_string());
    }
    Ok(Page {
        title,
        kind: if sharded { "goon fleet" } else { "goon" },
        verdict: None,
        summary,
        notes,
        charts,
        bars,
        tables,
        commands,
    })
}

fn fleet_page(file: &str, doc: &Value) -> Result<Page, InputError> {
    let mut fleet = Run::parse(file, doc)?;
    fleet.file = file.to_string();
    let mut shards = Vec::new();
    if let Some(results) = doc["shard_results"].as_array() {
        for (i, r) in results.iter().enumerate() {
            shards.push(Run::parse(&format!("{file}: shard_results[{i}]"), r)?);
        }
        // Name shards by the file they came from, where the fleet says.
        if let Some(per) = doc["fleet"]["per_shard"].as_array() {
            for (s, p) in shards.iter_mut().zip(per) {
                if let Some(f) = p["file"].as_str() {
                    s.file = f.to_string();
                }
            }
        }
    }
    if shards.is_empty() {
        return Err(err(file, "a merged fleet result without shard_results"));
    }
    let mut page = goon_page(shards, Some(fleet))?;
    let v = &doc["fleet"]["violations"];
    if let Some(vs) = v.as_array().filter(|a| !a.is_empty()) {
        page.notes.insert(0, format!("Thresholds violated: {}", vs.iter().map(text).collect::<Vec<_>>().join("; ")));
    }
    if let Some(m) = doc["fleet"]["missing"].as_array().filter(|a| !a.is_empty()) {
        page.notes.insert(0, format!("Missing shards: {}", m.iter().map(text).collect::<Vec<_>>().join(", ")));
    }
    Ok(page)
}

// ---- bp client page ------------------------------------------------------------------------

/// One point of a bp client series.
struct BpPoint {
    t: f64,
    bytes_written: f64,
    outq: f64,
    notsent: Option<f64>,
    snd_wnd: Option<f64>,
    zero: bool,
}

fn bp_points(v: &Value) -> Vec<BpPoint> {
    v["series"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| BpPoint {
                    t: num(&p["t"]),
                    bytes_written: num(&p["bytes_written"]),
                    outq: num(&p["outq"]),
                    notsent: p["notsent"].as_f64(),
                    snd_wnd: p["snd_wnd"].as_f64(),
                    zero: p["state"].as_str() == Some("zero-window") || p["snd_wnd"].as_f64() == Some(0.0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs of zero-window points as x ranges: from a zero point to the next point (the window
/// was seen closed from then until it was seen open), or to the last point.
fn zero_bands(pts: &[BpPoint]) -> Vec<(f64, f64)> {
    let mut bands: Vec<(f64, f64)> = Vec::new();
    for (i, p) in pts.iter().enumerate() {
        if !p.zero {
            continue;
        }
        let end = pts.get(i + 1).map_or(p.t, |n| n.t);
        match bands.last_mut() {
            Some(b) if (b.1 - p.t).abs() < 1e-9 => b.1 = end,
            _ => bands.push((p.t, end)),
        }
    }
    bands.into_iter().map(|(a, b)| (round4(a), round4(b))).collect()
}

fn window_chart(id: &str, title: &str, pts: &[BpPoint]) -> Chart {
    let line = |name: &str, f: &dyn Fn(&BpPoint) -> Option<f64>| Series {
        name: name.to_string(),
        points: pts.iter().filter_map(|p| f(p).map(|y| (round4(p.t), y))).collect(),
    };
    let series: Vec<Series> = [
        line("peer window (snd_wnd)", &|p| p.snd_wnd),
        line("unacknowledged (SIOCOUTQ)", &|p| Some(p.outq)),
        line("not sent (notsent)", &|p| p.notsent),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "time since start".to_string(),
        x_unit: Unit::Seconds,
        x_ticks: Vec::new(),
        y_label: "bytes".to_string(),
        y_unit: Unit::Bytes,
        y_log: false,
        series,
        bands: zero_bands(pts),
        band_label: "zero window".to_string(),
    }
}

fn bp_page(file: &str, doc: &Value) -> Result<Page, InputError> {
    let pts = bp_points(doc);
    if pts.is_empty() {
        return Err(err(file, "series: no samples to draw"));
    }
    let mut charts = vec![window_chart("window", "Peer window and send queue (all connections)", &pts)];
    let rate: Vec<(f64, f64)> = pts
        .windows(2)
        .filter(|w| w[1].t > w[0].t)
        .map(|w| (round4(w[1].t), ((w[1].bytes_written - w[0].bytes_written) / (w[1].t - w[0].t)).max(0.0).round()))
        .collect();
    let mut rate_chart = time_chart(
        "write-rate",
        "Application write rate (bytes write(2) accepted per second)",
        "bytes per second",
        Unit::BytesPerSecond,
        vec![Series { name: "app_write".to_string(), points: rate }],
    );
    rate_chart.bands = zero_bands(&pts);
    rate_chart.band_label = "zero window".to_string();
    charts.push(rate_chart);
    let conns = doc["connections"].as_array().cloned().unwrap_or_default();
    if conns.len() > 1 {
        for (i, c) in conns.iter().enumerate().take(BP_CONNECTION_CHARTS_MAX) {
            let cp = bp_points(c);
            if !cp.is_empty() {
                charts.push(window_chart(&format!("conn-{i}"), &format!("Connection {i}: window and send queue"), &cp));
            }
        }
    }
    let s = &doc["summary"];
    let opt = |v: &Value, f: &dyn Fn(&Value) -> String| if v.is_null() { "-".to_string() } else { f(v) };
    let e = &s["episodes"];
    let summary = vec![
        ("samples".to_string(), int(&s["samples"]).to_string()),
        (
            "zero-window samples".to_string(),
            format!("{} ({:.1}%)", int(&s["zero_window_samples"]), num(&s["zero_window_fraction"]) * 100.0),
        ),
        ("window-limited samples".to_string(), int(&s["window_limited_samples"]).to_string()),
        ("first zero window".to_string(), opt(&s["first_zero_window_s"], &|v| format!("t={:.2} s", num(v)))),
        ("bytes before the first EAGAIN".to_string(), opt(&s["first_eagain_after_bytes"], &|v| int(v).to_string())),
        ("bytes written".to_string(), int(&s["bytes_written"]).to_string()),
        ("writes refused (EAGAIN)".to_string(), int(&s["eagain"]).to_string()),
        ("max probe backoff".to_string(), int(&s["max_backoff"]).to_string()),
        (
            "zero-window episodes".to_string(),
            format!(
                "{} (min {:.2} s, avg {:.2} s, max {:.2} s{})",
                int(&e["count"]),
                num(&e["min_s"]),
                num(&e["avg_s"]),
                num(&e["max_s"]),
                if e["open_at_end"].as_bool() == Some(true) { ", one open at the end" } else { "" }
            ),
        ),
        ("unacknowledged at the end (SIOCOUTQ)".to_string(), int(&doc["final"]["outq"]).to_string()),
    ];
    let mut tables = Vec::new();
    if !conns.is_empty() {
        let rows = conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cs = &c["summary"];
                vec![
                    i.to_string(),
                    int(&cs["samples"]).to_string(),
                    format!("{:.1}%", num(&cs["zero_window_fraction"]) * 100.0),
                    int(&cs["bytes_written"]).to_string(),
                    text(&c["verdict"]),
                ]
            })
            .collect();
        tables.push(Table {
            title: "Connections".to_string(),
            head: ["connection", "samples", "zero window", "bytes written", "verdict"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows,
        });
    }
    let mut notes = Vec::new();
    if int(&doc["series_stride"]) > 1 {
        notes.push(format!("The series keeps every {}th sample (bounded to 4096 points).", int(&doc["series_stride"])));
    }
    Ok(Page {
        title: "bp client run".to_string(),
        kind: "bp client",
        verdict: Some(text(&doc["verdict"])),
        summary,
        notes,
        charts,
        bars: Vec::new(),
        tables,
        commands: Vec::new(),
    })
}

/// The data the page's script draws, as one JSON value.
pub(crate) fn chart_data(page: &Page) -> Value {
    serde_json::json!({ "charts": page.charts, "bars": page.bars })
}

#[cfg(test)]
mod tests;

//! `netforge report merge FILES...`: one exact result for a fleet of goon shards.
//!
//! Each file is a `goon --json` result of format version 2 (docs/json-format.md). Counts and
//! errors are summed, the connect-time and time-to-error HdrHistograms are added (same precision
//! required) and the exact moments (count, min, max, Σx, Σx², integers) combined, so the merged
//! min/avg/max/dev and every percentile equal those of one run that had held every sample. The
//! per-interval samples are summed by wall-clock bucket (§6 of the format), which gives the
//! fleet's "max concurrent established" and the fleet's ramp.
//!
//! Refused, with one line naming the file and key: another format version or kind, another
//! target or `--connections`, another histogram precision or sample interval, a duplicated
//! shard, a file without a shard among several; and, unless `--allow-missing`, a missing shard.
//! Exit status: goon's (0 all fine; 1 some connection never finished dialing; 2 some errored,
//! unless `--max-errors` judges errors), or 3 when a threshold is violated.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::error::{ConfigError, Error};
use crate::goon::args::SHARDS_MAX;
use crate::goon::report::{latency_json, target_label, FORMAT_VERSION};
use crate::goon::samples::{Sample, State, SAMPLES_CAP};
use crate::net::Cause;
use crate::stats::{counted, Latency};
use crate::units::{go_duration, parse_duration_in, MAX_DURATION};

/// Largest result file read (a 4096-sample result is a few MiB).
pub const MAX_RESULT_BYTES: u64 = 256 << 20;
/// Exit status when a threshold is violated.
pub const EXIT_THRESHOLD: u8 = 3;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// goon --json results (format version 2), one per shard of the fleet.
    #[arg(required = true, value_name = "FILES")]
    pub(crate) files: Vec<PathBuf>,
    /// Write the merged fleet result as JSON (kind "goon-fleet", docs/json-format.md §6).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Merge even when some of the K shards' files are missing (the report names them; their
    /// connections are not counted).
    #[arg(long)]
    pub(crate) allow_missing: bool,
    /// Threshold: at most N errors fleet-wide, or at most P% of the fleet's connections
    /// (e.g. 100 or 0.5%). When given, errors within it do not make the exit status 2.
    #[arg(long, value_name = "N|P%", value_parser = parse_error_limit)]
    pub(crate) max_errors: Option<ErrorLimit>,
    /// Threshold: the fleet's p99 connect time at most DURATION (e.g. 5ms, 250us), 1ns..=8760h.
    #[arg(long, value_name = "DURATION",
          value_parser = |s: &str| parse_duration_in(s, Duration::from_nanos(1), MAX_DURATION))]
    pub(crate) max_p99: Option<Duration>,
    /// Threshold: at least N connections established fleet-wide ("Total established
    /// connections", exact), 0..=2^64-1.
    #[arg(long, value_name = "N", value_parser = |s: &str| crate::units::parse_int(s, 0, u64::MAX))]
    pub(crate) min_established: Option<u64>,
}

/// `--max-errors`: a count or a percentage of the fleet's connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorLimit {
    Count(u64),
    Percent(f64),
}

impl std::fmt::Display for ErrorLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorLimit::Count(n) => write!(f, "{n}"),
            ErrorLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

pub(crate) fn parse_error_limit(s: &str) -> Result<ErrorLimit, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("{t:?} is not a percentage like 0.5%"))?;
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return Err(format!("{t:?}: a percentage must be 0..=100"));
        }
        return Ok(ErrorLimit::Percent(v));
    }
    crate::units::parse_int(t, 0, u64::MAX)
        .map(ErrorLimit::Count)
        .map_err(|_| format!("{t:?} is not a count (100) or a percentage (0.5%)"))
}

/// goon's counts of one result (or of the fleet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub dialing: u64,
    pub established: u64,
    pub closed: u64,
    pub error: u64,
    pub not_initiated: u64,
    pub total_established: u64,
    pub max_concurrent_established: u64,
    pub errors: [u64; 7],
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.total += o.total;
        self.dialing += o.dialing;
        self.established += o.established;
        self.closed += o.closed;
        self.error += o.error;
        self.not_initiated += o.not_initiated;
        self.total_established += o.total_established;
        self.max_concurrent_established += o.max_concurrent_established;
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
    }
}

/// One shard's result, read and checked.
#[derive(Debug)]
pub struct ShardDoc {
    pub path: PathBuf,
    pub doc: Value,
    pub shard: Option<(u64, u64)>,
    pub host_name: String,
    pub target: String,
    pub host: String,
    pub builtin: bool,
    pub connections: u64,
    pub counts: Totals,
    pub connect: Latency,
    pub fail: Latency,
    pub base_interval_s: f64,
    pub stride: u64,
    pub samples: Vec<Sample>,
    pub started_unix_s: f64,
    pub ended_unix_s: f64,
    pub started_at: String,
    pub ended_at: String,
    pub exit_code: u64,
}

/// `"state.established: not an integer"` → (`state.established`, `not an integer`).
fn split_key(e: &str) -> (&str, &str) {
    e.split_once(": ").unwrap_or(("", e))
}

fn key_err(path: &Path, key: &str, msg: impl Into<String>) -> Error {
    Error::Config(ConfigError::key(path, key, msg))
}

/// Reads `path` whole (bounded) and parses it as JSON; a syntax error names its line and column.
fn read_json(path: &Path) -> Result<Value, Error> {
    let f =
        std::fs::File::open(path).map_err(|e| Error::Config(ConfigError::file(path, format!("cannot open: {e}"))))?;
    let mut text = String::new();
    f.take(MAX_RESULT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::Config(ConfigError::file(path, format!("cannot read: {e}"))))?;
    if text.len() as u64 > MAX_RESULT_BYTES {
        return Err(Error::Config(ConfigError::file(path, format!("larger than {} MiB", MAX_RESULT_BYTES >> 20))));
    }
    serde_json::from_str(&text).map_err(|e| {
        Error::Config(ConfigError {
            path: path.to_path_buf(),
            at: Some((e.line(), e.column())),
            key: None,
            msg: format!("not JSON: {e}"),
        })
    })
}

/// Reads one goon result and checks everything in it that the merge uses.
pub fn load(path: &Path) -> Result<ShardDoc, Error> {
    let doc = read_json(path)?;
    parse(path, doc)
}

pub(crate) fn parse(path: &Path, doc: Value) -> Result<ShardDoc, Error> {
    let get = |k: &str| -> Option<&Value> {
        let mut x = &doc;
        for part in k.split('.') {
            x = x.get(part)?;
        }
        Some(x)
    };
    let int = |k: &str| get(k).and_then(Value::as_u64).ok_or_else(|| key_err(path, k, "missing or not an integer"));
    let float = |k: &str| get(k).and_then(Value::as_f64).ok_or_else(|| key_err(path, k, "missing or not a number"));
    let text = |k: &str| {
        get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| key_err(path, k, "missing or not a string"))
    };
    if !doc.is_object() {
        return Err(Error::Config(ConfigError::file(path, "not a goon --json result (not a JSON object)")));
    }
    match get("format_version") {
        None => {
            return Err(key_err(
                path,
                "format_version",
                format!("missing: a result of an older netforge (format version 1); this netforge merges format version {FORMAT_VERSION}"),
            ))
        }
        Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(key_err(path, "format_version", format!("{v}: this netforge merges format version {FORMAT_VERSION}")))
        }
    }
    match get("kind").and_then(Value::as_str) {
        Some("goon") => {}
        Some(other) => {
            return Err(key_err(path, "kind", format!("{other:?}: only goon results (kind \"goon\") can be merged")))
        }
        None => return Err(key_err(path, "kind", "missing or not a string")),
    }
    let histogram = get("histogram").cloned().ok_or_else(|| key_err(path, "histogram", "missing"))?;
    if histogram != Latency::precision_json() {
        return Err(key_err(
            path,
            "histogram",
            format!("precision {histogram} differs from this netforge's {}", Latency::precision_json()),
        ));
    }
    let shard = match get("shard") {
        Some(Value::Null) | None => None,
        Some(s) => {
            let (i, k) = (s.get("index").and_then(Value::as_u64), s.get("count").and_then(Value::as_u64));
            match (i, k) {
                (Some(i), Some(k)) if i < k && k <= SHARDS_MAX => Some((i, k)),
                _ => {
                    return Err(key_err(
                        path,
                        "shard",
                        format!("{s}: not {{\"index\": I, \"count\": K}} with I < K <= {SHARDS_MAX}"),
                    ))
                }
            }
        }
    };
    let mut errors = [0u64; 7];
    for c in Cause::ALL {
        errors[c.index()] = int(&format!("errors.{}", c.name()))?;
    }
    let counts = Totals {
        total: int("counts.total")?,
        dialing: int("counts.dialing")?,
        established: int("counts.established")?,
        closed: int("counts.closed")?,
        error: int("counts.error")?,
        not_initiated: int("counts.not_initiated")?,
        total_established: int("counts.total_established")?,
        max_concurrent_established: int("counts.max_concurrent_established")?,
        errors,
    };
    let latency = |k: &str| {
        let v = get(k).ok_or_else(|| key_err(path, k, "missing"))?;
        Latency::from_moments_json(v).map_err(|e| {
            let (sub, msg) = split_key(&e);
            key_err(path, &format!("{k}.{sub}"), msg)
        })
    };
    let connect = latency("connect_time")?;
    let fail = latency("time_to_error")?;
    let stride = int("sample_stride")?;
    if stride == 0 || !stride.is_power_of_two() {
        return Err(key_err(path, "sample_stride", format!("{stride}: not a power of two")));
    }
    let interval = float("sample_interval_s")?;
    if !(interval.is_finite() && interval > 0.0) {
        return Err(key_err(path, "sample_interval_s", format!("{interval}: not a positive number of seconds")));
    }
    let raw =
        get("samples").and_then(Value::as_array).ok_or_else(|| key_err(path, "samples", "missing or not an array"))?;
    let mut samples = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let s = Sample::from_json(s).map_err(|e| {
            let (k, m) = split_key(&e);
            key_err(path, &format!("samples[{i}].{k}"), m)
        })?;
        if samples.last().is_some_and(|p: &Sample| p.index >= s.index) {
            return Err(key_err(path, &format!("samples[{i}].index"), "not above the previous sample's"));
        }
        samples.push(s);
    }
    Ok(ShardDoc {
        path: path.to_path_buf(),
        shard,
        host_name: text("host_name")?,
        target: text("config.target")?,
        host: text("config.host")?,
        builtin: get("config.builtin_target").and_then(Value::as_bool).unwrap_or(false),
        connections: int("config.connections")?,
        counts,
        connect,
        fail,
        base_interval_s: interval / stride as f64,
        stride,
        samples,
        started_unix_s: float("started_unix_s")?,
        ended_unix_s: float("ended_unix_s")?,
        started_at: text("started_at")?,
        ended_at: text("ended_at")?,
        exit_code: int("exit_code")?,
        doc,
    })
}

/// The shards checked against each other, in shard order. `allow_missing` lets shards be absent.
pub fn check_fleet(mut docs: Vec<ShardDoc>, allow_missing: bool) -> Result<(Vec<ShardDoc>, u64, Vec<u64>), Error> {
    let Some(first) = docs.first() else {
        return Err(Error::Usage("report merge: no files given".into()));
    };
    let first_path = first.path.display().to_string();
    let (target, builtin, connections, base) =
        (first.target.clone(), first.builtin, first.connections, first.base_interval_s);
    let count = match first.shard {
        Some((_, k)) => k,
        None if docs.len() == 1 => 1,
        None => {
            return Err(key_err(
                &first.path,
                "shard",
                "null: not a shard (run goon with --shard I/K); it cannot be merged with others",
            ))
        }
    };
    let mut seen: Vec<Option<String>> = vec![None; count as usize];
    for d in &docs {
        if d.builtin != builtin || (!builtin && d.target != target) {
            let t = |b: bool, t: &str| if b { format!("the built-in target ({t})") } else { t.to_string() };
            return Err(key_err(
                &d.path,
                "config.target",
                format!(
                    "{} differs from {first_path}'s {}; merge only shards of one test",
                    t(d.builtin, &d.target),
                    t(builtin, &target)
                ),
            ));
        }
        if d.connections != connections {
            return Err(key_err(
                &d.path,
                "config.connections",
                format!("{} differs from {first_path}'s {connections}; merge only shards of one test", d.connections),
            ));
        }
        if (d.base_interval_s - base).abs() > 1e-9 * base.max(1.0) {
            return Err(key_err(
                &d.path,
                "sample_interval_s",
                format!(
                    "a base interval of {}s differs from {first_path}'s {base}s; run every shard with the same --interval",
                    d.base_interval_s
                ),
            ));
        }
        let i = match d.shard {
            Some((i, k)) if k == count => i,
            Some((i, k)) => {
                return Err(key_err(&d.path, "shard", format!("{i}/{k}, but {first_path} is one of {count} shards")))
            }
            None if count == 1 && docs.len() == 1 => 0,
            None => {
                return Err(key_err(
                    &d.path,
                    "shard",
                    "null: not a shard (run goon with --shard I/K); it cannot be merged with others",
                ))
            }
        };
        if let Some(other) = &seen[i as usize] {
            return Err(key_err(&d.path, "shard", format!("{i}/{count} again ({other} is that shard too)")));
        }
        seen[i as usize] = Some(d.path.display().to_string());
    }
    let missing: Vec<u64> = (0..count).filter(|i| seen[*i as usize].is_none()).collect();
    if !missing.is_empty() && !allow_missing {
        let names: Vec<String> = missing.iter().take(8).map(|i| format!("{i}/{count}")).collect();
        return Err(Error::Usage(format!(
            "report merge: missing shard{} {}{} ({} of {count} files given); pass --allow-missing to merge what is there",
            if missing.len() == 1 { "" } else { "s" },
            names.join(", "),
            if missing.len() > 8 { ", ..." } else { "" },
            docs.len()
        )));
    }
    docs.sort_by_key(|d| d.shard.map_or(0, |s| s.0));
    Ok((docs, count, missing))
}

/// The fleet's samples summed by wall-clock bucket (docs/json-format.md §6), and the largest
/// summed established count.
pub fn fleet_samples(docs: &[ShardDoc]) -> Result<(Vec<Sample>, f64, u64, u64), String> {
    let base = docs.first().map_or(1.0, |d| d.base_interval_s);
    let fleet_start = docs.iter().map(|d| d.started_unix_s).fold(f64::INFINITY, f64::min);
    let fleet_end = docs.iter().map(|d| d.ended_unix_s).fold(f64::NEG_INFINITY, f64::max);
    let offset =
        |d: &ShardDoc, w: f64| ((d.started_unix_s - fleet_start) / w).round().clamp(0.0, u64::MAX as f64) as u64;
    // A sample's bucket at a fleet stride (base intervals per bucket).
    let bucket = |d: &ShardDoc, s: &Sample, stride: u64| {
        let base_index = u128::from(s.index) * u128::from(d.stride);
        ((base_index / u128::from(stride)) as u64).saturating_add(offset(d, base * stride as f64))
    };
    // The coarsest stride among the shards, doubled until the fleet has at most SAMPLES_CAP
    // buckets (as goon's own --json), so no input makes the output or the loop below large.
    let mut stride = docs.iter().map(|d| d.stride).max().unwrap_or(1);
    loop {
        let last = docs.iter().filter_map(|d| d.samples.last().map(|s| bucket(d, s, stride))).max().unwrap_or(0);
        if last < SAMPLES_CAP as u64 {
            break;
        }
        if stride >= 1 << 62 {
            return Err(format!("the samples span more than {SAMPLES_CAP} intervals at any stride"));
        }
        stride *= 2;
    }
    let w = base * stride as f64;
    // Each shard's samples at the fleet's stride, placed in fleet buckets.
    let mut per: Vec<Vec<(u64, Sample)>> = Vec::with_capacity(docs.len());
    for d in docs {
        let mut v: Vec<(u64, Sample)> = Vec::new();
        for s in &d.samples {
            let b = bucket(d, s, stride);
            match v.last_mut() {
                Some((lb, last)) if *lb == b => last.absorb_later(s)?,
                _ => v.push((b, s.clone())),
            }
        }
        per.push(v);
    }
    let buckets = per.iter().filter_map(|v| v.last().map(|(b, _)| *b + 1)).max().unwrap_or(0);
    let mut out = Vec::with_capacity(buckets as usize);
    let mut cursor = vec![0usize; per.len()];
    let mut max_sum = 0u64;
    let span = (fleet_end - fleet_start).max(0.0);
    for b in 0..buckets {
        let t_start = b as f64 * w;
        let mut fleet = Sample {
            index: b,
            t_start_s: t_start,
            t_end_s: ((b + 1) as f64 * w).min(span.max(t_start)),
            end_unix_s: 0.0,
            state: State::default(),
            established_peak: 0,
            dials: 0,
            established_new: 0,
            closed_new: 0,
            errors: [0; 7],
            connect: Latency::new().moments_json(),
            fail: Latency::new().moments_json(),
        };
        fleet.end_unix_s = fleet_start + fleet.t_end_s;
        for (s, v) in per.iter().enumerate() {
            let (Some((first, _)), Some((last, _))) = (v.first(), v.last()) else { continue };
            if b < *first || b > *last {
                continue; // not started yet, or ended: nothing held
            }
            while cursor[s] + 1 < v.len() && v[cursor[s] + 1].0 <= b {
                cursor[s] += 1;
            }
            let (sb, sample) = &v[cursor[s]];
            if *sb == b {
                fleet.add_shard(sample)?;
            } else {
                // A gap (the coordinator was late): the state holds, nothing happened.
                let held = Sample {
                    established_peak: sample.state.established,
                    dials: 0,
                    established_new: 0,
                    closed_new: 0,
                    errors: [0; 7],
                    connect: Latency::new().moments_json(),
                    fail: Latency::new().moments_json(),
                    ..sample.clone()
                };
                fleet.add_shard(&held)?;
            }
        }
        max_sum = max_sum.max(fleet.state.established);
        out.push(fleet);
    }
    Ok((out, w, stride, max_sum))
}

/// Everything `report merge` computed.
#[derive(Debug)]
pub struct Merged {
    pub docs: Vec<ShardDoc>,
    pub shards: u64,
    pub missing: Vec<u64>,
    pub counts: Totals,
    pub connect: Latency,
    pub fail: Latency,
    pub samples: Vec<Sample>,
    pub sample_interval_s: f64,
    pub sample_stride: u64,
    /// Σ of the shards' exact peaks: the fleet's concurrency never exceeded it.
    pub max_concurrent_upper: u64,
    pub started_unix_s: f64,
    pub ended_unix_s: f64,
}

/// Merges checked shards.
pub fn merge(docs: Vec<ShardDoc>, shards: u64, missing: Vec<u64>) -> Result<Merged, Error> {
    let mut counts = Totals::default();
    let mut connect = Latency::new();
    let mut fail = Latency::new();
    for d in &docs {
        counts.add(&d.counts);
        connect.merge(&d.connect);
        fail.merge(&d.fail);
    }
    let upper = counts.max_concurrent_established;
    let (samples, w, stride, max_sum) =
        fleet_samples(&docs).map_err(|e| Error::Usage(format!("report merge: the samples do not merge: {e}")))?;
    counts.max_concurrent_established = max_sum.min(upper);
    let started = docs.iter().map(|d| d.started_unix_s).fold(f64::INFINITY, f64::min);
    let ended = docs.iter().map(|d| d.ended_unix_s).fold(f64::NEG_INFINITY, f64::max);
    Ok(Merged {
        docs,
        shards,
        missing,
        counts,
        connect,
        fail,
        samples,
        sample_interval_s: w,
        sample_stride: stride,
        max_concurrent_upper: upper,
        started_unix_s: started,
        ended_unix_s: ended,
    })
}

/// One threshold's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub flag: &'static str,
    pub limit: String,
    pub value: String,
    pub ok: bool,
}

/// The thresholds given, judged over the merged counts.
pub fn judge(m: &Merged, a: &MergeArgs) -> Vec<Verdict> {
    let mut out = Vec::new();
    if let Some(limit) = a.max_errors {
        let e = m.counts.error;
        let pct = if m.counts.total == 0 { 0.0 } else { e as f64 * 100.0 / m.counts.total as f64 };
        let ok = match limit {
            ErrorLimit::Count(n) => e <= n,
            ErrorLimit::Percent(p) => pct <= p,
        };
        out.push(Verdict {
            flag: "--max-errors",
            limit: limit.to_string(),
            value: format!("{} ({pct:.3}% of {})", counted(e, "error", "errors"), m.counts.total),
            ok,
        });
    }
    if let Some(max) = a.max_p99 {
        let (ok, value) = if m.connect.is_empty() {
            (false, "no connection succeeded, so there is no p99".to_string())
        } else {
            let p = m.connect.percentile(99.0);
            (p <= max, format!("p99 {}", go_duration(p)))
        };
        out.push(Verdict { flag: "--max-p99", limit: go_duration(max), value, ok });
    }
    if let Some(min) = a.min_established {
        let n = m.counts.total_established;
        out.push(Verdict {
            flag: "--min-established",
            limit: min.to_string(),
            value: format!("{n} established"),
            ok: n >= min,
        });
    }
    out
}

/// goon's exit status over the merged counts, then the thresholds: 3 when one is violated;
/// with `--max-errors` given, errors within it do not give 2.
pub fn exit_code(m: &Merged, verdicts: &[Verdict], errors_judged: bool) -> u8 {
    if verdicts.iter().any(|v| !v.ok) {
        EXIT_THRESHOLD
    } else if m.counts.not_initiated > 0 || m.counts.dialing > 0 {
        1
    } else if m.counts.error > 0 && !errors_judged {
        2
    } else {
        0
    }
}

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
    let mut t = String::new();
    let first = &m.docs[0];
    let label = match first.target.parse::<SocketAddr>() {
        Ok(addr) if !first.builtin => target_label(&first.host, addr),
        _ => "the built-in sink".to_string(),
    };
    let present = m.docs.len() as u64;
    t.push_str(&format!("--- {label} tcp test statistics (fleet: {} of {} shards) ---\n", present, m.shards));
    t.push_str(&status_line(&m.counts));
    t.push('\n');
    t.push_str("--- netforge goon execution statistics ---\n");
    t.push_str(&format!("Total established connections: {}\n", m.counts.total_established));
    t.push_str(&format!(
        "Max concurrent established connections: {} (largest sum of the shards' samples every {}; at most {}, the sum of the shards' own peaks)\n",
        m.counts.max_concurrent_established,
        go_duration(Duration::from_secs_f64(m.sample_interval_s)),
        m.max_concurrent_upper
    ));
    t.push_str(&format!("Number of established connections on closure: {}\n", m.counts.established));
    if !m.connect.is_empty() {
        let what = counted(m.connect.count, "successful connection", "successful connections");
        t.push_str(&format!("Response time stats for {what} min/avg/max/dev = {}\n", m.connect.min_avg_max_dev()));
        t.push_str(&format!(
            "Response time percentiles for {what} p50/p90/p99/p99.9/max = {}\n",
            m.connect.percentiles_line()
        ));
    }
    if !m.fail.is_empty() {
        t.push_str(&format!(
            "Time to error stats for {} min/avg/max/dev = {}\n",
            counted(m.fail.count, "failed connection", "failed connections"),
            m.fail.min_avg_max_dev()
        ));
        let causes: Vec<String> = Cause::ALL
            .iter()
            .filter(|c| m.counts.errors[c.index()] > 0)
            .map(|c| format!("{} {}", c.name(), m.counts.errors[c.index()]))
            .collect();
        t.push_str(&format!("Errors by cause: {}\n", causes.join(", ")));
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

/// The merged result as JSON (kind "goon-fleet", docs/json-format.md §6).
pub fn json_value(m: &Merged, verdicts: &[Verdict], exit: u8, argv: &[String]) -> Value {
    let first = &m.docs[0].doc;
    let mut config = first.get("config").cloned().unwrap_or(Value::Null);
    if let Some(c) = config.as_object_mut() {
        c.insert("shard_connections".into(), json!(m.counts.total));
    }
    let errors: serde_json::Map<String, Value> =
        Cause::ALL.iter().map(|c| (c.name().to_string(), json!(m.counts.errors[c.index()]))).collect();
    let t = |s: f64| std::time::UNIX_EPOCH + Duration::from_secs_f64(s.max(0.0));
    let per_shard: Vec<Value> = m
        .docs
        .iter()
        .map(|d| {
            json!({
                "file": d.path.display().to_string(),
                "index": d.shard.map(|s| s.0),
                "host_name": d.host_name,
                "started_at": d.started_at,
                "ended_at": d.ended_at,
                "total": d.counts.total,
                "established": d.counts.established,
                "total_established": d.counts.total_established,
                "max_concurrent_established": d.counts.max_concurrent_established,
                "error": d.counts.error,
                "not_initiated": d.counts.not_initiated,
                "dialing": d.counts.dialing,
                "closed": d.counts.closed,
                "connect_p50_us": (!d.connect.is_empty()).then(|| d.connect.percentile(50.0).as_micros() as u64),
                "connect_p99_us": (!d.connect.is_empty()).then(|| d.connect.percentile(99.0).as_micros() as u64),
                "exit_code": d.exit_code,
            })
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "kind": "goon-fleet",
        "netforge": env!("CARGO_PKG_VERSION"),
        "role": "goon",
        "argv": argv,
        "host_name": crate::sys::host_name(),
        "shard": Value::Null,
        "started_at": crate::wallclock::rfc3339(t(m.started_unix_s)),
        "started_unix_s": m.started_unix_s,
        "ended_at": crate::wallclock::rfc3339(t(m.ended_unix_s)),
        "ended_unix_s": m.ended_unix_s,
        "start_at": first.get("start_at").cloned().unwrap_or(Value::Null),
        "histogram": Latency::precision_json(),
        "config": config,
        "counts": {
            "total": m.counts.total,
            "dialing": m.counts.dialing,
            "established": m.counts.established,
            "closed": m.counts.closed,
            "error": m.counts.error,
            "not_initiated": m.counts.not_initiated,
            "total_established": m.counts.total_established,
            "max_concurrent_established": m.counts.max_concurrent_established,
            "established_on_closure": m.counts.established,
        },
        "errors": errors,
        "connect_time": latency_json(&m.connect),
        "time_to_error": latency_json(&m.fail),
        "exit_code": exit,
        "sample_interval_s": m.sample_interval_s,
        "sample_stride": m.sample_stride,
        "samples": m.samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        "fleet": {
            "shards": m.shards,
            "present": m.docs.iter().filter_map(|d| d.shard.map(|s| s.0)).collect::<Vec<_>>(),
            "missing": m.missing,
            "max_concurrent_established_upper": m.max_concurrent_upper,
            "thresholds": verdicts.iter().map(|v| json!({ "name": v.flag.trim_start_matches('-'), "limit": v.limit, "value": v.value, "ok": v.ok })).collect::<Vec<_>>(),
            "violations": verdicts.iter().filter(|v| !v.ok).map(|v| format!("{} {}: {}", v.flag, v.limit, v.value)).collect::<Vec<_>>(),
            "per_shard": per_shard,
        },
        "shard_results": m.docs.iter().map(|d| d.doc.clone()).collect::<Vec<_>>(),
    })
}

/// `netforge report merge`: returns the exit status.
pub fn run(a: &MergeArgs, out: &mut dyn Write) -> Result<u8, Error> {
    let mut docs = Vec::with_capacity(a.files.len());
    for f in &a.files {
        docs.push(load(f)?);
    }
    let (docs, shards, missing) = check_fleet(docs, a.allow_missing)?;
    let m = merge(docs, shards, missing)?;
    let verdicts = judge(&m, a);
    let exit = exit_code(&m, &verdicts, a.max_errors.is_some());
    print(&m, &verdicts, out);
    if let Some(path) = &a.json {
        let argv: Vec<String> = std::env::args().collect();
        let mut text =
            serde_json::to_string_pretty(&json_value(&m, &verdicts, exit, &argv)).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        std::fs::write(path, text)
            .map_err(|e| Error::Usage(format!("--json {}: cannot write: {e}", path.display())))?;
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "127.0.0.1:9000";

    /// A goon result document as goon writes it (the keys the merge reads).
    fn doc(shard: Option<(u64, u64)>, connect: &Latency, samples: &[Sample], started: f64) -> Value {
        let n = connect.count;
        let errors: serde_json::Map<String, Value> =
            Cause::ALL.iter().map(|c| (c.name().to_string(), json!(0))).collect();
        json!({
            "format_version": 2,
            "kind": "goon",
            "histogram": Latency::precision_json(),
            "shard": shard.map(|(i, k)| json!({ "index": i, "count": k })),
            "host_name": "h",
            "config": { "target": TARGET, "host": "127.0.0.1", "builtin_target": false, "connections": 1000 },
            "counts": {
                "total": n, "dialing": 0, "established": n, "closed": 0, "error": 0, "not_initiated": 0,
                "total_established": n, "max_concurrent_established": n,
            },
            "errors": errors,
            "connect_time": latency_json(connect),
            "time_to_error": latency_json(&Latency::new()),
            "sample_interval_s": 1.0,
            "sample_stride": 1,
            "samples": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
            "started_unix_s": started,
            "ended_unix_s": started + samples.len() as f64,
            "started_at": "2026-12-01T14:00:00.000000Z",
            "ended_at": "2026-12-01T14:00:01.000000Z",
            "exit_code": 0,
        })
    }

    fn sample(index: u64, established: u64, connect: &Latency) -> Sample {
        Sample {
            index,
            t_start_s: index as f64,
            t_end_s: index as f64 + 1.0,
            end_unix_s: 0.0,
            state: State { established, ..State::default() },
            established_peak: established,
            dials: connect.count,
            established_new: connect.count,
            closed_new: 0,
            errors: [0; 7],
            connect: connect.moments_json(),
            fail: Latency::new().moments_json(),
        }
    }

    fn parsed(docs: Vec<Value>) -> Vec<ShardDoc> {
        docs.into_iter().enumerate().map(|(i, d)| parse(Path::new(&format!("shard-{i}.json")), d).unwrap()).collect()
    }

    fn merged(docs: Vec<Value>, allow_missing: bool) -> Result<Merged, Error> {
        let (docs, k, missing) = check_fleet(parsed(docs), allow_missing)?;
        merge(docs, k, missing)
    }

    fn refusal_parse(doc: Value) -> String {
        parse(Path::new("shard-1.json"), doc).unwrap_err().to_string()
    }

    fn refusal(docs: Vec<Value>) -> String {
        match check_fleet(parsed(docs), false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("merged"),
        }
    }

    /// The merge through JSON equals one recorder that saw every sample: count, min, max, avg,
    /// dev, the histogram itself and every percentile, over random data of several shapes.
    #[test]
    fn merging_shards_equals_one_run_holding_every_sample() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for round in 0..12 {
            let k = rng.u64(1..=9);
            let n = rng.usize(1..4000);
            let mut single = Latency::new();
            let mut shards: Vec<Latency> = (0..k).map(|_| Latency::new()).collect();
            for _ in 0..n {
                // Log-uniform 100 ns .. 100 s: below 1 µs and above the histogram's 60 s too.
                let ns = 10f64.powf(2.0 + rng.f64() * 9.0) as u64;
                let d = Duration::from_nanos(ns);
                single.record(d);
                shards[rng.usize(..k as usize)].record(d);
            }
            let docs: Vec<Value> = shards
                .iter()
                .enumerate()
                .map(|(i, l)| doc(Some((i as u64, k)), l, &[sample(0, l.count, l)], 1000.0))
                .collect();
            let m = merged(docs, false).unwrap();
            let c = &m.connect;
            assert_eq!(c.count, single.count, "round {round}");
            assert_eq!((c.min(), c.max()), (single.min(), single.max()), "round {round}");
            assert_eq!((c.mean(), c.stddev()), (single.mean(), single.stddev()), "round {round}");
            assert_eq!((c.sum_ns, c.sum_sq_ns), (single.sum_ns, single.sum_sq_ns), "round {round}");
            assert!(c.hist == single.hist, "round {round}: histograms differ");
            for q in 0..=1000 {
                let q = q as f64 / 10.0;
                assert_eq!(c.percentile(q), single.percentile(q), "round {round}: p{q}");
            }
            for q in [99.99, 99.999, 99.9999] {
                assert_eq!(c.percentile(q), single.percentile(q), "round {round}: p{q}");
            }
            assert_eq!(c.min_avg_max_dev(), single.min_avg_max_dev());
            assert_eq!(c.percentiles_line(), single.percentiles_line());
            // The per-interval histograms of the fleet merge to the same thing.
            let mut from_samples = Latency::new();
            for s in &m.samples {
                from_samples.merge(&Latency::from_moments_json(&s.connect).unwrap());
            }
            assert!(from_samples.hist == single.hist && from_samples.sum_sq_ns == single.sum_sq_ns);
            assert_eq!(m.counts.total_established, n as u64);
        }
    }

    #[test]
    fn refuses_what_is_not_one_fleet_naming_the_file() {
        let l = {
            let mut l = Latency::new();
            l.record(Duration::from_micros(50));
            l
        };
        let s = [sample(0, 1, &l)];
        let a = || doc(Some((0, 2)), &l, &s, 1000.0);
        let b = || doc(Some((1, 2)), &l, &s, 1000.0);
        assert!(merged(vec![a(), b()], false).is_ok());

        let e = refusal(vec![a(), a()]);
        assert_eq!(e, "shard-1.json: shard: 0/2 again (shard-0.json is that shard too)");
        let e = refusal(vec![a()]);
        assert!(e.starts_with("report merge: missing shard 1/2 (1 of 2 files given); pass --allow-missing"), "{e}");
        let m = merged(vec![a()], true).unwrap();
        assert_eq!((m.missing.clone(), m.counts.total), (vec![1], 1));

        let mut other = b();
        other["config"]["target"] = json!("127.0.0.1:9001");
        let e = refusal(vec![a(), other]);
        assert!(
            e.starts_with("shard-1.json: config.target: 127.0.0.1:9001 differs from shard-0.json's 127.0.0.1:9000"),
            "{e}"
        );
        let mut other = b();
        other["config"]["connections"] = json!(999);
        assert!(refusal(vec![a(), other]).starts_with("shard-1.json: config.connections: 999 differs"));
        let mut other = b();
        other["shard"] = json!({ "index": 1, "count": 3 });
        assert_eq!(refusal(vec![a(), other]), "shard-1.json: shard: 1/3, but shard-0.json is one of 2 shards");
        let mut other = b();
        other["shard"] = Value::Null;
        assert!(refusal(vec![a(), other]).starts_with("shard-1.json: shard: null: not a shard"));
        let mut other = b();
        other["shard"] = json!({ "index": 1, "count": 1u64 << 40 });
        assert!(refusal_parse(other).starts_with("shard-1.json: shard: "), "a huge K is refused, not allocated for");
        let mut other = b();
        other["sample_interval_s"] = json!(2.0);
        assert!(refusal(vec![a(), other]).starts_with("shard-1.json: sample_interval_s: a base interval of 2s"));

        // Per-file refusals (parse): format version, kind, precision, a bad sample.
        let p = Path::new("x.json");
        let err = |v: Value| parse(p, v).unwrap_err().to_string();
        let mut v = a();
        v["format_version"] = json!(1);
        assert_eq!(err(v), "x.json: format_version: 1: this netforge merges format version 2");
        let mut v = a();
        v.as_object_mut().unwrap().remove("format_version");
        assert!(err(v).starts_with("x.json: format_version: missing: a result of an older netforge"));
        let mut v = a();
        v["kind"] = json!("goon-fleet");
        assert!(err(v).starts_with("x.json: kind: \"goon-fleet\": only goon results"));
        let mut v = a();
        v["histogram"]["significant_digits"] = json!(2);
        assert!(err(v).starts_with("x.json: histogram: precision"), "precision");
        let mut v = a();
        v["samples"][0]["state"]["established"] = json!("many");
        assert_eq!(err(v), "x.json: samples[0].state.established: not a non-negative integer");
        let mut v = a();
        v["connect_time"]["histogram_v2_deflate_base64"] = json!("AAAA");
        assert!(err(v).starts_with("x.json: connect_time.histogram_v2_deflate_base64: "), "bad histogram");
        let e = read_json(Path::new("/nonexistent/netforge.json")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/netforge.json: cannot open: "), "{e}");
    }

    /// Samples of shards started at different times land in wall-clock buckets; the fleet's
    /// peak is the largest summed sample, capped at the sum of the shards' own peaks.
    #[test]
    fn fleet_samples_align_by_wall_clock() {
        let e = Latency::new();
        // Shard 0 starts at 1000 s and holds 10, 20, 30; shard 1 starts 1 s later: 5, 5.
        let s0 = [sample(0, 10, &e), sample(1, 20, &e), sample(2, 30, &e)];
        let s1 = [sample(0, 5, &e), sample(1, 5, &e)];
        let mut d0 = doc(Some((0, 2)), &e, &s0, 1000.0);
        let mut d1 = doc(Some((1, 2)), &e, &s1, 1001.0);
        d0["counts"]["max_concurrent_established"] = json!(30);
        d1["counts"]["max_concurrent_established"] = json!(5);
        let m = merged(vec![d0.clone(), d1.clone()], false).unwrap();
        let est: Vec<u64> = m.samples.iter().map(|s| s.state.established).collect();
        assert_eq!(est, [10, 25, 35]);
        assert_eq!(m.counts.max_concurrent_established, 35);
        assert_eq!(m.max_concurrent_upper, 35);
        // A shard with twice the stride: the other's samples are merged pairwise first.
        d1["sample_stride"] = json!(2);
        d1["sample_interval_s"] = json!(2.0);
        d1["samples"] = json!([sample(0, 7, &e).to_json()]);
        d1["started_unix_s"] = json!(1000.0);
        let m = merged(vec![d0, d1], false).unwrap();
        assert_eq!(m.sample_stride, 2);
        let est: Vec<u64> = m.samples.iter().map(|s| s.state.established).collect();
        assert_eq!(est, [27, 30], "bucket 0 = shard 0's second sample + 7; bucket 1 = shard 0's third");
        assert_eq!(m.counts.max_concurrent_established, 30, "capped at 30 + 5");
    }

    #[test]
    fn far_apart_samples_stay_bounded() {
        let e = Latency::new();
        let mut d = doc(None, &e, &[sample(0, 1, &e), sample(u64::MAX / 2, 2, &e)], 1000.0);
        d["counts"]["max_concurrent_established"] = json!(2);
        let m = merged(vec![d], false).unwrap();
        assert!(m.samples.len() <= SAMPLES_CAP, "{}", m.samples.len());
        assert!(m.sample_stride > 1 << 40);
        assert_eq!(m.samples.last().unwrap().state.established, 2);
        assert_eq!(m.counts.max_concurrent_established, 2);
    }

    fn args(max_errors: Option<&str>, max_p99: Option<Duration>, min_established: Option<u64>) -> MergeArgs {
        MergeArgs {
            files: vec![],
            json: None,
            allow_missing: false,
            max_errors: max_errors.map(|s| parse_error_limit(s).unwrap()),
            max_p99,
            min_established,
        }
    }

    #[test]
    fn thresholds_and_exit_codes() {
        let mut l = Latency::new();
        for us in 1..=100 {
            l.record(Duration::from_micros(us * 10));
        }
        let mut d = doc(None, &l, &[sample(0, 100, &l)], 1.0);
        d["counts"]["total"] = json!(110);
        d["counts"]["error"] = json!(10);
        d["errors"]["refused"] = json!(10);
        let m = merged(vec![d], false).unwrap();
        let run = |a: &MergeArgs| {
            let v = judge(&m, a);
            (exit_code(&m, &v, a.max_errors.is_some()), v)
        };
        assert_eq!(run(&args(None, None, None)).0, 2, "errors: goon's 2");
        let (code, v) = run(&args(Some("10"), None, None));
        assert_eq!((code, v[0].ok), (0, true), "10 errors allowed: they no longer give 2");
        let (code, v) = run(&args(Some("9"), None, None));
        assert_eq!((code, v[0].ok), (EXIT_THRESHOLD, false));
        assert_eq!(v[0].value, "10 errors (9.091% of 110)");
        assert_eq!(run(&args(Some("9.1%"), None, None)).0, 0);
        assert_eq!(run(&args(Some("9%"), None, None)).0, EXIT_THRESHOLD);
        let (code, v) = run(&args(None, Some(Duration::from_micros(900)), None));
        assert_eq!((code, v[0].value.as_str()), (EXIT_THRESHOLD, "p99 990µs"));
        assert_eq!(run(&args(Some("100%"), Some(Duration::from_millis(1)), Some(100))).0, 0);
        let (code, v) = run(&args(Some("100%"), Some(Duration::from_micros(1)), Some(101)));
        assert_eq!(code, EXIT_THRESHOLD);
        assert_eq!(v.iter().filter(|v| !v.ok).count(), 2, "each violation on its own");
        let mut out = Vec::new();
        print(&m, &v, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\nthreshold ok: --max-errors 100%: 10 errors (9.091% of 110)\n"), "{text}");
        assert!(text.contains("\nthreshold violated: --max-p99 1µs: p99 990µs\n"), "{text}");
        assert!(text.contains("\nthreshold violated: --min-established 101: 100 established\n"), "{text}");
        for bad in ["-1", "101%", "x%", "1.5", ""] {
            assert!(parse_error_limit(bad).is_err(), "{bad}");
        }
    }
}

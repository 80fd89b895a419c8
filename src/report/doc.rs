//! The goon result document (`goon --json`, format version 2, docs/json-format.md §4) as
//! `report merge` reads it: every key it uses checked, each refusal one line naming the file and
//! the key.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ConfigError, Error};
use crate::result::sample::{Sample, SAMPLES_CAP};
use crate::result::tls::TlsTotals;
use crate::result::totals::Totals;
use crate::result::traffic::TrafficCounts;
use crate::result::{FORMAT_VERSION, SHARDS_MAX};
use crate::stats::Latency;
use crate::units::{CONNS_MAX, MAX_DURATION};

/// Largest result file read (a 4096-sample result is a few MiB).
pub const MAX_RESULT_BYTES: u64 = 256 << 20;

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
    /// `tls` (a `--tls` run's figures), when present.
    pub tls: Option<TlsTotals>,
    /// A `goon --ws` result's `websocket` object: counts and the two latencies.
    pub ws: Option<(crate::ws::client::ClientCounts, crate::result::ws::WsLatencies)>,
    /// goon with traffic flags: its `traffic` object, read.
    pub traffic: Option<ShardTraffic>,
}

/// A result's `traffic` object as the merge uses it.
#[derive(Debug, Clone)]
pub struct ShardTraffic {
    pub config: Value,
    /// What `config` says, for the `Traffic:` line.
    pub plan: crate::result::traffic::PlanSummary,
    pub rate: Option<f64>,
    pub measures: bool,
    pub counts: TrafficCounts,
    pub response: Latency,
}

/// `"state.established: not an integer"` → (`state.established`, `not an integer`).
pub(crate) fn split_key(e: &str) -> (&str, &str) {
    e.split_once(": ").unwrap_or(("", e))
}

/// A file without a shard among several.
pub(crate) fn not_a_shard(path: &Path) -> Error {
    key_err(path, "shard", "null: not a shard (run goon with --shard I/K); it cannot be merged with others")
}

pub(crate) fn key_err(path: &Path, key: &str, msg: impl Into<String>) -> Error {
    Error::Config(ConfigError::key(path, key, msg))
}

/// Reads `path` whole (bounded) and parses it as JSON; a syntax error names its line and column.
pub(crate) fn read_json(path: &Path) -> Result<Value, Error> {
    use crate::conffile::{read_regular, ReadFailure};
    let bytes = read_regular(path, MAX_RESULT_BYTES).map_err(|f| {
        let msg = match f {
            ReadFailure::Open(e) => format!("cannot open: {e}"),
            ReadFailure::Read(e) => format!("cannot read: {e}"),
            ReadFailure::NotRegular(what) => format!("cannot read: {what}; a result must be a regular file"),
            ReadFailure::TooBig(_) => format!("larger than {} MiB", MAX_RESULT_BYTES >> 20),
        };
        Error::Config(ConfigError::file(path, msg))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
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

/// The latest wall-clock instant a result may carry, in Unix seconds (the year 5138).
const UNIX_S_MAX: f64 = 1e11;

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
        // A bp client's result has no version and no kind: name it for what it is.
        None if doc["verdict"].is_string() && doc["series"].is_array() => {
            return Err(Error::Config(ConfigError::file(
                path,
                "a bp client result: only goon results can be merged (report html shows it alone)",
            )))
        }
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
    let counts = Totals::read(int)?;
    // One goon run dials at most CONNS_MAX connections, each counted once in each of these: a
    // count past that is not goon's, and the fleet's sums (at most SHARDS_MAX shards) cannot
    // overflow.
    if counts.total > CONNS_MAX {
        return Err(key_err(
            path,
            "counts.total",
            format!("{}: more than goon's {CONNS_MAX} connections", counts.total),
        ));
    }
    let each = [
        ("counts.dialing", counts.dialing),
        ("counts.established", counts.established),
        ("counts.closed", counts.closed),
        ("counts.error", counts.error),
        ("counts.not_initiated", counts.not_initiated),
        ("counts.total_established", counts.total_established),
        ("counts.max_concurrent_established", counts.max_concurrent_established),
        ("errors (their sum)", counts.errors.iter().sum()),
    ];
    if let Some((k, n)) = each.iter().find(|(_, n)| *n > counts.total) {
        return Err(key_err(path, k, format!("{n}: more than counts.total {}", counts.total)));
    }
    let latency = |k: &str| {
        let v = get(k).ok_or_else(|| key_err(path, k, "missing"))?;
        Latency::from_moments_json(v).map_err(|e| {
            let (sub, msg) = split_key(&e);
            key_err(path, &format!("{k}.{sub}"), msg)
        })
    };
    let connect = latency("connect_time")?;
    let traffic = match get("traffic") {
        None | Some(Value::Null) => None,
        Some(t) => {
            let config = t.get("config").cloned().ok_or_else(|| key_err(path, "traffic.config", "missing"))?;
            let rate = match config.get("message_rate_per_s") {
                None | Some(Value::Null) => None,
                Some(r) => Some(
                    r.as_f64()
                        .filter(|r| *r > 0.0)
                        .ok_or_else(|| key_err(path, "traffic.config.message_rate_per_s", "not a positive number"))?,
                ),
            };
            let plan = crate::result::traffic::PlanSummary::from_json(&config)
                .map_err(|(k, msg)| key_err(path, &format!("traffic.config.{k}"), msg))?;
            let set = |k: &str| config.get(k).is_some_and(|v| !v.is_null());
            let measures = set("expect_bytes") || set("marker");
            let counts = t.get("counts").ok_or_else(|| key_err(path, "traffic.counts", "missing"))?;
            let counts = TrafficCounts::from_json(counts).map_err(|e| {
                let (sub, msg) = split_key(&e);
                key_err(path, &format!("traffic.counts.{sub}"), msg)
            })?;
            let response = latency("traffic.response_time")?;
            Some(ShardTraffic { config, plan, rate, measures, counts, response })
        }
    };
    let fail = latency("time_to_error")?;
    let stride = int("sample_stride")?;
    if stride == 0 || !stride.is_power_of_two() {
        return Err(key_err(path, "sample_stride", format!("{stride}: not a power of two")));
    }
    let interval = float("sample_interval_s")?;
    if !(interval.is_finite() && interval > 0.0 && interval <= MAX_DURATION.as_secs_f64()) {
        let msg = format!("{interval}: not a number of seconds above 0 and at most {}", MAX_DURATION.as_secs());
        return Err(key_err(path, "sample_interval_s", msg));
    }
    // A wall-clock instant as Unix seconds, from 1970 to the year 5138.
    let instant = |k: &str| {
        let v = float(k)?;
        if (0.0..=UNIX_S_MAX).contains(&v) {
            Ok(v)
        } else {
            Err(key_err(path, k, format!("{v}: not Unix seconds in 0..={UNIX_S_MAX}")))
        }
    };
    let (started_unix_s, ended_unix_s) = (instant("started_unix_s")?, instant("ended_unix_s")?);
    let raw =
        get("samples").and_then(Value::as_array).ok_or_else(|| key_err(path, "samples", "missing or not an array"))?;
    if raw.len() > SAMPLES_CAP {
        return Err(key_err(path, "samples", format!("{} samples: goon keeps at most {SAMPLES_CAP}", raw.len())));
    }
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
    let tls = match get("tls") {
        None | Some(Value::Null) => None,
        Some(v) => Some(TlsTotals::from_json(v).map_err(|e| {
            let (k, m) = split_key(&e);
            key_err(path, &format!("tls.{k}"), m)
        })?),
    };
    let ws = match get("websocket") {
        None | Some(Value::Null) => None,
        Some(v) => Some(crate::result::ws::from_json(v).map_err(|e| {
            let (sub, msg) = split_key(&e);
            key_err(path, &format!("websocket.{sub}"), msg)
        })?),
    };
    Ok(ShardDoc {
        tls,
        ws,
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
        started_unix_s,
        ended_unix_s,
        started_at: text("started_at")?,
        ended_at: text("ended_at")?,
        exit_code: int("exit_code")?,
        traffic,
        doc,
    })
}

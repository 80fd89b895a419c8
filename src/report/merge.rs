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
//! shard, a file without a shard among several, idle probes (`goon --probe-idle`) of other
//! durations, deadline or size, or a probe in only some shards; and, unless `--allow-missing`, a
//! missing shard. Idle probes of one test are summed group by group (`result::probe::fleet`).
//! Exit status: goon's (0 all fine; 1 some connection never finished dialing; 2 some errored,
//! unless `--max-errors` judges errors), or 3 when a threshold is violated.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::error::Error;
use crate::net::Cause;
use crate::result::block::latency_json;
use crate::result::sample::{Sample, SampleWs, State, SAMPLES_CAP};
use crate::result::totals::Totals;
use crate::result::FORMAT_VERSION;
use crate::stats::Latency;
use crate::units::parse_duration_in;
use crate::units::MAX_DURATION;

use super::doc::{key_err, load, not_a_shard, ShardDoc, ShardTraffic};
use super::table::print;
use super::thresholds::{exit_code, judge, parse_error_limit, ErrorLimit, Verdict};
use crate::result::ws::WsLatencies;
use crate::ws::client::ClientCounts;

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
    /// (e.g. 100 or 0.5%); errors are connections in Error, failed TLS handshakes and failed
    /// WebSocket upgrades. When given, errors within it do not make the exit status 2.
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
        None => return Err(not_a_shard(&first.path)),
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
        if d.tls.is_some() != docs[0].tls.is_some() {
            let with = |b: bool| if b { "a --tls run" } else { "a run without --tls" };
            return Err(key_err(
                &d.path,
                "tls",
                format!(
                    "{} but {first_path} is {}; merge only shards of one test",
                    with(d.tls.is_some()),
                    with(docs[0].tls.is_some())
                ),
            ));
        }
        let alpn = |d: &ShardDoc| d.tls.as_ref().and_then(|t| t.alpn.as_ref()).map(|a| a.names().join(","));
        if alpn(d) != alpn(&docs[0]) {
            let with = |a: Option<String>| a.map_or("a run without --alpn".to_string(), |a| format!("--alpn {a}"));
            return Err(key_err(
                &d.path,
                "tls.alpn",
                format!(
                    "{} but {first_path} had {}; merge only shards of one test",
                    with(alpn(d)),
                    with(alpn(&docs[0]))
                ),
            ));
        }
        // The same test: one start time, one WebSocket setting (the traffic settings are
        // compared where the traffic is merged).
        for key in ["start_at", "config.websocket"] {
            let (mine, theirs) = (value_at(&d.doc, key), value_at(&docs[0].doc, key));
            // A shard with --ws beside one without is named by the websocket merge.
            if key == "config.websocket" && (mine.is_null() || theirs.is_null()) {
                continue;
            }
            if let Some((k, mine, theirs)) = first_difference(theirs, mine, key) {
                let msg = format!("{mine} differs from {first_path}'s {theirs}; merge only shards of one test");
                return Err(key_err(&d.path, &k, msg));
            }
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
            None => return Err(not_a_shard(&d.path)),
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
        let t_end = ((b + 1) as f64 * w).min(span.max(t_start));
        let mut fleet = at_rest(b, t_start, t_end, fleet_start + t_end, State::default());
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
                let s = sample;
                let rest = Sample {
                    ws: s.ws.as_ref().map(SampleWs::at_rest),
                    ..at_rest(s.index, s.t_start_s, s.t_end_s, s.end_unix_s, s.state)
                };
                fleet.add_shard(&rest)?;
            }
        }
        max_sum = max_sum.max(fleet.state.established);
        out.push(fleet);
    }
    Ok((out, w, stride, max_sum))
}

/// A sample in which `state` holds and nothing happens: its peak is its state, no dials, no
/// events.
fn at_rest(index: u64, t_start_s: f64, t_end_s: f64, end_unix_s: f64, state: State) -> Sample {
    Sample {
        index,
        t_start_s,
        t_end_s,
        end_unix_s,
        established_peak: state.established,
        state,
        dials: 0,
        established_new: 0,
        closed_new: 0,
        errors: [0; 7],
        connect: Latency::new().moments_json(),
        fail: Latency::new().moments_json(),
        tls: None,
        traffic: None,
        ws: None,
    }
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
    /// The fleet's idle probe (`goon --probe-idle`): the shards' groups summed.
    pub probe: Option<crate::result::probe::ProbeOutcome>,
    /// `--tls` shards: their TLS figures added.
    pub tls: Option<crate::result::tls::TlsTotals>,
    /// `goon --ws` shards: their upgrade counts summed, their histograms added.
    pub ws: Option<(ClientCounts, WsLatencies)>,
    /// The shards' traffic, merged: counts summed, response histograms added.
    pub traffic: Option<ShardTraffic>,
}

/// The shards' `websocket` objects merged: all or none of the shards must have one.
fn merge_ws(docs: &[ShardDoc]) -> Result<Option<(ClientCounts, WsLatencies)>, Error> {
    let Some(first) = docs.first() else { return Ok(None) };
    let mut out: Option<(ClientCounts, WsLatencies)> = None;
    for d in docs {
        match (&d.ws, first.ws.is_some()) {
            (Some((c, l)), true) => {
                let (oc, ol) = out.get_or_insert_with(Default::default);
                oc.merge(c);
                ol.merge(l);
            }
            (None, false) => {}
            (mine, _) => {
                let (with, without) = if mine.is_some() { (d, first) } else { (first, d) };
                return Err(key_err(
                    &without.path,
                    "websocket",
                    format!("missing, but {} has one (a --ws run); merge only shards of one test", with.path.display()),
                ));
            }
        }
    }
    Ok(out)
}

/// The shards' traffic merged, when they have some: every shard or none, at one message rate.
fn merge_traffic(docs: &[ShardDoc]) -> Result<Option<ShardTraffic>, Error> {
    let Some(first) = docs.first() else { return Ok(None) };
    let first_path = first.path.display().to_string();
    let mut out: Option<ShardTraffic> = None;
    for d in docs {
        match (&first.traffic, &d.traffic) {
            (None, None) => continue,
            (Some(_), None) | (None, Some(_)) => {
                let (has, lacks) = if d.traffic.is_some() { (&d.path, &first.path) } else { (&first.path, &d.path) };
                return Err(key_err(
                    lacks,
                    "traffic",
                    format!("missing, but {} has traffic; merge only shards of one test", has.display()),
                ));
            }
            (Some(a), Some(b)) if a.rate != b.rate || a.measures != b.measures || a.config != b.config => {
                // The rate and the response mode are read from the config: a difference in
                // them is one in it.
                let (k, mine, theirs) = first_difference(&a.config, &b.config, "traffic.config")
                    .unwrap_or_else(|| ("traffic.config".to_string(), &b.config, &a.config));
                let msg = format!("{mine} differs from {first_path}'s {theirs}; merge only shards of one test");
                return Err(key_err(&d.path, &k, msg));
            }
            (Some(_), Some(b)) => match out.as_mut() {
                None => out = Some(b.clone()),
                Some(m) => {
                    m.counts.add(&b.counts);
                    m.response.merge(&b.response);
                }
            },
        }
    }
    Ok(out)
}

/// The value at a dotted key path (`config.websocket`); null where it is absent.
fn value_at<'a>(doc: &'a Value, key: &str) -> &'a Value {
    key.split('.').fold(doc, |v, k| &v[k])
}

/// The first key path under `at` where `a` and `b` differ (objects compared key by key, in
/// sorted order; anything else as a whole) with `b`'s and `a`'s values there, or `None` when
/// they are equal.
fn first_difference<'a>(a: &'a Value, b: &'a Value, at: &str) -> Option<(String, &'a Value, &'a Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let (xa, yb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                first_difference(xa, yb, &format!("{at}.{k}"))
            })
        }
        _ if a == b => None,
        _ => Some((at.to_string(), b, a)),
    }
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
    let ws = merge_ws(&docs)?;
    let traffic = merge_traffic(&docs)?;
    let upper = counts.max_concurrent_established;
    let probe =
        crate::result::probe::fleet::merge(&docs.iter().map(|d| (d.path.as_path(), &d.doc)).collect::<Vec<_>>())?;
    let (samples, w, stride, max_sum) =
        fleet_samples(&docs).map_err(|e| Error::Usage(format!("report merge: the samples do not merge: {e}")))?;
    counts.max_concurrent_established = max_sum.min(upper);
    let started = docs.iter().map(|d| d.started_unix_s).fold(f64::INFINITY, f64::min);
    let ended = docs.iter().map(|d| d.ended_unix_s).fold(f64::NEG_INFINITY, f64::max);
    let mut tls: Option<crate::result::tls::TlsTotals> = None;
    for d in &docs {
        if let Some(t) = &d.tls {
            let acc = tls.get_or_insert_with(|| crate::result::tls::TlsTotals::zeroed_like(t));
            acc.add(t, d.started_unix_s - started).map_err(|e| {
                let (k, m) = crate::report::doc::split_key(&e);
                key_err(&d.path, &format!("tls.{k}"), m)
            })?;
        }
    }
    Ok(Merged {
        tls,
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
        probe,
        ws,
        traffic,
    })
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
    let mut doc = json!({
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
    });
    if let (Some(p), Some(o)) = (&m.probe, doc.as_object_mut()) {
        o.insert("probe".into(), p.to_json());
    }
    // Shards of a `--tls` run only: the key is absent otherwise.
    if let (Some(t), Some(o)) = (&m.tls, doc.as_object_mut()) {
        o.insert("tls".into(), t.to_json());
    }
    if let (Some((c, l)), Some(o)) = (&m.ws, doc.as_object_mut()) {
        o.insert("websocket".into(), crate::result::ws::json_value(c, l));
    }
    if let (Some(t), Some(o)) = (&m.traffic, doc.as_object_mut()) {
        let v = crate::result::traffic::traffic_json(t.config.clone(), t.rate, &t.counts, &t.response, m.counts.total);
        o.insert("traffic".into(), v);
    }
    doc
}

/// `netforge report merge`: returns the exit status.
pub fn run(a: &MergeArgs, out: &mut dyn Write) -> Result<u8, Error> {
    let inputs: Vec<&std::path::Path> = a.files.iter().map(PathBuf::as_path).collect();
    crate::result::check_outputs(&[("--json", a.json.as_deref())], &inputs)?;
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
            .map_err(|e| Error::Output(format!("--json {}: cannot write: {e}", path.display())))?;
    }
    Ok(exit)
}

#[cfg(test)]
mod tests;

use std::path::Path;

use super::*;
use crate::report::doc::{parse, read_json};
use crate::report::thresholds::EXIT_THRESHOLD;

const TARGET: &str = "127.0.0.1:9000";

/// A goon result document as goon writes it (the keys the merge reads).
fn doc(shard: Option<(u64, u64)>, connect: &Latency, samples: &[Sample], started: f64) -> Value {
    let n = connect.count;
    let errors: serde_json::Map<String, Value> = Cause::ALL.iter().map(|c| (c.name().to_string(), json!(0))).collect();
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
        tls: None,
        traffic: None,
        ws: None,
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
    v["counts"]["total"] = json!(u64::MAX);
    assert!(err(v).starts_with("x.json: counts.total: 18446744073709551615: more than goon's"));
    let mut v = a();
    v["counts"]["error"] = json!(v["counts"]["total"].as_u64().unwrap() + 1);
    assert!(err(v).contains("counts.error: "), "a count above the total");
    let mut v = a();
    v["connect_time"]["max_ns"] = json!(u64::MAX);
    assert!(err(v).starts_with("x.json: connect_time.max_ns: 18446744073709551615 is not the histogram's largest"));
    let mut v = a();
    v["connect_time"]["sum_ns"] = json!(u128::MAX.to_string());
    assert!(err(v).starts_with("x.json: connect_time.sum_ns: "), "a sum past count x max");
    let bp = json!({ "verdict": "YES: ...", "series": [] });
    assert_eq!(err(bp), "x.json: a bp client result: only goon results can be merged (report html shows it alone)");
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
    // A peak of 30 needs 30 connections (the reader refuses a count above counts.total).
    d0["counts"]["total"] = json!(30);
    d1["counts"]["total"] = json!(5);
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
    d["counts"]["total"] = json!(2);
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

/// A shard's `traffic` object as goon writes it, with `n` messages answered at `us` each.
fn with_traffic(mut d: Value, n: u64, us: u64, rate: f64) -> Value {
    let mut l = Latency::new();
    for _ in 0..n {
        l.record(Duration::from_micros(us));
    }
    let c = crate::result::traffic::TrafficCounts {
        flows: 10,
        scheduled: n,
        slots: n,
        sent: n,
        responses: n,
        bytes_up: n * 4,
        bytes_down: n * 4,
        ..Default::default()
    };
    let config =
        json!({ "message_bytes": 4, "message_rate_per_s": rate, "duration_s": 1.0, "expect_bytes": 4, "marker": null });
    d["traffic"] = crate::result::traffic::traffic_json(config, Some(rate), &c, &l, 10);
    d
}

#[test]
fn traffic_merges_exactly_and_only_between_shards_that_have_it() {
    let c = Latency::new();
    let a = with_traffic(doc(Some((0, 2)), &c, &[], 0.0), 300, 100, 10.0);
    let b = with_traffic(doc(Some((1, 2)), &c, &[], 0.0), 100, 9000, 10.0);
    let m = merged(vec![a.clone(), b], false).unwrap();
    let t = m.traffic.as_ref().unwrap();
    assert_eq!((t.counts.sent, t.counts.responses, t.counts.bytes_up, t.counts.flows), (400, 400, 1600, 20));
    assert_eq!(t.response.count, 400);
    assert_eq!(t.response.percentile(75.0), Duration::from_micros(100));
    assert_eq!(t.response.max(), Duration::from_micros(9000));
    let v = json_value(&m, &[], 0, &[]);
    assert_eq!(v["traffic"]["counts"]["responses"], 400);
    assert_eq!(v["traffic"]["response_time"]["count"], 400);
    // One shard without traffic, or at another rate: refused, naming the file and the key.
    let e = refusal_merge(vec![a.clone(), doc(Some((1, 2)), &c, &[], 0.0)]);
    assert!(e.contains("shard-1.json: traffic: missing, but shard-0.json has traffic"), "{e}");
    let e = refusal_merge(vec![a, with_traffic(doc(Some((1, 2)), &c, &[], 0.0), 1, 1, 20.0)]);
    assert!(
        e.contains("shard-1.json: traffic.config.message_rate_per_s: 20.0 differs from shard-0.json's 10.0"),
        "{e}"
    );
    // A bad counts object is named by its key.
    let mut bad = with_traffic(doc(None, &c, &[], 0.0), 5, 5, 10.0);
    bad["traffic"]["counts"]["sent"] = json!("many");
    assert!(refusal_parse(bad).contains("traffic.counts.sent: missing or not an integer"));
}

fn refusal_merge(docs: Vec<Value>) -> String {
    match merged(docs, false) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("merged"),
    }
}

use std::time::Duration;

use serde_json::json;

use super::read::{round4, Lat};
use super::*;
use crate::result::html::render;
use crate::stats::Latency;

fn lat_json(l: &Latency) -> Value {
    if l.count == 0 {
        return json!({ "count": 0 });
    }
    json!({
        "count": l.count, "min_ns": l.min_ns, "max_ns": l.max_ns,
        "sum_ns": l.sum_ns.to_string(), "sum_sq_ns2": l.sum_sq_ns.to_string(),
        "histogram_v2_deflate_base64": l.encode(),
    })
}

/// (t_start, t_end, established, dialing, refused errors in the interval, dials, established_new)
type Iv = (f64, f64, u64, u64, u64, u64, u64);

fn sample(index: usize, iv: Iv, error_total: u64) -> Value {
    let (t0, t1, est, dialing, refused, dials, new) = iv;
    json!({
        "index": index, "t_start_s": t0, "t_end_s": t1, "end_unix_s": 0.0,
        "state": { "dialing": dialing, "established": est, "closed": 0, "error": error_total, "not_initiated": 0 },
        "established_peak": est, "dials": dials, "established_new": new, "closed_new": 0,
        "errors": { "refused": refused, "timeout": 0, "reset": 0, "no_ports": 0, "no_fds": 0, "unreachable": 0, "other": 0 },
        "connect_time": { "count": 0 }, "time_to_error": { "count": 0 }
    })
}

fn shard_doc(shard: Option<(u64, u64)>, host: &str, started: f64, ivs: &[Iv], lat: &Latency) -> Value {
    let mut errors = 0;
    let samples: Vec<Value> = ivs
        .iter()
        .enumerate()
        .map(|(i, iv)| {
            errors += iv.4;
            sample(i, *iv, errors)
        })
        .collect();
    let last = ivs.last().copied().unwrap_or_default();
    let peak = ivs.iter().map(|iv| iv.2).max().unwrap_or(0);
    json!({
        "format_version": 2, "kind": "goon", "netforge": "0.1.0", "role": "goon",
        "argv": ["netforge", "goon", host, "80", "-c", "100"],
        "host_name": host,
        "shard": shard.map(|(i, k)| json!({ "index": i, "count": k })),
        "started_at": "2026-12-01T14:00:00.000000Z", "started_unix_s": started,
        "config": { "host": "10.0.0.5", "target": "10.0.0.5:80", "connections": 100 },
        "counts": {
            "total": last.2 + errors, "dialing": last.3, "established": last.2, "closed": 0, "error": errors,
            "not_initiated": 0, "total_established": last.2, "max_concurrent_established": peak,
            "established_on_closure": last.2
        },
        "errors": { "refused": errors, "timeout": 0, "reset": 0, "no_ports": 0, "no_fds": 0, "unreachable": 0, "other": 0 },
        "connect_time": lat_json(lat), "time_to_error": { "count": 0 },
        "dial_phase_s": 1.0, "elapsed_s": last.1, "interrupted": false, "exit_code": if errors > 0 { 2 } else { 0 },
        "sample_interval_s": 1.0, "sample_stride": 1, "samples": samples,
    })
}

fn input(label: &str, doc: Value) -> Input {
    Input { label: label.to_string(), doc }
}

fn chart<'a>(p: &'a Page, id: &str) -> &'a Chart {
    p.charts.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no chart {id}: {:?}", p.charts))
}

fn random_latency(n: usize, seed: u64) -> Latency {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut l = Latency::new();
    for _ in 0..n {
        // Mostly under a millisecond, a long tail to seconds.
        let us = if rng.u8(..) < 8 { rng.u64(1_000..3_000_000) } else { rng.u64(20..900) };
        l.record(Duration::from_nanos(us * 1000 + rng.u64(..1000)));
    }
    l
}

#[test]
fn one_run_draws_its_intervals_and_its_curve() {
    let lat = random_latency(5000, 1);
    let ivs = [(0.0, 1.0, 40, 10, 0, 50, 40), (1.0, 2.0, 90, 0, 2, 52, 50), (2.0, 2.5, 90, 0, 0, 0, 0)];
    let page = build(&[input("run.json", shard_doc(None, "gen-1", 1000.0, &ivs, &lat))]).unwrap();
    assert_eq!(page.kind, "goon");
    let conns = chart(&page, "connections");
    assert_eq!(conns.series[0].name, "established");
    assert_eq!(conns.series[0].points, vec![(0.0, 0.0), (1.0, 40.0), (2.0, 90.0), (2.5, 90.0)]);
    assert_eq!(conns.series[1].points, vec![(0.0, 0.0), (1.0, 10.0), (2.0, 0.0), (2.5, 0.0)]);
    assert_eq!(conns.series[2].points, vec![(0.0, 0.0), (1.0, 0.0), (2.0, 2.0), (2.5, 2.0)], "errored, cumulative");
    let rates = chart(&page, "rates");
    // Dials per second, flat over each interval; the last interval is half as long.
    assert_eq!(
        rates.series[0].points,
        vec![(0.0, 50.0), (1.0, 50.0), (1.0, 52.0), (2.0, 52.0), (2.0, 0.0), (2.5, 0.0)]
    );
    assert_eq!(rates.series[2].points, vec![(0.0, 0.0), (1.0, 0.0), (1.0, 2.0), (2.0, 2.0), (2.0, 0.0), (2.5, 0.0)]);
    let errs = chart(&page, "errors");
    assert_eq!(errs.series.len(), 1, "only causes that occurred");
    assert_eq!(errs.series[0].name, "refused");
    assert_eq!(page.bars[0].items, vec![("refused".to_string(), 2)]);
    assert!(page.charts.iter().all(|c| c.id != "per-shard"), "one run has no per-shard chart");
    let p = chart(&page, "percentiles");
    assert!(p.y_log);
    let curve = &p.series[0].points;
    assert_eq!(curve[0], (0.0, lat.min().as_nanos() as f64 / 1e6), "starts at the exact min");
    assert_eq!(*curve.last().unwrap(), (round4(5000f64.log10()), lat.max().as_nanos() as f64 / 1e6), "ends at the max");
    assert!(curve.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "monotonic: {curve:?}");
    // The curve's points are goon's own percentiles (histogram, clamped to [min, max]).
    for (x, q) in [(1.0, 90.0), (2.0, 99.0), (3.0, 99.9)] {
        let at = curve.iter().find(|p| p.0 == x).unwrap();
        // Within the histogram's 3 significant digits (the quantile's last float bit may pick
        // the neighbouring bucket).
        let want = lat.percentile(q).as_nanos() as f64 / 1e6;
        assert!((at.1 - want).abs() <= want * 2e-3, "p{q}: {at:?}, goon says {want}");
    }
    assert_eq!(p.x_ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["0%", "90%", "99%", "99.9%"]);
    let row = |k: &str| page.summary.iter().find(|r| r.0.starts_with(k)).map(|r| r.1.clone()).unwrap();
    assert_eq!(row("response time, 5000"), lat.min_avg_max_dev());
    assert_eq!(row("response time p50"), lat.percentiles_line());
    assert_eq!(row("exit status"), "2");
    assert_eq!(page.commands, vec![("run.json (gen-1)".to_string(), "netforge goon gen-1 80 -c 100".to_string())]);
}

/// Shards: the fleet line is the bucketed sum, the curve is that of all samples together
/// (the histograms add exactly), max concurrent is the largest summed bucket.
#[test]
fn shards_add_up_to_the_fleet() {
    let (a, b) = (random_latency(3000, 7), random_latency(2000, 8));
    let mut all = a.clone();
    all.merge(&b);
    // Shard 1 starts one interval after shard 0 and ends earlier.
    let s0 = [(0.0, 1.0, 10, 5, 1, 16, 10), (1.0, 2.0, 30, 0, 0, 5, 20), (2.0, 3.0, 30, 0, 0, 0, 0)];
    let s1 = [(0.0, 1.0, 20, 0, 0, 20, 20)];
    let docs = [
        input("shard-1.json", shard_doc(Some((1, 2)), "gen-b", 1001.0, &s1, &b)),
        input("shard-0.json", shard_doc(Some((0, 2)), "gen-a", 1000.0, &s0, &a)),
    ];
    let page = build(&docs).unwrap();
    assert_eq!(page.kind, "goon fleet");
    assert_eq!(page.title, "goon fleet of 2 shards against 10.0.0.5:80");
    let est = &chart(&page, "connections").series[0].points;
    // Bucket 1 holds both (30 + 20); shard 1 is gone after its last sample.
    assert_eq!(est, &vec![(0.0, 0.0), (1.0, 10.0), (2.0, 50.0), (3.0, 30.0)]);
    let per = &chart(&page, "per-shard").series;
    assert_eq!(per[0].name, "shard 0 (gen-a)", "sorted by shard index");
    assert_eq!(per[1].points, vec![(1.0, 0.0), (2.0, 20.0)], "shard 1 drawn from its own start");
    let dials = &chart(&page, "rates").series[0].points;
    assert_eq!(dials, &vec![(0.0, 16.0), (1.0, 16.0), (1.0, 25.0), (2.0, 25.0), (2.0, 0.0), (3.0, 0.0)]);
    let row = |k: &str| page.summary.iter().find(|r| r.0.starts_with(k)).map(|r| r.1.clone()).unwrap();
    assert_eq!(row("max concurrent"), "50");
    assert_eq!(row("total established"), "50");
    assert_eq!(row("exit status"), "2", "an error in shard 0");
    assert_eq!(row("response time, 5000"), all.min_avg_max_dev());
    assert_eq!(row("response time p50"), all.percentiles_line());
    let fleet_curve = &chart(&page, "percentiles").series[0];
    assert_eq!(fleet_curve.name, "fleet");
    let mut one = Lat::parse("x", "c", &lat_json(&all)).unwrap();
    one.hist = all.hist.as_ref().map(super::read::Sparse::of);
    assert_eq!(fleet_curve.points, one.curve(), "merged shards' curve = one run's with all the samples");
    assert_eq!(chart(&page, "percentiles").series.len(), 3, "fleet and each shard");
    let t = &page.tables[0];
    assert_eq!(t.rows.len(), 2);
    assert_eq!(t.rows[0][..3], ["0/2".to_string(), "gen-a".to_string(), "shard-0.json".to_string()]);
    assert_eq!(page.commands.len(), 2);
}

#[test]
fn a_merged_fleet_file_shows_its_own_totals_and_its_shards() {
    let a = random_latency(100, 3);
    let s = [(0.0, 1.0, 10, 0, 0, 10, 10)];
    let shard0 = shard_doc(Some((0, 2)), "gen-a", 1000.0, &s, &a);
    let shard1 = shard_doc(Some((1, 2)), "gen-b", 1000.0, &s, &a);
    let mut fleet = shard_doc(None, "merger", 1000.0, &[(0.0, 1.0, 20, 0, 0, 20, 20)], &a);
    fleet["kind"] = json!("goon-fleet");
    fleet["argv"] = json!(["netforge", "report", "merge", "shard-0.json", "shard-1.json"]);
    fleet["fleet"] = json!({
        "shards": 2, "present": [0, 1], "missing": [], "violations": ["max-errors 1%: 3% errors"],
        "per_shard": [{ "file": "shard-0.json" }, { "file": "shard-1.json" }]
    });
    fleet["shard_results"] = json!([shard0, shard1]);
    let page = build(&[input("merged.json", fleet)]).unwrap();
    assert_eq!(chart(&page, "connections").series[0].points, vec![(0.0, 0.0), (1.0, 20.0)], "the file's own samples");
    assert_eq!(page.tables[0].rows[1][2], "shard-1.json");
    assert_eq!(page.commands[0].0, "merge");
    assert!(page.notes[0].contains("max-errors 1%"), "{:?}", page.notes);
}

#[test]
fn format_1_has_totals_and_a_curve_but_no_time_series() {
    let l = random_latency(500, 5);
    let doc = json!({
        "netforge": "0.1.0", "role": "goon",
        "config": { "host": "h", "target": "127.0.0.1:9", "connections": 500 },
        "counts": { "total": 500, "dialing": 0, "established": 500, "closed": 0, "error": 0, "not_initiated": 0,
                    "total_established": 500, "max_concurrent_established": 500 },
        "errors": { "refused": 0 },
        "connect_time": { "count": 500, "min_us": l.min_ns as f64 / 1e3, "avg_us": l.mean().as_nanos() as f64 / 1e3,
                          "max_us": l.max_ns as f64 / 1e3, "dev_us": l.stddev().as_nanos() as f64 / 1e3,
                          "histogram_v2_deflate_base64": l.encode() },
        "time_to_error": { "count": 0 }, "elapsed_s": 1.0, "exit_code": 0
    });
    let page = build(&[input("v1.json", doc)]).unwrap();
    assert_eq!(page.charts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["percentiles"]);
    assert!(page.notes.iter().any(|n| n.contains("no per-interval samples (JSON format 1)")), "{:?}", page.notes);
    assert!(page.bars.is_empty());
}

fn bp_doc(states: &[(&str, u32)]) -> Value {
    let series: Vec<Value> = states
        .iter()
        .enumerate()
        .map(|(i, (st, wnd))| {
            json!({ "t": (i + 1) as f64 * 0.1, "bytes_written": (i as u64 + 1) * 1000, "eagain": 0, "outq": 500 * i,
                    "notsent": 100 * i, "snd_wnd": wnd, "backoff": 0, "rwnd_limited_us": 0, "busy_time_us": 0, "state": st })
        })
        .collect();
    json!({
        "verdict": "backpressure reached the client: YES — zero window in 60% of samples",
        "summary": { "samples": states.len(), "zero_window_samples": 3, "zero_window_fraction": 0.6,
                     "episodes": { "count": 2, "min_s": 0.0, "avg_s": 0.1, "max_s": 0.2, "open_at_end": true } },
        "series_stride": 1, "series": series.clone(),
        "connections": [ { "verdict": "c0", "summary": {}, "series": series.clone() },
                         { "verdict": "c1", "summary": {}, "series": series } ],
        "final": { "outq": 42 }
    })
}

#[test]
fn bp_client_shades_zero_window_time() {
    let doc =
        bp_doc(&[("flowing", 9000), ("zero-window", 0), ("zero-window", 0), ("flowing", 4000), ("zero-window", 0)]);
    let page = build(&[input("bp.json", doc)]).unwrap();
    assert_eq!(page.kind, "bp client");
    assert!(page.verdict.as_deref().unwrap().contains("YES"));
    let w = chart(&page, "window");
    // From the first zero sample to the first open one; the last runs to the last sample.
    assert_eq!(w.bands, vec![(0.2, 0.4), (0.5, 0.5)]);
    assert_eq!(w.series[0].points.iter().map(|p| p.1).collect::<Vec<_>>(), [9000.0, 0.0, 0.0, 4000.0, 0.0]);
    assert_eq!(w.series[1].name, "unacknowledged (SIOCOUTQ)");
    let r = chart(&page, "write-rate");
    assert_eq!(r.series[0].points.len(), 4);
    assert!((r.series[0].points[0].1 - 10_000.0).abs() < 1.0, "1000 B per 0.1 s: {:?}", r.series[0].points);
    assert!(chart(&page, "conn-1").series[0].points.len() == 5, "a chart per connection");
    assert_eq!(page.tables[0].rows.len(), 2);
    assert!(page.summary.iter().any(|r| r.1 == "42"), "final outq");
}

#[test]
fn refusals_name_the_file() {
    let bp = bp_doc(&[("flowing", 1)]);
    let goon = shard_doc(None, "h", 0.0, &[(0.0, 1.0, 1, 0, 0, 1, 1)], &Latency::new());
    let e = build(&[input("a.json", goon.clone()), input("b.json", bp.clone())]).unwrap_err();
    assert_eq!(e.to_string(), "b.json: a bp client result cannot be shown with goon results");
    // The bp result first: it is the file named, and the one that came with it is said.
    let e = build(&[input("b.json", bp), input("a.json", goon.clone())]).unwrap_err();
    assert_eq!(e.to_string(), "b.json: a bp client result is shown alone: give one file (a.json came with it)");
    // Each bp sample is checked, not read as zeros.
    let two = || bp_doc(&[("flowing", 1), ("flowing", 2)]);
    let cases: [(&str, Value, &str); 5] = [
        ("series/1", json!(5), "series[1]: not an object"),
        ("series/0/t", json!("a"), "series[0].t: \"a\": not a non-negative number"),
        ("series/1/outq", json!(-1), "series[1].outq: -1: not a non-negative number"),
        ("series/0/snd_wnd", json!("x"), "series[0].snd_wnd: \"x\": not a non-negative number"),
        ("series/1/t", json!(0.01), "series[1].t: 0.01 comes before the previous sample's 0.1"),
    ];
    for (path, value, want) in cases {
        let mut doc = two();
        *doc.pointer_mut(&format!("/{path}")).unwrap() = value;
        let e = build(&[input("bp.json", doc)]).unwrap_err();
        assert_eq!(e.to_string(), format!("bp.json: {want}"), "{path}");
    }
    let mut doc = two();
    doc["series"][0]["snd_wnd"] = Value::Null;
    assert!(build(&[input("bp.json", doc)]).is_ok(), "a window TCP_INFO did not give is absent, not wrong");
    let e = build(&[input("x.json", json!([1, 2]))]).unwrap_err();
    assert_eq!(e.to_string(), "x.json: not a JSON object");
    let e = build(&[input("x.json", json!({"kind": "tsung"}))]).unwrap_err();
    assert!(e.to_string().starts_with("x.json: kind \"tsung\" is not"), "{e}");
    let mut newer = goon.clone();
    newer["format_version"] = json!(3);
    assert!(build(&[input("n.json", newer)]).unwrap_err().to_string().contains("format_version 3 is newer"));
    // Format 1 has neither kind nor format_version; a file with one of them has both.
    let mut no_version = goon.clone();
    no_version.as_object_mut().unwrap().remove("format_version");
    let e = build(&[input("v.json", no_version)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "v.json: format_version: missing, while \"kind\" is given (a result of format 2 or later has both)"
    );
    let mut no_kind = goon.clone();
    no_kind.as_object_mut().unwrap().remove("kind");
    let e = build(&[input("k.json", no_kind)]).unwrap_err();
    assert_eq!(e.to_string(), "k.json: kind: missing (format_version 2 results name their kind)");
    let mut bad = goon.clone();
    bad["samples"] = json!({});
    assert_eq!(build(&[input("s.json", bad)]).unwrap_err().to_string(), "s.json: samples: {}: not an array");
    for f in [json!("2"), json!(0), json!(2.5), json!(-1)] {
        let mut bad = goon.clone();
        bad["format_version"] = f.clone();
        let e = build(&[input("f.json", bad)]).unwrap_err();
        assert_eq!(e.to_string(), format!("f.json: format_version: {f} is not 1 or 2"));
    }
    // A format-2 result's counts as report merge reads them.
    let mut bad = goon.clone();
    bad["counts"]["total"] = json!(-1);
    let e = build(&[input("c.json", bad)]).unwrap_err();
    assert_eq!(e.to_string(), "c.json: counts.total: missing or not a non-negative integer");
    let e = build(&[input("d.json", json!({"format_version": 2, "kind": "goon"}))]).unwrap_err();
    assert!(e.to_string().starts_with("d.json: errors."), "{e}");
    let mut bad = goon;
    bad["connect_time"] = json!({ "count": 3, "histogram_v2_deflate_base64": "!!!!" });
    let e = build(&[input("h.json", bad)]).unwrap_err();
    assert_eq!(e.to_string(), "h.json: connect_time.histogram_v2_deflate_base64: histogram is not valid base64");
}

/// A hostile host name, argv and verdict reach the page only escaped: the page holds exactly
/// its own two script elements and its one nonce.
#[test]
fn hostile_strings_are_escaped_everywhere() {
    let evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>\"'&\u{2028}";
    let mut doc = shard_doc(Some((0, 2)), evil, 0.0, &[(0.0, 1.0, 1, 0, 0, 1, 1)], &random_latency(10, 1));
    doc["config"]["target"] = json!(evil);
    let page = build(&[input(evil, doc)]).unwrap();
    let html = render::page(&page, None);
    assert_eq!(html.matches("<script").count(), 2, "{html}");
    assert_eq!(html.matches("</script>").count(), 2);
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)"), "escaped in the HTML text");
    assert!(html.contains("\\u003c/script\\u003e\\u003cscript\\u003ealert(1)"), "escaped in the data block");
    let mut bp = bp_doc(&[("flowing", 1)]);
    bp["verdict"] = json!(evil);
    let html = render::page(&build(&[input("bp.json", bp)]).unwrap(), Some(evil));
    assert_eq!(html.matches("<script").count(), 2);
    assert!(!html.contains("<img"));
}

/// The per-interval connect times come from each interval's own histogram; shards' intervals
/// in one bucket are merged first.
#[test]
fn connect_time_per_interval_from_the_interval_histograms() {
    let (a, b, c) = (random_latency(400, 11), random_latency(300, 12), random_latency(200, 13));
    let ivs = [(0.0, 1.0, 4, 0, 0, 4, 4), (1.0, 2.0, 7, 0, 0, 3, 3)];
    let with_lat = |doc: &mut Value, lats: [&Latency; 2]| {
        for (i, l) in lats.iter().enumerate() {
            doc["samples"][i]["connect_time"] = lat_json(l);
        }
    };
    let mut one = shard_doc(None, "h", 1000.0, &ivs, &a);
    with_lat(&mut one, [&a, &b]);
    let page = build(&[input("one.json", one)]).unwrap();
    let ch = chart(&page, "interval-latency");
    assert!(ch.y_log);
    let ms = |d: Duration| d.as_nanos() as f64 / 1e6;
    let p50 = &ch.series[0];
    assert_eq!(p50.name, "p50");
    let (pa, pb) = (p50.points[0].1, p50.points[2].1);
    assert!((pa - ms(a.percentile(50.0))).abs() <= ms(a.percentile(50.0)) * 2e-3, "{pa} vs {:?}", a.percentile(50.0));
    assert!((pb - ms(b.percentile(50.0))).abs() <= ms(b.percentile(50.0)) * 2e-3);
    assert_eq!(p50.points.iter().map(|p| p.0).collect::<Vec<_>>(), [0.0, 1.0, 1.0, 2.0]);
    assert_eq!(ch.series[2].points[3].1, ms(b.max()), "max is the exact max");
    // Two shards, same start: bucket 1 holds b and c merged.
    let mut s0 = shard_doc(Some((0, 2)), "x", 1000.0, &ivs, &a);
    with_lat(&mut s0, [&a, &b]);
    let mut s1 = shard_doc(Some((1, 2)), "y", 1000.0, &ivs, &a);
    with_lat(&mut s1, [&Latency::new(), &c]);
    let page = build(&[input("s0", s0), input("s1", s1)]).unwrap();
    let ch = chart(&page, "interval-latency");
    let mut bc = b.clone();
    bc.merge(&c);
    let want = ms(bc.max());
    assert_eq!(ch.series[2].points[3].1, want);
    let p99 = ch.series[1].points[2].1;
    assert!((p99 - ms(bc.percentile(99.0))).abs() <= ms(bc.percentile(99.0)) * 2e-3, "{p99}");
    // A broken interval histogram names its place.
    let mut bad = shard_doc(None, "h", 0.0, &ivs, &a);
    bad["samples"][1]["connect_time"] = json!({ "count": 2, "histogram_v2_deflate_base64": "AAAA" });
    let e = build(&[input("bad.json", bad)]).unwrap_err();
    assert!(e.to_string().starts_with("bad.json: samples[1].connect_time.histogram_v2_deflate_base64: "), "{e}");
}

mod parts;

/// The page's sparse histogram answers every quantile as the decoded histogram does, alone and
/// after adding another.
#[test]
fn sparse_histograms_give_hdrhistograms_quantiles() {
    use super::read::Sparse;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut a = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut b = a.clone();
    for _ in 0..5000 {
        a.record(rng.u64(1..2_000)).unwrap();
        b.record(rng.u64(1..60_000_000)).unwrap();
    }
    let (sa, sb) = (Sparse::of(&a), Sparse::of(&b));
    let mut sum = sa.clone();
    sum.add(&sb);
    let mut ab = a.clone();
    ab.add(&b).unwrap();
    for i in 0..=1000 {
        let q = i as f64 / 1000.0;
        assert_eq!(sa.value_at_quantile(q), a.value_at_quantile(q), "q {q}");
        assert_eq!(sum.value_at_quantile(q), ab.value_at_quantile(q), "sum at q {q}");
    }
    for q in [0.999, 0.9999, 0.99999, 1.0, 1.5] {
        assert_eq!(sum.value_at_quantile(q), ab.value_at_quantile(q), "sum at q {q}");
    }
}

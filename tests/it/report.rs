//! Fleets end to end: K `netforge goon --shard I/K` processes over real sockets, then
//! `netforge report merge` over what they wrote; `--start-at`, `--json-stream` and the
//! shard flags' refusals.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{netforge, parse_status, refusing_addr, run, serve, with_timeout, Proc};

const T: Duration = Duration::from_secs(90);

/// A directory of this test's own.
fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netforge-report-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `goon` shards I/K, all at once (each its own process), with `extra` flags; returns their
/// exit codes and outputs in shard order.
fn shards(target: &[&str], k: u64, extra: &[&str], json: &dyn Fn(u64) -> PathBuf) -> Vec<(i32, String, String)> {
    let procs: Vec<Proc> = (0..k)
        .map(|i| {
            let mut cmd = netforge();
            cmd.arg("goon")
                .args(target)
                .args(["-y", "--shard", &format!("{i}/{k}"), "--json", s(&json(i))])
                .args(extra);
            Proc::spawn(cmd)
        })
        .collect();
    procs
        .into_iter()
        .map(|p| {
            let (st, out, err) = p.finish(T);
            (st.code().unwrap_or(-1), out, err)
        })
        .collect()
}

fn merge(args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["report", "merge"];
    a.extend_from_slice(args);
    run(&a, T)
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn three_shards_against_serve_merge_to_exact_totals() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0"]);
        let port = addr.port().to_string();
        let d = dir("three");
        let f = |i: u64| d.join(format!("shard-{i}.json"));
        // All three start at one instant, 1.5 s from now (Unix seconds with a fraction).
        let at = unix_now() + 1.5;
        let at_text = format!("{at:.3}");
        let outs = shards(&["127.0.0.1", &port], 3, &["-c", "601", "-s", "0", "--start-at", &at_text], &f);
        let mut sum = 0;
        for (i, (code, out, err)) in outs.iter().enumerate() {
            assert_eq!(*code, 0, "shard {i}\nstdout:\n{out}\nstderr:\n{err}");
            let v = read(&f(i as u64));
            assert_eq!(v["format_version"], 2);
            assert_eq!(v["shard"], serde_json::json!({ "index": i, "count": 3 }));
            assert_eq!(v["config"]["connections"], 601);
            let n = u(&v["counts"]["total"]);
            assert_eq!(n, if i == 0 { 201 } else { 200 }, "shares differ by at most one and sum to N");
            assert!(out.contains(&format!("netforge goon: shard {i}/3: {n} of 601 connections")), "{out}");
            assert!(out.contains("(--start-at, "), "{out}");
            sum += n;
            // Dialing started at the instant asked for, not before (and not long after).
            let started = v["started_unix_s"].as_f64().unwrap();
            let at_ms = (at * 1000.0).round() / 1000.0;
            assert!(started >= at_ms - 0.001, "started {started} before --start-at {at_ms}");
            assert!(started < at_ms + 2.0, "started {started}, --start-at {at_ms}");
            // The samples add up to the run.
            let samples = v["samples"].as_array().unwrap();
            assert!(!samples.is_empty());
            let total = |k: &str| samples.iter().map(|x| u(&x[k])).sum::<u64>();
            assert_eq!(total("dials"), n);
            assert_eq!(total("established_new"), u(&v["counts"]["total_established"]));
            let connects: u64 = samples.iter().map(|x| u(&x["connect_time"]["count"])).sum();
            assert_eq!(connects, n);
            assert_eq!(u(&samples.last().unwrap()["state"]["established"]), n);
        }
        assert_eq!(sum, 601);

        let merged = d.join("merged.json");
        let files = [f(0), f(1), f(2)];
        let (code, out, err) = merge(&[s(&files[2]), s(&files[0]), s(&files[1]), "--json", s(&merged)]);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("--- 127.0.0.1:{port} tcp test statistics (fleet: 3 of 3 shards) ---"));
        assert_eq!(parse_status(lines[1]), Some([601, 0, 601, 0, 0, 0]), "{out}");
        assert_eq!(lines[2], "--- netforge goon execution statistics ---");
        assert_eq!(lines[3], "Total established connections: 601");
        assert!(lines[4].starts_with("Max concurrent established connections: 601 ("), "{out}");
        assert_eq!(lines[5], "Number of established connections on closure: 601");
        assert!(lines[6].starts_with("Response time stats for 601 successful connections min/avg/max/dev = "));
        for i in 0..3 {
            assert!(lines.iter().any(|l| l.starts_with(&format!("{i}/3 "))), "no row for shard {i}:\n{out}");
        }
        let m = read(&merged);
        assert_eq!(m["kind"], "goon-fleet");
        assert_eq!(m["counts"]["total"], 601);
        assert_eq!(m["counts"]["max_concurrent_established"], 601);
        assert_eq!(m["fleet"]["max_concurrent_established_upper"], 601);
        assert_eq!(m["connect_time"]["count"], 601);
        assert_eq!(m["exit_code"], 0);
        let h =
            netforge::stats::Latency::decode_hist(m["connect_time"]["histogram_v2_deflate_base64"].as_str().unwrap())
                .unwrap();
        assert_eq!(h.len(), 601);
        // Exact moments: the merged sum is the sum of the shards' sums.
        let sum_ns = |v: &serde_json::Value| v["connect_time"]["sum_ns"].as_str().unwrap().parse::<u128>().unwrap();
        assert_eq!(sum_ns(&m), files.iter().map(|p| sum_ns(&read(p))).sum::<u128>());
        assert_eq!(m["shard_results"].as_array().unwrap().len(), 3);

        // Thresholds: each violated one on its own line, exit 3.
        let (code, out, _) =
            merge(&[s(&files[0]), s(&files[1]), s(&files[2]), "--max-p99", "1ns", "--min-established", "602"]);
        assert_eq!(code, 3, "{out}");
        assert!(out.lines().any(|l| l.starts_with("threshold violated: --max-p99 1ns: p99 ")), "{out}");
        assert!(out.lines().any(|l| l == "threshold violated: --min-established 602: 601 established"), "{out}");
        let (code, out, _) =
            merge(&[s(&files[0]), s(&files[1]), s(&files[2]), "--max-errors", "0", "--min-established", "601"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("threshold ok: --max-errors 0: 0 errors (0.000% of 601)"), "{out}");

        // Refusals: one line on stderr naming the file; exit 1.
        let one_line = |err: &str| {
            assert_eq!(err.lines().count(), 1, "{err}");
            err.trim_end().to_string()
        };
        let (code, _, err) = merge(&[s(&files[0]), s(&files[1]), s(&files[0])]);
        assert_eq!(code, 1);
        assert_eq!(
            one_line(&err),
            format!("netforge: {}: shard: 0/3 again ({} is that shard too)", files[0].display(), files[0].display())
        );
        let (code, _, err) = merge(&[s(&files[0]), s(&files[2])]);
        assert_eq!(code, 1);
        assert!(one_line(&err).starts_with("netforge: report merge: missing shard 1/3 (2 of 3 files given)"), "{err}");
        let (code, out, _) = merge(&[s(&files[0]), s(&files[2]), "--allow-missing"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(parse_status(out.lines().nth(1).unwrap()), Some([401, 0, 401, 0, 0, 0]), "{out}");
        assert!(out.contains("Missing shards (not counted): 1/3"), "{out}");
        for (key, value, want) in [
            ("format_version", serde_json::json!(1), "format_version: 1: this netforge merges format version 2"),
            ("kind", serde_json::json!("goon-fleet"), "kind: \"goon-fleet\": only goon results"),
        ] {
            let mut v = read(&files[1]);
            v[key] = value;
            let bad = d.join(format!("bad-{key}.json"));
            std::fs::write(&bad, v.to_string()).unwrap();
            let (code, _, err) = merge(&[s(&files[0]), s(&bad), s(&files[2])]);
            assert_eq!(code, 1);
            assert!(one_line(&err).starts_with(&format!("netforge: {}: {want}", bad.display())), "{err}");
        }
        let mut v = read(&files[1]);
        v["histogram"]["significant_digits"] = serde_json::json!(2);
        let bad = d.join("bad-precision.json");
        std::fs::write(&bad, v.to_string()).unwrap();
        let (code, _, err) = merge(&[s(&files[0]), s(&bad), s(&files[2])]);
        assert_eq!(code, 1);
        assert!(one_line(&err).starts_with(&format!("netforge: {}: histogram: precision ", bad.display())), "{err}");
        std::fs::write(d.join("broken.json"), "{\n  \"format_version\": 2,\n  oops\n}").unwrap();
        let (code, _, err) = merge(&[s(&d.join("broken.json"))]);
        assert_eq!(code, 1);
        assert!(
            one_line(&err).starts_with(&format!("netforge: {}:3:3: not JSON: ", d.join("broken.json").display())),
            "{err}"
        );

        // A shard of another test (here: the built-in target instead of serve) is refused.
        let other = d.join("other.json");
        let (code, out, _) = run(&["goon", "-c", "100", "-s", "0", "-y", "--shard", "1/3", "--json", s(&other)], T);
        assert_eq!(code, 0, "{out}");
        let (code, _, err) = merge(&[s(&files[0]), s(&other), s(&files[2])]);
        assert_eq!(code, 1);
        assert!(
            one_line(&err).starts_with(&format!("netforge: {}: config.target: the built-in target (", other.display())),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&d);
    });
}

#[test]
fn shards_that_fail_exit_two_unless_max_errors_judges() {
    with_timeout(T, || {
        let (_hold, addr) = refusing_addr();
        let port = addr.port().to_string();
        let d = dir("fail");
        let f = |i: u64| d.join(format!("shard-{i}.json"));
        let outs = shards(&["127.0.0.1", &port], 2, &["-c", "60", "-s", "0", "-i", "0"], &f);
        for (code, out, err) in &outs {
            assert_eq!(*code, 2, "stdout:\n{out}\nstderr:\n{err}");
        }
        let (a, b) = (f(0), f(1));
        let (code, out, _) = merge(&[s(&a), s(&b)]);
        assert_eq!(code, 2, "{out}");
        assert_eq!(parse_status(out.lines().nth(1).unwrap()), Some([60, 0, 0, 0, 60, 0]), "{out}");
        assert!(out.contains("Errors by cause: refused 60\n"), "{out}");
        assert!(out.contains("Time to error stats for 60 failed connections min/avg/max/dev = "), "{out}");
        let (code, out, _) = merge(&[s(&a), s(&b), "--max-errors", "100%"]);
        assert_eq!(code, 0, "errors within --max-errors: {out}");
        let (code, out, _) = merge(&[s(&a), s(&b), "--max-errors", "59", "--max-p99", "1s"]);
        assert_eq!(code, 3, "{out}");
        let violated: Vec<&str> = out.lines().filter(|l| l.starts_with("threshold violated: ")).collect();
        assert_eq!(
            violated,
            [
                "threshold violated: --max-errors 59: 60 errors (100.000% of 60)",
                "threshold violated: --max-p99 1s: no connection succeeded, so there is no p99",
            ],
            "{out}"
        );
        let _ = std::fs::remove_dir_all(&d);
    });
}

#[test]
fn shard_and_start_at_refusals_are_one_line_naming_the_flag() {
    with_timeout(T, || {
        let past = format!("{:.0}", unix_now() - 5.0);
        let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
            (vec!["--shard", "3/3"], None, "--shard"),
            (vec!["--shard", "0/0"], None, "--shard"),
            (
                vec!["--shard-from-env", "NETFORGE_TEST_SHARD", "--shards", "4"],
                None,
                "--shard-from-env NETFORGE_TEST_SHARD: the environment variable NETFORGE_TEST_SHARD is not set",
            ),
            (
                vec!["--shard-from-env", "NETFORGE_TEST_SHARD", "--shards", "4"],
                Some("two"),
                "--shard-from-env NETFORGE_TEST_SHARD: NETFORGE_TEST_SHARD=\"two\": the shard index",
            ),
            (
                vec!["--shard-from-env", "NETFORGE_TEST_SHARD", "--shards", "4"],
                Some("4"),
                "must be below the shard count 4",
            ),
            (vec!["--shards", "4"], None, "--shard-from-env"),
            (vec!["--start-at", &past], None, "--start-at"),
            (vec!["--start-at", "2026-13-01T00:00:00Z"], None, "--start-at"),
            (
                vec!["--start-at", "2020-01-01T00:30:00+01:00"],
                None,
                "--start-at <TIME>': 2019-12-31T23:30:00.000000Z is ",
            ),
            (
                vec!["--source-ip", "127.0.0.2-127.0.0.4", "--shard", "0/5"],
                None,
                "--source-ip: 3 addresses cannot be split over 5 shards",
            ),
        ];
        for (args, env, want) in cases {
            let mut cmd = netforge();
            cmd.args(["goon", "-c", "10", "-y"]).args(&args);
            match env {
                Some(v) => cmd.env("NETFORGE_TEST_SHARD", v),
                None => cmd.env_remove("NETFORGE_TEST_SHARD"),
            };
            let (st, out, err) = Proc::spawn(cmd).finish(T);
            assert_eq!(st.code(), Some(1), "{args:?}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: nothing dialed: {out}");
        }
        let (code, _, err) = run(&["goon", "-c", "10", "-y", "--start-at", &past], T);
        assert_eq!(code, 1);
        assert!(err.contains("in the past (more than 1s)"), "{err}");
    });
}

#[test]
fn a_signal_ends_the_start_at_wait_with_nothing_dialed() {
    with_timeout(T, || {
        let d = dir("wait");
        let json = d.join("r.json");
        let at = format!("{:.1}", unix_now() + 60.0);
        let mut cmd = netforge();
        cmd.args(["goon", "-c", "10", "-y", "--start-at", &at, "--json", s(&json)]);
        let p = Proc::spawn(cmd);
        let line = p.wait_line(Duration::from_secs(20), |l| l.starts_with("netforge goon: waiting until "));
        assert!(line.contains("(--start-at, "), "{line}");
        p.signal(2);
        let (st, out, err) = p.finish(Duration::from_secs(10));
        assert_eq!(st.code(), Some(1), "nothing dialed is goon's 1\n{out}{err}");
        assert!(out.contains("netforge goon: interrupted while waiting for --start-at; nothing was dialed"), "{out}");
        assert!(out.contains("Total: 10, Dialing: 0, Established: 0, Closed: 0, Error: 0, NotInitiated: 10"), "{out}");
        let v = read(&json);
        assert_eq!((v["interrupted"].as_bool(), v["counts"]["not_initiated"].as_u64()), (Some(true), Some(10)));
        assert_eq!(v["samples"].as_array().map(Vec::len), Some(0));
        // The peak is the high-water mark so far: never below the start, never zero.
        let mem = &v["memory"];
        let (start, peak) = (mem["rss_start_kib"].as_u64().unwrap_or(0), mem["rss_peak_kib"].as_u64().unwrap_or(0));
        assert!(start > 0 && peak >= start, "{mem}");
        assert!(!out.contains(" 0 KiB peak"), "{out}");
        let _ = std::fs::remove_dir_all(&d);
    });
}

#[test]
fn json_stream_is_one_object_per_interval() {
    with_timeout(T, || {
        let d = dir("stream");
        let json = d.join("r.json");
        // 300 dials 2 ms apart: about 0.6 s, several 100 ms intervals.
        let mut cmd = netforge();
        cmd.args(["goon", "-c", "300", "-s", "2", "-y", "-i", "100ms", "--json-stream", "-", "--json", s(&json)]);
        let (st, out, err) = Proc::spawn(cmd).finish(T);
        assert_eq!(st.code(), Some(0), "{out}{err}");
        let events: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
        assert_eq!(events[0]["event"], "start");
        assert_eq!(events[0]["format_version"], 2);
        let last = events.last().unwrap();
        assert_eq!(last["event"], "end");
        let intervals: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "interval").collect();
        assert_eq!(intervals.len(), events.len() - 2);
        assert!(intervals.len() >= 3, "{} intervals", intervals.len());
        let indexes: Vec<u64> = intervals.iter().map(|e| u(&e["sample"]["index"])).collect();
        assert!(indexes.windows(2).all(|w| w[0] < w[1]), "base intervals in order: {indexes:?}");
        let dials: u64 = intervals.iter().map(|e| u(&e["sample"]["dials"])).sum();
        assert_eq!(dials, 300);
        assert_eq!(last["result"]["counts"]["total"], 300);
        // The text went to stderr, and --json holds the same samples as the stream.
        assert!(err.lines().any(|l| parse_status(l) == Some([300, 0, 300, 0, 0, 0])), "{err}");
        let file = read(&json);
        let streamed: Vec<serde_json::Value> = intervals.iter().map(|e| e["sample"].clone()).collect();
        assert_eq!(file["samples"].as_array().unwrap(), &streamed);
        assert_eq!(file["sample_interval_s"], 0.1);
        let _ = std::fs::remove_dir_all(&d);
    });
}

/// A FIFO given as a result file is refused at once in one line, by `report merge` and by
/// `report html` alike (opening it the plain way would wait forever for a writer).
#[test]
fn a_fifo_is_refused_not_waited_on() {
    with_timeout(T, || {
        let d = dir("fifo");
        let fifo = d.join("shard.json");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", fifo.display());
        let (code, _, err) = merge(&[s(&fifo)]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err.trim(),
            format!("netforge: {}: cannot read: a FIFO; a result must be a regular file", fifo.display())
        );
        let out = d.join("r.html");
        let (code, _, err) = run(&["report", "html", s(&fifo), "-o", s(&out)], Duration::from_secs(20));
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.trim(), format!("netforge: {}: not a regular file", fifo.display()));
    });
}

/// Shards of different tests are refused naming the key where they differ: the traffic
/// settings (not only the rate), the WebSocket settings and the start time.
#[test]
fn shards_of_different_tests_are_refused_naming_the_key() {
    with_timeout(T, || {
        let d = dir("different");
        let run_shard = |i: u64, extra: &[&str], name: &str| {
            let f = d.join(name);
            let shard = format!("{i}/2");
            let base = ["goon", "-c", "4", "-s", "0", "-y", "-i", "0", "--shard", &shard, "--json", s(&f)];
            let (code, out, err) = run(&[&base[..], extra].concat(), T);
            assert_eq!(code, 0, "{extra:?}: {out}{err}");
            f
        };
        let traffic = |bytes: &'static str| {
            ["--message", "hello\\n", "--message-rate", "10", "--duration", "300ms", "--expect-bytes", bytes]
        };
        let (t0, t1) = (run_shard(0, &traffic("6"), "t0.json"), run_shard(1, &traffic("3"), "t1.json"));
        let (code, _, err) = merge(&[s(&t0), s(&t1)]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("t1.json: traffic.config.expect_bytes: 3 differs from"), "{err}");
        let (w0, w1) = (run_shard(0, &["--ws", "/x"], "w0.json"), run_shard(1, &["--ws", "/y"], "w1.json"));
        let (code, _, err) = merge(&[s(&w0), s(&w1)]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("w1.json: config.websocket.path: \"/y\" differs from"), "{err}");
        // Another start time: the same shard file with its start_at moved.
        let (p0, p1) = (run_shard(0, &[], "p0.json"), run_shard(1, &[], "p1.json"));
        let mut moved = read(&p1);
        moved["start_at"] = serde_json::json!("2030-01-01T00:00:00.000000Z");
        std::fs::write(&p1, moved.to_string()).unwrap();
        let (code, _, err) = merge(&[s(&p0), s(&p1)]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("p1.json: start_at: \"2030-01-01T00:00:00.000000Z\" differs from"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    });
}

//! Boundary values for every numeric, duration and size flag of every role, and for every such
//! key of lb.toml, bp-server.toml and bp-client.toml: netforge never panics (exit 101, a
//! "panicked" message), and a value it refuses ends the run with exit 1 and exactly one stderr
//! line naming the flag (`--threads`) or the file, line, column and key path
//! (`lb.toml:3:11: health.rise:`).
//!
//! Every run is bounded: accepted values dial a port that refuses (goon), print the config and
//! exit (proxy), or are stopped with SIGTERM once they have started (serve, bp server, bp client,
//! whose own runs are short), and a child that neither exits nor prints fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver};

use crate::util::{netforge, refusing_addr, spawn_listening, with_timeout, Proc};

/// Longest a child may take to print its first line or exit.
const FIRST_OUTPUT: Duration = Duration::from_secs(20);
/// Longest a child may take to exit once asked to (SIGTERM), or once done.
const EXIT: Duration = Duration::from_secs(20);
/// Whole-test bound.
const T: Duration = Duration::from_secs(600);

const COUNTS: &[&str] = &[
    "0",
    "-1",
    "1",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999",
    "1e-300",
    "NaN",
];
const DURATIONS: &[&str] =
    &["0", "-1s", "1ns", "8760h", "8761h", "999999999h", "1e308s", "1e-300s", "NaNs", "inf", "18446744073709551615s"];
const SIZES: &[&str] = &["0", "-1", "1", "1KiB", "256MiB", "3GiB", "4GiB", "18446744073709551615", "1e308"];
const RATES: &[&str] = &["0", "-1", "1e-300", "0.001", "10000000", "1e308", "NaN", "inf"];
/// Ranges shared by several flags, as the refusals spell them.
const THREADS: &str = "0..=1024";
const SOCKBUF: &str = "1024..=268435456, or 0";
const MSS: &str = "536..=32767";
const INTERVAL: &str = "whole seconds 0..=31536000 or a duration, 0 or 1ms..=8760h0m0s";
/// `--mss`: [`COUNTS`] and both ends of its range and just past them; a value in range must
/// start (the kernel refuses TCP_MAXSEG above 32767).
const MSS_VALUES: &[&str] =
    &["0", "-1", "535", "536", "32767", "32768", "65495", "4294967296", "18446744073709551615", "1e-300", "NaN"];
/// TOML values: integers at and past i64, floats (NaN, huge, tiny), and strings with units.
const TOML_VALUES: &[&str] = &[
    "0",
    "-1",
    "9223372036854775807",
    "18446744073709551615",
    "1e308",
    "nan",
    "\"999999999h\"",
    "\"8760h\"",
    "\"4GiB\"",
];

/// What a refused run's one stderr line must start with, after `netforge: `: the flag and its
/// range (as `--help` and the README give it), or the file with a line and column and then the
/// key path.
enum Names {
    Flag { flag: String, range: String },
    Key { file: PathBuf, key: String },
}

struct Case {
    args: Vec<String>,
    /// The value under test of a flag case: one outside the flag's range must be refused.
    value: Option<String>,
    names: Names,
    /// How long a started run may go on by itself before it is sent SIGTERM.
    grace: Duration,
}

/// How one run ended.
struct Ran {
    code: i32,
    started: bool,
    stderr: Vec<String>,
}

/// Runs one case to its end, bounded in time; `Err` when the child hangs (no output and no exit
/// within [`FIRST_OUTPUT`], or no exit within [`EXIT`] of its end or of SIGTERM): it is killed.
fn run_case(c: &Case) -> Result<Ran, String> {
    let mut cmd = netforge();
    cmd.args(&c.args);
    let mut p = Proc::spawn(cmd);
    let mut stderr: Vec<String> = Vec::new();
    let deadline = Instant::now() + FIRST_OUTPUT;
    let mut err_rx: Receiver<String> = p.stderr.clone();
    // Started: a stdout line, or goon's preflight block (printed once the flags were accepted).
    let started = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        select! {
            recv(p.lines) -> l => break l.is_ok(),
            recv(err_rx) -> l => match l {
                Ok(l) => {
                    let preflight = l.contains("preflight:");
                    stderr.push(l);
                    if preflight {
                        break true;
                    }
                }
                Err(_) => err_rx = never(),
            },
            default(left) => return Err(format!("neither output nor exit within {FIRST_OUTPUT:?}")),
        }
    };
    if started {
        // Let it run (a goon run or a short bp client run ends by itself), then ask it to stop.
        let until = Instant::now() + c.grace;
        while Instant::now() < until && matches!(p.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(p.child.try_wait(), Ok(None)) {
            p.signal(15);
        }
    }
    let until = Instant::now() + EXIT;
    while matches!(p.child.try_wait(), Ok(None)) {
        if Instant::now() >= until {
            return Err(format!("did not exit within {EXIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _out, err) = p.finish(EXIT);
    stderr.extend(err.lines().map(str::to_string));
    Ok(Ran { code: status.code().unwrap_or(-1), started, stderr })
}

/// Whether a run satisfied the rules: `Ok(true)` accepted, `Ok(false)` refused as it should
/// be, `Err` what was wrong.
fn judge(c: &Case, r: &Ran) -> Result<bool, String> {
    let all = r.stderr.join(" | ");
    if r.code == 101 {
        return Err(format!("exit 101: {all}"));
    }
    if all.contains("panicked") {
        return Err(format!("panicked: {all}"));
    }
    if r.started {
        return match (&c.names, &c.value) {
            (Names::Flag { range, .. }, Some(v)) if outside(v, range) => Err(format!("accepted {v}, outside {range}")),
            _ => Ok(true),
        };
    }
    if r.code != 1 {
        return Err(format!("refused with exit {}: {all}", r.code));
    }
    if r.stderr.len() != 1 {
        return Err(format!("refused with {} stderr lines: {all}", r.stderr.len()));
    }
    let line = r.stderr[0].strip_prefix("netforge: ").ok_or_else(|| format!("no `netforge: ` prefix: {all}"))?;
    match &c.names {
        Names::Flag { flag, range } => {
            if !line.contains(flag.as_str()) {
                return Err(format!("{line:?} lacks {flag}"));
            }
            if !line.contains(range.as_str()) {
                return Err(format!("{line:?} lacks the range {range}"));
            }
        }
        Names::Key { file, key } => {
            let rest = line
                .strip_prefix(&format!("{}:", file.display()))
                .ok_or_else(|| format!("{line:?} does not start with the file"))?;
            let mut parts = rest.splitn(3, ':');
            let (l, col) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if l.parse::<usize>().is_err() || col.parse::<usize>().is_err() {
                return Err(format!("{line:?} lacks line:col"));
            }
            if !parts.next().unwrap_or("").starts_with(&format!(" {key}: ")) {
                return Err(format!("{line:?} does not name {key}"));
            }
        }
    }
    Ok(false)
}

/// Whether `value` (a number, or a size in KiB/MiB/GiB) lies outside the first `MIN..=MAX` in
/// `range` (`, or 0` after it: 0 is allowed too). `false` where either is not a plain number
/// (durations, NaN): those are left to the checks on the refusal.
fn outside(value: &str, range: &str) -> bool {
    let num = |s: &str| -> Option<f64> {
        let s = s.trim().trim_end_matches(',');
        for (unit, mult) in [("KiB", 1024.0), ("MiB", 1048576.0), ("GiB", 1073741824.0)] {
            if let Some(n) = s.strip_suffix(unit) {
                return n.parse::<f64>().ok().map(|n| n * mult);
            }
        }
        s.parse::<f64>().ok().filter(|n| !n.is_nan())
    };
    let Some((lo, hi)) = range.split_whitespace().find_map(|t| t.split_once("..=")) else {
        return false;
    };
    match (num(value), num(lo), num(hi)) {
        (Some(0.0), _, _) if range.contains(", or 0") => false,
        (Some(v), Some(lo), Some(hi)) => v < lo || v > hi,
        _ => false,
    }
}

#[test]
fn outside_reads_ranges_as_the_refusals_spell_them() {
    assert!(outside("4GiB", "1024..=268435456, or 0") && outside("1", "1024..=268435456, or 0"));
    assert!(!outside("0", "1024..=268435456, or 0") && outside("0", "1024..=268435456"));
    assert!(!outside("256MiB", "1024..=268435456, or 0") && !outside("1KiB", "1024..=268435456"));
    assert!(outside("4294967296", "0..=1024") && outside("-1", "0..=1024") && !outside("1024", "0..=1024"));
    assert!(outside("1e-300", "0.001..=10000000") && outside("inf", "0.001..=10000000"));
    assert!(outside("31536001", INTERVAL) && !outside("NaN", "0..=1024") && !outside("8761h", "0s..=8760h0m0s"));
}

/// Runs every case on `workers` threads and checks each outcome; fails listing every case
/// that broke a rule. Returns how many were refused and how many accepted, so a caller can
/// check that both kinds occurred.
fn check_all(cases: Vec<Case>, workers: usize) -> (usize, usize) {
    let total = cases.len();
    let (tx, rx) = crossbeam_channel::bounded::<Case>(total);
    for c in cases {
        tx.send(c).unwrap();
    }
    drop(tx);
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let (mut refused, mut accepted, mut failed) = (0, 0, Vec::new());
                for c in rx.iter() {
                    match run_case(&c).and_then(|r| judge(&c, &r)) {
                        Ok(true) => accepted += 1,
                        Ok(false) => refused += 1,
                        Err(why) => failed.push(format!("{:?}: {why}", c.args)),
                    }
                }
                (refused, accepted, failed)
            })
        })
        .collect();
    let (mut refused, mut accepted, mut failed) = (0, 0, Vec::new());
    for h in handles {
        let (r, a, f) = h.join().unwrap();
        refused += r;
        accepted += a;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "{} of {total} cases failed:\n{}", failed.len(), failed.join("\n"));
    (refused, accepted)
}

/// One case per value of each (flag, range, values) in `flags`, over `base` (flag, value)
/// pairs; the flag under test replaces its base value. A refusal must name the flag and the
/// range.
type Flags<'a> = &'a [(&'a str, &'a str, &'a [&'a str])];

fn flag_cases(prefix: &[&str], base: &[(&str, &str)], flags: Flags<'_>, grace: Duration) -> Vec<Case> {
    let mut cases = Vec::new();
    for (flag, range, values) in flags {
        for v in *values {
            let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            for (f, bv) in base.iter().filter(|(f, _)| f != flag) {
                args.push(f.to_string());
                if !bv.is_empty() {
                    args.push(bv.to_string());
                }
            }
            args.push(flag.to_string());
            args.push(v.to_string());
            let names = Names::Flag { flag: flag.to_string(), range: range.to_string() };
            cases.push(Case { args, value: Some(v.to_string()), names, grace });
        }
    }
    cases
}

#[test]
fn goon_flags_at_their_bounds() {
    with_timeout(T, || {
        let (_closed, addr) = refusing_addr();
        let port = addr.port().to_string();
        let flags: Flags<'_> = &[
            ("--connections", "1..=16777216", COUNTS),
            ("--sleep", "0..=31536000000", COUNTS),
            ("--dial-timeout", "1..=31536000000", COUNTS),
            ("--interval", INTERVAL, COUNTS),
            ("--hold", "0s..=8760h0m0s", DURATIONS),
            ("--rate", "0.001..=10000000", RATES),
            ("--threads", THREADS, COUNTS),
            ("--sndbuf", SOCKBUF, SIZES),
            ("--rcvbuf", SOCKBUF, SIZES),
            ("--socket-mem", "1048576..=1099511627776", SIZES),
        ];
        let base = [("-y", ""), ("--connections", "1"), ("--interval", "1"), ("--threads", "1")];
        let cases = flag_cases(&["goon", "127.0.0.1", &port], &base, flags, Duration::from_secs(10));
        let (refused, accepted) = check_all(cases, 2);
        assert!(refused > 40 && accepted > 10, "refused {refused}, accepted {accepted}");
    });
}

#[test]
fn serve_and_proxy_flags_at_their_bounds() {
    with_timeout(T, || {
        let flags: Flags<'_> = &[
            ("--max-conns", "1..=16777216", COUNTS),
            ("--threads", THREADS, COUNTS),
            ("--interval", INTERVAL, COUNTS),
            ("--sndbuf", SOCKBUF, SIZES),
            ("--rcvbuf", SOCKBUF, SIZES),
        ];
        let base = [("--listen", "127.0.0.1:0"), ("--threads", "1")];
        let mut cases = flag_cases(&["serve"], &base, flags, Duration::from_millis(200));
        let flags: Flags<'_> = &[("--threads", THREADS, COUNTS), ("--timeout", "1ns..=8760h0m0s", DURATIONS)];
        let base = [("--laddr", "127.0.0.1:0"), ("--print-config", "")];
        cases.extend(flag_cases(&["proxy", "127.0.0.1:1"], &base, flags, Duration::from_secs(10)));
        let (refused, accepted) = check_all(cases, 2);
        assert!(refused > 30 && accepted > 10, "refused {refused}, accepted {accepted}");
    });
}

#[test]
fn bp_flags_at_their_bounds() {
    with_timeout(T, || {
        let mut cmd = netforge();
        cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--read-delay", "0", "--threads", "1"]);
        let (_server, addr) = spawn_listening(cmd);
        let server = addr.to_string();
        // The ranges of the keys of the same name (README, conf/bp-*.toml).
        let flags: Flags<'_> = &[
            ("--read-size", "1..=1048576", SIZES),
            ("--read-delay", "0s..=10m0s", DURATIONS),
            ("--rcvbuf", SOCKBUF, SIZES),
            ("--mss", MSS, MSS_VALUES),
            ("--sample-interval", "10ms..=1h0m0s", DURATIONS),
            ("--max-connections", "1..=65536", COUNTS),
            ("--max-message-size", "1024..=67108864", SIZES),
            ("--max-frame-size", "1024..=67108864", SIZES),
            ("--http-head-max", "1024..=65536", SIZES),
            ("--http-head-timeout", "100ms..=1m0s", DURATIONS),
            ("--threads", THREADS, COUNTS),
        ];
        // A small frame limit, so that a message limit within its range is accepted.
        let base = [("--listen", "127.0.0.1:0"), ("--threads", "1"), ("--max-frame-size", "1KiB")];
        let mut cases = flag_cases(&["bp", "server"], &base, flags, Duration::from_millis(200));
        let flags: Flags<'_> = &[
            ("--payload-size", "1..=16777216", SIZES),
            ("--rate", "0..=1000000", COUNTS),
            ("--total", "0..=9223372036854775807", COUNTS),
            ("--duration", "0s..=24h0m0s", DURATIONS),
            ("--connections", "1..=10000", COUNTS),
            ("--sndbuf", SOCKBUF, SIZES),
            ("--notsent-lowat", "1024..=268435456", SIZES),
            ("--mss", MSS, MSS_VALUES),
            ("--sample-interval", "10ms..=1h0m0s", DURATIONS),
            // At least --sample-interval, at most 1h.
            ("--stats-interval", "1h0m0s", DURATIONS),
        ];
        // A total, so that --duration 0 is a run, not a clash (the duration still ends it).
        let base = [
            ("--server", server.as_str()),
            ("--duration", "300ms"),
            ("--payload-size", "1KiB"),
            ("--total", "1000000"),
        ];
        cases.extend(flag_cases(&["bp", "client"], &base, flags, Duration::from_millis(500)));
        let (refused, accepted) = check_all(cases, 2);
        assert!(refused > 80 && accepted > 20, "refused {refused}, accepted {accepted}");
    });
}

/// A scratch directory for config files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("netforge-limits-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One case per TOML value of each key: `render(key, value)` writes the file text.
fn file_cases(
    dir: &Scratch,
    prefix: &str,
    args: impl Fn(&Path) -> Vec<String>,
    keys: &[&str],
    render: impl Fn(&str, &str) -> String,
    grace: Duration,
) -> Vec<Case> {
    let mut cases = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        for (v, value) in TOML_VALUES.iter().enumerate() {
            let file = dir.write(&format!("{prefix}-k{k}v{v}.toml"), &render(key, value));
            cases.push(Case {
                args: args(&file),
                value: None,
                names: Names::Key { file, key: key.to_string() },
                grace,
            });
        }
    }
    cases
}

#[test]
fn lb_toml_keys_at_their_bounds() {
    with_timeout(T, || {
        let dir = Scratch::new("lb");
        let keys = [
            "threads",
            "max_connections",
            "retries",
            "buffer_size",
            "pipe_size",
            "drain_timeout",
            "timeouts.connect",
            "timeouts.max_lifetime",
            "health.interval",
            "health.rise",
            "health.jitter_pct",
            "health.passive_fall",
            "listener[0].max_connections",
            "backend[0].weight",
        ];
        let render = |key: &str, value: &str| {
            let (mut top, mut listener, mut backend, mut table) =
                (String::new(), String::new(), String::new(), String::new());
            match key.split_once('.') {
                Some(("listener[0]", k)) => listener = format!("{k} = {value}\n"),
                Some(("backend[0]", k)) => backend = format!("{k} = {value}\n"),
                Some((t, k)) => table = format!("[{t}]\n{k} = {value}\n"),
                None => top = format!("{key} = {value}\n"),
            }
            format!(
                "{top}[[listener]]\naddress = \"127.0.0.1:0\"\n{listener}[[backend]]\naddress = \"127.0.0.1:1\"\n{backend}{table}"
            )
        };
        let args = |f: &Path| ["proxy", "--print-config", "--conf", f.to_str().unwrap()].map(String::from).to_vec();
        let cases = file_cases(&dir, "lb", args, &keys, render, Duration::from_secs(10));
        let (refused, accepted) = check_all(cases, 2);
        assert!(refused > 60 && accepted > 5, "refused {refused}, accepted {accepted}");
    });
}

#[test]
fn bp_toml_keys_at_their_bounds() {
    with_timeout(T, || {
        let mut cmd = netforge();
        cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--read-delay", "0", "--threads", "1"]);
        let (_server, addr) = spawn_listening(cmd);
        let dir = Scratch::new("bp");
        let server_keys = [
            "read_size",
            "read_delay",
            "rcvbuf",
            "mss",
            "sample_interval",
            "max_connections",
            "max_message_size",
            "max_frame_size",
            "http_head_max",
            "http_head_timeout",
        ];
        let args = |f: &Path| {
            ["bp", "server", "--threads", "1", "--listen", "127.0.0.1:0", "--conf", f.to_str().unwrap()]
                .map(String::from)
                .to_vec()
        };
        let mut cases =
            file_cases(&dir, "server", args, &server_keys, |k, v| format!("{k} = {v}\n"), Duration::from_millis(200));
        let client_keys = [
            "payload_size",
            "rate",
            "total",
            "duration",
            "connections",
            "sndbuf",
            "notsent_lowat",
            "mss",
            "sample_interval",
            "stats_interval",
        ];
        let render = |k: &str, v: &str| {
            let mut text = format!("server = \"{addr}\"\n");
            for (base, bv) in [("duration", "\"300ms\""), ("payload_size", "1024")] {
                if k != base {
                    text.push_str(&format!("{base} = {bv}\n"));
                }
            }
            text + &format!("{k} = {v}\n")
        };
        let args = |f: &Path| ["bp", "client", "--conf", f.to_str().unwrap()].map(String::from).to_vec();
        cases.extend(file_cases(&dir, "client", args, &client_keys, render, Duration::from_millis(500)));
        let (refused, accepted) = check_all(cases, 2);
        assert!(refused > 80 && accepted > 5, "refused {refused}, accepted {accepted}");
    });
}

/// Not-a-file config paths, in every role that takes one: each is refused at once with one line.
#[test]
fn config_paths_that_are_not_regular_files_are_refused_at_once() {
    with_timeout(Duration::from_secs(300), || {
        let (mut failed, mut n) = (Vec::new(), 0);
        let dir = Scratch::new("paths");
        let fifo = dir.0.join("fifo.toml");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let big = dir.0.join("big.toml");
        std::fs::File::create(&big).unwrap().set_len((16 << 20) + 1).unwrap();
        let targets: [(&Path, &str); 4] = [
            (Path::new("/dev/zero"), "a character device"),
            (&fifo, "a FIFO"),
            (&dir.0, "a directory"),
            (&big, "larger than the 16777216-byte (16 MiB) limit"),
        ];
        for (path, what) in targets {
            for role in [&["proxy"][..], &["bp", "server"], &["bp", "client"]] {
                let mut args: Vec<String> = role.iter().map(|s| s.to_string()).collect();
                args.extend(["--conf".to_string(), path.to_str().unwrap().to_string()]);
                let started = Instant::now();
                let names = Names::Flag { flag: String::new(), range: String::new() };
                let c = Case { args: args.clone(), value: None, names, grace: Duration::ZERO };
                let want = format!("netforge: {}: cannot read: {what}", path.display());
                n += 1;
                let outcome = run_case(&c).and_then(|r| match r {
                    Ran { started: true, .. } => Err("started".to_string()),
                    Ran { code: 1, stderr, .. } if stderr.len() == 1 && stderr[0].starts_with(&want) => Ok(()),
                    Ran { code, stderr, .. } => Err(format!("exit {code}, stderr {stderr:?}, want {want:?}")),
                });
                let took = started.elapsed();
                match outcome {
                    Ok(()) if took >= Duration::from_secs(10) => failed.push(format!("{args:?}: took {took:?}")),
                    Ok(()) => {}
                    Err(e) => failed.push(format!("{args:?}: {e} (after {took:?})")),
                }
            }
        }
        assert!(failed.is_empty(), "{} of {n} cases failed:\n{}", failed.len(), failed.join("\n"));
    });
}

/// `-i 0` means the same in goon, serve and bp client: no status lines at all, only the final
/// report. Each role is also run with `-i 1`, which must print them, so the check can fail.
#[test]
fn interval_zero_means_no_status_lines_in_every_role() {
    with_timeout(Duration::from_secs(120), || {
        // Lines before the report's first `--- ` header that are not the banner.
        let status_lines = |out: &str, banner: &str| {
            out.lines().take_while(|l| !l.starts_with("--- ")).filter(|l| !l.starts_with(banner)).count()
        };
        // goon against its built-in sink, holding long enough for one interval.
        for (i, want_some) in [("0", false), ("1", true)] {
            let (code, out, err) = crate::util::run(&["goon", "-c", "2", "--hold", "1500ms", "-i", i], EXIT);
            assert_eq!(code, 0, "{out}{err}");
            let n = status_lines(&out, "netforge goon:");
            assert_eq!(n > 0, want_some, "goon -i {i}: {n} status lines\n{out}");
        }
        // serve: a client connects, which changes what a status line would say.
        let start = |i: &str| {
            let mut cmd = netforge();
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--threads", "1", "-i", i]);
            let (p, addr) = spawn_listening(cmd);
            let c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            (p, c)
        };
        let (quiet, _c0) = start("0");
        let (chatty, _c1) = start("1");
        let line = chatty.line(Duration::from_secs(10));
        assert!(line.contains("accepted") || line.contains("active"), "serve -i 1: {line}");
        // The -i 1 server has printed; give the -i 0 one more than an interval on top.
        assert!(quiet.lines.recv_timeout(Duration::from_millis(1500)).is_err(), "serve -i 0 printed a status line");
        drop((quiet, chatty));
        // bp client against a bp server.
        let mut cmd = netforge();
        cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--threads", "1"]);
        let (_server, addr) = spawn_listening(cmd);
        let server = addr.to_string();
        for (i, want_some) in [("0", false), ("1", true)] {
            let args = ["bp", "client", "--server", &server, "--duration", "2500ms", "-i", i];
            let (code, out, err) = crate::util::run(&args, EXIT);
            assert_eq!(code, 0, "{out}{err}");
            let n = status_lines(&out, "netforge bp client:");
            assert_eq!(n > 0, want_some, "bp client -i {i}: {n} status lines\n{out}");
        }
    });
}

/// The usage line at the end of a one-line error is the one `--help` prints, in every role.
#[test]
fn error_usage_line_matches_help() {
    with_timeout(Duration::from_secs(60), || {
        let roles: [(&[&str], &str); 5] = [
            (&["goon"], "--connections"),
            (&["serve"], "--max-conns"),
            (&["proxy"], "--threads"),
            (&["bp", "server"], "--max-connections"),
            (&["bp", "client"], "--connections"),
        ];
        for (role, flag) in roles {
            let mut help: Vec<&str> = role.to_vec();
            help.push("--help");
            let (code, out, _) = crate::util::run(&help, EXIT);
            assert_eq!(code, 0);
            let usage =
                out.lines().find_map(|l| l.strip_prefix("Usage: ")).unwrap_or_else(|| panic!("{out}")).to_string();
            // A value clap refuses, and one the role's own checks refuse.
            let mut bad: Vec<&str> = role.to_vec();
            bad.extend([flag, "0"]);
            let (code, _, err) = crate::util::run(&bad, EXIT);
            assert_eq!((code, err.lines().count()), (1, 1), "{bad:?}: {err}");
            assert!(err.trim_end().ends_with(&format!("; usage: {usage} (see --help)")), "{bad:?}: {err} vs {usage}");
        }
        let (code, _, err) = crate::util::run(&["goon", "127.0.0.1"], EXIT);
        assert_eq!((code, err.lines().count()), (1, 1), "{err}");
        assert!(
            err.contains("missing <port>") && err.contains("; usage: netforge goon [OPTIONS] [HOST] [PORT]"),
            "{err}"
        );
    });
}

//! Throughput of the backpressure lab's client against a fast reader, side by side with
//! `iperf3` on the same loopback, in one run with interleaved rounds.
//!
//! (a) TCP: `bp client --rate 0` (1 MiB payloads, one connection) against
//!     `bp server --read-delay 0 --read-size 256KiB --rcvbuf 0` (kernel buffer autotuning, as
//!     iperf3 has), versus `iperf3 -c 127.0.0.1 -t SECS -J` against `iperf3 -s`. Both are sender-
//!     side numbers (bytes the socket accepted / run time); the ratio netforge/iperf3 has a
//!     target of ≥ 0.9×.
//! (b) WebSocket: binary messages per second for 1 KiB and 64 KiB payloads against a
//!     WebSocket fast reader (messages = raw bytes written / wire size of one masked frame).
//!
//! Without `iperf3` on the PATH part (a) prints a skip line for the comparison (install:
//! `apt-get install -y iperf3`). Medians of the rounds are printed as a table.
//!
//! Run: `cargo bench --bench bp_throughput`. Knobs (environment; a bad value is a one-line
//! error and exit status 2 before anything runs):
//! - `BP_BENCH_RUNS`: rounds, 1..=50, default 3;
//! - `BP_BENCH_SECS`: seconds per TCP measurement, 1..=600, default 5 (WebSocket runs last 3 s);
//! - `NETFORGE_BIN_BASE=/path/to/another/netforge`: that binary's `bp client` runs too, in the
//!   same rounds against the same servers, as a `netforge-base` row (to compare a build before
//!   and after a change); a path that is not a file is an error.

#[path = "knobs.rs"]
mod knobs;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
/// Longest wait for a child's first output line or its exit.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const TARGET_RATIO: f64 = 0.9;
const WS_SECS: u64 = 3;

/// A child process killed on drop, so no server outlives the bench.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with piped stdout and returns it with the first stdout line that contains
/// `needle` (bounded by [`START_TIMEOUT`]); later lines are drained on a thread.
fn spawn_until(mut cmd: Command, needle: &'static str) -> (Kid, String) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Kid(cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded::<String>(1);
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && line.contains(needle) {
                sent = tx.send(line).is_ok();
            }
        }
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| panic!("no {needle:?} line from {cmd:?}"));
    (child, line)
}

fn bp_server(protocol: &str) -> (Kid, SocketAddr) {
    let mut cmd = Command::new(BIN);
    cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--threads", "1", "--protocol", protocol])
        .args(["--read-delay", "0", "--read-size", "256KiB", "--rcvbuf", "0"])
        .env("RUST_LOG", "error");
    let (kid, line) = spawn_until(cmd, "listening on ");
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected bp server line: {line}"));
    (kid, addr)
}

/// Runs `bp client` and returns (bytes written, seconds of the run).
fn bp_client(
    bin: &str,
    addr: SocketAddr,
    protocol: &str,
    payload: &str,
    secs: u64,
    json: &std::path::Path,
) -> (u64, f64) {
    let t0 = Instant::now();
    let status = Command::new(bin)
        .args(["bp", "client", "--server", &addr.to_string(), "--protocol", protocol, "--rate", "0"])
        .args(["--payload-size", payload, "--duration", &format!("{secs}s"), "--json"])
        .arg(json)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("run netforge bp client");
    assert!(status.success(), "bp client exited with {status}");
    let elapsed = t0.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let bytes = v["final"]["bytes_written"].as_u64().unwrap();
    // The run lasts `secs` (writing stops then); process start-up is not part of it.
    let secs = (secs as f64).min(elapsed);
    (bytes, secs)
}

fn have_iperf3() -> bool {
    Command::new("iperf3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// `iperf3 -s` on 127.0.0.1. iperf3 cannot report a port it picked, so a free port is found by
/// binding port 0 and closing it; a lost race shows as a failed start and is retried.
fn iperf3_server() -> Option<(Kid, u16)> {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut cmd = Command::new("iperf3");
        // --forceflush: iperf3 block-buffers a piped stdout, hiding the "listening" line.
        cmd.args(["-s", "--forceflush", "-B", "127.0.0.1", "-p", &port.to_string()]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = Kid(cmd.spawn().ok()?);
        let stdout = child.0.stdout.take()?;
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && line.contains("Server listening") {
                    sent = tx.send(()).is_ok();
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(5)).is_ok() {
            return Some((child, port));
        }
    }
    None
}

/// One `iperf3 -c` run; sender-side bits/s.
fn iperf3_client(port: u16, secs: u64) -> Option<f64> {
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", &secs.to_string(), "-J"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if let Some(e) = v["error"].as_str() {
        eprintln!("iperf3: {e}");
        return None;
    }
    v["end"]["sum_sent"]["bits_per_second"].as_f64()
}

/// Wire bytes of one masked binary frame carrying `payload` bytes (client → server).
fn ws_frame(payload: u64) -> u64 {
    let len = match payload {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    };
    2 + len + 4 + payload
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn gbits(bps: f64) -> String {
    format!("{:.2} Gbit/s", bps / 1e9)
}

fn main() {
    // `cargo bench` passes --bench; the knobs are environment variables.
    let runs: usize = knobs::num("BP_BENCH_RUNS", 1..=50, 3);
    let secs: u64 = knobs::num("BP_BENCH_SECS", 1..=600, 5);
    let base = knobs::bin_base();
    let json = std::env::temp_dir().join(format!("netforge-bp-bench-{}.json", std::process::id()));
    let (_tcp_srv, tcp_addr) = bp_server("tcp");
    let (_ws_srv, ws_addr) = bp_server("websocket");
    let iperf = if have_iperf3() { iperf3_server() } else { None };
    if iperf.is_none() {
        println!(
            "skipped: iperf3 comparison (iperf3 not installed or its server did not start; apt-get install -y iperf3)"
        );
    }
    let t0 = Instant::now();
    let (mut ours, mut theirs, mut ws1k, mut ws64k) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut b_tcp, mut b_ws1k, mut b_ws64k) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs {
        let (bytes, s) = bp_client(BIN, tcp_addr, "tcp", "1MiB", secs, &json);
        let bps = bytes as f64 * 8.0 / s;
        eprintln!("round {round}: netforge bp client tcp {}", gbits(bps));
        ours.push(bps);
        if let Some(b) = &base {
            let (bytes, s) = bp_client(b, tcp_addr, "tcp", "1MiB", secs, &json);
            let bps = bytes as f64 * 8.0 / s;
            eprintln!("round {round}: netforge-base bp client tcp {}", gbits(bps));
            b_tcp.push(bps);
        }
        if let Some((_, port)) = &iperf {
            match iperf3_client(*port, secs) {
                Some(b) => {
                    eprintln!("round {round}: iperf3 {}", gbits(b));
                    theirs.push(b);
                }
                None => eprintln!("round {round}: iperf3 run failed"),
            }
        }
        for (payload, text, out, b_out) in
            [(1024u64, "1KiB", &mut ws1k, &mut b_ws1k), (65536, "64KiB", &mut ws64k, &mut b_ws64k)]
        {
            let (bytes, s) = bp_client(BIN, ws_addr, "websocket", text, WS_SECS, &json);
            let msgs = bytes as f64 / ws_frame(payload) as f64 / s;
            eprintln!("round {round}: websocket {text} {msgs:.0} msg/s ({})", gbits(bytes as f64 * 8.0 / s));
            out.push(msgs);
            if let Some(b) = &base {
                let (bytes, s) = bp_client(b, ws_addr, "websocket", text, WS_SECS, &json);
                let msgs = bytes as f64 / ws_frame(payload) as f64 / s;
                eprintln!("round {round}: netforge-base websocket {text} {msgs:.0} msg/s");
                b_out.push(msgs);
            }
        }
    }
    drop(iperf);
    let _ = std::fs::remove_file(&json);

    println!(
        "\nbp_throughput: {runs} interleaved rounds, medians, {secs} s per TCP run, {WS_SECS} s per WebSocket run ({:.0} s total)",
        t0.elapsed().as_secs_f64()
    );
    println!("| measurement | netforge | iperf3 | ratio netforge/iperf3 |");
    println!("|---|---|---|---|");
    let ours_m = median(ours).unwrap_or(0.0);
    match median(theirs) {
        Some(t) => {
            let ratio = ours_m / t;
            println!("| TCP, 1 connection, loopback | {} | {} | {ratio:.2}x |", gbits(ours_m), gbits(t));
            println!(
                "target: TCP throughput >= {TARGET_RATIO}x iperf3: {} ({ratio:.2}x)",
                if ratio >= TARGET_RATIO { "met" } else { "NOT met" }
            );
        }
        None => {
            println!("| TCP, 1 connection, loopback | {} | skipped | - |", gbits(ours_m));
            println!("target: TCP throughput >= {TARGET_RATIO}x iperf3: skipped (no iperf3 result)");
        }
    }
    for (name, payload, v) in [("1 KiB", 1024u64, ws1k), ("64 KiB", 65536, ws64k)] {
        let m = median(v).unwrap_or(0.0);
        println!(
            "| WebSocket {name} messages | {m:.0} msg/s ({}) | - | - |",
            gbits(m * ws_frame(payload) as f64 * 8.0)
        );
    }
    if base.is_some() {
        let t = median(b_tcp).unwrap_or(0.0);
        println!(
            "| netforge-base: TCP, 1 connection, loopback | {} (÷ netforge {:.2}x) | - | - |",
            gbits(t),
            t / ours_m
        );
        for (name, v) in [("1 KiB", b_ws1k), ("64 KiB", b_ws64k)] {
            println!("| netforge-base: WebSocket {name} messages | {:.0} msg/s | - | - |", median(v).unwrap_or(0.0));
        }
    }
}

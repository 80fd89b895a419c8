//! TLS handshakes per second and handshake latency at N connections (`GOON_TLS_BENCH_N`,
//! default 1000): `netforge goon --tls --insecure` against tcpkali `--ssl` (from
//! `../shared/peers/bin`, or `GOON_BENCH_PEERS`; a skip line when absent), with the same
//! number of client threads (`GOON_TLS_BENCH_THREADS`, default 1: goon `--threads`, tcpkali
//! `--workers`), against the same server: a fresh `netforge serve --tls --threads 1` per run
//! (self-signed certificate, TLS 1.3, rustls). Neither client verifies the certificate chain
//! (tcpkali never does; goon is given `--insecure`); both check the handshake signatures.
//!
//! Timed from the server's side, the same for both: from the tool's launch until serve's own
//! count of completed handshakes reaches N (its status line every 10 ms, each line
//! timestamped as it arrives), so handshakes/s = N / that time, process start included for
//! both. 300 ms later the count is read again: anything above N is overshoot (tcpkali opens
//! more connections than asked for under `--ssl`). The handshake latency (TCP connect done →
//! handshake done) is goon's own HdrHistogram from its `--json`; tcpkali reports no such
//! figure (its `--latency-connect` is the TCP connect), so its column is empty.
//!
//! `GOON_TLS_BENCH_ROUNDS` (default 5) interleaved rounds, the order of the tools alternating;
//! medians and the range (min..max). Run: `cargo bench --bench goon_tls` (well under a
//! minute here). Every wait is bounded; all traffic is on loopback.
//!
//! Knobs (environment; a bad value is a one-line error and exit status 2 before anything runs):
//! `GOON_TLS_BENCH_N` 1..=19000 (default 1000), `GOON_TLS_BENCH_ROUNDS` 1..=50 (default 5),
//! `GOON_TLS_BENCH_THREADS` 1..=64 (default 1), `GOON_BENCH_PEERS` a directory (default
//! `../shared/peers/bin`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
/// Longest wait for one run to reach N handshakes on the server.
const RUN_DEADLINE: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_millis(300);

#[path = "knobs.rs"]
mod knobs;

struct Serve {
    child: Child,
    port: u16,
    /// (arrival, handshakes so far) per status line.
    rx: mpsc::Receiver<(Instant, u64)>,
    latest: u64,
}

impl Serve {
    fn start() -> Serve {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--tls", "--threads", "1", "-i", "10ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .split("listening on 127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("serve said: {first}"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let n = line
                    .split("tls handshakes ")
                    .nth(1)
                    .and_then(|r| r.split(',').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if let Some(n) = n {
                    if tx.send((Instant::now(), n)).is_err() {
                        return;
                    }
                }
            }
        });
        Serve { child, port, rx, latest: 0 }
    }

    /// When the server's count first reached `n`, waiting at most until `deadline`.
    fn reached(&mut self, n: u64, deadline: Instant) -> Option<Instant> {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((at, count)) => {
                    self.latest = count;
                    if count >= n {
                        return Some(at);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// The count after `d` more.
    fn count_after(&mut self, d: Duration) -> u64 {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok((_, c)) => self.latest = c,
                Err(_) => break,
            }
        }
        self.latest
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Row {
    secs: Vec<f64>,
    overshoot: Vec<u64>,
    /// goon's own p50, p99, max handshake latency (µs).
    lat: Vec<[f64; 3]>,
    failed: u64,
}

fn run_one(tool: &str, kali: &str, n: u64, threads: u64, json: &std::path::Path, row: &mut Row) {
    let mut serve = Serve::start();
    let port = serve.port.to_string();
    let t0 = Instant::now();
    let mut child = if tool == "goon" {
        Command::new(BIN)
            .args(["goon", "127.0.0.1", &port, "--tls", "--insecure", "-c", &n.to_string(), "-s", "0", "-y", "-i", "0"])
            .args(["--threads", &threads.to_string(), "--json", json.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn goon")
    } else {
        Command::new(kali)
            .args(["--ssl", "-c", &n.to_string(), "--connect-rate", "100000", "-w", &threads.to_string(), "-T", "30s"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tcpkali")
    };
    let at = serve.reached(n, t0 + RUN_DEADLINE);
    let after = serve.count_after(SETTLE);
    if tool == "goon" {
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    match at {
        Some(at) => {
            row.secs.push(at.duration_since(t0).as_secs_f64());
            row.overshoot.push(after.saturating_sub(n));
        }
        None => row.failed += 1,
    }
    if tool == "goon" {
        if let Ok(text) = std::fs::read_to_string(json) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let h = &v["tls"]["handshake_time"];
                let f = |k: &str| h[k].as_f64().unwrap_or(f64::NAN);
                row.lat.push([f("p50_us"), f("p99_us"), f("max_us")]);
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let n: u64 = knobs::num("GOON_TLS_BENCH_N", 1..=19_000, 1000);
    let rounds: u64 = knobs::num("GOON_TLS_BENCH_ROUNDS", 1..=50, 5);
    let threads: u64 = knobs::num("GOON_TLS_BENCH_THREADS", 1..=64, 1);
    let peers = std::env::var("GOON_BENCH_PEERS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peers/bin").to_string());
    let kali = format!("{peers}/tcpkali");
    let mut tools = vec!["goon"];
    if std::path::Path::new(&kali).exists() {
        tools.push("tcpkali");
    } else {
        println!("goon_tls: skipping tcpkali: {kali} not found (set GOON_BENCH_PEERS)");
    }
    println!("goon_tls: {n} TLS connections, {threads} client thread(s), {rounds} rounds, server: netforge serve --tls --threads 1");
    let json = std::env::temp_dir().join(format!("netforge-goon-tls-bench-{}.json", std::process::id()));
    let mut rows: Vec<Row> = tools.iter().map(|_| Row::default()).collect();
    for r in 0..rounds as usize {
        for k in 0..tools.len() {
            let i = (k + r) % tools.len();
            run_one(tools[i], &kali, n, threads, &json, &mut rows[i]);
        }
    }
    let _ = std::fs::remove_file(&json);
    println!(
        "{:<8} {:>12} {:>22} {:>14} {:>10} {:>28} {:>7}",
        "tool", "time to N", "range", "handshakes/s", "overshoot", "handshake p50/p99/max (goon)", "failed"
    );
    let mut rates = Vec::new();
    for (tool, row) in tools.iter().zip(rows.iter_mut()) {
        let (lo, hi) = row.secs.iter().fold((f64::INFINITY, 0.0f64), |(a, b), s| (a.min(*s), b.max(*s)));
        let t = median(&mut row.secs);
        let rate = n as f64 / t;
        rates.push(rate);
        let mut over: Vec<f64> = row.overshoot.iter().map(|o| *o as f64).collect();
        let lat = if row.lat.is_empty() {
            "-".to_string()
        } else {
            let col = |i: usize| median(&mut row.lat.iter().map(|l| l[i]).collect::<Vec<_>>()) / 1000.0;
            format!("{:.2}/{:.2}/{:.2} ms", col(0), col(1), col(2))
        };
        println!(
            "{:<8} {:>10.1}ms {:>9.1}..{:>7.1} ms {:>14.0} {:>10.0} {:>28} {:>7}",
            tool,
            t * 1e3,
            lo * 1e3,
            hi * 1e3,
            rate,
            median(&mut over),
            lat,
            row.failed
        );
    }
    if rates.len() == 2 {
        println!("goon/tcpkali handshakes/s ratio (medians): {:.2}", rates[0] / rates[1]);
    }
}

//! goon at the scale this machine allows: 19,000 concurrent connections (the hard limit here is
//! 20,000 descriptors per process) against `netforge serve` in another process, dialed with
//! `--sleep 0` from two source addresses.
//!
//! Measures, per run: time until all are established, connections/s, peak RSS and userspace RSS
//! per held connection ((RSS when all were dialed − RSS at start) / N). Side by side in the same
//! run, interleaved, a baseline stressor: a Python asyncio client that opens and holds the same N
//! connections (from two other source addresses, also closing with RST) (the common "write it quickly" approach), with the ratios printed. Reference
//! figures measured earlier on this class of machine for tools that are not packaged here
//! (tcpgoon ≈ 13 KiB per connection and 1.7 s for 15,000; tcpkali ≈ 0.74 KiB per connection) are
//! printed beside them as fixed references.
//!
//! Run: `cargo bench --bench goon_scale` (env `GOON_BENCH_N` to change N, `GOON_BENCH_RUNS` for
//! the number of interleaved rounds, default 3).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netforge");

const BASELINE_PY: &str = r#"
import asyncio, os, sys, time, resource, socket, struct
def rss_kib():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
async def main(host, port, n):
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:]*2)
    start_rss = rss_kib()
    t0 = time.monotonic()
    srcs = ['127.0.0.4', '127.0.0.5']
    async def one(i):
        try:
            return await asyncio.open_connection(host, port, local_addr=(srcs[i % 2], 0))
        except Exception as e:
            return None
    conns = await asyncio.gather(*(one(i) for i in range(n)))
    dt = time.monotonic() - t0
    ok = sum(1 for c in conns if c)
    print(f"{ok} {dt:.6f} {start_rss} {rss_kib()}", flush=True)
    for c in conns:
        if c:
            # RST, like netforge's --linger-rst: no TIME_WAIT carried into the next round.
            c[1].get_extra_info('socket').setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            c[1].transport.abort()
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"#;

struct Sample {
    established: u64,
    secs: f64,
    rss_start_kib: u64,
    rss_held_kib: u64,
    rss_peak_kib: u64,
}

impl Sample {
    fn per_conn_bytes(&self) -> f64 {
        (self.rss_held_kib.saturating_sub(self.rss_start_kib) * 1024) as f64 / self.established.max(1) as f64
    }
    fn rate(&self) -> f64 {
        self.established as f64 / self.secs.max(1e-9)
    }
}

fn start_serve() -> (std::process::Child, u16, crossbeam_channel::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--interval", "1", "--max-conns", "19900"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start netforge serve");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1024);
    std::thread::spawn(move || {
        for l in reader.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let port = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected serve output: {line}"));
    (child, port, rx)
}

/// Waits (bounded) until the server's stats line says every connection of the last round is
/// gone, so one round's teardown never slows the next one's accepts.
fn wait_idle(lines: &crossbeam_channel::Receiver<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(l) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if l.starts_with("serve: active 0,") {
            return;
        }
    }
    eprintln!("warning: server still had connections after 60 s");
}

fn run_netforge(port: u16, n: u64, json: &std::path::Path) -> Sample {
    let status = Command::new(BIN)
        .args(["goon", "127.0.0.1", &port.to_string(), "-c", &n.to_string(), "-s", "0", "-y", "--linger-rst"])
        .args(["--source-ip", "127.0.0.2-127.0.0.3", "--json", json.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run netforge goon");
    if status.code() != Some(0) {
        eprintln!("netforge goon exited with {status}: see its JSON error counts below");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    if v["counts"]["error"].as_u64().unwrap_or(0) > 0 {
        eprintln!("errors by cause: {}", v["errors"]);
    }
    Sample {
        established: v["counts"]["total_established"].as_u64().unwrap(),
        secs: v["dial_phase_s"].as_f64().unwrap(),
        rss_start_kib: v["memory"]["rss_start_kib"].as_u64().unwrap(),
        rss_held_kib: v["memory"]["rss_dial_done_kib"].as_u64().unwrap(),
        rss_peak_kib: v["memory"]["rss_peak_kib"].as_u64().unwrap(),
    }
}

fn run_baseline(port: u16, n: u64) -> Option<Sample> {
    let out = Command::new("python3")
        .args(["-c", BASELINE_PY, "127.0.0.1", &port.to_string(), &n.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    if f.len() != 4 {
        return None;
    }
    Some(Sample {
        established: f[0] as u64,
        secs: f[1],
        rss_start_kib: f[2] as u64,
        rss_held_kib: f[3] as u64,
        rss_peak_kib: f[3] as u64,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let n: u64 = std::env::var("GOON_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(19_000);
    let runs: usize = std::env::var("GOON_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let (mut serve, port, lines) = start_serve();
    let json = std::env::temp_dir().join(format!("netforge-goon-bench-{}.json", std::process::id()));
    let mut ours = Vec::new();
    let mut base = Vec::new();
    let t0 = Instant::now();
    for round in 0..runs {
        let s = run_netforge(port, n, &json);
        eprintln!(
            "round {round}: netforge {} established in {:.3}s, {:.0} B/conn",
            s.established,
            s.secs,
            s.per_conn_bytes()
        );
        ours.push(s);
        wait_idle(&lines);
        if let Some(b) = run_baseline(port, n) {
            eprintln!(
                "round {round}: asyncio baseline {} established in {:.3}s, {:.0} B/conn",
                b.established,
                b.secs,
                b.per_conn_bytes()
            );
            base.push(b);
        }
        wait_idle(&lines);
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = std::fs::remove_file(&json);

    let ours_secs = median(ours.iter().map(|s| s.secs).collect());
    let ours_rate = median(ours.iter().map(Sample::rate).collect());
    let ours_per = median(ours.iter().map(Sample::per_conn_bytes).collect());
    let ours_peak = ours.iter().map(|s| s.rss_peak_kib).max().unwrap_or(0);
    println!("\ngoon_scale: N = {n}, {runs} interleaved rounds, medians ({:.0}s total)", t0.elapsed().as_secs_f64());
    println!("| tool | all established in | conn/s | RSS per held conn | peak RSS |");
    println!("|---|---|---|---|---|");
    println!("| netforge goon | {ours_secs:.3} s | {ours_rate:.0} | {ours_per:.0} B | {ours_peak} KiB |");
    if !base.is_empty() {
        let b_secs = median(base.iter().map(|s| s.secs).collect());
        let b_rate = median(base.iter().map(Sample::rate).collect());
        let b_per = median(base.iter().map(Sample::per_conn_bytes).collect());
        let b_peak = base.iter().map(|s| s.rss_peak_kib).max().unwrap_or(0);
        println!("| python asyncio baseline | {b_secs:.3} s | {b_rate:.0} | {b_per:.0} B | {b_peak} KiB |");
        println!(
            "ratios netforge/baseline: time {:.2}x, conn/s {:.2}x, RSS per conn {:.3}x",
            ours_secs / b_secs,
            ours_rate / b_rate,
            ours_per / b_per.max(1.0)
        );
    } else {
        println!("(python3 baseline unavailable)");
    }
    println!("references (not run here): tcpgoon 13 KiB/conn and 1.7 s for 15,000; tcpkali 0.74 KiB/conn");
    println!(
        "targets: <= 512 B per connection: {} ({ours_per:.0} B); all {n} established in < 1.7 s: {} ({ours_secs:.3} s)",
        if ours_per <= 512.0 { "met" } else { "NOT met" },
        if ours_secs < 1.7 { "met" } else { "NOT met" }
    );
}

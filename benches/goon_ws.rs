//! Held WebSocket connections: `netforge goon --ws /` against tcpkali `--ws` (from
//! `../shared/peers/bin`, or `GOON_WS_PEERS`; a skip line when absent), both against one
//! `netforge serve --mode ws`, with the same number of threads (`GOON_WS_THREADS`, default 2:
//! goon `--threads`, tcpkali `--workers`).
//!
//! Each run opens N connections (`GOON_WS_N`, default 19,000: the hard limit of 20,000
//! descriptors per process allows that many, and the tool and the server are separate
//! processes) from 127.0.0.2, upgrades them all and holds them. Every run gets a fresh server
//! in a fresh network namespace (`unshare --net`, as root; the tool joins it with `nsenter`), so
//! no run inherits another's TIME_WAIT sockets or port bindings (tcpkali `bind()`s its source
//! ports, which keeps them from every other connect for the TIME_WAIT period) and no other
//! traffic on the host counts. Without root or `unshare` (or with `GOON_WS_NETNS=off`) the runs
//! share the host's namespace, each from its own source address (127.0.0.10, .11, ...), and the
//! server is stopped first, so the TIME_WAIT sockets stay on its side. Measured:
//! - time to all upgraded (and to 90% of N): from the tool's launch until the *server* has
//!   answered N upgrades (its `upgraded` count, printed every 20 ms), not the tool's own claim;
//! - userspace bytes per held connection: (the tool's VmRSS with N held − its VmRSS with one
//!   held, in a run of N = 1) / (held − 1), both read 500 ms after the server's count was
//!   reached, or at the deadline with the connections the server holds by then (the
//!   one-connection run is the tool's start-up cost: threads, tables, histograms);
//! - the tool's peak RSS (`wait4`).
//!
//! `GOON_WS_ROUNDS` (default 3) interleaved rounds, the tools visited in a rotated order; the
//! table shows medians, the range and the ratios. tcpkali runs at `--connect-rate 20000`
//! (`GOON_WS_KALI_RATE`), goon with `-s 0`. A run that does not reach N within 20 s is reported
//! as such, with what it held by then. Run: `cargo bench --bench goon_ws` (about a minute here). All traffic is on loopback.
//!
//! Knobs (environment; a bad value is a one-line error and exit status 2 before anything runs):
//! `GOON_WS_N` 1..=19500 (default 19000), `GOON_WS_ROUNDS` 1..=50 (default 3), `GOON_WS_THREADS`
//! 1..=64 (default 2), `GOON_WS_KALI_RATE` 1..=1000000 (default 20000), `GOON_WS_NETNS` `on`
//! (default) or `off`, `GOON_WS_PEERS` a directory (default `../shared/peers/bin`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
const RUN_DEADLINE: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(2);

#[path = "knobs.rs"]
mod knobs;

/// `netforge serve --mode ws`, its latest `upgraded` and `active` counts read from its lines.
struct Server {
    child: Child,
    port: u16,
    netns: bool,
    upgraded: Arc<AtomicU64>,
    active: Arc<AtomicU64>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> Option<u64> {
    line.split(", ").find_map(|f| f.trim_start_matches("serve: ").strip_prefix(name)?.trim().parse().ok())
}

fn start_server(threads: u64, netns: bool) -> Server {
    let t = threads.to_string();
    let serve = ["serve", "--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "20ms", "--max-conns", "19990"];
    let mut cmd = if netns {
        let mut c = Command::new("unshare");
        // unshare and sh exec: the child's pid is serve's, and /proc/<pid>/ns/net the namespace.
        c.args(["--net", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\"", BIN]).args(serve);
        c
    } else {
        let mut c = Command::new(BIN);
        c.args(serve);
        c
    };
    let mut child = cmd
        .args(["--threads", &t])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netforge serve");
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("serve's first line");
    let port = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected serve output: {line:?}"));
    let (upgraded, active) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (u, a) = (upgraded.clone(), active.clone());
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(v) = field(&line, "upgraded ") {
                u.store(v, Ordering::Relaxed);
            }
            if let Some(v) = field(&line, "active ") {
                a.store(v, Ordering::Relaxed);
            }
        }
    });
    Server { child, port, netns, upgraded, active }
}

/// Reaps `pid` (WNOHANG unless `block`): Some(peak RSS KiB) once it has exited.
fn reap(pid: u32, block: bool) -> Option<u64> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are to live locals.
    let r = unsafe { libc::wait4(pid as i32, &mut status, if block { 0 } else { libc::WNOHANG }, &mut ru) };
    (r == pid as i32).then_some(ru.ru_maxrss as u64)
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Seconds until the server had answered N upgrades, and 90% of N.
    secs: Option<f64>,
    secs90: Option<f64>,
    /// The server's open connections when the RSS was read (N, or what the tool had by the
    /// deadline), and that RSS.
    held: u64,
    rss_held_kib: Option<u64>,
    peak_kib: u64,
    /// The server's open connections before the run (0 unless the last one did not drain).
    active_before: u64,
}

/// Runs `prog args` (in the server's namespace) until the server has upgraded `n`, reads its
/// RSS, then stops the server and the tool.
fn measure(srv: Server, prog: &str, args: &[String], n: u64) -> Sample {
    let base = srv.upgraded.load(Ordering::Relaxed);
    let active_before = srv.active.load(Ordering::Relaxed);
    let t0 = Instant::now();
    // Reaped with wait4 below (for its rusage), not through `Child`.
    #[allow(clippy::zombie_processes)]
    let mut cmd = if srv.netns {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", srv.child.id())).arg("--").arg(prog);
        c
    } else {
        Command::new(prog)
    };
    let pid = cmd
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"))
        .id();
    let (mut secs, mut secs90) = (None, None);
    let mut exited = None;
    while t0.elapsed() < RUN_DEADLINE && exited.is_none() {
        let got = srv.upgraded.load(Ordering::Relaxed).saturating_sub(base);
        if secs90.is_none() && got * 10 >= n * 9 {
            secs90 = Some(t0.elapsed().as_secs_f64());
        }
        if got >= n {
            secs = Some(t0.elapsed().as_secs_f64());
            break;
        }
        exited = reap(pid, false);
        std::thread::sleep(POLL);
    }
    std::thread::sleep(SETTLE);
    // At N, or at the deadline with what the tool holds by then.
    let rss_held_kib = vm_rss_kib(pid);
    let held = srv.active.load(Ordering::Relaxed).saturating_sub(active_before);
    // The server goes first: its side of each connection closes first and keeps the
    // TIME_WAIT state, not the tool's source ports.
    drop(srv);
    let peak_kib = exited.unwrap_or_else(|| {
        // SAFETY: kill(2) on our own unreaped child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        reap(pid, true).unwrap_or(0)
    });
    Sample { secs, secs90, held, rss_held_kib, peak_kib, active_before }
}

struct Tool {
    name: &'static str,
    prog: String,
}

fn args(tool: &Tool, port: u16, n: u64, threads: u64, source: &str, kali_rate: u64) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (n, t, port) = (n.to_string(), threads.to_string(), port.to_string());
    if tool.name == "netforge goon" {
        s(&["goon", "127.0.0.1", &port, "-c", &n, "-s", "0", "--ws", "/", "--threads", &t])
            .into_iter()
            .chain(s(&["--source-ip", source, "--hold", "600s", "-y", "-i", "0"]))
            .collect()
    } else {
        let rate = kali_rate.to_string();
        s(&["--ws", "-c", &n, "--connect-rate", &rate, "-w", &t, "--source-ip", source, "-T", "600s"])
            .into_iter()
            .chain(s(&[&format!("127.0.0.1:{port}")]))
            .collect()
    }
}

/// Whether this process can give each run its own network namespace.
fn netns_usable(wanted: bool) -> bool {
    if !wanted {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let ok = |prog: &str, args: &[&str]| {
        Command::new(prog).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    ok("unshare", &["--net", "true"]) && ok("nsenter", &["--version"]) && ok("ip", &["-V"])
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => v[l / 2],
        l => (v[l / 2 - 1] + v[l / 2]) / 2.0,
    }
}

fn spread(v: &[f64], fmt: &dyn Fn(f64) -> String) -> String {
    let mut s = v.to_vec();
    if s.is_empty() {
        return "-".into();
    }
    let m = median(&mut s);
    format!("{} ({}..{})", fmt(m), fmt(s[0]), fmt(s[s.len() - 1]))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = knobs::num("GOON_WS_N", 1..=19_500, 19_000);
    let rounds: u64 = knobs::num("GOON_WS_ROUNDS", 1..=50, 3);
    let threads: u64 = knobs::num("GOON_WS_THREADS", 1..=64, 2);
    let kali_rate: u64 = knobs::num("GOON_WS_KALI_RATE", 1..=1_000_000, 20_000);
    let netns_wanted = knobs::on("GOON_WS_NETNS");
    let _ = netforge::sys::raise_nofile();
    let peers = std::env::var("GOON_WS_PEERS")
        .unwrap_or_else(|_| format!("{}/../shared/peers/bin", env!("CARGO_MANIFEST_DIR")));
    let mut tools = vec![Tool { name: "netforge goon", prog: BIN.to_string() }];
    let kali = format!("{peers}/tcpkali");
    if std::path::Path::new(&kali).is_file() {
        tools.push(Tool { name: "tcpkali", prog: kali });
    } else {
        println!("tcpkali: skipped ({kali} not found)");
    }
    println!(
        "goon_ws: {n} held WebSocket connections per run, {rounds} rounds, {threads} threads per tool, \
         server netforge serve --mode ws ({threads} threads)"
    );
    let netns = netns_usable(netns_wanted);
    println!(
        "{}",
        if netns {
            "each run: a fresh server in a fresh network namespace, connections from 127.0.0.2"
        } else {
            "each run: a fresh server in the host's network namespace (not root, no unshare/nsenter, or \
             GOON_WS_NETNS=off), connections from a source address of its own"
        }
    );
    let mut next_source = 10u8;
    let mut source = || {
        if netns {
            return "127.0.0.2".to_string();
        }
        let s = format!("127.0.0.{next_source}");
        next_source = next_source.wrapping_add(1).max(10);
        s
    };
    // Start-up cost of each tool: one connection, held.
    let mut base_kib = Vec::new();
    for t in &tools {
        let srv = start_server(threads, netns);
        let a = args(t, srv.port, 1, threads, &source(), kali_rate);
        let s = measure(srv, &t.prog, &a, 1);
        base_kib.push(s.rss_held_kib);
    }
    let mut samples: Vec<Vec<Sample>> = tools.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds as usize {
        for k in 0..tools.len() {
            let i = (k + round) % tools.len();
            let t = &tools[i];
            let srv = start_server(threads, netns);
            let a = args(t, srv.port, n, threads, &source(), kali_rate);
            let s = measure(srv, &t.prog, &a, n);
            println!(
                "  round {} {:<14} {} (90% in {})  held {}  RSS held {} KiB  peak {} KiB  (server held {} before)",
                round + 1,
                t.name,
                s.secs.map_or(format!("did not reach {n} in {}s", RUN_DEADLINE.as_secs()), |v| format!("{v:.3}s")),
                s.secs90.map_or("-".into(), |v| format!("{v:.3}s")),
                s.held,
                s.rss_held_kib.map_or("-".into(), |v| v.to_string()),
                s.peak_kib,
                s.active_before
            );
            samples[i].push(s);
        }
    }
    println!();
    println!(
        "{:<14} {:>26} {:>26} {:>28} {:>22}",
        "tool", "time to all upgraded (s)", "time to 90% upgraded (s)", "userspace B per connection", "peak RSS (MiB)"
    );
    let mut medians = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let secs: Vec<f64> = samples[i].iter().filter_map(|s| s.secs).collect();
        let secs90: Vec<f64> = samples[i].iter().filter_map(|s| s.secs90).collect();
        let per: Vec<f64> = samples[i]
            .iter()
            .filter(|s| s.held > 1)
            .filter_map(|s| Some((s.rss_held_kib?.saturating_sub(base_kib[i]?) * 1024) as f64 / (s.held - 1) as f64))
            .collect();
        let peak: Vec<f64> = samples[i].iter().map(|s| s.peak_kib as f64 / 1024.0).collect();
        println!(
            "{:<14} {:>26} {:>26} {:>28} {:>22}",
            t.name,
            spread(&secs, &|v| format!("{v:.3}")),
            spread(&secs90, &|v| format!("{v:.3}")),
            spread(&per, &|v| format!("{v:.0}")),
            spread(&peak, &|v| format!("{v:.1}"))
        );
        let (mut a, mut b, mut c, mut d) = (secs.clone(), per.clone(), peak.clone(), secs90.clone());
        medians.push((median(&mut a), median(&mut b), median(&mut c), secs.len(), median(&mut d)));
    }
    if let [g, k] = medians[..] {
        println!(
            "ratio goon/tcpkali (medians): time to all {}, time to 90% {:.2}, bytes per connection {:.2}, peak RSS {:.2}",
            if k.3 > 0 { format!("{:.2}", g.0 / k.0) } else { "- (tcpkali never got all)".into() },
            g.4 / k.4,
            g.1 / k.1,
            g.2 / k.2
        );
    }
    for (t, m) in tools.iter().zip(&medians) {
        if (m.3 as u64) < rounds {
            println!("{}: {} of {rounds} runs reached {n} upgraded", t.name, m.3);
        }
    }
}

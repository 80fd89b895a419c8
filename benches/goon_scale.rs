//! goon against the stressors its users would pick, at the scale this machine allows, timed
//! from the server's side.
//!
//! Tools: `netforge goon`, tcpkali and tcpgoon (from `../shared/peers/bin`, or
//! `GOON_BENCH_PEERS`; a skip line for each one absent), and with `NETFORGE_BIN_BASE=/path/to/
//! another/netforge` that binary's goon as one more row, interleaved in the same rounds (to
//! compare a build before and after a change). Each opens N connections (`GOON_BENCH_N`, default
//! `1000,5000,19000`; 19,000 is what the hard limit of 20,000 descriptors per process allows)
//! to one `netforge serve`, with no pause between dials (goon `-s 0`, tcpgoon `-s 0`, tcpkali at
//! the `--connect-rate` found below).
//!
//! Every run gets a fresh network namespace (`unshare --net`, as root; `GOON_BENCH_NETNS=off` or
//! not root: the host's, and the TIME_WAIT state one run leaves is the next one's): serve starts
//! in it and the tool joins it (`nsenter --net`), so every tool starts from the same source-port
//! state and no other traffic on the host counts. Time is from the tool's launch until the
//! *server's* kernel has completed N handshakes (`PassiveOpens` of `/proc/<serve>/net/snmp`,
//! polled every millisecond), not the tool's own claim (tcpkali says "Ramped up" while it is
//! still opening more). 300 ms later the server's count is read again: anything above N is
//! overshoot. Peak RSS and CPU seconds (user + system) are the tool's, from `wait4`; beside the
//! peak, the private (anonymous) and file-backed RSS read from `/proc/PID/status` once the server
//! had all N (file-backed pages are the binary's shared text, which grows with code size). The
//! TIME_WAIT count in the namespace (`/proc/<serve>/net/sockstat`) is recorded before each run.
//!
//! Scenarios (`GOON_BENCH_ONLY` selects tools and scenarios by name, comma-separated: `goon`,
//! `base`, `tcpkali`, `tcpgoon`, `default`, `one`, `two`, `crowded`, `search`):
//! - `default`: no source flag (the kernel's source, 127.0.0.1);
//! - `one`: `--source-ip 127.0.0.1` (tcpgoon has no such flag: same as default, not repeated);
//! - `two`: two source addresses, 127.0.0.2 and 127.0.0.3 (tcpgoon: not possible);
//! - `crowded`: default flags at the largest N, after `GOON_BENCH_CROWD` (default 20,000) short
//!   connections from 127.0.0.1 to the server, closed by the client first, left their TIME_WAIT
//!   sockets on the default source, as earlier runs do.
//!
//! tcpkali runs twice per case: at `--connect-rate 20000` (`GOON_BENCH_KALI_FAST`; it
//! overshoots, which the table shows) and, in the `default` scenario only, at its fastest exact
//! rate (`search`): the fastest of 100k, 50k, 20k, 10k, 5k, 2k and 1k per second at which one run
//! of 1,000 connections does not overshoot (`GOON_BENCH_KALI_RATE` skips the search). tcpkali
//! opens one connection of its own before the run (N = 1 gives 2 handshakes at any rate), so its
//! exact count is N + 1 and only beyond that is overshoot; given `--source-ip` it opens none,
//! and its exact count is N.
//!
//! `GOON_BENCH_ROUNDS` (default 3) interleaved rounds, each visiting the tools in a rotated
//! order; the table shows medians and the range. Run: `cargo bench --bench goon_scale` (about
//! 7 minutes here with every row; a run that never gets all N stops after 15 s). Every loop is
//! bounded in count and time; all traffic is on loopback.
//!
//! Knobs (environment; a bad value is a one-line error and exit status 2 before anything runs):
//! - `GOON_BENCH_N`: comma list of N, each 1..=19500, default `1000,5000,19000`;
//! - `GOON_BENCH_ROUNDS`: 1..=50, default 3;
//! - `GOON_BENCH_ONLY`: comma list of the tool and scenario names above, default all;
//! - `GOON_BENCH_CROWD`: 0..=60000, default 20000 (more than the ephemeral port range would not
//!   sit in TIME_WAIT at once);
//! - `GOON_BENCH_KALI_FAST`: 1..=1000000, default 20000;
//! - `GOON_BENCH_KALI_RATE`: 0..=1000000, default 0 (= search);
//! - `GOON_BENCH_NETNS`: `on` (default) or `off`;
//! - `GOON_BENCH_PEERS`: a directory, default `../shared/peers/bin`;
//! - `NETFORGE_BIN_BASE`: a netforge binary; a path that is not a file is an error.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "knobs.rs"]
mod knobs;

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
/// Longest wait for one run to reach N on the server.
const RUN_DEADLINE: Duration = Duration::from_secs(15);
/// After N is reached: how long the server's count is watched for overshoot.
const SETTLE: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(1);
const KALI_RATES: [u32; 7] = [100_000, 50_000, 20_000, 10_000, 5_000, 2_000, 1_000];
const SEARCH_N: u64 = 1_000;

const TOOLS: [&str; 4] = ["goon", "base", "tcpkali", "tcpgoon"];
const SCENARIOS: [&str; 5] = ["default", "one", "two", "crowded", "search"];
/// Largest N per run: 19,000 is what the hard limit of 20,000 descriptors per process allows.
const N_MAX: u64 = 19_500;

/// Whether the `GOON_BENCH_ONLY` list (`None`: unset = everything) selects `name`, given the
/// `kind` of names it is one of: a list that names none of that kind selects all of that kind.
fn selected(only: &Option<Vec<String>>, name: &str, kind: &[&str]) -> bool {
    let Some(names) = only else { return true };
    !names.iter().any(|n| kind.contains(&n.as_str())) || names.iter().any(|n| n == name)
}

/// `netforge serve` in its own network namespace (or the host's).
struct Server {
    child: Child,
    pid: u32,
    port: u16,
    netns: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(netns: bool) -> Server {
    let serve = ["serve", "--listen", "127.0.0.1:0", "--interval", "0", "--max-conns", "19990", "--threads", "2"];
    let mut cmd = if netns {
        let mut c = Command::new("unshare");
        // unshare and sh exec: the child's pid is serve's, and /proc/<pid>/net is the namespace's.
        c.args(["--net", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\"", BIN]).args(serve);
        c
    } else {
        let mut c = Command::new(BIN);
        c.args(serve);
        c
    };
    let mut child = cmd
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netforge serve");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let port = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected serve output: {line:?}"));
    let pid = child.id();
    Server { child, pid, port, netns }
}

/// `PassiveOpens` of the server's namespace: handshakes its kernel completed.
fn passive_opens(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).unwrap_or_default();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(head), Some(vals)) = (tcp.next(), tcp.next()) else { return 0 };
    let i = head.split_whitespace().position(|f| f == "PassiveOpens").unwrap_or(6);
    vals.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// TIME_WAIT sockets in the server's namespace.
fn time_wait(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/sockstat")).unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap_or("");
    let f: Vec<&str> = line.split_whitespace().collect();
    f.iter().position(|x| *x == "tw").and_then(|i| f.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Leaves TIME_WAIT sockets on 127.0.0.1 in the server's namespace: up to `n` connections to
/// the server (at most 20 s), each closed by this side first. Returns how many were made.
fn crowd(srv: &Server, n: usize) -> usize {
    let (pid, port, netns) = (srv.pid, srv.port, srv.netns);
    std::thread::spawn(move || {
        if netns {
            let Ok(f) = std::fs::File::open(format!("/proc/{pid}/ns/net")) else { return 0 };
            // SAFETY: `f` is an open namespace file; setns only moves this thread (which
            // ends below) into that network namespace.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return 0;
            }
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut made = 0;
        while made < n && Instant::now() < deadline {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => {
                    made += 1;
                    drop(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        // Let the last FIN/ACK exchanges finish so the sockets are in TIME_WAIT, not FIN_WAIT.
        std::thread::sleep(Duration::from_millis(200));
        made
    })
    .join()
    .unwrap_or(0)
}

#[derive(Clone, Debug)]
struct Sample {
    /// Seconds until the server had N handshakes; None when it never got there.
    secs: Option<f64>,
    accepted: u64,
    peak_kib: u64,
    /// Private (anonymous) and file-backed resident KiB once the server had all N, read from
    /// `/proc/PID/status` while the tool still held them: peak RSS also counts the binary's
    /// shared, clean pages, which grow with code size and not with the connections.
    anon_kib: u64,
    file_kib: u64,
    cpu_s: f64,
    tw_before: u64,
}

/// `RssAnon` and `RssFile` of a live process, KiB (zeros once it is gone).
fn rss_split(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// Reaps `pid` (WNOHANG unless `block`): Some((peak RSS KiB, CPU s)) once it has exited.
fn reap(pid: u32, block: bool) -> Option<(u64, f64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are to live locals.
    let r = unsafe { libc::wait4(pid as i32, &mut status, if block { 0 } else { libc::WNOHANG }, &mut ru) };
    if r != pid as i32 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some((ru.ru_maxrss as u64, tv(ru.ru_utime) + tv(ru.ru_stime)))
}

/// Runs `prog args` (in the server's namespace) and times it from the server's side.
fn measure(srv: &Server, prog: &str, args: &[String], n: u64) -> Sample {
    let mut cmd = if srv.netns {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", srv.pid)).arg("--").arg(prog);
        c
    } else {
        Command::new(prog)
    };
    cmd.args(args).env("RUST_LOG", "error").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let tw_before = time_wait(srv.pid);
    let base = passive_opens(srv.pid);
    let t0 = Instant::now();
    // Reaped with wait4 below (for its rusage), not through `Child`.
    #[allow(clippy::zombie_processes)]
    let pid = cmd.spawn().unwrap_or_else(|e| panic!("spawn {prog}: {e}")).id();
    let mut secs = None;
    let mut exited = None;
    let mut last_progress = (0, Instant::now());
    let (mut anon_kib, mut file_kib) = (0, 0);
    while t0.elapsed() < RUN_DEADLINE {
        let got = passive_opens(srv.pid) - base;
        if got >= n {
            secs = Some(t0.elapsed().as_secs_f64());
            (anon_kib, file_kib) = rss_split(pid);
            break;
        }
        if got != last_progress.0 {
            last_progress = (got, Instant::now());
        }
        if exited.is_none() {
            exited = reap(pid, false);
        }
        // The tool is gone and the server saw nothing new for a second: it will not get there.
        if exited.is_some() && last_progress.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(POLL);
    }
    let settle = Instant::now() + SETTLE;
    while Instant::now() < settle {
        if exited.is_none() {
            let (a, f) = rss_split(pid);
            anon_kib = anon_kib.max(a);
            file_kib = file_kib.max(f);
            exited = reap(pid, false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let accepted = passive_opens(srv.pid) - base;
    let (peak_kib, cpu_s) = exited.unwrap_or_else(|| {
        // SAFETY: kill(2) on our own unreaped child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        reap(pid, true).unwrap_or((0, 0.0))
    });
    Sample { secs, accepted, peak_kib, anon_kib, file_kib, cpu_s, tw_before }
}

#[derive(Clone)]
struct Tool {
    /// Row label.
    name: String,
    /// Selector name (`goon`, `base`, `tcpkali`, `tcpgoon`).
    key: &'static str,
    prog: String,
    /// tcpkali's `--connect-rate`, and whether this row runs in the `default` scenario only.
    rate: u32,
    default_only: bool,
}

impl Tool {
    /// Handshakes the server sees from an exact run of N in `scenario`: tcpkali opens one of
    /// its own first, unless it is given source addresses (`--source-ip`).
    fn exact(&self, scenario: &str, n: u64) -> u64 {
        if self.key == "tcpkali" && sources(scenario).is_some_and(|s| s.is_empty()) {
            n + 1
        } else {
            n
        }
    }

    /// Arguments for N connections to `port` in `scenario`; None where the tool cannot do it.
    fn args(&self, scenario: &str, port: u16, n: u64) -> Option<Vec<String>> {
        if self.default_only && scenario != "default" {
            return None;
        }
        let kali_rate = self.rate;
        let n = n.to_string();
        let port_s = port.to_string();
        let mut a: Vec<String> = match self.key {
            "goon" | "base" => {
                ["goon", "127.0.0.1", &port_s, "-c", &n, "-s", "0", "-y", "-i", "0"].map(String::from).into()
            }
            "tcpkali" => {
                let rate = kali_rate.to_string();
                ["-c", &n, "--connect-rate", &rate, "-T", "60s", "--connect-timeout", "5s"].map(String::from).into()
            }
            "tcpgoon" => {
                ["run", "-y", "-c", &n, "-s", "0", "-i", "3600", "127.0.0.1", &port_s].map(String::from).into()
            }
            _ => return None,
        };
        let sources = sources(scenario)?;
        match self.key {
            "tcpgoon" if !sources.is_empty() => return None,
            "goon" | "base" if !sources.is_empty() => {
                a.push("--source-ip".into());
                a.push(sources.join(","));
            }
            "tcpkali" => {
                for s in sources {
                    a.push("--source-ip".into());
                    a.push((*s).into());
                }
                a.push(format!("127.0.0.1:{port}"));
            }
            _ => {}
        }
        Some(a)
    }
}

/// The source addresses a scenario gives the tools (none: the kernel's choice), or None for a
/// scenario of another name.
fn sources(scenario: &str) -> Option<&'static [&'static str]> {
    match scenario {
        "default" | "crowded" => Some(&[]),
        "one" => Some(&["127.0.0.1"]),
        "two" => Some(&["127.0.0.2", "127.0.0.3"]),
        _ => None,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ns_all: Vec<u64> = knobs::nums("GOON_BENCH_N", 1..=N_MAX, &[1000, 5000, 19_000]);
    let rounds: usize = knobs::num("GOON_BENCH_ROUNDS", 1..=50, 3);
    let crowd_n: usize = knobs::num("GOON_BENCH_CROWD", 0..=60_000, 20_000);
    let kali_fast: u32 = knobs::num("GOON_BENCH_KALI_FAST", 1..=1_000_000, 20_000);
    let kali_rate_env: u32 = knobs::num("GOON_BENCH_KALI_RATE", 0..=1_000_000, 0);
    let only = knobs::words("GOON_BENCH_ONLY", &[&TOOLS[..], &SCENARIOS[..]].concat());
    let netns_wanted = knobs::on("GOON_BENCH_NETNS");
    let base = knobs::bin_base();
    let peers = std::env::var("GOON_BENCH_PEERS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peers/bin").to_string());
    let _ = netforge::sys::raise_nofile();
    let ns = netns_usable(netns_wanted);
    let ns_line = if ns {
        "each run in a fresh network namespace"
    } else {
        "all runs in the host's network namespace (not root, no unshare/nsenter, or GOON_BENCH_NETNS=off): \
         the server's counts include other traffic"
    };

    let mut tools =
        vec![Tool { name: "netforge goon".into(), key: "goon", prog: BIN.into(), rate: 0, default_only: false }];
    if let Some(p) = base {
        tools.push(Tool {
            name: format!("netforge goon (base {p})"),
            key: "base",
            prog: p,
            rate: 0,
            default_only: false,
        });
    }
    for peer in ["tcpkali", "tcpgoon"] {
        let p = format!("{peers}/{peer}");
        if std::path::Path::new(&p).is_file() {
            if peer == "tcpkali" {
                let t = Tool {
                    name: format!("tcpkali --connect-rate {kali_fast}"),
                    key: "tcpkali",
                    prog: p,
                    rate: kali_fast,
                    default_only: false,
                };
                tools.push(t.clone());
                // The exact-rate row; its rate is found below.
                tools.push(Tool { default_only: true, rate: 0, ..t });
            } else {
                tools.push(Tool { name: peer.into(), key: "tcpgoon", prog: p, rate: 0, default_only: false });
            }
        } else {
            println!("goon_scale: skipped {peer}: {p} not found (GOON_BENCH_PEERS names its directory)");
        }
    }
    tools.retain(|t| selected(&only, t.key, &TOOLS));
    let t_start = Instant::now();
    println!(
        "goon_scale: N = {ns_all:?}, {rounds} interleaved rounds, medians (min-max); {ns_line}; time = launch until the \
         server's kernel completed N handshakes (PassiveOpens); peak RSS and CPU from wait4"
    );

    // tcpkali's fastest rate without overshoot.
    let mut kali_rate = kali_rate_env;
    if let Some(kali) = tools.iter().find(|t| t.key == "tcpkali").cloned() {
        if kali_rate == 0 && selected(&only, "search", &SCENARIOS) {
            for rate in KALI_RATES {
                let srv = start_server(ns);
                let probe = Tool { rate, default_only: false, ..kali.clone() };
                let args = probe.args("default", srv.port, SEARCH_N).unwrap();
                let s = measure(&srv, &probe.prog, &args, probe.exact("default", SEARCH_N));
                println!(
                    "  tcpkali search: --connect-rate {rate}: the server saw {} handshakes for {SEARCH_N} connections (+1 \
                     of its own), all in {}",
                    s.accepted,
                    s.secs.map_or("never".into(), |t| format!("{t:.3} s"))
                );
                if s.secs.is_some() && s.accepted <= probe.exact("default", SEARCH_N) {
                    kali_rate = rate;
                    break;
                }
            }
        }
        if kali_rate == 0 {
            println!("goon_scale: tcpkali exact rate: not searched (GOON_BENCH_ONLY without `search`) or none found; no exact-rate row");
            tools.retain(|t| !(t.key == "tcpkali" && t.default_only));
        } else {
            println!(
                "goon_scale: tcpkali's fastest --connect-rate without overshoot: {kali_rate}/s (of {KALI_RATES:?}, \
                 {SEARCH_N} connections; or GOON_BENCH_KALI_RATE)"
            );
            for t in tools.iter_mut().filter(|t| t.key == "tcpkali" && t.default_only) {
                t.rate = kali_rate;
                t.name = format!("tcpkali --connect-rate {kali_rate} (fastest exact)");
            }
        }
    }

    let largest = ns_all.iter().copied().max().unwrap_or(0);
    // (scenario, n) pairs in order; crowded only at the largest N.
    let mut cases: Vec<(&str, u64)> = Vec::new();
    for &n in &ns_all {
        for sc in ["default", "one", "two"] {
            if selected(&only, sc, &SCENARIOS) {
                cases.push((sc, n));
            }
        }
    }
    if selected(&only, "crowded", &SCENARIOS) && largest > 0 {
        cases.push(("crowded", largest));
    }
    // samples[case][tool]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); tools.len()]; cases.len()];
    for round in 0..rounds {
        for (ci, &(sc, n)) in cases.iter().enumerate() {
            let k = tools.len().max(1);
            for j in 0..k {
                let ti = (j + round + ci) % k;
                let tool = &tools[ti];
                if tool.args(sc, 0, n).is_none() {
                    continue;
                }
                let srv = start_server(ns);
                let Some(args) = tool.args(sc, srv.port, n) else { continue };
                if sc == "crowded" {
                    let made = crowd(&srv, crowd_n);
                    if made < crowd_n {
                        eprintln!("  crowd: only {made} of {crowd_n} connections");
                    }
                }
                let s = measure(&srv, &tool.prog, &args, tool.exact(sc, n));
                println!(
                    "  round {round} {sc} N={n} {}: {} accepted {} peak {} KiB (private {} KiB) cpu {:.3} s (TIME_WAIT before: {})",
                    tool.name,
                    s.secs.map_or("not all".into(), |t| format!("{t:.3} s,")),
                    s.accepted,
                    s.peak_kib,
                    s.anon_kib,
                    s.cpu_s,
                    s.tw_before
                );
                samples[ci][ti].push(s);
            }
        }
    }

    println!();
    println!(
        "| N | sources | tool | all N accepted by the server in (s) | server accepted (max) | peak RSS (MiB) | \
         private / file-backed RSS at N (MiB) | CPU (s) | TIME_WAIT before | time / goon's |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (ci, &(sc, n)) in cases.iter().enumerate() {
        let goon_t = {
            let mut v: Vec<f64> = samples[ci][0].iter().filter_map(|s| s.secs).collect();
            median(&mut v)
        };
        for (ti, tool) in tools.iter().enumerate() {
            let ss = &samples[ci][ti];
            if ss.is_empty() {
                continue;
            }
            let mut t: Vec<f64> = ss.iter().filter_map(|s| s.secs).collect();
            let missed = ss.len() - t.len();
            let time = if t.is_empty() {
                format!("never all within {} s", RUN_DEADLINE.as_secs())
            } else {
                let (lo, hi) = (t.iter().copied().fold(f64::MAX, f64::min), t.iter().copied().fold(0.0, f64::max));
                let m = median(&mut t);
                let miss = if missed > 0 { format!(", {missed} run(s) never all") } else { String::new() };
                format!("{m:.3} ({lo:.3}-{hi:.3}){miss}")
            };
            let max_acc = ss.iter().map(|s| s.accepted).max().unwrap_or(0);
            let over = if max_acc > tool.exact(sc, n) { format!("{max_acc} (overshoot)") } else { max_acc.to_string() };
            let mut rss: Vec<f64> = ss.iter().map(|s| s.peak_kib as f64 / 1024.0).collect();
            let mut anon: Vec<f64> = ss.iter().map(|s| s.anon_kib as f64 / 1024.0).collect();
            let mut file: Vec<f64> = ss.iter().map(|s| s.file_kib as f64 / 1024.0).collect();
            let mut cpu: Vec<f64> = ss.iter().map(|s| s.cpu_s).collect();
            let mut tw: Vec<f64> = ss.iter().map(|s| s.tw_before as f64).collect();
            let ratio = if ti == 0 || t.is_empty() || !goon_t.is_finite() {
                "".into()
            } else {
                format!("{:.2}x", median(&mut t) / goon_t)
            };
            let sources = match sc {
                "default" => "default (127.0.0.1)",
                "one" => "--source-ip 127.0.0.1",
                "two" => "127.0.0.2, 127.0.0.3",
                _ => "default, crowded",
            };
            let label = &tool.name;
            println!(
                "| {n} | {sources} | {label} | {time} | {over} | {:.1} | {:.1} / {:.1} | {:.3} | {:.0} | {ratio} |",
                median(&mut rss),
                median(&mut anon),
                median(&mut file),
                median(&mut cpu),
                median(&mut tw)
            );
        }
    }
    println!("\ngoon_scale: done in {:.0} s", t_start.elapsed().as_secs_f64());
}

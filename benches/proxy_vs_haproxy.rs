//! netforge proxy against HAProxy and nginx `stream` at equal footing, with `direct` (no proxy)
//! in every round as this machine's limit.
//!
//! Equal footing:
//! - **Congestion control**: every socket of every proxy, load generator and backend uses the
//!   system's default. `PROXY_BENCH_CC` (default `system`; e.g. `system,cubic,bbr`) runs the
//!   whole table once per algorithm: for each, the bench runs in a fresh network namespace
//!   (`unshare --net`, as root) whose `net.ipv4.tcp_congestion_control` is set to it, so nothing
//!   outside the bench changes (an algorithm missing from the host's
//!   `tcp_allowed_congestion_control` is added there for the run and the list restored after).
//!   Without root or unshare everything runs in the host's namespace and only `system` runs.
//! - **Threads**: netforge `threads = 2`, HAProxy `nbthread 2`, nginx `worker_processes 2`.
//! - **Pinning for all or none**: `PROXY_BENCH_PIN` = `off` (default), `on` or `both` (two
//!   tables). Pinned: thread/worker i on CPU i of the first two this process may use (netforge
//!   `cpu_affinity = [A, B]`, HAProxy `cpu-map auto:1/1-2 A B`, nginx `worker_cpu_affinity`).
//!   Load generators and backends are never pinned.
//! - **Defaults otherwise**: netforge as its quick start leaves it (no `congestion`, no
//!   `cpu_affinity`, splice `auto`), HAProxy TCP mode with and without `option splice-request/
//!   splice-response`, nginx `stream` with `proxy_pass`. netforge's own tuning (`congestion =
//!   "cubic"`, `cpu_affinity = [A, B]`) is an extra row, `netforge-tuned`, never the headline.
//!   With `NETFORGE_BIN_BASE=/path/to/another/netforge`, that binary with netforge's default
//!   config is one more row (`netforge-base`), interleaved in the same rounds. The seed
//!   tcp-proxy is not packaged here: a skip line says so.
//!
//! Parts (`PROXY_BENCH_ONLY`, comma-separated: `throughput` = `tput1,tput8,tput64`, `rr` =
//! `rr1,rr1000,rr4000`, `newconn`, `idle`):
//! - iperf3 (3.12: one thread per process) through each proxy with 1, 8 and 64 parallel streams
//!   for `PROXY_BENCH_SECS` (default 2) seconds: Gbit/s and the proxy's CPU seconds per GB;
//! - 64-byte request/response on 1, 1,000 and 4,000 concurrent connections, each connection
//!   sending its next request when the answer is in, from a two-thread mio client, for the same
//!   seconds (the first 10% not counted): ops/s, p50/p99/p99.9 round trip (HdrHistogram) and
//!   the proxy's CPU µs per op;
//! - new connections/s: 4 threads each connect, do one 64-byte round trip and close;
//! - idle memory: the proxy's RSS growth per proxied idle connection at 5,000 and 9,500 (each
//!   did one round trip first, so the backend side is open too), on fresh processes, once.
//!   19,000 proxied connections need 38,000 descriptors in the proxy, past this machine's hard
//!   limit of 20,000 per process, so 9,500 is the most every proxy can hold here.
//!
//! Proxy CPU is utime + stime of the proxy's processes (nginx: master and workers) from
//! /proc/PID/stat. Each proxy has its own echo backend (`netforge serve --mode echo`) so one
//! proxy's TIME_WAIT sockets never sit on the next one's backend 4-tuples. `PROXY_BENCH_ROUNDS`
//! (default 3) interleaved rounds, each visiting the proxies in a rotated order; the table shows
//! each median, the range over rounds, and the fraction of `direct`.
//!
//! Needs `haproxy` and `iperf3` on PATH (nginx is optional: a skip line without it). Run:
//! `cargo bench --bench proxy_vs_haproxy` (about 6 minutes here for one table). Every loop is
//! bounded in count and time; all traffic is on loopback.
//!
//! Knobs (environment; a bad value is a one-line error and exit status 2 before anything runs):
//! - `PROXY_BENCH_SECS`: seconds per measurement, 1..=30, default 2;
//! - `PROXY_BENCH_ROUNDS`: 1..=50, default 3;
//! - `PROXY_BENCH_ONLY`: comma list of `throughput`, `tput1`, `tput8`, `tput64`, `rr`, `rr1`,
//!   `rr1000`, `rr4000`, `newconn`, `idle`; default all;
//! - `PROXY_BENCH_PIN`: `off` (default), `on` or `both`;
//! - `PROXY_BENCH_CC`: comma list of `system` and algorithms in the kernel's
//!   `tcp_available_congestion_control`; default `system`;
//! - `PROXY_BENCH_NETNS`: `on` (default) or `off` (run in the host's namespace, `system` only);
//! - `NETFORGE_BIN_BASE`: a netforge binary; a path that is not a file is an error.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "knobs.rs"]
mod knobs;

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
const MSG: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const RR_THREADS: usize = 2;
/// Longest round trip the latency histogram holds (10 s, in ns); longer ones count as this.
const HIST_MAX_NS: u64 = 10_000_000_000;
const CONN_THREADS: usize = 4;
/// Idle connections held through each proxy. 19,000 proxied connections would need 38,000
/// descriptors in the proxy; this machine's hard limit is 20,000 per process (and root cannot
/// raise it here), so the larger point is the most that limit lets every proxy hold.
const IDLE_COUNTS: [usize; 2] = [5_000, 9_500];
/// Open-file limit the bench asks for (root only, where the container allows it).
const NOFILE_WANT: u64 = 65_536;
/// Env marker of the process that runs inside the namespace, with its algorithm.
const INNER_ENV: &str = "NF_PROXY_BENCH_INNER_CC";
const CC_PATH: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
const CC_ALLOWED_PATH: &str = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
const CC_AVAILABLE_PATH: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";

struct Killed(Child);

impl Drop for Killed {
    /// Kills the process and its descendants (nginx workers outlive a killed master).
    fn drop(&mut self) {
        let kids: Vec<u32> = family(self.0.id()).into_iter().skip(1).collect();
        let _ = self.0.kill();
        let _ = self.0.wait();
        for pid in kids {
            // SAFETY: kill(2) on a pid that was a descendant of our child a moment ago.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Writes `value` to a sysctl file and restores the old value on drop.
struct SysctlGuard {
    path: &'static str,
    old: String,
}

impl SysctlGuard {
    fn set(path: &'static str, value: &str) -> std::io::Result<SysctlGuard> {
        let old = std::fs::read_to_string(path)?.trim().to_string();
        std::fs::write(path, value)?;
        Ok(SysctlGuard { path, old })
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(self.path, &self.old) {
            eprintln!("proxy_vs_haproxy: could not restore {} to {:?}: {e}", self.path, self.old);
        }
    }
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The names `PROXY_BENCH_ONLY` takes: each part, and the groups of parts.
const PARTS: [&str; 10] =
    ["throughput", "tput1", "tput8", "tput64", "rr", "rr1", "rr1000", "rr4000", "newconn", "idle"];

/// The bench's knobs, all read (and checked) first thing in `main`.
struct Knobs {
    /// `PROXY_BENCH_SECS`: seconds per measurement.
    secs: u64,
    /// `PROXY_BENCH_ROUNDS`.
    rounds: usize,
    /// `PROXY_BENCH_ONLY`: `None` = every part.
    only: Option<Vec<String>>,
    /// `PROXY_BENCH_PIN`: `off`, `on` or `both`.
    pin: &'static str,
    /// `PROXY_BENCH_CC`: `system` or algorithms the kernel has.
    ccs: Vec<String>,
    /// `PROXY_BENCH_NETNS` is not `off`.
    netns: bool,
    /// `NETFORGE_BIN_BASE`.
    base: Option<String>,
}

impl Knobs {
    fn read() -> Knobs {
        let available = std::fs::read_to_string(CC_AVAILABLE_PATH).unwrap_or_default();
        let cc_names: Vec<&str> = std::iter::once("system").chain(available.split_whitespace()).collect();
        Knobs {
            secs: knobs::num("PROXY_BENCH_SECS", 1..=30, 2),
            rounds: knobs::num("PROXY_BENCH_ROUNDS", 1..=50, 3),
            only: knobs::words("PROXY_BENCH_ONLY", &PARTS),
            pin: knobs::word("PROXY_BENCH_PIN", &["off", "on", "both"], "off"),
            ccs: knobs::words("PROXY_BENCH_CC", &cc_names).unwrap_or_else(|| vec!["system".into()]),
            netns: knobs::on("PROXY_BENCH_NETNS"),
            base: knobs::bin_base(),
        }
    }

    /// Whether `PROXY_BENCH_ONLY` selects `part` (or its group).
    fn selected(&self, part: &str) -> bool {
        let group = match part {
            "tput1" | "tput8" | "tput64" => "throughput",
            "rr1" | "rr1000" | "rr4000" => "rr",
            p => p,
        };
        self.only.as_ref().is_none_or(|o| o.iter().any(|p| p == part || p == group))
    }
}

/// A port that was free a moment ago (external tools need a number; the race is accepted here).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what}: {addr} not listening within 10 s (see /tmp/nf-bench-*.log)");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `netforge serve --mode echo` and the address it bound.
fn echo_backend() -> (Killed, SocketAddr) {
    let mut c = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "2"])
        .args(["--max-conns", "40000"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn netforge serve");
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("serve said: {line}"));
    (Killed(c), addr)
}

/// One column of the table: a proxy (or `direct`), its addresses and its own echo backend.
struct Px {
    name: String,
    child: Option<Killed>,
    bulk: SocketAddr,
    echo: SocketAddr,
    _backend: Killed,
}

impl Px {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }
}

/// Two CPUs the proxies' threads are pinned to, or `None`.
type Pin = Option<[usize; 2]>;

fn netforge_proxy(name: &str, bin: &str, iperf: SocketAddr, tuned: bool, pin: Pin) -> Px {
    let (backend, echo) = echo_backend();
    let affinity = match (tuned, pin) {
        (_, Some([a, b])) => format!("cpu_affinity = [{a}, {b}]\n"),
        (true, None) => {
            let cpus = netforge::sys::allowed_cpus().unwrap_or_default();
            if cpus.len() >= 2 {
                format!("cpu_affinity = [{}, {}]\n", cpus[0], cpus[1])
            } else {
                String::new()
            }
        }
        _ => String::new(),
    };
    let congestion = if tuned { "congestion = \"cubic\"\n" } else { "" };
    let conf = format!(
        "threads = 2\n{affinity}{congestion}[health]\nenabled = false\n[admin]\naddress = \"\"\n\
         [[listener]]\nname = \"bulk\"\naddress = \"127.0.0.1:0\"\ngroup = \"bulk\"\n\
         [[listener]]\nname = \"echo\"\naddress = \"127.0.0.1:0\"\ngroup = \"echo\"\n\
         [[backend]]\naddress = \"{iperf}\"\ngroup = \"bulk\"\n[[backend]]\naddress = \"{echo}\"\ngroup = \"echo\"\n"
    );
    let path = std::env::temp_dir().join(format!("nf-bench-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, conf).unwrap();
    let mut c = Command::new(bin)
        .arg("proxy")
        .arg("--conf")
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin} proxy: {e}"));
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..20 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(a) = line
            .strip_prefix("netforge proxy: listening on ")
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse::<SocketAddr>().ok())
        {
            addrs.push(a);
            if addrs.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(addrs.len(), 2, "{name}: no listening lines from {bin} proxy");
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    Px { name: name.into(), child: Some(Killed(c)), bulk: addrs[0], echo: addrs[1], _backend: backend }
}

fn haproxy(name: &str, splice: bool, iperf: SocketAddr, pin: Pin) -> Px {
    let (backend, echo) = echo_backend();
    let (pb, pe) = (free_port(), free_port());
    let opts = if splice { "  option splice-request\n  option splice-response\n" } else { "" };
    let cpu_map = pin.map_or(String::new(), |[a, b]| format!("  cpu-map auto:1/1-2 {a} {b}\n"));
    // maxconn 9700 holds the idle part's 9,500 within 20,000 descriptors; with splice, HAProxy
    // also reserves 2 descriptors per pipe (maxpipes, default maxconn / 4), so fewer pipes (64
    // streams need 128).
    let maxpipes = if splice { "  maxpipes 250\n" } else { "" };
    let conf = format!(
        "global\n  nbthread 2\n{cpu_map}  maxconn 9700\n{maxpipes}\
         defaults\n  mode tcp\n  timeout connect 3s\n  timeout client 5m\n  timeout server 5m\n  maxconn 9700\n{opts}\
         frontend fe_bulk\n  bind 127.0.0.1:{pb}\n  default_backend be_bulk\n\
         backend be_bulk\n  server s1 {iperf}\n\
         frontend fe_echo\n  bind 127.0.0.1:{pe}\n  default_backend be_echo\n\
         backend be_echo\n  server s1 {echo}\n"
    );
    let path = std::env::temp_dir().join(format!("nf-bench-{}-{name}.cfg", std::process::id()));
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(path.with_extension("log")).unwrap();
    let c = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn haproxy");
    let bulk: SocketAddr = ([127, 0, 0, 1], pb).into();
    let echo_addr: SocketAddr = ([127, 0, 0, 1], pe).into();
    wait_listening(bulk, name);
    wait_listening(echo_addr, name);
    Px { name: name.into(), child: Some(Killed(c)), bulk, echo: echo_addr, _backend: backend }
}

const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

fn nginx(iperf: SocketAddr, pin: Pin) -> Px {
    let (backend, echo) = echo_backend();
    let (pb, pe) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("nf-bench-{}-nginx", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let affinity = pin.map_or(String::new(), |[a, b]| {
        let mask = |c: usize| format!("{:b}", 1u64 << c);
        format!("worker_cpu_affinity {} {};\n", mask(a), mask(b))
    });
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\n{affinity}worker_rlimit_nofile 20000;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log error;\nload_module {NGINX_STREAM_MODULE};\n\
         events {{ worker_connections 19900; }}\n\
         stream {{\n  server {{ listen 127.0.0.1:{pb}; proxy_pass {iperf}; }}\n  server {{ listen 127.0.0.1:{pe}; proxy_pass {echo}; }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let c = Command::new("nginx")
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let bulk: SocketAddr = ([127, 0, 0, 1], pb).into();
    let echo_addr: SocketAddr = ([127, 0, 0, 1], pe).into();
    wait_listening(bulk, "nginx");
    wait_listening(echo_addr, "nginx");
    Px { name: "nginx".into(), child: Some(Killed(c)), bulk, echo: echo_addr, _backend: backend }
}

/// The process and its descendants (nginx workers, a forking HAProxy).
fn family(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    let mut parents = Vec::new();
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) {
                if let Some(pp) = rest.split_whitespace().nth(1).and_then(|x| x.parse::<u32>().ok()) {
                    parents.push((p, pp));
                }
            }
        }
    }
    for _ in 0..4 {
        for (p, pp) in &parents {
            if out.contains(pp) && !out.contains(p) {
                out.push(*p);
            }
        }
    }
    out
}

/// utime + stime in seconds, summed over the process family (0 for `direct`).
fn cpu_secs(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    // SAFETY: sysconf has no preconditions.
    let tck = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as f64,
        _ => 100.0,
    };
    family(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let rest = s.rsplit_once(") ")?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After "comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / tck
}

fn rss_kib(pid: u32) -> u64 {
    family(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|t| t.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// (bits/s received, bytes received) of one iperf3 client with `streams` parallel streams.
fn iperf(addr: SocketAddr, streams: u32, secs: u64) -> Option<(f64, f64)> {
    let out = Command::new("timeout")
        .arg(format!("{}", secs + 20))
        .arg("iperf3")
        .args(["-c", "127.0.0.1", "-p", &addr.port().to_string(), "-t", &secs.to_string()])
        .args(["-P", &streams.to_string(), "-J"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let r = &v["end"]["sum_received"];
    Some((r["bits_per_second"].as_f64()?, r["bytes"].as_f64()?))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn ping(s: &mut TcpStream, buf: &mut [u8; MSG]) -> std::io::Result<()> {
    s.write_all(buf)?;
    s.read_exact(buf)
}

#[derive(Clone, Copy, Default)]
struct Rr {
    ops: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

/// 64-byte request/response on `conns` connections for `secs` from RR_THREADS mio loops; the
/// first 10% is warm-up. Latencies in µs.
fn rr(addr: SocketAddr, conns: usize, secs: u64) -> Rr {
    let threads = RR_THREADS.min(conns).max(1);
    let run = Duration::from_secs(secs);
    let warm = run / 10;
    // Every thread connects its share first; the clock starts when all are connected.
    let ready = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let share = conns / threads + usize::from(t < conns % threads);
            let ready = ready.clone();
            std::thread::spawn(move || rr_loop(addr, share, &ready, warm, run))
        })
        .collect();
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).unwrap();
    let (mut ops, mut errors) = (0u64, 0u64);
    for h in handles {
        if let Ok((hh, n, e)) = h.join() {
            let _ = hist.add(&hh);
            ops += n;
            errors += e;
        }
    }
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Rr { ops: ops as f64 / (run - warm).as_secs_f64(), p50: q(0.50), p99: q(0.99), p999: q(0.999), errors }
}

/// One client thread: (latency histogram in ns, ops after warm-up, errors).
fn rr_loop(
    addr: SocketAddr,
    conns: usize,
    ready: &std::sync::Barrier,
    warm: Duration,
    run: Duration,
) -> (hdrhistogram::Histogram<u64>, u64, u64) {
    use mio::{Events, Interest, Poll, Token};
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).unwrap();
    let mut poll = Poll::new().unwrap();
    let mut socks: Vec<(mio::net::TcpStream, Instant, usize)> = Vec::with_capacity(conns);
    let mut errors = 0u64;
    let req = [5u8; MSG];
    for _ in 0..conns {
        match connect(addr).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
            Ok(s) => {
                let mut m = mio::net::TcpStream::from_std(s);
                let tok = Token(socks.len());
                if poll.registry().register(&mut m, tok, Interest::READABLE).is_ok() {
                    socks.push((m, Instant::now(), 0));
                } else {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    ready.wait();
    let start = Instant::now();
    let mut ops = 0u64;
    for s in socks.iter_mut() {
        s.1 = Instant::now();
        if s.0.write(&req).map_or(true, |n| n != MSG) {
            errors += 1;
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let end = start + run;
    while Instant::now() < end {
        if poll.poll(&mut events, Some(Duration::from_millis(20))).is_err() {
            break;
        }
        for ev in events.iter() {
            let Some(s) = socks.get_mut(ev.token().0) else { continue };
            loop {
                match s.0.read(&mut buf) {
                    Ok(0) => {
                        errors += 1;
                        break;
                    }
                    Ok(n) => {
                        s.2 += n;
                        while s.2 >= MSG {
                            s.2 -= MSG;
                            let now = Instant::now();
                            if now - start >= warm {
                                let _ = hist.record(((now - s.1).as_nanos() as u64).clamp(1, HIST_MAX_NS));
                                ops += 1;
                            }
                            s.1 = now;
                            if s.0.write(&req).map_or(true, |n| n != MSG) {
                                errors += 1;
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
        }
    }
    (hist, ops, errors)
}

/// Connections/s (connect, 64 B round trip, close) from CONN_THREADS threads for `secs`.
fn newconn(addr: SocketAddr, secs: u64) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..CONN_THREADS)
        .map(|_| {
            let (stop, total, errors) = (stop.clone(), total.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut buf = [2u8; MSG];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 10_000_000 {
                    match connect(addr).and_then(|mut s| ping(&mut s, &mut buf)) {
                        Ok(()) => n += 1,
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    (total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), errors.load(Ordering::Relaxed))
}

/// Proxy RSS growth per idle proxied connection, in bytes, with `n` connections held: (RSS
/// with them held − `before`, the RSS before the first idle connection) / n.
fn idle_bytes(p: &Px, n: usize, before: u64) -> Option<f64> {
    let pid = p.pid()?;
    let mut held = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [3u8; MSG];
    while held.len() < n && Instant::now() < deadline {
        match connect(p.echo).and_then(|mut s| ping(&mut s, &mut buf).map(|_| s)) {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("  {}: idle connection {}: {e}", p.name, held.len());
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    let got = held.len();
    drop(held);
    // Let the proxy close them all before the next measurement.
    std::thread::sleep(Duration::from_millis(1000));
    if got < n {
        eprintln!("  {}: only {got} of {n} idle connections held", p.name);
        return None;
    }
    Some((after.saturating_sub(before) * 1024) as f64 / got as f64)
}

/// Median, min, max.
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    let med = if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 };
    Some((med, s[0], s[s.len() - 1]))
}

/// One table row: a metric, how to read it, and each column's samples.
struct Row {
    metric: String,
    /// Higher is better (ops, Gbit/s) or lower (latency, CPU, memory).
    higher_better: bool,
    /// Whether `direct` has a value here (not for proxy CPU or proxy memory).
    ratio_to_direct: bool,
    decimals: usize,
    samples: HashMap<String, Vec<f64>>,
}

impl Row {
    fn new(metric: &str, higher_better: bool, ratio_to_direct: bool, decimals: usize) -> Row {
        Row { metric: metric.into(), higher_better, ratio_to_direct, decimals, samples: HashMap::new() }
    }
    fn push(&mut self, col: &str, v: f64) {
        if v.is_finite() {
            self.samples.entry(col.into()).or_default().push(v);
        }
    }
}

fn print_table(title: &str, cols: &[String], rows: &[Row]) {
    println!("\n{title}\n");
    let peers: Vec<&String> = cols.iter().filter(|c| !c.starts_with("netforge") && *c != "direct").collect();
    print!("| metric |");
    for c in cols {
        print!(" {c} |");
    }
    println!(" netforge ÷ best peer |");
    print!("|---|");
    for _ in cols {
        print!("---:|");
    }
    println!("---:|");
    for r in rows {
        if r.samples.is_empty() {
            continue;
        }
        let direct = r.samples.get("direct").and_then(|v| stats(v)).map(|s| s.0);
        print!("| {} |", r.metric);
        for c in cols {
            match r.samples.get(c).and_then(|v| stats(v)) {
                Some((m, lo, hi)) => {
                    let d = r.decimals;
                    let frac = match direct {
                        Some(dv) if r.ratio_to_direct && c != "direct" && dv > 0.0 => {
                            format!(", {:.2}× direct", m / dv)
                        }
                        _ => String::new(),
                    };
                    if lo == hi {
                        print!(" {m:.d$}{frac} |");
                    } else {
                        print!(" {m:.d$} ({lo:.d$}–{hi:.d$}){frac} |");
                    }
                }
                None => print!(" – |"),
            }
        }
        let nf = r.samples.get("netforge").and_then(|v| stats(v)).map(|s| s.0);
        let best = peers.iter().filter_map(|c| r.samples.get(*c).and_then(|v| stats(v)).map(|s| s.0)).fold(
            None,
            |acc: Option<f64>, v| {
                Some(match acc {
                    None => v,
                    Some(a) if r.higher_better => a.max(v),
                    Some(a) => a.min(v),
                })
            },
        );
        match (nf, best) {
            (Some(n), Some(b)) if b > 0.0 => println!(" {:.2}× |", n / b),
            _ => println!(" – |"),
        }
    }
}

fn run_table(cc: &str, pin: Pin, knobs: &Knobs) {
    let (secs, rounds) = (knobs.secs, knobs.rounds);
    let iperf_port = free_port();
    let iperf_addr: SocketAddr = ([127, 0, 0, 1], iperf_port).into();
    let _iperf = Killed(
        Command::new("iperf3")
            .args(["-s", "-p", &iperf_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn iperf3 -s"),
    );
    wait_listening(iperf_addr, "iperf3 -s");
    let mut cols: Vec<Px> = Vec::new();
    let (backend, echo) = echo_backend();
    cols.push(Px { name: "direct".into(), child: None, bulk: iperf_addr, echo, _backend: backend });
    cols.push(netforge_proxy("netforge", BIN, iperf_addr, false, pin));
    cols.push(haproxy("haproxy-splice", true, iperf_addr, pin));
    cols.push(haproxy("haproxy", false, iperf_addr, pin));
    if have("nginx", "-v") && std::path::Path::new(NGINX_STREAM_MODULE).is_file() {
        cols.push(nginx(iperf_addr, pin));
    } else {
        println!("proxy_vs_haproxy: skipped nginx: no nginx or no {NGINX_STREAM_MODULE} (apt-get install nginx libnginx-mod-stream)");
    }
    cols.push(netforge_proxy("netforge-tuned", BIN, iperf_addr, true, pin));
    if let Some(base) = &knobs.base {
        cols.push(netforge_proxy("netforge-base", base, iperf_addr, false, pin));
    }
    let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
    let placement = match pin {
        Some([a, b]) => format!(
            "pinned: thread/worker i on CPU i of [{a}, {b}] (netforge cpu_affinity, HAProxy cpu-map, nginx worker_cpu_affinity)"
        ),
        None => "nothing pinned".into(),
    };
    println!(
        "proxy_vs_haproxy: congestion control {cc} on every socket (netforge-tuned: cubic); 2 threads/workers each; \
         {placement}; load and backends unpinned; {rounds} interleaved rounds of {secs} s per measurement"
    );

    let mut rows: Vec<Row> = Vec::new();
    let row = |rows: &mut Vec<Row>, m: &str, hb: bool, rd: bool, d: usize| -> usize {
        if let Some(i) = rows.iter().position(|r| r.metric == m) {
            return i;
        }
        rows.push(Row::new(m, hb, rd, d));
        rows.len() - 1
    };
    // Idle memory first, on fresh processes.
    if knobs.selected("idle") {
        // Allocators keep what a process once used, so every count is measured against the
        // RSS before the first idle connection, not after the last count's close.
        let before: Vec<u64> = cols.iter().map(|c| c.pid().map_or(0, rss_kib)).collect();
        for &n in &IDLE_COUNTS {
            let i = row(&mut rows, &format!("idle RSS per connection at {n} (B)"), false, false, 0);
            for (c, &b0) in cols.iter().zip(&before).filter(|(c, _)| c.child.is_some()) {
                if let Some(b) = idle_bytes(c, n, b0) {
                    println!("  idle {n} {}: {b:.0} B/conn", c.name);
                    rows[i].push(&c.name, b);
                }
            }
        }
    }
    let k = cols.len();
    for r in 0..rounds {
        for (si, streams) in [1u32, 8, 64].into_iter().enumerate() {
            if !knobs.selected(&format!("tput{streams}")) {
                continue;
            }
            let it = row(&mut rows, &format!("iperf3 {streams} stream(s): Gbit/s"), true, true, 2);
            let ic = row(&mut rows, &format!("iperf3 {streams} stream(s): proxy CPU s/GB"), false, false, 3);
            for j in 0..k {
                let c = &cols[(j + r + si) % k];
                let c0 = cpu_secs(c.pid());
                match iperf(c.bulk, streams, secs) {
                    Some((bps, bytes)) => {
                        let cpu = (cpu_secs(c.pid()) - c0) / (bytes / 1e9);
                        println!(
                            "  round {r} iperf3 -P {streams} {}: {:.2} Gbit/s, {cpu:.3} CPU s/GB",
                            c.name,
                            bps / 1e9
                        );
                        rows[it].push(&c.name, bps / 1e9);
                        if c.child.is_some() {
                            rows[ic].push(&c.name, cpu);
                        }
                    }
                    None => println!("  round {r} iperf3 -P {streams} through {} failed", c.name),
                }
            }
        }
        for (si, conns) in [1usize, 1000, 4000].into_iter().enumerate() {
            if !knobs.selected(&format!("rr{conns}")) {
                continue;
            }
            let io = row(&mut rows, &format!("64 B rr, {conns} conn(s): ops/s"), true, true, 0);
            let i50 = row(&mut rows, &format!("64 B rr, {conns} conn(s): p50 µs"), false, true, 1);
            let i99 = row(&mut rows, &format!("64 B rr, {conns} conn(s): p99 µs"), false, true, 1);
            let i999 = row(&mut rows, &format!("64 B rr, {conns} conn(s): p99.9 µs"), false, true, 1);
            let icpu = row(&mut rows, &format!("64 B rr, {conns} conn(s): proxy CPU µs/op"), false, false, 2);
            for j in 0..k {
                let c = &cols[(j + r + si + 1) % k];
                let c0 = cpu_secs(c.pid());
                let t0 = Instant::now();
                let v = rr(c.echo, conns, secs);
                let cpu = cpu_secs(c.pid()) - c0;
                let total_ops = v.ops * secs as f64 * 0.9;
                let per_op = if total_ops > 0.0 { cpu * 1e6 / total_ops } else { f64::NAN };
                println!(
                    "  round {r} rr {conns} {}: {:.0} ops/s, p50 {:.1} p99 {:.1} p99.9 {:.1} µs, {per_op:.2} CPU µs/op, {} errors ({:.1} s)",
                    c.name,
                    v.ops,
                    v.p50,
                    v.p99,
                    v.p999,
                    v.errors,
                    t0.elapsed().as_secs_f64()
                );
                rows[io].push(&c.name, v.ops);
                rows[i50].push(&c.name, v.p50);
                rows[i99].push(&c.name, v.p99);
                rows[i999].push(&c.name, v.p999);
                if c.child.is_some() {
                    rows[icpu].push(&c.name, per_op);
                }
            }
        }
        if knobs.selected("newconn") {
            let i = row(&mut rows, "new connections/s (connect, 64 B round trip, close)", true, true, 0);
            for j in 0..k {
                let c = &cols[(j + r + 2) % k];
                let (v, errs) = newconn(c.echo, secs);
                println!("  round {r} newconn {}: {v:.0}/s ({errs} failed)", c.name);
                rows[i].push(&c.name, v);
            }
        }
    }
    let title = format!(
        "### congestion control {cc}, {}: medians of {rounds} rounds (min–max), fraction of direct",
        if pin.is_some() { "pinned" } else { "unpinned" }
    );
    print_table(&title, &names, &rows);
}

/// The part that runs with one congestion control in effect (inside the namespace, or here).
fn inner(cc: &str, knobs: &Knobs) {
    let _cc_guard = if cc == "system" {
        None
    } else {
        match SysctlGuard::set(CC_PATH, cc) {
            Ok(g) => Some(g),
            Err(e) => {
                println!("proxy_vs_haproxy: skipped congestion control {cc}: cannot set {CC_PATH}: {e}");
                return;
            }
        }
    };
    let effective = std::fs::read_to_string(CC_PATH).map(|s| s.trim().to_string()).unwrap_or_else(|_| cc.into());
    let cc_label = if cc == "system" { format!("system ({effective})") } else { effective };
    // Root may raise its own hard limit: 19,000 proxied connections need 38,000 descriptors.
    let lim = libc::rlimit { rlim_cur: NOFILE_WANT, rlim_max: NOFILE_WANT };
    // SAFETY: `lim` is a live rlimit; a failure (not root) leaves the limits as they were.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let fd = netforge::sys::raise_nofile();
    if fd.as_ref().map_or(true, |f| f.soft < 2 * IDLE_COUNTS[1] as u64 + 500) {
        println!(
            "proxy_vs_haproxy: open-file limit {:?}: idle at {} connections will stop short",
            fd.map(|f| f.soft),
            IDLE_COUNTS[1]
        );
    }
    let allowed = netforge::sys::allowed_cpus().unwrap_or_default();
    let cpus: Pin = if allowed.len() >= 2 { Some([allowed[0], allowed[1]]) } else { None };
    let pins: Vec<Pin> = match knobs.pin {
        "on" => vec![cpus],
        "both" => vec![None, cpus],
        _ => vec![None],
    };
    for pin in pins {
        if pin.is_none() && cpus.is_none() && knobs.pin != "off" {
            println!("proxy_vs_haproxy: no pinned table: this process may use {} CPU(s)", allowed.len());
        }
        run_table(&cc_label, pin, knobs);
    }
}

fn netns_usable(wanted: bool) -> bool {
    if !wanted {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    Command::new("unshare")
        .args(["--net", "ip", "link", "set", "lo", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let knobs = Knobs::read();
    if let Ok(cc) = std::env::var(INNER_ENV) {
        inner(&cc, &knobs);
        remove_temp_files();
        return;
    }
    for tool in ["haproxy", "iperf3"] {
        if !have(tool, "-v") {
            println!(
                "proxy_vs_haproxy: skipped: `{tool}` is not on PATH (install with: apt-get install -y haproxy iperf3)"
            );
            return;
        }
    }
    println!("proxy_vs_haproxy: skipped the seed tcp-proxy: not available on this machine");
    let t0 = Instant::now();
    let ns = netns_usable(knobs.netns);
    for cc in &knobs.ccs {
        if !ns {
            if cc == "system" {
                println!("proxy_vs_haproxy: running in this network namespace (not root or no unshare)");
                inner(cc, &knobs);
            } else {
                println!("proxy_vs_haproxy: skipped congestion control {cc}: needs root and unshare (a namespace of its own)");
            }
            continue;
        }
        // A namespace may only default to an algorithm the host allows.
        let allowed = std::fs::read_to_string(CC_ALLOWED_PATH).unwrap_or_default();
        let _allow = if cc != "system" && !allowed.split_whitespace().any(|a| a == cc) {
            match SysctlGuard::set(CC_ALLOWED_PATH, &format!("{} {cc}", allowed.trim())) {
                Ok(g) => Some(g),
                Err(e) => {
                    println!("proxy_vs_haproxy: skipped congestion control {cc}: cannot allow it: {e}");
                    continue;
                }
            }
        } else {
            None
        };
        let me = std::env::current_exe().expect("current_exe");
        let status = Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(&me)
            .arg("--bench")
            .env(INNER_ENV, cc)
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            println!("proxy_vs_haproxy: the run for congestion control {cc} failed: {status:?}");
        }
    }
    remove_temp_files();
    println!("\nproxy_vs_haproxy: done in {:.0} s", t0.elapsed().as_secs_f64());
}

/// Removes this process's configs, logs and nginx directory from the temp directory once every
/// proxy has stopped (a failed run keeps them: its message points at the logs).
fn remove_temp_files() {
    let prefix = format!("nf-bench-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

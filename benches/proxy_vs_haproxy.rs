//! netforge proxy against HAProxy (TCP mode) on this machine, same backends, interleaved in one
//! run: HAProxy without splice ("haproxy") and with `option splice-request/splice-response`
//! ("haproxy-splice"), netforge with its defaults (`splice = "auto"`, `buffer_size = "16KiB"`,
//! `pipe_size = "256KiB"`), every proxy on 2 threads. HAProxy keeps its defaults too, so its
//! pipes are the kernel's 64 KiB (`tune.pipesize` unset): part of netforge's bulk advantage is
//! that pipe size. (Measured on the 2-core VM: HAProxy with `tune.pipesize 262144` moves one
//! stream at about the same CPU per GB as netforge's default; with 16 KiB pipes netforge spends
//! about twice the CPU per GB of 64 KiB ones.) HAProxy's `option tcp-smart-connect` is off by
//! default and stays off; netforge's `smart_connect` is on by default.
//!
//! Congestion control: netforge runs with `congestion = "cubic"` (`PROXY_BENCH_CONGESTION`,
//! default `cubic`; `system` keeps the kernel's default). A host whose default is bbr without
//! an fq qdisc (this VM) paces every socket with a high-resolution timer, which on loopback
//! costs CPU and throughput for nothing; netforge can choose the algorithm of its own sockets,
//! HAProxy 2.6 cannot, so its sockets stay on the system's default. The load generators and
//! backends keep the system's default in every case. The line that starts the run says which
//! algorithm each side used.
//!
//! CPU placement: both proxies' two threads are pinned to the first two CPUs this process may
//! use (`PROXY_BENCH_PIN`, default on; `off` pins nothing): netforge with `cpu_affinity =
//! [A, B]`, HAProxy with `cpu-map auto:1/1-2 A B`. netforge's pinned listeners also carry
//! SO_INCOMING_CPU, which HAProxy 2.6 has no setting for. The load generators and backends
//! are never pinned. The line that starts the run says what was pinned.
//!
//! Measures: (a) iperf3 throughput through the proxy: 1 stream, 8 streams from one iperf3
//! process (`-P 8`), and 8 streams from two at once (`-P 4` each, through two listeners to two
//! iperf3 servers: iperf3 before 3.16 runs all streams of a test on one thread, and one
//! receiving iperf3 saturates a core of this machine before either proxy does); (b) proxy CPU
//! seconds per GB moved in those runs (utime + stime from /proc/PID/stat); (c) latency a proxy
//! adds to a 64-byte ping-pong on one connection (p50/p99 through the proxy − direct to the echo
//! backend); (d) 64-byte request/response ops/s on 32 connections; (e) new connections/s
//! (connect, 64 B round trip, close); (f) proxy RSS per idle proxied connection at 5,000
//! connections.
//!
//! Every part but (f) runs `PROXY_BENCH_ROUNDS` rounds (default 5), each round visiting the
//! three proxies in a rotated order, and the table shows each proxy's median: on a small VM a
//! single run of a few seconds moves by ±5% from one run to the next. Each proxy has its own
//! echo backend (`netforge serve --mode echo`), so the TIME_WAIT entries of one proxy's
//! connection churn never sit on the 4-tuples the next proxy dials.
//!
//! Needs `haproxy` and `iperf3` on PATH (it installs nothing; without them it says so and
//! stops). Run: `cargo bench --bench proxy_vs_haproxy`. Every loop is bounded in count and time.
//! `PROXY_BENCH_ONLY=iperf1,conns` runs only the named parts (`idle`, `iperf1`, `iperf8`,
//! `iperf2x4`, `latency`, `ops`, `conns`); the parts left out show as 0 in the table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
const IPERF_SECS: u32 = 4;
const PING_ROUNDS: usize = 20_000;
const OPS_CONNS: usize = 32;
const OPS_SECS: u64 = 3;
const CONN_THREADS: usize = 4;
const CONN_SECS: u64 = 3;
const IDLE_CONNS: usize = 5_000;
const MSG: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A port that was free a moment ago (external tools need a number; the race is accepted here).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} not listening within 10 s (see /tmp/nf-bench-*.log)");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `netforge serve --mode echo` and the address it bound.
fn echo_backend() -> (Killed, SocketAddr) {
    let mut c = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "2"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn netforge serve");
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("serve said: {line}"));
    (Killed(c), addr)
}

struct Proxy {
    name: &'static str,
    child: Killed,
    /// Two bulk listeners, each to its own iperf3 server.
    bulk: [SocketAddr; 2],
    echo: SocketAddr,
}

/// Two CPUs both proxies are pinned to (`PROXY_BENCH_PIN`, default on), or `None`.
type Pin = Option<[usize; 2]>;

fn netforge_proxy(iperf: [SocketAddr; 2], echo: SocketAddr, congestion: &str, pin: Pin) -> Proxy {
    let affinity = pin.map_or("\"off\"".to_string(), |[a, b]| format!("[{a}, {b}]"));
    let conf = format!(
        "threads = 2\ncpu_affinity = {affinity}\nmax_connections = 7000\nsplice = \"auto\"\ncongestion = \"{congestion}\"\n[health]\nenabled = false\n[admin]\naddress = \"\"\n\
         [[listener]]\nname = \"bulk\"\naddress = \"127.0.0.1:0\"\ngroup = \"bulk\"\n\
         [[listener]]\nname = \"bulk2\"\naddress = \"127.0.0.1:0\"\ngroup = \"bulk2\"\n\
         [[listener]]\nname = \"echo\"\naddress = \"127.0.0.1:0\"\ngroup = \"echo\"\n\
         [[backend]]\naddress = \"{}\"\ngroup = \"bulk\"\n[[backend]]\naddress = \"{}\"\ngroup = \"bulk2\"\n\
         [[backend]]\naddress = \"{echo}\"\ngroup = \"echo\"\n",
        iperf[0], iperf[1]
    );
    let path = std::env::temp_dir().join(format!("nf-bench-{}.toml", std::process::id()));
    std::fs::write(&path, conf).unwrap();
    let mut c = Command::new(BIN)
        .arg("proxy")
        .arg("--conf")
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn netforge proxy");
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let a: SocketAddr = line
            .strip_prefix("netforge proxy: listening on ")
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("proxy said: {line}"));
        addrs.push(a);
    }
    // Keep stdout drained so the proxy never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    Proxy { name: "netforge", child: Killed(c), bulk: [addrs[0], addrs[1]], echo: addrs[2] }
}

fn haproxy(name: &'static str, splice: bool, iperf: [SocketAddr; 2], echo: SocketAddr, pin: Pin) -> Proxy {
    let (pb, pb2, pe) = (free_port(), free_port(), free_port());
    let opts = if splice { "  option splice-request\n  option splice-response\n" } else { "" };
    // Thread 1 on the first CPU, thread 2 on the second, as netforge's reactors.
    let cpu_map = pin.map_or(String::new(), |[a, b]| format!("  cpu-map auto:1/1-2 {a} {b}\n"));
    let conf = format!(
        "global\n  nbthread 2\n{cpu_map}  maxconn 7000\n\
         defaults\n  mode tcp\n  timeout connect 3s\n  timeout client 5m\n  timeout server 5m\n{opts}\
         frontend fe_bulk\n  bind 127.0.0.1:{pb}\n  default_backend be_bulk\n\
         backend be_bulk\n  server s1 {}\n\
         frontend fe_bulk2\n  bind 127.0.0.1:{pb2}\n  default_backend be_bulk2\n\
         backend be_bulk2\n  server s1 {}\n\
         frontend fe_echo\n  bind 127.0.0.1:{pe}\n  default_backend be_echo\n\
         backend be_echo\n  server s1 {echo}\n",
        iperf[0], iperf[1]
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
    let bulk: [SocketAddr; 2] =
        [format!("127.0.0.1:{pb}").parse().unwrap(), format!("127.0.0.1:{pb2}").parse().unwrap()];
    let echo_addr: SocketAddr = format!("127.0.0.1:{pe}").parse().unwrap();
    wait_listening(bulk[0]);
    wait_listening(bulk[1]);
    wait_listening(echo_addr);
    Proxy { name, child: Killed(c), bulk, echo: echo_addr }
}

/// The process and its descendants (HAProxy may fork).
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

/// utime + stime in seconds, summed over the process family.
fn cpu_secs(pid: u32) -> f64 {
    let tck = clock_ticks();
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

/// USER_HZ, the unit of /proc/PID/stat times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn rss_kib(pid: u32) -> u64 {
    family(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|t| t.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// (bits/s received, bytes received) of iperf3 clients run at once, one through each of
/// `addrs`, each with `streams` parallel streams; summed.
fn iperf(addrs: &[SocketAddr], streams: u32) -> Option<(f64, f64)> {
    let children: Vec<Child> = addrs
        .iter()
        .map(|addr| {
            Command::new("timeout")
                .arg(format!("{}", IPERF_SECS + 20))
                .arg("iperf3")
                .args(["-c", "127.0.0.1", "-p", &addr.port().to_string(), "-t", &IPERF_SECS.to_string()])
                .args(["-P", &streams.to_string(), "-J"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let (mut bps, mut bytes) = (0.0, 0.0);
    for c in children {
        let out = c.wait_with_output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let r = &v["end"]["sum_received"];
        bps += r["bits_per_second"].as_f64()?;
        bytes += r["bytes"].as_f64()?;
    }
    Some((bps, bytes))
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

/// (p50, p99) in µs of PING_ROUNDS 64-byte round trips on one connection.
fn latency(addr: SocketAddr) -> (f64, f64) {
    let mut s = connect(addr).unwrap();
    let mut buf = [7u8; MSG];
    for _ in 0..1000 {
        ping(&mut s, &mut buf).unwrap();
    }
    let mut ns = Vec::with_capacity(PING_ROUNDS);
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..PING_ROUNDS {
        let t = Instant::now();
        ping(&mut s, &mut buf).unwrap();
        ns.push(t.elapsed().as_nanos() as u64);
        if Instant::now() > deadline {
            break;
        }
    }
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    (q(0.50), q(0.99))
}

/// Request/response ops/s on OPS_CONNS connections for OPS_SECS.
fn ops(addr: SocketAddr) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..OPS_CONNS)
        .map(|_| {
            let (stop, total) = (stop.clone(), total.clone());
            std::thread::spawn(move || {
                let Ok(mut s) = connect(addr) else { return };
                let mut buf = [1u8; MSG];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 50_000_000 {
                    if ping(&mut s, &mut buf).is_err() {
                        break;
                    }
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(OPS_SECS));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Connections/s (connect, 64 B round trip, close) from CONN_THREADS threads for CONN_SECS.
fn conns(addr: SocketAddr) -> (f64, u64) {
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
    std::thread::sleep(Duration::from_secs(CONN_SECS));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    (total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), errors.load(Ordering::Relaxed))
}

/// Proxy RSS growth per idle proxied connection (each did one 64 B round trip first, so the
/// backend side is connected too), in bytes.
fn idle_bytes(p: &Proxy) -> f64 {
    let pid = p.child.0.id();
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(IDLE_CONNS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [3u8; MSG];
    while held.len() < IDLE_CONNS && Instant::now() < deadline {
        match connect(p.echo) {
            Ok(mut s) => {
                if ping(&mut s, &mut buf).is_ok() {
                    held.push(s);
                }
            }
            Err(e) => {
                eprintln!("{}: connect {}: {e}", p.name, held.len());
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    let n = held.len().max(1);
    drop(held);
    if n < IDLE_CONNS {
        eprintln!("{}: only {n} idle connections held", p.name);
    }
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

/// Median of each proxy's runs (0 when a part did not run).
fn medians(runs: &[Vec<f64>; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (o, r) in out.iter_mut().zip(runs) {
        let mut v = r.clone();
        v.sort_by(f64::total_cmp);
        if !v.is_empty() {
            *o = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
        }
    }
    out
}

struct Row {
    metric: String,
    v: [f64; 3],
    /// Target text and whether it is met.
    target: Option<(String, bool)>,
}

/// Whether `PROXY_BENCH_ONLY` (a comma list; unset = everything) selects `part`.
fn selected(part: &str) -> bool {
    match std::env::var("PROXY_BENCH_ONLY") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|p| p.trim() == part),
        _ => true,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for tool in ["haproxy", "iperf3"] {
        if !have(tool) {
            println!(
                "proxy_vs_haproxy: skipped: `{tool}` is not on PATH (install with: apt-get install -y haproxy iperf3)"
            );
            return;
        }
    }
    let _ = netforge::sys::raise_nofile();
    let system_cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mut congestion = std::env::var("PROXY_BENCH_CONGESTION").unwrap_or_else(|_| "cubic".into());
    if congestion != "system" {
        if let Err(e) = netforge::net::tune::Congestion::probe(&congestion) {
            println!("proxy_vs_haproxy: netforge keeps the system's congestion control: {e}");
            congestion = "system".into();
        }
    }
    let allowed = netforge::sys::allowed_cpus().unwrap_or_default();
    let pin: Pin = match std::env::var("PROXY_BENCH_PIN").as_deref() {
        Ok("off") => None,
        Ok(v) if v != "on" => {
            println!("proxy_vs_haproxy: PROXY_BENCH_PIN={v:?}: expected \"on\" or \"off\"");
            return;
        }
        _ if allowed.len() >= 2 => Some([allowed[0], allowed[1]]),
        _ => {
            println!("proxy_vs_haproxy: proxies not pinned: this process may use {} CPU(s)", allowed.len());
            None
        }
    };
    let rounds = std::env::var("PROXY_BENCH_ROUNDS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(5).max(1);
    // Two iperf3 servers: iperf3 (before 3.16) runs every stream of a test on one thread, and
    // on this machine one receiving iperf3 process saturates a core before either proxy does.
    let mut iperf_servers = Vec::new();
    let mut iperf_addr = [SocketAddr::from(([127, 0, 0, 1], 0)); 2];
    for a in iperf_addr.iter_mut() {
        let port = free_port();
        *a = format!("127.0.0.1:{port}").parse().unwrap();
        iperf_servers.push(Killed(
            Command::new("iperf3")
                .args(["-s", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn iperf3 -s"),
        ));
        wait_listening(*a);
    }
    // One echo backend per proxy: the TIME_WAIT entries one proxy's connection churn leaves on
    // its backend 4-tuples never slow down the next proxy's connects.
    let echoes: Vec<(Killed, SocketAddr)> = (0..3).map(|_| echo_backend()).collect();
    let proxies = [
        netforge_proxy(iperf_addr, echoes[0].1, &congestion, pin),
        haproxy("haproxy", false, iperf_addr, echoes[1].1, pin),
        haproxy("haproxy-splice", true, iperf_addr, echoes[2].1, pin),
    ];
    println!(
        "proxy_vs_haproxy: backends iperf3 {} and {}, one echo each ({}, {}, {}); proxies on 2 threads each; \
         {rounds} interleaved rounds, medians; congestion control: netforge {}, HAProxy and the load {system_cc}; {}",
        iperf_addr[0],
        iperf_addr[1],
        echoes[0].1,
        echoes[1].1,
        echoes[2].1,
        if congestion == "system" { system_cc.as_str() } else { congestion.as_str() },
        match pin {
            Some([a, b]) => format!(
                "threads pinned to CPUs {a} and {b} (netforge cpu_affinity = [{a}, {b}], HAProxy cpu-map), \
                 load and backends unpinned"
            ),
            None => "no thread pinned (netforge cpu_affinity = \"off\", no HAProxy cpu-map)".into(),
        }
    );
    // Round k starts with proxy k mod 3, so no proxy always goes first.
    let order = |k: usize| (0..3).map(move |i| (i + k) % 3);
    let mut runs: [Vec<f64>; 3] = Default::default();

    // (f) first, on fresh processes.
    let mut idle = [0.0f64; 3];
    for i in order(0).filter(|_| selected("idle")) {
        idle[i] = idle_bytes(&proxies[i]);
        println!("  idle memory {}: {:.0} B/conn", proxies[i].name, idle[i]);
    }
    // (part, iperf3 processes, streams each): 1 stream; 8 streams in one process (-P 8), as
    // most people run it; 8 streams as 2 processes × -P 4, so the load generator is not the
    // bottleneck.
    let shapes: [(&str, usize, u32); 3] = [("iperf1", 1, 1), ("iperf8", 1, 8), ("iperf2x4", 2, 4)];
    let mut tput = [[0.0f64; 3]; 3];
    let mut cpu = [[0.0f64; 3]; 3];
    for (k, (part, procs, streams)) in shapes.into_iter().enumerate() {
        if !selected(part) {
            continue;
        }
        let (mut t_runs, mut c_runs) = (runs.clone(), runs.clone());
        for r in 0..rounds {
            for i in order(r + k) {
                let pid = proxies[i].child.0.id();
                let c0 = cpu_secs(pid);
                match iperf(&proxies[i].bulk[..procs], streams) {
                    Some((bps, bytes)) => {
                        let c1 = cpu_secs(pid);
                        t_runs[i].push(bps / 1e9);
                        c_runs[i].push((c1 - c0) / (bytes / 1e9));
                        println!(
                            "  iperf3 {procs}x-P{streams} {} round {r}: {:.2} Gbit/s, {:.3} CPU s/GB",
                            proxies[i].name,
                            bps / 1e9,
                            (c1 - c0) / (bytes / 1e9)
                        );
                    }
                    None => println!("  iperf3 {procs}x-P{streams} through {} failed (round {r})", proxies[i].name),
                }
            }
        }
        tput[k] = medians(&t_runs);
        cpu[k] = medians(&c_runs);
    }
    let mut p50 = [0.0f64; 3];
    let mut p99 = [0.0f64; 3];
    if selected("latency") {
        let (mut r50, mut r99) = (runs.clone(), runs.clone());
        for r in 0..rounds {
            for i in order(r) {
                let echo = echoes[i].1;
                let d = latency(echo);
                let t = latency(proxies[i].echo);
                r50[i].push(t.0 - d.0);
                r99[i].push(t.1 - d.1);
                println!(
                    "  ping-pong {} round {r}: direct p50 {:.1} p99 {:.1} us, through p50 {:.1} p99 {:.1} us",
                    proxies[i].name, d.0, d.1, t.0, t.1
                );
            }
        }
        p50 = medians(&r50);
        p99 = medians(&r99);
    }
    let mut opss = [0.0f64; 3];
    if selected("ops") {
        let mut o_runs = runs.clone();
        for r in 0..rounds {
            for i in order(r + 1) {
                let v = ops(proxies[i].echo);
                o_runs[i].push(v);
                println!("  ops {} round {r}: {v:.0}/s", proxies[i].name);
            }
        }
        opss = medians(&o_runs);
    }
    let mut cps = [0.0f64; 3];
    if selected("conns") {
        for r in 0..rounds {
            for i in order(r + 2) {
                let (v, errs) = conns(proxies[i].echo);
                runs[i].push(v);
                println!("  conn/s {} round {r}: {v:.0}/s ({errs} failed)", proxies[i].name);
            }
        }
        cps = medians(&runs);
    }

    let best_hi = |a: [f64; 3]| a[1].max(a[2]);
    let best_lo = |a: [f64; 3]| a[1].min(a[2]);
    let rows = vec![
        Row {
            metric: "throughput 1 stream (Gbit/s)".into(),
            v: tput[0],
            target: Some(("≥ 1.1× haproxy-splice".into(), tput[0][0] >= 1.1 * tput[0][2])),
        },
        Row {
            metric: "throughput 8 streams, 1 iperf3 (Gbit/s)".into(),
            v: tput[1],
            target: Some(("≥ 1.1× haproxy-splice".into(), tput[1][0] >= 1.1 * tput[1][2])),
        },
        Row {
            metric: "throughput 8 streams, 2 iperf3 (Gbit/s)".into(),
            v: tput[2],
            target: Some(("≥ 1.1× haproxy-splice".into(), tput[2][0] >= 1.1 * tput[2][2])),
        },
        Row {
            metric: "CPU s/GB, 1 stream".into(),
            v: cpu[0],
            target: Some(("≤ best HAProxy".into(), cpu[0][0] <= best_lo(cpu[0]))),
        },
        Row {
            metric: "CPU s/GB, 8 streams, 1 iperf3".into(),
            v: cpu[1],
            target: Some(("≤ best HAProxy".into(), cpu[1][0] <= best_lo(cpu[1]))),
        },
        Row {
            metric: "CPU s/GB, 8 streams, 2 iperf3".into(),
            v: cpu[2],
            target: Some(("≤ best HAProxy".into(), cpu[2][0] <= best_lo(cpu[2]))),
        },
        Row {
            metric: "added latency p50 (us)".into(),
            v: p50,
            target: Some(("≤ best HAProxy".into(), p50[0] <= best_lo(p50))),
        },
        Row {
            metric: "added latency p99 (us)".into(),
            v: p99,
            target: Some(("≤ best HAProxy".into(), p99[0] <= best_lo(p99))),
        },
        Row { metric: "64 B req/resp ops/s, 32 conns".into(), v: opss, target: None },
        Row {
            metric: "new connections/s".into(),
            v: cps,
            target: Some(("≥ 1.1× best HAProxy".into(), cps[0] >= 1.1 * best_hi(cps))),
        },
        Row {
            metric: "memory per idle conn (B)".into(),
            v: idle,
            target: Some(("≤ 2048 B".into(), idle[0] <= 2048.0)),
        },
    ];
    println!();
    println!(
        "| {:<40} | {:>10} | {:>10} | {:>14} | {:>17} | {:<22} | {:<7} |",
        "metric", "netforge", "haproxy", "haproxy-splice", "ratio nf/hap(-spl)", "target", "result"
    );
    println!("|---|---:|---:|---:|---:|---|---|");
    for r in &rows {
        let ratio = |d: f64| if d.abs() > 1e-12 { format!("{:.2}", r.v[0] / d) } else { "-".into() };
        let (t, met) = match &r.target {
            Some((t, m)) => (t.clone(), if *m { "met" } else { "NOT met" }),
            None => ("(reported)".into(), ""),
        };
        println!(
            "| {:<40} | {:>10.3} | {:>10.3} | {:>14.3} | {:>17} | {:<22} | {:<7} |",
            r.metric,
            r.v[0],
            r.v[1],
            r.v[2],
            format!("{} / {}", ratio(r.v[1]), ratio(r.v[2])),
            t,
            met
        );
    }
}

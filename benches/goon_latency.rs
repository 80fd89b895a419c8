//! Request/response latency at a fixed rate on many connections, against two targets (see
//! below: `netforge serve --mode echo` and a stalling server), measured three ways side by side
//! in one run:
//!
//! - `goon`: `netforge goon --message 'ping\n' --message-rate R --expect-bytes 5`, latency from
//!   each message's intended send time (its slot), read from its `--json`;
//! - `tcpkali`: `-m 'ping\n' -e -r R --latency-marker ping` (from `../shared/peers/bin`, or
//!   `GOON_LAT_PEERS`; a skip line when absent), latency as tcpkali prints it (0.1 ms steps);
//! - `blocking`: the reference, in this process: one thread per connection with a blocking
//!   socket, goon's schedule (slot 0 at the connection's establishment, slot k ≥ 1 on
//!   connection i's phase, i/N of the period 1/R, at least a period after slot 0: N evenly
//!   spaced phases, as goon's; a late message sent at once and timed from its slot), recorded
//!   into an HdrHistogram of goon's precision (1 µs..60 s, 3 significant digits).
//!
//! Connections open at `GOON_LAT_DIAL_RATE` per second (default 5000: goon `--rate`, tcpkali
//! `--connect-rate`, the reference's connection i at i/rate), and each tool's traffic phase
//! ends `GOON_LAT_SECS` after its dialing. goon and the reference spread the connections'
//! slots evenly over the period; tcpkali's follow its connects. The first messages, sent as
//! connections are established, wait for the target to accept them: goon and the reference
//! see that alike.
//!
//! Knobs (environment; a bad value is a one-line error and exit status 2 before anything runs):
//! `GOON_LAT_N` connections (1..=9000, default 1000), `GOON_LAT_RATE` messages/s per connection
//! (0.01..=100000, default 10), `GOON_LAT_SECS` seconds of traffic (1..=120, default 8),
//! `GOON_LAT_ROUNDS` interleaved rounds (1..=20, default 3; each visits the tools in a rotated
//! order), `GOON_LAT_DIAL_RATE` (1..=1000000, default 5000), `GOON_LAT_ONLY` a comma list of
//! tools (`goon`, `tcpkali`, `blocking`; default all), `GOON_LAT_TARGET` (below),
//! `GOON_LAT_DELAY_MS` and `GOON_LAT_STALL_MS` (1..=900 each, below), `GOON_LAT_TOGETHER`
//! (`on`/`off`, default `off`, below), `GOON_LAT_GOON_ARGS` (more goon arguments, split at
//! spaces, for experiments such as `--threads 4`). The table shows, per tool, the median over rounds of p50/p90/p99/p99.9/max with the
//! range, the rates, the CPU seconds of each tool's process (the reference's: this process's
//! during its run) and goon's ratio to the reference. Run: `cargo bench --bench goon_latency`
//! (about 3 minutes with the defaults). All traffic is on loopback; every wait is bounded.
//!
//! Two targets, each its own table (`GOON_LAT_TARGET=echo,stall`, default both):
//!
//! - `echo`: `netforge serve --mode echo`. Its answers take tens of microseconds, so what the
//!   tools measure is mostly how each one shares two cores with the server: the figures show the
//!   cost of measuring, and the reference moves from run to run by as much as the tools differ.
//! - `stall`: a server in this process, one thread per connection, that answers each message
//!   `GOON_LAT_DELAY_MS` (default 5) after reading it and stops answering for the first
//!   `GOON_LAT_STALL_MS` (default 150) of every second: answers due in a stall go out when it
//!   ends. Each connection's second starts at its own phase, so stalls end spread over time
//!   rather than in one burst that would measure the tools' wake-ups again. A tool free of coordinated omission sees 85% of messages at about the delay and 15%
//!   spread up to the stall's length, whatever its own overheads; the percentiles are set by the
//!   server, so the comparison with the reference is about the measurement, not the machine.
//!   A `model` row gives what a client with no overhead would see, simulated from the server's
//!   rule, and each tool's ratio to it.
//!
//! `GOON_LAT_TOGETHER=on` runs goon and the reference **at once** instead (tcpkali is left out),
//! each with half the connections against the same target, so the load is the same and both
//! meet the same moment of the machine: on a shared VM the reference moves between rounds by
//! as much as the tools differ, and only side by side does the ratio stand still. Its table
//! gives, per percentile, goon ÷ reference in each round, their median and range, and whether
//! every round put goon on the same side.
//!
//! The verdict per percentile: goon's median matches when it lies within 0.1% of the
//! reference's median (the histogram's 3 significant digits), or within the reference's own
//! range over the rounds while that range is narrow (max ÷ min at most 1.25); a wider range is
//! no yardstick, and the verdict is then "unsettled".

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[path = "knobs.rs"]
mod knobs;

const BIN: &str = env!("CARGO_BIN_EXE_netforge");
/// The most the reference may move between its own rounds (max ÷ min at a percentile) for its
/// range to judge a match; past it the verdict is "unsettled".
const SETTLED_SPREAD: f64 = 1.25;
const MESSAGE: &[u8] = b"ping\n";

const TOOLS: [&str; 3] = ["goon", "tcpkali", "blocking"];
const TARGETS: [&str; 2] = ["echo", "stall"];

/// One run's figures: p50/p90/p99/p99.9/max in µs, messages sent and answered per second, CPU s.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    us: [f64; 5],
    sent_per_s: f64,
    answered_per_s: f64,
    cpu_s: Option<f64>,
}

struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn netforge serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("serve's first line");
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line}"));
    Serve { child, addr }
}

/// Children's CPU seconds (user + system) so far.
fn children_cpu_s() -> f64 {
    cpu_s(libc::RUSAGE_CHILDREN)
}

/// CPU seconds (user + system) of `who` (this process, or its waited-for children).
fn cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed value it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `cmd` to the end within `limit`; returns its stdout and the CPU seconds it used.
fn run_child(mut cmd: Command, limit: Duration) -> Option<(String, f64)> {
    let cpu0 = children_cpu_s();
    // stderr is not read: as an unread pipe it would block a chatty child once 64 KiB filled.
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    let mut out = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("goon_latency: a run passed {limit:?} and was stopped");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = reader.join().unwrap_or_default();
    Some((text, children_cpu_s() - cpu0))
}

fn goon(addr: SocketAddr, n: u64, rate: f64, secs: u64, dial_rate: u64) -> Option<Figures> {
    let json = std::env::temp_dir().join(format!("netforge-goon-latency-{}.json", std::process::id()));
    let mut cmd = Command::new(BIN);
    cmd.args(["goon", &addr.ip().to_string(), &addr.port().to_string(), "-y", "-i", "0"])
        .args(["--rate", &dial_rate.to_string()])
        .args(["-c", &n.to_string(), "--message", "ping\\n", "--message-rate", &rate.to_string()])
        .args(["--duration", &format!("{secs}s"), "--expect-bytes", "5", "--hold", "500ms"])
        .args(knobs::raw("GOON_LAT_GOON_ARGS").unwrap_or_default().split_whitespace())
        .arg("--json")
        .arg(&json)
        .env("RUST_LOG", "warn");
    let (_, cpu) = run_child(cmd, Duration::from_secs(secs + 60))?;
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).ok()?).ok()?;
    let _ = std::fs::remove_file(&json);
    let t = &doc["traffic"];
    let rt = &t["response_time"];
    let f = |k: &str| rt[k].as_f64().unwrap_or(f64::NAN);
    Some(Figures {
        us: [f("p50_us"), f("p90_us"), f("p99_us"), f("p999_us"), f("max_us")],
        sent_per_s: t["sent_per_s"].as_f64().unwrap_or(0.0),
        answered_per_s: t["responses_per_s"].as_f64().unwrap_or(0.0),
        cpu_s: Some(cpu),
    })
}

fn tcpkali_bin() -> Option<std::path::PathBuf> {
    let dir = std::env::var("GOON_LAT_PEERS").unwrap_or_else(|_| "../shared/peers/bin".into());
    let p = std::path::Path::new(&dir).join("tcpkali");
    p.is_file().then_some(p)
}

fn tcpkali(bin: &std::path::Path, addr: SocketAddr, n: u64, rate: f64, secs: u64, dial_rate: u64) -> Option<Figures> {
    let mut cmd = Command::new(bin);
    cmd.arg(addr.to_string())
        .args(["-c", &n.to_string(), "--connect-rate", &dial_rate.to_string(), "-m", "ping\\n", "-e"])
        .args(["-r", &rate.to_string(), "--latency-marker", "ping", "-T", &format!("{secs}s")])
        .args(["--latency-percentiles", "50,90,99,99.9,100"]);
    let (out, cpu) = run_child(cmd, Duration::from_secs(secs + 60))?;
    // "Message latency at percentiles: 0.1/0.2/0.5/3.3/3.3 ms (50/90/99/99.9/100%)"
    let line = out.lines().find(|l| l.starts_with("Message latency at percentiles:"))?;
    let ms: Vec<f64> =
        line.split(':').nth(1)?.split_whitespace().next()?.split('/').filter_map(|x| x.parse().ok()).collect();
    let mut us = [0.0; 5];
    for (i, v) in ms.iter().take(5).enumerate() {
        us[i] = v * 1000.0;
    }
    // "Total data sent:     456.3 KiB (467252 bytes)" over the test duration.
    let bytes = |k: &str| -> f64 {
        out.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.rsplit('(').next())
            .and_then(|r| r.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0)
    };
    let dur = out
        .lines()
        .find(|l| l.starts_with("Test duration:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|x| x.parse::<f64>().ok())
        .unwrap_or(secs as f64);
    let per_s = |b: f64| b / MESSAGE.len() as f64 / dur;
    Some(Figures {
        us,
        sent_per_s: per_s(bytes("Total data sent:")),
        answered_per_s: per_s(bytes("Total data received:")),
        cpu_s: Some(cpu),
    })
}

/// Sleeps until `at` (at once when it has passed).
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// The reference: a thread per connection, blocking sockets, goon's schedule: connection i
/// dialed at i/`dial_rate` after a common start, its slot 0 at its establishment, its slot
/// k ≥ 1 on phase i/N of the period (`g + (k + skip)/R`, `g` the phase's last instant at or
/// before the establishment, `skip` 1 unless it fell exactly on it), the traffic phase
/// ending `secs` after the last dial was due, as goon's ends `--duration` after its dialing.
fn blocking(addr: SocketAddr, n: u64, rate: f64, secs: u64, dial_rate: u64) -> Option<Figures> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let cpu0 = cpu_s(libc::RUSAGE_SELF);
    let barrier = Arc::new(Barrier::new(n as usize + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    // Per connection: its histogram, min, max, messages answered, seconds it carried traffic
    // and whether it connected.
    let (tx, rx) = crossbeam_channel::bounded::<(Histogram<u64>, u64, u64, u64, f64, u64)>(n as usize);
    let mut threads = Vec::with_capacity(n as usize);
    let dials = Duration::from_secs_f64(n as f64 / dial_rate as f64);
    for i in 0..n {
        let (barrier, tx, start) = (barrier.clone(), tx.clone(), start.clone());
        let dial_at = Duration::from_secs_f64(i as f64 / dial_rate as f64);
        let phase = period.mul_f64(i as f64 / n as f64);
        let t = std::thread::Builder::new().stack_size(64 << 10).spawn(move || {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let (mut min, mut max, mut sent) = (u64::MAX, 0u64, 0u64);
            // Every thread is up when the barrier opens: dials keep their times from then on.
            barrier.wait();
            let Some(&t0) = start.get() else { return };
            let end = t0 + dials + Duration::from_secs(secs);
            sleep_until(t0 + dial_at);
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
                let _ = tx.send((h, min, max, sent, 0.0, 0));
                return;
            };
            let est = Instant::now();
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            let lead_ns = ((est - t0).as_nanos() as i128 - phase.as_nanos() as i128)
                .rem_euclid(period.as_nanos().max(1) as i128) as u64;
            let grid = est - Duration::from_nanos(lead_ns);
            let skip = u32::from(lead_ns > 0);
            let mut buf = [0u8; MESSAGE.len()];
            for k in 0u32.. {
                let slot = if k == 0 { est } else { grid + period * (k + skip) };
                if slot >= end {
                    break;
                }
                sleep_until(slot);
                if s.write_all(MESSAGE).is_err() || s.read_exact(&mut buf).is_err() {
                    break;
                }
                sent += 1;
                let ns = Instant::now().saturating_duration_since(slot).as_nanos() as u64;
                h.saturating_record((ns / 1000).clamp(1, 60_000_000));
                min = min.min(ns);
                max = max.max(ns);
            }
            let _ = tx.send((h, min, max, sent, end.saturating_duration_since(est).as_secs_f64(), 1));
        });
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("goon_latency: blocking reference: cannot start thread: {e}");
                return None;
            }
        }
    }
    drop(tx);
    // A common start a little ahead, so that no thread is still waking when its dial is due.
    let _ = start.set(Instant::now() + Duration::from_millis(20));
    barrier.wait();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut min, mut max, mut sent, mut ok, mut conn_s) = (u64::MAX, 0u64, 0u64, 0u64, 0.0f64);
    for _ in 0..n {
        let Ok((h, lo, hi, s, span, c)) = rx.recv_timeout(dials + Duration::from_secs(secs + 30)) else { break };
        let _ = all.add(&h);
        min = min.min(lo);
        max = max.max(hi);
        sent += s;
        conn_s += span;
        ok += c;
    }
    for t in threads {
        let _ = t.join();
    }
    if ok < n {
        eprintln!("goon_latency: blocking reference: {} of {n} connections failed", n - ok);
    }
    let pct = |q: f64| (all.value_at_quantile(q / 100.0) as f64).clamp(min as f64 / 1e3, max as f64 / 1e3);
    let per_s = sent as f64 / conn_s.max(1e-9) * n as f64;
    Some(Figures {
        us: [pct(50.0), pct(90.0), pct(99.0), pct(99.9), max as f64 / 1e3],
        sent_per_s: per_s,
        answered_per_s: per_s,
        // This process did nothing else meanwhile: its CPU is the reference's.
        cpu_s: Some(cpu_s(libc::RUSAGE_SELF) - cpu0),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}µs")
    }
}

/// The `stall` target (see the module docs); it serves until the bench process ends.
fn stall_server(delay: Duration, stall: Duration) -> SocketAddr {
    // A deep accept queue: `TcpListener::bind` listens with 128, and 1,000 connections
    // arriving at 5,000/s (twice that side by side) while this loop starts a thread for each
    // overflowed it (ListenOverflows), so some handshakes' last ACK was dropped and their first
    // message waited for a retransmission (200 ms and more) before the server read it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("the stall target");
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind the stall target");
    sock.listen(4096).expect("listen on the stall target");
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().expect("the stall target's address");
    let epoch = Instant::now();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut s) = conn else { continue };
            // Each connection's seconds start at its own phase (golden-ratio steps), so the
            // stalls of different connections do not end together in one burst of answers.
            let phase = Duration::from_secs_f64((i as f64 * 0.618_033_988_7).fract());
            let _ = s.set_nodelay(true);
            // A connection left open by a tool that died still ends its thread.
            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            let spawned = std::thread::Builder::new().stack_size(64 << 10).spawn(move || {
                let mut buf = [0u8; MESSAGE.len()];
                while s.read_exact(&mut buf).is_ok() {
                    let due = answer_time(epoch, phase, Instant::now() + delay, stall);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
            if let Err(e) = spawned {
                eprintln!("goon_latency: stall target: cannot start thread: {e}");
            }
        }
    });
    addr
}

/// When an answer due at `due` goes out: then, or at the end of the stall it falls in (the first
/// `stall` of every second of the connection's clock, which runs `phase` ahead of `epoch`'s).
fn answer_time(epoch: Instant, phase: Duration, due: Instant, stall: Duration) -> Instant {
    let into = due.saturating_duration_since(epoch) + phase;
    let within = into - Duration::from_secs(into.as_secs());
    due + stall.saturating_sub(within)
}

/// The stall target's latencies for a client with no overhead at all, simulated from the
/// server's rule: each connection's slots at a random phase against the server's second, a
/// message read at its slot or when the previous answer went out (the server reads one message
/// at a time), answered `delay` later or at the end of the stall that falls in. What a tool
/// measures above this is its own overhead plus the server's (its sleeps overshoot).
fn stall_model(c: &Setup, delay: Duration, stall: Duration) -> Figures {
    let mut rng = fastrand::Rng::with_seed(0x6e65_7466);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (d, s, period) = (delay.as_secs_f64(), stall.as_secs_f64(), 1.0 / c.rate);
    let mut max = 0.0f64;
    for _ in 0..c.n {
        let phase = rng.f64();
        let mut answered = f64::MIN;
        for k in 0..(c.rate * c.secs as f64) as u64 {
            let slot = phase + k as f64 * period;
            let due = slot.max(answered) + d;
            answered = due + (s - due.fract()).max(0.0);
            let l = answered - slot;
            max = max.max(l);
            h.saturating_record(((l * 1e6) as u64).clamp(1, 60_000_000));
        }
    }
    let pct = |q: f64| h.value_at_quantile(q) as f64;
    Figures {
        us: [pct(0.5), pct(0.9), pct(0.99), pct(0.999), max * 1e6],
        sent_per_s: c.rate * c.n as f64,
        answered_per_s: c.rate * c.n as f64,
        cpu_s: None,
    }
}

/// A figure over the rounds: its median, lowest and highest.
type Spread = (f64, f64, f64);

struct Setup {
    n: u64,
    rate: f64,
    secs: u64,
    rounds: u64,
    dial_rate: u64,
}

/// The rounds against one target, their table, and goon's verdict against the reference.
fn run_target(
    target: &str,
    addr: SocketAddr,
    tools: &[&str],
    kali: Option<&std::path::Path>,
    c: &Setup,
    model: Option<Figures>,
) {
    println!();
    println!("target {target} ({addr})");
    let mut results: Vec<(&str, Vec<Figures>)> = tools.iter().map(|t| (*t, Vec::new())).collect();
    for round in 0..c.rounds as usize {
        for i in 0..tools.len() {
            let tool = tools[(i + round) % tools.len()];
            let f = match tool {
                "goon" => goon(addr, c.n, c.rate, c.secs, c.dial_rate),
                "tcpkali" => kali.and_then(|k| tcpkali(k, addr, c.n, c.rate, c.secs, c.dial_rate)),
                _ => blocking(addr, c.n, c.rate, c.secs, c.dial_rate),
            };
            match f {
                Some(f) => {
                    println!(
                        "  round {round} {tool:<8} p50/p90/p99/p99.9/max {} sent {:.0}/s answered {:.0}/s{}",
                        f.us.iter().map(|u| fmt_us(*u)).collect::<Vec<_>>().join("/"),
                        f.sent_per_s,
                        f.answered_per_s,
                        f.cpu_s.map_or(String::new(), |c| format!(" cpu {c:.2}s"))
                    );
                    if let Some((_, v)) = results.iter_mut().find(|(t, _)| *t == tool) {
                        v.push(f);
                    }
                }
                None => println!("  round {round} {tool:<8} failed"),
            }
        }
    }
    println!(
        "{:<9} {:>18} {:>18} {:>18} {:>18} {:>18} {:>9} {:>9} {:>6}",
        "tool", "p50", "p90", "p99", "p99.9", "max", "sent/s", "answ/s", "cpu s"
    );
    // Per tool: the median of each percentile and its range over the rounds.
    let mut summary: Vec<(&str, [Spread; 5])> = Vec::new();
    for (tool, v) in &results {
        if v.is_empty() {
            continue;
        }
        let mut cells = Vec::new();
        let mut med = [(0.0, 0.0, 0.0); 5];
        for (q, m) in med.iter_mut().enumerate() {
            let mut xs: Vec<f64> = v.iter().map(|f| f.us[q]).collect();
            let mid = median(&mut xs);
            *m = (mid, xs[0], xs[xs.len() - 1]);
            cells.push(format!("{} ({}-{})", fmt_us(mid), fmt_us(m.1), fmt_us(m.2)));
        }
        let mut s: Vec<f64> = v.iter().map(|f| f.sent_per_s).collect();
        let mut a: Vec<f64> = v.iter().map(|f| f.answered_per_s).collect();
        let mut cpu: Vec<f64> = v.iter().filter_map(|f| f.cpu_s).collect();
        println!(
            "{:<9} {:>18} {:>18} {:>18} {:>18} {:>18} {:>9.0} {:>9.0} {:>6}",
            tool,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            median(&mut s),
            median(&mut a),
            if cpu.is_empty() { "-".into() } else { format!("{:.2}", median(&mut cpu)) }
        );
        summary.push((tool, med));
    }
    if let Some(m) = model {
        println!(
            "{:<9} {:>18} {:>18} {:>18} {:>18} {:>18}",
            "model",
            fmt_us(m.us[0]),
            fmt_us(m.us[1]),
            fmt_us(m.us[2]),
            fmt_us(m.us[3]),
            fmt_us(m.us[4])
        );
        for (tool, med) in &summary {
            let r: Vec<String> = med.iter().zip(m.us.iter()).map(|((x, _, _), m)| format!("{:.3}", x / m)).collect();
            println!("{target}: {tool}/model (medians) p50/p90/p99/p99.9/max: {}", r.join(" / "));
        }
    }
    let get = |t: &str| summary.iter().find(|(n, _)| *n == t).map(|(_, m)| *m);
    let Some(reference) = get("blocking") else { return };
    for tool in ["goon", "tcpkali"] {
        let Some(m) = get(tool) else { continue };
        let cells: Vec<String> = m
            .iter()
            .zip(reference.iter())
            .map(|((x, _, _), (r, lo, hi))| {
                let ratio = x / r;
                let verdict = if (ratio - 1.0).abs() <= 0.001 {
                    "match"
                } else if hi / lo > SETTLED_SPREAD {
                    // A range that wide would call almost anything a match.
                    "unsettled"
                } else if (*lo..=*hi).contains(x) {
                    "match"
                } else {
                    "outside"
                };
                format!("{ratio:.3} ({verdict})")
            })
            .collect();
        println!("{target}: {tool}/blocking (medians) p50/p90/p99/p99.9/max: {}", cells.join(" / "));
    }
    let spread: Vec<String> = reference.iter().map(|(_, lo, hi)| format!("{:.3}", hi / lo)).collect();
    println!("{target}: the reference's own spread (max/min over rounds): {}", spread.join(" / "));
}

/// `GOON_LAT_TOGETHER`: goon and the reference at once, half the connections each; per round
/// goon ÷ reference at each percentile.
fn run_together(target: &str, addr: SocketAddr, c: &Setup) {
    let (n_goon, n_ref) = (c.n / 2, c.n - c.n / 2);
    println!();
    println!("target {target} ({addr}), together: goon {n_goon} and the reference {n_ref} connections at once");
    let mut ratios: Vec<[f64; 5]> = Vec::new();
    for round in 0..c.rounds as usize {
        let (rate, secs, dial) = (c.rate, c.secs, c.dial_rate);
        let g = std::thread::spawn(move || goon(addr, n_goon, rate, secs, dial));
        let b = blocking(addr, n_ref, rate, secs, dial);
        let g = g.join().ok().flatten();
        let (Some(g), Some(b)) = (g, b) else {
            println!("  round {round} failed (goon or the reference gave no figures; see above)");
            continue;
        };
        let show = |f: &Figures| f.us.iter().map(|u| fmt_us(*u)).collect::<Vec<_>>().join("/");
        println!("  round {round} goon     p50/p90/p99/p99.9/max {} sent {:.0}/s", show(&g), g.sent_per_s);
        println!("  round {round} blocking p50/p90/p99/p99.9/max {} sent {:.0}/s", show(&b), b.sent_per_s);
        let r: [f64; 5] = std::array::from_fn(|q| g.us[q] / b.us[q]);
        println!("  round {round} goon/blocking {}", r.map(|x| format!("{x:.3}")).join(" / "));
        ratios.push(r);
    }
    if ratios.is_empty() {
        return;
    }
    let cells: Vec<String> = (0..5)
        .map(|q| {
            let mut xs: Vec<f64> = ratios.iter().map(|r| r[q]).collect();
            let mid = median(&mut xs);
            let (lo, hi) = (xs[0], xs[xs.len() - 1]);
            let verdict = if (mid - 1.0).abs() <= 0.001 {
                "match"
            } else if hi < 1.0 {
                "lower in every round"
            } else if lo > 1.0 {
                "higher in every round"
            } else {
                "either side"
            };
            format!("{mid:.3} ({lo:.3}-{hi:.3}, {verdict})")
        })
        .collect();
    println!(
        "{target}, together: goon/blocking per round, median (range) p50/p90/p99/p99.9/max: {}",
        cells.join(" / ")
    );
}

fn main() {
    let setup = Setup {
        n: knobs::num("GOON_LAT_N", 1..=9000, 1000),
        rate: knobs::num("GOON_LAT_RATE", 0.01..=100_000.0, 10.0),
        secs: knobs::num("GOON_LAT_SECS", 1..=120, 8),
        rounds: knobs::num("GOON_LAT_ROUNDS", 1..=20, 3),
        dial_rate: knobs::num("GOON_LAT_DIAL_RATE", 1..=1_000_000, 5000),
    };
    let delay = Duration::from_millis(knobs::num("GOON_LAT_DELAY_MS", 1..=900, 5));
    let stall = Duration::from_millis(knobs::num("GOON_LAT_STALL_MS", 1..=900, 150));
    let targets: Vec<String> =
        knobs::words("GOON_LAT_TARGET", &TARGETS).unwrap_or_else(|| TARGETS.map(String::from).to_vec());
    let only = knobs::words("GOON_LAT_ONLY", &TOOLS);
    let kali = tcpkali_bin();
    let mut tools: Vec<&str> = TOOLS.to_vec();
    tools.retain(|t| only.as_ref().is_none_or(|o| o.iter().any(|x| x == t)));
    if kali.is_none() && tools.contains(&"tcpkali") {
        println!("goon_latency: tcpkali not found (../shared/peers/bin or GOON_LAT_PEERS): skipped");
        tools.retain(|t| *t != "tcpkali");
    }
    println!(
        "goon_latency: {} connections x {}/s = {}/s for {}s, {} rounds; targets {} (stall: answers {delay:?} after each message, none in the first {stall:?} of each second)",
        setup.n,
        setup.rate,
        setup.rate * setup.n as f64,
        setup.secs,
        setup.rounds,
        targets.join(",")
    );
    let together = knobs::word("GOON_LAT_TOGETHER", &["on", "off"], "off") == "on";
    for target in &targets {
        if together {
            let srv = (target == "echo").then(serve);
            let addr = srv.as_ref().map_or_else(|| stall_server(delay, stall), |s| s.addr);
            run_together(target, addr, &setup);
        } else if target == "echo" {
            let srv = serve();
            run_target("echo", srv.addr, &tools, kali.as_deref(), &setup, None);
        } else {
            let model = stall_model(&setup, delay, stall);
            run_target("stall", stall_server(delay, stall), &tools, kali.as_deref(), &setup, Some(model));
        }
    }
    println!("(the histograms keep 3 significant digits: a ratio within 0.999..1.001 is a match, as is a median inside the reference's own range while that range is within {SETTLED_SPREAD}x; a wider one is unsettled)");
}

//! `netforge proxy` end to end: real backends (std listeners in threads, or `netforge serve`),
//! the real binary in between, every wait bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::process::Command;

use crate::util::{
    admin_line, metric, metrics, netforge, proxy_conf as conf, refusing_addr, run, serve, short_session, spawn_proxy,
    with_timeout, write_temp, Proc, BIN,
};

const T: Duration = Duration::from_secs(60);

fn write_conf(text: &str) -> std::path::PathBuf {
    write_temp("lb.toml", text)
}

struct Proxy {
    p: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// A proxy on `text` written to a file (returned, for reloads), with `args` added and its log
/// at info level (reload lines included).
fn proxy_from_file(text: &str, args: &[&str]) -> (Proxy, std::path::PathBuf) {
    let path = write_conf(text);
    let mut cmd = netforge();
    cmd.arg("proxy").arg("--conf").arg(&path).args(args).env("RUST_LOG", "info");
    (start_proxy(cmd), path)
}

fn proxy(text: &str) -> Proxy {
    let path = write_conf(text);
    let mut cmd = netforge();
    cmd.arg("proxy").arg("--conf").arg(&path);
    start_proxy(cmd)
}

/// Spawns `cmd` (a `netforge proxy`, possibly behind `sh -c ... exec`) and reads the listener
/// and admin addresses from its first two lines.
fn start_proxy(cmd: Command) -> Proxy {
    let (p, addr, admin) = spawn_proxy(cmd);
    Proxy { p, addr, admin }
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Polls `/metrics` until `pred` holds, or panics after `d`.
fn wait_metrics(admin: SocketAddr, d: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + d;
    loop {
        let m = metrics(admin);
        if pred(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} not seen within {d:?}:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A std echo server on a thread that counts the connections it accepted. Its port is held
/// (`HeldPort`) for the whole test, so after `kill` it refuses connects and no other test can
/// take the port.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// The accepting thread's listener (same socket): shut down to stop listening.
    listener: TcpListener,
    _port: crate::util::HeldPort,
}

impl Echo {
    fn start() -> Echo {
        let port = crate::util::HeldPort::new();
        let l = port.listen();
        let listener = l.try_clone().unwrap();
        let addr = port.addr;
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                a.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                    let _ = c.shutdown(Shutdown::Write);
                });
            }
        });
        Echo { addr, accepted, stop, listener, _port: port }
    }

    /// Stops listening, as if the process died: new connects are refused, the port stays held.
    /// (`shutdown` on a listening socket ends its listen state and wakes the blocked `accept`.)
    fn kill(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Read);
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.kill();
    }
}

fn roundtrip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = client(addr);
    s.write_all(msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    back
}

/// Streaming FNV-1a, so chunk boundaries do not matter.
fn fnv(h: &mut u64, data: &[u8]) {
    for b in data {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

const NO_HEALTH: &str = "enabled = false";

#[test]
fn round_robin_spreads_evenly_over_three_backends() {
    with_timeout(T, || {
        let echoes: Vec<Echo> = (0..3).map(|_| Echo::start()).collect();
        let addrs: Vec<SocketAddr> = echoes.iter().map(|e| e.addr).collect();
        let px = proxy(&conf(&addrs, "threads = 1\nbalance = \"round_robin\"", NO_HEALTH));
        for i in 0..30u8 {
            assert_eq!(roundtrip(px.addr, &[i; 100]), vec![i; 100]);
        }
        let counts: Vec<usize> = echoes.iter().map(|e| e.accepted.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, vec![10, 10, 10]);
    });
}

fn hundred_half_close_exchanges(splice: &'static str) {
    with_timeout(T, move || {
        let (_s1, b1) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"]);
        let (_s2, b2) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"]);
        let px = proxy(&conf(&[b1, b2], &format!("threads = 2\nsplice = \"{splice}\""), NO_HEALTH));
        let addr = px.addr;
        let workers: Vec<_> = (0..10u64)
            .map(|w| {
                std::thread::spawn(move || {
                    for k in 0..10u64 {
                        let mut rng = fastrand::Rng::with_seed(w * 100 + k);
                        let mut data = vec![0u8; 64 * 1024];
                        rng.fill(&mut data);
                        let mut s = client(addr);
                        let mut wr = s.try_clone().unwrap();
                        let sent = data.clone();
                        let writer = std::thread::spawn(move || {
                            wr.write_all(&sent).unwrap();
                            wr.shutdown(Shutdown::Write).unwrap();
                        });
                        let mut back = Vec::new();
                        s.read_to_end(&mut back).unwrap();
                        writer.join().unwrap();
                        assert!(back == data, "exchange {w}/{k}: {} bytes back of {}", back.len(), data.len());
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        // Counters reach /metrics on the reactors' next tick.
        let m = wait_metrics(px.admin, Duration::from_secs(5), "100 sessions closed", |m| {
            metric(m, "netforge_proxy_sessions_closed_total{reason=\"done\"}") == Some(100.0)
        });
        assert_eq!(metric(&m, "netforge_proxy_connections_total{listener=\"listener0\"}"), Some(100.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"client_reset\"}"), Some(0.0), "{m}");
        // Every exchange was 64 KiB each way: "on" splices all of it, "off" none, "auto"
        // switches each bulk direction over after its first full read.
        let spliced = metric(&m, "netforge_proxy_forwarded_bytes_total{method=\"splice\"}").unwrap();
        let copied = metric(&m, "netforge_proxy_forwarded_bytes_total{method=\"copy\"}").unwrap();
        assert_eq!(spliced + copied, 2.0 * 100.0 * 65536.0, "{m}");
        match splice {
            "on" => assert_eq!(copied, 0.0, "{m}"),
            "off" => assert_eq!(spliced, 0.0, "{m}"),
            _ => assert!(spliced > 0.0, "{m}"),
        }
        assert_eq!(metric(&m, "netforge_proxy_buffers_in_use{kind=\"ring\"}"), Some(0.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_buffers_in_use{kind=\"pipe\"}"), Some(0.0), "{m}");
    });
}

/// Urgent data stops a read at its mark with bytes behind it, and a splice there says EAGAIN:
/// the bytes after the mark must still be forwarded, on the copy path (which drops a read edge
/// on a short read) and on the splice path.
fn forwards_the_bytes_behind_urgent_data(splice: &'static str) {
    with_timeout(T, move || {
        let (_s, b) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"]);
        let px = proxy(&conf(&[b], &format!("threads = 1\nsplice = \"{splice}\""), NO_HEALTH));
        let got = crate::util::urgent_round_trip(px.addr, b"abc", b"d", b"efg", 6);
        assert_eq!(got, b"abcefg", "splice {splice}: the bytes behind the urgent mark come back");
    });
}

#[test]
fn the_copy_path_forwards_the_bytes_behind_urgent_data() {
    forwards_the_bytes_behind_urgent_data("off");
}

#[test]
fn the_splice_path_forwards_the_bytes_behind_urgent_data() {
    forwards_the_bytes_behind_urgent_data("on");
}

#[test]
fn hundred_half_close_exchanges_are_byte_exact_splice_off() {
    hundred_half_close_exchanges("off");
}

#[test]
fn hundred_half_close_exchanges_are_byte_exact_splice_on() {
    hundred_half_close_exchanges("on");
}

#[test]
fn hundred_half_close_exchanges_are_byte_exact_splice_auto() {
    hundred_half_close_exchanges("auto");
}

/// Sessions whose backend does not read park the bytes in pooled rings, one per session, and
/// stop reading their clients; once the backend has read everything the rings are back in the
/// pool, which keeps at most its high-water mark (8) of them and frees the rest. The counts
/// add up: created = cached + freed with none in use, and no take was refused.
#[test]
fn parked_rings_go_back_to_a_pool_that_caches_at_most_its_high_water_mark() {
    with_timeout(Duration::from_secs(120), || {
        const N: usize = 12;
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let px = proxy(&conf(&[backend.local_addr().unwrap()], "threads = 1\nsplice = \"off\"", NO_HEALTH));
        let clients: Vec<TcpStream> = (0..N).map(|_| client(px.addr)).collect();
        backend.set_nonblocking(false).unwrap();
        let accepted: Vec<TcpStream> = (0..N).map(|_| backend.accept().unwrap().0).collect();
        for c in &clients {
            c.set_nonblocking(true).unwrap();
        }
        // Write until every session holds a full ring: the proxy's socket buffers to the
        // backend fill first, then one ring each, then it stops reading the clients.
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        'fill: loop {
            for _ in 0..16 {
                for mut c in &clients {
                    match c.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("client write: {e}"),
                    }
                }
            }
            let m = metrics(px.admin);
            if metric(&m, "netforge_proxy_buffers_in_use{kind=\"ring\"}") == Some(N as f64) {
                break 'fill;
            }
            assert!(Instant::now() < deadline, "not every session parked bytes after {sent} bytes:\n{m}");
        }
        for c in &clients {
            c.set_nonblocking(false).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        }
        // The backend reads it all: each session's FIN follows its parked bytes.
        let mut got = 0usize;
        for mut b in accepted {
            b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut sink = Vec::new();
            b.read_to_end(&mut sink).unwrap();
            got += sink.len();
        }
        assert_eq!(got, sent);
        let m = wait_metrics(px.admin, Duration::from_secs(10), "rings back in the pool", |m| {
            metric(m, "netforge_proxy_buffers_in_use{kind=\"ring\"}") == Some(0.0)
        });
        let ring = |family: &str| {
            metric(&m, &format!("{family}{{kind=\"ring\"}}")).unwrap_or_else(|| panic!("{family}:\n{m}"))
        };
        let (cached, created, freed) = (
            ring("netforge_proxy_buffers_cached"),
            ring("netforge_proxy_buffers_created_total"),
            ring("netforge_proxy_buffers_freed_total"),
        );
        assert!(cached <= 8.0, "{m}");
        assert!(created >= N as f64, "{N} rings were out at once: {m}");
        assert!(freed >= created - 8.0, "{m}");
        assert_eq!(created, cached + freed, "{m}");
        assert_eq!(ring("netforge_proxy_buffers_exhausted_total"), 0.0, "{m}");
        drop(clients);
    });
}

fn large_transfer_both_ways(splice: &'static str) {
    with_timeout(Duration::from_secs(120), move || {
        let (_s, b) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"]);
        let px = proxy(&conf(&[b], &format!("threads = 1\nsplice = \"{splice}\""), NO_HEALTH));
        const TOTAL: usize = 64 << 20;
        let mut s = client(px.addr);
        let mut wr = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(42);
            let mut chunk = vec![0u8; 256 * 1024];
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            let mut sent = 0;
            while sent < TOTAL {
                rng.fill(&mut chunk);
                fnv(&mut h, &chunk);
                wr.write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            wr.shutdown(Shutdown::Write).unwrap();
            h
        });
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            fnv(&mut h, &buf[..n]);
            got += n;
        }
        let sent_hash = writer.join().unwrap();
        assert_eq!(got, TOTAL);
        assert_eq!(h, sent_hash, "checksum of the echo differs from what was sent");
        let m = wait_metrics(px.admin, Duration::from_secs(5), "bytes counted", |m| {
            metric(m, "netforge_proxy_bytes_total{direction=\"backend_to_client\"}") == Some(TOTAL as f64)
        });
        let spliced = metric(&m, "netforge_proxy_forwarded_bytes_total{method=\"splice\"}").unwrap();
        match splice {
            "off" => assert_eq!(spliced, 0.0, "{m}"),
            "on" => assert_eq!(spliced, 2.0 * TOTAL as f64, "{m}"),
            _ => assert!(spliced > TOTAL as f64, "a bulk transfer should mostly splice: {m}"),
        }
    });
}

#[test]
fn large_transfer_is_byte_exact_both_ways_splice_off() {
    large_transfer_both_ways("off");
}

#[test]
fn large_transfer_is_byte_exact_both_ways_splice_on() {
    large_transfer_both_ways("on");
}

#[test]
fn large_transfer_is_byte_exact_both_ways_splice_auto() {
    large_transfer_both_ways("auto");
}

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap()
}

fn slow_reader_blocks_the_writer(splice: &'static str) {
    with_timeout(T, move || {
        // A backend that accepts and never reads.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = l.local_addr().unwrap();
        let (held_tx, held_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            if let Ok((c, _)) = l.accept() {
                let _ = held_tx.send(c);
            }
        });
        let px = proxy(&conf(&[b], &format!("threads = 1\nsplice = \"{splice}\""), NO_HEALTH));
        let rss_before = rss_kib(px.p.child.id());
        let mut s = client(px.addr);
        s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        let blocked = loop {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break true,
                Err(e) => panic!("write failed: {e}"),
            }
            if written > 256 << 20 {
                break false;
            }
        };
        assert!(blocked, "wrote {written} bytes without blocking: no backpressure");
        assert!(written < 32 << 20, "{written} bytes accepted before blocking");
        let rss_after = rss_kib(px.p.child.id());
        eprintln!("slow reader: client blocked after {written} bytes; proxy RSS {rss_before} -> {rss_after} KiB");
        assert!(rss_after < rss_before + 16 * 1024, "proxy RSS grew from {rss_before} to {rss_after} KiB");
        drop(held_rx);
    });
}

#[test]
fn slow_reader_blocks_the_writer_and_memory_stays_bounded() {
    slow_reader_blocks_the_writer("off");
}

#[test]
fn slow_reader_blocks_the_writer_and_memory_stays_bounded_splice_on() {
    slow_reader_blocks_the_writer("on");
}

#[test]
fn refused_backend_is_retried_on_another() {
    with_timeout(T, || {
        let (_dead, dead) = refusing_addr();
        let live = Echo::start();
        let px = proxy(&conf(&[dead, live.addr], "threads = 1\nbalance = \"round_robin\"\nretries = 1", NO_HEALTH));
        for i in 0..10u8 {
            assert_eq!(roundtrip(px.addr, &[i; 10]), vec![i; 10], "session {i}");
        }
        assert_eq!(live.accepted.load(Ordering::Relaxed), 10);
        let m = wait_metrics(px.admin, Duration::from_secs(5), "connect failures", |m| {
            metric(m, "netforge_proxy_backend_connect_failures_total{group=\"default\",backend=\"b0\"}").unwrap_or(0.0)
                >= 1.0
        });
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"connect_failed\"}"), Some(0.0), "{m}");
    });
}

#[test]
fn passive_down_mark_reaches_every_reactor() {
    with_timeout(T, || {
        let (_dead, dead) = refusing_addr();
        let live = Echo::start();
        // Checks off: only passive health takes b0 out, for an interval that outlasts the test.
        let health = "enabled = false\ninterval = \"10s\"\npassive_fall = 1";
        let px = proxy(&conf(&[dead, live.addr], "threads = 2\nbalance = \"round_robin\"\nretries = 1", health));
        let failures = "netforge_proxy_backend_connect_failures_total{group=\"default\",backend=\"b0\"}";
        let marks = "netforge_proxy_backend_passive_down_total{group=\"default\",backend=\"b0\"}";
        // Round-robin starts at b0 on every reactor: the first session's reactor dials it, is
        // refused, marks it down and retries on b1.
        assert_eq!(roundtrip(px.addr, b"first"), b"first");
        // The coordinator relays a mark before it publishes the report that counts it: once
        // /metrics shows it, the other reactor has the relay queued ahead of any later client.
        wait_metrics(px.admin, Duration::from_secs(5), "b0 marked down", |m| metric(m, marks) == Some(1.0));
        // SO_REUSEPORT spreads these over both reactors (all on one: odds 2^-39). Without the
        // relay the other reactor's first session would dial b0 too and mark it a second time.
        const SESSIONS: u8 = 40;
        for i in 1..SESSIONS {
            assert_eq!(roundtrip(px.addr, &[i; 10]), vec![i; 10], "session {i}");
        }
        assert_eq!(live.accepted.load(Ordering::Relaxed), usize::from(SESSIONS));
        let m = wait_metrics(px.admin, Duration::from_secs(5), "every session closed", |m| {
            metric(m, "netforge_proxy_sessions_closed_total{reason=\"done\"}") == Some(f64::from(SESSIONS))
        });
        assert_eq!(metric(&m, failures), Some(1.0), "b0 dialled again after its mark:\n{m}");
        assert_eq!(metric(&m, marks), Some(1.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"connect_failed\"}"), Some(0.0), "{m}");
        px.p.signal(15);
        let (status, _, err) = px.p.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0));
        assert_eq!(err.matches("is DOWN proxy-wide for 10s (1 failed connects: refused)").count(), 1, "{err}");
    });
}

#[test]
fn health_checks_take_a_backend_down_and_up() {
    with_timeout(T, || {
        // The port stays held while b0 is down, so no other test can take it before it is up again.
        let port = crate::util::HeldPort::new();
        let a = port.addr;
        let l = port.listen();
        let other = Echo::start();
        let health = "interval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2\njitter_pct = 0";
        let px = proxy(&conf(&[a, other.addr], "threads = 2", health));
        let up = "netforge_proxy_backend_up{group=\"default\",backend=\"b0\"}";
        wait_metrics(px.admin, Duration::from_secs(10), "b0 up", |m| metric(m, up) == Some(1.0));
        drop(l);
        let m = wait_metrics(px.admin, Duration::from_secs(10), "b0 down", |m| metric(m, up) == Some(0.0));
        // Sessions now all go to the healthy backend. Counted by the proxy, not by the echo
        // server, which also counts the health checks (one every 100 ms).
        let (closed, b0, b1) =
            (closed_sessions(&m), metric(&m, &backend_sessions("b0")), metric(&m, &backend_sessions("b1")).unwrap());
        for i in 0..6u8 {
            assert_eq!(roundtrip(px.addr, &[i; 4]), vec![i; 4]);
        }
        let m = wait_metrics(px.admin, Duration::from_secs(10), "6 more sessions closed", |m| {
            closed_sessions(m) >= closed + 6.0
        });
        assert_eq!(closed_sessions(&m), closed + 6.0, "{m}");
        assert_eq!(metric(&m, &backend_sessions("b1")), Some(b1 + 6.0), "{m}");
        assert_eq!(metric(&m, &backend_sessions("b0")), b0, "{m}");
        let _l = port.listen();
        wait_metrics(px.admin, Duration::from_secs(10), "b0 up again", |m| metric(m, up) == Some(1.0));
        px.p.signal(15);
        let (status, _, err) = px.p.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0));
        assert!(err.contains("is DOWN (2 failed checks: refused)"), "{err}");
    });
}

#[test]
fn sigterm_lets_a_running_transfer_finish() {
    with_timeout(T, || {
        let (_s, b) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"]);
        let px = proxy(&conf(&[b], "threads = 1\ndrain_timeout = \"20s\"", NO_HEALTH));
        let mut s = client(px.addr);
        s.write_all(b"ping").unwrap();
        let mut four = [0u8; 4];
        s.read_exact(&mut four).unwrap();
        px.p.signal(15);
        // The session goes on after the signal: 4 MiB more each way, then FIN.
        let mut wr = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![3u8; 64 * 1024];
            for _ in 0..64 {
                wr.write_all(&chunk).unwrap();
            }
            wr.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back.len(), 64 * 64 * 1024);
        assert!(back.iter().all(|b| *b == 3));
        let (status, out, _) = px.p.finish(Duration::from_secs(25));
        assert_eq!(status.code(), Some(0));
        assert!(out.contains("stopped; 0 sessions cut"), "{out}");
    });
}

#[test]
fn metrics_are_prometheus_text() {
    with_timeout(T, || {
        let e = Echo::start();
        let px = proxy(&conf(&[e.addr], "threads = 2", NO_HEALTH));
        assert_eq!(roundtrip(px.addr, b"hello"), b"hello");
        let m = wait_metrics(px.admin, Duration::from_secs(5), "bytes", |m| {
            metric(m, "netforge_proxy_bytes_total{direction=\"backend_to_client\"}") == Some(5.0)
        });
        let mut series = 0;
        for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}"));
            let bare = name.split('{').next().unwrap();
            assert!(bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name: {line}");
            if let Some(labels) = name.strip_prefix(bare) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels: {line}");
                }
            }
            series += 1;
        }
        assert!(series > 20, "{m}");
        // The README's metrics table lists every family /metrics exports.
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section =
            readme.split("### Metrics\n").nth(1).and_then(|r| r.split("\n### ").next()).expect("README metrics");
        let families: Vec<&str> = m.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        assert!(families.len() >= 17, "{m}");
        for f in families {
            assert!(section.contains(&format!("| `{f}` |")), "README.md's metrics table lacks {f}");
        }
        for want in [
            "netforge_proxy_connections_total{listener=\"listener0\"} 1",
            "netforge_proxy_backend_up{group=\"default\",backend=\"b0\"} 1",
            "netforge_proxy_backend_connect_seconds_count 1",
        ] {
            assert!(m.contains(want), "missing {want}:\n{m}");
        }
    });
}

#[test]
fn bad_configs_exit_1_with_one_line() {
    with_timeout(T, || {
        let cases = [
            ("threads = 1\nbogus = 3\n[[listener]]\naddress = \"127.0.0.1:0\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n", "bogus"),
            ("[[listener]]\naddress = \"127.0.0.1:0\"\n", "backend"),
            ("[[listener]]\naddress = \"127.0.0.1:0\"\n[[backend]]\naddress = \"127.0.0.1:0\"\n", "port 0"),
            ("balance = \"fastest\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n", "fastest"),
        ];
        for (text, needle) in cases {
            let path = write_conf(text);
            let (code, out, err) = run(&["proxy", "--conf", path.to_str().unwrap()], Duration::from_secs(10));
            assert_eq!(code, 1, "{text}\n{out}{err}");
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{err}");
            assert!(lines[0].starts_with("netforge: ") && lines[0].contains(needle), "{err}");
        }
        let (code, _, err) = run(&["proxy", "--lb", "fastest", "127.0.0.1:8001"], Duration::from_secs(10));
        assert_eq!(code, 1);
        assert!(err.starts_with("netforge: --lb"), "{err}");
    });
}

#[test]
fn quick_start_flags_print_config() {
    with_timeout(T, || {
        let (code, out, err) = run(
            &[
                "proxy",
                "--laddr",
                "127.0.0.1:4000",
                "--lb",
                "random",
                "--timeout",
                "2s",
                "127.0.0.1:8001",
                "127.0.0.1:8002",
                "--print-config",
            ],
            Duration::from_secs(10),
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("[[listener]]") && out.contains("127.0.0.1:8002") && out.contains("random"), "{out}");
    });
}

#[test]
fn sighup_reloads_backends_and_sigusr1_prints_a_summary() {
    with_timeout(T, || {
        let first = Echo::start();
        let second = Echo::start();
        let text = conf(&[first.addr], "threads = 2", NO_HEALTH);
        let path = write_conf(&text);
        let mut cmd = netforge();
        cmd.arg("proxy").arg("--conf").arg(&path).env("RUST_LOG", "info");
        let p = Proc::spawn(cmd);
        let line = p.line(Duration::from_secs(10));
        let addr: SocketAddr = line
            .strip_prefix("netforge proxy: listening on ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        let admin = admin_line(&p);
        assert_eq!(roundtrip(addr, b"one"), b"one");
        assert_eq!(first.accepted.load(Ordering::Relaxed), 1);
        let m = metrics(admin);
        assert_eq!(metric(&m, "netforge_proxy_config_generation"), Some(0.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_config_generation_applied"), Some(0.0), "{m}");
        // Same listener, a different backend: applied to new sessions after SIGHUP, by each
        // reactor when it takes the command. Once the coordinator says every reactor runs the
        // new generation, no session may reach the old backend.
        std::fs::write(&path, conf(&[second.addr], "threads = 2", NO_HEALTH)).unwrap();
        p.signal(1);
        let sent = wait_stderr(&p, Duration::from_secs(10), "proxy: reloaded");
        assert!(sent.ends_with("1 backend in 1 group; generation 1 goes to the reactors"), "{sent}");
        let applied = wait_stderr(&p, Duration::from_secs(10), "applied by every reactor");
        assert!(
            applied.ends_with("proxy: configuration generation 1 applied by every reactor (2 reactors)"),
            "{applied}"
        );
        let m = metrics(admin);
        assert_eq!(metric(&m, "netforge_proxy_config_generation"), Some(1.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_config_generation_applied"), Some(1.0), "{m}");
        // Enough sessions that both reactors take some (the kernel spreads them by port hash).
        for _ in 0..20 {
            assert_eq!(roundtrip(addr, b"y"), b"y");
        }
        assert_eq!(first.accepted.load(Ordering::Relaxed), 1, "the old backend got sessions after the reload");
        assert_eq!(second.accepted.load(Ordering::Relaxed), 20);
        p.signal(10);
        let summary = p.wait_line(Duration::from_secs(10), |l| l.starts_with("proxy: active"));
        assert!(summary.contains("errors 0"), "{summary}");
        p.signal(15);
        let (status, _, _) = p.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0));
    });
}

#[test]
fn client_idle_timeout_closes_the_session() {
    with_timeout(T, || {
        let e = Echo::start();
        let text = conf(&[e.addr], "threads = 1", NO_HEALTH)
            .replace("connect = \"1s\"", "connect = \"1s\"\nclient_idle = \"200ms\"\nserver_idle = \"10s\"");
        let px = proxy(&text);
        let mut s = client(px.addr);
        s.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).unwrap();
        // Nothing more is sent: the proxy closes after client_idle (a reset: it is an error).
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty());
        wait_metrics(px.admin, Duration::from_secs(5), "client_idle close", |m| {
            metric(m, "netforge_proxy_errors_total{cause=\"client_idle\"}") == Some(1.0)
        });
    });
}

/// connect, send `msg`, half-close, read to EOF; every error returned, none unwrapped.
fn try_roundtrip(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg)?;
    s.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)?;
    Ok(back)
}

/// utime + stime of `pid` in seconds, from /proc/PID/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after "(comm) ": state is the first; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let hz: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0);
    ticks as f64 / hz
}

/// Waits for a stderr line of `p` containing `needle`, or panics after `d`.
fn wait_stderr(p: &Proc, d: Duration, needle: &str) -> String {
    let deadline = Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match p.stderr.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => panic!("no stderr line with {needle:?} within {d:?}"),
        }
    }
}

fn echo_serve() -> (Proc, SocketAddr) {
    serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"])
}

/// Open-file limit of the proxy in the exhaustion test: a few sessions' worth.
const FD_LIMIT: usize = 64;

#[test]
fn out_of_descriptors_pauses_accepts_without_spinning_then_recovers() {
    with_timeout(T, || {
        let (_b, b) = echo_serve();
        // The default max_connections would fit the limit: ask for more than it allows.
        let path = write_conf(&conf(&[b], "threads = 1\nsplice = \"off\"\nmax_connections = 1000", NO_HEALTH));
        // `ulimit -n` sets the soft and the hard limit, so the proxy cannot raise it.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" proxy --conf \"$1\""));
        cmd.arg(BIN).arg(&path).env("RUST_LOG", "warn");
        let mut px = start_proxy(cmd);
        let pid = px.p.child.id();
        assert_eq!(try_roundtrip(px.addr, b"before").unwrap(), b"before");
        let before = metric(&metrics(px.admin), "netforge_proxy_accept_pauses_total").unwrap();
        // More sessions than the descriptors allow (each needs two): the kernel queues the rest
        // in the backlog, and the proxy runs out of descriptors accepting or dialing them.
        let held: Vec<TcpStream> = (0..FD_LIMIT)
            .map(|i| {
                let mut s = client(px.addr);
                s.write_all(&[i as u8; 8]).unwrap();
                s
            })
            .collect();
        wait_stderr(&px.p, Duration::from_secs(10), "pausing listener");
        // While exhausted, the listener waits on a timer: the process must not burn a core.
        let cpu0 = cpu_secs(pid);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(1)); // the measurement window, not a synchronisation
        let cpu = cpu_secs(pid) - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        assert!(cpu < 0.2 * wall, "proxy used {cpu:.3} s of CPU in {wall:.3} s while out of descriptors");
        assert!(px.p.child.try_wait().unwrap().is_none(), "the proxy exited");
        drop(held);
        // Once the clients are gone, new sessions are served again.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match try_roundtrip(px.addr, b"after") {
                Ok(v) if v == b"after" => break,
                r => assert!(Instant::now() < deadline, "no echo after the clients closed: {r:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let m = wait_metrics(px.admin, Duration::from_secs(5), "accept pauses", |m| {
            metric(m, "netforge_proxy_accept_pauses_total").is_some_and(|v| v > before)
        });
        assert!(px.p.child.try_wait().unwrap().is_none(), "the proxy exited:\n{m}");
    });
}

const FAST_HEALTH: &str = "interval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 2\njitter_pct = 0";

fn backend_up(b: &str) -> String {
    format!("netforge_proxy_backend_up{{group=\"default\",backend=\"{b}\"}}")
}

fn backend_sessions(b: &str) -> String {
    format!("netforge_proxy_backend_sessions_total{{group=\"default\",backend=\"{b}\"}}")
}

/// Sessions closed so far, every reason summed.
fn closed_sessions(m: &str) -> f64 {
    m.lines()
        .filter(|l| l.starts_with("netforge_proxy_sessions_closed_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn killing_a_backend_under_load_fails_no_client_session() {
    with_timeout(T, || {
        let e0 = Echo::start();
        let e1 = Echo::start();
        let (b0, b1) = (e0.addr, e1.addr);
        let px = proxy(&conf(&[b0, b1], "threads = 2\nretries = 2\nbalance = \"round_robin\"", FAST_HEALTH));
        wait_metrics(px.admin, Duration::from_secs(10), "both backends up", |m| {
            metric(m, &backend_up("b0")) == Some(1.0) && metric(m, &backend_up("b1")) == Some(1.0)
        });
        const SESSIONS: u32 = 400;
        const KILL_AFTER: u32 = 100;
        let mut failures = Vec::new();
        for i in 0..SESSIONS {
            if i == KILL_AFTER {
                // As if killed: the listener vanishes, new connects to b1 are refused (and the
                // port stays held, so no other test's listener can appear there).
                e1.kill();
            }
            if let Err(e) = short_session(px.addr, i as u8) {
                failures.push(format!("session {i}: {e}"));
            }
        }
        assert!(failures.is_empty(), "{} client failures: {failures:?}", failures.len());
        // Each reactor's counters reach /metrics on its next report: wait until every session
        // is counted closed (a reactor's report of its last close also carries that session's
        // backend), then compare. A session counted twice or never is still seen below.
        let m = wait_metrics(px.admin, Duration::from_secs(10), "b1 down and every session closed", |m| {
            metric(m, &backend_up("b1")) == Some(0.0) && closed_sessions(m) >= f64::from(SESSIONS)
        });
        assert_eq!(closed_sessions(&m), f64::from(SESSIONS), "{m}");
        assert_eq!(metric(&m, &backend_up("b0")), Some(1.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"connect_failed\"}"), Some(0.0), "{m}");
        let served = metric(&m, &backend_sessions("b0")).unwrap() + metric(&m, &backend_sessions("b1")).unwrap();
        assert_eq!(served, f64::from(SESSIONS), "{m}");
    });
}

#[test]
fn backup_takes_sessions_only_while_the_primary_is_down() {
    with_timeout(T, || {
        let e0 = Echo::start();
        let e1 = Echo::start();
        let (b0, b1) = (e0.addr, e1.addr);
        let text = conf(&[b0, b1], "threads = 2", FAST_HEALTH).replace(
            &format!("name = \"b1\"\naddress = \"{b1}\"\n"),
            &format!("name = \"b1\"\naddress = \"{b1}\"\nbackup = true\n"),
        );
        assert!(text.contains("backup = true"));
        let px = proxy(&text);
        wait_metrics(px.admin, Duration::from_secs(10), "both backends up", |m| {
            metric(m, &backend_up("b0")) == Some(1.0) && metric(m, &backend_up("b1")) == Some(1.0)
        });
        for i in 0..20u8 {
            assert_eq!(roundtrip(px.addr, &[i; 64]), vec![i; 64]);
        }
        let m = wait_metrics(px.admin, Duration::from_secs(5), "20 sessions on b0", |m| {
            metric(m, &backend_sessions("b0")) == Some(20.0)
        });
        assert_eq!(metric(&m, &backend_sessions("b1")), Some(0.0), "the backup took traffic:\n{m}");
        e0.kill();
        wait_metrics(px.admin, Duration::from_secs(10), "b0 down", |m| metric(m, &backend_up("b0")) == Some(0.0));
        for i in 0..20u8 {
            assert_eq!(roundtrip(px.addr, &[i; 64]), vec![i; 64]);
        }
        let m = wait_metrics(px.admin, Duration::from_secs(5), "20 sessions on b1", |m| {
            metric(m, &backend_sessions("b1")) == Some(20.0)
        });
        assert_eq!(metric(&m, &backend_sessions("b0")), Some(20.0), "{m}");
    });
}

#[test]
fn access_log_has_one_debug_line_per_session_end() {
    with_timeout(T, || {
        let e = Echo::start();
        let path = write_conf(&conf(&[e.addr], "threads = 1", NO_HEALTH));
        let mut cmd = netforge();
        cmd.env("RUST_LOG", "debug").arg("proxy").arg("--conf").arg(&path);
        let px = start_proxy(cmd);
        let mut s = client(px.addr);
        let local = s.local_addr().unwrap();
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello");
        let want = format!("session {local} -> b0 {} closed: done after ", e.addr);
        let line = wait_stderr(&px.p, Duration::from_secs(10), &want);
        assert!(line.ends_with("s, c->s 5 B, s->c 5 B"), "{line}");
    });
}

/// Closed sessions leave timer entries behind (lazy cancel, minutes for the idle timeout): after
/// thousands of short sessions a new session must still get its idle timeout.
#[test]
fn idle_timeout_still_fires_after_thousands_of_short_sessions() {
    with_timeout(T, || {
        let (_b, b) = echo_serve();
        // A small session cap makes a small timer heap (3 per session + 4096 spare entries).
        let text = conf(&[b], "threads = 1\nmax_connections = 10", NO_HEALTH)
            .replace("connect = \"1s\"", "connect = \"1s\"\nclient_idle = \"300ms\"\nserver_idle = \"10s\"");
        let px = proxy(&text);
        const WORKERS: u32 = 4;
        const EACH: u32 = 700;
        let addr = px.addr;
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                std::thread::spawn(move || {
                    (0..EACH).filter(|i| short_session(addr, (w * EACH + i) as u8).is_err()).count()
                })
            })
            .collect();
        let failed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(failed, 0);
        let idle_before = metric(&metrics(px.admin), "netforge_proxy_errors_total{cause=\"client_idle\"}").unwrap();
        let mut s = client(px.addr);
        s.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).unwrap();
        // Nothing more is sent: the proxy must close the session after client_idle.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        wait_metrics(px.admin, Duration::from_secs(5), "client_idle close", |m| {
            metric(m, "netforge_proxy_errors_total{cause=\"client_idle\"}") == Some(idle_before + 1.0)
        });
        let err: Vec<String> = px.p.stderr.try_iter().collect();
        assert!(!err.iter().any(|l| l.contains("timer heap full")), "{err:?}");
    });
}

/// Clients that connect the moment the proxy has bound its listener (health checks on, so every
/// backend starts DOWN) wait in the kernel backlog until the first health round has a result
/// for every backend, then are served: none is reset with `no_backend`.
#[test]
fn clients_connecting_at_start_up_wait_for_the_first_health_round() {
    with_timeout(T, || {
        let echo = Echo::start();
        let (_refused, refused) = refusing_addr();
        let health = "interval = \"2s\"\ntimeout = \"1s\"\nrise = 2\nfall = 2";
        let px = proxy(&conf(&[echo.addr, refused], "threads = 2", health));
        let clients: Vec<_> = (0..8u8)
            .map(|i| {
                let addr = px.addr;
                std::thread::spawn(move || try_roundtrip(addr, &[i; 16]).map(|b| (i, b)))
            })
            .collect();
        for c in clients {
            let (i, back) = c.join().unwrap().expect("early client served");
            assert_eq!(back, vec![i; 16]);
        }
        let m = metrics(px.admin);
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"no_backend\"}"), Some(0.0), "{m}");
        px.p.signal(15);
        let (status, _, _) = px.p.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0));
    });
}

/// Connects a client to `addr` and writes `msg` while the proxy is at its cap of one session
/// (held by `holder`), then frees the cap: the proxy accepts a client whose bytes are already
/// queued, which is the case smart_connect acts on. Returns the echo.
fn early_bytes_session(addr: SocketAddr, holder: TcpStream, msg: &[u8]) -> Vec<u8> {
    let mut s = client(addr);
    // On loopback write(2) returns once the bytes sit in the accepted-but-unclaimed socket.
    s.write_all(msg).unwrap();
    drop(holder);
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    back
}

/// A client connected through the proxy and known to be piped to a backend (one echo done).
fn held_session(addr: SocketAddr) -> TcpStream {
    let mut s = client(addr);
    s.write_all(b"hold").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hold");
    s
}

#[test]
fn smart_connect_forwards_early_bytes_and_retries_them_after_a_refused_connect() {
    with_timeout(T, || {
        let (_dead, dead) = refusing_addr();
        let live = Echo::start();
        // The holder sessions use their own listener and group, so only the early-bytes sessions
        // move the main group's round-robin: they alternate between dialing the refused backend
        // first (the write after connect fails, the bytes wait in the ring for the retry) and
        // the live one (the bytes leave with the connect).
        let text = format!(
            "threads = 1\nmax_connections = 1\nbalance = \"round_robin\"\nretries = 1\n\
             [timeouts]\nconnect = \"1s\"\n[health]\nenabled = false\npassive_fall = 0\n\
             [admin]\naddress = \"127.0.0.1:0\"\n\
             [[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\ngroup = \"main\"\n\
             [[listener]]\nname = \"hold\"\naddress = \"127.0.0.1:0\"\ngroup = \"hold\"\n\
             [[backend]]\nname = \"dead\"\naddress = \"{dead}\"\ngroup = \"main\"\n\
             [[backend]]\nname = \"live\"\naddress = \"{}\"\ngroup = \"main\"\n\
             [[backend]]\nname = \"hold\"\naddress = \"{}\"\ngroup = \"hold\"\n",
            live.addr, live.addr
        );
        let path = write_conf(&text);
        let mut cmd = netforge();
        cmd.arg("proxy").arg("--conf").arg(&path);
        let p = Proc::spawn(cmd);
        let addr = |line: String| -> SocketAddr {
            line.strip_prefix("netforge proxy: listening on ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line: {line}"))
        };
        let main = addr(p.line(Duration::from_secs(10)));
        let hold = addr(p.line(Duration::from_secs(10)));
        let admin = admin_line(&p);
        let mut holder = held_session(hold);
        for round in 0..4u8 {
            let msg: Vec<u8> = (0..3000u32).map(|i| (i as u8).wrapping_mul(7).wrapping_add(round)).collect();
            let back = early_bytes_session(main, holder, &msg);
            assert!(back == msg, "round {round}: {} bytes back of {}", back.len(), msg.len());
            holder = held_session(hold);
        }
        drop(holder);
        let m = wait_metrics(admin, Duration::from_secs(5), "9 sessions closed", |m| {
            metric(m, "netforge_proxy_sessions_closed_total{reason=\"done\"}") == Some(9.0)
        });
        // Rounds 0 and 2 met the refusal first, rounds 1 and 3 went straight to the live backend.
        let refused =
            metric(&m, "netforge_proxy_backend_connect_failures_total{group=\"main\",backend=\"dead\"}").unwrap();
        assert_eq!(refused, 2.0, "{m}");
        let live_sessions = metric(&m, "netforge_proxy_backend_sessions_total{group=\"main\",backend=\"live\"}");
        assert_eq!(live_sessions, Some(4.0), "{m}");
        // Every early-bytes session was accepted with its bytes queued (the cap held it back),
        // so each took the smart path. Whether rounds 1 and 3 counted as smart connects depends
        // on the kernel finishing the loopback handshake inside connect(2) (it does unless
        // softirqs are deferred under load); either way their bytes arrived byte-exact above.
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"connect_failed\"}"), Some(0.0), "{m}");
    });
}

#[test]
fn smart_connect_leaves_server_first_protocols_alone() {
    with_timeout(T, || {
        // A backend that speaks first, as SMTP does, and never reads.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let _ = c.write_all(b"220 ready\r\n");
                std::thread::spawn(move || {
                    let mut sink = [0u8; 64];
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        let px = proxy(&conf(&[b], "threads = 1", NO_HEALTH));
        let mut fastest = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let mut s = client(px.addr);
            let mut banner = [0u8; 11];
            s.read_exact(&mut banner).unwrap();
            assert_eq!(&banner, b"220 ready\r\n");
            fastest = fastest.min(t.elapsed());
        }
        // A dial that held back its handshake ACK would leave the backend unable to accept, and
        // so to greet, until the kernel's delayed-ACK timer fires (200 ms) in every session; a
        // plain dial greets within a millisecond on loopback. The fastest of five sits far
        // below that even on a loaded machine.
        assert!(fastest < Duration::from_millis(100), "fastest banner took {fastest:?}");
        // The clients sent nothing before the banner, so no dial held back its ACK.
        let m = wait_metrics(px.admin, Duration::from_secs(5), "5 sessions", |m| {
            metric(m, "netforge_proxy_connections_total{listener=\"listener0\"}") == Some(5.0)
        });
        assert_eq!(metric(&m, "netforge_proxy_smart_connects_total"), Some(0.0), "{m}");
    });
}

/// `splice = "auto"` follows a session that changes character: a bulk phase moves its
/// directions to splice, then small request/response messages bring them back to copy.
#[test]
fn auto_splice_goes_back_to_copy_when_a_bulk_session_turns_interactive() {
    with_timeout(Duration::from_secs(120), || {
        let (_s, b) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"]);
        let px = proxy(&conf(&[b], "threads = 1\nsplice = \"auto\"", NO_HEALTH));
        const BULK: usize = 4 << 20;
        const SMALL: usize = 64;
        const EXCHANGES: usize = 200;
        let up = "netforge_proxy_bytes_total{direction=\"client_to_backend\"}";
        let down = "netforge_proxy_bytes_total{direction=\"backend_to_client\"}";
        let copy = "netforge_proxy_forwarded_bytes_total{method=\"copy\"}";
        let splice = "netforge_proxy_forwarded_bytes_total{method=\"splice\"}";
        let to_splice = "netforge_proxy_splice_switches_total{to=\"splice\"}";
        let to_copy = "netforge_proxy_splice_switches_total{to=\"copy\"}";

        // Bulk phase: 4 MiB each way on one connection, written while the echo is read.
        let mut s = client(px.addr);
        let mut data = vec![0u8; BULK];
        fastrand::Rng::with_seed(11).fill(&mut data);
        let mut wr = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || wr.write_all(&sent).unwrap());
        let mut back = vec![0u8; BULK];
        s.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == data, "the bulk echo differs from what was sent");
        let m0 = wait_metrics(px.admin, Duration::from_secs(5), "bulk phase counted", |m| {
            metric(m, up) == Some(BULK as f64) && metric(m, down) == Some(BULK as f64)
        });
        assert!(metric(&m0, to_splice).unwrap() >= 1.0, "the bulk phase never switched to splice:\n{m0}");
        assert!(metric(&m0, splice).unwrap() > BULK as f64, "the bulk phase should mostly splice:\n{m0}");
        let copy0 = metric(&m0, copy).unwrap();

        // Interactive phase on the same connection: small messages, one at a time.
        for i in 0..EXCHANGES {
            let msg: Vec<u8> = (0..SMALL).map(|j| (i * 31 + j) as u8).collect();
            s.write_all(&msg).unwrap();
            let mut got = [0u8; SMALL];
            s.read_exact(&mut got).unwrap();
            assert!(got[..] == msg[..], "exchange {i}: echo differs");
        }
        let small_bytes = (EXCHANGES * SMALL) as f64;
        let m1 = wait_metrics(px.admin, Duration::from_secs(5), "interactive phase counted", |m| {
            metric(m, up) == Some(BULK as f64 + small_bytes) && metric(m, down) == Some(BULK as f64 + small_bytes)
        });
        assert!(metric(&m1, to_copy).unwrap() >= 1.0, "no direction went back to copy:\n{m1}");
        // Each direction splices at most a few small messages before it copies again, so most
        // of the 2 × 200 × 64 bytes of this phase were copied (the old rule spliced them all).
        let copied = metric(&m1, copy).unwrap() - copy0;
        eprintln!(
            "auto splice: switches to splice {}, to copy {}; interactive phase copied {copied} of {} bytes",
            metric(&m1, to_splice).unwrap(),
            metric(&m1, to_copy).unwrap(),
            2.0 * small_bytes
        );
        assert!(copied >= small_bytes, "{copied} of {} small-phase bytes copied:\n{m1}", 2.0 * small_bytes);
        drop(s);
        wait_metrics(px.admin, Duration::from_secs(5), "session closed", |m| {
            metric(m, "netforge_proxy_sessions_closed_total{reason=\"done\"}") == Some(1.0)
        });
    });
}

/// The congestion-control names `ss -ti` shows for the established sockets matching `filter`
/// (e.g. `dst 127.0.0.1:8001`).
fn socket_congestions(filter: &str) -> Vec<String> {
    let mut cmd = Command::new("ss");
    cmd.args(["-tinH", "state", "established"]).args(filter.split_whitespace());
    let out = cmd.output().expect("ss (iproute2) is needed by this test: apt-get install iproute2");
    // Each socket is a line, then its tab-indented info line, whose first word is the algorithm
    // ("cubic wscale:7,7 rto:...").
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('\t') || l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The algorithm of the one established socket matching `filter`, polled until it appears.
fn socket_congestion(filter: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let algos = socket_congestions(filter);
        assert!(algos.len() < 2, "more than one socket matches {filter:?}: {algos:?}");
        if let Some(a) = algos.into_iter().next() {
            return a;
        }
        assert!(Instant::now() < deadline, "no established socket matches {filter:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The kernel's default algorithm, and another one every user may set (reno, or cubic where
/// reno is the default), so a test can tell "set" from "left alone".
fn system_and_other_congestion() -> (String, String) {
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap().trim().to_string();
    let other = if system == "reno" { "cubic" } else { "reno" };
    (system, other.to_string())
}

/// Polls until no established socket matches `filter`.
fn wait_no_socket(filter: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket_congestions(filter).is_empty() {
        assert!(Instant::now() < deadline, "sockets matching {filter:?} stayed established");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn congestion_control_is_set_per_side() {
    with_timeout(T, || {
        let (system, other) = system_and_other_congestion();
        let (system, other) = (system.as_str(), other.as_str());
        for (top, listener, want_client, want_server) in [
            // The listener's key sets the client side only.
            (String::new(), format!("congestion = \"{other}\"\n"), other, system),
            // The global key sets both sides; a listener's "system" takes its side back.
            (format!("congestion = \"{other}\""), "congestion = \"system\"\n".to_string(), system, other),
        ] {
            let echo = Echo::start();
            let text = conf(&[echo.addr], &format!("threads = 1\n{top}"), NO_HEALTH)
                .replace("[[listener]]\n", &format!("[[listener]]\n{listener}"));
            let p = proxy(&text);
            // The session stays open while ss looks at the proxy's two sockets.
            let c = held_session(p.addr);
            let client_side = socket_congestion(&format!("src {}", p.addr));
            let server_side = socket_congestion(&format!("dst {}", echo.addr));
            assert_eq!((client_side.as_str(), server_side.as_str()), (want_client, want_server), "{text}");
            drop(c);
        }
    });
}

#[test]
fn sighup_changes_a_groups_congestion_control_for_new_connections() {
    with_timeout(T, || {
        let (system, other) = system_and_other_congestion();
        let echo = Echo::start();
        let text = conf(&[echo.addr], "threads = 1", NO_HEALTH);
        let (p, path) = proxy_from_file(&text, &[]);
        let to_backend = format!("dst {}", echo.addr);
        let c = held_session(p.addr);
        assert_eq!(socket_congestion(&to_backend), system);
        drop(c);
        wait_no_socket(&to_backend);
        std::fs::write(&path, format!("{text}[groups.default]\ncongestion = \"{other}\"\n")).unwrap();
        p.p.signal(1);
        // The reload reaches the reactor a moment later: new sessions until one dials with it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = held_session(p.addr);
            let algo = socket_congestion(&to_backend);
            drop(c);
            if algo == other {
                break;
            }
            assert_eq!(algo, system);
            assert!(Instant::now() < deadline, "no session dialed with {other} after the reload");
            wait_no_socket(&to_backend);
        }
    });
}

#[test]
fn congestion_flag_overrides_the_file_and_survives_a_reload() {
    with_timeout(T, || {
        let (system, other) = system_and_other_congestion();
        let echo = Echo::start();
        // The file asks for the system's default on both sides; the flag wins.
        let text = conf(&[echo.addr], "threads = 1\ncongestion = \"system\"", NO_HEALTH);
        let (p, _path) = proxy_from_file(&text, &["--congestion", &other]);
        let (from_client, to_backend) = (format!("src {}", p.addr), format!("dst {}", echo.addr));
        let c = held_session(p.addr);
        assert_eq!((socket_congestion(&from_client), socket_congestion(&to_backend)), (other.clone(), other.clone()));
        drop(c);
        wait_no_socket(&to_backend);
        // Reload the same file: the flag still applies, and nothing asks for a restart.
        p.p.signal(1);
        let line = wait_stderr(&p.p, Duration::from_secs(10), "proxy: reload");
        assert!(line.contains("proxy: reloaded"), "{line}");
        let c = held_session(p.addr);
        assert_eq!(socket_congestion(&to_backend), other, "the reload dropped --congestion (system is {system})");
        drop(c);
    });
}

/// Kernel release as (major, minor), from /proc.
fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.trim().split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The CPU list the kernel reports for each reactor thread of `pid`, in reactor order (a thread
/// names itself once it runs: wait for every name, up to 10 s).
fn reactor_cpus(pid: u32, threads: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut out = vec![String::new(); threads];
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let Some(i) = comm.trim().strip_prefix("proxy-r").and_then(|i| i.parse::<usize>().ok()) else { continue };
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            if let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) {
                out[i] = list.trim().to_string();
            }
        }
        if out.iter().all(|c| !c.is_empty()) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `cpu_affinity`: each reactor runs on its CPU, and its listener carries SO_INCOMING_CPU, so a
/// client connecting from CPU c is served by the reactor on c (Linux 6.1 and later; without the
/// option the kernel's hash sends about half of each client's sessions to the other reactor).
#[test]
fn a_pinned_reactor_serves_the_connections_made_on_its_cpu() {
    with_timeout(T, || {
        let allowed = netforge::sys::allowed_cpus().unwrap();
        let cpus: Vec<usize> = allowed.iter().copied().take(2).collect();
        let e = Echo::start();
        let list = cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        let top = format!("threads = {}\ncpu_affinity = [{list}]", cpus.len());
        let path = write_conf(&conf(&[e.addr], &top, NO_HEALTH));
        let mut cmd = netforge();
        cmd.env("RUST_LOG", "debug").arg("proxy").arg("--conf").arg(&path);
        let px = start_proxy(cmd);
        let banner = px.p.line(Duration::from_secs(10));
        assert!(banner.contains(&format!("reactors pinned to CPUs {}", netforge::sys::format_cpus(&cpus))), "{banner}");
        let want: Vec<String> = cpus.iter().map(usize::to_string).collect();
        assert_eq!(reactor_cpus(px.p.child.id(), cpus.len()), want);
        if cpus.len() < 2 || kernel_version() < (6, 1) {
            let why = format!(
                "SO_INCOMING_CPU steering needs 2 allowed CPUs and Linux 6.1 (have {} and {:?})",
                cpus.len(),
                kernel_version()
            );
            crate::util::cannot_run("a_pinned_reactor_serves_the_connections_made_on_its_cpu", &why);
            return;
        }
        // Clients pinned to each CPU in turn; which reactor served each session is in the
        // access log ("rN session LOCAL -> ...").
        const EACH: usize = 20;
        let addr = px.addr;
        let clients: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                std::thread::spawn(move || {
                    netforge::sys::pin_thread(cpu).unwrap();
                    (0..EACH)
                        .map(|_| {
                            let mut s = client(addr);
                            let local = s.local_addr().unwrap();
                            s.write_all(b"where").unwrap();
                            s.shutdown(Shutdown::Write).unwrap();
                            let mut back = Vec::new();
                            s.read_to_end(&mut back).unwrap();
                            assert_eq!(back, b"where");
                            local.to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let locals: Vec<Vec<String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let mut served: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !locals.iter().flatten().all(|l| served.contains_key(l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                px.p.stderr.recv_timeout(left).unwrap_or_else(|_| panic!("{} access-log lines seen", served.len()));
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == "session") {
                if let (Some(r), Some(local)) = (words.get(i.wrapping_sub(1)), words.get(i + 1)) {
                    if locals.iter().flatten().any(|l| l == local) {
                        served.insert(local.to_string(), r.to_string());
                    }
                }
            }
        }
        for (reactor, locals) in locals.iter().enumerate() {
            let want = format!("r{reactor}");
            let elsewhere = locals.iter().filter(|l| served.get(*l) != Some(&want)).count();
            assert_eq!(elsewhere, 0, "{elsewhere} of {EACH} sessions from CPU {} not served by {want}", cpus[reactor]);
        }
    });
}

/// `--threads` and `--admin` override the file; a reload of the unchanged file keeps them and
/// asks for no restart (it used to compare the file's values with the flags' and warn), while a
/// real change of a restart-only key is still reported.
#[test]
fn threads_and_admin_flags_survive_a_reload_without_a_restart_warning() {
    with_timeout(T, || {
        let echo = Echo::start();
        let text = conf(&[echo.addr], "threads = 1", NO_HEALTH);
        let (p, path) = proxy_from_file(&text, &["--threads", "2", "--admin", "127.0.0.2:0"]);
        assert_eq!(p.admin.ip().to_string(), "127.0.0.2");
        p.p.signal(1);
        let line = wait_stderr(&p.p, Duration::from_secs(10), "proxy: reload");
        assert!(line.contains("proxy: reloaded"), "{line}");
        assert_eq!(try_roundtrip(p.addr, b"after").unwrap(), b"after");
        std::fs::write(&path, text.replace("threads = 1", "threads = 1\nmax_connections = 77")).unwrap();
        p.p.signal(1);
        let line = wait_stderr(&p.p, Duration::from_secs(10), "proxy: reload");
        assert!(line.contains("need a restart"), "{line}");
    });
}

/// `--threads` left out keeps the file's `threads`, and `--help` says so instead of a flat 0.
#[test]
fn threads_flag_defaults_to_the_files_value() {
    with_timeout(T, || {
        let path = write_conf(&conf(&["127.0.0.1:8001".parse().unwrap()], "threads = 3", NO_HEALTH));
        let file = path.to_str().unwrap();
        let first_line = |args: &[&str]| {
            let (code, out, err) = run(args, Duration::from_secs(10));
            assert_eq!(code, 0, "{args:?}: {err}");
            out.lines().next().unwrap_or_default().to_string()
        };
        assert_eq!(first_line(&["proxy", "--conf", file, "--print-config"]), "threads = 3");
        assert_eq!(first_line(&["proxy", "--conf", file, "--print-config", "--threads", "2"]), "threads = 2");
        assert_eq!(first_line(&["proxy", "--print-config", "127.0.0.1:8001"]), "threads = 0");
        let (code, help, _) = run(&["proxy", "--help"], Duration::from_secs(10));
        assert_eq!(code, 0);
        let line = help.lines().find(|l| l.trim_start().starts_with("--threads")).unwrap_or_else(|| panic!("{help}"));
        assert!(line.ends_with("[default: the file's `threads`; 0 without --conf]"), "{line}");
    });
}

/// A backend that completes every handshake and at once resets the connection: its sessions end
/// `server_reset`, whether the reactor saw the connect before the reset or only after it. They
/// are established sessions the backend aborted, not failed connects: never retried elsewhere
/// (the client's bytes may have reached it), never a passive-health failure.
#[test]
fn a_backend_that_accepts_then_resets_aborts_sessions_and_fails_no_connect() {
    with_timeout(T, || {
        let port = crate::util::HeldPort::new();
        let l = port.listen();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
            }
        });
        let echo = Echo::start();
        let health = "enabled = false\npassive_fall = 1";
        let px = proxy(&conf(&[port.addr, echo.addr], "threads = 1\nretries = 2\nbalance = \"round_robin\"", health));
        // Bursts from several clients at once: the reactor dials many backends per wake-up, so
        // some resets land before it looks at the connect.
        const CLIENTS: u32 = 4;
        const EACH: u32 = 50;
        let addr = px.addr;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let _ = short_session(addr, (c * EACH + i) as u8);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let n = f64::from(CLIENTS * EACH);
        let m = wait_metrics(px.admin, Duration::from_secs(10), "every session closed", |m| closed_sessions(m) >= n);
        let failures = |b: &str| {
            metric(
                m.as_str(),
                &format!("netforge_proxy_backend_connect_failures_total{{group=\"default\",backend=\"{b}\"}}"),
            )
        };
        assert_eq!(closed_sessions(&m), n, "{m}");
        assert_eq!(failures("b0"), Some(0.0), "{m}");
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"connect_failed\"}"), Some(0.0), "{m}");
        assert_eq!(
            metric(&m, "netforge_proxy_backend_passive_down_total{group=\"default\",backend=\"b0\"}"),
            Some(0.0),
            "{m}"
        );
        let (s0, s1) = (metric(&m, &backend_sessions("b0")).unwrap(), metric(&m, &backend_sessions("b1")).unwrap());
        assert_eq!(s0 + s1, n, "{m}");
        // Round robin over two backends, nothing retried: half each, and b0's all reset.
        assert_eq!(s0, n / 2.0, "{m}");
        assert_eq!(metric(&m, "netforge_proxy_errors_total{cause=\"server_reset\"}"), Some(s0), "{m}");
    });
}

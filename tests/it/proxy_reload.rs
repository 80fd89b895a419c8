//! SIGHUP reloads of `netforge proxy`: healthy traffic is never hurt, every changed key is
//! either applied or named as needing a restart, and each backend's first health result is
//! logged.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{
    metric, metrics, netforge, proxy_conf as conf, refusing_addr, serve, short_session, spawn_proxy, with_timeout,
    write_temp, Proc,
};

const T: Duration = Duration::from_secs(90);

fn write_conf(text: &str) -> std::path::PathBuf {
    write_temp("reload.toml", text)
}

struct Proxy {
    p: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// A proxy on `text` (written to the returned file, for reloads), logging at info level.
fn proxy(text: &str) -> (Proxy, std::path::PathBuf) {
    let path = write_conf(text);
    let mut cmd = netforge();
    cmd.arg("proxy").arg("--conf").arg(&path).env("RUST_LOG", "info");
    let (p, addr, admin) = spawn_proxy(cmd);
    (Proxy { p, addr, admin }, path)
}

fn echo() -> (Proc, SocketAddr) {
    serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0", "--threads", "1"])
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

/// The restart warning's list of keys (`...: a, b`), or panics.
fn restart_keys(line: &str) -> Vec<String> {
    let list = line.rsplit_once("): ").unwrap_or_else(|| panic!("not a restart warning: {line}")).1;
    list.split(", ").map(str::to_string).collect()
}

const RESTART_WARNING: &str = "need a restart";

/// Client threads of the load loop, and bounds on it.
const CLIENTS: usize = 4;
const MAX_SESSIONS_PER_CLIENT: u64 = 20_000;
const SESSIONS_AFTER_RELOAD: u64 = 1_500;

#[test]
fn a_reload_that_turns_health_checks_on_resets_no_new_session() {
    with_timeout(T, || {
        let (_b, backend) = echo();
        // Two reactors: each learns health results through the coordinator except reactor 0.
        let off = conf(&[backend], "threads = 2", "enabled = false");
        let (px, path) = proxy(&off);
        let (ok, failed, stop) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (ok, failed, stop, errors, addr) =
                    (ok.clone(), failed.clone(), stop.clone(), errors.clone(), px.addr);
                std::thread::spawn(move || {
                    for i in 0..MAX_SESSIONS_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match short_session(addr, i as u8) {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                errors.lock().unwrap().push(e.to_string());
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        let wait_for = |n: u64, what: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while ok.load(Ordering::Relaxed) < n {
                assert!(Instant::now() < deadline, "{what}: only {} sessions", ok.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(200, "before the reload");
        let health = "enabled = true\ninterval = \"2s\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2\njitter_pct = 0";
        std::fs::write(&path, conf(&[backend], "threads = 2", health)).unwrap();
        px.p.signal(1);
        wait_stderr(&px.p, Duration::from_secs(10), "proxy: reloaded");
        // Reactor 0 has its first result; the other reactor learns it a tick or so later.
        let first = wait_stderr(&px.p, Duration::from_secs(10), "backend b0");
        assert!(first.contains("is UP"), "{first}");
        let at_result = ok.load(Ordering::Relaxed);
        wait_for(at_result + SESSIONS_AFTER_RELOAD, "after the first health result");
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let m = metrics(px.admin);
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        let no_backend = metric(&m, "netforge_proxy_errors_total{cause=\"no_backend\"}");
        assert_eq!(
            (failed, no_backend),
            (0, Some(0.0)),
            "{ok} sessions served; errors: {:?}",
            errors.lock().unwrap().iter().take(5).collect::<Vec<_>>()
        );
        assert_eq!(metric(&m, "netforge_proxy_backend_up{group=\"default\",backend=\"b0\"}"), Some(1.0), "{m}");
    });
}

/// Each restart-only key the issue names, changed alone: the warning names exactly it, and the
/// running value stays (splice: still no byte spliced).
#[test]
fn a_reload_that_changes_a_restart_only_key_names_exactly_that_key() {
    with_timeout(T, || {
        let (_b, backend) = echo();
        let top =
            "threads = 1\nsplice = \"off\"\nbuffer_size = \"16KiB\"\npipe_size = \"64KiB\"\nmax_connections = 100";
        let base = conf(&[backend], top, "enabled = false");
        let (px, path) = proxy(&base);
        let cases = [
            ("splice = \"off\"", "splice = \"on\"", vec!["splice"]),
            ("buffer_size = \"16KiB\"", "buffer_size = \"32KiB\"", vec!["buffer_size"]),
            ("pipe_size = \"64KiB\"", "pipe_size = \"128KiB\"", vec!["pipe_size"]),
            ("max_connections = 100", "max_connections = 77", vec!["max_connections"]),
            (
                "splice = \"off\"\nbuffer_size = \"16KiB\"",
                "splice = \"auto\"\nbuffer_size = \"8KiB\"",
                vec!["buffer_size", "splice"],
            ),
        ];
        for (from, to, want) in cases {
            assert!(base.contains(from), "{from}");
            std::fs::write(&path, base.replace(from, to)).unwrap();
            px.p.signal(1);
            let line = wait_stderr(&px.p, Duration::from_secs(10), "proxy: reload");
            assert!(line.contains(RESTART_WARNING), "{to}: {line}");
            let mut got = restart_keys(&line);
            got.sort();
            assert_eq!(got, want, "{to}: {line}");
            let done = wait_stderr(&px.p, Duration::from_secs(10), "proxy: reload");
            assert!(done.contains("proxy: reloaded"), "{done}");
        }
        // splice = "on" was not applied: a bulk transfer is still copied.
        let mut s = TcpStream::connect_timeout(&px.addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data = vec![7u8; 1 << 20];
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back.len(), 1 << 20);
        // Reloading the original file again is no change at all: no warning.
        std::fs::write(&path, &base).unwrap();
        px.p.signal(1);
        let line = wait_stderr(&px.p, Duration::from_secs(10), "proxy: reload");
        assert!(line.contains("proxy: reloaded"), "{line}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = metrics(px.admin);
            if metric(&m, "netforge_proxy_bytes_total{direction=\"backend_to_client\"}") == Some((1 << 20) as f64) {
                assert_eq!(metric(&m, "netforge_proxy_forwarded_bytes_total{method=\"splice\"}"), Some(0.0), "{m}");
                break;
            }
            assert!(Instant::now() < deadline, "transfer not counted:\n{m}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// A backend whose address is wrong is DOWN from its first check, and the log says so (at start-
/// up and when a reload adds one); a healthy one is reported UP.
#[test]
fn the_first_health_round_logs_every_backends_state_including_one_down_from_the_start() {
    with_timeout(T, || {
        let (_b, good) = echo();
        let (_hold, typo) = refusing_addr();
        let (_hold2, typo2) = refusing_addr();
        let health = "enabled = true\ninterval = \"500ms\"\ntimeout = \"200ms\"\nrise = 2\nfall = 2\njitter_pct = 0";
        let text = conf(&[good, typo], "threads = 2", health);
        let (px, path) = proxy(&text);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = px.p.stderr.recv_timeout(left).unwrap_or_else(|_| panic!("first-round lines: {seen:?}"));
            if line.contains("first health check") {
                seen.push(line);
            }
        }
        let (b0, b1) = (format!("backend b0 {good} is UP"), format!("backend b1 {typo} is DOWN"));
        assert!(seen.iter().any(|l| l.contains(&b0)), "{seen:?}");
        assert!(seen.iter().any(|l| l.contains(&b1) && l.contains("refused")), "{seen:?}");
        // A reload that adds a backend with a wrong address: its first check is logged too.
        std::fs::write(&path, conf(&[good, typo, typo2], "threads = 2", health)).unwrap();
        px.p.signal(1);
        // The kept backends keep their state: no first check again, b1 never shown UP.
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = px.p.stderr.recv_timeout(left).unwrap_or_else(|_| panic!("no line about b2 within 10 s"));
            assert!(!line.contains("backend b0") && !line.contains("backend b1"), "{line}");
            if line.contains("backend b2") {
                break line;
            }
        };
        assert!(line.contains(&format!("backend b2 {typo2} is DOWN")) && line.contains("first health check"), "{line}");
        let up =
            |m: &str, b: &str| metric(m, &format!("netforge_proxy_backend_up{{group=\"default\",backend=\"{b}\"}}"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = metrics(px.admin);
            assert_eq!((up(&m, "b0"), up(&m, "b1")), (Some(1.0), Some(0.0)), "{m}");
            if up(&m, "b2") == Some(0.0) {
                break;
            }
            assert!(Instant::now() < deadline, "b2 not DOWN in /metrics:\n{m}");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

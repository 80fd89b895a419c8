//! The proxy's admin endpoint under hostile clients: hundreds of slow and idle connections do
//! not delay a scrape, and a client that trickles its request head is cut at the head deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{admin_line, netforge, refusing_addr, with_timeout, Proc};

const T: Duration = Duration::from_secs(90);
/// Slow clients (a byte per second) and idle ones (nothing after connecting): together more
/// than the admin endpoint's 256-connection bound, far below the 20,000-descriptor limit.
const SLOW: usize = 150;
const IDLE: usize = 150;
const SCRAPES: usize = 5;
/// Each scrape must be answered within this, every time. An answered scrape takes milliseconds;
/// one starved by the slow clients would wait at least the 5 s head deadline of the connections
/// ahead of it. Half that leaves room for a loaded 2-core machine's scheduling and still tells
/// the two apart.
const SCRAPE_WITHIN: Duration = Duration::from_millis(2500);

/// A proxy from the quick-start flags (one reactor, a refusing backend: no traffic is needed)
/// and its admin address.
fn proxy_with_admin() -> (Proc, SocketAddr, socket2::Socket) {
    let (hold, backend) = refusing_addr();
    let mut cmd = netforge();
    cmd.args(["proxy", "--laddr", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--threads", "1"]);
    cmd.arg(backend.to_string());
    let p = Proc::spawn(cmd);
    let _listening = p.line(Duration::from_secs(10));
    let admin = admin_line(&p);
    (p, admin, hold)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One `GET /metrics`: the status line and body, and how long the whole exchange took.
fn scrape(admin: SocketAddr) -> (String, String, Duration) {
    let t0 = Instant::now();
    let mut s = connect(admin);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let took = t0.elapsed();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    (head.lines().next().unwrap_or("").to_string(), body.to_string(), took)
}

/// Whether the server still holds `s` open: nothing to read, no EOF, no reset.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let open = matches!((&*s).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

#[test]
fn scrapes_are_answered_promptly_while_hundreds_of_slow_and_idle_clients_hold_connections() {
    with_timeout(T, || {
        let (_p, admin, _hold) = proxy_with_admin();
        assert!(scrape(admin).0.starts_with("HTTP/1.0 200"));
        let slow: Vec<TcpStream> = (0..SLOW).map(|_| connect(admin)).collect();
        let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(admin)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let stop = stop.clone();
            let mut slow: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
            std::thread::spawn(move || {
                // A byte per second on every slow connection, far from a complete head.
                let req = b"GET /metrics HTTP/1.1\r\nX-Slow: yes\r\n";
                for i in 0..req.len() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    for s in slow.iter_mut() {
                        let _ = s.write_all(&req[i..=i]);
                    }
                    std::thread::sleep(Duration::from_secs(1)); // pacing, not synchronisation
                }
            })
        };
        let mut times = Vec::new();
        for _ in 0..SCRAPES {
            let (status, body, took) = scrape(admin);
            assert!(status.starts_with("HTTP/1.0 200"), "{status}");
            assert!(body.contains("netforge_proxy_connections_total{listener=\"listener0\"} 0"), "{body}");
            times.push(took);
            std::thread::sleep(Duration::from_millis(100)); // spacing the scrapes over time
        }
        // The load was real: the connections the bound allows are still held open by the
        // proxy (the bound closed the oldest to let the scrapes in, nothing else was cut).
        let open = slow.iter().chain(&idle).filter(|s| still_open(s)).count();
        eprintln!("scrape times {times:?}; {open} of {} slow and idle clients held open", SLOW + IDLE);
        stop.store(true, Ordering::Relaxed);
        let _ = trickle.join();
        assert!(
            times.iter().all(|t| *t < SCRAPE_WITHIN),
            "scrape times {times:?} with {open} of {} slow and idle clients open",
            SLOW + IDLE
        );
        assert!(open >= 256 - SCRAPES - 1 - 8, "only {open} of {} slow and idle clients were held open", SLOW + IDLE);
        // The bound closed the oldest (the first slow clients), never the newest.
        assert!(!still_open(&slow[0]), "the oldest connection was kept");
        assert_eq!(idle.iter().filter(|s| still_open(s)).count(), IDLE, "newer connections were closed");
    });
}

#[test]
fn a_client_that_trickles_its_request_head_is_cut_at_the_head_deadline() {
    with_timeout(T, || {
        let (_p, admin, _hold) = proxy_with_admin();
        let mut s = connect(admin);
        let t0 = Instant::now();
        let sent = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (sent, done) = (sent.clone(), done.clone());
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || {
                // A byte every 500 ms (well inside any per-read timeout) of a head that never
                // ends within 40 bytes (20 s).
                let head = b"GET /metrics HTTP/1.1\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                for b in head.iter().take(40) {
                    if done.load(Ordering::Relaxed) || w.write_all(&[*b]).is_err() {
                        return;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(500)); // pacing, not synchronisation
                }
            })
        };
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        let took = t0.elapsed();
        let bytes = sent.load(Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        let _ = writer.join();
        let text = String::from_utf8_lossy(&out);
        assert!(r.is_ok(), "the connection was not closed while the head trickled ({bytes} bytes sent): {r:?}");
        assert!(text.starts_with("HTTP/1.0 408 Request Timeout\r\n"), "{text:?}");
        // Cut by the 5 s head deadline, counted from the accept (just before `t0`): not before
        // it, and not by a timeout that each trickled byte would have restarted.
        assert!(bytes >= 3, "only {bytes} bytes were trickled before the cut");
        assert!(
            took >= Duration::from_millis(4500) && took < Duration::from_secs(15),
            "cut after {took:?}, {bytes} bytes"
        );
    });
}

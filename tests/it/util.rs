//! Test plumbing: deadlines on every wait, child processes that cannot outlive a test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

pub const BIN: &str = env!("CARGO_BIN_EXE_netforge");

/// Runs `f` on a thread and fails the test if it does not finish within `d`.
pub fn with_timeout<T: Send + 'static>(d: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(d).unwrap_or_else(|e| panic!("test did not finish within {d:?} ({e}; a body panic shows above)"))
}

pub fn netforge() -> Command {
    let mut c = Command::new(BIN);
    c.env("RUST_LOG", "warn");
    c
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub lines: Receiver<String>,
    pub stderr: Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = bounded(100_000);
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn netforge");
        let lines = pump(child.stdout.take().unwrap());
        let stderr = pump(child.stderr.take().unwrap());
        Proc { child, lines, stderr }
    }

    /// Next stdout line, or panic after `d`.
    pub fn line(&self, d: Duration) -> String {
        self.lines.recv_timeout(d).unwrap_or_else(|_| panic!("no output line within {d:?}"))
    }

    /// Reads stdout lines until one satisfies `pred`.
    pub fn wait_line(&self, d: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no matching line within {d:?}"));
            if pred(&line) {
                return line;
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for exit within `d`; returns status, the remaining stdout and all stderr.
    pub fn finish(mut self, d: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + d;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "process did not exit within {d:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let collect = |rx: &Receiver<String>| {
            let mut out = String::new();
            while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
                out.push_str(&l);
                out.push('\n');
            }
            out
        };
        let out = collect(&self.lines);
        let err = collect(&self.stderr);
        (status, out, err)
    }
}

/// Runs netforge to completion with a deadline.
pub fn run(args: &[&str], d: Duration) -> (i32, String, String) {
    let mut cmd = netforge();
    cmd.args(args);
    let p = Proc::spawn(cmd);
    let (status, out, err) = p.finish(d);
    (status.code().unwrap_or(-1), out, err)
}

/// Spawns a netforge server command whose first stdout line says `... listening on ADDR ...`;
/// returns it with that address.
pub fn spawn_listening(cmd: Command) -> (Proc, SocketAddr) {
    let p = Proc::spawn(cmd);
    let first = p.line(Duration::from_secs(10));
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    (p, addr)
}

/// Starts `netforge serve` on an ephemeral port and returns it with the bound address.
pub fn serve(args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = netforge();
    cmd.arg("serve").args(args);
    spawn_listening(cmd)
}

/// Parses `Total: N, Dialing: x, Established: y, Closed: z, Error: e, NotInitiated: n`.
pub fn parse_status(line: &str) -> Option<[u64; 6]> {
    let names = ["Total", "Dialing", "Established", "Closed", "Error", "NotInitiated"];
    let parts: Vec<&str> = line.split(", ").collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u64; 6];
    for (i, (part, name)) in parts.iter().zip(names).enumerate() {
        let (k, v) = part.split_once(": ")?;
        if k != name {
            return None;
        }
        out[i] = v.parse().ok()?;
    }
    Some(out)
}

/// Whether this run is CI: `CI=true` (CI services set it; so does `.ci/run`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that cannot run on this machine (a missing tool, no IPv6 loopback, too few CPUs, an
/// old kernel). Under CI that fails the test: `.ci/run` provides what the tests need. Elsewhere
/// it says so on the process's real stderr (not the harness's captured output, so `cargo test`
/// shows the line) and the caller returns.
pub fn cannot_run(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why}; under CI (CI=true) every test must run: see .ci/run");
    let _ = writeln!(std::io::stderr(), "NOT RUN: {test}: {why} (this fails under CI=true)");
}

/// A port on 127.0.0.1 that stays this test's while the value lives, whether or not something
/// listens on it: a bound SO_REUSEPORT socket that never listens holds it (connects to it are
/// refused, and the kernel hands it to no other bind or connect), and `listen` opens a listener
/// on the same port beside it. Dropping that listener makes the port refuse again without
/// releasing it, so a test can take a backend down and up again without another test taking
/// the port in between (which a closed-then-rebound listener allows).
pub struct HeldPort {
    _holder: socket2::Socket,
    pub addr: SocketAddr,
}

fn reuseport_socket() -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s
}

impl HeldPort {
    pub fn new() -> HeldPort {
        let s = reuseport_socket();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        HeldPort { _holder: s, addr }
    }

    /// A listener on the held port (up); drop it to refuse again (down).
    pub fn listen(&self) -> std::net::TcpListener {
        let s = reuseport_socket();
        s.bind(&self.addr.into()).unwrap();
        s.listen(128).unwrap();
        s.into()
    }
}

/// An address on 127.0.0.1 where every connect is refused, reserved for as long as the returned
/// socket lives: bound but never listening, so the kernel answers SYNs with RST and no other
/// test can take the port in the meantime (a bound-then-closed port could be reused).
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// Reads the proxy's `netforge proxy: metrics on http://ADDR/metrics` line (its next stdout
/// line after the listener lines) and returns ADDR.
pub fn admin_line(p: &Proc) -> SocketAddr {
    let line = p.line(Duration::from_secs(10));
    line.strip_prefix("netforge proxy: metrics on http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected admin line: {line}"))
}

/// A proxy with one listener started by `cmd`: it, its listener and its admin address, from its
/// first two stdout lines.
pub fn spawn_proxy(cmd: Command) -> (Proc, SocketAddr, SocketAddr) {
    let (p, addr) = spawn_listening(cmd);
    let admin = admin_line(&p);
    (p, addr, admin)
}

static TEMP_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Writes `text` to a file of its own in the temp directory (`tag` in its name) and returns
/// its path.
pub fn write_temp(tag: &str, text: &str) -> std::path::PathBuf {
    let n = TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("netforge-it-{}-{n}-{tag}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// An lb.toml: `top` keys, connect timeout 1s, a `[health]` table, the admin endpoint and one
/// listener on free ports, and `backends` named b0, b1, ...
pub fn proxy_conf(backends: &[SocketAddr], top: &str, health: &str) -> String {
    let mut s =
        format!("{top}\n[timeouts]\nconnect = \"1s\"\n[health]\n{health}\n[admin]\naddress = \"127.0.0.1:0\"\n");
    s.push_str("[[listener]]\naddress = \"127.0.0.1:0\"\n");
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!("[[backend]]\nname = \"b{i}\"\naddress = \"{b}\"\n"));
    }
    s
}

/// A blocking client connection with 10 s read and write timeouts.
pub fn raw(addr: SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Opens `path` on a WebSocket server; returns the stream after the 101 head (read a byte at a
/// time, so no frame after it is consumed).
pub fn ws_upgrade(addr: SocketAddr, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut s = raw(addr);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// [`write_temp`] as a path string, for a command line.
pub fn write_conf(name: &str, text: &str) -> String {
    write_temp(name, text).to_string_lossy().into_owned()
}

/// How long a refused start may take before the test fails.
pub const REFUSE_WITHIN: Duration = Duration::from_secs(20);

/// Runs netforge with `args`, expects exit 1 within [`REFUSE_WITHIN`] and exactly one error line
/// (`netforge: ...`) on stderr; returns it.
pub fn refused(args: &[&str]) -> String {
    let (code, out, err) = run(args, REFUSE_WITHIN);
    assert_eq!(code, 1, "{args:?}: exit {code}\nstdout: {out}\nstderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("netforge: ")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one error line expected:\n{err}");
    assert!(!out.contains("listening on"), "{args:?} started anyway: {out}");
    lines[0].to_string()
}

/// GET /metrics from a proxy's admin endpoint, with deadlines; the body of its 200 answer.
pub fn metrics(admin: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_string()
}

/// The value of one Prometheus series (`name{labels}`) in a /metrics body.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// One short session: connect, 64 bytes of `fill` out, the same 64 back, close.
pub fn short_session(addr: SocketAddr, fill: u8) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let msg = [fill; 64];
    s.write_all(&msg)?;
    let mut back = [0u8; 64];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(std::io::Error::other("wrong echo"));
    }
    Ok(())
}

/// Sends `before`, then `urgent` as TCP urgent (out-of-band) data, then `after`, corked into one
/// segment, and returns what comes back until `expect_len` bytes arrived (or the 10 s read
/// timeout of `raw`). A reader stops at the urgent mark with bytes behind it: this catches one
/// that then waits for an edge that never comes.
pub fn urgent_round_trip(addr: SocketAddr, before: &[u8], urgent: &[u8], after: &[u8], expect_len: usize) -> Vec<u8> {
    use std::io::Read;
    let s = raw(addr);
    let sock = socket2::SockRef::from(&s);
    sock.set_cork(true).unwrap();
    assert_eq!(sock.send(before).unwrap(), before.len());
    assert_eq!(sock.send_out_of_band(urgent).unwrap(), urgent.len());
    assert_eq!(sock.send(after).unwrap(), after.len());
    sock.set_cork(false).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let mut s = s;
    while got.len() < expect_len {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

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

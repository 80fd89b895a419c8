//! `netforge bp server|client` end to end: verdicts asserted from TCP_INFO data, byte
//! conservation, hostile HTTP/WebSocket input, config errors, and a real browser when present.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::util::{netforge, raw, refusing_addr, run, with_timeout, ws_upgrade, Proc};

const T: Duration = Duration::from_secs(60);

/// Starts `netforge bp server` on an ephemeral port; returns it and its bound address.
fn bp_server(args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = netforge();
    cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--threads", "2"]).args(args);
    crate::util::spawn_listening(cmd)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netforge-bp-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Runs the client to completion; returns its stdout and the parsed --json document.
fn bp_client(addr: SocketAddr, args: &[&str], name: &str) -> (String, serde_json::Value) {
    let json = tmp(name).join("client.json");
    let server = addr.to_string();
    let json_s = json.to_string_lossy().to_string();
    let mut all = vec!["bp", "client", "--server", &server, "--json", &json_s];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all, Duration::from_secs(40));
    assert_eq!(code, 0, "client failed\nstdout:\n{out}\nstderr:\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (out, doc)
}

fn zero_window_points(doc: &serde_json::Value) -> usize {
    doc["series"].as_array().unwrap().iter().filter(|p| p["snd_wnd"].as_u64() == Some(0)).count()
}

/// Reads a `key N` number out of the server's final statistics.
fn stat(out: &str, key: &str) -> u64 {
    let rest = out.split(key).nth(1).unwrap_or_else(|| panic!("no {key:?} in:\n{out}"));
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn stop(srv: Proc) -> String {
    srv.signal(15);
    let (status, out, err) = srv.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "server exit\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    out
}

fn slow_reader_reaches_the_client(protocol: &'static str) {
    with_timeout(T, move || {
        let (srv, addr) = bp_server(&["--protocol", protocol]);
        let (out, doc) = bp_client(addr, &["--protocol", protocol, "--duration", "2s"], protocol);
        assert!(out.contains("backpressure reached the client: YES"), "{out}");
        // The header counts in the right number; each live line says its rate is the
        // application's write rate.
        assert!(out.lines().next().is_some_and(|l| l.contains(", 1 connection, ")), "{out}");
        let live: Vec<&str> = out.lines().filter(|l| l.starts_with("t=")).collect();
        assert!(
            !live.is_empty() && live.iter().all(|l| l.contains("  app_write=") && l.contains(" MB/s  snd_wnd=")),
            "{out}"
        );
        // From TCP_INFO, not timing: the peer advertised a zero window in sampled points.
        assert!(zero_window_points(&doc) > 0, "no snd_wnd == 0 sample: {doc}");
        assert!(doc["summary"]["zero_window_samples"].as_u64().unwrap() > 0);
        let sout = stop(srv);
        // The server saw its own advertised window at zero.
        assert!(stat(&sout, "zero rcv_wnd samples") > 0, "{sout}");
        assert!(sout.contains("rcv_wnd min 0"), "{sout}");
    });
}

#[test]
fn tcp_slow_reader_gives_yes() {
    slow_reader_reaches_the_client("tcp");
}

#[test]
fn websocket_slow_reader_gives_yes() {
    slow_reader_reaches_the_client("websocket");
}

fn fast_reader_gives_no(protocol: &'static str) {
    with_timeout(T, move || {
        let (srv, addr) = bp_server(&["--protocol", protocol, "--read-delay", "0"]);
        let (out, doc) = bp_client(addr, &["--protocol", protocol, "--duration", "2s"], &format!("fast-{protocol}"));
        assert!(out.contains("backpressure reached the client: NO"), "{out}");
        assert_eq!(zero_window_points(&doc), 0, "{doc}");
        let sout = stop(srv);
        assert!(stat(&sout, "bytes read") > 1_000_000, "{sout}");
    });
}

#[test]
fn tcp_fast_reader_gives_no() {
    fast_reader_gives_no("tcp");
}

#[test]
fn websocket_fast_reader_gives_no() {
    fast_reader_gives_no("websocket");
}

/// written by the client = client SIOCOUTQ + server SIOCINQ + bytes the server read. The
/// client stops writing and samples; the server reads 1 KiB per second, which never opens a
/// closed window (less than one segment), so nothing moves between the two samples but reads.
fn conservation(protocol: &'static str) {
    with_timeout(T, move || {
        let (srv, addr) = bp_server(&["--protocol", protocol, "--read-delay", "1s"]);
        let (out, doc) = bp_client(addr, &["--protocol", protocol, "--duration", "1s"], &format!("cons-{protocol}"));
        let written = doc["final"]["bytes_written"].as_u64().unwrap();
        let outq = doc["final"]["outq"].as_u64().unwrap();
        let sout = stop(srv);
        let read = stat(&sout, "bytes read");
        let inq = stat(&sout, "unread (SIOCINQ)");
        let (lhs, rhs) = (written, outq + inq + read);
        // WebSocket: the Close frame (8 bytes) is written after the final sample.
        assert!(
            lhs.abs_diff(rhs) <= 1024 + 16,
            "written {written} vs outq {outq} + inq {inq} + read {read}\n{out}\n{sout}"
        );
        assert!(written > 1_000_000, "{out}");
    });
}

#[test]
fn tcp_bytes_are_conserved() {
    conservation("tcp");
}

#[test]
fn websocket_bytes_are_conserved() {
    conservation("websocket");
}

#[test]
fn config_errors_are_one_line_with_file_and_line() {
    with_timeout(T, || {
        let dir = tmp("conf");
        let path = dir.join("bad.toml");
        std::fs::write(&path, "protocol = \"tcp\"\n# the next key does not exist\nbogus_key = 1\n").unwrap();
        let p = path.to_string_lossy().to_string();
        for role in ["server", "client"] {
            let (code, out, err) = run(&["bp", role, "--conf", &p], Duration::from_secs(10));
            assert_eq!(code, 1, "{role}: {out}{err}");
            let line = err.lines().find(|l| l.contains("bad.toml")).unwrap_or_else(|| panic!("{role}: {err}"));
            assert!(line.contains(":3"), "{role}: no line number: {line}");
        }
        let (code, _, err) = run(&["bp", "client", "--rate", "99999999"], Duration::from_secs(10));
        assert_eq!(code, 1);
        assert!(err.contains("--rate"), "{err}");
    });
}

#[test]
fn client_that_cannot_connect_exits_1() {
    with_timeout(T, || {
        let (_closed, addr) = refusing_addr();
        let server = addr.to_string();
        let (code, _, err) = run(&["bp", "client", "--server", &server, "--duration", "1s"], Duration::from_secs(20));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("connect"), "{err}");
    });
}

/// Sends `req` and reads until the server closes.
fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = raw(addr);
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens `/ws` on the lab server.
fn upgrade(addr: SocketAddr) -> TcpStream {
    ws_upgrade(addr, "/ws")
}

/// A masked binary frame header for `len` payload bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len < 65536 {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

#[test]
fn hostile_input_closes_that_connection_only() {
    with_timeout(T, || {
        let (srv, addr) = bp_server(&["--protocol", "websocket", "--read-delay", "0"]);
        // Malformed HTTP: a 400 and a close.
        let r = exchange(addr, b"\x00\x01garbage\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        // A plain GET to /ws: 400, not an upgrade.
        let r = exchange(addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        // Anything else: 404; the pages: 200.
        assert!(exchange(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404"));
        let page = exchange(addr, b"GET /client HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("autostart"), "{page}");
        // An oversized frame (limit 256 KiB): Close 1009, then the connection ends.
        let mut s = upgrade(addr);
        s.write_all(&frame_header(10 << 20)).unwrap();
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        assert!(back.len() >= 4 && back[0] == 0x88, "expected a Close frame, got {back:?}");
        assert_eq!(u16::from_be_bytes([back[2], back[3]]), 1009);
        // A client that vanishes mid-frame.
        let mut s = upgrade(addr);
        s.write_all(&frame_header(1000)).unwrap();
        s.write_all(&[0u8; 100]).unwrap();
        drop(s);
        // A good connection afterwards: one message, then a clean close.
        let mut s = upgrade(addr);
        let payload = [7u8; 100];
        let mut msg = frame_header(100);
        msg.extend(payload.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
        s.write_all(&msg).unwrap();
        // Close 1000 and wait for the server's reply: it is still serving.
        s.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]).unwrap();
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        assert!(back.first() == Some(&0x88), "{back:?}");
        let sout = stop(srv);
        assert!(stat(&sout, "http errors") >= 3, "{sout}");
        assert!(stat(&sout, "websocket violations") >= 1, "{sout}");
    });
}

/// Headless Chromium, or `None` (with a clear message) when it is not installed.
pub(crate) fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        crate::util::cannot_run("browser tests", "chromium is not installed (apt-get install chromium)");
    }
    found
}

/// `chromium --dump-dom` of `url` with a fresh profile; the DOM after `budget_ms` of virtual time.
/// Headless Chromium with nothing that reaches out of the machine or needs a desktop.
pub(crate) const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
];

fn dump_dom(bin: &PathBuf, url: &str, budget_ms: u32, name: &str) -> String {
    let profile = tmp(name).join(format!("profile-{}", fastrand::u64(..)));
    let mut cmd = std::process::Command::new(bin);
    cmd.args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(url);
    let p = Proc::spawn(cmd);
    let (_, out, _) = p.finish(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&profile);
    out
}

/// Opens `url` in headless Chromium and evaluates `expr` in the page through the DevTools
/// protocol, in real time, every 100 ms until `done(value)` or `within` has passed; returns the
/// last value. Unlike `--dump-dom`, whose virtual time races ahead of a live WebSocket stream,
/// this watches the page as it runs.
fn watch_page(bin: &PathBuf, url: &str, expr: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
    use std::io::{BufRead, BufReader};
    let profile = tmp("cdp").join(format!("profile-{}", fastrand::u64(..)));
    let mut child = std::process::Command::new(bin)
        .args(HEADLESS)
        .args(["--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chromium");
    struct Kill(std::process::Child, PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _guard = Kill(child, profile);
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" names the port.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(20)).expect("chromium printed no DevTools address");
    // Open a tab on `url` (PUT /json/new) and take its debugger WebSocket.
    let mut http = raw(format!("127.0.0.1:{port}").parse().unwrap());
    write!(http, "PUT /json/new?{url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = http.read_to_string(&mut resp);
    let body = &resp[resp.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let tab: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("bad /json/new reply ({e}): {resp}"));
    let ws_url = tab["webSocketDebuggerUrl"].as_str().expect("no webSocketDebuggerUrl").to_string();
    let stream = raw(format!("127.0.0.1:{port}").parse().unwrap());
    let (mut ws, _) = tungstenite::client(ws_url.as_str(), stream).expect("DevTools WebSocket handshake");
    let deadline = std::time::Instant::now() + within;
    let mut last = String::new();
    for id in 1u64.. {
        let call = serde_json::json!({"id": id, "method": "Runtime.evaluate", "params": {"expression": expr, "returnByValue": true}});
        ws.send(tungstenite::Message::text(call.to_string())).unwrap();
        // Read until our reply (events may come first); the socket has a read timeout.
        loop {
            let msg = ws.read().expect("DevTools connection lost");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(msg.to_text().unwrap_or("")) else { continue };
            if v["id"].as_u64() == Some(id) {
                last = match &v["result"]["result"]["value"] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                break;
            }
        }
        if done(&last) || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// The number in `<span id="ID" ...>N</span>`.
fn span_number(dom: &str, id: &str) -> Option<u64> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let text = &rest[rest.find('>')? + 1..];
    text[..text.find('<')?].trim().parse().ok()
}

#[test]
fn browser_client_pushes_and_the_server_counts() {
    let Some(bin) = chromium() else { return };
    with_timeout(Duration::from_secs(120), move || {
        let (srv, addr) = bp_server(&["--protocol", "websocket", "--read-delay", "0"]);
        let url = format!("http://{addr}/client?autostart=1&payload=1024&rate=100&total=200&conns=1");
        let dom = dump_dom(&bin, &url, 5000, "browser-client");
        assert_eq!(span_number(&dom, "sent"), Some(200), "{dom}");
        assert!(dom.contains("id=\"status\" class=\"num\">done<"), "{dom}");
        let sout = stop(srv);
        // 200 × 1024 payload bytes, plus frame headers.
        assert!(stat(&sout, "bytes read") >= 200 * 1024, "{sout}");
    });
}

#[test]
fn dashboard_receives_samples_and_names_each_client() {
    let Some(bin) = chromium() else { return };
    with_timeout(Duration::from_secs(120), move || {
        let (srv, addr) = bp_server(&["--protocol", "websocket"]);
        let server = addr.to_string();
        let mut cmd = netforge();
        cmd.args(["bp", "client", "--protocol", "websocket", "--server", &server, "--duration", "20s"]);
        let client = Proc::spawn(cmd);
        // The client is connected once its first interval line is out.
        client.wait_line(Duration::from_secs(10), |l| l.starts_with("t="));
        // A connection of our own, whose address:port the dashboard must name on its card.
        let mut own = upgrade(addr);
        let mine = own.local_addr().unwrap().to_string();
        own.write_all(&frame_header(1024)).unwrap();
        own.write_all(&[7u8; 1024]).unwrap();
        // Watch the live page: the samples counter must move and a card must name our client.
        let expr = "JSON.stringify({samples: (document.getElementById('samples') || {}).textContent || '', \
                    peers: Array.from(document.querySelectorAll('.f-peer')).map((e) => e.textContent), \
                    text: document.body.innerText})";
        let page = |v: &str| serde_json::from_str::<serde_json::Value>(v).unwrap_or_default();
        let done = |v: &str| {
            let p = page(v);
            let n = p["samples"].as_str().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
            n > 0 && p["peers"].as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(mine.as_str())))
        };
        let text = watch_page(&bin, &format!("http://{addr}/"), expr, Duration::from_secs(15), done);
        assert!(done(&text), "the dashboard got no samples or names no card {mine}: {text}");
        let p = page(&text);
        let body = p["text"].as_str().unwrap_or("");
        assert!(!body.contains("client n/a"), "an empty client view is shown: {body}");
        assert!(body.contains("reopens it only once enough space is free"), "no line on the zero window: {body}");
        // Every card names an address:port.
        for peer in p["peers"].as_array().unwrap() {
            let peer = peer.as_str().unwrap();
            assert!(peer.parse::<SocketAddr>().is_ok(), "card names {peer:?}, not an address:port");
        }
        drop(own);
        drop(client);
        stop(srv);
    });
}

#[test]
fn incomplete_http_head_is_dropped_after_the_timeout() {
    with_timeout(T, || {
        let (srv, addr) = bp_server(&["--protocol", "websocket", "--http-head-timeout", "200ms"]);
        let mut slow = raw(addr);
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        // Meanwhile a complete request is served.
        assert!(exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200"));
        // The server closes the slow one (EOF or reset), well before the 10 s read timeout.
        let mut rest = Vec::new();
        let r = slow.read_to_end(&mut rest);
        assert!(r.is_ok() || r.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock), "{r:?}");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        let sout = stop(srv);
        assert_eq!(stat(&sout, "head timeouts"), 1, "{sout}");
    });
}

/// `netforge proxy` in front of `addr` (one reactor, health checks off so the backend is usable
/// at once, no admin endpoint); returns it and its listening address.
fn proxy_to(addr: SocketAddr) -> (Proc, SocketAddr) {
    let conf = tmp("proxy").join(format!("lb-{}.toml", addr.port()));
    std::fs::write(
        &conf,
        format!(
            "threads = 1\n[health]\nenabled = false\n[[listener]]\naddress = \"127.0.0.1:0\"\n[[backend]]\naddress = \"{addr}\"\n"
        ),
    )
    .unwrap();
    let mut cmd = netforge();
    cmd.arg("proxy").arg("--conf").arg(&conf).args(["--admin", ""]);
    let p = Proc::spawn(cmd);
    let first = p.line(Duration::from_secs(10));
    let paddr = first
        .strip_prefix("netforge proxy: listening on ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from proxy: {first}"));
    (p, paddr)
}

/// Client → `netforge proxy` → slow reader: the proxy's bounded per-direction buffers stop
/// reading from the client once the backend's window is closed, so the zero window reaches the
/// client's own socket.
///
/// The client pushes as fast as the sockets take data for 3 s: more than every buffer on the
/// path can hold even fully autotuned (the proxy's client socket may grow its receive buffer to
/// `tcp_rmem`'s maximum, 32 MiB on common kernels, before its rings fill), so the zero window
/// must reach the client however the processes are scheduled.
fn slow_reader_through_the_proxy(protocol: &'static str) {
    with_timeout(T, move || {
        let (srv, addr) = bp_server(&["--protocol", protocol]);
        let (px, paddr) = proxy_to(addr);
        // As fast as the sockets take it: the path holds megabytes (both hops' socket buffers
        // and the proxy's rings) before the zero window can reach the client, which at the
        // default 2 MB/s took over 2.5 s of a 3 s run, and longer on a loaded machine.
        let args = ["--protocol", protocol, "--duration", "3s", "--rate", "0"];
        let (out, doc) = bp_client(paddr, &args, &format!("proxy-{protocol}"));
        assert!(out.contains("backpressure reached the client: YES"), "{out}");
        assert!(zero_window_points(&doc) > 0, "no snd_wnd == 0 sample behind the proxy: {doc}");
        assert!(doc["summary"]["zero_window_samples"].as_u64().unwrap() > 0, "{doc}");
        let sout = stop(srv);
        assert!(stat(&sout, "zero rcv_wnd samples") > 0, "{sout}");
        drop(px);
    });
}

#[test]
fn tcp_slow_reader_through_the_proxy_gives_yes() {
    slow_reader_through_the_proxy("tcp");
}

#[test]
fn websocket_slow_reader_through_the_proxy_gives_yes() {
    slow_reader_through_the_proxy("websocket");
}

/// Most bytes the unbounded relay holds: the deliberate leak is capped so the test stays bounded.
const RELAY_CAP: usize = 256 << 20;
const RELAY_CHUNK: usize = 64 << 10;
/// The relay stops by itself after this, whatever its sockets do.
const RELAY_LIFETIME: Duration = Duration::from_secs(30);

/// A deliberately unbounded hop (the opposite of `netforge proxy`): one thread reads everything
/// the client sends as fast as it comes into memory (up to [`RELAY_CAP`]), another writes it to
/// the server as fast as the server takes it. The client's socket never sees the server's zero
/// window: the relay acknowledges every byte.
struct Relay {
    addr: SocketAddr,
    absorbed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    upstream: std::sync::Arc<std::sync::Mutex<Option<TcpStream>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Instant;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let absorbed = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
        let deadline = Instant::now() + RELAY_LIFETIME;
        // Each chunk is at most RELAY_CHUNK bytes, so the queue holds at most RELAY_CAP.
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(RELAY_CAP / RELAY_CHUNK);
        let reader = {
            let (absorbed, stop, upstream) = (absorbed.clone(), stop.clone(), upstream.clone());
            std::thread::spawn(move || {
                // Accept one client (polling a non-blocking listener up to the deadline).
                let mut client = loop {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        return;
                    }
                    match listener.accept() {
                        Ok((s, _)) => break s,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => return,
                    }
                };
                client.set_nonblocking(false).unwrap();
                client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let Ok(up) = TcpStream::connect(server) else { return };
                up.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                *upstream.lock().unwrap() = Some(up);
                let mut total = 0usize;
                while total < RELAY_CAP && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let mut chunk = vec![0u8; RELAY_CHUNK];
                    match client.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            chunk.truncate(n);
                            total += n;
                            absorbed.fetch_add(n as u64, Ordering::Relaxed);
                            if tx.send_timeout(chunk, Duration::from_secs(1)).is_err() {
                                break;
                            }
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                // Dropping `tx` lets the writer finish what is queued (bounded by its own checks).
            })
        };
        let writer = {
            let (forwarded, stop, upstream) = (forwarded.clone(), stop.clone(), upstream.clone());
            std::thread::spawn(move || {
                let mut up: Option<TcpStream> = None;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let chunk = match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(c) => c,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    };
                    if up.is_none() {
                        up = upstream.lock().unwrap().as_ref().and_then(|s| s.try_clone().ok());
                    }
                    let Some(s) = up.as_mut() else { break };
                    let mut off = 0;
                    // Short write timeouts: a closed window parks us here, and the stop flag
                    // and the deadline must still be noticed.
                    while off < chunk.len() && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match s.write(&chunk[off..]) {
                            Ok(0) => return,
                            Ok(n) => {
                                off += n;
                                forwarded.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock
                                        | std::io::ErrorKind::TimedOut
                                        | std::io::ErrorKind::Interrupted
                                ) => {}
                            Err(_) => return,
                        }
                    }
                }
            })
        };
        Relay { addr, absorbed, forwarded, stop, upstream, threads: vec![reader, writer] }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = self.upstream.lock().unwrap().as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // Every blocking call in the threads has a ≤ 1 s timeout and checks the flag.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Client → unbounded relay → slow reader: the server's window closes, the client's never
/// does, and the verdict says NO and names the hop that absorbs the data.
#[test]
fn unbounded_relay_gives_no_and_names_the_absorbing_hop() {
    use std::sync::atomic::Ordering;
    with_timeout(T, || {
        let (srv, addr) = bp_server(&[]);
        let relay = Relay::start(addr);
        let (out, doc) = bp_client(relay.addr, &["--duration", "2s"], "relay");
        assert!(out.contains("backpressure reached the client: NO"), "{out}");
        assert!(
            out.contains(
                "a hop between this client and the reader (proxy, load balancer, relay) is absorbing the data"
            ),
            "{out}"
        );
        assert_eq!(zero_window_points(&doc), 0, "{doc}");
        assert_eq!(doc["summary"]["zero_window_samples"].as_u64(), Some(0), "{doc}");
        let written = doc["final"]["bytes_written"].as_u64().unwrap();
        let sout = stop(srv);
        // The server's window did close: the data piled up in the relay instead.
        assert!(stat(&sout, "zero rcv_wnd samples") > 0, "{sout}");
        let (absorbed, forwarded) = (relay.absorbed.load(Ordering::Relaxed), relay.forwarded.load(Ordering::Relaxed));
        assert!(written > 1_000_000, "{out}");
        // Most of what the client wrote went into the relay (a little may still sit in the
        // relay's receive queue); how much the relay got rid of depends on the kernel's send
        // buffer towards the server, so it is only reported.
        assert!(absorbed >= written / 2, "absorbed {absorbed}, forwarded {forwarded}, written {written}");
        println!("relay: client wrote {written}, relay absorbed {absorbed}, forwarded {forwarded}");
        drop(relay);
    });
}

#[test]
fn an_output_file_that_cannot_be_written_stops_the_client_before_its_run() {
    with_timeout(T, || {
        let (srv, addr) = bp_server(&[]);
        let server = addr.to_string();
        for flag in ["--json", "--html"] {
            // A 60 s run that would only fail at its end without the check at the start.
            let args = ["bp", "client", "--server", &server, "--duration", "60s", flag, "/nonexistent-dir/r.out"];
            let (code, _, err) = run(&args, Duration::from_secs(20));
            assert_eq!(code, 1, "{flag}: {err}");
            assert!(err.contains(&format!("{flag} /nonexistent-dir/r.out: cannot write")), "{flag}: {err}");
        }
        drop(srv);
    });
}

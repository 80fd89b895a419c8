//! WebSocket: `goon --ws` against `serve --mode ws`, the built-in sink and small test servers
//! that refuse, stall or close; `serve --mode ws` against a blocking client; message traffic
//! as frames over ws and wss.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::util::{raw, run, serve, with_timeout, ws_upgrade};

const T: Duration = Duration::from_secs(60);

fn temp_json(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("netforge-ws-{tag}-{}.json", std::process::id()))
}

/// Runs goon with `args` plus `--json`, returns (exit code, stdout, the JSON result).
fn goon_json(tag: &str, args: &[&str]) -> (i32, String, serde_json::Value) {
    let path = temp_json(tag);
    let p = path.to_string_lossy().into_owned();
    let mut all = vec!["goon"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-y", "-i", "0", "--json", &p]);
    let (code, out, err) = run(&all, T);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{p}: {e}\nstdout:\n{out}\nstderr:\n{err}"));
    let _ = std::fs::remove_file(&path);
    (code, out, serde_json::from_str(&text).unwrap())
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Reads one request head (up to the blank line) with the stream's timeouts; None on EOF or
/// timeout.
fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A test server: accepts `count` connections on a thread and hands each, with its request
/// head when `read` is set, to `answer`; the heads come back on the receiver. Streams stay
/// open until the returned sender is dropped (the end of the test), 30 s at most.
fn test_server(
    count: usize,
    read: bool,
    answer: impl Fn(usize, &mut TcpStream, Option<&str>) + Send + 'static,
) -> (SocketAddr, Receiver<String>, Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = bounded(count.max(1));
    let (stop_tx, stop_rx) = bounded::<()>(1);
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for i in 0..count {
            let Ok((mut s, _)) = l.accept() else { break };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let head = if read { read_head(&mut s) } else { None };
            answer(i, &mut s, head.as_deref());
            if let Some(h) = head {
                let _ = tx.try_send(h);
            }
            kept.push(s);
        }
        let _ = stop_rx.recv_timeout(Duration::from_secs(30));
        drop(kept);
    });
    (addr, rx, stop_tx)
}

/// Answers the upgrade request `head` with a valid 101.
fn accept_upgrade(s: &mut TcpStream, head: Option<&str>) -> std::io::Result<()> {
    let key = key_of(head.unwrap_or(""));
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    );
    s.write_all(resp.as_bytes())
}

fn key_of(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap_or_else(|| panic!("no key in {head}"))
        .trim()
        .to_string()
}

#[test]
fn goon_against_serve_ws_upgrades_every_connection() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "0"]);
        let port = addr.port().to_string();
        let (code, out, v) = goon_json("serve", &["127.0.0.1", &port, "-c", "300", "-s", "0", "--ws", "/chat"]);
        assert_eq!(code, 0, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let hdr = lines.iter().position(|l| l.ends_with("tcp test statistics ---")).expect("header");
        // tcpgoon's lines first, unchanged; the WebSocket lines after them.
        assert_eq!(lines[hdr + 1], "Total: 300, Dialing: 0, Established: 300, Closed: 0, Error: 0, NotInitiated: 0");
        assert_eq!(lines[hdr + 3], "Total established connections: 300");
        assert!(lines[hdr + 7].starts_with("Response time percentiles for 300 successful connections"), "{out}");
        assert_eq!(lines[hdr + 8], "WebSocket /chat: 300 upgraded, 0 failed, 300 open on closure");
        assert!(lines[hdr + 9].starts_with("Upgrade time stats for 300 upgrades min/avg/max/dev = "), "{out}");
        assert!(lines[hdr + 10].starts_with("Upgrade time percentiles for 300 upgrades p50/p90/p99/p99.9/max = "));
        let w = &v["websocket"];
        assert_eq!((n(&w["upgraded"]), n(&w["failed"]), n(&w["open_on_closure"])), (300, 0, 300));
        assert_eq!(n(&w["upgrade_time"]["count"]), 300);
        assert_eq!(v["config"]["websocket"]["path"], "/chat");
        assert_eq!(n(&v["exit_code"]), 0);
    });
}

#[test]
fn ws_ping_records_round_trips() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "0"]);
        let port = addr.port().to_string();
        let (code, out, v) = goon_json(
            "ping",
            &["127.0.0.1", &port, "-c", "20", "-s", "0", "--ws", "/", "--ws-ping", "100ms", "--hold", "1s"],
        );
        assert_eq!(code, 0, "{out}");
        let w = &v["websocket"];
        let (sent, pongs) = (n(&w["pings_sent"]), n(&w["pongs"]));
        // 1 s of hold at 100 ms per connection: several rounds each.
        assert!(sent >= 20 * 3, "{out}");
        // Every ping sent is answered, unanswered, or in flight when the run ended (at most
        // one per connection).
        let in_flight = n(&w["pings_in_flight_on_closure"]);
        assert_eq!(pongs + n(&w["pings_unanswered"]) + in_flight, sent, "{out}");
        assert!(in_flight <= 20, "{out}");
        assert_eq!(n(&w["ping_rtt"]["count"]), pongs);
        assert!(out.contains(&format!("Ping RTT stats for {pongs} pongs min/avg/max/dev = ")), "{out}");
    });
}

#[test]
fn pings_a_server_never_answers_are_unanswered_or_in_flight_at_the_end() {
    with_timeout(T, || {
        // Upgrades, then reads nothing and answers nothing: no pong ever comes.
        let (addr, _, _stop) = test_server(4, true, |_, s, head| {
            let _ = accept_upgrade(s, head);
        });
        let port = addr.port().to_string();
        let (code, out, v) = goon_json(
            "silent-pings",
            &["127.0.0.1", &port, "-c", "4", "-s", "0", "--ws", "/", "--ws-ping", "50ms", "--hold", "500ms"],
        );
        assert_eq!(code, 0, "{out}");
        let w = &v["websocket"];
        let (sent, unanswered, in_flight) =
            (n(&w["pings_sent"]), n(&w["pings_unanswered"]), n(&w["pings_in_flight_on_closure"]));
        assert_eq!(n(&w["pongs"]), 0, "{out}");
        assert!(sent >= 4 * 3, "several pings each: {out}");
        // Each connection's last ping is still in flight when the hold ends; the rest were
        // superseded unanswered.
        assert_eq!((in_flight, unanswered + in_flight), (4, sent), "{out}");
        assert!(
            out.contains(&format!("Pings: {sent} sent, 0 answered, {unanswered} unanswered, 4 in flight at the end, ")),
            "{out}"
        );
    });
}

#[test]
fn upgrades_refused_with_403_and_404_count_by_status() {
    with_timeout(T, || {
        let (addr, _, _stop) = test_server(10, true, |i, s, _| {
            let status = if i < 4 { "403 Forbidden" } else { "404 Not Found" };
            let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        });
        let port = addr.port().to_string();
        let (code, out, v) = goon_json("refused", &["127.0.0.1", &port, "-c", "10", "-s", "0", "--ws", "/x"]);
        assert_eq!(code, 2, "an upgrade failure is an error:\n{out}");
        assert!(out.contains("Total: 10, Dialing: 0, Established: 0, Closed: 10, Error: 0, NotInitiated: 0"), "{out}");
        assert!(out.contains("WebSocket /x: 0 upgraded, 10 failed, 0 open on closure"), "{out}");
        assert!(out.contains("Upgrade failures: status 403 4, status 404 6\n"), "{out}");
        assert_eq!(v["websocket"]["failed_by_status"], serde_json::json!({"403": 4, "404": 6}));
    });
}

#[test]
fn a_server_that_never_answers_is_a_timeout() {
    with_timeout(T, || {
        let (addr, heads, _stop) = test_server(5, true, |_, _, _| {});
        let port = addr.port().to_string();
        let (code, out, v) =
            goon_json("stall", &["127.0.0.1", &port, "-c", "5", "-s", "0", "--ws", "/", "--ws-timeout", "300ms"]);
        assert_eq!(code, 2, "{out}");
        assert_eq!(heads.try_iter().count(), 5, "every request head reached the server");
        assert!(out.contains("Upgrade failures: timeout 5\n"), "{out}");
        assert_eq!(n(&v["websocket"]["failed_timeout"]), 5);
    });
}

#[test]
fn a_plain_server_that_closes_or_babbles_is_closed_or_bad_response() {
    with_timeout(T, || {
        let (addr, _, _stop) = test_server(4, false, |_, s, _| {
            let _ = s.shutdown(std::net::Shutdown::Both);
        });
        let port = addr.port().to_string();
        let (code, out, v) = goon_json("closes", &["127.0.0.1", &port, "-c", "4", "-s", "0", "--ws", "/"]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("Upgrade failures: closed 4\n"), "{out}");
        assert_eq!(n(&v["websocket"]["failed_closed"]), 4);
        let (addr, _, _stop) = test_server(3, true, |_, s, _| {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        });
        let port = addr.port().to_string();
        let (_, out, v) = goon_json("babbles", &["127.0.0.1", &port, "-c", "3", "-s", "0", "--ws", "/"]);
        assert!(out.contains("Upgrade failures: bad response 3\n"), "{out}");
        assert_eq!(n(&v["websocket"]["failed_bad_response"]), 3);
    });
}

#[test]
fn headers_and_path_reach_the_server() {
    with_timeout(T, || {
        let (addr, heads, _stop) = test_server(2, true, |_, s, head| {
            let _ = accept_upgrade(s, head);
        });
        let port = addr.port().to_string();
        let (code, out, v) = goon_json(
            "headers",
            &[
                "127.0.0.1",
                &port,
                "-c",
                "2",
                "-s",
                "0",
                "--ws",
                "/room?id=7",
                "--header",
                "X-Token: s3cret",
                "--header",
                "Origin: http://example.test",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(n(&v["websocket"]["upgraded"]), 2, "{out}");
        let heads: Vec<String> = heads.try_iter().collect();
        assert_eq!(heads.len(), 2);
        for h in &heads {
            assert!(h.starts_with("GET /room?id=7 HTTP/1.1\r\n"), "{h}");
            assert!(h.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")), "{h}");
            assert!(h.contains("\r\nX-Token: s3cret\r\n"), "{h}");
            assert!(h.contains("\r\nOrigin: http://example.test\r\n"), "{h}");
            assert!(h.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{h}");
        }
        assert_ne!(key_of(&heads[0]), key_of(&heads[1]), "a fresh key per connection");
    });
}

#[test]
fn builtin_target_in_ws_mode() {
    with_timeout(T, || {
        let (code, out, v) =
            goon_json("builtin", &["--ws", "/", "-c", "100", "-s", "0", "--ws-ping", "50ms", "--hold", "300ms"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("stressing the built-in sink on 127.0.0.1:"), "{out}");
        assert!(out.contains("(mode ws, in this process)"), "{out}");
        assert!(out.contains("WebSocket /: 100 upgraded, 0 failed, 100 open on closure"), "{out}");
        assert!(n(&v["websocket"]["pongs"]) > 0, "{out}");
    });
}

#[test]
fn bad_ws_flags_are_one_line_errors() {
    with_timeout(T, || {
        for (args, want) in [
            (&["goon", "--ws", "chat", "-y"][..], "--ws <PATH>"),
            (&["goon", "--ws", "/", "--header", "Bad Name: x", "-y"][..], "--header"),
            (&["goon", "--header", "X: y", "-y"][..], "--ws"),
            (&["goon", "--ws", "/", "--ws-ping", "0", "-y"][..], "--ws-ping"),
        ] {
            let (code, out, err) = run(args, T);
            assert_eq!(code, 1, "{args:?}\n{out}\n{err}");
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    });
}

/// A masked client frame.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut v = vec![first, 0x80 | payload.len() as u8];
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    v
}

fn read_n(s: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).unwrap();
    b
}

/// Each small frame is a short read, after which the sink waits for the next edge: the next
/// frame, and a frame with the FIN right behind it, must all be answered.
#[test]
fn serve_ws_answers_small_frames_one_by_one_and_up_to_the_fin() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "0"]);
        let mut s = ws_upgrade(addr, "/");
        s.set_nodelay(true).unwrap();
        for i in 0..100u8 {
            s.write_all(&client_frame(0x82, &[i; 3])).unwrap();
            assert_eq!(read_n(&mut s, 5), [0x82, 3, i, i, i], "frame {i}");
        }
        s.write_all(&client_frame(0x81, b"last")).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_n(&mut s, 6), b"\x81\x04last");
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "closed after the FIN");
    });
}

/// A frame whose bytes are split around an urgent byte: the sink's read stops at the urgent
/// mark with the rest queued behind it and no new edge to come, so it must read on. (Nagle on:
/// with TCP_NODELAY the urgent send goes out in a segment of its own, and the rest brings its
/// own edge.)
#[test]
fn serve_ws_reads_past_urgent_data() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "0"]);
        let mut s = ws_upgrade(addr, "/");
        s.write_all(&client_frame(0x82, &[1; 3])).unwrap();
        assert_eq!(read_n(&mut s, 5), [0x82, 3, 1, 1, 1]);
        let f = client_frame(0x81, b"split");
        let sock = socket2::SockRef::from(&s);
        sock.set_cork(true).unwrap();
        sock.send(&f[..4]).unwrap();
        sock.send_out_of_band(b"!").unwrap();
        sock.send(&f[4..]).unwrap();
        sock.set_cork(false).unwrap();
        assert_eq!(read_n(&mut s, 7), b"\x81\x05split", "the bytes behind the urgent mark");
    });
}

#[test]
fn serve_ws_echoes_answers_pings_and_closes() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "0"]);
        let mut s = ws_upgrade(addr, "/anything");
        s.write_all(&client_frame(0x81, b"hello")).unwrap();
        assert_eq!(read_n(&mut s, 7), b"\x81\x05hello");
        s.write_all(&client_frame(0x89, b"p1")).unwrap();
        assert_eq!(read_n(&mut s, 4), b"\x8a\x02p1");
        s.write_all(&client_frame(0x88, &1000u16.to_be_bytes())).unwrap();
        assert_eq!(read_n(&mut s, 4), b"\x88\x02\x03\xe8");
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "closed after the close frame");

        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws-discard", "--interval", "0"]);
        let mut s = ws_upgrade(addr, "/");
        s.write_all(&client_frame(0x82, b"dropped")).unwrap();
        s.write_all(&client_frame(0x89, b"p")).unwrap();
        assert_eq!(read_n(&mut s, 3), b"\x8a\x01p", "no echo before the pong");

        // Not an upgrade: 400, then closed.
        let mut s = raw(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    });
}

#[test]
fn report_merge_adds_the_shards_websocket_figures_exactly() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "ws", "--interval", "0"]);
        let port = addr.port().to_string();
        let mut docs = Vec::new();
        let mut files = Vec::new();
        for i in 0..2 {
            let path = temp_json(&format!("shard{i}"));
            let p = path.to_string_lossy().into_owned();
            let shard = format!("{i}/2");
            let args =
                ["goon", "127.0.0.1", &port, "-c", "101", "-s", "0", "--ws", "/m", "--shard", &shard, "-y", "-i", "0"];
            let mut all = args.to_vec();
            all.extend_from_slice(&["--ws-ping", "50ms", "--hold", "200ms", "--json", &p]);
            let (code, out, err) = run(&all, T);
            assert_eq!(code, 0, "{out}\n{err}");
            docs.push(serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).unwrap()).unwrap());
            files.push(p);
        }
        let merged = temp_json("merged");
        let mp = merged.to_string_lossy().into_owned();
        let (code, out, err) = run(&["report", "merge", &files[0], &files[1], "--json", &mp], T);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("WebSocket /m: 101 upgraded, 0 failed, 101 open on closure"), "{out}");
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
        let sum = |k: &dyn Fn(&serde_json::Value) -> u64| docs.iter().map(k).sum::<u64>();
        let w = &m["websocket"];
        assert_eq!(n(&w["upgraded"]), 101);
        assert_eq!(n(&w["pongs"]), sum(&|d| n(&d["websocket"]["pongs"])));
        assert_eq!(n(&w["upgrade_time"]["count"]), 101);
        let ns = |v: &serde_json::Value| v["sum_ns"].as_str().unwrap().parse::<u128>().unwrap();
        let parts: u128 = docs.iter().map(|d| ns(&d["websocket"]["ping_rtt"])).sum();
        assert_eq!(ns(&w["ping_rtt"]), parts, "exact moments add up");
        let max = docs.iter().map(|d| n(&d["websocket"]["upgrade_time"]["max_ns"])).max().unwrap();
        assert_eq!(n(&w["upgrade_time"]["max_ns"]), max);
        // The fleet's samples add up to the same figures.
        let merged_samples = m["samples"].as_array().expect("fleet samples");
        let ssum = |k: &str| merged_samples.iter().map(|s| n(&s["websocket"][k])).sum::<u64>();
        assert_eq!((ssum("upgraded_new"), ssum("pongs_new")), (101, n(&w["pongs"])));

        // A shard without --ws cannot be merged with one that had it.
        let plain = temp_json("plain");
        let pp = plain.to_string_lossy().into_owned();
        let (code, out, _) = run(
            &["goon", "127.0.0.1", &port, "-c", "101", "-s", "0", "--shard", "1/2", "-y", "-i", "0", "--json", &pp],
            T,
        );
        assert_eq!(code, 0, "{out}");
        let (code, _, err) = run(&["report", "merge", &files[0], &pp], T);
        assert_ne!(code, 0);
        assert!(err.contains("websocket: missing, but"), "{err}");
        for f in files.iter().chain([&mp, &pp]) {
            let _ = std::fs::remove_file(f);
        }
    });
}

#[test]
fn json_stream_intervals_carry_the_websocket_figures() {
    with_timeout(T, || {
        let path = temp_json("stream");
        let p = path.to_string_lossy().into_owned();
        let args = ["goon", "--ws", "/", "-c", "50", "-s", "5", "--ws-ping", "50ms", "--hold", "300ms", "-i", "100ms"];
        let mut all = args.to_vec();
        all.extend_from_slice(&["-y", "--json-stream", &p]);
        let (code, out, err) = run(&all, T);
        assert_eq!(code, 0, "{out}\n{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let intervals: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "interval").collect();
        assert!(intervals.len() >= 3, "{text}");
        let sum = |f: &dyn Fn(&serde_json::Value) -> u64| intervals.iter().map(|e| f(&e["websocket"])).sum::<u64>();
        assert_eq!(sum(&|w| n(&w["upgraded_new"])), 50, "{text}");
        assert_eq!(sum(&|w| n(&w["upgrade_time"]["count"])), 50);
        let end = events.iter().find(|e| e["event"] == "end").expect("end event");
        assert_eq!(sum(&|w| n(&w["pongs_new"])), n(&end["result"]["websocket"]["pongs"]));
        assert_eq!(sum(&|w| n(&w["ping_rtt"]["count"])), n(&end["result"]["websocket"]["ping_rtt"]["count"]));
        for e in &intervals {
            assert_eq!(e["sample"]["websocket"], e["websocket"], "the sample carries the same part");
        }
        // --json's samples (the end event's result) carry it too, with the same sums.
        let samples = end["result"]["samples"].as_array().expect("samples");
        let ssum = |k: &str| samples.iter().map(|s| n(&s["websocket"][k])).sum::<u64>();
        assert_eq!(ssum("upgraded_new"), 50);
        assert_eq!(ssum("pongs_new"), n(&end["result"]["websocket"]["pongs"]));
        let last = samples.last().unwrap();
        assert_eq!(n(&last["websocket"]["open"]), n(&end["result"]["websocket"]["open_on_closure"]));
    });
}

/// wss: `--tls --ws` upgrades inside the TLS session, against `serve --tls --mode ws` and
/// against the built-in sink; the upgrade is timed from the handshake's end.
#[test]
fn wss_upgrades_inside_tls_against_serve_and_the_builtin_sink() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls", "--mode", "ws"]);
        let port = addr.port().to_string();
        let (code, out, v) = goon_json(
            "wss",
            &[
                "127.0.0.1",
                &port,
                "--tls",
                "--insecure",
                "--ws",
                "/",
                "-c",
                "30",
                "-s",
                "0",
                "--ws-ping",
                "50ms",
                "--hold",
                "300ms",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("WebSocket /: 30 upgraded, 0 failed, 30 open on closure"), "{out}");
        assert_eq!(n(&v["tls"]["handshakes"]["done"]), 30, "{out}");
        assert!(n(&v["websocket"]["pongs"]) > 0, "{out}");
        let (code, out, v) =
            goon_json("wss-builtin", &["--tls", "--ws", "/", "-c", "30", "-s", "0", "--hold", "200ms"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("(mode ws, tls, in this process)"), "{out}");
        assert_eq!((n(&v["websocket"]["upgraded"]), n(&v["tls"]["handshakes"]["done"])), (30, 30), "{out}");
        // Plain WebSocket against a TLS listener: the upgrade request is not a ClientHello.
        let (code, out, v) = goon_json("ws-to-tls", &["127.0.0.1", &port, "--ws", "/", "-c", "3", "-s", "0"]);
        assert_eq!(code, 2, "{out}");
        assert_eq!(n(&v["websocket"]["upgraded"]), 0, "{out}");
    });
}

fn traffic_counts(v: &serde_json::Value) -> &serde_json::Value {
    &v["traffic"]["counts"]
}

/// The 101 head `serve --mode ws` at `addr` answers with (its length is the same for every
/// key): one upgrade by a blocking client, closed after.
fn upgrade_head_len(addr: SocketAddr) -> u64 {
    let mut s = raw(addr);
    let req = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    read_head(&mut s).expect("a 101 head").len() as u64
}

/// `serve`'s final counters after SIGINT: (bytes out, data frames received).
fn serve_ws_final(p: crate::util::Proc) -> (u64, u64) {
    p.signal(2);
    let (_, out, _) = p.finish(Duration::from_secs(20));
    let num = |line: &str, k: &str| -> u64 {
        line.split(k).nth(1).and_then(|r| r.split(',').next()).and_then(|x| x.trim().parse().ok()).unwrap()
    };
    let acc = out.lines().find(|l| l.starts_with("accepted") && l.contains("bytes out ")).expect("final line");
    let ws = out.lines().find(|l| l.starts_with("websocket:")).expect("websocket line");
    (num(acc, "bytes out "), num(ws, "frames "))
}

const WS_TRAFFIC: [&str; 10] =
    ["--message", "ping\\n", "--message-rate", "20", "--duration", "1s", "--expect-bytes", "5", "--hold", "500ms"];

/// Each message is one data frame, every one is echoed and matched; bytes up and down are
/// payload bytes; the server saw as many data frames, and sent back the 101 heads and the
/// echoed frames (2-byte headers, unmasked) and nothing else.
#[test]
fn ws_traffic_against_serve_ws_answers_every_message_as_frames() {
    with_timeout(T, || {
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--mode", "ws"]);
        let head = upgrade_head_len(addr);
        let port = addr.port().to_string();
        let mut args = vec!["127.0.0.1", &port, "--ws", "/", "-c", "5", "-s", "0"];
        args.extend_from_slice(&WS_TRAFFIC);
        let (code, out, v) = goon_json("ws-traffic", &args);
        assert_eq!(code, 0, "{out}");
        let c = traffic_counts(&v);
        let sent = n(&c["sent"]);
        assert!(sent >= 5 * 20, "at least a second of 20/s on 5 connections: {c}");
        assert_eq!(n(&c["responses"]), sent, "every message answered: {c}");
        assert_eq!((n(&c["bytes_up"]), n(&c["bytes_down"])), (sent * 5, sent * 5), "payload bytes: {c}");
        assert_eq!((n(&c["unanswered"]), n(&c["unmatched"]), n(&c["flows"])), (0, 0, 5), "{c}");
        assert_eq!(n(&v["traffic"]["response_time"]["count"]), sent, "one latency per response");
        assert!(out.contains("WebSocket /: 5 upgraded, 0 failed, 5 open on closure"), "{out}");
        let (bytes_out, frames) = serve_ws_final(srv);
        assert_eq!(frames, sent, "one data frame per message");
        assert_eq!(bytes_out, 6 * head + sent * (2 + 5), "101 heads (5 + the probe) and the echoed frames");
    });
}

/// A first message and messages ended by a marker, over ws; the marker is found in the
/// payload of the echoed frames.
#[test]
fn ws_traffic_with_a_marker_and_a_first_message() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--mode", "ws"]);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "--ws",
            "/",
            "-c",
            "3",
            "-s",
            "0",
            "--first-message",
            "abc\\r\\n",
            "--message",
            "hello world\\r\\n",
            "--message-rate",
            "10",
            "--duration",
            "1s",
            "--marker",
            "\\r\\n",
            "--hold",
            "500ms",
        ];
        let (code, out, v) = goon_json("ws-marker", &args);
        assert_eq!(code, 0, "{out}");
        let c = traffic_counts(&v);
        let (sent, first) = (n(&c["sent"]), n(&c["first_sent"]));
        assert_eq!((first, n(&c["first_responses"])), (3, 3), "{c}");
        assert!(sent > 3 * 10, "{c}");
        assert_eq!(n(&c["responses"]), sent, "one marker per message: {c}");
        assert_eq!(n(&c["bytes_up"]), first * 5 + (sent - first) * 13, "{c}");
        assert_eq!((n(&c["bytes_down"]), n(&c["unmatched"])), (n(&c["bytes_up"]), 0), "{c}");
    });
}

/// wss: traffic inside the TLS session's WebSocket, against `serve --tls --mode ws` and
/// against the built-in sink (no host: it is in ws mode and echoes).
#[test]
fn ws_traffic_over_wss_and_against_the_builtin_sink() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls", "--mode", "ws"]);
        let port = addr.port().to_string();
        let mut args = vec!["127.0.0.1", &port, "--tls", "--insecure", "--ws", "/", "-c", "4", "-s", "0"];
        args.extend_from_slice(&WS_TRAFFIC);
        let (code, out, v) = goon_json("wss-traffic", &args);
        assert_eq!(code, 0, "{out}");
        let c = traffic_counts(&v);
        let sent = n(&c["sent"]);
        assert!(sent >= 4 * 20, "{c}");
        assert_eq!((n(&c["responses"]), n(&c["unanswered"]), n(&c["flows"])), (sent, 0, 4), "{c}");
        assert_eq!((n(&c["bytes_up"]), n(&c["bytes_down"])), (sent * 5, sent * 5), "{c}");
        assert_eq!((n(&v["tls"]["handshakes"]["done"]), n(&v["websocket"]["upgraded"])), (4, 4), "{out}");
        for extra in [&[][..], &["--tls"][..]] {
            let mut args: Vec<&str> = extra.to_vec();
            args.extend_from_slice(&["--ws", "/", "-c", "4", "-s", "0", "--ws-ping", "100ms"]);
            args.extend_from_slice(&WS_TRAFFIC);
            let (code, out, v) = goon_json("ws-traffic-builtin", &args);
            assert_eq!(code, 0, "{extra:?}: {out}");
            assert!(out.contains("(mode ws"), "{out}");
            let c = traffic_counts(&v);
            let sent = n(&c["sent"]);
            assert!(sent >= 4 * 20, "{extra:?}: {c}");
            assert_eq!((n(&c["responses"]), n(&c["bytes_down"])), (sent, sent * 5), "{extra:?}: {c}");
            assert!(n(&v["websocket"]["pongs"]) > 0, "pings work alongside traffic: {out}");
        }
    });
}

/// `serve --mode ws_discard` drops every data frame: nothing is answered, the outstanding
/// bound holds, and the run still ends with the messages counted unanswered.
#[test]
fn ws_traffic_against_ws_discard_is_unanswered_and_the_run_ends() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--mode", "ws_discard"]);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "--ws",
            "/",
            "-c",
            "3",
            "-s",
            "0",
            "--message",
            "q",
            "--message-rate",
            "400",
            "--duration",
            "1s",
            "--expect-bytes",
            "1",
        ];
        let started = std::time::Instant::now();
        let (code, out, v) = goon_json("ws-discard", &args);
        assert!(started.elapsed() < Duration::from_secs(30), "no hang");
        assert_eq!(code, 0, "{out}");
        let c = traffic_counts(&v);
        assert_eq!((n(&c["responses"]), n(&c["bytes_down"])), (0, 0), "{c}");
        assert_eq!(n(&c["sent"]), 3 * 128, "the outstanding bound per connection: {c}");
        assert_eq!(n(&c["unanswered"]), 3 * 128, "{c}");
        assert!(n(&c["behind"]) > 0 && n(&c["behind"]) == n(&c["unsent"]), "{c}");
    });
}

/// goon's most extra headers (64, beside its own five) pass `serve --mode ws`'s head parser.
#[test]
fn the_most_extra_headers_goon_sends_are_accepted_by_serve_ws() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--mode", "ws"]);
        let port = addr.port().to_string();
        let headers: Vec<String> = (0..64).map(|i| format!("X-H{i}: v")).collect();
        let mut args: Vec<&str> = vec!["127.0.0.1", &port, "--ws", "/", "-c", "1"];
        for h in &headers {
            args.extend_from_slice(&["--header", h]);
        }
        let (code, out, v) = goon_json("many-headers", &args);
        assert_eq!(code, 0, "{out}");
        assert_eq!(n(&v["websocket"]["upgraded"]), 1, "{out}");
    });
}

/// goon's side of urgent data: a server answers each message with a frame split around an
/// urgent byte, corked into one segment. goon's read stops at the urgent mark with the rest
/// of the frame queued behind it and no new edge to come, so it must read on.
#[test]
fn ws_traffic_reads_past_urgent_data_from_the_server() {
    with_timeout(T, || {
        let (addr, _heads, _stop) = test_server(1, true, |_, s, head| {
            if accept_upgrade(s, head).is_err() {
                return;
            }
            // Each client frame here is 2 header bytes, a 4-byte mask and a payload under 126.
            let mut hdr = [0u8; 2];
            while s.read_exact(&mut hdr).is_ok() {
                let mut rest = vec![0u8; 4 + (hdr[1] & 0x7f) as usize];
                if s.read_exact(&mut rest).is_err() {
                    return;
                }
                let (mask, payload) = rest.split_at(4);
                let payload: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
                let frame = [&[0x82, payload.len() as u8][..], &payload].concat();
                let sock = socket2::SockRef::from(&*s);
                let ok = sock.set_cork(true).is_ok()
                    && sock.send(&frame[..3]).is_ok()
                    && sock.send_out_of_band(b"!").is_ok()
                    && sock.send(&frame[3..]).is_ok()
                    && sock.set_cork(false).is_ok();
                if !ok {
                    return;
                }
            }
        });
        let port = addr.port().to_string();
        let mut args = vec!["127.0.0.1", &port, "--ws", "/", "-c", "1", "-s", "0"];
        args.extend_from_slice(&WS_TRAFFIC);
        let (code, out, v) = goon_json("ws-urgent", &args);
        assert_eq!(code, 0, "{out}");
        let c = traffic_counts(&v);
        let sent = n(&c["sent"]);
        assert!(sent >= 20, "a second of 20/s: {c}");
        assert_eq!((n(&c["responses"]), n(&c["unanswered"])), (sent, 0), "every message answered: {c}");
    });
}

//! goon's message traffic over real loopback sockets: counts and bytes against `serve --mode
//! echo` (checked against the server's own byte counts), first-message only, marker mode, the
//! coordinated-omission check against a server that stalls, a server that never answers, the
//! built-in echo target, `--json-stream` and `report merge`, and bad flags.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use netforge::stats::Latency;
use serde_json::Value;

use crate::util::{run, serve, with_timeout, Proc};

const T: Duration = Duration::from_secs(90);

fn temp(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("netforge-traffic-{}-{tag}", std::process::id()))
}

/// Runs goon to completion and returns (exit code, stdout, its --json document).
fn goon_json(args: &[&str], tag: &str) -> (i32, String, Value) {
    let path = temp(&format!("{tag}.json"));
    let p = path.to_str().unwrap().to_string();
    let mut all: Vec<&str> = vec!["goon"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-y", "--json", &p]);
    let (code, out, err) = run(&all, Duration::from_secs(60));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{args:?}: no json ({e}); {out}\n{err}"));
    let _ = std::fs::remove_file(&path);
    (code, out, serde_json::from_str(&text).unwrap())
}

fn counts(doc: &Value) -> &Value {
    &doc["traffic"]["counts"]
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The server's final `bytes in X, bytes out Y` after SIGINT.
fn serve_bytes(p: Proc) -> (u64, u64) {
    p.signal(2);
    let (_, out, _) = p.finish(Duration::from_secs(20));
    let line = out.lines().find(|l| l.contains("bytes in ") && l.starts_with("accepted")).expect("final line");
    let num = |k: &str| -> u64 {
        line.split(k).nth(1).and_then(|r| r.split(',').next()).and_then(|x| x.trim().parse().ok()).unwrap()
    };
    (num("bytes in "), num("bytes out "))
}

#[test]
fn echo_counts_every_response_and_bytes_match_the_server() {
    with_timeout(T, || {
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let port = addr.port().to_string();
        let (code, out, doc) = goon_json(
            &[
                "127.0.0.1",
                &port,
                "-c",
                "5",
                "--message",
                "ping\\n",
                "--message-rate",
                "20",
                "--duration",
                "1s",
                "--expect-bytes",
                "5",
                "--hold",
                "500ms",
                "-i",
                "1",
            ],
            "echo",
        );
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        let sent = n(c, "sent");
        assert!(sent >= 5 * 20, "at least a second of 20/s on 5 connections: {c}");
        assert_eq!(n(c, "responses"), sent, "every message answered: {c}");
        assert_eq!(n(c, "bytes_up"), sent * 5, "5 bytes a message (\\n decoded): {c}");
        assert_eq!(n(c, "bytes_down"), sent * 5);
        assert_eq!((n(c, "unanswered"), n(c, "unmatched"), n(c, "flows")), (0, 0, 5));
        assert_eq!(n(&doc["traffic"]["response_time"], "count"), sent, "one latency per response");
        let (bytes_in, bytes_out) = serve_bytes(srv);
        assert_eq!((bytes_in, bytes_out), (sent * 5, sent * 5), "the server saw the same bytes");
        // tcpgoon's block first and unchanged, the traffic lines after it; the status lines
        // gain the interval's bytes.
        let block = out.find("--- netforge goon execution statistics ---").unwrap();
        assert!(
            out[block..].contains(&format!("Messages: {} scheduled, {sent} sent, {sent} answered", n(c, "scheduled")))
        );
        assert!(out.contains(&format!("Bytes: {} up, {} down", sent * 5, sent * 5)), "{out}");
        assert!(out.lines().any(|l| l.starts_with("Total: 5,") && l.contains(", Up: ") && l.ends_with(" B")), "{out}");
        let status = out.lines().find(|l| l.starts_with("Total: 5, Dialing") && !l.contains("Up:"));
        assert!(status.is_some(), "the block's own status line stays tcpgoon's: {out}");
    });
}

#[test]
fn first_message_only_is_sent_once_per_connection() {
    with_timeout(T, || {
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "-c",
            "7",
            "--first-message",
            "hello",
            "--expect-bytes",
            "5",
            "--hold",
            "1s",
            "-i",
            "0",
        ];
        let (code, out, doc) = goon_json(&args, "first");
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        for (k, v) in [
            ("scheduled", 7),
            ("sent", 7),
            ("first_sent", 7),
            ("responses", 7),
            ("first_responses", 7),
            ("bytes_up", 35),
            ("bytes_down", 35),
            ("slots", 0),
        ] {
            assert_eq!(n(c, k), v, "{k}: {c}");
        }
        assert!(!out.contains("Message rate:"), "no rate without --message-rate: {out}");
        assert_eq!(serve_bytes(srv), (35, 35));
    });
}

#[test]
fn marker_ends_each_response() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "-c",
            "3",
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
            "-i",
            "0",
        ];
        let (code, out, doc) = goon_json(&args, "marker");
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        let (sent, first) = (n(c, "sent"), n(c, "first_sent"));
        assert_eq!(first, 3);
        assert!(sent > 3 * 10, "{c}");
        assert_eq!(n(c, "responses"), sent, "one marker per message: {c}");
        assert_eq!(n(c, "bytes_up"), first * 5 + (sent - first) * 13, "escapes decoded: {c}");
        assert_eq!(n(c, "unmatched"), 0);
        assert_eq!(doc["traffic"]["config"]["marker"], "\\r\\n");
    });
}

/// A server that reads from the start but answers nothing for `stall`, then echoes everything
/// it has (in order) and goes on echoing. Returns its address; the thread ends with the peer.
fn stalling_echo(stall: Duration) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let accepted = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut held = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = accepted + Duration::from_secs(30);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(k) if accepted.elapsed() < stall => {
                    held.extend_from_slice(&buf[..k]);
                    assert!(held.len() < 1 << 20, "bounded by goon's outstanding limit");
                }
                Ok(k) => {
                    if !held.is_empty() {
                        let _ = s.write_all(&std::mem::take(&mut held));
                    }
                    if s.write_all(&buf[..k]).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if accepted.elapsed() >= stall
                        && !held.is_empty()
                        && s.write_all(&std::mem::take(&mut held)).is_err()
                    {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    addr
}

/// Coordinated omission: during an 800 ms stall at 500 messages/s, more slots come due than the
/// 128 a connection may have unanswered. Those wait (counted behind) and go out when the stall
/// ends, and their latency counts from their slots: every slot of the first ~600 ms shows at
/// least 200 ms. Timed from the send instead, only the 128 in flight would.
#[test]
fn a_stalled_server_shows_as_latency_not_as_a_lower_rate() {
    with_timeout(T, || {
        let stall = Duration::from_millis(800);
        let addr = stalling_echo(stall);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "-c",
            "1",
            "--message",
            "x",
            "--message-rate",
            "500",
            "--duration",
            "1500ms",
            "--expect-bytes",
            "1",
            "--hold",
            "500ms",
            "-i",
            "0",
        ];
        let (code, out, doc) = goon_json(&args, "stall");
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        assert!(n(c, "behind") > 0, "slots came due at the bound: {c}");
        let rt = &doc["traffic"]["response_time"];
        assert!(n(rt, "max_ns") >= stall.as_nanos() as u64, "slot 0 waited the whole stall: {rt}");
        let h = Latency::decode_hist(rt["histogram_v2_deflate_base64"].as_str().unwrap()).unwrap();
        let slow = h.count_between(200_000, u64::MAX);
        assert!(slow >= 200, "{slow} responses at 200 ms or more; timed from the send there would be at most 128");
        assert_eq!(n(c, "responses"), n(c, "sent"), "all answered after the stall: {c}");
    });
}

/// Without --hold, the end of the traffic phase waits (up to a second) for the answers still
/// out: a server that answers 300 ms after the phase ended loses none of them. Ended at the
/// phase's end instead, every message here would count as unanswered.
#[test]
fn answers_still_out_when_the_traffic_phase_ends_are_waited_for() {
    with_timeout(T, || {
        // Traffic runs ~400 ms from the accept; the answers come at 700 ms.
        let addr = stalling_echo(Duration::from_millis(700));
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "-c",
            "1",
            "--message",
            "x",
            "--message-rate",
            "50",
            "--duration",
            "400ms",
            "--expect-bytes",
            "1",
            "-i",
            "0",
        ];
        let (code, out, doc) = goon_json(&args, "grace");
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        assert!(n(c, "sent") >= 10, "{c}");
        assert_eq!((n(c, "responses"), n(c, "unanswered")), (n(c, "sent"), 0), "every answer waited for: {c}");
    });
}

#[test]
fn a_server_that_never_answers_is_counted_and_the_run_ends() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "discard", "--interval", "0"]);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "-c",
            "3",
            "--message",
            "q",
            "--message-rate",
            "400",
            "--duration",
            "1s",
            "--expect-bytes",
            "1",
            "-i",
            "0",
        ];
        let started = Instant::now();
        let (code, out, doc) = goon_json(&args, "never");
        assert!(started.elapsed() < Duration::from_secs(30), "no hang");
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        assert_eq!(n(c, "responses"), 0);
        assert_eq!(n(c, "sent"), 3 * 128, "the outstanding bound per connection: {c}");
        assert_eq!(n(c, "unanswered"), 3 * 128);
        assert!(n(c, "behind") > 0 && n(c, "unsent") > 0, "{c}");
        assert_eq!(n(c, "behind"), n(c, "unsent"), "every slot past the bound waited and was never sent: {c}");
        assert!(out.contains("Response time from the intended send time p50/p90/p99/p99.9/max: -"), "{out}");
    });
}

#[test]
fn builtin_target_echoes_with_traffic_and_streams_intervals() {
    with_timeout(T, || {
        let stream = temp("stream.ndjson");
        let s = stream.to_str().unwrap().to_string();
        let args = [
            "-c",
            "20",
            "--message",
            "hi",
            "--message-rate",
            "10",
            "--expect-bytes",
            "2",
            "--duration",
            "1s",
            "-i",
            "500ms",
            "--json-stream",
            &s,
        ];
        let (code, out, doc) = goon_json(&args, "builtin");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("(mode echo, in this process)"), "{out}");
        let c = counts(&doc);
        assert!(n(c, "responses") >= 20 * 10, "{c}");
        let text = std::fs::read_to_string(&stream).unwrap();
        let _ = std::fs::remove_file(&stream);
        let (mut up, mut responses) = (0, 0);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == "interval" {
                let t = &v["sample"]["traffic"];
                up += n(t, "bytes_up");
                responses += n(&t["response_time"], "count");
            }
        }
        assert_eq!(up, n(c, "bytes_up"), "the intervals' bytes add up to the run's");
        assert_eq!(responses, n(c, "responses"), "and so do their latencies");
    });
}

#[test]
fn report_merge_adds_traffic_exactly() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let port = addr.port().to_string();
        let mut files = Vec::new();
        let mut docs = Vec::new();
        for i in 0..2 {
            let shard = format!("{i}/2");
            let args = [
                "127.0.0.1",
                &port,
                "-c",
                "6",
                "--shard",
                &shard,
                "--message",
                "abcd",
                "--message-rate",
                "20",
                "--duration",
                "500ms",
                "--expect-bytes",
                "4",
                "--hold",
                "300ms",
                "-i",
                "0",
            ];
            let (code, out, doc) = goon_json(&args, &format!("shard{i}"));
            assert_eq!(code, 0, "{out}");
            let f = temp(&format!("merge{i}.json"));
            std::fs::write(&f, doc.to_string()).unwrap();
            files.push(f.to_str().unwrap().to_string());
            docs.push(doc);
        }
        let merged = temp("merged.json");
        let m = merged.to_str().unwrap().to_string();
        let (code, out, err) = run(&["report", "merge", &files[0], &files[1], "--json", &m], T);
        assert_eq!(code, 0, "{out}{err}");
        let fleet: Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
        for f in files.iter().map(std::path::PathBuf::from).chain([merged]) {
            let _ = std::fs::remove_file(f);
        }
        for k in ["sent", "responses", "bytes_up", "bytes_down", "scheduled", "slots", "flows"] {
            assert_eq!(n(counts(&fleet), k), n(counts(&docs[0]), k) + n(counts(&docs[1]), k), "{k}");
        }
        let (a, b) = (&docs[0]["traffic"]["response_time"], &docs[1]["traffic"]["response_time"]);
        let f = &fleet["traffic"]["response_time"];
        assert_eq!(n(f, "count"), n(a, "count") + n(b, "count"));
        assert_eq!(n(f, "max_ns"), n(a, "max_ns").max(n(b, "max_ns")));
        let hist = |v: &Value| Latency::decode_hist(v["histogram_v2_deflate_base64"].as_str().unwrap()).unwrap();
        let mut both = hist(a);
        both.add(hist(b)).unwrap();
        assert!(hist(f) == both, "the fleet's histogram is the sum of the shards'");
        assert_eq!(fleet["traffic"]["requested_per_s"], 20.0 * 6.0);
        let plan = "Traffic: 4 B messages at 20/s for 500ms on each of 6 connections; a response is 4 B\nMessages: ";
        assert!(out.contains(plan), "the fleet's plan line, over all its connections: {out}");
    });
}

#[test]
fn bad_traffic_flags_are_one_line_errors() {
    with_timeout(T, || {
        let cases: &[(&[&str], &str)] = &[
            (&["--message", "x"], "--message needs --message-rate R"),
            (&["--message-rate", "5"], "--message-rate needs --message TEXT|@FILE"),
            (&["--message", "x", "--message-rate", "5"], "--message-rate needs --duration D"),
            (&["--duration", "1s"], "--duration needs --message or --first-message"),
            (&["--expect-bytes", "3"], "--expect-bytes needs --message or --first-message"),
            (&["--first-message", "x", "--marker", ""], "0 bytes; a marker is 1..=1024 bytes"),
            (&["--first-message", "x", "--expect-bytes", "2", "--marker", "z"], "cannot be used with"),
            (&["--first-message", "a\\qb"], "\\q at byte 1 is not an escape"),
            (&["--first-message", "\\x4"], "\\x at byte 0 needs two hex digits"),
            (&["--first-message", ""], "the message is empty"),
            (&["--first-message", "@/nonexistent/msg"], "/nonexistent/msg: cannot open"),
            (&["--first-message", "@/"], "a message file must be a regular file"),
            (&["--message", "x", "--message-rate", "0", "--duration", "1s"], "0 is out of range 0.001..=100000"),
            (&["--message", "x", "--message-rate", "inf", "--duration", "1s"], "out of range"),
            (&["--first-message", "x", "--expect-bytes", "0"], "'--expect-bytes <N>'"),
            (&["--first-message", "x", "--duration", "0s"], "'--duration <DURATION>'"),
        ];
        for (extra, want) in cases {
            let mut args = vec!["goon", "-c", "1", "-y"];
            args.extend_from_slice(extra);
            let (code, out, err) = run(&args, Duration::from_secs(20));
            assert_ne!(code, 0, "{extra:?}: {out}");
            assert!(err.contains(want), "{extra:?}: want {want:?} in:\n{err}");
            let first = err.lines().find(|l| l.contains(want)).unwrap();
            assert!(first.contains("--") || first.contains("message"), "{extra:?}: names the flag: {first}");
            assert!(!out.contains("Total:"), "{extra:?} must not dial");
        }
    });
}

/// Traffic inside TLS: messages and their echoes are plaintext inside the session, the
/// schedule starts once the handshake is done, and the server sees the same bytes.
#[test]
fn traffic_runs_inside_tls_against_serve_tls_echo() {
    with_timeout(T, || {
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--tls", "--interval", "0"]);
        let port = addr.port().to_string();
        let args = [
            "127.0.0.1",
            &port,
            "--tls",
            "--insecure",
            "-c",
            "4",
            "--message",
            "ping\\n",
            "--message-rate",
            "20",
            "--duration",
            "1s",
            "--expect-bytes",
            "5",
            "--hold",
            "500ms",
        ];
        let (code, out, doc) = goon_json(&args, "tls-echo");
        assert_eq!(code, 0, "{out}");
        let c = counts(&doc);
        let sent = n(c, "sent");
        assert!(sent >= 4 * 20, "at least a second of 20/s on 4 connections: {c}");
        assert_eq!((n(c, "responses"), n(c, "unanswered"), n(c, "flows")), (sent, 0, 4), "{c}");
        assert_eq!(n(&doc["tls"]["handshakes"], "done"), 4, "{out}");
        let (bytes_in, bytes_out) = serve_bytes(srv);
        assert_eq!((bytes_in, bytes_out), (sent * 5, sent * 5), "the server counts plaintext bytes");
    });
}

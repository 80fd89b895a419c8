//! `netforge goon` end to end.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::util::{netforge, parse_status, refusing_addr, run, serve, with_timeout, Proc};

const T: Duration = Duration::from_secs(60);

fn last_status(out: &str) -> [u64; 6] {
    out.lines().rev().find_map(parse_status).unwrap_or_else(|| panic!("no status line in:\n{out}"))
}

/// A port with nothing listening: bind, read the port, close.

#[test]
fn thousand_connections_to_serve_all_establish() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0"]);
        let port = addr.port().to_string();
        let (code, out, err) = run(&["goon", "127.0.0.1", &port, "-c", "1000", "-s", "0", "-y"], T);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        let lines: Vec<&str> = out.lines().collect();
        // First line: the t=0 status, everything NotInitiated.
        assert_eq!(lines[0], "Total: 1000, Dialing: 0, Established: 0, Closed: 0, Error: 0, NotInitiated: 1000");
        for l in &lines {
            if l.starts_with("Total:") {
                assert!(parse_status(l).is_some(), "malformed status line {l:?}");
            }
        }
        let hdr =
            lines.iter().position(|l| *l == format!("--- 127.0.0.1:{port} tcp test statistics ---")).expect("header");
        assert_eq!(lines[hdr + 1], "Total: 1000, Dialing: 0, Established: 1000, Closed: 0, Error: 0, NotInitiated: 0");
        assert_eq!(lines[hdr + 2], "--- netforge goon execution statistics ---");
        assert_eq!(lines[hdr + 3], "Total established connections: 1000");
        assert_eq!(lines[hdr + 4], "Max concurrent established connections: 1000");
        assert_eq!(lines[hdr + 5], "Number of established connections on closure: 1000");
        assert!(lines[hdr + 6].starts_with("Response time stats for 1000 successful connections min/avg/max/dev = "));
        assert!(lines[hdr + 7]
            .starts_with("Response time percentiles for 1000 successful connections p50/p90/p99/p99.9/max = "));
        assert!(!out.contains("Time to error"));
        assert!(err.contains("preflight"), "{err}");
        // 1,000 connections: a per-connection memory figure is worth printing.
        assert!(out.contains("Dial phase: 1000 connections resolved in "), "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("Memory: ") && l.ends_with(" B per established connection)")),
            "{out}"
        );
        assert_percentiles_within_max(&out);
    });
}

/// The percentiles line's values never exceed the exact max printed on the stats line.
fn assert_percentiles_within_max(out: &str) {
    let secs = |v: &str| -> f64 {
        let (num, mul) = if let Some(n) = v.strip_suffix("µs") {
            (n, 1e-6)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1e-3)
        } else if let Some(n) = v.strip_suffix("ns") {
            (n, 1e-9)
        } else {
            (v.strip_suffix('s').unwrap_or_else(|| panic!("duration {v:?}")), 1.0)
        };
        num.parse::<f64>().unwrap_or_else(|_| panic!("duration {v:?}")) * mul
    };
    let values = |prefix: &str| -> Vec<f64> {
        let line = out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {out}"));
        line.rsplit(" = ").next().unwrap().split('/').map(secs).collect()
    };
    let max = values("Response time stats")[2];
    let ps = values("Response time percentiles");
    assert_eq!(ps.len(), 5, "{out}");
    assert!(ps.iter().all(|p| *p <= max), "percentiles {ps:?} above the max {max}:\n{out}");
    assert_eq!(ps[4], max, "the percentiles line ends with the exact max:\n{out}");
}

#[test]
fn one_failed_dial_is_singular_and_the_debug_line_names_both_ends() {
    with_timeout(T, || {
        let (_closed, addr) = refusing_addr();
        let mut cmd = netforge();
        cmd.env_remove("RUST_LOG").args(["goon", "127.0.0.1", &addr.port().to_string(), "-c", "1", "-y", "-d"]);
        let (status, out, err) = Proc::spawn(cmd).finish(T);
        assert_eq!(status.code(), Some(2), "{out}{err}");
        assert!(out.contains("Time to error stats for 1 failed connection min/avg/max/dev = "), "{out}");
        assert!(out.contains("Dial phase: 1 connection resolved in "), "{out}");
        assert!(!out.contains("per established connection"), "{out}");
        let line = err.lines().find(|l| l.contains("failed: refused")).unwrap_or_else(|| panic!("no -d line: {err}"));
        assert!(line.contains(&format!("dial {addr} from 127.0.0.1:")), "target and local address: {line}");
        let local = line.split(" from ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
        let local: SocketAddr = local.parse().unwrap_or_else(|_| panic!("local address in {line}"));
        assert_ne!(local.port(), 0, "{line}");
    });
}

#[test]
fn few_connections_print_no_per_connection_memory() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0"]);
        let (code, out, err) = run(&["goon", "127.0.0.1", &addr.port().to_string(), "-c", "10", "-s", "0", "-y"], T);
        assert_eq!(code, 0, "{out}{err}");
        let mem = out.lines().find(|l| l.starts_with("Memory: RSS ")).unwrap_or_else(|| panic!("{out}"));
        assert!(!mem.contains("per established connection"), "10 connections: {mem}");
        assert_percentiles_within_max(&out);
    });
}

#[test]
fn closed_port_is_all_refused_exit_2() {
    with_timeout(T, || {
        let (_closed, addr) = refusing_addr();
        let port = addr.port().to_string();
        let (code, out, _) = run(&["goon", "127.0.0.1", &port, "-c", "20", "-s", "0", "-y"], T);
        assert_eq!(code, 2, "{out}");
        assert_eq!(last_status(&out), [20, 0, 0, 0, 20, 0]);
        assert!(out.contains("Time to error stats for 20 failed connections min/avg/max/dev = "), "{out}");
        assert!(out.contains("Errors by cause: refused 20"), "{out}");
        assert!(!out.contains("Response time stats"));
    });
}

#[test]
fn peer_close_counts_as_closed_and_exit_0() {
    with_timeout(T, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        // Accept and close each connection at once.
        std::thread::spawn(move || {
            for s in l.incoming().take(10) {
                drop(s);
            }
        });
        // The hold ends early once the peer has closed everything.
        let (code, out, _) = run(&["goon", "127.0.0.1", &port, "-c", "10", "-s", "0", "--hold", "30s", "-y"], T);
        assert_eq!(code, 0, "{out}");
        assert_eq!(last_status(&out), [10, 0, 0, 10, 0, 0]);
        assert!(out.contains("Total established connections: 10"), "{out}");
        assert!(out.contains("Number of established connections on closure: 0"), "{out}");
    });
}

#[test]
fn peer_reset_after_accept_counts_as_closed_and_exit_0() {
    with_timeout(T, || {
        const N: usize = 200;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        // Accept each connection and reset it at once (SO_LINGER 0, then close): the handshake
        // has completed, so goon must count each one as Established, then Closed.
        std::thread::spawn(move || {
            for s in l.incoming().take(N) {
                let Ok(s) = s else { continue };
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                drop(s);
            }
        });
        let n = N.to_string();
        let (code, out, err) = run(&["goon", "127.0.0.1", &port, "-c", &n, "-s", "0", "--hold", "30s", "-y"], T);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert_eq!(last_status(&out), [N as u64, 0, 0, N as u64, 0, 0], "{out}");
        assert!(out.contains(&format!("Total established connections: {N}")), "{out}");
        assert!(!out.contains("Errors by cause"), "{out}");
    });
}

#[test]
fn unaccepted_backlog_times_out() {
    with_timeout(T, || {
        // Backlog 1 and nobody accepting: the queue fills, later SYNs are dropped.
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        sock.listen(1).unwrap();
        let port = sock.local_addr().unwrap().as_socket().unwrap().port().to_string();
        let (code, out, _) = run(&["goon", "127.0.0.1", &port, "-c", "12", "-s", "0", "-t", "200", "-y"], T);
        assert_eq!(code, 2, "{out}");
        let s = last_status(&out);
        assert!(s[4] >= 8, "most dials should time out: {out}");
        assert!(out.contains("timeout "), "{out}");
        assert!(out.contains("Time to error stats"), "{out}");
        // Time to error of a timeout is at least the dial timeout.
        drop(sock);
    });
}

#[test]
fn rate_paces_the_dials_and_never_overshoots() {
    with_timeout(T, || {
        const N: usize = 200;
        const RATE: f64 = 200.0;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        // Accept exactly N, keeping each with the Instant the server saw it: the dial times as the
        // target sees them.
        let acceptor = std::thread::spawn(move || {
            let mut held = Vec::with_capacity(N);
            for _ in 0..N {
                let (s, _) = l.accept().unwrap();
                held.push((Instant::now(), s));
            }
            (l, held)
        });
        let (code, out, err) =
            run(&["goon", "127.0.0.1", &port, "-c", &N.to_string(), "--rate", &RATE.to_string(), "-y"], T);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(last_status(&out), [N as u64, 0, N as u64, 0, 0, 0]);
        let (l, held) = acceptor.join().unwrap();
        // No connection beyond N reached the server.
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_err(), "more than {N} connections arrived\n{out}");
        // N dials at RATE/s span (N - 1) / RATE seconds. Pacing timers fire at or after their
        // deadline, so the spread cannot be much shorter; a busy machine may stretch it. A burst
        // (the rate ignored) takes a few ms; half the rate takes twice as long.
        let times: Vec<Instant> = held.iter().map(|(t, _)| *t).collect();
        let spread = (times[N - 1] - times[0]).as_secs_f64();
        let want = (N - 1) as f64 / RATE;
        assert!(
            spread >= 0.8 * want && spread <= 1.6 * want,
            "{N} accepts spread over {spread:.3} s, want about {want:.3} s at {RATE}/s"
        );
        // Evenly paced, not bursts: each half of the span saw about half of the accepts.
        let mid = times[0] + (times[N - 1] - times[0]) / 2;
        let first_half = times.iter().filter(|t| **t < mid).count();
        assert!(
            (N * 3 / 10..=N * 7 / 10).contains(&first_half),
            "{first_half} of {N} accepts in the first half of {spread:.3} s"
        );
    });
}

#[test]
fn sigint_mid_run_reports_and_exits_1() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0"]);
        let mut cmd = netforge();
        cmd.args(["goon", "127.0.0.1", &addr.port().to_string(), "-c", "1000", "-s", "100", "-y"]);
        let p = Proc::spawn(cmd);
        // Wait until the run is under way (the second status line), then interrupt.
        p.wait_line(Duration::from_secs(10), |l| l.starts_with("Total:"));
        p.wait_line(Duration::from_secs(10), |l| l.starts_with("Total:") && !l.ends_with("NotInitiated: 1000"));
        p.signal(2);
        let (status, out, _) = p.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{out}");
        assert!(out.contains("tcp test statistics"), "{out}");
        assert!(out.contains("Run interrupted by signal."), "{out}");
        let s = last_status(&out);
        assert!(s[5] > 0 && s[2] > 0, "{out}");
    });
}

#[test]
fn bad_arguments_are_clear_and_exit_1() {
    with_timeout(T, || {
        let cases: &[(&[&str], &str)] = &[
            (&["goon", "127.0.0.1", "80", "-c", "0", "-y"], "'--connections <N>': 0 is out of range 1..=16777216"),
            (&["goon", "127.0.0.1", "80", "-c", "-1", "-y"], "'--connections <N>': \"-1\" is not a whole number"),
            (&["goon", "127.0.0.1", "0", "-y"], "invalid port 0: must be 1-65535"),
            (&["goon", "127.0.0.1", "70000", "-y"], "invalid port 70000: must be 1-65535"),
            (&["goon", "no-such-host.invalid", "80", "-y"], "cannot resolve host \"no-such-host.invalid\""),
            (&["goon", "127.0.0.1", "80", "--bogus"], "--bogus"),
            (
                &["goon", "127.0.0.1", "80", "--rate", "0", "-y"],
                "'--rate <PER_SECOND>': 0 is out of range 0.001..=10000000",
            ),
            (&["goon", "127.0.0.1", "80", "--source-ip", "nope", "-y"], "--source-ip \"nope\""),
            (&["goon", "127.0.0.1"], "missing <port>"),
        ];
        for (args, want) in cases {
            let (code, out, err) = run(args, Duration::from_secs(20));
            assert_eq!(code, 1, "{args:?}: stdout {out} stderr {err}");
            assert!(err.contains(want), "{args:?}: want {want:?} in stderr:\n{err}");
            assert!(!out.contains("Total:"), "{args:?} must not dial");
        }
    });
}

#[test]
fn no_terminal_and_no_yes_refuses() {
    with_timeout(T, || {
        let (_closed, addr) = refusing_addr();
        let port = addr.port().to_string();
        let (code, out, err) = run(&["goon", "127.0.0.1", &port, "-c", "1"], T);
        assert_eq!(code, 1);
        assert!(err.contains("stdin is not a terminal") && err.contains("-y"), "{err}");
        assert!(!out.contains("Total:"));
    });
}

#[test]
fn above_the_fd_limit_is_refused_before_dialing() {
    with_timeout(T, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        // Cap this child's hard limit at 500 so the check is the same on any machine.
        let script = format!(
            "ulimit -Sn 500 && ulimit -Hn 500 && exec {} goon 127.0.0.1 {port} -c 600 -s 0 -y",
            crate::util::BIN
        );
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("open files") && err.contains("ulimit") && err.contains("LimitNOFILE"), "{err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Total:"));
        assert!(l.accept().is_err(), "nothing may have been dialed");
    });
}

#[test]
fn more_connections_than_local_ports_is_refused_before_dialing() {
    with_timeout(T, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("Linux port range");
        let (lo, hi) = match range.split_whitespace().collect::<Vec<_>>()[..] {
            [lo, hi] => (lo.parse::<u64>().unwrap(), hi.parse::<u64>().unwrap()),
            _ => panic!("unexpected ip_local_port_range {range:?}"),
        };
        let ports = 2 * (hi - lo + 1);
        let c = (ports + 1).to_string();
        // Two source addresses (one written twice: it counts once) give two ranges; one more
        // connection than that cannot all dial.
        let (code, out, err) = run(
            &["goon", "127.0.0.1", &port, "-c", &c, "-s", "0", "--source-ip", "127.0.0.2-127.0.0.3,127.0.0.3", "-y"],
            T,
        );
        // Refused before dialing (no status line, nothing accepted below), not after slow dials;
        // checked by what happened, not by how long it took.
        assert_eq!(code, 1, "stdout {out}\nstderr {err}");
        let why: Vec<&str> = err.lines().filter(|l| l.starts_with("netforge: ")).collect();
        assert_eq!(why.len(), 1, "one error line: {err}");
        let want = format!(
            "{c} connections to 127.0.0.1:{port} need {c} local ports but 2 source addresses have only {ports}"
        );
        assert!(why[0].contains(&want), "want {want:?} in {err}");
        assert!(why[0].contains("at least 3 source addresses"), "{err}");
        assert!(!out.contains("Total:"), "must not dial: {out}");
        assert!(l.accept().is_err(), "nothing may have been dialed");
    });
}

#[test]
fn ipv6_loopback() {
    with_timeout(T, || {
        if TcpListener::bind("[::1]:0").is_err() {
            crate::util::cannot_run("ipv6_loopback", "no IPv6 loopback (sysctl -w net.ipv6.conf.lo.disable_ipv6=0)");
            return;
        }
        let (_srv, addr) = serve(&["--listen", "[::1]:0", "--interval", "0"]);
        let port = addr.port().to_string();
        let (code, out, _) = run(&["goon", "::1", &port, "-c", "50", "-s", "0", "-y"], T);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("--- [::1]:{port} tcp test statistics ---")), "{out}");
        assert_eq!(last_status(&out), [50, 0, 50, 0, 0, 0]);
    });
}

#[test]
fn json_result_parses_and_histogram_round_trips() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0"]);
        let dir = std::env::temp_dir().join(format!("netforge-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("goon.json");
        let (code, out, _) = run(
            &[
                "goon",
                "127.0.0.1",
                &addr.port().to_string(),
                "-c",
                "200",
                "-s",
                "0",
                "-y",
                "--json",
                path.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(code, 0, "{out}");
        let mut text = String::new();
        std::fs::File::open(&path).unwrap().read_to_string(&mut text).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["counts"]["established"], 200);
        assert_eq!(v["counts"]["total"], 200);
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["errors"]["refused"], 0);
        let enc = v["connect_time"]["histogram_v2_deflate_base64"].as_str().unwrap();
        let h = netforge::stats::Latency::decode_hist(enc).unwrap();
        assert_eq!(h.len(), 200);
        // The report's percentiles are the histogram's, clamped to the exact [min, max].
        let (min_us, max_us) =
            (v["connect_time"]["min_us"].as_f64().unwrap(), v["connect_time"]["max_us"].as_f64().unwrap());
        let want = (h.value_at_quantile(0.5) as f64).clamp(min_us, max_us) as u64;
        assert_eq!(v["connect_time"]["p50_us"].as_u64().unwrap(), want);
        // Format version 2: who, when, exact moments and per-interval samples that add up.
        assert_eq!((v["format_version"].as_u64(), v["kind"].as_str()), (Some(2), Some("goon")));
        assert!(v["shard"].is_null() && !v["host_name"].as_str().unwrap().is_empty());
        assert!(v["started_unix_s"].as_f64().unwrap() <= v["ended_unix_s"].as_f64().unwrap());
        assert!(v["started_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["argv"][1], "goon");
        let sum_ns: u128 = v["connect_time"]["sum_ns"].as_str().unwrap().parse().unwrap();
        let avg_us = v["connect_time"]["avg_us"].as_f64().unwrap();
        assert!((sum_ns as f64 / 200.0 / 1e3 - avg_us).abs() < 0.01, "avg from the exact sum");
        let samples = v["samples"].as_array().unwrap();
        assert!(!samples.is_empty());
        let total = |f: &dyn Fn(&serde_json::Value) -> u64| samples.iter().map(f).sum::<u64>();
        assert_eq!(total(&|s| s["established_new"].as_u64().unwrap()), 200);
        assert_eq!(total(&|s| s["connect_time"]["count"].as_u64().unwrap()), 200);
        assert_eq!(total(&|s| s["dials"].as_u64().unwrap()), 200);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn builtin_target_needs_no_server() {
    with_timeout(T, || {
        let (code, out, _) = run(&["goon", "-c", "500", "-s", "0", "-y"], T);
        assert_eq!(code, 0, "{out}");
        assert!(out.lines().next().unwrap().contains("built-in sink"), "{out}");
        assert_eq!(last_status(&out), [500, 0, 500, 0, 0, 0]);
    });
}

#[test]
fn source_ips_spread_dials() {
    with_timeout(T, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let (code, out, _) = run(
            &[
                "goon",
                "127.0.0.1",
                &port,
                "-c",
                "6",
                "-s",
                "0",
                "--source-ip",
                "127.0.0.2-127.0.0.4",
                "-y",
                "--linger-rst",
            ],
            T,
        );
        assert_eq!(code, 0, "{out}");
        l.set_nonblocking(true).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.len() < 3 && Instant::now() < deadline {
            match l.accept() {
                Ok((_, peer)) => {
                    seen.insert(peer.ip());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        let want: std::collections::BTreeSet<std::net::IpAddr> =
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(seen, want);
    });
}

/// Runs goon under a pseudo-terminal (util-linux `script`) answering the prompt with `answer`.
fn prompt_run(answer: &str, port: u16) -> Option<(i32, String)> {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        crate::util::cannot_run(
            "confirmation_prompt_on_a_terminal",
            "`script` is not installed (apt-get install bsdutils), no pseudo-terminal for the prompt",
        );
        return None;
    }
    use std::io::Write;
    let cmd = format!("{} goon 127.0.0.1 {port} -c 1", crate::util::BIN);
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.code().unwrap_or(-1), text))
}

#[test]
fn confirmation_prompt_on_a_terminal() {
    with_timeout(T, || {
        let (_closed, addr) = refusing_addr();
        let port = addr.port();
        // CRLF "n" aborts before dialing, exit 1.
        let Some((code, text)) = prompt_run("n\r\n", port) else { return };
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("Do you want to continue? (y/N)") && text.contains("Execution aborted"), "{text}");
        assert!(!text.contains("tcp test statistics"), "{text}");
        // Empty answer aborts too.
        let (code, text) = prompt_run("\n", port).unwrap();
        assert_eq!(code, 1, "{text}");
        // "yes" runs: the single dial is refused, exit 2.
        let (code, text) = prompt_run("yes\n", port).unwrap();
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("Errors by cause: refused 1"), "{text}");
    });
}

/// SIGUSR1 during the `--start-at` wait prints the time left at that moment, not the time left
/// when the current one-second step of the wait began.
#[test]
fn sigusr1_during_the_start_at_wait_prints_the_time_left_now() {
    with_timeout(T, || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let at = format!("{:.1}", now + 30.0);
        let mut cmd = netforge();
        cmd.args(["goon", "-c", "2", "-y", "-i", "0", "--start-at", &at]);
        let p = Proc::spawn(cmd);
        let line = p.wait_line(Duration::from_secs(20), |l| l.starts_with("netforge goon: waiting until "));
        let read_at = Instant::now();
        let secs = |l: &str, after: &str| -> f64 {
            let rest = &l[l.find(after).unwrap_or_else(|| panic!("{l}")) + after.len()..];
            rest[..rest.find('s').unwrap()].parse().unwrap_or_else(|e| panic!("{l}: {e}"))
        };
        let left0 = secs(&line, "(--start-at, ");
        // Let part of the wait's first step pass: the figure must have gone down with it.
        std::thread::sleep(Duration::from_millis(600));
        let passed = read_at.elapsed().as_secs_f64();
        p.signal(10);
        let line = p.wait_line(Duration::from_secs(10), |l| l.ends_with("until --start-at"));
        let left = secs(&line, "netforge goon: ");
        assert!(left <= left0 - passed + 0.002, "{left}s left after {passed}s, {left0}s at first: {line}");
        assert!(left > left0 - passed - 5.0, "{left} vs {left0} - {passed}");
        p.signal(2);
        let (st, out, err) = p.finish(Duration::from_secs(10));
        assert_eq!(st.code(), Some(1), "{out}{err}");
    });
}

/// Each reactor searches only its own slice of `ip_local_port_range` (IP_LOCAL_PORT_RANGE): the
/// kernel then hands out the slice's ports one after another, where without it `connect` takes
/// the even ports of the whole range first and, from one source address past half the range or
/// on a range crowded with TIME_WAIT, slows to seconds. Checked by the ports the server saw.
#[test]
fn each_reactor_dials_from_its_own_port_slice() {
    with_timeout(T, || {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("Linux port range");
        let (lo, hi) = match range.split_whitespace().map(|v| v.parse::<u32>().unwrap()).collect::<Vec<_>>()[..] {
            [lo, hi] => (lo, hi),
            _ => panic!("unexpected ip_local_port_range {range:?}"),
        };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let (code, out, err) =
            run(&["goon", "127.0.0.1", &port, "-c", "64", "-s", "0", "--threads", "2", "-y", "--linger-rst"], T);
        assert_eq!(code, 0, "{out}\n{err}");
        if err.contains("no IP_LOCAL_PORT_RANGE") {
            crate::util::cannot_run(
                "each_reactor_dials_from_its_own_port_slice",
                "no IP_LOCAL_PORT_RANGE (Linux < 6.3)",
            );
            return;
        }
        assert!(err.contains("source ports: each of the 2 reactors searches its own"), "{err}");
        assert!(err.lines().any(|l| l.trim_start().starts_with("TIME_WAIT: ")), "{err}");
        l.set_nonblocking(true).unwrap();
        let mut ports = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ports.len() < 64 && Instant::now() < deadline {
            match l.accept() {
                Ok((_, peer)) => ports.push(u32::from(peer.port())),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        assert_eq!(ports.len(), 64, "accepted {ports:?}");
        // The first reactor's slice is the lower half (the odd port left over goes to the last).
        let span = hi - lo + 1;
        let mid = lo + span / 2;
        let low = ports.iter().filter(|p| (lo..mid).contains(*p)).count();
        let high = ports.iter().filter(|p| (mid..=hi).contains(*p)).count();
        assert_eq!((low, high), (32, 32), "32 dials per reactor, each in its own half: {ports:?}");
        // One port after another, not the even ports first.
        assert!(ports.iter().any(|p| p % 2 == 1), "only even ports: {ports:?}");
    });
}

/// One file given to two outputs, or an output that is one of the inputs, is refused before
/// anything runs: each would keep only what was written last, or replace what is read.
#[test]
fn an_output_given_twice_or_over_an_input_is_refused() {
    with_timeout(Duration::from_secs(60), || {
        let dir = std::env::temp_dir().join(format!("netforge-same-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let x = dir.join("x.json");
        let xs = x.to_str().unwrap();
        let rel = format!("{}/./x.json", dir.display());
        for (args, want) in [
            (vec!["goon", "-c", "2", "--hold", "60s", "-y", "--json", xs, "--html", xs], "--html"),
            (vec!["goon", "-c", "2", "--hold", "60s", "-y", "--json", xs, "--json-stream", &rel], "--json-stream"),
        ] {
            let (code, _, err) = run(&args, Duration::from_secs(20));
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(err.contains(&format!("{want} ")) && err.contains("the same file as --json"), "{args:?}: {err}");
        }
        let (code, _, err) = run(&["goon", "-c", "2", "-y", "--json", "-"], Duration::from_secs(20));
        assert!(code == 1 && err.contains("--json -: this output takes a file name"), "{err}");
        let (code, out, err) = run(&["goon", "-c", "2", "-y", "-i", "0", "--json", xs], Duration::from_secs(30));
        assert_eq!(code, 0, "{out}{err}");
        let before = std::fs::read_to_string(&x).unwrap();
        for args in [vec!["report", "html", "-o", xs, xs], vec!["report", "merge", "--json", xs, xs]] {
            let (code, _, err) = run(&args, Duration::from_secs(20));
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(err.contains("also a file this command reads"), "{args:?}: {err}");
        }
        assert_eq!(std::fs::read_to_string(&x).unwrap(), before, "the input is untouched");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn an_output_file_that_cannot_be_written_stops_goon_before_its_run() {
    with_timeout(Duration::from_secs(60), || {
        for (flag, extra) in [("--json", &[][..]), ("--html", &[][..]), ("--json", &["--probe-idle", "30s"][..])] {
            // A 60 s hold (or a 30 s probe) that would only fail at its end without the check.
            let mut args = vec!["goon", "-c", "2", "--hold", "60s", "-y", flag, "/nonexistent-dir/r.out"];
            if !extra.is_empty() {
                args = vec!["goon", "-c", "2", "-y", flag, "/nonexistent-dir/r.out"];
                args.extend(extra);
            }
            let (code, _, err) = run(&args, Duration::from_secs(20));
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(err.contains(&format!("{flag} /nonexistent-dir/r.out: cannot write")), "{args:?}: {err}");
        }
        // A writable path is left as it was: the check creates nothing that stays.
        let dir = std::env::temp_dir().join(format!("netforge-out-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("r.json");
        let (code, out, err) =
            run(&["goon", "-c", "2", "-y", "--json", json.to_str().unwrap()], Duration::from_secs(30));
        assert_eq!(code, 0, "{out}{err}");
        assert!(std::fs::read_to_string(&json).unwrap().contains("\"format_version\""));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A report that cannot be written is not a silent success: with standard output on a full
/// device the run says so on standard error and exits 1; `--print-config` too. A pipe its
/// reader closed (`| head -1`) ends quietly, with the run's own status.
#[test]
fn an_unwritable_standard_output_is_said_and_fails_the_run() {
    with_timeout(T, || {
        if !std::path::Path::new("/dev/full").exists() {
            crate::util::cannot_run("an_unwritable_standard_output_is_said_and_fails_the_run", "no /dev/full");
            return;
        }
        let want =
            "netforge: standard output: No space left on device (os error 28): what was written there is incomplete";
        for args in [&["goon", "-c", "5", "-y", "--interval", "0"][..], &["goon", "--print-config"]] {
            let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
            let mut cmd = netforge();
            cmd.args(args).stdout(full).stderr(std::process::Stdio::piped());
            let out = cmd.spawn().unwrap().wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert_eq!(err.lines().last(), Some(want), "{args:?}: {err}");
        }
        // A stream that fails mid-run: the run goes on, --json is still written, and the
        // end names the stream.
        let dir = std::env::temp_dir().join(format!("netforge-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("r.json");
        let args = ["goon", "-c", "5", "-y", "-i", "0", "--json-stream", "/dev/full", "--json", json.to_str().unwrap()];
        let (code, _, err) = run(&args, T);
        assert_eq!(code, 1, "{err}");
        let want = "netforge: --json-stream /dev/full: cannot write: No space left on device (os error 28); the events after it are missing";
        assert_eq!(err.lines().last(), Some(want), "{err}");
        assert!(std::fs::read_to_string(&json).unwrap().contains("\"format_version\""));
        let _ = std::fs::remove_dir_all(&dir);
        // A closed pipe: the reader takes one line and goes; goon runs to its end (a 1 s hold
        // with 10 status lines a second) and exits 0 without a word about standard output.
        let mut cmd = netforge();
        cmd.args(["goon", "-c", "5", "-y", "--interval", "100ms", "--hold", "1s"]);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut first = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(!err.contains("standard output"), "{err}");
    });
}

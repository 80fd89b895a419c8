//! `netforge goon --probe-idle`: idle-timeout discovery against the built-in sink, against
//! `netforge proxy` with a short client idle timeout, and across a path that drops packets
//! silently (two network namespaces of the test's own joined by a veth pair).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    cannot_run, netforge, refused, run, serve, spawn_proxy, with_timeout, write_conf, write_temp, Proc, BIN,
};

const T: Duration = Duration::from_secs(60);

fn json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn temp_json(tag: &str) -> std::path::PathBuf {
    let p = write_temp(tag, "");
    let _ = std::fs::remove_file(&p);
    p
}

fn verdict_line(out: &str) -> &str {
    out.lines().find_map(|l| l.strip_prefix("Verdict: ")).unwrap_or_else(|| panic!("no verdict in:\n{out}"))
}

#[test]
fn builtin_target_has_no_idle_timeout() {
    with_timeout(T, || {
        let f = temp_json("probe-builtin.json");
        let fs = f.to_string_lossy().to_string();
        let (code, out, err) =
            run(&["goon", "--probe-idle", "2s,1s", "-c", "5", "--probe-deadline", "1s", "-i", "0", "--json", &fs], T);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(verdict_line(&out), "no idle timeout up to 2 s");
        // tcpgoon's lines first, unchanged; the probe's after them.
        let hdr = out.lines().position(|l| l.ends_with(" tcp test statistics ---")).expect("header");
        let probe = out.lines().position(|l| l.starts_with("--- idle probe (1 byte, deadline 1s) ---")).expect("probe");
        assert!(probe > hdr, "{out}");
        let p = &json(&f)["probe"];
        assert_eq!(p["idle_s"], serde_json::json!([1.0, 2.0]));
        let g = &p["groups"];
        // 5 connections over 2 groups: 3 and 2; the echo sink answers every probe.
        for (i, n) in [(0, 3), (1, 2)] {
            assert_eq!(g[i]["connections"], n, "{p}");
            assert_eq!(g[i]["alive"], n, "{p}");
            assert_eq!(g[i]["answered"], n, "{p}");
            for k in ["reset", "closed", "dropped", "error", "unprobed", "failed"] {
                assert_eq!(g[i][k], 0, "{k}: {p}");
            }
        }
        assert_eq!(p["verdict"]["kind"], "none");
        assert_eq!(p["verdict"]["lower_s"], 2.0);
        let _ = std::fs::remove_file(&f);
    });
}

#[test]
fn bad_probe_flags_are_one_line_errors() {
    with_timeout(T, || {
        for (args, want) in [
            (vec!["--probe-idle", "1s,,2s"], "--probe-idle"),
            (vec!["--probe-idle", "0s"], "--probe-idle"),
            (vec!["--probe-idle", "1s,25h"], "--probe-idle"),
            (vec!["--probe-idle", "2s,1s,2s"], "2s is given twice"),
            (vec!["--probe-idle", "1s,2s,3s", "-c", "2"], "--probe-idle: 2 connections cannot fill 3 groups"),
            (vec!["--probe-idle", "1s", "--hold", "5s"], "--hold"),
            (vec!["--probe-deadline", "1s"], "--probe-idle"),
            (vec!["--probe-idle", "1s", "--probe-deadline", "10ms"], "--probe-deadline"),
            (vec!["--probe-idle", "1s", "--probe-message", "\\q"], "--probe-message"),
            (vec!["--probe-idle", "1s", "--probe-group", "0"], "--probe-group"),
        ] {
            let mut argv = vec!["goon"];
            argv.extend(&args);
            let line = refused(&argv);
            assert!(line.contains(want), "{args:?}: {line}");
        }
        let many: Vec<String> = (1..=33).map(|i| format!("{i}s")).collect();
        let list = many.join(",");
        assert!(refused(&["goon", "--probe-idle", &list]).contains("33 durations, at most 32"));
    });
}

#[test]
fn sigint_ends_the_probe_with_a_partial_verdict() {
    with_timeout(T, || {
        let mut cmd = netforge();
        cmd.args(["goon", "--probe-idle", "1s,1h", "-c", "4", "--probe-deadline", "1s", "-i", "0"]);
        let p = Proc::spawn(cmd);
        p.wait_line(Duration::from_secs(20), |l| l.starts_with("netforge goon: probe: Idle 1s: 2 of 2 probed"));
        p.signal(2);
        let (status, out, err) = p.finish(Duration::from_secs(20));
        assert!(status.success() || status.code() == Some(0), "{status:?}\n{out}\n{err}");
        assert_eq!(
            verdict_line(&out),
            "no idle timeout up to 1 s (interrupted before the idle 3600 s group was probed)"
        );
        assert!(out.contains("Idle 1h0m0s: 0 of 2 probed:") && out.contains("2 not probed (interrupted)"), "{out}");
        assert!(out.contains("Run interrupted by signal."), "{out}");
    });
}

#[test]
fn proxy_client_idle_timeout_resets_the_longer_group() {
    with_timeout(T, || {
        let (_srv, backend) = serve(&["--listen", "127.0.0.1:0", "--interval", "0"]);
        let conf = format!(
            "[timeouts]\nconnect = \"1s\"\nclient_idle = \"2s\"\n[health]\nenabled = false\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\n[[backend]]\nname = \"b0\"\naddress = \"{backend}\"\n"
        );
        let mut cmd = netforge();
        cmd.args(["proxy", "--conf", &write_conf("probe-lb.toml", &conf)]);
        let (_proxy, addr, _admin) = spawn_proxy(cmd);
        let f = temp_json("probe-proxy.json");
        let port = addr.port().to_string();
        let fs = f.to_string_lossy().to_string();
        let args =
            ["goon", "127.0.0.1", &port, "--probe-idle", "1s,3s", "-c", "4", "--probe-deadline", "1s", "-y", "-i", "0"];
        let (code, out, err) = run(&[&args[..], &["--json", &fs]].concat(), T);
        assert_eq!(code, 0, "{out}\n{err}");
        let p = &json(&f)["probe"];
        let g = &p["groups"];
        // Idle 1 s < client_idle: the probe reaches the proxy, whose TCP acknowledges it (the
        // hold backend never answers).
        assert_eq!((g[0]["alive"].as_u64(), g[0]["answered"].as_u64()), (Some(2), Some(0)), "{p}");
        // Idle 3 s > client_idle: the proxy closed them at 2 s with SO_LINGER 0, an RST, before
        // their probe.
        assert_eq!((g[1]["reset"].as_u64(), g[1]["lost_before_probe"].as_u64()), (Some(2), Some(2)), "{p}");
        let first = g[1]["first_lost_idle_s"].as_f64().unwrap();
        // The proxy's clock starts at its accept, goon's when it saw the connection established
        // (a few ms apart either way): about 2 s, well clear of the 1 s and 3 s marks.
        assert!((1.5..3.0).contains(&first), "the proxy's 2s timeout, before the 3s probe: {first}");
        assert_eq!(p["verdict"]["kind"], "reset");
        assert_eq!((p["verdict"]["lower_s"].as_f64(), p["verdict"]["upper_s"].as_f64()), (Some(1.0), Some(3.0)));
        let v = verdict_line(&out);
        assert!(v.starts_with("a middlebox or the server resets idle connections between 1 s and 3 s"), "{v}");
        let _ = std::fs::remove_file(&f);
    });
}

#[test]
fn a_server_that_closes_idle_connections_is_named_fin() {
    with_timeout(T, || {
        use std::io::Read;
        // A server with a 2 s idle timeout that ends connections with a FIN: it reads what it
        // was sent first, so closing leaves nothing unread (which would make it an RST).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let server = std::thread::spawn(move || {
            let held: Vec<_> = (0..4).map(|_| (l.accept().unwrap().0, std::time::Instant::now())).collect();
            for (mut s, at) in held {
                std::thread::sleep((at + Duration::from_secs(2)).saturating_duration_since(std::time::Instant::now()));
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                }
            }
        });
        let f = temp_json("probe-fin.json");
        let fs = f.to_string_lossy().to_string();
        let (code, out, err) = run(
            &[
                "goon",
                "127.0.0.1",
                &port,
                "--probe-idle",
                "3s,1s",
                "-c",
                "4",
                "--probe-deadline",
                "1s",
                "-y",
                "-i",
                "0",
                "--json",
                &fs,
            ],
            T,
        );
        assert_eq!(code, 0, "{out}\n{err}");
        server.join().unwrap();
        let p = &json(&f)["probe"];
        let g = &p["groups"];
        assert_eq!((g[0]["alive"].as_u64(), g[0]["closed"].as_u64()), (Some(2), Some(0)), "{p}");
        assert_eq!(
            (g[1]["closed"].as_u64(), g[1]["reset"].as_u64(), g[1]["lost_before_probe"].as_u64()),
            (Some(2), Some(0), Some(2)),
            "{p}"
        );
        assert_eq!(p["verdict"]["kind"], "closed");
        let v = verdict_line(&out);
        assert!(v.starts_with("a middlebox or the server closes idle connections (FIN) between 1 s and 3 s"), "{v}");
        let _ = std::fs::remove_file(&f);
    });
}

#[test]
fn merged_shards_sum_their_groups_and_mismatched_probes_are_refused() {
    with_timeout(T, || {
        let shard = |i: u32, list: &str| {
            let f = temp_json(&format!("probe-shard-{i}.json"));
            let fs = f.to_string_lossy().to_string();
            let s = format!("{i}/2");
            let (code, out, err) = run(
                &[
                    "goon",
                    "--probe-idle",
                    list,
                    "-c",
                    "6",
                    "--shard",
                    &s,
                    "--probe-deadline",
                    "1s",
                    "-i",
                    "0",
                    "--json",
                    &fs,
                ],
                T,
            );
            assert_eq!(code, 0, "{out}\n{err}");
            fs
        };
        let (a, b) = (shard(0, "1s"), shard(1, "1s"));
        let m = temp_json("probe-merged.json");
        let ms = m.to_string_lossy().to_string();
        let (code, out, err) = run(&["report", "merge", &a, &b, "--json", &ms], T);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(verdict_line(&out), "no idle timeout up to 1 s");
        let p = &json(&m)["probe"];
        assert_eq!(
            (p["groups"][0]["connections"].as_u64(), p["groups"][0]["alive"].as_u64()),
            (Some(6), Some(6)),
            "{p}"
        );
        let c = shard(1, "2s");
        let line = refused(&["report", "merge", &a, &c]);
        assert!(
            line.contains("probe.groups: idle times 2s differ from")
                && line.contains("run every shard with the same --probe-idle"),
            "{line}"
        );
        for f in [a, b, c, ms] {
            let _ = std::fs::remove_file(f);
        }
    });
}

/// Two network namespaces of this test's own, joined by a veth pair (10.201.x.1/30 and .2),
/// deleted on drop.
struct Netns {
    names: [String; 2],
}

impl Netns {
    /// `None` (after saying why) where this machine cannot make them.
    fn new(tag: &str) -> Option<Netns> {
        let pid = std::process::id();
        let names = [format!("nf-probe-{pid}-{tag}a"), format!("nf-probe-{pid}-{tag}b")];
        let ip = |args: &[&str]| Command::new("ip").args(args).output();
        match ip(&["netns", "add", &names[0]]) {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                cannot_run("silent drop", &format!("ip netns add: {}", String::from_utf8_lossy(&o.stderr).trim()));
                return None;
            }
            Err(e) => {
                cannot_run("silent drop", &format!("no ip command: {e}"));
                return None;
            }
        }
        let ns = Netns { names };
        let [a, b] = &ns.names;
        let (va, vb) = (format!("nfp{}a", pid % 100_000), format!("nfp{}b", pid % 100_000));
        let sub = 1 + pid % 250;
        let (ipa, ipb) = (format!("10.201.{sub}.1/30"), format!("10.201.{sub}.2/30"));
        let steps: [&[&str]; 9] = [
            &["netns", "add", b],
            &["link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b],
            &["-n", a, "addr", "add", &ipa, "dev", &va],
            &["-n", b, "addr", "add", &ipb, "dev", &vb],
            &["-n", a, "link", "set", &va, "up"],
            &["-n", b, "link", "set", &vb, "up"],
            &["-n", a, "link", "set", "lo", "up"],
            &["-n", b, "link", "set", "lo", "up"],
            &["-n", a, "route", "show"],
        ];
        for step in steps {
            let o = ip(step).unwrap();
            assert!(o.status.success(), "ip {step:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Some(ns)
    }

    fn addr_b(&self) -> String {
        format!("10.201.{}.2", 1 + std::process::id() % 250)
    }

    fn veth_b(&self) -> String {
        format!("nfp{}b", std::process::id() % 100_000)
    }

    /// `netforge ARGS` inside namespace `i`.
    fn netforge(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], BIN]).args(args).env("RUST_LOG", "warn");
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

#[test]
fn a_path_that_drops_silently_is_named_silent() {
    with_timeout(T, || {
        let Some(ns) = Netns::new("d") else { return };
        let listen = format!("{}:0", ns.addr_b());
        let (_srv, backend): (Proc, SocketAddr) =
            crate::util::spawn_listening(ns.netforge(1, &["serve", "--listen", &listen, "--interval", "0"]));
        let port = backend.port().to_string();
        let host = ns.addr_b();
        let f = temp_json("probe-drop.json");
        let fs = f.to_string_lossy().to_string();
        let goon = Proc::spawn(ns.netforge(
            0,
            &[
                "goon",
                &host,
                &port,
                "--probe-idle",
                "1s,4s",
                "-c",
                "4",
                "--probe-deadline",
                "2s",
                "-y",
                "-i",
                "0",
                "--json",
                &fs,
            ],
        ));
        // The 1 s group is probed over a working path; then the path starts to drop everything
        // the server's side sends (its ACKs among them), with nothing sent back about it.
        goon.wait_line(Duration::from_secs(20), |l| {
            l.starts_with("netforge goon: probe: Idle 1s: 2 of 2 probed: 2 alive")
        });
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.names[1],
                "tc",
                "qdisc",
                "add",
                "dev",
                &ns.veth_b(),
                "root",
                "pfifo",
                "limit",
                "0",
            ])
            .output()
            .unwrap();
        if !o.status.success() {
            return cannot_run(
                "silent drop",
                &format!("tc qdisc pfifo: {}", String::from_utf8_lossy(&o.stderr).trim()),
            );
        }
        let (status, out, err) = goon.finish(Duration::from_secs(30));
        assert!(status.success(), "{out}\n{err}");
        let p = &json(&f)["probe"];
        let g = &p["groups"][1];
        assert_eq!(
            (g["dropped"].as_u64(), g["reset"].as_u64(), g["closed"].as_u64()),
            (Some(2), Some(0), Some(0)),
            "{p}"
        );
        // Past the first RTO (>= 200 ms) within the 2 s deadline: the kernel retransmitted.
        assert!(g["retransmits"].as_u64().unwrap() >= 2, "{p}");
        assert_eq!(p["verdict"]["kind"], "dropped");
        assert_eq!(verdict_line(&out), "a middlebox drops idle connections between 1 s and 4 s, silently");
        let _ = std::fs::remove_file(&f);
    });
}

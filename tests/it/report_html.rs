//! `netforge report html` and `--html` of goon and bp client, rendered in headless Chromium:
//! the page loads with no console message at all (no script error, no blocked fetch, no
//! Content-Security-Policy violation, which is what an injected script would cause), every
//! chart is drawn with data points, and hostile strings from the JSON show as text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::bp::{chromium, HEADLESS};
use crate::util::{netforge, run, with_timeout, Proc};

const T: Duration = Duration::from_secs(120);

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netforge-html-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// What Chromium made of a page: its DOM after the script ran, and every console line.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

impl Rendered {
    /// `data-NAME="N"` of the element with `id`.
    fn attr_num(&self, id: &str, name: &str) -> u64 {
        let at = self.dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
        let tag = &self.dom[self.dom[..at].rfind('<').unwrap()..];
        let tag = &tag[..tag.find('>').unwrap()];
        let v = tag.split(&format!("data-{name}=\"")).nth(1).unwrap_or_else(|| panic!("no data-{name} on {tag}"));
        v[..v.find('"').unwrap()].parse().unwrap()
    }

    /// The `data-points` of every polyline (one per drawn series).
    fn line_points(&self) -> Vec<u64> {
        self.dom
            .split("<polyline ")
            .skip(1)
            .map(|t| {
                let v = t.split("data-points=\"").nth(1).expect("polyline without data-points");
                v[..v.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    fn assert_clean(&self) {
        assert!(self.console.is_empty(), "console messages: {:#?}", self.console);
        assert!(!self.dom.contains(" data-error="), "the script failed: {}", self.dom);
    }
}

fn render(bin: &Path, page: &Path, screenshot: Option<&Path>) -> Rendered {
    let profile = dir("profile").join(format!("p-{}", fastrand::u64(..)));
    let mut cmd = std::process::Command::new(bin);
    cmd.args(HEADLESS).arg(format!("--user-data-dir={}", profile.display())).args([
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
    ]);
    match screenshot {
        Some(png) => {
            cmd.args(["--hide-scrollbars", "--window-size=1200,1900"]).arg(format!("--screenshot={}", png.display()))
        }
        None => cmd.arg("--dump-dom"),
    };
    cmd.arg(format!("file://{}", page.display()));
    let (_, dom, err) = Proc::spawn(cmd).finish(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&profile);
    // Chromium logs every console message (errors, CSP violations, blocked loads) as CONSOLE.
    let console = err.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    Rendered { dom, console }
}

/// goon --html writes the page at the end of a real run; `report html` makes the same page from
/// its --json.
#[test]
fn goon_html_renders_in_chromium() {
    let Some(bin) = chromium() else { return };
    with_timeout(T, move || {
        let d = dir("goon");
        let (json, html, again) = (d.join("run.json"), d.join("run.html"), d.join("again.html"));
        let (code, out, err) = run(
            &[
                "goon",
                "-c",
                "200",
                "--sleep",
                "0",
                "-i",
                "0",
                "-y",
                "--json",
                json.to_str().unwrap(),
                "--html",
                html.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{out}{err}");
        let r = render(&bin, &html, None);
        r.assert_clean();
        assert!(r.dom.contains("goon run against 127.0.0.1:"), "{}", r.dom);
        let charts = r.attr_num("render-status", "charts");
        assert!(charts >= 1, "no chart drawn");
        let lines = r.line_points();
        assert!(!lines.is_empty() && lines.iter().all(|n| *n > 0), "empty series: {lines:?}");
        assert!(r.dom.contains("id=\"chart-percentiles\""), "no percentile curve");
        let (code, out, err) =
            run(&["report", "html", json.to_str().unwrap(), "-o", again.to_str().unwrap()], Duration::from_secs(30));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("netforge report html: wrote "), "{out}");
        let r2 = render(&bin, &again, None);
        r2.assert_clean();
        assert_eq!(r2.attr_num("render-status", "charts"), charts);
        assert_eq!(r2.line_points(), lines, "the same page from the JSON");
        let _ = std::fs::remove_dir_all(&d);
    });
}

const EVIL: &str = "</script><script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";

/// A format-2 shard document, with the connect-time histogram of a real run.
fn shard(index: u64, host: &str, started: f64, est: &[u64], refused: u64, connect: &Value) -> Value {
    let samples: Vec<Value> = est
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let r = if i == 1 { refused } else { 0 };
            json!({
                "index": i, "t_start_s": i as f64, "t_end_s": (i + 1) as f64, "end_unix_s": started + (i + 1) as f64,
                "state": { "dialing": 0, "established": e, "closed": 0, "error": if i >= 1 { refused } else { 0 }, "not_initiated": 0 },
                "established_peak": e, "dials": e, "established_new": e, "closed_new": 0,
                "errors": { "refused": r, "timeout": 0, "reset": 0, "no_ports": 0, "no_fds": 0, "unreachable": 0, "other": 0 },
                "connect_time": { "count": 0 }, "time_to_error": { "count": 0 }
            })
        })
        .collect();
    let last = *est.last().unwrap();
    json!({
        "format_version": 2, "kind": "goon", "netforge": "0.1.0", "role": "goon",
        "argv": ["netforge", "goon", host, "7000", "-c", "400", "--shard", format!("{index}/2"), "-y"],
        "host_name": host, "shard": { "index": index, "count": 2 },
        "started_at": "2026-12-01T14:00:00.000000Z", "started_unix_s": started,
        "config": { "host": host, "target": "10.0.0.5:7000", "connections": 400 },
        "counts": { "total": last + refused, "dialing": 0, "established": last, "closed": 0, "error": refused, "not_initiated": 0,
                    "total_established": last, "max_concurrent_established": last, "established_on_closure": last },
        "errors": { "refused": refused, "timeout": 0, "reset": 0, "no_ports": 0, "no_fds": 0, "unreachable": 0, "other": 0 },
        "connect_time": connect, "time_to_error": { "count": 0 },
        "elapsed_s": est.len() as f64, "exit_code": if refused > 0 { 2 } else { 0 },
        "sample_interval_s": 1.0, "sample_stride": 1, "samples": samples
    })
}

/// Two shard files, one with a hostile host name: the fleet page draws the fleet and both
/// shards, and the host name shows as text, running nothing.
#[test]
fn fleet_html_from_shard_files_renders_and_escapes() {
    let Some(bin) = chromium() else { return };
    with_timeout(T, move || {
        let d = dir("fleet");
        let json = d.join("run.json");
        let (code, out, err) = run(
            &["goon", "-c", "100", "--sleep", "0", "-i", "0", "-y", "--json", json.to_str().unwrap()],
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{out}{err}");
        let real: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        // The run's own latency object: its exact moments agree with its histogram, as the
        // page's reader (report merge's) requires.
        let connect = real["connect_time"].clone();
        assert!(connect["histogram_v2_deflate_base64"].as_str().is_some_and(|h| !h.is_empty()), "{connect}");
        assert!(connect["sum_ns"].is_string(), "{connect}");
        let s0 = shard(0, "loadgen-0", 1000.0, &[100, 200, 200], 0, &connect);
        let s1 = shard(1, EVIL, 1000.0, &[50, 150, 150], 3, &connect);
        let (f0, f1, html) = (d.join("shard-0.json"), d.join("shard-1.json"), d.join("fleet.html"));
        std::fs::write(&f0, s0.to_string()).unwrap();
        std::fs::write(&f1, s1.to_string()).unwrap();
        let (code, out, err) = run(
            &["report", "html", f0.to_str().unwrap(), f1.to_str().unwrap(), "-o", html.to_str().unwrap()],
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "{out}{err}");
        let r = render(&bin, &html, None);
        r.assert_clean();
        // connections, per shard, rates, errors by cause over time, percentiles; the cause bars.
        assert_eq!(r.attr_num("render-status", "charts"), 6, "{}", r.dom);
        for id in
            ["chart-connections", "chart-per-shard", "chart-rates", "chart-errors", "chart-percentiles", "bars-causes"]
        {
            assert!(r.dom.contains(&format!("id=\"{id}\"")), "no {id}");
        }
        let lines = r.line_points();
        // 4 state lines + 2 shard lines + 3 rates + 1 cause + 3 curves, each with data.
        assert_eq!(lines.len(), 13, "{lines:?}");
        assert!(lines.iter().all(|n| *n > 0), "{lines:?}");
        assert!(r.dom.contains("Drawn: 6 charts"), "status line");
        assert_eq!(r.dom.matches("<script").count(), 2, "a script element was injected");
        assert!(!r.dom.contains("<img"), "an element was injected");
        assert!(r.dom.contains("&lt;/script&gt;&lt;script&gt;window.pwned=1"), "the host name is not shown as text");
        let _ = std::fs::remove_dir_all(&d);
    });
}

/// bp client --html against a slow reader: the window chart has its zero-window bands, and the
/// verdict is on the page.
#[test]
fn bp_client_html_shows_zero_window_bands() {
    let Some(bin) = chromium() else { return };
    with_timeout(T, move || {
        let d = dir("bp");
        let html = d.join("bp.html");
        let mut cmd = netforge();
        cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--threads", "1"]);
        let (srv, addr) = crate::util::spawn_listening(cmd);
        let (code, out, err) = run(
            &[
                "bp",
                "client",
                "--server",
                &addr.to_string(),
                "--duration",
                "2s",
                "-i",
                "0",
                "--html",
                html.to_str().unwrap(),
            ],
            Duration::from_secs(40),
        );
        assert_eq!(code, 0, "{out}{err}");
        drop(srv);
        let verdict = out.lines().find(|l| l.starts_with("backpressure reached the client:")).unwrap();
        assert!(verdict.contains("YES"), "{out}");
        let r = render(&bin, &html, None);
        r.assert_clean();
        assert!(r.dom.contains("id=\"verdict\""), "no verdict");
        let shown = verdict.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        assert!(r.dom.contains(&shown), "verdict differs from the run's: {verdict}");
        assert_eq!(r.attr_num("render-status", "charts"), 2);
        assert!(r.dom.matches("class=\"band\"").count() >= 2, "no zero-window band drawn");
        assert!(r.line_points().iter().all(|n| *n > 0));
        let _ = std::fs::remove_dir_all(&d);
    });
}

/// `report html` refuses what it cannot draw with one line naming the file.
#[test]
fn report_html_names_the_bad_file() {
    with_timeout(T, || {
        let d = dir("bad");
        let (bad, out) = (d.join("bad.json"), d.join("x.html"));
        std::fs::write(&bad, "{\"kind\": \"goon\",\n  oops").unwrap();
        let (code, _, err) =
            run(&["report", "html", bad.to_str().unwrap(), "-o", out.to_str().unwrap()], Duration::from_secs(20));
        assert_eq!(code, 1);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("netforge: {}: 2:3: not valid JSON", bad.display())), "{err}");
        let missing = d.join("missing.json");
        let (code, _, err) =
            run(&["report", "html", missing.to_str().unwrap(), "-o", out.to_str().unwrap()], Duration::from_secs(20));
        assert_eq!(code, 1);
        assert!(err.starts_with(&format!("netforge: {}: cannot read:", missing.display())), "{err}");
        assert!(!out.exists());
        let (code, _, err) = run(&["report", "html", "-o", out.to_str().unwrap()], Duration::from_secs(20));
        assert_eq!(code, 1);
        assert!(err.contains("<FILES>"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    });
}

/// goon --tls with traffic against the built-in target, with --html: the page has the TLS and
/// traffic tables with the run's own figures, their percentile curves and per-interval charts,
/// every one drawn with data, and no console message.
#[test]
fn goon_tls_traffic_html_renders_its_parts() {
    let Some(bin) = chromium() else { return };
    with_timeout(T, move || {
        let d = dir("parts");
        let (json, html) = (d.join("run.json"), d.join("run.html"));
        let (code, out, err) = run(
            &[
                "goon",
                "--tls",
                "-c",
                "20",
                "--sleep",
                "0",
                "--message",
                "ping\\n",
                "--message-rate",
                "20",
                "--duration",
                "1500ms",
                "--expect-bytes",
                "5",
                "-i",
                "500ms",
                "-y",
                "--json",
                json.to_str().unwrap(),
                "--html",
                html.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(code, 0, "{out}{err}");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let done = doc["tls"]["handshakes"]["done"].as_u64().unwrap();
        let answered = doc["traffic"]["counts"]["responses"].as_u64().unwrap();
        assert_eq!(done, 20, "{out}");
        assert!(answered > 0, "{out}");
        let r = render(&bin, &html, None);
        r.assert_clean();
        for t in ["<h2>TLS handshakes</h2>", "<h2>Traffic</h2>"] {
            assert!(r.dom.contains(t), "no table {t}");
        }
        assert!(r.dom.contains(&format!("<td>handshakes done</td><td>{done}</td>")), "{}", r.dom);
        assert!(r.dom.contains(&format!("<td>messages answered</td><td>{answered}</td>")), "{}", r.dom);
        for id in [
            "chart-tls-handshakes",
            "chart-tls-interval-latency",
            "chart-tls-percentiles",
            "chart-traffic-messages",
            "chart-traffic-bytes",
            "chart-traffic-interval-latency",
            "chart-traffic-percentiles",
        ] {
            assert!(r.dom.contains(&format!("id=\"{id}\"")), "no {id}");
        }
        // Every figure on the page was drawn, each of its lines with points.
        let figures =
            r.dom.matches("<figure class=\"chart\"").count() + r.dom.matches("<figure class=\"bars\"").count();
        assert_eq!(r.attr_num("render-status", "charts"), figures as u64, "{}", r.dom);
        let svgs = r.dom.matches("<svg ").count();
        assert_eq!(svgs, figures, "a figure without its chart");
        let lines = r.line_points();
        // Connections 4, rates 3, connect time per interval 3, its curve 1; TLS 3 + 3 + 1;
        // traffic messages 3, bytes 2, per interval 3, curve 1 (no errors: exit status 0).
        assert_eq!(lines.len(), 27, "{lines:?}");
        assert!(lines.iter().all(|n| *n > 0), "{lines:?}");
        let _ = std::fs::remove_dir_all(&d);
    });
}

/// `report html` of shard files sums the TLS, traffic and idle-probe parts as `report merge`
/// does: the page of the shard files and the page of their merged file show the same tables.
#[test]
fn fleet_parts_from_shard_files_match_the_merged_file() {
    with_timeout(T, || {
        let d = dir("fleet-parts");
        let p = |name: &str| d.join(name).to_str().unwrap().to_string();
        let tables = |html: &str| -> Vec<String> {
            let page = std::fs::read_to_string(html).unwrap();
            page.split("<section class=\"table\">")
                .skip(1)
                .map(|s| s[..s.find("</section>").unwrap()].to_string())
                .filter(|s| !s.starts_with("\n<h2>Shards</h2>"))
                .collect()
        };
        let mut runs = vec![];
        for i in 0..2 {
            let shard = format!("{i}/2");
            let tls = [
                "goon",
                "--tls",
                "--alpn",
                "h2,http/1.1",
                "-c",
                "20",
                "--sleep",
                "0",
                "--shard",
                &shard,
                "--message",
                "ping\\n",
                "--message-rate",
                "20",
                "--duration",
                "500ms",
                "--expect-bytes",
                "5",
                "-i",
                "250ms",
                "-y",
                "--json",
            ];
            runs.push((tls.iter().map(|s| s.to_string()).collect::<Vec<_>>(), p(&format!("t{i}.json"))));
            let probe =
                ["goon", "--probe-idle", "50ms,100ms", "--probe-group", "2", "--shard", &shard, "-i", "0", "--json"];
            runs.push((probe.iter().map(|s| s.to_string()).collect(), p(&format!("p{i}.json"))));
        }
        for (args, json) in &runs {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.push(json);
            let (code, out, err) = run(&a, Duration::from_secs(60));
            assert_eq!(code, 0, "{args:?}: {out}{err}");
        }
        for (kind, want) in [("t", vec!["TLS handshakes", "Traffic"]), ("p", vec!["Idle probe groups"])] {
            let (s0, s1, merged) =
                (p(&format!("{kind}0.json")), p(&format!("{kind}1.json")), p(&format!("{kind}m.json")));
            let (code, out, err) = run(&["report", "merge", &s0, &s1, "--json", &merged], Duration::from_secs(30));
            assert_eq!(code, 0, "{out}{err}");
            let (a, b) = (p(&format!("{kind}-shards.html")), p(&format!("{kind}-merged.html")));
            for (inputs, html) in [(vec![s0.as_str(), s1.as_str()], &a), (vec![merged.as_str()], &b)] {
                let mut args = vec!["report", "html"];
                args.extend(inputs);
                args.extend(["-o", html.as_str()]);
                let (code, out, err) = run(&args, Duration::from_secs(30));
                assert_eq!(code, 0, "{out}{err}");
            }
            let (ta, tb) = (tables(&a), tables(&b));
            let titles: Vec<&str> =
                ta.iter().map(|t| t.split("<h2>").nth(1).and_then(|t| t.split([' ', '<']).next()).unwrap()).collect();
            assert_eq!(ta.len(), want.len(), "{ta:?}");
            for (t, w) in ta.iter().zip(&want) {
                assert!(t.starts_with(&format!("\n<h2>{w}")), "{titles:?}");
            }
            assert_eq!(ta, tb, "the shard files' sum differs from report merge's");
            if kind == "t" {
                // The two shards' 10 handshakes each negotiated the built-in sink's first choice.
                assert!(ta[0].contains("<tr><td>ALPN negotiated: h2</td><td>20</td></tr>"), "{}", ta[0]);
            }
            if kind == "p" {
                let page = std::fs::read_to_string(&a).unwrap();
                assert!(page.contains("id=\"verdict\">Idle-timeout verdict: no idle timeout up to 0.1 s<"), "{page}");
                assert!(ta[0].contains("<td>50ms</td><td>alive</td><td>4</td>"), "both shards' groups: {}", ta[0]);
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    });
}

#[test]
fn a_bad_alpn_count_in_an_interval_is_refused_naming_the_file_and_key() {
    with_timeout(T, || {
        let d = dir("bad-sample-alpn");
        let json = d.join("run.json");
        let j = json.to_str().unwrap();
        let args = ["goon", "--tls", "--alpn", "h2", "-c", "5", "--sleep", "0", "-i", "200ms", "-y", "--json", j];
        let (code, out, err) = run(&args, Duration::from_secs(60));
        assert_eq!(code, 0, "{out}{err}");
        let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let samples = doc["samples"].as_array_mut().unwrap();
        let (i, s) =
            samples.iter_mut().enumerate().find(|(_, s)| s["tls"]["alpn"].is_object()).expect("a sample with tls");
        s["tls"]["alpn"]["h2"] = json!("x");
        let bad = d.join("bad.json");
        std::fs::write(&bad, serde_json::to_string(&doc).unwrap()).unwrap();
        let b = bad.to_str().unwrap();
        let page = d.join("bad.html");
        let (code, out, err) = run(&["report", "html", b, "-o", page.to_str().unwrap()], Duration::from_secs(30));
        assert_eq!(code, 1, "{out}{err}");
        let want = format!("samples[{i}].tls.alpn.h2: not a non-negative integer");
        assert!(err.contains(&want) && err.contains("bad.json") && err.trim().lines().count() == 1, "{err}");
        let _ = std::fs::remove_dir_all(&d);
    });
}

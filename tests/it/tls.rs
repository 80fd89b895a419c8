//! `--tls` end to end: goon against `serve --tls` and its built-in sink, and every way a
//! handshake fails (untrusted certificate, wrong name, a plain server, a server that never
//! answers), session resumption, the JSON and the fleet merge, and the flags' errors.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::util::{run, serve, with_timeout, write_temp};

const T: Duration = Duration::from_secs(60);

fn json(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn temp_json(tag: &str) -> PathBuf {
    write_temp(tag, "")
}

/// The `TLS handshakes:` line: (done, full, resumed, failed, unfinished).
fn handshakes(out: &str) -> (u64, u64, u64, u64, u64) {
    let l = out.lines().find(|l| l.starts_with("TLS handshakes: ")).unwrap_or_else(|| panic!("no TLS line:\n{out}"));
    let n: Vec<u64> =
        l.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    (n[0], n[1], n[2], n[3], n[4])
}

fn failures(doc: &Value) -> Vec<(String, u64)> {
    doc["tls"]["failures"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn goon_tls_against_serve_tls_all_handshake() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls"]);
        let port = addr.port().to_string();
        let j = temp_json("tls-ok.json");
        let (code, out, err) = run(
            &[
                "goon",
                "127.0.0.1",
                &port,
                "--tls",
                "--insecure",
                "-c",
                "40",
                "-s",
                "0",
                "-y",
                "--json",
                j.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        // tcpgoon's block first and unchanged, the TLS lines after it.
        let hdr = out.lines().position(|l| l == format!("--- 127.0.0.1:{port} tcp test statistics ---")).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[hdr + 1], "Total: 40, Dialing: 0, Established: 40, Closed: 0, Error: 0, NotInitiated: 0");
        let tls_at = lines.iter().position(|l| l.starts_with("TLS handshakes: ")).unwrap();
        assert!(tls_at > hdr + 7, "{out}");
        assert_eq!(handshakes(&out), (40, 40, 0, 0, 0), "{out}");
        assert!(out.contains("TLS handshake time percentiles for 40 handshakes p50/p90/p99/p99.9/max = "), "{out}");
        let doc = json(&j);
        assert_eq!(doc["tls"]["handshakes"]["done"], 40);
        assert_eq!(doc["tls"]["handshake_time"]["count"], 40);
        assert!(doc["tls"]["handshakes_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(doc["config"]["tls"]["insecure"], true);
        assert!(failures(&doc).is_empty());
    });
}

#[test]
fn goon_tls_without_a_host_uses_the_built_in_sink_over_tls() {
    with_timeout(T, || {
        let j = temp_json("tls-builtin.json");
        let st = temp_json("tls-builtin.ndjson");
        let args = ["goon", "--tls", "-c", "30", "-s", "0", "-i", "0", "--json", j.to_str().unwrap()];
        let (code, out, err) = run(&[&args[..], &["--json-stream", st.to_str().unwrap()]].concat(), T);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        // The interval events carry the interval's handshakes; they add up to the run's.
        let (mut full, mut timed) = (0, 0);
        for line in std::fs::read_to_string(&st).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == "interval" {
                full += v["sample"]["tls"]["full"].as_u64().unwrap();
                timed += v["sample"]["tls"]["handshake_time"]["count"].as_u64().unwrap();
            }
        }
        assert_eq!((full, timed), (30, 30));
        assert!(out.contains("(mode hold, tls, in this process)"), "{out}");
        // Verified (no --insecure): goon trusts the sink's own self-signed certificate.
        assert_eq!(handshakes(&out), (30, 30, 0, 0, 0), "{out}");
        assert_eq!(json(&j)["config"]["tls"]["insecure"], false);
        // Without --tls the key is absent.
        let (code, _, _) = run(&["goon", "-c", "3", "-i", "0", "--json", j.to_str().unwrap()], T);
        assert_eq!(code, 0);
        assert!(json(&j).get("tls").is_none());
    });
}

#[test]
fn a_self_signed_certificate_fails_verification_without_insecure() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls"]);
        let port = addr.port().to_string();
        let j = temp_json("tls-unknown.json");
        let (code, out, err) =
            run(&["goon", "127.0.0.1", &port, "--tls", "-c", "10", "-s", "0", "-y", "--json", j.to_str().unwrap()], T);
        assert_eq!(code, 2, "a failed handshake is an error:\n{out}\n{err}");
        // TCP established all ten; goon closed each after the failed handshake.
        assert!(out.contains("Total: 10, Dialing: 0, Established: 0, Closed: 10, Error: 0, NotInitiated: 0"), "{out}");
        assert_eq!(handshakes(&out), (0, 0, 0, 10, 0), "{out}");
        assert!(out.contains("TLS failures by cause: cert_unknown_issuer 10"), "{out}");
        assert_eq!(failures(&json(&j)), [("cert_unknown_issuer".to_string(), 10)]);
        // report merge reads the failures back and exits as goon did.
        let (code, out, _) = run(&["report", "merge", j.to_str().unwrap()], T);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("TLS failures by cause: cert_unknown_issuer 10"), "{out}");
    });
}

/// A CA and a leaf for `good.example` signed by it, written as PEM: (ca, cert, key).
fn ca_and_leaf() -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["good.example".to_string()]).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (
        write_temp("ca.pem", &ca.pem()),
        write_temp("leaf.pem", &leaf.pem()),
        write_temp("leaf.key", &leaf_key.serialize_pem()),
    )
}

#[test]
fn a_wrong_sni_fails_on_the_name_and_the_right_one_passes() {
    with_timeout(T, || {
        let (ca, cert, key) = ca_and_leaf();
        let (_srv, addr) = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "0",
            "--tls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        let port = addr.port().to_string();
        let goon = |sni: &str| {
            let args = [
                "goon",
                "127.0.0.1",
                &port,
                "--tls",
                "--ca",
                ca.to_str().unwrap(),
                "--sni",
                sni,
                "-c",
                "5",
                "-s",
                "0",
                "-y",
            ];
            run(&args, T)
        };
        let (code, out, _) = goon("wrong.example");
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("TLS failures by cause: cert_not_valid_for_name 5"), "{out}");
        let (code, out, _) = goon("good.example");
        assert_eq!(code, 0, "{out}");
        assert_eq!(handshakes(&out), (5, 5, 0, 0, 0), "{out}");
    });
}

#[test]
fn tls_to_a_plain_server_is_a_failure_by_cause() {
    with_timeout(T, || {
        // An echo server sends the ClientHello back: no ServerHello ever comes.
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--mode", "echo"]);
        let port = addr.port().to_string();
        let j = temp_json("tls-plain.json");
        let (code, out, _) = run(
            &[
                "goon",
                "127.0.0.1",
                &port,
                "--tls",
                "--insecure",
                "-c",
                "6",
                "-s",
                "0",
                "-y",
                "--json",
                j.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(code, 2, "{out}");
        assert_eq!(handshakes(&out), (0, 0, 0, 6, 0), "{out}");
        let f = failures(&json(&j));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].1, 6);
        assert_ne!(f[0].0, "handshake_timeout", "the peer's bytes were refused, not waited on");
    });
}

#[test]
fn a_server_that_never_answers_is_a_handshake_timeout() {
    with_timeout(T, || {
        // The kernel completes the TCP handshake from the backlog; nothing ever reads or writes.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let (code, out, _) =
            run(&["goon", "127.0.0.1", &port, "--tls", "--insecure", "-c", "4", "-s", "0", "-t", "300", "-y"], T);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("Closed: 4, Error: 0"), "TCP connected, TLS timed out:\n{out}");
        assert!(out.contains("TLS failures by cause: handshake_timeout 4"), "{out}");
        drop(l);
    });
}

#[test]
fn tls_resume_resumes_later_handshakes_of_a_reactor() {
    with_timeout(T, || {
        // One reactor, dials 100 ms apart: each later handshake finds the tickets of earlier ones.
        let args = ["goon", "--tls", "-c", "6", "-s", "100", "-i", "0", "--threads", "1"];
        let (code, out, _) = run(&[&args[..], &["--tls-resume"]].concat(), T);
        assert_eq!(code, 0, "{out}");
        let (done, full, resumed, failed, _) = handshakes(&out);
        assert_eq!((done, failed), (6, 0), "{out}");
        assert!(full >= 1 && resumed > 0, "{out}");
        // Without the flag every handshake is a full one.
        let (code, out, _) = run(&args, T);
        assert_eq!(code, 0, "{out}");
        assert_eq!(handshakes(&out), (6, 6, 0, 0, 0), "{out}");
    });
}

#[test]
fn report_merge_adds_the_tls_figures_exactly() {
    with_timeout(T, || {
        let files: Vec<PathBuf> = (0..2).map(|i| temp_json(&format!("tls-shard{i}.json"))).collect();
        for (i, f) in files.iter().enumerate() {
            let shard = format!("{i}/2");
            let (code, out, _) = run(
                &["goon", "--tls", "-c", "20", "-s", "0", "-i", "0", "--shard", &shard, "--json", f.to_str().unwrap()],
                T,
            );
            assert_eq!(code, 0, "{out}");
        }
        let merged = temp_json("tls-merged.json");
        let (code, out, err) = run(
            &[
                "report",
                "merge",
                files[0].to_str().unwrap(),
                files[1].to_str().unwrap(),
                "--json",
                merged.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(handshakes(&out), (20, 20, 0, 0, 0), "{out}");
        let m = json(&merged);
        assert_eq!(m["tls"]["handshake_time"]["count"], 20);
        let (a, b) = (json(&files[0]), json(&files[1]));
        let max = |d: &Value| d["tls"]["handshake_time"]["max_ns"].as_u64().unwrap();
        assert_eq!(m["tls"]["handshake_time"]["max_ns"].as_u64().unwrap(), max(&a).max(max(&b)));
        // Σ ns is written as a decimal string (a u128).
        let sum = |d: &Value| d["tls"]["handshake_time"]["sum_ns"].as_str().unwrap().parse::<u128>().unwrap();
        assert_eq!(sum(&m), sum(&a) + sum(&b));
        // A shard without --tls does not merge with one that had it.
        let plain = temp_json("plain-shard.json");
        let (code, _, _) = run(&["goon", "-c", "2", "-i", "0", "--shard", "1/2", "--json", plain.to_str().unwrap()], T);
        assert_eq!(code, 0);
        let (code, _, err) = run(&["report", "merge", files[0].to_str().unwrap(), plain.to_str().unwrap()], T);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("tls: a run without --tls but"), "{err}");
    });
}

#[test]
fn bad_certificate_files_are_one_line_errors_naming_flag_and_file() {
    with_timeout(T, || {
        let junk = write_temp("junk.pem", "not pem\n");
        let missing = std::env::temp_dir().join("netforge-it-no-such-cert.pem");
        let cases: [(&[&str], String); 3] = [
            (
                &["--cert", missing.to_str().unwrap(), "--key", junk.to_str().unwrap()],
                format!("--cert {}: cannot open", missing.display()),
            ),
            (
                &["--cert", junk.to_str().unwrap(), "--key", junk.to_str().unwrap()],
                format!("--cert {}: no PEM certificate", junk.display()),
            ),
            (&["--key", junk.to_str().unwrap()], "--cert".to_string()),
        ];
        for (extra, want) in cases {
            let args = [&["serve", "--listen", "127.0.0.1:0", "--tls"][..], extra].concat();
            let (code, out, err) = run(&args, T);
            assert_eq!(code, 1, "{args:?}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.starts_with("netforge: ") && err.contains(&want), "{args:?}: {err}");
        }
        let (code, _, err) = run(&["goon", "--sni", "a.example", "-c", "1"], T);
        assert_eq!(code, 1);
        assert!(err.contains("--tls") && err.lines().count() == 1, "{err}");
        let (code, _, err) = run(&["goon", "--tls", "--alpn", "h2,", "-c", "1"], T);
        assert_eq!(code, 1);
        assert!(err.contains("--alpn") && err.lines().count() == 1, "{err}");
    });
}

#[test]
fn serve_tls_echo_speaks_plaintext_inside_tls() {
    with_timeout(T, || {
        use rustls::pki_types::pem::PemObject;
        use std::io::{Read, Write};
        let (ca, cert, key) = ca_and_leaf();
        let (_srv, addr) = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "0",
            "--mode",
            "echo",
            "--tls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_file(&ca).unwrap()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("good.example").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let msg = vec![7u8; 100_000];
        tls.write_all(&msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        tls.read_exact(&mut back).unwrap();
        assert!(back == msg, "echoed through TLS");
        // Our close_notify: the server answers with its own and closes.
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut rest = Vec::new();
        assert_eq!(tls.read_to_end(&mut rest).unwrap(), 0);
    });
}

/// A client that connects to `serve --tls` and never completes its handshake (silent, or half a
/// record) is closed by the server after the handshake deadline, not held: it reads EOF (or a
/// reset) well within the wait, where without the deadline the read would time out.
#[test]
fn serve_tls_closes_a_client_that_never_finishes_its_handshake() {
    with_timeout(T, || {
        use std::io::{Read, Write};
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--mode", "hold", "--tls"]);
        let silent = std::net::TcpStream::connect(addr).unwrap();
        let mut half = std::net::TcpStream::connect(addr).unwrap();
        // A handshake record header that promises 16 KiB, and 100 bytes of it.
        half.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
        half.write_all(&[0u8; 100]).unwrap();
        for mut s in [silent, half] {
            // Past the 10 s deadline with room to spare; a read that times out means held.
            s.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("the server should close a handshake that never ends, got {other:?}"),
            }
        }
    });
}

/// goon `--alpn h2,http/1.1 --insecure -c N --json FILE` against `addr`: (exit code, stdout, JSON).
fn goon_alpn(port: &str, n: &str, tag: &str) -> (i32, String, Value) {
    let j = temp_json(tag);
    let args =
        ["goon", "127.0.0.1", port, "--tls", "--insecure", "--alpn", "h2,http/1.1", "-c", n, "-s", "0", "-y", "--json"];
    let (code, out, err) = run(&[&args[..], &[j.to_str().unwrap()]].concat(), T);
    assert!(err.is_empty() || code != 1, "{err}");
    (code, out, json(&j))
}

#[test]
fn alpn_negotiates_the_servers_choice_among_goons_offer() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls", "--alpn", "h2"]);
        let (code, out, doc) = goon_alpn(&addr.port().to_string(), "12", "alpn-h2.json");
        assert_eq!(code, 0, "{out}");
        assert_eq!(handshakes(&out), (12, 12, 0, 0, 0), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let at = lines.iter().position(|l| l.starts_with("TLS handshakes: ")).unwrap();
        assert!(lines[at..].contains(&"TLS ALPN negotiated: h2: 12, http/1.1: 0, none: 0"), "{out}");
        assert_eq!(doc["tls"]["alpn"], serde_json::json!({ "h2": 12, "http/1.1": 0, "none": 0 }));
        assert_eq!(doc["config"]["tls"]["alpn"], serde_json::json!(["h2", "http/1.1"]));
        // The server's preference decides among what the client offers.
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls", "--alpn", "http/1.1,h2"]);
        let (code, out, doc) = goon_alpn(&addr.port().to_string(), "3", "alpn-h1.json");
        assert_eq!(code, 0, "{out}");
        assert_eq!(doc["tls"]["alpn"], serde_json::json!({ "h2": 0, "http/1.1": 3, "none": 0 }));
    });
}

#[test]
fn alpn_a_server_accepting_none_of_the_offer_fails_every_handshake() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls", "--alpn", "foo"]);
        let (code, out, doc) = goon_alpn(&addr.port().to_string(), "7", "alpn-foo.json");
        assert_eq!(code, 2, "a refused handshake is an error:\n{out}");
        assert_eq!(handshakes(&out), (0, 0, 0, 7, 0), "{out}");
        assert!(out.contains("TLS failures by cause: alert_no_application_protocol 7"), "{out}");
        assert_eq!(failures(&doc), [("alert_no_application_protocol".to_string(), 7)]);
        assert_eq!(doc["tls"]["alpn"], serde_json::json!({ "h2": 0, "http/1.1": 0, "none": 0 }));
        assert!(out.contains("TLS ALPN negotiated: h2: 0, http/1.1: 0, none: 0"), "{out}");
    });
}

#[test]
fn alpn_a_server_without_alpn_negotiates_none() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls"]);
        let port = addr.port().to_string();
        let (code, out, doc) = goon_alpn(&port, "5", "alpn-none.json");
        assert_eq!(code, 0, "{out}");
        assert_eq!(doc["tls"]["alpn"], serde_json::json!({ "h2": 0, "http/1.1": 0, "none": 5 }));
        assert!(out.contains("TLS ALPN negotiated: h2: 0, http/1.1: 0, none: 5"), "{out}");
        // Without --alpn goon prints no ALPN line and writes no alpn key.
        let j = temp_json("alpn-off.json");
        let (code, out, _) = run(
            &[
                "goon",
                "127.0.0.1",
                &port,
                "--tls",
                "--insecure",
                "-c",
                "2",
                "-s",
                "0",
                "-y",
                "--json",
                j.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("ALPN"), "{out}");
        assert!(json(&j)["tls"].get("alpn").is_none());
    });
}

#[test]
fn alpn_a_client_offering_no_alpn_is_served_by_a_server_with_alpn() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--interval", "0", "--tls", "--alpn", "h2"]);
        let (code, out, _) =
            run(&["goon", "127.0.0.1", &addr.port().to_string(), "--tls", "--insecure", "-c", "3", "-s", "0", "-y"], T);
        assert_eq!(code, 0, "{out}");
        assert_eq!(handshakes(&out), (3, 3, 0, 0, 0), "{out}");
    });
}

#[test]
fn alpn_the_built_in_sink_accepts_what_goon_offers() {
    with_timeout(T, || {
        let j = temp_json("alpn-builtin.json");
        let st = temp_json("alpn-builtin.ndjson");
        let args = ["goon", "--tls", "--alpn", "h2,http/1.1", "-c", "10", "-s", "0", "-i", "0"];
        let files = ["--json", j.to_str().unwrap(), "--json-stream", st.to_str().unwrap()];
        let (code, out, err) = run(&[&args[..], &files[..]].concat(), T);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("TLS ALPN negotiated: h2: 10, http/1.1: 0, none: 0"), "{out}");
        assert_eq!(json(&j)["tls"]["alpn"], serde_json::json!({ "h2": 10, "http/1.1": 0, "none": 0 }));
        // The interval events count the interval's handshakes by protocol; they add up to the run's.
        let (mut h2, mut other) = (0, 0);
        for line in std::fs::read_to_string(&st).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == "interval" {
                let a = &v["sample"]["tls"]["alpn"];
                h2 += a["h2"].as_u64().unwrap();
                other += a["http/1.1"].as_u64().unwrap() + a["none"].as_u64().unwrap();
            }
        }
        assert_eq!((h2, other), (10, 0));
    });
}

#[test]
fn report_merge_sums_the_alpn_counts_and_refuses_a_different_offer() {
    with_timeout(T, || {
        let shard = |i: usize, alpn: &str, tag: &str| {
            let f = temp_json(tag);
            let s = format!("{i}/2");
            let (code, out, _) = run(
                &[
                    "goon",
                    "--tls",
                    "--alpn",
                    alpn,
                    "-c",
                    "10",
                    "-s",
                    "0",
                    "-i",
                    "0",
                    "--shard",
                    &s,
                    "--json",
                    f.to_str().unwrap(),
                ],
                T,
            );
            assert_eq!(code, 0, "{out}");
            f
        };
        let (a, b) = (shard(0, "h2,http/1.1", "alpn-shard0.json"), shard(1, "h2,http/1.1", "alpn-shard1.json"));
        let merged = temp_json("alpn-merged.json");
        let (code, out, err) =
            run(&["report", "merge", a.to_str().unwrap(), b.to_str().unwrap(), "--json", merged.to_str().unwrap()], T);
        assert_eq!(code, 0, "{out}\n{err}");
        let h2 = |d: &Value| d["tls"]["alpn"]["h2"].as_u64().unwrap();
        assert_eq!((h2(&json(&a)), h2(&json(&b))), (5, 5));
        assert_eq!(json(&merged)["tls"]["alpn"], serde_json::json!({ "h2": 10, "http/1.1": 0, "none": 0 }));
        assert!(out.contains("TLS ALPN negotiated: h2: 10, http/1.1: 0, none: 0"), "{out}");
        // The merged samples add up too.
        let samples = json(&merged)["samples"].as_array().unwrap().clone();
        let sum: u64 = samples.iter().map(|s| s["tls"]["alpn"]["h2"].as_u64().unwrap()).sum();
        assert_eq!(sum, 10);
        // A document without the key (a run without --alpn) reads, but does not merge with one that has it.
        let without = |f: &PathBuf, tag: &str| {
            let mut old = json(f);
            old["tls"].as_object_mut().unwrap().remove("alpn");
            for s in old["samples"].as_array_mut().unwrap() {
                s["tls"].as_object_mut().unwrap().remove("alpn");
            }
            write_temp(tag, &old.to_string())
        };
        let (old_a, old_b) = (without(&a, "alpn-old-shard0.json"), without(&b, "alpn-old-shard1.json"));
        let (code, out, err) = run(&["report", "merge", old_a.to_str().unwrap(), old_b.to_str().unwrap()], T);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("TLS handshakes: 10 done") && !out.contains("ALPN"), "{out}");
        let (code, _, err) = run(&["report", "merge", a.to_str().unwrap(), old_b.to_str().unwrap()], T);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("tls.alpn: a run without --alpn but"), "{err}");
        let c = shard(1, "http/1.1", "alpn-shard1-other.json");
        let (code, _, err) = run(&["report", "merge", a.to_str().unwrap(), c.to_str().unwrap()], T);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("tls.alpn: --alpn http/1.1 but"), "{err}");
    });
}

#[test]
fn a_bad_serve_alpn_is_a_one_line_error_naming_the_flag() {
    with_timeout(T, || {
        for (bad, want) in [
            ("h2,", "protocol name \"\" must be 1..=255 bytes"),
            ("h2,h2", "listed twice"),
            ("none", "\"none\" is reserved"),
        ] {
            let (code, out, err) = run(&["serve", "--listen", "127.0.0.1:0", "--tls", "--alpn", bad], T);
            assert_eq!(code, 1, "{bad}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains("--alpn") && err.contains(want), "{bad}: {err}");
        }
        let (code, _, err) = run(&["serve", "--listen", "127.0.0.1:0", "--alpn", "h2"], T);
        assert_eq!(code, 1);
        assert!(err.contains("--tls") && err.lines().count() == 1, "--alpn needs --tls: {err}");
        let (code, out, _) =
            run(&["serve", "--listen", "127.0.0.1:0", "--tls", "--alpn", "h2, http/1.1", "--print-config"], T);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("alpn = [\"h2\", \"http/1.1\"]"), "{out}");
    });
}

/// A fleet whose TLS handshakes all failed is a failed fleet however the merge is asked:
/// `--max-errors` counts the failed handshakes with the errors (they end as Closed), and
/// the page over the shard files shows the status `report merge` gives.
#[test]
fn failed_handshakes_count_against_max_errors_and_in_the_fleet_page() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "-i", "0"]);
        let port = addr.port().to_string();
        let files: Vec<PathBuf> = (0..2).map(|i| temp_json(&format!("tls-fail-shard{i}.json"))).collect();
        for (i, f) in files.iter().enumerate() {
            let shard = format!("{i}/2");
            let args =
                ["goon", "127.0.0.1", &port, "--tls", "--insecure", "-c", "6", "-s", "0", "-t", "500", "-y", "-i", "0"];
            let (code, out, err) = run(&[&args[..], &["--shard", &shard, "--json", f.to_str().unwrap()]].concat(), T);
            assert_eq!(code, 2, "a plain server fails every handshake: {out}{err}");
        }
        let (a, b) = (files[0].to_str().unwrap(), files[1].to_str().unwrap());
        let (code, out, _) = run(&["report", "merge", a, b], T);
        assert_eq!(code, 2, "{out}");
        let (code, out, _) = run(&["report", "merge", a, b, "--max-errors", "0"], T);
        assert_eq!(code, 3, "{out}");
        assert!(
            out.contains(
                "threshold violated: --max-errors 0: 6 errors (100.000% of 6): 0 in Error, 6 failed TLS handshakes"
            ),
            "{out}"
        );
        let (code, out, _) = run(&["report", "merge", a, b, "--max-errors", "100%"], T);
        assert_eq!(code, 0, "a budget that allows them all passes: {out}");
        let page = temp_json("tls-fail.html");
        let (code, _, err) = run(&["report", "html", "-o", page.to_str().unwrap(), a, b], T);
        assert_eq!(code, 0, "{err}");
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("<tr><th>exit status</th><td>2</td></tr>"), "the page shows merge's status");
        for f in files.iter().chain([&page]) {
            let _ = std::fs::remove_file(f);
        }
    });
}

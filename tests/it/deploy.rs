//! The deployment files (conf/k8s/, conf/compose.yml, conf/manifest.yml) run the binary the way
//! they say: their command lines and proxy configs are taken from the files themselves and run
//! here on loopback, with host names and listen addresses swapped for local ones. The files'
//! schemas are checked offline by `.ci/check-deploy`; what a cluster, Docker Compose or Cloud
//! Foundry adds (DNS, scheduling, routing) cannot be run here.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{metrics, netforge, raw, spawn_listening, spawn_proxy, with_timeout, write_temp, HeldPort, Proc};

const T: Duration = Duration::from_secs(60);

fn conf(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The block scalar that the first line reading `head` (`lb.toml: |`, `- |`) opens: the lines
/// after it, less their common indent.
fn block_scalar(yaml: &str, head: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != head);
    let head = lines.next().unwrap_or_else(|| panic!("no `{head}` block"));
    let outer = head.len() - head.trim_start().len();
    let body: Vec<&str> = lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > outer).collect();
    let indent = body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap();
    body.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The flow sequence of `key: [...]` on one line (double-quoted strings: valid JSON), the
/// `n`th such line of the file.
fn flow_list(yaml: &str, key: &str, n: usize) -> Vec<String> {
    let line = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .filter(|v| v.starts_with('['))
        .nth(n)
        .unwrap_or_else(|| panic!("no {n}th `{key}: [...]` line"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("`{key}: {line}` is not a list of strings: {e}"))
}

/// `args` with the value after `flag` replaced by `value`.
fn with_flag(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    let mut out = args.to_vec();
    out[i + 1] = value.to_string();
    out
}

/// An lb.toml with every `address = "..."` replaced: listeners and the admin endpoint by
/// 127.0.0.1:0, backend `NAME:PORT` by `backends[NAME]`.
fn localize(toml: &str, backends: &[(&str, SocketAddr)]) -> String {
    toml.lines()
        .map(|l| match l.trim().strip_prefix("address = \"").and_then(|r| r.strip_suffix('"')) {
            Some(a) if a.starts_with("0.0.0.0:") => "address = \"127.0.0.1:0\"".to_string(),
            Some(a) => {
                let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
                let to = backends.iter().find(|(n, _)| *n == host).unwrap_or_else(|| panic!("backend {a}?")).1;
                format!("address = \"{to}\"")
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn backend_up(m: &str, name: &str) -> Option<u8> {
    let series = format!("netforge_proxy_backend_up{{group=\"default\",backend=\"{name}\"}} ");
    m.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

fn wait_up(admin: SocketAddr, name: &str, want: u8, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let m = metrics(admin);
        if backend_up(&m, name) == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not {want} within {within:?}:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn echo_roundtrip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = raw(addr);
    s.write_all(data).unwrap();
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    got
}

/// conf/compose.yml's walk-through on loopback: its three backends' command line, its proxy's
/// compose-lb.toml, data echoed through the proxy, one backend stopped and marked DOWN by the
/// proxy's health checks (then UP again), and the backends' own healthcheck command.
#[test]
fn compose_walkthrough_runs_on_loopback() {
    with_timeout(T, || {
        let compose = conf("compose.yml");
        let serve_args = flow_list(&compose, "command", 1);
        assert_eq!(&serve_args[..1], ["serve"], "{serve_args:?}");
        let start = |listen: &str, extra: &[&str]| {
            let mut cmd = netforge();
            cmd.args(with_flag(&serve_args, "--listen", listen)).args(extra);
            spawn_listening(cmd)
        };
        // backend-2's port stays held while it is down, so nothing else takes it meanwhile.
        let held = HeldPort::new();
        let (b1, a1) = start("127.0.0.1:0", &[]);
        let (b2, a2) = start(&held.addr.to_string(), &["--reuse-port"]);
        let (b3, a3) = start("127.0.0.1:0", &[]);
        let lb = localize(&conf("compose-lb.toml"), &[("backend-1", a1), ("backend-2", a2), ("backend-3", a3)]);
        let path = write_temp("compose-lb.toml", &lb);
        let proxy_args = flow_list(&compose, "command", 0);
        let mut cmd = netforge();
        cmd.args(with_flag(&proxy_args, "--conf", path.to_str().unwrap()));
        let (px, addr, admin) = spawn_proxy(cmd);
        for b in ["backend-1", "backend-2", "backend-3"] {
            wait_up(admin, b, 1, Duration::from_secs(10));
        }
        for i in 0..6u8 {
            assert_eq!(echo_roundtrip(addr, &[b'a' + i; 6]), vec![b'a' + i; 6]);
        }
        drop(b2);
        wait_up(admin, "backend-2", 0, Duration::from_secs(15));
        assert_eq!(backend_up(&metrics(admin), "backend-1"), Some(1));
        for i in 0..6u8 {
            assert_eq!(echo_roundtrip(addr, &[i; 3]), vec![i; 3], "a session went to the stopped backend");
        }
        let (_b2, _) = start(&held.addr.to_string(), &["--reuse-port"]);
        wait_up(admin, "backend-2", 1, Duration::from_secs(15));
        // The backends' Docker healthcheck: `netforge goon 127.0.0.1 7000 ...`, here at backend-1.
        let check = flow_list(&compose, "test", 0);
        assert_eq!(&check[..2], ["CMD", "netforge"], "{check:?}");
        let mut args = check[2..].to_vec();
        assert_eq!(args[..3], ["goon", "127.0.0.1", "7000"], "{args:?}");
        args[2] = a1.port().to_string();
        let mut cmd = netforge();
        cmd.args(&args);
        let (status, out, err) = Proc::spawn(cmd).finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "healthcheck {args:?} failed:\n{out}{err}");
        drop((b1, b3, px));
        let _ = std::fs::remove_file(path);
    });
}

/// The proxy Deployment's lb.toml (its ConfigMap) loads, and names the serve Service.
#[test]
fn k8s_proxy_config_map_loads() {
    with_timeout(T, || {
        let yaml = conf("k8s/proxy.yaml");
        let lb = block_scalar(&yaml, "lb.toml: |");
        assert!(lb.contains("address = \"netforge-serve:7000\""), "{lb}");
        let (s, a) = crate::util::serve(&["--listen", "127.0.0.1:0"]);
        let path = write_temp("k8s-lb.toml", &localize(&lb, &[("netforge-serve", a)]));
        let args = flow_list(&yaml, "args", 0);
        let mut cmd = netforge();
        cmd.args(with_flag(&args, "--conf", path.to_str().unwrap())).arg("--print-config");
        let (status, out, err) = Proc::spawn(cmd).finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(out.contains(&a.to_string()) && out.contains("max_connections = 200000"), "{out}");
        drop(s);
        let _ = std::fs::remove_file(path);
    });
}

/// The serve Deployment's command line starts a server that holds connections.
#[test]
fn k8s_serve_args_start_a_server() {
    with_timeout(T, || {
        let args = flow_list(&conf("k8s/serve.yaml"), "args", 0);
        assert_eq!(args[..3], ["serve", "--listen", "0.0.0.0:7000"], "{args:?}");
        let mut cmd = netforge();
        cmd.args(with_flag(&args, "--listen", "127.0.0.1:0"));
        let (p, addr) = spawn_listening(cmd);
        let mut c = raw(addr);
        // --mode hold: the server keeps the connection and sends nothing.
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 1];
        let e = c.read(&mut b).expect_err("a held connection got data or EOF");
        assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}");
        drop(p);
    });
}

/// A stand-in for kubectl that answers `get pods` with `pods` and `logs POD` with
/// `logs/POD` from `dir`.
fn fake_kubectl(dir: &Path, pods: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    for (pod, log) in pods {
        std::fs::write(dir.join("logs").join(pod), log).unwrap();
    }
    let names: Vec<&str> = pods.iter().map(|(p, _)| *p).collect();
    let script = format!(
        "#!/bin/sh\n\
         printf '%s\\n' \"$*\" >> '{d}/calls'\n\
         [ \"$1\" = -n ] && shift 2\n\
         case \"$1\" in\n\
         get) printf '%s\\n' {names} ;;\n\
         logs) cat '{d}/logs/'\"$2\" ;;\n\
         *) exit 3 ;;\n\
         esac\n",
        d = dir.display(),
        names = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(" ")
    );
    let bin = dir.join("kubectl");
    std::fs::write(&bin, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn shard_log(i: usize, json: &str) -> String {
    format!(
        "netforge goon preflight:\n--- report ---\nTotal: 3\n\
         ----- BEGIN NETFORGE SHARD JSON {i} -----\n{json}\n----- END NETFORGE SHARD JSON {i} -----\n"
    )
}

fn collect(kubectl: &Path, out: &Path) -> (i32, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/k8s/collect.sh");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(script).args(["netforge-goon", out.to_str().unwrap()]).env("KUBECTL", kubectl).env("NAMESPACE", "load");
    let (status, o, e) = Proc::spawn(cmd).finish(Duration::from_secs(20));
    (status.code().unwrap_or(-1), o, e)
}

/// conf/k8s/collect.sh writes shard-I.json for each pod from what goon-job.yaml's pods print,
/// and names a pod whose log holds no complete JSON.
#[test]
fn k8s_collect_extracts_each_shards_json() {
    with_timeout(T, || {
        let dir =
            std::env::temp_dir().join(format!("netforge-it-collect-{}-{}", std::process::id(), fastrand::u64(..)));
        let j0 = "{\n  \"shard\": 0,\n  \"host\": \"----- END NETFORGE SHARD JSON 1 -----\"\n}";
        let j1 = "{\"shard\": 1}";
        let kubectl = fake_kubectl(
            &dir,
            &[("netforge-goon-0-abc", &shard_log(0, j0)), ("netforge-goon-1-def", &shard_log(1, j1))],
        );
        let out = dir.join("results");
        let (code, o, e) = collect(&kubectl, &out);
        assert_eq!(code, 0, "{o}{e}");
        assert_eq!(std::fs::read_to_string(out.join("shard-0.json")).unwrap(), format!("{j0}\n"));
        assert_eq!(std::fs::read_to_string(out.join("shard-1.json")).unwrap(), format!("{j1}\n"));
        let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
        assert!(calls.contains("-n load get pods -l job-name=netforge-goon"), "{calls}");
        assert!(calls.contains("-n load logs netforge-goon-1-def --tail=-1"), "{calls}");
        // A pod that printed no JSON (failed before the end), and one whose log was cut.
        let cut = shard_log(3, "{}").replace("----- END NETFORGE SHARD JSON 3 -----\n", "");
        let kubectl = fake_kubectl(&dir, &[("netforge-goon-2-x", "netforge: bad flag\n"), ("netforge-goon-3-y", &cut)]);
        let (code, _, e) = collect(&kubectl, &out);
        assert_eq!(code, 1, "{e}");
        assert!(e.contains("pod netforge-goon-2-x: no shard JSON in its log"), "{e}");
        assert!(e.contains("pod netforge-goon-3-y: shard 3's JSON is cut off"), "{e}");
        assert!(!out.join("shard-3.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// `collect.sh --help` prints its usage and exits 0 without calling kubectl; an unknown option
/// or a third argument is refused in one line, also without calling kubectl.
#[test]
fn k8s_collect_usage_and_bad_arguments() {
    with_timeout(T, || {
        let dir = std::env::temp_dir().join(format!(
            "netforge-it-collect-usage-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let kubectl = fake_kubectl(&dir, &[("netforge-goon-0-abc", &shard_log(0, "{}"))]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/k8s/collect.sh");
        let run = |args: &[&str]| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg(&script).args(args).env("KUBECTL", &kubectl).current_dir(&dir);
            let (status, o, e) = Proc::spawn(cmd).finish(Duration::from_secs(20));
            (status.code().unwrap_or(-1), o, e)
        };
        let (code, o, e) = run(&["--help"]);
        assert_eq!(code, 0, "{o}{e}");
        assert!(o.starts_with("usage: conf/k8s/collect.sh [JOB] [DIR]"), "{o}");
        let (code, o, e) = run(&["-x"]);
        assert_eq!(code, 1, "{o}{e}");
        assert!(e.starts_with("collect.sh: unknown option -x; usage:"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let (code, _, e) = run(&["job", "out", "extra"]);
        assert_eq!(code, 1, "{e}");
        assert!(e.contains("at most two arguments"), "{e}");
        assert!(!dir.join("calls").exists(), "kubectl was called");
        assert!(!dir.join("--help").exists() && !dir.join("out").exists());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// conf/manifest.yml's command, with PORT set as Cloud Foundry sets it, listens on
/// 0.0.0.0:$PORT and serves the dashboard there.
#[test]
fn cf_manifest_command_listens_on_port() {
    with_timeout(T, || {
        let manifest = conf("manifest.yml");
        let command =
            manifest.lines().find_map(|l| l.trim().strip_prefix("command: ")).expect("no command in conf/manifest.yml");
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[..3], ["./netforge", "bp", "server"], "{command}");
        // A port held for this test; the server shares it (--reuse-port), so no other test can
        // take it first.
        let held = HeldPort::new();
        let mut cmd = netforge();
        cmd.args(&words[1..]).arg("--reuse-port").env("PORT", held.addr.port().to_string());
        let (p, addr) = spawn_listening(cmd);
        assert_eq!(addr, SocketAddr::from(([0, 0, 0, 0], held.addr.port())));
        let mut s = raw(held.addr);
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut page = String::new();
        let _ = s.read_to_string(&mut page);
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("<html"), "{}", &page[..page.len().min(300)]);
        drop(p);
    });
}

/// goon-job.yaml's pod script, end to end on loopback: two "pods" (the script run with the
/// environment Kubernetes and the Job give it, each with its own /tmp), their logs collected
/// by collect.sh, merged by `report merge`, drawn by `report html`.
#[test]
fn k8s_job_script_runs_a_fleet_end_to_end() {
    with_timeout(Duration::from_secs(90), || {
        let yaml = conf("k8s/goon-job.yaml");
        let script = block_scalar(&yaml, "- |");
        assert!(script.contains("--shard \"$JOB_COMPLETION_INDEX/$SHARDS\""), "{script}");
        let dir = std::env::temp_dir().join(format!("netforge-it-job-{}-{}", std::process::id(), fastrand::u64(..)));
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let (srv, addr) = crate::util::serve(&["--listen", "127.0.0.1:0", "-i", "0"]);
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3;
        let bin_dir = Path::new(crate::util::BIN).parent().unwrap().to_path_buf();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let pods: Vec<Proc> = (0..2)
            .map(|i| {
                let own_tmp = dir.join(format!("tmp-{i}"));
                std::fs::create_dir_all(&own_tmp).unwrap();
                let s = script.replace("/tmp/shard.json", &own_tmp.join("shard.json").display().to_string());
                let mut cmd = std::process::Command::new("/bin/sh");
                cmd.args(["-c", &s])
                    .env("PATH", &path)
                    .env("RUST_LOG", "warn")
                    .env("JOB_COMPLETION_INDEX", i.to_string())
                    .env("SHARDS", "2")
                    .env("CONNECTIONS", "300")
                    .env("TARGET_HOST", "127.0.0.1")
                    .env("TARGET_PORT", addr.port().to_string())
                    .env("HOLD", "1s")
                    .env("START_AT", start.to_string());
                Proc::spawn(cmd)
            })
            .collect();
        let mut names = Vec::new();
        for (i, p) in pods.into_iter().enumerate() {
            let (status, out, err) = p.finish(Duration::from_secs(40));
            assert_eq!(status.code(), Some(0), "pod {i}:\n{out}{err}");
            names.push((format!("netforge-goon-{i}-x"), out));
        }
        drop(srv);
        let pods: Vec<(&str, &str)> = names.iter().map(|(n, o)| (n.as_str(), o.as_str())).collect();
        let kubectl = fake_kubectl(&dir, &pods);
        let results = dir.join("results");
        let (code, o, e) = collect(&kubectl, &results);
        assert_eq!(code, 0, "{o}{e}");
        let shards: Vec<String> =
            (0..2).map(|i| results.join(format!("shard-{i}.json")).display().to_string()).collect();
        let merged = results.join("merged.json").display().to_string();
        let mut args = vec!["report", "merge"];
        args.extend(shards.iter().map(String::as_str));
        args.extend(["--json", &merged]);
        let (code, out, err) = crate::util::run(&args, Duration::from_secs(30));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("Total: 300, Dialing: 0, Established: 300"), "{out}");
        let html = results.join("fleet.html").display().to_string();
        let (code, out, err) = crate::util::run(&["report", "html", &merged, "-o", &html], Duration::from_secs(30));
        assert_eq!(code, 0, "{out}{err}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

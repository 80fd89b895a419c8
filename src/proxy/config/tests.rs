//! The config tests that read whole files: every way a file can be wrong, and what a right one
//! resolves to.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::engine::affinity::CpuAffinity;
use crate::net::tune::Congestion;
use crate::proxy::config::fixtures::*;
use crate::proxy::lb::Balance;

#[test]
fn malformed_configs_name_file_key_and_line() {
    let listener = "[[listener]]\naddress = \"127.0.0.1:4000\"\n";
    let backend = "[[backend]]\naddress = \"127.0.0.1:8001\"\n";
    let two = |a: &str, b: &str| format!("{listener}[[backend]]\naddress = {a:?}\n[[backend]]\naddress = {b:?}\n");
    let pre = |head: &str| format!("{head}\n{MIN}");
    let post = |tail: &str| format!("{MIN}{tail}\n");
    let one_backend = |kv: &str| format!("{listener}[[backend]]\naddress = \"127.0.0.1:8001\"\n{kv}\n");
    // (config text, fragments the message must contain, line it must point at)
    let cases: Vec<(String, &[&str], Option<usize>)> = vec![
        // Unknown keys at every level (toml's parse error, with line).
        (pre("bogus = 1"), &["bogus"], Some(1)),
        (pre("[timeouts]\nconect = \"3s\""), &["conect"], Some(2)),
        (pre("[health]\nintervall = \"2s\""), &["intervall"], Some(2)),
        (pre("[admin]\naddr = \"127.0.0.1:9100\""), &["addr"], Some(2)),
        (post("wieght = 2"), &["wieght"], Some(6)),
        (post("[groups.default]\nalgo = \"rr\""), &["algo"], Some(7)),
        (format!("{listener}port = 4000\n{backend}"), &["port"], Some(3)),
        // Unknown keys and wrong types name the key path.
        (pre("[timeouts]\nconect = \"3s\""), &["bad.toml:2:1: timeouts.conect: unknown field"], Some(2)),
        (post("wieght = 2"), &["backend[0].wieght: unknown field"], Some(6)),
        (pre("threads = \"four\""), &[":1:11: threads: invalid type: string"], Some(1)),
        (pre("max_connections = 1e308"), &["max_connections: invalid type: floating point"], Some(1)),
        (pre("retries = nan"), &["retries: invalid type: floating point"], Some(1)),
        (pre("[health]\nrise = 18446744073709551615"), &[], Some(2)),
        // Every numeric key has a range.
        (pre("threads = 1025"), &["threads: 1025 is out of range 0..=1024 (0 = one per core)"], Some(1)),
        (
            pre("max_connections = 9223372036854775807"),
            &["max_connections: 9223372036854775807 is out of range 1..=16777216"],
            Some(1),
        ),
        (pre("retries = 4294967295"), &["retries: 4294967295 is out of range 0..=100"], Some(1)),
        (pre("[health]\nrise = 1001"), &["health.rise: 1001 is out of range 1..=1000"], Some(2)),
        (
            pre("[health]\npassive_fall = 4294967295"),
            &["health.passive_fall: 4294967295 is out of range 0..=1000"],
            Some(2),
        ),
        (
            pre("[timeouts]\nconnect = \"999999999h\""),
            &["timeouts.connect: duration \"999999999h\" is above the maximum 8760h"],
            Some(2),
        ),
        (pre("drain_timeout = \"1e308s\""), &["drain_timeout: unknown unit"], Some(1)),
        // A missing table points at the end of the file, where it would go.
        (listener.to_string(), &["bad.toml:3:1: backend: no [[backend]] table"], Some(3)),
        // TOML syntax and types.
        (pre("threads = "), &[], Some(1)),
        (pre("threads = \"four\""), &[], Some(1)),
        (pre("retries = -1"), &[], Some(1)),
        (pre("[timeouts]\nclient_idle = true"), &[], Some(2)),
        (format!("{listener}[[backend]]\nweight = 2\n"), &["address"], None),
        // Addresses.
        (two("127.0.0.1", "127.0.0.1:8002"), &["backend[0].address", "no port"], Some(4)),
        (two("127.0.0.1:8001", "::1:8002"), &["backend[1].address", "brackets"], Some(6)),
        (two("127.0.0.1:99999", "127.0.0.1:8002"), &["backend[0].address", "bad port"], Some(4)),
        (two("[::1]", "127.0.0.1:8002"), &["backend[0].address", "no port"], Some(4)),
        (two("300.1.1.1:80", "127.0.0.1:8002"), &["backend[0].address", "not an IPv4"], Some(4)),
        (two("127.0.0.1:8001", "nosuch.invalid:80"), &["backend[1].address", "cannot resolve"], Some(6)),
        (two("127.0.0.1:0", "127.0.0.1:8002"), &["backend[0].address", "port 0"], Some(4)),
        (
            two("127.0.0.1:8001", "127.0.0.1:8001"),
            &["backend[1].address: duplicates backend[0] in group \"default\""],
            Some(6),
        ),
        (two("localhost:8001", "127.0.0.1:8001"), &["backend[1].address", "duplicates backend[0]"], Some(6)),
        (format!("{listener}{listener}{backend}"), &["listener[1].address", "duplicates listener[0]"], Some(4)),
        (
            format!("{listener}name = \"a\"\n[[listener]]\naddress = \"127.0.0.1:4001\"\nname = \"a\"\n{backend}"),
            &["listener[1].name", "duplicates listener[0]"],
            Some(6),
        ),
        (pre("[admin]\naddress = \"127.0.0.1\""), &["admin.address", "no port"], Some(2)),
        (pre("[admin]\naddress = \"127.0.0.1:4000\""), &["listener[0].address", "admin"], Some(4)),
        // Missing pieces and groups.
        (backend.to_string(), &["listener: no [[listener]]"], None),
        (listener.to_string(), &["backend: no [[backend]]"], None),
        (
            format!("[[listener]]\naddress = \"127.0.0.1:4000\"\ngroup = \"api\"\n{backend}"),
            &["listener[0].group", "\"api\""],
            Some(3),
        ),
        (post("[groups.unused]\nbalance = \"rr\""), &["groups.unused", "no backend uses"], Some(6)),
        (
            format!("{listener}[[backend]]\naddress = \"127.0.0.1:8001\"\nweight = 0\n"),
            &["backend[0].weight", "weight 0"],
            Some(5),
        ),
        (one_backend("weight = 300"), &["backend[0].weight", "256"], Some(5)),
        (one_backend("name = \"\""), &["backend[0].name", "empty"], Some(5)),
        (
            format!("{MIN}name = \"x\"\n[[backend]]\naddress = \"127.0.0.1:8002\"\nname = \"x\"\n"),
            &["backend[1].name", "duplicates backend[0]"],
            Some(9),
        ),
        // Keywords.
        (pre("balance = \"fastest\""), &["balance", "fastest", "least_conn"], Some(1)),
        (post("[groups.default]\nbalance = \"p3c\""), &["groups.default.balance", "p3c"], Some(7)),
        (pre("splice = \"maybe\""), &["splice", "maybe", "auto, on or off"], Some(1)),
        (one_backend("state = \"paused\""), &["backend[0].state", "paused"], Some(5)),
        // Durations.
        (pre("[timeouts]\nconnect = \"3x\""), &["timeouts.connect", "3x"], Some(2)),
        (pre("[timeouts]\nconnect = 3"), &["timeouts.connect", "needs a unit"], Some(2)),
        (pre("[timeouts]\nconnect = \"0\""), &["timeouts.connect", "> 0"], Some(2)),
        (pre("[timeouts]\nserver_fin = \"0\""), &["timeouts.server_fin", "> 0"], Some(2)),
        (pre("drain_timeout = \"soon\""), &["drain_timeout"], Some(1)),
        (pre("[health]\ninterval = \"0\""), &["health.interval", "> 0"], Some(2)),
        (pre("[health]\ntimeout = \"0\""), &["health.timeout", "> 0"], Some(2)),
        (pre("[health]\ninterval = \"1s\"\ntimeout = \"5s\""), &["health.timeout", "interval"], Some(3)),
        // Numbers out of range.
        (pre("[health]\nrise = 0"), &["health.rise", ">= 1"], Some(2)),
        (pre("[health]\nfall = 0"), &["health.fall", ">= 1"], Some(2)),
        (pre("[health]\njitter_pct = 51"), &["health.jitter_pct", "50"], Some(2)),
        (pre("buffer_size = \"512\""), &["buffer_size", "1KiB..=16MiB"], Some(1)),
        (pre("buffer_size = \"32MiB\""), &["buffer_size", "1KiB..=16MiB"], Some(1)),
        (pre("buffer_size = \"16XB\""), &["buffer_size", "XB"], Some(1)),
        (pre("pipe_size = \"1KiB\""), &["pipe_size", "4KiB..=16MiB"], Some(1)),
        (pre("threads = 2000"), &["threads", "1024"], Some(1)),
        (pre("max_connections = 0"), &["max_connections", ">= 1"], Some(1)),
        (
            format!("max_connections = 100\n{listener}max_connections = 200\n{backend}"),
            &["listener[0].max_connections", "global"],
            Some(4),
        ),
        (format!("{listener}max_connections = 0\n{backend}"), &["listener[0].max_connections"], Some(3)),
        (pre("cpu_affinity = \"yes\""), &["cpu_affinity", "\"yes\" is not \"auto\", \"off\""], Some(1)),
        (pre("cpu_affinity = 1"), &["cpu_affinity", "list of CPU numbers"], Some(1)),
        (pre("cpu_affinity = [-1]"), &["cpu_affinity", "-1 is not a CPU number"], Some(1)),
        (pre("cpu_affinity = []"), &["cpu_affinity", "empty list"], Some(1)),
        (pre("congestion = \"nosuchcc\""), &["congestion", "not a congestion control this kernel has"], Some(1)),
        (
            format!("{listener}congestion = \"Cubic\"\n{backend}"),
            &["listener[0].congestion", "not a congestion-control name"],
            Some(3),
        ),
        (
            post("[groups.default]\ncongestion = \"\""),
            &["groups.default.congestion", "not a congestion-control name"],
            Some(7),
        ),
    ];
    assert!(cases.len() >= 18);
    for (text, want, line) in &cases {
        let err = match parse(text) {
            Ok(cfg) => panic!("accepted:\n{text}\n=> {cfg:?}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{msg}");
        assert!(!msg.contains('\n'), "{msg:?}");
        for w in want.iter() {
            assert!(msg.contains(w), "{msg:?} lacks {w:?}\n{text}");
        }
        if let Some(line) = line {
            assert_eq!(err.at.map(|a| a.0), Some(*line), "{msg}\n{text}");
        }
    }
}

/// An element of `[[listener]]` or `[[backend]]` missing its required `address` is named
/// by its index, wherever it stands (first, only, last, inline), never by the array alone.
#[test]
fn a_table_missing_its_address_is_named_by_index() {
    let listener = "[[listener]]\naddress = \"127.0.0.1:4000\"\n";
    let backend = "[[backend]]\naddress = \"127.0.0.1:8001\"\n";
    let cases: Vec<(String, &str)> = vec![
        (format!("[[listener]]\n{backend}"), "bad.toml:1:1: listener[0]: missing field `address`"),
        (format!("[[listener]]\nname = \"a\"\n{backend}"), "bad.toml:1:1: listener[0]: missing field `address`"),
        (format!("{backend}[[listener]]\n"), "bad.toml:3:1: listener[0]: missing field `address`"),
        (format!("{listener}[[listener]]\n{backend}"), "bad.toml:3:1: listener[1]: missing field `address`"),
        (format!("{listener}[[backend]]\n"), "bad.toml:3:1: backend[0]: missing field `address`"),
        (format!("{listener}[[backend]]\nweight = 2\n"), "bad.toml:3:1: backend[0]: missing field `address`"),
        (format!("{listener}{backend}[[backend]]\nweight = 2\n"), "bad.toml:5:1: backend[1]: missing field `address`"),
        (format!("backend = [{{ weight = 2 }}]\n{listener}"), "bad.toml:1:12: backend[0]: missing field `address`"),
        // A group (a table of tables, no required key) still names its path.
        (format!("{listener}{backend}[groups.web]\nbalance = 3\n"), "bad.toml:6:11: groups.web.balance: invalid type"),
    ];
    for (text, want) in &cases {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.starts_with(want), "{msg:?}, want {want:?}…\n{text}");
        assert!(!msg.contains('\n'), "{msg:?}");
    }
}

#[test]
fn minimal_config_takes_every_default() {
    let cfg = parse(MIN).unwrap();
    let want = ProxyConfig {
        source: Some(crate::conffile::Origin::new(Path::new(FILE), "")),
        threads: DEFAULT_THREADS,
        cpu_affinity: CpuAffinity::Off,
        max_connections: default_max_connections(),
        balance: DEFAULT_BALANCE,
        retries: DEFAULT_RETRIES,
        buffer_bytes: DEFAULT_BUFFER_BYTES,
        pipe_bytes: DEFAULT_PIPE_BYTES,
        splice: DEFAULT_SPLICE,
        smart_connect: DEFAULT_SMART_CONNECT,
        reuse_port: DEFAULT_REUSE_PORT,
        congestion: DEFAULT_CONGESTION,
        overrides: Overrides::default(),
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        timeouts: Timeouts::default(),
        health: HealthConfig::default(),
        admin: Some(DEFAULT_ADMIN_ADDRESS),
        listeners: vec![ListenerConfig {
            name: "listener0".into(),
            address: v4([127, 0, 0, 1], 4000),
            group: 0,
            max_connections: default_max_connections(),
            congestion: DEFAULT_CONGESTION,
        }],
        groups: vec![GroupConfig {
            name: DEFAULT_GROUP.into(),
            balance: DEFAULT_BALANCE,
            congestion: DEFAULT_CONGESTION,
            backends: vec![BackendConfig {
                name: "127.0.0.1:8001".into(),
                address: v4([127, 0, 0, 1], 8001),
                weight: DEFAULT_WEIGHT,
                backup: false,
                state: DEFAULT_STATE,
            }],
        }],
    };
    assert_eq!(cfg, want);
    assert_eq!(cfg.memory_bound_bytes(), default_max_connections() as u64 * 2 * 16 * 1024);
}

#[test]
fn full_config() {
    let cfg = parse(FULL).unwrap();
    assert_eq!((cfg.threads, cfg.max_connections, cfg.retries), (4, 500, 0));
    assert_eq!(cfg.cpu_affinity, CpuAffinity::Auto);
    assert_eq!((cfg.balance, cfg.buffer_bytes, cfg.splice), (Balance::LeastConn, 65536, SpliceMode::Off));
    assert_eq!(cfg.drain_timeout, Duration::ZERO);
    assert!(!cfg.smart_connect);
    let t = &cfg.timeouts;
    assert_eq!(t.connect, Duration::from_millis(250));
    assert_eq!(t.client_idle, Duration::from_secs(90));
    assert_eq!(t.server_idle, Duration::from_secs(3600));
    assert_eq!(t.client_fin, Duration::from_millis(1500));
    assert_eq!(t.server_fin, Duration::from_secs(45));
    assert_eq!(t.max_lifetime, Some(Duration::from_secs(7200)));
    let want_health = HealthConfig {
        enabled: false,
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        rise: 1,
        fall: 10,
        jitter_pct: 0,
        passive_fall: 0,
    };
    assert_eq!(cfg.health, want_health);
    assert_eq!(cfg.admin, None);

    let names: Vec<(&str, usize, usize)> =
        cfg.listeners.iter().map(|l| (l.name.as_str(), l.group, l.max_connections)).collect();
    assert_eq!(names, vec![("web", 0, 100), ("listener1", 1, 500), ("listener2", 1, 500)]);
    assert_eq!(cfg.listeners[1].address, "[::1]:0".parse().unwrap());

    // Groups in order of first appearance; overrides applied; the empty table changes nothing.
    let groups: Vec<(&str, Balance, usize)> =
        cfg.groups.iter().map(|g| (g.name.as_str(), g.balance, g.backends.len())).collect();
    assert_eq!(groups, vec![("api", Balance::RoundRobin, 3), ("default", Balance::LeastConn, 2)]);
    let api = &cfg.groups[0].backends;
    assert_eq!(
        (api[0].name.as_str(), api[0].address, api[0].weight),
        ("api.example:9000", v4([10, 0, 0, 7], 9000), 256)
    );
    assert_eq!((api[1].name.as_str(), api[1].backup, api[1].state), ("spare", true, AdminState::Drain));
    assert_eq!(api[2].address, v4([127, 0, 0, 1], 9000));
    let def = &cfg.groups[1].backends;
    assert_eq!((def[0].name.as_str(), def[0].address, def[0].weight), ("localhost:7000", v4([127, 0, 0, 1], 7000), 0));
    assert_eq!(def[1].state, AdminState::Maint);
    assert_eq!(cfg.memory_bound_bytes(), 500 * 2 * 65536);

    // congestion: the global one is every listener's and group's default; "system" clears it.
    let reno = Some(Congestion::probe("reno").unwrap());
    assert_eq!(cfg.congestion, reno);
    let l: Vec<_> = cfg.listeners.iter().map(|l| l.congestion).collect();
    assert_eq!(l, vec![reno, None, reno]);
    let g: Vec<_> = cfg.groups.iter().map(|g| g.congestion).collect();
    assert_eq!(g, vec![None, reno]);
}

#[test]
fn same_address_in_two_groups_is_fine() {
    let text = format!("{MIN}[[backend]]\naddress = \"127.0.0.1:8001\"\ngroup = \"other\"\n");
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.groups.len(), 2);
}

#[test]
fn admin_address() {
    let cases: &[(&str, Option<SocketAddr>)] = &[
        ("", Some(DEFAULT_ADMIN_ADDRESS)),
        ("[admin]\n", Some(DEFAULT_ADMIN_ADDRESS)),
        ("[admin]\naddress = \"\"\n", None),
        ("[admin]\naddress = \"0.0.0.0:9200\"\n", Some(v4([0, 0, 0, 0], 9200))),
        ("[admin]\naddress = \"localhost:9300\"\n", Some(v4([127, 0, 0, 1], 9300))),
    ];
    for (head, want) in cases {
        assert_eq!(parse(&format!("{head}{MIN}")).unwrap().admin, *want, "{head:?}");
    }
}

#[test]
fn a_cpu_this_process_may_not_use_is_refused() {
    let allowed = crate::sys::allowed_cpus().unwrap();
    let Some(cpu) = (0..=crate::sys::MAX_CPU).find(|c| !allowed.contains(c)) else {
        return; // every CPU a cpu_set_t can name is allowed: nothing to refuse
    };
    let e = parse(&format!("cpu_affinity = [{cpu}]\n{MIN}")).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{FILE}:1:16: cpu_affinity: CPU {cpu} is not one this process may run on")), "{e}");
}

#[test]
fn system_resolver_reads_localhost() {
    let text = MIN.replace("127.0.0.1:8001", "localhost:8001");
    let cfg = from_str(Path::new("lb.toml"), &text).unwrap();
    let b = &cfg.groups[0].backends[0];
    assert!(b.address.ip().is_loopback() && b.address.port() == 8001, "{b:?}");
    assert_eq!(b.name, "localhost:8001");
}

#[test]
fn a_listener_cap_above_the_machine_default_is_capped_not_refused() {
    // Unset, the global cap is this machine's (from its open-file limit); a file written on a
    // machine with a higher limit still loads here. Set, the global cap is the file's word.
    let listener = "[[listener]]\naddress = \"127.0.0.1:4000\"\n";
    let backend = "[[backend]]\naddress = \"127.0.0.1:8001\"\n";
    let cfg = parse(&format!("{listener}max_connections = 16777216\n{backend}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.listeners[0].max_connections, default_max_connections());
    let e = parse(&format!("max_connections = 100\n{listener}max_connections = 16777216\n{backend}")).unwrap_err();
    assert!(
        e.to_string().contains("listener[0].max_connections: 16777216 is above the global max_connections 100"),
        "{e}"
    );
}

#[test]
fn example_file_loads_with_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lb.toml");
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.source.as_ref().map(|o| o.path()), Some(path.as_path()));
    // The example shows every default; only listeners and backends are examples.
    assert_eq!(cfg.threads, DEFAULT_THREADS);
    assert_eq!(cfg.max_connections, default_max_connections());
    assert_eq!(cfg.balance, DEFAULT_BALANCE);
    assert_eq!(cfg.retries, DEFAULT_RETRIES);
    assert_eq!(cfg.buffer_bytes, DEFAULT_BUFFER_BYTES);
    assert_eq!(cfg.splice, DEFAULT_SPLICE);
    assert_eq!(cfg.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(cfg.timeouts, Timeouts::default());
    assert_eq!(cfg.health, HealthConfig::default());
    assert_eq!(cfg.admin, Some(DEFAULT_ADMIN_ADDRESS));
    assert_eq!(cfg.congestion, DEFAULT_CONGESTION);
    assert!(!cfg.listeners.is_empty() && !cfg.groups.is_empty());
    for l in &cfg.listeners {
        assert_eq!(l.max_connections, default_max_connections());
    }
    let b = &cfg.groups[0].backends[0];
    assert_eq!((b.weight, b.backup, b.state), (DEFAULT_WEIGHT, false, DEFAULT_STATE));
    assert_round_trip(&cfg);
}

#[test]
fn a_listener_whose_traffic_comes_back_to_it_is_refused() {
    let l = |addr: &str, group: &str| format!("[[listener]]\naddress = {addr:?}\ngroup = {group:?}\n");
    let b = |addr: &str, group: &str| format!("[[backend]]\naddress = {addr:?}\ngroup = {group:?}\n");
    let own = format!("{}{}{}", l("127.0.0.1:4101", "a"), b("127.0.0.1:8001", "a"), b("127.0.0.1:4101", "a"));
    let e = parse(&own).unwrap_err().to_string();
    assert!(
        e.contains("listener[0].address: listener0 (127.0.0.1:4101) forwards to backend \"127.0.0.1:4101\""),
        "{e}"
    );
    assert!(e.ends_with("which is this listener again: a forwarding loop"), "{e}");
    // A wildcard listener is reached on loopback too.
    let wild = format!("{}{}", l("0.0.0.0:4101", "a"), b("127.0.0.1:4101", "a"));
    assert!(parse(&wild).unwrap_err().to_string().contains("forwarding loop"));
    // A backend at the unspecified address is dialed on loopback; a mapped one is IPv4.
    for (listen, backend) in [
        ("127.0.0.1:4101", "0.0.0.0:4101"),
        ("[::1]:4101", "[::]:4101"),
        ("127.0.0.1:4101", "[::ffff:127.0.0.1]:4101"),
        ("[::ffff:127.0.0.1]:4101", "127.0.0.1:4101"),
    ] {
        let e = parse(&format!("{}{}", l(listen, "a"), b(backend, "a"))).unwrap_err().to_string();
        assert!(e.ends_with("a forwarding loop"), "{listen} <- {backend}: {e}");
    }
    parse(&format!("{}{}", l("127.0.0.2:4101", "a"), b("0.0.0.0:4101", "a"))).unwrap();
    // The same backend written another way is a duplicate.
    for other in ["0.0.0.0:8001", "[::ffff:127.0.0.1]:8001"] {
        let text = format!("{}{}{}", l("127.0.0.1:4101", "a"), b("127.0.0.1:8001", "a"), b(other, "a"));
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("backend[1].address: duplicates backend[0]"), "{other}: {e}");
    }
    // Two listeners forwarding to each other.
    let two = format!(
        "{}{}{}{}",
        l("127.0.0.1:4101", "a"),
        l("127.0.0.1:4102", "b"),
        b("127.0.0.1:4102", "a"),
        b("127.0.0.1:4101", "b")
    );
    let e = parse(&two).unwrap_err().to_string();
    assert!(e.contains("which is listener listener1 (127.0.0.1:4102) forwards to backend \"127.0.0.1:4101\""), "{e}");
    // A chain that ends at a real backend is fine: listener0 -> listener1 -> 8001.
    let chain = format!(
        "{}{}{}{}",
        l("127.0.0.1:4101", "a"),
        l("127.0.0.1:4102", "b"),
        b("127.0.0.1:4102", "a"),
        b("127.0.0.1:8001", "b")
    );
    parse(&chain).unwrap_or_else(|e| panic!("{e}"));
    // Port 0 listeners reach nothing.
    parse(&format!("{}{}", l("127.0.0.1:0", "a"), b("127.0.0.1:8001", "a"))).unwrap();
}

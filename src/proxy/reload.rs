//! SIGHUP: which keys of the re-read file reach the running proxy, decided in one place.
//!
//! Every key is either **live** (the reactors take it with the new configuration and use it for
//! new sessions, or at once for health checks) or **restart-only** (what it sizes or binds was
//! made at start-up: the listeners' sockets, the reactor threads, the buffer pools). A
//! restart-only key that the file changes keeps its running value and is named in one warning;
//! the others are applied.
//!
//! [`keep_restart_only`] destructures [`ProxyConfig`] and each nested struct without `..`, and
//! passes every field to [`Decide::live`] or [`Decide::restart`]: a field added to the
//! configuration does not compile until it is decided here (and an unused binding fails
//! clippy), so no key can be silently ignored by a reload.

use super::config::{BackendConfig, GroupConfig, HealthConfig, ListenerConfig, ProxyConfig, Timeouts};

/// Collects the restart-only keys a reload changes.
struct Decide {
    changed: Vec<String>,
}

impl Decide {
    /// A key the reactors apply from the new configuration.
    fn live<T>(&mut self, _new: &T) {}

    /// A restart-only key: if the file changed it, name it and keep the running value.
    fn restart<T: PartialEq + Clone>(&mut self, key: &str, new: &mut T, running: &T) {
        if new != running {
            self.changed.push(key.to_string());
            *new = running.clone();
        }
    }

    /// A restart-only key whose running value is restored by the caller.
    fn restart_if(&mut self, key: String, changed: bool) {
        if changed {
            self.changed.push(key);
        }
    }
}

/// Restores the running value of every restart-only key that `new` (the re-read file, command
/// line overrides applied) changes, and returns their file key paths, in file order. `Err` (the
/// reload is refused) when a running listener's group is not in the new file.
pub fn keep_restart_only(running: &ProxyConfig, new: &mut ProxyConfig) -> Result<Vec<String>, String> {
    // Listeners forward to their group by name; indices are those of the new file.
    let mut kept = Vec::with_capacity(running.listeners.len());
    for (i, l) in running.listeners.iter().enumerate() {
        let group = &running.groups[l.group].name;
        let Some(g) = new.groups.iter().position(|g| g.name == *group) else {
            // Named where the new file writes that listener's group (its end, if it does not).
            let key = format!("listener[{i}].group");
            let key = new.source.as_ref().map_or(key.clone(), |o| o.name(&key));
            return Err(format!(
                "{key}: listener {} forwards to group {group}, which the new file does not define",
                l.name
            ));
        };
        kept.push(ListenerConfig { group: g, ..l.clone() });
    }
    let group_names: Vec<String> = new.groups.iter().map(|g| g.name.clone()).collect();
    let mut d = Decide { changed: Vec::new() };
    let ProxyConfig {
        source,
        threads,
        cpu_affinity,
        max_connections,
        balance,
        retries,
        buffer_bytes,
        pipe_bytes,
        splice,
        smart_connect,
        congestion,
        overrides,
        drain_timeout,
        timeouts,
        health,
        admin,
        reuse_port,
        listeners,
        groups,
    } = new;
    // The same file.
    d.live(source);
    // A listener's cap defaults to the global one: a change it inherits is the global key's.
    let file_cap = *max_connections;
    let inherits_cap = |file: usize, run: usize| file == file_cap && run == running.max_connections;
    d.restart("threads", threads, &running.threads);
    d.restart("cpu_affinity", cpu_affinity, &running.cpu_affinity);
    // Sizes the reactors' connection tables (and with them their timers) and buffer pools.
    d.restart("max_connections", max_connections, &running.max_connections);
    d.live(balance); // resolved into each group's `balance`
    d.live(retries);
    // The pools' rings and pipes, and the copy/splice choice of sessions that hold them, were
    // made for the running values.
    d.restart("buffer_size", buffer_bytes, &running.buffer_bytes);
    d.restart("pipe_size", pipe_bytes, &running.pipe_bytes);
    d.restart("splice", splice, &running.splice);
    d.live(smart_connect);
    // Resolved into each group's (live) and each listener's (restart, below) `congestion`.
    d.live(congestion);
    d.live(overrides); // the running ones, applied to the file before this
    d.live(drain_timeout); // read by the coordinator at the next SIGTERM
    let Timeouts { connect, client_idle, server_idle, client_fin, server_fin, max_lifetime } = timeouts;
    for t in [connect, client_idle, server_idle, client_fin, server_fin] {
        d.live(t);
    }
    d.live(max_lifetime);
    let HealthConfig { enabled, interval, timeout, rise, fall, jitter_pct, passive_fall } = health;
    d.live(enabled);
    d.live(interval);
    d.live(timeout);
    for n in [rise, fall, jitter_pct, passive_fall] {
        d.live(n);
    }
    d.restart("admin.address", admin, &running.admin);
    // Decides how the listeners were bound.
    d.restart("reuse_port", reuse_port, &running.reuse_port);
    // Bound sockets: every listener key is restart-only.
    d.restart_if("listener".to_string(), listeners.len() != running.listeners.len());
    for (i, (l, r)) in listeners.iter().zip(&running.listeners).enumerate() {
        let ListenerConfig { name, address, group, max_connections, congestion } = l;
        d.restart_if(format!("listener[{i}].name"), *name != r.name);
        d.restart_if(format!("listener[{i}].address"), *address != r.address);
        d.restart_if(format!("listener[{i}].group"), group_names[*group] != running.groups[r.group].name);
        d.restart_if(
            format!("listener[{i}].max_connections"),
            *max_connections != r.max_connections && !inherits_cap(*max_connections, r.max_connections),
        );
        d.restart_if(format!("listener[{i}].congestion"), *congestion != r.congestion);
    }
    *listeners = kept;
    for g in groups.iter() {
        let GroupConfig { name, balance, backends, congestion } = g;
        d.live(name);
        d.live(balance);
        d.live(congestion); // set on each new backend socket
        for b in backends {
            let BackendConfig { name, address, weight, backup, state } = b;
            d.live(name);
            d.live(address);
            d.live(weight);
            d.live(backup);
            d.live(state);
        }
    }
    Ok(d.changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
threads = 2
cpu_affinity = "off"
max_connections = 100
balance = "random"
retries = 1
buffer_size = "16KiB"
pipe_size = "64KiB"
splice = "off"
smart_connect = true
drain_timeout = "10s"

[timeouts]
connect = "1s"

[health]
enabled = false
interval = "2s"

[admin]
address = "127.0.0.1:9100"

[[listener]]
name = "main"
address = "127.0.0.1:4000"
max_connections = 50

[[backend]]
name = "a"
address = "127.0.0.1:8001"
"#;

    fn cfg(text: &str) -> ProxyConfig {
        super::super::config::from_str(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn decide(from: &str, to: &str) -> (Vec<String>, ProxyConfig, ProxyConfig) {
        assert!(BASE.contains(from), "{from}");
        let running = cfg(BASE);
        let mut new = cfg(&BASE.replacen(from, to, 1));
        let changed = keep_restart_only(&running, &mut new).unwrap();
        (changed, running, new)
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let (changed, running, new) = decide("threads = 2", "threads = 2");
        assert_eq!(changed, Vec::<String>::new());
        assert_eq!(new, running);
    }

    #[test]
    fn each_restart_only_key_is_named_alone_and_keeps_its_running_value() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("threads = 2", "threads = 3", &["threads"]),
            ("cpu_affinity = \"off\"", "cpu_affinity = \"auto\"", &["cpu_affinity"]),
            ("max_connections = 100", "max_connections = 99", &["max_connections"]),
            ("buffer_size = \"16KiB\"", "buffer_size = \"32KiB\"", &["buffer_size"]),
            ("pipe_size = \"64KiB\"", "pipe_size = \"128KiB\"", &["pipe_size"]),
            ("splice = \"off\"", "splice = \"auto\"", &["splice"]),
            ("address = \"127.0.0.1:9100\"", "address = \"127.0.0.1:9101\"", &["admin.address"]),
            ("name = \"main\"", "name = \"front\"", &["listener[0].name"]),
            ("address = \"127.0.0.1:4000\"", "address = \"127.0.0.1:4001\"", &["listener[0].address"]),
            ("max_connections = 50", "max_connections = 40", &["listener[0].max_connections"]),
            ("splice = \"off\"\nsmart", "splice = \"on\"\nsmart", &["splice"]),
            (
                "buffer_size = \"16KiB\"\npipe_size = \"64KiB\"",
                "buffer_size = \"8KiB\"\npipe_size = \"1MiB\"",
                &["buffer_size", "pipe_size"],
            ),
            (
                "[[backend]]",
                "[[listener]]\nname = \"second\"\naddress = \"127.0.0.1:4002\"\n[[backend]]",
                &["listener"],
            ),
        ];
        for (from, to, want) in cases {
            let (changed, running, new) = decide(from, to);
            assert_eq!(changed, *want, "{to}");
            assert_eq!(new, running, "{to}: the running values are kept");
        }
    }

    #[test]
    fn a_listener_cap_inherited_from_the_global_one_is_not_named_twice() {
        let inherit =
            BASE.replace("address = \"127.0.0.1:4000\"\nmax_connections = 50", "address = \"127.0.0.1:4000\"");
        let running = cfg(&inherit);
        assert_eq!(running.listeners[0].max_connections, 100);
        let mut new = cfg(&inherit.replace("max_connections = 100", "max_connections = 70"));
        assert_eq!(keep_restart_only(&running, &mut new).unwrap(), vec!["max_connections".to_string()]);
        assert_eq!(new, running);
        // Written out, the same value is still a change of the listener's own key.
        let mut new =
            cfg(&inherit.replace("address = \"127.0.0.1:4000\"", "address = \"127.0.0.1:4000\"\nmax_connections = 70"));
        assert_eq!(keep_restart_only(&running, &mut new).unwrap(), vec!["listener[0].max_connections".to_string()]);
    }

    #[test]
    fn live_keys_are_applied_without_a_warning() {
        let cases: &[(&str, &str)] = &[
            ("balance = \"random\"", "balance = \"least_conn\""),
            ("retries = 1", "retries = 3"),
            ("smart_connect = true", "smart_connect = false"),
            ("drain_timeout = \"10s\"", "drain_timeout = \"3s\""),
            ("connect = \"1s\"", "connect = \"2s\"\nclient_idle = \"7s\""),
            ("enabled = false", "enabled = true\nrise = 3"),
            ("interval = \"2s\"", "interval = \"5s\""),
            ("address = \"127.0.0.1:8001\"", "address = \"127.0.0.1:8002\"\nweight = 5\nstate = \"drain\""),
            ("name = \"a\"", "name = \"b\"\nbackup = true"),
        ];
        for (from, to) in cases {
            let (changed, running, new) = decide(from, to);
            assert_eq!(changed, Vec::<String>::new(), "{to}");
            assert_ne!(new, running, "{to}: applied");
            assert_eq!(new, cfg(&BASE.replacen(from, to, 1)), "{to}: applied as written");
        }
    }

    #[test]
    fn a_listener_keeps_its_group_by_name_and_a_missing_group_refuses_the_reload() {
        let grouped = BASE.replace("max_connections = 50", "max_connections = 50\ngroup = \"web\"").replace(
            "[[backend]]\nname = \"a\"",
            "[[backend]]\nname = \"z\"\naddress = \"127.0.0.1:8009\"\ngroup = \"other\"\n[[backend]]\ngroup = \"web\"\nname = \"a\"",
        );
        let running = cfg(&grouped);
        assert_eq!(running.groups[running.listeners[0].group].name, "web");
        // The new file lists "web" first: the listener follows it to index 0.
        let mut new =
            cfg(&grouped.replace("group = \"other\"", "group = \"web\"").replace("name = \"z\"", "name = \"y\""));
        assert_eq!(keep_restart_only(&running, &mut new).unwrap(), Vec::<String>::new());
        assert_eq!(new.groups[new.listeners[0].group].name, "web");
        // The listener names another group in the new file: a restart-only change.
        let mut new = cfg(&grouped.replacen("group = \"web\"", "group = \"other\"", 1));
        assert_eq!(keep_restart_only(&running, &mut new).unwrap(), vec!["listener[0].group".to_string()]);
        assert_eq!(new.groups[new.listeners[0].group].name, "web");
        // No group "web" at all: refused.
        let mut new = cfg(BASE);
        let err = keep_restart_only(&running, &mut new).unwrap_err();
        assert!(err.contains("listener main") && err.contains("group web"), "{err}");
        // Named where the new file would write that listener's group: BASE has none, so its end.
        let end = BASE.lines().count() + 1;
        assert!(err.starts_with(&format!("t.toml:{end}:1: listener[0].group: ")), "{err}");
    }
}

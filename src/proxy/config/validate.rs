//! The file as read → a validated [`ProxyConfig`]: the named defaults applied, anything the proxy
//! could not run with refused, each error one line naming file, line, column and key path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::address::{parse_address, Resolver};
use super::defaults::*;
use super::emit::{bare_or_quoted, format_bytes};
use super::file::*;
use super::types::*;
use crate::conffile::{self, ConfigError};
use crate::engine::affinity::CpuAffinity;
use crate::net::tune::Congestion;
use crate::proxy::lb::Balance;
use crate::units;

/// Where errors point.
pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Cx<'_> {
    fn err(&self, key: impl Into<String>, span: Option<Range<usize>>, msg: impl Into<String>) -> ConfigError {
        let msg: String = msg.into();
        let key: String = key.into();
        // Without a span (a table that is missing, a key left at its default): where the key is
        // written after all, else the end of the file, where the missing table would go.
        let pos = span.map(|s| s.start).unwrap_or_else(|| {
            let spans = conffile::Spans::of(self.text);
            spans.value_of(&key).map_or(spans.end(), |r| r.start)
        });
        let mut e = ConfigError::key(self.path, key, msg.replace(['\n', '\r'], " "));
        e.at = Some(conffile::line_col(self.text, pos));
        e
    }
}

/// Value and span of an optional key.
fn split<T>(v: Option<Spanned<T>>) -> (Option<T>, Option<Range<usize>>) {
    match v {
        Some(s) => {
            let span = s.span();
            (Some(s.into_inner()), Some(span))
        }
        None => (None, None),
    }
}

fn duration(cx: &Cx<'_>, key: &str, v: Option<Spanned<Text>>, default: Duration) -> Result<Duration, ConfigError> {
    let (v, span) = split(v);
    match v {
        None => Ok(default),
        Some(Text(s)) => units::parse_duration(&s).map_err(|e| cx.err(key, span, e)),
    }
}

/// A size key (`"16KiB"` or bytes) within `min..=max`.
fn size_key(
    cx: &Cx<'_>,
    key: &str,
    v: Option<Spanned<Text>>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let (v, span) = split(v);
    let Some(Text(s)) = v else { return Ok(default) };
    let n = units::parse_bytes(&s).map_err(|e| cx.err(key, span.clone(), e))?;
    if n < min as u64 || n > max as u64 {
        let msg = format!(
            "{s:?} is outside {}..={} (the default is {:?})",
            format_bytes(min),
            format_bytes(max),
            format_bytes(default)
        );
        return Err(cx.err(key, span, msg));
    }
    Ok(n as usize)
}

/// A `congestion` key: "system" (the kernel's default) or an algorithm this kernel has and
/// this user may set.
fn congestion_key(
    cx: &Cx<'_>,
    key: &str,
    v: Option<Spanned<String>>,
    default: Option<Congestion>,
) -> Result<Option<Congestion>, ConfigError> {
    let (v, span) = split(v);
    match v.as_deref().map(str::trim) {
        None => Ok(default),
        Some(SYSTEM_CONGESTION) => Ok(None),
        Some(name) => Congestion::probe(name).map(Some).map_err(|e| cx.err(key, span, e)),
    }
}

/// `cpu_affinity`: "auto", "off", or a list of CPUs this process may run on.
fn cpu_affinity_key(cx: &Cx<'_>, v: Option<Spanned<toml::Value>>) -> Result<CpuAffinity, ConfigError> {
    const KEY: &str = "cpu_affinity";
    let (v, span) = split(v);
    match v {
        None => Ok(CpuAffinity::default()),
        Some(toml::Value::String(s)) => CpuAffinity::parse_word(&s).map_err(|e| cx.err(KEY, span, e)),
        Some(toml::Value::Array(items)) => {
            let mut cpus = Vec::with_capacity(items.len());
            for item in &items {
                match item.as_integer() {
                    Some(n) if (0..=crate::sys::MAX_CPU as i64).contains(&n) => cpus.push(n as usize),
                    _ => {
                        let msg = format!("{item} is not a CPU number (0 to {})", crate::sys::MAX_CPU);
                        return Err(cx.err(KEY, span, msg));
                    }
                }
            }
            let allowed =
                crate::sys::allowed_cpus().map_err(|e| cx.err(KEY, span.clone(), format!("sched_getaffinity: {e}")))?;
            CpuAffinity::from_list(cpus, &allowed).map_err(|e| cx.err(KEY, span, e))
        }
        Some(other) => {
            let msg = format!("{other} is not \"auto\", \"off\" or a list of CPU numbers such as [0, 1]");
            Err(cx.err(KEY, span, msg))
        }
    }
}

fn nonzero_duration(
    cx: &Cx<'_>,
    key: &str,
    v: Option<Spanned<Text>>,
    default: Duration,
) -> Result<(Duration, Option<Range<usize>>), ConfigError> {
    let span = v.as_ref().map(|s| s.span());
    let d = duration(cx, key, v, default)?;
    if d.is_zero() {
        return Err(cx.err(key, span, "must be > 0 (e.g. \"3s\")"));
    }
    Ok((d, span))
}

pub(super) fn validate(file: FileConfig, cx: &Cx<'_>, resolve: Resolver<'_>) -> Result<ProxyConfig, ConfigError> {
    let (threads, span) = split(file.threads);
    let threads = threads.unwrap_or(DEFAULT_THREADS);
    // The same range, and the same words, as --threads.
    if let Err(e) = units::in_range(threads, 0, MAX_THREADS) {
        return Err(cx.err("threads", span, format!("{e} (0 = one per core)")));
    }

    let cpu_affinity = cpu_affinity_key(cx, file.cpu_affinity)?;

    let (max_connections, span) = split(file.max_connections);
    let max_connections = max_connections.unwrap_or_else(default_max_connections);
    if max_connections == 0 {
        return Err(cx.err("max_connections", span, "must be >= 1 (it caps client sessions)"));
    }
    if max_connections > MAX_CONNECTIONS {
        let msg = format!("{max_connections} is out of range 1..={MAX_CONNECTIONS}");
        return Err(cx.err("max_connections", span, msg));
    }

    let (balance, span) = split(file.balance);
    let balance = match balance {
        None => DEFAULT_BALANCE,
        Some(s) => s.parse::<Balance>().map_err(|e| cx.err("balance", span, e.to_string()))?,
    };

    let (retries, span) = split(file.retries);
    let retries = retries.unwrap_or(DEFAULT_RETRIES);
    if retries > MAX_RETRIES {
        return Err(cx.err("retries", span, format!("{retries} is out of range 0..={MAX_RETRIES}")));
    }

    let buffer_bytes =
        size_key(cx, "buffer_size", file.buffer_size, DEFAULT_BUFFER_BYTES, MIN_BUFFER_BYTES, MAX_BUFFER_BYTES)?;
    let pipe_bytes = size_key(cx, "pipe_size", file.pipe_size, DEFAULT_PIPE_BYTES, MIN_PIPE_BYTES, MAX_PIPE_BYTES)?;

    let (splice, span) = split(file.splice);
    let splice = match splice {
        None => DEFAULT_SPLICE,
        Some(s) => s.parse::<SpliceMode>().map_err(|e| cx.err("splice", span, e.to_string()))?,
    };

    let drain_timeout = duration(cx, "drain_timeout", file.drain_timeout, DEFAULT_DRAIN_TIMEOUT)?;

    let timeouts = validate_timeouts(cx, file.timeouts)?;
    let health = validate_health(cx, file.health)?;

    let admin = match file.admin.and_then(|a| a.address) {
        None => Some(DEFAULT_ADMIN_ADDRESS),
        Some(s) if s.get_ref().trim().is_empty() => None,
        Some(s) => {
            let span = s.span();
            Some(parse_address(s.get_ref(), resolve).map_err(|e| cx.err("admin.address", Some(span), e))?)
        }
    };

    let congestion = congestion_key(cx, "congestion", file.congestion, DEFAULT_CONGESTION)?;

    let groups = validate_backends(cx, file.backend, file.groups, balance, congestion, resolve)?;
    let listeners = validate_listeners(cx, file.listener, &groups, max_connections, congestion, admin, resolve)?;

    Ok(ProxyConfig {
        source: Some(cx.path.to_path_buf()),
        threads,
        cpu_affinity,
        max_connections,
        balance,
        retries,
        buffer_bytes,
        pipe_bytes,
        splice,
        smart_connect: file.smart_connect.unwrap_or(DEFAULT_SMART_CONNECT),
        reuse_port: file.reuse_port.unwrap_or(DEFAULT_REUSE_PORT),
        congestion,
        overrides: Overrides::default(),
        drain_timeout,
        timeouts,
        health,
        admin,
        listeners,
        groups,
    })
}

/// `[[backend]]` entries gathered into groups (in order of first appearance), with the
/// `[groups.NAME]` overrides applied; `balance` and `congestion` are the global defaults.
fn validate_backends(
    cx: &Cx<'_>,
    backends: Vec<BackendFile>,
    overrides: BTreeMap<String, Spanned<GroupFile>>,
    balance: Balance,
    congestion: Option<Congestion>,
    resolve: Resolver<'_>,
) -> Result<Vec<GroupConfig>, ConfigError> {
    if backends.is_empty() {
        return Err(cx.err("backend", None, "no [[backend]] table (add one with address = \"host:port\")"));
    }
    let mut groups: Vec<GroupConfig> = Vec::new();
    // Per group, the `backend[i]` index of each of its backends, for messages, and where the
    // first one's weight (else address) was written.
    let mut origin: Vec<Vec<usize>> = Vec::new();
    let mut first_weight_at: Vec<Range<usize>> = Vec::new();
    for (i, b) in backends.into_iter().enumerate() {
        let key = |k: &str| format!("backend[{i}].{k}");
        let (group, span) = split(b.group);
        let group = group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        if group.trim().is_empty() {
            return Err(cx.err(key("group"), span, "empty group name (omit the key for \"default\")"));
        }
        let g = match groups.iter().position(|g| g.name == group) {
            Some(g) => g,
            None => {
                groups.push(GroupConfig { name: group.clone(), balance, backends: Vec::new(), congestion });
                origin.push(Vec::new());
                let at = b.weight.as_ref().map_or_else(|| b.address.span(), |w| w.span());
                first_weight_at.push(at);
                groups.len() - 1
            }
        };

        let span = b.address.span();
        let text = b.address.into_inner();
        let address = parse_address(&text, resolve).map_err(|e| cx.err(key("address"), Some(span.clone()), e))?;
        if address.port() == 0 {
            return Err(cx.err(
                key("address"),
                Some(span),
                format!("{text:?} has port 0, which cannot be connected to"),
            ));
        }
        if let Some(j) = groups[g].backends.iter().position(|x| x.address == address) {
            let msg = format!(
                "duplicates backend[{}] in group {group:?} ({address}); remove one, or put them in different groups",
                origin[g][j]
            );
            return Err(cx.err(key("address"), Some(span), msg));
        }

        let (name, span) = split(b.name);
        let name = name.unwrap_or_else(|| text.trim().to_string());
        if name.trim().is_empty() {
            return Err(cx.err(key("name"), span, "empty name (omit the key to use the address)"));
        }
        if let Some(j) = groups[g].backends.iter().position(|x| x.name == name) {
            let msg =
                format!("name {name:?} duplicates backend[{}] in group {group:?} (names must differ)", origin[g][j]);
            return Err(cx.err(key("name"), span, msg));
        }

        let (weight, span) = split(b.weight);
        let weight = weight.unwrap_or(DEFAULT_WEIGHT);
        if weight > MAX_WEIGHT {
            let msg = format!("{weight} is above the maximum {MAX_WEIGHT} (weights are relative; scale them down)");
            return Err(cx.err(key("weight"), span, msg));
        }

        let (state, span) = split(b.state);
        let state = match state {
            None => DEFAULT_STATE,
            Some(s) => s.parse::<AdminState>().map_err(|e| cx.err(key("state"), span, e.to_string()))?,
        };

        groups[g].backends.push(BackendConfig { name, address, weight, backup: b.backup.unwrap_or(false), state });
        origin[g].push(i);
    }
    for (g, group) in groups.iter().enumerate() {
        if group.backends.iter().all(|b| b.weight == 0) {
            let first = origin[g][0];
            let msg = format!(
                "every backend in group {:?} has weight 0, so none can be picked (give at least one a weight >= 1)",
                group.name
            );
            return Err(cx.err(format!("backend[{first}].weight"), Some(first_weight_at[g].clone()), msg));
        }
    }

    // Per-group overrides.
    for (name, g) in overrides {
        let span = g.span();
        let gkey = format!("groups.{}", bare_or_quoted(&name));
        let Some(group) = groups.iter_mut().find(|x| x.name == name) else {
            let msg =
                format!("no backend uses group {name:?} (set group = {name:?} on a backend, or remove the table)");
            return Err(cx.err(gkey, Some(span), msg));
        };
        let g = g.into_inner();
        let (b, span) = split(g.balance);
        if let Some(b) = b {
            group.balance = b.parse::<Balance>().map_err(|e| cx.err(format!("{gkey}.balance"), span, e.to_string()))?;
        }
        group.congestion = congestion_key(cx, &format!("{gkey}.congestion"), g.congestion, congestion)?;
    }
    Ok(groups)
}

/// `[[listener]]` entries; `groups` are the validated backend groups.
fn validate_listeners(
    cx: &Cx<'_>,
    listeners_file: Vec<ListenerFile>,
    groups: &[GroupConfig],
    max_connections: usize,
    congestion: Option<Congestion>,
    admin: Option<SocketAddr>,
    resolve: Resolver<'_>,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    // Listeners.
    if listeners_file.is_empty() {
        return Err(cx.err("listener", None, "no [[listener]] table (add one with address = \"127.0.0.1:4000\")"));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(listeners_file.len());
    for (i, l) in listeners_file.into_iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");

        let (name, span) = split(l.name);
        let name = name.unwrap_or_else(|| format!("{DEFAULT_LISTENER_NAME_PREFIX}{i}"));
        if name.trim().is_empty() {
            return Err(cx.err(key("name"), span, "empty name (omit the key for the default)"));
        }
        if let Some(j) = listeners.iter().position(|x| x.name == name) {
            return Err(cx.err(
                key("name"),
                span,
                format!("name {name:?} duplicates listener[{j}] (names must differ)"),
            ));
        }

        let span = l.address.span();
        let text = l.address.into_inner();
        let address = parse_address(&text, resolve).map_err(|e| cx.err(key("address"), Some(span.clone()), e))?;
        // Port 0 asks the kernel for a free port: two of them never collide.
        if address.port() != 0 {
            if let Some(j) = listeners.iter().position(|x| x.address == address) {
                let msg = format!("{address} duplicates listener[{j}] (each listener needs its own address)");
                return Err(cx.err(key("address"), Some(span), msg));
            }
            if admin == Some(address) {
                let msg = format!("{address} is also the admin address (move one of them)");
                return Err(cx.err(key("address"), Some(span), msg));
            }
        }

        let (group, span) = split(l.group);
        let group = group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        let Some(g) = groups.iter().position(|x| x.name == group) else {
            let known: Vec<String> = groups.iter().map(|g| format!("{:?}", g.name)).collect();
            let msg = format!("no backend is in group {group:?} (groups with backends: {})", known.join(", "));
            return Err(cx.err(key("group"), span, msg));
        };

        let (max, span) = split(l.max_connections);
        let max = max.unwrap_or(max_connections);
        if max == 0 {
            return Err(cx.err(key("max_connections"), span, "must be >= 1 (omit it to use the global cap)"));
        }
        if max > max_connections {
            let msg = format!(
                "{max} is above the global max_connections {max_connections}, which would cap it anyway (lower it, or raise the global one)"
            );
            return Err(cx.err(key("max_connections"), span, msg));
        }

        let congestion = congestion_key(cx, &key("congestion"), l.congestion, congestion)?;

        listeners.push(ListenerConfig { name, address, group: g, max_connections: max, congestion });
    }
    Ok(listeners)
}

fn validate_timeouts(cx: &Cx<'_>, t: Option<TimeoutsFile>) -> Result<Timeouts, ConfigError> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    let max_lifetime = duration(cx, "timeouts.max_lifetime", t.max_lifetime, Duration::ZERO)?;
    Ok(Timeouts {
        connect: nonzero_duration(cx, "timeouts.connect", t.connect, DEFAULT_CONNECT_TIMEOUT)?.0,
        client_idle: nonzero_duration(cx, "timeouts.client_idle", t.client_idle, DEFAULT_CLIENT_IDLE_TIMEOUT)?.0,
        server_idle: nonzero_duration(cx, "timeouts.server_idle", t.server_idle, DEFAULT_SERVER_IDLE_TIMEOUT)?.0,
        client_fin: nonzero_duration(cx, "timeouts.client_fin", t.client_fin, DEFAULT_CLIENT_FIN_TIMEOUT)?.0,
        server_fin: nonzero_duration(cx, "timeouts.server_fin", t.server_fin, DEFAULT_SERVER_FIN_TIMEOUT)?.0,
        max_lifetime: (!max_lifetime.is_zero()).then_some(max_lifetime),
    })
}

fn validate_health(cx: &Cx<'_>, h: Option<HealthFile>) -> Result<HealthConfig, ConfigError> {
    let Some(h) = h else {
        return Ok(HealthConfig::default());
    };
    let (interval, _) = nonzero_duration(cx, "health.interval", h.interval, DEFAULT_HEALTH_INTERVAL)?;
    let (timeout, span) = nonzero_duration(cx, "health.timeout", h.timeout, DEFAULT_HEALTH_TIMEOUT)?;
    if timeout > interval {
        let msg = format!(
            "{} is longer than health.interval {}, so checks would overlap (make it <= the interval)",
            units::go_duration(timeout),
            units::go_duration(interval)
        );
        return Err(cx.err("health.timeout", span, msg));
    }
    let count = |key: &str, v: Option<Spanned<u32>>, default: u32, min: u32| {
        let (v, span) = split(v);
        match v.unwrap_or(default) {
            0 if min > 0 => Err(cx.err(key, span, "must be >= 1 (consecutive checks before a state change)")),
            n if n > MAX_HEALTH_COUNT => {
                Err(cx.err(key, span, format!("{n} is out of range {min}..={MAX_HEALTH_COUNT}")))
            }
            n => Ok(n),
        }
    };
    let rise = count("health.rise", h.rise, DEFAULT_HEALTH_RISE, 1)?;
    let fall = count("health.fall", h.fall, DEFAULT_HEALTH_FALL, 1)?;
    let passive_fall = count("health.passive_fall", h.passive_fall, DEFAULT_PASSIVE_FALL, 0)?;
    let (jitter_pct, span) = split(h.jitter_pct);
    let jitter_pct = jitter_pct.unwrap_or(DEFAULT_HEALTH_JITTER_PCT);
    if jitter_pct > MAX_HEALTH_JITTER_PCT {
        let msg = format!("{jitter_pct} is above the maximum {MAX_HEALTH_JITTER_PCT} (percent of the interval)");
        return Err(cx.err("health.jitter_pct", span, msg));
    }
    Ok(HealthConfig {
        enabled: h.enabled.unwrap_or(DEFAULT_HEALTH_ENABLED),
        interval,
        timeout,
        rise,
        fall,
        jitter_pct,
        passive_fall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::fixtures::*;
    use std::path::PathBuf;

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
            (
                format!("{listener}{backend}[[backend]]\nweight = 2\n"),
                "bad.toml:5:1: backend[1]: missing field `address`",
            ),
            (format!("backend = [{{ weight = 2 }}]\n{listener}"), "bad.toml:1:12: backend[0]: missing field `address`"),
            // A group (a table of tables, no required key) still names its path.
            (
                format!("{listener}{backend}[groups.web]\nbalance = 3\n"),
                "bad.toml:6:11: groups.web.balance: invalid type",
            ),
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
            source: Some(PathBuf::from(FILE)),
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
        assert_eq!(
            (def[0].name.as_str(), def[0].address, def[0].weight),
            ("localhost:7000", v4([127, 0, 0, 1], 7000), 0)
        );
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
        assert!(
            e.starts_with(&format!("{FILE}:1:16: cpu_affinity: CPU {cpu} is not one this process may run on")),
            "{e}"
        );
    }
}

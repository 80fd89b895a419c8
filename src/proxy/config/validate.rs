//! The file as read → a validated [`ProxyConfig`]: the named defaults applied, anything the proxy
//! could not run with refused, each error one line naming file, line, column and key path. The
//! top-level keys, `[timeouts]` and `[health]` are checked here; listeners, backends and groups
//! in `topology`.

use std::path::Path;
use std::time::Duration;

use super::defaults::*;
use super::file::*;
use super::topology::{validate_backends, validate_listeners, GlobalCap};
use super::types::*;
use crate::conffile::{self, ConfigError};
use crate::config::{self, ByteSize, Dur, Resolver};
use crate::engine::affinity::CpuAffinity;
use crate::net::tune::Congestion;
use crate::units;

/// Where errors point.
pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Cx<'_> {
    /// An error about `key`, placed where the key's value is written; for a key not written
    /// (a table that is missing, a key left at its default), at the end of the file, where the
    /// missing key would go.
    pub(super) fn err(&self, key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        self.origin().err(key, msg)
    }

    /// The file and its text, kept with the config to place errors found later.
    pub(super) fn origin(&self) -> conffile::Origin {
        conffile::Origin::new(self.path, self.text)
    }
}

/// A size key within `min..=max`.
fn size_key(
    cx: &Cx<'_>,
    key: &str,
    v: Option<ByteSize>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let Some(ByteSize(n)) = v else { return Ok(default) };
    if n < min as u64 || n > max as u64 {
        let text = |n: usize| config::bytes_text(n as u64);
        let msg = format!("{n} is outside {}..={} (the default is {:?})", text(min), text(max), text(default));
        return Err(cx.err(key, msg));
    }
    Ok(n as usize)
}

/// A `congestion` key: "system" (the kernel's default) or an algorithm this kernel has and
/// this user may set.
pub(super) fn congestion_key(
    cx: &Cx<'_>,
    key: &str,
    v: Option<String>,
    default: Option<Congestion>,
) -> Result<Option<Congestion>, ConfigError> {
    match v {
        None => Ok(default),
        Some(name) => config::parse_congestion(&name).map_err(|e| cx.err(key, e)),
    }
}

/// `cpu_affinity`: "auto", "off", or a list of CPUs this process may run on.
fn cpu_affinity_key(cx: &Cx<'_>, v: Option<toml::Value>) -> Result<CpuAffinity, ConfigError> {
    const KEY: &str = "cpu_affinity";
    match v {
        None => Ok(CpuAffinity::default()),
        Some(toml::Value::String(s)) => CpuAffinity::parse_word(&s).map_err(|e| cx.err(KEY, e)),
        Some(toml::Value::Array(items)) => {
            let mut cpus = Vec::with_capacity(items.len());
            for item in &items {
                match item.as_integer() {
                    Some(n) if (0..=crate::sys::MAX_CPU as i64).contains(&n) => cpus.push(n as usize),
                    _ => {
                        let msg = format!("{item} is not a CPU number (0 to {})", crate::sys::MAX_CPU);
                        return Err(cx.err(KEY, msg));
                    }
                }
            }
            let allowed = crate::sys::allowed_cpus().map_err(|e| cx.err(KEY, format!("sched_getaffinity: {e}")))?;
            CpuAffinity::from_list(cpus, &allowed).map_err(|e| cx.err(KEY, e))
        }
        Some(other) => {
            let msg = format!("{other} is not \"auto\", \"off\" or a list of CPU numbers such as [0, 1]");
            Err(cx.err(KEY, msg))
        }
    }
}

/// A duration key that must be above 0.
fn nonzero_duration(cx: &Cx<'_>, key: &str, v: Option<Dur>, default: Duration) -> Result<Duration, ConfigError> {
    match v.map_or(default, |d| d.0) {
        Duration::ZERO => Err(cx.err(key, "must be > 0 (e.g. \"3s\")")),
        d => Ok(d),
    }
}

pub(super) fn validate(file: FileConfig, cx: &Cx<'_>, resolve: Resolver<'_>) -> Result<ProxyConfig, ConfigError> {
    let threads = file.threads.unwrap_or(DEFAULT_THREADS);
    // The same range, and the same words, as --threads.
    if let Err(e) = units::in_range(threads, 0, MAX_THREADS) {
        return Err(cx.err("threads", format!("{e} (0 = one per core)")));
    }

    let cpu_affinity = cpu_affinity_key(cx, file.cpu_affinity)?;

    let max_connections = file.max_connections.unwrap_or_else(default_max_connections);
    if max_connections == 0 {
        return Err(cx.err("max_connections", "must be >= 1 (it caps client sessions)"));
    }
    if max_connections > MAX_CONNECTIONS {
        return Err(cx.err("max_connections", format!("{max_connections} is out of range 1..={MAX_CONNECTIONS}")));
    }

    let balance = file.balance.unwrap_or(DEFAULT_BALANCE);

    let retries = file.retries.unwrap_or(DEFAULT_RETRIES);
    if retries > MAX_RETRIES {
        return Err(cx.err("retries", format!("{retries} is out of range 0..={MAX_RETRIES}")));
    }

    let buffer_bytes =
        size_key(cx, "buffer_size", file.buffer_size, DEFAULT_BUFFER_BYTES, MIN_BUFFER_BYTES, MAX_BUFFER_BYTES)?;
    let pipe_bytes = size_key(cx, "pipe_size", file.pipe_size, DEFAULT_PIPE_BYTES, MIN_PIPE_BYTES, MAX_PIPE_BYTES)?;
    let drain_timeout = file.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.0);
    let timeouts = validate_timeouts(cx, file.timeouts)?;
    let health = validate_health(cx, file.health)?;

    let admin = match file.admin.and_then(|a| a.address) {
        None => Some(DEFAULT_ADMIN_ADDRESS),
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(config::parse_address(&s, resolve).map_err(|e| cx.err("admin.address", e))?),
    };

    let congestion = congestion_key(cx, "congestion", file.congestion, DEFAULT_CONGESTION)?;

    let groups = validate_backends(cx, file.backend, file.groups, balance, congestion, resolve)?;
    let cap = GlobalCap { value: max_connections, set: file.max_connections.is_some() };
    let listeners = validate_listeners(cx, file.listener, &groups, cap, congestion, admin, resolve)?;

    Ok(ProxyConfig {
        source: Some(cx.origin()),
        threads,
        cpu_affinity,
        max_connections,
        balance,
        retries,
        buffer_bytes,
        pipe_bytes,
        splice: file.splice.unwrap_or(DEFAULT_SPLICE),
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

fn validate_timeouts(cx: &Cx<'_>, t: Option<TimeoutsFile>) -> Result<Timeouts, ConfigError> {
    let t = t.unwrap_or_default();
    let max_lifetime = t.max_lifetime.map_or(Duration::ZERO, |d| d.0);
    Ok(Timeouts {
        connect: nonzero_duration(cx, "timeouts.connect", t.connect, DEFAULT_CONNECT_TIMEOUT)?,
        client_idle: nonzero_duration(cx, "timeouts.client_idle", t.client_idle, DEFAULT_CLIENT_IDLE_TIMEOUT)?,
        server_idle: nonzero_duration(cx, "timeouts.server_idle", t.server_idle, DEFAULT_SERVER_IDLE_TIMEOUT)?,
        client_fin: nonzero_duration(cx, "timeouts.client_fin", t.client_fin, DEFAULT_CLIENT_FIN_TIMEOUT)?,
        server_fin: nonzero_duration(cx, "timeouts.server_fin", t.server_fin, DEFAULT_SERVER_FIN_TIMEOUT)?,
        max_lifetime: (!max_lifetime.is_zero()).then_some(max_lifetime),
    })
}

fn validate_health(cx: &Cx<'_>, h: Option<HealthFile>) -> Result<HealthConfig, ConfigError> {
    let h = h.unwrap_or_default();
    let interval = nonzero_duration(cx, "health.interval", h.interval, DEFAULT_HEALTH_INTERVAL)?;
    let timeout = nonzero_duration(cx, "health.timeout", h.timeout, DEFAULT_HEALTH_TIMEOUT)?;
    if timeout > interval {
        let msg = format!(
            "{} is longer than health.interval {}, so checks would overlap (make it <= the interval)",
            units::go_duration(timeout),
            units::go_duration(interval)
        );
        return Err(cx.err("health.timeout", msg));
    }
    let count = |key: &str, v: Option<u32>, default: u32, min: u32| match v.unwrap_or(default) {
        0 if min > 0 => Err(cx.err(key, "must be >= 1 (consecutive checks before a state change)")),
        n if n > MAX_HEALTH_COUNT => Err(cx.err(key, format!("{n} is out of range {min}..={MAX_HEALTH_COUNT}"))),
        n => Ok(n),
    };
    let rise = count("health.rise", h.rise, DEFAULT_HEALTH_RISE, 1)?;
    let fall = count("health.fall", h.fall, DEFAULT_HEALTH_FALL, 1)?;
    let passive_fall = count("health.passive_fall", h.passive_fall, DEFAULT_PASSIVE_FALL, 0)?;
    let jitter_pct = h.jitter_pct.unwrap_or(DEFAULT_HEALTH_JITTER_PCT);
    if jitter_pct > MAX_HEALTH_JITTER_PCT {
        let msg = format!("{jitter_pct} is above the maximum {MAX_HEALTH_JITTER_PCT} (percent of the interval)");
        return Err(cx.err("health.jitter_pct", msg));
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

//! `lb.toml` (or the quick-start flags) → a validated [`ProxyConfig`].
//!
//! Two stages, as in sozu and ripgrep: serde reads the file into private `*File` structs that
//! mirror the TOML exactly (`deny_unknown_fields` on every table, no `flatten`, every value kept
//! with its byte span), then `validate` turns them into the public types, applying the named
//! `DEFAULT_*` consts and refusing anything the proxy could not run with. Every error is one line
//! naming the file, the line/column when the value was written, and the key path
//! (`lb.toml:14:11: backend[1].address: duplicates backend[0] in group "default" ...`).
//!
//! Hostnames are resolved here, once, at load time (the reactors never block on DNS). Backends
//! are gathered into groups in order of first appearance; a listener forwards to one group.
//! [`ProxyConfig::to_toml`] writes the validated result back out (`--print-config`) with every
//! default made explicit, and that text loads back into an equal config.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::conffile::{self, ConfigError};
use crate::proxy::lb::Balance;
use crate::units;

/// Reactor threads; 0 = one per core (`available_parallelism()`).
pub const DEFAULT_THREADS: usize = 0;
/// Upper bound on `threads`.
pub const MAX_THREADS: usize = 1024;
/// Global cap on client sessions (and default per-listener cap).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Global default algorithm, used by groups without a `[groups.NAME] balance`.
pub const DEFAULT_BALANCE: Balance = Balance::P2c;
/// Other backends tried after a connect failure.
pub const DEFAULT_RETRIES: u32 = 2;
/// Ring size per direction per session.
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 10;
/// Smallest accepted `buffer_size`.
pub const MIN_BUFFER_BYTES: usize = 1 << 10;
/// Largest accepted `buffer_size`.
pub const MAX_BUFFER_BYTES: usize = 16 << 20;
/// splice(2) use.
pub const DEFAULT_SPLICE: SpliceMode = SpliceMode::Auto;
/// Graceful shutdown budget; 0 = close every session at once.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Backend connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Client side idle timeout.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Server side idle timeout.
pub const DEFAULT_SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// After the client half-closed, how long the server → client direction may go on.
pub const DEFAULT_CLIENT_FIN_TIMEOUT: Duration = Duration::from_secs(30);
/// After the server half-closed, how long the client → server direction may go on.
pub const DEFAULT_SERVER_FIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Session lifetime cap; `None` (written `"0"`) = unlimited.
pub const DEFAULT_MAX_LIFETIME: Option<Duration> = None;
/// Active health checks on.
pub const DEFAULT_HEALTH_ENABLED: bool = true;
/// Time between two health checks of one backend.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Health-check connect timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive successful checks that bring a backend up.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Consecutive failed checks that take a backend down.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// Random ± percent applied to each health interval, so checks do not march in step.
pub const DEFAULT_HEALTH_JITTER_PCT: u32 = 10;
/// Upper bound on `health.jitter_pct`.
pub const MAX_HEALTH_JITTER_PCT: u32 = 50;
/// Consecutive connect failures on live traffic that take a backend down; 0 = off.
pub const DEFAULT_PASSIVE_FALL: u32 = 3;
/// Prometheus `/metrics` listener when `[admin]` is omitted.
pub const DEFAULT_ADMIN_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));
/// Group of a listener or backend that names none.
pub const DEFAULT_GROUP: &str = "default";
/// Backend weight.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Upper bound on a backend weight.
pub const MAX_WEIGHT: u32 = 256;
/// Backend admin state.
pub const DEFAULT_STATE: AdminState = AdminState::Ready;
/// Prefix of a listener's default name (`listener0`, `listener1`, ...).
pub const DEFAULT_LISTENER_NAME_PREFIX: &str = "listener";

/// The validated proxy configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyConfig {
    /// The file it was read from; `None` when built from flags.
    pub source: Option<PathBuf>,
    /// Reactor threads; 0 = one per core.
    pub threads: usize,
    /// Global cap on client sessions.
    pub max_connections: usize,
    /// Global default algorithm (each group has its resolved one in [`GroupConfig::balance`]).
    pub balance: Balance,
    /// After a connect failure, how many other healthy backends to try.
    pub retries: u32,
    /// Ring size per direction per session.
    pub buffer_bytes: usize,
    /// splice(2) use.
    pub splice: SpliceMode,
    /// Graceful shutdown budget.
    pub drain_timeout: Duration,
    /// Per-session timeouts.
    pub timeouts: Timeouts,
    /// Active and passive health checking.
    pub health: HealthConfig,
    /// Prometheus `/metrics` address; `None` = disabled.
    pub admin: Option<SocketAddr>,
    /// At least one.
    pub listeners: Vec<ListenerConfig>,
    /// Backend groups in order of first appearance in `[[backend]]`; each has a backend.
    pub groups: Vec<GroupConfig>,
}

/// Per-session timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Backend connect (> 0).
    pub connect: Duration,
    /// Client side idle (> 0).
    pub client_idle: Duration,
    /// Server side idle (> 0).
    pub server_idle: Duration,
    /// After the client half-closed, how long the other direction may go on (> 0).
    pub client_fin: Duration,
    /// After the server half-closed, how long the other direction may go on (> 0).
    pub server_fin: Duration,
    /// Session lifetime cap; `None` = unlimited.
    pub max_lifetime: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            client_idle: DEFAULT_CLIENT_IDLE_TIMEOUT,
            server_idle: DEFAULT_SERVER_IDLE_TIMEOUT,
            client_fin: DEFAULT_CLIENT_FIN_TIMEOUT,
            server_fin: DEFAULT_SERVER_FIN_TIMEOUT,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

/// Health checking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Active (TCP connect) checks on.
    pub enabled: bool,
    /// Between two checks of one backend (> 0).
    pub interval: Duration,
    /// Check connect timeout (> 0, <= interval).
    pub timeout: Duration,
    /// Consecutive successes to go up (>= 1).
    pub rise: u32,
    /// Consecutive failures to go down (>= 1).
    pub fall: u32,
    /// Random ± percent on each interval (0..=50).
    pub jitter_pct: u32,
    /// Consecutive live-traffic connect failures to go down; 0 = off.
    pub passive_fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: DEFAULT_HEALTH_ENABLED,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_HEALTH_RISE,
            fall: DEFAULT_HEALTH_FALL,
            jitter_pct: DEFAULT_HEALTH_JITTER_PCT,
            passive_fall: DEFAULT_PASSIVE_FALL,
        }
    }
}

/// One listening address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique among listeners.
    pub name: String,
    /// Resolved bind address (port 0 = any free port).
    pub address: SocketAddr,
    /// Index into [`ProxyConfig::groups`].
    pub group: usize,
    /// Session cap of this listener (1..=global).
    pub max_connections: usize,
}

/// A named set of backends with one algorithm.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    /// Unique among groups.
    pub name: String,
    /// The group's override, else the global default.
    pub balance: Balance,
    /// Non-empty; at least one has weight > 0.
    pub backends: Vec<BackendConfig>,
}

/// One backend server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// Unique within its group; defaults to the address as written.
    pub name: String,
    /// Resolved address, unique within its group.
    pub address: SocketAddr,
    /// 0..=256; 0 = never picked.
    pub weight: u32,
    /// Only used when no non-backup backend of the group is usable.
    pub backup: bool,
    /// Operator's admin state.
    pub state: AdminState,
}

/// Whether the proxy moves bytes with splice(2) through a pipe instead of user-space rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceMode {
    /// Use splice where the kernel supports it.
    Auto,
    /// Require splice; fail at start-up without it.
    On,
    /// Always copy through the rings.
    Off,
}

impl SpliceMode {
    /// Canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SpliceMode::Auto => "auto",
            SpliceMode::On => "on",
            SpliceMode::Off => "off",
        }
    }
}

impl fmt::Display for SpliceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpliceMode {
    type Err = UnknownName;

    /// `auto`, `on` or `off`, any case.
    fn from_str(s: &str) -> Result<SpliceMode, UnknownName> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(SpliceMode::Auto),
            "on" => Ok(SpliceMode::On),
            "off" => Ok(SpliceMode::Off),
            _ => Err(UnknownName {
                kind: "splice mode",
                name: s.to_string(),
                choices: "auto, on or off",
            }),
        }
    }
}

/// Operator-set state of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new sessions when healthy.
    Ready,
    /// No new sessions; existing ones run to their end.
    Drain,
    /// No new sessions and no health checks.
    Maint,
}

impl AdminState {
    /// Canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminState {
    type Err = UnknownName;

    /// `ready`, `drain` or `maint`, any case.
    fn from_str(s: &str) -> Result<AdminState, UnknownName> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ready" => Ok(AdminState::Ready),
            "drain" => Ok(AdminState::Drain),
            "maint" => Ok(AdminState::Maint),
            _ => Err(UnknownName {
                kind: "backend state",
                name: s.to_string(),
                choices: "ready, drain or maint",
            }),
        }
    }
}

/// A keyword that is none of the accepted ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named (`splice mode`).
    pub kind: &'static str,
    /// What was written.
    pub name: String,
    /// The accepted names, for the message.
    pub choices: &'static str,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (use {})",
            self.kind, self.name, self.choices
        )
    }
}

impl std::error::Error for UnknownName {}

impl ProxyConfig {
    /// Worst-case ring memory: every session at the cap with both rings allocated.
    pub fn memory_bound_bytes(&self) -> u64 {
        (self.max_connections as u64)
            .saturating_mul(2)
            .saturating_mul(self.buffer_bytes as u64)
    }

    /// The config as TOML with every default explicit (`--print-config`); it loads back into an
    /// equal config (addresses are written resolved).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut kv = |k: &str, v: String| {
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(&v);
            out.push('\n');
        };
        kv("threads", self.threads.to_string());
        kv("max_connections", self.max_connections.to_string());
        kv("balance", quote(self.balance.as_str()));
        kv("retries", self.retries.to_string());
        kv("buffer_size", quote(&format_bytes(self.buffer_bytes)));
        kv("splice", quote(self.splice.as_str()));
        kv("drain_timeout", quote(&format_duration(self.drain_timeout)));

        let t = &self.timeouts;
        out.push_str("\n[timeouts]\n");
        let mut kv =
            |k: &str, d: Duration| out.push_str(&format!("{k} = {}\n", quote(&format_duration(d))));
        kv("connect", t.connect);
        kv("client_idle", t.client_idle);
        kv("server_idle", t.server_idle);
        kv("client_fin", t.client_fin);
        kv("server_fin", t.server_fin);
        kv("max_lifetime", t.max_lifetime.unwrap_or(Duration::ZERO));

        let h = &self.health;
        out.push_str("\n[health]\n");
        out.push_str(&format!("enabled = {}\n", h.enabled));
        out.push_str(&format!(
            "interval = {}\n",
            quote(&format_duration(h.interval))
        ));
        out.push_str(&format!(
            "timeout = {}\n",
            quote(&format_duration(h.timeout))
        ));
        out.push_str(&format!("rise = {}\nfall = {}\n", h.rise, h.fall));
        out.push_str(&format!(
            "jitter_pct = {}\npassive_fall = {}\n",
            h.jitter_pct, h.passive_fall
        ));

        let admin = self.admin.map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!("\n[admin]\naddress = {}\n", quote(&admin)));

        for l in &self.listeners {
            let group = self
                .groups
                .get(l.group)
                .map_or(DEFAULT_GROUP, |g| g.name.as_str());
            out.push_str(&format!(
                "\n[[listener]]\nname = {}\naddress = {}\ngroup = {}\nmax_connections = {}\n",
                quote(&l.name),
                quote(&l.address.to_string()),
                quote(group),
                l.max_connections
            ));
        }
        for g in &self.groups {
            for b in &g.backends {
                out.push_str(&format!(
                    "\n[[backend]]\nname = {}\naddress = {}\ngroup = {}\nweight = {}\nbackup = {}\nstate = {}\n",
                    quote(&b.name),
                    quote(&b.address.to_string()),
                    quote(&g.name),
                    b.weight,
                    b.backup,
                    quote(b.state.as_str())
                ));
            }
        }
        for g in &self.groups {
            out.push_str(&format!(
                "\n[groups.{}]\nbalance = {}\n",
                bare_or_quoted(&g.name),
                quote(g.balance.as_str())
            ));
        }
        out
    }
}

/// Reads and validates `path`, resolving hostnames with the system resolver.
pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
    let (file, text) = conffile::load::<FileConfig>(path)?;
    validate(file, &Cx { path, text: &text }, &mut system_resolve)
}

/// Parses and validates `text`, read from `path` (named in errors), resolving hostnames with the
/// system resolver.
pub fn from_str(path: &Path, text: &str) -> Result<ProxyConfig, ConfigError> {
    from_str_with(path, text, &mut system_resolve)
}

/// [`from_str`] with the hostname resolver passed in (tests use a fake one).
fn from_str_with(
    path: &Path,
    text: &str,
    resolve: Resolver<'_>,
) -> Result<ProxyConfig, ConfigError> {
    let file = conffile::parse::<FileConfig>(path, text)?;
    validate(file, &Cx { path, text }, resolve)
}

/// The quick-start interface: `netforge proxy --laddr ADDR --lb ALGO --timeout DUR BACKEND...`.
/// `timeout` is the backend connect timeout; everything else takes its default. One listener
/// (`listener0`) forwards to one group (`default`) of weight-1 backends named as written.
pub fn from_flags(
    laddr: &str,
    lb: &str,
    timeout: Duration,
    backends: &[String],
) -> Result<ProxyConfig, String> {
    from_flags_with(laddr, lb, timeout, backends, &mut system_resolve)
}

fn from_flags_with(
    laddr: &str,
    lb: &str,
    timeout: Duration,
    backends: &[String],
    resolve: Resolver<'_>,
) -> Result<ProxyConfig, String> {
    let address = parse_address(laddr, resolve).map_err(|e| format!("--laddr: {e}"))?;
    let balance: Balance = lb.parse().map_err(|e| format!("--lb: {e}"))?;
    if timeout.is_zero() {
        return Err("--timeout: must be > 0 (e.g. 3s)".into());
    }
    if backends.is_empty() {
        return Err(
            "no backend given (list them after the flags, e.g. 127.0.0.1:8001 127.0.0.1:8002)"
                .into(),
        );
    }
    let mut list: Vec<BackendConfig> = Vec::with_capacity(backends.len());
    for (i, text) in backends.iter().enumerate() {
        let addr = parse_address(text, resolve).map_err(|e| format!("backend {}: {e}", i + 1))?;
        if addr.port() == 0 {
            return Err(format!(
                "backend {}: {text:?} has port 0, which cannot be connected to",
                i + 1
            ));
        }
        if let Some(j) = list.iter().position(|b| b.address == addr) {
            return Err(format!(
                "backend {}: {text:?} duplicates backend {} (list each backend once)",
                i + 1,
                j + 1
            ));
        }
        list.push(BackendConfig {
            name: text.trim().to_string(),
            address: addr,
            weight: DEFAULT_WEIGHT,
            backup: false,
            state: DEFAULT_STATE,
        });
    }
    Ok(ProxyConfig {
        source: None,
        threads: DEFAULT_THREADS,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        balance,
        retries: DEFAULT_RETRIES,
        buffer_bytes: DEFAULT_BUFFER_BYTES,
        splice: DEFAULT_SPLICE,
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        timeouts: Timeouts {
            connect: timeout,
            ..Timeouts::default()
        },
        health: HealthConfig::default(),
        admin: Some(DEFAULT_ADMIN_ADDRESS),
        listeners: vec![ListenerConfig {
            name: format!("{DEFAULT_LISTENER_NAME_PREFIX}0"),
            address,
            group: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }],
        groups: vec![GroupConfig {
            name: DEFAULT_GROUP.to_string(),
            balance,
            backends: list,
        }],
    })
}

// ---------------------------------------------------------------------------------------------
// The file as written. Every value keeps its span so validation errors can point at it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    threads: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    balance: Option<Spanned<String>>,
    retries: Option<Spanned<u32>>,
    buffer_size: Option<Spanned<Text>>,
    splice: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<Text>>,
    timeouts: Option<TimeoutsFile>,
    health: Option<HealthFile>,
    admin: Option<AdminFile>,
    #[serde(default)]
    listener: Vec<ListenerFile>,
    #[serde(default)]
    backend: Vec<BackendFile>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<GroupFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    connect: Option<Spanned<Text>>,
    client_idle: Option<Spanned<Text>>,
    server_idle: Option<Spanned<Text>>,
    client_fin: Option<Spanned<Text>>,
    server_fin: Option<Spanned<Text>>,
    max_lifetime: Option<Spanned<Text>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    enabled: Option<bool>,
    interval: Option<Spanned<Text>>,
    timeout: Option<Spanned<Text>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    jitter_pct: Option<Spanned<u32>>,
    passive_fall: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    address: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFile {
    name: Option<Spanned<String>>,
    address: Spanned<String>,
    group: Option<Spanned<String>>,
    max_connections: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    name: Option<Spanned<String>>,
    address: Spanned<String>,
    group: Option<Spanned<String>>,
    weight: Option<Spanned<u32>>,
    backup: Option<bool>,
    state: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    balance: Option<Spanned<String>>,
}

/// A duration or size as written: a string (`"3s"`, `"16KiB"`) or an integer (`0`, `65536`),
/// parsed by `units` during validation so the error names the key.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string such as \"3s\" or \"16KiB\", or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Resolves `host` (not an IP literal) and `port` to one address.
type Resolver<'r> = &'r mut dyn FnMut(&str, u16) -> Result<SocketAddr, String>;

/// The first address the system resolver returns (its RFC 6724 order). Blocking: load time only.
fn system_resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut addrs = (host, port).to_socket_addrs().map_err(|e| e.to_string())?;
    addrs
        .next()
        .ok_or_else(|| "the name has no addresses".to_string())
}

/// Where errors point.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn err(
        &self,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let msg: String = msg.into();
        let mut e = ConfigError::key(self.path, key, msg.replace(['\n', '\r'], " "));
        e.at = span.map(|s| conffile::line_col(self.text, s.start));
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

fn duration(
    cx: &Cx<'_>,
    key: &str,
    v: Option<Spanned<Text>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let (v, span) = split(v);
    match v {
        None => Ok(default),
        Some(Text(s)) => units::parse_duration(&s).map_err(|e| cx.err(key, span, e)),
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

fn validate(
    file: FileConfig,
    cx: &Cx<'_>,
    resolve: Resolver<'_>,
) -> Result<ProxyConfig, ConfigError> {
    let (threads, span) = split(file.threads);
    let threads = threads.unwrap_or(DEFAULT_THREADS);
    if threads > MAX_THREADS {
        let msg = format!("{threads} is above the maximum {MAX_THREADS} (use 0 for one per core)");
        return Err(cx.err("threads", span, msg));
    }

    let (max_connections, span) = split(file.max_connections);
    let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(cx.err(
            "max_connections",
            span,
            "must be >= 1 (it caps client sessions)",
        ));
    }

    let (balance, span) = split(file.balance);
    let balance = match balance {
        None => DEFAULT_BALANCE,
        Some(s) => s
            .parse::<Balance>()
            .map_err(|e| cx.err("balance", span, e.to_string()))?,
    };

    let retries = file.retries.map_or(DEFAULT_RETRIES, |s| s.into_inner());

    let (size, span) = split(file.buffer_size);
    let buffer_bytes = match size {
        None => DEFAULT_BUFFER_BYTES,
        Some(Text(s)) => {
            let n = units::parse_bytes(&s).map_err(|e| cx.err("buffer_size", span.clone(), e))?;
            if n < MIN_BUFFER_BYTES as u64 || n > MAX_BUFFER_BYTES as u64 {
                let msg = format!("{s:?} is outside 1KiB..=16MiB (the default is \"16KiB\")");
                return Err(cx.err("buffer_size", span, msg));
            }
            n as usize
        }
    };

    let (splice, span) = split(file.splice);
    let splice = match splice {
        None => DEFAULT_SPLICE,
        Some(s) => s
            .parse::<SpliceMode>()
            .map_err(|e| cx.err("splice", span, e.to_string()))?,
    };

    let drain_timeout = duration(
        cx,
        "drain_timeout",
        file.drain_timeout,
        DEFAULT_DRAIN_TIMEOUT,
    )?;

    let timeouts = validate_timeouts(cx, file.timeouts)?;
    let health = validate_health(cx, file.health)?;

    let admin = match file.admin.and_then(|a| a.address) {
        None => Some(DEFAULT_ADMIN_ADDRESS),
        Some(s) if s.get_ref().trim().is_empty() => None,
        Some(s) => {
            let span = s.span();
            Some(
                parse_address(s.get_ref(), resolve)
                    .map_err(|e| cx.err("admin.address", Some(span), e))?,
            )
        }
    };

    // Backends, gathered into groups in order of first appearance.
    if file.backend.is_empty() {
        return Err(cx.err(
            "backend",
            None,
            "no [[backend]] table (add one with address = \"host:port\")",
        ));
    }
    let mut groups: Vec<GroupConfig> = Vec::new();
    // Per group, the `backend[i]` index of each of its backends, for messages.
    let mut origin: Vec<Vec<usize>> = Vec::new();
    for (i, b) in file.backend.into_iter().enumerate() {
        let key = |k: &str| format!("backend[{i}].{k}");
        let (group, span) = split(b.group);
        let group = group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        if group.trim().is_empty() {
            return Err(cx.err(
                key("group"),
                span,
                "empty group name (omit the key for \"default\")",
            ));
        }
        let g = match groups.iter().position(|g| g.name == group) {
            Some(g) => g,
            None => {
                groups.push(GroupConfig {
                    name: group.clone(),
                    balance,
                    backends: Vec::new(),
                });
                origin.push(Vec::new());
                groups.len() - 1
            }
        };

        let span = b.address.span();
        let text = b.address.into_inner();
        let address = parse_address(&text, resolve)
            .map_err(|e| cx.err(key("address"), Some(span.clone()), e))?;
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
            return Err(cx.err(
                key("name"),
                span,
                "empty name (omit the key to use the address)",
            ));
        }
        if let Some(j) = groups[g].backends.iter().position(|x| x.name == name) {
            let msg = format!(
                "name {name:?} duplicates backend[{}] in group {group:?} (names must differ)",
                origin[g][j]
            );
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
            Some(s) => s
                .parse::<AdminState>()
                .map_err(|e| cx.err(key("state"), span, e.to_string()))?,
        };

        groups[g].backends.push(BackendConfig {
            name,
            address,
            weight,
            backup: b.backup.unwrap_or(false),
            state,
        });
        origin[g].push(i);
    }
    for (g, group) in groups.iter().enumerate() {
        if group.backends.iter().all(|b| b.weight == 0) {
            let first = origin[g][0];
            let msg = format!(
                "every backend in group {:?} has weight 0, so none can be picked (give at least one a weight >= 1)",
                group.name
            );
            return Err(cx.err(format!("backend[{first}].weight"), None, msg));
        }
    }

    // Per-group overrides.
    for (name, g) in file.groups {
        let span = g.span();
        let gkey = format!("groups.{}", bare_or_quoted(&name));
        let Some(group) = groups.iter_mut().find(|x| x.name == name) else {
            let msg = format!("no backend uses group {name:?} (set group = {name:?} on a backend, or remove the table)");
            return Err(cx.err(gkey, Some(span), msg));
        };
        let (b, span) = split(g.into_inner().balance);
        if let Some(b) = b {
            group.balance = b
                .parse::<Balance>()
                .map_err(|e| cx.err(format!("{gkey}.balance"), span, e.to_string()))?;
        }
    }

    // Listeners.
    if file.listener.is_empty() {
        return Err(cx.err(
            "listener",
            None,
            "no [[listener]] table (add one with address = \"127.0.0.1:4000\")",
        ));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(file.listener.len());
    for (i, l) in file.listener.into_iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");

        let (name, span) = split(l.name);
        let name = name.unwrap_or_else(|| format!("{DEFAULT_LISTENER_NAME_PREFIX}{i}"));
        if name.trim().is_empty() {
            return Err(cx.err(
                key("name"),
                span,
                "empty name (omit the key for the default)",
            ));
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
        let address = parse_address(&text, resolve)
            .map_err(|e| cx.err(key("address"), Some(span.clone()), e))?;
        // Port 0 asks the kernel for a free port: two of them never collide.
        if address.port() != 0 {
            if let Some(j) = listeners.iter().position(|x| x.address == address) {
                let msg = format!(
                    "{address} duplicates listener[{j}] (each listener needs its own address)"
                );
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
            let msg = format!(
                "no backend is in group {group:?} (groups with backends: {})",
                known.join(", ")
            );
            return Err(cx.err(key("group"), span, msg));
        };

        let (max, span) = split(l.max_connections);
        let max = max.unwrap_or(max_connections);
        if max == 0 {
            return Err(cx.err(
                key("max_connections"),
                span,
                "must be >= 1 (omit it to use the global cap)",
            ));
        }
        if max > max_connections {
            let msg = format!(
                "{max} is above the global max_connections {max_connections}, which would cap it anyway (lower it, or raise the global one)"
            );
            return Err(cx.err(key("max_connections"), span, msg));
        }

        listeners.push(ListenerConfig {
            name,
            address,
            group: g,
            max_connections: max,
        });
    }

    Ok(ProxyConfig {
        source: Some(cx.path.to_path_buf()),
        threads,
        max_connections,
        balance,
        retries,
        buffer_bytes,
        splice,
        drain_timeout,
        timeouts,
        health,
        admin,
        listeners,
        groups,
    })
}

fn validate_timeouts(cx: &Cx<'_>, t: Option<TimeoutsFile>) -> Result<Timeouts, ConfigError> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    let max_lifetime = duration(cx, "timeouts.max_lifetime", t.max_lifetime, Duration::ZERO)?;
    Ok(Timeouts {
        connect: nonzero_duration(cx, "timeouts.connect", t.connect, DEFAULT_CONNECT_TIMEOUT)?.0,
        client_idle: nonzero_duration(
            cx,
            "timeouts.client_idle",
            t.client_idle,
            DEFAULT_CLIENT_IDLE_TIMEOUT,
        )?
        .0,
        server_idle: nonzero_duration(
            cx,
            "timeouts.server_idle",
            t.server_idle,
            DEFAULT_SERVER_IDLE_TIMEOUT,
        )?
        .0,
        client_fin: nonzero_duration(
            cx,
            "timeouts.client_fin",
            t.client_fin,
            DEFAULT_CLIENT_FIN_TIMEOUT,
        )?
        .0,
        server_fin: nonzero_duration(
            cx,
            "timeouts.server_fin",
            t.server_fin,
            DEFAULT_SERVER_FIN_TIMEOUT,
        )?
        .0,
        max_lifetime: (!max_lifetime.is_zero()).then_some(max_lifetime),
    })
}

fn validate_health(cx: &Cx<'_>, h: Option<HealthFile>) -> Result<HealthConfig, ConfigError> {
    let Some(h) = h else {
        return Ok(HealthConfig::default());
    };
    let (interval, _) =
        nonzero_duration(cx, "health.interval", h.interval, DEFAULT_HEALTH_INTERVAL)?;
    let (timeout, span) =
        nonzero_duration(cx, "health.timeout", h.timeout, DEFAULT_HEALTH_TIMEOUT)?;
    if timeout > interval {
        let msg = format!(
            "{} is longer than health.interval {}, so checks would overlap (make it <= the interval)",
            units::go_duration(timeout),
            units::go_duration(interval)
        );
        return Err(cx.err("health.timeout", span, msg));
    }
    let at_least_one = |key: &str, v: Option<Spanned<u32>>, default: u32| {
        let (v, span) = split(v);
        match v.unwrap_or(default) {
            0 => Err(cx.err(
                key,
                span,
                "must be >= 1 (consecutive checks before a state change)",
            )),
            n => Ok(n),
        }
    };
    let rise = at_least_one("health.rise", h.rise, DEFAULT_HEALTH_RISE)?;
    let fall = at_least_one("health.fall", h.fall, DEFAULT_HEALTH_FALL)?;
    let (jitter_pct, span) = split(h.jitter_pct);
    let jitter_pct = jitter_pct.unwrap_or(DEFAULT_HEALTH_JITTER_PCT);
    if jitter_pct > MAX_HEALTH_JITTER_PCT {
        let msg = format!(
            "{jitter_pct} is above the maximum {MAX_HEALTH_JITTER_PCT} (percent of the interval)"
        );
        return Err(cx.err("health.jitter_pct", span, msg));
    }
    Ok(HealthConfig {
        enabled: h.enabled.unwrap_or(DEFAULT_HEALTH_ENABLED),
        interval,
        timeout,
        rise,
        fall,
        jitter_pct,
        passive_fall: h
            .passive_fall
            .map_or(DEFAULT_PASSIVE_FALL, |s| s.into_inner()),
    })
}

/// `ip:port`, `[v6]:port` or `host:port` (resolved through `resolve`).
fn parse_address(text: &str, resolve: Resolver<'_>) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    const EXPECTED: &str = "expected host:port, ip:port or [v6]:port";
    if t.is_empty() {
        return Err(format!("empty address ({EXPECTED})"));
    }
    let port_of = |p: &str| {
        p.parse::<u16>().map_err(|_| {
            format!("bad port {p:?} in address {t:?} (expected a number in 0..=65535)")
        })
    };
    if let Some(rest) = t.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Err(format!(
                "bad address {t:?}: no port after the IPv6 address ({EXPECTED})"
            ));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "bad address {t:?}: {ip:?} is not an IPv6 address ({EXPECTED})"
            ));
        }
        return Err(port_of(port)
            .err()
            .unwrap_or_else(|| format!("bad address {t:?} ({EXPECTED})")));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("bad address {t:?}: no port ({EXPECTED})"));
    };
    if host.contains(':') {
        return Err(format!(
            "bad address {t:?}: write an IPv6 address in brackets, as [::1]:8001"
        ));
    }
    let port = port_of(port)?;
    if host.is_empty() {
        return Err(format!("bad address {t:?}: no host ({EXPECTED})"));
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "bad address {t:?}: {host:?} is not an IPv4 address"
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(format!(
            "bad address {t:?}: {host:?} is not a valid host name ({EXPECTED})"
        ));
    }
    resolve(host, port)
        .map_err(|e| format!("cannot resolve {host:?}: {e} (check the name, or use an IP address)"))
}

/// Exact and short: `5m`, `1m30s`, `1s500ms`, `0`; [`units::parse_duration`] reads it back.
fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0".into();
    }
    let secs = d.as_secs();
    let nanos = u64::from(d.subsec_nanos());
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (nanos / 1_000_000, "ms"),
        (nanos / 1_000 % 1_000, "us"),
        (nanos % 1_000, "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// `16KiB`, `4MiB`, or plain bytes.
fn format_bytes(n: usize) -> String {
    if n > 0 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n > 0 && n % (1 << 10) == 0 {
        format!("{}KiB", n >> 10)
    } else {
        n.to_string()
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, else quoted.
fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        quote(key)
    }
}

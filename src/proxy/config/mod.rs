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
use crate::net::tune::Congestion;
use crate::proxy::lb::Balance;
use crate::reactor::affinity::CpuAffinity;
use crate::units;

/// Reactor threads; 0 = one per core (`available_parallelism()`).
pub const DEFAULT_THREADS: usize = 0;
/// Upper bound on `threads`.
pub const MAX_THREADS: usize = crate::units::THREADS_MAX as usize;
/// Global cap on client sessions (and default per-listener cap).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// `max_connections` when the file (or the quick start) does not set it:
/// [`DEFAULT_MAX_CONNECTIONS`], or what the (raised) open-file limit allows at two descriptors
/// per session past [`crate::sys::FD_RESERVE`], whichever is lower.
pub fn default_max_connections() -> usize {
    let fit = (crate::sys::open_file_limit().saturating_sub(crate::sys::FD_RESERVE) / 2).max(1);
    DEFAULT_MAX_CONNECTIONS.min(usize::try_from(fit).unwrap_or(usize::MAX))
}
/// Global default algorithm, used by groups without a `[groups.NAME] balance`.
pub const DEFAULT_BALANCE: Balance = Balance::P2c;
/// Other backends tried after a connect failure.
pub const DEFAULT_RETRIES: u32 = 2;
/// Most retries after a failed connect (each on another backend where there is one).
pub const MAX_RETRIES: u32 = 100;
/// Most sessions, globally or per listener: the range shared with `serve --max-conns`.
pub const MAX_CONNECTIONS: usize = crate::units::CONNS_MAX as usize;
/// Most consecutive checks in `health.rise`, `health.fall` and `health.passive_fall`.
pub const MAX_HEALTH_COUNT: u32 = 1000;
/// Ring size per direction per session.
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 10;
/// Smallest accepted `buffer_size`.
pub const MIN_BUFFER_BYTES: usize = 1 << 10;
/// Largest accepted `buffer_size`.
pub const MAX_BUFFER_BYTES: usize = 16 << 20;
/// Requested capacity of each splice pipe. 256 KiB (4× the kernel's default pipe) lets one
/// splice(2) pair move 64 pages: on loopback a single bulk stream went from ~20 to ~24 Gbit/s
/// and from ~0.25 to ~0.16 CPU s/GB against 64 KiB. Smaller pipes cost more CPU per byte.
pub const DEFAULT_PIPE_BYTES: usize = 256 << 10;
/// Smallest accepted `pipe_size` (one page).
pub const MIN_PIPE_BYTES: usize = 4 << 10;
/// Largest accepted `pipe_size`.
pub const MAX_PIPE_BYTES: usize = 16 << 20;
/// splice(2) use.
pub const DEFAULT_SPLICE: SpliceMode = SpliceMode::Auto;
/// Send the client's first bytes with the backend handshake's last ACK.
pub const DEFAULT_SMART_CONNECT: bool = true;
/// TCP congestion control of the proxy's sockets; `None` keeps the kernel's default.
pub const DEFAULT_CONGESTION: Option<Congestion> = None;
/// How `congestion` spells "the kernel's default".
pub const SYSTEM_CONGESTION: &str = "system";
/// Listeners refuse an address another process listens on (see `crate::net::listen`).
pub const DEFAULT_REUSE_PORT: bool = false;
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
pub const DEFAULT_ADMIN_ADDRESS: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100));
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
    /// Reactor placement on CPUs (and the listeners' `SO_INCOMING_CPU`).
    pub cpu_affinity: CpuAffinity,
    /// Global cap on client sessions.
    pub max_connections: usize,
    /// Global default algorithm (each group has its resolved one in [`GroupConfig::balance`]).
    pub balance: Balance,
    /// After a connect failure, how many other healthy backends to try.
    pub retries: u32,
    /// Ring size per direction per session.
    pub buffer_bytes: usize,
    /// Requested capacity of each splice pipe.
    pub pipe_bytes: usize,
    /// splice(2) use.
    pub splice: SpliceMode,
    /// When a new client has already sent bytes, dial its backend with TCP_QUICKACK off and
    /// write those bytes at once, so they carry the handshake's last ACK (one segment less).
    pub smart_connect: bool,
    /// `reuse_port` (or `--reuse-port`): the listeners share their addresses with other
    /// processes listening with SO_REUSEPORT instead of refusing to start.
    pub reuse_port: bool,
    /// Global `congestion`, the default of every listener and group (each has its resolved
    /// one).
    pub congestion: Option<Congestion>,
    /// Command-line values over the file's keys, applied at start and on every reload. Not
    /// written by [`ProxyConfig::to_toml`] (the keys they set are).
    pub overrides: Overrides,
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
    /// Active checks of every backend not in [`AdminState::Maint`].
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
    /// TCP congestion control of its client sockets (set on the listener, inherited by every
    /// accepted socket); `None` = the kernel's default.
    pub congestion: Option<Congestion>,
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
    /// TCP congestion control of the sockets dialed to its backends; `None` = the kernel's
    /// default.
    pub congestion: Option<Congestion>,
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
    /// Per direction: copy small reads, splice once a read fills the buffer (or a parked ring
    /// fills: a bulk flow), and copy again after a few splice reads in a row that each moved
    /// less than a quarter of the buffer (an interactive flow), once the pipe has drained.
    Auto,
    /// Always splice (a direction copies only when no pipe can be created).
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
            _ => Err(UnknownName { kind: "splice mode", name: s.to_string(), choices: "auto, on or off" }),
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
            _ => Err(UnknownName { kind: "backend state", name: s.to_string(), choices: "ready, drain or maint" }),
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
        write!(f, "unknown {} {:?} (use {})", self.kind, self.name, self.choices)
    }
}

impl std::error::Error for UnknownName {}

/// Command-line flags that override the file (`None`: not given). A reload applies them to the
/// re-read file again, so the file never undoes them and an unchanged file asks for no restart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `--threads`.
    pub threads: Option<usize>,
    /// `--admin` (`Some(None)`: disabled).
    pub admin: Option<Option<SocketAddr>>,
    /// `--congestion`, for every listener and group (`Some(None)`: the kernel's default).
    pub congestion: Option<Option<Congestion>>,
    /// `--reuse-port` (true: on, whatever the file says).
    pub reuse_port: bool,
}

impl ProxyConfig {
    /// Applies `o` over the file's keys and keeps it for reloads.
    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(t) = o.threads {
            self.threads = t;
        }
        if let Some(a) = o.admin {
            self.admin = a;
        }
        if let Some(c) = o.congestion {
            self.congestion = c;
            self.listeners.iter_mut().for_each(|l| l.congestion = c);
            self.groups.iter_mut().for_each(|g| g.congestion = c);
        }
        if o.reuse_port {
            self.reuse_port = true;
        }
        self.overrides = o;
    }

    /// Worst-case ring memory: every session at the cap with both rings allocated.
    #[cfg(test)]
    pub fn memory_bound_bytes(&self) -> u64 {
        (self.max_connections as u64).saturating_mul(2).saturating_mul(self.buffer_bytes as u64)
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
        kv("cpu_affinity", self.cpu_affinity.to_toml());
        kv("max_connections", self.max_connections.to_string());
        kv("balance", quote(self.balance.as_str()));
        kv("retries", self.retries.to_string());
        kv("buffer_size", quote(&format_bytes(self.buffer_bytes)));
        kv("pipe_size", quote(&format_bytes(self.pipe_bytes)));
        kv("splice", quote(self.splice.as_str()));
        kv("smart_connect", self.smart_connect.to_string());
        kv("reuse_port", self.reuse_port.to_string());
        kv("congestion", quote(congestion_str(&self.congestion)));
        kv("drain_timeout", quote(&format_duration(self.drain_timeout)));

        let t = &self.timeouts;
        out.push_str("\n[timeouts]\n");
        let mut kv = |k: &str, d: Duration| out.push_str(&format!("{k} = {}\n", quote(&format_duration(d))));
        kv("connect", t.connect);
        kv("client_idle", t.client_idle);
        kv("server_idle", t.server_idle);
        kv("client_fin", t.client_fin);
        kv("server_fin", t.server_fin);
        kv("max_lifetime", t.max_lifetime.unwrap_or(Duration::ZERO));

        let h = &self.health;
        out.push_str("\n[health]\n");
        out.push_str(&format!("enabled = {}\n", h.enabled));
        out.push_str(&format!("interval = {}\n", quote(&format_duration(h.interval))));
        out.push_str(&format!("timeout = {}\n", quote(&format_duration(h.timeout))));
        out.push_str(&format!("rise = {}\nfall = {}\n", h.rise, h.fall));
        out.push_str(&format!("jitter_pct = {}\npassive_fall = {}\n", h.jitter_pct, h.passive_fall));

        let admin = self.admin.map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!("\n[admin]\naddress = {}\n", quote(&admin)));

        for l in &self.listeners {
            let group = self.groups.get(l.group).map_or(DEFAULT_GROUP, |g| g.name.as_str());
            out.push_str(&format!(
                "\n[[listener]]\nname = {}\naddress = {}\ngroup = {}\nmax_connections = {}\ncongestion = {}\n",
                quote(&l.name),
                quote(&l.address.to_string()),
                quote(group),
                l.max_connections,
                quote(congestion_str(&l.congestion))
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
                "\n[groups.{}]\nbalance = {}\ncongestion = {}\n",
                bare_or_quoted(&g.name),
                quote(g.balance.as_str()),
                quote(congestion_str(&g.congestion))
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
#[cfg(test)]
pub fn from_str(path: &Path, text: &str) -> Result<ProxyConfig, ConfigError> {
    from_str_with(path, text, &mut system_resolve)
}

/// [`from_str`] with the hostname resolver passed in (tests use a fake one).
#[cfg(test)]
fn from_str_with(path: &Path, text: &str, resolve: Resolver<'_>) -> Result<ProxyConfig, ConfigError> {
    let file = conffile::parse::<FileConfig>(path, text)?;
    validate(file, &Cx { path, text }, resolve)
}

/// The quick-start interface: `netforge proxy --laddr ADDR --lb ALGO --timeout DUR BACKEND...`.
/// `timeout` is the backend connect timeout; everything else takes its default. One listener
/// (`listener0`) forwards to one group (`default`) of weight-1 backends named as written.
pub fn from_flags(laddr: &str, lb: &str, timeout: Duration, backends: &[String]) -> Result<ProxyConfig, String> {
    from_flags_with(laddr, lb, timeout, backends, &mut system_resolve)
}

fn from_flags_with(
    laddr: &str,
    lb: &str,
    timeout: Duration,
    backends: &[String],
    resolve: Resolver<'_>,
) -> Result<ProxyConfig, String> {
    // An address equal to the admin address (the default one, or --admin) is refused once
    // --admin is applied (`cli::proxy_config`).
    let address = parse_address(laddr, resolve).map_err(|e| format!("--laddr: {e}"))?;
    let balance: Balance = lb.parse().map_err(|e| format!("--lb: {e}"))?;
    if timeout.is_zero() {
        return Err("--timeout: must be > 0 (e.g. 3s)".into());
    }
    if backends.is_empty() {
        return Err("no backend given (list them after the flags, e.g. 127.0.0.1:8001 127.0.0.1:8002)".into());
    }
    let mut list: Vec<BackendConfig> = Vec::with_capacity(backends.len());
    for (i, text) in backends.iter().enumerate() {
        let addr = parse_address(text, resolve).map_err(|e| format!("backend {}: {e}", i + 1))?;
        if addr.port() == 0 {
            return Err(format!("backend {}: {text:?} has port 0, which cannot be connected to", i + 1));
        }
        if let Some(j) = list.iter().position(|b| b.address == addr) {
            return Err(format!("backend {}: {text:?} duplicates backend {} (list each backend once)", i + 1, j + 1));
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
        cpu_affinity: CpuAffinity::default(),
        max_connections: default_max_connections(),
        balance,
        retries: DEFAULT_RETRIES,
        buffer_bytes: DEFAULT_BUFFER_BYTES,
        pipe_bytes: DEFAULT_PIPE_BYTES,
        splice: DEFAULT_SPLICE,
        smart_connect: DEFAULT_SMART_CONNECT,
        reuse_port: DEFAULT_REUSE_PORT,
        congestion: DEFAULT_CONGESTION,
        overrides: Overrides::default(),
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        timeouts: Timeouts { connect: timeout, ..Timeouts::default() },
        health: HealthConfig::default(),
        admin: Some(DEFAULT_ADMIN_ADDRESS),
        listeners: vec![ListenerConfig {
            name: format!("{DEFAULT_LISTENER_NAME_PREFIX}0"),
            address,
            group: 0,
            max_connections: default_max_connections(),
            congestion: DEFAULT_CONGESTION,
        }],
        groups: vec![GroupConfig {
            name: DEFAULT_GROUP.to_string(),
            balance,
            backends: list,
            congestion: DEFAULT_CONGESTION,
        }],
    })
}

// ---------------------------------------------------------------------------------------------
// The file as written. Every value keeps its span so validation errors can point at it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    threads: Option<Spanned<usize>>,
    cpu_affinity: Option<Spanned<toml::Value>>,
    max_connections: Option<Spanned<usize>>,
    balance: Option<Spanned<String>>,
    retries: Option<Spanned<u32>>,
    buffer_size: Option<Spanned<Text>>,
    pipe_size: Option<Spanned<Text>>,
    splice: Option<Spanned<String>>,
    smart_connect: Option<bool>,
    reuse_port: Option<bool>,
    congestion: Option<Spanned<String>>,
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
    congestion: Option<Spanned<String>>,
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
    congestion: Option<Spanned<String>>,
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
    addrs.next().ok_or_else(|| "the name has no addresses".to_string())
}

/// Where errors point.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
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

fn congestion_str(c: &Option<Congestion>) -> &str {
    c.as_ref().map_or(SYSTEM_CONGESTION, Congestion::as_str)
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

fn validate(file: FileConfig, cx: &Cx<'_>, resolve: Resolver<'_>) -> Result<ProxyConfig, ConfigError> {
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
        p.parse::<u16>().map_err(|_| format!("bad port {p:?} in address {t:?} (expected a number in 0..=65535)"))
    };
    if let Some(rest) = t.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Err(format!("bad address {t:?}: no port after the IPv6 address ({EXPECTED})"));
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("bad address {t:?}: {ip:?} is not an IPv6 address ({EXPECTED})"));
        }
        return Err(port_of(port).err().unwrap_or_else(|| format!("bad address {t:?} ({EXPECTED})")));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("bad address {t:?}: no port ({EXPECTED})"));
    };
    if host.contains(':') {
        return Err(format!("bad address {t:?}: write an IPv6 address in brackets, as [::1]:8001"));
    }
    let port = port_of(port)?;
    if host.is_empty() {
        return Err(format!("bad address {t:?}: no host ({EXPECTED})"));
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("bad address {t:?}: {host:?} is not an IPv4 address"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_') {
        return Err(format!("bad address {t:?}: {host:?} is not a valid host name ({EXPECTED})"));
    }
    resolve(host, port).map_err(|e| format!("cannot resolve {host:?}: {e} (check the name, or use an IP address)"))
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
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
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
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        quote(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const FILE: &str = "bad.toml";

    /// One listener and one backend, 5 lines: appended keys land on line 6.
    const MIN: &str = "[[listener]]\naddress = \"127.0.0.1:4000\"\n\n[[backend]]\naddress = \"127.0.0.1:8001\"\n";

    /// Deterministic stand-in for DNS.
    fn fake_resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
        match host {
            "localhost" => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
            "api.example" => Ok(SocketAddr::from(([10, 0, 0, 7], port))),
            _ => Err("Name or service not known".into()),
        }
    }

    fn parse(text: &str) -> Result<ProxyConfig, ConfigError> {
        from_str_with(Path::new(FILE), text, &mut fake_resolve)
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((a, port))
    }

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

    /// Every key set to something other than its default.
    const FULL: &str = r#"
threads = 4
cpu_affinity = "Auto"
max_connections = 500
balance = "LeastConn"
retries = 0
buffer_size = 65536
splice = "OFF"
smart_connect = false
congestion = "reno"
drain_timeout = "0"

[timeouts]
connect = "250ms"
client_idle = "1m30s"
server_idle = "1h"
client_fin = "1.5s"
server_fin = "45s"
max_lifetime = "2h"

[health]
enabled = false
interval = "5s"
timeout = "5s"
rise = 1
fall = 10
jitter_pct = 0
passive_fall = 0

[admin]
address = ""

[[listener]]
name = "web"
address = "0.0.0.0:8080"
group = "api"
max_connections = 100

[[listener]]
address = "[::1]:0"
congestion = "system"

[[listener]]
address = "127.0.0.1:0"

[[backend]]
address = "api.example:9000"
group = "api"
weight = 256

[[backend]]
name = "spare"
address = "[::1]:9000"
group = "api"
backup = true
state = "DRAIN"

[[backend]]
address = "localhost:7000"
weight = 0

[[backend]]
address = "127.0.0.1:7001"
state = "maint"

[[backend]]
address = "127.0.0.1:9000"
group = "api"

[groups.api]
balance = "rr"
congestion = "system"

[groups.default]
"#;

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
    fn system_resolver_reads_localhost() {
        let text = MIN.replace("127.0.0.1:8001", "localhost:8001");
        let cfg = from_str(Path::new("lb.toml"), &text).unwrap();
        let b = &cfg.groups[0].backends[0];
        assert!(b.address.ip().is_loopback() && b.address.port() == 8001, "{b:?}");
        assert_eq!(b.name, "localhost:8001");
    }

    #[test]
    fn example_file_loads_with_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lb.toml");
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
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

    fn assert_round_trip(cfg: &ProxyConfig) {
        let text = cfg.to_toml();
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, ProxyConfig { source: Some(PathBuf::from(FILE)), ..cfg.clone() }, "{text}");
        assert_eq!(back.to_toml(), text);
    }

    #[test]
    fn to_toml_round_trips() {
        assert_round_trip(&parse(MIN).unwrap());
        assert_round_trip(&parse(FULL).unwrap());
        // A CPU list: the CPUs this process may use, last first.
        let mut cpus = crate::sys::allowed_cpus().unwrap();
        cpus.reverse();
        let list = cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        let pinned = parse(&format!("cpu_affinity = [{list}]\n{MIN}")).unwrap();
        assert_eq!(pinned.cpu_affinity, CpuAffinity::Cpus(cpus));
        assert_round_trip(&pinned);
        let odd = format!(
            "{}[[backend]]\naddress = \"127.0.0.1:1\"\nname = \"q\\\"uote\\\\ tab\\t\"\ngroup = \"my group.v2\"\n\
             [groups.\"my group.v2\"]\nbalance = \"random\"\n",
            MIN.replace("listener]]\n", "listener]]\ngroup = \"my group.v2\"\n")
        );
        let cfg = parse(&odd).unwrap();
        assert_eq!(cfg.groups[1].name, "my group.v2");
        assert_eq!(cfg.groups[1].backends[0].name, "q\"uote\\ tab\t");
        assert_round_trip(&cfg);
        let flags = from_flags_with(
            "127.0.0.1:4000",
            "rr",
            Duration::from_millis(1500),
            &["127.0.0.1:8001".into()],
            &mut fake_resolve,
        );
        assert_round_trip(&flags.unwrap());
    }

    #[test]
    fn durations_and_sizes_format_exactly() {
        let durations = [
            (Duration::ZERO, "0"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600 + 2), "1h2s"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_nanos(1_001_001), "1ms1us1ns"),
            (Duration::from_secs(100 * 3600), "100h"),
        ];
        for (d, want) in durations {
            assert_eq!(format_duration(d), want);
            assert_eq!(units::parse_duration(want), Ok(d), "{want}");
        }
        let sizes = [(16 << 10, "16KiB"), (4 << 20, "4MiB"), (1536, "1536"), (1025, "1025"), (3 << 10, "3KiB")];
        for (n, want) in sizes {
            assert_eq!(format_bytes(n), want);
            assert_eq!(units::parse_bytes(want), Ok(n as u64), "{want}");
        }
    }

    #[test]
    fn flags() {
        let b = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let secs = Duration::from_secs;
        let ok = from_flags_with(
            "127.0.0.1:4000",
            "P2C",
            secs(3),
            &b(&["127.0.0.1:8001", "localhost:8002"]),
            &mut fake_resolve,
        )
        .unwrap();
        assert_eq!(ok.source, None);
        assert_eq!(ok.balance, Balance::P2c);
        assert_eq!(ok.timeouts.connect, secs(3));
        assert_eq!(ok.listeners[0].address, v4([127, 0, 0, 1], 4000));
        let g = &ok.groups[0];
        assert_eq!((g.name.as_str(), g.balance), (DEFAULT_GROUP, Balance::P2c));
        let got: Vec<(&str, SocketAddr)> = g.backends.iter().map(|x| (x.name.as_str(), x.address)).collect();
        assert_eq!(
            got,
            vec![("127.0.0.1:8001", v4([127, 0, 0, 1], 8001)), ("localhost:8002", v4([127, 0, 0, 1], 8002))]
        );

        // (laddr, lb, timeout, backends, fragment of the error)
        let bad: &[(&str, &str, Duration, &[&str], &str)] = &[
            ("127.0.0.1", "p2c", secs(3), &["127.0.0.1:8001"], "--laddr"),
            ("127.0.0.1:4000", "fastest", secs(3), &["127.0.0.1:8001"], "--lb"),
            ("127.0.0.1:4000", "p2c", Duration::ZERO, &["127.0.0.1:8001"], "--timeout"),
            ("127.0.0.1:4000", "p2c", secs(3), &[], "no backend"),
            ("127.0.0.1:4000", "p2c", secs(3), &["127.0.0.1:8001", "nosuch.invalid:1"], "backend 2"),
            ("127.0.0.1:4000", "p2c", secs(3), &["127.0.0.1:0"], "port 0"),
            ("127.0.0.1:4000", "p2c", secs(3), &["127.0.0.1:8001", "localhost:8001"], "duplicates backend 1"),
        ];
        for (laddr, lb, timeout, backends, want) in bad {
            let err = from_flags_with(laddr, lb, *timeout, &b(backends), &mut fake_resolve).unwrap_err();
            assert!(err.contains(want) && !err.contains('\n'), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn addresses() {
        let good: &[(&str, SocketAddr)] = &[
            ("127.0.0.1:80", v4([127, 0, 0, 1], 80)),
            (" 10.1.2.3:65535 ", v4([10, 1, 2, 3], 65535)),
            ("[::1]:8001", SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8001)),
            ("localhost:1", v4([127, 0, 0, 1], 1)),
            ("0.0.0.0:0", SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
        ];
        for (text, want) in good {
            assert_eq!(parse_address(text, &mut fake_resolve), Ok(*want), "{text}");
        }
        for bad in ["", "localhost", ":80", "[::1]", "[zz]:80", "::1:80", "1.2.3:80", "host name:80", "h:-1", "h:http"]
        {
            assert!(parse_address(bad, &mut fake_resolve).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keywords() {
        for (text, want) in [("auto", SpliceMode::Auto), ("ON", SpliceMode::On), ("Off", SpliceMode::Off)] {
            assert_eq!(text.parse::<SpliceMode>(), Ok(want));
            assert_eq!(want.to_string().parse::<SpliceMode>(), Ok(want));
        }
        for (text, want) in [("ready", AdminState::Ready), ("Drain", AdminState::Drain), ("MAINT", AdminState::Maint)] {
            assert_eq!(text.parse::<AdminState>(), Ok(want));
            assert_eq!(want.to_string().parse::<AdminState>(), Ok(want));
        }
        assert!("yes".parse::<SpliceMode>().is_err());
        assert!("down".parse::<AdminState>().is_err());
    }
}

//! The validated configuration the proxy runs with, and its keyword types.

use std::net::SocketAddr;
use std::time::Duration;

use super::defaults::*;
use crate::engine::affinity::CpuAffinity;
use crate::net::tune::Congestion;
pub(crate) use crate::proxy::args::Overrides;
use crate::proxy::lb::Balance;

/// The validated proxy configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyConfig {
    /// The file it was read from (with its text, so an error found later names the line and
    /// column of its key); `None` when built from flags.
    pub source: Option<crate::conffile::Origin>,
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

crate::keyword! {
    /// Whether the proxy moves bytes with splice(2) through a pipe instead of user-space rings.
    pub enum SpliceMode("splice mode") {
        /// Per direction: copy small reads, splice once a read fills the buffer (or a parked ring
        /// fills: a bulk flow), and copy again after a few splice reads in a row that each moved
        /// less than a quarter of the buffer (an interactive flow), once the pipe has drained.
        Auto = "auto",
        /// Always splice (a direction copies only when no pipe can be created).
        On = "on",
        /// Always copy through the rings.
        Off = "off",
    }
}

crate::keyword! {
    /// Operator-set state of a backend.
    pub enum AdminState("backend state") {
        /// Takes new sessions when healthy.
        Ready = "ready",
        /// No new sessions; existing ones run to their end.
        Drain = "drain",
        /// No new sessions and no health checks.
        Maint = "maint",
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

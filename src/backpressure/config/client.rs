//! `netforge bp client`: its defaults, `bp-client.toml` as written, its flags, the server's
//! `host:port`, and the validated [`ClientConfig`] (file, then flags).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{ByteSize, Dur, Origins, Protocol};
use super::{
    DEFAULTS_LABEL, DEFAULT_PROTOCOL, DEFAULT_SAMPLE_INTERVAL, INTERVAL_MAX, MEMORY_LIMIT_BYTES, SAMPLE_INTERVAL_MIN,
};
use crate::backpressure::ws::WsLimits;
use crate::conffile::{self, ConfigError};

// ---- defaults -------------------------------------------------------------------------------

pub const DEFAULT_SERVER: &str = "127.0.0.1:8080";
pub const DEFAULT_PAYLOAD_SIZE: u64 = 16 * 1024;
/// Payloads per second per connection (0 = as fast as the socket takes them).
pub const DEFAULT_RATE: u64 = 128;
/// Payloads per connection (0 = unlimited; `duration` ends the run).
pub const DEFAULT_TOTAL: u64 = 0;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
pub const DEFAULT_CONNECTIONS: u64 = 1;
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_PATH: &str = "/ws";

// ---- limits ---------------------------------------------------------------------------------

pub const PAYLOAD_SIZE_MAX: u64 = 16 << 20;
pub const RATE_MAX: u64 = 1_000_000;
/// Payloads per connection: TOML's largest integer, so `--total` and `total` take the same
/// values (only compared with a count, never multiplied).
pub const TOTAL_MAX: u64 = i64::MAX as u64;
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
pub const CLIENT_CONNECTIONS_MAX: u64 = 10_000;
pub const PATH_MAX_LEN: usize = 1024;
/// Largest message the client accepts from the server (it expects only control frames).
pub const CLIENT_WS_MAX_INCOMING: usize = 64 << 10;

/// `bp-client.toml` as written (every key optional).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientFile {
    pub protocol: Protocol,
    pub server: String,
    pub payload_size: ByteSize,
    pub rate: u64,
    pub total: u64,
    pub duration: Dur,
    pub connections: u64,
    pub sndbuf: Option<ByteSize>,
    pub notsent_lowat: Option<ByteSize>,
    pub mss: Option<u32>,
    pub sample_interval: Dur,
    pub stats_interval: Dur,
    pub path: String,
}

impl Default for ClientFile {
    fn default() -> Self {
        ClientFile {
            protocol: DEFAULT_PROTOCOL,
            server: DEFAULT_SERVER.to_string(),
            payload_size: ByteSize(DEFAULT_PAYLOAD_SIZE),
            rate: DEFAULT_RATE,
            total: DEFAULT_TOTAL,
            duration: Dur(DEFAULT_DURATION),
            connections: DEFAULT_CONNECTIONS,
            sndbuf: None,
            notsent_lowat: None,
            mss: None,
            sample_interval: Dur(DEFAULT_SAMPLE_INTERVAL),
            stats_interval: Dur(DEFAULT_STATS_INTERVAL),
            path: DEFAULT_PATH.to_string(),
        }
    }
}

/// Client values given as command-line flags; each `Some` replaces the file's key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOverrides {
    pub protocol: Option<Protocol>,
    pub server: Option<String>,
    pub payload_size: Option<u64>,
    pub rate: Option<u64>,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub connections: Option<u64>,
    pub sndbuf: Option<u64>,
    pub notsent_lowat: Option<u64>,
    pub mss: Option<u32>,
    pub sample_interval: Option<Duration>,
    pub stats_interval: Option<Duration>,
    pub path: Option<String>,
}

/// `host:port` of the server the client pushes to. The host is resolved by the caller at start-up
/// (never inside a reactor) and is sent as the WebSocket `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal, IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `1.2.3.4:port` or `[::1]:port`.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let expected = || format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080, example.com:443)");
        let (host, port) = s.rsplit_once(':').ok_or_else(expected)?;
        let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(expected)?;
        let host = match host.strip_prefix('[') {
            Some(rest) => {
                let inner = rest.strip_suffix(']').ok_or_else(expected)?;
                inner.parse::<std::net::Ipv6Addr>().map_err(|_| expected())?;
                inner
            }
            None if host.contains(':') => {
                return Err(format!("{s:?}: write IPv6 addresses in brackets, e.g. [::1]:8080"))
            }
            None => host,
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
        if host.is_empty() || host.len() > 253 || !host.chars().all(valid) {
            return Err(expected());
        }
        Ok(HostPort { host: host.to_string(), port })
    }

    /// The value for an HTTP `Host` header (brackets around IPv6 literals).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

/// Validated client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub protocol: Protocol,
    pub server: HostPort,
    pub payload_size: usize,
    /// Payloads per second per connection; 0 = unpaced.
    pub rate: u64,
    /// Payloads per connection; 0 = unlimited.
    pub total: u64,
    /// Wall-clock bound of the run; `None` only when `total` bounds it.
    pub duration: Option<Duration>,
    pub connections: usize,
    pub sndbuf: Option<u32>,
    pub notsent_lowat: Option<u32>,
    pub mss: Option<u32>,
    pub sample_interval: Duration,
    pub stats_interval: Duration,
    /// Request path of the WebSocket upgrade.
    pub path: String,
}

impl ClientConfig {
    /// WebSocket limits of the client's connections: one payload frame in user space at most.
    pub fn ws_limits(&self) -> WsLimits {
        WsLimits::for_payload(self.payload_size, CLIENT_WS_MAX_INCOMING)
    }
}

/// Loads the client config: `path` (or the defaults when `None`), then the flags.
pub fn load_client(path: Option<&Path>, flags: &ClientOverrides) -> Result<ClientConfig, ConfigError> {
    match path {
        Some(p) => {
            let (file, text) = conffile::load::<ClientFile>(p)?;
            client_from(file, p, Some(&text), flags)
        }
        None => client_from(ClientFile::default(), Path::new(DEFAULTS_LABEL), None, flags),
    }
}

/// Merges and validates client settings already parsed from `path` (see [`server_from`]).
pub fn client_from(
    mut f: ClientFile,
    path: &Path,
    text: Option<&str>,
    flags: &ClientOverrides,
) -> Result<ClientConfig, ConfigError> {
    let mut o = Origins::new(path, text);
    o.overlay(&mut f.protocol, flags.protocol, "protocol");
    o.overlay(&mut f.server, flags.server.clone(), "server");
    o.overlay(&mut f.payload_size, flags.payload_size, "payload_size");
    o.overlay(&mut f.rate, flags.rate, "rate");
    o.overlay(&mut f.total, flags.total, "total");
    o.overlay(&mut f.duration, flags.duration, "duration");
    o.overlay(&mut f.connections, flags.connections, "connections");
    o.overlay(&mut f.sndbuf, flags.sndbuf.map(ByteSize), "sndbuf");
    o.overlay(&mut f.notsent_lowat, flags.notsent_lowat.map(ByteSize), "notsent_lowat");
    o.overlay(&mut f.mss, flags.mss, "mss");
    o.overlay(&mut f.sample_interval, flags.sample_interval, "sample_interval");
    o.overlay(&mut f.stats_interval, flags.stats_interval, "stats_interval");
    o.overlay(&mut f.path, flags.path.clone(), "path");

    let server = HostPort::parse(f.server.trim()).map_err(|e| o.err("server", e))?;
    let payload_size = o.range("payload_size", f.payload_size.0, 1, PAYLOAD_SIZE_MAX)? as usize;
    let rate = o.range("rate", f.rate, 0, RATE_MAX)?;
    let total = o.range("total", f.total, 0, TOTAL_MAX)?;
    let duration = o.duration("duration", f.duration.0, Duration::ZERO, DURATION_MAX)?;
    if duration.is_zero() && total == 0 {
        return Err(o.err("duration", "0 with total = 0 would never end: set a duration or a total"));
    }
    let connections = o.range("connections", f.connections, 1, CLIENT_CONNECTIONS_MAX)? as usize;
    let sndbuf = o.sockbuf("sndbuf", f.sndbuf)?;
    let notsent_lowat = o.lowat("notsent_lowat", f.notsent_lowat)?;
    let mss = o.mss("mss", f.mss)?;
    let sample_interval = o.duration("sample_interval", f.sample_interval.0, SAMPLE_INTERVAL_MIN, INTERVAL_MAX)?;
    // 0: no periodic status lines, only the final report (as `-i 0` in every role).
    let stats_interval = match f.stats_interval.0 {
        Duration::ZERO => Duration::ZERO,
        d => o.duration("stats_interval", d, sample_interval, INTERVAL_MAX).map_err(|mut e| {
            e.msg.push_str(" (or 0 for no periodic lines)");
            e
        })?,
    };
    let path = f.path.trim().to_string();
    if !path.starts_with('/') || path.len() > PATH_MAX_LEN || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(o.err("path", format!("{path:?} must start with '/', have no spaces or control characters and be at most {PATH_MAX_LEN} bytes")));
    }
    // Each connection holds one payload plus the bounded WebSocket write buffer (one payload).
    let worst = (payload_size as u64 * 2).saturating_mul(connections as u64);
    if worst > MEMORY_LIMIT_BYTES {
        return Err(o.err(
            "connections",
            format!("{connections} connections × 2 × {payload_size}-byte payloads exceeds the {MEMORY_LIMIT_BYTES}-byte limit"),
        ));
    }

    Ok(ClientConfig {
        protocol: f.protocol,
        server,
        payload_size,
        rate,
        total,
        duration: (!duration.is_zero()).then_some(duration),
        connections,
        sndbuf,
        notsent_lowat,
        mss,
        sample_interval,
        stats_interval,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let ok = [
            ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
            ("[::1]:80", "::1", 80, "[::1]:80"),
            ("lb.example.com:443", "lb.example.com", 443, "lb.example.com:443"),
        ];
        for (text, host, port, authority) in ok {
            let hp = HostPort::parse(text).unwrap();
            assert_eq!((hp.host.as_str(), hp.port, hp.authority()), (host, port, authority.to_string()));
        }
        for bad in ["", ":80", "host", "host:0", "host:99999", "[::1:80", "[nope]:80", "a b:80", "a/b:80"] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?}");
        }
    }
}

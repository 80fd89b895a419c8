//! Configuration of `netforge bp server` and `netforge bp client`.
//!
//! Three layers, lowest first: the built-in defaults (named consts below), the TOML file
//! (`--conf`, optional), then for the server the `PORT` environment variable, and finally
//! command-line flags
//! ([`ServerOverrides`], [`ClientOverrides`]). Validation runs once on the merged result and names
//! where a bad value came from: `bp-server.toml: read_size: ...`, `environment: PORT: ...` or
//! `command line: --read-size: ...`.
//!
//! ## `PORT` (the PaaS convention)
//!
//! A platform that sets `PORT` (Cloud Foundry, Heroku, Cloud Run, a container started with
//! `ENV PORT=8080`) routes to that port on every interface of the instance. So when `PORT` is
//! set and neither `--listen` nor the file's `listen` key chose an address, the server listens on
//! `0.0.0.0:PORT` ([`PORT_ENV_HOST`]); the built-in default stays `127.0.0.1:8080`. When the file
//! names an address, `PORT` replaces only its port; `--listen` ignores `PORT` altogether.
//!
//! ## Why the defaults show a zero window within a second (loopback, Linux 6.x)
//!
//! - The server drains `read_size / read_delay` = 1 KiB / 100 ms = 10 KiB/s.
//! - `rcvbuf` = 64 KiB: the kernel doubles SO_RCVBUF to 128 KiB of buffer space, of which at most
//!   ~128 KiB (less the per-packet overhead) can be advertised as window. Without it the kernel's
//!   initial receive buffer (`tcp_rmem[1]`, 128 KiB) can autotune towards `tcp_rmem[2]` (6–32 MiB),
//!   which would take many seconds to fill.
//! - The client pushes `rate × payload_size` = 128 × 16 KiB = 2 MiB/s, 200× the drain rate, so the
//!   window is gone after ≤ 128 KiB / (2 MiB/s − 10 KiB/s) ≈ 65 ms of data. Measured on loopback:
//!   the advertised window reaches 0 at t ≈ 0.3 s (the sender's silly-window avoidance with
//!   loopback's 64 KiB MSS stretches the tail; with `mss = 1460` it is ≈ 0.1 s).
//! - The client's own send buffer then absorbs data: it autotunes up to `tcp_wmem[2]` (4 MiB by
//!   default), so writes block (`EAGAIN`) after ≈ 4 MB, i.e. at t ≈ 2 s.
//! - `duration` = 5 s bounds the run (`total` = 0 means "no payload limit"), leaving ≈ 3 s of
//!   zero window and blocked writes to look at.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::ws::WsLimits;
use crate::conffile::{self, ConfigError, FLAGS_LABEL};
use crate::units::{parse_bytes, parse_duration};

// ---- server defaults ------------------------------------------------------------------------

pub const DEFAULT_PROTOCOL: Protocol = Protocol::Tcp;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Listen address when only `PORT` chose one: every interface, as a platform routing to `PORT` expects.
pub const PORT_ENV_HOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// Bytes the server reads per read (then it waits `read_delay`).
pub const DEFAULT_READ_SIZE: u64 = 1024;
pub const DEFAULT_READ_DELAY: Duration = Duration::from_millis(100);
/// SO_RCVBUF of accepted sockets (see the module docs for why it is small); 0 = kernel default.
pub const DEFAULT_RCVBUF: u64 = 64 * 1024;
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 256 << 10;
pub const DEFAULT_HTTP_HEAD_MAX: u64 = crate::http::HEAD_LIMIT as u64;
pub const DEFAULT_HTTP_HEAD_TIMEOUT: Duration = crate::http::HEAD_DEADLINE;

// ---- client defaults ------------------------------------------------------------------------

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

pub const READ_SIZE_MAX: u64 = 1 << 20;
pub const READ_DELAY_MAX: Duration = Duration::from_secs(600);
/// Socket buffer sizes (SO_RCVBUF/SO_SNDBUF, TCP_NOTSENT_LOWAT): the range every role shares
/// (see `units::SOCKBUF_MAX` for why).
pub const SOCKBUF_MIN: u64 = crate::units::SOCKBUF_MIN;
pub const SOCKBUF_MAX: u64 = crate::units::SOCKBUF_MAX;
/// TCP_MAXSEG: 536 (the smallest MSS every IPv4 host must take) to 32767, the most Linux's
/// setsockopt takes (`MAX_TCP_WINDOW`; above it the call fails with EINVAL, which surfaced as
/// `bind ...: Invalid argument` on the server and `connect ...: Invalid argument` on the client).
pub const MSS_MIN: u32 = 536;
pub const MSS_MAX: u32 = 32767;
pub const SAMPLE_INTERVAL_MIN: Duration = Duration::from_millis(10);
pub const INTERVAL_MAX: Duration = Duration::from_secs(3600);
pub const MAX_CONNECTIONS_LIMIT: u64 = 65_536;
pub const WS_SIZE_MIN: u64 = 1024;
pub const WS_MESSAGE_LIMIT: u64 = 64 << 20;
pub const HTTP_HEAD_MIN: u64 = 1024;
pub const HTTP_HEAD_LIMIT: u64 = 64 << 10;
pub const HTTP_HEAD_TIMEOUT_MIN: Duration = Duration::from_millis(100);
pub const HTTP_HEAD_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// Worst-case buffer memory across all connections, server or client.
pub const MEMORY_LIMIT_BYTES: u64 = 4 << 30;
pub const PAYLOAD_SIZE_MAX: u64 = 16 << 20;
pub const RATE_MAX: u64 = 1_000_000;
/// Payloads per connection: TOML's largest integer, so `--total` and `total` take the same
/// values (only compared with a count, never multiplied).
pub const TOTAL_MAX: u64 = i64::MAX as u64;
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
pub const CLIENT_CONNECTIONS_MAX: u64 = 10_000;
pub const PATH_MAX_LEN: usize = 1024;
/// User-space WebSocket write buffer per server connection (dashboard samples, Close frames):
/// a dashboard that falls this far behind gets samples dropped, not buffered.
pub const SERVER_WS_WRITE_BUFFER: u64 = 256 << 10;
/// Largest message the client accepts from the server (it expects only control frames).
pub const CLIENT_WS_MAX_INCOMING: usize = 64 << 10;

/// Label used in errors when no config file was given.
pub const DEFAULTS_LABEL: &str = "(defaults)";
const ENV_LABEL: &str = "environment";

/// Wire protocol of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Raw TCP: the payload bytes are the stream.
    Tcp,
    /// WebSocket: one binary message per payload; the server also serves the web pages.
    Websocket,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Websocket => "websocket",
        })
    }
}

/// A byte size in a config file: an integer (`65536`) or a string with a unit (`"64KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl From<u64> for ByteSize {
    fn from(v: u64) -> Self {
        ByteSize(v)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, e.g. 65536 or \"64KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in a config file: a string with a unit (`"100ms"`, `"1m30s"`) or the integer 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl From<Duration> for Dur {
    fn from(v: Duration) -> Self {
        Dur(v)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string, e.g. \"100ms\" or \"5s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                match v {
                    0 => Ok(Dur(Duration::ZERO)),
                    _ => Err(E::custom(format!("duration {v} needs a unit: write it as a string, e.g. \"{v}ms\""))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `bp-server.toml` as written (every key optional).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFile {
    pub protocol: Protocol,
    /// `None` when the file has no `listen` key (then `PORT` or [`DEFAULT_LISTEN`] decide).
    pub listen: Option<String>,
    pub read_size: ByteSize,
    pub read_delay: Dur,
    pub rcvbuf: ByteSize,
    pub mss: Option<u32>,
    pub sample_interval: Dur,
    pub max_connections: u64,
    pub max_message_size: ByteSize,
    pub max_frame_size: ByteSize,
    pub http_head_max: ByteSize,
    pub http_head_timeout: Dur,
    /// Share `listen` with other processes listening with SO_REUSEPORT instead of refusing.
    pub reuse_port: bool,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            protocol: DEFAULT_PROTOCOL,
            listen: None,
            read_size: ByteSize(DEFAULT_READ_SIZE),
            read_delay: Dur(DEFAULT_READ_DELAY),
            rcvbuf: ByteSize(DEFAULT_RCVBUF),
            mss: None,
            sample_interval: Dur(DEFAULT_SAMPLE_INTERVAL),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_message_size: ByteSize(DEFAULT_MAX_MESSAGE_SIZE),
            max_frame_size: ByteSize(DEFAULT_MAX_FRAME_SIZE),
            http_head_max: ByteSize(DEFAULT_HTTP_HEAD_MAX),
            http_head_timeout: Dur(DEFAULT_HTTP_HEAD_TIMEOUT),
            reuse_port: false,
        }
    }
}

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

/// Server values given as command-line flags; each `Some` replaces the file's key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerOverrides {
    pub protocol: Option<Protocol>,
    pub listen: Option<String>,
    pub read_size: Option<u64>,
    pub read_delay: Option<Duration>,
    pub rcvbuf: Option<u64>,
    pub mss: Option<u32>,
    pub sample_interval: Option<Duration>,
    pub max_connections: Option<u64>,
    pub max_message_size: Option<u64>,
    pub max_frame_size: Option<u64>,
    pub http_head_max: Option<u64>,
    pub http_head_timeout: Option<Duration>,
    /// `--reuse-port` (`Some(true)` when given).
    pub reuse_port: Option<bool>,
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

/// Validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub read_size: usize,
    pub read_delay: Duration,
    /// SO_RCVBUF for accepted sockets; `None` leaves the kernel's autotuning alone.
    pub rcvbuf: Option<u32>,
    /// TCP_MAXSEG for accepted sockets.
    pub mss: Option<u32>,
    pub sample_interval: Duration,
    pub max_connections: usize,
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub http_head_max: usize,
    pub http_head_timeout: Duration,
    /// `reuse_port` / `--reuse-port`: share the address (see `crate::net::listen`).
    pub reuse_port: bool,
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

impl ServerConfig {
    /// WebSocket limits of accepted connections.
    pub fn ws_limits(&self) -> WsLimits {
        WsLimits {
            max_message_size: self.max_message_size,
            max_frame_size: self.max_frame_size,
            max_write_buffer_size: SERVER_WS_WRITE_BUFFER as usize,
        }
    }
}

impl ClientConfig {
    /// WebSocket limits of the client's connections: one payload frame in user space at most.
    pub fn ws_limits(&self) -> WsLimits {
        WsLimits::for_payload(self.payload_size, CLIENT_WS_MAX_INCOMING)
    }
}

/// Where each value came from, so an error names the file, the environment or the flag.
struct Origins<'a> {
    file: &'a Path,
    /// The file's text and where each key is written in it (`None`: no file, the defaults).
    text: Option<(&'a str, conffile::Spans)>,
    env: Vec<&'static str>,
    flags: Vec<&'static str>,
}

impl<'a> Origins<'a> {
    fn new(file: &'a Path, text: Option<&'a str>) -> Self {
        Origins { file, text: text.map(|t| (t, conffile::Spans::of(t))), env: Vec::new(), flags: Vec::new() }
    }

    fn err(&self, key: &'static str, msg: impl Into<String>) -> ConfigError {
        let given = |k: &str| self.flags.iter().chain(&self.env).any(|g| *g == k);
        let in_file = |k: &str| self.text.as_ref().is_some_and(|(_, spans)| spans.value_of(k).is_some());
        // A key left at its default that clashes with a flag: the flag is what to change.
        if !given(key) && !in_file(key) {
            if let Some(r) = related(key).iter().copied().find(|r| given(r)) {
                return self.err_from(r, format!("{key}: {}", msg.into()));
            }
        }
        self.err_from(key, msg)
    }

    fn err_from(&self, key: &'static str, msg: impl Into<String>) -> ConfigError {
        if self.flags.contains(&key) {
            ConfigError::key(Path::new(FLAGS_LABEL), format!("--{}", key.replace('_', "-")), msg)
        } else if self.env.contains(&key) {
            ConfigError::key(Path::new(ENV_LABEL), "PORT", msg)
        } else {
            let mut e = ConfigError::key(self.file, key, msg);
            e.at = self.locate(key);
            e
        }
    }

    /// Where `key`'s value is written; for a key left at its default whose value clashes with
    /// another key, where that other key is written; else the end of the file, where the
    /// missing key would go.
    fn locate(&self, key: &'static str) -> Option<(usize, usize)> {
        let (text, spans) = self.text.as_ref()?;
        let pos = std::iter::once(key)
            .chain(related(key).iter().copied())
            .find_map(|k| spans.value_of(k))
            .map_or(spans.end(), |r| r.start);
        Some(conffile::line_col(text, pos))
    }

    /// Replaces `slot` with the flag's value, if any, and remembers that the key came from a flag.
    fn overlay<T, U: Into<T>>(&mut self, slot: &mut T, flag: Option<U>, key: &'static str) {
        if let Some(v) = flag {
            *slot = v.into();
            self.flags.push(key);
        }
    }

    fn range(&self, key: &'static str, v: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(key, format!("{v} is out of range {min}..={max}")))
        }
    }

    fn duration(&self, key: &'static str, v: Duration, min: Duration, max: Duration) -> Result<Duration, ConfigError> {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            let (v, min, max) =
                (crate::units::go_duration(v), crate::units::go_duration(min), crate::units::go_duration(max));
            Err(self.err(key, format!("{v} is out of range {min}..={max}")))
        }
    }

    fn mss(&self, key: &'static str, v: Option<u32>) -> Result<Option<u32>, ConfigError> {
        v.map(|m| self.range(key, u64::from(m), u64::from(MSS_MIN), u64::from(MSS_MAX)).map(|m| m as u32)).transpose()
    }

    /// SO_SNDBUF / SO_RCVBUF: 0 (the kernel's default) or the shared range.
    fn sockbuf(&self, key: &'static str, v: Option<ByteSize>) -> Result<Option<u32>, ConfigError> {
        match v {
            None => Ok(None),
            Some(b) => crate::units::sockbuf(b.0).map_err(|e| self.err(key, e)),
        }
    }

    /// TCP_NOTSENT_LOWAT: the shared socket-buffer range, no 0.
    fn lowat(&self, key: &'static str, v: Option<ByteSize>) -> Result<Option<u32>, ConfigError> {
        // SOCKBUF_MAX < u32::MAX, so the narrowing below never truncates.
        v.map(|b| self.range(key, b.0, SOCKBUF_MIN, SOCKBUF_MAX).map(|b| b as u32)).transpose()
    }
}

/// Keys whose check also depends on other keys: where a key left at its default fails because
/// of them, the error points at them.
fn related(key: &str) -> &'static [&'static str] {
    match key {
        "max_frame_size" => &["max_message_size"],
        "max_connections" => &["max_message_size", "max_frame_size", "read_size", "http_head_max", "protocol"],
        "duration" => &["total"],
        "connections" => &["payload_size"],
        "stats_interval" => &["sample_interval"],
        _ => &[],
    }
}

/// Replaces the port of `listen` with the `PORT` environment variable's value, if it is set and
/// not empty (pure: the caller passes `std::env::var("PORT").ok()`).
pub fn apply_port_env(listen: SocketAddr, port: Option<&str>) -> Result<SocketAddr, String> {
    match port.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(listen),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => Ok(SocketAddr::new(listen.ip(), n)),
            _ => Err(format!("{p:?} is not a TCP port (1-65535)")),
        },
    }
}

/// Loads the server config: `path` (or the defaults when `None`), then `PORT`, then the flags.
pub fn load_server(
    path: Option<&Path>,
    flags: &ServerOverrides,
    port_env: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    match path {
        Some(p) => {
            let (file, text) = conffile::load::<ServerFile>(p)?;
            server_from(file, p, Some(&text), flags, port_env)
        }
        None => server_from(ServerFile::default(), Path::new(DEFAULTS_LABEL), None, flags, port_env),
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

/// Merges and validates server settings already parsed from `path` (whose `text`, when given,
/// lets errors point at line and column).
pub fn server_from(
    mut f: ServerFile,
    path: &Path,
    text: Option<&str>,
    flags: &ServerOverrides,
    port_env: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    let mut o = Origins::new(path, text);
    o.overlay(&mut f.protocol, flags.protocol, "protocol");
    o.overlay(&mut f.listen, flags.listen.clone().map(Some), "listen");
    o.overlay(&mut f.read_size, flags.read_size, "read_size");
    o.overlay(&mut f.read_delay, flags.read_delay, "read_delay");
    o.overlay(&mut f.rcvbuf, flags.rcvbuf, "rcvbuf");
    o.overlay(&mut f.mss, flags.mss, "mss");
    o.overlay(&mut f.sample_interval, flags.sample_interval, "sample_interval");
    o.overlay(&mut f.max_connections, flags.max_connections, "max_connections");
    o.overlay(&mut f.max_message_size, flags.max_message_size, "max_message_size");
    o.overlay(&mut f.max_frame_size, flags.max_frame_size, "max_frame_size");
    o.overlay(&mut f.http_head_max, flags.http_head_max, "http_head_max");
    o.overlay(&mut f.http_head_timeout, flags.http_head_timeout, "http_head_timeout");
    o.overlay(&mut f.reuse_port, flags.reuse_port, "reuse_port");

    let port_env = port_env.map(str::trim).filter(|p| !p.is_empty());
    let addr = match (&f.listen, port_env) {
        (Some(text), port) => {
            let addr: SocketAddr = text.trim().parse().map_err(|_| {
                o.err(
                    "listen",
                    format!("{text:?} is not IP:PORT (e.g. 127.0.0.1:8080, [::]:8080); host names are not resolved"),
                )
            })?;
            match port {
                // PORT beats the file but not an explicit --listen flag.
                Some(p) if flags.listen.is_none() => {
                    o.env.push("listen");
                    apply_port_env(addr, Some(p)).map_err(|e| o.err("listen", e))?
                }
                _ => addr,
            }
        }
        // Only PORT chose: all interfaces (see the module docs).
        (None, Some(p)) => {
            o.env.push("listen");
            apply_port_env(SocketAddr::new(PORT_ENV_HOST, 0), Some(p)).map_err(|e| o.err("listen", e))?
        }
        (None, None) => DEFAULT_LISTEN.parse().map_err(|_| o.err("listen", "bad built-in default"))?,
    };

    let read_size = o.range("read_size", f.read_size.0, 1, READ_SIZE_MAX)? as usize;
    let read_delay = o.duration("read_delay", f.read_delay.0, Duration::ZERO, READ_DELAY_MAX)?;
    let rcvbuf = o.sockbuf("rcvbuf", Some(f.rcvbuf))?;
    let mss = o.mss("mss", f.mss)?;
    let sample_interval = o.duration("sample_interval", f.sample_interval.0, SAMPLE_INTERVAL_MIN, INTERVAL_MAX)?;
    let max_connections = o.range("max_connections", f.max_connections, 1, MAX_CONNECTIONS_LIMIT)? as usize;
    let max_message_size = o.range("max_message_size", f.max_message_size.0, WS_SIZE_MIN, WS_MESSAGE_LIMIT)?;
    let max_frame_size = o.range("max_frame_size", f.max_frame_size.0, WS_SIZE_MIN, WS_MESSAGE_LIMIT)?;
    if max_frame_size > max_message_size {
        return Err(o.err(
            "max_frame_size",
            format!("{max_frame_size} exceeds max_message_size ({max_message_size}); a frame is at most one message"),
        ));
    }
    let http_head_max = o.range("http_head_max", f.http_head_max.0, HTTP_HEAD_MIN, HTTP_HEAD_LIMIT)?;
    let http_head_timeout =
        o.duration("http_head_timeout", f.http_head_timeout.0, HTTP_HEAD_TIMEOUT_MIN, HTTP_HEAD_TIMEOUT_MAX)?;

    // Worst case per connection: the read buffer, the HTTP head buffer, and for WebSocket one
    // frame being assembled, one message being reassembled and the write buffer.
    let ws = match f.protocol {
        Protocol::Tcp => 0,
        Protocol::Websocket => max_message_size + max_frame_size + SERVER_WS_WRITE_BUFFER,
    };
    let per_conn = read_size as u64 + http_head_max + ws;
    let worst = per_conn.saturating_mul(max_connections as u64);
    if worst > MEMORY_LIMIT_BYTES {
        return Err(o.err(
            "max_connections",
            format!(
                "{max_connections} connections × {per_conn} bytes of buffers = {worst} bytes exceeds the {MEMORY_LIMIT_BYTES}-byte limit; lower max_connections or the buffer sizes"
            ),
        ));
    }

    Ok(ServerConfig {
        protocol: f.protocol,
        listen: addr,
        read_size,
        read_delay,
        rcvbuf,
        mss,
        sample_interval,
        max_connections,
        max_message_size: max_message_size as usize,
        max_frame_size: max_frame_size as usize,
        http_head_max: http_head_max as usize,
        http_head_timeout,
        reuse_port: f.reuse_port,
    })
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

    fn server_text(text: &str) -> Result<ServerConfig, ConfigError> {
        let path = Path::new("bp-server.toml");
        server_from(conffile::parse(path, text)?, path, Some(text), &ServerOverrides::default(), None)
    }

    fn client_text(text: &str) -> Result<ClientConfig, ConfigError> {
        let path = Path::new("bp-client.toml");
        client_from(conffile::parse(path, text)?, path, Some(text), &ClientOverrides::default())
    }

    fn conf(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf").join(name)
    }

    #[test]
    fn defaults_without_a_file() {
        let s = load_server(None, &ServerOverrides::default(), None).unwrap();
        assert_eq!(s.protocol, Protocol::Tcp);
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((s.read_size, s.read_delay), (1024, Duration::from_millis(100)));
        assert_eq!(s.rcvbuf, Some(64 * 1024));
        assert_eq!(s.mss, None);
        assert_eq!((s.max_message_size, s.max_frame_size), (1 << 20, 256 << 10));
        let c = load_client(None, &ClientOverrides::default()).unwrap();
        assert_eq!(c.server, HostPort { host: "127.0.0.1".into(), port: 8080 });
        assert_eq!((c.payload_size, c.rate, c.total), (16384, 128, 0));
        assert_eq!(c.duration, Some(Duration::from_secs(5)));
        assert_eq!(c.path, "/ws");
        // An empty file is the defaults too.
        assert_eq!(server_text("").unwrap(), s);
        assert_eq!(client_text("").unwrap(), c);
    }

    /// The defaults must make backpressure visible quickly and end by themselves (see the
    /// module docs for the arithmetic).
    #[test]
    fn defaults_fill_the_window_in_well_under_a_second() {
        let s = load_server(None, &ServerOverrides::default(), None).unwrap();
        let c = load_client(None, &ClientOverrides::default()).unwrap();
        let drain = s.read_size as f64 / s.read_delay.as_secs_f64();
        let push = (c.rate * c.payload_size as u64) as f64;
        // The kernel doubles SO_RCVBUF; the window can never exceed the doubled buffer.
        let window_max = 2.0 * s.rcvbuf.unwrap() as f64;
        let fill_s = window_max / (push - drain);
        assert!(push > 100.0 * drain, "client must outpace the reader: {push} vs {drain} B/s");
        assert!(fill_s < 0.25, "window fills in {fill_s:.3} s");
        assert!(c.duration.is_some(), "the default run ends by itself");
        // ... and the client's send buffer (autotuned to tcp_wmem's 4 MiB default) fills
        // before the run ends, so the verdict can report the first EAGAIN.
        assert!(4.0 * 1024.0 * 1024.0 / push < c.duration.unwrap().as_secs_f64() / 2.0);
    }

    #[test]
    fn example_files_load_and_match_the_defaults() {
        let s = load_server(Some(&conf("bp-server.toml")), &ServerOverrides::default(), None).unwrap();
        assert_eq!(s, load_server(None, &ServerOverrides::default(), None).unwrap());
        let c = load_client(Some(&conf("bp-client.toml")), &ClientOverrides::default()).unwrap();
        assert_eq!(c, load_client(None, &ClientOverrides::default()).unwrap());
    }

    #[test]
    fn values_with_units_parse() {
        let s = server_text(
            "protocol = \"websocket\"\nlisten = \"[::1]:9000\"\nread_size = \"4KiB\"\nread_delay = \"1s\"\n\
             rcvbuf = 0\nmss = 1460\nmax_message_size = \"2MiB\"\nmax_frame_size = 65536\n",
        )
        .unwrap();
        assert_eq!(s.protocol, Protocol::Websocket);
        assert_eq!(s.listen, "[::1]:9000".parse().unwrap());
        assert_eq!((s.read_size, s.read_delay), (4096, Duration::from_secs(1)));
        assert_eq!(s.rcvbuf, None, "rcvbuf = 0 leaves the kernel default");
        assert_eq!(s.mss, Some(1460));
        assert_eq!((s.max_message_size, s.max_frame_size), (2 << 20, 65536));
        let c =
            client_text("total = 100\nduration = 0\nsndbuf = \"256KiB\"\nnotsent_lowat = 16384\nrate = 0\n").unwrap();
        assert_eq!((c.total, c.duration, c.rate), (100, None, 0));
        assert_eq!((c.sndbuf, c.notsent_lowat), (Some(256 << 10), Some(16384)));
    }

    #[test]
    fn errors_are_one_line_and_name_file_and_key() {
        let cases: &[(&str, &str)] = &[
            ("read_size = 0\n", "bp-server.toml:1:13: read_size: 0 is out of range 1..=1048576"),
            ("read_delay = \"2h\"\n", "bp-server.toml:1:14: read_delay: 2h0m0s is out of range 0s..=10m0s"),
            ("listen = \"localhost:80\"\n", "bp-server.toml:1:10: listen: \"localhost:80\" is not IP:PORT"),
            ("mss = 100\n", "bp-server.toml:1:7: mss: 100 is out of range 536..=32767"),
            ("rcvbuf = 10\n", "bp-server.toml:1:10: rcvbuf: 10 is out of range 1024..=268435456"),
            ("rcvbuf = \"3GiB\"\n", "bp-server.toml:1:10: rcvbuf: 3221225472 is out of range 1024..=268435456"),
            (
                "max_connections = 9223372036854775807\n",
                "bp-server.toml:1:19: max_connections: 9223372036854775807 is out of range",
            ),
            ("max_frame_size = \"2MiB\"\n", "bp-server.toml:1:18: max_frame_size: 2097152 exceeds max_message_size"),
            ("sample_interval = \"1ms\"\n", "bp-server.toml:1:19: sample_interval: 1ms is out of range"),
            ("http_head_max = 100\n", "bp-server.toml:1:17: http_head_max: 100 is out of range"),
            ("max_connections = 0\n", "bp-server.toml:1:19: max_connections: 0 is out of range"),
            (
                "protocol = \"websocket\"\nmax_connections = 65536\nmax_message_size = \"64MiB\"\n",
                "bp-server.toml:2:19: max_connections: 65536 connections",
            ),
            // max_connections left at its default: the error points at the key that broke the budget.
            (
                "protocol = \"websocket\"\nmax_message_size = \"64MiB\"\n",
                "bp-server.toml:2:20: max_connections: 1024 connections",
            ),
        ];
        for (text, want) in cases {
            let line = server_text(text).unwrap_err().to_string();
            assert!(line.starts_with(want), "{text:?}: got {line:?}, want {want:?}…");
            assert!(!line.contains('\n'), "{line}");
        }
        let cases: &[(&str, &str)] = &[
            ("duration = 0\n", "bp-client.toml:1:12: duration: 0 with total = 0 would never end"),
            ("server = \"nope\"\n", "bp-client.toml:1:10: server: \"nope\" is not HOST:PORT"),
            ("server = \"::1:80\"\n", "bp-client.toml:1:10: server: \"::1:80\": write IPv6 addresses in brackets"),
            ("payload_size = 0\n", "bp-client.toml:1:16: payload_size: 0 is out of range"),
            ("connections = 0\n", "bp-client.toml:1:15: connections: 0 is out of range"),
            ("path = \"ws\"\n", "bp-client.toml:1:8: path: \"ws\" must start with '/'"),
            ("path = \"/a b\"\n", "bp-client.toml:1:8: path: \"/a b\" must start with '/'"),
            ("stats_interval = \"50ms\"\n", "bp-client.toml:1:18: stats_interval: 50ms is out of range 100ms..=1h0m0s"),
            ("notsent_lowat = 1\n", "bp-client.toml:1:17: notsent_lowat: 1 is out of range"),
            ("connections = 10000\npayload_size = \"16MiB\"\n", "bp-client.toml:1:15: connections: 10000 connections"),
            // A key left at its default is placed where the key it clashes with is written.
            ("\ntotal = 0\nduration = 0\n", "bp-client.toml:3:12: duration: 0 with total = 0"),
            ("sample_interval = \"2s\"\n", "bp-client.toml:1:19: stats_interval: 1s is out of range 2s..=1h0m0s (or 0"),
        ];
        for (text, want) in cases {
            let line = client_text(text).unwrap_err().to_string();
            assert!(line.starts_with(want), "{text:?}: got {line:?}, want {want:?}…");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn syntax_and_type_errors_point_at_line_and_column() {
        let cases: &[(&str, &str)] = &[
            ("read_size = 1\nbogus = 2\n", "bp-server.toml:2:1: bogus: unknown field `bogus`"),
            ("protocol = \"udp\"\n", "bp-server.toml:1:12: protocol: unknown variant `udp`"),
            ("read_delay = 100\n", "bp-server.toml:1:14: read_delay: duration 100 needs a unit"),
            ("read_delay = \"soon\"\n", "bp-server.toml:1:14: read_delay: bad duration"),
            ("read_size = \"1 parsec\"\n", "bp-server.toml:1:13: read_size: unknown unit"),
            ("read_size = -1\n", "bp-server.toml:1:13: read_size: size -1 is negative"),
            (
                "read_delay = \"999999999h\"\n",
                "bp-server.toml:1:14: read_delay: duration \"999999999h\" is above the maximum",
            ),
        ];
        for (text, want) in cases {
            let line = server_text(text).unwrap_err().to_string();
            assert!(line.starts_with(want), "{text:?}: got {line:?}, want {want:?}…");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn port_env_replaces_only_the_port() {
        let base: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let cases: &[(Option<&str>, Result<&str, &str>)] = &[
            (None, Ok("0.0.0.0:8080")),
            (Some(""), Ok("0.0.0.0:8080")),
            (Some("9090"), Ok("0.0.0.0:9090")),
            (Some(" 61000 "), Ok("0.0.0.0:61000")),
            (Some("0"), Err("\"0\" is not a TCP port (1-65535)")),
            (Some("http"), Err("\"http\" is not a TCP port (1-65535)")),
            (Some("70000"), Err("\"70000\" is not a TCP port (1-65535)")),
        ];
        for (env, want) in cases {
            let got = apply_port_env(base, *env);
            match want {
                Ok(addr) => assert_eq!(got, Ok(addr.parse().unwrap()), "{env:?}"),
                Err(msg) => assert_eq!(got.unwrap_err(), *msg, "{env:?}"),
            }
        }
    }

    /// PORT alone (no --listen, no `listen` key) means every interface; with a `listen` key it
    /// replaces only that port; --listen ignores it.
    #[test]
    fn port_env_without_a_listen_address_means_all_interfaces() {
        let path = Path::new("s.toml");
        let none = ServerOverrides::default();
        let keyless: ServerFile = conffile::parse(path, "read_size = 2048\n").unwrap();
        let keyed: ServerFile = conffile::parse(path, "listen = \"127.0.0.1:7000\"\n").unwrap();
        let flag = ServerOverrides { listen: Some("127.0.0.1:7002".into()), ..Default::default() };
        let cases: &[(&str, &ServerFile, &ServerOverrides, Option<&str>, &str)] = &[
            ("defaults, no PORT", &ServerFile::default(), &none, None, "127.0.0.1:8080"),
            ("defaults, empty PORT", &ServerFile::default(), &none, Some(" "), "127.0.0.1:8080"),
            ("defaults, PORT", &ServerFile::default(), &none, Some("8080"), "0.0.0.0:8080"),
            ("file without listen, PORT", &keyless, &none, Some("9090"), "0.0.0.0:9090"),
            ("file with listen, PORT", &keyed, &none, Some("9090"), "127.0.0.1:9090"),
            ("file with listen, no PORT", &keyed, &none, None, "127.0.0.1:7000"),
            ("flag, PORT", &keyless, &flag, Some("9090"), "127.0.0.1:7002"),
            ("flag and file, PORT", &keyed, &flag, Some("9090"), "127.0.0.1:7002"),
        ];
        for (name, file, flags, port, want) in cases {
            let s = server_from((*file).clone(), path, None, flags, *port).unwrap();
            assert_eq!(s.listen, want.parse().unwrap(), "{name}");
        }
        assert_eq!(load_server(None, &none, Some("8080")).unwrap().listen, "0.0.0.0:8080".parse().unwrap());
        let err = server_from(ServerFile::default(), Path::new(DEFAULTS_LABEL), None, &none, Some("0")).unwrap_err();
        assert_eq!(err.to_string(), "environment: PORT: \"0\" is not a TCP port (1-65535)");
    }

    #[test]
    fn precedence_file_then_port_then_flags() {
        let path = Path::new("s.toml");
        let file: ServerFile = conffile::parse(path, "listen = \"127.0.0.1:7000\"\nread_size = 2048\n").unwrap();
        let none = ServerOverrides::default();
        // PORT replaces the file's port.
        let s = server_from(file.clone(), path, None, &none, Some("7001")).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(s.read_size, 2048);
        // Flags beat both.
        let flags = ServerOverrides {
            listen: Some("127.0.0.1:7002".into()),
            read_size: Some(512),
            read_delay: Some(Duration::from_millis(5)),
            ..Default::default()
        };
        let s = server_from(file.clone(), path, None, &flags, Some("7001")).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7002".parse().unwrap());
        assert_eq!((s.read_size, s.read_delay), (512, Duration::from_millis(5)));
        // Errors name their source.
        let err = server_from(file.clone(), path, None, &none, Some("x")).unwrap_err();
        assert_eq!(err.to_string(), "environment: PORT: \"x\" is not a TCP port (1-65535)");
        let bad = ServerOverrides { read_size: Some(0), ..Default::default() };
        let err = server_from(file, path, None, &bad, None).unwrap_err();
        assert_eq!(err.to_string(), "command line: --read-size: 0 is out of range 1..=1048576");
        // A default that clashes with a flag names the flag.
        let small = ServerOverrides { max_message_size: Some(1024), ..Default::default() };
        let err = load_server(None, &small, None).unwrap_err().to_string();
        assert!(err.starts_with("command line: --max-message-size: max_frame_size: 262144 exceeds"), "{err}");

        let cfile: ClientFile = conffile::parse(path, "rate = 5\nserver = \"example.com:80\"\n").unwrap();
        let flags =
            ClientOverrides { rate: Some(9), sndbuf: Some(4096), path: Some("/x".into()), ..Default::default() };
        let c = client_from(cfile.clone(), path, None, &flags).unwrap();
        assert_eq!((c.rate, c.sndbuf, c.path.as_str()), (9, Some(4096), "/x"));
        assert_eq!(c.server.authority(), "example.com:80");
        // The flag has the key's range, also for overrides built by hand.
        let huge = ClientOverrides { total: Some(u64::MAX), ..Default::default() };
        let err = client_from(cfile.clone(), path, None, &huge).unwrap_err().to_string();
        assert_eq!(err, "command line: --total: 18446744073709551615 is out of range 0..=9223372036854775807");
        let bad = ClientOverrides { total: Some(0), duration: Some(Duration::ZERO), ..Default::default() };
        assert!(client_from(cfile, path, None, &bad)
            .unwrap_err()
            .to_string()
            .starts_with("command line: --duration: "));
    }

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

    #[test]
    fn websocket_limits_follow_the_config() {
        let s = server_text("max_message_size = \"2MiB\"\nmax_frame_size = \"64KiB\"\n").unwrap();
        let l = s.ws_limits();
        assert_eq!((l.max_message_size, l.max_frame_size), (2 << 20, 64 << 10));
        assert_eq!(l.max_write_buffer_size, SERVER_WS_WRITE_BUFFER as usize);
        let c = client_text("payload_size = 1000\n").unwrap();
        let l = c.ws_limits();
        assert_eq!(l.max_write_buffer_size, 1000 + crate::backpressure::ws::MAX_FRAME_HEADER);
        assert_eq!(l.max_message_size, CLIENT_WS_MAX_INCOMING);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = load_server(Some(Path::new("/nonexistent/bp.toml")), &ServerOverrides::default(), None).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/bp.toml: cannot read: "), "{err}");
    }
}

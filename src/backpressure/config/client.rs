//! `netforge bp client`: its defaults, `bp-client.toml` as written, its flags, the server's
//! `host:port`, and the validated [`ClientConfig`] (file, then flags).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{parse_mss, ByteSize, Dur, HostPort, Origins, Protocol};
use super::{
    DEFAULTS_LABEL, DEFAULT_PROTOCOL, DEFAULT_SAMPLE_INTERVAL, INTERVAL_MAX, MEMORY_LIMIT_BYTES, SAMPLE_INTERVAL_MIN,
};
use super::{SOCKBUF_MAX, SOCKBUF_MIN};
use crate::backpressure::ws::WsLimits;
use crate::conffile::{self, ConfigError};
use crate::units::{parse_bytes_in, parse_duration_in, parse_int, parse_interval_in, parse_sockbuf};

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

crate::layer! {
    /// `bp-client.toml` as written, and the flags of the same names: every key optional, each
    /// given flag replacing the file's key (same name, same range). Sizes take a unit (`16KiB`),
    /// durations too (`5s`).
    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, clap::Args)]
    #[serde(deny_unknown_fields)]
    pub struct ClientFile {
        /// tcp or websocket [default: tcp].
        #[arg(long, value_name = "PROTOCOL")]
        pub protocol: Option<Protocol>,
        /// HOST:PORT of the server (resolved once at start-up) [default: 127.0.0.1:8080].
        #[arg(long, value_name = "HOST:PORT")]
        pub server: Option<String>,
        /// Bytes per payload (one write; one WebSocket message), 1..=16MiB [default: 16KiB].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_bytes_in(s, 1, PAYLOAD_SIZE_MAX).map(ByteSize))]
        pub payload_size: Option<ByteSize>,
        /// Payloads per second per connection, 0..=1000000; 0 = as fast as the socket takes them
        /// [default: 128].
        #[arg(long, value_name = "N", allow_hyphen_values = true,
              value_parser = |s: &str| parse_int(s, 0, RATE_MAX))]
        pub rate: Option<u64>,
        /// Payloads per connection, 0..=9223372036854775807 (TOML's largest integer); 0 =
        /// unlimited, the duration ends the run [default: 0].
        #[arg(long, value_name = "N", allow_hyphen_values = true,
              value_parser = |s: &str| parse_int(s, 0, TOTAL_MAX))]
        pub total: Option<u64>,
        /// Length of the run, 0..=24h; 0 = until --total payloads are sent [default: 5s].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
              value_parser = |s: &str| parse_duration_in(s, Duration::ZERO, DURATION_MAX).map(Dur))]
        pub duration: Option<Dur>,
        /// Connections pushing in parallel, 1..=10000 [default: 1].
        #[arg(long, value_name = "N", allow_hyphen_values = true,
              value_parser = |s: &str| parse_int(s, 1, CLIENT_CONNECTIONS_MAX))]
        pub connections: Option<u64>,
        /// SO_SNDBUF of each connection: 1KiB..=256MiB, or 0 for the kernel's default
        /// (autotuning) [default: 0].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_sockbuf(s).map(ByteSize))]
        pub sndbuf: Option<ByteSize>,
        /// TCP_NOTSENT_LOWAT of each connection, 1KiB..=256MiB [default: unset, the kernel's].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_bytes_in(s, SOCKBUF_MIN, SOCKBUF_MAX).map(ByteSize))]
        pub notsent_lowat: Option<ByteSize>,
        /// TCP_MAXSEG of each connection, 536..=32767 [default: the kernel's].
        #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = parse_mss)]
        pub mss: Option<u32>,
        /// How often each socket is sampled (TCP_INFO, queues), 10ms..=1h [default: 100ms].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
              value_parser = |s: &str| parse_duration_in(s, SAMPLE_INTERVAL_MIN, INTERVAL_MAX).map(Dur))]
        pub sample_interval: Option<Dur>,
        /// Time between status lines: whole seconds or a duration, sample-interval..=1h; 0 = no
        /// status lines, only the final report (the same in goon, serve and bp client) [default: 1s].
        #[arg(short = 'i', long, value_name = "SECONDS", allow_hyphen_values = true,
              value_parser = |s: &str| parse_interval_in(s, INTERVAL_MAX).map(Dur))]
        pub stats_interval: Option<Dur>,
        /// WebSocket request path [default: /ws].
        #[arg(long, value_name = "PATH")]
        pub path: Option<String>,
    }
}

/// Validated client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub protocol: Protocol,
    pub server: HostPort,
    /// Where `server` came from, as an error found later (resolving its host at start-up)
    /// names it: `--server`, or `FILE:LINE:COL: server`.
    pub server_key: crate::conffile::KeyName,
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
pub fn load_client(path: Option<&Path>, flags: &ClientFile) -> Result<ClientConfig, ConfigError> {
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
    flags: &ClientFile,
) -> Result<ClientConfig, ConfigError> {
    let mut o = Origins::new(path, text);
    o.given(f.overlay(flags));
    let dur = |v: Option<Dur>, default: Duration| v.map_or(default, |d| d.0);

    let server = HostPort::parse(f.server.as_deref().unwrap_or(DEFAULT_SERVER)).map_err(|e| o.err("server", e))?;
    let payload_size = f.payload_size.map_or(DEFAULT_PAYLOAD_SIZE, |b| b.0);
    let payload_size = o.range("payload_size", payload_size, 1, PAYLOAD_SIZE_MAX)? as usize;
    let rate = o.range("rate", f.rate.unwrap_or(DEFAULT_RATE), 0, RATE_MAX)?;
    let total = o.range("total", f.total.unwrap_or(DEFAULT_TOTAL), 0, TOTAL_MAX)?;
    let duration = o.duration("duration", dur(f.duration, DEFAULT_DURATION), Duration::ZERO, DURATION_MAX)?;
    if duration.is_zero() && total == 0 {
        return Err(o.err("duration", "0 with total = 0 would never end: set a duration or a total"));
    }
    let connections = f.connections.unwrap_or(DEFAULT_CONNECTIONS);
    let connections = o.range("connections", connections, 1, CLIENT_CONNECTIONS_MAX)? as usize;
    let sndbuf = o.sockbuf("sndbuf", f.sndbuf)?;
    let notsent_lowat = o.lowat("notsent_lowat", f.notsent_lowat)?;
    let mss = o.mss("mss", f.mss)?;
    let sample_interval = dur(f.sample_interval, DEFAULT_SAMPLE_INTERVAL);
    let sample_interval = o.duration("sample_interval", sample_interval, SAMPLE_INTERVAL_MIN, INTERVAL_MAX)?;
    // 0: no periodic status lines, only the final report (as `-i 0` in every role).
    let stats_interval = match dur(f.stats_interval, DEFAULT_STATS_INTERVAL) {
        Duration::ZERO => Duration::ZERO,
        d => o.duration("stats_interval", d, sample_interval, INTERVAL_MAX).map_err(|mut e| {
            e.msg.push_str(" (or 0 for no periodic lines)");
            e
        })?,
    };
    let path = f.path.as_deref().unwrap_or(DEFAULT_PATH).trim().to_string();
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
        protocol: f.protocol.unwrap_or(DEFAULT_PROTOCOL),
        server,
        server_key: crate::conffile::KeyName(o.name("server")),
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

impl ClientConfig {
    /// The file that loads back as this config, every key written (`--print-config`).
    pub fn to_file(&self) -> ClientFile {
        let sockbuf = |v: Option<u32>| v.map(|n| ByteSize(u64::from(n)));
        ClientFile {
            protocol: Some(self.protocol),
            server: Some(self.server.authority()),
            payload_size: Some(ByteSize(self.payload_size as u64)),
            rate: Some(self.rate),
            total: Some(self.total),
            duration: Some(Dur(self.duration.unwrap_or_default())),
            connections: Some(self.connections as u64),
            sndbuf: Some(sockbuf(self.sndbuf).unwrap_or_default()),
            notsent_lowat: sockbuf(self.notsent_lowat),
            mss: self.mss,
            sample_interval: Some(Dur(self.sample_interval)),
            stats_interval: Some(Dur(self.stats_interval)),
            path: Some(self.path.clone()),
        }
    }
}

//! `netforge bp server`: its defaults, `bp-server.toml` as written, its flags, and the validated
//! [`ServerConfig`] (file, then `PORT`, then flags; see the parent module's docs).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{parse_mss, ByteSize, Dur, Origins, Protocol};
use super::{
    DEFAULTS_LABEL, DEFAULT_PROTOCOL, DEFAULT_SAMPLE_INTERVAL, INTERVAL_MAX, MEMORY_LIMIT_BYTES, SAMPLE_INTERVAL_MIN,
};
use crate::backpressure::ws::WsLimits;
use crate::conffile::{self, ConfigError};
use crate::config::parse_ip_port;
use crate::units::{parse_bytes_in, parse_duration_in, parse_int, parse_sockbuf};

// ---- defaults -------------------------------------------------------------------------------

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Listen address when only `PORT` chose one: every interface, as a platform routing to `PORT` expects.
pub const PORT_ENV_HOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// Bytes the server reads per read (then it waits `read_delay`).
pub const DEFAULT_READ_SIZE: u64 = 1024;
pub const DEFAULT_READ_DELAY: Duration = Duration::from_millis(100);
/// SO_RCVBUF of accepted sockets (see the parent module's docs for why it is small); 0 = kernel default.
pub const DEFAULT_RCVBUF: u64 = 64 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 256 << 10;
pub const DEFAULT_HTTP_HEAD_MAX: u64 = crate::http::HEAD_LIMIT as u64;
pub const DEFAULT_HTTP_HEAD_TIMEOUT: Duration = crate::http::HEAD_DEADLINE;

// ---- limits ---------------------------------------------------------------------------------

pub const READ_SIZE_MAX: u64 = 1 << 20;
pub const READ_DELAY_MAX: Duration = Duration::from_secs(600);
pub const MAX_CONNECTIONS_LIMIT: u64 = 65_536;
pub const WS_SIZE_MIN: u64 = 1024;
pub const WS_MESSAGE_LIMIT: u64 = 64 << 20;
pub const HTTP_HEAD_MIN: u64 = 1024;
pub const HTTP_HEAD_LIMIT: u64 = 64 << 10;
pub const HTTP_HEAD_TIMEOUT_MIN: Duration = Duration::from_millis(100);
pub const HTTP_HEAD_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// User-space WebSocket write buffer per server connection (dashboard samples, Close frames):
/// a dashboard that falls this far behind gets samples dropped, not buffered.
pub const SERVER_WS_WRITE_BUFFER: u64 = 256 << 10;

crate::layer! {
    /// `bp-server.toml` as written, and the flags of the same names: every key optional, each
    /// given flag replacing the file's key (same name, same range). Sizes take a unit (`1KiB`),
    /// durations too (`100ms`).
    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, clap::Args)]
    #[serde(deny_unknown_fields)]
    pub struct ServerFile {
        /// tcp or websocket [default: tcp].
        #[arg(long, value_name = "PROTOCOL")]
        pub protocol: Option<Protocol>,
        /// IP:PORT to listen on (port 0 picks a free port, printed on the first line). Unset:
        /// the file's listen with its port replaced by $PORT, else 0.0.0.0:$PORT when $PORT is
        /// set, else 127.0.0.1:8080. This flag ignores $PORT [default: 127.0.0.1:8080].
        #[arg(long, value_name = "IP:PORT")]
        pub listen: Option<String>,
        /// Bytes per read, 1..=1MiB [default: 1KiB].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_bytes_in(s, 1, READ_SIZE_MAX).map(ByteSize))]
        pub read_size: Option<ByteSize>,
        /// Wait between reads, 0..=10m; 0 = read as fast as data comes [default: 100ms].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
              value_parser = |s: &str| parse_duration_in(s, Duration::ZERO, READ_DELAY_MAX).map(Dur))]
        pub read_delay: Option<Dur>,
        /// SO_RCVBUF of the listener, inherited by accepted sockets: 1KiB..=256MiB, or 0 for the
        /// kernel's default (autotuning) [default: 64KiB].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_sockbuf(s).map(ByteSize))]
        pub rcvbuf: Option<ByteSize>,
        /// TCP_MAXSEG of accepted sockets, 536..=32767 [default: the kernel's].
        #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = parse_mss)]
        pub mss: Option<u32>,
        /// How often each connection's socket is sampled for the dashboard, 10ms..=1h
        /// [default: 100ms].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
              value_parser = |s: &str| parse_duration_in(s, SAMPLE_INTERVAL_MIN, INTERVAL_MAX).map(Dur))]
        pub sample_interval: Option<Dur>,
        /// Most connections (lab and dashboard) at once, 1..=65536 [default: 1024].
        #[arg(long, value_name = "N", allow_hyphen_values = true,
              value_parser = |s: &str| parse_int(s, 1, MAX_CONNECTIONS_LIMIT))]
        pub max_connections: Option<u64>,
        /// Largest WebSocket message accepted, 1KiB..=64MiB [default: 1MiB].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_bytes_in(s, WS_SIZE_MIN, WS_MESSAGE_LIMIT).map(ByteSize))]
        pub max_message_size: Option<ByteSize>,
        /// Largest WebSocket frame accepted, 1KiB..=max-message-size [default: 256KiB].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_bytes_in(s, WS_SIZE_MIN, WS_MESSAGE_LIMIT).map(ByteSize))]
        pub max_frame_size: Option<ByteSize>,
        /// Largest HTTP request head (pages and WebSocket upgrades), 1KiB..=64KiB [default: 8KiB].
        #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
              value_parser = |s: &str| parse_bytes_in(s, HTTP_HEAD_MIN, HTTP_HEAD_LIMIT).map(ByteSize))]
        pub http_head_max: Option<ByteSize>,
        /// Time a client has to send its whole HTTP request head, 100ms..=1m [default: 5s].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
              value_parser = |s: &str| parse_duration_in(s, HTTP_HEAD_TIMEOUT_MIN, HTTP_HEAD_TIMEOUT_MAX).map(Dur))]
        pub http_head_timeout: Option<Dur>,
        /// Share the listen address with other processes listening on it with SO_REUSEPORT (the
        /// kernel spreads new connections over all of them), like reuse_port = true in the file.
        /// Without either, an address another process listens on is refused [default: off].
        #[arg(long, num_args = 0, default_missing_value = "true")]
        pub reuse_port: Option<bool>,
    }
}

/// Validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub protocol: Protocol,
    pub listen: SocketAddr,
    /// Where `listen` came from, as an error about it (a bind failure) names it: `--listen`,
    /// `$PORT`, or `FILE:LINE:COL: listen` (the end of the file when the file leaves it out).
    pub listen_key: crate::conffile::KeyName,
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
    flags: &ServerFile,
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

/// Merges and validates server settings already parsed from `path` (whose `text`, when given,
/// lets errors point at line and column).
pub fn server_from(
    mut f: ServerFile,
    path: &Path,
    text: Option<&str>,
    flags: &ServerFile,
    port_env: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    let mut o = Origins::new(path, text);
    o.given(f.overlay(flags));
    let size = |v: Option<ByteSize>, default: u64| v.map_or(default, |b| b.0);
    let dur = |v: Option<Dur>, default: Duration| v.map_or(default, |d| d.0);
    let protocol = f.protocol.unwrap_or(DEFAULT_PROTOCOL);

    let port_env = port_env.map(str::trim).filter(|p| !p.is_empty());
    let addr = match (&f.listen, port_env) {
        (Some(text), port) => {
            let addr = parse_ip_port(text).map_err(|e| o.err("listen", e))?;
            match port {
                // PORT beats the file but not an explicit --listen flag.
                Some(p) if flags.listen.is_none() => {
                    o.env.push("listen");
                    apply_port_env(addr, Some(p)).map_err(|e| o.err("listen", e))?
                }
                _ => addr,
            }
        }
        // Only PORT chose: all interfaces (see the parent module's docs).
        (None, Some(p)) => {
            o.env.push("listen");
            apply_port_env(SocketAddr::new(PORT_ENV_HOST, 0), Some(p)).map_err(|e| o.err("listen", e))?
        }
        (None, None) => DEFAULT_LISTEN.parse().map_err(|_| o.err("listen", "bad built-in default"))?,
    };

    let read_size = o.range("read_size", size(f.read_size, DEFAULT_READ_SIZE), 1, READ_SIZE_MAX)? as usize;
    let read_delay = o.duration("read_delay", dur(f.read_delay, DEFAULT_READ_DELAY), Duration::ZERO, READ_DELAY_MAX)?;
    let rcvbuf = o.sockbuf("rcvbuf", Some(ByteSize(size(f.rcvbuf, DEFAULT_RCVBUF))))?;
    let mss = o.mss("mss", f.mss)?;
    let sample_interval = dur(f.sample_interval, DEFAULT_SAMPLE_INTERVAL);
    let sample_interval = o.duration("sample_interval", sample_interval, SAMPLE_INTERVAL_MIN, INTERVAL_MAX)?;
    let max_connections = f.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let max_connections = o.range("max_connections", max_connections, 1, MAX_CONNECTIONS_LIMIT)? as usize;
    let max_message_size = size(f.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    let max_message_size = o.range("max_message_size", max_message_size, WS_SIZE_MIN, WS_MESSAGE_LIMIT)?;
    let max_frame_size = size(f.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
    let max_frame_size = o.range("max_frame_size", max_frame_size, WS_SIZE_MIN, WS_MESSAGE_LIMIT)?;
    if max_frame_size > max_message_size {
        return Err(o.err(
            "max_frame_size",
            format!("{max_frame_size} exceeds max_message_size ({max_message_size}); a frame is at most one message"),
        ));
    }
    let http_head_max = size(f.http_head_max, DEFAULT_HTTP_HEAD_MAX);
    let http_head_max = o.range("http_head_max", http_head_max, HTTP_HEAD_MIN, HTTP_HEAD_LIMIT)?;
    let http_head_timeout = dur(f.http_head_timeout, DEFAULT_HTTP_HEAD_TIMEOUT);
    let http_head_timeout =
        o.duration("http_head_timeout", http_head_timeout, HTTP_HEAD_TIMEOUT_MIN, HTTP_HEAD_TIMEOUT_MAX)?;

    // Worst case per connection: the read buffer, the HTTP head buffer, and for WebSocket one
    // frame being assembled, one message being reassembled and the write buffer.
    let ws = match protocol {
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
        protocol,
        listen: addr,
        listen_key: crate::conffile::KeyName(o.name("listen")),
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
        reuse_port: f.reuse_port.unwrap_or(false),
    })
}

impl ServerConfig {
    /// The file that loads back as this config, every key written (`--print-config`).
    pub fn to_file(&self) -> ServerFile {
        let size = |n: usize| Some(ByteSize(n as u64));
        ServerFile {
            protocol: Some(self.protocol),
            listen: Some(self.listen.to_string()),
            read_size: size(self.read_size),
            read_delay: Some(Dur(self.read_delay)),
            rcvbuf: Some(ByteSize(self.rcvbuf.map_or(0, u64::from))),
            mss: self.mss,
            sample_interval: Some(Dur(self.sample_interval)),
            max_connections: Some(self.max_connections as u64),
            max_message_size: size(self.max_message_size),
            max_frame_size: size(self.max_frame_size),
            http_head_max: size(self.http_head_max),
            http_head_timeout: Some(Dur(self.http_head_timeout)),
            reuse_port: Some(self.reuse_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let none = ServerFile::default();
        let keyless: ServerFile = conffile::parse(path, "read_size = 2048\n").unwrap();
        let keyed: ServerFile = conffile::parse(path, "listen = \"127.0.0.1:7000\"\n").unwrap();
        let flag = ServerFile { listen: Some("127.0.0.1:7002".into()), ..Default::default() };
        let cases: &[(&str, &ServerFile, &ServerFile, Option<&str>, &str)] = &[
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
    fn missing_file_is_an_error_naming_it() {
        let err = load_server(Some(Path::new("/nonexistent/bp.toml")), &ServerFile::default(), None).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/bp.toml: cannot read: "), "{err}");
    }
}

//! `netforge bp server` and `bp client` flags and their translation into the lab's configs;
//! each given flag replaces the config file's key of the same name.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::backpressure::config as bp;
use crate::error::Error;
use crate::units::{self, parse_bytes_in, parse_duration_in, parse_int, parse_sockbuf, parse_threads};

fn parse_protocol(s: &str) -> Result<crate::backpressure::config::Protocol, String> {
    use crate::backpressure::config::Protocol;
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "websocket" | "ws" => Ok(Protocol::Websocket),
        _ => Err(format!("{s:?}: expected tcp or websocket")),
    }
}

/// `--mss` of bp server and client: TCP_MAXSEG, the range of the `mss` key.
fn parse_mss(s: &str) -> Result<u32, String> {
    // MSS_MAX < u32::MAX, so the narrowing never truncates.
    parse_int(s, u64::from(bp::MSS_MIN), u64::from(bp::MSS_MAX)).map(|n| n as u32)
}

/// Flags of `netforge bp server`; each given flag replaces the config file's key (same name,
/// same range). Sizes take a unit (`1KiB`), durations too (`100ms`).
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct BpServerArgs {
    /// Config file (see conf/bp-server.toml) [default: none, the built-in defaults apply].
    #[arg(long, value_name = "FILE")]
    pub(crate) conf: Option<PathBuf>,
    /// tcp or websocket [default: tcp].
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_protocol)]
    pub(crate) protocol: Option<crate::backpressure::config::Protocol>,
    /// IP:PORT to listen on (port 0 picks a free port, printed on the first line). Unset:
    /// the file's listen with its port replaced by $PORT, else 0.0.0.0:$PORT when $PORT is set,
    /// else 127.0.0.1:8080. This flag ignores $PORT [default: 127.0.0.1:8080].
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) listen: Option<String>,
    /// Bytes per read, 1..=1MiB [default: 1KiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = |s: &str| parse_bytes_in(s, 1, bp::READ_SIZE_MAX))]
    pub(crate) read_size: Option<u64>,
    /// Wait between reads, 0..=10m; 0 = read as fast as data comes [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, Duration::ZERO, bp::READ_DELAY_MAX))]
    pub(crate) read_delay: Option<Duration>,
    /// SO_RCVBUF of the listener, inherited by accepted sockets: 1KiB..=256MiB, or 0 for the
    /// kernel's default (autotuning) [default: 64KiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = parse_sockbuf)]
    pub(crate) rcvbuf: Option<u64>,
    /// TCP_MAXSEG of accepted sockets, 536..=32767 [default: the kernel's].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true,
          value_parser = parse_mss)]
    pub(crate) mss: Option<u32>,
    /// How often each connection's socket is sampled for the dashboard, 10ms..=1h
    /// [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, bp::SAMPLE_INTERVAL_MIN, bp::INTERVAL_MAX))]
    pub(crate) sample_interval: Option<Duration>,
    /// Most connections (lab and dashboard) at once, 1..=65536 [default: 1024].
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = |s: &str| parse_int(s, 1, bp::MAX_CONNECTIONS_LIMIT))]
    pub(crate) max_connections: Option<u64>,
    /// Largest WebSocket message accepted, 1KiB..=64MiB [default: 1MiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = |s: &str| parse_bytes_in(s, bp::WS_SIZE_MIN, bp::WS_MESSAGE_LIMIT))]
    pub(crate) max_message_size: Option<u64>,
    /// Largest WebSocket frame accepted, 1KiB..=max-message-size [default: 256KiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = |s: &str| parse_bytes_in(s, bp::WS_SIZE_MIN, bp::WS_MESSAGE_LIMIT))]
    pub(crate) max_frame_size: Option<u64>,
    /// Largest HTTP request head (pages and WebSocket upgrades), 1KiB..=64KiB [default: 8KiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = |s: &str| parse_bytes_in(s, bp::HTTP_HEAD_MIN, bp::HTTP_HEAD_LIMIT))]
    pub(crate) http_head_max: Option<u64>,
    /// Time a client has to send its whole HTTP request head, 100ms..=1m [default: 5s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, bp::HTTP_HEAD_TIMEOUT_MIN, bp::HTTP_HEAD_TIMEOUT_MAX))]
    pub(crate) http_head_timeout: Option<Duration>,
    /// Reactor threads, 0..=1024, 0 = one per core [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Share the listen address with other processes listening on it with SO_REUSEPORT (the
    /// kernel spreads new connections over all of them). Without it (or reuse_port = true in
    /// the file), an address another process listens on is refused [default: off].
    #[arg(long)]
    pub(crate) reuse_port: bool,
}

/// Flags of `netforge bp client`; each given flag replaces the config file's key (same name,
/// same range). Sizes take a unit (`16KiB`), durations too (`5s`).
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct BpClientArgs {
    /// Config file (see conf/bp-client.toml) [default: none, the built-in defaults apply].
    #[arg(long, value_name = "FILE")]
    pub(crate) conf: Option<PathBuf>,
    /// tcp or websocket [default: tcp].
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_protocol)]
    pub(crate) protocol: Option<crate::backpressure::config::Protocol>,
    /// HOST:PORT of the server (resolved once at start-up) [default: 127.0.0.1:8080].
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) server: Option<String>,
    /// Bytes per payload (one write; one WebSocket message), 1..=16MiB [default: 16KiB].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = |s: &str| parse_bytes_in(s, 1, bp::PAYLOAD_SIZE_MAX))]
    pub(crate) payload_size: Option<u64>,
    /// Payloads per second per connection, 0..=1000000; 0 = as fast as the socket takes them
    /// [default: 128].
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = |s: &str| parse_int(s, 0, bp::RATE_MAX))]
    pub(crate) rate: Option<u64>,
    /// Payloads per connection, 0..=9223372036854775807 (TOML's largest integer); 0 =
    /// unlimited, the duration ends the run [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = |s: &str| parse_int(s, 0, bp::TOTAL_MAX))]
    pub(crate) total: Option<u64>,
    /// Length of the run, 0..=24h; 0 = until --total payloads are sent [default: 5s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, Duration::ZERO, bp::DURATION_MAX))]
    pub(crate) duration: Option<Duration>,
    /// Connections pushing in parallel, 1..=10000 [default: 1].
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = |s: &str| parse_int(s, 1, bp::CLIENT_CONNECTIONS_MAX))]
    pub(crate) connections: Option<u64>,
    /// SO_SNDBUF of each connection: 1KiB..=256MiB, or 0 for the kernel's default
    /// (autotuning) [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = parse_sockbuf)]
    pub(crate) sndbuf: Option<u64>,
    /// TCP_NOTSENT_LOWAT of each connection, 1KiB..=256MiB [default: unset, the kernel's].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true,
          value_parser = |s: &str| parse_bytes_in(s, bp::SOCKBUF_MIN, bp::SOCKBUF_MAX))]
    pub(crate) notsent_lowat: Option<u64>,
    /// TCP_MAXSEG of each connection, 536..=32767 [default: the kernel's].
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true,
          value_parser = parse_mss)]
    pub(crate) mss: Option<u32>,
    /// How often each socket is sampled (TCP_INFO, queues), 10ms..=1h [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, bp::SAMPLE_INTERVAL_MIN, bp::INTERVAL_MAX))]
    pub(crate) sample_interval: Option<Duration>,
    /// Time between status lines: whole seconds or a duration, sample-interval..=1h; 0 = no
    /// status lines, only the final report (the same in every role) [default: 1s].
    #[arg(short = 'i', long, value_name = "SECONDS", allow_hyphen_values = true, 
          value_parser = |s: &str| units::parse_interval_in(s, bp::INTERVAL_MAX))]
    pub(crate) stats_interval: Option<Duration>,
    /// WebSocket request path [default: /ws].
    #[arg(long, value_name = "PATH")]
    pub(crate) path: Option<String>,
    /// Write the verdict, summary and full time series as JSON [default: none].
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write a self-contained HTML report: the window and queue time series with the
    /// zero-window time shaded, and the verdict (`report html` draws the same from the JSON)
    /// [default: none].
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

pub(crate) fn bp_server_config(a: &BpServerArgs) -> Result<crate::backpressure::config::ServerConfig, Error> {
    let flags = crate::backpressure::config::ServerOverrides {
        protocol: a.protocol,
        listen: a.listen.clone(),
        read_size: a.read_size,
        read_delay: a.read_delay,
        rcvbuf: a.rcvbuf,
        mss: a.mss,
        sample_interval: a.sample_interval,
        max_connections: a.max_connections,
        max_message_size: a.max_message_size,
        max_frame_size: a.max_frame_size,
        http_head_max: a.http_head_max,
        http_head_timeout: a.http_head_timeout,
        reuse_port: a.reuse_port.then_some(true),
    };
    let port = std::env::var("PORT").ok();
    Ok(crate::backpressure::config::load_server(a.conf.as_deref(), &flags, port.as_deref())?)
}

/// Where `bp server`'s listen address came from, as a bind error names it: `--listen`, `$PORT`
/// or `FILE: listen` (the precedence of [`crate::backpressure::config::load_server`]).
pub(crate) fn bp_listen_key(a: &BpServerArgs) -> String {
    let port_env = std::env::var("PORT").ok().filter(|p| !p.trim().is_empty());
    match (&a.listen, port_env, &a.conf) {
        (Some(_), _, _) => "--listen".into(),
        (None, Some(_), _) => "$PORT".into(),
        (None, None, Some(p)) => format!("{}: listen", p.display()),
        (None, None, None) => "--listen".into(),
    }
}

pub(crate) fn bp_client_config(a: &BpClientArgs) -> Result<crate::backpressure::config::ClientConfig, Error> {
    let flags = crate::backpressure::config::ClientOverrides {
        protocol: a.protocol,
        server: a.server.clone(),
        payload_size: a.payload_size,
        rate: a.rate,
        total: a.total,
        duration: a.duration,
        connections: a.connections,
        sndbuf: a.sndbuf,
        notsent_lowat: a.notsent_lowat,
        mss: a.mss,
        sample_interval: a.sample_interval,
        stats_interval: a.stats_interval,
        path: a.path.clone(),
    };
    Ok(crate::backpressure::config::load_client(a.conf.as_deref(), &flags)?)
}

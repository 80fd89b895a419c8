//! Configuration of `netforge bp server` and `netforge bp client`.
//!
//! Three layers, lowest first: the built-in defaults (named consts of `server`, `client` and
//! this file), the TOML file (`--conf`, optional), then for the server the `PORT` environment
//! variable, and finally command-line flags, which fill the same struct the file fills
//! ([`ServerFile`], [`ClientFile`], flattened into the clap args). Validation runs once on the
//! merged result and names where a bad value came from: `bp-server.toml:3:13: read_size: ...`,
//! `environment: PORT: ...` or `command line: --read-size: ...`. `--print-config` writes the
//! validated result back as the same struct, every key explicit.
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
//!
//! `server` holds the server's defaults, file, flags and validation, `client` the client's; this
//! file what both share: the protocol, the bounds both check, and where an error points (sizes,
//! durations and addresses are the shared types of [`crate::config`]).

mod client;
mod server;

pub(crate) use client::*;
pub(crate) use server::*;

use std::path::Path;
use std::time::Duration;

use crate::conffile::{self, ConfigError, FLAGS_LABEL};
pub(crate) use crate::config::{ByteSize, Dur, HostPort};

// ---- shared defaults and limits -------------------------------------------------------------

pub const DEFAULT_PROTOCOL: Protocol = Protocol::Tcp;
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
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
/// Worst-case buffer memory across all connections, server or client.
pub const MEMORY_LIMIT_BYTES: u64 = 4 << 30;

/// Label used in errors when no config file was given.
pub const DEFAULTS_LABEL: &str = "(defaults)";
const ENV_LABEL: &str = "environment";

crate::keyword! {
    /// Wire protocol of the lab.
    pub enum Protocol("protocol") {
        /// Raw TCP: the payload bytes are the stream.
        Tcp = "tcp",
        /// WebSocket: one binary message per payload; the server also serves the web pages.
        Websocket = "websocket" | "ws",
    }
}

/// `--mss` of bp server and client: TCP_MAXSEG, the range of the `mss` key.
pub(super) fn parse_mss(s: &str) -> Result<u32, String> {
    // MSS_MAX < u32::MAX, so the narrowing never truncates.
    crate::units::parse_int(s, u64::from(MSS_MIN), u64::from(MSS_MAX)).map(|n| n as u32)
}

/// Where each value came from, so an error names the file, the environment or the flag.
pub(super) struct Origins<'a> {
    pub(super) file: &'a Path,
    /// The file's text and where each key is written in it (`None`: no file, the defaults).
    pub(super) text: Option<(&'a str, conffile::Spans)>,
    pub(super) env: Vec<&'static str>,
    pub(super) flags: Vec<&'static str>,
}

impl<'a> Origins<'a> {
    pub(super) fn new(file: &'a Path, text: Option<&'a str>) -> Self {
        Origins { file, text: text.map(|t| (t, conffile::Spans::of(t))), env: Vec::new(), flags: Vec::new() }
    }

    pub(super) fn err(&self, key: &'static str, msg: impl Into<String>) -> ConfigError {
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

    /// `key` as an error about it begins, by where its value came from: `--flag`, `$PORT`,
    /// `FILE:LINE:COL: key`, and without a file the flag that would set it.
    pub(super) fn name(&self, key: &'static str) -> String {
        let flag = format!("--{}", key.replace('_', "-"));
        if self.flags.contains(&key) {
            flag
        } else if self.env.contains(&key) {
            "$PORT".into()
        } else {
            match self.locate(key) {
                Some((line, col)) => format!("{}:{line}:{col}: {key}", self.file.display()),
                None => flag,
            }
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

    /// Records the keys the command line gave (see [`crate::layer!`]'s `overlay`).
    pub(super) fn given(&mut self, keys: Vec<&'static str>) {
        self.flags.extend(keys);
    }

    pub(super) fn range(&self, key: &'static str, v: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(key, format!("{v} is out of range {min}..={max}")))
        }
    }

    pub(super) fn duration(
        &self,
        key: &'static str,
        v: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            let (v, min, max) =
                (crate::units::go_duration(v), crate::units::go_duration(min), crate::units::go_duration(max));
            Err(self.err(key, format!("{v} is out of range {min}..={max}")))
        }
    }

    pub(super) fn mss(&self, key: &'static str, v: Option<u32>) -> Result<Option<u32>, ConfigError> {
        v.map(|m| self.range(key, u64::from(m), u64::from(MSS_MIN), u64::from(MSS_MAX)).map(|m| m as u32)).transpose()
    }

    /// SO_SNDBUF / SO_RCVBUF: 0 (the kernel's default) or the shared range.
    pub(super) fn sockbuf(&self, key: &'static str, v: Option<ByteSize>) -> Result<Option<u32>, ConfigError> {
        match v {
            None => Ok(None),
            Some(b) => crate::units::sockbuf(b.0).map_err(|e| self.err(key, e)),
        }
    }

    /// TCP_NOTSENT_LOWAT: the shared socket-buffer range, no 0.
    pub(super) fn lowat(&self, key: &'static str, v: Option<ByteSize>) -> Result<Option<u32>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_text(text: &str) -> Result<ServerConfig, ConfigError> {
        let path = Path::new("bp-server.toml");
        server_from(conffile::parse(path, text)?, path, Some(text), &ServerFile::default(), None)
    }

    fn client_text(text: &str) -> Result<ClientConfig, ConfigError> {
        let path = Path::new("bp-client.toml");
        client_from(conffile::parse(path, text)?, path, Some(text), &ClientFile::default())
    }

    fn conf(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf").join(name)
    }

    #[test]
    fn defaults_without_a_file() {
        let s = load_server(None, &ServerFile::default(), None).unwrap();
        assert_eq!(s.protocol, Protocol::Tcp);
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((s.read_size, s.read_delay), (1024, Duration::from_millis(100)));
        assert_eq!(s.rcvbuf, Some(64 * 1024));
        assert_eq!(s.mss, None);
        assert_eq!((s.max_message_size, s.max_frame_size), (1 << 20, 256 << 10));
        let c = load_client(None, &ClientFile::default()).unwrap();
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
        let s = load_server(None, &ServerFile::default(), None).unwrap();
        let c = load_client(None, &ClientFile::default()).unwrap();
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
        let s = load_server(Some(&conf("bp-server.toml")), &ServerFile::default(), None).unwrap();
        assert_eq!(s, load_server(None, &ServerFile::default(), None).unwrap());
        let c = load_client(Some(&conf("bp-client.toml")), &ClientFile::default()).unwrap();
        assert_eq!(c, load_client(None, &ClientFile::default()).unwrap());
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
            (
                "protocol = \"udp\"\n",
                "bp-server.toml:1:12: protocol: unknown protocol \"udp\" (expected tcp or websocket)",
            ),
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
    fn precedence_file_then_port_then_flags() {
        let path = Path::new("s.toml");
        let file: ServerFile = conffile::parse(path, "listen = \"127.0.0.1:7000\"\nread_size = 2048\n").unwrap();
        let none = ServerFile::default();
        // PORT replaces the file's port.
        let s = server_from(file.clone(), path, None, &none, Some("7001")).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(s.read_size, 2048);
        // Flags beat both.
        let flags = ServerFile {
            listen: Some("127.0.0.1:7002".into()),
            read_size: Some(ByteSize(512)),
            read_delay: Some(Dur(Duration::from_millis(5))),
            ..Default::default()
        };
        let s = server_from(file.clone(), path, None, &flags, Some("7001")).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7002".parse().unwrap());
        assert_eq!((s.read_size, s.read_delay), (512, Duration::from_millis(5)));
        // Errors name their source.
        let err = server_from(file.clone(), path, None, &none, Some("x")).unwrap_err();
        assert_eq!(err.to_string(), "environment: PORT: \"x\" is not a TCP port (1-65535)");
        let bad = ServerFile { read_size: Some(ByteSize(0)), ..Default::default() };
        let err = server_from(file, path, None, &bad, None).unwrap_err();
        assert_eq!(err.to_string(), "command line: --read-size: 0 is out of range 1..=1048576");
        // A default that clashes with a flag names the flag.
        let small = ServerFile { max_message_size: Some(ByteSize(1024)), ..Default::default() };
        let err = load_server(None, &small, None).unwrap_err().to_string();
        assert!(err.starts_with("command line: --max-message-size: max_frame_size: 262144 exceeds"), "{err}");

        let cfile: ClientFile = conffile::parse(path, "rate = 5\nserver = \"example.com:80\"\n").unwrap();
        let flags =
            ClientFile { rate: Some(9), sndbuf: Some(ByteSize(4096)), path: Some("/x".into()), ..Default::default() };
        let c = client_from(cfile.clone(), path, None, &flags).unwrap();
        assert_eq!((c.rate, c.sndbuf, c.path.as_str()), (9, Some(4096), "/x"));
        assert_eq!(c.server.authority(), "example.com:80");
        // The flag has the key's range, also for overrides built by hand.
        let huge = ClientFile { total: Some(u64::MAX), ..Default::default() };
        let err = client_from(cfile.clone(), path, None, &huge).unwrap_err().to_string();
        assert_eq!(err, "command line: --total: 18446744073709551615 is out of range 0..=9223372036854775807");
        let bad = ClientFile { total: Some(0), duration: Some(Dur(Duration::ZERO)), ..Default::default() };
        assert!(client_from(cfile, path, None, &bad)
            .unwrap_err()
            .to_string()
            .starts_with("command line: --duration: "));
    }

    /// `--print-config` writes every key; what it writes loads back into the same config.
    #[test]
    fn printed_configs_load_back_the_same() {
        let servers = [
            "",
            "protocol = \"websocket\"\nlisten = \"[::1]:9000\"\nread_size = \"4KiB\"\nread_delay = \"1s500ms\"\n\
             rcvbuf = 0\nmss = 1460\nmax_message_size = 5000\nmax_frame_size = 4096\nreuse_port = true\n",
        ];
        for text in servers {
            let s = server_text(text).unwrap();
            let printed = crate::config::to_toml(&s.to_file());
            assert_eq!(server_text(&printed).unwrap(), s, "{printed}");
            assert_eq!(crate::config::to_toml(&server_text(&printed).unwrap().to_file()), printed);
        }
        let clients = [
            "",
            "protocol = \"ws\"\nserver = \"[::1]:80\"\ntotal = 100\nduration = 0\nsndbuf = \"256KiB\"\n\
             notsent_lowat = 16384\nmss = 600\nstats_interval = 0\npath = \"/x\"\n",
        ];
        for text in clients {
            let c = client_text(text).unwrap();
            let printed = crate::config::to_toml(&c.to_file());
            assert_eq!(client_text(&printed).unwrap(), c, "{printed}");
            assert!(printed.starts_with("protocol = "), "{printed}");
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
}

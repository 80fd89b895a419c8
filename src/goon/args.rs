//! `netforge goon`'s flags and their translation into [`GoonConfig`], and tcpgoon's
//! confirmation prompt. Values are checked here and refused with one line naming the flag.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;

use crate::cli::usage;
use crate::config::{resolve, resolve_threads as threads};
use crate::error::Error;
use crate::goon::traffic;
use crate::goon::{shares, GoonConfig, GoonTls, Shard, StreamTo};
use crate::net::tune::SockBufs;
use crate::result::SHARDS_MAX;
use crate::units::{self, parse_bytes_in, parse_duration_in, parse_int, parse_sockbuf, parse_threads};
use crate::units::{CONNS_MAX, MAX_DURATION, MAX_DURATION_MS};

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct GoonArgs {
    /// Target host name or IP address (IPv6 as ::1 or [::1]); resolved once, then dialed by IP.
    pub(crate) host: Option<String>,
    /// Target TCP port (1-65535).
    pub(crate) port: Option<String>,
    /// Number of connections you want to open, 1..=16777216.
    #[arg(short = 'c', long, value_name = "N", allow_hyphen_values = true, default_value_t = 100,
          value_parser = |s: &str| parse_int(s, 1, CONNS_MAX))]
    pub(crate) connections: u64,
    /// Time you want to sleep between connections, in ms, 0..=31536000000 (365 days)
    /// [default: 10].
    #[arg(short = 's', long, value_name = "MS", allow_hyphen_values = true, conflicts_with = "rate",
          value_parser = |s: &str| parse_int(s, 0, MAX_DURATION_MS))]
    pub(crate) sleep: Option<u64>,
    /// Connection dialing timeout, in ms, 1..=31536000000 (365 days).
    #[arg(short = 't', long = "dial-timeout", value_name = "MS", allow_hyphen_values = true, default_value_t = 5000,
          value_parser = |s: &str| parse_int(s, 1, MAX_DURATION_MS))]
    pub(crate) dial_timeout: u64,
    /// Time between stats updates: whole seconds or a duration (500ms), 1ms to 365 days;
    /// 0 = no status lines, only the final report (the same in goon, serve and bp client).
    #[arg(short = 'i', long, value_name = "SECONDS", allow_hyphen_values = true, default_value = "1",
          value_parser = units::parse_interval)]
    pub(crate) interval: Duration,
    /// Print debugging information to the standard error.
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Force execution without asking for confirmation (needed when stdin is not a terminal; the
    /// built-in target, without HOST and PORT, is never asked about).
    #[arg(short = 'y', long = "assume-yes")]
    pub(crate) assume_yes: bool,
    /// Keep established connections open this long after the last dial (e.g. 30s, 2m; at most
    /// 8760h); ends early if the peer has closed them all. With --duration, the hold follows
    /// the traffic phase (no new messages; answers still count); with a response mode and no
    /// --hold, the end waits up to 1s for the answers still out.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, default_value = "0",
          value_parser = |s: &str| parse_duration_in(s, Duration::ZERO, MAX_DURATION))]
    pub(crate) hold: Duration,
    /// Dial at this many connections per second instead of --sleep, 0.001..=10000000.
    #[arg(long, value_name = "PER_SECOND", allow_hyphen_values = true, value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Source address(es) to dial from, repeatable: an IP, a CIDR (127.0.1.0/24; /20../32, IPv6
    /// /116../128) or a range (127.0.0.2-127.0.0.9), at most 4096 addresses in all. Each adds a
    /// full ephemeral port range per target.
    #[arg(long = "source-ip", value_name = "IP|CIDR|RANGE")]
    pub(crate) source_ip: Vec<String>,
    /// Write the whole result as JSON (format version 2, docs/json-format.md: config, shard,
    /// host, wall-clock start and end, counts, errors, percentiles, exact moments,
    /// HdrHistograms and per-interval samples); `netforge report merge` reads it.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Also write one JSON object per interval as it happens (NDJSON: a start event, one
    /// interval event per interval, an end event with the whole result) to FILE, or to standard
    /// output with `-` (goon's text then goes to standard error).
    #[arg(long = "json-stream", value_name = "FILE|-")]
    pub(crate) json_stream: Option<String>,
    /// Run as shard I of a K-process fleet (I counted from 0): dial this shard's exact share of
    /// --connections (shares differ by at most one and sum to N) and, when several --source-ip
    /// addresses are given, only its share of them. K is 1..=65536.
    #[arg(long, value_name = "I/K", value_parser = parse_shard, conflicts_with = "shard_from_env")]
    pub(crate) shard: Option<Shard>,
    /// Read the shard index I from this environment variable, e.g. JOB_COMPLETION_INDEX in a
    /// Kubernetes Indexed Job; needs --shards K.
    #[arg(long = "shard-from-env", value_name = "VAR", requires = "shards")]
    pub(crate) shard_from_env: Option<String>,
    /// The shard count K with --shard-from-env, 1..=65536.
    #[arg(long, value_name = "K", allow_hyphen_values = true, requires = "shard_from_env",
          value_parser = |s: &str| parse_int(s, 1, SHARDS_MAX))]
    pub(crate) shards: Option<u64>,
    /// Wait until this instant, then start dialing, so shards on clock-synchronised hosts start
    /// together: RFC 3339 (2026-12-01T14:00:00Z, 2026-12-01T15:00:00.5+01:00) or Unix seconds
    /// (1796133600.5). At most 24h ahead; more than 1s in the past is an error. SIGINT/SIGTERM
    /// during the wait ends the run with nothing dialed.
    #[arg(long = "start-at", value_name = "TIME", value_parser = parse_start_at)]
    pub(crate) start_at: Option<SystemTime>,
    /// Close connections with RST (SO_LINGER 0) so no TIME_WAIT is left behind.
    #[arg(long)]
    pub(crate) linger_rst: bool,
    /// Write the result as a self-contained HTML report (connections over time, the
    /// connect-time percentile curve, errors by cause, and the TLS, WebSocket, traffic or
    /// idle-probe figures and curves of a run that has them); `report html` draws the same
    /// from the JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Reactor threads, 0..=1024, 0 = one per core [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// SO_SNDBUF for every socket (e.g. 4KiB): 1KiB..=256MiB, or 0 for the kernel's default
    /// [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_sockbuf)]
    pub(crate) sndbuf: Option<u64>,
    /// SO_RCVBUF for every socket (e.g. 4KiB), set before connect: 1KiB..=256MiB, or 0 for the
    /// kernel's default [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_sockbuf)]
    pub(crate) rcvbuf: Option<u64>,
    /// Kernel socket-buffer budget for the whole run (e.g. 512MiB), 1MiB..=1TiB, split over
    /// the sockets where --sndbuf/--rcvbuf are not given (each gets 4KiB..=256MiB).
    #[arg(long = "socket-mem", value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_socket_mem)]
    pub(crate) socket_mem: Option<u64>,
    /// After each TCP connect, a TLS handshake (rustls), then hold the connection over TLS.
    /// The handshake's deadline is --dial-timeout again, from the TCP connect. The certificate
    /// is verified against the system's roots (or --ca); the built-in sink's own self-signed
    /// certificate is trusted when no HOST is given.
    #[arg(long)]
    pub(crate) tls: bool,
    /// The TLS server name to send (SNI) and verify the certificate against, instead of HOST
    /// (a DNS name or an IP address; an IP address sends no SNI).
    #[arg(long, value_name = "NAME", requires = "tls", value_parser = crate::tls::parse_sni)]
    pub(crate) sni: Option<String>,
    /// ALPN protocols to offer, comma-separated, in order (e.g. h2,http/1.1): distinct names
    /// of 1..=255 bytes, at most 32, not `none`. The report counts handshakes per negotiated
    /// protocol, and `none` where the server chose none. The built-in sink accepts exactly
    /// these, so it negotiates the first.
    #[arg(long, value_name = "LIST", requires = "tls",
          value_parser = |s: &str| crate::tls::parse_alpn(s).map(|_| s.to_string()))]
    pub(crate) alpn: Option<String>,
    /// Accept any server certificate (no chain, name or date check; handshake signatures are
    /// still verified).
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    pub(crate) insecure: bool,
    /// Trust the CA certificates in this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca: Option<PathBuf>,
    /// Resume TLS sessions: each reactor keeps the tickets its servers sent (up to 4096) and
    /// offers them on its next handshakes; full and resumed handshakes are counted apart.
    /// Without it every handshake is a full one.
    #[arg(long = "tls-resume", requires = "tls")]
    pub(crate) tls_resume: bool,
    /// Print the resolved configuration (flags and defaults, the target's address, threads and
    /// buffer sizes as they will run) as TOML and exit, before the preflight and the prompt.
    #[arg(long)]
    pub(crate) print_config: bool,
    #[command(flatten)]
    pub(crate) probe: crate::goon::probe::args::ProbeArgs,
    /// WebSocket: after each TCP connect, upgrade to a WebSocket on this request path (starts
    /// with '/', e.g. /chat?room=1) and hold it; without HOST the built-in sink answers in
    /// its ws mode (it echoes data frames). With --message/--first-message, each message is
    /// one binary frame and the schedule starts at the upgrade.
    #[arg(long = "ws", value_name = "PATH", value_parser = |s: &str| crate::goon::ws::parse_path(s))]
    pub(crate) ws: Option<String>,
    /// With --ws: an extra request header 'Name: value', repeatable (at most 64, 4096 bytes
    /// each; Host, Upgrade, Connection and Sec-WebSocket-Key/-Version are set by netforge).
    #[arg(long = "header", value_name = "'NAME: VALUE'", requires = "ws",
          value_parser = |s: &str| crate::ws::handshake::check_header(s))]
    pub(crate) header: Vec<String>,
    /// With --ws: send a ping on every upgraded connection this often (e.g. 1s, 250ms;
    /// 1ms..=24h) and record the ping -> pong round trip. The connections' pings are spread
    /// evenly over the interval; the first comes within one interval of the upgrade.
    #[arg(long = "ws-ping", value_name = "INTERVAL", requires = "ws",
          value_parser = |s: &str| parse_duration_in(s, Duration::from_millis(1), Duration::from_secs(86_400)))]
    pub(crate) ws_ping: Option<Duration>,
    /// With --ws: how long the server may take to answer the upgrade, counted from the TCP
    /// connect (with --tls, from the TLS handshake done: wss) (1ms..=1h) [default: 10s].
    #[arg(long = "ws-timeout", value_name = "DURATION", requires = "ws",
          value_parser = |s: &str| parse_duration_in(s, Duration::from_millis(1), Duration::from_secs(3600)))]
    pub(crate) ws_timeout: Option<Duration>,
    /// The traffic flags (`--message` and the rest, see `traffic.rs`).
    #[command(flatten)]
    pub(crate) traffic: traffic::TrafficArgs,
}

/// `--rate`: connections per second, 0.001..=10000000 (a decimal number; NaN and inf refused).
pub(crate) const RATE_MIN: f64 = 0.001;
pub(crate) const RATE_MAX: f64 = 10_000_000.0;

fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 =
        t.parse().map_err(|_| format!("{t:?} is not a number of connections per second in {RATE_MIN}..={RATE_MAX}"))?;
    if !(v.is_finite() && (RATE_MIN..=RATE_MAX).contains(&v)) {
        return Err(format!("{t} is out of range {RATE_MIN}..={RATE_MAX} connections per second"));
    }
    Ok(v)
}

/// `--start-at` may lie at most this far ahead.
pub(crate) const START_AT_MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);
/// `--start-at` may lie at most this far in the past (then dialing starts at once).
pub(crate) const START_AT_MAX_LATE: Duration = Duration::from_secs(1);

/// `--shard I/K`.
pub(crate) fn parse_shard(s: &str) -> Result<Shard, String> {
    let t = s.trim();
    let (i, k) = t.split_once('/').ok_or_else(|| format!("{t:?} is not I/K (shard index / shard count, like 0/4)"))?;
    let k: u64 = k.trim().parse().map_err(|_| format!("{t:?}: the shard count {k:?} is not a number"))?;
    if !(1..=SHARDS_MAX).contains(&k) {
        return Err(format!("{t:?}: the shard count must be 1..={SHARDS_MAX}"));
    }
    shard_index(i, k).map_err(|e| format!("{t:?}: {e}"))
}

/// A shard index for `k` shards: 0..=k-1.
fn shard_index(i: &str, k: u64) -> Result<Shard, String> {
    let index: u64 = i.trim().parse().map_err(|_| format!("the shard index {i:?} is not a number 0..={}", k - 1))?;
    if index >= k {
        return Err(format!("the shard index {index} must be below the shard count {k} (0..={})", k - 1));
    }
    Ok(Shard { index, count: k })
}

/// `--start-at`: the instant, checked against now (not more than 1 s past, 24 h ahead).
pub(crate) fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    let at = crate::wallclock::parse_instant(s)?;
    check_start_at(at, SystemTime::now())?;
    Ok(at)
}

/// Refuses a start time more than [`START_AT_MAX_LATE`] past or [`START_AT_MAX_AHEAD`] ahead.
pub(crate) fn check_start_at(at: SystemTime, now: SystemTime) -> Result<(), String> {
    match now.duration_since(at) {
        Ok(late) if late > START_AT_MAX_LATE => Err(format!(
            "{} is {:.3}s in the past (more than {}s); give a time ahead, or none to start at once",
            crate::wallclock::rfc3339(at),
            late.as_secs_f64(),
            START_AT_MAX_LATE.as_secs()
        )),
        Ok(_) => Ok(()),
        Err(ahead) if ahead.duration() > START_AT_MAX_AHEAD => Err(format!(
            "{} is {:.0}s ahead, more than the {}h allowed",
            crate::wallclock::rfc3339(at),
            ahead.duration().as_secs_f64(),
            START_AT_MAX_AHEAD.as_secs() / 3600
        )),
        Err(_) => Ok(()),
    }
}

/// Which shard this process is, from `--shard` or `--shard-from-env VAR --shards K`.
fn shard_of(a: &GoonArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>, Error> {
    match (&a.shard, &a.shard_from_env, a.shards) {
        (Some(s), None, None) => Ok(Some(*s)),
        (None, Some(var), Some(k)) => {
            if !(1..=SHARDS_MAX).contains(&k) {
                return Err(usage(format!("invalid value '{k}' for '--shards': must be 1..={SHARDS_MAX}")));
            }
            let text = env(var)
                .ok_or_else(|| usage(format!("--shard-from-env {var}: the environment variable {var} is not set")))?;
            shard_index(&text, k).map(Some).map_err(|e| usage(format!("--shard-from-env {var}: {var}={text:?}: {e}")))
        }
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) => Err(usage("--shard and --shard-from-env cannot be used together".into())),
        (_, Some(_), None) => Err(usage("--shard-from-env needs --shards K".into())),
        (_, None, Some(_)) => Err(usage("--shards needs --shard-from-env VAR".into())),
    }
}

/// This shard's addresses: all of them when one is given; otherwise its exact share
/// (contiguous, sizes differing by at most one), which needs at least one per shard.
pub(crate) fn shard_sources(sources: &[std::net::IpAddr], shard: Shard) -> Result<Vec<std::net::IpAddr>, String> {
    if sources.len() <= 1 {
        return Ok(sources.to_vec());
    }
    if (sources.len() as u64) < shard.count {
        return Err(format!(
            "--source-ip: {} addresses cannot be split over {} shards (give one address for all, or at least {})",
            sources.len(),
            shard.count,
            shard.count
        ));
    }
    let sizes = shares(sources.len() as u64, shard.count as usize);
    let start: u64 = sizes[..shard.index as usize].iter().sum();
    let n = sizes[shard.index as usize];
    Ok(sources[start as usize..(start + n) as usize].to_vec())
}

/// `--socket-mem`: 1MiB..=1TiB.
fn parse_socket_mem(s: &str) -> Result<u64, String> {
    parse_bytes_in(s, 1 << 20, 1 << 40)
}

/// Parses a port argument: 1..=65535.
pub(crate) fn parse_port(text: &str) -> Result<u16, Error> {
    match text.trim().parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(usage(format!("invalid port {p}: must be 1-65535"))),
        Err(_) => Err(usage(format!("invalid port {text:?}: must be a number 1-65535"))),
    }
}

/// Checks goon's flags and builds its config (resolving the target).
pub(crate) fn goon_config(a: &GoonArgs) -> Result<GoonConfig, Error> {
    goon_config_with(a, &|var| std::env::var(var).ok())
}

/// [`goon_config`] with the environment given (for `--shard-from-env`).
pub(crate) fn goon_config_with(a: &GoonArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<GoonConfig, Error> {
    // Ranges were checked where clap parsed each value (see the value parsers above).
    let sockbuf = |v: Option<u64>| v.and_then(|v| units::sockbuf(v).ok().flatten());
    let (fleet_connections, sleep, dial_timeout) = (a.connections, a.sleep.unwrap_or(10), a.dial_timeout);
    let (sndbuf, rcvbuf) = (sockbuf(a.sndbuf), sockbuf(a.rcvbuf));
    let shard = shard_of(a, env)?;
    let traffic = a.traffic.plan()?;
    let connections = match shard {
        Some(s) if s.count > fleet_connections => {
            return Err(usage(format!(
                "--shard {}/{}: --connections {fleet_connections} leaves some of the {} shards no connection (give at least one per shard)",
                s.index, s.count, s.count
            )))
        }
        Some(s) => shares(fleet_connections, s.count as usize)[s.index as usize],
        None => fleet_connections,
    };
    let probe = crate::goon::probe::args::probe_config(&a.probe, connections).map_err(usage)?;
    // `--probe-group N`: N per group is this process's whole count.
    let (connections, fleet_connections) = match (&probe, a.probe.probe_group) {
        (Some(p), Some(_)) => {
            let n: u64 = p.per_group.iter().sum();
            (n, n * shard.map_or(1, |s| s.count))
        }
        _ => (connections, fleet_connections),
    };
    if let Some(at) = a.start_at {
        check_start_at(at, SystemTime::now()).map_err(|e| usage(format!("--start-at: {e}")))?;
    }
    let json_stream = match a.json_stream.as_deref() {
        None => None,
        Some("-") => Some(StreamTo::Stdout),
        Some("") => return Err(usage("--json-stream: empty file name (give a file, or - for standard output)".into())),
        Some(f) => Some(StreamTo::File(PathBuf::from(f))),
    };
    let (host, target, builtin) = match (&a.host, &a.port) {
        (None, None) => ("127.0.0.1".to_string(), SocketAddr::from(([127, 0, 0, 1], 0)), true),
        (Some(h), None) => return Err(usage(format!("missing <port> after host {h:?}"))),
        (Some(h), Some(p)) => {
            let port = parse_port(p)?;
            (h.clone(), resolve(h, port)?, false)
        }
        (None, Some(_)) => unreachable!("clap fills host before port"),
    };
    let mut sources = crate::net::connect::parse_sources(&a.source_ip).map_err(usage)?;
    if let Some(s) = shard {
        sources = shard_sources(&sources, s).map_err(usage)?;
    }
    if let Some(bad) = sources.iter().find(|s| s.is_ipv4() != target.is_ipv4()) {
        return Err(usage(format!("--source-ip {bad} is not of the target's address family ({})", target.ip())));
    }
    crate::net::connect::check_local_sources(&sources).map_err(usage)?;
    let threads = threads(a.threads);
    // One slice of the ephemeral range per reactor that will run (goon::run starts at most one
    // reactor per connection).
    let reactors = threads.max(1).min(connections as usize);
    let port_slices = match crate::sys::local_port_range() {
        Some((lo, hi)) if crate::net::connect::local_port_range_works() => {
            crate::net::connect::port_slices(lo, hi, reactors).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let tls = goon_tls(a, &host, builtin)?;
    if a.header.len() > crate::ws::handshake::EXTRA_HEADERS_MAX {
        return Err(usage(format!(
            "--header: {} given, at most {} are allowed",
            a.header.len(),
            crate::ws::handshake::EXTRA_HEADERS_MAX
        )));
    }
    let ws = a.ws.as_ref().map(|path| crate::goon::ws::WsConfig {
        path: path.clone(),
        headers: a.header.clone(),
        ping: a.ws_ping,
        timeout: a.ws_timeout.unwrap_or(crate::goon::ws::DEFAULT_UPGRADE_TIMEOUT),
    });
    let sockets = if builtin { connections * 2 } else { connections };
    let bufs = SockBufs::policy(sndbuf.map(|v| v as usize), rcvbuf.map(|v| v as usize), a.socket_mem, sockets);
    Ok(GoonConfig {
        host,
        target,
        connections,
        sleep: Duration::from_millis(sleep),
        rate: a.rate,
        dial_timeout: Duration::from_millis(dial_timeout),
        interval: a.interval,
        hold: a.hold,
        sources,
        linger_rst: a.linger_rst,
        threads,
        bufs,
        json: a.json.clone(),
        html: a.html.clone(),
        builtin,
        fleet_connections,
        shard,
        start_at: a.start_at,
        json_stream,
        argv: std::env::args().collect(),
        port_slices,
        probe,
        tls,
        ws,
        traffic,
    })
}

/// `--tls` and its flags: the client configuration (roots read now, before any reactor
/// starts), the name to verify, and for the built-in sink its server configuration, whose
/// self-signed certificate the client then trusts (unless --insecure or --ca say otherwise).
fn goon_tls(a: &GoonArgs, host: &str, builtin: bool) -> Result<Option<GoonTls>, Error> {
    if !a.tls {
        return Ok(None);
    }
    let options = crate::tls::ClientOptions {
        sni: a.sni.clone(),
        alpn: crate::tls::alpn_flag(a.alpn.as_deref())?,
        insecure: a.insecure,
        resume: a.tls_resume,
        ca: a.ca.clone(),
    };
    let name = crate::tls::server_name(options.sni.as_deref(), host).map_err(|e| usage(format!("--tls: {e}")))?;
    let (client, sink) = if builtin {
        // The sink accepts exactly what goon offers, so the first offered protocol is negotiated.
        let (server, cert) = crate::tls::server_config_and_chain(
            &crate::tls::ServerCert::self_signed_for([127, 0, 0, 1].into()),
            &options.alpn,
        )
        .map_err(usage)?;
        let trust = (!options.insecure && options.ca.is_none()).then_some(&cert[0]);
        (options.config_trusting(trust).map_err(usage)?, Some(server))
    } else {
        (options.config().map_err(usage)?, None)
    };
    Ok(Some(GoonTls { options, name, client, sink }))
}

/// tcpgoon's confirmation: `y`/`yes` continue, anything else (empty included) aborts.
pub(crate) fn confirm_answer(line: &str) -> bool {
    matches!(line.trim_end_matches(['\r', '\n']).trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Asks on stderr; refuses when stdin is not a terminal (a script must pass -y).
pub(crate) fn confirm(cfg: &GoonConfig) -> Result<bool, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "refusing to start without confirmation: stdin is not a terminal; pass -y/--assume-yes to run unattended"
                .into(),
        ));
    }
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "****************************** WARNING ******************************\n\
         * You are going to run a TCP stress check with these arguments:\n\
         \t- Target: {} ({})\n\t- TCP Port: {}\n\t- # of concurrent connections: {}\n\
         \t- Connections interval: {}\n\t- Dial timeout: {} ms\n\t- Stats interval: {}\n\
         *********************************************************************\n\
         Do you want to continue? (y/N): ",
        cfg.host,
        cfg.target.ip(),
        cfg.target.port(),
        cfg.connections,
        match cfg.rate {
            Some(r) => format!("{r} connections/s"),
            None => format!("{} ms", cfg.sleep.as_millis()),
        },
        cfg.dial_timeout.as_millis(),
        match cfg.interval {
            Duration::ZERO => "none (0)".to_string(),
            d => units::go_duration(d),
        }
    );
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(confirm_answer(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        for yes in ["y\n", "Y\r\n", "yes\n", "YES", " y "] {
            assert!(confirm_answer(yes), "{yes:?}");
        }
        for no in ["", "\n", "n\n", "no\r\n", "yep", "q"] {
            assert!(!confirm_answer(no), "{no:?}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("80").unwrap(), 80);
        for bad in ["0", "70000", "-1", "http", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_take_exact_shares() {
        for (n, k) in [(95_000u64, 5u64), (10, 3), (7, 7), (100_001, 16), (1, 1)] {
            let parts: Vec<u64> = (0..k).map(|i| shares(n, k as usize)[i as usize]).collect();
            assert_eq!(parts.iter().sum::<u64>(), n, "{n}/{k}");
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1, "{n}/{k}: {parts:?}");
        }
        assert_eq!(parse_shard("2/5").unwrap(), Shard { index: 2, count: 5 });
        assert_eq!(parse_shard(" 0 / 1 ").unwrap(), Shard { index: 0, count: 1 });
        for (bad, why) in [
            ("5/5", "must be below the shard count 5 (0..=4)"),
            ("0/0", "the shard count must be 1..=65536"),
            ("1", "is not I/K"),
            ("a/4", "the shard index \"a\" is not a number 0..=3"),
            ("1/x", "the shard count \"x\" is not a number"),
            ("-1/4", "is not a number"),
            ("0/65537", "1..=65536"),
        ] {
            let e = parse_shard(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn source_addresses_split_over_shards() {
        let ips: Vec<std::net::IpAddr> = (0..10u8).map(|i| std::net::IpAddr::from([127, 0, 1, i])).collect();
        let mut all = Vec::new();
        for i in 0..3 {
            let part = shard_sources(&ips, Shard { index: i, count: 3 }).unwrap();
            assert!((3..=4).contains(&part.len()), "{part:?}");
            all.extend(part);
        }
        assert_eq!(all, ips, "disjoint, in order, complete");
        let one = &ips[..1];
        assert_eq!(shard_sources(one, Shard { index: 4, count: 5 }).unwrap(), one, "one address: every shard uses it");
        let e = shard_sources(&ips[..3], Shard { index: 0, count: 5 }).unwrap_err();
        assert_eq!(
            e,
            "--source-ip: 3 addresses cannot be split over 5 shards (give one address for all, or at least 5)"
        );
    }

    fn parsed(args: &[&str]) -> GoonArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            goon: GoonArgs,
        }
        let mut argv = vec!["goon"];
        argv.extend_from_slice(args);
        Wrap::try_parse_from(argv).map(|w| w.goon).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn shard_from_the_environment() {
        let cfg = |args: &[&str], env: Option<&str>| {
            let env = env.map(str::to_string);
            goon_config_with(&parsed(args), &move |var| {
                assert_eq!(var, "JOB_COMPLETION_INDEX");
                env.clone()
            })
        };
        let base = ["127.0.0.1", "9", "-c", "10", "--shard-from-env", "JOB_COMPLETION_INDEX", "--shards", "4"];
        let c = cfg(&base, Some("3")).unwrap();
        assert_eq!((c.shard, c.connections, c.fleet_connections), (Some(Shard { index: 3, count: 4 }), 2, 10));
        let c = cfg(&base, Some("0")).unwrap();
        assert_eq!(c.connections, 3);
        let e = cfg(&base, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "--shard-from-env JOB_COMPLETION_INDEX: the environment variable JOB_COMPLETION_INDEX is not set"
        );
        let e = cfg(&base, Some("x")).unwrap_err().to_string();
        assert!(
            e.starts_with("--shard-from-env JOB_COMPLETION_INDEX: JOB_COMPLETION_INDEX=\"x\": the shard index"),
            "{e}"
        );
        let e = cfg(&base, Some("4")).unwrap_err().to_string();
        assert!(e.contains("must be below the shard count 4"), "{e}");
        let e = cfg(&["127.0.0.1", "9", "-c", "3", "--shard", "0/4"], None).unwrap_err().to_string();
        assert!(e.starts_with("--shard 0/4: --connections 3 leaves some of the 4 shards no connection"), "{e}");
    }

    #[test]
    fn tls_flags() {
        let c = goon_config_with(&parsed(&["--tls", "-c", "2"]), &|_| None).unwrap();
        let t = c.tls.expect("--tls");
        assert!(t.sink.as_ref().is_some_and(|s| s.alpn_protocols.is_empty()), "the built-in sink serves TLS");
        assert_eq!(t.options, crate::tls::ClientOptions::default());
        let c = goon_config_with(&parsed(&["--tls", "-c", "2", "--alpn", "h2,http/1.1"]), &|_| None).unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.sink.unwrap().alpn_protocols, t.client.alpn_protocols, "the sink accepts what goon offers");
        let c = goon_config_with(
            &parsed(&[
                "127.0.0.1",
                "9",
                "--tls",
                "--insecure",
                "--sni",
                "a.example",
                "--alpn",
                "h2,http/1.1",
                "--tls-resume",
            ]),
            &|_| None,
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert!(t.sink.is_none());
        assert_eq!(t.options.sni.as_deref(), Some("a.example"));
        assert_eq!(t.options.alpn, ["h2", "http/1.1"]);
        assert!(t.options.insecure && t.options.resume);
        assert_eq!(t.client.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(goon_config_with(&parsed(&["-c", "1"]), &|_| None).unwrap().tls.is_none());
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Wrap {
            #[command(flatten)]
            goon: GoonArgs,
        }
        for (bad, flag) in [
            (&["--sni", "a.example"][..], "--tls"),
            (&["--tls-resume"][..], "--tls"),
            (&["--tls", "--alpn", ""][..], "--alpn"),
            (&["--tls", "--sni", "not a name"][..], "--sni"),
            (&["--tls", "--insecure", "--ca", "x.pem"][..], "--ca"),
        ] {
            let e = Wrap::try_parse_from([&["goon"][..], bad].concat()).unwrap_err().to_string();
            assert!(e.contains(flag), "{bad:?}: {e}");
        }
        let e = goon_config_with(&parsed(&["127.0.0.1", "9", "--tls", "--ca", "/nonexistent/ca.pem"]), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--ca /nonexistent/ca.pem: cannot open"), "{e}");
    }

    #[test]
    fn websocket_flags() {
        let c = goon_config_with(
            &parsed(&["127.0.0.1", "9", "--ws", "/chat", "--header", "X-A:  1", "--ws-ping", "250ms"]),
            &|_| None,
        )
        .unwrap();
        let ws = c.ws.unwrap();
        assert_eq!(
            (ws.path.as_str(), ws.headers, ws.ping),
            ("/chat", vec!["X-A: 1".to_string()], Some(Duration::from_millis(250)))
        );
        assert_eq!(ws.timeout, crate::goon::ws::DEFAULT_UPGRADE_TIMEOUT);
        assert!(goon_config_with(&parsed(&["127.0.0.1", "9"]), &|_| None).unwrap().ws.is_none());
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Wrap {
            #[command(flatten)]
            goon: GoonArgs,
        }
        for (args, why) in [
            (&["--ws", "chat"][..], "does not start with '/'"),
            (&["--header", "X: 1"][..], "--ws"),
            (&["--ws", "/", "--header", "Host: x"][..], "set by the handshake itself"),
            (&["--ws", "/", "--header", "nocolon"][..], "is not 'Name: value'"),
            (&["--ws", "/", "--ws-ping", "0s"][..], "--ws-ping"),
            (&["--ws-ping", "1s"][..], "--ws"),
        ] {
            let mut argv = vec!["goon"];
            argv.extend_from_slice(args);
            let e = Wrap::try_parse_from(argv).unwrap_err().to_string();
            assert!(e.contains(why), "{args:?}: {e}");
        }
    }

    #[test]
    fn start_at_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_133_600);
        assert!(check_start_at(now, now).is_ok());
        assert!(check_start_at(now - Duration::from_millis(999), now).is_ok(), "under a second late: start at once");
        let e = check_start_at(now - Duration::from_millis(1500), now).unwrap_err();
        assert_eq!(e, "2026-12-01T13:59:58.500000Z is 1.500s in the past (more than 1s); give a time ahead, or none to start at once");
        assert!(check_start_at(now + Duration::from_secs(24 * 3600), now).is_ok());
        let e = check_start_at(now + Duration::from_secs(24 * 3600 + 1), now).unwrap_err();
        assert!(e.ends_with("is 86401s ahead, more than the 24h allowed"), "{e}");
    }
}

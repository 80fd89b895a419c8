//! Command line: clap definitions and their translation into each role's config. Values are
//! checked here and refused with one line naming the flag; nothing below this layer sees an
//! unchecked argument.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::backpressure::config as bp;
use crate::error::Error;
use crate::goon::GoonConfig;
use crate::net::tune::SockBufs;
use crate::serve::ServeConfig;
use crate::target::Mode;
use crate::units::{self, parse_bytes_in, parse_duration_in, parse_int, parse_sockbuf, parse_threads};
use crate::units::{CONNS_MAX, MAX_DURATION, MAX_DURATION_MS};

#[derive(Parser, Debug)]
#[command(
    name = "netforge",
    version,
    about = "TCP connection stressor, L4 load balancer and backpressure lab on one event-loop engine",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Open many concurrent TCP connections to HOST PORT and report how they fare (tcpgoon's
    /// interface). Without HOST and PORT it stresses a built-in sink in the same process.
    Goon(GoonArgs),
    /// A TCP target on the same engine: hold, echo or discard connections.
    Serve(ServeArgs),
    /// An L4 (TCP) load balancer: `--conf lb.toml`, or the quick-start flags and a list of
    /// backends (`--laddr 127.0.0.1:4000 --lb p2c --timeout 3s 127.0.0.1:8001 127.0.0.1:8002`).
    Proxy(ProxyArgs),
    // ---- backpressure lab (bp) ------------------------------------------------------------
    /// The TCP backpressure lab: a deliberately slow reader and a client that shows whether
    /// the "slow down" reached it.
    #[command(subcommand)]
    Bp(BpCmd),
    // ---- end of backpressure lab ----------------------------------------------------------
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ProxyArgs {
    /// Configuration file (see conf/lb.toml); excludes --laddr/--lb/--timeout and BACKEND.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["laddr", "lb", "timeout", "backends"])]
    pub(crate) conf: Option<PathBuf>,
    /// Address to listen on (quick start) [default: 127.0.0.1:4000].
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) laddr: Option<String>,
    /// Load-balancing algorithm: random, p2c, round_robin or least_conn (quick start)
    /// [default: p2c].
    #[arg(long, value_name = "ALGO")]
    pub(crate) lb: Option<String>,
    /// Backend connect timeout, e.g. 3s; above 0, at most 8760h (quick start) [default: 3s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |s: &str| parse_duration_in(s, Duration::from_nanos(1), MAX_DURATION))]
    pub(crate) timeout: Option<Duration>,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// Reactor threads, 0..=1024, 0 = one per core (overrides `threads` in the file)
    /// [default: the file's `threads`; 0 without --conf].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Admin (/metrics) address, overriding the file's; "" disables it.
    #[arg(long)]
    pub(crate) admin: Option<String>,
    /// TCP congestion control of the client and backend sockets (health checks keep the
    /// kernel's default), overriding the file's keys, also on SIGHUP: an algorithm the kernel
    /// has (e.g. cubic), or "system" for its default.
    #[arg(long, value_name = "NAME")]
    pub(crate) congestion: Option<String>,
    /// Share the listener addresses with other processes listening on them with SO_REUSEPORT
    /// (the kernel spreads new connections over all of them), like reuse_port = true in the
    /// file. Without it, an address another process listens on is refused.
    #[arg(long)]
    pub(crate) reuse_port: bool,
    /// Backends, host:port (quick start).
    #[arg(value_name = "BACKEND")]
    pub(crate) backends: Vec<String>,
}

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
    /// Time between stats updates: whole seconds or a duration (500ms), at most 365 days;
    /// 0 = no status lines, only the final report (the same in every role).
    #[arg(short = 'i', long, value_name = "SECONDS", allow_hyphen_values = true, default_value = "1",
          value_parser = units::parse_interval)]
    pub(crate) interval: Duration,
    /// Print debugging information to the standard error.
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Force execution without asking for confirmation.
    #[arg(short = 'y', long = "assume-yes")]
    pub(crate) assume_yes: bool,
    /// Keep established connections open this long after the last dial (e.g. 30s, 2m; at most
    /// 8760h); ends early if the peer has closed them all.
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
    /// Write the whole result (config, counts, errors, percentiles, HdrHistograms) as JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Close connections with RST (SO_LINGER 0) so no TIME_WAIT is left behind.
    #[arg(long)]
    pub(crate) linger_rst: bool,
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
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed on the first line).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,
    /// What to do with each connection.
    #[arg(long, value_enum, default_value_t = Mode::Hold)]
    pub(crate) mode: Mode,
    /// Most connections held at once, 1..=16777216, counted over all reactors; beyond it clients
    /// wait in the kernel's listen backlog until one closes [default: 100000, or the open-file
    /// limit minus 64 when that is lower].
    #[arg(long = "max-conns", value_name = "N", allow_hyphen_values = true,
          value_parser = |s: &str| parse_int(s, 1, CONNS_MAX).map(|n| n as usize))]
    pub(crate) max_conns: Option<usize>,
    /// Reactor threads, 0..=1024, 0 = one per core [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Time between stats lines: whole seconds or a duration (500ms), at most 365 days;
    /// 0 = no status lines, only the final report (the same in every role).
    #[arg(short = 'i', long, value_name = "SECONDS", allow_hyphen_values = true, default_value = "1",
          value_parser = units::parse_interval)]
    pub(crate) interval: Duration,
    /// SO_SNDBUF for accepted sockets: 1KiB..=256MiB, or 0 for the kernel's default [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_sockbuf)]
    pub(crate) sndbuf: Option<u64>,
    /// SO_RCVBUF for accepted sockets: 1KiB..=256MiB, or 0 for the kernel's default [default: 0].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_sockbuf)]
    pub(crate) rcvbuf: Option<u64>,
    /// Share the --listen address with other processes listening on it with SO_REUSEPORT (the
    /// kernel spreads new connections over all of them). Without it, an address another
    /// process listens on is refused.
    #[arg(long)]
    pub(crate) reuse_port: bool,
}

/// `--rate`: connections per second, 0.001..=10000000 (a decimal number; NaN and inf refused).
pub const RATE_MIN: f64 = 0.001;
pub const RATE_MAX: f64 = 10_000_000.0;

fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 =
        t.parse().map_err(|_| format!("{t:?} is not a number of connections per second in {RATE_MIN}..={RATE_MAX}"))?;
    if !(v.is_finite() && (RATE_MIN..=RATE_MAX).contains(&v)) {
        return Err(format!("{t} is out of range {RATE_MIN}..={RATE_MAX} connections per second"));
    }
    Ok(v)
}

/// `--socket-mem`: 1MiB..=1TiB.
fn parse_socket_mem(s: &str) -> Result<u64, String> {
    parse_bytes_in(s, 1 << 20, 1 << 40)
}

/// Reactor threads: the flag (already checked to be 0..=1024 where parsed), 0 or none meaning
/// one per core.
pub fn threads(flag: Option<usize>) -> usize {
    flag.filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(units::THREADS_MAX as usize)
}

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

/// Parses a port argument: 1..=65535.
pub fn parse_port(text: &str) -> Result<u16, Error> {
    match text.trim().parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(usage(format!("invalid port {p}: must be 1-65535"))),
        Err(_) => Err(usage(format!("invalid port {text:?}: must be a number 1-65535"))),
    }
}

/// Resolves `host` once (blocking; only ever called before the reactors start).
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err(usage("empty host".into()));
    }
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = (bare, port).to_socket_addrs().map_err(|source| Error::Resolve { host: bare.into(), source })?;
    addrs.next().ok_or_else(|| Error::Resolve {
        host: bare.into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
    })
}

/// Checks goon's flags and builds its config (resolving the target).
pub fn goon_config(a: &GoonArgs) -> Result<GoonConfig, Error> {
    // Ranges were checked where clap parsed each value (see the value parsers above); this
    // repeats the checks for a GoonArgs built by hand.
    let check = |flag: &str, v: u64, min: u64, max: u64| {
        units::in_range(v, min, max).map_err(|e| usage(format!("invalid value '{v}' for '{flag}': {e}")))
    };
    let connections = check("--connections", a.connections, 1, CONNS_MAX)?;
    let sleep = check("--sleep", a.sleep.unwrap_or(10), 0, MAX_DURATION_MS)?;
    let dial_timeout = check("--dial-timeout", a.dial_timeout, 1, MAX_DURATION_MS)?;
    let interval = units::duration_in(a.interval, Duration::ZERO, units::MAX_DURATION)
        .map_err(|e| usage(format!("invalid value for '--interval': {e}")))?;
    if let Some(r) = a.rate {
        parse_rate(&r.to_string()).map_err(|e| usage(format!("invalid value '{r}' for '--rate': {e}")))?;
    }
    let sockbuf = |flag: &str, v: Option<u64>| {
        v.map(units::sockbuf)
            .transpose()
            .map(Option::flatten)
            .map_err(|e| usage(format!("invalid value '{}' for '{flag}': {e}", v.unwrap_or(0))))
    };
    let (sndbuf, rcvbuf) = (sockbuf("--sndbuf", a.sndbuf)?, sockbuf("--rcvbuf", a.rcvbuf)?);
    let (host, target, builtin) = match (&a.host, &a.port) {
        (None, None) => ("127.0.0.1".to_string(), SocketAddr::from(([127, 0, 0, 1], 0)), true),
        (Some(h), None) => return Err(usage(format!("missing <port> after host {h:?}"))),
        (Some(h), Some(p)) => {
            let port = parse_port(p)?;
            (h.clone(), resolve(h, port)?, false)
        }
        (None, Some(_)) => unreachable!("clap fills host before port"),
    };
    let sources = crate::net::connect::parse_sources(&a.source_ip).map_err(usage)?;
    if let Some(bad) = sources.iter().find(|s| s.is_ipv4() != target.is_ipv4()) {
        return Err(usage(format!("--source-ip {bad} is not of the target's address family ({})", target.ip())));
    }
    let threads = threads(a.threads);
    let sockets = if builtin { connections * 2 } else { connections };
    let bufs = SockBufs::policy(sndbuf.map(|v| v as usize), rcvbuf.map(|v| v as usize), a.socket_mem, sockets);
    Ok(GoonConfig {
        host,
        target,
        connections,
        sleep: Duration::from_millis(sleep),
        rate: a.rate,
        dial_timeout: Duration::from_millis(dial_timeout),
        interval,
        hold: a.hold,
        sources,
        linger_rst: a.linger_rst,
        threads,
        bufs,
        json: a.json.clone(),
        builtin,
    })
}

pub fn serve_config(a: &ServeArgs) -> Result<ServeConfig, Error> {
    let listen: SocketAddr = a
        .listen
        .parse()
        .map_err(|_| usage(format!("--listen {:?}: expected IP:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)", a.listen)))?;
    let bad = |flag: &str, v: u64, e: String| usage(format!("invalid value '{v}' for '{flag}': {e}"));
    // The flag's parser already checked 1..=CONNS_MAX.
    let max_conns = a.max_conns.unwrap_or_else(crate::serve::default_max_conns);
    let interval = units::duration_in(a.interval, Duration::ZERO, units::MAX_DURATION)
        .map_err(|e| usage(format!("invalid value for '--interval': {e}")))?;
    let sockbuf = |flag: &str, v: Option<u64>| match v {
        None => Ok(None),
        Some(v) => units::sockbuf(v).map(|b| b.map(|b| b as usize)).map_err(|e| bad(flag, v, e)),
    };
    Ok(ServeConfig {
        listen,
        mode: a.mode,
        max_conns,
        threads: threads(a.threads),
        interval,
        bufs: SockBufs { sndbuf: sockbuf("--sndbuf", a.sndbuf)?, rcvbuf: sockbuf("--rcvbuf", a.rcvbuf)? },
        reuse_port: a.reuse_port,
    })
}

/// `proxy --laddr` when the quick start does not give one.
pub const DEFAULT_LADDR: &str = "127.0.0.1:4000";

/// Builds the proxy config from `--conf` or the quick-start flags, then applies `--admin`.
pub fn proxy_config(a: &ProxyArgs) -> Result<crate::proxy::config::ProxyConfig, Error> {
    use crate::proxy::config;
    let mut cfg = match &a.conf {
        Some(path) => config::load(path)?,
        None => {
            if a.backends.is_empty() {
                return Err(usage("proxy: give --conf FILE, or backends to forward to (e.g. 127.0.0.1:8001)".into()));
            }
            config::from_flags(
                a.laddr.as_deref().unwrap_or(DEFAULT_LADDR),
                a.lb.as_deref().unwrap_or(config::DEFAULT_BALANCE.as_str()),
                a.timeout.unwrap_or(config::DEFAULT_CONNECT_TIMEOUT),
                &a.backends,
            )
            .map_err(usage)?
        }
    };
    let mut o = config::Overrides { threads: a.threads, reuse_port: a.reuse_port, ..config::Overrides::default() };
    if let Some(admin) = &a.admin {
        o.admin = Some(if admin.trim().is_empty() {
            None
        } else {
            Some(admin.trim().parse().map_err(|_| usage(format!("--admin {admin:?}: expected IP:PORT or \"\"")))?)
        });
    }
    if let Some(name) = &a.congestion {
        o.congestion = Some(match name.trim() {
            config::SYSTEM_CONGESTION => None,
            n => Some(crate::net::tune::Congestion::probe(n).map_err(|e| usage(format!("--congestion: {e}")))?),
        });
    }
    cfg.apply_overrides(o);
    // The file's own check (`listener[0].address: ... is also the admin address`), for an
    // address set by --admin or --laddr.
    if let Some(admin) = cfg.admin {
        if let Some((i, l)) = cfg.listeners.iter().enumerate().find(|(_, l)| l.address == admin && admin.port() != 0) {
            let whose = if a.admin.is_some() { "(--admin)" } else { "(the default; move it with --admin)" };
            return Err(match &cfg.source {
                Some(p) => usage(format!(
                    "{}: listener[{i}].address: {} is also the admin address {whose}; move one of them",
                    p.display(),
                    l.address
                )),
                None => usage(format!("--laddr: {} is also the admin address {whose}; move one of them", l.address)),
            });
        }
    }
    Ok(cfg)
}

/// The subcommand path (`["bp", "client"]`) named by a command line (`argv` without the
/// program name), for the usage line of an error clap raised before `Cmd` existed.
pub fn subcommand_path(argv: &[String]) -> Vec<String> {
    let mut c = {
        use clap::CommandFactory;
        Cli::command()
    };
    let mut path = Vec::new();
    for a in argv {
        if a.starts_with('-') {
            continue;
        }
        match c.find_subcommand(a) {
            Some(sub) => {
                path.push(a.clone());
                let sub = sub.clone();
                c = sub;
            }
            None => break,
        }
    }
    path
}

/// The `Usage:` line `--help` prints for the subcommand at `path`, as `usage: netforge ...`
/// for the end of a one-line error.
pub fn usage_line(path: &[String]) -> String {
    use clap::CommandFactory;
    let mut c = Cli::command();
    c.build();
    for name in path {
        match c.find_subcommand(name) {
            Some(sub) => {
                let sub = sub.clone();
                c = sub;
            }
            None => break,
        }
    }
    let text = c.render_usage().to_string();
    let text = text.trim();
    format!("usage: {}", text.strip_prefix("Usage: ").unwrap_or(text))
}

/// clap's rendered error (`error: ...`, a hint, `Usage: ...`, `For more information ...`) as
/// one line: the reason, naming the flag, then `usage`.
pub fn one_line_clap_error(rendered: &str, usage: &str) -> String {
    let first = rendered.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid command line");
    let reason = first.strip_prefix("error: ").unwrap_or(first);
    format!("{reason}; {usage} (see --help)")
}

/// tcpgoon's confirmation: `y`/`yes` continue, anything else (empty included) aborts.
pub fn confirm_answer(line: &str) -> bool {
    matches!(line.trim_end_matches(['\r', '\n']).trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Asks on stderr; refuses when stdin is not a terminal (a script must pass -y).
pub fn confirm(cfg: &GoonConfig) -> Result<bool, Error> {
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

    /// Every option of `bp server` and `bp client` says what it does and its default; the
    /// proxy's quick-start flags show the defaults the code applies.
    #[test]
    fn help_shows_descriptions_and_defaults() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let bp = cli.find_subcommand("bp").unwrap();
        for name in ["server", "client"] {
            let sub = bp.find_subcommand(name).unwrap();
            for arg in sub.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.len() > 10, "bp {name} --{}: no description", arg.get_id());
                assert!(help.contains("[default: "), "bp {name} --{}: no default in {help:?}", arg.get_id());
            }
        }
        let proxy = cli.find_subcommand("proxy").unwrap();
        let help = |id: &str| proxy.get_arguments().find(|a| a.get_id() == id).unwrap().get_help().unwrap().to_string();
        use crate::proxy::config::{DEFAULT_BALANCE, DEFAULT_CONNECT_TIMEOUT};
        assert!(help("laddr").contains(&format!("[default: {DEFAULT_LADDR}]")), "{}", help("laddr"));
        assert!(help("lb").contains(&format!("[default: {}]", DEFAULT_BALANCE.as_str())), "{}", help("lb"));
        let t = crate::units::go_duration(DEFAULT_CONNECT_TIMEOUT);
        assert!(help("timeout").contains(&format!("[default: {t}]")), "{}", help("timeout"));
    }

    #[test]
    fn v6_literals_resolve_without_dns() {
        assert_eq!(resolve("::1", 80).unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(resolve("[::1]", 80).unwrap(), "[::1]:80".parse().unwrap());
    }
}

// ---- backpressure lab (bp) ----------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum BpCmd {
    /// Listen and read slowly (read_size bytes every read_delay) so the TCP window closes.
    Server(BpServerArgs),
    /// Push payloads to a bp server and report whether backpressure reached this socket.
    Client(BpClientArgs),
}

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
}

pub fn bp_server_config(a: &BpServerArgs) -> Result<crate::backpressure::config::ServerConfig, Error> {
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
pub fn bp_listen_key(a: &BpServerArgs) -> String {
    let port_env = std::env::var("PORT").ok().filter(|p| !p.trim().is_empty());
    match (&a.listen, port_env, &a.conf) {
        (Some(_), _, _) => "--listen".into(),
        (None, Some(_), _) => "$PORT".into(),
        (None, None, Some(p)) => format!("{}: listen", p.display()),
        (None, None, None) => "--listen".into(),
    }
}

pub fn bp_client_config(a: &BpClientArgs) -> Result<crate::backpressure::config::ClientConfig, Error> {
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

// ---- end of backpressure lab ----------------------------------------------------------------

//! `netforge goon`'s flags and their translation into [`GoonConfig`], and tcpgoon's
//! confirmation prompt. Values are checked here and refused with one line naming the flag.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::{resolve, threads, usage};
use crate::error::Error;
use crate::goon::GoonConfig;
use crate::net::tune::SockBufs;
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
    // One slice of the ephemeral range per reactor that will run (goon::run starts at most one
    // reactor per connection).
    let reactors = threads.max(1).min(connections as usize);
    let port_slices = match crate::sys::local_port_range() {
        Some((lo, hi)) if crate::net::connect::local_port_range_works() => {
            crate::net::connect::port_slices(lo, hi, reactors).unwrap_or_default()
        }
        _ => Vec::new(),
    };
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
        port_slices,
    })
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
}

//! Command line: the top-level clap definitions (`Cli`, `Cmd`, `BpCmd`) and what every role's
//! flags share: thread count, name resolution, usage errors, the usage line of `--help` and
//! one-line clap errors. Each role's flags and their translation into its config live in the
//! role (`goon::args`, `serve::args`, `proxy::args`, `backpressure::args`); values are checked
//! there and refused with one line naming the flag, so nothing below sees an unchecked argument.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::{Parser, Subcommand};

pub use crate::backpressure::args::{BpClientArgs, BpServerArgs};
use crate::error::Error;
pub use crate::goon::args::GoonArgs;
pub use crate::html_report::HtmlArgs;
pub use crate::proxy::args::ProxyArgs;
pub use crate::serve::args::ServeArgs;
use crate::units;

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
    /// Work on the JSON results goon and bp client write.
    #[command(subcommand)]
    Report(ReportCmd),
}

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// One self-contained HTML page (inline charts and tables, no network) for goon results
    /// (one run, the shard files of a fleet, or a merged fleet) or a bp client result.
    Html(HtmlArgs),
}

// ---- backpressure lab (bp) ----------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum BpCmd {
    /// Listen and read slowly (read_size bytes every read_delay) so the TCP window closes.
    Server(BpServerArgs),
    /// Push payloads to a bp server and report whether backpressure reached this socket.
    Client(BpClientArgs),
}

/// Reactor threads: the flag (already checked to be 0..=1024 where parsed), 0 or none meaning
/// one per core.
pub fn threads(flag: Option<usize>) -> usize {
    flag.filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(units::THREADS_MAX as usize)
}

pub(crate) fn usage(msg: String) -> Error {
    Error::Usage(msg)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        use crate::proxy::args::DEFAULT_LADDR;
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

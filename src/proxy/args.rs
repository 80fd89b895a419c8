//! `netforge proxy`'s flags: `--conf FILE` or the quick-start flags, and the [`Overrides`]
//! applied on top of either (and again on every reload). Values are checked where clap parses
//! them and refused with one line naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::usage;
use crate::config::{parse_congestion, parse_ip_port};
use crate::error::Error;
use crate::net::tune::Congestion;
use crate::units::{parse_duration_in, parse_threads, MAX_DURATION};

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
    /// Print the resolved configuration (file or quick-start flags, the flags below, and every
    /// default) as TOML, in the form --conf reads, and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    #[command(flatten)]
    pub(crate) overrides: Overrides,
    /// Backends, host:port (quick start).
    #[arg(value_name = "BACKEND")]
    pub(crate) backends: Vec<String>,
}

/// The admin address a flag sets; `None`: disabled.
type AdminAddr = Option<SocketAddr>;
/// The congestion control a flag sets; `None`: the kernel's default.
type CongestionName = Option<Congestion>;

/// Command-line flags that override the file's keys (`None`: not given). A reload applies them
/// to the re-read file again, so the file never undoes them and an unchanged file asks for no
/// restart.
#[derive(Args, Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Reactor threads, 0..=1024, 0 = one per core (overrides `threads` in the file)
    /// [default: the file's `threads`; 0 without --conf].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Admin (/metrics) address, IP:PORT, overriding the file's; "" disables it; a listener's
    /// address is refused [default: the file's [admin] address; 127.0.0.1:9100 without --conf].
    #[arg(long, value_name = "IP:PORT", value_parser = parse_admin)]
    pub admin: Option<AdminAddr>,
    /// TCP congestion control of the client and backend sockets (health checks keep the
    /// kernel's default), overriding the file's keys, also on SIGHUP: an algorithm the kernel
    /// has (e.g. cubic), or "system" for its default.
    #[arg(long, value_name = "NAME", value_parser = parse_congestion_flag)]
    pub congestion: Option<CongestionName>,
    /// Share the listener addresses with other processes listening on them with SO_REUSEPORT
    /// (the kernel spreads new connections over all of them), like reuse_port = true in the
    /// file. Without it, an address another process listens on is refused.
    #[arg(long)]
    pub reuse_port: bool,
}

/// `--admin`: `IP:PORT`, or `""` to disable the endpoint.
fn parse_admin(s: &str) -> Result<AdminAddr, String> {
    match s.trim() {
        "" => Ok(None),
        t => parse_ip_port(t).map(Some).map_err(|e| format!("{e}, or \"\" to disable it")),
    }
}

fn parse_congestion_flag(s: &str) -> Result<CongestionName, String> {
    parse_congestion(s)
}

/// `proxy --laddr` when the quick start does not give one.
pub(crate) const DEFAULT_LADDR: &str = "127.0.0.1:4000";

/// Builds the proxy config from `--conf` or the quick-start flags, then applies the overrides.
pub(crate) fn proxy_config(a: &ProxyArgs) -> Result<crate::proxy::config::ProxyConfig, Error> {
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
    cfg.apply_overrides(a.overrides);
    // The file's own check (`listener[0].address: ... is also the admin address`), for an
    // address set by --admin or --laddr.
    if let Some(admin) = cfg.admin {
        if let Some((i, l)) = cfg.listeners.iter().enumerate().find(|(_, l)| l.address == admin && admin.port() != 0) {
            let whose = if a.overrides.admin.is_some() { "(--admin)" } else { "(the default; move it with --admin)" };
            return Err(match &cfg.source {
                Some(o) => usage(format!(
                    "{}: {} is also the admin address {whose}; move one of them",
                    o.name(&format!("listener[{i}].address")),
                    l.address
                )),
                None => usage(format!("--laddr: {} is also the admin address {whose}; move one of them", l.address)),
            });
        }
    }
    Ok(cfg)
}

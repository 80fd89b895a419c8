//! `netforge proxy`'s flags: `--conf FILE` or the quick-start flags, and the overrides applied
//! on top of either. Values are checked here and refused with one line naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::usage;
use crate::error::Error;
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

/// `proxy --laddr` when the quick start does not give one.
pub(crate) const DEFAULT_LADDR: &str = "127.0.0.1:4000";

/// Builds the proxy config from `--conf` or the quick-start flags, then applies `--admin`.
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

//! Runs a parsed command line: the order of start-up steps matters and lives here. Values are
//! checked and names resolved first (blocking is fine: no reactor runs yet), then the preflight
//! and the confirmation prompt, then signals are routed to one thread (before any other thread
//! starts, so all inherit the mask), then the role runs.

use std::io::Write;

use crate::cli::{BpCmd, Cli, Cmd};
use crate::error::Error;

/// Returns the process exit status.
pub fn run(cli: Cli) -> Result<u8, Error> {
    match cli.cmd {
        Cmd::Goon(args) => {
            let cfg = crate::goon::args::goon_config(&args)?;
            let fd = crate::sys::raise_nofile()?;
            let sockets = if cfg.builtin { cfg.connections * 2 } else { cfg.connections };
            let target = if cfg.builtin { "the built-in sink".to_string() } else { cfg.target.to_string() };
            let pre = crate::goon::preflight::check(&crate::goon::preflight::Plan {
                fd: &fd,
                sockets,
                threads: cfg.threads,
                target: &target,
                sources: cfg.sources.iter().collect::<std::collections::BTreeSet<_>>().len(),
                port_range: crate::sys::local_port_range(),
                conntrack_max: crate::sys::conntrack_max(),
                connections: cfg.connections,
                port_slices: cfg.port_slices.len(),
                // The table of TIME_WAIT sockets is read only when there are more of them than
                // the ports this run leaves free (reading it walks the kernel's socket hash).
                time_wait: if cfg.builtin {
                    None
                } else {
                    let sources = cfg.sources.iter().collect::<std::collections::BTreeSet<_>>().len();
                    let spare = crate::sys::local_port_range().map_or(0, |(lo, hi)| {
                        crate::goon::preflight::local_ports(lo, hi, sources).total.saturating_sub(cfg.connections)
                    });
                    crate::goon::preflight::time_wait(cfg.target, spare)
                },
            });
            let mut err = std::io::stderr();
            let _ = writeln!(err, "netforge goon preflight:");
            for line in &pre.lines {
                let _ = writeln!(err, "  {line}");
            }
            if let Some(why) = pre.refusal {
                return Err(Error::Preflight(format!("preflight: {why}")));
            }
            if !cfg.builtin && !args.assume_yes && !crate::goon::args::confirm(&cfg)? {
                let _ = writeln!(err, "Execution aborted by the user.");
                return Ok(1);
            }
            let signals = crate::sys::route_signals()?;
            let stdout = std::io::stdout();
            let report = crate::goon::run(&cfg, &signals, &mut stdout.lock())?;
            Ok(report.exit_code())
        }
        Cmd::Serve(args) => {
            let cfg = crate::serve::args::serve_config(&args)?;
            let fd = crate::sys::raise_nofile()?;
            if (cfg.max_conns as u64).saturating_add(crate::sys::FD_RESERVE) > fd.soft {
                log::warn!(
                    "serve: --max-conns {} exceeds the open-file limit {} (hard {}); accepts will pause at the limit",
                    cfg.max_conns,
                    fd.soft,
                    fd.hard
                );
            }
            let signals = crate::sys::route_signals()?;
            let stdout = std::io::stdout();
            crate::serve::run(&cfg, &signals, &mut stdout.lock())?;
            Ok(0)
        }
        Cmd::Proxy(args) => {
            let cfg = crate::proxy::args::proxy_config(&args)?;
            if args.print_config {
                let stdout = std::io::stdout();
                let _ = write!(stdout.lock(), "{}", cfg.to_toml());
                return Ok(0);
            }
            let threads = crate::cli::threads(Some(cfg.threads));
            let fd = crate::sys::raise_nofile()?;
            let need = (cfg.max_connections as u64).saturating_mul(2).saturating_add(crate::sys::FD_RESERVE);
            if need > fd.soft {
                log::warn!(
                    "proxy: max_connections {} needs about {need} descriptors but the open-file limit is {}; accepts will pause at the limit",
                    cfg.max_connections,
                    fd.soft
                );
            }
            let signals = crate::sys::route_signals()?;
            let stdout = std::io::stdout();
            crate::proxy::run(cfg, threads, &signals, &mut stdout.lock())?;
            Ok(0)
        }
        // ---- backpressure lab (bp) --------------------------------------------------------
        Cmd::Bp(BpCmd::Server(args)) => {
            let cfg = crate::backpressure::args::bp_server_config(&args)?;
            let threads = crate::cli::threads(args.threads);
            crate::sys::raise_nofile()?;
            let signals = crate::sys::route_signals()?;
            let stdout = std::io::stdout();
            let key = crate::backpressure::args::bp_listen_key(&args);
            crate::backpressure::server::run(&cfg, &key, threads, &signals, &mut stdout.lock())?;
            Ok(0)
        }
        Cmd::Bp(BpCmd::Client(args)) => {
            let cfg = crate::backpressure::args::bp_client_config(&args)?;
            let target = crate::cli::resolve(&cfg.server.host, cfg.server.port)?;
            crate::sys::raise_nofile()?;
            let signals = crate::sys::route_signals()?;
            let stdout = std::io::stdout();
            // A completed run exits 0 whatever the verdict: the verdict is the measurement.
            crate::backpressure::client::run(&cfg, target, args.json.clone(), &signals, &mut stdout.lock())?;
            Ok(0)
        } // ---- end of backpressure lab ----------------------------------------------------
    }
}

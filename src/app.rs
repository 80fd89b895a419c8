//! Runs a parsed command line: the order of start-up steps matters and lives here. Values are
//! checked and names resolved first (blocking is fine: no reactor runs yet), then the preflight
//! and the confirmation prompt, then the descriptor table is grown to the role's connection
//! count (while this is the only thread: see `sys::reserve_fd_table`), then signals are routed
//! to one thread (before any other thread starts, so all inherit the mask), then the role runs.

use std::io::{self, Write};

use crate::cli::{BpCmd, Cli, Cmd};
use crate::error::Error;

/// Returns the process exit status.
pub fn run(cli: Cli) -> Result<u8, Error> {
    match cli.cmd {
        Cmd::Goon(args) => {
            let cfg = crate::goon::args::goon_config(&args)?;
            if args.print_config {
                return print_config(&crate::config::to_toml(&cfg));
            }
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
            reserve_fds(sockets.saturating_add(crate::sys::FD_RESERVE), &fd);
            let signals = crate::sys::route_signals()?;
            // `--json-stream -` owns standard output; the text goes to standard error.
            let goon = |out: &mut dyn Write| crate::goon::run(&cfg, &signals, out).map(|r| r.exit_code());
            if cfg.json_stream == Some(crate::goon::StreamTo::Stdout) {
                reporting(Watched::new(std::io::stderr().lock(), "standard error"), goon)
            } else {
                reporting(Watched::stdout(), goon)
            }
        }
        Cmd::Report(crate::report::ReportCmd::Merge(args)) => {
            reporting(Watched::stdout(), |out| crate::report::merge::run(&args, out))
        }
        Cmd::Serve(args) => {
            let cfg = crate::serve::args::serve_config(&args)?;
            if args.print_config {
                return print_config(&crate::config::to_toml(&cfg));
            }
            let fd = crate::sys::raise_nofile()?;
            let want = (cfg.max_conns as u64).saturating_add(crate::sys::FD_RESERVE);
            if want > fd.soft {
                log::warn!(
                    "serve: --max-conns {} exceeds the open-file limit {} (hard {}); accepts will pause at the limit",
                    cfg.max_conns,
                    fd.soft,
                    fd.hard
                );
            }
            reserve_fds(want.min(crate::sys::FD_TABLE_CEILING), &fd);
            let signals = crate::sys::route_signals()?;
            reporting(Watched::stdout(), |out| crate::serve::run(&cfg, &signals, out).map(|()| 0))
        }
        Cmd::Proxy(args) => {
            let cfg = crate::proxy::args::proxy_config(&args)?;
            if args.print_config {
                return print_config(&cfg.to_toml());
            }
            let threads = crate::config::resolve_threads(Some(cfg.threads));
            let fd = crate::sys::raise_nofile()?;
            let need = (cfg.max_connections as u64).saturating_mul(2).saturating_add(crate::sys::FD_RESERVE);
            if need > fd.soft {
                log::warn!(
                    "proxy: max_connections {} needs about {need} descriptors but the open-file limit is {}; accepts will pause at the limit",
                    cfg.max_connections,
                    fd.soft
                );
            }
            reserve_fds(need.min(crate::sys::FD_TABLE_CEILING), &fd);
            let signals = crate::sys::route_signals()?;
            reporting(Watched::stdout(), |out| crate::proxy::run(cfg, threads, &signals, out).map(|()| 0))
        }
        // ---- backpressure lab (bp) --------------------------------------------------------
        Cmd::Bp(BpCmd::Server(args)) => {
            let cfg = crate::backpressure::args::bp_server_config(&args)?;
            if args.print_config {
                return print_config(&crate::config::to_toml(&cfg.to_file()));
            }
            let threads = crate::config::resolve_threads(args.threads);
            let fd = crate::sys::raise_nofile()?;
            let want = (cfg.max_connections as u64).saturating_add(crate::sys::FD_RESERVE);
            reserve_fds(want.min(crate::sys::FD_TABLE_CEILING), &fd);
            let signals = crate::sys::route_signals()?;
            reporting(Watched::stdout(), |out| {
                crate::backpressure::server::run(&cfg, cfg.listen_key.as_str(), threads, &signals, out).map(|()| 0)
            })
        }
        Cmd::Bp(BpCmd::Client(args)) => {
            let cfg = crate::backpressure::args::bp_client_config(&args)?;
            if args.print_config {
                return print_config(&crate::config::to_toml(&cfg.to_file()));
            }
            let target = crate::config::resolve(&cfg.server.host, cfg.server.port)
                .map_err(|e| Error::Preflight(format!("{}: {e}", cfg.server_key.as_str())))?;
            let fd = crate::sys::raise_nofile()?;
            reserve_fds((cfg.connections as u64).saturating_add(crate::sys::FD_RESERVE), &fd);
            let signals = crate::sys::route_signals()?;
            // A completed run exits 0 whatever the verdict: the verdict is the measurement.
            let outputs = crate::backpressure::client::Outputs { json: args.json.clone(), html: args.html.clone() };
            reporting(Watched::stdout(), |out| {
                crate::backpressure::client::run(&cfg, target, outputs, &signals, out).map(|_| 0)
            })
        } // ---- end of backpressure lab ----------------------------------------------------
        Cmd::Report(crate::report::ReportCmd::Html(args)) => {
            reporting(Watched::stdout(), |out| crate::report::html::run(&args, out))
        }
    }
}

/// Grows the descriptor table for `want` descriptors while this is the only thread (see
/// [`crate::sys::reserve_fd_table`]); a failure only means the table grows as it goes.
fn reserve_fds(want: u64, fd: &crate::sys::FdLimit) {
    match crate::sys::reserve_fd_table(want, fd) {
        // The table's size is read only for the debug line.
        Ok(()) if log::log_enabled!(log::Level::Debug) => {
            let size = crate::sys::fd_table_size().map_or_else(|e| format!("? ({e})"), |n| n.to_string());
            log::debug!("descriptor table: {size} slots for {want} wanted (open-file limit {})", fd.soft);
        }
        Ok(()) => {}
        Err(e) => log::debug!("descriptor table not grown ahead ({e}): it grows as descriptors open"),
    }
}

/// `--print-config` of every role: the resolved config as TOML on stdout, then exit 0.
fn print_config(toml: &str) -> Result<u8, Error> {
    reporting(Watched::stdout(), |out| {
        let _ = out.write_all(toml.as_bytes());
        Ok(0)
    })
}

/// Runs a role that writes its lines and its report to `out`, then checks that they could be
/// written. The roles go on when a line cannot be written (a load test is not stopped by its
/// terminal), but a run whose report was lost must not exit as if it had been written: it says
/// so on standard error and exits 1 where it would have exited 0. A closed pipe (`| head`) is
/// the reader's choice and ends quietly, with the role's status.
fn reporting<W: Write>(
    mut out: Watched<W>,
    role: impl FnOnce(&mut dyn Write) -> Result<u8, Error>,
) -> Result<u8, Error> {
    let result = role(&mut out);
    let _ = out.flush();
    match out.failed {
        Some((io::ErrorKind::BrokenPipe, _)) => result,
        Some((_, why)) => {
            let _ = writeln!(io::stderr(), "netforge: {}: {why}: what was written there is incomplete", out.name);
            result.map(|code| code.max(1))
        }
        None => result,
    }
}

/// A writer that remembers its first failure and writes nothing after it, so that what was
/// written is a prefix of what was meant, never a text with holes.
struct Watched<W> {
    inner: W,
    name: &'static str,
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write> Watched<W> {
    fn new(inner: W, name: &'static str) -> Watched<W> {
        Watched { inner, name, failed: None }
    }

    fn check<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        match r {
            Err(e) if e.kind() != io::ErrorKind::Interrupted && self.failed.is_none() => {
                self.failed = Some((e.kind(), e.to_string()));
                Err(e)
            }
            r => r,
        }
    }

    fn refused(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, why)| io::Error::new(*kind, why.clone()))
    }
}

impl Watched<io::StdoutLock<'static>> {
    fn stdout() -> Self {
        Watched::new(io::stdout().lock(), "standard output")
    }
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.refused() {
            return Err(e);
        }
        let r = self.inner.write(buf);
        self.check(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.refused() {
            return Err(e);
        }
        let r = self.inner.flush();
        self.check(r)
    }
}

//! `netforge`: parse the command line, run the role, map the outcome to an exit status.
//! 0 success; 1 usage, config or preflight error, an unfinished goon run, or a report that
//! standard output would not take (`app::reporting`); 2 goon connections
//! failed (tcpgoon's convention, which CI scripts read); 3 `report merge`: a threshold was
//! violated; 101 a thread panicked.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use netforge::cli::{Cli, Cmd};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // The usage line of an error, built only for one: it walks the whole command tree.
    let usage = || netforge::cli::usage_line(&netforge::cli::subcommand_path(&argv));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and a bare `netforge` (which shows the help) print as clap wrote them.
        Err(e) if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
        // Anything else is one line: the reason (naming the flag) and the usage line of --help.
        Err(e) => {
            let line = match netforge::cli::value_with_line_breaks(&e) {
                Some(reason) => format!("{reason}; {} (see --help)", usage()),
                None => netforge::cli::one_line_clap_error(&e.render().to_string(), &usage()),
            };
            eprintln!("netforge: {line}");
            return ExitCode::from(1);
        }
    };
    let debug = matches!(&cli.cmd, Cmd::Goon(a) if a.debug);
    // The TLS and WebSocket libraries log each handshake's steps and faults; netforge counts
    // those faults by cause itself, so by default only their errors show (RUST_LOG overrides).
    let filter = if debug { "debug,rustls=error,tungstenite=error" } else { "info,rustls=error,tungstenite=error" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format_timestamp_millis()
        .init();
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current().name().unwrap_or("main").to_string();
        eprintln!("netforge: internal error: thread '{thread}' panicked: {info}");
        std::process::exit(101);
    }));
    match netforge::app::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            use netforge::error::FLAGS_LABEL;
            let flag = match &e {
                netforge::error::Error::Usage(_) => true,
                netforge::error::Error::Config(c) => c.path == std::path::Path::new(FLAGS_LABEL),
                _ => false,
            };
            if flag {
                eprintln!("netforge: {e}; {} (see --help)", usage());
            } else {
                eprintln!("netforge: {e}");
            }
            ExitCode::from(1)
        }
    }
}

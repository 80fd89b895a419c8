//! `netforge`: parse the command line, run the role, map the outcome to an exit status.
//! 0 success; 1 usage, config or preflight error, or an unfinished goon run; 2 goon connections
//! failed (tcpgoon's convention, which CI scripts read); 101 a thread panicked.

use std::process::ExitCode;

use clap::Parser;
use netforge::cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let debug = matches!(&cli.cmd, Cmd::Goon(a) if a.debug);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(if debug { "debug" } else { "info" }))
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
            eprintln!("netforge: {e}");
            if matches!(e, netforge::error::Error::Usage(_)) {
                eprintln!("Run 'netforge --help' (or 'netforge <command> --help') for usage.");
            }
            ExitCode::from(1)
        }
    }
}

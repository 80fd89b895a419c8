//! Command line: the top-level clap definitions (`Cli`, `Cmd`, `BpCmd`) and what every role's
//! flags share: usage errors, the usage line of `--help` and
//! one-line clap errors. Each role's flags and their translation into its config live in the
//! role (`goon::args`, `serve::args`, `proxy::args`, `backpressure::args`); values are checked
//! there and refused with one line naming the flag, so nothing below sees an unchecked argument.

use clap::{Parser, Subcommand};

pub use crate::backpressure::args::{BpClientArgs, BpServerArgs};
use crate::error::Error;
pub use crate::goon::args::GoonArgs;
pub use crate::proxy::args::ProxyArgs;
pub use crate::report::html::HtmlArgs;
pub use crate::serve::args::ServeArgs;

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

// Parsed once at start; goon's many flags make its variant the large one.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Open many concurrent TCP connections to HOST PORT and report how they fare (tcpgoon's
    /// interface). Without HOST and PORT it stresses a built-in sink in the same process.
    Goon(Box<GoonArgs>),
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
    /// Work on JSON results: `report merge` a fleet's goon shards into one exact result, `report
    /// html` a goon, fleet or bp client result into one self-contained page.
    #[command(subcommand)]
    Report(crate::report::ReportCmd),
}

// ---- backpressure lab (bp) ----------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum BpCmd {
    /// Listen and read slowly (read_size bytes every read_delay) so the TCP window closes.
    Server(BpServerArgs),
    /// Push payloads to a bp server and report whether backpressure reached this socket.
    Client(BpClientArgs),
}

pub(crate) fn usage(msg: String) -> Error {
    Error::Usage(msg)
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

/// The reason of an error about a value that holds a line break (`--header $'a\r\nb'`), with
/// the value and the reason escaped: clap's rendering would split it over lines, and the one
/// line kept would lose the reason. `None` for every other error.
pub fn value_with_line_breaks(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else { return None };
    if !value.contains(['\n', '\r']) {
        return None;
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.clone(),
        _ => "an argument".into(),
    };
    let why = std::error::Error::source(e).map_or_else(|| "not a valid value".into(), |s| s.to_string());
    let why = why.replace('\n', "\\n").replace('\r', "\\r");
    Some(format!("invalid value {value:?} for {arg}: {why}"))
}

/// clap's rendered error (`error: ...`, a hint, `Usage: ...`, `For more information ...`) as
/// one line: the reason, naming the flag, then `usage`.
pub fn one_line_clap_error(rendered: &str, usage: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).skip_while(|l| l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let mut reason = first.strip_prefix("error: ").unwrap_or(first).to_string();
    // "the following required arguments were not provided:" lists the flags on the lines
    // below it, up to the blank line: they are the point of the message.
    if reason.ends_with(':') {
        let listed: Vec<&str> = lines.take_while(|l| !l.is_empty()).collect();
        if !listed.is_empty() {
            reason = format!("{} {}", reason, listed.join(", "));
        }
    }
    format!("{reason}; {usage} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value with a line break keeps its reason on the one line.
    #[test]
    fn a_value_with_a_line_break_keeps_its_reason() {
        use clap::Parser;
        let e = Cli::try_parse_from(["netforge", "goon", "--message", "a\nb\\q"]).unwrap_err();
        let line = value_with_line_breaks(&e).unwrap();
        assert_eq!(line, "invalid value \"a\\nb\\\\q\" for --message <TEXT|@FILE>: \\q at byte 3 is not an escape (\\n \\r \\t \\\\ \\0 \\xHH)");
        let e = Cli::try_parse_from(["netforge", "goon", "--message", "b\\q"]).unwrap_err();
        assert_eq!(value_with_line_breaks(&e), None, "clap's own line stands");
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
        use crate::proxy::args::DEFAULT_LADDR;
        use crate::proxy::config::{DEFAULT_BALANCE, DEFAULT_CONNECT_TIMEOUT};
        assert!(help("laddr").contains(&format!("[default: {DEFAULT_LADDR}]")), "{}", help("laddr"));
        assert!(help("lb").contains(&format!("[default: {}]", DEFAULT_BALANCE.as_str())), "{}", help("lb"));
        let t = crate::units::go_duration(DEFAULT_CONNECT_TIMEOUT);
        assert!(help("timeout").contains(&format!("[default: {t}]")), "{}", help("timeout"));
    }

    #[test]
    fn clap_errors_that_list_flags_keep_them_on_the_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  --shard-from-env <VAR>\n  --x <Y>\n\nUsage: netforge goon --shards <K> --shard-from-env <VAR>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_clap_error(rendered, "usage: netforge goon"),
            "the following required arguments were not provided: --shard-from-env <VAR>, --x <Y>; usage: netforge goon (see --help)"
        );
        let plain = "error: unexpected argument '--nope' found\n\n  tip: ...\n\nUsage: netforge goon\n";
        assert_eq!(
            one_line_clap_error(plain, "usage: netforge goon"),
            "unexpected argument '--nope' found; usage: netforge goon (see --help)"
        );
    }
}

//! `netforge bp server` and `bp client` flags and their translation into the lab's configs.
//! The keys' flags are the config files' own structs ([`bp::ServerFile`], [`bp::ClientFile`]),
//! flattened in: each given flag replaces the file's key of the same name, with its range.

use std::path::PathBuf;

use clap::Args;

use crate::backpressure::config as bp;
use crate::error::Error;
use crate::units::parse_threads;

/// Flags of `netforge bp server`; each given key flag replaces the config file's key (same
/// name, same range). Sizes take a unit (`1KiB`), durations too (`100ms`).
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct BpServerArgs {
    /// Config file (see conf/bp-server.toml) [default: none, the built-in defaults apply].
    #[arg(long, value_name = "FILE")]
    pub(crate) conf: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) keys: bp::ServerFile,
    /// Reactor threads, 0..=1024, 0 = one per core [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Print the resolved configuration (file, $PORT, flags and defaults) as TOML, in the form
    /// --conf reads, and exit [default: off].
    #[arg(long)]
    pub(crate) print_config: bool,
}

/// Flags of `netforge bp client`; each given key flag replaces the config file's key (same
/// name, same range). Sizes take a unit (`16KiB`), durations too (`5s`).
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct BpClientArgs {
    /// Config file (see conf/bp-client.toml) [default: none, the built-in defaults apply].
    #[arg(long, value_name = "FILE")]
    pub(crate) conf: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) keys: bp::ClientFile,
    /// Write the verdict, summary and full time series as JSON [default: none].
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Print the resolved configuration (file, flags and defaults) as TOML, in the form --conf
    /// reads, and exit [default: off].
    #[arg(long)]
    pub(crate) print_config: bool,
    /// Write a self-contained HTML report: the window and queue time series with the
    /// zero-window time shaded, and the verdict (`report html` draws the same from the JSON)
    /// [default: none].
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

pub(crate) fn bp_server_config(a: &BpServerArgs) -> Result<bp::ServerConfig, Error> {
    let port = std::env::var("PORT").ok();
    Ok(bp::load_server(a.conf.as_deref(), &a.keys, port.as_deref())?)
}

pub(crate) fn bp_client_config(a: &BpClientArgs) -> Result<bp::ClientConfig, Error> {
    Ok(bp::load_client(a.conf.as_deref(), &a.keys)?)
}

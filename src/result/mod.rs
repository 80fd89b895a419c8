//! The result format every role and command shares (docs/json-format.md): what goon and bp
//! client write and what `report` reads, so that the roles and the `report` command import
//! this module and never each other.
//!
//! `sample.rs` is the per-interval sample and its cap, `block.rs` tcpgoon's final block and
//! the whole-run latency object, `totals.rs` a result's counts, `probe/` an idle probe's groups and verdict, `html/` the self-contained HTML
//! page of a result (`report html`, `goon --html`, `bp client --html`).

pub(crate) mod block;
pub(crate) mod html;
pub(crate) mod probe;
pub(crate) mod sample;
pub(crate) mod tls;
pub(crate) mod totals;
pub(crate) mod traffic;
pub(crate) mod ws;

/// Checks before a run that the files its results go to at its end (`--json FILE`, `--html
/// FILE`) can be written: [`check_output`] for each one given.
pub(crate) fn check_outputs(
    json: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> Result<(), crate::error::Error> {
    for (flag, path) in [("--json", json), ("--html", html)] {
        if let Some(p) = path {
            check_output(flag, p)?;
        }
    }
    Ok(())
}

/// Checks before a run that the file a result goes to at its end can be written, so that a bad
/// path is a one-line error now rather than after the whole test. The file is opened for
/// writing without truncating it, and removed again when this check created it.
fn check_output(flag: &str, path: &std::path::Path) -> Result<(), crate::error::Error> {
    let existed = path.exists();
    match std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path) {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(crate::error::Error::Usage(format!("{flag} {}: cannot write: {e}", path.display()))),
    }
}

/// The goon JSON format this netforge writes and `report merge` reads.
pub const FORMAT_VERSION: u64 = 2;

/// `--shard I/K` and `--shards K`: at most this many shards (and `report merge` reads no more).
pub(crate) const SHARDS_MAX: u64 = 65_536;

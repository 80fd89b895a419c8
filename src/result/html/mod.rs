//! The HTML page of a run's JSON result (`report html`, and `--html` of goon and bp client):
//! one self-contained page, so a result can be looked at (and mailed, and archived) without any
//! tool or network: inline CSS, an inline script that draws SVG charts from data embedded in the page, no fetch of any kind (the page's
//! Content-Security-Policy forbids them, and runs only its own script, by nonce).
//!
//! Inputs, told apart by their keys (docs/json-format.md describes them):
//! - one `goon --json` result (format 2 with per-interval samples, or format 1 without), with
//!   its TLS, WebSocket, traffic and idle-probe parts when the run had them;
//! - several of them, the shards of one fleet, shown as a fleet (their sum over time) and per
//!   shard;
//! - one `report merge --json` result (`kind: "goon-fleet"`), which carries its shards;
//! - one `bp client --json` result: the window and queue time series with the zero-window
//!   time shaded, and the verdict.
//!
//! Everything numeric is computed here (`model.rs`): the HdrHistograms are decoded and turned
//! into percentile-curve points, fleet series summed, rates derived, so the page's script only
//! draws. Every string from a JSON file reaches the page either HTML-escaped (`render.rs`) or
//! inside the embedded JSON with `<`, `>`, `&` and the JavaScript line separators escaped,
//! where the script reads it with `JSON.parse` and shows it with `textContent` only.

pub(crate) mod model;
pub(crate) mod render;

use std::path::Path;

use crate::error::Error;

/// Largest JSON file read (a 4096-sample goon run with histograms is a few MiB).
pub const INPUT_MAX_BYTES: u64 = 512 << 20;

/// A problem with an input file: one line naming it (no usage line: the command line was fine).
fn file_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(format!("{}: {msg}", path.display())))
}

/// Reads and parses one JSON result; errors name the file (and the line and column of bad
/// JSON).
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    use crate::conffile::{read_regular, ReadFailure};
    let bytes = read_regular(path, INPUT_MAX_BYTES).map_err(|f| match f {
        ReadFailure::Open(e) | ReadFailure::Read(e) => file_error(path, format!("cannot read: {e}")),
        ReadFailure::NotRegular(_) => file_error(path, "not a regular file"),
        ReadFailure::TooBig(n) => file_error(path, format!("{n} bytes is over the limit of {INPUT_MAX_BYTES}")),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| file_error(path, format!("{}:{}: not valid JSON: {e}", e.line(), e.column())))
}

pub(crate) fn write_page(path: &Path, flag: &str, html: &str) -> Result<(), Error> {
    std::fs::write(path, html).map_err(|e| Error::Output(format!("{flag} {}: cannot write: {e}", path.display())))
}

/// `--html FILE` of goon and bp client: the page for the JSON document the run just produced.
pub(crate) fn write_for_run(path: &Path, label: &str, doc: serde_json::Value) -> Result<(), Error> {
    let report = model::build(&[model::Input { label: label.to_string(), doc }])
        .map_err(|e| Error::Io(std::io::Error::other(format!("--html {}: {e}", path.display()))))?;
    write_page(path, "--html", &render::page(&report, None))
}

//! `netforge report html`: one self-contained HTML page for a run's JSON result, so a result can
//! be looked at (and mailed, and archived) without any tool or network: inline CSS, an inline
//! script that draws SVG charts from data embedded in the page, no fetch of any kind (the page's
//! Content-Security-Policy forbids them, and runs only its own script, by nonce).
//!
//! Inputs, told apart by their keys (docs/json-format.md describes them):
//! - one `goon --json` result (format 2 with per-interval samples, or format 1 without);
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

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::Error;

/// Largest JSON file read (a 4096-sample goon run with histograms is a few MiB).
pub const INPUT_MAX_BYTES: u64 = 512 << 20;

#[derive(Args, Debug)]
pub struct HtmlArgs {
    /// JSON results to show: one `goon --json` file, the shard files of one fleet, one
    /// `report merge --json` file, or one `bp client --json` file.
    #[arg(value_name = "FILES", required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// The HTML file to write (replaced if it exists).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// Page title [default: what the files are, and their target].
    #[arg(long, value_name = "TEXT")]
    pub(crate) title: Option<String>,
}

/// A problem with an input file: one line naming it (no usage line: the command line was fine).
fn file_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(format!("{}: {msg}", path.display())))
}

/// Reads and parses one JSON result; errors name the file (and the line and column of bad
/// JSON).
fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(file_error(path, "not a regular file"));
    }
    if meta.len() > INPUT_MAX_BYTES {
        return Err(file_error(path, format!("{} bytes is over the limit of {INPUT_MAX_BYTES}", meta.len())));
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| file_error(path, format!("{}:{}: not valid JSON: {e}", e.line(), e.column())))
}

fn write_page(path: &Path, flag: &str, html: &str) -> Result<(), Error> {
    std::fs::write(path, html).map_err(|e| Error::Usage(format!("{flag} {}: cannot write: {e}", path.display())))
}

/// `report html`: returns the exit status (0; errors are `Err`).
pub fn run(args: &HtmlArgs, out: &mut dyn std::io::Write) -> Result<u8, Error> {
    let mut docs = Vec::with_capacity(args.files.len());
    for path in &args.files {
        docs.push(model::Input { label: path.display().to_string(), doc: read_json(path)? });
    }
    let report = model::build(&docs).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let html = render::page(&report, args.title.as_deref());
    write_page(&args.output, "-o", &html)?;
    let _ = writeln!(out, "netforge report html: wrote {} ({} bytes)", args.output.display(), html.len());
    Ok(0)
}

/// `--html FILE` of goon and bp client: the page for the JSON document the run just produced.
pub(crate) fn write_for_run(path: &Path, label: &str, doc: serde_json::Value) -> Result<(), Error> {
    let report = model::build(&[model::Input { label: label.to_string(), doc }])
        .map_err(|e| Error::Io(std::io::Error::other(format!("--html {}: {e}", path.display()))))?;
    write_page(path, "--html", &render::page(&report, None))
}

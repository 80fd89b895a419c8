//! `netforge report html`: the command line of the HTML page that `result::html` makes.

use std::path::PathBuf;

use clap::Args;

use crate::error::Error;
use crate::result::html::{model, read_json, render, write_page};

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

/// `report html`: returns the exit status (0; errors are `Err`).
pub fn run(args: &HtmlArgs, out: &mut dyn std::io::Write) -> Result<u8, Error> {
    let inputs: Vec<&std::path::Path> = args.files.iter().map(PathBuf::as_path).collect();
    crate::result::check_outputs(&[("-o", Some(&args.output))], &inputs)?;
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

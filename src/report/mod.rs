//! `netforge report`: work on the JSON results goon wrote (docs/json-format.md).
//!
//! `report merge` (`merge.rs`) merges the results of a fleet's shards exactly: `doc.rs` reads
//! and checks each shard's document, `thresholds.rs` judges the fleet, `table.rs` prints it.
//! `report html` (`html.rs`) makes one self-contained page of a run's, a fleet's or a bp
//! client's result with `result::html`. The result format itself (samples, counts, tcpgoon's
//! block, the page) lives in `crate::result`, which goon and bp client share.

use clap::Subcommand;

pub(crate) mod doc;
pub(crate) mod html;
pub(crate) mod merge;
pub(crate) mod table;
pub(crate) mod thresholds;

pub use merge::MergeArgs;

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// Merge the `goon --json` results of a fleet's shards into one exact result.
    ///
    /// Prints the tcpgoon-style block for the whole fleet, a per-shard table, and fleet-wide
    /// thresholds. Exit status: 0 all connections established; 1 some never finished dialing (or a file
    /// was refused); 2 some errored (unless --max-errors judges errors); 3 a threshold was
    /// violated.
    Merge(MergeArgs),
    /// One self-contained HTML page (inline charts and tables, no network) for goon results
    /// (one run, the shard files of a fleet, or a merged fleet) or a bp client result.
    Html(html::HtmlArgs),
}

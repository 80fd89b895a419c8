//! From JSON results to what the page shows: tables of text and charts of points. Sans-io and
//! deterministic, so every number on the page is tested here; the page's script only draws.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

mod bp;
mod goon;
mod read;
mod sections;

use bp::bp_page;
use goon::{fleet_page, goon_page};
use read::Run;

/// Most shards drawn as their own line or curve; the table lists every shard.
pub(crate) const SHARD_LINES_MAX: usize = 16;
/// Most bp connections drawn as their own chart.
pub(crate) const BP_CONNECTION_CHARTS_MAX: usize = 8;
/// Most fleet time buckets (shards that started further apart than this many intervals are
/// refused rather than drawn as one mostly empty chart).
pub(crate) const FLEET_BUCKETS_MAX: usize = 1_000_000;
/// The percentile curve reaches 1 - 10^-PERCENTILE_NINES_MAX (99.9999%) at most.
const PERCENTILE_NINES_MAX: f64 = 6.0;
/// Steps per decade of the percentile curve.
const PERCENTILE_STEPS_PER_NINE: u32 = 20;

/// One JSON document and what to call it (its file name).
pub(crate) struct Input {
    pub label: String,
    pub doc: Value,
}

/// A result the page cannot be made from, naming the file.
#[derive(Debug, PartialEq)]
pub(crate) struct InputError {
    pub file: String,
    pub msg: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.msg)
    }
}

fn err(file: &str, msg: impl Into<String>) -> InputError {
    InputError { file: file.to_string(), msg: msg.into() }
}

/// How the page's script formats an axis's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    Count,
    PerSecond,
    Bytes,
    BytesPerSecond,
    Ms,
    Seconds,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart. `bands` are x ranges shaded behind the lines (bp's zero-window time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Chart {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub x_unit: Unit,
    /// Explicit x-axis ticks (the percentile axis); none: the script picks round values.
    pub x_ticks: Vec<(f64, String)>,
    pub y_label: String,
    pub y_unit: Unit,
    pub y_log: bool,
    pub series: Vec<Series>,
    pub bands: Vec<(f64, f64)>,
    pub band_label: String,
}

/// A horizontal bar chart (errors by cause).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Bars {
    pub id: String,
    pub title: String,
    pub items: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub title: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Everything one page shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    pub title: String,
    /// `goon`, `goon fleet` or `bp client`.
    pub kind: &'static str,
    /// bp client's verdict line, or an idle probe's.
    pub verdict: Option<String>,
    /// Whether the verdict is good news (shown green); `None`: bp client's rule, a verdict
    /// that says YES.
    pub verdict_good: Option<bool>,
    pub summary: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub charts: Vec<Chart>,
    pub bars: Vec<Bars>,
    pub tables: Vec<Table>,
    /// (what, command line).
    pub commands: Vec<(String, String)>,
}

/// Builds the page for `inputs` (see the module docs of `result::html` for what may be given).
pub(crate) fn build(inputs: &[Input]) -> Result<Page, InputError> {
    let Some(first) = inputs.first() else {
        return Err(err("report html", "no input files"));
    };
    let kinds: Vec<Kind> = inputs.iter().map(|i| kind_of(&i.label, &i.doc)).collect::<Result<_, _>>()?;
    if alone(
        inputs,
        &kinds,
        Kind::Bp,
        "a bp client result is shown alone: give one file",
        "a bp client result cannot be shown with goon results",
    )? {
        return bp_page(&first.label, &first.doc);
    }
    if alone(
        inputs,
        &kinds,
        Kind::Fleet,
        "a merged fleet result is shown alone: give it, or its shard files",
        "a merged fleet result cannot be shown with shard files",
    )? {
        return fleet_page(&first.label, &first.doc);
    }
    let runs: Vec<Run> = inputs.iter().map(|i| Run::parse(&i.label, &i.doc)).collect::<Result<_, _>>()?;
    goon_page(runs, None)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Goon,
    Fleet,
    Bp,
}

/// Whether the first input is of `kind`, one that is shown alone: an error naming it when other
/// files come with it (`first_msg`), or naming it where it comes after another file (`later_msg`).
fn alone(inputs: &[Input], kinds: &[Kind], kind: Kind, first_msg: &str, later_msg: &str) -> Result<bool, InputError> {
    if kinds[0] == kind {
        return match inputs.get(1) {
            Some(second) => Err(err(&inputs[0].label, format!("{first_msg} ({} came with it)", second.label))),
            None => Ok(true),
        };
    }
    match kinds.iter().position(|k| *k == kind) {
        Some(i) => Err(err(&inputs[i].label, later_msg)),
        None => Ok(false),
    }
}

fn kind_of(file: &str, doc: &Value) -> Result<Kind, InputError> {
    if !doc.is_object() {
        return Err(err(file, "not a JSON object"));
    }
    match (doc["kind"].as_str(), doc["role"].as_str()) {
        (Some("goon-fleet"), _) => return Ok(Kind::Fleet),
        (Some("goon"), _) | (None, Some("goon")) => return Ok(Kind::Goon),
        (Some(k), _) => return Err(err(file, format!("kind {k:?} is not goon, goon-fleet or a bp client result"))),
        _ => {}
    }
    if doc["verdict"].is_string() && doc["series"].is_array() {
        return Ok(Kind::Bp);
    }
    if doc["verdict"].is_string() {
        return Err(err(file, "series: missing or not an array (a bp client result has a verdict and its series)"));
    }
    Err(err(file, "not a goon, report merge or bp client JSON result (no \"kind\", \"role\" or \"verdict\")"))
}

/// The data the page's script draws, as one JSON value.
pub(crate) fn chart_data(page: &Page) -> Value {
    serde_json::json!({ "charts": page.charts, "bars": page.bars })
}

#[cfg(test)]
mod tests;

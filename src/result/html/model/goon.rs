//! The goon pages: one run, the shard files of a fleet, or a merged fleet. The optional
//! parts of a result (TLS, WebSocket, traffic: `parts.rs`; the idle probe: `probe.rs`) add
//! their tables and charts after the connect-and-hold ones.

mod parts;
mod probe;

use serde_json::Value;

use super::read::{fleet_samples, percentile_ticks, round4, text, Lat, Run, Sample};
use super::sections::Sections;
use super::{err, Bars, Chart, InputError, Page, Series, Table, Unit, SHARD_LINES_MAX};
use crate::net::Cause;
use crate::result::totals::Totals;
use crate::units::go_duration;

pub(super) fn time_chart(id: &str, title: &str, y_label: &str, y_unit: Unit, series: Vec<Series>) -> Chart {
    Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "time since start".to_string(),
        x_unit: Unit::Seconds,
        x_ticks: Vec::new(),
        y_label: y_label.to_string(),
        y_unit,
        y_log: false,
        series,
        bands: Vec::new(),
        band_label: String::new(),
    }
}

/// State counts at each interval's end, from 0 at the start of the first interval (nothing is
/// dialed before the run starts).
fn state_series(samples: &[Sample], offset: f64) -> Vec<Series> {
    let line = |name: &str, f: &dyn Fn(&Sample) -> u64| Series {
        name: name.to_string(),
        points: samples
            .first()
            .map(|s| (round4(offset + s.t_start), 0.0))
            .into_iter()
            .chain(samples.iter().map(|s| (round4(offset + s.t_end), f(s) as f64)))
            .collect(),
    };
    vec![
        line("established", &|s| s.established),
        line("dialing", &|s| s.dialing),
        line("errored (total)", &|s| s.error),
        line("closed (total)", &|s| s.closed),
    ]
}

/// A per-interval rate as steps: flat over each interval, from its start to its end.
fn steps(samples: &[Sample], f: &dyn Fn(&Sample) -> u64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .flat_map(|s| {
            let r = round4(f(s) as f64 / s.width());
            [(round4(s.t_start), r), (round4(s.t_end), r)]
        })
        .collect()
}

fn rate_series(samples: &[Sample]) -> Vec<Series> {
    let line = |name: &str, f: &dyn Fn(&Sample) -> u64| Series { name: name.to_string(), points: steps(samples, f) };
    vec![
        line("dials/s", &|s| s.dials),
        line("established/s", &|s| s.established_new),
        line("errors/s", &|s| s.error_sum()),
    ]
}

/// p50, p99 and max of the latencies `of` each interval (the connects completed in it, its
/// handshakes, ...), flat over the interval, from the interval's own histogram and exact max;
/// intervals without one are left out.
fn latency_series(samples: &[Sample], of: &dyn Fn(&Sample) -> Option<&Lat>) -> Vec<Series> {
    let with: Vec<(&Sample, &Lat)> =
        samples.iter().filter_map(|s| of(s).map(|l| (s, l))).filter(|(_, l)| l.count > 0 && l.hist.is_some()).collect();
    if with.is_empty() {
        return Vec::new();
    }
    let line = |name: &str, f: &dyn Fn(&Lat) -> Option<u64>| Series {
        name: name.to_string(),
        points: with
            .iter()
            .filter_map(|(s, l)| f(l).map(|ns| (s, ns as f64 / 1e6)))
            .flat_map(|(s, ms)| [(round4(s.t_start), ms), (round4(s.t_end), ms)])
            .collect(),
    };
    vec![
        line("p50", &|l| l.percentile_ns(0.5)),
        line("p99", &|l| l.percentile_ns(0.99)),
        line("max", &|l| Some(l.max_ns)),
    ]
}

/// The percentile curve of `total` (called `name`, or `fleet` on a fleet page) and, on a fleet
/// page, those of the first [`SHARD_LINES_MAX`] shards; curves without a histogram are left
/// out.
fn curves(name: &str, total: &Lat, shards: Option<Vec<(String, Lat)>>) -> Vec<Series> {
    let mut out = Vec::new();
    let fleet_curve = total.curve();
    if !fleet_curve.is_empty() {
        out.push(Series { name: if shards.is_some() { "fleet".into() } else { name.into() }, points: fleet_curve });
    }
    for (label, l) in shards.into_iter().flatten().take(SHARD_LINES_MAX) {
        let pts = l.curve();
        if !pts.is_empty() {
            out.push(Series { name: label, points: pts });
        }
    }
    out
}

/// A percentile chart (x: the percentile's nines, y: ms on a log scale) of `curves`; `None`
/// when there is none.
fn percentile_chart(id: &str, title: &str, y_label: &str, curves: Vec<Series>) -> Option<Chart> {
    if curves.is_empty() {
        return None;
    }
    let top = curves.iter().filter_map(|s| s.points.last()).map(|p| p.0).fold(0.0, f64::max);
    Some(Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: "percentile".to_string(),
        x_unit: Unit::Count,
        x_ticks: percentile_ticks(top),
        y_label: y_label.to_string(),
        y_unit: Unit::Ms,
        y_log: true,
        series: curves,
        bands: Vec::new(),
        band_label: String::new(),
    })
}

fn cause_series(samples: &[Sample], totals: &[u64; 7]) -> Vec<Series> {
    Cause::ALL
        .iter()
        .filter(|c| totals[c.index()] > 0)
        .map(|c| Series { name: c.name().to_string(), points: steps(samples, &|s| s.errors[c.index()]) })
        .collect()
}

/// Seconds as goon prints a duration; a value no duration holds (NaN, past ~584 years) as a
/// plain number, not a panic.
pub(super) fn fmt_s(s: f64) -> String {
    match std::time::Duration::try_from_secs_f64(s.max(0.0)) {
        Ok(d) => go_duration(d),
        Err(_) => format!("{s:e} s"),
    }
}

fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn command_line(argv: &[String]) -> String {
    argv.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" ")
}

/// The goon page for one run, several shards, or a merged fleet (`fleet`: its own totals,
/// samples, command line and file name, with `runs` its shards).
pub(super) fn goon_page(mut runs: Vec<Run>, fleet: Option<Run>) -> Result<Page, InputError> {
    runs.sort_by_key(|r| r.shard.map_or(u64::MAX, |s| s.0));
    let sharded = runs.len() > 1 || fleet.is_some() || runs.iter().any(|r| r.shard.is_some_and(|s| s.1 > 1));
    // The whole: the merged file's own numbers, or the shards' sum.
    let total = match &fleet {
        Some(f) => f.clone(),
        None if runs.len() == 1 => runs[0].clone(),
        None => {
            let mut t = runs[0].clone();
            t.file = format!("{} shard files", runs.len());
            t.shard = None;
            t.host_name = String::new();
            t.counts = Totals::default();
            t.connect = Lat::empty();
            t.fail = Lat::empty();
            for r in &runs {
                t.counts.add(&r.counts);
                t.connect.merge(&r.connect);
                t.fail.merge(&r.fail);
            }
            let start = runs.iter().filter_map(|r| r.started_unix).fold(f64::INFINITY, f64::min);
            let offset = |r: &Run| r.started_unix.filter(|_| start.is_finite()).map_or(0.0, |s| s - start);
            let parts: Vec<(&str, &Sections, f64)> =
                runs.iter().map(|r| (r.file.as_str(), &r.sections, offset(r))).collect();
            t.sections = Sections::sum(&parts)?;
            t.samples = fleet_samples(&runs)?;
            let upper: u64 = runs.iter().map(|r| r.counts.max_concurrent_established).sum();
            t.counts.max_concurrent_established = t.samples.iter().map(|s| s.established).max().unwrap_or(0).min(upper);
            // goon's status over the fleet, as report merge gives it: 1 (a dial left) before 2
            // (an error, a failed handshake or upgrade), from each shard's own.
            t.exit_code = if runs.iter().any(|r| r.exit_code == 1) {
                1
            } else {
                runs.iter().map(|r| r.exit_code).max().unwrap_or(0)
            };
            // First start to last end, as report merge counts it; without start times, the
            // summed samples' end.
            let end = runs
                .iter()
                .filter_map(|r| r.ended_unix.or(r.started_unix.map(|s| s + r.elapsed_s)))
                .fold(f64::NEG_INFINITY, f64::max);
            t.elapsed_s = if start.is_finite() && end.is_finite() {
                (end - start).max(0.0)
            } else {
                t.samples.last().map_or(0.0, |s| s.t_end)
            };
            t.dial_phase_s = None;
            t
        }
    };
    let c = &total.counts;
    let what = if sharded { format!("goon fleet of {} shards", runs.len()) } else { "goon run".to_string() };
    let title = if total.target.is_empty() { what.clone() } else { format!("{what} against {}", total.target) };
    let mut summary = vec![
        ("target".to_string(), total.target.clone()),
        ("connections".to_string(), c.total.to_string()),
        (
            "status".to_string(),
            format!(
                "Dialing: {}, Established: {}, Closed: {}, Error: {}, NotInitiated: {}",
                c.dialing, c.established, c.closed, c.error, c.not_initiated
            ),
        ),
        ("total established connections".to_string(), c.total_established.to_string()),
        ("max concurrent established connections".to_string(), c.max_concurrent_established.to_string()),
        ("established connections on closure".to_string(), c.established.to_string()),
    ];
    if total.connections != c.total && total.connections > 0 {
        summary.insert(2, ("whole fleet (--connections)".to_string(), total.connections.to_string()));
    }
    if total.connect.count > 0 {
        summary.push((
            format!("response time, {} successful connections, min/avg/max/dev", total.connect.count),
            total.connect.min_avg_max_dev(),
        ));
        if let Some(p) = total.connect.percentiles_line() {
            summary.push(("response time p50/p90/p99/p99.9/max".to_string(), p));
        }
    }
    if total.fail.count > 0 {
        summary.push((
            format!("time to error, {} failed connections, min/avg/max/dev", total.fail.count),
            total.fail.min_avg_max_dev(),
        ));
    }
    if let Some(d) = total.dial_phase_s {
        summary.push(("dial phase".to_string(), fmt_s(d)));
    }
    summary.push(("elapsed".to_string(), fmt_s(total.elapsed_s)));
    summary.push(("exit status".to_string(), total.exit_code.to_string()));
    let mut notes = Vec::new();
    if sharded && fleet.is_none() {
        notes.push(format!(
            "Fleet totals summed here from {} shard files; `netforge report merge` checks them (same target, format and \
             precision, no shard missing or repeated) and applies thresholds. Max concurrent established is the largest \
             summed per-interval count, at most the sum of the shards' own peaks.",
            runs.len()
        ));
    }
    let mut charts = Vec::new();
    let scope = if sharded { "fleet total" } else { "this run" };
    if total.samples.is_empty() {
        notes.push(format!(
            "{}: no per-interval samples (JSON format {}), so no time series; the totals and the percentile curve \
             are shown.",
            total.file, total.format
        ));
    } else {
        charts.push(time_chart(
            "connections",
            &format!("Connections by state over time ({scope})"),
            "connections",
            Unit::Count,
            state_series(&total.samples, 0.0),
        ));
        if sharded {
            let start = runs.iter().filter_map(|r| r.started_unix).fold(f64::INFINITY, f64::min);
            let series = runs
                .iter()
                .take(SHARD_LINES_MAX)
                .map(|r| {
                    let offset = match (r.started_unix, start.is_finite()) {
                        (Some(s), true) => s - start,
                        _ => 0.0,
                    };
                    let mut line = state_series(&r.samples, offset).swap_remove(0);
                    line.name = r.label();
                    line
                })
                .collect();
            charts.push(time_chart(
                "per-shard",
                "Established connections per shard",
                "established",
                Unit::Count,
                series,
            ));
            if runs.len() > SHARD_LINES_MAX {
                notes.push(format!("The per-shard charts draw the first {SHARD_LINES_MAX} of {} shards.", runs.len()));
            }
        }
        charts.push(time_chart(
            "rates",
            &format!("Dials, connects and errors per second ({scope})"),
            "per second",
            Unit::PerSecond,
            rate_series(&total.samples),
        ));
        let lat = latency_series(&total.samples, &|s| Some(&s.connect));
        if !lat.is_empty() {
            let mut c = time_chart(
                "interval-latency",
                &format!("Connect time per interval ({scope})"),
                "connect time",
                Unit::Ms,
                lat,
            );
            c.y_log = true;
            charts.push(c);
        }
        if total.counts.errors.iter().any(|e| *e > 0) {
            charts.push(time_chart(
                "errors",
                &format!("Errors per second by cause ({scope})"),
                "errors per second",
                Unit::PerSecond,
                cause_series(&total.samples, &total.counts.errors),
            ));
        }
    }
    let shard_curves = |of: &dyn Fn(&Run) -> Option<Lat>| {
        sharded.then(|| runs.iter().take(SHARD_LINES_MAX).filter_map(|r| of(r).map(|l| (r.label(), l))).collect())
    };
    let connect_curves = curves("connect time", &total.connect, shard_curves(&|r| Some(r.connect.clone())));
    if let Some(c) = percentile_chart(
        "percentiles",
        "Connect-time percentiles (from the HdrHistogram)",
        "connect time",
        connect_curves,
    ) {
        charts.push(c);
    } else if total.connect.count > 0 {
        notes.push("No connect-time histogram in the input, so no percentile curve.".to_string());
    }
    let mut parts = parts::parts(&total, scope, &shard_curves);
    if let Some(p) = &total.sections.probe {
        parts.tables.insert(0, probe::groups_table(p));
    }
    charts.append(&mut parts.charts);
    notes.append(&mut parts.notes);
    let items: Vec<(String, u64)> = Cause::ALL
        .iter()
        .zip(total.counts.errors)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c.name().to_string(), n))
        .collect();
    let mut bars = if items.is_empty() {
        notes.push("No connection errors.".to_string());
        Vec::new()
    } else {
        vec![Bars { id: "causes".to_string(), title: "Errors by cause".to_string(), items }]
    };
    bars.append(&mut parts.bars);
    let pct = |l: &Lat, q: f64| l.percentile_ns(q).map_or("-".to_string(), |ns| fmt_s(ns as f64 / 1e9));
    let head = [
        "shard",
        "host",
        "file",
        "started",
        "total",
        "established",
        "max concurrent",
        "closed",
        "errors",
        "not initiated",
        "connect p50",
        "connect p99",
        "exit",
    ];
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.shard.map_or("-".to_string(), |(i, k)| format!("{i}/{k}")),
                r.host_name.clone(),
                r.file.clone(),
                r.started_at.clone(),
                r.counts.total.to_string(),
                r.counts.established.to_string(),
                r.counts.max_concurrent_established.to_string(),
                r.counts.closed.to_string(),
                r.counts.error.to_string(),
                r.counts.not_initiated.to_string(),
                pct(&r.connect, 0.5),
                pct(&r.connect, 0.99),
                r.exit_code.to_string(),
            ]
        })
        .collect();
    let mut tables = parts.tables;
    tables.push(Table {
        title: if sharded { "Shards".to_string() } else { "Run".to_string() },
        head: head.iter().map(|h| h.to_string()).collect(),
        rows,
    });
    let mut commands = Vec::new();
    if let Some(f) = &fleet {
        if !f.argv.is_empty() {
            commands.push(("merge".to_string(), command_line(&f.argv)));
        }
    }
    for r in &runs {
        if !r.argv.is_empty() {
            commands.push((r.label(), command_line(&r.argv)));
        }
    }
    if commands.is_empty() {
        notes.push("The input records no command line (JSON format 1).".to_string());
    }
    Ok(Page {
        title,
        kind: if sharded { "goon fleet" } else { "goon" },
        verdict: total.sections.probe.as_ref().map(probe::verdict_line),
        verdict_good: total.sections.probe.as_ref().map(|p| p.verdict.kind == "none"),
        summary,
        notes,
        charts,
        bars,
        tables,
        commands,
    })
}

pub(super) fn fleet_page(file: &str, doc: &Value) -> Result<Page, InputError> {
    let mut fleet = Run::parse(file, doc)?;
    fleet.file = file.to_string();
    let mut shards = Vec::new();
    if let Some(results) = doc["shard_results"].as_array() {
        for (i, r) in results.iter().enumerate() {
            shards.push(Run::parse(&format!("{file}: shard_results[{i}]"), r)?);
        }
        // Name shards by the file they came from, where the fleet says.
        if let Some(per) = doc["fleet"]["per_shard"].as_array() {
            for (s, p) in shards.iter_mut().zip(per) {
                if let Some(f) = p["file"].as_str() {
                    s.file = f.to_string();
                }
            }
        }
    }
    if shards.is_empty() {
        return Err(err(file, "a merged fleet result without shard_results"));
    }
    let mut page = goon_page(shards, Some(fleet))?;
    let v = &doc["fleet"]["violations"];
    if let Some(vs) = v.as_array().filter(|a| !a.is_empty()) {
        page.notes.insert(0, format!("Thresholds violated: {}", vs.iter().map(text).collect::<Vec<_>>().join("; ")));
    }
    if let Some(m) = doc["fleet"]["missing"].as_array().filter(|a| !a.is_empty()) {
        page.notes.insert(0, format!("Missing shards: {}", m.iter().map(text).collect::<Vec<_>>().join(", ")));
    }
    Ok(page)
}

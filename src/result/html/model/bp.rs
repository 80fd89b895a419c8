//! The bp client page: the window and queue time series with the zero-window time shaded,
//! and the verdict.

use serde_json::Value;

use super::goon::time_chart;
use super::read::{int, num, round4, text};
use super::{err, Chart, InputError, Page, Series, Table, Unit, BP_CONNECTION_CHARTS_MAX};

/// One point of a bp client series.
struct BpPoint {
    t: f64,
    bytes_written: f64,
    outq: f64,
    notsent: Option<f64>,
    snd_wnd: Option<f64>,
    zero: bool,
}

/// The points of `v["series"]`, each checked: an object whose `t`, `bytes_written` and `outq`
/// are non-negative numbers, `t` never going back, `notsent` and `snd_wnd` numbers or absent.
/// `at` names the series in errors (`series`, `connections[2].series`).
fn bp_points(file: &str, at: &str, v: &Value) -> Result<Vec<BpPoint>, InputError> {
    let Some(a) = v["series"].as_array() else { return Err(err(file, format!("{at}: missing or not an array"))) };
    let mut pts: Vec<BpPoint> = Vec::with_capacity(a.len());
    for (i, p) in a.iter().enumerate() {
        if !p.is_object() {
            return Err(err(file, format!("{at}[{i}]: not an object")));
        }
        let need = |key: &str| {
            p[key]
                .as_f64()
                .filter(|x| *x >= 0.0)
                .ok_or_else(|| err(file, format!("{at}[{i}].{key}: {}: not a non-negative number", p[key])))
        };
        let may = |key: &str| if p[key].is_null() { Ok(None) } else { need(key).map(Some) };
        let point = BpPoint {
            t: need("t")?,
            bytes_written: need("bytes_written")?,
            outq: need("outq")?,
            notsent: may("notsent")?,
            snd_wnd: may("snd_wnd")?,
            zero: p["state"].as_str() == Some("zero-window") || p["snd_wnd"].as_f64() == Some(0.0),
        };
        if let Some(prev) = pts.last().filter(|prev| prev.t > point.t) {
            return Err(err(file, format!("{at}[{i}].t: {} comes before the previous sample's {}", point.t, prev.t)));
        }
        pts.push(point);
    }
    Ok(pts)
}

/// Runs of zero-window points as x ranges: from a zero point to the next point (the window
/// was seen closed from then until it was seen open), or to the last point.
fn zero_bands(pts: &[BpPoint]) -> Vec<(f64, f64)> {
    let mut bands: Vec<(f64, f64)> = Vec::new();
    for (i, p) in pts.iter().enumerate() {
        if !p.zero {
            continue;
        }
        let end = pts.get(i + 1).map_or(p.t, |n| n.t);
        match bands.last_mut() {
            Some(b) if (b.1 - p.t).abs() < 1e-9 => b.1 = end,
            _ => bands.push((p.t, end)),
        }
    }
    bands.into_iter().map(|(a, b)| (round4(a), round4(b))).collect()
}

fn window_chart(id: &str, title: &str, pts: &[BpPoint]) -> Chart {
    let line = |name: &str, f: &dyn Fn(&BpPoint) -> Option<f64>| Series {
        name: name.to_string(),
        points: pts.iter().filter_map(|p| f(p).map(|y| (round4(p.t), y))).collect(),
    };
    let series: Vec<Series> = [
        line("peer window (snd_wnd)", &|p| p.snd_wnd),
        line("unacknowledged (SIOCOUTQ)", &|p| Some(p.outq)),
        line("not sent (notsent)", &|p| p.notsent),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    let mut chart = time_chart(id, title, "bytes", Unit::Bytes, series);
    chart.bands = zero_bands(pts);
    chart.band_label = "zero window".to_string();
    chart
}

pub(super) fn bp_page(file: &str, doc: &Value) -> Result<Page, InputError> {
    let pts = bp_points(file, "series", doc)?;
    if pts.is_empty() {
        return Err(err(file, "series: no samples to draw"));
    }
    let mut charts = vec![window_chart("window", "Peer window and send queue (all connections)", &pts)];
    let rate: Vec<(f64, f64)> = pts
        .windows(2)
        .filter(|w| w[1].t > w[0].t)
        .map(|w| (round4(w[1].t), ((w[1].bytes_written - w[0].bytes_written) / (w[1].t - w[0].t)).max(0.0).round()))
        .collect();
    let mut rate_chart = time_chart(
        "write-rate",
        "Application write rate (bytes write(2) accepted per second)",
        "bytes per second",
        Unit::BytesPerSecond,
        vec![Series { name: "app_write".to_string(), points: rate }],
    );
    rate_chart.bands = zero_bands(&pts);
    rate_chart.band_label = "zero window".to_string();
    charts.push(rate_chart);
    let conns = doc["connections"].as_array().cloned().unwrap_or_default();
    if conns.len() > 1 {
        for (i, c) in conns.iter().enumerate().take(BP_CONNECTION_CHARTS_MAX) {
            let cp = bp_points(file, &format!("connections[{i}].series"), c)?;
            if !cp.is_empty() {
                charts.push(window_chart(&format!("conn-{i}"), &format!("Connection {i}: window and send queue"), &cp));
            }
        }
    }
    let s = &doc["summary"];
    let opt = |v: &Value, f: &dyn Fn(&Value) -> String| if v.is_null() { "-".to_string() } else { f(v) };
    let e = &s["episodes"];
    let summary = vec![
        ("samples".to_string(), int(&s["samples"]).to_string()),
        (
            "zero-window samples".to_string(),
            format!("{} ({:.1}%)", int(&s["zero_window_samples"]), num(&s["zero_window_fraction"]) * 100.0),
        ),
        ("window-limited samples".to_string(), int(&s["window_limited_samples"]).to_string()),
        ("first zero window".to_string(), opt(&s["first_zero_window_s"], &|v| format!("t={:.2} s", num(v)))),
        ("bytes before the first EAGAIN".to_string(), opt(&s["first_eagain_after_bytes"], &|v| int(v).to_string())),
        ("bytes written".to_string(), int(&s["bytes_written"]).to_string()),
        ("writes refused (EAGAIN)".to_string(), int(&s["eagain"]).to_string()),
        ("max probe backoff".to_string(), int(&s["max_backoff"]).to_string()),
        (
            "zero-window episodes".to_string(),
            format!(
                "{} (min {:.2} s, avg {:.2} s, max {:.2} s{})",
                int(&e["count"]),
                num(&e["min_s"]),
                num(&e["avg_s"]),
                num(&e["max_s"]),
                if e["open_at_end"].as_bool() == Some(true) { ", one open at the end" } else { "" }
            ),
        ),
        ("unacknowledged at the end (SIOCOUTQ)".to_string(), int(&doc["final"]["outq"]).to_string()),
    ];
    let mut tables = Vec::new();
    if !conns.is_empty() {
        let rows = conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cs = &c["summary"];
                vec![
                    i.to_string(),
                    int(&cs["samples"]).to_string(),
                    format!("{:.1}%", num(&cs["zero_window_fraction"]) * 100.0),
                    int(&cs["bytes_written"]).to_string(),
                    text(&c["verdict"]),
                ]
            })
            .collect();
        tables.push(Table {
            title: "Connections".to_string(),
            head: ["connection", "samples", "zero window", "bytes written", "verdict"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            rows,
        });
    }
    let mut notes = Vec::new();
    if int(&doc["series_stride"]) > 1 {
        notes.push(format!("The series keeps every {}th sample (bounded to 4096 points).", int(&doc["series_stride"])));
    }
    Ok(Page {
        title: "bp client run".to_string(),
        kind: "bp client",
        verdict: Some(text(&doc["verdict"])),
        verdict_good: None,
        summary,
        notes,
        charts,
        bars: Vec::new(),
        tables,
        commands: Vec::new(),
    })
}

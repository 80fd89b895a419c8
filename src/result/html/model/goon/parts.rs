//! The tables and charts of a goon result's TLS, WebSocket and traffic parts: each part's
//! figures as a table (the final block's figures, in its order), its latency percentile
//! curves drawn as the connect-time one is, and, where the samples carry the part, its
//! per-interval rates and latencies.

use super::{curves, fmt_s, latency_series, percentile_chart, steps, time_chart};
use crate::result::html::model::read::{Lat, Run, Sample};
use crate::result::html::model::sections::{lat_of, IvTls, IvTraffic, IvWs};
use crate::result::html::model::{Bars, Chart, Series, Table, Unit};
use crate::stats::counted;
use crate::tls::TlsCause;

/// What the parts add to the page.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) charts: Vec<Chart>,
    pub(super) bars: Vec<Bars>,
    pub(super) tables: Vec<Table>,
    pub(super) notes: Vec<String>,
}

/// The shards' own curves on a fleet page (`None` on a one-run page), of the latency `of` a
/// run gives.
pub(super) type ShardCurves<'a> = &'a dyn Fn(&dyn Fn(&Run) -> Option<Lat>) -> Option<Vec<(String, Lat)>>;

/// The parts of `total` (the run, or the fleet's sum); `scope` names it in chart titles.
pub(super) fn parts(total: &Run, scope: &str, shard_curves: ShardCurves) -> Parts {
    let mut out = Parts::default();
    tls(total, scope, shard_curves, &mut out);
    ws(total, scope, shard_curves, &mut out);
    traffic(total, scope, shard_curves, &mut out);
    out
}

type Rows = Vec<(String, String)>;

/// A table of figures: one row per figure, in the order given.
fn figures(title: &str, rows: Rows) -> Table {
    Table {
        title: title.to_string(),
        head: vec!["figure".to_string(), "value".to_string()],
        rows: rows.into_iter().map(|(k, v)| vec![k, v]).collect(),
    }
}

fn row(rows: &mut Rows, k: &str, v: impl ToString) {
    rows.push((k.to_string(), v.to_string()));
}

/// The two lines goon prints for a latency: min/avg/max/dev and p50/p90/p99/p99.9/max.
fn lat_rows(rows: &mut Rows, what: &str, one: &str, many: &str, l: &Lat) {
    if l.count == 0 {
        return;
    }
    rows.push((format!("{what}, {}, min/avg/max/dev", counted(l.count, one, many)), l.min_avg_max_dev()));
    if let Some(p) = l.percentiles_line() {
        rows.push((format!("{what} p50/p90/p99/p99.9/max"), p));
    }
}

fn per_s(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}/s"))
}

/// Steps of a per-interval count, as a rate (0 where a sample lacks the part).
fn rate(name: &str, samples: &[Sample], f: &dyn Fn(&Sample) -> u64) -> Series {
    Series { name: name.to_string(), points: steps(samples, f) }
}

fn interval_latency(id: &str, title: &str, y_label: &str, series: Vec<Series>) -> Option<Chart> {
    if series.is_empty() {
        return None;
    }
    let mut c = time_chart(id, title, y_label, Unit::Ms, series);
    c.y_log = true;
    Some(c)
}

fn tls(total: &Run, scope: &str, shard_curves: ShardCurves, out: &mut Parts) {
    let Some(t) = &total.sections.tls else { return };
    let hs = lat_of(&t.handshake);
    let mut rows = Rows::new();
    row(&mut rows, "handshakes done", t.done());
    row(&mut rows, "full handshakes", t.full);
    row(&mut rows, "resumed handshakes", t.resumed);
    row(&mut rows, "failed", t.failed);
    row(&mut rows, "unfinished at the end", t.unfinished);
    row(&mut rows, "handshakes per second (start of dialing to the last handshake)", per_s(t.per_second()));
    if let Some(s) = t.span_s {
        row(&mut rows, "handshake span", fmt_s(s));
    }
    if let Some(a) = &t.alpn {
        for (p, n) in &a.protocols {
            rows.push((format!("ALPN negotiated: {p}"), n.to_string()));
        }
        row(&mut rows, "ALPN negotiated: none", a.none);
    }
    lat_rows(&mut rows, "handshake time", "handshake", "handshakes", &hs);
    let mut causes: Vec<(String, u64)> =
        TlsCause::ALL.iter().map(|c| (c.name().to_string(), t.failures[c.index()])).filter(|(_, n)| *n > 0).collect();
    causes.sort();
    for (name, n) in &causes {
        rows.push((format!("failures: {name}"), n.to_string()));
    }
    out.tables.push(figures("TLS handshakes", rows));
    if !causes.is_empty() {
        out.bars.push(Bars {
            id: "tls-failures".to_string(),
            title: "TLS failures by cause".to_string(),
            items: causes,
        });
    }
    let samples = &total.samples;
    if samples.iter().any(|s| s.tls.is_some()) {
        let of = |f: fn(&IvTls) -> u64| move |s: &Sample| s.tls.as_ref().map_or(0, f);
        let series = vec![
            rate("full/s", samples, &of(|t| t.full)),
            rate("resumed/s", samples, &of(|t| t.resumed)),
            rate("failed/s", samples, &of(|t| t.failed)),
        ];
        out.charts.push(time_chart(
            "tls-handshakes",
            &format!("TLS handshakes per second ({scope})"),
            "per second",
            Unit::PerSecond,
            series,
        ));
        out.charts.extend(interval_latency(
            "tls-interval-latency",
            &format!("TLS handshake time per interval ({scope})"),
            "handshake time",
            latency_series(samples, &|s| s.tls.as_ref().map(|t| &t.handshake)),
        ));
    }
    let shards = shard_curves(&|r| r.sections.tls.as_ref().map(|t| lat_of(&t.handshake)));
    out.charts.extend(percentile_chart(
        "tls-percentiles",
        "TLS handshake-time percentiles (from the HdrHistogram)",
        "handshake time",
        curves("handshake time", &hs, shards),
    ));
}

fn ws(total: &Run, scope: &str, shard_curves: ShardCurves, out: &mut Parts) {
    let Some(w) = &total.sections.ws else { return };
    let c = &w.counts;
    let (upgrade, ping) = (lat_of(&w.lat.upgrade), lat_of(&w.lat.ping));
    let mut rows = Rows::new();
    row(&mut rows, "path", &w.path);
    if let Some(p) = w.ping_s {
        row(&mut rows, "ping interval", fmt_s(p));
    }
    row(&mut rows, "upgraded", c.upgraded_total);
    row(&mut rows, "open on closure", c.upgraded);
    row(&mut rows, "upgrading on closure", c.upgrading);
    row(&mut rows, "upgrades failed", c.failed());
    let mut items: Vec<(String, u64)> =
        c.failed_status.sorted().iter().map(|(s, n)| (format!("HTTP {s}"), *n)).collect();
    for (name, n) in [
        ("other HTTP status", c.failed_status.other),
        ("timeout", c.failed_timeout),
        ("closed by the peer", c.failed_closed),
        ("bad response", c.failed_bad_response),
    ] {
        if n > 0 {
            items.push((name.to_string(), n));
        }
    }
    for (name, n) in &items {
        rows.push((format!("failed: {name}"), n.to_string()));
    }
    lat_rows(&mut rows, "upgrade time", "upgrade", "upgrades", &upgrade);
    if w.ping_s.is_some() || c.pings_sent > 0 {
        row(&mut rows, "pings sent", c.pings_sent);
        row(&mut rows, "pings answered", c.pongs);
        row(&mut rows, "pings unanswered", c.pings_unanswered);
        row(&mut rows, "pings in flight at the end", c.pings_outstanding);
        row(&mut rows, "pings not sent (peer not reading)", c.pings_unsent);
    }
    lat_rows(&mut rows, "ping RTT", "pong", "pongs", &ping);
    if c.close_frames + c.pings_received + c.protocol_errors > 0 {
        row(&mut rows, "pings from the server (the last of each read answered)", c.pings_received);
        row(&mut rows, "close frames from the server", c.close_frames);
        row(&mut rows, "protocol errors", c.protocol_errors);
    }
    out.tables.push(figures("WebSocket", rows));
    if !items.is_empty() {
        out.bars.push(Bars { id: "ws-failures".to_string(), title: "WebSocket upgrade failures".to_string(), items });
    }
    let shards = shard_curves(&|r| r.sections.ws.as_ref().map(|w| lat_of(&w.lat.upgrade)));
    out.charts.extend(percentile_chart(
        "ws-upgrade-percentiles",
        "WebSocket upgrade-time percentiles (from the HdrHistogram)",
        "upgrade time",
        curves("upgrade time", &upgrade, shards),
    ));
    let shards = shard_curves(&|r| r.sections.ws.as_ref().map(|w| lat_of(&w.lat.ping)));
    out.charts.extend(percentile_chart(
        "ws-ping-percentiles",
        "Ping round-trip-time percentiles (from the HdrHistogram)",
        "ping RTT",
        curves("ping RTT", &ping, shards),
    ));
    let samples = &total.samples;
    if samples.iter().any(|s| s.ws.is_some()) {
        let of = |f: fn(&IvWs) -> u64| move |s: &Sample| s.ws.as_ref().map_or(0, f);
        let mut series =
            vec![rate("upgraded/s", samples, &of(|w| w.upgraded)), rate("failed/s", samples, &of(|w| w.failed))];
        if w.ping_s.is_some() || c.pings_sent > 0 {
            series.push(rate("pongs/s", samples, &of(|w| w.pongs)));
        }
        out.charts.push(time_chart(
            "ws-upgrades",
            &format!("WebSocket upgrades per second ({scope})"),
            "per second",
            Unit::PerSecond,
            series,
        ));
        out.charts.extend(interval_latency(
            "ws-upgrade-interval-latency",
            &format!("WebSocket upgrade time per interval ({scope})"),
            "upgrade time",
            latency_series(samples, &|s| s.ws.as_ref().map(|w| &w.upgrade)),
        ));
        out.charts.extend(interval_latency(
            "ws-ping-interval-latency",
            &format!("Ping round-trip time per interval ({scope})"),
            "ping RTT",
            latency_series(samples, &|s| s.ws.as_ref().map(|w| &w.ping)),
        ));
    } else if !samples.is_empty() {
        out.notes.push(
            "The WebSocket figures are the whole run's: this file's samples carry none per interval (an older \
             netforge wrote it)."
                .to_string(),
        );
    }
}

fn traffic(total: &Run, scope: &str, shard_curves: ShardCurves, out: &mut Parts) {
    let Some(t) = &total.sections.traffic else { return };
    let c = &t.counts;
    let response = lat_of(&t.response);
    let bytes = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| format!("{n} B"));
    let mut rows = Rows::new();
    row(&mut rows, "message", bytes(t.message_bytes));
    if t.first_message_bytes.is_some() {
        row(&mut rows, "first message", bytes(t.first_message_bytes));
    }
    if let Some(r) = t.rate_per_conn {
        row(&mut rows, "message rate per connection", format!("{r}/s"));
    }
    if let Some(d) = t.duration_s {
        row(&mut rows, "traffic phase", fmt_s(d));
    }
    let mode = match (&t.expect_bytes, &t.marker) {
        (Some(n), _) => format!("{n} B"),
        (None, Some(m)) => format!("ends with {m:?}"),
        (None, None) => "not timed (no --expect-bytes or --marker)".to_string(),
    };
    row(&mut rows, "response", mode);
    row(&mut rows, "connections with traffic", c.flows);
    row(&mut rows, "messages scheduled", c.scheduled);
    row(&mut rows, "messages sent", c.sent);
    row(&mut rows, "messages answered", c.responses);
    row(&mut rows, "messages behind (outstanding bound reached)", c.behind);
    row(&mut rows, "messages unsent", c.unsent());
    if t.measures() {
        row(&mut rows, "messages unanswered", c.unanswered());
    }
    row(&mut rows, "responses unmatched", c.unmatched);
    if t.rate_per_conn.is_some() {
        row(&mut rows, "requested rate", per_s(t.requested_per_s));
        row(&mut rows, "achieved rate, sent", per_s(t.sent_per_s));
        row(&mut rows, "achieved rate, answered", per_s(t.responses_per_s));
    }
    row(&mut rows, "bytes up", c.bytes_up);
    row(&mut rows, "bytes down", c.bytes_down);
    lat_rows(&mut rows, "response time from the intended send time", "response", "responses", &response);
    out.tables.push(figures("Traffic", rows));
    let samples = &total.samples;
    if samples.iter().any(|s| s.traffic.is_some()) {
        let of = |f: fn(&IvTraffic) -> u64| move |s: &Sample| s.traffic.as_ref().map_or(0, f);
        out.charts.push(time_chart(
            "traffic-messages",
            &format!("Messages per second ({scope})"),
            "per second",
            Unit::PerSecond,
            vec![
                rate("sent/s", samples, &of(|t| t.sent)),
                rate("answered/s", samples, &of(|t| t.responses)),
                rate("behind/s", samples, &of(|t| t.behind)),
            ],
        ));
        out.charts.push(time_chart(
            "traffic-bytes",
            &format!("Bytes per second, up and down ({scope})"),
            "bytes per second",
            Unit::BytesPerSecond,
            vec![rate("up", samples, &of(|t| t.bytes_up)), rate("down", samples, &of(|t| t.bytes_down))],
        ));
        out.charts.extend(interval_latency(
            "traffic-interval-latency",
            &format!("Response time per interval, from the intended send time ({scope})"),
            "response time",
            latency_series(samples, &|s| s.traffic.as_ref().map(|t| &t.response)),
        ));
    }
    let shards = shard_curves(&|r| r.sections.traffic.as_ref().map(|t| lat_of(&t.response)));
    out.charts.extend(percentile_chart(
        "traffic-percentiles",
        "Response-time percentiles, from the intended send time (from the HdrHistogram)",
        "response time",
        curves("response time", &response, shards),
    ));
}

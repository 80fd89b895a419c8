//! The TLS, WebSocket, traffic and idle-probe parts of a goon page. The parts are written by
//! the serializers goon itself writes them with, so the shapes are goon's.

use std::time::Duration;

use serde_json::json;

use super::super::sections::lat_of;
use super::*;
use crate::result::probe::verdict::Group;
use crate::result::probe::ProbeOutcome;
use crate::result::tls::TlsTotals;
use crate::result::traffic::{traffic_json, TrafficCounts};
use crate::result::ws::{json_value, WsLatencies};
use crate::tls::TlsCause;
use crate::ws::client::ClientCounts;

const IVS: [Iv; 3] = [(0.0, 1.0, 40, 10, 0, 50, 40), (1.0, 2.0, 50, 0, 0, 10, 10), (2.0, 2.5, 50, 0, 0, 0, 0)];

fn table<'a>(p: &'a Page, title: &str) -> &'a Table {
    p.tables.iter().find(|t| t.title.starts_with(title)).unwrap_or_else(|| panic!("no table {title}: {:?}", p.tables))
}

/// A figures table as (figure, value) pairs.
fn pairs(t: &Table) -> Vec<(String, String)> {
    assert_eq!(t.head, ["figure", "value"]);
    t.rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect()
}

fn owned(v: &[(&str, String)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

fn tls_totals(seed: u64) -> TlsTotals {
    let mut t = TlsTotals {
        full: 45,
        resumed: 5,
        failed: 3,
        unfinished: 1,
        handshake: random_latency(50, seed),
        span_s: Some(0.5),
        ..TlsTotals::default()
    };
    t.failures[TlsCause::HandshakeTimeout.index()] = 1;
    t.failures[TlsCause::CertUnknownIssuer.index()] = 2;
    t
}

/// A plain run's document with a `tls` part and per-interval handshakes.
fn tls_doc(t: &TlsTotals, per_iv: [&Latency; 3]) -> Value {
    let mut doc = shard_doc(None, "gen-1", 1000.0, &IVS, &random_latency(100, 2));
    doc["tls"] = t.to_json();
    for (i, (full, failed)) in [(40, 2), (10, 1), (0, 0)].into_iter().enumerate() {
        doc["samples"][i]["tls"] =
            json!({ "full": full, "resumed": 0, "failed": failed, "handshake_time": per_iv[i].moments_json() });
    }
    doc
}

#[test]
fn tls_part_has_its_table_curve_and_intervals() {
    let t = tls_totals(21);
    let (a, b) = (random_latency(40, 22), random_latency(10, 23));
    let page = build(&[input("tls.json", tls_doc(&t, [&a, &b, &Latency::new()]))]).unwrap();
    let tab = table(&page, "TLS handshakes");
    let hs = &t.handshake;
    assert_eq!(
        pairs(tab),
        owned(&[
            ("handshakes done", "50".into()),
            ("full handshakes", "45".into()),
            ("resumed handshakes", "5".into()),
            ("failed", "3".into()),
            ("unfinished at the end", "1".into()),
            ("handshakes per second (start of dialing to the last handshake)", "100.0/s".into()),
            ("handshake span", "500ms".into()),
            ("handshake time, 50 handshakes, min/avg/max/dev", hs.min_avg_max_dev()),
            ("handshake time p50/p90/p99/p99.9/max", hs.percentiles_line()),
            ("failures: cert_unknown_issuer", "2".into()),
            ("failures: handshake_timeout", "1".into()),
        ])
    );
    assert_eq!(page.tables.last().unwrap().title, "Run", "the parts' tables come first");
    let bars = page.bars.iter().find(|b| b.id == "tls-failures").unwrap();
    assert_eq!(bars.items, vec![("cert_unknown_issuer".to_string(), 2), ("handshake_timeout".to_string(), 1)]);
    let rates = chart(&page, "tls-handshakes");
    assert_eq!(rates.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["full/s", "resumed/s", "failed/s"]);
    assert_eq!(
        rates.series[0].points,
        vec![(0.0, 40.0), (1.0, 40.0), (1.0, 10.0), (2.0, 10.0), (2.0, 0.0), (2.5, 0.0)]
    );
    assert_eq!(rates.series[2].points[2], (1.0, 1.0));
    let iv = chart(&page, "tls-interval-latency");
    assert!(iv.y_log);
    assert_eq!(
        iv.series[2].points,
        vec![(0.0, ms(a.max())), (1.0, ms(a.max())), (1.0, ms(b.max())), (2.0, ms(b.max()))]
    );
    let p = chart(&page, "tls-percentiles");
    assert_eq!(p.series.len(), 1);
    assert_eq!(p.series[0].name, "handshake time");
    // The connect-time curve's code path: the same points as a connect time of these samples.
    let as_connect = Lat::parse("x", "c", &lat_json(hs)).unwrap();
    assert_eq!(p.series[0].points, as_connect.curve());
    assert_eq!(*p.series[0].points.last().unwrap(), (round4(50f64.log10()), ms(hs.max())));
    assert_eq!(p.x_ticks, chart(&page, "percentiles").x_ticks[..2].to_vec(), "50 samples: up to the 90% tick");
    // Without per-interval handshakes (format 1, or a stream-less merge) no interval charts.
    let mut doc = tls_doc(&t, [&a, &b, &Latency::new()]);
    doc.as_object_mut().unwrap().remove("samples");
    let page = build(&[input("tls.json", doc)]).unwrap();
    assert!(page.charts.iter().all(|c| !c.id.starts_with("tls-") || c.id == "tls-percentiles"));
}

#[test]
fn websocket_part_has_failures_by_status_and_both_curves() {
    let mut c = ClientCounts {
        upgraded_total: 47,
        upgraded: 45,
        upgrading: 1,
        failed_timeout: 1,
        pings_sent: 300,
        pongs: 290,
        pings_unanswered: 5,
        pings_outstanding: 5,
        pings_unsent: 3,
        ..ClientCounts::default()
    };
    c.failed_status.add(404, 1);
    c.failed_status.add(403, 2);
    let l = WsLatencies { upgrade: random_latency(47, 31), ping: random_latency(290, 32) };
    let mut doc = shard_doc(None, "gen-1", 1000.0, &IVS, &random_latency(50, 3));
    doc["websocket"] = json_value(&c, &l);
    doc["config"]["websocket"] =
        json!({ "path": "/chat?room=1", "ping_s": 0.2, "headers": [], "upgrade_timeout_ms": 10000.0 });
    let page = build(&[input("ws.json", doc.clone())]).unwrap();
    assert_eq!(
        pairs(table(&page, "WebSocket")),
        owned(&[
            ("path", "/chat?room=1".into()),
            ("ping interval", "200ms".into()),
            ("upgraded", "47".into()),
            ("open on closure", "45".into()),
            ("upgrading on closure", "1".into()),
            ("upgrades failed", "4".into()),
            ("failed: HTTP 403", "2".into()),
            ("failed: HTTP 404", "1".into()),
            ("failed: timeout", "1".into()),
            ("upgrade time, 47 upgrades, min/avg/max/dev", l.upgrade.min_avg_max_dev()),
            ("upgrade time p50/p90/p99/p99.9/max", l.upgrade.percentiles_line()),
            ("pings sent", "300".into()),
            ("pings answered", "290".into()),
            ("pings unanswered", "5".into()),
            ("pings in flight at the end", "5".into()),
            ("pings not sent (peer not reading)", "3".into()),
            ("ping RTT, 290 pongs, min/avg/max/dev", l.ping.min_avg_max_dev()),
            ("ping RTT p50/p90/p99/p99.9/max", l.ping.percentiles_line()),
        ])
    );
    let bars = page.bars.iter().find(|b| b.id == "ws-failures").unwrap();
    assert_eq!(bars.items.iter().map(|i| i.1).collect::<Vec<_>>(), [2, 1, 1]);
    assert_eq!(chart(&page, "ws-upgrade-percentiles").series[0].points, lat_of(&l.upgrade).curve());
    let ping = chart(&page, "ws-ping-percentiles");
    assert_eq!(ping.series[0].name, "ping RTT");
    assert_eq!(ping.series[0].points.last().unwrap().1, ms(l.ping.max()));
    assert!(page.notes.iter().any(|n| n.contains("carry none per interval")), "{:?}", page.notes);
    assert!(page.charts.iter().all(|c| c.id != "ws-upgrades"), "no interval chart without interval parts");
    // With each sample's `websocket` part: rates and per-interval latencies, and no note.
    let (a, b) = (random_latency(40, 33), random_latency(7, 34));
    let (pa, pb) = (random_latency(100, 35), random_latency(190, 36));
    let none = Latency::new();
    for (i, (up, failed, pongs, ul, pl)) in
        [(40, 3, 100, &a, &pa), (7, 1, 190, &b, &pb), (0, 0, 0, &none, &none)].into_iter().enumerate()
    {
        doc["samples"][i]["websocket"] = json!({
            "upgrading": 1, "open": 45, "upgraded_new": up, "failed_new": failed, "pings_sent_new": pongs,
            "pongs_new": pongs, "upgrade_time": ul.moments_json(), "ping_rtt": pl.moments_json(),
        });
    }
    let page = build(&[input("ws.json", doc.clone())]).unwrap();
    assert!(page.notes.iter().all(|n| !n.contains("per interval")), "{:?}", page.notes);
    let rates = chart(&page, "ws-upgrades");
    assert_eq!(rates.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["upgraded/s", "failed/s", "pongs/s"]);
    assert_eq!(rates.series[0].points, vec![(0.0, 40.0), (1.0, 40.0), (1.0, 7.0), (2.0, 7.0), (2.0, 0.0), (2.5, 0.0)]);
    assert_eq!(rates.series[1].points[2], (1.0, 1.0));
    let up = chart(&page, "ws-upgrade-interval-latency");
    assert!(up.y_log);
    assert_eq!(
        up.series[2].points,
        vec![(0.0, ms(a.max())), (1.0, ms(a.max())), (1.0, ms(b.max())), (2.0, ms(b.max()))]
    );
    assert_eq!(chart(&page, "ws-ping-interval-latency").series[2].points[2], (1.0, ms(pb.max())));
    // A part that lacks a key is refused, naming it.
    doc["samples"][1]["websocket"].as_object_mut().unwrap().remove("pongs_new");
    let e = build(&[input("ws.json", doc.clone())]).unwrap_err().to_string();
    assert_eq!(e, "ws.json: samples[1].websocket.pongs_new: missing or not a non-negative integer");
    // The path is the file's text: it reaches the page escaped.
    let mut doc = shard_doc(None, "gen-1", 1000.0, &IVS, &random_latency(50, 3));
    doc["websocket"] = json_value(&c, &l);
    doc["config"]["websocket"] = json!({ "path": "/</script><img src=x onerror=alert(1)>" });
    let html = render::page(&build(&[input("ws.json", doc)]).unwrap(), None);
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("<td>path</td><td>/&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</td>"), "{html}");
    assert_eq!(html.matches("<script").count(), 2);
}

fn traffic_counts(scale: u64) -> TrafficCounts {
    TrafficCounts {
        flows: 50 * scale,
        scheduled: 2000 * scale,
        slots: 2000 * scale,
        sent: 1990 * scale,
        responses: 1980 * scale,
        bytes_up: 9950 * scale,
        bytes_down: 9900 * scale,
        behind: 10 * scale,
        unmatched: scale,
        ..TrafficCounts::default()
    }
}

/// goon's `traffic` plan object.
fn plan() -> Value {
    json!({ "duration_s": 2.0, "expect_bytes": 5, "first_message_bytes": null, "marker": null,
            "message_bytes": 5, "message_rate_per_s": 20.0, "outstanding_max": 128 })
}

fn traffic_doc(shard: Option<(u64, u64)>, started: f64, c: &TrafficCounts, l: &Latency, ivs: [&Latency; 3]) -> Value {
    let mut doc = shard_doc(shard, "gen-1", started, &IVS, &random_latency(50, 4));
    doc["traffic"] = traffic_json(plan(), Some(20.0), c, l, c.flows);
    for (i, (sent, up)) in [(900u64, 4500u64), (1000, 5000), (90, 450)].into_iter().enumerate() {
        doc["samples"][i]["traffic"] = json!({
            "sent": sent, "responses": ivs[i].count, "bytes_up": up, "bytes_down": ivs[i].count * 5,
            "behind": if i == 1 { 10 } else { 0 }, "response_time": ivs[i].moments_json()
        });
    }
    doc
}

#[test]
fn traffic_part_has_rates_bytes_and_latency_from_the_intended_send_time() {
    let c = traffic_counts(1);
    let l = random_latency(1980, 41);
    let ivs = [random_latency(890, 42), random_latency(1000, 43), random_latency(90, 44)];
    let page = build(&[input("m.json", traffic_doc(None, 1000.0, &c, &l, [&ivs[0], &ivs[1], &ivs[2]]))]).unwrap();
    let (sent, answered) = c.achieved(20.0).unwrap();
    assert_eq!(
        format!("{sent:.1} {answered:.1}"),
        "995.0 990.0",
        "per connection-second of schedule, times the connections"
    );
    assert_eq!(
        pairs(table(&page, "Traffic")),
        owned(&[
            ("message", "5 B".into()),
            ("message rate per connection", "20/s".into()),
            ("traffic phase", "2s".into()),
            ("response", "5 B".into()),
            ("connections with traffic", "50".into()),
            ("messages scheduled", "2000".into()),
            ("messages sent", "1990".into()),
            ("messages answered", "1980".into()),
            ("messages behind (outstanding bound reached)", "10".into()),
            ("messages unsent", "10".into()),
            ("messages unanswered", "10".into()),
            ("responses unmatched", "1".into()),
            ("requested rate", "1000.0/s".into()),
            ("achieved rate, sent", "995.0/s".into()),
            ("achieved rate, answered", "990.0/s".into()),
            ("bytes up", "9950".into()),
            ("bytes down", "9900".into()),
            ("response time from the intended send time, 1980 responses, min/avg/max/dev", l.min_avg_max_dev()),
            ("response time from the intended send time p50/p90/p99/p99.9/max", l.percentiles_line()),
        ])
    );
    let msgs = chart(&page, "traffic-messages");
    assert_eq!(
        msgs.series[0].points,
        vec![(0.0, 900.0), (1.0, 900.0), (1.0, 1000.0), (2.0, 1000.0), (2.0, 180.0), (2.5, 180.0)]
    );
    assert_eq!(msgs.series[1].points[4], (2.0, 180.0), "90 answers in half a second");
    assert_eq!(msgs.series[2].points[2], (1.0, 10.0), "behind/s");
    let bytes = chart(&page, "traffic-bytes");
    assert_eq!(bytes.y_unit, Unit::BytesPerSecond);
    assert_eq!(bytes.series[0].points[4], (2.0, 900.0), "450 B up in half a second");
    assert_eq!(bytes.series[1].points[0], (0.0, 4450.0), "890 answers of 5 B");
    let iv = chart(&page, "traffic-interval-latency");
    let p99 = iv.series[1].points[2].1;
    let want = ms(ivs[1].percentile(99.0));
    assert!((p99 - want).abs() <= want * 2e-3, "{p99} vs {want}");
    let curve = chart(&page, "traffic-percentiles");
    assert_eq!(curve.series[0].points, lat_of(&l).curve());
    // No response mode: nothing is timed, and no unanswered count is claimed.
    let mut doc = traffic_doc(None, 1000.0, &c, &Latency::new(), [&Latency::new(), &Latency::new(), &Latency::new()]);
    doc["traffic"]["config"]["expect_bytes"] = Value::Null;
    let page = build(&[input("m.json", doc)]).unwrap();
    let rows = pairs(table(&page, "Traffic"));
    assert!(rows.contains(&("response".to_string(), "not timed (no --expect-bytes or --marker)".to_string())));
    assert!(!rows.iter().any(|r| r.0 == "messages unanswered" || r.0.starts_with("response time")), "{rows:?}");
    assert!(page.charts.iter().all(|c| c.id != "traffic-percentiles" && c.id != "traffic-interval-latency"));
}

fn group(connections: u64, alive: u64, reset: u64, dropped: u64) -> Group {
    Group {
        connections,
        established: connections,
        alive,
        answered: alive,
        reset,
        dropped,
        retransmits: dropped * 3,
        ..Group::default()
    }
}

fn probe_doc(shard: Option<(u64, u64)>, groups: &[Group]) -> (Value, ProbeOutcome) {
    let idle = [Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(10)];
    let o = ProbeOutcome::new(&idle[..groups.len()], Duration::from_secs(2), 1, groups);
    let mut doc = shard_doc(shard, "gen-1", 1000.0, &IVS, &random_latency(30, 5));
    doc["probe"] = o.to_json();
    (doc, o)
}

#[test]
fn probe_part_shows_the_verdict_first_and_each_group() {
    let mut lost_early = group(5, 0, 5, 0);
    lost_early.lost_before_probe = 5;
    lost_early.first_lost_us = Some(2_500_000);
    let (doc, o) = probe_doc(None, &[group(5, 5, 0, 0), group(5, 3, 2, 0), lost_early]);
    assert_eq!(o.verdict.kind, "reset");
    let page = build(&[input("p.json", doc)]).unwrap();
    assert_eq!(page.verdict.as_deref(), Some(format!("Idle-timeout verdict: {}", o.verdict.text).as_str()));
    assert_eq!(page.verdict_good, Some(false));
    let t = &page.tables[0];
    assert_eq!(t.title, "Idle probe groups (1 byte probe, deadline 2s)");
    assert_eq!(t.head[..2], ["idle".to_string(), "classification".to_string()]);
    let col = |name: &str| t.head.iter().position(|h| h == name).unwrap();
    let cells = |name: &str| t.rows.iter().map(|r| r[col(name)].as_str()).collect::<Vec<_>>();
    assert_eq!(cells("idle"), ["1s", "3s", "10s"]);
    assert_eq!(cells("classification"), ["alive", "reset (RST): 2 of 5 lost", "reset (RST)"]);
    assert_eq!(cells("alive"), ["5", "3", "0"]);
    assert_eq!(cells("probed"), ["5", "5", "5"]);
    assert_eq!(cells("first lost after"), ["-", "-", "2.5s"]);
    assert_eq!(cells("lost before the probe"), ["0", "0", "5"]);
    let html = render::page(&page, None);
    assert!(
        html.contains("<section class=\"verdict no\" id=\"verdict\">Idle-timeout verdict: a middlebox or the server")
    );
    // No timeout found: good news, shown green; dropped silently beats a tie with reset.
    let (doc, o) = probe_doc(None, &[group(4, 4, 0, 0), group(4, 4, 0, 0)]);
    let page = build(&[input("p.json", doc)]).unwrap();
    assert_eq!(o.verdict.kind, "none");
    assert_eq!(page.verdict_good, Some(true));
    assert!(render::page(&page, None).contains("<section class=\"verdict yes\" id=\"verdict\">"));
    let (doc, _) = probe_doc(None, &[group(4, 0, 2, 2)]);
    let page = build(&[input("p.json", doc)]).unwrap();
    assert_eq!(page.tables[0].rows[0][1], "dropped silently");
    assert_eq!(page.tables[0].rows[0][col("probe retransmissions")], "6");
}

/// Shard files: each part is summed as `report merge` sums it (TLS span from the fleet's first
/// start, rates recomputed, the probe's verdict drawn again from the summed groups), and the
/// shards' own curves are drawn beside the fleet's.
#[test]
fn shard_files_sum_their_parts() {
    let (ta, tb) = (tls_totals(51), tls_totals(52));
    let (la, lb) = (random_latency(1980, 53), random_latency(3960, 54));
    let e = Latency::new();
    let mut a = traffic_doc(Some((0, 2)), 1000.0, &traffic_counts(1), &la, [&e, &e, &e]);
    let mut b = traffic_doc(Some((1, 2)), 1001.0, &traffic_counts(2), &lb, [&e, &e, &e]);
    a["tls"] = ta.to_json();
    b["tls"] = tb.to_json();
    let (mut ca, mut cb) = (ClientCounts { upgraded_total: 20, ..Default::default() }, ClientCounts::default());
    ca.failed_status.add(403, 1);
    cb.failed_status.add(403, 2);
    cb.failed_status.add(502, 1);
    let (wa, wb) = (WsLatencies { upgrade: random_latency(20, 55), ..Default::default() }, WsLatencies::default());
    a["websocket"] = json_value(&ca, &wa);
    b["websocket"] = json_value(&cb, &wb);
    let page = build(&[input("b.json", b.clone()), input("a.json", a.clone())]).unwrap();
    let mut tls = TlsTotals::default();
    tls.add(&ta, 0.0).unwrap();
    tls.add(&tb, 1.0).unwrap();
    let rows = pairs(table(&page, "TLS handshakes"));
    assert_eq!(rows[0], ("handshakes done".to_string(), "100".to_string()));
    assert_eq!(rows[5].1, "66.7/s", "100 handshakes over the fleet's 1.5 s span");
    assert_eq!(rows[7].1, tls.handshake.min_avg_max_dev());
    let mut sum = traffic_counts(1);
    sum.add(&traffic_counts(2));
    let (sent, answered) = sum.achieved(20.0).unwrap();
    let rows = pairs(table(&page, "Traffic"));
    let get = |k: &str| rows.iter().find(|r| r.0 == k).map(|r| r.1.clone()).unwrap();
    assert_eq!(get("messages sent"), "5970");
    assert_eq!(get("requested rate"), "3000.0/s", "each shard's own requested rate, summed");
    assert_eq!(get("achieved rate, sent"), format!("{sent:.1}/s"));
    assert_eq!(get("achieved rate, answered"), format!("{answered:.1}/s"));
    let mut l = la.clone();
    l.merge(&lb);
    assert_eq!(get("response time from the intended send time p50/p90/p99/p99.9/max"), l.percentiles_line());
    let curves = &chart(&page, "traffic-percentiles").series;
    assert_eq!(
        curves.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["fleet", "shard 0 (gen-1)", "shard 1 (gen-1)"]
    );
    assert_eq!(curves[0].points, lat_of(&l).curve());
    let rows = pairs(table(&page, "WebSocket"));
    assert_eq!(
        rows[1..6],
        owned(&[
            ("upgraded", "20".into()),
            ("open on closure", "0".into()),
            ("upgrading on closure", "0".into()),
            ("upgrades failed", "4".into()),
            ("failed: HTTP 403", "3".into()),
        ])
    );
    assert_eq!(rows[6], ("failed: HTTP 502".to_string(), "1".to_string()));
    let up = &chart(&page, "ws-upgrade-percentiles").series;
    assert_eq!(up.len(), 2, "the fleet and shard 0; shard 1 upgraded nothing");
    assert_eq!(up[0].points, up[1].points);
    // Probes: groups summed, the verdict drawn again (3 of 8 lost: not every connection).
    let (pa, _) = probe_doc(Some((0, 2)), &[group(4, 4, 0, 0), group(4, 4, 0, 0)]);
    let (pb, _) = probe_doc(Some((1, 2)), &[group(4, 4, 0, 0), group(4, 1, 3, 0)]);
    let page = build(&[input("pa.json", pa.clone()), input("pb.json", pb)]).unwrap();
    assert_eq!(page.tables[0].rows[1][1], "reset (RST): 3 of 8 lost");
    let sum = [(Duration::from_secs(1), group(8, 8, 0, 0)), (Duration::from_secs(3), group(8, 5, 3, 0))];
    let want = crate::result::probe::verdict::verdict(&sum).text;
    assert_eq!(page.verdict, Some(format!("Idle-timeout verdict: {want}")));
    // Shards of different tests are refused, naming the file and the key.
    let e = build(&[input("a.json", a.clone()), input("plain.json", shard_doc(Some((1, 2)), "h", 0.0, &IVS, &e))])
        .unwrap_err();
    assert_eq!(e.to_string(), "plain.json: tls: missing, but a.json has one; give the shards of one test");
    let mut other = b;
    other["traffic"]["config"]["message_rate_per_s"] = json!(5.0);
    let e = build(&[input("a.json", a), input("b.json", other)]).unwrap_err();
    assert!(e.to_string().starts_with("b.json: traffic.config: differs from a.json's"), "{e}");
    let (pc, _) = probe_doc(Some((1, 2)), &[group(4, 4, 0, 0)]);
    let e = build(&[input("pa.json", pa), input("pc.json", pc)]).unwrap_err();
    assert!(e.to_string().starts_with("pc.json: probe: other idle times"), "{e}");
}

/// A part that is there must be whole: a bad one is refused with the file and the key, never
/// drawn wrong and never a panic.
#[test]
fn bad_parts_name_the_file_and_the_key() {
    let e = Latency::new();
    let good = {
        let mut d = traffic_doc(None, 0.0, &traffic_counts(1), &random_latency(10, 61), [&e, &e, &e]);
        d["tls"] = tls_totals(62).to_json();
        d["websocket"] = json_value(&ClientCounts::default(), &WsLatencies::default());
        d["probe"] = probe_doc(None, &[group(2, 2, 0, 0)]).0["probe"].clone();
        d
    };
    assert!(build(&[input("ok.json", good.clone())]).is_ok());
    let cases: &[(&str, Value, &str)] = &[
        ("/tls/handshakes/full", json!("x"), "h.json: tls.handshakes.full: not a non-negative integer"),
        (
            "/tls/failures/made_up",
            json!(1),
            "h.json: tls.failures.made_up: not a TLS failure cause this netforge knows",
        ),
        (
            "/tls/handshake_time/count",
            json!(3),
            "h.json: tls.handshake_time.histogram_v2_deflate_base64: holds 50 samples, count says 3",
        ),
        ("/websocket/pongs", json!(-1), "h.json: websocket.pongs: missing or not an integer"),
        ("/websocket/failed_by_status", json!({"99": 1}), "h.json: websocket.failed_by_status.99: not an HTTP status"),
        ("/traffic/counts/sent", json!("many"), "h.json: traffic.counts.sent: missing or not an integer"),
        ("/traffic/counts", Value::Null, "h.json: traffic.counts.flows: missing or not an integer"),
        (
            "/traffic/config/message_rate_per_s",
            json!("fast"),
            "h.json: traffic.config.message_rate_per_s: not a number",
        ),
        (
            "/traffic/response_time/histogram_v2_deflate_base64",
            json!("!!!!"),
            "h.json: traffic.response_time.histogram_v2_deflate_base64: histogram is not valid base64",
        ),
        ("/probe/groups/0/alive", json!(9), "h.json: probe.groups[0].connections: the counts do not add up"),
        ("/probe/deadline_s", json!(0), "h.json: probe.deadline_s: missing or not a positive number"),
        (
            "/samples/1/traffic/sent",
            json!(-5),
            "h.json: samples[1].traffic.sent: missing or not a non-negative integer",
        ),
        (
            "/samples/2/traffic/response_time",
            json!({"count": 1}),
            "h.json: samples[2].traffic.response_time.min_ns: missing",
        ),
    ];
    for (ptr, v, want) in cases {
        let mut d = good.clone();
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        match d.pointer_mut(parent).unwrap_or_else(|| panic!("{ptr}")) {
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = v.clone(),
            o => o[key] = v.clone(),
        }
        let got = build(&[input("h.json", d)]).unwrap_err().to_string();
        assert!(got.starts_with(want), "{ptr}: {got}");
    }
    let mut d = good.clone();
    d["samples"][0]["tls"] = json!({ "full": 1, "resumed": 0 });
    let got = build(&[input("h.json", d)]).unwrap_err().to_string();
    assert_eq!(got, "h.json: samples[0].tls.failed: missing or not a non-negative integer");
    // Numbers no duration holds are shown, not a panic.
    let mut d = good;
    d["tls"]["handshake_span_s"] = json!(1e300);
    d["config"]["websocket"] = json!({ "path": "/", "ping_s": 1e300 });
    d["probe"]["deadline_s"] = json!(1e300);
    let page = build(&[input("h.json", d)]).unwrap();
    assert_eq!(pairs(table(&page, "WebSocket"))[1], ("ping interval".to_string(), "1e300 s".to_string()));
}

/// A result without the parts (or with them null) is the plain page: none of their tables,
/// charts, bars or verdict.
#[test]
fn plain_runs_have_no_parts() {
    let doc = shard_doc(None, "gen-1", 1000.0, &IVS, &random_latency(100, 71));
    let page = build(&[input("run.json", doc.clone())]).unwrap();
    let mut nulls = doc;
    for k in ["tls", "websocket", "traffic", "probe"] {
        nulls[k] = Value::Null;
    }
    assert_eq!(build(&[input("run.json", nulls)]).unwrap(), page);
    assert_eq!(page.tables.len(), 1);
    assert_eq!(page.verdict, None);
    assert_eq!(page.verdict_good, None);
    assert_eq!(page.charts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["connections", "rates", "percentiles"]);
    assert!(page.bars.is_empty());
}

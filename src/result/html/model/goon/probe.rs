//! An idle probe's part of the page (`goon --probe-idle`): the verdict, shown above all else,
//! and each group with its counts and what became of it.

use std::time::Duration;

use super::fmt_s;
use crate::result::html::model::sections::Probe;
use crate::result::html::model::Table;
use crate::result::probe::verdict::Group;
use crate::units::go_duration;

/// The verdict as the page shows it, first.
pub(super) fn verdict_line(p: &Probe) -> String {
    format!("Idle-timeout verdict: {}", p.verdict.text)
}

/// What became of a group: `alive`, or its commonest way of being lost (ties: the quieter way
/// first, as the verdict counts them), with the share lost when some survived.
pub(super) fn classification(g: &Group) -> String {
    if g.classified() == 0 {
        return if g.established == 0 { "nothing established" } else { "not probed" }.to_string();
    }
    if g.lost() == 0 {
        return "alive".to_string();
    }
    let ways = [
        (g.dropped, "dropped silently"),
        (g.reset, "reset (RST)"),
        (g.closed, "closed (FIN)"),
        (g.error, "socket error"),
    ];
    let (_, way) = ways.iter().copied().fold((0, "socket error"), |best, w| if w.0 > best.0 { w } else { best });
    if g.lost() == g.classified() {
        way.to_string()
    } else {
        format!("{way}: {} of {} lost", g.lost(), g.classified())
    }
}

/// One row per group, in idle-time order.
pub(super) fn groups_table(p: &Probe) -> Table {
    let head = [
        "idle",
        "classification",
        "connections",
        "established",
        "probed",
        "alive",
        "answered",
        "reset",
        "closed (FIN)",
        "dropped silently",
        "other error",
        "never established",
        "not probed",
        "lost before the probe",
        "first lost after",
        "probe retransmissions",
    ];
    let rows = p
        .groups
        .iter()
        .map(|(d, g)| {
            vec![
                go_duration(*d),
                classification(g),
                g.connections.to_string(),
                g.established.to_string(),
                g.classified().to_string(),
                g.alive.to_string(),
                g.answered.to_string(),
                g.reset.to_string(),
                g.closed.to_string(),
                g.dropped.to_string(),
                g.error.to_string(),
                g.failed.to_string(),
                g.unprobed().to_string(),
                g.lost_before_probe.to_string(),
                g.first_lost_us.map_or_else(|| "-".to_string(), |us| go_duration(Duration::from_micros(us))),
                g.retransmits.to_string(),
            ]
        })
        .collect();
    let bytes = if p.message_bytes == 1 { "byte" } else { "bytes" };
    Table {
        title: format!("Idle probe groups ({} {bytes} probe, deadline {})", p.message_bytes, fmt_s(p.deadline_s)),
        head: head.iter().map(|h| h.to_string()).collect(),
        rows,
    }
}

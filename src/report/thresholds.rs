//! `report merge`'s fleet-wide thresholds (`--max-errors`, `--max-p99`, `--min-established`)
//! and its exit status.

use crate::stats::counted;
use crate::units::go_duration;

use super::merge::{MergeArgs, Merged};

/// Exit status when a threshold is violated.
pub const EXIT_THRESHOLD: u8 = 3;

/// `--max-errors`: a count or a percentage of the fleet's connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorLimit {
    Count(u64),
    Percent(f64),
}

impl std::fmt::Display for ErrorLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorLimit::Count(n) => write!(f, "{n}"),
            ErrorLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

pub(crate) fn parse_error_limit(s: &str) -> Result<ErrorLimit, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("{t:?} is not a percentage like 0.5%"))?;
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return Err(format!("{t:?}: a percentage must be 0..=100"));
        }
        return Ok(ErrorLimit::Percent(v));
    }
    crate::units::parse_int(t, 0, u64::MAX)
        .map(ErrorLimit::Count)
        .map_err(|_| format!("{t:?} is not a count (100) or a percentage (0.5%)"))
}

/// One threshold's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub flag: &'static str,
    pub limit: String,
    pub value: String,
    pub ok: bool,
}

/// The thresholds given, judged over the merged counts.
pub fn judge(m: &Merged, a: &MergeArgs) -> Vec<Verdict> {
    let mut out = Vec::new();
    if let Some(limit) = a.max_errors {
        // Every failure goon's own status counts as one: connections in Error, and the failed
        // TLS handshakes and WebSocket upgrades (those connections end as Closed).
        let (tls, ws) = failed_handshakes(m);
        let e = m.counts.error.saturating_add(tls).saturating_add(ws);
        let pct = if m.counts.total == 0 { 0.0 } else { e as f64 * 100.0 / m.counts.total as f64 };
        let ok = match limit {
            ErrorLimit::Count(n) => e <= n,
            ErrorLimit::Percent(p) => pct <= p,
        };
        let mut value = format!("{} ({pct:.3}% of {})", counted(e, "error", "errors"), m.counts.total);
        if tls > 0 || ws > 0 {
            value.push_str(&format!(
                ": {} in Error, {tls} failed TLS handshakes, {ws} failed WebSocket upgrades",
                m.counts.error
            ));
        }
        out.push(Verdict { flag: "--max-errors", limit: limit.to_string(), value, ok });
    }
    if let Some(max) = a.max_p99 {
        let (ok, value) = if m.connect.is_empty() {
            (false, "no connection succeeded, so there is no p99".to_string())
        } else {
            let p = m.connect.percentile(99.0);
            (p <= max, format!("p99 {}", go_duration(p)))
        };
        out.push(Verdict { flag: "--max-p99", limit: go_duration(max), value, ok });
    }
    if let Some(min) = a.min_established {
        let n = m.counts.total_established;
        out.push(Verdict {
            flag: "--min-established",
            limit: min.to_string(),
            value: format!("{n} established"),
            ok: n >= min,
        });
    }
    out
}

/// Failed TLS handshakes and failed WebSocket upgrades of the merged fleet.
fn failed_handshakes(m: &Merged) -> (u64, u64) {
    (m.tls.as_ref().map_or(0, |t| t.failed), m.ws.as_ref().map_or(0, |(c, _)| c.failed()))
}

/// goon's exit status over the merged counts, then the thresholds: 3 when one is violated;
/// with `--max-errors` given, errors within it do not give 2.
pub fn exit_code(m: &Merged, verdicts: &[Verdict], errors_judged: bool) -> u8 {
    if verdicts.iter().any(|v| !v.ok) {
        EXIT_THRESHOLD
    } else {
        // A failed TLS handshake or WebSocket upgrade is an error, as in goon's own exit status;
        // `--max-errors` counts them with the rest, so within it none gives 2.
        let (tls, ws) = failed_handshakes(m);
        match m.counts.exit_code() {
            0 if tls + ws > 0 && !errors_judged => 2,
            2 if errors_judged => 0,
            code => code,
        }
    }
}

//! What an idle probe found, sans-io: how one connection is classified from what its socket
//! said (a read, a write error, `TCP_INFO` before and after the probe), the per-group counts
//! (mergeable across reactors and across a fleet's shards), and the one-line verdict.
//!
//! Classes, for a connection held idle for its group's duration and then sent the probe:
//!
//! - **alive**: the peer answered (bytes came back), or its TCP acknowledged the probe
//!   (`tcpi_bytes_acked` grew by the probe's length and `tcpi_unacked` is back to 0);
//! - **reset**: a read or the probe's write failed with ECONNRESET/ECONNABORTED (an RST came);
//! - **closed**: a read returned 0 (a FIN came) or the write failed with EPIPE;
//! - **dropped**: the probe was not acknowledged within the probe deadline (TCP_INFO shows
//!   unacknowledged segments and, past one RTO, retransmissions), or the kernel gave up on the
//!   connection (ETIMEDOUT): nothing on the path said anything;
//! - **error**: any other socket error (EHOSTUNREACH from an ICMP message, ..).
//!
//! A connection that ended while still idle (before its probe) counts in the class of how it
//! ended, and the idle time at which the first one did is kept (`first_lost`).

use std::io;
use std::time::Duration;

use serde_json::{json, Value};

/// Most durations in `--probe-idle`.
pub const MAX_GROUPS: usize = 32;

/// How one probed connection fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `answered`: bytes came back, not just an acknowledgement.
    Alive {
        answered: bool,
    },
    Reset,
    Closed,
    Dropped,
    Error,
}

impl Class {
    /// The class of a failed read or write on an established connection.
    pub fn of_error(e: &io::Error) -> Class {
        match e.raw_os_error() {
            Some(libc::ECONNRESET) | Some(libc::ECONNABORTED) => Class::Reset,
            Some(libc::EPIPE) => Class::Closed,
            // The kernel ran out of retransmissions (or keepalives): nobody answered.
            Some(libc::ETIMEDOUT) => Class::Dropped,
            _ => match e.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Class::Reset,
                io::ErrorKind::BrokenPipe => Class::Closed,
                io::ErrorKind::TimedOut => Class::Dropped,
                _ => Class::Error,
            },
        }
    }
}

/// What `TCP_INFO` (and `SIOCOUTQ`) say about the bytes a connection sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckView {
    /// `tcpi_bytes_acked` (Linux 4.1+).
    pub bytes_acked: Option<u64>,
    /// `tcpi_unacked`: segments in flight.
    pub unacked: u32,
    /// `tcpi_total_retrans`.
    pub total_retrans: Option<u32>,
    /// `SIOCOUTQ`: bytes written and not yet acknowledged.
    pub outq: Option<u32>,
}

impl AckView {
    pub fn of(info: &crate::net::tcp_info::TcpInfo, outq: Option<u32>) -> AckView {
        AckView { bytes_acked: info.bytes_acked, unacked: info.unacked, total_retrans: info.total_retrans, outq }
    }
}

/// Whether the `sent` probe bytes written after `before` are all acknowledged in `now`.
pub fn acknowledged(before: &AckView, now: &AckView, sent: u64) -> bool {
    if now.unacked > 0 {
        return false;
    }
    match (before.bytes_acked, now.bytes_acked) {
        (Some(b), Some(n)) => n.saturating_sub(b) >= sent,
        // An old kernel: nothing left in the send queue means everything written was acked.
        _ => now.outq == Some(0),
    }
}

/// Segments retransmitted between `before` and `now` (0 where the kernel does not say).
pub fn retransmitted(before: &AckView, now: &AckView) -> u64 {
    match (before.total_retrans, now.total_retrans) {
        (Some(b), Some(n)) => u64::from(n.saturating_sub(b)),
        _ => 0,
    }
}

/// One group's counts: its connections, how they fared. Whole counts, summed across reactors
/// and shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Connections of the group (dials planned).
    pub connections: u64,
    pub established: u64,
    /// Dials that failed (never established).
    pub failed: u64,
    pub alive: u64,
    /// Of `alive`: the peer sent bytes back (an echo), not just an acknowledgement.
    pub answered: u64,
    pub reset: u64,
    pub closed: u64,
    pub dropped: u64,
    pub error: u64,
    /// Of reset + closed + dropped + error: ended while still idle, before the probe.
    pub lost_before_probe: u64,
    /// The shortest idle time after which one of them ended before its probe, µs.
    pub first_lost_us: Option<u64>,
    /// Segments the kernel retransmitted for the dropped connections' probes.
    pub retransmits: u64,
}

impl Group {
    pub fn merge(&mut self, o: &Group) {
        self.connections += o.connections;
        self.established += o.established;
        self.failed += o.failed;
        self.alive += o.alive;
        self.answered += o.answered;
        self.reset += o.reset;
        self.closed += o.closed;
        self.dropped += o.dropped;
        self.error += o.error;
        self.lost_before_probe += o.lost_before_probe;
        self.retransmits += o.retransmits;
        self.first_lost_us = match (self.first_lost_us, o.first_lost_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Counts one classified connection; `lost_idle` is the idle time when it ended before
    /// its probe.
    pub fn count(&mut self, class: Class, lost_idle: Option<Duration>, retransmits: u64) {
        match class {
            Class::Alive { answered } => {
                self.alive += 1;
                self.answered += u64::from(answered);
            }
            Class::Reset => self.reset += 1,
            Class::Closed => self.closed += 1,
            Class::Dropped => {
                self.dropped += 1;
                self.retransmits += retransmits;
            }
            Class::Error => self.error += 1,
        }
        if let (Some(d), false) = (lost_idle, matches!(class, Class::Alive { .. })) {
            self.lost_before_probe += 1;
            let us = d.as_micros() as u64;
            self.first_lost_us = Some(self.first_lost_us.map_or(us, |f| f.min(us)));
        }
    }

    pub fn lost(&self) -> u64 {
        self.reset + self.closed + self.dropped + self.error
    }

    pub fn classified(&self) -> u64 {
        self.alive + self.lost()
    }

    /// Established connections not classified (the run was interrupted first).
    pub fn unprobed(&self) -> u64 {
        self.established.saturating_sub(self.classified())
    }

    /// Every connection of the group is accounted for (failed, or classified).
    pub fn complete(&self) -> bool {
        self.failed + self.classified() >= self.connections
    }

    /// The group's line in the final block and the progress lines.
    pub fn line(&self, idle: Duration) -> String {
        let mut s = format!(
            "Idle {}: {} of {} probed: {} alive ({} answered, {} acknowledged), {} reset, {} closed (FIN), {} dropped silently",
            crate::units::go_duration(idle),
            self.classified(),
            self.connections,
            self.alive,
            self.answered,
            self.alive - self.answered.min(self.alive),
            self.reset,
            self.closed,
            self.dropped,
        );
        if self.error > 0 {
            s.push_str(&format!(", {} other error", self.error));
        }
        if self.failed > 0 {
            s.push_str(&format!(", {} never established", self.failed));
        }
        if self.unprobed() > 0 {
            s.push_str(&format!(", {} not probed (interrupted)", self.unprobed()));
        }
        if let Some(us) = self.first_lost_us {
            s.push_str(&format!(
                "; {} ended before the probe, the first after {} idle",
                self.lost_before_probe,
                crate::units::go_duration(Duration::from_micros(us))
            ));
        }
        if self.retransmits > 0 {
            s.push_str(&format!("; {} probe retransmissions unacknowledged", self.retransmits));
        }
        s
    }

    pub fn to_json(self, idle: Duration) -> Value {
        json!({
            "idle_s": idle.as_secs_f64(),
            "connections": self.connections,
            "established": self.established,
            "failed": self.failed,
            "alive": self.alive,
            "answered": self.answered,
            "reset": self.reset,
            "closed": self.closed,
            "dropped": self.dropped,
            "error": self.error,
            "unprobed": self.unprobed(),
            "lost_before_probe": self.lost_before_probe,
            "first_lost_idle_s": self.first_lost_us.map(|us| us as f64 / 1e6),
            "retransmits": self.retransmits,
        })
    }

    /// Reads a group object back (`report merge`); the error names the key.
    pub fn from_json(v: &Value) -> Result<(Duration, Group), String> {
        let int = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("{k}: missing or not an integer"));
        let idle = v.get("idle_s").and_then(Value::as_f64).ok_or("idle_s: missing or not a number")?;
        let idle = Duration::try_from_secs_f64(idle).map_err(|_| format!("idle_s: {idle} is not a duration"))?;
        let first_lost_us = match v.get("first_lost_idle_s") {
            None | Some(Value::Null) => None,
            Some(x) => {
                let s = x.as_f64().filter(|s| s.is_finite() && *s >= 0.0);
                Some((s.ok_or("first_lost_idle_s: not a number of seconds or null")? * 1e6).round() as u64)
            }
        };
        let g = Group {
            connections: int("connections")?,
            established: int("established")?,
            failed: int("failed")?,
            alive: int("alive")?,
            answered: int("answered")?,
            reset: int("reset")?,
            closed: int("closed")?,
            dropped: int("dropped")?,
            error: int("error")?,
            lost_before_probe: int("lost_before_probe")?,
            first_lost_us,
            retransmits: int("retransmits")?,
        };
        if g.classified() > g.established || g.answered > g.alive || g.established + g.failed > g.connections {
            return Err("connections: the counts do not add up (classified > established, or established + failed > connections)".into());
        }
        Ok((idle, g))
    }
}

/// The run's conclusion.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// `none` (no timeout seen), `dropped`, `reset`, `closed`, `error`, `inconsistent`,
    /// `inconclusive`.
    pub kind: &'static str,
    /// The longest idle time every probed connection survived, below the loss.
    pub lower: Option<Duration>,
    /// The shortest idle time after which connections were lost.
    pub upper: Option<Duration>,
    pub text: String,
}

impl Verdict {
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "lower_s": self.lower.map(|d| d.as_secs_f64()),
            "upper_s": self.upper.map(|d| d.as_secs_f64()),
            "text": self.text,
        })
    }
}

/// A duration for the verdict: `120 s`, `1.5 s`, `0.25 s`.
pub fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        return format!("{} s", d.as_secs());
    }
    let t = format!("{:.3}", d.as_secs_f64());
    format!("{} s", t.trim_end_matches('0').trim_end_matches('.'))
}

/// The verdict from the groups (sorted by idle time). A group counts once it has classified
/// connections; one with a loss (reset, FIN, silent drop, error) sets the upper bound, the
/// longest fully alive group below it the lower one.
pub fn verdict(groups: &[(Duration, Group)]) -> Verdict {
    let probed: Vec<&(Duration, Group)> = groups.iter().filter(|(_, g)| g.classified() > 0).collect();
    let not_probed = groups.iter().find(|(_, g)| g.classified() == 0 && g.established > 0).map(|(d, _)| *d);
    let Some(&&(max_probed, _)) = probed.last() else {
        let text = match not_probed {
            Some(d) => format!("no verdict: interrupted before the first probe (idle {})", secs(d)),
            None => "no verdict: no connection was established".to_string(),
        };
        return Verdict { kind: "inconclusive", lower: None, upper: None, text };
    };
    let Some(pos) = probed.iter().position(|(_, g)| g.lost() > 0) else {
        let mut text = format!("no idle timeout up to {}", secs(max_probed));
        if let Some(d) = not_probed.filter(|d| *d > max_probed) {
            text.push_str(&format!(" (interrupted before the idle {} group was probed)", secs(d)));
        }
        return Verdict { kind: "none", lower: Some(max_probed), upper: None, text };
    };
    let (upper, g) = *probed[pos];
    let lower = probed[..pos].iter().rev().find(|(_, g)| g.alive > 0).map(|(d, _)| *d);
    // The commonest way they were lost names the verdict (ties: the quieter way first).
    let ways = [(g.dropped, "dropped"), (g.reset, "reset"), (g.closed, "closed"), (g.error, "error")];
    let (_, kind) = ways.iter().copied().fold((0, "error"), |best, w| if w.0 > best.0 { w } else { best });
    let span = match lower {
        Some(lo) => format!("between {} and {}", secs(lo), secs(upper)),
        None => format!("within {} (the shortest idle time probed)", secs(upper)),
    };
    if let Some((later, _)) = probed[pos + 1..].iter().find(|(_, g)| g.lost() == 0 && g.alive > 0) {
        return Verdict {
            kind: "inconsistent",
            lower,
            upper: Some(upper),
            text: format!(
                "no fixed idle timeout: {} of {} connections idle for {} were lost ({kind}), but every one idle for {} survived (a lossy path, or eviction under load)",
                g.lost(),
                g.classified(),
                secs(upper),
                secs(*later)
            ),
        };
    }
    let mut text = match kind {
        "dropped" => format!("a middlebox drops idle connections {span}, silently"),
        "reset" => format!("a middlebox or the server resets idle connections {span}"),
        "closed" => format!("a middlebox or the server closes idle connections (FIN) {span}"),
        _ => format!("idle connections fail with socket errors {span}"),
    };
    if g.alive > 0 {
        text.push_str(&format!(" ({} of {} idle for {} were lost)", g.lost(), g.classified(), secs(upper)));
    }
    if let (Some(us), "reset" | "closed") = (g.first_lost_us, kind) {
        text.push_str(&format!(
            "; the first ended on its own after {} idle",
            secs(Duration::from_millis((us + 500) / 1000))
        ));
    }
    Verdict { kind, lower, upper: Some(upper), text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn view(acked: u64, unacked: u32, retrans: u32) -> AckView {
        AckView { bytes_acked: Some(acked), unacked, total_retrans: Some(retrans), outq: None }
    }

    #[test]
    fn acknowledgement_from_tcp_info() {
        let before = view(100, 0, 0);
        // (now, sent, acknowledged, retransmitted)
        let cases = [
            (view(101, 0, 0), 1, true, 0),  // acked
            (view(100, 1, 0), 1, false, 0), // in flight
            (view(100, 1, 3), 1, false, 3), // retransmitted three times, still unacked
            (view(104, 0, 1), 5, false, 1), // partly acked
            (view(105, 0, 1), 5, true, 1),  // acked after a retransmission
            (view(101, 1, 0), 1, false, 0), // acked bytes but a segment still out
        ];
        for (now, sent, ok, re) in cases {
            assert_eq!(acknowledged(&before, &now, sent), ok, "{now:?}");
            assert_eq!(retransmitted(&before, &now), re, "{now:?}");
        }
        // Without tcpi_bytes_acked: an empty send queue says it.
        let old = AckView { bytes_acked: None, unacked: 0, total_retrans: None, outq: Some(0) };
        assert!(acknowledged(&AckView::default(), &old, 1));
        assert!(!acknowledged(&AckView::default(), &AckView { outq: Some(1), ..old }, 1));
        assert_eq!(retransmitted(&AckView::default(), &old), 0);
    }

    #[test]
    fn errors_classify() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(Class::of_error(&e(libc::ECONNRESET)), Class::Reset);
        assert_eq!(Class::of_error(&e(libc::ECONNABORTED)), Class::Reset);
        assert_eq!(Class::of_error(&e(libc::EPIPE)), Class::Closed);
        assert_eq!(Class::of_error(&e(libc::ETIMEDOUT)), Class::Dropped);
        assert_eq!(Class::of_error(&e(libc::EHOSTUNREACH)), Class::Error);
    }

    fn group(n: u64, f: impl Fn(&mut Group)) -> Group {
        let mut g = Group { connections: n, established: n, ..Group::default() };
        f(&mut g);
        g
    }

    fn alive(n: u64) -> Group {
        group(n, |g| g.alive = n)
    }

    #[test]
    fn verdict_wording() {
        let v =
            verdict(&[(s(30), alive(4)), (s(60), alive(4)), (s(120), alive(4)), (s(350), group(4, |g| g.dropped = 4))]);
        assert_eq!(v.text, "a middlebox drops idle connections between 120 s and 350 s, silently");
        assert_eq!((v.kind, v.lower, v.upper), ("dropped", Some(s(120)), Some(s(350))));

        let reset = group(2, |g| {
            g.count(Class::Reset, Some(Duration::from_millis(2003)), 0);
            g.count(Class::Reset, Some(Duration::from_millis(2010)), 0);
        });
        let v = verdict(&[(s(1), alive(2)), (s(3), reset)]);
        assert_eq!(
            v.text,
            "a middlebox or the server resets idle connections between 1 s and 3 s; the first ended on its own after 2.003 s idle"
        );
        let v = verdict(&[(s(1), group(3, |g| g.closed = 3)), (s(2), group(3, |g| g.closed = 3))]);
        assert_eq!(
            v.text,
            "a middlebox or the server closes idle connections (FIN) within 1 s (the shortest idle time probed)"
        );
        assert_eq!((v.lower, v.upper), (None, Some(s(1))));

        let v = verdict(&[(s(30), alive(2)), (s(600), alive(2))]);
        assert_eq!(v.text, "no idle timeout up to 600 s");
        assert_eq!((v.kind, v.lower, v.upper), ("none", Some(s(600)), None));

        let partial = group(10, |g| {
            g.alive = 7;
            g.reset = 3;
        });
        let v = verdict(&[(Duration::from_millis(1500), alive(10)), (s(5), partial)]);
        assert_eq!(
            v.text,
            "a middlebox or the server resets idle connections between 1.5 s and 5 s (3 of 10 idle for 5 s were lost)"
        );

        let v = verdict(&[(s(1), alive(2)), (s(2), group(2, |g| g.dropped = 2)), (s(4), alive(2))]);
        assert_eq!(v.kind, "inconsistent");
        assert!(v.text.starts_with("no fixed idle timeout: 2 of 2 connections idle for 2 s were lost (dropped), but every one idle for 4 s survived"), "{}", v.text);
    }

    #[test]
    fn partial_and_empty_runs() {
        // Interrupted before the longer group's probe.
        let unprobed = group(2, |_| {});
        let v = verdict(&[(s(1), alive(2)), (s(10), unprobed)]);
        assert_eq!(v.text, "no idle timeout up to 1 s (interrupted before the idle 10 s group was probed)");
        let v = verdict(&[(s(1), unprobed), (s(10), unprobed)]);
        assert_eq!(
            (v.kind, v.text.as_str()),
            ("inconclusive", "no verdict: interrupted before the first probe (idle 1 s)")
        );
        let none = Group { connections: 2, failed: 2, ..Group::default() };
        assert_eq!(verdict(&[(s(1), none)]).text, "no verdict: no connection was established");
        assert!(verdict(&[]).kind == "inconclusive");
    }

    #[test]
    fn groups_merge_and_round_trip() {
        let mut a = group(3, |g| {
            g.count(Class::Alive { answered: true }, None, 0);
            g.count(Class::Dropped, None, 4);
            g.count(Class::Reset, Some(Duration::from_millis(900)), 0);
        });
        let b = group(2, |g| {
            g.count(Class::Closed, Some(Duration::from_millis(700)), 0);
            g.count(Class::Alive { answered: false }, None, 0);
        });
        a.merge(&b);
        assert_eq!((a.connections, a.alive, a.answered, a.lost(), a.lost_before_probe), (5, 2, 1, 3, 2));
        assert_eq!((a.first_lost_us, a.retransmits), (Some(700_000), 4));
        let (d, back) = Group::from_json(&a.to_json(s(30))).unwrap();
        assert_eq!((d, back), (s(30), a));
        let mut bad = a.to_json(s(30));
        bad["alive"] = json!(100);
        assert!(Group::from_json(&bad).unwrap_err().contains("do not add up"));
        bad["alive"] = json!("x");
        assert_eq!(Group::from_json(&bad).unwrap_err(), "alive: missing or not an integer");
    }
}

//! The server's counters: per reactor, summed by the coordinator, and printed as the interval
//! line and the final statistics.

use std::time::Duration;

use crate::engine::coordinator::Snapshot;

/// Per-reactor counters, sent whole each tick (a lost message loses nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerStats {
    pub accepted: u64,
    pub closed: u64,
    /// Payload connections open now.
    pub active: u64,
    /// Bytes read from payload connections (closed ones included).
    pub bytes_read: u64,
    /// Sum of SIOCINQ over open payload connections at the last sample.
    pub inq: u64,
    /// Smallest rcv_wnd over open payload connections at the last sample.
    pub rcv_wnd_min: Option<u32>,
    /// Open payload connections whose rcv_wnd was 0 at the last sample.
    pub zero_window_conns: u64,
    /// Samples with rcv_wnd == 0, all connections, cumulative.
    pub zero_window_samples: u64,
    /// Earliest zero rcv_wnd, seconds after its connection was accepted.
    pub first_zero_s: Option<f64>,
    pub http_errors: u64,
    pub head_timeouts: u64,
    /// WebSocket connections we closed for a protocol or size violation (1002/1007/1009).
    pub ws_violations: u64,
    pub dashboards: u64,
    pub samples_dropped: u64,
    pub accept_pauses: u64,
}

impl Snapshot for ServerStats {
    fn merge(&mut self, o: &ServerStats) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.active += o.active;
        self.bytes_read += o.bytes_read;
        self.inq += o.inq;
        self.rcv_wnd_min = match (self.rcv_wnd_min, o.rcv_wnd_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.zero_window_conns += o.zero_window_conns;
        self.zero_window_samples += o.zero_window_samples;
        self.first_zero_s = match (self.first_zero_s, o.first_zero_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.http_errors += o.http_errors;
        self.head_timeouts += o.head_timeouts;
        self.ws_violations += o.ws_violations;
        self.dashboards += o.dashboards;
        self.samples_dropped += o.samples_dropped;
        self.accept_pauses += o.accept_pauses;
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `t=   2.00s  conns 1  read 20480 B (+10240)  inq 131072  rcv_wnd min 0  zero-window conns 1`
pub(super) fn interval_line(t: Duration, s: &ServerStats, delta: u64) -> String {
    format!(
        "t={:>7.2}s  conns {}  read {} B (+{delta})  inq {}  rcv_wnd min {}  zero-window conns {}",
        t.as_secs_f64(),
        s.active,
        s.bytes_read,
        s.inq,
        opt(s.rcv_wnd_min),
        s.zero_window_conns
    )
}

pub(super) fn final_lines(s: &ServerStats) -> String {
    format!(
        "--- netforge bp server statistics ---\n\
         connections accepted {}, closed {}\n\
         bytes read {}, unread (SIOCINQ) {}\n\
         zero rcv_wnd samples {}, first zero rcv_wnd at t={} s\n\
         http errors {}, head timeouts {}, websocket violations {}, dashboard samples dropped {}, accept pauses {}",
        s.accepted,
        s.closed,
        s.bytes_read,
        s.inq,
        s.zero_window_samples,
        s.first_zero_s.map_or_else(|| "-".to_string(), |f| format!("{f:.2}")),
        s.http_errors,
        s.head_timeouts,
        s.ws_violations,
        s.samples_dropped,
        s.accept_pauses
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_keeps_minimum_window_and_earliest_zero() {
        let a =
            ServerStats { active: 1, bytes_read: 10, rcv_wnd_min: Some(100), first_zero_s: None, ..Default::default() };
        let b = ServerStats {
            active: 2,
            bytes_read: 5,
            rcv_wnd_min: Some(0),
            first_zero_s: Some(0.3),
            ..Default::default()
        };
        let c = ServerStats { rcv_wnd_min: None, first_zero_s: Some(0.2), ..Default::default() };
        let mut t = ServerStats::default();
        for s in [a, b, c] {
            t.merge(&s);
        }
        assert_eq!((t.active, t.bytes_read, t.rcv_wnd_min, t.first_zero_s), (3, 15, Some(0), Some(0.2)));
        let line = interval_line(Duration::from_secs(2), &t, 5);
        assert!(
            line.contains("conns 3") && line.contains("read 15 B (+5)") && line.contains("rcv_wnd min 0"),
            "{line}"
        );
        let fin = final_lines(&t);
        assert!(
            fin.contains("bytes read 15, unread (SIOCINQ) 0") && fin.contains("first zero rcv_wnd at t=0.20 s"),
            "{fin}"
        );
    }
}

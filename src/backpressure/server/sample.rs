//! Sampling the payload connections each tick: which ones are probed (TCP_INFO, SIOCINQ), within
//! what budget, and the report that goes to the coordinator.

use std::time::{Duration, Instant};

use super::Conn;
use super::{BpReactor, ConnSample, Report, IDLE_RESAMPLE, SAMPLE_BUDGET};
use crate::engine::Cx;
use crate::net::tcp_info;

/// The probes one tick may take, and where the next tick resumes when they ran out: the first
/// connection (in table order, starting at the cursor) that was due and not probed.
#[derive(Debug)]
pub(super) struct Budget {
    left: usize,
    resume: Option<usize>,
}

impl Budget {
    fn new(left: usize) -> Budget {
        Budget { left, resume: None }
    }

    /// Connection at position `slot` is due: may it be probed now?
    fn take(&mut self, slot: usize) -> bool {
        if self.left == 0 {
            self.resume.get_or_insert(slot);
            return false;
        }
        self.left -= 1;
        true
    }
}

/// What the sampler knows of a payload connection between probes. Only an event or a read can
/// change what a probe would return (SIOCINQ grows when data arrives, which is an event; it
/// shrinks and the window reopens when we read), so a connection with neither since its last
/// probe is not probed again until [`IDLE_RESAMPLE`] has passed: idle connections cost no
/// syscalls and send the dashboards nothing.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe {
    /// Something happened since the last probe.
    pub(super) changed: bool,
    /// When the last probe was taken; `None`: never.
    at: Option<Instant>,
    inq: u32,
    rcv_wnd: Option<u32>,
}

impl Probe {
    pub(super) fn new() -> Probe {
        Probe { changed: true, at: None, inq: 0, rcv_wnd: None }
    }

    fn due(&self, idle_sweep: bool) -> bool {
        self.changed || idle_sweep || self.at.is_none()
    }
}

impl BpReactor {
    /// Probes the payload connections that changed (TCP_INFO, SIOCINQ; at most
    /// [`SAMPLE_BUDGET`] per tick, all of them for the final report), sums every connection's
    /// latest numbers into the counters, and sends the report; only fresh probes go to the
    /// dashboards.
    pub(super) fn sample(&mut self, cx: &mut Cx<Conn>, fin: bool) {
        let mut samples = Vec::new();
        let (mut inq_sum, mut zero_conns, mut wnd_min, mut read) = (0u64, 0u64, None::<u32>, self.closed_read);
        let mut budget = Budget::new(if fin { usize::MAX } else { SAMPLE_BUDGET });
        let idle_sweep = fin || cx.now >= self.next_idle_sweep;
        if idle_sweep {
            self.next_idle_sweep = cx.now + IDLE_RESAMPLE;
        }
        // Two passes over the table: from the cursor to the end, then from the start to it.
        let cursor = self.sample_cursor;
        for pass in 0..2 {
            for (slot, (_, c)) in cx.table.iter_mut().enumerate() {
                if (pass == 0) != (slot >= cursor) {
                    continue;
                }
                let Some(fd) = c.payload_fd() else { continue };
                let t = cx.now.saturating_duration_since(c.accepted);
                if c.probe.due(idle_sweep) && budget.take(slot) {
                    c.probe = Probe {
                        changed: false,
                        at: Some(cx.now),
                        inq: tcp_info::inq(fd).unwrap_or(0),
                        rcv_wnd: tcp_info::tcp_info(fd).ok().and_then(|i| i.rcv_wnd),
                    };
                    if c.probe.rcv_wnd == Some(0) && c.first_zero.is_none() {
                        let first = *c.first_zero.insert(t);
                        let s = first.as_secs_f64();
                        self.stats.first_zero_s = Some(self.stats.first_zero_s.map_or(s, |f| f.min(s)));
                    }
                    samples.push(ConnSample {
                        conn: c.id,
                        peer: c.peer,
                        t: t.as_secs_f64(),
                        read_bytes: c.read_bytes(),
                        inq: c.probe.inq,
                        rcv_wnd: c.probe.rcv_wnd,
                    });
                }
                // Every open connection counts at every tick, with its latest numbers.
                let Probe { inq, rcv_wnd, .. } = c.probe;
                if rcv_wnd == Some(0) {
                    zero_conns += 1;
                    self.stats.zero_window_samples += 1;
                }
                if let Some(w) = rcv_wnd {
                    wnd_min = Some(wnd_min.map_or(w, |m| m.min(w)));
                }
                inq_sum += u64::from(inq);
                read += c.read_bytes();
            }
        }
        self.sample_cursor = budget.resume.unwrap_or(0);
        self.stats.inq = inq_sum;
        self.stats.zero_window_conns = zero_conns;
        self.stats.rcv_wnd_min = wnd_min;
        self.stats.bytes_read = read;
        let report = Report { id: cx.id, stats: self.stats, samples, fin };
        if fin {
            let _ = self.out.send_timeout(report, Duration::from_secs(1));
        } else {
            let _ = self.out.try_send(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_budget_resumes_where_it_ran_out() {
        // Ten connections due every tick, three probes per tick: each tick starts at the first
        // one the last tick could not probe, so every connection is probed every fourth tick.
        let mut cursor = 0;
        let mut probed = [0u32; 10];
        for _ in 0..8 {
            let mut b = Budget::new(3);
            let order = (cursor..10).chain(0..cursor);
            let taken: Vec<usize> = order.filter(|&slot| b.take(slot)).collect();
            assert_eq!(taken.len(), 3);
            for s in taken {
                probed[s] += 1;
            }
            cursor = b.resume.unwrap_or(0);
        }
        // 24 probes over 10 connections: none starves, none is probed more than once ahead.
        assert!(probed.iter().all(|&n| n == 2 || n == 3), "{probed:?}");
        assert_eq!(probed.iter().sum::<u32>(), 24);
        // A budget that is not used up resumes at the start.
        let mut b = Budget::new(5);
        assert!((0..4).all(|s| b.take(s)));
        assert_eq!(b.resume, None);
    }

    #[test]
    fn an_idle_probe_is_due_only_on_the_sweep() {
        let mut p = Probe::new();
        assert!(p.due(false), "never probed");
        p = Probe { changed: false, at: Some(Instant::now()), inq: 0, rcv_wnd: Some(65535) };
        assert!(!p.due(false), "nothing happened: no probe");
        assert!(p.due(true), "the idle sweep probes it");
        p.changed = true;
        assert!(p.due(false), "an event or a read: probe");
    }
}

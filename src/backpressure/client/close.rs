//! Ending the run and each connection: the last payload completed, the final sample, then a FIN
//! or a Close frame, and a reset for what the server never acknowledged.

use super::connect::no_handshake_answer;
use super::reactor::CCx;
use super::{conn, ClientReactor, Io, Phase, Step, CLOSE_LINGER, DRAIN_LINGER, FLUSH_TIMEOUT, TIMER_PHASE};
use crate::backpressure::ws::{Flush, Recv};
use crate::net::tcp_info;

impl ClientReactor {
    /// Writing is over for connection `i`: final sample, then close.
    pub(super) fn finish(&mut self, cx: &mut CCx, i: usize) {
        let t = cx.now.saturating_duration_since(self.start);
        let Some(&key) = self.keys.get(i) else { return };
        let Some(c) = cx.table.get_mut(key) else { return };
        if let Some(s) = c.sample(t) {
            c.sampled = true;
            self.finals.push((i, s));
        }
        match &mut c.io {
            Io::Ws(ws) if !c.ws_pending => {
                let _ = ws.close(1000, "done");
                c.phase = Phase::Closing;
                c.phase_until = Some(cx.now + CLOSE_LINGER);
                cx.timers.arm(key, TIMER_PHASE, cx.now + CLOSE_LINGER);
                cx.defer(key);
            }
            Io::Tcp(s) => {
                // FIN after the queue; the reset comes if the server does not take it in time.
                let _ = s.shutdown(std::net::Shutdown::Write);
                c.phase = Phase::Draining;
                c.phase_until = Some(cx.now + DRAIN_LINGER);
                cx.timers.arm(key, TIMER_PHASE, cx.now + DRAIN_LINGER);
            }
            _ => self.end_conn(cx, i),
        }
    }

    /// The run is over for connection `i`: close it, with a reset when bytes are still queued
    /// (see [`DRAIN_LINGER`]), and count that.
    pub(super) fn abort_or_close(&mut self, cx: &mut CCx, i: usize) {
        let Some(c) = conn(cx.table, &self.keys, i) else { return };
        let queued = c.fd().map_or(0, |fd| tcp_info::outq(fd).unwrap_or(0));
        if queued > 0 {
            if let Some(s) = c.stream() {
                let _ = crate::net::sockopt::reset_on_close(s);
            }
            self.aborted += 1;
            self.aborted_bytes += u64::from(queued);
            log::debug!("bp client: connection {i}: reset at the end with {queued} B still queued");
        }
        self.retire(c);
    }

    pub(super) fn end_conn(&mut self, cx: &mut CCx, i: usize) {
        let Some(c) = conn(cx.table, &self.keys, i) else { return };
        if let Io::Tcp(s) = &c.io {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        self.retire(c);
    }

    pub(super) fn closing(&mut self, cx: &mut CCx, i: usize) -> Step {
        let Some(c) = conn(cx.table, &self.keys, i) else { return Step::Idle };
        let Io::Ws(ws) = &mut c.io else {
            self.retire(c);
            return Step::Idle;
        };
        if let Flush::Closed(_) = ws.flush() {
            self.retire(c);
            return Step::Idle;
        }
        for _ in 0..64 {
            match ws.recv() {
                Recv::Message(_) => {}
                Recv::NotNow => return Step::Idle,
                Recv::Closed(_) => {
                    self.retire(c);
                    return Step::Idle;
                }
            }
        }
        Step::More
    }

    /// Ends the run for every open connection.
    pub(super) fn end_run(&mut self, cx: &mut CCx) {
        for i in 0..self.keys.len() {
            let key = self.keys[i];
            let Some(c) = cx.table.get_mut(key) else { continue };
            match c.phase {
                Phase::Open => {
                    c.phase = Phase::Flushing;
                    c.phase_until = Some(cx.now + FLUSH_TIMEOUT);
                    cx.timers.arm(key, TIMER_PHASE, cx.now + FLUSH_TIMEOUT);
                    cx.defer(key);
                }
                Phase::Connecting | Phase::Handshake => {
                    let why = if c.phase == Phase::Connecting {
                        format!("not connected to {} when the run ended", self.target)
                    } else {
                        no_handshake_answer(self.target, "when the run ended")
                    };
                    let sampled = c.sampled;
                    self.retire(c);
                    self.lost(sampled, i, why);
                }
                _ => {}
            }
        }
    }
}

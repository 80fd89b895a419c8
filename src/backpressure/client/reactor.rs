//! The client reactor: dialling every connection at start, dispatching each one on its phase,
//! timers, commands, the per-tick samples, and the last message to the coordinator.

use std::io;
use std::time::Duration;

use super::connect::{dial, no_handshake_answer};
use super::{
    conn, ClientCmd, ClientReactor, Conn, Io, Msg, Phase, Step, CONNECT_TIMEOUT, TIMER_END, TIMER_PACE, TIMER_PHASE,
};
use crate::backpressure::verdict::Sample;
use crate::engine::{Cx, Handle, Handler, Key, Kind, Readiness, Ready, Refused};
use crate::net::tcp_info;

pub(super) type CCx<'a> = Cx<'a, Conn>;

impl ClientReactor {
    pub(super) fn fail(&mut self, cx: &mut CCx, why: String) {
        if !self.failed {
            self.failed = true;
            let _ = self.out.send_timeout(Msg::Failed(why), Duration::from_secs(1));
        }
        for (_, c) in cx.table.iter_mut() {
            c.phase = Phase::Done;
            c.io = Io::None;
        }
        self.done = self.keys.len();
    }

    /// Connection `c` is over (its socket, if any, was dropped or is dropped here).
    pub(super) fn retire(&mut self, c: &mut Conn) {
        if c.phase != Phase::Done {
            self.done += 1;
        }
        c.io = Io::None;
        c.phase = Phase::Done;
    }

    /// Connection `i` ended early for `why`; remembered as the reason the run could not measure
    /// when it was never sampled.
    pub(super) fn lost(&mut self, sampled: bool, i: usize, why: String) {
        if sampled {
            log::warn!("bp client: connection {i}: {why}");
        } else {
            // Reported once, in the final lines or as the reason the run could not measure.
            log::debug!("bp client: connection {i}: {why}");
            self.unmeasured_why.get_or_insert(why);
        }
    }

    fn drive(&mut self, cx: &mut CCx, i: usize, ready: Ready) {
        let Some(c) = conn(cx.table, &self.keys, i) else { return };
        c.rd.event |= ready;
        let step = match c.phase {
            Phase::Connecting => self.connecting(cx, i),
            Phase::Handshake => self.handshake(cx, i),
            Phase::Open | Phase::Flushing => self.write(cx, i),
            Phase::Closing => self.closing(cx, i),
            Phase::Draining | Phase::Done => Step::Idle,
        };
        if let (Step::More, Some(k)) = (step, self.keys.get(i)) {
            cx.defer(*k);
        }
    }
}

impl Handler for ClientReactor {
    type Cmd = ClientCmd;
    type Entry = Conn;

    fn on_start(&mut self, cx: &mut CCx) -> io::Result<()> {
        cx.table.set_capacity(self.cfg.connections, self.cfg.connections);
        let clock = cx.handle()?;
        self.clock = Some(clock);
        for i in 0..self.cfg.connections {
            let s = match dial(&self.cfg, self.target) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(cx, format!("connect {}: {e}", self.target));
                    return Ok(());
                }
            };
            let c = Conn {
                idx: i,
                phase: Phase::Connecting,
                io: Io::Tcp(s),
                hs: None,
                rd: Readiness::default(),
                off: 0,
                ws_pending: false,
                payloads: 0,
                tcp_written: 0,
                eagain: 0,
                opened: cx.now,
                phase_until: Some(cx.now + CONNECT_TIMEOUT),
                sampled: false,
                peeked: false,
            };
            let key = match cx.adopt(c) {
                Ok(k) => k,
                Err((_, Refused::Register(e))) => return Err(e),
                Err((_, Refused::Full)) => return Err(io::Error::other("connection table full")),
            };
            self.keys.push(key);
            cx.timers.arm(key, TIMER_PHASE, cx.now + CONNECT_TIMEOUT);
        }
        if let Some(d) = self.cfg.duration {
            cx.arm(clock, TIMER_END, self.start + d);
        }
        Ok(())
    }

    fn on_ready(&mut self, cx: &mut CCx, key: Key, _sock: usize, ready: Ready) {
        if let Some(i) = cx.table.get(key).map(|c| c.idx) {
            self.drive(cx, i, ready);
        }
    }

    fn on_handle_timer(&mut self, cx: &mut CCx, h: Handle, kind: Kind) {
        if Some(h) == self.clock && kind == TIMER_END {
            self.end_run(cx);
        }
    }

    fn on_timer(&mut self, cx: &mut CCx, key: Key, kind: Kind) {
        let Some(c) = cx.table.get_mut(key) else { return };
        let i = c.idx;
        if kind == TIMER_PACE {
            self.drive(cx, i, Ready::EMPTY);
            return;
        }
        if kind != TIMER_PHASE {
            return;
        }
        let Some(until) = c.phase_until else { return };
        if cx.now < until {
            return;
        }
        c.phase_until = None;
        match c.phase {
            Phase::Connecting => {
                self.fail(cx, format!("connect {}: no connection within {CONNECT_TIMEOUT:?}", self.target));
            }
            Phase::Handshake => {
                let why = no_handshake_answer(self.target, &format!("within {CONNECT_TIMEOUT:?}"));
                self.fail(cx, why);
            }
            Phase::Flushing => {
                // The last payload did not fit in time: sample and drop it unfinished.
                self.cut_short += 1;
                let t = cx.now.saturating_duration_since(self.start);
                if let Some(s) = c.sample(t) {
                    self.finals.push((i, s));
                }
                self.abort_or_close(cx, i);
            }
            Phase::Closing | Phase::Draining => self.abort_or_close(cx, i),
            _ => {}
        }
    }

    fn on_command(&mut self, cx: &mut CCx, cmd: ClientCmd) {
        match cmd {
            ClientCmd::Stop => self.end_run(cx),
        }
    }

    fn on_tick(&mut self, cx: &mut CCx) {
        let t = cx.now.saturating_duration_since(self.start);
        let samples: Vec<(usize, Sample)> = cx
            .table
            .iter_mut()
            .filter(|(_, c)| matches!(c.phase, Phase::Open | Phase::Flushing))
            .filter_map(|(_, c)| {
                let s = c.sample(t)?;
                c.sampled = true;
                Some((c.idx, s))
            })
            .collect();
        if !samples.is_empty() {
            let _ = self.out.try_send(Msg::Samples(samples));
        }
        // Draining connections whose queue the server has acknowledged: a plain close.
        for (_, c) in cx.table.iter_mut().filter(|(_, c)| c.phase == Phase::Draining) {
            if c.fd().is_some_and(|fd| tcp_info::outq(fd).is_ok_and(|q| q == 0)) {
                self.retire(c);
            }
        }
    }

    fn finished(&self) -> bool {
        self.failed || self.done == self.keys.len()
    }

    fn on_exit(&mut self, cx: &mut CCx) {
        if self.failed {
            return;
        }
        let unmeasured = cx.table.iter().filter(|(_, c)| !c.sampled).count() as u64;
        let why = self.unmeasured_why.take();
        if unmeasured == self.keys.len() as u64 {
            // Not one sample: there is no measurement to give a verdict on.
            let why = why.unwrap_or_else(|| "the connections ended before the first sample".into());
            let msg = Msg::Failed(format!("bp client: could not measure: {why}"));
            let _ = self.out.send_timeout(msg, Duration::from_secs(1));
            return;
        }
        let finals = std::mem::take(&mut self.finals);
        let msg = Msg::Done {
            finals,
            cut_short: self.cut_short,
            resets: self.resets,
            unmeasured,
            why,
            aborted: self.aborted,
            aborted_bytes: self.aborted_bytes,
        };
        let _ = self.out.send_timeout(msg, Duration::from_secs(1));
    }
}

//! The client reactor: dialling every connection at start, dispatching each one on its phase,
//! timers, commands, the per-tick samples, and the last message to the coordinator.

use std::io;
use std::time::Duration;

use mio::{Interest, Token};

use super::connect::{dial, no_handshake_answer};
use super::{
    ClientCmd, ClientReactor, Conn, Io, Msg, Phase, Step, CONNECT_TIMEOUT, TIMER_END, TIMER_PACE, TIMER_PHASE,
};
use crate::backpressure::verdict::Sample;
use crate::engine::{role_index, role_token, Cx, Handler, Readiness, Ready};
use crate::net::tcp_info;

impl ClientReactor {
    pub(super) fn fail(&mut self, why: String) {
        if !self.failed {
            self.failed = true;
            let _ = self.out.send_timeout(Msg::Failed(why), Duration::from_secs(1));
        }
        for c in &mut self.conns {
            c.phase = Phase::Done;
            c.io = Io::None;
        }
    }

    /// Connection `i` ended early for `why`; remembered as the reason the run could not measure
    /// when it was never sampled.
    pub(super) fn lost(&mut self, i: usize, why: String) {
        if self.conns[i].sampled {
            log::warn!("bp client: connection {i}: {why}");
        } else {
            // Reported once, in the final lines or as the reason the run could not measure.
            log::debug!("bp client: connection {i}: {why}");
            self.unmeasured_why.get_or_insert(why);
        }
    }

    fn drive(&mut self, cx: &mut Cx, i: usize, ready: Ready) {
        let Some(c) = self.conns.get_mut(i) else { return };
        c.rd.event |= ready;
        let step = match c.phase {
            Phase::Connecting => self.connecting(cx, i),
            Phase::Handshake => self.handshake(cx, i),
            Phase::Open | Phase::Flushing => self.write(cx, i),
            Phase::Closing => self.closing(i),
            Phase::Draining | Phase::Done => Step::Idle,
        };
        if let Step::More = step {
            cx.defer_token(Token(i));
        }
    }
}

impl Handler for ClientReactor {
    type Cmd = ClientCmd;
    type Entry = ();

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        cx.legacy_timers.set_capacity(self.cfg.connections * 4 + 16);
        for i in 0..self.cfg.connections {
            let mut s = match dial(&self.cfg, self.target) {
                Ok(s) => s,
                Err(e) => {
                    self.fail(format!("connect {}: {e}", self.target));
                    return Ok(());
                }
            };
            cx.registry.register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            self.conns.push(Conn {
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
                pace_armed: false,
                sampled: false,
                peeked: false,
            });
            cx.arm_token(cx.now + CONNECT_TIMEOUT, Token(i), TIMER_PHASE);
        }
        if let Some(d) = self.cfg.duration {
            cx.arm_token(self.start + d, role_token(0), TIMER_END);
        }
        Ok(())
    }

    fn on_token(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if token.0 < self.conns.len() {
            self.drive(cx, token.0, ready);
        }
    }

    fn on_token_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        if role_index(token) == Some(0) && kind == TIMER_END {
            self.end_run(cx);
            return;
        }
        let i = token.0;
        let Some(c) = self.conns.get_mut(i) else { return };
        match kind {
            TIMER_PACE => {
                c.pace_armed = false;
                self.drive(cx, i, Ready::EMPTY);
            }
            TIMER_PHASE => {
                let Some(until) = c.phase_until else { return };
                if cx.now < until {
                    return;
                }
                c.phase_until = None;
                match c.phase {
                    Phase::Connecting => {
                        self.fail(format!("connect {}: no connection within {CONNECT_TIMEOUT:?}", self.target));
                    }
                    Phase::Handshake => {
                        let why = no_handshake_answer(self.target, &format!("within {CONNECT_TIMEOUT:?}"));
                        self.fail(why);
                    }
                    Phase::Flushing => {
                        // The last payload did not fit in time: sample and drop it unfinished.
                        self.cut_short += 1;
                        let t = cx.now.saturating_duration_since(self.start);
                        if let Some(s) = c.sample(t) {
                            self.finals.push((i, s));
                        }
                        self.abort_or_close(i);
                    }
                    Phase::Closing | Phase::Draining => self.abort_or_close(i),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: ClientCmd) {
        match cmd {
            ClientCmd::Stop => self.end_run(cx),
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        let t = cx.now.saturating_duration_since(self.start);
        let samples: Vec<(usize, Sample)> = self
            .conns
            .iter_mut()
            .enumerate()
            .filter(|(_, c)| matches!(c.phase, Phase::Open | Phase::Flushing))
            .filter_map(|(i, c)| {
                let s = c.sample(t)?;
                c.sampled = true;
                Some((i, s))
            })
            .collect();
        if !samples.is_empty() {
            let _ = self.out.try_send(Msg::Samples(samples));
        }
        // Draining connections whose queue the server has acknowledged: a plain close.
        for c in self.conns.iter_mut().filter(|c| c.phase == Phase::Draining) {
            if c.fd().is_some_and(|fd| tcp_info::outq(fd).is_ok_and(|q| q == 0)) {
                c.io = Io::None;
                c.phase = Phase::Done;
            }
        }
    }

    fn finished(&self) -> bool {
        self.failed || self.conns.iter().all(|c| c.phase == Phase::Done)
    }

    fn on_exit(&mut self, _cx: &mut Cx) {
        if self.failed {
            return;
        }
        let unmeasured = self.conns.iter().filter(|c| !c.sampled).count() as u64;
        let why = self.unmeasured_why.take();
        if unmeasured == self.conns.len() as u64 {
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

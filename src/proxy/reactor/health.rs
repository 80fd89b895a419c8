//! Active health checks (reactor 0) and the start-up gate that opens the listeners once
//! every backend has a first result (see the design notes in the parent module).

use std::io;
use std::time::Duration;

use mio::{Interest, Token};

use super::backends::{dial_outcome, Dialed};
use super::{Check, CheckCarry, ProxyReactor, HEALTH_TAG, T_HEALTH};
use crate::engine::{Cx, Ready};
use crate::net::connect::{self, DialOpts};
use crate::net::Cause;
use crate::proxy::config::AdminState;

fn health_token(idx: usize, epoch: u32) -> Token {
    Token(idx | ((epoch as usize & 0xFF_FFFF) << 32) | (HEALTH_TAG << 56))
}

fn jittered(interval: Duration, pct: u32, rng: &mut fastrand::Rng) -> Duration {
    if pct == 0 {
        return interval;
    }
    let f = 1.0 + (rng.f64() * 2.0 - 1.0) * f64::from(pct) / 100.0;
    interval.mul_f64(f)
}

impl ProxyReactor {
    // ----------------------------------------------------------------------------------------
    // Health checks (reactor 0)

    /// (Re)starts the checks of every backend. `carry[i]` continues backend `i`'s counts (a
    /// reload that kept it); without one it starts fresh from its current `up`.
    pub(super) fn start_checks(&mut self, cx: &mut Cx, carry: &[Option<CheckCarry>]) {
        for c in self.checks.iter_mut() {
            if let Some(mut s) = c.sock.take() {
                let _ = cx.registry.deregister(&mut s);
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        if cx.id != 0 || !self.cfg.health.enabled {
            self.checks.clear();
            return;
        }
        // Up/down state carries over through `Backend::up`, counts through `carry`.
        let mut checks = Vec::with_capacity(self.backends.len());
        for (i, b) in self.backends.iter().enumerate() {
            let c = carry.get(i).copied().flatten().unwrap_or(CheckCarry { rise: 0, fall: 0, fresh: true });
            checks.push(Check {
                sock: None,
                started: cx.now,
                next_at: cx.now,
                rise: c.rise,
                fall: c.fall,
                up: b.up,
                fresh: c.fresh,
                timer_armed: false,
            });
        }
        self.checks = checks;
        for i in 0..self.checks.len() {
            self.check_step(cx, i);
        }
    }

    fn check_step(&mut self, cx: &mut Cx, i: usize) {
        if self.draining || self.stopping {
            return;
        }
        let timeout = self.cfg.health.timeout;
        let now = cx.now;
        let in_flight = self.checks[i].sock.is_some();
        if in_flight && now >= self.checks[i].started + timeout {
            self.check_done(cx, i, Err(Cause::Timeout));
        } else if !in_flight && now >= self.checks[i].next_at && self.backends[i].state != AdminState::Maint {
            match connect::dial(self.backends[i].addr, None, &DialOpts { linger_rst: true, ..Default::default() }) {
                Ok(mut s) => {
                    match cx.registry.register(
                        &mut s,
                        health_token(i, self.epoch),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        Ok(()) => {
                            self.checks[i].sock = Some(s);
                            self.checks[i].started = now;
                        }
                        Err(e) => self.check_done(cx, i, Err(Cause::from_io(&e))),
                    }
                }
                Err(e) => self.check_done(cx, i, Err(Cause::from_io(&e))),
            }
        }
        let c = &mut self.checks[i];
        if self.backends[i].state == AdminState::Maint && c.sock.is_none() {
            // Maintenance: no checks until a reload changes the state.
            return;
        }
        let at = if c.sock.is_some() { c.started + timeout } else { c.next_at };
        if !c.timer_armed {
            c.timer_armed = true;
            cx.arm_token(at, health_token(i, self.epoch), T_HEALTH);
        }
    }

    fn check_done(&mut self, cx: &mut Cx, i: usize, result: Result<(), Cause>) {
        let h = self.cfg.health.clone();
        let c = &mut self.checks[i];
        if let Some(mut s) = c.sock.take() {
            let _ = cx.registry.deregister(&mut s);
        }
        c.next_at = cx.now + jittered(h.interval, h.jitter_pct, &mut self.rng);
        let b = &mut self.backends[i];
        let was = c.up;
        match result {
            Ok(()) => {
                c.fall = 0;
                c.rise += 1;
                c.up |= c.rise >= h.rise || c.fresh;
            }
            Err(_) => {
                c.rise = 0;
                c.fall += 1;
                c.up &= c.fall < h.fall && !c.fresh;
            }
        }
        match (c.fresh, c.up, result) {
            // The first result of every backend is logged, DOWN ones louder: a backend whose
            // address is wrong is DOWN from the start and would otherwise never be mentioned.
            (true, true, _) => log::info!("backend {} is UP after its first health check", b.label()),
            (true, false, Err(cause)) => {
                log::warn!("backend {} is DOWN after its first health check ({})", b.label(), cause.name())
            }
            (false, true, _) if !was => {
                log::warn!("backend {} is UP ({} successful checks)", b.label(), c.rise)
            }
            (false, false, Err(cause)) if was => {
                log::warn!("backend {} is DOWN ({} failed checks: {})", b.label(), c.fall, cause.name())
            }
            _ => {}
        }
        c.fresh = false;
        b.up = c.up;
        if self.gated {
            self.maybe_open(cx);
        }
    }

    /// Whether every backend has had a health result since start-up (`maint` ones need none).
    pub(super) fn health_known(&self) -> bool {
        !self.cfg.health.enabled
            || (self.checks.len() == self.backends.len()
                && self.checks.iter().zip(&self.backends).all(|(c, b)| !c.fresh || b.state == AdminState::Maint))
    }

    /// Reactor 0, start-up gate: once the first round is complete, open this reactor's
    /// listeners and report at once (not at the next tick) so the coordinator opens the others.
    pub(super) fn maybe_open(&mut self, cx: &mut Cx) {
        if cx.id != 0 || !self.gated || !self.health_known() {
            return;
        }
        if let Err(e) = self.open(cx) {
            log::error!("r{} register listeners: {e}", cx.id);
        }
        let r = self.make_report(cx.id, false, true);
        let _ = self.report.try_send(r);
    }

    /// Registers the listeners (once): clients queued in the backlog meanwhile are accepted now.
    pub(super) fn open(&mut self, cx: &mut Cx) -> io::Result<()> {
        if !self.gated || self.draining {
            return Ok(());
        }
        self.gated = false;
        for l in self.listeners.iter_mut() {
            l.acceptor.register(cx)?;
            // Connections may already wait in the backlog: look once, without waiting for an edge.
            l.acceptor.wake(cx);
        }
        Ok(())
    }

    pub(super) fn health_ready(&mut self, cx: &mut Cx, token: Token) {
        let i = token.0 & 0xFFFF_FFFF;
        if (token.0 >> 32) & 0xFF_FFFF != self.epoch as usize & 0xFF_FFFF {
            return;
        }
        let Some(c) = self.checks.get(i) else { return };
        let Some(s) = c.sock.as_ref() else { return };
        // A check is a TCP handshake: one the backend completed and then reset passed it, as
        // it would have had this reactor looked before the reset.
        match dial_outcome(s, Ready::ALL) {
            Dialed::Pending => {}
            Dialed::Connected | Dialed::Aborted => self.check_done(cx, i, Ok(())),
            Dialed::Failed(cause) => self.check_done(cx, i, Err(cause)),
        }
    }

    pub(super) fn health_timer(&mut self, cx: &mut Cx, token: Token) {
        let i = token.0 & 0xFFFF_FFFF;
        if (token.0 >> 32) & 0xFF_FFFF != self.epoch as usize & 0xFF_FFFF {
            return;
        }
        let Some(c) = self.checks.get_mut(i) else { return };
        c.timer_armed = false;
        self.check_step(cx, i);
    }
}

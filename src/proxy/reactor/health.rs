//! Active health checks (reactor 0) and the start-up gate that opens the listeners once
//! every backend has a first result (see the design notes in the parent module).

use std::io;
use std::time::Duration;

use super::backends::{dial_outcome, Dialed};
use super::{Check, CheckCarry, PCx, Probe, ProxyEntry, ProxyReactor, T_HEALTH};
use crate::engine::{Key, Ready};
use crate::net::connect::{self, DialOpts};
use crate::net::Cause;
use crate::proxy::config::AdminState;

/// The probe of check entry `key`.
fn probe(table: &mut crate::engine::Table<ProxyEntry>, key: Key) -> Option<&mut Probe> {
    match table.get_mut(key) {
        Some(ProxyEntry::Check(p)) => Some(p),
        _ => None,
    }
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
    pub(super) fn start_checks(&mut self, cx: &mut PCx, carry: &[Option<CheckCarry>]) {
        // The old checks' probes and timers go with their entries.
        self.close_checks(cx);
        if cx.id != 0 || !self.cfg.health.enabled {
            self.checks.clear();
            return;
        }
        // Up/down state carries over through `Backend::up`, counts through `carry`.
        let mut checks = Vec::with_capacity(self.backends.len());
        for (i, b) in self.backends.iter().enumerate() {
            let c = carry.get(i).copied().flatten().unwrap_or(CheckCarry { rise: 0, fall: 0, fresh: true });
            let key = match cx.adopt(ProxyEntry::Check(Probe { backend: i, sock: None })) {
                Ok(k) => Some(k),
                Err(_) => {
                    log::error!("r{} no table entry for the health check of backend {}", cx.id, b.label());
                    None
                }
            };
            checks.push(Check {
                key,
                in_flight: false,
                started: cx.now,
                next_at: cx.now,
                rise: c.rise,
                fall: c.fall,
                up: b.up,
                fresh: c.fresh,
            });
        }
        self.checks = checks;
        for i in 0..self.checks.len() {
            self.check_step(cx, i);
        }
    }

    /// Closes every check entry (a reload, or draining): probes under way are dropped and
    /// their timers cancelled.
    pub(super) fn close_checks(&mut self, cx: &mut PCx) {
        for c in self.checks.iter_mut() {
            if let Some(k) = c.key.take() {
                cx.table.close(cx.timers, k);
            }
            c.in_flight = false;
        }
    }

    /// Runs when check `i`'s timer fires (or at its start): times out the probe under way, or
    /// starts the next one when it is due, then arms the timer for what comes next.
    fn check_step(&mut self, cx: &mut PCx, i: usize) {
        let Some(key) = self.checks[i].key else { return };
        if self.draining || self.stopping {
            return;
        }
        let timeout = self.cfg.health.timeout;
        let now = cx.now;
        let in_flight = self.checks[i].in_flight;
        if in_flight && now >= self.checks[i].started + timeout {
            self.check_done(cx, i, Err(Cause::Timeout));
        } else if !in_flight && now >= self.checks[i].next_at && self.backends[i].state != AdminState::Maint {
            match connect::dial(self.backends[i].addr, None, &DialOpts { linger_rst: true, ..Default::default() }) {
                Ok(s) => {
                    if let Some(p) = probe(cx.table, key) {
                        p.sock = Some(s);
                    }
                    match cx.table.attach(cx.registry, key, 0) {
                        Ok(()) => {
                            self.checks[i].in_flight = true;
                            self.checks[i].started = now;
                        }
                        Err(e) => {
                            if let Some(p) = probe(cx.table, key) {
                                p.sock = None;
                            }
                            self.check_done(cx, i, Err(Cause::from_io(&e)));
                        }
                    }
                }
                Err(e) => self.check_done(cx, i, Err(Cause::from_io(&e))),
            }
        }
        let c = &self.checks[i];
        if self.backends[i].state == AdminState::Maint && !c.in_flight {
            // Maintenance: no checks until a reload changes the state.
            return;
        }
        let at = if c.in_flight { c.started + timeout } else { c.next_at };
        cx.timers.arm(key, T_HEALTH, at);
    }

    fn check_done(&mut self, cx: &mut PCx, i: usize, result: Result<(), Cause>) {
        let h = self.cfg.health.clone();
        if let Some(key) = self.checks[i].key {
            cx.table.detach(cx.registry, key, 0);
            if let Some(p) = probe(cx.table, key) {
                p.sock = None;
            }
        }
        let c = &mut self.checks[i];
        c.in_flight = false;
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
    pub(super) fn maybe_open(&mut self, cx: &mut PCx) {
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
    pub(super) fn open(&mut self, cx: &mut PCx) -> io::Result<()> {
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

    pub(super) fn health_ready(&mut self, cx: &mut PCx, key: Key) {
        let Some(p) = probe(cx.table, key) else { return };
        let i = p.backend;
        let Some(s) = p.sock.as_ref() else { return };
        // A check is a TCP handshake: one the backend completed and then reset passed it, as
        // it would have had this reactor looked before the reset.
        match dial_outcome(s, Ready::ALL) {
            Dialed::Pending => {}
            Dialed::Connected | Dialed::Aborted => self.check_done(cx, i, Ok(())),
            Dialed::Failed(cause) => self.check_done(cx, i, Err(cause)),
        }
    }

    pub(super) fn health_timer(&mut self, cx: &mut PCx, key: Key) {
        let Some(i) = probe(cx.table, key).map(|p| p.backend) else { return };
        if i < self.checks.len() {
            self.check_step(cx, i);
        }
    }
}

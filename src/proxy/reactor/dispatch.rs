//! Dispatch: the [`Handler`] impl of [`ProxyReactor`]. It routes every token to its owner
//! (listener, session, health check, role timer) and every command from the coordinator.

use std::io;
use std::time::Duration;

use mio::Token;

use super::{Cmd, ProxyReactor, HEALTH_TAG, OPEN_GRACE, SESSION_TAG, TIMERS_PER_SESSION, T_DRAIN, T_HEALTH, T_OPEN};
use crate::engine::{listener_index, role_token, slab, Cx, Handler, Ready};

impl Handler for ProxyReactor {
    type Cmd = Cmd;
    type Entry = ();

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        let cap = self.sessions.capacity() * TIMERS_PER_SESSION + self.backends.len() * 2 + 4096;
        cx.legacy_timers.set_capacity(cap);
        self.start_checks(cx, &[]);
        if self.cfg.health.enabled {
            cx.arm_token(cx.now + self.cfg.health.timeout + OPEN_GRACE, role_token(0), T_OPEN);
            self.maybe_open(cx);
            Ok(())
        } else {
            self.open(cx)
        }
    }

    fn on_handle(&mut self, cx: &mut Cx, h: crate::engine::Handle, ready: Ready) {
        self.on_token(cx, h.token(), ready);
    }

    fn on_handle_timer(&mut self, cx: &mut Cx, h: crate::engine::Handle, kind: crate::engine::Kind) {
        if let Some(i) = self.listeners.iter().position(|l| l.acceptor.handle() == Some(h)) {
            if self.listeners[i].acceptor.on_timer(kind) {
                self.accept(cx, i);
            }
        }
    }

    fn on_token(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if let Some(i) = listener_index(token) {
            if i < self.listeners.len() {
                self.listeners[i].acceptor.note_ready(ready);
                self.accept(cx, i);
            }
            return;
        }
        match slab::tag_of(token) {
            Some(t) if t == SESSION_TAG || t == SESSION_TAG + 1 => self.session_ready(cx, token, ready),
            Some(t) if t as usize == HEALTH_TAG => self.health_ready(cx, token),
            _ => {}
        }
    }

    fn on_token_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        match kind {
            T_DRAIN => {
                if token == role_token(0) && !self.sessions.is_empty() {
                    log::debug!(
                        "r{} drain timeout: cutting {}",
                        cx.id,
                        crate::stats::counted(self.sessions.len() as u64, "session", "sessions")
                    );
                    self.cut_all(cx);
                }
            }
            T_HEALTH => self.health_timer(cx, token),
            T_OPEN => {
                if self.gated {
                    log::warn!("r{} first health round incomplete; accepting anyway", cx.id);
                    if let Err(e) = self.open(cx) {
                        log::error!("r{} register listeners: {e}", cx.id);
                    }
                }
            }
            _ => self.session_timer(cx, token, kind),
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: Cmd) {
        match cmd {
            Cmd::Health { generation, up } => {
                // Another generation's indices name other backends (a reload that did not
                // reach this reactor, or a vector sent before it): ignored.
                if cx.id != 0 && generation == self.generation && up.len() == self.backends.len() {
                    for (b, u) in self.backends.iter_mut().zip(up) {
                        b.up = u;
                    }
                }
            }
            Cmd::Open => {
                if let Err(e) = self.open(cx) {
                    log::error!("r{} register listeners: {e}", cx.id);
                }
            }
            Cmd::PassiveDown { generation, backend, until } => self.passive_down(cx.id, generation, backend, until),
            Cmd::Reload(cfg, generation) => self.reload(cx, cfg, generation),
            Cmd::Drain(deadline) => {
                if self.draining {
                    return;
                }
                self.draining = true;
                for l in self.listeners.iter_mut() {
                    l.acceptor.close(cx.registry);
                }
                for c in self.checks.iter_mut() {
                    if let Some(mut s) = c.sock.take() {
                        let _ = cx.registry.deregister(&mut s);
                    }
                }
                if deadline <= cx.now {
                    self.cut_all(cx);
                } else {
                    cx.arm_token(deadline, role_token(0), T_DRAIN);
                }
            }
            Cmd::Stop => {
                self.stopping = true;
                self.draining = true;
                for l in self.listeners.iter_mut() {
                    l.acceptor.close(cx.registry);
                }
                self.cut_all(cx);
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        let health_known = self.health_known();
        let r = self.make_report(cx.id, false, health_known);
        let _ = self.report.try_send(r);
    }

    fn on_wake(&mut self, cx: &mut Cx) {
        if self.draining || self.gated {
            return;
        }
        for l in self.listeners.iter_mut() {
            l.acceptor.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.draining && self.sessions.is_empty()
    }

    fn on_exit(&mut self, cx: &mut Cx) {
        self.cut_all(cx);
        let r = self.make_report(cx.id, true, true);
        let _ = self.report.send_timeout(r, Duration::from_secs(1));
    }
}

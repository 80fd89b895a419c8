//! Dispatch: the [`Handler`] impl of [`ProxyReactor`]. The engine hands it an entry (session
//! or health check) or a handle (listener, the reactor's clock); this passes each to its code,
//! and serves every command from the coordinator.

use std::io;
use std::time::Duration;

use super::{Cmd, PCx, ProxyEntry, ProxyReactor, OPEN_GRACE, T_DRAIN, T_OPEN};
use crate::engine::{Handle, Handler, Key, Kind, Ready};

impl Handler for ProxyReactor {
    type Cmd = Cmd;
    type Entry = ProxyEntry;

    fn on_start(&mut self, cx: &mut PCx) -> io::Result<()> {
        cx.table.set_capacity(self.table_capacity(), 0);
        let clock = cx.handle()?;
        self.clock = Some(clock);
        self.start_checks(cx, &[]);
        if self.cfg.health.enabled {
            cx.arm(clock, T_OPEN, cx.now + self.cfg.health.timeout + OPEN_GRACE);
            self.maybe_open(cx);
            Ok(())
        } else {
            self.open(cx)
        }
    }

    fn on_ready(&mut self, cx: &mut PCx, key: Key, sock: usize, ready: Ready) {
        match cx.table.get(key) {
            Some(ProxyEntry::Session(_)) => self.session_ready(cx, key, sock, ready),
            Some(ProxyEntry::Check(_)) => self.health_ready(cx, key),
            None => {}
        }
    }

    fn on_handle(&mut self, cx: &mut PCx, h: Handle, ready: Ready) {
        if let Some(i) = self.listener_of(h) {
            self.listeners[i].acceptor.note_ready(ready);
            self.accept(cx, i);
        }
    }

    fn on_timer(&mut self, cx: &mut PCx, key: Key, kind: Kind) {
        match cx.table.get(key) {
            Some(ProxyEntry::Session(_)) => self.session_timer(cx, key, kind),
            Some(ProxyEntry::Check(_)) => self.health_timer(cx, key),
            None => {}
        }
    }

    fn on_handle_timer(&mut self, cx: &mut PCx, h: Handle, kind: Kind) {
        if Some(h) != self.clock {
            if let Some(i) = self.listener_of(h) {
                if self.listeners[i].acceptor.on_timer(kind) {
                    self.accept(cx, i);
                }
            }
        } else if kind == T_DRAIN {
            if self.sessions > 0 {
                log::debug!(
                    "r{} drain timeout: cutting {}",
                    cx.id,
                    crate::stats::counted(self.sessions as u64, "session", "sessions")
                );
                self.cut_all(cx);
            }
        } else if kind == T_OPEN && self.gated {
            log::warn!("r{} first health round incomplete; accepting anyway", cx.id);
            if let Err(e) = self.open(cx) {
                log::error!("r{} register listeners: {e}", cx.id);
            }
        }
    }

    fn on_command(&mut self, cx: &mut PCx, cmd: Cmd) {
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
                self.close_checks(cx);
                if deadline <= cx.now {
                    self.cut_all(cx);
                } else if let Some(clock) = self.clock {
                    cx.arm(clock, T_DRAIN, deadline);
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

    fn on_tick(&mut self, cx: &mut PCx) {
        self.bufs.sweep(cx.now);
        let health_known = self.health_known();
        let r = self.make_report(cx.id, false, health_known);
        let _ = self.report.try_send(r);
    }

    fn on_wake(&mut self, cx: &mut PCx) {
        if self.draining || self.gated {
            return;
        }
        for l in self.listeners.iter_mut() {
            l.acceptor.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.draining && self.sessions == 0
    }

    fn on_exit(&mut self, cx: &mut PCx) {
        self.cut_all(cx);
        let r = self.make_report(cx.id, true, true);
        let _ = self.report.send_timeout(r, Duration::from_secs(1));
    }
}

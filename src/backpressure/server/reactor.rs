//! The reactor's side of `bp server`: accepting, dispatching each ready connection on its state,
//! timers, closing (with a lingering Close reply), and the commands from the coordinator.

use std::io;
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;

use super::dashboard::{dashboard, pump_dashboard};
use super::head::{read_head, respond};
use super::payload::{read_tcp, read_ws, At};
use super::sample::Probe;
use super::{
    BpReactor, Conn, ServerCmd, State, Step, CLOSE_LINGER, DASHBOARD_QUEUE, TIMER_HEAD, TIMER_LINGER, TIMER_READ,
};
use crate::backpressure::config::Protocol;
use crate::backpressure::ws::{CloseReply, Flush};
use crate::engine::accept::Slot;
use crate::engine::{Cx, Handle, Handler, Key, Kind, Readiness, Ready, Refused};

type SCx<'a> = Cx<'a, Conn>;

impl BpReactor {
    fn accept(&mut self, cx: &mut SCx) {
        let mut taken = 0;
        while let Some((sock, peer, slot)) = self.acceptor.next(cx, &mut taken) {
            self.adopt(cx, sock, peer, slot);
        }
        self.stats.accept_pauses = self.acceptor.pauses;
    }

    fn adopt(&mut self, cx: &mut SCx, sock: TcpStream, peer: SocketAddr, slot: Slot) {
        self.next_id += 1;
        // Connection ids are unique across reactors: reactor index in the low bits.
        let id = self.next_id * 64 + cx.id as u64 % 64;
        let state = match self.cfg.protocol {
            Protocol::Tcp => State::Tcp(sock),
            Protocol::Websocket => match self.heads.take() {
                Ok(buf) => State::Head { sock, buf },
                Err(e) => {
                    // More heads than connections cannot be in flight; were it so, shed this one.
                    log::debug!("r{} {peer}: no head buffer ({e}); closing", cx.id);
                    return;
                }
            },
        };
        let conn = Conn {
            id,
            peer,
            accepted: cx.now,
            rd: Readiness::default(),
            state,
            tcp_read: 0,
            next_read: cx.now,
            first_zero: None,
            _slot: slot,
            probe: Probe::new(),
        };
        let key = match cx.adopt(conn) {
            Ok(key) => key,
            Err((conn, refused)) => {
                if let Refused::Register(e) = refused {
                    log::debug!("r{} register: {e}", cx.id);
                }
                if let State::Head { buf, .. } = conn.state {
                    self.heads.give(buf);
                }
                return;
            }
        };
        self.stats.accepted += 1;
        if self.cfg.protocol == Protocol::Websocket {
            cx.timers.arm(key, TIMER_HEAD, cx.now + self.cfg.http_head_timeout);
        } else {
            self.stats.active += 1;
        }
        log::debug!("r{} t{key} accepted conn {id}", cx.id);
    }

    fn close(&mut self, cx: &mut SCx, key: Key) {
        if let Some(c) = cx.close(key) {
            self.stats.closed += 1;
            match &c.state {
                State::Tcp(_) | State::Ws(_) => {
                    self.closed_read += c.read_bytes();
                    self.stats.active = self.stats.active.saturating_sub(1);
                }
                State::Dashboard { .. } => self.stats.dashboards = self.stats.dashboards.saturating_sub(1),
                _ => {}
            }
            if let State::Tcp(s) = &c.state {
                let _ = s.shutdown(Shutdown::Both);
            }
            // Closed before its head was read (timeout, reset): the ring goes back. The entry
            // itself is dropped at the end of the batch.
            if matches!(c.state, State::Head { .. }) {
                if let State::Head { buf, .. } = std::mem::replace(&mut c.state, State::Gone) {
                    self.heads.give(buf);
                }
            }
        }
    }

    fn serve(&mut self, cx: &mut SCx, key: Key, ready: Ready) {
        let Some(c) = cx.table.get_mut(key) else { return };
        c.rd.event |= ready;
        c.probe.changed = true;
        let mut at = At { key, timers: cx.timers, now: cx.now, id: cx.id };
        let step = match &mut c.state {
            State::Tcp(_) => read_tcp(c, &mut at, &self.cfg, &mut self.scratch),
            State::Ws(_) => read_ws(c, &mut at, &self.cfg, &mut self.stats),
            State::Head { .. } => {
                let step = read_head(c, &self.cfg, self.limits, &mut self.stats, &mut self.heads);
                if matches!(c.state, State::Ws(_)) {
                    self.stats.active += 1;
                }
                if matches!(c.state, State::Dashboard { .. }) {
                    self.stats.dashboards += 1;
                }
                // The head turned into something else: serve that at once (leftover frames,
                // a page to write).
                step
            }
            State::Respond { .. } => respond(c),
            State::Dashboard { .. } => dashboard(c),
            State::CloseReply(ws) => match ws.flush_close_reply() {
                Flush::NotNow => {
                    c.rd.event.remove(Ready::WRITABLE);
                    Step::Idle
                }
                Flush::Done | Flush::Closed(_) => Step::Close,
            },
            State::Gone => Step::Close,
        };
        match step {
            Step::Idle => {}
            Step::More => cx.defer(key),
            Step::Close => self.close_or_linger(cx, key),
        }
    }

    /// Closes the connection, unless it is a WebSocket whose peer sent Close while the socket
    /// was full: then it writes the reply first (on WRITABLE, for at most [`CLOSE_LINGER`]), so
    /// every Close is answered.
    fn close_or_linger(&mut self, cx: &mut SCx, key: Key) {
        let Some(c) = cx.table.get_mut(key) else { return };
        let unsent = match &c.state {
            State::Ws(ws) => ws.close_reply_unsent(),
            State::Dashboard { ws, .. } => ws.close_reply_unsent(),
            _ => false,
        };
        if !unsent || self.stopping {
            self.close(cx, key);
            return;
        }
        // The connection stops counting as a payload stream or a dashboard now.
        let read = c.read_bytes();
        let reply: Box<dyn CloseReply + Send> = match std::mem::replace(&mut c.state, State::Gone) {
            State::Ws(ws) => {
                self.closed_read += read;
                self.stats.active = self.stats.active.saturating_sub(1);
                ws
            }
            State::Dashboard { ws, .. } => {
                self.stats.dashboards = self.stats.dashboards.saturating_sub(1);
                ws
            }
            _ => return self.close(cx, key),
        };
        c.state = State::CloseReply(reply);
        cx.timers.arm(key, TIMER_LINGER, cx.now + CLOSE_LINGER);
    }
}

impl Handler for BpReactor {
    type Cmd = ServerCmd;
    type Entry = Conn;

    fn on_start(&mut self, cx: &mut SCx) -> io::Result<()> {
        cx.table.set_capacity(self.cap, 0);
        self.acceptor.register(cx)
    }

    fn on_ready(&mut self, cx: &mut SCx, key: Key, _sock: usize, ready: Ready) {
        if !self.stopping {
            self.serve(cx, key, ready);
        }
    }

    fn on_handle(&mut self, cx: &mut SCx, _h: Handle, ready: Ready) {
        if !self.stopping {
            self.acceptor.note_ready(ready);
            self.accept(cx);
        }
    }

    fn on_timer(&mut self, cx: &mut SCx, key: Key, kind: Kind) {
        if self.stopping {
            return;
        }
        let state = cx.table.get(key).map(|c| &c.state);
        if kind == TIMER_READ {
            self.serve(cx, key, Ready::EMPTY);
        } else if kind == TIMER_HEAD && matches!(state, Some(State::Head { .. })) {
            self.stats.head_timeouts += 1;
            self.close(cx, key);
        } else if kind == TIMER_LINGER && matches!(state, Some(State::CloseReply(_))) {
            self.close(cx, key);
        }
    }

    fn on_handle_timer(&mut self, cx: &mut SCx, _h: Handle, kind: Kind) {
        if !self.stopping && self.acceptor.on_timer(kind) {
            self.accept(cx);
        }
    }

    fn on_command(&mut self, cx: &mut SCx, cmd: ServerCmd) {
        match cmd {
            ServerCmd::Samples(batch) => {
                if self.stats.dashboards == 0 {
                    return;
                }
                let mut closing = Vec::new();
                for (key, c) in cx.table.iter_mut() {
                    let State::Dashboard { ws, queue } = &mut c.state else { continue };
                    for m in batch.iter() {
                        if queue.len() < DASHBOARD_QUEUE {
                            queue.push_back(m.clone());
                        } else {
                            self.stats.samples_dropped += 1;
                        }
                    }
                    if let Step::Close = pump_dashboard(ws, queue, &mut c.rd) {
                        closing.push(key);
                    }
                }
                for k in closing {
                    self.close_or_linger(cx, k);
                }
            }
            ServerCmd::Stop => {
                // Final numbers first, at one instant, then close everything.
                self.sample(cx, true);
                for k in cx.table.keys() {
                    self.close(cx, k);
                }
                self.stopping = true;
            }
        }
    }

    fn on_tick(&mut self, cx: &mut SCx) {
        self.heads.sweep(cx.now);
        if !self.stopping {
            self.sample(cx, false);
        }
    }

    fn on_wake(&mut self, cx: &mut SCx) {
        if !self.stopping {
            self.acceptor.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.stopping
    }

    fn on_exit(&mut self, _cx: &mut SCx) {}
}

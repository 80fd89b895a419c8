//! The reactor's side of `bp server`: accepting, dispatching each ready connection on its state,
//! timers, closing (with a lingering Close reply), and the commands from the coordinator.

use std::io;
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::dashboard::{dashboard, pump_dashboard};
use super::head::{read_head, respond};
use super::payload::{read_tcp, read_ws};
use super::sample::Probe;
use super::{
    BpReactor, Conn, ServerCmd, State, Step, CLOSE_LINGER, DASHBOARD_QUEUE, TIMER_HEAD, TIMER_LINGER, TIMER_READ,
};
use crate::backpressure::config::Protocol;
use crate::backpressure::ws::{CloseReply, Flush};
use crate::engine::accept::Slot;
use crate::engine::{Cx, Handler, Readiness, Ready};

impl BpReactor {
    fn accept(&mut self, cx: &mut Cx) {
        let mut taken = 0;
        while let Some((sock, peer, slot)) = self.acceptor.next(cx, &mut taken) {
            self.adopt(cx, sock, peer, slot);
        }
        self.stats.accept_pauses = self.acceptor.pauses;
    }

    fn adopt(&mut self, cx: &mut Cx, sock: TcpStream, peer: SocketAddr, slot: Slot) {
        // Closed connections' read/head timers linger until their deadlines: drop them before
        // connection churn fills the heap.
        crate::engine::purge_closed(cx.legacy_timers, &self.conns);
        self.next_id += 1;
        // Connection ids are unique across reactors: reactor index in the low bits.
        let id = self.next_id * 64 + cx.id as u64 % 64;
        let state = match self.cfg.protocol {
            Protocol::Tcp => State::Tcp(sock),
            Protocol::Websocket => {
                State::Head { sock, buf: vec![0u8; self.cfg.http_head_max].into_boxed_slice(), filled: 0 }
            }
        };
        let conn = Conn {
            id,
            peer,
            accepted: cx.now,
            rd: Readiness::default(),
            state,
            tcp_read: 0,
            next_read: cx.now,
            timer_armed: false,
            first_zero: None,
            _slot: slot,
            probe: Probe::new(),
        };
        let Ok(token) = self.conns.insert(conn) else { return };
        let Some(c) = self.conns.get_mut(token) else { return };
        let registered = match &mut c.state {
            State::Tcp(s) | State::Head { sock: s, .. } => {
                cx.registry.register(s, token, Interest::READABLE | Interest::WRITABLE)
            }
            _ => Ok(()),
        };
        if let Err(e) = registered {
            log::debug!("r{} register: {e}", cx.id);
            self.conns.remove(token);
            return;
        }
        self.stats.accepted += 1;
        if self.cfg.protocol == Protocol::Websocket {
            cx.arm_token(cx.now + self.cfg.http_head_timeout, token, TIMER_HEAD);
        } else {
            self.stats.active += 1;
        }
        log::debug!("r{} t{:?} accepted conn {id}", cx.id, token);
    }

    fn close(&mut self, _cx: &mut Cx, token: Token) {
        if let Some(c) = self.conns.remove(token) {
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
        }
    }

    fn serve(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        let Some(c) = self.conns.get_mut(token) else { return };
        c.rd.event |= ready;
        c.probe.changed = true;
        let step = match &mut c.state {
            State::Tcp(_) => read_tcp(c, cx, token, &self.cfg, &mut self.scratch),
            State::Ws(_) => read_ws(c, cx, token, &self.cfg, &mut self.stats),
            State::Head { .. } => {
                let step = read_head(c, &self.cfg, self.limits, &mut self.stats);
                if matches!(c.state, State::Ws(_)) {
                    self.stats.active += 1;
                }
                if matches!(c.state, State::Dashboard { .. }) {
                    self.stats.dashboards += 1;
                }
                match step {
                    // The head turned into something else: serve that at once (leftover frames,
                    // a page to write).
                    Step::More => {
                        cx.defer_token(token);
                        Step::Idle
                    }
                    s => s,
                }
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
            Step::More => cx.defer_token(token),
            Step::Close => self.close_or_linger(cx, token),
        }
    }

    /// Closes the connection, unless it is a WebSocket whose peer sent Close while the socket
    /// was full: then it writes the reply first (on WRITABLE, for at most [`CLOSE_LINGER`]), so
    /// every Close is answered.
    fn close_or_linger(&mut self, cx: &mut Cx, token: Token) {
        let Some(c) = self.conns.get_mut(token) else { return };
        let unsent = match &c.state {
            State::Ws(ws) => ws.close_reply_unsent(),
            State::Dashboard { ws, .. } => ws.close_reply_unsent(),
            _ => false,
        };
        if !unsent || self.stopping {
            self.close(cx, token);
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
            _ => return self.close(cx, token),
        };
        c.state = State::CloseReply(reply);
        cx.arm_token(cx.now + CLOSE_LINGER, token, TIMER_LINGER);
    }
}

impl Handler for BpReactor {
    type Cmd = ServerCmd;
    type Entry = ();

    fn on_start(&mut self, cx: &mut Cx) -> io::Result<()> {
        cx.legacy_timers.set_capacity(self.conns.capacity() * 2 + 64);
        self.acceptor.register(cx)
    }

    fn on_handle(&mut self, cx: &mut Cx, h: crate::engine::Handle, ready: Ready) {
        self.on_token(cx, h.token(), ready);
    }

    fn on_handle_timer(&mut self, cx: &mut Cx, _h: crate::engine::Handle, kind: crate::engine::Kind) {
        if !self.stopping && self.acceptor.on_timer(kind) {
            self.accept(cx);
        }
    }

    fn on_token(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        if self.stopping {
            return;
        }
        if token == self.acceptor.token() {
            self.acceptor.note_ready(ready);
            self.accept(cx);
            return;
        }
        self.serve(cx, token, ready);
    }

    fn on_token_timer(&mut self, cx: &mut Cx, token: Token, kind: u8) {
        if self.stopping {
            return;
        }
        match kind {
            _ if token == self.acceptor.token() => {}
            TIMER_READ => {
                if let Some(c) = self.conns.get_mut(token) {
                    c.timer_armed = false;
                    self.serve(cx, token, Ready::EMPTY);
                }
            }
            TIMER_HEAD => {
                if let Some(c) = self.conns.get_mut(token) {
                    if matches!(c.state, State::Head { .. }) {
                        self.stats.head_timeouts += 1;
                        self.close(cx, token);
                    }
                }
            }
            TIMER_LINGER if self.conns.get(token).is_some_and(|c| matches!(c.state, State::CloseReply(_))) => {
                self.close(cx, token);
            }
            _ => {}
        }
    }

    fn on_command(&mut self, cx: &mut Cx, cmd: ServerCmd) {
        match cmd {
            ServerCmd::Samples(batch) => {
                if self.stats.dashboards == 0 {
                    return;
                }
                let mut closing = Vec::new();
                for (token, c) in self.conns.iter_mut() {
                    let State::Dashboard { ws, queue } = &mut c.state else { continue };
                    for m in batch.iter() {
                        if queue.len() < DASHBOARD_QUEUE {
                            queue.push_back(m.clone());
                        } else {
                            self.stats.samples_dropped += 1;
                        }
                    }
                    if let Step::Close = pump_dashboard(ws, queue, &mut c.rd) {
                        closing.push(token);
                    }
                }
                for t in closing {
                    self.close_or_linger(cx, t);
                }
            }
            ServerCmd::Stop => {
                // Final numbers first, at one instant, then close everything.
                self.sample(cx, true);
                for t in self.conns.tokens() {
                    self.close(cx, t);
                }
                self.stopping = true;
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx) {
        if !self.stopping {
            self.sample(cx, false);
        }
    }

    fn on_wake(&mut self, cx: &mut Cx) {
        if !self.stopping {
            self.acceptor.on_wake(cx);
        }
    }

    fn finished(&self) -> bool {
        self.stopping
    }

    fn on_exit(&mut self, _cx: &mut Cx) {}
}

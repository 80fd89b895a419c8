//! Session lifecycle: accept, adopt (slab insert + register, rolled back on failure), the
//! backend connect and its retries, driving the byte pump, the per-session timers, and close.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::backends::{dial_outcome, Dialed};
use super::{ProxyReactor, Session, REMOVED, SERVER_BIT, T_CONNECT, T_FIN, T_IDLE};
use crate::engine::accept::Slot;
use crate::engine::{Cx, Readiness, Ready};
use crate::net::Cause;
use crate::proxy::config::{ProxyConfig, SpliceMode};
use crate::proxy::session::{reset_on_close, CloseReason, Moved, Pipe, Pump};

impl ProxyReactor {
    // ----------------------------------------------------------------------------------------
    // Accepting

    pub(super) fn accept(&mut self, cx: &mut Cx, i: usize) {
        if self.draining || self.gated {
            return;
        }
        let mut taken = 0;
        while let Some((sock, peer, slot)) = self.listeners[i].acceptor.next(cx, &mut taken) {
            self.start(cx, i, sock, peer, slot);
        }
    }

    /// Out of descriptors on `what` while starting a session of listener `i`: pause it.
    fn pause(&mut self, cx: &mut Cx, i: usize, what: &str, e: &io::Error) {
        if let Some(l) = self.listeners.get_mut(i) {
            l.acceptor.pause(cx, what, e);
        }
    }

    /// Drops the timer entries of closed sessions before the heap fills (see `purge_closed`).
    fn purge_timers(&mut self, cx: &mut Cx) {
        let purged = crate::engine::purge_closed(cx.legacy_timers, &self.sessions);
        if purged > 0 {
            log::debug!("r{} timers: purged {purged} entries of closed sessions", cx.id);
        }
    }

    fn start(&mut self, cx: &mut Cx, li: usize, client: TcpStream, peer: SocketAddr, slot: Slot) {
        self.stats.listener_accepted[li] += 1;
        self.purge_timers(cx);
        // TCP_NODELAY is inherited from the listener (set in `proxy::run`): no syscall here.
        // Smart connect: take what the client already sent, so the backend dial can carry it.
        let mut first = 0;
        // Not with splice = "on": there every byte goes through a pipe, these included.
        if self.cfg.smart_connect && self.bufs.splice != SpliceMode::On {
            match (&client).read(&mut self.bufs.scratch) {
                Ok(n) => first = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Reset before its first byte: nothing to forward, no backend to bother.
                    self.stats.closes[CloseReason::ClientReset.index()] += 1;
                    log::debug!("r{} session {peer} -> - closed: client_reset ({e}) after 0.000s", cx.id);
                    return;
                }
            }
        }
        let group = self.listeners[li].group;
        let mut tried = Vec::new();
        let mut attempts = 0;
        let Some((b, server)) = self.dial_next(cx, group, &mut tried, &mut attempts, first > 0) else {
            let reason = if attempts == 0 { CloseReason::NoBackend } else { CloseReason::ConnectFailed };
            self.stats.closes[reason.index()] += 1;
            // The client learns of the failure by a reset, as from `close`, even when its first
            // bytes were already read (a FIN would look like an empty reply).
            reset_on_close(&client);
            if let Some(e) = self.exhausted.take() {
                // The client took the last descriptor: stop accepting for a while, as for an
                // EMFILE on accept.
                self.pause(cx, li, "backend socket", &e);
            }
            log::debug!("r{} session {peer} -> - closed: {} after 0.000s, c->s 0 B, s->c 0 B", cx.id, reason.name());
            return;
        };
        let all = Readiness::default();
        let now = cx.now;
        let s = Session {
            pipe: Pipe::new(client, all, server, all),
            listener: li,
            backend: b,
            connecting: Some(now + self.cfg.timeouts.connect),
            attempt_started: now,
            attempts,
            tried,
            connect_timer: false,
            fin_timer: false,
            started: now,
            last_client: now,
            last_server: now,
            peer,
            c2s_bytes: 0,
            s2c_bytes: 0,
            _slot: slot,
        };
        let tok = match self.sessions.insert(s) {
            Ok(tok) => tok,
            Err(s) => {
                reset_on_close(&s.pipe.client);
                return;
            }
        };
        let Some(s) = self.sessions.get_mut(tok) else { return };
        if first == self.bufs.buffer_bytes {
            // The first read filled the buffer: a bulk upload.
            s.pipe.c2s.full(&mut self.bufs);
        }
        let reg =
            cx.registry.register(&mut s.pipe.client, tok, Interest::READABLE | Interest::WRITABLE).and_then(|_| {
                cx.registry.register(
                    &mut s.pipe.server,
                    Token(tok.0 | SERVER_BIT),
                    Interest::READABLE | Interest::WRITABLE,
                )
            });
        if let Err(e) = reg {
            log::debug!("r{} register: {e}", cx.id);
            if let Some(mut s) = self.sessions.remove(tok) {
                self.deregister(cx, &mut s);
                s.pipe.release(&mut self.bufs);
                reset_on_close(&s.pipe.client);
            }
            return;
        }
        self.listeners[li].active += 1;
        self.backends[b].active += 1;
        let idle = self.idle_deadline(now, now, now).0;
        cx.arm_token(idle, tok, T_IDLE);
        if first > 0 {
            self.send_first(cx, tok, first);
        }
        if let Some(s) = self.sessions.get_mut(tok) {
            if let (Some(at), false) = (s.connecting, s.connect_timer) {
                s.connect_timer = true;
                cx.arm_token(at, tok, T_CONNECT);
            }
        }
    }

    /// Smart connect, second half: writes the client's first `n` bytes (in the scratch buffer)
    /// to the backend right after the dial. On loopback and other fast paths the handshake has
    /// completed inside connect(2), so the write goes out at once and carries the delayed ACK;
    /// otherwise the kernel says EAGAIN and the bytes wait in the ring for the connect edge.
    /// A write error is the connect's failure: the bytes wait in the ring for the retry.
    fn send_first(&mut self, cx: &mut Cx, tok: Token, n: usize) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let data = &self.bufs.scratch[..n];
        let (sent, failed) = match (&s.pipe.server).write(data) {
            Ok(w) => (w, None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => (0, None),
            Err(e) => (0, Some(e)),
        };
        if sent < n {
            let Some(ring) = self.bufs.park_scratch(sent..n) else {
                // Never drop client bytes silently.
                self.close(cx, tok, CloseReason::ClientReset);
                return;
            };
            s.pipe.c2s.ring = Some(ring);
        }
        if let Some(e) = failed {
            self.retry(cx, tok, Cause::from_io(&e));
            return;
        }
        s.c2s_bytes += sent as u64;
        self.stats.bytes_client_to_server += sent as u64;
        if sent > 0 {
            // Only a connected socket takes bytes. The loop's clock is the dial's start, so
            // read the real one for the connect time.
            self.stats.smart_connects += 1;
            self.connected(tok, Instant::now());
        }
    }

    /// Bookkeeping of a completed backend connect.
    fn connected(&mut self, tok: Token, now: Instant) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let Some(_) = s.connecting.take() else { return };
        let us = now.saturating_duration_since(s.attempt_started).as_micros() as u64;
        let b = s.backend;
        self.stats.record_connect_us(us);
        if let Some(be) = self.backends.get_mut(b) {
            be.passive_fails = 0;
            self.stats.backend_sessions[b] += 1;
        }
    }

    fn deregister(&self, cx: &mut Cx, s: &mut Session) {
        let _ = cx.registry.deregister(&mut s.pipe.client);
        let _ = cx.registry.deregister(&mut s.pipe.server);
    }

    fn idle_deadline(&self, started: Instant, last_client: Instant, last_server: Instant) -> (Instant, CloseReason) {
        let t = &self.cfg.timeouts;
        let mut d = (last_client + t.client_idle, CloseReason::ClientIdle);
        let s = last_server + t.server_idle;
        if s < d.0 {
            d = (s, CloseReason::ServerIdle);
        }
        if let Some(life) = t.max_lifetime {
            if started + life < d.0 {
                d = (started + life, CloseReason::Lifetime);
            }
        }
        d
    }

    pub(super) fn close(&mut self, cx: &mut Cx, tok: Token, reason: CloseReason) {
        let Some(mut s) = self.sessions.remove(tok) else { return };
        // No EPOLL_CTL_DEL: dropping the sockets below closes the only descriptors, and the
        // kernel removes a closed file from every epoll set. Events already taken for this
        // token in this batch carry a generation the slab no longer issues, so they are ignored.
        // That saves two syscalls per session.
        s.pipe.release(&mut self.bufs);
        if reason.resets() {
            // Whichever side is still alive learns of the failure by a reset, not a clean FIN.
            reset_on_close(&s.pipe.client);
            reset_on_close(&s.pipe.server);
        }
        self.stats.closes[reason.index()] += 1;
        if let Some(l) = self.listeners.get_mut(s.listener) {
            l.active = l.active.saturating_sub(1);
        }
        if let Some(b) = self.backends.get_mut(s.backend) {
            b.active = b.active.saturating_sub(1);
        }
        if log::log_enabled!(log::Level::Debug) {
            // The access log: one line per session, whatever ended it.
            let (name, addr) = match self.backends.get(s.backend) {
                Some(b) => (b.name.as_str(), b.addr.to_string()),
                None => ("-", "-".to_string()),
            };
            log::debug!(
                "r{} session {} -> {name} {addr} closed: {} after {:.3}s, c->s {} B, s->c {} B",
                cx.id,
                s.peer,
                reason.name(),
                cx.now.saturating_duration_since(s.started).as_secs_f64(),
                s.c2s_bytes,
                s.s2c_bytes
            );
        }
    }

    // ----------------------------------------------------------------------------------------
    // Sessions

    pub(super) fn session_ready(&mut self, cx: &mut Cx, token: Token, ready: Ready) {
        let server_side = token.0 & SERVER_BIT != 0;
        let tok = Token(token.0 & !SERVER_BIT);
        let Some(s) = self.sessions.get_mut(tok) else { return };
        if server_side {
            s.pipe.srd.event |= ready;
        } else {
            s.pipe.crd.event |= ready;
        }
        if s.connecting.is_some() {
            if !server_side || ready.is_empty() {
                // Client bytes wait in the kernel until the backend answers.
                return;
            }
            match dial_outcome(&s.pipe.server, ready) {
                Dialed::Pending => return,
                Dialed::Connected => self.connected(tok, cx.now),
                Dialed::Aborted => {
                    // Established, so a session of that backend; its reset ends it like one
                    // seen a moment later on the first read would.
                    self.connected(tok, cx.now);
                    self.close(cx, tok, CloseReason::ServerReset);
                    return;
                }
                Dialed::Failed(cause) => {
                    self.retry(cx, tok, cause);
                    return;
                }
            }
        }
        self.drive(cx, tok);
    }

    /// The current connect failed: try another backend or give up.
    fn retry(&mut self, cx: &mut Cx, tok: Token, cause: Cause) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let b = s.backend;
        let mut tried = std::mem::take(&mut s.tried);
        let mut attempts = s.attempts;
        let _ = cx.registry.deregister(&mut s.pipe.server);
        if let Some(be) = self.backends.get_mut(b) {
            be.active = be.active.saturating_sub(1);
            let g = be.group;
            let local = b - self.groups[g].first;
            if tried.len() < self.groups[g].len {
                tried.resize(self.groups[g].len, false);
            }
            tried[local] = true;
        }
        self.connect_failed(cx.id, cx.now, b, cause);
        let Some(li) = self.sessions.get(tok).map(|s| s.listener) else { return };
        let group = self.listeners[li].group;
        let next = self.dial_next(cx, group, &mut tried, &mut attempts, false);
        let Some(s) = self.sessions.get_mut(tok) else { return };
        s.attempts = attempts;
        s.tried = tried;
        match next {
            None => {
                // Nothing left to try: the session never had a backend.
                s.backend = REMOVED;
                if let Some(e) = self.exhausted.take() {
                    let li = s.listener;
                    self.pause(cx, li, "backend socket", &e);
                }
                let reason =
                    if cause == Cause::Timeout { CloseReason::ConnectTimeout } else { CloseReason::ConnectFailed };
                self.close(cx, tok, reason);
            }
            Some((nb, mut server)) => {
                if let Err(e) = cx.registry.register(
                    &mut server,
                    Token(tok.0 | SERVER_BIT),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    log::debug!("r{} register: {e}", cx.id);
                    s.backend = REMOVED;
                    self.close(cx, tok, CloseReason::ConnectFailed);
                    return;
                }
                s.pipe.server = server;
                s.pipe.srd = Readiness::default();
                s.backend = nb;
                s.attempt_started = cx.now;
                let deadline = cx.now + self.cfg.timeouts.connect;
                s.connecting = Some(deadline);
                if !s.connect_timer {
                    s.connect_timer = true;
                    cx.arm_token(deadline, tok, T_CONNECT);
                }
                self.backends[nb].active += 1;
            }
        }
    }

    fn drive(&mut self, cx: &mut Cx, tok: Token) {
        let Some(s) = self.sessions.get_mut(tok) else { return };
        let mut moved = Moved::default();
        let r = s.pipe.pump(cx.now, &mut moved, &mut self.bufs);
        if moved.client_active {
            s.last_client = cx.now;
        }
        if moved.server_active {
            s.last_server = cx.now;
        }
        s.c2s_bytes += moved.client_to_server;
        s.s2c_bytes += moved.server_to_client;
        self.stats.bytes_client_to_server += moved.client_to_server;
        self.stats.bytes_server_to_client += moved.server_to_client;
        self.stats.splice_bytes += moved.spliced;
        if !s.fin_timer && (s.pipe.c2s.eof || s.pipe.s2c.eof) && r != Pump::Done {
            if let Some(at) = fin_deadline(s, &self.cfg) {
                s.fin_timer = true;
                cx.arm_token(at, tok, T_FIN);
            }
        }
        match r {
            Pump::Idle => {}
            Pump::More => cx.defer_token(tok),
            Pump::Done => self.close(cx, tok, CloseReason::Done),
            Pump::Close(reason) => self.close(cx, tok, reason),
        }
    }

    pub(super) fn session_timer(&mut self, cx: &mut Cx, tok: Token, kind: u8) {
        let cfg = self.cfg.clone();
        let Some(s) = self.sessions.get_mut(tok) else { return };
        match kind {
            T_CONNECT => {
                s.connect_timer = false;
                match s.connecting {
                    Some(at) if cx.now >= at => self.retry(cx, tok, Cause::Timeout),
                    Some(at) => {
                        s.connect_timer = true;
                        cx.arm_token(at, tok, T_CONNECT);
                    }
                    None => {}
                }
            }
            T_IDLE => {
                let (started, lc, ls) = (s.started, s.last_client, s.last_server);
                let (at, reason) = self.idle_deadline(started, lc, ls);
                if cx.now >= at {
                    self.close(cx, tok, reason);
                } else {
                    // Activity moved the deadline: one entry per session, re-armed lazily.
                    cx.arm_token(at, tok, T_IDLE);
                }
            }
            T_FIN => {
                s.fin_timer = false;
                if let Some(at) = fin_deadline(s, &cfg) {
                    if cx.now >= at {
                        self.close(cx, tok, CloseReason::FinTimeout);
                    } else {
                        s.fin_timer = true;
                        cx.arm_token(at, tok, T_FIN);
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn cut_all(&mut self, cx: &mut Cx) {
        for t in self.sessions.tokens() {
            self.cut += 1;
            self.close(cx, t, CloseReason::Shutdown);
        }
    }
}

fn fin_deadline(s: &Session, cfg: &ProxyConfig) -> Option<Instant> {
    let a = s.pipe.c2s.eof_at.map(|t| t + cfg.timeouts.client_fin);
    let b = s.pipe.s2c.eof_at.map(|t| t + cfg.timeouts.server_fin);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, y) => x.or(y),
    }
}

//! Session lifecycle: accept, adopt (the table's insert + register, rolled back on failure),
//! the backend connect and its retries, driving the byte pump, the per-session timers, and
//! close.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::backends::{dial_outcome, Dialed};
use super::{session, PCx, ProxyEntry, ProxyReactor, Session, REMOVED, SERVER, T_CONNECT, T_FIN, T_IDLE};
use crate::engine::accept::Slot;
use crate::engine::{Handle, Key, Kind, Readiness, Ready, Refused, Stamp};
use crate::net::Cause;
use crate::proxy::config::{ProxyConfig, SpliceMode};
use crate::proxy::session::{reset_on_close, CloseReason, Moved, Pipe, Pump};

impl ProxyReactor {
    // ----------------------------------------------------------------------------------------
    // Accepting

    /// The listener registered under `h`.
    pub(super) fn listener_of(&self, h: Handle) -> Option<usize> {
        self.listeners.iter().position(|l| l.acceptor.handle() == Some(h))
    }

    pub(super) fn accept(&mut self, cx: &mut PCx, i: usize) {
        if self.draining || self.gated {
            return;
        }
        let mut taken = 0;
        while let Some((sock, peer, slot)) = self.listeners[i].acceptor.next(cx, &mut taken) {
            self.start(cx, i, sock, peer, slot);
        }
    }

    /// Out of descriptors on `what` while starting a session of listener `i`: pause it.
    fn pause(&mut self, cx: &mut PCx, i: usize, what: &str, e: &io::Error) {
        if let Some(l) = self.listeners.get_mut(i) {
            l.acceptor.pause(cx, what, e);
        }
    }

    fn start(&mut self, cx: &mut PCx, li: usize, client: TcpStream, peer: SocketAddr, slot: Slot) {
        self.stats.listener_accepted[li] += 1;
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
            connecting: Some((now + self.cfg.timeouts.connect).into()),
            attempt_started: now.into(),
            attempts,
            tried,
            started: now.into(),
            last_client: now.into(),
            last_server: now.into(),
            peer,
            c2s_bytes: 0,
            s2c_bytes: 0,
            _slot: slot,
        };
        let key = match cx.adopt(ProxyEntry::Session(s)) {
            Ok(key) => key,
            Err((e, why)) => {
                if let Refused::Register(e) = why {
                    log::debug!("r{} register: {e}", cx.id);
                }
                if let ProxyEntry::Session(s) = e {
                    reset_on_close(&s.pipe.client);
                }
                return;
            }
        };
        self.sessions += 1;
        if first == self.bufs.buffer_bytes {
            if let Some(s) = session(cx.table, key) {
                // The first read filled the buffer: a bulk upload.
                s.pipe.c2s.full(&mut self.bufs);
            }
        }
        self.listeners[li].active += 1;
        self.backends[b].active += 1;
        let at = Stamp::from(now);
        let idle = self.idle_deadline(at, at, at).0;
        cx.timers.arm(key, T_IDLE, idle);
        if first > 0 {
            self.send_first(cx, key, first);
        }
        if let Some(at) = session(cx.table, key).and_then(|s| s.connecting) {
            cx.timers.arm(key, T_CONNECT, at.instant());
        }
    }

    /// Smart connect, second half: writes the client's first `n` bytes (in the scratch buffer)
    /// to the backend right after the dial. On loopback and other fast paths the handshake has
    /// completed inside connect(2), so the write goes out at once and carries the delayed ACK;
    /// otherwise the kernel says EAGAIN and the bytes wait in the ring for the connect edge.
    /// A write error is the connect's failure: the bytes wait in the ring for the retry.
    fn send_first(&mut self, cx: &mut PCx, key: Key, n: usize) {
        let Some(s) = session(cx.table, key) else { return };
        let data = &self.bufs.scratch[..n];
        let (sent, failed) = match (&s.pipe.server).write(data) {
            Ok(w) => (w, None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => (0, None),
            Err(e) => (0, Some(e)),
        };
        if sent < n {
            let Some(ring) = self.bufs.park_scratch(sent..n) else {
                // Never drop client bytes silently.
                self.close(cx, key, CloseReason::ClientReset);
                return;
            };
            s.pipe.c2s.ring = Some(ring);
        }
        if let Some(e) = failed {
            self.retry(cx, key, Cause::from_io(&e));
            return;
        }
        s.c2s_bytes += sent as u64;
        self.stats.bytes_client_to_server += sent as u64;
        if sent > 0 {
            // Only a connected socket takes bytes. The loop's clock is the dial's start, so
            // read the real one for the connect time.
            self.stats.smart_connects += 1;
            self.connected(cx, key, Instant::now());
        }
    }

    /// Bookkeeping of a completed backend connect.
    fn connected(&mut self, cx: &mut PCx, key: Key, now: Instant) {
        let Some(s) = session(cx.table, key) else { return };
        let Some(_) = s.connecting.take() else { return };
        cx.timers.cancel(key, T_CONNECT);
        let us = now.saturating_duration_since(s.attempt_started.instant()).as_micros() as u64;
        let b = s.backend;
        self.stats.record_connect_us(us);
        if let Some(be) = self.backends.get_mut(b) {
            be.passive_fails = 0;
            self.stats.backend_sessions[b] += 1;
        }
    }

    fn idle_deadline(&self, started: Stamp, last_client: Stamp, last_server: Stamp) -> (Instant, CloseReason) {
        let (started, last_client, last_server) = (started.instant(), last_client.instant(), last_server.instant());
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

    pub(super) fn close(&mut self, cx: &mut PCx, key: Key, reason: CloseReason) {
        if session(cx.table, key).is_none() {
            return;
        }
        // No EPOLL_CTL_DEL: the table drops the sockets at the end of the loop turn, which
        // closes the only descriptors, and the kernel removes a closed file from every epoll
        // set. Events already taken for this entry in this batch carry a generation the table
        // no longer issues, so they are ignored. That saves two syscalls per session.
        let Some(ProxyEntry::Session(s)) = cx.table.close(cx.timers, key) else { return };
        self.sessions -= 1;
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
                cx.now.saturating_duration_since(s.started.instant()).as_secs_f64(),
                s.c2s_bytes,
                s.s2c_bytes
            );
        }
    }

    // ----------------------------------------------------------------------------------------
    // Sessions

    pub(super) fn session_ready(&mut self, cx: &mut PCx, key: Key, sock: usize, ready: Ready) {
        let server_side = sock == SERVER;
        let Some(s) = session(cx.table, key) else { return };
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
                Dialed::Connected => self.connected(cx, key, cx.now),
                Dialed::Aborted => {
                    // Established, so a session of that backend; its reset ends it like one
                    // seen a moment later on the first read would.
                    self.connected(cx, key, cx.now);
                    self.close(cx, key, CloseReason::ServerReset);
                    return;
                }
                Dialed::Failed(cause) => {
                    self.retry(cx, key, cause);
                    return;
                }
            }
        }
        self.drive(cx, key);
    }

    /// The current connect failed: try another backend or give up.
    fn retry(&mut self, cx: &mut PCx, key: Key, cause: Cause) {
        let Some(s) = session(cx.table, key) else { return };
        let b = s.backend;
        let li = s.listener;
        let mut tried = std::mem::take(&mut s.tried);
        let mut attempts = s.attempts;
        cx.table.detach(cx.registry, key, SERVER);
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
        let group = self.listeners[li].group;
        let next = self.dial_next(cx, group, &mut tried, &mut attempts, false);
        let Some(s) = session(cx.table, key) else { return };
        s.attempts = attempts;
        s.tried = tried;
        // The session has no backend until the next one is registered.
        s.backend = REMOVED;
        match next {
            None => {
                // Nothing left to try: the session never had a backend.
                if let Some(e) = self.exhausted.take() {
                    self.pause(cx, li, "backend socket", &e);
                }
                let reason =
                    if cause == Cause::Timeout { CloseReason::ConnectTimeout } else { CloseReason::ConnectFailed };
                self.close(cx, key, reason);
            }
            Some((nb, server)) => {
                s.pipe.server = server;
                s.pipe.srd = Readiness::default();
                if let Err(e) = cx.table.attach(cx.registry, key, SERVER) {
                    log::debug!("r{} register: {e}", cx.id);
                    self.close(cx, key, CloseReason::ConnectFailed);
                    return;
                }
                let Some(s) = session(cx.table, key) else { return };
                s.backend = nb;
                s.attempt_started = cx.now.into();
                let deadline = cx.now + self.cfg.timeouts.connect;
                s.connecting = Some(deadline.into());
                cx.timers.arm(key, T_CONNECT, deadline);
                self.backends[nb].active += 1;
            }
        }
    }

    fn drive(&mut self, cx: &mut PCx, key: Key) {
        let Some(s) = session(cx.table, key) else { return };
        let mut moved = Moved::default();
        let r = s.pipe.pump(cx.now, &mut moved, &mut self.bufs);
        if moved.client_active {
            s.last_client = cx.now.into();
        }
        if moved.server_active {
            s.last_server = cx.now.into();
        }
        s.c2s_bytes += moved.client_to_server;
        s.s2c_bytes += moved.server_to_client;
        self.stats.bytes_client_to_server += moved.client_to_server;
        self.stats.bytes_server_to_client += moved.server_to_client;
        self.stats.splice_bytes += moved.spliced;
        if (s.pipe.c2s.eof || s.pipe.s2c.eof) && r != Pump::Done && cx.timers.deadline(key, T_FIN).is_none() {
            if let Some(at) = fin_deadline(s, &self.cfg) {
                cx.timers.arm(key, T_FIN, at);
            }
        }
        match r {
            Pump::Idle => {}
            Pump::More => cx.defer(key),
            Pump::Done => self.close(cx, key, CloseReason::Done),
            Pump::Close(reason) => self.close(cx, key, reason),
        }
    }

    /// A session timer fired. Deadlines that moved since it was armed (activity, a retry)
    /// are armed again: lazily, so a busy session does not touch the heap per read.
    pub(super) fn session_timer(&mut self, cx: &mut PCx, key: Key, kind: Kind) {
        let Some(s) = session(cx.table, key) else { return };
        if kind == T_CONNECT {
            match s.connecting.map(Stamp::instant) {
                Some(at) if cx.now >= at => self.retry(cx, key, Cause::Timeout),
                Some(at) => cx.timers.arm(key, T_CONNECT, at),
                None => {}
            }
        } else if kind == T_IDLE {
            let (at, reason) = self.idle_deadline(s.started, s.last_client, s.last_server);
            if cx.now >= at {
                self.close(cx, key, reason);
            } else {
                cx.timers.arm(key, T_IDLE, at);
            }
        } else if kind == T_FIN {
            match fin_deadline(s, &self.cfg) {
                Some(at) if cx.now >= at => self.close(cx, key, CloseReason::FinTimeout),
                Some(at) => cx.timers.arm(key, T_FIN, at),
                None => {}
            }
        }
    }

    pub(super) fn cut_all(&mut self, cx: &mut PCx) {
        let keys: Vec<Key> =
            cx.table.iter().filter(|(_, e)| matches!(e, ProxyEntry::Session(_))).map(|(k, _)| k).collect();
        for k in keys {
            self.cut += 1;
            self.close(cx, k, CloseReason::Shutdown);
        }
    }
}

fn fin_deadline(s: &Session, cfg: &ProxyConfig) -> Option<Instant> {
    let a = s.pipe.c2s.eof_at.map(|t| t.instant() + cfg.timeouts.client_fin);
    let b = s.pipe.s2c.eof_at.map(|t| t.instant() + cfg.timeouts.server_fin);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, y) => x.or(y),
    }
}

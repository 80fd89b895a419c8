//! The layers over a goon connection's TCP socket, each driven from the reactor's events: the
//! TLS handshake (`--tls`), the WebSocket upgrade and hold (`--ws`; inside TLS with both) and
//! message traffic (`--message`). The connection state machine and dialing are in the parent.

use std::time::Instant;

use super::super::ws::WsWire;
use crate::engine::coordinator::after;

use super::*;

impl GoonReactor {
    /// An established connection with traffic: read and match responses, send what is due,
    /// arm its message timer. With `--ws` the WebSocket reads ([`Self::on_ws`]); a timer
    /// only sends (`Recv::No`).
    pub(super) fn on_traffic(&mut self, cx: &mut GCx, key: Key, read: traffic::Recv) {
        if self.ws.is_some() {
            return self.ws_pump(cx, key);
        }
        let (Some(t), Some(GoonEntry::Dial(d))) = (self.traffic.as_mut(), cx.table.get_mut(key)) else { return };
        let Some(flow) = d.flow.as_deref_mut() else { return };
        let step = t.step(flow, &mut d.sock, &mut self.scratch, cx.now, read);
        if let traffic::Step::Open { arm: Some(at), .. } = step {
            cx.timers.arm(key, TIMER_MSG, at);
        }
        match step {
            traffic::Step::Open { more: true, .. } => cx.defer(key),
            traffic::Step::Open { .. } => {}
            traffic::Step::Closed => self.close_established(cx, key),
        }
    }

    /// `--ws` with traffic: sends the messages that are due as data frames on an upgraded
    /// connection and arms its message timer.
    fn ws_pump(&mut self, cx: &mut GCx, key: Key) {
        let (Some(t), Some(GoonEntry::Dial(d))) = (self.traffic.as_mut(), cx.table.get_mut(key)) else { return };
        let Dial { sock, ws: Some(c), flow: Some(flow), .. } = d else { return };
        if !c.is_open() {
            return;
        }
        let mut wire = WsWire { client: c, sock };
        let r = t.pump(flow, &mut wire, Instant::now().max(cx.now));
        match r {
            Ok((arm, more)) => {
                if let Some(at) = arm {
                    cx.timers.arm(key, TIMER_MSG, at);
                }
                if more {
                    cx.defer(key);
                }
            }
            Err(_) => self.close_established(cx, key),
        }
    }

    /// `--ws`: the transport is ready (the TCP connect, or with `--tls` the handshake): the
    /// upgrade request goes out, with its deadline.
    pub(super) fn ws_begin(&mut self, cx: &mut GCx, key: Key) {
        let (Some(w), Some(GoonEntry::Dial(d))) = (self.ws.as_mut(), cx.table.get_mut(key)) else { return };
        // The clock is read here and at the answer, not the loop's time: an upgrade on loopback
        // often completes within one loop turn.
        let (c, step) = Client::start(&mut d.sock, &w.plan, Instant::now(), &mut w.stats);
        d.ws = Some(Box::new(c));
        cx.timers.arm(key, TIMER_WS, cx.now + w.plan.timeout);
        if step == Step::Close {
            self.close_established(cx, key);
        }
    }

    /// `--ws`: an event on an established connection. With traffic, the payload of the
    /// server's data frames goes to response matching, the schedule starts at the upgrade
    /// (slot 0 is its instant) and what is due is sent.
    /// `edge`: a readable edge on which a short read may end the reads (plain TCP only).
    pub(super) fn on_ws(&mut self, cx: &mut GCx, key: Key, edge: bool) {
        let (Some(w), Some(GoonEntry::Dial(d))) = (self.ws.as_mut(), cx.table.get_mut(key)) else { return };
        let Dial { sock, ws: Some(c), flow, .. } = d else { return };
        let edge = if edge && !sock.is_tls() { Edge::ShortReadEnds } else { Edge::Drain };
        let traffic = &mut self.traffic;
        let now = Instant::now();
        let mut on_data = |b: &[u8]| {
            if let (Some(t), Some(f)) = (traffic.as_mut(), flow.as_deref_mut()) {
                t.on_bytes(f, b, now);
            }
        };
        match c.on_ready(sock, edge, &mut self.scratch, now, &mut w.stats, &mut on_data) {
            Step::Idle => {}
            Step::More => cx.defer(key),
            Step::Upgraded => {
                match w.plan.ping {
                    // Pings keep the connection's phase, as message slots do, so connections
                    // upgraded in one turn do not ping together for the rest of the run; the
                    // first is its phase's first instant after the upgrade (within one interval).
                    Some(p) => {
                        let grid = self.phases.grid(self.ping_order.next(), now, p);
                        c.set_ping_grid(grid);
                        cx.timers.arm(key, TIMER_WS, after(grid, p, now));
                    }
                    None => cx.timers.cancel(key, TIMER_WS),
                }
                if let Some(t) = self.traffic.as_mut() {
                    *flow = Some(Box::new(t.flow(Instant::now())));
                }
                cx.defer(key);
            }
            Step::Close => return self.close_established(cx, key),
        }
        if self.traffic.is_some() {
            self.ws_pump(cx, key);
        }
    }

    /// `--ws`: the upgrade deadline, or the next ping.
    pub(super) fn on_ws_timer(&mut self, cx: &mut GCx, key: Key) {
        let (Some(w), Some(GoonEntry::Dial(d))) = (self.ws.as_mut(), cx.table.get_mut(key)) else { return };
        let Some(c) = d.ws.as_mut() else { return };
        if c.is_open() && w.plan.ping.is_none() {
            return;
        }
        let now = Instant::now();
        match (c.on_timer(&mut d.sock, now, &mut w.stats), w.plan.ping) {
            (Step::Close, _) => self.close_established(cx, key),
            // The next ping on the connection's grid after now: one step, however late this
            // one fired (missed pings are not sent in a burst).
            (_, Some(p)) => cx.timers.arm(key, TIMER_WS, c.ping_grid().map_or(now + p, |g| after(g, p, now))),
            _ => {}
        }
    }

    /// `--tls`: the TCP connect is done; the handshake begins, with its deadline.
    pub(super) fn tls_begin(&mut self, cx: &mut GCx, key: Key) {
        let (Some(t), Some(GoonEntry::Dial(d))) = (self.tls.as_mut(), cx.table.get_mut(key)) else { return };
        // The clock is read here and at the handshake's end, not taken from the loop's turn
        // time (read once per turn): with a fast peer, such as the built-in sink on another
        // reactor, a handshake can finish within the turn that began it.
        let now = Instant::now();
        d.stage = StateStamp::new(HANDSHAKING, now);
        let deadline = t.begin(&mut d.sock, now);
        cx.timers.arm(key, TIMER_TLS, deadline);
    }

    /// `--tls`: drives the handshake; true once it is done (or without TLS), false while it is
    /// pending or after it failed (the connection is then closed).
    pub(super) fn tls_ready(&mut self, cx: &mut GCx, key: Key) -> bool {
        let (Some(t), Some(GoonEntry::Dial(d))) = (self.tls.as_mut(), cx.table.get_mut(key)) else { return true };
        if !d.handshaking() {
            return true;
        }
        let since = d.since();
        match t.step(&mut d.sock, since, Instant::now()) {
            TlsStep::Wait => false,
            TlsStep::Ready => {
                d.stage = d.stage.with_state(HELD);
                cx.timers.cancel(key, TIMER_TLS);
                // Traffic over TLS: slot 0 is the handshake's end (with --ws, the upgrade's).
                if let (Some(t), None) = (self.traffic.as_mut(), self.ws.as_ref()) {
                    d.flow = Some(Box::new(t.flow(Instant::now())));
                }
                // wss: the upgrade goes out inside the session.
                self.ws_begin(cx, key);
                true
            }
            TlsStep::Failed => {
                d.stage = d.stage.with_state(HELD);
                self.close_established(cx, key);
                false
            }
        }
    }

    /// `--tls`: the handshake's deadline passed.
    pub(super) fn tls_timeout(&mut self, cx: &mut GCx, key: Key) {
        let (Some(t), Some(GoonEntry::Dial(d))) = (self.tls.as_mut(), cx.table.get_mut(key)) else { return };
        if d.handshaking() {
            d.stage = d.stage.with_state(HELD);
            t.fail(crate::tls::TlsCause::HandshakeTimeout);
            self.close_established(cx, key);
        }
    }
}

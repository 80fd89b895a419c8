//! The payload streams' slow read: `read_size` bytes, then `read_delay`, in raw TCP and under
//! tungstenite (WebSocket).

use std::io::{self, Read};
use std::time::Instant;

use super::{Conn, ServerStats, State, Step, READ_BUDGET, TIMER_READ};
use crate::backpressure::config::ServerConfig;
use crate::backpressure::ws::{Closed, Flush, Recv};
use crate::engine::{Key, Ready, Timers};

/// Where a connection's slow read runs: its key, the reactor's timers and loop time, the
/// reactor's index (for log lines).
pub(super) struct At<'a> {
    pub(super) key: Key,
    pub(super) timers: &'a mut Timers,
    pub(super) now: Instant,
    pub(super) id: usize,
}

/// The `read_delay` since the last read has not passed (`next_read` is ahead): make sure the
/// connection's read timer fires by then and wait for it.
fn must_wait(next_read: Instant, at: &mut At) -> bool {
    if at.now >= next_read {
        return false;
    }
    at.timers.arm_earlier(at.key, TIMER_READ, next_read);
    true
}

/// Raw TCP: read `read_size`, then wait `read_delay`.
pub(super) fn read_tcp(c: &mut Conn, at: &mut At, cfg: &ServerConfig, scratch: &mut [u8]) -> Step {
    let State::Tcp(sock) = &mut c.state else { return Step::Close };
    let mut budget = READ_BUDGET;
    loop {
        if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            return Step::Idle;
        }
        if must_wait(c.next_read, at) {
            return Step::Idle;
        }
        if budget == 0 {
            return Step::More;
        }
        match sock.read(&mut scratch[..cfg.read_size]) {
            Ok(0) => return Step::Close,
            Ok(n) => {
                c.tcp_read += n as u64;
                budget = budget.saturating_sub(n);
                if !cfg.read_delay.is_zero() {
                    c.next_read = at.now + cfg.read_delay;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.read_drained();
                return Step::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
}

/// WebSocket payload stream: the same pacing, enforced under tungstenite by `Metered`.
pub(super) fn read_ws(c: &mut Conn, at: &mut At, cfg: &ServerConfig, stats: &mut ServerStats) -> Step {
    let State::Ws(ws) = &mut c.state else { return Step::Close };
    if c.rd.event.contains(Ready::WRITABLE) {
        match ws.flush() {
            Flush::Done => {}
            Flush::NotNow => c.rd.event.remove(Ready::WRITABLE),
            Flush::Closed(_) => return Step::Close,
        }
    }
    if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
        return Step::Idle;
    }
    if must_wait(c.next_read, at) {
        return Step::Idle;
    }
    let budget = if cfg.read_delay.is_zero() { READ_BUDGET } else { cfg.read_size };
    ws.get_mut().refill(budget);
    loop {
        match ws.recv() {
            Recv::Message(_) => {}
            Recv::NotNow => break,
            Recv::Closed(why) => {
                if let Closed::ByUs { code } = why {
                    stats.ws_violations += u64::from(code != 1000);
                    log::debug!("r{} conn {}: closed with {code}", at.id, c.id);
                }
                return Step::Close;
            }
        }
    }
    if ws.get_ref().budget_exhausted() {
        if cfg.read_delay.is_zero() {
            return Step::More;
        }
        c.next_read = at.now + cfg.read_delay;
        // An earlier deadline already armed fires first and re-arms at `next_read`.
        at.timers.arm_earlier(at.key, TIMER_READ, c.next_read);
    } else {
        c.rd.read_drained();
    }
    Step::Idle
}

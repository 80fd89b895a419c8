//! The paced payload writes: `rate` payloads a second (or full speed) per connection, within a
//! write budget per wake-up, and the first EAGAIN each connection meets.

use std::io;
use std::time::Duration;

use tungstenite::Message;

use super::connect::speaks_http;
use super::reactor::CCx;
use super::{conn, ClientReactor, Io, Msg, Phase, Step, RECV_BATCH, TIMER_PACE, WRITE_BUDGET};
use crate::backpressure::ws::{Flush, Recv, SendStatus};
use crate::engine::Ready;

impl ClientReactor {
    fn note_eagain(&mut self, cx: &mut CCx, i: usize) {
        let Some(c) = conn(cx.table, &self.keys, i) else { return };
        c.eagain += 1;
        if c.eagain == 1 {
            let bytes = c.written();
            let total = cx.table.iter().map(|(_, c)| c.written()).sum();
            let _ = self.out.try_send(Msg::FirstEagain { conn: i, bytes, total });
            self.any_eagain = true;
        }
    }

    /// Paced payload writes (Open), or completing the last payload (Flushing).
    pub(super) fn write(&mut self, cx: &mut CCx, i: usize) -> Step {
        let rate = self.cfg.rate;
        let total = self.cfg.total;
        let budget = WRITE_BUDGET;
        // Server frames (Close, Ping) and resets.
        let Some(c) = conn(cx.table, &self.keys, i) else { return Step::Idle };
        let mut more_frames = false;
        if let Io::Ws(ws) = &mut c.io {
            if c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
                // Frames past the batch wait in tungstenite's buffer, where no edge announces
                // them: come back to them after the others had their turn.
                more_frames = true;
                for _ in 0..RECV_BATCH {
                    match ws.recv() {
                        Recv::Message(_) => {}
                        Recv::NotNow => {
                            c.rd.read_drained();
                            more_frames = false;
                            break;
                        }
                        Recv::Closed(why) => {
                            self.resets += u64::from(why.by_peer());
                            let sampled = c.sampled;
                            self.lost(sampled, i, why.describe("this client", "the server"));
                            self.end_conn(cx, i);
                            return Step::Idle;
                        }
                    }
                }
            }
        }
        if let Io::Tcp(s) = &c.io {
            if !c.peeked && c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
                c.peeked = true;
                if speaks_http(s) {
                    self.fail(cx, format!(
                        "{}: the server answered with HTTP: it speaks WebSocket (or HTTP), not raw TCP; use --protocol websocket",
                        self.target
                    ));
                    return Step::Idle;
                }
            }
        }
        let step = self.write_payloads(cx, i, budget, rate, total);
        let done = conn(cx.table, &self.keys, i).is_none_or(|c| c.phase == Phase::Done);
        match step {
            Step::Idle if more_frames && !done => Step::More,
            step => step,
        }
    }

    fn write_payloads(&mut self, cx: &mut CCx, i: usize, mut budget: usize, rate: u64, total: u64) -> Step {
        let Some(&key) = self.keys.get(i) else { return Step::Idle };
        loop {
            let Some(c) = cx.table.get_mut(key) else { return Step::Idle };
            let partial = c.off > 0 || c.ws_pending;
            if !partial {
                // Between payloads: may we start another?
                if c.phase == Phase::Flushing || (total > 0 && c.payloads >= total) {
                    self.finish(cx, i);
                    return Step::Idle;
                }
                if rate > 0 {
                    let due = (cx.now.saturating_duration_since(c.opened).as_secs_f64() * rate as f64) as u64 + 1;
                    if c.payloads >= due {
                        let at = c.opened + Duration::from_secs_f64(c.payloads as f64 / rate as f64);
                        cx.timers.arm_earlier(key, TIMER_PACE, at.max(cx.now));
                        return Step::Idle;
                    }
                }
                if budget == 0 {
                    return Step::More;
                }
            }
            if !c.rd.event.intersects(Ready::WRITABLE | Ready::ERROR) {
                return Step::Idle;
            }
            let blocked = match &mut c.io {
                Io::Tcp(s) => match io::Write::write(s, &self.payload[c.off..]) {
                    Ok(n) => {
                        c.tcp_written += n as u64;
                        c.off += n;
                        budget = budget.saturating_sub(n);
                        if c.off == self.payload.len() {
                            c.off = 0;
                            c.payloads += 1;
                        }
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                    Err(e) => {
                        if !c.peeked && speaks_http(s) {
                            self.fail(cx, format!(
                                "{}: the server answered with HTTP and closed: it speaks WebSocket (or HTTP), not raw TCP; use --protocol websocket",
                                self.target
                            ));
                            return Step::Idle;
                        }
                        self.resets += 1;
                        let sampled = c.sampled;
                        self.lost(sampled, i, format!("the server ended the connection (write: {e})"));
                        self.end_conn(cx, i);
                        return Step::Idle;
                    }
                },
                Io::Ws(ws) => {
                    let status = if c.ws_pending {
                        match ws.flush() {
                            Flush::Done => SendStatus::Sent,
                            Flush::NotNow => SendStatus::Queued,
                            Flush::Closed(c) => SendStatus::Closed(c),
                        }
                    } else {
                        budget = budget.saturating_sub(self.payload.len());
                        ws.send(Message::Binary(self.payload.clone()))
                    };
                    match status {
                        SendStatus::Sent => {
                            c.ws_pending = false;
                            c.payloads += 1;
                            false
                        }
                        SendStatus::Queued | SendStatus::Full(_) => {
                            c.ws_pending = true;
                            true
                        }
                        SendStatus::Closed(why) => {
                            self.resets += u64::from(why.by_peer());
                            let sampled = c.sampled;
                            self.lost(sampled, i, why.describe("this client", "the server"));
                            self.end_conn(cx, i);
                            return Step::Idle;
                        }
                    }
                }
                Io::None => return Step::Idle,
            };
            if blocked {
                c.rd.event.remove(Ready::WRITABLE);
                self.note_eagain(cx, i);
                return Step::Idle;
            }
        }
    }
}

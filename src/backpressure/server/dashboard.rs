//! A dashboard's `/samples` stream: its bounded queue of JSON messages written as WebSocket frames.

use std::collections::VecDeque;
use std::sync::Arc;

use mio::net::TcpStream;
use tungstenite::Message;

use super::{Conn, State, Step, RECV_BATCH};
use crate::backpressure::ws::{Flush, Recv, SendStatus, WsConn};
use crate::engine::{Readiness, Ready};

pub(super) fn dashboard(c: &mut Conn) -> Step {
    let State::Dashboard { ws, queue } = &mut c.state else { return Step::Close };
    let mut more = false;
    if c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
        // Dashboards send nothing we need; read to notice Close frames and pings. Frames past
        // the batch wait in tungstenite's buffer, where no edge will announce them: defer.
        more = true;
        for _ in 0..RECV_BATCH {
            match ws.recv() {
                Recv::Message(_) => {}
                Recv::NotNow => {
                    c.rd.read_drained();
                    more = false;
                    break;
                }
                Recv::Closed(_) => return Step::Close,
            }
        }
    }
    match pump_dashboard(ws, queue, &mut c.rd) {
        Step::Idle if more => Step::More,
        step => step,
    }
}

pub(super) fn pump_dashboard(ws: &mut WsConn<TcpStream>, queue: &mut VecDeque<Arc<str>>, rd: &mut Readiness) -> Step {
    match ws.flush() {
        Flush::Done => {}
        Flush::NotNow => {
            rd.event.remove(Ready::WRITABLE);
            return Step::Idle;
        }
        Flush::Closed(_) => return Step::Close,
    }
    while let Some(m) = queue.pop_front() {
        match ws.send(Message::Text(m.to_string())) {
            SendStatus::Sent => {}
            SendStatus::Queued => {
                rd.event.remove(Ready::WRITABLE);
                return Step::Idle;
            }
            SendStatus::Full(_) => {
                queue.push_front(m);
                break;
            }
            SendStatus::Closed(_) => return Step::Close,
        }
    }
    // The frames gathered in the write buffer: one write.
    match ws.flush() {
        Flush::Done => {}
        Flush::NotNow => rd.event.remove(Ready::WRITABLE),
        Flush::Closed(_) => return Step::Close,
    }
    Step::Idle
}

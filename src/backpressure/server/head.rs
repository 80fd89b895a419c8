//! The HTTP request head of a WebSocket-mode connection, and what it turns into: an upgrade to a
//! payload or dashboard stream, a page, or an error response.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use super::{Conn, ServerStats, State, Step, DASHBOARD_WRITE_BUFFER};
use crate::backpressure::config::ServerConfig;
use crate::backpressure::http::{self, HeadParse, Route};
use crate::backpressure::web;
use crate::backpressure::ws::{Metered, WsConn, WsLimits};
use crate::engine::buf::Ring;
use crate::engine::pool::BufPool;
use crate::engine::Ready;

/// Reads the request head; turns the connection into a response, a payload stream or a
/// dashboard stream, and gives the head's ring back to `heads`. `Step::More` means "the state
/// changed: serve it now".
pub(super) fn read_head(
    c: &mut Conn,
    cfg: &ServerConfig,
    limits: WsLimits,
    stats: &mut ServerStats,
    heads: &mut BufPool<Ring>,
) -> Step {
    let State::Head { sock, buf } = &mut c.state else { return Step::Close };
    let parsed = loop {
        if !c.rd.event.intersects(Ready::READABLE | Ready::HUP | Ready::ERROR) {
            return Step::Idle;
        }
        if buf.is_full() {
            break http::parse_head(buf.data(), cfg.http_head_max);
        }
        // The ring is never consumed from while it holds a head: its data is one slice from 0.
        match buf.read_from(sock) {
            Ok(0) => return Step::Close,
            Ok(_) => match http::parse_head(buf.data(), cfg.http_head_max) {
                HeadParse::Partial => {}
                done => break done,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.read_drained();
                return Step::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    };
    let State::Head { sock, buf } = std::mem::replace(&mut c.state, State::Gone) else {
        return Step::Close;
    };
    // Bytes sent with the head (the first frames) move to the stream; the ring goes back.
    let leftover = match parsed {
        HeadParse::Complete { head_len, .. } => buf.data()[head_len..].to_vec(),
        _ => Vec::new(),
    };
    heads.give(buf);
    match parsed {
        HeadParse::Partial => {
            // A full buffer that is still partial: parse_head reports it as too large.
            stats.http_errors += 1;
            c.state = State::Respond { sock, out: http::HttpError::HeadTooLarge.response(), off: 0 };
        }
        HeadParse::Error(e) => {
            stats.http_errors += 1;
            c.state = State::Respond { sock, out: e.response(), off: 0 };
        }
        HeadParse::Complete { route, .. } => {
            // Bytes sent with the head (the first frames) are in user space now: no edge will
            // announce them, so the next visit reads as if the socket had signalled.
            if !leftover.is_empty() {
                c.rd.event |= Ready::READABLE;
            }
            match route {
                Route::WsUpgrade { ref key } | Route::Samples { ref key }
                    if write_small(&sock, &crate::http::upgrade_response(key)) =>
                {
                    let dashboard = matches!(route, Route::Samples { .. });
                    if dashboard {
                        c.state = State::Dashboard {
                            ws: Box::new(WsConn::server_buffered(sock, leftover, limits, DASHBOARD_WRITE_BUFFER)),
                            queue: VecDeque::with_capacity(64),
                        };
                    } else {
                        c.state = State::Ws(Box::new(WsConn::server(Metered::new(sock), leftover, limits)));
                    }
                }
                Route::WsUpgrade { .. } | Route::Samples { .. } => return Step::Close,
                other => {
                    if matches!(other, Route::NotFound | Route::BadUpgrade) {
                        stats.http_errors += 1;
                    }
                    let out = web::respond(&other).unwrap_or_default();
                    c.state = State::Respond { sock, out, off: 0 };
                }
            }
        }
    }
    Step::More
}

/// Writes a short response on a fresh socket; false if the socket did not take all of it.
fn write_small(mut sock: &TcpStream, data: &[u8]) -> bool {
    matches!(sock.write(data), Ok(n) if n == data.len())
}

pub(super) fn respond(c: &mut Conn) -> Step {
    let State::Respond { sock, out, off } = &mut c.state else { return Step::Close };
    while *off < out.len() {
        if !c.rd.event.intersects(Ready::WRITABLE | Ready::ERROR) {
            return Step::Idle;
        }
        match sock.write(&out[*off..]) {
            Ok(0) => return Step::Close,
            Ok(n) => *off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.rd.event.remove(Ready::WRITABLE);
                return Step::Idle;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
    let _ = sock.shutdown(Shutdown::Write);
    Step::Close
}

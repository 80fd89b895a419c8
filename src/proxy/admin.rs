//! The proxy's admin endpoint: `GET /metrics` served by one small mio reactor on the admin
//! thread, so that no client, however slow, can keep a scraper waiting.
//!
//! Why a reactor and not a blocking accept loop: a loop that serves one connection at a time
//! can be held by a client that sends a byte just often enough to beat any per-read timeout,
//! and a few hundred such clients in the backlog starve every scrape. Here every connection is
//! non-blocking and served as its bytes arrive, and each is bounded in time, size and number:
//!
//! - the whole request head must arrive within [`http::HEAD_DEADLINE`] of the accept (a
//!   trickle of bytes does not extend it); a late one gets a 408 and is closed;
//! - the head is read into at most [`http::HEAD_LIMIT`] bytes; a longer one gets a 431;
//! - the response is built once, is the only write buffer the connection has, and must be
//!   taken by the client within [`ADMIN_WRITE_TIMEOUT`];
//! - at most [`ADMIN_MAX_CONNECTIONS`] connections are open; when a new one arrives at the
//!   bound, the oldest one still sending its head is closed (else the oldest one of all), so
//!   a flood of idle or slow clients cannot lock a scraper out: it only shortens their wait;
//! - every response says `Connection: close`, and the connection closes once it is written.
//!
//! The request parsing is sans-io ([`crate::http`], routed by [`parse_request`]); the reactor
//! only moves bytes.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::TcpStream;

use crate::engine::accept::{Acceptor, Admission};
use crate::engine::{Cx, Entry, Handle, Handler, Key, Kind, Ready};
use crate::http::{self, HeadError, Parse, Version, HEAD_DEADLINE, HEAD_LIMIT};

/// Deadline for the client to take the whole response, counted from the complete head.
pub const ADMIN_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections open at once; the oldest is closed to make room for a new one.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;
/// The reactor's tick: it has no periodic work, this only caps the poll timeout.
const ADMIN_TICK: Duration = Duration::from_secs(1);
/// Timer kind of a connection's deadline.
const T_DEADLINE: Kind = Kind::new(0);
/// Between two warnings that the connection bound was reached.
const EVICT_LOG_EVERY: Duration = Duration::from_secs(5);

/// What a request head asks for, as far as it has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Not complete yet: read more (within the size bound and the deadline).
    Partial,
    /// `GET /metrics` (any query string).
    Metrics,
    /// `GET` of any other path.
    NotFound,
    /// A method other than GET.
    MethodNotAllowed,
    /// Not HTTP/1.x, or more than [`http::MAX_HEADERS`] headers.
    Malformed,
    /// `max` bytes and still no end of head.
    TooLarge,
}

/// Looks at the bytes of a request head received so far (at most `max` of them count).
pub fn parse_request(buf: &[u8], max: usize) -> Request {
    match http::parse_head(buf, max) {
        Parse::Partial => Request::Partial,
        Parse::Error(HeadError::TooLarge) => Request::TooLarge,
        // Too many headers is a bad request here, not a 431: a scraper sends a handful.
        Parse::Error(HeadError::Malformed | HeadError::TooManyHeaders) => Request::Malformed,
        Parse::Complete(head) if head.method != "GET" => Request::MethodNotAllowed,
        // The query string is ignored; anything else after the path is another path.
        Parse::Complete(head) if head.target.split('?').next() == Some("/metrics") => Request::Metrics,
        Parse::Complete(_) => Request::NotFound,
    }
}

/// A complete `Connection: close` response in the Prometheus text format.
pub fn response(status: u16, body: &str) -> Vec<u8> {
    http::response(Version::Http10, status, "text/plain; version=0.0.4", &[], body.as_bytes())
}

/// The response to a complete head (`metrics` is the latest rendered text); `None` while
/// partial.
fn answer(req: Request, metrics: &Mutex<String>) -> Option<Vec<u8>> {
    Some(match req {
        Request::Partial => return None,
        Request::Metrics => {
            let body = metrics.lock().map(|t| t.clone()).unwrap_or_default();
            response(200, &body)
        }
        Request::NotFound => response(404, "try /metrics\n"),
        Request::MethodNotAllowed => response(405, "only GET\n"),
        Request::Malformed => response(400, "bad request\n"),
        Request::TooLarge => response(431, "request too large\n"),
    })
}

enum Phase {
    /// Reading the head; never longer than [`HEAD_LIMIT`].
    Head(Vec<u8>),
    /// Writing the response from `off`.
    Write { out: Vec<u8>, off: usize },
}

pub struct Conn {
    sock: TcpStream,
    /// Accept order (loop time is shared by a whole accept batch; this is not).
    seq: u64,
    deadline: Instant,
    phase: Phase,
}

impl Entry for Conn {
    fn socket(&mut self, i: usize) -> Option<&mut dyn Source> {
        (i == 0).then_some(&mut self.sock as &mut dyn Source)
    }
}

type ACx<'a> = Cx<'a, Conn>;

/// What a connection needs after its bytes were moved.
enum Step {
    Wait,
    Close,
}

/// The admin reactor's state.
pub struct Admin {
    acceptor: Acceptor,
    metrics: Arc<Mutex<String>>,
    /// Every head read lands here first; a connection keeps only what it received.
    scratch: Box<[u8]>,
    /// Connections closed to make room, and cut by a deadline (logged at debug).
    evicted: u64,
    timed_out: u64,
    last_evict_log: Option<Instant>,
    /// Connections accepted so far (the next one's `seq`).
    accepted: u64,
}

impl Admin {
    /// `listener` is the bound admin socket; `metrics` the text the coordinator renders.
    pub fn new(listener: TcpListener, metrics: Arc<Mutex<String>>) -> io::Result<Admin> {
        listener.set_nonblocking(true)?;
        Ok(Admin {
            // The admin bounds its connections itself (evicting the oldest at the bound), so its
            // admission never refuses.
            acceptor: Acceptor::new(listener, "the admin listener", Admission::new(usize::MAX, 1, None)),
            metrics,
            scratch: vec![0u8; HEAD_LIMIT].into_boxed_slice(),
            evicted: 0,
            timed_out: 0,
            last_evict_log: None,
            accepted: 0,
        })
    }

    fn accept(&mut self, cx: &mut ACx) {
        let mut taken = 0;
        while let Some((sock, _peer, _slot)) = self.acceptor.next(cx, &mut taken) {
            if cx.table.is_full() {
                self.evict_oldest(cx);
            }
            let deadline = cx.now + HEAD_DEADLINE;
            let conn = Conn { sock, seq: self.accepted, deadline, phase: Phase::Head(Vec::new()) };
            self.accepted += 1;
            // Full only if eviction found nothing, which cannot be at the bound: drop it.
            match cx.adopt(conn) {
                Ok(key) => {
                    cx.timers.arm(key, T_DEADLINE, deadline);
                    // The request may be in the socket already: look now rather than next turn.
                    self.drive(cx, key);
                }
                Err((_, crate::engine::Refused::Register(e))) => log::debug!("admin: register: {e}"),
                Err((_, crate::engine::Refused::Full)) => {}
            }
        }
    }

    /// At the connection bound: closes the oldest connection still sending its head (the
    /// slowest, since a scraper sends its head at once), else the oldest of all.
    fn evict_oldest(&mut self, cx: &mut ACx) {
        let mut oldest: Option<((bool, u64), Key)> = None;
        for (k, c) in cx.table.iter() {
            let rank = (!matches!(c.phase, Phase::Head(_)), c.seq);
            if oldest.is_none_or(|(o, _)| rank < o) {
                oldest = Some((rank, k));
            }
        }
        let Some((_, key)) = oldest else { return };
        cx.close(key);
        self.evicted += 1;
        if self.last_evict_log.is_none_or(|t| cx.now.duration_since(t) >= EVICT_LOG_EVERY) {
            self.last_evict_log = Some(cx.now);
            log::warn!(
                "admin: {ADMIN_MAX_CONNECTIONS} connections open; closing the oldest to take a new one ({} so far)",
                self.evicted
            );
        }
    }

    /// Moves what can be moved for `key`: reads the head, then writes the response.
    fn drive(&mut self, cx: &mut ACx, key: Key) {
        let Some(c) = cx.table.get_mut(key) else { return };
        let step = match &mut c.phase {
            Phase::Head(buf) => match read_head(&mut c.sock, buf, &mut self.scratch) {
                Err(()) => Step::Close,
                Ok(()) => match answer(parse_request(buf, HEAD_LIMIT), &self.metrics) {
                    None => Step::Wait,
                    Some(out) => {
                        c.phase = Phase::Write { out, off: 0 };
                        c.deadline = cx.now + ADMIN_WRITE_TIMEOUT;
                        let deadline = c.deadline;
                        let step = write_out(c);
                        if matches!(step, Step::Wait) {
                            cx.timers.arm(key, T_DEADLINE, deadline);
                        }
                        step
                    }
                },
            },
            Phase::Write { .. } => write_out(c),
        };
        if let Step::Close = step {
            cx.close(key);
        }
    }

    fn on_deadline(&mut self, cx: &mut ACx, key: Key) {
        let Some(c) = cx.table.get_mut(key) else { return };
        if cx.now < c.deadline {
            return; // not due yet (the timer is re-armed with each phase's deadline)
        }
        if let Phase::Head(_) = c.phase {
            // Bytes the client sent and we did not read would turn our close into a reset, which
            // can destroy the 408 before the client reads it: drain them first (bounded).
            let mut sink = [0u8; 512];
            for _ in 0..16 {
                if !matches!(c.sock.read(&mut sink), Ok(n) if n > 0) {
                    break;
                }
            }
            // One non-blocking attempt: the socket's buffer is empty, so it fits.
            let _ = c.sock.write(&response(408, "request timeout\n"));
        }
        self.timed_out += 1;
        log::debug!("admin: connection cut by its deadline ({} so far)", self.timed_out);
        cx.close(key);
    }
}

/// Reads what the socket has into `buf`, up to [`HEAD_LIMIT`] bytes in all. `Err` when
/// the peer closed or the socket failed before a response was due.
fn read_head(sock: &mut TcpStream, buf: &mut Vec<u8>, scratch: &mut [u8]) -> Result<(), ()> {
    loop {
        let room = HEAD_LIMIT.saturating_sub(buf.len()).min(scratch.len());
        if room == 0 {
            return Ok(()); // full: the parse answers 431 (or the head is complete)
        }
        match sock.read(&mut scratch[..room]) {
            Ok(0) => return Err(()),
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
}

/// Writes the rest of the response; `Close` once it is all written or the socket failed.
fn write_out(c: &mut Conn) -> Step {
    let Phase::Write { out, off } = &mut c.phase else { return Step::Wait };
    while *off < out.len() {
        match c.sock.write(&out[*off..]) {
            Ok(0) => return Step::Close,
            Ok(n) => *off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
    Step::Close
}

impl Handler for Admin {
    type Cmd = ();
    type Entry = Conn;

    fn on_start(&mut self, cx: &mut ACx) -> io::Result<()> {
        cx.table.set_capacity(ADMIN_MAX_CONNECTIONS, 0);
        self.acceptor.register(cx)?;
        // Clients may already wait in the backlog: look once without waiting for an edge.
        self.acceptor.wake(cx);
        Ok(())
    }

    fn on_ready(&mut self, cx: &mut ACx, key: Key, _sock: usize, _ready: Ready) {
        self.drive(cx, key);
    }

    fn on_handle(&mut self, cx: &mut ACx, _h: Handle, ready: Ready) {
        self.acceptor.note_ready(ready);
        self.accept(cx);
    }

    fn on_timer(&mut self, cx: &mut ACx, key: Key, kind: Kind) {
        if kind == T_DEADLINE {
            self.on_deadline(cx, key);
        }
    }

    fn on_handle_timer(&mut self, cx: &mut ACx, _h: Handle, kind: Kind) {
        if self.acceptor.on_timer(kind) {
            self.accept(cx);
        }
    }

    fn on_command(&mut self, _: &mut ACx, _: ()) {}

    fn on_tick(&mut self, _: &mut ACx) {}

    fn finished(&self) -> bool {
        false
    }

    fn on_exit(&mut self, cx: &mut ACx) {
        for k in cx.table.keys() {
            cx.close(k);
        }
    }
}

/// Serves the admin endpoint on the calling thread, for as long as the process runs.
pub fn serve(listener: TcpListener, metrics: Arc<Mutex<String>>) -> io::Result<()> {
    crate::engine::run_here(0, Admin::new(listener, metrics)?, ADMIN_TICK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::MAX_HEADERS;

    const MAX: usize = 1024;

    #[test]
    fn requests() {
        let cases: &[(&[u8], Request)] = &[
            (b"GET /metrics HTTP/1.0\r\n\r\n", Request::Metrics),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Request::Metrics),
            (b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", Request::Metrics),
            (b"GET / HTTP/1.1\r\n\r\n", Request::NotFound),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Request::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Request::MethodNotAllowed),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Request::MethodNotAllowed),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Request::Malformed),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", Request::Malformed),
            (b"", Request::Partial),
            (b"GET /metr", Request::Partial),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", Request::Partial),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_request(bytes, MAX), *want, "{:?}", String::from_utf8_lossy(bytes));
        }
        let too_many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET /metrics HTTP/1.1\r\n{too_many}\r\n");
        assert_eq!(parse_request(req.as_bytes(), 4 * MAX), Request::Malformed);
    }

    #[test]
    fn a_head_that_does_not_end_within_the_bound_is_too_large() {
        let mut req = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        req.resize(MAX - 1, b'a');
        assert_eq!(parse_request(&req, MAX), Request::Partial);
        req.push(b'a');
        assert_eq!(parse_request(&req, MAX), Request::TooLarge);
        req.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&req, MAX), Request::TooLarge, "an end past the bound is too late");
        let mut exact = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        exact.resize(MAX - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&exact, MAX), Request::Metrics);
    }

    #[test]
    fn every_prefix_of_a_scrape_is_partial() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: localhost:9100\r\nAccept: */*\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(parse_request(&req[..cut], MAX), Request::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn responses_are_http_1_0_and_close() {
        let m = Mutex::new("netforge_proxy_accept_pauses_total 0\n".to_string());
        let ok = String::from_utf8(answer(Request::Metrics, &m).unwrap()).unwrap();
        assert_eq!(
            ok,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 37\r\nConnection: close\r\n\r\nnetforge_proxy_accept_pauses_total 0\n"
        );
        assert!(answer(Request::Partial, &m).is_none());
        for (req, line, body) in [
            (Request::NotFound, "HTTP/1.0 404 Not Found\r\n", "try /metrics\n"),
            (Request::MethodNotAllowed, "HTTP/1.0 405 Method Not Allowed\r\n", "only GET\n"),
            (Request::Malformed, "HTTP/1.0 400 Bad Request\r\n", "bad request\n"),
            (Request::TooLarge, "HTTP/1.0 431 Request Header Fields Too Large\r\n", "request too large\n"),
        ] {
            let r = String::from_utf8(answer(req, &m).unwrap()).unwrap();
            assert!(r.starts_with(line) && r.ends_with(&format!("\r\n\r\n{body}")), "{r}");
            assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
        }
    }
}

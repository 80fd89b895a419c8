//! WebSocket framing for the lab: tungstenite over a non-blocking stream, after the HTTP upgrade
//! was done by [`super::http`] (server) or by [`ClientHandshake`] (client).
//!
//! tungstenite is already resumable on `WouldBlock`; what this module adds is the mapping of its
//! many error cases onto the few things an event loop must decide:
//!
//! | tungstenite says                     | [`WsConn`] returns                         | the reactor does                 |
//! |--------------------------------------|--------------------------------------------|----------------------------------|
//! | `Io(WouldBlock)` on read             | `Recv::NotNow`                             | wait for READABLE                |
//! | `Io(WouldBlock)` on write            | `SendStatus::Queued` / `Flush::NotNow`     | flush on WRITABLE                |
//! | `WriteBufferFull(msg)`               | `SendStatus::Full(msg)`                    | stop producing, flush, retry msg |
//! | `Capacity` (message/frame too big)   | `Closed::ByUs { code: 1009 }`              | drain briefly, then drop         |
//! | `Protocol` / `Utf8` / attack         | `Closed::ByUs { code: 1002 / 1007 }`       | drain briefly, then drop         |
//! | a Close frame                        | `Closed::ByPeer { code }`                  | flush once, then drop            |
//! | `ConnectionClosed` / `AlreadyClosed` | `Closed::ByPeer` / `Closed::ByUs`          | drop                             |
//! | EOF or RST without a close handshake | `Closed::Reset`                            | drop                             |
//!
//! Memory is bounded: tungstenite 0.24 reads in fixed 4 KiB chunks (it has no
//! `read_buffer_size` knob) and keeps at most one frame (`max_frame_size`) plus one message being
//! reassembled (`max_message_size`); [`WsLimits`] sets a real `max_write_buffer_size` (the
//! default is unlimited) and `write_buffer_size = 0`, so a message is handed to the socket at
//! once and the kernel's send buffer, not ours, is where backpressure shows.
//!
//! [`Metered`] wraps the stream to count bytes and to give the server a read *budget*: the lab
//! server reads `read_size` bytes per `read_delay` even in WebSocket mode.

use std::io::{self, Read, Write};

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Largest WebSocket frame header (2 + 8 length + 4 mask bytes).
pub const MAX_FRAME_HEADER: usize = 14;
/// Largest handshake response head the client accepts.
pub const HANDSHAKE_RESPONSE_MAX: usize = 8192;
/// Largest control frame (Close, Ping, Pong): 2 header bytes, 125 payload bytes, 4 mask bytes.
pub const MAX_CONTROL_FRAME: usize = 2 + 125 + 4;
/// Close code for a message or frame over our limits.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a protocol violation.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code for a text message that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Retries of a read or write interrupted by a signal before giving up for this wake-up.
const INTERRUPTED_RETRIES: usize = 4;

/// Size limits of one WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest incoming message (after reassembling fragments).
    pub max_message_size: usize,
    /// Largest incoming frame payload.
    pub max_frame_size: usize,
    /// Most bytes of outgoing frames held in user space while the socket is full; a message
    /// that does not fit is refused with [`SendStatus::Full`].
    pub max_write_buffer_size: usize,
}

impl WsLimits {
    /// Limits for a peer that sends messages of up to `payload` bytes and receives small ones:
    /// room for exactly one outgoing frame in user space.
    pub fn for_payload(payload: usize, max_incoming: usize) -> WsLimits {
        WsLimits {
            max_message_size: max_incoming,
            max_frame_size: max_incoming,
            max_write_buffer_size: payload + MAX_FRAME_HEADER,
        }
    }

    /// The tungstenite configuration these limits stand for.
    pub fn config(&self) -> WebSocketConfig {
        WebSocketConfig {
            // Hand every message to the socket at once: backpressure is measured in the kernel.
            write_buffer_size: 0,
            // tungstenite panics unless max_write_buffer_size > write_buffer_size. Room for one
            // control frame on top: the reply to a peer's Close (or Ping) must fit behind a
            // partly written message, or tungstenite drops it when the message completes.
            max_write_buffer_size: self.max_write_buffer_size.max(1) + MAX_CONTROL_FRAME,
            max_message_size: Some(self.max_message_size),
            max_frame_size: Some(self.max_frame_size),
            accept_unmasked_frames: false,
            ..WebSocketConfig::default()
        }
    }
}

/// How a connection ended. `Copy`, so it can be stored and counted without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The peer started the close handshake with this code (`None`: it sent no code).
    ByPeer { code: Option<u16> },
    /// We failed or closed the connection and sent a Close frame with this code.
    ByUs { code: u16 },
    /// The stream ended (EOF or reset) without a close handshake.
    Reset,
    /// Any other transport error.
    Io(io::ErrorKind),
}

impl Closed {
    /// One line for logs and reports, from the point of view of `us` talking to `peer`
    /// (`"the server"`, `"this client"`): who closed, and why.
    pub fn describe(self, us: &str, peer: &str) -> String {
        match self {
            Closed::ByPeer { code: Some(code) } => format!("closed by {peer} (close code {code})"),
            Closed::ByPeer { code: None } => format!("closed by {peer} (no close code)"),
            Closed::ByUs { code: CLOSE_TOO_BIG } => {
                format!(
                    "closed by {us}: {peer} sent a frame or message over the size limit (close code {CLOSE_TOO_BIG})"
                )
            }
            Closed::ByUs { code: CLOSE_PROTOCOL } => {
                format!("closed by {us}: {peer} broke the WebSocket protocol (close code {CLOSE_PROTOCOL})")
            }
            Closed::ByUs { code: CLOSE_INVALID_DATA } => {
                format!("closed by {us}: {peer} sent text that is not UTF-8 (close code {CLOSE_INVALID_DATA})")
            }
            Closed::ByUs { code } => format!("closed by {us} (close code {code})"),
            Closed::Reset => format!("{peer} ended the connection without a close handshake (EOF or reset)"),
            Closed::Io(kind) => format!("connection error: {kind}"),
        }
    }

    /// True when the peer ended the connection (its Close, EOF or reset), false when we did.
    pub fn by_peer(self) -> bool {
        !matches!(self, Closed::ByUs { .. })
    }
}

/// Result of [`WsConn::recv`].
#[derive(Debug)]
pub enum Recv {
    /// A complete message. Ping and Pong are returned too (the Pong reply to a Ping is queued
    /// automatically); callers that only want data ignore them.
    #[cfg_attr(not(test), expect(dead_code, reason = "the lab only counts messages; tests read them"))]
    Message(Message),
    /// Nothing complete yet: wait for the next READABLE edge (or budget refill, see [`Metered`]).
    NotNow,
    /// The connection is over; every later call returns the same value.
    Closed(Closed),
}

/// Result of [`WsConn::send`].
#[derive(Debug)]
pub enum SendStatus {
    /// The whole frame is in the socket's send buffer.
    Sent,
    /// Accepted, but part of it waits in our write buffer: call [`WsConn::flush`] on WRITABLE.
    Queued,
    /// Refused: the write buffer has no room. Stop producing, flush on WRITABLE, then retry
    /// with the returned message.
    #[cfg_attr(not(test), expect(dead_code, reason = "the lab drops a refused message; tests read it"))]
    Full(Message),
    Closed(Closed),
}

/// Result of [`WsConn::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    Done,
    /// The socket is full: flush again on the next WRITABLE edge.
    NotNow,
    Closed(Closed),
}

/// What a tungstenite error means for the event loop.
enum Outcome {
    NotNow,
    Full(Message),
    Closed(Closed),
}

/// A WebSocket over a non-blocking stream, with errors mapped to event-loop decisions.
pub struct WsConn<S: Read + Write> {
    ws: WebSocket<S>,
    closed: Option<Closed>,
    /// Code of the Close frame we sent, once we sent one.
    our_code: Option<u16>,
    /// Our reply to the peer's Close frame is (partly) still in tungstenite's buffer: the
    /// socket was full when it was queued. See [`WsConn::flush_close_reply`].
    reply_unsent: bool,
}

impl<S: Read + Write> WsConn<S> {
    /// The server side, after [`crate::http::upgrade_response`] was written. `leftover` holds
    /// the bytes that followed the request head (frames the client sent right away).
    pub fn server(stream: S, leftover: Vec<u8>, limits: WsLimits) -> Self {
        Self::new(stream, leftover, Role::Server, limits)
    }

    /// The server side of a stream that is not measured (the dashboards' samples): frames are
    /// gathered up to `write_buffer` bytes and written together, on [`WsConn::flush`] or when
    /// the buffer is full, instead of one write per frame.
    pub fn server_buffered(stream: S, leftover: Vec<u8>, limits: WsLimits, write_buffer: usize) -> Self {
        let mut config = limits.config();
        config.write_buffer_size = write_buffer;
        // tungstenite requires room beyond the write buffer.
        config.max_write_buffer_size = config.max_write_buffer_size.max(write_buffer + MAX_CONTROL_FRAME + 1);
        let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(config));
        WsConn { ws, closed: None, our_code: None, reply_unsent: false }
    }

    /// The client side, after [`ClientHandshake`] finished; `leftover` is its `Done` payload.
    pub fn client(stream: S, leftover: Vec<u8>, limits: WsLimits) -> Self {
        Self::new(stream, leftover, Role::Client, limits)
    }

    fn new(stream: S, leftover: Vec<u8>, role: Role, limits: WsLimits) -> Self {
        let ws = WebSocket::from_partially_read(stream, leftover, role, Some(limits.config()));
        WsConn { ws, closed: None, our_code: None, reply_unsent: false }
    }

    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }

    pub fn get_mut(&mut self) -> &mut S {
        self.ws.get_mut()
    }

    /// Reads until one message is complete, the stream would block, or the connection ends.
    pub fn recv(&mut self) -> Recv {
        if let Some(c) = self.closed {
            return Recv::Closed(c);
        }
        let mut retries = 0;
        loop {
            return match self.ws.read() {
                Ok(Message::Close(frame)) => {
                    // Either the peer's own Close (tungstenite queued our reply: send it now if the
                    // socket takes it) or the peer's answer to ours.
                    let flushed = self.ws.flush();
                    self.reply_unsent =
                        matches!(flushed, Err(WsError::Io(ref e)) if e.kind() == io::ErrorKind::WouldBlock);
                    let closed = match self.our_code {
                        Some(code) => Closed::ByUs { code },
                        None => Closed::ByPeer { code: frame.map(|f| u16::from(f.code)) },
                    };
                    Recv::Closed(self.finish(closed))
                }
                Ok(msg) => Recv::Message(msg),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted && retries < INTERRUPTED_RETRIES => {
                    retries += 1;
                    continue;
                }
                Err(e) => match self.on_error(e) {
                    Outcome::NotNow | Outcome::Full(_) => Recv::NotNow,
                    Outcome::Closed(c) => Recv::Closed(c),
                },
            };
        }
    }

    /// Queues `msg` and writes as much as the socket takes.
    pub fn send(&mut self, msg: Message) -> SendStatus {
        if let Some(c) = self.closed {
            return SendStatus::Closed(c);
        }
        match self.ws.write(msg) {
            // write_buffer_size is 0, so Ok means the frame went to the socket in full.
            Ok(()) => SendStatus::Sent,
            Err(e) => match self.on_error(e) {
                Outcome::NotNow => SendStatus::Queued,
                Outcome::Full(m) => SendStatus::Full(m),
                Outcome::Closed(c) => SendStatus::Closed(c),
            },
        }
    }

    /// Writes out whatever is buffered (messages, automatic Pong and Close replies).
    pub fn flush(&mut self) -> Flush {
        if let Some(c) = self.closed {
            return Flush::Closed(c);
        }
        let mut retries = 0;
        loop {
            return match self.ws.flush() {
                Ok(()) => Flush::Done,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted && retries < INTERRUPTED_RETRIES => {
                    retries += 1;
                    continue;
                }
                Err(e) => match self.on_error(e) {
                    Outcome::NotNow | Outcome::Full(_) => Flush::NotNow,
                    Outcome::Closed(c) => Flush::Closed(c),
                },
            };
        }
    }

    /// True when the peer's Close was received but our reply did not fit in the socket yet:
    /// keep the connection and call [`WsConn::flush_close_reply`] on WRITABLE (with a
    /// deadline), so the peer gets its answer instead of a bare FIN or reset.
    pub fn close_reply_unsent(&self) -> bool {
        self.reply_unsent
    }

    /// Writes what is left of our reply to the peer's Close frame. `Done` once it is all in the
    /// socket (or there is none), `NotNow` while the socket is full.
    pub fn flush_close_reply(&mut self) -> Flush {
        if !self.reply_unsent {
            return Flush::Done;
        }
        match self.ws.flush() {
            Err(WsError::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                Flush::NotNow
            }
            // Ok, or tungstenite's "closed, drop the stream now": the reply went out.
            Ok(()) | Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                self.reply_unsent = false;
                Flush::Done
            }
            Err(WsError::Io(e)) => {
                self.reply_unsent = false;
                Flush::Closed(Closed::Io(e.kind()))
            }
            Err(_) => {
                self.reply_unsent = false;
                Flush::Done
            }
        }
    }

    /// Starts the close handshake with `code` (1000 normal, 1001 going away). The caller then
    /// keeps calling `recv`/`flush` until they report `Closed`, or drops after a deadline.
    pub fn close(&mut self, code: u16, reason: &'static str) -> Flush {
        if let Some(c) = self.closed {
            return Flush::Closed(c);
        }
        self.our_code.get_or_insert(code);
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        match self.ws.close(Some(frame)) {
            Ok(()) => Flush::Done,
            Err(e) => match self.on_error(e) {
                Outcome::NotNow | Outcome::Full(_) => Flush::NotNow,
                Outcome::Closed(c) => Flush::Closed(c),
            },
        }
    }

    /// Sends a Close frame with `code` (best effort: the socket may be full) and ends the
    /// connection. The peer may still be sending: to let it read our Close frame instead of a
    /// reset, the caller should read and discard for a short while before dropping the socket.
    fn fail(&mut self, code: u16) -> Closed {
        self.our_code.get_or_insert(code);
        let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
        let _ = self.ws.close(Some(frame));
        self.finish(Closed::ByUs { code })
    }

    fn finish(&mut self, c: Closed) -> Closed {
        *self.closed.get_or_insert(c)
    }

    fn on_error(&mut self, e: WsError) -> Outcome {
        use io::ErrorKind as K;
        let closed = match e {
            WsError::Io(e) if e.kind() == K::WouldBlock => return Outcome::NotNow,
            WsError::WriteBufferFull(m) => return Outcome::Full(m),
            WsError::Io(e) => match e.kind() {
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => Closed::Reset,
                kind => Closed::Io(kind),
            },
            WsError::Capacity(_) => return Outcome::Closed(self.fail(CLOSE_TOO_BIG)),
            WsError::Utf8 => return Outcome::Closed(self.fail(CLOSE_INVALID_DATA)),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Closed::Reset,
            WsError::Protocol(ProtocolError::SendAfterClosing) | WsError::ConnectionClosed | WsError::AlreadyClosed => {
                match self.our_code {
                    Some(code) => Closed::ByUs { code },
                    None => Closed::ByPeer { code: None },
                }
            }
            WsError::Protocol(_) | WsError::AttackAttempt => return Outcome::Closed(self.fail(CLOSE_PROTOCOL)),
            // TLS, URL and HTTP errors belong to handshakes tungstenite does not do for us.
            _ => Closed::Io(K::Other),
        };
        Outcome::Closed(self.finish(closed))
    }
}

/// A connection whose reply to the peer's Close frame is still being written (the socket was
/// full): what the server keeps of a WebSocket, of either stream type, until the reply is out.
pub trait CloseReply {
    fn flush_close_reply(&mut self) -> Flush;
}

impl<S: Read + Write> CloseReply for WsConn<S> {
    fn flush_close_reply(&mut self) -> Flush {
        WsConn::flush_close_reply(self)
    }
}

/// A stream wrapper that counts bytes and can cap reads with a budget.
///
/// With a budget, `read` returns `WouldBlock` once the budget is spent, *without* touching the
/// socket; [`Metered::budget_exhausted`] tells that apart from a real `WouldBlock`, so the
/// reactor keeps its READABLE bit and arms the `read_delay` timer instead of waiting for an edge.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    read_bytes: u64,
    written_bytes: u64,
    budget: Option<usize>,
    starved: bool,
}

impl<S> Metered<S> {
    /// Counts bytes; reads are not limited.
    pub fn new(inner: S) -> Self {
        Metered { inner, read_bytes: 0, written_bytes: 0, budget: None, starved: false }
    }

    /// Counts bytes; reads stop after `budget` bytes until [`Metered::refill`].
    #[cfg(test)]
    pub fn with_read_budget(inner: S, budget: usize) -> Self {
        Metered { budget: Some(budget), ..Metered::new(inner) }
    }

    /// Sets the read budget to `budget` bytes (it does not accumulate).
    pub fn refill(&mut self, budget: usize) {
        self.budget = Some(budget);
        self.starved = false;
    }

    /// True when the last read was refused because the budget was spent.
    pub fn budget_exhausted(&self) -> bool {
        self.starved
    }

    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Read> Read for Metered<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.budget {
            Some(0) => {
                self.starved = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Some(b) => buf.len().min(b),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.read_bytes += n as u64;
        if let Some(b) = self.budget.as_mut() {
            *b -= n;
        }
        Ok(n)
    }
}

impl<S: Write> Write for Metered<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The HTTP/1.1 upgrade request a WebSocket client sends.
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: netforge\r\n\r\n"
    )
    .into_bytes()
}

/// Result of looking at the server's handshake response so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCheck {
    /// Read more.
    Partial,
    /// A valid 101 for our key; WebSocket frames start at `head_len`.
    Accepted { head_len: usize },
    /// Not an acceptable upgrade response (the reason, one line).
    Rejected(String),
}

/// Checks the server's response to [`client_request`] with `key`.
pub fn check_response(buf: &[u8], key: &str) -> ResponseCheck {
    let window = &buf[..buf.len().min(HANDSHAKE_RESPONSE_MAX)];
    let mut headers = [httparse::EMPTY_HEADER; crate::http::MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= HANDSHAKE_RESPONSE_MAX => {
            return ResponseCheck::Rejected(format!("response head exceeds {HANDSHAKE_RESPONSE_MAX} bytes"));
        }
        Ok(httparse::Status::Partial) => return ResponseCheck::Partial,
        Err(e) => return ResponseCheck::Rejected(format!("malformed response: {e}")),
    };
    match resp.code {
        Some(101) => {}
        Some(code) => {
            return ResponseCheck::Rejected(format!("server answered {code} {}", resp.reason.unwrap_or("")));
        }
        None => return ResponseCheck::Rejected("response without status".into()),
    }
    let header =
        |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.trim_ascii());
    let token = |name: &str, want: &str| header(name).is_some_and(|v| crate::http::has_token(v, want));
    if !token("upgrade", "websocket") {
        return ResponseCheck::Rejected("response lacks Upgrade: websocket".into());
    }
    if !token("connection", "upgrade") {
        return ResponseCheck::Rejected("response lacks Connection: Upgrade".into());
    }
    if header("sec-websocket-accept") != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return ResponseCheck::Rejected("wrong or missing Sec-WebSocket-Accept".into());
    }
    ResponseCheck::Accepted { head_len }
}

/// Result of [`ClientHandshake::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Waiting for the socket: call again on the next READABLE or WRITABLE edge.
    NotNow,
    /// Upgraded; pass `leftover` (frames that came with the response) to [`WsConn::client`].
    Done {
        leftover: Vec<u8>,
    },
    Failed(String),
}

/// The client half of the opening handshake as a resumable state machine: write the request
/// (possibly in pieces), then read the response into a fixed buffer until it is complete.
#[derive(Debug)]
pub struct ClientHandshake {
    request: Vec<u8>,
    sent: usize,
    key: String,
    response: Box<[u8; HANDSHAKE_RESPONSE_MAX]>,
    filled: usize,
}

impl ClientHandshake {
    /// A handshake for `ws://{authority}{path}` with a fresh random key.
    pub fn new(authority: &str, path: &str) -> Self {
        Self::with_key(authority, path, &tungstenite::handshake::client::generate_key())
    }

    /// A handshake with a given key (tests).
    pub fn with_key(authority: &str, path: &str, key: &str) -> Self {
        ClientHandshake {
            request: client_request(authority, path, key),
            sent: 0,
            key: key.to_string(),
            response: Box::new([0; HANDSHAKE_RESPONSE_MAX]),
            filled: 0,
        }
    }

    /// Makes as much progress as the stream allows without blocking.
    pub fn advance<S: Read + Write>(&mut self, stream: &mut S) -> HandshakeStep {
        while self.sent < self.request.len() {
            match stream.write(&self.request[self.sent..]) {
                Ok(0) => return HandshakeStep::Failed("connection closed while sending the upgrade request".into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HandshakeStep::NotNow,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return HandshakeStep::Failed(format!("sending the upgrade request: {e}")),
            }
        }
        // Each successful read fills more of the fixed buffer, so this loop is bounded by it.
        loop {
            match check_response(&self.response[..self.filled], &self.key) {
                ResponseCheck::Accepted { head_len } => {
                    return HandshakeStep::Done { leftover: self.response[head_len..self.filled].to_vec() };
                }
                ResponseCheck::Rejected(why) => return HandshakeStep::Failed(why),
                ResponseCheck::Partial => {}
            }
            match stream.read(&mut self.response[self.filled..]) {
                Ok(0) => return HandshakeStep::Failed("connection closed during the WebSocket handshake".into()),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HandshakeStep::NotNow,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return HandshakeStep::Failed(format!("reading the upgrade response: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backpressure::http::{self, HeadParse, Route};
    use std::collections::VecDeque;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const DEADLINE: Duration = Duration::from_secs(5);

    /// Calls `step` until it yields `Some`, sleeping 1 ms between tries; panics at the deadline.
    fn until<T>(what: &str, mut step: impl FnMut() -> Option<T>) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = step() {
                return v;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn loopback() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        for s in [&client, &server] {
            s.set_nonblocking(true).unwrap();
        }
        (client, server)
    }

    /// Reads the upgrade request with `http::parse_head` and answers it, as the lab server will.
    fn server_handshake(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 8192];
        let mut filled = 0;
        let (key, head_len) = until("request head", || {
            match stream.read(&mut buf[filled..]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("server read: {e}"),
            }
            match http::parse_head(&buf[..filled], buf.len()) {
                HeadParse::Partial => None,
                HeadParse::Complete { route: Route::WsUpgrade { key }, head_len } => Some((key, head_len)),
                other => panic!("{other:?}"),
            }
        });
        stream.write_all(&crate::http::upgrade_response(&key)).unwrap();
        buf[head_len..filled].to_vec()
    }

    type Conn = WsConn<Metered<TcpStream>>;

    fn ws_pair(server_limits: WsLimits, client_limits: WsLimits) -> (Conn, Conn) {
        let (mut c, mut s) = loopback();
        let mut hs = ClientHandshake::new("127.0.0.1", "/ws");
        assert_eq!(hs.advance(&mut c), HandshakeStep::NotNow, "request sent, response pending");
        let server_leftover = server_handshake(&mut s);
        let leftover = until("handshake", || match hs.advance(&mut c) {
            HandshakeStep::NotNow => None,
            HandshakeStep::Done { leftover } => Some(leftover),
            HandshakeStep::Failed(why) => panic!("{why}"),
        });
        (
            WsConn::client(Metered::new(c), leftover, client_limits),
            WsConn::server(Metered::new(s), server_leftover, server_limits),
        )
    }

    fn limits(max_in: usize) -> WsLimits {
        WsLimits::for_payload(64 * 1024, max_in)
    }

    fn recv_message(conn: &mut Conn) -> Message {
        until("a message", || match conn.recv() {
            Recv::Message(m) => Some(m),
            Recv::NotNow => None,
            Recv::Closed(c) => panic!("closed: {c:?}"),
        })
    }

    fn recv_closed(conn: &mut Conn) -> Closed {
        until("close", || match conn.recv() {
            Recv::Message(_) | Recv::NotNow => None,
            Recv::Closed(c) => Some(c),
        })
    }

    #[test]
    fn messages_round_trip() {
        let (mut client, mut server) = ws_pair(limits(1 << 20), limits(1 << 20));
        let payload: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        assert!(matches!(client.send(Message::Binary(payload.clone())), SendStatus::Sent));
        assert_eq!(recv_message(&mut server), Message::Binary(payload));
        assert!(matches!(server.send(Message::Text("{\"conn\":1}".into())), SendStatus::Sent));
        assert_eq!(recv_message(&mut client), Message::Text("{\"conn\":1}".into()));
        // Byte counters see the frames, headers included (client frames carry a 4-byte mask).
        assert_eq!(client.get_ref().written_bytes(), 50_000 + 4 + 4);
        assert_eq!(server.get_ref().read_bytes(), 50_000 + 4 + 4);
        // A clean close from the client: the server sees ByPeer(1000), the client ByUs(1000).
        assert_eq!(client.close(1000, "bye"), Flush::Done);
        assert_eq!(recv_closed(&mut server), Closed::ByPeer { code: Some(1000) });
        drop(server);
        assert_eq!(recv_closed(&mut client), Closed::ByUs { code: 1000 });
        assert!(matches!(client.send(Message::Binary(vec![1])), SendStatus::Closed(Closed::ByUs { code: 1000 })));
    }

    #[test]
    fn close_reply_waits_for_room_in_a_full_socket() {
        let (mut client, mut server) = ws_pair(WsLimits::for_payload(16 * 1024, 1 << 20), limits(1 << 20));
        // Fill the server → client direction: the client does not read yet.
        until("a full socket", || match server.send(Message::Binary(vec![3u8; 16 * 1024])) {
            SendStatus::Sent => None,
            SendStatus::Queued | SendStatus::Full(_) => Some(()),
            SendStatus::Closed(c) => panic!("closed: {c:?}"),
        });
        assert_eq!(client.close(1000, "bye"), Flush::Done);
        // The server sees the Close while part of a data frame waits in its buffer; the reply
        // is queued behind it (it fits: room for one control frame is kept).
        assert_eq!(recv_closed(&mut server), Closed::ByPeer { code: Some(1000) });
        // The client reads (and drops) the data frames, which makes room: the reply goes out,
        // and the client sees the answer to its Close.
        let closed = until("the close reply", || {
            let _ = server.flush_close_reply();
            match client.recv() {
                Recv::Closed(c) => Some(c),
                _ => None,
            }
        });
        assert_eq!(closed, Closed::ByUs { code: 1000 });
        assert!(!server.close_reply_unsent());
    }

    #[test]
    fn closed_describes_who_closed() {
        let us = "this client";
        let peer = "the server";
        assert_eq!(Closed::ByPeer { code: Some(1000) }.describe(us, peer), "closed by the server (close code 1000)");
        let too_big = Closed::ByUs { code: CLOSE_TOO_BIG }.describe(us, peer);
        assert!(too_big.starts_with("closed by this client: the server sent") && too_big.contains("1009"), "{too_big}");
        assert!(Closed::Reset.describe(us, peer).starts_with("the server ended the connection"));
        assert!(Closed::ByPeer { code: None }.by_peer() && Closed::Reset.by_peer());
        assert!(!Closed::ByUs { code: 1000 }.by_peer());
    }

    #[test]
    fn frame_over_the_limit_closes_with_1009() {
        let (mut client, mut server) = ws_pair(limits(1024), limits(1 << 20));
        assert!(matches!(client.send(Message::Binary(vec![0u8; 8192])), SendStatus::Sent));
        assert_eq!(recv_closed(&mut server), Closed::ByUs { code: CLOSE_TOO_BIG });
        // The server only read the header; keep its socket open (unread data would turn a close
        // into a reset) while the client reads the Close frame.
        assert_eq!(recv_closed(&mut client), Closed::ByPeer { code: Some(CLOSE_TOO_BIG) });
        assert!(matches!(server.recv(), Recv::Closed(Closed::ByUs { code: CLOSE_TOO_BIG })), "sticky");
    }

    #[test]
    fn unmasked_client_frame_closes_with_1002() {
        let (mut c, mut s) = loopback();
        c.write_all(&[0x82, 0x03, 1, 2, 3]).unwrap(); // a binary frame without a mask
        let mut server = WsConn::server(Metered::new(&mut s), Vec::new(), limits(1024));
        let closed = until("close", || match server.recv() {
            Recv::Closed(c) => Some(c),
            _ => None,
        });
        assert_eq!(closed, Closed::ByUs { code: CLOSE_PROTOCOL });
        // The client sees a Close frame with 1002: 0x88, length 2, code.
        let mut got = [0u8; 4];
        until("close frame", || c.read_exact(&mut got).ok());
        assert_eq!(got, [0x88, 0x02, 0x03, 0xea]);
    }

    #[test]
    fn peer_vanishing_mid_frame_is_a_reset_not_a_panic() {
        let (mut c, s) = loopback();
        // A masked binary frame announcing 100 bytes, of which only 10 arrive.
        let mut partial = vec![0x82, 0x80 | 100, 9, 9, 9, 9];
        partial.extend_from_slice(&[0u8; 10]);
        c.write_all(&partial).unwrap();
        let mut server = WsConn::server(Metered::new(s), Vec::new(), limits(1024));
        assert!(matches!(server.recv(), Recv::NotNow), "a partial frame is not a message");
        drop(c);
        let closed = until("close", || match server.recv() {
            Recv::Closed(c) => Some(c),
            Recv::NotNow => None,
            Recv::Message(m) => panic!("unexpected {m:?}"),
        });
        assert_eq!(closed, Closed::Reset);
        assert!(matches!(server.flush(), Flush::Closed(Closed::Reset)));
        assert!(matches!(server.send(Message::Binary(vec![1])), SendStatus::Closed(Closed::Reset)));
    }

    #[test]
    fn a_full_socket_fills_the_bounded_write_buffer() {
        let payload = 16 * 1024;
        let (mut client, _server) = ws_pair(limits(1 << 20), WsLimits::for_payload(payload, 1024));
        // The server never reads: the socket fills, one frame waits in user space, the next is
        // refused. The loop is bounded by the kernel's buffers (a few MiB) and the deadline.
        let (mut sent, mut queued) = (0u64, 0u64);
        let refused = until("WriteBufferFull", || match client.send(Message::Binary(vec![7u8; payload])) {
            SendStatus::Sent => {
                sent += 1;
                None
            }
            SendStatus::Queued => {
                queued += 1;
                None
            }
            SendStatus::Full(m) => Some(m),
            SendStatus::Closed(c) => panic!("closed: {c:?}"),
        });
        assert!(matches!(refused, Message::Frame(_)), "the refused message comes back as a frame");
        assert_eq!(queued, 1, "exactly one frame fits the write buffer");
        assert!(sent > 0);
        assert_eq!(client.flush(), Flush::NotNow);
        let written = client.get_ref().written_bytes();
        let frame = (payload + MAX_FRAME_HEADER - 6) as u64; // 16 KiB payload: 2+2 header + 4 mask
        assert!(written >= sent * frame && written < (sent + 1) * frame, "{written} vs {sent} frames");
    }

    #[test]
    fn read_budget_paces_the_server() {
        let (mut c, s) = loopback();
        let mut client = WsConn::client(Metered::new(&mut c), Vec::new(), limits(1024));
        assert!(matches!(client.send(Message::Binary(vec![5u8; 3000])), SendStatus::Sent));
        let mut server = WsConn::server(Metered::with_read_budget(s, 1024), Vec::new(), limits(1 << 20));
        let mut refills = 0;
        let msg = until("message", || match server.recv() {
            Recv::Message(m) => Some(m),
            Recv::NotNow if server.get_ref().budget_exhausted() => {
                assert_eq!(server.get_ref().read_bytes(), 1024 * (refills + 1), "exactly one budget per delay");
                refills += 1;
                server.get_mut().refill(1024); // the read_delay timer fired
                None
            }
            Recv::NotNow => None,
            Recv::Closed(c) => panic!("{c:?}"),
        });
        assert_eq!(msg, Message::Binary(vec![5u8; 3000]));
        assert_eq!(refills, 2, "3008 frame bytes take three 1 KiB reads");
    }

    #[test]
    fn response_checks() {
        let ok = String::from_utf8(crate::http::upgrade_response(KEY)).unwrap();
        let cases: Vec<(String, ResponseCheck)> = vec![
            (ok.clone(), ResponseCheck::Accepted { head_len: ok.len() }),
            (ok[..ok.len() - 1].to_string(), ResponseCheck::Partial),
            (String::new(), ResponseCheck::Partial),
            (
                ok.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                ResponseCheck::Rejected("wrong or missing Sec-WebSocket-Accept".into()),
            ),
            (
                ok.replace("Upgrade: websocket", "Upgrade: h2c"),
                ResponseCheck::Rejected("response lacks Upgrade: websocket".into()),
            ),
            (
                String::from_utf8(http::response(404, "text/plain", b"no")).unwrap(),
                ResponseCheck::Rejected("server answered 404 Not Found".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(check_response(text.as_bytes(), KEY), want, "{text:?}");
        }
        assert!(matches!(check_response(b"\x00\x01garbage\r\n\r\n", KEY), ResponseCheck::Rejected(_)));
        let huge = format!("HTTP/1.1 101 Switching Protocols\r\nX: {}", "a".repeat(HANDSHAKE_RESPONSE_MAX));
        assert!(matches!(check_response(huge.as_bytes(), KEY), ResponseCheck::Rejected(w) if w.contains("exceeds")));
        // Frames right after the head are not part of it.
        let mut with_frame = ok.clone().into_bytes();
        with_frame.extend_from_slice(&[0x81, 0x01, b'x']);
        assert_eq!(check_response(&with_frame, KEY), ResponseCheck::Accepted { head_len: ok.len() });
    }

    /// An in-memory stream that accepts at most `write_chunk` bytes per write and replays
    /// scripted reads, with `WouldBlock` wherever the script says `None`.
    struct Script {
        written: Vec<u8>,
        write_chunk: usize,
        reads: VecDeque<Option<Vec<u8>>>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                Some(Some(mut data)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    if n < data.len() {
                        self.reads.push_front(Some(data.split_off(n)));
                    }
                    Ok(n)
                }
                Some(None) => Err(io::ErrorKind::WouldBlock.into()),
                None => Ok(0),
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.write_chunk == 0 {
                self.write_chunk = 20;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.write_chunk);
            self.written.extend_from_slice(&buf[..n]);
            self.write_chunk = 0; // the next write blocks once
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn client_handshake_resumes_after_would_block() {
        let response = crate::http::upgrade_response(KEY);
        let (a, b) = response.split_at(30);
        let mut frame_after = b.to_vec();
        frame_after.extend_from_slice(&[0x81, 0x01, b'x']);
        let mut stream = Script {
            written: Vec::new(),
            write_chunk: 20,
            reads: VecDeque::from([None, Some(a.to_vec()), None, Some(frame_after)]),
        };
        let mut hs = ClientHandshake::with_key("127.0.0.1:8080", "/ws", KEY);
        let mut steps = 0;
        let leftover = loop {
            steps += 1;
            assert!(steps < 1000, "no progress");
            match hs.advance(&mut stream) {
                HandshakeStep::NotNow => continue,
                HandshakeStep::Done { leftover } => break leftover,
                HandshakeStep::Failed(why) => panic!("{why}"),
            }
        };
        assert_eq!(stream.written, client_request("127.0.0.1:8080", "/ws", KEY));
        assert_eq!(leftover, vec![0x81, 0x01, b'x']);
        // The server's parser accepts what the client wrote.
        let parsed = http::parse_head(&stream.written, 8192);
        assert!(
            matches!(parsed, HeadParse::Complete { route: Route::WsUpgrade { ref key }, .. } if key == KEY),
            "{parsed:?}"
        );
    }

    #[test]
    fn client_handshake_failures() {
        let cases: Vec<(VecDeque<Option<Vec<u8>>>, &str)> = vec![
            (VecDeque::new(), "connection closed during the WebSocket handshake"),
            (VecDeque::from([Some(http::response(400, "text/plain", b"bad"))]), "server answered 400 Bad Request"),
        ];
        for (reads, want) in cases {
            let mut stream = Script { written: Vec::new(), write_chunk: usize::MAX, reads };
            let mut hs = ClientHandshake::with_key("h:1", "/ws", KEY);
            assert_eq!(hs.advance(&mut stream), HandshakeStep::Failed(want.into()));
        }
    }
}

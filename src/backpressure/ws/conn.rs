//! [`WsConn`]: one WebSocket over a non-blocking stream, each tungstenite outcome mapped onto
//! what the event loop does next (see the table in [`super`]).

use std::io::{self, Read, Write};

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use super::{
    Closed, Flush, Recv, SendStatus, WsLimits, CLOSE_INVALID_DATA, CLOSE_PROTOCOL, CLOSE_TOO_BIG, INTERRUPTED_RETRIES,
    MAX_CONTROL_FRAME,
};

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
    ///
    /// [`ClientHandshake`]: super::ClientHandshake
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backpressure::http::{self, HeadParse, Route};
    use crate::backpressure::ws::{ClientHandshake, HandshakeStep, Metered, MAX_FRAME_HEADER};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

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
        ws_pair_on(loopback(), server_limits, client_limits)
    }

    fn ws_pair_on(
        (mut c, mut s): (TcpStream, TcpStream),
        server_limits: WsLimits,
        client_limits: WsLimits,
    ) -> (Conn, Conn) {
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
        // Fixed kernel buffers on both sides: with autotuning the receiver's window may grow
        // after the fill, and the flush below could then find room.
        let (c, s) = loopback();
        socket2::SockRef::from(&c).set_send_buffer_size(64 << 10).unwrap();
        socket2::SockRef::from(&s).set_recv_buffer_size(64 << 10).unwrap();
        let (mut client, _server) = ws_pair_on((c, s), limits(1 << 20), WsLimits::for_payload(payload, 1024));
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
}

//! The client's half of the WebSocket opening handshake: the upgrade request, the check of the
//! server's response, and [`ClientHandshake`], which does both on a non-blocking stream.

use std::io::{self, Read, Write};

use tungstenite::handshake::derive_accept_key;

use super::HANDSHAKE_RESPONSE_MAX;

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
    ///
    /// [`WsConn::client`]: super::WsConn::client
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

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

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

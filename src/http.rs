//! HTTP/1, written once for the roles that serve it: the proxy's admin endpoint and the
//! backpressure lab's server. Each role keeps only its routing (which head gets which response).
//!
//! Everything here is sans-io. A role accumulates the bytes of a request head in a buffer of at
//! most `max` bytes, within [`HEAD_DEADLINE`] of the accept (a trickle of bytes does not extend
//! it), and calls [`parse_head`] on what it has; nothing here reads, writes or allocates per byte.
//! A complete head says how many bytes it `consumed`, so what the client pipelined after it (the
//! first WebSocket frames) is handed on untouched. Every response [`response`] builds says
//! `Connection: close`: one request per connection, then a response or an upgrade.

use std::fmt::Write as _;
use std::time::Duration;

use tungstenite::handshake::derive_accept_key;

/// Default bound on a request head (request line, headers and the blank line), in bytes.
pub const HEAD_LIMIT: usize = 8 * 1024;
/// Default deadline for a whole request head, counted from the accept.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Most headers a head may have; more is [`HeadError::TooManyHeaders`]. goon's upgrade
/// request (its own five headers and up to 64 `--header`) fits; the head's byte limit bounds
/// it anyway.
pub const MAX_HEADERS: usize = 100;

/// A complete request head; every field borrows the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    /// The request target as sent: path, query and all.
    pub target: &'a str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The `Sec-WebSocket-Key` of a valid RFC 6455 upgrade request (HTTP/1.1, `Upgrade:
    /// websocket`, `Connection: upgrade`, `Sec-WebSocket-Version: 13`, exactly one well-formed
    /// key); `None` for any other head.
    pub websocket_key: Option<&'a str>,
    /// Length of the head; bytes from here on belong to what follows it.
    pub consumed: usize,
}

impl<'a> Head<'a> {
    /// The target without its query string or fragment.
    pub fn path(&self) -> &'a str {
        self.target.split(['?', '#']).next().unwrap_or(self.target)
    }
}

/// Why a head cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not parseable as an HTTP/1.0 or HTTP/1.1 request head.
    Malformed,
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders,
    /// `max` bytes and still no end of head.
    TooLarge,
}

/// What the bytes received so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse<'a> {
    /// Not a complete head yet: read more (while under `max` and the deadline).
    Partial,
    Complete(Head<'a>),
    Error(HeadError),
}

/// Parses the request head at the start of `buf`, looking at no more than `max` bytes of it: a
/// head that has not ended by then is [`HeadError::TooLarge`], even if its end came later.
pub fn parse_head(buf: &[u8], max: usize) -> Parse<'_> {
    let window = &buf[..buf.len().min(max)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max => return Parse::Error(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parse::Error(HeadError::TooManyHeaders),
        Err(_) => return Parse::Error(HeadError::Malformed),
    };
    // A complete parse always has method, target and version.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Error(HeadError::Malformed);
    };
    let websocket_key = websocket_key(version, req.headers);
    Parse::Complete(Head { method, target, version, websocket_key, consumed })
}

/// Does `value` (a comma-separated header value) contain `token`, ignoring case?
pub fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A Sec-WebSocket-Key is base64 of 16 bytes: 22 base64 characters and `==`.
fn valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The Sec-WebSocket-Key of a valid RFC 6455 upgrade request, or `None`.
fn websocket_key<'a>(version: u8, headers: &[httparse::Header<'a>]) -> Option<&'a str> {
    if version < 1 {
        return None; // WebSocket needs HTTP/1.1
    }
    let (mut upgrade, mut connection, mut ws_version, mut key) = (false, false, false, None);
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            ws_version = h.value.trim_ascii() == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            if key.is_some() {
                return None; // duplicated
            }
            key = Some(h.value.trim_ascii());
        }
    }
    let key = key.filter(|k| valid_key(k))?;
    if !(upgrade && connection && ws_version) {
        return None;
    }
    // valid_key admits only ASCII, so this never fails.
    std::str::from_utf8(key).ok()
}

/// The protocol version a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Standard reason phrase of the statuses netforge sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete response: the status line, `Content-Type`, `Content-Length`, the `headers` in
/// order, `Connection: close`, then `body`.
pub fn response(version: Version, status: u16, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = String::with_capacity(128);
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "{} {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        version.as_str(),
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The 101 response accepting a WebSocket upgrade with Sec-WebSocket-Key `key`.
pub fn upgrade_response(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    /// `Ok(consumed)` for a complete head, `Err(None)` for a partial one.
    fn outcome(buf: &[u8], max: usize) -> Result<usize, Option<HeadError>> {
        match parse_head(buf, max) {
            Parse::Partial => Err(None),
            Parse::Complete(head) => Ok(head.consumed),
            Parse::Error(e) => Err(Some(e)),
        }
    }

    fn complete(buf: &[u8]) -> Head<'_> {
        match parse_head(buf, HEAD_LIMIT) {
            Parse::Complete(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn a_complete_head_names_method_target_version_and_length() {
        let req = b"POST /a/b?x=1#f HTTP/1.0\r\nHost: x\r\n\r\n";
        let head = complete(req);
        assert_eq!(
            head,
            Head { method: "POST", target: "/a/b?x=1#f", version: 0, websocket_key: None, consumed: req.len() }
        );
        assert_eq!(head.path(), "/a/b");
        assert_eq!(complete(b"GET /c#f HTTP/1.1\r\n\r\n").path(), "/c");
        assert_eq!(complete(b"GET * HTTP/1.1\r\n\r\n").path(), "*");
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let req = upgrade("/samples");
        for cut in 0..req.len() {
            assert_eq!(parse_head(&req.as_bytes()[..cut], HEAD_LIMIT), Parse::Partial, "cut at {cut}");
        }
        assert_eq!(complete(req.as_bytes()).consumed, req.len());
    }

    #[test]
    fn a_head_that_does_not_end_within_max_is_too_large() {
        // A head padded to `len` bytes, then `end`.
        let padded = |len: usize, end: &[u8]| {
            let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
            head.resize(len, b'a');
            head.extend_from_slice(end);
            head
        };
        for max in [64, 1000, HEAD_LIMIT] {
            let too_large = Err(Some(HeadError::TooLarge));
            assert_eq!(outcome(&padded(max - 1, b""), max), Err(None), "max {max}: one byte under, read more");
            assert_eq!(outcome(&padded(max, b""), max), too_large, "max {max}");
            assert_eq!(outcome(&padded(max, b"\r\n\r\n"), max), too_large, "max {max}: an end past it is too late");
            assert_eq!(outcome(&padded(max - 4, b"\r\n\r\n"), max), Ok(max), "max {max}: ends at the bound");
            // What follows a head that ended in time is not looked at, however long.
            let mut long = padded(max - 4, b"\r\n\r\n");
            long.resize(3 * max, 0xff);
            assert_eq!(outcome(&long, max), Ok(max), "max {max}: pipelined bytes past the bound");
        }
    }

    #[test]
    fn more_than_max_headers_is_its_own_error() {
        let head = |n: usize| {
            let headers: String = (0..n).map(|i| format!("X-{i}: y\r\n")).collect();
            format!("GET / HTTP/1.1\r\n{headers}\r\n")
        };
        assert!(matches!(parse_head(head(MAX_HEADERS).as_bytes(), HEAD_LIMIT), Parse::Complete(_)));
        assert_eq!(parse_head(head(MAX_HEADERS + 1).as_bytes(), HEAD_LIMIT), Parse::Error(HeadError::TooManyHeaders));
    }

    #[test]
    fn a_bad_request_line_or_header_is_malformed() {
        let cases: &[&[u8]] = &[
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ];
        for bytes in cases {
            assert_eq!(
                parse_head(bytes, HEAD_LIMIT),
                Parse::Error(HeadError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn bytes_pipelined_after_the_head_are_not_consumed() {
        let head = upgrade("/ws");
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(&[0x82, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // a masked binary frame
        let parsed = complete(&buf);
        assert_eq!(parsed.consumed, head.len());
        assert_eq!(buf[parsed.consumed], 0x82);
        // A second request pipelined behind the first is left alone too.
        let two = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let first = complete(two);
        assert_eq!((first.target, first.consumed), ("/a", 19));
        assert_eq!(complete(&two[first.consumed..]).target, "/b");
    }

    #[test]
    fn a_valid_upgrade_yields_its_key() {
        assert_eq!(complete(upgrade("/ws").as_bytes()).websocket_key, Some(KEY));
        let no_key = [
            upgrade("/ws").replace("Version: 13", "Version: 8"),
            upgrade("/ws").replace("Upgrade: websocket", "Upgrade: h2c"),
            upgrade("/ws").replace("keep-alive, Upgrade", "keep-alive"),
            upgrade("/ws").replace(KEY, "short=="),
            upgrade("/ws").replace(KEY, "dGhlIHNhbXBsZSBub25jZQ!="),
            upgrade("/ws").replace("HTTP/1.1", "HTTP/1.0"),
            upgrade("/ws").replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Key: {KEY}\r\n\r\n")),
            "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ];
        for req in no_key {
            assert_eq!(complete(req.as_bytes()).websocket_key, None, "{req:?}");
        }
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let shouted = format!(
            "GET /ws HTTP/1.1\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\nsec-websocket-key: {KEY}\r\n\
             SEC-WEBSOCKET-VERSION: 13\r\n\r\n"
        );
        assert_eq!(complete(shouted.as_bytes()).websocket_key, Some(KEY));
        assert!(has_token(b"keep-alive , UpGrade", "upgrade"));
        assert!(!has_token(b"keep-alive, upgrades", "upgrade"));
        assert!(!has_token(b"", "upgrade"));
    }

    #[test]
    fn responses_are_exact() {
        assert_eq!(
            String::from_utf8(response(Version::Http10, 200, "text/plain", &[], b"hi\n")).unwrap(),
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n"
        );
        assert_eq!(
            String::from_utf8(response(
                Version::Http11,
                405,
                "text/plain; charset=utf-8",
                &[("Cache-Control", "no-store"), ("Allow", "GET")],
                b""
            ))
            .unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\
             Cache-Control: no-store\r\nAllow: GET\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(reason(408), "Request Timeout");
        assert_eq!(reason(599), "Unknown");
        // The RFC 6455 section 1.3 example.
        assert_eq!(
            String::from_utf8(upgrade_response(KEY)).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }
}

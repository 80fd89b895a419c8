//! The lab server's routing of the one HTTP request it reads per connection in WebSocket mode:
//! a page (`/`, `/client`) or a WebSocket upgrade (`/ws` for payloads, `/samples` for the
//! dashboard's live stream). The head itself is parsed by [`crate::http`], bounded by
//! `http_head_max` bytes and `http_head_timeout`.

use crate::http::{self, HeadError, Parse, Version};

/// Where a complete request head goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /` or `/dashboard`: the live dashboard page.
    Dashboard,
    /// `GET /client`: the browser client page.
    WebClient,
    /// `GET /ws` with a valid WebSocket upgrade: the payload stream.
    WsUpgrade { key: String },
    /// `GET /samples` with a valid WebSocket upgrade: the dashboard's sample stream.
    Samples { key: String },
    /// Any other path: 404.
    NotFound,
    /// `/ws` or `/samples` without `Upgrade: websocket`, `Connection: upgrade`, a well-formed
    /// `Sec-WebSocket-Key` and `Sec-WebSocket-Version: 13`: 400.
    BadUpgrade,
}

/// Why a head was refused; each maps to one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not parseable as HTTP/1.x (400).
    Malformed,
    /// A method other than GET (405).
    MethodNotAllowed,
    /// Head longer than the limit, or more than [`http::MAX_HEADERS`] headers (431).
    HeadTooLarge,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::MethodNotAllowed => 405,
            HttpError::HeadTooLarge => 431,
        }
    }

    /// The complete response to send before closing.
    pub fn response(self) -> Vec<u8> {
        let body = format!("{} {}\n", self.status(), http::reason(self.status()));
        let allow: &[(&str, &str)] = match self {
            HttpError::MethodNotAllowed => &[("Cache-Control", "no-store"), ("Allow", "GET")],
            _ => &[("Cache-Control", "no-store")],
        };
        http::response(Version::Http11, self.status(), "text/plain; charset=utf-8", allow, body.as_bytes())
    }
}

/// Result of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadParse {
    /// The head is not complete yet: read more (while under `max` and the head timeout).
    Partial,
    /// The head is complete; bytes from `head_len` on belong to what follows.
    Complete { route: Route, head_len: usize },
    /// Send `HttpError::response()` and close.
    Error(HttpError),
}

/// Parses and routes the request head at the start of `buf`, looking at no more than `max` bytes.
pub fn parse_head(buf: &[u8], max: usize) -> HeadParse {
    let head = match http::parse_head(buf, max) {
        Parse::Partial => return HeadParse::Partial,
        Parse::Error(HeadError::Malformed) => return HeadParse::Error(HttpError::Malformed),
        Parse::Error(HeadError::TooLarge | HeadError::TooManyHeaders) => {
            return HeadParse::Error(HttpError::HeadTooLarge)
        }
        Parse::Complete(head) => head,
    };
    if head.method != "GET" {
        return HeadParse::Error(HttpError::MethodNotAllowed);
    }
    let path = head.path();
    let route = match path {
        "/" | "/dashboard" => Route::Dashboard,
        "/client" => Route::WebClient,
        "/ws" | "/samples" => match head.websocket_key.map(str::to_string) {
            Some(key) if path == "/ws" => Route::WsUpgrade { key },
            Some(key) => Route::Samples { key },
            None => Route::BadUpgrade,
        },
        _ => Route::NotFound,
    };
    HeadParse::Complete { route, head_len: head.consumed }
}

/// A complete `Connection: close` response with a body, never cached.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    http::response(Version::Http11, status, content_type, &[("Cache-Control", "no-store")], body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{upgrade_response, MAX_HEADERS};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const MAX: usize = 8192;

    fn upgrade(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    fn route(req: &str) -> Route {
        match parse_head(req.as_bytes(), MAX) {
            HeadParse::Complete { route, head_len } => {
                assert_eq!(head_len, req.len());
                route
            }
            other => panic!("{req:?}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        let key = || KEY.to_string();
        let cases: Vec<(String, Route)> = vec![
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(), Route::Dashboard),
            ("GET /dashboard HTTP/1.0\r\n\r\n".into(), Route::Dashboard),
            ("GET /client?autostart=1&payload=1024 HTTP/1.1\r\n\r\n".into(), Route::WebClient),
            ("GET /nope HTTP/1.1\r\n\r\n".into(), Route::NotFound),
            ("GET /ws/extra HTTP/1.1\r\n\r\n".into(), Route::NotFound),
            (upgrade("/ws"), Route::WsUpgrade { key: key() }),
            (upgrade("/ws?x=1"), Route::WsUpgrade { key: key() }),
            (upgrade("/samples"), Route::Samples { key: key() }),
            ("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".into(), Route::BadUpgrade),
            (upgrade("/ws").replace("Version: 13", "Version: 8"), Route::BadUpgrade),
            (upgrade("/ws").replace("Upgrade: websocket", "Upgrade: h2c"), Route::BadUpgrade),
            (upgrade("/ws").replace("keep-alive, Upgrade", "keep-alive"), Route::BadUpgrade),
            (upgrade("/ws").replace(KEY, "short=="), Route::BadUpgrade),
            (upgrade("/ws").replace(KEY, "dGhlIHNhbXBsZSBub25jZQ!="), Route::BadUpgrade),
            (upgrade("/samples").replace("HTTP/1.1", "HTTP/1.0"), Route::BadUpgrade),
            (upgrade("/ws").replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Key: {KEY}\r\n\r\n")), Route::BadUpgrade),
            // Header names and tokens are case-insensitive.
            (upgrade("/ws").replace("Upgrade: websocket", "upgrade: WebSocket"), Route::WsUpgrade { key: key() }),
        ];
        for (req, want) in cases {
            assert_eq!(route(&req), want, "{req:?}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], HeadParse)] = &[
            (b"POST /ws HTTP/1.1\r\n\r\n", HeadParse::Error(HttpError::MethodNotAllowed)),
            (b"HEAD / HTTP/1.1\r\n\r\n", HeadParse::Error(HttpError::MethodNotAllowed)),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", HeadParse::Error(HttpError::Malformed)), // TLS hello
            (b"GET / HTTP/2.0\r\n\r\n", HeadParse::Error(HttpError::Malformed)),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", HeadParse::Error(HttpError::Malformed)),
            (b"GET /\x00 HTTP/1.1\r\n\r\n", HeadParse::Error(HttpError::Malformed)),
            (b"", HeadParse::Partial),
            (b"GE", HeadParse::Partial),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", HeadParse::Partial),
        ];
        for (bytes, want) in cases {
            assert_eq!(&parse_head(bytes, MAX), want, "{:?}", String::from_utf8_lossy(bytes));
        }
        let too_many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{too_many}\r\n");
        assert_eq!(parse_head(req.as_bytes(), MAX), HeadParse::Error(HttpError::HeadTooLarge));
    }

    #[test]
    fn oversize_head_is_431_only_once_the_limit_is_reached() {
        let max = 1024;
        let mut req = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        req.resize(max - 1, b'a');
        assert_eq!(parse_head(&req, max), HeadParse::Partial, "one byte under the limit: keep reading");
        req.push(b'a');
        assert_eq!(parse_head(&req, max), HeadParse::Error(HttpError::HeadTooLarge));
        req.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&req, max), HeadParse::Error(HttpError::HeadTooLarge), "completion past max is too late");
        // A head that completes exactly at the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        exact.resize(max - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&exact, max), HeadParse::Complete { route: Route::Dashboard, head_len: max });
    }

    #[test]
    fn pipelined_bytes_after_the_head_are_left_alone() {
        let head = upgrade("/ws");
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(&[0x82, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // a masked binary frame
        match parse_head(&buf, MAX) {
            HeadParse::Complete { route: Route::WsUpgrade { .. }, head_len } => {
                assert_eq!(head_len, head.len());
                assert_eq!(buf[head_len], 0x82);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_partial() {
        let req = upgrade("/samples");
        for cut in 0..req.len() {
            assert_eq!(parse_head(&req.as_bytes()[..cut], MAX), HeadParse::Partial, "cut at {cut}");
        }
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(response(200, "text/html; charset=utf-8", b"<p>hi</p>")).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(r.contains("\r\nContent-Length: 9\r\n"));
        assert!(r.contains("\r\nConnection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n<p>hi</p>"));

        // The RFC 6455 section 1.3 example.
        let u = String::from_utf8(upgrade_response(KEY)).unwrap();
        assert!(u.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(u.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{u}");
        assert!(u.ends_with("\r\n\r\n"));

        for (err, status, line) in [
            (HttpError::Malformed, 400, "HTTP/1.1 400 Bad Request\r\n"),
            (HttpError::MethodNotAllowed, 405, "HTTP/1.1 405 Method Not Allowed\r\n"),
            (HttpError::HeadTooLarge, 431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        ] {
            assert_eq!(err.status(), status);
            let r = String::from_utf8(err.response()).unwrap();
            assert!(r.starts_with(line), "{r}");
            assert_eq!(r.contains("\r\nAllow: GET\r\n"), status == 405, "{r}");
        }
    }
}

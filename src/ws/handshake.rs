//! The client's half of the opening handshake, sans-io: the upgrade request and the check of
//! the server's response head. (The server's half is [`crate::http`]'s head parser and
//! [`crate::http::upgrade_response`].)

use tungstenite::handshake::derive_accept_key;

/// Largest response head a client reads; a head not complete by then is a bad response.
pub const RESPONSE_HEAD_MAX: usize = 4096;
/// Most headers a response head may have.
const RESPONSE_HEADERS_MAX: usize = 32;
/// Extra request headers (`--header`) at most, and the longest one.
pub const EXTRA_HEADERS_MAX: usize = 64;
pub const EXTRA_HEADER_BYTES_MAX: usize = 4096;

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (always 24 characters).
pub fn new_key() -> [u8; 24] {
    let raw: [u8; 16] = fastrand::u128(..).to_ne_bytes();
    let mut out = [0u8; 24];
    base64_16(&raw, &mut out);
    out
}

fn base64_16(raw: &[u8; 16], out: &mut [u8; 24]) {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = 0;
    for chunk in raw.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out[o] = ABC[(n >> 18) as usize & 63];
        out[o + 1] = ABC[(n >> 12) as usize & 63];
        out[o + 2] = if chunk.len() > 1 { ABC[(n >> 6) as usize & 63] } else { b'=' };
        out[o + 3] = if chunk.len() > 2 { ABC[n as usize & 63] } else { b'=' };
        o += 4;
    }
}

/// The fixed part of every connection's request: everything but the key (see [`request`]).
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    /// Request line, Host and the upgrade headers, up to `Sec-WebSocket-Key: `.
    before_key: String,
    /// The rest after the key: version, extra headers and the blank line.
    after_key: String,
}

impl RequestTemplate {
    /// `host` is the Host header's value; `extra` are validated `Name: value` lines.
    pub fn new(path: &str, host: &str, extra: &[String]) -> RequestTemplate {
        let before_key = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
        );
        let mut after_key = String::from("\r\nSec-WebSocket-Version: 13\r\n");
        for h in extra {
            after_key.push_str(h);
            after_key.push_str("\r\n");
        }
        after_key.push_str("\r\n");
        RequestTemplate { before_key, after_key }
    }

    /// The request with `key`.
    pub fn request(&self, key: &[u8; 24]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.before_key.len() + 24 + self.after_key.len());
        v.extend_from_slice(self.before_key.as_bytes());
        v.extend_from_slice(key);
        v.extend_from_slice(self.after_key.as_bytes());
        v
    }
}

/// Checks one `--header` value: `Name: value`, a token name that is not one the handshake
/// sets itself, a value without control characters. The error says what is wrong.
pub fn check_header(h: &str) -> Result<String, String> {
    if h.len() > EXTRA_HEADER_BYTES_MAX {
        return Err(format!("longer than {EXTRA_HEADER_BYTES_MAX} bytes"));
    }
    let Some((name, value)) = h.split_once(':') else {
        return Err(format!("{h:?} is not 'Name: value'"));
    };
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!("{name:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~, no spaces)"));
    }
    const OWN: [&str; 5] = ["host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"];
    if OWN.iter().any(|o| name.eq_ignore_ascii_case(o)) {
        return Err(format!("{name} is set by the handshake itself"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("the value of {name} has a control character"));
    }
    Ok(format!("{name}: {value}"))
}

/// Why an upgrade failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A complete response with another status than 101.
    Status(u16),
    /// Not an acceptable HTTP response, or a 101 without the right headers.
    Bad(&'static str),
}

/// What the response bytes so far are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Read more.
    Partial,
    /// A valid 101 for the key; frames start at `head_len`.
    Accepted {
        head_len: usize,
    },
    Refused(Refusal),
}

/// Checks the server's response head against the request's `key`.
pub fn check_response(buf: &[u8], key: &[u8; 24]) -> Response {
    let window = &buf[..buf.len().min(RESPONSE_HEAD_MAX)];
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= RESPONSE_HEAD_MAX => {
            return Response::Refused(Refusal::Bad("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Response::Partial,
        Err(_) => return Response::Refused(Refusal::Bad("not an HTTP response")),
    };
    match resp.code {
        Some(101) => {}
        Some(code) => return Response::Refused(Refusal::Status(code)),
        None => return Response::Refused(Refusal::Bad("no status")),
    }
    let header =
        |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.trim_ascii());
    let token = |name: &str, want: &str| header(name).is_some_and(|v| crate::http::has_token(v, want));
    if !token("upgrade", "websocket") || !token("connection", "upgrade") {
        return Response::Refused(Refusal::Bad("101 without Upgrade: websocket and Connection: Upgrade"));
    }
    if header("sec-websocket-accept") != Some(derive_accept_key(key).as_bytes()) {
        return Response::Refused(Refusal::Bad("wrong or missing Sec-WebSocket-Accept"));
    }
    Response::Accepted { head_len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_base64_of_16_bytes() {
        let mut out = [0u8; 24];
        // RFC 6455 §1.3's sample nonce.
        base64_16(b"the sample nonce", &mut out);
        assert_eq!(&out, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_ne!(new_key(), new_key());
    }

    #[test]
    fn request_and_response() {
        let t = RequestTemplate::new("/chat?x=1", "example.com:80", &["X-Token: abc".to_string()]);
        let key = *b"dGhlIHNhbXBsZSBub25jZQ==";
        let req = String::from_utf8(t.request(&key)).unwrap();
        assert!(req.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:80\r\n"), "{req}");
        assert!(req.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(req.ends_with("X-Token: abc\r\n\r\n"), "{req}");
        // The server's answer, as netforge serve builds it, with a frame right behind it.
        let mut resp = crate::http::upgrade_response("dGhlIHNhbXBsZSBub25jZQ==");
        let head = resp.len();
        assert!(String::from_utf8_lossy(&resp).contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        resp.extend_from_slice(&[0x89, 0x00]);
        assert_eq!(check_response(&resp[..head - 1], &key), Response::Partial);
        assert_eq!(check_response(&resp, &key), Response::Accepted { head_len: head });
        let other = *b"AAAAAAAAAAAAAAAAAAAAAA==";
        assert_eq!(
            check_response(&resp, &other),
            Response::Refused(Refusal::Bad("wrong or missing Sec-WebSocket-Accept"))
        );
        let r403 = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check_response(r403, &key), Response::Refused(Refusal::Status(403)));
        assert_eq!(
            check_response(b"SSH-2.0-OpenSSH\r\n", &key),
            Response::Refused(Refusal::Bad("not an HTTP response"))
        );
        let endless = [b'a'; RESPONSE_HEAD_MAX + 1];
        let mut long = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        long.extend_from_slice(&endless);
        assert_eq!(check_response(&long, &key), Response::Refused(Refusal::Bad("response head too large")));
        let bare = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert!(matches!(check_response(bare, &key), Response::Refused(Refusal::Bad(_))));
    }

    #[test]
    fn extra_headers() {
        assert_eq!(check_header("X-Token:  abc ").unwrap(), "X-Token: abc");
        assert_eq!(check_header("Origin: http://a").unwrap(), "Origin: http://a");
        for (bad, why) in [
            ("NoColon", "is not 'Name: value'"),
            (": v", "is not a header name"),
            ("Bad Name: v", "is not a header name"),
            ("Host: x", "set by the handshake itself"),
            ("sec-websocket-key: x", "set by the handshake itself"),
            ("X: a\r\nY: b", "control character"),
        ] {
            let e = check_header(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}

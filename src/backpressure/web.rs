//! The two pages the lab server serves in WebSocket mode, compiled into the binary, and the
//! message the dashboard consumes.
//!
//! Both pages are self-contained (inline CSS and JS, no CDN) so they work on an isolated network.
//! Each carries hooks a headless-browser test can read: the dashboard keeps the number of samples
//! received in `<span id="samples">` and in `document.title`; the browser client writes messages
//! sent into `<span id="sent">` and its state into `<span id="status">`, and starts by itself with
//! `/client?autostart=1&payload=1024&rate=100&total=200&conns=1`.

use serde::Serialize;

use std::net::SocketAddr;

use super::http::{self, Route};

/// `GET /`: live charts of every connection, fed by `ws://HOST/samples`.
pub const DASHBOARD_HTML: &str = include_str!("web/dashboard.html");
/// `GET /client`: pushes payloads over `ws://HOST/ws` and shows `bufferedAmount`.
pub const CLIENT_HTML: &str = include_str!("web/client.html");
/// Upper bound on each page's size (checked by a test).
#[cfg(test)]
pub const PAGE_MAX_BYTES: usize = 20 * 1024;

/// One message of the dashboard's sample stream (schema in the `backpressure` module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DashboardSample {
    pub conn: u64,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// Seconds since the connection was accepted.
    pub t: f64,
    pub read_bytes: u64,
    pub inq: u32,
    pub rcv_wnd: Option<u32>,
}

impl DashboardSample {
    /// The JSON text message.
    pub fn to_json(&self) -> String {
        // Serializing plain numbers, options and a string enum cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The complete response for routes answered with a page or an error, `None` for upgrades.
pub fn respond(route: &Route) -> Option<Vec<u8>> {
    const HTML: &str = "text/html; charset=utf-8";
    const TEXT: &str = "text/plain; charset=utf-8";
    match route {
        Route::Dashboard => Some(http::response(200, HTML, DASHBOARD_HTML.as_bytes())),
        Route::WebClient => Some(http::response(200, HTML, CLIENT_HTML.as_bytes())),
        Route::NotFound => Some(http::response(404, TEXT, b"404 Not Found: try / or /client\n")),
        Route::BadUpgrade => Some(http::response(400, TEXT, b"400 Bad Request: this path needs a WebSocket upgrade\n")),
        Route::WsUpgrade { .. } | Route::Samples { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_json_matches_the_documented_schema() {
        let peer = "127.0.0.1:54321".parse().unwrap();
        let s = DashboardSample { conn: 7, peer, t: 1.25, read_bytes: 12288, inq: 131072, rcv_wnd: Some(0) };
        assert_eq!(
            s.to_json(),
            r#"{"conn":7,"peer":"127.0.0.1:54321","t":1.25,"read_bytes":12288,"inq":131072,"rcv_wnd":0}"#
        );
        let s = DashboardSample { rcv_wnd: None, peer: "[::1]:8".parse().unwrap(), ..s };
        assert_eq!(
            s.to_json(),
            r#"{"conn":7,"peer":"[::1]:8","t":1.25,"read_bytes":12288,"inq":131072,"rcv_wnd":null}"#
        );
    }

    #[test]
    fn pages_are_small_self_contained_and_have_test_hooks() {
        let pages = [
            (
                "dashboard",
                DASHBOARD_HTML,
                // The card names the client (`f-peer`), the rate panel is log-scaled, and one
                // line says why the window stays shut while the queue drains.
                &[
                    "id=\"samples\"",
                    "/samples",
                    "document.title",
                    "ZERO WINDOW",
                    "f-peer",
                    "m.peer",
                    "log scale",
                    "id=\"why\"",
                ][..],
            ),
            ("client", CLIENT_HTML, &["id=\"sent\"", "id=\"status\"", "/ws", "bufferedAmount", "autostart"][..]),
        ];
        for (name, html, hooks) in pages {
            assert!(html.len() < PAGE_MAX_BYTES, "{name}: {} bytes", html.len());
            assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
            for hook in hooks {
                assert!(html.contains(hook), "{name} lacks {hook}");
            }
            for external in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
                assert!(!html.contains(external), "{name} loads something external: {external}");
            }
            assert_eq!(html.matches("<script>").count(), 1, "{name}: one inline script");
        }
        // The server has no view of the sender: the dashboard shows no empty "client n/a" field.
        assert!(!DASHBOARD_HTML.contains("f-client") && !DASHBOARD_HTML.contains("cl.state"));
    }

    #[test]
    fn routes_answered_with_pages() {
        let ok = respond(&Route::Dashboard).unwrap();
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with(DASHBOARD_HTML.as_bytes()));
        assert!(respond(&Route::WebClient).unwrap().ends_with(CLIENT_HTML.as_bytes()));
        assert!(respond(&Route::NotFound).unwrap().starts_with(b"HTTP/1.1 404 "));
        assert!(respond(&Route::BadUpgrade).unwrap().starts_with(b"HTTP/1.1 400 "));
        assert_eq!(respond(&Route::WsUpgrade { key: "k".into() }), None);
        assert_eq!(respond(&Route::Samples { key: "k".into() }), None);
    }
}

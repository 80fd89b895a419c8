//! goon's WebSocket mode (`--ws PATH`): each connection, once TCP-established (with `--tls`,
//! once its handshake is done: wss), sends the upgrade request and is held as a WebSocket
//! (`crate::ws::client`). tcpgoon's counts keep their meaning (TCP connections); the upgrade
//! adds its own counts, the upgrade time (request sent → 101 received) and, with `--ws-ping`, the ping → pong round trip, each in its
//! own HdrHistogram. A connection whose upgrade fails is closed by goon: it counts as Closed in
//! tcpgoon's line, and as an upgrade failure by status or cause here.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::engine::Kind;

use crate::ws::client::{Client, ClientPlan, ClientStats};

pub use crate::result::ws::{json_value, report_lines, WsLatencies};
use crate::ws::handshake::RequestTemplate;

/// Traffic over `--ws`: a message is one masked binary data frame; a response is made of the
/// payload bytes of the server's data frames, which [`Client::on_ready`] hands over as it
/// decodes them (so `recv` has nothing: WouldBlock).
pub struct WsWire<'a, S> {
    pub client: &'a mut Client,
    pub sock: &'a mut S,
}

impl<S: std::io::Write> crate::goon::traffic::Wire for WsWire<'_, S> {
    fn send(&mut self, msg: &[u8]) -> std::io::Result<usize> {
        self.client.send_message(self.sock, msg)
    }

    fn recv(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// A connection's WebSocket timer: the upgrade deadline, then the next ping.
pub const TIMER_WS: Kind = Kind::new(2);
/// `--ws-timeout` without the flag.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--ws`, `--header`, `--ws-ping`, `--ws-timeout`, checked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WsConfig {
    pub path: String,
    /// `Name: value` lines, normalised.
    pub headers: Vec<String>,
    #[serde(serialize_with = "duration_opt")]
    pub ping: Option<Duration>,
    #[serde(serialize_with = "crate::config::duration")]
    pub timeout: Duration,
}

impl WsConfig {
    /// The plan every reactor shares; `host` is the Host header's value.
    pub fn plan(&self, host: &str) -> Arc<ClientPlan> {
        Arc::new(ClientPlan {
            template: RequestTemplate::new(&self.path, host, &self.headers),
            timeout: self.timeout,
            ping: self.ping,
        })
    }

    /// The keys `--json`'s config gains with `--ws`.
    pub fn config_json(&self) -> serde_json::Value {
        json!({
            "path": self.path,
            "headers": self.headers,
            "ping_s": self.ping.map(|d| d.as_secs_f64()),
            "upgrade_timeout_ms": self.timeout.as_secs_f64() * 1e3,
        })
    }
}

fn duration_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => crate::config::duration(d, s),
        None => s.serialize_none(),
    }
}

/// `--ws PATH`: an origin-form request target (starts with '/', visible ASCII, no '#').
pub fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} does not start with '/' (give the request path, e.g. /chat)"));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic() || *c == '#') {
        return Err(format!("{s:?} has {c:?}: use visible ASCII without '#' (percent-encode the rest)"));
    }
    if s.len() > 2048 {
        return Err(format!("longer than 2048 bytes ({})", s.len()));
    }
    Ok(s.to_string())
}

/// The reactor's WebSocket side: the shared plan and what its connections measured.
pub struct WsRun {
    pub plan: Arc<ClientPlan>,
    pub stats: ClientStats,
}

impl WsRun {
    pub fn new(plan: Arc<ClientPlan>) -> WsRun {
        WsRun { plan, stats: ClientStats::default() }
    }

    /// The latencies since the last call, if any.
    pub fn take(&mut self) -> Option<WsLatencies> {
        let s = &mut self.stats;
        (!s.upgrade.is_empty() || !s.ping.is_empty())
            .then(|| WsLatencies { upgrade: s.upgrade.take(), ping: s.ping.take() })
    }

    /// Puts back what an update that could not be sent carried.
    pub fn put_back(&mut self, l: &WsLatencies) {
        self.stats.upgrade.merge(&l.upgrade);
        self.stats.ping.merge(&l.ping);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/").unwrap(), "/");
        assert_eq!(parse_path("/chat?room=1").unwrap(), "/chat?room=1");
        for (bad, why) in
            [("chat", "does not start with '/'"), ("", "does not start"), ("/a b", "has ' '"), ("/a#x", "has '#'")]
        {
            let e = parse_path(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}

//! Inputs and helpers shared by the config tests.

use std::net::SocketAddr;
use std::path::Path;

use super::*;

pub(super) const FILE: &str = "bad.toml";

/// One listener and one backend, 5 lines: appended keys land on line 6.
pub(super) const MIN: &str =
    "[[listener]]\naddress = \"127.0.0.1:4000\"\n\n[[backend]]\naddress = \"127.0.0.1:8001\"\n";

/// Every key set to something other than its default.
pub(super) const FULL: &str = r#"
threads = 4
cpu_affinity = "Auto"
max_connections = 500
balance = "LeastConn"
retries = 0
buffer_size = 65536
splice = "OFF"
smart_connect = false
congestion = "reno"
drain_timeout = "0"

[timeouts]
connect = "250ms"
client_idle = "1m30s"
server_idle = "1h"
client_fin = "1.5s"
server_fin = "45s"
max_lifetime = "2h"

[health]
enabled = false
interval = "5s"
timeout = "5s"
rise = 1
fall = 10
jitter_pct = 0
passive_fall = 0

[admin]
address = ""

[[listener]]
name = "web"
address = "0.0.0.0:8080"
group = "api"
max_connections = 100

[[listener]]
address = "[::1]:0"
congestion = "system"

[[listener]]
address = "127.0.0.1:0"

[[backend]]
address = "api.example:9000"
group = "api"
weight = 256

[[backend]]
name = "spare"
address = "[::1]:9000"
group = "api"
backup = true
state = "DRAIN"

[[backend]]
address = "localhost:7000"
weight = 0

[[backend]]
address = "127.0.0.1:7001"
state = "maint"

[[backend]]
address = "127.0.0.1:9000"
group = "api"

[groups.api]
balance = "rr"
congestion = "system"

[groups.default]
"#;

/// Deterministic stand-in for DNS.
pub(super) fn fake_resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    match host {
        "localhost" => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        "api.example" => Ok(SocketAddr::from(([10, 0, 0, 7], port))),
        _ => Err("Name or service not known".into()),
    }
}

pub(super) fn parse(text: &str) -> Result<ProxyConfig, ConfigError> {
    from_str_with(Path::new(FILE), text, &mut fake_resolve)
}

pub(super) fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

pub(super) fn assert_round_trip(cfg: &ProxyConfig) {
    let text = cfg.to_toml();
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        back,
        ProxyConfig { source: Some(crate::conffile::Origin::new(Path::new(FILE), "")), ..cfg.clone() },
        "{text}"
    );
    assert_eq!(back.to_toml(), text);
}

//! Proxy counters and their Prometheus rendering.
//!
//! Each reactor owns a [`ProxyStats`] and sends a copy of the whole thing (not deltas) to the
//! coordinator every tick with `try_send`: a dropped message loses nothing, the next one carries
//! the same totals. The coordinator keeps the latest copy per reactor, sums them and renders the
//! `/metrics` text, which the admin thread serves.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use super::config::ProxyConfig;
use super::session::CloseReason;
use crate::engine::coordinator::Snapshot;
use crate::engine::pool::PoolStats;

/// Upper bounds (µs) of the connect-time histogram buckets; a final `+Inf` bucket follows.
pub const CONNECT_BUCKETS_US: [u64; 9] = [500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000];
const N_BUCKETS: usize = CONNECT_BUCKETS_US.len() + 1;

#[derive(Clone, Debug, Default)]
pub struct ProxyStats {
    pub listener_accepted: Vec<u64>,
    pub listener_active: Vec<u64>,
    /// Flat backend index (groups in order, backends in order).
    pub backend_sessions: Vec<u64>,
    pub backend_active: Vec<u64>,
    pub backend_connect_failures: Vec<u64>,
    /// Passive health marks this reactor made (relayed marks are not counted again).
    pub backend_passive_down: Vec<u64>,
    pub closes: [u64; CloseReason::ALL.len()],
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    pub splice_bytes: u64,
    /// Sessions that wanted a pipe and got none (EMFILE): they copied instead.
    pub splice_fallbacks: u64,
    /// `splice = "auto"`: directions switched from copy to splice (bulk reads) and from splice
    /// back to copy (small reads).
    pub switches_to_splice: u64,
    pub switches_to_copy: u64,
    /// Sessions whose first client bytes left with the backend handshake's last ACK.
    pub smart_connects: u64,
    /// The ring pool: rings holding parked bytes now (`in_use`), free ones cached, and the
    /// created / freed / exhausted counts.
    pub rings: PoolStats,
    /// The pipe pool: pipes holding spliced bytes now, cached empty ones, and the counts.
    pub pipes: PoolStats,
    pub connect_buckets: [u64; N_BUCKETS],
    pub connect_sum_us: u64,
    pub connect_count: u64,
    pub accept_pauses: u64,
    pub active: u64,
    /// Health view of reactor 0, which owns the active checks; empty elsewhere.
    pub health: Vec<bool>,
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl ProxyStats {
    pub fn new(listeners: usize, backends: usize) -> ProxyStats {
        ProxyStats {
            listener_accepted: vec![0; listeners],
            listener_active: vec![0; listeners],
            backend_sessions: vec![0; backends],
            backend_active: vec![0; backends],
            backend_connect_failures: vec![0; backends],
            backend_passive_down: vec![0; backends],
            ..Default::default()
        }
    }

    pub fn record_connect_us(&mut self, us: u64) {
        let i = CONNECT_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(N_BUCKETS - 1);
        self.connect_buckets[i] += 1;
        self.connect_sum_us += us;
        self.connect_count += 1;
    }
}

impl Snapshot for ProxyStats {
    fn merge(&mut self, o: &ProxyStats) {
        add_vec(&mut self.listener_accepted, &o.listener_accepted);
        add_vec(&mut self.listener_active, &o.listener_active);
        add_vec(&mut self.backend_sessions, &o.backend_sessions);
        add_vec(&mut self.backend_active, &o.backend_active);
        add_vec(&mut self.backend_connect_failures, &o.backend_connect_failures);
        add_vec(&mut self.backend_passive_down, &o.backend_passive_down);
        for (x, y) in self.closes.iter_mut().zip(o.closes) {
            *x += y;
        }
        for (x, y) in self.connect_buckets.iter_mut().zip(o.connect_buckets) {
            *x += y;
        }
        self.bytes_client_to_server += o.bytes_client_to_server;
        self.bytes_server_to_client += o.bytes_server_to_client;
        self.splice_bytes += o.splice_bytes;
        self.splice_fallbacks += o.splice_fallbacks;
        self.switches_to_splice += o.switches_to_splice;
        self.switches_to_copy += o.switches_to_copy;
        self.smart_connects += o.smart_connects;
        self.rings.merge(&o.rings);
        self.pipes.merge(&o.pipes);
        self.connect_sum_us += o.connect_sum_us;
        self.connect_count += o.connect_count;
        self.accept_pauses += o.accept_pauses;
        self.active += o.active;
    }
}

impl ProxyStats {
    pub fn errors(&self) -> u64 {
        CloseReason::ALL.iter().filter(|r| **r != CloseReason::Done).map(|r| self.closes[r.index()]).sum()
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Configuration generations (0 at start-up, one more per SIGHUP reload sent to the reactors).
#[derive(Clone, Copy, Debug, Default)]
pub struct Generations {
    /// The latest one the coordinator loaded and sent.
    pub loaded: u64,
    /// The one every reactor runs (the lowest any reactor's latest report carries).
    pub applied: u64,
}

/// The buffer pools' families: name, type, help, and the figure of one pool (ring or pipe).
type PoolFamily = (&'static str, &'static str, &'static str, fn(&PoolStats) -> u64);
const POOL_FAMILIES: [PoolFamily; 5] = [
    ("netforge_proxy_buffers_in_use", "gauge", "Pooled buffers holding bytes that wait for a slow peer.", |p| p.in_use),
    (
        "netforge_proxy_buffers_cached",
        "gauge",
        "Free pooled buffers kept for reuse (at most the high-water mark).",
        |p| p.cached,
    ),
    ("netforge_proxy_buffers_created_total", "counter", "Pooled buffers allocated because the cache was empty.", |p| {
        p.created
    }),
    (
        "netforge_proxy_buffers_freed_total",
        "counter",
        "Pooled buffers freed: returned past the high-water mark, trimmed while idle, or not reusable.",
        |p| p.freed,
    ),
    (
        "netforge_proxy_buffers_exhausted_total",
        "counter",
        "Buffer takes refused because the pool's bound was reached.",
        |p| p.exhausted,
    ),
];

/// Prometheus text exposition (version 0.0.4) of the summed counters.
pub fn render(cfg: &ProxyConfig, t: &ProxyStats, up: &[bool], g: Generations) -> String {
    let mut o = String::with_capacity(4096);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut o, "netforge_proxy_connections_total", "counter", "Client connections accepted.");
    for (i, l) in cfg.listeners.iter().enumerate() {
        let v = t.listener_accepted.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "netforge_proxy_connections_total{{listener=\"{}\"}} {v}", esc(&l.name));
    }
    family(&mut o, "netforge_proxy_connections_active", "gauge", "Client sessions open now.");
    for (i, l) in cfg.listeners.iter().enumerate() {
        let v = t.listener_active.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "netforge_proxy_connections_active{{listener=\"{}\"}} {v}", esc(&l.name));
    }
    let backends: Vec<(String, String)> =
        cfg.groups.iter().flat_map(|g| g.backends.iter().map(move |b| (g.name.clone(), b.name.clone()))).collect();
    let label = |i: usize| format!("group=\"{}\",backend=\"{}\"", esc(&backends[i].0), esc(&backends[i].1));
    family(&mut o, "netforge_proxy_backend_sessions_total", "counter", "Sessions connected to each backend.");
    for i in 0..backends.len() {
        let v = t.backend_sessions.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "netforge_proxy_backend_sessions_total{{{}}} {v}", label(i));
    }
    family(&mut o, "netforge_proxy_backend_sessions_active", "gauge", "Sessions open to each backend.");
    for i in 0..backends.len() {
        let v = t.backend_active.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "netforge_proxy_backend_sessions_active{{{}}} {v}", label(i));
    }
    family(&mut o, "netforge_proxy_backend_connect_failures_total", "counter", "Failed backend connects.");
    for i in 0..backends.len() {
        let v = t.backend_connect_failures.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "netforge_proxy_backend_connect_failures_total{{{}}} {v}", label(i));
    }
    family(
        &mut o,
        "netforge_proxy_backend_passive_down_total",
        "counter",
        "Passive health marks: passive_fall failed connects in a row took the backend out of every reactor for one interval.",
    );
    for i in 0..backends.len() {
        let v = t.backend_passive_down.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "netforge_proxy_backend_passive_down_total{{{}}} {v}", label(i));
    }
    family(&mut o, "netforge_proxy_backend_up", "gauge", "1 when the backend passes health checks.");
    for i in 0..backends.len() {
        let v = u8::from(up.get(i).copied().unwrap_or(false));
        let _ = writeln!(o, "netforge_proxy_backend_up{{{}}} {v}", label(i));
    }
    family(&mut o, "netforge_proxy_errors_total", "counter", "Sessions that ended other than by FIN both ways.");
    for r in CloseReason::ALL.iter().filter(|r| **r != CloseReason::Done) {
        let _ = writeln!(o, "netforge_proxy_errors_total{{cause=\"{}\"}} {}", r.name(), t.closes[r.index()]);
    }
    family(&mut o, "netforge_proxy_sessions_closed_total", "counter", "Sessions closed, by reason.");
    for r in CloseReason::ALL {
        let _ = writeln!(o, "netforge_proxy_sessions_closed_total{{reason=\"{}\"}} {}", r.name(), t.closes[r.index()]);
    }
    family(&mut o, "netforge_proxy_bytes_total", "counter", "Bytes forwarded.");
    let _ = writeln!(o, "netforge_proxy_bytes_total{{direction=\"client_to_backend\"}} {}", t.bytes_client_to_server);
    let _ = writeln!(o, "netforge_proxy_bytes_total{{direction=\"backend_to_client\"}} {}", t.bytes_server_to_client);
    family(&mut o, "netforge_proxy_forwarded_bytes_total", "counter", "Bytes forwarded by method.");
    let all = t.bytes_client_to_server + t.bytes_server_to_client;
    let _ = writeln!(o, "netforge_proxy_forwarded_bytes_total{{method=\"splice\"}} {}", t.splice_bytes);
    let _ = writeln!(o, "netforge_proxy_forwarded_bytes_total{{method=\"copy\"}} {}", all - t.splice_bytes.min(all));
    family(
        &mut o,
        "netforge_proxy_splice_fallbacks_total",
        "counter",
        "Directions that copied because no pipe could be had.",
    );
    let _ = writeln!(o, "netforge_proxy_splice_fallbacks_total {}", t.splice_fallbacks);
    family(
        &mut o,
        "netforge_proxy_splice_switches_total",
        "counter",
        "splice = auto: directions switched to splice (a read filled the buffer) or back to copy (small reads).",
    );
    let _ = writeln!(o, "netforge_proxy_splice_switches_total{{to=\"splice\"}} {}", t.switches_to_splice);
    let _ = writeln!(o, "netforge_proxy_splice_switches_total{{to=\"copy\"}} {}", t.switches_to_copy);
    family(
        &mut o,
        "netforge_proxy_smart_connects_total",
        "counter",
        "Sessions whose first client bytes were written as the backend connect completed (smart_connect).",
    );
    let _ = writeln!(o, "netforge_proxy_smart_connects_total {}", t.smart_connects);
    for (name, kind, help, get) in POOL_FAMILIES {
        family(&mut o, name, kind, help);
        for (label, pool) in [("ring", &t.rings), ("pipe", &t.pipes)] {
            let _ = writeln!(o, "{name}{{kind=\"{label}\"}} {}", get(pool));
        }
    }
    family(&mut o, "netforge_proxy_backend_connect_seconds", "histogram", "Backend connect time.");
    let mut cum = 0;
    for (i, b) in CONNECT_BUCKETS_US.iter().enumerate() {
        cum += t.connect_buckets[i];
        let _ = writeln!(o, "netforge_proxy_backend_connect_seconds_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
    }
    cum += t.connect_buckets[N_BUCKETS - 1];
    let _ = writeln!(o, "netforge_proxy_backend_connect_seconds_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(o, "netforge_proxy_backend_connect_seconds_sum {}", t.connect_sum_us as f64 / 1e6);
    let _ = writeln!(o, "netforge_proxy_backend_connect_seconds_count {}", t.connect_count);
    family(&mut o, "netforge_proxy_accept_pauses_total", "counter", "Listener pauses on EMFILE/ENFILE.");
    let _ = writeln!(o, "netforge_proxy_accept_pauses_total {}", t.accept_pauses);
    family(
        &mut o,
        "netforge_proxy_config_generation",
        "gauge",
        "Configuration generation: 0 at start-up, one more per SIGHUP reload sent to the reactors.",
    );
    let _ = writeln!(o, "netforge_proxy_config_generation {}", g.loaded);
    family(
        &mut o,
        "netforge_proxy_config_generation_applied",
        "gauge",
        "Configuration generation every reactor runs: a reload is in force once this equals netforge_proxy_config_generation.",
    );
    let _ = writeln!(o, "netforge_proxy_config_generation_applied {}", g.applied);
    o
}

/// Serves `GET /metrics` (HTTP/1.0 or 1.1, `Connection: close`) from the latest rendered text,
/// on the calling thread, for as long as the process runs: a non-blocking reactor where no
/// client can hold up another (see [`super::admin`] for its bounds). It never touches a proxy
/// reactor.
pub fn serve_admin(listener: TcpListener, text: Arc<Mutex<String>>) {
    if let Err(e) = super::admin::serve(listener, text) {
        log::error!("proxy: admin endpoint stopped: {e}");
    }
}

/// Binds the admin address (port 0 resolves to a free port).
pub fn bind_admin(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_marks_are_summed_and_rendered_per_backend() {
        let text = "[[listener]]\naddress = \"127.0.0.1:0\"\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\ngroup = \"g\"\n";
        let cfg = crate::proxy::config::from_str(std::path::Path::new("t.toml"), text).unwrap();
        let mut r0 = ProxyStats::new(1, 2);
        let mut r1 = ProxyStats::new(1, 2);
        r0.backend_passive_down[0] = 1;
        r1.backend_passive_down = vec![2, 1];
        let mut t = ProxyStats::default();
        t.merge(&r0);
        t.merge(&r1);
        let m = render(&cfg, &t, &[true, true], Generations { loaded: 2, applied: 1 });
        assert!(m.contains("# TYPE netforge_proxy_backend_passive_down_total counter\n"), "{m}");
        assert!(m.contains("\nnetforge_proxy_backend_passive_down_total{group=\"default\",backend=\"a\"} 3\n"), "{m}");
        assert!(m.contains("\nnetforge_proxy_backend_passive_down_total{group=\"g\",backend=\"b\"} 1\n"), "{m}");
        assert!(m.contains("\nnetforge_proxy_config_generation 2\n"), "{m}");
        assert!(m.contains("\nnetforge_proxy_config_generation_applied 1\n"), "{m}");
    }
}

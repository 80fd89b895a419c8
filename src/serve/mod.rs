//! `netforge serve`: the target. Accepts on one SO_REUSEPORT listener per reactor and holds,
//! echoes or discards, each reactor running one [`Sink`] (the component goon embeds too; see
//! [`crate::target`] for its accept rules). Nothing spins and nothing exits.

pub(crate) mod args;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::accept::Admission;
use crate::engine::coordinator::{self, Ctl, Flow, Interval, Reports, Role};
use crate::engine::{Cx, Handle, Handler, Key, Kind, Pool, Ready};
use crate::net::tune::SockBufs;
use crate::sys::Signal;
use crate::target::{Mode, Sink, SinkConn, SinkStats};

/// `--max-conns` without the flag: this, or what the open-file limit allows when lower.
pub const DEFAULT_MAX_CONNS: usize = 100_000;

/// The default `--max-conns`: [`DEFAULT_MAX_CONNS`], or one connection per descriptor of the
/// (raised) open-file limit past [`crate::sys::FD_RESERVE`], whichever is lower.
pub fn default_max_conns() -> usize {
    let fit = crate::sys::open_file_limit().saturating_sub(crate::sys::FD_RESERVE).max(1);
    DEFAULT_MAX_CONNS.min(usize::try_from(fit).unwrap_or(usize::MAX))
}

pub enum ServeCmd {
    Stop,
}

struct ServeReactor {
    sink: Sink,
    stats_tx: Sender<(usize, SinkStats, bool)>,
    stopping: bool,
}

impl Handler for ServeReactor {
    type Cmd = ServeCmd;
    type Entry = SinkConn;

    fn on_start(&mut self, cx: &mut Cx<SinkConn>) -> io::Result<()> {
        cx.table.set_capacity(self.sink.cap(), 0);
        self.sink.register(cx)
    }

    fn on_ready(&mut self, cx: &mut Cx<SinkConn>, key: Key, _sock: usize, ready: Ready) {
        self.sink.on_ready(cx, key, ready);
    }

    fn on_handle(&mut self, cx: &mut Cx<SinkConn>, h: Handle, ready: Ready) {
        if self.sink.owns(h) {
            self.sink.on_handle(cx, ready);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<SinkConn>, key: Key, kind: Kind) {
        self.sink.on_timer(cx, key, kind);
    }

    fn on_handle_timer(&mut self, cx: &mut Cx<SinkConn>, h: Handle, kind: Kind) {
        if self.sink.owns(h) {
            self.sink.on_handle_timer(cx, kind);
        }
    }

    fn on_command(&mut self, cx: &mut Cx<SinkConn>, cmd: ServeCmd) {
        match cmd {
            ServeCmd::Stop => {
                self.sink.close_all(cx);
                self.stopping = true;
            }
        }
    }

    fn on_tick(&mut self, cx: &mut Cx<SinkConn>) {
        self.sink.sweep(cx.now);
        let _ = self.stats_tx.try_send((cx.id, self.sink.stats, false));
    }

    fn on_wake(&mut self, cx: &mut Cx<SinkConn>) {
        self.sink.on_wake(cx);
    }

    fn finished(&self) -> bool {
        self.stopping
    }

    fn on_exit(&mut self, cx: &mut Cx<SinkConn>) {
        // The coordinator waits for this one: a blocking send with a deadline is fine at exit.
        let _ = self.stats_tx.send_timeout((cx.id, self.sink.stats, true), Duration::from_secs(1));
    }
}

/// Options of `netforge serve`, resolved (flags and defaults); `--print-config` writes them as
/// TOML with the key names of the flags.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub mode: Mode,
    pub max_conns: usize,
    /// Resolved: never 0.
    pub threads: usize,
    #[serde(serialize_with = "crate::config::duration")]
    pub interval: Duration,
    /// `--reuse-port`: share the address with other processes (see [`crate::net::listen`]).
    pub reuse_port: bool,
    #[serde(rename = "socket_buffers", serialize_with = "crate::config::sockbufs")]
    pub(crate) bufs: SockBufs,
    /// `--alpn`: the protocols `--tls` accepts, in preference order (empty: any client, no
    /// protocol negotiated; not printed then, since without `--tls` there is none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// `--tls`: where the certificate comes from.
    pub tls: Option<crate::tls::ServerCert>,
    /// Built from `tls` when the flags were checked.
    #[serde(skip)]
    pub tls_config: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Runs the server until SIGINT/SIGTERM (or `stop` receives), printing a line per interval
/// when something changed and the totals at the end. The first stdout line names the bound
/// address (`port 0` resolves to an ephemeral port there).
pub fn run(cfg: &ServeConfig, signals: &Receiver<Signal>, out: &mut dyn Write) -> Result<(), crate::error::Error> {
    let threads = cfg.threads.max(1);
    use crate::net::listen::{self, ListenTuning, Sharing};
    let (addr, listeners) = listen::group(
        cfg.listen,
        threads,
        listen::LISTEN_BACKLOG,
        &ListenTuning::default(),
        Sharing::from_flag(cfg.reuse_port),
    )
    .map_err(|source| crate::error::Error::bind("--listen", cfg.listen, source, Some("pass --reuse-port")))?;
    // The limit is the process's: any reactor may hold all of it.
    let gate = Admission::new(cfg.max_conns, threads, None);
    let (stats_tx, stats_rx) = crossbeam_channel::bounded(threads * 8);
    let handlers: Vec<ServeReactor> = listeners
        .into_iter()
        .map(|l| ServeReactor {
            sink: Sink::new(l, cfg.mode, gate.clone(), cfg.bufs).with_tls(cfg.tls_config.clone()),
            stats_tx: stats_tx.clone(),
            stopping: false,
        })
        .collect();
    let pool = Pool::spawn("serve", handlers, Duration::from_millis(100)).map_err(crate::error::Error::Io)?;
    gate.set_wakers(pool.wakers());
    let _ = writeln!(
        out,
        "netforge serve: listening on {addr} (mode {}{}, {}, max {})",
        cfg.mode.as_str(),
        match &cfg.tls {
            None => String::new(),
            Some(crate::tls::ServerCert::SelfSigned(names)) => {
                format!(", tls with a self-signed certificate for {}", names.join(", "))
            }
            Some(crate::tls::ServerCert::Files { cert, .. }) => format!(", tls with {}", cert.display()),
        } + &if cfg.alpn.is_empty() { String::new() } else { format!(" and alpn {}", cfg.alpn.join(",")) },
        crate::stats::counted(threads as u64, "reactor", "reactors"),
        crate::stats::counted(gate.cap() as u64, "connection", "connections")
    );
    let _ = out.flush();
    let mut role = Coordinated {
        pool,
        reports: Reports::new(threads),
        interval: Interval::new(Instant::now(), cfg.interval),
        last_printed: SinkStats::default(),
        peak_active: 0,
    };
    coordinator::run(&mut role, &stats_rx, signals, out);
    let mut totals = role.reports.total();
    // Per-reactor peaks do not add up to a global peak, and the coordinator's samples miss a
    // connection that came and went between two of them: the shared limit counts exactly.
    totals.peak_active = (gate.peak() as u64).max(role.peak_active);
    let _ = writeln!(out, "{}", serve_final(&totals));
    let _ = out.flush();
    Ok(())
}

/// The coordinator's side of `serve`.
struct Coordinated {
    pool: Pool<ServeCmd>,
    reports: Reports<SinkStats>,
    interval: Interval,
    last_printed: SinkStats,
    peak_active: u64,
}

impl Role for Coordinated {
    type Report = (usize, SinkStats, bool);

    const MAX_WAIT: Duration = Duration::from_millis(500);

    fn wake_at(&self, _ctl: &Ctl) -> Option<Instant> {
        self.interval.next()
    }

    fn on_report(&mut self, (id, s, fin): Self::Report, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        self.reports.set(id, s, fin);
        self.peak_active = self.peak_active.max(self.reports.total().active);
        Flow::Continue
    }

    fn on_closed(&mut self) -> Flow {
        // `run` keeps a sender: this does not happen.
        Flow::Continue
    }

    fn on_turn(&mut self, now: Instant, _ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        if self.interval.due(now) {
            let total = self.reports.total();
            if total != self.last_printed {
                let _ = writeln!(out, "{}", serve_line(&total));
                let _ = out.flush();
                self.last_printed = total;
            }
        }
        if self.reports.all_done() {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        self.pool.broadcast(|_| ServeCmd::Stop);
        ctl.stop(Some(Instant::now() + Duration::from_secs(5)));
    }

    fn on_user1(&mut self, out: &mut dyn Write) {
        let _ = writeln!(out, "{}", serve_line(&self.reports.total()));
    }

    fn on_late(&mut self) {
        log::warn!("serve: reactors did not report within the stop deadline");
    }
}

fn serve_line(s: &SinkStats) -> String {
    let mut line = format!(
        "serve: active {}, accepted {}, closed {}, bytes in {}, bytes out {}, accept pauses {}",
        s.active, s.accepted, s.closed, s.bytes_in, s.bytes_out, s.accept_pauses
    );
    // Echo only, once a ring was ever needed: the pool's gauges.
    if s.rings.created > 0 {
        line += &format!(", echo rings in use {}, cached {}", s.rings.in_use, s.rings.cached);
    }
    if s.tls != Default::default() {
        line += &format!(", tls handshakes {}, tls failed {}", s.tls.handshakes, s.tls.failed);
    }
    line += &ws_words(s);
    line
}

/// The `ws` modes' counters, once there is one: `, upgraded N, refused N, ...`.
fn ws_words(s: &SinkStats) -> String {
    let w = &s.ws;
    if *w == crate::ws::sink::SinkWsStats::default() {
        return String::new();
    }
    format!(
        ", upgraded {}, refused {}, head timeouts {}, pings {}, frames {}, protocol errors {}",
        w.upgraded, w.refused, w.timeouts, w.pings, w.frames, w.protocol_errors
    )
}

fn serve_final(s: &SinkStats) -> String {
    let mut out = format!(
        "--- netforge serve statistics ---\naccepted {}, peak active {}, closed {}, bytes in {}, bytes out {}, accept pauses {}",
        s.accepted, s.peak_active, s.closed, s.bytes_in, s.bytes_out, s.accept_pauses
    );
    if s.rings.created > 0 {
        let r = &s.rings;
        out += &format!(
            "\necho rings: created {}, freed {}, cached {}, exhausted {}",
            r.created, r.freed, r.cached, r.exhausted
        );
    }
    if s.tls != Default::default() {
        out +=
            &format!("\ntls: handshakes {}, failed before the handshake was done {}", s.tls.handshakes, s.tls.failed);
    }
    let ws = ws_words(s);
    if !ws.is_empty() {
        out += &format!("\nwebsocket: {}", &ws[2..]);
    }
    out
}

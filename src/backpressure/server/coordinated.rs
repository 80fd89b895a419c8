//! `bp server`'s start-up and its coordinator: binding, spawning the reactors, the interval lines,
//! and the dashboard samples relayed to every reactor.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::stats::{final_lines, interval_line};
use super::{BpReactor, Report, ServerCmd, ServerStats, LINE_EVERY};
use crate::backpressure::config::ServerConfig;
use crate::backpressure::web::DashboardSample;
use crate::engine::accept::{Acceptor, Admission};
use crate::engine::coordinator::{self, Ctl, Flow, Interval, Reports, Role};
use crate::engine::pool::BufPool;
use crate::engine::Pool;
use crate::sys::Signal;

/// Runs the lab server until SIGINT/SIGTERM. The first stdout line names the bound address.
/// `listen_key` names where `cfg.listen` came from (see [`ServerConfig::listen_key`]).
pub fn run(
    cfg: &ServerConfig,
    listen_key: &str,
    threads: usize,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) -> Result<(), crate::error::Error> {
    let threads = threads.max(1);
    let tuning = crate::net::listen::ListenTuning { rcvbuf: cfg.rcvbuf.map(|v| v as usize), mss: cfg.mss };
    let sharing = crate::net::listen::Sharing::from_flag(cfg.reuse_port);
    let (addr, listeners) =
        crate::net::listen::group(cfg.listen, threads, crate::net::listen::LISTEN_BACKLOG, &tuning, sharing).map_err(
            |source| {
                let share = "pass --reuse-port (or set reuse_port = true)";
                crate::error::Error::bind(listen_key, cfg.listen, source, Some(share))
            },
        )?;
    // The limit is the process's: any reactor may hold all of it.
    let gate = Admission::new(cfg.max_connections, threads, None);
    let (tx, rx) = crossbeam_channel::bounded::<Report>(threads * 8);
    let handlers: Vec<BpReactor> = listeners
        .into_iter()
        .map(|l| BpReactor {
            cfg: cfg.clone(),
            limits: cfg.ws_limits(),
            acceptor: Acceptor::new(l, "the listener", gate.clone()),
            cap: gate.cap(),
            next_id: 0,
            closed_read: 0,
            stats: ServerStats::default(),
            scratch: vec![0u8; cfg.read_size].into_boxed_slice(),
            heads: BufPool::new(cfg.http_head_max, gate.cap(), super::HEAD_CACHE),
            out: tx.clone(),
            stopping: false,
            sample_cursor: 0,
            next_idle_sweep: Instant::now(),
        })
        .collect();
    drop(tx);
    let pool = Pool::spawn("bp-server", handlers, cfg.sample_interval).map_err(crate::error::Error::Io)?;
    gate.set_wakers(pool.wakers());
    let _ = writeln!(
        out,
        "netforge bp server: listening on {addr} ({}, read {} B every {})",
        cfg.protocol,
        cfg.read_size,
        crate::units::go_duration(cfg.read_delay)
    );
    let _ = out.flush();
    let start = Instant::now();
    let mut role = Coordinated {
        pool,
        start,
        reports: Reports::new(threads),
        interval: Interval::new(start, LINE_EVERY),
        last_read: 0,
    };
    coordinator::run(&mut role, &rx, signals, out);
    let totals = role.reports.total();
    let _ = writeln!(out, "{}", final_lines(&totals));
    let _ = out.flush();
    role.pool.join();
    Ok(())
}

/// The coordinator's side of `bp server`: interval lines, and dashboard samples relayed to
/// every reactor (a dashboard connected to one sees the connections of all).
struct Coordinated {
    pool: Pool<ServerCmd>,
    start: Instant,
    reports: Reports<ServerStats>,
    interval: Interval,
    last_read: u64,
}

impl Role for Coordinated {
    type Report = Report;

    const MAX_WAIT: Duration = Duration::from_millis(200);

    fn wake_at(&self, ctl: &Ctl) -> Option<Instant> {
        // No interval lines while stopping.
        self.interval.next().filter(|_| !ctl.stopping())
    }

    fn on_report(&mut self, r: Report, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        self.reports.set(r.id, r.stats, r.fin);
        if !r.samples.is_empty() && !r.fin {
            let batch: Vec<Arc<str>> = r
                .samples
                .iter()
                .map(|s| {
                    Arc::from(
                        DashboardSample {
                            conn: s.conn,
                            peer: s.peer,
                            t: s.t,
                            read_bytes: s.read_bytes,
                            inq: s.inq,
                            rcv_wnd: s.rcv_wnd,
                        }
                        .to_json(),
                    )
                })
                .collect();
            let batch = Arc::new(batch);
            self.pool.broadcast(|_| ServerCmd::Samples(batch.clone()));
        }
        Flow::Continue
    }

    fn on_turn(&mut self, now: Instant, ctl: &mut Ctl, out: &mut dyn Write) -> Flow {
        if self.reports.all_done() {
            return Flow::Exit;
        }
        if !ctl.stopping() && self.interval.due(now) {
            let total = self.reports.total();
            if total.active > 0 || total.bytes_read != self.last_read {
                let _ = writeln!(out, "{}", interval_line(now - self.start, &total, total.bytes_read - self.last_read));
                let _ = out.flush();
            }
            self.last_read = total.bytes_read;
        }
        Flow::Continue
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        self.pool.broadcast(|_| ServerCmd::Stop);
        ctl.stop(Some(Instant::now() + Duration::from_secs(5)));
    }

    fn on_user1(&mut self, out: &mut dyn Write) {
        let _ = writeln!(out, "{}", interval_line(self.start.elapsed(), &self.reports.total(), 0));
    }

    fn on_late(&mut self) {
        log::warn!("bp server: reactors did not report within the stop deadline");
    }
}

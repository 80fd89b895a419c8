//! `netforge proxy`: an L4 (TCP) proxy and load balancer on the shared mio reactors.
//!
//! The pure parts are tested without sockets: `config` turns `lb.toml` or the quick-start flags
//! into a validated [`config::ProxyConfig`], and `lb` picks a backend for each new session from a
//! snapshot of the group's health, weights and live session counts. `session` moves the bytes of
//! one client/backend pair, `reactor` is the per-thread [`crate::engine::Handler`] (listeners,
//! sessions, health checks on reactor 0), `stats` sums the reactors' counters into `/metrics`.
//!
//! The coordinator (this module's [`run`], on the main thread) owns no socket but the admin
//! listener (served by its own small thread): it merges per-tick stats, relays reactor 0's
//! health vector and every reactor's passive DOWN marks to the other reactors, and turns
//! signals into commands: SIGTERM/SIGINT drain (a second one stops at once), SIGHUP reloads
//! the file, SIGUSR1 prints a summary line.

pub mod admin;
pub(crate) mod args;
pub mod config;
pub mod lb;
pub mod reactor;
pub mod reload;
pub mod session;
pub mod stats;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::engine::accept::Admission;
use crate::engine::coordinator::{self, Ctl, Flow, Reports, Role};
use crate::engine::Pool;
use crate::error::Error;
use crate::stats::counted;
use crate::sys::Signal;
use config::ProxyConfig;
use reactor::{Cmd, ProxyReactor, Report};
use stats::ProxyStats;

/// Period of the reactors' stats flush (and so of health relays and /metrics freshness).
pub const TICK: Duration = Duration::from_millis(100);
/// How long the coordinator waits for reactors to report after the drain deadline.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

fn backend_count(cfg: &ProxyConfig) -> usize {
    cfg.groups.iter().map(|g| g.backends.len()).sum()
}

/// The coordinator's side of passive health (see `reactor`'s module doc): the latest passive
/// deadline it knows per flat backend index of the running configuration, so a reactor's mark
/// is relayed to the others once, and again only if a later mark extends it.
struct PassiveRelay {
    /// Configuration generation: 0 at start-up, one more per reload sent to the reactors.
    generation: u64,
    until: Vec<Option<Instant>>,
}

impl PassiveRelay {
    fn new(backends: usize) -> PassiveRelay {
        PassiveRelay { generation: 0, until: vec![None; backends] }
    }

    /// A new configuration: indices change meaning, so the known deadlines go (the reactors
    /// keep the marks of kept backends and report them again under the new generation, and a
    /// reactor ignores a relayed deadline it already has). Returns the new generation.
    fn reload(&mut self, backends: usize) -> u64 {
        self.generation += 1;
        self.until = vec![None; backends];
        self.generation
    }

    /// The deadlines in a reactor's report that are later than the known ones. A report of
    /// another generation (sent before that reactor applied a reload, or by one that missed
    /// it) yields none: its indices may name other backends now.
    fn news(&self, generation: u64, marks: &[Option<Instant>]) -> Vec<(usize, Instant)> {
        if generation != self.generation || marks.len() != self.until.len() {
            return Vec::new();
        }
        marks
            .iter()
            .zip(&self.until)
            .enumerate()
            .filter_map(|(i, (m, k))| match (m, k) {
                (Some(m), Some(k)) if m <= k => None,
                (Some(m), _) => Some((i, *m)),
                (None, _) => None,
            })
            .collect()
    }

    /// `until` for `backend` reached every other reactor: stop relaying it.
    fn relayed(&mut self, backend: usize, until: Instant) {
        if let Some(k) = self.until.get_mut(backend) {
            *k = Some(k.map_or(until, |k| k.max(until)));
        }
    }
}

fn summary(t: &ProxyStats, up: &[bool], cut: u64) -> String {
    format!(
        "proxy: active {}, accepted {}, bytes client->backend {}, backend->client {}, errors {}, backends up {}/{}, cut {}",
        t.active,
        t.listener_accepted.iter().sum::<u64>(),
        t.bytes_client_to_server,
        t.bytes_server_to_client,
        t.errors(),
        up.iter().filter(|u| **u).count(),
        up.len(),
        cut
    )
}

/// Where listener `i`'s congestion control came from, as an error names it: `--congestion`, or
/// `FILE:LINE:COL:` and the listener's own key or the global one.
fn congestion_key(cfg: &ProxyConfig, i: usize) -> String {
    match (&cfg.source, cfg.overrides.congestion) {
        (Some(o), None) => {
            let own = format!("listener[{i}].congestion");
            o.name(if o.written(&own) { &own } else { "congestion" })
        }
        _ => "--congestion".into(),
    }
}

/// Runs the proxy until a signal ends it.
pub fn run(cfg: ProxyConfig, threads: usize, signals: &Receiver<Signal>, out: &mut dyn Write) -> Result<(), Error> {
    let threads = threads.max(1);
    let mut placement = cfg.cpu_affinity.place(threads);
    let steer = placement.steering(threads);
    let mut steer_error: Option<(usize, io::Error)> = None;
    // Bind every listener on every reactor before anything runs: a bind error ends start-up.
    let mut per_reactor: Vec<Vec<std::net::TcpListener>> = (0..threads).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    use crate::net::listen::{self, ListenTuning, Sharing};
    let sharing = Sharing::from_flag(cfg.reuse_port);
    for (i, l) in cfg.listeners.iter().enumerate() {
        let (addr, socks) =
            listen::group(l.address, threads, listen::LISTEN_BACKLOG, &ListenTuning::default(), sharing).map_err(
                |source| {
                    let (key, share) = match &cfg.source {
                        Some(o) => (o.name(&format!("listener[{i}].address")), "set reuse_port = true"),
                        None => ("--laddr".to_string(), "pass --reuse-port"),
                    };
                    Error::bind(key, l.address, source, Some(share))
                },
            )?;
        bound.push(addr);
        for (r, s) in socks.into_iter().enumerate() {
            // Linux copies TCP_NODELAY from the listener to every accepted socket: set once
            // here, not once per session. (Best effort: the reactor still works without it.)
            let _ = crate::net::sockopt::set_nodelay(&s);
            // The same holds for TCP_CONGESTION (the name was checked at load).
            if let Some(c) = l.congestion {
                c.apply(&s).map_err(|e| {
                    let key = congestion_key(&cfg, i);
                    Error::Preflight(format!("{key}: listener {} ({addr}): TCP_CONGESTION {}: {e}", l.name, c.as_str()))
                })?;
            }
            // A pinned reactor's listener takes the connections whose SYN its CPU handled
            // (Linux 6.1 and later; older kernels pick by hash as before). Best effort.
            if let Some(cpu) = steer.get(r).copied().flatten() {
                if let Err(e) = crate::net::sockopt::set_incoming_cpu(&s, cpu) {
                    steer_error.get_or_insert((cpu, e));
                }
            }
            per_reactor[r].push(s);
        }
    }
    let metrics = Arc::new(Mutex::new(String::new()));
    let admin = match cfg.admin {
        Some(a) => {
            let l = stats::bind_admin(a).map_err(|source| {
                let key = match (&cfg.source, cfg.overrides.admin) {
                    (Some(o), None) => o.name("admin.address"),
                    _ => "--admin".to_string(),
                };
                Error::bind(format!("{key} (the /metrics endpoint)"), a, source, None)
            })?;
            let addr = l.local_addr()?;
            let text = metrics.clone();
            std::thread::Builder::new().name("admin".into()).spawn(move || stats::serve_admin(l, text))?;
            Some(addr)
        }
        None => None,
    };
    let (tx, rx) = crossbeam_channel::bounded::<Report>(threads * 16);
    // Connection limits are the process's, not a reactor's share: each listener's inside the
    // global one, counted over every reactor.
    let global = Admission::new(cfg.max_connections, threads, None);
    let gates: Vec<Arc<Admission>> =
        cfg.listeners.iter().map(|l| Admission::new(l.max_connections, threads, Some(global.clone()))).collect();
    let shared = Arc::new(cfg);
    let handlers: Vec<ProxyReactor> = per_reactor
        .into_iter()
        .enumerate()
        .map(|(id, ls)| ProxyReactor::new(shared.clone(), id, gates.clone(), ls, tx.clone()))
        .collect();
    drop(tx);
    if let Some((cpu, e)) = steer_error {
        // Once, not per listener and reactor: kernels before 4.4 lack the option.
        log::warn!("SO_INCOMING_CPU (CPU {cpu}): {e}; connections are spread by hash, not by CPU");
    }
    let (pool, refused) = Pool::spawn_pinned("proxy", handlers, TICK, placement.cpus.as_deref()).map_err(Error::Io)?;
    for g in &gates {
        g.set_wakers(pool.wakers());
    }
    for (id, cpu, e) in &refused {
        log::warn!("reactor {id}: cannot pin to CPU {cpu}: {e}; it runs unpinned");
        placement.summary.push_str(&format!("; reactor {id} NOT pinned to CPU {cpu}: {e}"));
    }
    let cfg = shared;
    let mut role = Coordinated {
        up: vec![!cfg.health.enabled; backend_count(&cfg)],
        passive: PassiveRelay::new(backend_count(&cfg)),
        // Start-up gate: reactors other than 0 accept once told the first health round is complete.
        opened: !cfg.health.enabled,
        cfg,
        pool,
        metrics,
        threads,
        reports: Reports::new(threads),
        cuts: vec![0; threads],
        running: vec![0; threads],
        announced: 0,
        dirty: true,
    };
    for (l, addr) in role.cfg.listeners.iter().zip(&bound) {
        let g = &role.cfg.groups[l.group];
        let _ = writeln!(
            out,
            "netforge proxy: listening on {addr} -> group {} ({})",
            g.name,
            counted(g.backends.len() as u64, "backend", "backends")
        );
    }
    match admin {
        Some(a) => {
            let _ = writeln!(out, "netforge proxy: metrics on http://{a}/metrics");
        }
        None => {
            let _ = writeln!(out, "netforge proxy: metrics disabled");
        }
    }
    let _ = writeln!(out, "netforge proxy: {}", placement.summary);
    let _ = out.flush();
    coordinator::run(&mut role, &rx, signals, out);
    let t = role.reports.total();
    let cut: u64 = role.cuts.iter().sum();
    let _ = writeln!(out, "{}", summary(&t, &role.up, cut));
    let _ = writeln!(out, "netforge proxy: stopped; {} cut", counted(cut, "session", "sessions"));
    let _ = out.flush();
    role.pool.join();
    Ok(())
}

/// The coordinator's side of the proxy: /metrics, the health and passive-mark relays, the
/// start-up gate, drain and stop, reloads.
struct Coordinated {
    cfg: Arc<ProxyConfig>,
    pool: Pool<Cmd>,
    metrics: Arc<Mutex<String>>,
    threads: usize,
    reports: Reports<ProxyStats>,
    cuts: Vec<u64>,
    up: Vec<bool>,
    passive: PassiveRelay,
    /// The configuration generation each reactor's latest report ran, and the last one logged
    /// as applied by every reactor: a reload is in force only once all of them run it.
    running: Vec<u64>,
    announced: u64,
    opened: bool,
    /// /metrics is behind the reports.
    dirty: bool,
}

impl Role for Coordinated {
    type Report = Report;

    const MAX_WAIT: Duration = Duration::from_millis(200);

    fn on_report(&mut self, r: Report, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        let pool = &self.pool;
        // Reactor 0's view of the running configuration only: a report sent before it applied
        // a reload has another configuration's indices.
        if r.id == 0
            && r.generation == self.passive.generation
            && self.cfg.health.enabled
            && r.stats.health.len() == self.up.len()
            && (r.stats.health != self.up || (!self.opened && r.health_known))
        {
            self.up = r.stats.health.clone();
            let generation = self.passive.generation;
            let full = pool.broadcast(|_| Cmd::Health { generation, up: self.up.clone() });
            if full > 0 {
                log::warn!(
                    "proxy: {} full; health change delayed",
                    counted(full as u64, "reactor queue", "reactor queues")
                );
            }
        }
        for (backend, until) in self.passive.news(r.generation, &r.passive_down) {
            // Every reactor but the one that marked it; a full queue is retried on that
            // reactor's next report (a reactor ignores a deadline it has).
            let generation = self.passive.generation;
            let mut full = 0;
            for (i, h) in pool.handles.iter().enumerate() {
                if i != r.id && h.send(Cmd::PassiveDown { generation, backend, until }).is_err() {
                    full += 1;
                }
            }
            if full == 0 {
                self.passive.relayed(backend, until);
            } else {
                log::warn!(
                    "proxy: {} full; passive DOWN mark relay delayed",
                    counted(full as u64, "reactor queue", "reactor queues")
                );
            }
        }
        if r.id == 0 && !self.opened && r.health_known {
            // Queued behind the Health command: a reactor opens knowing the first round's
            // results. A full queue is retried on the next report.
            self.opened = pool.broadcast(|_| Cmd::Open) == 0;
        }
        self.running[r.id] = r.generation;
        self.cuts[r.id] = r.cut;
        self.reports.set(r.id, r.stats, r.done);
        self.dirty = true;
        Flow::Continue
    }

    fn on_turn(&mut self, _now: Instant, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
        if self.dirty {
            let t = self.reports.total();
            let generations = stats::Generations { loaded: self.passive.generation, applied: applied(&self.running) };
            let text = stats::render(&self.cfg, &t, &self.up, generations);
            if let Ok(mut m) = self.metrics.lock() {
                *m = text;
            }
            self.dirty = false;
            // Logged after /metrics shows it, so a reader of either sees the same state.
            if self.announced < self.passive.generation && generations.applied == self.passive.generation {
                self.announced = self.passive.generation;
                log::info!(
                    "proxy: configuration generation {} applied by every reactor ({})",
                    self.announced,
                    counted(self.threads as u64, "reactor", "reactors")
                );
            }
        }
        if self.reports.all_done() {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }

    fn on_stop(&mut self, ctl: &mut Ctl) {
        let until = Instant::now() + self.cfg.drain_timeout;
        log::info!(
            "proxy: draining {} for up to {:?} (signal again to stop now)",
            counted(self.reports.total().active, "session", "sessions"),
            self.cfg.drain_timeout
        );
        self.pool.broadcast(|_| Cmd::Drain(until));
        ctl.stop(Some(until + EXIT_GRACE));
    }

    fn on_stop_again(&mut self, ctl: &mut Ctl) -> Flow {
        log::warn!("proxy: second signal: closing every session now");
        self.pool.broadcast(|_| Cmd::Stop);
        ctl.stop(Some(Instant::now() + EXIT_GRACE));
        Flow::Continue
    }

    fn on_user1(&mut self, out: &mut dyn Write) {
        let _ = writeln!(out, "{}", summary(&self.reports.total(), &self.up, self.cuts.iter().sum()));
        let _ = out.flush();
    }

    fn on_hangup(&mut self, _ctl: &mut Ctl, _out: &mut dyn Write) {
        let Some(new) = reload(&self.cfg) else {
            return;
        };
        let new = Arc::new(new);
        let generation = self.passive.reload(backend_count(&new));
        // Logged before the reactors have it, so it precedes anything they log about the new
        // configuration (a first health check result).
        log::info!(
            "proxy: reloaded {}: {} in {}; generation {generation} goes to the reactors",
            new.source.as_ref().map(|o| o.path().display().to_string()).unwrap_or_default(),
            counted(backend_count(&new) as u64, "backend", "backends"),
            counted(new.groups.len() as u64, "group", "groups")
        );
        let full = self.pool.broadcast(|_| Cmd::Reload(new.clone(), generation));
        if full > 0 {
            log::error!(
                "proxy: reload not delivered to {} (queue full); send SIGHUP again",
                counted(full as u64, "reactor", "reactors")
            );
        }
        self.up = remap_up(&self.cfg, &new, &self.up);
        self.cfg = new;
        self.dirty = true;
    }

    fn on_late(&mut self) {
        log::warn!("proxy: reactors did not finish within the drain deadline");
    }
}

/// The configuration generation every reactor runs: the lowest one reported.
fn applied(running: &[u64]) -> u64 {
    running.iter().copied().min().unwrap_or(0)
}

/// Up states of `new`'s backends after a reload, as the reactors set them: a backend checked
/// before and after (same group, name and address) keeps its state; every other one is UP
/// (health off, checks just turned on, or a new backend) until a check says otherwise.
fn remap_up(old: &ProxyConfig, new: &ProxyConfig, up: &[bool]) -> Vec<bool> {
    let flat = |c: &ProxyConfig| -> Vec<(String, String, std::net::SocketAddr)> {
        c.groups
            .iter()
            .flat_map(|g| g.backends.iter().map(move |b| (g.name.clone(), b.name.clone(), b.address)))
            .collect()
    };
    let checked = old.health.enabled && new.health.enabled;
    // Looked up, not scanned: a reload of many backends stays linear.
    let o: std::collections::HashMap<_, usize> = flat(old).into_iter().enumerate().map(|(i, k)| (k, i)).collect();
    flat(new)
        .iter()
        .map(|k| {
            let kept = if checked { o.get(k).copied() } else { None };
            kept.and_then(|i| up.get(i).copied()).unwrap_or(true)
        })
        .collect()
}

/// SIGHUP: re-reads the file. Changes to restart-only keys are named in a warning and not
/// applied; the rest is. `None` when nothing can be applied.
fn reload(cur: &ProxyConfig) -> Option<ProxyConfig> {
    let Some(path) = cur.source.as_ref().map(|o| o.path()) else {
        log::warn!("proxy: SIGHUP ignored: the configuration came from flags, there is no file to re-read");
        return None;
    };
    let mut new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("proxy: reload failed, keeping the running configuration: {e}");
            return None;
        }
    };
    // The command line overrides the file on every load, not only the first.
    new.apply_overrides(cur.overrides);
    // Every key is live or restart-only (decided in `reload`); restart-only changes keep their
    // running values and are named, the rest applies.
    match reload::keep_restart_only(cur, &mut new) {
        Ok(changed) if changed.is_empty() => {}
        Ok(changed) => log::warn!(
            "proxy: reload: changes that need a restart, not applied (running values kept): {}",
            changed.join(", ")
        ),
        Err(e) => {
            log::error!("proxy: reload refused: {e}");
            return None;
        }
    }
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A start-up error about a listener's congestion control names where it was set.
    #[test]
    fn congestion_errors_name_the_key_that_set_it() {
        let text = "congestion = \"reno\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[[listener]]\naddress = \"127.0.0.1:0\"\ncongestion = \"reno\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n";
        let mut cfg = config::from_str(std::path::Path::new("t.toml"), text).unwrap();
        assert_eq!(congestion_key(&cfg, 0), "t.toml:1:14: congestion");
        assert_eq!(congestion_key(&cfg, 1), "t.toml:6:14: listener[1].congestion");
        cfg.overrides.congestion = Some(None);
        assert_eq!(congestion_key(&cfg, 1), "--congestion");
    }

    #[test]
    fn passive_marks_are_relayed_once_until_extended() {
        let mut p = PassiveRelay::new(3);
        let t = Instant::now() + Duration::from_secs(10);
        assert_eq!(p.news(0, &[None, None, None]), vec![]);
        assert_eq!(p.news(0, &[None, Some(t), None]), vec![(1, t)]);
        // Not delivered everywhere (a full queue): still news on the next report.
        assert_eq!(p.news(0, &[None, Some(t), None]), vec![(1, t)]);
        p.relayed(1, t);
        assert_eq!(p.news(0, &[None, Some(t), None]), vec![]);
        // Another reactor's earlier or equal deadline is not news; a later mark is.
        let earlier = t - Duration::from_secs(1);
        let later = t + Duration::from_secs(1);
        assert_eq!(p.news(0, &[Some(earlier), Some(earlier), None]), vec![(0, earlier)]);
        assert_eq!(p.news(0, &[None, Some(later), None]), vec![(1, later)]);
        p.relayed(1, later);
        p.relayed(1, t);
        assert_eq!(p.until[1], Some(later));
    }

    #[test]
    fn passive_marks_of_another_generation_are_ignored() {
        let mut p = PassiveRelay::new(2);
        let t = Instant::now() + Duration::from_secs(10);
        p.relayed(0, t);
        // After a reload, flat index 0 may be another backend: old reports yield nothing, and
        // the known deadlines start afresh.
        assert_eq!(p.reload(3), 1);
        assert_eq!(p.news(0, &[None, Some(t)]), vec![]);
        assert_eq!(p.news(0, &[None, Some(t), None]), vec![]);
        assert_eq!(p.news(1, &[None, Some(t)]), vec![], "wrong length");
        assert_eq!(p.news(1, &[Some(t), None, None]), vec![(0, t)]);
        p.relayed(5, t);
        assert_eq!(p.until, vec![None, None, None]);
    }
}

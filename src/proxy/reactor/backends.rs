//! Backends: the flat backend and group tables built from a configuration, picking and
//! dialing one for a session, passive health, and the reload that remaps them.

use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use super::{Backend, CheckCarry, Group, PCx, ProxyEntry, ProxyReactor, REMOVED};
use crate::engine::Ready;
use crate::net::connect::{self, DialOpts, DialState};
use crate::net::Cause;
use crate::proxy::config::{AdminState, ProxyConfig};
use crate::proxy::lb::{Candidate, Picker};

pub(super) fn build_backends(cfg: &ProxyConfig) -> (Vec<Backend>, Vec<Group>) {
    let mut backends = Vec::new();
    let mut groups = Vec::new();
    for (gi, g) in cfg.groups.iter().enumerate() {
        groups.push(Group {
            balance: g.balance,
            congestion: g.congestion,
            first: backends.len(),
            len: g.backends.len(),
            picker: Picker::new(g.backends.len()),
        });
        for b in &g.backends {
            backends.push(Backend {
                group: gi,
                name: b.name.clone(),
                addr: b.address,
                weight: b.weight,
                backup: b.backup,
                state: b.state,
                up: !cfg.health.enabled,
                active: 0,
                passive_fails: 0,
                passive_down_until: None,
            });
        }
    }
    (backends, groups)
}

impl ProxyReactor {
    /// Picks a usable backend of `group` (group-local index), skipping `tried`.
    fn pick(&mut self, now: Instant, group: usize, tried: &[bool]) -> Option<usize> {
        let g = &mut self.groups[group];
        self.scratch.clear();
        for b in &self.backends[g.first..g.first + g.len] {
            let passive_ok = b.passive_down_until.is_none_or(|t| now >= t);
            self.scratch.push(Candidate {
                usable: b.up && b.state == AdminState::Ready && passive_ok,
                weight: b.weight,
                backup: b.backup,
                active: b.active,
            });
        }
        g.picker.pick(g.balance, &self.scratch, tried, &mut self.rng)
    }

    /// Records a failed connect to backend `b` (passive health). The `passive_fall`th in a row
    /// marks it down for one interval, unless a mark (this reactor's or a relayed one) is still
    /// running: failures of connects already under way do not mark it twice.
    pub(super) fn connect_failed(&mut self, id: usize, now: Instant, b: usize, cause: Cause) {
        let Some(be) = self.backends.get_mut(b) else { return };
        self.stats.backend_connect_failures[b] += 1;
        be.passive_fails += 1;
        let fall = self.cfg.health.passive_fall;
        if fall == 0 || be.passive_fails < fall || be.passive_down_until.is_some_and(|t| now < t) {
            return;
        }
        let interval = self.cfg.health.interval;
        be.passive_down_until = Some(now + interval);
        log::warn!(
            "r{id} backend {} is DOWN proxy-wide for {interval:?} ({} failed connects: {})",
            be.label(),
            be.passive_fails,
            cause.name()
        );
        be.passive_fails = 0;
        self.stats.backend_passive_down[b] += 1;
        // Report now, not at the next tick, so the coordinator relays the mark before the other
        // reactors dial the backend again. A full channel loses nothing: the next tick's report
        // carries the same deadline.
        let health_known = self.health_known();
        let r = self.make_report(id, false, health_known);
        let _ = self.report.try_send(r);
    }

    /// A passive mark of another reactor, relayed by the coordinator. Indices of another
    /// configuration generation are ignored; a deadline earlier than the one held changes nothing.
    pub(super) fn passive_down(&mut self, id: usize, generation: u64, b: usize, until: Instant) {
        if generation != self.generation {
            return;
        }
        let Some(be) = self.backends.get_mut(b) else { return };
        if be.passive_down_until.is_some_and(|t| t >= until) {
            return;
        }
        be.passive_down_until = Some(until);
        be.passive_fails = 0;
        log::debug!("r{id} backend {} is DOWN (passive mark of another reactor)", be.label());
    }

    /// Picks and dials until a dial is under way; `None` when every attempt failed at once.
    pub(super) fn dial_next(
        &mut self,
        cx: &mut PCx,
        group: usize,
        tried: &mut Vec<bool>,
        attempts: &mut u32,
        delay_ack: bool,
    ) -> Option<(usize, TcpStream)> {
        let opts = DialOpts { delay_ack, congestion: self.groups[group].congestion, ..self.dial };
        loop {
            if *attempts > self.cfg.retries {
                return None;
            }
            let local = self.pick(cx.now, group, tried)?;
            let b = self.groups[group].first + local;
            *attempts += 1;
            match connect::dial(self.backends[b].addr, None, &opts) {
                Ok(s) => return Some((b, s)),
                Err(e) if crate::net::is_exhaustion(&e) => {
                    // Our own descriptors ran out, not the backend's fault: no passive-health
                    // mark, no retry elsewhere (the next socket() would fail the same way).
                    self.exhausted = Some(e);
                    return None;
                }
                Err(e) => {
                    log::debug!("r{} dial {}: {e}", cx.id, self.backends[b].addr);
                    self.connect_failed(cx.id, cx.now, b, Cause::from_io(&e));
                    if tried.len() < self.groups[group].len {
                        tried.resize(self.groups[group].len, false);
                    }
                    tried[local] = true;
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Reload

    /// Applies configuration `generation`. A backend kept by it (same group, name and address)
    /// keeps its state: health (up/down and check counts, when checks run before and after),
    /// passive mark and counters. Every other backend is UP, serving, until a check says
    /// otherwise: one whose checks start now (checks turned on, or new) has its first result
    /// decide, so turning checks on never refuses a session to a healthy backend while the
    /// first round runs.
    pub(super) fn reload(&mut self, cx: &mut PCx, cfg: Arc<ProxyConfig>, generation: u64) {
        let (mut backends, groups) = build_backends(&cfg);
        let checked = self.cfg.health.enabled && cfg.health.enabled;
        let mut carry: Vec<Option<CheckCarry>> = vec![None; backends.len()];
        let mut map = vec![REMOVED; self.backends.len()];
        let mut fails = vec![0u64; backends.len()];
        let mut passive = vec![0u64; backends.len()];
        let mut sessions = vec![0u64; backends.len()];
        // The old backends by (group, address, name): looked up, not scanned, so a reload of
        // many backends stays linear.
        let old: std::collections::HashMap<(&str, std::net::SocketAddr, &str), usize> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, ob)| ((self.cfg.groups[ob.group].name.as_str(), ob.addr, ob.name.as_str()), i))
            .collect();
        for (ni, nb) in backends.iter_mut().enumerate() {
            let gname = cfg.groups[nb.group].name.as_str();
            let found = old.get(&(gname, nb.addr, nb.name.as_str())).copied();
            nb.up = true;
            if let Some(oi) = found {
                let ob = &self.backends[oi];
                if checked {
                    nb.up = ob.up;
                    carry[ni] = self.checks.get(oi).map(|c| CheckCarry { rise: c.rise, fall: c.fall, fresh: c.fresh });
                }
                nb.active = ob.active;
                nb.passive_fails = ob.passive_fails;
                nb.passive_down_until = ob.passive_down_until;
                map[oi] = ni;
                fails[ni] = self.stats.backend_connect_failures.get(oi).copied().unwrap_or(0);
                passive[ni] = self.stats.backend_passive_down.get(oi).copied().unwrap_or(0);
                sessions[ni] = self.stats.backend_sessions.get(oi).copied().unwrap_or(0);
            }
        }
        for (_, e) in cx.table.iter_mut() {
            if let ProxyEntry::Session(s) = e {
                s.backend = map.get(s.backend).copied().unwrap_or(REMOVED);
                s.tried.clear();
            }
        }
        for l in self.listeners.iter_mut() {
            let name = &self.cfg.groups[l.group].name;
            if let Some(g) = cfg.groups.iter().position(|g| g.name == *name) {
                l.group = g;
            }
        }
        self.stats.backend_connect_failures = fails;
        self.stats.backend_passive_down = passive;
        self.stats.backend_sessions = sessions;
        self.stats.backend_active = vec![0; backends.len()];
        self.backends = backends;
        self.groups = groups;
        self.cfg = cfg;
        self.generation = generation;
        cx.table.set_capacity(self.table_capacity(), 0);
        self.start_checks(cx, &carry);
    }
}

/// What an edge on a connecting backend socket means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialed {
    /// Spurious wake-up: the handshake is still under way.
    Pending,
    Connected,
    /// The backend completed the handshake and reset the connection before this side looked.
    /// That is an established session the server aborted (HAProxy counts it so, not as a
    /// connect error): no retry elsewhere, since the client's first bytes may already have
    /// reached it (smart_connect), and no passive-health failure, since the backend accepts.
    Aborted,
    /// The connect itself failed (refused, unreachable, ..): passive health and a retry.
    Failed(Cause),
}

/// Classifies `ready` on connecting socket `sock`. A connecting socket signals EPOLLOUT only
/// once the handshake completed, and EPOLLERR/EPOLLHUP when it failed: a WRITABLE edge without
/// those is a connect, with no SO_ERROR/getpeername round trip. Anything else takes the full
/// check, where a reset after the handshake (see [`connect::completed_before`]) is told apart
/// from a failed handshake.
pub(super) fn dial_outcome(sock: &TcpStream, ready: Ready) -> Dialed {
    if ready.contains(Ready::WRITABLE) && !ready.intersects(Ready::ERROR | Ready::HUP) {
        return Dialed::Connected;
    }
    match connect::check(sock) {
        DialState::Pending => Dialed::Pending,
        DialState::Connected => Dialed::Connected,
        DialState::Failed(e) if connect::completed_before(sock, &e) => Dialed::Aborted,
        DialState::Failed(e) => Dialed::Failed(Cause::from_io(&e)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Interest, Token};

    use super::*;
    use crate::proxy::reactor::Report;

    const CONF: &str = r#"
balance = "round_robin"

[health]
enabled = false
interval = "10s"
passive_fall = 2

[[listener]]
address = "127.0.0.1:0"

[[backend]]
name = "dead"
address = "127.0.0.1:1"

[[backend]]
name = "live"
address = "127.0.0.1:2"
"#;

    /// Reactor 1 of 2 with no listener sockets, and the coordinator's end of its reports.
    fn reactor() -> (ProxyReactor, crossbeam_channel::Receiver<Report>) {
        let cfg = crate::proxy::config::from_str(std::path::Path::new("t.toml"), CONF).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(16);
        (ProxyReactor::new(Arc::new(cfg), 1, Vec::new(), Vec::new(), tx), rx)
    }

    /// Whether `pick` can still choose backend 0 at `now` (round-robin over two backends: two
    /// picks include it whenever it is usable).
    fn picks_dead(r: &mut ProxyReactor, now: Instant) -> bool {
        (0..2).any(|_| r.pick(now, 0, &[]) == Some(0))
    }

    /// A named backend is `name addr` in the log; one without a name (its name is its address)
    /// is the address once, not twice.
    #[test]
    fn log_lines_name_a_backend_once() {
        let (mut r, _rx) = reactor();
        assert_eq!(r.backends[0].label().to_string(), "dead 127.0.0.1:1");
        r.backends[0].name = r.backends[0].addr.to_string();
        assert_eq!(r.backends[0].label().to_string(), "127.0.0.1:1");
    }

    #[test]
    fn passive_fall_failures_mark_once_and_report_at_once() {
        let (mut r, rx) = reactor();
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        r.connect_failed(1, now, 0, Cause::Refused);
        assert_eq!(r.backends[0].passive_down_until, None);
        assert!(rx.try_recv().is_err(), "no mark, no early report");
        assert!(picks_dead(&mut r, now));

        r.connect_failed(1, now, 0, Cause::Refused);
        assert_eq!(r.backends[0].passive_down_until, Some(until));
        assert_eq!(r.stats.backend_passive_down, vec![1, 0]);
        let rep = rx.try_recv().expect("a mark is reported at once");
        assert_eq!((rep.id, rep.generation, rep.done), (1, 0, false));
        assert_eq!(rep.passive_down, vec![Some(until), None]);
        assert_eq!(rep.stats.backend_passive_down, vec![1, 0]);
        assert_eq!(rep.stats.backend_connect_failures, vec![2, 0]);

        // Connects that were under way fail later: counted, but no second mark while one runs.
        let later = now + Duration::from_secs(1);
        for _ in 0..4 {
            r.connect_failed(1, later, 0, Cause::Timeout);
        }
        assert_eq!(r.backends[0].passive_down_until, Some(until));
        assert_eq!(r.stats.backend_passive_down, vec![1, 0]);
        assert_eq!(r.stats.backend_connect_failures, vec![6, 0]);
        assert!(rx.try_recv().is_err());

        assert!(!picks_dead(&mut r, later));
        assert!(picks_dead(&mut r, until));
        // Expired: the failures counted meanwhile are past `passive_fall`, so the next one marks
        // it again.
        r.connect_failed(1, until, 0, Cause::Refused);
        assert_eq!(r.backends[0].passive_down_until, Some(until + Duration::from_secs(10)));
        assert_eq!(r.stats.backend_passive_down, vec![2, 0]);
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn relayed_mark_applies_only_in_its_generation() {
        let (mut r, rx) = reactor();
        let now = Instant::now();
        let until = now + Duration::from_secs(10);
        // Another configuration's index, or one out of range: ignored.
        r.passive_down(1, 1, 0, until);
        r.passive_down(1, 0, 7, until);
        assert!(r.backends.iter().all(|b| b.passive_down_until.is_none()));
        assert!(picks_dead(&mut r, now));

        r.backends[0].passive_fails = 1;
        r.passive_down(1, 0, 0, until);
        assert_eq!(r.backends[0].passive_down_until, Some(until));
        assert_eq!(r.backends[0].passive_fails, 0);
        assert!(!picks_dead(&mut r, now));
        // An earlier deadline does not shorten it.
        r.passive_down(1, 0, 0, now + Duration::from_secs(1));
        assert_eq!(r.backends[0].passive_down_until, Some(until));

        // Failures while the relayed mark runs: no mark of this reactor, nothing to report.
        for _ in 0..3 {
            r.connect_failed(1, now, 0, Cause::Refused);
        }
        assert_eq!(r.stats.backend_passive_down, vec![0, 0]);
        assert!(rx.try_recv().is_err());
        // The tick report carries the relayed deadline; the coordinator sees nothing new in it.
        assert_eq!(r.make_report(1, false, true).passive_down, vec![Some(until), None]);
    }

    /// Waits (up to 5 s) for an edge on `s` that carries a reset or an error.
    fn reset_edge(s: &mut TcpStream) -> Ready {
        let mut poll = mio::Poll::new().unwrap();
        poll.registry().register(s, Token(0), Interest::READABLE | Interest::WRITABLE).unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut ready = Ready::EMPTY;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready.intersects(Ready::ERROR | Ready::HUP) {
            assert!(Instant::now() < deadline, "no reset seen");
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            for e in events.iter() {
                ready |= Ready::from_event(e);
            }
        }
        ready
    }

    #[test]
    fn a_backend_that_accepts_then_resets_aborted_a_session_it_did_not_refuse_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = connect::dial(l.local_addr().unwrap(), None, &DialOpts::default()).unwrap();
        let (a, _) = l.accept().unwrap();
        crate::net::sockopt::reset_on_close(&a).unwrap();
        drop(a);
        // The reset lands before the first look, as it does on a busy reactor.
        let ready = reset_edge(&mut s);
        assert_eq!(dial_outcome(&s, ready), Dialed::Aborted);

        // Bound but not listening (so no other test can take the port): the connect is
        // refused, a failure fed to passive health and retried.
        let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let port = held.local_addr().unwrap().as_socket().unwrap().port();
        let mut s = connect::dial(([127, 0, 0, 1], port).into(), None, &DialOpts::default()).unwrap();
        let ready = reset_edge(&mut s);
        assert_eq!(dial_outcome(&s, ready), Dialed::Failed(Cause::Refused));
    }
}

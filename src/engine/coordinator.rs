//! The coordinator: the loop on the calling thread that every role's `run` ends in. It waits on
//! the reactors' report channel, the signal channel ([`Signal`]) and its own clock, and hands
//! each to the role's [`Role`] hooks:
//!
//! - a report → [`Role::on_report`] (most roles keep the latest per-reactor [`Snapshot`] in a
//!   [`Reports`] and merge them on demand);
//! - every turn → [`Role::on_turn`] (interval lines from an [`Interval`], "every reactor is done");
//! - the first SIGINT/SIGTERM → [`Role::on_stop`] (stop or drain; it sets the grace deadline
//!   through [`Ctl::stop`]), a second one → [`Role::on_stop_again`] (default: end now);
//! - SIGUSR1 → [`Role::on_user1`] (the role's one-line summary), SIGHUP → [`Role::on_hangup`];
//! - the grace deadline passing → [`Role::on_late`], then the loop ends.
//!
//! The role's final report is printed by its `run` after [`run`] returns, from the state its
//! hooks kept.

use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::sys::Signal;

/// Per-reactor statistics that merge into a process total.
pub(crate) trait Snapshot: Default + Clone {
    /// Folds `other` (another reactor's snapshot) into `self`.
    fn merge(&mut self, other: &Self);
}

/// The latest snapshot of every reactor, and which ones reported their last.
pub(crate) struct Reports<S> {
    per: Vec<S>,
    done: Vec<bool>,
}

impl<S: Snapshot> Reports<S> {
    pub(crate) fn new(reactors: usize) -> Self {
        Reports { per: vec![S::default(); reactors], done: vec![false; reactors] }
    }

    /// Reactor `id`'s latest snapshot; `fin` marks its last one.
    pub(crate) fn set(&mut self, id: usize, s: S, fin: bool) {
        self.per[id] = s;
        self.done[id] |= fin;
    }

    /// Every reactor's snapshot merged.
    pub(crate) fn total(&self) -> S {
        let mut t = S::default();
        for s in &self.per {
            t.merge(s);
        }
        t
    }

    /// Every reactor has sent its last report.
    pub(crate) fn all_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }
}

/// A periodic clock for interval lines: off when the period is zero (`-i 0`).
pub(crate) struct Interval {
    every: Duration,
    next: Option<Instant>,
}

impl Interval {
    /// First due at `start + every`.
    pub(crate) fn new(start: Instant, every: Duration) -> Self {
        Interval { every, next: (!every.is_zero()).then(|| start + every) }
    }

    /// Whether a line is due at `now`; if so the clock moves to the first period after `now`
    /// (a coordinator that fell behind prints one line, not a burst).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        match self.next.as_mut() {
            Some(at) if now >= *at => {
                *at = after(*at, self.every, now);
                true
            }
            _ => false,
        }
    }

    /// When the next line is due (`None`: never).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }
}

/// The first instant of the grid `at + k × every` (k ≥ 1) that lies after `now`, in one step:
/// a loop adding `every` until it passes `now` runs once per period missed, which for a short
/// period and a long stall never ends. `every` is above zero.
pub(crate) fn after(at: Instant, every: Duration, now: Instant) -> Instant {
    let every_ns = every.as_nanos().max(1);
    let behind = now.saturating_duration_since(at).as_nanos();
    let steps = behind / every_ns + 1;
    // At most (behind + every) from `at`: within the range of an Instant that `now` already is.
    at + Duration::from_nanos(u64::try_from(steps * every_ns).unwrap_or(u64::MAX))
}

/// What a hook tells the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// End the loop now.
    Exit,
}

/// The loop's stop state, which hooks may change.
#[derive(Debug, Default)]
pub(crate) struct Ctl {
    stopping: bool,
    deadline: Option<Instant>,
}

impl Ctl {
    /// Whether the run is stopping (a signal, or the role ended it).
    pub(crate) fn stopping(&self) -> bool {
        self.stopping
    }

    /// Marks the run stopping, with the grace deadline past which the loop ends (`None`: no
    /// deadline). A later SIGINT/SIGTERM goes to [`Role::on_stop_again`].
    pub(crate) fn stop(&mut self, deadline: Option<Instant>) {
        self.stopping = true;
        self.deadline = deadline;
    }
}

/// What a role plugs into the coordinator.
pub(crate) trait Role {
    /// What its reactors send.
    type Report;

    /// The longest the loop sleeps when nothing arrives and nothing is due.
    const MAX_WAIT: Duration;

    /// When the role next wants a turn (an interval line, the end of a hold).
    fn wake_at(&self, _ctl: &Ctl) -> Option<Instant> {
        None
    }

    /// One report from a reactor.
    fn on_report(&mut self, report: Self::Report, ctl: &mut Ctl, out: &mut dyn Write) -> Flow;

    /// Every reactor dropped its sender: by default the loop ends.
    fn on_closed(&mut self) -> Flow {
        Flow::Exit
    }

    /// Called at the top of every turn, before the deadline check: interval lines, "is every
    /// reactor done".
    fn on_turn(&mut self, now: Instant, ctl: &mut Ctl, out: &mut dyn Write) -> Flow;

    /// The first SIGINT/SIGTERM (while not stopping): stop or drain the reactors and set the
    /// grace deadline with [`Ctl::stop`].
    fn on_stop(&mut self, ctl: &mut Ctl);

    /// A SIGINT/SIGTERM while stopping: by default the loop ends now.
    fn on_stop_again(&mut self, _ctl: &mut Ctl) -> Flow {
        Flow::Exit
    }

    /// SIGUSR1: the one-line summary.
    fn on_user1(&mut self, _out: &mut dyn Write) {}

    /// SIGHUP: ignored unless the role reloads.
    fn on_hangup(&mut self, _ctl: &mut Ctl, _out: &mut dyn Write) {}

    /// The grace deadline passed before the reactors finished (say so); the loop ends.
    fn on_late(&mut self) {}
}

/// Runs the coordinator loop until a hook ends it or the grace deadline passes.
pub(crate) fn run<R: Role>(
    role: &mut R,
    reports: &Receiver<R::Report>,
    signals: &Receiver<Signal>,
    out: &mut dyn Write,
) {
    let mut ctl = Ctl::default();
    loop {
        let now = Instant::now();
        if role.on_turn(now, &mut ctl, out) == Flow::Exit {
            return;
        }
        if ctl.deadline.is_some_and(|d| Instant::now() >= d) {
            role.on_late();
            return;
        }
        let now = Instant::now();
        let wake = role.wake_at(&ctl).map_or(R::MAX_WAIT, |at| at.saturating_duration_since(now));
        let wait = wake.min(R::MAX_WAIT);
        let flow = select! {
            recv(reports) -> msg => match msg {
                Ok(r) => role.on_report(r, &mut ctl, out),
                Err(_) => role.on_closed(),
            },
            recv(signals) -> sig => match sig {
                Ok(Signal::Interrupt | Signal::Terminate) if ctl.stopping => role.on_stop_again(&mut ctl),
                Ok(Signal::Interrupt | Signal::Terminate) => {
                    role.on_stop(&mut ctl);
                    ctl.stopping = true;
                    Flow::Continue
                }
                Ok(Signal::User1) => {
                    role.on_user1(out);
                    Flow::Continue
                }
                Ok(Signal::Hangup) => {
                    role.on_hangup(&mut ctl, out);
                    Flow::Continue
                }
                Err(_) => Flow::Continue,
            },
            default(wait) => Flow::Continue,
        };
        if flow == Flow::Exit {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default, Debug, PartialEq)]
    struct Sum(u64, bool);

    impl Snapshot for Sum {
        fn merge(&mut self, o: &Sum) {
            self.0 += o.0;
            self.1 |= o.1;
        }
    }

    #[derive(Default)]
    struct Probe {
        events: Vec<String>,
        grace: Option<Duration>,
    }

    impl Role for Probe {
        type Report = u64;
        const MAX_WAIT: Duration = Duration::from_millis(20);

        fn on_report(&mut self, r: u64, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
            self.events.push(format!("report {r}"));
            if r == 0 {
                Flow::Exit
            } else {
                Flow::Continue
            }
        }

        fn on_turn(&mut self, _now: Instant, _ctl: &mut Ctl, _out: &mut dyn Write) -> Flow {
            Flow::Continue
        }

        fn on_stop(&mut self, ctl: &mut Ctl) {
            self.events.push("stop".into());
            ctl.stop(self.grace.map(|g| Instant::now() + g));
        }

        fn on_user1(&mut self, out: &mut dyn Write) {
            let _ = writeln!(out, "summary");
            self.events.push("user1".into());
        }

        fn on_hangup(&mut self, ctl: &mut Ctl, _out: &mut dyn Write) {
            self.events.push(format!("hangup stopping={}", ctl.stopping()));
        }

        fn on_late(&mut self) {
            self.events.push("late".into());
        }
    }

    /// Runs `role` on its own thread; the run must end within 5 s.
    fn run_bounded(mut role: Probe, reports: Receiver<u64>, signals: Receiver<Signal>) -> (Probe, String) {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut out = Vec::new();
            run(&mut role, &reports, &signals, &mut out);
            let _ = done_tx.send((role, String::from_utf8(out).unwrap()));
        });
        done_rx.recv_timeout(Duration::from_secs(5)).expect("the coordinator loop ended")
    }

    #[test]
    fn signals_reach_their_hooks_and_a_second_stop_ends_the_loop() {
        let (_rtx, rrx) = crossbeam_channel::bounded::<u64>(4);
        let (stx, srx) = crossbeam_channel::bounded(8);
        for s in [Signal::User1, Signal::Interrupt, Signal::Hangup, Signal::Terminate] {
            stx.send(s).unwrap();
        }
        let (role, out) = run_bounded(Probe::default(), rrx, srx);
        assert_eq!(role.events, ["user1", "stop", "hangup stopping=true"]);
        assert_eq!(out, "summary\n");
    }

    #[test]
    fn the_grace_deadline_ends_the_loop_and_reports_closing_end_it() {
        let (_rtx, rrx) = crossbeam_channel::bounded::<u64>(4);
        let (stx, srx) = crossbeam_channel::bounded(8);
        stx.send(Signal::Interrupt).unwrap();
        let started = Instant::now();
        let probe = Probe { grace: Some(Duration::from_millis(100)), ..Probe::default() };
        let (role, _) = run_bounded(probe, rrx, srx);
        assert_eq!(role.events, ["stop", "late"]);
        assert!(started.elapsed() >= Duration::from_millis(100));

        let (rtx, rrx) = crossbeam_channel::bounded::<u64>(4);
        rtx.send(7).unwrap();
        drop(rtx);
        let (_stx, srx) = crossbeam_channel::bounded(8);
        let (role, _) = run_bounded(Probe::default(), rrx, srx);
        assert_eq!(role.events, ["report 7"]);
    }

    #[test]
    fn reports_merge_the_latest_of_each_reactor() {
        let mut r = Reports::<Sum>::new(2);
        r.set(0, Sum(3, false), false);
        r.set(0, Sum(5, false), false);
        r.set(1, Sum(2, true), true);
        assert_eq!(r.total(), Sum(7, true));
        assert!(!r.all_done());
        r.set(0, Sum(6, false), true);
        r.set(0, Sum(6, false), false);
        assert!(r.all_done(), "a last report stays last");
        assert_eq!(r.total(), Sum(8, true));
    }

    #[test]
    fn an_interval_fires_once_per_catch_up_and_never_when_zero() {
        let t0 = Instant::now();
        let mut i = Interval::new(t0, Duration::from_secs(1));
        assert!(!i.due(t0));
        assert!(i.due(t0 + Duration::from_millis(3500)));
        assert_eq!(i.next(), Some(t0 + Duration::from_secs(4)));
        assert!(!i.due(t0 + Duration::from_millis(3900)));
        let mut off = Interval::new(t0, Duration::ZERO);
        assert!(!off.due(t0 + Duration::from_secs(3600)));
        assert_eq!(off.next(), None);
        // Exactly on a boundary moves past it; a nanosecond period a day behind is one step.
        assert!(i.due(t0 + Duration::from_secs(4)));
        assert_eq!(i.next(), Some(t0 + Duration::from_secs(5)));
        let mut ns = Interval::new(t0, Duration::from_nanos(1));
        let day = t0 + Duration::from_secs(86_400);
        assert!(ns.due(day));
        assert_eq!(ns.next(), Some(day + Duration::from_nanos(1)));
        let odd = Duration::from_nanos(7);
        assert_eq!(after(t0, odd, t0 + Duration::from_nanos(20)), t0 + Duration::from_nanos(21));
        assert_eq!(after(t0, odd, t0), t0 + odd);
    }
}

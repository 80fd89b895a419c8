//! A reactor's dial schedule, shared by goon's hold run (`reactor`) and its idle probe
//! (`probe::reactor`): the pace of its share, when it started, the back-off after running out
//! of ports or descriptors, and the clock handle its timer runs on.

use std::time::{Duration, Instant};

use crate::engine::{Cx, Entry, Handle, Kind};

/// Dials started per loop turn at most.
pub const CONNECT_BATCH: usize = 128;
/// Pause after running out of ports or descriptors before dialing again.
pub const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(50);
/// The dial clock's timer kind (on its own handle).
pub const TIMER_PACE: Kind = Kind::new(0);

#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as the loop allows.
    Burst,
    /// Dial k is due at `t0 + offset + k·period`.
    Every { offset: Duration, period: Duration },
}

pub struct Pacer {
    pace: Pace,
    start: Option<Instant>,
    backoff_until: Option<Instant>,
    /// The dial clock (allocated at the reactor's start).
    pub clock: Option<Handle>,
}

impl Pacer {
    pub fn new(pace: Pace) -> Pacer {
        Pacer { pace, start: None, backoff_until: None, clock: None }
    }

    /// The reactor started at `now` with its dial clock `clock`.
    pub fn start(&mut self, now: Instant, clock: Handle) {
        self.start = Some(now);
        self.clock = Some(clock);
    }

    /// Whether `h` is the dial clock.
    pub fn owns(&self, h: Handle) -> bool {
        self.clock == Some(h)
    }

    fn due(&self, k: u64) -> Option<Instant> {
        match self.pace {
            Pace::Burst => None,
            Pace::Every { offset, period } => Some(self.start? + offset + period.mul_f64(k as f64)),
        }
    }

    fn arm<E: Entry>(&self, cx: &mut Cx<E>, at: Instant) {
        if let Some(p) = self.clock {
            cx.timers.arm_earlier(p, TIMER_PACE, at);
        }
    }

    /// Whether dial number `dialed` (of `share`) may start now; when it is not due yet, or a
    /// back-off runs, the clock is armed for then.
    pub fn ready<E: Entry>(&mut self, cx: &mut Cx<E>, dialed: u64, share: u64) -> bool {
        if dialed >= share {
            return false;
        }
        if let Some(until) = self.backoff_until {
            if cx.now < until {
                self.arm(cx, until);
                return false;
            }
            self.backoff_until = None;
        }
        match self.due(dialed) {
            Some(due) if due > cx.now => {
                self.arm(cx, due);
                false
            }
            _ => true,
        }
    }

    /// The last dial ran out of ports or descriptors: pause [`EXHAUSTION_BACKOFF`].
    pub fn back_off<E: Entry>(&mut self, cx: &mut Cx<E>) {
        let until = cx.now + EXHAUSTION_BACKOFF;
        self.backoff_until = Some(until);
        self.arm(cx, until);
    }

    /// A whole batch was dialed: with dials left, the clock comes back in the next turn.
    pub fn batch_done<E: Entry>(&self, cx: &mut Cx<E>, more: bool) {
        if let (true, Some(p)) = (more, self.clock) {
            cx.defer_handle(p);
        }
    }
}

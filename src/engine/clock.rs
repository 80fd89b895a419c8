//! A reactor's precise clock: a timerfd that wakes the poll at the timer heap's next deadline
//! to the nanosecond. epoll's own timeout moves in whole milliseconds, rounded up, so without
//! it a timer fires up to 1 ms late; a role that measures lateness (goon's message schedule)
//! asks for the clock with [`super::Cx::precise_timers`].
//!
//! The loop arms it once per turn, just before it polls, after the turn's timers fired: the
//! deadline it arms for is then the first one still pending, never one this turn is about to
//! fire (arming for that would wake the next poll at once for nothing). It is re-armed only
//! for a deadline earlier than the one it is armed for; a later one leaves it, and the
//! wake-up it gives finds nothing due and arms again. A deadline already past when the loop
//! is about to poll (the turn's handlers ran into it) arms nothing: that poll does not sleep,
//! and the timer fires in the turn it returns to. Each arm is one `timerfd_settime`. The
//! expiry count is never read: epoll reports every expiry as a new edge, read or not, and an
//! arm clears it.

use std::io;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::{Handle, Timers};
use crate::sys::TimerFd;

pub(crate) struct Clock {
    handle: Handle,
    fd: TimerFd,
    /// The deadline the fd is armed for, until its expiry is seen.
    at: Option<Instant>,
}

impl Clock {
    /// A timerfd registered under `handle`.
    pub(crate) fn new(registry: &Registry, handle: Handle) -> io::Result<Clock> {
        let fd = TimerFd::new()?;
        registry.register(&mut SourceFd(&fd.raw()), handle.token(), Interest::READABLE)?;
        Ok(Clock { handle, fd, at: None })
    }

    pub(crate) fn handle(&self) -> Handle {
        self.handle
    }

    /// The fd expired: it is armed for nothing now.
    pub(crate) fn fired(&mut self) {
        self.at = None;
    }

    /// Arms the fd at the heap's next deadline when it is not armed, armed for a later one, or
    /// armed for an instant already past (its timer fired in a turn another event began; the
    /// new arm also withdraws that expiry's pending wake-up).
    pub(crate) fn sync(&mut self, timers: &Timers, now: Instant) {
        let Some(next) = timers.next_deadline() else { return };
        if self.at.is_some_and(|armed| armed <= next && armed > now) {
            return;
        }
        match self.fd.set(Some(next.saturating_duration_since(now))) {
            Ok(()) => self.at = Some(next),
            // Left unarmed: the poll's millisecond timeout still fires the timer.
            Err(e) => log::debug!("timerfd_settime failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{Kind, Owner};

    #[test]
    fn arms_for_an_earlier_deadline_or_a_past_one_and_never_for_a_later_one() {
        let poll = mio::Poll::new().unwrap();
        let mut c = Clock::new(poll.registry(), Handle::new(0)).unwrap();
        let mut timers = Timers::new();
        c.sync(&timers, Instant::now());
        assert_eq!(c.at, None, "nothing to arm for");
        let (owner, now) = (Owner::Handle(Handle::new(1)), Instant::now());
        let (t0, t1, t2) = (now + Duration::from_secs(5), now + Duration::from_secs(10), now + Duration::from_secs(20));
        timers.arm(owner, Kind::new(0), t1);
        c.sync(&timers, Instant::now());
        assert_eq!(c.at, Some(t1));
        timers.arm(owner, Kind::new(1), t2);
        c.sync(&timers, Instant::now());
        assert_eq!(c.at, Some(t1), "a later deadline leaves it");
        timers.arm(owner, Kind::new(2), t0);
        c.sync(&timers, Instant::now());
        assert_eq!(c.at, Some(t0), "an earlier one moves it");
        c.at = Some(now - Duration::from_millis(1));
        c.sync(&timers, Instant::now());
        assert_eq!(c.at, Some(t0), "armed for a past instant: armed again");
        c.fired();
        c.sync(&timers, Instant::now());
        assert_eq!(c.at, Some(t0), "after its expiry it is armed again");
    }
}

//! Compact instants for state kept per connection: a [`Stamp`] is 8 bytes where an `Instant`
//! is 16, and `Option<Stamp>` is 8 as well. A proxy session keeps seven of them.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An instant as nanoseconds from the process's stamp base (an hour before the first stamp was
/// taken), plus one so that `Option<Stamp>` needs no room of its own. An instant before the
/// base is kept as the base; 2^64 ns is 584 years.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(NonZeroU64);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
    })
}

impl Stamp {
    pub fn instant(self) -> Instant {
        base() + Duration::from_nanos(self.0.get() - 1)
    }
}

impl From<Instant> for Stamp {
    fn from(at: Instant) -> Stamp {
        Stamp(NonZeroU64::MIN.saturating_add(nanos(at, u64::MAX - 1)))
    }
}

/// Nanoseconds from the base to `at`, at most `max`.
fn nanos(at: Instant, max: u64) -> u64 {
    at.saturating_duration_since(base()).as_nanos().min(max as u128) as u64
}

/// An instant and a 2-bit state in one word, for a per-connection state machine whose flags
/// would otherwise cost a word of padding: bits 62–63 hold the state, the rest nanoseconds
/// from the stamp base (2^62 ns is 146 years; later instants are kept as the last one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateStamp(u64);

impl StateStamp {
    const NS: u64 = (1 << 62) - 1;

    /// `state` is 0..=3 (a caller's constants; more panics).
    pub fn new(state: u8, at: Instant) -> StateStamp {
        StateStamp(nanos(at, Self::NS)).with_state(state)
    }

    pub fn state(self) -> u8 {
        (self.0 >> 62) as u8
    }

    pub fn instant(self) -> Instant {
        base() + Duration::from_nanos(self.0 & Self::NS)
    }

    /// The same instant with another state.
    pub fn with_state(self, state: u8) -> StateStamp {
        assert!(state < 4, "a StateStamp's state is 0..=3");
        StateStamp(self.0 & Self::NS | (state as u64) << 62)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_nanosecond_and_keeps_order() {
        let a = Instant::now();
        let b = a + Duration::from_nanos(1);
        let (sa, sb) = (Stamp::from(a), Stamp::from(b));
        assert_eq!(sa.instant(), a);
        assert_eq!(sb.instant(), b);
        assert!(sa < sb);
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn a_state_stamp_keeps_its_instant_and_state_apart() {
        let at = Instant::now() + Duration::from_nanos(7);
        let s = StateStamp::new(2, at);
        assert_eq!((s.state(), s.instant()), (2, at));
        let t = s.with_state(3);
        assert_eq!((t.state(), t.instant()), (3, at));
        assert_eq!(t.with_state(0).instant(), at);
        assert_eq!(std::mem::size_of::<StateStamp>(), 8);
    }

    #[test]
    fn an_instant_before_the_base_is_kept_as_the_base() {
        let now = Instant::now();
        let _ = Stamp::from(now);
        if let Some(old) = base().checked_sub(Duration::from_secs(1)) {
            assert_eq!(Stamp::from(old).instant(), base());
        }
    }
}

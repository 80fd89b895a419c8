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
        let ns = at.saturating_duration_since(base()).as_nanos().min(u64::MAX as u128 - 1) as u64;
        Stamp(NonZeroU64::MIN.saturating_add(ns))
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
    fn an_instant_before_the_base_is_kept_as_the_base() {
        let now = Instant::now();
        let _ = Stamp::from(now);
        if let Some(old) = base().checked_sub(Duration::from_secs(1)) {
            assert_eq!(Stamp::from(old).instant(), base());
        }
    }
}

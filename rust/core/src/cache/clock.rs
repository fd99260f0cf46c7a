//! The clock of expiries, in microseconds: the process's monotonic clock, one for every
//! cache of the process, or a [`ManualClock`] that moves only when told to (so that a
//! test of expiry needs no sleep). The tiers of a [`TieredCache`](super::TieredCache)
//! share one clock, so that an expiry tick means the same thing in both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The expiry of an entry without a time to live.
pub(crate) const NEVER: u64 = u64::MAX;

/// The last tick a clock reaches: every entry with a time to live has expired by then.
const LAST_TICK: u64 = NEVER - 1;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the process's first cache use.
#[inline]
fn system_now() -> u64 {
    (epoch().elapsed().as_micros() as u64).min(LAST_TICK)
}

/// Where a cache reads the time that its entries expire at.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The process's monotonic clock.
    #[default]
    System,
    /// A clock that stands still until [`ManualClock::advance`] moves it.
    Manual(ManualClock),
}

impl Clock {
    /// The current tick. Read only for entries that have a time to live.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Clock::System => system_now(),
            Clock::Manual(m) => m.ticks(),
        }
    }

    /// The tick at which an entry written now with this time to live expires.
    pub(crate) fn expiry_after(&self, ttl: Option<Duration>) -> u64 {
        match ttl {
            None => NEVER,
            // At least one tick, so that a tiny ttl still expires strictly after the write.
            Some(ttl) => self
                .now()
                .saturating_add((ttl.as_micros() as u64).max(1))
                .min(LAST_TICK),
        }
    }
}

/// Two clocks are equal when they tell the same time: both the system's, or the same
/// manual clock (not two that happen to show the same tick).
impl PartialEq for Clock {
    fn eq(&self, other: &Clock) -> bool {
        match (self, other) {
            (Clock::System, Clock::System) => true,
            (Clock::Manual(a), Clock::Manual(b)) => Arc::ptr_eq(&a.nanos, &b.nanos),
            _ => false,
        }
    }
}

/// A clock for tests of expiry: it starts at zero and moves only by
/// [`advance`](ManualClock::advance). Clones share the time. It keeps nanoseconds, so
/// that advances add up exactly; expiries read it in whole microseconds.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn ticks(&self) -> u64 {
        // At most `u64::MAX / 1000`: below `LAST_TICK`.
        self.nanos.load(Ordering::Acquire) / 1000
    }

    /// Moves the clock forward by `by`; it stops at its last instant (in 584 years)
    /// rather than wrapping.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // The closure always returns `Some`: the update cannot fail.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// The time the clock has been advanced by.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_never_wraps() {
        let m = ManualClock::new();
        let c = Clock::Manual(m.clone());
        assert_eq!(c.now(), 0);
        assert_eq!(c.expiry_after(None), NEVER);
        assert_eq!(c.expiry_after(Some(Duration::from_nanos(1))), 1);
        m.advance(Duration::from_millis(1500));
        assert_eq!(
            (c.now(), m.elapsed()),
            (1_500_000, Duration::from_millis(1500))
        );
        assert_eq!(c.expiry_after(Some(Duration::from_secs(2))), 3_500_000);
        // Advances add up to the nanosecond; expiries count whole microseconds.
        m.advance(Duration::from_nanos(999_999));
        assert_eq!(c.now(), 1_500_999);
        m.advance(Duration::from_nanos(1));
        assert_eq!(c.now(), 1_501_000);
        m.advance(Duration::MAX);
        assert_eq!(c.now(), u64::MAX / 1000);
        assert_eq!(c.expiry_after(Some(Duration::MAX)), LAST_TICK);
    }

    #[test]
    fn clocks_are_equal_when_they_tell_the_same_time() {
        let m = ManualClock::new();
        assert_eq!(Clock::Manual(m.clone()), Clock::Manual(m));
        assert_ne!(
            Clock::Manual(ManualClock::new()),
            Clock::Manual(ManualClock::new())
        );
        assert_ne!(Clock::System, Clock::Manual(ManualClock::new()));
        assert_eq!(Clock::System, Clock::System);
    }
}

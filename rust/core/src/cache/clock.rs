//! One monotonic clock for every cache in the process, in microseconds, so that an
//! expiry instant means the same thing in both tiers of a [`TieredCache`](super::TieredCache).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The expiry of an entry without a time to live.
pub(crate) const NEVER: u64 = u64::MAX;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the process's first cache use.
#[inline]
pub(crate) fn now() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The tick at which an entry written now with this time to live expires.
pub(crate) fn expiry_after(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => NEVER,
        // At least one tick, so that a tiny ttl still expires strictly after the write.
        Some(ttl) => now()
            .saturating_add((ttl.as_micros() as u64).max(1))
            .min(NEVER - 1),
    }
}

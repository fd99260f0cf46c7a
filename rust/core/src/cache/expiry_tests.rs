//! Expiry on a [`ManualClock`]: entries live exactly their time to live, whichever way
//! they are reclaimed, and a promoted copy expires with its original.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::*;

fn manual_cache<V>(
    capacity: usize,
    ttl: Option<Duration>,
    clock: &ManualClock,
) -> ShardedCache<u64, V> {
    let mut cfg = CacheConfig::new(capacity);
    cfg.shards = 1;
    cfg.ttl = ttl;
    cfg.clock = Clock::Manual(clock.clone());
    ShardedCache::new(cfg).unwrap()
}

fn ttl(ms: u64) -> EntryOptions {
    EntryOptions {
        ttl: Some(Duration::from_millis(ms)),
        weight: 1,
    }
}

#[test]
fn entries_live_exactly_their_ttl_then_expire_on_read_and_count() {
    let clock = ManualClock::new();
    let c = manual_cache(100, Some(Duration::from_millis(30)), &clock);
    for k in 0..10 {
        c.insert(k, k);
    }
    c.insert_with(99, 99, ttl(3_600_000));
    clock.advance(Duration::from_micros(29_999));
    assert_eq!(c.get(&1), Some(1), "alive until its ttl has passed");
    assert_eq!(c.len(), 11);
    clock.advance(Duration::from_micros(1));
    assert_eq!(c.get(&1), None);
    assert!(!c.contains_key(&2));
    assert_eq!(c.remove(&3), None);
    assert_eq!(c.len(), 1, "expired entries are reclaimed before counting");
    let s = c.stats();
    assert_eq!((s.expirations, s.entries, s.misses), (10, 1, 1));
    assert_eq!(c.get(&99), Some(99));
    c.check_invariants();
}

#[test]
fn a_per_entry_ttl_applies_without_a_default_and_overrides_one() {
    let clock = ManualClock::new();
    let c = manual_cache(100, None, &clock);
    c.insert_with(1, 1, ttl(50));
    c.insert(2, 2);
    let d = manual_cache(100, Some(Duration::from_secs(1)), &clock);
    d.insert_with(1, 1, ttl(50));
    d.insert(2, 2);
    clock.advance(Duration::from_millis(50));
    assert_eq!((c.get(&1), c.get(&2)), (None, Some(2)));
    assert_eq!((d.get(&1), d.get(&2)), (None, Some(2)));
    clock.advance(Duration::from_millis(950));
    assert_eq!((c.get(&2), d.get(&2)), (Some(2), None));
}

#[test]
fn writes_sweep_expired_entries_that_no_read_touches() {
    let clock = ManualClock::new();
    let c = manual_cache(10_000, Some(Duration::from_millis(20)), &clock);
    let values: Vec<Arc<u64>> = (0..200).map(Arc::new).collect();
    let gone: Vec<Weak<u64>> = values.iter().map(Arc::downgrade).collect();
    for (k, v) in values.into_iter().enumerate() {
        c.insert(k as u64, v);
    }
    clock.advance(Duration::from_millis(20));
    for k in 1000..1400 {
        c.insert_with(k, Arc::new(k), ttl(60_000));
    }
    // Counted without `len` or `stats`, which would reclaim them all themselves.
    let freed = gone.iter().filter(|w| w.strong_count() == 0).count();
    assert!(freed >= 150, "the writes' sweep freed only {freed} of 200");
    assert_eq!(c.stats().expirations, 200);
    c.check_invariants();
}

#[test]
fn a_promoted_copy_expires_with_its_original() {
    let clock = ManualClock::new();
    let l1 = Arc::new(manual_cache(10, Some(Duration::from_secs(60)), &clock));
    let l2 = Arc::new(manual_cache(10, None, &clock));
    let t = TieredCache::new(l1.clone(), l2.clone()).unwrap();
    let (k, h) = (7u64, hash::hash_key(&7u64));
    l2.insert_with(k, 70, ttl(250));
    let mut removed = Removed::new();
    clock.advance(Duration::from_millis(100));
    assert_eq!(t.get_hashed(&StdOps, h, &k, &mut removed), Some(70));
    assert!(l1.contains_key(&k), "an L2 hit is promoted");
    clock.advance(Duration::from_millis(150));
    assert!(
        !l1.contains_key(&k),
        "the copy must not outlive the original"
    );
    assert_eq!(t.get_hashed(&StdOps, h, &k, &mut removed), None);
}

#[test]
fn tiers_must_read_one_clock() {
    let l1 = Arc::new(manual_cache::<u64>(10, None, &ManualClock::new()));
    let l2 = Arc::new(manual_cache::<u64>(10, None, &ManualClock::new()));
    let err = TieredCache::new(l1, l2).err().unwrap().to_string();
    assert!(err.contains("clock"), "{err}");
    let system = || Arc::new(ShardedCache::<u64, u64>::new(CacheConfig::new(10)).unwrap());
    assert!(TieredCache::new(system(), system()).is_ok());
}

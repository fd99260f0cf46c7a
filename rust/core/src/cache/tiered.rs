//! [`TieredCache`]: a small hot L1 in front of a large L2, both [`ShardedCache`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::config::EntryOptions;
use super::sharded::{CacheOps, ShardedCache};
use super::stats::{CacheStats, Removed};
use crate::error::{Error, Result};

/// Reads try L1, then L2; an L2 hit is copied into L1 (promotion), keeping its weight
/// and expiring no later than it does in L2. Writes go to both tiers, so L2 always has
/// what L1 has unless L2 evicted it first. The hash must come from [`super::hash`],
/// whose key is shared by every cache of the process, so one hash serves both tiers;
/// and both tiers must read one clock, so that an expiry tick means one instant.
pub struct TieredCache<K, V> {
    l1: Arc<ShardedCache<K, V>>,
    l2: Arc<ShardedCache<K, V>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The counters of both tiers and of the tiered lookups themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TieredStats {
    /// Lookups answered by either tier.
    pub hits: u64,
    /// Lookups answered by neither.
    pub misses: u64,
    pub l1: CacheStats,
    pub l2: CacheStats,
}

impl<K, V> TieredCache<K, V> {
    /// Fails if the tiers read different clocks.
    pub fn new(l1: Arc<ShardedCache<K, V>>, l2: Arc<ShardedCache<K, V>>) -> Result<Self> {
        if l1.config().clock != l2.config().clock {
            return Err(Error::invalid("l1 and l2 must use the same clock"));
        }
        Ok(TieredCache {
            l1,
            l2,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub fn l1(&self) -> &Arc<ShardedCache<K, V>> {
        &self.l1
    }

    pub fn l2(&self) -> &Arc<ShardedCache<K, V>> {
        &self.l2
    }

    pub fn get_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<V> {
        if let Some(v) = self.l1.get_hashed(ops, hash, key, removed) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(v);
        }
        match self.l2.get_entry_hashed(ops, hash, key, removed) {
            Some((v, weight, expires)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let copy = ops.clone_value(&v);
                self.l1.insert_expiring(
                    ops,
                    hash,
                    ops.clone_key(key),
                    copy,
                    weight,
                    expires.min(self.l1.default_expiry()),
                    removed,
                );
                Some(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes to both tiers; true if at least one of them stored it.
    pub fn insert_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: K,
        value: V,
        opts: EntryOptions,
        removed: &mut Removed<K, V>,
    ) -> bool {
        let in_l1 = self.l1.insert_hashed(
            ops,
            hash,
            ops.clone_key(&key),
            ops.clone_value(&value),
            opts,
            removed,
        );
        let in_l2 = self.l2.insert_hashed(ops, hash, key, value, opts, removed);
        in_l1 || in_l2
    }

    /// Removes the key from both tiers; returns the freshest live value (L1's first).
    pub fn remove_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<V> {
        let a = self.l1.remove_hashed(ops, hash, key, removed);
        let b = self.l2.remove_hashed(ops, hash, key, removed);
        match (a, b) {
            (Some((_, v)), other) => {
                if let Some((k2, v2)) = other {
                    removed.push(k2, v2);
                }
                Some(v)
            }
            (None, Some((_, v))) => Some(v),
            (None, None) => None,
        }
    }

    pub fn contains_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> bool {
        self.l1.contains_hashed(ops, hash, key, removed)
            || self.l2.contains_hashed(ops, hash, key, removed)
    }

    pub fn clear_into(&self, removed: &mut Removed<K, V>) {
        self.l1.clear_into(removed);
        self.l2.clear_into(removed);
    }

    pub fn stats_into(&self, removed: &mut Removed<K, V>) -> TieredStats {
        TieredStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            l1: self.l1.stats_into(removed),
            l2: self.l2.stats_into(removed),
        }
    }
}

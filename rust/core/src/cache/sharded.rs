//! [`ShardedCache`]: shards behind their own locks, picked by the top bits of a keyed hash.

use std::hash::Hash;

use parking_lot::Mutex;

use super::clock;
use super::config::{CacheConfig, EntryOptions, Policy};
use super::hash;
use super::shard::Shard;
use super::stats::{CacheStats, Removed};
use crate::error::Result;

/// How the cache compares keys and copies keys and values. Comparing or copying a
/// Python object needs the interpreter's token, so the binding implements this with one;
/// Rust types use [`StdOps`]. Every method is called under a shard lock: it must not
/// block or call back into the cache.
pub trait CacheOps<K, V> {
    fn key_eq(&self, stored: &K, probe: &K) -> bool;
    fn clone_key(&self, key: &K) -> K;
    fn clone_value(&self, value: &V) -> V;
}

/// [`CacheOps`] through `Eq` and `Clone`.
pub struct StdOps;

impl<K: Eq + Clone, V: Clone> CacheOps<K, V> for StdOps {
    #[inline]
    fn key_eq(&self, stored: &K, probe: &K) -> bool {
        stored == probe
    }
    #[inline]
    fn clone_key(&self, key: &K) -> K {
        key.clone()
    }
    #[inline]
    fn clone_value(&self, value: &V) -> V {
        value.clone()
    }
}

/// Keeps each shard's lock on its own cache lines, so that two threads working on two
/// shards do not contend for one line.
#[repr(align(128))]
struct Padded<T>(T);

type LockedShard<K, V> = Padded<Mutex<Shard<K, V>>>;

/// A concurrent, bounded cache of `capacity` entries split over independent shards.
///
/// The `*_hashed` methods are the low-level interface: the caller supplies the key's
/// hash (from [`hash::hash_key`] or [`hash::mix`]) and a [`CacheOps`], and receives what
/// the call took out of the cache in a [`Removed`], to drop once the call has returned.
/// The plain methods (`get`, `insert`, ...) do all that for `Hash + Eq + Clone` keys.
pub struct ShardedCache<K, V> {
    shards: Box<[LockedShard<K, V>]>,
    config: CacheConfig,
}

impl<K, V> ShardedCache<K, V> {
    pub fn new(config: CacheConfig) -> Result<Self> {
        config.validate()?;
        let n = config.effective_shards();
        let frequency = config.policy == Policy::LruWithFrequency;
        let shards = (0..n)
            .map(|i| {
                let (cap, weight) = config.shard_budget(i);
                Padded(Mutex::new(Shard::new(
                    cap,
                    weight,
                    frequency,
                    hash::mix(i as u64),
                )))
            })
            .collect();
        Ok(ShardedCache { shards, config })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<K, V>> {
        // Bits 16..48 pick the shard: the table uses the low bits for its buckets and
        // the top 7 for its tags, so the shard choice does not thin either of them out.
        let i = (((hash >> 16) as u32 as u64) * self.shards.len() as u64) >> 32;
        &self.shards[i as usize].0
    }

    #[inline]
    fn expiry(&self, ttl: Option<std::time::Duration>) -> u64 {
        clock::expiry_after(ttl.or(self.config.ttl))
    }

    /// Looks a key up (a hit or a miss in the stats); returns a copy of its value.
    #[inline]
    pub fn get_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<V> {
        let mut shard = self.shard(hash).lock();
        shard
            .get(hash, |k| ops.key_eq(k, key), removed)
            .map(|n| ops.clone_value(&n.value))
    }

    /// Like [`get_hashed`](Self::get_hashed), also returning the entry's weight and
    /// expiry tick (for promotion into another tier).
    pub(crate) fn get_entry_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<(V, u32, u64)> {
        let mut shard = self.shard(hash).lock();
        shard
            .get(hash, |k| ops.key_eq(k, key), removed)
            .map(|n| (ops.clone_value(&n.value), n.weight, n.expires))
    }

    /// Whether the key has a live entry (not counted as a hit or a miss).
    pub fn contains_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> bool {
        self.shard(hash)
            .lock()
            .contains(hash, |k| ops.key_eq(k, key), removed)
    }

    /// Writes an entry; false if it weighs more than its shard's share of `max_memory`
    /// (it is then not stored, and counted as a rejection).
    #[inline]
    pub fn insert_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: K,
        value: V,
        opts: EntryOptions,
        removed: &mut Removed<K, V>,
    ) -> bool {
        let expires = self.expiry(opts.ttl);
        self.insert_expiring(ops, hash, key, value, opts.weight, expires, removed)
    }

    /// The expiry tick of an entry written now with the cache's default ttl.
    pub(crate) fn default_expiry(&self) -> u64 {
        self.expiry(None)
    }

    /// Writes with an absolute expiry tick.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_expiring<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires: u64,
        removed: &mut Removed<K, V>,
    ) -> bool {
        self.shard(hash).lock().insert(
            hash,
            key,
            value,
            weight,
            expires,
            |a, b| ops.key_eq(a, b),
            removed,
        )
    }

    /// Removes a key; returns its key and value if it had a live entry.
    pub fn remove_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<(K, V)> {
        self.shard(hash)
            .lock()
            .remove(hash, |k| ops.key_eq(k, key), removed)
    }

    /// Removes every entry (the counters are kept).
    pub fn clear_into(&self, removed: &mut Removed<K, V>) {
        for s in self.shards.iter() {
            s.0.lock().clear(removed);
        }
    }

    /// Live entries: expired ones are reclaimed first (a full pass over a shard only
    /// when one of its entries may have expired).
    pub fn len_into(&self, removed: &mut Removed<K, V>) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut shard = s.0.lock();
                shard.purge_expired(removed);
                shard.len()
            })
            .sum()
    }

    /// The counters summed over the shards, after reclaiming expired entries.
    pub fn stats_into(&self, removed: &mut Removed<K, V>) -> CacheStats {
        let mut total = CacheStats::default();
        for s in self.shards.iter() {
            let mut shard = s.0.lock();
            shard.purge_expired(removed);
            total.add(&shard.stats());
        }
        total
    }

    pub fn len(&self) -> usize {
        let mut removed = Removed::new();
        self.len_into(&mut removed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        let mut removed = Removed::new();
        self.stats_into(&mut removed)
    }

    pub fn clear(&self) {
        let mut removed = Removed::new();
        self.clear_into(&mut removed);
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for s in self.shards.iter() {
            s.0.lock().check_invariants();
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedCache<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        let mut removed = Removed::new();
        self.get_hashed(&StdOps, hash::hash_key(key), key, &mut removed)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        let mut removed = Removed::new();
        self.contains_hashed(&StdOps, hash::hash_key(key), key, &mut removed)
    }

    pub fn insert(&self, key: K, value: V) -> bool {
        self.insert_with(key, value, EntryOptions::default())
    }

    pub fn insert_with(&self, key: K, value: V, opts: EntryOptions) -> bool {
        let mut removed = Removed::new();
        let h = hash::hash_key(&key);
        self.insert_hashed(&StdOps, h, key, value, opts, &mut removed)
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        let mut removed = Removed::new();
        self.remove_hashed(&StdOps, hash::hash_key(key), key, &mut removed)
            .map(|(_, v)| v)
    }
}

//! [`ShardedCache`]: shards behind their own locks, picked by the top bits of a keyed hash.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::config::{CacheConfig, EntryOptions, Policy};
use super::hash;
use super::shard::{Shard, UseClock};
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

/// Plain LRU over all shards at once. Every use of an entry takes a stamp from one
/// clock; each shard's list is ordered by stamp, and each shard publishes the stamp of
/// its least recently used entry, so the global LRU entry is the one behind the smallest
/// published stamp. Shards also publish their entry count and weight, whose sums are
/// checked against `capacity` and `max_memory` after each write: the bounds hold for
/// the whole cache rather than as per-shard shares, and the cache evicts exactly what
/// one LRU list would. (With concurrent writers the sums may lag by the writes in
/// flight, and a writer may then evict one entry more than needed.)
struct GlobalLru {
    clock: AtomicU64,
    capacity: u64,
    max_weight: u64,
    /// Packed rather than padded: each write reads all of them, which matters more
    /// than two threads writing neighbouring shards' values.
    published: Box<[Published]>,
}

/// What a shard tells the others; written under its lock with plain (relaxed) stores.
struct Published {
    tail: AtomicU64,
    len: AtomicU64,
    weight: AtomicU64,
}

/// A concurrent, bounded cache of `capacity` entries split over independent shards.
///
/// The `*_hashed` methods are the low-level interface: the caller supplies the key's
/// hash (from [`hash::hash_key`] or [`hash::mix`]) and a [`CacheOps`], and receives what
/// the call took out of the cache in a [`Removed`], to drop once the call has returned.
/// The plain methods (`get`, `insert`, ...) do all that for `Hash + Eq + Clone` keys.
///
/// With [`Policy::Lru`] the shards form one exact LRU (see `GlobalLru`); with
/// [`Policy::LruWithFrequency`] each shard runs W-TinyLFU on its share of the bounds.
pub struct ShardedCache<K, V> {
    shards: Box<[LockedShard<K, V>]>,
    global: Option<GlobalLru>,
    config: CacheConfig,
}

impl<K, V> ShardedCache<K, V> {
    pub fn new(config: CacheConfig) -> Result<Self> {
        config.validate()?;
        let n = config.effective_shards();
        let frequency = config.policy == Policy::LruWithFrequency;
        let shards = (0..n)
            .map(|i| {
                let (cap, weight) = if frequency {
                    config.shard_budget(i)
                } else {
                    // Bounded globally; a shard may hold the whole cache.
                    (
                        config.capacity as u32,
                        config.max_memory.unwrap_or(u64::MAX),
                    )
                };
                Padded(Mutex::new(Shard::new(
                    cap,
                    weight,
                    frequency,
                    hash::mix(i as u64),
                    config.clock.clone(),
                )))
            })
            .collect();
        let global = (!frequency).then(|| GlobalLru {
            clock: AtomicU64::new(0),
            capacity: config.capacity as u64,
            max_weight: config.max_memory.unwrap_or(u64::MAX),
            published: (0..n)
                .map(|_| Published {
                    tail: AtomicU64::new(u64::MAX),
                    len: AtomicU64::new(0),
                    weight: AtomicU64::new(0),
                })
                .collect(),
        });
        Ok(ShardedCache {
            shards,
            global,
            config,
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        // Bits 16..48 pick the shard: the table uses the low bits for its buckets and
        // the top 7 for its tags, so the shard choice does not thin either of them out.
        ((((hash >> 16) as u32 as u64) * self.shards.len() as u64) >> 32) as usize
    }

    /// Runs `f` on shard `i` under its lock; publishes what the global LRU needs to
    /// know of the shard afterwards.
    #[inline(always)]
    fn with_shard<R>(&self, i: usize, f: impl FnOnce(&mut Shard<K, V>, UseClock<'_>) -> R) -> R {
        let mut shard = self.shards[i].0.lock();
        let Some(g) = &self.global else {
            return f(&mut shard, UseClock(None));
        };
        let r = f(&mut shard, UseClock(Some(&g.clock)));
        let p = &g.published[i];
        // Plain stores, and only of what changed: a read-only hit changes the tail at
        // most, and an atomic read-modify-write would cost more than the whole lookup.
        let publish = |slot: &AtomicU64, value: u64| {
            if slot.load(Ordering::Relaxed) != value {
                slot.store(value, Ordering::Relaxed);
            }
        };
        if let Some(tail) = shard.tail_update() {
            p.tail.store(tail, Ordering::Relaxed);
        }
        publish(&p.len, shard.len() as u64);
        publish(&p.weight, shard.weight());
        r
    }

    /// Evicts global LRU entries until both bounds hold (plain LRU only).
    fn evict_global(&self, removed: &mut Removed<K, V>) {
        let Some(g) = &self.global else { return };
        loop {
            let (mut len, mut weight) = (0u64, 0u64);
            let (mut victim, mut oldest) = (0, u64::MAX);
            for (i, p) in g.published.iter().enumerate() {
                len += p.len.load(Ordering::Relaxed);
                weight = weight.saturating_add(p.weight.load(Ordering::Relaxed));
                let t = p.tail.load(Ordering::Relaxed);
                if t < oldest {
                    (victim, oldest) = (i, t);
                }
            }
            if (len <= g.capacity && weight <= g.max_weight) || oldest == u64::MAX {
                return;
            }
            self.with_shard(victim, |s, _| s.evict_tail(removed));
        }
    }

    #[inline]
    fn expiry(&self, ttl: Option<std::time::Duration>) -> u64 {
        self.config.clock.expiry_after(ttl.or(self.config.ttl))
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
        self.with_shard(self.shard_index(hash), |s, clock| {
            s.get(
                hash,
                |k| ops.key_eq(k, key),
                clock,
                removed,
                |n| ops.clone_value(&n.value),
            )
        })
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
        self.with_shard(self.shard_index(hash), |s, clock| {
            s.get(
                hash,
                |k| ops.key_eq(k, key),
                clock,
                removed,
                |n| (ops.clone_value(&n.value), n.weight, n.expires),
            )
        })
    }

    /// Whether the key has a live entry (not counted as a hit or a miss).
    pub fn contains_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> bool {
        self.with_shard(self.shard_index(hash), |s, _| {
            s.contains(hash, |k| ops.key_eq(k, key), removed)
        })
    }

    /// Writes an entry; false if it weighs more than `max_memory` (or, with
    /// `lru-with-frequency`, than its shard's share of it): it is then not stored, and
    /// counted as a rejection.
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
        let stored = self.with_shard(self.shard_index(hash), |s, clock| {
            s.insert(
                hash,
                key,
                value,
                weight,
                expires,
                clock,
                |a, b| ops.key_eq(a, b),
                removed,
            )
        });
        self.evict_global(removed);
        stored
    }

    /// Removes a key; returns its key and value if it had a live entry.
    pub fn remove_hashed<O: CacheOps<K, V>>(
        &self,
        ops: &O,
        hash: u64,
        key: &K,
        removed: &mut Removed<K, V>,
    ) -> Option<(K, V)> {
        self.with_shard(self.shard_index(hash), |s, _| {
            s.remove(hash, |k| ops.key_eq(k, key), removed)
        })
    }

    /// Removes every entry (the counters are kept).
    pub fn clear_into(&self, removed: &mut Removed<K, V>) {
        for i in 0..self.shards.len() {
            self.with_shard(i, |s, _| s.clear(removed));
        }
    }

    /// Live entries: expired ones are reclaimed first (a full pass over a shard only
    /// when one of its entries may have expired).
    pub fn len_into(&self, removed: &mut Removed<K, V>) -> usize {
        (0..self.shards.len())
            .map(|i| {
                self.with_shard(i, |s, _| {
                    s.purge_expired(removed);
                    s.len()
                })
            })
            .sum()
    }

    /// The counters summed over the shards, after reclaiming expired entries.
    pub fn stats_into(&self, removed: &mut Removed<K, V>) -> CacheStats {
        let mut total = CacheStats::default();
        for i in 0..self.shards.len() {
            let s = self.with_shard(i, |s, _| {
                s.purge_expired(removed);
                s.stats()
            });
            total.add(&s);
        }
        total
    }

    /// Bytes the cache's own structures take now (shards, tables, entry slots, admission
    /// sketches), not counting what keys and values own: they grow with the entries held
    /// (see `shard`), so an empty cache of any capacity takes a few kilobytes.
    pub fn heap_bytes(&self) -> usize {
        let fixed = std::mem::size_of_val(&*self.shards)
            + self
                .global
                .as_ref()
                .map_or(0, |g| std::mem::size_of_val(&*g.published));
        fixed
            + (0..self.shards.len())
                .map(|i| self.with_shard(i, |s, _| s.heap_bytes()))
                .sum::<usize>()
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
        let (mut len, mut weight) = (0, 0);
        for (i, s) in self.shards.iter().enumerate() {
            let s = s.0.lock();
            s.check_invariants();
            len += s.len() as u64;
            weight += s.weight();
            if let Some(g) = &self.global {
                assert_eq!(g.published[i].len.load(Ordering::Relaxed), s.len() as u64);
                assert_eq!(g.published[i].weight.load(Ordering::Relaxed), s.weight());
                assert_eq!(g.published[i].tail.load(Ordering::Relaxed), s.tail_stamp());
            }
        }
        if let Some(g) = &self.global {
            assert!(len <= g.capacity && weight <= g.max_weight);
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

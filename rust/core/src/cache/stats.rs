//! Counters of a cache, kept per shard under the shard's lock and summed on demand.

use std::mem::ManuallyDrop;

use super::slab::Node;

/// What a cache has done since it was created (or since the counters were last read
/// for a tier): every lookup is a hit or a miss; every entry that left without being
/// popped, replaced or cleared is an eviction, an expiration or a rejection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that returned a value.
    pub hits: u64,
    /// Lookups that found nothing, or only an expired entry.
    pub misses: u64,
    /// Entries removed to respect `capacity` or `max_memory`.
    pub evictions: u64,
    /// Entries removed because their time to live had passed.
    pub expirations: u64,
    /// New entries that the admission filter turned away in favour of a more frequent
    /// resident, or that weigh more than the shard's share of `max_memory`.
    pub rejections: u64,
    /// Entries held now.
    pub entries: u64,
    /// Sum of the weights of the entries held now.
    pub memory_bytes: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, 0 before the first lookup.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    pub(crate) fn add(&mut self, other: &CacheStats) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.evictions += other.evictions;
        self.expirations += other.expirations;
        self.rejections += other.rejections;
        self.entries += other.entries;
        self.memory_bytes += other.memory_bytes;
    }
}

/// Keys and values taken out of the cache by an operation (evicted, expired, replaced,
/// cleared). They are handed to the caller instead of being dropped under a shard lock,
/// because dropping a value may run arbitrary code (a Python `__del__`) that could call
/// back into the cache. Drop it after the call returns.
pub struct Removed<K, V> {
    one: ManuallyDrop<Option<(K, V)>>,
    /// Boxed, so that a `Removed` that holds at most one entry (nearly every call's)
    /// allocates nothing.
    rest: ManuallyDrop<Option<Box<Rest<K, V>>>>,
}

struct Rest<K, V> {
    more: Vec<(K, V)>,
    bulk: Vec<Vec<Option<Node<K, V>>>>,
}

/// Dropping an empty `Removed` (every read's that hits) is two tests, inlined: the
/// fields are `ManuallyDrop` so that the compiler does not add its own out-of-line drop
/// of them after this one.
impl<K, V> Drop for Removed<K, V> {
    #[inline]
    fn drop(&mut self) {
        if self.one.is_some() || self.rest.is_some() {
            self.drop_entries();
        }
    }
}

impl<K, V> Default for Removed<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Removed<K, V> {
    /// An empty holder; allocates nothing until two entries are pushed.
    #[inline]
    pub fn new() -> Self {
        Removed {
            one: ManuallyDrop::new(None),
            rest: ManuallyDrop::new(None),
        }
    }

    #[inline(never)]
    fn drop_entries(&mut self) {
        // Taking leaves `None`s behind, which need no drop.
        drop(self.one.take());
        drop(self.rest.take());
    }

    fn rest(&mut self) -> &mut Rest<K, V> {
        self.rest.get_or_insert_with(|| {
            Box::new(Rest {
                more: Vec::new(),
                bulk: Vec::new(),
            })
        })
    }

    #[inline]
    pub(crate) fn push(&mut self, key: K, value: V) {
        if self.one.is_none() {
            *self.one = Some((key, value));
        } else {
            self.rest().more.push((key, value));
        }
    }

    pub(crate) fn push_bulk(&mut self, nodes: Vec<Option<Node<K, V>>>) {
        if !nodes.is_empty() {
            self.rest().bulk.push(nodes);
        }
    }

    /// Takes out the first entry pushed, if any (a write's one evicted or replaced
    /// entry, usually), so that the caller can drop it its own way.
    #[inline]
    pub fn take_one(&mut self) -> Option<(K, V)> {
        self.one.take()
    }

    /// How many entries it holds.
    #[inline]
    pub fn len(&self) -> usize {
        self.one.is_some() as usize
            + self.rest.as_ref().map_or(0, |r| {
                r.more.len()
                    + r.bulk
                        .iter()
                        .map(|b| b.iter().flatten().count())
                        .sum::<usize>()
            })
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! One shard: a hash table of slot indices over a [`Slab`], and the eviction policy.
//!
//! `Policy::Lru` keeps one list, evicting its least recently used entry.
//!
//! `Policy::LruWithFrequency` is W-TinyLFU (Caffeine's design): new entries enter a
//! small **window** LRU (1% of the capacity), so that a burst of new keys can still get
//! hits while young. An entry pushed out of the window is a *candidate* for the **main**
//! segmented LRU (probation 20% / protected 80%); when main is full the candidate is
//! admitted only if the [`FrequencySketch`] says it was used more often recently than
//! the main *victim* (probation's LRU entry), and rejected otherwise. A scan of one-time
//! keys therefore churns only the window, and a loop larger than the cache keeps most of
//! its keys resident instead of evicting each one just before its reuse.
//!
//! The sketch counts a use of a key when a write adds it, not when a read misses: with
//! the usual read-through (a miss, then a write of the key) that is the same count, and
//! a miss then costs no access to the sketch (its one cache miss would be most of the
//! cost of the lookup). A read that hits counts in the entry itself (`Node::freq`, aged
//! with the sketch's halvings), which admission adds to the sketch's estimate and which
//! passes into the sketch when the entry leaves: a hit then touches no memory beyond
//! its entry, where recording it in the sketch put every hit key's sketch block in the
//! CPU cache and cost about a fifth of the hit.
//!
//! Nothing is allocated for the capacity up front: the table and the slab grow as entries
//! arrive, and the sketch takes a block's memory when it first writes the block (all of
//! them once half are, after a fifth to a third of the capacity), so an empty cache
//! of ten million entries takes a few kilobytes.

use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;

use super::clock::{Clock, NEVER};
use super::prefetch::prefetch;
use super::sketch::FrequencySketch;
use super::slab::{Node, Queue, Slab};
use super::slot::SlotCodec;
use super::stats::{CacheStats, Removed};
use expiry::expired;

/// A candidate at least this frequent may be admitted at random even when it does not
/// beat the victim (1 in 128), so that an attacker who inflates a victim's frequency
/// cannot pin it forever (Caffeine's hash-flooding guard).
const ADMIT_AT_RANDOM_FREQUENCY: u32 = 6;
/// The global LRU clock (plain LRU only), read only when an entry is actually used, so
/// that a miss costs no atomic operation. Read under the shard lock, so stamps within a
/// shard follow its list order.
#[derive(Clone, Copy)]
pub(crate) struct UseClock<'a>(pub(crate) Option<&'a AtomicU64>);

impl UseClock<'_> {
    #[inline]
    fn tick(self) -> u64 {
        self.0.map_or(0, |c| c.fetch_add(1, Ordering::Relaxed))
    }
}

/// `lru-with-frequency` moves a used entry of the window or protected list to the front
/// only if it may be outside the most recent `1 / LAZY_FRACTION` of that list.
const LAZY_FRACTION: u32 = 4;

/// Entries examined for expiry on each write (amortised sweep).
const SWEEP_PER_WRITE: usize = 2;

pub(crate) struct Shard<K, V> {
    table: HashTable<u32>,
    codec: SlotCodec,
    slab: Slab<K, V>,
    /// `Some` for `lru-with-frequency`; `None` for plain LRU.
    sketch: Option<FrequencySketch>,
    capacity: u32,
    window_cap: u32,
    protected_cap: u32,
    max_weight: u64,
    weight: u64,
    /// Entries that carry an expiry, and a lower bound of their expiries.
    expiring: u32,
    min_expiry: u64,
    /// The clock that expiry ticks are read on (the cache's).
    time: Clock,
    sweep_cursor: u32,
    /// The LRU list's `tail_version` when the tail stamp was last read.
    tail_seen: u32,
    rng: u64,
    stats: CacheStats,
}

impl<K, V> Shard<K, V> {
    pub(crate) fn new(
        capacity: u32,
        max_weight: u64,
        frequency: bool,
        seed: u64,
        time: Clock,
    ) -> Self {
        let window_cap = if frequency {
            (capacity / 100).max(1)
        } else {
            capacity
        };
        let main_cap = capacity - window_cap;
        Shard {
            table: HashTable::new(),
            slab: Slab::new(frequency, capacity as usize + 1),
            sketch: frequency.then(|| FrequencySketch::new(capacity as usize)),
            capacity,
            codec: SlotCodec::new(capacity),
            window_cap,
            protected_cap: (main_cap as u64 * 8 / 10) as u32,
            max_weight,
            weight: 0,
            expiring: 0,
            min_expiry: NEVER,
            time,
            sweep_cursor: 0,
            tail_seen: 0,
            rng: seed | 1,
            stats: CacheStats::default(),
        }
    }

    #[inline]
    fn find(&self, hash: u64, mut eq: impl FnMut(&K) -> bool) -> Option<u32> {
        let slab = &self.slab;
        let codec = self.codec;
        let check = codec.check(hash);
        self.table
            .find(hash, |&t| {
                codec.matches(t, check) && eq(&slab.node(codec.idx(t)).key)
            })
            .map(|&t| codec.idx(t))
    }

    /// Takes an entry out of the slab and the table; returns its key and value.
    ///
    /// The entry's other fields are read where it lies, and only the key and value are
    /// moved out: moving the whole 64-byte entry went through the stack twice, and the
    /// reads of those copies (which wait for the entry's own load) took a tenth of an
    /// evicting write.
    #[inline]
    fn take_at(&mut self, idx: u32) -> (K, V) {
        let node = self.slab.node(idx);
        let (hash, weight, expires) = (node.hash, node.weight, node.expires);
        if let Some(s) = &mut self.sketch {
            // The sketch takes over the hits the entry counted while resident.
            let f = s.aged(node.freq, node.freq_gen);
            if f > 0 {
                s.add(hash, f as u32);
            }
        }
        let codec = self.codec;
        match self.table.find_entry(hash, |&t| codec.idx(t) == idx) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("every slab entry is in the table"),
        }
        self.weight -= weight as u64;
        if expires != NEVER {
            self.expiring -= 1;
            if self.expiring == 0 {
                self.min_expiry = NEVER;
            }
        }
        self.slab.remove(idx)
    }

    /// Removes an entry into `removed`.
    fn remove_at(&mut self, idx: u32, removed: &mut Removed<K, V>) {
        let (key, value) = self.take_at(idx);
        removed.push(key, value);
    }

    /// Marks an entry as just used.
    #[inline(always)]
    fn on_access(&mut self, idx: u32, clock: UseClock<'_>) {
        if self.sketch.is_none() {
            // Plain LRU: exact, since the global LRU compares the shards' tail stamps.
            self.slab.node_mut(idx).stamp = clock.tick();
            self.slab.move_to_front(idx, Queue::Window);
            return;
        }
        let node = self.slab.node(idx);
        match node.queue {
            Queue::Probation => self.promote(idx),
            q => {
                // An entry still in the most recent `1 / LAZY_FRACTION` of its list stays
                // where it is: moving it would change only the order among recent entries
                // (none of which is near eviction), and costs writes to three entries
                // (its neighbours' and the head's), usually three cache misses. This is
                // what makes a hit on a hot key cheap.
                let ahead = self.slab.links().wrapping_sub(node.stamp).wrapping_sub(1);
                if ahead >= (self.slab.list(q).len / LAZY_FRACTION) as u64 {
                    self.slab.move_to_front(idx, q);
                }
            }
        }
    }

    /// A used probation entry moves to protected, which demotes protected's LRU entry
    /// if that overflows. Out of line: after warm-up most hits are on protected entries.
    #[inline(never)]
    fn promote(&mut self, idx: u32) {
        self.slab.move_to_front(idx, Queue::Protected);
        if self.slab.list(Queue::Protected).len > self.protected_cap {
            if let Some(t) = self.slab.tail(Queue::Protected) {
                self.slab.move_to_front(t, Queue::Probation);
            }
        }
    }

    /// Looks a key up, counting a hit or a miss; returns what `read` makes of the live
    /// entry. `read` runs as soon as the entry is found, before the bookkeeping of the
    /// hit: copying a value usually touches memory of its own (a Python object's
    /// reference count), and that load then overlaps the list's.
    #[inline]
    pub(crate) fn get<R>(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
        clock: UseClock<'_>,
        removed: &mut Removed<K, V>,
        read: impl FnOnce(&Node<K, V>) -> R,
    ) -> Option<R> {
        let Some(idx) = self.find(hash, eq) else {
            self.stats.misses += 1;
            return None;
        };
        let node = self.slab.node_mut(idx);
        if expired(&self.time, node.expires) {
            self.expire_on_read(idx, removed);
            return None;
        }
        let r = read(node);
        if let Some(s) = &mut self.sketch {
            // A saturated, up-to-date count is left alone: no write to the entry.
            let gen = s.generation();
            if node.freq < 15 || node.freq_gen != gen {
                let f = s.aged(node.freq, node.freq_gen);
                node.freq = (f + 1).min(15);
                node.freq_gen = gen;
                if f < 15 {
                    s.count_hit();
                }
            }
        }
        self.stats.hits += 1;
        self.on_access(idx, clock);
        Some(r)
    }

    /// Whether a live entry exists; neither a hit nor a miss, and no change of recency.
    pub(crate) fn contains(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
        removed: &mut Removed<K, V>,
    ) -> bool {
        match self.find(hash, eq) {
            Some(idx) if self.is_expired(idx) => {
                self.remove_at(idx, removed);
                self.stats.expirations += 1;
                false
            }
            found => found.is_some(),
        }
    }

    /// Removes a key; returns its value if it was live.
    pub(crate) fn remove(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
        removed: &mut Removed<K, V>,
    ) -> Option<(K, V)> {
        let idx = self.find(hash, eq)?;
        if self.is_expired(idx) {
            self.remove_at(idx, removed);
            self.stats.expirations += 1;
            return None;
        }
        Some(self.take_at(idx))
    }

    #[allow(clippy::too_many_arguments)]
    /// Writes an entry. Returns false if it was rejected because it alone weighs more
    /// than the shard's budget (an older value of the key is then removed too, so that
    /// a reader never sees a value older than the last write).
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires: u64,
        clock: UseClock<'_>,
        mut eq: impl FnMut(&K, &K) -> bool,
        removed: &mut Removed<K, V>,
    ) -> bool {
        if let Some(s) = &self.sketch {
            s.prefetch(hash);
            self.prefetch_eviction(s);
        }
        let existing = self.find(hash, |stored| eq(stored, &key));
        if weight as u64 > self.max_weight {
            if let Some(idx) = existing {
                self.remove_at(idx, removed);
            }
            self.stats.rejections += 1;
            removed.push(key, value);
            return false;
        }
        if expires != NEVER {
            self.min_expiry = self.min_expiry.min(expires);
        }
        if let Some(idx) = existing {
            let node = self.slab.node_mut(idx);
            let old_value = std::mem::replace(&mut node.value, value);
            let old_weight = std::mem::replace(&mut node.weight, weight);
            let old_expires = std::mem::replace(&mut node.expires, expires);
            self.weight = self.weight - old_weight as u64 + weight as u64;
            match (old_expires != NEVER, expires != NEVER) {
                (false, true) => self.expiring += 1,
                (true, false) => self.expiring -= 1,
                _ => {}
            }
            removed.push(key, old_value);
            self.on_access(idx, clock);
        } else {
            if self.expiring > 0 {
                self.sweep(SWEEP_PER_WRITE, removed);
            }
            let idx = self
                .slab
                .insert(key, value, hash, expires, weight, Queue::Window);
            if self.sketch.is_none() {
                self.slab.node_mut(idx).stamp = clock.tick();
            }
            let slab = &self.slab;
            let codec = self.codec;
            self.table.insert_unique(hash, codec.pack(idx, hash), |&t| {
                slab.node(codec.idx(t)).hash
            });
            self.weight += weight as u64;
            if expires != NEVER {
                self.expiring += 1;
            }
        }
        self.evict(removed);
        if existing.is_none() {
            // After admission, as if last (admission never weighs the key just written:
            // it is the window's newest), and later still: the sketch's block, prefetched
            // on entry, is written when the sketch is next used, by when it has arrived.
            if let Some(s) = &mut self.sketch {
                s.record_later(hash);
            }
        }
        true
    }

    fn evict(&mut self, removed: &mut Removed<K, V>) {
        if self.sketch.is_some() {
            self.evict_window(removed);
        }
        // Plain LRU, and weight overruns under either policy: the least valuable entries
        // go first: probation's LRU, then protected's, then the window's.
        while self.slab.len() > self.capacity as usize || self.weight > self.max_weight {
            let victim = self
                .slab
                .tail(Queue::Probation)
                .or_else(|| self.slab.tail(Queue::Protected))
                .or_else(|| self.slab.tail(Queue::Window));
            let Some(v) = victim else { break };
            self.remove_at(v, removed);
            self.stats.evictions += 1;
        }
    }

    /// Starts loading what making room for one more entry will read, if the window is
    /// full: the candidate's and the victim's sketch blocks and the candidate's table
    /// slot (the entry that leaves is usually the candidate, rejected). Their misses
    /// then overlap the lookup of the key being written instead of following it one
    /// after another.
    #[inline]
    fn prefetch_eviction(&self, sketch: &FrequencySketch) {
        let window = self.slab.list(Queue::Window).len;
        if window < self.window_cap {
            return;
        }
        let Some(candidate) = self.slab.tail(Queue::Window) else {
            return;
        };
        let c = self.slab.node(candidate).hash;
        sketch.prefetch(c);
        self.prefetch_slot(c);
        let main_len = self.slab.len() - window as usize;
        if main_len >= (self.capacity - self.window_cap) as usize {
            if let Some(v) = self
                .slab
                .tail(Queue::Probation)
                .or_else(|| self.slab.tail(Queue::Protected))
            {
                sketch.prefetch(self.slab.node(v).hash);
            }
        }
    }

    /// Starts loading the table's control bytes and slot where a probe for `hash`
    /// starts, which is where its key usually is (hashbrown probes from the hash's low
    /// bits; were that to change, this would only stop helping). Reading the control
    /// byte is a load, not a hint: it is what brings that line in.
    #[inline]
    fn prefetch_slot(&self, hash: u64) {
        let buckets = self.table.num_buckets();
        if buckets > 0 {
            if let Some(slot) = self.table.get_bucket(hash as usize & (buckets - 1)) {
                prefetch(slot);
            }
        }
    }

    /// Moves the window's overflow into main, through the admission filter.
    fn evict_window(&mut self, removed: &mut Removed<K, V>) {
        let main_cap = (self.capacity - self.window_cap) as usize;
        while self.slab.list(Queue::Window).len > self.window_cap {
            let Some(candidate) = self.slab.tail(Queue::Window) else {
                break;
            };
            let main_len = self.slab.len() - self.slab.list(Queue::Window).len as usize;
            if main_len < main_cap {
                self.slab.move_to_front(candidate, Queue::Probation);
                continue;
            }
            let victim = self
                .slab
                .tail(Queue::Probation)
                .or_else(|| self.slab.tail(Queue::Protected));
            match victim {
                Some(v) if self.admit(candidate, v) => {
                    self.remove_at(v, removed);
                    self.stats.evictions += 1;
                    self.slab.move_to_front(candidate, Queue::Probation);
                }
                Some(_) => {
                    self.remove_at(candidate, removed);
                    self.stats.rejections += 1;
                }
                None => {
                    self.remove_at(candidate, removed);
                    self.stats.evictions += 1;
                }
            }
        }
    }

    /// Whether the window's LRU entry `candidate` should replace main's `victim`.
    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        let (c, v) = (self.slab.node(candidate), self.slab.node(victim));
        let (c, v) = ((c.hash, c.freq, c.freq_gen), (v.hash, v.freq, v.freq_gen));
        let Some(sketch) = &mut self.sketch else {
            return true;
        };
        // Both blocks are fetched before either is read, so the two misses overlap.
        sketch.prefetch(c.0);
        sketch.prefetch(v.0);
        // What the sketch knows plus the hits counted in the entry, saturating as the
        // sketch's own estimate does.
        let mut estimate = |(hash, freq, since): (u64, u8, u16)| {
            (sketch.frequency(hash) + sketch.aged(freq, since) as u32).min(16)
        };
        let (c, v) = (estimate(c), estimate(v));
        if c > v {
            return true;
        }
        if c >= ADMIT_AT_RANDOM_FREQUENCY {
            // xorshift64: cheap, and seeded per shard from the process key.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            return self.rng & 127 == 0;
        }
        false
    }

    pub(crate) fn clear(&mut self, removed: &mut Removed<K, V>) {
        removed.push_bulk(self.slab.take_all());
        self.table = HashTable::new();
        if let Some(s) = &mut self.sketch {
            s.clear();
        }
        self.weight = 0;
        self.expiring = 0;
        self.min_expiry = NEVER;
        self.sweep_cursor = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// The stamp of the least recently used entry (plain LRU), `u64::MAX` if empty.
    pub(crate) fn tail_stamp(&self) -> u64 {
        self.slab
            .tail(Queue::Window)
            .map_or(u64::MAX, |t| self.slab.node(t).stamp)
    }

    /// The LRU entry's stamp if it may have changed since the last call (plain LRU).
    #[inline]
    pub(crate) fn tail_update(&mut self) -> Option<u64> {
        let v = self.slab.list(Queue::Window).tail_version;
        if v == self.tail_seen {
            return None;
        }
        self.tail_seen = v;
        Some(self.tail_stamp())
    }

    /// Evicts the least recently used entry (plain LRU); false if empty.
    pub(crate) fn evict_tail(&mut self, removed: &mut Removed<K, V>) -> bool {
        match self.slab.tail(Queue::Window) {
            Some(t) => {
                self.remove_at(t, removed);
                self.stats.evictions += 1;
                true
            }
            None => false,
        }
    }

    /// Bytes of the shard's table, slots and sketch: what it has grown to so far.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
            + self.slab.heap_bytes()
            + self.sketch.as_ref().map_or(0, FrequencySketch::heap_bytes)
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.slab.len() as u64,
            memory_bytes: self.weight,
            ..self.stats
        }
    }
}

#[path = "shard_expiry.rs"]
mod expiry;

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;

//! The admission filter of `lru-with-frequency`: TinyLFU's frequency estimate of recent
//! accesses (Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache Admission
//! Policy", 2017).
//!
//! - a **doorkeeper** (a Bloom filter) absorbs the first access of every key, so the
//!   flood of one-time keys in a scan never reaches the counters;
//! - a **count-min sketch** of 4-bit counters (16 to a `u64`, as in Caffeine) counts
//!   the later accesses; a key's estimate is the least of its four counters;
//! - **aging**: after `40 x capacity` recorded accesses every counter is halved and the
//!   doorkeeper starts a new generation, so the estimate follows recent popularity, not
//!   all history. The previous generation is still consulted: clearing it outright
//!   would rank every key seen just before the reset below the keys seen just after,
//!   and on a loop larger than the cache that admits the wrong keys after every reset.
//!
//! The table **grows with the cache's content**, as Caffeine's does: it starts at one
//! block and doubles whenever the entries held exceed two per block, up to the block per
//! four entries of capacity that a full cache needs, which it reaches by the time the
//! cache is half full (before any admission decision is made). Doubling copies every
//! block into both of its successors, so every key's counters and doorkeeper bits read
//! the same after it as before: a grown sketch estimates exactly what the smaller one
//! did, and only new records tell the two copies apart.

use super::prefetch::prefetch;

/// Accesses per aging period, in multiples of the capacity. Caffeine uses 10; a longer
/// period keeps more of the popular keys' counters saturated (tied), which is what lets
/// a loop larger than the cache keep its residents: measured on the traces
/// (capacity 10,000, 16 shards) 10x gives Zipf(0.9) 48.6%, loop 80.1%; 40x gives 49.8%
/// and 82.0%. The cost is a slower response to a shift of popularity.
const SAMPLE_PERIOD: usize = 40;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;

/// One cache line holding everything the sketch knows about a few keys: six words of
/// sixteen 4-bit counters (a key's four counters are in four of them, as in Caffeine 3's
/// layout) and one doorkeeper word for each of the current and the previous sample
/// period (a blocked Bloom filter: a key owns two bits of it). Recording or estimating
/// a key therefore costs one cache miss, which is most of the cost of a cache read.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block {
    counters: [u64; 6],
    door: [u64; 2],
}

pub(crate) struct FrequencySketch {
    blocks: Vec<Block>,
    block_mask: u64,
    /// The blocks of a full cache: a block per 4 entries of capacity.
    max_blocks: usize,
    /// Entries held beyond which [`Self::fit`] grows the table: two per block, or
    /// `usize::MAX` once the table is full-sized.
    grow_at: usize,
    /// Which of the two doorkeeper words is the current period's.
    current: usize,
    /// How many times the counters have been halved (wrapping).
    generation: u16,
    samples: u32,
    sample_size: u32,
}

#[inline]
fn rehash(hash: u64) -> u64 {
    let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl FrequencySketch {
    /// A sketch for a cache of `capacity` entries, at its smallest (see [`Self::fit`]).
    pub(crate) fn new(capacity: usize) -> Self {
        // A block per 4 entries: 24 counters and 16 doorkeeper bits per generation for
        // each entry. The doorkeeper has a few percent false positives while a period's
        // distinct keys stay within a few times the capacity; a false positive only lets
        // a key's count start one access early.
        let max_blocks = (capacity / 4).max(1).next_power_of_two();
        FrequencySketch {
            blocks: vec![Block::default()],
            block_mask: 0,
            max_blocks,
            grow_at: Self::grow_at_for(1, max_blocks),
            current: 0,
            generation: 0,
            samples: 0,
            sample_size: capacity
                .saturating_mul(SAMPLE_PERIOD)
                .clamp(64, u32::MAX as usize) as u32,
        }
    }

    fn grow_at_for(blocks: usize, max_blocks: usize) -> usize {
        if blocks < max_blocks {
            2 * blocks
        } else {
            usize::MAX
        }
    }

    /// Entries held beyond which the cache should call [`Self::fit`].
    #[inline]
    pub(crate) fn grow_at(&self) -> usize {
        self.grow_at
    }

    /// Grows the table to at least a block per two of `entries` (at most its full size),
    /// by doubling: each block's copy goes to both blocks that its keys now map to.
    #[cold]
    #[inline(never)]
    pub(crate) fn fit(&mut self, entries: usize) {
        let target = entries.div_ceil(2).next_power_of_two().min(self.max_blocks);
        if target <= self.blocks.len() {
            return;
        }
        let old = self.blocks.len();
        self.blocks.reserve_exact(target - old);
        // Block `i + k * old` takes the keys of block `i` whose hash has `k` in the new
        // mask's upper bits: all of them start from block `i`'s counts.
        for k in 1..target / old {
            self.blocks.extend_from_within(..old);
            debug_assert_eq!(self.blocks.len(), (k + 1) * old);
        }
        self.block_mask = (target - 1) as u64;
        self.grow_at = Self::grow_at_for(target, self.max_blocks);
    }

    /// Bytes the table takes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>()
    }

    /// The key's block and its two doorkeeper bits.
    #[inline]
    fn door(&self, hash: u64) -> (usize, u64, u64) {
        let block = (hash & self.block_mask) as usize;
        let c = rehash(hash);
        let door = (1u64 << ((c >> 52) & 63)) | (1u64 << ((c >> 58) & 63));
        (block, c, door)
    }

    /// The key's i-th counter (of four): its word and its bit shift in that word, from
    /// the rehashed key `c`.
    #[inline(always)]
    fn counter(c: u64, i: usize) -> (usize, u32) {
        let h = c >> (i * 12);
        // Word i, i+1 or i+2 (never past the sixth), then one of its 16 counters.
        (i + ((h & 3) as usize % 3), (((h >> 2) & 15) as u32) << 2)
    }

    /// Starts loading the key's block into the CPU cache, so that its memory latency
    /// overlaps other work (the hash-table probe that comes before `record`).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        prefetch(&self.blocks[(hash & self.block_mask) as usize]);
    }

    /// Records one access of the key.
    #[inline]
    pub(crate) fn record(&mut self, hash: u64) {
        let (block, c, door) = self.door(hash);
        let current = self.current;
        let b = &mut self.blocks[block];
        if b.door[0] & door != door && b.door[1] & door != door {
            // First access this period: only the doorkeeper remembers it.
            b.door[current] |= door;
        } else {
            // Each counter below 15 goes up by one; without branches, since which of
            // them are saturated is unpredictable.
            let mut added = 0u64;
            for i in 0..4 {
                let (word, shift) = Self::counter(c, i);
                let w = &mut b.counters[word];
                let below_max = (((*w >> shift) & 15) != 15) as u64;
                *w += below_max << shift;
                added |= below_max;
            }
            if added == 0 {
                return;
            }
        }
        self.samples += 1;
        if self.samples >= self.sample_size {
            self.age();
        }
    }

    /// The estimated number of recent accesses of the key (saturating at 16).
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u32 {
        let (block, c, door) = self.door(hash);
        let b = &self.blocks[block];
        let mut f = 15;
        for i in 0..4 {
            let (word, shift) = Self::counter(c, i);
            f = f.min(((b.counters[word] >> shift) & 15) as u32);
        }
        f + (b.door[0] & door == door || b.door[1] & door == door) as u32
    }

    /// How many times the counters have been halved (wrapping).
    #[inline]
    pub(crate) fn generation(&self) -> u16 {
        self.generation
    }

    /// An entry's own hit count, last brought up to date at generation `since`, halved
    /// as many times as the counters have been since.
    #[inline]
    pub(crate) fn aged(&self, count: u8, since: u16) -> u8 {
        let halvings = self.generation.wrapping_sub(since);
        if halvings >= 8 {
            0
        } else {
            count >> halvings
        }
    }

    /// A hit counted in the entry instead of here: it still advances the sample period.
    #[inline]
    pub(crate) fn count_hit(&mut self) {
        self.samples += 1;
        if self.samples >= self.sample_size {
            self.age();
        }
    }

    /// Adds `n` accesses to the key's counters (those an entry counted itself while it
    /// was resident), as `n` calls of `record` would once the doorkeeper knows the key.
    pub(crate) fn add(&mut self, hash: u64, n: u32) {
        let (block, c, _) = self.door(hash);
        let b = &mut self.blocks[block];
        for i in 0..4 {
            let (word, shift) = Self::counter(c, i);
            let w = &mut b.counters[word];
            let old = (*w >> shift) & 15;
            *w += ((old + n as u64).min(15) - old) << shift;
        }
    }

    #[cold]
    #[inline(never)]
    fn age(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let mut odd = 0u32;
        // The current period becomes the previous one; the oldest is forgotten.
        self.current ^= 1;
        for b in self.blocks.iter_mut() {
            for w in b.counters.iter_mut() {
                odd += (*w & ONE_MASK).count_ones();
                *w = (*w >> 1) & RESET_MASK;
            }
            b.door[self.current] = 0;
        }
        self.samples = (self.samples >> 1).saturating_sub(odd >> 2);
    }

    /// Forgets everything, and returns the table to its smallest size.
    pub(crate) fn clear(&mut self) {
        self.blocks = vec![Block::default()];
        self.block_mask = 0;
        self.grow_at = Self::grow_at_for(1, self.max_blocks);
        self.samples = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::hash::mix;

    /// A sketch grown to the full size of a cache of `capacity` entries.
    fn full(capacity: usize) -> FrequencySketch {
        let mut s = FrequencySketch::new(capacity);
        s.fit(capacity);
        s
    }

    #[test]
    fn the_table_grows_with_the_entries_to_the_size_of_a_full_cache() {
        let block = std::mem::size_of::<Block>();
        let mut s = FrequencySketch::new(1_000_000);
        assert_eq!(s.heap_bytes(), block);
        let mut sizes = vec![];
        for entries in [2, 3, 100, 1000, 500_000, 1_000_000] {
            if entries > s.grow_at() {
                s.fit(entries);
            }
            sizes.push(s.heap_bytes() / block);
        }
        // A block per two entries while growing, then a block per four of capacity.
        assert_eq!(sizes, [1, 2, 64, 512, 262_144, 262_144]);
        assert_eq!(s.grow_at(), usize::MAX);
        s.clear();
        assert_eq!(s.heap_bytes(), block);
    }

    #[test]
    fn growing_keeps_every_estimate() {
        let mut s = FrequencySketch::new(4096);
        let keys: Vec<u64> = (0..3000).map(mix).collect();
        for (i, &h) in keys.iter().enumerate() {
            for _ in 0..(i % 5) {
                s.record(h);
            }
        }
        let before: Vec<u32> = keys.iter().map(|&h| s.frequency(h)).collect();
        s.fit(4096);
        assert_eq!(s.heap_bytes(), 1024 * std::mem::size_of::<Block>());
        let after: Vec<u32> = keys.iter().map(|&h| s.frequency(h)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn frequent_keys_outrank_rare_ones() {
        let mut s = full(1000);
        for _ in 0..10 {
            s.record(mix(1));
        }
        s.record(mix(2));
        assert!(s.frequency(mix(1)) >= 10, "{}", s.frequency(mix(1)));
        assert_eq!(s.frequency(mix(2)), 1);
        assert_eq!(s.frequency(mix(3)), 0);
    }

    #[test]
    fn one_time_keys_stay_in_the_doorkeeper() {
        let mut s = full(1000);
        for k in 0..500 {
            s.record(mix(k));
        }
        // Only the doorkeeper's false positives (a few percent) reach the counters.
        let counted: u32 = s
            .blocks
            .iter()
            .flat_map(|b| b.counters)
            .map(|w| (0..16).filter(|i| (w >> (i * 4)) & 15 != 0).count() as u32)
            .sum();
        assert!(counted < 4 * 25, "{counted} counters moved");
    }

    #[test]
    fn hits_counted_in_an_entry_age_with_the_counters_and_pass_into_them() {
        let mut s = full(1000);
        let h = mix(7);
        s.record(h);
        assert_eq!(s.frequency(h), 1);
        s.add(h, 5);
        assert_eq!(s.frequency(h), 6);
        s.add(h, 20);
        assert_eq!(s.frequency(h), 16, "saturates like the counters");
        let g = s.generation();
        assert_eq!(s.aged(12, g), 12);
        for _ in 1..s.sample_size {
            s.count_hit();
        }
        assert_eq!(s.generation(), g.wrapping_add(1));
        assert_eq!(s.aged(12, g), 6);
        assert_eq!(s.aged(12, g.wrapping_sub(10)), 0);
    }

    #[test]
    fn aging_halves_the_counters() {
        let mut s = full(16);
        let hot = mix(7);
        for _ in 0..15 {
            s.record(hot);
        }
        let before = s.frequency(hot);
        for k in 100..(100 + s.sample_size as u64) {
            s.record(mix(k));
        }
        assert!(
            s.frequency(hot) < before,
            "{} !< {before}",
            s.frequency(hot)
        );
    }
}

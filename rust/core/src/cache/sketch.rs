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

/// Accesses per aging period, in multiples of the capacity. Caffeine uses 10; a longer
/// period keeps more of the popular keys' counters saturated (tied), which is what lets
/// a loop larger than the cache keep its residents: measured on the traces
/// (capacity 10,000, 16 shards) 10x gives Zipf(0.9) 48.6%, loop 80.1%; 40x gives 49.8%
/// and 82.0%. The cost is a slower response to a shift of popularity.
const SAMPLE_PERIOD: usize = 40;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;

/// Eight words of sixteen 4-bit counters, on one cache line: all four counters of a key
/// live in one block (Caffeine 3's layout), so a lookup costs one cache miss, not four.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

pub(crate) struct FrequencySketch {
    blocks: Box<[Block]>,
    block_mask: u64,
    /// Doorkeeper words of the current and the previous sample period side by side, so
    /// one cache line answers both; a key owns two bits of one word (a blocked Bloom
    /// filter), chosen by the hash.
    door: Box<[[u64; 2]]>,
    door_mask: u64,
    /// Which of the two doorkeeper words is the current period's.
    current: usize,
    samples: u32,
    sample_size: u32,
}

#[inline]
fn rehash(hash: u64) -> u64 {
    let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl FrequencySketch {
    /// A sketch for a cache of `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        // 16 counters per entry, as Caffeine: 2 blocks of 128 counters per 16 entries.
        let blocks = (capacity / 8).max(1).next_power_of_two();
        // 16 doorkeeper bits per entry: a few percent false positives while the distinct
        // keys of a period stay within a few times the capacity; a false positive only
        // lets a key's count start one access early.
        let door_words = (capacity / 4).max(1).next_power_of_two();
        FrequencySketch {
            blocks: vec![Block::default(); blocks].into_boxed_slice(),
            block_mask: (blocks - 1) as u64,
            door: vec![[0; 2]; door_words].into_boxed_slice(),
            door_mask: (door_words - 1) as u64,
            current: 0,
            samples: 0,
            sample_size: capacity
                .saturating_mul(SAMPLE_PERIOD)
                .clamp(64, u32::MAX as usize) as u32,
        }
    }

    #[inline]
    fn door_slot(&self, hash: u64) -> (usize, u64) {
        let h = rehash(hash ^ 0x5851_f42d_4c95_7f2d);
        let bits = (1u64 << ((h >> 52) & 63)) | (1u64 << ((h >> 58) & 63));
        ((h & self.door_mask) as usize, bits)
    }

    #[inline]
    fn door_contains(&self, hash: u64) -> bool {
        let (w, bits) = self.door_slot(hash);
        let pair = &self.door[w];
        pair[0] & bits == bits || pair[1] & bits == bits
    }

    /// Sets the key's doorkeeper bits; true if the key had passed the doorkeeper already.
    #[inline]
    fn door_insert(&mut self, hash: u64) -> bool {
        let (w, bits) = self.door_slot(hash);
        let pair = &mut self.door[w];
        if pair[0] & bits == bits || pair[1] & bits == bits {
            return true;
        }
        pair[self.current] |= bits;
        false
    }

    /// The four (word, shift) counters of a key, all in one block.
    #[inline]
    fn counter_slots(&self, hash: u64) -> (usize, [(usize, u32); 4]) {
        let block = (hash & self.block_mask) as usize;
        let c = rehash(hash);
        let mut out = [(0usize, 0u32); 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let h = c >> (i << 3);
            let counter = ((h >> 1) & 15) as u32;
            *slot = ((i << 1) + (h & 1) as usize, counter << 2);
        }
        (block, out)
    }

    /// Records one access of the key.
    #[inline]
    pub(crate) fn record(&mut self, hash: u64) {
        if self.door_insert(hash) {
            let (block, slots) = self.counter_slots(hash);
            let words = &mut self.blocks[block].0;
            let mut added = false;
            for (word, shift) in slots {
                let w = &mut words[word];
                if (*w >> shift) & 15 != 15 {
                    *w += 1 << shift;
                    added = true;
                }
            }
            if !added {
                return;
            }
        }
        self.samples += 1;
        if self.samples >= self.sample_size {
            self.age();
        }
    }

    /// Lets the doorkeeper remember a key written without being read first, so that a
    /// write-only workload still ranks written keys above never-seen ones.
    #[inline]
    pub(crate) fn touch(&mut self, hash: u64) {
        if !self.door_contains(hash) {
            self.record(hash);
        }
    }

    /// The estimated number of recent accesses of the key (saturating at 16).
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u32 {
        let (block, slots) = self.counter_slots(hash);
        let words = &self.blocks[block].0;
        let mut f = 15;
        for (word, shift) in slots {
            f = f.min(((words[word] >> shift) & 15) as u32);
        }
        f + self.door_contains(hash) as u32
    }

    fn age(&mut self) {
        let mut odd = 0u32;
        for b in self.blocks.iter_mut() {
            for w in b.0.iter_mut() {
                odd += (*w & ONE_MASK).count_ones();
                *w = (*w >> 1) & RESET_MASK;
            }
        }
        // The current period becomes the previous one; the oldest is forgotten.
        self.current ^= 1;
        for pair in self.door.iter_mut() {
            pair[self.current] = 0;
        }
        self.samples = (self.samples >> 1).saturating_sub(odd >> 2);
    }

    pub(crate) fn clear(&mut self) {
        self.blocks.fill(Block::default());
        self.door.fill([0; 2]);
        self.samples = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::hash::mix;

    #[test]
    fn frequent_keys_outrank_rare_ones() {
        let mut s = FrequencySketch::new(1000);
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
        let mut s = FrequencySketch::new(1000);
        for k in 0..500 {
            s.record(mix(k));
        }
        // Only the doorkeeper's false positives (a few percent) reach the counters.
        let counted: u32 = s
            .blocks
            .iter()
            .flat_map(|b| b.0)
            .map(|w| (0..16).filter(|i| (w >> (i * 4)) & 15 != 0).count() as u32)
            .sum();
        assert!(counted < 4 * 25, "{counted} counters moved");
    }

    #[test]
    fn aging_halves_the_counters() {
        let mut s = FrequencySketch::new(16);
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

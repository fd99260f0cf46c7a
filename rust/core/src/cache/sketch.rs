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

const SEEDS: [u64; 4] = [
    0xc3a5_c85c_97cb_3127,
    0xb492_b66f_be98_f273,
    0x9ae1_6a3b_2f90_404f,
    0xcbf2_9ce4_8422_2325,
];
/// Accesses per aging period, in multiples of the capacity. Caffeine uses 10; a longer
/// period keeps more of the popular keys' counters saturated (tied), which is what lets
/// a loop larger than the cache keep its residents: measured on the traces
/// (capacity 10,000, 16 shards) 10x gives Zipf(0.9) 48.6%, loop 80.1%; 40x gives 49.8%
/// and 82.0%. The cost is a slower response to a shift of popularity.
const SAMPLE_PERIOD: usize = 40;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;

pub(crate) struct FrequencySketch {
    table: Box<[u64]>,
    table_mask: u64,
    door: Box<[u64]>,
    /// The doorkeeper of the previous sample period (see `age`).
    old_door: Box<[u64]>,
    door_mask: u64,
    samples: u32,
    sample_size: u32,
}

impl FrequencySketch {
    /// A sketch for a cache of `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        let words = capacity.max(16).next_power_of_two();
        // 16 doorkeeper bits per entry: a few percent false positives while the distinct
        // keys of a period stay within a few times the capacity; a false positive only
        // lets a key's count start one access early.
        let door_bits = capacity.saturating_mul(16).max(64).next_power_of_two();
        FrequencySketch {
            table: vec![0; words].into_boxed_slice(),
            table_mask: (words - 1) as u64,
            door: vec![0; door_bits / 64].into_boxed_slice(),
            old_door: vec![0; door_bits / 64].into_boxed_slice(),
            door_mask: (door_bits - 1) as u64,
            samples: 0,
            sample_size: capacity
                .saturating_mul(SAMPLE_PERIOD)
                .clamp(64, u32::MAX as usize) as u32,
        }
    }

    #[inline]
    fn door_bits(&self, hash: u64) -> [u64; 2] {
        let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        [h & self.door_mask, (h >> 32 ^ hash) & self.door_mask]
    }

    #[inline]
    fn door_contains(&self, hash: u64) -> bool {
        let bits = self.door_bits(hash);
        let has = |door: &[u64]| {
            bits.iter()
                .all(|&b| door[(b >> 6) as usize] & (1 << (b & 63)) != 0)
        };
        has(&self.door) || has(&self.old_door)
    }

    /// Sets the key's doorkeeper bits; true if the key had passed the doorkeeper already.
    #[inline]
    fn door_insert(&mut self, hash: u64) -> bool {
        let mut present = self.door_contains(hash);
        if present {
            return true;
        }
        present = true;
        for b in self.door_bits(hash) {
            let word = &mut self.door[(b >> 6) as usize];
            let bit = 1u64 << (b & 63);
            present &= *word & bit != 0;
            *word |= bit;
        }
        present
    }

    #[inline]
    fn counter_slots(&self, hash: u64) -> [(usize, u32); 4] {
        // Caffeine's layout: four words picked by four seeded hashes, and in each word one
        // of its 16 counters, chosen so that the four counters of a key are distinct.
        let start = ((hash & 3) << 2) as u32;
        let mut out = [(0usize, 0u32); 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let mut h = (hash.wrapping_add(SEEDS[i])).wrapping_mul(SEEDS[i]);
            h = h.wrapping_add(h >> 32);
            *slot = ((h & self.table_mask) as usize, (start + i as u32) << 2);
        }
        out
    }

    /// Records one access of the key.
    #[inline]
    pub(crate) fn record(&mut self, hash: u64) {
        if self.door_insert(hash) {
            let mut added = false;
            for (word, shift) in self.counter_slots(hash) {
                let w = &mut self.table[word];
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
        let mut f = 15;
        for (word, shift) in self.counter_slots(hash) {
            f = f.min(((self.table[word] >> shift) & 15) as u32);
        }
        f + self.door_contains(hash) as u32
    }

    fn age(&mut self) {
        let mut odd = 0u32;
        for w in self.table.iter_mut() {
            odd += (*w & ONE_MASK).count_ones();
            *w = (*w >> 1) & RESET_MASK;
        }
        std::mem::swap(&mut self.door, &mut self.old_door);
        self.door.fill(0);
        self.samples = (self.samples >> 1).saturating_sub(odd >> 2);
    }

    pub(crate) fn clear(&mut self) {
        self.table.fill(0);
        self.door.fill(0);
        self.old_door.fill(0);
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
        assert!(s.table.iter().all(|&w| w == 0));
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

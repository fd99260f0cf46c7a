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
//! The counters are laid out as for a full cache from the start, but the memory of a
//! block is taken only once the block is first written (see `sketch_table`): an empty
//! cache's sketch takes nothing, and a filling one's grows with its content.

use super::sketch_table::Blocks;

/// Accesses per aging period, in multiples of the capacity. Caffeine uses 10; a longer
/// period keeps more of the popular keys' counters saturated (tied), which is what lets
/// a loop larger than the cache keep its residents: measured on the traces
/// (capacity 10,000, 16 shards) 10x gives Zipf(0.9) 48.6%, loop 80.1%; 40x gives 49.8%
/// and 82.0%. The cost is a slower response to a shift of popularity.
const SAMPLE_PERIOD: usize = 40;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;

pub(crate) struct FrequencySketch {
    blocks: Blocks,
    /// A key whose access [`record_later`](Self::record_later) has yet to record.
    pending: Option<u64>,
    block_mask: u64,
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
    /// A sketch for a cache of `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        // A block per 4 entries: 24 counters and 16 doorkeeper bits per generation for
        // each entry. The doorkeeper has a few percent false positives while a period's
        // distinct keys stay within a few times the capacity; a false positive only lets
        // a key's count start one access early.
        let blocks = (capacity / 4).max(1).next_power_of_two();
        FrequencySketch {
            blocks: Blocks::new(blocks),
            pending: None,
            block_mask: (blocks - 1) as u64,
            current: 0,
            generation: 0,
            samples: 0,
            sample_size: capacity
                .saturating_mul(SAMPLE_PERIOD)
                .clamp(64, u32::MAX as usize) as u32,
        }
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
    /// overlaps other work (the rest of a write, before `record_later` has it written).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        self.blocks.prefetch((hash & self.block_mask) as usize);
    }

    /// Records one access of the key.
    #[cfg(test)]
    pub(crate) fn record(&mut self, hash: u64) {
        self.flush();
        self.record_now(hash);
    }

    /// Records one access of the key before the sketch is next used, so that the write
    /// of its block, a cache miss that the block's [`prefetch`](Self::prefetch) had too
    /// little time to hide, waits until that load has long arrived. Every method that
    /// reads or changes the counts records the pending key first, so the sketch goes
    /// through exactly the states that calling [`record`](Self::record) now would give.
    #[inline]
    pub(crate) fn record_later(&mut self, hash: u64) {
        self.flush();
        self.pending = Some(hash);
    }

    /// Records the pending key, if any.
    #[inline(always)]
    fn flush(&mut self) {
        if let Some(hash) = self.pending.take() {
            self.record_now(hash);
        }
    }

    #[inline]
    fn record_now(&mut self, hash: u64) {
        let (block, c, door) = self.door(hash);
        let current = self.current;
        let b = self.blocks.get_mut(block);
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
    pub(crate) fn frequency(&mut self, hash: u64) -> u32 {
        self.flush();
        let (block, c, door) = self.door(hash);
        let b = self.blocks.get(block);
        let mut f = 15;
        for i in 0..4 {
            let (word, shift) = Self::counter(c, i);
            f = f.min(((b.counters[word] >> shift) & 15) as u32);
        }
        f + (b.door[0] & door == door || b.door[1] & door == door) as u32
    }

    /// How many times the counters have been halved (wrapping).
    #[inline]
    pub(crate) fn generation(&mut self) -> u16 {
        self.flush();
        self.generation
    }

    /// An entry's own hit count, last brought up to date at generation `since`, halved
    /// as many times as the counters have been since.
    #[inline]
    pub(crate) fn aged(&mut self, count: u8, since: u16) -> u8 {
        self.flush();
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
        self.flush();
        self.samples += 1;
        if self.samples >= self.sample_size {
            self.age();
        }
    }

    /// Adds `n` accesses to the key's counters (those an entry counted itself while it
    /// was resident), as `n` calls of `record` would once the doorkeeper knows the key.
    pub(crate) fn add(&mut self, hash: u64, n: u32) {
        self.flush();
        let (block, c, _) = self.door(hash);
        let b = self.blocks.get_mut(block);
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
        for b in self.blocks.touched_mut() {
            for w in b.counters.iter_mut() {
                odd += (*w & ONE_MASK).count_ones();
                *w = (*w >> 1) & RESET_MASK;
            }
            b.door[self.current] = 0;
        }
        self.samples = (self.samples >> 1).saturating_sub(odd >> 2);
    }

    /// Forgets every count, and returns the counters' memory.
    pub(crate) fn clear(&mut self) {
        // Recorded first: a pending record may age the counters, and the generation
        // outlives a clear.
        self.flush();
        self.blocks.clear();
        self.samples = 0;
    }

    /// Bytes the counters take (not yet those of a block that only a pending record
    /// will write).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.blocks.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::hash::mix;

    /// The sketch with every block allocated from the start, as it was before blocks
    /// were taken on first write.
    fn dense(capacity: usize) -> FrequencySketch {
        let mut s = FrequencySketch::new(capacity);
        s.blocks = Blocks::new_dense(s.block_mask as usize + 1);
        s
    }

    #[test]
    fn taking_blocks_on_first_write_changes_no_estimate() {
        // A cache of 4,000 entries: 1,024 blocks, sparse until 512 are written.
        let (mut lazy, mut full) = (FrequencySketch::new(4_000), dense(4_000));
        assert_eq!(lazy.heap_bytes(), 0);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut step = |s: &mut [&mut FrequencySketch; 2], i: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Zipf-like: small keys far more often than large ones.
            let key = mix((rng % 1000) * (rng >> 54) % 50_000);
            for sk in s.iter_mut() {
                match i % 7 {
                    0 => sk.add(key, (rng >> 40) as u32 % 4),
                    1 | 2 => sk.count_hit(),
                    _ => sk.record(key),
                }
            }
        };
        let mut pair = [&mut lazy, &mut full];
        let mut grew = None;
        for i in 0..2_000_000u64 {
            step(&mut pair, i);
            if grew.is_none() && pair[0].blocks.is_dense() {
                grew = Some(i);
            }
        }
        let [lazy, full] = pair;
        println!("dense after {grew:?} steps; {} halvings", lazy.generation());
        assert!(grew.is_some() && lazy.generation() > 2);
        assert_eq!(lazy.generation(), full.generation());
        assert_eq!(lazy.samples, full.samples);
        for k in 0..50_000 {
            assert_eq!(lazy.frequency(mix(k)), full.frequency(mix(k)), "key {k}");
        }
    }

    #[test]
    fn a_record_made_later_reads_as_if_made_at_once() {
        // Two sketches take the same operations, one recording each access at once, the
        // other later: every read of them agrees, through many agings and clears.
        let (mut now, mut later) = (FrequencySketch::new(400), FrequencySketch::new(400));
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for i in 1..600_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = mix((rng >> 8) % 64 * ((rng >> 20) % 32));
            match rng % 16 {
                0..=7 => {
                    now.record(key);
                    later.record_later(key);
                }
                8..=11 => {
                    now.count_hit();
                    later.count_hit();
                }
                12 => {
                    let n = (rng >> 40) as u32 % 5;
                    now.add(key, n);
                    later.add(key, n);
                }
                13 => assert_eq!(now.frequency(key), later.frequency(key), "step {i}"),
                14 => {
                    let since = now.generation().wrapping_sub((rng >> 50) as u16 % 3);
                    assert_eq!(later.generation(), now.generation(), "step {i}");
                    assert_eq!(now.aged(13, since), later.aged(13, since), "step {i}");
                }
                _ => {}
            }
            if i % 150_000 == 0 {
                now.clear();
                later.clear();
            }
        }
        println!("{} halvings", now.generation());
        assert!(now.generation() > 10);
        later.flush();
        assert_eq!((now.samples, now.current), (later.samples, later.current));
        for k in 0..64 * 32 {
            assert_eq!(now.frequency(mix(k)), later.frequency(mix(k)), "key {k}");
        }
    }

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
            .touched_mut()
            .iter()
            .flat_map(|b| b.counters)
            .map(|w| (0..16).filter(|i| (w >> (i * 4)) & 15 != 0).count() as u32)
            .sum();
        assert!(counted < 4 * 25, "{counted} counters moved");
    }

    #[test]
    fn hits_counted_in_an_entry_age_with_the_counters_and_pass_into_them() {
        let mut s = FrequencySketch::new(1000);
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

//! Keyed hashing: one random key per process, so that nobody outside the process can
//! choose keys that pile into one shard or one hash-table probe sequence.
//!
//! Every cache in the process hashes with the same key, so a hash computed once can be
//! used with both tiers of a [`TieredCache`](super::TieredCache). Callers that already
//! have a good hash of their own (the Python binding reuses the interpreter's cached
//! `str` hash) pass it through [`mix`], which folds it with the process key.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;

fn process_keys() -> &'static [u64; 3] {
    static KEYS: OnceLock<[u64; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        // RandomState draws its keys from the OS once per process; hashers of different
        // inputs give independent 64-bit keys.
        let state = RandomState::new();
        let mut keys = [0u64; 3];
        for (i, k) in keys.iter_mut().enumerate() {
            let mut h = state.build_hasher();
            h.write_usize(i);
            *k = h.finish() | 1;
        }
        keys
    })
}

/// A 128-bit multiply folded to 64 bits (the foldhash / wyhash mixer): keyed by the
/// process keys, every input bit reaches every output bit.
#[inline]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = (x as u128).wrapping_mul(y as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Mixes a caller's 64-bit hash (or an integer key) with the process key.
#[inline]
pub fn mix(raw: u64) -> u64 {
    mix_with(raw, process_keys())
}

/// Two keyed rounds. After one, inputs that differ only in their low bits (sequential
/// integers: node ids) stay correlated in the middle bits that pick the shard: for about
/// one process key in 250, all of eleven sequential keys fell into one of 16 shards.
#[inline]
fn mix_with(raw: u64, k: &[u64; 3]) -> u64 {
    folded_multiply(folded_multiply(raw ^ k[0], k[1]), k[2])
}

/// Hashes any `Hash` key with SipHash under the process key, then [`mix`]es it.
pub fn hash_key<Q: Hash + ?Sized>(key: &Q) -> u64 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    mix(STATE.get_or_init(RandomState::new).hash_one(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_within_a_process_and_spread_over_shards() {
        assert_eq!(hash_key("abc"), hash_key("abc"));
        assert_ne!(hash_key("abc"), hash_key("abd"));
        // Sequential integers (the easiest hostile pattern) still spread evenly over 16 shards.
        let mut counts = [0u32; 16];
        for i in 0..16_000u64 {
            counts[(mix(i) >> 60) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn sequential_keys_spread_over_shards_under_every_process_key() {
        // The shard choice of `ShardedCache` (bits 16..48), under 3,000 process keys from
        // a fixed generator: a balanced spread never puts 11 sequential keys 7 to a
        // shard, nor 160 of them 30 to a shard (their mean is 10).
        let shard = |h: u64| ((((h >> 16) as u32 as u64) * 16) >> 32) as usize;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state | 1
        };
        for _ in 0..3000 {
            let keys = [next(), next(), next()];
            for (n, limit) in [(11u64, 7), (160, 30)] {
                let mut counts = [0u32; 16];
                for i in 0..n {
                    counts[shard(mix_with(i, &keys))] += 1;
                }
                let most = *counts.iter().max().unwrap_or(&0);
                assert!(
                    most < limit,
                    "{n} keys: {most} in one shard under {keys:x?}"
                );
            }
        }
    }
}

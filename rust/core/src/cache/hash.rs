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

fn process_keys() -> &'static [u64; 2] {
    static KEYS: OnceLock<[u64; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        // RandomState draws its keys from the OS once per process; two hashers of
        // different inputs give two independent 64-bit keys.
        let state = RandomState::new();
        let mut keys = [0u64; 2];
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
    let k = process_keys();
    folded_multiply(raw ^ k[0], k[1])
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
}

//! The shard's hash-table entries: a slab index and check bits of the key's hash in
//! one `u32`.

/// How a table entry packs an entry's slab index with more bits of its hash. The
/// table's own 7-bit tags match a key that is not there once in about ten probes of a
/// well-filled table; comparing these bits first spares those probes the load of an
/// entry (a cache miss), which was most of the cost of a lookup that misses. The index
/// takes the low bits (as many as the shard's capacity needs: a shard never holds more
/// than `capacity + 1` entries, so its slots are numbered up to `capacity`), the hash
/// bits the rest, so a table entry stays 4 bytes.
#[derive(Clone, Copy)]
pub(crate) struct SlotCodec {
    idx_bits: u32,
}

impl SlotCodec {
    pub(crate) fn new(capacity: u32) -> Self {
        SlotCodec {
            idx_bits: u32::BITS - capacity.leading_zeros(),
        }
    }

    /// Hash bits 25 and up (above those that pick the bucket, and mostly below the
    /// table's tag), shifted above the index.
    #[inline]
    pub(crate) fn check(self, hash: u64) -> u32 {
        ((hash >> 25) as u32)
            .checked_shl(self.idx_bits)
            .unwrap_or(0)
    }

    /// Whether the table entry `slot` carries the check bits `check` (of `check()`).
    #[inline]
    pub(crate) fn matches(self, slot: u32, check: u32) -> bool {
        slot ^ check == self.idx(slot)
    }

    #[inline]
    pub(crate) fn pack(self, idx: u32, hash: u64) -> u32 {
        debug_assert!(idx.checked_shr(self.idx_bits).unwrap_or(0) == 0);
        idx | self.check(hash)
    }

    #[inline]
    pub(crate) fn idx(self, slot: u32) -> u32 {
        slot & 1u32.checked_shl(self.idx_bits).map_or(u32::MAX, |b| b - 1)
    }
}

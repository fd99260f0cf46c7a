//! Where the frequency sketch keeps its blocks: at first only the blocks that were
//! touched (a sparse table), and all of them once half are (a dense one).
//!
//! A sketch sized for a full cache takes 16 to 32 bytes per entry of capacity: 256 MiB for
//! the engine's default L2 of ten million entries, all of it written at creation. A block
//! is touched only when a key is recorded in it, so while the cache is filling the touched
//! blocks number at most the keys written, and the sparse table's memory follows the
//! cache's content. The sketch reads and writes the same counters either way, so its
//! estimates (and every admission decision) are exactly those of a full-size table from
//! the start; only the first writes, while the cache fills, pay for a hash-table lookup.
//!
//! (Growing a small table by doubling, as Caffeine does, would save that lookup, but a
//! small table merges the counts of keys that a full one keeps apart: the decisions made
//! after it grows differ, and hit ratios moved by a tenth of a point on the benchmark's
//! traces.)

use hashbrown::HashTable;

use super::prefetch::prefetch;

/// One cache line holding everything the sketch knows about a few keys: six words of
/// sixteen 4-bit counters (a key's four counters are in four of them, as in Caffeine 3's
/// layout) and one doorkeeper word for each of the current and the previous sample
/// period (a blocked Bloom filter: a key owns two bits of it). Recording or estimating
/// a key therefore costs one cache miss, which is most of the cost of a cache read.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
pub(super) struct Block {
    pub(super) counters: [u64; 6],
    pub(super) door: [u64; 2],
}

/// What an untouched block holds.
static ZERO: Block = Block {
    counters: [0; 6],
    door: [0; 2],
};

/// Tables of at most this many blocks (4 KiB) are dense from the start.
const DENSE_FROM_START: usize = 64;

pub(super) struct Blocks {
    /// Every block once dense; empty while sparse.
    dense: Box<[Block]>,
    sparse: Option<Box<Sparse>>,
    /// Blocks of the full table (a power of two).
    len: usize,
}

struct Sparse {
    /// Each touched block's number and its place in `blocks`.
    index: HashTable<(u32, u32)>,
    blocks: Vec<Block>,
}

/// Block numbers are bits of keyed hashes, so their low bits are already spread; the
/// multiply spreads them into the high bits that the table's tags come from.
#[inline]
fn spread(block: u32) -> u64 {
    (block as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Blocks {
    /// A table of `len` (a power of two) zero blocks, none of them allocated yet unless
    /// the table is small.
    pub(super) fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two() && len <= u32::MAX as usize);
        if len <= DENSE_FROM_START {
            return Blocks {
                dense: vec![Block::default(); len].into_boxed_slice(),
                sparse: None,
                len,
            };
        }
        Blocks {
            dense: Box::new([]),
            sparse: Some(Box::new(Sparse {
                index: HashTable::new(),
                blocks: Vec::new(),
            })),
            len,
        }
    }

    /// A dense table from the start, as the sketch had before it took blocks lazily.
    #[cfg(test)]
    pub(super) fn new_dense(len: usize) -> Self {
        Blocks {
            dense: vec![Block::default(); len].into_boxed_slice(),
            sparse: None,
            len,
        }
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> &Block {
        match &self.sparse {
            None => &self.dense[i],
            Some(s) => s.get(i),
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, i: usize) -> &mut Block {
        if self.sparse.is_none() {
            return &mut self.dense[i];
        }
        self.touch(i)
    }

    /// Starts loading block `i` into the CPU cache (a dense table's; a sparse table is
    /// only used while the cache fills).
    #[inline]
    pub(super) fn prefetch(&self, i: usize) {
        if let Some(b) = self.dense.get(i) {
            prefetch(b);
        }
    }

    /// Every block that may be non-zero.
    pub(super) fn touched_mut(&mut self) -> &mut [Block] {
        match &mut self.sparse {
            None => &mut self.dense,
            Some(s) => &mut s.blocks,
        }
    }

    /// Back to all zeros, and to a sparse table (its memory returned).
    pub(super) fn clear(&mut self) {
        *self = Blocks::new(self.len);
    }

    #[cfg(test)]
    pub(super) fn is_dense(&self) -> bool {
        self.sparse.is_none()
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let block = std::mem::size_of::<Block>();
        self.dense.len() * block
            + self.sparse.as_ref().map_or(0, |s| {
                s.blocks.capacity() * block + s.index.allocation_size()
            })
    }

    /// Block `i` of a sparse table, added if it was untouched; once half the blocks are,
    /// the table turns dense (the sparse one would soon take more memory than it).
    #[cold]
    #[inline(never)]
    fn touch(&mut self, i: usize) -> &mut Block {
        let number = i as u32;
        let (found, touched) = match &self.sparse {
            None => return &mut self.dense[i],
            Some(s) => (
                s.index
                    .find(spread(number), |&(b, _)| b == number)
                    .map(|&(_, at)| at),
                s.blocks.len(),
            ),
        };
        if found.is_none() && 2 * (touched + 1) > self.len {
            self.densify();
        }
        let Some(s) = self.sparse.as_mut() else {
            return &mut self.dense[i];
        };
        let at = found.unwrap_or_else(|| {
            let at = s.blocks.len() as u32;
            s.blocks.push(Block::default());
            s.index
                .insert_unique(spread(number), (number, at), |&(b, _)| spread(b));
            at
        });
        &mut s.blocks[at as usize]
    }

    fn densify(&mut self) {
        let mut dense = vec![Block::default(); self.len].into_boxed_slice();
        if let Some(s) = self.sparse.take() {
            for &(b, at) in s.index.iter() {
                dense[b as usize] = s.blocks[at as usize];
            }
        }
        self.dense = dense;
    }
}

impl Sparse {
    #[inline(never)]
    fn get(&self, i: usize) -> &Block {
        let number = i as u32;
        match self.index.find(spread(number), |&(b, _)| b == number) {
            Some(&(_, at)) => &self.blocks[at as usize],
            None => &ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_blocks_read_zero_and_take_no_memory_until_half_are_touched() {
        let block = std::mem::size_of::<Block>();
        let mut t = Blocks::new(1024);
        assert_eq!(t.heap_bytes(), 0);
        assert_eq!(t.get(7).counters, [0; 6]);
        for i in (0..1024).step_by(4) {
            t.get_mut(i).counters[0] = i as u64 + 1;
        }
        assert!(!t.is_dense());
        // 256 blocks, and the index of them.
        let sparse = t.heap_bytes();
        assert!(sparse >= 256 * block && sparse < 400 * block, "{sparse}");
        assert_eq!(t.touched_mut().len(), 256);
        for i in (2..1024).step_by(4) {
            t.get_mut(i).door[1] = 9;
        }
        assert!(!t.is_dense(), "half the blocks");
        t.get_mut(1).door[1] = 9;
        assert!(t.is_dense(), "more than half");
        assert_eq!(t.heap_bytes(), 1024 * block);
        for i in 0..1024 {
            let b = t.get(i);
            let want = if i % 4 == 0 { i as u64 + 1 } else { 0 };
            let door = if i % 4 == 2 || i == 1 { 9 } else { 0 };
            assert_eq!((b.counters[0], b.door[1]), (want, door));
        }
        t.clear();
        assert_eq!((t.is_dense(), t.heap_bytes()), (false, 0));
        assert!(Blocks::new(64).is_dense());
    }
}

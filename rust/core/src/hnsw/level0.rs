//! Level 0 of the graph: one block per slot holding the slot's level-0 links and, while
//! the index holds q8 codes, the slot's q8 code and its parameters beside them.
//!
//! A beam search spends its time at level 0 visiting nodes: for each one it reads the
//! code it scores, and for each one it expands, the links. Kept in one block, a visit
//! reads one contiguous run of cache lines (which the hardware prefetcher follows and a
//! software prefetch covers in a few instructions) instead of a line in each of three
//! arrays, and a q8 code is found from the slot number alone, without the slot's metadata.
//! This is hnswlib's layout (`data_level0_memory_`), with a code where it keeps floats.
//!
//! ```text
//! with codes:    [code: code_bytes, padded to 4] [offset, scale, sq_norm: 3 × f32]
//!                [count: u32] [links: m0 × u32]   padded to a multiple of 64 bytes
//! without codes: [count: u32] [links: m0 × u32]
//! ```
//! A slot that is not stored at q8 keeps a q8 copy of its vector in its code region (a
//! traversal code, `Graph::write_traversal_codes`), so that a search of a mixed index
//! reads the blocks alone.
//!
//! Concurrency: the words are atomics because links change under the read lock (each
//! list under its node's mutex, see `graph.rs`). A code and its parameters change only
//! through `&mut self` (the index's write lock), which is what makes reading a code as
//! plain bytes under the read lock sound.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::quant::RowParams;

/// Words of a cache line (the buffer starts on one).
const LINE_WORDS: usize = 16;
/// Words of the parameters after a code: offset, scale, sq_norm.
const PARAM_WORDS: usize = 3;

/// `(stride, links_at)` in words of a block with `m0` links and a code of `code_bytes`.
/// Blocks are rounded to 16 bytes only, not to whole lines: a line-aligned code spans
/// as many lines as one that is not once its parameters are counted (384 dimensions: 7
/// either way), the speed measured the same, and whole lines cost 48 bytes a node at
/// 384 dimensions, a tenth of what a q8 index holds per node.
fn shape(m0: usize, code_bytes: usize) -> (usize, usize) {
    if code_bytes == 0 {
        return (1 + m0, 0);
    }
    let links_at = code_bytes.div_ceil(4) + PARAM_WORDS;
    ((links_at + 1 + m0).next_multiple_of(4), links_at)
}

pub(crate) struct Level0 {
    /// `base` padding words, then `slots * stride` words.
    words: Vec<AtomicU32>,
    base: usize,
    slots: usize,
    m0: usize,
    /// Bytes of the inline code (0: no code region).
    code_bytes: usize,
    /// Words per block.
    stride: usize,
    /// Word offset of the link count within a block (the links follow it).
    links_at: usize,
}

impl Level0 {
    pub fn new(m0: usize) -> Level0 {
        let mut level0 = Level0 {
            words: Vec::new(),
            base: 0,
            slots: 0,
            m0,
            code_bytes: 0,
            stride: 0,
            links_at: 0,
        };
        level0.set_shape(0);
        level0
    }

    fn set_shape(&mut self, code_bytes: usize) {
        self.code_bytes = code_bytes;
        (self.stride, self.links_at) = shape(self.m0, code_bytes);
    }

    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Bytes of the inline code of each block (0 while the index holds no q8 code).
    #[inline]
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// Bytes per block.
    #[cfg(test)]
    pub fn block_bytes(&self) -> usize {
        self.stride * 4
    }

    #[inline]
    fn start(&self, slot: u32) -> usize {
        self.base + slot as usize * self.stride
    }

    /// The slot's level-0 list: the count, then `m0` link cells.
    #[inline]
    pub fn links(&self, slot: u32) -> &[AtomicU32] {
        let at = self.start(slot) + self.links_at;
        &self.words[at..at + 1 + self.m0]
    }

    /// The slot's inline code (`code_bytes` bytes).
    #[inline]
    pub fn code(&self, slot: u32) -> &[u8] {
        let start = self.start(slot);
        let words = &self.words[start..start + self.code_bytes.div_ceil(4)];
        // SAFETY: `words` is a live, initialized slice of at least `code_bytes` bytes
        // (AtomicU32 has u32's size and alignment, and every byte pattern is a valid u8).
        // The code words are written only through `&mut self` (`write_code`, `grow`,
        // `set_code_bytes`), so none changes while the shared borrow returned here lives:
        // reading them as plain bytes races with nothing.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), self.code_bytes) }
    }

    /// The parameters of the slot's inline code.
    #[inline]
    pub fn params(&self, slot: u32) -> RowParams {
        let at = self.start(slot) + self.code_bytes.div_ceil(4);
        let w = &self.words[at..at + PARAM_WORDS];
        let f = |i: usize| f32::from_bits(w[i].load(Ordering::Relaxed));
        RowParams {
            offset: f(0),
            scale: f(1),
            sq_norm: f(2),
        }
    }

    /// Store a code (exactly `code_bytes` bytes) and its parameters in the slot's block.
    pub fn write_code(&mut self, slot: u32, code: &[u8], p: RowParams) {
        assert_eq!(code.len(), self.code_bytes, "code of the wrong width");
        let start = self.start(slot);
        let code_words = self.code_bytes.div_ceil(4);
        let block = &mut self.words[start..start + code_words + PARAM_WORDS];
        for (word, bytes) in block.iter_mut().zip(code.chunks(4)) {
            let mut b = [0u8; 4];
            b[..bytes.len()].copy_from_slice(bytes);
            *word.get_mut() = u32::from_ne_bytes(b);
        }
        let params = [p.offset, p.scale, p.sq_norm];
        for (word, v) in block[code_words..].iter_mut().zip(params) {
            *word.get_mut() = v.to_bits();
        }
    }

    /// Address of the slot's block, for prefetching its links.
    #[inline]
    pub fn links_ptr(&self, slot: u32) -> *const u8 {
        self.words
            .as_ptr()
            .wrapping_add(self.start(slot) + self.links_at)
            .cast()
    }

    /// Hint the CPU to load lines `from..to` (64 bytes each, counted from the line of
    /// the block's first byte) of what a score of the slot's inline code reads: the code
    /// and its parameters.
    #[inline]
    pub fn prefetch_code(&self, slot: u32, from: usize, to: usize) {
        let start = self
            .words
            .as_ptr()
            .wrapping_add(self.start(slot))
            .cast::<u8>();
        let bytes = self.code_bytes.div_ceil(4) * 4 + PARAM_WORDS * 4;
        let first_line = start as usize / 64;
        let lines = (start as usize + bytes - 1) / 64 - first_line + 1;
        for line in from..to.min(lines) {
            let line_start = start.wrapping_sub(start as usize % 64);
            super::graph::prefetch(line_start.wrapping_add(line * 64));
        }
    }

    /// Room for `extra` more blocks, grown by at least half: a stream of one-node adds
    /// copies the blocks O(log n) times.
    pub fn reserve(&mut self, extra: usize) {
        let need = (self.slots + extra) * self.stride;
        let have = self.words.capacity() - self.base;
        if need > have {
            self.regrow(need.max(have + have / 2), self.code_bytes);
        }
    }

    /// A new block at the end (an empty list, a zero code).
    pub fn push(&mut self) -> u32 {
        self.reserve(1);
        // Within capacity (reserved just above): never reallocates, so the base holds.
        self.words
            .extend((0..self.stride).map(|_| AtomicU32::new(0)));
        self.slots += 1;
        (self.slots - 1) as u32
    }

    /// Give every block a code region of `code_bytes` (0 drops the regions), keeping
    /// the links; codes already stored are kept when the width stays, else zeroed.
    pub fn set_code_bytes(&mut self, code_bytes: usize) {
        if code_bytes != self.code_bytes {
            // The same room in blocks as before (a reserve may have just made it).
            let blocks = (self.words.capacity() - self.base) / self.stride;
            self.regrow(
                blocks.max(self.slots) * shape(self.m0, code_bytes).0,
                code_bytes,
            );
        }
    }

    /// Move the blocks into a new buffer of `capacity` words (and the shape for
    /// `code_bytes`), aligned to a line.
    fn regrow(&mut self, capacity: usize, code_bytes: usize) {
        let old = std::mem::take(&mut self.words);
        let (old_base, old_stride, old_links_at, old_code_bytes) =
            (self.base, self.stride, self.links_at, self.code_bytes);
        self.set_shape(code_bytes);
        let capacity = capacity.max(self.slots * self.stride);
        let mut words: Vec<AtomicU32> = Vec::with_capacity(capacity + LINE_WORDS);
        let misalign = (words.as_ptr() as usize / 4) % LINE_WORDS;
        let base = (LINE_WORDS - misalign) % LINE_WORDS;
        words.extend((0..base + self.slots * self.stride).map(|_| AtomicU32::new(0)));
        let keep_code = old_code_bytes == code_bytes && code_bytes > 0;
        let code_words = self.links_at.min(old_links_at);
        for slot in 0..self.slots {
            let from = old_base + slot * old_stride;
            let to = base + slot * self.stride;
            if keep_code {
                for i in 0..code_words {
                    *words[to + i].get_mut() = old[from + i].load(Ordering::Relaxed);
                }
            }
            for i in 0..=self.m0 {
                let v = old[from + old_links_at + i].load(Ordering::Relaxed);
                *words[to + self.links_at + i].get_mut() = v;
            }
        }
        self.words = words;
        self.base = base;
    }

    /// Heap bytes: `(codes, links)`, the code regions (with their parameters) apart.
    pub fn memory_bytes(&self) -> (usize, usize) {
        let total = self.words.capacity() * 4;
        let code_share = if self.code_bytes == 0 {
            0
        } else {
            total / self.stride * self.links_at
        };
        (code_share, total - code_share)
    }

    /// Address of the first block (tests check how often the blocks move).
    #[cfg(test)]
    pub fn as_ptr(&self) -> *const AtomicU32 {
        self.words.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn params(x: f32) -> RowParams {
        RowParams {
            offset: x,
            scale: x * 2.0,
            sq_norm: x * 3.0,
        }
    }

    fn set_links(l: &Level0, slot: u32, links: &[u32]) {
        let list = l.links(slot);
        for (cell, &v) in list[1..].iter().zip(links) {
            cell.store(v, Relaxed);
        }
        list[0].store(links.len() as u32, Relaxed);
    }

    fn get_links(l: &Level0, slot: u32) -> Vec<u32> {
        let list = l.links(slot);
        let n = list[0].load(Relaxed) as usize;
        list[1..=n].iter().map(|c| c.load(Relaxed)).collect()
    }

    #[test]
    fn blocks_hold_code_params_and_links_without_overlap_or_padding_past_16_bytes() {
        for (m0, code_bytes) in [(32, 384), (64, 768), (32, 64), (8, 5), (64, 1), (2, 100)] {
            let mut l = Level0::new(m0);
            l.set_code_bytes(code_bytes);
            for _ in 0..7 {
                l.push();
            }
            let need = code_bytes.div_ceil(4) * 4 + 12 + 4 * (1 + m0);
            let what = format!("m0 {m0}, code {code_bytes}: {} bytes", l.block_bytes());
            assert!(
                l.block_bytes() >= need && l.block_bytes() - need < 16,
                "{what}"
            );
            for slot in 0..7 {
                let code = l.code(slot).as_ptr() as usize;
                assert_eq!(code % 16, 0, "{what}");
                let links_start = l.links(slot).as_ptr() as usize;
                assert!(links_start >= code + code_bytes + 12, "{what}");
                assert!(
                    links_start + 4 * (1 + m0) <= code + l.block_bytes(),
                    "{what}"
                );
            }
        }
        // 384 dimensions at m = 16: 528 bytes a node (hnswlib's f32 block: 1,676).
        let mut l = Level0::new(32);
        l.set_code_bytes(384);
        assert_eq!(l.block_bytes(), 528);
    }

    #[test]
    fn codes_params_and_links_stay_apart_and_survive_growth_and_reshaping() {
        let (m0, width) = (6, 13);
        let mut l = Level0::new(m0);
        // Links first, without codes; then codes arrive and the links are kept.
        for slot in 0..50u32 {
            assert_eq!(l.push(), slot);
            set_links(&l, slot, &[slot, slot + 1, slot + 2]);
        }
        l.set_code_bytes(width);
        let code =
            |slot: u32| -> Vec<u8> { (0..width as u32).map(|i| (slot * 7 + i) as u8).collect() };
        for slot in 0..50u32 {
            assert_eq!(l.code(slot), vec![0u8; width], "a new region is zeroed");
            l.write_code(slot, &code(slot), params(slot as f32));
        }
        // Growth one block at a time moves everything along.
        for slot in 50..500u32 {
            l.push();
            l.write_code(slot, &code(slot), params(slot as f32));
            set_links(
                &l,
                slot,
                &(0..m0 as u32).map(|i| slot + i).collect::<Vec<_>>(),
            );
        }
        for slot in 0..500u32 {
            assert_eq!(l.code(slot), code(slot));
            assert_eq!(l.params(slot), params(slot as f32));
            let want: Vec<u32> = if slot < 50 {
                vec![slot, slot + 1, slot + 2]
            } else {
                (0..m0 as u32).map(|i| slot + i).collect()
            };
            assert_eq!(get_links(&l, slot), want);
        }
        // Dropping the codes keeps the links and shrinks the blocks back.
        l.set_code_bytes(0);
        assert_eq!(l.block_bytes(), 4 * (1 + m0));
        assert_eq!(get_links(&l, 7), vec![7, 8, 9]);
        assert_eq!(get_links(&l, 499).len(), m0);
        assert_eq!(l.memory_bytes().0, 0);
    }
}

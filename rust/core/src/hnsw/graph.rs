//! The graph's storage: nodes in slots, their vectors in precision arenas (q8 codes in
//! the level-0 blocks, beside the links: `level0.rs`), their links in atomic arrays (a
//! prepared query scores any slot: `query.rs`).
//!
//! Concurrency model (see `mod.rs`): structural changes (new slots, removals, freeing
//! compacted slots, precision changes) happen under the index's write lock; linking,
//! compaction's repair and searching under its read lock. Under the read lock, the only
//! shared mutable state is the link lists — `AtomicU32` arrays whose writers hold the
//! node's `Mutex` — and the entry point, an `AtomicU64`. A reader can see a list
//! mid-update, but every value it can read is a valid slot whose data was written before
//! the write lock was released. While a snapshot streams, link writes and removals first
//! record what they change in the `snapshot_log` (`snapshot.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::level0::Level0;
use super::snapshot::SnapshotLog;
use super::{Metric, Params};
use crate::quant::kernels::kernels;
use crate::quant::{decode_into, CodeArena, Precision, RowParams};

pub(crate) const NONE: u32 = u32::MAX;
pub(crate) const NO_ENTRY: u64 = u64::MAX;
pub(crate) const MAX_LEVEL: usize = 15;

/// Lifecycle of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SlotState {
    /// Not in use; on the free list.
    Free = 0,
    /// A node that searches may return.
    Live = 1,
    /// Removed (or replaced by an upsert): still traversed, never returned, reclaimed by
    /// compaction.
    Deleted = 2,
}

/// Per-slot facts other than the id and the links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotMeta {
    /// Row of the slot's code in the arena of its precision (the f32 arena for `Full`; for
    /// `Q8`, the slot itself: its code is in its level-0 block).
    pub code_row: u32,
    /// Row of the slot's full vector, or `NONE` (codes only, `keep_full = false`).
    pub full_row: u32,
    pub level: u8,
    pub state: SlotState,
    pub precision: Precision,
}

impl SlotMeta {
    pub const FREE: SlotMeta = SlotMeta {
        code_row: NONE,
        full_row: NONE,
        level: 0,
        state: SlotState::Free,
        precision: Precision::Full,
    };
}

pub(crate) struct Graph {
    pub params: Params,
    /// Link capacity at level 0 and above.
    pub m0: usize,
    pub m_up: usize,
    pub level_mult: f64,

    // One entry per slot.
    pub ids: Vec<u64>,
    /// What a search needs to know of a slot besides its links, packed so that a visit
    /// touches one cache line for it.
    pub meta: Vec<SlotMeta>,
    /// Per slot, its level-0 links (the count, then `m0` neighbours) and, while the index
    /// holds q8 codes, its q8 code: what a visit at level 0 reads, in one block.
    pub level0: Level0,
    /// Links above level 0, `level × (1 + m_up)` per slot.
    pub links_up: Vec<Box<[AtomicU32]>>,
    /// Held while a slot's links are rewritten.
    pub locks: Vec<Mutex<()>>,

    pub full: CodeArena<f32>,
    pub q4: CodeArena<u8>,
    pub binary: CodeArena<u8>,

    pub id_map: HashMap<u64, u32>,
    pub free_slots: Vec<u32>,
    /// `(level << 32) | slot` of the entry point, or `NO_ENTRY`.
    pub entry: AtomicU64,
    pub live: usize,
    pub deleted: usize,
    /// Non-free slots per precision (to know which query tables a search needs).
    pub per_precision: [usize; 4],
    /// Every slot in use is full precision and its f32 row is its own slot number (true of
    /// any full-precision index with `keep_full`, since slots and rows are allocated and
    /// freed together): scoring then needs no metadata lookup. Cleared by the first
    /// exception, recomputed after arena repacks and on load.
    pub rows_are_slots: bool,
    pub rng: u64,
    /// Where link writes and removals record what they change for a snapshot that
    /// streams meanwhile (`snapshot.rs`); shared with the index.
    pub snapshot_log: Arc<SnapshotLog>,
}

impl Graph {
    pub fn new(params: Params) -> Graph {
        let dim = params.dim;
        let m_up = params.m;
        Graph {
            m0: 2 * m_up,
            m_up,
            level_mult: 1.0 / (m_up.max(2) as f64).ln(),
            ids: Vec::new(),
            meta: Vec::new(),
            level0: Level0::new(2 * m_up),
            links_up: Vec::new(),
            locks: Vec::new(),
            full: CodeArena::new(dim),
            q4: CodeArena::new(Precision::Q4.code_bytes(dim)),
            binary: CodeArena::new(Precision::Binary.code_bytes(dim)),
            id_map: HashMap::new(),
            free_slots: Vec::new(),
            entry: AtomicU64::new(NO_ENTRY),
            live: 0,
            deleted: 0,
            per_precision: [0; 4],
            rows_are_slots: true,
            rng: params.seed ^ 0x9e37_79b9_7f4a_7c15,
            snapshot_log: Arc::default(),
            params,
        }
    }

    #[inline]
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// The precision `id` is stored at, if it is in the index.
    pub fn precision_of(&self, id: u64) -> Option<Precision> {
        self.id_map
            .get(&id)
            .map(|&slot| self.meta[slot as usize].precision)
    }

    pub fn entry_point(&self) -> Option<(u32, usize)> {
        let e = self.entry.load(Ordering::Acquire);
        (e != NO_ENTRY).then_some(((e & 0xffff_ffff) as u32, (e >> 32) as usize))
    }

    pub fn encode_entry(slot: u32, level: usize) -> u64 {
        ((level as u64) << 32) | slot as u64
    }

    // ---- links -----------------------------------------------------------------------

    #[inline]
    pub fn link_list(&self, slot: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            self.level0.links(slot)
        } else {
            let start = (level - 1) * (1 + self.m_up);
            &self.links_up[slot as usize][start..start + 1 + self.m_up]
        }
    }

    /// Copy the neighbours of `slot` at `level` into `out`.
    #[inline]
    pub fn read_links(&self, slot: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let list = self.link_list(slot, level);
        let count = (list[0].load(Ordering::Acquire) as usize).min(list.len() - 1);
        out.extend(list[1..=count].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    /// Replace the neighbours of `slot` at `level`; the caller holds `locks[slot]` (or the
    /// write lock).
    pub fn write_links(&self, slot: u32, level: usize, neighbours: &[u32]) {
        let list = self.link_list(slot, level);
        self.snapshot_log.before_link_write(slot, level, list);
        let count = neighbours.len().min(list.len() - 1);
        for (cell, &n) in list[1..=count].iter().zip(neighbours) {
            cell.store(n, Ordering::Relaxed);
        }
        list[0].store(count as u32, Ordering::Release);
    }

    pub fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m_up
        }
    }

    // ---- vectors ---------------------------------------------------------------------

    /// The slot's vector as f32: its full row when kept, else its decoded code in `buf`.
    pub fn vector<'a>(&'a self, slot: u32, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let full_row = self.meta[slot as usize].full_row;
        if full_row != NONE {
            return self.full.row(full_row);
        }
        buf.clear();
        self.decode_append(slot, buf);
        buf
    }

    /// Append the decoded code of a slot that keeps no full row to `out`.
    pub fn decode_append(&self, slot: u32, out: &mut Vec<f32>) {
        let (precision, code, params) = self.code(slot);
        let start = out.len();
        out.resize(start + self.params.dim, 0.0);
        decode_into(precision, code, params, &mut out[start..]);
    }

    /// The code of a slot stored below full precision, with its precision and parameters.
    #[inline]
    pub fn code(&self, slot: u32) -> (Precision, &[u8], RowParams) {
        let m = self.meta[slot as usize];
        match m.precision {
            Precision::Q8 => (
                m.precision,
                self.level0.code(slot),
                self.level0.params(slot),
            ),
            Precision::Full => unreachable!("full rows live in the f32 arena"),
            p => {
                let arena = self.code_arena(p);
                (p, arena.row(m.code_row), arena.params(m.code_row))
            }
        }
    }

    /// `‖x‖²` of the slot's best available representation (only the l2 metric needs it;
    /// 0 for the others, to spare the lookup).
    #[inline]
    pub fn sq_norm(&self, slot: u32) -> f32 {
        if self.params.metric != Metric::L2 {
            return 0.0;
        }
        let s = slot as usize;
        if self.meta[s].full_row != NONE {
            self.full.params(self.meta[s].full_row).sq_norm
        } else {
            self.code(slot).2.sq_norm
        }
    }

    /// The arena of q4 or binary codes (q8 codes are in the level-0 blocks, full rows in
    /// the f32 arena).
    pub fn code_arena(&self, p: Precision) -> &CodeArena<u8> {
        match p {
            Precision::Q4 => &self.q4,
            Precision::Binary => &self.binary,
            Precision::Q8 => unreachable!("q8 codes live in the level-0 blocks"),
            Precision::Full => unreachable!("full rows live in the f32 arena"),
        }
    }

    pub fn code_arena_mut(&mut self, p: Precision) -> &mut CodeArena<u8> {
        match p {
            Precision::Q4 => &mut self.q4,
            Precision::Binary => &mut self.binary,
            Precision::Q8 => unreachable!("q8 codes live in the level-0 blocks"),
            Precision::Full => unreachable!("full rows live in the f32 arena"),
        }
    }

    /// Give the level-0 blocks a q8 code region if they have none (before a q8 code is
    /// stored): a copy of the blocks and a traversal code for every node, once.
    fn ensure_q8_region(&mut self) {
        let width = Precision::Q8.code_bytes(self.params.dim);
        if self.level0.code_bytes() != width {
            self.level0.set_code_bytes(width);
            self.write_traversal_codes();
        }
    }

    /// While the blocks have a code region, every slot in use has a q8 code there,
    /// whatever its precision: a q8 node's is its vector's code, any other node's a copy
    /// to traverse on, in room its block has anyway. A search then scores codes alone,
    /// from slot numbers alone (`QueryCtx::q8_slots`), and rescores its best candidates.
    /// This writes the copies of every node in use but the q8 ones.
    pub fn write_traversal_codes(&mut self) {
        let (mut buf, mut code) = (Vec::new(), vec![0u8; self.level0.code_bytes()]);
        for slot in 0..self.slots() as u32 {
            let m = self.meta[slot as usize];
            if m.state != SlotState::Free && m.precision != Precision::Q8 {
                self.write_traversal_code(slot, &mut buf, &mut code);
            }
        }
    }

    /// The q8 copy of what the slot holds (its full row, else its decoded code: a copy
    /// that depends on the node's state alone, so a reloaded index traverses as the one
    /// it was saved from). `code`: room for one code.
    fn write_traversal_code(&mut self, slot: u32, buf: &mut Vec<f32>, code: &mut [u8]) {
        let p = crate::quant::encode(Precision::Q8, self.vector(slot, buf), code);
        self.level0.write_code(slot, code, p);
    }

    /// Whether every slot in use has a q8 code in its level-0 block (its own or a
    /// traversal code), so that a walk may score codes alone.
    #[inline]
    pub fn codes_everywhere(&self) -> bool {
        self.live + self.deleted > 0 && self.level0.code_bytes() > 0
    }

    /// Score between two stored representations (higher is closer).
    #[inline]
    pub fn pair_score(&self, a: &[f32], a_sq: f32, b: &[f32], b_sq: f32) -> f32 {
        let dot = (kernels().dot_f32)(a, b);
        match self.params.metric {
            Metric::Cosine | Metric::Ip => dot,
            Metric::L2 => 2.0 * dot - a_sq - b_sq,
        }
    }

    /// Address of a slot's metadata, for prefetching.
    #[inline]
    pub fn meta_ptr(&self, slot: u32) -> *const u8 {
        self.meta.as_ptr().wrapping_add(slot as usize).cast()
    }

    /// Address of a slot's link list at `level`, for prefetching.
    #[inline]
    pub fn links_ptr(&self, slot: u32, level: usize) -> *const u8 {
        if level == 0 {
            return self.level0.links_ptr(slot);
        }
        self.link_list(slot, level).as_ptr().cast()
    }

    /// Address of the data a score of `slot` will read, for prefetching.
    #[inline]
    pub fn data_ptr(&self, slot: u32, use_full: bool) -> *const u8 {
        if self.rows_are_slots {
            return self.full.row(slot).as_ptr().cast();
        }
        let m = self.meta[slot as usize];
        match m.precision {
            Precision::Full => self.full.row(m.code_row).as_ptr().cast(),
            _ if use_full && m.full_row != NONE => self.full.row(m.full_row).as_ptr().cast(),
            Precision::Q8 => self.level0.code(slot).as_ptr(),
            p => self.code_arena(p).row(m.code_row).as_ptr(),
        }
    }

    // ---- slots -----------------------------------------------------------------------

    pub fn random_level(&mut self) -> usize {
        // splitmix64: deterministic for a seed, independent of thread scheduling.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(self.params.max_level)
    }

    /// Room for `extra` more nodes. Amortized (`reserve`, not `reserve_exact`): a stream
    /// of one-node adds must not copy every array on every add.
    pub fn reserve(&mut self, extra: usize, precisions: &[Precision]) -> std::io::Result<()> {
        let new_slots = extra.saturating_sub(self.free_slots.len());
        self.ids.reserve(new_slots);
        self.meta.reserve(new_slots);
        self.links_up.reserve(new_slots);
        self.locks.reserve(new_slots);
        let mut per = [0usize; 4];
        for p in precisions {
            per[*p as usize] += 1;
        }
        let fulls = if self.params.keep_full { extra } else { per[0] };
        self.full.reserve(fulls)?;
        // The blocks take their final shape first: reserving, then reshaping, would
        // reserve blocks of the old size.
        if per[Precision::Q8 as usize] > 0 {
            self.ensure_q8_region();
        }
        self.level0.reserve(new_slots);
        self.q4.reserve(per[2])?;
        self.binary.reserve(per[3])
    }

    /// A fresh slot for `id` at `level`, its vector stored at `precision`; not yet linked.
    pub fn alloc_slot(
        &mut self,
        id: u64,
        vector: &[f32],
        precision: Precision,
        level: usize,
    ) -> u32 {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.ids.push(0);
                self.meta.push(SlotMeta::FREE);
                self.level0.push();
                self.links_up.push(Box::new([]));
                self.locks.push(Mutex::new(()));
                (self.ids.len() - 1) as u32
            }
        };
        let s = slot as usize;
        self.ids[s] = id;
        self.meta[s].level = level as u8;
        self.meta[s].state = SlotState::Live;
        self.level0.links(slot)[0].store(0, Ordering::Relaxed);
        self.links_up[s] = (0..level * (1 + self.m_up))
            .map(|_| AtomicU32::new(0))
            .collect();
        self.store_vector(slot, vector, precision);
        self.live += 1;
        slot
    }

    /// Store `vector` for `slot` at `precision` (replacing whatever it had).
    pub fn store_vector(&mut self, slot: u32, vector: &[f32], precision: Precision) {
        let s = slot as usize;
        let keep_full = self.params.keep_full || precision == Precision::Full;
        if keep_full {
            let row = self.full.alloc();
            self.full.row_mut(row).copy_from_slice(vector);
            let p = crate::quant::encode(Precision::Full, vector, &mut []);
            self.full.set_params(row, p);
            self.meta[s].full_row = row;
        }
        self.meta[s].precision = precision;
        self.per_precision[precision as usize] += 1;
        if precision == Precision::Full {
            self.meta[s].code_row = self.meta[s].full_row;
        } else if precision == Precision::Q8 {
            // After the precision is set: the region's first traversal codes are those
            // of the other nodes.
            self.ensure_q8_region();
            let mut code = vec![0u8; self.level0.code_bytes()];
            let p = crate::quant::encode(precision, vector, &mut code);
            self.level0.write_code(slot, &code, p);
            self.meta[s].code_row = slot;
        } else {
            let arena = self.code_arena_mut(precision);
            let row = arena.alloc();
            let p = crate::quant::encode(precision, vector, arena.row_mut(row));
            arena.set_params(row, p);
            self.meta[s].code_row = row;
        }
        if precision != Precision::Q8 && self.level0.code_bytes() > 0 {
            let mut code = vec![0u8; self.level0.code_bytes()];
            self.write_traversal_code(slot, &mut Vec::new(), &mut code);
        }
        if precision != Precision::Full || self.meta[s].full_row != slot {
            self.rows_are_slots = false;
        }
    }

    pub fn recompute_rows_are_slots(&mut self) {
        self.rows_are_slots = self.meta.iter().enumerate().all(|(s, m)| {
            m.state == SlotState::Free || (m.precision == Precision::Full && m.full_row == s as u32)
        });
    }

    /// Give back the rows holding `slot`'s vector.
    pub fn release_vector(&mut self, slot: u32) {
        let s = slot as usize;
        let p = self.meta[s].precision;
        // A q8 code is part of the slot's block, which goes with the slot.
        if p != Precision::Full && p != Precision::Q8 {
            let row = self.meta[s].code_row;
            self.code_arena_mut(p).release(row);
        }
        if self.meta[s].full_row != NONE {
            self.full.release(self.meta[s].full_row);
        }
        self.per_precision[p as usize] -= 1;
        self.meta[s].code_row = NONE;
        self.meta[s].full_row = NONE;
    }

    /// Give back the memory of freed vector rows once enough of them pile up (after
    /// removals or precision changes), renumbering the rows of the slots that use them.
    pub fn repack_arenas(&mut self) {
        // While rows are slots, the free f32 rows are exactly the free slots, which the
        // next inserts reuse: repacking would only renumber rows away from their slots.
        let full_map = if self.rows_are_slots {
            None
        } else {
            self.full.repack()
        };
        if let Some(map) = full_map {
            for m in self.meta.iter_mut().filter(|m| m.state != SlotState::Free) {
                if m.precision == Precision::Full {
                    m.code_row = map[m.code_row as usize];
                }
                if m.full_row != NONE {
                    m.full_row = map[m.full_row as usize];
                }
            }
        }
        for p in [Precision::Q4, Precision::Binary] {
            if let Some(map) = self.code_arena_mut(p).repack() {
                for m in self
                    .meta
                    .iter_mut()
                    .filter(|m| m.state != SlotState::Free && m.precision == p)
                {
                    m.code_row = map[m.code_row as usize];
                }
            }
        }
        // No q8 node left (after a compaction or a change of precision): the blocks shrink
        // back to their links.
        if self.per_precision[Precision::Q8 as usize] == 0 && self.level0.code_bytes() > 0 {
            self.level0.set_code_bytes(0);
        }
        self.recompute_rows_are_slots();
    }

    /// Mark a live slot deleted: it stays in the graph until compaction.
    pub fn tombstone(&mut self, slot: u32) {
        let s = slot as usize;
        debug_assert_eq!(self.meta[s].state, SlotState::Live);
        self.snapshot_log.before_remove(slot);
        self.meta[s].state = SlotState::Deleted;
        self.live -= 1;
        self.deleted += 1;
        self.replace_dead_entry();
    }

    /// Move the entry point off a node that is no longer live, to the live node of the
    /// highest level. New nodes never link to deleted ones, so a deleted entry without
    /// live neighbours (say the first node, deleted before any other arrived) would leave
    /// every later node unreachable. A scan, but only when the entry itself goes.
    pub fn replace_dead_entry(&mut self) {
        let Some((ep, _)) = self.entry_point() else {
            return;
        };
        if self.meta[ep as usize].state == SlotState::Live {
            return;
        }
        let best = (0..self.slots() as u32)
            .filter(|&sl| self.meta[sl as usize].state == SlotState::Live)
            .max_by_key(|&sl| self.meta[sl as usize].level);
        let entry = best.map_or(NO_ENTRY, |sl| {
            Graph::encode_entry(sl, self.meta[sl as usize].level as usize)
        });
        self.entry.store(entry, Ordering::Release);
    }

    pub fn memory_bytes(&self) -> MemoryBreakdown {
        let per_slot = self.ids.capacity() * 8
            + self.meta.capacity() * std::mem::size_of::<SlotMeta>()
            + self.locks.capacity() * std::mem::size_of::<Mutex<()>>()
            + self.free_slots.capacity() * 4;
        let (level0_codes, level0_links) = self.level0.memory_bytes();
        let links = level0_links
            + self.links_up.capacity() * std::mem::size_of::<Box<[AtomicU32]>>()
            + self.links_up.iter().map(|l| l.len() * 4).sum::<usize>();
        // hashbrown: one control byte and one (u64, u32) bucket, padded to 16, per bucket.
        let id_map = self.id_map.capacity() * (16 + 1);
        MemoryBreakdown {
            full_vectors: self.full.memory_bytes(),
            mapped_vectors: self.full.mapped_bytes(),
            codes: level0_codes + self.q4.memory_bytes() + self.binary.memory_bytes(),
            links,
            ids: per_slot + id_map,
        }
    }
}

/// Where the index's memory goes, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryBreakdown {
    /// On the heap.
    pub full_vectors: usize,
    /// In a mapped file (`Hnsw::map_full_rows`): the page cache's, not in `total`.
    pub mapped_vectors: usize,
    pub codes: usize,
    pub links: usize,
    pub ids: usize,
}

impl MemoryBreakdown {
    pub fn total(&self) -> usize {
        self.full_vectors + self.codes + self.links + self.ids
    }
}

pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Hint the CPU to start loading `ptr`'s cache line.
#[inline(always)]
pub(crate) fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and never reads into the program,
    // whatever the address. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch(ptr.cast(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

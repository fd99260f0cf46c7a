//! Writing the index format (`persist.rs`) from a [`Capture`]: what a snapshot takes of
//! the index at one instant (the sizes, the entry point, the free lists), then everything
//! else read a batch at a time, each batch under a read guard of its own, and given to the
//! output (the compressor, the file) without one. Why the bytes are still those of the
//! capture instant while writers run between the batches: `snapshot.rs`.
//!
//! What was free at the capture is written as free and zeroed (a slot: id 0, free
//! metadata, no links; a row: zeros, zero parameters), whatever a writer has put there
//! since: the reader ignores it, and the file depends on the index's state alone.

use std::io::{self, Write};
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicU32, Ordering};

use super::graph::{Graph, SlotMeta, SlotState};
use super::persist::{MAGIC, VERSION};
use super::Params;
use crate::quant::{CodeArena, Precision, RowParams};

/// What a batch holds, about: values are gathered into a buffer under a read guard, then
/// checksummed and written without it.
const CHUNK: usize = 1 << 16;

/// The part of the index a snapshot takes at one instant (under the read lock, past the
/// fence); the rest is read as it streams.
pub(crate) struct Capture {
    params: Params,
    rng: u64,
    entry: u64,
    slots: usize,
    m0: usize,
    m_up: usize,
    /// In their order (the order of reuse).
    free_slots: Vec<u32>,
    free_slot_set: Bits,
    full: ArenaCapture,
    q4: ArenaCapture,
    binary: ArenaCapture,
    /// Slots in use stored at q8, and the bytes of a q8 code.
    q8_slots: usize,
    q8_code_bytes: usize,
    /// Words of the link lists above level 0 of the slots in use.
    up_words: usize,
    /// Writers log their changes for this capture (a snapshot streaming without the
    /// lock): the lists and removals the log holds are the capture's.
    logged: bool,
}

/// An arena at the capture: its rows, and those of them free (in their order).
struct ArenaCapture {
    rows: usize,
    free: Vec<u32>,
    free_set: Bits,
}

impl ArenaCapture {
    fn take<T: bytemuck::Pod + Default>(arena: &CodeArena<T>) -> ArenaCapture {
        ArenaCapture {
            rows: arena.rows(),
            free: arena.free_rows().to_vec(),
            free_set: Bits::of(arena.rows(), arena.free_rows().iter().map(|&r| r as usize)),
        }
    }

    /// Bytes of the arena's part of the file, rows of `row_bytes`.
    fn len(&self, row_bytes: usize) -> usize {
        8 + self.rows * (row_bytes + 12) + 8 + 4 * self.free.len()
    }
}

/// A set of small integers.
struct Bits(Vec<u64>);

impl Bits {
    fn of(n: usize, members: impl Iterator<Item = usize>) -> Bits {
        let mut words = vec![0u64; n.div_ceil(64)];
        for i in members.filter(|&i| i < n) {
            words[i / 64] |= 1 << (i % 64);
        }
        Bits(words)
    }

    #[inline]
    fn has(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

impl Capture {
    /// Take what the stream cannot read later from the frozen graph `g` (`logged`: the
    /// writers' log is turned on for it).
    pub fn take(g: &Graph, logged: bool) -> Capture {
        let (mut q8_slots, mut up_words) = (0, 0);
        for m in g.meta.iter().filter(|m| m.state != SlotState::Free) {
            q8_slots += usize::from(m.precision == Precision::Q8);
            up_words += m.level as usize * (1 + g.m_up);
        }
        let slots = g.slots();
        Capture {
            params: g.params,
            rng: g.rng,
            entry: g.entry.load(Ordering::Acquire),
            slots,
            m0: g.m0,
            m_up: g.m_up,
            free_slots: g.free_slots.clone(),
            free_slot_set: Bits::of(
                slots,
                (0..slots).filter(|&s| g.meta[s].state == SlotState::Free),
            ),
            full: ArenaCapture::take(&g.full),
            q4: ArenaCapture::take(&g.q4),
            binary: ArenaCapture::take(&g.binary),
            q8_slots,
            q8_code_bytes: Precision::Q8.code_bytes(g.params.dim),
            up_words,
            logged,
        }
    }

    /// The exact length of the encoding (a zstd frame declares it, so that a reader
    /// allocates the decompressed index once).
    pub fn len(&self) -> u64 {
        let n = self.slots;
        let len = MAGIC.len() + 4 // version
            + 8 + 1 + 8 * 4 + 1 // params
            + 8 + 8 // rng, entry
            + 8 + (8 + 11) * n // slot count, ids, meta
            + 4 * (1 + self.m0) * n
            + 8 * n + 4 * self.up_words
            + 8 + 4 * self.free_slots.len()
            + self.full.len(4 * self.params.dim)
            + 8 + self.q8_slots * (self.q8_code_bytes + 12) + 8
            + self.q4.len(Precision::Q4.code_bytes(self.params.dim))
            + self.binary.len(Precision::Binary.code_bytes(self.params.dim))
            + 4; // crc32
        len as u64
    }

    #[inline]
    fn free(&self, slot: usize) -> bool {
        self.free_slot_set.has(slot)
    }

    /// `slot`'s metadata at the capture (a slot in use: its state aside, nothing of it
    /// changes while the snapshot streams).
    fn meta(&self, g: &Graph, slot: usize) -> SlotMeta {
        if self.free(slot) {
            return SlotMeta::FREE;
        }
        let mut m = g.meta[slot];
        if self.logged && m.state == SlotState::Deleted && g.snapshot_log.removed_since(slot as u32)
        {
            m.state = SlotState::Live;
        }
        m
    }

    /// Append `slot`'s list at `level` as it was at the capture; the caller holds the
    /// node's mutex.
    fn list(&self, g: &Graph, slot: u32, level: usize, out: &mut Vec<u8>) {
        match self
            .logged
            .then(|| g.snapshot_log.list_at_capture(slot, level))
            .flatten()
        {
            Some(words) => put_array(out, &words, |v| v.to_le_bytes()),
            None => put_atomics(out, g.link_list(slot, level)),
        }
    }
}

/// The index as bytes in memory.
pub(crate) fn encode<G: Deref<Target = Graph>>(cap: &Capture, graph: impl Fn() -> G) -> Vec<u8> {
    let mut out = Vec::with_capacity(cap.len() as usize);
    encode_into(cap, graph, &mut out).expect("writing into a Vec cannot fail");
    out
}

/// Write the index into `file`: the format as it is, or with a zstd `level`, as one zstd
/// frame (the encoding streamed into the compressor, the compressor into the file). The
/// caller syncs the file.
pub(crate) fn write_into<G: Deref<Target = Graph>, W: Write>(
    cap: &Capture,
    graph: impl Fn() -> G,
    file: W,
    level: Option<i32>,
) -> io::Result<W> {
    let Some(level) = level else {
        return encode_into(cap, graph, file);
    };
    let mut zstd = zstd::Encoder::new(file, level)?;
    zstd.set_pledged_src_size(Some(cap.len()))?;
    // zstd's own checksum too: `zstd -t` can then check a snapshot without llmkg.
    zstd.include_checksum(true)?;
    encode_into(cap, graph, zstd)?.finish()
}

/// Write the captured index into `out` in the format of `persist.rs`, reading what the
/// capture does not hold from `graph()` (a read guard, or the frozen graph itself) a
/// batch at a time.
pub(crate) fn encode_into<G: Deref<Target = Graph>, W: Write>(
    cap: &Capture,
    graph: impl Fn() -> G,
    out: W,
) -> io::Result<W> {
    let mut w = Writer::new(out, graph);
    let p = &cap.params;
    w.fill(|b| {
        b.extend_from_slice(MAGIC);
        put_u32(b, VERSION);
        put_u64(b, p.dim as u64);
        b.push(p.metric as u8);
        put_u64(b, p.m as u64);
        put_u64(b, p.ef_construction as u64);
        put_u64(b, p.ef_search as u64);
        put_u64(b, p.seed);
        b.push(p.keep_full as u8);
        put_u64(b, cap.rng);
        put_u64(b, cap.entry);
        put_u64(b, cap.slots as u64);
    })?;
    #[cfg(test)]
    super::snapshot::test_point("streaming");

    w.batches(cap.slots, 8, |g, slots, b| {
        for s in slots {
            put_u64(b, if cap.free(s) { 0 } else { g.ids[s] });
        }
    })?;
    // In memory, q8 codes live in the level-0 blocks; the file keeps its q8 arena, packed:
    // a q8 slot's row is its rank among the q8 slots.
    let mut q8_rank = 0u32;
    w.batches(cap.slots, 11, |g, slots, b| {
        for s in slots {
            let m = cap.meta(g, s);
            let code_row = if m.state != SlotState::Free && m.precision == Precision::Q8 {
                q8_rank += 1;
                q8_rank - 1
            } else {
                m.code_row
            };
            put_u32(b, code_row);
            put_u32(b, m.full_row);
            b.extend_from_slice(&[m.level, m.state as u8, m.precision as u8]);
        }
    })?;
    let list0 = 4 * (1 + cap.m0);
    w.batches(cap.slots, list0, |g, slots, b| {
        for s in slots.clone() {
            if cap.free(s) {
                b.resize(b.len() + list0, 0);
                continue;
            }
            let _node = g.locks[s].lock();
            cap.list(g, s as u32, 0, b);
        }
        if cap.logged {
            g.snapshot_log.streamed_below(false, slots.end);
        }
    })?;
    w.batches(cap.slots, 8, |g, slots, b| {
        for s in slots.clone() {
            let levels = if cap.free(s) {
                0
            } else {
                g.meta[s].level as usize
            };
            put_u64(b, (levels * (1 + cap.m_up)) as u64);
            if levels > 0 {
                let _node = g.locks[s].lock();
                for level in 1..=levels {
                    cap.list(g, s as u32, level, b);
                }
            }
        }
        if cap.logged {
            g.snapshot_log.streamed_below(true, slots.end);
        }
    })?;
    w.fill(|b| {
        put_u64(b, cap.free_slots.len() as u64);
        put_array(b, &cap.free_slots, |v| v.to_le_bytes());
    })?;

    #[cfg(test)]
    super::snapshot::test_point("vectors");
    let dim = cap.params.dim;
    w.arena(
        &cap.full,
        4 * dim,
        |g| &g.full,
        |b, row| put_array(b, row, |v| v.to_le_bytes()),
    )?;
    // The q8 arena: the codes of the q8 slots in slot order, their parameters, no free row.
    w.fill(|b| put_u64(b, cap.q8_slots as u64))?;
    let is_q8 = |g: &Graph, s: usize| !cap.free(s) && g.meta[s].precision == Precision::Q8;
    if cap.q8_slots > 0 {
        w.batches(cap.slots, cap.q8_code_bytes, |g, slots, b| {
            for s in slots.filter(|&s| is_q8(g, s)) {
                b.extend_from_slice(g.level0.code(s as u32));
            }
        })?;
        w.batches(cap.slots, 12, |g, slots, b| {
            for s in slots.filter(|&s| is_q8(g, s)) {
                put_params(b, g.level0.params(s as u32));
            }
        })?;
    }
    w.fill(|b| put_u64(b, 0))?;
    for (arena, p) in [(&cap.q4, Precision::Q4), (&cap.binary, Precision::Binary)] {
        let width = p.code_bytes(dim);
        w.arena(
            arena,
            width,
            |g| g.code_arena(p),
            |b, row| b.extend_from_slice(row),
        )?;
    }
    w.finish()
}

/// The encoder's output: a buffer before `out`, the running checksum of everything that
/// went through, and where the graph is read from.
struct Writer<W: Write, F> {
    out: W,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    graph: F,
}

impl<W: Write, G: Deref<Target = Graph>, F: Fn() -> G> Writer<W, F> {
    fn new(out: W, graph: F) -> Self {
        Writer {
            out,
            buf: Vec::with_capacity(2 * CHUNK),
            crc: crc32fast::Hasher::new(),
            graph,
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.crc.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Append what `f` writes, then hand the buffer on if it holds a chunk.
    fn fill(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        f(&mut self.buf);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Append what `f` writes of `items` (about `item_bytes` each), a chunk's worth of
    /// them per read guard, the output written between the guards.
    fn batches(
        &mut self,
        items: usize,
        item_bytes: usize,
        mut f: impl FnMut(&Graph, Range<usize>, &mut Vec<u8>),
    ) -> io::Result<()> {
        let per_guard = (CHUNK / item_bytes.max(1)).max(1);
        let mut start = 0;
        while start < items {
            let end = (start + per_guard).min(items);
            let guard = (self.graph)();
            f(&guard, start..end, &mut self.buf);
            // Released before the buffer is handed on (to the compressor, the file).
            drop(guard);
            if self.buf.len() >= CHUNK {
                self.flush_buf()?;
            }
            start = end;
        }
        Ok(())
    }

    /// One arena: its row count, its rows (`row_bytes` each; a row free at the capture as
    /// zeros), their parameters and its free rows.
    fn arena<T: bytemuck::Pod + Default>(
        &mut self,
        cap: &ArenaCapture,
        row_bytes: usize,
        arena: impl Fn(&Graph) -> &CodeArena<T>,
        put_row: impl Fn(&mut Vec<u8>, &[T]),
    ) -> io::Result<()> {
        self.fill(|b| put_u64(b, cap.rows as u64))?;
        self.batches(cap.rows, row_bytes, |g, rows, b| {
            for r in rows {
                if cap.free_set.has(r) {
                    b.resize(b.len() + row_bytes, 0);
                } else {
                    put_row(b, arena(g).row(r as u32));
                }
            }
        })?;
        self.batches(cap.rows, 12, |g, rows, b| {
            for r in rows {
                if cap.free_set.has(r) {
                    put_params(b, RowParams::default());
                } else {
                    put_params(b, arena(g).params(r as u32));
                }
            }
        })?;
        self.fill(|b| {
            put_u64(b, cap.free.len() as u64);
            put_array(b, &cap.free, |v| v.to_le_bytes());
        })
    }

    /// Flush the buffer, append the checksum of everything before it, and hand `out` back.
    fn finish(mut self) -> io::Result<W> {
        self.flush_buf()?;
        let crc = self.crc.finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok(self.out)
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_params(b: &mut Vec<u8>, p: RowParams) {
    put_array(b, &[p.offset, p.scale, p.sq_norm], |v| v.to_le_bytes());
}

fn put_atomics(b: &mut Vec<u8>, values: &[AtomicU32]) {
    put_array(b, values, |v| v.load(Ordering::Relaxed).to_le_bytes());
}

/// Append `values`, each as `N` little-endian bytes: one resize, then a loop the compiler
/// vectorizes (the vectors are most of the index).
fn put_array<T, const N: usize>(b: &mut Vec<u8>, values: &[T], bytes: impl Fn(&T) -> [u8; N]) {
    let start = b.len();
    b.resize(start + N * values.len(), 0);
    for (out, v) in b[start..].chunks_exact_mut(N).zip(values) {
        out.copy_from_slice(&bytes(v));
    }
}

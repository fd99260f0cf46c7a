//! The index file format.
//!
//! ```text
//! magic    8 bytes  "LLMKGHNS"
//! version  u32      1
//! body     header, slot arrays, links, arenas (all integers little-endian, in the order
//!          `encode::encode_into` writes them)
//! crc32    u32      of every byte before it
//! ```
//! A file holds this as it is, or (a snapshot with a zstd level) as one zstd frame of it;
//! the reader tells them apart by the frame's magic number, which no index begins with.
//! The writer (`encode.rs`) streams: values go through a buffer of 64 KiB, checksummed on
//! the way, into the compressor and on into the file, so that no copy of the index is ever
//! made; it reads the index a buffer's worth at a time, each under a read guard of its
//! own, from a capture of one instant (`snapshot.rs`). The frame declares the
//! decompressed size (`Capture::len`, known beforehand) and carries zstd's own checksum
//! too. What is free in the index (slots, rows) is written zeroed.
//!
//! A reader decompresses the whole index into memory, then checks the length, magic,
//! version and checksum before it parses anything, then checks every index inside the
//! body (slots, rows, link targets, levels) against the sizes it read, so that a
//! truncated, corrupted or hostile file is an error, never a panic or an out-of-bounds
//! read. What the reader allocates is bounded by the file's size, except the q8 codes'
//! level-0 blocks (`level0.rs`): an index with q8 nodes gives every slot, free or at
//! another precision, room for a code in memory, so a file with few q8 nodes and many
//! other slots loads into up to `dim` bytes per slot more than it holds, as the index that
//! wrote it did. A torn write cannot replace a good file: `write_atomic` has the file
//! written to a temporary file and synced, then renames it over the target and fsyncs the
//! folder.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::graph::{Graph, SlotMeta, SlotState, MAX_LEVEL, NONE, NO_ENTRY};
use super::{Metric, Params};
use crate::error::{Error, Result};
use crate::quant::{CodeArena, Precision, RowParams};

pub(crate) const MAGIC: &[u8; 8] = b"LLMKGHNS";
pub(crate) const VERSION: u32 = 1;
/// How a zstd frame begins (its magic number, little-endian); never how an index does.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The zstd levels a snapshot may be written at.
pub(crate) fn check_level(level: Option<i32>) -> Result<()> {
    match level {
        Some(l) if !zstd::compression_level_range().contains(&l) => Err(Error::invalid(format!(
            "level must be a zstd level from {} to {}, got {l}",
            zstd::compression_level_range().start(),
            zstd::compression_level_range().end()
        ))),
        _ => Ok(()),
    }
}

/// Read an index from `src`: the format above, or a zstd frame of it (told apart by the
/// first bytes), decompressed as it is read. The decompressed index is checked whole, as
/// `decode` says, before any of it is used.
pub(crate) fn read(mut src: impl Read) -> Result<Graph> {
    // Enough for a zstd frame header (at most 18 bytes), which may declare the size.
    let mut head = Vec::with_capacity(18);
    (&mut src).take(18).read_to_end(&mut head)?;
    let mut bytes = Vec::new();
    if !head.starts_with(&ZSTD_MAGIC) {
        bytes.extend_from_slice(&head);
        src.read_to_end(&mut bytes)?;
        return decode(&bytes);
    }
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&head) {
        // A hint (a damaged header may claim anything): what cannot be had is grown into.
        let _ = bytes.try_reserve_exact(usize::try_from(size).unwrap_or(usize::MAX));
    }
    zstd::Decoder::new(head.as_slice().chain(src))?
        .read_to_end(&mut bytes)
        .map_err(|e| match e.raw_os_error() {
            // The file could not be read (an I/O error), as opposed to a bad stream.
            Some(_) => Error::Io(e),
            None => corrupt(format!("zstd: {e}")),
        })?;
    decode(&bytes)
}

/// Whether `bytes` begin as a zstd frame.
pub(crate) fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Graph> {
    if bytes.len() < MAGIC.len() + 8 {
        return Err(corrupt(format!(
            "file is {} bytes, too short to be an index",
            bytes.len()
        )));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not an llmkg index (bad magic bytes)"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let version = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    if version != VERSION {
        return Err(corrupt(format!(
            "unsupported format version {version} (this build reads {VERSION})"
        )));
    }
    if crc32fast::hash(body) != stored {
        return Err(corrupt(
            "checksum mismatch: the file is truncated or corrupted",
        ));
    }
    let mut r = Reader { buf: body, pos: 12 };

    let dim = r.usize("dim")?;
    let metric = Metric::from_u8(r.u8()?).ok_or_else(|| corrupt("unknown metric"))?;
    let params = Params {
        dim,
        metric,
        m: r.usize("m")?,
        ef_construction: r.usize("ef_construction")?,
        ef_search: r.usize("ef_search")?,
        seed: r.u64()?,
        keep_full: r.u8()? != 0,
        max_level: MAX_LEVEL,
    };
    params
        .validate()
        .map_err(|e| corrupt(format!("bad parameters: {e}")))?;
    let mut g = Graph::new(params);
    g.rng = r.u64()?;
    let entry = r.u64()?;

    let n = r.count("slots", 8)?;
    g.ids = (0..n).map(|_| r.u64()).collect::<Result<_>>()?;
    r.need(n * 11)?;
    g.meta = (0..n)
        .map(|_| {
            Ok(SlotMeta {
                code_row: r.u32()?,
                full_row: r.u32()?,
                level: r.u8()?,
                state: match r.u8()? {
                    0 => SlotState::Free,
                    1 => SlotState::Live,
                    2 => SlotState::Deleted,
                    _ => return Err(corrupt("bad slot state")),
                },
                precision: Precision::from_u8(r.u8()?).ok_or_else(|| corrupt("bad precision"))?,
            })
        })
        .collect::<Result<_>>()?;
    let links0_len = n
        .checked_mul(1 + g.m0)
        .ok_or_else(|| corrupt("slot count overflows"))?;
    r.need(links0_len * 4)?;
    let any_q8 = g
        .meta
        .iter()
        .any(|m| m.state != SlotState::Free && m.precision == Precision::Q8);
    if any_q8 {
        g.level0.set_code_bytes(Precision::Q8.code_bytes(dim));
    }
    g.level0.reserve(n);
    for _ in 0..n {
        let slot = g.level0.push();
        for cell in g.level0.links(slot) {
            cell.store(r.u32()?, Ordering::Relaxed);
        }
    }
    g.links_up = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.count("links", 4)?;
        g.links_up.push(
            (0..len)
                .map(|_| r.u32().map(AtomicU32::new))
                .collect::<Result<_>>()?,
        );
    }
    let free = r.count("free slots", 4)?;
    g.free_slots = (0..free).map(|_| r.u32()).collect::<Result<_>>()?;
    g.locks = (0..n).map(|_| Mutex::new(())).collect();

    let rows = r.count("full rows", 4 * dim)?;
    let data = (0..rows * dim).map(|_| r.f32()).collect::<Result<_>>()?;
    let (params_, free_rows) = r.arena_tail(rows)?;
    g.full = CodeArena::from_parts(dim, data, params_, free_rows);
    let mut q8 = CodeArena::new(0);
    for p in [Precision::Q8, Precision::Q4, Precision::Binary] {
        let width = p.code_bytes(dim);
        let rows = r.count("code rows", width)?;
        let data = r.bytes(rows * width)?.to_vec();
        let (params_, free_rows) = r.arena_tail(rows)?;
        let arena = CodeArena::from_parts(width, data, params_, free_rows);
        match p {
            Precision::Q8 => q8 = arena,
            _ => *g.code_arena_mut(p) = arena,
        }
    }
    if r.pos != body.len() {
        return Err(corrupt("trailing bytes after the index"));
    }
    g.entry = AtomicU64::new(entry);
    validate(&mut g, &q8)?;
    // Every q8 slot's row is in range (validated): move the codes into the blocks.
    for s in 0..n as u32 {
        let m = g.meta[s as usize];
        if m.state != SlotState::Free && m.precision == Precision::Q8 {
            g.level0
                .write_code(s, q8.row(m.code_row), q8.params(m.code_row));
            g.meta[s as usize].code_row = s;
        }
    }
    if g.level0.code_bytes() > 0 {
        // Files keep the q8 nodes' codes only; the others' are derived.
        g.write_traversal_codes();
    }
    Ok(g)
}

/// Check every cross-reference of a decoded graph (whose q8 codes are still in the
/// file's arena, `q8`) and rebuild what is derived.
fn validate(g: &mut Graph, q8: &CodeArena<u8>) -> Result<()> {
    let n = g.slots();
    let mut id_map = HashMap::with_capacity(n);
    let (mut live, mut deleted, mut per) = (0, 0, [0usize; 4]);
    let in_use = |s: u32| (s as usize) < n && g.meta[s as usize].state != SlotState::Free;
    for s in 0..n {
        let level = g.meta[s].level as usize;
        let expected_up = if g.meta[s].state == SlotState::Free {
            0
        } else {
            level * (1 + g.m_up)
        };
        if level > MAX_LEVEL || g.links_up[s].len() != expected_up {
            return Err(corrupt(format!("slot {s}: bad level or link array")));
        }
        if g.meta[s].state == SlotState::Free {
            continue;
        }
        match g.meta[s].state {
            SlotState::Live => {
                live += 1;
                if id_map.insert(g.ids[s], s as u32).is_some() {
                    return Err(corrupt(format!("id {} appears twice", g.ids[s])));
                }
            }
            _ => deleted += 1,
        }
        let p = g.meta[s].precision;
        per[p as usize] += 1;
        let full_ok = if g.meta[s].full_row == NONE {
            !g.params.keep_full && p != Precision::Full
        } else {
            (g.meta[s].full_row as usize) < g.full.rows()
        };
        let code_ok = match p {
            Precision::Full => g.meta[s].code_row == g.meta[s].full_row,
            Precision::Q8 => (g.meta[s].code_row as usize) < q8.rows(),
            _ => (g.meta[s].code_row as usize) < g.code_arena(p).rows(),
        };
        if !full_ok || !code_ok {
            return Err(corrupt(format!("slot {s}: vector row out of range")));
        }
        for l in 0..=level {
            let list = g.link_list(s as u32, l);
            let count = list[0].load(Ordering::Relaxed) as usize;
            if count > list.len() - 1 {
                return Err(corrupt(format!("slot {s}: too many links at level {l}")));
            }
            for t in &list[1..=count] {
                let t = t.load(Ordering::Relaxed);
                if !in_use(t) || (g.meta[t as usize].level as usize) < l {
                    return Err(corrupt(format!(
                        "slot {s}: link to an invalid slot at level {l}"
                    )));
                }
            }
        }
    }
    if g.free_slots
        .iter()
        .any(|&s| (s as usize) >= n || g.meta[s as usize].state != SlotState::Free)
    {
        return Err(corrupt("bad free-slot list"));
    }
    let entry = g.entry.load(Ordering::Relaxed);
    if entry != NO_ENTRY {
        let (slot, level) = ((entry & 0xffff_ffff) as u32, (entry >> 32) as usize);
        if !in_use(slot) || g.meta[slot as usize].level as usize != level {
            return Err(corrupt("bad entry point"));
        }
    } else if live + deleted > 0 {
        return Err(corrupt("nodes without an entry point"));
    }
    for arena in [q8, &g.q4, &g.binary] {
        if arena
            .free_rows()
            .iter()
            .any(|&r| r as usize >= arena.rows())
        {
            return Err(corrupt("bad free-row list"));
        }
    }
    if g.full
        .free_rows()
        .iter()
        .any(|&r| r as usize >= g.full.rows())
    {
        return Err(corrupt("bad free-row list"));
    }
    g.id_map = id_map;
    g.live = live;
    g.deleted = deleted;
    g.per_precision = per;
    g.recompute_rows_are_slots();
    Ok(())
}

/// Publish a file at `path` atomically: `write` writes (and syncs) a temporary file beside
/// it, which is then renamed over `path`, and the folder synced. A crash leaves the old
/// file or the new one; a failure removes the temporary file.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<u64>) -> Result<u64> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<u64> {
        let written = write(&tmp)?;
        fs::rename(&tmp, path)?;
        // The rename is durable once the folder's entry is on disk.
        File::open(dir)?.sync_all()?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize) -> Result<()> {
        if self.buf.len() - self.pos < n {
            return Err(corrupt("unexpected end of data"));
        }
        Ok(())
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.need(n)?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| corrupt(format!("{what} out of range")))
    }
    /// A count of items of `item_bytes` each that must fit in the rest of the buffer.
    fn count(&mut self, what: &str, item_bytes: usize) -> Result<usize> {
        let n = self.usize(what)?;
        if n > u32::MAX as usize || n.saturating_mul(item_bytes.max(1)) > self.buf.len() - self.pos
        {
            return Err(corrupt(format!("{what}: count {n} exceeds the file")));
        }
        Ok(n)
    }
    fn arena_tail(&mut self, rows: usize) -> Result<(Vec<RowParams>, Vec<u32>)> {
        self.need(rows * 12)?;
        let params = (0..rows)
            .map(|_| {
                Ok(RowParams {
                    offset: self.f32()?,
                    scale: self.f32()?,
                    sq_norm: self.f32()?,
                })
            })
            .collect::<Result<_>>()?;
        let free = self.count("free rows", 4)?;
        let free = (0..free).map(|_| self.u32()).collect::<Result<_>>()?;
        Ok((params, free))
    }
}

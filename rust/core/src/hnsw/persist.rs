//! The index file format.
//!
//! ```text
//! magic    8 bytes  "LLMKGHNS"
//! version  u32      1
//! body     header, slot arrays, links, arenas (all integers little-endian, in the order
//!          `encode` writes them)
//! crc32    u32      of every byte before it
//! ```
//! A reader checks the length, magic, version and checksum before it parses anything,
//! then checks every index inside the body (slots, rows, link targets, levels) against
//! the sizes it read, so a truncated, corrupted or hostile file is an error, never a
//! panic or an out-of-bounds read. A torn write cannot replace a good file: `write_atomic`
//! writes a temporary file, fsyncs it, renames it over the target and fsyncs the folder.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::graph::{Graph, SlotMeta, SlotState, MAX_LEVEL, NONE, NO_ENTRY};
use super::{Metric, Params};
use crate::error::{Error, Result};
use crate::quant::{CodeArena, Precision, RowParams};

const MAGIC: &[u8; 8] = b"LLMKGHNS";
const VERSION: u32 = 1;

pub(crate) fn encode(g: &Graph) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(g.memory_bytes().total() + 1024));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    let p = &g.params;
    w.u64(p.dim as u64);
    w.u8(p.metric as u8);
    w.u64(p.m as u64);
    w.u64(p.ef_construction as u64);
    w.u64(p.ef_search as u64);
    w.u64(p.seed);
    w.u8(p.keep_full as u8);
    w.u64(g.rng);
    w.u64(g.entry.load(Ordering::Acquire));

    let n = g.slots();
    w.u64(n as u64);
    g.ids.iter().for_each(|&v| w.u64(v));
    for m in &g.meta {
        w.u32(m.code_row);
        w.u32(m.full_row);
        w.u8(m.level);
        w.u8(m.state as u8);
        w.u8(m.precision as u8);
    }
    g.links0
        .iter()
        .for_each(|v| w.u32(v.load(Ordering::Relaxed)));
    for links in &g.links_up {
        w.u64(links.len() as u64);
        links.iter().for_each(|v| w.u32(v.load(Ordering::Relaxed)));
    }
    w.u64(g.free_slots.len() as u64);
    g.free_slots.iter().for_each(|&v| w.u32(v));

    let (data, params) = g.full.raw();
    w.u64(params.len() as u64);
    data.iter().for_each(|&v| w.f32(v));
    w.arena_tail(params, g.full.free_rows());
    for arena in [&g.q8, &g.q4, &g.binary] {
        let (data, params) = arena.raw();
        w.u64(params.len() as u64);
        w.0.extend_from_slice(data);
        w.arena_tail(params, arena.free_rows());
    }
    let crc = crc32fast::hash(&w.0);
    w.u32(crc);
    w.0
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
    g.links0 = (0..links0_len)
        .map(|_| r.u32().map(AtomicU32::new))
        .collect::<Result<_>>()?;
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
    for p in [Precision::Q8, Precision::Q4, Precision::Binary] {
        let width = p.code_bytes(dim);
        let rows = r.count("code rows", width)?;
        let data = r.bytes(rows * width)?.to_vec();
        let (params_, free_rows) = r.arena_tail(rows)?;
        *g.code_arena_mut(p) = CodeArena::from_parts(width, data, params_, free_rows);
    }
    if r.pos != body.len() {
        return Err(corrupt("trailing bytes after the index"));
    }
    g.entry = AtomicU64::new(entry);
    validate(&mut g)?;
    Ok(g)
}

/// Check every cross-reference of a decoded graph and rebuild what is derived.
fn validate(g: &mut Graph) -> Result<()> {
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
    for arena in [&g.q8, &g.q4, &g.binary] {
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

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable once the folder's entry is on disk.
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn arena_tail(&mut self, params: &[RowParams], free: &[u32]) {
        for p in params {
            self.f32(p.offset);
            self.f32(p.scale);
            self.f32(p.sq_norm);
        }
        self.u64(free.len() as u64);
        free.iter().for_each(|&v| self.u32(v));
    }
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

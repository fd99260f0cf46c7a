//! Linking new nodes into the graph, the neighbour-selection heuristic, and the repair of
//! links around removed nodes (compaction).

use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::graph::{Graph, SlotState, NO_ENTRY};
use super::search::{with_scratch, Cand, Scratch};

/// A vector [`Graph::select`] compares: a row of the full arena, or the offset of a code
/// decoded into the scratch buffer.
#[derive(Clone, Copy)]
enum Row {
    Full(u32),
    Decoded(usize),
}

/// What a compaction did, to be logged outside the lock.
pub(crate) struct CompactionReport {
    dropped: usize,
    live: usize,
    seconds: f64,
}

impl CompactionReport {
    pub fn log(&self) {
        log::info!(
            "compaction: {} deleted nodes dropped, {} live, in {:.1} ms",
            self.dropped,
            self.live,
            self.seconds * 1000.0
        );
    }
}

impl Graph {
    /// Connect an allocated, unlinked `slot` to the graph. Runs under the read lock,
    /// concurrently with searches and other links.
    pub(crate) fn link(&self, slot: u32, s: &mut Scratch) {
        let level = self.meta[slot as usize].level as usize;
        let (ep, top) = loop {
            match self.entry_point() {
                Some(e) => break e,
                None => {
                    let me = Graph::encode_entry(slot, level);
                    let won = self.entry.compare_exchange(
                        NO_ENTRY,
                        me,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    if won.is_ok() {
                        return;
                    }
                }
            }
        };
        {
            let Scratch { ctx, decode, .. } = s;
            ctx.prepare(self, self.vector(slot, decode), true);
        }
        // Where every node has a q8 code, the beam walks on codes as a search does (a
        // quarter of the bytes a visit); the candidates are rescored below, so that the
        // heuristic weighs exact scores against the exact pair scores it takes between
        // them.
        let on_codes = self.codes_everywhere();
        if on_codes {
            s.ctx.set_use_full(self, false);
        }
        let mut cur = Cand {
            score: s.ctx.score(self, ep),
            slot: ep,
        };
        for l in (level + 1..=top).rev() {
            cur = self.greedy(s, cur, l);
        }
        let admit = |n: u32| n != slot && self.meta[n as usize].state == SlotState::Live;
        for l in (0..=level.min(top)).rev() {
            self.search_layer(s, &[cur], self.params.ef_construction, l, &admit);
            if on_codes {
                self.rescore_found(s);
            }
            if let Some(&best) = s.found.first() {
                cur = best;
            }
            let pool = std::mem::take(&mut s.found);
            self.select(&pool, self.m_up, false, s);
            s.found = pool;
            self.set_own_links(slot, l, s);
            let picked = std::mem::take(&mut s.picked);
            for &n in &picked {
                self.add_link(n, slot, l, s);
            }
            s.picked = picked;
        }
        if level > top {
            let me = Graph::encode_entry(slot, level);
            let mut seen = self.entry.load(Ordering::Acquire);
            while seen == NO_ENTRY || (seen >> 32) < level as u64 {
                match self
                    .entry
                    .compare_exchange(seen, me, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(now) => seen = now,
                }
            }
        }
    }

    /// Write the links `slot` picked at `level` (in `s.picked`). A concurrent insert can
    /// already have linked itself from `slot` (it reached `slot` through an upper level
    /// before `slot` linked this one): those links are merged in, never overwritten, or
    /// the node that made them could lose its way in.
    fn set_own_links(&self, slot: u32, level: usize, s: &mut Scratch) {
        let _guard = self.locks[slot as usize].lock();
        self.read_links(slot, level, &mut s.links);
        if s.links.is_empty() {
            self.write_links(slot, level, &s.picked);
            return;
        }
        let mut candidates = std::mem::take(&mut s.links);
        candidates.extend(s.picked.iter().copied());
        candidates.sort_unstable();
        candidates.dedup();
        let picked = std::mem::take(&mut s.picked);
        if candidates.len() <= self.max_links(level) {
            self.write_links(slot, level, &candidates);
        } else {
            self.relink(slot, level, candidates.iter().copied(), false, s);
        }
        s.picked = picked;
        s.links = candidates;
    }

    /// The HNSW heuristic: walk `pool` (best first, scores relative to the base node) and
    /// keep a candidate only if it is closer to the base than to every one already kept,
    /// so that links spread in all directions. Leaves up to `m` slots in `s.picked`.
    pub(crate) fn select(&self, pool: &[Cand], m: usize, fill: bool, s: &mut Scratch) {
        s.picked.clear();
        if pool.len() <= m {
            s.picked.extend(pool.iter().map(|c| c.slot));
            return;
        }
        // A candidate without a full row is decoded when the walk reaches it (the walk
        // often stops long before the end of the pool), into `s.decode` behind the rows
        // of those kept; a pruned one's row is dropped again.
        s.decode.clear();
        let mut kept: Vec<(usize, Row)> = Vec::with_capacity(m);
        for (i, c) in pool.iter().enumerate() {
            if kept.len() >= m {
                break;
            }
            let row = self.row_of(c.slot, &mut s.decode);
            let v = self.row_slice(row, &s.decode);
            let c_sq = self.sq_norm(c.slot);
            let diverse = kept.iter().all(|&(j, kept_row)| {
                let kept_v = self.row_slice(kept_row, &s.decode);
                self.pair_score(v, c_sq, kept_v, self.sq_norm(pool[j].slot)) <= c.score
            });
            if diverse {
                kept.push((i, row));
            } else if let Row::Decoded(offset) = row {
                s.decode.truncate(offset);
            }
        }
        s.picked.extend(kept.iter().map(|&(i, _)| pool[i].slot));
        if fill {
            // Top up with the best of the pruned candidates.
            for c in pool {
                if s.picked.len() >= m {
                    break;
                }
                if !s.picked.contains(&c.slot) {
                    s.picked.push(c.slot);
                }
            }
        }
    }

    /// Where `slot`'s vector is: its full row, or its code decoded onto the end of
    /// `decode`.
    fn row_of(&self, slot: u32, decode: &mut Vec<f32>) -> Row {
        let full_row = self.meta[slot as usize].full_row;
        if full_row != super::graph::NONE {
            return Row::Full(full_row);
        }
        let offset = decode.len();
        self.decode_append(slot, decode);
        Row::Decoded(offset)
    }

    fn row_slice<'a>(&'a self, row: Row, decode: &'a [f32]) -> &'a [f32] {
        match row {
            Row::Full(r) => self.full.row(r),
            Row::Decoded(offset) => &decode[offset..offset + self.params.dim],
        }
    }

    /// Add `new` to the links of `node` at `level`, pruning them with the heuristic when
    /// full.
    fn add_link(&self, node: u32, new: u32, level: usize, s: &mut Scratch) {
        let _guard = self.locks[node as usize].lock();
        self.read_links(node, level, &mut s.links);
        if s.links.contains(&new) {
            return;
        }
        if s.links.len() < self.max_links(level) {
            s.links.push(new);
            self.write_links(node, level, &s.links);
            return;
        }
        let links = std::mem::take(&mut s.links);
        self.relink(node, level, links.iter().copied().chain([new]), false, s);
        s.links = links;
    }

    /// Rewrite `node`'s links at `level` from `candidates`, scored against `node`.
    fn relink(
        &self,
        node: u32,
        level: usize,
        candidates: impl Iterator<Item = u32>,
        fill: bool,
        s: &mut Scratch,
    ) {
        let mut base_buf = Vec::new();
        let base = self.vector(node, &mut base_buf);
        let base_sq = self.sq_norm(node);
        let mut pool = std::mem::take(&mut s.pool);
        pool.clear();
        let mut buf = Vec::new();
        for c in candidates {
            let score = self.pair_score(base, base_sq, self.vector(c, &mut buf), self.sq_norm(c));
            pool.push(Cand { score, slot: c });
        }
        pool.sort_unstable_by(|a, b| b.cmp(a));
        self.select(&pool, self.max_links(level), fill, s);
        self.write_links(node, level, &s.picked);
        s.pool = pool;
    }

    /// Reconnect every live node that links to a deleted one (to the deleted node's own
    /// neighbours, through the heuristic). Runs under a read lock (an upgradable one that
    /// keeps writers out: no node is removed meanwhile), alongside searches and the links
    /// still under way, taking each node's mutex as a link does: a search sees a list
    /// before or after its rewrite, and every slot in either is valid.
    pub(crate) fn repair_around_deleted(&self) {
        (0..self.slots() as u32)
            .into_par_iter()
            .filter(|&slot| self.meta[slot as usize].state == SlotState::Live)
            .for_each(|slot| {
                with_scratch(|s| {
                    for level in 0..=self.meta[slot as usize].level as usize {
                        self.repair(slot, level, s);
                    }
                })
            });
    }

    /// Free the deleted slots for reuse once `repair_around_deleted` has taken every
    /// link to them away, and give back the memory of freed vector rows. Runs under the
    /// write lock: the report is logged by the caller once it is released (a log record
    /// can need the GIL, which a Python thread may hold while it waits for this lock).
    pub(crate) fn release_deleted(
        &mut self,
        dropped: usize,
        started: std::time::Instant,
    ) -> CompactionReport {
        if dropped > 0 {
            for slot in 0..self.slots() as u32 {
                if self.meta[slot as usize].state == SlotState::Deleted {
                    self.release_vector(slot);
                    self.write_links(slot, 0, &[]);
                    self.links_up[slot as usize] = Box::new([]);
                    self.meta[slot as usize].state = SlotState::Free;
                    self.free_slots.push(slot);
                }
            }
            self.deleted = 0;
            self.replace_dead_entry();
        }
        self.repack_arenas();
        CompactionReport {
            dropped,
            live: self.live,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    fn repair(&self, slot: u32, level: usize, s: &mut Scratch) {
        // Links under way rewrite this list too (under the same mutex).
        let _guard = self.locks[slot as usize].lock();
        self.read_links(slot, level, &mut s.links);
        let live = |n: u32| self.meta[n as usize].state == SlotState::Live;
        if s.links.iter().all(|&n| live(n)) {
            return;
        }
        let links = std::mem::take(&mut s.links);
        let mut candidates: Vec<u32> = Vec::with_capacity(links.len() * 4);
        let mut second = Vec::new();
        for &n in &links {
            if live(n) {
                candidates.push(n);
            } else {
                self.read_links(n, level, &mut second);
                candidates.extend(second.iter().copied().filter(|&x| x != slot && live(x)));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.relink(slot, level, candidates.into_iter(), true, s);
        s.links = links;
    }
}

//! Graph traversal: the greedy descent through the upper levels, the beam search of one
//! level (with the filter applied during traversal, not after), and the exact scan.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::filter::Filter;
use super::graph::{prefetch, Graph, SlotState};
use super::query::QueryCtx;
use crate::quant::Precision;

/// Lines of a q8 block prefetched when a node is first reached, and how many nodes ahead
/// of its score the rest of its code is (`search_layer`). Measured at 384 dimensions on
/// the benchmark set: 2 and 2 were about a fifth faster than the whole code at once or
/// the first line alone, and at least as fast as the other mixes tried (the first line
/// with the rest 1 or 2 nodes ahead, the whole code 3 ahead).
const HEAD_LINES: usize = 2;
const TAIL_AHEAD: usize = 2;

/// A slot and its score for the current query; ordered by score, then slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cand {
    pub score: f32,
    pub slot: u32,
}

impl Eq for Cand {}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.slot.cmp(&self.slot))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Per-thread working memory of searches and inserts, reused so that a hot search does
/// not allocate.
#[derive(Default)]
pub(crate) struct Scratch {
    pub ctx: QueryCtx,
    // u16 stamps, as hnswlib: half the cache footprint of u32, reset every 65,535 searches.
    visited: Vec<u16>,
    stamp: u16,
    candidates: BinaryHeap<Cand>,
    results: BinaryHeap<Reverse<Cand>>,
    /// The result of the last [`search_layer`], best first.
    pub found: Vec<Cand>,
    pub links: Vec<u32>,
    fresh: Vec<u32>,
    pub decode: Vec<f32>,
    pub pool: Vec<Cand>,
    pub picked: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Run `f` with this thread's scratch space.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

impl Scratch {
    pub fn begin_visit(&mut self, slots: usize) {
        if self.visited.len() < slots {
            self.visited.resize(slots, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.fill(0);
            self.stamp = 1;
        }
    }
}

impl Graph {
    /// Follow improving links at `level` from `start` until none improves.
    pub(crate) fn greedy(&self, s: &mut Scratch, mut cur: Cand, level: usize) -> Cand {
        loop {
            let mut moved = false;
            self.read_links(cur.slot, level, &mut s.links);
            for &n in &s.links {
                let score = s.ctx.score(self, n);
                if score > cur.score {
                    cur = Cand { score, slot: n };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Beam search of one level with beam width `ef`, from `entries`. Every reached node
    /// is expanded, but only those `admit` accepts enter the results (and so bound the
    /// search): a filter keeps the beam open until it holds `ef` admitted nodes. Leaves
    /// the admitted nodes, best first, in `s.found`.
    pub(crate) fn search_layer(
        &self,
        s: &mut Scratch,
        entries: &[Cand],
        ef: usize,
        level: usize,
        admit: &dyn Fn(u32) -> bool,
    ) {
        s.begin_visit(self.slots());
        let Scratch {
            ctx,
            visited,
            stamp,
            candidates,
            results,
            links,
            fresh,
            ..
        } = s;
        let stamp = *stamp;
        candidates.clear();
        results.clear();
        for &e in entries {
            let cell = &mut visited[e.slot as usize];
            if *cell == stamp {
                continue;
            }
            *cell = stamp;
            candidates.push(e);
            if admit(e.slot) {
                results.push(Reverse(e));
            }
        }
        while let Some(c) = candidates.pop() {
            let worst = results.peek().map_or(f32::NEG_INFINITY, |r| r.0.score);
            if results.len() >= ef && c.score < worst {
                break;
            }
            self.read_links(c.slot, level, links);
            fresh.clear();
            // Where a slot's code is follows from its number alone (`q8_slots`, or rows
            // that are slots): nothing to look up before its lines are fetched.
            let direct = ctx.q8_slots || self.rows_are_slots;
            for &n in links.iter() {
                let cell = &mut visited[n as usize];
                if *cell != stamp {
                    *cell = stamp;
                    if ctx.q8_slots {
                        // The head of every new neighbour's code now, so that those
                        // misses overlap; the rest of each just ahead of its score
                        // below. All of it at once would fill the line-fill buffers and
                        // stall the prefetches themselves (measured: most of this loop's
                        // time at 384 dimensions, 7 lines a node).
                        self.level0.prefetch_code(n, 0, HEAD_LINES);
                    } else if !direct {
                        // The vector's address needs the slot's metadata: fetch all of
                        // those first, so their misses overlap instead of queueing.
                        prefetch(self.meta_ptr(n));
                    }
                    fresh.push(n);
                }
            }
            if !ctx.q8_slots {
                for &n in fresh.iter() {
                    prefetch(self.data_ptr(n, ctx.use_full()));
                }
            }
            if let Some(next) = candidates.peek() {
                prefetch(self.links_ptr(next.slot, level));
            }
            for (i, &n) in fresh.iter().enumerate() {
                if ctx.q8_slots {
                    if let Some(&ahead) = fresh.get(i + TAIL_AHEAD) {
                        self.level0.prefetch_code(ahead, HEAD_LINES, usize::MAX);
                    }
                }
                let score = ctx.score(self, n);
                let worst = results.peek().map_or(f32::NEG_INFINITY, |r| r.0.score);
                if results.len() < ef || score > worst {
                    let cand = Cand { score, slot: n };
                    candidates.push(cand);
                    if admit(n) {
                        results.push(Reverse(cand));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        s.found.clear();
        s.found.extend(s.results.drain().map(|r| r.0));
        s.found.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// The `k` best live nodes that `filter` allows, best first, as `(slot, score)`.
    /// `s.ctx` must be prepared for the query (with `use_full = false`).
    pub(crate) fn knn(
        &self,
        s: &mut Scratch,
        k: usize,
        ef: usize,
        rescore: bool,
        exact: bool,
        filter: Option<&dyn Filter>,
    ) -> Vec<Cand> {
        if self.live == 0 {
            return Vec::new();
        }
        let allowed = |slot: u32| {
            self.meta[slot as usize].state == SlotState::Live
                && filter.is_none_or(|f| f.allows(self.ids[slot as usize]))
        };
        // A very selective filter: scoring its ids beats walking a graph where almost
        // nothing is admitted.
        if let Some(ids) = filter.and_then(|f| f.ids()) {
            if ids.len() * 100 < self.live || ids.len() <= k {
                let slots = ids.iter().filter_map(|id| self.id_map.get(id).copied());
                return self.exact_top(s, slots.filter(|&sl| allowed(sl)), k);
            }
        }
        if exact {
            let slots = (0..self.slots() as u32).filter(|&sl| allowed(sl));
            return self.exact_top(s, slots, k);
        }
        let Some((ep, top)) = self.entry_point() else {
            return Vec::new();
        };
        let mut cur = Cand {
            score: s.ctx.score(self, ep),
            slot: ep,
        };
        for level in (1..=top).rev() {
            cur = self.greedy(s, cur, level);
        }
        // Without deleted nodes or a filter, every node a traversal reaches is live (no
        // link leads to a free slot): nothing to look up per visit.
        let admit_all = self.deleted == 0 && filter.is_none();
        let admit = |slot: u32| admit_all || allowed(slot);
        self.search_layer(s, &[cur], ef.max(k), 0, &admit);
        let codes_used = s.ctx.q8_slots
            || self.per_precision[Precision::Full as usize] < self.live + self.deleted;
        if rescore && codes_used {
            self.rescore(s, k);
        }
        s.found.truncate(k);
        std::mem::take(&mut s.found)
    }

    /// Rescore the best of `s.found` (best first by code score) with the full rows, and
    /// sort them again. Only the first [`rescore_depth`] candidates are rescored: q8 codes
    /// rank neighbours nearly as the full vectors do, so the exact top k is among the
    /// first few (measured: see there), and fetching full rows (often from a mapped
    /// file, a miss for every line) is most of a rescore's cost.
    fn rescore(&self, s: &mut Scratch, k: usize) {
        // Traversed on q8 codes (every node's, `q8_slots`), the candidates are ranked as
        // in a q8 index, whatever the nodes' own precisions.
        let coarse = !s.ctx.q8_slots
            && self.per_precision[Precision::Q4 as usize]
                + self.per_precision[Precision::Binary as usize]
                > 0;
        s.found.truncate(rescore_depth(k, coarse));
        self.rescore_found(s);
    }

    /// Score every candidate of `s.found` with the full rows (where kept) and sort them
    /// again, best first.
    pub(crate) fn rescore_found(&self, s: &mut Scratch) {
        s.ctx.set_use_full(self, true);
        for c in s.found.iter_mut() {
            c.score = s.ctx.score(self, c.slot);
        }
        s.ctx.set_use_full(self, false);
        s.found.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Score every slot of `slots` (at the best precision kept) and keep the top `k`.
    fn exact_top(&self, s: &mut Scratch, slots: impl Iterator<Item = u32>, k: usize) -> Vec<Cand> {
        s.ctx.set_use_full(self, true);
        let mut heap: BinaryHeap<Reverse<Cand>> = BinaryHeap::with_capacity(k + 1);
        for slot in slots {
            let score = s.ctx.score(self, slot);
            if heap.len() < k {
                heap.push(Reverse(Cand { score, slot }));
            } else if heap.peek().is_some_and(|w| score > w.0.score) {
                heap.pop();
                heap.push(Reverse(Cand { score, slot }));
            }
        }
        s.ctx.set_use_full(self, false);
        let mut out: Vec<Cand> = heap.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }
}

/// How many of a search's candidates (best first by code score) a rescore reads the full
/// rows of, for the top `k`. Every one of them when the index traverses on q4 or binary
/// codes (their error is of the order of the gaps between neighbours). With q8 codes,
/// `k + max(16, k/4)`: on the 384-dim benchmark set, rescoring the top 12 of any ef gave
/// the same recall@10 as rescoring all of them, at every ef from 16 to 96; and in the
/// engine benchmark's store (100,000 nodes, ef 100) `k + 2` already gave the recall@10
/// and @50 of rescoring all 100 candidates, at k = 10 and k = 50. The margin is larger
/// for small k, whose last places are the most fragile.
pub(crate) fn rescore_depth(k: usize, coarse_codes: bool) -> usize {
    if coarse_codes {
        usize::MAX
    } else {
        k + (k / 4).max(16)
    }
}

//! The HNSW index: incremental inserts and upserts, deletes with graph repair, filtered
//! search, and per-node precision in one graph.
//!
//! Locking: one `RwLock` around the graph. Writers (new slots, removal, the end of a
//! compaction, precision changes in chunks, load) hold it briefly; an `add` then
//! *downgrades* to a read lock to link its nodes, so searches run while nodes are being
//! linked (even once the next `add` waits for the write lock: see `reader`), and batch
//! links run on all cores. Link lists are atomics guarded by per-node mutexes (see
//! `graph.rs`). Compaction repairs links the same way, under an upgradable read lock, and
//! snapshots capture the index under the read lock behind a fence, then stream it a batch
//! per read lock, writers running in between (`snapshot.rs`). A caller that must not wait
//! for a writer at all (a server's event loop) uses `try_search_many`.
//! Nothing logs while holding the lock: the Python package forwards log records to
//! Python (pyo3-log), which needs the GIL, and Python threads hold the GIL while they
//! wait for this lock.

mod encode;
mod filter;
mod graph;
mod insert;
mod level0;
mod params;
mod persist;
mod precision;
mod query;
mod rescore;
mod search;
mod snapshot;

use parking_lot::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};
use rayon::prelude::*;

pub use filter::{Filter, IdHasher, IdSet};
pub(crate) use graph::normalize;
pub use graph::MemoryBreakdown;
pub use params::{Hit, Metric, Params, SearchOptions, Stats};
pub use rescore::{nearest_earlier, score_rows};

use crate::error::{Error, Result};
use crate::quant::{kernels::kernels, Precision};
use graph::Graph;
#[cfg(test)]
use graph::SlotState;
use search::{with_scratch, Scratch};
use snapshot::{LinkFence, SnapshotLog};

/// The index. `Send + Sync`: share it behind an `Arc` and call it from any thread.
pub struct Hnsw {
    graph: RwLock<Graph>,
    /// The dimension, fixed for the index's life: readable without the lock.
    dim: usize,
    /// The link passes under way, which a snapshot waits for (`snapshot.rs`).
    fence: LinkFence,
    /// The graph's, reachable without the lock: what a snapshot streaming without the
    /// lock needs of the writers, and what maintenance waits on (`snapshot.rs`).
    snapshot_log: std::sync::Arc<SnapshotLog>,
}

/// Tombstones beyond this share of the nodes trigger a compaction.
const COMPACT_SHARE: usize = 10;
const COMPACT_MIN: usize = 64;

impl Hnsw {
    pub fn new(params: Params) -> Result<Hnsw> {
        params.validate()?;
        log::debug!("SIMD kernels: {}", kernels().name);
        Ok(Hnsw::from_graph(Graph::new(params)))
    }

    /// The graph, shared. Readers *join* a held read lock even when a writer is waiting
    /// (`read_recursive`): an `add` links under a read lock for milliseconds, the next
    /// `add` waits for the write lock meanwhile, and parking_lot parks ordinary readers
    /// behind a waiting writer, so a search (on a server's event loop, often) would wait
    /// out the whole link. Every reader here is short, so the writer still gets its turn
    /// in the gap after them.
    fn reader(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read_recursive()
    }

    fn try_reader(&self) -> Option<RwLockReadGuard<'_, Graph>> {
        self.graph.try_read_recursive()
    }

    /// The vector dimension (no lock taken).
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> Params {
        self.reader().params
    }

    /// Change the settings that are not part of the graph: the default beam width of
    /// searches and the highest level of future inserts (a loaded index takes the
    /// configured values this way).
    pub fn tune(&self, ef_search: Option<usize>, max_level: Option<usize>) -> Result<()> {
        let mut g = self.graph.write();
        let params = Params {
            ef_search: ef_search.unwrap_or(g.params.ef_search),
            max_level: max_level.unwrap_or(g.params.max_level),
            ..g.params
        };
        params.validate()?;
        g.params = params;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.reader().live
    }

    /// `len()` if the lock can be had at once (else None: the caller may release what it
    /// holds, e.g. Python's GIL, before it waits). Likewise the other `try_` readers.
    pub fn try_len(&self) -> Option<usize> {
        self.try_reader().map(|g| g.live)
    }

    pub fn try_contains(&self, id: u64) -> Option<bool> {
        self.try_reader().map(|g| g.id_map.contains_key(&id))
    }

    pub fn try_params(&self) -> Option<Params> {
        self.try_reader().map(|g| g.params)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: u64) -> bool {
        self.reader().id_map.contains_key(&id)
    }

    /// Insert `ids[i]` with row `i` of `vectors` (row-major, `ids.len() × dim`). An id
    /// already present is replaced (upsert); within one call, the last row of an id wins.
    /// `precisions` holds none (all full), one (for all rows) or one per row.
    /// The links are built on `pool` (the global rayon pool when `None`).
    pub fn add(
        &self,
        ids: &[u64],
        vectors: &[f32],
        precisions: &[Precision],
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<()> {
        let dim = self.params().dim;
        check_rows("vectors", vectors, ids.len(), dim)?;
        if !(precisions.len() <= 1 || precisions.len() == ids.len()) {
            return Err(Error::invalid(format!(
                "precision must be one value or one per row: got {} for {} rows",
                precisions.len(),
                ids.len()
            )));
        }
        let precision_of = |i: usize| match precisions.len() {
            0 => Precision::Full,
            1 => precisions[0],
            _ => precisions[i],
        };
        // The last occurrence of an id wins.
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let mut order: Vec<usize> = (0..ids.len())
            .rev()
            .filter(|&i| seen.insert(ids[i]))
            .collect();
        order.reverse();

        let mut g = self.graph.write();
        let metric = g.params.metric;
        let mut row = vec![0.0f32; dim];
        let wanted: Vec<Precision> = order.iter().map(|&i| precision_of(i)).collect();
        g.reserve(order.len(), &wanted)?;
        let mut slots = Vec::with_capacity(order.len());
        for (&i, &p) in order.iter().zip(&wanted) {
            row.copy_from_slice(&vectors[i * dim..(i + 1) * dim]);
            if metric == Metric::Cosine {
                graph::normalize(&mut row);
            }
            if let Some(old) = g.id_map.get(&ids[i]).copied() {
                g.tombstone(old);
            }
            let level = g.random_level();
            let slot = g.alloc_slot(ids[i], &row, p, level);
            g.id_map.insert(ids[i], slot);
            slots.push(slot);
        }
        // Counted before the downgrade: a snapshot that gets the read lock next must see
        // these links as under way.
        let pass = self.fence.enter();
        let g = RwLockWriteGuard::downgrade(g);
        // Each node is a task of its own: a link costs a millisecond or more (an
        // ef_construction search), so even a batch of a few nodes is worth spreading over
        // every core. (Chunks of 8 left a server's batches of ~10 on one thread.)
        let link_all = || {
            slots
                .par_iter()
                .for_each(|&slot| with_scratch(|s| g.link(slot, s)))
        };
        match pool {
            _ if slots.len() == 1 => with_scratch(|s| g.link(slots[0], s)),
            Some(pool) => pool.install(link_all),
            None => link_all(),
        }
        drop(pass);
        drop(g);
        self.maybe_compact();
        Ok(())
    }

    /// Remove `ids`; ids not in the index are ignored. Returns how many were removed.
    /// Removed nodes are never returned again; their slots are reclaimed, and the links
    /// around them repaired, once they pass a tenth of the index.
    pub fn remove(&self, ids: &[u64]) -> usize {
        let mut removed = 0;
        {
            let mut g = self.graph.write();
            for id in ids {
                if let Some(slot) = g.id_map.remove(id) {
                    g.tombstone(slot);
                    removed += 1;
                }
            }
        }
        self.maybe_compact();
        removed
    }

    /// Repair the links around removed nodes and reuse their memory now (once the
    /// snapshot being written, if any, has been).
    pub fn compact(&self) {
        while !self.compact_if(|_| true) {
            self.snapshot_log.wait_ended();
        }
    }

    /// Compact if it is due, unless a snapshot is streaming: then the next `add` or
    /// `remove` after it does (a writer does not wait for a snapshot).
    fn maybe_compact(&self) {
        let due =
            |g: &Graph| g.deleted >= COMPACT_MIN && g.deleted * COMPACT_SHARE >= g.live + g.deleted;
        if due(&self.reader()) && !self.snapshot_log.is_active() {
            self.compact_if(due);
        }
    }

    /// Compact if `due` says so under the write lock. The repair of the links (most of
    /// the work: a heuristic relink of every node next to a removed one) runs under an
    /// upgradable read lock, so searches go on meanwhile; only the release of the removed
    /// slots takes the write lock. The upgradable lock keeps every writer out from the
    /// check to the release: no node is removed between the repair and the release (it
    /// would be freed unrepaired), and no node is added (new links point only to live
    /// nodes anyway; links already under way ended before the write lock was granted).
    ///
    /// A snapshot streaming meanwhile must find every slot and row it captured where it
    /// was: the release is put off while one streams (false: not done; the repair stands,
    /// and the next compaction finds less to do).
    fn compact_if(&self, due: impl Fn(&Graph) -> bool) -> bool {
        let started = std::time::Instant::now();
        let g = self.graph.write();
        if !due(&g) {
            return true;
        }
        if self.snapshot_log.is_active() {
            return false;
        }
        let pass = self.fence.enter();
        let g = RwLockWriteGuard::downgrade_to_upgradable(g);
        let dropped = g.deleted;
        if dropped > 0 {
            g.repair_around_deleted();
        }
        #[cfg(test)]
        snapshot::test_point("repaired");
        drop(pass);
        let mut g = RwLockUpgradableReadGuard::upgrade(g);
        // A snapshot may have captured the repaired graph between the repair and the
        // upgrade (the upgradable lock lets readers in).
        if self.snapshot_log.is_active() {
            return false;
        }
        let report = g.release_deleted(dropped, started);
        drop(g);
        report.log();
        true
    }

    /// The `k` nodes closest to `query`, best first, as `(id, score)`.
    pub fn search(
        &self,
        query: &[f32],
        opts: SearchOptions,
        filter: Option<&dyn Filter>,
    ) -> Result<Vec<Hit>> {
        let g = self.reader();
        check_search(&g, query, 1, &opts)?;
        Ok(with_scratch(|s| search_one(&g, s, query, &opts, filter)))
    }

    /// [`Hnsw::search`] for each row of `queries` (row-major), in parallel on `pool` (the
    /// global rayon pool when `None`).
    pub fn search_many(
        &self,
        queries: &[f32],
        opts: SearchOptions,
        filter: Option<&dyn Filter>,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<Vec<Hit>>> {
        search_many_in(&self.reader(), queries, opts, filter, pool)
    }

    /// [`Hnsw::search_many`] if the index is not held by a writer at this instant, else
    /// `Ok(None)` at once: for a caller that must never wait (a server's event loop,
    /// which can then hand the search to a thread that may wait).
    pub fn try_search_many(
        &self,
        queries: &[f32],
        opts: SearchOptions,
        filter: Option<&dyn Filter>,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Option<Vec<Vec<Hit>>>> {
        match self.try_reader() {
            Some(g) => search_many_in(&g, queries, opts, filter, pool).map(Some),
            None => Ok(None),
        }
    }

    /// Keep the full rows in a file mapped at `path` (created or truncated) instead of on
    /// the heap: an index that traverses on codes then keeps only its codes and links
    /// resident, and the kernel pages the rows (read to rescore the candidates, and by
    /// links) in and out. The file is scratch space: snapshots hold the rows themselves.
    pub fn map_full_rows(&self, path: &std::path::Path) -> Result<()> {
        self.graph.write().full.map_to_file(path)?;
        Ok(())
    }

    /// The stored vector of `id` (normalized for cosine; decoded when only a code is kept).
    pub fn get_vector(&self, id: u64) -> Option<Vec<f32>> {
        let g = self.reader();
        let slot = *g.id_map.get(&id)?;
        let mut buf = Vec::new();
        Some(g.vector(slot, &mut buf).to_vec())
    }

    /// The live neighbours of `id` in the graph at `level` (0: the densest level), or
    /// `None` if `id` is absent; empty above the node's own level.
    pub fn neighbors(&self, id: u64, level: usize) -> Option<Vec<u64>> {
        let g = self.reader();
        let slot = *g.id_map.get(&id)?;
        if level > g.meta[slot as usize].level as usize {
            return Some(Vec::new());
        }
        let mut links = Vec::new();
        g.read_links(slot, level, &mut links);
        Some(
            links
                .into_iter()
                .filter(|&n| g.meta[n as usize].state == graph::SlotState::Live)
                .map(|n| g.ids[n as usize])
                .collect(),
        )
    }

    /// The ids in the index, in no particular order.
    pub fn ids(&self) -> Vec<u64> {
        self.reader().id_map.keys().copied().collect()
    }

    pub fn memory_bytes(&self) -> usize {
        self.reader().memory_bytes().total()
    }

    pub fn stats(&self) -> Stats {
        let g = self.reader();
        Stats {
            len: g.live,
            deleted: g.deleted,
            slots: g.slots(),
            free_slots: g.free_slots.len(),
            top_level: g.entry_point().map_or(0, |(_, l)| l),
            per_precision: g.per_precision,
            memory: g.memory_bytes(),
            kernels: kernels().name,
            params: g.params,
        }
    }
}

fn search_many_in(
    g: &Graph,
    queries: &[f32],
    opts: SearchOptions,
    filter: Option<&dyn Filter>,
    pool: Option<&rayon::ThreadPool>,
) -> Result<Vec<Vec<Hit>>> {
    let dim = g.params.dim;
    let n = queries.len() / dim.max(1);
    check_search(g, queries, n, &opts)?;
    let run = || {
        queries
            .par_chunks(dim)
            .map(|q| with_scratch(|s| search_one(g, s, q, &opts, filter)))
            .collect()
    };
    Ok(match pool {
        _ if n <= 1 => queries
            .chunks(dim)
            .map(|q| with_scratch(|s| search_one(g, s, q, &opts, filter)))
            .collect(),
        Some(pool) => pool.install(run),
        None => run(),
    })
}

fn search_one(
    g: &Graph,
    s: &mut Scratch,
    query: &[f32],
    opts: &SearchOptions,
    filter: Option<&dyn Filter>,
) -> Vec<Hit> {
    s.ctx.prepare(g, query, false);
    let ef = opts.ef.unwrap_or(g.params.ef_search);
    g.knn(s, opts.k, ef, opts.rescore, opts.exact, filter)
        .into_iter()
        .map(|c| (g.ids[c.slot as usize], c.score))
        .collect()
}

fn check_rows(name: &str, values: &[f32], rows: usize, dim: usize) -> Result<()> {
    if values.len() != rows * dim {
        return Err(Error::invalid(format!(
            "{name} must have {rows} rows of dimension {dim} ({} values), got {} values",
            rows * dim,
            values.len()
        )));
    }
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{name} contains a non-finite value (NaN or infinity) at row {}, column {}",
            pos / dim,
            pos % dim
        )));
    }
    Ok(())
}

fn check_search(g: &Graph, queries: &[f32], rows: usize, opts: &SearchOptions) -> Result<()> {
    if opts.k < 1 {
        return Err(Error::invalid(format!(
            "k must be at least 1, got {}",
            opts.k
        )));
    }
    if opts.ef == Some(0) {
        return Err(Error::invalid("ef must be at least 1"));
    }
    check_rows("queries", queries, rows, g.params.dim)
}

impl Graph {
    /// Ids of live nodes are in the map; a slot is live iff it is mapped to.
    #[cfg(test)]
    fn check_invariants(&self) {
        let live = self
            .meta
            .iter()
            .filter(|m| m.state == SlotState::Live)
            .count();
        assert_eq!(live, self.live);
        assert_eq!(self.id_map.len(), self.live);
        for (&id, &slot) in &self.id_map {
            assert_eq!(self.ids[slot as usize], id);
            assert_eq!(self.meta[slot as usize].state, SlotState::Live);
        }
        // One level-0 block per slot; a q8 code region while (and only while, once the
        // arenas are repacked) q8 nodes are in the index, and each q8 node's code in its
        // own block.
        assert_eq!(self.level0.slots(), self.slots());
        if self.per_precision[Precision::Q8 as usize] > 0 {
            assert_eq!(
                self.level0.code_bytes(),
                Precision::Q8.code_bytes(self.params.dim)
            );
        }
        for (slot, m) in self.meta.iter().enumerate() {
            if m.state != SlotState::Free && m.precision == Precision::Q8 {
                assert_eq!(m.code_row, slot as u32);
            }
        }
        // With a code region, every node in use has a q8 code of what it holds there:
        // its own, or a traversal code of its full row or its decoded code.
        if self.level0.code_bytes() > 0 {
            let (mut code, mut buf) = (vec![0u8; self.level0.code_bytes()], Vec::new());
            for (slot, m) in self.meta.iter().enumerate() {
                let own_code = m.precision == Precision::Q8 && m.full_row == graph::NONE;
                if m.state == SlotState::Free || own_code {
                    continue;
                }
                let vector = self.vector(slot as u32, &mut buf);
                let p = crate::quant::encode(Precision::Q8, vector, &mut code);
                assert_eq!(self.level0.code(slot as u32), code, "slot {slot}");
                assert_eq!(self.level0.params(slot as u32), p, "slot {slot}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_level0;
#[cfg(test)]
mod tests_locks;
#[cfg(test)]
mod tests_mapped;
#[cfg(test)]
mod tests_snapshot;

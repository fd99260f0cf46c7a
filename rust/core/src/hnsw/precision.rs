//! Per-node precision: changing it in place (in chunks, so that readers get the lock
//! between them) and reading it.

use parking_lot::RwLockWriteGuard;

use super::{check_rows, graph, Hnsw, Metric};
use crate::error::{Error, Result};
use crate::quant::Precision;

/// Nodes re-encoded per hold of the write lock: a few milliseconds of work at most
/// (encoding a row and freeing the old one), after which waiting searches get their turn.
const CHUNK: usize = 2048;

impl Hnsw {
    /// Store `ids` at `precision` from now on, in place (their links stay). A node's
    /// vector comes from what the index holds (its full row, else its decoded code) or,
    /// given `vectors` (one row per id), from those: the way to raise a node whose full
    /// vector the index does not keep without losing what its code lost.
    ///
    /// Every id must be in the index when the call begins, else nothing changes and it
    /// is an error. The nodes then change in chunks, each under one hold of the write
    /// lock: a search between two chunks sees some of them changed. A node removed or
    /// replaced by another thread meanwhile is left alone (its slot is no longer the one
    /// the call found). A chunk waits for a snapshot file being written (which must find
    /// the vectors it captured where they were).
    pub fn set_precision(
        &self,
        ids: &[u64],
        precision: Precision,
        vectors: Option<&[f32]>,
    ) -> Result<()> {
        let dim = self.dim;
        if let Some(v) = vectors {
            check_rows("vectors", v, ids.len(), dim)?;
        }
        let slots = {
            let g = self.reader();
            ids.iter()
                .map(|id| {
                    g.id_map
                        .get(id)
                        .copied()
                        .ok_or_else(|| Error::invalid(format!("id {id} is not in the index")))
                })
                .collect::<Result<Vec<u32>>>()?
        };
        let mut buf = Vec::new();
        for (c, chunk) in ids.chunks(CHUNK).enumerate() {
            let mut g = self.writer_between_snapshots();
            let metric = g.params.metric;
            for (j, id) in chunk.iter().enumerate() {
                let i = c * CHUNK + j;
                let slot = slots[i];
                if g.id_map.get(id) != Some(&slot) {
                    continue;
                }
                // Without new vectors there is nothing to gain at the same precision.
                if vectors.is_none() && g.meta[slot as usize].precision == precision {
                    continue;
                }
                let vector = match vectors {
                    Some(v) => {
                        let mut row = v[i * dim..(i + 1) * dim].to_vec();
                        if metric == Metric::Cosine {
                            graph::normalize(&mut row);
                        }
                        row
                    }
                    None => g.vector(slot, &mut buf).to_vec(),
                };
                g.release_vector(slot);
                g.store_vector(slot, &vector, precision);
            }
            // Fair: the searches that queued during the chunk get the lock before the
            // next chunk does (an ordinary unlock lets this thread take it straight back).
            RwLockWriteGuard::unlock_fair(g);
        }
        self.writer_between_snapshots().repack_arenas();
        Ok(())
    }

    /// Keep full rows from now on (`keep_full`), with `vectors` (row-major) as the full
    /// rows of those of `ids` that have a code only: how an index saved without full rows
    /// gets them back (from the vectors its caller keeps). Ids absent, or with a full row
    /// already, are skipped. Returns how many rows were added.
    pub fn restore_full_rows(&self, ids: &[u64], vectors: &[f32]) -> Result<usize> {
        let dim = self.dim;
        check_rows("vectors", vectors, ids.len(), dim)?;
        let mut g = self.writer_between_snapshots();
        g.full.reserve(ids.len())?;
        g.params.keep_full = true;
        let cosine = g.params.metric == Metric::Cosine;
        let mut added = 0;
        for (i, id) in ids.iter().enumerate() {
            let Some(&slot) = g.id_map.get(id) else {
                continue;
            };
            let m = g.meta[slot as usize];
            if m.full_row != graph::NONE || m.precision == Precision::Full {
                continue;
            }
            let mut row = vectors[i * dim..(i + 1) * dim].to_vec();
            if cosine {
                graph::normalize(&mut row);
            }
            let r = g.full.alloc();
            g.full.row_mut(r).copy_from_slice(&row);
            let p = crate::quant::encode(Precision::Full, &row, &mut []);
            g.full.set_params(r, p);
            g.meta[slot as usize].full_row = r;
            added += 1;
        }
        Ok(added)
    }

    /// The precision of each of `ids` (None where absent), under one read lock.
    pub fn precisions_of(&self, ids: &[u64]) -> Vec<Option<Precision>> {
        let g = self.reader();
        ids.iter().map(|&id| g.precision_of(id)).collect()
    }

    pub fn precision_of(&self, id: u64) -> Option<Precision> {
        self.reader().precision_of(id)
    }

    /// `Some(precision_of(id))` if the lock can be had at once.
    pub fn try_precision_of(&self, id: u64) -> Option<Option<Precision>> {
        self.try_reader().map(|g| g.precision_of(id))
    }
}

//! Searches that see every committed node: the index's answer merged with the pending
//! nodes, scored exactly.

use std::cmp::Ordering;

use super::{Linker, PendingView, Row};
use crate::error::Result;
use crate::hnsw::{normalize, Filter, Hit, Metric, SearchOptions};
use crate::quant::kernels::kernels;

impl Row {
    /// `vector` as the index stores it: normalized for cosine, with `‖x‖²` summed as the
    /// index sums it.
    pub(crate) fn of(vector: &[f32], metric: Metric) -> Row {
        let mut values = vector.to_vec();
        if metric == Metric::Cosine {
            normalize(&mut values);
        }
        let sq_norm = values.iter().map(|v| v * v).sum();
        Row { values, sq_norm }
    }
}

impl Linker {
    /// The `opts.k` nodes closest to each row of `queries` (row-major), best first, the
    /// pending nodes included (scored exactly). `wait = false`: `Ok(None)` at once,
    /// rather than a wait, when a writer holds the index (`Hnsw::try_search_many`).
    pub fn search_many(
        &self,
        queries: &[f32],
        opts: SearchOptions,
        filter: Option<&dyn Filter>,
        wait: bool,
    ) -> Result<Option<Vec<Vec<Hit>>>> {
        // Before the index search: a node that stops being pending meanwhile is in the
        // index by then.
        let pending = self.shared.pending_view();
        let index = &self.shared.index;
        let found = if wait {
            index.search_many(queries, opts, filter, None)?
        } else {
            match index.try_search_many(queries, opts, filter, None)? {
                Some(found) => found,
                None => return Ok(None),
            }
        };
        if pending.ids.is_empty() {
            return Ok(Some(found));
        }
        let dim = index.dim();
        let metric = self.shared.metric;
        Ok(Some(
            found
                .into_iter()
                .zip(queries.chunks_exact(dim))
                .map(|(hits, query)| {
                    let near = pending.nearest(metric, query, opts.k, filter);
                    merge(hits, near, opts.k)
                })
                .collect(),
        ))
    }
}

impl PendingView {
    /// The `k` pending nodes closest to `query` that `filter` allows, with exact scores.
    fn nearest(
        &self,
        metric: Metric,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Filter>,
    ) -> Vec<Hit> {
        // As the index scores a full row (`hnsw/query.rs`), to the bit.
        let q = Row::of(query, metric);
        let dot = kernels().dot_f32;
        let mut hits: Vec<Hit> = self
            .ids
            .iter()
            .zip(&self.rows)
            .filter(|(&id, _)| filter.is_none_or(|f| f.allows(id)))
            .map(|(&id, row)| {
                let d = dot(&q.values, &row.values);
                let score = match metric {
                    Metric::Cosine | Metric::Ip => d,
                    Metric::L2 => 2.0 * d - row.sq_norm - q.sq_norm,
                };
                (id, score)
            })
            .collect();
        hits.sort_unstable_by(best_first);
        hits.truncate(k);
        hits
    }
}

fn best_first(a: &Hit, b: &Hit) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The best `k` of both, each id once. A node linked between the two reads is in both:
/// its pending score is exact, the index's may be scored on codes.
fn merge(index: Vec<Hit>, pending: Vec<Hit>, k: usize) -> Vec<Hit> {
    let mut all = pending;
    let seen: Vec<u64> = all.iter().map(|h| h.0).collect();
    all.extend(index.into_iter().filter(|h| !seen.contains(&h.0)));
    all.sort_unstable_by(best_first);
    all.truncate(k);
    all
}

//! The level-0 blocks in the index: q8 codes follow their slots through every change of
//! the graph, both ways of scoring a q8 node agree, and a rescore that reads only the
//! best candidates' full rows loses no recall.

use super::search::with_scratch;
use super::tests::{build, data};
use super::*;

/// Every live id's vector as the index holds it (decoded from its code when no full row
/// is kept).
fn vectors_of(index: &Hnsw, ids: &[u64]) -> Vec<Option<Vec<f32>>> {
    ids.iter().map(|&id| index.get_vector(id)).collect()
}

#[test]
fn q8_codes_follow_their_slots_through_churn_compaction_and_reloads() {
    let dim = 24;
    // Codes only: a vector read back is decoded from the block, byte for byte.
    let (index, vectors, ids) = build(900, dim, Metric::Cosine, Precision::Q8, false);
    let before = vectors_of(&index, &ids);
    let check = |index: &Hnsw, what: &str| {
        index.graph.read().check_invariants();
        let now = vectors_of(index, &ids[300..]);
        assert_eq!(
            now,
            before[300..],
            "{what}: an untouched node's code changed"
        );
    };
    // Removal, compaction (slots freed), then new nodes in the freed slots and past
    // them, one by one (the blocks grow and move) and in a batch.
    index.remove(&ids[..200]);
    index.compact();
    check(&index, "after a compaction");
    for (i, &id) in ids[..250].iter().enumerate() {
        let row = &vectors[i * dim..(i + 1) * dim];
        index
            .add(&[id + 1_000_000], row, &[Precision::Q8], None)
            .unwrap();
    }
    index
        .add(
            &ids[50..200],
            &vectors[50 * dim..200 * dim],
            &[Precision::Q8],
            None,
        )
        .unwrap();
    check(&index, "after re-adds");
    // Other precisions beside the blocks, some nodes back to q8, tombstones left in.
    index
        .set_precision(&ids[200..250], Precision::Q4, None)
        .unwrap();
    index
        .set_precision(&ids[250..300], Precision::Binary, None)
        .unwrap();
    index.remove(&ids[280..300]);
    check(&index, "with mixed precisions");
    let loaded = Hnsw::from_bytes(&index.to_bytes()).unwrap();
    check(&loaded, "after a reload");
    assert_eq!(loaded.to_bytes(), index.to_bytes());
    for q in data(20, dim, 9).chunks(dim) {
        let opts = SearchOptions::new(10);
        assert_eq!(
            index.search(q, opts, None).unwrap(),
            loaded.search(q, opts, None).unwrap()
        );
    }
}

#[test]
fn the_code_region_comes_and_goes_with_the_q8_nodes() {
    let dim = 16;
    let (index, vectors, ids) = build(400, dim, Metric::L2, Precision::Full, true);
    let region = |index: &Hnsw| index.graph.read().level0.code_bytes();
    let codes = |index: &Hnsw| index.stats().memory.codes;
    assert_eq!(
        region(&index),
        0,
        "a full-precision index pays nothing for codes"
    );
    assert_eq!(codes(&index), 0);
    index.set_precision(&ids[..5], Precision::Q8, None).unwrap();
    assert_eq!(region(&index), dim);
    assert!(codes(&index) > 0);
    index.graph.read().check_invariants();
    // Back to full: the blocks shrink to their links again, and stay searchable.
    index
        .set_precision(&ids[..5], Precision::Full, None)
        .unwrap();
    assert_eq!(region(&index), 0);
    assert_eq!(codes(&index), 0);
    for i in [0usize, 4, 399] {
        let q = &vectors[i * dim..(i + 1) * dim];
        let hit = index.search(q, SearchOptions::new(1), None).unwrap();
        assert_eq!(hit[0].0, ids[i]);
    }
    // Removing the last q8 nodes drops the region at the compaction that frees them.
    index.set_precision(&ids[..5], Precision::Q8, None).unwrap();
    index.remove(&ids[..5]);
    assert_eq!(
        region(&index),
        dim,
        "tombstones keep their codes until compaction"
    );
    index.compact();
    assert_eq!(region(&index), 0);
    index.graph.read().check_invariants();
}

#[test]
fn the_q8_fast_path_reads_each_slots_own_code_whatever_its_precision() {
    let dim = 40;
    for metric in [Metric::Cosine, Metric::Ip, Metric::L2] {
        let (index, vectors, ids) = build(300, dim, metric, Precision::Q8, true);
        // Nodes at every precision: the others have traversal codes in their blocks.
        index
            .set_precision(&ids[..40], Precision::Full, None)
            .unwrap();
        index
            .set_precision(&ids[40..60], Precision::Q4, None)
            .unwrap();
        index
            .set_precision(&ids[60..80], Precision::Binary, None)
            .unwrap();
        index.graph.read().check_invariants();
        let fast_path = |index: &Hnsw| {
            let g = index.graph.read();
            with_scratch(|s| {
                s.ctx.prepare(&g, &vectors[..dim], false);
                let codes = s.ctx.q8_slots;
                s.ctx.set_use_full(&g, true);
                assert!(!s.ctx.q8_slots, "rescoring reads full rows");
                codes
            })
        };
        assert!(fast_path(&index), "{metric:?}: every node has a q8 code");
        let g = index.graph.read();
        for q in data(5, dim, 3).chunks(dim) {
            with_scratch(|s| {
                s.ctx.prepare(&g, q, false);
                s.ctx.set_use_full(&g, true);
                let exact: Vec<f32> = (0..g.slots() as u32).map(|n| s.ctx.score(&g, n)).collect();
                s.ctx.set_use_full(&g, false);
                let q_norm = match metric {
                    Metric::Cosine => 1.0,
                    _ => q.iter().map(|v| v * v).sum::<f32>().sqrt(),
                };
                for (n, want) in exact.iter().enumerate() {
                    // The codes' error is a small share of the norms' product (all of
                    // the score for cosine); a code in another slot's block would be off
                    // by far more.
                    let got = s.ctx.score(&g, n as u32);
                    let x_norm = g.full.params(g.meta[n].full_row).sq_norm.sqrt();
                    let tolerance = match metric {
                        Metric::L2 => 0.02 * (q_norm + x_norm).powi(2),
                        _ => 0.02 * q_norm * x_norm,
                    };
                    assert!(
                        (got - want).abs() < tolerance,
                        "{metric:?} slot {n}: {got} vs {want}"
                    );
                }
            });
        }
        drop(g);
        // The last q8 node leaving ends the fast path (and the region).
        index
            .set_precision(&ids[80..], Precision::Full, None)
            .unwrap();
        assert!(!fast_path(&index), "{metric:?}: no code region is left");
    }
}

#[test]
fn rescoring_the_best_candidates_only_keeps_the_recall_of_rescoring_all() {
    // The depth is what makes a rescore cheap: check it against rescoring every
    // candidate, on clustered data where the codes' errors reorder close neighbours.
    let (dim, k, seed) = (64, 10, 11);
    println!("data seed {seed}");
    let vectors = data(3000, dim, seed);
    let ids: Vec<u64> = (0..3000).collect();
    let index = Hnsw::new(Params::new(dim)).unwrap();
    index.add(&ids, &vectors, &[Precision::Q8], None).unwrap();
    let (mut same, mut total) = (0, 0);
    for q in data(100, dim, seed + 1).chunks(dim) {
        for ef in [16, 48, 128] {
            let mut opts = SearchOptions::new(k);
            opts.ef = Some(ef);
            let got: Vec<u64> = index
                .search(q, opts, None)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            // Every candidate of the same traversal, rescored here.
            opts.k = ef;
            opts.rescore = false;
            let pool = index.search(q, opts, None).unwrap();
            let mut all: Vec<(f32, u64)> = pool
                .iter()
                .map(|h| {
                    let v = index.get_vector(h.0).unwrap();
                    let qn = {
                        let mut q = q.to_vec();
                        graph::normalize(&mut q);
                        q
                    };
                    (v.iter().zip(&qn).map(|(a, b)| a * b).sum::<f32>(), h.0)
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<u64> = all.iter().take(k).map(|s| s.1).collect();
            same += got.iter().filter(|id| want.contains(id)).count();
            total += k;
        }
    }
    assert_eq!(
        same, total,
        "the top {k} of a full rescore, {same} of {total} found"
    );
    assert!(search::rescore_depth(k, false) < 48);
    assert_eq!(search::rescore_depth(k, true), usize::MAX);
}

//! Unit tests of the index on small synthetic data (the recall tests on real embeddings
//! live in the Python suite).

use super::*;

/// Uniform numbers in (0, 1) from a xorshift generator, reproducible from `seed`.
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Clustered random vectors, reproducible from `seed`.
pub(super) fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut u = uniform(seed);
    let mut next = move || u() as f32 - 0.5;
    let centers: Vec<f32> = (0..16 * dim).map(|_| next() * 4.0).collect();
    (0..n)
        .flat_map(|i| {
            let c = (i * 7) % 16;
            (0..dim)
                .map(|d| centers[c * dim + d] + next())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn exact(
    vectors: &[f32],
    ids: &[u64],
    dim: usize,
    q: &[f32],
    k: usize,
    metric: Metric,
) -> Vec<u64> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, u64)> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let v = &vectors[i * dim..(i + 1) * dim];
            let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            let score = match metric {
                Metric::Ip => dot,
                Metric::Cosine => dot / (norm(v) * norm(q)),
                Metric::L2 => -v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
            };
            (score, id)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|s| s.1).collect()
}

fn recall(
    index: &Hnsw,
    vectors: &[f32],
    ids: &[u64],
    queries: &[f32],
    dim: usize,
    opts: SearchOptions,
) -> f64 {
    let metric = index.params().metric;
    let mut hits = 0;
    let nq = queries.len() / dim;
    for q in queries.chunks(dim) {
        let want = exact(vectors, ids, dim, q, opts.k, metric);
        let got = index.search(q, opts, None).unwrap();
        hits += got.iter().filter(|h| want.contains(&h.0)).count();
    }
    hits as f64 / (nq * opts.k) as f64
}

pub(super) fn build(
    n: usize,
    dim: usize,
    metric: Metric,
    precision: Precision,
    keep_full: bool,
) -> (Hnsw, Vec<f32>, Vec<u64>) {
    let vectors = data(n, dim, 1);
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
    let mut params = Params::new(dim);
    params.metric = metric;
    params.keep_full = keep_full;
    let index = Hnsw::new(params).unwrap();
    index.add(&ids, &vectors, &[precision], None).unwrap();
    (index, vectors, ids)
}

#[test]
fn recall_is_high_for_every_metric() {
    let dim = 24;
    let queries = data(50, dim, 99);
    // Inner product is not a metric: vectors of large norm dominate every query, and a
    // graph search needs a wider beam for the same recall (hnswlib behaves alike).
    let cases = [
        (Metric::Cosine, 100, 0.95),
        (Metric::L2, 100, 0.95),
        (Metric::Ip, 400, 0.8),
    ];
    for (metric, ef, floor) in cases {
        let (index, vectors, ids) = build(2000, dim, metric, Precision::Full, true);
        let mut opts = SearchOptions::new(10);
        opts.ef = Some(ef);
        let r = recall(&index, &vectors, &ids, &queries, dim, opts);
        assert!(r >= floor, "{metric:?}: recall@10 {r} at ef {ef}");
        index.graph.read().check_invariants();
    }
}

#[test]
fn codes_with_rescoring_keep_recall() {
    let dim = 32;
    let queries = data(50, dim, 5);
    for (p, floor) in [
        (Precision::Q8, 0.95),
        (Precision::Q4, 0.9),
        (Precision::Binary, 0.8),
    ] {
        let (index, vectors, ids) = build(2000, dim, Metric::Cosine, p, true);
        let mut opts = SearchOptions::new(10);
        opts.ef = Some(200);
        let r = recall(&index, &vectors, &ids, &queries, dim, opts);
        assert!(r >= floor, "{p:?}: recall@10 {r}");
    }
    // Every precision in one index: traversed on the q8 codes of all (traversal codes),
    // each candidate rescored with its full row.
    let vectors = data(2000, dim, 1);
    let ids: Vec<u64> = (0..2000).collect();
    let order = [
        Precision::Full,
        Precision::Q8,
        Precision::Q4,
        Precision::Binary,
    ];
    let precisions: Vec<Precision> = (0..2000).map(|i| order[i % 4]).collect();
    let index = Hnsw::new(Params::new(dim)).unwrap();
    index.add(&ids, &vectors, &precisions, None).unwrap();
    for ef in [50, 200] {
        let mut opts = SearchOptions::new(10);
        opts.ef = Some(ef);
        let r = recall(&index, &vectors, &ids, &queries, dim, opts);
        assert!(r >= 0.95, "mixed precisions, ef {ef}: recall@10 {r}");
    }
}

#[test]
fn codes_only_use_less_memory() {
    let (full, ..) = build(1000, 64, Metric::Cosine, Precision::Full, true);
    let (q8, ..) = build(1000, 64, Metric::Cosine, Precision::Q8, false);
    let (bin, ..) = build(1000, 64, Metric::Cosine, Precision::Binary, false);
    assert!(
        q8.memory_bytes() < full.memory_bytes() * 6 / 10,
        "{} vs {}",
        q8.memory_bytes(),
        full.memory_bytes()
    );
    assert!(bin.memory_bytes() < q8.memory_bytes());
}

#[test]
fn upsert_replaces_the_vector() {
    let dim = 8;
    let index = Hnsw::new(Params::new(dim)).unwrap();
    let a = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let b = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    index.add(&[7, 8], &[a, b].concat(), &[], None).unwrap();
    index.add(&[7], &b, &[], None).unwrap();
    assert_eq!(index.len(), 2);
    assert_eq!(index.get_vector(7).unwrap(), b.to_vec());
    let hits = index.search(&b, SearchOptions::new(2), None).unwrap();
    assert!(hits.iter().all(|h| (h.1 - 1.0).abs() < 1e-6), "{hits:?}");
}

#[test]
fn removed_ids_never_come_back_and_slots_are_reused() {
    let dim = 16;
    let (index, vectors, ids) = build(1500, dim, Metric::L2, Precision::Full, true);
    let removed: Vec<u64> = ids.iter().copied().step_by(3).collect();
    assert_eq!(index.remove(&removed), removed.len());
    assert_eq!(index.remove(&removed), 0);
    let slots_before = index.stats().slots;
    assert_eq!(
        index.stats().deleted,
        0,
        "a third removed triggers compaction"
    );
    index.graph.read().check_invariants();
    for q in data(30, dim, 3).chunks(dim) {
        let hits = index.search(q, SearchOptions::new(20), None).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(hits.iter().all(|h| !removed.contains(&h.0)));
    }
    // The kept nodes are still found well.
    let kept: Vec<usize> = (0..ids.len()).filter(|i| i % 3 != 0).collect();
    let kept_ids: Vec<u64> = kept.iter().map(|&i| ids[i]).collect();
    let kept_vecs: Vec<f32> = kept
        .iter()
        .flat_map(|&i| vectors[i * dim..(i + 1) * dim].to_vec())
        .collect();
    let r = recall(
        &index,
        &kept_vecs,
        &kept_ids,
        &data(50, dim, 8),
        dim,
        SearchOptions::new(10),
    );
    assert!(r >= 0.95, "recall after removal {r}");
    // New inserts reuse the freed slots.
    index
        .add(&removed, &data(removed.len(), dim, 4), &[], None)
        .unwrap();
    assert_eq!(index.stats().slots, slots_before);
    assert_eq!(index.len(), ids.len());
}

#[test]
fn neighbours_are_live_ids_near_the_node() {
    let dim = 16;
    let (index, vectors, ids) = build(500, dim, Metric::Cosine, Precision::Full, true);
    let near = index.neighbors(ids[0], 0).unwrap();
    assert!(!near.is_empty() && near.len() <= 32 && !near.contains(&ids[0]));
    let top = index
        .search(&vectors[..dim], SearchOptions::new(5), None)
        .unwrap();
    assert!(
        top[1..].iter().any(|h| near.contains(&h.0)),
        "{near:?} vs {top:?}"
    );
    index.remove(&near[..1]);
    assert!(!index.neighbors(ids[0], 0).unwrap().contains(&near[0]));
    assert_eq!(index.neighbors(9_999_999, 0), None);
    assert_eq!(index.neighbors(ids[0], 15), Some(Vec::new()));
}

#[test]
fn filters_apply_during_traversal() {
    let dim = 16;
    let (index, vectors, ids) = build(3000, dim, Metric::Cosine, Precision::Full, true);
    let allowed: Vec<u64> = ids.iter().copied().filter(|id| id % 10 == 1).collect();
    let set = IdSet::new(allowed.iter().copied());
    let sub: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] % 10 == 1).collect();
    let sub_vecs: Vec<f32> = sub
        .iter()
        .flat_map(|&i| vectors[i * dim..(i + 1) * dim].to_vec())
        .collect();
    let mut hits = 0;
    let queries = data(40, dim, 11);
    for q in queries.chunks(dim) {
        let want = exact(&sub_vecs, &allowed, dim, q, 10, Metric::Cosine);
        let got = index.search(q, SearchOptions::new(10), Some(&set)).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|h| allowed.contains(&h.0)));
        hits += got.iter().filter(|h| want.contains(&h.0)).count();
    }
    let r = hits as f64 / 400.0;
    assert!(r >= 0.95, "filtered recall {r}");
    // A tiny filter is answered by an exact scan.
    let tiny = IdSet::new([ids[5], ids[17]]);
    let got = index
        .search(&queries[..dim], SearchOptions::new(10), Some(&tiny))
        .unwrap();
    assert_eq!(got.len(), 2);
    // A closure is a filter too.
    let odd = |id: u64| id % 2 == 1;
    let got = index
        .search(&queries[..dim], SearchOptions::new(5), Some(&odd))
        .unwrap();
    assert!(got.iter().all(|h| h.0 % 2 == 1));
}

#[test]
fn precision_changes_in_place() {
    let (index, _, ids) = build(500, 64, Metric::Cosine, Precision::Full, false);
    let full_mem = index.memory_bytes();
    index.set_precision(&ids, Precision::Binary, None).unwrap();
    assert_eq!(index.precision_of(ids[0]), Some(Precision::Binary));
    assert_eq!(index.stats().per_precision, [0, 0, 0, 500]);
    assert!(index
        .set_precision(&[123_456_789], Precision::Q8, None)
        .is_err());
    let v = index.get_vector(ids[3]).unwrap();
    let hits = index.search(&v, SearchOptions::new(1), None).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(
        index.memory_bytes() * 10 < full_mem * 6,
        "{} vs {full_mem}",
        index.memory_bytes()
    );
    index.graph.read().check_invariants();
    // Raising precision again works from what is kept (the binary code).
    index
        .set_precision(&ids[..10], Precision::Q8, None)
        .unwrap();
    assert_eq!(index.precision_of(ids[0]), Some(Precision::Q8));
}

#[test]
fn save_and_load_answer_identically() {
    let dim = 12;
    let (index, _, ids) = build(800, dim, Metric::L2, Precision::Q8, true);
    index.remove(&ids[..10]);
    let bytes = index.to_bytes();
    let loaded = Hnsw::from_bytes(&bytes).unwrap();
    assert_eq!(loaded.len(), index.len());
    for q in data(20, dim, 21).chunks(dim) {
        assert_eq!(
            index.search(q, SearchOptions::new(10), None).unwrap(),
            loaded.search(q, SearchOptions::new(10), None).unwrap()
        );
    }
    assert_eq!(loaded.to_bytes(), bytes);
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let (index, ..) = build(300, 8, Metric::Cosine, Precision::Q4, true);
    let bytes = index.to_bytes();
    for cut in [0, 5, 12, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(Hnsw::from_bytes(&bytes[..cut]), Err(Error::Corrupt(_))),
            "cut at {cut}"
        );
    }
    for pos in [9, 40, bytes.len() / 3, bytes.len() - 2] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x40;
        assert!(
            matches!(Hnsw::from_bytes(&bad), Err(Error::Corrupt(_))),
            "flip at {pos}"
        );
    }
}

#[test]
fn bad_input_is_an_error() {
    let index = Hnsw::new(Params::new(4)).unwrap();
    assert!(index.add(&[1], &[0.0; 3], &[], None).is_err());
    assert!(index
        .add(&[1], &[0.0, f32::NAN, 0.0, 0.0], &[], None)
        .is_err());
    assert!(index
        .add(&[1, 2], &[0.0; 8], &[Precision::Q8; 3], None)
        .is_err());
    assert!(index
        .search(&[0.0; 4], SearchOptions::new(0), None)
        .is_err());
    assert!(index
        .search(&[0.0; 5], SearchOptions::new(1), None)
        .is_err());
    assert!(index
        .search(&[0.0; 4], SearchOptions::new(3), None)
        .unwrap()
        .is_empty());
    assert!(Hnsw::new(Params::new(0)).is_err());
    assert!(Metric::parse("manhattan").is_err());
    assert!(Precision::parse("q2").is_err());
}

#[test]
fn concurrent_adds_and_searches_are_safe() {
    let dim = 16;
    let index = std::sync::Arc::new(Hnsw::new(Params::new(dim)).unwrap());
    let vectors = data(2000, dim, 2);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let index = index.clone();
            let vectors = &vectors;
            scope.spawn(move || {
                for chunk in 0..10u64 {
                    let start = (t * 500 + chunk * 50) as usize;
                    let ids: Vec<u64> = (start as u64..start as u64 + 50).collect();
                    index
                        .add(&ids, &vectors[start * dim..(start + 50) * dim], &[], None)
                        .unwrap();
                    let hits = index
                        .search(
                            &vectors[start * dim..(start + 1) * dim],
                            SearchOptions::new(5),
                            None,
                        )
                        .unwrap();
                    assert!(!hits.is_empty());
                }
            });
        }
    });
    assert_eq!(index.len(), 2000);
    index.graph.read().check_invariants();
}

#[test]
fn searches_do_not_queue_behind_an_add_that_waits_for_a_link() {
    let (index, vectors, _) = build(200, 8, Metric::Cosine, Precision::Full, true);
    // The read lock an `add` links its nodes under.
    let linking = index.graph.read();
    std::thread::scope(|scope| {
        // The next `add` waits for the write lock until that link ends.
        let next_add = scope.spawn(|| index.add(&[100_000], &vectors[..8], &[], None));
        while !index.graph.is_locked_exclusive() {
            std::thread::yield_now();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (index, vectors) = (&index, &vectors);
        scope.spawn(move || {
            let hits = index.search(&vectors[8..16], SearchOptions::new(5), None);
            let _ = tx.send(hits.map(|h| h.len()));
        });
        // A liveness check, not a timing one: the search never ends while `linking` is
        // held if readers queue behind the waiting writer.
        let answered = rx.recv_timeout(std::time::Duration::from_secs(20));
        drop(linking);
        next_add.join().unwrap().unwrap();
        let hits = answered.expect("the search waited for the link behind the queued add");
        assert_eq!(hits.ok(), Some(5));
    });
}

#[test]
fn snapshots_taken_during_adds_hold_only_fully_linked_nodes() {
    let dim = 16;
    let index = std::sync::Arc::new(Hnsw::new(Params::new(dim)).unwrap());
    let vectors = data(3000, dim, 12);
    let mut snapshots = Vec::new();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let (index, vectors) = (index.clone(), &vectors);
            scope.spawn(move || {
                for i in (t as usize..3000).step_by(2) {
                    index
                        .add(&[i as u64], &vectors[i * dim..(i + 1) * dim], &[], None)
                        .unwrap();
                }
            });
        }
        for _ in 0..20 {
            snapshots.push(index.to_bytes());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    for bytes in snapshots {
        assert_every_node_reachable(&Hnsw::from_bytes(&bytes).unwrap());
    }
}

/// Every node of `index` (a loaded snapshot) is what a search for its own vector finds.
pub(crate) fn assert_every_node_reachable(index: &Hnsw) {
    for id in index.ids() {
        let v = index.get_vector(id).unwrap();
        let mut opts = SearchOptions::new(1);
        opts.ef = Some(64);
        let hit = index.search(&v, opts, None).unwrap();
        assert_eq!(hit[0].0, id, "node {id} of a snapshot is not reachable");
    }
}

/// Gaussian vectors: every pair about equally far apart, the hardest case for links.
fn gaussian(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut u = uniform(seed.wrapping_add(7919));
    (0..n * dim)
        .map(|_| {
            let (a, b) = (u(), u());
            ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        })
        .collect()
}

#[test]
fn parallel_builds_leave_no_node_unreachable() {
    let dim = 32;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for trial in 0..30u64 {
        println!("trial seed {trial}");
        let vectors = gaussian(151, dim, trial);
        let index = Hnsw::new(Params::new(dim)).unwrap();
        let ids: Vec<u64> = (0..151).collect();
        index.add(&ids, &vectors, &[], Some(&pool)).unwrap();
        let g = index.graph.read();
        let (entry, _) = g.entry_point().unwrap();
        let mut seen = vec![false; g.slots()];
        let (mut stack, mut links) = (vec![entry], Vec::new());
        seen[entry as usize] = true;
        while let Some(s) = stack.pop() {
            for level in 0..=g.meta[s as usize].level as usize {
                g.read_links(s, level, &mut links);
                for &n in &links {
                    if !std::mem::replace(&mut seen[n as usize], true) {
                        stack.push(n);
                    }
                }
            }
        }
        let unreachable: Vec<usize> = (0..g.slots()).filter(|&s| !seen[s]).collect();
        assert!(
            unreachable.is_empty(),
            "trial {trial}: unreachable slots {unreachable:?}"
        );
    }
}

#[test]
fn the_direct_row_fast_path_holds_through_churn_and_precision_changes() {
    let dim = 16;
    let (index, vectors, ids) = build(1000, dim, Metric::L2, Precision::Full, true);
    assert!(index.graph.read().rows_are_slots);
    index.remove(&ids[..300]);
    index
        .add(&ids[..300], &vectors[..300 * dim], &[], None)
        .unwrap();
    assert!(
        index.graph.read().rows_are_slots,
        "reused slots get their own rows back"
    );
    index
        .set_precision(&ids[..10], Precision::Q8, None)
        .unwrap();
    assert!(!index.graph.read().rows_are_slots);
    index
        .set_precision(&ids[..10], Precision::Full, None)
        .unwrap();
    assert!(index.graph.read().rows_are_slots);
    let loaded = Hnsw::from_bytes(&index.to_bytes()).unwrap();
    assert!(loaded.graph.read().rows_are_slots);
    for i in [0usize, 299, 300, 999] {
        let hit = loaded
            .search(
                &vectors[i * dim..(i + 1) * dim],
                SearchOptions::new(1),
                None,
            )
            .unwrap();
        assert_eq!(hit[0].0, ids[i]);
        assert!(
            hit[0].1.abs() < 1e-3,
            "l2 score of the vector itself is 0, got {}",
            hit[0].1
        );
    }
}

#[test]
fn max_level_caps_new_nodes_and_can_be_tuned_after_a_load() {
    let dim = 8;
    let n = 2_000;
    let mut params = Params::new(dim);
    params.m = 2; // a small m makes high levels common
    params.max_level = 1;
    let index = Hnsw::new(params).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    index.add(&ids, &data(n, dim, 3), &[], None).unwrap();
    assert!(index.stats().top_level <= 1);

    let loaded = Hnsw::from_bytes(&index.to_bytes()).unwrap();
    assert_eq!(loaded.params().max_level, graph::MAX_LEVEL); // not saved: an insert setting
    loaded.tune(Some(77), Some(0)).unwrap();
    assert_eq!(
        (loaded.params().ef_search, loaded.params().max_level),
        (77, 0)
    );
    assert!(loaded.tune(None, Some(graph::MAX_LEVEL + 1)).is_err());
    assert!(loaded.tune(Some(0), None).is_err());

    let mut uncapped = Params::new(dim);
    uncapped.m = 2;
    let index = Hnsw::new(uncapped).unwrap();
    index.add(&ids, &data(n, dim, 3), &[], None).unwrap();
    assert!(
        index.stats().top_level > 1,
        "the cap must be what kept levels low"
    );
}

#[test]
fn nodes_added_after_the_entry_point_is_deleted_stay_reachable() {
    // The first node is the entry point; deleted before any other arrives, it has no
    // neighbours, and nodes linked later never link to it: a search starting there would
    // find nothing. Level 0 only (max_level 0), so no later node takes over as entry.
    let dim = 8;
    let n = 200;
    let vectors = data(n, dim, 11);
    let mut params = Params::new(dim);
    params.max_level = 0;
    let index = Hnsw::new(params).unwrap();
    index.add(&[0], &vectors[..dim], &[], None).unwrap();
    index.remove(&[0]);
    for i in 1..n {
        index
            .add(&[i as u64], &vectors[i * dim..(i + 1) * dim], &[], None)
            .unwrap();
    }
    for i in [1usize, 50, 199] {
        let found = index
            .search(
                &vectors[i * dim..(i + 1) * dim],
                SearchOptions::new(1),
                None,
            )
            .unwrap();
        assert_eq!(found.first().map(|r| r.0), Some(i as u64));
    }
}

#[test]
fn raising_a_code_only_node_from_given_vectors_restores_exact_scores() {
    let dim = 16;
    let n = 300;
    let vectors = data(n, dim, 5);
    let mut params = Params::new(dim);
    params.keep_full = false;
    let index = Hnsw::new(params).unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    index
        .add(&ids, &vectors, &[Precision::Binary], None)
        .unwrap();
    let q = &vectors[7 * dim..8 * dim];
    let opts = SearchOptions::new(1);
    let coarse = index.search(q, opts, None).unwrap()[0];
    assert!(
        coarse.1 < 0.999,
        "a binary code does not score its own vector exactly"
    );

    // From the code alone, "full" only keeps what the code kept ...
    index.set_precision(&[7], Precision::Full, None).unwrap();
    let decoded = index.search(q, opts, None).unwrap()[0];
    assert!(decoded.1 < 0.999);
    // ... from the vector, the node is exact again, and still linked where it was.
    index
        .set_precision(&[7], Precision::Full, Some(&vectors[7 * dim..8 * dim]))
        .unwrap();
    let exact = index.search(q, opts, None).unwrap()[0];
    assert_eq!(exact.0, 7);
    assert!((exact.1 - 1.0).abs() < 1e-5, "{}", exact.1);
    assert_eq!(index.stats().deleted, 0, "in place: nothing re-inserted");
    assert!(index
        .set_precision(&[7], Precision::Q8, Some(&vectors[..dim - 1]))
        .is_err());
}

#[test]
fn one_node_adds_grow_the_arrays_amortized() {
    // A server adds one node per allocation: if every add reallocated exactly, each
    // would copy every array (quadratic work; it was most of an insert at 6,000 nodes).
    let dim = 8;
    let index = Hnsw::new(Params::new(dim)).unwrap();
    let vectors = data(2000, dim, 5);
    let arrays = ["ids", "level0", "full"];
    let pointers = |g: &Graph| {
        [
            g.ids.as_ptr() as usize,
            g.level0.as_ptr() as usize,
            g.full.raw().0.as_ptr() as usize,
        ]
    };
    let mut moves = [0usize; 3];
    let mut before = pointers(&index.graph.read());
    for (i, row) in vectors.chunks_exact(dim).enumerate() {
        let precision = [Precision::Full, Precision::Q8][i % 2];
        index.add(&[i as u64 + 1], row, &[precision], None).unwrap();
        let now = pointers(&index.graph.read());
        for (m, (a, b)) in moves.iter_mut().zip(now.iter().zip(&before)) {
            *m += usize::from(a != b);
        }
        before = now;
    }
    for (what, moves) in arrays.into_iter().zip(moves) {
        assert!(moves <= 40, "{what} moved {moves} times in 2,000 adds");
    }
}

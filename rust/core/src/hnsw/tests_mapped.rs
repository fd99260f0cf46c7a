//! Full rows in a mapped file: the same answers as on the heap, through growth, deletes,
//! compaction and snapshots, with the heap holding only codes and links.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "llmkg-mapped-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n * dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn index(dim: usize) -> Hnsw {
    let mut params = Params::new(dim);
    params.keep_full = true;
    Hnsw::new(params).unwrap()
}

fn answers(index: &Hnsw, queries: &[f32]) -> Vec<Vec<Hit>> {
    index
        .search_many(queries, SearchOptions::new(10), None, None)
        .unwrap()
}

#[test]
fn mapped_rows_give_the_heap_answers_through_growth_deletes_and_snapshots() {
    // On one thread: links and repairs made concurrently depend on the interleaving, and
    // the two indexes compared here must be built alike.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one.install(mapped_rows_give_the_heap_answers);
}

fn mapped_rows_give_the_heap_answers() {
    let dim = 24;
    let path = scratch("rows.f32");
    let (heap, mapped) = (index(dim), index(dim));
    let first = vectors(50, dim, 1);
    let ids: Vec<u64> = (0..50).collect();
    for ix in [&heap, &mapped] {
        ix.add(&ids, &first, &[Precision::Q8], None).unwrap();
    }
    mapped.map_full_rows(&path).unwrap();
    // Grows the file many times over.
    let more = vectors(2000, dim, 2);
    let more_ids: Vec<u64> = (50..2050).collect();
    for ix in [&heap, &mapped] {
        ix.add(&more_ids, &more, &[Precision::Q8], None).unwrap();
    }
    let queries = vectors(20, dim, 3);
    assert_eq!(answers(&heap, &queries), answers(&mapped, &queries));
    let stats = mapped.stats();
    assert!(stats.memory.mapped_vectors >= 2050 * dim * 4);
    assert!(
        stats.memory.full_vectors * 4 < heap.stats().memory.full_vectors,
        "the rows left the heap (their parameters stay): {:?}",
        stats.memory
    );
    assert!(std::fs::metadata(&path).unwrap().len() as usize >= 2050 * dim * 4);

    // Deletes, then a compaction that repacks the rows within the file.
    let gone: Vec<u64> = (0..2050).filter(|i| i % 3 == 0).collect();
    for ix in [&heap, &mapped] {
        ix.remove(&gone);
        ix.compact();
    }
    assert_eq!(answers(&heap, &queries), answers(&mapped, &queries));

    // A snapshot holds the rows themselves: it loads without the file.
    let loaded = Hnsw::from_bytes(&mapped.to_bytes()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(answers(&heap, &queries), answers(&loaded, &queries));
    drop(mapped);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn mapping_a_file_that_cannot_be_created_is_an_error() {
    let ix = index(8);
    ix.add(&[1], &[0.5; 8], &[], None).unwrap();
    let missing = scratch("x").with_file_name("no-such-dir").join("rows.f32");
    assert!(ix.map_full_rows(&missing).is_err());
    assert_eq!(
        answers(&ix, &[0.5; 8])[0][0].0,
        1,
        "the rows stay on the heap"
    );
}

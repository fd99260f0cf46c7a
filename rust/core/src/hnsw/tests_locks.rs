//! What may run while the index does long work: searches during a snapshot and during a
//! compaction's repair, and the non-blocking search that gives way to a writer.

use std::sync::Arc;

use super::snapshot::TEST_POINT;
use super::*;

fn index(n: usize, dim: usize) -> Arc<Hnsw> {
    let index = Hnsw::new(Params::new(dim)).unwrap();
    let vectors: Vec<f32> = (0..n * dim)
        .map(|i| ((i * 37) % 101) as f32 - 50.0)
        .collect();
    let ids: Vec<u64> = (0..n as u64).collect();
    index.add(&ids, &vectors, &[], None).unwrap();
    Arc::new(index)
}

/// Run `f` at the named point of a long operation that `op` starts on this thread.
pub(super) fn at_point<T>(
    point: &'static str,
    f: impl FnMut() + 'static,
    op: impl FnOnce() -> T,
) -> T {
    let mut f = f;
    let seen_at = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = seen_at.clone();
    TEST_POINT.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move |name: &str| {
            if name == point {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                f()
            }
        }))
    });
    let out = op();
    TEST_POINT.with(|hook| *hook.borrow_mut() = None);
    assert!(
        seen_at.load(std::sync::atomic::Ordering::Relaxed),
        "the operation never reached {point}"
    );
    out
}

/// From another thread: a search that must not wait for a writer, then a plain one.
fn search_from_another_thread(index: &Arc<Hnsw>) {
    let index = index.clone();
    std::thread::spawn(move || {
        let q = vec![1.0; index.dim()];
        let hits = index
            .try_search_many(&q, SearchOptions::new(3), None, None)
            .unwrap()
            .expect("a search found the index held by a writer");
        assert_eq!(hits[0].len(), 3);
        assert_eq!(
            index.search(&q, SearchOptions::new(3), None).unwrap(),
            hits[0]
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_search_runs_while_a_snapshot_is_encoded() {
    let index = index(500, 8);
    let other = index.clone();
    let bytes = at_point(
        "encoding",
        move || search_from_another_thread(&other),
        || index.to_bytes(),
    );
    let loaded = Hnsw::from_bytes(&bytes).unwrap();
    assert_eq!(loaded.len(), 500);
}

#[test]
fn a_search_runs_while_a_snapshot_file_is_written() {
    let index = index(500, 8);
    let other = index.clone();
    let path = std::env::temp_dir().join(format!("llmkg-locks-{}.zst", std::process::id()));
    at_point(
        "encoding",
        move || search_from_another_thread(&other),
        || index.write_file(&path, Some(3)).unwrap(),
    );
    let loaded = Hnsw::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap().len(), 500);
}

#[test]
fn a_snapshot_waits_for_the_links_under_way_but_searches_do_not() {
    let index = index(300, 8);
    // A link pass under way, as an `add` between its slot allocation and its last link.
    let pass = index.fence.enter();
    std::thread::scope(|scope| {
        let snapshot = scope.spawn(|| index.to_bytes());
        while index.fence.waiting() == 0 && !snapshot.is_finished() {
            std::thread::yield_now();
        }
        // The snapshot holds the read lock and waits at the fence: searches go on.
        search_from_another_thread(&index);
        assert!(
            !snapshot.is_finished(),
            "the snapshot did not wait for the link"
        );
        drop(pass);
        let loaded = Hnsw::from_bytes(&snapshot.join().unwrap()).unwrap();
        assert_eq!(loaded.len(), 300);
    });
}

#[test]
fn a_search_runs_while_a_compaction_repairs_links() {
    let index = index(600, 8);
    // Fewer removed nodes than make a compaction due by itself: the explicit one below
    // has work to do.
    let removed: Vec<u64> = (0..600).step_by(15).collect();
    index.remove(&removed);
    assert!(index.stats().deleted > 0);
    let other = index.clone();
    at_point(
        "repaired",
        move || search_from_another_thread(&other),
        || index.compact(),
    );
    assert_eq!(index.stats().deleted, 0);
    index.graph.read().check_invariants();
}

#[test]
fn a_search_that_must_not_wait_gives_way_to_a_writer() {
    let index = index(100, 8);
    let q = vec![1.0; 8];
    let held = index.graph.write();
    let busy = std::thread::scope(|scope| {
        scope
            .spawn(|| index.try_search_many(&q, SearchOptions::new(3), None, None))
            .join()
            .unwrap()
    });
    assert!(busy.unwrap().is_none());
    drop(held);
    let hits = index
        .try_search_many(&q, SearchOptions::new(3), None, None)
        .unwrap();
    assert_eq!(hits.map(|h| h[0].len()), Some(3));
    // Bad input is still an error, not "busy".
    assert!(index
        .try_search_many(&q[..3], SearchOptions::new(3), None, None)
        .is_err());
}

#[test]
fn precision_changes_in_chunks_keep_every_node_and_refuse_unknown_ids() {
    let index = index(5000, 8);
    let ids: Vec<u64> = (0..5000).collect();
    assert!(index
        .set_precision(&[1, 99_999], Precision::Q8, None)
        .is_err());
    assert_eq!(index.precision_of(1), Some(Precision::Full));
    index.set_precision(&ids, Precision::Q8, None).unwrap();
    assert!(index
        .precisions_of(&ids)
        .iter()
        .all(|p| *p == Some(Precision::Q8)));
    assert_eq!(index.len(), 5000);
    index.graph.read().check_invariants();
}

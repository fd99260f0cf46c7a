//! Snapshot files written while writers run: an `add` or a `remove` completes while the
//! file is being compressed, and the file is still exactly the index at its capture,
//! whatever the writers did meanwhile (new nodes in free slots and rows, upserts, removals,
//! links rewritten, a compaction come due, precision changes).

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::tests::{assert_every_node_reachable, data};
use super::tests_files::varied_index;
use super::tests_locks::at_point;
use super::*;

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("llmkg-snapshot-{name}-{}", std::process::id()))
}

/// Run `f` on another thread and wait for it to end, up to a deadline: what a writer
/// does while the calling thread, a snapshot's, is at one of its test points.
fn runs_meanwhile<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    ended
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} waited for the snapshot"))
}

fn decompressed(path: &PathBuf) -> Vec<u8> {
    zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap()
}

#[test]
fn a_writer_completes_while_a_snapshot_file_is_compressing() {
    let dim = 8;
    let index = Arc::new(Hnsw::new(Params::new(dim)).unwrap());
    let ids: Vec<u64> = (0..2000).collect();
    index.add(&ids, &data(2000, dim, 3), &[], None).unwrap();
    let before = index.to_bytes();
    let path = temp_path("writer");
    let other = index.clone();
    at_point(
        // The ids, metadata and links are through the compressor: the vectors are next.
        "vectors",
        move || {
            let index = other.clone();
            runs_meanwhile("an add", move || {
                index
                    .add(&[5000, 5001], &data(2, dim, 4), &[], None)
                    .unwrap()
            });
            let index = other.clone();
            let removed = runs_meanwhile("a remove", move || index.remove(&[7, 8, 9]));
            assert_eq!(removed, 3);
        },
        || index.write_file(&path, Some(3)).unwrap(),
    );
    // The writers' work is in the index, not in the file.
    assert!(index.contains(5000) && !index.contains(7));
    assert_eq!(decompressed(&path), before);
    std::fs::remove_file(&path).unwrap();
}

/// What a writer does to the index of `varied_index` while a snapshot streams: new nodes
/// at every precision (into the free slots and rows, then past them), upserts and
/// removals of captured nodes, enough to make a compaction due.
fn churn(index: &Hnsw, ids: &[u64], dim: usize) {
    let fresh: Vec<u64> = (0..150).map(|i| 100_000 + i).collect();
    let precisions: Vec<Precision> = (0..150)
        .map(|i| {
            [
                Precision::Full,
                Precision::Q8,
                Precision::Q4,
                Precision::Binary,
            ][i % 4]
        })
        .collect();
    index
        .add(&fresh, &data(150, dim, 77), &precisions, None)
        .unwrap();
    index
        .add(&ids[300..320], &data(20, dim, 78), &[Precision::Full], None)
        .unwrap();
    assert_eq!(index.remove(&ids[320..400]), 80);
}

#[test]
fn a_snapshot_file_is_the_index_at_its_capture_whatever_writers_do_meanwhile() {
    // At the start of the stream every list is still to be written (writers keep the
    // captured ones); at the vectors, every list is written already.
    for point in ["streaming", "vectors"] {
        let (index, ids) = varied_index();
        let index = Arc::new(index);
        let dim = index.dim();
        let at_capture = index.to_bytes();
        let path = temp_path(point);
        let (other, churned) = (index.clone(), ids.clone());
        at_point(
            point,
            move || {
                let index = other.clone();
                let ids = churned.clone();
                runs_meanwhile("the writer", move || churn(&index, &ids, dim));
            },
            || index.write_file(&path, Some(3)).unwrap(),
        );
        assert_eq!(decompressed(&path), at_capture, "at {point}");
        let loaded = Hnsw::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!loaded.contains(100_000), "at {point}");
        assert!(loaded.contains(ids[320]) && !index.contains(ids[320]));
        assert_eq!(loaded.precision_of(ids[300]), Some(Precision::Q8));
        assert_eq!(index.precision_of(ids[300]), Some(Precision::Full));
        loaded.graph.read().check_invariants();
        // The compaction that came due while the snapshot streamed was put off: the next
        // writer after it does it.
        assert!(index.stats().deleted >= 100, "at {point}");
        index.remove(&ids[400..401]);
        assert_eq!(index.stats().deleted, 0, "at {point}");
        index.graph.read().check_invariants();
    }
}

#[test]
fn precision_changes_and_explicit_compactions_wait_for_a_snapshot_being_written() {
    let (index, ids) = varied_index();
    let index = Arc::new(index);
    let at_capture = index.to_bytes();
    let path = temp_path("waits");
    let waiting = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (other, started) = (index.clone(), waiting.clone());
    at_point(
        "vectors",
        move || {
            let mut threads = started.lock();
            let (index, raised) = (other.clone(), ids[200..220].to_vec());
            threads.push(std::thread::spawn(move || {
                index.set_precision(&raised, Precision::Full, None).unwrap()
            }));
            let index = other.clone();
            threads.push(std::thread::spawn(move || index.compact()));
            while other.snapshot_log.waiting() < 2 && !threads.iter().any(|t| t.is_finished()) {
                std::thread::yield_now();
            }
            assert!(
                threads.iter().all(|t| !t.is_finished()),
                "a change that frees or rewrites rows ran while the snapshot streamed"
            );
        },
        || index.write_file(&path, Some(3)).unwrap(),
    );
    for thread in std::mem::take(&mut *waiting.lock()) {
        thread.join().unwrap();
    }
    assert_eq!(decompressed(&path), at_capture);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(index.stats().deleted, 0);
    assert_eq!(index.precision_of(200 * 3 + 1), Some(Precision::Full));
}

#[test]
fn snapshot_files_written_during_adds_and_removes_hold_only_whole_linked_nodes() {
    let dim = 16;
    let index = Arc::new(Hnsw::new(Params::new(dim)).unwrap());
    let vectors = data(4000, dim, 12);
    index
        .add(
            &(0..500).collect::<Vec<u64>>(),
            &vectors[..500 * dim],
            &[],
            None,
        )
        .unwrap();
    let mut files = Vec::new();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let (index, vectors) = (index.clone(), &vectors);
            scope.spawn(move || {
                for i in (500 + t as usize..4000).step_by(2) {
                    index
                        .add(&[i as u64], &vectors[i * dim..(i + 1) * dim], &[], None)
                        .unwrap();
                    if i % 5 == 0 {
                        index.remove(&[(i / 2) as u64]);
                    }
                }
            });
        }
        for n in 0..12 {
            let path = temp_path(&format!("churn-{n}"));
            index.write_file(&path, Some(1)).unwrap();
            files.push(path);
        }
    });
    for path in files {
        let loaded = Hnsw::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        loaded.graph.read().check_invariants();
        assert_every_node_reachable(&loaded);
    }
}

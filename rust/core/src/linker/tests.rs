use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::hnsw::{IdSet, Metric, Params, SearchOptions};

const DIM: usize = 8;

fn vector(i: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i as usize * 7 + d * 3) % 11) as f32 - 5.0 + i as f32 * 0.01)
        .collect()
}

fn fast() -> LinkerSettings {
    LinkerSettings {
        timeout: Duration::from_secs(30),
        max_attempts: 3,
        retry_delay: Duration::from_millis(1),
        max_retry_delay: Duration::from_millis(5),
        max_pending: 256,
    }
}

fn index() -> Arc<Hnsw> {
    Arc::new(Hnsw::new(Params::new(DIM)).unwrap())
}

/// A hook that holds links while the gate is shut, and fails them while `fail` is set.
#[derive(Clone, Default)]
struct Gate {
    shut: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    fail: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    waiting: Arc<AtomicBool>,
}

impl Gate {
    fn shut() -> Gate {
        let g = Gate::default();
        *g.shut.0.lock() = true;
        g
    }

    fn open(&self) {
        *self.shut.0.lock() = false;
        self.shut.1.notify_all();
    }

    fn hook(&self) -> Option<BeforeLink> {
        let g = self.clone();
        Some(Box::new(move |_ids: &[u64]| {
            g.calls.fetch_add(1, Ordering::SeqCst);
            let mut shut = g.shut.0.lock();
            while *shut {
                g.waiting.store(true, Ordering::SeqCst);
                g.shut.1.wait(&mut shut);
            }
            if g.fail.load(Ordering::SeqCst) {
                return Err("link refused".into());
            }
            Ok(())
        }))
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_pending_node_is_found_until_and_after_its_link() {
    let gate = Gate::shut();
    let linker = Linker::start(index(), fast(), gate.hook()).unwrap();
    linker.add(7, &vector(7), Precision::Q8).unwrap();
    eventually("the link starts", || gate.waiting.load(Ordering::SeqCst));
    assert!(linker.contains(7) && linker.len() == 1);
    assert_eq!(linker.precision_of(7), Some(Precision::Q8));
    assert!(!linker.index().contains(7));
    let hits = linker
        .search_many(&vector(7), SearchOptions::new(3), None, true)
        .unwrap()
        .unwrap();
    assert_eq!(hits[0][0].0, 7, "found while pending");
    assert!(
        (hits[0][0].1 - 1.0).abs() < 1e-5,
        "scored exactly: {}",
        hits[0][0].1
    );
    gate.open();
    linker.wait_for(7, None).unwrap();
    assert!(!linker.contains(7) && linker.index().contains(7));
    assert_eq!(linker.precision_of(7), None);
    let hits = linker
        .search_many(&vector(7), SearchOptions::new(3), None, true)
        .unwrap()
        .unwrap();
    assert_eq!(hits[0][0].0, 7, "found once linked");
    linker.close();
}

#[test]
fn nodes_queued_during_a_link_go_in_as_one_batch() {
    let gate = Gate::shut();
    let linker = Linker::start(index(), fast(), gate.hook()).unwrap();
    linker.add(0, &vector(0), Precision::Full).unwrap();
    eventually("the first link starts", || {
        gate.waiting.load(Ordering::SeqCst)
    });
    for i in 1..6 {
        linker.add(i, &vector(i), Precision::Q8).unwrap();
    }
    assert_eq!(linker.pending(), vec![0, 1, 2, 3, 4, 5]);
    gate.open();
    linker.wait_idle(None).unwrap();
    let stats = linker.stats();
    assert_eq!((stats.batches, stats.inserted, stats.pending), (2, 6, 0));
    linker.close();
}

#[test]
fn pending_nodes_obey_the_filter_and_merge_with_the_index() {
    let gate = Gate::default();
    let linker = Linker::start(index(), fast(), gate.hook()).unwrap();
    for i in 0..20 {
        linker.add(i, &vector(i), Precision::Full).unwrap();
    }
    linker.wait_idle(None).unwrap();
    *gate.shut.0.lock() = true;
    for i in 20..30 {
        linker.add(i, &vector(i), Precision::Full).unwrap();
    }
    let allowed = IdSet::new([3, 25, 26]);
    let hits = linker
        .search_many(&vector(25), SearchOptions::new(10), Some(&allowed), true)
        .unwrap()
        .unwrap();
    let mut ids: Vec<u64> = hits[0].iter().map(|h| h.0).collect();
    assert_eq!(ids[0], 25);
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![3, 25, 26],
        "the index's and the pending nodes, filtered"
    );
    let all = linker
        .search_many(&vector(25), SearchOptions::new(30), None, true)
        .unwrap()
        .unwrap();
    assert_eq!(all[0].len(), 30);
    let scores: Vec<f32> = all[0].iter().map(|h| h.1).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    gate.open();
    linker.close();
}

#[test]
fn a_failing_link_keeps_nodes_pending_and_fails_waits_at_once() {
    let gate = Gate::default();
    gate.fail.store(true, Ordering::SeqCst);
    let linker = Linker::start(index(), fast(), gate.hook()).unwrap();
    linker.add(1, &vector(1), Precision::Q8).unwrap();
    eventually("failing", || linker.stats().failing);
    let (ok, detail) = linker.health();
    assert!(!ok && detail.contains("link refused"), "{detail}");
    assert_eq!(linker.pending(), vec![1], "searches still score it");
    let started = Instant::now();
    assert!(matches!(
        linker.wait_idle(Some(Duration::from_secs(60))),
        Err(LinkError::Unavailable(_))
    ));
    assert!(matches!(
        linker.wait_for(1, Some(Duration::from_secs(60))),
        Err(LinkError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "failed at once"
    );
    linker.wait_room(None).unwrap();
    linker.discard(1, None).unwrap();
    assert!(linker.pending().is_empty());
    linker.add(2, &vector(2), Precision::Q8).unwrap();
    gate.fail.store(false, Ordering::SeqCst);
    eventually("healthy again", || linker.health().0);
    linker.wait_idle(None).unwrap();
    let stats = linker.stats();
    assert!(stats.inserted == 1 && stats.failed_links >= 3, "{stats:?}");
    assert!(!linker.index().contains(1) && linker.index().contains(2));
    linker.close();
}

#[test]
fn waits_have_deadlines_and_room_is_bounded() {
    let gate = Gate::shut();
    let settings = LinkerSettings {
        max_pending: 2,
        ..fast()
    };
    let linker = Linker::start(index(), settings, gate.hook()).unwrap();
    linker.add(1, &vector(1), Precision::Q8).unwrap();
    linker.add(2, &vector(2), Precision::Q8).unwrap();
    eventually("the link starts", || gate.waiting.load(Ordering::SeqCst));
    let short = Some(Duration::from_millis(20));
    assert!(matches!(
        linker.wait_room(short),
        Err(LinkError::Timeout(..))
    ));
    assert!(matches!(
        linker.wait_idle(short),
        Err(LinkError::Timeout(..))
    ));
    assert!(matches!(
        linker.wait_for(1, short),
        Err(LinkError::Timeout(..))
    ));
    // Its link is under way: a delete must wait for it.
    assert!(matches!(
        linker.discard(1, short),
        Err(LinkError::Timeout(..))
    ));
    gate.open();
    linker.wait_room(None).unwrap();
    linker.wait_idle(None).unwrap();
    linker.close();
}

#[test]
fn a_discarded_node_is_never_linked() {
    let gate = Gate::shut();
    let linker = Linker::start(index(), fast(), gate.hook()).unwrap();
    linker.add(1, &vector(1), Precision::Full).unwrap();
    eventually("the link starts", || gate.waiting.load(Ordering::SeqCst));
    linker.add(2, &vector(2), Precision::Full).unwrap(); // queued behind the link
    linker.discard(2, None).unwrap();
    gate.open();
    linker.wait_idle(None).unwrap();
    assert!(linker.index().contains(1) && !linker.index().contains(2));
    linker.close();
}

#[test]
fn close_links_what_is_queued_and_refuses_more() {
    let linker = Linker::start(index(), fast(), None).unwrap();
    for i in 0..50 {
        linker.add(i, &vector(i), Precision::Q8).unwrap();
    }
    linker.close();
    assert_eq!(linker.index().len(), 50);
    assert!(linker.add(99, &vector(99), Precision::Q8).is_err());
    let (ok, _) = linker.health();
    assert!(ok, "a closed linker is not a failure");
}

#[test]
fn bad_vectors_are_refused_before_they_are_queued() {
    let linker = Linker::start(index(), fast(), None).unwrap();
    assert!(linker.add(1, &[1.0; DIM - 1], Precision::Full).is_err());
    let mut v = vector(1);
    v[2] = f32::NAN;
    assert!(linker.add(1, &v, Precision::Full).is_err());
    assert!(linker.is_empty());
    linker.close();
}

#[test]
fn retry_delays_double_up_to_the_longest() {
    let s = Duration::from_secs;
    assert_eq!(retry_delay(1, s(1), s(60)), s(1));
    assert_eq!(retry_delay(2, s(1), s(60)), s(2));
    assert_eq!(retry_delay(4, s(1), s(60)), s(8));
    assert_eq!(retry_delay(10, s(1), s(60)), s(60));
    assert_eq!(retry_delay(1000, s(1), s(60)), s(60));
}

#[test]
fn a_link_someone_waits_for_runs_at_normal_priority() {
    let gate = Gate::shut();
    let linker = Arc::new(Linker::start(index(), fast(), gate.hook()).unwrap());
    linker.add(1, &vector(1), Precision::Full).unwrap();
    eventually("the first link starts", || {
        gate.waiting.load(Ordering::SeqCst)
    });
    gate.open();
    eventually("linked", || linker.stats().batches == 1);
    assert_eq!(
        linker.stats().urgent_batches,
        0,
        "nobody waited when it started"
    );

    *gate.shut.0.lock() = true;
    gate.waiting.store(false, Ordering::SeqCst);
    linker.add(2, &vector(2), Precision::Full).unwrap();
    eventually("the second link starts", || {
        gate.waiting.load(Ordering::SeqCst)
    });
    let waiter = {
        let linker = linker.clone();
        std::thread::spawn(move || linker.wait_idle(None))
    };
    eventually("a checkpoint waits", || linker.waiting() == 1);
    gate.open();
    waiter.join().unwrap().unwrap();
    let stats = linker.stats();
    assert_eq!((stats.batches, stats.urgent_batches), (2, 1));
    linker.close();
}

#[test]
fn a_nodes_score_does_not_move_when_its_link_lands() {
    for metric in [Metric::Cosine, Metric::Ip, Metric::L2] {
        let mut params = Params::new(DIM);
        params.metric = metric;
        let gate = Gate::shut();
        let linker =
            Linker::start(Arc::new(Hnsw::new(params).unwrap()), fast(), gate.hook()).unwrap();
        linker.add(1, &vector(1), Precision::Full).unwrap();
        let query = vector(2);
        let score = |linker: &Linker| {
            linker
                .search_many(&query, SearchOptions::new(1), None, true)
                .unwrap()
                .unwrap()[0][0]
        };
        let pending = score(&linker);
        gate.open();
        linker.wait_idle(None).unwrap();
        let linked = score(&linker);
        assert_eq!(pending.0, linked.0);
        assert_eq!(pending.1.to_bits(), linked.1.to_bits(), "{metric:?}");
        linker.close();
    }
}

//! The facts against a plain model (a map of id -> triple and confidence), and as a filter
//! of real searches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::hnsw::{Hnsw, Params, SearchOptions};

type Model = BTreeMap<u64, ([String; 3], f64)>;

fn query(s: Option<&str>, p: Option<&str>, o: Option<&str>, floor: Option<f64>) -> FactQuery {
    FactQuery::new([s, p, o], floor).unwrap()
}

fn add(facts: &FactIndex, id: u64, triple: [&str; 3], confidence: f64) {
    facts.write().add(id, triple, confidence).unwrap();
}

/// The ids of `0..limit` that the query allows (a view and a test of single ids agree).
fn allowed(facts: &FactIndex, q: &FactQuery, limit: u64) -> BTreeSet<u64> {
    let view = facts.read().filter(q);
    let by_view: BTreeSet<u64> = (0..limit).filter(|&id| view.allows(id)).collect();
    drop(view);
    let r = facts.read();
    let one_by_one: BTreeSet<u64> = (0..limit).filter(|&id| r.allows(q, id)).collect();
    assert_eq!(by_view, one_by_one, "{q:?}");
    by_view
}

fn listed(facts: &FactIndex, q: &FactQuery) -> Option<Vec<u64>> {
    facts.read().filter(q).ids().map(<[u64]>::to_vec)
}

fn matches(model: &Model, q: &FactQuery) -> BTreeSet<u64> {
    model
        .iter()
        .filter(|(_, (triple, c))| {
            (0..3).all(|f| q.term(f).is_none_or(|t| t == triple[f]))
                && q.min_confidence().is_none_or(|floor| *c >= floor)
        })
        .map(|(&id, _)| id)
        .collect()
}

fn sample() -> FactIndex {
    let facts = FactIndex::new();
    add(&facts, 1, ["pho", "is_a", "dog"], 0.5);
    add(&facts, 2, ["pho", "likes", "cats"], 0.9);
    add(&facts, 3, ["rex", "is_a", "cat"], 0.2);
    add(&facts, 4, ["rex", "likes", "dog"], 0.7);
    facts
}

#[test]
fn filters_combine_fields_and_the_floor() {
    let facts = sample();
    let all = |q: FactQuery| allowed(&facts, &q, 10);
    assert_eq!(all(query(Some("pho"), None, None, None)), [1, 2].into());
    assert_eq!(all(query(None, Some("is_a"), None, None)), [1, 3].into());
    assert_eq!(
        all(query(Some("rex"), Some("likes"), None, None)),
        [4].into()
    );
    assert_eq!(all(query(None, None, Some("dog"), Some(0.6))), [4].into());
    assert_eq!(all(query(None, None, None, Some(0.5))), [1, 2, 4].into());
    assert_eq!(all(query(None, None, None, Some(0.0))), [1, 2, 3, 4].into());
    // Each field is some node's, but no node has both.
    assert_eq!(all(query(Some("pho"), None, Some("cat"), None)), [].into());
    // A filter that names nothing is no filter at all.
    assert!(query(None, None, None, None).is_unrestricted());
    assert_eq!(all(query(None, None, None, None)).len(), 10);
}

#[test]
fn a_term_nobody_carries_allows_nothing_and_lists_nothing() {
    let facts = sample();
    for q in [
        query(Some("nobody"), None, None, None),
        query(Some("pho"), Some("hates"), None, Some(0.1)),
        query(None, None, Some("is_a"), None), // a predicate, not an object
    ] {
        assert_eq!(allowed(&facts, &q, 10), [].into(), "{q:?}");
        assert_eq!(listed(&facts, &q), Some(vec![]), "{q:?}");
    }
}

#[test]
fn one_field_lends_its_posting_several_list_exactly() {
    let facts = sample();
    assert_eq!(listed(&facts, &query(None, None, None, Some(0.1))), None);
    assert_eq!(
        listed(&facts, &query(Some("rex"), None, None, None)),
        Some(vec![3, 4])
    );
    // The posting, floor or not: `allows` applies the floor.
    assert_eq!(
        listed(&facts, &query(Some("rex"), None, None, Some(0.5))),
        Some(vec![3, 4])
    );
    assert_eq!(
        listed(&facts, &query(Some("rex"), None, Some("dog"), None)),
        Some(vec![4])
    );
    assert_eq!(
        listed(
            &facts,
            &query(None, Some("likes"), Some("cats"), Some(0.95))
        ),
        Some(vec![])
    );
}

#[test]
fn deletes_and_confidence_changes_show_in_the_next_search() {
    let facts = sample();
    let floor = query(None, None, None, Some(0.8));
    assert_eq!(allowed(&facts, &floor, 10), [2].into());
    assert!(facts.write().set_confidence(3, 0.95).unwrap());
    assert_eq!(allowed(&facts, &floor, 10), [2, 3].into());
    assert!(!facts.write().set_confidence(42, 0.95).unwrap()); // no such node: no ghost
    assert_eq!(facts.read().len(), 4);

    assert!(facts.write().remove(3));
    assert!(!facts.write().remove(3));
    assert_eq!(allowed(&facts, &floor, 10), [2].into());
    let rex = query(Some("rex"), None, None, None);
    assert_eq!(allowed(&facts, &rex, 10), [4].into());
    assert!(!facts.read().contains(["rex", "is_a", "cat"]));
    assert_eq!(facts.read().confidence(3), None);
    // The same id again, with another triple.
    add(&facts, 3, ["pho", "is_a", "cat"], 0.3);
    assert_eq!(allowed(&facts, &rex, 10), [4].into());
    assert_eq!(
        allowed(&facts, &query(Some("pho"), None, None, None), 10),
        [1, 2, 3].into()
    );
}

#[test]
fn an_add_of_a_known_node_replaces_its_facts() {
    let facts = sample();
    add(&facts, 1, ["pho", "is_a", "dog"], 0.8); // the same triple: the confidence moves
    assert_eq!(facts.read().confidence(1), Some(0.8));
    add(&facts, 1, ["bo", "is_a", "dog"], 0.8);
    assert!(!facts.read().contains(["pho", "is_a", "dog"]));
    assert!(facts.read().contains(["bo", "is_a", "dog"]));
    assert_eq!(facts.read().len(), 4);
    assert_eq!(
        allowed(&facts, &query(Some("pho"), None, None, None), 10),
        [2].into()
    );
}

#[test]
fn a_node_back_under_a_term_it_left_keeps_the_term_alive() {
    // Node 56 leaves predicate p1 (a tombstone there) and node 0 takes it; 56 then goes.
    let facts = FactIndex::new();
    add(&facts, 56, ["s", "p1", "o"], 0.0);
    add(&facts, 0, ["s", "p1", "o"], 0.0);
    add(&facts, 56, ["s", "p0", "o"], 0.0);
    add(&facts, 56, ["s", "p1", "o"], 0.0); // back: the tombstone revives
    assert!(facts.write().remove(56));
    let p1 = query(None, Some("p1"), None, None);
    assert_eq!(allowed(&facts, &p1, 100), [0].into());
    assert_eq!(facts.read().term_counts(), [1, 1, 1]);
}

#[test]
fn contains_needs_one_node_with_all_three() {
    let facts = sample();
    assert!(facts.read().contains(["pho", "is_a", "dog"]));
    assert!(facts.read().contains(["rex", "is_a", "cat"]));
    assert!(!facts.read().contains(["pho", "is_a", "cat"]));
    assert!(!facts.read().contains(["rex", "likes", "cats"]));
    assert!(!facts.read().contains(["nobody", "is_a", "dog"]));
}

#[test]
fn nan_is_refused() {
    let facts = sample();
    assert!(facts.write().add(9, ["a", "b", "c"], f64::NAN).is_err());
    assert!(facts.write().set_confidence(1, f64::NAN).is_err());
    assert!(FactQuery::new([None; 3], Some(f64::NAN)).is_err());
    assert_eq!(facts.read().len(), 4);
}

#[test]
fn memory_stays_flat_under_churn() {
    let facts = FactIndex::new();
    let object = |i: u64| format!("object number {i}");
    for i in 0..2_000 {
        add(&facts, i, ["s", "p", &object(i)], 0.5);
    }
    let settled = facts.read().memory_bytes();
    // Delete the oldest, add a new one: the live set keeps its size, the ids move on.
    for i in 2_000..60_000 {
        facts.write().remove(i - 2_000);
        add(&facts, i, ["s", "p", &object(i)], 0.5);
    }
    let r = facts.read();
    assert_eq!(r.len(), 2_000);
    assert_eq!(r.term_counts(), [1, 1, 2_000]);
    assert!(
        r.memory_bytes() <= 2 * settled,
        "{} bytes after churn, {settled} before",
        r.memory_bytes()
    );
    // A shared term's posting keeps at most as many tombstones as live ids.
    let s = r.0.fields[0].find("s").unwrap();
    assert!(r.0.fields[0].posting(s).ids().len() <= 4_000);
}

#[test]
fn searches_read_at_once_and_writers_wait_for_them() {
    let facts = Arc::new(sample());
    let q = query(Some("pho"), None, None, None);
    let view = facts.read().filter(&q);
    // Another reader, on another thread, is not held up by this one.
    let other = Arc::clone(&facts);
    let reads = std::thread::spawn(move || other.try_read().is_some());
    assert!(reads.join().unwrap());
    assert!(facts.try_write().is_none());
    assert!(view.allows(1));
    drop(view);
    assert!(facts.try_write().is_some());
}

/// Every node `i` has subject `s{i % 50}`, predicate `p{i % 2}` and confidence
/// `(i % 10) / 10`; the vectors are random.
fn indexed(n: u64, dim: usize) -> (Hnsw, FactIndex) {
    let facts = FactIndex::new();
    let index = Hnsw::new(Params::new(dim)).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let vectors: Vec<f32> = (0..n as usize * dim).map(|_| next()).collect();
    let ids: Vec<u64> = (0..n).collect();
    index.add(&ids, &vectors, &[], None).unwrap();
    for i in 0..n {
        let (s, p) = (format!("s{}", i % 50), format!("p{}", i % 2));
        add(&facts, i, [&s, &p, "o"], (i % 10) as f64 / 10.0);
    }
    (index, facts)
}

#[test]
fn searches_filtered_by_facts_fill_k_with_allowed_nodes() {
    let dim = 16;
    let (index, facts) = indexed(4_000, dim);
    let q: Vec<f32> = (0..dim).map(|d| d as f32 / dim as f32 - 0.4).collect();
    let search = |fq: &FactQuery, k: usize| {
        let view = facts.read().filter(fq);
        index
            .search(&q, SearchOptions::new(k), Some(&view))
            .unwrap()
    };
    // A floor that keeps a fifth of the nodes: the traversal still finds k of them.
    let hits = search(&query(None, None, None, Some(0.8)), 20);
    assert_eq!(hits.len(), 20);
    assert!(hits.iter().all(|&(id, _)| id % 10 >= 8));
    // A subject's 80 nodes (2% of the graph): scored directly, exactly the best ones.
    let hits = search(&query(Some("s7"), None, None, None), 200);
    assert_eq!(hits.len(), 80);
    assert!(hits.iter().all(|&(id, _)| id % 50 == 7));
    // Deleted from the facts (as the engine does with the index): no longer allowed.
    facts.write().remove(7);
    let hits = search(&query(Some("s7"), Some("p1"), None, None), 200);
    assert_eq!(hits.len(), 79);
    assert!(hits.iter().all(|&(id, _)| id % 50 == 7 && id % 2 == 1));
    assert!(search(&query(Some("nobody"), None, None, None), 10).is_empty());
}

#[derive(Clone, Debug)]
enum Op {
    Add(u64, [u8; 3], u8),
    Remove(u64),
    SetConfidence(u64, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..60u64, [0..4u8, 0..3u8, 0..6u8], 0..=10u8).prop_map(|(i, t, c)| Op::Add(i, t, c)),
        2 => (0..60u64).prop_map(Op::Remove),
        1 => (0..60u64, 0..=10u8).prop_map(|(i, c)| Op::SetConfidence(i, c)),
    ]
}

fn triple(t: [u8; 3]) -> [String; 3] {
    [
        format!("s{}", t[0]),
        format!("p{}", t[1]),
        format!("o{}", t[2]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn filters_agree_with_a_model(ops in prop::collection::vec(op(), 1..300)) {
        let facts = FactIndex::new();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Add(id, t, c) => {
                    let t = triple(t);
                    let c = c as f64 / 10.0;
                    facts.write().add(id, [&t[0], &t[1], &t[2]], c).unwrap();
                    model.insert(id, (t, c));
                }
                Op::Remove(id) => {
                    prop_assert_eq!(facts.write().remove(id), model.remove(&id).is_some());
                }
                Op::SetConfidence(id, c) => {
                    let c = c as f64 / 10.0;
                    let known = model.get_mut(&id).map(|e| e.1 = c).is_some();
                    prop_assert_eq!(facts.write().set_confidence(id, c).unwrap(), known);
                }
            }
        }
        let r = facts.read();
        prop_assert_eq!(r.len(), model.len());
        let mut got = r.confidences();
        got.sort_by_key(|e| e.0);
        let want: Vec<(u64, f64)> = model.iter().map(|(&id, (_, c))| (id, *c)).collect();
        prop_assert_eq!(got, want);
        for f in 0..3 {
            let distinct: BTreeSet<&String> = model.values().map(|(t, _)| &t[f]).collect();
            prop_assert_eq!(r.term_counts()[f], distinct.len());
        }
        for t in [[0, 0, 0], [1, 2, 3], [3, 1, 5]] {
            let t = triple(t);
            let known = model.values().any(|(m, _)| *m == t);
            prop_assert_eq!(r.contains([&t[0], &t[1], &t[2]]), known);
        }
        drop(r);
        let names = |f: usize, n: u8| -> Vec<Option<String>> {
            std::iter::once(None).chain((0..n).map(|i| Some(triple([i; 3])[f].clone()))).collect()
        };
        for s in names(0, 4) {
            for p in names(1, 3) {
                for o in [None, Some("o1".to_string()), Some("o9".to_string())] {
                    for floor in [None, Some(0.0), Some(0.5), Some(1.0)] {
                        let q = query(s.as_deref(), p.as_deref(), o.as_deref(), floor);
                        let want = matches(&model, &q);
                        if q.is_unrestricted() {
                            continue;
                        }
                        prop_assert_eq!(&allowed(&facts, &q, 70), &want, "{:?}", q);
                        if let Some(ids) = listed(&facts, &q) {
                            let unique: BTreeSet<u64> = ids.iter().copied().collect();
                            prop_assert_eq!(unique.len(), ids.len(), "duplicates {:?}", q);
                            prop_assert!(want.is_subset(&unique), "{:?} lists {:?}", q, ids);
                            let named = (0..3).filter(|&f| q.term(f).is_some()).count();
                            if named > 1 {
                                prop_assert_eq!(&unique, &want);
                            }
                        }
                    }
                }
            }
        }
    }
}

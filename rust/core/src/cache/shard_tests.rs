//! The shard's own invariants, and the behaviour of one shard that the whole cache
//! cannot show (which entries a hit moves).

use super::super::clock::{Clock, NEVER};
use super::super::hash::mix;
use super::super::slab::Queue;
use super::super::stats::Removed;
use super::{Shard, UseClock};

impl<K, V> Shard<K, V> {
    /// Checks every structural invariant (tests only).
    pub(crate) fn check_invariants(&self) {
        let mut total = 0;
        for q in [Queue::Window, Queue::Probation, Queue::Protected] {
            let walk = self.slab.walk(q);
            assert_eq!(walk.len(), self.slab.list(q).len as usize);
            for &i in &walk {
                assert_eq!(self.slab.node(i).queue, q);
                let h = self.slab.node(i).hash;
                let c = self.codec;
                let slot = self.table.find(h, |&t| c.idx(t) == i);
                assert_eq!(slot, Some(&c.pack(i, h)));
            }
            total += walk.len();
        }
        assert_eq!(total, self.slab.len());
        assert_eq!(self.table.len(), self.slab.len());
        assert!(self.slab.len() <= self.capacity as usize);
        assert!(self.weight <= self.max_weight);
        let w: u64 = self.slab.iter().map(|n| n.weight as u64).sum();
        assert_eq!(w, self.weight);
        let exp = self.slab.iter().filter(|n| n.expires != NEVER).count();
        assert_eq!(exp, self.expiring as usize);
    }
}

fn keys(s: &Shard<u64, u64>, q: Queue) -> Vec<u64> {
    s.slab
        .walk(q)
        .into_iter()
        .map(|i| s.slab.node(i).key)
        .collect()
}

fn put(s: &mut Shard<u64, u64>, k: u64) {
    let mut removed = Removed::new();
    s.insert(
        mix(k),
        k,
        k,
        1,
        NEVER,
        UseClock(None),
        |a, b| a == b,
        &mut removed,
    );
}

fn hit(s: &mut Shard<u64, u64>, k: u64) {
    let mut removed = Removed::new();
    assert!(s
        .get(mix(k), |x| *x == k, UseClock(None), &mut removed, |_| ())
        .is_some());
}

#[test]
fn frequency_hits_move_only_entries_outside_the_recent_quarter() {
    let mut s: Shard<u64, u64> = Shard::new(100, u64::MAX, true, 1, Clock::System);
    for k in 0..50u64 {
        put(&mut s, k);
    }
    // A first hit promotes a probation entry to the head of protected: 19 ends at the
    // head, 0 at the tail.
    for k in 0..20 {
        hit(&mut s, k);
    }
    let order: Vec<u64> = (0..20).rev().collect();
    assert_eq!(keys(&s, Queue::Protected), order);
    // 19 and 15 (4 entries went in front of it) are within the most recent quarter
    // (5 of 20): a hit leaves them there.
    hit(&mut s, 19);
    hit(&mut s, 15);
    assert_eq!(keys(&s, Queue::Protected), order);
    // 14 may be beyond it (5 entries went in front of it), and 0 is the tail: both move.
    hit(&mut s, 14);
    hit(&mut s, 0);
    let mut moved = vec![0, 14];
    moved.extend((1..20).rev().filter(|&k| k != 14));
    assert_eq!(keys(&s, Queue::Protected), moved);
    s.check_invariants();
}

#[test]
fn plain_lru_hits_always_move_to_the_front() {
    let mut s: Shard<u64, u64> = Shard::new(100, u64::MAX, false, 1, Clock::System);
    for k in 0..10u64 {
        put(&mut s, k);
    }
    hit(&mut s, 8);
    let mut order = vec![8, 9];
    order.extend((0..8).rev());
    assert_eq!(keys(&s, Queue::Window), order);
    s.check_invariants();
}

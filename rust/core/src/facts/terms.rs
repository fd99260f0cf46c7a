//! One field's terms (every distinct subject, say): each interned as a `u32` with the
//! sorted list of the nodes that carry it (its posting).
//!
//! A posting is a sorted `Vec<u64>`: a search lends it to the index as a slice, with no
//! copy, and node ids come from the store in increasing order, so an add is a push. A
//! removal only counts a tombstone (the id stays in the list until more than half of it is
//! dead, then one pass drops the dead), so deleting from a term held by most nodes (a
//! common predicate) costs a binary search, not a shift of the whole list. Who is alive is
//! the payload's word (`super::Inner::nodes`): whoever walks a posting checks each id
//! there. A term whose last node goes is forgotten and its number reused, so memory
//! follows the live nodes under churn.

use std::hash::{BuildHasher, RandomState};
use std::mem::size_of;

use hashbrown::HashTable;

/// The nodes that carry one term: sorted, with `dead` of them tombstones.
#[derive(Debug, Default)]
pub(super) struct Posting {
    term: Box<str>,
    ids: Vec<u64>,
    dead: usize,
}

impl Posting {
    pub(super) fn term(&self) -> &str {
        &self.term
    }

    /// Every node of the term, and perhaps some that no longer carry it (see the module
    /// comment): sorted, no duplicates.
    pub(super) fn ids(&self) -> &[u64] {
        &self.ids
    }
}

/// The terms of one field.
#[derive(Debug, Default)]
pub(super) struct Terms {
    /// Term numbers, hashed by their text (kept once, in `postings`).
    table: HashTable<u32>,
    /// Indexed by term number; a forgotten term's entry is empty until reused.
    postings: Vec<Posting>,
    free: Vec<u32>,
    /// Keyed SipHash: terms are the users' text, so the table must not be floodable.
    hasher: RandomState,
}

impl Terms {
    pub(super) fn find(&self, term: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(term);
        self.table
            .find(hash, |&t| &*self.postings[t as usize].term == term)
            .copied()
    }

    pub(super) fn posting(&self, t: u32) -> &Posting {
        &self.postings[t as usize]
    }

    /// The number of `term`, given one if it is new.
    pub(super) fn intern(&mut self, term: &str) -> u32 {
        if let Some(t) = self.find(term) {
            return t;
        }
        let posting = Posting {
            term: term.into(),
            // Room for one id, not the four a first push reserves: most subjects and
            // objects belong to a node or two.
            ids: Vec::with_capacity(1),
            dead: 0,
        };
        let t = match self.free.pop() {
            Some(t) => {
                self.postings[t as usize] = posting;
                t
            }
            None => {
                // Past u32::MAX distinct terms of one field the numbers would wrap: that
                // is 4 billion live nodes with distinct terms, far beyond one process.
                self.postings.push(posting);
                (self.postings.len() - 1) as u32
            }
        };
        let (postings, hasher) = (&self.postings, &self.hasher);
        let hash = hasher.hash_one(term);
        self.table
            .insert_unique(hash, t, |&u| hasher.hash_one(&*postings[u as usize].term));
        t
    }

    /// `id` now carries term `t` (it carried it before only as a tombstone, if at all).
    pub(super) fn insert(&mut self, t: u32, id: u64) {
        let p = &mut self.postings[t as usize];
        if p.ids.last().is_none_or(|&last| last < id) {
            p.ids.push(id);
            return;
        }
        match p.ids.binary_search(&id) {
            // A tombstone of an earlier life of this node under the same term.
            Ok(_) => p.dead = p.dead.saturating_sub(1),
            Err(at) => p.ids.insert(at, id),
        }
    }

    /// `id` no longer carries term `t`. `carries(other)` says whether another id of the
    /// posting still does (read from the payload), for the pass that drops tombstones.
    pub(super) fn remove(&mut self, t: u32, carries: impl Fn(u64) -> bool) {
        let p = &mut self.postings[t as usize];
        p.dead += 1;
        if p.dead >= p.ids.len() {
            self.forget(t);
        } else if p.dead * 2 > p.ids.len() {
            p.ids.retain(|&id| carries(id));
            p.dead = 0;
        }
    }

    fn forget(&mut self, t: u32) {
        let posting = std::mem::take(&mut self.postings[t as usize]);
        let hash = self.hasher.hash_one(&*posting.term);
        if let Ok(entry) = self.table.find_entry(hash, |&u| u == t) {
            entry.remove();
        }
        self.free.push(t);
    }

    /// Distinct live terms.
    pub(super) fn len(&self) -> usize {
        self.postings.len() - self.free.len()
    }

    /// Heap bytes held (allocated capacity included).
    pub(super) fn memory_bytes(&self) -> usize {
        let lists: usize = self
            .postings
            .iter()
            .map(|p| p.ids.capacity() * size_of::<u64>() + p.term.len())
            .sum();
        lists
            + self.postings.capacity() * size_of::<Posting>()
            + self.free.capacity() * size_of::<u32>()
            + self.table.capacity() * (size_of::<u32>() + 1)
    }
}

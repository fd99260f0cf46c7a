//! Filters restrict a search to some ids. They are consulted during graph traversal, so a
//! filter that keeps 10% of the points still fills all `k` results.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Which ids a search may return.
pub trait Filter: Sync {
    fn allows(&self, id: u64) -> bool;

    /// The allowed ids, when the filter can list them: a search over few enough of them
    /// scores them directly instead of walking the graph. The list may also hold ids that
    /// are not allowed (the search asks `allows` of each), but no id twice.
    fn ids(&self) -> Option<&[u64]> {
        None
    }
}

/// Any `Fn(u64) -> bool` is a filter.
impl<F: Fn(u64) -> bool + Sync> Filter for F {
    fn allows(&self, id: u64) -> bool {
        self(id)
    }
}

/// A fixed set of allowed ids; build once, use for many searches.
#[derive(Clone, Debug, Default)]
pub struct IdSet {
    sorted: Vec<u64>,
    set: HashSet<u64, BuildHasherDefault<IdHasher>>,
}

impl IdSet {
    pub fn new(ids: impl IntoIterator<Item = u64>) -> IdSet {
        let mut sorted: Vec<u64> = ids.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let set = sorted.iter().copied().collect();
        IdSet { sorted, set }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

impl Filter for IdSet {
    #[inline]
    fn allows(&self, id: u64) -> bool {
        self.set.contains(&id)
    }

    fn ids(&self) -> Option<&[u64]> {
        Some(&self.sorted)
    }
}

/// A multiply-xorshift hash of a u64 id: a filter is probed once per visited node, and
/// SipHash would cost more than the distance. The ids come from the caller's own index,
/// so hash flooding is not a concern here.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline]
    fn write_u64(&mut self, id: u64) {
        let x = (self.0 ^ id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

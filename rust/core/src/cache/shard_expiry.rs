//! A shard's reclaiming of expired entries: a few slots on each write, and a full pass
//! when a count or the stats are read.

use super::super::clock::{self, NEVER};
use super::super::stats::Removed;
use super::Shard;

impl<K, V> Shard<K, V> {
    /// Examines up to `budget` slots round-robin and removes the expired entries.
    pub(super) fn sweep(&mut self, budget: usize, removed: &mut Removed<K, V>) {
        let now = clock::now();
        let slots = self.slab.slots() as u32;
        for _ in 0..budget {
            if self.expiring == 0 || slots == 0 {
                return;
            }
            let idx = self.sweep_cursor % slots;
            self.sweep_cursor = idx + 1;
            if let Some(n) = self.slab.get(idx) {
                if n.expires != NEVER && n.expires <= now {
                    self.remove_at(idx, removed);
                    self.stats.expirations += 1;
                }
            }
        }
    }

    /// Removes every expired entry, if any may have expired (O(1) otherwise).
    pub(crate) fn purge_expired(&mut self, removed: &mut Removed<K, V>) {
        if self.expiring == 0 {
            return;
        }
        let now = clock::now();
        if self.min_expiry > now {
            return;
        }
        let mut min = NEVER;
        for idx in 0..self.slab.slots() as u32 {
            let Some(e) = self.slab.get(idx).map(|n| n.expires) else {
                continue;
            };
            if e != NEVER && e <= now {
                self.remove_at(idx, removed);
                self.stats.expirations += 1;
            } else {
                min = min.min(e);
            }
        }
        self.min_expiry = min;
    }
}

//! A shard's reclaiming of expired entries: on a read that finds one, a few slots on
//! each write, and a full pass when a count or the stats are read.

use super::super::clock::{Clock, NEVER};
use super::super::stats::Removed;
use super::Shard;

/// Whether an entry with this expiry tick has expired; reads the clock only for an
/// entry that has a time to live.
#[inline]
pub(super) fn expired(time: &Clock, expires: u64) -> bool {
    expires != NEVER && expires <= time.now()
}

impl<K, V> Shard<K, V> {
    #[inline]
    pub(super) fn is_expired(&self, idx: u32) -> bool {
        expired(&self.time, self.slab.node(idx).expires)
    }

    /// A read found the entry expired: it goes, and the read is a miss.
    #[cold]
    #[inline(never)]
    pub(super) fn expire_on_read(&mut self, idx: u32, removed: &mut Removed<K, V>) {
        self.remove_at(idx, removed);
        self.stats.expirations += 1;
        self.stats.misses += 1;
    }

    /// Examines up to `budget` slots round-robin and removes the expired entries.
    pub(super) fn sweep(&mut self, budget: usize, removed: &mut Removed<K, V>) {
        let now = self.time.now();
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
        let now = self.time.now();
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

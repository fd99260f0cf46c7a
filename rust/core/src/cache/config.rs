//! What a cache is built from, validated once, and how it is split over shards.

use std::time::Duration;

use super::clock::Clock;
use crate::error::{Error, Result};

/// The eviction policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Strict least-recently-used eviction, exact over all shards together.
    Lru,
    /// W-TinyLFU: LRU eviction behind a frequency-based admission filter.
    LruWithFrequency,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 2] = [Policy::Lru, Policy::LruWithFrequency];
    pub const NAMES: &'static str = "\"lru\", \"lru-with-frequency\"";

    /// Parses the names used by the configuration and the Python API.
    pub fn parse(name: &str) -> Result<Policy> {
        match name {
            "lru" => Ok(Policy::Lru),
            "lru-with-frequency" => Ok(Policy::LruWithFrequency),
            other => Err(Error::UnknownName {
                kind: "policy",
                value: other.to_owned(),
                expected: Self::NAMES,
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Lru => "lru",
            Policy::LruWithFrequency => "lru-with-frequency",
        }
    }
}

/// The settings of a [`ShardedCache`](super::ShardedCache).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    /// Most entries held at once (a hard bound), >= 1.
    pub capacity: usize,
    /// Independent shards, each with its own lock; at most `capacity` (and at most
    /// `max_memory`) are used, so that every shard can hold at least one entry. With
    /// `lru-with-frequency` each shard holds an even share of both bounds.
    pub shards: usize,
    /// Default time to live of an entry; `None`: entries do not expire.
    pub ttl: Option<Duration>,
    /// Most total weight held at once (a hard bound); `None`: unbounded.
    pub max_memory: Option<u64>,
    pub policy: Policy,
    /// What entries expire by: the process's monotonic clock unless a test sets a
    /// [`ManualClock`](super::ManualClock).
    pub clock: Clock,
}

/// Most shards accepted; more would only cost memory.
pub const MAX_SHARDS: usize = 1 << 16;

impl CacheConfig {
    /// `capacity` entries in 16 shards, no ttl, no memory bound, `lru-with-frequency`.
    pub fn new(capacity: usize) -> Self {
        CacheConfig {
            capacity,
            shards: 16,
            ttl: None,
            max_memory: None,
            policy: Policy::LruWithFrequency,
            clock: Clock::System,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.capacity < 1 {
            return Err(Error::invalid(format!(
                "capacity must be >= 1, got {}",
                self.capacity
            )));
        }
        if self.shards < 1 || self.shards > MAX_SHARDS {
            return Err(Error::invalid(format!(
                "shards must be between 1 and {MAX_SHARDS}, got {}",
                self.shards
            )));
        }
        // Entries are indexed by u32 within a shard; a plain-LRU shard may hold them all.
        let per_shard = match self.policy {
            Policy::Lru => self.capacity,
            Policy::LruWithFrequency => self.capacity / self.effective_shards(),
        };
        if per_shard >= u32::MAX as usize {
            return Err(Error::invalid(format!(
                "capacity must be < {} per shard, got {} over {} shards",
                u32::MAX,
                self.capacity,
                self.effective_shards()
            )));
        }
        if let Some(ttl) = self.ttl {
            if ttl.is_zero() {
                return Err(Error::invalid("ttl must be > 0 seconds"));
            }
        }
        if self.max_memory == Some(0) {
            return Err(Error::invalid("max_memory must be >= 1"));
        }
        Ok(())
    }

    /// Shards actually used: every shard must be able to hold one entry.
    pub fn effective_shards(&self) -> usize {
        let mut n = self.shards.min(self.capacity).max(1);
        if let Some(m) = self.max_memory {
            n = n.min(m.min(usize::MAX as u64) as usize).max(1);
        }
        n
    }

    /// The entry and weight budgets of shard `i`: an even split whose sum is exactly
    /// the configured bound, so the per-shard bounds make the global bounds hard.
    pub(crate) fn shard_budget(&self, i: usize) -> (u32, u64) {
        let n = self.effective_shards();
        let cap = self.capacity / n + usize::from(i < self.capacity % n);
        let weight = match self.max_memory {
            None => u64::MAX,
            Some(m) => m / n as u64 + u64::from((i as u64) < m % n as u64),
        };
        (cap as u32, weight)
    }
}

/// Per-entry options of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryOptions {
    /// Time to live; `None`: the cache's default.
    pub ttl: Option<Duration>,
    /// The entry's weight counted against `max_memory`.
    pub weight: u32,
}

impl Default for EntryOptions {
    fn default() -> Self {
        EntryOptions {
            ttl: None,
            weight: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_sum_to_the_bounds() {
        let mut c = CacheConfig::new(1001);
        c.max_memory = Some(10_007);
        let n = c.effective_shards();
        let (caps, weights): (Vec<u32>, Vec<u64>) = (0..n).map(|i| c.shard_budget(i)).unzip();
        assert_eq!(caps.iter().map(|&x| x as usize).sum::<usize>(), 1001);
        assert_eq!(weights.iter().sum::<u64>(), 10_007);
        let mut tiny = CacheConfig::new(3);
        tiny.max_memory = Some(2);
        assert_eq!(tiny.effective_shards(), 2);
    }

    #[test]
    fn bad_settings_name_the_argument() {
        let err = |c: CacheConfig| c.validate().unwrap_err().to_string();
        assert!(err(CacheConfig::new(0)).contains("capacity"));
        let mut c = CacheConfig::new(10);
        c.shards = 0;
        assert!(err(c).contains("shards"));
        let mut c = CacheConfig::new(10);
        c.ttl = Some(Duration::ZERO);
        assert!(err(c).contains("ttl"));
        let mut c = CacheConfig::new(10);
        c.max_memory = Some(0);
        assert!(err(c).contains("max_memory"));
        assert!(Policy::parse("lfu")
            .unwrap_err()
            .to_string()
            .contains("policy"));
    }
}

//! The node-record caches (`[scalability.cache]`): a concurrent [`ShardedCache`] with
//! LRU or W-TinyLFU (`lru-with-frequency`) eviction, TTL and weight bounds, and a
//! two-level [`TieredCache`] (L1 hot, L2 large) over two of them.
//!
//! - `hash`: one keyed hash per process (hostile keys cannot choose their shard);
//! - `config`: settings, validation, and the split of the bounds over shards;
//! - `slab`: entries in one `Vec` (freed slots reused, grown up to the capacity) on
//!   intrusive `u32`-linked lists;
//! - `slot`: the table's entries (a slab index and check bits of the hash);
//! - `sketch`: TinyLFU's doorkeeper + 4-bit count-min sketch with aging
//!   (`sketch_table`: its blocks, allocated as they are first written);
//! - `prefetch`: a cache-line prefetch hint;
//! - `clock`: the clock of expiries (the process's monotonic clock, or a manual one);
//! - `shard`: one shard's table and eviction policy (`shard_expiry`: its TTL sweep);
//! - `sharded`, `tiered`: the public caches; `stats`: counters and [`Removed`].
//!
//! Bounds are hard. With `lru` the shards form one exact LRU: entries and weight are
//! counted globally and the globally least recently used entry is evicted. With
//! `lru-with-frequency` each shard runs W-TinyLFU on an even share of `capacity` and
//! `max_memory` (the shares sum to the bounds), so its admission decisions stay local
//! to one lock.

mod clock;
mod config;
pub mod hash;
mod prefetch;
mod shard;
mod sharded;
mod sketch;
mod sketch_table;
mod slab;
mod slot;
mod stats;
mod tiered;

pub use clock::{Clock, ManualClock};
pub use config::{CacheConfig, EntryOptions, Policy, MAX_SHARDS};
pub use sharded::{CacheOps, ShardedCache, StdOps};
pub use stats::{CacheStats, Removed};
pub use tiered::{TieredCache, TieredStats};

#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod tests;

//! llmkg-core: the performance core of llmkg, in pure Rust (no PyO3).
//!
//! - [`hnsw`]: the HNSW index with per-node precision, filters, deletes and snapshots;
//! - [`facts`]: each node's subject, predicate, object and confidence, which search
//!   filters read during the traversal;
//! - [`quant`]: the precision levels, their codecs and the SIMD distance kernels;
//! - [`embed`]: the deterministic fact embedder (feature hashing);
//! - [`cache`]: the concurrent sharded cache with frequency-aware admission;
//! - [`linker`]: index links after the commit, searchable while they wait;
//! - [`background`]: the low-priority pool that background work runs on.
//!
//! The `llmkg-py` crate binds these for Python; nothing here knows about Python.

pub mod background;
pub mod cache;
pub mod embed;
pub mod error;
pub mod facts;
pub mod hnsw;
pub mod linker;
pub mod quant;

pub use error::{Error, Result};

//! What an index is built with and searched with, and what it reports.

use super::graph::{MemoryBreakdown, MAX_LEVEL};
use crate::error::{Error, Result};

/// How similarity is measured; every score is "higher is closer".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Metric {
    /// Cosine similarity (vectors are normalized on the way in).
    Cosine = 0,
    /// Inner product.
    Ip = 1,
    /// Negative squared Euclidean distance.
    L2 = 2,
}

impl Metric {
    /// Every metric, in the order of its `repr(u8)` value (what a saved index records).
    pub const ALL: [Metric; 3] = [Metric::Cosine, Metric::Ip, Metric::L2];

    pub fn parse(value: &str) -> Result<Metric> {
        match value {
            "cosine" => Ok(Metric::Cosine),
            "ip" | "dot" => Ok(Metric::Ip),
            "l2" | "euclidean" => Ok(Metric::L2),
            _ => Err(Error::UnknownName {
                kind: "metric",
                value: value.to_string(),
                expected: "\"cosine\", \"ip\", \"l2\"",
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
            Metric::L2 => "l2",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Metric> {
        Metric::ALL.get(v as usize).copied()
    }
}

/// Construction parameters of an index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub dim: usize,
    pub metric: Metric,
    /// Links per node above level 0 (twice as many at level 0).
    pub m: usize,
    pub ef_construction: usize,
    /// Default beam width of searches.
    pub ef_search: usize,
    pub seed: u64,
    /// Keep every node's f32 vector besides its code, for rescoring.
    pub keep_full: bool,
    /// Highest level a new node may get (at most 15). Not part of the file format: an
    /// insert-time setting, like `ef_search` a search-time one (see `Hnsw::tune`).
    pub max_level: usize,
}

impl Params {
    pub fn new(dim: usize) -> Params {
        Params {
            dim,
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 200,
            ef_search: 100,
            seed: 42,
            keep_full: true,
            max_level: MAX_LEVEL,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(1..=65_536).contains(&self.dim) {
            return Err(Error::invalid(format!(
                "dim must be between 1 and 65536, got {}",
                self.dim
            )));
        }
        if !(2..=256).contains(&self.m) {
            return Err(Error::invalid(format!(
                "m must be between 2 and 256, got {}",
                self.m
            )));
        }
        if self.ef_construction < 1 {
            return Err(Error::invalid("ef_construction must be at least 1"));
        }
        if self.ef_search < 1 {
            return Err(Error::invalid("ef_search must be at least 1"));
        }
        if self.max_level > MAX_LEVEL {
            return Err(Error::invalid(format!(
                "max_level must be at most {MAX_LEVEL}, got {}",
                self.max_level
            )));
        }
        Ok(())
    }
}

/// Options of one search.
#[derive(Clone, Copy, Debug)]
pub struct SearchOptions {
    pub k: usize,
    /// Beam width; the index's `ef_search` when `None`; never below `k`.
    pub ef: Option<usize>,
    /// Re-rank the candidates with the full vectors (when kept).
    pub rescore: bool,
    /// Score every allowed node instead of walking the graph.
    pub exact: bool,
}

impl SearchOptions {
    pub fn new(k: usize) -> SearchOptions {
        SearchOptions {
            k,
            ef: None,
            rescore: true,
            exact: false,
        }
    }
}

/// One search hit.
pub type Hit = (u64, f32);

/// A snapshot of the index's state, for monitoring.
#[derive(Clone, Debug)]
pub struct Stats {
    pub len: usize,
    pub deleted: usize,
    pub slots: usize,
    pub free_slots: usize,
    pub top_level: usize,
    /// Nodes (live or awaiting compaction) per precision, in [`Precision::ALL`] order.
    pub per_precision: [usize; 4],
    pub memory: MemoryBreakdown,
    pub kernels: &'static str,
    pub params: Params,
}

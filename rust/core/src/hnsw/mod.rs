//! placeholder, filled in by the hnsw work

//! placeholder, filled in by the embed work

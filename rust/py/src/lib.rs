//! `llmkg._core`: PyO3 bindings over llmkg-core. Bindings only: convert arguments into owned
//! Rust values while attached, release the GIL for work longer than winning it back costs
//! (`gil`), map errors. No logic lives here.

use llmkg_core::cache::Policy;
use llmkg_core::hnsw::Metric;
use llmkg_core::quant::Precision;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod cache;
mod convert;
mod embed;
mod errors;
mod facts;
mod gil;
mod hnsw;
mod linker;
mod rescore;

static LOG_RESET: std::sync::OnceLock<pyo3_log::ResetHandle> = std::sync::OnceLock::new();

/// Forget the cached levels of the core's loggers (call after changing Python's logging).
#[pyfunction]
fn reset_log_levels() {
    if let Some(handle) = LOG_RESET.get() {
        handle.reset();
    }
}

/// The names the core accepts, as module-level tuples, so that Python validates and
/// documents them without copies of its own: `PRECISIONS` (from most to least memory per
/// node), `CACHE_POLICIES` (eviction policies of a cache) and `METRICS` (similarities).
fn add_names(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add(
        "PRECISIONS",
        PyTuple::new(py, Precision::ALL.map(Precision::name))?,
    )?;
    m.add(
        "CACHE_POLICIES",
        PyTuple::new(py, Policy::ALL.map(Policy::name))?,
    )?;
    m.add("METRICS", PyTuple::new(py, Metric::ALL.map(Metric::name))?)?;
    Ok(())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The core's `log` records go to Python's logging (logger "llmkg_core...").
    // Levels are cached for speed: `reset_log_levels()` after changing them.
    if let Ok(handle) = pyo3_log::try_init() {
        LOG_RESET.get_or_init(|| handle);
    }
    m.add_function(wrap_pyfunction!(reset_log_levels, m)?)?;
    add_names(m)?;
    hnsw::register(m)?;
    linker::register(m)?;
    facts::register(m)?;
    embed::register(m)?;
    cache::register(m)?;
    rescore::register(m)?;
    Ok(())
}

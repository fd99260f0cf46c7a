//! `llmkg._core`: PyO3 bindings over llmkg-core. Bindings only: convert arguments into owned
//! Rust values while attached, release the GIL for the work, map errors. No logic lives here.

use pyo3::prelude::*;

mod cache;
mod convert;
mod embed;
mod errors;
mod gil;
mod hnsw;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    hnsw::register(m)?;
    embed::register(m)?;
    cache::register(m)?;
    Ok(())
}

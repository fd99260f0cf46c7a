//! The one way bindings run core work: detached from the interpreter (so other Python
//! threads run meanwhile), with panics caught and errors mapped in one place.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::CoreError;

/// Run `f` with the GIL released; a core error becomes its Python exception and a panic
/// a `RuntimeError`, never a crash of the interpreter.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> llmkg_core::Result<T> + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result.map_err(|e| CoreError(e).into()),
        Err(panic) => Err(panic_error(panic)),
    }
}

/// The `RuntimeError` that a caught panic becomes.
#[cold]
pub fn panic_error(panic: Box<dyn Any + Send>) -> PyErr {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    PyRuntimeError::new_err(format!("llmkg internal error (please report it): {what}"))
}

/// A rayon pool of `threads` workers, or `None` for the global pool (all cores).
pub fn thread_pool(threads: Option<usize>) -> PyResult<Option<rayon::ThreadPool>> {
    match threads {
        None => Ok(None),
        Some(0) => Err(PyValueError::new_err("threads must be at least 1")),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(Some)
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} threads: {e}"))),
    }
}

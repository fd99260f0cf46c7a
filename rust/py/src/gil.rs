//! How bindings run core work: detached from the interpreter (so other Python threads run
//! meanwhile), with panics caught and errors mapped in one place; or, when it takes only
//! microseconds, attached ([`attached_if`]).

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

/// Run `f` attached when `short`, else detached. A thread that detaches must win the GIL
/// back afterwards, which under a loaded server's contention costs up to a switch
/// interval (0.3 ms there), more with several threads waiting: far more than work of a
/// few microseconds, which therefore keeps the GIL.
pub fn attached_if<T: Send>(py: Python<'_>, short: bool, f: impl FnOnce() -> T + Send) -> T {
    if short {
        f()
    } else {
        py.detach(f)
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

//! How bindings run core work: detached from the interpreter (so other Python threads run
//! meanwhile), with panics caught and errors mapped in one place; or, when it takes only
//! microseconds, attached ([`attached_if`]).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

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

/// The nice value of the background pool's threads (0 is normal, 19 the lowest).
pub const BACKGROUND_NICE: i32 = 10;

/// The shared pool, one thread per core, that background work runs on (index inserts
/// made after the allocation answered). On Linux its threads run under `SCHED_IDLE`, so
/// that they take the cores only when requests leave them idle and give a core up the
/// moment a request's thread wakes; at nice [`BACKGROUND_NICE`] they kept it for the rest
/// of their time slice, a millisecond or more. Where `SCHED_IDLE` is refused, they keep
/// the nice value.
pub fn background_pool() -> PyResult<&'static rayon::ThreadPool> {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("llmkg-bg-{i}"))
        .start_handler(|_| lower_this_threads_priority())
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the background pool: {e}")))?;
    // A racing caller may have built one first: theirs is kept, this one is dropped.
    Ok(POOL.get_or_init(|| pool))
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours. On Linux
    // `who = 0` with PRIO_PROCESS names the calling thread only (each thread has its own
    // nice value). A refusal leaves the priority unchanged, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads the sched_param passed, which outlives the
    // call; pid 0 is the calling thread. Any user may move a thread to SCHED_IDLE; a
    // refusal leaves the nice value set above.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {
    // Elsewhere PRIO_PROCESS would lower the whole process: the pool keeps its priority.
}

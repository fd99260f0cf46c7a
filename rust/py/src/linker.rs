//! `llmkg.Linker`: a thin wrapper over `llmkg_core::linker`.

use std::sync::Arc;
use std::time::Duration;

use llmkg_core::linker::{BeforeLink, LinkError, Linker as CoreLinker, LinkerSettings};
use llmkg_core::quant::Precision;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::convert;
use crate::errors::CoreError;
use crate::hnsw::{HnswIndex, SearchRequest};

pyo3::create_exception!(
    _core,
    LinkerError,
    PyRuntimeError,
    "The index linker cannot link now (it keeps failing, or it stopped): the nodes stay \
     searchable, but what needs them in the index (a checkpoint) cannot proceed."
);

pyo3::create_exception!(
    _core,
    LinkerTimeoutError,
    LinkerError,
    "A wait on the index linker lasted longer than its deadline."
);

fn link_error(e: LinkError) -> PyErr {
    match e {
        e @ LinkError::Timeout(..) => LinkerTimeoutError::new_err(e.to_string()),
        LinkError::Unavailable(msg) => LinkerError::new_err(msg),
    }
}

fn seconds(value: Option<f64>, name: &str) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| PyValueError::new_err(format!("{name} must be seconds >= 0, got {s}")))
        })
        .transpose()
}

/// Links committed nodes into an `HnswIndex` on a thread of its own, and finds them
/// before and after: `search` scores the nodes not yet linked exactly and merges them
/// with the index's answer.
///
/// An allocation calls `wait_room` before it commits and `add` after; `wait_idle` waits
/// for every node queued before it; `discard` makes sure a node is never linked (a
/// delete). Waits last at most `timeout` seconds (`LinkerTimeoutError`) and fail at once
/// with `LinkerError` once `max_attempts` links in a row have failed. A failed link is
/// retried after `retry_delay` seconds, doubling up to `max_retry_delay`. At most
/// `max_pending` nodes wait. `before_link(ids)`, if given, runs (with the GIL) before
/// each batch; an exception fails the link: a seam for tests and tracing.
#[pyclass(frozen, module = "llmkg._core")]
pub struct Linker {
    inner: Arc<CoreLinker>,
}

#[pymethods]
impl Linker {
    #[new]
    #[pyo3(signature = (index, *, timeout = 30.0, max_attempts = 5, retry_delay = 1.0, max_retry_delay = 60.0, max_pending = 256, before_link = None))]
    fn new(
        index: &Bound<'_, HnswIndex>,
        timeout: f64,
        max_attempts: u32,
        retry_delay: f64,
        max_retry_delay: f64,
        max_pending: usize,
        before_link: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let settings = LinkerSettings {
            timeout: seconds(Some(timeout), "timeout")?.unwrap_or_default(),
            max_attempts,
            retry_delay: seconds(Some(retry_delay), "retry_delay")?.unwrap_or_default(),
            max_retry_delay: seconds(Some(max_retry_delay), "max_retry_delay")?.unwrap_or_default(),
            max_pending,
        };
        let hook: Option<BeforeLink> = before_link.map(|callable| {
            Box::new(move |ids: &[u64]| {
                Python::attach(|py| {
                    callable
                        .call1(py, (PyList::new(py, ids).map_err(|e| e.to_string())?,))
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            }) as BeforeLink
        });
        let index = index.get().inner.clone();
        let inner = CoreLinker::start(index, settings, hook).map_err(CoreError)?;
        Ok(Linker {
            inner: Arc::new(inner),
        })
    }

    /// Queue node `id` with `vector` for linking at `precision`; it is pending, and found
    /// by `search`, from now on. Never waits.
    #[pyo3(signature = (id, vector, precision = "full"))]
    fn add(&self, id: u64, vector: &Bound<'_, PyAny>, precision: &str) -> PyResult<()> {
        let (vector, _, _) = convert::matrix(vector, "vector", self.inner.index().dim(), true)?;
        let precision = Precision::parse(precision).map_err(CoreError)?;
        // A lock and a copy of one row: microseconds, with the GIL kept.
        Ok(self.inner.add(id, &vector, precision).map_err(CoreError)?)
    }

    /// Return once fewer than `max_pending` nodes wait for their link.
    #[pyo3(signature = (timeout = None))]
    fn wait_room(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout, "timeout")?;
        py.detach(|| self.inner.wait_room(timeout))
            .map_err(link_error)
    }

    /// Return once every node queued before the call is in the index.
    #[pyo3(signature = (timeout = None))]
    fn wait_idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout, "timeout")?;
        py.detach(|| self.inner.wait_idle(timeout))
            .map_err(link_error)
    }

    /// Return once node `id` is in the index (at once if it is not pending).
    #[pyo3(signature = (id, timeout = None))]
    fn wait_for(&self, py: Python<'_>, id: u64, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout, "timeout")?;
        py.detach(|| self.inner.wait_for(id, timeout))
            .map_err(link_error)
    }

    /// Make sure node `id` is not linked after this returns: dropped if still queued,
    /// else its link under way is waited for (the caller then removes it from the index).
    #[pyo3(signature = (id, timeout = None))]
    fn discard(&self, py: Python<'_>, id: u64, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout, "timeout")?;
        py.detach(|| self.inner.discard(id, timeout))
            .map_err(link_error)
    }

    /// Link what is queued (one attempt if links fail), then stop the linker's thread.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close())
    }

    /// The `k` nodes closest to each of `queries`, pending ones included: `(ids, scores)`,
    /// best first, as `HnswIndex.search` gives them (a `(dim,)` query or an `(n, dim)`
    /// batch; the other arguments are `HnswIndex.search`'s).
    #[pyo3(signature = (queries, k = 10, ef = None, rescore = true, filter = None, exact = false, wait = true))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: usize,
        ef: Option<usize>,
        rescore: bool,
        filter: Option<&Bound<'py, PyAny>>,
        exact: bool,
        wait: bool,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let linker = &self.inner;
        let dim = linker.index().dim();
        let request = SearchRequest::parse(queries, dim, k, ef, rescore, filter, exact)?;
        request.run(py, wait, |queries, opts, f| {
            linker.search_many(queries, opts, f, wait)
        })
    }

    /// The pending ids, oldest first.
    fn pending(&self) -> Vec<u64> {
        self.inner.pending()
    }

    /// The precision a pending node enters the index with (`None`: not pending).
    fn precision_of(&self, id: u64) -> Option<&'static str> {
        self.inner.precision_of(id).map(Precision::name)
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> bool {
        id.extract::<u64>().is_ok_and(|id| self.inner.contains(id))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// `(ok, detail)`: whether links succeed, and a line that says how the linker does.
    fn health(&self) -> (bool, String) {
        self.inner.health()
    }

    /// Threads waiting on the linker right now (checkpoints, deletes, writers held back).
    #[getter]
    fn waiting(&self) -> usize {
        self.inner.waiting()
    }

    /// Batches linked so far.
    #[getter]
    fn batches(&self) -> u64 {
        self.inner.stats().batches
    }

    /// Of `batches`, those linked at normal priority (not on the idle-priority pool)
    /// because something waited for them.
    #[getter]
    fn urgent_batches(&self) -> u64 {
        self.inner.stats().urgent_batches
    }

    /// Nodes linked so far.
    #[getter]
    fn inserted(&self) -> u64 {
        self.inner.stats().inserted
    }

    /// Failed links in all.
    #[getter]
    fn failed_links(&self) -> u64 {
        self.inner.stats().failed_links
    }

    /// The last link's error, if any link failed.
    #[getter]
    fn last_error(&self) -> Option<String> {
        self.inner.stats().last_error
    }

    /// Whether `max_attempts` links failed in a row (or the linker stopped).
    #[getter]
    fn failing(&self) -> bool {
        self.inner.stats().failing
    }

    fn __repr__(&self) -> String {
        let s = self.inner.stats();
        format!(
            "Linker(pending={}, inserted={}, failing={})",
            s.pending, s.inserted, s.failing
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Linker>()?;
    m.add("LinkerError", py.get_type::<LinkerError>())?;
    m.add("LinkerTimeoutError", py.get_type::<LinkerTimeoutError>())?;
    Ok(())
}

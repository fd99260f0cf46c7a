//! `llmkg.FactIndex` and `llmkg.FactFilter`: thin wrappers over `llmkg_core::facts`.
//!
//! Every call is microseconds of work, so it keeps the GIL, unless the lock is taken: then
//! it releases the GIL while it waits (a writer may wait for a search under way).

use std::sync::Arc;

use llmkg_core::facts::{self, FactQuery, FactsRead, FactsWrite};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;
use crate::errors::CoreError;

/// Every live node's subject, predicate, object and confidence, for search filters.
///
/// `filter(...)` makes a `FactFilter` that `HnswIndex.search` evaluates during its
/// traversal, reading these facts in place (no list of ids is built). Safe to share
/// between threads; searches never block each other, and a write waits for the filtered
/// searches under way.
#[pyclass(frozen, module = "llmkg._core")]
pub struct FactIndex {
    inner: Arc<facts::FactIndex>,
}

/// A search filter over a `FactIndex`: exact subject, predicate and object, and a floor on
/// the confidence. Pass it to `HnswIndex.search(filter=...)`, or test one id with
/// `id in flt`. It is evaluated against the facts of the moment of each use.
#[pyclass(frozen, module = "llmkg._core")]
pub struct FactFilter {
    pub(crate) facts: Arc<facts::FactIndex>,
    pub(crate) query: FactQuery,
}

/// Run `f` on the facts under the read lock, waiting for it without the GIL.
fn reading<T: Send>(
    py: Python<'_>,
    facts: &facts::FactIndex,
    f: impl FnOnce(&FactsRead) -> T + Send,
) -> T {
    match facts.try_read() {
        Some(r) => f(&r),
        None => py.detach(|| f(&facts.read())),
    }
}

/// Run `f` on the facts under the write lock, waiting for it without the GIL.
fn writing<T: Send>(
    py: Python<'_>,
    facts: &facts::FactIndex,
    f: impl FnOnce(&mut FactsWrite) -> T + Send,
) -> T {
    match facts.try_write() {
        Some(mut w) => f(&mut w),
        None => py.detach(|| f(&mut facts.write())),
    }
}

#[pymethods]
impl FactIndex {
    #[new]
    fn new() -> Self {
        FactIndex {
            inner: Arc::new(facts::FactIndex::new()),
        }
    }

    /// Record node `node_id`; a node already there takes the new triple and confidence.
    #[pyo3(signature = (node_id, subject, predicate, object, confidence))]
    fn add(
        &self,
        py: Python<'_>,
        node_id: &Bound<'_, PyAny>,
        subject: &str,
        predicate: &str,
        object: &str,
        confidence: f64,
    ) -> PyResult<()> {
        let id = convert::one_id(node_id)?;
        writing(py, &self.inner, |w| {
            w.add(id, [subject, predicate, object], confidence)
        })
        .map_err(|e| CoreError(e).into())
    }

    /// Forget node `node_id`; False if it was not there.
    fn remove(&self, py: Python<'_>, node_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let id = convert::one_id(node_id)?;
        Ok(writing(py, &self.inner, |w| w.remove(id)))
    }

    /// Change the confidence of live node `node_id`; False (nothing changed) if it is not
    /// there.
    fn set_confidence(
        &self,
        py: Python<'_>,
        node_id: &Bound<'_, PyAny>,
        confidence: f64,
    ) -> PyResult<bool> {
        let id = convert::one_id(node_id)?;
        writing(py, &self.inner, |w| w.set_confidence(id, confidence))
            .map_err(|e| CoreError(e).into())
    }

    /// Whether a live node carries exactly this triple.
    fn contains(&self, py: Python<'_>, subject: &str, predicate: &str, object: &str) -> bool {
        reading(py, &self.inner, |r| {
            r.contains([subject, predicate, object])
        })
    }

    /// The confidence of every live node, or of those of `ids` (any iterable of ints) that
    /// are live.
    #[pyo3(signature = (ids = None))]
    fn confidences<'py>(
        &self,
        py: Python<'py>,
        ids: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let found = match ids {
            None => reading(py, &self.inner, |r| r.confidences()),
            Some(ids) => {
                let ids = ids
                    .try_iter()?
                    .map(|id| convert::one_id(&id?))
                    .collect::<PyResult<Vec<u64>>>()?;
                reading(py, &self.inner, |r| {
                    ids.iter()
                        .filter_map(|&id| Some((id, r.confidence(id)?)))
                        .collect()
                })
            }
        };
        let out = PyDict::new(py);
        for (id, confidence) in found {
            out.set_item(id, confidence)?;
        }
        Ok(out)
    }

    /// Live nodes.
    fn __len__(&self, py: Python<'_>) -> usize {
        reading(py, &self.inner, |r| r.len())
    }

    /// Whether `node_id` is a live node.
    fn __contains__(&self, py: Python<'_>, node_id: &Bound<'_, PyAny>) -> bool {
        node_id
            .extract::<u64>()
            .is_ok_and(|id| reading(py, &self.inner, |r| r.confidence(id).is_some()))
    }

    /// Bytes held (allocated capacity included).
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        reading(py, &self.inner, |r| r.memory_bytes())
    }

    /// A filter for `HnswIndex.search`: the live nodes with exactly these terms (None: any)
    /// whose confidence is at least `min_confidence`.
    #[pyo3(signature = (subject = None, predicate = None, object = None, min_confidence = None))]
    fn filter(
        &self,
        subject: Option<&str>,
        predicate: Option<&str>,
        object: Option<&str>,
        min_confidence: Option<f64>,
    ) -> PyResult<FactFilter> {
        let query =
            FactQuery::new([subject, predicate, object], min_confidence).map_err(CoreError)?;
        Ok(FactFilter {
            facts: Arc::clone(&self.inner),
            query,
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let len = reading(py, &self.inner, |r| r.len());
        format!("FactIndex(len={len})")
    }
}

#[pymethods]
impl FactFilter {
    /// Whether the filter allows node `node_id` now.
    fn allows(&self, py: Python<'_>, node_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let id = convert::one_id(node_id)?;
        Ok(self.test(py, id))
    }

    fn __contains__(&self, py: Python<'_>, node_id: &Bound<'_, PyAny>) -> bool {
        node_id.extract::<u64>().is_ok_and(|id| self.test(py, id))
    }

    fn __repr__(&self) -> String {
        let mut parts: Vec<String> = (0..3)
            .filter_map(|f| Some(format!("{}={:?}", facts::FIELDS[f], self.query.term(f)?)))
            .collect();
        if let Some(floor) = self.query.min_confidence() {
            parts.push(format!("min_confidence={floor}"));
        }
        format!("FactFilter({})", parts.join(", "))
    }
}

impl FactFilter {
    fn test(&self, py: Python<'_>, id: u64) -> bool {
        let query = &self.query;
        reading(py, &self.facts, |r| r.allows(query, id))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FactIndex>()?;
    m.add_class::<FactFilter>()?;
    Ok(())
}

//! `TieredCache`: two `ShardedCache`s as L1 and L2 (see `cache.rs` for keys and the GIL).

use llmkg_core::cache::{Removed, TieredCache};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::CoreError;

use super::{entry_options, key_error, or_default, stats_dict, with_key, PyKey, PyShardedCache};

/// Two caches as tiers: `get` tries `l1`, then `l2`, and copies an `l2` hit into `l1`;
/// `put` writes both; `pop` removes from both. Both must expire by the same clock.
#[pyclass(frozen, module = "llmkg._core", name = "TieredCache")]
pub struct PyTieredCache {
    inner: TieredCache<PyKey, Py<PyAny>>,
    l1: Py<PyShardedCache>,
    l2: Py<PyShardedCache>,
}

impl PyTieredCache {
    fn lookup(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        with_key(key, |ops, h, k, removed| {
            self.inner.get_hashed(ops, h, &k, removed)
        })
    }
}

#[pymethods]
impl PyTieredCache {
    #[new]
    fn new(l1: Bound<'_, PyShardedCache>, l2: Bound<'_, PyShardedCache>) -> PyResult<Self> {
        if l1.is(&l2) {
            return Err(PyValueError::new_err(
                "l1 and l2 must be two different caches",
            ));
        }
        let inner = TieredCache::new(l1.get().inner.clone(), l2.get().inner.clone())
            .map_err(CoreError::from)?;
        Ok(PyTieredCache {
            inner,
            l1: l1.unbind(),
            l2: l2.unbind(),
        })
    }

    /// The value from L1, else from L2 (then copied into L1), else `default`.
    #[pyo3(signature = (key, default=None))]
    fn get(&self, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        Ok(or_default(self.lookup(key)?, default, key.py()))
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lookup(key)?.ok_or_else(|| key_error(key))
    }

    /// Writes the entry into both tiers.
    #[pyo3(signature = (key, value, *, ttl=None, size=None))]
    fn put(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        size: Option<i64>,
    ) -> PyResult<()> {
        let opts = entry_options(value, ttl, size)?;
        let value = value.clone().unbind();
        with_key(key, |ops, h, k, removed| {
            self.inner.insert_hashed(ops, h, k, value, opts, removed);
        })
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(key, value, None, None)
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_key(key, |ops, h, k, removed| {
            self.inner.contains_hashed(ops, h, &k, removed)
        })
    }

    /// Removes `key` from both tiers; returns its value or `default`.
    #[pyo3(signature = (key, default=None))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let found = with_key(key, |ops, h, k, removed| {
            self.inner.remove_hashed(ops, h, &k, removed)
        })?;
        Ok(or_default(found, default, key.py()))
    }

    /// Removes every entry of both tiers; the counters of `stats()` are kept.
    fn clear(&self) {
        let mut removed = Removed::new();
        self.inner.clear_into(&mut removed);
    }

    /// `{"hits", "misses", "hit_rate"}` of tiered lookups, plus each tier's own
    /// `stats()` under `"l1"` and `"l2"`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut removed = Removed::new();
        let s = self.inner.stats_into(&mut removed);
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        let total = s.hits + s.misses;
        d.set_item(
            "hit_rate",
            if total == 0 {
                0.0
            } else {
                s.hits as f64 / total as f64
            },
        )?;
        d.set_item("l1", stats_dict(py, &s.l1)?)?;
        d.set_item("l2", stats_dict(py, &s.l2)?)?;
        Ok(d)
    }

    /// The first tier.
    #[getter]
    fn l1(&self, py: Python<'_>) -> Py<PyShardedCache> {
        self.l1.clone_ref(py)
    }

    /// The second tier.
    #[getter]
    fn l2(&self, py: Python<'_>) -> Py<PyShardedCache> {
        self.l2.clone_ref(py)
    }
}

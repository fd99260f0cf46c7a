//! `llmkg.HnswIndex` and `llmkg.IdFilter`: thin wrappers over `llmkg_core::hnsw`.

use std::path::PathBuf;
use std::sync::Arc;

use llmkg_core::facts::{FactIndex, FactQuery};
use llmkg_core::hnsw::{Filter, Hit, Hnsw, IdSet, Metric, Params, SearchOptions};
use llmkg_core::quant::Precision;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::convert;
use crate::errors::{CoreError, IndexBusyError};
use crate::facts::FactFilter;
use crate::gil::{detached, thread_pool};

/// Id that fills result slots when fewer than `k` nodes match (`2**64 - 1`).
pub const MISSING_ID: u64 = u64::MAX;

/// An HNSW index over float32 vectors with per-node precision.
///
/// Scores are "higher is closer": cosine similarity, inner product, or the negative
/// squared distance for `l2`. Every method that does real work releases the GIL; the
/// index is safe to share between threads.
///
/// - `dim`: the vectors' dimension (1 to 65536).
/// - `metric`: `"cosine"` (vectors are normalized on the way in), `"ip"` (inner product)
///   or `"l2"`.
/// - `m`: links per node above level 0, twice as many at level 0 (2 to 256).
/// - `ef_construction`: beam width when a node is linked.
/// - `ef_search`: default beam width of searches.
/// - `seed`: seed of the levels drawn for new nodes.
/// - `keep_full`: keep every node's full vector beside its code, for rescoring.
/// - `max_level`: highest level a new node may get (0 to 15).
#[pyclass(frozen, module = "llmkg._core")]
pub struct HnswIndex {
    pub(crate) inner: Arc<Hnsw>,
}

/// A reusable set of allowed ids for filtered search.
#[pyclass(frozen, module = "llmkg._core")]
pub struct IdFilter {
    inner: Arc<IdSet>,
}

#[pymethods]
impl IdFilter {
    #[new]
    fn new(py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<Self> {
        let ids = convert::ids(ids, "ids")?;
        let inner = detached(py, || Ok(IdSet::new(ids)))?;
        Ok(IdFilter {
            inner: Arc::new(inner),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> bool {
        id.extract::<u64>().is_ok_and(|id| self.inner.allows(id))
    }

    fn __repr__(&self) -> String {
        format!("IdFilter(<{} ids>)", self.inner.len())
    }
}

fn parse_precisions(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Precision>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if obj.is_instance_of::<PyString>() {
        let name: String = obj.extract()?;
        return Ok(vec![Precision::parse(&name).map_err(CoreError)?]);
    }
    let names: Vec<String> = obj.extract().map_err(|_| {
        PyTypeError::new_err("precision must be None, a str, or a sequence of str (one per row)")
    })?;
    names
        .iter()
        .map(|n| Precision::parse(n).map_err(|e| CoreError(e).into()))
        .collect()
}

/// A search's `filter` argument, owned so that the search runs detached.
enum SearchFilter {
    Ids(Arc<IdSet>),
    /// Read in place under the facts' read lock, for the whole search.
    Facts(Arc<FactIndex>, FactQuery),
}

impl SearchFilter {
    /// `search(filter)` with this filter in force: under the facts' read lock for a fact
    /// filter, taken at once or not at all (`Ok(None)`) when `wait` is false.
    fn apply<R>(
        filter: Option<&SearchFilter>,
        wait: bool,
        search: impl FnOnce(Option<&dyn Filter>) -> llmkg_core::Result<Option<R>>,
    ) -> llmkg_core::Result<Option<R>> {
        match filter {
            None => search(None),
            Some(SearchFilter::Ids(ids)) => search(Some(ids.as_ref())),
            Some(SearchFilter::Facts(facts, query)) => {
                let read = if wait {
                    facts.read()
                } else {
                    match facts.try_read() {
                        Some(read) => read,
                        None => return Ok(None),
                    }
                };
                search(Some(&read.filter(query)))
            }
        }
    }
}

fn parse_filter(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<SearchFilter>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => {
            if let Ok(f) = o.cast::<IdFilter>() {
                return Ok(Some(SearchFilter::Ids(f.get().inner.clone())));
            }
            if let Ok(f) = o.cast::<FactFilter>() {
                let f = f.get();
                return Ok(Some(SearchFilter::Facts(f.facts.clone(), f.query.clone())));
            }
            let ids = IdSet::new(convert::ids(o, "filter")?);
            Ok(Some(SearchFilter::Ids(Arc::new(ids))))
        }
    }
}

/// Search results as numpy arrays `(ids, scores)`: `(k,)` for one query (`one`), else
/// `(rows, k)`; slots beyond the hits found hold `MISSING_ID` and `-inf`.
fn hit_arrays<'py>(
    py: Python<'py>,
    hits: &[Vec<(u64, f32)>],
    k: usize,
    one: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let rows = hits.len();
    let mut ids = vec![MISSING_ID; rows * k];
    let mut scores = vec![f32::NEG_INFINITY; rows * k];
    for (r, row) in hits.iter().enumerate() {
        for (j, &(id, score)) in row.iter().take(k).enumerate() {
            ids[r * k + j] = id;
            scores[r * k + j] = score;
        }
    }
    if one {
        return Ok((
            ids.into_pyarray(py).into_any(),
            scores.into_pyarray(py).into_any(),
        ));
    }
    let shape = (rows, k);
    // The lengths are rows * k by construction, so the shapes always fit.
    let as_matrix = |e: numpy::ndarray::ShapeError| PyRuntimeError::new_err(e.to_string());
    let ids = Array2::from_shape_vec(shape, ids).map_err(as_matrix)?;
    let scores = Array2::from_shape_vec(shape, scores).map_err(as_matrix)?;
    Ok((
        ids.into_pyarray(py).into_any(),
        scores.into_pyarray(py).into_any(),
    ))
}

/// A search call's arguments, converted while attached (owned, so that the search runs
/// detached): what `HnswIndex.search` and `Linker.search` share.
pub(crate) struct SearchRequest {
    queries: Vec<f32>,
    /// A `(dim,)` query, answered with `(k,)` arrays.
    one: bool,
    filter: Option<SearchFilter>,
    opts: SearchOptions,
}

impl SearchRequest {
    pub(crate) fn parse(
        queries: &Bound<'_, PyAny>,
        dim: usize,
        k: usize,
        ef: Option<usize>,
        rescore: bool,
        filter: Option<&Bound<'_, PyAny>>,
        exact: bool,
    ) -> PyResult<SearchRequest> {
        let (queries, _, one) = convert::matrix(queries, "queries", dim, true)?;
        Ok(SearchRequest {
            queries,
            one,
            filter: parse_filter(filter)?,
            opts: SearchOptions {
                k,
                ef,
                rescore,
                exact,
            },
        })
    }

    /// `search(queries, opts, filter)` detached, with the filter in force (`wait`: see
    /// `SearchFilter::apply`); its hits as numpy arrays, or `IndexBusyError` when it
    /// declined to wait.
    pub(crate) fn run<'py>(
        self,
        py: Python<'py>,
        wait: bool,
        search: impl FnOnce(
                &[f32],
                SearchOptions,
                Option<&dyn Filter>,
            ) -> llmkg_core::Result<Option<Vec<Vec<Hit>>>>
            + Send,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let SearchRequest {
            queries,
            one,
            filter,
            opts,
        } = self;
        let hits = detached(py, || {
            SearchFilter::apply(filter.as_ref(), wait, |f| search(&queries, opts, f))
        })?
        .ok_or_else(|| IndexBusyError::new_err("the index is held by a writer"))?;
        hit_arrays(py, &hits, opts.k, one)
    }
}

impl HnswIndex {
    /// The index's parameters (see the note at `__len__`).
    fn params(&self, py: Python<'_>) -> Params {
        self.inner
            .try_params()
            .unwrap_or_else(|| py.detach(|| self.inner.params()))
    }
}

#[pymethods]
impl HnswIndex {
    #[new]
    #[pyo3(signature = (dim, metric = "cosine", m = 16, ef_construction = 200, ef_search = 100, seed = 42, keep_full = true, max_level = 15))]
    #[allow(clippy::too_many_arguments)] // the Python constructor's keyword arguments
    fn new(
        dim: usize,
        metric: &str,
        m: usize,
        ef_construction: usize,
        ef_search: usize,
        seed: u64,
        keep_full: bool,
        max_level: usize,
    ) -> PyResult<Self> {
        let params = Params {
            dim,
            metric: Metric::parse(metric).map_err(CoreError)?,
            m,
            ef_construction,
            ef_search,
            seed,
            keep_full,
            max_level,
        };
        Ok(HnswIndex {
            inner: Arc::new(Hnsw::new(params).map_err(CoreError)?),
        })
    }

    /// Insert (or replace) `ids[i]` with `vectors[i]`.
    ///
    /// - `precision`: `None` (full), one of `"full"`, `"q8"`, `"q4"`, `"binary"`, or one
    ///   per row.
    /// - `threads`: worker threads for linking (default: all cores).
    /// - `background`: link on the shared pool of low-priority threads (`SCHED_IDLE` on
    ///   Linux, one per core; `threads` is then ignored), for inserts off a request's path.
    #[pyo3(signature = (ids, vectors, precision = None, threads = None, background = false))]
    fn add(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
        precision: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        background: bool,
    ) -> PyResult<()> {
        let dim = self.inner.dim();
        let ids = convert::ids(ids, "ids")?;
        let (vectors, rows, _) = convert::matrix(vectors, "vectors", dim, false)?;
        if rows != ids.len() {
            return Err(PyValueError::new_err(format!(
                "ids and vectors differ in length: {} ids, {rows} vectors",
                ids.len()
            )));
        }
        let precisions = parse_precisions(precision)?;
        let index = &self.inner;
        if background {
            // All of it on the pool, a lone node's link too (it would run on the caller).
            let pool = llmkg_core::background::pool().map_err(CoreError)?;
            return detached(py, || {
                pool.install(|| index.add(&ids, &vectors, &precisions, Some(pool)))
            });
        }
        let pool = thread_pool(threads)?;
        detached(py, || index.add(&ids, &vectors, &precisions, pool.as_ref()))
    }

    /// The `k` nearest nodes of each query: `(ids, scores)`, best first.
    ///
    /// A `(dim,)` query gives `(k,)` arrays, an `(n, dim)` batch `(n, k)` arrays. Slots
    /// beyond the number of matching nodes hold id `MISSING_ID` and score `-inf`.
    ///
    /// - `ef`: beam width (default: `ef_search`; never below `k`).
    /// - `rescore`: re-rank the candidates with the full vectors (when kept).
    /// - `filter`: allowed ids (an array-like or a reusable `IdFilter`), or a `FactFilter`
    ///   (read in place from its `FactIndex`), applied during the graph traversal.
    /// - `exact`: score every allowed node instead of walking the graph.
    /// - `wait`: `False` raises `IndexBusyError` at once, instead of waiting, when a
    ///   writer (an insert's slot allocation, a compaction's end, a precision change; for
    ///   a `FactFilter`, a write of its facts) holds the index: for an event loop, which
    ///   can hand the search to a thread instead.
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
        let index = &self.inner;
        let request = SearchRequest::parse(queries, index.dim(), k, ef, rescore, filter, exact)?;
        request.run(py, wait, |queries, opts, f| {
            if wait {
                index.search_many(queries, opts, f, None).map(Some)
            } else {
                index.try_search_many(queries, opts, f, None)
            }
        })
    }

    /// Remove `ids` (unknown ids are ignored); returns how many were removed.
    fn remove(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        let ids = convert::ids(ids, "ids")?;
        let index = &self.inner;
        detached(py, || Ok(index.remove(&ids)))
    }

    /// Repair the links around removed nodes and give their memory back now (this also
    /// happens by itself once removed nodes pass a tenth of the index).
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        let index = &self.inner;
        detached(py, || {
            index.compact();
            Ok(())
        })
    }

    // A method that takes the index's lock never waits for it with the GIL held (that
    // would stall every Python thread behind a writer): quick reads try the lock first
    // and release the GIL only when they have to wait; the others always release it.

    fn __len__(&self, py: Python<'_>) -> usize {
        self.inner
            .try_len()
            .unwrap_or_else(|| py.detach(|| self.inner.len()))
    }

    fn __contains__(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> bool {
        id.extract::<u64>().is_ok_and(|id| {
            self.inner
                .try_contains(id)
                .unwrap_or_else(|| py.detach(|| self.inner.contains(id)))
        })
    }

    /// Bytes held by the index (vectors, codes, links, ids), allocated capacity included.
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        py.detach(|| self.inner.memory_bytes())
    }

    /// Counts and sizes: `len`, `deleted` (removed, not yet compacted), `slots`,
    /// `free_slots`, `top_level`, `precisions` (nodes per precision), `memory_bytes` and
    /// its parts under `memory`, the distance `kernels` in use, and the parameters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.stats());
        let d = PyDict::new(py);
        d.set_item("len", s.len)?;
        d.set_item("deleted", s.deleted)?;
        d.set_item("slots", s.slots)?;
        d.set_item("free_slots", s.free_slots)?;
        d.set_item("top_level", s.top_level)?;
        let per = PyDict::new(py);
        for p in Precision::ALL {
            per.set_item(p.name(), s.per_precision[p as usize])?;
        }
        d.set_item("precisions", per)?;
        d.set_item("memory_bytes", s.memory.total())?;
        let mem = PyDict::new(py);
        mem.set_item("full_vectors", s.memory.full_vectors)?;
        mem.set_item("mapped_vectors", s.memory.mapped_vectors)?;
        mem.set_item("codes", s.memory.codes)?;
        mem.set_item("links", s.memory.links)?;
        mem.set_item("ids", s.memory.ids)?;
        d.set_item("memory", mem)?;
        d.set_item("kernels", s.kernels)?;
        d.set_item("dim", s.params.dim)?;
        d.set_item("metric", s.params.metric.name())?;
        d.set_item("m", s.params.m)?;
        d.set_item("ef_construction", s.params.ef_construction)?;
        d.set_item("ef_search", s.params.ef_search)?;
        d.set_item("keep_full", s.params.keep_full)?;
        Ok(d)
    }

    /// Store `ids` at `level` (`"full"`, `"q8"`, `"q4"` or `"binary"`) from now on, in
    /// place.
    ///
    /// - `vectors`: one row per id to encode from (to raise nodes whose full vectors the
    ///   index does not keep); default: what the index holds.
    #[pyo3(signature = (ids, level, vectors = None))]
    fn set_precision(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        level: &str,
        vectors: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ids = convert::ids(ids, "ids")?;
        let precision = Precision::parse(level).map_err(CoreError)?;
        let vectors = match vectors {
            Some(v) => Some(convert::matrix(v, "vectors", self.inner.dim(), false)?.0),
            None => None,
        };
        let index = &self.inner;
        detached(py, || {
            index.set_precision(&ids, precision, vectors.as_deref())
        })
    }

    /// The precision of each of `ids` (`"full"`, `"q8"`, `"q4"`, `"binary"`, or `None` if
    /// absent).
    fn precisions_of(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Option<&'static str>>> {
        let ids = convert::ids(ids, "ids")?;
        let found = py.detach(|| self.inner.precisions_of(&ids));
        Ok(found.into_iter().map(|p| p.map(Precision::name)).collect())
    }

    /// The precision `id` is stored at; `KeyError` if absent.
    fn precision_of(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let id = convert::one_id(id)?;
        self.inner
            .try_precision_of(id)
            .unwrap_or_else(|| py.detach(|| self.inner.precision_of(id)))
            .map(Precision::name)
            .ok_or_else(|| PyKeyError::new_err(id))
    }

    /// The stored vector of `id` (normalized for cosine; decoded if only a code is kept).
    fn get_vector<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let id = convert::one_id(id)?;
        let v = py
            .detach(|| self.inner.get_vector(id))
            .ok_or_else(|| PyKeyError::new_err(id))?;
        Ok(v.into_pyarray(py))
    }

    /// The live neighbours of `id` in the graph at `level` (0: the densest); `KeyError`
    /// if `id` is absent.
    #[pyo3(signature = (id, level = 0))]
    fn neighbors<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
        level: usize,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let id = convert::one_id(id)?;
        let ids = py
            .detach(|| self.inner.neighbors(id, level))
            .ok_or_else(|| PyKeyError::new_err(id))?;
        Ok(ids.into_pyarray(py))
    }

    /// The ids in the index, in no particular order.
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        py.detach(|| self.inner.ids()).into_pyarray(py)
    }

    /// Keep full rows from now on (`keep_full`), with `vectors[i]` as the full row of
    /// `ids[i]` where that node has a code only (an index saved without full rows gets
    /// them back from the vectors its caller keeps). Returns how many rows were added.
    fn restore_full_rows(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let ids = convert::ids(ids, "ids")?;
        let (vectors, rows, _) = convert::matrix(vectors, "vectors", self.inner.dim(), false)?;
        if rows != ids.len() {
            return Err(PyValueError::new_err(format!(
                "ids and vectors differ in length: {} ids, {rows} vectors",
                ids.len()
            )));
        }
        let index = &self.inner;
        detached(py, || index.restore_full_rows(&ids, &vectors))
    }

    /// Keep the full rows in a file mapped at `path` (created or truncated) instead of on
    /// the heap. With `keep_full` and quantized nodes, searches traverse on the codes and
    /// rescore with the full rows: the heap then holds the codes and the links, and the
    /// kernel pages the rows in and out. The file is scratch space, rewritten by each
    /// call: snapshots (`save`) hold the rows themselves.
    fn map_full_rows(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let index = &self.inner;
        detached(py, || index.map_full_rows(&path))
    }

    /// Write the index to `path` atomically (a crash leaves the old file or the new one),
    /// zstd-compressed at `level` (`None`: uncompressed); returns the file's size in bytes.
    #[pyo3(signature = (path, level = None))]
    fn save(&self, py: Python<'_>, path: PathBuf, level: Option<i32>) -> PyResult<u64> {
        let index = &self.inner;
        detached(py, || index.save(&path, level))
    }

    /// Write the index to `path` (created or truncated), zstd-compressed at `level`
    /// (`None`: uncompressed), and fsync it; returns the file's size in bytes. Not atomic: the
    /// caller renames the file into place (`save` does both). The file is the index as it
    /// was at one instant (its capture): searches, inserts and removals run meanwhile (an
    /// insert or a removal waits for the capture, not for the compression, and is not in
    /// the file); precision changes and `compact()` wait for the end of the write. On
    /// failure (`OSError`, errno ENOSPC for a full disk) the file is removed.
    #[pyo3(signature = (path, level = None))]
    fn write_file(&self, py: Python<'_>, path: PathBuf, level: Option<i32>) -> PyResult<u64> {
        let index = &self.inner;
        detached(py, || index.write_file(&path, level))
    }

    /// Read an index written by `save` or `write_file` (compressed or not);
    /// `CorruptIndexError` if the file is damaged.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = detached(py, || Hnsw::load(&path))?;
        Ok(HnswIndex {
            inner: Arc::new(inner),
        })
    }

    /// The index serialized as `save` writes it uncompressed.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let index = &self.inner;
        let bytes = detached(py, || Ok(index.to_bytes()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Read an index from what `to_bytes` gives (or a file's bytes, compressed or not);
    /// `CorruptIndexError` if they are damaged.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let data = data.to_vec();
        let inner = detached(py, || Hnsw::from_bytes(&data))?;
        Ok(HnswIndex {
            inner: Arc::new(inner),
        })
    }

    /// The vectors' dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// `"cosine"`, `"ip"` or `"l2"`.
    #[getter]
    fn metric(&self, py: Python<'_>) -> &'static str {
        self.params(py).metric.name()
    }

    /// Whether every node's full vector is kept beside its code, for rescoring.
    #[getter]
    fn keep_full(&self, py: Python<'_>) -> bool {
        self.params(py).keep_full
    }

    /// Default beam width of searches; settable (a loaded index takes the configured one).
    #[getter]
    fn ef_search(&self, py: Python<'_>) -> usize {
        self.params(py).ef_search
    }

    #[setter]
    fn set_ef_search(&self, py: Python<'_>, value: usize) -> PyResult<()> {
        let index = &self.inner;
        detached(py, || index.tune(Some(value), None))
    }

    /// Highest level a new node may get (0 to 15; not saved with the index); settable.
    #[getter]
    fn max_level(&self, py: Python<'_>) -> usize {
        self.params(py).max_level
    }

    #[setter]
    fn set_max_level(&self, py: Python<'_>, value: usize) -> PyResult<()> {
        let index = &self.inner;
        detached(py, || index.tune(None, Some(value)))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (p, len) = py.detach(|| (self.inner.params(), self.inner.len()));
        format!(
            "HnswIndex(dim={}, metric={:?}, m={}, ef_construction={}, ef_search={}, keep_full={}, len={})",
            p.dim,
            p.metric.name(),
            p.m,
            p.ef_construction,
            p.ef_search,
            if p.keep_full { "True" } else { "False" },
            len
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HnswIndex>()?;
    m.add_class::<IdFilter>()?;
    m.add("MISSING_ID", MISSING_ID)?;
    m.add(
        "CorruptIndexError",
        m.py().get_type::<crate::errors::CorruptIndexError>(),
    )?;
    m.add("IndexBusyError", m.py().get_type::<IndexBusyError>())?;
    Ok(())
}

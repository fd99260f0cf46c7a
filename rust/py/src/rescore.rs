//! `score_rows`: exact scores of a query against full-precision rows, for the engine's
//! rescoring of the candidates a quantized index proposes; `nearest_earlier`: each row of
//! a batch against the rows before it, for `allocate_many`.
//!
//! Unlike the index's calls, this one keeps the GIL: it takes about 10 µs (100 rows), less
//! than winning the GIL back would cost (see `gil::attached_if`). numpy's `@` and
//! `einsum`, which it replaces, release the GIL on arrays this size.

use llmkg_core::hnsw::{
    nearest_earlier as core_nearest_earlier, score_rows as core_score_rows, Metric,
};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::CoreError;

/// The score (float32, shape `(n,)`) of `query` (float32, shape `(dim,)`) against each
/// row of `rows` (float32, shape `(n, dim)`, C-contiguous), higher is closer: `"cosine"`
/// similarity, `"ip"` (inner product) or `"l2"` (negative squared distance).
#[pyfunction]
#[pyo3(signature = (query, rows, metric = "cosine"))]
pub fn score_rows<'py>(
    py: Python<'py>,
    query: PyReadonlyArray1<'py, f32>,
    rows: PyReadonlyArray2<'py, f32>,
    metric: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let metric = Metric::parse(metric).map_err(CoreError::from)?;
    let dim = query.len();
    if rows.shape()[1] != dim {
        return Err(PyValueError::new_err(format!(
            "rows have {} values, the query {dim}",
            rows.shape()[1]
        )));
    }
    let not_contiguous = |_| PyValueError::new_err("query and rows must be C-contiguous");
    let q = query.as_slice().map_err(not_contiguous)?;
    let r = rows.as_slice().map_err(not_contiguous)?;
    Ok(core_score_rows(metric, q, r).into_pyarray(py))
}

/// Positions and scores, one row each per row ranked.
type Ranked<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// For each row `i` of `rows` (float32, shape `(n, dim)`, C-contiguous), the `k` best of
/// the rows before it, scored as `score_rows` scores them: their positions (int64, best
/// first, ties to the earlier row) and scores (float32), each of shape `(n, k)`. Places
/// beyond row `i`'s `min(i, k)` hold `-1` and `-inf`.
#[pyfunction]
#[pyo3(signature = (rows, k, metric = "cosine"))]
pub fn nearest_earlier<'py>(
    py: Python<'py>,
    rows: PyReadonlyArray2<'py, f32>,
    k: usize,
    metric: &str,
) -> PyResult<Ranked<'py>> {
    let metric = Metric::parse(metric).map_err(CoreError::from)?;
    let (n, dim) = (rows.shape()[0], rows.shape()[1]);
    let r = rows
        .as_slice()
        .map_err(|_| PyValueError::new_err("rows must be C-contiguous"))?;
    // n² / 2 scores: milliseconds for a run of a few hundred rows, worth the GIL's release.
    let (positions, scores) = py.detach(|| core_nearest_earlier(metric, r, dim, k));
    let k = if dim == 0 { 0 } else { k };
    let as_matrix = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    let positions = Array2::from_shape_vec((n, k), positions).map_err(as_matrix)?;
    let scores = Array2::from_shape_vec((n, k), scores).map_err(as_matrix)?;
    Ok((positions.into_pyarray(py), scores.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(score_rows, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_earlier, m)?)
}

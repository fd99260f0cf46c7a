//! Bindings of the fact embedder (`llmkg_core::embed`): extract owned strings, embed with
//! the GIL released, hand back float32 numpy arrays (the Rust vectors are moved into
//! numpy without a copy).

use llmkg_core::embed::{checked_dim, FactEmbedder};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::errors::CoreError;
use crate::gil::attached_if;

fn embedder(dim: i64) -> PyResult<FactEmbedder> {
    let dim = checked_dim(dim).map_err(CoreError::from)?;
    Ok(FactEmbedder::new(dim).map_err(CoreError::from)?)
}

/// Row-major `rows * dim` values into a `(rows, dim)` array without copying.
fn into_matrix(
    py: Python<'_>,
    rows: usize,
    dim: usize,
    data: Vec<f32>,
) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let matrix = Array2::from_shape_vec((rows, dim), data)
        // The core returns exactly rows * dim values; this would be a bug in llmkg.
        .map_err(|e| PyValueError::new_err(format!("internal error: embedding shape: {e}")))?;
    Ok(matrix.into_pyarray(py))
}

/// Inputs up to this many bytes are embedded attached (see [`attached_if`]): a fact's few
/// words take about 5 µs.
const ATTACHED_MAX_BYTES: usize = 1024;

/// The unit vector (float32, shape `(dim,)`) of `text`: signed feature hashing of its
/// lowercase words and their character 3-grams. Deterministic: the same text gives the
/// same bits on every platform and run. A text without any word gives the zero vector.
/// `dim` must be between 1 and 65536.
#[pyfunction]
#[pyo3(signature = (text, dim = 768))]
pub fn embed_text<'py>(
    py: Python<'py>,
    text: String,
    dim: i64,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let e = embedder(dim)?;
    let v = attached_if(py, text.len() <= ATTACHED_MAX_BYTES, || e.embed_text(&text));
    Ok(v.into_pyarray(py))
}

/// The unit vector (float32, shape `(dim,)`) of the fact `(subject, predicate, object)`:
/// like `embed_text` on its three parts, plus role-tagged word features so the roles
/// matter a little. Facts that share words are close.
#[pyfunction]
#[pyo3(signature = (subject, predicate, object, dim = 768))]
pub fn embed_fact<'py>(
    py: Python<'py>,
    subject: String,
    predicate: String,
    object: String,
    dim: i64,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let e = embedder(dim)?;
    let short = subject.len() + predicate.len() + object.len() <= ATTACHED_MAX_BYTES;
    let v = attached_if(py, short, || e.embed_fact(&subject, &predicate, &object));
    Ok(v.into_pyarray(py))
}

/// The vectors of `texts` as a float32 array of shape `(len(texts), dim)`, computed in
/// parallel with the GIL released; row `i` equals `embed_text(texts[i], dim)`.
#[pyfunction]
#[pyo3(signature = (texts, dim = 768))]
pub fn embed_texts<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    dim: i64,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let e = embedder(dim)?;
    // A str is iterable too, and would silently embed its characters one by one.
    if texts.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "texts must be a sequence of str, not a single str (use embed_text)",
        ));
    }
    let mut owned = Vec::new();
    for (i, item) in texts.try_iter()?.enumerate() {
        let item = item?;
        let text: String = item.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "texts[{i}] must be a str, got {}",
                type_name(&item)
            ))
        })?;
        owned.push(text);
    }
    let rows = owned.len();
    let data = py.detach(|| e.embed_texts(&owned));
    into_matrix(py, rows, e.dim(), data)
}

/// The vectors of `facts`, a sequence of `(subject, predicate, object)` tuples (or
/// lists) of str, as a float32 array of shape `(len(facts), dim)`, computed in parallel
/// with the GIL released; row `i` equals `embed_fact(*facts[i], dim=dim)`.
#[pyfunction]
#[pyo3(signature = (facts, dim = 768))]
pub fn embed_facts<'py>(
    py: Python<'py>,
    facts: &Bound<'py, PyAny>,
    dim: i64,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let e = embedder(dim)?;
    let mut owned = Vec::new();
    for (i, item) in facts.try_iter()?.enumerate() {
        owned.push(extract_fact(i, &item?)?);
    }
    let rows = owned.len();
    let data = py.detach(|| e.embed_facts(&owned));
    into_matrix(py, rows, e.dim(), data)
}

fn extract_fact(i: usize, item: &Bound<'_, PyAny>) -> PyResult<(String, String, String)> {
    if let Ok(fact) = item.extract::<(String, String, String)>() {
        return Ok(fact);
    }
    // Facts read from JSON arrive as lists. (PyO3 refuses to extract a str as a Vec, so
    // a bare string such as "a b c" still falls through to the error below.)
    if let Ok(parts) = item.extract::<Vec<String>>() {
        if let Ok([s, p, o]) = <[String; 3]>::try_from(parts) {
            return Ok((s, p, o));
        }
    }
    Err(PyTypeError::new_err(format!(
        "facts[{i}] must be a (subject, predicate, object) tuple of 3 str, got {}",
        type_name(item)
    )))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an object".to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(embed_text, m)?)?;
    m.add_function(wrap_pyfunction!(embed_fact, m)?)?;
    m.add_function(wrap_pyfunction!(embed_texts, m)?)?;
    m.add_function(wrap_pyfunction!(embed_facts, m)?)?;
    Ok(())
}

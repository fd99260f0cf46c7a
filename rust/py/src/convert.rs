//! Conversions of Python arguments into owned Rust values. Arrays are copied: the work then
//! runs without the GIL, and a caller mutating its array from another thread cannot race it.

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// A 1-D array-like of non-negative integers (numpy array of any integer dtype, list, ...).
pub fn ids(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u64>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, u64>>() {
        return Ok(a.as_array().to_vec());
    }
    if let Ok(id) = obj.extract::<u64>() {
        return Ok(vec![id]);
    }
    let np = obj.py().import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    let size: usize = arr.getattr("size")?.extract()?;
    if ndim != 1 {
        return Err(PyValueError::new_err(format!(
            "{name} must be a 1-D sequence of integer ids, got an array of {ndim} dimensions"
        )));
    }
    if size == 0 {
        return Ok(Vec::new());
    }
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    match kind.as_str() {
        "u" => Ok(arr
            .call_method1("astype", ("uint64",))?
            .extract::<PyReadonlyArray1<'_, u64>>()?
            .as_array()
            .to_vec()),
        "i" => {
            let signed = arr.call_method1("astype", ("int64",))?;
            let signed = signed.extract::<PyReadonlyArray1<'_, i64>>()?;
            signed
                .as_array()
                .iter()
                .map(|&v| {
                    u64::try_from(v).map_err(|_| {
                        PyValueError::new_err(format!("{name} must be non-negative, got {v}"))
                    })
                })
                .collect()
        }
        // Python ints beyond int64 arrive as objects.
        "O" => arr
            .call_method0("tolist")?
            .extract::<Vec<u64>>()
            .map_err(|_| PyValueError::new_err(format!("{name} must be integers in [0, 2**64)"))),
        _ => Err(PyTypeError::new_err(format!(
            "{name} must be integers, got an array of dtype {}",
            arr.getattr("dtype")?.str()?
        ))),
    }
}

/// One id given as a Python int.
pub fn one_id(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    obj.extract::<u64>()
        .map_err(|_| PyValueError::new_err("an id must be an integer in [0, 2**64)"))
}

/// Rows of `dim` floats: a (n, dim) array-like, or a (dim,) one when `allow_1d`.
/// Returns the values row-major, the row count, and whether the input was 1-D.
pub fn matrix(
    obj: &Bound<'_, PyAny>,
    name: &str,
    dim: usize,
    allow_1d: bool,
) -> PyResult<(Vec<f32>, usize, bool)> {
    if let Ok(a) = obj.extract::<PyReadonlyArray2<'_, f32>>() {
        let cols = a.shape()[1];
        check_dim(name, cols, dim)?;
        let values = match a.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => a.as_array().iter().copied().collect(),
        };
        return Ok((values, a.shape()[0], false));
    }
    if allow_1d {
        if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, f32>>() {
            check_dim(name, a.len(), dim)?;
            let values = match a.as_slice() {
                Ok(s) => s.to_vec(),
                Err(_) => a.as_array().to_vec(),
            };
            return Ok((values, 1, true));
        }
    }
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an array of floats, got a str"
        )));
    }
    let np = obj.py().import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj, "float32"))
        .map_err(|e| PyTypeError::new_err(format!("{name} must be an array of floats: {e}")))?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let (rows, cols, one) = match shape.as_slice() {
        [cols] if allow_1d => (1, *cols, true),
        [rows, cols] => (*rows, *cols, false),
        _ => {
            let want = if allow_1d {
                "(dim,) or (n, dim)"
            } else {
                "(n, dim)"
            };
            return Err(PyValueError::new_err(format!(
                "{name} must have shape {want}, got shape {shape:?}"
            )));
        }
    };
    check_dim(name, cols, dim)?;
    let flat = arr.call_method0("ravel")?;
    let flat = flat.extract::<PyReadonlyArray1<'_, f32>>()?;
    Ok((flat.as_array().to_vec(), rows, one))
}

fn check_dim(name: &str, cols: usize, dim: usize) -> PyResult<()> {
    if cols != dim {
        return Err(PyValueError::new_err(format!(
            "{name} has dimension {cols}, the index has dimension {dim}"
        )));
    }
    Ok(())
}

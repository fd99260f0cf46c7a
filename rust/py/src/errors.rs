//! The one mapping from core errors to Python exceptions.

use llmkg_core::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    _core,
    CorruptIndexError,
    PyValueError,
    "A saved index file is truncated, corrupted or not an llmkg index."
);

pyo3::create_exception!(
    _core,
    IndexBusyError,
    PyRuntimeError,
    "A search asked not to wait (wait=False) found the index held by a writer."
);

pub struct CoreError(pub Error);

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        match e.0 {
            Error::InvalidArgument(msg) => PyValueError::new_err(msg),
            err @ Error::UnknownName { .. } => PyValueError::new_err(err.to_string()),
            err @ Error::Corrupt(_) => CorruptIndexError::new_err(err.to_string()),
            Error::Io(io) => PyOSError::new_err(io.to_string()),
        }
    }
}

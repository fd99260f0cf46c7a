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
            Error::Io(io) => os_error(&io, None),
            Error::File { path, source } => os_error(&source, Some(path)),
        }
    }
}

/// `OSError(errno, message[, filename])`: Python picks the subclass by errno
/// (`FileNotFoundError`, ...), and callers tell a full disk (ENOSPC) by `errno`. The
/// message is the system's, as Python's own errors give it.
fn os_error(io: &std::io::Error, path: Option<std::path::PathBuf>) -> PyErr {
    let Some(errno) = io.raw_os_error() else {
        return match path {
            Some(path) => PyOSError::new_err(format!("{}: {io}", path.display())),
            None => PyOSError::new_err(io.to_string()),
        };
    };
    let text = io.to_string();
    let message = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text)
        .to_string();
    match path {
        Some(path) => PyOSError::new_err((errno, message, path.to_string_lossy().into_owned())),
        None => PyOSError::new_err((errno, message)),
    }
}

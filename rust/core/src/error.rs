//! The one error type of the core. Every message names the argument or the file at fault,
//! because the bindings pass it to Python users unchanged.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in llmkg-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument has the right type but a bad value (wrong dimension, NaN, k < 1, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A name that is not one of the accepted values (metric, precision, policy).
    #[error("unknown {kind} {value:?}; expected one of {expected}")]
    UnknownName {
        kind: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A saved file that cannot be read back: truncated, corrupted, or of another format.
    #[error("corrupt index file: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An I/O error on a named file (writing or reading an index file).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// `self`, an I/O error, as one on the file at `path` (other errors are kept as they are).
    pub(crate) fn on_file(self, path: &Path) -> Self {
        match self {
            Error::Io(source) => Error::File {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        }
    }
}

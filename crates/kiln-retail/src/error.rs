//! The one error type of kiln-retail.

use std::path::PathBuf;

/// What can go wrong in the assistant, its store and its data files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetailError {
    /// A data file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file holds something malformed.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// The 1-based line (0 when not line-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The SQLite store failed.
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The language model or the image embedder failed.
    #[error("model: {0}")]
    Model(#[from] kiln_core::Error),
    /// A request the assistant cannot take (no user message, an image without an image model).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Shorthand for kiln-retail results.
pub type Result<T> = std::result::Result<T, RetailError>;

impl From<RetailError> for kiln_core::Error {
    fn from(e: RetailError) -> Self {
        match e {
            RetailError::Model(inner) => inner,
            RetailError::Invalid(m) => kiln_core::Error::Unsupported(m),
            other => kiln_core::Error::Model(other.to_string()),
        }
    }
}

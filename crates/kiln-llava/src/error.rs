//! Errors of kiln-llava; each names the file, tensor, field or input at fault.

/// Errors of loading and running a LLaVA model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is malformed or inconsistent.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The vision tower failed to load or run.
    #[error(transparent)]
    Clip(#[from] kiln_clip::ClipError),
    /// The language model failed to load or run.
    #[error(transparent)]
    Llama(#[from] kiln_llama::Error),
    /// A checkpoint tensor is missing, mis-shaped or unreadable.
    #[error(transparent)]
    Weights(#[from] kiln_backend::Error),
    /// Inputs that do not fit the model (image token count, pixel shape).
    #[error("{0}")]
    Input(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

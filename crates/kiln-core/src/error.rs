//! The error type shared by the burn-free parts of Kiln.

/// Errors raised by kiln-core types and by implementations of its traits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tokenizer file could not be read or parsed.
    #[error("tokenizer {path}: {message}")]
    TokenizerLoad {
        /// The file at fault.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A request parameter is out of range or inconsistent.
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter {
        /// The parameter name, as a user would write it.
        name: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// The prompt plus the requested tokens do not fit in the model's context.
    #[error("context length exceeded: {needed} tokens needed, the model allows {limit}")]
    ContextLength {
        /// Tokens the request needs.
        needed: usize,
        /// The model's context window.
        limit: usize,
    },
    /// A capability the implementation does not have (for example images for a text-only model).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The generation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// An error from a model implementation.
    #[error("model: {0}")]
    Model(String),
    /// An I/O error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

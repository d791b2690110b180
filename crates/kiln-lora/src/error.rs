//! Errors of kiln-lora. Every variant names the file, module, tensor or field at fault.

/// Errors raised while reading, writing, applying or training adapters.
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
    /// `adapter_config.json` (or another JSON file) is malformed or has a bad field.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A PEFT option Kiln does not implement; refused rather than silently ignored.
    #[error("{path}: unsupported PEFT option `{field}`: {message}")]
    Unsupported {
        /// The file (or `<config>` for an in-memory one).
        path: String,
        /// The option.
        field: String,
        /// Why, and what to do instead.
        message: String,
    },
    /// An adapter weights file is malformed.
    #[error("{path}: invalid safetensors: {message}")]
    Safetensors {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor of the adapter is absent, unexpected or mis-shaped.
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The file.
        path: String,
        /// The tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The adapter does not fit the model it is applied to.
    #[error("adapter `{adapter}`: module `{module}`: {message}")]
    Mismatch {
        /// The adapter's name.
        adapter: String,
        /// The module key (`model.layers.0.self_attn.q_proj`).
        module: String,
        /// What does not fit.
        message: String,
    },
    /// An invalid argument.
    #[error("{0}")]
    Invalid(String),
}

/// Results of kiln-lora.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

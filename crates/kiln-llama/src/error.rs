//! Errors of kiln-llama. Every variant names the file, tensor or field at fault.

/// Errors raised while loading or running a Llama model.
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
    /// A LoRA adapter could not be read or does not fit the model.
    #[error(transparent)]
    Lora(#[from] kiln_lora::Error),
    /// A GGUF file is malformed (bad magic, truncated, inconsistent offsets, ...).
    #[error("{path}: invalid GGUF: {message}")]
    Gguf {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file is malformed.
    #[error("{path}: invalid safetensors: {message}")]
    Safetensors {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A JSON file (config.json, tokenizer_config.json, an index) is malformed or lacks a field.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A metadata key a GGUF file must have is absent or has the wrong type.
    #[error("{path}: GGUF metadata `{key}`: {message}")]
    Metadata {
        /// The file.
        path: String,
        /// The metadata key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The file (or directory) searched.
        path: String,
        /// The tensor name.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The file.
        path: String,
        /// The tensor name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a type Kiln cannot read.
    #[error("{path}: tensor `{name}` has unsupported type {dtype}")]
    UnsupportedDtype {
        /// The file.
        path: String,
        /// The tensor name.
        name: String,
        /// The type, as the format names it.
        dtype: String,
    },
    /// The checkpoint is of an architecture Kiln does not implement.
    #[error("{path}: unsupported architecture `{architecture}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// The file.
        path: String,
        /// The architecture found.
        architecture: String,
        /// What is supported.
        supported: String,
    },
    /// The tokenizer could not be built or run.
    #[error("tokenizer ({source_name}): {message}")]
    Tokenizer {
        /// Where the tokenizer came from (a file or GGUF metadata).
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// The model path is neither an HF directory nor a `.gguf` file.
    #[error(
        "{path}: not a model: expected a Hugging Face directory with config.json or a .gguf file"
    )]
    NotAModel {
        /// The path given.
        path: String,
    },
    /// A request or input is invalid for this model.
    #[error("{0}")]
    Invalid(String),
    /// The device or backend failed.
    #[error(transparent)]
    Backend(#[from] kiln_backend::Error),
    /// An error from a kiln-core type.
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<Error> for kiln_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) => inner,
            other => kiln_core::Error::Model(other.to_string()),
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

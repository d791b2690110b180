//! Errors of kiln-clip: each names the file, tensor, config field or input at fault.

use std::path::PathBuf;

/// Errors of image loading, preprocessing and tokenization; each names the file or the config field at
/// fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipError {
    /// The image file could not be opened or read.
    #[error("cannot read image {path}: {source}")]
    ImageIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The image file is corrupt, truncated, not an image, or in a format this build cannot decode.
    #[error("cannot decode image {path}: {source}")]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// The JPEG file is corrupt, truncated, too large or of a kind kiln-jpeg does not decode.
    #[error("cannot decode JPEG image {path}: {source}")]
    JpegDecode {
        /// The file.
        path: PathBuf,
        /// kiln-jpeg's error.
        source: kiln_jpeg::JpegError,
    },
    /// The image decoded but its pixel layout is not supported (e.g. floating-point HDR).
    #[error("unsupported image {path}: {reason}")]
    UnsupportedImage {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// The preprocessor config file could not be read.
    #[error("cannot read preprocessor config {path}: {source}")]
    ConfigIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The preprocessor config file is not valid JSON of the expected shape.
    #[error("invalid preprocessor config {path}: {source}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A config field holds a value the preprocessing cannot use.
    #[error("invalid preprocessor config field `{field}`: {reason}")]
    InvalidConfig {
        /// The field, as named in `preprocessor_config.json`.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// An in-memory image whose buffer does not match its dimensions.
    #[error("invalid image buffer: {reason}")]
    InvalidImage {
        /// What is wrong.
        reason: String,
    },
    /// A tokenizer vocabulary file (`bpe_simple_vocab_16e6.txt.gz`, `vocab.json`, `merges.txt`) could not
    /// be read.
    #[error("cannot read tokenizer vocabulary {path}: {source}")]
    VocabIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tokenizer vocabulary file is corrupt, truncated or not of the expected format.
    #[error("invalid tokenizer vocabulary {path}: {reason}")]
    VocabParse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A text encodes to more tokens than the context length and truncation was not requested.
    #[error("text {index} has {len} tokens, more than the context length {context_length}")]
    TextTooLong {
        /// The text's position in the batch.
        index: usize,
        /// Its token count, BOS and EOS included.
        len: usize,
        /// The context length asked for.
        context_length: usize,
    },
    /// A context length too small to hold BOS and EOS.
    #[error("context length {0} is too small (at least 2: BOS and EOS)")]
    ContextTooSmall(usize),
    /// An I/O error on a checkpoint or config file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A model `config.json` is malformed or inconsistent.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A checkpoint's tensors could not be read: missing, mis-shaped, of an unsupported dtype, or
    /// the file is malformed. The message names the file and tensor.
    #[error(transparent)]
    Weights(#[from] kiln_backend::Error),
    /// Inputs of the wrong shape or out of range for the model.
    #[error("{0}")]
    Input(String),
    /// Training data or a training setting is unusable.
    #[error("{0}")]
    Train(String),
    /// A token id outside the vocabulary was given to `decode`.
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    InvalidTokenId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ClipError>;

impl ClipError {
    /// An [`ClipError::Io`] naming `path`.
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ClipError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

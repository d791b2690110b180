//! The error type of kiln-prompt.

/// Errors raised by kiln-prompt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A chat or prompt template failed to compile or render.
    #[error("template `{name}`: {}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Template {
        /// The template's name (`chat_template` for a chat template, the prompt's name otherwise).
        name: String,
        /// The 1-based template line at fault, when known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// A built-in chat template name is not known.
    #[error("unknown built-in chat template `{name}` (known: {known})")]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A prompt variable the template needs was not given.
    #[error("prompt `{prompt}`: missing variable `{variable}`")]
    MissingVariable {
        /// The prompt template.
        prompt: String,
        /// The variable.
        variable: String,
    },
    /// A variable was given that the prompt does not declare.
    #[error("prompt `{prompt}`: unknown variable `{variable}`")]
    UnknownVariable {
        /// The prompt template.
        prompt: String,
        /// The variable.
        variable: String,
    },
    /// A variable's value does not have its declared type.
    #[error("prompt `{prompt}`: variable `{variable}` must be {expected}, got {got}")]
    VariableType {
        /// The prompt template.
        prompt: String,
        /// The variable.
        variable: String,
        /// The declared type.
        expected: &'static str,
        /// The JSON type that was given.
        got: &'static str,
    },
    /// A prompt file in a registry directory is malformed.
    #[error("{path}: {message}")]
    PromptFile {
        /// The file at fault.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// No registered prompt matches a lookup.
    #[error("no prompt for {what}")]
    NotFound {
        /// The lookup, for example `task "classify" version 2`.
        what: String,
    },
    /// A prompt with this name and version is registered twice.
    #[error("prompt `{name}` version {version} is registered twice")]
    Duplicate {
        /// The prompt name.
        name: String,
        /// The version.
        version: u32,
    },
    /// A parameter of a technique is out of range.
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// The ReAct loop used all its steps without a final answer.
    #[error("the agent gave no final answer within {steps} steps")]
    StepLimit {
        /// The step limit.
        steps: usize,
    },
    /// A JSON schema that constrained decoding cannot enforce.
    #[error("schema {path}: {message}")]
    Schema {
        /// Where in the schema, as a JSON pointer (`#/properties/name`).
        path: String,
        /// What is not supported.
        message: String,
    },
    /// An error from a model, embedder or tool (kiln-core).
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
    /// An I/O error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory at fault.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Converts a minijinja error of template `name`, keeping its line.
    pub(crate) fn from_jinja(name: &str, e: &minijinja::Error) -> Self {
        let mut message = e.kind().to_string();
        if let Some(detail) = e.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        // Errors raised inside functions (raise_exception) carry the cause as a source.
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::Template {
            name: name.to_string(),
            line: e.line(),
            message,
        }
    }
}

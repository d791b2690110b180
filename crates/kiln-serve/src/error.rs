//! The crate's one error type and its single mapping to HTTP: a status and OpenAI's error body
//! `{"error": {"message", "type", "param", "code"}}`. Server-side failures (5xx) never show their
//! internal message to the client; it is logged instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything that can go wrong in kiln-serve, at start-up or while answering a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is invalid; `field` is its path in the TOML file (`keys[2].role`).
    #[error("config `{field}`: {message}")]
    Config {
        /// The field at fault.
        field: String,
        /// Why it was refused.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No API key, or one that is not known (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The key's role does not allow the model, adapter or endpoint (403).
    #[error("{0}")]
    Forbidden(String),
    /// An unknown model, adapter or route (404).
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
        /// The request parameter that named it.
        param: Option<&'static str>,
    },
    /// A malformed or inconsistent request (400).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The request parameter at fault.
        param: Option<String>,
    },
    /// The prompt has more tokens than the configured or model limit (400).
    #[error("the prompt has {tokens} tokens, the limit is {limit}")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The limit.
        limit: usize,
    },
    /// The request body is larger than the configured limit (413).
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A per-key rate limit (requests or tokens per minute) is reached (429).
    #[error("{message}")]
    RateLimited {
        /// Which limit.
        message: String,
        /// Seconds after which a retry can succeed.
        retry_after: u64,
    },
    /// A quota (tokens per day) or budget is spent (429, `insufficient_quota`).
    #[error("{message}")]
    QuotaExceeded {
        /// Which quota.
        message: String,
        /// Seconds until the quota resets.
        retry_after: u64,
    },
    /// The admission queue is full (503).
    #[error("the server is busy: {queued} requests are waiting")]
    Overloaded {
        /// Requests already waiting.
        queued: usize,
        /// Seconds after which a retry is likely to be admitted.
        retry_after: u64,
    },
    /// The server is shutting down or a worker went away (503).
    #[error("{0}")]
    Unavailable(String),
    /// An error raised by a model through kiln-core.
    #[error(transparent)]
    Model(#[from] kiln_core::Error),
    /// An unexpected internal failure (500); the message is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`ServeError`].
pub type Result<T> = std::result::Result<T, ServeError>;

impl ServeError {
    /// A 400 naming the parameter at fault.
    #[must_use]
    pub fn bad_request(param: impl Into<String>, message: impl Into<String>) -> Self {
        ServeError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    /// A configuration error naming its field.
    #[must_use]
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServeError::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServeError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServeError::BadRequest { .. } | ServeError::PromptTooLong { .. } => {
                StatusCode::BAD_REQUEST
            }
            ServeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::RateLimited { .. } | ServeError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ServeError::Overloaded { .. } | ServeError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServeError::Model(e) => match e {
                kiln_core::Error::InvalidParameter { .. }
                | kiln_core::Error::ContextLength { .. }
                | kiln_core::Error::Unsupported(_) => StatusCode::BAD_REQUEST,
                kiln_core::Error::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ServeError::Config { .. } | ServeError::Io { .. } | ServeError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// OpenAI's `type`, `param` and `code` for this error.
    fn openai_parts(&self) -> (&'static str, Option<String>, Option<&'static str>) {
        match self {
            ServeError::Unauthorized(_) => ("invalid_request_error", None, Some("invalid_api_key")),
            ServeError::Forbidden(_) => ("permission_error", None, Some("forbidden")),
            ServeError::NotFound { param, .. } => (
                "invalid_request_error",
                param.map(str::to_owned),
                Some("not_found"),
            ),
            ServeError::BadRequest { param, .. } => ("invalid_request_error", param.clone(), None),
            ServeError::PromptTooLong { .. } => (
                "invalid_request_error",
                Some("messages".into()),
                Some("context_length_exceeded"),
            ),
            ServeError::PayloadTooLarge { .. } => {
                ("invalid_request_error", None, Some("request_too_large"))
            }
            ServeError::RateLimited { .. } => ("requests", None, Some("rate_limit_exceeded")),
            ServeError::QuotaExceeded { .. } => {
                ("insufficient_quota", None, Some("insufficient_quota"))
            }
            ServeError::Overloaded { .. } | ServeError::Unavailable(_) => {
                ("server_error", None, Some("overloaded"))
            }
            ServeError::Model(e) => match e {
                kiln_core::Error::InvalidParameter { name, .. } => {
                    ("invalid_request_error", Some((*name).to_owned()), None)
                }
                kiln_core::Error::ContextLength { .. } => (
                    "invalid_request_error",
                    Some("messages".into()),
                    Some("context_length_exceeded"),
                ),
                kiln_core::Error::Unsupported(_) => ("invalid_request_error", None, None),
                _ => ("server_error", None, None),
            },
            _ => ("server_error", None, None),
        }
    }

    /// Seconds for the `Retry-After` header, when the error has one.
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServeError::RateLimited { retry_after, .. }
            | ServeError::QuotaExceeded { retry_after, .. }
            | ServeError::Overloaded { retry_after, .. } => Some((*retry_after).max(1)),
            _ => None,
        }
    }

    /// The error body in OpenAI's shape. 5xx bodies say only "internal server error" unless the
    /// error is one a client can act on (overload).
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        let status = self.status();
        let (kind, param, code) = self.openai_parts();
        let message = if status.is_server_error()
            && !matches!(
                self,
                ServeError::Overloaded { .. } | ServeError::Unavailable(_)
            ) {
            "internal server error".to_owned()
        } else {
            self.to_string()
        };
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::info!(status = status.as_u16(), code = ?self.openai_parts().2, "request refused");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak() {
        let e = ServeError::Model(kiln_core::Error::Model("CUDA OOM at 0x7f".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = e.body().to_string();
        assert!(!body.contains("CUDA"), "{body}");
    }

    #[test]
    fn invalid_parameter_names_the_param() {
        let e = ServeError::Model(kiln_core::Error::InvalidParameter {
            name: "top_p",
            message: "must be in (0, 1]".into(),
        });
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["error"]["param"], "top_p");
    }
}

//! The HTTP surface: the router, the request-id and access-log middleware, and the gateway steps
//! every endpoint shares (authentication, body limits, JSON parsing).

mod admin;
mod chat;
mod completions;
mod embeddings;
mod generate;
mod info;
mod stream;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::{Result, ServeError};
use crate::state::AppState;

/// The request id of the current request (from `x-request-id` when the client sent a sane one).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// Builds the router over a state (axum's testing style: tests call it with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handler))
        .route("/v1/completions", post(completions::handler))
        .route("/v1/embeddings", post(embeddings::handler))
        .route("/v1/models", get(info::models))
        .route("/v1/models/{*id}", get(info::model))
        .route("/v1/usage", get(info::usage))
        .route("/v1/watermark/detect", post(info::watermark_detect))
        .route("/v1/admin/adapters", get(admin::list))
        .route("/v1/admin/adapters/load", post(admin::load))
        .route("/v1/admin/adapters/unload", post(admin::unload))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/health", get(info::health))
        .route("/ready", get(info::ready))
        .route("/metrics", get(info::metrics))
        .route("/openapi.json", get(info::openapi))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn not_found() -> ServeError {
    ServeError::NotFound {
        message: "no such endpoint".into(),
        param: None,
    }
}

/// Gives each request an id (echoed in `x-request-id`), a tracing span, and counts it by
/// endpoint and status. Nothing of the body or the `Authorization` header is logged.
async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map_or_else(|| state.next_request_id(), str::to_owned);
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), endpoint = %endpoint);
    let start = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = start.elapsed().as_secs_f64();
    span.in_scope(|| tracing::info!(status, latency_ms = seconds * 1e3, "response"));
    let metrics = state.metrics();
    metrics.inc(
        "kiln_requests_total",
        vec![
            ("endpoint", endpoint.clone()),
            ("status", status.to_string()),
        ],
    );
    metrics.observe(
        "kiln_request_duration_seconds",
        vec![("endpoint", endpoint)],
        seconds,
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Authenticates the caller and checks that its role may call `endpoint`.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<Principal> {
    let principal = state.authenticate(headers)?;
    principal.allow_endpoint(endpoint)?;
    Ok(principal)
}

/// Reads a JSON body within the configured size limit.
pub(crate) async fn read_json<T: DeserializeOwned>(state: &AppState, body: Body) -> Result<T> {
    let limit = state.config().server.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ServeError::PayloadTooLarge { limit })?;
    serde_json::from_slice(&bytes).map_err(|e| ServeError::BadRequest {
        message: format!("invalid JSON body: {e}"),
        param: None,
    })
}

/// A JSON response with the answering model in `x-kiln-model`.
pub(crate) fn json_response(value: serde_json::Value, model: &str) -> Response {
    let mut r = axum::Json(value).into_response();
    if let Ok(v) = HeaderValue::from_str(model) {
        r.headers_mut().insert("x-kiln-model", v);
    }
    r
}

//! Models, usage, watermark detection, health, readiness, metrics and the OpenAPI document.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{authorize, json_response, read_json};
use crate::error::{Result, ServeError};
use crate::state::AppState;

fn model_object(id: &str, kind: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "kiln", "kind": kind})
}

fn visible_models(state: &AppState, headers: &HeaderMap) -> Result<Vec<Value>> {
    let principal = authorize(state, headers, "models")?;
    let mut out = Vec::new();
    for m in state.models() {
        if principal.allow_model(&m.config.name, None).is_ok() {
            let kind = if m.engine.is_some() {
                "generation"
            } else {
                "embedding"
            };
            out.push(model_object(&m.config.name, kind));
        }
    }
    let config = state.config();
    for r in &config.routes {
        if principal.allow_model(&r.name, None).is_ok() {
            out.push(model_object(&r.name, "cascade"));
        }
    }
    Ok(out)
}

/// `GET /v1/models`: the models and routes the caller may use.
pub(super) async fn models(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let data = visible_models(&state, &headers)?;
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

/// `GET /v1/models/{id}`.
pub(super) async fn model(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    visible_models(&state, &headers)?
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(|m| axum::Json(m).into_response())
        .ok_or_else(|| ServeError::NotFound {
            message: format!("the model `{id}` does not exist"),
            param: Some("model"),
        })
}

/// `GET /v1/usage`: the caller's usage (every key's for an admin).
pub(super) async fn usage(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let principal = authorize(&state, &headers, "usage")?;
    let who = (!principal.role.admin).then_some(principal.name.as_str());
    let keys = state.0.costs.usage(who);
    Ok(axum::Json(json!({"object": "usage", "keys": keys})).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct DetectBody {
    model: String,
    text: String,
}

/// `POST /v1/watermark/detect` with `{"model", "text"}`: the z-score of the model's watermark.
pub(super) async fn watermark_detect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let principal = authorize(&state, &headers, "watermark")?;
    let b: DetectBody = read_json(&state, body).await?;
    principal.allow_model(&b.model, None)?;
    let model = state.model(&b.model).ok_or_else(|| ServeError::NotFound {
        message: format!("the model `{}` does not exist", b.model),
        param: Some("model"),
    })?;
    let (Some(config), Some(tokenizer)) = (model.config.watermark, &model.handle.tokenizer) else {
        return Err(ServeError::bad_request(
            "model",
            format!("the model `{}` has no watermark", b.model),
        ));
    };
    let ids = tokenizer.encode(&b.text, false)?;
    let d = crate::watermark::detect(&config, &ids);
    Ok(json_response(
        json!({"model": b.model, "z_score": d.z_score, "watermarked": d.watermarked,
               "scored_tokens": d.scored_tokens, "green_tokens": d.green_tokens,
               "gamma": config.gamma, "z_threshold": config.z_threshold}),
        &b.model,
    ))
}

/// `GET /health`: the process is up.
pub(super) async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `GET /ready`: 200 while accepting requests, 503 while shutting down.
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let models: Vec<Value> = state
        .models()
        .map(|m| {
            json!({"model": m.config.name,
                   "queue_depth": m.engine.as_ref().map_or(0, |e| e.queue_depth()),
                   "active_sequences": m.engine.as_ref().map_or(0, |e| e.active_sequences()),
                   "batching": m.engine.as_ref().is_some_and(|e| e.is_batching())})
        })
        .collect();
    let status = if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": state.is_ready(), "models": models})),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    state.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// `GET /openapi.json`.
pub(super) async fn openapi(State(state): State<AppState>) -> Response {
    axum::Json(crate::openapi::document(&state.api_facts())).into_response()
}

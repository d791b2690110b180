//! Admin endpoints: list, load and unload LoRA adapters at run time (admin role only). Adapter
//! names are validated and resolved inside the model's `adapters_dir`, so a name cannot reach a
//! file outside it.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{json_response, read_json};
use crate::error::{Result, ServeError};
use crate::state::{AdapterManager, AppState, ServedModel};

/// The body of load and unload, and the query of list.
#[derive(Debug, Deserialize)]
pub(super) struct AdapterBody {
    model: String,
    #[serde(default)]
    name: String,
}

fn manager<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    model: &str,
) -> Result<(&'a ServedModel, &'a dyn AdapterManager)> {
    let principal = state.authenticate(headers)?;
    principal.require_admin()?;
    let served = state.model(model).ok_or_else(|| ServeError::NotFound {
        message: format!("the model `{model}` does not exist"),
        param: Some("model"),
    })?;
    let m = served.handle.adapters.as_deref().ok_or_else(|| {
        ServeError::bad_request(
            "model",
            format!("the model `{model}` cannot load adapters at run time"),
        )
    })?;
    tracing::info!(key = %principal.name, model, "admin adapters");
    Ok((served, m))
}

/// `GET /v1/admin/adapters?model=M`.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: std::result::Result<Query<AdapterBody>, QueryRejection>,
) -> Result<Response> {
    let Query(q) = query.map_err(|e| ServeError::bad_request("model", e.body_text()))?;
    let (_, m) = manager(&state, &headers, &q.model)?;
    Ok(json_response(
        json!({"model": q.model, "adapters": m.adapters()}),
        &q.model,
    ))
}

/// `POST /v1/admin/adapters/load` with `{"model", "name"}`.
pub(super) async fn load(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: AdapterBody = read_json(&state, body).await?;
    let (served, m) = manager(&state, &headers, &b.model)?;
    let dir = state.adapter_dir(served, &b.name)?;
    m.load_adapter(&b.name, &dir)?;
    tracing::info!(model = %b.model, adapter = %b.name, "adapter loaded");
    Ok(json_response(
        json!({"model": b.model, "loaded": b.name, "adapters": m.adapters()}),
        &b.model,
    ))
}

/// `POST /v1/admin/adapters/unload` with `{"model", "name"}`.
pub(super) async fn unload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let b: AdapterBody = read_json(&state, body).await?;
    let (_, m) = manager(&state, &headers, &b.model)?;
    crate::state::check_adapter_name(&b.name)?;
    if !m.unload_adapter(&b.name)? {
        return Err(ServeError::NotFound {
            message: format!("the adapter `{}` is not loaded", b.name),
            param: Some("name"),
        });
    }
    tracing::info!(model = %b.model, adapter = %b.name, "adapter unloaded");
    Ok(json_response(
        json!({"model": b.model, "unloaded": b.name, "adapters": m.adapters()}),
        &b.model,
    ))
}

/// `POST /v1/admin/reload`: reads the configuration file again and applies it (as SIGHUP does).
/// A configuration that does not validate, or that changes what only a restart can, is a 400
/// naming the field, and the running configuration stays in force.
pub(super) async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let principal = state.authenticate(&headers)?;
    principal.require_admin()?;
    let changed = state.reload_config()?;
    tracing::info!(key = %principal.name, ?changed, "admin reload");
    Ok(axum::Json(json!({"reloaded": true, "changed": changed})).into_response())
}

//! `POST /v1/embeddings`, through the model's kiln-core [`Embedder`](kiln_core::Embedder):
//! texts, and images (`image_url` items) for models that embed them (CLIP).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use kiln_core::EmbeddingInput;
use serde_json::json;

use super::generate::{self};
use super::{authorize, json_response, read_json};
use crate::error::{Result, ServeError};
use crate::openai::{self, EmbeddingRequest};
use crate::pii::Masker;
use crate::state::AppState;

/// Embeds one text or a list of texts.
pub(super) async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let principal = authorize(&state, &headers, "embeddings")?;
    let req: EmbeddingRequest = read_json(&state, body).await?;
    principal.allow_model(&req.model, None)?;
    let model = state
        .model(&req.model)
        .ok_or_else(|| ServeError::NotFound {
            message: format!("the model `{}` does not exist", req.model),
            param: Some("model"),
        })?;
    let embedder = model.handle.embedder.clone().ok_or_else(|| {
        ServeError::bad_request("model", format!("the model `{}` does not embed", req.model))
    })?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ServeError::bad_request(
                "encoding_format",
                format!("`{other}` is not float or base64"),
            ));
        }
    };
    let mut inputs = req.input.into_inputs()?;
    if inputs.is_empty() || inputs.len() > 2048 {
        return Err(ServeError::bad_request("input", "1 to 2048 inputs"));
    }
    if !embedder.supports_images() && inputs.iter().any(|i| matches!(i, EmbeddingInput::Image(_))) {
        return Err(ServeError::bad_request(
            "input",
            format!("the model `{}` embeds text only", req.model),
        ));
    }
    if state.config().pii.enabled {
        let mut masker = Masker::new(state.policy().pii_kinds.clone());
        for i in &mut inputs {
            if let EmbeddingInput::Text(t) = i {
                *t = masker.mask(t);
            }
        }
    }
    let mut tokens = 0;
    if let Some(tok) = &model.handle.tokenizer {
        for i in &inputs {
            if let EmbeddingInput::Text(t) = i {
                tokens += tok.encode(t, true)?.len();
            }
        }
        let limit = state.config().server.max_prompt_tokens;
        if tokens > limit {
            return Err(ServeError::PromptTooLong { tokens, limit });
        }
    }
    generate::admit(&state, &principal, tokens)?;
    let vectors = tokio::task::spawn_blocking(move || embedder.embed(&inputs))
        .await
        .map_err(|e| ServeError::Internal(format!("embedding worker: {e}")))??;
    generate::account(&state, &principal, &req.model, tokens, 0);
    let data: Vec<_> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(openai::base64_f32(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json_response(
        json!({
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
        &req.model,
    ))
}

//! `POST /v1/completions`.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use kiln_core::{GenerationRequest, Prompt};
use serde_json::{Value, json};

use super::generate;
use super::stream::{self, Kind, StreamParams};
use super::{RequestId, authorize, json_response, read_json};
use crate::error::{Result, ServeError};
use crate::openai::{self, CompletionRequest, PromptSpec};
use crate::state::AppState;

/// Answers a text completion, streamed or not.
pub(super) async fn handler(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let principal = authorize(&state, &headers, "completions")?;
    let req: CompletionRequest = read_json(&state, body).await?;
    let target = generate::resolve(&state, &principal, &req.model)?;
    let n = generate::check_n(req.n)?;
    let (sampling, stop) = req.sampling.to_core()?;
    if req.echo {
        return Err(ServeError::bad_request("echo", "echo is not supported"));
    }
    let mut prompt = match req.prompt.clone() {
        PromptSpec::One(t) => Prompt::Text(t),
        PromptSpec::Many(mut v) if v.len() == 1 => Prompt::Text(v.remove(0)),
        PromptSpec::Many(_) => {
            return Err(ServeError::bad_request(
                "prompt",
                "send one prompt per request",
            ));
        }
        PromptSpec::Tokens(ids) => Prompt::Tokens(ids),
    };
    let logprobs = match req.logprobs {
        Some(k) if k > 5 => return Err(ServeError::bad_request("logprobs", "at most 5")),
        other => other,
    };
    let restorer = generate::mask_prompt(&state, &mut prompt);
    let first = state
        .model(target.first_model())
        .ok_or_else(|| ServeError::Internal("route to a missing model".into()))?;
    let prompt_tokens = generate::check_prompt(&state, first, &prompt)?;
    let max_tokens = generate::max_tokens(
        &state,
        first,
        Some(req.max_tokens.unwrap_or(16)),
        prompt_tokens,
        "max_tokens",
    )?;
    let request = GenerationRequest {
        prompt,
        sampling,
        stop,
        max_tokens,
        logprobs,
        adapters: Vec::new(),
        response_format: kiln_core::ResponseFormat::Text,
        caller: Some(principal.name.clone()),
    };
    generate::admit(
        &state,
        &principal,
        prompt_tokens.unwrap_or(0) + max_tokens * n,
    )?;
    tracing::info!(key = %principal.name, model = %req.model, n, stream = req.stream, prompt_tokens, "completion");
    if req.stream {
        return stream::respond(StreamParams {
            state,
            principal,
            target,
            request,
            n,
            kind: Kind::Completion,
            tools: false,
            restorer,
            request_id,
            include_usage: req.stream_options.is_some_and(|o| o.include_usage),
            prompt_tokens: prompt_tokens.unwrap_or(0),
        })
        .await;
    }
    let (model, outputs) = generate::run_target(&state, &target, &request, n).await?;
    let prompt_used = outputs.first().map_or(0, |o| o.usage.prompt_tokens);
    let completion: usize = outputs.iter().map(|o| o.usage.completion_tokens).sum();
    generate::account(&state, &principal, &model, prompt_used, completion);
    let choices: Vec<Value> = outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            let c = generate::finish_choice(&state, out, restorer.as_ref(), false, &request_id);
            json!({
                "index": i,
                "text": c.text,
                "logprobs": c.logprobs.as_deref().map(openai::completion_logprobs),
                "finish_reason": c.finish_reason,
            })
        })
        .collect();
    Ok(json_response(
        json!({
            "id": format!("cmpl-{request_id}"),
            "object": "text_completion",
            "created": openai::now_secs(),
            "model": model,
            "choices": choices,
            "usage": openai::usage_json(prompt_used, completion),
        }),
        &model,
    ))
}

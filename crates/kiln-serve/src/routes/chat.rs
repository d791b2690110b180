//! `POST /v1/chat/completions`.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use kiln_core::{GenerationRequest, Prompt, Role};
use serde_json::{Value, json};

use super::generate;
use super::stream::{self, Kind, StreamParams};
use super::{RequestId, authorize, json_response, read_json};
use crate::error::{Result, ServeError};
use crate::openai::{self, ChatRequest};
use crate::state::AppState;

/// Answers a chat completion, streamed or not.
pub(super) async fn handler(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let principal = authorize(&state, &headers, "chat")?;
    let req: ChatRequest = read_json(&state, body).await?;
    let target = generate::resolve(&state, &principal, &req.model)?;
    let n = generate::check_n(req.n)?;
    let (sampling, stop) = req.sampling.to_core()?;
    let mut messages = openai::messages_to_core(&req.messages)?;
    // A named function (`{"type": "function", ...}`) must be called, like "required".
    let tool_choice = match &req.tool_choice {
        None => "auto",
        Some(Value::String(s)) if matches!(s.as_str(), "none" | "auto" | "required") => s.as_str(),
        Some(Value::String(s)) => {
            return Err(ServeError::bad_request(
                "tool_choice",
                format!("`{s}` is not none, auto or required"),
            ));
        }
        Some(named) => {
            openai::check_function(named, false)
                .map_err(|msg| ServeError::bad_request("tool_choice", msg))?;
            "required"
        }
    };
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        openai::check_function(tool, false)
            .map_err(|msg| ServeError::bad_request(format!("tools[{i}]"), msg))?;
    }
    let tools = req
        .tools
        .as_deref()
        .filter(|t| !t.is_empty() && tool_choice != "none");
    if let Some(tools) = tools {
        let m = openai::tools_message(tools, tool_choice == "required");
        match messages.first_mut() {
            Some(first) if first.role == Role::System => {
                let extra = m.text_content();
                first.content.push(kiln_core::ContentPart::Text {
                    text: format!("\n\n{extra}"),
                });
            }
            _ => messages.insert(0, m),
        }
    }
    let logprobs = if req.logprobs {
        match req.top_logprobs.unwrap_or(0) {
            k if k > 20 => return Err(ServeError::bad_request("top_logprobs", "at most 20")),
            k => Some(k),
        }
    } else {
        None
    };
    let mut prompt = Prompt::Chat(messages);
    let restorer = generate::mask_prompt(&state, &mut prompt);
    let first = state
        .model(target.first_model())
        .ok_or_else(|| ServeError::Internal("route to a missing model".into()))?;
    let prompt_tokens = generate::check_prompt(&state, first, &prompt)?;
    let max_tokens = generate::max_tokens(
        &state,
        first,
        req.max_completion_tokens.or(req.max_tokens),
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
        response_format: req.response_format.clone().unwrap_or_default(),
        caller: Some(principal.name.clone()),
    };
    generate::admit(
        &state,
        &principal,
        prompt_tokens.unwrap_or(0) + max_tokens * n,
    )?;
    tracing::info!(key = %principal.name, model = %req.model, n, stream = req.stream, prompt_tokens, "chat completion");
    if req.stream {
        return stream::respond(StreamParams {
            state,
            principal,
            target,
            request,
            n,
            kind: Kind::Chat,
            tools: tools.is_some(),
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
            let c = generate::finish_choice(
                &state,
                out,
                restorer.as_ref(),
                tools.is_some(),
                &request_id,
            );
            let mut message = json!({"role": "assistant", "content": c.text});
            if let Some(calls) = c.tool_calls {
                message["content"] = Value::Null;
                message["tool_calls"] = Value::Array(calls);
            }
            json!({
                "index": i,
                "message": message,
                "logprobs": c.logprobs.as_deref().map(openai::chat_logprobs),
                "finish_reason": c.finish_reason,
            })
        })
        .collect();
    Ok(json_response(
        json!({
            "id": format!("chatcmpl-{request_id}"),
            "object": "chat.completion",
            "created": openai::now_secs(),
            "model": model,
            "choices": choices,
            "usage": openai::usage_json(prompt_used, completion),
        }),
        &model,
    ))
}

//! The assistant as a served model: a [`TextGenerator`] named `retail-assistant` that kiln-serve
//! exposes through its OpenAI-compatible API (the server passes the authenticated key's name as
//! [`GenerationRequest::caller`]), plus the routes the web chat adds: the page and feedback.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use kiln_core::{
    CancelToken, ChatMessage, FinishReason, GenerationOutput, GenerationRequest, Prompt,
    StreamEvent, TextGenerator, Timings, Usage,
};
use kiln_serve::{AppState, ServeError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::assistant::RetailAssistant;

/// The served model name.
pub const MODEL_NAME: &str = "retail-assistant";

/// The web chat page (one self-contained file).
pub const CHAT_PAGE: &str = include_str!("../web/chat.html");

impl TextGenerator for RetailAssistant {
    fn model_name(&self) -> &str {
        MODEL_NAME
    }

    fn context_length(&self) -> usize {
        self.generator().context_length()
    }

    fn apply_chat_template(&self, messages: &[ChatMessage], _: bool) -> kiln_core::Result<String> {
        Ok(messages
            .iter()
            .map(|m| format!("{}: {}\n", m.role.as_str(), m.text_content()))
            .collect())
    }

    fn generate_stream(
        &self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<GenerationOutput> {
        let messages = match &request.prompt {
            Prompt::Chat(m) => m.clone(),
            Prompt::Text(t) => vec![ChatMessage::user(t.clone())],
            _ => {
                return Err(kiln_core::Error::Unsupported(
                    "the retail assistant takes chat messages".into(),
                ));
            }
        };
        if cancel.is_cancelled() {
            return Err(kiln_core::Error::Cancelled);
        }
        let turn = self.respond(request.caller.as_deref(), &messages)?;
        // The reply is already complete; stream it in word-sized pieces for chat clients.
        let mut emitted = 0usize;
        for piece in turn.reply.split_inclusive(' ') {
            if cancel.is_cancelled() {
                return Err(kiln_core::Error::Cancelled);
            }
            on_event(StreamEvent::Token {
                id: 0,
                text: piece,
                logprob: None,
            });
            emitted += 1;
        }
        let usage = Usage {
            prompt_tokens: turn.usage.prompt_tokens,
            completion_tokens: emitted,
            total_tokens: turn.usage.prompt_tokens + emitted,
        };
        Ok(GenerationOutput {
            text: turn.reply,
            token_ids: Vec::new(),
            prompt_ids: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage,
            timings: Timings::from_counts(0, turn.latency.as_secs_f64(), emitted, 0.0),
            logprobs: None,
        })
    }
}

/// A rating sent by the web chat.
#[derive(Debug, Deserialize)]
struct Feedback {
    completion_id: String,
    rating: String,
    #[serde(default)]
    comment: Option<String>,
}

/// The routes the assistant adds to kiln-serve's: `GET /chat` (the page, no key needed: it asks
/// for one) and `POST /v1/retail/feedback` (authenticated; comments are PII-masked before they are
/// stored). Merge them into [`kiln_serve::app`]'s router. Turns and ratings are counted in the
/// server's `/metrics` as `kiln_app_events_total`.
pub fn routes(state: AppState, assistant: Arc<RetailAssistant>) -> axum::Router {
    assistant.attach_metrics(state.metrics().clone());
    axum::Router::new()
        .route("/chat", get(|| async { Html(CHAT_PAGE) }))
        .route("/v1/retail/feedback", post(feedback))
        .with_state((state, assistant))
}

async fn feedback(
    State((state, assistant)): State<(AppState, Arc<RetailAssistant>)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let result = (|| {
        let principal = state.authenticate(&headers)?;
        principal.allow_endpoint("chat")?;
        principal.allow_model(MODEL_NAME, None)?;
        let f: Feedback = serde_json::from_slice(&body)
            .map_err(|e| ServeError::bad_request("body", e.to_string()))?;
        if f.rating != "up" && f.rating != "down" {
            return Err(ServeError::bad_request(
                "rating",
                "must be \"up\" or \"down\"",
            ));
        }
        if f.completion_id.is_empty() || f.completion_id.len() > 200 {
            return Err(ServeError::bad_request(
                "completion_id",
                "1 to 200 characters",
            ));
        }
        let comment = f.comment.as_deref().map(|c| {
            kiln_serve::pii::Masker::new(kiln_serve::pii::PiiKind::ALL.to_vec())
                .mask(&c.chars().take(2000).collect::<String>())
        });
        assistant
            .store()
            .record_feedback(
                &principal.name,
                &f.completion_id,
                &f.rating,
                comment.as_deref(),
            )
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        state.metrics().inc(
            "kiln_app_events_total",
            vec![
                ("event", "retail_feedback".to_owned()),
                ("rating", f.rating.clone()),
            ],
        );
        tracing::info!(customer = %principal.name, rating = %f.rating, "retail feedback");
        Ok::<Value, ServeError>(json!({"ok": true}))
    })();
    match result {
        Ok(v) => ([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

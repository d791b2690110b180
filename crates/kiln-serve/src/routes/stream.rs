//! Server-sent events for chat and text completions: `data: {chunk}` lines and a final
//! `data: [DONE]`.
//!
//! Live answers are read from the engine token by token, passed through the streaming output
//! filter (which holds back a tail window) and the PII restorer, and sent as chunks. The response
//! body owns the [`Generation`]s: when the client disconnects, axum drops the body, the
//! generations are dropped and their requests cancelled, which frees their slots. Tokens used up
//! to then are still accounted. Cascades and tool calls need the whole answer first; they are run
//! to the end and then streamed.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kiln_core::{GenerationOutput, GenerationRequest, TokenLogprob};
use serde_json::{Value, json};

use super::generate::{self, Target};
use crate::auth::Principal;
use crate::engine::{EngineEvent, Generation};
use crate::error::{Result, ServeError};
use crate::filter::StreamFilter;
use crate::openai;
use crate::pii::Restorer;
use crate::state::AppState;

/// Which API's chunks to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `chat.completion.chunk`.
    Chat,
    /// `text_completion`.
    Completion,
}

/// Everything a streamed answer needs.
pub(crate) struct StreamParams {
    pub state: AppState,
    pub principal: Principal,
    pub target: Target,
    pub request: GenerationRequest,
    pub n: usize,
    pub kind: Kind,
    pub tools: bool,
    pub restorer: Option<Restorer>,
    pub request_id: String,
    pub include_usage: bool,
    pub prompt_tokens: usize,
}

enum Source {
    Live {
        generation: Generation,
        peeked: Option<EngineEvent>,
    },
    Done(Option<GenerationOutput>),
}

struct ChoiceStream {
    source: Source,
    filter: StreamFilter,
    restorer: Option<Restorer>,
    started: bool,
    finished: bool,
    tokens: usize,
    logprobs: Vec<TokenLogprob>,
}

struct StreamState {
    state: AppState,
    principal: Principal,
    model: String,
    kind: Kind,
    id: String,
    created: u64,
    tools: bool,
    want_logprobs: bool,
    include_usage: bool,
    choices: Vec<ChoiceStream>,
    current: usize,
    outbox: VecDeque<Event>,
    done: bool,
    prompt_tokens: usize,
    accounted: bool,
}

/// Starts the answer; errors that happen before the first token (a full queue, a refused
/// parameter) are still answered with their HTTP status.
pub(crate) async fn respond(p: StreamParams) -> Result<Response> {
    let (model, sources) = match &p.target {
        Target::Model { name, adapter } if !p.tools => {
            let generations =
                generate::start(&p.state, name, adapter.as_deref(), &p.request, p.n).await?;
            let mut sources = Vec::with_capacity(generations.len());
            for mut generation in generations {
                let first = generation.next().await;
                if let Some(EngineEvent::Done(Err(e))) = first {
                    return Err(ServeError::from(e));
                }
                sources.push(Source::Live {
                    generation,
                    peeked: first,
                });
            }
            (name.clone(), sources)
        }
        _ => {
            let (model, outputs) =
                generate::run_target(&p.state, &p.target, &p.request, p.n).await?;
            (
                model,
                outputs.into_iter().map(|o| Source::Done(Some(o))).collect(),
            )
        }
    };
    let choices = sources
        .into_iter()
        .map(|source| ChoiceStream {
            source,
            filter: p.state.policy().filter.stream(),
            restorer: p.restorer.clone(),
            started: false,
            finished: false,
            tokens: 0,
            logprobs: Vec::new(),
        })
        .collect();
    let prefix = match p.kind {
        Kind::Chat => "chatcmpl",
        Kind::Completion => "cmpl",
    };
    let st = StreamState {
        state: p.state,
        principal: p.principal,
        model: model.clone(),
        kind: p.kind,
        id: format!("{prefix}-{}", p.request_id),
        created: openai::now_secs(),
        tools: p.tools,
        want_logprobs: p.request.logprobs.is_some(),
        include_usage: p.include_usage,
        choices,
        current: 0,
        outbox: VecDeque::new(),
        done: false,
        prompt_tokens: p.prompt_tokens,
        accounted: false,
    };
    let events = futures_util::stream::unfold(st, |mut st| async move {
        let event = st.next_event().await?;
        Some((Ok::<_, Infallible>(event), st))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&model) {
        response.headers_mut().insert("x-kiln-model", v);
    }
    Ok(response)
}

impl StreamState {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.outbox.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            if self.current >= self.choices.len() {
                if self.include_usage {
                    let completion = self.completion_tokens();
                    let mut chunk = self.chunk_base();
                    chunk["choices"] = json!([]);
                    chunk["usage"] = openai::usage_json(self.prompt_tokens, completion);
                    self.push(&chunk);
                }
                self.outbox.push_back(Event::default().data("[DONE]"));
                self.account();
                self.done = true;
                continue;
            }
            self.advance().await;
        }
    }

    fn completion_tokens(&self) -> usize {
        self.choices.iter().map(|c| c.tokens).sum()
    }

    fn account(&mut self) {
        if !self.accounted {
            self.accounted = true;
            let completion = self.completion_tokens();
            generate::account(
                &self.state,
                &self.principal,
                &self.model,
                self.prompt_tokens,
                completion,
            );
        }
    }

    fn chunk_base(&self) -> Value {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model})
    }

    fn push(&mut self, chunk: &Value) {
        self.outbox
            .push_back(Event::default().data(chunk.to_string()));
    }

    /// Queues a choice chunk with text (or tool calls) and/or a finish reason.
    fn push_choice(
        &mut self,
        index: usize,
        text: Option<&str>,
        tool_calls: Option<Vec<Value>>,
        finish: Option<&str>,
    ) {
        let logprobs = std::mem::take(&mut self.choices[index].logprobs);
        let logprobs = (self.want_logprobs && !logprobs.is_empty()).then_some(logprobs);
        let mut chunk = self.chunk_base();
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = json!({});
                if !self.choices[index].started {
                    delta["role"] = json!("assistant");
                    delta["content"] = json!("");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                if let Some(calls) = tool_calls {
                    let calls: Vec<Value> = calls
                        .into_iter()
                        .enumerate()
                        .map(|(i, mut c)| {
                            c["index"] = json!(i);
                            c
                        })
                        .collect();
                    delta["content"] = Value::Null;
                    delta["tool_calls"] = json!(calls);
                }
                json!({"index": index, "delta": delta,
                       "logprobs": logprobs.as_deref().map(openai::chat_logprobs), "finish_reason": finish})
            }
            Kind::Completion => json!({"index": index, "text": text.unwrap_or(""),
                "logprobs": logprobs.as_deref().map(openai::completion_logprobs), "finish_reason": finish}),
        };
        self.choices[index].started = true;
        chunk["choices"] = json!([choice]);
        self.push(&chunk);
    }

    /// Reads the current choice until something can be sent.
    async fn advance(&mut self) {
        let i = self.current;
        if self.choices[i].finished {
            self.current += 1;
            return;
        }
        if !self.choices[i].started && self.kind == Kind::Chat && !self.tools {
            self.push_choice(i, None, None, None);
        }
        let event = match &mut self.choices[i].source {
            Source::Live { generation, peeked } => match peeked.take() {
                Some(e) => Some(e),
                None => generation.next().await,
            },
            Source::Done(out) => out.take().map(|o| EngineEvent::Done(Ok(o))),
        };
        let buffered = matches!(self.choices[i].source, Source::Done(_));
        match event {
            Some(EngineEvent::Token { text, logprob, .. }) => {
                let c = &mut self.choices[i];
                c.tokens += 1;
                c.logprobs.extend(logprob);
                let f = c.filter.push(&text);
                let shown = match &mut c.restorer {
                    Some(r) if f.blocked_by.is_some() => r.push(&f.text) + &r.finish(),
                    Some(r) => r.push(&f.text),
                    None => f.text.clone(),
                };
                generate::count_filter(&self.state, f.blocked_by.as_deref(), &f.redactions);
                if f.blocked_by.is_some() {
                    if !shown.is_empty() {
                        self.push_choice(i, Some(&shown), None, None);
                    }
                    self.push_choice(i, None, None, Some("content_filter"));
                    self.finish_choice(i);
                } else if !shown.is_empty() {
                    self.push_choice(i, Some(&shown), None, None);
                }
            }
            Some(EngineEvent::Done(Ok(out))) if buffered => {
                let c = generate::finish_choice(
                    &self.state,
                    &out,
                    self.choices[i].restorer.as_ref(),
                    self.tools,
                    &self.id,
                );
                self.choices[i].tokens = out.usage.completion_tokens;
                self.choices[i].logprobs = c.logprobs.clone().unwrap_or_default();
                if let Some(calls) = c.tool_calls {
                    self.push_choice(i, None, Some(calls), None);
                } else {
                    self.push_choice(i, Some(&c.text), None, None);
                }
                self.push_choice(i, None, None, Some(c.finish_reason));
                self.finish_choice(i);
            }
            Some(EngineEvent::Done(Ok(out))) => {
                let c = &mut self.choices[i];
                c.tokens = out.usage.completion_tokens;
                if out.usage.prompt_tokens > 0 {
                    self.prompt_tokens = out.usage.prompt_tokens;
                }
                let f = c.filter.finish();
                let shown = match &mut c.restorer {
                    Some(r) => r.push(&f.text) + &r.finish(),
                    None => f.text.clone(),
                };
                generate::count_filter(&self.state, f.blocked_by.as_deref(), &f.redactions);
                if !shown.is_empty() {
                    self.push_choice(i, Some(&shown), None, None);
                }
                let reason = if f.blocked_by.is_some() {
                    "content_filter"
                } else {
                    openai::finish_reason(&out)
                };
                self.push_choice(i, None, None, Some(reason));
                self.finish_choice(i);
            }
            Some(EngineEvent::Done(Err(e))) => self.fail(ServeError::from(e)),
            None => self.fail(ServeError::Internal("the generation worker stopped".into())),
        }
    }

    fn finish_choice(&mut self, i: usize) {
        let c = &mut self.choices[i];
        c.finished = true;
        // Dropping a live generation cancels it (after a block) and frees its slot.
        c.source = Source::Done(None);
        self.current += 1;
    }

    /// Sends the error in OpenAI's shape as the last event and ends the stream.
    fn fail(&mut self, e: ServeError) {
        if e.status().is_server_error() {
            tracing::error!(error = %e, "stream failed");
        }
        let body = e.body();
        self.push(&body);
        self.outbox.push_back(Event::default().data("[DONE]"));
        self.account();
        self.done = true;
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // The client went away mid-stream: the tokens generated so far are still used.
        if !self.accounted {
            tracing::info!(key = %self.principal.name, "client disconnected mid-stream");
            self.account();
        }
    }
}

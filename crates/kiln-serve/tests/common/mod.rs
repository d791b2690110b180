//! A scripted model (no weights): replies are computed from the rendered prompt, streamed word by
//! word; it records the requests it saw, honours stop strings, `max_tokens` and cancellation, can be
//! held (to fill slots), and implements continuous batching and watermark-style logits
//! processors over a toy vocabulary (`w0` .. `w999`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use futures_util::StreamExt;
use kiln_core::{
    BatchGenerator, CancelToken, ChatMessage, DecodeBatch, Embedder, Embedding, EmbeddingInput,
    FinishReason, GenerationOutput, GenerationRequest, Prompt, ResponseFormat, SequenceId,
    StreamEvent, TextGenerator, Timings, TokenLogprob, TokenVocabulary, Tokenizer, Usage,
};
use serde_json::Value;
use tower::ServiceExt;

pub type Reply = Arc<dyn Fn(&str, &GenerationRequest) -> String + Send + Sync>;

pub struct Scripted {
    pub name: String,
    pub reply: Reply,
    pub logprob: f32,
    pub delay: Duration,
    pub held: Arc<AtomicBool>,
    pub calls: AtomicUsize,
    pub cancelled: AtomicUsize,
    pub requests: Mutex<Vec<GenerationRequest>>,
    pub max_batch: AtomicUsize,
}

impl Scripted {
    pub fn new(name: &str, reply: &str) -> Self {
        let reply = reply.to_owned();
        Self::with(name, Arc::new(move |_, _| reply.clone()))
    }

    pub fn with(name: &str, reply: Reply) -> Self {
        Self {
            name: name.into(),
            reply,
            logprob: -0.1,
            delay: Duration::ZERO,
            held: Arc::new(AtomicBool::new(false)),
            calls: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            max_batch: AtomicUsize::new(0),
        }
    }

    pub fn last_request(&self) -> GenerationRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }

    fn render(&self, prompt: &Prompt) -> String {
        match prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Chat(m) => self.apply_chat_template(m, true).unwrap_or_default(),
            Prompt::Tokens(ids) => format!("{ids:?}"),
        }
    }

    /// The tokens of the answer: the words of the reply (each with its trailing space), or toy
    /// vocabulary tokens chosen through the request's logits processor.
    fn plan(&self, request: &GenerationRequest) -> kiln_core::Result<Vec<(u32, String)>> {
        if let ResponseFormat::Custom(f) = &request.response_format {
            let vocab = Arc::new(TokenVocabulary {
                bytes: vec![Vec::new(); 1000],
                eos_token_ids: vec![],
            });
            let mut p = f.0.create(&vocab)?;
            let mut ids: Vec<u32> = Vec::new();
            for step in 0..request.max_tokens {
                let mut logits: Vec<f32> = (0..1000u64)
                    .map(|i| (mix(i ^ ((step as u64) << 20)) % 1000) as f32 / 1000.0)
                    .collect();
                p.process(&ids, &mut logits)?;
                let best = logits
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i as u32);
                ids.push(best);
            }
            return Ok(ids.into_iter().map(|id| (id, format!("w{id} "))).collect());
        }
        let mut text = (self.reply)(&self.render(&request.prompt), request);
        for s in &request.stop.stop_strings {
            if let Some(i) = text.find(s.as_str()) {
                text.truncate(i);
            }
        }
        let mut tokens = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let end = rest[first..].find(' ').map_or(rest.len(), |i| i + first);
            tokens.push((tokens.len() as u32 + 1, rest[..end].to_owned()));
            rest = &rest[end..];
        }
        tokens.truncate(request.max_tokens);
        Ok(tokens)
    }

    fn logprob_of(&self, request: &GenerationRequest, id: u32, text: &str) -> Option<TokenLogprob> {
        request.logprobs.map(|k| TokenLogprob {
            id,
            token: text.to_owned(),
            logprob: self.logprob,
            top: (0..k)
                .map(|j| (j as u32, format!("alt{j}"), self.logprob - 1.0))
                .collect(),
        })
    }

    fn output(
        &self,
        request: &GenerationRequest,
        tokens: &[(u32, String)],
        finish: FinishReason,
        logprobs: Vec<TokenLogprob>,
    ) -> GenerationOutput {
        let prompt_tokens = self.render(&request.prompt).split_whitespace().count();
        GenerationOutput {
            text: tokens.iter().map(|(_, t)| t.as_str()).collect(),
            token_ids: tokens.iter().map(|(i, _)| *i).collect(),
            prompt_ids: vec![0; prompt_tokens],
            finish_reason: finish,
            usage: Usage {
                prompt_tokens,
                completion_tokens: tokens.len(),
                total_tokens: prompt_tokens + tokens.len(),
            },
            timings: Timings::default(),
            logprobs: request.logprobs.map(|_| logprobs),
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TextGenerator for Scripted {
    fn model_name(&self) -> &str {
        &self.name
    }
    fn context_length(&self) -> usize {
        4096
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
        request.sampling.validate()?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().unwrap().push(request.clone());
        let tokens = self.plan(request)?;
        let mut done = Vec::new();
        let mut logprobs = Vec::new();
        for (id, text) in &tokens {
            while self.held.load(Ordering::SeqCst) && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if cancel.is_cancelled() {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                return Ok(self.output(request, &done, FinishReason::Cancelled, logprobs));
            }
            std::thread::sleep(self.delay);
            let lp = self.logprob_of(request, *id, text);
            on_event(StreamEvent::Token {
                id: *id,
                text,
                logprob: lp.as_ref(),
            });
            logprobs.extend(lp);
            done.push((*id, text.clone()));
        }
        let finish = if tokens.len() == request.max_tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        Ok(self.output(request, &done, finish, logprobs))
    }
}

/// A running sequence: its request, planned tokens and how many were sent.
type Sequence = (GenerationRequest, Vec<(u32, String)>, usize);

/// Continuous batching over the same script: each step emits one token of every sequence.
pub struct ScriptedBatch<'a> {
    model: &'a Scripted,
    next: SequenceId,
    seqs: HashMap<SequenceId, Sequence>,
}

impl BatchGenerator for Scripted {
    fn start_batch(&self, _max: usize) -> kiln_core::Result<Box<dyn DecodeBatch + '_>> {
        Ok(Box::new(ScriptedBatch {
            model: self,
            next: 0,
            seqs: HashMap::new(),
        }))
    }
}

impl DecodeBatch for ScriptedBatch<'_> {
    fn join(&mut self, request: &GenerationRequest) -> kiln_core::Result<SequenceId> {
        request.sampling.validate()?;
        self.model.calls.fetch_add(1, Ordering::SeqCst);
        self.model.requests.lock().unwrap().push(request.clone());
        let plan = self.model.plan(request)?;
        self.next += 1;
        self.seqs.insert(self.next, (request.clone(), plan, 0));
        Ok(self.next)
    }
    fn leave(&mut self, id: SequenceId) -> Option<GenerationOutput> {
        let (r, plan, at) = self.seqs.remove(&id)?;
        self.model.cancelled.fetch_add(1, Ordering::SeqCst);
        Some(
            self.model
                .output(&r, &plan[..at], FinishReason::Cancelled, Vec::new()),
        )
    }
    fn step(
        &mut self,
        on_event: &mut dyn FnMut(SequenceId, StreamEvent<'_>),
    ) -> kiln_core::Result<Vec<(SequenceId, kiln_core::Result<GenerationOutput>)>> {
        if self.model.held.load(Ordering::SeqCst) {
            // Held: no progress, but the scheduler keeps admitting between steps.
            std::thread::sleep(Duration::from_millis(2));
            return Ok(Vec::new());
        }
        self.model
            .max_batch
            .fetch_max(self.seqs.len(), Ordering::SeqCst);
        std::thread::sleep(self.model.delay.max(Duration::from_millis(1)));
        let mut finished = Vec::new();
        for (id, (_, plan, at)) in &mut self.seqs {
            if let Some((tid, text)) = plan.get(*at) {
                on_event(
                    *id,
                    StreamEvent::Token {
                        id: *tid,
                        text,
                        logprob: None,
                    },
                );
                *at += 1;
            }
            if *at >= plan.len() {
                finished.push(*id);
            }
        }
        Ok(finished
            .into_iter()
            .filter_map(|id| {
                let (r, plan, _) = self.seqs.remove(&id)?;
                let finish = if plan.len() == r.max_tokens {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                Some((id, Ok(self.model.output(&r, &plan, finish, Vec::new()))))
            })
            .collect())
    }
    fn len(&self) -> usize {
        self.seqs.len()
    }
}

/// Whitespace words; `w<id>` is token `id`, other words hash into 0..1000.
pub struct WordTokenizer;

impl Tokenizer for WordTokenizer {
    fn encode(&self, text: &str, _: bool) -> kiln_core::Result<Vec<u32>> {
        Ok(text
            .split_whitespace()
            .map(|w| {
                w.strip_prefix('w')
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| {
                        (mix(w
                            .bytes()
                            .fold(7u64, |h, b| h.wrapping_mul(31) + u64::from(b)))
                            % 1000) as u32
                    })
            })
            .collect())
    }
    fn decode(&self, ids: &[u32], _: bool) -> kiln_core::Result<String> {
        Ok(ids
            .iter()
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" "))
    }
    fn vocab_size(&self) -> usize {
        1000
    }
    fn token_to_id(&self, _: &str) -> Option<u32> {
        None
    }
    fn id_to_token(&self, id: u32) -> Option<String> {
        Some(format!("w{id}"))
    }
}

/// Embeds a text as `[length, number of spaces, 1]`.
pub struct LenEmbedder;

impl Embedder for LenEmbedder {
    fn name(&self) -> &str {
        "len"
    }
    fn dimension(&self) -> usize {
        3
    }
    fn embed(&self, inputs: &[EmbeddingInput]) -> kiln_core::Result<Vec<Embedding>> {
        inputs
            .iter()
            .map(|i| match i {
                EmbeddingInput::Text(t) => {
                    Ok(vec![t.len() as f32, t.matches(' ').count() as f32, 1.0])
                }
                EmbeddingInput::Image(_) => Err(kiln_core::Error::Unsupported("images".into())),
            })
            .collect()
    }
}

pub fn sha(secret: &str) -> String {
    kiln_serve::auth::hash_key(secret)
}

/// Sends a request; returns status, headers and body bytes.
pub async fn send(app: &axum::Router, req: Request<Body>) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let r: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

pub fn post(path: &str, key: Option<&str>, body: &Value) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

pub fn get(path: &str, key: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(Body::empty()).unwrap()
}

/// Posts and parses a JSON answer.
pub async fn post_json(
    app: &axum::Router,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, axum::http::HeaderMap, Value) {
    let (s, h, b) = send(app, post(path, key, body)).await;
    let v = serde_json::from_slice(&b).unwrap_or(Value::Null);
    (s, h, v)
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|s| s.trim().to_owned())
        .collect()
}

/// The concatenated `delta.content` of chat chunks.
pub fn sse_text(data: &[String]) -> String {
    data.iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Reads the first body chunk of a streamed response, then drops the body (a disconnect).
pub async fn read_first_chunk_and_drop(r: Response<Body>) -> String {
    let mut stream = r.into_body().into_data_stream();
    let first = stream.next().await.and_then(Result::ok).unwrap_or_default();
    drop(stream);
    String::from_utf8_lossy(&first).into_owned()
}

/// A metric's value in the exposition text (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

//! The generation pipeline chat and text completions share: model resolution (`model:adapter`,
//! cascades) with RBAC, PII masking, prompt-length and token limits, the response cache, running
//! on the engine (with the watermark), cascading, output filtering, PII restoration and
//! accounting.

use std::sync::Arc;

use kiln_core::{GenerationOutput, GenerationRequest, Prompt, ResponseFormat, TokenLogprob};

use crate::auth::Principal;
use crate::cache::key_of;
use crate::config::RouteConfig;
use crate::engine::Generation;
use crate::error::{Result, ServeError};
use crate::pii::{Masker, Restorer};
use crate::state::{AppState, ServedModel, check_adapter_name};
use crate::watermark::WatermarkFactory;

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// One model, optionally with an adapter.
    Model {
        /// The model's name.
        name: String,
        /// The adapter chosen with `model:adapter`.
        adapter: Option<String>,
    },
    /// A cascade route.
    Cascade(RouteConfig),
}

impl Target {
    /// The model that answers first (for prompt counting).
    pub fn first_model(&self) -> &str {
        match self {
            Target::Model { name, .. } => name,
            Target::Cascade(r) => r.models.first().map_or("", String::as_str),
        }
    }
}

/// Resolves `"model"`, `"model:adapter"` or a route name, checking the caller's role.
pub(crate) fn resolve(state: &AppState, principal: &Principal, model: &str) -> Result<Target> {
    let (base, adapter) = match model.split_once(':') {
        Some((b, a)) => (b, Some(a)),
        None => (model, None),
    };
    if let Some(route) = state.config().routes.iter().find(|r| r.name == base) {
        if adapter.is_some() {
            return Err(ServeError::bad_request("model", "a route takes no adapter"));
        }
        principal.allow_model(base, None)?;
        return Ok(Target::Cascade(route.clone()));
    }
    let served = state
        .model(base)
        .filter(|m| m.engine.is_some())
        .ok_or_else(|| ServeError::NotFound {
            message: format!("the model `{base}` does not exist or does not generate text"),
            param: Some("model"),
        })?;
    principal.allow_model(base, adapter)?;
    if let Some(a) = adapter {
        check_adapter_name(a)
            .map_err(|_| ServeError::bad_request("model", format!("invalid adapter name `{a}`")))?;
        if let Some(manager) = &served.handle.adapters
            && !manager.adapters().iter().any(|x| x == a)
        {
            return Err(ServeError::NotFound {
                message: format!("the adapter `{a}` is not loaded on `{base}`"),
                param: Some("model"),
            });
        }
    }
    Ok(Target::Model {
        name: base.to_owned(),
        adapter: adapter.map(str::to_owned),
    })
}

/// Masks the prompt's text when PII masking is on; returns the restorer when replies are to be
/// restored.
pub(crate) fn mask_prompt(state: &AppState, prompt: &mut Prompt) -> Option<Restorer> {
    let config = state.config();
    let pii = &config.pii;
    if !pii.enabled {
        return None;
    }
    let mut masker = Masker::new(state.policy().pii_kinds.clone());
    match prompt {
        Prompt::Text(t) => *t = masker.mask(t),
        Prompt::Chat(messages) => {
            for m in messages {
                for part in &mut m.content {
                    if let kiln_core::ContentPart::Text { text } = part {
                        *text = masker.mask(text);
                    }
                }
            }
        }
        Prompt::Tokens(_) => {}
    }
    for (kind, n) in masker.counts() {
        state.metrics().add(
            "kiln_pii_masked_total",
            vec![("kind", kind.name().to_owned())],
            n as f64,
        );
    }
    let restorer = masker.restorer();
    (pii.restore && !restorer.is_empty()).then_some(restorer)
}

/// Counts the prompt's tokens with the model's tokenizer (`None` without one) and enforces the
/// configured limit.
pub(crate) fn check_prompt(
    state: &AppState,
    model: &ServedModel,
    prompt: &Prompt,
) -> Result<Option<usize>> {
    let Some(tokenizer) = &model.handle.tokenizer else {
        return Ok(None);
    };
    let n = match prompt {
        Prompt::Tokens(ids) => ids.len(),
        Prompt::Text(t) => tokenizer.encode(t, true)?.len(),
        Prompt::Chat(messages) => {
            let generator = model
                .engine
                .as_ref()
                .map(|e| e.generator())
                .ok_or_else(|| ServeError::Internal("model without engine".into()))?;
            let text = generator.apply_chat_template(messages, true)?;
            tokenizer.encode(&text, false)?.len()
        }
    };
    let limit = state.config().server.max_prompt_tokens;
    if n > limit {
        return Err(ServeError::PromptTooLong { tokens: n, limit });
    }
    Ok(Some(n))
}

/// The `max_tokens` to use: the request's (checked against the server limit) or the server's
/// limit within the model's context.
pub(crate) fn max_tokens(
    state: &AppState,
    model: &ServedModel,
    requested: Option<usize>,
    prompt_tokens: Option<usize>,
    param: &str,
) -> Result<usize> {
    let limit = state.config().server.max_completion_tokens;
    match requested {
        Some(0) => Err(ServeError::bad_request(param, "must be at least 1")),
        Some(n) if n > limit => Err(ServeError::bad_request(
            param,
            format!("at most {limit} tokens may be requested"),
        )),
        Some(n) => Ok(n),
        None => {
            let context = model
                .engine
                .as_ref()
                .map_or(limit, |e| e.generator().context_length());
            Ok(limit
                .min(context.saturating_sub(prompt_tokens.unwrap_or(0)))
                .max(1))
        }
    }
}

/// Checks `n` (1-16).
pub(crate) fn check_n(n: Option<usize>) -> Result<usize> {
    match n.unwrap_or(1) {
        0 => Err(ServeError::bad_request("n", "must be at least 1")),
        n if n > 16 => Err(ServeError::bad_request("n", "at most 16 choices")),
        n => Ok(n),
    }
}

/// Admits the request against the key's rate limits, quota and budget.
pub(crate) fn admit(
    state: &AppState,
    principal: &Principal,
    estimated_tokens: usize,
) -> Result<()> {
    state.0.costs.check(&principal.key)?;
    state
        .0
        .limiter
        .admit(&principal.key, estimated_tokens as u64)
        .inspect_err(|e| {
            let reason = if matches!(e, ServeError::QuotaExceeded { .. }) {
                "quota"
            } else {
                "rate_limit"
            };
            state
                .metrics()
                .inc("kiln_rejected_total", vec![("reason", reason.into())]);
        })
}

/// Records the tokens of an answer: limits, quota, cost and metrics.
pub(crate) fn account(
    state: &AppState,
    principal: &Principal,
    model: &str,
    prompt_tokens: usize,
    completion_tokens: usize,
) {
    state
        .0
        .limiter
        .record(&principal.key, (prompt_tokens + completion_tokens) as u64);
    let prices = state
        .model(model)
        .map(|m| m.config.prices)
        .unwrap_or_default();
    state.0.costs.record(
        &principal.key,
        model,
        prices,
        prompt_tokens,
        completion_tokens,
    );
    let m = state.metrics();
    m.add(
        "kiln_tokens_total",
        vec![("model", model.to_owned()), ("kind", "prompt".into())],
        prompt_tokens as f64,
    );
    m.add(
        "kiln_tokens_total",
        vec![("model", model.to_owned()), ("kind", "completion".into())],
        completion_tokens as f64,
    );
}

/// The request a model runs: the adapter added, the watermark chained after the format.
fn model_request(
    model: &ServedModel,
    mut request: GenerationRequest,
    adapter: Option<&str>,
) -> Result<GenerationRequest> {
    if let Some(a) = adapter {
        request = request.with_adapter(a, 1.0);
    }
    if let Some(w) = model.config.watermark {
        let inner = kiln_prompt::structured::factory_for(&request.response_format)?;
        request.response_format =
            ResponseFormat::custom(Arc::new(WatermarkFactory { config: w, inner }));
    }
    Ok(request)
}

/// Starts `n` generations on `model` (seeds `seed + i`).
pub(crate) async fn start(
    state: &AppState,
    model: &str,
    adapter: Option<&str>,
    request: &GenerationRequest,
    n: usize,
) -> Result<Vec<Generation>> {
    let served = state
        .model(model)
        .ok_or_else(|| ServeError::Internal(format!("model `{model}` vanished")))?;
    let engine = served
        .engine
        .as_ref()
        .ok_or_else(|| ServeError::Internal("model without engine".into()))?;
    let mut generations = Vec::with_capacity(n);
    for i in 0..n {
        let mut r = model_request(served, request.clone(), adapter)?;
        r.sampling.seed = r.sampling.seed.map(|s| s.wrapping_add(i as u64));
        generations.push(engine.submit(r).await?);
    }
    Ok(generations)
}

/// Runs `n` choices to the end, through the exact response cache when the request is
/// deterministic.
pub(crate) async fn run(
    state: &AppState,
    model: &str,
    adapter: Option<&str>,
    request: &GenerationRequest,
    n: usize,
) -> Result<Vec<GenerationOutput>> {
    let deterministic = request.sampling.is_greedy() || request.sampling.seed.is_some();
    let key = if deterministic && state.0.cache.enabled() {
        serde_json::to_vec(request).ok().map(|body| {
            key_of(&[
                model.as_bytes(),
                adapter.unwrap_or("").as_bytes(),
                &body,
                &n.to_le_bytes(),
            ])
        })
    } else {
        None
    };
    if let Some(k) = &key {
        let mut hit = state.0.cache.get(k).map(|h| h.as_ref().clone());
        if hit.is_none() {
            // Another replica may have answered it (the shared cache, with Redis).
            hit = state.shared_cache_get(k).await;
            if let Some(h) = &hit {
                state.0.cache.put(*k, Arc::new(h.clone()));
            }
        }
        if let Some(hit) = hit {
            state
                .metrics()
                .inc("kiln_cache_hits_total", vec![("model", model.to_owned())]);
            return Ok(hit);
        }
        state
            .metrics()
            .inc("kiln_cache_misses_total", vec![("model", model.to_owned())]);
    }
    let generations = start(state, model, adapter, request, n).await?;
    let outputs =
        futures_util::future::try_join_all(generations.into_iter().map(Generation::finish)).await?;
    if let Some(k) = key {
        state.shared_cache_put(&k, &outputs);
        state.0.cache.put(k, Arc::new(outputs.clone()));
    }
    Ok(outputs)
}

/// The mean log-probability of the generated tokens of all outputs (0 when none).
fn mean_logprob(outputs: &[GenerationOutput]) -> f32 {
    let lps: Vec<f32> = outputs
        .iter()
        .flat_map(|o| o.logprobs.iter().flatten().map(|t| t.logprob))
        .collect();
    if lps.is_empty() {
        0.0
    } else {
        lps.iter().sum::<f32>() / lps.len() as f32
    }
}

/// Runs a target to the end: one model, or a cascade that escalates while the answer's mean
/// token log-probability is under the route's threshold (or it contains an escalation phrase).
/// Returns the model that answered.
pub(crate) async fn run_target(
    state: &AppState,
    target: &Target,
    request: &GenerationRequest,
    n: usize,
) -> Result<(String, Vec<GenerationOutput>)> {
    match target {
        Target::Model { name, adapter } => Ok((
            name.clone(),
            run(state, name, adapter.as_deref(), request, n).await?,
        )),
        Target::Cascade(route) => {
            let wanted = request.logprobs;
            let mut r = request.clone();
            r.logprobs = Some(wanted.unwrap_or(0));
            let last = route.models.len().saturating_sub(1);
            for (i, model) in route.models.iter().enumerate() {
                let mut outputs = run(state, model, None, &r, n).await?;
                let mean = mean_logprob(&outputs);
                let phrase = outputs.iter().any(|o| {
                    route
                        .escalate_on
                        .iter()
                        .any(|p| o.text.contains(p.as_str()))
                });
                if i < last && (mean < route.min_mean_logprob || phrase) {
                    tracing::info!(route = %route.name, from = %model, mean_logprob = mean, "cascade escalates");
                    state.metrics().inc(
                        "kiln_cascade_escalations_total",
                        vec![("route", route.name.clone()), ("from", model.clone())],
                    );
                    // The smaller model's tokens are paid for too.
                    continue;
                }
                if wanted.is_none() {
                    for o in &mut outputs {
                        o.logprobs = None;
                    }
                }
                return Ok((model.clone(), outputs));
            }
            Err(ServeError::Internal("empty cascade".into()))
        }
    }
}

/// A finished choice after filtering, restoration and tool-call parsing.
#[derive(Debug)]
pub(crate) struct Choice {
    pub text: String,
    pub finish_reason: &'static str,
    pub tool_calls: Option<Vec<serde_json::Value>>,
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// Applies the output policies, then restores masked PII, then finds tool calls.
pub(crate) fn finish_choice(
    state: &AppState,
    out: &GenerationOutput,
    restorer: Option<&Restorer>,
    tools: bool,
    request_id: &str,
) -> Choice {
    let filtered = state.policy().filter.apply(&out.text);
    count_filter(state, filtered.blocked_by.as_deref(), &filtered.redactions);
    let text = restorer.map_or(filtered.text.clone(), |r| r.restore(&filtered.text));
    let tool_calls = if tools && filtered.blocked_by.is_none() {
        crate::openai::tool_calls_of(&text, request_id)
    } else {
        None
    };
    let finish_reason = if filtered.blocked_by.is_some() {
        "content_filter"
    } else if tool_calls.is_some() {
        "tool_calls"
    } else {
        crate::openai::finish_reason(out)
    };
    Choice {
        text,
        finish_reason,
        tool_calls,
        logprobs: out.logprobs.clone(),
    }
}

/// Counts filter actions in the metrics.
pub(crate) fn count_filter(state: &AppState, blocked_by: Option<&str>, redactions: &[String]) {
    if let Some(p) = blocked_by {
        state.metrics().inc(
            "kiln_filter_actions_total",
            vec![("policy", p.to_owned()), ("action", "block".into())],
        );
    }
    for p in redactions {
        state.metrics().inc(
            "kiln_filter_actions_total",
            vec![("policy", p.clone()), ("action", "redact".into())],
        );
    }
}

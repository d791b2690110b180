//! Text generation: requests, sampling parameters, stop conditions, streamed events and outputs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::{ChatMessage, Error, ResponseFormat, Result};

/// What to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Raw text, tokenized with the model's tokenizer (special tokens such as BOS added as the model
    /// expects).
    Text(String),
    /// A conversation, rendered through the model's chat template with the generation prompt added.
    Chat(Vec<ChatMessage>),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
}

/// How the next token is chosen.
///
/// The filters apply in the order llama.cpp and transformers use: penalties, temperature, top-k,
/// top-p, min-p. A temperature of 0 selects greedy decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; `0.0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens; `0` disables.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability mass reaches `top_p`; `1.0` disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely one's; `0.0` disables.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of already seen tokens; `1.0` disables.
    pub repetition_penalty: f32,
    /// Subtract from the logits of tokens that appeared at least once; `0.0` disables.
    pub presence_penalty: f32,
    /// Subtract `count * frequency_penalty` from the logits of seen tokens; `0.0` disables.
    pub frequency_penalty: f32,
    /// Seed of the random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    #[must_use]
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Whether the choice is deterministic (greedy).
    #[must_use]
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |name: &'static str, message: String| Err(Error::InvalidParameter { name, message });
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(
                "temperature",
                format!("must be >= 0, got {}", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", format!("must be in [0, 1], got {}", self.min_p));
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return bad(
                "repetition_penalty",
                format!("must be > 0, got {}", self.repetition_penalty),
            );
        }
        if !self.presence_penalty.is_finite() || self.presence_penalty.abs() > 2.0 {
            return bad(
                "presence_penalty",
                format!("must be in [-2, 2], got {}", self.presence_penalty),
            );
        }
        if !self.frequency_penalty.is_finite() || self.frequency_penalty.abs() > 2.0 {
            return bad(
                "frequency_penalty",
                format!("must be in [-2, 2], got {}", self.frequency_penalty),
            );
        }
        Ok(())
    }
}

/// When generation stops, besides the token budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StopConditions {
    /// Stop when the generated text contains one of these; the stop string is not part of the output.
    pub stop_strings: Vec<String>,
    /// Extra token ids that end generation (the model's EOS ids always do unless `ignore_eos`).
    pub stop_token_ids: Vec<u32>,
    /// Keep going past the model's end-of-sequence tokens.
    pub ignore_eos: bool,
}

/// A generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// When to stop early.
    pub stop: StopConditions,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// Report the log-probability of each chosen token and of this many alternatives (`None`: none).
    pub logprobs: Option<usize>,
    /// LoRA adapters (registered with the generator by name) applied to this request only, each
    /// with a weight; empty: the base model.
    #[serde(default)]
    pub adapters: Vec<AdapterChoice>,
    /// The form the output must take (see [`ResponseFormat`]); plain text by default.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Who the request is made for, as the server authenticated them (an API key's configured
    /// name), never taken from a request body; `None` outside a server. Generators that act on a
    /// user's behalf (kiln-retail's assistant reads only the caller's own orders) authorize with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
}

/// An adapter chosen for one request, by the name it was registered under, with a weight
/// (`1.0` applies it as trained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterChoice {
    /// The registered name.
    pub name: String,
    /// The factor its update is multiplied by.
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

impl GenerationRequest {
    /// A request continuing raw text, with default sampling and 256 tokens.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Prompt::Text(text.into()))
    }
    /// A chat request.
    #[must_use]
    pub fn chat(messages: Vec<ChatMessage>) -> Self {
        Self::new(Prompt::Chat(messages))
    }
    /// A request from a prompt.
    #[must_use]
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            stop: StopConditions::default(),
            max_tokens: 256,
            logprobs: None,
            adapters: Vec::new(),
            response_format: ResponseFormat::Text,
            caller: None,
        }
    }
    /// Sets the authenticated caller (see [`GenerationRequest::caller`]).
    #[must_use]
    pub fn with_caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(caller.into());
        self
    }
    /// Sets the sampling parameters.
    #[must_use]
    pub fn with_sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }
    /// Sets the stop conditions.
    #[must_use]
    pub fn with_stop(mut self, stop: StopConditions) -> Self {
        self.stop = stop;
        self
    }
    /// Sets the token budget.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }
    /// Adds a LoRA adapter (by registered name) with a weight.
    #[must_use]
    pub fn with_adapter(mut self, name: impl Into<String>, weight: f32) -> Self {
        self.adapters.push(AdapterChoice {
            name: name.into(),
            weight,
        });
        self
    }
    /// Asks for log-probabilities with `top` alternatives per token.
    #[must_use]
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.logprobs = Some(top);
        self
    }
    /// Constrains the output (JSON, a schema, or a custom logits processor).
    #[must_use]
    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token, a stop token or a stop string.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The [`CancelToken`] was triggered.
    Cancelled,
}

impl FinishReason {
    /// The OpenAI name of the reason.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The sum.
    pub total_tokens: usize,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, u: Usage) {
        self.prompt_tokens += u.prompt_tokens;
        self.completion_tokens += u.completion_tokens;
        self.total_tokens += u.total_tokens;
    }
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Seconds spent on the prompt (prefill).
    pub prefill_seconds: f64,
    /// Seconds spent generating after the first token.
    pub decode_seconds: f64,
    /// Prompt tokens per second.
    pub prefill_tokens_per_second: f64,
    /// Generated tokens per second (excluding the prefill).
    pub decode_tokens_per_second: f64,
}

impl Timings {
    /// Builds timings from token counts and durations.
    #[must_use]
    pub fn from_counts(
        prefill_tokens: usize,
        prefill_seconds: f64,
        decode_tokens: usize,
        decode_seconds: f64,
    ) -> Self {
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        Self {
            prefill_seconds,
            decode_seconds,
            prefill_tokens_per_second: rate(prefill_tokens, prefill_seconds),
            decode_tokens_per_second: rate(decode_tokens, decode_seconds),
        }
    }
}

/// The log-probability of a chosen token, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token id.
    pub id: u32,
    /// Its text.
    pub token: String,
    /// Natural-log probability under the model's distribution (before sampling filters).
    pub logprob: f32,
    /// The most likely tokens at this step, `(id, text, logprob)`, most likely first.
    pub top: Vec<(u32, String, f32)>,
}

/// An event streamed while generating.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent<'a> {
    /// A token was chosen. `text` is the newly decodable text, possibly empty while a multi-byte
    /// character is incomplete; concatenating every `text` gives the output text.
    Token {
        /// The token id.
        id: u32,
        /// The text it completes.
        text: &'a str,
        /// Its log-probability, when requested.
        logprob: Option<&'a TokenLogprob>,
    },
}

/// The result of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationOutput {
    /// The generated text (stop strings removed).
    pub text: String,
    /// The generated token ids.
    pub token_ids: Vec<u32>,
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Speeds.
    pub timings: Timings,
    /// Per-token log-probabilities, when requested.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A cheap, clonable flag that cancels a running generation between two tokens.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether cancellation was requested.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A model that continues text. Object-safe: services hold an `Arc<dyn TextGenerator>`.
pub trait TextGenerator: Send + Sync {
    /// The model's name.
    fn model_name(&self) -> &str;

    /// The context window in tokens.
    fn context_length(&self) -> usize;

    /// Renders a conversation through the model's chat template.
    ///
    /// # Errors
    /// When the template fails or the messages hold parts the model cannot take.
    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String>;

    /// Generates, calling `on_event` for each token as soon as it is chosen. Returns when a stop
    /// condition holds, the budget is spent, or `cancel` is triggered (then with
    /// [`FinishReason::Cancelled`] and the text so far).
    ///
    /// # Errors
    /// Invalid parameters, a prompt longer than the context, or a model failure.
    fn generate_stream(
        &self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> Result<GenerationOutput>;

    /// Generates without streaming.
    ///
    /// # Errors
    /// As [`TextGenerator::generate_stream`].
    fn generate(&self, request: &GenerationRequest) -> Result<GenerationOutput> {
        self.generate_stream(request, &CancelToken::new(), &mut |_| {})
    }
}

/// A generator that applies fixed adapters to every request that chooses none itself, so code
/// written against [`TextGenerator`] (prompting strategies, agents, evaluations) runs a
/// fine-tuned model unchanged.
#[derive(Debug, Clone)]
pub struct WithAdapters<G> {
    /// The wrapped generator.
    pub inner: G,
    /// The adapters applied by default.
    pub adapters: Vec<AdapterChoice>,
}

impl<G: TextGenerator> TextGenerator for WithAdapters<G> {
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    fn context_length(&self) -> usize {
        self.inner.context_length()
    }

    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.inner
            .apply_chat_template(messages, add_generation_prompt)
    }

    fn generate_stream(
        &self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> Result<GenerationOutput> {
        if request.adapters.is_empty() && !self.adapters.is_empty() {
            let mut r = request.clone();
            r.adapters = self.adapters.clone();
            self.inner.generate_stream(&r, cancel, on_event)
        } else {
            self.inner.generate_stream(request, cancel, on_event)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_bad_field() {
        let p = SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        };
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains("top_p"), "{err}");
        assert!(SamplingParams::greedy().validate().is_ok());
        let p = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        };
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
    }

    #[test]
    fn cancel_token_is_shared_between_clones() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
    }

    #[test]
    fn timings_rates() {
        let t = Timings::from_counts(10, 0.5, 4, 0.0);
        assert_eq!(t.prefill_tokens_per_second, 20.0);
        assert_eq!(t.decode_tokens_per_second, 0.0);
    }
}

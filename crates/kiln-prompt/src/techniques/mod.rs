//! Prompting techniques over any [`TextGenerator`]: zero-shot, few-shot, chain-of-thought and
//! self-consistency. Each is one call; [`GenerateOptions`] says how the model is asked (chat or raw
//! text, system message, sampling, token budget).

mod cot;
mod few_shot;

use kiln_core::{
    ChatMessage, GenerationRequest, Prompt, SamplingParams, StopConditions, TextGenerator, Usage,
};

pub use cot::{AnswerFormat, ChainOfThought, CotAnswer, SelfConsistency, Vote, normalize_answer};
pub use few_shot::{Example, FewShot};

use crate::Result;

/// How a technique asks the model.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct GenerateOptions {
    /// Send the prompt as a user message through the model's chat template (`true`, the default) or
    /// as raw text to continue.
    pub chat: bool,
    /// A system message (chat mode only).
    pub system: Option<String>,
    /// Sampling parameters (greedy by default).
    pub sampling: SamplingParams,
    /// The token budget per generation.
    pub max_tokens: usize,
    /// Extra stop strings.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            chat: true,
            system: None,
            sampling: SamplingParams::greedy(),
            max_tokens: 256,
            stop: Vec::new(),
        }
    }
}

impl GenerateOptions {
    /// Chat mode with greedy decoding and 256 tokens.
    pub fn new() -> Self {
        Self::default()
    }
    /// Raw-text mode: the prompt is continued as it is.
    pub fn text_mode(mut self) -> Self {
        self.chat = false;
        self
    }
    /// Sets the system message.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }
    /// Sets the sampling parameters.
    pub fn sampling(mut self, sampling: SamplingParams) -> Self {
        self.sampling = sampling;
        self
    }
    /// Sets the token budget.
    pub fn max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens;
        self
    }
    /// Adds a stop string.
    pub fn stop(mut self, stop: impl Into<String>) -> Self {
        self.stop.push(stop.into());
        self
    }

    /// The request for a prompt, with `extra_stop` added to the stop strings.
    pub fn request(&self, prompt: &str, extra_stop: &[String]) -> GenerationRequest {
        let prompt = if self.chat {
            let mut messages = Vec::with_capacity(2);
            if let Some(system) = &self.system {
                messages.push(ChatMessage::system(system.clone()));
            }
            messages.push(ChatMessage::user(prompt));
            Prompt::Chat(messages)
        } else {
            Prompt::Text(prompt.to_string())
        };
        let mut stop_strings = self.stop.clone();
        stop_strings.extend(extra_stop.iter().cloned());
        GenerationRequest::new(prompt)
            .with_sampling(self.sampling.clone())
            .with_max_tokens(self.max_tokens)
            .with_stop(StopConditions {
                stop_strings,
                ..StopConditions::default()
            })
    }
}

/// A prompt and what the model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The prompt sent (the user message in chat mode).
    pub prompt: String,
    /// The generated text, trimmed.
    pub text: String,
    /// Token counts.
    pub usage: Usage,
}

/// Generates once: the shared step of every technique.
pub(crate) fn complete(
    generator: &dyn TextGenerator,
    prompt: String,
    options: &GenerateOptions,
    extra_stop: &[String],
) -> Result<Completion> {
    let out = generator.generate(&options.request(&prompt, extra_stop))?;
    Ok(Completion {
        prompt,
        text: out.text.trim().to_string(),
        usage: out.usage,
    })
}

/// Adds token counts.
pub(crate) fn add_usage(total: &mut Usage, u: Usage) {
    *total += u;
}

/// Zero-shot: the instruction, a blank line, then the input.
///
/// # Errors
/// The generator's error.
pub fn zero_shot(
    generator: &dyn TextGenerator,
    instruction: &str,
    input: &str,
    options: &GenerateOptions,
) -> Result<Completion> {
    let prompt = if instruction.is_empty() {
        input.to_string()
    } else {
        format!("{instruction}\n\n{input}")
    };
    complete(generator, prompt, options, &[])
}

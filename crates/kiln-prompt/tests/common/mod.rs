//! Test doubles: a scripted `TextGenerator` and a keyword `Embedder`.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Mutex;

use kiln_core::{
    CancelToken, ChatMessage, Embedder, Embedding, EmbeddingInput, FinishReason, GenerationOutput,
    GenerationRequest, Prompt, Result, StreamEvent, TextGenerator, Timings, Usage,
};

/// Returns canned outputs in order and records every request. Like a real model it honours stop
/// strings: the output is cut at the first one.
pub struct Scripted {
    outputs: Mutex<VecDeque<String>>,
    pub requests: Mutex<Vec<GenerationRequest>>,
}

impl Scripted {
    pub fn new<S: Into<String>>(outputs: impl IntoIterator<Item = S>) -> Self {
        Self {
            outputs: Mutex::new(outputs.into_iter().map(Into::into).collect()),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// The user text of each request (the last user message in chat mode, the text otherwise).
    pub fn prompts(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .map(prompt_text)
            .collect()
    }

    pub fn calls(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

pub fn prompt_text(r: &GenerationRequest) -> String {
    match &r.prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => m.last().map(ChatMessage::text_content).unwrap_or_default(),
        Prompt::Tokens(_) => String::new(),
    }
}

impl TextGenerator for Scripted {
    fn model_name(&self) -> &str {
        "scripted"
    }
    fn context_length(&self) -> usize {
        4096
    }
    fn apply_chat_template(&self, messages: &[ChatMessage], _add: bool) -> Result<String> {
        Ok(messages
            .iter()
            .map(ChatMessage::text_content)
            .collect::<Vec<_>>()
            .join("\n"))
    }
    fn generate_stream(
        &self,
        request: &GenerationRequest,
        _cancel: &CancelToken,
        _on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> Result<GenerationOutput> {
        self.requests.lock().expect("lock").push(request.clone());
        let mut text = self
            .outputs
            .lock()
            .expect("lock")
            .pop_front()
            .expect("the script ran out of outputs");
        let mut finish = FinishReason::Length;
        if let Some(cut) = request
            .stop
            .stop_strings
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(cut);
            finish = FinishReason::Stop;
        }
        let prompt_tokens = prompt_text(request).split_whitespace().count();
        let completion_tokens = text.split_whitespace().count();
        Ok(GenerationOutput {
            text,
            token_ids: Vec::new(),
            prompt_ids: Vec::new(),
            finish_reason: finish,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            },
            timings: Timings::default(),
            logprobs: None,
        })
    }
}

/// Embeds a text as counts of a few keywords.
pub struct Keywords(pub Vec<&'static str>);

impl Embedder for Keywords {
    fn name(&self) -> &str {
        "keywords"
    }
    fn dimension(&self) -> usize {
        self.0.len()
    }
    fn embed(&self, inputs: &[EmbeddingInput]) -> Result<Vec<Embedding>> {
        inputs
            .iter()
            .map(|i| match i {
                EmbeddingInput::Text(t) => {
                    let t = t.to_lowercase();
                    Ok(self.0.iter().map(|k| t.matches(k).count() as f32).collect())
                }
                EmbeddingInput::Image(_) => Err(kiln_core::Error::Unsupported("images".into())),
            })
            .collect()
    }
}

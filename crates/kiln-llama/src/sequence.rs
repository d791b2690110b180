//! One generation in progress, advanced one token at a time from the logits a forward pass gives:
//! logits processing (structured output), sampling, end and stop-string detection, streaming text
//! and log-probabilities. [`LlamaGenerator::generate_stream`](crate::LlamaGenerator) drives one
//! sequence; the continuous batch (`batch.rs`) drives many, with one forward pass per step.

use std::time::Instant;

use kiln_core::{
    FinishReason, GenerationOutput, GenerationRequest, IncrementalDecoder, LogitsProcessor,
    StreamEvent, Timings, TokenLogprob, Usage,
};

use crate::generate::LlamaGenerator;
use crate::lora::AdapterMix;
use crate::sampling::Sampler;
use crate::stop::StopMatcher;

/// The state of one generation.
pub(crate) struct Sequence<'a> {
    generator: &'a LlamaGenerator,
    /// The adapters of this request.
    pub(crate) mix: AdapterMix,
    /// The prompt's token ids.
    pub(crate) prompt_ids: Vec<u32>,
    max_tokens: usize,
    logprobs_top: Option<usize>,
    eos: Vec<u32>,
    processor: Option<Box<dyn LogitsProcessor>>,
    sampler: Sampler,
    stop: StopMatcher,
    decoder: IncrementalDecoder,
    context: Vec<u32>,
    generated: Vec<u32>,
    logprobs: Vec<TokenLogprob>,
    finish: FinishReason,
    prefill_secs: f64,
    decode_started: Option<Instant>,
    /// Forward passes after the prefill.
    pub(crate) decode_steps: usize,
    adapter_key: String,
}

impl<'a> Sequence<'a> {
    /// Validates `request` and prepares its state (prompt encoded, adapters resolved).
    ///
    /// # Errors
    /// Invalid sampling parameters, unknown adapters, a prompt that does not fit the context, or a
    /// response format that cannot be compiled.
    pub(crate) fn new(
        generator: &'a LlamaGenerator,
        request: &GenerationRequest,
    ) -> kiln_core::Result<Self> {
        request.sampling.validate()?;
        let mix = generator.mix(&request.adapters)?;
        let prompt_ids = generator.encode_prompt(&request.prompt)?;
        let limit = kiln_core::TextGenerator::context_length(generator);
        let needed = prompt_ids.len() + request.max_tokens;
        if needed > limit {
            return Err(kiln_core::Error::ContextLength { needed, limit });
        }
        let mut eos: Vec<u32> = if request.stop.ignore_eos {
            Vec::new()
        } else {
            generator.special_tokens().eos_token_ids.clone()
        };
        eos.extend(&request.stop.stop_token_ids);
        // JSON / JSON-schema / custom constraints mask the logits of every step before sampling.
        let processor = match kiln_prompt::structured::factory_for(&request.response_format)? {
            Some(f) => Some(f.create(&generator.token_vocabulary())?),
            None => None,
        };
        let decoder =
            IncrementalDecoder::with_context(&prompt_ids[prompt_ids.len().saturating_sub(4)..]);
        Ok(Self {
            generator,
            mix,
            context: prompt_ids.clone(),
            prompt_ids,
            max_tokens: request.max_tokens,
            logprobs_top: request.logprobs,
            eos,
            processor,
            sampler: Sampler::new(request.sampling.clone()),
            stop: StopMatcher::new(&request.stop.stop_strings),
            decoder,
            generated: Vec::new(),
            logprobs: Vec::new(),
            finish: FinishReason::Length,
            prefill_secs: 0.0,
            decode_started: None,
            decode_steps: 0,
            adapter_key: request
                .adapters
                .iter()
                .map(|a| format!("{}@{}", a.name, a.weight))
                .collect::<Vec<_>>()
                .join(","),
        })
    }

    /// The adapters of this sequence as a key (names and weights).
    pub(crate) fn adapter_key(&self) -> String {
        self.adapter_key.clone()
    }

    /// Whether the request asks for no token at all.
    pub(crate) fn wants_tokens(&self) -> bool {
        self.max_tokens > 0
    }

    /// Records the prefill's duration; decoding time counts from now.
    pub(crate) fn prefilled(&mut self, secs: f64) {
        self.prefill_secs = secs;
        self.decode_started = Some(Instant::now());
    }

    /// Consumes the logits of the last position: picks the next token, streams its text, and
    /// returns the token to feed to the next forward pass, or `None` when the sequence ended.
    ///
    /// # Errors
    /// A logits processor or detokenization failure.
    pub(crate) fn accept(
        &mut self,
        logits: &mut [f32],
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<Option<u32>> {
        if self.generated.len() >= self.max_tokens {
            return Ok(None);
        }
        let entry = self.logprobs_top.map(|top| (top, logits.to_vec()));
        if let Some(p) = self.processor.as_mut() {
            p.process(&self.generated, logits)?;
        }
        let id = self.sampler.sample(logits, &self.context, &self.generated);
        if self.eos.contains(&id) {
            self.finish = FinishReason::Stop;
            return Ok(None);
        }
        let lp = entry.map(|(top, raw)| self.generator.logprob_entry(id, &raw, top));
        self.generated.push(id);
        self.context.push(id);
        let piece = self.decoder.push(self.generator.tokenizer(), id)?;
        let (ready, hit) = self.stop.push(&piece);
        on_event(StreamEvent::Token {
            id,
            text: &ready,
            logprob: lp.as_ref(),
        });
        if let Some(lp) = lp {
            self.logprobs.push(lp);
        }
        let complete = self
            .processor
            .as_mut()
            .is_some_and(|p| p.is_complete(&self.generated));
        if hit || complete {
            self.finish = FinishReason::Stop;
            return Ok(None);
        }
        if self.generated.len() >= self.max_tokens {
            return Ok(None);
        }
        Ok(Some(id))
    }

    /// Marks the sequence cancelled (its client went away).
    pub(crate) fn cancel(&mut self) {
        self.finish = FinishReason::Cancelled;
    }

    /// Flushes the held-back text and builds the output.
    ///
    /// # Errors
    /// A detokenization failure.
    pub(crate) fn finish(
        mut self,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<GenerationOutput> {
        if self.finish != FinishReason::Stop || !self.stop.hit() {
            let tail = self.decoder.flush(self.generator.tokenizer())?;
            let (ready, _) = self.stop.push(&tail);
            let rest = self.stop.finish();
            let text = format!("{ready}{rest}");
            if !text.is_empty() {
                on_event(StreamEvent::Token {
                    id: self.generated.last().copied().unwrap_or(0),
                    text: &text,
                    logprob: None,
                });
            }
        }
        let decode = self
            .decode_started
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let n = self.generated.len();
        let p = self.prompt_ids.len();
        Ok(GenerationOutput {
            text: self.stop.text().to_string(),
            // The first token comes out of the prefill; decode speed counts the forward steps after it.
            timings: Timings::from_counts(p, self.prefill_secs, self.decode_steps, decode),
            usage: Usage {
                prompt_tokens: p,
                completion_tokens: n,
                total_tokens: p + n,
            },
            token_ids: self.generated,
            prompt_ids: self.prompt_ids,
            finish_reason: self.finish,
            logprobs: self.logprobs_top.map(|_| self.logprobs),
        })
    }
}

//! Continuous batching for [`LlamaGenerator`]: kiln-core's [`BatchGenerator`]. Sequences join a
//! running batch between steps (their prompt is prefilled on joining), every step decodes one
//! token for each running sequence in one forward pass (on the CPU engine, one pass over the
//! weights for the whole batch), and sequences leave when they end or their client goes away.
//! Each sequence keeps its own request: sampling, stops, structured output, log-probabilities and
//! adapters, so one batch mixes sequences on different adapters and on the base model.

use std::time::Instant;

use kiln_core::{
    BatchGenerator, DecodeBatch, GenerationOutput, GenerationRequest, SequenceId, StreamEvent,
};

use crate::cpu::BatchWork;
use crate::engine::EngineCache;
use crate::generate::LlamaGenerator;
use crate::sequence::Sequence;

/// What a running sequence needs next.
enum Next {
    /// Logits to sample from (after the prefill).
    Logits(Vec<f32>),
    /// What sampling the last batched step's logits gave (done as soon as the step ended).
    Sampled(kiln_core::Result<Option<u32>>),
    /// A token to feed to the next forward pass.
    Feed(u32),
    /// Nothing: it ends at the next step.
    Done,
}

struct Running<'a> {
    id: SequenceId,
    seq: Sequence<'a>,
    cache: EngineCache,
    next: Next,
}

/// A running batch over a [`LlamaGenerator`].
pub struct LlamaBatch<'a> {
    generator: &'a LlamaGenerator,
    max: usize,
    next_id: SequenceId,
    running: Vec<Running<'a>>,
    work: BatchWork,
}

impl std::fmt::Debug for LlamaBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaBatch")
            .field("max", &self.max)
            .field("running", &self.running.len())
            .finish()
    }
}

impl BatchGenerator for LlamaGenerator {
    fn start_batch(&self, max_sequences: usize) -> kiln_core::Result<Box<dyn DecodeBatch + '_>> {
        if max_sequences == 0 {
            return Err(kiln_core::Error::InvalidParameter {
                name: "max_sequences",
                message: "a batch needs room for at least one sequence".into(),
            });
        }
        Ok(Box::new(LlamaBatch {
            generator: self,
            max: max_sequences,
            next_id: 0,
            running: Vec::new(),
            work: BatchWork::default(),
        }))
    }
}

impl DecodeBatch for LlamaBatch<'_> {
    fn join(&mut self, request: &GenerationRequest) -> kiln_core::Result<SequenceId> {
        if self.running.len() >= self.max {
            return Err(kiln_core::Error::Unsupported(format!(
                "the batch is full ({} sequences)",
                self.max
            )));
        }
        let mut seq = Sequence::new(self.generator, request)?;
        let (cache, next) = if seq.wants_tokens() {
            let t0 = Instant::now();
            let (cache, logits) = self.generator.prefill(&seq)?;
            seq.prefilled(t0.elapsed().as_secs_f64());
            (cache, Next::Logits(logits))
        } else {
            (self.generator.engine().new_cache(), Next::Done)
        };
        let id = self.next_id;
        self.next_id += 1;
        self.running.push(Running {
            id,
            seq,
            cache,
            next,
        });
        Ok(id)
    }

    fn leave(&mut self, id: SequenceId) -> Option<GenerationOutput> {
        let at = self.running.iter().position(|r| r.id == id)?;
        let mut r = self.running.remove(at);
        r.seq.cancel();
        r.seq.finish(&mut |_| {}).ok()
    }

    fn step(
        &mut self,
        on_event: &mut dyn FnMut(SequenceId, StreamEvent<'_>),
    ) -> kiln_core::Result<Vec<(SequenceId, kiln_core::Result<GenerationOutput>)>> {
        // One forward pass for every sequence waiting to feed a token.
        let mut ids = Vec::new();
        let mut caches = Vec::new();
        let mut mixes = Vec::new();
        let mut fed = Vec::new();
        for (i, r) in self.running.iter_mut().enumerate() {
            if let Next::Feed(t) = r.next {
                ids.push(t);
                caches.push(&mut r.cache);
                mixes.push(&r.seq.mix);
                fed.push(i);
            }
        }
        if !ids.is_empty() {
            let logits =
                self.generator
                    .engine()
                    .step_logits(&ids, &mut caches, &mixes, &mut self.work)?;
            drop((caches, mixes));
            // Each sequence samples from its row of the batch's logits in place (no copy).
            let vocab = logits.len() / ids.len();
            for (row, i) in logits.chunks_exact_mut(vocab).zip(fed) {
                let r = &mut self.running[i];
                r.seq.decode_steps += 1;
                let id = r.id;
                let mut emit = |e: StreamEvent<'_>| on_event(id, e);
                r.next = Next::Sampled(r.seq.accept(row, &mut emit));
            }
        }
        // Every sequence samples its next token; ended ones leave.
        let mut finished = Vec::new();
        let mut keep = Vec::with_capacity(self.running.len());
        for mut r in self.running.drain(..) {
            let id = r.id;
            let mut emit = |e: StreamEvent<'_>| on_event(id, e);
            let sampled = match std::mem::replace(&mut r.next, Next::Done) {
                Next::Logits(mut l) => Some(r.seq.accept(&mut l, &mut emit)),
                Next::Sampled(s) => Some(s),
                Next::Done => None,
                Next::Feed(t) => {
                    r.next = Next::Feed(t);
                    keep.push(r);
                    continue;
                }
            };
            match sampled {
                Some(Ok(Some(t))) => {
                    r.next = Next::Feed(t);
                    keep.push(r);
                }
                Some(Ok(None)) | None => finished.push((id, r.seq.finish(&mut emit))),
                Some(Err(e)) => finished.push((id, Err(e))),
            }
        }
        self.running = keep;
        Ok(finished)
    }

    fn len(&self) -> usize {
        self.running.len()
    }
}

//! The generation engine of one model: admission control, scheduling and cancellation.
//!
//! - **Admission.** At most `max_concurrent` sequences generate at once; up to `max_queue` more
//!   wait for a slot; beyond that a request is refused at once with 503 and `Retry-After`.
//! - **Scheduling.** When the model implements [`BatchGenerator`], one scheduler thread drives a
//!   [`DecodeBatch`](kiln_core::DecodeBatch): between two decode steps it adds the admitted
//!   requests and removes the cancelled ones (continuous batching). Otherwise each admitted request
//!   runs on its own blocking worker through [`TextGenerator::generate_stream`].
//! - **Cancellation.** A [`Generation`] is the caller's end of a running request. Dropping it (the
//!   HTTP client went away and axum dropped the response stream or the handler) triggers the
//!   request's [`CancelToken`]; the worker stops at the next token and its slot is freed.
//!
//! The queue depth and active sequence counts are live atomics, read into the metrics at scrape
//! time, so they always return to 0 when the engine is idle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use kiln_core::{
    BatchGenerator, CancelToken, GenerationOutput, GenerationRequest, SequenceId, StreamEvent,
    TextGenerator, TokenLogprob,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{Result, ServeError};
use crate::metrics::{Metrics, model_label};

/// What a running request reports.
#[derive(Debug)]
pub enum EngineEvent {
    /// A token was chosen.
    Token {
        /// Its id.
        id: u32,
        /// The text it completes (possibly empty).
        text: String,
        /// Its log-probability, when requested.
        logprob: Option<TokenLogprob>,
    },
    /// The request ended.
    Done(kiln_core::Result<GenerationOutput>),
}

type Sender = mpsc::UnboundedSender<EngineEvent>;

/// Sizes of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Sequences generating at once.
    pub max_concurrent: usize,
    /// Requests waiting for a slot.
    pub max_queue: usize,
}

/// Frees a generation slot (and counts the active sequence down) when dropped, wherever the
/// sequence ends: on a worker, in the batch scheduler, or refused at `join`.
#[derive(Debug)]
struct SlotGuard {
    _permit: OwnedSemaphorePermit,
    active: Arc<AtomicUsize>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

struct QueueGuard(Arc<AtomicUsize>);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct BatchJob {
    request: GenerationRequest,
    cancel: CancelToken,
    tx: Sender,
    _slot: SlotGuard,
}

/// One model's engine.
pub struct Engine {
    model: String,
    generator: Arc<dyn TextGenerator>,
    batch_tx: Option<std::sync::mpsc::Sender<BatchJob>>,
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    limits: EngineLimits,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .field("batching", &self.batch_tx.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Engine {
    /// An engine for `generator`, batching through `batch` when given (a scheduler thread is
    /// started for it).
    #[must_use]
    pub fn new(
        model: impl Into<String>,
        generator: Arc<dyn TextGenerator>,
        batch: Option<Arc<dyn BatchGenerator>>,
        limits: EngineLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let model = model.into();
        let batch_tx = batch.map(|b| {
            let (tx, rx) = std::sync::mpsc::channel();
            let name = model.clone();
            let metrics = metrics.clone();
            let max = limits.max_concurrent;
            std::thread::Builder::new()
                .name(format!("kiln-batch-{name}"))
                .spawn(move || batch_loop(&*b, &rx, max, &metrics, &name))
                .ok()
                .map(|_| tx)
        });
        Self {
            model,
            generator,
            batch_tx: batch_tx.flatten(),
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            queued: Arc::new(AtomicUsize::new(0)),
            active: Arc::new(AtomicUsize::new(0)),
            limits,
            metrics,
        }
    }

    /// The model's name.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The generator behind the engine.
    #[must_use]
    pub fn generator(&self) -> &Arc<dyn TextGenerator> {
        &self.generator
    }

    /// Whether requests run in a continuous batch.
    #[must_use]
    pub fn is_batching(&self) -> bool {
        self.batch_tx.is_some()
    }

    /// Requests waiting for a slot now.
    #[must_use]
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Sequences generating now.
    #[must_use]
    pub fn active_sequences(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Admits and starts a request. Waits for a slot while the queue has room.
    ///
    /// # Errors
    /// [`ServeError::Overloaded`] when the queue is full, [`ServeError::Unavailable`] when the
    /// engine is shutting down.
    pub async fn submit(&self, request: GenerationRequest) -> Result<Generation> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return Err(ServeError::Unavailable(
                    "the engine is shutting down".into(),
                ));
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let waiting = self.queued.fetch_add(1, Ordering::AcqRel);
                let guard = QueueGuard(self.queued.clone());
                if waiting >= self.limits.max_queue {
                    drop(guard);
                    self.metrics
                        .inc("kiln_rejected_total", vec![("reason", "queue_full".into())]);
                    return Err(ServeError::Overloaded {
                        queued: waiting,
                        retry_after: 1,
                    });
                }
                let permit =
                    self.slots.clone().acquire_owned().await.map_err(|_| {
                        ServeError::Unavailable("the engine is shutting down".into())
                    })?;
                drop(guard);
                permit
            }
        };
        self.active.fetch_add(1, Ordering::AcqRel);
        let slot = SlotGuard {
            _permit: permit,
            active: self.active.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancelToken::new();
        let generation = Generation {
            rx,
            cancel: cancel.clone(),
            started: Instant::now(),
            last_token: None,
            metrics: self.metrics.clone(),
            model: self.model.clone(),
        };
        if let Some(batch_tx) = &self.batch_tx {
            let job = BatchJob {
                request,
                cancel,
                tx,
                _slot: slot,
            };
            batch_tx
                .send(job)
                .map_err(|_| ServeError::Unavailable("the batch scheduler stopped".into()))?;
        } else {
            let generator = self.generator.clone();
            let model = self.model.clone();
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                // A panic in one request's generation fails that request only.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    generator.generate_stream(&request, &cancel, &mut |event| {
                        if send_event(&tx, event).is_err() {
                            cancel.cancel();
                        }
                    })
                }))
                .unwrap_or_else(|panic| Err(panicked(&model, panic.as_ref())));
                let _ = tx.send(EngineEvent::Done(result));
            });
        }
        Ok(generation)
    }

    /// Closes admission: waiting and new requests get 503; running ones finish.
    pub fn close(&self) {
        self.slots.close();
    }
}

/// The error a panicking generation turns into (logged with its message; the client sees only
/// that it failed).
fn panicked(model: &str, panic: &(dyn std::any::Any + Send)) -> kiln_core::Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(model, panic = %message, "a generation panicked; only its request fails");
    kiln_core::Error::Model("the generation failed unexpectedly".into())
}

fn send_event(tx: &Sender, event: StreamEvent<'_>) -> std::result::Result<(), ()> {
    match event {
        StreamEvent::Token { id, text, logprob } => tx
            .send(EngineEvent::Token {
                id,
                text: text.to_owned(),
                logprob: logprob.cloned(),
            })
            .map_err(|_| ()),
    }
}

/// The scheduler thread of a batching model.
fn batch_loop(
    model: &dyn BatchGenerator,
    rx: &std::sync::mpsc::Receiver<BatchJob>,
    max: usize,
    metrics: &Metrics,
    name: &str,
) {
    let fail_all = |message: String| {
        while let Ok(job) = rx.recv() {
            let _ = job.tx.send(EngineEvent::Done(Err(kiln_core::Error::Model(
                message.clone(),
            ))));
        }
    };
    let mut batch = match model.start_batch(max) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(model = name, error = %e, "cannot start a batch");
            return fail_all(e.to_string());
        }
    };
    let mut running: HashMap<SequenceId, BatchJob> = HashMap::new();
    loop {
        if running.is_empty() {
            match rx.recv() {
                Ok(job) => admit(&mut *batch, &mut running, job),
                Err(_) => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            admit(&mut *batch, &mut running, job);
        }
        let gone: Vec<SequenceId> = running
            .iter()
            .filter(|(_, j)| j.cancel.is_cancelled() || j.tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let out = batch.leave(id);
            if let Some(job) = running.remove(&id)
                && let Some(out) = out
            {
                let _ = job.tx.send(EngineEvent::Done(Ok(out)));
            }
        }
        if running.is_empty() {
            continue;
        }
        metrics.observe("kiln_batch_size", model_label(name), running.len() as f64);
        // A panic in a step cannot be traced to one sequence: the step's sequences fail (as
        // for an error) and a fresh batch takes the next requests.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch.step(&mut |id, event| {
                if let Some(job) = running.get(&id)
                    && send_event(&job.tx, event).is_err()
                {
                    job.cancel.cancel();
                }
            })
        }))
        .unwrap_or_else(|panic| Err(panicked(name, panic.as_ref())));
        match step {
            Ok(finished) => {
                for (id, result) in finished {
                    if let Some(job) = running.remove(&id) {
                        let _ = job.tx.send(EngineEvent::Done(result));
                    }
                }
            }
            Err(e) => {
                tracing::error!(model = name, error = %e, "batch step failed");
                for (_, job) in running.drain() {
                    let _ = job.tx.send(EngineEvent::Done(Err(kiln_core::Error::Model(
                        e.to_string(),
                    ))));
                }
                drop(batch);
                batch = match model.start_batch(max) {
                    Ok(b) => b,
                    Err(e) => return fail_all(e.to_string()),
                };
            }
        }
    }
}

fn admit(
    batch: &mut dyn kiln_core::DecodeBatch,
    running: &mut HashMap<SequenceId, BatchJob>,
    job: BatchJob,
) {
    if job.cancel.is_cancelled() || job.tx.is_closed() {
        return;
    }
    // Prefill happens here: a request whose prompt makes the model panic fails alone.
    let joined =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batch.join(&job.request)))
            .unwrap_or_else(|panic| Err(panicked("batch", panic.as_ref())));
    match joined {
        Ok(id) => {
            running.insert(id, job);
        }
        Err(e) => {
            let _ = job.tx.send(EngineEvent::Done(Err(e)));
        }
    }
}

/// The caller's end of a running request. Dropping it cancels the request.
#[derive(Debug)]
pub struct Generation {
    rx: mpsc::UnboundedReceiver<EngineEvent>,
    cancel: CancelToken,
    started: Instant,
    last_token: Option<Instant>,
    metrics: Arc<Metrics>,
    model: String,
}

impl Generation {
    /// The next event; `None` once the request ended and every event was read.
    pub async fn next(&mut self) -> Option<EngineEvent> {
        let event = self.rx.recv().await?;
        match &event {
            EngineEvent::Token { .. } => {
                let now = Instant::now();
                match self.last_token {
                    None => self.metrics.observe(
                        "kiln_time_to_first_token_seconds",
                        model_label(&self.model),
                        now.duration_since(self.started).as_secs_f64(),
                    ),
                    Some(t) => self.metrics.observe(
                        "kiln_inter_token_latency_seconds",
                        model_label(&self.model),
                        now.duration_since(t).as_secs_f64(),
                    ),
                }
                self.last_token = Some(now);
            }
            EngineEvent::Done(Ok(out)) if out.timings.decode_tokens_per_second > 0.0 => {
                self.metrics.observe(
                    "kiln_decode_tokens_per_second",
                    model_label(&self.model),
                    out.timings.decode_tokens_per_second,
                );
            }
            EngineEvent::Done(_) => {}
        }
        Some(event)
    }

    /// Waits for the end and returns the output, skipping the streamed tokens.
    ///
    /// # Errors
    /// The model's error, or [`ServeError::Internal`] when the worker went away.
    pub async fn finish(mut self) -> Result<GenerationOutput> {
        while let Some(event) = self.next().await {
            if let EngineEvent::Done(result) = event {
                return result.map_err(ServeError::from);
            }
        }
        Err(ServeError::Internal("the generation worker stopped".into()))
    }

    /// Cancels the request (dropping the generation does the same).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

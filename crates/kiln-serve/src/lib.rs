//! # kiln-serve
//!
//! Kiln's serving runtime: an OpenAI-compatible HTTP API (axum, tokio) over kiln-core's
//! [`TextGenerator`](kiln_core::TextGenerator) and [`Embedder`](kiln_core::Embedder), with the
//! gateway an enterprise deployment needs. It compiles no tensor library; the binary (`kiln
//! serve`) loads the models and hands them over as [`ModelHandle`]s.
//!
//! - Endpoints: `/v1/chat/completions` (SSE streaming, `n`, `stop`, `seed`, `logprobs`, `tools`,
//!   `response_format` with a JSON schema), `/v1/completions`, `/v1/embeddings`, `/v1/models`,
//!   `/v1/usage`, `/v1/watermark/detect`, `/v1/admin/adapters[/load|/unload]`, `/health`,
//!   `/ready`, `/metrics`, `/openapi.json`; errors in OpenAI's shape ([`ServeError`]).
//! - [`engine`]: a bounded admission queue (503 + `Retry-After`), continuous batching through
//!   kiln-core's [`BatchGenerator`](kiln_core::BatchGenerator) or one sequence per worker,
//!   cancellation when a client disconnects.
//! - Gateway: hashed API keys compared in constant time, roles ([`auth`]), per-key rate limits and
//!   quotas ([`limits`]), body and prompt limits, `model:adapter` selection.
//! - Data protection: PII masking with restoration ([`pii`]), output filters that also work on
//!   streams ([`filter`]), a green-list [`watermark`].
//! - Cost: an exact response [`cache`], cascades, per-key and per-model accounting with budgets
//!   ([`cost`]), Prometheus [`metrics`], JSON logs with request ids.
//!
//! ```
//! use std::sync::Arc;
//! use kiln_core::{CancelToken, ChatMessage, GenerationOutput, GenerationRequest, StreamEvent,
//!                 TextGenerator, FinishReason, Usage, Timings};
//! use kiln_serve::{AppState, ModelHandle, app};
//!
//! struct Echo;
//! impl TextGenerator for Echo {
//!     fn model_name(&self) -> &str { "echo" }
//!     fn context_length(&self) -> usize { 2048 }
//!     fn apply_chat_template(&self, m: &[ChatMessage], _: bool) -> kiln_core::Result<String> {
//!         Ok(m.iter().map(ChatMessage::text_content).collect())
//!     }
//!     fn generate_stream(&self, _: &GenerationRequest, _: &CancelToken,
//!                        on_event: &mut dyn FnMut(StreamEvent<'_>)) -> kiln_core::Result<GenerationOutput> {
//!         on_event(StreamEvent::Token { id: 1, text: "hi", logprob: None });
//!         Ok(GenerationOutput { text: "hi".into(), token_ids: vec![1], prompt_ids: vec![],
//!             finish_reason: FinishReason::Stop, usage: Usage::default(), timings: Timings::default(),
//!             logprobs: None })
//!     }
//! }
//!
//! let state = AppState::single("echo", ModelHandle::generator(Arc::new(Echo)))?;
//! let router: axum::Router = app(state); // serve it with axum::serve, or test it with oneshot
//! # Ok::<(), kiln_serve::ServeError>(())
//! ```

#![recursion_limit = "512"]
#![warn(missing_docs)]

pub mod auth;
pub mod cache;
#[cfg(feature = "redis")]
pub mod cache_redis;
pub mod config;
pub mod cost;
pub mod engine;
mod error;
pub mod filter;
pub mod limits;
#[cfg(feature = "redis")]
pub mod limits_redis;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod pii;
mod routes;
mod state;
pub mod watermark;

use std::collections::BTreeMap;
use std::time::Duration;

pub use config::ServeConfig;
pub use error::{Result, ServeError};
pub use routes::app;
pub use state::{AdapterManager, AppState, ModelHandle, ServedModel, check_adapter_name};

/// Installs JSON logs on stderr through `tracing-subscriber` (level from `RUST_LOG`, `info` by
/// default). Call once, from the binary.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_writer(std::io::stderr)
        // A closed stderr must not stop the server (the internal error report would panic).
        .log_internal_errors(false)
        .try_init();
}

/// Serves `config` with the loaded models until Ctrl-C or SIGTERM, then stops admitting, lets
/// in-flight requests finish (up to `server.shutdown_grace_secs`) and returns.
///
/// # Errors
/// An invalid configuration, a model missing for a configured name, or a socket that cannot be
/// bound.
pub async fn serve(config: ServeConfig, models: BTreeMap<String, ModelHandle>) -> Result<()> {
    serve_with(config, models, |_| axum::Router::new()).await
}

/// Like [`serve`], and the configuration can be replaced while serving: `source` reads it again
/// (typically from the same file) on SIGHUP and on `POST /v1/admin/reload`; see
/// [`AppState::reload`] for what a reload may change.
///
/// # Errors
/// As [`serve`].
pub async fn serve_reloading(
    config: ServeConfig,
    models: BTreeMap<String, ModelHandle>,
    source: impl Fn() -> Result<ServeConfig> + Send + Sync + 'static,
) -> Result<()> {
    serve_with(config, models, move |state| {
        state.set_config_source(source);
        reload_on_sighup(state);
        axum::Router::new()
    })
    .await
}

/// Like [`serve`], with more routes next to [`app`]'s: `extra` gets the state (for
/// [`AppState::authenticate`]) and returns a router that is merged in (kiln-retail adds its web
/// chat page and feedback endpoint this way).
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    config: ServeConfig,
    models: BTreeMap<String, ModelHandle>,
    extra: impl FnOnce(&AppState) -> axum::Router,
) -> Result<()> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let state = AppState::new(config, models)?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Io {
            path: addr.clone(),
            source,
        })?;
    let router = app(state.clone()).merge(extra(&state));
    serve_router(listener, state, router, shutdown_signal()).await
}

/// Serves `state` on a bound listener until `shutdown` completes, then drains.
///
/// # Errors
/// A failure of the listener.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_router(listener, state.clone(), app(state), shutdown).await
}

/// Serves `router` (built from [`app`] and more routes over `state`) until `shutdown`
/// completes, then drains `state`'s in-flight requests.
///
/// # Errors
/// A failure of the listener.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    state: AppState,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if !state.policy().keys.enabled() {
        tracing::warn!(
            "no API keys configured: authentication is OFF, anyone who can reach the port can use it"
        );
        say("warning: kiln serve runs without API keys; authentication is off");
    }
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        path: "listener".into(),
        source,
    })?;
    tracing::info!(%addr, models = state.0.models.len(), "serving");
    say(&format!("kiln serve listening on http://{addr}"));
    let drain_state = state.clone();
    let grace = Duration::from_secs(state.config().server.shutdown_grace_secs);
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        drain_state.close();
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r.map_err(|source| ServeError::Io { path: addr.to_string(), source })?,
        () = deadline => tracing::warn!("grace period over: in-flight requests abandoned"),
    }
    Ok(())
}

/// Reloads `state`'s configuration (see [`AppState::reload_config`]) on every SIGHUP, for as long
/// as the runtime runs; call it from inside the runtime (for example in [`serve_with`]'s `extra`).
pub fn reload_on_sighup(state: &AppState) {
    #[cfg(unix)]
    {
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP: configuration reload by signal is off");
                return;
            };
            while hup.recv().await.is_some() {
                match state.reload_config() {
                    Ok(changed) => say(&format!("configuration reloaded ({changed:?} changed)")),
                    Err(e) => say(&format!(
                        "configuration reload rejected, the running configuration is kept: {e}"
                    )),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// Writes a line for the operator on stderr, ignoring a closed stderr (`eprintln!` would panic).
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

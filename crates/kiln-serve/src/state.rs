//! What the server holds: the validated configuration, the models with their engines, the key
//! store, limiters, caches, the cost ledger and the metrics. [`AppState`] is cheap to clone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use kiln_core::{BatchGenerator, Embedder, GenerationOutput, TextGenerator, Tokenizer};

use crate::auth::KeyStore;
use crate::cache::ResponseCache;
use crate::config::{ModelConfig, ServeConfig};
use crate::cost::CostTracker;
use crate::engine::{Engine, EngineLimits};
use crate::error::{Result, ServeError};
use crate::filter::OutputFilter;
use crate::limits::Limiter;
use crate::metrics::{Metrics, model_label};
use crate::pii::PiiKind;

/// Loads and unloads LoRA adapters of a running model, by name. The serving binary implements it
/// over its model (kiln-llama's generator registers adapters by name); kiln-serve validates the
/// name and resolves the directory before calling it.
pub trait AdapterManager: Send + Sync {
    /// Loads the adapter stored in `dir` under `name`, replacing one of the same name.
    ///
    /// # Errors
    /// The adapter cannot be read or does not fit the model.
    fn load_adapter(&self, name: &str, dir: &Path) -> kiln_core::Result<()>;

    /// Unloads an adapter; `false` when no adapter has that name.
    ///
    /// # Errors
    /// A failure of the model.
    fn unload_adapter(&self, name: &str) -> kiln_core::Result<bool>;

    /// The names of the loaded adapters.
    fn adapters(&self) -> Vec<String>;
}

/// Everything the server may use of one model. Build it with [`ModelHandle::generator`] or
/// [`ModelHandle::embedder`] and the `with_*` setters.
#[derive(Clone, Default)]
pub struct ModelHandle {
    /// Text generation.
    pub generator: Option<Arc<dyn TextGenerator>>,
    /// Continuous batching, when the model can.
    pub batch: Option<Arc<dyn BatchGenerator>>,
    /// The tokenizer, for prompt-length limits and watermark detection.
    pub tokenizer: Option<Arc<dyn Tokenizer>>,
    /// Embeddings.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Run-time adapter management.
    pub adapters: Option<Arc<dyn AdapterManager>>,
}

impl std::fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHandle")
            .field(
                "generator",
                &self.generator.as_ref().map(|g| g.model_name().to_owned()),
            )
            .field("batch", &self.batch.is_some())
            .field("tokenizer", &self.tokenizer.is_some())
            .field(
                "embedder",
                &self.embedder.as_ref().map(|e| e.name().to_owned()),
            )
            .field("adapters", &self.adapters.is_some())
            .finish()
    }
}

impl ModelHandle {
    /// A text generation model.
    #[must_use]
    pub fn generator(generator: Arc<dyn TextGenerator>) -> Self {
        Self {
            generator: Some(generator),
            ..Self::default()
        }
    }
    /// An embedding model.
    #[must_use]
    pub fn embedder(embedder: Arc<dyn Embedder>) -> Self {
        Self {
            embedder: Some(embedder),
            ..Self::default()
        }
    }
    /// Adds continuous batching.
    #[must_use]
    pub fn with_batch(mut self, batch: Arc<dyn BatchGenerator>) -> Self {
        self.batch = Some(batch);
        self
    }
    /// Adds the tokenizer.
    #[must_use]
    pub fn with_tokenizer(mut self, tokenizer: Arc<dyn Tokenizer>) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }
    /// Adds embeddings.
    #[must_use]
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }
    /// Adds run-time adapter management.
    #[must_use]
    pub fn with_adapters(mut self, adapters: Arc<dyn AdapterManager>) -> Self {
        self.adapters = Some(adapters);
        self
    }
}

/// A served model: its configuration, handle and engine.
#[derive(Debug)]
pub struct ServedModel {
    /// Its configuration.
    pub config: ModelConfig,
    /// What it can do.
    pub handle: ModelHandle,
    /// The engine, for a generator.
    pub engine: Option<Engine>,
}

/// Cached outputs of a deterministic request.
pub type CachedOutputs = Arc<Vec<GenerationOutput>>;

/// The shared state of the server.
#[derive(Debug, Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

/// What a configuration reload replaces: the configuration and everything built from its keys,
/// roles, routes, PII and filter sections.
#[derive(Debug)]
pub(crate) struct Policy {
    pub config: Arc<ServeConfig>,
    pub keys: KeyStore,
    pub filter: Arc<OutputFilter>,
    pub pii_kinds: Vec<PiiKind>,
}

impl Policy {
    fn build(config: ServeConfig) -> Result<Self> {
        let pii_kinds = config
            .pii
            .kinds
            .iter()
            .filter_map(|k| PiiKind::from_name(k))
            .collect();
        Ok(Self {
            keys: KeyStore::new(&config)?,
            filter: Arc::new(OutputFilter::new(&config.filters)?),
            pii_kinds,
            config: Arc::new(config),
        })
    }
}

/// A configuration refused by a reload: the admin's request is at fault (400 naming the field),
/// not the running server.
fn rejected(e: ServeError) -> ServeError {
    match e {
        ServeError::Config { field, message } => ServeError::BadRequest {
            message: format!("config `{field}`: {message}; the running configuration is kept"),
            param: Some(field),
        },
        ServeError::Io { path, source } => ServeError::BadRequest {
            message: format!("{path}: {source}; the running configuration is kept"),
            param: Some("config".into()),
        },
        other => other,
    }
}

/// Where [`AppState::reload_config`] reads the configuration again.
type ConfigSource = Box<dyn Fn() -> Result<ServeConfig> + Send + Sync>;

pub(crate) struct Inner {
    pub policy: RwLock<Arc<Policy>>,
    pub config_source: OnceLock<ConfigSource>,
    pub limiter: Limiter,
    pub models: BTreeMap<String, ServedModel>,
    pub metrics: Arc<Metrics>,
    pub cache: ResponseCache<CachedOutputs>,
    #[cfg(feature = "redis")]
    pub shared_cache: Option<Arc<crate::cache_redis::RedisCache>>,
    pub costs: CostTracker,
    pub ready: AtomicBool,
    pub next_id: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .field("reloadable", &self.config_source.get().is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state: every configured model needs a handle of the same name (and no handle
    /// may be left without configuration); engines start here.
    ///
    /// # Errors
    /// [`ServeError::Config`] naming the model or field at fault.
    pub fn new(config: ServeConfig, mut handles: BTreeMap<String, ModelHandle>) -> Result<Self> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new());
        let limits = EngineLimits {
            max_concurrent: config.server.max_concurrent,
            max_queue: config.server.max_queue,
        };
        let mut models = BTreeMap::new();
        for (i, m) in config.models.iter().enumerate() {
            let handle = handles.remove(&m.name).ok_or_else(|| {
                ServeError::config(
                    format!("models[{i}].name"),
                    format!("no model was loaded for `{}`", m.name),
                )
            })?;
            if handle.generator.is_none() && handle.embedder.is_none() {
                return Err(ServeError::config(
                    format!("models[{i}]"),
                    "the model neither generates nor embeds",
                ));
            }
            if m.watermark.is_some() && handle.tokenizer.is_none() {
                return Err(ServeError::config(
                    format!("models[{i}].watermark"),
                    "watermark detection needs the model's tokenizer",
                ));
            }
            let engine = handle.generator.clone().map(|g| {
                Engine::new(
                    m.name.clone(),
                    g,
                    handle.batch.clone(),
                    limits,
                    metrics.clone(),
                )
            });
            models.insert(
                m.name.clone(),
                ServedModel {
                    config: m.clone(),
                    handle,
                    engine,
                },
            );
        }
        if let Some(extra) = handles.keys().next() {
            return Err(ServeError::config(
                "models",
                format!("a model `{extra}` was loaded but is not configured"),
            ));
        }
        Ok(Self(Arc::new(Inner {
            limiter: Limiter::from_config(&config.server)?,
            cache: ResponseCache::new(
                config.server.cache_entries,
                Duration::from_secs(config.server.cache_ttl_secs),
            ),
            #[cfg(feature = "redis")]
            shared_cache: match &config.server.redis_url {
                Some(url) if config.server.cache_entries > 0 => {
                    Some(Arc::new(crate::cache_redis::RedisCache::new(
                        url,
                        &config.server.redis_prefix,
                        Duration::from_secs(config.server.cache_ttl_secs),
                    )?))
                }
                _ => None,
            },
            costs: CostTracker::new(config.budget.clone(), metrics.clone()),
            policy: RwLock::new(Arc::new(Policy::build(config)?)),
            config_source: OnceLock::new(),
            models,
            metrics,
            ready: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
        })))
    }

    /// A state serving one generator with no configuration (no keys: authentication off).
    ///
    /// # Errors
    /// As [`AppState::new`].
    pub fn single(name: impl Into<String>, handle: ModelHandle) -> Result<Self> {
        let name = name.into();
        let mut handles = BTreeMap::new();
        handles.insert(name.clone(), handle);
        Self::new(ServeConfig::single_model(name), handles)
    }

    /// Authenticates a request's `Authorization` header (for routes an embedding application adds
    /// next to [`crate::app`]'s, such as kiln-retail's feedback).
    ///
    /// # Errors
    /// [`ServeError::Unauthorized`] for a missing or unknown key.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<crate::auth::Principal> {
        self.policy().keys.authenticate(headers)
    }

    /// The configuration in force (a reload may replace it; hold the `Arc` for one request).
    #[must_use]
    pub fn config(&self) -> Arc<ServeConfig> {
        self.policy().config.clone()
    }

    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.0
            .policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the configuration of a running server: keys, roles, routes, PII masking and
    /// output filters take effect for the next request; rate-limit windows, the cost ledger and
    /// the cache are kept. `server`, `models` and `budget` change only on restart. Returns the
    /// sections that changed.
    ///
    /// # Errors
    /// [`ServeError::Config`] naming the field at fault; the running configuration is then kept
    /// as it was.
    pub fn reload(&self, config: ServeConfig) -> Result<Vec<&'static str>> {
        self.record_reload(self.try_reload(config).map_err(rejected))
    }

    /// Counts and logs a reload's outcome.
    fn record_reload(&self, outcome: Result<Vec<&'static str>>) -> Result<Vec<&'static str>> {
        let result = if outcome.is_ok() { "ok" } else { "rejected" };
        self.0
            .metrics
            .inc("kiln_config_reloads_total", vec![("result", result.into())]);
        match &outcome {
            Ok(changed) => tracing::info!(?changed, "configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload rejected; the running configuration is kept")
            }
        }
        outcome
    }

    fn try_reload(&self, config: ServeConfig) -> Result<Vec<&'static str>> {
        config.validate()?;
        let old = self.config();
        for (field, same) in [
            ("server", old.server == config.server),
            ("models", old.models == config.models),
            ("budget", old.budget == config.budget),
        ] {
            if !same {
                return Err(ServeError::config(
                    field,
                    "changes only on restart (a reload replaces keys, roles, routes, pii and filters)",
                ));
            }
        }
        let changed = [
            ("routes", old.routes != config.routes),
            ("roles", old.roles != config.roles),
            ("keys", old.keys != config.keys),
            ("pii", old.pii != config.pii),
            ("filters", old.filters != config.filters),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
        let policy = Arc::new(Policy::build(config)?);
        *self
            .0
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
        Ok(changed)
    }

    /// Sets where [`AppState::reload_config`] reads the configuration (once; `kiln serve` reads
    /// its `--config` file again, with the same command-line overrides).
    pub fn set_config_source(
        &self,
        source: impl Fn() -> Result<ServeConfig> + Send + Sync + 'static,
    ) {
        let _ = self.0.config_source.set(Box::new(source));
    }

    /// Reads the configuration from its source again and [reloads](AppState::reload) it (on
    /// SIGHUP, or `POST /v1/admin/reload`).
    ///
    /// # Errors
    /// No source was set, it cannot be read, or the reload is rejected; the running
    /// configuration is kept.
    pub fn reload_config(&self) -> Result<Vec<&'static str>> {
        let source = self.0.config_source.get().ok_or_else(|| {
            ServeError::bad_request("config", "this server was started without a config file")
        })?;
        self.record_reload(
            source()
                .and_then(|config| self.try_reload(config))
                .map_err(rejected),
        )
    }

    /// The metrics registry.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// A served model by name.
    #[must_use]
    pub fn model(&self, name: &str) -> Option<&ServedModel> {
        self.0.models.get(name)
    }

    /// What the OpenAPI document says of this server: which models answer which operations,
    /// and the limits.
    #[must_use]
    pub fn api_facts(&self) -> crate::openapi::ApiFacts {
        let names = |keep: &dyn Fn(&ServedModel) -> bool| {
            self.models()
                .filter(|m| keep(m))
                .map(|m| m.config.name.clone())
                .collect::<Vec<_>>()
        };
        let mut generation = names(&|m| m.engine.is_some());
        generation.extend(self.config().routes.iter().map(|r| r.name.clone()));
        crate::openapi::ApiFacts {
            generation,
            embedding: names(&|m| m.handle.embedder.is_some()),
            embeds_images: self
                .models()
                .filter_map(|m| m.handle.embedder.as_ref())
                .all(|e| e.supports_images()),
            watermarked: names(&|m| m.config.watermark.is_some() && m.handle.tokenizer.is_some()),
            adapter_models: names(&|m| {
                m.handle.adapters.is_some() && m.config.adapters_dir.is_some()
            }),
            max_completion_tokens: self.config().server.max_completion_tokens,
            reloadable: self.0.config_source.get().is_some(),
        }
    }

    /// The outputs the replicas' shared cache (Redis) holds for `key`, if there is one.
    pub(crate) async fn shared_cache_get(
        &self,
        key: &crate::cache::CacheKey,
    ) -> Option<Vec<GenerationOutput>> {
        #[cfg(feature = "redis")]
        if let Some(cache) = self.0.shared_cache.clone() {
            let key = *key;
            return tokio::task::spawn_blocking(move || cache.get(&key))
                .await
                .ok()
                .flatten();
        }
        let _ = key;
        None
    }

    /// Stores `outputs` in the replicas' shared cache (Redis), if there is one, in the background.
    pub(crate) fn shared_cache_put(
        &self,
        key: &crate::cache::CacheKey,
        outputs: &[GenerationOutput],
    ) {
        #[cfg(feature = "redis")]
        if let Some(cache) = self.0.shared_cache.clone() {
            let (key, outputs) = (*key, outputs.to_vec());
            tokio::task::spawn_blocking(move || cache.put(&key, &outputs));
        }
        let _ = (key, outputs);
    }

    /// Every served model.
    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.0.models.values()
    }

    /// Marks the server ready or not (`/ready`).
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// Whether `/ready` says yes.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Closes every engine's admission (shutdown).
    pub fn close(&self) {
        self.set_ready(false);
        for m in self.0.models.values() {
            if let Some(e) = &m.engine {
                e.close();
            }
        }
    }

    /// Copies the live queue-depth and active-sequence counts into the metrics.
    pub fn refresh_gauges(&self) {
        for m in self.0.models.values() {
            if let Some(e) = &m.engine {
                let l = model_label(&m.config.name);
                self.0
                    .metrics
                    .set("kiln_queue_depth", l.clone(), e.queue_depth() as f64);
                self.0
                    .metrics
                    .set("kiln_active_sequences", l, e.active_sequences() as f64);
            }
        }
    }

    /// A fresh request id.
    pub(crate) fn next_request_id(&self) -> String {
        let n = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{n:06x}", crate::openai::now_secs())
    }

    /// Where an adapter named `name` of `model` is stored: `adapters_dir/name`, after checking the
    /// name cannot leave the directory.
    ///
    /// # Errors
    /// [`ServeError::BadRequest`] for a bad name or a model with no `adapters_dir`.
    pub fn adapter_dir(&self, model: &ServedModel, name: &str) -> Result<PathBuf> {
        check_adapter_name(name)?;
        let base = model.config.adapters_dir.as_ref().ok_or_else(|| {
            ServeError::bad_request(
                "model",
                format!(
                    "model `{}` has no adapters_dir configured",
                    model.config.name
                ),
            )
        })?;
        let dir = base.join(name);
        // Resolve links too: the canonical path must stay inside the canonical base.
        let (Ok(cb), Ok(cd)) = (base.canonicalize(), dir.canonicalize()) else {
            return Err(ServeError::NotFound {
                message: format!("no adapter directory `{name}`"),
                param: Some("name"),
            });
        };
        if !cd.starts_with(&cb) {
            return Err(ServeError::bad_request(
                "name",
                "the adapter is outside adapters_dir",
            ));
        }
        Ok(cd)
    }
}

/// Adapter names: 1-64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit (so
/// `..`, `/` and `\` cannot appear as a path component).
///
/// # Errors
/// [`ServeError::BadRequest`].
pub fn check_adapter_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ServeError::bad_request(
            "name",
            format!(
                "invalid adapter name `{name}`: use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_names_cannot_escape() {
        for bad in ["..", "../x", "a/b", "a\\b", ".hidden", "", "a..b", "x y"] {
            assert!(check_adapter_name(bad).is_err(), "{bad}");
        }
        for good in ["retail", "site-a", "v1.2_b"] {
            assert!(check_adapter_name(good).is_ok(), "{good}");
        }
    }
}

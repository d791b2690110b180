//! The server's configuration: one TOML file with the models, routes (cascades), API keys and
//! roles, limits, data-protection policies and prices. [`ServeConfig::from_toml`] parses and
//! validates it; every error names the field at fault (`keys[1].role`).
//!
//! Keys are stored as the hex sha256 of the secret, never the secret itself:
//! `printf %s "$KEY" | sha256sum`. They can also live in a separate secrets file
//! (`server.secrets_file`, a TOML file with `[[keys]]` tables) kept out of the main config.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServeError};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address, limits and engine sizes.
    pub server: ServerConfig,
    /// The models served.
    pub models: Vec<ModelConfig>,
    /// Extra model names that route to others (cascades).
    pub routes: Vec<RouteConfig>,
    /// Roles by name.
    pub roles: BTreeMap<String, RoleConfig>,
    /// API keys. None: authentication is off (a warning is printed at start).
    pub keys: Vec<KeyConfig>,
    /// PII masking of inputs.
    pub pii: PiiConfig,
    /// Output filtering policies.
    pub filters: Vec<FilterConfig>,
    /// Budget alerting.
    pub budget: BudgetConfig,
}

/// Address, limits and engine sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Interface to listen on.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most prompt tokens a request may have (400 above); the model's context also applies.
    pub max_prompt_tokens: usize,
    /// Most `max_tokens` a request may ask for.
    pub max_completion_tokens: usize,
    /// Most sequences generating at once per model (the batch size).
    pub max_concurrent: usize,
    /// Most requests waiting for a slot per model (503 above).
    pub max_queue: usize,
    /// Entries of the exact response cache; 0 disables it.
    pub cache_entries: usize,
    /// Seconds a cached response stays valid.
    pub cache_ttl_secs: u64,
    /// A TOML file with more `[[keys]]` (kept out of the main config).
    pub secrets_file: Option<PathBuf>,
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_grace_secs: u64,
    /// A Redis server (`redis://host:port/db`) that holds the keys' rate-limit windows and quotas,
    /// so that every replica enforces one limit together, and (with `cache_entries > 0`) the
    /// exact response cache that every replica reads (the `redis` Cargo feature); unset: each
    /// process keeps its own.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (several deployments can share one Redis).
    pub redis_prefix: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: 1 << 20,
            max_prompt_tokens: 8192,
            max_completion_tokens: 4096,
            max_concurrent: 8,
            max_queue: 64,
            cache_entries: 1024,
            cache_ttl_secs: 600,
            secrets_file: None,
            shutdown_grace_secs: 30,
            redis_url: None,
            redis_prefix: "kiln".into(),
        }
    }
}

/// One served model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients use in `"model"`.
    pub name: String,
    /// How the binary loads `path`: `llama` (text generation) or `clip` (embeddings of texts
    /// and images).
    pub kind: ModelKind,
    /// Where the binary loads it from (an HF directory or a GGUF file); kiln-serve itself never reads it.
    pub path: Option<PathBuf>,
    /// Directory whose sub-directories are the adapters the admin endpoint may load.
    pub adapters_dir: Option<PathBuf>,
    /// Prices per 1000 tokens.
    pub prices: Prices,
    /// A green-list watermark applied while sampling.
    pub watermark: Option<WatermarkConfig>,
}

/// The model family behind a `[[models]]` entry, for the binary that loads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A Llama-family text generator (HF directory or GGUF file).
    #[default]
    Llama,
    /// A CLIP model (HF directory): `/v1/embeddings` for texts and images.
    Clip,
    /// A LLaVA model (HF directory): chat with `image_url` parts (`data:` URLs).
    Llava,
}

/// Prices per 1000 tokens, in any currency (reported as `cost`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// Price of 1000 prompt tokens.
    pub prompt_per_1k: f64,
    /// Price of 1000 generated tokens.
    pub completion_per_1k: f64,
}

/// The Kirchenbauer et al. (2023) green-list watermark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// Fraction of the vocabulary in the green list.
    pub gamma: f64,
    /// Logit bias added to green tokens.
    pub delta: f32,
    /// Secret key hashed with the previous token to seed the green list.
    pub key: u64,
    /// z-score above which a text is reported as watermarked.
    pub z_threshold: f64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            gamma: 0.25,
            delta: 2.0,
            key: 15_485_863,
            z_threshold: 4.0,
        }
    }
}

/// A model name that routes to others: a cascade tries `models` in order and escalates while the
/// answer's mean token log-probability is under `min_mean_logprob`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// The name clients use.
    pub name: String,
    /// Served models, smallest first.
    pub models: Vec<String>,
    /// Escalate when the mean log-probability of the generated tokens is below this.
    pub min_mean_logprob: f32,
    /// Escalate also when the answer contains one of these strings (for example "I don't know").
    pub escalate_on: Vec<String>,
}

/// What a role may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// Models and routes it may use; `"*"` for all.
    pub models: Vec<String>,
    /// Adapters it may select; `"*"` for all.
    pub adapters: Vec<String>,
    /// Endpoints it may call (`chat`, `completions`, `embeddings`, `models`, `usage`,
    /// `watermark`); `"*"` for all.
    pub endpoints: Vec<String>,
    /// May call the admin endpoints and read every key's usage.
    pub admin: bool,
}

/// The endpoint names roles list.
pub const ENDPOINTS: &[&str] = &[
    "chat",
    "completions",
    "embeddings",
    "models",
    "usage",
    "watermark",
];

/// An API key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// A name for logs, metrics and usage (never the secret).
    pub name: String,
    /// Hex sha256 of the secret.
    pub sha256: String,
    /// The role's name.
    pub role: String,
    /// Requests per minute; 0: unlimited.
    pub requests_per_minute: u32,
    /// Prompt plus generated tokens per minute; 0: unlimited.
    pub tokens_per_minute: u64,
    /// Tokens per UTC day; 0: unlimited.
    pub tokens_per_day: u64,
    /// Spending budget (prices' currency); none: unlimited.
    pub budget: Option<f64>,
}

/// PII masking of inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiConfig {
    /// Mask inputs before the model and the logs see them.
    pub enabled: bool,
    /// Put the original values back into the reply.
    pub restore: bool,
    /// Kinds masked: `email`, `phone`, `cn_id`, `bank_card`.
    pub kinds: Vec<String>,
}

impl Default for PiiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            restore: false,
            kinds: crate::pii::PiiKind::ALL
                .iter()
                .map(|k| k.name().to_owned())
                .collect(),
        }
    }
}

/// An output filtering policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Name used in metrics.
    pub name: String,
    /// Words or phrases (matched case-insensitively).
    pub block: Vec<String>,
    /// Regular expressions.
    pub regex: Vec<String>,
    /// `block` ends the answer (finish reason `content_filter`); `redact` replaces the match.
    pub action: FilterAction,
    /// Longest match in bytes a regex can have; streamed text is held back this much.
    pub max_match_bytes: usize,
}

/// What happens on a filter match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    /// Stop the answer before the match.
    #[default]
    Block,
    /// Replace the match with `[REDACTED]`.
    Redact,
}

/// Budget alerting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Fractions of a key's budget at which an alert fires once.
    pub alert_thresholds: Vec<f64>,
    /// An `http://` URL that receives a JSON POST per alert.
    pub webhook: Option<String>,
    /// Refuse requests (429) once a key's budget is spent.
    pub enforce: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            alert_thresholds: vec![0.5, 0.8, 1.0],
            webhook: None,
            enforce: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

impl ServeConfig {
    /// Parses and validates a TOML configuration; a `server.secrets_file` is read relative to
    /// `base_dir` and its keys appended.
    ///
    /// # Errors
    /// [`ServeError::Config`] naming the field at fault, or [`ServeError::Io`] for the secrets file.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self> {
        let mut config: ServeConfig = toml::from_str(text).map_err(|e| toml_error(&e))?;
        if let Some(secrets) = config.server.secrets_file.clone() {
            let path = base_dir.join(secrets);
            let text = std::fs::read_to_string(&path).map_err(|source| ServeError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let file: SecretsFile = toml::from_str(&text).map_err(|e| {
                ServeError::config(
                    format!("server.secrets_file ({})", path.display()),
                    e.message().to_owned(),
                )
            })?;
            config.keys.extend(file.keys);
        }
        config.validate()?;
        Ok(config)
    }

    /// Reads [`ServeConfig::from_toml`] from a file.
    ///
    /// # Errors
    /// As [`ServeConfig::from_toml`], and [`ServeError::Io`] when the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// The no-config set-up: one model, no keys (authentication off), default limits.
    #[must_use]
    pub fn single_model(name: impl Into<String>) -> Self {
        Self {
            models: vec![ModelConfig {
                name: name.into(),
                ..ModelConfig::default()
            }],
            ..Self::default()
        }
    }

    /// Whether API keys are required.
    #[must_use]
    pub fn auth_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks every field; the error names the first one at fault.
    ///
    /// # Errors
    /// [`ServeError::Config`].
    pub fn validate(&self) -> Result<()> {
        let s = &self.server;
        for (field, v) in [
            ("server.max_body_bytes", s.max_body_bytes),
            ("server.max_prompt_tokens", s.max_prompt_tokens),
            ("server.max_completion_tokens", s.max_completion_tokens),
            ("server.max_concurrent", s.max_concurrent),
        ] {
            if v == 0 {
                return Err(ServeError::config(field, "must be > 0"));
            }
        }
        if let Some(url) = &s.redis_url {
            if cfg!(not(feature = "redis")) {
                return Err(ServeError::config(
                    "server.redis_url",
                    "this build has no Redis support (kiln-serve's `redis` feature)",
                ));
            }
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return Err(ServeError::config(
                    "server.redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if self.models.is_empty() {
            return Err(ServeError::config("models", "at least one model is needed"));
        }
        let mut names = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            check_name(&format!("models[{i}].name"), &m.name)?;
            if !names.insert(m.name.as_str()) {
                return Err(ServeError::config(
                    format!("models[{i}].name"),
                    format!("`{}` is used twice", m.name),
                ));
            }
            if m.prices.prompt_per_1k < 0.0 || m.prices.completion_per_1k < 0.0 {
                return Err(ServeError::config(
                    format!("models[{i}].prices"),
                    "prices must be >= 0",
                ));
            }
            if m.kind == ModelKind::Clip && m.watermark.is_some() {
                return Err(ServeError::config(
                    format!("models[{i}].watermark"),
                    "a CLIP model does not generate text",
                ));
            }
            if let Some(w) = &m.watermark
                && !(w.gamma > 0.0 && w.gamma < 1.0)
            {
                return Err(ServeError::config(
                    format!("models[{i}].watermark.gamma"),
                    format!("must be in (0, 1), got {}", w.gamma),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            check_name(&format!("routes[{i}].name"), &r.name)?;
            if !names.insert(r.name.as_str()) {
                return Err(ServeError::config(
                    format!("routes[{i}].name"),
                    format!("`{}` is already a model or route", r.name),
                ));
            }
            if r.models.len() < 2 {
                return Err(ServeError::config(
                    format!("routes[{i}].models"),
                    "a cascade needs at least two models",
                ));
            }
            for (j, m) in r.models.iter().enumerate() {
                if !self.models.iter().any(|x| &x.name == m) {
                    return Err(ServeError::config(
                        format!("routes[{i}].models[{j}]"),
                        format!("`{m}` is not a configured model"),
                    ));
                }
            }
        }
        for (name, role) in &self.roles {
            for (j, e) in role.endpoints.iter().enumerate() {
                if e != "*" && !ENDPOINTS.contains(&e.as_str()) {
                    return Err(ServeError::config(
                        format!("roles.{name}.endpoints[{j}]"),
                        format!("`{e}` is not one of {ENDPOINTS:?} or \"*\""),
                    ));
                }
            }
            for (j, m) in role.models.iter().enumerate() {
                if m != "*" && !names.contains(m.as_str()) {
                    return Err(ServeError::config(
                        format!("roles.{name}.models[{j}]"),
                        format!("`{m}` is not a configured model or route"),
                    ));
                }
            }
        }
        let mut key_names = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            check_name(&format!("keys[{i}].name"), &k.name)?;
            if !key_names.insert(k.name.as_str()) {
                return Err(ServeError::config(
                    format!("keys[{i}].name"),
                    format!("`{}` is used twice", k.name),
                ));
            }
            if k.sha256.len() != 64 || hex::decode(&k.sha256).is_err() {
                return Err(ServeError::config(
                    format!("keys[{i}].sha256"),
                    "must be 64 hex digits (printf %s \"$KEY\" | sha256sum)",
                ));
            }
            if !hashes.insert(k.sha256.to_ascii_lowercase()) {
                return Err(ServeError::config(
                    format!("keys[{i}].sha256"),
                    "the same key is configured twice",
                ));
            }
            if !self.roles.contains_key(&k.role) {
                return Err(ServeError::config(
                    format!("keys[{i}].role"),
                    format!("`{}` is not a role under [roles]", k.role),
                ));
            }
            if k.budget.is_some_and(|b| b.is_nan() || b < 0.0) {
                return Err(ServeError::config(
                    format!("keys[{i}].budget"),
                    "must be >= 0",
                ));
            }
        }
        for (j, kind) in self.pii.kinds.iter().enumerate() {
            if crate::pii::PiiKind::from_name(kind).is_none() {
                return Err(ServeError::config(
                    format!("pii.kinds[{j}]"),
                    format!("`{kind}` is not one of email, phone, cn_id, bank_card"),
                ));
            }
        }
        for (i, f) in self.filters.iter().enumerate() {
            for (j, r) in f.regex.iter().enumerate() {
                if let Err(e) = regex::Regex::new(r) {
                    return Err(ServeError::config(
                        format!("filters[{i}].regex[{j}]"),
                        e.to_string(),
                    ));
                }
            }
            if f.block.iter().any(String::is_empty) {
                return Err(ServeError::config(
                    format!("filters[{i}].block"),
                    "empty phrase",
                ));
            }
        }
        for (j, t) in self.budget.alert_thresholds.iter().enumerate() {
            if t.is_nan() || *t <= 0.0 {
                return Err(ServeError::config(
                    format!("budget.alert_thresholds[{j}]"),
                    "must be > 0",
                ));
            }
        }
        if let Some(url) = &self.budget.webhook
            && !url.starts_with("http://")
        {
            return Err(ServeError::config(
                "budget.webhook",
                "only http:// URLs are supported (put a TLS proxy in front for https)",
            ));
        }
        Ok(())
    }
}

fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ServeError::config(
            field,
            format!("`{name}` must be 1-128 characters of A-Z a-z 0-9 - _ . /"),
        ))
    }
}

fn toml_error(e: &toml::de::Error) -> ServeError {
    let field = e
        .span()
        .map(|s| format!("(bytes {}..{})", s.start, s.end))
        .unwrap_or_default();
    ServeError::config(format!("toml {field}"), e.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn parse(text: &str) -> Result<ServeConfig> {
        ServeConfig::from_toml(text, Path::new("."))
    }

    #[test]
    fn errors_name_the_field() {
        let text = format!(
            "[[models]]\nname = \"m\"\n[roles.user]\nmodels = [\"m\"]\n[[keys]]\nname = \"a\"\nsha256 = \"{HASH}\"\nrole = \"nobody\"\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("keys[0].role"), "{err}");
        let err =
            parse("[[models]]\nname = \"m\"\n[roles.user]\nendpoints = [\"chat\", \"fly\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("roles.user.endpoints[1]"), "{err}");
        let err = parse("[server]\nmax_concurrent = 0\n[[models]]\nname = \"m\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.max_concurrent"), "{err}");
        let err = parse("[[models]]\nname = \"m\"\nkind = \"clip\"\nwatermark = {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("models[0].watermark"), "{err}");
        let c = parse("[[models]]\nname = \"m\"\nkind = \"clip\"\n").unwrap();
        assert_eq!(c.models[0].kind, ModelKind::Clip);
        let err = parse("[[models]]\nname = \"m\"\nflavour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("flavour"), "{err}");
    }

    #[test]
    fn secrets_file_adds_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys.toml"),
            format!("[[keys]]\nname = \"a\"\nsha256 = \"{HASH}\"\nrole = \"user\"\n"),
        )
        .unwrap();
        let c = ServeConfig::from_toml(
            "[server]\nsecrets_file = \"keys.toml\"\n[[models]]\nname = \"m\"\n[roles.user]\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(c.keys.len(), 1);
        assert!(c.auth_enabled());
        assert!(!ServeConfig::single_model("m").auth_enabled());
    }
}

//! `adapter_config.json`: a serde mirror of PEFT's `LoraConfig`, validated, and the rules by which
//! PEFT decides which modules an adapter targets and with what rank and alpha.
//!
//! Reference: PEFT `tuners/lora/config.py`, `tuners/tuners_utils.py::check_target_module_exists`
//! and `utils/other.py::get_pattern_key`. Options Kiln does not implement (DoRA, modules_to_save,
//! LoRA biases, ...) are refused by [`LoraConfig::validate`], never ignored.

use fancy_regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// `target_modules`: a list of names matched as exact keys or key suffixes, or one regular
/// expression matched against the whole key (PEFT's two forms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Names such as `["q_proj", "v_proj"]`.
    List(Vec<String>),
    /// A regular expression (`fullmatch`), or the shorthand `all-linear`.
    Pattern(String),
}

/// `layers_to_transform`: one layer index or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerIndices {
    /// A single layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

impl LayerIndices {
    fn contains(&self, i: usize) -> bool {
        match self {
            Self::One(j) => *j == i,
            Self::Many(v) => v.contains(&i),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Many(v) if v.is_empty())
    }
}

/// A string or a list of strings (`layers_pattern`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            Self::One(s) => vec![s.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `init_lora_weights`: `true` (Kaiming-uniform A, zero B), `false` (random B too, for tests),
/// or a named method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLoraWeights {
    /// PEFT's default (`true`) or random non-zero B (`false`).
    Bool(bool),
    /// `"gaussian"`; other methods (PiSSA, OLoRA, LoftQ, EVA, CorDA) change the base weights and
    /// are refused.
    Method(String),
}

/// A LoRA adapter's configuration, as PEFT writes it to `adapter_config.json`.
///
/// Fields Kiln does not model are kept in `extra` and written back unchanged; the ones whose
/// non-default values change the maths are checked by [`LoraConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always `"LORA"`.
    #[serde(default = "lora_type")]
    pub peft_type: String,
    /// The base model this adapter was trained on (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// PEFT's task type (`CAUSAL_LM`, ...).
    #[serde(default)]
    pub task_type: Option<String>,
    /// The rank.
    #[serde(default = "default_r")]
    pub r: usize,
    /// The alpha of the scaling `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// Dropout applied to the adapter's input while training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Which modules get an adapter.
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Modules excluded even when targeted.
    #[serde(default)]
    pub exclude_modules: Option<TargetModules>,
    /// Only these layers get adapters.
    #[serde(default)]
    pub layers_to_transform: Option<LayerIndices>,
    /// The name of the layer list in module keys (`layers`, `h`, ...).
    #[serde(default)]
    pub layers_pattern: Option<OneOrMany>,
    /// Per-module ranks, keyed by a name or pattern matched against the key's end.
    #[serde(default)]
    pub rank_pattern: Map<String, Value>,
    /// Per-module alphas, keyed like `rank_pattern`.
    #[serde(default)]
    pub alpha_pattern: Map<String, Value>,
    /// Scale by `alpha / sqrt(r)` (rank-stabilised LoRA) instead of `alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Bias handling; only `"none"` is supported.
    #[serde(default = "default_bias")]
    pub bias: String,
    /// How the adapter was initialised.
    #[serde(default = "default_init")]
    pub init_lora_weights: InitLoraWeights,
    /// Whether the adapter was saved for inference only.
    #[serde(default)]
    pub inference_mode: bool,
    /// Every other field of the file, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn lora_type() -> String {
    "LORA".into()
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_bias() -> String {
    "none".into()
}
fn default_init() -> InitLoraWeights {
    InitLoraWeights::Bool(true)
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            peft_type: lora_type(),
            base_model_name_or_path: None,
            task_type: Some("CAUSAL_LM".into()),
            r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            target_modules: Some(TargetModules::List(vec!["q_proj".into(), "v_proj".into()])),
            exclude_modules: None,
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: Map::new(),
            alpha_pattern: Map::new(),
            use_rslora: false,
            bias: default_bias(),
            init_lora_weights: default_init(),
            inference_mode: false,
            extra: Map::new(),
        }
    }
}

/// The rank and scaling one targeted module gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleLora {
    /// The rank.
    pub r: usize,
    /// The alpha.
    pub alpha: f64,
    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub scaling: f64,
}

/// Options whose non-default values Kiln refuses: `(field, what Kiln would have to implement)`.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "use_dora",
        "DoRA (weight-decomposed LoRA) is not implemented",
    ),
    (
        "modules_to_save",
        "fully trained extra modules are not implemented",
    ),
    ("lora_bias", "LoRA bias terms are not implemented"),
    (
        "fan_in_fan_out",
        "Conv1D-style (fan_in_fan_out) weights are not implemented",
    ),
    ("layer_replication", "layer replication is not implemented"),
    (
        "target_parameters",
        "adapters on raw parameters are not implemented",
    ),
    (
        "trainable_token_indices",
        "trainable tokens are not implemented",
    ),
    (
        "megatron_config",
        "Megatron parallel layers are not implemented",
    ),
    ("use_qalora", "QALoRA is not implemented"),
    (
        "alora_invocation_tokens",
        "activated LoRA (aLoRA) is not implemented",
    ),
    ("arrow_config", "Arrow routing is not implemented"),
    ("use_bdlora", "block-diagonal LoRA is not implemented"),
];

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

impl LoraConfig {
    /// Reads and validates `adapter_config.json`.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Config`] for malformed JSON or fields, [`Error::Unsupported`] for
    /// PEFT options Kiln does not implement.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and validates a config; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`LoraConfig::from_file`].
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| Error::Config {
            path: origin.into(),
            message: format!("not a valid LoRA adapter config: {e}"),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks the config describes something Kiln computes exactly as PEFT does.
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Unsupported`], naming the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let unsupported = |field: &str, message: &str| Error::Unsupported {
            path: origin.into(),
            field: field.into(),
            message: message.into(),
        };
        let bad = |message: String| Error::Config {
            path: origin.into(),
            message,
        };
        if self.peft_type != "LORA" {
            return Err(bad(format!(
                "`peft_type` is {:?}; only LORA adapters are supported",
                self.peft_type
            )));
        }
        if self.r == 0 {
            return Err(bad("`r` must be at least 1".into()));
        }
        if !self.lora_alpha.is_finite() {
            return Err(bad("`lora_alpha` must be a finite number".into()));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(bad(format!(
                "`lora_dropout` is {}; it must be in [0, 1)",
                self.lora_dropout
            )));
        }
        if self.bias != "none" {
            return Err(unsupported(
                "bias",
                &format!(
                    "{:?}: only \"none\" is supported (bias terms are not trained)",
                    self.bias
                ),
            ));
        }
        if let InitLoraWeights::Method(m) = &self.init_lora_weights
            && m != "gaussian"
        {
            return Err(unsupported(
                "init_lora_weights",
                &format!(
                    "{m:?} changes the base weights; only true, false and \"gaussian\" are supported"
                ),
            ));
        }
        for (field, why) in UNSUPPORTED {
            if let Some(v) = self.extra.get(*field)
                && is_set(v)
            {
                return Err(unsupported(field, why));
            }
        }
        if self.target_modules.is_none() {
            return Err(bad(
                "`target_modules` is missing; name the modules to adapt (e.g. [\"q_proj\", \"v_proj\"])"
                    .into(),
            ));
        }
        for (field, pats) in [
            ("rank_pattern", &self.rank_pattern),
            ("alpha_pattern", &self.alpha_pattern),
        ] {
            for (k, v) in pats {
                let ok = match field {
                    "rank_pattern" => v.as_u64().is_some_and(|r| r > 0),
                    _ => v.as_f64().is_some_and(f64::is_finite),
                };
                if !ok {
                    return Err(bad(format!("`{field}`.{k:?} has the bad value {v}")));
                }
                compile(&format!(r"^(?:.*\.)?(?:{k})$"), field, origin)?;
            }
        }
        if let Some(TargetModules::Pattern(p)) = &self.target_modules
            && !p.eq_ignore_ascii_case("all-linear")
        {
            compile(&format!("^(?:{p})$"), "target_modules", origin)?;
        }
        if let Some(TargetModules::Pattern(p)) = &self.exclude_modules {
            compile(&format!("^(?:{p})$"), "exclude_modules", origin)?;
        }
        Ok(())
    }

    /// Whether the module with this key (`model.layers.3.self_attn.q_proj`, as the base model
    /// names it) gets an adapter, and with which rank and scaling, by PEFT's rules. `is_output`
    /// marks the output projection, which PEFT's `all-linear` leaves out.
    ///
    /// # Errors
    /// A pattern that is not a valid regular expression.
    pub fn module(&self, key: &str, is_output: bool) -> Result<Option<ModuleLora>> {
        if !self.targets(key, is_output)? {
            return Ok(None);
        }
        self.params(key).map(Some)
    }

    /// The rank and scaling of a module known to be adapted (after `rank_pattern` and
    /// `alpha_pattern`).
    ///
    /// # Errors
    /// A pattern that is not a valid regular expression.
    pub fn params(&self, key: &str) -> Result<ModuleLora> {
        let r = pattern_value(&self.rank_pattern, key)?
            .and_then(|v| v.as_u64())
            .map_or(self.r, |v| v as usize);
        let alpha = pattern_value(&self.alpha_pattern, key)?
            .and_then(Value::as_f64)
            .unwrap_or(self.lora_alpha);
        let scaling = if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        Ok(ModuleLora { r, alpha, scaling })
    }

    fn targets(&self, key: &str, is_output: bool) -> Result<bool> {
        let suffix = |names: &[String]| {
            names
                .iter()
                .any(|n| key == n || key.ends_with(&format!(".{n}")))
        };
        let excluded = match &self.exclude_modules {
            Some(TargetModules::Pattern(p)) => full_match(p, key, "exclude_modules")?,
            Some(TargetModules::List(names)) => suffix(names),
            None => false,
        };
        if excluded {
            return Ok(false);
        }
        let found = match &self.target_modules {
            None => false,
            Some(TargetModules::Pattern(p)) if p.eq_ignore_ascii_case("all-linear") => !is_output,
            Some(TargetModules::Pattern(p)) => full_match(p, key, "target_modules")?,
            Some(TargetModules::List(names)) if names.iter().any(|n| n == key) => true,
            Some(TargetModules::List(names)) => suffix(names) && self.layer_selected(key)?,
        };
        Ok(found)
    }

    /// PEFT applies `layers_to_transform` only with the list form of `target_modules`.
    fn layer_selected(&self, key: &str) -> Result<bool> {
        let Some(layers) = &self.layers_to_transform else {
            return Ok(true);
        };
        if layers.is_empty() {
            return Ok(true);
        }
        let patterns: Vec<String> = match &self.layers_pattern {
            Some(p) if !p.items().is_empty() => p
                .items()
                .iter()
                .map(|p| format!(r"^(?:.*?\.)??{p}\.(?P<idx>\d+)\."))
                .collect(),
            _ => vec![r"^.*?\.[^.]*\.(?P<idx>\d+)\.".into()],
        };
        for p in &patterns {
            let re = compile(p, "layers_pattern", "<config>")?;
            if let Some(c) = re
                .captures(key)
                .map_err(|e| Error::Invalid(e.to_string()))?
            {
                let idx = c.name("idx").and_then(|m| m.as_str().parse::<usize>().ok());
                return Ok(idx.is_some_and(|i| layers.contains(i)));
            }
        }
        Ok(false)
    }

    /// The JSON PEFT reads, with Kiln's fields and every preserved extra.
    ///
    /// # Errors
    /// Serialisation failures.
    pub fn to_json(&self) -> Result<String> {
        let mut value = serde_json::to_value(self).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Value::Object(o) = &mut value {
            o.entry("peft_version")
                .or_insert_with(|| Value::String("0.21.2".into()));
            o.entry("modules_to_save").or_insert(Value::Null);
            o.entry("fan_in_fan_out").or_insert(Value::Bool(false));
            o.entry("use_dora").or_insert(Value::Bool(false));
        }
        serde_json::to_string_pretty(&value).map_err(|e| Error::Invalid(e.to_string()))
    }
}

fn compile(pattern: &str, field: &str, origin: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| Error::Config {
        path: origin.into(),
        message: format!("`{field}`: invalid regular expression {pattern:?}: {e}"),
    })
}

fn full_match(pattern: &str, key: &str, field: &str) -> Result<bool> {
    compile(&format!("^(?:{pattern})$"), field, "<config>")?
        .is_match(key)
        .map_err(|e| Error::Invalid(format!("`{field}`: {e}")))
}

/// PEFT's `get_pattern_key`: the first pattern `p` such that the key matches `(.*\.)?(p)$`.
fn pattern_value<'a>(patterns: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Value>> {
    for (p, v) in patterns {
        let re = compile(&format!(r"^(?:.*\.)?(?:{p})$"), "rank_pattern", "<config>")?;
        if re
            .is_match(key)
            .map_err(|e| Error::Invalid(e.to_string()))?
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<LoraConfig> {
        LoraConfig::from_json(json, "adapter_config.json")
    }

    #[test]
    fn suffix_matching_and_layers() {
        let c = cfg(
            r#"{"r":4,"lora_alpha":8,"target_modules":["q_proj","v_proj"],"layers_to_transform":[1]}"#,
        )
        .unwrap();
        assert!(
            c.module("model.layers.0.self_attn.q_proj", false)
                .unwrap()
                .is_none()
        );
        let m = c
            .module("model.layers.1.self_attn.q_proj", false)
            .unwrap()
            .unwrap();
        assert_eq!(m.r, 4);
        assert!((m.scaling - 2.0).abs() < 1e-12);
        assert!(
            c.module("model.layers.1.self_attn.k_proj", false)
                .unwrap()
                .is_none()
        );
        // "xq_proj" must not match "q_proj" (suffix after a dot only).
        assert!(
            c.module("model.layers.1.self_attn.xq_proj", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn regex_rank_alpha_patterns_and_rslora() {
        let c = cfg(
            r#"{"r":8,"lora_alpha":16,"use_rslora":true,
                "target_modules":".*\\.(q_proj|down_proj)",
                "rank_pattern":{"down_proj":2},"alpha_pattern":{"layers\\.0\\.self_attn\\.q_proj":4}}"#,
        )
        .unwrap();
        let q0 = c
            .module("model.layers.0.self_attn.q_proj", false)
            .unwrap()
            .unwrap();
        assert_eq!((q0.r, q0.alpha), (8, 4.0));
        assert!((q0.scaling - 4.0 / 8f64.sqrt()).abs() < 1e-12);
        let d = c
            .module("model.layers.1.mlp.down_proj", false)
            .unwrap()
            .unwrap();
        assert_eq!(d.r, 2);
        assert!((d.scaling - 16.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!(
            c.module("model.layers.1.mlp.up_proj", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn all_linear_skips_the_output_layer() {
        let c = cfg(r#"{"target_modules":"all-linear"}"#).unwrap();
        assert!(
            c.module("model.layers.0.mlp.up_proj", false)
                .unwrap()
                .is_some()
        );
        assert!(c.module("lm_head", true).unwrap().is_none());
    }

    #[test]
    fn unsupported_options_are_refused() {
        for (json, field) in [
            (
                r#"{"target_modules":["q_proj"],"use_dora":true}"#,
                "use_dora",
            ),
            (
                r#"{"target_modules":["q_proj"],"modules_to_save":["lm_head"]}"#,
                "modules_to_save",
            ),
            (r#"{"target_modules":["q_proj"],"bias":"all"}"#, "bias"),
            (
                r#"{"target_modules":["q_proj"],"init_lora_weights":"pissa"}"#,
                "init_lora_weights",
            ),
        ] {
            let e = cfg(json).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
            assert!(e.contains("adapter_config.json"), "{e}");
        }
        // Defaults written by PEFT are accepted.
        cfg(r#"{"target_modules":["q_proj"],"use_dora":false,"modules_to_save":null,"layer_replication":null}"#)
            .unwrap();
        assert!(cfg(r#"{"r":0,"target_modules":["q_proj"]}"#).is_err());
        assert!(cfg(r#"{"target_modules":"(unclosed"}"#).is_err());
        assert!(cfg(r#"{"peft_type":"IA3","target_modules":["q_proj"]}"#).is_err());
    }

    #[test]
    fn round_trips_extra_fields() {
        let c = cfg(r#"{"target_modules":["q_proj"],"revision":"abc","runtime_config":{"x":1}}"#)
            .unwrap();
        let back = cfg(&c.to_json().unwrap()).unwrap();
        assert_eq!(
            back.extra.get("revision"),
            Some(&Value::String("abc".into()))
        );
        assert_eq!(back.target_modules, c.target_modules);
    }
}

//! Merging LoRA adapters into a base model and writing a Hugging Face safetensors directory that
//! transformers loads (`LlamaForCausalLM.from_pretrained`).
//!
//! Every projection an adapter targets becomes `W + Σ weightᵢ · scalingᵢ · Bᵢ Aᵢ`. A quantized
//! (GGUF) base is dequantized to f32 first: the merged model is a dense checkpoint in the chosen
//! dtype, never re-quantized, because rounding the merged weight back to 4 bits would lose most of
//! a small adapter's update. When an adapter targets the output layer of a model with tied
//! embeddings, the merged model gets its own `lm_head.weight` and `tie_word_embeddings: false`.

use std::path::Path;

use kiln_lora::{LoraAdapter, write_atomic};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

use crate::config::{LlamaConfig, RopeScaling};
use crate::gguf::{GgufFile, tokenizer_from_gguf};
use crate::load::{GgufWeights, HfDirectory, WeightSource, config_from_gguf};
use crate::lora::{Proj, Site, linear_modules};
use crate::{Error, Result};

/// The dtype of the merged checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeDtype {
    /// 32-bit floats (exact).
    #[default]
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
}

impl std::str::FromStr for MergeDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(Error::Invalid(format!(
                "unknown dtype `{other}` (f32, f16 or bf16)"
            ))),
        }
    }
}

impl MergeDtype {
    fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }

    fn encode(self, data: &[f32]) -> (Dtype, Vec<u8>) {
        match self {
            Self::F32 => (
                Dtype::F32,
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Self::F16 => (
                Dtype::F16,
                data.iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            Self::Bf16 => (
                Dtype::BF16,
                data.iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        }
    }
}

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    /// Tensors written.
    pub tensors: usize,
    /// Modules that received an adapter update.
    pub merged_modules: usize,
    /// Whether the output layer was untied from the embeddings.
    pub untied: bool,
}

/// Merges `adapters` (each with its weight) into the model at `model` (an HF directory or a GGUF
/// file) and writes an HF safetensors directory to `out`.
///
/// # Errors
/// Loading errors naming the file, adapters that do not fit the model, a RoPE variant config.json
/// cannot express, and I/O errors.
pub fn merge_to_hf(
    model: &Path,
    adapters: &[(LoraAdapter, f32)],
    out: &Path,
    dtype: MergeDtype,
) -> Result<MergeReport> {
    export_hf(model, adapters, &Overrides::new(), out, dtype)
}

/// Tensors that replace the base model's in [`export_hf`]: Hugging Face name -> (shape, values),
/// as a dense fine-tuning run leaves them (`train::read_params`).
pub type Overrides = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Writes the model at `model` as an HF safetensors directory with some tensors replaced
/// (`overrides`, e.g. the result of full or partial fine-tuning) and `adapters` merged on top.
///
/// # Errors
/// As [`merge_to_hf`]; an override whose name the model does not have or whose shape differs.
pub fn export_hf(
    model: &Path,
    adapters: &[(LoraAdapter, f32)],
    overrides: &Overrides,
    out: &Path,
    dtype: MergeDtype,
) -> Result<MergeReport> {
    if model.is_dir() {
        let hf = HfDirectory::open(model)?;
        let config_json: Value = read_json(&model.join("config.json"))?;
        let report = write_merged(&hf.config, &hf.weights, adapters, overrides, out, dtype)?;
        let mut cfg = config_json;
        finish_config(&mut cfg, &report, dtype);
        write_json(&out.join("config.json"), &cfg)?;
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "generation_config.json",
        ] {
            let src = model.join(f);
            if src.exists() {
                let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
                write_atomic(&out.join(f), &bytes)?;
            }
        }
        Ok(report)
    } else {
        let file = GgufFile::open(model)?;
        let config = config_from_gguf(&file)?;
        let weights = GgufWeights::new(&file, &config);
        let report = write_merged(&config, &weights, adapters, overrides, out, dtype)?;
        let mut cfg = hf_config(&config, model)?;
        finish_config(&mut cfg, &report, dtype);
        write_json(&out.join("config.json"), &cfg)?;
        let (tok, info) = tokenizer_from_gguf(&file)?;
        let text = tok
            .to_string(false)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&out.join("tokenizer.json"), text.as_bytes())?;
        let mut tc = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": config.max_position_embeddings,
            "bos_token": info.bos_token,
            "eos_token": info.eos_token,
        });
        if let Some(t) = &info.chat_template {
            tc["chat_template"] = Value::String(t.clone());
        }
        write_json(&out.join("tokenizer_config.json"), &tc)?;
        write_json(
            &out.join("generation_config.json"),
            &json!({"bos_token_id": config.bos_token_id, "eos_token_id": eos_json(&config)}),
        )?;
        Ok(report)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        message: format!("malformed JSON: {e}"),
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(write_atomic(path, format!("{text}\n").as_bytes())?)
}

fn finish_config(cfg: &mut Value, report: &MergeReport, dtype: MergeDtype) {
    if report.untied {
        cfg["tie_word_embeddings"] = Value::Bool(false);
    }
    cfg["torch_dtype"] = Value::String(dtype.torch_name().into());
    if let Some(o) = cfg.as_object_mut() {
        o.remove("dtype");
        o.remove("quantization_config");
    }
}

/// A transformers `LlamaConfig` for a model read from GGUF.
fn hf_config(c: &LlamaConfig, path: &Path) -> Result<Value> {
    let rope_scaling = match &c.rope_scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
        RopeScaling::Factors(_) => {
            return Err(Error::Invalid(format!(
                "{}: per-frequency RoPE factors (rope_freqs.weight) have no config.json form",
                path.display()
            )));
        }
    };
    let eos = eos_json(c);
    Ok(json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "attention_bias": c.attention_bias,
        "mlp_bias": c.mlp_bias,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": eos,
    }))
}

/// `eos_token_id` as transformers writes it: a number for one id, a list for several.
fn eos_json(c: &LlamaConfig) -> Value {
    match c.eos_token_ids.as_slice() {
        [one] => json!(one),
        many => json!(many),
    }
}

fn write_merged(
    c: &LlamaConfig,
    base: &dyn WeightSource,
    adapters: &[(LoraAdapter, f32)],
    overrides: &Overrides,
    out: &Path,
    dtype: MergeDtype,
) -> Result<MergeReport> {
    let with = WithOverrides { base, overrides };
    let source: &dyn WeightSource = &with;
    let modules = linear_modules(c);
    for (a, _) in adapters {
        a.check_against(&modules)?;
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut merged_modules = 0usize;
    let mut linear = |site: Site, key: &str, rows: usize, cols: usize| -> Result<Vec<f32>> {
        let src_name = if site == Site::LmHead && !source.contains(key) {
            "model.embed_tokens.weight"
        } else {
            key
        };
        let mut w = source.tensor(src_name, &[rows, cols])?;
        let module = key.trim_end_matches(".weight");
        let mut touched = false;
        for (a, weight) in adapters {
            if let Some(l) = a.modules.get(module) {
                let d = l.delta();
                w.iter_mut().zip(&d).for_each(|(w, d)| *w += weight * d);
                touched = true;
            }
        }
        merged_modules += usize::from(touched);
        Ok(w)
    };
    let d = c.hidden_size;
    let vec = |name: &str, n: usize| source.tensor(name, &[n]);
    tensors.push((
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, d],
        source.tensor("model.embed_tokens.weight", &[c.vocab_size, d])?,
    ));
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for name in ["input_layernorm", "post_attention_layernorm"] {
            let key = format!("{p}.{name}.weight");
            let v = vec(&key, d)?;
            tensors.push((key, vec![d], v));
        }
        for proj in Proj::ALL {
            let (n_in, n_out) = proj.shape(c);
            let key = format!("{}.weight", Site::Layer(l, proj).key());
            let w = linear(Site::Layer(l, proj), &key, n_out, n_in)?;
            tensors.push((key, vec![n_out, n_in], w));
            let has_bias = match proj {
                Proj::Gate | Proj::Up | Proj::Down => c.mlp_bias,
                _ => c.attention_bias,
            };
            if has_bias {
                let key = format!("{}.bias", Site::Layer(l, proj).key());
                let b = vec(&key, n_out)?;
                tensors.push((key, vec![n_out], b));
            }
        }
    }
    tensors.push((
        "model.norm.weight".into(),
        vec![d],
        vec("model.norm.weight", d)?,
    ));
    let head_adapted = adapters
        .iter()
        .any(|(a, _)| a.modules.contains_key("lm_head"));
    let untied = c.tie_word_embeddings && head_adapted;
    if !c.tie_word_embeddings || head_adapted {
        let w = linear(Site::LmHead, "lm_head.weight", c.vocab_size, d)?;
        tensors.push(("lm_head.weight".into(), vec![c.vocab_size, d], w));
    }
    let written: std::collections::HashSet<&str> =
        tensors.iter().map(|(n, _, _)| n.as_str()).collect();
    if let Some(extra) = overrides.keys().find(|k| !written.contains(k.as_str())) {
        return Err(Error::Invalid(format!(
            "replacement tensor `{extra}` is not a tensor of this model"
        )));
    }
    let encoded: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| {
            let (dt, bytes) = dtype.encode(&v);
            (n, s, dt, bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(n, s, dt, b)| {
            TensorView::new(*dt, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Invalid(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let n = views.len();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Invalid(format!("serialising the merged model: {e}")))?;
    write_atomic(&out.join("model.safetensors"), &bytes)?;
    Ok(MergeReport {
        tensors: n,
        merged_modules,
        untied,
    })
}

/// A weight source whose tensors are replaced by `overrides` where named.
struct WithOverrides<'a> {
    base: &'a dyn WeightSource,
    overrides: &'a Overrides,
}

impl WeightSource for WithOverrides<'_> {
    fn path(&self) -> String {
        self.base.path()
    }

    fn contains(&self, name: &str) -> bool {
        self.overrides.contains_key(name) || self.base.contains(name)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.overrides.get(name) {
            Some((s, v)) if s.as_slice() == shape => Ok(v.clone()),
            Some((s, _)) => Err(Error::TensorShape {
                path: "<replacement tensors>".into(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: s.clone(),
            }),
            None => self.base.tensor(name, shape),
        }
    }
}

//! A Hugging Face model directory: `config.json`, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json` and `model.safetensors` or a sharded `model.safetensors.index.json`.

use std::path::{Path, PathBuf};

use kiln_core::HfTokenizer;

use super::SafetensorsWeights;
use crate::config::LlamaConfig;
use crate::special::SpecialTokens;
use crate::{Error, Result};

/// The parts of an HF directory a model needs.
#[derive(Debug)]
pub struct HfDirectory {
    /// The directory.
    pub dir: PathBuf,
    /// The resolved model configuration.
    pub config: LlamaConfig,
    /// The tensors.
    pub weights: SafetensorsWeights,
    /// The tokenizer.
    pub tokenizer: HfTokenizer,
    /// Special tokens and the chat template.
    pub special: SpecialTokens,
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: format!("malformed JSON: {e}"),
        })
}

/// A token in tokenizer_config.json is a string or an `AddedToken` object with `content`.
fn token_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

impl HfDirectory {
    /// Opens a directory.
    ///
    /// # Errors
    /// Errors naming the file at fault: a missing or malformed config, tokenizer or weights.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mut config = LlamaConfig::from_hf_file(dir.join("config.json"))?;

        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let weights = if single.exists() {
            SafetensorsWeights::open_file(&single)?
        } else if index.exists() {
            SafetensorsWeights::open_index(&index)?
        } else {
            return Err(Error::Config {
                path: dir.display().to_string(),
                message: "no model.safetensors or model.safetensors.index.json".into(),
            });
        };

        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(Error::Tokenizer {
                source_name: tok_path.display().to_string(),
                message: "file not found (Kiln needs a tokenizer.json next to config.json)".into(),
            });
        }
        let tokenizer = HfTokenizer::from_file(&tok_path)?;

        let tc_path = dir.join("tokenizer_config.json");
        let tc = read_json(&tc_path)?;
        let mut chat_template = tc.as_ref().and_then(|t| match t.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(serde_json::Value::Array(list)) => list.iter().find_map(|e| {
                (e.get("name")?.as_str()? == "default")
                    .then(|| e.get("template")?.as_str().map(str::to_string))?
            }),
            _ => None,
        });
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            chat_template =
                Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?);
        }
        let bos_token = token_string(tc.as_ref().and_then(|t| t.get("bos_token")));
        let eos_token = token_string(tc.as_ref().and_then(|t| t.get("eos_token")));

        // generation_config.json may list more EOS ids (Llama 3 instruct: <|eot_id|>).
        if let Some(gc) = read_json(&dir.join("generation_config.json"))? {
            match gc.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => {
                    if let Some(id) = n.as_u64().and_then(|v| u32::try_from(v).ok())
                        && !config.eos_token_ids.contains(&id)
                    {
                        config.eos_token_ids.push(id);
                    }
                }
                Some(serde_json::Value::Array(a)) => {
                    for id in a
                        .iter()
                        .filter_map(|v| v.as_u64())
                        .filter_map(|v| u32::try_from(v).ok())
                    {
                        if !config.eos_token_ids.contains(&id) {
                            config.eos_token_ids.push(id);
                        }
                    }
                }
                _ => {}
            }
        }
        use kiln_core::Tokenizer as _;
        if let Some(eos) = eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t))
            && !config.eos_token_ids.contains(&eos)
        {
            config.eos_token_ids.push(eos);
        }
        let special = SpecialTokens {
            bos_token_id: config.bos_token_id,
            eos_token_ids: config.eos_token_ids.clone(),
            bos_token,
            eos_token,
            chat_template,
        };
        Ok(Self {
            dir,
            config,
            weights,
            tokenizer,
            special,
        })
    }
}

//! GGUF checkpoints of architecture `llama`: the configuration from `llama.*` metadata, tensors
//! renamed from llama.cpp's names to Hugging Face's and dequantized to `f32`.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that its RoPE rotates
//! adjacent pairs; Kiln rotates halves like transformers, so the permutation is undone here.

use std::path::Path;

use kiln_backend::kernels::{QuantMatrix, WeightFormat};

use super::WeightSource;
use crate::config::{LlamaConfig, RopeScaling};
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// Architectures this loader reads.
const SUPPORTED: &str = "llama";

/// Resolves a [`LlamaConfig`] from GGUF metadata.
///
/// # Errors
/// [`Error::UnsupportedArchitecture`], [`Error::Metadata`] for missing keys.
pub fn config_from_gguf(file: &GgufFile) -> Result<LlamaConfig> {
    let path = file.path().display().to_string();
    let arch = file.architecture()?;
    if arch != SUPPORTED {
        return Err(Error::UnsupportedArchitecture {
            path,
            architecture: arch.to_string(),
            supported: SUPPORTED.to_string(),
        });
    }
    let key = |k: &str| format!("{arch}.{k}");
    let usize_of = |k: &str| -> Result<usize> { Ok(file.get_u64(&key(k))? as usize) };
    let hidden_size = usize_of("embedding_length")?;
    let num_attention_heads = usize_of("attention.head_count")?;
    let num_key_value_heads = file
        .opt_u64(&key("attention.head_count_kv"))?
        .map_or(num_attention_heads, |v| v as usize);
    if num_attention_heads == 0 {
        return Err(Error::Metadata {
            path,
            key: key("attention.head_count"),
            message: "must be positive".into(),
        });
    }
    let head_dim = match file.opt_u64(&key("attention.key_length"))? {
        Some(v) => v as usize,
        None => file
            .opt_u64(&key("rope.dimension_count"))?
            .map_or(hidden_size / num_attention_heads, |v| v as usize),
    };
    let vocab_size = match file.opt_u64(&key("vocab_size"))? {
        Some(v) => v as usize,
        None => file
            .tensor_info("token_embd.weight")
            .map(|t| t.shape().first().copied().unwrap_or(0))
            .ok_or_else(|| Error::MissingTensor {
                path: path.clone(),
                name: "token_embd.weight".into(),
            })?,
    };
    let rope_theta = file.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
    let mut rope_scaling = match file.opt_str(&key("rope.scaling.type"))? {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear {
            factor: file.get_f32(&key("rope.scaling.factor"))?,
        },
        Some(other) => {
            return Err(Error::Metadata {
                path,
                key: key("rope.scaling.type"),
                message: format!("rope scaling {other:?} is not supported (none, linear)"),
            });
        }
    };
    if file.tensor_info("rope_freqs.weight").is_some() {
        // Llama 3.1+: the converter stores the per-frequency divisors of llama3 scaling.
        rope_scaling = RopeScaling::Factors(file.dequantize("rope_freqs.weight")?);
    }
    let token_id = |k: &str| -> Result<Option<u32>> {
        Ok(file.opt_u64(k)?.and_then(|v| u32::try_from(v).ok()))
    };
    let bos_token_id = token_id("tokenizer.ggml.bos_token_id")?;
    let mut eos_token_ids = Vec::new();
    for k in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = token_id(k)?
            && !eos_token_ids.contains(&id)
        {
            eos_token_ids.push(id);
        }
    }
    let cfg = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: usize_of("feed_forward_length")?,
        num_hidden_layers: usize_of("block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: file
            .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta,
        rope_scaling,
        max_position_embeddings: usize_of("context_length")?,
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
        mlp_bias: file.tensor_info("blk.0.ffn_up.bias").is_some(),
        bos_token_id,
        eos_token_ids,
    };
    cfg.validate(&path)?;
    Ok(cfg)
}

/// The tensors of a GGUF file, served under Hugging Face names.
pub struct GgufWeights<'a> {
    file: &'a GgufFile,
    n_heads: usize,
    n_kv_heads: usize,
}

impl std::fmt::Debug for GgufWeights<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWeights")
            .field("path", &self.file.path())
            .finish()
    }
}

impl<'a> GgufWeights<'a> {
    /// Wraps an open file for a model of this configuration.
    #[must_use]
    pub fn new(file: &'a GgufFile, config: &LlamaConfig) -> Self {
        Self {
            file,
            n_heads: config.num_attention_heads,
            n_kv_heads: config.num_key_value_heads,
        }
    }

    /// The GGUF path of a file.
    #[must_use]
    pub fn path_of(&self) -> &Path {
        self.file.path()
    }
}

/// Maps a Hugging Face tensor name to llama.cpp's, with the number of heads whose row permutation
/// must be undone (for q and k).
fn gguf_name(hf: &str, n_heads: usize, n_kv_heads: usize) -> Option<(String, Option<usize>)> {
    let direct = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = direct {
        return Some((n.to_string(), None));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let (name, heads) = match module {
        "input_layernorm" => ("attn_norm", None),
        "post_attention_layernorm" => ("ffn_norm", None),
        "self_attn.q_proj" => ("attn_q", Some(n_heads)),
        "self_attn.k_proj" => ("attn_k", Some(n_kv_heads)),
        "self_attn.v_proj" => ("attn_v", None),
        "self_attn.o_proj" => ("attn_output", None),
        "mlp.gate_proj" => ("ffn_gate", None),
        "mlp.up_proj" => ("ffn_up", None),
        "mlp.down_proj" => ("ffn_down", None),
        _ => return None,
    };
    Some((format!("blk.{layer}.{name}.{suffix}"), heads))
}

/// Undoes llama.cpp's `permute`: within each head, GGUF row `2i + j` is HF row `j * half + i`.
/// Works on whole rows of any element type (`cols` elements of `T` per row), so quantized rows move
/// as they are.
fn unpermute_rows<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    n_heads: usize,
) -> Vec<T> {
    let head_rows = rows / n_heads;
    let half = head_rows / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_rows + 2 * i + j;
                let dst = h * head_rows + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

impl WeightSource for GgufWeights<'_> {
    fn path(&self) -> String {
        self.file.path().display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name, self.n_heads, self.n_kv_heads)
            .is_some_and(|(g, _)| self.file.tensor_info(&g).is_some())
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QuantMatrix> {
        let (gname, info, heads) = self.locate(name, &[rows, cols])?;
        let format = WeightFormat::from_ggml_type(info.ggml_type.id());
        let (Some(format), Some(row_bytes)) = (format, format.and_then(|f| f.row_bytes(cols)))
        else {
            // A type the kernels do not take (K-quants, ...): dequantize once to f32.
            return super::f32_matrix(&self.tensor(name, &[rows, cols])?, rows, cols);
        };
        match heads {
            Some(n) => {
                let bytes = unpermute_rows(self.file.tensor_bytes(&gname)?, rows, row_bytes, n);
                Ok(QuantMatrix::new(format, rows, cols, bytes)?)
            }
            // In place in the memory map: no copy, pages shared with the file cache.
            None => {
                let (map, range) = self.file.tensor_range(&gname)?;
                Ok(QuantMatrix::from_shared(format, rows, cols, map, range)?)
            }
        }
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (gname, _, heads) = self.locate(name, shape)?;
        let data = self.file.dequantize(&gname)?;
        match (heads, shape) {
            (Some(n), [rows, cols]) => Ok(unpermute_rows(&data, *rows, *cols, n)),
            _ => Ok(data),
        }
    }
}

impl GgufWeights<'_> {
    /// Finds the GGUF tensor behind a Hugging Face name, checks its shape, and returns its name,
    /// info and, for q/k, the number of heads whose row permutation must be undone (checked to divide
    /// the rows into heads of even width).
    fn locate(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<(String, &crate::gguf::GgufTensorInfo, Option<usize>)> {
        let (gname, heads) =
            gguf_name(name, self.n_heads, self.n_kv_heads).ok_or_else(|| Error::MissingTensor {
                path: self.path(),
                name: name.to_string(),
            })?;
        let info = self
            .file
            .tensor_info(&gname)
            .ok_or_else(|| Error::MissingTensor {
                path: self.path(),
                name: gname.clone(),
            })?;
        let found = info.shape();
        if found != shape {
            return Err(Error::TensorShape {
                path: self.path(),
                name: gname,
                expected: shape.to_vec(),
                found,
            });
        }
        if let Some(n) = heads {
            let rows = shape.first().copied().unwrap_or(0);
            if shape.len() != 2
                || n == 0
                || !rows.is_multiple_of(n)
                || !(rows / n).is_multiple_of(2)
            {
                return Err(Error::Gguf {
                    path: self.path(),
                    message: format!(
                        "tensor `{gname}` of shape {shape:?} cannot be split into {n} heads of even width"
                    ),
                });
            }
        }
        Ok((gname, info, heads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_proj.weight", 9, 3),
            Some(("blk.3.attn_k.weight".into(), Some(3)))
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight", 9, 3),
            Some(("blk.0.ffn_down.weight".into(), None))
        );
        assert_eq!(
            gguf_name("lm_head.weight", 9, 3),
            Some(("output.weight".into(), None))
        );
        assert_eq!(gguf_name("model.layers.x.mlp.down_proj.weight", 9, 3), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // One head of 4 rows, 1 column: HF rows [a, b, c, d] are stored by llama.cpp as [a, c, b, d].
        let gguf = [0.0, 2.0, 1.0, 3.0];
        assert_eq!(unpermute_rows(&gguf, 4, 1, 1), vec![0.0, 1.0, 2.0, 3.0]);
    }
}

//! Writing CLIP checkpoints in Hugging Face's layout (`CLIPModel.from_pretrained` loads them):
//! `model.safetensors` with transformers' names and PyTorch shapes (`Linear` weights `[out, in]`,
//! the patch embedding as a `[hidden, channels, patch, patch]` convolution), `config.json`, the
//! tokenizer files and `preprocessor_config.json`. Every file is written atomically.

use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::model::ClipModel;
use crate::model::encoder::Encoder;
use crate::{Clip, ClipConfig, ClipError, Result};

/// `(name, PyTorch shape, f32 values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);
type Named = NamedTensor;

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ClipError::Input(format!("reading a weight back from the device: {e:?}")))
}

fn push<const D: usize>(out: &mut Vec<Named>, name: String, t: Tensor<D>) -> Result<()> {
    let shape = t.dims().to_vec();
    out.push((name, shape, values(t)?));
    Ok(())
}

fn push_param<const D: usize>(
    out: &mut Vec<Named>,
    name: String,
    p: &Param<Tensor<D>>,
) -> Result<()> {
    push(out, name, p.val())
}

fn push_linear(out: &mut Vec<Named>, prefix: &str, l: &Linear) -> Result<()> {
    push(out, format!("{prefix}.weight"), l.weight.val().transpose())?;
    if let Some(b) = &l.bias {
        push_param(out, format!("{prefix}.bias"), b)?;
    }
    Ok(())
}

fn push_norm(out: &mut Vec<Named>, prefix: &str, n: &LayerNorm) -> Result<()> {
    push_param(out, format!("{prefix}.weight"), &n.gamma)?;
    match &n.beta {
        Some(b) => push_param(out, format!("{prefix}.bias"), b),
        None => {
            let d = n.gamma.val().dims()[0];
            out.push((format!("{prefix}.bias"), vec![d], vec![0.0; d]));
            Ok(())
        }
    }
}

fn push_encoder(out: &mut Vec<Named>, prefix: &str, e: &Encoder) -> Result<()> {
    for (i, l) in e.layers.iter().enumerate() {
        let p = format!("{prefix}.layers.{i}");
        push_linear(out, &format!("{p}.self_attn.q_proj"), &l.self_attn.q_proj)?;
        push_linear(out, &format!("{p}.self_attn.k_proj"), &l.self_attn.k_proj)?;
        push_linear(out, &format!("{p}.self_attn.v_proj"), &l.self_attn.v_proj)?;
        push_linear(
            out,
            &format!("{p}.self_attn.out_proj"),
            &l.self_attn.out_proj,
        )?;
        push_norm(out, &format!("{p}.layer_norm1"), &l.layer_norm1)?;
        push_linear(out, &format!("{p}.mlp.fc1"), &l.mlp.fc1)?;
        push_linear(out, &format!("{p}.mlp.fc2"), &l.mlp.fc2)?;
        push_norm(out, &format!("{p}.layer_norm2"), &l.layer_norm2)?;
    }
    Ok(())
}

impl ClipModel {
    /// The model's tensors with transformers' names and PyTorch shapes.
    ///
    /// # Errors
    /// When a weight cannot be read back from the device.
    pub fn hf_tensors(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        let v = &self.vision_model;
        let e = &v.embeddings;
        push_param(
            &mut out,
            "vision_model.embeddings.class_embedding".into(),
            &e.class_embedding,
        )?;
        let [k, h] = e.patch_embedding.val().dims();
        let p = e.patch;
        debug_assert_eq!(k, e.channels * p * p);
        push(
            &mut out,
            "vision_model.embeddings.patch_embedding.weight".into(),
            e.patch_embedding
                .val()
                .transpose()
                .reshape([h, e.channels, p, p]),
        )?;
        push_param(
            &mut out,
            "vision_model.embeddings.position_embedding.weight".into(),
            &e.position_embedding,
        )?;
        push_norm(&mut out, "vision_model.pre_layrnorm", &v.pre_layrnorm)?;
        push_encoder(&mut out, "vision_model.encoder", &v.encoder)?;
        push_norm(&mut out, "vision_model.post_layernorm", &v.post_layernorm)?;
        let t = &self.text_model;
        push_param(
            &mut out,
            "text_model.embeddings.token_embedding.weight".into(),
            &t.token_embedding,
        )?;
        push_param(
            &mut out,
            "text_model.embeddings.position_embedding.weight".into(),
            &t.position_embedding,
        )?;
        push_encoder(&mut out, "text_model.encoder", &t.encoder)?;
        push_norm(&mut out, "text_model.final_layer_norm", &t.final_layer_norm)?;
        push_linear(&mut out, "visual_projection", &self.visual_projection)?;
        push_linear(&mut out, "text_projection", &self.text_projection)?;
        let scale = values(self.logit_scale.val())?;
        out.push(("logit_scale".into(), vec![], scale));
        Ok(out)
    }

    /// Writes `model.safetensors` and `config.json` into `dir` (created if needed).
    ///
    /// # Errors
    /// [`ClipError::Io`] naming the file.
    pub fn save_hf(&self, config: &ClipConfig, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| ClipError::io(dir, e))?;
        let tensors = self.hf_tensors()?;
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views = tensors
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| ClipError::Input(format!("tensor `{n}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        let data = safetensors::serialize(views, Some(meta))
            .map_err(|e| ClipError::Input(format!("serializing model.safetensors: {e}")))?;
        write(dir, "model.safetensors", &data)?;
        let json = serde_json::to_string_pretty(&config.to_hf_json()).unwrap_or_default();
        write(dir, "config.json", json.as_bytes())
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(name);
    kiln_core::fs::write_atomic(&p, bytes).map_err(|e| ClipError::io(&p, e))
}

impl Clip {
    /// Writes the whole model directory: weights, `config.json`, tokenizer files and
    /// `preprocessor_config.json`, so that [`Clip::open`] and transformers' `CLIPModel` /
    /// `CLIPProcessor` load it.
    ///
    /// # Errors
    /// [`ClipError::Io`] naming the file.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.model().save_hf(self.config(), dir)?;
        self.tokenizer()
            .save(dir, self.config().text_config.max_position_embeddings)?;
        let mut pp = serde_json::to_value(self.preprocess_config()).unwrap_or_default();
        pp["image_processor_type"] = "CLIPImageProcessor".into();
        pp["processor_class"] = "CLIPProcessor".into();
        let json = serde_json::to_string_pretty(&pp).unwrap_or_default();
        write(dir, "preprocessor_config.json", json.as_bytes())
    }
}

//! The LLaVA network: CLIP vision tower -> projector -> image features spliced into the Llama
//! decoder's input embeddings at the image placeholder tokens.
//!
//! Reference: transformers `modeling_llava.py` (`LlavaModel.get_image_features`,
//! `LlavaMultiModalProjector`, the `masked_scatter` of image features into `inputs_embeds`).

use std::path::Path;

use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;
use kiln_clip::load::Weights;
use kiln_clip::model::VisionTransformer;
use kiln_llama::load::{SafetensorsWeights, WeightSource};
use kiln_llama::{KvCache, Llama, NoAdapter};

use crate::config::{FeatureSelect, LlavaConfig};
use crate::{Error, Result};

/// `linear_2(act(linear_1(x)))`, vision width (times the number of feature layers) -> text width.
#[derive(Debug)]
pub struct Projector {
    /// First layer.
    pub linear_1: Linear,
    /// Second layer.
    pub linear_2: Linear,
    /// The activation between them.
    pub act: kiln_clip::Activation,
}

impl Projector {
    /// # Shapes
    /// - `x`: `[batch, tokens, vision hidden * layers]` -> `[batch, tokens, text hidden]`
    #[must_use]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.linear_2
            .forward(self.act.apply(self.linear_1.forward(x)))
    }
}

/// A LLaVA model.
#[derive(Debug)]
pub struct LlavaModel {
    /// The configuration.
    pub config: LlavaConfig,
    /// The CLIP vision tower.
    pub vision: VisionTransformer,
    /// The multi-modal projector.
    pub projector: Projector,
    /// The language model.
    pub language: Llama,
}

/// The Llama tensors of a LLaVA checkpoint under kiln-llama's names (`model.layers.0...`,
/// `lm_head.weight`).
struct LanguageWeights<'a> {
    inner: &'a SafetensorsWeights,
    model_prefix: String,
    head: String,
}

impl LanguageWeights<'_> {
    fn map(&self, name: &str) -> String {
        match name.strip_prefix("model.") {
            Some(rest) => format!("{}.{rest}", self.model_prefix),
            None if name == "lm_head.weight" => self.head.clone(),
            None => name.to_string(),
        }
    }
}

impl WeightSource for LanguageWeights<'_> {
    fn path(&self) -> String {
        self.inner.path()
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(&self.map(name))
    }
    fn tensor(&self, name: &str, shape: &[usize]) -> kiln_llama::Result<Vec<f32>> {
        self.inner.tensor(&self.map(name), shape)
    }
}

/// The first prefix under which `probe` exists.
fn find_prefix(files: &SafetensorsFiles, candidates: &[&str], probe: &str) -> Result<String> {
    candidates
        .iter()
        .find(|p| files.contains(&format!("{p}.{probe}")))
        .map(|p| (*p).to_string())
        .ok_or_else(|| {
            Error::Weights(kiln_backend::Error::MissingTensor {
                path: files.path(),
                name: format!("{}.{probe} (or another known LLaVA layout)", candidates[0]),
            })
        })
}

impl LlavaModel {
    /// Loads a Hugging Face LLaVA directory (`config.json`, `model.safetensors` or an index).
    ///
    /// # Errors
    /// A malformed config or a missing or mis-shaped tensor, named with its file.
    pub fn open(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = LlavaConfig::from_file(dir.join("config.json"))?;
        let files = SafetensorsFiles::open_dir(dir)?;
        let vision_prefix = find_prefix(
            &files,
            &[
                "vision_tower.vision_model",
                "model.vision_tower.vision_model",
                "vision_tower",
                "model.vision_tower",
            ],
            "embeddings.class_embedding",
        )?;
        let projector_prefix = find_prefix(
            &files,
            &["multi_modal_projector", "model.multi_modal_projector"],
            "linear_1.weight",
        )?;
        let model_prefix = find_prefix(
            &files,
            &["language_model.model", "model.language_model"],
            "embed_tokens.weight",
        )?;
        let head = ["language_model.lm_head.weight", "lm_head.weight"]
            .into_iter()
            .find(|h| files.contains(h))
            .unwrap_or("lm_head.weight")
            .to_string();

        let w = Weights::new(&files, device);
        let vision = config.vision.load(&w, &vision_prefix)?;
        let vin = config.vision.hidden_size * config.feature_layers.len();
        let d = config.text.hidden_size;
        let bias = config.projector_bias;
        let projector = Projector {
            linear_1: w.linear(&format!("{projector_prefix}.linear_1"), vin, d, bias)?,
            linear_2: w.linear(&format!("{projector_prefix}.linear_2"), d, d, bias)?,
            act: config.projector_act,
        };
        let llama_files = match dir.join("model.safetensors").is_file() {
            true => SafetensorsWeights::open_file(dir.join("model.safetensors"))?,
            false => SafetensorsWeights::open_index(dir.join("model.safetensors.index.json"))?,
        };
        let source = LanguageWeights {
            inner: &llama_files,
            model_prefix,
            head,
        };
        let language = Llama::load(config.text.clone(), &source, device)?;
        Ok(Self {
            config,
            vision,
            projector,
            language,
        })
    }

    /// Projected image features, transformers' `get_image_features`.
    ///
    /// # Shapes
    /// - `pixels`: `[images, 3, size, size]` -> `[images, tokens_per_image, text hidden]`
    ///
    /// # Errors
    /// Pixels of the wrong shape.
    pub fn image_features(&self, pixels: Tensor<4>) -> Result<Tensor<3>> {
        self.vision.check_pixels(pixels.dims())?;
        let states = self.vision.hidden_states(pixels);
        let n = states.len() as i64;
        let picked: Vec<Tensor<3>> = self
            .config
            .feature_layers
            .iter()
            .map(|&l| states[(if l < 0 { n + l } else { l }) as usize].clone())
            .collect();
        let mut x = Tensor::cat(picked, 2);
        if self.config.select == FeatureSelect::Default {
            let [b, t, h] = x.dims();
            x = x.slice([0..b, 1..t, 0..h]);
        }
        Ok(self.projector.forward(x))
    }

    /// The decoder's input embeddings: token embeddings of `ids` with the image features put, in
    /// order, at the image placeholder tokens (row-major over the batch, as transformers'
    /// `masked_scatter`).
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` (row-major), `features`: `[images, tokens_per_image, hidden]`
    /// - output: `[batch, seq, hidden]`
    ///
    /// # Errors
    /// [`Error::Input`] when the placeholder count differs from the number of image features.
    pub fn merge_embeddings(
        &self,
        ids: &[u32],
        batch: usize,
        features: Option<Tensor<3>>,
    ) -> Result<Tensor<3>> {
        let device = self.language.device().clone();
        let seq = ids.len() / batch.max(1);
        let tokens = self.language.ids_tensor(ids, batch);
        let embeds = self.language.embed(tokens);
        let placeholders = ids
            .iter()
            .filter(|&&t| t == self.config.image_token_id)
            .count();
        let Some(features) = features else {
            if placeholders > 0 {
                return Err(Error::Input(format!(
                    "the prompt has {placeholders} image tokens but no image was given"
                )));
            }
            return Ok(embeds);
        };
        let [images, per, h] = features.dims();
        if placeholders != images * per {
            return Err(Error::Input(format!(
                "the prompt has {placeholders} image tokens; {images} image(s) give {} features \
                 ({per} each): expand each image placeholder to {per} tokens",
                images * per
            )));
        }
        let rows = batch * seq;
        let mut k = 0i64;
        let index: Vec<i64> = ids
            .iter()
            .enumerate()
            .map(|(p, &t)| {
                if t == self.config.image_token_id {
                    k += 1;
                    rows as i64 + k - 1
                } else {
                    p as i64
                }
            })
            .collect();
        let pool = Tensor::cat(
            vec![
                embeds.reshape([rows, h]),
                features.reshape([images * per, h]),
            ],
            0,
        );
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows]), &device);
        Ok(pool.select(0, index).reshape([batch, seq, h]))
    }

    /// Logits of every position for a prompt with images.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` (row-major), `pixels`: `[images, 3, size, size]`
    /// - output: `[batch, seq, vocab]`
    ///
    /// # Errors
    /// Mismatched image tokens, pixels of the wrong shape, or a prompt longer than the context.
    pub fn forward(
        &self,
        ids: &[u32],
        batch: usize,
        pixels: Option<Tensor<4>>,
        cache: &mut KvCache,
    ) -> Result<Tensor<3>> {
        if batch == 0 || ids.is_empty() || !ids.len().is_multiple_of(batch) {
            return Err(Error::Input(format!(
                "{} ids do not form {batch} rows of equal length",
                ids.len()
            )));
        }
        let features = match pixels {
            Some(p) => Some(self.image_features(p)?),
            None => None,
        };
        let x = self.merge_embeddings(ids, batch, features)?;
        let h = self
            .language
            .hidden_states_from_embeds(x, cache, &NoAdapter)?;
        Ok(self.language.logits(h, &NoAdapter))
    }

    /// A fresh KV cache for `batch` rows of up to `max_len` positions.
    #[must_use]
    pub fn new_cache(&self, max_len: usize) -> KvCache {
        KvCache::new(self.config.text.num_hidden_layers, max_len)
    }
}

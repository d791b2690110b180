//! The user-facing CLIP: a loaded model with its tokenizer and image processor, embedding batches of
//! images and texts, scoring them against each other, and classifying images zero-shot.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;
use kiln_core::{Embedder, Embedding, EmbeddingInput, ImageSource};
use rayon::prelude::*;

use crate::model::{ClipModel, TokenBatch, l2_normalize};
use crate::preprocess::{PreprocessConfig, RgbImage, Size, decode_image, load_image, preprocess};
use crate::tokenizer::ClipTokenizer;
use crate::{ClipConfig, ClipError, Result};

/// Images per forward pass in [`Clip::embed_images`].
const IMAGE_BATCH: usize = 16;
/// Texts per forward pass in [`Clip::embed_texts`].
const TEXT_BATCH: usize = 64;

/// One label's score in [`Clip::zero_shot`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    /// The label as given.
    pub label: String,
    /// Softmax probability over the labels.
    pub probability: f32,
    /// The logit: `exp(logit_scale)` times the cosine similarity.
    pub logit: f32,
}

/// A CLIP model ready to embed: weights, tokenizer and image processor.
#[derive(Debug)]
pub struct Clip {
    model: ClipModel,
    config: ClipConfig,
    tokenizer: ClipTokenizer,
    preprocess: PreprocessConfig,
    name: String,
}

/// The tokenizer files of a model directory, in the order they are tried.
fn open_tokenizer(dir: &Path) -> Result<ClipTokenizer> {
    let (vocab, merges, tj) = (
        dir.join("vocab.json"),
        dir.join("merges.txt"),
        dir.join("tokenizer.json"),
    );
    if vocab.is_file() && merges.is_file() {
        ClipTokenizer::from_vocab_merges(vocab, merges)
    } else if tj.is_file() {
        ClipTokenizer::from_tokenizer_json(tj)
    } else {
        Err(ClipError::Config {
            path: dir.display().to_string(),
            message: "no tokenizer: expected vocab.json + merges.txt or tokenizer.json".into(),
        })
    }
}

impl Clip {
    /// Opens a Hugging Face CLIP directory: `config.json`, `model.safetensors` (or an index of
    /// shards), `vocab.json` + `merges.txt` or `tokenizer.json`, and `preprocessor_config.json`
    /// (when absent: the standard CLIP processor at the model's image size).
    ///
    /// # Errors
    /// Any file missing or malformed, named in the error.
    pub fn open(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ClipConfig::from_file(dir.join("config.json"))?;
        let files = SafetensorsFiles::open_dir(dir)?;
        let model = config.load(&files, device)?;
        let tokenizer = open_tokenizer(dir)?;
        let pp = dir.join("preprocessor_config.json");
        let preprocess = if pp.is_file() {
            PreprocessConfig::from_file(pp)?
        } else {
            default_preprocess(config.vision_config.image_size)
        };
        let name = dir
            .file_name()
            .map_or_else(|| "clip".into(), |n| n.to_string_lossy().into_owned());
        Self::new(model, config, tokenizer, preprocess, name)
    }

    /// Assembles a CLIP from its parts.
    ///
    /// # Errors
    /// [`ClipError::Config`] when the processor's crop does not produce the model's image size.
    pub fn new(
        model: ClipModel,
        config: ClipConfig,
        tokenizer: ClipTokenizer,
        preprocess: PreprocessConfig,
        name: impl Into<String>,
    ) -> Result<Self> {
        preprocess.validate()?;
        let side = config.vision_config.image_size;
        let (h, w) = preprocess.output_hw(side * 3, side * 4);
        if (h, w) != (side, side) {
            return Err(ClipError::Config {
                path: "preprocessor_config.json".into(),
                message: format!(
                    "the processor produces {h}x{w} images; the vision tower takes {side}x{side}"
                ),
            });
        }
        Ok(Self {
            model,
            config,
            tokenizer,
            preprocess,
            name: name.into(),
        })
    }

    /// Takes the CLIP apart: model, configuration, tokenizer, processor settings and name.
    #[must_use]
    pub fn into_parts(
        self,
    ) -> (
        ClipModel,
        ClipConfig,
        ClipTokenizer,
        PreprocessConfig,
        String,
    ) {
        (
            self.model,
            self.config,
            self.tokenizer,
            self.preprocess,
            self.name,
        )
    }

    /// The model.
    #[must_use]
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The tokenizer.
    #[must_use]
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The image processor settings.
    #[must_use]
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// The pixel tensor of a batch of images, preprocessed in parallel.
    ///
    /// # Shapes
    /// - output: `[images, 3, image, image]`
    ///
    /// # Errors
    /// An empty batch or a preprocessing failure.
    pub fn pixel_values(&self, images: &[RgbImage]) -> Result<Tensor<4>> {
        pixel_values(
            images,
            &self.preprocess,
            self.config.vision_config.image_size,
            &self.model.device(),
        )
    }

    /// Tokenizes texts for the text tower: BOS, tokens, EOS, truncated to the context length,
    /// padded to the longest row.
    ///
    /// # Errors
    /// An empty batch.
    pub fn tokens<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch> {
        tokens(
            &self.tokenizer,
            texts,
            self.config.text_config.max_position_embeddings,
        )
    }

    /// L2-normalised image embeddings, one per image.
    ///
    /// # Errors
    /// An empty batch or a preprocessing failure.
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Embedding>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(IMAGE_BATCH) {
            let feats = self.model.image_features(self.pixel_values(chunk)?)?;
            out.extend(rows(l2_normalize(feats))?);
        }
        Ok(out)
    }

    /// L2-normalised text embeddings, one per text.
    ///
    /// # Errors
    /// An empty batch.
    pub fn embed_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Embedding>> {
        if texts.is_empty() {
            return Err(ClipError::Input("no texts to embed".into()));
        }
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXT_BATCH) {
            let feats = self.model.text_features(&self.tokens(chunk)?)?;
            out.extend(rows(l2_normalize(feats))?);
        }
        Ok(out)
    }

    /// `exp(logit_scale)`, the factor between cosine similarity and logits.
    ///
    /// # Errors
    /// When the value cannot be read back from the device.
    pub fn logit_scale(&self) -> Result<f32> {
        let v = rows(self.model.logit_scale.val().exp().unsqueeze::<2>())?;
        Ok(v[0][0])
    }

    /// `logits_per_image` of normalised embeddings: `exp(logit_scale)` times the cosine
    /// similarity, `[images][texts]`.
    ///
    /// # Errors
    /// Embeddings of different widths.
    pub fn similarity(&self, images: &[Embedding], texts: &[Embedding]) -> Result<Vec<Vec<f32>>> {
        let scale = self.logit_scale()?;
        images
            .iter()
            .map(|i| {
                texts
                    .iter()
                    .map(|t| {
                        if i.len() != t.len() {
                            return Err(ClipError::Input(format!(
                                "embeddings of width {} and {} cannot be compared",
                                i.len(),
                                t.len()
                            )));
                        }
                        let dot: f32 = i.iter().zip(t).map(|(a, b)| a * b).sum();
                        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                        Ok(scale * dot / (norm(i) * norm(t)).max(f32::MIN_POSITIVE))
                    })
                    .collect()
            })
            .collect()
    }

    /// Zero-shot classification: each label is put into `template` (its `{}` replaced by the label)
    /// and the image is scored against every prompt; labels are returned best first.
    ///
    /// # Errors
    /// No labels, a template without `{}`, or an embedding failure.
    pub fn zero_shot<S: AsRef<str>>(
        &self,
        image: &RgbImage,
        labels: &[S],
        template: &str,
    ) -> Result<Vec<LabelScore>> {
        let mut all = self.zero_shot_batch(std::slice::from_ref(image), labels, template)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`Self::zero_shot`] for many images, embedding the label prompts once.
    ///
    /// # Errors
    /// As [`Self::zero_shot`].
    pub fn zero_shot_batch<S: AsRef<str>>(
        &self,
        images: &[RgbImage],
        labels: &[S],
        template: &str,
    ) -> Result<Vec<Vec<LabelScore>>> {
        let prompts = label_prompts(labels, template)?;
        let texts = self.embed_texts(&prompts)?;
        let imgs = self.embed_images(images)?;
        Ok(self
            .similarity(&imgs, &texts)?
            .into_iter()
            .map(|logits| rank_labels(labels, &logits))
            .collect())
    }

    /// Reads an [`ImageSource`]: bytes, a local path, or a `data:` URL (remote URLs are refused:
    /// fetching is the caller's policy).
    ///
    /// # Errors
    /// [`ClipError::Input`] for a remote URL or malformed data URL; decoding errors.
    pub fn read_image(source: &ImageSource) -> Result<RgbImage> {
        match source {
            ImageSource::Bytes { data } => decode_image(data, "<image bytes>"),
            ImageSource::Path { path } => load_image(path),
            ImageSource::Url { url } => {
                let bytes = decode_data_url(url)?;
                decode_image(&bytes, "<data URL>")
            }
        }
    }
}

/// The pixel tensor of a batch of images, preprocessed in parallel with `pp` into `side` x `side`.
///
/// # Shapes
/// - output: `[images, 3, side, side]`
///
/// # Errors
/// An empty batch or a preprocessing failure.
pub fn pixel_values(
    images: &[RgbImage],
    pp: &PreprocessConfig,
    side: usize,
    device: &Device,
) -> Result<Tensor<4>> {
    if images.is_empty() {
        return Err(ClipError::Input("no images to embed".into()));
    }
    let data = images
        .par_iter()
        .map(|img| preprocess(img, pp))
        .collect::<Result<Vec<_>>>()?
        .concat();
    if data.len() != images.len() * 3 * side * side {
        return Err(ClipError::Input(format!(
            "the image processor does not produce 3x{side}x{side} pixel values"
        )));
    }
    Ok(Tensor::from_data(
        TensorData::new(data, [images.len(), 3, side, side]),
        device,
    ))
}

/// Token rows for the text tower: BOS, tokens, EOS, truncated to `context` (EOS kept last),
/// padded with EOS to the longest row and masked.
///
/// # Errors
/// An empty batch.
pub fn tokens<S: AsRef<str>>(
    tokenizer: &ClipTokenizer,
    texts: &[S],
    context: usize,
) -> Result<TokenBatch> {
    let rows = texts
        .iter()
        .map(|t| {
            let mut ids = tokenizer.encode(t.as_ref());
            if ids.len() > context {
                ids.truncate(context.saturating_sub(1));
                ids.push(tokenizer.eos_id());
            }
            ids
        })
        .collect::<Vec<_>>();
    TokenBatch::from_rows(&rows, tokenizer.eos_id())
}

/// The standard CLIP processor at `side`: bicubic resize of the short edge, center crop, OpenAI's
/// mean and std.
#[must_use]
pub fn default_preprocess(side: usize) -> PreprocessConfig {
    PreprocessConfig {
        size: Size::ShortestEdge {
            shortest_edge: side,
        },
        crop_size: Size::HeightWidth {
            height: side,
            width: side,
        },
        ..PreprocessConfig::default()
    }
}

/// Each label put into `template` at `{}`.
///
/// # Errors
/// No labels or a template without `{}`.
pub fn label_prompts<S: AsRef<str>>(labels: &[S], template: &str) -> Result<Vec<String>> {
    if labels.is_empty() {
        return Err(ClipError::Input(
            "zero-shot classification needs labels".into(),
        ));
    }
    if !template.contains("{}") {
        return Err(ClipError::Input(format!(
            "prompt template {template:?} has no `{{}}` where the label goes"
        )));
    }
    Ok(labels
        .iter()
        .map(|l| template.replace("{}", l.as_ref()))
        .collect())
}

/// Softmax over `logits`, labels sorted by probability (ties keep the given order).
#[must_use]
pub fn rank_labels<S: AsRef<str>>(labels: &[S], logits: &[f32]) -> Vec<LabelScore> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut out: Vec<LabelScore> = labels
        .iter()
        .zip(logits.iter().zip(&exp))
        .map(|(label, (&logit, &e))| LabelScore {
            label: label.as_ref().to_string(),
            probability: e / sum,
            logit,
        })
        .collect();
    out.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    out
}

/// The rows of a `[n, d]` tensor.
fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ClipError::Input(format!("reading embeddings back: {e:?}")))?;
    Ok(v.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// The bytes of a base64 `data:` URL.
fn decode_data_url(url: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let rest = url.strip_prefix("data:").ok_or_else(|| {
        ClipError::Input(
            "remote image URLs are not fetched by kiln-clip; pass bytes or a path".into(),
        )
    })?;
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| ClipError::Input("malformed data URL: no `,`".into()))?;
    if !meta.ends_with(";base64") {
        return Err(ClipError::Input(
            "data URL is not base64-encoded (`;base64` missing)".into(),
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| ClipError::Input(format!("malformed base64 in data URL: {e}")))
}

impl Embedder for Clip {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimension(&self) -> usize {
        self.config.projection_dim
    }

    fn supports_images(&self) -> bool {
        true
    }

    fn embed(&self, inputs: &[EmbeddingInput]) -> kiln_core::Result<Vec<Embedding>> {
        let to_core = |e: ClipError| match e {
            ClipError::Input(m) => kiln_core::Error::Unsupported(m),
            other => kiln_core::Error::Model(other.to_string()),
        };
        let mut texts = Vec::new();
        let mut images = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            match input {
                EmbeddingInput::Text(t) => texts.push((i, t.as_str())),
                EmbeddingInput::Image(src) => {
                    images.push((i, Self::read_image(src).map_err(to_core)?))
                }
            }
        }
        let mut out = vec![Vec::new(); inputs.len()];
        if !texts.is_empty() {
            let strs: Vec<&str> = texts.iter().map(|(_, t)| *t).collect();
            for ((i, _), e) in texts.iter().zip(self.embed_texts(&strs).map_err(to_core)?) {
                out[*i] = e;
            }
        }
        if !images.is_empty() {
            let imgs: Vec<RgbImage> = images.iter().map(|(_, im)| im.clone()).collect();
            for ((i, _), e) in images
                .iter()
                .zip(self.embed_images(&imgs).map_err(to_core)?)
            {
                out[*i] = e;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_and_prompts() {
        let r = rank_labels(&["a", "b", "c"], &[1.0, 3.0, 2.0]);
        assert_eq!(r[0].label, "b");
        let total: f32 = r.iter().map(|s| s.probability).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(
            label_prompts(&["cat"], "a photo of a {}.").unwrap(),
            vec!["a photo of a cat."]
        );
        assert!(label_prompts(&["cat"], "a photo").is_err());
        assert!(label_prompts::<&str>(&[], "{}").is_err());
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            decode_data_url("data:image/png;base64,aGk=").unwrap(),
            b"hi"
        );
        assert!(decode_data_url("https://example.com/a.png").is_err());
        assert!(decode_data_url("data:image/png,hi").is_err());
        assert!(decode_data_url("data:image/png;base64,***").is_err());
    }
}

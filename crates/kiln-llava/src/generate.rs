//! [`LlavaGenerator`]: a LLaVA directory ready to chat about images, implementing kiln-core's
//! [`TextGenerator`]. Image parts of chat messages (bytes, local paths from the CLI, `data:` URLs)
//! are preprocessed as the checkpoint's `preprocessor_config.json` says, the chat template places
//! an image token per image, each is expanded to the tower's feature count, and decoding runs over
//! the language model's KV cache. Remote and `file:` URLs are refused: fetching is the caller's
//! policy.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use kiln_clip::clip::default_preprocess;
use kiln_clip::{PreprocessConfig, RgbImage};
use kiln_core::{
    CancelToken, ChatMessage, ContentPart, FinishReason, GenerationOutput, GenerationRequest,
    HfTokenizer, ImageSource, IncrementalDecoder, Prompt, ResponseFormat, StreamEvent,
    TextGenerator, Timings, Tokenizer, Usage,
};
use kiln_llama::sampling::Sampler;
use kiln_llama::{ChatTemplate, KvCache, NoAdapter, StopMatcher};

use crate::model::LlavaModel;
use crate::{Error, Result};

/// A LLaVA model with its tokenizer, chat template and image processor.
pub struct LlavaGenerator {
    model: LlavaModel,
    tokenizer: HfTokenizer,
    template: Option<ChatTemplate>,
    preprocess: PreprocessConfig,
    bos: Option<String>,
    eos: Option<String>,
    name: String,
}

impl std::fmt::Debug for LlavaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlavaGenerator")
            .field("name", &self.name)
            .finish()
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A special token of `tokenizer_config.json`, given as a string or as `{"content": ...}`.
fn special(cfg: &serde_json::Value, key: &str) -> Option<String> {
    let v = cfg.get(key)?;
    v.as_str()
        .map(str::to_string)
        .or_else(|| v.get("content")?.as_str().map(str::to_string))
}

/// The RGB image of a chat image part.
fn read_image(source: &ImageSource) -> Result<RgbImage> {
    match source {
        ImageSource::Url { url } if !url.starts_with("data:") => Err(Error::Input(format!(
            "image URL {}: only data: URLs are accepted (remote and file URLs are not fetched)",
            url.chars().take(40).collect::<String>()
        ))),
        other => Ok(kiln_clip::Clip::read_image(other)?),
    }
}

impl LlavaGenerator {
    /// Opens a Hugging Face LLaVA directory: the weights and config ([`LlavaModel::open`]),
    /// `tokenizer.json`, the chat template (`chat_template.jinja`, `chat_template.json` or
    /// `tokenizer_config.json`'s `chat_template`) and `preprocessor_config.json` (when absent, the
    /// standard CLIP processor at the tower's image size).
    ///
    /// # Errors
    /// Any file missing or malformed, named in the error.
    pub fn open(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let model = LlavaModel::open(dir, device)?;
        let tokenizer =
            HfTokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| Error::Config {
                path: dir.join("tokenizer.json").display().to_string(),
                message: e.to_string(),
            })?;
        let tc = read_json(&dir.join("tokenizer_config.json")).unwrap_or_default();
        let source = std::fs::read_to_string(dir.join("chat_template.jinja"))
            .ok()
            .or_else(|| {
                read_json(&dir.join("chat_template.json"))?
                    .get("chat_template")?
                    .as_str()
                    .map(str::to_string)
            })
            .or_else(|| tc.get("chat_template")?.as_str().map(str::to_string));
        let template = match source {
            Some(s) => Some(ChatTemplate::new(s).map_err(|e| Error::Config {
                path: dir.display().to_string(),
                message: format!("chat template: {e}"),
            })?),
            None => None,
        };
        let pp = dir.join("preprocessor_config.json");
        let preprocess = if pp.is_file() {
            PreprocessConfig::from_file(pp)?
        } else {
            default_preprocess(model.config.vision.image_size)
        };
        let side = model.config.vision.image_size;
        if preprocess.output_hw(side * 2, side * 3) != (side, side) {
            return Err(Error::Config {
                path: dir.join("preprocessor_config.json").display().to_string(),
                message: format!("the processor does not produce {side}x{side} images"),
            });
        }
        let name = dir
            .file_name()
            .map_or_else(|| "llava".into(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            model,
            tokenizer,
            template,
            preprocess,
            bos: special(&tc, "bos_token"),
            eos: special(&tc, "eos_token"),
            name,
        })
    }

    /// The network.
    #[must_use]
    pub fn model(&self) -> &LlavaModel {
        &self.model
    }

    /// The prompt's token ids (each image token expanded to the image's feature count) and the
    /// pixel tensor of its images, in order.
    ///
    /// # Errors
    /// Unreadable images, a template that places a different number of image tokens than there
    /// are images, or a text-only model without a chat template.
    pub fn encode(&self, prompt: &Prompt) -> Result<(Vec<u32>, Option<Tensor<4>>)> {
        let (text, images) = match prompt {
            Prompt::Text(t) => (t.clone(), Vec::new()),
            Prompt::Chat(messages) => {
                let images = messages
                    .iter()
                    .flat_map(|m| m.content.iter())
                    .filter_map(|p| match p {
                        ContentPart::Image { source } => Some(read_image(source)),
                        ContentPart::Text { .. } => None,
                    })
                    .collect::<Result<Vec<_>>>()?;
                (self.render(messages, true)?, images)
            }
            Prompt::Tokens(_) => {
                return Err(Error::Input(
                    "LLaVA prompts are text or chat messages, not token ids".into(),
                ));
            }
        };
        let ids = self
            .tokenizer
            .encode(&text, true)
            .map_err(|e| Error::Input(e.to_string()))?;
        let image_token = self.model.config.image_token_id;
        let placed = ids.iter().filter(|&&t| t == image_token).count();
        if placed != images.len() {
            return Err(Error::Input(format!(
                "the prompt places {placed} image token(s) for {} image(s)",
                images.len()
            )));
        }
        let per = self.model.config.tokens_per_image();
        let mut expanded = Vec::with_capacity(ids.len() + images.len() * per);
        for t in ids {
            if t == image_token {
                expanded.extend(std::iter::repeat_n(t, per));
            } else {
                expanded.push(t);
            }
        }
        if images.is_empty() {
            return Ok((expanded, None));
        }
        let side = self.model.config.vision.image_size;
        let device = self.model.language.device().clone();
        let pixels = kiln_clip::clip::pixel_values(&images, &self.preprocess, side, &device)?;
        Ok((expanded, Some(pixels)))
    }

    fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let t = self.template.as_ref().ok_or_else(|| Error::Config {
            path: self.name.clone(),
            message: "the model ships no chat template".into(),
        })?;
        t.render_chat(
            messages,
            add_generation_prompt,
            self.bos.as_deref(),
            self.eos.as_deref(),
        )
        .map_err(|e| Error::Input(format!("chat template: {e}")))
    }

    /// The logits of the last position, `[vocab]`.
    fn last(logits: Tensor<3>) -> Result<Vec<f32>> {
        let [_, t, v] = logits.dims();
        logits
            .slice([0..1, t - 1..t, 0..v])
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Input(format!("reading logits: {e:?}")))
    }
}

fn core_err(e: Error) -> kiln_core::Error {
    match e {
        Error::Input(m) => kiln_core::Error::Unsupported(m),
        other => kiln_core::Error::Model(other.to_string()),
    }
}

impl TextGenerator for LlavaGenerator {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn context_length(&self) -> usize {
        self.model.config.text.max_position_embeddings
    }

    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> kiln_core::Result<String> {
        self.render(messages, add_generation_prompt)
            .map_err(core_err)
    }

    fn generate_stream(
        &self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<GenerationOutput> {
        request.sampling.validate()?;
        if !request.adapters.is_empty() {
            return Err(kiln_core::Error::Unsupported(
                "LoRA adapters are not supported by LLaVA models yet".into(),
            ));
        }
        if request.logprobs.is_some() || !matches!(request.response_format, ResponseFormat::Text) {
            return Err(kiln_core::Error::Unsupported(
                "log-probabilities and structured output are not supported by LLaVA models yet"
                    .into(),
            ));
        }
        let (ids, pixels) = self.encode(&request.prompt).map_err(core_err)?;
        let limit = self.context_length();
        let needed = ids.len() + request.max_tokens;
        if needed > limit {
            return Err(kiln_core::Error::ContextLength { needed, limit });
        }
        let language = &self.model.language;
        let mut eos: Vec<u32> = if request.stop.ignore_eos {
            Vec::new()
        } else {
            language.config.eos_token_ids.clone()
        };
        eos.extend(&request.stop.stop_token_ids);
        let mut sampler = Sampler::new(request.sampling.clone());
        let mut stop = StopMatcher::new(&request.stop.stop_strings);
        let mut decoder = IncrementalDecoder::with_context(&ids[ids.len().saturating_sub(4)..]);
        let mut context = ids.clone();
        let mut generated: Vec<u32> = Vec::new();
        let mut finish = FinishReason::Length;
        let t0 = Instant::now();
        let mut cache = KvCache::new(language.config.num_hidden_layers, needed.max(1));
        let mut logits = if request.max_tokens > 0 {
            let l = self
                .model
                .forward(&ids, 1, pixels, &mut cache)
                .map_err(core_err)?;
            Self::last(l).map_err(core_err)?
        } else {
            Vec::new()
        };
        let prefill = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut steps = 0usize;
        while generated.len() < request.max_tokens {
            if cancel.is_cancelled() {
                finish = FinishReason::Cancelled;
                break;
            }
            let id = sampler.sample(&mut logits, &context, &generated);
            if eos.contains(&id) {
                finish = FinishReason::Stop;
                break;
            }
            generated.push(id);
            context.push(id);
            let piece = decoder.push(&self.tokenizer, id)?;
            let (ready, hit) = stop.push(&piece);
            on_event(StreamEvent::Token {
                id,
                text: &ready,
                logprob: None,
            });
            if hit {
                finish = FinishReason::Stop;
                break;
            }
            if generated.len() >= request.max_tokens {
                break;
            }
            let x = language.embed(language.ids_tensor(&[id], 1));
            let h = language
                .hidden_states_from_embeds(x, &mut cache, &NoAdapter)
                .map_err(|e| kiln_core::Error::Model(e.to_string()))?;
            logits = Self::last(language.logits(h, &NoAdapter)).map_err(core_err)?;
            steps += 1;
        }
        if finish != FinishReason::Stop || !stop.hit() {
            let tail = decoder.flush(&self.tokenizer)?;
            let (ready, _) = stop.push(&tail);
            let text = format!("{ready}{}", stop.finish());
            if !text.is_empty() {
                on_event(StreamEvent::Token {
                    id: generated.last().copied().unwrap_or(0),
                    text: &text,
                    logprob: None,
                });
            }
        }
        let n = generated.len();
        Ok(GenerationOutput {
            text: stop.text().to_string(),
            token_ids: generated,
            prompt_ids: ids.clone(),
            finish_reason: finish,
            usage: Usage {
                prompt_tokens: ids.len(),
                completion_tokens: n,
                total_tokens: ids.len() + n,
            },
            timings: Timings::from_counts(ids.len(), prefill, steps, t1.elapsed().as_secs_f64()),
            logprobs: None,
        })
    }
}

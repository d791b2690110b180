//! [`LlamaGenerator`]: a loaded model with its tokenizer and chat template, implementing kiln-core's
//! [`TextGenerator`], plus scoring (log-probabilities and perplexity).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use kiln_backend::Device;
use kiln_core::{
    AdapterChoice, CancelToken, ChatMessage, GenerationOutput, GenerationRequest, HfTokenizer,
    Prompt, StreamEvent, TextGenerator, TokenLogprob, TokenVocabulary, Tokenizer,
};

use crate::config::LlamaConfig;
use crate::cpu::CpuLlama;
use crate::engine::EngineCache;
use crate::engine::{Engine, EngineKind, LoadOptions, ModelCache, Target};
use crate::gguf::{GgufFile, tokenizer_from_gguf};
use crate::load::{GgufWeights, HfDirectory, Nf4Rounded, config_from_gguf};
use crate::lora::{AdapterMix, LlamaAdapter};
use crate::model::Llama;
use crate::prefix::{PrefixCache, PrefixCacheStats};
use crate::sampling::log_softmax;
use crate::sequence::Sequence;

/// Prompts whose keys and values the prefix cache keeps.
const PREFIX_ENTRIES: usize = 8;
use crate::special::SpecialTokens;
use crate::{Error, Result};
use kiln_lora::LoraAdapter;
use kiln_prompt::ChatTemplate;

/// A Llama-family model ready to generate: weights, tokenizer, special tokens, chat template.
pub struct LlamaGenerator {
    name: String,
    engine: Engine,
    tokenizer: HfTokenizer,
    special: SpecialTokens,
    chat_template: Option<ChatTemplate>,
    adapters: RwLock<BTreeMap<String, Arc<LlamaAdapter>>>,
    /// Token bytes for constrained decoding, computed on first use.
    vocab: OnceLock<Arc<TokenVocabulary>>,
    /// Keys and values of recent prompts, reused by prompts with the same beginning.
    prefix: Mutex<PrefixCache>,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("name", &self.name)
            .field("config", self.engine.config())
            .finish()
    }
}

/// Compiles a checkpoint's chat template with kiln-prompt (transformers' Jinja environment).
fn compile_template(source: &str) -> Result<ChatTemplate> {
    ChatTemplate::new(source).map_err(|e| Error::ChatTemplate(e.to_string()))
}

/// Whether `path` starts with the GGUF magic.
fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

impl LlamaGenerator {
    /// Opens a Hugging Face directory or a `.gguf` file on the burn engine and the given device
    /// (weights dequantized to f32). [`LlamaGenerator::load`] chooses the engine, and on the CPU defaults
    /// to Kiln's kernels on the stored quantized weights.
    ///
    /// # Errors
    /// Errors naming the file and the problem: missing files, malformed formats, missing or
    /// mis-shaped tensors, unsupported architectures or tensor types.
    pub fn open(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::open_target(path.as_ref(), &Target::Burn(device), false)
    }

    /// Opens a model on burn as QLoRA's base: the decoder projections of an HF checkpoint are
    /// rounded to NF4 (bitsandbytes-exact, block 64, double quantization); a GGUF file keeps its
    /// block format. On the CPU (Flex) they stay in that format ([`Llama::load_frozen`]): a
    /// training step multiplies on the blocks and never holds the base in f32. On GPU backends burn
    /// holds the dequantized values.
    ///
    /// # Errors
    /// As [`LlamaGenerator::open`].
    pub fn open_qlora(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::open_target(path.as_ref(), &Target::BurnFrozen(device), true)
    }

    /// Opens a model with a device and engine choice: [`EngineKind::Auto`] runs Kiln's CPU kernels on
    /// the CPU (weights kept quantized) and burn on GPUs.
    ///
    /// # Errors
    /// As [`LlamaGenerator::open`], and a device whose backend is not compiled in.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let cpu = match options.engine {
            EngineKind::Auto => options.device.is_cpu(),
            EngineKind::Cpu => {
                if !options.device.is_cpu() {
                    return Err(Error::Invalid(format!(
                        "the cpu engine runs on the CPU, not on `{}`",
                        options.device
                    )));
                }
                true
            }
            EngineKind::Burn => false,
        };
        if cpu {
            let mut model = Self::open_target(path.as_ref(), &Target::Cpu, options.nf4)?;
            if let Engine::Cpu(m) = &mut model.engine {
                m.set_activations(options.activations);
            }
            Ok(model)
        } else {
            let device = options.device.device()?;
            Self::open_target(path.as_ref(), &Target::Burn(&device), options.nf4)
        }
    }

    fn open_target(path: &Path, target: &Target<'_>, nf4: bool) -> Result<Self> {
        if path.is_dir() {
            return Self::open_hf_dir(path, target, nf4);
        }
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        let ext_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if ext_gguf || is_gguf(path) {
            return Self::open_gguf(path, target);
        }
        Err(Error::NotAModel {
            path: path.display().to_string(),
        })
    }

    fn open_hf_dir(dir: &Path, target: &Target<'_>, nf4: bool) -> Result<Self> {
        let hf = HfDirectory::open(dir)?;
        let engine = if nf4 {
            target.build(hf.config.clone(), &Nf4Rounded::new(&hf.weights))?
        } else {
            target.build(hf.config.clone(), &hf.weights)?
        };
        let chat_template = hf
            .special
            .chat_template
            .as_deref()
            .map(compile_template)
            .transpose()?;
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            name,
            engine,
            tokenizer: hf.tokenizer,
            special: hf.special,
            chat_template,
            adapters: RwLock::default(),
            vocab: OnceLock::new(),
            prefix: Mutex::new(PrefixCache::new(PREFIX_ENTRIES)),
        })
    }

    fn open_gguf(path: &Path, target: &Target<'_>) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = config_from_gguf(&file)?;
        let (tok, info) = tokenizer_from_gguf(&file)?;
        let engine = target.build(config.clone(), &GgufWeights::new(&file, &config))?;
        let chat_template = info
            .chat_template
            .as_deref()
            .map(compile_template)
            .transpose()?;
        let name = file
            .opt_str("general.name")?
            .map(str::to_string)
            .unwrap_or_else(|| {
                path.file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
            });
        let special = SpecialTokens {
            bos_token_id: config.bos_token_id,
            eos_token_ids: config.eos_token_ids.clone(),
            bos_token: info.bos_token.clone(),
            eos_token: info.eos_token.clone(),
            chat_template: info.chat_template.clone(),
        };
        Ok(Self {
            name,
            engine,
            tokenizer: HfTokenizer::new(tok),
            special,
            chat_template,
            adapters: RwLock::default(),
            vocab: OnceLock::new(),
            prefix: Mutex::new(PrefixCache::new(PREFIX_ENTRIES)),
        })
    }

    /// The network on burn, when that engine runs it.
    #[must_use]
    pub fn model(&self) -> Option<&Llama> {
        match &self.engine {
            Engine::Burn(m) => Some(m),
            Engine::Cpu(_) => None,
        }
    }

    /// The network on Kiln's CPU kernels, when that engine runs it.
    #[must_use]
    pub fn cpu_model(&self) -> Option<&CpuLlama> {
        match &self.engine {
            Engine::Cpu(m) => Some(m),
            Engine::Burn(_) => None,
        }
    }

    /// A fresh KV cache for [`LlamaGenerator::forward_last`].
    #[must_use]
    pub fn new_cache(&self) -> ModelCache {
        ModelCache(self.engine.new_cache())
    }

    /// Runs `ids` after the cached positions and returns the logits of the last one (`[vocab]`).
    ///
    /// # Errors
    /// Ids outside the vocabulary or a context overflow.
    pub fn forward_last(&self, ids: &[u32], cache: &mut ModelCache) -> Result<Vec<f32>> {
        self.forward_last_with(ids, cache, &AdapterMix::none())
    }

    /// [`LlamaGenerator::forward_last`] with LoRA adapters (see [`LlamaGenerator::mix`]). A cache
    /// filled under one mix must not be continued under another.
    ///
    /// # Errors
    /// As [`LlamaGenerator::forward_last`].
    pub fn forward_last_with(
        &self,
        ids: &[u32],
        cache: &mut ModelCache,
        mix: &AdapterMix,
    ) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        self.engine.last_logits(ids, &mut cache.0, mix)
    }

    /// Logits of every position of `ids` from an empty cache (`[ids.len() * vocab]`).
    ///
    /// # Errors
    /// Ids outside the vocabulary or a context overflow.
    pub fn forward_all(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.forward_all_with(ids, &AdapterMix::none())
    }

    /// [`LlamaGenerator::forward_all`] with LoRA adapters.
    ///
    /// # Errors
    /// As [`LlamaGenerator::forward_all`].
    pub fn forward_all_with(&self, ids: &[u32], mix: &AdapterMix) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        self.engine.all_logits(ids, mix)
    }

    /// Registers a LoRA adapter under its name (replacing one of the same name), after checking
    /// it fits this model. The base weights are shared by every adapter; requests choose
    /// adapters by name.
    ///
    /// # Errors
    /// [`Error::Lora`] naming the module that does not fit.
    pub fn add_adapter(&self, adapter: LoraAdapter) -> Result<()> {
        let name = adapter.name.clone();
        let prepared =
            LlamaAdapter::new(Arc::new(adapter), self.config(), self.engine.burn_device())?;
        self.adapters
            .write()
            .map_err(|_| Error::Invalid("adapter registry poisoned".into()))?
            .insert(name, Arc::new(prepared));
        // Cached keys and values computed with an adapter of this name are stale now.
        if let Ok(mut p) = self.prefix.lock() {
            p.clear();
        }
        Ok(())
    }

    /// Loads a PEFT adapter directory and registers it under `name`.
    ///
    /// # Errors
    /// As [`LoraAdapter::load`] and [`LlamaGenerator::add_adapter`].
    pub fn load_adapter(&self, name: &str, dir: impl AsRef<Path>) -> Result<()> {
        let mut adapter = LoraAdapter::load(dir)?;
        adapter.name = name.to_string();
        self.add_adapter(adapter)
    }

    /// Unregisters an adapter; returns whether it was there.
    pub fn remove_adapter(&self, name: &str) -> bool {
        if let Ok(mut p) = self.prefix.lock() {
            p.clear();
        }
        self.adapters
            .write()
            .map(|mut m| m.remove(name).is_some())
            .unwrap_or(false)
    }

    /// Names of the registered adapters.
    #[must_use]
    pub fn adapter_names(&self) -> Vec<String> {
        self.adapters
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The registered adapters `choices` name, with their weights.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a name that is not registered, or a non-finite weight.
    pub fn mix(&self, choices: &[AdapterChoice]) -> Result<AdapterMix> {
        let map = self
            .adapters
            .read()
            .map_err(|_| Error::Invalid("adapter registry poisoned".into()))?;
        let mut out = Vec::with_capacity(choices.len());
        for c in choices {
            let a = map.get(&c.name).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown adapter `{}` (loaded: {:?})",
                    c.name,
                    map.keys().collect::<Vec<_>>()
                ))
            })?;
            if !c.weight.is_finite() {
                return Err(Error::Invalid(format!(
                    "adapter `{}`: weight {} is not finite",
                    c.name, c.weight
                )));
            }
            out.push((Arc::clone(a), c.weight));
        }
        Ok(AdapterMix(out))
    }

    /// The model configuration.
    #[must_use]
    pub fn config(&self) -> &LlamaConfig {
        self.engine.config()
    }

    /// The tokenizer.
    #[must_use]
    pub fn tokenizer(&self) -> &HfTokenizer {
        &self.tokenizer
    }

    /// The bytes of every token, for logits processors (computed once).
    #[must_use]
    pub fn token_vocabulary(&self) -> Arc<TokenVocabulary> {
        self.vocab
            .get_or_init(|| {
                Arc::new(TokenVocabulary::from_hf(
                    &self.tokenizer,
                    &self.special.eos_token_ids,
                ))
            })
            .clone()
    }

    /// Special tokens and chat template.
    #[must_use]
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Token ids of a prompt: raw text is encoded with the tokenizer's special tokens (BOS), a chat is
    /// rendered through the chat template and encoded without adding any (the template has them).
    ///
    /// # Errors
    /// Template or tokenizer errors, an empty prompt, or ids outside the vocabulary.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let ids = match prompt {
            Prompt::Text(t) => self.tokenizer.encode(t, true)?,
            Prompt::Chat(messages) => {
                let text = self.apply_template(messages, true)?;
                self.tokenizer.encode(&text, false)?
            }
            Prompt::Tokens(ids) => ids.clone(),
        };
        let ids = if ids.is_empty() {
            match self.special.bos_token_id {
                Some(bos) => vec![bos],
                None => {
                    return Err(Error::Invalid(
                        "the prompt is empty and the model has no BOS token".into(),
                    ));
                }
            }
        } else {
            ids
        };
        self.check_ids(&ids)?;
        Ok(ids)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let v = self.config().vocab_size;
        match ids.iter().find(|&&i| i as usize >= v) {
            Some(bad) => Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {v})"
            ))),
            None => Ok(()),
        }
    }

    fn apply_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let t = self.chat_template.as_ref().ok_or_else(|| {
            Error::ChatTemplate(format!("model `{}` ships no chat template", self.name))
        })?;
        if messages.iter().any(ChatMessage::has_images) {
            return Err(Error::Invalid(
                "this model takes text only; a message has an image part".into(),
            ));
        }
        t.render_chat(
            messages,
            add_generation_prompt,
            self.special.bos_token.as_deref(),
            self.special.eos_token.as_deref(),
        )
        .map_err(|e| Error::ChatTemplate(e.to_string()))
    }

    /// Log-probabilities of a sequence under the model: `out[i] = log p(ids[i+1] | ids[..=i])`.
    ///
    /// # Errors
    /// Fewer than two ids, ids outside the vocabulary, or a sequence longer than the context.
    pub fn score_ids(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.score_ids_with(ids, &AdapterMix::none())
    }

    /// [`LlamaGenerator::score_ids`] with LoRA adapters.
    ///
    /// # Errors
    /// As [`LlamaGenerator::score_ids`].
    pub fn score_ids_with(&self, ids: &[u32], mix: &AdapterMix) -> Result<Vec<f32>> {
        if ids.len() < 2 {
            return Err(Error::Invalid("scoring needs at least two tokens".into()));
        }
        self.check_ids(ids)?;
        let data = self.engine.all_logits(ids, mix)?;
        let v = self.config().vocab_size;
        Ok((0..ids.len() - 1)
            .map(|i| {
                let row = &data[i * v..(i + 1) * v];
                log_softmax(row)[ids[i + 1] as usize]
            })
            .collect())
    }

    /// Tokenizes `text` (with BOS when the tokenizer adds it) and scores it.
    ///
    /// # Errors
    /// As [`LlamaGenerator::score_ids`].
    pub fn score_text(&self, text: &str) -> Result<(Vec<u32>, Vec<f32>)> {
        let ids = self.tokenizer.encode(text, true)?;
        let lp = self.score_ids(&ids)?;
        Ok((ids, lp))
    }

    fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    /// The engine that computes forward passes.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs a sequence's prompt, reusing the cached keys and values of an earlier prompt with the
    /// same beginning (and the same adapters); returns the cache and the last position's logits.
    pub(crate) fn prefill(&self, seq: &Sequence<'_>) -> Result<(EngineCache, Vec<f32>)> {
        let ids = &seq.prompt_ids;
        let key = seq.adapter_key();
        let hit = self.prefix.lock().map_or(None, |mut p| p.lookup(ids, &key));
        let mut cache = hit.unwrap_or_else(|| self.engine.new_cache());
        let done = cache.len();
        let logits = self
            .engine
            .last_logits(&ids[done..], &mut cache, &seq.mix)?;
        if let Ok(mut p) = self.prefix.lock() {
            p.insert(ids, &key, &cache);
        }
        Ok((cache, logits))
    }

    /// How much the prefix cache has saved so far.
    #[must_use]
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.prefix.lock().map(|p| p.stats).unwrap_or_default()
    }

    pub(crate) fn logprob_entry(&self, id: u32, logits: &[f32], top: usize) -> TokenLogprob {
        let lp = log_softmax(logits);
        let mut order: Vec<u32> = (0..lp.len() as u32).collect();
        let k = top.min(order.len());
        if k > 0 {
            order.select_nth_unstable_by(k - 1, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
            order.truncate(k);
            order.sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
        } else {
            order.clear();
        }
        TokenLogprob {
            id,
            token: self.token_text(id),
            logprob: lp[id as usize],
            top: order
                .into_iter()
                .map(|t| (t, self.token_text(t), lp[t as usize]))
                .collect(),
        }
    }
}

/// Perplexity from per-token log-probabilities: `exp(-mean(logprobs))`.
#[must_use]
pub fn perplexity(logprobs: &[f32]) -> f64 {
    if logprobs.is_empty() {
        return f64::NAN;
    }
    let mean = logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / logprobs.len() as f64;
    (-mean).exp()
}

impl TextGenerator for LlamaGenerator {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn context_length(&self) -> usize {
        self.config().max_position_embeddings
    }

    fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> kiln_core::Result<String> {
        Ok(self.apply_template(messages, add_generation_prompt)?)
    }

    fn generate_stream(
        &self,
        request: &GenerationRequest,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(StreamEvent<'_>),
    ) -> kiln_core::Result<GenerationOutput> {
        let mut seq = Sequence::new(self, request)?;
        if !seq.wants_tokens() {
            return seq.finish(on_event);
        }
        let t0 = Instant::now();
        let (mut cache, mut logits) = self.prefill(&seq)?;
        seq.prefilled(t0.elapsed().as_secs_f64());
        loop {
            if cancel.is_cancelled() {
                seq.cancel();
                break;
            }
            match seq.accept(&mut logits, on_event)? {
                Some(id) => {
                    logits = self.engine.last_logits(&[id], &mut cache, &seq.mix)?;
                    seq.decode_steps += 1;
                }
                None => break,
            }
        }
        seq.finish(on_event)
    }
}

//! [`CpuLlama`]: the decoder on the CPU kernels, and its [`CpuCache`].

use half::f16;
use std::sync::Mutex;

use kiln_backend::kernels::QuantMatrix;

use super::Activations;
use super::pass::{Mixes, PassSpec, Slot, Stacked, Work};

use crate::config::{LlamaConfig, rope_inv_freq};
use crate::load::WeightSource;
use crate::lora::AdapterMix;
use crate::{Error, Result};

/// One decoder layer's weights.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub(super) attn_norm: Vec<f32>,
    /// q, k and v projections (one fused matrix when their formats agree).
    pub(super) qkv: Stacked,
    pub(super) o: QuantMatrix,
    pub(super) q_bias: Option<Vec<f32>>,
    pub(super) k_bias: Option<Vec<f32>>,
    pub(super) v_bias: Option<Vec<f32>>,
    pub(super) o_bias: Option<Vec<f32>>,
    pub(super) ffn_norm: Vec<f32>,
    /// gate and up projections (fused when their formats agree).
    pub(super) gate_up: Stacked,
    pub(super) down: QuantMatrix,
}

/// Intermediate values of a forward pass shown to [`CpuLlama::forward_probed`]'s probe, for every
/// new position (row-major, one row per position).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Probe<'a> {
    /// The attention output of every query head before `o_proj` (`[t, heads * head_dim]`).
    Attention {
        /// The layer.
        layer: usize,
        /// The values.
        heads: &'a [f32],
    },
    /// The MLP's hidden activations `silu(gate) * up` before `down_proj` (`[t, intermediate]`).
    Mlp {
        /// The layer.
        layer: usize,
        /// The values.
        hidden: &'a [f32],
    },
}

/// The work buffers of [`CpuLlama::decode_batch`], reused across steps.
#[derive(Debug, Clone, Default)]
pub struct BatchWork {
    work: Work,
}

impl BatchWork {
    /// The logits buffer, for engines that fill it themselves.
    pub(crate) fn logits_mut(&mut self) -> &mut Vec<f32> {
        &mut self.work.logits
    }
}

/// A Llama model on the CPU kernels.
#[derive(Debug, Clone)]
pub struct CpuLlama {
    /// The configuration.
    pub config: LlamaConfig,
    pub(super) embed: QuantMatrix,
    pub(super) lm_head: QuantMatrix,
    pub(super) layers: Vec<Layer>,
    pub(super) norm: Vec<f32>,
    pub(super) cos: Vec<f32>,
    pub(super) sin: Vec<f32>,
    pub(super) activations: Activations,
}

/// The keys and values of every layer of a cache: f32, or f16 for half the memory and the memory
/// traffic of attention (one precision for both).
#[derive(Debug, Clone)]
pub(super) enum KvStore {
    F32 { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    F16 { k: Vec<Vec<f16>>, v: Vec<Vec<f16>> },
}

impl KvStore {
    /// Empty keys and values for `layers` layers, in the cache precision of `activations`.
    fn new(activations: Activations, layers: usize) -> Self {
        match activations {
            Activations::Exact => KvStore::F32 {
                k: vec![Vec::new(); layers],
                v: vec![Vec::new(); layers],
            },
            Activations::Int8 => KvStore::F16 {
                k: vec![Vec::new(); layers],
                v: vec![Vec::new(); layers],
            },
        }
    }

    /// Grows every layer to hold `needed` positions of `width` elements (at least doubling, up to
    /// `max_len` positions, so that a decode loop rarely reallocates).
    fn reserve(&mut self, needed: usize, width: usize, max_len: usize) {
        fn grow<T: Clone>(
            layers: &mut [Vec<T>],
            zero: T,
            needed: usize,
            width: usize,
            max_len: usize,
        ) {
            for c in layers {
                if c.len() < needed * width {
                    let to = (needed * width).max((c.len() * 2).min(max_len * width));
                    c.resize(to, zero.clone());
                }
            }
        }
        match self {
            KvStore::F32 { k, v } => {
                grow(k, 0.0, needed, width, max_len);
                grow(v, 0.0, needed, width, max_len);
            }
            KvStore::F16 { k, v } => {
                grow(k, f16::ZERO, needed, width, max_len);
                grow(v, f16::ZERO, needed, width, max_len);
            }
        }
    }
}

/// Keys and values of every layer, preallocated for the whole context, plus the work buffers a
/// forward pass reuses (the decode loop allocates nothing once they have grown).
#[derive(Debug, Clone)]
pub struct CpuCache {
    kv: KvStore,
    len: usize,
    max_len: usize,
    work: Work,
}

impl CpuCache {
    /// Positions cached so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Grows every layer's keys and values to hold `needed` positions of `width` elements (at least
    /// doubling, up to the capacity, so that a decode loop rarely reallocates).
    fn reserve(&mut self, needed: usize, width: usize) {
        self.kv.reserve(needed, width, self.max_len);
    }

    /// Whether keys and values are stored as f16 (the cache of [`Activations::Int8`], as
    /// llama.cpp keeps them) rather than f32.
    #[must_use]
    pub fn is_f16(&self) -> bool {
        matches!(self.kv, KvStore::F16 { .. })
    }

    /// A copy of the cached keys and values (without the work buffers), for reuse by another
    /// sequence that starts with the same tokens.
    #[must_use]
    pub fn snapshot(&self) -> CpuCache {
        CpuCache {
            kv: self.kv.clone(),
            len: self.len,
            max_len: self.max_len,
            work: Work::default(),
        }
    }
}

impl CpuLlama {
    /// Loads the weights in their stored formats.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors, or formats the kernels cannot take.
    pub fn load(config: LlamaConfig, source: &dyn WeightSource) -> Result<Self> {
        let c = &config;
        let (hd, h, kvh, d, ff) = (
            c.head_dim,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.hidden_size,
            c.intermediate_size,
        );
        let vec = |name: &str, n: usize| source.tensor(name, &[n]);
        let bias = |name: String, n: usize, on: bool| {
            if on {
                vec(&name, n).map(Some)
            } else {
                Ok(None)
            }
        };
        let embed = source.matrix("model.embed_tokens.weight", c.vocab_size, d)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let ab = c.attention_bias;
            if c.mlp_bias {
                return Err(Error::Invalid(format!(
                    "{}: the CPU engine does not implement MLP biases; use the burn engine",
                    source.path()
                )));
            }
            layers.push(Layer {
                attn_norm: vec(&format!("{p}.input_layernorm.weight"), d)?,
                qkv: Stacked::new(vec![
                    source.matrix(&format!("{p}.self_attn.q_proj.weight"), h * hd, d)?,
                    source.matrix(&format!("{p}.self_attn.k_proj.weight"), kvh * hd, d)?,
                    source.matrix(&format!("{p}.self_attn.v_proj.weight"), kvh * hd, d)?,
                ])?,
                o: source.matrix(&format!("{p}.self_attn.o_proj.weight"), d, h * hd)?,
                q_bias: bias(format!("{p}.self_attn.q_proj.bias"), h * hd, ab)?,
                k_bias: bias(format!("{p}.self_attn.k_proj.bias"), kvh * hd, ab)?,
                v_bias: bias(format!("{p}.self_attn.v_proj.bias"), kvh * hd, ab)?,
                o_bias: bias(format!("{p}.self_attn.o_proj.bias"), d, ab)?,
                ffn_norm: vec(&format!("{p}.post_attention_layernorm.weight"), d)?,
                gate_up: Stacked::new(vec![
                    source.matrix(&format!("{p}.mlp.gate_proj.weight"), ff, d)?,
                    source.matrix(&format!("{p}.mlp.up_proj.weight"), ff, d)?,
                ])?,
                down: source.matrix(&format!("{p}.mlp.down_proj.weight"), d, ff)?,
            });
        }
        let norm = vec("model.norm.weight", d)?;
        let lm_head = if c.tie_word_embeddings || !source.contains("lm_head.weight") {
            embed.clone()
        } else {
            source.matrix("lm_head.weight", c.vocab_size, d)?
        };
        let inv = rope_inv_freq(c);
        let n = c.max_position_embeddings;
        let mut cos = Vec::with_capacity(n * inv.len());
        let mut sin = Vec::with_capacity(n * inv.len());
        for pos in 0..n {
            for f in &inv {
                let a = pos as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Self {
            config,
            embed,
            lm_head,
            layers,
            norm,
            cos,
            sin,
            activations: Activations::Exact,
        })
    }

    /// Bytes of weights one decode step reads: every layer's matrices and the output projection
    /// in their stored formats, the norms, and one embedding row (the keys and values of the
    /// cache come on top). A decode step cannot run faster than memory delivers these.
    #[must_use]
    pub fn weight_bytes_per_token(&self) -> usize {
        let f32s = |v: &[f32]| v.len() * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                let stacked = |s: &Stacked| s.mats.iter().map(|m| m.bytes().len()).sum::<usize>();
                stacked(&l.qkv)
                    + l.o.bytes().len()
                    + stacked(&l.gate_up)
                    + l.down.bytes().len()
                    + f32s(&l.attn_norm)
                    + f32s(&l.ffn_norm)
            })
            .sum();
        layers + self.lm_head.bytes().len() + f32s(&self.norm) + self.embed.row_bytes()
    }

    /// The arithmetic of decode steps on block-quantized weights.
    #[must_use]
    pub fn activations(&self) -> Activations {
        self.activations
    }

    /// Chooses the arithmetic of decode steps on block-quantized weights ([`Activations`]).
    ///
    /// [`Activations::Int8`] makes each block matrix's packed copy now
    /// ([`QuantMatrix::pack`]; on CPUs with AVX-512 VNNI), which its single-row products then
    /// read: the weights' memory twice over, for faster decode.
    pub fn set_activations(&mut self, activations: Activations) {
        self.activations = activations;
        if activations == Activations::Int8 {
            for layer in &self.layers {
                layer.qkv.mats.iter().for_each(QuantMatrix::pack);
                layer.o.pack();
                layer.gate_up.mats.iter().for_each(QuantMatrix::pack);
                layer.down.pack();
            }
            self.lm_head.pack();
        }
    }

    /// A cache for the whole context.
    #[must_use]
    pub fn new_cache(&self) -> CpuCache {
        self.cache_with_capacity(self.config.max_position_embeddings)
    }

    /// A cache for at most `max_len` positions (memory grows as positions are used).
    #[must_use]
    pub fn cache_with_capacity(&self, max_len: usize) -> CpuCache {
        let n = self.config.num_hidden_layers;
        CpuCache {
            kv: KvStore::new(self.activations, n),
            len: 0,
            max_len: max_len.min(self.config.max_position_embeddings),
            work: Work::default(),
        }
    }

    /// Runs `ids` through the model after the cached positions and returns the logits of the last
    /// position (`[vocab]`), or of every new position (`[ids.len() * vocab]`) when `all` is set.
    ///
    /// # Errors
    /// Context overflow or ids outside the vocabulary.
    pub fn forward(&self, ids: &[u32], cache: &mut CpuCache, all: bool) -> Result<Vec<f32>> {
        self.forward_with(ids, cache, all, &AdapterMix::none())
    }

    /// [`CpuLlama::forward`] with the updates of LoRA adapters added to the linear maps.
    ///
    /// # Errors
    /// As [`CpuLlama::forward`].
    pub fn forward_with(
        &self,
        ids: &[u32],
        cache: &mut CpuCache,
        all: bool,
        mix: &AdapterMix,
    ) -> Result<Vec<f32>> {
        self.forward_inner(ids, cache, all, mix, None)
    }

    /// [`CpuLlama::forward`] that shows `probe` each layer's intermediate values (for
    /// activation-aware pruning and analysis; see [`Probe`]).
    ///
    /// # Errors
    /// As [`CpuLlama::forward`].
    pub fn forward_probed(
        &self,
        ids: &[u32],
        cache: &mut CpuCache,
        probe: &mut (dyn FnMut(Probe<'_>) + Send),
    ) -> Result<Vec<f32>> {
        self.forward_inner(ids, cache, false, &AdapterMix::none(), Some(probe))
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size;
        match ids.iter().find(|&&i| i as usize >= vocab) {
            Some(bad) => Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            ))),
            None => Ok(()),
        }
    }

    fn forward_inner(
        &self,
        ids: &[u32],
        cache: &mut CpuCache,
        all: bool,
        mix: &AdapterMix,
        probe: Option<&mut (dyn FnMut(Probe<'_>) + Send)>,
    ) -> Result<Vec<f32>> {
        let t = ids.len();
        if t == 0 {
            return Err(Error::Invalid("forward needs at least one token".into()));
        }
        let start = cache.len;
        let needed = start + t;
        if needed > cache.max_len {
            return Err(Error::Core(kiln_core::Error::ContextLength {
                needed,
                limit: cache.max_len,
            }));
        }
        self.check_ids(ids)?;
        cache.reserve(needed, self.kv_width());
        let CpuCache { kv, work, .. } = cache;
        work.clear();
        work.slots.extend((0..t).map(|i| Slot {
            cache: 0,
            pos: start + i,
        }));
        work.add_cache(kv);
        let probe = probe.map(Mutex::new);
        let spec = PassSpec {
            ids,
            mixes: Mixes::One(mix),
            logits_from: if all { 0 } else { t - 1 },
            probe: probe.as_ref(),
        };
        self.pass(work, &spec);
        work.clear();
        cache.len = needed;
        Ok(std::mem::take(&mut work.logits))
    }

    /// Elements of one position's keys (or values) in one layer.
    fn kv_width(&self) -> usize {
        self.config.num_key_value_heads * self.config.head_dim
    }

    /// One decode step for several sequences at once (continuous batching): token `ids[i]` goes
    /// after the cached positions of `caches[i]`, with the adapters `mixes[i]`. The weights are
    /// read once for the whole batch (the matrix products run on `n` rows); attention runs per
    /// sequence over its own cache. Returns the logits, `[n * vocab]`, kept in `work` (reused by
    /// the next step, so that a decode loop does not allocate them).
    ///
    /// # Errors
    /// Mismatched lengths, a full cache, or an id outside the vocabulary.
    pub fn decode_batch<'w>(
        &self,
        ids: &[u32],
        caches: &mut [&mut CpuCache],
        mixes: &[&AdapterMix],
        work: &'w mut BatchWork,
    ) -> Result<&'w mut [f32]> {
        let n = ids.len();
        if n == 0 || caches.len() != n || mixes.len() != n {
            return Err(Error::Invalid(format!(
                "a batch step needs one cache and one adapter mix per token ({n} tokens, {} caches, {} mixes)",
                caches.len(),
                mixes.len()
            )));
        }
        for cache in caches.iter() {
            if cache.len + 1 > cache.max_len {
                return Err(Error::Core(kiln_core::Error::ContextLength {
                    needed: cache.len + 1,
                    limit: cache.max_len,
                }));
            }
        }
        self.check_ids(ids)?;
        let w = &mut work.work;
        w.clear();
        for (i, cache) in caches.iter_mut().enumerate() {
            cache.reserve(cache.len + 1, self.kv_width());
            w.slots.push(Slot {
                cache: i,
                pos: cache.len,
            });
            w.add_cache(&mut cache.kv);
        }
        let spec = PassSpec {
            ids,
            mixes: Mixes::PerRow(mixes),
            logits_from: 0,
            probe: None,
        };
        self.pass(w, &spec);
        w.clear();
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        Ok(&mut w.logits)
    }
}

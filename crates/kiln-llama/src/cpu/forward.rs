//! [`CpuLlama`]: the decoder on the CPU kernels, and its [`CpuCache`].

use kiln_backend::kernels::{QuantMatrix, Scratch};

use super::Activations;
use super::matmul::{Isa, isa, matmul_mode};
use rayon::prelude::*;

use crate::config::{LlamaConfig, rope_inv_freq};
use crate::load::WeightSource;
use crate::lora::{AdapterMix, Proj, Site};
use crate::{Error, Result};

/// One decoder layer's weights.
#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v projections (one fused matrix when their formats agree).
    qkv: Stacked,
    o: QuantMatrix,
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
    o_bias: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    /// gate and up projections (fused when their formats agree).
    gate_up: Stacked,
    down: QuantMatrix,
}

/// Matrices that read the same input: stacked into one matrix (one pass over the input, one
/// parallel job) when they share a format, kept apart otherwise.
#[derive(Debug, Clone)]
struct Stacked {
    mats: Vec<QuantMatrix>,
    widths: Vec<usize>,
}

impl Stacked {
    fn new(parts: Vec<QuantMatrix>) -> Result<Self> {
        let widths: Vec<usize> = parts.iter().map(QuantMatrix::rows).collect();
        let first = &parts[0];
        if parts
            .iter()
            .all(|m| m.format() == first.format() && m.cols() == first.cols())
        {
            let bytes: Vec<u8> = parts
                .iter()
                .flat_map(|m| m.bytes().iter().copied())
                .collect();
            let fused = QuantMatrix::new(first.format(), widths.iter().sum(), first.cols(), bytes)?;
            Ok(Self {
                mats: vec![fused],
                widths,
            })
        } else {
            Ok(Self {
                mats: parts,
                widths,
            })
        }
    }

    /// `outs[p] = x · partₚᵀ` for `t` input rows.
    fn matmul(
        &self,
        x: &[f32],
        t: usize,
        outs: &mut [&mut Vec<f32>],
        comb: &mut Vec<f32>,
        w: &mut Bufs,
    ) {
        if self.mats.len() == 1 {
            let total: usize = self.widths.iter().sum();
            comb.resize(t * total, 0.0);
            w.matmul(&self.mats[0], x, t, comb);
            let mut off = 0;
            for (p, out) in outs.iter_mut().enumerate() {
                let width = self.widths[p];
                for i in 0..t {
                    out[i * width..(i + 1) * width]
                        .copy_from_slice(&comb[i * total + off..i * total + off + width]);
                }
                off += width;
            }
        } else {
            for (m, out) in self.mats.iter().zip(outs.iter_mut()) {
                w.matmul(m, x, t, out);
            }
        }
    }
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

/// Reusable buffers of the matmul kernels, and the arithmetic they use.
#[derive(Debug, Clone, Default)]
struct Bufs {
    tmp: Vec<f32>,
    scratch: Scratch,
    int8: bool,
}

impl Bufs {
    /// `y = x Wᵀ` for `n` rows with this pass's arithmetic.
    fn matmul(&mut self, w: &QuantMatrix, x: &[f32], n: usize, y: &mut [f32]) {
        matmul_mode(self.int8, w, x, n, y, &mut self.tmp, &mut self.scratch);
    }
}

/// A Llama model on the CPU kernels.
#[derive(Debug, Clone)]
pub struct CpuLlama {
    /// The configuration.
    pub config: LlamaConfig,
    embed: QuantMatrix,
    lm_head: QuantMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    activations: Activations,
}

/// Keys and values of every layer, preallocated for the whole context, plus the work buffers a
/// forward pass reuses (the decode loop allocates nothing once they have grown).
#[derive(Debug, Clone)]
pub struct CpuCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
    max_len: usize,
    work: Work,
}

#[derive(Debug, Clone, Default)]
struct Work {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
    comb: Vec<f32>,
    lora: Vec<f32>,
    bufs: Bufs,
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

    /// A copy of the cached keys and values (without the work buffers), for reuse by another
    /// sequence that starts with the same tokens.
    #[must_use]
    pub fn snapshot(&self) -> CpuCache {
        CpuCache {
            k: self.k.clone(),
            v: self.v.clone(),
            len: self.len,
            max_len: self.max_len,
            work: Work::default(),
        }
    }
}

fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &xv), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = xv * inv * wv;
        }
    }
}

fn add_bias(y: &mut [f32], bias: Option<&Vec<f32>>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
        }
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
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
    pub fn set_activations(&mut self, activations: Activations) {
        self.activations = activations;
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
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
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
        in_pool(|| self.forward_in_pool(ids, cache, all, mix, None))
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
        in_pool(|| self.forward_in_pool(ids, cache, false, &AdapterMix::none(), Some(probe)))
    }

    fn forward_in_pool(
        &self,
        ids: &[u32],
        cache: &mut CpuCache,
        all: bool,
        mix: &AdapterMix,
        mut probe: Option<&mut (dyn FnMut(Probe<'_>) + Send)>,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
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
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= c.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                c.vocab_size
            )));
        }
        let (d, hd, nh, nkv, ff) = (
            c.hidden_size,
            c.head_dim,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
        );
        let (qd, kvd) = (nh * hd, nkv * hd);
        let w = &mut cache.work;
        w.bufs.int8 = self.activations == Activations::Int8;
        resize(&mut w.x, t * d);
        for (row, &id) in w.x.chunks_exact_mut(d).zip(ids) {
            self.embed.dequantize_row(id as usize, row);
        }
        resize(&mut w.h, t * d);
        resize(&mut w.q, t * qd);
        resize(&mut w.k, t * kvd);
        resize(&mut w.v, t * kvd);
        resize(&mut w.attn, t * qd);
        resize(&mut w.o, t * d);
        resize(&mut w.gate, t * ff);
        resize(&mut w.up, t * ff);
        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&w.x, &layer.attn_norm, c.rms_norm_eps, &mut w.h);
            layer.qkv.matmul(
                &w.h,
                t,
                &mut [&mut w.q, &mut w.k, &mut w.v],
                &mut w.comb,
                &mut w.bufs,
            );
            if !mix.is_empty() {
                let at = |p| Site::Layer(l, p);
                mix.add_cpu(at(Proj::Q), &w.h, t, &mut w.q, &mut w.lora);
                mix.add_cpu(at(Proj::K), &w.h, t, &mut w.k, &mut w.lora);
                mix.add_cpu(at(Proj::V), &w.h, t, &mut w.v, &mut w.lora);
            }
            add_bias(&mut w.q, layer.q_bias.as_ref());
            add_bias(&mut w.k, layer.k_bias.as_ref());
            add_bias(&mut w.v, layer.v_bias.as_ref());
            for i in 0..t {
                self.rope(&mut w.q[i * qd..(i + 1) * qd], start + i);
                self.rope(&mut w.k[i * kvd..(i + 1) * kvd], start + i);
            }
            let (kc, vc) = (&mut cache.k[l], &mut cache.v[l]);
            if kc.len() < needed * kvd {
                let grow = (needed * kvd).max((kc.len() * 2).min(cache.max_len * kvd));
                kc.resize(grow, 0.0);
                vc.resize(grow, 0.0);
            }
            kc[start * kvd..needed * kvd].copy_from_slice(&w.k);
            vc[start * kvd..needed * kvd].copy_from_slice(&w.v);
            attention(
                &w.q,
                kc,
                vc,
                &mut w.attn,
                &mut w.scores,
                AttnShape {
                    t,
                    start,
                    nh,
                    nkv,
                    hd,
                },
            );
            if let Some(p) = probe.as_mut() {
                p(Probe::Attention {
                    layer: l,
                    heads: &w.attn,
                });
            }
            w.bufs.matmul(&layer.o, &w.attn, t, &mut w.o);
            mix.add_cpu(Site::Layer(l, Proj::O), &w.attn, t, &mut w.o, &mut w.lora);
            add_bias(&mut w.o, layer.o_bias.as_ref());
            w.x.iter_mut().zip(&w.o).for_each(|(x, o)| *x += o);

            rms_norm_rows(&w.x, &layer.ffn_norm, c.rms_norm_eps, &mut w.h);
            layer.gate_up.matmul(
                &w.h,
                t,
                &mut [&mut w.gate, &mut w.up],
                &mut w.comb,
                &mut w.bufs,
            );
            if !mix.is_empty() {
                mix.add_cpu(
                    Site::Layer(l, Proj::Gate),
                    &w.h,
                    t,
                    &mut w.gate,
                    &mut w.lora,
                );
                mix.add_cpu(Site::Layer(l, Proj::Up), &w.h, t, &mut w.up, &mut w.lora);
            }
            w.gate
                .iter_mut()
                .zip(&w.up)
                .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            if let Some(p) = probe.as_mut() {
                p(Probe::Mlp {
                    layer: l,
                    hidden: &w.gate,
                });
            }
            w.bufs.matmul(&layer.down, &w.gate, t, &mut w.o);
            mix.add_cpu(
                Site::Layer(l, Proj::Down),
                &w.gate,
                t,
                &mut w.o,
                &mut w.lora,
            );
            w.x.iter_mut().zip(&w.o).for_each(|(x, o)| *x += o);
        }
        cache.len = needed;
        let rows = if all { t } else { 1 };
        let from = (t - rows) * d;
        rms_norm_rows(
            &w.x[from..],
            &self.norm,
            c.rms_norm_eps,
            &mut w.h[..rows * d],
        );
        let mut logits = vec![0f32; rows * c.vocab_size];
        w.bufs
            .matmul(&self.lm_head, &w.h[..rows * d], rows, &mut logits);
        mix.add_cpu(
            Site::LmHead,
            &w.h[..rows * d],
            rows,
            &mut logits,
            &mut w.lora,
        );
        Ok(logits)
    }

    /// One decode step for several sequences at once (continuous batching): token `ids[i]` goes
    /// after the cached positions of `caches[i]`, with the adapters `mixes[i]`. The weights are
    /// read once for the whole batch (the matrix products run on `n` rows); attention runs per
    /// sequence over its own cache. Returns the logits, `[n * vocab]`.
    ///
    /// # Errors
    /// Mismatched lengths, a full cache, or an id outside the vocabulary.
    pub fn decode_batch(
        &self,
        ids: &[u32],
        caches: &mut [&mut CpuCache],
        mixes: &[&AdapterMix],
        work: &mut BatchWork,
    ) -> Result<Vec<f32>> {
        in_pool(|| self.decode_batch_in_pool(ids, caches, mixes, work))
    }

    fn decode_batch_in_pool(
        &self,
        ids: &[u32],
        caches: &mut [&mut CpuCache],
        mixes: &[&AdapterMix],
        work: &mut BatchWork,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = ids.len();
        if n == 0 || caches.len() != n || mixes.len() != n {
            return Err(Error::Invalid(format!(
                "a batch step needs one cache and one adapter mix per token ({n} tokens, {} caches, {} mixes)",
                caches.len(),
                mixes.len()
            )));
        }
        for (cache, &id) in caches.iter().zip(ids) {
            if cache.len + 1 > cache.max_len {
                return Err(Error::Core(kiln_core::Error::ContextLength {
                    needed: cache.len + 1,
                    limit: cache.max_len,
                }));
            }
            if id as usize >= c.vocab_size {
                return Err(Error::Invalid(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    c.vocab_size
                )));
            }
        }
        let (d, hd, nh, nkv, ff) = (
            c.hidden_size,
            c.head_dim,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
        );
        let (qd, kvd) = (nh * hd, nkv * hd);
        let w = &mut work.work;
        w.bufs.int8 = self.activations == Activations::Int8;
        resize(&mut w.x, n * d);
        for (row, &id) in w.x.chunks_exact_mut(d).zip(ids) {
            self.embed.dequantize_row(id as usize, row);
        }
        resize(&mut w.h, n * d);
        resize(&mut w.q, n * qd);
        resize(&mut w.k, n * kvd);
        resize(&mut w.v, n * kvd);
        resize(&mut w.attn, n * qd);
        resize(&mut w.o, n * d);
        resize(&mut w.gate, n * ff);
        resize(&mut w.up, n * ff);
        // Per-row adapter updates: each sequence adds its own mix to its own row.
        let per_row = |site: Site,
                       x: &[f32],
                       width_in: usize,
                       y: &mut [f32],
                       width_out: usize,
                       tmp: &mut Vec<f32>| {
            for (i, mix) in mixes.iter().enumerate() {
                if !mix.is_empty() {
                    mix.add_cpu(
                        site,
                        &x[i * width_in..(i + 1) * width_in],
                        1,
                        &mut y[i * width_out..(i + 1) * width_out],
                        tmp,
                    );
                }
            }
        };
        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&w.x, &layer.attn_norm, c.rms_norm_eps, &mut w.h);
            layer.qkv.matmul(
                &w.h,
                n,
                &mut [&mut w.q, &mut w.k, &mut w.v],
                &mut w.comb,
                &mut w.bufs,
            );
            let at = |p| Site::Layer(l, p);
            per_row(at(Proj::Q), &w.h, d, &mut w.q, qd, &mut w.lora);
            per_row(at(Proj::K), &w.h, d, &mut w.k, kvd, &mut w.lora);
            per_row(at(Proj::V), &w.h, d, &mut w.v, kvd, &mut w.lora);
            add_bias(&mut w.q, layer.q_bias.as_ref());
            add_bias(&mut w.k, layer.k_bias.as_ref());
            add_bias(&mut w.v, layer.v_bias.as_ref());
            for (i, cache) in caches.iter_mut().enumerate() {
                let pos = cache.len;
                self.rope(&mut w.q[i * qd..(i + 1) * qd], pos);
                self.rope(&mut w.k[i * kvd..(i + 1) * kvd], pos);
                let (kc, vc) = (&mut cache.k[l], &mut cache.v[l]);
                let needed = pos + 1;
                if kc.len() < needed * kvd {
                    let grow = (needed * kvd).max((kc.len() * 2).min(cache.max_len * kvd));
                    kc.resize(grow, 0.0);
                    vc.resize(grow, 0.0);
                }
                kc[pos * kvd..needed * kvd].copy_from_slice(&w.k[i * kvd..(i + 1) * kvd]);
                vc[pos * kvd..needed * kvd].copy_from_slice(&w.v[i * kvd..(i + 1) * kvd]);
                attention(
                    &w.q[i * qd..(i + 1) * qd],
                    kc,
                    vc,
                    &mut w.attn[i * qd..(i + 1) * qd],
                    &mut w.scores,
                    AttnShape {
                        t: 1,
                        start: pos,
                        nh,
                        nkv,
                        hd,
                    },
                );
            }
            w.bufs.matmul(&layer.o, &w.attn, n, &mut w.o);
            per_row(at(Proj::O), &w.attn, qd, &mut w.o, d, &mut w.lora);
            add_bias(&mut w.o, layer.o_bias.as_ref());
            w.x.iter_mut().zip(&w.o).for_each(|(x, o)| *x += o);

            rms_norm_rows(&w.x, &layer.ffn_norm, c.rms_norm_eps, &mut w.h);
            layer.gate_up.matmul(
                &w.h,
                n,
                &mut [&mut w.gate, &mut w.up],
                &mut w.comb,
                &mut w.bufs,
            );
            per_row(at(Proj::Gate), &w.h, d, &mut w.gate, ff, &mut w.lora);
            per_row(at(Proj::Up), &w.h, d, &mut w.up, ff, &mut w.lora);
            w.gate
                .iter_mut()
                .zip(&w.up)
                .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            w.bufs.matmul(&layer.down, &w.gate, n, &mut w.o);
            per_row(at(Proj::Down), &w.gate, ff, &mut w.o, d, &mut w.lora);
            w.x.iter_mut().zip(&w.o).for_each(|(x, o)| *x += o);
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        rms_norm_rows(&w.x, &self.norm, c.rms_norm_eps, &mut w.h);
        let v = c.vocab_size;
        let mut logits = vec![0f32; n * v];
        w.bufs.matmul(&self.lm_head, &w.h, n, &mut logits);
        per_row(Site::LmHead, &w.h, d, &mut logits, v, &mut w.lora);
        Ok(logits)
    }

    /// Rotate-half RoPE (as transformers) of every head in `x` at position `pos`.
    fn rope(&self, x: &mut [f32], pos: usize) {
        let hd = self.config.head_dim;
        let half = hd / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        for head in x.chunks_exact_mut(hd) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct AttnShape {
    t: usize,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
}

/// Causal grouped-query attention of `t` new queries over the cached keys and values.
fn attention(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    out: &mut [f32],
    scores: &mut Vec<f32>,
    s: AttnShape,
) {
    let AttnShape {
        t,
        start,
        nh,
        nkv,
        hd,
    } = s;
    let (qd, kvd, group) = (nh * hd, nkv * hd, nh / nkv);
    let scale = 1.0 / (hd as f32).sqrt();
    let total = start + t;
    scores.resize(t * nh * total, 0.0);
    let isa = isa();
    // One task per (query row, key/value head): the `group` query heads that share a key/value
    // head read each cached key and value once. A decode step has too few such tasks to keep
    // every thread busy (3 for SmolLM2), so with fewer than 8 it takes one task per query head.
    let per_task = if t * nkv >= 8 { group } else { 1 };
    let tasks_per_row = nh / per_task;
    out.par_chunks_mut(per_task * hd)
        .zip(scores.par_chunks_mut(per_task * total))
        .enumerate()
        .for_each(|(idx, (o, sc))| {
            let (i, unit) = (idx / tasks_per_row, idx % tasks_per_row);
            let first_head = unit * per_task;
            let group_in = GroupInput {
                q: &q[i * qd + first_head * hd..i * qd + (first_head + per_task) * hd],
                kc,
                vc,
                stride: kvd,
                offset: (first_head / group) * hd,
                head_dim: hd,
                scale,
                len: start + i + 1,
                total,
            };
            match isa {
                // SAFETY: AVX-512F and FMA were detected.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { group_avx512(&group_in, sc, o) },
                // SAFETY: AVX2 and FMA were detected.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { group_avx2(&group_in, sc, o) },
                _ => group_attention(&group_in, sc, o),
            }
        });
}

/// Runs `f` on a worker of rayon's current pool (directly when already on one). A forward pass
/// has about five parallel loops per layer; started from a thread outside the pool, each would
/// inject a job and block until a worker picks it up and finishes, paying a wake-up every time.
/// Inside the pool they fork and join like any nested rayon work.
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// The query heads of one key/value head (`q`: `group * head_dim`) and their view of the cache:
/// key/value `j` starts at `j * stride + offset`; `len` positions are visible.
struct GroupInput<'a> {
    q: &'a [f32],
    kc: &'a [f32],
    vc: &'a [f32],
    stride: usize,
    offset: usize,
    head_dim: usize,
    scale: f32,
    len: usize,
    /// Row length of the score buffer (one row per query head).
    total: usize,
}

/// `q · k` with 16 independent accumulators, so that the compiler emits vector FMAs.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Softmax attention of a group of query heads over the visible cached positions into `o`
/// (`group * head_dim`), reading each key and value once for the whole group.
#[inline(always)]
fn group_attention(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    let hd = g.head_dim;
    let heads = g.q.len() / hd;
    for j in 0..g.len {
        let at = j * g.stride + g.offset;
        let k = &g.kc[at..at + hd];
        for h in 0..heads {
            scores[h * g.total + j] = dot(&g.q[h * hd..(h + 1) * hd], k) * g.scale;
        }
    }
    for h in 0..heads {
        let sc = &mut scores[h * g.total..h * g.total + g.len];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for s in sc.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        sc.iter_mut().for_each(|s| *s *= inv);
    }
    o.fill(0.0);
    for j in 0..g.len {
        let at = j * g.stride + g.offset;
        let v = &g.vc[at..at + hd];
        for h in 0..heads {
            let p = scores[h * g.total + j];
            for (o, &v) in o[h * hd..(h + 1) * hd].iter_mut().zip(v) {
                *o = p.mul_add(v, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn group_avx512(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    group_attention(g, scores, o);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn group_avx2(g: &GroupInput<'_>, scores: &mut [f32], o: &mut [f32]) {
    group_attention(g, scores, o);
}

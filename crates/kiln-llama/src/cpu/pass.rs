//! One pass of the decoder over a set of rows (the new tokens of one sequence, or one token of
//! each of several sequences), run by every member of a [`team`](super::team).
//!
//! Every member computes all the cheap, per-row work it needs for itself (the RMSNorm of the
//! residual stream, the 8-bit activations) and its share of every matrix product (a range of output
//! rows), writes its results into the shared buffers, and meets the others at a barrier before
//! anyone reads them. A layer takes five barriers: after q/k/v (each member applies RoPE to its own
//! heads and writes its own keys and values to the cache), after attention (shared out by query
//! head), after `o_proj` (each member adds its own columns to the residual stream), after
//! gate/up (each member applies SwiGLU to its own columns) and after `down_proj`. LoRA updates,
//! when any are active, are added by member 0 between two more barriers.

use std::ops::Range;
use std::sync::Mutex;

use half::f16;
use half::slice::HalfFloatSliceExt;

use kiln_backend::kernels::{QuantMatrix, WeightFormat};

use super::attention::{GroupInput, group};
use super::forward::{KvStore, Layer};
use super::matmul::{GEMM_MIN_ROWS, RowBufs, mode};
use super::team::{self, Buf, Member};
use super::{Activations, CpuLlama, Probe};
use crate::Result;
use crate::lora::{AdapterMix, Proj, Site};

/// Matrices that read the same input: stacked into one matrix (one pass over the input) when they
/// share a format, kept apart otherwise. The parts are numbered one after another: part `p` is
/// rows `offset(p)..offset(p) + widths[p]` of the stack.
#[derive(Debug, Clone)]
pub(super) struct Stacked {
    pub(super) mats: Vec<QuantMatrix>,
    pub(super) widths: Vec<usize>,
}

impl Stacked {
    pub(super) fn new(parts: Vec<QuantMatrix>) -> Result<Self> {
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

    /// Prepares `n` rows of `x` for [`Stacked::rows_into`] on every matrix of the stack.
    fn prepare(&self, bufs: &mut RowBufs, x: &[f32], n: usize, int8: bool) {
        for (i, m) in self.mats.iter().enumerate() {
            let kind =
                |m: &QuantMatrix| (mode(m.format(), n, int8), m.format() == WeightFormat::Nf4);
            // Matrices of one kind read the same prepared activations.
            if !self.mats[..i].iter().any(|e| kind(e) == kind(m)) {
                bufs.prepare(m.format(), x, n, int8);
            }
        }
    }

    /// The stacked rows `rows` (stack numbering) times the `n` rows of `x` (prepared), each into
    /// its part's buffer (`outs[p]`, `n × widths[p]`).
    ///
    /// # Safety
    /// No one else reads or writes the written elements during the call.
    unsafe fn rows_into(
        &self,
        bufs: &mut RowBufs,
        x: &[f32],
        n: usize,
        rows: Range<usize>,
        outs: &[Buf],
        int8: bool,
    ) {
        let mut g0 = 0;
        for m in &self.mats {
            let g1 = g0 + m.rows();
            let (lo, hi) = (rows.start.max(g0), rows.end.min(g1));
            if lo < hi {
                let mut ps = 0;
                for (p, &width) in self.widths.iter().enumerate() {
                    let (a, b) = (lo.max(ps), hi.min(ps + width));
                    if a < b {
                        // SAFETY: the caller's guarantee.
                        unsafe {
                            bufs.rows_into(m, x, n, a - g0..b - g0, outs[p], width, a - ps, int8);
                        }
                    }
                    ps += width;
                }
            }
            g0 = g1;
        }
    }
}

/// The LoRA adapters of a pass: one mix for every row, or one per row.
#[derive(Clone, Copy)]
pub(super) enum Mixes<'a> {
    /// Every row (the new tokens of one sequence).
    One(&'a AdapterMix),
    /// Row `i` uses mix `i` (one token of each sequence of a batch).
    PerRow(&'a [&'a AdapterMix]),
}

impl Mixes<'_> {
    fn any(&self) -> bool {
        match self {
            Mixes::One(m) => !m.is_empty(),
            Mixes::PerRow(ms) => ms.iter().any(|m| !m.is_empty()),
        }
    }

    /// Adds the updates at `site` for `t` rows of `x` (width `w_in`) to `y` (width `w_out`).
    fn add(
        &self,
        site: Site,
        x: &[f32],
        w_in: usize,
        y: &mut [f32],
        w_out: usize,
        tmp: &mut Vec<f32>,
    ) {
        match self {
            Mixes::One(m) => m.add_cpu(site, x, x.len() / w_in, y, tmp),
            Mixes::PerRow(ms) => {
                for (i, m) in ms.iter().enumerate() {
                    if !m.is_empty() {
                        let (xi, yi) = (i * w_in, i * w_out);
                        m.add_cpu(site, &x[xi..xi + w_in], 1, &mut y[yi..yi + w_out], tmp);
                    }
                }
            }
        }
    }
}

/// Where row `i` of a pass belongs: cache `cache` (an index into the pass's caches), position `pos`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) cache: usize,
    pub(super) pos: usize,
}

/// The keys and values of one layer of one cache, in the cache's precision.
#[derive(Debug, Clone, Copy)]
enum Kv {
    F32 { k: Buf, v: Buf },
    F16 { k: Buf<f16>, v: Buf<f16> },
}

/// One member's own buffers.
#[derive(Debug, Clone, Default)]
struct Private {
    /// The normed residual stream (every row of the pass).
    h: Vec<f32>,
    bufs: RowBufs,
    scores: Vec<f32>,
    lora: Vec<f32>,
}

/// The buffers of a pass, reused across passes (a decode loop allocates nothing once they have
/// grown, except the returned logits).
#[derive(Debug, Clone, Default)]
pub(super) struct Work {
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// The last pass's logits (kept, so that a decode loop does not allocate them per step).
    pub(super) logits: Vec<f32>,
    pub(super) slots: Vec<Slot>,
    kv: Vec<Kv>,
    members: Vec<Private>,
}

impl Work {
    /// Registers the keys and values of one more cache (index = number registered before), every
    /// layer already grown to hold the pass's positions. Pointers stay valid while the vectors are
    /// neither resized nor dropped, i.e. for the pass.
    pub(super) fn add_cache(&mut self, kv: &mut KvStore) {
        match kv {
            KvStore::F32 { k, v } => self.kv.extend(k.iter_mut().zip(v).map(|(k, v)| Kv::F32 {
                k: Buf::new(k),
                v: Buf::new(v),
            })),
            KvStore::F16 { k, v } => self.kv.extend(k.iter_mut().zip(v).map(|(k, v)| Kv::F16 {
                k: Buf::new(k),
                v: Buf::new(v),
            })),
        }
    }

    /// Forgets the registered caches and rows.
    pub(super) fn clear(&mut self) {
        self.kv.clear();
        self.slots.clear();
    }
}

/// The members' private buffers, reached by index.
#[derive(Clone, Copy)]
struct Privates {
    ptr: *mut Private,
    len: usize,
}

// SAFETY: member `i` alone uses element `i` during a pass.
unsafe impl Send for Privates {}
// SAFETY: as above.
unsafe impl Sync for Privates {}

impl Privates {
    /// # Safety
    /// Only member `i` calls this with `i`, and only once per pass.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut Private {
        assert!(i < self.len, "member {i} without buffers");
        // SAFETY: in bounds; exclusive by the caller's guarantee.
        unsafe { &mut *self.ptr.add(i) }
    }
}

/// The callback of [`CpuLlama::forward_probed`].
pub(super) type ProbeFn<'p> = &'p mut (dyn FnMut(Probe<'_>) + Send + 'p);

/// What a pass computes besides filling the caches.
pub(super) struct PassSpec<'a, 'p> {
    /// One token per row.
    pub(super) ids: &'a [u32],
    pub(super) mixes: Mixes<'a>,
    /// Logits are returned for rows `logits_from..`.
    pub(super) logits_from: usize,
    /// Shown the layers' intermediate values (by member 0).
    pub(super) probe: Option<&'a Mutex<ProbeFn<'p>>>,
}

/// The shared buffers of a running pass.
struct Bufs {
    x: Buf,
    q: Buf,
    k: Buf,
    v: Buf,
    attn: Buf,
    o: Buf,
    gate: Buf,
    up: Buf,
    logits: Buf,
}

pub(super) fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        // Sixteen running sums (one vector): a single sum would wait on each addition.
        let mut lanes = [0f32; 16];
        let mut chunks = xr.chunks_exact(16);
        for c in &mut chunks {
            for (l, v) in lanes.iter_mut().zip(c) {
                *l += v * v;
            }
        }
        let tail = chunks.remainder().iter().map(|v| v * v).sum::<f32>();
        let ms = (lanes.iter().sum::<f32>() + tail) / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &xv), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = xv * inv * wv;
        }
    }
}

/// `gate = silu(gate) · up` on columns `cols` of every row.
fn swiglu(b: &Bufs, t: usize, ff: usize, cols: Range<usize>) {
    for i in 0..t {
        let r = i * ff + cols.start..i * ff + cols.end;
        // SAFETY: the calling chunk owns these columns.
        let (g, u) = unsafe { (b.gate.slice_mut(r.clone()), b.up.slice(r)) };
        super::attention::swiglu_rows(g, u);
    }
}

impl CpuLlama {
    /// Runs the rows of `spec` through the model on the team, with `work`'s slots and caches
    /// (registered by the caller, grown to hold every row's position); leaves the logits of rows
    /// `spec.logits_from..` in `work.logits`.
    pub(super) fn pass(&self, work: &mut Work, spec: &PassSpec<'_, '_>) {
        let c = &self.config;
        let t = spec.ids.len();
        let (d, nh, nkv, hd, ff) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.intermediate_size,
        );
        let (qd, kvd) = (nh * hd, nkv * hd);
        let out_rows = t - spec.logits_from;
        // Every element is written by the lm_head phase before anything reads it.
        work.logits.resize(out_rows * c.vocab_size, 0.0);
        let members = rayon::current_num_threads().max(1);
        if work.members.len() < members {
            work.members.resize_with(members, Private::default);
        }
        for (v, n) in [
            (&mut work.x, d),
            (&mut work.q, qd),
            (&mut work.k, kvd),
            (&mut work.v, kvd),
            (&mut work.attn, qd),
            (&mut work.o, d),
            (&mut work.gate, ff),
            (&mut work.up, ff),
        ] {
            v.resize(t * n, 0.0);
        }
        for p in &mut work.members {
            p.h.resize(t * d, 0.0);
        }
        let bufs = Bufs {
            x: Buf::new(&mut work.x),
            q: Buf::new(&mut work.q),
            k: Buf::new(&mut work.k),
            v: Buf::new(&mut work.v),
            attn: Buf::new(&mut work.attn),
            o: Buf::new(&mut work.o),
            gate: Buf::new(&mut work.gate),
            up: Buf::new(&mut work.up),
            logits: Buf::new(&mut work.logits[..out_rows * c.vocab_size]),
        };
        let privates = Privates {
            ptr: work.members.as_mut_ptr(),
            len: work.members.len(),
        };
        let (slots, kv) = (&work.slots[..], &work.kv[..]);
        team::run(&|m: &Member<'_>| {
            // SAFETY: member `m.index` takes its own buffers once.
            let own = unsafe { privates.get(m.index) };
            self.member_pass(m, own, &bufs, slots, kv, spec);
        });
    }

    /// Member `m`'s part of a pass: a fixed sequence of phases, each split into chunks that write
    /// disjoint parts of the shared buffers. A chunk reads shared buffers whole only when the
    /// phase that wrote them is over (every member waits for that in [`Member::phase`]).
    /// A member prepares its private inputs (normed rows, 8-bit activations) before the first
    /// chunk it takes in a phase.
    fn member_pass(
        &self,
        m: &Member<'_>,
        own: &mut Private,
        b: &Bufs,
        slots: &[Slot],
        kv: &[Kv],
        spec: &PassSpec<'_, '_>,
    ) {
        let c = &self.config;
        let t = spec.ids.len();
        let (d, nh, nkv, hd, ff, eps) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.intermediate_size,
            c.rms_norm_eps,
        );
        let (qd, kvd, group_size) = (nh * hd, nkv * hd, nh / nkv);
        let int8 = self.activations == Activations::Int8;
        let lora = spec.mixes.any();
        let layers = self.layers.len();
        // Weight rows per chunk of a matrix product. Decode: 32, or fewer so that every member
        // gets two chunks where the matrix allows it (many cores, small model); each output
        // element is computed the same way whatever the chunk. Prefill: 128 rows always, so that
        // the GEMM of each chunk, and with it the summation order, does not depend on the number
        // of threads (the results are reproducible across machines).
        let unit_for = |rows: usize| {
            if t < GEMM_MIN_ROWS {
                32.min((rows / (2 * m.size)).max(16) / 16 * 16)
            } else {
                128
            }
        };
        let unit = unit_for(d);
        let chunks = |rows: usize| rows.div_ceil(unit);
        let Private {
            h,
            bufs: rb,
            scores,
            lora: lora_tmp,
        } = own;

        m.phase(t, |i| {
            // SAFETY: chunk `i` writes row `i` of x.
            let row = unsafe { b.x.slice_mut(i * d..(i + 1) * d) };
            self.embed.dequantize_row(spec.ids[i] as usize, row);
        });

        for (l, layer) in self.layers.iter().enumerate() {
            // q, k and v: one chunk per head of the stack [q | k | v].
            let mut ready = false;
            m.phase(nh + 2 * nkv, |head| {
                if !ready {
                    // SAFETY: x was completed by an earlier phase.
                    rms_norm_rows(unsafe { b.x.all() }, &layer.attn_norm, eps, h);
                    layer.qkv.prepare(rb, h, t, int8);
                    ready = true;
                }
                let rows = head * hd..(head + 1) * hd;
                // SAFETY: chunk `head` writes that head's columns of q, k or v.
                unsafe {
                    layer.qkv.rows_into(rb, h, t, rows, &[b.q, b.k, b.v], int8);
                }
                if !lora {
                    self.finish_head(b, slots, kv, layer, l, head);
                }
            });
            if lora {
                m.phase(1, |_| {
                    // SAFETY: x was completed by an earlier phase.
                    rms_norm_rows(unsafe { b.x.all() }, &layer.attn_norm, eps, h);
                    // SAFETY: the phase's only chunk.
                    let (q, k, v) = unsafe {
                        (
                            b.q.slice_mut(0..t * qd),
                            b.k.slice_mut(0..t * kvd),
                            b.v.slice_mut(0..t * kvd),
                        )
                    };
                    let at = |p| Site::Layer(l, p);
                    spec.mixes.add(at(Proj::Q), h, d, q, qd, lora_tmp);
                    spec.mixes.add(at(Proj::K), h, d, k, kvd, lora_tmp);
                    spec.mixes.add(at(Proj::V), h, d, v, kvd, lora_tmp);
                });
                m.phase(nh + 2 * nkv, |head| {
                    self.finish_head(b, slots, kv, layer, l, head);
                });
            }

            // Attention: one chunk per (row, query head), or per (row, key/value head) when there
            // are enough of those to keep the members busy.
            let per_task = if t * nkv >= 8 * m.size { group_size } else { 1 };
            let tasks_per_row = nh / per_task;
            let scale = 1.0 / (hd as f32).sqrt();
            m.phase(t * tasks_per_row, |task| {
                let (i, unit) = (task / tasks_per_row, task % tasks_per_row);
                let slot = slots[i];
                let cache = kv[slot.cache * layers + l];
                let len = slot.pos + 1;
                let first_head = unit * per_task;
                let heads = i * qd + first_head * hd..i * qd + (first_head + per_task) * hd;
                scores.resize(per_task * len, 0.0);
                // SAFETY: q and the caches were completed by the phases above; the chunk writes
                // its heads' columns of attn.
                let (q, out) = unsafe { (b.q.slice(heads.clone()), b.attn.slice_mut(heads)) };
                let offset = (first_head / group_size) * hd;
                macro_rules! attend {
                    ($k:expr, $v:expr) => {{
                        let g = GroupInput {
                            q,
                            // SAFETY: as above (the caches are complete for this layer).
                            kc: unsafe { $k.slice(0..len * kvd) },
                            // SAFETY: as above.
                            vc: unsafe { $v.slice(0..len * kvd) },
                            stride: kvd,
                            offset,
                            head_dim: hd,
                            scale,
                            len,
                            total: len,
                        };
                        group(&g, scores, out);
                    }};
                }
                match cache {
                    Kv::F32 { k, v } => attend!(k, v),
                    Kv::F16 { k, v } => attend!(k, v),
                }
            });
            // SAFETY: attn is complete and only read until the next layer's attention phase.
            let attn = unsafe { b.attn.slice(0..t * qd) };
            if let Some(p) = spec.probe {
                m.phase(1, |_| {
                    let mut p = p.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (*p)(Probe::Attention {
                        layer: l,
                        heads: attn,
                    });
                });
            }

            // o_proj and the residual stream, by columns.
            let mut ready = false;
            m.phase(chunks(d), |ci| {
                if !ready {
                    rb.prepare(layer.o.format(), attn, t, int8);
                    ready = true;
                }
                let cols = ci * unit..((ci + 1) * unit).min(d);
                // SAFETY: chunk `ci` writes columns `cols` of o.
                unsafe {
                    rb.rows_into(&layer.o, attn, t, cols.clone(), b.o, d, cols.start, int8);
                }
                if !lora {
                    self.add_residual(b, t, cols, layer.o_bias.as_deref());
                }
            });
            if lora {
                m.phase(1, |_| {
                    // SAFETY: the phase's only chunk.
                    let o = unsafe { b.o.slice_mut(0..t * d) };
                    spec.mixes
                        .add(Site::Layer(l, Proj::O), attn, qd, o, d, lora_tmp);
                });
                m.phase(chunks(d), |ci| {
                    let cols = ci * unit..((ci + 1) * unit).min(d);
                    self.add_residual(b, t, cols, layer.o_bias.as_deref());
                });
            }

            // gate and up: the same columns of both in one chunk, so that SwiGLU follows.
            let mut ready = false;
            let ff_unit = (unit_for(ff) / 2).max(8);
            m.phase(ff.div_ceil(ff_unit), |ci| {
                if !ready {
                    // SAFETY: x was completed by the phase above.
                    rms_norm_rows(unsafe { b.x.all() }, &layer.ffn_norm, eps, h);
                    layer.gate_up.prepare(rb, h, t, int8);
                    ready = true;
                }
                let cols = ci * ff_unit..((ci + 1) * ff_unit).min(ff);
                // SAFETY: chunk `ci` writes columns `cols` of gate and up.
                unsafe {
                    let up = ff + cols.start..ff + cols.end;
                    layer
                        .gate_up
                        .rows_into(rb, h, t, cols.clone(), &[b.gate, b.up], int8);
                    layer.gate_up.rows_into(rb, h, t, up, &[b.gate, b.up], int8);
                }
                if !lora {
                    swiglu(b, t, ff, cols);
                }
            });
            if lora {
                m.phase(1, |_| {
                    // SAFETY: x was completed by an earlier phase.
                    rms_norm_rows(unsafe { b.x.all() }, &layer.ffn_norm, eps, h);
                    // SAFETY: the phase's only chunk.
                    let (g, u) =
                        unsafe { (b.gate.slice_mut(0..t * ff), b.up.slice_mut(0..t * ff)) };
                    spec.mixes
                        .add(Site::Layer(l, Proj::Gate), h, d, g, ff, lora_tmp);
                    spec.mixes
                        .add(Site::Layer(l, Proj::Up), h, d, u, ff, lora_tmp);
                });
                m.phase(ff.div_ceil(ff_unit), |ci| {
                    swiglu(b, t, ff, ci * ff_unit..((ci + 1) * ff_unit).min(ff));
                });
            }
            // SAFETY: gate is complete and only read until the next layer's gate phase.
            let hidden = unsafe { b.gate.slice(0..t * ff) };
            if let Some(p) = spec.probe {
                m.phase(1, |_| {
                    let mut p = p.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (*p)(Probe::Mlp { layer: l, hidden });
                });
            }

            // down_proj and the residual stream, by columns.
            let mut ready = false;
            m.phase(chunks(d), |ci| {
                if !ready {
                    rb.prepare(layer.down.format(), hidden, t, int8);
                    ready = true;
                }
                let cols = ci * unit..((ci + 1) * unit).min(d);
                // SAFETY: chunk `ci` writes columns `cols` of o.
                unsafe {
                    rb.rows_into(
                        &layer.down,
                        hidden,
                        t,
                        cols.clone(),
                        b.o,
                        d,
                        cols.start,
                        int8,
                    );
                }
                if !lora {
                    self.add_residual(b, t, cols, None);
                }
            });
            if lora {
                m.phase(1, |_| {
                    // SAFETY: the phase's only chunk.
                    let o = unsafe { b.o.slice_mut(0..t * d) };
                    spec.mixes
                        .add(Site::Layer(l, Proj::Down), hidden, ff, o, d, lora_tmp);
                });
                m.phase(chunks(d), |ci| {
                    self.add_residual(b, t, ci * unit..((ci + 1) * unit).min(d), None);
                });
            }
        }

        // The logits of rows `logits_from..`, by vocabulary chunks.
        let rows = t - spec.logits_from;
        let v = c.vocab_size;
        let norm_out = |h: &mut Vec<f32>| {
            // SAFETY: x was completed by the last layer's phases.
            let x = unsafe { b.x.slice(spec.logits_from * d..t * d) };
            rms_norm_rows(x, &self.norm, eps, &mut h[..rows * d]);
        };
        let head_unit = unit_for(v) * 8;
        let mut ready = false;
        m.phase(v.div_ceil(head_unit), |ci| {
            if !ready {
                norm_out(h);
                rb.prepare(self.lm_head.format(), &h[..rows * d], rows, int8);
                ready = true;
            }
            let cols = ci * head_unit..((ci + 1) * head_unit).min(v);
            // SAFETY: chunk `ci` writes columns `cols` of the logits.
            unsafe {
                rb.rows_into(
                    &self.lm_head,
                    &h[..rows * d],
                    rows,
                    cols.clone(),
                    b.logits,
                    v,
                    cols.start,
                    int8,
                );
            }
        });
        if lora {
            m.phase(1, |_| {
                norm_out(h);
                // SAFETY: the phase's only chunk.
                let logits = unsafe { b.logits.slice_mut(0..rows * v) };
                let mixes = match spec.mixes {
                    Mixes::PerRow(ms) => Mixes::PerRow(&ms[spec.logits_from..]),
                    one => one,
                };
                mixes.add(Site::LmHead, &h[..rows * d], d, logits, v, lora_tmp);
            });
        }
    }

    /// The work after the q/k/v product for head `head` of the stack [q | k | v]: its bias, RoPE
    /// for q and k, and for k and v the copy into each row's cache.
    fn finish_head(
        &self,
        b: &Bufs,
        slots: &[Slot],
        kv: &[Kv],
        layer: &Layer,
        l: usize,
        head: usize,
    ) {
        let c = &self.config;
        let (hd, qd, kvd) = (
            c.head_dim,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let g = head * hd;
        let (part, buf, width, col, bias) = if g < qd {
            (0, b.q, qd, g, layer.q_bias.as_deref())
        } else if g < qd + kvd {
            (1, b.k, kvd, g - qd, layer.k_bias.as_deref())
        } else {
            (2, b.v, kvd, g - qd - kvd, layer.v_bias.as_deref())
        };
        let cols = col..col + hd;
        for (i, slot) in slots.iter().enumerate() {
            // SAFETY: the chunk of this head owns its columns of every row.
            let row = unsafe { buf.slice_mut(i * width + cols.start..i * width + cols.end) };
            if let Some(bias) = bias {
                row.iter_mut()
                    .zip(&bias[cols.clone()])
                    .for_each(|(y, b)| *y += b);
            }
            if part < 2 {
                self.rope(row, slot.pos);
            }
            if part > 0 {
                let at = slot.pos * kvd + cols.start..slot.pos * kvd + cols.end;
                // SAFETY (both arms): this head's columns of the row's new position.
                match kv[slot.cache * self.layers.len() + l] {
                    Kv::F32 { k, v } => {
                        let dst = if part == 1 { k } else { v };
                        unsafe { dst.slice_mut(at) }.copy_from_slice(row);
                    }
                    Kv::F16 { k, v } => {
                        let dst = if part == 1 { k } else { v };
                        unsafe { dst.slice_mut(at) }.convert_from_f32_slice(row);
                    }
                }
            }
        }
    }

    /// `x += o (+ bias)` on columns `cols` of every row.
    fn add_residual(&self, b: &Bufs, t: usize, cols: Range<usize>, bias: Option<&[f32]>) {
        let d = self.config.hidden_size;
        for i in 0..t {
            let r = i * d + cols.start..i * d + cols.end;
            // SAFETY: the calling member's own columns of x and o.
            let (x, o) = unsafe { (b.x.slice_mut(r.clone()), b.o.slice(r)) };
            match bias {
                Some(bias) => x
                    .iter_mut()
                    .zip(o)
                    .zip(&bias[cols.clone()])
                    .for_each(|((x, o), b)| *x += o + b),
                None => x.iter_mut().zip(o).for_each(|(x, o)| *x += o),
            }
        }
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

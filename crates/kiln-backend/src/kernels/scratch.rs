//! The activations as the quantized kernels consume them: [`Scratch`] (8-bit blocks, the NF4 order,
//! the packed kernel's offset terms) and the quantization itself.

use super::{BLOCK, WeightFormat, nf4};
#[cfg(target_arch = "x86_64")]
use super::{SimdPath, x86_packed, x86_quant};

/// Activations quantized to 8 bits per 32-element block, as the quantized kernels consume them.
///
/// Reuse one across calls to avoid allocating: it only grows.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    /// Quantized values, `n · cols`.
    pub(super) qs: Vec<i8>,
    /// Per block: the scale `d` (value ≈ `q · d`).
    d: Vec<f32>,
    /// Per block: `d · Σq`, the block sum of the dequantized activations.
    s: Vec<f32>,
    /// f32 activations in the NF4 kernels' order (see `nf4::deinterleave`).
    pub(super) xf: Vec<f32>,
    /// Per block: the integer offset term `-o · Σq` of the packed kernel (`o` = 8 for Q4_0, 128
    /// for Q8_0); empty when unused.
    pub(super) off: Vec<i32>,
}

impl Scratch {
    /// An empty scratch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A scratch already large enough for `n` activation rows of `cols` elements.
    #[must_use]
    pub fn with_capacity(n: usize, cols: usize) -> Self {
        let blocks = n * cols.div_ceil(BLOCK);
        Self {
            qs: Vec::with_capacity(n * cols),
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
            xf: Vec::new(),
            off: Vec::new(),
        }
    }

    /// Prepares `n` activation rows `x` (`n` times the matrix's width) for products with weights
    /// in `format`, for [`matmul_rows`](super::matmul_rows): quantized to 8 bits per block for
    /// Q4_0, Q4_1 and Q8_0 (with, on AVX-512, the blocks' integer offset terms for the packed
    /// kernel), reordered for NF4, nothing for the float formats (they read `x` itself).
    ///
    /// # Panics
    /// When `x.len()` is not a multiple of `n` or a row is not a whole number of 32-blocks.
    pub fn prepare(&mut self, format: WeightFormat, x: &[f32], n: usize) {
        assert!(
            if n == 0 {
                x.is_empty()
            } else {
                x.len().is_multiple_of(n)
            },
            "prepare: x.len() {} is not {n} rows",
            x.len()
        );
        if format.is_quantized() {
            self.quantize(x);
            self.off.clear();
            #[cfg(target_arch = "x86_64")]
            if SimdPath::detect() == SimdPath::Avx512 {
                let o = match format {
                    WeightFormat::Q4_0 => 8,
                    WeightFormat::Q8_0 => 128,
                    _ => 0,
                };
                if o != 0 {
                    self.off.extend(
                        self.qs
                            .chunks_exact(BLOCK)
                            .map(|b| -o * b.iter().map(|&q| i32::from(q)).sum::<i32>()),
                    );
                }
            }
        } else if format == WeightFormat::Nf4 {
            nf4::deinterleave(x, &mut self.xf);
        }
    }

    /// Quantizes `x` (a whole number of 32-blocks) into this scratch.
    pub(super) fn quantize(&mut self, x: &[f32]) {
        debug_assert_eq!(x.len() % BLOCK, 0);
        let blocks = x.len() / BLOCK;
        self.qs.resize(x.len(), 0);
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
        #[cfg(target_arch = "x86_64")]
        if SimdPath::detect() == SimdPath::Avx512 {
            // SAFETY: AVX-512 F/BW are present (detected); the lengths are as sized above.
            unsafe { x86_quant::quantize_avx512(x, &mut self.qs, &mut self.d, &mut self.s) };
            return;
        }
        quantize_portable(x, &mut self.qs, &mut self.d, &mut self.s);
    }

    /// Activation rows `j..j + take` for the packed kernel (`blocks` blocks per row).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn acts(&self, j: usize, take: usize, blocks: usize) -> x86_packed::Acts<'_> {
        let (b0, b1) = (j * blocks, (j + take) * blocks);
        x86_packed::Acts {
            qs: &self.qs[b0 * BLOCK..b1 * BLOCK],
            d: &self.d[b0..b1],
            s: &self.s[b0..b1],
            off: self.off.get(b0..b1).unwrap_or(&[]),
        }
    }

    #[inline]
    pub(super) fn view(&self, j: usize, blocks: usize) -> Q8View<'_> {
        Q8View {
            qs: &self.qs[j * blocks * BLOCK..(j + 1) * blocks * BLOCK],
            d: &self.d[j * blocks..(j + 1) * blocks],
            s: &self.s[j * blocks..(j + 1) * blocks],
        }
    }
}

/// Quantizes the 32-blocks of `x` to 8 bits: `qs` the values, `d` the scales (`max|x| / 127`), `s`
/// the scaled sums `d · Σq` (llama.cpp's Q8 activations; the portable reference of
/// `x86_quant::quantize_avx512`).
pub(super) fn quantize_portable(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((xb, qb), d), s) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(d)
        .zip(s)
    {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in qb.iter_mut().zip(xb) {
            let r = nearest_int(v * inv).clamp(-127, 127);
            *q = r as i8;
            sum += r;
        }
        *d = scale;
        *s = scale * sum as f32;
    }
}

/// Rounds to the nearest integer, ties to even, for `|v| ≤ 2^22` (llama.cpp's `nearest_int`): adding
/// 1.5·2^23 leaves the rounded integer in the low mantissa bits. Branch-free and vectorizable, unlike
/// `f32::round`, which is a library call on baseline x86-64. Out-of-range inputs (only from
/// non-finite activations) give some value that the caller clamps.
#[inline]
pub(super) fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() & 0x007F_FFFF) as i32 - 0x0040_0000
}

/// One quantized activation row: `blocks · 32` values, and per block the scale and scaled sum.
#[derive(Clone, Copy)]
pub(crate) struct Q8View<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
}

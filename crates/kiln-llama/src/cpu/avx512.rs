//! AVX-512 bodies of the exact matmul for the 32-element block formats: the block's integers are
//! widened to f32 in registers, scaled by the block's `d`, and multiplied with f32 activations; the
//! offset term (`m` of Q4_1, `-8·d` of Q4_0) is applied once per block through the activations'
//! precomputed block sums. The result is the dequantize-then-multiply product up to rounding order.

use std::arch::x86_64::*;

use kiln_backend::kernels::{QuantMatrix, WeightFormat};

use super::matmul::{ACT_TILE, BLOCK};

/// Widens one block's 32 quantized values to two vectors of 16 f32 (elements 0..16, 16..32) and
/// returns them with the block's scale and offset (value = q·d + off).
#[inline(always)]
unsafe fn load_block(format: WeightFormat, b: *const u8) -> (__m512, __m512, f32, f32) {
    // SAFETY (all loads): the caller passes a pointer to a whole block of `format`.
    unsafe {
        let d = f16_to_f32(b);
        match format {
            WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
                let (qs, off) = if format == WeightFormat::Q4_1 {
                    (b.add(4), f16_to_f32(b.add(2)))
                } else {
                    (b.add(2), -8.0 * d)
                };
                let bytes = _mm_loadu_si128(qs as *const __m128i);
                let mask = _mm_set1_epi8(0x0f);
                let lo = _mm_and_si128(bytes, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
                (
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)),
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)),
                    d,
                    off,
                )
            }
            _ => {
                let q = b.add(2);
                let a = _mm_loadu_si128(q as *const __m128i);
                let c = _mm_loadu_si128(q.add(16) as *const __m128i);
                (
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a)),
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c)),
                    d,
                    0.0,
                )
            }
        }
    }
}

#[inline(always)]
unsafe fn f16_to_f32(p: *const u8) -> f32 {
    // SAFETY: two readable bytes at `p`; F16C is enabled by the caller's target features.
    unsafe {
        let bits = i32::from(u16::from_le_bytes([*p, *p.add(1)]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
    }
}

/// Rows `first..first + out.len() / n` of `y = x Wᵀ` into `out` (`[n, task_rows]` tile).
/// `xsum` holds the sum of every 32-block of every activation row (`[n, cols / 32]`).
///
/// # Safety
/// The CPU must support AVX-512F and F16C; `w` must be a Q4_0, Q4_1 or Q8_0 matrix and the slices sized as
/// described.
#[target_feature(enable = "avx512f,f16c")]
pub(crate) unsafe fn rows(
    w: &QuantMatrix,
    x: &[f32],
    xsum: &[f32],
    n: usize,
    first: usize,
    out: &mut [f32],
) {
    let (cols, format) = (w.cols(), w.format());
    let bb = format.block_bytes();
    let blocks = cols / BLOCK;
    let task_rows = out.len() / n;
    for i0 in (0..n).step_by(ACT_TILE) {
        let m = ACT_TILE.min(n - i0);
        for r in 0..task_rows {
            let row = w.row(first + r).as_ptr();
            let mut acc = [_mm512_setzero_ps(); ACT_TILE];
            let mut off_acc = [0f32; ACT_TILE];
            for b in 0..blocks {
                // SAFETY: `row` holds `blocks` whole blocks; `x` rows hold `cols` values.
                unsafe {
                    let (q0, q1, d, off) = load_block(format, row.add(b * bb));
                    let dv = _mm512_set1_ps(d);
                    let w0 = _mm512_mul_ps(q0, dv);
                    let w1 = _mm512_mul_ps(q1, dv);
                    for k in 0..m {
                        let xp = x.as_ptr().add((i0 + k) * cols + b * BLOCK);
                        acc[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp), acc[k]);
                        acc[k] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp.add(16)), acc[k]);
                        off_acc[k] += off * xsum[(i0 + k) * blocks + b];
                    }
                }
            }
            for k in 0..m {
                out[(i0 + k) * task_rows + r] = _mm512_reduce_add_ps(acc[k]) + off_acc[k];
            }
        }
    }
}

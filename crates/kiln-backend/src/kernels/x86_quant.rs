//! AVX-512 quantization of activations to 8 bits per 32-element block (what the Q4/Q8 kernels
//! consume), bit-identical to the portable loop in `Scratch::quantize`: the same f32 operations
//! (block maximum, `d = max / 127`, `q = round_half_even(x / d)` through the reciprocal, clamped to
//! ±127), sixteen lanes at a time.

use std::arch::x86_64::*;

use super::BLOCK;

/// Quantizes the blocks of `x` into `qs` (values), `d` (scales) and `s` (`d · Σq`).
///
/// # Safety
/// The CPU must support AVX-512 F and BW; `x.len()` is a multiple of 32, `qs` as long as `x`, `d`
/// and `s` one element per block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn quantize_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let blocks = x.len() / BLOCK;
    assert!(qs.len() == x.len() && d.len() == blocks && s.len() == blocks);
    let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
    for b in 0..blocks {
        // SAFETY: block `b` is in bounds of `x` and `qs` (asserted above).
        unsafe {
            let xp = x.as_ptr().add(b * BLOCK);
            let v = [_mm512_loadu_ps(xp), _mm512_loadu_ps(xp.add(16))];
            let amax =
                _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
            let scale = amax / 127.0;
            let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
            let mut sum = _mm512_setzero_si512();
            for (h, v) in v.into_iter().enumerate() {
                let q = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(v, inv),
                );
                let q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
                sum = _mm512_add_epi32(sum, q);
                _mm_storeu_si128(
                    qs.as_mut_ptr().add(b * BLOCK + 16 * h).cast(),
                    _mm512_cvtepi32_epi8(q),
                );
            }
            d[b] = scale;
            s[b] = scale * _mm512_reduce_add_epi32(sum) as f32;
        }
    }
}

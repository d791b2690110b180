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

/// Four little-endian f16 values at `p + k·stride`, `k = 0..4`, widened (F16C).
///
/// # Safety
/// The four pairs of bytes must be readable; F16C must be enabled by the caller.
#[inline(always)]
unsafe fn f16x4(p: *const u8, stride: usize) -> __m128 {
    // SAFETY: the caller guarantees the bytes are readable; reads are unaligned.
    unsafe {
        let h = |k: usize| u64::from(p.add(k * stride).cast::<u16>().read_unaligned());
        let bits = h(0) | (h(1) << 16) | (h(2) << 32) | (h(3) << 48);
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
    }
}

/// Lane `k` of `v` in all sixteen lanes.
#[inline(always)]
unsafe fn lane(v: __m128, k: i32) -> __m512 {
    // SAFETY: AVX-512F is enabled by the caller.
    unsafe { _mm512_permutexvar_ps(_mm512_set1_epi32(k), _mm512_castps128_ps512(v)) }
}

/// Rows `first..first + out.len() / n` of `y = x Wᵀ` into `out` (`[n, task_rows]` tile).
/// `xsum` holds the sum of every 32-block of every activation row (`[n, cols / 32]`). (With two or
/// more rows on CPUs with VNNI, the engine takes kiln-backend's packed kernel instead.)
///
/// Four blocks per step, their f16 scales (and Q4_1 minimums) converted together. Q4 blocks are
/// dequantized by table lookup: the 16 values `d·q + m` of a block are one FMA on `0..16`, and
/// `vpermps` picks each weight's value by its nibble.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, FMA and F16C; `w` must be a Q4_0, Q4_1 or Q8_0 matrix
/// and the slices sized as described.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn rows(
    w: &QuantMatrix,
    x: &[f32],
    xsum: &[f32],
    n: usize,
    first: usize,
    out: &mut [f32],
) {
    if n == 1 {
        // SAFETY: as this function's contract.
        unsafe { rows_single(w, x, xsum, first, out) };
        return;
    }
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
            let mut b = 0;
            // SAFETY (all pointer reads below): `row` holds `blocks` whole blocks; `x` rows hold
            // `cols` values and `xsum` rows `blocks` values.
            unsafe {
                while b + 4 <= blocks {
                    let p = row.add(b * bb);
                    let d4 = f16x4(p, bb);
                    if format == WeightFormat::Q8_0 {
                        for k in 0..4 {
                            let (q0, q1, _, _) = load_block(format, p.add(k * bb));
                            let dv = lane(d4, k as i32);
                            let w0 = _mm512_mul_ps(q0, dv);
                            let w1 = _mm512_mul_ps(q1, dv);
                            for (t, a) in acc.iter_mut().enumerate().take(m) {
                                let xp = x.as_ptr().add((i0 + t) * cols + (b + k) * BLOCK);
                                *a = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp), *a);
                                *a = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp.add(16)), *a);
                            }
                        }
                    } else {
                        // Q4: the block's 16 possible values `d·q + m` (m = -8d for Q4_0) form a
                        // table that the nibbles index (`vpermps`), so the weights come out
                        // dequantized and the offset needs no separate term.
                        let m4 = if format == WeightFormat::Q4_1 {
                            f16x4(p.add(2), bb)
                        } else {
                            _mm_mul_ps(d4, _mm_set1_ps(-8.0))
                        };
                        let qs = if format == WeightFormat::Q4_1 { 4 } else { 2 };
                        for k in 0..4 {
                            let (w0, w1) = q4_lookup(
                                p.add(k * bb),
                                qs,
                                lane(d4, k as i32),
                                lane(m4, k as i32),
                            );
                            for (t, a) in acc.iter_mut().enumerate().take(m) {
                                let xp = x.as_ptr().add((i0 + t) * cols + (b + k) * BLOCK);
                                *a = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp), *a);
                                *a = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp.add(16)), *a);
                            }
                        }
                    }
                    b += 4;
                }
                for b in b..blocks {
                    let (q0, q1, d, off) = load_block(format, row.add(b * bb));
                    let dv = _mm512_set1_ps(d);
                    let w0 = _mm512_mul_ps(q0, dv);
                    let w1 = _mm512_mul_ps(q1, dv);
                    for t in 0..m {
                        let xp = x.as_ptr().add((i0 + t) * cols + b * BLOCK);
                        acc[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp), acc[t]);
                        acc[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp.add(16)), acc[t]);
                        off_acc[t] += off * xsum[(i0 + t) * blocks + b];
                    }
                }
            }
            for t in 0..m {
                out[(i0 + t) * task_rows + r] = _mm512_reduce_add_ps(acc[t]) + off_acc[t];
            }
        }
    }
}

/// One dequantized Q4 block by table lookup (see [`rows`]): the block's weights as two vectors.
///
/// # Safety
/// `p` points at a whole Q4_0/Q4_1 block; AVX-512F must be enabled by the caller.
#[inline(always)]
unsafe fn q4_lookup(p: *const u8, qs: usize, dv: __m512, mv: __m512) -> (__m512, __m512) {
    // SAFETY: the caller guarantees the block is readable.
    unsafe {
        let iota = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        let table = _mm512_fmadd_ps(iota, dv, mv);
        let mask = _mm_set1_epi8(0x0f);
        let bytes = _mm_loadu_si128(p.add(qs) as *const __m128i);
        let lo = _mm512_cvtepu8_epi32(_mm_and_si128(bytes, mask));
        let hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask));
        (
            _mm512_permutexvar_ps(lo, table),
            _mm512_permutexvar_ps(hi, table),
        )
    }
}

/// [`rows`] for one activation row (decode): accumulators in registers, no tile loop. Q4 blocks
/// are not dequantized: each block's products `q·x` are summed and scaled by `d` once, the
/// offsets applied through the block sums (`Σ (d·q + m)·x = d·Σ q·x + m·Σ x`), which takes
/// fewer instructions than the table of `d·q + m` (14-15.7 -> 16.5-20 GMAC/s per core here).
///
/// # Safety
/// As [`rows`] with `n == 1`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn rows_single(w: &QuantMatrix, x: &[f32], xsum: &[f32], first: usize, out: &mut [f32]) {
    let (cols, format) = (w.cols(), w.format());
    let bb = format.block_bytes();
    let blocks = cols / BLOCK;
    let xp = x.as_ptr();
    // Row sums are reduced eight rows at a time (`reduce8`): a horizontal sum per row costs about
    // as much as three of the 18 blocks of a 576-wide row.
    let mut pending = [_mm512_setzero_ps(); 8];
    let mut offs = [0f32; 8];
    for r in 0..out.len() {
        let row = w.row(first + r).as_ptr();
        // Four accumulators (Q8_0: two per half-block; Q4: the first two), alternating between
        // blocks, so that consecutive blocks' FMAs do not wait on each other's latency.
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut off = 0f32;
        let mut off4 = _mm_setzero_ps();
        // Q4: the nibble values as f32, looked up by `vpermps` (which reads an index's low four
        // bits, so neither nibble needs masking).
        let values = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        let mut b = 0;
        // SAFETY (all pointer reads): `row` holds `blocks` whole blocks, `x` holds `cols` values
        // and `xsum` holds `blocks` values.
        unsafe {
            while b + 4 <= blocks {
                let p = row.add(b * bb);
                let d4 = f16x4(p, bb);
                match format {
                    WeightFormat::Q8_0 => {
                        for k in 0..4 {
                            let (q0, q1, _, _) = load_block(format, p.add(k * bb));
                            let dv = lane(d4, k as i32);
                            let xb = xp.add((b + k) * BLOCK);
                            let a = 2 * (k & 1);
                            acc[a] =
                                _mm512_fmadd_ps(_mm512_mul_ps(q0, dv), _mm512_loadu_ps(xb), acc[a]);
                            acc[a + 1] = _mm512_fmadd_ps(
                                _mm512_mul_ps(q1, dv),
                                _mm512_loadu_ps(xb.add(16)),
                                acc[a + 1],
                            );
                        }
                    }
                    _ => {
                        let (m4, qs) = if format == WeightFormat::Q4_1 {
                            (f16x4(p.add(2), bb), 4)
                        } else {
                            (_mm_mul_ps(d4, _mm_set1_ps(-8.0)), 2)
                        };
                        // Σ (d·q + m)·x = d·Σ q·x + m·Σ x: the block's nibbles as f32 (its
                        // bytes widened, each nibble looked up), its scale applied once to the
                        // block's partial products and the offset through the activations'
                        // block sums. Seven vector instructions per block: this core runs about
                        // one and a quarter 512-bit instructions per cycle here, so their count
                        // sets the speed more than their kind.
                        let mut dm = [0f32; 4];
                        _mm_storeu_ps(dm.as_mut_ptr(), d4);
                        for (k, &dk) in dm.iter().enumerate() {
                            let q = p.add(k * bb + qs);
                            let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(q.cast()));
                            let lo = _mm512_permutexvar_ps(v, values);
                            let hi = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(v), values);
                            let xb = xp.add((b + k) * BLOCK);
                            let part = _mm512_fmadd_ps(
                                hi,
                                _mm512_loadu_ps(xb.add(16)),
                                _mm512_mul_ps(lo, _mm512_loadu_ps(xb)),
                            );
                            let a = k & 1;
                            acc[a] = _mm512_fmadd_ps(part, _mm512_set1_ps(dk), acc[a]);
                        }
                        off4 = _mm_fmadd_ps(m4, _mm_loadu_ps(xsum.as_ptr().add(b)), off4);
                    }
                }
                b += 4;
            }
            for b in b..blocks {
                let (q0, q1, d, offset) = load_block(format, row.add(b * bb));
                let dv = _mm512_set1_ps(d);
                let xb = xp.add(b * BLOCK);
                acc[0] = _mm512_fmadd_ps(_mm512_mul_ps(q0, dv), _mm512_loadu_ps(xb), acc[0]);
                acc[1] =
                    _mm512_fmadd_ps(_mm512_mul_ps(q1, dv), _mm512_loadu_ps(xb.add(16)), acc[1]);
                off += offset * *xsum.get_unchecked(b);
            }
        }
        pending[r % 8] = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])),
            _mm512_zextps128_ps512(off4),
        );
        offs[r % 8] = off;
        if r % 8 == 7 {
            // SAFETY: this function enables the same features.
            let sums = unsafe { reduce8(&pending) };
            for (k, o) in out[r - 7..=r].iter_mut().enumerate() {
                *o = sums[k] + offs[k];
            }
        }
    }
    let done = out.len() / 8 * 8;
    for (k, o) in out[done..].iter_mut().enumerate() {
        *o = _mm512_reduce_add_ps(pending[k]) + offs[k];
    }
}

/// The horizontal sums of eight vectors, in order (halves added, then two rounds of `vhaddps`
/// and one lane exchange instead of eight separate reductions).
///
/// # Safety
/// AVX-512F/BW/VL, FMA and F16C must be available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn reduce8(v: &[__m512; 8]) -> [f32; 8] {
    {
        let h = |z: __m512| {
            let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z));
            _mm256_add_ps(_mm512_castps512_ps256(z), _mm256_castpd_ps(hi))
        };
        let (a, b, c, d) = (h(v[0]), h(v[1]), h(v[2]), h(v[3]));
        let (e, f, g, k) = (h(v[4]), h(v[5]), h(v[6]), h(v[7]));
        let abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
        let efgk = _mm256_hadd_ps(_mm256_hadd_ps(e, f), _mm256_hadd_ps(g, k));
        let sum = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(abcd, efgk),
            _mm256_permute2f128_ps::<0x31>(abcd, efgk),
        );
        let mut out = [0f32; 8];
        // SAFETY: `out` has room for eight f32.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out
    }
}

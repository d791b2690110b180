//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI).
//!
//! Every function here is `#[target_feature]`; the dispatcher in `mod.rs` calls them only after
//! `SimdPath::is_supported` said the CPU has those features. Loads are unaligned: weight bytes come
//! straight from a GGUF file or memory map.

use std::arch::x86_64::*;

use super::scalar;
use super::{BLOCK, Input, Q8View, WeightFormat};

/// Reads a little-endian f16 at `p` and widens it.
///
/// # Safety
/// `p..p+2` must be readable; F16C must be available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes; `read_unaligned` has no alignment need.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s));
    _mm_cvtss_f32(s)
}

/// Σ over 8 lanes of groups of four `u8 · i8` products, as f32 (no overflow: |pair sum| ≤ 2·255·127).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8i8_256(w: __m256i, x: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(w, x);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// The 32 nibbles of a Q4 block (16 bytes at `p`) as bytes 0..16 in element order.
///
/// # Safety
/// `p..p+16` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_nibbles_256(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes; the load is unaligned.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16::<4>(q), q),
        _mm256_set1_epi8(0x0F),
    )
}

/// One Q4_0 / Q4_1 block (`BB` bytes, nibbles at `QS`) dotted with one activation block, in f32, plus
/// the block's offset term. `MIN`: Q4_1 (offset `m · Σx`), else Q4_0 (offset `-8 d · Σx`).
///
/// # Safety
/// `p..p+BB` and `xq..xq+32` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_block_256<const QS: usize, const MIN: bool>(
    p: *const u8,
    xq: *const i8,
    dx: f32,
    sx: f32,
) -> f32 {
    // SAFETY: the caller guarantees the block and activation bytes are readable.
    unsafe {
        let d = f16_at(p);
        let c = if MIN { f16_at(p.add(2)) } else { -8.0 * d };
        let w = q4_nibbles_256(p.add(QS));
        let x = _mm256_loadu_si256(xq.cast());
        hsum256(dot_u8i8_256(w, x)) * d * dx + c * sx
    }
}

/// Q4_0 (`BB = 18, QS = 2`) or Q4_1 (`BB = 20, QS = 4, MIN`) row · quantized activations.
///
/// # Safety
/// `row.len() == a.d.len() * BB`, `a.qs.len() == a.d.len() * 32`, `a.s.len() == a.d.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_avx2<const BB: usize, const QS: usize, const MIN: bool>(
    row: &[u8],
    a: Q8View<'_>,
) -> f32 {
    let nb = a.d.len();
    let rp = row.as_ptr();
    let xp = a.qs.as_ptr();
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0.0f32;
    for b in 0..nb {
        // SAFETY: `b < nb`, so the block `b·BB..(b+1)·BB` of the row, the activations
        // `32b..32b+32` and `d[b]`, `s[b]` are in bounds (the caller's length contract).
        unsafe {
            let p = rp.add(b * BB);
            let d = f16_at(p);
            let c = if MIN { f16_at(p.add(2)) } else { -8.0 * d };
            let w = q4_nibbles_256(p.add(QS));
            let x = _mm256_loadu_si256(xp.add(b * BLOCK).cast());
            let scale = _mm256_set1_ps(d * *a.d.get_unchecked(b));
            acc = _mm256_fmadd_ps(dot_u8i8_256(w, x), scale, acc);
            offset += c * *a.s.get_unchecked(b);
        }
    }
    hsum256(acc) + offset
}

/// Q8_0 row · quantized activations, with the sign trick so that `vpmaddubsw` sees `|w| · (±x)`.
///
/// # Safety
/// `row.len() == a.d.len() * 34`, `a.qs.len() == a.d.len() * 32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_avx2(row: &[u8], a: Q8View<'_>) -> f32 {
    let nb = a.d.len();
    let rp = row.as_ptr();
    let xp = a.qs.as_ptr();
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        // SAFETY: `b < nb`; see the caller's length contract.
        unsafe {
            let p = rp.add(b * 34);
            let d = f16_at(p);
            let w = _mm256_loadu_si256(p.add(2).cast());
            let x = _mm256_loadu_si256(xp.add(b * BLOCK).cast());
            // |-128| wraps to 0x80 = 128 as the unsigned operand, which is right.
            let aw = _mm256_abs_epi8(w);
            let sx = _mm256_sign_epi8(x, w);
            let scale = _mm256_set1_ps(d * *a.d.get_unchecked(b));
            acc = _mm256_fmadd_ps(dot_u8i8_256(aw, sx), scale, acc);
        }
    }
    hsum256(acc)
}

/// Float kinds: 0 = f32, 1 = f16, 2 = bf16.
const K_F32: u8 = 0;
const K_F16: u8 = 1;
const K_BF16: u8 = 2;

/// Eight weights at element `i` of `wp`, widened to f32.
///
/// # Safety
/// The eight elements must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const K: u8>(wp: *const u8, i: usize) -> __m256 {
    // SAFETY: the caller guarantees the bytes are readable; loads are unaligned.
    unsafe {
        match K {
            K_F32 => _mm256_loadu_ps(wp.add(4 * i).cast()),
            K_F16 => _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i).cast())),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(wp.add(2 * i).cast()),
            ))),
        }
    }
}

fn scalar_tail(format: WeightFormat, row: &[u8], x: &[f32], from: usize) -> f32 {
    let width = if format == WeightFormat::F32 { 4 } else { 2 };
    let mut w = [0.0f32; 1];
    let mut sum = 0.0f32;
    for (i, &xv) in x.iter().enumerate().skip(from) {
        scalar::dequantize(format, &row[i * width..(i + 1) * width], &mut w);
        sum = w[0].mul_add(xv, sum);
    }
    sum
}

/// Float row · f32 activations.
///
/// # Safety
/// `row.len() == x.len() * width(K)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_float_avx2<const K: u8>(format: WeightFormat, row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let wp = row.as_ptr();
    let xp = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads elements `i..i+8` with `i + 8 <= n` (the caller's length contract).
    unsafe {
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                *a = _mm256_fmadd_ps(load8::<K>(wp, j), _mm256_loadu_ps(xp.add(j)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(load8::<K>(wp, i), _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum256(v) + scalar_tail(format, row, x, i)
}

/// Checks the length contract of the row kernels (once per chunk, so memory safety never rests on
/// the callers' arithmetic).
fn check(format: WeightFormat, row_bytes: usize, input: Input<'_>) {
    match input {
        Input::F32(x) => assert_eq!(x.len() * format.block_bytes(), row_bytes),
        Input::Q8(a) => {
            assert_eq!(a.d.len() * format.block_bytes(), row_bytes);
            assert_eq!(a.qs.len(), a.d.len() * BLOCK);
            assert_eq!(a.s.len(), a.d.len());
        }
    }
}

macro_rules! each_row {
    ($rows:expr, $row_bytes:expr, $out:expr, |$row:ident| $body:expr) => {
        for (o, $row) in $out.iter_mut().zip($rows.chunks_exact($row_bytes)) {
            *o = $body;
        }
    };
}

/// `out[i] = row_i · input` on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_avx2(
    format: WeightFormat,
    rows: &[u8],
    row_bytes: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    check(format, row_bytes, input);
    // SAFETY (all kernel calls): `check` established the length contract for every row of
    // `row_bytes`, and the caller guarantees the CPU features.
    unsafe {
        match (format, input) {
            (WeightFormat::F32, Input::F32(x)) => {
                each_row!(rows, row_bytes, out, |r| dot_float_avx2::<K_F32>(
                    format, r, x
                ));
            }
            (WeightFormat::F16, Input::F32(x)) => {
                each_row!(rows, row_bytes, out, |r| dot_float_avx2::<K_F16>(
                    format, r, x
                ));
            }
            (WeightFormat::BF16, Input::F32(x)) => {
                each_row!(rows, row_bytes, out, |r| dot_float_avx2::<K_BF16>(
                    format, r, x
                ));
            }
            (WeightFormat::Q4_0, Input::Q8(a)) => {
                each_row!(rows, row_bytes, out, |r| dot_q4_avx2::<18, 2, false>(r, a));
            }
            (WeightFormat::Q4_1, Input::Q8(a)) => {
                each_row!(rows, row_bytes, out, |r| dot_q4_avx2::<20, 4, true>(r, a));
            }
            (WeightFormat::Q8_0, Input::Q8(a)) => {
                each_row!(rows, row_bytes, out, |r| dot_q8_0_avx2(r, a));
            }
            _ => unreachable!("format {format} with the wrong activation kind"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512
// ---------------------------------------------------------------------------------------------

/// Per-lane scale: `s0` in lanes 0..8 (block 0), `s1` in lanes 8..16 (block 1).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn two_scales(s0: f32, s1: f32) -> __m512 {
    _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(s0), _mm512_set1_ps(s1))
}

/// Q4_0 / Q4_1 row · quantized activations, two blocks per `vpdpbusd`.
///
/// # Safety
/// As [`dot_q4_avx2`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_avx512<const BB: usize, const QS: usize, const MIN: bool>(
    row: &[u8],
    a: Q8View<'_>,
) -> f32 {
    let nb = a.d.len();
    let rp = row.as_ptr();
    let xp = a.qs.as_ptr();
    let mask = _mm512_set1_epi8(0x0F);
    // 64-bit lanes 2,3 and 6,7 hold the high nibbles of blocks 0 and 1.
    let shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut offset = 0.0f32;
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        while b + 2 <= nb {
            let p0 = rp.add(b * BB);
            let p1 = p0.add(BB);
            let d0 = f16_at(p0);
            let d1 = f16_at(p1);
            let (c0, c1) = if MIN {
                (f16_at(p0.add(2)), f16_at(p1.add(2)))
            } else {
                (-8.0 * d0, -8.0 * d1)
            };
            let q0 = _mm_loadu_si128(p0.add(QS).cast());
            let q1 = _mm_loadu_si128(p1.add(QS).cast());
            // 128-bit lanes [q0, q0, q1, q1], then shift the 2nd copy of each by 4 and mask.
            let v = _mm512_castsi256_si512(_mm256_set_m128i(q1, q0));
            let v = _mm512_shuffle_i64x2::<0x50>(v, v);
            let w = _mm512_and_si512(_mm512_srlv_epi64(v, shifts), mask);
            let x = _mm512_loadu_si512(xp.add(b * BLOCK).cast());
            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
            let scale = two_scales(d0 * *a.d.get_unchecked(b), d1 * *a.d.get_unchecked(b + 1));
            let k = (b / 2) & 1;
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[k]);
            offset += c0 * *a.s.get_unchecked(b) + c1 * *a.s.get_unchecked(b + 1);
            b += 2;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) + offset;
        if b < nb {
            sum += q4_block_256::<QS, MIN>(
                rp.add(b * BB),
                xp.add(b * BLOCK),
                *a.d.get_unchecked(b),
                *a.s.get_unchecked(b),
            );
        }
        sum
    }
}

/// Q8_0 row · quantized activations, two blocks per `vpdpbusd` (`|w| · (±x)`).
///
/// # Safety
/// As [`dot_q8_0_avx2`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q8_0_avx512(row: &[u8], a: Q8View<'_>) -> f32 {
    let nb = a.d.len();
    let rp = row.as_ptr();
    let xp = a.qs.as_ptr();
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        while b + 2 <= nb {
            let p0 = rp.add(b * 34);
            let p1 = p0.add(34);
            let d0 = f16_at(p0);
            let d1 = f16_at(p1);
            let w = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(p0.add(2).cast())),
                _mm256_loadu_si256(p1.add(2).cast()),
            );
            let x = _mm512_loadu_si512(xp.add(b * BLOCK).cast());
            let aw = _mm512_abs_epi8(w);
            let sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), zero, x);
            let dot = _mm512_dpbusd_epi32(zero, aw, sx);
            let scale = two_scales(d0 * *a.d.get_unchecked(b), d1 * *a.d.get_unchecked(b + 1));
            let k = (b / 2) & 1;
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[k]);
            b += 2;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
        if b < nb {
            let p = rp.add(b * 34);
            let w = _mm256_loadu_si256(p.add(2).cast());
            let x = _mm256_loadu_si256(xp.add(b * BLOCK).cast());
            let dot = dot_u8i8_256(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
            sum += hsum256(dot) * f16_at(p) * *a.d.get_unchecked(b);
        }
        sum
    }
}

/// Sixteen weights at element `i` of `wp`, widened to f32.
///
/// # Safety
/// The sixteen elements must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn load16<const K: u8>(wp: *const u8, i: usize) -> __m512 {
    // SAFETY: the caller guarantees the bytes are readable; loads are unaligned.
    unsafe {
        match K {
            K_F32 => _mm512_loadu_ps(wp.add(4 * i).cast()),
            K_F16 => _mm512_cvtph_ps(_mm256_loadu_si256(wp.add(2 * i).cast())),
            _ => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(wp.add(2 * i).cast()),
            ))),
        }
    }
}

/// Float row · f32 activations on AVX-512.
///
/// # Safety
/// `row.len() == x.len() * width(K)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_float_avx512<const K: u8>(format: WeightFormat, row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let wp = row.as_ptr();
    let xp = x.as_ptr();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads elements `i..i+16` with `i + 16 <= n` (the caller's length contract).
    unsafe {
        while i + 64 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let j = i + 16 * k;
                *a = _mm512_fmadd_ps(load16::<K>(wp, j), _mm512_loadu_ps(xp.add(j)), *a);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(load16::<K>(wp, i), _mm512_loadu_ps(xp.add(i)), acc[0]);
            i += 16;
        }
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(v) + scalar_tail(format, row, x, i)
}

/// `out[i] = row_i · input` on AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn rows_avx512(
    format: WeightFormat,
    rows: &[u8],
    row_bytes: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    check(format, row_bytes, input);
    // SAFETY (all kernel calls): `check` established the length contract for every row of
    // `row_bytes`, and the caller guarantees the CPU features.
    unsafe {
        match (format, input) {
            (WeightFormat::F32, Input::F32(x)) => {
                each_row!(rows, row_bytes, out, |r| dot_float_avx512::<K_F32>(
                    format, r, x
                ));
            }
            (WeightFormat::F16, Input::F32(x)) => {
                each_row!(rows, row_bytes, out, |r| dot_float_avx512::<K_F16>(
                    format, r, x
                ));
            }
            (WeightFormat::BF16, Input::F32(x)) => {
                each_row!(rows, row_bytes, out, |r| dot_float_avx512::<K_BF16>(
                    format, r, x
                ));
            }
            (WeightFormat::Q4_0, Input::Q8(a)) => {
                each_row!(rows, row_bytes, out, |r| dot_q4_avx512::<18, 2, false>(
                    r, a
                ));
            }
            (WeightFormat::Q4_1, Input::Q8(a)) => {
                each_row!(rows, row_bytes, out, |r| dot_q4_avx512::<20, 4, true>(r, a));
            }
            (WeightFormat::Q8_0, Input::Q8(a)) => {
                each_row!(rows, row_bytes, out, |r| dot_q8_0_avx512(r, a));
            }
            _ => unreachable!("format {format} with the wrong activation kind"),
        }
    }
}

/// Activation rows per tile of the batched AVX-512 kernels.
pub(super) const TILE: usize = 4;

/// Q4_0 / Q4_1 row · [`TILE`] quantized activation rows: each weight block is loaded, unpacked and
/// scaled once and used for every activation row. Per activation row the operations (and their order)
/// are exactly those of [`dot_q4_avx512`], so the results are bit-identical to it.
///
/// # Safety
/// As [`dot_q4_avx2`], for every activation row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_avx512_tile<const BB: usize, const QS: usize, const MIN: bool>(
    row: &[u8],
    a: &[Q8View<'_>; TILE],
) -> [f32; TILE] {
    let nb = a[0].d.len();
    let rp = row.as_ptr();
    let mask = _mm512_set1_epi8(0x0F);
    let shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); 2]; TILE];
    let mut offset = [0.0f32; TILE];
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        while b + 2 <= nb {
            let p0 = rp.add(b * BB);
            let p1 = p0.add(BB);
            let d0 = f16_at(p0);
            let d1 = f16_at(p1);
            let (c0, c1) = if MIN {
                (f16_at(p0.add(2)), f16_at(p1.add(2)))
            } else {
                (-8.0 * d0, -8.0 * d1)
            };
            let q0 = _mm_loadu_si128(p0.add(QS).cast());
            let q1 = _mm_loadu_si128(p1.add(QS).cast());
            let v = _mm512_castsi256_si512(_mm256_set_m128i(q1, q0));
            let v = _mm512_shuffle_i64x2::<0x50>(v, v);
            let w = _mm512_and_si512(_mm512_srlv_epi64(v, shifts), mask);
            let k = (b / 2) & 1;
            for t in 0..TILE {
                let at = &a[t];
                let x = _mm512_loadu_si512(at.qs.as_ptr().add(b * BLOCK).cast());
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
                let scale =
                    two_scales(d0 * *at.d.get_unchecked(b), d1 * *at.d.get_unchecked(b + 1));
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[t][k]);
                offset[t] += c0 * *at.s.get_unchecked(b) + c1 * *at.s.get_unchecked(b + 1);
            }
            b += 2;
        }
        let mut sums = [0.0f32; TILE];
        for t in 0..TILE {
            sums[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) + offset[t];
            if b < nb {
                sums[t] += q4_block_256::<QS, MIN>(
                    rp.add(b * BB),
                    a[t].qs.as_ptr().add(b * BLOCK),
                    *a[t].d.get_unchecked(b),
                    *a[t].s.get_unchecked(b),
                );
            }
        }
        sums
    }
}

/// Q8_0 row · [`TILE`] quantized activation rows; bit-identical per row to [`dot_q8_0_avx512`].
///
/// # Safety
/// As [`dot_q8_0_avx2`], for every activation row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q8_0_avx512_tile(row: &[u8], a: &[Q8View<'_>; TILE]) -> [f32; TILE] {
    let nb = a[0].d.len();
    let rp = row.as_ptr();
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); 2]; TILE];
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        while b + 2 <= nb {
            let p0 = rp.add(b * 34);
            let p1 = p0.add(34);
            let d0 = f16_at(p0);
            let d1 = f16_at(p1);
            let w = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(p0.add(2).cast())),
                _mm256_loadu_si256(p1.add(2).cast()),
            );
            let aw = _mm512_abs_epi8(w);
            let neg = _mm512_movepi8_mask(w);
            let k = (b / 2) & 1;
            for t in 0..TILE {
                let at = &a[t];
                let x = _mm512_loadu_si512(at.qs.as_ptr().add(b * BLOCK).cast());
                let sx = _mm512_mask_sub_epi8(x, neg, zero, x);
                let dot = _mm512_dpbusd_epi32(zero, aw, sx);
                let scale =
                    two_scales(d0 * *at.d.get_unchecked(b), d1 * *at.d.get_unchecked(b + 1));
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[t][k]);
            }
            b += 2;
        }
        let mut sums = [0.0f32; TILE];
        for t in 0..TILE {
            sums[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]));
            if b < nb {
                let p = rp.add(b * 34);
                let w = _mm256_loadu_si256(p.add(2).cast());
                let x = _mm256_loadu_si256(a[t].qs.as_ptr().add(b * BLOCK).cast());
                let dot = dot_u8i8_256(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
                sums[t] += hsum256(dot) * f16_at(p) * *a[t].d.get_unchecked(b);
            }
        }
        sums
    }
}

/// `out[t][i] = row_i · acts[t]` for the block formats on AVX-512, [`TILE`] activation rows at once.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn rows_avx512_tile(
    format: WeightFormat,
    rows: &[u8],
    row_bytes: usize,
    acts: &[Q8View<'_>; TILE],
    out: &mut [&mut [f32]; TILE],
) {
    for a in acts {
        check(format, row_bytes, Input::Q8(*a));
    }
    let nrows = rows.len() / row_bytes;
    assert!(out.iter().all(|o| o.len() == nrows));
    for (i, row) in rows.chunks_exact(row_bytes).enumerate() {
        // SAFETY: `check` established the length contract for every activation row, and the caller
        // guarantees the CPU features.
        let sums = unsafe {
            match format {
                WeightFormat::Q4_0 => dot_q4_avx512_tile::<18, 2, false>(row, acts),
                WeightFormat::Q4_1 => dot_q4_avx512_tile::<20, 4, true>(row, acts),
                WeightFormat::Q8_0 => dot_q8_0_avx512_tile(row, acts),
                _ => unreachable!("{format} is not a block format"),
            }
        };
        for t in 0..TILE {
            out[t][i] = sums[t];
        }
    }
}

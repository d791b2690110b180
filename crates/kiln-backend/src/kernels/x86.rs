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

/// Four little-endian f16 values at `p + k·stride`, `k = 0..4`, widened (F16C).
///
/// # Safety
/// The four pairs of bytes must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x4_strided(p: *const u8, stride: usize) -> __m128 {
    // SAFETY: the caller guarantees the bytes are readable; reads are unaligned.
    let bits = unsafe {
        let h = |k: usize| u64::from(p.add(k * stride).cast::<u16>().read_unaligned());
        h(0) | (h(1) << 16) | (h(2) << 32) | (h(3) << 48)
    };
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum128(v: __m128) -> f32 {
    let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s)))
}

/// Lane `K` of `s` broadcast to eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lane<const K: i32>(s: __m128) -> __m256 {
    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_set1_epi32(K))
}

/// Q4_0 (`BB = 18, QS = 2`) or Q4_1 (`BB = 20, QS = 4, MIN`) row · quantized activations, four blocks
/// per step with their scales converted and multiplied four at a time.
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
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut offset = _mm_setzero_ps();
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`, so the row's blocks, the activations
    // `32b..32b+128` and `d[b..b+4]`, `s[b..b+4]` are in bounds (the caller's length contract).
    unsafe {
        while b + 4 <= nb {
            let p = rp.add(b * BB);
            let dw = f16x4_strided(p, BB);
            let cw = if MIN {
                f16x4_strided(p.add(2), BB)
            } else {
                _mm_mul_ps(dw, _mm_set1_ps(-8.0))
            };
            let sc = _mm_mul_ps(dw, _mm_loadu_ps(a.d.as_ptr().add(b)));
            let x = xp.add(b * BLOCK);
            let dot = |k: usize| {
                dot_u8i8_256(
                    q4_nibbles_256(p.add(k * BB + QS)),
                    _mm256_loadu_si256(x.add(k * BLOCK).cast()),
                )
            };
            acc[0] = _mm256_fmadd_ps(dot(0), lane::<0>(sc), acc[0]);
            acc[1] = _mm256_fmadd_ps(dot(1), lane::<1>(sc), acc[1]);
            acc[0] = _mm256_fmadd_ps(dot(2), lane::<2>(sc), acc[0]);
            acc[1] = _mm256_fmadd_ps(dot(3), lane::<3>(sc), acc[1]);
            offset = _mm_fmadd_ps(cw, _mm_loadu_ps(a.s.as_ptr().add(b)), offset);
            b += 4;
        }
        let mut sum = hsum256(_mm256_add_ps(acc[0], acc[1])) + hsum128(offset);
        for bb in b..nb {
            sum += q4_block_256::<QS, MIN>(
                rp.add(bb * BB),
                xp.add(bb * BLOCK),
                *a.d.get_unchecked(bb),
                *a.s.get_unchecked(bb),
            );
        }
        sum
    }
}

/// Q8_0 row · quantized activations, with the sign trick so that `vpmaddubsw` sees `|w| · (±x)`;
/// four blocks per step.
///
/// # Safety
/// `row.len() == a.d.len() * 34`, `a.qs.len() == a.d.len() * 32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_avx2(row: &[u8], a: Q8View<'_>) -> f32 {
    let nb = a.d.len();
    let rp = row.as_ptr();
    let xp = a.qs.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        let block = |p: *const u8, x: *const i8| {
            let w = _mm256_loadu_si256(p.add(2).cast());
            let x = _mm256_loadu_si256(x.cast());
            // |-128| wraps to 0x80 = 128 as the unsigned operand, which is right.
            dot_u8i8_256(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w))
        };
        while b + 4 <= nb {
            let p = rp.add(b * 34);
            let sc = _mm_mul_ps(f16x4_strided(p, 34), _mm_loadu_ps(a.d.as_ptr().add(b)));
            let x = xp.add(b * BLOCK);
            acc[0] = _mm256_fmadd_ps(block(p, x), lane::<0>(sc), acc[0]);
            acc[1] = _mm256_fmadd_ps(block(p.add(34), x.add(32)), lane::<1>(sc), acc[1]);
            acc[0] = _mm256_fmadd_ps(block(p.add(68), x.add(64)), lane::<2>(sc), acc[0]);
            acc[1] = _mm256_fmadd_ps(block(p.add(102), x.add(96)), lane::<3>(sc), acc[1]);
            b += 4;
        }
        let mut sum = hsum256(_mm256_add_ps(acc[0], acc[1]));
        for bb in b..nb {
            let p = rp.add(bb * 34);
            sum += hsum256(block(p, xp.add(bb * BLOCK))) * f16_at(p) * *a.d.get_unchecked(bb);
        }
        sum
    }
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

/// A row's dot product before its horizontal reduction: the sum of `lanes` plus `rest`.
#[derive(Clone, Copy)]
struct Partial {
    lanes: __m512,
    rest: f32,
}

impl Partial {
    // SAFETY: an all-zero bit pattern is a valid `__m512`.
    const ZERO: Self = Self {
        lanes: unsafe { std::mem::zeroed() },
        rest: 0.0,
    };
}

/// The 16 lanes of `v` summed in the order [`reduce8`] sums each of its vectors (halves, then
/// pairs within 128-bit lanes, then the two 128-bit halves), so that a row gives the same bits
/// whether it is reduced alone or eight at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn reduce1(v: __m512) -> f32 {
    let h = _mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
    );
    let t = _mm256_hadd_ps(h, h);
    let t = _mm256_hadd_ps(t, t);
    _mm_cvtss_f32(_mm_add_ss(
        _mm256_castps256_ps128(t),
        _mm256_extractf128_ps::<1>(t),
    ))
}

/// The horizontal sums of eight vectors at once (two rounds of `vhaddps` and one lane exchange
/// instead of eight reductions); each equals [`reduce1`] of its vector.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn reduce8(v: &[__m512; 8]) -> [f32; 8] {
    let h = |z: __m512| {
        _mm256_add_ps(
            _mm512_castps512_ps256(z),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z))),
        )
    };
    let abcd = _mm256_hadd_ps(
        _mm256_hadd_ps(h(v[0]), h(v[1])),
        _mm256_hadd_ps(h(v[2]), h(v[3])),
    );
    let efgh = _mm256_hadd_ps(
        _mm256_hadd_ps(h(v[4]), h(v[5])),
        _mm256_hadd_ps(h(v[6]), h(v[7])),
    );
    let sum = _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(abcd, efgh),
        _mm256_permute2f128_ps::<0x31>(abcd, efgh),
    );
    let mut out = [0f32; 8];
    // SAFETY: `out` has room for eight f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out
}

/// `out[i] = row_i · a` for the block formats on AVX-512, the rows' reductions done eight at a
/// time.
///
/// # Safety
/// `dot` must be safe to call on every row of `rows` with `a` (the caller's length contract) on
/// this CPU.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn rows_reduced8(
    rows: &[u8],
    row_bytes: usize,
    out: &mut [f32],
    dot: impl Fn(&[u8]) -> Partial,
) {
    let mut chunks = out.chunks_exact_mut(8);
    let mut rows_it = rows.chunks_exact(row_bytes);
    for o in &mut chunks {
        let mut lanes = [_mm512_setzero_ps(); 8];
        let mut rest = [0f32; 8];
        for k in 0..8 {
            let p = dot(rows_it.next().unwrap_or_default());
            lanes[k] = p.lanes;
            rest[k] = p.rest;
        }
        let sums = reduce8(&lanes);
        for k in 0..8 {
            o[k] = sums[k] + rest[k];
        }
    }
    for (o, r) in chunks.into_remainder().iter_mut().zip(rows_it) {
        let p = dot(r);
        *o = reduce1(p.lanes) + p.rest;
    }
}

/// Per-lane scales of four blocks: lanes 0..8 get `s[0]`, 8..16 `s[1]` (first result), and `s[2]`,
/// `s[3]` likewise (second result).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn spread4(s: __m128) -> (__m512, __m512) {
    let v = _mm512_castps128_ps512(s);
    let i01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let i23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    (_mm512_permutexvar_ps(i01, v), _mm512_permutexvar_ps(i23, v))
}

/// Two little-endian f16 values at `p` and `p + stride`, widened into lanes 0 and 1 (F16C).
///
/// # Safety
/// The two pairs of bytes must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x2_strided(p: *const u8, stride: usize) -> __m128 {
    // SAFETY: the caller guarantees the bytes are readable; reads are unaligned.
    let bits = unsafe {
        let h = |k: usize| u32::from(p.add(k * stride).cast::<u16>().read_unaligned());
        h(0) | (h(1) << 16)
    };
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

/// Two f32 at `p` in lanes 0 and 1, zeros above.
///
/// # Safety
/// Eight bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32x2(p: *const f32) -> __m128 {
    // SAFETY: the caller guarantees 8 readable bytes; the load is unaligned.
    unsafe { _mm_castpd_ps(_mm_load_sd(p.cast())) }
}

/// The first result of [`spread4`]: lanes 0..8 get `s[0]`, 8..16 `s[1]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn spread2(s: __m128) -> __m512 {
    let i01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(i01, _mm512_castps128_ps512(s))
}

/// The nibbles of two Q4 blocks (16 bytes at `p0` and at `p1`) as 64 bytes in element order.
///
/// # Safety
/// The 16 bytes at `p0` and at `p1` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_nibbles_512(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: the caller guarantees the bytes are readable; loads are unaligned.
    let (q0, q1) = unsafe { (_mm_loadu_si128(p0.cast()), _mm_loadu_si128(p1.cast())) };
    // 128-bit lanes [q0, q0, q1, q1], then shift the second copy of each by 4 and mask.
    let v = _mm512_castsi256_si512(_mm256_set_m128i(q1, q0));
    let v = _mm512_shuffle_i64x2::<0x50>(v, v);
    let shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    _mm512_and_si512(_mm512_srlv_epi64(v, shifts), _mm512_set1_epi8(0x0F))
}

/// Q4_0 (`BB = 18, QS = 2`) or Q4_1 (`BB = 20, QS = 4, MIN`) row · `T` quantized activation rows,
/// four blocks per step (two `vpdpbusd`), the block scales converted and multiplied four at a time.
/// Each weight block is loaded and unpacked once for all `T` activation rows; per activation row the
/// operations are the same whatever `T`, so batched results are bit-identical to single ones.
///
/// # Safety
/// As [`dot_q4_avx2`], for every activation row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_avx512<const BB: usize, const QS: usize, const MIN: bool, const T: usize>(
    row: &[u8],
    a: &[Q8View<'_>; T],
) -> [Partial; T] {
    let nb = a[0].d.len();
    let rp = row.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut offset = [_mm_setzero_ps(); T];
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        while b + 4 <= nb {
            let p = rp.add(b * BB);
            let dw = f16x4_strided(p, BB);
            let cw = if MIN {
                f16x4_strided(p.add(2), BB)
            } else {
                _mm_mul_ps(dw, _mm_set1_ps(-8.0))
            };
            let w01 = q4_nibbles_512(p.add(QS), p.add(BB + QS));
            let w23 = q4_nibbles_512(p.add(2 * BB + QS), p.add(3 * BB + QS));
            for t in 0..T {
                let at = &a[t];
                let xp = at.qs.as_ptr().add(b * BLOCK);
                let (s01, s23) = spread4(_mm_mul_ps(dw, _mm_loadu_ps(at.d.as_ptr().add(b))));
                let dot01 =
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), w01, _mm512_loadu_si512(xp.cast()));
                let dot23 = _mm512_dpbusd_epi32(
                    _mm512_setzero_si512(),
                    w23,
                    _mm512_loadu_si512(xp.add(64).cast()),
                );
                acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot01), s01, acc[t][0]);
                acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot23), s23, acc[t][1]);
                offset[t] = _mm_fmadd_ps(cw, _mm_loadu_ps(at.s.as_ptr().add(b)), offset[t]);
            }
            b += 4;
        }
        // Rows of 18 blocks (576 columns, common in small models) end with a pair: two blocks
        // in one vector instead of the 256-bit single-block tail.
        if b + 2 <= nb {
            let p = rp.add(b * BB);
            let dw = f16x2_strided(p, BB);
            let cw = if MIN {
                f16x2_strided(p.add(2), BB)
            } else {
                _mm_mul_ps(dw, _mm_set1_ps(-8.0))
            };
            let w01 = q4_nibbles_512(p.add(QS), p.add(BB + QS));
            for t in 0..T {
                let at = &a[t];
                let xp = at.qs.as_ptr().add(b * BLOCK);
                let s01 = spread2(_mm_mul_ps(dw, load_f32x2(at.d.as_ptr().add(b))));
                let dot01 =
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), w01, _mm512_loadu_si512(xp.cast()));
                acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot01), s01, acc[t][0]);
                offset[t] = _mm_fmadd_ps(cw, load_f32x2(at.s.as_ptr().add(b)), offset[t]);
            }
            b += 2;
        }
        let mut parts = [Partial::ZERO; T];
        for t in 0..T {
            parts[t].lanes = _mm512_add_ps(
                _mm512_add_ps(acc[t][0], acc[t][1]),
                _mm512_zextps128_ps512(offset[t]),
            );
            for bb in b..nb {
                parts[t].rest += q4_block_256::<QS, MIN>(
                    rp.add(bb * BB),
                    a[t].qs.as_ptr().add(bb * BLOCK),
                    *a[t].d.get_unchecked(bb),
                    *a[t].s.get_unchecked(bb),
                );
            }
        }
        parts
    }
}

/// Q8_0 row · `T` quantized activation rows, four blocks per step (`|w| · (±x)` through
/// `vpdpbusd`); bit-identical per activation row whatever `T`.
///
/// # Safety
/// As [`dot_q8_0_avx2`], for every activation row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q8_0_avx512<const T: usize>(row: &[u8], a: &[Q8View<'_>; T]) -> [Partial; T] {
    let nb = a[0].d.len();
    let rp = row.as_ptr();
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut b = 0;
    // SAFETY: every block index touched is `< nb`; see the caller's length contract.
    unsafe {
        while b + 4 <= nb {
            let p = rp.add(b * 34);
            let dw = f16x4_strided(p, 34);
            let pair = |q: *const u8| {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu_si256(q.add(2).cast())),
                    _mm256_loadu_si256(q.add(36).cast()),
                )
            };
            let w01 = pair(p);
            let w23 = pair(p.add(68));
            let (aw01, aw23) = (_mm512_abs_epi8(w01), _mm512_abs_epi8(w23));
            let (n01, n23) = (_mm512_movepi8_mask(w01), _mm512_movepi8_mask(w23));
            for t in 0..T {
                let at = &a[t];
                let xp = at.qs.as_ptr().add(b * BLOCK);
                let (s01, s23) = spread4(_mm_mul_ps(dw, _mm_loadu_ps(at.d.as_ptr().add(b))));
                let x01 = _mm512_loadu_si512(xp.cast());
                let x23 = _mm512_loadu_si512(xp.add(64).cast());
                let dot01 =
                    _mm512_dpbusd_epi32(zero, aw01, _mm512_mask_sub_epi8(x01, n01, zero, x01));
                let dot23 =
                    _mm512_dpbusd_epi32(zero, aw23, _mm512_mask_sub_epi8(x23, n23, zero, x23));
                acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot01), s01, acc[t][0]);
                acc[t][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot23), s23, acc[t][1]);
            }
            b += 4;
        }
        if b + 2 <= nb {
            let p = rp.add(b * 34);
            let dw = f16x2_strided(p, 34);
            let w01 = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(p.add(2).cast())),
                _mm256_loadu_si256(p.add(36).cast()),
            );
            let aw01 = _mm512_abs_epi8(w01);
            let n01 = _mm512_movepi8_mask(w01);
            for t in 0..T {
                let at = &a[t];
                let xp = at.qs.as_ptr().add(b * BLOCK);
                let s01 = spread2(_mm_mul_ps(dw, load_f32x2(at.d.as_ptr().add(b))));
                let x01 = _mm512_loadu_si512(xp.cast());
                let dot01 =
                    _mm512_dpbusd_epi32(zero, aw01, _mm512_mask_sub_epi8(x01, n01, zero, x01));
                acc[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot01), s01, acc[t][0]);
            }
            b += 2;
        }
        let mut parts = [Partial::ZERO; T];
        for t in 0..T {
            parts[t].lanes = _mm512_add_ps(acc[t][0], acc[t][1]);
            for bb in b..nb {
                let p = rp.add(bb * 34);
                let w = _mm256_loadu_si256(p.add(2).cast());
                let x = _mm256_loadu_si256(a[t].qs.as_ptr().add(bb * BLOCK).cast());
                let dot = dot_u8i8_256(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
                parts[t].rest += hsum256(dot) * f16_at(p) * *a[t].d.get_unchecked(bb);
            }
        }
        parts
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
                rows_reduced8(rows, row_bytes, out, |r| {
                    dot_q4_avx512::<18, 2, false, 1>(r, &[a])[0]
                });
            }
            (WeightFormat::Q4_1, Input::Q8(a)) => {
                rows_reduced8(rows, row_bytes, out, |r| {
                    dot_q4_avx512::<20, 4, true, 1>(r, &[a])[0]
                });
            }
            (WeightFormat::Q8_0, Input::Q8(a)) => {
                rows_reduced8(rows, row_bytes, out, |r| dot_q8_0_avx512::<1>(r, &[a])[0]);
            }
            _ => unreachable!("format {format} with the wrong activation kind"),
        }
    }
}

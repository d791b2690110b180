//! The AVX-512 kernel for eight activation rows at once (batched decode): four rows share each
//! vector, one per 128-bit lane, so that a weight block's scales are applied to four rows per
//! instruction. Dispatched from `mod.rs` like the kernels of `x86.rs`, under the same contract: the
//! caller has checked the CPU features.

use std::arch::x86_64::*;

use super::{BLOCK, Q8View, WeightFormat};

/// Activation rows per group of [`rows_avx512_x8`].
pub(super) const GROUP: usize = 8;
/// Bytes of interleaved activations per block of a group: four 64-byte vectors.
pub(super) const GROUP_BLOCK_BYTES: usize = 4 * 64;
/// Scale floats per block of a group: two vectors of `d`, two of `s`.
pub(super) const GROUP_BLOCK_SCALES: usize = 4 * 16;

/// Appends eight quantized activation rows laid out for [`rows_avx512_x8`]. Per block `b`:
/// - `il[b]`: vectors `X[h][g]` (`h` = 0, 1: elements `16h..16h + 16`; `g` = 0, 1: rows
///   `4g..4g + 4`, one row per 128-bit lane), in the order `X[0][0], X[0][1], X[1][0], X[1][1]`;
/// - `sc[b]`: `D[0], D[1]` (each lane holds its row's scale `d`), then `S[0], S[1]` (the first lane
///   of each 128-bit lane holds its row's `s = d·Σq`, the other three zero).
pub(super) fn interleave8(a: &[Q8View<'_>; GROUP], il: &mut Vec<i8>, sc: &mut Vec<f32>) {
    let nb = a[0].d.len();
    let (il0, sc0) = (il.len(), sc.len());
    il.resize(il0 + nb * GROUP_BLOCK_BYTES, 0);
    sc.resize(sc0 + nb * GROUP_BLOCK_SCALES, 0.0);
    let il = &mut il[il0..];
    let sc = &mut sc[sc0..];
    for b in 0..nb {
        let xb = &mut il[b * GROUP_BLOCK_BYTES..(b + 1) * GROUP_BLOCK_BYTES];
        let sb = &mut sc[b * GROUP_BLOCK_SCALES..(b + 1) * GROUP_BLOCK_SCALES];
        for (r, row) in a.iter().enumerate() {
            let (g, lane) = (r / 4, r % 4);
            for h in 0..2 {
                let at = b * BLOCK + 16 * h;
                let to = (2 * h + g) * 64 + 16 * lane;
                xb[to..to + 16].copy_from_slice(&row.qs[at..at + 16]);
            }
            sb[16 * g + 4 * lane..16 * g + 4 * lane + 4].fill(row.d[b]);
            sb[32 + 16 * g + 4 * lane] = row.s[b];
            sb[32 + 16 * g + 4 * lane + 1..32 + 16 * g + 4 * lane + 4].fill(0.0);
        }
    }
}

/// The sums of each 128-bit lane's four floats (one activation row per lane), in lanes 0..4.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn lane_sums(v: __m512) -> [f32; 4] {
    let v = _mm512_add_ps(v, _mm512_shuffle_ps::<0b01_00_11_10>(v, v));
    let v = _mm512_add_ps(v, _mm512_shuffle_ps::<0b10_11_00_01>(v, v));
    let mut all = [0f32; 16];
    // SAFETY: `all` has room for 16 floats.
    unsafe { _mm512_storeu_ps(all.as_mut_ptr(), v) };
    [all[0], all[4], all[8], all[12]]
}

/// `out[r][i] = row_i · a_r` for eight activation rows laid out by [`interleave8`] (`il`, `sc`), on
/// Q4_0, Q4_1 or Q8_0 weights. Each weight block is read once for all eight rows and its scales
/// are applied to all of them with one multiply and one fused multiply-add per four rows: the
/// rows share the vectors' lanes (one row per 128-bit lane), so the per-block float work that a
/// row-at-a-time kernel repeats for every row is done for four at once. Q4 nibbles are the
/// unsigned operand of `vpdpbusd`; Q8_0 weights are the signed one, against activations offset by
/// 128 (`x ^ 0x80`), corrected by `128 · Σw` from one more `vpdpbusd` per block.
///
/// The sums run in another order than `x86::rows_avx512`'s, so a row's result can differ from the
/// single-row kernel's (`x86::rows_avx512`) in the last bits (within the f32 rounding bound of the kernel tests).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `il` and `sc` must come from
/// [`interleave8`] on rows of `row_bytes / format.block_bytes()` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn rows_avx512_x8(
    format: WeightFormat,
    rows: &[u8],
    row_bytes: usize,
    il: &[i8],
    sc: &[f32],
    out: &mut [&mut [f32]; GROUP],
) {
    let bb = format.block_bytes();
    let nb = row_bytes / bb;
    assert_eq!(il.len(), nb * GROUP_BLOCK_BYTES, "interleaved activations");
    assert_eq!(sc.len(), nb * GROUP_BLOCK_SCALES, "interleaved scales");
    assert!(matches!(
        format,
        WeightFormat::Q4_0 | WeightFormat::Q4_1 | WeightFormat::Q8_0
    ));
    let nrows = rows.len() / row_bytes;
    assert!(out.iter().all(|o| o.len() == nrows));
    let mut i = 0;
    // SAFETY: rows `i` and `i + 1 < nrows` are `row_bytes = nb · bb` bytes each; `il` and `sc`
    // hold `nb` blocks (asserted above); the caller guarantees the CPU features.
    unsafe {
        let row = |i: usize| rows.as_ptr().add(i * row_bytes);
        while i + 2 <= nrows {
            // The next pair of rows into the cache while this one computes (eight activation
            // rows make the kernel slow enough for the hardware prefetcher to fall behind).
            if i + 4 <= nrows {
                let next = row(i + 2);
                for off in (0..2 * row_bytes).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(next.add(off).cast());
                }
            }
            let sums = match format {
                WeightFormat::Q4_0 => x8_rows::<Q4_0_KIND, 2>([row(i), row(i + 1)], nb, il, sc),
                WeightFormat::Q4_1 => x8_rows::<Q4_1_KIND, 2>([row(i), row(i + 1)], nb, il, sc),
                _ => x8_rows::<Q8_0_KIND, 2>([row(i), row(i + 1)], nb, il, sc),
            };
            for (k, s) in sums.iter().enumerate() {
                for (o, v) in out.iter_mut().zip(s) {
                    o[i + k] = *v;
                }
            }
            i += 2;
        }
        if i < nrows {
            let sums = match format {
                WeightFormat::Q4_0 => x8_rows::<Q4_0_KIND, 1>([row(i)], nb, il, sc),
                WeightFormat::Q4_1 => x8_rows::<Q4_1_KIND, 1>([row(i)], nb, il, sc),
                _ => x8_rows::<Q8_0_KIND, 1>([row(i)], nb, il, sc),
            };
            for (o, v) in out.iter_mut().zip(&sums[0]) {
                o[i] = *v;
            }
        }
    }
}

/// The scales of `len` blocks (`bb` bytes apart from `p`) as f32 into `d`, and into `m` the
/// Q4_1 minimums or, for Q4_0, `-8 d` (the offset of its nibbles); `m` is untouched for Q8_0.
///
/// # Safety
/// `len ≤ 64` blocks of `bb` bytes must be readable from `p`; F16C must be available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn widen_scales<const KIND: u8>(
    p: *const u8,
    bb: usize,
    len: usize,
    d: &mut [f32; 64],
    m: &mut [f32; 64],
) {
    let mut dh = [0u16; 64];
    let mut mh = [0u16; 64];
    // SAFETY: the caller guarantees `len` readable blocks; reads are unaligned.
    unsafe {
        for b in 0..len {
            dh[b] = p.add(b * bb).cast::<u16>().read_unaligned();
            if KIND == Q4_1_KIND {
                mh[b] = p.add(b * bb + 2).cast::<u16>().read_unaligned();
            }
        }
        for k in 0..len.div_ceil(16) {
            let dv = _mm512_cvtph_ps(_mm256_loadu_si256(dh.as_ptr().add(16 * k).cast()));
            _mm512_storeu_ps(d.as_mut_ptr().add(16 * k), dv);
            match KIND {
                Q4_1_KIND => {
                    let mv = _mm512_cvtph_ps(_mm256_loadu_si256(mh.as_ptr().add(16 * k).cast()));
                    _mm512_storeu_ps(m.as_mut_ptr().add(16 * k), mv);
                }
                Q4_0_KIND => {
                    _mm512_storeu_ps(
                        m.as_mut_ptr().add(16 * k),
                        _mm512_mul_ps(dv, _mm512_set1_ps(-8.0)),
                    );
                }
                _ => {}
            }
        }
    }
}

const Q4_0_KIND: u8 = 0;
const Q4_1_KIND: u8 = 1;
const Q8_0_KIND: u8 = 2;

/// `R` weight rows (Q4_0, Q4_1 or Q8_0 by `KIND`, `nb` blocks each) times the eight interleaved
/// activation rows: `[weight row][activation row]`. The activations of a block are loaded once
/// for the `R` weight rows.
///
/// # Safety
/// Each `rows[k]` points at `nb` readable blocks; `il`, `sc` hold `nb` blocks; AVX-512 F/BW/VL/VNNI,
/// FMA and F16C are available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn x8_rows<const KIND: u8, const R: usize>(
    rows: [*const u8; R],
    nb: usize,
    il: &[i8],
    sc: &[f32],
) -> [[f32; GROUP]; R] {
    let bb = match KIND {
        Q4_0_KIND => 18,
        Q4_1_KIND => 20,
        _ => 34,
    };
    let low = _mm512_set1_epi8(0x0F);
    let flip = _mm512_set1_epi8(-128);
    let ones = _mm512_set1_epi8(1);
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut off = [[_mm512_setzero_ps(); 2]; R];
    // The f16 scales (and Q4_1 minimums) of a segment of blocks, widened 16 at a time up front:
    // one conversion per block and vector would cost more than the block's integer work.
    const SEG: usize = 64;
    let mut dw = [[0f32; SEG]; R];
    let mut mw = [[0f32; SEG]; R];
    let mut seg0 = 0;
    // SAFETY: block `b < nb` of weight row `k` is `rows[k] + b·bb .. + bb`; its activations are
    // `il[b·256 ..][..256]` and `sc[b·64 ..][..64]` (the caller's guarantee).
    unsafe {
        while seg0 < nb {
            let len = SEG.min(nb - seg0);
            for r in 0..R {
                widen_scales::<KIND>(rows[r].add(seg0 * bb), bb, len, &mut dw[r], &mut mw[r]);
            }
            for (sb, b) in (seg0..seg0 + len).enumerate() {
                let xp = il.as_ptr().add(b * GROUP_BLOCK_BYTES);
                let sp = sc.as_ptr().add(b * GROUP_BLOCK_SCALES);
                let mut x = [_mm512_setzero_si512(); 4];
                for (k, v) in x.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(xp.add(64 * k).cast());
                    if KIND == Q8_0_KIND {
                        // Unsigned operand: x + 128.
                        *v = _mm512_xor_si512(*v, flip);
                    }
                }
                let dx = [_mm512_loadu_ps(sp), _mm512_loadu_ps(sp.add(16))];
                let sx = [_mm512_loadu_ps(sp.add(32)), _mm512_loadu_ps(sp.add(48))];
                for r in 0..R {
                    let p = rows[r].add(b * bb);
                    let d = _mm512_set1_ps(dw[r][sb]);
                    let dots = if KIND == Q8_0_KIND {
                        let w0 = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(2).cast()));
                        let w1 = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(18).cast()));
                        let sw = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, w0), ones, w1);
                        let fix = _mm512_slli_epi32::<7>(sw);
                        let dot = |g: usize| {
                            let d = _mm512_dpbusd_epi32(
                                _mm512_dpbusd_epi32(zero, x[g], w0),
                                x[2 + g],
                                w1,
                            );
                            _mm512_sub_epi32(d, fix)
                        };
                        [dot(0), dot(1)]
                    } else {
                        let qs = if KIND == Q4_1_KIND { 4 } else { 2 };
                        let q = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(qs).cast()));
                        let lo = _mm512_and_si512(q, low);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), low);
                        let dot = |g: usize| {
                            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, x[g]), hi, x[2 + g])
                        };
                        [dot(0), dot(1)]
                    };
                    for g in 0..2 {
                        let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(dots[g]), dx[g]);
                        acc[r][g] = _mm512_fmadd_ps(scaled, d, acc[r][g]);
                    }
                    if KIND != Q8_0_KIND {
                        // Q4_1: `m · s`; Q4_0: `-8 d · s` (`mw` holds `-8 d`).
                        let cw = _mm512_set1_ps(mw[r][sb]);
                        for g in 0..2 {
                            off[r][g] = _mm512_fmadd_ps(sx[g], cw, off[r][g]);
                        }
                    }
                }
            }
            seg0 += len;
        }
    }
    let mut out = [[0f32; GROUP]; R];
    for r in 0..R {
        for g in 0..2 {
            let sums = lane_sums(_mm512_add_ps(acc[r][g], off[r][g]));
            out[r][4 * g..4 * g + 4].copy_from_slice(&sums);
        }
    }
    out
}

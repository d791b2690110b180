//! The exact matmul for a full tile of eight activation rows (batched decode) on AVX-512: two
//! weight rows at a time, each block dequantized once in registers and multiplied with the eight
//! rows' f32 activations. The dequantization avoids the cross-lane instructions that share the
//! FMA units on this kind of core: the block's scale and offset come from arrays widened ahead
//! (a broadcast load each), its sixteen bytes are spread to one per 32-bit lane by an in-lane
//! byte shuffle, and Q4 values are looked up in the block's table of the sixteen values `d·q + m`
//! (one FMA builds it). Each weight is `d·q + m` (Q4, rounded once) or `q·d` (Q8_0), as in
//! `avx512::rows`, so the result is the dequantize-then-multiply product up to summation order.

use std::arch::x86_64::*;

use kiln_backend::kernels::{QuantMatrix, WeightFormat};

use super::matmul::{ACT_TILE, BLOCK};

const Q4_0_KIND: u8 = 0;
const Q4_1_KIND: u8 = 1;
const Q8_0_KIND: u8 = 2;

/// Blocks whose scales are widened together.
const SEG: usize = 64;

/// Lays each whole tile of eight rows of `x` (`n × cols`) out block by block: in the tile at
/// `i0·cols`, block `b` of its row `t` at `(b·8 + t)·32`, so that a block's activations are one
/// run of 1 KiB at fixed offsets (the kernel addresses all of them from one pointer and keeps
/// its accumulators in registers). A partial last tile is left out.
pub(super) fn interleave(x: &[f32], n: usize, cols: usize, xi: &mut Vec<f32>) {
    let blocks = cols / BLOCK;
    xi.clear();
    for tile in x[..n / ACT_TILE * ACT_TILE * cols].chunks_exact(ACT_TILE * cols) {
        for b in 0..blocks {
            for t in 0..ACT_TILE {
                xi.extend_from_slice(&tile[t * cols + b * BLOCK..][..BLOCK]);
            }
        }
    }
}

/// Rows `first..first + out.len() / 8` of `y = x Wᵀ` for a tile of eight activation rows laid
/// out by [`interleave`] (`xi`, `8 × cols` values) into `out` (`[8, task_rows]`).
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, FMA and F16C; `w` must be a Q4_0, Q4_1 or Q8_0 matrix;
/// `out` holds a multiple of eight values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(super) unsafe fn rows8(w: &QuantMatrix, xi: &[f32], first: usize, out: &mut [f32]) {
    let task_rows = out.len() / ACT_TILE;
    assert!(xi.len() == ACT_TILE * w.cols() && first + task_rows <= w.rows());
    let mut r = 0;
    while r < task_rows {
        let pair = r + 2 <= task_rows;
        let rows = if pair { [r, r + 1] } else { [r, r] };
        let p = rows.map(|k| w.row(first + k).as_ptr());
        // The rows two pairs on (possibly past this task, inside the matrix), prefetched into L2
        // while this pair computes: the row-by-row stream is too slow for the hardware prefetcher
        // to run ahead, and the scales' first touch would wait for memory.
        let ahead = (first + r + 4).min(w.rows())..(first + r + 6).min(w.rows());
        let bytes = w.bytes();
        let ahead = &bytes[ahead.start * w.row_bytes()..ahead.end * w.row_bytes()];
        // SAFETY: the rows exist (asserted); the format is checked by the match.
        let sums = unsafe {
            match w.format() {
                WeightFormat::Q4_0 => pair_rows::<Q4_0_KIND>(p, w.cols(), xi, ahead),
                WeightFormat::Q4_1 => pair_rows::<Q4_1_KIND>(p, w.cols(), xi, ahead),
                _ => pair_rows::<Q8_0_KIND>(p, w.cols(), xi, ahead),
            }
        };
        for (k, s) in sums.iter().enumerate().take(if pair { 2 } else { 1 }) {
            for (t, v) in s.iter().enumerate() {
                out[t * task_rows + r + k] = *v;
            }
        }
        r += if pair { 2 } else { 1 };
    }
}

/// The scales (and Q4 offsets) of blocks `b0..b0 + len` of a row as f32: `d[b]`, `m[b]` (`m`:
/// the Q4_1 minimum, `-8·d` for Q4_0, untouched for Q8_0).
///
/// # Safety
/// The blocks are readable; `len ≤ SEG`; F16C and AVX-512F are available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn widen<const KIND: u8>(
    row: *const u8,
    bb: usize,
    b0: usize,
    len: usize,
    d: &mut [f32; SEG],
    m: &mut [f32; SEG],
) {
    if KIND == Q8_0_KIND {
        // Scalar loads of `d` into an array, then converted sixteen at a time: for Q8_0's
        // 34-byte blocks this measured faster than the gather below.
        let mut dh = [0u16; SEG];
        // SAFETY: the caller guarantees the blocks; the vector loads and stores stay in the
        // arrays.
        unsafe {
            for (b, h) in dh.iter_mut().enumerate().take(len) {
                *h = row.add((b0 + b) * bb).cast::<u16>().read_unaligned();
            }
            for c in 0..len.div_ceil(16) {
                let dv = _mm512_cvtph_ps(_mm256_loadu_si256(dh.as_ptr().add(16 * c).cast()));
                _mm512_storeu_ps(d.as_mut_ptr().add(16 * c), dv);
            }
        }
        return;
    }
    // Q4: one gather of the first four bytes of sixteen blocks, `d` in the low half of each
    // 32-bit lane, Q4_1's `m` in the high half (scalar stores read back as vectors stall on store
    // forwarding: the gather is 3-10 % faster on the eight-row product).
    let lanes = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(bb as i32),
    );
    // SAFETY: the caller guarantees the blocks; masked-off lanes are not read; the stores stay in
    // the arrays (`len ≤ SEG`).
    unsafe {
        for c in 0..len.div_ceil(16) {
            let n = (len - 16 * c).min(16);
            let mask = (((1u32 << n) - 1) & 0xFFFF) as u16;
            let g = _mm512_mask_i32gather_epi32::<1>(
                _mm512_setzero_si512(),
                mask,
                lanes,
                row.add((b0 + 16 * c) * bb).cast(),
            );
            let dv = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
            _mm512_storeu_ps(d.as_mut_ptr().add(16 * c), dv);
            match KIND {
                Q4_1_KIND => _mm512_storeu_ps(
                    m.as_mut_ptr().add(16 * c),
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(g))),
                ),
                _ => _mm512_storeu_ps(
                    m.as_mut_ptr().add(16 * c),
                    _mm512_mul_ps(dv, _mm512_set1_ps(-8.0)),
                ),
            }
        }
    }
}

/// Two weight rows (the same pointer twice for one) times the eight activation rows:
/// `[row][activation row]`; the bytes of `ahead` are prefetched, a share per block.
///
/// # Safety
/// As [`rows8`]; both rows hold `cols / 32` blocks of `KIND`'s format.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
#[allow(clippy::needless_range_loop)] // `k`, `h` and `t` index several arrays at once
unsafe fn pair_rows<const KIND: u8>(
    rows: [*const u8; 2],
    cols: usize,
    x: &[f32],
    ahead: &[u8],
) -> [[f32; ACT_TILE]; 2] {
    let (bb, qs) = match KIND {
        Q4_0_KIND => (18, 2),
        Q4_1_KIND => (20, 4),
        _ => (34, 2),
    };
    let blocks = cols / BLOCK;
    let iota = _mm512_setr_ps(
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    );
    // Byte `j` of the block's sixteen into the low byte of 32-bit lane `j`, zeros above (the
    // shuffle control's set top bit): an in-lane shuffle of the bytes broadcast to every lane.
    let spread = _mm512_or_si512(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(-256),
    );
    let mut acc = [[_mm512_setzero_ps(); ACT_TILE]; 2];
    let mut dw = [[0f32; SEG]; 2];
    let mut m = [[0f32; SEG]; 2];
    let xp = x.as_ptr();
    let mut seg0 = 0;
    // SAFETY: block `b < blocks` of each row is `row + b·bb .. + bb`; activation row `t` is
    // `x[t·cols ..][..cols]` (the caller's guarantee).
    unsafe {
        while seg0 < blocks {
            let len = SEG.min(blocks - seg0);
            for k in 0..2 {
                widen::<KIND>(rows[k], bb, seg0, len, &mut dw[k], &mut m[k]);
            }
            for (sb, b) in (seg0..seg0 + len).enumerate() {
                // Two lines per block cover the next pair (at most 2·34 bytes per block of
                // each row): no inner loop, so the block loop keeps its registers.
                if !ahead.is_empty() {
                    let last = ahead.len() - 1;
                    let ap = ahead.as_ptr();
                    _mm_prefetch::<_MM_HINT_T1>(ap.add((128 * b).min(last)).cast());
                    _mm_prefetch::<_MM_HINT_T1>(ap.add((128 * b + 64).min(last)).cast());
                }
                let mut wv = [[_mm512_setzero_ps(); 2]; 2];
                for k in 0..2 {
                    let p = rows[k].add(b * bb);
                    let dv = _mm512_set1_ps(dw[k][sb]);
                    if KIND == Q8_0_KIND {
                        // Sign-extended bytes: spread, then shifted up and back.
                        for h in 0..2 {
                            let v =
                                _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(2 + 16 * h).cast()));
                            let v = _mm512_shuffle_epi8(v, spread);
                            let v = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(v));
                            wv[k][h] = _mm512_mul_ps(_mm512_cvtepi32_ps(v), dv);
                        }
                    } else {
                        let table = _mm512_fmadd_ps(iota, dv, _mm512_set1_ps(m[k][sb]));
                        let v = _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(qs).cast()));
                        let v = _mm512_shuffle_epi8(v, spread);
                        // `vpermps` reads the low four bits of each index: the low nibble as it
                        // is, the high one after a shift.
                        wv[k][0] = _mm512_permutexvar_ps(v, table);
                        wv[k][1] = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(v), table);
                    }
                }
                for t in 0..ACT_TILE {
                    let xb = xp.add((b * ACT_TILE + t) * BLOCK);
                    let (x0, x1) = (_mm512_loadu_ps(xb), _mm512_loadu_ps(xb.add(16)));
                    for k in 0..2 {
                        acc[k][t] = _mm512_fmadd_ps(wv[k][0], x0, acc[k][t]);
                        acc[k][t] = _mm512_fmadd_ps(wv[k][1], x1, acc[k][t]);
                    }
                }
            }
            seg0 += len;
        }
    }
    let mut out = [[0f32; ACT_TILE]; 2];
    for k in 0..2 {
        for t in 0..ACT_TILE {
            out[k][t] = _mm512_reduce_add_ps(acc[k][t]);
        }
    }
    out
}

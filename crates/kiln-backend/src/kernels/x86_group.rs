//! The AVX-512 kernel for eight activation rows at once (batched decode). Each 32-bit lane of its
//! accumulators is one (weight row, activation row) pair: a vector holds four weight rows, one per
//! 128-bit lane, against four activation rows, one per 32-bit position, so that a block's scales are
//! applied to sixteen products per instruction and none of the float work is repeated. The pairing
//! works by rotation: at step `s` (0..4) position `k` of every lane holds the block's four-element
//! chunk `(k + s) % 4`, of the weights (a `vpshufd` in registers) and of activation row `k` (laid
//! out that way by [`interleave8`]), so over the four steps each position sees all sixteen elements
//! of a half-block. Dispatched from `mod.rs` like the kernels of `x86.rs`, under the same contract:
//! the caller has checked the CPU features.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::{BLOCK, Q8View, WeightFormat};

/// Activation rows per group of [`rows_avx512_x8`].
pub(super) const GROUP: usize = 8;
/// Bytes of interleaved activations per block of a group: two groups of four rows, two half-blocks,
/// four rotations, sixteen bytes each, repeated in the four 128-bit lanes of a vector.
pub(super) const GROUP_BLOCK_BYTES: usize = 2 * 2 * 4 * 64;
/// Scale floats per block of a group: the eight rows' `d`, then their `s`, then each four-row
/// group's integer sums `Σq` laid out like the accumulators (16 floats per group).
pub(super) const GROUP_BLOCK_SCALES: usize = 2 * GROUP + 2 * 16;

/// Weight rows per pass of the kernel (four quads): each activation vector loaded is used by all of
/// them.
const PASS_QUADS: usize = 4;
/// Weight rows per pass.
pub(super) const PASS_ROWS: usize = 4 * PASS_QUADS;
/// How far ahead the weights are prefetched (into L2): a pass requests the rows four passes on,
/// spread over its blocks, so that they have several passes' time to arrive.
pub(super) const AHEAD_ROWS: usize = 4 * PASS_ROWS;

/// Appends eight quantized activation rows laid out for [`rows_avx512_x8`]. Per block `b`:
/// - `il[b]`: for the four-row group `g` (rows `4g..4g + 4`), half-block `h` (elements
///   `16h..16h + 16`) and rotation `s`, 64 bytes at `((2g + h)·4 + s)·64`: four copies (one per
///   128-bit lane) of sixteen bytes whose four bytes at position `k` are row `4g + k`'s elements
///   `16h + 4c .. 16h + 4c + 4`, `c = (k + s) % 4`;
/// - `sc[b]`: the rows' scales `d` (eight floats), then their sums `s = d·Σq`, then for each
///   group `g` sixteen floats whose lane `4j + k` is row `4g + k`'s integer `Σq` (exact in f32),
///   for the Q4_0 and Q8_0 offsets applied in integers.
pub(super) fn interleave8(a: &[Q8View<'_>; GROUP], il: &mut Vec<i8>, sc: &mut Vec<f32>) {
    let nb = a[0].d.len();
    let (il0, sc0) = (il.len(), sc.len());
    il.resize(il0 + nb * GROUP_BLOCK_BYTES, 0);
    sc.resize(sc0 + nb * GROUP_BLOCK_SCALES, 0.0);
    let il = &mut il[il0..];
    let sc = &mut sc[sc0..];
    // SAFETY: `interleave8` is only called on CPUs with AVX-512 (the caller's detection).
    unsafe { interleave_blocks(a, il, sc) };
}

/// The body of [`interleave8`]: per block and (group, half-block), one permutation of the four
/// rows' sixteen bytes gives the four rotations.
///
/// # Safety
/// AVX-512F must be available; `il` and `sc` hold the rows' blocks (`nb · 1024` bytes, `nb · 16`
/// floats).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn interleave_blocks(a: &[Q8View<'_>; GROUP], il: &mut [i8], sc: &mut [f32]) {
    let nb = a[0].d.len();
    assert!(
        a.iter()
            .all(|r| r.qs.len() == nb * BLOCK && r.d.len() == nb && r.s.len() == nb)
    );
    assert!(il.len() == nb * GROUP_BLOCK_BYTES && sc.len() == nb * GROUP_BLOCK_SCALES);
    // Dword `4s + k` of the output: row k's dword `(k + s) % 4`, which is dword
    // `4k + (k + s) % 4` of the four rows side by side.
    let idx = _mm512_setr_epi32(0, 5, 10, 15, 1, 6, 11, 12, 2, 7, 8, 13, 3, 4, 9, 14);
    for b in 0..nb {
        for g in 0..2 {
            for h in 0..2 {
                // SAFETY: bytes `b·32 + 16h ..+ 16` of each row and the 256 output bytes at
                // `b·1024 + (2g + h)·256` are in bounds (asserted above).
                unsafe {
                    let l = |k: usize| {
                        _mm_loadu_si128(a[4 * g + k].qs.as_ptr().add(b * BLOCK + 16 * h).cast())
                    };
                    let v = _mm512_castsi128_si512(l(0));
                    let v = _mm512_inserti32x4::<1>(v, l(1));
                    let v = _mm512_inserti32x4::<2>(v, l(2));
                    let v = _mm512_inserti32x4::<3>(v, l(3));
                    // The four rotations, each repeated in the four 128-bit lanes (the kernel
                    // uses them as memory operands, with no broadcast of its own).
                    let r = _mm512_permutexvar_epi32(idx, v);
                    let at = b * GROUP_BLOCK_BYTES + (2 * g + h) * 256;
                    let out = il.as_mut_ptr().add(at);
                    _mm512_storeu_si512(out.cast(), _mm512_shuffle_i32x4::<0b00_00_00_00>(r, r));
                    _mm512_storeu_si512(
                        out.add(64).cast(),
                        _mm512_shuffle_i32x4::<0b01_01_01_01>(r, r),
                    );
                    _mm512_storeu_si512(
                        out.add(128).cast(),
                        _mm512_shuffle_i32x4::<0b10_10_10_10>(r, r),
                    );
                    _mm512_storeu_si512(
                        out.add(192).cast(),
                        _mm512_shuffle_i32x4::<0b11_11_11_11>(r, r),
                    );
                }
            }
        }
        let sb = &mut sc[b * GROUP_BLOCK_SCALES..(b + 1) * GROUP_BLOCK_SCALES];
        for (r, row) in a.iter().enumerate() {
            sb[r] = row.d[b];
            sb[GROUP + r] = row.s[b];
            let sum: i32 = row.qs[b * BLOCK..(b + 1) * BLOCK]
                .iter()
                .map(|&q| i32::from(q))
                .sum();
            let (g, k) = (r / 4, r % 4);
            for j in 0..4 {
                sb[2 * GROUP + 16 * g + 4 * j + k] = sum as f32;
            }
        }
    }
}

/// `out[r][i] = row_i · a_r` for eight activation rows laid out by [`interleave8`] (`il`, `sc`), on
/// Q4_0, Q4_1 or Q8_0 weights: `nrows` rows of `row_bytes` at the start of `span`; the rest of
/// `span` (the matrix's next rows, up to [`AHEAD_ROWS`] of them) is only prefetched. Each weight
/// block is read once for all eight rows. The weights are the unsigned operand of `vpdpbusd`: Q4
/// nibbles as they are, Q8_0 bytes offset by 128 (`w ^ 0x80`); the offsets of Q4_0 (8) and Q8_0
/// (128) are taken off the integer dot products through the activations' integer block sums, the
/// Q4_1 minimum `m` is applied per block through their float sums `s` (one FMA per sixteen
/// pairs).
///
/// The sums run in another order than `x86::rows_avx512`'s, so a row's result can differ from the
/// single-row kernel's in the last bits (within the f32 rounding bound of the kernel tests); it does
/// not depend on which other rows are computed in the same call.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `il` and `sc` must come from
/// [`interleave8`] on rows of `row_bytes / format.block_bytes()` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn rows_avx512_x8(
    format: WeightFormat,
    span: &[u8],
    nrows: usize,
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
    assert!(span.len() >= nrows * row_bytes, "weight rows");
    let rows = &span[..nrows * row_bytes];
    assert!(out.iter().all(|o| o.len() == nrows));
    if nrows == 0 {
        return;
    }
    // Rows past the end (in the last, partial quad) repeat the last row; their results are dropped.
    // SAFETY: the pointer is inside `rows` (clamped to its last row).
    let row = |i: usize| unsafe { rows.as_ptr().add(i.min(nrows - 1) * row_bytes) };
    let quad = |i: usize| [row(i), row(i + 1), row(i + 2), row(i + 3)];
    let mut store = |i: usize, sums: &[[f32; 16]; 2]| {
        for (g, lanes) in sums.iter().enumerate() {
            for j in 0..4.min(nrows - i) {
                for k in 0..4 {
                    out[4 * g + k][i + j] = lanes[4 * j + k];
                }
            }
        }
    };
    let mut i = 0;
    // SAFETY (every call): the quads' rows hold `nb` blocks of `bb` bytes, `il` and `sc` hold `nb`
    // blocks (asserted above); the caller guarantees the CPU features.
    unsafe {
        while i + 4 * PASS_QUADS <= nrows {
            let quads = std::array::from_fn(|q| quad(i + 4 * q));
            // The rows `AHEAD_ROWS` on, on their way into L2 while this pass computes: a pass
            // reads its rows' scales first, and that first touch would otherwise wait for memory
            // (half of the kernel's time in a decode step before this prefetch).
            let from = ((i + AHEAD_ROWS) * row_bytes).min(span.len());
            let ahead = &span[from..(from + PASS_ROWS * row_bytes).min(span.len())];
            let sums = match format {
                WeightFormat::Q4_0 => pass::<Q4_0_KIND, PASS_QUADS>(quads, nb, il, sc, ahead),
                WeightFormat::Q4_1 => pass::<Q4_1_KIND, PASS_QUADS>(quads, nb, il, sc, ahead),
                _ => pass::<Q8_0_KIND, PASS_QUADS>(quads, nb, il, sc, ahead),
            };
            for (q, s) in sums.iter().enumerate() {
                store(i + 4 * q, s);
            }
            i += 4 * PASS_QUADS;
        }
        while i < nrows {
            let quads = [quad(i)];
            let sums = match format {
                WeightFormat::Q4_0 => pass::<Q4_0_KIND, 1>(quads, nb, il, sc, &[]),
                WeightFormat::Q4_1 => pass::<Q4_1_KIND, 1>(quads, nb, il, sc, &[]),
                _ => pass::<Q8_0_KIND, 1>(quads, nb, il, sc, &[]),
            };
            store(i, &sums[0]);
            i += 4;
        }
    }
}

const Q4_0_KIND: u8 = 0;
const Q4_1_KIND: u8 = 1;
const Q8_0_KIND: u8 = 2;

/// Blocks whose weight scales are widened together.
const SEG: usize = 64;

/// The f16 scales of blocks `b0..b0 + len` of four rows (`bb`-byte blocks) as f32 into `d`, four
/// per block (`d[4b + k]`: row `k`), and into `m` the Q4_1 minimums (other formats take their
/// offsets in integers). Writes the first `4·len` floats of each (`m`: Q4_1 only), rounded up to a
/// multiple of 16.
///
/// # Safety
/// The rows must hold those blocks and lie in one allocation within 2 GiB of `rows[0]`;
/// `len ≤ SEG`; `d` and `m` must be valid for writes of `4·SEG` floats; F16C and AVX-512F must be
/// available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn widen<const KIND: u8>(
    rows: &[*const u8; 4],
    bb: usize,
    b0: usize,
    len: usize,
    d: *mut f32,
    m: *mut f32,
) {
    // One gather per sixteen (block, row) pairs of the first four bytes of each block: `d` in the
    // low half of a 32-bit lane, Q4_1's `m` in the high half. (Scalar stores into an array read
    // back as vectors stalled on store forwarding, a few hundred cycles per pass.) Lane `4b + k`
    // reads row `k`'s block `b`: offsets from row 0, whatever the rows' spacing.
    let base = rows[0];
    let row_off = _mm512_setr_epi32(
        0,
        rows[1].addr().wrapping_sub(base.addr()) as i32,
        rows[2].addr().wrapping_sub(base.addr()) as i32,
        rows[3].addr().wrapping_sub(base.addr()) as i32,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    );
    // Lane 4b + k: row k's offset + b blocks.
    let lane_off = _mm512_add_epi32(
        _mm512_permutexvar_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3),
            row_off,
        ),
        _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
            _mm512_set1_epi32(bb as i32),
        ),
    );
    let vectors = (4 * len).div_ceil(16);
    // SAFETY: the caller guarantees the blocks are readable (masked-off lanes are not read) and
    // room for `16 · vectors ≤ 4·SEG` floats in `d` and `m`.
    unsafe {
        for c in 0..vectors {
            let n = (4 * len - 16 * c).min(16);
            let mask = (((1u32 << n) - 1) & 0xFFFF) as u16;
            let g = _mm512_mask_i32gather_epi32::<1>(
                _mm512_setzero_si512(),
                mask,
                lane_off,
                base.add((b0 + 4 * c) * bb).cast(),
            );
            _mm512_storeu_ps(d.add(16 * c), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)));
            if KIND == Q4_1_KIND {
                let mv = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(g)));
                _mm512_storeu_ps(m.add(16 * c), mv);
            }
        }
    }
}

/// Position `k` of every 128-bit lane of `v` replaced by dword `(k + s) % 4` of that lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn rotate(v: __m512i, s: usize) -> __m512i {
    match s {
        0 => v,
        1 => _mm512_shuffle_epi32::<0b00_11_10_01>(v),
        2 => _mm512_shuffle_epi32::<0b01_00_11_10>(v),
        _ => _mm512_shuffle_epi32::<0b10_01_00_11>(v),
    }
}

/// `R` quads of weight rows (Q4_0, Q4_1 or Q8_0 by `KIND`, `nb` blocks each) times the eight
/// interleaved activation rows: `[quad][group g][4j + k]` is weight row `j` of the quad times
/// activation row `4g + k`. The bytes of `ahead` are prefetched, a share per block (within the
/// first three quarters of the blocks).
///
/// # Safety
/// Each row pointer points at `nb` readable blocks; `il`, `sc` hold `nb`
/// blocks; AVX-512 F/BW/VL/VNNI, FMA and F16C are available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // `h`, `s`, `q` and `g` index several arrays at once
unsafe fn pass<const KIND: u8, const R: usize>(
    quads: [[*const u8; 4]; R],
    nb: usize,
    il: &[i8],
    sc: &[f32],
    ahead: &[u8],
) -> [[[f32; 16]; 2]; R] {
    let (bb, qs) = match KIND {
        Q4_0_KIND => (18, 2),
        Q4_1_KIND => (20, 4),
        _ => (34, 2),
    };
    let low = _mm512_set1_epi8(0x0F);
    let flip = _mm512_set1_epi8(-128);
    // Lane (j, k) of a weight-scale vector holds row j's scale.
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    // The widened scales of the current segment (written by `widen` before they are read).
    let mut dw = [const { MaybeUninit::<[f32; 4 * SEG]>::uninit() }; R];
    let mut mw = [const { MaybeUninit::<[f32; 4 * SEG]>::uninit() }; R];
    // Bytes ahead prefetched per block: all of them within the first three quarters of the blocks.
    let per = ahead.len().div_ceil(64).div_ceil((3 * nb).div_ceil(4)) * 64;
    let mut seg0 = 0;
    // SAFETY: block `b < nb` of a row is `row + b·bb .. + bb`; its activations are
    // `il[b·1024 ..][..1024]` and `sc[b·16 ..][..16]` (the caller's guarantee).
    unsafe {
        while seg0 < nb {
            let len = SEG.min(nb - seg0);
            for q in 0..R {
                widen::<KIND>(
                    &quads[q],
                    bb,
                    seg0,
                    len,
                    dw[q].as_mut_ptr().cast(),
                    mw[q].as_mut_ptr().cast(),
                );
            }
            for (sb, b) in (seg0..seg0 + len).enumerate() {
                // A share of the bytes ahead, in address order.
                let start = (b * per).min(ahead.len());
                for off in (start..((b + 1) * per).min(ahead.len())).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T1>(ahead.as_ptr().add(off).cast());
                }
                let xp = il.as_ptr().add(b * GROUP_BLOCK_BYTES);
                let sp = sc.as_ptr().add(b * GROUP_BLOCK_SCALES);
                // Each quad's block: weight row j in 128-bit lane j, unsigned bytes per half-block.
                let mut w = [[_mm512_setzero_si512(); 2]; R];
                for q in 0..R {
                    let lanes = |off: usize| {
                        let l = |j: usize| _mm_loadu_si128(quads[q][j].add(b * bb + off).cast());
                        let v = _mm512_castsi128_si512(l(0));
                        let v = _mm512_inserti32x4::<1>(v, l(1));
                        let v = _mm512_inserti32x4::<2>(v, l(2));
                        _mm512_inserti32x4::<3>(v, l(3))
                    };
                    w[q] = if KIND == Q8_0_KIND {
                        // Two rows' 32 bytes per vector, then the half-blocks regrouped.
                        let l = |j: usize| _mm256_loadu_si256(quads[q][j].add(b * bb + 2).cast());
                        let r01 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l(0)), l(1));
                        let r23 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l(2)), l(3));
                        [
                            _mm512_xor_si512(_mm512_shuffle_i32x4::<0b10_00_10_00>(r01, r23), flip),
                            _mm512_xor_si512(_mm512_shuffle_i32x4::<0b11_01_11_01>(r01, r23), flip),
                        ]
                    } else {
                        let v = lanes(qs);
                        [
                            _mm512_and_si512(v, low),
                            _mm512_and_si512(_mm512_srli_epi16::<4>(v), low),
                        ]
                    };
                }
                let mut dot = [[_mm512_setzero_si512(); 2]; R];
                for h in 0..2 {
                    for s in 0..4 {
                        let x = |g: usize| {
                            _mm512_loadu_si512(xp.add(((2 * g + h) * 4 + s) * 64).cast())
                        };
                        let (x0, x1) = (x(0), x(1));
                        for q in 0..R {
                            let wr = rotate(w[q][h], s);
                            dot[q][0] = _mm512_dpbusd_epi32(dot[q][0], wr, x0);
                            dot[q][1] = _mm512_dpbusd_epi32(dot[q][1], wr, x1);
                        }
                    }
                }
                let dx = [
                    _mm512_broadcast_f32x4(_mm_loadu_ps(sp)),
                    _mm512_broadcast_f32x4(_mm_loadu_ps(sp.add(4))),
                ];
                let sx = [
                    _mm512_broadcast_f32x4(_mm_loadu_ps(sp.add(8))),
                    _mm512_broadcast_f32x4(_mm_loadu_ps(sp.add(12))),
                ];
                // Q4_0 and Q8_0: the offset in integers, `Σ(q - o)·x = Σq·x - o·Σx` (o = 8 or
                // 128, a shift), instead of a float term per block.
                let qsum = [
                    _mm512_cvtps_epi32(_mm512_loadu_ps(sp.add(2 * GROUP))),
                    _mm512_cvtps_epi32(_mm512_loadu_ps(sp.add(2 * GROUP + 16))),
                ];
                for q in 0..R {
                    let at = 4 * sb;
                    // The four rows' values in every 128-bit lane, then lane j's picked by an
                    // in-lane permutation (a cross-lane one would take the multiply units' turn).
                    let lanes = |v: *const f32| {
                        _mm512_permutevar_ps(
                            _mm512_broadcast_f32x4(_mm_loadu_ps(v.add(at))),
                            spread,
                        )
                    };
                    let d = lanes(dw[q].as_ptr().cast());
                    for g in 0..2 {
                        let dot = match KIND {
                            Q4_0_KIND => {
                                _mm512_sub_epi32(dot[q][g], _mm512_slli_epi32::<3>(qsum[g]))
                            }
                            Q8_0_KIND => {
                                _mm512_sub_epi32(dot[q][g], _mm512_slli_epi32::<7>(qsum[g]))
                            }
                            _ => dot[q][g],
                        };
                        let scaled = _mm512_cvtepi32_ps(dot);
                        acc[q][g] = _mm512_fmadd_ps(scaled, _mm512_mul_ps(dx[g], d), acc[q][g]);
                    }
                    if KIND == Q4_1_KIND {
                        let m = lanes(mw[q].as_ptr().cast());
                        for g in 0..2 {
                            acc[q][g] = _mm512_fmadd_ps(sx[g], m, acc[q][g]);
                        }
                    }
                }
            }
            seg0 += len;
        }
    }
    let mut out = [[[0f32; 16]; 2]; R];
    for q in 0..R {
        for g in 0..2 {
            // SAFETY: `out[q][g]` has room for 16 floats.
            unsafe { _mm512_storeu_ps(out[q][g].as_mut_ptr(), acc[q][g]) };
        }
    }
    out
}

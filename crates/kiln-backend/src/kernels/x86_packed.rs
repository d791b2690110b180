//! The AVX-512 kernel for products with several activation rows (batched decode, small prefill) on
//! Q4_0, Q4_1 and Q8_0 weights repacked into groups of sixteen rows.
//!
//! In the GGUF layout one weight row's blocks follow each other, so a vector of weights holds one
//! row, and pairing it with several activation rows needs rotations and scale shuffles (the
//! former eight-row kernel spent 120 of its ~185 instructions per 4096 products on them). Here a
//! [`Packed`] copy stores, per group of sixteen rows and per block, the rows' four-byte chunks side
//! by side: one vector holds the same chunk of all sixteen rows, one 32-bit lane per row. Against
//! an activation row's matching four bytes broadcast from memory (the embedded broadcast of
//! `vpdpbusd`), one instruction gives sixteen rows' partial dot products, and the block's sixteen
//! weight scales are one vector: per block and activation row, one conversion, one multiply and
//! one fused multiply-add apply them (plus one for Q4_1's minimum). About 125 instructions per
//! 4096 products, 64 of them `vpdpbusd`.
//!
//! The packed copy is a permutation of the GGUF bytes (the same size up to padding, Q8_0's bytes
//! stored offset by 128 so that they are the unsigned operand), built once per matrix on first use
//! (see `QuantMatrix::packed`). Dispatched from `mod.rs` under the contract of `x86.rs`: the caller
//! has checked the CPU features.

use std::arch::x86_64::*;

use super::{BLOCK, WeightFormat};

/// Weight rows per packed group.
pub(super) const GROUP_ROWS: usize = 16;
/// Activation rows per call of the kernel (more are taken in several calls).
pub(super) const MAX_ACTS: usize = 8;
/// The fewest activation rows for which products take the packed kernel (one row streams the GGUF
/// layout through the single-row kernel).
pub(super) const MIN_ACTS: usize = 2;
/// Bytes of the scale area at the start of each packed block: sixteen f16 `d`, then (Q4_1) sixteen
/// f16 `m`, padded to a cache line.
const SCALE_BYTES: usize = 64;

/// One 64-byte line, the unit of a [`Packed`] buffer (so that every packed block is aligned to a
/// cache line).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A block-format matrix repacked into groups of [`GROUP_ROWS`] rows. Group `g`, block `b` is at
/// byte `(g · blocks + b) · block_bytes`: [`SCALE_BYTES`] of scales (`d` of row `i` at `2i`, Q4_1's
/// `m` at `32 + 2i`, both f16), then the quants by four-byte chunk: chunk `c` of row `i` at
/// `SCALE_BYTES + 64c + 4i` (Q4: the block's sixteen nibble bytes, chunks 0..4; Q8_0: its 32
/// bytes XOR 0x80, chunks 0..8). Rows past the matrix's end are zero.
pub(crate) struct Packed {
    lines: Box<[Line]>,
    /// Bytes per packed block (sixteen rows).
    block_bytes: usize,
    /// Blocks per row.
    blocks: usize,
}

impl Packed {
    /// Heap bytes held.
    pub(crate) fn len_bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// Group `g`'s packed blocks, and the next group's (empty after the last group), which the
    /// kernels fetch while they compute this one.
    ///
    /// # Panics
    /// When `g` is not a group of the matrix.
    fn group_spans(&self, g: usize) -> (&[u8], &[u8]) {
        let bytes = self.bytes();
        let size = self.blocks * self.block_bytes;
        let ahead = bytes.get((g + 1) * size..(g + 2) * size).unwrap_or(&[]);
        (&bytes[g * size..(g + 1) * size], ahead)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `Line` is `repr(C)` over `[u8; 64]` (no padding), so the lines are
        // `len · 64` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.lines.len() * 64) }
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("bytes", &self.len_bytes())
            .field("blocks", &self.blocks)
            .finish()
    }
}

/// Bytes of quants per row and block in the packed layout, `None` for formats it does not cover.
fn quant_bytes(format: WeightFormat) -> Option<usize> {
    match format {
        WeightFormat::Q4_0 | WeightFormat::Q4_1 => Some(16),
        WeightFormat::Q8_0 => Some(32),
        _ => None,
    }
}

/// Whether [`pack`] covers `format`.
pub(super) fn covers(format: WeightFormat) -> bool {
    quant_bytes(format).is_some()
}

/// `rows` rows of `row_bytes` GGUF bytes in `format` (Q4_0, Q4_1 or Q8_0) repacked.
///
/// # Panics
/// When `format` is not one of those, or `bytes` is not `rows · row_bytes` long.
pub(super) fn pack(format: WeightFormat, bytes: &[u8], rows: usize, row_bytes: usize) -> Packed {
    let qb = quant_bytes(format).expect("pack: Q4_0, Q4_1 or Q8_0");
    assert_eq!(bytes.len(), rows * row_bytes, "pack: rows × row_bytes");
    let bb = format.block_bytes();
    let blocks = row_bytes / bb;
    let block_bytes = SCALE_BYTES + GROUP_ROWS * qb;
    let groups = rows.div_ceil(GROUP_ROWS);
    let mut lines = vec![Line([0; 64]); groups * blocks * block_bytes / 64].into_boxed_slice();
    // SAFETY: as in `Packed::bytes`, mutably (the only reference to the lines).
    let out: &mut [u8] =
        unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), lines.len() * 64) };
    // Q4_1 keeps `d` and `m` (4 bytes), the others `d` (2) before the quants.
    let head = bb - qb;
    let flip = if format == WeightFormat::Q8_0 {
        0x80
    } else {
        0
    };
    for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let (g, i) = (r / GROUP_ROWS, r % GROUP_ROWS);
        for (b, src) in row.chunks_exact(bb).enumerate() {
            let dst = &mut out[(g * blocks + b) * block_bytes..][..block_bytes];
            dst[2 * i..2 * i + 2].copy_from_slice(&src[..2]);
            if head == 4 {
                dst[32 + 2 * i..32 + 2 * i + 2].copy_from_slice(&src[2..4]);
            }
            for (c, chunk) in src[head..].chunks_exact(4).enumerate() {
                let at = SCALE_BYTES + 64 * c + 4 * i;
                for (o, &v) in dst[at..at + 4].iter_mut().zip(chunk) {
                    *o = v ^ flip;
                }
            }
        }
    }
    Packed {
        lines,
        block_bytes,
        blocks,
    }
}

/// The quantized activations of one call: row `j`'s values at `qs[j · cols ..]`, its block `b`'s
/// scale `d`, scaled sum `s` (`d · Σq`) and integer offset term at `[j · blocks + b]` of `d`, `s`
/// and `off` (`off` = `-o · Σq` with the format's offset `o`: 8 for Q4_0, 128 for Q8_0; unused for
/// Q4_1).
#[derive(Clone, Copy)]
pub(super) struct Acts<'a> {
    pub(super) qs: &'a [i8],
    pub(super) d: &'a [f32],
    pub(super) s: &'a [f32],
    pub(super) off: &'a [i32],
}

/// `out[j][i] = row_(16g + i) · a_j` for packed group `g` and the `N` activation rows of `acts`
/// (`N ≤ MAX_ACTS`); `out` holds sixteen floats per activation row, rows past the matrix's end give
/// zeros.
///
/// The block's integer dot products are exact; each is scaled once (`d_w · d_x`), so a row's result
/// differs from the single-row kernel's only by summation order.
///
/// # Panics
/// When `g` is not a group of `w`, or `acts` does not hold `N` rows of `w`'s width.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub(super) unsafe fn group<const N: usize>(
    format: WeightFormat,
    w: &Packed,
    g: usize,
    acts: Acts<'_>,
    out: &mut [[f32; GROUP_ROWS]],
) {
    assert!(out.len() >= N, "packed kernel: outputs");
    let blocks = w.blocks;
    let (span, ahead) = w.group_spans(g);
    assert!(
        acts.qs.len() >= N * blocks * BLOCK
            && acts.d.len() >= N * blocks
            && acts.s.len() >= N * blocks,
        "packed kernel: activations"
    );
    let acc = match format {
        WeightFormat::Q4_0 => {
            assert!(acts.off.len() >= N * blocks, "packed kernel: offsets");
            // SAFETY: the sizes asserted above; the caller's CPU features.
            unsafe { blocks_loop::<Q4_0_KIND, N>(span, ahead, w.block_bytes, blocks, acts) }
        }
        // SAFETY: as above.
        WeightFormat::Q4_1 => unsafe {
            blocks_loop::<Q4_1_KIND, N>(span, ahead, w.block_bytes, blocks, acts)
        },
        WeightFormat::Q8_0 => {
            assert!(acts.off.len() >= N * blocks, "packed kernel: offsets");
            // SAFETY: as above.
            unsafe { blocks_loop::<Q8_0_KIND, N>(span, ahead, w.block_bytes, blocks, acts) }
        }
        other => panic!("packed kernel: {other} is not packed"),
    };
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// The start of packed block `b` of `span` (64-byte aligned), after prefetching block `b` of `ahead`
/// into L1 (when there is one).
///
/// # Safety
/// `span` holds more than `b` blocks of `block_bytes`; `ahead` as many or none.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
unsafe fn block_start(span: &[u8], ahead: &[u8], b: usize, block_bytes: usize) -> *const u8 {
    if !ahead.is_empty() {
        for line in (b * block_bytes..(b + 1) * block_bytes).step_by(64) {
            // SAFETY: inside `ahead` (the caller's guarantee).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(line).cast()) };
        }
    }
    // SAFETY: block `b` of `span` (the caller's guarantee).
    unsafe { span.as_ptr().add(b * block_bytes) }
}

const Q4_0_KIND: u8 = 0;
const Q4_1_KIND: u8 = 1;
const Q8_0_KIND: u8 = 2;

/// The body of [`group`] for one format: `span` is the group's `blocks` packed blocks, `ahead` the
/// next group's (or nothing), prefetched block by block.
///
/// # Safety
/// `span` holds `blocks` blocks of `block_bytes`, `ahead` as many or none; `acts` holds `N` rows of `blocks` blocks (and
/// `off` too unless Q4_1); the CPU features of [`group`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
#[allow(clippy::needless_range_loop)] // `j` indexes the accumulators and the activations at once
unsafe fn blocks_loop<const KIND: u8, const N: usize>(
    span: &[u8],
    ahead: &[u8],
    block_bytes: usize,
    blocks: usize,
    acts: Acts<'_>,
) -> [__m512; N] {
    let low = _mm512_set1_epi8(0x0F);
    let cols = blocks * BLOCK;
    let mut acc = [_mm512_setzero_ps(); N];
    // With few activation rows, the low and high nibbles accumulate apart: two chains per row
    // instead of one, so that `vpdpbusd`'s latency stays hidden.
    let split = N <= 4;
    // Activation row `j`'s four bytes `4c..4c + 4` of block `b`, broadcast to every lane.
    let x = |j: usize, b: usize, c: usize| {
        // SAFETY: `j < N`, `b < blocks`, `c < 8`: inside `acts.qs` (the caller's guarantee).
        let v = unsafe {
            acts.qs
                .as_ptr()
                .add(j * cols + b * BLOCK + 4 * c)
                .cast::<i32>()
                .read_unaligned()
        };
        _mm512_set1_epi32(v)
    };
    for b in 0..blocks {
        // SAFETY: the caller's guarantee on `span` and `ahead`.
        let p = unsafe { block_start(span, ahead, b, block_bytes) };
        let mut dot = [[_mm512_setzero_si512(); N]; 2];
        if KIND != Q4_1_KIND {
            for (j, d) in dot[0].iter_mut().enumerate() {
                // SAFETY: inside `acts.off` (the caller's guarantee).
                *d = _mm512_set1_epi32(unsafe { *acts.off.get_unchecked(j * blocks + b) });
            }
        }
        if KIND == Q8_0_KIND {
            for c in 0..8 {
                // SAFETY: chunk `c` of the block, an aligned 64-byte line.
                let wv = unsafe { _mm512_load_si512(p.add(SCALE_BYTES + 64 * c).cast()) };
                let h = usize::from(split && c % 2 == 1);
                for j in 0..N {
                    dot[h][j] = _mm512_dpbusd_epi32(dot[h][j], wv, x(j, b, c));
                }
            }
        } else {
            for c in 0..4 {
                // SAFETY: as above.
                let v = unsafe { _mm512_load_si512(p.add(SCALE_BYTES + 64 * c).cast()) };
                let lo = _mm512_and_si512(v, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                let h = usize::from(split);
                for j in 0..N {
                    dot[0][j] = _mm512_dpbusd_epi32(dot[0][j], lo, x(j, b, c));
                    dot[h][j] = _mm512_dpbusd_epi32(dot[h][j], hi, x(j, b, c + 4));
                }
            }
        }
        // SAFETY: the block's scale area.
        let dw = unsafe { _mm512_cvtph_ps(_mm256_load_si256(p.cast())) };
        for j in 0..N {
            let sum = if split {
                _mm512_add_epi32(dot[0][j], dot[1][j])
            } else {
                dot[0][j]
            };
            // SAFETY: inside `acts.d` (the caller's guarantee).
            let dx = unsafe { *acts.d.get_unchecked(j * blocks + b) };
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(dx));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[j]);
        }
        if KIND == Q4_1_KIND {
            // SAFETY: as above.
            let mw = unsafe { _mm512_cvtph_ps(_mm256_load_si256(p.add(32).cast())) };
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: inside `acts.s` (the caller's guarantee).
                let sx = unsafe { *acts.s.get_unchecked(j * blocks + b) };
                *a = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), *a);
            }
        }
    }
    acc
}

/// `out[j][i] = row_(16g + i) · x_j` for packed group `g` and the `N` f32 activation rows of `x`
/// (`N · cols` values; `xsum` holds every 32-block's sum, `N · blocks` values), with no rounding of
/// the activations: per block, `Σ q·x` in f32 fused multiply-adds (each quant looked up as a float
/// by `vpermps` or sign-extended), then scaled by `d` once, with Q4_1's `m·Σx` through the block
/// sums. Rows past the matrix's end give zeros.
///
/// # Panics
/// When `g` is not a group of `w`, or `x`, `xsum` or `out` are too short for `N` rows.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
pub(super) unsafe fn group_f32<const N: usize>(
    format: WeightFormat,
    w: &Packed,
    g: usize,
    x: &[f32],
    xsum: &[f32],
    out: &mut [[f32; GROUP_ROWS]],
) {
    assert!(out.len() >= N, "packed kernel: outputs");
    let blocks = w.blocks;
    let (span, ahead) = w.group_spans(g);
    assert!(
        x.len() >= N * blocks * BLOCK && xsum.len() >= N * blocks,
        "packed kernel: activations"
    );
    let bb = w.block_bytes;
    // SAFETY (each arm): the sizes asserted above; the caller's CPU features.
    let acc = match format {
        WeightFormat::Q4_0 => unsafe { f32_loop::<Q4_0_KIND, N>(span, ahead, bb, blocks, x, xsum) },
        WeightFormat::Q4_1 => unsafe { f32_loop::<Q4_1_KIND, N>(span, ahead, bb, blocks, x, xsum) },
        WeightFormat::Q8_0 => unsafe { f32_loop::<Q8_0_KIND, N>(span, ahead, bb, blocks, x, xsum) },
        other => panic!("packed kernel: {other} is not packed"),
    };
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// `v` shifted right by `s` bits in every 32-bit lane (`s` a multiple of 4 below 32).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
fn shift(v: __m512i, s: u32) -> __m512i {
    match s {
        0 => v,
        4 => _mm512_srli_epi32::<4>(v),
        8 => _mm512_srli_epi32::<8>(v),
        12 => _mm512_srli_epi32::<12>(v),
        16 => _mm512_srli_epi32::<16>(v),
        20 => _mm512_srli_epi32::<20>(v),
        24 => _mm512_srli_epi32::<24>(v),
        _ => _mm512_srli_epi32::<28>(v),
    }
}

/// The body of [`group_f32`] for one format (as [`blocks_loop`] for the 8-bit activations).
///
/// # Safety
/// `span` holds `blocks` blocks of `block_bytes`, `ahead` as many or none; `x` and `xsum` hold `N`
/// rows; the CPU features of [`group_f32`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
#[allow(clippy::needless_range_loop)] // `j` indexes the accumulators and the activations at once
unsafe fn f32_loop<const KIND: u8, const N: usize>(
    span: &[u8],
    ahead: &[u8],
    block_bytes: usize,
    blocks: usize,
    x: &[f32],
    xsum: &[f32],
) -> [__m512; N] {
    let cols = blocks * BLOCK;
    // Q4 quants as floats, looked up by `vpermps` (which reads only an index's low four bits, so a
    // nibble needs a shift but no mask); Q4_0's offset is in the table.
    let table = if KIND == Q4_0_KIND {
        _mm512_setr_ps(
            -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
        )
    } else {
        _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        )
    };
    // Q8_0: the packed bytes are `q ^ 0x80`.
    let flip = _mm512_set1_epi8(-128);
    let mut acc = [_mm512_setzero_ps(); N];
    let split = N <= 4;
    // Activation row `j`'s element `e` of block `b`, broadcast.
    let xe = |j: usize, b: usize, e: usize| {
        // SAFETY: `j < N`, `b < blocks`, `e < 32`: inside `x` (the caller's guarantee).
        _mm512_set1_ps(unsafe { *x.get_unchecked(j * cols + b * BLOCK + e) })
    };
    for b in 0..blocks {
        // SAFETY: the caller's guarantee on `span` and `ahead`.
        let p = unsafe { block_start(span, ahead, b, block_bytes) };
        let mut dot = [[_mm512_setzero_ps(); N]; 2];
        if KIND == Q8_0_KIND {
            for c in 0..8 {
                // SAFETY: chunk `c` of the block, an aligned 64-byte line.
                let v = unsafe { _mm512_load_si512(p.add(SCALE_BYTES + 64 * c).cast()) };
                // The signed quants (a float sum over `q + 128` would lose bits to the offset),
                // byte `k` sign-extended by shifting it to the top of its lane and back.
                let v = _mm512_xor_si512(v, flip);
                for k in 0..4 {
                    let top = match k {
                        0 => _mm512_slli_epi32::<24>(v),
                        1 => _mm512_slli_epi32::<16>(v),
                        2 => _mm512_slli_epi32::<8>(v),
                        _ => v,
                    };
                    let q = _mm512_cvtepi32_ps(_mm512_srai_epi32::<24>(top));
                    let h = usize::from(split && k % 2 == 1);
                    for j in 0..N {
                        dot[h][j] = _mm512_fmadd_ps(q, xe(j, b, 4 * c + k), dot[h][j]);
                    }
                }
            }
        } else {
            for c in 0..4 {
                // SAFETY: as above.
                let v = unsafe { _mm512_load_si512(p.add(SCALE_BYTES + 64 * c).cast()) };
                for k in 0..4 {
                    // Byte k: element 4c + k in the low nibble, 16 + 4c + k in the high one.
                    let lo = _mm512_permutexvar_ps(shift(v, 8 * k as u32), table);
                    let hi = _mm512_permutexvar_ps(shift(v, 8 * k as u32 + 4), table);
                    let h = usize::from(split);
                    for j in 0..N {
                        dot[0][j] = _mm512_fmadd_ps(lo, xe(j, b, 4 * c + k), dot[0][j]);
                        dot[h][j] = _mm512_fmadd_ps(hi, xe(j, b, 16 + 4 * c + k), dot[h][j]);
                    }
                }
            }
        }
        // SAFETY: the block's scale area.
        let dw = unsafe { _mm512_cvtph_ps(_mm256_load_si256(p.cast())) };
        for j in 0..N {
            let sum = if split {
                _mm512_add_ps(dot[0][j], dot[1][j])
            } else {
                dot[0][j]
            };
            acc[j] = _mm512_fmadd_ps(sum, dw, acc[j]);
        }
        if KIND == Q4_1_KIND {
            // SAFETY: as above.
            let mw = unsafe { _mm512_cvtph_ps(_mm256_load_si256(p.add(32).cast())) };
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: inside `xsum` (the caller's guarantee).
                let sx = unsafe { *xsum.get_unchecked(j * blocks + b) };
                *a = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), *a);
            }
        }
    }
    acc
}

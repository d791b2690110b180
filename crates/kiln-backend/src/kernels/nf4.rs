//! NF4 weights ([`WeightFormat::Nf4`]): Kiln's in-memory block layout, its construction from an
//! [`Nf4Tensor`], and the row kernels (portable, AVX2, AVX-512).
//!
//! A block is 64 elements in 36 bytes: the f32 absmax (little-endian), then bitsandbytes' 32 packed
//! bytes unchanged (element `2j` in the high nibble of byte `j`, `2j + 1` in the low one). The value
//! of element `i` is `NF4_CODE[q_i] · absmax`, bit for bit what bitsandbytes' `dequantize_4bit`
//! produces. The kernels multiply with the f32 activations directly (no activation quantization):
//! per block they scale the 16-entry code table by the absmax once and look the weights up in it —
//! `vpermps` on a 16-float table in one zmm register (AVX-512), two 8-float `vpermps` and a blend on
//! the index's bit 3 (AVX2) — so every product is exactly `w_i · x_i` with `w_i` the dequantized
//! weight, and the result differs from an f32 reference only in summation order.
//!
//! The activations are first reordered ([`deinterleave`]: per 32 elements, the even ones then the
//! odd ones), so that the zero-extended code bytes index the even elements after a shift and the odd
//! ones as they are (`vpermps` reads only an index's low 4 bits): no byte shuffles per block.

use crate::Result;
use crate::nf4::{NF4_CODE, Nf4Error, Nf4Tensor};

use super::{QuantMatrix, SimdPath, WeightFormat};

/// Elements per NF4 block.
pub(super) const NF4_BLOCK: usize = 64;
/// Bytes per NF4 block: the f32 absmax and 32 bytes of codes.
pub(super) const NF4_BLOCK_BYTES: usize = 36;

#[inline]
fn scale_at(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Writes one row of NF4 blocks as f32.
pub(super) fn dequantize(row: &[u8], out: &mut [f32]) {
    for (o, b) in out
        .chunks_exact_mut(NF4_BLOCK)
        .zip(row.chunks_exact(NF4_BLOCK_BYTES))
    {
        let s = scale_at(b);
        for (pair, &q) in o.chunks_exact_mut(2).zip(&b[4..]) {
            pair[0] = NF4_CODE[usize::from(q >> 4)] * s;
            pair[1] = NF4_CODE[usize::from(q & 0x0F)] * s;
        }
    }
}

/// Writes `x` (a whole number of 32-element groups) into `out` in the kernels' order: per group
/// of 32, elements 0, 2, …, 30, then 1, 3, …, 31 — the high nibbles of the group's 16 code bytes,
/// then the low ones.
pub(super) fn deinterleave(x: &[f32], out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    for (g, o) in x.chunks_exact(32).zip(out.chunks_exact_mut(32)) {
        let (even, odd) = o.split_at_mut(16);
        for (j, pair) in g.chunks_exact(2).enumerate() {
            even[j] = pair[0];
            odd[j] = pair[1];
        }
    }
}

/// One row · `x` (deinterleaved), portable: eight partial sums of exact `w · x` products.
fn dot_scalar(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (b, xb) in row
        .chunks_exact(NF4_BLOCK_BYTES)
        .zip(x.chunks_exact(NF4_BLOCK))
    {
        let s = scale_at(b);
        let t = NF4_CODE.map(|c| c * s);
        for (qs, xg) in b[4..].chunks_exact(16).zip(xb.chunks_exact(32)) {
            let (even, odd) = xg.split_at(16);
            for (c, (q4, (e4, o4))) in qs
                .chunks_exact(4)
                .zip(even.chunks_exact(4).zip(odd.chunks_exact(4)))
                .enumerate()
            {
                let a = &mut acc[4 * (c % 2)..4 * (c % 2) + 4];
                for l in 0..4 {
                    a[l] +=
                        t[usize::from(q4[l] >> 4)] * e4[l] + t[usize::from(q4[l] & 0x0F)] * o4[l];
                }
            }
        }
    }
    acc.iter().sum()
}

/// `out[i] = row_i · x` for consecutive NF4 rows on `path` (which the caller checked is supported),
/// `x` in [`deinterleave`]d order.
pub(super) fn rows(path: SimdPath, rows: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    // The length contract every kernel below relies on, checked once per chunk.
    assert_eq!(row_bytes / NF4_BLOCK_BYTES * NF4_BLOCK, x.len());
    assert_eq!(row_bytes % NF4_BLOCK_BYTES, 0);
    assert_eq!(rows.len(), row_bytes * out.len());
    let each = |f: &dyn Fn(&[u8]) -> f32, out: &mut [f32]| {
        for (o, r) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
            *o = f(r);
        }
    };
    match path {
        SimdPath::Scalar => each(&|r| dot_scalar(r, x), out),
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2 => {
            // SAFETY: the caller checked AVX2/FMA/F16C; lengths asserted above.
            each(&|r| unsafe { x86::dot_avx2(r, x) }, out);
        }
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => {
            // SAFETY: the caller checked AVX-512 F/BW/VL/VNNI; lengths asserted above.
            each(&|r| unsafe { x86::dot_avx512::<1>(r, &[x]) }[0], out);
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("SIMD path {path:?} is not supported on this architecture"),
    }
}

/// Activation rows per tile of the batched AVX-512 kernel.
#[cfg(target_arch = "x86_64")]
pub(super) const TILE: usize = 4;

/// `out[t][i] = row_i · xs[t]` on AVX-512, each weight block unpacked once for [`TILE`] activation
/// rows; per activation row bit-identical to [`rows`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn rows_tile_avx512(
    rows: &[u8],
    row_bytes: usize,
    xs: &[&[f32]; TILE],
    out: &mut [&mut [f32]; TILE],
) {
    assert_eq!(row_bytes % NF4_BLOCK_BYTES, 0);
    let nrows = rows.len() / row_bytes;
    for (x, o) in xs.iter().zip(out.iter()) {
        assert_eq!(row_bytes / NF4_BLOCK_BYTES * NF4_BLOCK, x.len());
        assert_eq!(o.len(), nrows);
    }
    for (i, r) in rows.chunks_exact(row_bytes).enumerate() {
        // SAFETY: lengths asserted above; the caller guarantees the CPU features.
        let sums = unsafe { x86::dot_avx512::<TILE>(r, xs) };
        for t in 0..TILE {
            out[t][i] = sums[t];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{NF4_BLOCK, NF4_BLOCK_BYTES, NF4_CODE};

    /// The block's absmax at `p`.
    ///
    /// # Safety
    /// Four bytes at `p` must be readable.
    #[inline]
    unsafe fn scale(p: *const u8) -> f32 {
        // SAFETY: the caller guarantees the bytes; the read is unaligned.
        unsafe { p.cast::<f32>().read_unaligned() }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s)))
    }

    /// Looks eight indices (low 4 bits of each lane) up in the 16-entry table `lo ++ hi`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lookup8(lo: __m256, hi: __m256, idx: __m256i) -> __m256 {
        let a = _mm256_permutevar8x32_ps(lo, idx);
        let b = _mm256_permutevar8x32_ps(hi, idx);
        // Bit 3 of the index into the sign bit selects the upper half.
        _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
    }

    /// One NF4 row · `x` (deinterleaved) on AVX2.
    ///
    /// # Safety
    /// AVX2, FMA, F16C; `row.len() / 36 * 64 == x.len()`, `row.len() % 36 == 0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx2(row: &[u8], x: &[f32]) -> f32 {
        let nb = row.len() / NF4_BLOCK_BYTES;
        let (rp, xp) = (row.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        // SAFETY: block `b < nb` reads bytes `36b..36b+36` and activations `64b..64b+64`, in bounds
        // by the caller's contract; the table reads 16 floats of a 16-float array.
        unsafe {
            let tlo = _mm256_loadu_ps(NF4_CODE.as_ptr());
            let thi = _mm256_loadu_ps(NF4_CODE.as_ptr().add(8));
            for b in 0..nb {
                let p = rp.add(b * NF4_BLOCK_BYTES);
                let s = _mm256_set1_ps(scale(p));
                let (lo, hi) = (_mm256_mul_ps(tlo, s), _mm256_mul_ps(thi, s));
                let xb = xp.add(b * NF4_BLOCK);
                // Four runs of 8 code bytes; run `r` covers group `r / 2`, bytes `8 (r % 2)..`.
                for (r, a) in acc.iter_mut().enumerate() {
                    let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(4 + 8 * r).cast()));
                    let xg = xb.add(32 * (r / 2) + 8 * (r % 2));
                    let even = lookup8(lo, hi, _mm256_srli_epi32::<4>(q));
                    let odd = lookup8(lo, hi, q);
                    *a = _mm256_fmadd_ps(even, _mm256_loadu_ps(xg), *a);
                    *a = _mm256_fmadd_ps(odd, _mm256_loadu_ps(xg.add(16)), *a);
                }
            }
        }
        hsum256(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ))
    }

    /// One NF4 row · `T` activation rows on AVX-512: per block, the scaled table and the 64
    /// weights (four `vpermps`) once, then four FMAs per activation row.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI, AVX2, FMA; `row.len() % 36 == 0` and every `xs[t].len() ==
    /// row.len() / 36 * 64`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx512<const T: usize>(row: &[u8], xs: &[&[f32]; T]) -> [f32; T] {
        let nb = row.len() / NF4_BLOCK_BYTES;
        let rp = row.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; T];
        // SAFETY: as in `dot_avx2`.
        unsafe {
            let table = _mm512_loadu_ps(NF4_CODE.as_ptr());
            for b in 0..nb {
                let p = rp.add(b * NF4_BLOCK_BYTES);
                let t = _mm512_mul_ps(table, _mm512_set1_ps(scale(p)));
                // Two groups of 16 code bytes, zero-extended: the high nibbles (shifted down) index
                // the group's even elements, the bytes as they are its odd ones.
                let q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(4).cast()));
                let q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(20).cast()));
                let w = [
                    _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(q0), t),
                    _mm512_permutexvar_ps(q0, t),
                    _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(q1), t),
                    _mm512_permutexvar_ps(q1, t),
                ];
                for (a, x) in acc.iter_mut().zip(xs) {
                    let xb = x.as_ptr().add(b * NF4_BLOCK);
                    a[0] = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(xb), a[0]);
                    a[1] = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(xb.add(16)), a[1]);
                    a[0] = _mm512_fmadd_ps(w[2], _mm512_loadu_ps(xb.add(32)), a[0]);
                    a[1] = _mm512_fmadd_ps(w[3], _mm512_loadu_ps(xb.add(48)), a[1]);
                }
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1])))
    }
}

impl QuantMatrix {
    /// The `[rows, cols]` weight matrix of an NF4 tensor (`shape` must be 2-D), as bitsandbytes
    /// flattens it (row-major).
    ///
    /// When `cols` is a multiple of 64 and the tensor's blocksize a multiple of 64 (64, 128, …,
    /// 4096), every 64-element group of a row lies in one bitsandbytes block: the result is a
    /// [`WeightFormat::Nf4`] matrix (double-quantized absmax expanded to f32 once, here), which
    /// the kernels compute on directly, with exactly the dequantized weights. Otherwise (blocks
    /// straddle rows or are 32 wide) the result is an exactly dequantized [`WeightFormat::F32`]
    /// matrix — correct, eight times the memory.
    ///
    /// # Errors
    /// [`crate::Error::Nf4`] when the shape is not 2-D or the tensor is inconsistent
    /// ([`Nf4Tensor::validate`]), and those of [`QuantMatrix::new`].
    pub fn from_nf4(t: &Nf4Tensor) -> Result<Self> {
        t.validate()?;
        let &[rows, cols] = t.shape.as_slice() else {
            return Err(Nf4Error::NotAMatrix(t.shape.clone()).into());
        };
        if !cols.is_multiple_of(NF4_BLOCK) || !t.blocksize.is_multiple_of(NF4_BLOCK) {
            let bytes: Vec<u8> = t
                .dequantize()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            return QuantMatrix::new(WeightFormat::F32, rows, cols, bytes);
        }
        let absmax = t.absmax.to_f32();
        let groups = rows * cols / NF4_BLOCK;
        let mut bytes = Vec::with_capacity(groups * NF4_BLOCK_BYTES);
        for (g, codes) in t.packed.chunks_exact(NF4_BLOCK / 2).enumerate() {
            bytes.extend(absmax[g * NF4_BLOCK / t.blocksize].to_le_bytes());
            bytes.extend_from_slice(codes);
        }
        QuantMatrix::new(WeightFormat::Nf4, rows, cols, bytes)
    }
}

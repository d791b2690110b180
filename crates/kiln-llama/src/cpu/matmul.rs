//! Matrix products on quantized weights with f32 activations: each weight block is dequantized in
//! registers and multiplied with the activations in f32, so the result equals a dequantize-then-
//! multiply reference (what transformers computes on a GGUF) up to summation order, while the decode
//! step still reads only the quantized bytes.
//!
//! The 8-bit-activation kernels of `kiln_backend::kernels` are faster on compute-bound prefill but
//! round every activation to 8 bits, as llama.cpp does; on SmolLM2 that moves logits by about 1 and
//! changes greedy answers. Kiln chooses exactness by default.

use half::f16;
use std::ops::Range;

use kiln_backend::kernels::{self, QuantMatrix, Scratch, WeightFormat, matmul_rows_strided};

use super::team::Buf;
use rayon::prelude::*;

pub(crate) const BLOCK: usize = 32;
/// Output rows per call of the exact row kernels.
const ROWS_PER_TASK: usize = 32;

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes one 32-element block.
#[inline(always)]
fn dequant_block(format: WeightFormat, b: &[u8], out: &mut [f32; BLOCK]) {
    match format {
        WeightFormat::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                let q = b[2 + j];
                out[j] = (f32::from(q & 0x0f) - 8.0) * d;
                out[j + 16] = (f32::from(q >> 4) - 8.0) * d;
            }
        }
        WeightFormat::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                let q = b[4 + j];
                out[j] = f32::from(q & 0x0f) * d + m;
                out[j + 16] = f32::from(q >> 4) * d + m;
            }
        }
        WeightFormat::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..BLOCK {
                out[j] = f32::from(b[2 + j] as i8) * d;
            }
        }
        // Not a block format: callers route these elsewhere.
        _ => out.fill(0.0),
    }
}

/// `acc += w · x` over one block, with 8 independent lanes so the compiler emits vector FMAs.
#[inline(always)]
fn dot_block(w: &[f32; BLOCK], x: &[f32], acc: &mut [f32; 8]) {
    for c in 0..BLOCK / 8 {
        for l in 0..8 {
            acc[l] = w[c * 8 + l].mul_add(x[c * 8 + l], acc[l]);
        }
    }
}

/// Activation rows processed together: each dequantized weight block is reused for this many dot
/// products while their slices of `x` stay in L1.
pub(crate) const ACT_TILE: usize = 8;

#[inline(always)]
fn rows_kernel(w: &QuantMatrix, x: &[f32], n: usize, first_row: usize, out: &mut [f32]) {
    let (cols, format) = (w.cols(), w.format());
    let bb = format.block_bytes();
    let blocks = cols / BLOCK;
    let task_rows = out.len() / n;
    let mut vals = [0f32; BLOCK];
    for i0 in (0..n).step_by(ACT_TILE) {
        let m = ACT_TILE.min(n - i0);
        for r in 0..task_rows {
            let row = w.row(first_row + r);
            let mut acc = [[0f32; 8]; ACT_TILE];
            for b in 0..blocks {
                dequant_block(format, &row[b * bb..(b + 1) * bb], &mut vals);
                for (k, a) in acc.iter_mut().enumerate().take(m) {
                    let off = (i0 + k) * cols + b * BLOCK;
                    dot_block(&vals, &x[off..off + BLOCK], a);
                }
            }
            for (k, a) in acc.iter().enumerate().take(m) {
                out[(i0 + k) * task_rows + r] = a.iter().sum();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(w: &QuantMatrix, x: &[f32], n: usize, first: usize, out: &mut [f32]) {
    rows_kernel(w, x, n, first, out);
}

/// The instruction set the kernels of this engine use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// The best instruction set of this CPU (detected once).
pub(crate) fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512() {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// Whether this CPU has every feature the AVX-512 kernels enable: F, BW and VL (VL also lets the
/// compiler use all 32 vector registers in code that mixes 128-bit and 512-bit operations), FMA
/// and F16C.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[allow(clippy::too_many_arguments)]
fn run_rows(
    isa: Isa,
    w: &QuantMatrix,
    x: &[f32],
    xsum: &[f32],
    n: usize,
    first: usize,
    out: &mut [f32],
) {
    match isa {
        // SAFETY: `Isa::Avx512`: every feature the kernel enables was detected; `w` is a block
        // format (checked by `matmul_exact`) and the slices are sized by it.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { super::avx512::rows(w, x, xsum, n, first, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { rows_avx2(w, x, n, first, out) },
        _ => rows_kernel(w, x, n, first, out),
    }
}

/// From this many activation rows on (prefill), weight tiles are dequantized and multiplied by a
/// cache-blocked f32 GEMM: compute-bound work wants the GEMM's register tiling more than it wants to
/// save memory traffic.
pub(crate) const GEMM_MIN_ROWS: usize = 16;
/// Weight rows dequantized per GEMM call (a 576-wide tile is 2.4 MB of f32).
pub(crate) const GEMM_TILE_ROWS: usize = 1024;

/// Dequantizes rows `r0..r0 + r` of `w` into `tile` (`r × cols`, row-major).
pub(crate) fn dequantize_tile(w: &QuantMatrix, r0: usize, r: usize, tile: &mut Vec<f32>) {
    let cols = w.cols();
    tile.resize(r * cols, 0.0);
    tile[..r * cols]
        .par_chunks_mut(cols)
        .enumerate()
        .for_each(|(i, row)| w.dequantize_row(r0 + i, row));
}

/// `dst[i * stride + j] = x_i · tile_j` for the `n` rows of `x` (`n × cols`) and the rows of
/// `tile` (`r × cols`, dequantized weights), with the `gemm` crate.
///
/// # Safety
/// `dst + i * stride + j` is valid for writes, and touched by no one else, for every `i < n`,
/// `j < r`.
unsafe fn gemm_tile(
    n: usize,
    cols: usize,
    dst: *mut f32,
    stride: usize,
    x: &[f32],
    tile: &[f32],
    parallelism: gemm::Parallelism,
) {
    let r = tile.len() / cols;
    assert!(x.len() >= n * cols && tile.len() == r * cols);
    // SAFETY: dst as the caller guarantees; lhs(i, k) is `x[i * cols + k]` (n·cols long, asserted);
    // rhs(k, j) is `tile[j * cols + k]` (r·cols long).
    unsafe {
        gemm::gemm(
            n,
            r,
            cols,
            dst,
            1,
            stride as isize,
            false,
            x.as_ptr(),
            1,
            cols as isize,
            tile.as_ptr(),
            cols as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `y = x Wᵀ` through dequantized tiles of `W` and the `gemm` crate.
pub(crate) fn gemm_dequantized(
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    tile: &mut Vec<f32>,
) {
    let (rows, cols) = (w.rows(), w.cols());
    for r0 in (0..rows).step_by(GEMM_TILE_ROWS) {
        let r = GEMM_TILE_ROWS.min(rows - r0);
        dequantize_tile(w, r0, r, tile);
        // SAFETY: dst is `y[i * rows + r0 + j]` for i < n, j < r (inside `y`, which is n·rows long).
        unsafe {
            gemm_tile(
                n,
                cols,
                y.as_mut_ptr().add(r0),
                rows,
                x,
                &tile[..r * cols],
                gemm::Parallelism::Rayon(0),
            );
        }
    }
}

/// How a product of `n` activation rows with a matrix of some format is computed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Prefill on block formats: dequantized tiles and an f32 GEMM.
    Gemm,
    /// Decode on block formats, exact: f32 activations, weights dequantized in registers.
    Exact,
    /// kiln-backend's kernels: the float formats and NF4 (f32 activations), or block formats with
    /// 8-bit activations (`int8` decode).
    Backend,
}

/// The [`Mode`] of a product of `n` rows with weights in `format` (`int8`: decode steps may
/// quantize activations to 8 bits).
pub(crate) fn mode(format: WeightFormat, n: usize, int8: bool) -> Mode {
    if !format.is_quantized() {
        Mode::Backend
    } else if n >= GEMM_MIN_ROWS {
        Mode::Gemm
    } else if int8 {
        Mode::Backend
    } else {
        Mode::Exact
    }
}

/// One thread's buffers for products over a range of a matrix's rows: the prepared activations
/// (8-bit blocks, NF4 order, or per-block sums) and tiles. Nothing is allocated once they have
/// grown, so a decode loop does not allocate.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowBufs {
    scratch: Scratch,
    xsum: Vec<f32>,
    tmp: Vec<f32>,
    tile: Vec<f32>,
    /// The instruction set of the exact kernels (tests force each one; `None`: the best).
    isa: Option<Isa>,
    /// Keeps exact products off kiln-backend's packed kernel (tests of the engine's own kernels).
    unpacked: bool,
}

impl RowBufs {
    /// Whether exact products of `n` rows with weights in `format` go through kiln-backend's packed
    /// kernel with f32 activations (AVX-512, two or more rows; not when a test forces another
    /// instruction set).
    fn packed(&self, format: WeightFormat, n: usize) -> bool {
        !self.unpacked
            && self.isa.unwrap_or_else(isa) == Isa::Avx512
            && kernels::packed_for(format, n)
    }

    /// Prepares `n` activation rows `x` for [`RowBufs::rows_into`] on weights in `format`.
    pub(crate) fn prepare(&mut self, format: WeightFormat, x: &[f32], n: usize, int8: bool) {
        match mode(format, n, int8) {
            Mode::Backend => self.scratch.prepare(format, x, n),
            Mode::Exact => {
                self.xsum.clear();
                self.xsum
                    .extend(x.chunks_exact(BLOCK).map(|b| b.iter().sum::<f32>()));
            }
            Mode::Gemm => {}
        }
    }

    /// `y[j * stride + col0 + (r - rows.start)] = x_j · W_r` for the weight rows `r` in `rows` and
    /// the `n` activation rows `x_j` (prepared by [`RowBufs::prepare`] with the same arguments),
    /// on the calling thread.
    ///
    /// # Safety
    /// No one else reads or writes those elements of `y` during the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn rows_into(
        &mut self,
        w: &QuantMatrix,
        x: &[f32],
        n: usize,
        rows: Range<usize>,
        y: Buf,
        stride: usize,
        col0: usize,
        int8: bool,
    ) {
        let len = rows.len();
        if len == 0 || n == 0 {
            return;
        }
        // SAFETY (every `dst`): the caller gives us these elements of `y` exclusively.
        let dst = |j: usize| unsafe { y.slice_mut(j * stride + col0..j * stride + col0 + len) };
        match mode(w.format(), n, int8) {
            Mode::Gemm => {
                let cols = w.cols();
                let mut r0 = rows.start;
                while r0 < rows.end {
                    let r = GEMM_TILE_ROWS.min(rows.end - r0);
                    self.tile.resize(r * cols, 0.0);
                    for (i, row) in self.tile.chunks_exact_mut(cols).enumerate() {
                        w.dequantize_row(r0 + i, row);
                    }
                    let at = col0 + (r0 - rows.start);
                    // The destination block: rows j < n at `y[j * stride + at ..][..r]`.
                    assert!(
                        (n - 1) * stride + at + r <= y.len(),
                        "GEMM output outside y"
                    );
                    // SAFETY: dst(j, i) is `y[j * stride + at + i]` for j < n, i < r (inside `y`,
                    // checked above, and ours).
                    unsafe {
                        gemm_tile(
                            n,
                            cols,
                            y.ptr().add(at),
                            stride,
                            x,
                            &self.tile[..r * cols],
                            gemm::Parallelism::None,
                        );
                    }
                    r0 += r;
                }
            }
            Mode::Exact if self.packed(w.format(), n) => {
                assert!(
                    (n - 1) * stride + col0 + len <= y.len(),
                    "matmul output outside y"
                );
                // SAFETY: element (j, i) is `y[j * stride + col0 + i]`, inside `y` (checked
                // above) and exclusively ours (the caller's guarantee).
                unsafe {
                    kernels::matmul_rows_f32_strided(
                        w,
                        x,
                        &self.xsum,
                        n,
                        rows,
                        y.ptr(),
                        stride,
                        col0,
                    );
                }
            }
            Mode::Exact => {
                let isa = self.isa.unwrap_or_else(isa);
                let mut r0 = rows.start;
                while r0 < rows.end {
                    let r = ROWS_PER_TASK.min(rows.end - r0);
                    let off = r0 - rows.start;
                    if n == 1 {
                        run_rows(isa, w, x, &self.xsum, 1, r0, &mut dst(0)[off..off + r]);
                    } else {
                        self.tmp.resize(n * r, 0.0);
                        run_rows(isa, w, x, &self.xsum, n, r0, &mut self.tmp[..n * r]);
                        for j in 0..n {
                            dst(j)[off..off + r].copy_from_slice(&self.tmp[j * r..(j + 1) * r]);
                        }
                    }
                    r0 += r;
                }
            }
            Mode::Backend => {
                assert!(
                    (n - 1) * stride + col0 + len <= y.len(),
                    "matmul output outside y"
                );
                // SAFETY: element (j, i) is `y[j * stride + col0 + i]`, inside `y` (checked
                // above) and exclusively ours (the caller's guarantee).
                unsafe {
                    matmul_rows_strided(w, x, n, &self.scratch, rows, y.ptr(), stride, col0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set this CPU can run, down to the portable code.
    fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
            if avx512() {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// `y = x Wᵀ` through [`RowBufs`] in three uneven row ranges (as a team's members compute
    /// it), on the instruction set `isa` for the exact kernels (`unpacked`: never kiln-backend's
    /// packed kernel).
    fn rows_split_with(
        isa: Isa,
        unpacked: bool,
        w: &QuantMatrix,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) {
        let rows = w.rows();
        let buf = Buf::new(y);
        for range in [0..rows / 3, rows / 3..rows / 2 + 1, rows / 2 + 1..rows] {
            let mut b = RowBufs {
                isa: Some(isa),
                unpacked,
                ..RowBufs::default()
            };
            b.prepare(w.format(), x, n, false);
            // SAFETY: `buf` is `y`, which nothing else touches meanwhile.
            let col0 = range.start;
            unsafe { b.rows_into(w, x, n, range, buf, rows, col0, false) };
        }
    }

    #[test]
    fn matches_dequantized_reference_for_every_block_format() {
        // 3, 7 and 18 blocks per row: the AVX-512 kernel's four-block steps and its tail.
        for cols in [96, 224, 576] {
            check_block_formats(77, cols);
        }
    }

    fn check_block_formats(rows: usize, cols: usize) {
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        for format in [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0] {
            let bytes = crate::gguf::quantize(
                crate::gguf::GgmlType::from_id(match format {
                    WeightFormat::Q4_0 => 2,
                    WeightFormat::Q4_1 => 3,
                    _ => 8,
                })
                .unwrap(),
                &w,
            )
            .unwrap();
            let m = QuantMatrix::new(format, rows, cols, bytes).unwrap();
            let deq = m.dequantize();
            for n in [1usize, 3, 8, 11, 17] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.7)
                    .collect();
                let mut y = vec![0f32; n * rows];
                for (isa, unpacked) in available()
                    .into_iter()
                    .flat_map(|isa| [(isa, false), (isa, true)])
                {
                    rows_split_with(isa, unpacked, &m, &x, n, &mut y);
                    for i in 0..n {
                        for r in 0..rows {
                            let want: f32 =
                                (0..cols).map(|c| deq[r * cols + c] * x[i * cols + c]).sum();
                            let got = y[i * rows + r];
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{format} {isa:?} (unpacked: {unpacked}) cols={cols} n={n} \
                                 [{i},{r}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod probe {
    use super::*;
    use std::time::Instant;

    /// GMAC/s of eight activation rows (`PROBE_N` to change) on one thread, per arithmetic and
    /// shape of SmolLM2's projections: 64 copies of each Q4_1 matrix (`PROBE_MATS`; 1 for
    /// cache-hot weights) and 4 of the Q8_0 vocabulary matrix, so that the weights stream from
    /// memory as in a decode step; with the rate of a plain sequential read of the same bytes.
    #[test]
    #[ignore = "timing probe: cargo test --release -p kiln-llama --lib x8_rate -- --ignored --nocapture"]
    fn x8_rate() {
        for (ty, rows, cols) in [
            (3u32, 1536usize, 576usize),
            (3, 576, 1536),
            (3, 576, 576),
            (8, 49152, 576),
        ] {
            let format = if ty == 3 {
                WeightFormat::Q4_1
            } else {
                WeightFormat::Q8_0
            };
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
                .collect();
            let bytes =
                crate::gguf::quantize(crate::gguf::GgmlType::from_id(ty).unwrap(), &w).unwrap();
            // Enough copies to exceed the L3 cache.
            let copies: usize = if ty == 8 {
                4
            } else {
                std::env::var("PROBE_MATS").map_or(64, |v| v.parse().unwrap())
            };
            let mats: Vec<QuantMatrix> = (0..copies)
                .map(|_| QuantMatrix::new(format, rows, cols, bytes.clone()).unwrap())
                .collect();
            let t = Instant::now();
            let mut sum = 0u64;
            for _ in 0..256 / copies {
                for m in &mats {
                    sum = m.bytes().chunks_exact(8).fold(sum, |a, c| {
                        a.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()))
                    });
                }
            }
            eprintln!(
                "read: {:.1} GB/s ({sum})",
                (256 / copies * mats.len() * bytes.len()) as f64 / t.elapsed().as_secs_f64() / 1e9
            );
            let n: usize = std::env::var("PROBE_N").map_or(8, |v| v.parse().unwrap());
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.7)
                .collect();
            let mut y = vec![0f32; n * rows];
            for int8 in [false, true] {
                let mut b = RowBufs::default();
                b.prepare(format, &x, n, int8);
                let buf = Buf::new(&mut y);
                let reps = 256 / copies;
                // One untimed pass: kiln-backend packs each matrix for several rows on first use.
                for m in &mats {
                    // SAFETY: `buf` is `y`, used by nothing else.
                    unsafe { b.rows_into(m, &x, n, 0..rows, buf, rows, 0, int8) };
                }
                let t = Instant::now();
                for _ in 0..reps {
                    for m in &mats {
                        // SAFETY: `buf` is `y`, used by nothing else.
                        unsafe { b.rows_into(m, &x, n, 0..rows, buf, rows, 0, int8) };
                    }
                }
                let macs = (reps * mats.len() * n * rows * cols) as f64;
                eprintln!(
                    "{format} {rows}x{cols} int8={int8}: {:.1} GMAC/s",
                    macs / t.elapsed().as_secs_f64() / 1e9
                );
            }
        }
    }
}

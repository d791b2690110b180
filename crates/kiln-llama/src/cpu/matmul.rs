//! Matrix products on quantized weights with f32 activations: each weight block is dequantized in
//! registers and multiplied with the activations in f32, so the result equals a dequantize-then-
//! multiply reference (what transformers computes on a GGUF) up to summation order, while the decode
//! step still reads only the quantized bytes.
//!
//! The 8-bit-activation kernels of `kiln_backend::kernels` are faster on compute-bound prefill but
//! round every activation to 8 bits, as llama.cpp does; on SmolLM2 that moves logits by about 1 and
//! changes greedy answers. Kiln chooses exactness by default.

use half::f16;
use kiln_backend::kernels::{QuantMatrix, Scratch, WeightFormat, matmul_into};
use rayon::prelude::*;

pub(crate) const BLOCK: usize = 32;
/// Output rows per rayon task.
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
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("f16c") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

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
        // SAFETY: AVX-512F and F16C were detected; `w` is a block format (checked by `matmul_exact`) and the
        // slices are sized by it.
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
const GEMM_MIN_ROWS: usize = 16;
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
        // SAFETY: dst is `y[i * rows + r0 + j]` for i < n, j < r (inside `y`, which is n·rows long);
        // lhs is `x[i * cols + k]` (n·cols long); rhs(k, j) is `tile[j * cols + k]` (r·cols long).
        unsafe {
            gemm::gemm(
                n,
                r,
                cols,
                y.as_mut_ptr().add(r0),
                1,
                rows as isize,
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
                gemm::Parallelism::Rayon(0),
            );
        }
    }
}

/// `y = x Wᵀ` for `n` activation rows: `x` is `[n, cols]`, `y` is `[n, rows]`, both row-major.
/// Block formats use f32 activations (exact); F32/F16/BF16 go to the kernels of kiln-backend, which
/// do not quantize activations for those formats.
///
/// `tmp` is reused between calls so that the decode loop does not allocate.
pub(crate) fn matmul_exact(
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    tmp: &mut Vec<f32>,
    scratch: &mut Scratch,
) {
    matmul_exact_with(isa(), w, x, n, y, tmp, scratch);
}

thread_local! {
    /// The activations' per-block sums of [`matmul_exact_with`], reused across calls.
    static XSUM: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`matmul_exact`], or for decode-sized products (`n < 16`) on block formats with
/// `int8` set, kiln-backend's 8-bit-activation kernels (llama.cpp's arithmetic).
pub(crate) fn matmul_mode(
    int8: bool,
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    tmp: &mut Vec<f32>,
    scratch: &mut Scratch,
) {
    if int8 && w.format().is_quantized() && n < GEMM_MIN_ROWS {
        matmul_into(w, x, n, y, scratch);
    } else {
        matmul_exact(w, x, n, y, tmp, scratch);
    }
}

/// [`matmul_exact`] on a chosen instruction set (tests force each one).
fn matmul_exact_with(
    isa: Isa,
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    tmp: &mut Vec<f32>,
    scratch: &mut Scratch,
) {
    if !w.format().is_quantized() {
        matmul_into(w, x, n, y, scratch);
        return;
    }
    let rows = w.rows();
    if n >= GEMM_MIN_ROWS {
        gemm_dequantized(w, x, n, y, tmp);
        return;
    }
    // Tasks write `[n, task_rows]` tiles into `tmp`, transposed into `y` afterwards (no-op for n = 1).
    let buf: &mut [f32] = if n == 1 {
        &mut y[..rows]
    } else {
        tmp.resize(n * rows, 0.0);
        &mut tmp[..]
    };
    // Per-block sums of the activations, for the blocks' offset terms, in a buffer this thread
    // reuses (a decode step makes about 150 of these calls; none allocates once it has grown).
    // Taken out of the thread-local for the call: while this thread waits in the parallel loop,
    // rayon may run another product on it, which then simply finds no buffer to reuse.
    let mut xsum = XSUM.take();
    xsum.clear();
    xsum.extend(x.chunks_exact(BLOCK).map(|b| b.iter().sum::<f32>()));
    buf.par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each(|(task, out)| {
            run_rows(isa, w, x, &xsum, n, task * ROWS_PER_TASK, out);
        });
    XSUM.set(xsum);
    if n > 1 {
        for (task, tile) in tmp.chunks(ROWS_PER_TASK * n).enumerate() {
            let task_rows = tile.len() / n;
            for i in 0..n {
                let dst = &mut y
                    [i * rows + task * ROWS_PER_TASK..i * rows + task * ROWS_PER_TASK + task_rows];
                dst.copy_from_slice(&tile[i * task_rows..(i + 1) * task_rows]);
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
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("f16c") {
                v.push(Isa::Avx512);
            }
        }
        v
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
            for n in [1usize, 3, 11, 17] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.7)
                    .collect();
                let mut y = vec![0f32; n * rows];
                for isa in available() {
                    matmul_exact_with(isa, &m, &x, n, &mut y, &mut Vec::new(), &mut Scratch::new());
                    for i in 0..n {
                        for r in 0..rows {
                            let want: f32 =
                                (0..cols).map(|c| deq[r * cols + c] * x[i * cols + c]).sum();
                            let got = y[i * rows + r];
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{format} {isa:?} cols={cols} n={n} [{i},{r}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

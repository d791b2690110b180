//! Dispatch of the packed kernels (`x86_packed.rs`): which products take them, the public entry
//! for f32 activations, and the walk over a row range's groups of sixteen weight rows.

use std::ops::Range;

use super::{BLOCK, QuantMatrix, SharedOut, SimdPath, WeightFormat};
#[cfg(target_arch = "x86_64")]
use super::{Scratch, x86_packed};

/// Whether products of `n` activation rows with weights in `format` on `path` go through the
/// packed kernels when the matrix has no packed copy yet (they make it).
pub(super) fn packed_path(path: SimdPath, format: WeightFormat, n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if path == SimdPath::Avx512 && n >= x86_packed::MIN_ACTS && x86_packed::covers(format) {
        return true;
    }
    let _ = (path, format, n);
    false
}

/// Whether products of `n ≥ 1` rows of 8-bit activations with `w` on `path` go through the packed
/// kernels: as [`packed_path`], and single rows too once [`QuantMatrix::pack`] was called on `w`.
pub(super) fn packed_int8(path: SimdPath, w: &QuantMatrix, n: usize) -> bool {
    packed_path(path, w.format(), n.max(2)) && (n >= 2 || w.single_packed())
}

/// Whether products of `n` activation rows with weights in `format` run on this CPU through the
/// packed kernels (AVX-512 with VNNI, Q4_0/Q4_1/Q8_0, `n ≥ 2`): the case in which
/// [`matmul_rows_strided`](super::matmul_rows_strided) (8-bit activations) and
/// [`matmul_rows_f32_strided`] (f32 activations) read the repacked copy of the weights (see
/// [`QuantMatrix::packed_bytes`]). Single rows of 8-bit activations read it too once
/// [`QuantMatrix::pack`] was called on the matrix.
#[must_use]
pub fn packed_for(format: WeightFormat, n: usize) -> bool {
    packed_path(SimdPath::detect(), format, n)
}

/// [`matmul_rows_strided`](super::matmul_rows_strided) with f32 activations (no 8-bit rounding;
/// for callers that want the dequantize-then-multiply result up to summation order) through the
/// packed kernel: the product of weight row `rows.start + i` with activation row `j` goes to
/// `out[j * stride + col0 + i]`. `xsum` holds the sum of every 32-element block of every row of
/// `x` (`n × cols / 32`, row-major), for Q4_1's minimums (other formats ignore it). Per block the
/// quants (looked up or widened to f32) are multiplied with the activations in fused
/// multiply-adds and the block's sum is scaled once.
///
/// # Panics
/// When [`packed_for`] is false for `w.format()` and `n`, the lengths do not match the matrix and
/// `n`, or `rows` is outside the matrix.
///
/// # Safety
/// As [`matmul_rows_strided`](super::matmul_rows_strided).
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_rows_f32_strided(
    w: &QuantMatrix,
    x: &[f32],
    xsum: &[f32],
    n: usize,
    rows: Range<usize>,
    out: *mut f32,
    stride: usize,
    col0: usize,
) {
    assert!(
        packed_for(w.format, n),
        "matmul_rows_f32: {} with {n} rows is not on the packed path",
        w.format
    );
    assert_eq!(x.len(), n * w.cols, "matmul_rows_f32: x.len() != n * cols");
    assert_eq!(
        xsum.len(),
        n * (w.cols / BLOCK),
        "matmul_rows_f32: xsum.len() != n * blocks"
    );
    assert!(
        rows.start <= rows.end && rows.end <= w.rows,
        "matmul_rows_f32: rows {rows:?} outside 0..{}",
        w.rows
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `packed_for` checked the CPU features; the caller's guarantees on `out`.
    unsafe {
        packed_rows(
            w,
            n,
            PackedInput::F32 { x, xsum },
            rows,
            SharedOut(out),
            stride,
            col0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (out, stride, col0);
}

/// The activations of a packed product.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) enum PackedInput<'a> {
    /// Quantized to 8 bits ([`Scratch::prepare`](super::Scratch::prepare)).
    Int8(&'a Scratch),
    /// f32, with every block's sum.
    F32 { x: &'a [f32], xsum: &'a [f32] },
}

/// `chunk` (in `mod.rs`) through the packed kernels: each group of sixteen weight rows that meets `rows` is
/// computed for every activation row (eight at a time) while it stays in L1, and the products of
/// the rows inside `rows` are stored.
///
/// # Safety
/// As `chunk`, on the packed path (see [`packed_path`]).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn packed_rows(
    w: &QuantMatrix,
    n: usize,
    input: PackedInput<'_>,
    rows: Range<usize>,
    out: SharedOut,
    stride: usize,
    col0: usize,
) {
    use x86_packed::{GROUP_ROWS, MAX_ACTS};
    let packed = w.packed();
    let blocks = w.cols / BLOCK;
    let mut sums = [[0f32; GROUP_ROWS]; MAX_ACTS];
    for g in rows.start / GROUP_ROWS..rows.end.div_ceil(GROUP_ROWS) {
        let (lo, hi) = (
            (g * GROUP_ROWS).max(rows.start),
            ((g + 1) * GROUP_ROWS).min(rows.end),
        );
        let mut j = 0;
        while j < n {
            let take = (n - j).min(MAX_ACTS);
            let s = &mut sums[..take];
            macro_rules! by_rows {
                ($kernel:ident, $($args:expr),*) => {
                    match take {
                        1 => x86_packed::$kernel::<1>(w.format, packed, g, $($args),*, s),
                        2 => x86_packed::$kernel::<2>(w.format, packed, g, $($args),*, s),
                        3 => x86_packed::$kernel::<3>(w.format, packed, g, $($args),*, s),
                        4 => x86_packed::$kernel::<4>(w.format, packed, g, $($args),*, s),
                        5 => x86_packed::$kernel::<5>(w.format, packed, g, $($args),*, s),
                        6 => x86_packed::$kernel::<6>(w.format, packed, g, $($args),*, s),
                        7 => x86_packed::$kernel::<7>(w.format, packed, g, $($args),*, s),
                        _ => x86_packed::$kernel::<8>(w.format, packed, g, $($args),*, s),
                    }
                };
            }
            // SAFETY: the caller's CPU features.
            unsafe {
                match input {
                    PackedInput::Int8(scratch) => by_rows!(group, scratch.acts(j, take, blocks)),
                    PackedInput::F32 { x, xsum } => by_rows!(
                        group_f32,
                        &x[j * w.cols..(j + take) * w.cols],
                        &xsum[j * blocks..(j + take) * blocks]
                    ),
                }
            }
            for (t, row) in sums[..take].iter().enumerate() {
                let src = &row[lo - g * GROUP_ROWS..hi - g * GROUP_ROWS];
                // SAFETY: the caller guarantees that row `j + t`'s columns
                // `col0 .. col0 + rows.len()` at `out + (j + t) · stride` are ours; these are
                // columns `col0 + lo - rows.start ..` of them.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        out.get().add((j + t) * stride + col0 + lo - rows.start),
                        src.len(),
                    );
                }
            }
            j += take;
        }
    }
}

//! Quantized CPU matrix-vector and matrix-matrix kernels (pure Rust, no burn types).
//!
//! A [`QuantMatrix`] holds a row-major weight matrix in one of the GGUF/ggml byte layouts of
//! [`WeightFormat`] — exactly the bytes a GGUF file stores, so a loader can hand over a memory-mapped
//! tensor untouched ([`QuantMatrix::from_shared`]). [`matvec`] computes `y = W x` and [`matmul`]
//! computes `Y = X Wᵀ` for `n` activation rows at once (prefill, batched decode), reading each weight
//! row once per call however large `n` is.
//!
//! # How they compute
//! - **Q4_0, Q4_1, Q8_0**: the activations are quantized to 8 bits per 32-element block, as llama.cpp
//!   does (scale `d = max|x| / 127`, plus the block's integer sum so that Q4_1's minimum and the
//!   offsets of Q4_0/Q8_0 cost one multiply per block), then each weight block is dotted with an
//!   activation block in integer arithmetic: AVX-512 VNNI `vpdpbusd` over two blocks per instruction,
//!   AVX2 `vpmaddubsw`, or a portable scalar loop (the SIMD loops take four blocks per step and
//!   convert and multiply their f16 scales four at a time). [`matmul`] and [`matmul_rows`] with two
//!   or more activation rows on AVX-512 read a second copy of the weights, repacked once per matrix
//!   (on first use; see [`QuantMatrix::packed_bytes`]) into groups of sixteen rows whose blocks'
//!   four-byte chunks lie side by side: one vector of weights against an activation row's chunk
//!   broadcast from memory gives sixteen rows' partial dot products, and each block's sixteen scales
//!   are applied per activation row with one multiply and one fused multiply-add. Those products
//!   differ from [`matvec`]'s only by summation order. The result differs from `W·x` in f32 by
//!   the activation rounding: `|error| ≤ √32/254 · ‖x‖ · ‖w_row‖` (each element moves by at most half a
//!   step `d/2 = max|x_block|/254`; Cauchy–Schwarz), typically a small fraction of that.
//! - **F16, BF16, F32**: the weights are widened to f32 (F16C / AVX-512 conversions) and multiplied
//!   with fused multiply-adds in f32.
//! - **NF4** (bitsandbytes' 4-bit NormalFloat, see [`crate::nf4`] and [`QuantMatrix::from_nf4`]):
//!   per 64-weight block the 16-entry code table is scaled by the block's f32 absmax and the weights
//!   are looked up in it (`vpermps` from one zmm register on AVX-512; two `vpermps` and a blend on
//!   AVX2), then multiplied with the **f32** activations (no activation quantization): each product
//!   is exactly `w·x` with `w` bitsandbytes' dequantized weight, so the result differs from the f32
//!   reference only by summation order. [`matmul`] on AVX-512 looks each block up once for four
//!   activation rows.
//!
//! The SIMD path is detected once per process ([`SimdPath::detect`]); the `*_with` functions force a
//! path (tests use that to check every path against the reference). Work is split across output rows in
//! chunks of 16–64 rows on the current rayon pool; small products run on the calling thread.
//!
//! The functions that take a [`Scratch`] allocate nothing once the scratch has grown to the largest
//! activation size, which makes them fit for a decode loop.
//!
//! ```
//! use kiln_backend::kernels::{matvec, QuantMatrix, WeightFormat};
//! // One Q8_0 row of 32 weights: scale 0.5 (f16 0x3800), quants 0..32.
//! let mut bytes = vec![0x00, 0x38];
//! bytes.extend((0..32).map(|i| i as u8));
//! let w = QuantMatrix::new(WeightFormat::Q8_0, 1, 32, bytes).unwrap();
//! let x = vec![1.0f32; 32];
//! let mut y = [0.0f32];
//! matvec(&w, &x, &mut y);
//! assert!((y[0] - 0.5 * (0..32).sum::<i32>() as f32).abs() < 1e-3);
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::{Error, Result};

mod nf4;
mod packed;
mod scalar;
mod scratch;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_packed;
#[cfg(target_arch = "x86_64")]
mod x86_quant;

use packed::packed_int8;
#[cfg(target_arch = "x86_64")]
use packed::{PackedInput, packed_rows};
pub use packed::{matmul_rows_f32_strided, packed_for};
use scratch::Q8View;
pub use scratch::Scratch;

/// Elements per block of the block formats (Q4_0, Q4_1, Q8_0), and per activation block.
pub const BLOCK: usize = 32;

/// The byte layout of a weight matrix, as GGUF/ggml stores it (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// 4-byte IEEE floats.
    F32,
    /// 2-byte IEEE half floats.
    F16,
    /// 2-byte bfloat16.
    BF16,
    /// 18-byte blocks of 32: `d: f16`, 16 bytes of nibbles (low nibbles are elements 0..16, high
    /// nibbles 16..32); value = `(q - 8) · d`.
    Q4_0,
    /// 20-byte blocks of 32: `d: f16`, `m: f16`, 16 bytes of nibbles; value = `q · d + m`.
    Q4_1,
    /// 34-byte blocks of 32: `d: f16`, 32 `i8`; value = `q · d`.
    Q8_0,
    /// Kiln's NF4 layout (not a GGUF type): 36-byte blocks of 64, `absmax: f32`, then 32 bytes of
    /// codes, element `2j` in the high nibble of byte `j` (bitsandbytes' order); value =
    /// `NF4_CODE[q] · absmax`. Built by [`QuantMatrix::from_nf4`].
    Nf4,
}

impl WeightFormat {
    /// Every format.
    pub const ALL: [WeightFormat; 7] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::BF16,
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
        WeightFormat::Q8_0,
        WeightFormat::Nf4,
    ];

    /// Elements per block: 32 for the GGUF block formats, 64 for NF4, 1 for the float formats.
    #[must_use]
    pub fn block_elems(self) -> usize {
        match self {
            WeightFormat::F32 | WeightFormat::F16 | WeightFormat::BF16 => 1,
            WeightFormat::Q4_0 | WeightFormat::Q4_1 | WeightFormat::Q8_0 => BLOCK,
            WeightFormat::Nf4 => nf4::NF4_BLOCK,
        }
    }

    /// Bytes per block.
    #[must_use]
    pub fn block_bytes(self) -> usize {
        match self {
            WeightFormat::F32 => 4,
            WeightFormat::F16 | WeightFormat::BF16 => 2,
            WeightFormat::Q4_0 => 18,
            WeightFormat::Q4_1 => 20,
            WeightFormat::Q8_0 => 34,
            WeightFormat::Nf4 => nf4::NF4_BLOCK_BYTES,
        }
    }

    /// Whether the kernels quantize activations to 8 bits for this format (Q4_0, Q4_1, Q8_0; NF4
    /// and the float formats take f32 activations).
    #[must_use]
    pub fn is_quantized(self) -> bool {
        matches!(
            self,
            WeightFormat::Q4_0 | WeightFormat::Q4_1 | WeightFormat::Q8_0
        )
    }

    /// Bytes of one row of `cols` elements, or `None` when `cols` is not a whole number of blocks or
    /// the size overflows.
    #[must_use]
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        if !cols.is_multiple_of(self.block_elems()) {
            return None;
        }
        (cols / self.block_elems()).checked_mul(self.block_bytes())
    }

    /// The format of a ggml type id (`GGML_TYPE_*` in ggml.h, as GGUF tensor infos store it), if the
    /// kernels support it.
    #[must_use]
    pub fn from_ggml_type(id: u32) -> Option<Self> {
        Some(match id {
            0 => WeightFormat::F32,
            1 => WeightFormat::F16,
            2 => WeightFormat::Q4_0,
            3 => WeightFormat::Q4_1,
            8 => WeightFormat::Q8_0,
            30 => WeightFormat::BF16,
            _ => return None,
        })
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightFormat::F32 => "F32",
            WeightFormat::F16 => "F16",
            WeightFormat::BF16 => "BF16",
            WeightFormat::Q4_0 => "Q4_0",
            WeightFormat::Q4_1 => "Q4_1",
            WeightFormat::Q8_0 => "Q8_0",
            WeightFormat::Nf4 => "NF4",
        })
    }
}

/// Where a matrix's bytes live.
#[derive(Clone)]
enum Storage {
    Owned(Arc<[u8]>),
    Shared {
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        end: usize,
    },
}

/// A row-major weight matrix in a [`WeightFormat`]; each row is `cols / block_elems` blocks.
///
/// Cloning is cheap (the bytes are shared).
#[derive(Clone)]
pub struct QuantMatrix {
    format: WeightFormat,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Storage,
    /// The copy repacked for the AVX-512 several-row kernel, made on first use (shared by clones).
    #[cfg(target_arch = "x86_64")]
    packed: Arc<OnceLock<x86_packed::Packed>>,
    /// Set by [`QuantMatrix::pack`]: single-row products read the packed copy too (a copy made by
    /// a batch alone leaves them on the GGUF layout, so that their results do not depend on
    /// whether a batch ran before).
    #[cfg(target_arch = "x86_64")]
    single_packed: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes().len())
            .finish()
    }
}

fn check_shape(format: WeightFormat, rows: usize, cols: usize, actual: usize) -> Result<usize> {
    if cols == 0 || !cols.is_multiple_of(format.block_elems()) {
        return Err(Error::BlockMisaligned { format, cols });
    }
    let row_bytes = format
        .row_bytes(cols)
        .ok_or(Error::ShapeOverflow { rows, cols })?;
    let expected = row_bytes
        .checked_mul(rows)
        .ok_or(Error::ShapeOverflow { rows, cols })?;
    if expected != actual {
        return Err(Error::DataSize {
            format,
            rows,
            cols,
            expected,
            actual,
        });
    }
    Ok(row_bytes)
}

impl QuantMatrix {
    /// A matrix that owns its bytes.
    ///
    /// # Errors
    /// [`Error::BlockMisaligned`] when `cols` is zero or not a multiple of the format's block,
    /// [`Error::DataSize`] when `bytes` is not exactly `rows` rows, [`Error::ShapeOverflow`].
    pub fn new(
        format: WeightFormat,
        rows: usize,
        cols: usize,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<Self> {
        let data: Arc<[u8]> = bytes.into();
        let row_bytes = check_shape(format, rows, cols, data.len())?;
        Ok(Self {
            format,
            rows,
            cols,
            row_bytes,
            data: Storage::Owned(data),
            #[cfg(target_arch = "x86_64")]
            packed: Arc::default(),
            #[cfg(target_arch = "x86_64")]
            single_packed: Arc::default(),
        })
    }

    /// A matrix over `range` of bytes owned by someone else (a memory map, a whole file), kept alive
    /// by the `Arc`. The bytes may have any alignment.
    ///
    /// # Errors
    /// [`Error::DataRange`] when `range` is not inside the owner's bytes, and those of [`Self::new`].
    pub fn from_shared(
        format: WeightFormat,
        rows: usize,
        cols: usize,
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        range: Range<usize>,
    ) -> Result<Self> {
        let len = (*owner).as_ref().len();
        if range.start > range.end || range.end > len {
            return Err(Error::DataRange {
                start: range.start,
                end: range.end,
                len,
            });
        }
        let row_bytes = check_shape(format, rows, cols, range.end - range.start)?;
        Ok(Self {
            format,
            rows,
            cols,
            row_bytes,
            data: Storage::Shared {
                owner,
                start: range.start,
                end: range.end,
            },
            #[cfg(target_arch = "x86_64")]
            packed: Arc::default(),
            #[cfg(target_arch = "x86_64")]
            single_packed: Arc::default(),
        })
    }

    /// The format.
    #[must_use]
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Output rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns.
    #[must_use]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row.
    #[must_use]
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// All the bytes, row after row.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Storage::Owned(b) => b,
            Storage::Shared { owner, start, end } => &(**owner).as_ref()[*start..*end],
        }
    }

    /// Heap bytes of the second, repacked copy of the weights that products with two or more
    /// activation rows on AVX-512 read (Q4_0, Q4_1, Q8_0): the matrix's size again (up to padding
    /// to groups of sixteen rows), made by the first such product and kept, shared by clones, for
    /// the matrix's lifetime. Zero before that, and for other formats and CPUs.
    #[must_use]
    pub fn packed_bytes(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.packed.get() {
            return p.len_bytes();
        }
        0
    }

    /// Makes the repacked copy now (see [`Self::packed_bytes`]), on CPUs and formats where the
    /// packed kernels run (a no-op elsewhere): from then on products with 8-bit activations read
    /// it for a single activation row too ([`matvec`], [`matmul_rows`] with `n = 1`), which streams
    /// faster than the GGUF layout (one sequential stream of sixteen rows per task), at the cost
    /// of holding both copies.
    pub fn pack(&self) {
        #[cfg(target_arch = "x86_64")]
        if packed::packed_path(SimdPath::detect(), self.format, 2) {
            let _ = self.packed();
            self.single_packed
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Whether [`Self::pack`] was called (and made the copy): single rows read it.
    fn single_packed(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self
            .single_packed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return true;
        }
        false
    }

    /// The repacked copy (see [`Self::packed_bytes`]), made now if it was not yet.
    #[cfg(target_arch = "x86_64")]
    fn packed(&self) -> &x86_packed::Packed {
        self.packed
            .get_or_init(|| x86_packed::pack(self.format, self.bytes(), self.rows, self.row_bytes))
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// When `r >= rows`.
    #[must_use]
    pub fn row(&self, r: usize) -> &[u8] {
        assert!(r < self.rows, "row {r} out of {} rows", self.rows);
        &self.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Writes row `r` as f32 into `out` (`out.len() == cols`).
    ///
    /// # Panics
    /// When `r >= rows` or `out.len() != cols`.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols, "dequantize_row: out.len() != cols");
        scalar::dequantize(self.format, self.row(r), out);
    }

    /// The whole matrix as f32, row-major (for tests and references; the kernels never do this).
    #[must_use]
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row(r, o);
        }
        out
    }
}

/// The instruction set a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdPath {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/VNNI (+ AVX2, FMA, F16C): Ice Lake, Zen 4 and later.
    Avx512,
}

impl SimdPath {
    /// The best path this CPU supports (detected once, then cached).
    #[must_use]
    pub fn detect() -> SimdPath {
        static BEST: OnceLock<SimdPath> = OnceLock::new();
        *BEST.get_or_init(|| {
            [SimdPath::Avx512, SimdPath::Avx2]
                .into_iter()
                .find(|p| p.is_supported())
                .unwrap_or(SimdPath::Scalar)
        })
    }

    /// Whether this CPU can run this path.
    #[must_use]
    pub fn is_supported(self) -> bool {
        match self {
            SimdPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => {
                SimdPath::Avx2.is_supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every path this CPU supports, the portable one first.
    #[must_use]
    pub fn supported() -> Vec<SimdPath> {
        [SimdPath::Scalar, SimdPath::Avx2, SimdPath::Avx512]
            .into_iter()
            .filter(|p| p.is_supported())
            .collect()
    }
}

/// The activation a row kernel multiplies with.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    F32(&'a [f32]),
    Q8(Q8View<'a>),
}

/// Computes `out[i] = row_i · input` for consecutive rows `rows` (each `row_bytes` long).
///
/// Dispatches on `path`; callers guarantee `path.is_supported()`.
fn rows_kernel(
    path: SimdPath,
    format: WeightFormat,
    rows: &[u8],
    row_bytes: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    debug_assert_eq!(rows.len(), row_bytes * out.len());
    if format == WeightFormat::Nf4 {
        let Input::F32(x) = input else {
            unreachable!("NF4 takes f32 activations")
        };
        nf4::rows(path, rows, row_bytes, x, out);
        return;
    }
    match path {
        SimdPath::Scalar => scalar::rows(format, rows, row_bytes, input, out),
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2 => {
            // SAFETY: the public entry points assert `path.is_supported()`, i.e. AVX2, FMA and F16C.
            unsafe { x86::rows_avx2(format, rows, row_bytes, input, out) }
        }
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => {
            // SAFETY: as above, with AVX-512 F/BW/VL/VNNI detected too.
            unsafe { x86::rows_avx512(format, rows, row_bytes, input, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("SIMD path {path:?} is not supported on this architecture"),
    }
}

/// Below this many weight elements per call, the product runs on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

fn matvec_rows_per_task(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (rows / (threads * 8)).clamp(16, 64)
}

/// `y = W x`: `x.len() == cols`, `y.len() == rows`. Allocates the activation buffer for the
/// quantized formats; use [`matvec_into`] in loops.
///
/// # Panics
/// When the lengths do not match the matrix.
pub fn matvec(w: &QuantMatrix, x: &[f32], y: &mut [f32]) {
    matvec_with(SimdPath::detect(), w, x, y, &mut Scratch::new());
}

/// [`matvec`] with a caller-provided activation buffer: allocates nothing once `scratch` has grown.
///
/// # Panics
/// When the lengths do not match the matrix.
pub fn matvec_into(w: &QuantMatrix, x: &[f32], y: &mut [f32], scratch: &mut Scratch) {
    matvec_with(SimdPath::detect(), w, x, y, scratch);
}

/// [`matvec_into`] on a chosen SIMD path.
///
/// # Panics
/// When the lengths do not match the matrix, or this CPU does not support `path`.
pub fn matvec_with(
    path: SimdPath,
    w: &QuantMatrix,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut Scratch,
) {
    assert!(path.is_supported(), "SIMD path {path:?} is not supported");
    assert_eq!(x.len(), w.cols, "matvec: x.len() != cols");
    assert_eq!(y.len(), w.rows, "matvec: y.len() != rows");
    if packed_int8(path, w, 1) {
        matmul_with(path, w, x, 1, y, scratch);
        return;
    }
    let input = if w.format.is_quantized() {
        scratch.quantize(x);
        Input::Q8(scratch.view(0, w.cols / BLOCK))
    } else if w.format == WeightFormat::Nf4 {
        nf4::deinterleave(x, &mut scratch.xf);
        Input::F32(&scratch.xf)
    } else {
        Input::F32(x)
    };
    let bytes = w.bytes();
    let rb = w.row_bytes;
    if w.rows * w.cols < PARALLEL_MIN_ELEMS || rayon::current_num_threads() <= 1 {
        rows_kernel(path, w.format, bytes, rb, input, y);
        return;
    }
    let chunk = matvec_rows_per_task(w.rows);
    y.par_chunks_mut(chunk)
        .zip(bytes.par_chunks(chunk * rb))
        .for_each(|(yc, wc)| rows_kernel(path, w.format, wc, rb, input, yc));
}

/// `Y = X Wᵀ` for `n` activation rows: `x` is `n × cols` row-major, `y` is `n × rows` row-major
/// (row `j` of `y` is `W x_j`). Each weight row is read from memory once and reused, from cache, for
/// all `n` activation rows. Allocates the activation buffer; use [`matmul_into`] in loops.
///
/// # Panics
/// When the lengths do not match the matrix and `n`.
pub fn matmul(w: &QuantMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_with(SimdPath::detect(), w, x, n, y, &mut Scratch::new());
}

/// [`matmul`] with a caller-provided activation buffer.
///
/// # Panics
/// When the lengths do not match the matrix and `n`.
pub fn matmul_into(w: &QuantMatrix, x: &[f32], n: usize, y: &mut [f32], scratch: &mut Scratch) {
    matmul_with(SimdPath::detect(), w, x, n, y, scratch);
}

/// A raw pointer to `y` that row-chunk tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint ranges (distinct output rows of W) through it, see `matmul_with`.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows of W per task in [`matmul_with`]: small enough that a chunk of weights stays in L1/L2 while
/// every activation row passes over it.
const MATMUL_ROWS_PER_TASK: usize = 16;

/// [`matmul_into`] on a chosen SIMD path.
///
/// # Panics
/// When the lengths do not match the matrix and `n`, or this CPU does not support `path`.
pub fn matmul_with(
    path: SimdPath,
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) {
    assert!(path.is_supported(), "SIMD path {path:?} is not supported");
    assert_eq!(x.len(), n * w.cols, "matmul: x.len() != n * cols");
    assert_eq!(y.len(), n * w.rows, "matmul: y.len() != n * rows");
    if n == 0 || w.rows == 0 {
        return;
    }
    scratch.prepare(w.format, x, n);
    let scratch = &*scratch;
    let rows = w.rows;
    let out = SharedOut(y.as_mut_ptr());
    let task = |chunk_index: usize| {
        let r0 = chunk_index * MATMUL_ROWS_PER_TASK;
        let r1 = (r0 + MATMUL_ROWS_PER_TASK).min(rows);
        // SAFETY: `y` is `n × rows` (asserted above); this task writes columns `r0..r1` of its rows,
        // and distinct tasks have distinct `r0..r1`.
        unsafe { chunk(path, w, x, n, scratch, r0..r1, out, rows, r0) };
    };
    let chunks = rows.div_ceil(MATMUL_ROWS_PER_TASK);
    if n * rows * w.cols < PARALLEL_MIN_ELEMS || rayon::current_num_threads() <= 1 {
        (0..chunks).for_each(task);
    } else {
        (0..chunks).into_par_iter().for_each(task);
    }
}

/// `out = X W[rows]ᵀ` for the weight rows `rows` only, on the calling thread: `out` is
/// `n × rows.len()`, row-major (`out[j * rows.len() + i]` is row `rows.start + i` of `W` times
/// activation row `j`). `scratch` must hold the activations `x` prepared by [`Scratch::prepare`]
/// for `w.format()`; several calls (on disjoint ranges, from several threads) can share it. This is
/// the building block for callers that split the rows across their own threads; the results are
/// bit-identical to [`matmul_into`]'s.
///
/// # Panics
/// When the lengths do not match the matrix and `n`, `rows` is outside the matrix, or `scratch`
/// was not prepared for `n` rows of this width.
pub fn matmul_rows(
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    scratch: &Scratch,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let len = rows.len();
    assert_eq!(
        out.len(),
        n * len,
        "matmul_rows: out.len() != n * rows.len()"
    );
    // SAFETY: `out` is `n × len` (asserted): element (j, i) at `j·len + i` is inside it, and
    // nothing else holds it.
    unsafe { matmul_rows_strided(w, x, n, scratch, rows, out.as_mut_ptr(), len, 0) };
}

/// [`matmul_rows`] into a strided destination: the product of weight row `rows.start + i` with
/// activation row `j` goes to `out[j * stride + col0 + i]`. For callers whose threads fill
/// disjoint column ranges of one `n × stride` output (no copy through a temporary).
///
/// # Panics
/// As [`matmul_rows`] (without the check of `out`'s length).
///
/// # Safety
/// `out + j * stride + col0 + i` must be valid for writes for every `j < n`, `i < rows.len()`, and
/// not read or written by anyone else during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_rows_strided(
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    scratch: &Scratch,
    rows: Range<usize>,
    out: *mut f32,
    stride: usize,
    col0: usize,
) {
    let path = SimdPath::detect();
    assert_eq!(x.len(), n * w.cols, "matmul_rows: x.len() != n * cols");
    assert!(
        rows.start <= rows.end && rows.end <= w.rows,
        "matmul_rows: rows {rows:?} outside 0..{}",
        w.rows
    );
    if w.format.is_quantized() {
        assert_eq!(
            scratch.qs.len(),
            n * w.cols,
            "matmul_rows: scratch not prepared for x"
        );
    } else if w.format == WeightFormat::Nf4 {
        assert_eq!(
            scratch.xf.len(),
            n * w.cols,
            "matmul_rows: scratch not prepared for x"
        );
    }
    let ptr = SharedOut(out);
    // Two or more activation rows on AVX-512 go through the packed kernel in one call (it walks the
    // rows' groups itself); other cases in chunks of rows that stay in cache while every
    // activation row passes over them.
    let step = if packed_int8(path, w, n) {
        rows.len().max(1)
    } else {
        MATMUL_ROWS_PER_TASK
    };
    let mut r0 = rows.start;
    while r0 < rows.end {
        let r1 = (r0 + step).min(rows.end);
        // SAFETY: the caller guarantees columns `col0 + (r0 - start) ..` of each output row are
        // ours and valid.
        unsafe {
            chunk(
                path,
                w,
                x,
                n,
                scratch,
                r0..r1,
                ptr,
                stride,
                col0 + r0 - rows.start,
            )
        };
        r0 = r1;
    }
}

/// Products of the weight rows `rows` with the `n` prepared activation rows: element
/// `(j, r)` goes to `out[j * stride + col0 + (r - rows.start)]`.
///
/// # Safety
/// `path` is supported; `x`, `scratch` and `rows` fit `w` and `n` (checked by the callers); every
/// written element is inside the caller's output and not accessed by anyone else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn chunk(
    path: SimdPath,
    w: &QuantMatrix,
    x: &[f32],
    n: usize,
    scratch: &Scratch,
    rows: Range<usize>,
    out: SharedOut,
    stride: usize,
    col0: usize,
) {
    let quantized = w.format.is_quantized();
    let blocks = w.cols / BLOCK;
    let x: &[f32] = if w.format == WeightFormat::Nf4 {
        &scratch.xf
    } else {
        x
    };
    let input = |j: usize| {
        if quantized {
            Input::Q8(scratch.view(j, blocks))
        } else {
            Input::F32(&x[j * w.cols..(j + 1) * w.cols])
        }
    };
    let (r0, r1) = (rows.start, rows.end);
    let rb = w.row_bytes;
    let wc = &w.bytes()[r0 * rb..r1 * rb];
    // SAFETY (every slice below): the caller guarantees that row `j`'s columns
    // `col0 .. col0 + (r1 - r0)` at `out + j * stride` are exclusively ours.
    let dst = |j: usize| unsafe {
        std::slice::from_raw_parts_mut(out.get().add(j * stride + col0), r1 - r0)
    };
    #[cfg(target_arch = "x86_64")]
    if packed_int8(path, w, n) {
        // SAFETY: the caller's guarantees (AVX-512 F/BW/VL/VNNI, F16C and FMA come with the path).
        unsafe { packed_rows(w, n, PackedInput::Int8(scratch), rows, out, stride, col0) };
        return;
    }
    #[allow(unused_mut)]
    let mut first = 0;
    #[cfg(target_arch = "x86_64")]
    if path == SimdPath::Avx512 && w.format == WeightFormat::Nf4 {
        while first + nf4::TILE <= n {
            let j = first;
            let xs: [&[f32]; nf4::TILE] =
                std::array::from_fn(|t| &x[(j + t) * w.cols..(j + t + 1) * w.cols]);
            let mut outs: [&mut [f32]; nf4::TILE] = std::array::from_fn(|t| dst(j + t));
            // SAFETY: the caller guarantees AVX-512 F/BW/VL/VNNI.
            unsafe { nf4::rows_tile_avx512(wc, rb, &xs, &mut outs) };
            first += nf4::TILE;
        }
    }
    for j in first..n {
        rows_kernel(path, w.format, wc, rb, input(j), dst(j));
    }
}

#[cfg(test)]
mod tests;

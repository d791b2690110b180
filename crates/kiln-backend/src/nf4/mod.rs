//! NF4 ("4-bit NormalFloat", QLoRA) quantization, bit-identical to bitsandbytes 0.50.2 on the CPU.
//!
//! An [`Nf4Tensor`] is what `bitsandbytes.functional.quantize_4bit(x, quant_type="nf4",
//! blocksize, compress_statistics)` returns, and what transformers saves for a 4-bit `Linear`
//! ([`Nf4Tensor::from_state_dict`], [`Nf4Tensor::to_state_dict`]).
//!
//! # The format (as bitsandbytes computes it)
//! - The tensor is flattened row-major and cut into blocks of `blocksize` elements (32, 64, …, 4096;
//!   the last block may be partial). Blocks ignore row boundaries.
//! - Per block, `absmax = max |x|` (NaN propagates). Each element is scaled: full blocks by
//!   `x · (1 / max(absmax, 1e-38))` (an f32 reciprocal, then an f32 product), the trailing partial
//!   block by the true quotient `x / max(absmax, 1e-38)` — and, unlike full blocks, the partial block
//!   *stores* the clamped absmax, so an all-zero tail stores `1e-38`, an all-zero full block `0`.
//!   The scaled value is clamped to `[-1, 1]`.
//! - The code is the index of the nearest of the 16 [`NF4_CODE`] values, found as bitsandbytes does:
//!   `torch.bucketize` against the f32 midpoints `(c[i] + c[i+1]) / 2`, so a value exactly on a
//!   midpoint takes the *lower* code, and NaN takes code 15.
//! - Two codes per byte, the first element in the **high** nibble; an odd element count is padded
//!   with the code of `0.0` (index 7) in the low nibble of the last byte (bitsandbytes pads the
//!   scaled values with a zero before bucketizing).
//! - Dequantization is `NF4_CODE[q] · absmax` in f32.
//!
//! # Double quantization (`compress_statistics=True`)
//! The f32 absmax values get `offset = mean(absmax)` subtracted, then are quantized with the signed
//! 8-bit dynamic map ([`dynamic_map`]) in blocks of 256 ([`NESTED_BLOCKSIZE`]), each with its own f32
//! absmax (`absmax2`). This uses bitsandbytes' C++ CPU kernel, which maps `v / absmax2` to a code
//! through a 65536-entry table (not an exact nearest search); [`quantize`] reproduces that table and
//! its fused multiply-add index computation. The f32 absmax is recovered as
//! `code_map[code] · absmax2 + offset` (two f32 roundings).
//!
//! The mean is torch's `float` sum (its cascade summation over 8-lane vectors) divided by the
//! count. bitsandbytes' own result depends on torch splitting the sum across threads for more than
//! 32768 blocks (about 2M elements at blocksize 64); Kiln always uses the single-threaded order, so
//! for such tensors `offset`, and through it some nested codes, may differ from a given bitsandbytes
//! run in the last bit. Loading a saved tensor is always exact: the stored offset is used.
//!
//! # 16-bit inputs
//! bitsandbytes widens bf16/f16 weights to f32 (exactly) before quantizing, and records the
//! original dtype only to pick the output dtype of `dequantize_4bit` (the f32 products rounded to
//! nearest-even). [`quantize_bf16`] / [`quantize_f16`] do the same; [`Nf4Tensor::dequantize`]
//! always returns the f32 products.
//!
//! # A bitsandbytes quirk
//! bitsandbytes 0.50.2's AVX-512 CPU dequantizer indexes absmax as `row · (cols / blocksize) + …`,
//! which is wrong when blocks straddle rows (`cols` a multiple of 16 but not of `blocksize`, e.g.
//! `[3, 96]` at blocksize 64). Kiln implements the format's flat definition, which its default
//! (PyTorch) and CUDA kernels follow.
//!
//! ```
//! use kiln_backend::nf4;
//! let x: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 64.0).collect();
//! let t = nf4::quantize(&x, &[2, 64], 64, true).unwrap();
//! assert_eq!(t.packed.len(), 64);
//! let y = t.dequantize();
//! // The widest gap between NF4 codes is 1 - 0.696: half of it times absmax (1) bounds the error.
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 0.153));
//! ```

mod dynamic_map;
mod state_dict;

pub use state_dict::{OwnedTensor, RawDtype, RawTensor};

/// The 16 NF4 values (bitsandbytes' `get_4bit_type("nf4")`), sorted.
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// The block sizes bitsandbytes accepts for 4-bit quantization.
pub const BLOCKSIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// Block size of the 8-bit quantization of absmax under double quantization.
pub const NESTED_BLOCKSIZE: usize = 256;

/// bitsandbytes' `create_dynamic_map(signed=True)`: 256 sorted f32 values in `[-0.993, 1]`.
#[must_use]
pub fn dynamic_map() -> [f32; 256] {
    dynamic_map::DYNAMIC_MAP_BITS.map(f32::from_bits)
}

/// Errors of NF4 quantization and of reading the bitsandbytes state-dict form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Nf4Error {
    /// A block size bitsandbytes does not support.
    #[error("NF4 blocksize {0} is not one of 32, 64, 128, 256, 512, 1024, 2048, 4096")]
    Blocksize(usize),
    /// The data length does not match the shape.
    #[error("NF4: shape {shape:?} has {expected} elements but {actual} values were given")]
    Shape {
        /// The shape.
        shape: Vec<usize>,
        /// Its element count.
        expected: usize,
        /// The values given.
        actual: usize,
    },
    /// A tensor with no elements (bitsandbytes cannot quantize it either).
    #[error("NF4: cannot quantize an empty tensor (shape {0:?})")]
    Empty(Vec<usize>),
    /// The parts of an [`Nf4Tensor`] do not fit together.
    #[error("NF4 tensor is inconsistent: {0}")]
    Inconsistent(String),
    /// A state-dict key is missing.
    #[error("NF4 state dict: missing key `{0}`")]
    MissingKey(String),
    /// A state-dict tensor has the wrong dtype.
    #[error("NF4 state dict: `{key}` has dtype {actual:?}, expected {expected:?}")]
    KeyDtype {
        /// The key.
        key: String,
        /// The dtype wanted.
        expected: RawDtype,
        /// The dtype found.
        actual: RawDtype,
    },
    /// A state-dict tensor has the wrong shape or byte size.
    #[error("NF4 state dict: `{key}` has shape {actual:?} ({bytes} bytes), expected {expected}")]
    KeyShape {
        /// The key.
        key: String,
        /// The shape wanted, in words.
        expected: String,
        /// The shape found.
        actual: Vec<usize>,
        /// The bytes found.
        bytes: usize,
    },
    /// The packed `quant_state.bitsandbytes__nf4` JSON is malformed or unsupported.
    #[error("NF4 state dict: `{key}`: {msg}")]
    QuantState {
        /// The key of the JSON blob.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor that is not a 2-D matrix where one is needed.
    #[error("NF4 tensor of shape {0:?} is not a [rows, cols] matrix")]
    NotAMatrix(Vec<usize>),
}

/// The dtype a tensor had before quantization (bitsandbytes' `quant_state.dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceDtype {
    /// `torch.float32`.
    #[default]
    F32,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
}

impl SourceDtype {
    /// The name bitsandbytes writes (`str(dtype).strip("torch.")`).
    #[must_use]
    pub fn torch_name(self) -> &'static str {
        match self {
            SourceDtype::F32 => "float32",
            SourceDtype::F16 => "float16",
            SourceDtype::BF16 => "bfloat16",
        }
    }

    /// The dtype of a torch name, if it is one of the three.
    #[must_use]
    pub fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "float32" => SourceDtype::F32,
            "float16" => SourceDtype::F16,
            "bfloat16" => SourceDtype::BF16,
            _ => return None,
        })
    }
}

/// The per-block scales of an [`Nf4Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Nf4Absmax {
    /// One f32 absmax per block.
    F32(Vec<f32>),
    /// Double quantization: absmax = `code_map[codes[i]] · absmax2[i / blocksize2] + offset`.
    Double {
        /// One 8-bit code per block.
        codes: Vec<u8>,
        /// The 8-bit code book (256 values; [`dynamic_map`] when quantized here).
        code_map: Vec<f32>,
        /// One f32 scale per `blocksize2` codes.
        absmax2: Vec<f32>,
        /// The mean subtracted before quantizing.
        offset: f32,
        /// Codes per `absmax2` entry (256).
        blocksize2: usize,
    },
}

/// An NF4-quantized tensor, laid out exactly as bitsandbytes stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    /// The logical shape (row-major).
    pub shape: Vec<usize>,
    /// Elements per absmax block.
    pub blocksize: usize,
    /// `ceil(numel / 2)` bytes, first element of each pair in the high nibble.
    pub packed: Vec<u8>,
    /// Per-block scales.
    pub absmax: Nf4Absmax,
    /// The dtype the tensor had before quantization.
    pub dtype: SourceDtype,
}

/// Quantizes `data` (row-major, `shape`) like `quantize_4bit(x, quant_type="nf4", blocksize,
/// compress_statistics=double_quant)` on an f32 tensor.
///
/// # Errors
/// [`Nf4Error::Blocksize`], [`Nf4Error::Shape`] when `data.len()` is not the shape's product,
/// [`Nf4Error::Empty`].
pub fn quantize(
    data: &[f32],
    shape: &[usize],
    blocksize: usize,
    double_quant: bool,
) -> Result<Nf4Tensor, Nf4Error> {
    if !BLOCKSIZES.contains(&blocksize) {
        return Err(Nf4Error::Blocksize(blocksize));
    }
    let expected = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX);
    if expected != data.len() {
        return Err(Nf4Error::Shape {
            shape: shape.to_vec(),
            expected,
            actual: data.len(),
        });
    }
    if data.is_empty() {
        return Err(Nf4Error::Empty(shape.to_vec()));
    }
    let (packed, absmax) = quantize_blocks(data, blocksize);
    let absmax = if double_quant {
        double_quantize(&absmax)
    } else {
        Nf4Absmax::F32(absmax)
    };
    Ok(Nf4Tensor {
        shape: shape.to_vec(),
        blocksize,
        packed,
        absmax,
        dtype: SourceDtype::F32,
    })
}

/// [`quantize`] of a bf16 tensor: widened to f32 first, as bitsandbytes does; `dtype` is BF16.
///
/// # Errors
/// As [`quantize`].
pub fn quantize_bf16(
    data: &[half::bf16],
    shape: &[usize],
    blocksize: usize,
    double_quant: bool,
) -> Result<Nf4Tensor, Nf4Error> {
    let wide: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
    let mut t = quantize(&wide, shape, blocksize, double_quant)?;
    t.dtype = SourceDtype::BF16;
    Ok(t)
}

/// [`quantize`] of an f16 tensor: widened to f32 first, as bitsandbytes does; `dtype` is F16.
///
/// # Errors
/// As [`quantize`].
pub fn quantize_f16(
    data: &[half::f16],
    shape: &[usize],
    blocksize: usize,
    double_quant: bool,
) -> Result<Nf4Tensor, Nf4Error> {
    let wide: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
    let mut t = quantize(&wide, shape, blocksize, double_quant)?;
    t.dtype = SourceDtype::F16;
    Ok(t)
}

/// `max |x|` with NaN propagating, as `torch.abs(x).max()`.
fn absmax_of(block: &[f32]) -> f32 {
    let mut m = 0.0f32;
    for &v in block {
        if v.is_nan() {
            return f32::NAN;
        }
        m = m.max(v.abs());
    }
    m
}

/// The nearest NF4 code of a scaled value: `torch.bucketize(v, midpoints)` (right=False), with
/// torch's binary search, so ties go down and NaN goes to 15.
fn nf4_code(v: f32, mids: &[f32; 15]) -> u8 {
    let (mut lo, mut hi) = (0usize, mids.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // `!(b >= v)`, not `b < v`: identical for numbers, and sends NaN to the top as torch does.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(mids[mid] >= v) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo as u8
}

/// The f32 midpoints bitsandbytes buckets against.
fn nf4_midpoints() -> [f32; 15] {
    std::array::from_fn(|i| (NF4_CODE[i] + NF4_CODE[i + 1]) / 2.0)
}

/// Codes (packed) and f32 absmax of every block.
fn quantize_blocks(data: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    // torch converts the Python float 1e-38 to the nearest f32 (a subnormal), as Rust does.
    const TINY: f32 = 1e-38;
    let mids = nf4_midpoints();
    let n = data.len();
    let full = n - n % blocksize;
    let mut codes = Vec::with_capacity(n + 1);
    let mut absmax = Vec::with_capacity(n.div_ceil(blocksize));
    for block in data[..full].chunks_exact(blocksize) {
        let am = absmax_of(block);
        absmax.push(am);
        let inv = 1.0 / clamp_min(am, TINY);
        codes.extend(block.iter().map(|&v| nf4_code(clamp_unit(v * inv), &mids)));
    }
    if full < n {
        let tail = &data[full..];
        let am = clamp_min(absmax_of(tail), TINY);
        absmax.push(am);
        codes.extend(tail.iter().map(|&v| nf4_code(clamp_unit(v / am), &mids)));
    }
    if codes.len() % 2 == 1 {
        // bnb pads the scaled values with one 0.0 (`F.pad(scaled, (0, 1))`) and bucketizes it too.
        codes.push(nf4_code(0.0, &mids));
    }
    let packed = codes.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect();
    (packed, absmax)
}

/// `torch.clamp(v, min=m)`: NaN stays NaN.
fn clamp_min(v: f32, m: f32) -> f32 {
    if v < m { m } else { v }
}

/// `torch.clamp(v, -1, 1)`: NaN stays NaN.
fn clamp_unit(v: f32) -> f32 {
    v.clamp(-1.0, 1.0)
}

/// torch's single-threaded f32 `sum` of a contiguous 1-D tensor (`cascade_sum` in
/// ATen/native/cpu/SumKernel.cpp, whose `Vectorized<float>` has 8 lanes on every x86 build: the
/// AVX-512 build registers no sum kernel and falls back to the AVX2 one).
fn torch_sum(x: &[f32]) -> f32 {
    const LANES: usize = 8;
    if x.len() < LANES {
        return row_sum::<1>(x.len(), |i| [x[i]])[0];
    }
    let vecs = x.len() / LANES;
    let acc = row_sum::<LANES>(vecs, |i| std::array::from_fn(|l| x[i * LANES + l]));
    let mut total = 0.0f32;
    for &v in &x[vecs * LANES..] {
        total += v;
    }
    for v in acc {
        total += v;
    }
    total
}

fn add<const L: usize>(a: &mut [f32; L], b: &[f32; L]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// torch's `row_sum`: four interleaved partial sums (`multi_row_sum` over rows of 4), the tail into
/// the first, then the four added in order.
fn row_sum<const L: usize>(size: usize, load: impl Fn(usize) -> [f32; L]) -> [f32; L] {
    const ILP: usize = 4;
    let size_ilp = size / ILP;
    let mut partial = multi_row_sum::<L, ILP>(size_ilp, |i, k| load(i * ILP + k));
    for i in size_ilp * ILP..size {
        add(&mut partial[0], &load(i));
    }
    let mut out = partial[0];
    for p in &partial[1..] {
        add(&mut out, p);
    }
    out
}

/// torch's `multi_row_sum`: cascade summation over four levels.
#[allow(clippy::needless_range_loop)] // mirrors the C++ loop nest, index for index
fn multi_row_sum<const L: usize, const R: usize>(
    size: usize,
    load: impl Fn(usize, usize) -> [f32; L],
) -> [[f32; L]; R] {
    const LEVELS: usize = 4;
    let ceil_log2 = if size <= 2 {
        1
    } else {
        64 - (size as u64 - 1).leading_zeros() as usize
    };
    let level_power = (ceil_log2 / LEVELS).max(4);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0.0f32; L]; R]; LEVELS];
    let mut i = 0usize;
    while i + level_step <= size {
        for _ in 0..level_step {
            for k in 0..R {
                add(&mut acc[0][k], &load(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..R {
                let prev = acc[j - 1][k];
                add(&mut acc[j][k], &prev);
                acc[j - 1][k] = [0.0; L];
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for k in 0..R {
            add(&mut acc[0][k], &load(i, k));
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..R {
            let lvl = acc[j][k];
            add(&mut acc[0][k], &lvl);
        }
    }
    acc[0]
}

/// bitsandbytes' CPU 8-bit blockwise quantizer (`quantize_cpu_impl`): a 65536-entry table from
/// `[-1, 1]` to the nearest code (by midpoints), indexed by `trunc(fma((v + 1) · 0.5, 65535, 0.5))`.
fn quantize_8bit(values: &[f32], code: &[f32; 256], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    const LUT: usize = 65536;
    let mids: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let mut lut = vec![0u8; LUT];
    let mut c = 0usize;
    for (i, slot) in lut.iter_mut().enumerate() {
        let val = -1.0f32 + (2.0 * i as f32) / (LUT - 1) as f32;
        while c < mids.len() && mids[c] < val {
            c += 1;
        }
        *slot = c as u8;
    }
    let mut codes = Vec::with_capacity(values.len());
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    for block in values.chunks(blocksize) {
        let am = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        absmax.push(am);
        if am == 0.0 {
            codes.extend(std::iter::repeat_n(0u8, block.len()));
            continue;
        }
        let inv = 1.0 / am;
        codes.extend(block.iter().map(|&v| {
            let t = (clamp_unit(v * inv) + 1.0) * 0.5;
            lut[t.mul_add((LUT - 1) as f32, 0.5) as u16 as usize]
        }));
    }
    (codes, absmax)
}

/// `offset = absmax.mean()`, then the 8-bit quantization of `absmax - offset`.
fn double_quantize(absmax: &[f32]) -> Nf4Absmax {
    let offset = torch_sum(absmax) / absmax.len() as f32;
    let centered: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
    let map = dynamic_map();
    let (codes, absmax2) = quantize_8bit(&centered, &map, NESTED_BLOCKSIZE);
    Nf4Absmax::Double {
        codes,
        code_map: map.to_vec(),
        absmax2,
        offset,
        blocksize2: NESTED_BLOCKSIZE,
    }
}

impl Nf4Absmax {
    /// Blocks described.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Nf4Absmax::F32(v) => v.len(),
            Nf4Absmax::Double { codes, .. } => codes.len(),
        }
    }

    /// Whether there are no blocks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f32 absmax of every block, as `dequantize_4bit` uses them (double quantization expanded
    /// as `code_map[code] · absmax2 + offset`). Missing `absmax2` entries or out-of-range codes read
    /// as NaN (they cannot occur in a validated tensor).
    #[must_use]
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Nf4Absmax::F32(v) => v.clone(),
            Nf4Absmax::Double {
                codes,
                code_map,
                absmax2,
                offset,
                blocksize2,
            } => codes
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let c = code_map.get(usize::from(c)).copied().unwrap_or(f32::NAN);
                    let s = absmax2
                        .get(i / (*blocksize2).max(1))
                        .copied()
                        .unwrap_or(f32::NAN);
                    c * s + offset
                })
                .collect(),
        }
    }
}

impl Nf4Tensor {
    /// Elements (the product of the shape).
    #[must_use]
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Checks that the parts fit: a supported blocksize, `ceil(numel/2)` packed bytes, one absmax
    /// per block, and for double quantization a 256-entry code map and one `absmax2` per
    /// `blocksize2` codes.
    ///
    /// # Errors
    /// [`Nf4Error::Blocksize`], [`Nf4Error::Inconsistent`] naming the part that does not fit.
    pub fn validate(&self) -> Result<(), Nf4Error> {
        if !BLOCKSIZES.contains(&self.blocksize) {
            return Err(Nf4Error::Blocksize(self.blocksize));
        }
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Nf4Error::Inconsistent(format!("shape {:?} overflows", self.shape)))?;
        let bad = |what: String| Err(Nf4Error::Inconsistent(what));
        if self.packed.len() != n.div_ceil(2) {
            return bad(format!(
                "{} packed bytes for {n} elements (want {})",
                self.packed.len(),
                n.div_ceil(2)
            ));
        }
        let blocks = n.div_ceil(self.blocksize);
        if self.absmax.len() != blocks {
            return bad(format!(
                "{} absmax values for {blocks} blocks",
                self.absmax.len()
            ));
        }
        if let Nf4Absmax::Double {
            code_map,
            absmax2,
            blocksize2,
            ..
        } = &self.absmax
        {
            if code_map.len() != 256 {
                return bad(format!("nested code map has {} entries", code_map.len()));
            }
            if *blocksize2 == 0 || absmax2.len() != blocks.div_ceil(*blocksize2) {
                return bad(format!(
                    "{} nested absmax values for {blocks} codes in blocks of {blocksize2}",
                    absmax2.len()
                ));
            }
        }
        Ok(())
    }

    /// The 4-bit code of element `i` (`< numel`).
    #[must_use]
    pub fn code(&self, i: usize) -> u8 {
        let b = self.packed[i / 2];
        if i.is_multiple_of(2) {
            b >> 4
        } else {
            b & 0x0F
        }
    }

    /// The f32 values, `NF4_CODE[q] · absmax` — bit-identical to `dequantize_4bit(...,
    /// quant_type="nf4")` with an f32 output.
    ///
    /// # Panics
    /// When the tensor is inconsistent (see [`Self::validate`]); tensors from [`quantize`] and
    /// [`Self::from_state_dict`] are always consistent.
    #[must_use]
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.numel();
        let absmax = self.absmax.to_f32();
        (0..n)
            .map(|i| NF4_CODE[usize::from(self.code(i))] * absmax[i / self.blocksize])
            .collect()
    }

    /// [`Self::dequantize`] rounded to bf16 (nearest-even), as `dequantize_4bit` returns a tensor
    /// quantized from bf16.
    #[must_use]
    pub fn dequantize_bf16(&self) -> Vec<half::bf16> {
        self.dequantize()
            .into_iter()
            .map(half::bf16::from_f32)
            .collect()
    }

    /// [`Self::dequantize`] rounded to f16 (nearest-even), as `dequantize_4bit` returns a tensor
    /// quantized from f16.
    #[must_use]
    pub fn dequantize_f16(&self) -> Vec<half::f16> {
        self.dequantize()
            .into_iter()
            .map(half::f16::from_f32)
            .collect()
    }
}

#[cfg(test)]
mod tests;

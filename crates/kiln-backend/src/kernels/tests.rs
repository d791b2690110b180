//! Kernel tests: every format × every SIMD path this CPU supports × odd shapes, against a
//! dequantize-then-multiply reference in f64.
//!
//! Tolerances (per output element, `w` the dequantized row, `x` the activations, `n` = cols):
//! - rounding of the f32 arithmetic: `n · ε_f32 · Σ|w_i x_i|` (the textbook bound for a recursive
//!   sum; the kernels' split accumulators only do better);
//! - NF4 and the float formats take f32 activations: the rounding term alone (NF4's products are
//!   exactly the dequantized weight times the activation);
//! - Q4_0, Q4_1 and Q8_0 add the 8-bit activation rounding: each `x_i` moves by at most half a step,
//!   `d/2 = max|x_block|/254`, so the error vector `e` has `‖e‖ ≤ √32/254 · ‖x‖` and
//!   `|w·e| ≤ √32/254 · ‖w‖ · ‖x‖` (Cauchy–Schwarz).
//!
//! SIMD paths are also compared with the scalar path, which sees the same quantized activations, so
//! they must agree to within the f32 rounding term alone — that catches a wrong lane or nibble that
//! the looser quantization bound could hide.

#![allow(clippy::needless_range_loop)] // index loops over parallel arrays read clearest here

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const ROWS: [usize; 4] = [1, 7, 33, 577];
const COLS: [usize; 6] = [32, 64, 96, 224, 576, 1536];

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random weights of `format` with realistic scales (and every quant value, -128 included).
fn random_matrix(rng: &mut StdRng, format: WeightFormat, rows: usize, cols: usize) -> QuantMatrix {
    let mut bytes = Vec::with_capacity(format.row_bytes(cols).unwrap() * rows);
    let blocks = rows * cols / format.block_elems();
    for _ in 0..blocks {
        match format {
            WeightFormat::F32 => bytes.extend(rng.random_range(-1.0f32..1.0).to_le_bytes()),
            WeightFormat::F16 => bytes.extend(f16_bytes(rng.random_range(-1.0f32..1.0))),
            WeightFormat::BF16 => bytes.extend(
                half::bf16::from_f32(rng.random_range(-1.0f32..1.0))
                    .to_bits()
                    .to_le_bytes(),
            ),
            WeightFormat::Q4_0 | WeightFormat::Q8_0 => {
                bytes.extend(f16_bytes(rng.random_range(-0.05f32..0.05)));
                let n = if format == WeightFormat::Q4_0 { 16 } else { 32 };
                bytes.extend((0..n).map(|_| rng.random::<u8>()));
            }
            WeightFormat::Q4_1 => {
                bytes.extend(f16_bytes(rng.random_range(0.0f32..0.02)));
                bytes.extend(f16_bytes(rng.random_range(-0.2f32..0.0)));
                bytes.extend((0..16).map(|_| rng.random::<u8>()));
            }
            WeightFormat::Nf4 => {
                bytes.extend(rng.random_range(0.0f32..0.05).to_le_bytes());
                bytes.extend((0..32).map(|_| rng.random::<u8>()));
            }
        }
    }
    QuantMatrix::new(format, rows, cols, bytes).unwrap()
}

/// Activations with a spread of block magnitudes (some blocks all zero, some with an outlier).
fn random_x(rng: &mut StdRng, len: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    for (b, blk) in x.chunks_mut(BLOCK).enumerate() {
        match b % 5 {
            1 => blk.iter_mut().for_each(|v| *v *= 100.0),
            2 => blk[b % blk.len()] = 30.0,
            3 if b % 3 == 0 => blk.iter_mut().for_each(|v| *v = 0.0),
            _ => {}
        }
    }
    x
}

struct Reference {
    y: Vec<f64>,
    /// Per row: the f32 rounding bound.
    round: Vec<f64>,
    /// Per row: the activation-quantization bound (zero for float formats).
    quant: Vec<f64>,
}

fn reference(w: &QuantMatrix, x: &[f32]) -> Reference {
    let cols = w.cols();
    let xnorm = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    let mut row = vec![0.0f32; cols];
    let mut r = Reference {
        y: vec![],
        round: vec![],
        quant: vec![],
    };
    for i in 0..w.rows() {
        w.dequantize_row(i, &mut row);
        let dot: f64 = row
            .iter()
            .zip(x)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let abs: f64 = row
            .iter()
            .zip(x)
            .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
            .sum();
        let wnorm = row
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        r.y.push(dot);
        // With quantized activations Σ|w x̂| ≤ Σ|w x| + the quantization bound; 2x covers both.
        r.round
            .push(2.0 * cols as f64 * f64::from(f32::EPSILON) * abs + 1e-6);
        r.quant.push(if w.format().is_quantized() {
            32f64.sqrt() / 254.0 * wnorm * xnorm
        } else {
            0.0
        });
    }
    r
}

#[test]
fn every_format_path_and_shape_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(8);
    let paths = SimdPath::supported();
    eprintln!("testing SIMD paths {paths:?}");
    let mut scratch = Scratch::new();
    for format in WeightFormat::ALL {
        for &rows in &ROWS {
            for &cols in &COLS {
                if !cols.is_multiple_of(format.block_elems()) {
                    continue;
                }
                let w = random_matrix(&mut rng, format, rows, cols);
                let x = random_x(&mut rng, cols);
                let r = reference(&w, &x);
                let mut scalar_y = vec![0.0f32; rows];
                matvec_with(SimdPath::Scalar, &w, &x, &mut scalar_y, &mut scratch);
                let mut worst = 0.0f64;
                for &path in &paths {
                    let mut y = vec![f32::NAN; rows];
                    matvec_with(path, &w, &x, &mut y, &mut scratch);
                    for i in 0..rows {
                        let err = (f64::from(y[i]) - r.y[i]).abs();
                        let bound = r.round[i] + r.quant[i];
                        assert!(
                            err <= bound,
                            "{format} {rows}x{cols} {path:?} row {i}: {} vs {} (err {err:e} > {bound:e})",
                            y[i],
                            r.y[i]
                        );
                        let dev = (f64::from(y[i]) - f64::from(scalar_y[i])).abs();
                        assert!(
                            dev <= r.round[i],
                            "{format} {rows}x{cols} {path:?} row {i}: {} vs scalar {} ({dev:e} > {:e})",
                            y[i],
                            scalar_y[i],
                            r.round[i]
                        );
                        if r.quant[i] > 0.0 {
                            worst = worst.max(err / r.quant[i]);
                        }
                    }
                }
                if format.is_quantized() && rows * cols >= 100_000 {
                    // The quantization bound is a worst case; random data sit far below it.
                    assert!(worst < 0.5, "{format} {rows}x{cols}: error/bound {worst}");
                }
            }
        }
    }
}

#[test]
fn matmul_equals_repeated_matvec() {
    let mut rng = StdRng::seed_from_u64(9);
    for format in WeightFormat::ALL {
        for (rows, cols, n) in [
            (33, 96, 1),
            (577, 576, 3),
            (40, 1536, 8),
            (7, 32usize, 17),
            (19, 224, 12),
        ] {
            if !cols.is_multiple_of(format.block_elems()) {
                continue;
            }
            let w = random_matrix(&mut rng, format, rows, cols);
            let x = random_x(&mut rng, n * cols);
            for path in SimdPath::supported() {
                let mut y = vec![f32::NAN; n * rows];
                let mut scratch = Scratch::new();
                matmul_with(path, &w, &x, n, &mut y, &mut scratch);
                for j in 0..n {
                    let mut yj = vec![f32::NAN; rows];
                    matvec_with(
                        path,
                        &w,
                        &x[j * cols..(j + 1) * cols],
                        &mut yj,
                        &mut scratch,
                    );
                    let packed = path == SimdPath::Avx512 && format.is_quantized() && n >= 2;
                    if packed {
                        // The packed kernel sums in another order: equal up to f32 rounding
                        // (both see the same quantized activations).
                        let r = reference(&w, &x[j * cols..(j + 1) * cols]);
                        for i in 0..rows {
                            let dev = (f64::from(y[j * rows + i]) - f64::from(yj[i])).abs();
                            assert!(
                                dev <= 2.0 * r.round[i],
                                "{format} {rows}x{cols} n={n} {path:?} activation row {j}, row {i}: {} vs {}",
                                y[j * rows + i],
                                yj[i]
                            );
                        }
                    } else {
                        assert_eq!(
                            &y[j * rows..(j + 1) * rows],
                            &yj[..],
                            "{format} {rows}x{cols} n={n} {path:?} activation row {j}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn row_ranges_computed_apart_equal_the_whole_product() {
    let mut rng = StdRng::seed_from_u64(10);
    for format in WeightFormat::ALL {
        for (rows, cols, n) in [(33, 96, 1), (577, 576, 3), (40, 1536, 9), (7, 32usize, 17)] {
            if !cols.is_multiple_of(format.block_elems()) {
                continue;
            }
            let w = random_matrix(&mut rng, format, rows, cols);
            let x = random_x(&mut rng, n * cols);
            let mut whole = vec![f32::NAN; n * rows];
            matmul_into(&w, &x, n, &mut whole, &mut Scratch::new());
            let mut scratch = Scratch::new();
            scratch.prepare(format, &x, n);
            // Uneven cuts, an empty range and a range of one row.
            let cuts = [0, rows / 3, rows / 3, rows / 3 + 1, rows];
            for pair in cuts.windows(2) {
                let range = pair[0]..pair[1];
                let mut part = vec![f32::NAN; n * range.len()];
                matmul_rows(&w, &x, n, &scratch, range.clone(), &mut part);
                for j in 0..n {
                    assert_eq!(
                        &part[j * range.len()..(j + 1) * range.len()],
                        &whole[j * rows + range.start..j * rows + range.end],
                        "{format} {rows}x{cols} n={n} rows {range:?} activation row {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn default_entry_points_agree_with_the_detected_path() {
    let mut rng = StdRng::seed_from_u64(10);
    let w = random_matrix(&mut rng, WeightFormat::Q4_1, 577, 576);
    let x = random_x(&mut rng, 2 * 576);
    let mut a = vec![0.0; 577];
    let mut b = vec![0.0; 577];
    matvec(&w, &x[..576], &mut a);
    matvec_with(
        SimdPath::detect(),
        &w,
        &x[..576],
        &mut b,
        &mut Scratch::new(),
    );
    assert_eq!(a, b);
    let mut scratch = Scratch::with_capacity(2, 576);
    matvec_into(&w, &x[..576], &mut b, &mut scratch);
    assert_eq!(a, b);
    let mut m1 = vec![0.0; 577];
    matmul(&w, &x[..576], 1, &mut m1);
    assert_eq!(m1, a);
    let mut m = vec![0.0; 2 * 577];
    matmul(&w, &x, 2, &mut m);
    let mut m2 = vec![0.0; 2 * 577];
    matmul_into(&w, &x, 2, &mut m2, &mut scratch);
    assert_eq!(m, m2);
    // Single-threaded pool: the sequential code path gives the same numbers.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut c = vec![0.0; 577];
    pool.install(|| matvec(&w, &x[..576], &mut c));
    assert_eq!(a, c);
}

#[test]
fn known_block_values() {
    // Q4_0: d = 1.0; byte j holds element j (low nibble j) and element 16 + j (high nibble 15 - j).
    let mut b = f16_bytes(1.0).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let w = QuantMatrix::new(WeightFormat::Q4_0, 1, 32, b).unwrap();
    let mut out = [0.0f32; 32];
    w.dequantize_row(0, &mut out);
    for j in 0..16 {
        assert_eq!(out[j], j as f32 - 8.0);
        assert_eq!(out[16 + j], 7.0 - j as f32);
    }
    // Q4_1: d = 0.5, m = -1.0.
    let mut b = f16_bytes(0.5).to_vec();
    b.extend(f16_bytes(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let w = QuantMatrix::new(WeightFormat::Q4_1, 1, 32, b).unwrap();
    w.dequantize_row(0, &mut out);
    for j in 0..16 {
        assert_eq!(out[j], j as f32 * 0.5 - 1.0);
        assert_eq!(out[16 + j], (15 - j) as f32 * 0.5 - 1.0);
    }
    // Exact products: one-hot activations pick single weights (activation quantization of a one-hot
    // block is exact).
    for path in SimdPath::supported() {
        for k in [0, 5, 16, 31] {
            let mut x = [0.0f32; 32];
            x[k] = 1.0;
            let mut y = [0.0f32];
            matvec_with(path, &w, &x, &mut y, &mut Scratch::new());
            assert_eq!(y[0], out[k], "{path:?} element {k}");
        }
    }
    // Q8_0 with -128 and 127, BF16 and F16 ones.
    let mut b = f16_bytes(0.25).to_vec();
    b.extend((0..32).map(|j: i32| (if j == 0 { -128 } else { 127 - j }) as i8 as u8));
    let w = QuantMatrix::new(WeightFormat::Q8_0, 1, 32, b).unwrap();
    w.dequantize_row(0, &mut out);
    assert_eq!(out[0], -32.0);
    assert_eq!(out[1], 126.0 * 0.25);
    let w = QuantMatrix::new(WeightFormat::BF16, 1, 1, vec![0x80, 0x3F]).unwrap();
    let mut one = [0.0f32];
    w.dequantize_row(0, &mut one);
    assert_eq!(one[0], 1.0);
    let w = QuantMatrix::new(WeightFormat::F16, 1, 1, f16_bytes(-2.0).to_vec()).unwrap();
    w.dequantize_row(0, &mut one);
    assert_eq!(one[0], -2.0);
}

#[test]
fn float_formats_take_any_column_count() {
    let mut rng = StdRng::seed_from_u64(11);
    for format in [WeightFormat::F32, WeightFormat::F16, WeightFormat::BF16] {
        for cols in [1, 7, 17, 63, 65, 129] {
            let w = random_matrix(&mut rng, format, 5, cols);
            let x = random_x(&mut rng, cols);
            let r = reference(&w, &x);
            for path in SimdPath::supported() {
                let mut y = vec![0.0; 5];
                matvec_with(path, &w, &x, &mut y, &mut Scratch::new());
                for i in 0..5 {
                    assert!(
                        (f64::from(y[i]) - r.y[i]).abs() <= r.round[i],
                        "{format} {cols} {path:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn sizes_are_validated() {
    assert!(matches!(
        QuantMatrix::new(WeightFormat::Q4_0, 2, 48, vec![0; 36]),
        Err(Error::BlockMisaligned { cols: 48, .. })
    ));
    assert!(matches!(
        QuantMatrix::new(WeightFormat::F32, 2, 0, vec![]),
        Err(Error::BlockMisaligned { cols: 0, .. })
    ));
    let err = QuantMatrix::new(WeightFormat::Q4_1, 2, 64, vec![0; 79]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DataSize {
                expected: 80,
                actual: 79,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Q4_1"), "{err}");
    assert!(matches!(
        QuantMatrix::new(WeightFormat::F16, usize::MAX, 4, vec![]),
        Err(Error::ShapeOverflow { .. })
    ));
    let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(vec![0u8; 100]);
    assert!(matches!(
        QuantMatrix::from_shared(WeightFormat::Q8_0, 1, 32, owner.clone(), 70..104),
        Err(Error::DataRange { len: 100, .. })
    ));
    let w = QuantMatrix::from_shared(WeightFormat::Q8_0, 2, 32, owner, 30..98).unwrap();
    assert_eq!(
        (w.rows(), w.cols(), w.row_bytes(), w.bytes().len()),
        (2, 32, 34, 68)
    );
    assert_eq!(WeightFormat::from_ggml_type(3), Some(WeightFormat::Q4_1));
    assert_eq!(WeightFormat::from_ggml_type(30), Some(WeightFormat::BF16));
    assert_eq!(WeightFormat::from_ggml_type(12), None);
}

#[test]
#[should_panic(expected = "x.len() != cols")]
fn wrong_activation_length_panics() {
    let w = QuantMatrix::new(WeightFormat::Q8_0, 1, 32, vec![0; 34]).unwrap();
    matvec(&w, &[0.0; 31], &mut [0.0]);
}

#[test]
fn unaligned_shared_bytes_work() {
    // A memory map hands over tensors at arbitrary offsets: run on bytes starting at an odd address.
    let mut rng = StdRng::seed_from_u64(12);
    for format in WeightFormat::ALL {
        let w = random_matrix(&mut rng, format, 9, 128);
        let mut buf = vec![7u8; 3];
        buf.extend_from_slice(w.bytes());
        let len = buf.len();
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(buf);
        let shared = QuantMatrix::from_shared(format, 9, 128, owner, 3..len).unwrap();
        let x = random_x(&mut rng, 128);
        for path in SimdPath::supported() {
            let (mut a, mut b) = (vec![0.0; 9], vec![0.0; 9]);
            matvec_with(path, &w, &x, &mut a, &mut Scratch::new());
            matvec_with(path, &shared, &x, &mut b, &mut Scratch::new());
            assert_eq!(a, b, "{format} {path:?}");
        }
    }
}

#[test]
fn scalar_f16_conversion_is_exact_for_every_half() {
    for bits in 0..=u16::MAX {
        let want = half::f16::from_bits(bits).to_f32();
        let got = super::scalar::f16_to_f32(bits);
        assert!(
            want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
            "{bits:#06x}: {got} vs {want}"
        );
    }
}

#[test]
fn nearest_int_rounds_like_round_ties_even() {
    for v in [
        0.0f32, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5, -127.0, 127.0, 0.49999997, -63.7, 3.2,
    ] {
        assert_eq!(
            super::scratch::nearest_int(v),
            v.round_ties_even() as i32,
            "{v}"
        );
    }
}

#[test]
fn nf4_matrices_compute_on_the_dequantized_weights() {
    use crate::nf4;
    let mut rng = StdRng::seed_from_u64(13);
    // (rows, cols, blocksize, double quant, expected format)
    let cases = [
        (33, 576, 64, true, WeightFormat::Nf4),
        (7, 128, 128, false, WeightFormat::Nf4),
        (5, 256, 4096, true, WeightFormat::Nf4),
        (3, 96, 64, false, WeightFormat::F32), // blocks straddle rows
        (4, 128, 32, true, WeightFormat::F32), // two scales per 64 weights
    ];
    for (rows, cols, bs, dq, format) in cases {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| rng.random_range(-1.0f32..1.0) * if i % 97 == 0 { 8.0 } else { 0.1 })
            .collect();
        let t = nf4::quantize(&data, &[rows, cols], bs, dq).unwrap();
        let w = QuantMatrix::from_nf4(&t).unwrap();
        assert_eq!(w.format(), format, "{rows}x{cols} bs {bs}");
        let want = t.dequantize();
        let got = w.dequantize();
        assert!(
            want.iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{rows}x{cols} bs {bs}: dequantized weights differ"
        );
        let x = random_x(&mut rng, cols);
        let r = reference(&w, &x);
        for path in SimdPath::supported() {
            let mut y = vec![f32::NAN; rows];
            matvec_with(path, &w, &x, &mut y, &mut Scratch::new());
            for i in 0..rows {
                let err = (f64::from(y[i]) - r.y[i]).abs();
                assert!(
                    err <= r.round[i],
                    "{rows}x{cols} {path:?} row {i}: err {err:e}"
                );
            }
            // One-hot activations pick single weights exactly: catches nibble order and lanes.
            for k in [0, 1, 2, 17, 33, 62, 63, cols - 1] {
                let mut e = vec![0.0f32; cols];
                e[k] = 1.0;
                matvec_with(path, &w, &e, &mut y, &mut Scratch::new());
                for i in 0..rows {
                    assert_eq!(y[i], want[i * cols + k], "{path:?} row {i} col {k}");
                }
            }
        }
    }
    let t = nf4::quantize(&[0.5; 128], &[128], 64, false).unwrap();
    assert!(matches!(
        QuantMatrix::from_nf4(&t),
        Err(Error::Nf4(nf4::Nf4Error::NotAMatrix(_)))
    ));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_activation_quantization_is_bit_identical_to_the_portable_loop() {
    if SimdPath::detect() != SimdPath::Avx512 {
        return;
    }
    let mut rng = StdRng::seed_from_u64(21);
    // Zero blocks, one-hot blocks, large and tiny magnitudes, and values exactly halfway between
    // two steps (ties go to even in both).
    let mut x = random_x(&mut rng, 64 * BLOCK);
    x[5 * BLOCK..6 * BLOCK]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = i as f32 - 15.5);
    x[7 * BLOCK..8 * BLOCK].iter_mut().for_each(|v| *v *= 1e-30);
    x[9 * BLOCK] = 127.0;
    x[9 * BLOCK + 1..10 * BLOCK]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = i as f32 + 0.5);
    let blocks = x.len() / BLOCK;
    let (mut q1, mut d1, mut s1) = (vec![0i8; x.len()], vec![0f32; blocks], vec![0f32; blocks]);
    let (mut q2, mut d2, mut s2) = (q1.clone(), d1.clone(), s1.clone());
    super::scratch::quantize_portable(&x, &mut q1, &mut d1, &mut s1);
    // SAFETY: AVX-512 was detected; the lengths match.
    unsafe { x86_quant::quantize_avx512(&x, &mut q2, &mut d2, &mut s2) };
    assert_eq!(q1, q2);
    assert_eq!(
        d1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        d2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(
        s1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        s2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

/// A probe, not a test: products per second of `matmul_rows` on one thread with the weights hot in
/// cache (a 1536 × 576 matrix), for 1..=8 activation rows and the block formats.
/// `cargo test --release -p kiln-backend --lib packed_rate -- --ignored --nocapture`.
#[test]
#[ignore = "a speed probe; run by hand"]
fn packed_rate() {
    let mut rng = StdRng::seed_from_u64(30);
    let (rows, cols) = (1536, 576);
    for format in [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0] {
        let w = random_matrix(&mut rng, format, rows, cols);
        let mut line = format!("{format}:");
        for n in 1..=8 {
            let x = random_x(&mut rng, n * cols);
            let mut scratch = Scratch::new();
            scratch.prepare(format, &x, n);
            let mut out = vec![0.0; n * rows];
            let reps = 2000 / n;
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    matmul_rows(&w, &x, n, &scratch, 0..rows, &mut out);
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gmacs = (reps * n * rows * cols) as f64 / best / 1e9;
            line += &format!(" n={n} {gmacs:.1}");
        }
        println!("{line} GMAC/s");
    }
}

/// The f32-activation packed path against the f64 reference, within the f32 rounding bound of the
/// sums it forms: per block `Σ q'·x` (`q'` the quant as multiplied: `q - 8` for Q4_0, `q` for Q4_1
/// and Q8_0), scaled by `d`, plus Q4_1's `m·Σx`; the bound is `cols · ε_f32 · Σ_b (|d_b|·Σ|q'·x| +
/// |m_b|·Σ|x|)`, the textbook bound of a recursive sum over those terms. Uneven row ranges, every
/// count of activation rows from 2 to 17.
#[test]
fn packed_f32_matches_the_reference() {
    let mut rng = StdRng::seed_from_u64(31);
    for format in [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0] {
        for (rows, cols) in [(577, 576), (19, 224), (7, 32), (40, 1536)] {
            let w = random_matrix(&mut rng, format, rows, cols);
            let blocks = cols / BLOCK;
            let bb = format.block_bytes();
            let f16 = |b: &[u8]| f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            for n in (2..=9).chain([12, 17]) {
                if !packed_for(format, n) {
                    continue;
                }
                let x = random_x(&mut rng, n * cols);
                let xsum: Vec<f32> = x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect();
                let mut y = vec![f32::NAN; n * rows];
                for range in [0..rows / 3, rows / 3..rows / 3 + 1, rows / 3 + 1..rows] {
                    // SAFETY: every written element is inside `y`, which nothing else touches.
                    unsafe {
                        matmul_rows_f32_strided(
                            &w,
                            &x,
                            &xsum,
                            n,
                            range.clone(),
                            y.as_mut_ptr(),
                            rows,
                            range.start,
                        );
                    }
                }
                for j in 0..n {
                    let xj = &x[j * cols..(j + 1) * cols];
                    let r = reference(&w, xj);
                    for i in 0..rows {
                        let row = w.row(i);
                        let mut mag = 0.0f64;
                        for b in 0..blocks {
                            let blk = &row[b * bb..(b + 1) * bb];
                            let xb = &xj[b * BLOCK..(b + 1) * BLOCK];
                            let q: Vec<f64> = match format {
                                WeightFormat::Q8_0 => {
                                    blk[2..].iter().map(|&v| f64::from(v as i8)).collect()
                                }
                                _ => {
                                    let qs = &blk[bb - 16..];
                                    let off = if format == WeightFormat::Q4_0 {
                                        8.0
                                    } else {
                                        0.0
                                    };
                                    (0..BLOCK)
                                        .map(|e| {
                                            let v =
                                                if e < 16 { qs[e] & 15 } else { qs[e - 16] >> 4 };
                                            f64::from(v) - off
                                        })
                                        .collect()
                                }
                            };
                            let qx: f64 = q
                                .iter()
                                .zip(xb)
                                .map(|(q, &v)| (q * f64::from(v)).abs())
                                .sum();
                            mag += f16(blk).abs() * qx;
                            if format == WeightFormat::Q4_1 {
                                let ax: f64 = xb.iter().map(|&v| f64::from(v).abs()).sum();
                                mag += f16(&blk[2..]).abs() * ax;
                            }
                        }
                        let bound = cols as f64 * f64::from(f32::EPSILON) * mag;
                        let err = (f64::from(y[j * rows + i]) - r.y[i]).abs();
                        assert!(
                            err <= bound,
                            "{format} {rows}x{cols} n={n} activation row {j}, row {i}: {} vs {} \
                             (err {err:e} > {bound:e})",
                            y[j * rows + i],
                            r.y[i]
                        );
                    }
                }
            }
        }
    }
}

/// After `pack()`, single-row products with 8-bit activations read the packed copy: `matvec` and
/// `matmul_rows` with one row agree with the reference within the activation-quantization and
/// rounding bounds, and with the GGUF-layout kernel on an unpacked copy of the bytes within the
/// rounding bound (both see the same quantized activations).
#[test]
fn packed_single_rows_match_the_unpacked_kernel() {
    let mut rng = StdRng::seed_from_u64(32);
    for format in [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0] {
        for (rows, cols) in [(577, 576), (19, 224), (7, 32)] {
            let plain = random_matrix(&mut rng, format, rows, cols);
            let packed = QuantMatrix::new(format, rows, cols, plain.bytes().to_vec()).unwrap();
            packed.pack();
            assert_eq!(plain.packed_bytes(), 0);
            if !packed_for(format, 2) {
                assert_eq!(
                    packed.packed_bytes(),
                    0,
                    "packed on a CPU without the kernels"
                );
                continue;
            }
            assert!(packed.packed_bytes() >= rows * plain.row_bytes());
            let x = random_x(&mut rng, cols);
            let r = reference(&plain, &x);
            let (mut a, mut b) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
            matvec(&plain, &x, &mut a);
            matvec(&packed, &x, &mut b);
            let mut scratch = Scratch::new();
            scratch.prepare(format, &x, 1);
            let mut c = vec![f32::NAN; rows];
            let cut = rows / 3 + 1;
            matmul_rows(&packed, &x, 1, &scratch, 0..cut, &mut c[..cut]);
            matmul_rows(&packed, &x, 1, &scratch, cut..rows, &mut c[cut..]);
            for i in 0..rows {
                let dev = (f64::from(b[i]) - f64::from(a[i])).abs();
                assert!(
                    dev <= 2.0 * r.round[i],
                    "{format} {rows}x{cols} row {i}: packed {} vs unpacked {}",
                    b[i],
                    a[i]
                );
                assert_eq!(
                    b[i].to_bits(),
                    c[i].to_bits(),
                    "{format} row {i}: matvec vs rows"
                );
                let err = (f64::from(b[i]) - r.y[i]).abs();
                assert!(
                    err <= r.quant[i] + 2.0 * r.round[i],
                    "{format} row {i}: {err:e}"
                );
            }
        }
    }
}

/// A packed copy made by a batch leaves single-row products on the GGUF layout: `matvec` gives the
/// same bits before and after a product with several rows.
#[test]
fn a_batch_does_not_change_single_row_results() {
    let mut rng = StdRng::seed_from_u64(33);
    let w = random_matrix(&mut rng, WeightFormat::Q4_1, 77, 224);
    let x = random_x(&mut rng, 3 * 224);
    let (mut before, mut after) = (vec![0.0; 77], vec![0.0; 77]);
    matvec(&w, &x[..224], &mut before);
    let mut y = vec![0.0; 3 * 77];
    matmul(&w, &x, 3, &mut y);
    matvec(&w, &x[..224], &mut after);
    assert_eq!(before, after);
}

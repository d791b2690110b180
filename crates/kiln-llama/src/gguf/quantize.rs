//! Reference quantizers, bit-exact with ggml's `quantize_row_*_ref` (`ggml/src/ggml-quants.c`), for
//! writing GGUF files (tests, fixtures, small conversions).

use half::f16;

use super::types::GgmlType;
use crate::error::{Error, Result};

/// The types [`quantize`] can produce.
pub const QUANTIZABLE: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
];

/// Encodes `data` (row-major, rows of `ne[0]` elements) as `ty`, the way ggml's reference
/// quantizer does.
///
/// Supports [`QUANTIZABLE`]; any other type, or a length that is not a whole number of the type's
/// blocks, is [`Error::Invalid`].
pub fn quantize(ty: GgmlType, data: &[f32]) -> Result<Vec<u8>> {
    let bs = ty.block_size();
    if !data.len().is_multiple_of(bs) {
        return Err(Error::Invalid(format!(
            "cannot quantize {} values to {ty}: not a multiple of the block size {bs}",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(data.len() / bs * ty.type_size());
    match ty {
        GgmlType::F32 => data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => data
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => data
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_bf16(*v).to_le_bytes())),
        GgmlType::Q8_0 => data
            .chunks_exact(32)
            .for_each(|x| quantize_block_q8_0(x, &mut out)),
        GgmlType::Q4_0 => data
            .chunks_exact(32)
            .for_each(|x| quantize_block_q4_0(x, &mut out)),
        GgmlType::Q4_1 => data
            .chunks_exact(32)
            .for_each(|x| quantize_block_q4_1(x, &mut out)),
        other => {
            return Err(Error::Invalid(format!(
                "cannot quantize to {other}: supported are {}",
                QUANTIZABLE
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(out)
}

/// ggml's `GGML_FP32_TO_BF16`: round to nearest even, NaNs kept quiet.
pub fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        ((u >> 16) | 64) as u16
    } else {
        ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
    }
}

fn push_f16(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// `quantize_row_q8_0_ref` for one block of 32.
fn quantize_block_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_f16(out, d);
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// `quantize_row_q4_0_ref` for one block of 32.
fn quantize_block_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_f16(out, d);
    let (lo, hi) = x.split_at(16);
    for (a, b) in lo.iter().zip(hi) {
        let q0 = ((a * id + 8.5) as i8).min(15) as u8;
        let q1 = ((b * id + 8.5) as i8).min(15) as u8;
        out.push(q0 | (q1 << 4));
    }
}

/// `quantize_row_q4_1_ref` for one block of 32.
fn quantize_block_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_f16(out, d);
    push_f16(out, min);
    let (lo, hi) = x.split_at(16);
    for (a, b) in lo.iter().zip(hi) {
        let q0 = (((a - min) * id + 0.5) as i8).min(15) as u8;
        let q1 = (((b - min) * id + 0.5) as i8).min(15) as u8;
        out.push(q0 | (q1 << 4));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize_into;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * 3.0 - 0.25)
            .collect()
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut x = vec![0.0f32; 32];
        x[0] = 12.7;
        x[1] = -6.3;
        x[2] = 0.1;
        let b = quantize(GgmlType::Q8_0, &x).unwrap();
        assert_eq!(b.len(), 34);
        // d = 12.7 / 127 = 0.1 -> f16 0x2E66; q = round(x / d).
        assert_eq!(
            u16::from_le_bytes([b[0], b[1]]),
            f16::from_f32(0.1).to_bits()
        );
        assert_eq!(&b[2..5], &[127u8, (-63i8) as u8, 1]);
        assert!(b[5..].iter().all(|&q| q == 0));
    }

    #[test]
    fn q4_0_block_by_hand() {
        // max |x| is -8 at index 3, so d = -8 / -8 = 1 and q = x + 8 (clamped to 15).
        let mut x: Vec<f32> = (0..32).map(|i| (i % 8) as f32 - 4.0).collect();
        x[3] = -8.0;
        let b = quantize(GgmlType::Q4_0, &x).unwrap();
        assert_eq!(b.len(), 18);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 1.0);
        for j in 0..16 {
            let lo = (b[2 + j] & 0xF) as i32 - 8;
            let hi = (b[2 + j] >> 4) as i32 - 8;
            assert_eq!(lo as f32, x[j].min(7.0), "lo {j}");
            assert_eq!(hi as f32, x[16 + j].min(7.0), "hi {j}");
        }
    }

    #[test]
    fn q4_1_block_by_hand() {
        // min 0, max 15 -> d = 1, m = 0, q = x.
        let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32).collect();
        let b = quantize(GgmlType::Q4_1, &x).unwrap();
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 1.0);
        assert_eq!(f16::from_le_bytes([b[2], b[3]]).to_f32(), 0.0);
        for j in 0..16 {
            assert_eq!(b[4 + j], (j as u8) | ((j as u8) << 4));
        }
    }

    #[test]
    fn round_trips_within_quantization_error() {
        let x = ramp(256);
        for (ty, tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 2e-3),
            (GgmlType::BF16, 2e-2),
            (GgmlType::Q8_0, 0.02),
            (GgmlType::Q4_0, 0.45),
            (GgmlType::Q4_1, 0.25),
        ] {
            let bytes = quantize(ty, &x).unwrap();
            let mut y = vec![0.0; x.len()];
            dequantize_into(ty, &bytes, &mut y).unwrap();
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err <= tol, "{ty}: max error {err} > {tol}");
        }
    }

    #[test]
    fn bf16_rounding_matches_ggml() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is a tie between 0x3F80 and 0x3F81: rounds to even.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(f32_to_bf16(f32::NAN) & 0x7FC0, 0x7FC0);
    }

    #[test]
    fn rejects_partial_blocks_and_unsupported_types() {
        assert!(quantize(GgmlType::Q8_0, &[0.0; 31]).is_err());
        assert!(quantize(GgmlType::Q4_K, &[0.0; 256]).is_err());
    }
}

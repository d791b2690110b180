//! Dequantization of ggml tensor data to `f32`, bit-exact with ggml's reference
//! `dequantize_row_*` functions (`ggml/src/ggml-quants.c`).
//!
//! Each kernel converts one block (a fixed-size byte array) into a fixed-size run of floats, doing
//! the float operations in the order ggml does them, so results are identical, not just close.
//! Large tensors are converted in parallel with rayon.

use half::f16;
use rayon::prelude::*;

use super::types::{GgmlType, QK_K};
use crate::error::{Error, Result};

/// Below this many output elements the conversion runs on the calling thread.
const PAR_MIN_ELEMENTS: usize = 1 << 16;
/// Output elements per rayon work item.
const PAR_CHUNK_ELEMENTS: usize = 1 << 14;

/// 4-bit non-linear code book shared by IQ4_NL and IQ4_XS (`kvalues_iq4nl`).
const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Dequantizes `bytes`, the raw data of `out.len()` elements of type `ty`, into `out`.
///
/// Elements come out in storage order (row-major with ggml's `ne[0]` contiguous, which is PyTorch
/// order). `bytes.len()` must be exactly the size of `out.len()` elements (a whole number of
/// blocks), else [`Error::Invalid`]. A type without a kernel (see [`GgmlType::can_dequantize`])
/// gives [`Error::UnsupportedDtype`] with `path` and `name` set to `"(buffer)"`;
/// [`super::GgufFile::dequantize`] reports the file and tensor instead.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let expected = ty.bytes_for(out.len()).ok_or_else(|| {
        Error::Invalid(format!(
            "cannot dequantize {} elements of type {ty}: not a whole number of {}-element blocks",
            out.len(),
            ty.block_size()
        ))
    })?;
    if bytes.len() != expected {
        return Err(Error::Invalid(format!(
            "cannot dequantize {} elements of type {ty}: expected {expected} bytes, got {}",
            out.len(),
            bytes.len()
        )));
    }
    match ty {
        GgmlType::F32 => run::<4, 1>(bytes, out, |b, y| y[0] = f32::from_le_bytes(*b)),
        GgmlType::F16 => run::<2, 1>(bytes, out, |b, y| y[0] = f16::from_le_bytes(*b).to_f32()),
        GgmlType::BF16 => run::<2, 1>(bytes, out, |b, y| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16)
        }),
        GgmlType::F64 => run::<8, 1>(bytes, out, |b, y| y[0] = f64::from_le_bytes(*b) as f32),
        GgmlType::I8 => run::<1, 1>(bytes, out, |b, y| y[0] = f32::from(b[0] as i8)),
        GgmlType::I16 => run::<2, 1>(bytes, out, |b, y| y[0] = f32::from(i16::from_le_bytes(*b))),
        GgmlType::I32 => run::<4, 1>(bytes, out, |b, y| y[0] = i32::from_le_bytes(*b) as f32),
        GgmlType::Q4_0 => run::<18, 32>(bytes, out, block_q4_0),
        GgmlType::Q4_1 => run::<20, 32>(bytes, out, block_q4_1),
        GgmlType::Q5_0 => run::<22, 32>(bytes, out, block_q5_0),
        GgmlType::Q5_1 => run::<24, 32>(bytes, out, block_q5_1),
        GgmlType::Q8_0 => run::<34, 32>(bytes, out, block_q8_0),
        GgmlType::Q2_K => run::<84, QK_K>(bytes, out, block_q2_k),
        GgmlType::Q3_K => run::<110, QK_K>(bytes, out, block_q3_k),
        GgmlType::Q4_K => run::<144, QK_K>(bytes, out, block_q4_k),
        GgmlType::Q5_K => run::<176, QK_K>(bytes, out, block_q5_k),
        GgmlType::Q6_K => run::<210, QK_K>(bytes, out, block_q6_k),
        GgmlType::Q8_K => run::<292, QK_K>(bytes, out, block_q8_k),
        GgmlType::IQ4_NL => run::<18, 32>(bytes, out, block_iq4_nl),
        GgmlType::IQ4_XS => run::<136, QK_K>(bytes, out, block_iq4_xs),
        other => {
            return Err(Error::UnsupportedDtype {
                path: "(buffer)".into(),
                name: "(buffer)".into(),
                dtype: format!("{other} (no dequantization kernel)"),
            });
        }
    }
    Ok(())
}

/// Applies `kernel` to every `TS`-byte block of `bytes`, writing `BS` floats per block.
///
/// The caller has checked that `bytes` holds exactly `out.len() / BS` blocks.
fn run<const TS: usize, const BS: usize>(
    bytes: &[u8],
    out: &mut [f32],
    kernel: fn(&[u8; TS], &mut [f32; BS]),
) {
    let (blocks, _) = bytes.as_chunks::<TS>();
    let (outs, _) = out.as_chunks_mut::<BS>();
    if outs.len() * BS >= PAR_MIN_ELEMENTS {
        let per_item = (PAR_CHUNK_ELEMENTS / BS).max(1);
        blocks
            .par_iter()
            .zip(outs.par_iter_mut())
            .with_min_len(per_item)
            .for_each(|(b, y)| kernel(b, y));
    } else {
        blocks
            .iter()
            .zip(outs.iter_mut())
            .for_each(|(b, y)| kernel(b, y));
    }
}

/// An f16 stored little-endian at `b[at..at + 2]`, widened to f32 (exact).
#[inline(always)]
fn f16_at<const N: usize>(b: &[u8; N], at: usize) -> f32 {
    f16::from_bits(u16::from(b[at]) | (u16::from(b[at + 1]) << 8)).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` from the 12 packed bytes.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `block_q4_0`: `d: f16, qs: [u8; 16]`.
fn block_q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// `block_q4_1`: `d: f16, m: f16, qs: [u8; 16]`.
fn block_q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for j in 0..16 {
        let q = b[4 + j];
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + 16] = f32::from(q >> 4) * d + m;
    }
}

/// `block_q5_0`: `d: f16, qh: [u8; 4], qs: [u8; 16]`.
fn block_q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        let q = b[6 + j];
        y[j] = (i32::from((q & 0x0F) | xh0) - 16) as f32 * d;
        y[j + 16] = (i32::from((q >> 4) | xh1) - 16) as f32 * d;
    }
}

/// `block_q5_1`: `d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]`.
fn block_q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        let q = b[8 + j];
        y[j] = f32::from((q & 0x0F) | xh0) * d + m;
        y[j + 16] = f32::from((q >> 4) | xh1) * d + m;
    }
}

/// `block_q8_0`: `d: f16, qs: [i8; 32]`.
fn block_q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = f32::from(b[2 + j] as i8) * d;
    }
}

/// `block_q2_K`: `scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16`.
fn block_q2_k(b: &[u8; 84], y: &mut [f32; QK_K]) {
    let (scales, rest) = b.split_at(16);
    let (qs, _) = rest.split_at(64);
    let d = f16_at(b, 80);
    let min = f16_at(b, 82);
    let mut out = 0;
    let mut is = 0;
    for n in 0..QK_K / 128 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0xF);
                let ml = min * f32::from(sc >> 4);
                for l in 0..16 {
                    y[out] = dl * f32::from((q[16 * half + l] >> shift) & 3) - ml;
                    out += 1;
                }
            }
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, unpacked from 12 bytes as ggml does.
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            out[4 * i + k] = *byte as i8;
        }
    }
    out
}

/// `block_q3_K`: `hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16`.
fn block_q3_k(b: &[u8; 110], y: &mut [f32; QK_K]) {
    let hm = &b[0..32];
    let qs = &b[32..96];
    let scales = q3_k_scales(&b[96..108]);
    let d_all = f16_at(b, 108);
    let mut out = 0;
    let mut is = 0;
    let mut m: u8 = 1;
    for n in 0..QK_K / 128 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * f32::from(i16::from(scales[is]) - 32);
                is += 1;
                for l in 0..16 {
                    let lo = i32::from((q[16 * half + l] >> shift) & 3);
                    let hi = if hm[16 * half + l] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (lo - hi) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// `block_q4_K`: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`.
fn block_q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for g in 0..QK_K / 64 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let q = &qs[32 * g..32 * g + 32];
        for l in 0..32 {
            y[64 * g + l] = d1 * f32::from(q[l] & 0xF) - m1;
            y[64 * g + 32 + l] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// `block_q5_K`: `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`.
fn block_q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for g in 0..QK_K / 64 {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        let q = &qs[32 * g..32 * g + 32];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * g + l] = d1 * f32::from((q[l] & 0xF) + h1) - m1;
            y[64 * g + 32 + l] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

/// `block_q6_K`: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`.
fn block_q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 208);
    for n in 0..QK_K / 128 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let yo = 128 * n;
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[yo + l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[yo + l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[yo + l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[yo + l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

/// `block_q8_K`: `d: f32, qs: [i8; 256], bsums: [i16; 16]`.
fn block_q8_k(b: &[u8; 292], y: &mut [f32; QK_K]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for j in 0..QK_K {
        y[j] = d * f32::from(b[4 + j] as i8);
    }
}

/// `block_iq4_nl`: `d: f16, qs: [u8; 16]`.
fn block_iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0xF)]);
        y[j + 16] = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
    }
}

/// `block_iq4_xs`: `d: f16, scales_h: u16, scales_l: [u8; 4], qs: [u8; 128]`.
fn block_iq4_xs(b: &[u8; 136], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let scales_l = &b[4..8];
    let qs = &b[8..136];
    for ib in 0..QK_K / 32 {
        let lo = i32::from((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF);
        let hi = i32::from((scales_h >> (2 * ib)) & 3);
        let dl = d * ((lo | (hi << 4)) - 32) as f32;
        let q = &qs[16 * ib..16 * ib + 16];
        for j in 0..16 {
            y[32 * ib + j] = dl * f32::from(KVALUES_IQ4NL[usize::from(q[j] & 0xF)]);
            y[32 * ib + j + 16] = dl * f32::from(KVALUES_IQ4NL[usize::from(q[j] >> 4)]);
        }
    }
}

#[cfg(test)]
#[path = "dequant_tests.rs"]
mod tests;

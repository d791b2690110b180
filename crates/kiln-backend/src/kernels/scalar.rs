//! Portable kernels and the dequantizer.

use super::{BLOCK, Input, Q8View, WeightFormat};

/// IEEE half → f32 in plain integer arithmetic (exact for every input, NaN payloads kept). `half`'s
/// conversion without F16C is a slow software routine; this one is a few instructions.
#[inline]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1F);
    let man = u32::from(h & 0x3FF);
    match exp {
        // Zero and subnormals: man · 2^-24, exactly representable.
        0 => f32::from_bits((man as f32 * (1.0 / 16_777_216.0)).to_bits() | sign),
        0x1F => f32::from_bits(sign | 0x7F80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

#[inline]
fn bf16_at(b: &[u8], i: usize) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes([b[i], b[i + 1]])) << 16)
}

#[inline]
fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Writes one row (`out.len()` elements) of `format` as f32.
pub(crate) fn dequantize(format: WeightFormat, row: &[u8], out: &mut [f32]) {
    match format {
        WeightFormat::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32_at(b, 0);
            }
        }
        WeightFormat::F16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = f16_at(b, 0);
            }
        }
        WeightFormat::BF16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = bf16_at(b, 0);
            }
        }
        WeightFormat::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(row.chunks_exact(18)) {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    let q = b[2 + j];
                    o[j] = (i32::from(q & 0x0F) - 8) as f32 * d;
                    o[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
                }
            }
        }
        WeightFormat::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(row.chunks_exact(20)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for j in 0..16 {
                    let q = b[4 + j];
                    o[j] = f32::from(q & 0x0F) * d + m;
                    o[j + 16] = f32::from(q >> 4) * d + m;
                }
            }
        }
        WeightFormat::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(row.chunks_exact(34)) {
                let d = f16_at(b, 0);
                for j in 0..BLOCK {
                    o[j] = f32::from(b[2 + j] as i8) * d;
                }
            }
        }
        WeightFormat::Nf4 => super::nf4::dequantize(row, out),
    }
}

/// `out[i] = row_i · input` for each row.
pub(crate) fn rows(
    format: WeightFormat,
    rows: &[u8],
    row_bytes: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
        *o = match input {
            Input::F32(x) => dot_float(format, row, x),
            Input::Q8(a) => dot_q8(format, row, a),
        };
    }
}

fn dot_float(format: WeightFormat, row: &[u8], x: &[f32]) -> f32 {
    // Eight independent partial sums, so the compiler may keep them in vector lanes.
    let mut acc = [0.0f32; 8];
    let width = match format {
        WeightFormat::F32 => 4,
        _ => 2,
    };
    let load = |b: &[u8]| match format {
        WeightFormat::F32 => f32_at(b, 0),
        WeightFormat::F16 => f16_at(b, 0),
        _ => bf16_at(b, 0),
    };
    let mut xc = x.chunks_exact(8);
    let mut wc = row.chunks_exact(8 * width);
    for (xs, ws) in (&mut xc).zip(&mut wc) {
        for k in 0..8 {
            acc[k] = load(&ws[k * width..]).mul_add(xs[k], acc[k]);
        }
    }
    let mut tail = 0.0f32;
    for (xv, wb) in xc
        .remainder()
        .iter()
        .zip(wc.remainder().chunks_exact(width))
    {
        tail = load(wb).mul_add(*xv, tail);
    }
    acc.iter().sum::<f32>() + tail
}

fn dot_q8(format: WeightFormat, row: &[u8], a: Q8View<'_>) -> f32 {
    let mut sum = 0.0f32;
    let xblocks = a.qs.chunks_exact(BLOCK).zip(a.d.iter().zip(a.s));
    match format {
        WeightFormat::Q4_0 => {
            for (b, (xq, (&dx, &sx))) in row.chunks_exact(18).zip(xblocks) {
                let d = f16_at(b, 0);
                let mut isum = 0i32;
                for j in 0..16 {
                    let q = b[2 + j];
                    isum += i32::from(q & 0x0F) * i32::from(xq[j])
                        + i32::from(q >> 4) * i32::from(xq[j + 16]);
                }
                // Σ (q - 8) x = Σ q x - 8 Σ x.
                sum += d * (dx * isum as f32 - 8.0 * sx);
            }
        }
        WeightFormat::Q4_1 => {
            for (b, (xq, (&dx, &sx))) in row.chunks_exact(20).zip(xblocks) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                let mut isum = 0i32;
                for j in 0..16 {
                    let q = b[4 + j];
                    isum += i32::from(q & 0x0F) * i32::from(xq[j])
                        + i32::from(q >> 4) * i32::from(xq[j + 16]);
                }
                sum += d * dx * isum as f32 + m * sx;
            }
        }
        WeightFormat::Q8_0 => {
            for (b, (xq, (&dx, _))) in row.chunks_exact(34).zip(xblocks) {
                let d = f16_at(b, 0);
                let mut isum = 0i32;
                for j in 0..BLOCK {
                    isum += i32::from(b[2 + j] as i8) * i32::from(xq[j]);
                }
                sum += d * dx * isum as f32;
            }
        }
        WeightFormat::F32 | WeightFormat::F16 | WeightFormat::BF16 | WeightFormat::Nf4 => {
            unreachable!("float and NF4 formats take f32 activations")
        }
    }
    sum
}

//! Dequantization tests against hand-built blocks.
//!
//! Each format gets a block assembled field by field, and the expected values are computed
//! element by element from the block layout in `ggml-common.h` (an indexing scheme independent of
//! the kernels' loops), plus a few values worked out by hand.

#![allow(clippy::needless_range_loop)] // element-wise reference formulas index by element

use half::f16;

use super::*;

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// A deterministic byte pattern.
fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

fn deq(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / ty.type_size() * ty.block_size();
    let mut out = vec![f32::NAN; n];
    dequantize_into(ty, bytes, &mut out).unwrap();
    out
}

fn scale_min_ref(j: usize, q: &[u8]) -> (f32, f32) {
    // 8 six-bit scales and 8 six-bit mins: scales 0-3 and mins 0-3 are the low 6 bits of bytes
    // 0-3 and 4-7; scales 4-7 are the low nibbles of bytes 8-11 with the top 2 bits of bytes 0-3,
    // mins 4-7 the high nibbles of bytes 8-11 with the top 2 bits of bytes 4-7.
    if j < 4 {
        (f32::from(q[j] & 63), f32::from(q[j + 4] & 63))
    } else {
        let k = j - 4;
        (
            f32::from((q[8 + k] & 15) | ((q[k] >> 6) << 4)),
            f32::from((q[8 + k] >> 4) | ((q[4 + k] >> 6) << 4)),
        )
    }
}

#[test]
fn plain_types() {
    assert_eq!(
        deq(GgmlType::F32, &[0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]),
        vec![1.0, -2.0]
    );
    assert_eq!(
        deq(GgmlType::F16, &[0x00, 0x3c, 0x00, 0xb8, 0x01, 0x00]),
        vec![1.0, -0.5, 5.960_464_5e-8]
    );
    assert_eq!(
        deq(GgmlType::BF16, &[0x80, 0x3f, 0x40, 0xc0]),
        vec![1.0, -3.0]
    );
    assert_eq!(deq(GgmlType::F64, &1.5f64.to_le_bytes()), vec![1.5]);
    assert_eq!(deq(GgmlType::I8, &[0xff, 7]), vec![-1.0, 7.0]);
    assert_eq!(deq(GgmlType::I16, &(-300i16).to_le_bytes()), vec![-300.0]);
    assert_eq!(deq(GgmlType::I32, &70000i32.to_le_bytes()), vec![70000.0]);
}

#[test]
fn q4_0_by_hand() {
    // d = 0.5; byte j = (hi << 4) | lo: element j = (lo - 8) * d, element j + 16 = (hi - 8) * d.
    let mut b = h(0.5).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(GgmlType::Q4_0, &b);
    assert_eq!(y[0], -4.0);
    assert_eq!(y[15], 3.5);
    assert_eq!(y[16], 3.5);
    assert_eq!(y[31], -4.0);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(y[16 + j], ((15 - j) as f32 - 8.0) * 0.5);
    }
}

#[test]
fn q4_1_by_hand() {
    let mut b = [h(0.25), h(-1.0)].concat();
    b.extend((0..16u8).map(|j| j | (3 << 4)));
    let y = deq(GgmlType::Q4_1, &b);
    assert_eq!(y[0], -1.0);
    assert_eq!(y[4], 0.0);
    assert_eq!(y[15], 2.75);
    assert!(y[16..].iter().all(|&v| v == -0.25));
}

#[test]
fn q5_0_by_hand() {
    // qh bit j is the 5th bit of element j; bit j + 16 of element j + 16.
    let qh: u32 = 0b1 | (1 << 17);
    let mut b = h(2.0).to_vec();
    b.extend(qh.to_le_bytes());
    b.extend([0x21u8; 16]); // lo nibble 1, hi nibble 2
    let y = deq(GgmlType::Q5_0, &b);
    assert_eq!(y[0], ((1 | 16) as f32 - 16.0) * 2.0); // 2
    assert_eq!(y[1], (1.0 - 16.0) * 2.0); // -30
    assert_eq!(y[16], (2.0 - 16.0) * 2.0); // -28
    assert_eq!(y[17], ((2 | 16) as f32 - 16.0) * 2.0); // 4
}

#[test]
fn q5_1_by_hand() {
    let qh: u32 = 1 << 31;
    let mut b = [h(1.0), h(0.5)].concat();
    b.extend(qh.to_le_bytes());
    b.extend([0xF0u8; 16]);
    let y = deq(GgmlType::Q5_1, &b);
    assert_eq!(y[0], 0.5);
    assert_eq!(y[16], 15.5);
    assert_eq!(y[31], 31.5);
}

#[test]
fn q8_0_by_hand() {
    let mut b = h(0.5).to_vec();
    b.extend((0..32).map(|j| (j as i8 - 16) as u8));
    let y = deq(GgmlType::Q8_0, &b);
    for (j, v) in y.iter().enumerate() {
        assert_eq!(*v, (j as f32 - 16.0) * 0.5);
    }
}

#[test]
fn generic_32_blocks_match_elementwise_layout() {
    for seed in 0..4 {
        let p = pattern(34, seed);
        // Q4_0
        let mut b = h(0.75).to_vec();
        b.extend(&p[..16]);
        let y = deq(GgmlType::Q4_0, &b);
        for i in 0..32 {
            let q = if i < 16 { p[i] & 15 } else { p[i - 16] >> 4 };
            assert_eq!(y[i], (i32::from(q) - 8) as f32 * 0.75);
        }
        // Q5_1
        let mut b = [h(0.125), h(-3.0)].concat();
        b.extend(&p[..20]);
        let y = deq(GgmlType::Q5_1, &b);
        let qh = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        for i in 0..32 {
            let lo = if i < 16 {
                p[4 + i] & 15
            } else {
                p[4 + i - 16] >> 4
            };
            let q = u32::from(lo) | (((qh >> i) & 1) << 4);
            assert_eq!(y[i], q as f32 * 0.125 + -3.0);
        }
        // IQ4_NL
        let mut b = h(0.5).to_vec();
        b.extend(&p[..16]);
        let y = deq(GgmlType::IQ4_NL, &b);
        for i in 0..32 {
            let q = if i < 16 { p[i] & 15 } else { p[i - 16] >> 4 };
            assert_eq!(y[i], 0.5 * f32::from(KVALUES_IQ4NL[q as usize]));
        }
    }
}

#[test]
fn q2_k_matches_elementwise_layout() {
    for seed in 0..4 {
        let p = pattern(80, seed);
        let b = [&p[..], &h(0.5), &h(0.25)].concat();
        let y = deq(GgmlType::Q2_K, &b);
        let (scales, qs) = p.split_at(16);
        for i in 0..256 {
            let (n, r) = (i / 128, i % 128);
            let (j, half, l) = (r / 32, (r % 32) / 16, r % 16);
            let q = (qs[32 * n + 16 * half + l] >> (2 * j)) & 3;
            let sc = scales[8 * n + 2 * j + half];
            let expect = 0.5 * f32::from(sc & 15) * f32::from(q) - 0.25 * f32::from(sc >> 4);
            assert_eq!(y[i], expect, "element {i}");
        }
    }
}

#[test]
fn q3_k_matches_elementwise_layout() {
    for seed in 0..4 {
        let p = pattern(108, seed);
        let b = [&p[..], &h(0.0625)].concat();
        let y = deq(GgmlType::Q3_K, &b);
        let (hmask, rest) = p.split_at(32);
        let (qs, sc) = rest.split_at(64);
        // 16 six-bit scales: low 4 bits from bytes 0-7 (low nibble for 0-7, high for 8-15), high 2
        // bits from bytes 8-11 (2 bits per scale, scale s uses byte 8 + s % 4, bits 2 * (s / 4)).
        let scale = |s: usize| -> i32 {
            let lo = if s < 8 { sc[s] & 15 } else { sc[s - 8] >> 4 };
            let hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
            i32::from(lo | (hi << 4)) - 32
        };
        for i in 0..256 {
            let (n, r) = (i / 128, i % 128);
            let (j, half, l) = (r / 32, (r % 32) / 16, r % 16);
            let lo = i32::from((qs[32 * n + 16 * half + l] >> (2 * j)) & 3);
            let high_set = hmask[16 * half + l] & (1 << (4 * n + j)) != 0;
            let q = lo - if high_set { 0 } else { 4 };
            let expect = 0.0625 * scale(8 * n + 2 * j + half) as f32 * q as f32;
            assert_eq!(y[i], expect, "element {i}");
        }
    }
}

#[test]
fn q4_k_and_q5_k_match_elementwise_layout() {
    for seed in 0..4 {
        let p = pattern(172, seed);
        let (d, dmin) = (0.03125f32, 0.5f32);
        let head = [h(d), h(dmin)].concat();
        // Q4_K
        let b4 = [&head[..], &p[..140]].concat();
        let y = deq(GgmlType::Q4_K, &b4);
        let (scales, qs) = p[..140].split_at(12);
        for i in 0..256 {
            let (g, w) = (i / 64, i % 64);
            let sub = 2 * g + w / 32;
            let byte = qs[32 * g + w % 32];
            let q = if w < 32 { byte & 15 } else { byte >> 4 };
            let (sc, m) = scale_min_ref(sub, scales);
            assert_eq!(y[i], d * sc * f32::from(q) - dmin * m, "q4_k element {i}");
        }
        // Q5_K
        let b5 = [&head[..], &p[..172]].concat();
        let y = deq(GgmlType::Q5_K, &b5);
        let (scales, rest) = p.split_at(12);
        let (qh, qs) = rest.split_at(32);
        for i in 0..256 {
            let (g, w) = (i / 64, i % 64);
            let sub = 2 * g + w / 32;
            let byte = qs[32 * g + w % 32];
            let lo = if w < 32 { byte & 15 } else { byte >> 4 };
            let hi = (qh[w % 32] >> sub) & 1;
            let (sc, m) = scale_min_ref(sub, scales);
            assert_eq!(
                y[i],
                d * sc * f32::from(lo + 16 * hi) - dmin * m,
                "q5_k element {i}"
            );
        }
    }
}

#[test]
fn q6_k_matches_elementwise_layout() {
    for seed in 0..4 {
        let p = pattern(208, seed);
        let d = 0.01f32;
        let b = [&p[..], &h(d)].concat();
        let dh = f16::from_f32(d).to_f32();
        let y = deq(GgmlType::Q6_K, &b);
        let (ql, rest) = p.split_at(128);
        let (qh, sc) = rest.split_at(64);
        for i in 0..256 {
            let (n, r) = (i / 128, i % 128);
            let (quarter, l) = (r / 32, r % 32);
            let lbyte = ql[64 * n + 32 * (quarter % 2) + l];
            let lo = if quarter < 2 { lbyte & 15 } else { lbyte >> 4 };
            let hi = (qh[32 * n + l] >> (2 * quarter)) & 3;
            let q = i32::from(lo | (hi << 4)) - 32;
            let s = sc[8 * n + l / 16 + 2 * quarter] as i8;
            assert_eq!(y[i], dh * f32::from(s) * q as f32, "element {i}");
        }
    }
}

#[test]
fn q8_k_and_iq4_xs_match_elementwise_layout() {
    let p = pattern(292, 7);
    let mut b = 0.25f32.to_le_bytes().to_vec();
    b.extend(&p[4..292]);
    let y = deq(GgmlType::Q8_K, &b);
    for i in 0..256 {
        assert_eq!(y[i], 0.25 * f32::from(p[4 + i] as i8));
    }

    let p = pattern(134, 9);
    let b = [&h(0.5)[..], &p[..]].concat();
    let y = deq(GgmlType::IQ4_XS, &b);
    let scales_h = u16::from_le_bytes([p[0], p[1]]);
    let (scales_l, qs) = p[2..].split_at(4);
    for i in 0..256 {
        let (ib, w) = (i / 32, i % 32);
        let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 15) as i32
            | ((((scales_h >> (2 * ib)) & 3) as i32) << 4);
        let byte = qs[16 * ib + w % 16];
        let q = if w < 16 { byte & 15 } else { byte >> 4 };
        assert_eq!(
            y[i],
            0.5 * (ls - 32) as f32 * f32::from(KVALUES_IQ4NL[q as usize])
        );
    }
}

#[test]
fn k_quant_hand_values() {
    // Q4_K with every sub-block scale 1 and min 0 (scales bytes 0-3 = 1, 4-7 = 0, 8-11 = 1):
    // y = d * q.
    let mut b = [h(0.5), h(1.0)].concat();
    b.extend([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
    b.extend([0x73u8; 128]);
    let y = deq(GgmlType::Q4_K, &b);
    assert_eq!(y[0], 1.5); // low nibble 3
    assert_eq!(y[32], 3.5); // high nibble 7
    assert_eq!(y[255], 3.5);

    // Q6_K with all quants 32 (ql 0, qh bits 2) gives 0; scale irrelevant.
    let mut b = vec![0u8; 128];
    b.extend([0xAAu8; 64]);
    b.extend([5u8; 16]);
    b.extend(h(1.0));
    assert!(deq(GgmlType::Q6_K, &b).iter().all(|&v| v == 0.0));
}

#[test]
fn parallel_path_matches_serial() {
    let blocks = (PAR_MIN_ELEMENTS / 32) + 7;
    let mut bytes = Vec::with_capacity(blocks * 18);
    for i in 0..blocks {
        bytes.extend(h((i % 13) as f32 * 0.125));
        bytes.extend(pattern(16, i as u32));
    }
    let all = deq(GgmlType::Q4_0, &bytes);
    for i in [0, 1, blocks / 2, blocks - 1] {
        let one = deq(GgmlType::Q4_0, &bytes[i * 18..(i + 1) * 18]);
        assert_eq!(&all[i * 32..(i + 1) * 32], &one[..]);
    }
}

#[test]
fn size_mismatch_and_unsupported_are_errors() {
    let mut out = vec![0.0; 32];
    let e = dequantize_into(GgmlType::Q4_0, &[0; 17], &mut out).unwrap_err();
    assert!(e.to_string().contains("expected 18 bytes"), "{e}");
    let mut out = vec![0.0; 31];
    assert!(dequantize_into(GgmlType::Q4_0, &[0; 18], &mut out).is_err());
    let mut out = vec![0.0; 256];
    let e = dequantize_into(GgmlType::IQ2_XXS, &[0; 66], &mut out).unwrap_err();
    assert!(matches!(e, Error::UnsupportedDtype { .. }), "{e}");
}

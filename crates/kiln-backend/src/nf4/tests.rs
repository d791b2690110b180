//! Unit tests of the NF4 quantizer; bit-exactness against bitsandbytes is in tests/nf4_bnb.rs.

use super::*;

#[test]
fn exact_code_values_round_trip() {
    let mut x = NF4_CODE.to_vec();
    x.extend(NF4_CODE.iter().map(|c| c * 0.5));
    x.resize(64, 0.0);
    let t = quantize(&x, &[64], 64, false).unwrap();
    for (i, want) in (0..16u8).enumerate() {
        assert_eq!(t.code(i), want);
    }
    let y = t.dequantize();
    assert_eq!(&y[..16], &NF4_CODE[..]);
}

#[test]
fn midpoint_ties_go_to_the_lower_code() {
    let mids = nf4_midpoints();
    for (i, &m) in mids.iter().enumerate() {
        assert_eq!(nf4_code(m, &mids), i as u8);
        assert_eq!(nf4_code(m.next_up(), &mids), i as u8 + 1);
    }
    assert_eq!(nf4_code(f32::NAN, &mids), 15);
    assert_eq!(nf4_code(0.0, &mids), 7);
}

#[test]
fn odd_lengths_pad_with_the_code_of_zero_and_store_high_nibble_first() {
    let t = quantize(&[1.0, -1.0, 1.0], &[3], 64, false).unwrap();
    assert_eq!(t.packed, vec![0xF0, 0xF7]);
    assert_eq!(t.absmax, Nf4Absmax::F32(vec![1.0]));
    assert_eq!(t.dequantize(), vec![1.0, -1.0, 1.0]);
}

#[test]
fn zero_blocks_store_zero_but_a_zero_tail_stores_the_clamp() {
    let t = quantize(&[0.0; 96], &[96], 64, false).unwrap();
    assert_eq!(t.absmax, Nf4Absmax::F32(vec![0.0, 1e-38]));
    assert!(t.packed.iter().all(|&b| b == 0x77));
    assert!(t.dequantize().iter().all(|&v| v == 0.0));
}

#[test]
fn double_quant_is_close_and_consistent() {
    let x: Vec<f32> = (0..64 * 300)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i / 64) as f32 * 0.01))
        .collect();
    let single = quantize(&x, &[300, 64], 64, false).unwrap();
    let double = quantize(&x, &[300, 64], 64, true).unwrap();
    double.validate().unwrap();
    let (a, b) = (single.absmax.to_f32(), double.absmax.to_f32());
    // The 8-bit dynamic map's step near ±1 is about 1.4% of the largest |absmax - offset|.
    let spread = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (s, d) in a.iter().zip(&b) {
        assert!((s - d).abs() < 0.015 * spread, "{s} vs {d}");
    }
    assert_eq!(single.packed, double.packed);
}

#[test]
fn torch_sum_is_exact_on_integers_and_ordered_on_cancellation() {
    for n in [1usize, 5, 8, 31, 64, 300, 5000] {
        let x: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
        let want: f32 = (0..n).map(|i| (i % 13) as f32).sum();
        assert_eq!(torch_sum(&x), want, "{n}");
    }
}

#[test]
fn errors_name_the_problem() {
    assert!(matches!(
        quantize(&[1.0; 64], &[64], 48, false),
        Err(Nf4Error::Blocksize(48))
    ));
    assert!(matches!(
        quantize(&[1.0; 63], &[64], 64, false),
        Err(Nf4Error::Shape { actual: 63, .. })
    ));
    assert!(matches!(
        quantize(&[], &[0, 4], 64, false),
        Err(Nf4Error::Empty(_))
    ));
    let mut t = quantize(&[1.0; 64], &[64], 64, false).unwrap();
    t.packed.pop();
    assert!(matches!(t.validate(), Err(Nf4Error::Inconsistent(_))));
}

#[test]
fn sixteen_bit_inputs_are_widened_first() {
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 7.0).collect();
    let bf: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let wide: Vec<f32> = bf.iter().map(|v| v.to_f32()).collect();
    let a = quantize_bf16(&bf, &[64], 64, true).unwrap();
    let b = quantize(&wide, &[64], 64, true).unwrap();
    assert_eq!(a.packed, b.packed);
    assert_eq!(a.absmax, b.absmax);
    assert_eq!(a.dtype, SourceDtype::BF16);
    let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    assert_eq!(
        quantize_f16(&h, &[64], 64, false).unwrap().dtype,
        SourceDtype::F16
    );
}

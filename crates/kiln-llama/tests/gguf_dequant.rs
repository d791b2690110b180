//! Dequantization against an independent implementation: gguf-py's numpy `gguf.quants.dequantize`
//! (llama.cpp's `gguf-py`), bit for bit.
//!
//! The expected values are hashes of gguf-py's output for (1) sixteen pseudo-random blocks of each
//! format, with the f16 scale fields set to small multiples of 0.25, and (2) real tensors of
//! SmolLM2-135M-Instruct.Q4_1.gguf (Q8_0, Q4_1, F32). The blocks are generated identically here (a
//! 64-bit LCG, top byte per step), so any difference in layout or arithmetic changes the hash. With
//! fully random f16 scales the outputs were also compared value by value and matched bit for bit.

use half::f16;
use kiln_llama::gguf::{GgmlType, GgufFile, dequantize_into};

/// Order-dependent hash of the f32 bit patterns (splitmix64 of bits + index, summed), the same
/// formula the expected values were computed with in numpy.
fn hash(values: &[f32]) -> u64 {
    values.iter().enumerate().fold(0u64, |acc, (i, v)| {
        let mut z =
            u64::from(v.to_bits()).wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        acc.wrapping_add(z ^ (z >> 31))
    })
}

fn lcg_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

#[test]
fn synthetic_blocks_match_gguf_py() {
    // (type, byte offsets of its f16 scale fields, expected hash)
    let cases: &[(GgmlType, &[usize], u64)] = &[
        (GgmlType::Q4_0, &[0], 0x5e37a7dc8ee13f3f),
        (GgmlType::Q4_1, &[0, 2], 0xb843ebdae26b6847),
        (GgmlType::Q5_0, &[0], 0x8f9fbf94ead9faeb),
        (GgmlType::Q5_1, &[0, 2], 0x0d03b5a394f20d38),
        (GgmlType::Q8_0, &[0], 0x6f055bf624017bb0),
        (GgmlType::Q2_K, &[80, 82], 0x6c234347f3415938),
        (GgmlType::Q3_K, &[108], 0xf5351985c74dbb88),
        (GgmlType::Q4_K, &[0, 2], 0xd63e2c96e1f02e38),
        (GgmlType::Q5_K, &[0, 2], 0x9036ce3e29efb142),
        (GgmlType::Q6_K, &[208], 0xa2f981acc8ff9f56),
        (GgmlType::IQ4_NL, &[0], 0x2bdf36dab8ea1094),
        (GgmlType::IQ4_XS, &[0], 0x6089167d56e2b4d8),
    ];
    let mut failures = Vec::new();
    for &(ty, f16_fields, expected) in cases {
        let (bs, ts, nblocks) = (ty.block_size(), ty.type_size(), 16);
        let mut raw = lcg_bytes(u64::from(ty.id()), nblocks * ts);
        for (k, block) in raw.chunks_exact_mut(ts).enumerate() {
            for (j, &o) in f16_fields.iter().enumerate() {
                let v = ((k * 3 + j) % 13) as f32 * 0.25 - 1.5;
                block[o..o + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        let mut out = vec![0f32; nblocks * bs];
        dequantize_into(ty, &raw, &mut out).unwrap();
        let got = hash(&out);
        if got != expected {
            failures.push(format!("{ty}: hash {got:#018x}, gguf-py {expected:#018x}"));
        }
    }
    assert!(
        failures.is_empty(),
        "dequantization differs from gguf-py:\n{}",
        failures.join("\n")
    );
}

#[test]
fn smollm2_tensors_match_gguf_py() {
    let path = kiln_llama::assets::asset(kiln_llama::assets::SMOLLM2_GGUF)
        .unwrap_or_else(|e| panic!("{e}"));
    let f = GgufFile::open(&path).unwrap();
    for (name, ty, shape, expected) in [
        (
            "token_embd.weight",
            GgmlType::Q8_0,
            vec![49152, 576],
            0x6a5458132d7ad97a_u64,
        ),
        (
            "blk.0.attn_q.weight",
            GgmlType::Q4_1,
            vec![576, 576],
            0xc79e4d523358f3e1,
        ),
        (
            "blk.29.ffn_down.weight",
            GgmlType::Q4_1,
            vec![576, 1536],
            0x770db8b835684cbf,
        ),
        (
            "blk.3.attn_norm.weight",
            GgmlType::F32,
            vec![576],
            0x955f4df109a3d5ff,
        ),
    ] {
        let info = f.tensor_info(name).unwrap();
        assert_eq!((info.ggml_type, info.shape()), (ty, shape), "{name}");
        let values = f.dequantize(name).unwrap();
        assert_eq!(
            hash(&values),
            expected,
            "{name}: dequantized values differ from gguf-py"
        );
    }
}

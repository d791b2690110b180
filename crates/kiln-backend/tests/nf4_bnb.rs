//! NF4 against bitsandbytes 0.50.2: the fixtures (tools/make_nf4_fixtures.py) hold bitsandbytes'
//! packed codes, absmax (plain or double-quantized), dequantized floats and state dict for several
//! inputs; Kiln must reproduce every byte and every f32 bit pattern.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_backend::nf4::{self, Nf4Absmax, Nf4Error, Nf4Tensor, RawDtype, RawTensor};
use safetensors::{Dtype, SafeTensors};

const CASES: [&str; 11] = [
    "normal_bs64",
    "normal_bs64_dq",
    "odd201_bs64",
    "odd201_bs64_dq",
    "ties_bs64",
    "ties_bs64_dq",
    "wide_bs128",
    "wide_bs128_dq",
    "straddle_3x96_bs64",
    "bf16_bs64_dq",
    "large300_bs64_dq",
];

struct Fixture {
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load(name: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/nf4")
            .join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, m) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = m.metadata().clone().unwrap_or_default();
        Self { bytes, meta }
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    fn raw(&self, key: &str) -> Option<RawTensor<'_>> {
        let st = self.st();
        let v = st.tensor(key).ok()?;
        let dtype = match v.dtype() {
            Dtype::U8 => RawDtype::U8,
            Dtype::F32 => RawDtype::F32,
            Dtype::F16 => RawDtype::F16,
            Dtype::BF16 => RawDtype::BF16,
            _ => RawDtype::Other,
        };
        let start = v.data().as_ptr() as usize - self.bytes.as_ptr() as usize;
        Some(RawTensor {
            dtype,
            shape: v.shape().to_vec(),
            data: &self.bytes[start..start + v.data().len()],
        })
    }

    fn bytes_of(&self, key: &str) -> Vec<u8> {
        self.st().tensor(key).unwrap().data().to_vec()
    }

    fn f32s(&self, key: &str) -> Vec<f32> {
        let st = self.st();
        let v = st.tensor(key).unwrap();
        assert_eq!(v.dtype(), Dtype::F32, "{key}");
        v.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn meta_usize(&self, key: &str) -> usize {
        self.meta[key].parse().unwrap()
    }

    fn shape(&self) -> Vec<usize> {
        serde_json::from_str(&self.meta["shape"]).unwrap()
    }

    /// Quantizes the fixture's input with Kiln.
    fn quantize(&self) -> Nf4Tensor {
        let bs = self.meta_usize("blocksize");
        let dq = self.meta["double_quant"] == "true";
        let shape = self.shape();
        let st = self.st();
        if let Ok(q) = st.tensor("input_q") {
            let scale = self.f32s("input_scale");
            let x: Vec<f32> = q
                .data()
                .iter()
                .enumerate()
                .map(|(i, &b)| f32::from(b as i8) * scale[i / 64])
                .collect();
            return nf4::quantize(&x, &shape, bs, dq).unwrap();
        }
        let input = st.tensor("input").unwrap();
        match input.dtype() {
            Dtype::BF16 => {
                let x: Vec<half::bf16> = input
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]))
                    .collect();
                nf4::quantize_bf16(&x, &shape, bs, dq).unwrap()
            }
            _ => nf4::quantize(&self.f32s("input"), &shape, bs, dq).unwrap(),
        }
    }
}

fn assert_bits(name: &str, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{name}: {what}[{i}] = {g:e}, bitsandbytes {w:e}"
        );
    }
}

#[test]
fn dynamic_map_matches_bitsandbytes() {
    let f = Fixture::load("normal_bs64_dq");
    assert_bits(
        "normal_bs64_dq",
        "nested_quant_map",
        &nf4::dynamic_map(),
        &f.f32s("w.weight.nested_quant_map"),
    );
    assert_bits(
        "normal_bs64_dq",
        "quant_map",
        &nf4::NF4_CODE,
        &f.f32s("w.weight.quant_map"),
    );
}

#[test]
fn quantize_is_bit_identical_to_bitsandbytes() {
    for name in CASES {
        let f = Fixture::load(name);
        let t = f.quantize();
        assert_eq!(t.packed, f.bytes_of("w.weight"), "{name}: packed codes");
        match &t.absmax {
            Nf4Absmax::F32(a) => assert_bits(name, "absmax", a, &f.f32s("w.weight.absmax")),
            Nf4Absmax::Double {
                codes,
                absmax2,
                offset,
                ..
            } => {
                assert_bits(name, "offset", &[*offset], &f.f32s("offset"));
                assert_eq!(
                    codes,
                    &f.bytes_of("w.weight.absmax"),
                    "{name}: nested codes"
                );
                assert_bits(
                    name,
                    "nested_absmax",
                    absmax2,
                    &f.f32s("w.weight.nested_absmax"),
                );
            }
        }
        assert_bits(
            name,
            "absmax (expanded)",
            &t.absmax.to_f32(),
            &f.f32s("absmax_f32"),
        );
        let start = f.meta_usize("dequant_start");
        let want = f.f32s("dequant");
        // bitsandbytes returns the dtype the weight had: for bf16, the f32 products rounded.
        let got: Vec<f32> = if f.meta["dtype"] == "bfloat16" {
            t.dequantize_bf16().iter().map(|v| v.to_f32()).collect()
        } else {
            t.dequantize()
        };
        assert_bits(name, "dequant", &got[start..start + want.len()], &want);
    }
}

#[test]
fn state_dict_reads_bitsandbytes_and_writes_it_back_byte_for_byte() {
    for name in CASES {
        let f = Fixture::load(name);
        let t = Nf4Tensor::from_state_dict("w.weight", |k| f.raw(k)).unwrap();
        assert_eq!(t, f.quantize(), "{name}: loaded vs quantized");
        assert_eq!(t.shape, f.shape(), "{name}");
        let entries = t.to_state_dict("w.weight");
        let st = f.st();
        let mut keys: Vec<&str> = st
            .names()
            .into_iter()
            .filter(|k| k.starts_with("w.weight"))
            .collect();
        keys.sort_unstable();
        let mut ours: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        ours.sort_unstable();
        assert_eq!(ours, keys, "{name}: keys");
        for (k, v) in &entries {
            let want = f.raw(k).unwrap();
            assert_eq!(v.dtype, want.dtype, "{name}: {k} dtype");
            assert_eq!(v.shape, want.shape, "{name}: {k} shape");
            assert_eq!(
                v.data,
                want.data,
                "{name}: {k} bytes ({:?})",
                String::from_utf8_lossy(&v.data)
            );
        }
    }
}

#[test]
fn state_dict_errors_name_the_key() {
    let f = Fixture::load("normal_bs64_dq");
    let err = Nf4Tensor::from_state_dict("w.weight", |k| {
        (k != "w.weight.nested_absmax").then(|| f.raw(k)).flatten()
    })
    .unwrap_err();
    assert!(
        matches!(&err, Nf4Error::MissingKey(k) if k == "w.weight.nested_absmax"),
        "{err}"
    );
    let err = Nf4Tensor::from_state_dict("w.weight", |k| {
        let mut t = f.raw(k)?;
        if k == "w.weight" {
            t.shape = vec![255, 1];
            t.data = &t.data[1..];
        }
        Some(t)
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("`w.weight` has shape [255, 1]"),
        "{err}"
    );
    let err = Nf4Tensor::from_state_dict("w.weight", |k| {
        let mut t = f.raw(k)?;
        if k == "w.weight.absmax" {
            t.dtype = RawDtype::F32;
        }
        Some(t)
    })
    .unwrap_err();
    assert!(matches!(err, Nf4Error::KeyDtype { .. }), "{err}");
    let err = Nf4Tensor::from_state_dict("w.weight", |k| {
        let mut t = f.raw(k)?;
        if k.ends_with("bitsandbytes__nf4") {
            t.data = b"{\"quant_type\": \"fp4\"}";
        }
        Some(t)
    })
    .unwrap_err();
    assert!(err.to_string().contains("fp4"), "{err}");
}

#[test]
fn matrices_from_bitsandbytes_tensors_hold_its_dequantized_weights() {
    use kiln_backend::kernels::{QuantMatrix, WeightFormat, matvec};
    for (name, format) in [
        ("normal_bs64_dq", WeightFormat::Nf4),
        ("wide_bs128", WeightFormat::Nf4),
        ("wide_bs128_dq", WeightFormat::Nf4),
        ("straddle_3x96_bs64", WeightFormat::F32),
    ] {
        let f = Fixture::load(name);
        let t = Nf4Tensor::from_state_dict("w.weight", |k| f.raw(k)).unwrap();
        let m = QuantMatrix::from_nf4(&t).unwrap();
        assert_eq!(m.format(), format, "{name}");
        let want = f.f32s("dequant");
        assert_bits(name, "matrix weights", &m.dequantize(), &want);
        let cols = m.cols();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let mut y = vec![0.0f32; m.rows()];
        matvec(&m, &x, &mut y);
        for (r, &yr) in y.iter().enumerate() {
            let row = &want[r * cols..(r + 1) * cols];
            let exact: f64 = row
                .iter()
                .zip(&x)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let abs: f64 = row
                .iter()
                .zip(&x)
                .map(|(&a, &b)| f64::from(a * b).abs())
                .sum();
            let bound = cols as f64 * f64::from(f32::EPSILON) * abs;
            assert!(
                (f64::from(yr) - exact).abs() <= bound,
                "{name} row {r}: {yr} vs {exact}"
            );
        }
    }
}

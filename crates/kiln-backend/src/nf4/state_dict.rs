//! The bitsandbytes state-dict form of an NF4 tensor (`QuantState.as_dict(packed=True)`), as
//! transformers saves a 4-bit `Linear` in a safetensors file:
//!
//! | key | dtype | shape |
//! |---|---|---|
//! | `<w>` | U8 | `[ceil(n/2), 1]` packed codes |
//! | `<w>.absmax` | F32 `[blocks]`, or U8 `[blocks]` under double quantization | |
//! | `<w>.quant_map` | F32 | `[16]`, the NF4 code book |
//! | `<w>.nested_absmax` | F32 | `[ceil(blocks / 256)]` (double quantization only) |
//! | `<w>.nested_quant_map` | F32 | `[256]` (double quantization only) |
//! | `<w>.quant_state.bitsandbytes__nf4` | U8 | UTF-8 JSON: `quant_type`, `blocksize`, `dtype`, `shape`, and `nested_blocksize`, `nested_dtype`, `nested_offset` |
//!
//! where `<w>` is the weight's key, e.g. `model.layers.0.mlp.down_proj.weight`. Only the packed form
//! (the one safetensors files hold) is read.

use serde_json::Value;

use super::{NF4_CODE, Nf4Absmax, Nf4Error, Nf4Tensor, SourceDtype};

/// The element type of a state-dict tensor (safetensors' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawDtype {
    /// `uint8`.
    U8,
    /// `float32`.
    F32,
    /// `float16`.
    F16,
    /// `bfloat16`.
    BF16,
    /// Anything else.
    Other,
}

/// A borrowed state-dict tensor: dtype, shape and little-endian bytes.
#[derive(Debug, Clone)]
pub struct RawTensor<'a> {
    /// Element type.
    pub dtype: RawDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// The bytes.
    pub data: &'a [u8],
}

/// An owned state-dict tensor, as [`Nf4Tensor::to_state_dict`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTensor {
    /// Element type.
    pub dtype: RawDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub data: Vec<u8>,
}

/// The suffix of the JSON blob's key.
const QS_SUFFIX: &str = ".quant_state.bitsandbytes__nf4";

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Python's `repr(float)` (what `json.dumps` writes): shortest round-trip digits, exponent form
/// when the decimal point is more than 4 places left or 16 places right.
fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let e = format!("{:e}", v.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp.parse::<i32>().unwrap_or(0) + 1;
    let nd = digits.len() as i32;
    let body = if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= nd {
            format!("{digits}{}.0", "0".repeat((decpt - nd) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        }
    } else {
        let frac = if nd > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let x = decpt - 1;
        format!(
            "{}{frac}e{}{:02}",
            &digits[..1],
            if x < 0 { '-' } else { '+' },
            x.abs()
        )
    };
    format!("{sign}{body}")
}

/// The raw text of the number after `"key":` in `json` (so that it is parsed with correct
/// rounding, not serde_json's best-effort float parser).
fn raw_number<'j>(json: &'j str, key: &str) -> Option<&'j str> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn parse_python_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

impl Nf4Tensor {
    /// The JSON that bitsandbytes packs into `quant_state.bitsandbytes__nf4`, byte for byte as
    /// Python's `json.dumps` writes it.
    #[must_use]
    pub fn quant_state_json(&self) -> String {
        let shape: Vec<String> = self.shape.iter().map(ToString::to_string).collect();
        let mut s = format!(
            "{{\"quant_type\": \"nf4\", \"blocksize\": {}, \"dtype\": \"{}\", \"shape\": [{}]",
            self.blocksize,
            self.dtype.torch_name(),
            shape.join(", ")
        );
        if let Nf4Absmax::Double {
            offset, blocksize2, ..
        } = &self.absmax
        {
            s += &format!(
                ", \"nested_blocksize\": {blocksize2}, \"nested_dtype\": \"float32\", \"nested_offset\": {}",
                python_float(f64::from(*offset))
            );
        }
        s.push('}');
        s
    }

    /// The state-dict entries bitsandbytes/transformers save for this tensor as the weight
    /// `weight_key` (e.g. `model.layers.0.mlp.down_proj.weight`), in bitsandbytes' order.
    #[must_use]
    pub fn to_state_dict(&self, weight_key: &str) -> Vec<(String, OwnedTensor)> {
        let t = |dtype, shape: Vec<usize>, data| OwnedTensor { dtype, shape, data };
        let mut out = vec![(
            weight_key.to_string(),
            t(
                RawDtype::U8,
                vec![self.packed.len(), 1],
                self.packed.clone(),
            ),
        )];
        let key = |s: &str| format!("{weight_key}.{s}");
        match &self.absmax {
            Nf4Absmax::F32(a) => {
                out.push((key("absmax"), t(RawDtype::F32, vec![a.len()], f32_bytes(a))));
            }
            Nf4Absmax::Double { codes, .. } => {
                out.push((
                    key("absmax"),
                    t(RawDtype::U8, vec![codes.len()], codes.clone()),
                ));
            }
        }
        out.push((
            key("quant_map"),
            t(RawDtype::F32, vec![16], f32_bytes(&NF4_CODE)),
        ));
        if let Nf4Absmax::Double {
            code_map, absmax2, ..
        } = &self.absmax
        {
            out.push((
                key("nested_absmax"),
                t(RawDtype::F32, vec![absmax2.len()], f32_bytes(absmax2)),
            ));
            out.push((
                key("nested_quant_map"),
                t(RawDtype::F32, vec![code_map.len()], f32_bytes(code_map)),
            ));
        }
        let json = self.quant_state_json().into_bytes();
        out.push((
            format!("{weight_key}{QS_SUFFIX}"),
            t(RawDtype::U8, vec![json.len()], json),
        ));
        out
    }

    /// Reads the tensor saved as weight `weight_key` from a state dict; `get` returns the tensor of
    /// a key, or `None` when absent.
    ///
    /// # Errors
    /// [`Nf4Error::MissingKey`], [`Nf4Error::KeyDtype`], [`Nf4Error::KeyShape`] naming the key,
    /// [`Nf4Error::QuantState`] for a malformed or non-NF4 JSON blob, [`Nf4Error::Blocksize`].
    pub fn from_state_dict<'a>(
        weight_key: &str,
        get: impl Fn(&str) -> Option<RawTensor<'a>>,
    ) -> Result<Self, Nf4Error> {
        let fetch = |key: &str, dtype: RawDtype| -> Result<RawTensor<'a>, Nf4Error> {
            let t = get(key).ok_or_else(|| Nf4Error::MissingKey(key.to_string()))?;
            if t.dtype != dtype {
                return Err(Nf4Error::KeyDtype {
                    key: key.to_string(),
                    expected: dtype,
                    actual: t.dtype,
                });
            }
            Ok(t)
        };
        let qs_key = format!("{weight_key}{QS_SUFFIX}");
        let qs_err = |msg: String| Nf4Error::QuantState {
            key: qs_key.clone(),
            msg,
        };
        let blob = fetch(&qs_key, RawDtype::U8)?;
        let json = std::str::from_utf8(blob.data).map_err(|e| qs_err(format!("not UTF-8: {e}")))?;
        let v: Value = serde_json::from_str(json).map_err(|e| qs_err(format!("bad JSON: {e}")))?;
        let field = |name: &str| v.get(name).ok_or_else(|| qs_err(format!("no `{name}`")));
        let uint = |name: &str| -> Result<usize, Nf4Error> {
            field(name)?
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| qs_err(format!("`{name}` is not a non-negative integer")))
        };
        match field("quant_type")?.as_str() {
            Some("nf4") => {}
            other => return Err(qs_err(format!("quant_type {other:?} is not \"nf4\""))),
        }
        let blocksize = uint("blocksize")?;
        let dtype = field("dtype")?
            .as_str()
            .and_then(SourceDtype::from_torch_name)
            .ok_or_else(|| qs_err("`dtype` is not float32, float16 or bfloat16".into()))?;
        let shape: Vec<usize> = field("shape")?
            .as_array()
            .ok_or_else(|| qs_err("`shape` is not a list".into()))?
            .iter()
            .map(|d| d.as_u64().and_then(|n| usize::try_from(n).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| qs_err("`shape` holds a non-integer".into()))?;
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| qs_err(format!("shape {shape:?} overflows")))?;
        if !super::BLOCKSIZES.contains(&blocksize) {
            return Err(Nf4Error::Blocksize(blocksize));
        }
        let blocks = n.div_ceil(blocksize);

        let shaped = |t: &RawTensor<'_>, key: &str, want: &[&[usize]], elem: usize| {
            let ok = want.iter().any(|w| t.shape == *w)
                && t.shape.iter().try_fold(elem, |a, &d| a.checked_mul(d)) == Some(t.data.len());
            if ok {
                Ok(())
            } else {
                Err(Nf4Error::KeyShape {
                    key: key.to_string(),
                    expected: format!("{:?}", want[0]),
                    actual: t.shape.clone(),
                    bytes: t.data.len(),
                })
            }
        };
        let read_f32 = |key: &str, len: usize| -> Result<Vec<f32>, Nf4Error> {
            let t = fetch(key, RawDtype::F32)?;
            shaped(&t, key, &[&[len]], 4)?;
            Ok(t.data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };

        let packed_t = fetch(weight_key, RawDtype::U8)?;
        let nbytes = n.div_ceil(2);
        shaped(&packed_t, weight_key, &[&[nbytes, 1], &[nbytes]], 1)?;
        let key = |s: &str| format!("{weight_key}.{s}");
        let qmap_key = key("quant_map");
        let qmap = read_f32(&qmap_key, 16)?;
        if qmap
            .iter()
            .zip(&NF4_CODE)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(Nf4Error::QuantState {
                key: qmap_key,
                msg: "is not the NF4 code book".into(),
            });
        }
        let absmax_key = key("absmax");
        let absmax = if v.get("nested_absmax").is_some() || v.get("nested_offset").is_some() {
            let blocksize2 = uint("nested_blocksize")?;
            if blocksize2 == 0 {
                return Err(qs_err("`nested_blocksize` is 0".into()));
            }
            match field("nested_dtype")?.as_str() {
                Some("float32") => {}
                other => return Err(qs_err(format!("nested_dtype {other:?} is not \"float32\""))),
            }
            let offset = raw_number(json, "nested_offset")
                .and_then(parse_python_float)
                .ok_or_else(|| qs_err("`nested_offset` is not a number".into()))?
                as f32;
            let codes_t = fetch(&absmax_key, RawDtype::U8)?;
            shaped(&codes_t, &absmax_key, &[&[blocks]], 1)?;
            Nf4Absmax::Double {
                codes: codes_t.data.to_vec(),
                code_map: read_f32(&key("nested_quant_map"), 256)?,
                absmax2: read_f32(&key("nested_absmax"), blocks.div_ceil(blocksize2))?,
                offset,
                blocksize2,
            }
        } else {
            Nf4Absmax::F32(read_f32(&absmax_key, blocks)?)
        };
        let t = Nf4Tensor {
            shape,
            blocksize,
            packed: packed_t.data.to_vec(),
            absmax,
            dtype,
        };
        t.validate()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        for (v, want) in [
            (3.074_858_427_047_729_5, "3.0748584270477295"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (-2.5, "-2.5"),
            (123.0, "123.0"),
        ] {
            assert_eq!(python_float(v), want);
        }
    }

    #[test]
    fn raw_number_finds_the_token() {
        let j = r#"{"a": 1, "nested_offset": -1.25e-05}"#;
        assert_eq!(raw_number(j, "nested_offset"), Some("-1.25e-05"));
        assert_eq!(raw_number(j, "b"), None);
    }
}

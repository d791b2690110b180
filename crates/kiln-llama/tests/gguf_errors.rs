//! Malformed GGUF files give clear errors naming the file and the problem, never a panic.
//!
//! Files are made with `GgufWriter`, then corrupted byte by byte at offsets computed from the GGUF
//! layout.

use std::path::{Path, PathBuf};

use kiln_llama::Error;
use kiln_llama::gguf::{GgmlType, GgufFile, GgufValue, GgufWriter, tokenizer_from_gguf};

/// The header is 24 bytes; with no metadata, tensor #0's info starts right after it.
const HEADER: usize = 24;
/// With no metadata and one tensor named `t` of 2 dims: name (8 + 1), n_dims (4), dims (16), then
/// the type and the offset.
const T_TYPE_AT: usize = HEADER + 9 + 4 + 16;
const T_OFFSET_AT: usize = T_TYPE_AT + 4;

fn one_tensor_file() -> GgufWriter {
    let mut w = GgufWriter::new();
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    w.tensor_f32("t", &[2, 32], &data, GgmlType::F32).unwrap();
    w
}

fn rich_file() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", "llama")
        .metadata("general.name", "tiny")
        .metadata("a.u8", GgufValue::U8(1))
        .metadata("a.i8", GgufValue::I8(-1))
        .metadata("a.u16", GgufValue::U16(2))
        .metadata("a.i16", GgufValue::I16(-2))
        .metadata("a.u32", GgufValue::U32(3))
        .metadata("a.i32", GgufValue::I32(-3))
        .metadata("a.u64", GgufValue::U64(4))
        .metadata("a.i64", GgufValue::I64(-4))
        .metadata("a.f32", GgufValue::F32(0.5))
        .metadata("a.f64", GgufValue::F64(0.25))
        .metadata("a.bool", true)
        .metadata("a.strings", vec!["x", "yz"])
        .metadata("a.floats", vec![1.0f32, 2.0]);
    let data: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
    for (name, ty) in [
        ("w.f32", GgmlType::F32),
        ("w.f16", GgmlType::F16),
        ("w.q8_0", GgmlType::Q8_0),
        ("w.q4_0", GgmlType::Q4_0),
        ("w.q4_1", GgmlType::Q4_1),
    ] {
        w.tensor_f32(name, &[2, 32], &data, ty).unwrap();
    }
    w
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// Opens `path`, which must fail; returns the error and checks its message names the file.
fn open_err(path: &Path) -> Error {
    let err = GgufFile::open(path).expect_err("opening a corrupt file must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
    err
}

fn assert_msg(err: &Error, needles: &[&str]) {
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
}

fn patch(bytes: &mut [u8], at: usize, with: &[u8]) {
    bytes[at..at + with.len()].copy_from_slice(with);
}

#[test]
fn valid_file_reads_back() {
    let s = Scratch::new();
    let path = s.dir.path().join("ok.gguf");
    rich_file().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u64("a.u8").unwrap(), 1);
    assert_eq!(f.get_u64("a.u64").unwrap(), 4);
    assert_eq!(f.get_f32("a.f64").unwrap(), 0.25);
    assert_eq!(f.get_f32("a.u32").unwrap(), 3.0);
    assert!(f.get_bool("a.bool").unwrap());
    assert_eq!(f.opt_str("nope").unwrap(), None);
    assert_eq!(f.get("a.i64"), Some(&GgufValue::I64(-4)));
    assert_eq!(
        f.get("a.strings")
            .and_then(|v| v.as_array())
            .map(|a| a.len()),
        Some(2)
    );
    let info = f.tensor_info("w.q4_1").unwrap();
    assert_eq!(
        (info.dims.as_slice(), info.shape(), info.ggml_type),
        (&[32u64, 2][..], vec![2, 32], GgmlType::Q4_1)
    );
    assert_eq!((info.n_elements(), info.n_bytes().unwrap()), (64, 40));
    assert_eq!(f.tensors().len(), 5);
    let exact: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
    assert_eq!(f.dequantize("w.f32").unwrap(), exact);
    for (name, tol) in [
        ("w.f16", 1e-3),
        ("w.q8_0", 1e-2),
        ("w.q4_0", 0.15),
        ("w.q4_1", 0.1),
    ] {
        let got = f.dequantize(name).unwrap();
        let err = got
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err <= tol, "{name}: max error {err}");
    }

    // Version 2 has the same layout.
    let mut w = rich_file();
    w.version(2);
    let p2 = s.write("v2.gguf", &w.to_bytes().unwrap());
    assert_eq!(GgufFile::open(&p2).unwrap().version(), 2);
}

#[test]
fn truncated_file_at_every_length_is_an_error() {
    let s = Scratch::new();
    let full = rich_file().to_bytes().unwrap();
    let path = s.write("full.gguf", &full);
    // The writer pads the file after the last tensor; cutting only that padding leaves a valid file.
    let f = GgufFile::open(&path).unwrap();
    let data_end = f
        .tensors()
        .iter()
        .map(|t| f.data_offset() as usize + t.offset as usize + t.n_bytes().unwrap())
        .max()
        .unwrap();
    assert!(data_end <= full.len());
    drop(f);
    let path = s.dir.path().join("truncated.gguf");
    // Every shorter prefix (the data section in coarser steps) must fail without panicking, saying
    // the file is truncated.
    let mut lengths: Vec<usize> = (0..1200.min(data_end)).collect();
    lengths.extend((1200..data_end).step_by(7));
    lengths.push(data_end - 1);
    for len in lengths {
        std::fs::write(&path, &full[..len]).unwrap();
        let err = open_err(&path);
        assert_msg(&err, &["truncated"]);
    }
    std::fs::write(&path, &full[..HEADER + 3]).unwrap();
    assert_msg(
        &open_err(&path),
        &["invalid GGUF", "implausible tensor count 5", "truncated"],
    );
    std::fs::write(&path, &full[..HEADER - 1]).unwrap();
    assert_msg(
        &open_err(&path),
        &["file is truncated", "the metadata count"],
    );
}

#[test]
fn wrong_magic() {
    let s = Scratch::new();
    let mut bytes = one_tensor_file().to_bytes().unwrap();
    patch(&mut bytes, 0, b"GGML");
    let path = s.write("magic.gguf", &bytes);
    assert_msg(&open_err(&path), &["not a GGUF file", "bad magic", "GGML"]);
    let path = s.write("text.gguf", b"hello, this is not a model");
    assert_msg(&open_err(&path), &["bad magic"]);
}

#[test]
fn unsupported_versions() {
    let s = Scratch::new();
    for (version, needle) in [
        (1u32, "unsupported GGUF version 1"),
        (4, "unsupported GGUF version 4"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut bytes = one_tensor_file().to_bytes().unwrap();
        patch(&mut bytes, 4, &version.to_le_bytes());
        let path = s.write("version.gguf", &bytes);
        assert_msg(&open_err(&path), &[needle]);
    }
}

#[test]
fn tensor_pointing_past_the_end() {
    let s = Scratch::new();
    for (offset, needle) in [
        (1u64 << 20, "extends past the end of the file"),
        (u64::MAX - 31, "extends past the end of the file"),
        (64, "extends past the end of the file"),
        (8, "not a multiple of the alignment 32"),
    ] {
        let mut bytes = one_tensor_file().to_bytes().unwrap();
        patch(&mut bytes, T_OFFSET_AT, &offset.to_le_bytes());
        let path = s.write("offset.gguf", &bytes);
        assert_msg(&open_err(&path), &["tensor `t`", needle]);
    }
    // Dimensions whose product overflows.
    let mut bytes = one_tensor_file().to_bytes().unwrap();
    patch(&mut bytes, HEADER + 13, &(1u64 << 40).to_le_bytes());
    patch(&mut bytes, HEADER + 21, &(1u64 << 40).to_le_bytes());
    let path = s.write("dims.gguf", &bytes);
    assert_msg(&open_err(&path), &["tensor `t`", "overflows"]);
}

#[test]
fn unsupported_ggml_type() {
    let s = Scratch::new();
    let mut bytes = one_tensor_file().to_bytes().unwrap();
    patch(&mut bytes, T_TYPE_AT, &99u32.to_le_bytes());
    let path = s.write("type.gguf", &bytes);
    let err = open_err(&path);
    assert!(
        matches!(err, Error::UnsupportedDtype { ref name, .. } if name == "t"),
        "{err:?}"
    );
    assert_msg(
        &err,
        &["tensor `t`", "unsupported type", "unknown ggml type id 99"],
    );

    // A type ggml knows but Kiln cannot dequantize opens, and dequantize names the tensor.
    let mut w = GgufWriter::new();
    w.tensor_raw(
        "iq",
        &[256],
        GgmlType::IQ2_XXS,
        vec![0; GgmlType::IQ2_XXS.type_size()],
    )
    .unwrap();
    let path = s.dir.path().join("iq.gguf");
    w.write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let err = f.dequantize("iq").unwrap_err();
    assert!(matches!(err, Error::UnsupportedDtype { .. }), "{err:?}");
    assert_msg(
        &err,
        &[&path.display().to_string(), "tensor `iq`", "IQ2_XXS"],
    );
    assert_eq!(f.tensor_bytes("iq").unwrap().len(), 66);
}

#[test]
fn huge_string_and_array_lengths() {
    let s = Scratch::new();
    let mut w = GgufWriter::new();
    w.metadata("general.name", "x");
    let mut bytes = w.to_bytes().unwrap();
    // The first key's length.
    patch(&mut bytes, HEADER, &(u64::MAX / 2).to_le_bytes());
    let path = s.write("string.gguf", &bytes);
    assert_msg(
        &open_err(&path),
        &[
            "string length 9223372036854775807",
            "metadata key #0",
            "exceeds",
        ],
    );

    // A string value's length: after key (8 + 12) and type (4).
    let mut bytes = w.to_bytes().unwrap();
    patch(&mut bytes, HEADER + 8 + 12 + 4, &u64::MAX.to_le_bytes());
    let path = s.write("value.gguf", &bytes);
    assert_msg(
        &open_err(&path),
        &[
            "string length 18446744073709551615",
            "metadata `general.name`",
        ],
    );

    // An array's length: after key (8 + 9), type (4), element type (4).
    let mut w = GgufWriter::new();
    w.metadata("a.floats", vec![1.0f32, 2.0]);
    let mut bytes = w.to_bytes().unwrap();
    patch(
        &mut bytes,
        HEADER + 8 + 8 + 4 + 4,
        &(1u64 << 61).to_le_bytes(),
    );
    let path = s.write("array.gguf", &bytes);
    assert_msg(
        &open_err(&path),
        &["array length 2305843009213693952", "metadata `a.floats`"],
    );

    // A huge tensor count.
    let mut bytes = one_tensor_file().to_bytes().unwrap();
    patch(&mut bytes, 8, &u64::MAX.to_le_bytes());
    let path = s.write("count.gguf", &bytes);
    assert_msg(&open_err(&path), &["implausible tensor count"]);
}

#[test]
fn duplicates_and_bad_values() {
    let s = Scratch::new();
    // Two tensors `a` and `b`, then `b` renamed to `a`.
    let mut w = GgufWriter::new();
    w.tensor_f32("a", &[32], &[0.0; 32], GgmlType::F32).unwrap();
    w.tensor_f32("b", &[32], &[0.0; 32], GgmlType::F32).unwrap();
    let mut bytes = w.to_bytes().unwrap();
    let second_name = HEADER + (8 + 1 + 4 + 8 + 4 + 8) + 8;
    assert_eq!(bytes[second_name], b'b');
    bytes[second_name] = b'a';
    let path = s.write("dup.gguf", &bytes);
    assert_msg(&open_err(&path), &["duplicate tensor name `a`"]);

    // Two keys, the second renamed to the first.
    let mut w = GgufWriter::new();
    w.metadata("k1", GgufValue::U8(1))
        .metadata("k2", GgufValue::U8(2));
    let mut bytes = w.to_bytes().unwrap();
    let second_key = HEADER + (8 + 2 + 4 + 1) + 8 + 1;
    assert_eq!(bytes[second_key], b'2');
    bytes[second_key] = b'1';
    let path = s.write("dupkey.gguf", &bytes);
    assert_msg(&open_err(&path), &["duplicate metadata key `k1`"]);

    // An unknown value type and an invalid bool.
    let mut bytes = w.to_bytes().unwrap();
    patch(&mut bytes, HEADER + 8 + 2, &77u32.to_le_bytes());
    let path = s.write("vtype.gguf", &bytes);
    assert_msg(
        &open_err(&path),
        &["metadata `k1`", "unknown value type 77"],
    );
    let mut w = GgufWriter::new();
    w.metadata("b", true);
    let mut bytes = w.to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] = 7;
    let path = s.write("bool.gguf", &bytes);
    assert_msg(&open_err(&path), &["metadata `b`", "invalid bool byte 7"]);
}

#[test]
fn missing_tensor_and_metadata_lookups() {
    let s = Scratch::new();
    let path = s.dir.path().join("ok.gguf");
    rich_file().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let file = path.display().to_string();

    let err = f.tensor_bytes("nope.weight").unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }), "{err:?}");
    assert_msg(&err, &[&file, "missing tensor `nope.weight`"]);
    assert!(matches!(
        f.dequantize("nope.weight"),
        Err(Error::MissingTensor { .. })
    ));
    assert!(f.tensor_info("nope.weight").is_none());

    let err = f.get_u64("general.name").unwrap_err();
    assert!(matches!(err, Error::Metadata { .. }), "{err:?}");
    assert_msg(
        &err,
        &[
            &file,
            "`general.name`",
            "expected a non-negative integer",
            "string",
        ],
    );
    assert_msg(&f.get_u64("a.i8").unwrap_err(), &["`a.i8`", "i8 -1"]);
    assert_msg(
        &f.get_str("llama.block_count").unwrap_err(),
        &["`llama.block_count`", "missing"],
    );
    assert_msg(
        &f.opt_bool("a.strings").unwrap_err(),
        &["`a.strings`", "array of 2 items"],
    );
    assert_eq!(f.opt_u64("llama.block_count").unwrap(), None);
}

#[test]
fn tokenizer_metadata_errors() {
    let s = Scratch::new();
    let path = s.dir.path().join("tok.gguf");
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.model", "bert")
        .metadata("tokenizer.ggml.tokens", vec!["a", "b"]);
    w.write(&path).unwrap();
    let err = tokenizer_from_gguf(&GgufFile::open(&path).unwrap()).unwrap_err();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err:?}");
    assert_msg(
        &err,
        &[
            &path.display().to_string(),
            "unsupported tokenizer.ggml.model `bert`",
        ],
    );

    w.metadata("tokenizer.ggml.model", "gpt2")
        .metadata("tokenizer.ggml.pre", "no-such-pre")
        .metadata("tokenizer.ggml.merges", vec!["a b"]);
    w.write(&path).unwrap();
    let err = tokenizer_from_gguf(&GgufFile::open(&path).unwrap()).unwrap_err();
    assert_msg(&err, &["unknown tokenizer.ggml.pre `no-such-pre`"]);

    w.metadata("tokenizer.ggml.pre", "gpt-2")
        .metadata("tokenizer.ggml.bos_token_id", GgufValue::U32(5));
    w.write(&path).unwrap();
    let err = tokenizer_from_gguf(&GgufFile::open(&path).unwrap()).unwrap_err();
    assert_msg(&err, &["tokenizer.ggml.bos_token_id", "out of range"]);

    let mut w = GgufWriter::new();
    w.metadata("general.architecture", "llama");
    w.write(&path).unwrap();
    let err = tokenizer_from_gguf(&GgufFile::open(&path).unwrap()).unwrap_err();
    assert_msg(&err, &["tokenizer.ggml.model", "missing"]);
}

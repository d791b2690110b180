//! File helpers: float tensors out of safetensors views, and atomic writes.

use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::{Error, Result};

/// The elements of an F32, F16 or BF16 tensor as `f32`.
pub(crate) fn read_f32(view: &TensorView<'_>) -> std::result::Result<Vec<f32>, String> {
    let data = view.data();
    let out = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => return Err(format!("dtype {other:?} is not a float type")),
    };
    Ok(out)
}

/// Serialises `(name, shape, little-endian f32 bytes)` triples as a safetensors file with PEFT's
/// `{"format": "pt"}` metadata, and the `extra` metadata entries.
///
/// The header is written here rather than by `safetensors::serialize`, whose metadata is a
/// `HashMap`: with more than one entry its order (and so the file's bytes) changed from process to
/// process. Here the metadata keys and the tensors are sorted by name, and the header is padded
/// with spaces to a multiple of 8 bytes, as safetensors does, so the same adapter is always the
/// same bytes.
pub(crate) fn serialize_f32_with(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    what: &str,
    extra: &[(&str, String)],
) -> Result<Vec<u8>> {
    let mut sorted: Vec<&(String, Vec<usize>, Vec<u8>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut meta = std::collections::BTreeMap::from([("format".to_string(), "pt".to_string())]);
    for (k, v) in extra {
        meta.insert((*k).to_string(), v.clone());
    }
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0usize;
    for (name, shape, bytes) in &sorted {
        let n: usize = shape.iter().product();
        if n * 4 != bytes.len() {
            return Err(Error::Invalid(format!(
                "{what}: tensor `{name}`: shape {shape:?} needs {} bytes, got {}",
                n * 4,
                bytes.len()
            )));
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut head =
        serde_json::to_vec(&header).map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, bytes) in sorted {
        out.extend_from_slice(bytes);
    }
    // The file must read back (names, shapes, offsets) before anything is written.
    safetensors::SafeTensors::deserialize(&out)
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and renamed,
/// so readers see the old file or the new one, never a partial one.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    kiln_core::fs::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_is_the_same_bytes_every_time_and_reads_back() {
        let tensors = vec![
            (
                "b.weight".to_string(),
                vec![1, 2],
                [1f32, 2.0].map(f32::to_le_bytes).concat(),
            ),
            ("a.weight".to_string(), vec![1], 3f32.to_le_bytes().to_vec()),
        ];
        let one =
            serialize_f32_with(&tensors, "t", &[("x", "1".into()), ("y", "2".into())]).unwrap();
        let two =
            serialize_f32_with(&tensors, "t", &[("y", "2".into()), ("x", "1".into())]).unwrap();
        assert_eq!(one, two);
        let header_len = u64::from_le_bytes(one[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&one).unwrap();
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!((m["format"].as_str(), m["x"].as_str()), ("pt", "1"));
        let st = safetensors::SafeTensors::deserialize(&one).unwrap();
        let b = st.tensor("b.weight").unwrap();
        assert_eq!(b.shape(), [1, 2]);
        assert_eq!(read_f32(&b).unwrap(), [1.0, 2.0]);
        let bad = vec![("c".to_string(), vec![3], vec![0u8; 4])];
        assert!(serialize_f32_with(&bad, "t", &[]).is_err());
    }
}

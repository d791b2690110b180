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
pub(crate) fn serialize_f32_with(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    what: &str,
    extra: &[(&str, String)],
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Invalid(format!("{what}: tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    for (k, v) in extra {
        meta.insert((*k).to_string(), v.clone());
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Invalid(format!("{what}: {e}")))
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and renamed,
/// so readers see the old file or the new one, never a partial one.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    kiln_core::fs::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

//! A small GGUF writer, for tests and fixtures: synthetic models, tokenizer vocabularies, corrupt
//! files.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::quantize::quantize;
use super::reader::{GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::types::GgmlType;
use super::value::{GgufValue, type_id};
use crate::error::{Error, Result};

/// Builds a GGUF file in memory and writes it atomically.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kiln_llama::gguf::{GgmlType, GgufValue, GgufWriter};
/// let mut w = GgufWriter::new();
/// w.metadata("general.architecture", "llama").metadata("llama.block_count", GgufValue::U32(1));
/// w.tensor_f32("token_embd.weight", &[4, 32], &[0.5; 128], GgmlType::Q8_0)?;
/// w.write("/tmp/tiny.gguf")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    /// GGUF order (`ne[0]` first).
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: GGUF_DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the format version written in the header (2 and 3 share a layout; other values make
    /// files that readers must reject, which tests use).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets the data alignment (a power of two) and records it as `general.alignment` (u32).
    pub fn alignment(&mut self, alignment: u32) -> Result<&mut Self> {
        if !alignment.is_power_of_two() {
            return Err(Error::Invalid(format!(
                "GGUF alignment must be a power of two, got {alignment}"
            )));
        }
        self.alignment = u64::from(alignment);
        Ok(self.metadata("general.alignment", GgufValue::U32(alignment)))
    }

    /// Sets metadata `key` (replacing an earlier value, keeping its position).
    pub fn metadata(&mut self, key: impl Into<String>, value: impl Into<GgufValue>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds tensor `name` with PyTorch-order `shape` (`[rows, cols]`, `cols` contiguous) from
    /// row-major `data`, stored as `ty`, quantized as ggml's reference quantizers do.
    ///
    /// `ty` may be F32, F16, BF16, Q8_0, Q4_0 or Q4_1; quantized types need the last dimension to be a
    /// multiple of 32. [`Error::Invalid`] on a length mismatch, an unsupported type or a duplicate
    /// name.
    pub fn tensor_f32(
        &mut self,
        name: &str,
        shape: &[usize],
        data: &[f32],
        ty: GgmlType,
    ) -> Result<&mut Self> {
        let n = element_count(name, shape)?;
        if data.len() != n {
            return Err(Error::Invalid(format!(
                "tensor `{name}`: shape {shape:?} has {n} elements but {} values were given",
                data.len()
            )));
        }
        let ne0 = shape.last().copied().unwrap_or(1);
        if !ne0.is_multiple_of(ty.block_size()) {
            return Err(Error::Invalid(format!(
                "tensor `{name}`: last dimension {ne0} is not a multiple of the {ty} block size {}",
                ty.block_size()
            )));
        }
        let bytes =
            quantize(ty, data).map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))?;
        self.tensor_raw(name, shape, ty, bytes)
    }

    /// Adds tensor `name` with PyTorch-order `shape` whose data is already encoded as `ty`
    /// (`bytes` must be exactly the tensor's size).
    pub fn tensor_raw(
        &mut self,
        name: &str,
        shape: &[usize],
        ty: GgmlType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::Invalid(format!("duplicate tensor `{name}`")));
        }
        let n = element_count(name, shape)?;
        let ne0 = shape.last().copied().unwrap_or(1);
        let expected = if ne0.is_multiple_of(ty.block_size()) {
            ty.bytes_for(n)
        } else {
            None
        };
        if expected != Some(bytes.len()) {
            return Err(Error::Invalid(format!(
                "tensor `{name}`: {} bytes do not hold a {ty} tensor of shape {shape:?}",
                bytes.len()
            )));
        }
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims,
            ty,
            data: bytes,
        });
        Ok(self)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut out, key, value, false)?;
        }
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = align(offset + t.data.len() as u64);
        }
        let data_start = align(out.len() as u64);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        if !self.tensors.is_empty() {
            out.resize(align(out.len() as u64) as usize, 0);
        }
        Ok(out)
    }

    /// Writes the file to `path` atomically: to a temporary file in the same directory, then
    /// renamed over `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let tmp = path.with_file_name(format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, key: &str, value: &GgufValue, in_array: bool) -> Result<()> {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(_) if in_array => {
            return Err(Error::Invalid(format!(
                "metadata `{key}`: GGUF arrays cannot nest"
            )));
        }
        GgufValue::Array(items) => {
            // An empty array has no element to take the type from; it is written as `u8[]`.
            let elem = items.first().map_or(type_id::U8, GgufValue::type_id);
            if let Some(bad) = items.iter().find(|v| v.type_id() != elem) {
                return Err(Error::Invalid(format!(
                    "metadata `{key}`: array mixes {} and {}",
                    super::value::type_name(elem),
                    bad.type_name()
                )));
            }
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, key, item, true)?;
            }
        }
    }
    Ok(())
}

/// The number of elements of `shape`, or [`Error::Invalid`] if it overflows.
fn element_count(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::Invalid(format!("tensor `{name}`: shape {shape:?} overflows")))
}

//! Opening and validating GGUF files (versions 2 and 3, little-endian).
//!
//! Layout (gguf-py `gguf_reader.py`, ggml `gguf.cpp`): magic `"GGUF"`, `u32` version, `u64` tensor
//! count, `u64` metadata count, the metadata key/value pairs, the tensor infos (name, `u32` number
//! of dimensions, `u64` dimensions with `ne[0]` first, `u32` ggml type, `u64` offset into the data
//! section), padding to `general.alignment` (default 32), then the tensor data.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;

use super::types::GgmlType;
use super::value::{GgufValue, type_id, type_name};
use crate::error::{Error, Result};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of the data section when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor can have.
pub const GGML_MAX_DIMS: usize = 4;

/// Upper bounds that reject corrupt headers before they cause huge allocations.
const MAX_TENSORS: u64 = 1 << 24;
const MAX_KV: u64 = 1 << 24;
const MAX_ALIGNMENT: u64 = 1 << 20;

/// One tensor's entry in a GGUF file's tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor name (`"blk.0.attn_q.weight"`).
    pub name: String,
    /// The dimensions in GGUF (ggml) order: `dims[0]` is `ne[0]`, the contiguous one.
    pub dims: Vec<u64>,
    /// The storage type.
    pub ggml_type: GgmlType,
    /// The offset of the data, relative to the start of the file's data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The shape in PyTorch order (`dims` reversed): a matrix is `[rows, cols]` with `cols`
    /// contiguous. Dimensions that do not fit in `usize` saturate (they cannot occur in a file
    /// [`GgufFile::open`] accepted).
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// The number of elements (the product of the dimensions; 1 for a scalar). Saturates on
    /// overflow, which [`GgufFile::open`] rules out for the tensors it returns.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().fold(1usize, |acc, &d| {
            acc.saturating_mul(usize::try_from(d).unwrap_or(usize::MAX))
        })
    }

    /// The size of the tensor's data in bytes. Fails ([`Error::Invalid`]) when the element count
    /// overflows or `ne[0]` is not a whole number of the type's blocks.
    pub fn n_bytes(&self) -> Result<usize> {
        let mut n: usize = 1;
        for &d in &self.dims {
            n = usize::try_from(d)
                .ok()
                .and_then(|d| n.checked_mul(d))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "tensor `{}`: element count of dims {:?} overflows",
                        self.name, self.dims
                    ))
                })?;
        }
        let bs = self.ggml_type.block_size() as u64;
        let ne0 = self.dims.first().copied().unwrap_or(1);
        if !ne0.is_multiple_of(bs) {
            return Err(Error::Invalid(format!(
                "tensor `{}`: ne[0] = {ne0} is not a multiple of the {} block size {bs}",
                self.name, self.ggml_type
            )));
        }
        self.ggml_type.bytes_for(n).ok_or_else(|| {
            Error::Invalid(format!(
                "tensor `{}`: byte size of dims {:?} overflows",
                self.name, self.dims
            ))
        })
    }
}

/// A memory-mapped, validated GGUF file.
///
/// [`GgufFile::open`] parses the header and checks it thoroughly (see there); afterwards every
/// accessor is panic-free, and tensor data is borrowed straight from the mapping. As with any
/// memory map, the file must not be modified while it is open.
pub struct GgufFile {
    path: PathBuf,
    mmap: Arc<Mmap>,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens, maps and validates a GGUF file (version 2 or 3, little-endian).
    ///
    /// Checks: the magic, the version, plausible tensor/metadata counts, every string and array
    /// length against the bytes left, value types, no duplicate keys or tensor names, at most 4
    /// dimensions whose element count does not overflow, known ggml types
    /// ([`Error::UnsupportedDtype`] otherwise) with `ne[0]` a whole number of blocks, a power-of-two
    /// `general.alignment`, aligned tensor offsets, and every tensor's data inside the file.
    /// Failures are [`Error::Gguf`] naming the file and what was being read; a truncated file says
    /// so.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(gguf_err(path, "not a regular file"));
        }
        if meta.len() == 0 {
            return Err(gguf_err(path, "the file is empty (truncated?)"));
        }
        // SAFETY: the map is read-only and private to this value; as documented on `GgufFile`, the
        // file must not be modified while it is open (the usual memory-map caveat).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = parse(path, &mmap)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            version: header.version,
            metadata: header.metadata,
            index: header
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data-section alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The absolute file offset where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// The metadata value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn meta_err(&self, key: &str, message: impl Into<String>) -> Error {
        Error::Metadata {
            path: self.path.display().to_string(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        f: impl Fn(&'a GgufValue) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| match v {
                GgufValue::Array(items) => self.meta_err(
                    key,
                    format!("expected {want}, found an array of {} items", items.len()),
                ),
                _ => self.meta_err(key, format!("expected {want}, found {} {v}", v.type_name())),
            }),
        }
    }

    fn required<T>(&self, key: &str, v: Result<Option<T>>) -> Result<T> {
        v?.ok_or_else(|| self.meta_err(key, "missing"))
    }

    /// A non-negative integer of any integer type. [`Error::Metadata`] when missing or not one.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.required(key, self.opt_u64(key))
    }

    /// A float (`f32`, `f64`, or an integer). [`Error::Metadata`] when missing or not one.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.required(key, self.opt_f32(key))
    }

    /// A string. [`Error::Metadata`] when missing or not one.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.required(key, self.opt_str(key))
    }

    /// A bool. [`Error::Metadata`] when missing or not one.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.required(key, self.opt_bool(key))
    }

    /// Like [`GgufFile::get_u64`], but `Ok(None)` when the key is absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", GgufValue::as_u64)
    }

    /// Like [`GgufFile::get_f32`], but `Ok(None)` when the key is absent.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", GgufValue::as_f32)
    }

    /// Like [`GgufFile::get_str`], but `Ok(None)` when the key is absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", GgufValue::as_str)
    }

    /// Like [`GgufFile::get_bool`], but `Ok(None)` when the key is absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", GgufValue::as_bool)
    }

    /// An array value. [`Error::Metadata`] when missing or not an array.
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue]> {
        self.required(key, self.typed(key, "an array", GgufValue::as_array))
    }

    /// `general.architecture` (`"llama"`).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    fn tensor_or_missing(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensor_info(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.display().to_string(),
            name: name.to_owned(),
        })
    }

    /// The shared memory map and the byte range of tensor `name` in it, so that a tensor can be used
    /// in place (no copy) for as long as the caller keeps the map alive.
    ///
    /// # Errors
    /// [`Error::MissingTensor`], or a range outside the file.
    pub fn tensor_range(&self, name: &str) -> Result<(Arc<Mmap>, Range<usize>)> {
        let bytes = self.tensor_bytes(name)?;
        let start = bytes.as_ptr() as usize - self.mmap.as_ptr() as usize;
        Ok((Arc::clone(&self.mmap), start..start + bytes.len()))
    }

    /// The raw bytes of tensor `name`, borrowed from the mapping. [`Error::MissingTensor`] when
    /// there is no such tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensor_or_missing(name)?;
        let n_bytes = info
            .n_bytes()
            .map_err(|e| gguf_err(&self.path, e.to_string()))?;
        let range = tensor_range(self.data_offset, info.offset, n_bytes);
        range
            .and_then(|(start, end)| self.mmap.get(start..end))
            .ok_or_else(|| {
                gguf_err(
                    &self.path,
                    format!("tensor `{name}`: data lies outside the file (truncated?)"),
                )
            })
    }

    /// Tensor `name` converted to `f32`, row-major in [`GgufTensorInfo::shape`] order.
    ///
    /// [`Error::MissingTensor`] when absent; [`Error::UnsupportedDtype`] naming the tensor when its
    /// type has no dequantization kernel (see [`GgmlType::can_dequantize`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor_or_missing(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(Error::UnsupportedDtype {
                path: self.path.display().to_string(),
                name: name.to_owned(),
                dtype: info.ggml_type.name().to_owned(),
            });
        }
        let bytes = self.tensor_bytes(name)?;
        let mut out = vec![0f32; info.n_elements()];
        super::dequant::dequantize_into(info.ggml_type, bytes, &mut out)
            .map_err(|e| gguf_err(&self.path, format!("tensor `{name}`: {e}")))?;
        Ok(out)
    }
}

fn gguf_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Gguf {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// `[start, end)` of a tensor's data in the file, if it does not overflow.
fn tensor_range(data_offset: u64, offset: u64, n_bytes: usize) -> Option<(usize, usize)> {
    let start = data_offset.checked_add(offset)?;
    let end = start.checked_add(u64::try_from(n_bytes).ok()?)?;
    Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?))
}

struct Header {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: impl Into<String>) -> Error {
        gguf_err(self.path, message)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.err(format!(
                "file is truncated: reading {} at offset {} needs {n} bytes, but the file ends at {}",
                what(),
                self.pos,
                self.buf.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > self.remaining() as u64 {
            return Err(self.err(format!(
                "string length {len} of {} at offset {} exceeds the {} bytes left in the file (corrupt or truncated)",
                what(),
                self.pos,
                self.remaining()
            )));
        }
        let start = self.pos;
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.err(format!("{} at offset {start} is not valid UTF-8", what())))
    }

    /// Reads a value of GGUF type `ty`; `in_array` forbids nested arrays.
    fn value(&mut self, ty: u32, what: &dyn Fn() -> String, in_array: bool) -> Result<GgufValue> {
        Ok(match ty {
            type_id::U8 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            type_id::I8 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            type_id::U16 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            type_id::I16 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            type_id::U32 => GgufValue::U32(u32::from_le_bytes(self.array(what)?)),
            type_id::I32 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            type_id::U64 => GgufValue::U64(u64::from_le_bytes(self.array(what)?)),
            type_id::I64 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            type_id::F32 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            type_id::F64 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            type_id::BOOL => {
                let at = self.pos;
                match self.array::<1>(what)? {
                    [0] => GgufValue::Bool(false),
                    [1] => GgufValue::Bool(true),
                    [b] => {
                        return Err(
                            self.err(format!("{} at offset {at}: invalid bool byte {b}", what()))
                        );
                    }
                }
            }
            type_id::STRING => GgufValue::String(self.string(what)?),
            type_id::ARRAY if in_array => {
                return Err(self.err(format!("{}: nested arrays are not supported", what())));
            }
            type_id::ARRAY => {
                let elem = self.u32(&|| format!("the element type of {}", what()))?;
                let n = self.u64(&|| format!("the length of {}", what()))?;
                let min_size: u64 = match elem {
                    type_id::U8 | type_id::I8 | type_id::BOOL => 1,
                    type_id::U16 | type_id::I16 => 2,
                    type_id::U32 | type_id::I32 | type_id::F32 => 4,
                    type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
                    type_id::ARRAY => {
                        return Err(
                            self.err(format!("{}: nested arrays are not supported", what()))
                        );
                    }
                    other => {
                        return Err(
                            self.err(format!("{}: unknown array element type {other}", what()))
                        );
                    }
                };
                if n.checked_mul(min_size)
                    .is_none_or(|need| need > self.remaining() as u64)
                {
                    return Err(self.err(format!(
                        "array length {n} of {} ({} elements) at offset {} exceeds the {} bytes left in the file \
                         (corrupt or truncated)",
                        what(),
                        type_name(elem),
                        self.pos,
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for i in 0..n {
                    items.push(self.value(elem, &|| format!("element {i} of {}", what()), true)?);
                }
                GgufValue::Array(items)
            }
            other => return Err(self.err(format!("{}: unknown value type {other}", what()))),
        })
    }
}

fn parse(path: &Path, buf: &[u8]) -> Result<Header> {
    let mut c = Cursor { buf, pos: 0, path };
    let magic = c.array::<4>(&|| "the magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(c.err(format!(
            "not a GGUF file: bad magic {:?} (expected \"GGUF\")",
            String::from_utf8_lossy(&magic)
        )));
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        v if (2..=3).contains(&v.swap_bytes()) => {
            return Err(c.err(format!(
                "big-endian GGUF (version {}) is not supported",
                v.swap_bytes()
            )));
        }
        v => {
            return Err(c.err(format!(
                "unsupported GGUF version {v} (Kiln reads versions 2 and 3)"
            )));
        }
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;
    // Each tensor info takes at least 24 bytes and each key/value pair at least 13.
    if n_tensors > MAX_TENSORS || n_tensors.saturating_mul(24) > c.remaining() as u64 {
        return Err(c.err(format!(
            "implausible tensor count {n_tensors} for a file of {} bytes (corrupt or truncated)",
            buf.len()
        )));
    }
    if n_kv > MAX_KV || n_kv.saturating_mul(13) > c.remaining() as u64 {
        return Err(c.err(format!(
            "implausible metadata count {n_kv} for a file of {} bytes (corrupt or truncated)",
            buf.len()
        )));
    }

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(c.err(format!("metadata key #{i} is empty")));
        }
        let ty = c.u32(&|| format!("the type of metadata `{key}`"))?;
        let value = c.value(ty, &|| format!("metadata `{key}`"), false)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(c.err(format!("duplicate metadata key `{key}`")));
        }
    }

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut seen = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("the name of tensor #{i}"))?;
        let n_dims = c.u32(&|| format!("the dimension count of tensor `{name}`"))?;
        if n_dims as usize > GGML_MAX_DIMS {
            return Err(c.err(format!(
                "tensor `{name}` has {n_dims} dimensions (ggml allows at most {GGML_MAX_DIMS})"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let type_id = c.u32(&|| format!("the type of tensor `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| Error::UnsupportedDtype {
            path: path.display().to_string(),
            name: name.clone(),
            dtype: format!("unknown ggml type id {type_id}"),
        })?;
        let offset = c.u64(&|| format!("the data offset of tensor `{name}`"))?;
        let info = GgufTensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        };
        let n_elements = info.dims.iter().try_fold(1i64, |acc, &d| {
            i64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        });
        if n_elements.is_none() {
            return Err(c.err(format!(
                "tensor `{}`: element count of dims {:?} overflows",
                info.name, info.dims
            )));
        }
        info.n_bytes().map_err(|e| c.err(e.to_string()))?;
        if seen.insert(info.name.clone(), i).is_some() {
            return Err(c.err(format!("duplicate tensor name `{}`", info.name)));
        }
        tensors.push(info);
    }

    let alignment = match metadata.get("general.alignment") {
        None => GGUF_DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
            _ => {
                return Err(c.err(format!(
                    "general.alignment must be a power of two up to {MAX_ALIGNMENT}, got {v}"
                )));
            }
        },
    };
    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    if !tensors.is_empty() && data_offset > file_len {
        return Err(c.err(format!(
            "file is truncated: the data section should start at offset {data_offset}, but the file ends at {file_len}"
        )));
    }
    for t in &tensors {
        if !t.offset.is_multiple_of(alignment) {
            return Err(c.err(format!(
                "tensor `{}`: data offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            )));
        }
        let n_bytes = t.n_bytes().map_err(|e| c.err(e.to_string()))?;
        match tensor_range(data_offset, t.offset, n_bytes) {
            Some((_, end)) if end as u64 <= file_len => {}
            _ => {
                return Err(c.err(format!(
                    "tensor `{}` ({}, dims {:?}, {n_bytes} bytes at data offset {}) extends past the end of the \
                     file ({file_len} bytes): the file is truncated or the offset is corrupt",
                    t.name, t.ggml_type, t.dims, t.offset
                )));
            }
        }
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

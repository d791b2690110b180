//! Hugging Face safetensors checkpoints: one file, several files, or the shards listed by a
//! `model.safetensors.index.json`, memory-mapped and served by tensor name. Every model crate reads
//! its checkpoints through [`SafetensorsFiles`], so the checks (shapes, dtypes, shard paths) live in
//! one place.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

/// One memory-mapped safetensors file.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only and Kiln never writes to it while mapped; a file
        // truncated by another process under the map is outside what any mmap-based loader can guard.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Parse once now, so a corrupt header is reported at open time.
        SafeTensors::deserialize(&mmap).map_err(|e| Error::Safetensors {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
        })
    }

    fn tensors(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.mmap).map_err(|e| Error::Safetensors {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// The tensors of one or more safetensors files, looked up by name.
pub struct SafetensorsFiles {
    root: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFiles")
            .field("root", &self.root)
            .field("shards", &self.shards.len())
            .field("tensors", &self.index.len())
            .finish()
    }
}

/// A tensor's stored bytes with their dtype and shape.
#[derive(Debug, Clone)]
pub struct RawTensor<'a> {
    /// The stored element type.
    pub dtype: Dtype,
    /// The shape, PyTorch order.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub data: &'a [u8],
}

impl SafetensorsFiles {
    /// Opens one safetensors file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Safetensors`] naming the file.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_files(path.as_ref(), &[path.as_ref().to_path_buf()])
    }

    /// Opens several files (shards) as one checkpoint. Names must be unique across shards.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Safetensors`] naming the file.
    pub fn open_files(root: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let shard = Shard::open(f)?;
            for name in shard.tensors()?.names() {
                if index.insert(name.to_string(), i).is_some() {
                    return Err(Error::Safetensors {
                        path: f.display().to_string(),
                        message: format!("tensor `{name}` appears in more than one shard"),
                    });
                }
            }
            shards.push(shard);
        }
        Ok(Self {
            root: root.to_path_buf(),
            shards,
            index,
        })
    }

    /// Opens the shards listed by a `model.safetensors.index.json`.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed index or a shard path that leaves the directory,
    /// [`Error::MissingTensor`] for a listed tensor no shard holds, or the errors of
    /// [`Self::open_files`].
    pub fn open_index(index_path: impl AsRef<Path>) -> Result<Self> {
        let index_path = index_path.as_ref();
        let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
        let config_err = |message: String| Error::Config {
            path: index_path.display().to_string(),
            message,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| config_err(format!("malformed index: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| config_err("missing object `weight_map`".into()))?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<PathBuf> = Vec::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| config_err(format!("`weight_map.{tensor}` is not a file name")))?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(config_err(format!(
                    "`weight_map.{tensor}` = {file:?} leaves the model directory"
                )));
            }
            let p = dir.join(file);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        let weights = Self::open_files(dir, &files)?;
        for tensor in map.keys() {
            if !weights.index.contains_key(tensor) {
                return Err(Error::MissingTensor {
                    path: index_path.display().to_string(),
                    name: tensor.clone(),
                });
            }
        }
        Ok(weights)
    }

    /// Opens a model directory: `model.safetensors`, or the shards of
    /// `model.safetensors.index.json`.
    ///
    /// # Errors
    /// [`Error::Config`] when the directory has neither, or the errors of the open functions.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.is_file() {
            Self::open_file(single)
        } else if index.is_file() {
            Self::open_index(index)
        } else {
            Err(Error::Config {
                path: dir.display().to_string(),
                message: "no model.safetensors or model.safetensors.index.json".into(),
            })
        }
    }

    /// The file or directory opened, for error messages.
    #[must_use]
    pub fn path(&self) -> String {
        self.root.display().to_string()
    }

    /// Whether a tensor of this name exists.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The names of all tensors (unordered).
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.index.keys().map(String::as_str).collect()
    }

    /// The stored shape of tensor `name`.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] or [`Error::Safetensors`].
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let (_, view) = self.lookup(name)?;
        Ok(view.shape().to_vec())
    }

    fn lookup(&self, name: &str) -> Result<(String, safetensors::tensor::TensorView<'_>)> {
        let &i = self.index.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path(),
            name: name.to_string(),
        })?;
        let shard = &self.shards[i];
        let path = shard.path.display().to_string();
        let view = shard
            .tensors()?
            .tensor(name)
            .map_err(|e| Error::Safetensors {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok((path, view))
    }

    /// The stored bytes of tensor `name`, checked against `shape`.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] or [`Error::TensorShape`] naming the tensor and file.
    pub fn raw(&self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>> {
        let (path, view) = self.lookup(name)?;
        if view.shape() != shape {
            return Err(Error::TensorShape {
                path,
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok(RawTensor {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data: view.data(),
        })
    }

    /// Tensor `name` as row-major `f32` (F32, F16, BF16 and F64 are converted), checked against
    /// `shape` (PyTorch order).
    ///
    /// # Errors
    /// [`Error::MissingTensor`], [`Error::TensorShape`] or [`Error::UnsupportedDtype`] naming the
    /// tensor and file.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let raw = self.raw(name, shape)?;
        to_f32(raw.dtype, raw.data).ok_or_else(|| Error::UnsupportedDtype {
            path: self.path(),
            name: name.to_string(),
            dtype: format!("{:?}", raw.dtype),
        })
    }

    /// Tensor `name` as `i64` (integer buffers such as `position_ids`), checked against `shape`.
    ///
    /// # Errors
    /// As [`Self::f32`].
    pub fn i64(&self, name: &str, shape: &[usize]) -> Result<Vec<i64>> {
        let raw = self.raw(name, shape)?;
        let b = raw.data;
        let out = match raw.dtype {
            Dtype::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            Dtype::I32 => b
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    path: self.path(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(out)
    }
}

/// Converts little-endian float bytes to `f32`; `None` for a non-float dtype.
#[must_use]
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

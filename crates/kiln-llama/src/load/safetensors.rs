//! Hugging Face safetensors files: a single `model.safetensors` or shards listed by
//! `model.safetensors.index.json`. F32, F16 and BF16 tensors are converted to `f32`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use kiln_backend::kernels::{QuantMatrix, WeightFormat};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::WeightSource;
use crate::{Error, Result};

/// One memory-mapped safetensors file with its parsed header.
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

/// The tensors of one or more safetensors files.
pub struct SafetensorsWeights {
    root: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsWeights")
            .field("root", &self.root)
            .field("shards", &self.shards.len())
            .field("tensors", &self.index.len())
            .finish()
    }
}

impl SafetensorsWeights {
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
    /// [`Error::Config`] for a malformed index, or the errors of [`Self::open_files`].
    pub fn open_index(index_path: impl AsRef<Path>) -> Result<Self> {
        let index_path = index_path.as_ref();
        let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: index_path.display().to_string(),
            message: format!("malformed index: {e}"),
        })?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Config {
                path: index_path.display().to_string(),
                message: "missing object `weight_map`".into(),
            })?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<PathBuf> = Vec::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| Error::Config {
                path: index_path.display().to_string(),
                message: format!("`weight_map.{tensor}` is not a file name"),
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(Error::Config {
                    path: index_path.display().to_string(),
                    message: format!("`weight_map.{tensor}` = {file:?} leaves the model directory"),
                });
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

    /// The names of all tensors.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.index.keys().map(String::as_str).collect()
    }
}

impl SafetensorsWeights {
    /// The view of tensor `name`, checked against `shape`, with its file's path.
    fn view(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<(String, safetensors::tensor::TensorView<'_>)> {
        let &i = self.index.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path(),
            name: name.to_string(),
        })?;
        let shard = &self.shards[i];
        let path = shard.path.display().to_string();
        let st = shard.tensors()?;
        let view = st.tensor(name).map_err(|e| Error::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if view.shape() != shape {
            return Err(Error::TensorShape {
                path,
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok((path, view))
    }
}

impl WeightSource for SafetensorsWeights {
    fn path(&self) -> String {
        self.root.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QuantMatrix> {
        let (_, view) = self.view(name, &[rows, cols])?;
        let format = match view.dtype() {
            Dtype::F32 => WeightFormat::F32,
            Dtype::F16 => WeightFormat::F16,
            Dtype::BF16 => WeightFormat::BF16,
            _ => return super::f32_matrix(&self.tensor(name, &[rows, cols])?, rows, cols),
        };
        Ok(QuantMatrix::new(format, rows, cols, view.data().to_vec())?)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (path, view) = self.view(name, shape)?;
        let bytes = view.data();
        let out = match view.dtype() {
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
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    path,
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(out)
    }
}

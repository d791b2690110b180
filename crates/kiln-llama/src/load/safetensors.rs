//! Hugging Face safetensors files: a single `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, read through kiln-backend's shared
//! [`SafetensorsFiles`](kiln_backend::safetensors::SafetensorsFiles). F32, F16 and BF16 tensors are
//! converted to `f32`.

use std::path::{Path, PathBuf};

use kiln_backend::kernels::{QuantMatrix, WeightFormat};
use kiln_backend::safetensors::SafetensorsFiles;
use safetensors::Dtype;

use super::WeightSource;
use crate::{Error, Result};

/// The tensors of one or more safetensors files.
#[derive(Debug)]
pub struct SafetensorsWeights {
    files: SafetensorsFiles,
}

/// Keeps kiln-llama's own variants for the loading errors callers match on.
fn llama_error(e: kiln_backend::Error) -> Error {
    use kiln_backend::Error as B;
    match e {
        B::Io { path, source } => Error::Io { path, source },
        B::Safetensors { path, message } => Error::Safetensors { path, message },
        B::Config { path, message } => Error::Config { path, message },
        B::MissingTensor { path, name } => Error::MissingTensor { path, name },
        B::TensorShape {
            path,
            name,
            expected,
            found,
        } => Error::TensorShape {
            path,
            name,
            expected,
            found,
        },
        B::UnsupportedDtype { path, name, dtype } => Error::UnsupportedDtype { path, name, dtype },
        other => Error::Backend(other),
    }
}

impl SafetensorsWeights {
    /// Opens one safetensors file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Safetensors`] naming the file.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self> {
        SafetensorsFiles::open_file(path)
            .map(|files| Self { files })
            .map_err(llama_error)
    }

    /// Opens several files (shards) as one checkpoint. Names must be unique across shards.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Safetensors`] naming the file.
    pub fn open_files(root: &Path, files: &[PathBuf]) -> Result<Self> {
        SafetensorsFiles::open_files(root, files)
            .map(|files| Self { files })
            .map_err(llama_error)
    }

    /// Opens the shards listed by a `model.safetensors.index.json`.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed index, or the errors of [`Self::open_files`].
    pub fn open_index(index_path: impl AsRef<Path>) -> Result<Self> {
        SafetensorsFiles::open_index(index_path)
            .map(|files| Self { files })
            .map_err(llama_error)
    }

    /// The names of all tensors.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.files.names()
    }
}

impl WeightSource for SafetensorsWeights {
    fn path(&self) -> String {
        self.files.path()
    }

    fn contains(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QuantMatrix> {
        let raw = self.files.raw(name, &[rows, cols]).map_err(llama_error)?;
        let format = match raw.dtype {
            Dtype::F32 => WeightFormat::F32,
            Dtype::F16 => WeightFormat::F16,
            Dtype::BF16 => WeightFormat::BF16,
            _ => return super::f32_matrix(&self.tensor(name, &[rows, cols])?, rows, cols),
        };
        Ok(QuantMatrix::new(format, rows, cols, raw.data.to_vec())?)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.files.f32(name, shape).map_err(llama_error)
    }
}

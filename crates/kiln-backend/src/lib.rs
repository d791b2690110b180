//! # kiln-backend
//!
//! Picks the burn device Kiln computes on, at run time, from a string a user can type:
//!
//! | spec            | device                                   | Cargo feature |
//! |-----------------|------------------------------------------|---------------|
//! | `cpu`, `flex`   | burn's `flex` CPU backend (rayon + SIMD) | `flex` (default) |
//! | `wgpu`          | the best wgpu adapter                     | `wgpu` |
//! | `vulkan`        | wgpu through Vulkan                       | `wgpu` |
//! | `cuda`, `cuda:N`| NVIDIA GPU `N`                            | `cuda` |
//!
//! Asking for a device whose feature was not compiled in is an error that says which feature to enable.
//!
//! [`kernels`] holds Kiln's own CPU matrix-vector / matrix-matrix kernels over quantized (Q4_0, Q4_1,
//! Q8_0) and float (F32, F16, BF16) weights in GGUF byte layouts, and over NF4 blocks, independent of
//! burn.
//!
//! [`nf4`] is bitsandbytes' NF4 quantization (QLoRA's 4-bit NormalFloat, with optional double
//! quantization of the scales), bit-identical to bitsandbytes 0.50.2 on the CPU, and the
//! state-dict form transformers saves for 4-bit models;
//! [`kernels::QuantMatrix::from_nf4`] turns such a weight into a matrix the kernels compute on.
//!
//! ```
//! use kiln_backend::DeviceSpec;
//! let spec: DeviceSpec = "cuda:1".parse().unwrap();
//! assert_eq!(spec, DeviceSpec::Cuda(1));
//! assert_eq!(spec.to_string(), "cuda:1");
//! ```

use std::fmt;
use std::str::FromStr;

pub mod kernels;
pub mod nf4;
pub mod safetensors;

pub use burn::tensor::Device;

/// Errors of device selection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The string names no known device.
    #[error("unknown device `{0}`: expected one of cpu, wgpu, vulkan, cuda, cuda:N")]
    UnknownDevice(String),
    /// The device exists but its backend was not compiled in.
    #[error("device `{device}` needs Kiln built with the `{feature}` Cargo feature")]
    NotCompiled {
        /// The device asked for.
        device: String,
        /// The feature that enables it.
        feature: &'static str,
    },
    /// The backend is compiled in but the device cannot be used here (no driver, no such GPU).
    #[error("device `{device}` is not available: {reason}")]
    Unavailable {
        /// The device asked for.
        device: String,
        /// Why.
        reason: String,
    },
    /// A weight matrix's column count is zero or not a whole number of its format's blocks.
    #[error("{format} matrix: {cols} columns is not a positive multiple of the block size")]
    BlockMisaligned {
        /// The weight format.
        format: kernels::WeightFormat,
        /// The columns asked for.
        cols: usize,
    },
    /// A weight matrix's bytes do not have the size its shape and format imply.
    #[error("{format} matrix of {rows}x{cols}: expected {expected} bytes, got {actual}")]
    DataSize {
        /// The weight format.
        format: kernels::WeightFormat,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A byte range for a shared weight matrix lies outside its owner's bytes.
    #[error("byte range {start}..{end} is outside the {len} bytes available")]
    DataRange {
        /// Start of the range.
        start: usize,
        /// End of the range.
        end: usize,
        /// Bytes the owner holds.
        len: usize,
    },
    /// An NF4 tensor could not be quantized, read, or turned into a matrix.
    #[error(transparent)]
    Nf4(#[from] nf4::Nf4Error),
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file is malformed.
    #[error("{path}: invalid safetensors: {message}")]
    Safetensors {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A JSON file next to the weights (an index) is malformed or lacks a field.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The file (or directory) searched.
        path: String,
        /// The tensor name.
        name: String,
    },
    /// A tensor has a shape other than the model's configuration implies.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The file.
        path: String,
        /// The tensor name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype Kiln cannot convert.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file.
        path: String,
        /// The tensor name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A weight matrix's size in bytes overflows `usize`.
    #[error("a {rows}x{cols} matrix is too large to address")]
    ShapeOverflow {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
}

impl Error {
    /// An [`Error::Io`] naming `path`.
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A device as a user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The CPU through burn's `flex` backend.
    #[default]
    Cpu,
    /// The default wgpu adapter (Vulkan, Metal, DX12 or a software one).
    Wgpu,
    /// wgpu restricted to Vulkan.
    Vulkan,
    /// The CUDA device with this index.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" | "flex" => Ok(DeviceSpec::Cpu),
            "wgpu" | "gpu" => Ok(DeviceSpec::Wgpu),
            "vulkan" => Ok(DeviceSpec::Vulkan),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| Error::UnknownDevice(s.to_string())),
                None => Err(Error::UnknownDevice(s.to_string())),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Wgpu => f.write_str("wgpu"),
            DeviceSpec::Vulkan => f.write_str("vulkan"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Whether this device runs on the host CPU.
    #[must_use]
    pub fn is_cpu(&self) -> bool {
        matches!(self, DeviceSpec::Cpu)
    }

    /// The burn device for this spec.
    ///
    /// # Errors
    /// [`Error::NotCompiled`] when the backend's feature is off; [`Error::Unavailable`] for
    /// `cuda:N` when the CUDA driver library cannot be loaded or there is no GPU `N` (burn would
    /// panic on a worker thread at first use instead).
    pub fn device(&self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(n) => {
                cuda_present(*n)?;
                Ok(Device::cuda(*n))
            }
            #[allow(unreachable_patterns)]
            other => Err(Error::NotCompiled {
                device: other.to_string(),
                feature: other.feature(),
            }),
        }
    }

    /// The Cargo feature that enables this device.
    #[must_use]
    pub fn feature(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "flex",
            DeviceSpec::Wgpu | DeviceSpec::Vulkan => "wgpu",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }

    /// The devices this build can create.
    #[must_use]
    pub fn compiled() -> Vec<&'static str> {
        let mut v = vec!["cpu"];
        if cfg!(feature = "wgpu") {
            v.extend(["wgpu", "vulkan"]);
        }
        if cfg!(feature = "cuda") {
            v.push("cuda:N");
        }
        v
    }
}

/// Parses a device string and creates the device.
///
/// # Errors
/// [`Error::UnknownDevice`] or [`Error::NotCompiled`].
pub fn device(spec: &str) -> Result<Device> {
    spec.parse::<DeviceSpec>()?.device()
}

/// Checks that CUDA device `n` can be opened: the driver library loads and reports more than `n`
/// devices.
#[cfg(feature = "cuda")]
fn cuda_present(n: usize) -> Result<()> {
    let unavailable = |reason: String| Error::Unavailable {
        device: DeviceSpec::Cuda(n).to_string(),
        reason,
    };
    // SAFETY: only tries to load the driver library (cudarc's own check, no CUDA call).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            "the CUDA driver library (libcuda.so) cannot be loaded".into(),
        ));
    }
    let count = cudarc::driver::CudaContext::device_count()
        .map_err(|e| unavailable(format!("the CUDA driver failed: {e}")))?;
    if n >= usize::try_from(count).unwrap_or(0) {
        return Err(unavailable(format!(
            "the driver reports {count} CUDA devices"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(
            " CUDA:3 ".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Cuda(3)
        );
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("vulkan".parse::<DeviceSpec>().unwrap(), DeviceSpec::Vulkan);
        assert!(matches!(
            "tpu".parse::<DeviceSpec>(),
            Err(Error::UnknownDevice(_))
        ));
        assert!(matches!(
            "cuda:x".parse::<DeviceSpec>(),
            Err(Error::UnknownDevice(_))
        ));
    }

    #[test]
    fn cpu_device_works() {
        let d = device("cpu").unwrap();
        let t = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &d);
        assert_eq!(t.sum().into_scalar::<f32>(), 3.0);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn uncompiled_device_names_the_feature() {
        let err = device("cuda:0").unwrap_err().to_string();
        assert!(err.contains("`cuda` Cargo feature"), "{err}");
    }
}

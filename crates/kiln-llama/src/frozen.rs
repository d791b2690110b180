//! Frozen base weights kept in their quantized block format inside burn's graph (QLoRA).
//!
//! A QLoRA base (NF4 as bitsandbytes rounds it, or a GGUF file's Q4_0/Q4_1/Q8_0/F16/BF16 blocks)
//! never receives a gradient, but every step still needs `y = x Wᵀ` forward and `dx = dy W`
//! backward to reach the adapters of earlier layers. Giving burn the dequantized `W` as an f32
//! tensor would hold the whole base in f32 (4 bytes per weight instead of about 0.56 for NF4) for
//! the whole run. [`frozen_linear`] is instead a custom burn operation on the Flex (CPU) backend
//! and its autodiff twin: the weight stays a [`QuantMatrix`] of blocks, and both products
//! dequantize one tile of rows at a time (at most [`TILE_ROWS`] rows, a few MB) into a buffer that
//! an f32 GEMM then multiplies (forward is the CPU engine's prefill product). Each product equals
//! the dequantize-then-multiply reference up to summation order; the graph stores no copy of the
//! weight, only the shared handle.
//!
//! On other backends (wgpu, CUDA) the operation is not registered: [`Llama`](crate::Llama) keeps
//! dense weights there ([`FrozenWeight::supported_on`]).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::{Device, Shape, Tensor, TensorData};
use kiln_backend::kernels::QuantMatrix;

use crate::cpu::matmul::{GEMM_TILE_ROWS, dequantize_tile, gemm_dequantized};

/// Weight rows dequantized per GEMM call.
pub const TILE_ROWS: usize = GEMM_TILE_ROWS;

/// A frozen `[out, in]` weight (Hugging Face order) kept in its stored block format.
#[derive(Clone)]
pub struct FrozenWeight(Arc<QuantMatrix>);

impl std::fmt::Debug for FrozenWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FrozenWeight({} x {} {})",
            self.0.rows(),
            self.0.cols(),
            self.0.format()
        )
    }
}

impl FrozenWeight {
    /// Wraps a `[out, in]` matrix.
    #[must_use]
    pub fn new(matrix: QuantMatrix) -> Self {
        Self(Arc::new(matrix))
    }

    /// The matrix.
    #[must_use]
    pub fn matrix(&self) -> &QuantMatrix {
        &self.0
    }

    /// Output features (`W`'s rows).
    #[must_use]
    pub fn out_features(&self) -> usize {
        self.0.rows()
    }

    /// Input features (`W`'s columns).
    #[must_use]
    pub fn in_features(&self) -> usize {
        self.0.cols()
    }

    /// The dequantized weight as a dense `[in, out]` tensor (for merging and export).
    #[must_use]
    pub fn to_dense(&self, device: &Device) -> Tensor<2> {
        let (rows, cols) = (self.0.rows(), self.0.cols());
        Tensor::<2>::from_data(TensorData::new(self.0.dequantize(), [rows, cols]), device)
            .transpose()
    }

    /// Whether [`frozen_linear`] runs on `device`: the Flex CPU backend, with or without autodiff.
    #[must_use]
    pub fn supported_on(device: &Device) -> bool {
        match device.as_dispatch() {
            DispatchDevice::Flex(_) => true,
            DispatchDevice::Autodiff(inner) => {
                matches!(inner.clone().inner(), DispatchDevice::Flex(_))
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// The burn operation behind [`frozen_linear`].
#[backend_extension(Flex, Autodiff)]
pub trait FrozenLinearOps: Backend {
    /// `y = x Wᵀ` for `x` of shape `[..., in]`: `[..., out]`.
    fn frozen_linear(x: FloatTensor<Self>, weight: FrozenWeight) -> FloatTensor<Self>;
}

/// `y = x Wᵀ` with the weight in its block format; differentiable in `x` (never in `W`).
///
/// # Shapes
/// - `x`: `[..., in]` -> `[..., out]`
///
/// # Panics
/// When `x`'s last dimension is not `W`'s column count, or on a device other than Flex (check
/// [`FrozenWeight::supported_on`]).
pub fn frozen_linear<const D: usize>(x: Tensor<D>, weight: &FrozenWeight) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FrozenLinearOps>::frozen_linear(
        x.into_dispatch(),
        weight.clone(),
    ))
}

/// The f32 values of a Flex tensor in row-major order, and its shape.
fn f32_rows(x: &FlexTensor) -> (Vec<usize>, Vec<f32>) {
    let x = if x.dtype() == DType::F32 {
        x.to_contiguous()
    } else {
        FlexTensor::from_data(x.clone().into_data().convert::<f32>())
    };
    let shape = x.layout().shape().to_vec();
    let (start, end) = x
        .layout()
        .contiguous_offsets()
        .expect("a contiguous tensor has contiguous offsets");
    (shape, x.storage::<f32>()[start..end].to_vec())
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
}

/// `y = x Wᵀ`: `x` is `n × in`, the result `n × out` (the CPU engine's prefill product).
fn forward_values(w: &QuantMatrix, x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n * w.rows()];
    gemm_dequantized(w, x, n, &mut y, &mut Vec::new());
    y
}

/// `dx = dy W`: `dy` is `n × out`, the result `n × in`.
fn backward_values(w: &QuantMatrix, dy: &[f32], n: usize) -> Vec<f32> {
    let (rows, cols) = (w.rows(), w.cols());
    let mut dx = vec![0.0f32; n * cols];
    let mut tile = Vec::new();
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let r = TILE_ROWS.min(rows - r0);
        dequantize_tile(w, r0, r, &mut tile);
        // SAFETY: dst(i, k) is dx[i * cols + k] (n·cols long); lhs(i, j) is dy[i * rows + r0 + j]
        // for j < r (inside n·rows); rhs(j, k) is tile[j * cols + k] (r·cols long). `read_dst`
        // accumulates the tiles: dx += dy[:, r0..r0+r] · tile.
        unsafe {
            gemm::gemm(
                n,
                cols,
                r,
                dx.as_mut_ptr(),
                1,
                cols as isize,
                r0 > 0,
                dy.as_ptr().add(r0),
                1,
                rows as isize,
                tile.as_ptr(),
                1,
                cols as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
    }
    dx
}

/// Checks `x`'s last dimension against `W` and returns the number of rows `x` holds.
fn rows_of(shape: &[usize], w: &QuantMatrix) -> usize {
    let last = shape.last().copied().unwrap_or(0);
    assert_eq!(
        last,
        w.cols(),
        "frozen_linear: input's last dimension {last} != the weight's {} input features",
        w.cols()
    );
    shape[..shape.len() - 1].iter().product()
}

impl FrozenLinearOps for Flex {
    fn frozen_linear(x: FloatTensor<Self>, weight: FrozenWeight) -> FloatTensor<Self> {
        let (mut shape, xs) = f32_rows(&x);
        let n = rows_of(&shape, weight.matrix());
        let y = forward_values(weight.matrix(), &xs, n);
        if let Some(last) = shape.last_mut() {
            *last = weight.out_features();
        }
        flex_tensor(y, shape)
    }
}

/// The backward step: `dx = dy W`, nothing for `W`.
#[derive(Debug)]
struct FrozenLinearBackward;

impl Backward<Flex, 1> for FrozenLinearBackward {
    type State = (FrozenWeight, Vec<usize>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let (weight, x_shape) = ops.state;
        let (_, dy) = f32_rows(&grad);
        let n = rows_of(&x_shape, weight.matrix());
        let dx = backward_values(weight.matrix(), &dy, n);
        grads.register::<Flex>(node.id, flex_tensor(dx, x_shape));
    }
}

impl<C: CheckpointStrategy> FrozenLinearOps for Autodiff<Flex, C> {
    fn frozen_linear(x: FloatTensor<Self>, weight: FrozenWeight) -> FloatTensor<Self> {
        match FrozenLinearBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let inner = x.primitive().clone();
                let shape = inner.layout().shape().to_vec();
                let output = Flex::frozen_linear(inner, weight.clone());
                prep.finish((weight, shape), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::frozen_linear(x.into_primitive(), weight))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_backend::kernels::WeightFormat;

    /// A Q4_1 matrix of `rows × cols` with varied scales, minimums and quants.
    fn q4_1(rows: usize, cols: usize) -> QuantMatrix {
        let mut bytes = Vec::new();
        for r in 0..rows {
            for b in 0..cols / 32 {
                let d = half::f16::from_f32(0.01 + 0.003 * ((r * 7 + b) % 11) as f32);
                let m = half::f16::from_f32(-0.05 * ((r + 3 * b) % 5) as f32);
                bytes.extend(d.to_le_bytes());
                bytes.extend(m.to_le_bytes());
                bytes.extend((0..16).map(|i| ((r * 31 + b * 7 + i * 13) % 256) as u8));
            }
        }
        QuantMatrix::new(WeightFormat::Q4_1, rows, cols, bytes).expect("q4_1 matrix")
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 2654435761 + seed) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    }

    #[test]
    fn forward_and_backward_equal_the_dense_reference() {
        // Shapes that straddle a tile (TILE_ROWS rows) and are not multiples of anything else.
        let (out, inp) = (TILE_ROWS + 37, 96);
        let w = FrozenWeight::new(q4_1(out, inp));
        let device = Device::flex().autodiff();
        let xv = values(2 * 5 * inp, 1);
        let x = Tensor::<3>::from_data(TensorData::new(xv.clone(), [2, 5, inp]), &device)
            .require_grad();
        let dense = w.to_dense(&device);
        let x_ref =
            Tensor::<3>::from_data(TensorData::new(xv, [2, 5, inp]), &device).require_grad();

        let upstream = Tensor::<3>::from_data(
            TensorData::new(values(2 * 5 * out, 7), [2, 5, out]),
            &device,
        );
        let y = frozen_linear(x.clone(), &w);
        let y_ref = x_ref.clone().matmul(dense.unsqueeze::<3>());
        let yd: Vec<f32> = y.clone().into_data().try_to_vec().expect("f32");
        let yr: Vec<f32> = y_ref.clone().into_data().try_to_vec().expect("f32");
        let max_y = yd
            .iter()
            .zip(&yr)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Sums of 96 products of magnitude <= ~1: f32 reordering error well under 1e-4.
        assert!(max_y < 1e-4, "forward differs by {max_y}");

        let g = y.mul(upstream.clone()).sum().backward();
        let g_ref = y_ref.mul(upstream).sum().backward();
        let dx: Vec<f32> = x
            .grad(&g)
            .expect("grad")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let dxr: Vec<f32> = x_ref
            .grad(&g_ref)
            .expect("grad")
            .into_data()
            .try_to_vec()
            .expect("f32");
        let max_dx = dx
            .iter()
            .zip(&dxr)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Sums of 549 products: still under 1e-4.
        assert!(max_dx < 1e-4, "input gradient differs by {max_dx}");
    }

    #[test]
    fn runs_without_autodiff_and_reports_devices() {
        let device = Device::flex();
        assert!(FrozenWeight::supported_on(&device));
        assert!(FrozenWeight::supported_on(&device.clone().autodiff()));
        let w = FrozenWeight::new(q4_1(3, 64));
        let x = Tensor::<2>::from_data(TensorData::new(values(4 * 64, 3), [4, 64]), &device);
        let y = frozen_linear(x.clone(), &w);
        assert_eq!(y.dims(), [4, 3]);
        let reference = x.matmul(w.to_dense(&device));
        let diff: f32 = (y - reference).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }
}

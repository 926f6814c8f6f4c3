//! The product of a Linear layer, `x · W + b` over `[rows, d_in]` rows, as a Burn backend
//! extension with Flex kernels: each product is written once into fresh memory (the bias is its
//! starting value, not a second pass), and the backward is three kernels (`g · Wᵀ`, `xᵀ · g`, the
//! column sums of `g`).
//!
//! Why not Burn's `linear` on Flex: burn-flex 0.22.1 allocates every matmul output zero-filled
//! and then copies it into a 16-byte-aligned buffer (`FlexTensor::empty` → `Bytes::from_bytes_vec`),
//! two passes over each output before the product writes it, and the bias is one more pass. On a
//! MiniLM-L6 fine-tuning step those passes were a tenth of the step (`cargo xtask bench
//! bert-step`; see the README). Off Flex, and for non-`f32` tensors, [`linear_any_rank`] is
//! Burn's `linear` itself; the tests pin the two together, values and gradients.
//!
//! Files: [`flex`] (the kernels), [`autodiff`] (the product as one tracked op).

mod autodiff;
mod flex;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Device, Tensor, module::linear};

/// Linear-layer products; implemented for Flex, dispatched from `Tensor`s by [`linear_rows`].
#[backend_extension(Flex, Autodiff)]
pub trait LinearKernels: Backend {
    /// `x · w + b` for `x` `[rows, d_in]`, `w` `[d_in, d_out]`, `b` `[d_out]`.
    fn linear_with_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `lhs · rhs` of two matrices in any strides (a transposed view is read as it is): the
    /// layer without a bias, and the backward's `g · Wᵀ` and `xᵀ · g`.
    fn matrix_product(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The sums of the columns of a `[rows, n]` matrix, `[n]`: the bias gradient.
    fn column_sums(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `x · w + b` for `x` `[..., d_in]`: on Flex (`f32`) one `[rows, d_in] · [d_in, d_out]` product
/// by the kernels, every leading dimension of `x` folded into the rows; elsewhere Burn's `linear`.
///
/// The fold matters as much as the kernels: Burn's `linear` keeps a batched product when each
/// batch's rows fill its tiles (BERT's `[32, 64, 384]`), and on an autodiff device that product's
/// weight gradient is a `[batch, d_in, d_out]` tensor summed afterwards, 75 MiB for each of
/// MiniLM's FFN weights at 32 × 64 where the folded product writes 2.3. Folding alone made
/// MiniLM-L6's float step on Flex 1.6× faster, the kernels 10% more (README). On wgpu the same
/// fold cost 17 more launches per MiniLM-L6 step on lavapipe (1004 → 1021), so GPU devices keep
/// Burn's `linear` until a GPU run has timed both.
pub(crate) fn linear_any_rank<const D: usize>(
    x: Tensor<D>,
    w: Tensor<2>,
    b: Option<Tensor<1>>,
) -> Tensor<D> {
    let f32s = x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    if D == 1 || !f32s || x.device().without_autodiff() != Device::flex() {
        return linear(x, w, b);
    }
    let mut dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = linear_rows(x.reshape([rows, dims[D - 1]]), w, b);
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// `x · w + b` for `x` `[rows, d_in]` on Flex, by the kernels.
fn linear_rows(x: Tensor<2>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<2> {
    Tensor::from_dispatch(match b {
        Some(b) => <Dispatch as LinearKernels>::linear_with_bias(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
        ),
        None => <Dispatch as LinearKernels>::matrix_product(x.into_dispatch(), w.into_dispatch()),
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::testing::{self, values};

    /// [`testing::assert_close`] on two matrices of one shape.
    fn assert_close(name: &str, got: Tensor<2>, want: Tensor<2>) {
        assert_eq!(got.dims(), want.dims(), "{name}: shape");
        testing::assert_close(name, &values(got), &values(want));
    }

    /// `[rows, d_in]` inputs and `[d_in, d_out]` weights, each either contiguous or a
    /// transposed view; from one element to a product large enough for every thread.
    fn cases(device: &Device) -> Vec<(String, Tensor<2>, Tensor<2>, Tensor<1>)> {
        let normal = Distribution::Normal(0.0, 1.0);
        let mut cases = Vec::new();
        for (rows, d_in, d_out) in [(1, 1, 1), (37, 19, 23), (3, 5, 300), (512, 96, 160)] {
            for transposed in [false, true] {
                let (x, w) = if transposed {
                    (
                        Tensor::<2>::random([d_in, rows], normal, device).swap_dims(0, 1),
                        Tensor::<2>::random([d_out, d_in], normal, device).swap_dims(0, 1),
                    )
                } else {
                    (
                        Tensor::<2>::random([rows, d_in], normal, device),
                        Tensor::<2>::random([d_in, d_out], normal, device),
                    )
                };
                let b = Tensor::<1>::random([d_out], normal, device);
                let name = format!("{rows}x{d_in}x{d_out}, transposed: {transposed}");
                cases.push((name, x, w, b));
            }
        }
        cases
    }

    /// The kernels against Burn's `linear` on the same operands, with and without a bias:
    /// values, and the input, weight and bias gradients through autodiff.
    #[test]
    fn flex_kernels_equal_burns_linear_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        for (name, x, w, b) in cases(&device) {
            for bias in [Some(b.require_grad()), None] {
                let name = format!("{name}, bias: {}", bias.is_some());
                let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
                let ours = linear_rows(x.clone(), w.clone(), bias.clone());
                let theirs = linear(x.clone(), w.clone(), bias.clone());
                assert_close(&name, ours.clone(), theirs.clone());
                let g = Tensor::<2>::random(ours.dims(), Distribution::Default, &device);
                let grads_ours = (ours * g.clone()).sum().backward();
                let grads_theirs = (theirs * g).sum().backward();
                assert_close(
                    &format!("{name}: dx"),
                    x.grad(&grads_ours).expect("dx"),
                    x.grad(&grads_theirs).expect("dx"),
                );
                assert_close(
                    &format!("{name}: dw"),
                    w.grad(&grads_ours).expect("dw"),
                    w.grad(&grads_theirs).expect("dw"),
                );
                if let Some(b) = &bias {
                    assert_close(
                        &format!("{name}: db"),
                        b.grad(&grads_ours).expect("db").unsqueeze::<2>(),
                        b.grad(&grads_theirs).expect("db").unsqueeze::<2>(),
                    );
                }
            }
        }
    }

    /// Without autodiff (evaluation, calibration) the kernels give Burn's values too, and a
    /// frozen weight (no gradient wanted) still gives the input its gradient.
    #[test]
    fn flex_kernels_without_autodiff_and_with_a_frozen_weight() {
        let flex = Device::flex();
        for (name, x, w, b) in cases(&flex) {
            let ours = linear_any_rank(x.clone(), w.clone(), Some(b.clone()));
            assert_close(&name, ours, linear(x, w, Some(b)));
        }
        let device = flex.autodiff();
        let x = Tensor::<2>::random([9, 7], Distribution::Default, &device).require_grad();
        let w = Tensor::<2>::random([7, 4], Distribution::Default, &device);
        let grads = linear_rows(x.clone(), w.clone(), None).sum().backward();
        let dx = x.grad(&grads).expect("the input's gradient");
        assert_close(
            "frozen weight: dx",
            dx,
            w.sum_dim(1).reshape([1, 7]).repeat_dim(0, 9),
        );
    }

    /// A layer without inputs (`d_in` = 0) outputs its bias, or zeros, in every row.
    #[test]
    fn an_empty_depth_gives_the_bias_rows() {
        let device = Device::flex();
        let x = Tensor::<2>::zeros([3, 0], &device);
        let w = Tensor::<2>::zeros([0, 2], &device);
        let b = Tensor::<1>::from_floats([1.5, -2.0], &device);
        let rows = linear_rows(x.clone(), w.clone(), Some(b));
        assert_eq!(values(rows), [1.5, -2.0, 1.5, -2.0, 1.5, -2.0]);
        assert_eq!(values(linear_rows(x, w, None)), [0.0; 6]);
    }
}

//! Fast kernels for the float ops that dominate a transformer's training step on the CPU, as a
//! Burn backend extension: GELU (forward and backward, one pass each with a vectorised `erf`),
//! dropout masks (a counter-based hash instead of one ChaCha draw per element), LayerNorm and
//! attention's masked softmax (forward and backward one pass over each row, where Burn's ops
//! under autodiff are a dozen whole-tensor passes on one thread). On a MiniLM-L6 fine-tuning
//! step on Flex, libm's scalar `erff` and Burn's per-element random draws were about a third of
//! the time, and after them LayerNorm and softmax a fifth (`cargo xtask bench bert-step`).
//!
//! [`gelu`], [`dropout`], [`layer_norm`] and [`masked_softmax`] take the kernels on Flex and
//! Burn's own ops everywhere else (wgpu, CUDA, … where burn-fusion already fuses them); the
//! tests pin the two paths together.
//!
//! Files: [`approx`] (the `erf`/`exp` approximations and the hash), [`lanes`] (row sums that
//! vectorise), [`flex`] (the Flex implementations), [`layer_norm`] and [`softmax`] (their row
//! kernels), [`autodiff`] (each as one tracked op).

mod approx;
mod autodiff;
mod flex;
mod lanes;
mod layer_norm;
mod softmax;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::{Dropout, LayerNorm};
use burn::tensor::{DType, Device, Distribution, Int, Tensor};

/// Transformer float kernels; implemented for Flex, dispatched from `Tensor`s by [`gelu`] and
/// [`dropout`].
#[backend_extension(Flex, Autodiff)]
pub trait TransformerKernels: Backend {
    /// `x · Φ(x)` (the exact, `erf` form of GELU, as `burn::tensor::activation::gelu`).
    fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grad · (Φ(x) + x · φ(x))`, the backward of [`Self::fast_gelu`]; may reuse `grad`'s memory.
    fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// A tensor shaped like `like` whose elements are `1 / keep` with probability `keep` and 0
    /// otherwise, element `i` a function of `(key, i)` only.
    fn dropout_mask(like: FloatTensor<Self>, keep: f32, key: u64) -> FloatTensor<Self>;

    /// LayerNorm over the last axis, `(x − μ) / √(σ² + ε) · γ + β`, as `burn::nn::LayerNorm`
    /// computes it (biased variance).
    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;

    /// Attention's `softmax(scores · scale + mask)` over the last axis of `[batch, heads,
    /// queries, keys]` scores, `mask` `[batch, 1, 1, keys]` (additive, constant: no gradient).
    fn fast_masked_softmax(
        scores: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// The backward of [`Self::fast_masked_softmax`] from its output `y`: the scores' gradient;
    /// may reuse `grad`'s memory.
    fn fast_masked_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// The backward of [`Self::fast_layer_norm`] from its input `x`: `(dx, (dγ, dβ))`; `dx` may
    /// reuse `grad`'s memory.
    fn fast_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, (FloatTensor<Self>, FloatTensor<Self>));
}

/// Whether `x` lives on Flex (with or without autodiff), where the kernels run.
fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    x.device().without_autodiff() == Device::flex()
}

/// GELU (`erf` form), as `burn::tensor::activation::gelu` computes it: through the Flex kernels
/// on Flex, Burn's op elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as TransformerKernels>::fast_gelu(
        x.into_dispatch(),
    ))
}

/// `layer.forward(x)` for a LayerNorm built with `epsilon` (Burn keeps a `LayerNorm`'s epsilon
/// private, so its owner passes the one it configured): one tracked op on Flex whose forward and
/// backward are one pass over each row, split across threads; Burn's op elsewhere (on a GPU
/// burn-fusion fuses its element-wise parts), for a layer without a bias, and for inputs that
/// are not `f32`.
pub fn layer_norm<const D: usize>(layer: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    let beta = match &layer.beta {
        Some(beta) if on_flex(&x) && x.dtype() == DType::F32 => beta.val(),
        _ => return layer.forward(x),
    };
    let gamma = layer.gamma.val();
    let [d_model] = gamma.dims();
    assert_eq!(
        x.dims()[D - 1],
        d_model,
        "layer_norm: the last axis of {:?} is not the layer's width {d_model}",
        x.dims()
    );
    Tensor::from_dispatch(<Dispatch as TransformerKernels>::fast_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon as f32,
    ))
}

/// Attention probabilities `softmax(scores · scale + mask, 3)` of `[batch, heads, queries, keys]`
/// scores under an additive `[batch, 1, 1, keys]` mask: one tracked op on Flex whose forward and
/// backward are one pass over each row, split across threads (no gradient flows into the
/// mask); Burn's ops elsewhere, and for other mask shapes or dtypes.
pub fn masked_softmax(scores: Tensor<4>, scale: f64, mask: &Tensor<4>) -> Tensor<4> {
    let [batch, _, _, keys] = scores.dims();
    let fits = mask.dims() == [batch, 1, 1, keys]
        && scores.dtype() == DType::F32
        && mask.dtype() == DType::F32;
    if !fits || !on_flex(&scores) {
        return burn::tensor::activation::softmax(scores.mul_scalar(scale) + mask.clone(), 3);
    }
    Tensor::from_dispatch(<Dispatch as TransformerKernels>::fast_masked_softmax(
        scores.into_dispatch(),
        mask.clone().detach().into_dispatch(),
        scale as f32,
    ))
}

/// `layer.forward(x)` with the mask drawn by the Flex kernel on Flex: the same distribution
/// (each element kept with probability `1 - prob` and scaled by `1 / (1 - prob)`), active under
/// the same conditions (training flag set, autodiff device, `prob > 0`). The mask's key comes
/// from the device's random generator, so a seeded run draws the same masks every time.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let active = layer.training.is_enabled() && x.device().is_autodiff() && layer.prob > 0.0;
    if !active || !on_flex(&x) {
        return layer.forward(x);
    }
    let keep = (1.0 - layer.prob) as f32;
    let mask = Tensor::from_dispatch(<Dispatch as TransformerKernels>::dropout_mask(
        x.clone().into_dispatch(),
        keep,
        key(&x.device()),
    ));
    x * mask
}

/// A 60-bit key from the device's (seedable) random generator (30-bit draws fit every `Int` type).
fn key(device: &Device) -> u64 {
    let halves = Tensor::<1, Int>::random([2], Distribution::Uniform(0.0, 2f64.powi(30)), device)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("two integers");
    ((halves[0] as u64) << 30) ^ halves[1] as u64
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::DropoutConfig;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;

    fn inputs(device: &Device) -> Tensor<2> {
        device.seed(3);
        // Wide enough to reach the clamped tails of `erf` and `exp`.
        Tensor::<2>::random([64, 97], Distribution::Normal(0.0, 3.0), device)
    }

    /// The kernel and Burn's composite GELU agree to 1e-6 in value and gradient on the same
    /// inputs (Burn's `gelu_backward` as the reference gradient).
    #[test]
    fn gelu_kernel_matches_burns_gelu_and_its_gradient() {
        let device = Device::flex().autodiff();
        let x = inputs(&device).require_grad();
        let ours = gelu(x.clone());
        let theirs = burn::tensor::activation::gelu(x.clone());
        ours.to_data()
            .assert_approx_eq::<f32>(&theirs.to_data(), Tolerance::absolute(1e-6));
        let weights = inputs(&device).detach();
        let grad_ours = (ours * weights.clone()).sum().backward();
        let grad_theirs = (theirs * weights).sum().backward();
        x.grad(&grad_ours)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(
                &x.grad(&grad_theirs).unwrap().to_data(),
                Tolerance::absolute(2e-6),
            );
    }

    /// On plain Flex (no autodiff) the kernel runs too, with the same values. (Off Flex the
    /// function is Burn's op itself; the text pipeline tests run BERT on wgpu through it.)
    #[test]
    fn gelu_without_autodiff() {
        let flex = Device::flex();
        let x = inputs(&flex);
        gelu(x.clone()).to_data().assert_approx_eq::<f32>(
            &burn::tensor::activation::gelu(x).to_data(),
            Tolerance::absolute(1e-6),
        );
    }

    /// The mask keeps `1 - prob` of the elements (within 4 σ over 200,000), scales them by
    /// `1 / (1 - prob)` and passes the gradient only through kept elements. That the device seed
    /// reproduces it is tested in `tests/dropout_seed.rs`, alone in its process: the other tests
    /// here draw from the same generator in parallel.
    #[test]
    fn dropout_keeps_the_right_share_scaled_and_its_gradient_is_the_mask() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.1).init();
        let x = Tensor::<2>::ones([400, 500], &device).require_grad();
        let y = dropout(&layer, x.clone());
        let grad = x.grad(&y.clone().sum().backward()).unwrap();
        let y = y.into_data().try_into_vec::<f32>().unwrap();
        let grad = grad.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(y, grad, "the gradient is the mask");
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64;
        let n = y.len() as f64;
        let sigma = (n * 0.9 * 0.1).sqrt();
        assert!((kept - 0.9 * n).abs() < 4.0 * sigma, "kept {kept} of {n}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
    }

    /// Inactive exactly where Burn's dropout is: evaluation (no autodiff), a frozen layer, p = 0.
    #[test]
    fn dropout_is_the_identity_where_burns_is() {
        let x = Tensor::<2>::ones([8, 8], &Device::flex());
        let y = dropout(&DropoutConfig::new(0.5).init(), x.clone());
        y.into_data().assert_eq(&x.to_data(), true);
        let autodiff = Device::flex().autodiff();
        let x = Tensor::<2>::ones([8, 8], &autodiff);
        let frozen = DropoutConfig::new(0.5).init().freeze();
        dropout(&frozen, x.clone())
            .into_data()
            .assert_eq(&x.to_data(), true);
        let none = DropoutConfig::new(0.0).init();
        dropout(&none, x.clone())
            .into_data()
            .assert_eq(&x.to_data(), true);
    }

    /// A LayerNorm of width `d` with random `γ` and `β` (not Burn's ones and zeros, so a
    /// gradient that mixed them up would show), and its epsilon.
    fn random_layer_norm(d: usize, epsilon: f64, device: &Device) -> LayerNorm {
        let mut layer = burn::nn::LayerNormConfig::new(d)
            .with_epsilon(epsilon)
            .init(device);
        let param = |mean| {
            burn::module::Param::from_tensor(Tensor::<1>::random(
                [d],
                Distribution::Normal(mean, 0.5),
                device,
            ))
        };
        layer.gamma = param(1.0);
        layer.beta = Some(param(0.0));
        layer
    }

    /// The kernel and Burn's LayerNorm agree in value and in the gradients of the input, `γ` and
    /// `β`, on shapes whose rows are not a whole number of tasks (64 rows) and whose width is not
    /// a whole number of lanes (16), with an input off zero mean and unit scale.
    #[test]
    fn layer_norm_kernel_matches_burns_layer_norm_and_its_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        for (shape, epsilon) in [([3, 70, 37], 1e-5), ([2, 5, 384], 1e-12), ([1, 1, 8], 1e-3)] {
            let layer = random_layer_norm(shape[2], epsilon, &device);
            let x =
                Tensor::<3>::random(shape, Distribution::Normal(0.7, 3.0), &device).require_grad();
            let weights = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let ours = layer_norm(&layer, x.clone(), epsilon);
            let theirs = layer.forward(x.clone());
            let at = format!("shape {shape:?}, epsilon {epsilon}");
            ours.to_data()
                .assert_approx_eq::<f32>(&theirs.to_data(), Tolerance::absolute(2e-5));
            let g_ours = (ours * weights.clone()).sum().backward();
            let g_theirs = (theirs * weights).sum().backward();
            let close = |a: Tensor<1>, b: Tensor<1>| {
                a.to_data()
                    .assert_approx_eq::<f32>(&b.to_data(), Tolerance::absolute(1e-4))
            };
            close(
                x.grad(&g_ours).unwrap().flatten(0, 2),
                x.grad(&g_theirs).unwrap().flatten(0, 2),
            );
            let beta = layer.beta.as_ref().unwrap();
            close(
                layer.gamma.grad(&g_ours).expect(&at),
                layer.gamma.grad(&g_theirs).expect(&at),
            );
            close(
                beta.grad(&g_ours).expect(&at),
                beta.grad(&g_theirs).expect(&at),
            );
        }
    }

    /// The backward's parameter gradients are summed per task, then over tasks in row order: two
    /// runs over several tasks give the same bits whatever rayon's schedule was.
    #[test]
    fn layer_norm_gradients_do_not_depend_on_the_schedule() {
        let device = Device::flex().autodiff();
        device.seed(6);
        let layer = random_layer_norm(96, 1e-5, &device);
        let x =
            Tensor::<2>::random([1000, 96], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<2>::random([1000, 96], Distribution::Normal(0.0, 1.0), &device);
        let grads = || {
            let g = (layer_norm(&layer, x.clone(), 1e-5) * weights.clone())
                .sum()
                .backward();
            (layer.gamma.grad(&g).unwrap(), x.grad(&g).unwrap())
        };
        let (gamma_a, x_a) = grads();
        let (gamma_b, x_b) = grads();
        gamma_a.into_data().assert_eq(&gamma_b.into_data(), true);
        x_a.into_data().assert_eq(&x_b.into_data(), true);
    }

    /// Without autodiff the kernel runs too, with Burn's values; a layer without `β` takes Burn's
    /// op.
    #[test]
    fn layer_norm_without_autodiff_or_without_beta() {
        let device = Device::flex();
        device.seed(7);
        let layer = random_layer_norm(50, 1e-5, &device);
        let x = Tensor::<2>::random([9, 50], Distribution::Normal(1.0, 2.0), &device);
        layer_norm(&layer, x.clone(), 1e-5)
            .into_data()
            .assert_approx_eq::<f32>(
                &layer.forward(x.clone()).into_data(),
                Tolerance::absolute(2e-5),
            );
        let mut no_beta = layer;
        no_beta.beta = None;
        layer_norm(&no_beta, x.clone(), 1e-5)
            .into_data()
            .assert_eq(&no_beta.forward(x).into_data(), true);
    }

    /// An additive `[batch, 1, 1, keys]` mask: 0 or BERT's -10000 at random, the first key of
    /// each batch kept.
    fn random_mask(batch: usize, keys: usize, device: &Device) -> Tensor<4> {
        let keep = Tensor::<4>::random([batch, 1, 1, keys], Distribution::Bernoulli(0.7), device);
        let first = Tensor::<4>::ones([batch, 1, 1, 1], device);
        let keep = keep.slice_assign([0..batch, 0..1, 0..1, 0..1], first);
        (keep - 1.0) * 10000.0
    }

    /// The kernel and Burn's ops (`softmax(scores · scale + mask)`) agree in value and in the
    /// scores' gradient, for rows not a whole number of lanes (16) or tasks (128 rows) and rows
    /// of BERT's width, several batches apart so each row must find its own mask row.
    #[test]
    fn masked_softmax_kernel_matches_burns_ops_and_their_gradient() {
        let device = Device::flex().autodiff();
        device.seed(8);
        for (shape, scale) in [
            ([3, 2, 5, 37], 0.125),
            ([2, 12, 9, 64], 0.3),
            ([1, 1, 1, 3], 1.0),
        ] {
            let [batch, _, _, keys] = shape;
            let mask = random_mask(batch, keys, &device);
            let scores =
                Tensor::<4>::random(shape, Distribution::Normal(0.5, 4.0), &device).require_grad();
            let weights = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let ours = masked_softmax(scores.clone(), scale, &mask);
            let theirs = burn::tensor::activation::softmax(
                scores.clone().mul_scalar(scale) + mask.clone(),
                3,
            );
            ours.to_data()
                .assert_approx_eq::<f32>(&theirs.to_data(), Tolerance::absolute(1e-6));
            let g_ours = (ours * weights.clone()).sum().backward();
            let g_theirs = (theirs * weights).sum().backward();
            scores
                .grad(&g_ours)
                .unwrap()
                .to_data()
                .assert_approx_eq::<f32>(
                    &scores.grad(&g_theirs).unwrap().to_data(),
                    Tolerance::absolute(1e-6),
                );
        }
    }

    /// Without autodiff the kernel runs too; a mask of another shape takes Burn's ops.
    #[test]
    fn masked_softmax_without_autodiff_or_with_another_mask_shape() {
        let device = Device::flex();
        device.seed(9);
        let scores = Tensor::<4>::random([2, 3, 4, 20], Distribution::Normal(0.0, 2.0), &device);
        let burns = |mask: &Tensor<4>| {
            burn::tensor::activation::softmax(scores.clone().mul_scalar(0.5) + mask.clone(), 3)
                .into_data()
        };
        let mask = random_mask(2, 20, &device);
        masked_softmax(scores.clone(), 0.5, &mask)
            .into_data()
            .assert_approx_eq::<f32>(&burns(&mask), Tolerance::absolute(1e-6));
        let per_query = Tensor::<4>::random([2, 1, 4, 20], Distribution::Normal(0.0, 1.0), &device);
        masked_softmax(scores.clone(), 0.5, &per_query)
            .into_data()
            .assert_eq(&burns(&per_query), true);
    }
}

//! Fast kernels for the float ops that dominate a transformer's training step on the CPU, as a
//! Burn backend extension: GELU (forward and backward, one pass each with a vectorised `erf`)
//! and dropout masks (a counter-based hash instead of one ChaCha draw per element). On a
//! MiniLM-L6 fine-tuning step on Flex, libm's scalar `erff` and Burn's per-element random
//! draws were about a third of the time (`cargo xtask bench bert-step`).
//!
//! [`gelu`] and [`dropout`] take the kernels on Flex and Burn's own ops everywhere else (wgpu,
//! CUDA, … where burn-fusion already fuses them); the tests pin the two paths together.
//!
//! Files: [`approx`] (the `erf`/`exp` approximations and the hash), [`flex`] (the kernels),
//! [`autodiff`] (GELU as one tracked op).

mod approx;
mod autodiff;
mod flex;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Int, Tensor};

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
}

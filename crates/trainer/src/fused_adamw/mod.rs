//! AdamW whose update on Flex is one pass per parameter instead of about fifteen.
//!
//! Burn's `AdamW` updates a parameter with a chain of tensor ops (the two moments, their bias
//! corrections, the square root, the division, the decay, the step), each a full pass over the
//! parameter, on one thread. On MiniLM-L6's fine-tuning step that chain was 10% of the thread that
//! drives the step (22.7 M parameters, half of them the word table; `perf record` of `cargo xtask
//! bench bert-step`), on the fake-quant bench's MLP a quarter of the float step.
//!
//! [`FusedAdamW`] is a Burn [`Optimizer`] whose state is Burn's own [`AdamWState`], so its
//! checkpoints are AdamW's and a run resumes across the switch. On Flex (`f32`) one kernel reads
//! the parameter, gradient and moments once and writes them once, on every thread of the rayon
//! pool, and computes exactly what Burn's `AdamW` computes: the same `f32` operations in the same
//! order, so the two agree bit for bit (the tests hold them to that). Elsewhere (wgpu, CUDA, other
//! dtypes) it is Burn's `AdamW`, built from the same settings.
//!
//! Files: [`flex`] (the kernel).

mod flex;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::config::Config;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor};

use crate::TrainerError;

/// The scalars of one AdamW update, as the kernel applies them (each already in the `f32` that
/// Burn's tensor ops would use).
#[derive(Debug, Clone, Copy)]
pub struct AdamWScalars {
    /// `β₁`, `β₂`.
    pub beta: (f32, f32),
    /// `1 - β₁`, `1 - β₂`, computed in `f32` as Burn does.
    pub one_minus_beta: (f32, f32),
    /// The bias corrections `1 - β₁ᵗ`, `1 - β₂ᵗ` (`f32::powi`, as Burn).
    pub correction: (f32, f32),
    /// `ε`, added to `sqrt(v̂)`.
    pub epsilon: f32,
    /// The learning rate.
    pub lr: f32,
    /// `1 - lr · λ` (computed in `f64`, then rounded), or `None` without decay.
    pub keep: Option<f32>,
    /// Whether the moments start now (`m = (1 - β₁) g`, not `β₁ m + (1 - β₁) g`).
    pub first: bool,
}

/// The fused AdamW update; implemented for Flex, dispatched from `Tensor`s by [`FusedAdamW`].
#[backend_extension(Flex)]
pub trait AdamWKernels: Backend {
    /// One AdamW update of `param` by `grad` with the moments `m`, `v` (ignored when
    /// `scalars.first`): `(param, m, v)` after it, in the parameter's shape.
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scalars: AdamWScalars,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// [`FusedAdamW`]'s settings, Burn's `AdamWConfig` defaults (no AMSGrad, no cautious decay).
#[derive(Config, Debug)]
pub struct FusedAdamWConfig {
    /// Decay rate of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay rate of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to `sqrt(v̂)` for numerical stability.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// Decoupled weight decay `λ` (the parameter is scaled by `1 - lr · λ` each step).
    #[config(default = 1e-4)]
    pub weight_decay: f32,
}

impl FusedAdamWConfig {
    /// The optimizer, after checking the settings (the error names the field).
    pub fn build(&self) -> Result<FusedAdamW, TrainerError> {
        let field = |name: &str, message: String| TrainerError::Config {
            origin: "optimizer".into(),
            message: format!("{name}: {message}"),
        };
        for (name, beta) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(field(name, format!("must be in [0, 1), got {beta}")));
            }
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            let e = self.epsilon;
            return Err(field("epsilon", format!("must be positive, got {e}")));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            let w = self.weight_decay;
            return Err(field("weight_decay", format!("must be ≥ 0, got {w}")));
        }
        let burn = AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .build();
        Ok(FusedAdamW {
            config: self.clone(),
            burn,
        })
    }
}

/// AdamW with Burn's `AdamW` state and results, one fused kernel per parameter on Flex (see the
/// module docs). Built by [`FusedAdamWConfig::build`]; use it where Burn's `AdamW` would go
/// (`ModuleOptimizer::from(optimizer)`).
#[derive(Clone)]
pub struct FusedAdamW {
    config: FusedAdamWConfig,
    /// Burn's AdamW with the same settings: the update off Flex.
    burn: AdamW,
}

impl FusedAdamW {
    /// The kernel's scalars for the step after `time` earlier ones at learning rate `lr`.
    fn scalars(&self, lr: LearningRate, time: usize) -> AdamWScalars {
        let c = &self.config;
        let t = (time + 1) as i32;
        let decay_rate = lr * c.weight_decay as f64;
        AdamWScalars {
            beta: (c.beta_1, c.beta_2),
            one_minus_beta: (1.0 - c.beta_1, 1.0 - c.beta_2),
            correction: (1.0 - c.beta_1.powi(t), 1.0 - c.beta_2.powi(t)),
            epsilon: c.epsilon,
            lr: lr as f32,
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            first: time == 0,
        }
    }
}

/// Whether `tensor` is one the kernel takes: `f32` on Flex.
fn on_flex_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32 && tensor.device() == Device::flex()
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let moments_fit = state.as_ref().is_none_or(|s| {
            let m = &s.momentum;
            m.max_moment_2.is_none() && on_flex_f32(&m.moment_1) && on_flex_f32(&m.moment_2)
        });
        if !(on_flex_f32(&tensor) && on_flex_f32(&grad) && moments_fit) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let time = state.as_ref().map_or(0, |s| s.momentum.time);
        let scalars = self.scalars(lr, time);
        let (m, v) = match state {
            Some(s) => (s.momentum.moment_1, s.momentum.moment_2),
            // Not read on the first step.
            None => (grad.clone(), grad.clone()),
        };
        let (param, m, v) = <Dispatch as AdamWKernels>::adamw_update(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            scalars,
        );
        let momentum = AdaptiveMomentumState::new(
            time + 1,
            Tensor::from_dispatch(m),
            Tensor::from_dispatch(v),
        );
        (
            Tensor::from_dispatch(param),
            Some(AdamWState::new(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};
    use burn::tensor::Distribution;

    use super::*;

    fn bits<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
        t.to_data()
            .try_to_vec::<f32>()
            .expect("f32 values")
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    fn assert_same_state<const D: usize>(name: &str, ours: &AdamWState<D>, burns: &AdamWState<D>) {
        let (a, b) = (&ours.momentum, &burns.momentum);
        assert_eq!(a.time, b.time, "{name}: time");
        assert!(bits(&a.moment_1) == bits(&b.moment_1), "{name}: m differs");
        assert!(bits(&a.moment_2) == bits(&b.moment_2), "{name}: v differs");
        assert!(a.max_moment_2.is_none(), "{name}: no AMSGrad state");
    }

    /// Steps of the kernel and of Burn's `AdamW` on the same parameter: the parameter and both
    /// moments equal bit for bit after every step, with and without weight decay, at changing
    /// learning rates, for a single element, an odd length and a matrix split over several rayon
    /// chunks, one gradient a transposed (strided) view.
    #[test]
    fn flex_kernel_equals_burns_adamw_bit_for_bit() {
        let device = Device::flex();
        device.seed(3);
        for weight_decay in [0.0, 0.01] {
            let config = FusedAdamWConfig::new().with_weight_decay(weight_decay);
            let fused = config.build().expect("valid settings");
            let burn = fused.burn.clone();
            for dims in [[1, 1], [1, 37], [5, 7001]] {
                let name = format!("{dims:?}, weight decay {weight_decay}");
                let start = Tensor::<2>::random(dims, Distribution::Normal(0.0, 0.5), &device);
                let (mut ours, mut theirs) = (start.clone(), start);
                let (mut our_state, mut their_state) = (None, None);
                for (step, lr) in [1e-3, 3e-4, 1e-2, 2e-3].into_iter().enumerate() {
                    let grad = if step == 2 {
                        let [a, b] = dims;
                        Tensor::<2>::random([b, a], Distribution::Normal(0.0, 1.0), &device)
                            .swap_dims(0, 1)
                    } else {
                        Tensor::<2>::random(dims, Distribution::Normal(0.0, 1.0), &device)
                    };
                    (ours, our_state) = fused.step(lr, ours, grad.clone(), our_state);
                    (theirs, their_state) = burn.step(lr, theirs, grad, their_state);
                    let name = format!("{name}, step {step}");
                    assert!(bits(&ours) == bits(&theirs), "{name}: parameter differs");
                    let (a, b) = (our_state.as_ref(), their_state.as_ref());
                    assert_same_state(&name, a.expect("state"), b.expect("state"));
                }
            }
        }
    }

    /// A parameter whose memory is shared (a clone kept elsewhere) is updated into a copy: the
    /// clone keeps its values.
    #[test]
    fn a_shared_parameter_is_not_written_over() {
        let device = Device::flex();
        let fused = FusedAdamWConfig::new().build().expect("valid settings");
        let param = Tensor::<1>::random([100], Distribution::Default, &device);
        let before = bits(&param);
        let kept = param.clone();
        let grad = Tensor::<1>::ones([100], &device);
        let (updated, _) = fused.step(0.1, param, grad, None);
        assert!(bits(&kept) == before, "the kept clone changed");
        assert!(bits(&updated) != before, "the parameter did not move");
    }

    /// Through `ModuleOptimizer` on an autodiff model: the same weights as Burn's `AdamW` step
    /// for step, and a record saved by one resumes the other (the state is `AdamWState`).
    #[test]
    fn a_model_trains_and_resumes_as_under_burns_adamw() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let config = FusedAdamWConfig::new().with_weight_decay(0.01);
        let fused = || ModuleOptimizer::from(config.build().expect("valid settings"));
        let burn = || {
            ModuleOptimizer::from(
                AdamWConfig::new()
                    .with_weight_decay(config.weight_decay)
                    .build(),
            )
        };
        let start: Linear = LinearConfig::new(24, 9).init(&device);
        let x = Tensor::<2>::random([6, 24], Distribution::Normal(0.0, 1.0), &device);
        let grads = |model: &Linear, scale: f32| {
            let loss = model.forward(x.clone()).mul_scalar(scale).square().mean();
            GradientsParams::from_grads(loss.backward(), model)
        };
        let weights = |m: &Linear| (bits(&m.weight.val()), bits(&m.bias.as_ref().unwrap().val()));
        let (mut ours, mut theirs) = (start.clone(), start);
        let (mut our_optim, mut their_optim) = (fused(), burn());
        for scale in [1.0, 0.3, -2.0] {
            ours = our_optim.step(1e-2, ours.clone(), grads(&ours, scale));
            theirs = their_optim.step(1e-2, theirs.clone(), grads(&theirs, scale));
            assert!(
                weights(&ours) == weights(&theirs),
                "scale {scale}: weights differ"
            );
        }
        // Each optimizer's record loaded into the other continues as the original would.
        let from_ours = burn().from_bytes(our_optim.into_bytes().unwrap()).unwrap();
        let from_theirs = fused()
            .from_bytes(their_optim.into_bytes().unwrap())
            .unwrap();
        for (name, mut resumed, mut original) in [
            ("Burn's AdamW from our record", from_ours, our_optim),
            ("ours from Burn's AdamW record", from_theirs, their_optim),
        ] {
            let a = resumed.step(1e-2, ours.clone(), grads(&ours, 0.5));
            let b = original.step(1e-2, ours.clone(), grads(&ours, 0.5));
            assert!(weights(&a) == weights(&b), "{name}: weights differ");
        }
    }

    /// Settings out of range fail with the field's name.
    #[test]
    fn bad_settings_name_their_field() {
        for (config, field) in [
            (FusedAdamWConfig::new().with_beta_1(1.0), "beta_1"),
            (FusedAdamWConfig::new().with_beta_2(-0.1), "beta_2"),
            (FusedAdamWConfig::new().with_epsilon(0.0), "epsilon"),
            (
                FusedAdamWConfig::new().with_weight_decay(f32::NAN),
                "weight_decay",
            ),
        ] {
            let error = config.build().err().expect("rejected").to_string();
            assert!(error.contains(field), "`{error}` does not name {field}");
        }
    }
}

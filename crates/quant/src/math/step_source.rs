//! [`StepSource`]: a grid step as the state it is computed from (an observer's range, a learned
//! scale), so that a consumer of the step — the integer bias's accumulator step `s_x · s_w` —
//! can compute it inside its own kernel instead of as tensor ops of its own: on a GPU each is a
//! launch, and in a model burn-fusion did not fuse them (2–3 launches per layer before the
//! rounding).

use burn::tensor::Tensor;

use super::fused::{
    STEP_AFFINE_RANGE, STEP_GIVEN, STEP_LEARNED, STEP_ONE, STEP_SYMMETRIC_RANGE, StepRule,
};
use crate::{QuantSpec, SCALE_EPS, no_grad};

/// A grid step, `[n]`, without gradients: tensors `(low, high)` and the rule that makes them a
/// step (see [`StepRule`]).
#[derive(Debug, Clone)]
pub(crate) struct StepSource {
    pub low: Tensor<1>,
    pub high: Tensor<1>,
    pub rule: StepRule,
}

impl StepSource {
    /// The scale of an observed range `(min, max)` on `spec`'s grid ([`crate::scale_from_range`]).
    pub fn range(min: Tensor<1>, max: Tensor<1>, spec: &QuantSpec) -> Self {
        let levels = (spec.qmax() - spec.qmin()) as f32;
        let (kind, divisor) = if spec.symmetric {
            (STEP_SYMMETRIC_RANGE, levels / 2.0)
        } else {
            (STEP_AFFINE_RANGE, levels)
        };
        Self {
            low: min,
            high: max,
            rule: StepRule {
                kind,
                floor: SCALE_EPS as f32,
                divisor,
            },
        }
    }

    /// A learned scale stored as `anchor + delta` (see `crate::quantizer::LearnedValue`), clamped
    /// at `SCALE_EPS`, over `divisor` (PACT's grid levels; 1 for LSQ). The kernel adds the two
    /// itself, so the sum costs no launch of its own.
    pub fn learned(anchor: Tensor<1>, delta: Tensor<1>, divisor: f32) -> Self {
        Self {
            low: no_grad(anchor),
            high: no_grad(delta),
            rule: StepRule {
                kind: STEP_LEARNED,
                floor: SCALE_EPS as f32,
                divisor,
            },
        }
    }

    /// A step given as it is.
    pub fn given(step: Tensor<1>) -> Self {
        let step = no_grad(step);
        Self {
            low: step.clone(),
            high: step,
            rule: StepRule {
                kind: STEP_GIVEN,
                floor: 0.0,
                divisor: 1.0,
            },
        }
    }

    /// The step as tensor ops: what the fused kernel computes from the same state.
    pub fn step(&self) -> Tensor<1> {
        let rule = &self.rule;
        match rule.kind {
            STEP_ONE => self.low.ones_like(),
            STEP_GIVEN => self.low.clone(),
            STEP_LEARNED => (self.low.clone() + self.high.clone())
                .clamp_min(rule.floor)
                .div_scalar(rule.divisor),
            _ => {
                let min_neg = self.low.clone().clamp_max(0.0);
                let max_pos = self.high.clone().clamp_min(0.0);
                let bound = if rule.kind == STEP_SYMMETRIC_RANGE {
                    max_pos.max_pair(min_neg.neg())
                } else {
                    max_pos - min_neg
                };
                bound.div_scalar(rule.divisor).clamp_min(rule.floor)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::math::round_to_step_product;
    use crate::testing::values;

    /// The sources a layer's integer bias meets, `n` parameters each: an affine range (one
    /// across zero, one above it, one unseen: infinite), a symmetric per-channel range, an LSQ
    /// scale (one below the floor, one negative), a PACT clip over its levels, a given step.
    fn sources(n: usize, device: &Device) -> Vec<(&'static str, StepSource)> {
        let t = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), device);
        let per = |f: fn(usize) -> f32| t((0..n).map(f).collect());
        let uint8 = QuantSpec::new().with_symmetric(false).with_signed(false);
        let int4 = QuantSpec::new().with_bits(4);
        vec![
            (
                "affine range",
                StepSource::range(t(vec![-1.3]), t(vec![2.7]), &uint8),
            ),
            (
                "range above zero",
                StepSource::range(t(vec![0.5]), t(vec![4.0]), &uint8),
            ),
            (
                "unseen range",
                StepSource::range(t(vec![f32::INFINITY]), t(vec![f32::NEG_INFINITY]), &uint8),
            ),
            (
                "symmetric per-channel range",
                StepSource::range(
                    per(|i| -0.3 - 0.7 * i as f32),
                    per(|i| 0.2 + 0.9 * (i % 3) as f32),
                    &int4,
                ),
            ),
            (
                "lsq scales",
                StepSource::learned(
                    per(|i| [0.013, 1e-9, -0.5, 0.21][i % 4]),
                    per(|i| [0.001, 0.0, 0.25, -0.03][i % 3]),
                    1.0,
                ),
            ),
            (
                "pact clip",
                StepSource::learned(t(vec![6.1]), t(vec![-0.2]), 255.0),
            ),
            ("given step", StepSource::given(t(vec![0.0625]))),
        ]
    }

    /// The fused rounding to `s_a · s_b`, the steps computed in the kernel, equals the composite
    /// `round(x / s) · s` with the steps as tensor ops, on Flex and on wgpu, for every pair of
    /// step sources (and one source alone), and the gradient passes straight through. Inputs sit
    /// at least an eighth of a step from a tie, so a driver's division cannot flip a code; the
    /// host mirror of the kernel's step ([`StepRule::step`]) places them.
    #[test]
    fn fused_rounding_to_a_step_product_equals_composite() {
        let devices = crate::testing::kernel_devices();
        let n = 37;
        for device in devices {
            let sources = sources(n, &device);
            let pairs = sources
                .iter()
                .flat_map(|a| sources.iter().map(move |b| (a, Some(b))).chain([(a, None)]));
            for ((a_name, a), b) in pairs {
                let name = format!("{device:?}: {a_name} × {:?}", b.map(|b| b.0));
                let b = b.map(|(_, b)| b);
                let host = |s: &StepSource| {
                    let (low, high) = (values(s.low.clone()), values(s.high.clone()));
                    (0..n)
                        .map(|e| s.rule.step(low[e % low.len()], high[e % high.len()]))
                        .collect::<Vec<_>>()
                };
                let steps: Vec<f32> = match b {
                    Some(b) => host(a).iter().zip(host(b)).map(|(a, b)| a * b).collect(),
                    None => host(a),
                };
                let composite = match b {
                    Some(b) => a.step() * b.step(),
                    None => a.step(),
                };
                let composite_steps = values(composite.clone());
                for (e, (h, c)) in steps.iter().zip(&composite_steps).enumerate() {
                    let same = if composite_steps.len() == 1 {
                        composite_steps[0]
                    } else {
                        *c
                    };
                    assert_eq!(*h, same, "{name}: host step {e}");
                }
                let x_host: Vec<f32> = (0..n)
                    .map(|e| {
                        let code = (e as i64 * 7919 % 201 - 100) as f32;
                        let eighths = (e as i64 * 37 % 7 - 3) as f32 / 8.0;
                        (code + eighths) * steps[e]
                    })
                    .collect();
                let x = Tensor::<1>::from_floats(x_host.as_slice(), &device).require_grad();
                let fused = round_to_step_product(&x, a, b).expect("the kernels run here");
                let expected = crate::round_ste(x.clone() / composite.clone()) * composite;
                for (e, (f, r)) in values(fused.clone())
                    .iter()
                    .zip(values(expected))
                    .enumerate()
                {
                    assert!((f - r).abs() <= 1e-6 * r.abs(), "{name}: {e}: {f} vs {r}");
                }
                let dy = Tensor::<1>::random([n], Distribution::Default, &device);
                let dx = x.grad(&(fused * dy.clone()).sum().backward()).unwrap();
                assert_eq!(values(dx), values(dy), "{name}: straight through");
            }
        }
    }
}

#[cfg(test)]
mod observe_rule_tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::math::ObserveRule;

    /// The rule by which the observer kernel makes a weight's step for the integer bias it
    /// rounds ([`ObserveRule::step_rule`]) is the rule the rounding kernel would read from the
    /// same quantizer's state ([`StepSource::range`]), for symmetric and affine grids of several
    /// widths.
    #[test]
    fn observer_step_rule_is_the_range_step_rule() {
        let device = Device::flex();
        let range = Tensor::<1>::zeros([1], &device);
        for bits in [2, 4, 8] {
            for (symmetric, signed, narrow_range) in [
                (true, true, true),
                (true, true, false),
                (false, false, false),
                (false, true, false),
            ] {
                let spec = QuantSpec::new()
                    .with_bits(bits)
                    .with_symmetric(symmetric)
                    .with_signed(signed)
                    .with_narrow_range(narrow_range);
                let from_state = StepSource::range(range.clone(), range.clone(), &spec).rule;
                let from_observer = ObserveRule::for_spec(&spec, 1.0).step_rule();
                assert_eq!(from_observer, from_state, "{spec:?}");
            }
        }
    }
}

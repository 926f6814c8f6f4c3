//! The learned rounding of one weight tensor (Nagel et al., "Up or Down? Adaptive Rounding for
//! Post-Training Quantization", ICML 2020): each weight is rounded down or up on its grid, as a
//! continuous variable `V` decides, instead of to the nearest grid point.
//!
//! All tensors are a weight's 4-D view under its quantizer's layout, with the scale and zero
//! point broadcast against it, so every granularity is the same code.

use burn::tensor::Tensor;

/// The rectified sigmoid's stretch `ζ` and shift `γ` (the paper's §3.3, as AIMET and Brevitas
/// set them): `h(V) = clamp(σ(V)(ζ − γ) + γ, 0, 1)` reaches 0 and 1 exactly, so the
/// regularizer can drive every weight to a hard decision.
pub(crate) const ZETA: f64 = 1.1;
/// See [`ZETA`].
pub(crate) const GAMMA: f64 = -0.1;

/// One weight's grid and where its values fall on it.
#[derive(Debug, Clone)]
pub(crate) struct WeightGrid {
    /// `floor(w / s)`: the grid point below each weight (before the zero point).
    pub(crate) floor: Tensor<4>,
    /// The fractional part `w / s − floor(w / s)`, in `[0, 1)`: how far up each weight lies.
    pub(crate) fraction: Tensor<4>,
    /// The scale, broadcast against the view.
    pub(crate) scale: Tensor<4>,
    /// The zero point, broadcast against the view.
    pub(crate) zero_point: Tensor<4>,
    /// The integer grid `[qmin, qmax]`.
    pub(crate) range: (i32, i32),
}

impl WeightGrid {
    /// The grid of `weight` (a view) under `scale` and `zero_point` (broadcastable) on
    /// `[qmin, qmax]`. The weight carries no gradient here: rounding is learned, not the weight.
    pub(crate) fn new(
        weight: Tensor<4>,
        scale: Tensor<4>,
        zero_point: Tensor<4>,
        range: (i32, i32),
    ) -> Self {
        let scaled = weight / scale.clone();
        let floor = scaled.clone().floor();
        WeightGrid {
            fraction: scaled - floor.clone(),
            floor,
            scale,
            zero_point,
            range,
        }
    }

    /// `V` where `h(V)` equals each weight's fractional part, so that learning starts from the
    /// float weights themselves (the paper's initialisation).
    pub(crate) fn initial_v(&self) -> Tensor<4> {
        // σ(V) = (f − γ)/(ζ − γ)  ⇔  V = −ln((ζ − γ)/(f − γ) − 1); f ∈ [0, 1) keeps it finite.
        let ratio = (self.fraction.clone() - GAMMA).recip() * (ZETA - GAMMA);
        (ratio - 1.0).log().neg()
    }

    /// The weight rounded by `up` (in `[0, 1]`, soft while learning, 0 or 1 once decided):
    /// `s · (clamp(floor + up + zp, qmin, qmax) − zp)`.
    pub(crate) fn weight(&self, up: Tensor<4>) -> Tensor<4> {
        let (qmin, qmax) = self.range;
        let codes = (self.floor.clone() + up + self.zero_point.clone()).clamp(qmin, qmax);
        (codes - self.zero_point.clone()) * self.scale.clone()
    }

    /// Each weight's integer code under `up`: `clamp(floor + up + zp, qmin, qmax)`.
    pub(crate) fn codes(&self, up: Tensor<4>) -> Tensor<4> {
        let (qmin, qmax) = self.range;
        (self.floor.clone() + up + self.zero_point.clone()).clamp(qmin, qmax)
    }

    /// Each weight's code when rounded to the nearest grid point, as the weight quantizer rounds
    /// it (half to even, as `round`).
    pub(crate) fn nearest_codes(&self) -> Tensor<4> {
        let (qmin, qmax) = self.range;
        let scaled = self.floor.clone() + self.fraction.clone();
        (scaled.round() + self.zero_point.clone()).clamp(qmin, qmax)
    }
}

/// The rectified sigmoid `h(V) = clamp(σ(V)(ζ − γ) + γ, 0, 1)`: how far up each weight rounds.
pub(crate) fn rectified_sigmoid(v: Tensor<4>) -> Tensor<4> {
    burn::tensor::activation::sigmoid(v)
        .mul_scalar(ZETA - GAMMA)
        .add_scalar(GAMMA)
        .clamp(0.0, 1.0)
}

/// The hard decision of `V`: 1 (up) where `h(V) ≥ ½`, that is where `V ≥ 0`, else 0.
pub(crate) fn hard_up(v: Tensor<4>) -> Tensor<4> {
    v.greater_equal_elem(0.0).float()
}

/// The regularizer `Σ 1 − |2h(V) − 1|^β` that pushes every `h(V)` to 0 or 1; a large `β` at first
/// leaves the rounding free to move, a small one at the end forces the decisions.
pub(crate) fn rounding_regularizer(v: Tensor<4>, beta: f64) -> Tensor<1> {
    let h = rectified_sigmoid(v);
    let spread = (h * 2.0 - 1.0).abs().powf_scalar(beta);
    (spread.neg() + 1.0).sum()
}

/// `β` at iteration `it` of `iterations`: none during the warm-up (the first `warmup` share,
/// where only the reconstruction counts), then falling linearly from `start` to `end`
/// (`β = end + (start − end)(1 − t)`, AIMET's `LinearTempDecay`).
pub(crate) fn beta_at(
    it: usize,
    iterations: usize,
    warmup: f64,
    [start, end]: [f64; 2],
) -> Option<f64> {
    let warm = (warmup * iterations as f64) as usize;
    if it < warm {
        return None;
    }
    let t = (it - warm) as f64 / (iterations - warm).max(1) as f64;
    Some(end + (start - end) * (1.0 - t).max(0.0))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;
    use crate::testing::{assert_close, values};

    fn grid(w: &[f32], scale: f32) -> WeightGrid {
        let device = Device::flex();
        let w = Tensor::<1>::from_floats(w, &device).reshape([1, 1, 1, w.len()]);
        let s = Tensor::<4>::full([1, 1, 1, 1], scale, &device);
        WeightGrid::new(w, s.clone(), s.zeros_like(), (-8, 7))
    }

    /// `h(V₀)` is the fractional part, so the soft weight at the start is the float weight
    /// (inside the grid's range) and learning starts where the float model is.
    #[test]
    fn the_start_is_the_float_weight() {
        let w = [0.13, -0.52, 0.249, 0.0, 0.64, -0.31];
        let g = grid(&w, 0.1);
        let start = g.weight(rectified_sigmoid(g.initial_v()));
        assert_close("soft weight at V₀", &values(start), &w);
    }

    /// Hard decisions give grid points: all up is `ceil`, all down is `floor`, both clamped to
    /// the grid; `nearest_codes` is `round` (half to even).
    #[test]
    fn hard_decisions_are_grid_points() {
        let g = grid(&[0.13, -0.52, 0.25, 0.95, -0.95], 0.1);
        let ones = g.floor.ones_like();
        assert_eq!(values(g.codes(ones.clone())), [2.0, -5.0, 3.0, 7.0, -8.0]);
        assert_eq!(
            values(g.codes(ones.zeros_like())),
            [1.0, -6.0, 2.0, 7.0, -8.0]
        );
        assert_eq!(values(g.nearest_codes()), [1.0, -5.0, 2.0, 7.0, -8.0]);
        assert_close(
            "weight of codes",
            &values(g.weight(ones)),
            &[0.2, -0.5, 0.3, 0.7, -0.8],
        );
    }

    /// The regularizer is 0 for decided weights (`h` = 0 or 1) and largest (`n`) at `h` = ½; `V ≥ 0` is up.
    #[test]
    fn the_regularizer_vanishes_on_decided_weights() {
        let device = Device::flex();
        let decided = Tensor::<1>::from_floats([-20.0, 20.0, 9.0], &device).reshape([1, 1, 1, 3]);
        let undecided = Tensor::<4>::zeros([1, 1, 1, 3], &device);
        let at = |v: Tensor<4>, beta| values(rounding_regularizer(v, beta))[0];
        assert!(at(decided.clone(), 2.0).abs() < 1e-6);
        assert!((at(undecided.clone(), 2.0) - 3.0).abs() < 1e-6);
        assert_eq!(values(hard_up(decided)), [0.0, 1.0, 1.0]);
        assert_eq!(values(hard_up(undecided)), [1.0, 1.0, 1.0]);
    }

    #[test]
    fn beta_is_off_during_warmup_then_falls_from_start_to_end() {
        let b = |it| beta_at(it, 100, 0.2, [20.0, 2.0]);
        assert_eq!(b(0), None);
        assert_eq!(b(19), None);
        assert_eq!(b(20), Some(20.0));
        assert!((b(60).unwrap() - 11.0).abs() < 1e-9);
        assert!((b(100).unwrap() - 2.0).abs() < 1e-9);
    }
}

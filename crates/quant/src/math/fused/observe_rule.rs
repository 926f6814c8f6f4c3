//! One observer update of one parameter, as the fused kernels compute it: the batch's range
//! folded into the running one, then the scale and zero point of the result — the arithmetic of
//! `Observer::observe` and `qparams_from_range`, in the same order, so the results are the same.
//! The CubeCL kernel (`cube::kernels::observe`) mirrors this function line for line.

use super::{STEP_AFFINE_RANGE, STEP_SYMMETRIC_RANGE, StepRule};

/// How a batch's range is folded in, and the grid the qparams are for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObserveRule {
    /// Negative: running extremes (min-max observer); 1 or more: the batch's range alone;
    /// otherwise the moving-average constant.
    pub averaging: f32,
    pub qmin: f32,
    pub qmax: f32,
    /// Whether the grid is symmetric (the batch range is then `±max |x|`).
    pub symmetric: bool,
    /// The zero point of a symmetric grid.
    pub symmetric_zero_point: f32,
    /// The smallest scale.
    pub eps: f32,
}

impl ObserveRule {
    /// The rule for `spec`'s grid, folding batches in with `averaging` (see [`Self::averaging`]).
    pub fn for_spec(spec: &crate::QuantSpec, averaging: f32) -> Self {
        ObserveRule {
            averaging,
            qmin: spec.qmin() as f32,
            qmax: spec.qmax() as f32,
            symmetric: spec.symmetric,
            symmetric_zero_point: spec.symmetric_zero_point() as f32,
            eps: crate::SCALE_EPS as f32,
        }
    }

    /// The rule from [`super::FakeQuantKernels::observe_range`]'s arguments, in their order.
    pub fn from_args(
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
    ) -> Self {
        ObserveRule {
            averaging,
            qmin,
            qmax,
            symmetric,
            symmetric_zero_point,
            eps,
        }
    }

    /// The rule by which a kernel computes this grid's step from a range, as
    /// [`crate::math::StepSource::range`] gives it: the weight's factor of an integer bias's
    /// accumulator step.
    pub fn step_rule(&self) -> StepRule {
        let levels = self.qmax - self.qmin;
        let (kind, divisor) = if self.symmetric {
            (STEP_SYMMETRIC_RANGE, levels / 2.0)
        } else {
            (STEP_AFFINE_RANGE, levels)
        };
        StepRule {
            kind,
            floor: self.eps,
            divisor,
        }
    }

    /// `[min, max, scale, zero_point]` after folding the batch range `(batch_min, batch_max)`
    /// (for a symmetric grid `batch_min` is ignored and `batch_max` is `max |x|`) into the
    /// running `(old_min, old_max)`, infinite when nothing was observed yet.
    pub fn apply(&self, batch_min: f32, batch_max: f32, old_min: f32, old_max: f32) -> [f32; 4] {
        let batch_min = if self.symmetric {
            -batch_max
        } else {
            batch_min
        };
        let (new_min, new_max) = if self.averaging < 0.0 {
            (old_min.min(batch_min), old_max.max(batch_max))
        } else if self.averaging < 1.0 {
            let average = |old: f32, new: f32| {
                if old.is_infinite() {
                    new
                } else {
                    old + (new - old) * self.averaging
                }
            };
            (average(old_min, batch_min), average(old_max, batch_max))
        } else {
            (batch_min, batch_max)
        };
        let min_neg = new_min.min(0.0);
        let max_pos = new_max.max(0.0);
        let (scale, zero_point) = if self.symmetric {
            let bound = max_pos.max(-min_neg);
            let half = (self.qmax - self.qmin) / 2.0;
            ((bound / half).max(self.eps), self.symmetric_zero_point)
        } else {
            let scale = ((max_pos - min_neg) / (self.qmax - self.qmin)).max(self.eps);
            let zp = (self.qmin - (min_neg / scale).round_ties_even()).clamp(self.qmin, self.qmax);
            (scale, zp)
        };
        [new_min, new_max, scale, zero_point]
    }
}

//! How the fused rounding kernel ([`super::FakeQuantKernels::round_to_step_product`]) computes a
//! grid step from a quantizer's state, `(low, high)` per parameter: the arithmetic of
//! `scale_from_range` and of a learned scale's clamp, in the same order, so the kernel's step is
//! the composite one. The CubeCL kernel (`cube::kernels::round_to_step_product`) mirrors
//! [`StepRule::step`] line for line.

/// Kind: the step is 1 (a factor that is not there); `low` and `high` are not read.
pub const STEP_ONE: u32 = 0;
/// Kind: `low`, a step given as it is.
pub const STEP_GIVEN: u32 = 1;
/// Kind: a learned scale stored as `anchor + delta` (`crate::quantizer::LearnedValue`),
/// `max(low + high, floor) / divisor`.
pub const STEP_LEARNED: u32 = 4;
/// Kind: an affine grid's scale of the range, `max((max(high, 0) - min(low, 0)) / divisor, floor)`.
pub const STEP_AFFINE_RANGE: u32 = 2;
/// Kind: a symmetric grid's scale of the range, `max(max(high, 0, -low) / divisor, floor)`.
pub const STEP_SYMMETRIC_RANGE: u32 = 3;

/// One factor of the step: what its `(low, high)` tensors hold and how they make a step. Kinds
/// are compile-time constants of the GPU kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRule {
    /// [`STEP_ONE`], [`STEP_GIVEN`], [`STEP_LEARNED`], [`STEP_AFFINE_RANGE`] or
    /// [`STEP_SYMMETRIC_RANGE`].
    pub kind: u32,
    /// The smallest step (`SCALE_EPS`) of the learned and range kinds.
    pub floor: f32,
    /// What a learned value or a range's bound is divided by (grid levels; 1 for LSQ).
    pub divisor: f32,
}

impl StepRule {
    /// The step of one parameter whose state is `(low, high)`.
    pub fn step(&self, low: f32, high: f32) -> f32 {
        match self.kind {
            STEP_ONE => 1.0,
            STEP_GIVEN => low,
            STEP_LEARNED => (low + high).max(self.floor) / self.divisor,
            kind => {
                let min_neg = low.min(0.0);
                let max_pos = high.max(0.0);
                let bound = if kind == STEP_SYMMETRIC_RANGE {
                    max_pos.max(-min_neg)
                } else {
                    max_pos - min_neg
                };
                (bound / self.divisor).max(self.floor)
            }
        }
    }
}

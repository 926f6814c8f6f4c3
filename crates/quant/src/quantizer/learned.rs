//! [`LearnedValue`]: a learnable quantization parameter that observers can (re)initialise.
//!
//! A Burn module cannot overwrite its `Param`s inside `forward(&self)`, yet PyTorch's learnable
//! fake-quant copies observer statistics into its scale while observing. We store the value as
//! `anchor + delta`: the `anchor` is a `RunningState` (writable from `forward`, saved in records, no
//! gradient) and the `delta` a `Param` (learned). While the observer runs, the anchor is rebased to
//! `target - delta`, so the value equals the observed one; once the observer is frozen, the value
//! moves only through `delta`, with exactly the gradient the value itself would get.

use burn::module::{Module, Param, RunningState};
use burn::tensor::{Device, Tensor};

use crate::no_grad;

/// A learned `[n]` quantization parameter (step size, zero point or clip value).
#[derive(Module, Debug)]
pub struct LearnedValue {
    /// The part set by observers; not a gradient target.
    pub anchor: RunningState<Tensor<1>>,
    /// The learned offset from the anchor, zero until training moves it.
    pub delta: Param<Tensor<1>>,
}

impl LearnedValue {
    /// A value of `num_params` entries, all `initial`.
    pub fn new(initial: f32, num_params: usize, device: &Device) -> Self {
        Self {
            anchor: RunningState::new(Tensor::full([num_params], initial, device)),
            delta: Param::from_tensor(Tensor::zeros([num_params], device)),
        }
    }

    /// The current value, `anchor + delta`, tracked through `delta`.
    pub fn value(&self) -> Tensor<1> {
        self.anchor.value_sync() + self.delta.val()
    }

    /// Moves the anchor so that the value equals `target` now.
    pub fn rebase(&self, target: Tensor<1>) {
        let delta = no_grad(self.delta.val());
        self.anchor.update(no_grad(target) - delta);
        self.anchor.value_sync();
    }
}

//! The QAT workflow as a library, for any Burn model:
//!
//! ```text
//! prepare ─► calibrate ─► train with a QatSchedule (quantizer_params in their own group) ─► storage_bytes / materialize
//! ```
//!
//! - [`prepare`]: weight quantizers for every Linear / Conv2d / Embedding weight of any model
//!   (stock `burn::nn` layers included, through Burn's `Reparameterizer`), and a check that the
//!   mapping's activation half lands somewhere;
//! - [`calibrate`]: observers on, fake quantization off, over any iterator of batches (PTQ);
//! - [`correct_bias`]: empirical bias correction after calibration (each layer's output mean
//!   shifted back to the float model's), which 4-bit PTQ needs most;
//! - [`adaround`]: learned rounding of the weights after calibration (AdaRound: each weight
//!   rounded down or up so that each layer's output stays close to the float model's);
//! - [`compare_layers`]: a quantized model's error layer by layer against the float model's
//!   (SQNR, and its systematic part), to see where a scheme's error starts;
//! - [`Distillation`]: the float model as teacher of its quantized copy (soft targets mixed into
//!   the QAT loss);
//! - [`QatSchedule`]: quant delay, observer freeze and BN freeze as optimizer-step milestones,
//!   applied by any `TrainStep` after its optimizer step;
//! - [`quantizer_params`]: the learned quantizer parameters (LSQ step sizes, zero points, PACT
//!   clips) as a `ParamGroup`, for their own optimizer group without weight decay;
//! - [`storage_bytes`]: the deployed size of any module, as its quantizers store it;
//! - [`materialize`]: fold weight quantizers into plain (fake-quantized) weights;
//! - [`quant_units`]: a model's quantized layers and ops, each a [`QuantUnit`] whose mapping rule
//!   leaves it in float or gives it other quantizers (sensitivity analysis, mixed precision), and
//!   [`sqnr_db`] / [`agreement`] to compare a quantized model's outputs with the float model's.
mod adaround;
mod bias_correction;
mod calibrate;
mod compare;
mod distillation;
pub(crate) mod layer_outputs;
mod prepare;
mod schedule;
mod storage;
mod units;

pub(crate) use adaround::site as adaround_site;
pub use adaround::{
    AdaRoundConfig, AdaRoundReport, RoundedLayer, adaround, adaround_with_progress,
};
pub use bias_correction::{
    BiasCorrectionReport, CorrectedLayer, correct_bias, correct_bias_with_progress,
};
pub use calibrate::*;
pub use compare::{LayerError, compare_layers};
pub use distillation::{Distillation, soft_target_loss};
pub use layer_outputs::counting_positions;
pub use prepare::*;
pub use schedule::*;
pub use storage::*;
pub use units::*;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::tensor::Tensor;

/// The learned parameters of every quantizer in `model` (the `delta` of each
/// [`crate::LearnedValue`]: LSQ/LSQ+ step sizes and zero points, PACT clips), by type rather than
/// by name, as a `ParamGroup` for an optimizer group of their own.
pub fn quantizer_params<M: Module>(model: &M) -> ParamGroup {
    let mut collector = LearnedCollector::default();
    model.visit(&mut collector);
    ParamGroup::from_ids(collector.ids)
}

#[derive(Default)]
struct LearnedCollector {
    current: Vec<(String, String)>,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for LearnedCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.current
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.current.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some((name, owner)) = self.current.last()
            && name == "delta"
            && owner == "Struct:LearnedValue"
        {
            self.ids.push(param.id);
        }
    }
}

/// Folds every weight quantizer attached by [`prepare`] into its weight: the result is a plain
/// model whose weights hold the fake-quantized values (Burn's `Module::materialize`).
pub fn materialize<M: Module>(model: M) -> M {
    model.materialize()
}

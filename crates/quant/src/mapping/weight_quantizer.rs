//! [`WeightQuantizer`]: the Burn `Reparameterizer` that attaches a [`Quantizer`] to layer weights.
//!
//! Burn passes every float parameter with its dotted path to the reparameterizer, but not the
//! layer type, so a `ModuleVisitor` pass first records which layer (`Struct:Linear`, …) owns each
//! path; the layer kind decides the per-channel axis (Linear `[in, out]` → 1, Conv2d → 0, Embedding → 0).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleVisitor, Param, Reparameterizer};
use burn::tensor::Tensor;

use super::{QuantMapping, QuantizedParam};
use crate::{LayerKind, QuantError, Quantizer};

/// What a weight-quantization pass did: the parameters it quantized and the errors it met.
#[derive(Debug, Default)]
pub struct WeightQuantizerOutcome {
    /// Quantized parameters, in traversal order.
    pub quantized: Vec<QuantizedParam>,
    /// Shape errors (e.g. a group size that does not divide a weight's axis), with their paths.
    pub errors: Vec<QuantError>,
}

/// Attaches weight quantizers according to a [`QuantMapping`]; use through
/// [`QuantMapping::prepare_weights`].
pub struct WeightQuantizer {
    mapping: QuantMapping,
    layer_of: HashMap<String, LayerKind>,
    outcome: Arc<Mutex<WeightQuantizerOutcome>>,
}

impl WeightQuantizer {
    /// Prepares a pass over `model`, learning the layer kind behind each parameter path.
    pub fn new<M: Module>(mapping: QuantMapping, model: &M) -> Self {
        let mut finder = LayerKindFinder::default();
        model.visit(&mut finder);
        Self {
            mapping,
            layer_of: finder.layer_of,
            outcome: Arc::default(),
        }
    }

    /// A handle on the pass's outcome, readable after `apply_reparameterization` consumed `self`.
    pub fn outcome(&self) -> Arc<Mutex<WeightQuantizerOutcome>> {
        self.outcome.clone()
    }
}

impl Reparameterizer for WeightQuantizer {
    type Reparam = Quantizer;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<Quantizer>) {
        if path.rsplit('.').next() != Some("weight") {
            return (param, None);
        }
        let Some(&kind) = self.layer_of.get(path) else {
            return (param, None);
        };
        let Some(config) = self.mapping.weight_for(path, kind, D).cloned() else {
            return (param, None);
        };
        let shape = param.lazy_shape().dims::<D>().to_vec();
        let mut outcome = self.outcome.lock().expect("weight quantizer outcome lock");
        match config.init(kind, &shape, &param.lazy_device()) {
            Ok(quantizer) => {
                // Observe the initial weights so the quantizer is usable before any training step.
                quantizer.observe(param.base());
                outcome.quantized.push(QuantizedParam {
                    path: path.to_string(),
                    layer: kind,
                    shape,
                    config: quantizer.config.clone(),
                });
                (param, Some(quantizer))
            }
            Err(err) => {
                outcome.errors.push(err.within(path));
                (param, None)
            }
        }
    }
}

/// Records, for each float parameter path, the layer kind of the struct that owns it.
#[derive(Default)]
struct LayerKindFinder {
    stack: Vec<(String, String)>,
    layer_of: HashMap<String, LayerKind>,
}

impl ModuleVisitor for LayerKindFinder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        let Some((_, owner)) = self.stack.last() else {
            return;
        };
        if let Some(kind) = LayerKind::from_container(owner) {
            let path = self
                .stack
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(".");
            self.layer_of.insert(path, kind);
        }
    }
}

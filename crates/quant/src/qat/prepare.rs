//! [`prepare`]: give a model the quantizers a mapping asks for.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::{QuantError, QuantMapping, QuantizedParam};

/// What [`prepare`] found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    /// Weights that got a quantizer now (stock `burn::nn` layers, and this crate's layers built
    /// without one), in traversal order.
    pub weights: Vec<QuantizedParam>,
    /// Paths of the weight quantizers the model already had (e.g. `conv1.weight_quant`).
    pub weight_quantizers: Vec<String>,
    /// Paths of the model's activation quantizers (e.g. `conv1.output_quant`, `input_quant.quant`).
    pub activation_quantizers: Vec<String>,
}

/// Prepares `model` for QAT with `mapping` (PyTorch's `prepare_qat`, torchao's `quantize_`):
/// every Linear, Conv2d and Embedding weight without a quantizer gets the one the mapping gives
/// its path (Burn's `Reparameterizer`, so stock `burn::nn` layers and user models need no code
/// changes); weight quantizers observe the current weights at once.
///
/// Activations are quantized where a model's `forward` places quantizers (this crate's layers
/// and ops, built with the mapping): Burn has no forward hooks, so a stock layer's input or output
/// cannot be reached from outside. When `mapping` quantizes activations and `model` has no
/// activation quantizer, this is an error rather than a silently weight-only model: use
/// [`QuantMapping::weights_only`] to ask for weight-only QAT.
pub fn prepare<M: Module>(
    model: M,
    mapping: &QuantMapping,
) -> Result<(M, PrepareReport), QuantError> {
    mapping.validate()?;
    let mut finder = QuantizerFinder::default();
    model.visit(&mut finder);
    let (weight_quantizers, activation_quantizers): (Vec<_>, Vec<_>) =
        finder.found.into_iter().partition(|(_, weight)| *weight);
    if mapping.quantizes_activations() && activation_quantizers.is_empty() {
        return Err(QuantError::field(
            "activation",
            "the mapping quantizes activations, but the model places no activation quantizer \
             (stock burn::nn layers can only have their weights quantized from outside); build \
             the model from quant's layers and ops (QuantStub, QuantLinear, QuantAdd, …) or use \
             `mapping.weights_only()` for weight-only QAT",
        ));
    }
    let (model, weights) = mapping.prepare_weights(model)?;
    Ok((
        model,
        PrepareReport {
            weights,
            weight_quantizers: weight_quantizers.into_iter().map(|(p, _)| p).collect(),
            activation_quantizers: activation_quantizers.into_iter().map(|(p, _)| p).collect(),
        },
    ))
}

/// Paths of the quantizers `model` has: `(weight quantizers, activation quantizers)`, in traversal
/// order (what a benchmark divides the cost of QAT by).
pub fn quantizer_paths<M: Module>(model: &M) -> (Vec<String>, Vec<String>) {
    let (weights, activations): (Vec<_>, Vec<_>) = quantizers_in_order(model)
        .into_iter()
        .partition(|(_, weight)| *weight);
    (
        weights.into_iter().map(|(p, _)| p).collect(),
        activations.into_iter().map(|(p, _)| p).collect(),
    )
}

/// Paths of the quantizers `model` has in traversal order, each with whether it quantizes a weight.
pub(crate) fn quantizers_in_order<M: Module>(model: &M) -> Vec<(String, bool)> {
    let mut finder = QuantizerFinder::default();
    model.visit(&mut finder);
    finder.found
}

/// Finds the quantizers a model already has: `(path, is a weight quantizer)`.
#[derive(Default)]
struct QuantizerFinder {
    stack: Vec<(String, String)>,
    found: Vec<(String, bool)>,
}

impl ModuleVisitor for QuantizerFinder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        let entering_quantizer = container_type == "Struct:Quantizer"
            && !self.stack.iter().any(|(_, c)| c == "Struct:Quantizer");
        if entering_quantizer {
            let path: Vec<&str> = self.stack.iter().map(|(n, _)| n.as_str()).collect();
            let path = path.join(".");
            let weight = self
                .stack
                .last()
                .is_some_and(|(n, c)| n == "weight_quant" || c == "Reparameterization");
            // Every field of a quantizer enters with its type: count the quantizer once.
            if self.found.last().is_none_or(|(last, _)| *last != path) {
                self.found.push((path, weight));
            }
        }
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {}
}

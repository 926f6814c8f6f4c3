//! [`QuantMapping`]: per-model mapping from parameter paths and layer kinds to quantizer configs,
//! like PyTorch's `QConfigMapping`.

use burn::config::Config;
use burn::module::Module;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::WeightQuantizer;
use crate::{LayerKind, QuantError, QuantizerConfig};

/// A rule overriding the default weight quantizer for the parameters it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantRule {
    /// Regex matched (unanchored) against the dotted parameter path, e.g. `^fc3\.` or `embed`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Only parameters of this layer kind.
    #[serde(default)]
    pub layer: Option<LayerKind>,
    /// Only parameters of this rank (2 for Linear and Embedding weights, 4 for Conv2d).
    #[serde(default)]
    pub rank: Option<usize>,
    /// The weight quantizer for matches; `None` keeps them in float.
    #[serde(default)]
    pub weight: Option<QuantizerConfig>,
}

/// A quantization plan for a model: default weight and activation quantizers and override rules.
///
/// Rules are checked in order and the **last** matching rule wins, so general rules come first.
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::Device;
/// let device = Device::flex();
/// let model = LinearConfig::new(8, 4).init(&device);
/// let (model, report) = quant::QuantMapping::w8a8().quantize_weights(model).unwrap();
/// assert_eq!(report.len(), 1);
/// assert_eq!(report[0].path, "weight");
/// assert!(model.weight.reparameterization::<quant::Quantizer>().is_some());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct QuantMapping {
    /// Weight quantizer for every Linear, Conv2d and Embedding weight not overridden by a rule.
    pub weight: Option<QuantizerConfig>,
    /// Activation quantizer for the inputs of quantized layers (used by layers and models that
    /// place [`crate::FakeQuant`]s).
    pub activation: Option<QuantizerConfig>,
    /// Overrides, last match wins.
    #[config(default = "Vec::new()")]
    pub rules: Vec<QuantRule>,
}

/// One weight that [`QuantMapping::quantize_weights`] quantized.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedParam {
    /// Dotted parameter path.
    pub path: String,
    /// Layer kind the path belongs to.
    pub layer: LayerKind,
    /// Parameter shape.
    pub shape: Vec<usize>,
    /// The quantizer config applied (axis resolved).
    pub config: QuantizerConfig,
}

impl QuantMapping {
    /// Checks every config and every rule's regex, naming the failing field.
    pub fn validate(&self) -> Result<(), QuantError> {
        if let Some(weight) = &self.weight {
            weight.validate().map_err(|e| e.within("weight"))?;
        }
        if let Some(activation) = &self.activation {
            activation.validate().map_err(|e| e.within("activation"))?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(pattern) = &rule.pattern {
                Regex::new(pattern)
                    .map_err(|e| QuantError::field(format!("rules[{i}].pattern"), e.to_string()))?;
            }
            if let Some(weight) = &rule.weight {
                weight
                    .validate()
                    .map_err(|e| e.within(&format!("rules[{i}].weight")))?;
            }
        }
        Ok(())
    }

    /// The weight quantizer config for the parameter at `path`, of `rank`, in a layer of `kind`.
    pub fn weight_config_for(
        &self,
        path: &str,
        kind: LayerKind,
        rank: usize,
    ) -> Option<&QuantizerConfig> {
        let mut chosen = self.weight.as_ref();
        for rule in &self.rules {
            let kind_ok =
                rule.layer.is_none_or(|layer| layer == kind) && rule.rank.is_none_or(|r| r == rank);
            let path_ok = rule
                .pattern
                .as_ref()
                .is_none_or(|p| Regex::new(p).map(|re| re.is_match(path)).unwrap_or(false));
            if kind_ok && path_ok {
                chosen = rule.weight.as_ref();
            }
        }
        chosen
    }

    /// Attaches a weight quantizer to every `weight` of a Linear, Conv2d or Embedding in `model`
    /// (stock `burn::nn` layers or this crate's), as chosen by this mapping. The model's code and
    /// parameter paths are unchanged; quantizer state appears under `<path>.quant.*` in records.
    ///
    /// Returns the model and the list of quantized parameters.
    pub fn quantize_weights<M: Module>(
        &self,
        model: M,
    ) -> Result<(M, Vec<QuantizedParam>), QuantError> {
        self.validate()?;
        let quantizer = WeightQuantizer::new(self.clone(), &model);
        let outcome = quantizer.outcome();
        let model = model.apply_reparameterization(quantizer);
        let outcome = outcome.lock().expect("weight quantizer outcome lock");
        if let Some(err) = outcome.errors.first() {
            return Err(err.clone());
        }
        Ok((model, outcome.quantized.clone()))
    }
}

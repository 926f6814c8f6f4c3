//! [`QuantMapping`]: per-model mapping from parameter paths and layer kinds to quantizer configs,
//! like PyTorch's `QConfigMapping`.

use burn::config::Config;
use burn::module::Module;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::WeightQuantizer;
use crate::{LayerKind, LayerQuant, QuantError, QuantizerConfig};

/// A rule overriding the default quantizers for the tensors it matches.
///
/// A rule matches a tensor by its dotted path (a weight's `conv1.weight`, an activation
/// quantizer's `conv1.output_quant`), the kind of layer that owns it, and its rank; every
/// condition left out matches anything. A matching rule sets the weight config, the activation
/// config, both, or with `float = true` keeps the tensor in float.
///
/// ```toml
/// [[rules]]                 # first and last layers: 8-bit weights
/// pattern = "^(conv1|fc2)\\.weight$"
/// [rules.weight.spec]
/// bits = 8
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantRule {
    /// Regex matched (unanchored) against the dotted tensor path, e.g. `^fc3\.` or `embed`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Only tensors owned by this kind of layer: for weights the layer (`linear`, `conv2d`,
    /// `embedding`); for activations the layer producing them, or `activation` /
    /// `activation_nchw` for the model's input quantizer and functional ops (adds, pools).
    #[serde(default)]
    pub layer: Option<LayerKind>,
    /// Only tensors of this rank (weights: 2 for Linear and Embedding, 4 for Conv2d; activations:
    /// the rank of the activation).
    #[serde(default)]
    pub rank: Option<usize>,
    /// The weight quantizer for matching weights (absent: unchanged by this rule).
    #[serde(default)]
    pub weight: Option<QuantizerConfig>,
    /// The activation quantizer for matching activations (absent: unchanged by this rule).
    #[serde(default)]
    pub activation: Option<QuantizerConfig>,
    /// Keep matching tensors in float (no quantizer), whatever earlier rules set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub float: bool,
}

impl QuantRule {
    fn matches(&self, path: &str, kind: LayerKind, rank: usize) -> bool {
        let kind_ok =
            self.layer.is_none_or(|layer| layer == kind) && self.rank.is_none_or(|r| r == rank);
        kind_ok
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| Regex::new(p).map(|re| re.is_match(path)).unwrap_or(false))
    }
}

/// A quantization plan for a model: default weight and activation quantizers and override rules.
///
/// Rules are checked in order and the **last** matching rule wins, so general rules come first.
/// Weights of stock `burn::nn` layers get their quantizers through [`crate::qat::prepare`];
/// models built from this crate's layers look up every quantizer, weight and activation, by the
/// path of the tensor ([`Self::layer`], [`Self::activation_for`]).
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::Device;
/// let device = Device::flex();
/// let model = LinearConfig::new(8, 4).init(&device);
/// let (model, report) = quant::qat::prepare(model, &quant::QuantMapping::w8()).unwrap();
/// assert_eq!(report.weights.len(), 1);
/// assert_eq!(report.weights[0].path, "weight");
/// assert!(model.weight.reparameterization::<quant::Quantizer>().is_some());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct QuantMapping {
    /// Weight quantizer for every Linear, Conv2d and Embedding weight not overridden by a rule.
    pub weight: Option<QuantizerConfig>,
    /// Activation quantizer for every activation quantizer a model places (layer outputs, the
    /// model's input, functional ops) not overridden by a rule.
    pub activation: Option<QuantizerConfig>,
    /// Overrides, last match wins.
    #[config(default = "Vec::new()")]
    pub rules: Vec<QuantRule>,
}

/// One weight that [`QuantMapping::prepare_weights`] quantized.
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
            if let Some(activation) = &rule.activation {
                activation
                    .validate()
                    .map_err(|e| e.within(&format!("rules[{i}].activation")))?;
            }
            if rule.float && (rule.weight.is_some() || rule.activation.is_some()) {
                return Err(QuantError::field(
                    format!("rules[{i}].float"),
                    "a float rule cannot also set `weight` or `activation`",
                ));
            }
        }
        Ok(())
    }

    /// Whether this mapping quantizes nothing (the float model).
    pub fn is_float(&self) -> bool {
        self.weight.is_none()
            && self.activation.is_none()
            && self
                .rules
                .iter()
                .all(|r| r.weight.is_none() && r.activation.is_none())
    }

    /// Whether any activation can get a quantizer from this mapping.
    pub fn quantizes_activations(&self) -> bool {
        self.activation.is_some() || self.rules.iter().any(|r| r.activation.is_some())
    }

    /// The same mapping without activation quantizers (weight-only quantization).
    pub fn weights_only(self) -> Self {
        QuantMapping {
            activation: None,
            rules: self
                .rules
                .into_iter()
                .map(|r| QuantRule {
                    activation: None,
                    ..r
                })
                .collect(),
            ..self
        }
    }

    /// The weight quantizer config for the weight at `path`, of `rank`, in a layer of `kind`.
    pub fn weight_for(&self, path: &str, kind: LayerKind, rank: usize) -> Option<&QuantizerConfig> {
        self.resolve(self.weight.as_ref(), path, kind, rank, |r| {
            r.weight.as_ref()
        })
    }

    /// The activation quantizer config for the quantizer at `path` (e.g. `conv1.output_quant`)
    /// of an activation of `rank` produced by a layer of `kind`.
    pub fn activation_for(
        &self,
        path: &str,
        kind: LayerKind,
        rank: usize,
    ) -> Option<&QuantizerConfig> {
        self.resolve(self.activation.as_ref(), path, kind, rank, |r| {
            r.activation.as_ref()
        })
    }

    fn resolve<'a>(
        &'a self,
        default: Option<&'a QuantizerConfig>,
        path: &str,
        kind: LayerKind,
        rank: usize,
        part: impl Fn(&'a QuantRule) -> Option<&'a QuantizerConfig>,
    ) -> Option<&'a QuantizerConfig> {
        let mut chosen = default;
        for rule in self.rules.iter().filter(|r| r.matches(path, kind, rank)) {
            if rule.float {
                chosen = None;
            } else if let Some(config) = part(rule) {
                chosen = Some(config);
            }
        }
        chosen
    }

    /// The weight and output quantizers of the layer at `path` (`<path>.weight`,
    /// `<path>.output_quant`), a layer of `kind` whose weight has rank `weight_rank` and whose
    /// output has rank `output_rank`.
    pub fn layer(
        &self,
        path: &str,
        kind: LayerKind,
        weight_rank: usize,
        output_rank: usize,
    ) -> LayerQuant {
        let join = |field: &str| {
            if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        LayerQuant {
            weight: self.weight_for(&join("weight"), kind, weight_rank).cloned(),
            input: None,
            output: self
                .activation_for(&join("output_quant"), kind, output_rank)
                .cloned(),
        }
    }

    /// Attaches a weight quantizer to every `weight` of a Linear, Conv2d or Embedding in `model`
    /// (stock `burn::nn` layers or this crate's), as chosen by this mapping. The model's code and
    /// parameter paths are unchanged; quantizer state appears under `<path>.quant.*` in records.
    /// Activations are not touched: see [`crate::qat::prepare`], which checks the whole mapping.
    ///
    /// Returns the model and the list of quantized weights.
    pub fn prepare_weights<M: Module>(
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

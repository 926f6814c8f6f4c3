//! [`QuantizerConfig`]: spec + observer + learning method + quant delay for one tensor.

use burn::config::Config;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::Quantizer;
use crate::{Granularity, LayerKind, ObserverKind, ParamLayout, QuantError, QuantSpec};

/// How a quantizer's scale (and zero point) are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Learning {
    /// From the observer; gradients by the clipped straight-through estimator.
    #[default]
    Fixed,
    /// LSQ: a learned step size, initialised from the observer (Esser et al. 2019).
    Lsq,
    /// LSQ+: learned step size and learned zero point (PyTorch's `_LearnableFakeQuantize`).
    LsqPlus,
    /// PACT: a learned clipping value `α`; the grid spans `[0, α]` or `[-α, α]` (Choi et al. 2018).
    Pact,
}

/// Everything needed to build a [`Quantizer`] for one tensor.
///
/// ```
/// use quant::{Learning, QuantSpec, QuantizerConfig};
/// let cfg = QuantizerConfig::new(QuantSpec::new().with_bits(4)).with_learning(Learning::Lsq);
/// assert!(cfg.validate().is_ok());
/// let bad = QuantizerConfig::new(QuantSpec::new()).with_learning(Learning::LsqPlus);
/// assert!(bad.validate().unwrap_err().to_string().contains("learning"));
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct QuantizerConfig {
    /// The integer grid.
    pub spec: QuantSpec,
    /// Range estimator for fixed scales, and the initialiser of learned ones.
    #[config(default = "ObserverKind::default()")]
    pub observer: ObserverKind,
    /// Fixed (observed) or learned quantization parameters.
    #[config(default = "Learning::Fixed")]
    pub learning: Learning,
    /// Training steps during which the quantizer only observes, before it starts fake-quantizing.
    #[config(default = 0)]
    pub quant_delay: usize,
}

impl QuantizerConfig {
    /// Checks the spec, the observer and that the learning method suits the spec.
    pub fn validate(&self) -> Result<(), QuantError> {
        self.spec.validate().map_err(|e| e.within("spec"))?;
        self.observer.validate().map_err(|e| e.within("observer"))?;
        match self.learning {
            Learning::LsqPlus if self.spec.symmetric => Err(QuantError::field(
                "learning",
                "lsq_plus learns a zero point and needs an affine spec (symmetric = false)",
            )),
            Learning::Pact if self.spec.granularity != Granularity::PerTensor => {
                Err(QuantError::field(
                    "learning",
                    "pact learns one clipping value and needs a per_tensor granularity",
                ))
            }
            Learning::Lsq | Learning::LsqPlus | Learning::Pact
                if self.spec.granularity == Granularity::PerToken =>
            {
                Err(QuantError::field(
                    "learning",
                    "per_token scales are computed from each batch; use learning = \"fixed\"",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Builds the quantizer for a tensor of `shape` belonging to a layer of `kind` (which resolves
    /// an unset granularity axis). For weights `shape` is the weight's shape. For activations
    /// (`LayerKind::Activation`, `LayerKind::ActivationNchw`) it is a representative shape such as
    /// `[1, features]` or `[1, channels, 1, 1]`: only its trailing axes matter, since activation
    /// axes count from the back and the quantizer then serves any leading shape (`[batch, d]`,
    /// `[batch, seq, d]`). Per-group is for weights only, per-token for activations only.
    pub fn init(
        &self,
        kind: LayerKind,
        shape: &[usize],
        device: &Device,
    ) -> Result<Quantizer, QuantError> {
        self.validate()?;
        let mut spec = self.spec.clone();
        spec.granularity = spec.granularity.resolve(kind);
        let activation = kind.is_activation();
        match (&spec.granularity, activation) {
            (Granularity::PerGroup { .. }, true) => {
                return Err(QuantError::field(
                    "spec.granularity",
                    "per_group applies to weights, not activations",
                ));
            }
            (Granularity::PerToken, false) => {
                return Err(QuantError::field(
                    "spec.granularity",
                    "per_token applies to activations, not weights",
                ));
            }
            _ => {}
        }
        let num_params = match spec.granularity {
            Granularity::PerChannel { axis: Some(axis) } if activation => {
                if axis >= shape.len() {
                    return Err(QuantError::field(
                        "spec.granularity.axis",
                        format!(
                            "activation axis {axis} (counted from the last) does not exist in a tensor of shape {shape:?}"
                        ),
                    ));
                }
                shape[shape.len() - 1 - axis]
            }
            Granularity::PerToken => 1,
            _ => {
                spec.validate_for_shape(shape)
                    .map_err(|e| e.within("spec"))?;
                ParamLayout::new(shape, &spec.granularity).num_params()
            }
        };
        let resolved = QuantizerConfig {
            spec,
            ..self.clone()
        };
        let mut quantizer = Quantizer::new(resolved, num_params, device);
        quantizer.activation = activation;
        Ok(quantizer)
    }
}

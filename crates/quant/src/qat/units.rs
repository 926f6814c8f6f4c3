//! [`QuantUnit`]: the quantizers of one layer (or one functional op) as a unit a mapping rule can
//! leave in float or give other quantizers, for per-layer sensitivity analysis and mixed
//! precision; [`sqnr_db`] and [`agreement`], how far a quantized model's outputs are from the
//! float model's.

use burn::module::Module;
use regex::escape;

use super::quantizers_in_order;
use crate::{QuantMapping, QuantRule};

/// The quantizers of one layer or op of a model: a layer's weight and output quantizers
/// (`fc1.weight`, `fc1.output_quant`), or a stub's or op's own (`input_quant`,
/// `encoder.layer.0.attention.self_attention.probs_quant`).
///
/// [`QuantUnit::rule`] is the mapping rule that changes exactly these quantizers: what a
/// leave-one-layer-in-float sensitivity analysis, or a mixed-precision plan, appends to a scheme.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuantUnit {
    /// The layer's or op's path in the model (`conv1`, `blocks.3.add`, `input_quant`).
    pub name: String,
    /// The paths of its quantizers in the module tree, as [`super::quantizer_paths`] lists them.
    pub quantizers: Vec<String>,
}

/// How a quantizer's module path ends after its unit's path, and how the model names the same
/// quantizer in its mapping after the unit's path: a weight quantizer field (`ConvBn2d`) and a
/// reparameterized weight (`Linear`, `Embedding`) by the weight, an output or input quantizer by
/// its own path, a stub's or op's quantizer by the stub's path with or without `.quant` (models
/// do both).
const QUANTIZER_SUFFIXES: [(&str, &[&str]); 5] = [
    (".weight_quant", &[".weight"]),
    (".weight.quant", &[".weight"]),
    (".output_quant", &[".output_quant"]),
    (".input_quant", &[".input_quant"]),
    (".quant", &["", ".quant"]),
];

/// The unit of the quantizer at module path `path` and the mapping suffixes of its kind.
fn split(path: &str) -> Option<(&str, &'static [&'static str])> {
    QUANTIZER_SUFFIXES.iter().find_map(|(suffix, mapped)| {
        path.strip_suffix(suffix)
            .filter(|unit| !unit.is_empty())
            .map(|unit| (unit, *mapped))
    })
}

/// The unit a quantizer at module path `path` belongs to.
fn unit_of(path: &str) -> &str {
    split(path).map_or(path, |(unit, _)| unit)
}

/// The paths under which a model looks the quantizer at module path `path` up in its mapping
/// (`fc1.weight` for `fc1.weight_quant`; see [`QUANTIZER_SUFFIXES`]).
fn mapping_paths(path: &str) -> Vec<String> {
    match split(path) {
        Some((unit, mapped)) => mapped.iter().map(|m| format!("{unit}{m}")).collect(),
        None => vec![path.to_string()],
    }
}

/// `path` without enum variants (`LeNet` in a `Net::LeNet(..)` wrapper's `LeNet.conv1`): a
/// variant is a segment in CamelCase where fields are snake_case, and the wrapped model, which
/// looks its quantizers up in the mapping, does not know it is wrapped.
pub(crate) fn without_variants(path: &str) -> String {
    path.split('.')
        .filter(|segment| !segment.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect::<Vec<_>>()
        .join(".")
}

/// The quantized layers and ops of `model`, in module order (usually the forward order), each
/// with its quantizers; paths as the mapping sees them (without enum variants' names).
///
/// A sensitivity sweep over a model of one's own: build it once per unit with that unit left in
/// float, calibrate, and compare its outputs with the float model's ([`sqnr_db`]).
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::Device;
/// use quant::qat::quant_units;
/// use quant::{LayerKind, QuantLinear, QuantLinearConfig, QuantMapping};
///
/// #[derive(Module, Debug)]
/// struct Net {
///     fc1: QuantLinear,
///     fc2: QuantLinear,
/// }
///
/// let device = Device::flex();
/// let net = |mapping: &QuantMapping| {
///     let layer = |path: &str, d_in, d_out| {
///         QuantLinearConfig::new(d_in, d_out)
///             .init(&device)
///             .with_quantizers(&mapping.layer(path, LayerKind::Linear, 2, 2))
///             .unwrap()
///     };
///     Net { fc1: layer("fc1", 8, 16), fc2: layer("fc2", 16, 4) }
/// };
/// let mapping = QuantMapping::w4a4();
/// let units = quant_units(&net(&mapping));
/// assert_eq!(units[0].name, "fc1");
/// assert_eq!(units[0].quantizers, ["fc1.weight.quant", "fc1.output_quant"]);
/// // fc1 in float: only fc2's quantizers are left.
/// let mixed = mapping.with_units(&[&units[0]], None);
/// assert_eq!(quant_units(&net(&mixed)), units[1..]);
/// ```
pub fn quant_units<M: Module>(model: &M) -> Vec<QuantUnit> {
    let mut units: Vec<QuantUnit> = Vec::new();
    for (path, _) in quantizers_in_order(model) {
        let path = without_variants(&path);
        let name = unit_of(&path).to_string();
        match units.iter_mut().find(|u| u.name == name) {
            Some(unit) => unit.quantizers.push(path),
            None => units.push(QuantUnit {
                name,
                quantizers: vec![path],
            }),
        }
    }
    units
}

/// Every quantizer of `model` as a unit of its own, in module order: a layer's weight apart from
/// its output (`fc1.weight`, `fc1.output_quant`), to tell which of the two loses the accuracy.
pub fn quant_tensors<M: Module>(model: &M) -> Vec<QuantUnit> {
    quantizers_in_order(model)
        .into_iter()
        .map(|(path, _)| {
            let path = without_variants(&path);
            QuantUnit {
                name: mapping_paths(&path).swap_remove(0),
                quantizers: vec![path],
            }
        })
        .collect()
}

impl QuantUnit {
    /// The regex that matches this unit's tensors as a mapping names them, and nothing else:
    /// `fc1.weight` and `fc1.output_quant` for `fc1`'s weight and output quantizers, a stub's
    /// `input_quant` or `input_quant.quant`.
    pub fn pattern(&self) -> String {
        let paths: Vec<String> = self
            .quantizers
            .iter()
            .flat_map(|q| mapping_paths(q))
            .map(|p| escape(&p))
            .collect();
        format!("^(?:{})$", paths.join("|"))
    }

    /// The rule giving this unit `fallback`'s default weight and activation quantizers, or
    /// keeping it in float with `None`; appended to a mapping, it wins over its other rules.
    pub fn rule(&self, fallback: Option<&QuantMapping>) -> QuantRule {
        QuantRule {
            pattern: Some(self.pattern()),
            layer: None,
            rank: None,
            weight: fallback.and_then(|m| m.weight.clone()),
            activation: fallback.and_then(|m| m.activation.clone()),
            float: fallback.is_none(),
        }
    }
}

impl QuantMapping {
    /// This mapping with `units` in float (`fallback` `None`) or with `fallback`'s default
    /// quantizers: a mixed-precision plan, or one step of a sensitivity analysis.
    pub fn with_units(mut self, units: &[&QuantUnit], fallback: Option<&QuantMapping>) -> Self {
        self.rules.extend(units.iter().map(|u| u.rule(fallback)));
        self
    }
}

/// Signal-to-quantization-noise ratio of `approx` against `reference`, in dB:
/// `10·log10(Σ reference² / Σ (approx − reference)²)` over all values (PyTorch Numeric Suite's
/// SQNR); `+∞` when they are equal, `None` when their lengths differ or the reference is all zero.
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> Option<f64> {
    if reference.len() != approx.len() {
        return None;
    }
    let (signal, noise) = reference
        .iter()
        .zip(approx)
        .fold((0f64, 0f64), |(s, n), (&r, &a)| {
            let (r, a) = (r as f64, a as f64);
            (s + r * r, n + (a - r) * (a - r))
        });
    if signal == 0.0 {
        return None;
    }
    Some(if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    })
}

/// Share of rows (of `width` values each) on which `a` and `b` have the same largest value: how
/// often a quantized model predicts what the float model does.
pub fn agreement(a: &[f32], b: &[f32], width: usize) -> Option<f64> {
    if a.len() != b.len() || width == 0 || a.is_empty() || !a.len().is_multiple_of(width) {
        return None;
    }
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map_or(0, |(i, _)| i)
    };
    let rows = a.len() / width;
    let same = a
        .chunks_exact(width)
        .zip(b.chunks_exact(width))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    Some(same as f64 / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ConvBn2d, ConvBn2dConfig, LayerKind, QuantLinear, QuantLinearConfig, QuantStub,
        QuantStubConfig,
    };
    use burn::module::Module;
    use burn::tensor::Device;

    /// A stub, a ConvBn2d (weight quantizer as a field) and a Linear (reparameterized weight):
    /// each way a quantizer sits in a module tree, built from `mapping` by path as the models do.
    #[derive(Module, Debug)]
    struct Net {
        input_quant: QuantStub,
        conv: ConvBn2d,
        fc: QuantLinear,
    }

    fn net(mapping: &QuantMapping) -> Net {
        let device = Device::flex();
        Net {
            input_quant: QuantStubConfig::new(1)
                .with_kind(LayerKind::ActivationNchw)
                .with_quant(
                    mapping
                        .activation_for("input_quant.quant", LayerKind::ActivationNchw, 4)
                        .cloned(),
                )
                .init(&device),
            conv: ConvBn2dConfig::new(crate::QuantConv2dConfig::new([1, 4], [3, 3]))
                .init(&device)
                .with_quantizers(&mapping.layer("conv", LayerKind::Conv2d, 4, 4))
                .unwrap(),
            fc: QuantLinearConfig::new(8, 3)
                .init(&device)
                .with_quantizers(&mapping.layer("fc", LayerKind::Linear, 2, 2))
                .unwrap(),
        }
    }

    fn names(units: &[QuantUnit]) -> Vec<&str> {
        units.iter().map(|u| u.name.as_str()).collect()
    }

    #[test]
    fn a_models_quantizers_group_into_its_layers_in_module_order() {
        let units = quant_units(&net(&QuantMapping::w8a8()));
        assert_eq!(names(&units), ["input_quant", "conv", "fc"]);
        assert_eq!(units[0].quantizers, ["input_quant.quant"]);
        assert_eq!(
            units[1].quantizers,
            ["conv.weight_quant", "conv.output_quant"]
        );
        assert_eq!(units[2].quantizers, ["fc.weight.quant", "fc.output_quant"]);
        assert!(quant_units(&net(&QuantMapping::new())).is_empty());
    }

    /// Each unit's rule removes exactly that unit's quantizers, whichever way the model names
    /// them in the mapping, and leaves every other unit as it was.
    #[test]
    fn a_units_float_rule_removes_exactly_its_quantizers() {
        let mapping = QuantMapping::w4a4();
        let all = quant_units(&net(&mapping));
        for unit in &all {
            let left = quant_units(&net(&mapping.clone().with_units(&[unit], None)));
            let expected: Vec<_> = all
                .iter()
                .filter(|u| u.name != unit.name)
                .cloned()
                .collect();
            assert_eq!(left, expected, "leaving {} in float", unit.name);
        }
        let everything: Vec<&QuantUnit> = all.iter().collect();
        assert!(quant_units(&net(&mapping.with_units(&everything, None))).is_empty());
    }

    /// Per tensor, a layer's weight and output are units of their own, and each one's float
    /// rule removes that quantizer alone.
    #[test]
    fn per_tensor_units_remove_one_quantizer_each() {
        let mapping = QuantMapping::w4a4();
        let tensors = quant_tensors(&net(&mapping));
        let names: Vec<&str> = tensors.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "input_quant",
                "conv.weight",
                "conv.output_quant",
                "fc.weight",
                "fc.output_quant"
            ]
        );
        for unit in &tensors {
            let left = quant_tensors(&net(&mapping.clone().with_units(&[unit], None)));
            let expected: Vec<_> = tensors
                .iter()
                .filter(|u| u.name != unit.name)
                .cloned()
                .collect();
            assert_eq!(left, expected, "leaving {} in float", unit.name);
        }
    }

    /// A fallback gives the unit the fallback's quantizers and nobody else.
    #[test]
    fn a_fallback_rule_swaps_in_the_fallbacks_quantizers_for_its_unit_only() {
        let (w4a4, w8a8) = (QuantMapping::w4a4(), QuantMapping::w8a8());
        let units = quant_units(&net(&w4a4));
        let mixed = w4a4.clone().with_units(&[&units[1]], Some(&w8a8));
        let bits = |path: &str, kind: LayerKind, rank: usize| {
            mixed.weight_for(path, kind, rank).map(|c| c.spec.bits)
        };
        assert_eq!(bits("conv.weight", LayerKind::Conv2d, 4), Some(8));
        assert_eq!(bits("fc.weight", LayerKind::Linear, 2), Some(4));
        let act = |path: &str| {
            mixed
                .activation_for(path, LayerKind::Activation, 4)
                .map(|c| c.spec.bits)
        };
        assert_eq!(act("conv.output_quant"), Some(8));
        assert_eq!(act("fc.output_quant"), Some(4));
        assert_eq!(act("input_quant.quant"), Some(4));
        // Same quantizers as before, now some at 8 bits.
        assert_eq!(quant_units(&net(&mixed)), units);
    }

    /// A unit's pattern matches its own tensors only, not a longer sibling's (`blocks.1` vs
    /// `blocks.10`) nor a child's.
    /// A model wrapped in an enum (the trainer's `Net::LeNet(..)`) has the same units: the
    /// mapping's paths are the wrapped model's.
    #[derive(Module, Debug)]
    enum Wrapped {
        Small(Net),
    }

    #[test]
    fn a_wrapped_models_units_are_the_models_own() {
        let mapping = QuantMapping::w8a8();
        let wrapped = Wrapped::Small(net(&mapping));
        assert_eq!(quant_units(&wrapped), quant_units(&net(&mapping)));
        assert_eq!(without_variants("Small.fc.weight.quant"), "fc.weight.quant");
    }

    #[test]
    fn a_units_pattern_matches_its_own_tensors_only() {
        let unit = QuantUnit {
            name: "blocks.1".into(),
            quantizers: vec![
                "blocks.1.weight_quant".into(),
                "blocks.1.output_quant".into(),
            ],
        };
        let re = regex::Regex::new(&unit.pattern()).unwrap();
        for own in ["blocks.1.weight", "blocks.1.output_quant"] {
            assert!(re.is_match(own), "{own}");
        }
        for other in [
            "blocks.10.weight",
            "blocks.1.conv.weight",
            "xblocks.1.weight",
            "blocks11",
            "blocks.1.input_quant",
            "blocks.1",
        ] {
            assert!(!re.is_match(other), "{other}");
        }
        let stub = QuantUnit {
            name: "input_quant".into(),
            quantizers: vec!["input_quant.quant".into()],
        };
        let re = regex::Regex::new(&stub.pattern()).unwrap();
        assert!(re.is_match("input_quant") && re.is_match("input_quant.quant"));
        assert!(!re.is_match("input_quant.quant.x"));
    }

    #[test]
    fn sqnr_is_signal_over_noise_in_decibels() {
        // Σr² = 1 + 4 = 5, Σ(a − r)² = 1: 10·log10(5).
        let db = sqnr_db(&[1.0, 2.0], &[1.0, 3.0]).unwrap();
        assert!((db - 6.989_700_043).abs() < 1e-9, "{db}");
        // Noise a hundredth of the signal's power: 20 dB.
        let db = sqnr_db(&[10.0, 0.0], &[11.0, 0.0]).unwrap();
        assert!((db - 20.0).abs() < 1e-12, "{db}");
        assert_eq!(sqnr_db(&[1.0, -2.0], &[1.0, -2.0]), Some(f64::INFINITY));
        assert_eq!(sqnr_db(&[0.0], &[1.0]), None);
        assert_eq!(sqnr_db(&[1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn agreement_counts_rows_with_the_same_argmax() {
        let float = [0.1, 0.9, 0.8, 0.2, 0.5, 0.4];
        let quant = [0.2, 0.7, 0.3, 0.6, 0.9, 0.1];
        assert_eq!(agreement(&float, &quant, 2), Some(2.0 / 3.0));
        assert_eq!(agreement(&float, &float, 2), Some(1.0));
        assert_eq!(agreement(&float, &quant[..4], 2), None);
        assert_eq!(agreement(&float, &quant, 4), None);
    }
}

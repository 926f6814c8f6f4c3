//! [`correct_bias`]: empirical bias correction of a post-training-quantized model.
//!
//! Quantizing weights and activations to a coarse grid does not only add noise: it shifts the
//! mean of each output channel (the expected error `E[W x] - E[Q(W) Q(x)]` is not zero), and at
//! 4 bits those shifts add up layer after layer into a systematic error of the logits. Nagel et
//! al. ("Data-Free Quantization", ICCV 2019, §4.2) remove the shift by adding it back to the
//! layer's bias; AIMET's *empirical* bias correction measures it on calibration data. This is the
//! empirical form, for any Burn model built from this crate's layers:
//!
//! 1. run the float model over the calibration batches and record, for every layer with a bias
//!    (a `QuantConv2d`/`QuantLinear` bias, a `ConvBn2d`'s BN shift), the mean of each output
//!    channel before the activation function and the output quantizer;
//! 2. run the quantized model over the same batches, record the same means, and add the
//!    difference to the first layer's bias;
//! 3. repeat step 2 for the next layer, and so on in forward order: a layer's correction changes
//!    every later layer's input, so each layer is measured with the earlier ones corrected.
//!
//! The corrected bias is an ordinary bias: the integer engine adds it as the int32 it adds any
//! bias, so the exported model computes what the corrected fake-quant model does.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;

use super::layer_outputs::{Captured, capture, param_paths, shift_db};
use crate::QuantError;

/// One corrected layer: where its bias is, and how big its output's mean shift from the float
/// model was before correction and is after.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CorrectedLayer {
    /// The bias parameter's path in the module tree, e.g. `blocks.3.conv2.bn.beta`.
    pub bias: String,
    /// Output channels.
    pub channels: usize,
    /// The mean shift before correction, as `10·log10(signal / shift)`: the float output's mean
    /// square over the power of the per-channel mean error (higher is better; `∞` for none).
    pub shift_db_before: f64,
    /// The same after the last pass.
    pub shift_db_after: f64,
}

/// What [`correct_bias`] did.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct BiasCorrectionReport {
    /// Every corrected layer, in the order the forward pass reaches it.
    pub layers: Vec<CorrectedLayer>,
    /// Forward passes of the quantized model over the batches (one per layer, plus one).
    pub passes: usize,
}

impl BiasCorrectionReport {
    /// The layer with the largest mean shift left (the lowest `shift_db_after`), if any.
    pub fn worst_after(&self) -> Option<&CorrectedLayer> {
        self.layers
            .iter()
            .min_by(|a, b| a.shift_db_after.total_cmp(&b.shift_db_after))
    }

    /// A Markdown table, one row per layer in forward order: its mean shift before and after, in
    /// dB below the signal (the gain is what the correction removed).
    pub fn to_markdown(&self) -> String {
        let db = |x: f64| {
            if x.is_infinite() {
                "∞".to_string()
            } else {
                format!("{x:.1} dB")
            }
        };
        let mut out = format!(
            "Empirical bias correction: {} layers, {} passes over the calibration batches. Each \
             layer's mean shift from the float model, as the output power over the power of the \
             per-channel mean error (higher is better).\n\n\
             | bias | channels | mean shift before | after |\n|---|---:|---:|---:|\n",
            self.layers.len(),
            self.passes
        );
        for layer in &self.layers {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                layer.bias,
                layer.channels,
                db(layer.shift_db_before),
                db(layer.shift_db_after)
            ));
        }
        out
    }

    /// The layer with the largest mean shift before correction, if any.
    pub fn worst_before(&self) -> Option<&CorrectedLayer> {
        self.layers
            .iter()
            .min_by(|a, b| a.shift_db_before.total_cmp(&b.shift_db_before))
    }
}

/// The per-channel mean error of `quantized` against `float` (float minus quantized) for every
/// layer both recorded with the same channels.
fn shifts(float: &Captured, quantized: &Captured) -> HashMap<ParamId, Vec<f64>> {
    quantized
        .sums
        .iter()
        .filter_map(|(id, q)| {
            let f = float.sums.get(id)?;
            (f.sums.len() == q.sums.len()).then(|| {
                let shift = f
                    .means()
                    .iter()
                    .zip(q.means())
                    .map(|(f, q)| f - q)
                    .collect();
                (*id, shift)
            })
        })
        .collect()
}

/// Empirically bias-corrects `quantized` (a calibrated copy of `float`: the same parameters,
/// with quantizers) over `batches`, and says how much each layer's mean shift shrank. `forward`
/// is the models' forward pass on one batch (its output is dropped).
///
/// Layers are corrected one at a time in the order the forward pass reaches them, each measured
/// with every earlier correction in place: one pass of the quantized model over `batches` per
/// layer, plus one for the float model and one to measure what is left. Correcting every layer
/// from one pass instead does not work: a layer's measured shift includes what its inputs'
/// shifts cause, which their own corrections then remove, so the later layers are
/// over-corrected (on a 4-bit ResNet-20 that took the logits' SQNR from 14 dB to 0 dB, and
/// repeating such passes made it worse).
///
/// Run it on a non-autodiff device, after [`crate::qat::calibrate`] (the observers frozen: the
/// passes must not move the quantizers' ranges).
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Distribution, Tensor};
/// use quant::qat::{calibrate, correct_bias};
/// use quant::{LayerKind, QuantLinear, QuantLinearConfig, QuantMapping};
///
/// #[derive(Module, Debug)]
/// struct Net {
///     fc1: QuantLinear,
///     fc2: QuantLinear,
/// }
///
/// impl Net {
///     fn forward(&self, x: Tensor<2>) -> Tensor<2> {
///         let h = self.fc1.forward(x);
///         self.fc2.forward_from(h, self.fc1.output_quant.as_ref())
///     }
/// }
///
/// let device = Device::flex();
/// let float = Net {
///     fc1: QuantLinearConfig::new(8, 16).with_relu(true).init(&device),
///     fc2: QuantLinearConfig::new(16, 4).init(&device),
/// };
/// let mapping = QuantMapping::w4a4();
/// let quantize = |layer: &QuantLinear, path: &str| {
///     layer.clone().with_quantizers(&mapping.layer(path, LayerKind::Linear, 2, 2)).unwrap()
/// };
/// let quantized = Net { fc1: quantize(&float.fc1, "fc1"), fc2: quantize(&float.fc2, "fc2") };
/// let batches: Vec<Tensor<2>> = (0..4)
///     .map(|_| Tensor::random([32, 8], Distribution::Normal(0.5, 1.0), &device))
///     .collect();
/// let forward = |net: &Net, x: Tensor<2>| {
///     let _ = net.forward(x);
/// };
/// let ptq = calibrate(quantized, batches.iter().cloned(), forward);
/// let (ptq, report) = correct_bias(&float, ptq, &batches, forward).unwrap();
/// assert_eq!(report.layers.len(), 2);
/// assert!(report.layers.iter().all(|l| l.shift_db_after > l.shift_db_before));
/// println!("{}", report.to_markdown());
/// ```
///
/// # Errors
/// When `batches` is empty, or no layer of `quantized` has a bias this crate's layers record in
/// both models (nothing to correct).
pub fn correct_bias<M: Module, B: Clone>(
    float: &M,
    quantized: M,
    batches: &[B],
    forward: impl FnMut(&M, B),
) -> Result<(M, BiasCorrectionReport), QuantError> {
    correct_bias_with_progress(float, quantized, batches, forward, |_, _| {})
}

/// [`correct_bias`], calling `progress(corrected, layers)` after each layer (one pass over the
/// batches each), for a progress line on a long correction (a BERT has dozens of layers).
pub fn correct_bias_with_progress<M: Module, B: Clone>(
    float: &M,
    quantized: M,
    batches: &[B],
    mut forward: impl FnMut(&M, B),
    mut progress: impl FnMut(usize, usize),
) -> Result<(M, BiasCorrectionReport), QuantError> {
    if batches.is_empty() {
        return Err(QuantError::field(
            "batches",
            "bias correction needs at least one calibration batch",
        ));
    }
    let reference = capture(float, batches, &mut forward, false);
    let mut model = quantized;
    let mut current = capture(&model, batches, &mut forward, false);
    let before = shifts(&reference, &current);
    let order: Vec<ParamId> = current
        .order
        .iter()
        .filter(|id| before.contains_key(id))
        .copied()
        .collect();
    if order.is_empty() {
        return Err(QuantError::field(
            "model",
            "no layer with a bias was recorded in both the float and the quantized model (bias \
             correction needs QuantLinear/QuantConv2d biases or ConvBn2d layers, with the same \
             parameters in both models)",
        ));
    }
    let mut passes = 1;
    for (done, id) in order.iter().enumerate() {
        if let Some(shift) = shifts(&reference, &current).remove(id) {
            model = model.map(&mut AddToBias(HashMap::from([(*id, shift)])));
            current = capture(&model, batches, &mut forward, false);
            passes += 1;
        }
        progress(done + 1, order.len());
    }
    let after = shifts(&reference, &current);
    let paths: HashMap<ParamId, String> = param_paths(&model).into_iter().collect();
    let layers = order
        .iter()
        .map(|id| {
            let power = reference.sums[id].power();
            CorrectedLayer {
                bias: paths.get(id).cloned().unwrap_or_else(|| id.to_string()),
                channels: before[id].len(),
                shift_db_before: shift_db(power, &before[id]),
                shift_db_after: after.get(id).map_or(f64::NAN, |s| shift_db(power, s)),
            }
        })
        .collect();
    Ok((model, BiasCorrectionReport { layers, passes }))
}

/// Adds each measured shift to the bias it belongs to.
struct AddToBias(HashMap<ParamId, Vec<f64>>);

impl ModuleMapper for AddToBias {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(shift) = self.0.get(&param.id) else {
            return param;
        };
        if D != 1 {
            return param;
        }
        let shift: Vec<f32> = shift.iter().map(|&s| s as f32).collect();
        param.map(|bias| {
            let device = bias.device();
            let shape = bias.shape();
            bias + Tensor::<1>::from_floats(shift.as_slice(), &device).reshape(shape)
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Bool, Device, Distribution, Tensor};

    use super::*;
    use crate::qat::layer_outputs::capturing;
    use crate::qat::{calibrate, counting_positions, sqnr_db};
    use crate::testing::{Mlp, values};
    use crate::{
        ConvBn2d, ConvBn2dConfig, LayerKind, QuantConv2dConfig, QuantLinear, QuantLinearConfig,
        QuantMapping,
    };

    /// Inputs with a mean away from zero, so that weight rounding shifts the output means.
    fn batches(n: usize, d: usize, device: &Device) -> Vec<Tensor<2>> {
        (0..n)
            .map(|_| Tensor::random([32, d], Distribution::Normal(0.7, 1.0), device))
            .collect()
    }

    fn bias_of(layer: &QuantLinear) -> Vec<f32> {
        values(layer.bias.as_ref().expect("a bias").val())
    }

    /// A float layer `[d_in, d_out]` and its copy with 4-bit weights (input and output float).
    fn layer_and_w4_copy(d_in: usize, d_out: usize, device: &Device) -> (QuantLinear, QuantLinear) {
        let float = QuantLinearConfig::new(d_in, d_out).init(device);
        let w4 = QuantMapping::w4a4().weights_only();
        let quantized = float
            .clone()
            .with_quantizers(&w4.layer("fc", LayerKind::Linear, 2, 2))
            .unwrap();
        (float, quantized)
    }

    /// `bias + mean · (W - Q(W))ᵀ` on the host: the correction of a layer whose input is float,
    /// from its float and fake-quantized weights (`[d_in, d_out]`), independently of the capture.
    fn expected_bias(float: &QuantLinear, quantized: &QuantLinear, mean: &[f32]) -> Vec<f32> {
        let w = values(float.weight.val());
        let wq = values(quantized.weight.val());
        let d_out = w.len() / mean.len();
        let mut want = bias_of(quantized);
        for (o, want) in want.iter_mut().enumerate() {
            for (i, m) in mean.iter().enumerate() {
                *want += m * (w[i * d_out + o] - wq[i * d_out + o]);
            }
        }
        want
    }

    /// One layer, weights quantized, input float: the output mean shift is exactly
    /// `mean(x) · (W - Q(W))ᵀ`, so the correction must add exactly that to the bias (computed here on
    /// the host from the float and fake-quantized weights, independently of the capture).
    #[test]
    fn the_correction_is_the_mean_input_times_the_weight_error() {
        let device = Device::flex();
        device.seed(3);
        let (float, quantized) = layer_and_w4_copy(12, 5, &device);
        let data = batches(3, 12, &device);
        let forward = |m: &QuantLinear, x: Tensor<2>| {
            let _ = m.forward(x);
        };
        let quantized = calibrate(quantized, data.iter().cloned(), forward);
        let (corrected, report) =
            correct_bias(&float, quantized.clone(), &data, forward).expect("a layer with a bias");

        let mean = values(Tensor::cat(data.clone(), 0).mean_dim(0));
        let want = expected_bias(&float, &quantized, &mean);
        crate::testing::assert_close("corrected bias", &bias_of(&corrected), &want);
        assert_ne!(bias_of(&corrected), bias_of(&quantized), "the bias moved");
        assert_eq!(report.layers.len(), 1);
        assert_eq!(report.layers[0].bias, "bias");
        assert_eq!(report.layers[0].channels, 5);
    }

    /// Padded sequences: with the real tokens marked, the correction is the one of the real
    /// tokens alone (`mean(x over real tokens) · (W - Q(W))ᵀ`), however far the padding's
    /// activations are from them; without the mark the padding would pull it away.
    #[test]
    fn only_the_marked_positions_count() {
        let device = Device::flex();
        device.seed(9);
        let (float, quantized) = layer_and_w4_copy(6, 4, &device);
        // [2 sentences, 5 positions, 6 features]: the first 3 and 2 positions are real, the
        // padding's features are 50 where the tokens' are about 0.5.
        let real = [
            [true, true, true, false, false],
            [true, true, false, false, false],
        ];
        let mask = Tensor::<2, Bool>::from_data(real, &device);
        let tokens = Tensor::<3>::random([2, 5, 6], Distribution::Normal(0.5, 1.0), &device);
        let padding = Tensor::<3>::full([2, 5, 6], 50.0, &device);
        let x = padding.mask_where(mask.clone().unsqueeze_dim::<3>(2).repeat_dim(2, 6), tokens);
        let quantized = calibrate(quantized, [x.clone()], |m: &QuantLinear, x| {
            let _ = m.forward(x);
        });
        let masked = |m: &QuantLinear, x: Tensor<3>| {
            counting_positions(&mask, || {
                let _ = m.forward(x);
            })
        };
        let (corrected, _) =
            correct_bias(&float, quantized.clone(), std::slice::from_ref(&x), masked).unwrap();

        let xs = values(x.clone());
        let flat: Vec<bool> = real.iter().flatten().copied().collect();
        let mut mean = [0f32; 6];
        for (p, _) in flat.iter().enumerate().filter(|(_, r)| **r) {
            for (i, m) in mean.iter_mut().enumerate() {
                *m += xs[p * 6 + i] / 5.0;
            }
        }
        let want = expected_bias(&float, &quantized, &mean);
        crate::testing::assert_close("masked correction", &bias_of(&corrected), &want);
        let unmasked = |m: &QuantLinear, x: Tensor<3>| {
            let _ = m.forward(x);
        };
        let (all_rows, _) = correct_bias(&float, quantized, &[x], unmasked).unwrap();
        assert!(
            bias_of(&all_rows)
                .iter()
                .zip(&want)
                .any(|(a, w)| (a - w).abs() > 1e-2),
            "the padding counts when nothing marks it"
        );
    }

    /// W4A4, two layers, biases rounded as the engine rounds them: each layer's mean shift
    /// shrinks by at least 10 dB, and on batches the correction never saw the logits move closer
    /// to the float model's.
    #[test]
    fn w4a4_mean_shift_shrinks_and_held_out_sqnr_improves() {
        let device = Device::flex();
        device.seed(11);
        let float = Mlp::new([16, 32, 8], &device);
        let quantized = float.quantized(&QuantMapping::w4a4());
        let (calibration, held_out) = (batches(6, 16, &device), batches(6, 16, &device));
        let forward = |m: &Mlp, x: Tensor<2>| {
            let _ = m.forward(x);
        };
        let quantized = calibrate(quantized, calibration.iter().cloned(), forward);
        let (corrected, report) =
            correct_bias(&float, quantized.clone(), &calibration, forward).unwrap();
        assert_eq!(report.passes, 3, "one pass per layer, plus one");
        let names: Vec<&str> = report.layers.iter().map(|l| l.bias.as_str()).collect();
        assert_eq!(names, ["fc1.bias", "fc2.bias"]);
        for layer in &report.layers {
            assert!(
                layer.shift_db_after > layer.shift_db_before + 10.0,
                "{layer:?}: the mean shift did not shrink"
            );
        }
        let logits = |m: &Mlp| -> Vec<f32> {
            held_out
                .iter()
                .flat_map(|x| values(m.forward(x.clone())))
                .collect()
        };
        let reference = logits(&float);
        let before = sqnr_db(&reference, &logits(&quantized)).unwrap();
        let after = sqnr_db(&reference, &logits(&corrected)).unwrap();
        assert!(
            after > before + 0.5,
            "held-out SQNR {before:.2} dB -> {after:.2} dB"
        );
    }

    /// A ConvBn2d has no bias of its own: the BN shift takes the correction, and the folded
    /// layer (what the engine runs) carries it.
    #[test]
    fn conv_bn_corrects_through_the_bn_shift() {
        let device = Device::flex();
        device.seed(5);
        let conv = QuantConv2dConfig::new([3, 6], [3, 3]).with_bias(false);
        let float: ConvBn2d = ConvBn2dConfig::new(conv).init(&device);
        let quantized = float
            .clone()
            .with_quantizers(&QuantMapping::w4a4().layer("conv", LayerKind::Conv2d, 4, 4))
            .unwrap();
        let data: Vec<Tensor<4>> = (0..3)
            .map(|_| Tensor::random([4, 3, 8, 8], Distribution::Normal(0.5, 1.0), &device))
            .collect();
        let forward = |m: &ConvBn2d, x: Tensor<4>| {
            let _ = m.forward(x);
        };
        let quantized = calibrate(quantized, data.iter().cloned(), forward);
        let (corrected, report) = correct_bias(&float, quantized.clone(), &data, forward).unwrap();
        assert_eq!(report.layers.len(), 1);
        assert_eq!(report.layers[0].bias, "bn.beta");
        assert_ne!(
            values(corrected.bn.beta.val()),
            values(quantized.bn.beta.val())
        );
        assert!(report.layers[0].shift_db_after > report.layers[0].shift_db_before + 10.0);
    }

    /// The float model against itself: nothing to correct, every shift is zero.
    #[test]
    fn a_float_model_is_left_as_it_is() {
        let device = Device::flex();
        let float = Mlp::new([4, 6, 3], &device);
        let data = batches(2, 4, &device);
        let forward = |m: &Mlp, x: Tensor<2>| {
            let _ = m.forward(x);
        };
        let (same, report) = correct_bias(&float, float.clone(), &data, forward).unwrap();
        assert_eq!(bias_of(&same.fc2), bias_of(&float.fc2));
        assert!(
            report
                .layers
                .iter()
                .all(|l| l.shift_db_before.is_infinite())
        );
    }

    #[test]
    fn bad_arguments_name_what_is_wrong() {
        let device = Device::flex();
        let float = Mlp::new([4, 6, 3], &device);
        let data = batches(1, 4, &device);
        let forward = |m: &Mlp, x: Tensor<2>| {
            let _ = m.forward(x);
        };
        let err = correct_bias(&float, float.clone(), &[], forward).unwrap_err();
        assert!(err.to_string().contains("batches"), "{err}");
        let no_bias = |m: &Mlp| Mlp {
            fc1: QuantLinear {
                bias: None,
                ..m.fc1.clone()
            },
            fc2: QuantLinear {
                bias: None,
                ..m.fc2.clone()
            },
        };
        let err = correct_bias(&no_bias(&float), no_bias(&float), &data, forward).unwrap_err();
        assert!(err.to_string().contains("no layer with a bias"), "{err}");
        assert!(
            !capturing(),
            "a failed correction leaves no recording behind"
        );
    }
}

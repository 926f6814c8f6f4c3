//! [`compare_layers`]: a quantized model's error layer by layer, against the float model it was
//! made from (PyTorch Numeric Suite's `compare_model_outputs`, for any model built from this
//! crate's layers).
//!
//! The logits' SQNR says how much a scheme loses; this says where the error starts and how it
//! grows, and which part of it is systematic (a shift of each channel's mean, which
//! [`correct_bias`](super::correct_bias) removes) rather than noise.

use std::collections::HashMap;

use burn::module::{Module, ParamId};
use burn::tensor::Tensor;

use super::layer_outputs::{capture, param_paths};

/// One layer's output error: the quantized model's output before the activation function and
/// output quantizer, against the float model's, over every batch compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerError {
    /// The layer's path, e.g. `blocks.3.conv2` (its bias's path without `.bias` / `.bn.beta`).
    pub layer: String,
    /// Output channels.
    pub channels: usize,
    /// `10·log10(Σ float² / Σ (quantized − float)²)`: the whole error (`∞` where the outputs
    /// are equal; `null` in JSON).
    pub sqnr_db: f64,
    /// The same with only the per-channel mean of the error as the noise: its systematic part
    /// (higher is better; where it is close to `sqnr_db`, the error is mostly a mean shift).
    pub shift_db: f64,
}

/// Running sums of one layer's comparison.
#[derive(Default)]
struct Sums {
    signal: f64,
    noise: f64,
    channel_error: Vec<f64>,
    rows: usize,
}

/// Compares `quantized` (a calibrated copy of `float`: the same parameters, with quantizers)
/// with `float` layer by layer over `batches`, in the order the forward pass reaches the layers.
/// `forward` is the models' forward pass on one batch (its output is dropped); both models run
/// each batch in turn, so only one batch's layer outputs are held at a time.
///
/// Layers whose outputs differ in shape between the two models, or that only one of them
/// records, are left out.
///
/// ```
/// use burn::module::Module;
/// use burn::tensor::{Device, Distribution, Tensor};
/// use quant::qat::{calibrate, compare_layers};
/// use quant::{LayerKind, QuantLinear, QuantLinearConfig, QuantMapping};
///
/// let device = Device::flex();
/// let float = QuantLinearConfig::new(8, 4).init(&device);
/// let layer = QuantMapping::w4a4().layer("fc", LayerKind::Linear, 2, 2);
/// let quantized = float.clone().with_quantizers(&layer).unwrap();
/// let batches: Vec<Tensor<2>> = (0..2)
///     .map(|_| Tensor::random([16, 8], Distribution::Normal(0.0, 1.0), &device))
///     .collect();
/// let forward = |m: &QuantLinear, x: Tensor<2>| {
///     let _ = m.forward(x);
/// };
/// let quantized = calibrate(quantized, batches.iter().cloned(), forward);
/// let errors = compare_layers(&float, &quantized, batches, forward);
/// assert_eq!(errors[0].layer, "");
/// assert!(errors[0].sqnr_db > 5.0 && errors[0].sqnr_db < 40.0);
/// assert!(errors[0].shift_db >= errors[0].sqnr_db);
/// ```
pub fn compare_layers<M: Module, B: Clone>(
    float: &M,
    quantized: &M,
    batches: impl IntoIterator<Item = B>,
    mut forward: impl FnMut(&M, B),
) -> Vec<LayerError> {
    let mut sums: HashMap<ParamId, Sums> = HashMap::new();
    let mut order: Vec<ParamId> = Vec::new();
    for batch in batches {
        let batch = [batch];
        let f = capture(float, &batch, &mut forward, true);
        let q = capture(quantized, &batch, &mut forward, true);
        let (Some(f_outputs), Some(q_outputs)) = (f.outputs, q.outputs) else {
            continue;
        };
        for id in &q.order {
            let (Some(fs), Some(qs)) = (f_outputs.get(id), q_outputs.get(id)) else {
                continue;
            };
            if fs.len() != qs.len() || fs.iter().zip(qs).any(|(f, q)| f.dims() != q.dims()) {
                continue;
            }
            let rows = q.sums[id].count;
            let entry = sums.entry(*id).or_insert_with(|| {
                order.push(*id);
                Sums::default()
            });
            for (f, q) in fs.iter().zip(qs) {
                let channels = f.dims()[1];
                let error = q.clone() - f.clone();
                // Per channel: Σ float², Σ error², Σ error — one transfer.
                let stats = Tensor::cat(
                    vec![
                        f.clone().powi_scalar(2).sum_dim(0),
                        error.clone().powi_scalar(2).sum_dim(0),
                        error.sum_dim(0),
                    ],
                    0,
                )
                .into_data()
                .try_to_vec::<f32>()
                .expect("layer outputs are f32");
                let (signal, rest) = stats.split_at(channels);
                let (noise, by_channel) = rest.split_at(channels);
                entry.signal += signal.iter().map(|&x| f64::from(x)).sum::<f64>();
                entry.noise += noise.iter().map(|&x| f64::from(x)).sum::<f64>();
                if entry.channel_error.len() != channels {
                    entry.channel_error = vec![0.0; channels];
                }
                for (total, e) in entry.channel_error.iter_mut().zip(by_channel) {
                    *total += f64::from(*e);
                }
            }
            entry.rows += rows;
        }
    }
    let paths: HashMap<ParamId, String> = param_paths(quantized).into_iter().collect();
    order
        .iter()
        .map(|id| {
            let s = &sums[id];
            let channels = s.channel_error.len();
            let ratio_db = |noise: f64| {
                if noise == 0.0 {
                    f64::INFINITY
                } else {
                    10.0 * (s.signal / noise).log10()
                }
            };
            // The mean error of each channel, as the noise it would be at every row.
            let shift_noise = s
                .channel_error
                .iter()
                .map(|e| (e / s.rows as f64).powi(2) * s.rows as f64)
                .sum::<f64>();
            let path = paths.get(id).cloned().unwrap_or_else(|| id.to_string());
            LayerError {
                layer: layer_of(&path),
                channels,
                sqnr_db: ratio_db(s.noise),
                shift_db: ratio_db(shift_noise),
            }
        })
        .collect()
}

/// A layer's path from its bias's: `fc1.bias` → `fc1`, `conv1.bn.beta` → `conv1`.
fn layer_of(bias: &str) -> String {
    let layer = bias
        .strip_suffix(".bn.beta")
        .or_else(|| bias.strip_suffix(".bias"))
        .or_else(|| bias.strip_suffix("bias"))
        .unwrap_or(bias);
    layer.to_string()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;
    use crate::qat::{calibrate, correct_bias, sqnr_db};
    use crate::testing::{Mlp, values};
    use crate::{LayerKind, QuantMapping};

    fn setup(device: &Device) -> (Mlp, Mlp, Vec<Tensor<2>>) {
        device.seed(21);
        let float = Mlp::new([12, 24, 6], device);
        let mapping = QuantMapping::w4a4();
        let layer = |path| mapping.layer(path, LayerKind::Linear, 2, 2);
        // The logits stay float, as a classifier's do.
        let quantized = Mlp {
            fc1: float.fc1.clone().with_quantizers(&layer("fc1")).unwrap(),
            fc2: float
                .fc2
                .clone()
                .with_quantizers(&layer("fc2").without_output())
                .unwrap(),
        };
        let batches: Vec<Tensor<2>> = (0..3)
            .map(|_| Tensor::random([20, 12], Distribution::Normal(0.6, 1.0), device))
            .collect();
        let quantized = calibrate(quantized, batches.iter().cloned(), forward);
        (float, quantized, batches)
    }

    fn forward(m: &Mlp, x: Tensor<2>) {
        let _ = m.forward(x);
    }

    /// The last layer has no output quantizer: its pre-activation output is the logits, so its
    /// row must be the logits' SQNR computed directly; the first layer's error is smaller
    /// (it has fewer quantizers behind it).
    #[test]
    fn the_last_layer_is_the_logits_sqnr_and_errors_grow_with_depth() {
        let device = Device::flex();
        let (float, quantized, batches) = setup(&device);
        let errors = compare_layers(&float, &quantized, batches.clone(), forward);
        let layers: Vec<&str> = errors.iter().map(|e| e.layer.as_str()).collect();
        assert_eq!(layers, ["fc1", "fc2"]);
        assert_eq!(errors[1].channels, 6);
        let logits = |m: &Mlp| -> Vec<f32> {
            batches
                .iter()
                .flat_map(|x| values(m.forward(x.clone())))
                .collect()
        };
        let direct = sqnr_db(&logits(&float), &logits(&quantized)).unwrap();
        assert!(
            (errors[1].sqnr_db - direct).abs() < 1e-3,
            "{} vs {direct}",
            errors[1].sqnr_db
        );
        assert!(errors[0].sqnr_db > errors[1].sqnr_db, "{errors:?}");
        for e in &errors {
            assert!(
                e.shift_db >= e.sqnr_db,
                "the mean is part of the error: {e:?}"
            );
        }
    }

    /// After bias correction on the same batches the systematic part is gone: each layer's
    /// shift is far below its noise, which it was not before.
    #[test]
    fn bias_correction_removes_the_systematic_part() {
        let device = Device::flex();
        let (float, quantized, batches) = setup(&device);
        let before = compare_layers(&float, &quantized, batches.clone(), forward);
        let (corrected, _) = correct_bias(&float, quantized, &batches, forward).unwrap();
        let after = compare_layers(&float, &corrected, batches, forward);
        for (b, a) in before.iter().zip(&after) {
            assert!(a.shift_db > b.shift_db + 10.0, "{b:?} -> {a:?}");
            assert!(a.shift_db > a.sqnr_db + 15.0, "{a:?}");
        }
    }

    /// The float model against itself: no error anywhere.
    #[test]
    fn a_model_against_itself_has_no_error() {
        let device = Device::flex();
        let (float, _, batches) = setup(&device);
        let errors = compare_layers(&float, &float.clone(), batches, forward);
        assert_eq!(errors.len(), 2);
        assert!(
            errors
                .iter()
                .all(|e| e.sqnr_db.is_infinite() && e.shift_db.is_infinite())
        );
    }
}

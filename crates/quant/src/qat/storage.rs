//! [`storage_bytes`]: the bytes a model takes when stored for deployment, quantized as its
//! quantizers say (the number `report.json`'s `size_bytes` and the README's "4–16× smaller" mean).
//!
//! Accounting, as in PyTorch's quantized `state_dict`s and TensorRT engines:
//! - a quantized weight stores `numel · bits / 8` bytes of codes (bit-packed below 8 bits), plus a
//!   4-byte `f32` scale per scale and, for affine grids, a zero point per scale in the code's width;
//! - a float parameter (no quantizer) stores 4 bytes per value; biases 4 bytes per value (`f32`
//!   in float models, `i32` in integer ones);
//! - an activation quantizer stores its scale and zero point (a per-token one stores nothing);
//! - batch norm inside a [`crate::ConvBn2d`] is folded into the convolution: it adds only the
//!   folded bias (4 bytes per channel) and replaces the conv's own bias; a standalone BatchNorm
//!   stores a scale and a shift per channel; running statistics are folded, never stored.
//!
//! The walk is a `ModuleVisitor`, so it sizes any module: stock `burn::nn` layers whose weights
//! [`crate::qat::prepare`] quantized, this crate's layers, and user modules mixing both. Quantizers
//! keep their grid (`bits`, signedness, symmetry) in a saved state tensor, which is what the walk
//! reads.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Bytes `model` takes stored for deployment (see the module docs).
pub fn storage_bytes<M: Module>(model: &M) -> usize {
    let mut counter = StorageCounter::default();
    model.visit(&mut counter);
    counter.bytes
}

/// Bytes of `numel` values on a `bits`-bit grid with `num_params` scales (plus zero points when
/// not `symmetric`).
pub fn quantized_tensor_bytes(
    numel: usize,
    bits: u32,
    num_params: usize,
    symmetric: bool,
) -> usize {
    (numel * bits as usize).div_ceil(8) + quantizer_param_bytes(bits, num_params, symmetric)
}

/// Bytes of a quantizer's own parameters: a 4-byte scale per scale, plus a zero point per scale
/// in the code's width for affine grids.
pub fn quantizer_param_bytes(bits: u32, num_params: usize, symmetric: bool) -> usize {
    let zero_point = if symmetric {
        0
    } else {
        (bits as usize).div_ceil(8)
    };
    num_params * (4 + zero_point)
}

/// What the quantizer being walked quantizes.
#[derive(Clone, Copy)]
enum Target {
    /// A weight of this many values.
    Weight(usize),
    /// An activation.
    Activation,
}

#[derive(Default)]
struct QuantizerSeen {
    target: Option<Target>,
    grid: Vec<f32>,
    num_params: usize,
}

#[derive(Default)]
struct StorageCounter {
    stack: Vec<(String, String)>,
    bytes: usize,
    /// The last float parameter counted, `(numel)`: a quantizer attached to it as a
    /// reparameterization turns its 4 bytes per value into codes.
    last_float: Option<usize>,
    /// A `ConvBn2d`'s conv weight, waiting for the layer's `weight_quant`.
    conv_bn_weight: Option<usize>,
    quantizer: Option<QuantizerSeen>,
}

const QUANTIZER: &str = "Struct:Quantizer";

impl StorageCounter {
    fn in_quantizer(&self) -> bool {
        self.stack.iter().any(|(_, c)| c == QUANTIZER)
    }

    fn finish_quantizer(&mut self) {
        let Some(seen) = self.quantizer.take() else {
            return;
        };
        let [bits, _signed, symmetric, dynamic] = match seen.grid.as_slice() {
            [a, b, c, d] => [*a, *b, *c, *d],
            _ => return,
        };
        let (bits, symmetric) = (bits as u32, symmetric != 0.0);
        self.bytes += match seen.target {
            Some(Target::Weight(numel)) => {
                quantized_tensor_bytes(numel, bits, seen.num_params, symmetric)
            }
            Some(Target::Activation) if dynamic == 0.0 => {
                quantizer_param_bytes(bits, seen.num_params, symmetric)
            }
            _ => 0,
        };
    }
}

impl ModuleVisitor for StorageCounter {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if container_type == QUANTIZER && !self.in_quantizer() && self.quantizer.is_none() {
            let target = match self.stack.last() {
                Some((_, c)) if c == "Reparameterization" => {
                    self.last_float.take().map(|numel| {
                        // The weight is stored as codes, not floats.
                        self.bytes -= 4 * numel;
                        Target::Weight(numel)
                    })
                }
                Some((n, c)) if n == "weight_quant" && c == "Struct:ConvBn2d" => {
                    self.conv_bn_weight.take().map(Target::Weight)
                }
                _ => Some(Target::Activation),
            };
            self.quantizer = Some(QuantizerSeen {
                target,
                ..Default::default()
            });
        }
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.stack.pop();
        let quantizer_entry_closed =
            self.quantizer.is_some() && !self.in_quantizer() && container_type != QUANTIZER;
        if quantizer_entry_closed {
            self.finish_quantizer();
        }
        if name == "weight_quant" && container_type == "Struct:ConvBn2d" {
            // A ConvBn2d without a weight quantizer stores its folded weight in float.
            if let Some(numel) = self.conv_bn_weight.take() {
                self.bytes += 4 * numel;
            }
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let numel = param.lazy_shape().num_elements();
        if self.in_quantizer() {
            let Some(seen) = self.quantizer.as_mut() else {
                return;
            };
            match self.stack.last() {
                Some((n, c)) if n == "grid" && c == QUANTIZER => {
                    seen.grid = param
                        .val()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .unwrap_or_default();
                }
                Some((n, c)) if n == "min" && c == "Struct:Observer" => seen.num_params = numel,
                _ => {}
            }
            return;
        }
        let len = self.stack.len();
        let (field, owner) = match self.stack.last() {
            Some((f, o)) => (f.as_str(), o.as_str()),
            None => ("", ""),
        };
        let parent = (len >= 2).then(|| self.stack[len - 2].1.as_str());
        self.last_float = None;
        match (owner, parent) {
            ("Struct:BatchNorm", Some("Struct:ConvBn2d")) => {
                if field == "gamma" {
                    self.bytes += 4 * numel; // the folded bias
                }
            }
            ("Struct:BatchNorm", _) => {
                if field == "gamma" || field == "beta" {
                    self.bytes += 4 * numel;
                }
            }
            ("Struct:Conv2d", Some("Struct:ConvBn2d")) => {
                if field == "weight" {
                    self.conv_bn_weight = Some(numel);
                }
                // A conv bias is folded into the BN-folded bias.
            }
            _ => {
                self.bytes += 4 * numel;
                self.last_float = Some(numel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConvBn2dConfig, QuantConv2dConfig, QuantLinearConfig, QuantMapping};
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn w8a8_linear_is_about_four_times_smaller_than_float() {
        let device = Device::flex();
        let float = QuantLinearConfig::new(64, 32).init(&device);
        assert_eq!(storage_bytes(&float), 64 * 32 * 4 + 32 * 4);
        let mapping = QuantMapping::w8a8();
        let q = QuantLinearConfig::new(64, 32)
            .with_weight(mapping.weight.clone())
            .with_output(mapping.activation.clone())
            .init(&device);
        // int8 codes, per-channel symmetric scales (32 × 4 bytes), f32/i32 bias, one affine u8 activation grid.
        assert_eq!(storage_bytes(&q), 64 * 32 + 32 * 4 + 32 * 4 + (4 + 1));
    }

    #[test]
    fn stock_layers_prepared_by_a_mapping_are_counted_as_quantized() {
        let device = Device::flex();
        let linear = LinearConfig::new(64, 32).init(&device);
        assert_eq!(storage_bytes(&linear), 64 * 32 * 4 + 32 * 4);
        let (q, _) = crate::qat::prepare(linear, &QuantMapping::w4()).unwrap();
        assert_eq!(storage_bytes(&q), 64 * 32 / 2 + 32 * 4 + 32 * 4);
    }

    #[test]
    fn four_bit_conv_bn_packs_two_codes_per_byte_and_folds_bn() {
        let device = Device::flex();
        let mapping = QuantMapping::w4a4();
        let conv = QuantConv2dConfig::new([3, 8], [3, 3])
            .with_bias(false)
            .with_weight(mapping.weight.clone());
        let layer = ConvBn2dConfig::new(conv).init(&device);
        assert_eq!(storage_bytes(&layer), (8 * 3 * 9) / 2 + 8 * 4 + 8 * 4);
        let float = ConvBn2dConfig::new(QuantConv2dConfig::new([3, 8], [3, 3])).init(&device);
        // Float weights and the folded bias (the conv's own bias is folded into it).
        assert_eq!(storage_bytes(&float), 8 * 3 * 9 * 4 + 8 * 4);
    }
}

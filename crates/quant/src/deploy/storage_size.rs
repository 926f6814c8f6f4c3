//! [`StorageSize`]: the bytes a layer takes when stored for deployment, quantized as its
//! quantizers say (the number that `report.json`'s `size_bytes` and the README's "4–16× smaller"
//! refer to).
//!
//! Accounting, as in PyTorch's quantized `state_dict`s and TensorRT engines:
//! - a quantized weight stores `numel · bits / 8` bytes of codes (bit-packed below 8 bits), plus a
//!   4-byte `f32` scale per scale and, for affine grids, a zero point per scale in the code's type;
//! - a float weight (no quantizer) stores 4 bytes per value;
//! - a bias stores 4 bytes per value (`f32` in float models, `i32` in integer ones);
//! - an activation quantizer stores its scale and zero point;
//! - batch norm is folded into the preceding convolution, so it adds only that layer's bias.

use burn::module::Param;
use burn::tensor::Tensor;

use crate::{ConvBn2d, QuantConv2d, QuantEmbedding, QuantLinear, Quantizer};

/// Bytes a module takes when stored for deployment, with its quantizers applied.
pub trait StorageSize {
    /// Deployment size in bytes.
    fn storage_bytes(&self) -> usize;
}

/// Bytes of a tensor of `numel` values stored as `quantizer` says (4 bytes per value without one).
pub fn tensor_storage_bytes(numel: usize, quantizer: Option<&Quantizer>) -> usize {
    match quantizer {
        None => numel * 4,
        Some(quant) => {
            (numel * quant.config.spec.storage_bits() as usize).div_ceil(8)
                + quantizer_param_bytes(quant)
        }
    }
}

/// Bytes of a quantizer's own parameters: a 4-byte scale per scale, plus a zero point per scale in
/// the code's width for affine grids.
pub fn quantizer_param_bytes(quant: &Quantizer) -> usize {
    let spec = &quant.config.spec;
    let num_params = quant.observer.min.value().dims()[0];
    let zero_point = if spec.symmetric {
        0
    } else {
        (spec.storage_bits() as usize).div_ceil(8)
    };
    num_params * (4 + zero_point)
}

fn weight_bytes<const D: usize>(weight: &Param<Tensor<D>>) -> usize {
    let numel = weight.lazy_shape().num_elements();
    tensor_storage_bytes(numel, weight.reparameterization::<Quantizer>())
}

fn bias_bytes(bias: &Option<Param<Tensor<1>>>) -> usize {
    bias.as_ref()
        .map_or(0, |b| b.lazy_shape().num_elements() * 4)
}

fn input_bytes(input: &Option<Quantizer>) -> usize {
    input.as_ref().map_or(0, quantizer_param_bytes)
}

impl StorageSize for QuantLinear {
    fn storage_bytes(&self) -> usize {
        weight_bytes(&self.weight) + bias_bytes(&self.bias) + input_bytes(&self.input_quant)
    }
}

impl StorageSize for QuantConv2d {
    fn storage_bytes(&self) -> usize {
        weight_bytes(&self.weight) + bias_bytes(&self.bias) + input_bytes(&self.input_quant)
    }
}

impl StorageSize for QuantEmbedding {
    fn storage_bytes(&self) -> usize {
        weight_bytes(&self.weight)
    }
}

impl StorageSize for ConvBn2d {
    fn storage_bytes(&self) -> usize {
        let shape = self.conv.weight.lazy_shape();
        let folded_bias = shape.dims::<4>()[0] * 4;
        tensor_storage_bytes(shape.num_elements(), self.weight_quant.as_ref())
            + folded_bias
            + input_bytes(&self.input_quant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConvBn2dConfig, QuantConv2dConfig, QuantLinearConfig, QuantMapping};
    use burn::tensor::Device;

    #[test]
    fn w8a8_linear_is_about_four_times_smaller_than_float() {
        let device = Device::flex();
        let float = QuantLinearConfig::new(64, 32).init(&device);
        assert_eq!(float.storage_bytes(), 64 * 32 * 4 + 32 * 4);
        let mapping = QuantMapping::w8a8();
        let q = QuantLinearConfig::new(64, 32)
            .with_weight(mapping.weight.clone())
            .with_input(mapping.activation.clone())
            .init(&device);
        // int8 codes, per-channel symmetric scales (32 × 4 bytes), f32/i32 bias, one affine u8 activation grid.
        assert_eq!(q.storage_bytes(), 64 * 32 + 32 * 4 + 32 * 4 + (4 + 1));
    }

    #[test]
    fn four_bit_conv_bn_packs_two_codes_per_byte_and_folds_bn() {
        let device = Device::flex();
        let mapping = QuantMapping::w4a4();
        let conv = QuantConv2dConfig::new([3, 8], [3, 3])
            .with_bias(false)
            .with_weight(mapping.weight.clone());
        let layer = ConvBn2dConfig::new(conv).init(&device);
        assert_eq!(layer.storage_bytes(), (8 * 3 * 9) / 2 + 8 * 4 + 8 * 4);
    }
}

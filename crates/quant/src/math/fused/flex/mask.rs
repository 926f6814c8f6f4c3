//! The one-bit clip mask a fixed-scale fake quant keeps for its backward pass.

use rayon::prelude::*;

/// Mask bytes per rayon task when packing or applying a bit mask (8 elements per byte).
pub(super) const MASK_CHUNK: usize = 1 << 12;

/// A 0/1 mask packed 8 elements to a byte, element `8i + k` in bit `k` of byte `i`: the clip
/// mask a fixed-scale fake quant keeps for its backward pass, 1/32 of its float input.
pub(super) fn pack_bits(mask: &[f32]) -> Vec<u8> {
    let mut bits = vec![0u8; mask.len().div_ceil(8)];
    bits.par_chunks_mut(MASK_CHUNK)
        .zip(mask.par_chunks(8 * MASK_CHUNK))
        .for_each(|(bits, mask)| {
            for (byte, m) in bits.iter_mut().zip(mask.chunks(8)) {
                *byte = m
                    .iter()
                    .enumerate()
                    .fold(0u8, |acc, (k, &v)| acc | (((v != 0.0) as u8) << k));
            }
        });
    bits
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorData;

    use super::super::super::FakeQuantKernels;
    use super::*;

    /// Packing and applying the bit mask over several rayon chunks and a ragged tail: every
    /// gradient element is kept or zeroed exactly as its mask element says.
    #[test]
    pub(super) fn bit_mask_round_trips_over_chunks_and_a_ragged_tail() {
        let n = 8 * MASK_CHUNK * 3 + 13;
        let mask: Vec<f32> = (0..n).map(|i| ((i * 7919) % 5 != 0) as u8 as f32).collect();
        let grad: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
        let bits = pack_bits(&mask);
        assert_eq!(bits.len(), n.div_ceil(8));
        let dx = Flex::apply_mask(
            FlexTensor::from_data(TensorData::new(grad.clone(), [n])),
            FlexTensor::from_data(TensorData::new(bits.clone(), [bits.len()])),
        );
        let dx = dx.into_data().try_into_vec::<f32>().unwrap();
        let expected: Vec<f32> = grad.iter().zip(&mask).map(|(g, m)| g * m).collect();
        assert_eq!(dx, expected);
    }
}

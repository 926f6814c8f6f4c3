//! The one-bit clip mask a fixed-scale fake quant keeps for its backward pass (written by
//! [`super::grid::Grid::map_masked`]), and the backward pass that applies it.

use rayon::prelude::*;

use super::super::runs::split_min;

/// Mask bytes per rayon task when a large gradient is masked (8 elements per byte).
const MASK_CHUNK: usize = 1 << 12;

/// `grad · mask` in place, for a mask packed 8 elements to a byte (element `8i + k` in bit `k`
/// of byte `i`); split across rayon's workers only for tensors as large as the other kernels
/// split (see [`split_min`]).
pub(super) fn apply_bits(grad: &mut [f32], bits: &[u8]) {
    let mask_chunk = |g: &mut [f32], bits: &[u8]| {
        for (g, &byte) in g.chunks_mut(8).zip(bits) {
            for (k, g) in g.iter_mut().enumerate() {
                *g *= ((byte >> k) & 1) as f32;
            }
        }
    };
    if grad.len() < split_min(rayon::current_num_threads()) {
        mask_chunk(grad, bits);
        return;
    }
    grad.par_chunks_mut(8 * MASK_CHUNK)
        .zip(bits.par_chunks(MASK_CHUNK))
        .for_each(|(g, bits)| mask_chunk(g, bits));
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorData;

    use super::super::super::FakeQuantKernels;
    use super::*;

    /// Applying the bit mask over several rayon chunks and a ragged tail: every gradient
    /// element is kept or zeroed exactly as its mask bit says.
    #[test]
    pub(super) fn bit_mask_applies_over_chunks_and_a_ragged_tail() {
        let n = 8 * MASK_CHUNK * 3 + 13;
        let keep = |i: usize| !(i * 7919).is_multiple_of(5);
        let mut bits = vec![0u8; n.div_ceil(8)];
        for i in (0..n).filter(|&i| keep(i)) {
            bits[i / 8] |= 1 << (i % 8);
        }
        let grad: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
        let expected: Vec<f32> = (0..n)
            .map(|i| if keep(i) { grad[i] } else { 0.0 })
            .collect();
        let masked = |bits: Vec<u8>| {
            let dx = Flex::apply_mask(
                FlexTensor::from_data(TensorData::new(grad.clone(), [n])),
                FlexTensor::from_data(TensorData::new(bits.clone(), [bits.len()])),
            );
            dx.into_data().try_into_vec::<f32>().unwrap()
        };
        assert_eq!(masked(bits.clone()), expected);
        // The parallel path too (this size is below the split threshold of a small machine).
        let mut split = grad.clone();
        rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(|| apply_bits(&mut split, &bits));
        assert_eq!(split, expected);
    }
}

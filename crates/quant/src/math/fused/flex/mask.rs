//! The one-bit clip mask a fixed-scale fake quant keeps for its backward pass (written by
//! [`super::grid::Grid::map_masked`]), and the backward pass that applies it.

use rayon::prelude::*;

use super::super::runs::split_min;

/// Mask bytes per rayon task when a large gradient is masked (8 elements per byte).
const MASK_CHUNK: usize = 1 << 12;

/// Each mask byte's eight bits as eight factors (`1.0` kept, `0.0` clipped): one row multiplies
/// eight gradients in a vector load. Testing the bits lane by lane compiled to scalar code and
/// took 2× as long (786,432 elements, cache-warm: 370–440 µs → 200 µs; a plain scaling pass of
/// the same gradient, the memory floor, 95 µs).
static BYTE_FACTORS: [[f32; 8]; 256] = byte_factors();

const fn byte_factors() -> [[f32; 8]; 256] {
    let mut table = [[0.0; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut k = 0;
        while k < 8 {
            if (byte >> k) & 1 == 1 {
                table[byte][k] = 1.0;
            }
            k += 1;
        }
        byte += 1;
    }
    table
}

/// One chunk of [`apply_bits`], as a pulp op so the loop is compiled for AVX-512 / AVX2.
struct MaskChunk<'a> {
    grad: &'a mut [f32],
    bits: &'a [u8],
}

impl pulp::WithSimd for MaskChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        // `grad · factor` (not a select), so a NaN or infinite gradient stays one where kept and
        // becomes NaN where clipped, as `grad * mask` does in PyTorch's backward.
        for (g, &byte) in self.grad.chunks_mut(8).zip(self.bits) {
            for (g, factor) in g.iter_mut().zip(&BYTE_FACTORS[byte as usize]) {
                *g *= factor;
            }
        }
    }
}

/// `grad · mask` in place, for a mask packed 8 elements to a byte (element `8i + k` in bit `k`
/// of byte `i`); split across rayon's workers only for tensors as large as the other kernels
/// split (see [`split_min`]).
pub(super) fn apply_bits(grad: &mut [f32], bits: &[u8]) {
    let arch = pulp::Arch::new();
    let mask_chunk = |grad: &mut [f32], bits: &[u8]| arch.dispatch(MaskChunk { grad, bits });
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

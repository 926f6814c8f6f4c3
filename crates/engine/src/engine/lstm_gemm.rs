//! The LSTM on the int8 GEMM: per block of sequences, the input product of every frame in one
//! GEMM, then frame by frame the recurrent product of the block's hidden states (the block's
//! sequences in lockstep), with the gates and states computed by [`FrameMath`] — the
//! interpreter's arithmetic, so the engine's codes are the interpreter's.

use rayon::prelude::*;

use crate::gemm::{Isa, PackedWeights, gemm_into};
use crate::lstm::{FrameMath, LstmGrids, LstmLayer};
use crate::program::ActQuant;

/// An LSTM layer prepared for the GEMM: its input and hidden weights packed once.
pub(super) struct GemmLstm {
    layer: LstmLayer,
    input: PackedWeights,
    hidden: PackedWeights,
}

impl GemmLstm {
    /// Packs `layer`'s weights.
    pub(super) fn new(layer: LstmLayer) -> Self {
        let (d_in, h) = layer.weights.dims();
        let input = PackedWeights::pack(&layer.weights.input_codes(), 4 * h, d_in);
        let hidden = PackedWeights::pack(&layer.weights.hidden_codes(), 4 * h, h);
        GemmLstm {
            layer,
            input,
            hidden,
        }
    }

    /// [`crate::lstm::lstm`] on the GEMM: `x` the input's codes `[batch, time, in]`, `mask`
    /// `[batch, time]`; the hidden state's codes after every frame, `[batch, time, H]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        isa: Isa,
        grids: &LstmGrids,
        input: &ActQuant,
        hidden: &ActQuant,
        [batch, time]: [usize; 2],
        x: &[u8],
        mask: &[f32],
    ) -> Vec<u8> {
        let (d_in, h) = self.layer.weights.dims();
        let gates = 4 * h;
        let math = FrameMath::new(&self.layer, grids, input, hidden);
        // The products run on raw codes; the zero points come off through the weights' sums.
        let x_offset: Vec<i32> = (self.layer.weights.bias().iter())
            .zip(&self.input.col_sums)
            .map(|(b, s)| b - input.zero_point * s)
            .collect();
        let h_offset: Vec<i32> = (self.hidden.col_sums.iter())
            .map(|s| -hidden.zero_point * s)
            .collect();
        // One block of sequences per thread: each runs its frames without waiting on another.
        let block = batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
        let (kx, kh) = (self.input.kp, self.hidden.kp);
        let mut out = vec![0u8; batch * time * h];
        out.par_chunks_mut(block * time * h)
            .enumerate()
            .for_each(|(k, states)| {
                let (b0, rows) = (k * block, states.len() / (time * h));
                let frames = &x[b0 * time * d_in..(b0 + rows) * time * d_in];
                let padded: Vec<u8>;
                let a_x = if kx == d_in {
                    frames
                } else {
                    padded = frames
                        .chunks_exact(d_in)
                        .flat_map(|f| f.iter().copied().chain(std::iter::repeat_n(0, kx - d_in)))
                        .collect();
                    &padded
                };
                let mut acc_x = vec![0i32; rows * time * gates];
                gemm_into(isa, a_x, rows * time, &self.input, false, &mut acc_x);
                // Rows padded to the packing depth; the padding meets zero weights.
                let mut state_h = vec![hidden.zero_point as u8; rows * kh];
                let mut state_c = vec![grids.cell.zero_point; rows * h];
                let mut acc_h = vec![0i32; rows * gates];
                let mut z = vec![0i32; gates];
                for t in 0..time {
                    let live = |r: &usize| mask[(b0 + r) * time + t] != 0.0;
                    if (0..rows).any(|r| live(&r)) {
                        gemm_into(isa, &state_h, rows, &self.hidden, false, &mut acc_h);
                        for r in (0..rows).filter(live) {
                            let ax = &acc_x[(r * time + t) * gates..][..gates];
                            let ah = &acc_h[r * gates..][..gates];
                            math.gates((ax, &x_offset), (ah, &h_offset), &mut z);
                            let row_h = &mut state_h[r * kh..][..h];
                            math.update(&z, &mut state_c[r * h..][..h], |j, code| {
                                row_h[j] = code as u8
                            });
                        }
                    }
                    for r in 0..rows {
                        states[(r * time + t) * h..][..h].copy_from_slice(&state_h[r * kh..][..h]);
                    }
                }
            });
        out
    }
}

//! The engine's multi-head self-attention on integer `Q`, `K`, `V`: per (sequence, head), two
//! int8 GEMMs — `Q·Kᵀ` and `P·V` — around a softmax in f32, with every zero point removed by
//! row and column sums. Keys and values enter the GEMM as the "weights", shifted to signed
//! (`code − 128`); the same floats as the interpreter's loops ([`crate::float_ops`]).

use rayon::prelude::*;

use crate::float_ops::{AttentionScales, softmax_row};
use crate::gemm::{Isa, PackedWeights, SharedMut, gemm_into, padded_depth};
use crate::program::ActQuant;
use crate::requant::quantize;

/// The grids of one attention op.
pub(crate) struct AttentionGrids {
    pub q: ActQuant,
    pub k: ActQuant,
    pub v: ActQuant,
    pub probs: ActQuant,
    pub out: ActQuant,
}

/// Context codes `[batch, s, heads·d]` of `q`, `k`, `v` (same layout) under `mask` (`[batch, s]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    isa: Isa,
    [batch, s, heads, d]: [usize; 4],
    (xq, xk, xv): (&[u8], &[u8], &[u8]),
    mask: &[f32],
    g: &AttentionGrids,
    out: &mut [u8],
) {
    // Keys and values shifted to signed reach −128, which AVX2's sign trick cannot negate.
    let isa = if isa == Isa::Avx2 { Isa::Portable } else { isa };
    let scales = AttentionScales::new(&g.q, &g.k, &g.v, &g.probs, &g.out, d);
    let hd = heads * d;
    let (dp, sp) = (padded_depth(d), padded_depth(s));
    let ptr = SharedMut(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / heads, task % heads);
        let at = |t: usize, e: usize| (b * s + t) * hd + h * d + e;
        // Queries as GEMM rows; keys and values as signed "weights".
        let mut qa = vec![0u8; s * dp];
        let mut q_sums = vec![0i32; s];
        for i in 0..s {
            for e in 0..d {
                let c = xq[at(i, e)];
                qa[i * dp + e] = c;
                q_sums[i] += c as i32;
            }
        }
        let shifted = |x: u8| (x as i32 - 128) as i8;
        let kb: Vec<i8> = (0..s)
            .flat_map(|j| (0..d).map(move |e| shifted(xk[at(j, e)])))
            .collect();
        let keys = PackedWeights::pack(&kb, s, d);
        let mut dots = vec![0i32; s * s];
        gemm_into(isa, &qa, s, &keys, false, &mut dots);
        // Σ(q − z_q)(k − z_k) from Σ q·(k − 128), the row sums of q and the column sums of k.
        let (zq, zk) = (g.q.zero_point, g.k.zero_point);
        let k_sums: Vec<i32> = keys.col_sums.iter().map(|c| c + 128 * d as i32).collect();
        let constant = d as i32 * zq * zk;
        let mut pa = vec![0u8; s * sp];
        let mut p_sums = vec![0i32; s];
        let mut scores = vec![0f32; s];
        for i in 0..s {
            let row_term = (128 - zk) * q_sums[i];
            for (j, score) in scores.iter_mut().enumerate() {
                let acc = dots[i * s + j] + row_term - zq * k_sums[j] + constant;
                *score = scales.score(acc, mask[b * s + j]);
            }
            softmax_row(&mut scores);
            for (j, &x) in scores.iter().enumerate() {
                let c = quantize(x, scales.inv_probs, &g.probs, false);
                pa[i * sp + j] = c as u8;
                p_sums[i] += c;
            }
        }
        let vb: Vec<i8> = (0..d)
            .flat_map(|e| (0..s).map(move |j| shifted(xv[at(j, e)])))
            .collect();
        let values = PackedWeights::pack(&vb, d, s);
        let mut dots = vec![0i32; s * d];
        gemm_into(isa, &pa, s, &values, false, &mut dots);
        let (zp, zv) = (g.probs.zero_point, g.v.zero_point);
        let v_sums: Vec<i32> = values.col_sums.iter().map(|c| c + 128 * s as i32).collect();
        let constant = s as i32 * zp * zv;
        for i in 0..s {
            let row_term = (128 - zv) * p_sums[i];
            for e in 0..d {
                let acc = dots[i * d + e] + row_term - zp * v_sums[e] + constant;
                let code = quantize(acc as f32, scales.context, &g.out, false) as u8;
                // SAFETY: each (b, i, h, e) belongs to exactly one task.
                unsafe { *ptr.get().add(at(i, e)) = code };
            }
        }
    });
}

//! The float islands of a transformer (LayerNorm, softmax, attention scores) as row functions
//! shared by the interpreter and the engine, so both compute the same floats; `exp` and `erf`
//! are the vectorisable approximations the fake-quant model's kernels use ([`crate::approx`]).

use crate::approx::exp_nonpositive;
use crate::program::ActQuant;

/// The additive mask of a padded key (BERT's `-10000`, which `exp` takes to exactly 0).
pub const MASKED: f32 = -10000.0;

/// Lanes of the partial sums below: sums are taken in 16 interleaved lanes, then the lanes in
/// order — a fixed order, so the interpreter and the engine agree, and one that vectorises.
const LANES: usize = 16;

/// `Σ f(x)` in [`LANES`] interleaved partial sums.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += f(v);
    }
    acc.iter().sum()
}

/// `(x − mean) / sqrt(var + eps) · γ + β` over one row (biased variance, as PyTorch and Burn).
pub fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    crate::simd::wide!({
        let n = x.len() as f32;
        let mean = lane_sum(x, |v| v) / n;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    },)
}

/// Softmax of one row in place: `exp(x − max) / Σ`.
pub fn softmax_row(row: &mut [f32]) {
    crate::simd::wide!({
        // Max in lanes, like the sums: exact in any order, and it vectorises. Whole chunks
        // first: over `chunks` (a short last one) LLVM kept the lanes on the stack and
        // stalled on a masked store per chunk (a fifth of the softmax's time, in `perf`).
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for (m, &v) in lanes.iter_mut().zip(c) {
                *m = if v > *m { v } else { *m };
            }
        }
        for (m, &v) in lanes.iter_mut().zip(tail) {
            *m = if v > *m { v } else { *m };
        }
        let max = lanes
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        for v in row.iter_mut() {
            *v = exp_nonpositive(*v - max);
        }
        let sum = lane_sum(row, |v| v);
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    },)
}

/// GELU (erf form) of every element.
pub fn gelu_slice(x: &[f32], out: &mut [f32]) {
    crate::simd::wide!({
        for (o, &v) in out.iter_mut().zip(x) {
            *o = crate::approx::gelu(v);
        }
    },)
}

/// The constants of one attention op: how integer dot products become scores and how the
/// probability·value products become context codes.
#[derive(Debug, Clone, Copy)]
pub struct AttentionScales {
    /// `s_q · s_k`: a `Q·Kᵀ` accumulator's real step.
    pub qk: f32,
    /// `1/√d`.
    pub temperature: f32,
    /// `1 / s_p`: probabilities onto their grid.
    pub inv_probs: f32,
    /// `s_p · s_v / s_out`: requantization of a `P·V` accumulator.
    pub context: f32,
}

impl AttentionScales {
    /// The constants for grids `q`, `k`, `v`, `probs`, `out` and head width `d`.
    pub fn new(
        q: &ActQuant,
        k: &ActQuant,
        v: &ActQuant,
        probs: &ActQuant,
        out: &ActQuant,
        d: usize,
    ) -> Self {
        AttentionScales {
            qk: q.scale * k.scale,
            temperature: (1.0 / (d as f64).sqrt()) as f32,
            inv_probs: 1.0 / probs.scale,
            context: probs.scale * v.scale * (1.0 / out.scale),
        }
    }

    /// A score from a centred `Q·Kᵀ` accumulator and the key's mask (1 keep, 0 padding).
    #[inline(always)]
    pub fn score(&self, acc: i32, mask: f32) -> f32 {
        acc as f32 * self.qk * self.temperature + if mask == 0.0 { MASKED } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Softmax against an `f64` reference on rows shorter than, equal to and longer than the
    /// lane count, with ragged tails, the maximum anywhere in the row (also in the tail) and
    /// masked entries: within 1e-6 of the reference, summing to 1.
    #[test]
    fn softmax_rows_match_an_f64_reference_for_every_length() {
        for len in [1usize, 3, 15, 16, 17, 31, 128, 130] {
            for peak in [0, len / 2, len - 1] {
                let mut row: Vec<f32> = (0..len)
                    .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
                    .collect();
                row[peak] = 9.5;
                if len > 2 {
                    row[(peak + 1) % len] = MASKED;
                }
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                softmax_row(&mut row);
                for (i, (&got, e)) in row.iter().zip(&exps).enumerate() {
                    let want = e / total;
                    assert!(
                        (got as f64 - want).abs() <= 1e-6,
                        "len {len}, peak {peak}, element {i}: {got} against {want}"
                    );
                }
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "len {len}: sums to {sum}");
            }
        }
    }
}

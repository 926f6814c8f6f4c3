//! LayerNorm over the last axis on Flex, forward and backward, one pass over each row while it
//! sits in L1, rows split across rayon's threads. Burn's op is a dozen whole-tensor passes
//! under autodiff (mean, subtract, square, mean, sqrt, divide, scale, shift, and about twice as
//! many backward), each on one thread: 7.8 ms forward + backward for MiniLM's `[32, 64, 384]`
//! activations, thirteen of them a step.
//!
//! The forward computes what `burn::nn::LayerNorm` computes: `μ = mean(x)`, `σ² = mean((x −
//! μ)²)` (biased), `y = (x − μ) / √(σ² + ε) · γ + β`. The backward recomputes `μ` and `σ²` from the
//! saved input (no per-row state to keep) and returns, with `x̂ = (x − μ) / √(σ² + ε)` and
//! `ĝ = g · γ`: `dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / √(σ² + ε)`, `dγ = Σ_rows g · x̂`,
//! `dβ = Σ_rows g`. Per-row sums run in independent lanes ([`super::lanes`]), so they vectorise; the
//! parameter gradients are summed per task and then over tasks in row order, so a run's result
//! does not depend on how rayon scheduled it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::lanes::lane_sum;

/// Rows per rayon task: MiniLM's 2,048 rows of 384 make 32 tasks of 96 KiB each.
const ROWS_PER_TASK: usize = 64;

/// A row's mean and `1 / √(σ² + ε)`.
#[inline(always)]
fn moments(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x.len(), |k| x[k]) / n;
    let var = lane_sum(x.len(), |k| (x[k] - mean) * (x[k] - mean)) / n;
    (mean, 1.0 / (var + epsilon).sqrt())
}

/// Rows of the forward pass, as a pulp op (compiled for the widest vectors the CPU has).
struct Forward<'a> {
    x: &'a [f32],
    out: &'a mut [MaybeUninit<f32>],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
}

impl pulp::WithSimd for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let d = self.gamma.len();
        for (x, out) in self.x.chunks_exact(d).zip(self.out.chunks_exact_mut(d)) {
            let (mean, rstd) = moments(x, self.epsilon);
            for (((o, &x), &g), &b) in out.iter_mut().zip(x).zip(self.gamma).zip(self.beta) {
                o.write((x - mean) * rstd * g + b);
            }
        }
    }
}

/// Rows of the backward pass, as a pulp op: `dx` over `grad` in place, and this task's
/// `(dγ, dβ)`.
struct Backward<'a> {
    x: &'a [f32],
    grad: &'a mut [f32],
    gamma: &'a [f32],
    epsilon: f32,
}

impl pulp::WithSimd for Backward<'_> {
    type Output = (Vec<f32>, Vec<f32>);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let d = self.gamma.len();
        let gamma = self.gamma;
        let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
        for (x, g) in self.x.chunks_exact(d).zip(self.grad.chunks_exact_mut(d)) {
            // Lengths the compiler can see, so the indexed sums lose their bounds checks.
            let (x, g, gamma) = (&x[..d], &mut g[..d], &gamma[..d]);
            let (mean, rstd) = moments(x, self.epsilon);
            let n = d as f32;
            let mean_g = lane_sum(d, |k| g[k] * gamma[k]) / n;
            let mean_gx = lane_sum(d, |k| g[k] * gamma[k] * (x[k] - mean) * rstd) / n;
            let params = gamma.iter().zip(dgamma.iter_mut()).zip(dbeta.iter_mut());
            for ((g, &x), ((&gamma, dgamma), dbeta)) in g.iter_mut().zip(x).zip(params) {
                let xhat = (x - mean) * rstd;
                *dgamma += *g * xhat;
                *dbeta += *g;
                *g = (*g * gamma - mean_g - xhat * mean_gx) * rstd;
            }
        }
        (dgamma, dbeta)
    }
}

/// LayerNorm of the rows of `x` (`x.len()` a multiple of `gamma.len()`), into `out`.
pub(super) fn forward(
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) {
    let chunk = ROWS_PER_TASK * gamma.len();
    let arch = pulp::Arch::new();
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(out, x)| {
            arch.dispatch(Forward {
                x,
                out,
                gamma,
                beta,
                epsilon,
            })
        });
}

/// The backward pass of [`forward`]: `dx` written over `grad`; returns `(dγ, dβ)`.
pub(super) fn backward(
    x: &[f32],
    grad: &mut [f32],
    gamma: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    let chunk = ROWS_PER_TASK * d;
    let arch = pulp::Arch::new();
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .map(|(grad, x)| {
            arch.dispatch(Backward {
                x,
                grad,
                gamma,
                epsilon,
            })
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
    for (pg, pb) in partials {
        dgamma.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dgamma, dbeta)
}

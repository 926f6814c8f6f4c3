//! The Flex (CPU) implementation of [`AdamWKernels`]: one pass over the parameter, its gradient
//! and its moments, in place, split across rayon's threads, compiled through pulp for the widest
//! vector instructions the CPU has.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{AdamWKernels, AdamWScalars};

/// Elements per rayon task: a few hundred kilobytes of the four arrays, enough to amortise
/// scheduling, small enough to balance two threads on the 1,536-element LayerNorm vectors and the
/// 11.7 M-element word table alike.
const CHUNK: usize = 1 << 14;

/// A tensor whose memory this kernel may write from element 0: `t` itself when it is contiguous
/// from offset 0 (the usual case; `storage_mut` copies it first if its memory is shared), a
/// contiguous copy otherwise.
fn owned(t: FlexTensor) -> FlexTensor {
    let n = t.layout().num_elements();
    if t.is_contiguous() && t.layout().contiguous_offsets() == Some((0, n)) {
        t
    } else {
        t.to_contiguous()
    }
}

/// One chunk of the update, as a pulp op so the loop is compiled for AVX-512 / AVX2.
struct Update<'a> {
    param: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    grad: &'a [f32],
    s: AdamWScalars,
}

impl pulp::WithSimd for Update<'_> {
    type Output = ();

    /// Burn's `AdamW` step, element by element, in its order of `f32` operations (the module
    /// docs of `burn-optim`'s `adamw.rs`): `m = β₁ m + (1-β₁) g`, `v = β₂ v + (1-β₂) g²`,
    /// `Δ = (m / (1-β₁ᵗ)) / (sqrt(v / (1-β₂ᵗ)) + ε)`, `p = p · (1 - lr λ) - lr Δ`.
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let AdamWScalars {
            beta: (b1, b2),
            one_minus_beta: (f1, f2),
            correction: (c1, c2),
            epsilon,
            lr,
            keep,
            first,
        } = self.s;
        let items = self
            .param
            .iter_mut()
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
            .zip(self.grad);
        for (((p, m), v), &g) in items {
            let (m1, v1) = if first {
                (g * f1, (g * g) * f2)
            } else {
                (*m * b1 + g * f1, *v * b2 + (g * g) * f2)
            };
            let delta = (m1 / c1) / ((v1 / c2).sqrt() + epsilon);
            let decayed = match keep {
                Some(keep) => *p * keep,
                None => *p,
            };
            *p = decayed - delta * lr;
            *m = m1;
            *v = v1;
        }
    }
}

impl AdamWKernels for Flex {
    fn adamw_update(
        param: FlexTensor,
        grad: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        s: AdamWScalars,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = param.layout().shape().clone();
        let grad = if grad.is_contiguous() {
            grad
        } else {
            grad.to_contiguous()
        };
        let gs = grad.as_slice::<f32>().expect("AdamW takes f32 gradients");
        let mut param = owned(param);
        // On the first step the moments are written before they are read: any buffer will do,
        // and fresh copies of the gradient are that.
        let (mut m, mut v) = if s.first {
            (grad.to_contiguous(), grad.to_contiguous())
        } else {
            (owned(m), owned(v))
        };
        let n = gs.len();
        for (name, t) in [("parameter", &param), ("m", &m), ("v", &v)] {
            assert_eq!(
                t.layout().num_elements(),
                n,
                "AdamW: the {name} and the gradient differ in size"
            );
        }
        let arch = pulp::Arch::new();
        param.storage_mut::<f32>()[..n]
            .par_chunks_mut(CHUNK)
            .zip(m.storage_mut::<f32>()[..n].par_chunks_mut(CHUNK))
            .zip(v.storage_mut::<f32>()[..n].par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|(((param, m), v), grad)| {
                arch.dispatch(Update {
                    param,
                    m,
                    v,
                    grad,
                    s,
                })
            });
        let reshape = |t: FlexTensor| t.reshape(shape.clone());
        (reshape(param), reshape(m), reshape(v))
    }
}

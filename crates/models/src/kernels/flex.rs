//! The Flex (CPU) implementations of [`TransformerKernels`]: one memory pass each, split across
//! rayon's threads, compiled through pulp for the widest vector instructions the CPU has.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::TransformerKernels;
use super::approx::{erf, exp_nonpositive, hash};
use super::{layer_norm, softmax};

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// `1 / √2` and `1 / √(2π)`.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// One elementwise kernel over a chunk, as a pulp op so it is compiled for AVX-512 / AVX2.
enum Chunk<'a> {
    /// `out = gelu(x)`.
    Gelu {
        x: &'a [f32],
        out: &'a mut [MaybeUninit<f32>],
    },
    /// `grad *= gelu'(x)`, in place.
    GeluBackward { x: &'a [f32], grad: &'a mut [f32] },
    /// `out[i] = scale` with probability `keep`, else 0; element `first + i` of the mask.
    Mask {
        out: &'a mut [MaybeUninit<f32>],
        first: u32,
        threshold: u32,
        scale: f32,
        key: u64,
    },
}

impl pulp::WithSimd for Chunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        match self {
            Chunk::Gelu { x, out } => {
                for (o, &x) in out.iter_mut().zip(x) {
                    o.write(0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2)));
                }
            }
            Chunk::GeluBackward { x, grad } => {
                for (g, &x) in grad.iter_mut().zip(x) {
                    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
                    let pdf = FRAC_1_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
                    *g *= cdf + x * pdf;
                }
            }
            Chunk::Mask {
                out,
                first,
                threshold,
                scale,
                key,
            } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let keep = (hash(first.wrapping_add(i as u32), key) >> 8) < threshold;
                    o.write(if keep { scale } else { 0.0 });
                }
            }
        }
    }
}

/// `x`'s values, contiguous.
fn values(x: &FlexTensor) -> FlexTensor {
    if x.is_contiguous() {
        x.clone()
    } else {
        x.to_contiguous()
    }
}

/// A fresh `f32` tensor shaped like `like`, its elements written by `write_all` into
/// uninitialised memory (no zeroing pass first). `write_all` must write every element.
fn written(like: &FlexTensor, write_all: impl FnOnce(&mut [MaybeUninit<f32>])) -> FlexTensor {
    let shape = like.layout().shape().clone();
    let n = shape.num_elements();
    let mut out = Vec::with_capacity(n);
    write_all(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: every caller's `write_all` writes each of the `n` elements: `filled`'s chunks
    // cover them all, and the row kernels (`layer_norm::forward`, `softmax::forward`) write
    // every element of every row.
    unsafe { out.set_len(n) };
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// A fresh `f32` tensor shaped like `like`, every element written chunk by chunk by
/// `fill(chunk index, chunk)` (the `Gelu` and `Mask` kernels, which write each element).
fn filled(like: &FlexTensor, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> FlexTensor {
    written(like, |out| {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, chunk)| fill(k, chunk))
    })
}

/// A row kernel's operand's values.
fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("the row kernels take f32 tensors")
}

/// `grad` itself when it is one contiguous block of `n` elements (a backward kernel then writes
/// over the incoming gradient: no allocation when autodiff hands it over), else a copy that is.
fn whole_or_copy(grad: FlexTensor, n: usize) -> FlexTensor {
    let whole = grad.is_contiguous() && grad.layout().contiguous_offsets() == Some((0, n));
    if whole { grad } else { grad.to_contiguous() }
}

impl TransformerKernels for Flex {
    fn fast_gelu(x: FlexTensor) -> FlexTensor {
        let x = values(&x);
        let xs = x.as_slice::<f32>().expect("gelu takes f32 tensors");
        let arch = pulp::Arch::new();
        filled(&x, |k, out| {
            let x = &xs[k * CHUNK..k * CHUNK + out.len()];
            arch.dispatch(Chunk::Gelu { x, out });
        })
    }

    fn fast_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let x = values(&x);
        let xs = x.as_slice::<f32>().expect("gelu takes f32 tensors");
        let mut dx = whole_or_copy(grad, xs.len());
        let arch = pulp::Arch::new();
        dx.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, grad)| {
                let x = &xs[k * CHUNK..k * CHUNK + grad.len()];
                arch.dispatch(Chunk::GeluBackward { x, grad });
            });
        dx
    }

    fn fast_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        let (x, gamma, beta) = (values(&x), values(&gamma), values(&beta));
        let (xs, gamma, beta) = (f32s(&x), f32s(&gamma), f32s(&beta));
        written(&x, |out| layer_norm::forward(xs, out, gamma, beta, epsilon))
    }

    fn fast_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        epsilon: f32,
    ) -> (FlexTensor, (FlexTensor, FlexTensor)) {
        let (x, gamma) = (values(&x), values(&gamma));
        let (xs, gammas) = (f32s(&x), f32s(&gamma));
        let mut dx = whole_or_copy(grad, xs.len());
        let (dgamma, dbeta) = layer_norm::backward(xs, dx.storage_mut::<f32>(), gammas, epsilon);
        let shape = gamma.layout().shape().clone();
        let param = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, shape.clone()));
        (dx, (param(dgamma), param(dbeta)))
    }

    fn fast_masked_softmax(scores: FlexTensor, mask: FlexTensor, scale: f32) -> FlexTensor {
        let (scores, mask) = (values(&scores), values(&mask));
        let shape = scores.layout().shape().clone();
        let rows = softmax::Rows {
            keys: shape[3],
            rows_per_batch: shape[1] * shape[2],
        };
        let (xs, mask) = (f32s(&scores), f32s(&mask));
        written(&scores, |out| softmax::forward(xs, out, mask, rows, scale))
    }

    fn fast_masked_softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f32) -> FlexTensor {
        let y = values(&y);
        let keys = *y.layout().shape().last().expect("scores have a keys axis");
        let ys = f32s(&y);
        let mut dx = whole_or_copy(grad, ys.len());
        softmax::backward(ys, dx.storage_mut::<f32>(), keys, scale);
        dx
    }

    fn dropout_mask(like: FlexTensor, keep: f32, key: u64) -> FlexTensor {
        // `hash >> 8` is uniform on [0, 2^24): keep when below keep · 2^24.
        let threshold = (keep as f64 * (1u64 << 24) as f64).round() as u32;
        let scale = 1.0 / keep;
        let arch = pulp::Arch::new();
        filled(&like, |k, out| {
            let first = (k * CHUNK) as u32;
            arch.dispatch(Chunk::Mask {
                out,
                first,
                threshold,
                scale,
                key,
            });
        })
    }
}

//! The launches of the observer kernels: one cube per parameter (a weight's channels), or two
//! launches through atomic range keys (any size, the clip mask kept).

use burn::backend::DType;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::AtomicUsage;
use cubecl::ir::{ElemType, Type, UIntKind};
use cubecl::prelude::*;

use super::super::{ObserveRule, Observed, Range};
use super::bias::{BiasArgs, BiasFold};
use super::kernels;
use super::layout::{REDUCE_CHUNK, ViewLayout, elementwise, reduction};
use super::tensors::{empty, empty_like, f32_input, packed_f32, strided};

/// The running range an observer kernel reads, as `f32` inputs.
pub(super) fn running_range((min, max): (CubeTensor, CubeTensor)) -> (CubeTensor, CubeTensor) {
    (
        f32_input(min, "the running min"),
        f32_input(max, "the running max"),
    )
}

/// [`running_range`] and the four `[n]` outputs an observer kernel writes: `((min, max), [new
/// min, new max, scale, zero point])`.
pub(super) fn observer_buffers(
    like: &CubeTensor,
    running: (CubeTensor, CubeTensor),
    n: usize,
) -> ((CubeTensor, CubeTensor), [CubeTensor; 4]) {
    (running_range(running), packed_f32(like, [n; 4]))
}

/// The observer kernel's four outputs as [`Observed`].
pub(super) fn observed([min, max, scale, zero_point]: [CubeTensor; 4]) -> Observed<CubeBackend> {
    ((min, max), (scale, zero_point))
}

/// One launch of the observe kernel: one cube per parameter folds `(low, high)` (the observed
/// tensor itself, or its partial ranges) into the running `(min, max)` by `rule` and computes
/// the qparams; with `dequantized` (the input then being the observed tensor, at most one chunk
/// per parameter) the same cubes also fake-quantize it into `dequantized`, and with `bias` round
/// the bias at `s_w · s_x` (returned last; `bias` needs one parameter per element or one for
/// all).
pub(super) fn launch_observe(
    (low, high): (CubeTensor, CubeTensor),
    running: (CubeTensor, CubeTensor),
    layout: ViewLayout,
    rule: ObserveRule,
    dequantized: Option<CubeTensor>,
    bias: Option<BiasFold>,
) -> (Observed<CubeBackend>, Option<CubeTensor>) {
    let n = layout.num_params;
    let (min, max) = running_range(running);
    // The bias's rounding in the observer's allocation too.
    let (out, bias_out) = match &bias {
        Some(fold) => {
            let len = fold.bias.meta.shape().num_elements();
            debug_assert!(n == 1 || n == len, "a bias of {len} for {n} parameters");
            let [a, b, c, d, e] = packed_f32(&high, [n, n, n, n, len]);
            ([a, b, c, d], Some(e))
        }
        None => (packed_f32(&high, [n; 4]), None),
    };
    let fake_quantize = dequantized.is_some();
    // Not written without fake quantization.
    let dequantized = dequantized.unwrap_or_else(|| empty(&high, [1], DType::F32));
    let (count, dim) = reduction(&high, n);
    let strided = strided(&[&low, &high]);
    let args = BiasArgs::new(bias, &high, bias_out.as_ref().unwrap_or(&dequantized));
    kernels::observe::launch(
        &high.client.clone(),
        count,
        dim,
        low.into_tensor_arg(),
        high.into_tensor_arg(),
        min.into_tensor_arg(),
        max.into_tensor_arg(),
        out[0].clone().into_tensor_arg(),
        out[1].clone().into_tensor_arg(),
        out[2].clone().into_tensor_arg(),
        out[3].clone().into_tensor_arg(),
        dequantized.into_tensor_arg(),
        args.bias.into_tensor_arg(),
        args.input_low.into_tensor_arg(),
        args.input_high.into_tensor_arg(),
        args.out.into_tensor_arg(),
        rule.averaging,
        rule.qmin,
        rule.qmax,
        rule.symmetric_zero_point,
        rule.eps,
        layout.per_param,
        n,
        layout.g,
        layout.l,
        layout.i,
        args.steps,
        layout.mode,
        rule.symmetric,
        strided,
        fake_quantize,
        args.with_bias,
        args.kinds.0,
        args.kinds.1,
    );
    (observed(out), bias_out)
}

/// Whether `t`'s device reduces `u32`s by atomic min / max, which [`launch_observe_by_keys`]
/// needs: where its runtime says so (SPIR-V, Metal, CUDA), and on wgpu's WGSL compiler, whose
/// language has `atomicMin` / `atomicMax` on every `atomic<u32>` and which emits them, though
/// cubecl-wgpu 0.11 registers only load, store, exchange and add there.
pub(super) fn has_atomic_min_max(t: &CubeTensor) -> bool {
    let u32_type = Type::atomic(ElemType::UInt(UIntKind::U32));
    let registered = t
        .client
        .properties()
        .atomic_type_usage(u32_type)
        .contains(AtomicUsage::MinMax);
    registered || t.client.name() == "wgpu<wgsl>"
}

/// An observer update and the fake quantization it feeds in two launches, for any number of
/// elements per parameter: every (parameter, chunk) cube folds its range into the parameter's
/// atomic range keys, then one thread per mask word folds each parameter's range into its
/// running range and fake-quantizes (with `keep_mask`, keeping the clip mask). Returns
/// `((new min, new max), (dq, mask))`, `mask` empty without `keep_mask`; the kernel writes the
/// qparams too (`n` values each, in the range's allocation), which nothing reads.
pub(super) fn launch_observe_by_keys(
    x: CubeTensor,
    (min, max): (CubeTensor, CubeTensor),
    layout: ViewLayout,
    rule: ObserveRule,
    keep_mask: bool,
) -> (Range<CubeBackend>, (CubeTensor, CubeTensor)) {
    let n = layout.num_params;
    // The identities of min and max over order keys, uploaded rather than filled: a fill is a
    // launch.
    let identities: Vec<u32> = [u32::MAX, 0].iter().flat_map(|&v| vec![v; n]).collect();
    let handle = x.client.create_from_slice(u32::as_bytes(&identities));
    let keys = CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        Shape::new([2 * n]),
        handle,
        DType::U32,
    );
    let chunks = layout.per_param.div_ceil(REDUCE_CHUNK).max(1);
    let cubes = n * chunks;
    let strided = strided(&[&x]);
    let (count, dim) = reduction(&x, cubes);
    kernels::reduce_to_range_keys::launch(
        &x.client.clone(),
        count,
        dim,
        x.clone().into_tensor_arg(),
        keys.clone().into_tensor_arg(),
        layout.per_param,
        REDUCE_CHUNK,
        chunks,
        cubes,
        n,
        layout.g,
        layout.l,
        layout.i,
        layout.mode,
        rule.symmetric,
        strided,
    );
    let ((min, max), out) = observer_buffers(&x, (min, max), n);
    let words = layout.n.div_ceil(32);
    let dq = empty_like(&x);
    let mask = empty(&x, [if keep_mask { words } else { 0 }], DType::U32);
    let (count, dim) = elementwise(&x, words);
    kernels::fold_and_fake_quant::launch(
        &x.client.clone(),
        count,
        dim,
        x.into_tensor_arg(),
        keys.into_tensor_arg(),
        min.into_tensor_arg(),
        max.into_tensor_arg(),
        out[0].clone().into_tensor_arg(),
        out[1].clone().into_tensor_arg(),
        out[2].clone().into_tensor_arg(),
        out[3].clone().into_tensor_arg(),
        dq.clone().into_tensor_arg(),
        mask.clone().into_tensor_arg(),
        rule.averaging,
        rule.qmin,
        rule.qmax,
        rule.symmetric_zero_point,
        rule.eps,
        layout.n,
        words,
        n,
        layout.g,
        layout.l,
        layout.i,
        layout.mode,
        rule.symmetric,
        strided,
        keep_mask,
    );
    let [min, max, _scale, _zero_point] = out;
    ((min, max), (dq, mask))
}

//! The CubeCL (wgpu / Vulkan / Metal / CUDA) implementation of [`FakeQuantKernels`]: one launch
//! per fake-quant forward, one per backward (plus one to add up the scale gradient's partial sums
//! when a parameter has more elements than a cube takes), one or two per observer reduction, one
//! for an observer update with the fake quantization it feeds when each parameter fits a cube
//! and no clip mask is kept (a weight's output channels), and two for it at any size otherwise
//! (an activation): the reduction cubes fold their ranges into each parameter's range by atomic
//! min / max on order-preserving `u32` keys, then one kernel updates the observer from them and
//! fake-quantizes, keeping the clip mask.
//!
//! Burn's `Cube` backend is `Fusion<CubeBackend>`: the extension macro wraps these launches as
//! opaque operations of the fusion stream, so the composite ops around them still fuse.

mod kernels;

use burn::backend::DType;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::{into_contiguous, untile};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::features::AtomicUsage;
use cubecl::ir::{ElemType, Type, UIntKind};
use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

use super::{
    FakeQuantKernels, LsqBiasGrid, ObserveRule, Observed, Range, StepRule,
    lsq_fake_quant_then_round_bias, observe_fake_quant_then_round_bias, observe_then_fake_quant,
};
use kernels::{MAX_ABS, MIN_MAX, PER_CHANNEL, PER_GROUP, PER_TENSOR, REDUCE_UNITS, SUM, SUM_BOTH};

/// Elements one reduction cube takes per parameter (16 per unit): large enough that the partial
/// sums are few, small enough that a per-tensor reduction over an activation still fills the GPU.
const REDUCE_CHUNK: usize = REDUCE_UNITS * 16;

/// How the elements of a `[o, g, l, i]` view map to parameters, in the kernels' terms.
#[derive(Debug, Clone, Copy)]
struct ViewLayout {
    mode: u32,
    g: usize,
    l: usize,
    i: usize,
    /// Elements in the view.
    n: usize,
    /// Elements per parameter.
    per_param: usize,
    num_params: usize,
}

impl ViewLayout {
    fn new(view: [usize; 4], per_group: bool, num_params: usize) -> Self {
        let [o, g, l, i] = view;
        let n = o * g * l * i;
        let (mode, per_param) = if num_params == 1 {
            (PER_TENSOR, n)
        } else if per_group {
            (PER_GROUP, l)
        } else {
            (PER_CHANNEL, o * l * i)
        };
        assert_eq!(
            per_param * num_params,
            n,
            "fused fake-quant: {num_params} parameters do not tile a {view:?} view"
        );
        Self {
            mode,
            g,
            l,
            i,
            n,
            per_param,
            num_params,
        }
    }

    /// Partial results of a per-parameter reduction, viewed as `num_params` channels of
    /// `chunks` elements each.
    fn partials(num_params: usize, chunks: usize) -> Self {
        Self::new([1, num_params, chunks, 1], false, num_params)
    }
}

/// `t` as a contiguous `f32` tensor: the per-parameter tensors (scales, zero points, running
/// ranges), which the kernels index by parameter.
fn f32_input(t: CubeTensor, what: &str) -> CubeTensor {
    into_contiguous(f32_elements(t, what))
}

/// `t` as an `f32` tensor in the dense layout it has (any order of its axes: strides; storage
/// tiles undone), or copied row-major where it is not dense (broadcast, sliced): the kernels read
/// the large tensors through their strides where they are not contiguous ([`strided`]), so a
/// channels-last activation is not copied into row-major order first.
fn f32_elements(t: CubeTensor, what: &str) -> CubeTensor {
    assert_eq!(
        t.dtype,
        DType::F32,
        "fused fake-quant on a GPU takes f32 tensors, got {:?} for {what}",
        t.dtype
    );
    let t = untile(t);
    if t.is_contiguous() || is_dense(t.meta.shape(), t.meta.strides()) {
        t
    } else {
        into_contiguous(t)
    }
}

/// Whether a launch over these tensors must address them through their strides (the kernels'
/// `strided` variant) rather than as row-major buffers.
fn strided(tensors: &[&CubeTensor]) -> bool {
    tensors.iter().any(|t| !t.is_contiguous())
}

/// Looked-up row indices as the contiguous `i32` tensor the kernels read (cast only when they
/// came as another integer type).
fn row_indices(rows: CubeTensor) -> CubeTensor {
    let rows = match rows.dtype {
        DType::I32 | DType::U32 => rows,
        _ => burn_cubecl::kernel::cast(rows, DType::I32),
    };
    into_contiguous(rows)
}

/// A fresh contiguous tensor on `like`'s device.
fn empty(like: &CubeTensor, shape: impl Into<Shape>, dtype: DType) -> CubeTensor {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        dtype,
    )
}

/// A fresh `f32` tensor of `like`'s shape and strides (`like` dense, from [`f32_elements`]): an
/// elementwise result keeps its input's layout, so the next op (a convolution wanting
/// channels-last) need not repack it, and the kernels write it at the offsets they read `like`.
fn empty_like(like: &CubeTensor) -> CubeTensor {
    let shape = like.meta.shape().clone();
    let mut out = empty(like, shape.clone(), DType::F32);
    if !like.is_contiguous() {
        debug_assert!(is_dense(&shape, like.meta.strides()));
        *out.meta = cubecl::zspace::metadata::Metadata::new(shape, like.meta.strides().clone());
    }
    out
}

/// Whether `strides` lay `shape` out densely: each element at its own offset, the offsets
/// exactly `0..numel` (a permutation of the axes of a row-major layout).
fn is_dense(shape: &[usize], strides: &[usize]) -> bool {
    let mut axes: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(len, _)| **len != 1)
        .map(|(len, stride)| (*stride, *len))
        .collect();
    axes.sort_unstable();
    let mut expected = 1;
    for (stride, len) in axes {
        if stride != expected {
            return false;
        }
        expected *= len;
    }
    true
}

/// The launch grid of an elementwise kernel over `n` items.
fn elementwise(t: &CubeTensor, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, n);
    (calculate_cube_count_elemwise(&t.client, n, dim), dim)
}

/// The launch grid of `cubes` reduction cubes.
fn reduction(t: &CubeTensor, cubes: usize) -> (CubeCount, CubeDim) {
    let count = CubeCountSelection::new(&t.client, cubes as u32).cube_count();
    (count, CubeDim::new_1d(REDUCE_UNITS as u32))
}

/// Reduction passes of `x` under `layout` (`op`: [`SUM`], [`MAX_ABS`], [`MIN_MAX`]) until each
/// parameter has at most `limit` partial results left, at least one pass when `at_least_once`:
/// one launch per pass. Returns `(low, high, their layout)`; `low` holds the minima under
/// [`MIN_MAX`] (the first sums under [`SUM_BOTH`]) and is `high` otherwise.
fn reduce_until(
    x: CubeTensor,
    layout: ViewLayout,
    op: u32,
    limit: usize,
    at_least_once: bool,
) -> (CubeTensor, CubeTensor, ViewLayout) {
    reduce_until_with(x.clone(), x, layout, op, limit, at_least_once)
}

/// [`reduce_until`] over two inputs: `low_in` feeds the minima ([`MIN_MAX`]) or the first sum
/// ([`SUM_BOTH`]), `high_in` everything else.
fn reduce_until_with(
    low_in: CubeTensor,
    high_in: CubeTensor,
    layout: ViewLayout,
    op: u32,
    limit: usize,
    at_least_once: bool,
) -> (CubeTensor, CubeTensor, ViewLayout) {
    let (mut low_in, mut high_in, mut layout) = (low_in, high_in, layout);
    let two_outputs = op == MIN_MAX || op == SUM_BOTH;
    let mut first = at_least_once;
    while first || layout.per_param > limit {
        first = false;
        let chunks = layout.per_param.div_ceil(REDUCE_CHUNK).max(1);
        let cubes = layout.num_params * chunks;
        let low = empty(&high_in, [if two_outputs { cubes } else { 1 }], DType::F32);
        let high = empty(&high_in, [cubes], DType::F32);
        let (count, dim) = reduction(&high_in, cubes);
        let strided = strided(&[&low_in, &high_in]);
        kernels::reduce::launch(
            &high_in.client.clone(),
            count,
            dim,
            low_in.into_tensor_arg(),
            high_in.into_tensor_arg(),
            low.clone().into_tensor_arg(),
            high.clone().into_tensor_arg(),
            layout.per_param,
            REDUCE_CHUNK,
            chunks,
            cubes,
            layout.g,
            layout.l,
            layout.i,
            layout.mode,
            op,
            strided,
        );
        layout = ViewLayout::partials(layout.num_params, chunks);
        low_in = if two_outputs { low } else { high.clone() };
        high_in = high;
    }
    (low_in, high_in, layout)
}

/// Per-parameter `op` reduction of `x` under `layout`, `(low, high)`, `[num_params]` each.
fn reduce_per_param(x: CubeTensor, layout: ViewLayout, op: u32) -> (CubeTensor, CubeTensor) {
    let (low, high, _) = reduce_until(x, layout, op, 1, true);
    (low, high)
}

/// The grid arguments every fake-quant kernel takes.
struct Grid {
    scale: CubeTensor,
    /// Added to `scale` by the kernels that take it (a learned scale's anchor), if any.
    scale_offset: Option<CubeTensor>,
    zero_point: CubeTensor,
    /// With it, `zero_point` holds a range's minima and this its maxima, and the kernels that
    /// take it apply that range's zero point (see `FakeQuantKernels::lsq_fake_quant`).
    zero_point_high: Option<CubeTensor>,
    /// With it the view holds these rows of a table, and each reads its row's parameters (see
    /// `FakeQuantKernels::lsq_fake_quant_rows`).
    rows: Option<CubeTensor>,
    qmin: f32,
    qmax: f32,
}

impl Grid {
    fn new(scale: CubeTensor, zero_point: CubeTensor, qmin: f32, qmax: f32) -> Self {
        Self {
            scale: f32_input(scale, "the scale"),
            scale_offset: None,
            zero_point: f32_input(zero_point, "the zero point"),
            zero_point_high: None,
            rows: None,
            qmin,
            qmax,
        }
    }

    /// The grid of rows `rows` looked up in a table whose parameters these are.
    fn with_rows(mut self, rows: CubeTensor) -> Self {
        self.rows = Some(row_indices(rows));
        self
    }

    /// The rows argument of a kernel and whether it is read (the scale stands in when not).
    fn rows_arg(&self) -> (CubeTensor, bool) {
        match &self.rows {
            Some(rows) => (rows.clone(), true),
            None => (self.scale.clone(), false),
        }
    }

    /// The grid whose zero point is that of the range `(zero_point, high)` when `from_range`.
    fn with_zero_point_range(mut self, high: CubeTensor, from_range: bool) -> Self {
        self.zero_point_high = from_range.then(|| f32_input(high, "the range maxima"));
        self
    }

    /// The range-maxima argument of a kernel and whether it is read (the zero point stands in
    /// when not).
    fn zero_point_high_arg(&self) -> (CubeTensor, bool) {
        match &self.zero_point_high {
            Some(high) => (high.clone(), true),
            None => (self.zero_point.clone(), false),
        }
    }

    /// The grid of `scale + offset` when `with_offset` (see `FakeQuantKernels::lsq_fake_quant`).
    fn with_offset(mut self, offset: CubeTensor, with_offset: bool) -> Self {
        self.scale_offset = with_offset.then(|| f32_input(offset, "the scale offset"));
        self
    }

    /// The offset argument of a kernel and whether it is read (the scale stands in when not).
    fn offset_arg(&self) -> (CubeTensor, bool) {
        match &self.scale_offset {
            Some(offset) => (offset.clone(), true),
            None => (self.scale.clone(), false),
        }
    }

    /// The parameters the view is cut into: one per looked-up row, else one per entry.
    fn num_params(&self) -> usize {
        self.rows
            .as_ref()
            .unwrap_or(&self.scale)
            .meta
            .shape()
            .num_elements()
    }
}

/// The fake-quantized values of `x` viewed as `view`, into a fresh tensor of that shape.
fn launch_fake_quant(x: CubeTensor, grid: Grid, view: [usize; 4], per_group: bool) -> CubeTensor {
    launch_fake_quant_with(x, grid, view, per_group, None).0
}

/// [`launch_fake_quant`] that, with `bias` (a learned scale's grid, no rows), also rounds the
/// layer's bias at `s_w · s_x` in the same launch (returned second; `bias` needs one parameter
/// per element or one for all, and no more elements than `x`).
fn launch_fake_quant_with(
    x: CubeTensor,
    grid: Grid,
    view: [usize; 4],
    per_group: bool,
    bias: Option<BiasFold>,
) -> (CubeTensor, Option<CubeTensor>) {
    let x = f32_elements(x, "the input");
    let layout = ViewLayout::new(view, per_group, grid.num_params());
    let out = empty_like(&x);
    let strided = strided(&[&x]);
    let (count, dim) = elementwise(&x, layout.n);
    let (offset, with_offset) = grid.offset_arg();
    let (high, from_range) = grid.zero_point_high_arg();
    let (rows, with_rows) = grid.rows_arg();
    let bias_out = bias
        .as_ref()
        .map(|fold| empty(&x, [fold.bias.meta.shape().num_elements()], DType::F32));
    let args = BiasArgs::new(bias, &x, bias_out.as_ref().unwrap_or(&out));
    kernels::fake_quant::launch(
        &x.client.clone(),
        count,
        dim,
        x.into_tensor_arg(),
        grid.scale.into_tensor_arg(),
        offset.into_tensor_arg(),
        grid.zero_point.into_tensor_arg(),
        high.into_tensor_arg(),
        rows.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        args.bias.into_tensor_arg(),
        args.input_low.into_tensor_arg(),
        args.input_high.into_tensor_arg(),
        args.out.into_tensor_arg(),
        layout.n,
        layout.g,
        layout.l,
        layout.i,
        grid.qmin,
        grid.qmax,
        args.steps,
        layout.mode,
        strided,
        with_offset,
        from_range,
        with_rows,
        args.with_bias,
        args.kinds.0,
        args.kinds.1,
    );
    (out, bias_out)
}

/// The bias arguments of the kernels that can round a layer's bias ([`kernels::observe`],
/// [`kernels::fake_quant`]): a [`BiasFold`]'s, or without one stand-ins that are not read
/// (`stand_in`) nor written (`out`).
struct BiasArgs {
    bias: CubeTensor,
    input_low: CubeTensor,
    input_high: CubeTensor,
    out: CubeTensor,
    steps: kernels::BiasStepsLaunch,
    with_bias: bool,
    kinds: (u32, u32),
}

impl BiasArgs {
    fn new(fold: Option<BiasFold>, stand_in: &CubeTensor, out: &CubeTensor) -> Self {
        let one = StepRule {
            kind: super::STEP_ONE,
            floor: 0.0,
            divisor: 1.0,
        };
        let with_bias = fold.is_some();
        let (bias, (input_low, input_high), (a, b), limit) = match fold {
            Some(fold) => (fold.bias, fold.input, fold.rules, fold.limit),
            None => (
                stand_in.clone(),
                (stand_in.clone(), stand_in.clone()),
                (one, one),
                0.0,
            ),
        };
        Self {
            bias,
            input_low,
            input_high,
            out: out.clone(),
            steps: kernels::BiasStepsLaunch::new(a.floor, a.divisor, b.floor, b.divisor, limit),
            with_bias,
            kinds: (a.kind, b.kind),
        }
    }
}

/// The running range an observer kernel reads, as `f32` inputs.
fn running_range((min, max): (CubeTensor, CubeTensor)) -> (CubeTensor, CubeTensor) {
    (
        f32_input(min, "the running min"),
        f32_input(max, "the running max"),
    )
}

/// [`running_range`] and the four `[n]` outputs an observer kernel writes: `((min, max), [new
/// min, new max, scale, zero point])`.
fn observer_buffers(
    like: &CubeTensor,
    running: (CubeTensor, CubeTensor),
    n: usize,
) -> ((CubeTensor, CubeTensor), [CubeTensor; 4]) {
    (running_range(running), packed_f32(like, [n; 4]))
}

/// `K` fresh `f32` tensors of the lengths `lens` in one allocation, each at an offset the device
/// can bind: an observer's outputs. One allocation rather than `K` matters on the host: CubeCL's
/// memory pool scans and rebuilds a page's list of slices on every allocation in it, so each
/// small tensor makes every later allocation in its page slower, and a QAT step observes dozens
/// of tensors (`cargo xtask bench bert-step --host-work`: the runtime thread's work per MiniLM-L6
/// step fell by a sixth, float's too, as they share the pool; packing the range keys' upload in
/// as well measured slower, and is not done).
fn packed_f32<const K: usize>(like: &CubeTensor, lens: [usize; K]) -> [CubeTensor; K] {
    let alignment = like.client.properties().memory.alignment.max(4);
    let bytes = lens.map(|n| (n * size_of::<f32>()) as u64);
    let starts: Vec<u64> = bytes
        .iter()
        .scan(0u64, |next, &b| {
            let start = *next;
            *next += b.next_multiple_of(alignment);
            Some(start)
        })
        .collect();
    let total = starts[K - 1] + bytes[K - 1].next_multiple_of(alignment);
    let whole = empty(like, [total as usize / size_of::<f32>()], DType::F32);
    std::array::from_fn(|k| {
        let handle = whole
            .handle
            .clone()
            .offset_start(starts[k])
            .offset_end(total - starts[k] - bytes[k]);
        CubeTensor::new_contiguous(
            like.client.clone(),
            like.device.clone(),
            Shape::new([lens[k]]),
            handle,
            DType::F32,
        )
    })
}

/// The observer kernel's four outputs as [`Observed`].
fn observed([min, max, scale, zero_point]: [CubeTensor; 4]) -> Observed<CubeBackend> {
    ((min, max), (scale, zero_point))
}

/// A layer's bias for [`launch_observe`] to round at its accumulator step `s_w · s_x` in the
/// observer's launch: the bias (`f32`, contiguous), the input quantizer's step state `(low,
/// high)` (`[1]`), the weight's and the input's step rules, and the largest code.
struct BiasFold {
    bias: CubeTensor,
    input: (CubeTensor, CubeTensor),
    rules: (StepRule, StepRule),
    limit: f32,
}

/// One launch of the observe kernel: one cube per parameter folds `(low, high)` (the observed
/// tensor itself, or its partial ranges) into the running `(min, max)` by `rule` and computes
/// the qparams; with `dequantized` (the input then being the observed tensor, at most one chunk
/// per parameter) the same cubes also fake-quantize it into `dequantized`, and with `bias` round
/// the bias at `s_w · s_x` (returned last; `bias` needs one parameter per element or one for
/// all).
fn launch_observe(
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
fn has_atomic_min_max(t: &CubeTensor) -> bool {
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
fn launch_observe_by_keys(
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

/// The LSQ / LSQ+ backward kernel over `x` viewed by `layout` on `grid`: `(dx, ds, dzp, chunks)`,
/// `ds` (and with `with_zero_point_grad` `dzp`, else one unread entry) one partial sum per
/// (parameter, chunk), `chunks` per parameter.
fn launch_lsq_backward(
    grad: CubeTensor,
    x: CubeTensor,
    grid: &Grid,
    layout: ViewLayout,
    with_zero_point_grad: bool,
    grad_factor: f32,
) -> (CubeTensor, CubeTensor, CubeTensor, usize) {
    let (offset, with_offset) = grid.offset_arg();
    let (high, from_range) = grid.zero_point_high_arg();
    let (rows, with_rows) = grid.rows_arg();
    let dx = empty_like(&grad);
    let strided = strided(&[&grad, &x]);
    let chunks = layout.per_param.div_ceil(REDUCE_CHUNK).max(1);
    let cubes = layout.num_params * chunks;
    let ds = empty(&x, [cubes], DType::F32);
    let dzp = empty(
        &x,
        [if with_zero_point_grad { cubes } else { 1 }],
        DType::F32,
    );
    let (count, dim) = reduction(&x, cubes);
    kernels::lsq_backward::launch(
        &x.client.clone(),
        count,
        dim,
        grad.into_tensor_arg(),
        x.into_tensor_arg(),
        grid.scale.clone().into_tensor_arg(),
        offset.into_tensor_arg(),
        grid.zero_point.clone().into_tensor_arg(),
        high.into_tensor_arg(),
        rows.into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        ds.clone().into_tensor_arg(),
        dzp.clone().into_tensor_arg(),
        layout.per_param,
        REDUCE_CHUNK,
        chunks,
        cubes,
        layout.g,
        layout.l,
        layout.i,
        grid.qmin,
        grid.qmax,
        grad_factor,
        layout.mode,
        with_zero_point_grad,
        strided,
        with_offset,
        from_range,
        with_rows,
    );
    (dx, ds, dzp, chunks)
}

impl FakeQuantKernels for CubeBackend {
    fn max_abs_per_param(
        x: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> CubeTensor {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, num_params);
        reduce_per_param(x, layout, MAX_ABS).1
    }

    fn min_max_per_param(
        x: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> (CubeTensor, CubeTensor) {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, num_params);
        reduce_per_param(x, layout, MIN_MAX)
    }

    fn observe_range(
        x: CubeTensor,
        min: CubeTensor,
        max: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
    ) -> Observed<Self> {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, n);
        // Large parameters are first cut down to partial ranges; the observe kernel folds what
        // is left (at most one chunk per parameter) and writes the results.
        let op = if symmetric { MAX_ABS } else { MIN_MAX };
        let (low, high, layout) = reduce_until(x, layout, op, REDUCE_CHUNK, false);
        let rule =
            ObserveRule::from_args(symmetric, averaging, qmin, qmax, symmetric_zero_point, eps);
        launch_observe((low, high), (min, max), layout, rule, None, None).0
    }

    fn observe_fake_quant(
        x: CubeTensor,
        min: CubeTensor,
        max: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
        keep_mask: bool,
    ) -> (Range<Self>, (CubeTensor, CubeTensor)) {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, n);
        let rule =
            ObserveRule::from_args(symmetric, averaging, qmin, qmax, symmetric_zero_point, eps);
        if !keep_mask && layout.per_param <= REDUCE_CHUNK {
            // Each parameter fits one cube, which observes and fake-quantizes it: one launch.
            let dequantized = empty_like(&x);
            let ((range, _qparams), _) = launch_observe(
                (x.clone(), x.clone()),
                (min, max),
                layout,
                rule,
                Some(dequantized.clone()),
                None,
            );
            return (range, (dequantized, empty(&x, [0], DType::U32)));
        }
        if !has_atomic_min_max(&x) {
            return observe_then_fake_quant::<Self>(
                x,
                (min, max),
                view,
                per_group,
                n,
                rule,
                keep_mask,
            );
        }
        launch_observe_by_keys(x, (min, max), layout, rule, keep_mask)
    }

    fn observe_fake_quant_bias(
        x: CubeTensor,
        min: CubeTensor,
        max: CubeTensor,
        bias: CubeTensor,
        input_low: CubeTensor,
        input_high: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        rule: ObserveRule,
        input_rule: StepRule,
        limit: f32,
    ) -> (Range<Self>, (CubeTensor, CubeTensor)) {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, n);
        let bias_len = bias.meta.shape().num_elements();
        if layout.per_param > REDUCE_CHUNK || (n != 1 && n != bias_len) {
            return observe_fake_quant_then_round_bias::<Self>(
                x,
                (min, max),
                bias,
                (input_low, input_high),
                (view, per_group, n),
                rule,
                input_rule,
                limit,
            );
        }
        // Each parameter fits one cube, which observes and fake-quantizes it and rounds its
        // channel's bias: one launch.
        let dequantized = empty_like(&x);
        let fold = BiasFold {
            bias: f32_input(bias, "the bias"),
            input: (
                f32_input(input_low, "the input's step state"),
                f32_input(input_high, "the input's step state"),
            ),
            rules: (rule.step_rule(), input_rule),
            limit,
        };
        let ((range, _qparams), rounded) = launch_observe(
            (x.clone(), x),
            (min, max),
            layout,
            rule,
            Some(dequantized.clone()),
            Some(fold),
        );
        let rounded = rounded.expect("the observer kernel rounds the bias it is given");
        (range, (dequantized, rounded))
    }

    fn fake_quant_backward(
        grad: CubeTensor,
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
        with_zero_point_grad: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> ((CubeTensor, CubeTensor), CubeTensor) {
        let grad = f32_elements(grad, "the gradient");
        let x = f32_elements(x, "the input");
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range);
        let layout = ViewLayout::new(view, per_group, grid.num_params());
        let nothing = || empty(&x, [0], DType::F32);
        if !with_scale_grad && !with_zero_point_grad {
            // A learned scale always asks for a gradient (the autodiff op keeps the input only
            // then), so an offset or a range's zero point never reaches this fixed-scale kernel.
            debug_assert!(!with_offset, "masked_grad reads no scale offset");
            debug_assert!(
                !zero_point_from_range,
                "masked_grad reads a given zero point"
            );
            let dx = empty_like(&grad);
            let strided = strided(&[&grad, &x]);
            let (count, dim) = elementwise(&x, layout.n);
            kernels::masked_grad::launch(
                &x.client.clone(),
                count,
                dim,
                grad.into_tensor_arg(),
                x.clone().into_tensor_arg(),
                grid.scale.into_tensor_arg(),
                grid.zero_point.into_tensor_arg(),
                dx.clone().into_tensor_arg(),
                layout.n,
                layout.g,
                layout.l,
                layout.i,
                grid.qmin,
                grid.qmax,
                layout.mode,
                strided,
            );
            return ((dx, nothing()), nothing());
        }
        let (dx, ds, dzp, chunks) = launch_lsq_backward(
            grad,
            x.clone(),
            &grid,
            layout,
            with_zero_point_grad,
            grad_factor,
        );
        // Partial sums per (parameter, chunk): add them up, both gradients in one launch.
        let (ds, dzp) = if chunks == 1 {
            (ds, dzp)
        } else {
            let partials = ViewLayout::partials(layout.num_params, chunks);
            let op = if with_zero_point_grad { SUM_BOTH } else { SUM };
            let (low, high, _) = reduce_until_with(dzp, ds, partials, op, 1, true);
            (high, low)
        };
        let ds = if with_scale_grad { ds } else { nothing() };
        let dzp = if with_zero_point_grad { dzp } else { nothing() };
        ((dx, ds), dzp)
    }

    fn fake_quant_with_mask(
        x: CubeTensor,
        scale: CubeTensor,
        zero_point: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
    ) -> (CubeTensor, CubeTensor) {
        let x = f32_elements(x, "the input");
        let grid = Grid::new(scale, zero_point, qmin, qmax);
        let layout = ViewLayout::new(view, per_group, grid.num_params());
        let words = layout.n.div_ceil(32);
        let dq = empty_like(&x);
        let strided = strided(&[&x]);
        let mask = empty(&x, [words], DType::U32);
        let (count, dim) = elementwise(&x, words);
        kernels::fake_quant_with_mask::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            grid.scale.into_tensor_arg(),
            grid.zero_point.into_tensor_arg(),
            dq.clone().into_tensor_arg(),
            mask.clone().into_tensor_arg(),
            layout.n,
            words,
            layout.g,
            layout.l,
            layout.i,
            grid.qmin,
            grid.qmax,
            layout.mode,
            strided,
        );
        (dq, mask)
    }

    fn apply_mask(grad: CubeTensor, mask: CubeTensor) -> CubeTensor {
        let grad = f32_elements(grad, "the gradient");
        let n = grad.meta.shape().num_elements();
        let words = mask.meta.shape().num_elements();
        let out = empty_like(&grad);
        let strided = strided(&[&grad]);
        let (count, dim) = elementwise(&grad, n);
        kernels::apply_mask::launch(
            &grad.client.clone(),
            count,
            dim,
            grad.into_tensor_arg(),
            mask.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            n,
            words,
            strided,
        );
        out
    }

    fn lsq_fake_quant(
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        _clip_free: bool,
        _grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> CubeTensor {
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range);
        launch_fake_quant(x, grid, view, per_group)
    }

    fn lsq_fake_quant_bias(
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        bias: CubeTensor,
        input_low: CubeTensor,
        input_high: CubeTensor,
        grid: LsqBiasGrid,
    ) -> (CubeTensor, CubeTensor) {
        let bias_len = bias.meta.shape().num_elements();
        let n = scale.meta.shape().num_elements();
        let elements: usize = grid.view.iter().product();
        if bias_len > elements || (n != 1 && n != bias_len) {
            return lsq_fake_quant_then_round_bias::<Self>(
                x,
                (scale, scale_offset),
                (zero_point, zero_point_high),
                bias,
                (input_low, input_high),
                grid,
            );
        }
        let (qmin, qmax) = grid.range;
        let weight = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, true)
            .with_zero_point_range(zero_point_high, grid.zero_point_from_range);
        let fold = BiasFold {
            bias: f32_input(bias, "the bias"),
            input: (
                f32_input(input_low, "the input's step state"),
                f32_input(input_high, "the input's step state"),
            ),
            rules: grid.rules,
            limit: grid.limit,
        };
        let (dequantized, rounded) =
            launch_fake_quant_with(x, weight, grid.view, grid.per_group, Some(fold));
        let rounded = rounded.expect("the fake-quant kernel rounds the bias it is given");
        (dequantized, rounded)
    }

    fn lsq_fake_quant_rows(
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        rows: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        _grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> CubeTensor {
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range)
            .with_rows(rows);
        launch_fake_quant(x, grid, view, false)
    }

    fn lsq_backward_rows(
        grad: CubeTensor,
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        rows: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> (CubeTensor, CubeTensor) {
        let grad = f32_elements(grad, "the gradient");
        let x = f32_elements(x, "the input");
        let table_rows = scale.meta.shape().num_elements();
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range)
            .with_rows(rows);
        let layout = ViewLayout::new(view, false, grid.num_params());
        let (dx, partials, _, chunks) =
            launch_lsq_backward(grad, x, &grid, layout, false, grad_factor);
        let rows = grid.rows.expect("a grid of rows");
        let ds = empty(&partials, [table_rows], DType::F32);
        kernels::add_into_table_rows::launch(
            &partials.client.clone(),
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(REDUCE_UNITS as u32),
            partials.into_tensor_arg(),
            rows.into_tensor_arg(),
            ds.clone().into_tensor_arg(),
            layout.num_params,
            chunks,
            table_rows,
        );
        (dx, ds)
    }

    fn round_to_step_product(
        x: CubeTensor,
        a_low: CubeTensor,
        a_high: CubeTensor,
        b_low: CubeTensor,
        b_high: CubeTensor,
        a_rule: StepRule,
        b_rule: StepRule,
        limit: f32,
    ) -> CubeTensor {
        let x = f32_input(x, "the rounded tensor");
        let [a_low, a_high, b_low, b_high] =
            [a_low, a_high, b_low, b_high].map(|t| f32_input(t, "a step's state"));
        let n = x.meta.shape().num_elements();
        let out = empty(&x, [n], DType::F32);
        let (count, dim) = elementwise(&x, n);
        kernels::round_to_step_product::launch(
            &x.client.clone(),
            count,
            dim,
            x.into_tensor_arg(),
            a_low.into_tensor_arg(),
            a_high.into_tensor_arg(),
            b_low.into_tensor_arg(),
            b_high.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            n,
            a_rule.floor,
            a_rule.divisor,
            b_rule.floor,
            b_rule.divisor,
            limit,
            a_rule.kind,
            b_rule.kind,
        );
        out
    }
}

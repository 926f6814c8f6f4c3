//! The tensors a launch takes and makes: inputs as `f32` in a layout the kernels can address,
//! fresh outputs in their input's layout, several small outputs in one allocation.

use burn::backend::DType;
use burn::tensor::Shape;
use burn_cubecl::kernel::{into_contiguous, untile};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;

/// `t` as a contiguous `f32` tensor: the per-parameter tensors (scales, zero points, running
/// ranges), which the kernels index by parameter.
pub(super) fn f32_input(t: CubeTensor, what: &str) -> CubeTensor {
    into_contiguous(f32_elements(t, what))
}

/// `t` as an `f32` tensor in the dense layout it has (any order of its axes: strides; storage
/// tiles undone), or copied row-major where it is not dense (broadcast, sliced): the kernels read
/// the large tensors through their strides where they are not contiguous ([`strided`]), so a
/// channels-last activation is not copied into row-major order first.
pub(super) fn f32_elements(t: CubeTensor, what: &str) -> CubeTensor {
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
pub(super) fn strided(tensors: &[&CubeTensor]) -> bool {
    tensors.iter().any(|t| !t.is_contiguous())
}

/// Looked-up row indices as the contiguous `i32` tensor the kernels read (cast only when they
/// came as another integer type).
pub(super) fn row_indices(rows: CubeTensor) -> CubeTensor {
    let rows = match rows.dtype {
        DType::I32 | DType::U32 => rows,
        _ => burn_cubecl::kernel::cast(rows, DType::I32),
    };
    into_contiguous(rows)
}

/// A fresh contiguous tensor on `like`'s device.
pub(super) fn empty(like: &CubeTensor, shape: impl Into<Shape>, dtype: DType) -> CubeTensor {
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
pub(super) fn empty_like(like: &CubeTensor) -> CubeTensor {
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
pub(super) fn is_dense(shape: &[usize], strides: &[usize]) -> bool {
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

/// `K` fresh `f32` tensors of the lengths `lens` in one allocation, each at an offset the device
/// can bind: an observer's outputs. One allocation rather than `K` matters on the host: CubeCL's
/// memory pool scans and rebuilds a page's list of slices on every allocation in it, so each
/// small tensor makes every later allocation in its page slower, and a QAT step observes dozens
/// of tensors (`cargo xtask bench bert-step --host-work`: the runtime thread's work per MiniLM-L6
/// step fell by a sixth, float's too, as they share the pool; packing the range keys' upload in
/// as well measured slower, and is not done).
pub(super) fn packed_f32<const K: usize>(like: &CubeTensor, lens: [usize; K]) -> [CubeTensor; K] {
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

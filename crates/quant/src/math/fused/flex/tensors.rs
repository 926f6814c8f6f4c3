//! Flex tensors in and out of the kernels: contiguous `f32` inputs, flat outputs, the incoming
//! gradient as an output buffer, and a table's looked-up rows.

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;

/// A tensor's values as a contiguous `f32` slice owner (copied only when not contiguous).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

pub(super) fn f32s(t: &FlexTensor) -> Vec<f32> {
    t.to_contiguous()
        .as_slice::<f32>()
        .expect("fused fake-quant takes f32 tensors")
        .to_vec()
}

pub(super) fn flat(values: Vec<f32>) -> FlexTensor {
    let n = values.len();
    FlexTensor::from_data(TensorData::new(values, [n]))
}

/// The incoming gradient as the buffer `dx` is written over (`n` elements from offset 0): no
/// allocation when autodiff hands over a whole contiguous tensor, a contiguous copy otherwise.
pub(super) fn writable(grad: FlexTensor, n: usize) -> FlexTensor {
    let whole = grad.is_contiguous() && grad.layout().contiguous_offsets() == Some((0, n));
    if whole { grad } else { grad.to_contiguous() }
}

/// The row indices of an embedding lookup, whatever integer type they came in.
pub(super) fn row_indices(rows: FlexTensor) -> Vec<usize> {
    rows.into_data()
        .iter::<i64>()
        .map(|r| usize::try_from(r).expect("a looked-up row is not negative"))
        .collect()
}

/// The values of a per-row parameter (`[table rows]`) at the looked-up rows, read in place (the
/// table's parameters are not copied whole: 30,522 rows for BERT's word table).
pub(super) fn pick_rows(t: &FlexTensor, rows: &[usize]) -> FlexTensor {
    let t = t.to_contiguous();
    let values = t
        .as_slice::<f32>()
        .expect("fused fake-quant takes f32 tensors");
    flat(rows.iter().map(|&r| values[r]).collect())
}

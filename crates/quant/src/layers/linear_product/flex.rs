//! The Flex (CPU) implementations of [`LinearKernels`]: `gemm` (the crate burn-flex runs its
//! matmuls with, so the same AVX-512 / AVX2 kernels chosen at run time) writing each product
//! straight into fresh, uninitialised memory, with the operands read in their own strides.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::LinearKernels;
use crate::math::contiguous_flex;

/// Products of at least this many multiply-adds run on every rayon thread (burn-flex's own
/// threshold, so a product is threaded as Burn's matmul would thread it).
const PARALLEL_MACS: usize = 192 * 192 * 192;

/// Rows per task of [`column_sums`]: each task adds its rows in order, then the tasks' sums are
/// added in order, so the result does not depend on the thread count.
const SUM_ROWS: usize = 256;

/// A matrix operand: its first element and its row and column strides, in elements.
struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Matrix<'a> {
    fn of(t: &'a FlexTensor) -> Self {
        let dims = t.layout().shape();
        assert_eq!(dims.num_dims(), 2, "a linear product takes matrices");
        let strides = t.layout().strides();
        let data = &t.storage::<f32>()[t.layout().start_offset()..];
        Matrix {
            data,
            rows: dims[0],
            cols: dims[1],
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }
}

/// A tensor whose strides `gemm` can take (non-negative), else a contiguous copy.
fn readable(t: FlexTensor) -> FlexTensor {
    if t.layout().strides().iter().all(|&s| s >= 0) {
        t
    } else {
        t.to_contiguous()
    }
}

/// `lhs · rhs` written row-major into fresh memory; with `bias`, the product starts from it
/// (`gemm` adds into the bias rows instead of overwriting).
fn product(lhs: FlexTensor, rhs: FlexTensor, bias: Option<&[f32]>) -> FlexTensor {
    let (lhs, rhs) = (readable(lhs), readable(rhs));
    let (a, b) = (Matrix::of(&lhs), Matrix::of(&rhs));
    assert_eq!(a.cols, b.rows, "inner dimensions of a linear product");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "one bias per output feature");
    }
    if m * n == 0 || k == 0 {
        // An empty product, or empty sums: the bias rows or zeros, nothing for `gemm` to do.
        let out = bias.map_or_else(|| vec![0.0; m * n], |bias| bias.repeat(m));
        return FlexTensor::from_data(TensorData::new(out, Shape::new([m, n])));
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    if let Some(bias) = bias {
        out.spare_capacity_mut()[..m * n]
            .par_chunks_mut(n * SUM_ROWS)
            .for_each(|rows| {
                for row in rows.chunks_mut(n) {
                    for (o, &b) in row.iter_mut().zip(bias) {
                        o.write(b);
                    }
                }
            });
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `out` holds `m · n` elements of capacity, row-major (`dst_rs` = n, `dst_cs` = 1);
    // `gemm` reads them only with `read_dst` (the bias rows, all written above) and, with
    // `k > 0`, writes every one. The operands' pointers and strides address elements of their
    // storage: `Matrix::of` starts at the layout's offset and takes its strides, which stay
    // inside the storage for every in-range index.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            a.data.as_ptr(),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr(),
            b.col_stride,
            b.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    FlexTensor::from_data(TensorData::new(out, Shape::new([m, n])))
}

impl LinearKernels for Flex {
    fn linear_with_bias(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        let b = contiguous_flex(b);
        let bias = b.as_slice::<f32>().expect("an f32 bias");
        product(x, w, Some(bias))
    }

    fn matrix_product(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
        product(lhs, rhs, None)
    }

    fn column_sums(x: FlexTensor) -> FlexTensor {
        let x = contiguous_flex(x);
        let dims = x.layout().shape();
        let n = dims[1];
        let values = x.as_slice::<f32>().expect("f32 gradients");
        let partial: Vec<Vec<f32>> = values
            .par_chunks(n.max(1) * SUM_ROWS)
            .map(|chunk| {
                let mut sums = vec![0.0f32; n];
                for row in chunk.chunks_exact(n.max(1)) {
                    for (s, &v) in sums.iter_mut().zip(row) {
                        *s += v;
                    }
                }
                sums
            })
            .collect();
        let mut sums = vec![0.0f32; n];
        for part in partial {
            for (s, v) in sums.iter_mut().zip(part) {
                *s += v;
            }
        }
        FlexTensor::from_data(TensorData::new(sums, Shape::new([n])))
    }
}

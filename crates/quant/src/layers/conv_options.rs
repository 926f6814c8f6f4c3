//! Padding resolution for 2-D convolutions, as `burn::nn::conv::Conv2d` does it (its helper is
//! crate-private), so our conv layers produce identical outputs.

use burn::nn::PaddingConfig2d;
use burn::tensor::ops::ConvOptions;

/// `(start, end)` padding that keeps `ceil(size / stride)` outputs (ONNX convention: the odd
/// pixel goes at the end).
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = if out > 0 {
        ((out - 1) * stride + kernel).saturating_sub(size)
    } else {
        0
    };
    (total / 2, total - total / 2)
}

/// Convolution options for an input of `height × width`.
pub(crate) fn conv2d_options(
    padding: &PaddingConfig2d,
    [height, width]: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> ConvOptions<2> {
    let pairs = match padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [
            same_padding(kernel[0], stride[0], height),
            same_padding(kernel[1], stride[1], width),
        ],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(*top, *bottom), (*left, *right)],
    };
    ConvOptions::new_with_padding(stride, pairs, dilation, groups)
}

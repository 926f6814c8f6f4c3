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

/// Resolved zero padding `[top, left, bottom, right]` for an input of `height × width`.
pub(crate) fn padding_pairs(
    padding: &PaddingConfig2d,
    [height, width]: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [usize; 4] {
    match padding {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => {
            let (top, bottom) = same_padding(kernel[0], stride[0], height);
            let (left, right) = same_padding(kernel[1], stride[1], width);
            [top, left, bottom, right]
        }
        PaddingConfig2d::Explicit(top, left, bottom, right) => [*top, *left, *bottom, *right],
    }
}

/// Convolution options for an input of `height × width`.
pub(crate) fn conv2d_options(
    padding: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> ConvOptions<2> {
    let [top, left, bottom, right] = padding_pairs(padding, size, kernel, stride);
    ConvOptions::new_with_padding(stride, [(top, bottom), (left, right)], dilation, groups)
}

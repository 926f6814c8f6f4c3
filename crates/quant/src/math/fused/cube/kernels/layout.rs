//! Where the kernels find an element: its offset in a buffer (contiguous or strided) and the
//! parameter it belongs to under a layout ([`super::PER_TENSOR`], [`super::PER_CHANNEL`],
//! [`super::PER_GROUP`]) of the `[o, g, l, i]` view.

use cubecl::prelude::*;

use super::{PER_CHANNEL, PER_GROUP};

/// Where element `e` (row-major over the tensor's shape) lies in `t`'s buffer: `e` itself for a
/// contiguous tensor; through its strides when `strided` (a channels-last convolution output, a
/// gradient in another layout), so that no kernel needs its inputs copied into row-major order.
#[cube]
pub(super) fn at(t: &Tensor<f32>, e: usize, #[comptime] strided: bool) -> usize {
    let mut offset = e;
    if strided {
        offset = 0;
        let mut rest = e;
        let rank = t.rank();
        for k in 0..rank {
            let dim = rank - 1 - k;
            let len = t.shape(dim);
            offset += (rest % len) * t.stride(dim);
            rest /= len;
        }
    }
    offset
}

/// The parameter of flat element `e` of a `[o, g, l, i]` view.
#[cube]
pub(super) fn param_of(e: usize, g: usize, l: usize, i: usize, #[comptime] mode: u32) -> usize {
    let mut p = 0usize;
    if mode == PER_CHANNEL {
        p = (e / (l * i)) % g;
    } else if mode == PER_GROUP {
        p = (e / (l * i)) * i + e % i;
    }
    p
}

/// The flat element of the `k`-th element of parameter `p`, the inverse of [`param_of()`].
#[cube]
pub(super) fn element_of(
    p: usize,
    k: usize,
    g: usize,
    l: usize,
    i: usize,
    #[comptime] mode: u32,
) -> usize {
    let mut e = k;
    if mode == PER_CHANNEL {
        let li = l * i;
        e = ((k / li) * g + p) * li + k % li;
    } else if mode == PER_GROUP {
        e = ((p / i) * l + k) * i + p % i;
    }
    e
}

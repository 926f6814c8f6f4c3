//! [`ParamLayout`]: one 4-D view of any tensor that makes every granularity a broadcast.
//!
//! A tensor of any rank is seen as `[outer, groups, group_len, inner]`:
//! - per-tensor: the tensor's own shape, padded with leading 1s to 4 axes (leading axes merged
//!   beyond 4), one parameter: a reshape that never copies, so a tensor laid out channels-last
//!   (a convolution's output on a GPU) reaches the kernels as it is, and their output keeps
//!   its layout;
//! - per-channel on `axis`: `[prod(dims < axis), C, 1, prod(dims > axis)]`, `C` parameters;
//! - per-group on `axis` with size `g`: `[prod(dims < axis), C / g, g, prod(dims > axis)]`,
//!   one parameter per `(outer, group, inner)`;
//! - per-token: `[rows, 1, d, 1]` (one group spanning the last axis), one parameter per row.
//!
//! Parameters live in a flat `[n]` tensor and broadcast as [`ParamLayout::param_shape`], so one
//! fake-quant kernel serves all granularities. Reshapes of contiguous tensors are free.

use burn::tensor::{Shape, Tensor};

use super::Granularity;

/// The 4-D view of a tensor of a given shape under a resolved granularity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLayout {
    /// `[outer, groups, group_len, inner]`.
    pub view: [usize; 4],
    /// Shape the flat parameters take to broadcast against [`Self::view`].
    pub param_shape: [usize; 4],
    /// The axes of the view that a statistic reduces over.
    pub reduce_axes: Vec<usize>,
}

/// `shape` as 4 axes: padded with leading 1s, or its leading axes merged when it has more.
fn own_shape_in_4d(shape: &[usize]) -> [usize; 4] {
    let mut view = [1; 4];
    let kept = shape.len().min(4);
    let (merged, last) = shape.split_at(shape.len() - kept);
    view[4 - kept..].copy_from_slice(last);
    view[0] *= merged.iter().product::<usize>();
    view
}

impl ParamLayout {
    /// Layout for a tensor of `shape` under `granularity`, whose axis must already be resolved
    /// (see [`Granularity::resolve`]) and count from the front; an unresolved axis means axis 0.
    ///
    /// # Panics
    /// If the axis is out of range or a group size does not divide its axis: configs are checked
    /// earlier by [`crate::QuantSpec::validate_for_shape`], so this is a programming error.
    pub fn new(shape: &[usize], granularity: &Granularity) -> Self {
        let numel: usize = shape.iter().product();
        let split = |axis: usize| -> (usize, usize, usize) {
            assert!(
                axis < shape.len(),
                "axis {axis} out of range for shape {shape:?}"
            );
            let outer = shape[..axis].iter().product();
            let inner = shape[axis + 1..].iter().product();
            (outer, shape[axis], inner)
        };
        match *granularity {
            Granularity::PerTensor => ParamLayout {
                view: own_shape_in_4d(shape),
                param_shape: [1, 1, 1, 1],
                reduce_axes: vec![0, 1, 2, 3],
            },
            Granularity::PerChannel { axis } => {
                let (outer, c, inner) = split(axis.unwrap_or(0));
                ParamLayout {
                    view: [outer, c, 1, inner],
                    param_shape: [1, c, 1, 1],
                    reduce_axes: vec![0, 2, 3],
                }
            }
            Granularity::PerToken => {
                let d = shape.last().copied().unwrap_or(1);
                let rows = numel / d.max(1);
                ParamLayout {
                    view: [rows, 1, d, 1],
                    param_shape: [rows, 1, 1, 1],
                    reduce_axes: vec![2],
                }
            }
            Granularity::PerGroup { axis, group_size } => {
                let (outer, c, inner) = split(axis.unwrap_or(0));
                assert!(
                    group_size > 0 && c % group_size == 0,
                    "group size {group_size} does not divide axis of length {c} (shape {shape:?})"
                );
                ParamLayout {
                    view: [outer, c / group_size, group_size, inner],
                    param_shape: [outer, c / group_size, 1, inner],
                    reduce_axes: vec![2],
                }
            }
        }
    }

    /// Whether parameters are per group (indexed by outer, group and inner position).
    pub fn is_per_group(&self) -> bool {
        self.reduce_axes == [2]
    }

    /// Number of quantization parameters (scales) this layout has.
    pub fn num_params(&self) -> usize {
        self.param_shape.iter().product()
    }

    /// Number of tensor elements that share one parameter (`N` in LSQ's gradient scale).
    pub fn elems_per_param(&self) -> usize {
        self.view.iter().product::<usize>() / self.num_params()
    }

    /// Views `x` as the 4-D tensor of this layout.
    pub fn to_view<const D: usize>(&self, x: Tensor<D>) -> Tensor<4> {
        x.reshape(self.view)
    }

    /// Reshapes a flat `[n]` parameter tensor so that it broadcasts against the view.
    pub fn broadcast(&self, params: Tensor<1>) -> Tensor<4> {
        params.reshape(self.param_shape)
    }

    /// Reduces a view to one value per parameter with `reduce` (e.g. `max_dims`), flattened to `[n]`.
    pub fn reduce(
        &self,
        view: Tensor<4>,
        reduce: impl Fn(Tensor<4>, &[usize]) -> Tensor<4>,
    ) -> Tensor<1> {
        reduce(view, &self.reduce_axes).reshape([self.num_params()])
    }

    /// Rearranges a view into rows `[num_params, elems_per_param]`, one row per parameter, for
    /// statistics that need all values of a group together (percentile, MSE search).
    pub fn rows(&self, view: Tensor<4>) -> Tensor<2> {
        let [o, g, l, i] = self.view;
        let n = self.num_params();
        let m = self.elems_per_param();
        if n == 1 {
            return view.reshape([1, m]);
        }
        match self.reduce_axes.as_slice() {
            // Per-group: parameters indexed by (o, g, i), reduce over l.
            [2] => view.permute([0, 1, 3, 2]).reshape([o * g * i, l]),
            // Per-channel: parameters indexed by g, reduce over (o, l, i).
            _ => view.permute([1, 0, 2, 3]).reshape([g, o * l * i]),
        }
    }

    /// Converts a 4-D view back to the original tensor shape.
    pub fn from_view<const D: usize>(&self, view: Tensor<4>, shape: Shape) -> Tensor<D> {
        view.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_count_parameters() {
        let t = ParamLayout::new(&[8, 4], &Granularity::PerTensor);
        assert_eq!((t.num_params(), t.elems_per_param()), (1, 32));
        // A per-tensor view is the tensor's own shape (never a copying reshape).
        assert_eq!(t.view, [1, 1, 8, 4]);
        let t = ParamLayout::new(&[2, 3, 4, 5, 6], &Granularity::PerTensor);
        assert_eq!((t.view, t.elems_per_param()), ([6, 4, 5, 6], 720));
        assert_eq!(ParamLayout::new(&[], &Granularity::PerTensor).view, [1; 4]);
        let c = ParamLayout::new(&[8, 4], &Granularity::PerChannel { axis: Some(1) });
        assert_eq!(c.view, [8, 4, 1, 1]);
        assert_eq!((c.num_params(), c.elems_per_param()), (4, 8));
        let g = ParamLayout::new(
            &[8, 4],
            &Granularity::PerGroup {
                axis: Some(0),
                group_size: 2,
            },
        );
        assert_eq!(g.view, [1, 4, 2, 4]);
        assert_eq!((g.num_params(), g.elems_per_param()), (16, 2));
        let conv = ParamLayout::new(&[6, 3, 5, 5], &Granularity::PerChannel { axis: Some(0) });
        assert_eq!(conv.view, [1, 6, 1, 75]);
        let token = ParamLayout::new(&[2, 3, 8], &Granularity::PerToken);
        assert_eq!(token.view, [6, 1, 8, 1]);
        assert_eq!((token.num_params(), token.elems_per_param()), (6, 8));
        assert!(token.is_per_group());
    }
}

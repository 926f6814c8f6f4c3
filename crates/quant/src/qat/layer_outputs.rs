//! What [`correct_bias`](super::correct_bias) and [`compare_layers`](super::compare_layers)
//! read: every layer's output before its activation function and output quantizer, recorded
//! while a model runs.
//!
//! The layers with a bias (`QuantLinear`, `QuantConv2d` with a bias, `ConvBn2d` through its BN
//! shift) call [`observe_output`] after their product; outside a [`capture`] that costs one
//! thread-local read. A layer is known by its bias's `ParamId`, which a calibrated copy of a
//! float model shares with it, so the float and the quantized model's outputs pair up without
//! any path or tracing.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Bool, Tensor};

/// Every recorded layer's output sums, and the order the forward pass first reached them in.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) sums: HashMap<ParamId, ChannelSums>,
    pub(crate) order: Vec<ParamId>,
    /// Each layer's outputs as `[rows, channels]` (rows that do not count zeroed), when asked;
    /// then `sums` holds only each layer's count of rows (the sums are not read back).
    pub(crate) outputs: Option<HashMap<ParamId, Vec<Tensor<2>>>>,
    /// Keep only this layer's outputs (the others are still counted), so that a pass that reads
    /// one layer holds no other layer's outputs in memory.
    pub(crate) keep_only: Option<ParamId>,
}

/// Per-channel sums of one layer's outputs, over every element of every batch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelSums {
    pub(crate) sums: Vec<f64>,
    pub(crate) squares: Vec<f64>,
    pub(crate) count: usize,
}

impl ChannelSums {
    pub(crate) fn means(&self) -> Vec<f64> {
        self.sums.iter().map(|s| s / self.count as f64).collect()
    }

    /// Mean square over all channels: the signal power a shift is measured against.
    pub(crate) fn power(&self) -> f64 {
        self.squares.iter().sum::<f64>() / (self.count * self.squares.len()) as f64
    }
}

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
    /// The positions that count, `[batch, seq]` as 0/1 floats (see [`counting_positions`]).
    static POSITIONS: RefCell<Option<Tensor<2>>> = const { RefCell::new(None) };
}

/// Runs `forward` (a model's forward pass inside the `forward` of
/// [`correct_bias`](super::correct_bias) or [`compare_layers`](super::compare_layers)) counting only the
/// positions where `mask` (`[batch, seq]`) is true in every layer output shaped
/// `[batch, seq, channels]`: the real tokens of a padded batch of sentences, whose padding a
/// transformer computes too but nobody reads. Other outputs (a sentence head's `[batch,
/// channels]`) count every row.
pub fn counting_positions<R>(mask: &Tensor<2, Bool>, forward: impl FnOnce() -> R) -> R {
    POSITIONS.with(|p| *p.borrow_mut() = Some(mask.clone().float()));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            POSITIONS.with(|p| p.borrow_mut().take());
        }
    }
    let _reset = Reset;
    forward()
}

/// `y` as `[rows, channels]` with the weight of each row (1 or 0) and how many rows count.
fn weighted_rows<const D: usize>(y: &Tensor<D>, channel_axis: usize) -> (Tensor<2>, usize) {
    let dims = y.dims();
    let channels = dims[channel_axis];
    let rows = y.shape().num_elements() / channels;
    let by_channel = y
        .clone()
        .swap_dims(channel_axis, D - 1)
        .reshape([rows, channels]);
    let mask = POSITIONS.with(|p| p.borrow().clone());
    match mask {
        Some(mask) if D == 3 && channel_axis == 2 && mask.dims() == [dims[0], dims[1]] => {
            let mask = mask.reshape([rows, 1]);
            let counted = mask.clone().sum().into_scalar::<f32>().round() as usize;
            (by_channel * mask, counted)
        }
        _ => (by_channel, rows),
    }
}

/// Whether a [`capture`] is recording layer outputs on this thread (layers check it before
/// calling [`observe_output`], so a normal forward pass costs one thread-local read).
pub(crate) fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Records the per-channel sums of `y` (or `y` itself, in a capture that keeps the outputs), the
/// output of the layer whose bias is `bias`, before its activation function and output
/// quantizer; `channel_axis` is the axis of the output channels.
pub(crate) fn observe_output<const D: usize>(bias: ParamId, y: &Tensor<D>, channel_axis: usize) {
    if !capturing() {
        return;
    }
    let channels = y.dims()[channel_axis];
    let (by_channel, rows) = weighted_rows(y, channel_axis);
    let host = |t: Tensor<2>| -> Vec<f32> {
        t.into_data()
            .try_to_vec::<f32>()
            .expect("layer outputs are f32")
    };
    let keeps_outputs = CAPTURE.with(|c| c.borrow().as_ref().is_some_and(|c| c.outputs.is_some()));
    // A comparison reads the outputs themselves; the sums cost a transfer only when they are read
    // (sums and squares in one).
    let totals = (!keeps_outputs).then(|| {
        let squares = by_channel.clone().powi_scalar(2).sum_dim(0);
        host(Tensor::cat(vec![by_channel.clone().sum_dim(0), squares], 0))
    });
    CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        let Some(captured) = c.as_mut() else { return };
        if !captured.sums.contains_key(&bias) {
            captured.order.push(bias);
        }
        let entry = captured.sums.entry(bias).or_insert_with(|| ChannelSums {
            sums: vec![0.0; channels],
            squares: vec![0.0; channels],
            count: 0,
        });
        if entry.sums.len() != channels {
            return;
        }
        if let Some(totals) = &totals {
            let (sums, squares) = totals.split_at(channels);
            for (total, s) in entry.sums.iter_mut().zip(sums) {
                *total += *s as f64;
            }
            for (total, s) in entry.squares.iter_mut().zip(squares) {
                *total += *s as f64;
            }
        }
        entry.count += rows;
        let kept = captured.keep_only.is_none_or(|only| only == bias);
        if let (Some(outputs), true) = (captured.outputs.as_mut(), kept) {
            outputs.entry(bias).or_default().push(by_channel);
        }
    });
}

/// The per-layer output sums of `model` over `batches`, and with `keep_outputs` the outputs
/// themselves.
pub(crate) fn capture<M, B: Clone>(
    model: &M,
    batches: &[B],
    forward: &mut impl FnMut(&M, B),
    keep_outputs: bool,
) -> Captured {
    start_capture(Captured {
        outputs: keep_outputs.then(HashMap::new),
        ..Captured::default()
    });
    run_capture(model, batches, forward)
}

/// Starts recording into `captured` on this thread.
fn start_capture(captured: Captured) {
    CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        assert!(c.is_none(), "layer output captures do not nest");
        *c = Some(captured);
    });
}

/// Runs `forward` over `batches` while the recording started by [`start_capture`] lasts, and
/// takes it back (even if the forward pass panics).
fn run_capture<M, B: Clone>(model: &M, batches: &[B], forward: &mut impl FnMut(&M, B)) -> Captured {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }
    let reset = Reset;
    for batch in batches {
        forward(model, batch.clone());
    }
    let sums = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    sums
}

/// The outputs of the layer whose bias is `layer`, one `[rows, channels]` tensor per batch of
/// `batches` that reached it, from `model` run by `forward` (on an autodiff device, or with an
/// autodiff weight inside, they carry the graph).
pub(crate) fn capture_outputs_of<M, B: Clone>(
    model: &M,
    batches: &[B],
    forward: &mut impl FnMut(&M, B),
    layer: ParamId,
) -> Vec<Tensor<2>> {
    start_capture(Captured {
        outputs: Some(HashMap::new()),
        keep_only: Some(layer),
        ..Captured::default()
    });
    let captured = run_capture(model, batches, forward);
    captured
        .outputs
        .and_then(|mut outputs| outputs.remove(&layer))
        .unwrap_or_default()
}

/// `10·log10(power / mean square of shift)`.
pub(crate) fn shift_db(power: f64, shift: &[f64]) -> f64 {
    let noise = shift.iter().map(|s| s * s).sum::<f64>() / shift.len() as f64;
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (power / noise).log10()
    }
}

/// Every float parameter's id and path, in module-tree order (paths as the mapping sees them:
/// enum variants' names dropped, as [`super::quant_units`] drops them).
pub(crate) fn param_paths<M: Module>(model: &M) -> Vec<(ParamId, String)> {
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        found: Vec<(ParamId, String)>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let path = self
                .stack
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(".");
            self.found
                .push((param.id, super::units::without_variants(&path)));
        }
    }
    let mut paths = Paths::default();
    model.visit(&mut paths);
    paths.found
}

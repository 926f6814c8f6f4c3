//! The integer program a fake-quant model simulates, checked on a real forward pass.
//!
//! Train = deploy only holds if the float graph computes what an integer engine computes: every
//! integer tensor is quantized **once**, where it is produced, and every integer op (a layer with
//! quantized weights, a residual add, a concatenation, a pooling) reads tensors that are on some
//! quantizer's grid. [`trace`] runs a closure (a model's forward pass) with recording switched on
//! and reports every place where the model breaks that:
//! - a quantizer whose input is already on a grid (the same tensor quantized twice, e.g. by a
//!   layer's input quantizer after its producer's output quantizer);
//! - two quantizers reading the very same tensor (a block input quantized once per consumer);
//! - an integer op reading a float tensor (a float add of two integer tensors, an average that
//!   was not requantized).
//!
//! ReLU, max-pooling, reshapes and slices keep values on their grid, so they pass unnoticed, as
//! they should. The check is numeric: a value is on a grid when `x / s + zp` is an integer (within
//! `1e-3`) inside `[qmin, qmax]`, for the per-tensor or channels-last per-channel grid of some
//! quantizer that ran before. Recording reads tensors back to the host: it is for tests.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

use burn::tensor::Tensor;

use crate::{Granularity, Quantizer};

/// What [`trace`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramReport {
    /// Activation quantizers that ran (and quantized).
    pub quantizers: usize,
    /// Integer ops that read their inputs (layers with quantized weights, adds, pools, concats).
    pub integer_ops: usize,
    /// Every place the forward pass is not an integer program, in order.
    pub violations: Vec<String>,
}

impl ProgramReport {
    /// Whether the traced forward pass is an integer program (no violations).
    pub fn is_integer_program(&self) -> bool {
        self.violations.is_empty()
    }
}

struct Grid {
    /// The quantizer that produced it (its index in the trace).
    quantizer: usize,
    scale: Vec<f32>,
    zero_point: Vec<f32>,
    qmin: f32,
    qmax: f32,
}

#[derive(Default)]
struct Recorder {
    report: ProgramReport,
    grids: Vec<Grid>,
    outputs: Vec<u64>,
    inputs: Vec<(u64, usize)>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Whether a [`trace`] is recording on this thread.
pub fn tracing() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

/// Runs `f` (typically a model's forward pass in validation mode) while recording its integer
/// program, and returns `f`'s result with the report.
///
/// # Panics
/// If called inside another `trace`.
pub fn trace<R>(f: impl FnOnce() -> R) -> (R, ProgramReport) {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        assert!(r.is_none(), "program::trace does not nest");
        *r = Some(Recorder::default());
    });
    let result = f();
    let recorder = RECORDER
        .with(|r| r.borrow_mut().take())
        .expect("recorder set above");
    (result, recorder.report)
}

fn host_values<const D: usize>(x: &Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let dims = x.dims().to_vec();
    let values = x
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor");
    (dims, values)
}

fn fingerprint(values: &[f32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write_usize(values.len());
    for v in values {
        hasher.write_u32(v.to_bits());
    }
    hasher.finish()
}

impl Grid {
    /// Whether every value is on this grid; per-channel grids are read along the last axis.
    fn holds(&self, dims: &[usize], values: &[f32]) -> bool {
        let n = self.scale.len();
        let last = dims.last().copied().unwrap_or(1);
        if n != 1 && n != last {
            return false;
        }
        values.iter().enumerate().all(|(i, &v)| {
            let c = if n == 1 { 0 } else { i % last };
            let code = v / self.scale[c] + self.zero_point[c];
            let rounded = code.round();
            (code - rounded).abs() <= 1e-3 && rounded >= self.qmin && rounded <= self.qmax
        })
    }
}

impl Recorder {
    fn on_some_grid(&self, dims: &[usize], values: &[f32]) -> Option<usize> {
        self.grids
            .iter()
            .find(|g| g.holds(dims, values))
            .map(|g| g.quantizer)
    }
}

/// Records an activation quantizer's input and output (called by [`Quantizer::forward`]).
pub(crate) fn record_quantizer<const D: usize>(
    quant: &Quantizer,
    input: &Tensor<D>,
    output: &Tensor<D>,
) {
    if quant.bypass.is_enabled() {
        return;
    }
    let (dims, values) = host_values(input);
    let (_, out_values) = host_values(output);
    // Dynamic (per-token) grids are per row: their consumers are recognised by the output itself.
    let grid = match quant.config.spec.granularity {
        Granularity::PerToken => None,
        _ => {
            let qp = quant.qparams();
            let read = |t: Tensor<1>| t.into_data().convert::<f32>().try_into_vec::<f32>().ok();
            let spec = &quant.config.spec;
            match (read(qp.scale), read(qp.zero_point)) {
                (Some(scale), Some(zero_point)) => Some(Grid {
                    quantizer: 0,
                    scale,
                    zero_point,
                    qmin: spec.qmin() as f32,
                    qmax: spec.qmax() as f32,
                }),
                _ => None,
            }
        }
    };
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let Some(rec) = r.as_mut() else { return };
        let index = rec.report.quantizers;
        rec.report.quantizers += 1;
        let input_print = fingerprint(&values);
        if let Some(&(_, first)) = rec.inputs.iter().find(|(p, _)| *p == input_print) {
            rec.report.violations.push(format!(
                "quantizers #{first} and #{index} quantize the same tensor {dims:?}: quantize it once, where it is produced"
            ));
        } else if let Some(g) = rec.on_some_grid(&dims, &values) {
            rec.report.violations.push(format!(
                "quantizer #{index} re-quantizes a tensor {dims:?} that is already on the grid of quantizer #{g}"
            ));
        }
        rec.inputs.push((input_print, index));
        rec.outputs.push(fingerprint(&out_values));
        if let Some(grid) = grid {
            rec.grids.push(Grid {
                quantizer: index,
                ..grid
            });
        }
    });
}

/// Records that integer op `op` reads `x`, which must be on a grid (called by the layers and
/// functional ops of this crate; a user's own integer op can call it too).
pub fn record_integer_input<const D: usize>(op: &str, x: &Tensor<D>) {
    if !tracing() {
        return;
    }
    let (dims, values) = host_values(x);
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let Some(rec) = r.as_mut() else { return };
        rec.report.integer_ops += 1;
        let print = fingerprint(&values);
        let produced = rec.outputs.contains(&print);
        if !produced && rec.on_some_grid(&dims, &values).is_none() {
            rec.report.violations.push(format!(
                "{op} reads a float tensor {dims:?} that no quantizer produced (an integer op must read integer tensors; requantize it)"
            ));
        }
    });
}

//! Export: this crate's layers and ops lowered to the integer program of the `engine` crate.
//!
//! Each layer writes its ops into an [`engine::ProgramBuilder`] and returns the value it
//! produced; a model's `to_program` calls them in the order of its `forward`. Codes are read
//! from what the model computes — a weight's codes are its fake-quantized values divided by
//! their scale, checked to reproduce those values exactly — so the artifact holds the very
//! grid points that were trained, whatever learned them (observer, LSQ, PACT).
//!
//! What the engine cannot run is an error naming the layer and the reason: per-group or
//! asymmetric weights, per-channel or dynamic activation grids, grouped or dilated
//! convolutions, activations wider than 8 bits, and quantizers that never saw data.

mod layers;

use burn::tensor::Tensor;
use engine::{ActQuant, LayerWeights};

use crate::{Granularity, QuantError, Quantizer};

/// Reads a host copy of `t`'s values.
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data after conversion")
}

fn unexportable(path: &str, reason: impl Into<String>) -> QuantError {
    QuantError::field(path, format!("cannot export: {}", reason.into()))
}

/// The integer grid of an activation quantizer (per-tensor, static, ≤ 8 bits); a signed grid
/// is shifted by 128 to the unsigned codes the engine stores.
pub fn activation_grid(q: &Quantizer, path: &str) -> Result<ActQuant, QuantError> {
    activation_grid_within(q, path, 8)
}

/// [`activation_grid`] for a tensor that stays inside one engine op and may have up to
/// `max_bits` (an LSTM's 16-bit cell state); a signed grid wider than 8 bits is shifted by
/// `2^(bits−1)`.
pub fn activation_grid_within(
    q: &Quantizer,
    path: &str,
    max_bits: u32,
) -> Result<ActQuant, QuantError> {
    let spec = &q.config.spec;
    if q.bypass.is_enabled() {
        return Err(unexportable(
            path,
            "the quantizer is bypassed (calibration mode)",
        ));
    }
    if q.is_dynamic() || spec.granularity != Granularity::PerTensor {
        return Err(unexportable(
            path,
            format!(
                "the engine runs per-tensor activation grids, this one is {:?}",
                spec.granularity
            ),
        ));
    }
    if spec.bits > max_bits {
        return Err(unexportable(
            path,
            format!(
                "{}-bit activations (the engine holds {max_bits} bits at most here)",
                spec.bits
            ),
        ));
    }
    let qp = q.qparams();
    let (scale, zero_point) = (host(qp.scale)[0], host(qp.zero_point)[0]);
    if !(scale.is_finite() && scale > 0.0 && zero_point.is_finite()) {
        return Err(unexportable(
            path,
            "the quantizer has no statistics yet (calibrate or train first)",
        ));
    }
    let shift = match (spec.signed, spec.bits) {
        (false, _) => 0,
        (true, bits) if bits > 8 => 1 << (bits - 1),
        (true, _) => 128,
    };
    Ok(ActQuant {
        scale,
        zero_point: zero_point.round() as i32 + shift,
        qmin: spec.qmin() + shift,
        qmax: spec.qmax() + shift,
    })
}

/// A layer's weight codes with their per-output-channel scales, `[out, …]` first.
///
/// `quantized` are the fake-quantized weights the model computes with (`Param::val()`), laid
/// out with the output channel first; `q` is the weight's quantizer. Per-tensor scales are
/// repeated per channel.
pub fn weight_codes(
    q: &Quantizer,
    quantized: Vec<f32>,
    shape: Vec<usize>,
    bias: Option<Vec<f32>>,
    path: &str,
) -> Result<LayerWeights, QuantError> {
    let spec = &q.config.spec;
    let out = shape[0];
    if !spec.signed || !spec.symmetric {
        return Err(unexportable(
            path,
            "the engine needs signed symmetric weights (zero point 0)",
        ));
    }
    if spec.bits > 8 {
        return Err(unexportable(
            path,
            format!("{}-bit weights (8 at most)", spec.bits),
        ));
    }
    let scales = host(q.qparams().scale);
    let scales = match (&spec.granularity, scales.len()) {
        (Granularity::PerTensor, 1) => vec![scales[0]; out],
        (Granularity::PerChannel { .. }, n) if n == out => scales,
        (g, _) => {
            return Err(unexportable(
                path,
                format!("weights quantized {g:?}; the engine takes per-channel or per-tensor"),
            ));
        }
    };
    let per_channel = quantized.len() / out;
    let limit = (1i32 << (spec.bits - 1)) - 1;
    let mut codes = Vec::with_capacity(quantized.len());
    for (i, &v) in quantized.iter().enumerate() {
        let s = scales[i / per_channel];
        let c = (v / s).round_ties_even();
        if c.abs() > limit as f32 || c * s != v {
            return Err(unexportable(
                path,
                format!(
                    "weight {i} = {v} is not a code of its grid (scale {s}); export a model whose weights went through its quantizer"
                ),
            ));
        }
        codes.push(c as i8);
    }
    Ok(LayerWeights {
        codes,
        shape,
        bits: spec.bits,
        scales,
        bias,
    })
}

/// Maps an engine error (a duplicate layer name, a shape that does not line up) to the path.
fn engine_error(path: &str, e: engine::EngineError) -> QuantError {
    unexportable(path, e.to_string())
}

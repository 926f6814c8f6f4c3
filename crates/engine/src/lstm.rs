//! The integer LSTM layer ([`crate::Op::Lstm`]): what `quant::QuantLstm` simulates, step by
//! step on codes. The interpreter runs [`lstm`] (plain loops); the engine runs the same frames
//! on its GEMM (`engine/lstm_gemm.rs`); both go through `FrameMath` for everything besides the
//! two products, which keeps them bit for bit the same.
//!
//! One frame, every tensor on its own grid:
//! - `z[c] = round((acc_x[c]·s_x·s_wx[c] + acc_h[c]·s_h·s_wh[c]) / s_z)`, with the int32
//!   accumulators `acc_x = Σ (x − z_x)·W_x + b` and `acc_h = Σ (h − z_h)·W_h`;
//! - the gates `i, f, o` and the candidate `g` read 256-entry tables of `z`'s codes (sigmoid and
//!   tanh onto their grids);
//! - the cell `c = round((f̂·ĉ + î·ĝ) / s_c)` and `tanh(c)` from a table of the cell's codes;
//! - the hidden state `h = round(ô · tanh(c)^ / s_h)`.
//!
//! A frame whose mask is 0 (padding) leaves the state as it was.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::artifact::StoredTensor;
use crate::error::EngineError;
use crate::program::{ActQuant, Program};
use crate::requant::{bounds, code, inverse, quantize};

/// The grids inside an LSTM layer, besides its input's and its output's (the hidden state).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LstmGrids {
    /// The gates' pre-activations `z`.
    pub gates: ActQuant,
    /// `σ(z)` of the input, forget and output gates.
    pub sigmoid: ActQuant,
    /// `tanh(z)` of the cell candidate.
    pub tanh: ActQuant,
    /// The cell state.
    pub cell: ActQuant,
    /// `tanh` of the cell state.
    pub cell_tanh: ActQuant,
}

impl LstmGrids {
    /// Every grid with its role, for checks and messages.
    pub fn all(&self) -> [(&'static str, ActQuant); 5] {
        [
            ("gates", self.gates),
            ("sigmoid", self.sigmoid),
            ("tanh", self.tanh),
            ("cell", self.cell),
            ("cell_tanh", self.cell_tanh),
        ]
    }
}

/// An LSTM layer's weights: `name.input` (`[4H, in]` codes, scales, the int32 bias) and
/// `name.hidden` (`[4H, H]`), gates in the order `i, f, o, g`.
#[derive(Debug, Clone)]
pub struct LstmWeights {
    /// Codes widened to i16 once, so the products are `pmaddwd`-style i16 multiply-adds.
    input: Vec<i16>,
    input_scale: Vec<f32>,
    bias: Vec<i32>,
    hidden: Vec<i16>,
    hidden_scale: Vec<f32>,
    d_in: usize,
    h: usize,
}

impl LstmWeights {
    /// The weights of layer `name`, checked: `name.input.*` a `[4H, in]` layer with an
    /// optional int32 bias, `name.hidden.*` a `[4H, H]` layer without one.
    pub fn read(tensors: &BTreeMap<String, StoredTensor>, name: &str) -> Result<Self, EngineError> {
        let input = Program::layer(tensors, &format!("{name}.input"), 2, false)?;
        let hidden = Program::layer(tensors, &format!("{name}.hidden"), 2, false)?;
        let [gates, d_in] = input.weight.shape[..] else {
            unreachable!("checked: rank 2")
        };
        let [hidden_gates, h] = hidden.weight.shape[..] else {
            unreachable!("checked: rank 2")
        };
        if gates != 4 * h || hidden_gates != gates {
            return Err(EngineError::graph(
                format!("layer {name}"),
                format!(
                    "input weights [{gates}, {d_in}] and hidden weights [{hidden_gates}, {h}] are not [4H, in] and [4H, H]"
                ),
            ));
        }
        if hidden.bias.is_some() {
            return Err(EngineError::graph(
                format!("tensor {name}.hidden.bias"),
                "the hidden product has no bias (it is in `input.bias`)",
            ));
        }
        Ok(LstmWeights {
            input: widen(input.weight.as_codes().expect("checked")),
            input_scale: input.weight_scale.to_vec(),
            bias: input
                .bias
                .map_or_else(|| vec![0; gates], |b| b.as_i32().expect("checked").to_vec()),
            hidden: widen(hidden.weight.as_codes().expect("checked")),
            hidden_scale: hidden.weight_scale.to_vec(),
            d_in,
            h,
        })
    }

    /// `(in, H)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_in, self.h)
    }

    /// The input weights' codes `[4H, in]`, as stored (for packing into the GEMM's panels).
    pub(crate) fn input_codes(&self) -> Vec<i8> {
        narrow(&self.input)
    }

    /// The hidden weights' codes `[4H, H]`, as stored.
    pub(crate) fn hidden_codes(&self) -> Vec<i8> {
        narrow(&self.hidden)
    }

    /// The int32 bias of the input product, one per gate channel.
    pub(crate) fn bias(&self) -> &[i32] {
        &self.bias
    }
}

/// An LSTM layer ready to run: its weights and its lookup tables (built once).
#[derive(Debug, Clone)]
pub struct LstmLayer {
    /// The weights.
    pub weights: LstmWeights,
    /// The tables of its grids.
    pub tables: LstmTables,
}

impl LstmLayer {
    /// Layer `name`'s weights (checked, see [`LstmWeights::read`]) and the tables of `grids`.
    pub fn read(
        tensors: &BTreeMap<String, StoredTensor>,
        name: &str,
        grids: &LstmGrids,
    ) -> Result<Self, EngineError> {
        Ok(LstmLayer {
            weights: LstmWeights::read(tensors, name)?,
            tables: LstmTables::new(grids),
        })
    }
}

/// The layer's lookup tables, built once per layer: `σ` and `tanh` of every code of the gates'
/// grid onto the sigmoid and tanh grids, and `tanh` of every cell code (up to 65,536 entries for
/// a 16-bit cell state) onto the `tanh(c)` grid — each entry the real value of its code (what
/// the frame multiplies), so a frame reads it without converting.
#[derive(Debug, Clone)]
pub struct LstmTables {
    sigmoid: Vec<f32>,
    candidate: Vec<f32>,
    cell_tanh: Vec<f32>,
}

impl LstmTables {
    /// The tables of `grids`.
    pub fn new(grids: &LstmGrids) -> Self {
        LstmTables {
            sigmoid: table(&grids.gates, &grids.sigmoid, sigmoid),
            candidate: table(&grids.gates, &grids.tanh, f32::tanh),
            cell_tanh: table(&grids.cell, &grids.cell_tanh, f32::tanh),
        }
    }
}

/// Largest code of the cell state's grid: the cell may be 16-bit (TFLite's integer LSTM keeps
/// it so); it never leaves the layer, so it is not bound by the 8-bit values between ops.
pub const MAX_CELL_CODE: i32 = 65_535;

/// Sigmoid as the training backend (Flex) computes it, for the table to hold the same codes.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `f` of every code of `from`, quantized onto `to` and read back as that code's real value:
/// indexed by `code − from.qmin`.
fn table(from: &ActQuant, to: &ActQuant, f: impl Fn(f32) -> f32) -> Vec<f32> {
    let inv = inverse(to.scale);
    (from.qmin..=from.qmax)
        .map(|c| real(quantize(f(real(c, from)), inv, to, false), to))
        .collect()
}

#[inline(always)]
fn real(code: i32, q: &ActQuant) -> f32 {
    (code - q.zero_point) as f32 * q.scale
}

/// What every frame of a run computes besides the two products: the gates' codes from the
/// accumulators, and the cell and hidden state from the gates. The interpreter's loops and the
/// engine's GEMM-driven run both go through it, so the two stay bit for bit the same.
pub(crate) struct FrameMath<'a> {
    tables: &'a LstmTables,
    grids: &'a LstmGrids,
    hidden: &'a ActQuant,
    /// `s_x · s_wx[c]` and `s_h · s_wh[c]`: each accumulator's real step, per gate channel.
    x_steps: Vec<f32>,
    h_steps: Vec<f32>,
    inv_z: f32,
    inv_c: f32,
    inv_h: f32,
}

impl<'a> FrameMath<'a> {
    /// The constants of `layer` reading `input` and writing `hidden`.
    pub(crate) fn new(
        layer: &'a LstmLayer,
        grids: &'a LstmGrids,
        input: &ActQuant,
        hidden: &'a ActQuant,
    ) -> Self {
        let w = &layer.weights;
        FrameMath {
            tables: &layer.tables,
            grids,
            hidden,
            x_steps: w.input_scale.iter().map(|&s| input.scale * s).collect(),
            h_steps: w.hidden_scale.iter().map(|&s| hidden.scale * s).collect(),
            inv_z: inverse(grids.gates.scale),
            inv_c: inverse(grids.cell.scale),
            inv_h: inverse(hidden.scale),
        }
    }

    /// The gates' pre-activation codes of one frame, as indices into the tables (`code −
    /// qmin`), from the raw products `dots_x` and `dots_h` plus their per-channel integer
    /// offsets (`acc = dots + offset`): `z[c] = round((acc_x·s_x·s_wx[c] + acc_h·s_h·s_wh[c]) /
    /// s_z)`. One loop over equal-length slices, so it runs on vectors.
    #[inline(always)]
    pub(crate) fn gates(
        &self,
        (dots_x, x_offset): (&[i32], &[i32]),
        (dots_h, h_offset): (&[i32], &[i32]),
        z: &mut [i32],
    ) {
        let g = &self.grids.gates;
        let (lo, hi) = bounds(g, false);
        let (inv, zp) = (self.inv_z, g.zero_point - g.qmin);
        let n = z.len();
        let (dots_x, x_offset, x_steps) = (&dots_x[..n], &x_offset[..n], &self.x_steps[..n]);
        let (dots_h, h_offset, h_steps) = (&dots_h[..n], &h_offset[..n], &self.h_steps[..n]);
        for c in 0..n {
            let acc_x = (dots_x[c] + x_offset[c]) as f32;
            let acc_h = (dots_h[c] + h_offset[c]) as f32;
            z[c] = code(acc_x * x_steps[c] + acc_h * h_steps[c], inv, lo, hi, zp);
        }
    }

    /// One frame's update from the gates' table indices `z` (`[4H]`, order `i, f, o, g`): the
    /// cell state's codes `state_c` in place, and hidden channel `j`'s new code to `set_h`.
    #[inline(always)]
    pub(crate) fn update(&self, z: &[i32], state_c: &mut [i32], mut set_h: impl FnMut(usize, i32)) {
        let h = state_c.len();
        let (grids, t) = (self.grids, self.tables);
        let (i, f, o, g) = (&z[..h], &z[h..2 * h], &z[2 * h..3 * h], &z[3 * h..4 * h]);
        for j in 0..h {
            let cr = t.sigmoid[f[j] as usize] * real(state_c[j], &grids.cell)
                + t.sigmoid[i[j] as usize] * t.candidate[g[j] as usize];
            state_c[j] = quantize(cr, self.inv_c, &grids.cell, false);
            let ct = t.cell_tanh[(state_c[j] - grids.cell.qmin) as usize];
            let hr = t.sigmoid[o[j] as usize] * ct;
            set_h(j, quantize(hr, self.inv_h, self.hidden, false));
        }
    }
}

/// Runs the layer over `batch` sequences of `time` frames: `x` the input codes `[batch, time,
/// in]` on `input`, `mask` `[batch, time]` (1 real, 0 padding); returns the hidden state's
/// codes after every frame, `[batch, time, H]` on `hidden`.
pub fn lstm(
    layer: &LstmLayer,
    grids: &LstmGrids,
    input: &ActQuant,
    hidden: &ActQuant,
    [batch, time]: [usize; 2],
    x: &[i32],
    mask: &[f32],
) -> Vec<i32> {
    let w = &layer.weights;
    let (d_in, h) = (w.d_in, w.h);
    let math = FrameMath::new(layer, grids, input, hidden);
    let mut out = vec![0i32; batch * time * h];
    // Sequences are independent: one task each (the arithmetic of each is the same whatever
    // the schedule).
    out.par_chunks_mut(time * h)
        .enumerate()
        .for_each(|(b, states)| {
            let (mut z, mut dots_x, mut dots_h) =
                (vec![0i32; 4 * h], vec![0; 4 * h], vec![0; 4 * h]);
            let no_offset = vec![0i32; 4 * h];
            // Codes minus their zero points, once per frame instead of once per gate.
            let mut centred_x = vec![0i16; d_in];
            let mut centred_h = vec![0i16; h];
            let mut state_h = vec![hidden.zero_point; h];
            let mut state_c = vec![grids.cell.zero_point; h];
            for t in 0..time {
                let at = b * time + t;
                if mask[at] != 0.0 {
                    for (c, &v) in centred_x.iter_mut().zip(&x[at * d_in..(at + 1) * d_in]) {
                        *c = (v - input.zero_point) as i16;
                    }
                    for (c, &v) in centred_h.iter_mut().zip(&state_h) {
                        *c = (v - hidden.zero_point) as i16;
                    }
                    for c in 0..4 * h {
                        dots_x[c] = dot(&centred_x, &w.input[c * d_in..(c + 1) * d_in]);
                        dots_h[c] = dot(&centred_h, &w.hidden[c * h..(c + 1) * h]);
                    }
                    math.gates((&dots_x, &w.bias), (&dots_h, &no_offset), &mut z);
                    math.update(&z, &mut state_c, |j, code| state_h[j] = code);
                }
                states[t * h..(t + 1) * h].copy_from_slice(&state_h);
            }
        });
    out
}

/// `Σ a[k] · w[k]` in int32: centred codes (within ±255) times weight codes (within ±127), both
/// i16, which the compiler turns into pairwise i16 multiply-adds on every x86-64.
#[inline(always)]
fn dot(a: &[i16], w: &[i16]) -> i32 {
    a.iter().zip(w).map(|(&a, &w)| a as i32 * w as i32).sum()
}

fn widen(codes: &[i8]) -> Vec<i16> {
    codes.iter().map(|&c| c as i16).collect()
}

fn narrow(codes: &[i16]) -> Vec<i8> {
    // Widened from i8 codes, so every value fits.
    codes.iter().map(|&c| c as i8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerWeights, ProgramBuilder};

    const U8: ActQuant = ActQuant {
        scale: 0.05,
        zero_point: 128,
        qmin: 0,
        qmax: 255,
    };

    fn weights(shape: [usize; 2], bias: bool) -> LayerWeights {
        let n = shape[0] * shape[1];
        LayerWeights {
            codes: (0..n).map(|i| (i % 7) as i8 - 3).collect(),
            shape: shape.to_vec(),
            bits: 8,
            scales: vec![0.01; shape[0]],
            bias: bias.then(|| vec![0.1; shape[0]]),
        }
    }

    const GRIDS: LstmGrids = LstmGrids {
        gates: U8,
        sigmoid: U8,
        tanh: U8,
        cell: U8,
        cell_tanh: U8,
    };

    fn program(hidden_shape: [usize; 2]) -> Result<crate::Artifact, EngineError> {
        program_with(hidden_shape, GRIDS)
    }

    fn program_with(
        hidden_shape: [usize; 2],
        grids: LstmGrids,
    ) -> Result<crate::Artifact, EngineError> {
        let mut b = ProgramBuilder::new();
        let frames = b.input("frames", &[5, 3]);
        let mask = b.input("mask", &[5]);
        let x = b.quantize("x", frames, U8);
        let y = b.lstm(
            "lstm",
            x,
            mask,
            [weights([8, 3], true), weights(hidden_shape, false)],
            grids,
            U8,
        )?;
        b.output(y);
        b.finish(serde_json::json!({}))
    }

    /// A program's LSTM is checked before it runs: weights that are not `[4H, in]` and `[4H, H]`
    /// are refused with the layer named.
    #[test]
    fn mismatched_lstm_weights_are_refused_by_name() {
        assert!(program([8, 2]).is_ok());
        let err = program([8, 3]).unwrap_err().to_string();
        assert!(
            err.contains("lstm") && err.contains("[4H, in] and [4H, H]"),
            "{err}"
        );
    }

    /// The cell state may be 16-bit (it stays inside the op); the tensors between ops may not.
    #[test]
    fn only_the_cell_state_may_be_wider_than_eight_bits() {
        let u16 = ActQuant {
            scale: 1e-4,
            zero_point: 32_768,
            qmin: 0,
            qmax: 65_535,
        };
        assert!(program_with([8, 2], LstmGrids { cell: u16, ..GRIDS }).is_ok());
        let err = program_with(
            [8, 2],
            LstmGrids {
                gates: u16,
                ..GRIDS
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("gates grid"), "{err}");
        let too_wide = ActQuant {
            qmax: 65_536,
            ..u16
        };
        assert!(
            program_with(
                [8, 2],
                LstmGrids {
                    cell: too_wide,
                    ..GRIDS
                }
            )
            .is_err()
        );
    }

    /// Padding frames keep the state: a sequence's states after its end repeat its last one,
    /// and a fully padded sequence stays at real zero.
    #[test]
    fn masked_frames_hold_the_state() {
        let artifact = program([8, 2]).unwrap();
        let x: Vec<f32> = (0..2 * 15)
            .map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let mask = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let out = crate::Interpreter::new(&artifact)
            .unwrap()
            .run(2, &[&x, &mask])
            .unwrap();
        let crate::Value::Codes(h) = &out[0] else {
            panic!("integer states")
        };
        assert_eq!(h[4..6], h[6..8], "held after the end");
        assert_eq!(h[4..6], h[8..10]);
        assert_ne!(h[0..2], [128, 128], "real frames move the state");
        assert!(
            h[10..].iter().all(|&c| c == 128),
            "no frame: the zero state"
        );
    }
}

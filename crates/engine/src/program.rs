//! [`Program`]: the integer program an artifact carries — values (integer or float tensors, with
//! their grids) and the ops between them — and [`Program::check`], which proves it consistent
//! with its tensors before anything runs.
//!
//! Shapes exclude the batch axis. Integer values are unsigned codes on an affine grid
//! ([`ActQuant`]; a signed grid is stored shifted by 128). A layer `name` reads its tensors by
//! convention: `name.weight` (codes, `[out, in]` or `[out, in, kh, kw]`, symmetric, within
//! ±127), `name.weight_scale` (`F32 [out]`) and optionally `name.bias` (`I32 [out]` at the
//! accumulator scale `s_x·s_w[c]` when the input is integer; `F32 [out]` when the input is float
//! and quantized per row at run time).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::artifact::StoredTensor;
use crate::error::EngineError;

/// The grid of an integer tensor: `real = (code − zero_point) · scale`, codes in `qmin..=qmax`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActQuant {
    /// Step between codes.
    pub scale: f32,
    /// Code of real zero.
    pub zero_point: i32,
    /// Smallest code (≥ 0).
    pub qmin: i32,
    /// Largest code (≤ 255).
    pub qmax: i32,
}

/// One tensor flowing through the program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueInfo {
    /// Where it comes from in the source model (for messages).
    pub name: String,
    /// Dimensions without the batch axis.
    pub shape: Vec<usize>,
    /// Its grid when integer; `None` for a float tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<ActQuant>,
}

/// One operation; inputs and outputs are indices into [`Program::values`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Op {
    /// Float → codes on the output's grid (a network input or a float island's exit).
    Quantize {
        /// Float input.
        input: usize,
        /// Integer output.
        output: usize,
    },
    /// 2-D convolution of integer NCHW input; output codes (requantized, optional fused ReLU) or
    /// float (dequantized accumulators).
    Conv2d {
        /// Layer name (its tensors are `name.weight`, …).
        name: String,
        /// Integer input `[c_in, h, w]`.
        input: usize,
        /// Output `[c_out, oh, ow]`.
        output: usize,
        /// Strides `[sh, sw]`.
        stride: [usize; 2],
        /// Zero padding `[top, left, bottom, right]` (real zero, i.e. the input's zero point).
        padding: [usize; 4],
        /// ReLU fused before the output quantization.
        relu: bool,
    },
    /// Fully connected over the last axis. Integer input: static; float input: quantized per
    /// row at run time (dynamic), float output.
    Linear {
        /// Layer name.
        name: String,
        /// Input `[…, in]`.
        input: usize,
        /// Output `[…, out]`.
        output: usize,
        /// ReLU fused before the output quantization.
        relu: bool,
    },
    /// Max pooling on codes (the grid passes through).
    MaxPool2d {
        /// Input `[c, h, w]`.
        input: usize,
        /// Output `[c, oh, ow]`, same grid.
        output: usize,
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Strides `[sh, sw]`.
        stride: [usize; 2],
    },
    /// `[c, h, w]` → `[c·h·w]` in NCHW order (the grid passes through).
    Flatten {
        /// Input.
        input: usize,
        /// Output.
        output: usize,
    },
    /// `a + b` (optional ReLU) requantized to the output's grid.
    Add {
        /// Layer name.
        name: String,
        /// Left operand.
        a: usize,
        /// Right operand (same shape).
        b: usize,
        /// Output.
        output: usize,
        /// ReLU before requantization.
        relu: bool,
    },
    /// Mean over `h, w` of `[c, h, w]`, requantized to `[c, 1, 1]`.
    GlobalAvgPool {
        /// Layer name.
        name: String,
        /// Input.
        input: usize,
        /// Output.
        output: usize,
    },
    /// Rows of an embedding table (`name.weight` codes `[rows, d]`, a scale per row) as floats
    /// `[s, d]`, picked by `index`.
    Embed {
        /// Table name.
        name: String,
        /// Which rows.
        index: EmbedIndex,
        /// Float output `[s, d]`.
        output: usize,
    },
    /// `a + b` of two float values (a residual before a LayerNorm).
    AddFloat {
        /// Left operand.
        a: usize,
        /// Right operand (same shape).
        b: usize,
        /// Output.
        output: usize,
    },
    /// LayerNorm over the last axis (`name.gamma`, `name.beta`), in f32.
    LayerNorm {
        /// Layer name.
        name: String,
        /// Float input.
        input: usize,
        /// Float output.
        output: usize,
        /// Added to the variance.
        eps: f32,
    },
    /// GELU (erf form) of floats.
    Gelu {
        /// Float input.
        input: usize,
        /// Float output.
        output: usize,
    },
    /// `tanh` of floats.
    Tanh {
        /// Float input.
        input: usize,
        /// Float output.
        output: usize,
    },
    /// Multi-head self-attention of integer `q`, `k`, `v` (`[s, heads·d]`): scores from the
    /// int8 product `Q·Kᵀ` (× `s_q·s_k/√d`, −10000 where `mask` is 0), softmax in f32, the
    /// probabilities quantized onto `probs`, then the int8 product `P·V` requantized onto the
    /// output's grid.
    Attention {
        /// Layer name.
        name: String,
        /// Queries.
        q: usize,
        /// Keys.
        k: usize,
        /// Values.
        v: usize,
        /// Float `[s]`: 1 for tokens, 0 for padding (a program input).
        mask: usize,
        /// Integer context `[s, heads·d]`.
        output: usize,
        /// Number of heads.
        heads: usize,
        /// Grid of the attention probabilities.
        probs: ActQuant,
    },
    /// An LSTM layer over integer frames `[t, in]` (see [`crate::lstm`]): its weights
    /// `name.input.*` (`[4H, in]`, int32 bias) and `name.hidden.*` (`[4H, H]`), the hidden state
    /// after every frame as the integer output `[t, H]` (past a sequence's end, per `mask`, its
    /// state at its last frame).
    Lstm {
        /// Layer name.
        name: String,
        /// Integer frames `[t, in]`.
        input: usize,
        /// Float `[t]`: 1 for frames, 0 for padding (a program input).
        mask: usize,
        /// Integer hidden states `[t, H]` on the hidden state's grid.
        output: usize,
        /// The grids inside the layer.
        grids: crate::lstm::LstmGrids,
    },
    /// Row `index` of a `[s, d]` value: `[d]` (BERT's pooler reads the first token).
    SelectRow {
        /// Input `[s, d]`.
        input: usize,
        /// Output `[d]`, same grid.
        output: usize,
        /// The row.
        index: usize,
    },
}

/// Which rows an [`Op::Embed`] picks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum EmbedIndex {
    /// The ids in a float program input `[s]` (integers; checked against the table at run time).
    Ids {
        /// The input.
        input: usize,
    },
    /// Rows `0..s` (position embeddings).
    Positions,
    /// Row 0 for every token (token types when none are given).
    First,
}

impl Op {
    /// Values this op reads.
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            Op::Add { a, b, .. } | Op::AddFloat { a, b, .. } => vec![*a, *b],
            Op::Attention { q, k, v, mask, .. } => vec![*q, *k, *v, *mask],
            Op::Lstm { input, mask, .. } => vec![*input, *mask],
            Op::Embed { index, .. } => match index {
                EmbedIndex::Ids { input } => vec![*input],
                _ => vec![],
            },
            Op::Quantize { input, .. }
            | Op::Conv2d { input, .. }
            | Op::Linear { input, .. }
            | Op::MaxPool2d { input, .. }
            | Op::Flatten { input, .. }
            | Op::GlobalAvgPool { input, .. }
            | Op::LayerNorm { input, .. }
            | Op::Gelu { input, .. }
            | Op::Tanh { input, .. }
            | Op::SelectRow { input, .. } => vec![*input],
        }
    }

    /// The value this op writes.
    pub fn output(&self) -> usize {
        match self {
            Op::Quantize { output, .. }
            | Op::Conv2d { output, .. }
            | Op::Linear { output, .. }
            | Op::MaxPool2d { output, .. }
            | Op::Flatten { output, .. }
            | Op::Add { output, .. }
            | Op::GlobalAvgPool { output, .. }
            | Op::Embed { output, .. }
            | Op::AddFloat { output, .. }
            | Op::LayerNorm { output, .. }
            | Op::Gelu { output, .. }
            | Op::Tanh { output, .. }
            | Op::Attention { output, .. }
            | Op::Lstm { output, .. }
            | Op::SelectRow { output, .. } => *output,
        }
    }

    /// `Conv2d conv1`, for messages.
    pub fn label(&self) -> String {
        match self {
            Op::Conv2d { name, .. } => format!("Conv2d {name}"),
            Op::Linear { name, .. } => format!("Linear {name}"),
            Op::Add { name, .. } => format!("Add {name}"),
            Op::GlobalAvgPool { name, .. } => format!("GlobalAvgPool {name}"),
            Op::Embed { name, .. } => format!("Embed {name}"),
            Op::LayerNorm { name, .. } => format!("LayerNorm {name}"),
            Op::Attention { name, .. } => format!("Attention {name}"),
            Op::Lstm { name, .. } => format!("Lstm {name}"),
            Op::AddFloat { .. } => "AddFloat".into(),
            Op::Gelu { .. } => "Gelu".into(),
            Op::Tanh { .. } => "Tanh".into(),
            Op::SelectRow { .. } => "SelectRow".into(),
            Op::Quantize { .. } => "Quantize".into(),
            Op::MaxPool2d { .. } => "MaxPool2d".into(),
            Op::Flatten { .. } => "Flatten".into(),
        }
    }
}

/// The integer program: values, ops in execution order, inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Every tensor of the program.
    pub values: Vec<ValueInfo>,
    /// Float inputs, in the order callers pass them.
    pub inputs: Vec<usize>,
    /// Outputs, in the order they are returned.
    pub outputs: Vec<usize>,
    /// Ops in execution order (each reads only values defined before it).
    pub ops: Vec<Op>,
}

/// Largest element count of one tensor (without batch): keeps a hostile header from asking for
/// unbounded memory.
pub const MAX_ELEMS: usize = 1 << 28;
/// Largest reduction length of a Linear or Conv2d: int32 accumulators of u8 × i8 products
/// (|x·w| ≤ 255·127) cannot overflow below it.
pub const MAX_REDUCTION: usize = 1 << 16;

/// Whether `q` is a grid the engine runs: a finite positive scale, `0 ≤ qmin ≤ zero_point ≤
/// qmax ≤ 255`.
fn valid_grid(q: &ActQuant) -> bool {
    valid_grid_within(q, 255)
}

/// [`valid_grid`] with codes up to `max` (an LSTM's 16-bit cell state, inside its op).
fn valid_grid_within(q: &ActQuant, max: i32) -> bool {
    q.scale.is_finite()
        && q.scale > 0.0
        && 0 <= q.qmin
        && q.qmin <= q.zero_point
        && q.zero_point <= q.qmax
        && q.qmax <= max
}

/// A layer's weights as checked by [`Program::check`].
#[derive(Debug, Clone, Copy)]
pub struct LayerTensors<'a> {
    /// Codes `[out, in(, kh, kw)]`.
    pub weight: &'a StoredTensor,
    /// `[out]`.
    pub weight_scale: &'a [f32],
    /// `I32 [out]` (integer input) or `F32 [out]` (dynamic).
    pub bias: Option<&'a StoredTensor>,
}

impl Program {
    /// The weights of layer `name`, checked against `out` channels and `rank`.
    pub fn layer<'a>(
        tensors: &'a BTreeMap<String, StoredTensor>,
        name: &str,
        rank: usize,
        dynamic: bool,
    ) -> Result<LayerTensors<'a>, EngineError> {
        let get = |suffix: &str| tensors.get(&format!("{name}.{suffix}"));
        let at = |suffix: &str| format!("tensor {name}.{suffix}");
        let weight = get("weight").ok_or_else(|| EngineError::graph(at("weight"), "missing"))?;
        let codes = weight
            .as_codes()
            .ok_or_else(|| EngineError::graph(at("weight"), "must hold integer codes"))?;
        if weight.shape.len() != rank || weight.shape.contains(&0) {
            return Err(EngineError::graph(
                at("weight"),
                format!("shape {:?} is not {rank}-D and non-empty", weight.shape),
            ));
        }
        if codes.contains(&-128) {
            return Err(EngineError::graph(
                at("weight"),
                "holds code -128; weights must be symmetric within ±127",
            ));
        }
        let out = weight.shape[0];
        let weight_scale = get("weight_scale")
            .and_then(|t| t.as_f32())
            .ok_or_else(|| EngineError::graph(at("weight_scale"), "missing or not F32"))?;
        if weight_scale.len() != out || weight_scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(EngineError::graph(
                at("weight_scale"),
                format!("must be {out} finite positive scales"),
            ));
        }
        let bias = get("bias");
        if let Some(b) = bias {
            let (expected, ok) = if dynamic {
                ("F32", b.as_f32().is_some())
            } else {
                ("I32", b.as_i32().is_some())
            };
            if !ok || b.shape != [out] {
                return Err(EngineError::graph(
                    at("bias"),
                    format!(
                        "must be {expected} [{out}], found {:?} {:?}",
                        b.dtype, b.shape
                    ),
                ));
            }
        }
        Ok(LayerTensors {
            weight,
            weight_scale,
            bias,
        })
    }

    /// Proves the program runnable on `tensors`: every value defined once before use, shapes
    /// consistent op by op, grids valid, each layer's tensors present with matching shapes and
    /// types. The interpreter and the engine rely on it and do not re-check.
    pub fn check(&self, tensors: &BTreeMap<String, StoredTensor>) -> Result<(), EngineError> {
        for (i, v) in self.values.iter().enumerate() {
            let at = || format!("value {i} ({})", v.name);
            let elems = v
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n > 0 && n <= MAX_ELEMS && !v.shape.is_empty());
            if elems.is_none() {
                return Err(EngineError::graph(
                    at(),
                    format!("shape {:?} is empty or too large", v.shape),
                ));
            }
            if let Some(q) = &v.quant
                && !valid_grid(q)
            {
                return Err(EngineError::graph(
                    at(),
                    format!(
                        "grid {q:?} is not 0 ≤ qmin ≤ zero_point ≤ qmax ≤ 255 with a positive scale"
                    ),
                ));
            }
        }
        let mut defined = vec![false; self.values.len()];
        let value = |i: usize, at: &str| {
            self.values.get(i).ok_or_else(|| {
                EngineError::graph(at, format!("refers to value {i}, which does not exist"))
            })
        };
        for &i in &self.inputs {
            let v = value(i, "inputs")?;
            if v.quant.is_some() {
                return Err(EngineError::graph(
                    "inputs",
                    format!("input {i} ({}) must be float", v.name),
                ));
            }
            if std::mem::replace(&mut defined[i], true) {
                return Err(EngineError::graph(
                    "inputs",
                    format!("value {i} listed twice"),
                ));
            }
        }
        for (k, op) in self.ops.iter().enumerate() {
            let at = format!("op {k} ({})", op.label());
            for i in op.inputs() {
                value(i, &at)?;
                if !defined[i] {
                    return Err(EngineError::graph(
                        &at,
                        format!("reads value {i} before it is defined"),
                    ));
                }
            }
            let out = op.output();
            value(out, &at)?;
            if std::mem::replace(&mut defined[out], true) {
                return Err(EngineError::graph(
                    &at,
                    format!("writes value {out}, which is already defined"),
                ));
            }
            self.check_op(op, tensors)
                .map_err(|what| EngineError::graph(&at, what))?;
        }
        if self.outputs.is_empty() {
            return Err(EngineError::graph("outputs", "the program has no outputs"));
        }
        for &o in &self.outputs {
            value(o, "outputs")?;
            if !defined[o] {
                return Err(EngineError::graph(
                    "outputs",
                    format!("value {o} is never computed"),
                ));
            }
        }
        Ok(())
    }

    fn check_op(&self, op: &Op, tensors: &BTreeMap<String, StoredTensor>) -> Result<(), String> {
        let v = |i: usize| &self.values[i];
        let int = |i: usize, role: &str| {
            v(i).quant
                .map(|_| ())
                .ok_or_else(|| format!("{role} (value {i}) must be integer"))
        };
        let same_shape = |a: usize, b: usize| {
            if v(a).shape == v(b).shape {
                Ok(())
            } else {
                Err(format!(
                    "shapes {:?} and {:?} differ",
                    v(a).shape,
                    v(b).shape
                ))
            }
        };
        let chw = |i: usize| match v(i).shape[..] {
            [c, h, w] => Ok([c, h, w]),
            ref s => Err(format!("value {i} must be [c, h, w], found {s:?}")),
        };
        match op {
            Op::Quantize { input, output } => {
                if v(*input).quant.is_some() {
                    return Err("input must be float".into());
                }
                int(*output, "output")?;
                same_shape(*input, *output)
            }
            Op::Conv2d {
                name,
                input,
                output,
                stride,
                padding,
                ..
            } => {
                int(*input, "input")?;
                let layer = Program::layer(tensors, name, 4, false).map_err(|e| e.to_string())?;
                let [c_out, c_in, kh, kw] = layer.weight.shape[..] else {
                    unreachable!()
                };
                let [c, h, w] = chw(*input)?;
                let [oc, oh, ow] = chw(*output)?;
                if c != c_in || oc != c_out {
                    return Err(format!(
                        "weight [{c_out}, {c_in}, {kh}, {kw}] does not map {c} to {oc} channels"
                    ));
                }
                if stride.contains(&0) || padding.iter().any(|&p| p > 64) {
                    return Err(format!(
                        "stride {stride:?} / padding {padding:?} out of range"
                    ));
                }
                let (ph, pw) = (h + padding[0] + padding[2], w + padding[1] + padding[3]);
                if ph < kh || pw < kw {
                    return Err(format!(
                        "kernel {kh}×{kw} exceeds the padded input {ph}×{pw}"
                    ));
                }
                let expect = [(ph - kh) / stride[0] + 1, (pw - kw) / stride[1] + 1];
                if [oh, ow] != expect {
                    return Err(format!(
                        "output {oh}×{ow} should be {}×{}",
                        expect[0], expect[1]
                    ));
                }
                if c_in * kh * kw > MAX_REDUCTION {
                    return Err(format!(
                        "reduction {} exceeds {MAX_REDUCTION}",
                        c_in * kh * kw
                    ));
                }
                Ok(())
            }
            Op::Linear {
                name,
                input,
                output,
                relu,
            } => {
                let dynamic = v(*input).quant.is_none();
                if dynamic && (v(*output).quant.is_some() || *relu) {
                    return Err(
                        "a float (dynamically quantized) input needs a float output without ReLU"
                            .into(),
                    );
                }
                let layer = Program::layer(tensors, name, 2, dynamic).map_err(|e| e.to_string())?;
                let [d_out, d_in] = layer.weight.shape[..] else {
                    unreachable!()
                };
                let (xs, ys) = (&v(*input).shape, &v(*output).shape);
                let lead_ok = xs.len() == ys.len() && xs[..xs.len() - 1] == ys[..ys.len() - 1];
                if !lead_ok || xs[xs.len() - 1] != d_in || ys[ys.len() - 1] != d_out {
                    return Err(format!(
                        "weight [{d_out}, {d_in}] does not map {xs:?} to {ys:?}"
                    ));
                }
                if d_in > MAX_REDUCTION {
                    return Err(format!("reduction {d_in} exceeds {MAX_REDUCTION}"));
                }
                Ok(())
            }
            Op::MaxPool2d {
                input,
                output,
                kernel,
                stride,
            } => {
                int(*input, "input")?;
                let [c, h, w] = chw(*input)?;
                if kernel.contains(&0) || stride.contains(&0) || kernel[0] > h || kernel[1] > w {
                    return Err(format!(
                        "window {kernel:?} / stride {stride:?} invalid for {h}×{w}"
                    ));
                }
                let expect = vec![
                    c,
                    (h - kernel[0]) / stride[0] + 1,
                    (w - kernel[1]) / stride[1] + 1,
                ];
                if v(*output).shape != expect {
                    return Err(format!(
                        "output {:?} should be {expect:?}",
                        v(*output).shape
                    ));
                }
                if v(*input).quant != v(*output).quant {
                    return Err("max-pool keeps its input's grid".into());
                }
                Ok(())
            }
            Op::Flatten { input, output } => {
                let n: usize = v(*input).shape.iter().product();
                if v(*output).shape != [n] || v(*input).quant != v(*output).quant {
                    return Err(format!("output must be [{n}] on the input's grid"));
                }
                Ok(())
            }
            Op::Add { a, b, output, .. } => {
                int(*a, "left operand")?;
                int(*b, "right operand")?;
                int(*output, "output")?;
                same_shape(*a, *b)?;
                same_shape(*a, *output)
            }
            Op::GlobalAvgPool { input, output, .. } => {
                int(*input, "input")?;
                int(*output, "output")?;
                let [c, ..] = chw(*input)?;
                if v(*output).shape != [c, 1, 1] {
                    return Err(format!("output must be [{c}, 1, 1]"));
                }
                Ok(())
            }
            Op::Embed {
                name,
                index,
                output,
            } => {
                let table = tensors
                    .get(&format!("{name}.weight"))
                    .ok_or("missing its table")?;
                let rows = match (table.as_codes(), &table.shape[..]) {
                    (Some(_), &[rows, _]) if rows > 0 => rows,
                    _ => return Err(format!("table {name}.weight must be codes [rows, d]")),
                };
                let scales = tensors
                    .get(&format!("{name}.weight_scale"))
                    .and_then(|t| t.as_f32());
                if !scales
                    .is_some_and(|s| s.len() == rows && s.iter().all(|s| s.is_finite() && *s > 0.0))
                {
                    return Err(format!(
                        "{name}.weight_scale must hold {rows} positive scales"
                    ));
                }
                let float = |i: usize| v(i).quant.is_none();
                let [s, d] = v(*output).shape[..] else {
                    return Err("output must be [s, d]".into());
                };
                if !float(*output) || d != table.shape[1] {
                    return Err(format!("output must be float [s, {}]", table.shape[1]));
                }
                match index {
                    EmbedIndex::Ids { input }
                        if !self.inputs.contains(input)
                            || !float(*input)
                            || v(*input).shape != [s] =>
                    {
                        Err(format!("ids must be a float program input [{s}]"))
                    }
                    EmbedIndex::Positions if s > rows => {
                        Err(format!("{s} positions, table has {rows}"))
                    }
                    _ => Ok(()),
                }
            }
            Op::AddFloat { a, b, output } => {
                if [a, b, output].iter().any(|&&i| v(i).quant.is_some()) {
                    return Err("operands and output must be float".into());
                }
                same_shape(*a, *b)?;
                same_shape(*a, *output)
            }
            Op::LayerNorm {
                name,
                input,
                output,
                eps,
            } => {
                if v(*input).quant.is_some() || v(*output).quant.is_some() {
                    return Err("input and output must be float".into());
                }
                same_shape(*input, *output)?;
                let d = *v(*input).shape.last().expect("non-empty");
                for part in ["gamma", "beta"] {
                    let ok = tensors
                        .get(&format!("{name}.{part}"))
                        .and_then(|t| t.as_f32())
                        .is_some_and(|t| t.len() == d);
                    if !ok {
                        return Err(format!("{name}.{part} must be F32 [{d}]"));
                    }
                }
                if !(eps.is_finite() && *eps >= 0.0) {
                    return Err(format!("eps {eps} must be finite and non-negative"));
                }
                Ok(())
            }
            Op::Gelu { input, output } | Op::Tanh { input, output } => {
                if v(*input).quant.is_some() || v(*output).quant.is_some() {
                    return Err("input and output must be float".into());
                }
                same_shape(*input, *output)
            }
            Op::Attention {
                q,
                k,
                v: value,
                mask,
                output,
                heads,
                probs,
                ..
            } => {
                for (i, role) in [(q, "q"), (k, "k"), (value, "v"), (output, "output")] {
                    int(*i, role)?;
                }
                same_shape(*q, *k)?;
                same_shape(*q, *value)?;
                same_shape(*q, *output)?;
                let [s, hd] = v(*q).shape[..] else {
                    return Err("q must be [s, heads·d]".into());
                };
                // u8 × u8 products (≤ 255²) summed over s or d must stay within i32.
                if *heads == 0 || hd % heads != 0 || hd / heads > 1 << 15 || s > 1 << 15 {
                    return Err(format!(
                        "{hd} features do not split into {heads} heads of at most 32768, or s > 32768"
                    ));
                }
                if !self.inputs.contains(mask) || v(*mask).quant.is_some() || v(*mask).shape != [s]
                {
                    return Err(format!("mask must be a float program input [{s}]"));
                }
                if !valid_grid(probs) {
                    return Err(format!("probability grid {probs:?} is invalid"));
                }
                Ok(())
            }
            Op::Lstm {
                name,
                input,
                mask,
                output,
                grids,
            } => {
                int(*input, "input")?;
                int(*output, "output")?;
                let weights =
                    crate::lstm::LstmWeights::read(tensors, name).map_err(|e| e.to_string())?;
                let (d_in, h) = weights.dims();
                let [t, features] = v(*input).shape[..] else {
                    return Err("input must be [t, in]".into());
                };
                if features != d_in || v(*output).shape != [t, h] {
                    return Err(format!(
                        "weights map {d_in} features to {h}: input [{t}, {features}] and output {:?} do not fit",
                        v(*output).shape
                    ));
                }
                // u8 × i8 products summed over `in` and over `H` must stay within i32.
                if d_in > MAX_REDUCTION || h > MAX_REDUCTION {
                    return Err(format!(
                        "{d_in} inputs or {h} hidden units exceed {MAX_REDUCTION}"
                    ));
                }
                if !self.inputs.contains(mask) || v(*mask).quant.is_some() || v(*mask).shape != [t]
                {
                    return Err(format!("mask must be a float program input [{t}]"));
                }
                let valid = |role: &str, q: &ActQuant| match role {
                    "cell" => valid_grid_within(q, crate::lstm::MAX_CELL_CODE),
                    _ => valid_grid(q),
                };
                if let Some((role, q)) = grids.all().into_iter().find(|(r, q)| !valid(r, q)) {
                    return Err(format!("{role} grid {q:?} is invalid"));
                }
                Ok(())
            }
            Op::SelectRow {
                input,
                output,
                index,
            } => {
                let [s, d] = v(*input).shape[..] else {
                    return Err("input must be [s, d]".into());
                };
                if *index >= s || v(*output).shape != [d] || v(*input).quant != v(*output).quant {
                    return Err(format!(
                        "row {index} of [{s}, {d}] is a [{d}] on the same grid"
                    ));
                }
                Ok(())
            }
        }
    }
}

//! [`ProgramBuilder`]: how exporters write a program — one call per op, shapes inferred, biases
//! quantized to int32 at the accumulator scale — ending in a validated [`Artifact`].

use std::collections::BTreeMap;

use crate::artifact::{Artifact, DType, StoredTensor};
use crate::error::EngineError;
use crate::program::{ActQuant, EmbedIndex, Op, Program, ValueInfo};
use crate::requant::accumulator_scales;

/// A layer's quantized weights as an exporter hands them over.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Symmetric codes, `[out, in]` or `[out, in, kh, kw]` row-major, within ±(2^(bits−1) − 1).
    pub codes: Vec<i8>,
    /// The codes' shape.
    pub shape: Vec<usize>,
    /// Bit width (8, 4, 2 …): sets the stored width (`I8`, `I4`, `I2`).
    pub bits: u32,
    /// Scale per output channel.
    pub scales: Vec<f32>,
    /// Float bias per output channel, if any.
    pub bias: Option<Vec<f32>>,
}

/// Builds a [`Program`] and its tensors.
#[derive(Debug, Default)]
pub struct ProgramBuilder {
    program: Program,
    tensors: BTreeMap<String, StoredTensor>,
}

impl ProgramBuilder {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a float input of `shape` (without batch).
    pub fn input(&mut self, name: &str, shape: &[usize]) -> usize {
        let v = self.value(name, shape.to_vec(), None);
        self.program.inputs.push(v);
        v
    }

    /// Marks `value` as an output.
    pub fn output(&mut self, value: usize) {
        self.program.outputs.push(value);
    }

    /// The shape of `value`.
    pub fn shape(&self, value: usize) -> &[usize] {
        &self.program.values[value].shape
    }

    /// The grid of `value` (`None`: float).
    pub fn quant(&self, value: usize) -> Option<ActQuant> {
        self.program.values[value].quant
    }

    fn value(&mut self, name: &str, shape: Vec<usize>, quant: Option<ActQuant>) -> usize {
        self.program.values.push(ValueInfo {
            name: name.to_string(),
            shape,
            quant,
        });
        self.program.values.len() - 1
    }

    /// `x` quantized onto `q` (a network input or a float island's exit).
    pub fn quantize(&mut self, name: &str, x: usize, q: ActQuant) -> usize {
        let y = self.value(name, self.shape(x).to_vec(), Some(q));
        self.program.ops.push(Op::Quantize {
            input: x,
            output: y,
        });
        y
    }

    /// Max pooling (the grid passes through).
    pub fn max_pool2d(&mut self, x: usize, kernel: [usize; 2], stride: [usize; 2]) -> usize {
        let shape = self.shape(x).to_vec();
        let out = match shape[..] {
            [c, h, w] if h >= kernel[0] && w >= kernel[1] => {
                vec![
                    c,
                    (h - kernel[0]) / stride[0] + 1,
                    (w - kernel[1]) / stride[1] + 1,
                ]
            }
            _ => shape.clone(), // left for `finish` to report
        };
        let name = format!("{}.maxpool", self.program.values[x].name);
        let y = self.value(&name, out, self.quant(x));
        self.program.ops.push(Op::MaxPool2d {
            input: x,
            output: y,
            kernel,
            stride,
        });
        y
    }

    /// `[c, h, w]` → `[c·h·w]`.
    pub fn flatten(&mut self, x: usize) -> usize {
        let n = self.shape(x).iter().product();
        let name = format!("{}.flatten", self.program.values[x].name);
        let y = self.value(&name, vec![n], self.quant(x));
        self.program.ops.push(Op::Flatten {
            input: x,
            output: y,
        });
        y
    }

    /// `relu?(a + b)` requantized onto `q`.
    pub fn add(&mut self, name: &str, a: usize, b: usize, relu: bool, q: ActQuant) -> usize {
        let y = self.value(name, self.shape(a).to_vec(), Some(q));
        self.program.ops.push(Op::Add {
            name: name.to_string(),
            a,
            b,
            output: y,
            relu,
        });
        y
    }

    /// Global average pooling requantized onto `q`.
    pub fn global_avg_pool(&mut self, name: &str, x: usize, q: ActQuant) -> usize {
        let c = self.shape(x)[0];
        let y = self.value(name, vec![c, 1, 1], Some(q));
        self.program.ops.push(Op::GlobalAvgPool {
            name: name.to_string(),
            input: x,
            output: y,
        });
        y
    }

    /// A convolution of integer `x`; output codes on `out`, or floats when `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        name: &str,
        x: usize,
        weights: LayerWeights,
        stride: [usize; 2],
        padding: [usize; 4],
        relu: bool,
        out: Option<ActQuant>,
    ) -> Result<usize, EngineError> {
        let &[c_out, _, kh, kw] = &weights.shape[..] else {
            return Err(EngineError::graph(
                name,
                format!("conv weight shape {:?} is not 4-D", weights.shape),
            ));
        };
        let [_, h, w] = self.shape(x)[..] else {
            return Err(EngineError::graph(
                name,
                format!("input shape {:?} is not [c, h, w]", self.shape(x)),
            ));
        };
        let (ph, pw) = (h + padding[0] + padding[2], w + padding[1] + padding[3]);
        if ph < kh || pw < kw {
            return Err(EngineError::graph(
                name,
                "the kernel exceeds the padded input",
            ));
        }
        let shape = vec![c_out, (ph - kh) / stride[0] + 1, (pw - kw) / stride[1] + 1];
        self.layer_tensors(name, x, weights)?;
        let y = self.value(name, shape, out);
        self.program.ops.push(Op::Conv2d {
            name: name.to_string(),
            input: x,
            output: y,
            stride,
            padding,
            relu,
        });
        Ok(y)
    }

    /// A fully connected layer over the last axis; a float `x` is quantized per row at run time.
    pub fn linear(
        &mut self,
        name: &str,
        x: usize,
        weights: LayerWeights,
        relu: bool,
        out: Option<ActQuant>,
    ) -> Result<usize, EngineError> {
        let mut shape = self.shape(x).to_vec();
        *shape.last_mut().expect("values have a shape") = weights.shape[0];
        self.layer_tensors(name, x, weights)?;
        let y = self.value(name, shape, out);
        self.program.ops.push(Op::Linear {
            name: name.to_string(),
            input: x,
            output: y,
            relu,
        });
        Ok(y)
    }

    /// An LSTM layer over integer frames `x` (`[t, in]`) with `mask` (a float program input
    /// `[t]`): `input` weights `[4H, in]` with the bias (stored as int32 at `x`'s accumulator
    /// scale), `hidden` weights `[4H, H]`, gates `i, f, o, g`; the output is the hidden state
    /// after every frame, `[t, H]` on `hidden_grid`.
    pub fn lstm(
        &mut self,
        name: &str,
        x: usize,
        mask: usize,
        [input, hidden]: [LayerWeights; 2],
        grids: crate::lstm::LstmGrids,
        hidden_grid: ActQuant,
    ) -> Result<usize, EngineError> {
        let t = self.shape(x)[0];
        let h = hidden.shape[1];
        self.layer_tensors(&format!("{name}.input"), x, input)?;
        self.code_tensors(&format!("{name}.hidden"), hidden)?;
        let y = self.value(name, vec![t, h], Some(hidden_grid));
        self.program.ops.push(Op::Lstm {
            name: name.to_string(),
            input: x,
            mask,
            output: y,
            grids,
        });
        Ok(y)
    }

    /// Rows of embedding table `name` (symmetric codes `[rows, d]` with a scale per row, at
    /// `bits`) as floats `[s, d]`; `s` is the ids' length, or given for positions / row 0.
    pub fn embed(
        &mut self,
        name: &str,
        table: LayerWeights,
        index: EmbedIndex,
        s: usize,
    ) -> Result<usize, EngineError> {
        let d = table.shape[1];
        if !self.tensors.contains_key(&format!("{name}.weight")) {
            self.code_tensors(name, table)?;
        }
        let y = self.value(name, vec![s, d], None);
        self.program.ops.push(Op::Embed {
            name: name.to_string(),
            index,
            output: y,
        });
        Ok(y)
    }

    /// `a + b` of floats.
    pub fn add_float(&mut self, name: &str, a: usize, b: usize) -> usize {
        let y = self.value(name, self.shape(a).to_vec(), None);
        self.program.ops.push(Op::AddFloat { a, b, output: y });
        y
    }

    /// LayerNorm over the last axis with `gamma`, `beta`.
    pub fn layer_norm(
        &mut self,
        name: &str,
        x: usize,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        eps: f32,
    ) -> Result<usize, EngineError> {
        let d = gamma.len();
        self.insert(format!("{name}.gamma"), StoredTensor::f32(vec![d], gamma))?;
        self.insert(format!("{name}.beta"), StoredTensor::f32(vec![d], beta))?;
        let y = self.value(name, self.shape(x).to_vec(), None);
        self.program.ops.push(Op::LayerNorm {
            name: name.to_string(),
            input: x,
            output: y,
            eps,
        });
        Ok(y)
    }

    /// GELU (erf form) of floats.
    pub fn gelu(&mut self, name: &str, x: usize) -> usize {
        let y = self.value(name, self.shape(x).to_vec(), None);
        self.program.ops.push(Op::Gelu {
            input: x,
            output: y,
        });
        y
    }

    /// `tanh` of floats.
    pub fn tanh(&mut self, name: &str, x: usize) -> usize {
        let y = self.value(name, self.shape(x).to_vec(), None);
        self.program.ops.push(Op::Tanh {
            input: x,
            output: y,
        });
        y
    }

    /// Row `index` of a `[s, d]` value.
    pub fn select_row(&mut self, name: &str, x: usize, index: usize) -> usize {
        let d = self.shape(x)[1];
        let y = self.value(name, vec![d], self.quant(x));
        self.program.ops.push(Op::SelectRow {
            input: x,
            output: y,
            index,
        });
        y
    }

    /// Multi-head self-attention of integer `q`, `k`, `v` under `mask` (a float input `[s]`),
    /// probabilities on `probs`, context codes on `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        name: &str,
        [q, k, v]: [usize; 3],
        mask: usize,
        heads: usize,
        probs: ActQuant,
        out: ActQuant,
    ) -> usize {
        let y = self.value(name, self.shape(q).to_vec(), Some(out));
        self.program.ops.push(Op::Attention {
            name: name.to_string(),
            q,
            k,
            v,
            mask,
            output: y,
            heads,
            probs,
        });
        y
    }

    fn code_tensors(&mut self, name: &str, w: LayerWeights) -> Result<(), EngineError> {
        let err = |what: String| EngineError::graph(format!("layer {name}"), what);
        let limit = (1i32 << (w.bits.clamp(2, 8) - 1)) - 1;
        if w.codes.iter().any(|&c| (c as i32).abs() > limit) {
            return Err(err(format!(
                "weight codes exceed ±{limit} for {} bits",
                w.bits
            )));
        }
        let weight = StoredTensor::codes(DType::for_code_bits(w.bits), w.shape.clone(), w.codes)
            .ok_or_else(|| err("weight codes do not fit their storage type".into()))?;
        let n = w.shape[0];
        if w.scales.len() != n {
            return Err(err(format!(
                "{} weight scales for {n} output channels",
                w.scales.len()
            )));
        }
        self.insert(format!("{name}.weight"), weight)?;
        self.insert(
            format!("{name}.weight_scale"),
            StoredTensor::f32(vec![n], w.scales),
        )
    }

    fn layer_tensors(
        &mut self,
        name: &str,
        x: usize,
        mut w: LayerWeights,
    ) -> Result<(), EngineError> {
        let err = |what: String| EngineError::graph(format!("layer {name}"), what);
        let bias = w.bias.take();
        let scales = w.scales.clone();
        let n = w.shape[0];
        self.code_tensors(name, w)?;
        if let Some(bias) = bias {
            let stored = match self.quant(x) {
                // Integer input: int32 at the accumulator scale s_x · s_w[c] (TFLite, PyTorch convert).
                Some(q) => {
                    let steps = accumulator_scales(q.scale, &scales);
                    let q: Option<Vec<i32>> = bias
                        .iter()
                        .zip(&steps)
                        .map(|(&b, &s)| {
                            // In f32, as the fake-quant model rounds `b / (s_x · s_w)`.
                            let v = (b / s).round_ties_even();
                            (v.abs() < (1u32 << 30) as f32).then_some(v as i32)
                        })
                        .collect();
                    let q = q.ok_or_else(|| {
                        err("a bias does not fit int32 at the accumulator scale".into())
                    })?;
                    StoredTensor::i32(vec![n], q)
                }
                None => StoredTensor::f32(vec![n], bias),
            };
            self.insert(format!("{name}.bias"), stored)?;
        }
        Ok(())
    }

    fn insert(&mut self, name: String, t: StoredTensor) -> Result<(), EngineError> {
        if self.tensors.contains_key(&name) {
            return Err(EngineError::graph(
                format!("tensor {name}"),
                "defined twice (two layers with one name)",
            ));
        }
        self.tensors.insert(name, t);
        Ok(())
    }

    /// The validated artifact, with `meta` for its reader.
    pub fn finish(self, meta: serde_json::Value) -> Result<Artifact, EngineError> {
        let artifact = Artifact {
            program: self.program,
            tensors: self.tensors,
            meta,
        };
        artifact.validate()?;
        Ok(artifact)
    }
}

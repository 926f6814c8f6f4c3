//! [`Artifact::to_onnx`]: the integer program as an ONNX graph in QDQ form (opset 13), so the
//! model trained here runs on ONNX Runtime or another ONNX engine that takes affine `uint8`
//! activations (TensorRT takes only symmetric ones, zero point 0: not a target yet).
//!
//! Every integer value of the program becomes a `uint8` tensor of its codes, made by one
//! `QuantizeLinear` with the value's scale and zero point — the program's one quantizer per
//! integer tensor, unchanged. An op reads its integer inputs through `DequantizeLinear`, computes
//! in float (`Conv`, `Gemm`/`MatMul`, `Add`, `GlobalAveragePool`) and requantizes onto its output's
//! grid: the pattern ONNX Runtime fuses into integer kernels (`QLinearConv`, `QGemm`, …).
//! Weights are codes with a per-output-channel `DequantizeLinear`; biases are `int32` at
//! the accumulator's scale `s_x·s_w[c]`, as the engine stores them. A grid narrower than
//! `0..=255` (4- and 2-bit activations) gets a `Clip` of the codes after its `QuantizeLinear`,
//! so they stay on it; a fused ReLU raises the `Clip`'s floor to the zero point.
//! Max pooling, flattening and reading one row (`Gather`) act on the codes themselves, as in the
//! engine; the LSTM is unrolled frame by frame (`lstm.rs`).
//!
//! Weights go out as [`OnnxWeights::Uint8`] by default: the same codes shifted by 128 with a zero
//! point of 128. ONNX Runtime's x86 kernels multiply `uint8 × int8` with an instruction that
//! saturates pair sums at 16 bits (`VPMADDUBSW`; its docs warn of it): with `int8` weights its
//! fused LeNet-BN was off by up to 48 codes after the first convolution on 11% of outputs; with
//! `uint8 × uint8` it equals the QDQ graph as written but for rare rounding ties. Consumers that
//! want symmetric `int8` weights with zero point 0 take [`OnnxWeights::Int8`].

use std::collections::HashMap;

use prost::Message;

use super::proto::*;
use crate::artifact::Artifact;
use crate::error::EngineError;
use crate::program::{ActQuant, Op, Program};
use crate::requant::accumulator_scales;

/// The ONNX operator set the exported graphs use (per-axis `DequantizeLinear` needs 13).
pub const ONNX_OPSET: i64 = 13;
/// The ONNX IR version that goes with [`ONNX_OPSET`].
const IR_VERSION: i64 = 7;
/// The symbolic name of every input's and output's first axis.
pub const BATCH_AXIS: &str = "batch";
/// The program ops [`Artifact::to_onnx`] writes.
pub const ONNX_OPS: &str = "Quantize, Conv2d, Linear (integer input), MaxPool2d, Flatten, Add, \
                            GlobalAvgPool, Lstm, SelectRow";

/// How weight codes are stored in the ONNX file (the values are the same); `uint8` / `int8` in
/// configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnnxWeights {
    /// `uint8` codes + 128, zero point 128: exact on every ONNX Runtime x86 kernel family.
    #[default]
    Uint8,
    /// `int8` codes, zero point 0: symmetric weights, as most integer kernels take them. ONNX
    /// Runtime's `u8×s8` kernels are exact and about 3× faster on AVX-512 VNNI / AVX-VNNI CPUs,
    /// but saturate pair sums on AVX2-only ones (`vpmaddubsw`: 11% of LeNet's first-layer codes
    /// off), so this suits files meant for VNNI machines.
    Int8,
}

impl Artifact {
    /// This artifact as an ONNX model file (QDQ form, opset 13), or an error naming the first
    /// op that has no ONNX form here (the embeddings, attention and float ops of the text models).
    pub fn to_onnx(&self, weights: OnnxWeights) -> Result<Vec<u8>, EngineError> {
        self.validate()?;
        let graph = GraphWriter::new(self, weights).write()?;
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "burn-qat".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: "Integer program exported by burn-qat: every integer tensor is the uint8 \
                         output of one QuantizeLinear, weights per channel, biases int32."
                .into(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: ONNX_OPSET,
            }],
            metadata_props: vec![StringStringEntryProto {
                key: "burn_qat.meta".into(),
                value: self.meta.to_string(),
            }],
        };
        Ok(model.encode_to_vec())
    }
}

/// A grid's constants in the graph: its scale and zero-point initializers.
#[derive(Debug, Clone)]
pub(super) struct Grid {
    /// The grid.
    pub q: ActQuant,
    /// Name of its f32 scale scalar.
    pub scale: String,
    /// Name of its u8 zero-point scalar.
    pub zero: String,
}

/// Builds the graph op by op, remembering each value's ONNX name and dequantized form.
pub(super) struct GraphWriter<'a> {
    artifact: &'a Artifact,
    weights: OnnxWeights,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The float (dequantized) name of an integer value, once made.
    dequantized: HashMap<usize, String>,
    /// Scale and zero-point initializers per integer value.
    grids: HashMap<usize, Grid>,
}

impl<'a> GraphWriter<'a> {
    fn new(artifact: &'a Artifact, weights: OnnxWeights) -> Self {
        GraphWriter {
            artifact,
            weights,
            nodes: Vec::new(),
            initializers: Vec::new(),
            dequantized: HashMap::new(),
            grids: HashMap::new(),
        }
    }

    pub(super) fn program(&self) -> &'a Program {
        &self.artifact.program
    }

    /// The ONNX name of program value `i`: unique, and readable in Netron.
    pub(super) fn name(&self, i: usize) -> String {
        format!("{}#{i}", self.program().values[i].name)
    }

    pub(super) fn grid(&self, i: usize) -> ActQuant {
        self.program().values[i]
            .quant
            .expect("checked: an integer value")
    }

    fn write(mut self) -> Result<GraphProto, EngineError> {
        let program = self.program();
        for (k, op) in program.ops.iter().enumerate() {
            self.op(op)
                .map_err(|what| EngineError::graph(format!("op {k} ({})", op.label()), what))?;
        }
        let input = program
            .inputs
            .iter()
            .map(|&i| self.value_info(self.name(i), i, ElemType::Float))
            .collect();
        let mut output = Vec::new();
        for &o in &program.outputs {
            // Integer outputs leave the graph as real values, like the engine's float outputs.
            let name = match program.values[o].quant {
                Some(_) => self.dequantize(o),
                None => self.name(o),
            };
            output.push(self.value_info(name, o, ElemType::Float));
        }
        Ok(GraphProto {
            node: self.nodes,
            name: "burn_qat_integer_program".into(),
            initializer: self.initializers,
            doc_string: String::new(),
            input,
            output,
        })
    }

    fn value_info(&self, name: String, i: usize, elem: ElemType) -> ValueInfoProto {
        let v = &self.program().values[i];
        let dim = std::iter::once(DimensionValue::DimParam(BATCH_AXIS.into()))
            .chain(v.shape.iter().map(|&d| DimensionValue::DimValue(d as i64)))
            .map(|d| Dimension { value: Some(d) })
            .collect();
        ValueInfoProto {
            name,
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: elem as i32,
                    shape: Some(TensorShapeProto { dim }),
                }),
            }),
            doc_string: v.name.clone(),
        }
    }

    fn op(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Quantize { input, output } => {
                let x = self.name(*input);
                self.requantize(x, *output, false);
            }
            Op::Conv2d {
                name,
                input,
                output,
                stride,
                padding,
                relu,
            } => {
                let x = self.dequantize(*input);
                let (w, b) = self.layer_weights(name, *input, 4, 0)?;
                let kernel = &self.artifact.tensors[&format!("{name}.weight")].shape[2..];
                let attrs = vec![
                    ints("kernel_shape", kernel.iter().map(|&k| k as i64)),
                    ints("strides", stride.iter().map(|&s| s as i64)),
                    ints("pads", padding.iter().map(|&p| p as i64)),
                ];
                let y = self.float_result(*output, "conv");
                let mut inputs = vec![x, w];
                inputs.extend(b);
                self.node("Conv", name, inputs, &y, attrs);
                self.finish(y, *output, *relu);
            }
            Op::Linear {
                name,
                input,
                output,
                relu,
            } => {
                if self.program().values[*input].quant.is_none() {
                    return Err(format!(
                        "a Linear of a float input (quantized per row at run time) has no ONNX \
                         form here; the exporter writes {ONNX_OPS}"
                    ));
                }
                let x = self.dequantize(*input);
                let y = self.float_result(*output, "linear");
                if self.program().values[*input].shape.len() == 1 {
                    // [batch, in]: one Gemm with the weight as stored, `[out, in]`, transposed.
                    let (w, b) = self.layer_weights(name, *input, 2, 0)?;
                    let mut inputs = vec![x, w];
                    inputs.extend(b);
                    self.node("Gemm", name, inputs, &y, vec![int("transB", 1)]);
                } else {
                    // [batch, …, in]: MatMul with `[in, out]`, then the bias.
                    let (w, b) = self.layer_weights(name, *input, 2, 1)?;
                    let product = match &b {
                        Some(_) => format!("{y}.matmul"),
                        None => y.clone(),
                    };
                    self.node("MatMul", name, vec![x, w], &product, vec![]);
                    if let Some(b) = b {
                        self.node("Add", name, vec![product, b], &y, vec![]);
                    }
                }
                self.finish(y, *output, *relu);
            }
            Op::MaxPool2d {
                input,
                output,
                kernel,
                stride,
            } => {
                let attrs = vec![
                    ints("kernel_shape", kernel.iter().map(|&k| k as i64)),
                    ints("strides", stride.iter().map(|&s| s as i64)),
                ];
                let (x, y) = (self.name(*input), self.name(*output));
                self.node("MaxPool", "maxpool", vec![x], &y, attrs);
            }
            Op::Flatten { input, output } => {
                let (x, y) = (self.name(*input), self.name(*output));
                self.node("Flatten", "flatten", vec![x], &y, vec![int("axis", 1)]);
            }
            Op::Add {
                name,
                a,
                b,
                output,
                relu,
            } => {
                let (a, b) = (self.dequantize(*a), self.dequantize(*b));
                let y = self.float_result(*output, "add");
                self.node("Add", name, vec![a, b], &y, vec![]);
                self.finish(y, *output, *relu);
            }
            Op::GlobalAvgPool {
                name,
                input,
                output,
            } => {
                let x = self.dequantize(*input);
                let y = self.float_result(*output, "mean");
                self.node("GlobalAveragePool", name, vec![x], &y, vec![]);
                self.finish(y, *output, false);
            }
            Op::SelectRow {
                input,
                output,
                index,
            } => {
                // Row `index` of `[batch, s, d]`: `[batch, d]`, codes or floats alike.
                let at = self.i64_scalar(format!("{}.index", self.name(*output)), *index as i64);
                let (x, y) = (self.name(*input), self.name(*output));
                self.node("Gather", &y, vec![x, at], &y, vec![int("axis", 1)]);
            }
            Op::Lstm {
                name,
                input,
                mask,
                output,
                grids,
            } => self.lstm(name, *input, *mask, *output, grids)?,
            other => {
                return Err(format!(
                    "{} has no ONNX form here; the exporter writes {ONNX_OPS}",
                    other.label()
                ));
            }
        }
        Ok(())
    }

    /// The float result of an op writing `output`: the value's own name when it is float, else
    /// a name for the real value before requantization.
    fn float_result(&self, output: usize, what: &str) -> String {
        match self.program().values[output].quant {
            Some(_) => format!("{}.{what}", self.name(output)),
            None => self.name(output),
        }
    }

    /// Requantizes float `y` onto `output`'s grid when the output is integer.
    fn finish(&mut self, y: String, output: usize, relu: bool) {
        if self.program().values[output].quant.is_some() {
            self.requantize(y, output, relu);
        }
    }

    /// The dequantized weight of layer `name` (codes as [`OnnxWeights`] says, scales along
    /// `channel_axis`; transposed to `[in, out]` when that axis is 1) and, if it has one, its
    /// dequantized int32 bias at the accumulator's scale of `input`.
    pub(super) fn layer_weights(
        &mut self,
        name: &str,
        input: usize,
        rank: usize,
        channel_axis: i64,
    ) -> Result<(String, Option<String>), String> {
        let layer =
            Program::layer(&self.artifact.tensors, name, rank, false).map_err(|e| e.to_string())?;
        let codes = layer.weight.as_codes().expect("checked: codes");
        let mut shape = layer.weight.shape.clone();
        let codes = if channel_axis == 1 {
            let [out, d_in] = shape[..] else {
                unreachable!("a Linear weight is 2-D")
            };
            shape = vec![d_in, out];
            (0..d_in * out)
                .map(|k| codes[(k % out) * d_in + k / out])
                .collect()
        } else {
            codes.to_vec()
        };
        let channels = layer.weight_scale.len();
        let (elem, shift) = match self.weights {
            OnnxWeights::Uint8 => (ElemType::Uint8, 128),
            OnnxWeights::Int8 => (ElemType::Int8, 0),
        };
        let codes_name = self.initializer(
            format!("{name}.weight"),
            elem,
            &shape,
            codes.iter().map(|&c| (c as i32 + shift) as u8).collect(),
        );
        let scale = self.f32_initializer(format!("{name}.weight_scale"), layer.weight_scale);
        let zero = self.initializer(
            format!("{name}.weight_zero_point"),
            elem,
            &[channels],
            vec![shift as u8; channels],
        );
        let w = format!("{name}.weight.dequantized");
        self.node(
            "DequantizeLinear",
            &w,
            vec![codes_name, scale, zero],
            &w,
            vec![int("axis", channel_axis)],
        );
        let Some(bias) = layer.bias else {
            return Ok((w, None));
        };
        let bias = bias
            .as_i32()
            .expect("checked: an integer layer's bias is I32");
        let scales = accumulator_scales(self.grid(input).scale, layer.weight_scale);
        let bias_codes = self.initializer(
            format!("{name}.bias"),
            ElemType::Int32,
            &[channels],
            bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
        );
        let bias_scale = self.f32_initializer(format!("{name}.bias_scale"), &scales);
        let bias_zero = self.initializer(
            format!("{name}.bias_zero_point"),
            ElemType::Int32,
            &[channels],
            vec![0; 4 * channels],
        );
        let b = format!("{name}.bias.dequantized");
        self.node(
            "DequantizeLinear",
            &b,
            vec![bias_codes, bias_scale, bias_zero],
            &b,
            vec![int("axis", 0)],
        );
        Ok((w, Some(b)))
    }

    /// The scale (f32 scalar) and zero point (u8 scalar) initializers of integer value `i`.
    fn grid_initializers(&mut self, i: usize) -> Grid {
        if let Some(grid) = self.grids.get(&i) {
            return grid.clone();
        }
        let grid = self.grid_constants(&self.name(i), self.grid(i));
        self.grids.insert(i, grid.clone());
        grid
    }

    /// Initializers of grid `q` named after `base`: its scale and zero point (scalars, as
    /// `QuantizeLinear` takes them) and, when it is narrower than a byte, its lowest and highest
    /// codes (for the `Clip` that keeps codes on it).
    pub(super) fn grid_constants(&mut self, base: &str, q: ActQuant) -> Grid {
        let scale = self.f32_scalar(format!("{base}.scale"), q.scale);
        let zero = self.initializer(
            format!("{base}.zero_point"),
            ElemType::Uint8,
            &[],
            vec![q.zero_point as u8],
        );
        Grid { q, scale, zero }
    }

    /// Float `x` quantized onto integer value `output`'s grid (see [`Self::quantize_onto`]).
    fn requantize(&mut self, x: String, output: usize, relu: bool) {
        let grid = self.grid_initializers(output);
        let y = self.name(output);
        self.quantize_onto(x, &grid, &y, relu);
    }

    /// Float `x` quantized onto `grid` as codes named `y`: `QuantizeLinear`, then, when the grid
    /// is narrower than a byte (or `relu` lifts its floor above its lowest code), a `Clip` of the
    /// codes to it — on the codes, so ONNX Runtime still fuses the op before into an integer
    /// kernel, and exactly the engine's clamp.
    pub(super) fn quantize_onto(&mut self, x: String, grid: &Grid, y: &str, relu: bool) {
        let q = grid.q;
        let inputs = |x| vec![x, grid.scale.clone(), grid.zero.clone()];
        let lo = if relu { q.zero_point } else { q.qmin };
        if lo == 0 && q.qmax == 255 {
            self.node("QuantizeLinear", y, inputs(x), y, vec![]);
            return;
        }
        let codes = format!("{y}.unclipped");
        self.node("QuantizeLinear", y, inputs(x), &codes, vec![]);
        let lo = self.initializer(
            format!("{y}.lowest_code"),
            ElemType::Uint8,
            &[],
            vec![lo as u8],
        );
        let hi = self.initializer(
            format!("{y}.highest_code"),
            ElemType::Uint8,
            &[],
            vec![q.qmax as u8],
        );
        self.node("Clip", y, vec![codes, lo, hi], y, vec![]);
    }

    /// Integer value `i` as real numbers (made once, shared by every reader).
    pub(super) fn dequantize(&mut self, i: usize) -> String {
        if let Some(name) = self.dequantized.get(&i) {
            return name.clone();
        }
        let grid = self.grid_initializers(i);
        let y = self.dequantize_codes(self.name(i), &grid);
        self.dequantized.insert(i, y.clone());
        y
    }

    /// Codes `x` on `grid` as real numbers, named `x.dequantized`.
    pub(super) fn dequantize_codes(&mut self, x: String, grid: &Grid) -> String {
        let y = format!("{x}.dequantized");
        self.node(
            "DequantizeLinear",
            &x,
            vec![x.clone(), grid.scale.clone(), grid.zero.clone()],
            &y,
            vec![],
        );
        y
    }

    /// Appends node `op` writing `output` (also its name: unique); `source` is the program layer
    /// or value it comes from, kept as the node's doc string.
    pub(super) fn node(
        &mut self,
        op: &str,
        source: &str,
        input: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.node_with_outputs(op, source, input, vec![output.into()], attribute);
    }

    /// [`Self::node`] with several outputs (`Split`); named after the first.
    pub(super) fn node_with_outputs(
        &mut self,
        op: &str,
        source: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input,
            name: output[0].clone(),
            output,
            op_type: op.into(),
            attribute,
            doc_string: source.into(),
            domain: String::new(),
        });
    }

    pub(super) fn initializer(
        &mut self,
        name: String,
        elem: ElemType,
        dims: &[usize],
        raw: Vec<u8>,
    ) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: elem as i32,
            name: name.clone(),
            raw_data: raw,
        });
        name
    }

    pub(super) fn f32_initializer(&mut self, name: String, values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, ElemType::Float, &[values.len()], raw)
    }

    /// A rank-0 int64 (an index, an axis).
    pub(super) fn i64_scalar(&mut self, name: String, value: i64) -> String {
        self.initializer(name, ElemType::Int64, &[], value.to_le_bytes().to_vec())
    }

    /// A 1-D int64 tensor (axes, split sizes).
    pub(super) fn i64_vector(&mut self, name: String, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, ElemType::Int64, &[values.len()], raw)
    }

    /// A rank-0 float (QuantizeLinear's per-tensor scale, Clip's bounds).
    pub(super) fn f32_scalar(&mut self, name: String, value: f32) -> String {
        self.initializer(name, ElemType::Float, &[], value.to_le_bytes().to_vec())
    }
}

pub(super) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: AttributeType::Int as i32,
        ..Default::default()
    }
}

fn ints(name: &str, values: impl Iterator<Item = i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values.collect(),
        r#type: AttributeType::Ints as i32,
        ..Default::default()
    }
}

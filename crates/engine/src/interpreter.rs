//! [`Interpreter`]: the reference executor — plain loops over `i32` codes in NCHW order, no SIMD,
//! no threads, written to be read. It defines what an artifact computes; the engine is tested
//! bit for bit against it, and it against the fake-quant model.

use crate::artifact::Artifact;
use crate::error::EngineError;
use crate::float_ops::{AttentionScales, layer_norm_row, softmax_row};
use crate::program::{ActQuant, EmbedIndex, Op, Program};
use crate::requant::{
    accumulator_scales, add_real, dynamic_grid, inverse, mean_real, multipliers, quantize,
};

/// A runtime tensor: integer codes or floats, batch first, then the value's shape (NCHW).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Codes of an integer value.
    Codes(Vec<i32>),
    /// Floats of a float value.
    Float(Vec<f32>),
}

impl Value {
    /// Real values: floats as they are, codes dequantized with `q`.
    pub fn to_real(&self, q: Option<&ActQuant>) -> Vec<f32> {
        match (self, q) {
            (Value::Float(v), _) => v.clone(),
            (Value::Codes(c), Some(q)) => c
                .iter()
                .map(|&c| (c - q.zero_point) as f32 * q.scale)
                .collect(),
            (Value::Codes(c), None) => c.iter().map(|&c| c as f32).collect(),
        }
    }
}

/// Checks `inputs` against the program's input shapes for `batch`.
pub(crate) fn check_inputs(
    program: &Program,
    batch: usize,
    inputs: &[&[f32]],
) -> Result<(), EngineError> {
    if inputs.len() != program.inputs.len() {
        return Err(EngineError::Input {
            name: "(all)".into(),
            what: format!(
                "{} inputs given, the program takes {}",
                inputs.len(),
                program.inputs.len()
            ),
        });
    }
    for (&i, x) in program.inputs.iter().zip(inputs) {
        let v = &program.values[i];
        let want = batch * v.shape.iter().product::<usize>();
        if x.len() != want {
            return Err(EngineError::Input {
                name: v.name.clone(),
                what: format!(
                    "{} values given, batch {batch} × {:?} needs {want}",
                    x.len(),
                    v.shape
                ),
            });
        }
    }
    Ok(())
}

/// Checks the ids fed to every `Embed` op: whole numbers below the table's row count
/// (`rows(name)`), so a lookup cannot go out of bounds.
pub(crate) fn check_ids(
    program: &Program,
    inputs: &[&[f32]],
    rows: impl Fn(&str) -> usize,
) -> Result<(), EngineError> {
    for op in &program.ops {
        let Op::Embed {
            name,
            index: EmbedIndex::Ids { input },
            ..
        } = op
        else {
            continue;
        };
        let position = program
            .inputs
            .iter()
            .position(|i| i == input)
            .expect("checked: a program input");
        let n = rows(name);
        if let Some(bad) = inputs[position]
            .iter()
            .find(|&&id| !(id >= 0.0 && id < n as f32 && id.fract() == 0.0))
        {
            return Err(EngineError::Input {
                name: program.values[*input].name.clone(),
                what: format!("id {bad} is not a row of the {n}-row table `{name}`"),
            });
        }
    }
    Ok(())
}

/// Runs an [`Artifact`]'s program the obvious way.
pub struct Interpreter<'a> {
    artifact: &'a Artifact,
}

impl<'a> Interpreter<'a> {
    /// An interpreter of a validated artifact (as [`Artifact::from_bytes`] returns it, or after
    /// [`Artifact::validate`]).
    pub fn new(artifact: &'a Artifact) -> Result<Self, EngineError> {
        artifact.validate()?;
        Ok(Interpreter { artifact })
    }

    /// The program's outputs for `batch` samples; `inputs` in the program's order, NCHW.
    pub fn run(&self, batch: usize, inputs: &[&[f32]]) -> Result<Vec<Value>, EngineError> {
        let all = self.run_all(batch, inputs)?;
        Ok(self
            .artifact
            .program
            .outputs
            .iter()
            .map(|&o| all[o].clone().expect("checked: outputs are computed"))
            .collect())
    }

    /// Every value of the program (inputs included), for tracing a difference to its op.
    pub fn run_all(
        &self,
        batch: usize,
        inputs: &[&[f32]],
    ) -> Result<Vec<Option<Value>>, EngineError> {
        let program = &self.artifact.program;
        check_inputs(program, batch, inputs)?;
        check_ids(program, inputs, |name| {
            self.artifact.tensors[&format!("{name}.weight")].shape[0]
        })?;
        let mut values: Vec<Option<Value>> = vec![None; program.values.len()];
        for (&i, x) in program.inputs.iter().zip(inputs) {
            values[i] = Some(Value::Float(x.to_vec()));
        }
        for op in &program.ops {
            let out = self.op(op, batch, &values);
            values[op.output()] = Some(out);
        }
        Ok(values)
    }

    fn op(&self, op: &Op, batch: usize, values: &[Option<Value>]) -> Value {
        let program = &self.artifact.program;
        let info = |i: usize| &program.values[i];
        let codes = |i: usize| match values[i].as_ref().expect("defined") {
            Value::Codes(c) => c.as_slice(),
            Value::Float(_) => unreachable!("checked: integer value"),
        };
        let grid = |i: usize| info(i).quant.expect("checked: integer value");
        let floats = |i: usize| match values[i].as_ref().expect("defined") {
            Value::Float(f) => f.as_slice(),
            Value::Codes(_) => unreachable!("checked: float value"),
        };
        match op {
            Op::Quantize { input, output } => {
                let Some(Value::Float(x)) = &values[*input] else {
                    unreachable!()
                };
                let q = grid(*output);
                Value::Codes(
                    x.iter()
                        .map(|&x| quantize(x, inverse(q.scale), &q, false))
                        .collect(),
                )
            }
            Op::Conv2d {
                name,
                input,
                output,
                stride,
                padding,
                relu,
            } => {
                let layer =
                    Program::layer(&self.artifact.tensors, name, 4, false).expect("checked");
                let w = layer.weight.as_codes().expect("checked");
                let [c_out, c_in, kh, kw] = layer.weight.shape[..] else {
                    unreachable!()
                };
                let [_, h, wd] = info(*input).shape[..] else {
                    unreachable!()
                };
                let [_, oh, ow] = info(*output).shape[..] else {
                    unreachable!()
                };
                let qx = grid(*input);
                let x = codes(*input);
                let bias = layer.bias.map(|b| b.as_i32().expect("checked"));
                let mut acc = vec![0i32; batch * c_out * oh * ow];
                for n in 0..batch {
                    for co in 0..c_out {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut sum = bias.map_or(0, |b| b[co]);
                                for ci in 0..c_in {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            let iy = (oy * stride[0] + ky) as isize
                                                - padding[0] as isize;
                                            let ix = (ox * stride[1] + kx) as isize
                                                - padding[1] as isize;
                                            if iy < 0
                                                || ix < 0
                                                || iy >= h as isize
                                                || ix >= wd as isize
                                            {
                                                continue; // zero padding: real 0 contributes nothing
                                            }
                                            let xv = x[((n * c_in + ci) * h + iy as usize) * wd
                                                + ix as usize]
                                                - qx.zero_point;
                                            sum += xv
                                                * w[((co * c_in + ci) * kh + ky) * kw + kx] as i32;
                                        }
                                    }
                                }
                                acc[((n * c_out + co) * oh + oy) * ow + ox] = sum;
                            }
                        }
                    }
                }
                finish(
                    acc,
                    c_out,
                    oh * ow,
                    qx.scale,
                    layer.weight_scale,
                    info(*output).quant,
                    *relu,
                )
            }
            Op::Linear {
                name,
                input,
                output,
                relu,
            } => {
                let dynamic = info(*input).quant.is_none();
                let layer =
                    Program::layer(&self.artifact.tensors, name, 2, dynamic).expect("checked");
                let w = layer.weight.as_codes().expect("checked");
                let [d_out, d_in] = layer.weight.shape[..] else {
                    unreachable!()
                };
                let rows = batch * info(*input).shape.iter().product::<usize>() / d_in;
                if dynamic {
                    let Some(Value::Float(x)) = &values[*input] else {
                        unreachable!()
                    };
                    let bias = layer.bias.map(|b| b.as_f32().expect("checked"));
                    let mut y = vec![0f32; rows * d_out];
                    for r in 0..rows {
                        let row = &x[r * d_in..(r + 1) * d_in];
                        let q = dynamic_grid(row);
                        let xq: Vec<i32> = row
                            .iter()
                            .map(|&v| quantize(v, inverse(q.scale), &q, false) - q.zero_point)
                            .collect();
                        let scales = accumulator_scales(q.scale, layer.weight_scale);
                        for o in 0..d_out {
                            let acc: i32 = (0..d_in).map(|i| xq[i] * w[o * d_in + i] as i32).sum();
                            y[r * d_out + o] = acc as f32 * scales[o] + bias.map_or(0.0, |b| b[o]);
                        }
                    }
                    return Value::Float(y);
                }
                let qx = grid(*input);
                let x = codes(*input);
                let bias = layer.bias.map(|b| b.as_i32().expect("checked"));
                let mut acc = vec![0i32; rows * d_out];
                for r in 0..rows {
                    for o in 0..d_out {
                        let mut sum = bias.map_or(0, |b| b[o]);
                        for i in 0..d_in {
                            sum += (x[r * d_in + i] - qx.zero_point) * w[o * d_in + i] as i32;
                        }
                        acc[r * d_out + o] = sum;
                    }
                }
                // Channels are the last axis: one "pixel" per row.
                let acc = transpose(&acc, rows, d_out);
                let out = finish(
                    acc,
                    d_out,
                    rows,
                    qx.scale,
                    layer.weight_scale,
                    info(*output).quant,
                    *relu,
                );
                match out {
                    Value::Codes(c) => Value::Codes(transpose(&c, d_out, rows)),
                    Value::Float(f) => Value::Float(transpose(&f, d_out, rows)),
                }
            }
            Op::MaxPool2d {
                input,
                output,
                kernel,
                stride,
            } => {
                let [c, h, w] = info(*input).shape[..] else {
                    unreachable!()
                };
                let [_, oh, ow] = info(*output).shape[..] else {
                    unreachable!()
                };
                let x = codes(*input);
                let mut y = Vec::with_capacity(batch * c * oh * ow);
                for plane in 0..batch * c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut m = i32::MIN;
                            for ky in 0..kernel[0] {
                                for kx in 0..kernel[1] {
                                    m = m.max(
                                        x[(plane * h + oy * stride[0] + ky) * w
                                            + ox * stride[1]
                                            + kx],
                                    );
                                }
                            }
                            y.push(m);
                        }
                    }
                }
                Value::Codes(y)
            }
            Op::Flatten { input, .. } => values[*input].clone().expect("defined"),
            Op::Add {
                a, b, output, relu, ..
            } => {
                let (qa, qb, qy) = (grid(*a), grid(*b), grid(*output));
                let inv = inverse(qy.scale);
                Value::Codes(
                    codes(*a)
                        .iter()
                        .zip(codes(*b))
                        .map(|(&x, &y)| quantize(add_real(x, &qa, y, &qb), inv, &qy, *relu))
                        .collect(),
                )
            }
            Op::GlobalAvgPool { input, output, .. } => {
                let [c, h, w] = info(*input).shape[..] else {
                    unreachable!()
                };
                let (qx, qy) = (grid(*input), grid(*output));
                let x = codes(*input);
                let n = h * w;
                Value::Codes(
                    (0..batch * c)
                        .map(|plane| {
                            let sum: i32 = x[plane * n..(plane + 1) * n]
                                .iter()
                                .map(|&v| v - qx.zero_point)
                                .sum();
                            quantize(mean_real(sum, n, &qx), inverse(qy.scale), &qy, false)
                        })
                        .collect(),
                )
            }
            Op::Embed {
                name,
                index,
                output,
            } => {
                let tensors = &self.artifact.tensors;
                let table = tensors[&format!("{name}.weight")]
                    .as_codes()
                    .expect("checked");
                let scales = tensors[&format!("{name}.weight_scale")]
                    .as_f32()
                    .expect("checked");
                let [s, d] = info(*output).shape[..] else {
                    unreachable!()
                };
                let mut y = Vec::with_capacity(batch * s * d);
                for b in 0..batch {
                    for t in 0..s {
                        let row = match index {
                            EmbedIndex::Ids { input } => floats(*input)[b * s + t] as usize,
                            EmbedIndex::Positions => t,
                            EmbedIndex::First => 0,
                        };
                        y.extend(
                            table[row * d..(row + 1) * d]
                                .iter()
                                .map(|&c| c as f32 * scales[row]),
                        );
                    }
                }
                Value::Float(y)
            }
            Op::AddFloat { a, b, .. } => Value::Float(
                floats(*a)
                    .iter()
                    .zip(floats(*b))
                    .map(|(x, y)| x + y)
                    .collect(),
            ),
            Op::LayerNorm {
                name, input, eps, ..
            } => {
                let tensors = &self.artifact.tensors;
                let gamma = tensors[&format!("{name}.gamma")].as_f32().expect("checked");
                let beta = tensors[&format!("{name}.beta")].as_f32().expect("checked");
                let x = floats(*input);
                let mut y = vec![0f32; x.len()];
                for (o, row) in y
                    .chunks_exact_mut(gamma.len())
                    .zip(x.chunks_exact(gamma.len()))
                {
                    layer_norm_row(row, gamma, beta, *eps, o);
                }
                Value::Float(y)
            }
            Op::Gelu { input, .. } => Value::Float(
                floats(*input)
                    .iter()
                    .map(|&x| crate::approx::gelu(x))
                    .collect(),
            ),
            Op::Tanh { input, .. } => {
                Value::Float(floats(*input).iter().map(|&x| x.tanh()).collect())
            }
            Op::Lstm {
                name,
                input,
                mask,
                output,
                grids,
            } => {
                let layer = crate::lstm::LstmLayer::read(&self.artifact.tensors, name, grids)
                    .expect("checked");
                let time = info(*input).shape[0];
                Value::Codes(crate::lstm::lstm(
                    &layer,
                    grids,
                    &grid(*input),
                    &grid(*output),
                    [batch, time],
                    codes(*input),
                    floats(*mask),
                ))
            }
            Op::SelectRow { input, index, .. } => {
                let [s, d] = info(*input).shape[..] else {
                    unreachable!()
                };
                let pick = |b: usize| b * s * d + index * d..b * s * d + (index + 1) * d;
                match values[*input].as_ref().expect("defined") {
                    Value::Codes(c) => {
                        Value::Codes((0..batch).flat_map(|b| c[pick(b)].to_vec()).collect())
                    }
                    Value::Float(f) => {
                        Value::Float((0..batch).flat_map(|b| f[pick(b)].to_vec()).collect())
                    }
                }
            }
            Op::Attention {
                q,
                k,
                v,
                mask,
                output,
                heads,
                probs,
                ..
            } => {
                let [s, hd] = info(*q).shape[..] else {
                    unreachable!()
                };
                let d = hd / heads;
                let (gq, gk, gv, go) = (grid(*q), grid(*k), grid(*v), grid(*output));
                let scales = AttentionScales::new(&gq, &gk, &gv, probs, &go, d);
                let (xq, xk, xv) = (codes(*q), codes(*k), codes(*v));
                let mask = floats(*mask);
                let mut y = vec![0i32; batch * s * hd];
                let mut scores = vec![0f32; s];
                let mut p = vec![0i32; s];
                for b in 0..batch {
                    let at = |t: usize, h: usize, e: usize| (b * s + t) * hd + h * d + e;
                    for h in 0..*heads {
                        for i in 0..s {
                            for (j, score) in scores.iter_mut().enumerate() {
                                let acc: i32 = (0..d)
                                    .map(|e| {
                                        (xq[at(i, h, e)] - gq.zero_point)
                                            * (xk[at(j, h, e)] - gk.zero_point)
                                    })
                                    .sum();
                                *score = scales.score(acc, mask[b * s + j]);
                            }
                            softmax_row(&mut scores);
                            for (pc, &x) in p.iter_mut().zip(&scores) {
                                *pc = quantize(x, scales.inv_probs, probs, false);
                            }
                            for e in 0..d {
                                let acc: i32 = (0..s)
                                    .map(|j| {
                                        (p[j] - probs.zero_point)
                                            * (xv[at(j, h, e)] - gv.zero_point)
                                    })
                                    .sum();
                                y[at(i, h, e)] = quantize(acc as f32, scales.context, &go, false);
                            }
                        }
                    }
                }
                Value::Codes(y)
            }
        }
    }
}

/// `[planes][channels][pixels]` accumulators → output codes (requantized) or floats
/// (dequantized), `planes` = batch.
fn finish(
    acc: Vec<i32>,
    channels: usize,
    pixels: usize,
    input_scale: f32,
    weight_scale: &[f32],
    out: Option<ActQuant>,
    relu: bool,
) -> Value {
    let channel = |i: usize| (i / pixels) % channels;
    match out {
        Some(q) => {
            let m = multipliers(input_scale, weight_scale, q.scale);
            Value::Codes(
                acc.iter()
                    .enumerate()
                    .map(|(i, &a)| quantize(a as f32, m[channel(i)], &q, relu))
                    .collect(),
            )
        }
        None => {
            let s = accumulator_scales(input_scale, weight_scale);
            Value::Float(
                acc.iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        let y = a as f32 * s[channel(i)];
                        if relu { y.max(0.0) } else { y }
                    })
                    .collect(),
            )
        }
    }
}

fn transpose<T: Copy>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| x[r * cols + c]))
        .collect()
}

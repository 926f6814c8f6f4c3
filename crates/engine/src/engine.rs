//! [`Engine`]: the fast executor of an [`Artifact`]. Weights are packed once; convolutions are
//! im2col + the int8 GEMM ([`crate::gemm`]) with requantization fused into the GEMM's epilogue;
//! integer `[c, h, w]` values live channels-last (NHWC) so a convolution's GEMM output is
//! already the next layer's input. Same arithmetic as the [`crate::Interpreter`], bit for bit.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::artifact::Artifact;
use crate::attention::{AttentionGrids, attention};
use crate::error::EngineError;
use crate::float_ops::{gelu_slice, layer_norm_row};
use crate::gemm::{Isa, PackedWeights, SharedMut, Tile, gemm_tiles};
use crate::interpreter::{Value, check_ids, check_inputs};
use crate::program::{ActQuant, EmbedIndex, Op, Program, ValueInfo};
use crate::requant::{
    accumulator_scales, add_real, bounds, code, dynamic_grid, inverse, mean_real, multipliers,
    quantize,
};

/// A Linear or Conv2d prepared for the GEMM.
struct GemmLayer {
    packed: PackedWeights,
    /// Static input: `bias_q[c] − z_x · Σw[c]`, added to the raw dot products.
    offset: Vec<i32>,
    /// Requantization multipliers (integer output) or accumulator scales (float output).
    scale: Vec<f32>,
    /// Dynamic input: weight scales and float bias.
    weight_scale: Vec<f32>,
    float_bias: Vec<f32>,
    out: Option<ActQuant>,
    relu: bool,
    /// Convolution window `[kh, kw]` (`[1, 1]` for Linear).
    kernel: [usize; 2],
    /// A float output that only a GELU and a quantizer read: fused into the epilogue, the
    /// layer writes the quantizer's codes directly (no float tensor in between).
    gelu_quant: Option<ActQuant>,
    /// Projections of one input merged into this GEMM (BERT's query, key and value): column
    /// ranges and the value and grid each writes. Empty for a plain layer.
    splits: Vec<Split>,
}

/// One projection's columns in a merged GEMM.
#[derive(Debug, Clone, Copy)]
struct Split {
    start: usize,
    n: usize,
    value: usize,
    grid: ActQuant,
}

/// A runtime value: codes (`u8`) or floats; `[c, h, w]` values of the engine's own making are NHWC.
#[derive(Clone)]
enum Buf {
    Codes(Vec<u8>),
    Float(Vec<f32>),
}

#[derive(Clone)]
struct Act {
    buf: Buf,
    nhwc: bool,
}

/// Buffers of finished runs, handed out again: a serving loop allocates (and page-faults in)
/// its activations once, not per batch.
#[derive(Default)]
struct Pool(std::sync::Mutex<Buffers>);

/// Free code and float buffers.
type Buffers = (Vec<Vec<u8>>, Vec<Vec<f32>>);

impl Pool {
    /// The smallest pooled buffer that holds `len` (or a new one), `len` long: filled with
    /// `fill`, or, when `fill` is `None`, holding whatever it held (for callers that overwrite
    /// every element: filling 25 MB of GELU input each run cost more than the GELU).
    fn take<T: Copy>(list: &mut Vec<Vec<T>>, len: usize, fill: Option<T>, zero: T) -> Vec<T> {
        let best = (0..list.len())
            .filter(|&i| list[i].capacity() >= len)
            .min_by_key(|&i| list[i].capacity());
        let mut v = match best {
            Some(i) => list.swap_remove(i),
            None => list.pop().unwrap_or_default(),
        };
        match fill {
            Some(fill) => {
                v.clear();
                v.resize(len, fill);
            }
            None => v.resize(len, zero),
        }
        v
    }

    /// `len` bytes, all `fill`.
    fn bytes(&self, len: usize, fill: u8) -> Vec<u8> {
        Self::take(&mut self.0.lock().expect("pool lock").0, len, Some(fill), 0)
    }

    /// `len` bytes the caller overwrites entirely.
    fn bytes_any(&self, len: usize) -> Vec<u8> {
        Self::take(&mut self.0.lock().expect("pool lock").0, len, None, 0)
    }

    /// `len` floats the caller overwrites entirely.
    fn floats(&self, len: usize) -> Vec<f32> {
        Self::take(&mut self.0.lock().expect("pool lock").1, len, None, 0.0)
    }

    fn recycle(&self, buf: Buf) {
        let mut pools = self.0.lock().expect("pool lock");
        match buf {
            Buf::Codes(v) => pools.0.push(v),
            Buf::Float(v) => pools.1.push(v),
        }
    }
}

/// Seconds per kind of op, largest first.
pub type OpTimes = Vec<(String, f64)>;

/// Runs an artifact fast; construct once, run many batches.
pub struct Engine {
    program: Program,
    layers: Vec<Option<GemmLayer>>,
    /// Per op: `Some(v)` when the op's result is value `v` (a Linear fused with the GELU and
    /// quantizer after it), `Some(usize::MAX)` for the ops fused away.
    fused: Vec<Option<usize>>,
    /// Embedding tables (codes, a scale per row, width) and LayerNorm parameters, by name.
    tables: BTreeMap<String, (Vec<i8>, Vec<f32>, usize)>,
    norms: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
    isa: Isa,
    pool: Pool,
}

impl Engine {
    /// Prepares `artifact` (validating it) for the fastest kernels this CPU has.
    pub fn new(artifact: &Artifact) -> Result<Self, EngineError> {
        Self::with_isa(artifact, Isa::best())
    }

    /// Prepares `artifact` for the kernel family `isa` (for comparisons and tests).
    pub fn with_isa(artifact: &Artifact, isa: Isa) -> Result<Self, EngineError> {
        artifact.validate()?;
        if !isa.supported() {
            return Err(EngineError::graph(
                "engine",
                format!("{} is not supported on this CPU", isa.name()),
            ));
        }
        let program = artifact.program.clone();
        let layers = program
            .ops
            .iter()
            .map(|op| prepare(&program, artifact, op))
            .collect();
        let mut layers: Vec<Option<GemmLayer>> = layers;
        let mut fused = fuse_gelu_quantize(&program, &mut layers);
        merge_projections(&program, artifact, &mut layers, &mut fused);
        let (mut tables, mut norms) = (BTreeMap::new(), BTreeMap::new());
        for op in &program.ops {
            let f32s = |name: String| artifact.tensors[&name].as_f32().expect("checked").to_vec();
            match op {
                Op::Embed { name, .. } => {
                    let table = &artifact.tensors[&format!("{name}.weight")];
                    let codes = table.as_codes().expect("checked").to_vec();
                    let width = table.shape[1];
                    tables.insert(
                        name.clone(),
                        (codes, f32s(format!("{name}.weight_scale")), width),
                    );
                }
                Op::LayerNorm { name, .. } => {
                    norms.insert(
                        name.clone(),
                        (f32s(format!("{name}.gamma")), f32s(format!("{name}.beta"))),
                    );
                }
                _ => {}
            }
        }
        Ok(Engine {
            program,
            layers,
            fused,
            tables,
            norms,
            isa,
            pool: Pool::default(),
        })
    }

    /// The kernel family in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The program's outputs for `batch` samples; `inputs` in the program's order, NCHW; outputs
    /// as the [`crate::Interpreter`] returns them (NCHW).
    pub fn run(&self, batch: usize, inputs: &[&[f32]]) -> Result<Vec<Value>, EngineError> {
        self.run_timed(batch, inputs, None)
    }

    /// [`Self::run`], also returning the seconds each kind of op took (`Linear`, `Attention`,
    /// …), largest first: where an engine's time goes.
    pub fn profile(
        &self,
        batch: usize,
        inputs: &[&[f32]],
    ) -> Result<(Vec<Value>, OpTimes), EngineError> {
        let mut times = BTreeMap::new();
        let outputs = self.run_timed(batch, inputs, Some(&mut times))?;
        let mut times: Vec<(String, f64)> = times.into_iter().collect();
        times.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((outputs, times))
    }

    fn run_timed(
        &self,
        batch: usize,
        inputs: &[&[f32]],
        mut times: Option<&mut BTreeMap<String, f64>>,
    ) -> Result<Vec<Value>, EngineError> {
        check_inputs(&self.program, batch, inputs)?;
        check_ids(&self.program, inputs, |name| {
            let (codes, _, width) = &self.tables[name];
            codes.len() / width
        })?;
        let mut values: Vec<Option<Act>> = vec![None; self.program.values.len()];
        for (&i, x) in self.program.inputs.iter().zip(inputs) {
            values[i] = Some(Act {
                buf: Buf::Float(x.to_vec()),
                nhwc: false,
            });
        }
        let mut uses = vec![0usize; values.len()];
        for op in &self.program.ops {
            for i in op.inputs() {
                uses[i] += 1;
            }
        }
        for &o in &self.program.outputs {
            uses[o] += 1;
        }
        for ((op, layer), fused) in self.program.ops.iter().zip(&self.layers).zip(&self.fused) {
            if *fused == Some(usize::MAX) {
                continue;
            }
            let start = times.is_some().then(std::time::Instant::now);
            if let Some(merged) = layer.as_ref().filter(|l| !l.splits.is_empty()) {
                let Op::Linear { input, .. } = op else {
                    unreachable!("only Linear ops merge")
                };
                let rows = batch * self.program.values[*input].shape.iter().product::<usize>()
                    / merged.packed.k;
                let Buf::Codes(x) = &values[*input].as_ref().expect("defined").buf else {
                    unreachable!("merged projections read codes")
                };
                for (value, buf) in run_merged(&self.pool, self.isa, merged, x, rows) {
                    values[value] = Some(Act { buf, nhwc: false });
                }
                if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                    *times.entry("Linear".into()).or_default() += start.elapsed().as_secs_f64();
                }
                uses[*input] -= 1;
                continue;
            }
            let out = self.op(op, layer.as_ref(), batch, &values);
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                let kind = if std::env::var_os("QAT_ENGINE_PROFILE_OPS").is_some() {
                    op.label()
                } else {
                    op.label().split(' ').next().unwrap_or_default().to_string()
                };
                *times.entry(kind).or_default() += start.elapsed().as_secs_f64();
            }
            values[fused.unwrap_or(op.output())] = Some(out);
            // Free what no later op reads.
            for i in op.inputs() {
                uses[i] -= 1;
                if uses[i] == 0
                    && let Some(act) = values[i].take()
                {
                    self.pool.recycle(act.buf);
                }
            }
        }
        let outputs = self
            .program
            .outputs
            .iter()
            .map(|&o| {
                let act = values[o].as_ref().expect("checked: outputs are computed");
                to_value(act, &self.program.values[o], batch)
            })
            .collect();
        for act in values.into_iter().flatten() {
            self.pool.recycle(act.buf);
        }
        Ok(outputs)
    }

    fn op(&self, op: &Op, layer: Option<&GemmLayer>, batch: usize, values: &[Option<Act>]) -> Act {
        let info = |i: usize| &self.program.values[i];
        let act = |i: usize| values[i].as_ref().expect("defined before use");
        let codes = |i: usize| match &act(i).buf {
            Buf::Codes(c) => c.as_slice(),
            Buf::Float(_) => unreachable!("checked: integer value"),
        };
        let grid = |i: usize| info(i).quant.expect("checked: integer value");
        let floats = |i: usize| match &act(i).buf {
            Buf::Float(f) => f.as_slice(),
            Buf::Codes(_) => unreachable!("checked: float value"),
        };
        let float_act = |y: Vec<f32>| Act {
            buf: Buf::Float(y),
            nhwc: false,
        };
        match op {
            Op::Quantize { input, output } => {
                let Buf::Float(x) = &act(*input).buf else {
                    unreachable!()
                };
                let q = grid(*output);
                let inv = inverse(q.scale);
                let shape = &info(*input).shape;
                let mut y = self.pool.bytes_any(x.len());
                let (lo, hi) = bounds(&q, false);
                fill_chunks(
                    &mut y,
                    1,
                    #[inline(always)]
                    |at, y| {
                        for (o, &v) in y.iter_mut().zip(&x[at..]) {
                            *o = code(v, inv, lo, hi, q.zero_point) as u8;
                        }
                    },
                );
                let nhwc = shape.len() == 3;
                if nhwc && !act(*input).nhwc {
                    y = to_nhwc(&y, batch, shape);
                }
                Act {
                    buf: Buf::Codes(y),
                    nhwc,
                }
            }
            Op::Conv2d {
                input,
                output,
                stride,
                padding,
                ..
            } => {
                let layer = layer.expect("prepared");
                let [c, h, w] = info(*input).shape[..] else {
                    unreachable!()
                };
                let [oc, oh, ow] = info(*output).shape[..] else {
                    unreachable!()
                };
                let [kh, kw] = layer.kernel;
                let zx = grid(*input).zero_point as u8;
                let m = batch * oh * ow;
                let x = codes(*input);
                let direct =
                    kh == 1 && kw == 1 && *stride == [1, 1] && *padding == [0; 4] && c % 4 == 0;
                let patches = (!direct).then(|| {
                    im2col(
                        &self.pool,
                        x,
                        batch,
                        [c, h, w],
                        [kh, kw],
                        [oh, ow],
                        *stride,
                        *padding,
                        zx,
                        layer.packed.kp,
                    )
                });
                let a = patches.as_deref().unwrap_or(x);
                let out = run_gemm(&self.pool, self.isa, layer, a, m, oc, None);
                if let Some(patches) = patches {
                    self.pool.recycle(Buf::Codes(patches));
                }
                Act {
                    buf: out,
                    nhwc: true,
                }
            }
            Op::Linear { input, .. } => {
                let layer = layer.expect("prepared");
                let (d_in, d_out) = (layer.packed.k, layer.packed.n);
                let rows = batch * info(*input).shape.iter().product::<usize>() / d_in;
                // Channels-last values are reordered first; others are read in place.
                let reordered;
                let x = match (act(*input).nhwc, info(*input).shape.len()) {
                    (true, 3) => {
                        reordered = row_major(act(*input), info(*input), batch);
                        &reordered
                    }
                    _ => &act(*input).buf,
                };
                match x {
                    Buf::Codes(x) => {
                        let kp = layer.packed.kp;
                        let padded;
                        let a = if d_in == kp {
                            x.as_slice()
                        } else {
                            padded = pad_rows(x, rows, d_in, kp);
                            &padded
                        };
                        Act {
                            buf: run_gemm(&self.pool, self.isa, layer, a, rows, d_out, None),
                            nhwc: false,
                        }
                    }
                    Buf::Float(x) => {
                        let kp = layer.packed.kp;
                        let mut a = vec![0u8; rows * kp];
                        let grids: Vec<ActQuant> = a
                            .par_chunks_mut(kp)
                            .zip(x.par_chunks(d_in))
                            .map(|(dst, row)| {
                                let q = dynamic_grid(row);
                                let inv = inverse(q.scale);
                                for (d, &v) in dst.iter_mut().zip(row) {
                                    *d = quantize(v, inv, &q, false) as u8;
                                }
                                q
                            })
                            .collect();
                        Act {
                            buf: run_gemm(
                                &self.pool,
                                self.isa,
                                layer,
                                &a,
                                rows,
                                d_out,
                                Some(&grids),
                            ),
                            nhwc: false,
                        }
                    }
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
                let mut y = self.pool.bytes(batch * oh * ow * c, 0);
                y.par_chunks_mut(ow * c).enumerate().for_each(|(row, out)| {
                    let (n, oy) = (row / oh, row % oh);
                    for ox in 0..ow {
                        let o = &mut out[ox * c..(ox + 1) * c];
                        o.fill(0);
                        for ky in 0..kernel[0] {
                            for kx in 0..kernel[1] {
                                let (iy, ix) = (oy * stride[0] + ky, ox * stride[1] + kx);
                                let p = &x[((n * h + iy) * w + ix) * c..][..c];
                                for (o, &v) in o.iter_mut().zip(p) {
                                    *o = (*o).max(v);
                                }
                            }
                        }
                    }
                });
                Act {
                    buf: Buf::Codes(y),
                    nhwc: true,
                }
            }
            Op::Flatten { input, .. } => Act {
                buf: row_major(act(*input), info(*input), batch),
                nhwc: false,
            },
            Op::Add {
                a, b, output, relu, ..
            } => {
                let (qa, qb, qy) = (grid(*a), grid(*b), grid(*output));
                let inv = inverse(qy.scale);
                let (xa, xb) = (codes(*a), codes(*b));
                let y: Vec<u8> = xa
                    .par_iter()
                    .zip(xb)
                    .map(|(&x, &y)| {
                        quantize(add_real(x as i32, &qa, y as i32, &qb), inv, &qy, *relu) as u8
                    })
                    .collect();
                Act {
                    buf: Buf::Codes(y),
                    nhwc: act(*a).nhwc,
                }
            }
            Op::Embed {
                name,
                index,
                output,
            } => {
                let (table, scales, width) = &self.tables[name];
                let s = info(*output).shape[0];
                let mut y = self.pool.floats(batch * s * width);
                y.par_chunks_mut(*width).enumerate().for_each(|(r, out)| {
                    let (b, t) = (r / s, r % s);
                    let row = match index {
                        EmbedIndex::Ids { input } => floats(*input)[b * s + t] as usize,
                        EmbedIndex::Positions => t,
                        EmbedIndex::First => 0,
                    };
                    for (o, &c) in out.iter_mut().zip(&table[row * width..(row + 1) * width]) {
                        *o = c as f32 * scales[row];
                    }
                });
                float_act(y)
            }
            Op::AddFloat { a, b, .. } => {
                let (x, z) = (floats(*a), floats(*b));
                let mut y = self.pool.floats(x.len());
                fill_chunks(
                    &mut y,
                    1,
                    #[inline(always)]
                    |at, out| {
                        for ((o, &p), &q) in out.iter_mut().zip(&x[at..]).zip(&z[at..]) {
                            *o = p + q;
                        }
                    },
                );
                float_act(y)
            }
            Op::LayerNorm {
                name, input, eps, ..
            } => {
                let (gamma, beta) = &self.norms[name];
                let x = floats(*input);
                let mut y = self.pool.floats(x.len());
                let d = gamma.len();
                fill_chunks(
                    &mut y,
                    d,
                    #[inline(always)]
                    |at, out| {
                        for (o, row) in out.chunks_exact_mut(d).zip(x[at..].chunks_exact(d)) {
                            layer_norm_row(row, gamma, beta, *eps, o);
                        }
                    },
                );
                float_act(y)
            }
            Op::Gelu { input, .. } => {
                let x = floats(*input);
                let mut y = self.pool.floats(x.len());
                fill_chunks(
                    &mut y,
                    1,
                    #[inline(always)]
                    |at, out| gelu_slice(&x[at..at + out.len()], out),
                );
                float_act(y)
            }
            Op::Tanh { input, .. } => {
                let y = floats(*input).iter().map(|v| v.tanh()).collect();
                float_act(y)
            }
            Op::SelectRow { input, index, .. } => {
                let [s, d] = info(*input).shape[..] else {
                    unreachable!()
                };
                let rows = |b: usize| b * s * d + index * d..b * s * d + (index + 1) * d;
                let buf = match &act(*input).buf {
                    Buf::Codes(c) => {
                        Buf::Codes((0..batch).flat_map(|b| c[rows(b)].to_vec()).collect())
                    }
                    Buf::Float(f) => {
                        Buf::Float((0..batch).flat_map(|b| f[rows(b)].to_vec()).collect())
                    }
                };
                Act { buf, nhwc: false }
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
                let grids = AttentionGrids {
                    q: grid(*q),
                    k: grid(*k),
                    v: grid(*v),
                    probs: *probs,
                    out: grid(*output),
                };
                let mut y = self.pool.bytes_any(batch * s * hd);
                attention(
                    self.isa,
                    [batch, s, *heads, hd / heads],
                    (codes(*q), codes(*k), codes(*v)),
                    floats(*mask),
                    &grids,
                    &mut y,
                );
                Act {
                    buf: Buf::Codes(y),
                    nhwc: false,
                }
            }
            Op::GlobalAvgPool { input, output, .. } => {
                let [c, h, w] = info(*input).shape[..] else {
                    unreachable!()
                };
                let (qx, qy) = (grid(*input), grid(*output));
                let inv = inverse(qy.scale);
                let x = codes(*input);
                let n = h * w;
                let mut y = vec![0u8; batch * c];
                for b in 0..batch {
                    let mut sums = vec![0i32; c];
                    for p in x[b * n * c..(b + 1) * n * c].chunks_exact(c) {
                        for (s, &v) in sums.iter_mut().zip(p) {
                            *s += v as i32 - qx.zero_point;
                        }
                    }
                    for (o, &s) in y[b * c..(b + 1) * c].iter_mut().zip(&sums) {
                        *o = quantize(mean_real(s, n, &qx), inv, &qy, false) as u8;
                    }
                }
                Act {
                    buf: Buf::Codes(y),
                    nhwc: true,
                }
            }
        }
    }
}

/// Packs a layer's weights (convolutions reordered to `(kh, kw, c)` to match NHWC patches) and
/// folds the input's zero point and the bias into one integer offset.
fn prepare(program: &Program, artifact: &Artifact, op: &Op) -> Option<GemmLayer> {
    let (name, input, output, relu, rank) = match op {
        Op::Conv2d {
            name,
            input,
            output,
            relu,
            ..
        } => (name, *input, *output, *relu, 4),
        Op::Linear {
            name,
            input,
            output,
            relu,
        } => (name, *input, *output, *relu, 2),
        _ => return None,
    };
    let qx = program.values[input].quant;
    let layer = Program::layer(&artifact.tensors, name, rank, qx.is_none()).expect("checked");
    let codes = layer.weight.as_codes().expect("checked");
    let shape = &layer.weight.shape;
    let n = shape[0];
    let k = codes.len() / n;
    let w: Vec<i8> = if rank == 4 {
        let (c, kh, kw) = (shape[1], shape[2], shape[3]);
        let mut w = vec![0i8; codes.len()];
        for o in 0..n {
            for ci in 0..c {
                for y in 0..kh {
                    for x in 0..kw {
                        w[o * k + (y * kw + x) * c + ci] = codes[((o * c + ci) * kh + y) * kw + x];
                    }
                }
            }
        }
        w
    } else {
        codes.to_vec()
    };
    let kernel = if rank == 4 {
        [shape[2], shape[3]]
    } else {
        [1, 1]
    };
    let packed = PackedWeights::pack(&w, n, k);
    let out = program.values[output].quant;
    let (offset, scale, float_bias) = match qx {
        Some(qx) => {
            let bias = layer
                .bias
                .map(|b| b.as_i32().expect("checked").to_vec())
                .unwrap_or(vec![0; n]);
            let offset = bias
                .iter()
                .zip(&packed.col_sums)
                .map(|(b, s)| b - qx.zero_point * s)
                .collect();
            let scale = match out {
                Some(q) => multipliers(qx.scale, layer.weight_scale, q.scale),
                None => accumulator_scales(qx.scale, layer.weight_scale),
            };
            (offset, scale, Vec::new())
        }
        None => {
            let bias = layer
                .bias
                .map(|b| b.as_f32().expect("checked").to_vec())
                .unwrap_or(vec![0.0; n]);
            (Vec::new(), Vec::new(), bias)
        }
    };
    Some(GemmLayer {
        packed,
        offset,
        scale,
        weight_scale: layer.weight_scale.to_vec(),
        float_bias,
        out,
        relu,
        kernel,
        gelu_quant: None,
        splits: Vec::new(),
    })
}

/// Runs the layer's GEMM with its epilogue: codes (static, integer output), floats (static,
/// dequantized) or floats from dynamically quantized rows (`grids`, one per row).
fn run_gemm(
    pool: &Pool,
    isa: Isa,
    layer: &GemmLayer,
    a: &[u8],
    m: usize,
    n: usize,
    grids: Option<&[ActQuant]>,
) -> Buf {
    /// The output rows of `tile` in `out` (`m × n`, row-major), written through `ptr`.
    ///
    /// # Safety
    /// `ptr` points at `m × n` elements, and each tile is handed out once.
    #[inline(always)]
    unsafe fn rows<'a, T>(ptr: SharedMut<T>, n: usize, tile: &Tile, r: usize) -> &'a mut [T] {
        unsafe {
            std::slice::from_raw_parts_mut(
                ptr.get().add((tile.row0 + r) * n + tile.col0),
                tile.width,
            )
        }
    }
    let cols = |tile: &Tile| tile.col0..tile.col0 + tile.width;
    match (grids, layer.out) {
        (None, Some(q)) => {
            let (lo, hi) = bounds(&q, layer.relu);
            let mut y = pool.bytes_any(m * n);
            let ptr = SharedMut(y.as_mut_ptr());
            gemm_tiles(
                isa,
                a,
                m,
                &layer.packed,
                true,
                #[inline(always)]
                |tile| {
                    let (offset, scale) = (&layer.offset[cols(tile)], &layer.scale[cols(tile)]);
                    for r in 0..tile.rows {
                        // SAFETY: each tile is written by exactly one task.
                        let out = unsafe { rows(ptr, n, tile, r) };
                        for (((o, &d), &b), &s) in
                            out.iter_mut().zip(tile.row(r)).zip(offset).zip(scale)
                        {
                            *o = code((d + b) as f32, s, lo, hi, q.zero_point) as u8;
                        }
                    }
                },
            );
            Buf::Codes(y)
        }
        (None, None) if layer.gelu_quant.is_some() => {
            let q = layer.gelu_quant.expect("checked");
            let (lo, hi) = bounds(&q, false);
            let inv = inverse(q.scale);
            let mut y = pool.bytes_any(m * n);
            let ptr = SharedMut(y.as_mut_ptr());
            gemm_tiles(
                isa,
                a,
                m,
                &layer.packed,
                true,
                #[inline(always)]
                |tile| {
                    let (offset, scale) = (&layer.offset[cols(tile)], &layer.scale[cols(tile)]);
                    // The GELU's polynomial is too large for LLVM to inline this epilogue into the
                    // GEMM task: give it its own wide-vector context.
                    crate::simd::wide!({
                        for r in 0..tile.rows {
                            // SAFETY: as above.
                            let out = unsafe { rows(ptr, n, tile, r) };
                            for (((o, &d), &b), &s) in
                                out.iter_mut().zip(tile.row(r)).zip(offset).zip(scale)
                            {
                                // What the unfused ops compute: the dequantized float, GELU, quantize.
                                let v = crate::approx::gelu((d + b) as f32 * s);
                                *o = code(v, inv, lo, hi, q.zero_point) as u8;
                            }
                        }
                    },)
                },
            );
            Buf::Codes(y)
        }
        (None, None) => {
            let mut y = pool.floats(m * n);
            let ptr = SharedMut(y.as_mut_ptr());
            gemm_tiles(
                isa,
                a,
                m,
                &layer.packed,
                true,
                #[inline(always)]
                |tile| {
                    let (offset, scale) = (&layer.offset[cols(tile)], &layer.scale[cols(tile)]);
                    for r in 0..tile.rows {
                        // SAFETY: as above.
                        let out = unsafe { rows(ptr, n, tile, r) };
                        for (((o, &d), &b), &s) in
                            out.iter_mut().zip(tile.row(r)).zip(offset).zip(scale)
                        {
                            let v = (d + b) as f32 * s;
                            *o = if layer.relu { v.max(0.0) } else { v };
                        }
                    }
                },
            );
            Buf::Float(y)
        }
        (Some(grids), _) => {
            let mut y = pool.floats(m * n);
            let ptr = SharedMut(y.as_mut_ptr());
            gemm_tiles(
                isa,
                a,
                m,
                &layer.packed,
                true,
                #[inline(always)]
                |tile| {
                    let c = cols(tile);
                    let (sums, ws, fb) = (
                        &layer.packed.col_sums[c.clone()],
                        &layer.weight_scale[c.clone()],
                        &layer.float_bias[c],
                    );
                    for r in 0..tile.rows {
                        let q = &grids[tile.row0 + r];
                        // SAFETY: as above.
                        let out = unsafe { rows(ptr, n, tile, r) };
                        for ((((o, &d), &cs), &w), &b) in
                            out.iter_mut().zip(tile.row(r)).zip(sums).zip(ws).zip(fb)
                        {
                            let acc = d - q.zero_point * cs;
                            *o = acc as f32 * (q.scale * w) + b;
                        }
                    }
                },
            );
            Buf::Float(y)
        }
    }
}

/// NHWC patches `[batch·oh·ow][kp]` in `(ky, kx, c)` order; outside the image, the zero point.
#[allow(clippy::too_many_arguments)]
fn im2col(
    pool: &Pool,
    x: &[u8],
    batch: usize,
    [c, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    [oh, ow]: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
    zero_point: u8,
    kp: usize,
) -> Vec<u8> {
    let mut a = pool.bytes(batch * oh * ow * kp, zero_point);
    a.par_chunks_mut(ow * kp)
        .enumerate()
        .for_each(|(row, out)| {
            let (n, oy) = (row / oh, row % oh);
            for ox in 0..ow {
                let patch = &mut out[ox * kp..(ox + 1) * kp];
                for ky in 0..kh {
                    let iy = (oy * stride[0] + ky) as isize - padding[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * stride[1] + kx) as isize - padding[1] as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let src = &x[((n * h + iy as usize) * w + ix as usize) * c..][..c];
                        patch[(ky * kw + kx) * c..][..c].copy_from_slice(src);
                    }
                }
            }
        });
    a
}

/// `rows × k` codes with each row padded to `kp` (borrowed through a copy only when needed).
fn pad_rows(x: &[u8], rows: usize, k: usize, kp: usize) -> Vec<u8> {
    if k == kp {
        return x.to_vec();
    }
    let mut a = vec![0u8; rows * kp];
    for (dst, src) in a.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    a
}

/// The value's data in the program's row-major (NCHW) order.
fn row_major(act: &Act, info: &ValueInfo, batch: usize) -> Buf {
    if !act.nhwc || info.shape.len() != 3 {
        return act.buf.clone();
    }
    match &act.buf {
        Buf::Codes(c) => Buf::Codes(from_nhwc(c, batch, &info.shape)),
        Buf::Float(f) => Buf::Float(from_nhwc(f, batch, &info.shape)),
    }
}

fn to_nhwc<T: Copy + Default>(x: &[T], batch: usize, shape: &[usize]) -> Vec<T> {
    let [c, h, w] = shape[..] else { unreachable!() };
    let mut y = vec![T::default(); x.len()];
    for n in 0..batch {
        for ci in 0..c {
            for p in 0..h * w {
                y[(n * h * w + p) * c + ci] = x[(n * c + ci) * h * w + p];
            }
        }
    }
    y
}

fn from_nhwc<T: Copy + Default>(x: &[T], batch: usize, shape: &[usize]) -> Vec<T> {
    let [c, h, w] = shape[..] else { unreachable!() };
    let mut y = vec![T::default(); x.len()];
    for n in 0..batch {
        for ci in 0..c {
            for p in 0..h * w {
                y[(n * c + ci) * h * w + p] = x[(n * h * w + p) * c + ci];
            }
        }
    }
    y
}

fn to_value(act: &Act, info: &ValueInfo, batch: usize) -> Value {
    match row_major(act, info, batch) {
        Buf::Codes(c) => Value::Codes(c.into_iter().map(i32::from).collect()),
        Buf::Float(f) => Value::Float(f),
    }
}

/// Marks `Linear (float out) → Gelu → Quantize` chains whose intermediate floats nothing else
/// reads, so the Linear writes the codes itself; returns each op's fusion mark.
fn fuse_gelu_quantize(program: &Program, layers: &mut [Option<GemmLayer>]) -> Vec<Option<usize>> {
    let mut readers = vec![0usize; program.values.len()];
    for op in &program.ops {
        for i in op.inputs() {
            readers[i] += 1;
        }
    }
    for &o in &program.outputs {
        readers[o] += 2;
    }
    let mut fused = vec![None; program.ops.len()];
    for i in 0..program.ops.len().saturating_sub(2) {
        let (
            Op::Linear {
                output: v1,
                relu: false,
                ..
            },
            Op::Gelu {
                input: g_in,
                output: v2,
            },
            Op::Quantize {
                input: q_in,
                output: v3,
            },
        ) = (&program.ops[i], &program.ops[i + 1], &program.ops[i + 2])
        else {
            continue;
        };
        let chain = g_in == v1 && q_in == v2 && readers[*v1] == 1 && readers[*v2] == 1;
        let float_out = program.values[*v1].quant.is_none();
        let static_in = layers[i].as_ref().is_some_and(|l| !l.offset.is_empty());
        if chain && float_out && static_in {
            let layer = layers[i].as_mut().expect("a Linear is prepared");
            layer.gelu_quant = program.values[*v3].quant;
            fused[i] = Some(*v3);
            fused[i + 1] = Some(usize::MAX);
            fused[i + 2] = Some(usize::MAX);
        }
    }
    fused
}

/// Fills `out` chunk by chunk with `f(offset, chunk)` — chunks of about 2¹⁴ elements, whole
/// multiples of `unit` (a row) — on rayon's threads when `out` is large, on this thread when
/// waking the others would cost more than the work; each chunk compiled for the widest vectors.
fn fill_chunks<T: Send>(out: &mut [T], unit: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = (1usize << 14).div_ceil(unit).max(1) * unit;
    if out.len() >= 1 << 17 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, o)| crate::simd::wide!(f(c * chunk, o)));
    } else {
        crate::simd::wide!({
            for (c, o) in out.chunks_mut(chunk).enumerate() {
                f(c * chunk, o);
            }
        },);
    }
}

/// Merges runs of `Linear` ops that read the same integer input into integer outputs (BERT's
/// query, key and value) into one GEMM: one pass over the input, one task split, and the wider
/// product keeps the kernel busy at batch 1. The merged ops are marked as skipped.
fn merge_projections(
    program: &Program,
    artifact: &Artifact,
    layers: &mut [Option<GemmLayer>],
    fused: &mut [Option<usize>],
) {
    let mut i = 0;
    while i < program.ops.len() {
        let mergeable = |j: usize| match (&program.ops[j], &layers[j], fused[j]) {
            (
                Op::Linear {
                    input,
                    output,
                    relu: false,
                    ..
                },
                Some(l),
                None,
            ) if program.values[*input].quant.is_some()
                && program.values[*output].quant.is_some()
                && program.values[*input].shape.len() == 2 =>
            {
                Some((*input, *output, l.packed.k))
            }
            _ => None,
        };
        let Some((input, _, k)) = mergeable(i) else {
            i += 1;
            continue;
        };
        let mut group = vec![i];
        while let Some(j) = Some(i + group.len()).filter(|&j| j < program.ops.len())
            && let Some((inp, _, kk)) = mergeable(j)
            && inp == input
            && kk == k
        {
            group.push(j);
        }
        if group.len() < 2 {
            i += 1;
            continue;
        }
        let mut codes = Vec::new();
        let (mut offset, mut scale, mut splits) = (Vec::new(), Vec::new(), Vec::new());
        for &j in &group {
            let Op::Linear { name, output, .. } = &program.ops[j] else {
                unreachable!()
            };
            let layer = layers[j].as_ref().expect("prepared");
            let weight = artifact.tensors[&format!("{name}.weight")]
                .as_codes()
                .expect("checked");
            splits.push(Split {
                start: offset.len(),
                n: layer.packed.n,
                value: *output,
                grid: program.values[*output].quant.expect("integer output"),
            });
            codes.extend_from_slice(weight);
            offset.extend_from_slice(&layer.offset);
            scale.extend_from_slice(&layer.scale);
        }
        let n = offset.len();
        let first = layers[i].take().expect("prepared");
        layers[i] = Some(GemmLayer {
            packed: PackedWeights::pack(&codes, n, k),
            offset,
            scale,
            splits,
            ..first
        });
        for &j in &group[1..] {
            layers[j] = None;
            fused[j] = Some(usize::MAX);
        }
        i += group.len();
    }
}

/// A merged GEMM's outputs: each projection's codes `[rows, n]`, with the value it is.
fn run_merged(
    pool: &Pool,
    isa: Isa,
    layer: &GemmLayer,
    x: &[u8],
    rows: usize,
) -> Vec<(usize, Buf)> {
    let mut outs: Vec<Vec<u8>> = layer
        .splits
        .iter()
        .map(|s| pool.bytes_any(rows * s.n))
        .collect();
    let ptrs: Vec<SharedMut<u8>> = outs.iter_mut().map(|o| SharedMut(o.as_mut_ptr())).collect();
    let padded;
    let a = if layer.packed.k == layer.packed.kp {
        x
    } else {
        padded = pad_rows(x, rows, layer.packed.k, layer.packed.kp);
        &padded
    };
    gemm_tiles(
        isa,
        a,
        rows,
        &layer.packed,
        true,
        #[inline(always)]
        |tile| {
            // Columns of the tile, split by projection (a tile may straddle two).
            let mut c = tile.col0;
            while c < tile.col0 + tile.width {
                let (s, split) = layer
                    .splits
                    .iter()
                    .enumerate()
                    .find(|(_, s)| c < s.start + s.n)
                    .expect("columns belong to a projection");
                let end = (split.start + split.n).min(tile.col0 + tile.width);
                let (lo, hi) = bounds(&split.grid, false);
                let (offset, scale) = (&layer.offset[c..end], &layer.scale[c..end]);
                for r in 0..tile.rows {
                    let dots = &tile.row(r)[c - tile.col0..end - tile.col0];
                    // SAFETY: each (row, column) of each projection is written by one tile.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut(
                            ptrs[s]
                                .get()
                                .add((tile.row0 + r) * split.n + (c - split.start)),
                            end - c,
                        )
                    };
                    for (((o, &d), &b), &m) in out.iter_mut().zip(dots).zip(offset).zip(scale) {
                        *o = code((d + b) as f32, m, lo, hi, split.grid.zero_point) as u8;
                    }
                }
                c = end;
            }
        },
    );
    layer
        .splits
        .iter()
        .zip(outs)
        .map(|(s, o)| (s.value, Buf::Codes(o)))
        .collect()
}

//! [`Engine`]: the fast executor of an [`Artifact`]. Weights are packed once; convolutions are
//! im2col + the int8 GEMM ([`crate::gemm`]) with requantization fused into the GEMM's epilogue;
//! integer `[c, h, w]` values live channels-last (NHWC) so a convolution's GEMM output is
//! already the next layer's input. Same arithmetic as the [`crate::Interpreter`], bit for bit.
//!
//! Files: `buffers` (runtime values and their pool), `gemm_layer` (a layer prepared for the
//! GEMM, and its run), `merge` (ops run as one: GELU with its quantizer, merged projections),
//! `im2col` (a convolution's patches, written or read in place), `layout` (values between
//! channels-last and row-major), `chunks` (parallel fills),
//! `lstm_gemm` (the LSTM layer on the GEMM, sequences in lockstep); this
//! file holds the [`Engine`] and its op-by-op run.

mod buffers;
mod chunks;
mod gemm_layer;
mod im2col;
mod layout;
mod lstm_gemm;
mod merge;

use buffers::{Act, Buf, Pool};
use chunks::fill_chunks;
use gemm_layer::{GemmLayer, Rows, gemm_into, output_buf, pad_rows, prepare, run_gemm};
use im2col::Im2col;
use layout::{row_major, to_nhwc, to_value};
use lstm_gemm::GemmLstm;
use merge::{fuse_gelu_quantize, merge_projections, run_merged};

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::artifact::Artifact;
use crate::attention::{AttentionGrids, attention};
use crate::error::EngineError;
use crate::float_ops::{gelu_slice, layer_norm_row};
use crate::gemm::{Isa, PARALLEL_MIN_MACS, RowBlocks, RowsOfA};
use crate::interpreter::{Value, check_ids, check_inputs};
use crate::lstm::LstmLayer;
use crate::program::{ActQuant, EmbedIndex, Op, Program};
use crate::requant::{add_real, bounds, code, dynamic_grid, inverse, mean_real, quantize};

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
    /// LSTM layers (packed weights, lookup tables), by name.
    lstms: BTreeMap<String, GemmLstm>,
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
        let (mut tables, mut norms, mut lstms) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
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
                Op::Lstm { name, grids, .. } => {
                    let layer = LstmLayer::read(&artifact.tensors, name, grids).expect("checked");
                    lstms.insert(name.clone(), GemmLstm::new(layer));
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
            lstms,
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
                let out = if direct {
                    run_gemm(&self.pool, self.isa, layer, x, m, oc, None)
                } else {
                    let patches = Im2col {
                        input: [c, h, w],
                        kernel: [kh, kw],
                        output: [oh, ow],
                        stride: *stride,
                        padding: *padding,
                        kp: layer.packed.kp,
                    };
                    // AMX loads 32 rows of one stride: patches written; the others read in place.
                    let on_amx = self.isa.for_shape(m, oc, layer.packed.kp) == Isa::Amx;
                    let conv = if on_amx {
                        conv_in_blocks
                    } else {
                        conv_in_place
                    };
                    conv(&self.pool, self.isa, layer, &patches, x, [m, oc], zx)
                };
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
                // Output rows in chunks, on one thread when small (a rayon task per row cost
                // more than LeNet's pools themselves at batch 1).
                let row_len = ow * c;
                fill_chunks(
                    &mut y,
                    row_len,
                    #[inline(always)]
                    |at, rows| {
                        for (r, out) in rows.chunks_exact_mut(row_len).enumerate() {
                            let row = at / row_len + r;
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
                        }
                    },
                );
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
                // Chunks of a pooled buffer in plain loops that vectorise (a rayon task per
                // element took a quarter of ResNet-20's time at batch 64).
                let mut y = self.pool.bytes_any(xa.len());
                fill_chunks(
                    &mut y,
                    1,
                    #[inline(always)]
                    |at, out| {
                        for ((o, &x), &z) in out.iter_mut().zip(&xa[at..]).zip(&xb[at..]) {
                            let real = add_real(x as i32, &qa, z as i32, &qb);
                            *o = quantize(real, inv, &qy, *relu) as u8;
                        }
                    },
                );
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
            Op::Lstm {
                name,
                input,
                mask,
                output,
                grids,
            } => {
                let time = info(*input).shape[0];
                let h = self.lstms[name].run(
                    self.isa,
                    grids,
                    &grid(*input),
                    &grid(*output),
                    [batch, time],
                    codes(*input),
                    floats(*mask),
                );
                Act {
                    buf: Buf::Codes(h),
                    nhwc: false,
                }
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

/// Bytes of patches a block holds: about 32 KiB, so that a block stays in the core's cache from
/// its im2col to its GEMM (more where AMX needs larger blocks: [`Isa::row_blocks`]).
const BLOCK_BYTES: usize = 32 << 10;

/// A thread's scratch for [`conv_in_blocks`], kept across blocks, layers and runs: the block's
/// patches, and the input rows they are copied from.
#[derive(Default)]
struct BlockScratch {
    patches: Vec<u8>,
    /// `[kp, stride]` of the patches last written: rows laid wider than `kp` must be zero
    /// between `kp` and `stride`, which im2col never writes, so they are zeroed only when such a
    /// layout replaces another.
    layout: [usize; 2],
    staged: Vec<u8>,
}

impl BlockScratch {
    /// `len` bytes of patches laid out as `layout`, zero past `kp` in every row, and the staging
    /// rows.
    fn split(&mut self, len: usize, layout: [usize; 2]) -> (&mut [u8], &mut Vec<u8>) {
        let [kp, stride] = layout;
        if self.layout != layout && stride > kp {
            self.patches.fill(0);
        }
        self.layout = layout;
        if self.patches.len() < len {
            self.patches.resize(len, 0);
        }
        (&mut self.patches[..len], &mut self.staged)
    }
}

thread_local! {
    static BLOCK_SCRATCH: std::cell::RefCell<BlockScratch> = std::cell::RefCell::default();
}

/// A convolution's GEMM a block of output pixels at a time, each block patched into a small
/// scratch buffer and multiplied while it is in cache — instead of writing the whole patch matrix
/// (7 MB for a 16-channel 3 × 3 layer of ResNet-20 at batch 64) and reading it back. Blocks run
/// on rayon's threads when the product is large, each writing its own output rows. For AMX,
/// whose tiles load rows of one stride; the vector families read patches in place
/// ([`conv_in_place`]).
fn conv_in_blocks(
    pool: &Pool,
    isa: Isa,
    layer: &GemmLayer,
    patches: &Im2col,
    x: &[u8],
    [m, n]: [usize; 2],
    zero_point: u8,
) -> Buf {
    let kp = layer.packed.kp;
    let RowBlocks {
        rows: block,
        stride,
    } = isa.row_blocks([m, n, kp], BLOCK_BYTES);
    // im2col lays each patch at the start of a row `stride` codes long.
    let patches = Im2col {
        kp: stride,
        ..*patches
    };
    let mut y = output_buf(pool, layer, false, m * n);
    let out = Rows::of(&mut y);
    let run = |b: usize| {
        BLOCK_SCRATCH.with_borrow_mut(|scratch| {
            let first = b * block;
            let rows = block.min(m - first);
            let (a, staged) = scratch.split(rows * stride, [kp, stride]);
            patches.fill_rows(x, first, zero_point, a, staged);
            let a = RowsOfA::Strided { codes: a, stride };
            gemm_into(isa, layer, a, [rows, n], None, out, first, false);
        })
    };
    for_blocks(m.div_ceil(block), m * n * kp, run);
    y
}

/// `run(b)` for every block `b` of a convolution's `macs` multiply-adds: on rayon's threads when
/// there are several and the product is large enough to pay for waking them.
fn for_blocks(blocks: usize, macs: usize, run: impl Fn(usize) + Sync + Send) {
    if blocks > 1 && macs >= PARALLEL_MIN_MACS {
        (0..blocks).into_par_iter().for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
}

/// Output pixels per block of [`conv_in_place`]: enough for many kernel tiles per block, few
/// enough that two threads share a batch-1 layer's blocks.
const IN_PLACE_BLOCK: usize = 256;

/// A convolution whose patches the GEMM reads where they lie in its padded input (implicit
/// GEMM; every convolution but AMX's): the input is copied once with its padding written in
/// (not at all where it has none and no kernel row is read past its window) instead of
/// `kh · kw` times into patches. Blocks of output pixels run on rayon's threads when the product
/// is large, each writing its own output rows.
fn conv_in_place(
    pool: &Pool,
    isa: Isa,
    layer: &GemmLayer,
    patches: &Im2col,
    x: &[u8],
    [m, n]: [usize; 2],
    zero_point: u8,
) -> Buf {
    thread_local! {
        /// A block's row offsets, kept across blocks, layers and runs.
        static OFFSETS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let kp = layer.packed.kp;
    let batch = m / (patches.output[0] * patches.output[1]);
    let mut padded = Vec::new();
    let input = if patches.reads_input_as_is() {
        x
    } else {
        padded = pool.bytes_any(patches.padded_len(batch));
        patches.padded_input(x, zero_point, &mut padded);
        &padded
    };
    let mut y = output_buf(pool, layer, false, m * n);
    let out = Rows::of(&mut y);
    let run = |b: usize| {
        OFFSETS.with_borrow_mut(|offsets| {
            let first = b * IN_PLACE_BLOCK;
            let rows = IN_PLACE_BLOCK.min(m - first);
            let a = patches.rows_in_place(input, first, rows, offsets);
            gemm_into(isa, layer, a, [rows, n], None, out, first, false);
        })
    };
    for_blocks(m.div_ceil(IN_PLACE_BLOCK), m * n * kp, run);
    if !padded.is_empty() {
        pool.recycle(Buf::Codes(padded));
    }
    y
}

//! A Linear or Conv2d prepared for the int8 GEMM (weights packed once, the static input's
//! offsets and the requantization folded), and its run: im2col for a convolution, the GEMM with
//! requantization in its epilogue.

use super::buffers::{Buf, Pool};
use super::im2col::row_depth;
use crate::artifact::Artifact;
use crate::gemm::{Isa, PackedWeights, RowsOfA, SharedMut, Tile, gemm_tiles_of};
use crate::program::{ActQuant, Op, Program};
use crate::requant::{accumulator_scales, bounds, code, inverse, multipliers};

/// A Linear or Conv2d prepared for the GEMM.
pub(super) struct GemmLayer {
    pub(super) packed: PackedWeights,
    /// Static input: `bias_q[c] − z_x · Σw[c]`, added to the raw dot products.
    pub(super) offset: Vec<i32>,
    /// Requantization multipliers (integer output) or accumulator scales (float output).
    pub(super) scale: Vec<f32>,
    /// Dynamic input: weight scales and float bias.
    pub(super) weight_scale: Vec<f32>,
    pub(super) float_bias: Vec<f32>,
    pub(super) out: Option<ActQuant>,
    pub(super) relu: bool,
    /// Convolution window `[kh, kw]` (`[1, 1]` for Linear).
    pub(super) kernel: [usize; 2],
    /// A float output that only a GELU and a quantizer read: fused into the epilogue, the
    /// layer writes the quantizer's codes directly (no float tensor in between).
    pub(super) gelu_quant: Option<ActQuant>,
    /// Projections of one input merged into this GEMM (BERT's query, key and value): column
    /// ranges and the value and grid each writes. Empty for a plain layer.
    pub(super) splits: Vec<Split>,
}

/// One projection's columns in a merged GEMM.
#[derive(Debug, Clone, Copy)]
pub(super) struct Split {
    pub(super) start: usize,
    pub(super) n: usize,
    pub(super) value: usize,
    pub(super) grid: ActQuant,
}

/// Packs a layer's weights (convolutions reordered to `(kh, kw, c)` to match NHWC patches, each
/// kernel row padded to whole depth groups) and
/// folds the input's zero point and the bias into one integer offset.
pub(super) fn prepare(program: &Program, artifact: &Artifact, op: &Op) -> Option<GemmLayer> {
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
    let (w, k): (Vec<i8>, usize) = if rank == 4 {
        // Kernel rows of whole depth groups, zero in the gap (see `im2col::row_depth`).
        let (c, kh, kw) = (shape[1], shape[2], shape[3]);
        let depth = row_depth(kw, c);
        let k = kh * depth;
        let mut w = vec![0i8; n * k];
        for o in 0..n {
            for ci in 0..c {
                for y in 0..kh {
                    for x in 0..kw {
                        w[o * k + y * depth + x * c + ci] = codes[((o * c + ci) * kh + y) * kw + x];
                    }
                }
            }
        }
        (w, k)
    } else {
        (codes.to_vec(), k)
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
pub(super) fn run_gemm(
    pool: &Pool,
    isa: Isa,
    layer: &GemmLayer,
    a: &[u8],
    m: usize,
    n: usize,
    grids: Option<&[ActQuant]>,
) -> Buf {
    let mut y = output_buf(pool, layer, grids.is_some(), m * n);
    let kp = layer.packed.kp;
    gemm_into(
        isa,
        layer,
        RowsOfA::Strided {
            codes: a,
            stride: kp,
        },
        [m, n],
        grids,
        Rows::of(&mut y),
        0,
        true,
    );
    y
}

/// The buffer a layer's GEMM writes: codes where its epilogue quantizes (a static input with an
/// output quantizer, or the fused GELU's), floats otherwise.
pub(super) fn output_buf(pool: &Pool, layer: &GemmLayer, dynamic: bool, len: usize) -> Buf {
    if !dynamic && (layer.out.is_some() || layer.gelu_quant.is_some()) {
        Buf::Codes(pool.bytes_any(len))
    } else {
        Buf::Float(pool.floats(len))
    }
}

/// Where a GEMM's epilogue writes: a buffer's rows, shared by the tasks that each write their own.
#[derive(Clone, Copy)]
pub(super) enum Rows {
    Codes(SharedMut<u8>),
    Float(SharedMut<f32>),
}

impl Rows {
    /// `buf`'s rows.
    pub(super) fn of(buf: &mut Buf) -> Rows {
        match buf {
            Buf::Codes(y) => Rows::Codes(SharedMut(y.as_mut_ptr())),
            Buf::Float(y) => Rows::Float(SharedMut(y.as_mut_ptr())),
        }
    }
}

/// The layer's GEMM over `m` rows of `a` (wherever they lie: see [`RowsOfA`]) with its
/// epilogue, writing output rows
/// `first_row..first_row + m` of `out` (`n` wide, of the kind [`output_buf`] gives), on rayon's
/// threads when `parallel` and the product is large. Callers that split a product into parts
/// (a convolution's rows, patched a block at a time) write each part in place.
///
/// `out` must hold `(first_row + m) · n` elements, and parts running at once must write disjoint
/// rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_into(
    isa: Isa,
    layer: &GemmLayer,
    a: RowsOfA,
    [m, n]: [usize; 2],
    grids: Option<&[ActQuant]>,
    out: Rows,
    first_row: usize,
    parallel: bool,
) {
    /// The output rows of `tile` in `out` (`n` wide, row-major), written through `ptr`.
    ///
    /// # Safety
    /// `ptr` points at the whole output, and each tile's rows are handed out once.
    #[inline(always)]
    unsafe fn rows<'a, T>(ptr: SharedMut<T>, n: usize, row: usize, tile: &Tile) -> &'a mut [T] {
        unsafe { std::slice::from_raw_parts_mut(ptr.get().add(row * n + tile.col0), tile.width) }
    }
    let cols = |tile: &Tile| tile.col0..tile.col0 + tile.width;
    let row = |tile: &Tile, r: usize| first_row + tile.row0 + r;
    match (grids, layer.out, out) {
        (None, Some(q), Rows::Codes(ptr)) => {
            let (lo, hi) = bounds(&q, layer.relu);
            gemm_tiles_of(
                isa,
                a,
                m,
                &layer.packed,
                parallel,
                #[inline(always)]
                |tile| {
                    let (offset, scale) = (&layer.offset[cols(tile)], &layer.scale[cols(tile)]);
                    for r in 0..tile.rows {
                        // SAFETY: each tile is written by exactly one task.
                        let out = unsafe { rows(ptr, n, row(tile, r), tile) };
                        by_lanes(out, tile.row(r), offset, scale, |d, b, s| {
                            code((d + b) as f32, s, lo, hi, q.zero_point) as u8
                        });
                    }
                },
            );
        }
        (None, None, Rows::Codes(ptr)) => {
            let q = layer.gelu_quant.expect("codes out: a fused GELU quantizer");
            let (lo, hi) = bounds(&q, false);
            let inv = inverse(q.scale);
            gemm_tiles_of(
                isa,
                a,
                m,
                &layer.packed,
                parallel,
                #[inline(always)]
                |tile| {
                    let (offset, scale) = (&layer.offset[cols(tile)], &layer.scale[cols(tile)]);
                    // The GELU's polynomial is too large for LLVM to inline this epilogue into the
                    // GEMM task: give it its own wide-vector context.
                    crate::simd::wide!({
                        for r in 0..tile.rows {
                            // SAFETY: as above.
                            let out = unsafe { rows(ptr, n, row(tile, r), tile) };
                            by_lanes(out, tile.row(r), offset, scale, |d, b, s| {
                                // What the unfused ops compute: the dequantized float, GELU, quantize.
                                let v = crate::approx::gelu((d + b) as f32 * s);
                                code(v, inv, lo, hi, q.zero_point) as u8
                            });
                        }
                    },)
                },
            );
        }
        (None, None, Rows::Float(ptr)) => {
            gemm_tiles_of(
                isa,
                a,
                m,
                &layer.packed,
                parallel,
                #[inline(always)]
                |tile| {
                    let (offset, scale) = (&layer.offset[cols(tile)], &layer.scale[cols(tile)]);
                    for r in 0..tile.rows {
                        // SAFETY: as above.
                        let out = unsafe { rows(ptr, n, row(tile, r), tile) };
                        by_lanes(out, tile.row(r), offset, scale, |d, b, s| {
                            let v = (d + b) as f32 * s;
                            if layer.relu { v.max(0.0) } else { v }
                        });
                    }
                },
            );
        }
        (Some(grids), _, Rows::Float(ptr)) => {
            gemm_tiles_of(
                isa,
                a,
                m,
                &layer.packed,
                parallel,
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
                        let out = unsafe { rows(ptr, n, row(tile, r), tile) };
                        for ((((o, &d), &cs), &w), &b) in
                            out.iter_mut().zip(tile.row(r)).zip(sums).zip(ws).zip(fb)
                        {
                            let acc = d - q.zero_point * cs;
                            *o = acc as f32 * (q.scale * w) + b;
                        }
                    }
                },
            );
        }
        _ => unreachable!("`out` is of the kind `output_buf` gives"),
    }
}

/// Lanes per chunk of [`by_lanes`]: one 512-bit vector of `f32`.
const LANES: usize = 16;

/// `out[j] = f(dots[j], offset[j], scale[j])` over a tile's row, 16 lanes at a time and the rest
/// one by one: a tile row is 16 or 32 wide, which a plain loop over its run-time length left to
/// LLVM's 4-lane remainder loop (its main loop takes 64 at a time), a quarter of the vector.
#[inline(always)]
fn by_lanes<T>(
    out: &mut [T],
    dots: &[i32],
    offset: &[i32],
    scale: &[f32],
    f: impl Fn(i32, i32, f32) -> T,
) {
    let n = out.len();
    let (dots, offset, scale) = (&dots[..n], &offset[..n], &scale[..n]);
    let mut chunks = out.chunks_exact_mut(LANES);
    for (c, out) in (&mut chunks).enumerate() {
        let at = c * LANES;
        let out: &mut [T; LANES] = out.try_into().expect("a whole chunk");
        let d: &[i32; LANES] = dots[at..at + LANES].try_into().expect("a whole chunk");
        let b: &[i32; LANES] = offset[at..at + LANES].try_into().expect("a whole chunk");
        let s: &[f32; LANES] = scale[at..at + LANES].try_into().expect("a whole chunk");
        for j in 0..LANES {
            out[j] = f(d[j], b[j], s[j]);
        }
    }
    let at = n / LANES * LANES;
    for (j, o) in chunks.into_remainder().iter_mut().enumerate() {
        *o = f(dots[at + j], offset[at + j], scale[at + j]);
    }
}

/// `rows × k` codes with each row padded to `kp` (borrowed through a copy only when needed).
pub(super) fn pad_rows(x: &[u8], rows: usize, k: usize, kp: usize) -> Vec<u8> {
    if k == kp {
        return x.to_vec();
    }
    let mut a = vec![0u8; rows * kp];
    for (dst, src) in a.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    a
}

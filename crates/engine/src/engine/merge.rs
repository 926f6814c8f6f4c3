//! Ops the engine runs as one: a GELU followed by its quantizer, and the projections that read
//! one integer input (BERT's query, key and value) as one GEMM.

use super::buffers::{Buf, Pool};
use super::gemm_layer::{GemmLayer, Split, pad_rows};
use crate::artifact::Artifact;
use crate::gemm::{Isa, PackedWeights, SharedMut, gemm_tiles};
use crate::program::{Op, Program};
use crate::requant::{bounds, code};

/// Marks `Linear (float out) → Gelu → Quantize` chains whose intermediate floats nothing else
/// reads, so the Linear writes the codes itself; returns each op's fusion mark.
pub(super) fn fuse_gelu_quantize(
    program: &Program,
    layers: &mut [Option<GemmLayer>],
) -> Vec<Option<usize>> {
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

/// Merges runs of `Linear` ops that read the same integer input into integer outputs (BERT's
/// query, key and value) into one GEMM: one pass over the input, one task split, and the wider
/// product keeps the kernel busy at batch 1. The merged ops are marked as skipped.
pub(super) fn merge_projections(
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
pub(super) fn run_merged(
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

//! The engine's multi-head self-attention on integer `Q`, `K`, `V`: per (sequence, head), two
//! int8 GEMMs — `Q·Kᵀ` and `P·V` — around a softmax in f32, with every zero point removed by
//! row and column sums. Keys and values enter the GEMM as the "weights", shifted to signed
//! (`code − 128`); the same floats as the interpreter's loops ([`crate::float_ops`]).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::float_ops::{AttentionScales, softmax_row};
use crate::gemm::{Isa, PackedWeights, SharedMut, gemm_into, padded_depth};
use crate::program::ActQuant;
use crate::requant::{code, quantize};

/// The grids of one attention op.
pub(crate) struct AttentionGrids {
    pub q: ActQuant,
    pub k: ActQuant,
    pub v: ActQuant,
    pub probs: ActQuant,
    pub out: ActQuant,
}

/// One thread's working buffers, kept between heads and runs.
#[derive(Default)]
struct Scratch {
    queries: Vec<u8>,
    keys: Vec<i8>,
    values: Vec<i8>,
    probs: Vec<u8>,
    dots: Vec<i32>,
    scores: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// `v` resized to `len` (contents unspecified: every caller overwrites what it reads).
fn sized<T: Copy + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    v.resize(len, T::default());
    &mut v[..len]
}

/// `A · Bᵀ` (raw dot products, `m × n`, into `out`) for signed codes `b` (`n × k`) that may
/// hold −128, and the column sums of `b`. AVX2's sign trick cannot negate −128: there
/// `b = 2·(b >> 1) + (b & 1)`, two products whose codes fit (twice the work, still exact).
fn product(
    isa: Isa,
    a: &[u8],
    m: usize,
    b: &[i8],
    [n, k]: [usize; 2],
    out: &mut [i32],
) -> Vec<i32> {
    if isa != Isa::Avx2 {
        let packed = PackedWeights::pack(b, n, k);
        gemm_into(isa, a, m, &packed, false, out);
        return packed.col_sums;
    }
    let high: Vec<i8> = b.iter().map(|&x| x >> 1).collect();
    let low: Vec<i8> = b.iter().map(|&x| x & 1).collect();
    let (high, low) = (
        PackedWeights::pack(&high, n, k),
        PackedWeights::pack(&low, n, k),
    );
    gemm_into(isa, a, m, &high, false, out);
    let mut rest = vec![0i32; m * n];
    gemm_into(isa, a, m, &low, false, &mut rest);
    for (o, r) in out[..m * n].iter_mut().zip(&rest) {
        *o = 2 * *o + r;
    }
    high.col_sums
        .iter()
        .zip(&low.col_sums)
        .map(|(h, l)| 2 * h + l)
        .collect()
}

/// Context codes `[batch, s, heads·d]` of `q`, `k`, `v` (same layout) under `mask` (`[batch, s]`).
pub(crate) fn attention(
    isa: Isa,
    [batch, s, heads, d]: [usize; 4],
    (xq, xk, xv): (&[u8], &[u8], &[u8]),
    mask: &[f32],
    g: &AttentionGrids,
    out: &mut [u8],
) {
    let scales = AttentionScales::new(&g.q, &g.k, &g.v, &g.probs, &g.out, d);
    let hd = heads * d;
    let (dp, sp) = (padded_depth(d), padded_depth(s));
    let ptr = SharedMut(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each(|task| {
        // The whole task compiled for the widest vectors: its shifting, packing and summing
        // loops vectorise too.
        SCRATCH.with_borrow_mut(|scratch| {
            crate::simd::wide!({
                let (b, h) = (task / heads, task % heads);
                let at = |t: usize, e: usize| (b * s + t) * hd + h * d + e;
                let shifted = |x: u8| (x as i32 - 128) as i8;
                // Queries as GEMM rows (padded to a multiple of 4), keys as signed "weights".
                let qa = sized(&mut scratch.queries, s * dp);
                qa.fill(0);
                let mut q_sums = vec![0i32; s];
                for (i, (row, sum)) in qa.chunks_exact_mut(dp).zip(&mut q_sums).enumerate() {
                    row[..d].copy_from_slice(&xq[at(i, 0)..at(i, 0) + d]);
                    *sum = row[..d].iter().map(|&c| c as i32).sum();
                }
                let kb = sized(&mut scratch.keys, s * d);
                for (j, row) in kb.chunks_exact_mut(d).enumerate() {
                    for (o, &c) in row.iter_mut().zip(&xk[at(j, 0)..at(j, 0) + d]) {
                        *o = shifted(c);
                    }
                }
                let dots = sized(&mut scratch.dots, s * s.max(d));
                let key_sums = product(isa, qa, s, kb, [s, d], dots);
                // Σ(q − z_q)(k − z_k) from Σ q·(k − 128), the row sums of q and the column sums of k.
                let (zq, zk) = (g.q.zero_point, g.k.zero_point);
                let k_sums: Vec<i32> = key_sums.iter().map(|c| c + 128 * d as i32).collect();
                let constant = d as i32 * zq * zk;
                let pa = sized(&mut scratch.probs, s * sp);
                // Padding columns meet the values' zero-padded depth: any code there adds 0.
                pa.fill(0);
                let mut p_sums = vec![0i32; s];
                let scores = sized(&mut scratch.scores, s);
                let keep = &mask[b * s..(b + 1) * s];
                for i in 0..s {
                    let row_term = (128 - zk) * q_sums[i] + constant;
                    crate::simd::wide!({
                        for (((score, &dot), &ks), &m) in scores
                            .iter_mut()
                            .zip(&dots[i * s..(i + 1) * s])
                            .zip(&k_sums)
                            .zip(keep)
                        {
                            *score = scales.score(dot + row_term - zq * ks, m);
                        }
                    },);
                    softmax_row(scores);
                    let row = &mut pa[i * sp..i * sp + s];
                    p_sums[i] = crate::simd::wide!({
                        let mut sum = 0;
                        for (o, &x) in row.iter_mut().zip(scores.iter()) {
                            let c = quantize(x, scales.inv_probs, &g.probs, false);
                            *o = c as u8;
                            sum += c;
                        }
                        sum
                    },);
                }
                let vb = sized(&mut scratch.values, d * s);
                for j in 0..s {
                    for (e, &c) in xv[at(j, 0)..at(j, 0) + d].iter().enumerate() {
                        vb[e * s + j] = shifted(c);
                    }
                }
                let dots = sized(&mut scratch.dots, s * d.max(s));
                let value_sums = product(isa, pa, s, vb, [d, s], dots);
                let (zp, zv) = (g.probs.zero_point, g.v.zero_point);
                let v_sums: Vec<i32> = value_sums.iter().map(|c| c + 128 * s as i32).collect();
                let constant = s as i32 * zp * zv;
                let (lo, hi) = crate::requant::bounds(&g.out, false);
                crate::simd::wide!({
                    for i in 0..s {
                        let row_term = (128 - zv) * p_sums[i] + constant;
                        // SAFETY: each (b, i, h, 0..d) belongs to exactly one task.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at(i, 0)), d) };
                        for ((o, &dot), &vs) in
                            dst.iter_mut().zip(&dots[i * d..(i + 1) * d]).zip(&v_sums)
                        {
                            let acc = dot + row_term - zp * vs;
                            *o = code(acc as f32, scales.context, lo, hi, g.out.zero_point) as u8;
                        }
                    }
                },);
            },)
        })
    });
}

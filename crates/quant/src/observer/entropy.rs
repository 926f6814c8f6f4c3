//! Entropy (KL-divergence) calibration: TensorRT's INT8 calibrator, for any bit width.
//!
//! The clip threshold is the one whose quantized distribution of `|x|` loses the least
//! information about the batch's: of a fine histogram (`bins` bins over `[0, max |x|]`), each
//! candidate threshold's head (its tail folded into the last bin) is compared with the same head
//! merged into the grid's levels and spread back, by `KL(reference ‖ quantized)` (Migacz,
//! "8-bit Inference with TensorRT", GTC 2017). The search follows NVIDIA's
//! pytorch-quantization (`calib/histogram.py`, `_compute_amax_entropy`), so its thresholds are
//! those its users know; `tests/golden/gen_entropy.py` pins it.

use burn::tensor::{Tensor, TensorData};

use crate::{ParamLayout, QuantSpec, no_grad};

/// The first candidate threshold, in histogram bins (pytorch-quantization's `start_bin`).
const START_BIN: usize = 128;

/// The entropy-calibrated `(min, max)` of every parameter's elements: `±amax` where the
/// elements reach that far (`amax` from [`entropy_threshold`] of `|x|`'s histogram), the
/// elements' own min or max where they stop short of it (a tensor without negatives keeps 0 as
/// its minimum).
pub fn batch_entropy(
    view: Tensor<4>,
    layout: &ParamLayout,
    spec: &QuantSpec,
    bins: usize,
) -> (Tensor<1>, Tensor<1>) {
    let device = view.device();
    let rows = layout.rows(no_grad(view));
    let [n, m] = rows.dims();
    let values = rows
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 rows");
    let (mut mins, mut maxs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for row in values.chunks_exact(m.max(1)) {
        let (min, max) = row
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let max_abs = min.abs().max(max.abs());
        let amax = amax_of(row, max_abs, bins, spec.bits, min >= 0.0);
        mins.push(min.max(-amax));
        maxs.push(max.min(amax));
    }
    let tensor = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
    (tensor(mins), tensor(maxs))
}

/// The entropy-calibrated threshold of `|values|` for a `bits`-bit grid (`unsigned`: the values
/// have no negatives, so the whole grid lies on `[0, amax]`).
pub fn entropy_amax(values: &[f32], bins: usize, bits: u32, unsigned: bool) -> f32 {
    let max_abs = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    amax_of(values, max_abs, bins, bits, unsigned)
}

/// [`entropy_amax`] with `max |values|` already known.
fn amax_of(values: &[f32], max_abs: f32, bins: usize, bits: u32, unsigned: bool) -> f32 {
    if max_abs == 0.0 || !max_abs.is_finite() {
        return max_abs;
    }
    let mut histogram = vec![0f64; bins];
    let width = max_abs as f64 / bins as f64;
    for v in values {
        // torch.histc's binning: the top edge belongs to the last bin.
        let bin = ((v.abs() as f64 / width) as usize).min(bins - 1);
        histogram[bin] += 1.0;
    }
    let levels = 1usize << (bits - 1 + u32::from(unsigned));
    entropy_threshold(&histogram, levels) as f32 * (max_abs / bins as f32)
}

/// The histogram bin count `i` (the threshold is bin `i`'s lower edge) whose quantization to
/// `levels` levels has the least `KL(reference ‖ quantized)`, the largest `i` among equals:
/// pytorch-quantization's `_compute_amax_entropy` with stride 1 and start bin 128 (or the whole
/// histogram, if it has fewer bins).
///
/// Each candidate costs `O(levels)`, not `O(i)`: within a level the quantized density is one
/// value, so `Σ p·ln q` is a sum over levels, and `Σ p·ln p` comes from prefix sums of `c·ln c`
/// (about 10× faster than the direct sum at 8 bits; the two are pinned together in the tests).
pub fn entropy_threshold(histogram: &[f64], levels: usize) -> usize {
    let len = histogram.len();
    if len < 2 {
        return len;
    }
    let mut bins = histogram.to_vec();
    // Exact zeros (ReLU outputs) would dominate the first bin: it counts as its neighbour.
    bins[0] = bins[1];
    // Prefix sums over bins [0, m): counts, non-empty bins, and c·ln c.
    let mut counts = vec![0f64; len + 1];
    let mut nonempty = vec![0usize; len + 1];
    let mut c_ln_c = vec![0f64; len + 1];
    for (j, &c) in bins.iter().enumerate() {
        counts[j + 1] = counts[j] + c;
        nonempty[j + 1] = nonempty[j] + usize::from(c != 0.0);
        c_ln_c[j + 1] = c_ln_c[j] + if c > 0.0 { c * c.ln() } else { 0.0 };
    }
    let total = counts[len];
    if total <= 0.0 {
        return len;
    }
    let ln_total = total.ln();
    let start = START_BIN.min(len);
    let mut edges = vec![0usize; levels + 1];
    let mut best = (f64::INFINITY, len);
    for i in start..=len {
        let divergence = divergence_by_levels(
            &bins, i, levels, total, ln_total, &counts, &nonempty, &c_ln_c, &mut edges,
        );
        if divergence <= best.0 {
            best = (divergence, i);
        }
    }
    best.1
}

/// `KL(reference ‖ quantized)` for the threshold after the first `i` bins, from the prefix sums
/// (see [`entropy_threshold`]).
#[allow(clippy::too_many_arguments)]
fn divergence_by_levels(
    bins: &[f64],
    i: usize,
    levels: usize,
    total: f64,
    ln_total: f64,
    counts: &[f64],
    nonempty: &[usize],
    c_ln_c: &[f64],
    edges: &mut [usize],
) -> f64 {
    let last = bins[i - 1];
    let tail = total - counts[i];
    if last == 0.0 && tail > 0.0 {
        // The clipped mass lands in a bin the quantized head leaves empty.
        return f64::INFINITY;
    }
    let quantized_total = counts[i];
    if quantized_total <= 0.0 {
        return f64::INFINITY;
    }
    // Level k holds bins [edges[k], edges[k + 1]): the first j at or above numpy's float edge.
    let step = i as f64 / levels as f64;
    for (k, edge) in edges.iter_mut().enumerate().take(levels) {
        *edge = ((k as f64 * step).ceil() as usize).min(i);
    }
    edges[levels] = i;
    // Σ p·ln q: the head's mass of each level times its (uniform) quantized log density, and
    // the tail folded into the last bin at its level's density.
    let mut p_ln_q = 0.0;
    let mut last_ln_q = 0.0;
    for k in 0..levels {
        let (a, b) = (edges[k], edges[k + 1]);
        let members = nonempty[b] - nonempty[a];
        if members == 0 {
            continue;
        }
        let merged = counts[b] - counts[a];
        let ln_q = (merged / members as f64 / quantized_total).ln();
        p_ln_q += merged / total * ln_q;
        if a < i && i <= b {
            last_ln_q = ln_q;
        }
    }
    if tail > 0.0 {
        p_ln_q += tail / total * last_ln_q;
    }
    // Σ p·ln p: the bins before the last from the prefix sums, the last (with the tail) apart.
    let head = i - 1;
    let mut p_ln_p = (c_ln_c[head] - ln_total * counts[head]) / total;
    let p_last = (last + tail) / total;
    if p_last > 0.0 {
        p_ln_p += p_last * p_last.ln();
    }
    p_ln_p - p_ln_q
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` standard normal values (Box–Muller on a xorshift generator): a dense histogram
    /// with tails, as activations have.
    pub(crate) fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.max(1);
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }

    /// The search as the reference writes it, bin by bin (`O(i)` per candidate): the oracle that
    /// [`entropy_threshold`] is pinned to.
    fn direct_threshold(histogram: &[f64], levels: usize) -> usize {
        let mut bins = histogram.to_vec();
        let len = bins.len();
        if len < 2 {
            return len;
        }
        // Exact zeros (ReLU outputs) would dominate the first bin: it counts as its neighbour.
        bins[0] = bins[1];
        let start = START_BIN.min(len);
        let mut tail: f64 = bins[start..].iter().sum();
        let mut best = (f64::INFINITY, len);
        let mut merged = vec![0f64; levels];
        let mut members = vec![0usize; levels];
        for i in start..=len {
            if i > start {
                tail -= bins[i - 1];
            }
            let divergence =
                divergence_at(&bins[..i], tail.max(0.0), levels, &mut merged, &mut members);
            if divergence <= best.0 {
                best = (divergence, i);
            }
        }
        best.1
    }

    /// `KL(reference ‖ quantized)` for the threshold after `head` (the histogram's first `i` bins),
    /// `tail` being the count beyond it.
    fn divergence_at(
        head: &[f64],
        tail: f64,
        levels: usize,
        merged: &mut [f64],
        members: &mut [usize],
    ) -> f64 {
        let i = head.len();
        merged.fill(0.0);
        members.fill(0);
        let step = i as f64 / levels as f64;
        let level_of = |j: usize| level(j, step, levels);
        for (j, &count) in head.iter().enumerate() {
            if count != 0.0 {
                let q = level_of(j);
                merged[q] += count;
                members[q] += 1;
            }
        }
        // The quantized head: each level's mass spread evenly over its non-empty bins.
        let quantized_total: f64 = head
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0.0)
            .map(|(j, _)| {
                let q = level_of(j);
                merged[q] / members[q] as f64
            })
            .sum();
        let reference_total: f64 = head.iter().sum::<f64>() + tail;
        if quantized_total <= 0.0 || reference_total <= 0.0 {
            return f64::INFINITY;
        }
        let mut divergence = 0.0;
        for (j, &count) in head.iter().enumerate() {
            let p = if j + 1 == i { count + tail } else { count } / reference_total;
            if p <= 0.0 {
                continue;
            }
            let q = if count != 0.0 {
                let level = level_of(j);
                merged[level] / members[level] as f64 / quantized_total
            } else {
                0.0
            };
            if q <= 0.0 {
                return f64::INFINITY;
            }
            divergence += p * (p / q).ln();
        }
        divergence
    }

    /// The level of source bin `j` when `i` bins are split into `levels` equal parts of `step` bins:
    /// `numpy.digitize(j, numpy.linspace(0, i, levels + 1)) - 1`, float edges and all.
    fn level(j: usize, step: f64, levels: usize) -> usize {
        let x = j as f64;
        let edge = |k: usize| k as f64 * step;
        let mut q = ((x / step) as usize).min(levels - 1);
        while q > 0 && edge(q) > x {
            q -= 1;
        }
        while q + 1 < levels && edge(q + 1) <= x {
            q += 1;
        }
        q
    }

    /// The level-by-level search picks the bin the direct one does, on histograms of every
    /// shape: dense, sparse (empty bins inside the head), ReLU-like (a spike at zero), few bins.
    #[test]
    fn the_fast_search_equals_the_direct_one() {
        let mut state = 99u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..24 {
            let len = [2048, 512, 300, 130][case % 4];
            let levels = [128, 256, 8, 16, 4][case % 5];
            let histogram: Vec<f64> = (0..len)
                .map(|j| {
                    let r = next();
                    let dense = 1e4 * (-(j as f64) / (len as f64 / 6.0)).exp();
                    match case % 3 {
                        0 => (dense * ((r % 100) as f64 / 100.0 + 0.5)).floor(),
                        1 if r % 3 == 0 => 0.0,
                        1 => (dense * 0.01).floor(),
                        _ if j == 0 => 5e5,
                        _ => (dense * 0.1 + (r % 4) as f64).floor(),
                    }
                })
                .collect();
            assert_eq!(
                entropy_threshold(&histogram, levels),
                direct_threshold(&histogram, levels),
                "case {case}: {len} bins, {levels} levels"
            );
        }
    }

    /// The fast search's level edges put each bin where numpy's `digitize` does.
    #[test]
    fn level_edges_are_numpy_digitize() {
        for (i, levels) in [(300, 128), (2048, 128), (100, 256), (1000, 16), (129, 8)] {
            let step = i as f64 / levels as f64;
            for j in 0..i {
                let k = (0..levels)
                    .rev()
                    .find(|&k| ((k as f64 * step).ceil() as usize) <= j)
                    .unwrap();
                assert_eq!(k, level(j, step, levels), "i {i}, levels {levels}, j {j}");
            }
        }
    }

    #[test]
    fn a_long_tail_is_clipped_and_a_flat_distribution_is_not() {
        // 100,000 normal values and three outliers out at 50: the threshold ignores the
        // outliers (pytorch-quantization's search gives 4.2 on such data, golden/gen_entropy.py).
        let mut values = gaussian(100_000, 7);
        values[..3].copy_from_slice(&[50.0, -48.0, 47.0]);
        let amax = entropy_amax(&values, 2048, 8, false);
        assert!((3.0..6.0).contains(&amax), "{amax}");
        // Uniform on [0, 1]: nothing to clip.
        let uniform: Vec<f32> = (0..20_000).map(|k| k as f32 / 20_000.0).collect();
        let amax = entropy_amax(&uniform, 2048, 8, true);
        assert!(amax > 0.95, "{amax}");
        // Fewer bits clip more of the same distribution.
        let normal = gaussian(100_000, 11);
        let (eight, four) = (
            entropy_amax(&normal, 2048, 8, false),
            entropy_amax(&normal, 2048, 4, false),
        );
        assert!(four < eight, "4-bit {four} vs 8-bit {eight}");
    }

    #[test]
    fn levels_are_numpy_digitize_of_linspace() {
        // linspace(0, 300, 129): edges k · 300/128; j = 75 sits exactly on edge 32.
        let step = 300.0 / 128.0;
        assert_eq!(level(75, step, 128), 32);
        assert_eq!(level(74, step, 128), 31);
        assert_eq!(level(0, step, 128), 0);
        assert_eq!(level(299, step, 128), 127);
        // Fewer bins than levels: one bin per level, some levels empty.
        assert_eq!(level(5, 10.0 / 128.0, 128), 64);
    }

    #[test]
    fn zeros_and_empty_input_keep_their_range() {
        assert_eq!(entropy_amax(&[0.0; 16], 2048, 8, true), 0.0);
        assert_eq!(entropy_amax(&[], 2048, 8, true), 0.0);
    }
}

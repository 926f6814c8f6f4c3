//! Row sums in independent lanes, so the row kernels' reductions vectorise (a single running
//! `f32` sum is a chain the compiler must keep in order).

/// Independent accumulators of a row sum: one AVX-512 register of `f32`.
pub(super) const LANES: usize = 16;

/// `Σ f(k)` for `k < n`, lane `j` summing the `k ≡ j mod LANES`, then the lanes in order.
#[inline(always)]
pub(super) fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let whole = n / LANES * LANES;
    for base in (0..whole).step_by(LANES) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += f(base + j);
        }
    }
    for k in whole..n {
        acc[k - whole] += f(k);
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every term is summed once, for lengths below, at and past whole lanes.
    #[test]
    fn lane_sum_adds_every_term_once() {
        for n in [0, 1, 15, 16, 17, 40, 384] {
            let expected = (0..n).map(|k| k as f64 + 1.0).sum::<f64>() as f32;
            assert_eq!(lane_sum(n, |k| k as f32 + 1.0), expected, "n = {n}");
        }
    }
}

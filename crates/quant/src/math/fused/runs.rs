//! How the elements of a `[outer, groups, group_len, inner]` view map to flat parameters, as
//! contiguous runs the kernels loop over, and the split of that work across two threads.

/// The view shape and parameter layout a kernel walks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Runs {
    pub view: [usize; 4],
    pub per_group: bool,
    pub num_params: usize,
}

/// Where the parts of a split view start, in elements: a whole byte of a bit mask (8 elements)
/// and whole cache lines of `f32` (16), so no two parts write the same byte or line.
pub(super) const PART_ALIGN: usize = 64;

/// A run of elements: `(start, len, param_start, param_stride)`; the parameter of element
/// `start + k` is `param_start + k · param_stride` (stride 0: one parameter for the whole run).
pub(super) type Run = (usize, usize, usize, usize);

/// The fewest elements one thread takes when a kernel is split, by the number of threads: a
/// kernel pass costs about a nanosecond per element, and handing parts to other threads costs
/// microseconds. Measured with the fake-quant bench's model (3×Linear 512, LSQ W4A4):
/// - on a 16-core Xeon, parts of 2^13–2^14 elements cut LSQ's forward + backward overhead from
///   2.5–2.8 ms to 2.0–2.2 ms a step (the step ratio from 1.25–1.27× to 1.23×);
/// - on a shared 2-core VM, splitting the fake-quant bench's 2^17-element tensors in two makes
///   its step slower (waking the other worker costs tens of microseconds: W8A8 1.11–1.12× →
///   1.14–1.17× float, LSQ ÷ `float_dx` 1.14–1.17× → 1.18–1.20×), while splitting MiniLM's
///   786,432-element activations (parts of 2^18–2^19) makes its QAT step faster, now that the
///   step runs on a pool thread (`trainer::on_compute_pool`): W8A8 ÷ float median 1.08–1.09× →
///   1.06× over 5 + 5 alternating runs (2026-12-07). So with fewer than 4 threads a part has at
///   least 2^18 elements (tensors of 2^19 or more are split).
///
/// `QUANT_SPLIT_MIN` (elements) overrides it, for tuning on other machines.
pub(super) fn split_min(threads: usize) -> usize {
    static OVERRIDE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let from_env = OVERRIDE.get_or_init(|| {
        std::env::var("QUANT_SPLIT_MIN")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
    });
    from_env.unwrap_or(if threads >= 4 { 1 << 14 } else { 1 << 18 })
}

impl Runs {
    /// All runs, in element order.
    pub fn list(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        self.for_each(|a, b, c, d| runs.push((a, b, c, d)));
        runs
    }

    /// Calls `f(start, len, param_start, param_stride)` for every run, in element order.
    fn for_each(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let [o, g, l, i] = self.view;
        let n: usize = self.view.iter().product();
        if self.num_params == 1 {
            f(0, n, 0, 0);
        } else if self.per_group {
            for oo in 0..o {
                for gg in 0..g {
                    for ll in 0..l {
                        f(((oo * g + gg) * l + ll) * i, i, (oo * g + gg) * i, 1);
                    }
                }
            }
        } else if l * i == 1 {
            for oo in 0..o {
                f(oo * g, g, 0, 1);
            }
        } else {
            for oo in 0..o {
                for gg in 0..g {
                    f((oo * g + gg) * l * i, l * i, gg, 0);
                }
            }
        }
    }

    /// The runs cut into at most `max_parts` contiguous pieces of at least `min_per_part`
    /// elements each, as `(first element, runs)`; one piece when the view is too small to split.
    /// Every piece starts at a multiple of [`PART_ALIGN`] elements.
    pub fn parts(&self, max_parts: usize, min_per_part: usize) -> Vec<(usize, Vec<Run>)> {
        let n: usize = self.view.iter().product();
        let k = (n / min_per_part.max(1)).clamp(1, max_parts.max(1));
        let runs = self.list();
        if k == 1 {
            return vec![(0, runs)];
        }
        // Piece `p` covers elements `[p·n/k, (p+1)·n/k)`, each start rounded down to the
        // alignment; a run that crosses a boundary is cut.
        let bounds: Vec<usize> = (0..=k)
            .map(|p| {
                if p == k {
                    n
                } else {
                    p * n / k / PART_ALIGN * PART_ALIGN
                }
            })
            .collect();
        let mut parts: Vec<(usize, Vec<Run>)> =
            bounds[..k].iter().map(|&b| (b, Vec::new())).collect();
        let mut p = 0;
        for (mut start, mut len, mut p0, stride) in runs {
            while len > 0 {
                while start >= bounds[p + 1] {
                    p += 1;
                }
                let take = len.min(bounds[p + 1] - start);
                parts[p].1.push((start, take, p0, stride));
                start += take;
                len -= take;
                p0 += take * stride;
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter of every element, checking that no element is in two runs.
    fn param_of_each_element(runs: &[Run], n: usize) -> Vec<usize> {
        let mut params = vec![usize::MAX; n];
        for &(start, len, p0, stride) in runs {
            for k in 0..len {
                assert_eq!(
                    params[start + k],
                    usize::MAX,
                    "element {} in two runs",
                    start + k
                );
                params[start + k] = p0 + k * stride;
            }
        }
        params
    }

    #[test]
    fn parts_cover_every_element_with_its_parameter() {
        for (view, per_group, num_params) in [
            ([1, 1, 1, 1 << 21], false, 1),
            ([4100, 257, 1, 1], false, 257),
            ([3500, 1, 1, 300], false, 1),
            ([1, 256, 4100, 1], false, 256),
            ([8, 4, 128, 301], true, 8 * 4 * 301),
            ([7, 3, 1, 1], false, 3),
        ] {
            let runs = Runs {
                view,
                per_group,
                num_params,
            };
            let n: usize = view.iter().product();
            let whole = param_of_each_element(&runs.list(), n);
            // Every element in a run (kernels that fill fresh memory rely on it).
            assert!(whole.iter().all(|&p| p < num_params), "{view:?}");
            for (max_parts, min_per_part) in [(2, 1 << 19), (16, 1 << 15), (5, 1), (3, n), (1, 1)] {
                let parts = runs.parts(max_parts, min_per_part);
                let expected = (n / min_per_part).clamp(1, max_parts);
                assert_eq!(
                    parts.len(),
                    expected,
                    "{view:?} in {max_parts} × ≥{min_per_part}"
                );
                let mut split = vec![usize::MAX; n];
                for (i, (first, part_runs)) in parts.iter().enumerate() {
                    // Parts that write a bit mask must not share a byte of it.
                    assert_eq!(
                        first % PART_ALIGN,
                        0,
                        "{view:?}: part {i} starts at {first}"
                    );
                    let end = parts.get(i + 1).map_or(n, |p| p.0);
                    for (k, p) in param_of_each_element(part_runs, n).into_iter().enumerate() {
                        if p != usize::MAX {
                            assert!(
                                (*first..end).contains(&k),
                                "{view:?}: element {k} outside part {i} ({first}..{end})"
                            );
                            assert_eq!(split[k], usize::MAX, "{view:?}: element {k} in two parts");
                            split[k] = p;
                        }
                    }
                }
                assert_eq!(split, whole, "{view:?} in {max_parts} parts");
            }
        }
    }
}

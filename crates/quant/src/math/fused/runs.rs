//! How the elements of a `[outer, groups, group_len, inner]` view map to flat parameters, as
//! contiguous runs the kernels loop over, and the split of that work across two threads.

/// The view shape and parameter layout a kernel walks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Runs {
    pub view: [usize; 4],
    pub per_group: bool,
    pub num_params: usize,
}

/// A run of elements: `(start, len, param_start, param_stride)`; the parameter of element
/// `start + k` is `param_start + k · param_stride` (stride 0: one parameter for the whole run).
pub(super) type Run = (usize, usize, usize, usize);

/// Below this many elements a kernel stays on one thread: a kernel pass over 2^20 elements takes
/// about a millisecond, while waking a sleeping worker costs tens of microseconds (measured with
/// the fake-quant bench: splitting 2^18-element weights in two made the step slower).
pub(super) const PARALLEL_MIN: usize = 1 << 20;

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

    /// The runs split at the middle element for two workers: `(mid, low runs, high runs)`, or
    /// `None` when the view is too small to be worth splitting.
    pub fn halves(&self) -> Option<(usize, Vec<Run>, Vec<Run>)> {
        let n: usize = self.view.iter().product();
        if n < PARALLEL_MIN {
            return None;
        }
        let mid = n / 2;
        let (low, high) = split_runs(&self.list(), mid);
        Some((mid, low, high))
    }
}

/// Splits `runs` at element `mid`, cutting the run that straddles it in two.
fn split_runs(runs: &[Run], mid: usize) -> (Vec<Run>, Vec<Run>) {
    let (mut low, mut high) = (Vec::new(), Vec::new());
    for &(start, len, p0, stride) in runs {
        if start + len <= mid {
            low.push((start, len, p0, stride));
        } else if start >= mid {
            high.push((start, len, p0, stride));
        } else {
            let k = mid - start;
            low.push((start, k, p0, stride));
            high.push((mid, len - k, p0 + k * stride, stride));
        }
    }
    (low, high)
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
    fn halves_cover_every_element_with_its_parameter() {
        for (view, per_group, num_params) in [
            ([1, 1, 1, 1 << 21], false, 1),
            ([4100, 257, 1, 1], false, 257),
            ([3500, 1, 1, 300], false, 1),
            ([1, 256, 4100, 1], false, 256),
            ([8, 4, 128, 301], true, 8 * 4 * 301),
        ] {
            let runs = Runs {
                view,
                per_group,
                num_params,
            };
            let n: usize = view.iter().product();
            let whole = param_of_each_element(&runs.list(), n);
            let (mid, low, high) = runs.halves().expect("large enough to split");
            let mut split = param_of_each_element(&low, n);
            for (k, p) in param_of_each_element(&high, n).into_iter().enumerate() {
                if p != usize::MAX {
                    assert_eq!(split[k], usize::MAX, "{view:?}: element {k} in both halves");
                    assert!(
                        k >= mid,
                        "{view:?}: element {k} below the split in the high half"
                    );
                    split[k] = p;
                }
            }
            assert_eq!(split, whole, "{view:?}");
            // Every element in a run (kernels that fill fresh memory rely on it).
            assert!(whole.iter().all(|&p| p < num_params), "{view:?}");
        }
    }
}

//! Deterministic train/test splits for datasets that ship as one file.

use crate::ImageDataset;

/// Splits `dataset` into `(train, test)`, putting every `k`-th item (starting at `offset`) in the
/// test set: deterministic and seed-free, and balanced for data not sorted by class.
pub fn split_every_kth(
    dataset: ImageDataset,
    k: usize,
    offset: usize,
) -> (ImageDataset, ImageDataset) {
    let ImageDataset {
        items,
        height,
        width,
        num_classes,
    } = dataset;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        if i % k == offset % k {
            test.push(item);
        } else {
            train.push(item);
        }
    }
    let make = |items| ImageDataset {
        items,
        height,
        width,
        num_classes,
    };
    (make(train), make(test))
}

/// The three parts of a dataset that ships as one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout<T> {
    /// Training items.
    pub train: Vec<T>,
    /// Validation items (early stopping, checkpoint choice).
    pub valid: Vec<T>,
    /// Test items (the reported metrics).
    pub test: Vec<T>,
}

/// SplitMix64: a tiny, fixed pseudo-random sequence, so a split depends on the seed alone and
/// never on a library's version.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Shuffles `items` with `seed` (Fisher–Yates), then takes `test_fraction` of them for the test
/// set and `valid_fraction` of the rest for validation (each rounded, at least one item when the
/// fraction is positive); the rest is the training set, in shuffled order.
pub fn holdout_split<T>(
    items: Vec<T>,
    test_fraction: f64,
    valid_fraction: f64,
    seed: u64,
) -> Holdout<T> {
    let mut items = items;
    let mut state = seed;
    for i in (1..items.len()).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    let count = |n: usize, fraction: f64| {
        if fraction <= 0.0 || n == 0 {
            0
        } else {
            ((n as f64 * fraction).round() as usize).clamp(1, n)
        }
    };
    let n_test = count(items.len(), test_fraction);
    let test: Vec<T> = items.drain(..n_test).collect();
    let n_valid = count(items.len(), valid_fraction);
    let valid: Vec<T> = items.drain(..n_valid).collect();
    Holdout {
        train: items,
        valid,
        test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_split_is_fixed_by_the_seed_and_sized_by_the_fractions() {
        let a = holdout_split((0..100).collect::<Vec<_>>(), 0.1, 0.1, 7);
        let b = holdout_split((0..100).collect::<Vec<_>>(), 0.1, 0.1, 7);
        assert_eq!(a, b);
        assert_eq!((a.test.len(), a.valid.len(), a.train.len()), (10, 9, 81));
        let c = holdout_split((0..100).collect::<Vec<_>>(), 0.1, 0.1, 8);
        assert_ne!(a.test, c.test);
        let mut all: Vec<i32> = a
            .train
            .iter()
            .chain(&a.valid)
            .chain(&a.test)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}

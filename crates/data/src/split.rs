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

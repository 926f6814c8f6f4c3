//! [`ImageBatcher`]: stacks [`ImageItem`]s into normalised `[batch, 1, h, w]` tensors for burn's
//! `DataLoader`.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{Augment, ImageItem};

/// A batch of grayscale images and their classes.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// `[batch, 1, height, width]`, normalised.
    pub images: Tensor<4>,
    /// `[batch]` class indices.
    pub targets: Tensor<1, Int>,
}

/// Builds [`ImageBatch`]es, normalising pixels as `(p - mean) / std`.
#[derive(Clone, Debug)]
pub struct ImageBatcher {
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Pixel mean subtracted before dividing by `std`.
    pub mean: f32,
    /// Pixel standard deviation.
    pub std: f32,
    /// Augmentation applied before normalising (training batches only).
    pub augment: Option<Augment>,
}

impl ImageBatcher {
    /// A batcher of `height × width` images normalised with `(mean, std)` (a dataset's
    /// [`crate::DatasetMeta`] or its training split's [`crate::pixel_statistics`]).
    pub fn new(height: usize, width: usize, (mean, std): (f32, f32)) -> Self {
        ImageBatcher {
            height,
            width,
            mean,
            std,
            augment: None,
        }
    }

    /// The same batcher with `augment` applied to every image.
    pub fn with_augment(self, augment: Augment) -> Self {
        ImageBatcher {
            augment: Some(augment),
            ..self
        }
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let n = items.len();
        let normalise = |p: &f32| (p - self.mean) / self.std;
        let pixels: Vec<f32> = match &self.augment {
            None => items
                .iter()
                .flat_map(|i| i.pixels.iter().map(normalise))
                .collect(),
            Some(augment) => items
                .iter()
                .flat_map(|i| {
                    augment
                        .apply(&i.pixels, self.height, self.width)
                        .iter()
                        .map(normalise)
                        .collect::<Vec<_>>()
                })
                .collect(),
        };
        let targets: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
        ImageBatch {
            images: Tensor::from_data(
                TensorData::new(pixels, [n, 1, self.height, self.width]),
                device,
            ),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_idx_images;

    #[test]
    fn embedded_fashion_mnist_subset_batches() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/embedded/fashion-mnist-small"
        );
        let train = read_idx_images(
            format!("{dir}/train-images-idx3-ubyte.gz"),
            format!("{dir}/train-labels-idx1-ubyte.gz"),
            10,
        )
        .unwrap();
        let test = read_idx_images(
            format!("{dir}/t10k-images-idx3-ubyte.gz"),
            format!("{dir}/t10k-labels-idx1-ubyte.gz"),
            10,
        )
        .unwrap();
        assert_eq!(
            (
                train.items.len(),
                test.items.len(),
                train.height,
                train.width
            ),
            (2000, 500, 28, 28)
        );
        let mut seen = [0usize; 10];
        train.items.iter().for_each(|i| seen[i.label] += 1);
        assert!(
            seen.iter().all(|&c| c > 150),
            "every class present: {seen:?}"
        );
        let batch = ImageBatcher::new(28, 28, (0.286, 0.353))
            .batch(test.items[..4].to_vec(), &Device::flex());
        assert_eq!(batch.images.dims(), [4, 1, 28, 28]);
        assert_eq!(batch.targets.dims(), [4]);
    }
}

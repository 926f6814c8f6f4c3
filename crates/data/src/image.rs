//! [`ImageItem`] and [`ImageDataset`]: small grayscale images with class labels, in memory.

use burn::data::dataset::{Dataset, DatasetError};

/// One grayscale image (row-major pixels scaled to `[0, 1]`) and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// `height · width` pixels in `[0, 1]`.
    pub pixels: Vec<f32>,
    /// Class index.
    pub label: usize,
}

/// An in-memory labelled image dataset with a fixed image size.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    /// The images.
    pub items: Vec<ImageItem>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        Ok(self.items[index].clone())
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

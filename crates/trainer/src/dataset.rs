//! Loading the configured IDX dataset into train / validation / test splits and data loaders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use data::{Augment, ImageBatch, ImageBatcher, ImageDataset, read_idx_images, split_every_kth};

use crate::{DataConfig, TrainerError};

/// The three splits of a run's dataset.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training images (the training file minus the validation hold-out).
    pub train: ImageDataset,
    /// Every `valid_every`-th training image: early stopping and checkpoint choice.
    pub valid: ImageDataset,
    /// The test file: the reported accuracy.
    pub test: ImageDataset,
}

/// `dir/stem.gz` if it exists, else `dir/stem`; an error naming both (and the fetch command) otherwise.
fn idx_file(dir: &Path, stem: &str) -> Result<PathBuf, TrainerError> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(TrainerError::io(
            gz,
            format!(
                "not found (nor {}); `cargo xtask fetch fashion-mnist` fetches the full dataset",
                raw.display()
            ),
        ))
    }
}

/// Reads the IDX files of `config.dir` and splits them.
pub fn load_splits(config: &DataConfig) -> Result<Splits, TrainerError> {
    let file = |stem| idx_file(&config.dir, stem);
    let mut train = read_idx_images(
        file("train-images-idx3-ubyte")?,
        file("train-labels-idx1-ubyte")?,
        10,
    )?;
    let test = read_idx_images(
        file("t10k-images-idx3-ubyte")?,
        file("t10k-labels-idx1-ubyte")?,
        10,
    )?;
    if config.train_limit > 0 {
        train.items.truncate(config.train_limit);
    }
    let (train, valid) = split_every_kth(train, config.valid_every, 0);
    Ok(Splits { train, valid, test })
}

/// A shuffled (and, if configured, augmented) loader over `dataset`.
pub fn train_loader(
    config: &DataConfig,
    dataset: ImageDataset,
    seed: u64,
) -> Arc<dyn DataLoader<ImageBatch>> {
    let mut batcher = ImageBatcher::fashion_mnist();
    if config.augment {
        batcher = batcher.with_augment(Augment::new(2, true, seed));
    }
    DataLoaderBuilder::new(batcher)
        .batch_size(config.batch_size)
        .shuffle(seed)
        .num_workers(config.num_workers)
        .build(dataset)
}

/// An in-order loader over `dataset` (validation, test, calibration).
pub fn eval_loader(config: &DataConfig, dataset: ImageDataset) -> Arc<dyn DataLoader<ImageBatch>> {
    DataLoaderBuilder::new(ImageBatcher::fashion_mnist())
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .build(dataset)
}

//! Loading the configured IDX dataset into train / validation / test splits and data loaders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use data::{
    Augment, DatasetMeta, ImageBatch, ImageBatcher, ImageDataset, pixel_statistics,
    read_idx_images, split_every_kth,
};

use crate::{DataConfig, TrainerError};

/// The three splits of a run's dataset, with what the dataset says about itself.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training images (the training file minus the validation hold-out).
    pub train: ImageDataset,
    /// Every `valid_every`-th training image: early stopping and checkpoint choice.
    pub valid: ImageDataset,
    /// The test file: the reported accuracy.
    pub test: ImageDataset,
    /// Class names in label order: the config's, else the dataset's `dataset.json`, else the
    /// label indices.
    pub classes: Vec<String>,
    /// `(mean, std)` pixels are normalised with: the config's, else `dataset.json`'s, else the
    /// statistics of the training split.
    pub normalization: (f32, f32),
}

impl Splits {
    /// The batcher every loader of the run uses.
    pub fn batcher(&self) -> ImageBatcher {
        ImageBatcher::new(self.train.height, self.train.width, self.normalization)
    }
}

/// `dir/stem.gz` if it exists, else `dir/stem`; an error saying what is wrong otherwise (a
/// folder in the file's place, or neither file there, with the fetch command).
fn idx_file(dir: &Path, stem: &str) -> Result<PathBuf, TrainerError> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    for path in [&gz, &raw] {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(TrainerError::io(
                    path,
                    "is a directory, but an IDX file is expected here",
                ));
            }
            Ok(_) => return Ok(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrainerError::io(path, e)),
        }
    }
    if !dir.is_dir() {
        return Err(TrainerError::io(
            dir,
            format!(
                "not found: the data folder does not exist (it should hold {stem}.gz); `cargo xtask fetch fashion-mnist` fetches the full Fashion-MNIST"
            ),
        ));
    }
    Err(TrainerError::io(
        gz,
        format!(
            "not found (nor {}); `cargo xtask fetch fashion-mnist` fetches the full dataset",
            raw.display()
        ),
    ))
}

/// Labels are bytes, so no IDX dataset has more classes than this.
const MAX_IDX_CLASSES: usize = 256;

/// Reads the IDX files of `config.dir` and splits them; class names and normalisation from the
/// config, the folder's `dataset.json`, or the data itself.
pub fn load_splits(config: &DataConfig) -> Result<Splits, TrainerError> {
    let meta = DatasetMeta::read(&config.dir)?.unwrap_or_default();
    let named = config
        .classes
        .clone()
        .unwrap_or_else(|| meta.classes.clone());
    let limit = if named.is_empty() {
        MAX_IDX_CLASSES
    } else {
        named.len()
    };
    let file = |stem| idx_file(&config.dir, stem);
    let mut train = read_idx_images(
        file("train-images-idx3-ubyte")?,
        file("train-labels-idx1-ubyte")?,
        limit,
    )?;
    let mut test = read_idx_images(
        file("t10k-images-idx3-ubyte")?,
        file("t10k-labels-idx1-ubyte")?,
        limit,
    )?;
    let classes = if named.is_empty() {
        let max = train
            .items
            .iter()
            .chain(&test.items)
            .map(|i| i.label)
            .max()
            .unwrap_or(0);
        (0..=max.max(1)).map(|c| c.to_string()).collect()
    } else {
        named
    };
    train.num_classes = classes.len();
    test.num_classes = classes.len();
    if config.train_limit > 0 {
        train.items.truncate(config.train_limit);
    }
    let (train, valid) = split_every_kth(train, config.valid_every, 0);
    let normalization = match (config.normalization, meta.mean.zip(meta.std)) {
        (Some(given), _) => given,
        (None, Some(from_meta)) => from_meta,
        (None, None) => pixel_statistics(&train),
    };
    Ok(Splits {
        train,
        valid,
        test,
        classes,
        normalization,
    })
}

/// A shuffled (and, if configured, augmented) loader over the training split.
pub fn train_loader(
    config: &DataConfig,
    splits: &Splits,
    seed: u64,
) -> Arc<dyn DataLoader<ImageBatch>> {
    let mut batcher = splits.batcher();
    if config.augment {
        batcher = batcher.with_augment(Augment::new(2, true, seed));
    }
    DataLoaderBuilder::new(batcher)
        .batch_size(config.batch_size)
        .shuffle(seed)
        .num_workers(config.num_workers)
        .build(splits.train.clone())
}

/// An in-order loader over `dataset` (validation, test, calibration), normalised as `splits` says.
pub fn eval_loader(
    config: &DataConfig,
    splits: &Splits,
    dataset: ImageDataset,
) -> Arc<dyn DataLoader<ImageBatch>> {
    DataLoaderBuilder::new(splits.batcher())
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .build(dataset)
}
